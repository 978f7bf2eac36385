/* The detection service (include/wafer/detect.h): engines (a model and what
 * runs it), the CPU backend's queue and inference threads, ports and their
 * completion queues, and the GPU backend's per-port rings with the one GPU
 * scheduler that serves them all. */
#include "wafer/detect.h"
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#ifdef WAFER_HAVE_CUDA
#include "infer/cuda_module.h"
#endif

wf_detect_t *wf_detect_global;

#define RING_POLL_MS 1

/* A queued unit (CPU backend); its tokens are in the engine's slab. */
typedef struct {
    wf_detect_port_t *port;
    uint64_t key;
    uint32_t unit;
    int len;
    uint64_t t_ns;
} job_t;

struct wf_detect_engine {
    atomic_int refs;
    uint64_t id;
    wf_detect_t *svc;
    char *dir;
    wf_model_t *model;
    const wf_model_meta_t *meta;
    const wf_tokenizer_t *tok;
    int L, max_len;
    bool reads[WF_UNIT__COUNT];
    bool cuda;
    struct wf_detect_engine *next_old; /* retired engines, waiting to be freed */

    /* GPU backend: one session, one ring per port and one scheduler over all of them, every one made when the
     * engine is made and the scheduler started last: no CUDA call may run while it does (docs/ring.md). */
    wf_session_t *gsess;
    int nrings;
    wf_ring_region_t **regions;
    wf_ring_t **rings;
    atomic_bool *ring_taken;
    wf_ring_sched_t *sched;
    uint64_t calls_at_start; /* host CUDA calls when the scheduler started */

    /* CPU backend: one bounded queue, nthreads threads with a session each */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job_t *jobs;
    int32_t *slab;      /* cap * max_len tokens, slot i for jobs[i] */
    uint32_t cap, head, count;
    bool stopping;
    int nthreads;
    pthread_t *th;
    struct thr_arg *targs;
    wf_session_t **sess;
    wf_hist_t *h_batch, *h_run_s; /* per thread (one writer each): batch sizes, seconds per run */
    bool mu_init;
};

typedef struct {
    uint64_t key;
    uint32_t unit;
    bool ok;
    float probs[WF_MAX_LABELS];
} done_t;

struct wf_detect_port {
    wf_detect_t *svc;
    wf_loop_t *loop;
    wf_detect_verdict_fn fn;
    void *arg;
    uint32_t inflight;         /* worker-owned */
    /* CPU backend: completion queue filled by inference threads */
    pthread_mutex_t mu;
    done_t *done;
    uint32_t cap, head, count;
    int efd;
    wf_io_t io;
    atomic_bool signalled;
    /* GPU backend: the engine's ring this port took (the engine owns it) */
    wf_detect_engine_t *ring_engine;
    int ring_idx;
    wf_ring_t *ring;
    wf_timer_t poll_timer;
    bool ring_dead;
};

struct wf_detect {
    wf_detect_conf_t conf;     /* a copy; strings not owned */
    _Atomic(wf_detect_engine_t *) cur;
    wf_detect_engine_t *old;   /* retired engines (main thread) */
    pthread_mutex_t swap_mu;
    uint64_t delay_ms;         /* test knob */
    atomic_ullong submitted, completed, rejected, batches, errors, swaps;
};

static atomic_ullong engine_seq;
static void detect_collect(wf_metrics_t *m, void *arg);

const char *wf_detect_backend_name(wf_detect_backend_t b)
{
    return b == WF_DETECT_CPU ? "cpu" : b == WF_DETECT_CUDA ? "cuda" : "auto";
}

/* ---- engines ---- */

const wf_model_meta_t *wf_detect_engine_meta(const wf_detect_engine_t *e) { return e->meta; }
const wf_tokenizer_t *wf_detect_engine_tokenizer(const wf_detect_engine_t *e) { return e->tok; }
int wf_detect_engine_max_len(const wf_detect_engine_t *e) { return e->max_len; }
const char *wf_detect_engine_backend(const wf_detect_engine_t *e) { return e->cuda ? "cuda" : "cpu"; }
bool wf_detect_engine_reads(const wf_detect_engine_t *e, wf_unit_kind_t k)
{
    return (unsigned)k < WF_UNIT__COUNT && e->reads[k];
}
uint64_t wf_detect_engine_id(const wf_detect_engine_t *e) { return e->id; }
void wf_detect_engine_ref(wf_detect_engine_t *e) { atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed); }
void wf_detect_engine_unref(wf_detect_engine_t *e)
{
    /* the memory is freed by the main thread (engines_reap), never here */
    atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel);
}

static void *cpu_thread(void *arg);

static uint64_t cuda_calls(void)
{
#ifdef WAFER_HAVE_CUDA
    return wf_cuda_host_calls();
#else
    return 0;
#endif
}

