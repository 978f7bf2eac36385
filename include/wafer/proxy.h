/*
 * wafer reverse proxy: the server configuration (YAML, documented key by key
 * in docs/configuration.md), the header rewriting a proxy does on the way
 * through, request ids, and the entry point that runs the server.
 *
 * Configuration errors name the file, line, column and key:
 *     wafer.yaml:7:5: upstream.servers[0].address: expected host:port or [v6]:port, got "nowhere"
 */
#ifndef WAFER_PROXY_H
#define WAFER_PROXY_H

#include "wafer/admin.h"
#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/http.h"
#include "wafer/net.h"
#include "wafer/ratelimit.h"
#include "wafer/upstream.h"
#include "wafer/secops.h"
#include <stdbool.h>

typedef struct {
    char *address;      /* as written */
    wf_sockaddr_t addr;
    int backlog;
    struct wf_tls_server *tls;  /* NULL: plain TCP (wafer/tls.h) */
} wf_listen_conf_t;

typedef struct {
    char *address;
    wf_sockaddr_t addr;
} wf_upstream_server_t;

typedef enum { WF_ACCESS_LOG_OFF, WF_ACCESS_LOG_STDOUT, WF_ACCESS_LOG_FILE } wf_access_log_kind_t;

typedef struct {
    char *file;                 /* the configuration file */
    int workers;                /* resolved: "auto" becomes the number of online CPUs */
    bool workers_auto;
    char *pid_file;             /* NULL: none */

    int log_level;              /* wf_log_level_t */
    char *error_log;            /* NULL: stderr */
    wf_access_log_kind_t access_log;
    char *access_log_path;      /* for WF_ACCESS_LOG_FILE */

    wf_listen_conf_t *listen;
    size_t nlisten;

    wf_upstream_server_t *servers;
    size_t nservers;
    uint32_t up_keepalive;      /* idle upstream connections kept per worker */
    uint64_t up_connect_timeout_ms;
    uint64_t up_timeout_ms;     /* response header, and between reads/writes */
    uint64_t up_idle_timeout_ms;/* idle pooled connections are closed after this */
    struct wf_tls_client *up_tls; /* upstream.tls; NULL: plain TCP to upstreams */

    bool xff, forwarded, via;
    char *request_id_header;    /* NULL or "": no request id header is sent */
    bool trust_request_id;
    char *identity_header;      /* proxy.client_identity_header when pass_client_identity, else NULL */

    uint64_t max_header_bytes, max_headers, max_uri, max_body;
    uint64_t max_connections;   /* client connections per worker */
    uint64_t buffer_size;       /* per direction per connection */

    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms, send_timeout_ms;
    uint64_t shutdown_timeout_ms;

    /* upstream pools: [0] is "default" (the upstream section), then `upstreams` (wafer/upstream.h) */
    wf_upstream_pool_conf_t *pools;
    size_t npools;

    wf_ratelimit_conf_t rate_limits;   /* `rate_limits` (wafer/ratelimit.h) */

    /* slow clients (`min_rates`): each direction must move at least `rate`
     * bytes per second on average over the time the client kept wafer
     * waiting, after `grace` of such waiting; rate 0: off */
    struct { uint64_t rate, grace_ms; } min_rate_header, min_rate_body, min_rate_send;
    uint64_t max_connections_total; /* client connections of the whole process (0: no cap beyond workers x max_connections) */

    wf_http_limits_t http;      /* request limits for the parser, from the above */
    wf_http_limits_t http_resp; /* response limits (no body limit) */

    struct wf_policy *policy;        /* the `policy` section (always set: defaults when absent) */
    struct wf_detect_conf *detect;   /* the `detection` section (enabled false when absent) */
    wf_admin_conf_t admin;      /* the `admin:` section (wafer/admin.h); its defaults come with
                                 * wf_server_conf_parse (all zero, i.e. off, after _defaults alone) */
    wf_secops_conf_t *events;   /* the `events:` section (never NULL after parsing) */
    struct wf_misp_conf *misp;  /* the `misp:` section (wafer/misp.h; never NULL after parsing) */
} wf_server_conf_t;

/* Fills every default (the values documented in docs/configuration.md). */
void wf_server_conf_defaults(wf_server_conf_t *sc);
/* Reads the server sections of a loaded YAML document into sc (defaults
 * first). Unknown keys are errors. Returns 0 or WF_ECONFIG with err set. */
