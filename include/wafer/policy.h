/*
 * wafer policy: from the model's per-unit class probabilities to a verdict.
 *
 * A unit crosses when, for some attack class c (every label but labels[0],
 * the benign class), probs[c] >= thresholds[c] (wafer.json "thresholds").
 * Its margin is probs[c] - thresholds[c]; the unit's class is the crossing
 * class with the largest margin. A request is an attack when any of its units
 * crosses; the request's class and score are those of the unit with the
 * largest margin (the deciding unit; the first one on a tie).
 *
 * A benign request is reported with the benign class and, as its score, the
 * lowest benign probability among its classified units (1 when none was
 * classified): the score is always the model's probability of the class
 * named.
 */
#ifndef WAFER_POLICY_H
#define WAFER_POLICY_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    bool attack; /* some attack class reached its threshold */
    int cls;     /* attack: the crossing class with the largest margin; else the attack class with the
                    largest (negative) margin, or 0 when the model has no attack class */
    float score; /* probs[cls] */
    float margin;/* probs[cls] - thresholds[cls] */
} wf_unit_verdict_t;

/* Decides one unit from its num_labels probabilities. A NaN probability
 * never crosses. Returns out->attack. */
bool wf_verdict_unit(const float *probs, const float *thresholds, int num_labels, wf_unit_verdict_t *out);

typedef struct {
    bool attack;
    int cls;          /* deciding unit's class; 0 (benign) when not an attack */
    float score;      /* attack: the deciding unit's probability of cls; benign: min benign probability */
    float margin;     /* the deciding unit's margin (attack) */
    long unit;        /* index (as passed to wf_verdict_add) of the deciding unit; -1 when none */
    size_t units;     /* units added */
    size_t crossing;  /* units that crossed */
} wf_verdict_t;

void wf_verdict_init(wf_verdict_t *v);
/* Adds one classified unit (its index, for reporting) and returns whether
 * it crossed; *uv (may be NULL) receives the unit's own verdict. */
bool wf_verdict_add(wf_verdict_t *v, long unit, const float *probs, const float *thresholds, int num_labels,
                    wf_unit_verdict_t *uv);

/* ======================================================================
 * The firewall policy (the `policy:` section, docs/configuration.md):
 * modes and thresholds per route, exclusions, client networks, flow bans.
 * ====================================================================== */

#include "wafer/conf.h"
#include "wafer/infer.h"
#include "wafer/inspect.h"
#include "wafer/net.h"
#include "wafer/ratelimit.h"
#include <stdint.h>

typedef enum {
    WF_MODE_OFF,     /* no inspection (requests forwarded as a plain proxy would) */
    WF_MODE_MONITOR, /* inspect; log a security event; forward unchanged */
    WF_MODE_TAG,     /* inspect; forward with X-Wafer-Verdict and X-Wafer-Score; log */
    WF_MODE_BLOCK,   /* inspect; refuse attacks with 403 and a request id; log */
} wf_mode_t;

/* "off", "monitor", "tag", "block" */
const char *wf_mode_name(wf_mode_t m);

/* An exclusion silences detections without turning inspection off: a unit
 * matching every given field never crosses for the given classes. Each field
 * is optional (NULL / -1 / empty: any). */
typedef struct {
    int kind;          /* wf_unit_kind_t, or -1 for any */
    char *name;        /* unit name: exact, or a prefix when it ends in '*' ("user.tags[*" ...) */
    char **classes;    /* class names; none: every class */
    size_t nclasses;
    uint32_t class_mask; /* resolved by wf_policy_bind: bit c set = class c excluded */
} wf_exclusion_t;

/* A route: requests whose Host matches `host` and whose path starts with
 * `path`. The most specific route wins: an exact host before a wildcard
 * ("*.example.com") before any host, then the longest path prefix; ties go
 * to the route written first. Unset settings come from the policy's top
 * level. Parts of wafer that act per route (upstream pools, identity
 * policies, rate limits) keep their settings here too. */
typedef struct wf_route {
    char *name;        /* for logs, events and metrics; "route<N>" when not given */
    char *host;        /* NULL: any */
    char *path;        /* prefix, "/" when not given */
    wf_mode_t mode;
    bool mode_set;
    float thresholds[WF_MAX_LABELS];   /* resolved by wf_policy_bind: per class index */
    char **threshold_names;                   /* as written: class names ... */
    float *threshold_values;                  /* ... and their thresholds */
    size_t nthresholds;
    wf_exclusion_t *excl;
    size_t nexcl;
    bool inherit_exclusions;                  /* the top-level exclusions apply too (default true) */
    char *where;       /* "file:line:col: policy.routes[N]", for wf_policy_bind's messages */
    struct wf_tls_access *access; /* `access:` identities that may reach the route (wafer/tls.h); NULL: anyone */
    char *upstream;    /* `upstream:` the pool (wafer/upstream.h) of the route's requests; NULL: "default" */
    int upstream_pool; /* its index among the server's pools, resolved with the server configuration (0: default) */
    wf_rate_t rate_limit; /* `rate_limit:` the route's own token bucket; rate 0: rate_limits.route applies */
    /* Parts that keep per-route settings add their fields here and their keys
     * to route_keys[] in src/policy/policy.c (one parse function per key). */
} wf_route_t;

