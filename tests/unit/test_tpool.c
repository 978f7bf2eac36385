/* The CPU backend's thread pool: every index visited exactly once, by
 * threads with valid ids, for many shapes of job back to back. */
#include "test.h"

#include "infer/cpu/pool.h"

#include <stdatomic.h>

typedef struct {
    atomic_int *hits;
    int threads;
    atomic_int bad_tid;
} job_t;

static void visit(void *ctx, int b, int e, int tid)
{
    job_t *j = ctx;
    if (tid < 0 || tid >= j->threads)
        atomic_fetch_add(&j->bad_tid, 1);
    for (int i = b; i < e; i++)
        atomic_fetch_add(&j->hits[i], 1);
}

TEST(every_index_once)
{
    const int threads_list[] = { 1, 2, 3, 5 };
    const int ns[] = { 1, 2, 7, 64, 1000, 4097 };
    const int grains[] = { 1, 3, 16, 5000 };
    atomic_int *hits = calloc(4097, sizeof(*hits));
    for (size_t t = 0; t < 4; t++) {
        wf_tpool_t *p = wf_tpool_new(threads_list[t]);
        CHECK(p != NULL);
        if (!p)
            continue;
        CHECK_EQ_INT(wf_tpool_threads(p), threads_list[t]);
        for (int rep = 0; rep < 10; rep++)
            for (size_t k = 0; k < 6; k++)
                for (size_t g = 0; g < 4; g++) {
                    int n = ns[k];
                    for (int i = 0; i < n; i++)
                        atomic_store(&hits[i], 0);
                    job_t j = { hits, threads_list[t], 0 };
                    wf_tpool_for(p, n, grains[g], visit, &j);
                    int wrong = 0;
                    for (int i = 0; i < n; i++)
                        wrong += atomic_load(&hits[i]) != 1;
                    CHECK_EQ_INT(wrong, 0);
                    CHECK_EQ_INT(atomic_load(&j.bad_tid), 0);
                }
        wf_tpool_for(p, 0, 1, visit, NULL); /* nothing to do: fn is not called */
        wf_tpool_free(p);
    }
    free(hits);
}

TEST_MAIN()
