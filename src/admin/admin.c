/*
 * The admin listener: one thread, one small event loop, a bounded number of
 * HTTP/1.1 connections parsed with the data plane's strict parser. Every
 * response is built whole in memory and then written; a connection reads its
 * next request only when the previous response is out (pipelining works, but
 * one request at a time).
 */
#include "wafer/admin.h"
#include "wafer/http.h"
#include "wafer/metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_HANDLERS 32
#define MAX_INFO 32
#define INFO_KEY_MAX 64
#define INFO_VALUE_MAX 1024
#define REQ_HEAD_MAX (8 * 1024)     /* request line and fields */
#define REQ_BODY_MAX (64 * 1024)    /* Content-Length bodies only */
#define REQ_HEADERS_MAX 64
#define RESP_BODY_MAX (32u << 20)   /* a scrape of many collectors fits */
#define ACCEPT_BATCH 64
#define DRAIN_MS 1000               /* reading what follows a refused request before closing */

/* ---- registry: handlers, readiness, /version facts ---- */

typedef struct {
    char method[16];   /* "" for any */
    char prefix[128];
    size_t plen;
    wf_admin_fn fn;
    void *arg;
    bool exact;        /* built-ins answer their own path only */
} handler_t;

static handler_t handlers[MAX_HANDLERS];
static size_t nhandlers;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static atomic_bool ready_flag;

static struct {
    char key[INFO_KEY_MAX];
    char value[INFO_VALUE_MAX];
} info[MAX_INFO];
static size_t ninfo;
static pthread_mutex_t info_lock = PTHREAD_MUTEX_INITIALIZER;

static bool prefix_valid(const char *p)
{
    if (!p || p[0] != '/' || strlen(p) >= sizeof(handlers[0].prefix))
        return false;
    for (; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '?' || *p == 0x7f)
            return false;
    return true;
}

int wf_admin_handle(const char *method, const char *prefix, wf_admin_fn fn, void *arg)
{
    if (!fn || !prefix_valid(prefix) || (method && strlen(method) >= sizeof(handlers[0].method)))
        return -EINVAL;
    pthread_mutex_lock(&reg_lock);
    int rc = -WF_ELIMIT;
    if (nhandlers < MAX_HANDLERS) {
        handler_t *h = &handlers[nhandlers++];
        memset(h, 0, sizeof(*h));
        snprintf(h->method, sizeof(h->method), "%s", method ? method : "");
        snprintf(h->prefix, sizeof(h->prefix), "%s", prefix);
        h->plen = strlen(prefix);
        h->fn = fn;
        h->arg = arg;
        rc = 0;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void wf_admin_set_ready(bool ready) { atomic_store(&ready_flag, ready); }
bool wf_admin_ready(void) { return atomic_load(&ready_flag); }

int wf_admin_set_info(const char *key, const char *value)
{
    if (!key || !*key || strlen(key) >= INFO_KEY_MAX)
        return -EINVAL;
    const char *dot = strchr(key, '.');
    if (dot && (dot == key || !dot[1] || strchr(dot + 1, '.')))
        return -EINVAL;
    pthread_mutex_lock(&info_lock);
    int rc = 0;
    size_t i = 0;
    while (i < ninfo && strcmp(info[i].key, key))
        i++;
    if (!value) {
        if (i < ninfo) {
            memmove(&info[i], &info[i + 1], (ninfo - i - 1) * sizeof(info[0]));
            ninfo--;
        }
    } else if (i == ninfo && ninfo == MAX_INFO) {
        rc = -WF_ELIMIT;
    } else {
        if (i == ninfo)
            snprintf(info[ninfo++].key, INFO_KEY_MAX, "%s", key);
        /* cut at a UTF-8 boundary so that the JSON stays valid text */
        size_t n = strlen(value);
        if (n >= INFO_VALUE_MAX) {
            n = INFO_VALUE_MAX - 1;
            while (n && ((unsigned char)value[n] & 0xc0) == 0x80)
                n--;
        }
        memcpy(info[i].value, value, n);
        info[i].value[n] = 0;
    }
    pthread_mutex_unlock(&info_lock);
    return rc;
}

int wf_admin_json_str(wf_buf_t *b, wf_str_t s)
{
    int rc = wf_buf_append(b, "\"", 1);
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0, run = 0;
    while (!rc && i < s.n) {
        size_t k = wf_utf8_seq_len(p + i, s.n - i);
        char esc[8];
        const char *rep = NULL;
        if (k == 0 || p[i] < 0x20 || p[i] == 0x7f) {
            snprintf(esc, sizeof(esc), "\\u%04x", p[i]);
            rep = esc;
            k = 1;
        } else if (p[i] == '"') {
            rep = "\\\"";
        } else if (p[i] == '\\') {
            rep = "\\\\";
        }
        if (rep) {
            rc = wf_buf_append(b, p + run, i - run);
            if (!rc)
                rc = wf_buf_append(b, rep, strlen(rep));
            run = i + k;
        }
        i += k;
    }
    if (!rc)
        rc = wf_buf_append(b, p + run, i - run);
    if (!rc)
        rc = wf_buf_append(b, "\"", 1);
    return rc;
}

/* ---- configuration ---- */

int wf_admin_conf_defaults(wf_admin_conf_t *ac)
{
    memset(ac, 0, sizeof(*ac));
    ac->enabled = true;
    ac->max_connections = 16;
    ac->timeout_ms = 10000;
    ac->address = strdup("127.0.0.1:9901");
    if (!ac->address)
        return -ENOMEM;
    return wf_sockaddr_parse(ac->address, &ac->addr);
}

void wf_admin_conf_free(wf_admin_conf_t *ac)
{
    if (!ac)
        return;
    free(ac->address);
    if (ac->token) {
        explicit_bzero(ac->token, strlen(ac->token));
        free(ac->token);
    }
    memset(ac, 0, sizeof(*ac));
}

/* RFC 6750 b64token characters: what can follow "Bearer " unescaped. */
static bool token_valid(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 512)
        return false;
    size_t i = 0;
    for (; i < n; i++) {
        unsigned char ch = (unsigned char)t[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              strchr("-._~+/", ch) != NULL))
            break;
    }
    if (i == 0)
        return false;
    while (i < n && t[i] == '=')
        i++;
    return i == n;
}

