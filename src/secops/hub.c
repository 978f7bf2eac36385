/*
 * The security-event hub: workers push events into one bounded lock-free
 * queue; a dispatcher thread copies each event into every sink's own bounded
 * queue; each sink has a thread that delivers batches, and spools to disk
 * and retries with backoff while its destination is down. A slow sink fills
 * only its own queue (then its spool), never the workers' path or another
 * sink's.
 */
#include "secops_int.h"
#include "wafer/metrics.h"

#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

wf_secops_t *wf_secops_global;

static const wf_sink_mod_t *const sink_mods[] = { &wf_sink_file, &wf_sink_syslog, &wf_sink_forward, &wf_sink_thehive };

/* ---- the queue ---- */

int wf_evq_init(wf_evq_t *q, size_t cap, size_t wake_depth)
{
    memset(q, 0, sizeof(*q));
    if (!cap)
        return -EINVAL;
    size_t bytes = WF_ALIGN_UP(cap * sizeof(wf_evq_cell_t), 64);
    q->cells = aligned_alloc(64, bytes);
    if (!q->cells)
        return -ENOMEM;
    memset(q->cells, 0, bytes); /* no page faults on the data path later */
    q->cap = cap;
    q->wake_depth = WF_MAX(wake_depth, (size_t)1);
    for (size_t i = 0; i < cap; i++)
        atomic_init(&q->cells[i].seq, i);
    atomic_init(&q->enq, 0);
    atomic_init(&q->deq, 0);
    return 0;
}

void wf_evq_free(wf_evq_t *q)
{
    free(q->cells);
    q->cells = NULL;
}

static void futex_wake_all(_Atomic uint32_t *w)
{
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

bool wf_evq_push(wf_evq_t *q, const wf_secev_t *ev)
{
    size_t pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
    wf_evq_cell_t *cell;
    for (;;) {
        cell = &q->cells[pos % q->cap];
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)pos;
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->enq, &pos, pos + 1, memory_order_seq_cst,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false; /* the cell still holds the event from one lap ago: full */
        } else {
            pos = atomic_load_explicit(&q->enq, memory_order_relaxed);
        }
    }
    memcpy(&cell->ev, ev, sizeof(*ev));
    atomic_store_explicit(&cell->seq, pos + 1, memory_order_release);
    /* pairs with the consumer's store of `sleeping` then load of enq in wf_evq_wait */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&q->sleeping, memory_order_relaxed) &&
        (q->wake_depth == 1 || wf_evq_depth(q) >= q->wake_depth)) {
        atomic_fetch_add(&q->wake, 1);
        futex_wake_all(&q->wake);
    }
    return true;
}

bool wf_evq_pop(wf_evq_t *q, wf_secev_t *ev)
{
    size_t pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
    wf_evq_cell_t *cell;
    for (;;) {
        cell = &q->cells[pos % q->cap];
        size_t seq = atomic_load_explicit(&cell->seq, memory_order_acquire);
        intptr_t dif = (intptr_t)seq - (intptr_t)(pos + 1);
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&q->deq, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return false;
        } else {
            pos = atomic_load_explicit(&q->deq, memory_order_relaxed);
        }
    }
    memcpy(ev, &cell->ev, sizeof(*ev));
    atomic_store_explicit(&cell->seq, pos + q->cap, memory_order_release);
    return true;
}

size_t wf_evq_depth(wf_evq_t *q)
{
    size_t d = atomic_load(&q->deq), e = atomic_load(&q->enq);
    return e > d ? e - d : 0;
}

void wf_evq_wait(wf_evq_t *q, uint64_t timeout_ms)
{
    uint32_t v = atomic_load(&q->wake);
    atomic_store(&q->sleeping, 1);
    if (wf_evq_depth(q) == 0) {
        struct timespec ts = { (time_t)(timeout_ms / 1000), (long)(timeout_ms % 1000) * 1000000L };
        syscall(SYS_futex, (uint32_t *)&q->wake, FUTEX_WAIT_PRIVATE, v, &ts, NULL, 0);
    }
    atomic_store(&q->sleeping, 0);
}

