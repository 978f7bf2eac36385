/*
 * A small persistent thread pool for the CPU backend: threads are created
 * once with the session; a parallel-for hands out [begin, end) chunks of
 * `grain` items to the caller and the workers, which pick them up from an
 * atomic counter (so uneven items balance out). Not reentrant: one
 * parallel-for at a time per pool.
 */
#ifndef WAFER_INFER_CPU_POOL_H
#define WAFER_INFER_CPU_POOL_H

typedef struct wf_tpool wf_tpool_t;

/* fn(ctx, begin, end, tid): tid in 0..threads-1 (0 is the caller). */
typedef void (*wf_tpool_fn)(void *ctx, int begin, int end, int tid);

/* Starts threads-1 workers (threads >= 1). Returns NULL on failure. */
wf_tpool_t *wf_tpool_new(int threads);
void wf_tpool_free(wf_tpool_t *p);
int wf_tpool_threads(const wf_tpool_t *p);
/* Runs fn over 0..n-1 in chunks of grain (>= 1); returns when all are done.
 * Runs inline when one chunk covers everything. */
void wf_tpool_for(wf_tpool_t *p, int n, int grain, wf_tpool_fn fn, void *ctx);

#endif