int wf_admin_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_admin_conf_t *out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "enabled", "address", "token", "max_connections", "timeout", NULL };
    int rc = wf_admin_conf_defaults(out);
    if (rc || !node)
        return rc;
    if (node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {address: 127.0.0.1:9901}");
    if ((rc = wf_conf_check_keys(c, node, keys, err)) || (rc = wf_conf_bool(c, node, "enabled", &out->enabled, err)))
        return rc;
    const wf_conf_node_t *n = wf_conf_get(node, "address");
    if (n) {
        if (n->type != WF_CONF_SCALAR || wf_sockaddr_parse(n->value, &out->addr))
            return wf_conf_errorf(c, n, err, "expected host:port or [v6]:port, got \"%s\"",
                                  n->value ? n->value : "a collection");
        char *s = strdup(n->value);
        if (!s)
            return -ENOMEM;
        free(out->address);
        out->address = s;
    }
    const char *tok = NULL;
    if ((rc = wf_conf_str(c, node, "token", &tok, err)))
        return rc;
    if (tok && *tok) {
        if (!token_valid(tok))
            return wf_conf_errorf(c, wf_conf_get(node, "token"), err,
                                  "a token is 1-512 characters of A-Z a-z 0-9 - . _ ~ + / (then '=' padding)");
        if (!(out->token = strdup(tok)))
            return -ENOMEM;
    }
    int64_t mc = (int64_t)out->max_connections;
    if ((rc = wf_conf_int(c, node, "max_connections", 1, 4096, &mc, err)))
        return rc;
    out->max_connections = (uint64_t)mc;
    return wf_conf_duration_ms(c, node, "timeout", 1, 3600 * 1000, &out->timeout_ms, err);
}

/* ---- the listener ---- */

typedef struct aconn {
    struct aconn *next, **pprev;
    wf_admin_t *a;
    wf_conn_t c;
    wf_sockaddr_t peer;
    wf_timer_t timer;
    wf_defer_t free_defer;
    char in[REQ_HEAD_MAX + REQ_BODY_MAX];
    size_t in_len;
    wf_buf_t out;
    bool closing;       /* close once out is written */
    bool sent_continue; /* 100 Continue already sent for the request in progress */
    bool http10;        /* the request being answered is HTTP/1.0 */
    bool draining;      /* response out, write side shut: reading what the client still sends */
    bool dead;
} aconn_t;

struct wf_admin {
    pthread_t thread;
    bool thread_started;
    wf_loop_t *loop;
    int lfd;
    wf_io_t lio;
    wf_sockaddr_t bound;

