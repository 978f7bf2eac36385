/* Internal to src/http: inspection of proxied requests (inspect_hook.c), the
 * part of the proxy between a parsed request and its forwarding.
 *
 * proxy.c calls wf_insp_begin() when a request's header is parsed. The
 * answer says what to do: forward, refuse, read the body first
 * (WF_INSP_BODY: then call wf_insp_body() once it is in the buffer, or the
 * buffer or the inspection limit is full), or wait (WF_INSP_WAIT: the
 * request is parked; its units are with the detection service, and
 * wf_proxy_insp_done() is called from the worker's loop with the outcome).
 * Every path ends with wf_insp_end() (or wf_insp_cancel() when the
 * connection goes away first; a late verdict is then ignored). */
#ifndef WAFER_HTTP_INSPECT_HOOK_H
#define WAFER_HTTP_INSPECT_HOOK_H

#include "server_int.h"

typedef enum {
    WF_INSP_PASS,        /* forward unchanged (not inspected, benign, monitor, fail-open) */
    WF_INSP_TAG,         /* forward with X-Wafer-Verdict / X-Wafer-Score (wf_insp_tag_head) */
    WF_INSP_BLOCK,       /* answer 403 (wf_insp_block_response) */
    WF_INSP_REFUSE,      /* banned or deny-listed client: 403 (wf_insp_block_response) */
    WF_INSP_UNAVAILABLE, /* fail-closed overload: 503 */
    WF_INSP_TOO_LARGE,   /* body over the inspection limit with body_over_limit: reject: 413 */
    WF_INSP_BODY,        /* read the body first (up to *body_limit bytes), then wf_insp_body() */
    WF_INSP_WAIT,        /* parked until wf_proxy_insp_done() */
} wf_insp_action_t;

typedef struct wf_insp_req wf_insp_req_t;

/* Per worker (in the worker's thread): the detection port and the request
 * table (the verdict cache is the process's, made by wf_insp_prepare).
 * Without a detection service, only bans and client lists apply. */
int wf_insp_worker_init(wf_worker_t *w);
void wf_insp_worker_free(wf_worker_t *w);

/* At accept: true when the client is banned or deny-listed (close at once). */
bool wf_insp_refuse_conn(wf_worker_t *w, const wf_sockaddr_t *peer);

typedef struct {
    void *owner;                 /* the connection, given back to wf_proxy_insp_done */
    const wf_sockaddr_t *peer;
    wf_str_t ip;
    uint16_t port;
    wf_str_t rid;
    const wf_http_request_t *req;
    const char *head;            /* the raw header block (copied when the body must be read) */
    size_t head_len;
    bool has_body;               /* Content-Length > 0 or chunked */
    size_t buf_cap;              /* the connection's buffer: the most body bytes it can hold */
} wf_insp_start_t;

/* A request header was parsed. *out is set (or NULL when there is nothing
 * to keep: PASS without inspection, REFUSE). For WF_INSP_BODY, *body_limit is
 * the number of body bytes (as framed on the wire) to gather. */
wf_insp_action_t wf_insp_begin(wf_worker_t *w, const wf_insp_start_t *st, wf_insp_req_t **out, size_t *body_limit);

/* The body as it arrived (raw: chunk framing included when chunked),
 * `complete` when it ended within the limit. */
wf_insp_action_t wf_insp_body(wf_insp_req_t *ir, wf_str_t raw, bool chunked, bool complete);

/* A body longer than the limit is coming: true (and counted) when the
 * configuration rejects such bodies (answer WF_INSP_TOO_LARGE at once). */
bool wf_insp_reject_oversize(wf_insp_req_t *ir);

/* Drops a request (the connection closed or failed): a verdict still due is ignored. */
void wf_insp_cancel(wf_insp_req_t *ir);
/* The request was handled: frees it. */
void wf_insp_end(wf_insp_req_t *ir);

/* Rewrites the upstream request head in place for WF_INSP_TAG: removes any
 * X-Wafer-Verdict / X-Wafer-Score fields and adds the verdict. Returns the
 * new length, or -1 if cap is too small. */
int wf_insp_tag_head(const wf_insp_req_t *ir, char *head, size_t len, size_t cap);

/* Whether the request's Accept field prefers JSON to HTML. */
bool wf_insp_accept_json(const wf_http_request_t *req);

/* The 403 response (HTML, or JSON) with the request id; `keepalive` says
 * whether the connection stays open. Returns its length or -1. */
int wf_insp_block_response(bool json, wf_str_t rid, bool keepalive, char *out, size_t cap);

/* proxy.c: the outcome of a parked request (called from the worker's loop). */
void wf_proxy_insp_done(void *owner, wf_insp_action_t a);

/* Prepares a configuration that is about to serve (start and reload), in
 * the main thread: starts the detection service (first) or swaps its model
 * (reload), and binds the policy to the model's labels. Returns 0, or -1
 * with a message in err (the configuration must then be refused). */
int wf_insp_prepare(wf_server_conf_t *sc, bool first, char *err, size_t errlen);
/* Stops the detection service (after the workers exited). */
void wf_insp_shutdown(void);

#endif