void wf_evq_wake(wf_evq_t *q)
{
    atomic_fetch_add(&q->wake, 1);
    futex_wake_all(&q->wake);
}

/* ---- configuration ---- */

static void sink_conf_clear(wf_sink_conf_t *s)
{
    if (s->mod && s->mconf)
        s->mod->conf_free(s->mconf);
    free(s->name);
    free(s->spool_dir);
}

void wf_secops_conf_free(wf_secops_conf_t *sc)
{
    if (!sc)
        return;
    for (size_t i = 0; i < sc->nsinks; i++)
        sink_conf_clear(&sc->sinks[i]);
    free(sc->sinks);
    free(sc);
}

static int dup_str(char **dst, const char *s)
{
    free(*dst);
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

#define SINK_COMMON_KEYS "type", "name", "queue", "batch", "spool", "retry"
#define MAX_SINK_KEYS 48

static int sink_conf_parse(const wf_conf_t *c, const wf_conf_node_t *n, wf_sink_conf_t *s, wf_conf_err_t *err)
{
    static const char *const spool_keys[] = { "dir", "max_bytes", "segment_bytes", "fsync", NULL };
    static const char *const retry_keys[] = { "initial", "max", NULL };
    int rc;
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping with a type");
    const char *type = NULL;
    if ((rc = wf_conf_str(c, n, "type", &type, err)))
        return rc;
    char types[128] = "";
    for (size_t i = 0, k = 0; i < WF_ARRAY_LEN(sink_mods) && k < sizeof(types); i++) {
        int m = snprintf(types + k, sizeof(types) - k, "%s%s", i ? ", " : "", sink_mods[i]->type);
        k += m > 0 ? (size_t)m : 0;
        if (type && !strcmp(sink_mods[i]->type, type))
            s->mod = sink_mods[i];
    }
    if (!type)
        return wf_conf_errorf(c, n, err, "missing type (one of: %s)", types);
    if (!s->mod)
        return wf_conf_errorf(c, wf_conf_get(n, "type"), err, "unknown sink type \"%s\" (one of: %s)", type, types);

    const char *keys[MAX_SINK_KEYS] = { SINK_COMMON_KEYS };
    size_t nk = 0;
    while (keys[nk])
        nk++;
    for (const char *const *k = s->mod->keys; k && *k && nk < MAX_SINK_KEYS - 1; k++)
        keys[nk++] = *k;
    keys[nk] = NULL;
    if ((rc = wf_conf_check_keys(c, n, keys, err)))
        return rc;

    const char *name = type;
    int64_t queue = 1024, batch = 64;
    if ((rc = wf_conf_str(c, n, "name", &name, err)) ||
        (rc = wf_conf_int(c, n, "queue", 1, 1 << 20, &queue, err)) ||
        (rc = wf_conf_int(c, n, "batch", 1, 4096, &batch, err)))
        return rc;
    if (!*name || strlen(name) >= 64)
        return wf_conf_errorf(c, wf_conf_get(n, "name"), err, "a sink name has 1 to 63 characters");
    if ((rc = dup_str(&s->name, name)))
        return rc;
    s->queue = (uint32_t)queue;
    s->batch = (uint32_t)batch;

    s->spool_max_bytes = 256ull << 20;
    s->spool_segment_bytes = 4ull << 20;
    s->retry_initial_ms = 500;
    s->retry_max_ms = 30000;
    const wf_conf_node_t *sp = wf_conf_get(n, "spool");
    if (sp) {
        if (sp->type != WF_CONF_MAP)
            return wf_conf_errorf(c, sp, err, "expected a mapping (dir, max_bytes, segment_bytes, fsync)");
        if ((rc = wf_conf_check_keys(c, sp, spool_keys, err)))
            return rc;
        const char *dir = NULL;
        if ((rc = wf_conf_str(c, sp, "dir", &dir, err)) ||
            (rc = wf_conf_size(c, sp, "max_bytes", 64 << 10, 1ull << 40, &s->spool_max_bytes, err)) ||
            (rc = wf_conf_size(c, sp, "segment_bytes", 64 << 10, 1ull << 30, &s->spool_segment_bytes, err)) ||
            (rc = wf_conf_bool(c, sp, "fsync", &s->spool_fsync, err)))
            return rc;
        if (!dir || !*dir)
            return wf_conf_errorf(c, sp, err, "missing dir");
        if ((rc = dup_str(&s->spool_dir, dir)))
            return rc;
    }
    const wf_conf_node_t *rt = wf_conf_get(n, "retry");
    if (rt) {
        if (rt->type != WF_CONF_MAP)
            return wf_conf_errorf(c, rt, err, "expected a mapping (initial, max)");
        if ((rc = wf_conf_check_keys(c, rt, retry_keys, err)) ||
            (rc = wf_conf_duration_ms(c, rt, "initial", 1, 3600000, &s->retry_initial_ms, err)) ||
            (rc = wf_conf_duration_ms(c, rt, "max", 1, 24 * 3600000ull, &s->retry_max_ms, err)))
            return rc;
        if (s->retry_max_ms < s->retry_initial_ms)
            return wf_conf_errorf(c, wf_conf_get(rt, "max"), err, "max is less than initial");
    }
    return s->mod->conf_parse(c, n, &s->mconf, err);
}

static uint64_t node_digest(const wf_conf_node_t *n, uint64_t h)
{
    if (!n)
        return h;
    h = wf_hash64(&n->type, sizeof(n->type), h);
    if (n->key)
        h = wf_hash64(n->key, strlen(n->key) + 1, h);
    if (n->value)
        h = wf_hash64(n->value, strlen(n->value) + 1, h);
    for (size_t i = 0; i < n->nitems; i++)
        h = node_digest(n->items[i], h);
    return wf_hash64(&n->nitems, sizeof(n->nitems), h);
}

bool wf_secops_conf_same(const wf_secops_conf_t *a, const wf_secops_conf_t *b)
{
    return (a ? a->digest : 0) == (b ? b->digest : 0);
}

int wf_secops_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_secops_conf_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "queue", "sinks", "stop_timeout", "sink_nice", NULL };
    *out = NULL;
    wf_secops_conf_t *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->queue = 4096;
    sc->stop_timeout_ms = 5000;
    sc->sink_nice = 10;
    sc->digest = node_digest(node, 0);
    int rc = 0;
    if (node) {
        int64_t q = sc->queue, nice_ = sc->sink_nice;
        if (node->type != WF_CONF_MAP) {
            rc = wf_conf_errorf(c, node, err, "expected a mapping (queue, sinks, stop_timeout, sink_nice)");
            goto fail;
        }
        if ((rc = wf_conf_check_keys(c, node, keys, err)) ||
            (rc = wf_conf_int(c, node, "queue", 1, 1 << 22, &q, err)) ||
            (rc = wf_conf_duration_ms(c, node, "stop_timeout", 0, 3600000, &sc->stop_timeout_ms, err)) ||
            (rc = wf_conf_int(c, node, "sink_nice", 0, 19, &nice_, err)))
            goto fail;
        sc->queue = (uint32_t)q;
        sc->sink_nice = (int)nice_;
        const wf_conf_node_t *sinks = wf_conf_get(node, "sinks");
        if (sinks) {
            if (sinks->type != WF_CONF_SEQ) {
                rc = wf_conf_errorf(c, sinks, err, "expected a list of sinks");
                goto fail;
            }
            sc->sinks = calloc(sinks->nitems ? sinks->nitems : 1, sizeof(*sc->sinks));
            if (!sc->sinks) {
                rc = -ENOMEM;
                goto fail;
            }
            for (size_t i = 0; i < sinks->nitems; i++) {
                sc->nsinks = i + 1;
                if ((rc = sink_conf_parse(c, sinks->items[i], &sc->sinks[i], err)))
                    goto fail;
                for (size_t j = 0; j < i; j++)
                    if (!strcmp(sc->sinks[j].name, sc->sinks[i].name)) {
                        rc = wf_conf_errorf(c, sinks->items[i], err,
                                            "two sinks named \"%s\" (give each a distinct name)", sc->sinks[i].name);
                        goto fail;
                    }
                for (size_t j = 0; j < i; j++)
                    if (sc->sinks[i].spool_dir && sc->sinks[j].spool_dir &&
                        !strcmp(sc->sinks[j].spool_dir, sc->sinks[i].spool_dir)) {
                        rc = wf_conf_errorf(c, wf_conf_get(sinks->items[i], "spool"), err,
                                            "spool dir %s is already used by sink \"%s\"", sc->sinks[i].spool_dir,
                                            sc->sinks[j].name);
                        goto fail;
                    }
            }
        }
    }
    *out = sc;
    return 0;