    pthread_mutex_t lock;  /* guards what reconfigure changes, below */
    char *token;
    size_t token_len;
    uint64_t max_conns, timeout_ms;
    int pending_lfd;       /* a new listener from reconfigure, taken over by the admin thread */
    wf_sockaddr_t pending_bound;
    bool stop;

    aconn_t *conns;
    size_t nconns;
    wf_http_limits_t lim;
    wf_http_header_t hdrs[REQ_HEADERS_MAX];

    /* counters: written by the admin thread, read at scrape time (same thread) */
    uint64_t n_requests[6]; /* by status class: [0] unused, 1xx..5xx */
    uint64_t n_rejected_conns, n_bad_requests, n_unauthorized, n_timeouts;
};

static void conn_close(aconn_t *cn);
static void conn_process(aconn_t *cn);

static void conn_free_deferred(wf_loop_t *loop, void *data)
{
    aconn_t *cn = data;
    wf_buf_free(&cn->out);
    free(cn);
}

static void conn_close(aconn_t *cn)
{
    if (cn->dead)
        return;
    cn->dead = true;
    wf_admin_t *a = cn->a;
    wf_loop_timer_cancel(a->loop, &cn->timer);
    wf_conn_close(a->loop, &cn->c);
    *cn->pprev = cn->next;
    if (cn->next)
        cn->next->pprev = cn->pprev;
    a->nconns--;
    /* other events of this batch may still name it */
    wf_loop_defer(a->loop, &cn->free_defer, conn_free_deferred, cn);
}

static void conn_arm_timer(aconn_t *cn)
{
    pthread_mutex_lock(&cn->a->lock);
    uint64_t t = cn->a->timeout_ms;
    pthread_mutex_unlock(&cn->a->lock);
    wf_loop_timer_set(cn->a->loop, &cn->timer, wf_loop_now(cn->a->loop) + t);
}

static int conn_want(aconn_t *cn, unsigned mask)
{
    if (cn->c.io.mask == mask)
        return 0;
    return wf_loop_io_mod(cn->a->loop, &cn->c.io, mask);
}

/* Writes what is buffered. Returns 1 when all is out, 0 when the socket is
 * full, <0 when the connection is gone (closed here). */
static int conn_flush(aconn_t *cn)
{
    while (wf_buf_len(&cn->out)) {
        ssize_t n = wf_conn_write(&cn->c, wf_buf_rptr(&cn->out), wf_buf_len(&cn->out));
        if (n == -EAGAIN) {
            if (conn_want(cn, WF_IO_WRITE) < 0) {
                conn_close(cn);
                return -1;
            }
            return 0;
        }
        if (n <= 0) {
            conn_close(cn);
            return -1;
        }
        wf_buf_consume(&cn->out, (size_t)n);
    }
    if (cn->closing) {
        /* Closing with unread input would reset the connection and could
         * destroy the response before the client reads it: shut the write
         * side and drain for a moment instead. */
        if (!cn->draining && wf_conn_shutdown(&cn->c, SHUT_WR) == 0 && conn_want(cn, WF_IO_READ) == 0) {
            cn->draining = true;
            wf_loop_timer_set(cn->a->loop, &cn->timer, wf_loop_now(cn->a->loop) + DRAIN_MS);
        } else {
            conn_close(cn);
        }
        return -1;
    }
    if (conn_want(cn, WF_IO_READ) < 0) {
        conn_close(cn);
        return -1;
    }
    return 1;
}

/* Status line and fields, then the body (omitted for HEAD). */
static void respond(aconn_t *cn, int status, const char *ctype, const char *extra, const wf_buf_t *body,
                    bool head_only)
{
    wf_admin_t *a = cn->a;
    if (status >= 100 && status < 600)
        a->n_requests[status / 100]++;
    size_t blen = body ? wf_buf_len(body) : 0;
    int rc = wf_buf_appendf(&cn->out,
                            "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                            "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s%s\r\n",
                            status, wf_http_reason(status), ctype, blen, extra ? extra : "",
                            cn->closing ? "Connection: close\r\n" : cn->http10 ? "Connection: keep-alive\r\n" : "");
    if (!rc && blen && !head_only)
        rc = wf_buf_append(&cn->out, wf_buf_rptr(body), blen);
    if (rc) {
        /* cannot happen with the bounds above; do not send half a response */
        cn->closing = true;
        wf_buf_clear(&cn->out);
    }
}

