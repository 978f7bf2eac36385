/*
 * A minimal test harness: TEST(name) { ... CHECK(...); } in a test_*.c file;
 * the file ends with TEST_MAIN(). Prints one line per failure and, last,
 * "N passed, N failed".
 */
#ifndef WAFER_TEST_H
#define WAFER_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*wf_test_fn)(void);
struct wf_test { const char *name; wf_test_fn fn; struct wf_test *next; };
static struct wf_test *wf_tests_head, **wf_tests_tail = &wf_tests_head;
static int wf_test_failed_now;
static int wf_test_checks;

#define TEST(name)                                                                     \
    static void test_##name(void);                                                     \
    __attribute__((constructor)) static void register_##name(void)                     \
    {                                                                                  \
        static struct wf_test t = { #name, test_##name, NULL };                        \
        *wf_tests_tail = &t;                                                           \
        wf_tests_tail = &t.next;                                                       \
    }                                                                                  \
    static void test_##name(void)

#define CHECK(cond)                                                                    \
    do {                                                                               \
        wf_test_checks++;                                                              \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
            wf_test_failed_now = 1;                                                    \
        }                                                                              \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                             \
    do {                                                                               \
        long long va_ = (long long)(a), vb_ = (long long)(b);                          \
        wf_test_checks++;                                                              \
        if (va_ != vb_) {                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__,        \
                    __LINE__, #a, #b, va_, vb_);                                       \
            wf_test_failed_now = 1;                                                    \
        }                                                                              \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                             \
    do {                                                                               \
        const char *sa_ = (a), *sb_ = (b);                                             \
        wf_test_checks++;                                                              \
        if (!sa_ || !sb_ || strcmp(sa_, sb_) != 0) {                                   \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__,    \
                    __LINE__, #a, #b, sa_ ? sa_ : "(null)", sb_ ? sb_ : "(null)");      \
            wf_test_failed_now = 1;                                                    \
        }                                                                              \
    } while (0)

#define TEST_MAIN()                                                                    \
    int main(int argc, char **argv)                                                    \
    {                                                                                  \
        int passed = 0, failed = 0;                                                    \
        for (struct wf_test *t = wf_tests_head; t; t = t->next) {                      \
            if (argc > 1 && strcmp(argv[1], t->name) != 0)                             \
                continue;                                                              \
            wf_test_failed_now = 0;                                                    \
            t->fn();                                                                   \
            if (wf_test_failed_now) {                                                  \
                fprintf(stderr, "FAIL %s\n", t->name);                                 \
                failed++;                                                              \
            } else {                                                                   \
                passed++;                                                              \
            }                                                                          \
        }                                                                              \
        printf("%d passed, %d failed\n", passed, failed);                              \
        return failed ? 1 : 0;                                                         \
    }

#endif