fail:
    if (rc == -ENOMEM && err)
        snprintf(err->msg, sizeof(err->msg), "%s: out of memory", wf_conf_file(c));
    wf_secops_conf_free(sc);
    return rc;
}

/* ---- the hub ---- */

typedef struct {
    wf_secops_t *hub;
    const wf_sink_conf_t *conf;
    void *st;
    wf_evq_t q;
    pthread_t thread;
    bool started;
    wf_spool_t *spool;
    wf_secev_t *batch;  /* conf->batch events: the one being delivered */
    size_t nbatch;
    uint64_t backoff_ms, next_try_ms;
    uint64_t spool_err_next_ms;
    uint64_t rng;
    _Atomic bool reopen;
    _Atomic bool up;
    _Atomic uint64_t queued, delivered, retried, spooled, dropped;
    _Atomic uint64_t spool_bytes; /* the spool's size, published for other threads */
} sink_t;

struct wf_secops {
    const wf_secops_conf_t *conf;
    wf_evq_t q;
    _Atomic uint64_t emitted, dropped;
    _Atomic bool stopping;
    uint64_t stop_deadline_ms;
    pthread_t dispatcher;
    bool dispatcher_started;
    sink_t *sinks;
    size_t nsinks;
};

int wf_secops_emit(wf_secops_t *h, const wf_secev_t *ev)
{
    if (WF_UNLIKELY(!wf_evq_push(&h->q, ev))) {
        atomic_fetch_add_explicit(&h->dropped, 1, memory_order_relaxed);
        return -WF_EOVERLOAD;
    }
    atomic_fetch_add_explicit(&h->emitted, 1, memory_order_relaxed);
    return 0;
}