static void respond_error(aconn_t *cn, int status, const char *msg, const char *extra, bool head_only)
{
    wf_buf_t b;
    if (wf_buf_init(&b, 256, 4096)) {
        cn->closing = true;
        return;
    }
    wf_buf_appendf(&b, "{\"error\":");
    wf_admin_json_str(&b, wf_str_c(msg));
    wf_buf_appendf(&b, "}\n");
    respond(cn, status, "application/json", extra, &b, head_only);
    wf_buf_free(&b);
}

/* A constant-time comparison: the time taken depends on the lengths only. */
static bool token_equal(const char *want, size_t wn, wf_str_t got)
{
    volatile unsigned char diff = (unsigned char)(wn != got.n);
    for (size_t i = 0; i < wn; i++)
        diff |= (unsigned char)want[i] ^ (unsigned char)(i < got.n ? got.p[i] : 0);
    return diff == 0;
}

static bool authorized(wf_admin_t *a, const wf_http_request_t *req)
{
    pthread_mutex_lock(&a->lock);
    bool ok = true;
    if (a->token) {
        const wf_http_header_t *h = wf_http_header_find(req->headers, req->nheaders, "Authorization");
        ok = false;
        if (h && h->value.n > 7 && wf_str_eq_nocase(wf_str(h->value.p, 7), WF_STR("Bearer "))) {
            wf_str_t t = wf_str(h->value.p + 7, h->value.n - 7);
            while (t.n && t.p[0] == ' ')
                t.p++, t.n--;
            ok = token_equal(a->token, a->token_len, t);
        }
    }
    pthread_mutex_unlock(&a->lock);
    return ok;
}

/* ---- built-in endpoints ---- */

static void h_health(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg)
{
    wf_buf_appendf(resp->body, "{\"status\":\"ok\"}\n");
}

static void h_ready(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg)
{
    bool r = wf_admin_ready();
    resp->status = r ? 200 : 503;
    wf_buf_appendf(resp->body, "{\"status\":\"%s\"}\n", r ? "ready" : "not ready");
}

static void h_metrics(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg)
{
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
    int rc = wf_metrics_render(resp->body);
    if (rc) {
        wf_buf_clear(resp->body);
        resp->status = 500;
        resp->content_type = NULL;
        wf_buf_appendf(resp->body, "{\"error\":\"metrics: %s\"}\n", wf_strerror(rc));
    }
}

static void h_version(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg)
{
    wf_buf_t *b = resp->body;
    wf_buf_appendf(b, "{\"version\":\"%s\"", WF_VERSION);
    pthread_mutex_lock(&info_lock);
    bool done[MAX_INFO] = { false };
    for (size_t i = 0; i < ninfo; i++) {
        if (done[i])
            continue;
        const char *dot = strchr(info[i].key, '.');
        wf_buf_append(b, ",", 1);
        if (!dot) {
            wf_admin_json_str(b, wf_str_c(info[i].key));
            wf_buf_append(b, ":", 1);
            wf_admin_json_str(b, wf_str_c(info[i].value));
            continue;
        }
        size_t gl = (size_t)(dot - info[i].key);
        wf_admin_json_str(b, wf_str(info[i].key, gl));
        wf_buf_append(b, ":{", 2);
        bool first = true;
        for (size_t j = i; j < ninfo; j++) {
            if (strncmp(info[j].key, info[i].key, gl + 1))
                continue;
            done[j] = true;
            if (!first)
                wf_buf_append(b, ",", 1);
            first = false;
            wf_admin_json_str(b, wf_str_c(info[j].key + gl + 1));
            wf_buf_append(b, ":", 1);
            wf_admin_json_str(b, wf_str_c(info[j].value));
        }
        wf_buf_append(b, "}", 1);
    }
    pthread_mutex_unlock(&info_lock);
    wf_buf_appendf(b, "}\n");
}

static const handler_t builtins[] = {
    { "GET", "/health", 7, h_health, NULL, true },
    { "GET", "/ready", 6, h_ready, NULL, true },
    { "GET", "/metrics", 8, h_metrics, NULL, true },
    { "GET", "/version", 8, h_version, NULL, true },
};

static bool prefix_match(const handler_t *h, wf_str_t path)
{
    if (path.n < h->plen || memcmp(path.p, h->prefix, h->plen))
        return false;
    if (path.n == h->plen)
        return true;
    if (h->exact)
        return false;
    return h->prefix[h->plen - 1] == '/' || path.p[h->plen] == '/';
}