/* The engine whose GPU scheduler runs (at most one: a cuda engine is never replaced while serving), for the exit
 * guard below. */
static _Atomic(wf_detect_engine_t *) running_gpu;

/* Stops the scheduler first, then frees what it used: a CUDA free while it runs could wait for it forever. */
static void engine_gpu_free(wf_detect_engine_t *e)
{
    if (e->sched) {
        uint64_t calls = cuda_calls() - e->calls_at_start;
        uint32_t st = wf_ring_sched_stop(e->sched);
        e->sched = NULL;
        wf_detect_engine_t *self = e;
        atomic_compare_exchange_strong(&running_gpu, &self, NULL);
        if (st)
            wf_error("detection: the GPU scheduler had stopped with status %u", st);
        wf_info("detection: GPU scheduler stopped; host CUDA calls while it ran: %llu", (unsigned long long)calls);
    }
    for (int i = 0; i < e->nrings; i++) {
        wf_ring_free(e->rings ? e->rings[i] : NULL);
        wf_ring_region_free(e->regions ? e->regions[i] : NULL);
    }
    free(e->rings);
    free(e->regions);
    free(e->ring_taken);
    wf_session_free(e->gsess);
    e->rings = NULL;
    e->regions = NULL;
    e->ring_taken = NULL;
    e->gsess = NULL;
    e->nrings = 0;
}

/* A process that exits without wf_detect_stop (a start-up error after the service started) must not leave the
 * scheduler spinning while the CUDA runtime tears down. */
static void gpu_atexit(void)
{
    wf_detect_engine_t *e = atomic_exchange(&running_gpu, NULL);
    if (e && e->sched) {
        wf_ring_sched_stop(e->sched);
        e->sched = NULL;
    }
}

static void engine_free(wf_detect_engine_t *e)
{
    if (!e)
        return;
    engine_gpu_free(e);
    if (e->mu_init) {
        pthread_mutex_lock(&e->mu);
        e->stopping = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        for (int i = 0; i < e->nthreads; i++)
            pthread_join(e->th[i], NULL);
        pthread_mutex_destroy(&e->mu);
        pthread_cond_destroy(&e->cv);
    }
    if (e->sess)
        for (int i = 0; i < e->nthreads; i++)
            wf_session_free(e->sess[i]);
    free(e->sess);
    free(e->th);
    free(e->targs);
    free(e->h_batch);
    free(e->h_run_s);
    free(e->jobs);
    free(e->slab);
    wf_model_free(e->model);
    free(e->dir);
    free(e);
}

/* Whether the GPU backend can be used: the CUDA module loads and a device is present. */
static bool cuda_usable(char *why, size_t whylen)
{
#ifdef WAFER_HAVE_CUDA
    return wf_cuda_probe(why, whylen) == 1;
#else
    snprintf(why, whylen, "this wafer is built without CUDA");
    return false;
#endif
}

typedef struct thr_arg {
    wf_detect_engine_t *e;
    int idx;
} thr_arg_t;

/* The GPU backend of an engine: one session, a ring for each port that will open (the server's workers), then
 * one scheduler over all the rings. Nothing of it is made later: port_open only takes a ring. */