/* The dispatcher looks at an idle event queue this often; workers wake it
 * (a system call) only when the queue is an eighth full. So an event waits
 * at most this long before its sinks see it, and a worker that emits one
 * makes no system call. */
#define DISPATCH_POLL_MS 5

static void *dispatcher_main(void *arg)
{
    wf_secops_t *h = arg;
    wf_secev_t *ev = malloc(sizeof(*ev));
    if (!ev) {
        wf_error("events: dispatcher: out of memory");
        return NULL;
    }
    for (;;) {
        bool got = wf_evq_pop(&h->q, ev);
        if (!got) {
            if (atomic_load(&h->stopping) && wf_evq_depth(&h->q) == 0)
                break;
            wf_evq_wait(&h->q, DISPATCH_POLL_MS);
            continue;
        }
        for (size_t i = 0; i < h->nsinks; i++) {
            sink_t *s = &h->sinks[i];
            if (wf_evq_push(&s->q, ev))
                atomic_fetch_add_explicit(&s->queued, 1, memory_order_relaxed);
            else
                atomic_fetch_add_explicit(&s->dropped, 1, memory_order_relaxed);
        }
    }
    free(ev);
    return NULL;
}

static uint64_t rng_next(uint64_t *x)
{
    /* splitmix64: only for retry jitter */
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* After a failure: wait a random time in [d/2, d], d doubling up to max
 * ("equal jitter"), so that many wafers do not retry in step. */
static void sink_backoff(sink_t *s)
{
    const wf_sink_conf_t *c = s->conf;
    s->backoff_ms = s->backoff_ms ? WF_MIN(s->backoff_ms * 2, c->retry_max_ms) : c->retry_initial_ms;
    uint64_t half = s->backoff_ms / 2;
    s->next_try_ms = wf_now_ms() + half + (half ? rng_next(&s->rng) % (half + 1) : 0);
}

static void sink_drop(sink_t *s, size_t n)
{
    if (n)
        atomic_fetch_add_explicit(&s->dropped, n, memory_order_relaxed);
}

/* Moves events into the spool; what does not fit is dropped and counted. */
static void sink_spool(sink_t *s, const wf_secev_t *evs, size_t n)
{
    if (!n)
        return;
    int k = wf_spool_append(s->spool, evs, n);
    if (k < 0) {
        /* a full or failing disk fails every batch: one line per 10 s */
        uint64_t now = wf_now_ms();
        if (now >= s->spool_err_next_ms) {
            wf_error("events: sink %s: spool %s: %s; events are dropped (counted) until it can be written",
                     s->conf->name, s->conf->spool_dir, wf_strerror(k));
            s->spool_err_next_ms = now + 10000;
        }
        k = 0;
    }
    atomic_fetch_add_explicit(&s->spooled, (uint64_t)k, memory_order_relaxed);
    atomic_store_explicit(&s->spool_bytes, wf_spool_bytes(s->spool), memory_order_relaxed);
    sink_drop(s, n - (size_t)k);
}

/* Fills the batch from the sink's queue; returns how many it holds. */
static size_t sink_fill(sink_t *s)
{
    while (s->nbatch < s->conf->batch && wf_evq_pop(&s->q, &s->batch[s->nbatch]))
        s->nbatch++;
    return s->nbatch;
}

/* One delivery attempt of the batch. Returns true when all was delivered. */
static bool sink_try(sink_t *s, bool from_spool)
{
    size_t done = 0;
    int rc = s->conf->mod->deliver(s->st, s->batch, s->nbatch, &done);
    done = WF_MIN(done, s->nbatch);
    if (done) {
        atomic_fetch_add_explicit(&s->delivered, done, memory_order_relaxed);
        if (from_spool) {
            int arc = wf_spool_advance(s->spool, done);
            if (arc < 0)
                wf_error("events: sink %s: spool %s: %s", s->conf->name, s->conf->spool_dir, wf_strerror(arc));
            atomic_store_explicit(&s->spool_bytes, wf_spool_bytes(s->spool), memory_order_relaxed);
        }
        memmove(s->batch, s->batch + done, (s->nbatch - done) * sizeof(*s->batch));
        s->nbatch -= done;
    }
    if (rc == 0 && s->nbatch == 0) {
        if (!atomic_load(&s->up))
            wf_info("events: sink %s: delivering again", s->conf->name);
        atomic_store(&s->up, true);
        s->backoff_ms = 0;
        return true;
    }
    if (atomic_load(&s->up))
        wf_warn("events: sink %s: delivery failed: %s; %s", s->conf->name, wf_strerror(rc < 0 ? rc : -EIO),
                s->spool ? "spooling and retrying" : "retrying");
    atomic_store(&s->up, false);
    atomic_fetch_add_explicit(&s->retried, 1, memory_order_relaxed);
    sink_backoff(s);
    return false;
}

/* Waits for new events, a wake-up or the retry time, at most a second so
 * that the stop deadline is looked at. */
static void sink_wait(sink_t *s)
{
    uint64_t now = wf_now_ms();
    uint64_t wait = s->next_try_ms > now ? s->next_try_ms - now : 1000;
    wf_evq_wait(&s->q, WF_MIN(wait, 1000));
}

static void *sink_main(void *arg)
{
    sink_t *s = arg;
    wf_secops_t *h = s->hub;
    /* below the workers: formatting and replaying a spool take CPU that
     * requests must not wait for (an unprivileged thread may lower itself) */
    if (h->conf->sink_nice && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), h->conf->sink_nice) < 0)
        wf_debug("events: sink %s: setpriority: %s", s->conf->name, strerror(errno));
    for (;;) {
        if (atomic_exchange(&s->reopen, false) && s->conf->mod->reopen)
            s->conf->mod->reopen(s->st);
        bool stopping = atomic_load(&h->stopping);
        bool dispatcher_done = stopping && wf_evq_depth(&h->q) == 0;
        bool past_deadline = stopping && wf_now_ms() >= h->stop_deadline_ms;

        if (s->spool && !wf_spool_empty(s->spool)) {
            /* down, or catching up: the spool holds the oldest events, so
             * everything new goes behind them */
            size_t n;
            while ((n = sink_fill(s)) > 0) {
                sink_spool(s, s->batch, n);
                s->nbatch = 0;
            }
            if (dispatcher_done && (!atomic_load(&s->up) || past_deadline))
                break; /* the spool keeps the rest for the next start */
            if (wf_now_ms() < s->next_try_ms) {
                sink_wait(s);
                continue;
            }
            int k = wf_spool_peek(s->spool, s->batch, s->conf->batch);
            atomic_store_explicit(&s->spool_bytes, wf_spool_bytes(s->spool), memory_order_relaxed);
            if (k <= 0) {
                if (k < 0 || !wf_spool_empty(s->spool)) {
                    wf_error("events: sink %s: spool %s: %s", s->conf->name, s->conf->spool_dir,
                             wf_strerror(k < 0 ? k : -WF_EFORMAT));
                    sink_backoff(s);
                }
                continue;
            }
            s->nbatch = (size_t)k;
            sink_try(s, true);
            s->nbatch = 0; /* what failed is still at the spool's head */
            continue;
        }

        if (sink_fill(s) == 0) {
            if (dispatcher_done)
                break;
            wf_evq_wait(&s->q, 1000);
            continue;
        }
        if (wf_now_ms() < s->next_try_ms) {
            /* without a spool, a failed batch waits here in memory and new
             * events in the sink's queue (dropped when it is full) */
            if (past_deadline)
                break;
            sink_wait(s);
            continue;
        }
        if (sink_try(s, false))
            continue;
        if (s->spool) {
            sink_spool(s, s->batch, s->nbatch);
            s->nbatch = 0;
        } else if (past_deadline) {
            break;
        }
    }
    /* what could not be delivered or spooled by the deadline */
    size_t lost = s->nbatch;
    wf_secev_t *tmp = s->batch;
    size_t n;
    s->nbatch = 0;
    while ((n = sink_fill(s)) > 0) {
        if (s->spool)
            sink_spool(s, tmp, n);
        else
            lost += n;
        s->nbatch = 0;
    }
    if (lost) {
        sink_drop(s, lost);
        wf_warn("events: sink %s: %zu events not delivered at shutdown", s->conf->name, lost);
    }
    return NULL;
}