/* Picks the handler: the longest matching prefix, then the method. Returns
 * 0 (found), 404, or 405 with the allowed methods in allow. */
static int route(wf_str_t method, wf_str_t path, handler_t *out, char *allow, size_t allowlen)
{
    size_t best = 0;
    bool any = false, found = false;
    allow[0] = 0;
    pthread_mutex_lock(&reg_lock);
    for (int pass = 0; pass < 2; pass++) {
        size_t n = pass == 0 ? nhandlers : WF_ARRAY_LEN(builtins);
        const handler_t *tab = pass == 0 ? handlers : builtins;
        for (size_t i = 0; i < n; i++)
            if (prefix_match(&tab[i], path) && tab[i].plen > best)
                best = tab[i].plen;
    }
    for (int pass = 0; pass < 2 && !found; pass++) {
        size_t n = pass == 0 ? nhandlers : WF_ARRAY_LEN(builtins);
        const handler_t *tab = pass == 0 ? handlers : builtins;
        for (size_t i = 0; i < n && !found; i++) {
            const handler_t *h = &tab[i];
            if (h->plen != best || !prefix_match(h, path))
                continue;
            any = true;
            if (!h->method[0] || wf_str_eq(method, wf_str_c(h->method))) {
                *out = *h;
                found = true;
            } else if (!strstr(allow, h->method)) {
                size_t k = strlen(allow);
                snprintf(allow + k, allowlen - k, "%s%s", k ? ", " : "", h->method);
            }
        }
    }
    pthread_mutex_unlock(&reg_lock);
    if (found)
        return 0;
    return any ? 405 : 404;
}

static void dispatch(aconn_t *cn, const wf_http_request_t *req, wf_str_t body)
{
    bool head = wf_str_eq(req->method, WF_STR("HEAD"));
    if (!authorized(cn->a, req)) {
        cn->a->n_unauthorized++;
        respond_error(cn, 401, "a valid \"Authorization: Bearer <token>\" is required",
                      "WWW-Authenticate: Bearer realm=\"wafer-admin\"\r\n", head);
        return;
    }
    handler_t h;
    char allow[128], extra[160];
    int rc = route(head ? WF_STR("GET") : req->method, req->path, &h, allow, sizeof(allow));
    if (rc == 404) {
        respond_error(cn, 404, "no such endpoint", NULL, head);
        return;
    }
    if (rc == 405) {
        snprintf(extra, sizeof(extra), "Allow: %s\r\n", allow);
        respond_error(cn, 405, "method not allowed", extra, head);
        return;
    }
    wf_buf_t b;
    if (wf_buf_init(&b, 1024, RESP_BODY_MAX)) {
        respond_error(cn, 503, "out of memory", NULL, head);
        return;
    }
    wf_admin_req_t ar = {
        .method = req->method,
        .path = req->path,
        .rest = wf_str(req->path.p + h.plen, req->path.n - h.plen),
        .query = req->query,
        .body = body,
        .peer = &cn->peer,
    };
    wf_admin_resp_t resp = { .status = 200, .content_type = NULL, .body = &b };
    h.fn(&ar, &resp, h.arg);
    if (resp.status < 200 || resp.status > 599)
        resp.status = 500;
    respond(cn, resp.status, resp.content_type ? resp.content_type : "application/json", NULL, &b, head);
    wf_buf_free(&b);
}

/* Handles the requests that are complete in cn->in, one at a time: the
 * next only once the previous response is written. */