static int engine_gpu_start(wf_detect_engine_t *e, char *why, size_t whylen)
{
    const wf_detect_conf_t *c = &e->svc->conf;
    int n = c->ports > 0 ? c->ports : 1;
    if (n > WF_RING_SCHED_MAX_RINGS) {
        snprintf(why, whylen, "%d workers: the GPU scheduler serves at most %d", n, WF_RING_SCHED_MAX_RINGS);
        return -ENOTSUP;
    }
    uint32_t slots = 2;
    while (slots < c->max_inflight)
        slots <<= 1;
    wf_ring_opts_t ro = { .slots = slots, .max_len = (uint32_t)e->max_len, .num_labels = (uint32_t)e->L };
    wf_session_opts_t so = { .backend = "cuda", .threads = 1, .max_batch = c->max_batch,
                             .max_tokens = c->max_batch * e->max_len };
    wf_err_t me = { { 0 } };
    wf_status_t s = wf_session_new(e->model, &so, &e->gsess, &me);
    if (s != WF_OK) {
        snprintf(why, whylen, "GPU session: %.400s", me.msg[0] ? me.msg : wf_status_str(s));
        return -ENOTSUP;
    }
    e->regions = calloc((size_t)n, sizeof(*e->regions));
    e->rings = calloc((size_t)n, sizeof(*e->rings));
    e->ring_taken = calloc((size_t)n, sizeof(*e->ring_taken));
    if (!e->regions || !e->rings || !e->ring_taken) {
        snprintf(why, whylen, "out of memory");
        engine_gpu_free(e);
        return -ENOMEM;
    }
    e->nrings = n;
    char msg[400] = "";
    for (int i = 0; i < n; i++) {
        int rc = wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &e->regions[i], msg, sizeof(msg));
        if (!rc)
            rc = wf_ring_new(e->regions[i], &ro, &e->rings[i]);
        if (rc) {
            snprintf(why, whylen, "GPU ring %d of %d: %s", i + 1, n, msg[0] ? msg : wf_strerror(rc));
            engine_gpu_free(e);
            return rc;
        }
        atomic_init(&e->ring_taken[i], false);
    }
    uint64_t t0 = wf_now_ns();
    wf_ring_sched_opts_t sopt = { .max_batch = c->max_batch, .max_wait_ns = c->batch_wait_us * 1000u };
    s = wf_ring_sched_start_multi(e->gsess, e->rings, n, &sopt, &e->sched, msg, sizeof(msg));
    if (s != WF_OK) {
        snprintf(why, whylen, "GPU scheduler: %s", msg[0] ? msg : wf_status_str(s));
        engine_gpu_free(e);
        return -ENOTSUP;
    }
    e->calls_at_start = cuda_calls();
    static atomic_bool guard;
    if (!atomic_exchange(&guard, true))
        atexit(gpu_atexit);
    atomic_store(&running_gpu, e);
    wf_info("detection: GPU scheduler running over %d ring%s of %u slots (one per worker), batches of up to %d "
            "units, started in %.2f s", n, n == 1 ? "" : "s", slots, c->max_batch,
            (double)(wf_now_ns() - t0) / 1e9);
    return 0;
}

static int engine_new(wf_detect_t *d, const char *dir, bool allow_cuda, wf_detect_engine_t **out, char *err,
                      size_t errlen)
{
    const wf_detect_conf_t *c = &d->conf;
    wf_detect_engine_t *e = calloc(1, sizeof(*e));
    if (!e) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    atomic_init(&e->refs, 1);
    e->id = atomic_fetch_add(&engine_seq, 1) + 1;
    e->svc = d;
    e->dir = strdup(dir);
    wf_err_t me = { { 0 } };
    wf_status_t s = wf_model_load(dir, &e->model, &me);
    if (s != WF_OK || !e->dir) {
        snprintf(err, errlen, "model %s: %s", dir, me.msg[0] ? me.msg : wf_status_str(s));
        engine_free(e);
        return -WF_EFORMAT;
    }
    e->meta = wf_model_get_meta(e->model);
    e->tok = wf_model_get_tokenizer(e->model);
    e->L = e->meta->num_labels;
    e->max_len = WF_MIN(e->meta->max_len, wf_model_get_config(e->model)->max_position_embeddings);
    /* wafer.json "units" (see scan.c): a name that is no unit kind means every kind is read */
    for (int k = 0; k < WF_UNIT__COUNT; k++)
        e->reads[k] = e->meta->nunits == 0;
    for (int i = 0; i < e->meta->nunits; i++) {
        int k = 0;
        while (k < WF_UNIT__COUNT && strcmp(e->meta->units[i], wf_unit_kind_name((wf_unit_kind_t)k)))
            k++;
        if (k == WF_UNIT__COUNT) {
            for (k = 0; k < WF_UNIT__COUNT; k++)
                e->reads[k] = true;
            break;
        }
        e->reads[k] = true;
    }
    char why[512] = "";
    if (c->backend == WF_DETECT_CUDA || (c->backend == WF_DETECT_AUTO && allow_cuda)) {
        /* the ring's scheduler spins on the GPU: lazy module loading could deadlock it (docs/ring.md) */
        setenv("CUDA_MODULE_LOADING", "EAGER", 0);
        if (cuda_usable(why, sizeof(why))) {
            e->cuda = true;
        } else if (c->backend == WF_DETECT_CUDA) {
            snprintf(err, errlen, "detection.backend cuda: %s", why);
            engine_free(e);
            return -ENOTSUP;
        } else {
            wf_info("detection: backend auto: %s; using the CPU backend", why);
        }
    }
    if (e->cuda) {
        int rc = engine_gpu_start(e, why, sizeof(why));
        if (rc == 0) {
            *out = e;
            return 0;
        }
        if (c->backend == WF_DETECT_CUDA) {
            snprintf(err, errlen, "detection.backend cuda: %s", why);
            engine_free(e);
            return rc;
        }
        wf_warn("detection: backend auto: %s; using the CPU backend", why);
        e->cuda = false;
    }
    e->cap = c->max_queue;
    e->nthreads = c->threads;
    e->jobs = calloc(e->cap, sizeof(*e->jobs));
    e->slab = malloc(sizeof(int32_t) * e->cap * (size_t)e->max_len);
    e->th = calloc((size_t)e->nthreads, sizeof(*e->th));
    e->sess = calloc((size_t)e->nthreads, sizeof(*e->sess));
    e->targs = calloc((size_t)e->nthreads, sizeof(*e->targs));
    e->h_batch = calloc((size_t)e->nthreads, sizeof(*e->h_batch));
    e->h_run_s = calloc((size_t)e->nthreads, sizeof(*e->h_run_s));
    if (!e->jobs || !e->slab || !e->th || !e->sess || !e->targs || !e->h_batch || !e->h_run_s) {
        snprintf(err, errlen, "out of memory");
        engine_free(e);
        return -ENOMEM;
    }
    wf_session_opts_t so = { .backend = "cpu", .threads = 1, .max_batch = c->max_batch,
                             .max_tokens = c->max_batch * e->max_len };
    for (int i = 0; i < e->nthreads; i++) {
        s = wf_session_new(e->model, &so, &e->sess[i], &me);
        if (s != WF_OK) {
            snprintf(err, errlen, "model %s: session: %s", dir, me.msg[0] ? me.msg : wf_status_str(s));
            engine_free(e);
            return -WF_EFORMAT;
        }
    }
    pthread_mutex_init(&e->mu, NULL);
    wf_cond_init_monotonic(&e->cv);
    e->mu_init = true;
    int started = 0;
    for (int i = 0; i < e->nthreads; i++) {
        wf_hist_init_exp(&e->h_batch[i], 1, 2, 10);
        wf_hist_init_exp(&e->h_run_s[i], 0.0001, 2, 16);
    }
    for (int i = 0; i < e->nthreads; i++) {
        e->targs[i] = (thr_arg_t){ e, i };
        int rc = pthread_create(&e->th[i], NULL, cpu_thread, &e->targs[i]);
        if (rc) {
            e->nthreads = started;
            snprintf(err, errlen, "inference threads: %s", strerror(rc));
            engine_free(e);
            return -rc;
        }
        started++;
    }
    *out = e;
    return 0;
}