static void collect(wf_metrics_t *m, void *arg);

static void sink_teardown(sink_t *s)
{
    if (s->st)
        s->conf->mod->close(s->st);
    if (s->spool)
        wf_spool_close(s->spool);
    wf_evq_free(&s->q);
    free(s->batch);
}

static void hub_free(wf_secops_t *h)
{
    for (size_t i = 0; i < h->nsinks; i++)
        sink_teardown(&h->sinks[i]);
    free(h->sinks);
    wf_evq_free(&h->q);
    free(h);
}

int wf_secops_start(const wf_secops_conf_t *conf, wf_secops_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!conf->nsinks)
        return 0;
    wf_secops_t *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->conf = conf;
    int rc = wf_evq_init(&h->q, conf->queue, conf->queue / 8);
    if (rc) {
        free(h);
        snprintf(err, errlen, "events: queue of %u: %s", conf->queue, wf_strerror(rc));
        return rc;
    }
    h->sinks = calloc(conf->nsinks ? conf->nsinks : 1, sizeof(*h->sinks));
    if (!h->sinks) {
        hub_free(h);
        return -ENOMEM;
    }
    for (size_t i = 0; i < conf->nsinks; i++) {
        sink_t *s = &h->sinks[i];
        const wf_sink_conf_t *c = &conf->sinks[i];
        h->nsinks = i + 1;
        s->hub = h;
        s->conf = c;
        s->rng = wf_now_ns() ^ ((uint64_t)i << 32) ^ (uint64_t)getpid();
        atomic_init(&s->up, true);
        if ((rc = wf_evq_init(&s->q, c->queue, 1)) || !(s->batch = malloc(c->batch * sizeof(*s->batch)))) {
            rc = rc ? rc : -ENOMEM;
            snprintf(err, errlen, "events: sink %s: %s", c->name, wf_strerror(rc));
            hub_free(h);
            return rc;
        }
        if (c->spool_dir) {
            char e[256];
            if ((rc = wf_spool_open(c->spool_dir, c->spool_max_bytes, c->spool_segment_bytes, c->spool_fsync,
                                    &s->spool, e, sizeof(e)))) {
                snprintf(err, errlen, "events: sink %s: %s", c->name, e);
                hub_free(h);
                return rc;
            }
            atomic_init(&s->spool_bytes, wf_spool_bytes(s->spool));
            if (!wf_spool_empty(s->spool))
                wf_info("events: sink %s: %llu bytes left in the spool by an earlier run; delivering them first",
                        c->name, (unsigned long long)wf_spool_bytes(s->spool));
        }
        char e[256] = "";
        if ((rc = c->mod->open(c->mconf, c->name, &s->st, e, sizeof(e)))) {
            snprintf(err, errlen, "events: sink %s: %s", c->name, e[0] ? e : wf_strerror(rc));
            s->st = NULL;
            hub_free(h);
            return rc;
        }
    }
    if ((rc = pthread_create(&h->dispatcher, NULL, dispatcher_main, h))) {
        snprintf(err, errlen, "events: cannot start a thread: %s", strerror(rc));
        hub_free(h);
        return -rc;
    }
    h->dispatcher_started = true;
    for (size_t i = 0; i < h->nsinks; i++) {
        if ((rc = pthread_create(&h->sinks[i].thread, NULL, sink_main, &h->sinks[i]))) {
            snprintf(err, errlen, "events: cannot start a thread: %s", strerror(rc));
            wf_secops_stop(h);
            return -rc;
        }
        h->sinks[i].started = true;
    }
    wf_metrics_register("events", collect, h);
    *out = h;
    return 0;
}

