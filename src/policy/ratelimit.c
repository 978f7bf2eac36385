/* Rate and connection limits: one sharded table per process (see wafer/ratelimit.h). */
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/ratelimit.h"

#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>

#define NSHARDS 64
#define WINDOW 16

wf_ratelimit_t *wf_ratelimit_global;

typedef struct {
    uint64_t key;     /* 0: free */
    uint64_t seen;    /* ms of the last use */
    double tokens;    /* token bucket */
    uint32_t conns;   /* connection count (connection entries) */
} entry_t;

typedef struct {
    pthread_mutex_t lock;
    entry_t *e;
    uint32_t mask;
    char pad[64 - sizeof(pthread_mutex_t) % 64];
} shard_t;

struct wf_ratelimit {
    shard_t shards[NSHARDS];
    uint64_t seed;
    uint32_t per_shard;
    atomic_ullong entries, evicted, conn_refused, untracked;
    atomic_ullong limited[WF_RL__COUNT];
};

/* kinds of entries: the bucket kinds, then connection counts */
#define KIND_CONN WF_RL__COUNT

static const char *const kind_names[] = { "client", "identity", "route" };

const char *wf_rl_kind_name(wf_rl_kind_t k) { return (unsigned)k < WF_RL__COUNT ? kind_names[k] : "?"; }

/* ---- configuration ---- */

void wf_ratelimit_conf_defaults(wf_ratelimit_conf_t *rc)
{
    memset(rc, 0, sizeof(*rc));
    rc->max_entries = 65536;
}

int wf_rate_parse(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, wf_rate_t *out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "rate", "burst", NULL };
    const wf_conf_node_t *n = wf_conf_get(map, key);
    if (!n)
        return 0;
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping such as {rate: 10/s, burst: 20}");
    int rc = wf_conf_check_keys(c, n, keys, err);
    if (rc)
        return rc;
    const wf_conf_node_t *r = wf_conf_get(n, "rate");
    if (!r || r->type != WF_CONF_SCALAR)
        return wf_conf_errorf(c, r ? r : n, err, "expected a rate such as 10/s, 600/m or 3600/h");
    char *end = NULL;
    errno = 0;
    double v = strtod(r->value, &end);
    double per = 1;
    if (end && *end == '/') {
        if (!strcmp(end, "/s"))
            per = 1;
        else if (!strcmp(end, "/m"))
            per = 60;
        else if (!strcmp(end, "/h"))
            per = 3600;
        else
            end = NULL;
    } else if (end && *end) {
        end = NULL;
    }
    if (!end || end == r->value || errno || !isfinite(v) || v < 0 || v / per > 1e9)
        return wf_conf_errorf(c, r, err, "expected a rate such as 10/s, 600/m or 3600/h, got \"%s\"", r->value);
    out->rate = v / per;
    int64_t burst = (int64_t)ceil(out->rate);
    if (burst < 1)
        burst = 1;
    if ((rc = wf_conf_int(c, n, "burst", 1, 1000000000, &burst, err)))
        return rc;
    out->burst = (uint32_t)burst;
    return 0;
}