/* ---- CPU backend ---- */

static void port_post(wf_detect_port_t *p, const job_t *j, const float *probs, int L)
{
    pthread_mutex_lock(&p->mu);
    /* cannot overflow: a port has at most cap units in flight */
    done_t *dn = &p->done[(p->head + p->count) % p->cap];
    p->count++;
    dn->key = j->key;
    dn->unit = j->unit;
    dn->ok = probs != NULL;
    if (probs)
        memcpy(dn->probs, probs, sizeof(float) * (size_t)L);
    pthread_mutex_unlock(&p->mu);
}

static void port_signal(wf_detect_port_t *p)
{
    if (atomic_exchange(&p->signalled, true))
        return;
    uint64_t one = 1;
    ssize_t r = write(p->efd, &one, sizeof(one));
    (void)r;
}

static void deadline_after(struct timespec *ts, uint64_t t_ns)
{
    ts->tv_sec = (time_t)(t_ns / 1000000000u);
    ts->tv_nsec = (long)(t_ns % 1000000000u);
}

static void *cpu_thread(void *arg)
{
    thr_arg_t *ta = arg;
    wf_detect_engine_t *e = ta->e;
    wf_detect_t *d = e->svc;
    int idx = ta->idx;
    wf_session_t *s = e->sess[idx];
    int B = d->conf.max_batch, L = e->L, M = e->max_len;
    job_t *batch = malloc(sizeof(job_t) * (size_t)B);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)B * (size_t)M);
    const int32_t **ptrs = malloc(sizeof(*ptrs) * (size_t)B);
    int *lens = malloc(sizeof(int) * (size_t)B);
    float *probs = malloc(sizeof(float) * (size_t)B * (size_t)L);
    wf_detect_port_t **sig = malloc(sizeof(*sig) * (size_t)B);
    if (!batch || !ids || !ptrs || !lens || !probs || !sig) {
        wf_error("detection: inference thread: out of memory");
        goto out;
    }
    for (;;) {
        pthread_mutex_lock(&e->mu);
        while (e->count == 0 && !e->stopping)
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->count == 0 && e->stopping) {
            pthread_mutex_unlock(&e->mu);
            break;
        }
        /* a partial batch waits for company at most batch_wait after its oldest unit */
        while (e->count > 0 && e->count < (uint32_t)B && !e->stopping) {
            uint64_t due = e->jobs[e->head].t_ns + d->conf.batch_wait_us * 1000u;
            if (wf_now_ns() >= due)
                break;
            struct timespec ts;
            deadline_after(&ts, due);
            pthread_cond_timedwait(&e->cv, &e->mu, &ts);
        }
        int n = (int)WF_MIN(e->count, (uint32_t)B);
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            uint32_t slot = (e->head + (uint32_t)i) % e->cap;
            batch[i] = e->jobs[slot];
            memcpy(ids + used, e->slab + (size_t)slot * (size_t)M, sizeof(int32_t) * (size_t)batch[i].len);
            ptrs[i] = ids + used;
            lens[i] = batch[i].len;
            used += (size_t)batch[i].len;
        }
        e->head = (e->head + (uint32_t)n) % e->cap;
        e->count -= (uint32_t)n;
        if (e->count)
            pthread_cond_signal(&e->cv); /* more for another thread */
        pthread_mutex_unlock(&e->mu);
        if (n == 0)
            continue;
        uint64_t t0 = wf_now_ns();
        if (d->delay_ms)
            usleep((useconds_t)(d->delay_ms * 1000));
        wf_status_t st = wf_session_run(s, ptrs, lens, n, probs, NULL);
        wf_hist_observe(&e->h_batch[idx], (double)n);
        wf_hist_observe(&e->h_run_s[idx], (double)(wf_now_ns() - t0) / 1e9);
        atomic_fetch_add_explicit(&d->batches, 1, memory_order_relaxed);
        if (st != WF_OK) {
            atomic_fetch_add_explicit(&d->errors, (uint64_t)n, memory_order_relaxed);
            wf_error("detection: inference failed for a batch of %d: %s", n, wf_status_str(st));
        }
        int nsig = 0;
        for (int i = 0; i < n; i++) {
            port_post(batch[i].port, &batch[i], st == WF_OK ? probs + (size_t)i * (size_t)L : NULL, L);
            int k = 0;
            while (k < nsig && sig[k] != batch[i].port)
                k++;
            if (k == nsig)
                sig[nsig++] = batch[i].port;
        }
        for (int k = 0; k < nsig; k++)
            port_signal(sig[k]);
    }