/* An IPv4 or IPv6 network (an address is a /32 or /128). */
typedef struct {
    uint8_t family;    /* AF_INET or AF_INET6 */
    uint8_t bits;
    uint8_t addr[16];
} wf_cidr_t;

/* Parses "192.0.2.0/24", "2001:db8::/32" or a bare address. 0 or -EINVAL.
 * Host bits past the prefix are cleared ("192.0.2.7/24" is 192.0.2.0/24). An
 * IPv4-mapped IPv6 network (::ffff:0:0/96 and longer) is stored as the IPv4
 * network it covers. */
int wf_cidr_parse(const char *s, wf_cidr_t *out);
/* Whether the address is in the network. An IPv4-mapped IPv6 client
 * (::ffff:a.b.c.d, from a dual-stack socket) is matched as the IPv4 address
 * a.b.c.d; ::/0 therefore covers IPv6 clients only (write 0.0.0.0/0 too for
 * every client). */
bool wf_cidr_match(const wf_cidr_t *net, const wf_sockaddr_t *a);
/* Formats "addr/bits" into out (at least 50 bytes); returns its length. */
size_t wf_cidr_format(const wf_cidr_t *net, char *out, size_t outlen);
/* The client's address as a family and 4 or 16 bytes, an IPv4-mapped IPv6
 * address turned into IPv4. Returns the address length (4 or 16), or 0 when
 * the sockaddr is neither AF_INET nor AF_INET6. */
int wf_sockaddr_key(const wf_sockaddr_t *a, uint8_t *family, uint8_t addr[16]);

typedef struct {
    uint32_t detections;   /* detections within `window` that ban a client (5; 0: bans off) */
    uint64_t window_ms;    /* 60s */
    uint64_t duration_ms;  /* how long a ban lasts (10m) */
    uint32_t max_clients;  /* clients tracked (detections and bans); the oldest are forgotten past it (65536) */
    bool fixed_window;     /* count in fixed windows from a client's first detection; default false: a sliding
                              window (the previous window's count weighted by its overlap with the last `window`) */
    uint8_t ipv6_prefix;   /* IPv6 clients are counted and banned per network of this length (128: per address;
                              64: per subscriber, who may hold a whole /64). Fixed when the table is made */
} wf_ban_conf_t;

typedef struct wf_policy {
    wf_mode_t mode;        /* default "block" */
    char **threshold_names;
    float *threshold_values;
    size_t nthresholds;
    wf_exclusion_t *excl;
    size_t nexcl;
    wf_cidr_t *allow;      /* clients never inspected nor banned */
    size_t nallow;
    wf_cidr_t *deny;       /* clients refused (403) before parsing */
    size_t ndeny;
    wf_ban_conf_t ban;
    wf_route_t *routes;
    size_t nroutes;
    wf_route_t root;       /* the top level as a route: matches everything, last; named "default". Its
                              thresholds and exclusions are the arrays above (owned by the policy) */
    struct wf_route_ix *order; /* the routes, most specific first, with what matching needs (policy.c) */
    int nlabels;           /* set by wf_policy_bind */
    bool bound;
} wf_policy_t;

/* Parses the `policy` section (node may be NULL: every default). Class names
 * are checked later, against the model, by wf_policy_bind. */
int wf_policy_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_policy_t **out, wf_conf_err_t *err);
void wf_policy_free(wf_policy_t *p);
/* Resolves class names against the model's labels and fills every route's
 * thresholds (the model's wafer.json thresholds, then the top level, then
 * the route's own). Fails with a message naming an unknown class. */
int wf_policy_bind(wf_policy_t *p, const char *const *labels, const float *model_thresholds, int nlabels,
                   char *err, size_t errlen);

/* The route for a request (never NULL: the top level when none matches).
 *
 * host is the Host header (or the absolute-form authority): a port is
 * ignored ("api.example.com:8443", "[::1]:80"), so is one trailing dot, and
 * names compare case-insensitively. "*.example.com" matches any name that
 * ends in ".example.com" (a.example.com, a.b.example.com), not example.com
 * itself; among wildcards the longest suffix wins.
 *
 * path may be the raw path as received: it is matched as an upstream will
 * resolve it (percent-escapes decoded once, %2F included; "." and ".."
 * segments resolved; repeated slashes merged), so that "/%61dmin",
 * "/x/../admin" or "//admin" cannot escape the route of "/admin". Decoding
 * it again does no harm to plain paths but would decode "%2561" twice.
 * A route's path matches at a segment boundary: "/api" matches "/api",
 * "/api/" and "/api/v1", not "/apix"; a path that ends in '/' ("/api/")
 * matches what starts with it, and not "/api" itself. Paths compare
 * case-sensitively. */
