/*
 * Flow bans (include/wafer/policy.h): a fixed-capacity table of clients,
 * split into shards by a keyed hash of the address, one mutex per shard, so
 * that workers touching different clients rarely meet on a lock. All memory
 * is allocated when the table is made (or resized by a reload); a full shard
 * forgets its least recently active client, preferring one that is not
 * banned, so that a flood of new addresses does not lift existing bans first.
 *
 * While no ban exists anywhere (the usual case), wf_bans_check reads one
 * shared counter and takes no lock.
 */
#include "wafer/policy.h"
#include "wafer/core.h"
#include "wafer/metrics.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define NIL (-1)
#define EVICT_SCAN 16 /* least recent entries looked at for one that is not banned */

typedef struct {
    uint8_t addr[16];
    uint8_t family;      /* 0: free */
    int32_t next;        /* hash chain */
    int32_t newer, older;/* recency list */
    uint64_t last_ms;
    uint64_t until_ms;   /* 0: not banned (or lifted); else the ban's end (may be past: cleared lazily) */
    uint64_t win_start;
    uint32_t cur, prev;  /* detections in the current and the previous window */
    uint32_t banned_count;/* detections counted when the ban started */
} entry_t;

typedef struct {
    pthread_mutex_t mu;
    entry_t *e;
    int32_t *heads;
    uint32_t nbuckets;   /* power of two */
    uint32_t cap, used;
    int32_t free_head;
    int32_t newest, oldest;
    uint64_t started, refused, evicted;
} __attribute__((aligned(64))) shard_t;

struct wf_bans {
    uint32_t nshards;    /* power of two, fixed at creation */
    shard_t *shards;
    uint64_t seed;
    /* configuration, read by workers without a lock */
    uint32_t detections;
    uint64_t window_ms, duration_ms;
    bool fixed_window;
    uint8_t v6bits;      /* ipv6_prefix, fixed at creation: keys depend on it */
    uint64_t nbanned;    /* entries with until_ms != 0, over all shards */
};

wf_bans_t *wf_bans_global;

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static int shard_alloc(shard_t *s, uint32_t cap)
{
    uint32_t nb = 1;
    while (nb < cap)
        nb <<= 1;
    entry_t *e = calloc(cap, sizeof(*e));
    int32_t *h = malloc(nb * sizeof(*h));
    if (!e || !h) {
        free(e);
        free(h);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < nb; i++)
        h[i] = NIL;
    for (uint32_t i = 0; i < cap; i++)
        e[i].next = i + 1 < cap ? (int32_t)(i + 1) : NIL;
    free(s->e);
    free(s->heads);
    s->e = e;
    s->heads = h;
    s->nbuckets = nb;
    s->cap = cap;
    s->used = 0;
    s->free_head = 0;
    s->newest = s->oldest = NIL;
    return 0;
}

static uint32_t shard_cap(uint32_t max_clients, uint32_t nshards)
{
    uint32_t c = (max_clients + nshards - 1) / nshards;
    return c ? c : 1;
}

static void set_conf(wf_bans_t *b, const wf_ban_conf_t *conf)
{
    STORE(b->detections, conf->detections);
    STORE(b->window_ms, conf->window_ms ? conf->window_ms : 1);
    STORE(b->duration_ms, conf->duration_ms);
    STORE(b->fixed_window, conf->fixed_window);
}

wf_bans_t *wf_bans_new(const wf_ban_conf_t *conf)
{
    wf_bans_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    uint32_t max = conf->max_clients ? conf->max_clients : 1;
    /* shards of at least 64 clients, at most 64 shards */
    b->nshards = 1;
    while (b->nshards < 64 && (uint64_t)b->nshards * 2 * 64 <= max)
        b->nshards <<= 1;
    if (getrandom(&b->seed, sizeof(b->seed), 0) != sizeof(b->seed))
        b->seed = wf_now_ns() ^ (uint64_t)(uintptr_t)b;
    if (!(b->shards = aligned_alloc(64, sizeof(shard_t) * b->nshards))) {
        free(b);
        return NULL;
    }
    memset(b->shards, 0, sizeof(shard_t) * b->nshards);
    for (uint32_t i = 0; i < b->nshards; i++) {
        pthread_mutex_init(&b->shards[i].mu, NULL);
        if (shard_alloc(&b->shards[i], shard_cap(max, b->nshards)) < 0) {
            b->nshards = i + 1;
            wf_bans_free(b);
            return NULL;
        }
    }
    b->v6bits = conf->ipv6_prefix >= 1 && conf->ipv6_prefix <= 128 ? conf->ipv6_prefix : 128;
    set_conf(b, conf);
    return b;
}