out:
    free(batch);
    free(ids);
    free(ptrs);
    free(lens);
    free(probs);
    free(sig);
    return NULL;
}

/* ---- ports ---- */

static void port_deliver(wf_detect_port_t *p)
{
    atomic_store(&p->signalled, false);
    uint64_t v;
    ssize_t r = read(p->efd, &v, sizeof(v));
    (void)r;
    done_t local[32];
    for (;;) {
        uint32_t n = 0;
        pthread_mutex_lock(&p->mu);
        while (n < 32 && p->count) {
            local[n++] = p->done[p->head];
            p->head = (p->head + 1) % p->cap;
            p->count--;
        }
        pthread_mutex_unlock(&p->mu);
        if (!n)
            break;
        p->inflight -= n;
        atomic_fetch_add_explicit(&p->svc->completed, n, memory_order_relaxed);
        for (uint32_t i = 0; i < n; i++)
            if (p->fn)
                p->fn(p->arg, local[i].key, local[i].unit, local[i].ok ? local[i].probs : NULL);
    }
}

static void port_event(wf_loop_t *loop, wf_io_t *io, unsigned ev) { port_deliver(io->data); }

static int ring_poll(wf_detect_port_t *p)
{
    if (!p->ring || p->ring_dead)
        return 0;
    wf_ring_verdict_t vs[64];
    float probs[64 * WF_MAX_LABELS];
    int total = 0;
    for (;;) {
        int n = wf_ring_poll(p->ring, vs, probs, 64);
        if (n < 0) {
            wf_error("detection: GPU ring: verdicts out of order (%s); the GPU backend of this worker stops",
                     wf_strerror(n));
            p->ring_dead = true;
            return total;
        }
        if (n == 0)
            break;
        total += n;
        p->inflight -= (uint32_t)n;
        atomic_fetch_add_explicit(&p->svc->completed, (uint64_t)n, memory_order_relaxed);
        int L = (int)wf_ring_get_opts(p->ring)->num_labels;
        for (int i = 0; i < n; i++)
            if (p->fn)
                p->fn(p->arg, vs[i].request_id, vs[i].unit_id,
                      (vs[i].flags & WF_RING_V_INVALID) ? NULL : probs + (size_t)i * (size_t)L);
    }
    uint32_t detail = 0;
    uint32_t st = wf_ring_status(p->ring, &detail);
    if (st != WF_RING_OK && !p->ring_dead) {
        wf_error("detection: GPU scheduler stopped (status %u, detail %u)", st, detail);
        p->ring_dead = true;
    }
    return total;
}

static void ring_before_sleep(wf_loop_t *loop, void *data)
{
    wf_detect_port_t *p = data;
    if (p->inflight)
        ring_poll(p);
}

static void ring_timer(wf_loop_t *loop, wf_timer_t *t)
{
    wf_detect_port_t *p = t->data;
    ring_poll(p);
    if (p->inflight && !p->ring_dead)
        wf_loop_timer_set(loop, t, wf_loop_now(loop) + RING_POLL_MS);
}