void wf_secops_stop(wf_secops_t *h)
{
    if (!h)
        return;
    wf_metrics_unregister(h);
    h->stop_deadline_ms = wf_now_ms() + h->conf->stop_timeout_ms;
    atomic_store(&h->stopping, true);
    wf_evq_wake(&h->q);
    if (h->dispatcher_started)
        pthread_join(h->dispatcher, NULL);
    for (size_t i = 0; i < h->nsinks; i++) {
        wf_evq_wake(&h->sinks[i].q);
        if (h->sinks[i].started)
            pthread_join(h->sinks[i].thread, NULL);
    }
    for (size_t i = 0; i < h->nsinks; i++) {
        sink_t *s = &h->sinks[i];
        if (atomic_load(&s->dropped))
            wf_warn("events: sink %s: %llu events dropped in all", s->conf->name,
                    (unsigned long long)atomic_load(&s->dropped));
    }
    if (atomic_load(&h->dropped))
        wf_warn("events: %llu events dropped because the queue was full", (unsigned long long)atomic_load(&h->dropped));
    hub_free(h);
}

void wf_secops_reopen(wf_secops_t *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->nsinks; i++) {
        atomic_store(&h->sinks[i].reopen, true);
        wf_evq_wake(&h->sinks[i].q);
    }
}

