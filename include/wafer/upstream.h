/*
 * wafer upstream pools: named groups of upstream servers ("members") with a
 * load-balancing algorithm, active HTTP health checks, passive ejection of
 * members that fail, and bounded retries (docs/configuration.md, `upstreams`).
 *
 * The `upstream:` section is the pool named "default"; `upstreams:` adds
 * named pools that routes choose with `upstream: <name>`.
 *
 * Configuration (wf_upstream_pool_conf_t) belongs to a configuration
 * generation. The runtime (wf_upstreams_t) is built from it once per
 * generation and shared by every worker thread of the process: member state
 * (health, ejection, active connections, counters) lives in atomics that any
 * worker reads without a lock; only the smooth weighted round robin takes a
 * short per-pool lock. A reload builds a new runtime that takes over the
 * health state and counters of members that it keeps (same pool name and
 * address), so a reload neither resets metrics nor sends traffic to a member
 * known to be down.
 *
 * Balancers are modules: a static const struct of hooks each
 * (wf_balancer_round_robin, wf_balancer_least_conn, wf_balancer_hash),
 * found by name in one table (wf_balancer_find).
 */
#ifndef WAFER_UPSTREAM_H
#define WAFER_UPSTREAM_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/http.h"
#include "wafer/net.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WF_UPSTREAM_MAX_MEMBERS 256
#define WF_UPSTREAM_MAX_POOLS 64
#define WF_UPSTREAM_MAX_WEIGHT 1000

/* ---- configuration ---- */

typedef struct {
    char *address;       /* as written (also the metrics label) */
    wf_sockaddr_t addr;
    uint32_t weight;     /* 1..1000, default 1 */
    bool backup;         /* used only when no primary member is available */
} wf_upstream_member_conf_t;

typedef enum { WF_BALANCE_ROUND_ROBIN, WF_BALANCE_LEAST_CONN, WF_BALANCE_HASH } wf_balance_t;

typedef struct {
    bool enabled;        /* a health_check section was given */
    char *path;          /* "/" */
    char *host;          /* Host header; NULL: the member's address */
    uint64_t interval_ms;/* 5s: between checks of one member */
    uint64_t timeout_ms; /* 2s: connect + response status line */
    int expect_status;   /* 0: any 2xx or 3xx; else exactly this status */
    uint32_t rise;       /* consecutive successes that bring a down member up (2) */
    uint32_t fall;       /* consecutive failures that take an up member down (3) */
} wf_health_conf_t;

typedef struct {
    char *name;                       /* "default" for the `upstream:` section */
    wf_upstream_member_conf_t *members;
    size_t nmembers;
    wf_balance_t balance;             /* round_robin */
    char *hash_header;                /* hash_key "header:NAME": NAME; NULL: the client address */
    wf_health_conf_t health;
    uint32_t max_fails;               /* passive: failures within fail_timeout that eject (1; 0: never) */
    uint64_t fail_timeout_ms;         /* passive: the window, and how long an ejection lasts (10s) */
    int retries;                      /* extra members tried after a failure; -1 (default): every member */
} wf_upstream_pool_conf_t;

/* Parses the pool keys that the `upstream:` section may carry besides its
 * servers and connection settings (balance, hash_key, health_check,
 * passive, retries; weight and backup on servers) into pools[0] named
 * "default" (its members are sc_servers), then every pool of the optional
 * `upstreams:` mapping (root key). Returns 0 or WF_ECONFIG / -ENOMEM. */
int wf_upstream_pools_parse(const wf_conf_t *c, const wf_conf_node_t *root, const wf_upstream_member_conf_t *defaults,
                            size_t ndefaults, wf_upstream_pool_conf_t **pools, size_t *npools, wf_conf_err_t *err);
void wf_upstream_pools_free(wf_upstream_pool_conf_t *pools, size_t npools);
/* The index of the pool called name, or -1. */
int wf_upstream_pool_index(const wf_upstream_pool_conf_t *pools, size_t npools, const char *name);

/* The keys of a server entry and of a pool, for the `upstream:` section's
 * own key check (NULL-terminated). */
extern const char *const wf_upstream_member_keys[];
extern const char *const wf_upstream_pool_keys[];

/* ---- runtime ---- */

typedef struct wf_upstream_pool wf_upstream_pool_t;

typedef struct wf_upstream_member {
    const wf_upstream_member_conf_t *conf;
    wf_upstream_pool_t *pool;
    uint32_t index;                /* in the pool */

    atomic_bool healthy;           /* active checks' verdict (true when checks are off) */
    atomic_ullong ejected_until;   /* passive: monotonic ms; 0 or past: not ejected */
    atomic_llong active;           /* requests attached now (least_conn), every worker */

    /* counters (relaxed atomics, any worker) */
    atomic_ullong requests;        /* requests sent to it (attempts) */
    atomic_ullong failures;        /* connect errors/timeouts, resets and timeouts before a response */
    atomic_ullong ejections;       /* passive ejections */
    atomic_ullong health_changes;  /* up/down transitions by active checks */
    atomic_ullong checks_failed;   /* failed active checks */

    /* passive accounting (under the pool lock) */
    uint32_t fails;
    uint64_t fail_window;

    /* round robin (under the pool lock) */
    int64_t cw;

    /* active checks (health thread only) */
    uint32_t rise_n, fall_n;
    uint64_t next_check;
} wf_upstream_member_t;

