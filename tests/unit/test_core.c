#include "test.h"
#include "wafer/conf.h"
#include "wafer/core.h"

#include <stdint.h>

TEST(arena_alloc_reset)
{
    wf_arena_t a;
    wf_arena_init(&a, 256, 0);
    char *p = wf_arena_alloc(&a, 10);
    CHECK(p != NULL);
    CHECK(((uintptr_t)p & 15) == 0);
    char *big = wf_arena_alloc(&a, 4000); /* oversized: its own chunk */
    CHECK(big != NULL);
    char *q = wf_arena_alloc(&a, 16); /* still bumps in the first chunk */
    CHECK(q == p + 16);
    for (int i = 0; i < 100; i++)
        CHECK(wf_arena_alloc(&a, 100) != NULL);
    wf_arena_reset(&a);
    CHECK(a.total == 256);
    CHECK(wf_arena_alloc(&a, 10) == p);
    wf_arena_free(&a);
}

TEST(arena_limit)
{
    wf_arena_t a;
    wf_arena_init(&a, 1024, 2048);
    CHECK(wf_arena_alloc(&a, 1000) != NULL);
    CHECK(wf_arena_alloc(&a, 1000) != NULL);
    CHECK(wf_arena_alloc(&a, 1000) == NULL);
    wf_arena_free(&a);
}

TEST(pool_bounded)
{
    wf_pool_t p;
    wf_pool_init(&p, 40, 2);
    void *a = wf_pool_get(&p), *b = wf_pool_get(&p);
    CHECK(a && b && a != b);
    CHECK(wf_pool_get(&p) == NULL);
    wf_pool_put(&p, a);
    CHECK(wf_pool_get(&p) == a);
    wf_pool_put(&p, a);
    wf_pool_put(&p, b);
    wf_pool_free(&p);
}

TEST(array_grow_doubles)
{
    size_t cap = 0, n = 0;
    int *a = NULL;
    for (int i = 0; i < 100; i++) {
        int *na = wf_array_grow(a, &cap, n, sizeof(*na), 4);
        CHECK(na != NULL);
        a = na;
        a[n++] = i;
    }
    CHECK(cap == 128); /* 4, 8, ..., 128 */
    CHECK(a[0] == 0 && a[99] == 99);
    CHECK(wf_array_grow(a, &cap, 50, sizeof(*a), 4) == a); /* room: unchanged */
    size_t huge = SIZE_MAX / 2 + 1;
    CHECK(wf_array_grow(a, &huge, huge, sizeof(*a), 4) == NULL); /* overflow refused, cap kept */
    CHECK(huge == SIZE_MAX / 2 + 1);
    free(a);
}

TEST(buf_bounded)
{
    wf_buf_t b;
    CHECK(wf_buf_init(&b, 4, 16) == 0);
    CHECK(wf_buf_append(&b, "0123456789", 10) == 0);
    CHECK(wf_buf_append(&b, "0123456789", 10) == -WF_ELIMIT);
    wf_buf_consume(&b, 8);
    CHECK(wf_buf_append(&b, "abcdefghij", 10) == 0); /* compaction makes room */
    CHECK(wf_buf_len(&b) == 12);
    CHECK(memcmp(wf_buf_rptr(&b), "89abcdefghij", 12) == 0);
    wf_buf_free(&b);
}

TEST(parse_size_duration)
{
    uint64_t v;
    CHECK(wf_parse_size("64k", &v) == 0 && v == 65536);
    CHECK(wf_parse_size("10m", &v) == 0 && v == 10u << 20);
    CHECK(wf_parse_size("1g", &v) == 0 && v == 1u << 30);
    CHECK(wf_parse_size("12", &v) == 0 && v == 12);
    CHECK(wf_parse_size("12x", &v) != 0);
    CHECK(wf_parse_size("-1", &v) != 0);
    CHECK(wf_parse_size("99999999999999999999k", &v) != 0);
    CHECK(wf_parse_duration_ms("250ms", &v) == 0 && v == 250);
    CHECK(wf_parse_duration_ms("30s", &v) == 0 && v == 30000);
    CHECK(wf_parse_duration_ms("5", &v) == 0 && v == 5000);
    CHECK(wf_parse_duration_ms("2m", &v) == 0 && v == 120000);
    CHECK(wf_parse_duration_ms("fast", &v) != 0);
}