void wf_secops_stats(const wf_secops_t *h, wf_secops_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!h)
        return;
    wf_secops_t *hh = (wf_secops_t *)h;
    out->emitted = atomic_load_explicit(&hh->emitted, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&hh->dropped, memory_order_relaxed);
    out->depth = wf_evq_depth(&hh->q);
}

size_t wf_secops_sink_stats(const wf_secops_t *h, wf_secops_sink_stats_t *out, size_t max)
{
    if (!h)
        return 0;
    for (size_t i = 0; i < h->nsinks && i < max; i++) {
        sink_t *s = &h->sinks[i];
        wf_secops_sink_stats_t *o = &out[i];
        memset(o, 0, sizeof(*o));
        snprintf(o->name, sizeof(o->name), "%s", s->conf->name);
        o->type = s->conf->mod->type;
        o->up = atomic_load(&s->up);
        o->queued = atomic_load_explicit(&s->queued, memory_order_relaxed);
        o->delivered = atomic_load_explicit(&s->delivered, memory_order_relaxed);
        o->retried = atomic_load_explicit(&s->retried, memory_order_relaxed);
        o->spooled = atomic_load_explicit(&s->spooled, memory_order_relaxed);
        o->dropped = atomic_load_explicit(&s->dropped, memory_order_relaxed);
        o->spool_bytes = atomic_load_explicit(&s->spool_bytes, memory_order_relaxed);
        o->depth = wf_evq_depth(&s->q);
    }
    return h->nsinks;
}