void wf_bans_free(wf_bans_t *b)
{
    if (!b)
        return;
    for (uint32_t i = 0; i < b->nshards; i++) {
        free(b->shards[i].e);
        free(b->shards[i].heads);
        pthread_mutex_destroy(&b->shards[i].mu);
    }
    free(b->shards);
    free(b);
}

typedef struct {
    uint8_t family;
    uint8_t addr[16];
    uint64_t h;
} key_t_;

static bool make_key(const wf_bans_t *b, const wf_sockaddr_t *client, key_t_ *k)
{
    int n = wf_sockaddr_key(client, &k->family, k->addr);
    if (!n)
        return false;
    if (k->family == AF_INET6 && b->v6bits < 128) {
        unsigned full = b->v6bits / 8, rest = b->v6bits % 8;
        if (rest)
            k->addr[full] &= (uint8_t)(0xff00u >> rest);
        memset(k->addr + full + (rest ? 1 : 0), 0, 16 - full - (rest ? 1 : 0));
    }
    k->h = wf_hash64(k->addr, (size_t)n, b->seed ^ k->family);
    return true;
}

static shard_t *shard_of(wf_bans_t *b, const key_t_ *k)
{
    return &b->shards[(k->h >> 40) & (b->nshards - 1)];
}

static int32_t find(const shard_t *s, const key_t_ *k)
{
    for (int32_t i = s->heads[k->h & (s->nbuckets - 1)]; i != NIL; i = s->e[i].next)
        if (s->e[i].family == k->family && memcmp(s->e[i].addr, k->addr, 16) == 0)
            return i;
    return NIL;
}

static void lru_unlink(shard_t *s, int32_t i)
{
    entry_t *e = &s->e[i];
    if (e->newer != NIL)
        s->e[e->newer].older = e->older;
    else
        s->newest = e->older;
    if (e->older != NIL)
        s->e[e->older].newer = e->newer;
    else
        s->oldest = e->newer;
}

static void lru_push(shard_t *s, int32_t i)
{
    entry_t *e = &s->e[i];
    e->newer = NIL;
    e->older = s->newest;
    if (s->newest != NIL)
        s->e[s->newest].newer = i;
    s->newest = i;
    if (s->oldest == NIL)
        s->oldest = i;
}

static void touch(shard_t *s, int32_t i)
{
    if (s->newest != i) {
        lru_unlink(s, i);
        lru_push(s, i);
    }
}

static uint64_t hash_of(const wf_bans_t *b, const entry_t *e)
{
    return wf_hash64(e->addr, e->family == AF_INET ? 4 : 16, b->seed ^ e->family);
}

static void drop(wf_bans_t *b, shard_t *s, int32_t i)
{
    entry_t *e = &s->e[i];
    int32_t *pp = &s->heads[hash_of(b, e) & (s->nbuckets - 1)];
    while (*pp != i)
        pp = &s->e[*pp].next;
    *pp = e->next;
    lru_unlink(s, i);
    if (e->until_ms)
        __atomic_fetch_sub(&b->nbanned, 1, __ATOMIC_RELAXED);
    memset(e, 0, sizeof(*e));
    e->next = s->free_head;
    s->free_head = i;
    s->used--;
}

static int32_t insert(wf_bans_t *b, shard_t *s, const key_t_ *k, uint64_t now)
{
    if (s->free_head == NIL) {
        int32_t v = s->oldest;
        for (int n = 0, i = s->oldest; n < EVICT_SCAN && i != NIL; n++, i = s->e[i].newer)
            if (s->e[i].until_ms <= now) {
                v = i;
                break;
            }
        drop(b, s, v);
        s->evicted++;
    }
    int32_t i = s->free_head;
    entry_t *e = &s->e[i];
    s->free_head = e->next;
    memset(e, 0, sizeof(*e));
    e->family = k->family;
    memcpy(e->addr, k->addr, 16);
    int32_t *head = &s->heads[k->h & (s->nbuckets - 1)];
    e->next = *head;
    *head = i;
    lru_push(s, i);
    s->used++;
    return i;
}

/* The client's entry, made when it has none, and now the most recently used. */
static entry_t *find_or_insert(wf_bans_t *b, shard_t *s, const key_t_ *k, uint64_t now)
{
    int32_t i = find(s, k);
    if (i == NIL)
        i = insert(b, s, k, now);
    else
        touch(s, i);
    return &s->e[i];
}

/* A ban whose end has passed is lifted, with the detections that led to it. */
static void expire(wf_bans_t *b, entry_t *e, uint64_t now)
{
    if (e->until_ms && e->until_ms <= now) {
        e->until_ms = 0;
        __atomic_fetch_sub(&b->nbanned, 1, __ATOMIC_RELAXED);
    }
}