static void conn_process(aconn_t *cn)
{
    wf_admin_t *a = cn->a;
    while (!cn->dead && !cn->closing && cn->in_len) {
        wf_http_request_t req;
        int n = wf_http_parse_request(cn->in, cn->in_len, &a->lim, &req, a->hdrs);
        if (n == WF_HTTP_INCOMPLETE) {
            if (cn->in_len >= REQ_HEAD_MAX) {
                cn->closing = true;
                a->n_bad_requests++;
                respond_error(cn, 431, "request header block too large", NULL, false);
            }
            break;
        }
        if (n == WF_HTTP_ERROR) {
            cn->closing = true;
            a->n_bad_requests++;
            respond_error(cn, wf_http_err_status(req.error), wf_http_err_name(req.error), NULL, false);
            break;
        }
        uint64_t cl = 0;
        if (req.flags & WF_HTTP_F_CHUNKED) {
            cn->closing = true;
            a->n_bad_requests++;
            respond_error(cn, 411, "chunked request bodies are not accepted: send Content-Length", NULL, false);
            break;
        }
        if (req.flags & WF_HTTP_F_CONTENT_LENGTH)
            cl = req.content_length;
        if (cl > REQ_BODY_MAX) {
            cn->closing = true;
            a->n_bad_requests++;
            respond_error(cn, 413, "request body too large", NULL, false);
            break;
        }
        if (cn->in_len < (size_t)n + cl) {
            if ((req.flags & WF_HTTP_F_EXPECT_CONTINUE) && !cn->sent_continue) {
                cn->sent_continue = true;
                wf_buf_appendf(&cn->out, "HTTP/1.1 100 Continue\r\n\r\n");
            }
            break;
        }
        if (!(req.flags & WF_HTTP_F_KEEP_ALIVE))
            cn->closing = true;
        cn->http10 = req.minor_version == 0;
        dispatch(cn, &req, wf_str(cn->in + n, (size_t)cl));
        cn->http10 = false;
        size_t used = (size_t)n + (size_t)cl;
        memmove(cn->in, cn->in + used, cn->in_len - used);
        cn->in_len -= used;
        cn->sent_continue = false;
        if (conn_flush(cn) <= 0)
            return; /* the rest waits until the response is out */
        conn_arm_timer(cn);
    }
    if (!cn->dead && wf_buf_len(&cn->out))
        conn_flush(cn);
}

static void conn_event(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    aconn_t *cn = io->data;
    if (cn->dead)
        return;
    if (cn->draining) {
        char sink[4096];
        ssize_t n;
        while ((n = wf_conn_read(&cn->c, sink, sizeof(sink))) > 0)
            ;
        if (n != -EAGAIN)
            conn_close(cn);
        return;
    }
    if (wf_buf_len(&cn->out)) {
        if ((ev & (WF_IO_WRITE | WF_IO_ERR | WF_IO_HUP)) && conn_flush(cn) == 1) {
            conn_arm_timer(cn);
            conn_process(cn);
        }
        return;
    }
    if (!(ev & (WF_IO_READ | WF_IO_HUP | WF_IO_ERR)))
        return;
    size_t room = sizeof(cn->in) - cn->in_len;
    if (room == 0) {
        conn_process(cn);
        return;
    }
    ssize_t n = wf_conn_read(&cn->c, cn->in + cn->in_len, room);
    if (n == -EAGAIN)
        return;
    if (n <= 0) {
        conn_close(cn);
        return;
    }
    cn->in_len += (size_t)n;
    conn_process(cn);
}

static void conn_timeout(wf_loop_t *loop, wf_timer_t *t)
{
    aconn_t *cn = t->data;
    if (!cn->draining && cn->in_len && !wf_buf_len(&cn->out)) {
        /* a request was started but not finished in time: say so, once */
        cn->a->n_timeouts++;
        cn->closing = true;
        respond_error(cn, 408, "request timeout", NULL, false);
        wf_conn_write(&cn->c, wf_buf_rptr(&cn->out), wf_buf_len(&cn->out));
    }
    conn_close(cn);
}

static void refuse(int fd)
{
    static const char msg[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                              "Content-Length: 38\r\nConnection: close\r\n\r\n"
                              "{\"error\":\"too many admin connections\"}";
    ssize_t r = write(fd, msg, sizeof(msg) - 1);
    (void)r;
    close(fd);
}

static void listener_event(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    wf_admin_t *a = io->data;
    pthread_mutex_lock(&a->lock);
    uint64_t maxc = a->max_conns;
    pthread_mutex_unlock(&a->lock);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        wf_sockaddr_t peer;
        int fd = wf_net_accept(a->lfd, &peer);
        if (fd == -EAGAIN)
            return;
        if (fd < 0) {
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOMEM || fd == -ENOBUFS)
                wf_warn("admin: accept: %s", wf_strerror(fd));
            return;
        }
        aconn_t *cn = a->nconns < maxc ? calloc(1, sizeof(*cn)) : NULL;
        if (!cn || wf_buf_init(&cn->out, 1024, RESP_BODY_MAX + 4096)) {
            free(cn);
            a->n_rejected_conns++;
            refuse(fd);
            continue;
        }
        cn->a = a;
        cn->peer = peer;
        wf_conn_init(&cn->c, &wf_conn_tcp, fd);
        wf_timer_init(&cn->timer, conn_timeout, cn);
        if (wf_loop_io_add(loop, &cn->c.io, fd, WF_IO_READ, conn_event, cn) < 0) {
            wf_buf_free(&cn->out);
            free(cn);
            close(fd);
            continue;
        }
        cn->next = a->conns;
        cn->pprev = &a->conns;
        if (a->conns)
            a->conns->pprev = &cn->next;
        a->conns = cn;
        a->nconns++;
        conn_arm_timer(cn);
    }
}