static void collect(wf_metrics_t *m, void *arg)
{
    wf_secops_t *h = arg;
    wf_secops_stats_t st;
    wf_secops_stats(h, &st);
    wf_metrics_family(m, "wafer_events_emitted_total", WF_METRIC_COUNTER, "Security events queued by the data path.");
    wf_metrics_value(m, (double)st.emitted);
    wf_metrics_family(m, "wafer_events_dropped_total", WF_METRIC_COUNTER,
                      "Security events dropped because the event queue (events.queue) was full.");
    wf_metrics_value(m, (double)st.dropped);
    wf_metrics_family(m, "wafer_events_queue_depth", WF_METRIC_GAUGE, "Security events waiting in the event queue.");
    wf_metrics_value(m, (double)st.depth);
    if (!h->nsinks)
        return;
    wf_secops_sink_stats_t ss[64];
    size_t n = WF_MIN(wf_secops_sink_stats(h, ss, WF_ARRAY_LEN(ss)), WF_ARRAY_LEN(ss));
    static const struct {
        const char *name, *help;
        wf_metric_type_t type;
        size_t off;
    } fams[] = {
        { "wafer_sink_queued_total", "Events handed to the sink.", WF_METRIC_COUNTER,
          offsetof(wf_secops_sink_stats_t, queued) },
        { "wafer_sink_delivered_total", "Events the sink's destination took (or confirmed).", WF_METRIC_COUNTER,
          offsetof(wf_secops_sink_stats_t, delivered) },
        { "wafer_sink_retried_total", "Failed delivery attempts that were retried.", WF_METRIC_COUNTER,
          offsetof(wf_secops_sink_stats_t, retried) },
        { "wafer_sink_spooled_total", "Events written to the sink's on-disk spool.", WF_METRIC_COUNTER,
          offsetof(wf_secops_sink_stats_t, spooled) },
        { "wafer_sink_dropped_total", "Events lost: sink queue full, or spool full or absent.", WF_METRIC_COUNTER,
          offsetof(wf_secops_sink_stats_t, dropped) },
        { "wafer_sink_spool_bytes", "Bytes in the sink's spool.", WF_METRIC_GAUGE,
          offsetof(wf_secops_sink_stats_t, spool_bytes) },
        { "wafer_sink_queue_depth", "Events waiting in the sink's queue.", WF_METRIC_GAUGE,
          offsetof(wf_secops_sink_stats_t, depth) },
    };
    for (size_t f = 0; f < WF_ARRAY_LEN(fams); f++) {
        wf_metrics_family(m, fams[f].name, fams[f].type, fams[f].help);
        for (size_t i = 0; i < n; i++) {
            uint64_t v;
            memcpy(&v, (const char *)&ss[i] + fams[f].off, sizeof(v));
            wf_metrics_sample(m, NULL, "sink", ss[i].name, "type", ss[i].type, NULL, (double)v);
        }
    }
    wf_metrics_family(m, "wafer_sink_up", WF_METRIC_GAUGE, "1 when the sink's last delivery attempt succeeded.");
    for (size_t i = 0; i < n; i++)
        wf_metrics_sample(m, NULL, "sink", ss[i].name, "type", ss[i].type, NULL, ss[i].up ? 1.0 : 0.0);
}
