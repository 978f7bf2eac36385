/*
 * wafer rate limiting: token buckets per client address, per client
 * identity and per route, and concurrent connection counts per client
 * address (docs/configuration.md, `rate_limits`).
 *
 * One table per process, shared by every worker thread: 64 shards, each a
 * mutex and a fixed array of entries found by hashing (kind, key) into a
 * window of 16 slots. The table never grows: when a window is full the
 * entry seen longest ago is reused (a bucket forgotten that way starts full
 * again, which is what an idle client's bucket is anyway) and the eviction
 * is counted. A connection count in use is never evicted; a client that
 * cannot get an entry is let through uncounted (counted as untracked).
 *
 * Keys are stored as 64-bit hashes with a per-process random seed, so an
 * entry is fixed-size whatever the key (identities are strings of any
 * length) and a client cannot aim at another's bucket.
 *
 * The table lives across reloads; rates and limits are passed with each
 * call, so a reload that changes them takes effect at once.
 */
#ifndef WAFER_RATELIMIT_H
#define WAFER_RATELIMIT_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/net.h"
#include <stdbool.h>
#include <stdint.h>

/* A token bucket's settings: `rate` tokens per second, at most `burst`
 * saved up. rate 0: no limit. */
typedef struct {
    double rate;
    uint32_t burst;
} wf_rate_t;

typedef struct {
    wf_rate_t client;          /* per client address */
    wf_rate_t identity;        /* per client identity (mTLS); clients without one are not limited by it */
    wf_rate_t route;           /* per route: every client of a route together */
    uint32_t conn_per_client;  /* concurrent connections per client address (0: no limit) */
    uint32_t max_entries;      /* table size (65536), fixed at start */
} wf_ratelimit_conf_t;

void wf_ratelimit_conf_defaults(wf_ratelimit_conf_t *rc);
/* Parses the `rate_limits` section (node may be NULL: defaults, no limits). */
int wf_ratelimit_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_ratelimit_conf_t *out,
                            wf_conf_err_t *err);
/* Parses one {rate: 10/s, burst: 20} mapping at map[key] (absent: *out
 * unchanged). Rates are "N/s", "N/m", "N/h" or a bare number per second;
 * burst defaults to the rate per second rounded up (at least 1). */
int wf_rate_parse(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, wf_rate_t *out, wf_conf_err_t *err);

typedef enum { WF_RL_CLIENT, WF_RL_IDENTITY, WF_RL_ROUTE, WF_RL__COUNT } wf_rl_kind_t;
/* "client", "identity", "route" */
const char *wf_rl_kind_name(wf_rl_kind_t k);

typedef struct wf_ratelimit wf_ratelimit_t;

/* A table of max_entries entries (rounded up to a power of two per shard). */
wf_ratelimit_t *wf_ratelimit_new(uint32_t max_entries);
void wf_ratelimit_free(wf_ratelimit_t *t);

/* Takes one token from the bucket of (kind, key) at now_ms (monotonic).
 * Returns 0 when the request may go, else the milliseconds until the bucket
 * holds a token again (>= 1). A rate of 0 always allows. Thread-safe. */
uint64_t wf_ratelimit_take(wf_ratelimit_t *t, wf_rl_kind_t kind, wf_str_t key, const wf_rate_t *r, uint64_t now_ms);

/* The key of a client address (its IP without the port) for _take. out
 * needs 17 bytes; returns the key. */
wf_str_t wf_ratelimit_addr_key(const wf_sockaddr_t *a, char *out);

/* Counts one connection of client against limit (0: no limit, nothing
 * counted). Returns 1 when counted (release it at close), 0 when the
 * client is at its limit (not counted, refuse it), 2 when it could not be
 * tracked (table full of live counts: let it in, release nothing). */
int wf_connlimit_acquire(wf_ratelimit_t *t, const wf_sockaddr_t *client, uint32_t limit, uint64_t now_ms);
void wf_connlimit_release(wf_ratelimit_t *t, const wf_sockaddr_t *client);
/* The number of counted connections of a client (tests, admin). */
uint32_t wf_connlimit_count(wf_ratelimit_t *t, const wf_sockaddr_t *client);

typedef struct {
    uint64_t entries;                /* entries in use */
    uint64_t capacity;
    uint64_t limited[WF_RL__COUNT];  /* requests refused by each kind of bucket */
    uint64_t evicted;                /* entries reused before they were idle long enough to be full */
    uint64_t conn_refused;           /* connections over conn_per_client */
    uint64_t untracked;              /* connections let in uncounted (table full) */
} wf_ratelimit_stats_t;
void wf_ratelimit_stats(wf_ratelimit_t *t, wf_ratelimit_stats_t *out);

/* The process-wide table (created by the server at start; NULL: no limits). */
extern wf_ratelimit_t *wf_ratelimit_global;

/* min_rates (slow clients): when a client that moved `bytes` so far falls
 * under `rate` bytes per second, counting only the time it kept wafer
 * waiting: `since` is when the current wait began (ms), `waited` what the
 * earlier waits of the exchange took. The client may keep wafer waiting
 * grace_ms + bytes / rate in all (mod_reqtimeout's MinRate). */
static inline uint64_t wf_min_rate_due(uint64_t since, uint64_t waited, uint64_t bytes, uint64_t rate, uint64_t grace_ms)
{
    uint64_t credit = grace_ms + (bytes >= UINT64_MAX / 2000 ? UINT64_MAX / 4 : bytes * 1000 / rate);
    return credit > waited ? since + (credit - waited) : since;
}

/* Seconds for Retry-After from a wait in milliseconds (rounded up, >= 1). */
static inline uint64_t wf_ratelimit_retry_after(uint64_t wait_ms) { return wait_ms ? (wait_ms + 999) / 1000 : 1; }

#endif