static void admin_wake(wf_loop_t *loop, void *data)
{
    wf_admin_t *a = data;
    pthread_mutex_lock(&a->lock);
    bool stop = a->stop;
    int nfd = a->pending_lfd;
    a->pending_lfd = -1;
    if (nfd >= 0)
        a->bound = a->pending_bound;
    pthread_mutex_unlock(&a->lock);
    if (nfd >= 0) {
        wf_loop_io_del(loop, &a->lio);
        close(a->lfd);
        a->lfd = nfd;
        if (wf_loop_io_add(loop, &a->lio, nfd, WF_IO_READ, listener_event, a) < 0)
            wf_error("admin: cannot poll the new listener");
    }
    if (stop) {
        while (a->conns)
            conn_close(a->conns);
        wf_loop_stop(loop);
    }
}

static void *admin_main(void *arg)
{
    wf_admin_t *a = arg;
    int rc = wf_loop_run(a->loop);
    if (rc < 0)
        wf_error("admin: event loop failed: %s", wf_strerror(rc));
    while (a->conns)
        conn_close(a->conns);
    wf_loop_run_once(a->loop, 0); /* frees what conn_close deferred */
    return NULL;
}

static void admin_collect(wf_metrics_t *m, void *arg)
{
    wf_admin_t *a = arg;
    static const char *const cls[] = { "", "1xx", "2xx", "3xx", "4xx", "5xx" };
    wf_metrics_family(m, "wafer_admin_requests_total", WF_METRIC_COUNTER,
                      "Requests answered by the admin listener, by status class.");
    for (int i = 1; i < 6; i++)
        wf_metrics_sample(m, NULL, "code", cls[i], NULL, (double)a->n_requests[i]);
    wf_metrics_family(m, "wafer_admin_rejects_total", WF_METRIC_COUNTER,
                      "Admin requests and connections refused, by reason.");
    wf_metrics_sample(m, NULL, "reason", "connection_limit", NULL, (double)a->n_rejected_conns);
    wf_metrics_sample(m, NULL, "reason", "bad_request", NULL, (double)a->n_bad_requests);
    wf_metrics_sample(m, NULL, "reason", "unauthorized", NULL, (double)a->n_unauthorized);
    wf_metrics_sample(m, NULL, "reason", "timeout", NULL, (double)a->n_timeouts);
    wf_metrics_family(m, "wafer_admin_connections", WF_METRIC_GAUGE, "Open admin connections.");
    wf_metrics_value(m, (double)a->nconns);
    wf_metrics_family(m, "wafer_ready", WF_METRIC_GAUGE, "1 when /ready answers 200 (serving, not shutting down).");
    wf_metrics_value(m, wf_admin_ready() ? 1 : 0);
}

/* Copies what reconfigure may change; caller holds a->lock (or owns a). */
static int apply_conf(wf_admin_t *a, const wf_admin_conf_t *conf)
{
    char *t = NULL;
    if (conf->token && !(t = strdup(conf->token)))
        return -ENOMEM;
    if (a->token) {
        explicit_bzero(a->token, a->token_len);
        free(a->token);
    }
    a->token = t;
    a->token_len = t ? strlen(t) : 0;
    a->max_conns = conf->max_connections ? conf->max_connections : 16;
    a->timeout_ms = conf->timeout_ms ? conf->timeout_ms : 10000;
    return 0;
}

static bool is_loopback(const wf_sockaddr_t *sa)
{
    char ip[64];
    uint16_t port;
    wf_sockaddr_ip(sa, ip, sizeof(ip), &port);
    return !strncmp(ip, "127.", 4) || !strcmp(ip, "::1");
}

/* Opens the listener for conf; the bound address (real port) in *bound. */
static int open_listener(const wf_admin_conf_t *conf, wf_sockaddr_t *bound, char *err, size_t errlen)
{
    int fd = wf_net_listen(&conf->addr, 64, false);
    if (fd < 0) {
        snprintf(err, errlen, "admin.address %s: %s", conf->address, wf_strerror(fd));
        return fd;
    }
    bound->len = sizeof(bound->ss);
    if (getsockname(fd, (struct sockaddr *)&bound->ss, &bound->len) < 0)
        *bound = conf->addr;
    if (!conf->token && !is_loopback(&conf->addr))
        wf_warn("admin: %s is not a loopback address and admin.token is not set: anyone who can reach it can "
                "read the metrics and use the admin endpoints", conf->address);
    return fd;
}