/* Takes one of the engine's rings (made at start): no CUDA call, the scheduler already polls it. */
static int port_ring_open(wf_detect_port_t *p, wf_detect_engine_t *e)
{
    int i = 0;
    for (; i < e->nrings; i++) {
        bool f = false;
        if (atomic_compare_exchange_strong(&e->ring_taken[i], &f, true))
            break;
    }
    if (i == e->nrings) {
        wf_error("detection: every GPU ring is taken (%d, made at start for the workers then configured)",
                 e->nrings);
        return -ENOSPC;
    }
    p->ring_idx = i;
    p->ring = e->rings[i];
    p->ring_engine = e;
    wf_detect_engine_ref(e);
    wf_timer_init(&p->poll_timer, ring_timer, p);
    wf_loop_add_before_sleep(p->loop, ring_before_sleep, p);
    return 0;
}

/* Gives the ring back to the engine once the GPU has answered everything submitted through it, so that a port
 * that takes it later gets no verdict of this one's. A ring still owed verdicts after a while (a dead scheduler)
 * stays taken. */
static void port_ring_close(wf_detect_port_t *p)
{
    wf_ring_verdict_t vs[64];
    for (int i = 0; i < 2000 && wf_ring_consumed(p->ring) < wf_ring_submitted(p->ring); i++) {
        int n = p->ring_dead ? -1 : wf_ring_poll(p->ring, vs, NULL, 64);
        if (n < 0 || wf_ring_status(p->ring, NULL) != WF_RING_OK)
            break;
        if (n == 0)
            usleep(1000);
    }
    if (wf_ring_consumed(p->ring) == wf_ring_submitted(p->ring))
        atomic_store(&p->ring_engine->ring_taken[p->ring_idx], false);
    else
        wf_error("detection: a worker's GPU ring closed with %llu units unanswered; it is not reused",
                 (unsigned long long)(wf_ring_submitted(p->ring) - wf_ring_consumed(p->ring)));
    p->ring = NULL;
}

int wf_detect_port_open(wf_detect_t *d, wf_loop_t *loop, wf_detect_verdict_fn fn, void *arg, wf_detect_port_t **out)
{
    wf_detect_port_t *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->svc = d;
    p->loop = loop;
    p->fn = fn;
    p->arg = arg;
    p->cap = d->conf.max_inflight;
    p->efd = -1;
    p->io.fd = -1;
    pthread_mutex_init(&p->mu, NULL);
    wf_detect_engine_t *e = wf_detect_engine_get(d);
    int rc = 0;
    if (e->cuda) {
        rc = port_ring_open(p, e);
    } else {
        p->done = malloc(sizeof(*p->done) * p->cap);
        p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (!p->done || p->efd < 0)
            rc = p->done ? -errno : -ENOMEM;
        else
            rc = wf_loop_io_add(loop, &p->io, p->efd, WF_IO_READ, port_event, p);
    }
    wf_detect_engine_unref(e);
    if (rc) {
        p->fn = NULL;
        wf_detect_port_close(p);
        return rc;
    }
    *out = p;
    return 0;
}

void wf_detect_port_close(wf_detect_port_t *p)
{
    if (!p)
        return;
    p->fn = NULL;
    if (p->ring) {
        if (p->loop)
            wf_loop_timer_cancel(p->loop, &p->poll_timer);
        port_ring_close(p);
    }
    if (p->ring_engine)
        wf_detect_engine_unref(p->ring_engine);
    if (p->done) {
        /* inference threads may still post to this port: wait for them */
        for (int i = 0; p->inflight && i < 30000; i++) {
            port_deliver(p);
            if (p->inflight)
                usleep(1000);
        }
        if (p->inflight)
            wf_error("detection: a worker's port closed with %u units still in inference", p->inflight);
    }
    if (p->efd >= 0) {
        if (p->loop)
            wf_loop_io_del(p->loop, &p->io);
        close(p->efd);
    }
    pthread_mutex_destroy(&p->mu);
    free(p->done);
    free(p);
}

uint32_t wf_detect_port_inflight(const wf_detect_port_t *p) { return p->inflight; }