struct wf_balancer;

struct wf_upstream_pool {
    const wf_upstream_pool_conf_t *conf;
    wf_upstream_member_t *m;
    size_t n;
    size_t nprimary;
    const struct wf_balancer *bal;
    void *bal_state;               /* the hash ring */
    pthread_mutex_t lock;
    atomic_uint tie;               /* least_conn tie breaker */
    atomic_ullong unavailable;     /* requests answered 503: no member available */
    atomic_ullong retries;         /* requests resent to another member */
    uint64_t id;                   /* hash of the name (idle connections remember it) */
};

/* Which members a request has tried: a bitmap over member indices. */
typedef struct {
    uint64_t bits[WF_UPSTREAM_MAX_MEMBERS / 64];
} wf_upstream_tried_t;

static inline bool wf_upstream_tried(const wf_upstream_tried_t *t, uint32_t i) { return (t->bits[i >> 6] >> (i & 63)) & 1; }
static inline void wf_upstream_tried_set(wf_upstream_tried_t *t, uint32_t i) { t->bits[i >> 6] |= 1ull << (i & 63); }

/* Whether a member may get requests at now_ms: healthy and not ejected. */
static inline bool wf_upstream_member_up(const wf_upstream_member_t *m, uint64_t now_ms)
{
    return atomic_load_explicit(&m->healthy, memory_order_relaxed) &&
           atomic_load_explicit(&m->ejected_until, memory_order_relaxed) <= now_ms;
}

/* A balancer: a static const struct of hooks. pick returns an available
 * member not in tried, among the primaries (backup false) or the backups,
 * or NULL. */
typedef struct wf_balancer {
    const char *name;
    int (*init)(wf_upstream_pool_t *p);   /* may be NULL */
    void (*free)(wf_upstream_pool_t *p);  /* may be NULL */
    wf_upstream_member_t *(*pick)(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried, bool backup,
                                  uint64_t now_ms);
} wf_balancer_t;

extern const wf_balancer_t wf_balancer_round_robin; /* smooth weighted round robin (nginx) */
extern const wf_balancer_t wf_balancer_least_conn;  /* fewest active requests per weight */
extern const wf_balancer_t wf_balancer_hash;        /* consistent hashing: a ketama ring, 160 points per weight */
/* By configuration name ("round_robin", "least_conn", "hash"), or NULL. */
const wf_balancer_t *wf_balancer_find(const char *name);

/* Builds and frees one pool's runtime (used by wf_upstreams_new; also by
 * the unit tests on their own). Every member starts healthy. */
int wf_upstream_pool_init(wf_upstream_pool_t *p, const wf_upstream_pool_conf_t *conf);
void wf_upstream_pool_free(wf_upstream_pool_t *p);

/* The key a request hashes to (hash pools): the configured header's value,
 * or the client address when the pool hashes on it or the header is absent. */
uint64_t wf_upstream_request_key(const wf_upstream_pool_t *p, wf_str_t client_ip, const wf_http_request_t *req);

/* Picks a member for a request: a primary first, a backup when no primary
 * is available; never one in tried. NULL: none is available. */
wf_upstream_member_t *wf_upstream_pick(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried,
                                       uint64_t now_ms);
/* How many members one request may try in all (1 + retries). */
int wf_upstream_max_tries(const wf_upstream_pool_t *p);

/* A request attaches to / leaves a member (active count, requests). */
void wf_upstream_attach(wf_upstream_member_t *m);
void wf_upstream_detach(wf_upstream_member_t *m);
/* A failure that counts towards passive ejection (connect error or timeout,
 * reset or close or timeout before a response). Returns true when it
 * ejected the member. Never ejects the only member of a pool. */
bool wf_upstream_failed(wf_upstream_member_t *m, uint64_t now_ms);

/* Every pool of one configuration generation, and its health checker. */
typedef struct wf_upstreams {
    wf_upstream_pool_t *pools;
    size_t npools;
    struct wf_tls_client *tls;     /* upstream.tls: checks speak TLS too (set before wf_upstreams_start) */
    /* health checker thread */
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    int wake[2];
    bool metrics;
} wf_upstreams_t;

/* Builds the runtime of a configuration's pools. prev (may be NULL) is the
 * runtime of the previous generation: members with the same pool name and
 * address keep their health state, ejection and counters. */
int wf_upstreams_new(const wf_upstream_pool_conf_t *pools, size_t npools, const wf_upstreams_t *prev,
                     wf_upstreams_t **out);
/* Starts the health-check thread (if a pool has checks) and the metrics
 * collector (wf_metrics_register). Returns 0 or -errno. */
int wf_upstreams_start(wf_upstreams_t *u);
/* Stops its health checks and metrics (a newer generation took over);
 * requests still in flight keep using the last known state. */
void wf_upstreams_retire(wf_upstreams_t *u);
void wf_upstreams_free(wf_upstreams_t *u);

/* One active check of member m, blocking up to the pool's health_check
 * timeout (the health thread runs the same steps for every member at once,
 * without blocking). Returns 0 when
 * the member answered as expected, else -errno / -WF_EUPSTREAM / -WF_ETIMEOUT. */
struct wf_tls_client;
int wf_upstream_check_once(const wf_upstream_pool_t *p, const wf_upstream_member_t *m, struct wf_tls_client *tls);

#endif