int wf_server_conf_parse(const wf_conf_t *c, wf_server_conf_t *sc, wf_conf_err_t *err);
/* Loads a file: wf_conf_load_file + wf_server_conf_parse. *out is set on success. */
int wf_server_conf_load(const char *path, wf_server_conf_t **out, wf_conf_err_t *err);
void wf_server_conf_free(wf_server_conf_t *sc);
/* What `wafer -t` checks beyond the file: the detection model loads and the
 * policy's class names exist in it. Returns 0, or -1 with a message. */
int wf_server_conf_check(wf_server_conf_t *sc, char *err, size_t errlen);

/* ---- header rewriting ---- */

/* Per-request facts the rewriting needs. */
typedef struct {
    wf_str_t client_ip;     /* textual address of the client, no brackets */
    bool client_v6;
    wf_str_t request_id;    /* the id this request carries upstream (see wf_proxy_request_id) */
    wf_str_t default_host;  /* Host to send when the request had none (HTTP/1.0) */
    wf_str_t identity;      /* the client's mTLS identity, sent in sc->identity_header when set */
} wf_proxy_req_ctx_t;

/* Room needed for the rewritten request head of a request whose header
 * block was head_len bytes. */
size_t wf_proxy_request_head_size(const wf_server_conf_t *sc, const wf_http_request_t *req, size_t head_len,
                                  const wf_proxy_req_ctx_t *ctx);

/* Writes the upstream request head: "METHOD origin-form HTTP/1.1", every
 * field except hop-by-hop ones (fixed list and those named in Connection;
 * Host, Content-Length and Transfer-Encoding are never dropped that way),
 * Host (the absolute-form authority replaces it), X-Forwarded-For appended
 * (one combined field), Forwarded and Via added, the request id header set,
 * Expect removed (the proxy answers 100-continue itself), the client's own
 * identity header (sc->identity_header) removed and ctx->identity sent in
 * it when not empty, Content-Length
 * once / Transfer-Encoding: chunked as framed. Returns the length, or
 * -WF_ELIMIT if cap is too small. */
int wf_proxy_request_head(const wf_server_conf_t *sc, const wf_http_request_t *req, const wf_proxy_req_ctx_t *ctx,
                          char *out, size_t cap);

enum {
    WF_PROXY_RESP_CLOSE = 1u << 0,      /* tell the client the connection closes */
    WF_PROXY_RESP_KEEPALIVE10 = 1u << 1,/* HTTP/1.0 client that keeps alive: "Connection: keep-alive" */
    WF_PROXY_RESP_DECHUNK = 1u << 2,    /* body is sent decoded (HTTP/1.0 client): drop Transfer-Encoding */
    WF_PROXY_RESP_VIA = 1u << 3,        /* add "Via: 1.x wafer" */
};

/* Writes the client response head from an upstream response: status line
 * as received, hop-by-hop fields removed, Transfer-Encoding kept for a
 * chunked body forwarded as framed, Connection as flags say. Returns the
 * length or -WF_ELIMIT. Needs at most head_len + 64 bytes. */
int wf_proxy_response_head(const wf_http_response_t *res, const char *head, size_t head_len, unsigned flags,
                           char *out, size_t cap);

/* A generated response (errors, 408, ...): status line, Content-Type
 * text/plain, Content-Length, Connection: close, and a short body that
 * names the status and the request id. Returns the length or -WF_ELIMIT. */
int wf_proxy_error_response(int status, wf_str_t request_id, char *out, size_t cap);

/* ---- request ids ---- */

#define WF_REQUEST_ID_MAX 128

/* A random 32-hex-digit id from a per-thread state (seeded with getrandom
 * when *state is 0). out has room for 33 bytes; returns 32. */
size_t wf_request_id_generate(uint64_t *state, char *out);
/* An incoming id is kept (trust_request_id) only if it is 1..128 bytes of
 * [A-Za-z0-9._:-]. */
bool wf_request_id_valid(wf_str_t id);

/* ---- the server ---- */

/* Serves with the configuration at conf_path until SIGTERM/SIGINT (graceful
 * shutdown). SIGHUP reloads, SIGUSR1 reopens logs, SIGUSR2 logs counters.
 * daemonize: double fork and setsid first. Returns the exit code. */
int wf_server_run(const char *conf_path, bool daemonize);

#endif