int wf_admin_start(const wf_admin_conf_t *conf, wf_admin_t **out, char *err, size_t errlen)
{
    *out = NULL;
    wf_admin_t *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "admin: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&a->lock, NULL);
    a->lfd = -1;
    a->pending_lfd = -1;
    a->lio.fd = -1;
    wf_http_limits_default(&a->lim);
    a->lim.max_header_bytes = REQ_HEAD_MAX;
    a->lim.max_headers = REQ_HEADERS_MAX;
    a->lim.max_uri = 4096;
    a->lim.max_body_bytes = REQ_BODY_MAX;
    int rc = apply_conf(a, conf);
    if (rc) {
        snprintf(err, errlen, "admin: out of memory");
        goto fail;
    }
    if ((rc = open_listener(conf, &a->bound, err, errlen)) < 0)
        goto fail;
    a->lfd = rc;
    if ((rc = wf_loop_new(&a->loop))) {
        snprintf(err, errlen, "admin: event loop: %s", wf_strerror(rc));
        goto fail;
    }
    wf_loop_set_wake(a->loop, admin_wake, a);
    if ((rc = wf_loop_io_add(a->loop, &a->lio, a->lfd, WF_IO_READ, listener_event, a))) {
        snprintf(err, errlen, "admin: cannot poll the listener: %s", wf_strerror(rc));
        goto fail;
    }
    if ((rc = pthread_create(&a->thread, NULL, admin_main, a)) != 0) {
        rc = -rc;
        snprintf(err, errlen, "admin: cannot start its thread: %s", wf_strerror(rc));
        goto fail;
    }
    a->thread_started = true;
    wf_metrics_process_register();
    wf_metrics_register("admin", admin_collect, a);
    *out = a;
    return 0;
fail:
    wf_admin_stop(a);
    return rc;
}

int wf_admin_reconfigure(wf_admin_t *a, const wf_admin_conf_t *conf, char *err, size_t errlen)
{
    int nfd = -1;
    wf_sockaddr_t nb;
    pthread_mutex_lock(&a->lock);
    bool moved = !wf_sockaddr_eq(&conf->addr, &a->bound) && a->pending_lfd < 0;
    pthread_mutex_unlock(&a->lock);
    /* port 0 asks for any port: keep the one we have */
    char ip[64];
    uint16_t port = 1;
    wf_sockaddr_ip(&conf->addr, ip, sizeof(ip), &port);
    if (moved && port != 0) {
        nfd = open_listener(conf, &nb, err, errlen);
        if (nfd < 0)
            return nfd;
    }
    pthread_mutex_lock(&a->lock);
    int rc = apply_conf(a, conf);
    if (nfd >= 0) {
        a->pending_lfd = nfd;
        a->pending_bound = nb;
    }
    pthread_mutex_unlock(&a->lock);
    if (rc)
        snprintf(err, errlen, "admin: out of memory");
    wf_loop_wake(a->loop);
    return rc;
}

size_t wf_admin_address(wf_admin_t *a, char *out, size_t outlen)
{
    pthread_mutex_lock(&a->lock);
    wf_sockaddr_t b = a->bound;
    pthread_mutex_unlock(&a->lock);
    return wf_sockaddr_format(&b, out, outlen);
}

void wf_admin_stop(wf_admin_t *a)
{
    if (!a)
        return;
    wf_metrics_unregister(a);
    if (a->thread_started) {
        pthread_mutex_lock(&a->lock);
        a->stop = true;
        pthread_mutex_unlock(&a->lock);
        wf_loop_wake(a->loop);
        pthread_join(a->thread, NULL);
    }
    if (a->loop) {
        wf_loop_io_del(a->loop, &a->lio);
        wf_loop_free(a->loop);
    }
    if (a->lfd >= 0)
        close(a->lfd);
    if (a->pending_lfd >= 0)
        close(a->pending_lfd);
    if (a->token) {
        explicit_bzero(a->token, a->token_len);
        free(a->token);
    }
    pthread_mutex_destroy(&a->lock);
    free(a);
}