int wf_ratelimit_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_ratelimit_conf_t *out,
                            wf_conf_err_t *err)
{
    static const char *const keys[] = { "client", "identity", "route", "connections_per_client", "max_entries", NULL };
    if (!node)
        return 0;
    if (node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {client: {rate: 10/s, burst: 20}}");
    int rc;
    int64_t cpc = out->conn_per_client, me = out->max_entries;
    if ((rc = wf_conf_check_keys(c, node, keys, err)) || (rc = wf_rate_parse(c, node, "client", &out->client, err)) ||
        (rc = wf_rate_parse(c, node, "identity", &out->identity, err)) ||
        (rc = wf_rate_parse(c, node, "route", &out->route, err)) ||
        (rc = wf_conf_int(c, node, "connections_per_client", 0, 10000000, &cpc, err)) ||
        (rc = wf_conf_int(c, node, "max_entries", 1024, 1 << 26, &me, err)))
        return rc;
    out->conn_per_client = (uint32_t)cpc;
    out->max_entries = (uint32_t)me;
    return 0;
}

/* ---- the table ---- */

static void collect(wf_metrics_t *m, void *arg);

wf_ratelimit_t *wf_ratelimit_new(uint32_t max_entries)
{
    wf_ratelimit_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    uint32_t per = 16;
    while (per * NSHARDS < max_entries && per < (1u << 24))
        per <<= 1;
    t->per_shard = per;
    if (getrandom(&t->seed, sizeof(t->seed), 0) != sizeof(t->seed))
        t->seed = wf_now_ns() ^ (uint64_t)(uintptr_t)t;
    for (int i = 0; i < NSHARDS; i++) {
        shard_t *s = &t->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->mask = per - 1;
        if (!(s->e = calloc(per, sizeof(entry_t)))) {
            for (int j = 0; j <= i; j++)
                free(t->shards[j].e);
            free(t);
            return NULL;
        }
    }
    wf_metrics_register("ratelimit", collect, t);
    return t;
}

void wf_ratelimit_free(wf_ratelimit_t *t)
{
    if (!t)
        return;
    wf_metrics_unregister(t);
    for (int i = 0; i < NSHARDS; i++) {
        pthread_mutex_destroy(&t->shards[i].lock);
        free(t->shards[i].e);
    }
    free(t);
}

static uint64_t key_hash(const wf_ratelimit_t *t, unsigned kind, wf_str_t key)
{
    uint64_t h = wf_hash64(key.p ? key.p : "", key.n, t->seed ^ ((uint64_t)(kind + 1) * 0x9e3779b97f4a7c15ull));
    return h ? h : 1;
}

/* The entry of h in its shard (locked by the caller), created if need be.
 * A new entry comes from a free slot of the window, else the least recently
 * seen slot whose connection count is 0; NULL when every slot holds a live
 * count. *fresh tells whether the entry is new. */
static entry_t *find(wf_ratelimit_t *t, shard_t *s, uint64_t h, uint64_t now, bool create, bool *fresh)
{
    *fresh = false;
    uint32_t home = (uint32_t)(h >> 32) & s->mask;
    entry_t *free_e = NULL, *old = NULL;
    for (uint32_t k = 0; k < WINDOW && k <= s->mask; k++) {
        entry_t *e = &s->e[(home + k) & s->mask];
        if (e->key == h)
            return e;
        if (!e->key) {
            if (!free_e)
                free_e = e;
        } else if (!e->conns && (!old || e->seen < old->seen)) {
            old = e;
        }
    }
    if (!create)
        return NULL;
    entry_t *e = free_e;
    if (e) {
        atomic_fetch_add_explicit(&t->entries, 1, memory_order_relaxed);
    } else if ((e = old)) {
        atomic_fetch_add_explicit(&t->evicted, 1, memory_order_relaxed);
    } else {
        return NULL;
    }
    memset(e, 0, sizeof(*e));
    e->key = h;
    e->seen = now;
    *fresh = true;
    return e;
}

uint64_t wf_ratelimit_take(wf_ratelimit_t *t, wf_rl_kind_t kind, wf_str_t key, const wf_rate_t *r, uint64_t now_ms)
{
    if (!t || !r || r->rate <= 0)
        return 0;
    uint64_t h = key_hash(t, (unsigned)kind, key);
    shard_t *s = &t->shards[h % NSHARDS];
    uint64_t wait = 0;
    bool fresh;
    pthread_mutex_lock(&s->lock);
    entry_t *e = find(t, s, h, now_ms, true, &fresh);
    if (e) { /* find() only fails with a window full of connection counts: let the request go */
        double burst = r->burst ? r->burst : 1;
        if (fresh)
            e->tokens = burst;
        else if (now_ms > e->seen)
            e->tokens = fmin(burst, e->tokens + (double)(now_ms - e->seen) * r->rate / 1000.0);
        else if (e->tokens > burst) /* a reload lowered the burst */
            e->tokens = burst;
        e->seen = WF_MAX(e->seen, now_ms);
        if (e->tokens >= 1.0) {
            e->tokens -= 1.0;
        } else {
            wait = (uint64_t)ceil((1.0 - e->tokens) * 1000.0 / r->rate);
            if (wait == 0)
                wait = 1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    if (wait)
        atomic_fetch_add_explicit(&t->limited[kind], 1, memory_order_relaxed);
    return wait;
}

wf_str_t wf_ratelimit_addr_key(const wf_sockaddr_t *a, char *out)
{
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        out[0] = 6;
        memcpy(out + 1, &s6->sin6_addr, 16);
        return wf_str(out, 17);
    }
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
    out[0] = 4;
    memcpy(out + 1, &s4->sin_addr, 4);
    return wf_str(out, 5);
}

int wf_connlimit_acquire(wf_ratelimit_t *t, const wf_sockaddr_t *client, uint32_t limit, uint64_t now_ms)
{
    if (!t || !limit)
        return 2;
    char kb[17];
    uint64_t h = key_hash(t, KIND_CONN, wf_ratelimit_addr_key(client, kb));
    shard_t *s = &t->shards[h % NSHARDS];
    int rc;
    bool fresh;
    pthread_mutex_lock(&s->lock);
    entry_t *e = find(t, s, h, now_ms, true, &fresh);
    if (!e) {
        rc = 2;
    } else if (e->conns >= limit) {
        rc = 0;
    } else {
        e->conns++;
        e->seen = now_ms;
        rc = 1;
    }
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        atomic_fetch_add_explicit(&t->conn_refused, 1, memory_order_relaxed);
    else if (rc == 2)
        atomic_fetch_add_explicit(&t->untracked, 1, memory_order_relaxed);
    return rc;
}

void wf_connlimit_release(wf_ratelimit_t *t, const wf_sockaddr_t *client)
{
    if (!t)
        return;
    char kb[17];
    uint64_t h = key_hash(t, KIND_CONN, wf_ratelimit_addr_key(client, kb));
    shard_t *s = &t->shards[h % NSHARDS];
    bool fresh;
    pthread_mutex_lock(&s->lock);
    entry_t *e = find(t, s, h, 0, false, &fresh);
    if (e && e->conns && --e->conns == 0) {
        e->key = 0; /* lookups scan the whole window, so a hole breaks no chain */
        atomic_fetch_sub_explicit(&t->entries, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&s->lock);
}

uint32_t wf_connlimit_count(wf_ratelimit_t *t, const wf_sockaddr_t *client)
{
    char kb[17];
    uint64_t h = key_hash(t, KIND_CONN, wf_ratelimit_addr_key(client, kb));
    shard_t *s = &t->shards[h % NSHARDS];
    bool fresh;
    pthread_mutex_lock(&s->lock);
    entry_t *e = find(t, s, h, 0, false, &fresh);
    uint32_t n = e ? e->conns : 0;
    pthread_mutex_unlock(&s->lock);
    return n;
}

void wf_ratelimit_stats(wf_ratelimit_t *t, wf_ratelimit_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    out->entries = atomic_load_explicit(&t->entries, memory_order_relaxed);
    out->capacity = (uint64_t)t->per_shard * NSHARDS;
    for (int k = 0; k < WF_RL__COUNT; k++)
        out->limited[k] = atomic_load_explicit(&t->limited[k], memory_order_relaxed);
    out->evicted = atomic_load_explicit(&t->evicted, memory_order_relaxed);
    out->conn_refused = atomic_load_explicit(&t->conn_refused, memory_order_relaxed);
    out->untracked = atomic_load_explicit(&t->untracked, memory_order_relaxed);
}

static void collect(wf_metrics_t *m, void *arg)
{
    wf_ratelimit_stats_t st;
    wf_ratelimit_stats(arg, &st);
    wf_metrics_family(m, "wafer_ratelimit_limited_total", WF_METRIC_COUNTER,
                      "Requests refused with 429 by a rate limit, by bucket kind.");
    for (int k = 0; k < WF_RL__COUNT; k++)
        wf_metrics_sample(m, NULL, "kind", kind_names[k], NULL, (double)st.limited[k]);
    wf_metrics_family(m, "wafer_connlimit_refused_total", WF_METRIC_COUNTER,
                      "Connections refused by rate_limits.connections_per_client.");
    wf_metrics_value(m, (double)st.conn_refused);
    wf_metrics_family(m, "wafer_connlimit_untracked_total", WF_METRIC_COUNTER,
                      "Connections let in uncounted because the limit table was full.");
    wf_metrics_value(m, (double)st.untracked);
    wf_metrics_family(m, "wafer_ratelimit_entries", WF_METRIC_GAUGE, "Entries in use in the rate limit table.");
    wf_metrics_value(m, (double)st.entries);
    wf_metrics_family(m, "wafer_ratelimit_capacity", WF_METRIC_GAUGE, "Entries the rate limit table can hold.");
    wf_metrics_value(m, (double)st.capacity);
    wf_metrics_family(m, "wafer_ratelimit_evictions_total", WF_METRIC_COUNTER,
                      "Table entries reused for another key (rate_limits.max_entries reached in a window).");
    wf_metrics_value(m, (double)st.evicted);
}