const wf_route_t *wf_policy_route(const wf_policy_t *p, wf_str_t host, wf_str_t path);

typedef enum { WF_CLIENT_DEFAULT, WF_CLIENT_ALLOW, WF_CLIENT_DENY } wf_client_list_t;
/* Whether the client is on the allow list, the deny list (deny wins), or neither. */
wf_client_list_t wf_policy_client(const wf_policy_t *p, const wf_sockaddr_t *client);

/* The thresholds that apply to one unit on a route: the route's, with
 * excluded classes set to +infinity (never crossed). out has nlabels entries.
 * Returns whether any class was excluded for this unit. */
bool wf_policy_unit_thresholds(const wf_policy_t *p, const wf_route_t *r, const wf_unit_t *u, float *out);

/* ---- flow bans: one table per process, shared by the workers, kept across reloads ---- */

typedef struct wf_bans wf_bans_t;

wf_bans_t *wf_bans_new(const wf_ban_conf_t *conf);
void wf_bans_free(wf_bans_t *b);
/* Applies a reloaded configuration (existing bans keep their end time). */
void wf_bans_configure(wf_bans_t *b, const wf_ban_conf_t *conf);
/* Whether the client's address is banned at now_ms (monotonic ms); when it is
 * and until_ms is not NULL, *until_ms receives the end. Thread-safe, cheap. */
bool wf_bans_check(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms);
/* Counts one detection from the client. Returns 1 if it started a ban (then
 * *until_ms and *count are set), 0 otherwise. Thread-safe. */
int wf_bans_record(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms, uint32_t *count);
/* Bans an address now for duration_ms (the admin endpoint). */
int wf_bans_add(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t duration_ms);
/* Lifts a ban (and forgets the client's detections). Returns 1 if one was lifted. */
int wf_bans_remove(wf_bans_t *b, const wf_sockaddr_t *client);
/* Looks a client up without counting anything: whether it is banned at
 * now_ms, with the ban's end and the detections that started it (0 for a
 * manual ban). */
bool wf_bans_get(wf_bans_t *b, const wf_sockaddr_t *client, uint64_t now_ms, uint64_t *until_ms, uint32_t *detections);
/* The configured ban duration (the admin endpoint's default). */
uint64_t wf_bans_duration_ms(wf_bans_t *b);
/* The IPv6 prefix length clients are grouped by (128: none). */
unsigned wf_bans_ipv6_prefix(wf_bans_t *b);
/* Calls fn for every active ban (under the table's lock: fn must not call back). */
void wf_bans_foreach(wf_bans_t *b, uint64_t now_ms,
                     void (*fn)(const wf_sockaddr_t *client, uint64_t until_ms, uint32_t detections, void *arg), void *arg);
/* Counters for metrics. */
typedef struct {
    uint64_t active;      /* bans in force */
    uint64_t started;     /* bans started (by detections or the admin endpoint) */
    uint64_t refused;     /* wf_bans_check answers "banned" */
    uint64_t evicted;     /* clients forgotten because max_clients was reached */
} wf_bans_stats_t;
void wf_bans_stats(wf_bans_t *b, uint64_t now_ms, wf_bans_stats_t *out);

/* The process-wide table (created by the server at start). */
extern wf_bans_t *wf_bans_global;

/* Registers the table's Prometheus metrics (wafer_bans_active,
 * wafer_bans_started_total, wafer_bans_refused_total, wafer_bans_evicted_total). */
int wf_bans_metrics_register(wf_bans_t *b);

/* ---- the admin endpoints for bans (src/policy/bans_admin.c, docs/admin.md) ---- */

#include "wafer/admin.h"

/* Registers the three handlers below on the admin listener, with b as their
 * argument. Call before wf_admin_start. Returns 0 or wf_admin_handle's error. */
int wf_bans_admin_register(wf_bans_t *b);
/* GET /bans: a JSON array of the active bans, most recent first per shard:
 *   [{"client":"192.0.2.1","until":"2026-11-21T10:00:00.000Z","seconds_left":598,"detections":5}, ...]
 * GET /bans/<ip>: that one object, or 404. */
void wf_bans_admin_get(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans);
/* DELETE /bans/<ip>: lifts the ban (200 with {"client":...,"lifted":true}), or 404 when not banned. */
void wf_bans_admin_delete(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans);
/* POST /bans/<ip>?duration=10m: bans the address for the duration (default:
 * the configured ban duration; at most 365 days); 200 with the ban's object. */
void wf_bans_admin_post(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans);

#endif