int wf_detect_submit(wf_detect_port_t *p, wf_detect_engine_t *e, uint64_t key, uint32_t unit, const int32_t *ids,
                     int len)
{
    wf_detect_t *d = p->svc;
    if (len < 1 || len > e->max_len)
        return -EINVAL;
    if (p->inflight >= p->cap) {
        atomic_fetch_add_explicit(&d->rejected, 1, memory_order_relaxed);
        return -EAGAIN;
    }
    if (e->cuda) {
        if (!p->ring || p->ring_dead || e != p->ring_engine) {
            atomic_fetch_add_explicit(&d->rejected, 1, memory_order_relaxed);
            return -EAGAIN;
        }
        int64_t n = wf_ring_submit(p->ring, key, unit, ids, (uint32_t)len);
        if (n < 0) {
            atomic_fetch_add_explicit(&d->rejected, 1, memory_order_relaxed);
            return n == -EAGAIN ? -EAGAIN : (int)n;
        }
    } else {
        pthread_mutex_lock(&e->mu);
        if (e->count >= e->cap || e->stopping) {
            pthread_mutex_unlock(&e->mu);
            atomic_fetch_add_explicit(&d->rejected, 1, memory_order_relaxed);
            return -EAGAIN;
        }
        uint32_t slot = (e->head + e->count) % e->cap;
        e->jobs[slot] = (job_t){ .port = p, .key = key, .unit = unit, .len = len, .t_ns = wf_now_ns() };
        memcpy(e->slab + (size_t)slot * (size_t)e->max_len, ids, sizeof(int32_t) * (size_t)len);
        e->count++;
        if (e->count == 1 || e->count % (uint32_t)d->conf.max_batch == 0)
            pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
    p->inflight++;
    atomic_fetch_add_explicit(&d->submitted, 1, memory_order_relaxed);
    return 0;
}

void wf_detect_flush(wf_detect_port_t *p)
{
    if (p->ring) {
        if (p->inflight && !wf_timer_armed(&p->poll_timer))
            wf_loop_timer_set(p->loop, &p->poll_timer, wf_loop_now(p->loop) + RING_POLL_MS);
        return;
    }
    wf_detect_engine_t *e = wf_detect_engine_get(p->svc);
    if (!e->cuda) {
        pthread_mutex_lock(&e->mu);
        if (e->count)
            pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
    }
    wf_detect_engine_unref(e);
}

/* ---- the service ---- */

wf_detect_engine_t *wf_detect_engine_get(wf_detect_t *d)
{
    /* the swap lock keeps the engine from being retired between load and ref */
    pthread_mutex_lock(&d->swap_mu);
    wf_detect_engine_t *e = atomic_load(&d->cur);
    wf_detect_engine_ref(e);
    pthread_mutex_unlock(&d->swap_mu);
    return e;
}

/* Frees retired engines nobody holds any more. */
static void engines_reap(wf_detect_t *d, bool all)
{
    wf_detect_engine_t **pp = &d->old;
    while (*pp) {
        wf_detect_engine_t *e = *pp;
        if (all || atomic_load(&e->refs) == 0) {
            *pp = e->next_old;
            engine_free(e);
        } else {
            pp = &e->next_old;
        }
    }
}

int wf_detect_start(const wf_detect_conf_t *conf, wf_detect_t **out, char *err, size_t errlen)
{
    *out = NULL;
    wf_detect_t *d = calloc(1, sizeof(*d));
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    d->conf = *conf;
    if (d->conf.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        d->conf.threads = n < 1 ? 1 : n > 64 ? 64 : (int)n;
    }
    pthread_mutex_init(&d->swap_mu, NULL);
    const char *delay = getenv("WAFER_TEST_INFER_DELAY_MS");
    if (delay && *delay) {
        d->delay_ms = strtoull(delay, NULL, 10);
        wf_warn("detection: WAFER_TEST_INFER_DELAY_MS=%llu: every batch is delayed (a test knob)",
                (unsigned long long)d->delay_ms);
    }
    wf_detect_engine_t *e = NULL;
    int rc = engine_new(d, conf->model_dir, true, &e, err, errlen);
    if (rc) {
        pthread_mutex_destroy(&d->swap_mu);
        free(d);
        return rc;
    }
    atomic_store(&d->cur, e);
    wf_info("detection: model %s (%s, %d labels, %d tokens) on the %s backend%s", e->meta->name, conf->model_dir,
            e->L, e->max_len, wf_detect_engine_backend(e), e->cuda ? "" : "");
    wf_metrics_register("detection", detect_collect, d);
    if (!e->cuda)
        wf_info("detection: %d inference threads, batches of up to %d units, queue %u units", e->nthreads,
                d->conf.max_batch, e->cap);
    *out = d;
    return 0;
}

void wf_detect_stop(wf_detect_t *d)
{
    if (!d)
        return;
    wf_metrics_unregister(d);
    wf_detect_engine_t *e = atomic_load(&d->cur);
    engine_free(e);
    engines_reap(d, true);
    pthread_mutex_destroy(&d->swap_mu);
    free(d);
}

int wf_detect_reload_model(wf_detect_t *d, const char *dir, char *err, size_t errlen)
{
    engines_reap(d, false);
    wf_detect_engine_t *cur = atomic_load(&d->cur);
    if (!strcmp(cur->dir, dir))
        return 1;
    if (cur->cuda) {
        snprintf(err, errlen, "model %s: replacing the model of the cuda backend needs a restart", dir);
        return -ENOTSUP;
    }
    wf_detect_engine_t *e = NULL;
    int rc = engine_new(d, dir, false, &e, err, errlen);
    if (rc)
        return rc;
    pthread_mutex_lock(&d->swap_mu);
    atomic_store(&d->cur, e);
    pthread_mutex_unlock(&d->swap_mu);
    /* the old engine drains what was submitted to it, and is freed once nobody holds it */
    cur->next_old = d->old;
    d->old = cur;
    wf_detect_engine_unref(cur);
    atomic_fetch_add(&d->swaps, 1);
    wf_info("detection: model %s (%s) now serves new requests", e->meta->name, dir);
    return 0;
}

void wf_detect_stats(wf_detect_t *d, wf_detect_stats_t *o)
{
    memset(o, 0, sizeof(*o));
    o->submitted = atomic_load_explicit(&d->submitted, memory_order_relaxed);
    o->completed = atomic_load_explicit(&d->completed, memory_order_relaxed);
    o->rejected_full = atomic_load_explicit(&d->rejected, memory_order_relaxed);
    o->batches = atomic_load_explicit(&d->batches, memory_order_relaxed);
    o->errors = atomic_load_explicit(&d->errors, memory_order_relaxed);
    o->model_swaps = atomic_load_explicit(&d->swaps, memory_order_relaxed);
    wf_detect_engine_t *e = wf_detect_engine_get(d);
    if (!e->cuda) {
        pthread_mutex_lock(&e->mu);
        o->queue_depth = e->count;
        pthread_mutex_unlock(&e->mu);
    } else {
        /* host words only (no CUDA call): published and not yet answered, over every ring */
        for (int i = 0; i < e->nrings; i++)
            o->queue_depth += wf_ring_submitted(e->rings[i]) - wf_ring_consumed(e->rings[i]);
        o->gpu_host_calls = cuda_calls() - e->calls_at_start;
    }
    wf_detect_engine_unref(e);
}

/* ---- metrics ---- */

static void detect_collect(wf_metrics_t *m, void *arg)
{
    wf_detect_t *d = arg;
    wf_detect_stats_t st;
    wf_detect_stats(d, &st);
    wf_metrics_family(m, "wafer_detect_units_total", WF_METRIC_COUNTER,
                      "Inspection units by what the detection service did with them.");
    wf_metrics_sample(m, NULL, "state", "submitted", NULL, (double)st.submitted);
    wf_metrics_sample(m, NULL, "state", "completed", NULL, (double)st.completed);
    wf_metrics_sample(m, NULL, "state", "rejected_full", NULL, (double)st.rejected_full);
    wf_metrics_sample(m, NULL, "state", "error", NULL, (double)st.errors);
    wf_metrics_family(m, "wafer_detect_batches_total", WF_METRIC_COUNTER, "Model runs (batches).");
    wf_metrics_value(m, (double)st.batches);
    wf_metrics_family(m, "wafer_detect_queue_depth", WF_METRIC_GAUGE, "Units waiting for an inference thread.");
    wf_metrics_value(m, (double)st.queue_depth);
    wf_metrics_family(m, "wafer_detect_model_swaps_total", WF_METRIC_COUNTER, "Models replaced by a reload.");
    wf_metrics_value(m, (double)st.model_swaps);
    wf_detect_engine_t *ce = wf_detect_engine_get(d);
    if (ce->cuda) {
        wf_metrics_family(m, "wafer_detect_gpu_host_calls_total", WF_METRIC_COUNTER,
                          "Host CUDA calls since the GPU scheduler started (none per request: it stays 0).");
        wf_metrics_value(m, (double)st.gpu_host_calls);
    }
    wf_detect_engine_unref(ce);
    wf_detect_engine_t *e = wf_detect_engine_get(d);
    if (!e->cuda && e->nthreads > 0) {
        wf_hist_t hb = e->h_batch[0], hr = e->h_run_s[0];
        for (int i = 1; i < e->nthreads; i++) {
            wf_hist_merge(&hb, &e->h_batch[i]);
            wf_hist_merge(&hr, &e->h_run_s[i]);
        }
        wf_metrics_family(m, "wafer_detect_batch_size", WF_METRIC_HISTOGRAM, "Units per model run (CPU backend).");
        wf_metrics_hist(m, &hb, NULL);
        wf_metrics_family(m, "wafer_detect_run_seconds", WF_METRIC_HISTOGRAM,
                          "Time of one model run, batch wait excluded (CPU backend).");
        wf_metrics_hist(m, &hr, NULL);
    }
    wf_detect_engine_unref(e);
}
