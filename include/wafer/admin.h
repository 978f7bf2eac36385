/*
 * wafer admin listener: a small HTTP/1.1 server on its own port (loopback by
 * default) and its own thread, apart from the data plane, for operators and
 * orchestration: /health, /ready, /bans, /version (configuration and model),
 * /metrics (Prometheus). docs/admin.md lists the endpoints.
 *
 * Parts register handlers at start-up; a request is matched on method and
 * path prefix, the longest prefix first. Handlers run on the admin thread and
 * must not block for long (they read counters and tables the data plane
 * publishes for other threads).
 */
#ifndef WAFER_ADMIN_H
#define WAFER_ADMIN_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/core.h"
#include "wafer/net.h"
#include <stdbool.h>

typedef struct {
    bool enabled;            /* default true */
    char *address;           /* default "127.0.0.1:9901" */
    wf_sockaddr_t addr;
    char *token;             /* NULL: none; else every request needs "Authorization: Bearer <token>" */
    uint64_t max_connections;/* concurrent admin connections (16) */
    uint64_t timeout_ms;     /* per request (10s) */
} wf_admin_conf_t;

/* Parses the `admin` section (node may be NULL: defaults). *out is
 * overwritten: free what it held first. Unknown keys are errors. */
int wf_admin_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_admin_conf_t *out, wf_conf_err_t *err);
/* Fills the defaults (allocates address); 0 or -ENOMEM. */
int wf_admin_conf_defaults(wf_admin_conf_t *ac);
/* Frees the strings ac holds (not ac itself) and zeroes it. */
void wf_admin_conf_free(wf_admin_conf_t *ac);

typedef struct {
    wf_str_t method;
    wf_str_t path;           /* without the query */
    wf_str_t rest;           /* the path after the registered prefix ("/bans/192.0.2.1" under "/bans": "/192.0.2.1") */
    wf_str_t query;
    wf_str_t body;
    const wf_sockaddr_t *peer;
} wf_admin_req_t;

typedef struct {
    int status;              /* 200 unless set */
    const char *content_type;/* "application/json" unless set */
    wf_buf_t *body;          /* the handler appends the body here */
} wf_admin_resp_t;

typedef void (*wf_admin_fn)(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg);

/* Registers a handler for method ("GET", "DELETE", ...; NULL: any) and a path
 * prefix ("/bans" matches "/bans" and "/bans/..."; not "/bansx"). Returns 0
 * or -WF_ELIMIT (32 handlers at most). Register before wf_admin_start. */
int wf_admin_handle(const char *method, const char *prefix, wf_admin_fn fn, void *arg);

/* Readiness: the data plane says when it can serve (model loaded, workers
 * listening). /ready answers 503 until then, and again during shutdown. */
void wf_admin_set_ready(bool ready);
bool wf_admin_ready(void);

/* What /version shows besides wafer's own version: string values under
 * keys, one dot at most grouping them ("config.generation",
 * "config.file", "config.loaded", "model.id", "model.backend"; the parts
 * that know them set them). value NULL removes the key. Thread-safe; keys
 * are at most 63 bytes, values are cut at 1023. Returns 0, -EINVAL (bad
 * key) or -WF_ELIMIT (32 keys). */
int wf_admin_set_info(const char *key, const char *value);

/* Appends s as a JSON string literal (quotes included) for handlers that
 * write JSON. Bytes that are not valid UTF-8 are written as \u00XX.
 * Returns 0 or the wf_buf_append error. */
int wf_admin_json_str(wf_buf_t *b, wf_str_t s);

typedef struct wf_admin wf_admin_t;

/* Binds the listener and starts the admin thread. Returns 0 or -errno with a
 * message in err (an address already in use is an error, not a shared port). */
int wf_admin_start(const wf_admin_conf_t *conf, wf_admin_t **out, char *err, size_t errlen);
/* Applies a reloaded configuration: a new address rebinds; the token changes at once. */
int wf_admin_reconfigure(wf_admin_t *a, const wf_admin_conf_t *conf, char *err, size_t errlen);
/* Closes the listener and every admin connection and joins the thread. */
void wf_admin_stop(wf_admin_t *a);
/* The address the listener is bound to ("127.0.0.1:9901"; the real port
 * when the configuration said port 0). Returns its length. */
size_t wf_admin_address(wf_admin_t *a, char *out, size_t outlen);

#endif