TEST(conf_errors_name_file_line_key)
{
    const char *y = "listen:\n  address: 127.0.0.1:8080\n  timeouts:\n    header: fast\n";
    wf_conf_t *c;
    wf_conf_err_t err;
    CHECK(wf_conf_load_string("t.yaml", y, strlen(y), &c, &err) == 0);
    const wf_conf_node_t *listen = wf_conf_get(wf_conf_root(c), "listen");
    const wf_conf_node_t *to = wf_conf_get(listen, "timeouts");
    uint64_t ms = 7;
    CHECK(wf_conf_duration_ms(c, to, "header", 1, 3600000, &ms, &err) == -WF_ECONFIG);
    CHECK(strstr(err.msg, "t.yaml:4:") == err.msg);
    CHECK(strstr(err.msg, "listen.timeouts.header") != NULL);
    CHECK(ms == 7);
    CHECK(wf_conf_duration_ms(c, to, "absent", 1, 3600000, &ms, &err) == 0 && ms == 7);
    static const char *const keys[] = { "address", NULL };
    CHECK(wf_conf_check_keys(c, listen, keys, &err) == -WF_ECONFIG);
    CHECK(strstr(err.msg, "t.yaml:3:") == err.msg);
    wf_conf_free(c);
}

TEST(conf_rejects_bad_yaml)
{
    wf_conf_t *c;
    wf_conf_err_t err;
    const char *dup = "a: 1\na: 2\n";
    CHECK(wf_conf_load_string("d.yaml", dup, strlen(dup), &c, &err) == -WF_ECONFIG);
    CHECK(strstr(err.msg, "duplicate key") != NULL);
    const char *syn = "a: [1, 2\n";
    CHECK(wf_conf_load_string("s.yaml", syn, strlen(syn), &c, &err) == -WF_ECONFIG);
    CHECK(strstr(err.msg, "s.yaml:") == err.msg);
    const char *top = "- 1\n- 2\n";
    CHECK(wf_conf_load_string("l.yaml", top, strlen(top), &c, &err) == -WF_ECONFIG);
    const char *alias = "a: &x 1\nb: *x\n";
    CHECK(wf_conf_load_string("al.yaml", alias, strlen(alias), &c, &err) == -WF_ECONFIG);
    CHECK(wf_conf_load_string("e.yaml", "", 0, &c, &err) == 0);
    CHECK(wf_conf_root(c)->type == WF_CONF_MAP);
    wf_conf_free(c);
    CHECK(wf_conf_load_file("/nonexistent/wafer.yaml", &c, &err) == -ENOENT);
    CHECK(strstr(err.msg, "/nonexistent/wafer.yaml") != NULL);
}

TEST(conf_typed_values)
{
    const char *y = "n: 42\nb: yes\ns: 64k\ne: block\nl: [1, 2]\n";
    wf_conf_t *c;
    wf_conf_err_t err;
    CHECK(wf_conf_load_string("v.yaml", y, strlen(y), &c, &err) == 0);
    const wf_conf_node_t *r = wf_conf_root(c);
    int64_t n = 0;
    bool b = false;
    uint64_t s = 0;
    int e = -1;
    CHECK(wf_conf_int(c, r, "n", 0, 100, &n, &err) == 0 && n == 42);
    CHECK(wf_conf_int(c, r, "n", 0, 10, &n, &err) == -WF_ECONFIG);
    CHECK(wf_conf_bool(c, r, "b", &b, &err) == 0 && b);
    CHECK(wf_conf_size(c, r, "s", 0, 1u << 20, &s, &err) == 0 && s == 65536);
    static const char *const modes[] = { "monitor", "block", NULL };
    CHECK(wf_conf_enum(c, r, "e", modes, &e, &err) == 0 && e == 1);
    CHECK(wf_conf_int(c, r, "l", 0, 10, &n, &err) == -WF_ECONFIG);
    CHECK(strstr(err.msg, "v.yaml:5:") == err.msg);
    wf_conf_free(c);
}

TEST_MAIN()