bool wf_bans_check(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms)
{
    key_t_ k;
    if (!b || LOAD(b->nbanned) == 0 || !make_key(b, client, &k))
        return false;
    shard_t *s = shard_of(b, &k);
    bool banned = false;
    pthread_mutex_lock(&s->mu);
    int32_t i = find(s, &k);
    if (i != NIL) {
        expire(b, &s->e[i], now_ms);
        if (s->e[i].until_ms) {
            banned = true;
            s->refused++;
            if (until_ms)
                *until_ms = s->e[i].until_ms;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return banned;
}

int wf_bans_record(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms, uint32_t *count)
{
    key_t_ k;
    uint32_t det = LOAD(b->detections);
    uint64_t w = LOAD(b->window_ms);
    if (!det || !make_key(b, client, &k))
        return 0;
    shard_t *s = shard_of(b, &k);
    int started = 0;
    pthread_mutex_lock(&s->mu);
    entry_t *e = find_or_insert(b, s, &k, now_ms);
    e->last_ms = now_ms;
    expire(b, e, now_ms);
    if (e->until_ms) /* already banned: its requests should not have reached inspection */
        goto out;
    if (e->cur == 0 && e->prev == 0)
        e->win_start = now_ms;
    uint64_t el = now_ms >= e->win_start ? now_ms - e->win_start : 0;
    if (LOAD(b->fixed_window)) {
        if (el >= w) {
            e->win_start = now_ms;
            e->cur = 0;
            el = 0;
        }
    } else if (el >= 2 * w) {
        e->win_start = now_ms;
        e->cur = e->prev = 0;
        el = 0;
    } else if (el >= w) {
        e->prev = e->cur;
        e->cur = 0;
        e->win_start += w;
        el -= w;
    }
    e->cur++;
    /* sliding estimate: cur + prev * (part of the previous window still inside the last w), scaled by w */
    uint64_t est_w = (uint64_t)e->cur * w + (uint64_t)e->prev * (w - el);
    if (est_w >= (uint64_t)det * w) {
        e->until_ms = now_ms + LOAD(b->duration_ms);
        e->banned_count = (uint32_t)(est_w / w);
        e->cur = e->prev = 0;
        __atomic_fetch_add(&b->nbanned, 1, __ATOMIC_RELAXED);
        s->started++;
        started = 1;
        if (until_ms)
            *until_ms = e->until_ms;
        if (count)
            *count = e->banned_count;
    }
out:
    pthread_mutex_unlock(&s->mu);
    return started;
}

int wf_bans_add(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t duration_ms)
{
    key_t_ k;
    if (!duration_ms || !make_key(b, client, &k))
        return -EINVAL;
    shard_t *s = shard_of(b, &k);
    pthread_mutex_lock(&s->mu);
    entry_t *e = find_or_insert(b, s, &k, now_ms);
    expire(b, e, now_ms);
    if (!e->until_ms) {
        __atomic_fetch_add(&b->nbanned, 1, __ATOMIC_RELAXED);
        e->banned_count = 0;
    }
    e->until_ms = now_ms + duration_ms;
    e->last_ms = now_ms;
    s->started++;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int wf_bans_remove(wf_bans_t *b, const wf_sockaddr_t *client)
{
    key_t_ k;
    if (!make_key(b, client, &k))
        return 0;
    shard_t *s = shard_of(b, &k);
    int lifted = 0;
    pthread_mutex_lock(&s->mu);
    int32_t i = find(s, &k);
    if (i != NIL) {
        expire(b, &s->e[i], wf_now_ms());
        lifted = s->e[i].until_ms != 0;
        drop(b, s, i);
    }
    pthread_mutex_unlock(&s->mu);
    return lifted;
}

static void entry_addr(const entry_t *e, wf_sockaddr_t *a)
{
    memset(a, 0, sizeof(*a));
    if (e->family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        memcpy(&s4->sin_addr, e->addr, 4);
        a->len = sizeof(*s4);
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        s6->sin6_family = AF_INET6;
        memcpy(&s6->sin6_addr, e->addr, 16);
        a->len = sizeof(*s6);
    }
}

void wf_bans_foreach(wf_bans_t *b, uint64_t now_ms,
                     void (*fn)(const wf_sockaddr_t *client, uint64_t until_ms, uint32_t detections, void *arg), void *arg)
{
    for (uint32_t si = 0; si < b->nshards; si++) {
        shard_t *s = &b->shards[si];
        pthread_mutex_lock(&s->mu);
        for (int32_t i = s->newest; i != NIL; i = s->e[i].older) {
            const entry_t *e = &s->e[i];
            if (e->until_ms > now_ms) {
                wf_sockaddr_t a;
                entry_addr(e, &a);
                fn(&a, e->until_ms, e->banned_count, arg);
            }
        }
        pthread_mutex_unlock(&s->mu);
    }
}

void wf_bans_stats(wf_bans_t *b, uint64_t now_ms, wf_bans_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t si = 0; si < b->nshards; si++) {
        shard_t *s = &b->shards[si];
        pthread_mutex_lock(&s->mu);
        for (int32_t i = s->newest; i != NIL; i = s->e[i].older)
            out->active += s->e[i].until_ms > now_ms;
        out->started += s->started;
        out->refused += s->refused;
        out->evicted += s->evicted;
        pthread_mutex_unlock(&s->mu);
    }
}

/* A new max_clients resizes every shard under its lock, keeping its most recent clients. */
static void shard_resize(wf_bans_t *b, shard_t *s, uint32_t cap)
{
    shard_t n = { 0 };
    if (shard_alloc(&n, cap) < 0) {
        wf_warn("bans: cannot resize the table to %u clients per shard: out of memory; keeping %u", cap, s->cap);
        return;
    }
    int32_t i = s->oldest;
    uint32_t skip = s->used > cap ? s->used - cap : 0;
    for (; i != NIL && skip; i = s->e[i].newer, skip--) {
        if (s->e[i].until_ms)
            __atomic_fetch_sub(&b->nbanned, 1, __ATOMIC_RELAXED);
        s->evicted++;
    }
    for (; i != NIL; i = s->e[i].newer) {
        const entry_t *o = &s->e[i];
        key_t_ k = { .family = o->family, .h = hash_of(b, o) };
        memcpy(k.addr, o->addr, 16);
        int32_t j = insert(b, &n, &k, 0);
        int32_t next = n.e[j].next, newer = n.e[j].newer, older = n.e[j].older;
        n.e[j] = *o;
        n.e[j].next = next;
        n.e[j].newer = newer;
        n.e[j].older = older;
    }
    free(s->e);
    free(s->heads);
    s->e = n.e;
    s->heads = n.heads;
    s->nbuckets = n.nbuckets;
    s->cap = n.cap;
    s->used = n.used;
    s->free_head = n.free_head;
    s->newest = n.newest;
    s->oldest = n.oldest;
}

void wf_bans_configure(wf_bans_t *b, const wf_ban_conf_t *conf)
{
    unsigned v6 = conf->ipv6_prefix >= 1 && conf->ipv6_prefix <= 128 ? conf->ipv6_prefix : 128;
    if (v6 != b->v6bits)
        wf_warn("bans: ipv6_prefix %u -> %u takes effect at the next start; keeping /%u", b->v6bits, v6, b->v6bits);
    set_conf(b, conf);
    uint32_t cap = shard_cap(conf->max_clients ? conf->max_clients : 1, b->nshards);
    for (uint32_t si = 0; si < b->nshards; si++) {
        shard_t *s = &b->shards[si];
        pthread_mutex_lock(&s->mu);
        if (s->cap != cap)
            shard_resize(b, s, cap);
        pthread_mutex_unlock(&s->mu);
    }
}

bool wf_bans_get(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms, uint32_t *detections)
{
    key_t_ k;
    if (!b || !make_key(b, client, &k))
        return false;
    shard_t *s = shard_of(b, &k);
    bool banned = false;
    pthread_mutex_lock(&s->mu);
    int32_t i = find(s, &k);
    if (i != NIL && s->e[i].until_ms > now_ms) {
        banned = true;
        if (until_ms)
            *until_ms = s->e[i].until_ms;
        if (detections)
            *detections = s->e[i].banned_count;
    }
    pthread_mutex_unlock(&s->mu);
    return banned;
}

uint64_t wf_bans_duration_ms(wf_bans_t *b)
{
    return LOAD(b->duration_ms);
}

unsigned wf_bans_ipv6_prefix(wf_bans_t *b)
{
    return b->v6bits;
}

static void bans_collect(wf_metrics_t *m, void *arg)
{
    wf_bans_stats_t st;
    wf_bans_stats(arg, wf_now_ms(), &st);
    wf_metrics_family(m, "wafer_bans_active", WF_METRIC_GAUGE, "Clients banned now.");
    wf_metrics_value(m, (double)st.active);
    wf_metrics_family(m, "wafer_bans_started_total", WF_METRIC_COUNTER,
                      "Bans started, by repeated detections or through the admin listener.");
    wf_metrics_value(m, (double)st.started);
    wf_metrics_family(m, "wafer_bans_refused_total", WF_METRIC_COUNTER, "Requests and connections refused by a ban.");
    wf_metrics_value(m, (double)st.refused);
    wf_metrics_family(m, "wafer_bans_evicted_total", WF_METRIC_COUNTER,
                      "Clients forgotten because the ban table was full (ban.max_clients).");
    wf_metrics_value(m, (double)st.evicted);
}

int wf_bans_metrics_register(wf_bans_t *b)
{
    return wf_metrics_register("bans", bans_collect, b);
}
