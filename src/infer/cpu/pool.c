#include "infer/cpu/pool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

/* Workers spin this many rounds for the next job before sleeping: a forward
 * pass issues hundreds of parallel-fors back to back, and a futex wake-up per
 * op would cost more than many small ops themselves. */
#define SPIN_ROUNDS 4000
/* After this many rounds a spinning thread yields between polls, so that an
 * oversubscribed machine still makes progress. */
#define SPIN_YIELD_AFTER 500

struct wf_tpool {
    int threads;
    pthread_t *tids;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    /* (job number << 16) | participants, published with release for every
     * job; one word, so that a worker never pairs one job's number with
     * another's participant count */
    atomic_ullong gen;
    atomic_int pending;  /* workers still inside the current job */
    atomic_int next;     /* next item index to hand out */
    int stop;
    /* the current job */
    int n, grain;
    wf_tpool_fn fn;
    void *ctx;
};

typedef struct {
    wf_tpool_t *p;
    int tid;
} worker_arg_t;

static void run_chunks(wf_tpool_t *p, int tid)
{
    for (;;) {
        int b = atomic_fetch_add_explicit(&p->next, p->grain, memory_order_relaxed);
        if (b >= p->n)
            break;
        int e = b + p->grain < p->n ? b + p->grain : p->n;
        p->fn(p->ctx, b, e, tid);
    }
}

static void *worker(void *arg)
{
    worker_arg_t wa = *(worker_arg_t *)arg;
    free(arg);
    wf_tpool_t *p = wa.p;
    unsigned long long seen = 0;
    for (;;) {
        unsigned long long g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && spins < SPIN_ROUNDS) {
            if (++spins > SPIN_YIELD_AFTER)
                sched_yield();
            else
                CPU_RELAX();
        }
        if (g == seen) {
            pthread_mutex_lock(&p->mu);
            while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen && !p->stop)
                pthread_cond_wait(&p->wake, &p->mu);
            int stop = p->stop;
            pthread_mutex_unlock(&p->mu);
            if (stop)
                return NULL;
        }
        seen = g;
        if (wa.tid >= (int)(g & 0xffff))
            continue; /* too few chunks for this one: the caller does not wait for it */
        run_chunks(p, wa.tid);
        if (atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

wf_tpool_t *wf_tpool_new(int threads)
{
    if (threads < 1)
        threads = 1;
    wf_tpool_t *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->threads = threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    p->tids = calloc((size_t)threads, sizeof(pthread_t));
    if (!p->tids) {
        wf_tpool_free(p);
        return NULL;
    }
    for (int i = 1; i < threads; i++) {
        worker_arg_t *wa = malloc(sizeof(*wa));
        if (wa) {
            wa->p = p;
            wa->tid = i;
        }
        if (!wa || pthread_create(&p->tids[i], NULL, worker, wa) != 0) {
            free(wa);
            p->threads = i; /* only these were started */
            wf_tpool_free(p);
            return NULL;
        }
    }
    return p;
}

void wf_tpool_free(wf_tpool_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->threads && p->tids; i++)
        pthread_join(p->tids[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->tids);
    free(p);
}

int wf_tpool_threads(const wf_tpool_t *p) { return p->threads; }

void wf_tpool_for(wf_tpool_t *p, int n, int grain, wf_tpool_fn fn, void *ctx)
{
    if (n <= 0)
        return;
    if (grain < 1)
        grain = 1;
    if (p->threads == 1 || n <= grain) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->n = n;
    p->grain = grain;
    p->fn = fn;
    p->ctx = ctx;
    int chunks = (n + grain - 1) / grain;
    int participants = chunks < p->threads ? chunks : p->threads;
    atomic_store_explicit(&p->next, 0, memory_order_relaxed);
    atomic_store_explicit(&p->pending, participants - 1, memory_order_relaxed);
    unsigned long long job = (atomic_load_explicit(&p->gen, memory_order_relaxed) >> 16) + 1;
    atomic_store_explicit(&p->gen, (job << 16) | (unsigned)participants, memory_order_release);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    run_chunks(p, 0);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0 && spins < SPIN_ROUNDS) {
        if (++spins > SPIN_YIELD_AFTER)
            sched_yield();
        else
            CPU_RELAX();
    }
    if (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0)
            pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
