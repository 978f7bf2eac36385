/*
 * The reverse proxy, one state machine per client connection.
 *
 * Descriptors are registered once, edge-triggered; readiness is remembered in
 * the connection (readable/writable) until a call returns EAGAIN or a short
 * read, and cc_drive() makes every step that the remembered readiness allows
 * until none makes progress. Each direction has one bounded buffer; a side
 * is not read while the buffer towards the other side is full (back-pressure),
 * so a 1 GB upload needs one buffer, not 1 GB.
 *
 * Buffers of a connection live in one block from the worker's block pool,
 * taken while the connection is active and given back when it waits idle for
 * its next request: [client->upstream buffer | upstream->client buffer |
 * request head | response head].
 *
 * Timeouts: the connection keeps the time each wait began; one timer per
 * connection fires at the earliest deadline (early firing re-arms), so that
 * reads and writes do not touch the timer heap.
 */
#include "inspect_hook.h"
#include "server_int.h"
#include "wafer/http.h"
#include "wafer/policy.h"
#include "wafer/ratelimit.h"
#include "wafer/secops.h"
#include "wafer/tls.h"
#include "wafer/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define LINGER_MS 2000
#define ACCEPT_BATCH 64
#define EMFILE_PAUSE_MS 100
#define TOTAL_CAP_PAUSE_MS 50
#define SHED_MIN_IDLE_MS 1000 /* a keep-alive connection idle for less is a client being served, not shed */

/* client connections of every worker (limits.max_connections_total) */
static atomic_size_t conns_total;

typedef struct {
    char *p;
    uint32_t cap;
    uint32_t start; /* first byte not yet sent on */
    uint32_t fwd;   /* end of bytes ready to send */
    uint32_t scan;  /* end of bytes examined (== fwd unless decoding in place) */
    uint32_t end;   /* end of bytes received */
} pbuf_t;

enum { PH_HEAD, PH_PROXY, PH_SEND_CLOSE, PH_LINGER, PH_INSPECT, PH_DEAD };
enum { BODY_NONE, BODY_CL, BODY_CHUNKED, BODY_UNTIL_CLOSE };

struct upconn {
    wf_conn_t c;
    wf_worker_t *w;
    cconn_t *owner;
    upconn_t *prev, *next; /* idle list */
    wf_sockaddr_t addr;
    wf_timer_t timer;
    uint64_t idle_since;
    uint64_t idle_timeout;
    bool connecting, readable, writable, hup, reused;
    wf_defer_t defer;
};

struct cconn {
    wf_conn_t c;
    wf_worker_t *w;
    wf_gen_t *gen;
    const wf_server_conf_t *sc;
    cconn_t *prev, *next;
    wf_timer_t timer;
    wf_defer_t defer;    /* the deferred free */
    wf_defer_t redrive;  /* more work than one drive may do at once */
    int phase;
    bool readable, writable, rdhup;

    char *block;
    pbuf_t in, ub;
    char *rq;            /* request head for upstream */
    uint32_t rq_cap, rq_len, rq_off;
    char *rh;            /* head (or whole generated response) for the client */
    const char *rh_ptr;
    uint32_t rh_cap, rh_len, rh_off;

    /* the current exchange */
    uint32_t nreq;
    wf_str_t method, path; /* point into rq */
    int minor;
    bool req_keepalive, expect_continue, continue_sent, req_done, req_sent;
    int req_body;
    uint64_t req_left;
    wf_http_chunked_t req_chunk;
    bool resp_started, resp_done, dechunk, up_reusable, client_close, logged;
    int resp_body;
    int status;
    int interim;         /* 1xx responses skipped */
    uint64_t resp_left;
    wf_http_chunked_t resp_chunk;
    upconn_t *up;
    int up_attempts;
    const wf_route_t *route;    /* the request's route (cc_route), NULL until looked up */
    wf_upstream_pool_t *pool;   /* the request's upstream pool */
    wf_upstream_member_t *upm;  /* the member of the latest attempt, NULL none */
    bool upm_attached;          /* counted in upm's active requests (while cc->up is set) */
    bool idempotent;            /* RFC 9110 9.2.2: may be resent to another member */
    bool body_sent;             /* request body bytes went upstream (resending needs replay) */
    bool replay;                /* the whole body is in `in` at [replay_start, replay_end) */
    uint32_t replay_start, replay_end;
    uint64_t up_key;            /* hash pools: the request's key */
    wf_upstream_tried_t tried;

    /* limits: 1 counted in connections_per_client, 0 over it (answer 429), 2 not counted */
    int climit;
    uint64_t rd_waited, wr_waited; /* ms the client kept us waiting for body bytes / to take response bytes */

    /* waits: when each began (0: not waiting) */
    uint64_t t_accept, t_head, t_idle, t_rd, t_wr, t_up;
    uint64_t t_req_ns, t_up_ns, up_ns;
    uint64_t bytes_in, bytes_out;

    char rid[WF_REQUEST_ID_MAX + 1];
    uint8_t rid_len;
    char ip[46];
    uint8_t ip_len;
    uint16_t port;
    bool v6;

    /* inspection (inspect_hook.c): PH_INSPECT reads the body (insp_limit bytes) or waits for the verdict */
    wf_sockaddr_t peer;
    wf_insp_req_t *insp;
    size_t insp_limit;
    bool insp_parked, insp_json;
};

static void cc_drive(cconn_t *cc);
static void cc_close(cconn_t *cc);
static void up_close(wf_worker_t *w, upconn_t *u);

/* ---- blocks ---- */

static size_t cc_blocksize(const wf_server_conf_t *sc);

static void *block_get(wf_worker_t *w, size_t size)
{
    if (w->blocks.size != size) {
        if (size != cc_blocksize(w->gen->conf))
            return malloc(size); /* a connection of an older generation: do not disturb the pool */
        /* a reload changed buffer sizes: drop the old free blocks */
        while (w->blocks.free) {
            void *b = w->blocks.free;
            w->blocks.free = *(void **)b;
            free(b);
        }
        w->blocks.nfree = 0;
        w->blocks.size = size;
    }
    void *b = w->blocks.free;
    if (b) {
        w->blocks.free = *(void **)b;
        w->blocks.nfree--;
        return b;
    }
    return malloc(size);
}

static void block_put(wf_worker_t *w, void *b, size_t size)
{
    if (size != w->blocks.size || w->blocks.nfree >= w->blocks.maxfree) {
        free(b);
        return;
    }
    *(void **)b = w->blocks.free;
    w->blocks.free = b;
    w->blocks.nfree++;
}

static size_t cc_bufcap(const wf_server_conf_t *sc) { return WF_MAX(sc->buffer_size, sc->max_header_bytes); }
static size_t cc_rqcap(const wf_server_conf_t *sc) { return 2 * sc->max_header_bytes + 2048; }
static size_t cc_rhcap(const wf_server_conf_t *sc) { return sc->max_header_bytes + 1024; }
static size_t cc_blocksize(const wf_server_conf_t *sc)
{
    return 2 * cc_bufcap(sc) + cc_rqcap(sc) + cc_rhcap(sc);
}

static bool cc_block_take(cconn_t *cc)
{
    if (cc->block)
        return true;
    const wf_server_conf_t *sc = cc->sc;
    char *b = block_get(cc->w, cc_blocksize(sc));
    if (!b)
        return false;
    cc->block = b;
    uint32_t bc = (uint32_t)cc_bufcap(sc);
    cc->in = (pbuf_t){ .p = b, .cap = bc };
    cc->ub = (pbuf_t){ .p = b + bc, .cap = bc };
    cc->rq = b + 2 * (size_t)bc;
    cc->rq_cap = (uint32_t)cc_rqcap(sc);
    cc->rh = cc->rq + cc->rq_cap;
    cc->rh_cap = (uint32_t)cc_rhcap(sc);
    return true;
}

static void cc_block_release(cconn_t *cc)
{
    if (!cc->block)
        return;
    block_put(cc->w, cc->block, cc_blocksize(cc->sc));
    cc->block = NULL;
    memset(&cc->in, 0, sizeof(cc->in));
    memset(&cc->ub, 0, sizeof(cc->ub));
}

/* ---- buffers ---- */

/* Makes room at the end, moving unsent bytes (and unexamined ones) to the front. */
static uint32_t pbuf_space(pbuf_t *b)
{
    if (b->end < b->cap)
        return b->cap - b->end;
    if (b->start == 0 && b->fwd == b->scan)
        return 0;
    uint32_t ready = b->fwd - b->start, rest = b->end - b->scan;
    if (ready)
        memmove(b->p, b->p + b->start, ready);
    if (rest)
        memmove(b->p + ready, b->p + b->scan, rest);
    b->start = 0;
    b->fwd = ready;
    b->scan = ready;
    b->end = ready + rest;
    return b->cap - b->end;
}

static void pbuf_sent(pbuf_t *b, uint32_t n)
{
    b->start += n;
    if (b->start == b->fwd && b->scan == b->end)
        b->start = b->fwd = b->scan = b->end = 0;
}

/* ---- timers and deadlines ---- */

static uint64_t cc_header_rate_due(const cconn_t *cc)
{
    const wf_server_conf_t *sc = cc->sc;
    if (!cc->t_head || !sc->min_rate_header.rate)
        return UINT64_MAX;
    return wf_min_rate_due(cc->t_head, 0, cc->in.end - cc->in.start, sc->min_rate_header.rate, sc->min_rate_header.grace_ms);
}

static uint64_t cc_body_rate_due(const cconn_t *cc)
{
    const wf_server_conf_t *sc = cc->sc;
    if (!cc->t_rd || !sc->min_rate_body.rate || cc->phase != PH_PROXY)
        return UINT64_MAX;
    return wf_min_rate_due(cc->t_rd, cc->rd_waited, cc->bytes_in, sc->min_rate_body.rate, sc->min_rate_body.grace_ms);
}

static uint64_t cc_send_rate_due(const cconn_t *cc)
{
    const wf_server_conf_t *sc = cc->sc;
    if (!cc->t_wr || !sc->min_rate_send.rate || cc->phase != PH_PROXY)
        return UINT64_MAX;
    return wf_min_rate_due(cc->t_wr, cc->wr_waited, cc->bytes_out, sc->min_rate_send.rate, sc->min_rate_send.grace_ms);
}

/* A wait on the client ended: add it to the exchange's total. */
static void cc_wait_end(uint64_t *t, uint64_t *acc, uint64_t now)
{
    if (*t) {
        *acc += now - *t;
        *t = 0;
    }
}

static void cc_arm(cconn_t *cc)
{
    const wf_server_conf_t *sc = cc->sc;
    uint64_t next = UINT64_MAX;
    if (cc->phase == PH_HEAD) {
        if (cc->t_head)
            next = WF_MIN(cc->t_head + sc->header_timeout_ms, cc_header_rate_due(cc));
        else if (cc->t_idle)
            next = cc->t_idle + sc->idle_timeout_ms;
    } else if (cc->phase == PH_LINGER) {
        next = cc->t_rd + LINGER_MS;
    } else if (cc->t_rd) {
        next = WF_MIN(cc->t_rd + sc->body_timeout_ms, cc_body_rate_due(cc));
    }
    if (cc->t_wr)
        next = WF_MIN(next, WF_MIN(cc->t_wr + sc->send_timeout_ms, cc_send_rate_due(cc)));
    if (cc->t_up)
        next = WF_MIN(next, cc->t_up + (cc->up && cc->up->connecting ? sc->up_connect_timeout_ms : sc->up_timeout_ms));
    if (next == UINT64_MAX)
        return; /* an armed timer fires, finds nothing due and is not re-armed */
    if (!wf_timer_armed(&cc->timer) || cc->timer.when > next)
        wf_loop_timer_set(cc->w->loop, &cc->timer, next);
}

/* Records when each wait began, from what the connection waits for now. */
static void cc_waits(cconn_t *cc)
{
    uint64_t now = wf_loop_now(cc->w->loop);
    bool rd = false, wr = false, upw = false;
    if (cc->phase == PH_PROXY) {
        wr = cc->rh_off < cc->rh_len || cc->ub.fwd > cc->ub.start;
        rd = !cc->req_done && cc->up && !cc->readable && (cc->in.end < cc->in.cap || cc->in.start > 0);
        upconn_t *u = cc->up;
        if (u) {
            bool pending_out = cc->rq_off < cc->rq_len || cc->in.fwd > cc->in.start;
            upw = u->connecting || (pending_out && !u->writable) ||
                  ((cc->req_sent || cc->resp_started) && !cc->resp_done && (cc->ub.end < cc->ub.cap || cc->ub.start > 0));
        }
    } else if (cc->phase == PH_INSPECT) {
        rd = !cc->insp_parked && !cc->req_done && !cc->readable;
    } else if (cc->phase == PH_SEND_CLOSE) {
        wr = true;
    } else if (cc->phase == PH_LINGER) {
        rd = true;
    }
    if (!rd)
        cc_wait_end(&cc->t_rd, &cc->rd_waited, now);
    else if (!cc->t_rd)
        cc->t_rd = now;
    if (!wr)
        cc_wait_end(&cc->t_wr, &cc->wr_waited, now);
    else if (!cc->t_wr)
        cc->t_wr = now;
    if (!upw)
        cc->t_up = 0;
    else if (!cc->t_up)
        cc->t_up = now;
    cc_arm(cc);
}

/* ---- access log ---- */

static size_t json_str(char *o, const char *s, size_t n, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;
    for (size_t i = 0; i < n && k + 6 < max; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\') {
            o[k++] = '\\';
            o[k++] = (char)ch;
        } else if (ch < 0x20 || ch >= 0x7f) {
            memcpy(o + k, "\\u00", 4);
            o[k + 4] = hex[ch >> 4];
            o[k + 5] = hex[ch & 15];
            k += 6;
        } else {
            o[k++] = (char)ch;
        }
    }
    return k;
}

static void cc_log(cconn_t *cc)
{
    if (cc->logged)
        return;
    cc->logged = true;
    wf_worker_t *w = cc->w;
    int st = cc->status;
    if (st >= 100 && st < 600) {
        WF_STAT_INC(&w->stats, responses);
        if (cc->t_req_ns)
            wf_hist_observe(&w->latency, (double)(wf_now_ns() - cc->t_req_ns) * 1e-9);
        switch (st / 100) {
        case 1: WF_STAT_INC(&w->stats, status_1xx); break;
        case 2: WF_STAT_INC(&w->stats, status_2xx); break;
        case 3: WF_STAT_INC(&w->stats, status_3xx); break;
        case 4: WF_STAT_INC(&w->stats, status_4xx); break;
        default: WF_STAT_INC(&w->stats, status_5xx); break;
        }
    }
    if (!wf_access_log_on())
        return;
    size_t mlen = WF_MIN(cc->method.n, (size_t)64), plen = WF_MIN(cc->path.n, (size_t)2048);
    const char *up_addr = cc->upm ? cc->upm->conf->address : NULL;
    /* fixed text, time, id, address fields, and the escaped method and path (6 bytes per byte at most) */
    char *o = wf_access_log_reserve(w, 512 + WF_REQUEST_ID_MAX + (up_addr ? strlen(up_addr) : 0) + 6 * (mlen + plen));
    if (!o) {
        WF_STAT_INC(&w->stats, access_log_dropped);
        return;
    }
    uint64_t now_ns = wf_now_ns();
    double total_ms = (double)(now_ns - cc->t_req_ns) / 1e6;
    char ts[32];
    wf_time_rfc3339(wf_wall_us(), ts, sizeof(ts));
    size_t k = 0;
    k += (size_t)sprintf(o + k, "{\"time\":\"%s\",\"request_id\":\"%.*s\",\"client\":{\"ip\":\"%.*s\",\"port\":%u},"
                                "\"method\":\"", ts, cc->rid_len, cc->rid, cc->ip_len, cc->ip, cc->port);
    k += json_str(o + k, cc->method.p, mlen, 6 * mlen + 8);
    k += (size_t)sprintf(o + k, "\",\"path\":\"");
    k += json_str(o + k, cc->path.p, plen, 6 * plen + 8);
    k += (size_t)sprintf(o + k, "\",\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,\"durations\":{\"total_ms\":%.3f,", st,
                         (unsigned long long)cc->bytes_in, (unsigned long long)cc->bytes_out, total_ms);
    if (up_addr) {
        uint64_t up_ns = cc->up_ns + (cc->t_up_ns ? now_ns - cc->t_up_ns : 0);
        k += (size_t)sprintf(o + k, "\"upstream_ms\":%.3f},\"upstream\":\"%s\"}\n", (double)up_ns / 1e6, up_addr);
    } else {
        k += (size_t)sprintf(o + k, "\"upstream_ms\":null},\"upstream\":null}\n");
    }
    w->alog_len += k;
}

/* ---- upstream connections ---- */

static void up_free_deferred(wf_loop_t *loop, void *data)
{
    upconn_t *u = data;
    wf_pool_put(&u->w->up_pool, u);
}

static void up_idle_unlink(wf_worker_t *w, upconn_t *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        w->idle_up = u->next;
    if (u->next)
        u->next->prev = u->prev;
    u->prev = u->next = NULL;
    w->nidle_up--;
}

static void up_close(wf_worker_t *w, upconn_t *u)
{
    if (!u->owner && (u->prev || w->idle_up == u))
        up_idle_unlink(w, u);
    wf_loop_timer_cancel(w->loop, &u->timer);
    wf_conn_close(w->loop, &u->c);
    u->owner = NULL;
    wf_loop_defer(w->loop, &u->defer, up_free_deferred, u);
}

static void up_idle_timer(wf_loop_t *loop, wf_timer_t *t)
{
    upconn_t *u = t->data;
    if (u->owner)
        return;
    uint64_t due = u->idle_since + u->idle_timeout;
    if (wf_loop_now(loop) >= due) {
        WF_STAT_INC(&u->w->stats, upstream_idle_closed);
        up_close(u->w, u);
    } else {
        wf_loop_timer_set(loop, t, due);
    }
}

static void up_event(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    upconn_t *u = io->data;
    ev = wf_conn_ready(&u->c, ev);
    if (ev & WF_IO_WRITE)
        u->writable = true;
    if (ev & (WF_IO_READ | WF_IO_HUP | WF_IO_ERR))
        u->readable = true;
    if (ev & (WF_IO_HUP | WF_IO_ERR))
        u->hup = true;
    if (u->owner) {
        cc_drive(u->owner);
    } else if (ev & (WF_IO_READ | WF_IO_HUP | WF_IO_ERR)) {
        /* an idle connection that speaks or closes is not reusable */
        WF_STAT_INC(&u->w->stats, upstream_idle_closed);
        up_close(u->w, u);
    }
}

/* Gives the upstream connection back to the pool, or closes it. */
static void cc_up_release(cconn_t *cc, bool reusable)
{
    upconn_t *u = cc->up;
    if (!u)
        return;
    wf_worker_t *w = cc->w;
    cc->up = NULL;
    if (cc->upm_attached) {
        wf_upstream_detach(cc->upm);
        cc->upm_attached = false;
    }
    if (cc->t_up_ns) {
        cc->up_ns += wf_now_ns() - cc->t_up_ns;
        cc->t_up_ns = 0;
    }
    u->owner = NULL;
    if (!reusable || u->hup || w->shutting_down) {
        up_close(w, u);
        return;
    }
    if (w->nidle_up >= cc->sc->up_keepalive) {
        WF_STAT_INC(&w->stats, upstream_pool_full);
        up_close(w, u);
        return;
    }
    u->prev = NULL;
    u->next = w->idle_up;
    if (w->idle_up)
        w->idle_up->prev = u;
    w->idle_up = u;
    w->nidle_up++;
    u->idle_since = wf_loop_now(w->loop);
    u->idle_timeout = cc->sc->up_idle_timeout_ms;
    if (!wf_timer_armed(&u->timer))
        wf_loop_timer_set(w->loop, &u->timer, u->idle_since + u->idle_timeout);
}

static void cc_send_error(cconn_t *cc, int status);
static void cc_insp_apply(cconn_t *cc, wf_insp_action_t a);
static void cc_forward(cconn_t *cc);

/* Puts a new upstream connection behind TLS, verifying the server's name
 * (the tls section's server_name, else the host of its address as written). */
static int up_tls_start(upconn_t *u, struct wf_tls_client *tls, const char *address)
{
    char host[256];
    const char *a = address, *end = strrchr(a, ':');
    size_t n = end ? (size_t)(end - a) : strlen(a);
    if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
        a++;
        n -= 2;
    }
    snprintf(host, sizeof(host), "%.*s", (int)n, a);
    int rc = wf_tls_conn_connect(&u->c, tls, u->c.fd, host, address, &u->w->stats);
    if (rc < 0)
        wf_warn("upstream %s: cannot start TLS: %s", address, wf_strerror(rc));
    return rc;
}

static const char *cc_up_name(const cconn_t *cc) { return cc->upm ? cc->upm->conf->address : "?"; }

static void cc_up_attach(cconn_t *cc, upconn_t *u)
{
    cc->up = u;
    wf_upstream_attach(cc->upm);
    cc->upm_attached = true;
}

/* Attaches an upstream connection to a member that the pool's balancer
 * picks among those the request has not tried (same: this member first,
 * whose pooled connection failed): a pooled connection to it if there is
 * one (unless fresh), else a new connect. 503 when no member was available
 * at all, 502 when every try failed. */
static void cc_up_acquire(cconn_t *cc, bool fresh, wf_upstream_member_t *same)
{
    wf_worker_t *w = cc->w;
    const wf_server_conf_t *sc = cc->sc;
    wf_upstream_pool_t *p = cc->pool;
    int max = wf_upstream_max_tries(p);
    while (same || cc->up_attempts < max) {
        uint64_t now = wf_loop_now(w->loop);
        wf_upstream_member_t *m = same ? same : wf_upstream_pick(p, cc->up_key, &cc->tried, now);
        same = NULL;
        if (!m)
            break;
        if (!wf_upstream_tried(&cc->tried, m->index)) {
            wf_upstream_tried_set(&cc->tried, m->index);
            cc->up_attempts++;
        }
        const wf_sockaddr_t *addr = &m->conf->addr;
        cc->upm = m;
        cc->t_up_ns = wf_now_ns();
        if (!fresh) {
            for (upconn_t *u = w->idle_up; u; u = u->next) {
                if (!wf_sockaddr_eq(&u->addr, addr) || (u->c.tls != NULL) != (sc->up_tls != NULL))
                    continue;
                up_idle_unlink(w, u);
                u->owner = cc;
                u->reused = true;
                cc_up_attach(cc, u);
                WF_STAT_INC(&w->stats, upstream_reused);
                return;
            }
        }
        int fd = -1;
        int rc = wf_net_connect(addr, &fd);
        if (rc != 0 && rc != -EINPROGRESS) {
            WF_STAT_INC(&w->stats, upstream_connect_failed);
            wf_info("upstream %s: connect: %s", m->conf->address, wf_strerror(rc));
            wf_upstream_failed(m, now);
            continue;
        }
        upconn_t *u = wf_pool_get(&w->up_pool);
        if (!u) {
            close(fd);
            break;
        }
        memset(u, 0, sizeof(*u));
        u->w = w;
        u->owner = cc;
        u->addr = *addr;
        wf_conn_init(&u->c, &wf_conn_tcp, fd);
        if (sc->up_tls && up_tls_start(u, sc->up_tls, m->conf->address) < 0) {
            close(fd);
            wf_pool_put(&w->up_pool, u);
            break;
        }
        wf_timer_init(&u->timer, up_idle_timer, u);
        u->connecting = rc == -EINPROGRESS;
        u->writable = rc == 0;
        if (wf_loop_io_add(w->loop, &u->c.io, fd, WF_IO_READ | WF_IO_WRITE | WF_IO_EDGE, up_event, u) < 0) {
            u->c.type->close(&u->c);
            wf_pool_put(&w->up_pool, u);
            break;
        }
        WF_STAT_INC(&w->stats, upstream_connects);
        cc_up_attach(cc, u);
        return;
    }
    if (!cc->up_attempts) {
        atomic_fetch_add_explicit(&p->unavailable, 1, memory_order_relaxed);
        WF_STAT_INC(&w->stats, upstream_unavailable);
        uint64_t now = wf_loop_now(w->loop);
        if (now - w->unavail_logged >= 1000) {
            w->unavail_logged = now;
            wf_warn("upstream pool %s: no member available (down or ejected): 503", p->conf->name);
        }
        cc_send_error(cc, 503);
        return;
    }
    WF_STAT_INC(&w->stats, upstream_502);
    cc_send_error(cc, 502);
}

/* The request can go to another member from the start: nothing of it is
 * lost (RFC 9110 9.2.2 idempotent methods only; body bytes already sent
 * must still be in the buffer). */
static bool cc_can_resend(const cconn_t *cc)
{
    return cc->idempotent && (!cc->body_sent || cc->replay) && cc->up_attempts < wf_upstream_max_tries(cc->pool);
}

/* Puts the request back to where nothing of it was sent upstream. */
static void cc_rewind(cconn_t *cc)
{
    cc->rq_off = 0;
    cc->req_sent = false;
    if (cc->body_sent && cc->replay) {
        /* no client byte was read since the body was complete, so the buffer still holds it */
        cc->in.start = cc->replay_start;
        cc->in.fwd = cc->in.scan = cc->replay_end;
        if (cc->in.end < cc->replay_end)
            cc->in.end = cc->replay_end;
    }
    cc->body_sent = false;
}

/* ---- exchanges ---- */

static void cc_reset_exchange(cconn_t *cc)
{
    cc->method = cc->path = WF_STR_NULL;
    cc->req_keepalive = cc->expect_continue = cc->continue_sent = cc->req_done = cc->req_sent = false;
    cc->req_body = BODY_NONE;
    cc->req_left = 0;
    cc->resp_started = cc->resp_done = cc->dechunk = cc->up_reusable = cc->client_close = cc->logged = false;
    cc->resp_body = BODY_NONE;
    cc->status = 0;
    cc->interim = 0;
    cc->resp_left = 0;
    cc->up_attempts = 0;
    cc->upm = NULL;
    cc->route = NULL;
    cc->upm_attached = cc->idempotent = cc->body_sent = cc->replay = false;
    memset(&cc->tried, 0, sizeof(cc->tried));
    cc->rd_waited = cc->wr_waited = 0;
    cc->rq_len = cc->rq_off = 0;
    cc->rh_ptr = NULL;
    cc->rh_len = cc->rh_off = 0;
    cc->bytes_in = cc->bytes_out = 0;
    cc->t_up_ns = cc->up_ns = 0;
    cc->rid_len = 0;
}

/* Ends the exchange in a way the client sees as an abrupt close. */
static void cc_abort(cconn_t *cc, int log_status)
{
    if (!cc->logged && (cc->t_req_ns && (cc->method.n || cc->status))) {
        if (!cc->status || !cc->resp_started)
            cc->status = log_status;
        cc_log(cc);
    }
    cc_close(cc);
}

static void cc_insp_drop(cconn_t *cc)
{
    if (cc->insp) {
        wf_insp_cancel(cc->insp);
        cc->insp = NULL;
    }
    cc->insp_parked = false;
}

static void cc_send_error(cconn_t *cc, int status)
{
    cc_insp_drop(cc);
    if (cc->resp_started) {
        WF_STAT_INC(&cc->w->stats, response_aborted);
        cc_abort(cc, status);
        return;
    }
    if (cc->up)
        cc_up_release(cc, false);
    int n = wf_proxy_error_response(status, wf_str(cc->rid, cc->rid_len), cc->rh, cc->rh_cap);
    if (n < 0) {
        cc_close(cc);
        return;
    }
    cc->status = status;
    cc->rh_ptr = cc->rh;
    cc->rh_len = (uint32_t)n;
    cc->rh_off = 0;
    cc->resp_started = true;
    cc->client_close = true;
    cc->phase = PH_SEND_CLOSE;
    cc->t_wr = 0;
}

static void cc_new_request_id(cconn_t *cc, const wf_http_request_t *req)
{
    const wf_server_conf_t *sc = cc->sc;
    if (req && sc->trust_request_id && sc->request_id_header) {
        const wf_http_header_t *h = wf_http_header_find(req->headers, req->nheaders, sc->request_id_header);
        if (h && wf_request_id_valid(h->value)) {
            memcpy(cc->rid, h->value.p, h->value.n);
            cc->rid_len = (uint8_t)h->value.n;
            cc->rid[cc->rid_len] = 0;
            return;
        }
    }
    cc->rid_len = (uint8_t)wf_request_id_generate(&cc->w->rid_state, cc->rid);
}

/* Counts a refusal of the client's request for error e and returns the
 * status that answers it (400 for anything not an error status). */
static int reject_status(wf_worker_t *w, wf_http_err_t e)
{
    if ((unsigned)e < WF_HTTP_E__COUNT)
        WF_STAT_INC(&w->stats, http_reject[e]);
    int status = wf_http_err_status(e);
    return status >= 400 && status < 600 ? status : 400;
}

static void cc_reject(cconn_t *cc, wf_http_err_t e)
{
    wf_worker_t *w = cc->w;
    WF_STAT_INC(&w->stats, requests_rejected);
    int status = reject_status(w, e);
    cc_new_request_id(cc, NULL);
    cc->t_req_ns = wf_now_ns();
    wf_debug("client %.*s:%u: request refused: %s (%d)", cc->ip_len, cc->ip, cc->port, wf_http_err_name(e), status);
    cc_send_error(cc, status);
}

/* Checks the request body bytes that arrived: validates chunked framing,
 * counts Content-Length, finds where the body ends. */
static void cc_scan_body_(cconn_t *cc);
static void cc_scan_body(cconn_t *cc)
{
    uint32_t f0 = cc->in.fwd;
    cc_scan_body_(cc);
    if (cc->phase == PH_PROXY || cc->phase == PH_INSPECT)
        cc->bytes_in += cc->in.fwd - f0;
}

static void cc_scan_body_(cconn_t *cc)
{
    pbuf_t *b = &cc->in;
    while (!cc->req_done && b->fwd < b->end) {
        if (cc->req_body == BODY_CL) {
            uint32_t n = (uint32_t)WF_MIN((uint64_t)(b->end - b->fwd), cc->req_left);
            b->fwd += n;
            b->scan = b->fwd;
            cc->req_left -= n;
            if (cc->req_left == 0)
                cc->req_done = true;
        } else {
            size_t used = 0;
            wf_str_t data;
            int rc = wf_http_chunked_feed(&cc->req_chunk, b->p + b->fwd, b->end - b->fwd, &used, &data);
            b->fwd += (uint32_t)used;
            b->scan = b->fwd;
            if (rc == 1) {
                cc->req_done = true;
            } else if (rc < 0) {
                wf_http_err_t e = cc->req_chunk.error;
                if (e == WF_HTTP_E_BODY_TOO_LARGE)
                    WF_STAT_INC(&cc->w->stats, body_too_large);
                else
                    WF_STAT_INC(&cc->w->stats, body_invalid);
                int st = reject_status(cc->w, e);
                wf_debug("client %.*s:%u: request body refused: %s", cc->ip_len, cc->ip, cc->port, wf_http_err_name(e));
                cc->req_done = true; /* stop reading: the connection closes */
                cc->req_keepalive = false;
                cc_send_error(cc, st);
                return;
            } else if (used == 0) {
                break;
            }
        }
    }
}

/* The request's route: the policy's top level when none matches, NULL
 * without a policy. Looked up once per request (wf_policy_route matches on
 * the normalised path). */
static const wf_route_t *cc_route(cconn_t *cc, const wf_http_request_t *req)
{
    const wf_policy_t *pol = cc->sc->policy;
    if (!cc->route && pol)
        cc->route = pol->nroutes ? wf_policy_route(pol, req->host, req->path) : &pol->root;
    return cc->route;
}

/* 429 with Retry-After (seconds). */
static void cc_send_429(cconn_t *cc, uint64_t retry_after)
{
    cc_send_error(cc, 429);
    if (cc->phase != PH_SEND_CLOSE || cc->rh_ptr != cc->rh)
        return;
    char hdr[48];
    int k = snprintf(hdr, sizeof(hdr), "Retry-After: %llu\r\n", (unsigned long long)retry_after);
    char *eol = memchr(cc->rh, '\n', cc->rh_len);
    if (!eol || k <= 0 || cc->rh_len + (uint32_t)k > cc->rh_cap)
        return;
    size_t at = (size_t)(eol + 1 - cc->rh);
    memmove(cc->rh + at + k, cc->rh + at, cc->rh_len - at);
    memcpy(cc->rh + at, hdr, (size_t)k);
    cc->rh_len += (uint32_t)k;
}

static void cc_limit_event(cconn_t *cc, const wf_http_request_t *req, wf_secev_reason_t why)
{
    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.action = WF_SECEV_LIMIT;
    ev.reason = why;
    ev.status = 429;
    WF_SECEV_SET(&ev, request_id, wf_str(cc->rid, cc->rid_len));
    WF_SECEV_SET(&ev, client_ip, wf_str(cc->ip, cc->ip_len));
    ev.client_port = cc->port;
    WF_SECEV_SET(&ev, method, req->method);
    WF_SECEV_SET(&ev, host, req->host);
    WF_SECEV_SET(&ev, path, req->path);
    WF_SECEV_SET(&ev, query, req->query);
    if (cc->route)
        WF_SECEV_SET(&ev, route, wf_str_c(cc->route->name));
    if (cc->c.tls && wf_tls_conn_peer_verified(&cc->c))
        WF_SECEV_SET(&ev, identity, wf_tls_conn_identity(&cc->c));
    const wf_http_header_t *ua = wf_http_header_find(req->headers, req->nheaders, "User-Agent");
    if (ua)
        WF_SECEV_SET(&ev, user_agent, ua->value);
    wf_secops_emit_global(&ev);
}

/* rate_limits: the client is over connections_per_client, or a token
 * bucket (client address, verified client identity, route) is empty: 429
 * with Retry-After, a security event, and a log line (at most one a second
 * per worker). Returns true when the request was refused. */
static bool cc_limited(cconn_t *cc, const wf_http_request_t *req)
{
    const wf_ratelimit_conf_t *rl = &cc->sc->rate_limits;
    wf_worker_t *w = cc->w;
    uint64_t now = wf_loop_now(w->loop), wait = 0;
    wf_secev_reason_t why = WF_SECEV_R_RATE;
    const char *what = "connections_per_client";
    if (cc->climit == 0) {
        why = WF_SECEV_R_CONNLIMIT;
        wait = 1000;
        WF_STAT_INC(&w->stats, conn_limited);
    } else {
        char kb[17];
        const wf_route_t *route = cc_route(cc, req);
        const wf_rate_t *rr = route && route->rate_limit.rate > 0 ? &route->rate_limit : &rl->route;
        wf_str_t id = WF_STR_NULL;
        if (rl->identity.rate > 0 && cc->c.tls && wf_tls_conn_peer_verified(&cc->c))
            id = wf_tls_conn_identity(&cc->c);
        if ((wait = wf_ratelimit_take(wf_ratelimit_global, WF_RL_CLIENT, wf_ratelimit_addr_key(&cc->peer, kb),
                                      &rl->client, now)))
            what = "client rate";
        else if (id.n && (wait = wf_ratelimit_take(wf_ratelimit_global, WF_RL_IDENTITY, id, &rl->identity, now)))
            what = "identity rate";
        else if ((wait = wf_ratelimit_take(wf_ratelimit_global, WF_RL_ROUTE,
                                           route ? wf_str_c(route->name) : WF_STR(""), rr, now)))
            what = "route rate";
        if (!wait)
            return false;
        WF_STAT_INC(&w->stats, rate_limited);
    }
    cc_limit_event(cc, req, why);
    if (now - w->limit_log_at >= 1000) {
        wf_info("client %.*s: %s limit reached: 429 (%llu more refusals since the last such line)", cc->ip_len,
                cc->ip, what, (unsigned long long)w->limit_log_skipped);
        w->limit_log_at = now;
        w->limit_log_skipped = 0;
    } else {
        w->limit_log_skipped++;
    }
    cc->req_keepalive = false;
    cc_send_429(cc, wf_ratelimit_retry_after(wait));
    return true;
}

/* The identity policy of the request's route (route `access:`, docs/tls.md):
 * a client whose verified certificate names no allowed identity gets 403,
 * one security event and a log line. Returns true when it was refused. */
static bool cc_access_denied(cconn_t *cc, const wf_http_request_t *req)
{
    const wf_policy_t *pol = cc->sc->policy;
    bool any = false;
    for (size_t i = 0; pol && i < pol->nroutes && !any; i++)
        any = pol->routes[i].access != NULL;
    if (!any)
        return false;
    const wf_route_t *route = cc_route(cc, req);
    bool verified = cc->c.tls && wf_tls_conn_peer_verified(&cc->c);
    wf_str_t id = verified ? wf_tls_conn_identity(&cc->c) : WF_STR("");
    if (wf_tls_access_allows(route->access, verified, id))
        return false;
    WF_STAT_INC(&cc->w->stats, identity_denied);
    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.action = WF_SECEV_DENY;
    ev.reason = WF_SECEV_R_IDENTITY;
    ev.status = 403;
    ev.client_port = cc->port;
    WF_SECEV_SET(&ev, request_id, wf_str(cc->rid, cc->rid_len));
    WF_SECEV_SET(&ev, client_ip, wf_str(cc->ip, cc->ip_len));
    WF_SECEV_SET(&ev, identity, id);
    WF_SECEV_SET(&ev, method, req->method);
    WF_SECEV_SET(&ev, host, req->host);
    WF_SECEV_SET(&ev, path, req->path);
    WF_SECEV_SET(&ev, query, req->query);
    WF_SECEV_SET(&ev, route, wf_str_c(route->name));
    const wf_http_header_t *ua = wf_http_header_find(req->headers, req->nheaders, "User-Agent");
    if (ua)
        WF_SECEV_SET(&ev, user_agent, ua->value);
    wf_secops_emit_global(&ev);
    if (verified)
        wf_info("client %.*s:%u: identity \"%.*s\" may not reach route %s: 403 (request %.*s)", cc->ip_len, cc->ip,
                cc->port, (int)id.n, id.p, route->name, cc->rid_len, cc->rid);
    else
        wf_info("client %.*s:%u: no verified client certificate for route %s: 403 (request %.*s)", cc->ip_len, cc->ip,
                cc->port, route->name, cc->rid_len, cc->rid);
    cc->req_keepalive = false;
    cc_send_error(cc, 403);
    return true;
}

/* A request header was parsed: set up the exchange and go upstream. */
static void cc_start(cconn_t *cc, wf_http_request_t *req, size_t head_len)
{
    wf_worker_t *w = cc->w;
    const wf_server_conf_t *sc = cc->sc;
    WF_STAT_INC(&w->stats, requests);
    cc->t_req_ns = wf_now_ns();
    cc->nreq++;
    cc->bytes_in = head_len;
    cc_new_request_id(cc, req);
    cc->minor = req->minor_version;
    cc->req_keepalive = (req->flags & WF_HTTP_F_KEEP_ALIVE) != 0;

    const wf_route_t *route = cc_route(cc, req);
    cc->pool = &cc->gen->ups->pools[route ? route->upstream_pool : 0];
    if (cc->pool->conf->balance == WF_BALANCE_HASH)
        cc->up_key = wf_upstream_request_key(cc->pool, wf_str(cc->ip, cc->ip_len), req);
    cc->idempotent = wf_str_eq_lit_nocase(req->method, "GET") || wf_str_eq_lit_nocase(req->method, "HEAD") ||
                     wf_str_eq_lit_nocase(req->method, "OPTIONS") || wf_str_eq_lit_nocase(req->method, "PUT") ||
                     wf_str_eq_lit_nocase(req->method, "DELETE") || wf_str_eq_lit_nocase(req->method, "TRACE");

    wf_proxy_req_ctx_t ctx = {
        .client_ip = wf_str(cc->ip, cc->ip_len),
        .client_v6 = cc->v6,
        .request_id = wf_str(cc->rid, cc->rid_len),
    };
    ctx.default_host = wf_str_c(cc->pool->conf->members[0].address);
    if (sc->identity_header && cc->c.tls)
        ctx.identity = wf_tls_conn_identity(&cc->c);
    int n = wf_proxy_request_head(sc, req, &ctx, cc->rq, cc->rq_cap);
    cc->phase = PH_PROXY;
    cc->t_head = cc->t_idle = 0;
    if (n < 0) {
        WF_STAT_INC(&w->stats, http_reject[WF_HTTP_E_HEADERS_TOO_LARGE]);
        cc_send_error(cc, 431);
        return;
    }
    cc->rq_len = (uint32_t)n;
    cc->rq_off = 0;
    cc->method = wf_str(cc->rq, req->method.n);
    const char *ps = cc->rq + req->method.n + 1, *pe = ps;
    while (*pe != ' ' && *pe != '?')
        pe++;
    cc->path = wf_str(ps, (size_t)(pe - ps));

    cc->in.start += (uint32_t)head_len;
    cc->in.fwd = cc->in.scan = cc->in.start;

    if (req->flags & WF_HTTP_F_CHUNKED) {
        cc->req_body = BODY_CHUNKED;
        wf_http_chunked_init(&cc->req_chunk, &sc->http);
    } else if ((req->flags & WF_HTTP_F_CONTENT_LENGTH) && req->content_length > 0) {
        cc->req_body = BODY_CL;
        cc->req_left = req->content_length;
    } else {
        cc->req_done = true;
    }
    /* never a 100 to an HTTP/1.0 client (RFC 9110 10.1.1) */
    cc->expect_continue = !cc->req_done && (req->flags & WF_HTTP_F_EXPECT_CONTINUE) && req->minor_version >= 1;
    if (wf_str_eq_lit_nocase(req->method, "CONNECT")) {
        WF_STAT_INC(&w->stats, requests_rejected);
        cc->req_keepalive = false;
        cc_send_error(cc, 501);
        return;
    }
    if (cc_limited(cc, req) || cc_access_denied(cc, req))
        return;
    wf_insp_start_t ist = {
        .owner = cc, .peer = &cc->peer, .ip = wf_str(cc->ip, cc->ip_len), .port = cc->port,
        .rid = wf_str(cc->rid, cc->rid_len), .req = req, .head = cc->in.p + cc->in.start - head_len,
        .head_len = head_len, .has_body = !cc->req_done, .buf_cap = cc->in.cap,
    };
    cc->insp_json = wf_insp_accept_json(req);
    wf_insp_action_t a = wf_insp_begin(w, &ist, &cc->insp, &cc->insp_limit);
    if (a == WF_INSP_BODY && cc->req_body == BODY_CL && req->content_length > cc->insp_limit &&
        wf_insp_reject_oversize(cc->insp))
        a = WF_INSP_TOO_LARGE;
    if (a != WF_INSP_PASS || cc->insp) {
        cc_insp_apply(cc, a);
        return;
    }
    cc_scan_body(cc);
    if (cc->phase != PH_PROXY)
        return;
    cc_forward(cc);
}

/* The request goes upstream. A body that is all in the buffer already can
 * be sent again to another member if this one fails (cc_rewind). */
static void cc_forward(cconn_t *cc)
{
    if (cc->req_body != BODY_NONE && cc->req_done) {
        cc->replay = true;
        cc->replay_start = cc->in.start;
        cc->replay_end = cc->in.fwd;
    }
    cc_up_acquire(cc, false, NULL);
}

/* Acts on what inspection says (see inspect_hook.h). */
static void cc_insp_apply(cconn_t *cc, wf_insp_action_t a)
{
    wf_worker_t *w = cc->w;
    if (a == WF_INSP_BODY || a == WF_INSP_WAIT) {
        cc->phase = PH_INSPECT;
        cc->insp_parked = a == WF_INSP_WAIT;
        return;
    }
    cc->insp_parked = false;
    if (a == WF_INSP_TAG && cc->insp) {
        int n = wf_insp_tag_head(cc->insp, cc->rq, cc->rq_len, cc->rq_cap);
        if (n < 0) {
            cc_send_error(cc, 503);
            return;
        }
        cc->rq_len = (uint32_t)n;
    }
    if (cc->insp) {
        wf_insp_end(cc->insp);
        cc->insp = NULL;
    }
    cc->phase = PH_PROXY;
    switch (a) {
    case WF_INSP_BLOCK:
    case WF_INSP_REFUSE: {
        bool keep = cc->req_done && cc->req_keepalive && !w->shutting_down;
        int n = wf_insp_block_response(cc->insp_json, wf_str(cc->rid, cc->rid_len), keep, cc->rh, cc->rh_cap);
        if (n < 0) {
            cc_close(cc);
            return;
        }
        cc->status = 403;
        cc->rh_ptr = cc->rh;
        cc->rh_len = (uint32_t)n;
        cc->rh_off = 0;
        cc->resp_started = true;
        cc->client_close = !keep;
        cc->phase = PH_SEND_CLOSE;
        cc->t_wr = 0;
        return;
    }
    case WF_INSP_UNAVAILABLE:
        cc->req_keepalive = false;
        cc_send_error(cc, 503);
        return;
    case WF_INSP_TOO_LARGE:
        cc->req_keepalive = false;
        cc->req_done = true; /* stop reading: the connection closes */
        cc_send_error(cc, 413);
        return;
    default: /* PASS, TAG */
        cc_scan_body(cc);
        if (cc->phase != PH_PROXY)
            return;
        cc_forward(cc);
        return;
    }
}

/* PH_INSPECT: reads the body up to the inspection limit (sending 100
 * Continue if the client waits for it), then hands it to inspection; a
 * parked request does nothing until its verdict. */
static bool cc_step_inspect(cconn_t *cc)
{
    wf_worker_t *w = cc->w;
    if (cc->insp_parked)
        return false;
    bool progress = false;
    if (cc->expect_continue && !cc->continue_sent && cc->rh_len == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        cc->rh_ptr = cont;
        cc->rh_len = sizeof(cont) - 1;
        cc->rh_off = 0;
        cc->continue_sent = true;
        WF_STAT_INC(&w->stats, expect_continue);
    }
    if (cc->rh_off < cc->rh_len && cc->writable) {
        ssize_t n = wf_conn_write(&cc->c, cc->rh_ptr + cc->rh_off, cc->rh_len - cc->rh_off);
        if (n > 0) {
            cc->rh_off += (uint32_t)n;
            cc->bytes_out += (uint64_t)n;
            WF_STAT_ADD(&w->stats, bytes_out, (uint64_t)n);
            if (cc->rh_off == cc->rh_len)
                cc->rh_len = cc->rh_off = 0;
            progress = true;
        } else if (n == -EAGAIN) {
            cc->writable = false;
        } else {
            WF_STAT_INC(&w->stats, client_aborted);
            cc_abort(cc, 499);
            return false;
        }
    }
    cc_scan_body(cc);
    if (cc->phase != PH_INSPECT)
        return false;
    uint32_t have = cc->in.fwd - cc->in.start;
    bool full = !cc->req_done && (have >= cc->insp_limit || (cc->in.end == cc->in.cap && cc->in.start == 0));
    if (!cc->req_done && !full && cc->readable) {
        uint32_t space = pbuf_space(&cc->in);
        ssize_t n = space ? wf_conn_read(&cc->c, cc->in.p + cc->in.end, space) : 0;
        if (n > 0) {
            if ((size_t)n < space && !cc->rdhup)
                cc->readable = false;
            cc->in.end += (uint32_t)n;
            WF_STAT_ADD(&w->stats, bytes_in, (uint64_t)n);
            cc->t_rd = 0;
            return true;
        } else if (n == -EAGAIN) {
            cc->readable = false;
        } else if (space) {
            WF_STAT_INC(&w->stats, client_aborted);
            wf_debug("client %.*s:%u: closed during the request body", cc->ip_len, cc->ip, cc->port);
            cc_abort(cc, 499);
            return false;
        }
        return progress;
    }
    if (!cc->req_done && !full)
        return progress;
    wf_str_t raw = wf_str(cc->in.p + cc->in.start, WF_MIN((size_t)have, cc->insp_limit));
    wf_insp_action_t a = wf_insp_body(cc->insp, raw, cc->req_body == BODY_CHUNKED, cc->req_done && have <= cc->insp_limit);
    cc_insp_apply(cc, a);
    return true;
}

void wf_proxy_insp_done(void *owner, wf_insp_action_t a)
{
    cconn_t *cc = owner;
    if (cc->phase != PH_INSPECT || !cc->insp_parked)
        return;
    cc_insp_apply(cc, a);
    if (cc->phase != PH_DEAD)
        cc_drive(cc);
}

/* The upstream connection failed before a response began: retry on a fresh
 * connection when nothing is lost by it, else answer 502. */
static void cc_up_failed(cconn_t *cc, int err, const char *what)
{
    upconn_t *u = cc->up;
    wf_worker_t *w = cc->w;
    bool reused = u && u->reused;
    const char *addr = cc_up_name(cc);
    if (cc->resp_started) {
        WF_STAT_INC(&w->stats, upstream_closed);
        WF_STAT_INC(&w->stats, response_aborted);
        wf_info("upstream %s: %s: %s after the response started; closing the client connection", addr, what,
                wf_strerror(err));
        cc_abort(cc, cc->status);
        return;
    }
    cc_up_release(cc, false);
    if (reused && cc->req_body == BODY_NONE && cc->ub.end == 0) {
        /* a pooled connection the upstream had closed: resend on a new one */
        WF_STAT_INC(&w->stats, upstream_retries);
        wf_debug("upstream %s: reused connection failed (%s), retrying", addr, wf_strerror(err));
        cc->rq_off = 0;
        cc->req_sent = false;
        cc_up_acquire(cc, true, cc->upm);
        return;
    }
    WF_STAT_INC(&w->stats, upstream_closed);
    wf_info("upstream %s: %s: %s", addr, what, wf_strerror(err));
    if (cc->upm)
        wf_upstream_failed(cc->upm, wf_loop_now(w->loop));
    if (cc->ub.end == 0 && cc_can_resend(cc)) {
        /* nothing came back: the member died or reset; another one gets the request */
        WF_STAT_INC(&w->stats, upstream_member_retries);
        atomic_fetch_add_explicit(&cc->pool->retries, 1, memory_order_relaxed);
        cc_rewind(cc);
        cc_up_acquire(cc, true, NULL);
        return;
    }
    WF_STAT_INC(&w->stats, upstream_502);
    cc_send_error(cc, 502);
}

/* Builds the client head from a parsed upstream response. */
static bool cc_response_head(cconn_t *cc, wf_http_response_t *res, size_t head_len)
{
    const wf_server_conf_t *sc = cc->sc;
    bool chunked = res->flags & WF_HTTP_F_CHUNKED;
    cc->dechunk = chunked && cc->minor == 0;
    bool keep = cc->req_keepalive && cc->req_done && !cc->rdhup && !cc->w->shutting_down &&
                !(res->flags & WF_HTTP_F_UNTIL_CLOSE) && !cc->dechunk;
    unsigned flags = sc->via ? WF_PROXY_RESP_VIA : 0;
    if (cc->dechunk)
        flags |= WF_PROXY_RESP_DECHUNK;
    if (!keep)
        flags |= WF_PROXY_RESP_CLOSE;
    else if (cc->minor == 0)
        flags |= WF_PROXY_RESP_KEEPALIVE10;
    int n = wf_proxy_response_head(res, cc->ub.p + cc->ub.start, head_len, flags, cc->rh, cc->rh_cap);
    if (n < 0)
        return false;
    cc->client_close = !keep;
    cc->rh_ptr = cc->rh;
    cc->rh_len = (uint32_t)n;
    cc->rh_off = 0;
    cc->status = res->status;
    cc->resp_started = true;
    cc->ub.start += (uint32_t)head_len;
    cc->ub.fwd = cc->ub.scan = cc->ub.start;
    cc->up_reusable = (res->flags & WF_HTTP_F_KEEP_ALIVE) && !(res->flags & WF_HTTP_F_UNTIL_CLOSE);
    if (res->flags & WF_HTTP_F_NO_BODY) {
        cc->resp_body = BODY_NONE;
        cc->resp_done = true;
    } else if (chunked) {
        cc->resp_body = BODY_CHUNKED;
        wf_http_chunked_init(&cc->resp_chunk, &sc->http_resp);
    } else if (res->flags & WF_HTTP_F_CONTENT_LENGTH) {
        cc->resp_body = BODY_CL;
        cc->resp_left = res->content_length;
        if (cc->resp_left == 0)
            cc->resp_done = true;
    } else {
        cc->resp_body = BODY_UNTIL_CLOSE;
    }
    return true;
}

/* The upstream's response head is unusable: answer 502. Returns false. */
static bool cc_bad_response(cconn_t *cc)
{
    WF_STAT_INC(&cc->w->stats, upstream_invalid);
    WF_STAT_INC(&cc->w->stats, upstream_502);
    cc_send_error(cc, 502);
    return false;
}

/* Examines upstream bytes: the response head, then body framing. Returns
 * false when the exchange ended (error sent or connection closed). */
static bool cc_scan_response(cconn_t *cc, bool *progress)
{
    pbuf_t *b = &cc->ub;
    wf_worker_t *w = cc->w;
    while (!cc->resp_started && b->end > b->start) {
        if (cc->rh_off < cc->rh_len)
            return true; /* a 100 Continue is still on its way out */
        if ((size_t)w->hdrs_cap < cc->sc->http_resp.max_headers)
            return cc_send_error(cc, 502), false;
        wf_http_response_t res;
        int rc = wf_http_parse_response(b->p + b->start, b->end - b->start, &cc->sc->http_resp, cc->method, &res,
                                        w->hdrs);
        if (rc == WF_HTTP_INCOMPLETE) {
            if (b->end - b->start >= cc->sc->max_header_bytes || b->end == b->cap) {
                wf_info("upstream %s: response header too large", cc_up_name(cc));
                return cc_bad_response(cc);
            }
            return true;
        }
        if (rc < 0 || res.status == 101) {
            wf_info("upstream %s: invalid response: %s", cc_up_name(cc),
                    rc < 0 ? wf_http_err_name(res.error) : "unexpected 101");
            return cc_bad_response(cc);
        }
        *progress = true;
        if (res.status < 200) {
            if (++cc->interim > 16) {
                wf_info("upstream %s: more than 16 interim responses", cc_up_name(cc));
                return cc_bad_response(cc);
            }
            b->start += (uint32_t)rc; /* interim responses are not forwarded */
            b->fwd = b->scan = b->start;
            continue;
        }
        if (!cc_response_head(cc, &res, (size_t)rc))
            return cc_bad_response(cc);
    }
    if (!cc->resp_started)
        return true;
    while (!cc->resp_done && b->scan < b->end) {
        *progress = true;
        if (cc->resp_body == BODY_CL) {
            uint32_t n = (uint32_t)WF_MIN((uint64_t)(b->end - b->scan), cc->resp_left);
            b->scan += n;
            b->fwd = b->scan;
            cc->resp_left -= n;
            if (!cc->resp_left)
                cc->resp_done = true;
        } else if (cc->resp_body == BODY_UNTIL_CLOSE) {
            b->fwd = b->scan = b->end;
        } else {
            size_t used = 0;
            wf_str_t data;
            int rc = wf_http_chunked_feed(&cc->resp_chunk, b->p + b->scan, b->end - b->scan, &used, &data);
            if (cc->dechunk) {
                if (data.n) {
                    memmove(b->p + b->fwd, data.p, data.n);
                    b->fwd += (uint32_t)data.n;
                }
                b->scan += (uint32_t)used;
            } else {
                b->scan += (uint32_t)used;
                b->fwd = b->scan;
            }
            if (rc == 1) {
                cc->resp_done = true;
            } else if (rc < 0) {
                WF_STAT_INC(&w->stats, upstream_invalid);
                WF_STAT_INC(&w->stats, response_aborted);
                wf_info("upstream %s: invalid chunked body: %s", cc_up_name(cc),
                        wf_http_err_name(cc->resp_chunk.error));
                cc_abort(cc, cc->status);
                return false;
            } else if (used == 0) {
                break;
            }
        }
    }
    if (cc->resp_done && b->scan < b->end) {
        /* bytes after the response: the upstream is out of step; drop them and the connection */
        cc->up_reusable = false;
        b->end = b->scan;
    }
    return true;
}

/* One pass of every step the current readiness allows. Returns true if any
 * made progress; false also when the connection went away (cc->phase). */
static bool cc_step_proxy(cconn_t *cc)
{
    wf_worker_t *w = cc->w;
    bool progress = false;
    upconn_t *u = cc->up;

    /* connect completion */
    if (u && u->connecting && (u->writable || u->hup)) {
        int rc = wf_net_connect_result(u->c.fd);
        if (rc == 0 && !u->hup) {
            u->connecting = false;
            cc->t_up = 0;
        } else {
            if (!rc)
                rc = -ECONNREFUSED;
            WF_STAT_INC(&w->stats, upstream_connect_failed);
            wf_info("upstream %s: connect: %s", cc_up_name(cc), wf_strerror(rc));
            cc_up_release(cc, false);
            wf_upstream_failed(cc->upm, wf_loop_now(w->loop));
            cc_up_acquire(cc, true, NULL);
            return cc->phase == PH_PROXY;
        }
        progress = true;
    }
    bool up_ready = u && !u->connecting;

    /* 100-continue once we are ready for the body */
    if (cc->expect_continue && !cc->continue_sent && up_ready && cc->in.fwd == cc->in.start && !cc->req_done &&
        !cc->resp_started && cc->rh_len == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        cc->rh_ptr = cont;
        cc->rh_len = sizeof(cont) - 1;
        cc->rh_off = 0;
        cc->continue_sent = true;
        WF_STAT_INC(&w->stats, expect_continue);
    }

    /* client -> buffer (request body) */
    if (!cc->req_done && cc->readable && cc->up) {
        uint32_t space = pbuf_space(&cc->in);
        if (space) {
            ssize_t n = wf_conn_read(&cc->c, cc->in.p + cc->in.end, space);
            if (n > 0) {
                if ((size_t)n < space && !cc->rdhup) /* after a FIN, read on to see the end */
                    cc->readable = false;
                cc->in.end += (uint32_t)n;
                WF_STAT_ADD(&w->stats, bytes_in, (uint64_t)n);
                cc_wait_end(&cc->t_rd, &cc->rd_waited, wf_loop_now(w->loop));
                progress = true;
                cc_scan_body(cc);
                if (cc->phase != PH_PROXY)
                    return false;
            } else if (n == -EAGAIN) {
                cc->readable = false;
            } else {
                WF_STAT_INC(&w->stats, client_aborted);
                wf_debug("client %.*s:%u: closed during the request body", cc->ip_len, cc->ip, cc->port);
                cc_abort(cc, 499);
                return false;
            }
        }
    }

    /* buffer -> upstream (request head and body) */
    if (up_ready && u->writable && cc->up == u) {
        struct iovec iov[2];
        int k = 0;
        if (cc->rq_off < cc->rq_len)
            iov[k++] = (struct iovec){ cc->rq + cc->rq_off, cc->rq_len - cc->rq_off };
        if (cc->in.fwd > cc->in.start)
            iov[k++] = (struct iovec){ cc->in.p + cc->in.start, cc->in.fwd - cc->in.start };
        if (k) {
            ssize_t n = wf_conn_writev(&u->c, iov, k);
            if (n > 0) {
                uint32_t m = (uint32_t)n, h = WF_MIN(m, cc->rq_len - cc->rq_off);
                cc->rq_off += h;
                m -= h;
                if (m) {
                    pbuf_sent(&cc->in, m);
                    cc->body_sent = true;
                }
                if ((size_t)n < iov[0].iov_len + (k > 1 ? iov[1].iov_len : 0))
                    u->writable = false;
                cc->t_up = 0;
                progress = true;
            } else if (n == -EAGAIN) {
                u->writable = false;
            } else {
                cc_up_failed(cc, (int)n, "send");
                return cc->phase == PH_PROXY;
            }
        }
        if (cc->rq_off == cc->rq_len && cc->in.fwd == cc->in.start && cc->req_done && !cc->req_sent) {
            cc->req_sent = true;
            cc->t_up = 0;
        }
    }

    /* upstream -> buffer (response) */
    if (up_ready && cc->up == u && u->readable && !cc->resp_done) {
        uint32_t space = pbuf_space(&cc->ub);
        if (space) {
            ssize_t n = wf_conn_read(&u->c, cc->ub.p + cc->ub.end, space);
            if (n > 0) {
                if ((size_t)n < space && !u->hup)
                    u->readable = false;
                cc->ub.end += (uint32_t)n;
                cc->t_up = 0;
                progress = true;
            } else if (n == -EAGAIN) {
                u->readable = false;
                u->hup = false;
            } else if (n == 0 && cc->resp_started && cc->resp_body == BODY_UNTIL_CLOSE) {
                cc->resp_done = true;
                cc->up_reusable = false;
                progress = true;
            } else {
                if (n == 0)
                    n = -WF_ECLOSED;
                if (cc->resp_started)
                    WF_STAT_INC(&w->stats, upstream_closed);
                cc_up_failed(cc, (int)n, "receive");
                return cc->phase == PH_PROXY;
            }
        }
    }
    if (!cc_scan_response(cc, &progress))
        return false;

    /* release the upstream as soon as its response is complete */
    if (cc->up && cc->resp_done) {
        bool reusable = cc->up_reusable && cc->req_sent && cc->ub.scan == cc->ub.end;
        cc_up_release(cc, reusable);
    }

    /* buffer -> client (response head and body) */
    if (cc->writable && (cc->rh_off < cc->rh_len || cc->ub.fwd > cc->ub.start)) {
        struct iovec iov[2];
        int k = 0;
        if (cc->rh_off < cc->rh_len)
            iov[k++] = (struct iovec){ (void *)(cc->rh_ptr + cc->rh_off), cc->rh_len - cc->rh_off };
        if (cc->ub.fwd > cc->ub.start && cc->rh_ptr != NULL && cc->resp_started)
            iov[k++] = (struct iovec){ cc->ub.p + cc->ub.start, cc->ub.fwd - cc->ub.start };
        ssize_t n = k ? wf_conn_writev(&cc->c, iov, k) : 0;
        if (n > 0) {
            uint32_t m = (uint32_t)n, h = WF_MIN(m, cc->rh_len - cc->rh_off);
            cc->rh_off += h;
            m -= h;
            if (cc->rh_off == cc->rh_len && !cc->resp_started)
                cc->rh_len = cc->rh_off = 0; /* a 100 Continue went out */
            if (m)
                pbuf_sent(&cc->ub, m);
            cc->bytes_out += (uint64_t)n;
            WF_STAT_ADD(&w->stats, bytes_out, (uint64_t)n);
            if ((size_t)n < iov[0].iov_len + (k > 1 ? iov[1].iov_len : 0))
                cc->writable = false;
            cc_wait_end(&cc->t_wr, &cc->wr_waited, wf_loop_now(w->loop));
            progress = true;
        } else if (n == -EAGAIN) {
            cc->writable = false;
        } else if (n < 0) {
            WF_STAT_INC(&w->stats, client_aborted);
            cc_abort(cc, 499);
            return false;
        }
    }
    return progress;
}

/* The exchange is over (response complete and sent): log, then wait for the
 * next request or close. */
static void cc_finish(cconn_t *cc)
{
    cc_log(cc);
    if (cc->up)
        cc_up_release(cc, false);
    bool keep = !cc->client_close && cc->req_done && !cc->w->shutting_down && !cc->rdhup;
    if (!keep) {
        if (!cc->req_done) {
            /* unread request bytes would make close() send a reset that can
             * destroy the response in flight: drain for a while first */
            wf_conn_shutdown(&cc->c, SHUT_WR);
            cc->phase = PH_LINGER;
            cc->t_rd = wf_loop_now(cc->w->loop);
            return;
        }
        cc_close(cc);
        return;
    }
    /* leftover bytes are the next (pipelined) request */
    cc->in.start = cc->in.fwd;
    cc->in.scan = cc->in.fwd;
    if (cc->in.start == cc->in.end)
        cc->in.start = cc->in.fwd = cc->in.scan = cc->in.end = 0;
    cc->ub.start = cc->ub.fwd = cc->ub.scan = cc->ub.end = 0;
    cc_reset_exchange(cc);
    cc->phase = PH_HEAD;
    uint64_t now = wf_loop_now(cc->w->loop);
    cc->t_idle = now;
    cc->t_head = cc->in.end ? now : 0;
}

/* Reads and parses a request header. */
static bool cc_step_head(cconn_t *cc)
{
    wf_worker_t *w = cc->w;
    if (cc->in.end > cc->in.start) {
        if (w->hdrs_cap < cc->sc->max_headers) {
            cc_send_error(cc, 503);
            return true;
        }
        wf_http_request_t req;
        int rc = wf_http_parse_request(cc->in.p + cc->in.start, cc->in.end - cc->in.start, &cc->sc->http, &req, w->hdrs);
        if (rc > 0) {
            cc_start(cc, &req, (size_t)rc);
            return true;
        }
        if (rc == WF_HTTP_ERROR) {
            cc_reject(cc, req.error);
            return true;
        }
        if (cc->in.end - cc->in.start >= cc->sc->max_header_bytes) {
            cc_reject(cc, WF_HTTP_E_HEADERS_TOO_LARGE);
            return true;
        }
    }
    if (!cc->readable) {
        if (cc->in.end == 0)
            cc_block_release(cc);
        return false;
    }
    if (!cc_block_take(cc)) {
        WF_STAT_INC(&w->stats, oom);
        cc_close(cc);
        return false;
    }
    uint32_t space = pbuf_space(&cc->in);
    if (!space) {
        cc_reject(cc, WF_HTTP_E_HEADERS_TOO_LARGE);
        return true;
    }
    ssize_t n = wf_conn_read(&cc->c, cc->in.p + cc->in.end, space);
    if (n > 0) {
        if ((size_t)n < space && !cc->rdhup) /* after a FIN, read on to see the end */
            cc->readable = false;
        if (cc->in.end == cc->in.start && !cc->t_head)
            cc->t_head = wf_loop_now(w->loop);
        cc->in.end += (uint32_t)n;
        WF_STAT_ADD(&w->stats, bytes_in, (uint64_t)n);
        return true;
    }
    if (n == -EAGAIN) {
        cc->readable = false;
        if (cc->in.end == 0) {
            if (w->shutting_down) {
                cc_close(cc);
                return false;
            }
            cc_block_release(cc);
        }
        return false;
    }
    /* end of stream or error between requests: a normal close */
    if (cc->in.end > cc->in.start)
        wf_debug("client %.*s:%u: closed with a partial request header", cc->ip_len, cc->ip, cc->port);
    cc_close(cc);
    return false;
}

static bool cc_step_linger(cconn_t *cc)
{
    if (!cc->readable)
        return false;
    char tmp[4096];
    char *buf = cc->block ? cc->in.p : tmp;
    size_t cap = cc->block ? cc->in.cap : sizeof(tmp);
    for (int i = 0; i < 16; i++) {
        ssize_t n = wf_conn_read(&cc->c, buf, cap);
        if (n == -EAGAIN) {
            cc->readable = false;
            return false;
        }
        if (n <= 0) {
            cc_close(cc);
            return false;
        }
    }
    return true;
}

static void cc_redrive(wf_loop_t *loop, void *data)
{
    cconn_t *cc = data;
    if (cc->phase != PH_DEAD)
        cc_drive(cc);
}

static void cc_drive(cconn_t *cc)
{
    int guard;
    for (guard = 0; guard < 256; guard++) {
        bool progress = false;
        int phase = cc->phase;
        switch (cc->phase) {
        case PH_HEAD:
            progress = cc_step_head(cc);
            break;
        case PH_PROXY:
            progress = cc_step_proxy(cc);
            if (cc->phase == PH_PROXY && cc->resp_done && !cc->up && cc->rh_off == cc->rh_len &&
                cc->ub.fwd == cc->ub.start) {
                cc_finish(cc);
                progress = true;
            }
            break;
        case PH_SEND_CLOSE:
            if (cc->writable && cc->rh_off < cc->rh_len) {
                ssize_t n = wf_conn_write(&cc->c, cc->rh_ptr + cc->rh_off, cc->rh_len - cc->rh_off);
                if (n > 0) {
                    cc->rh_off += (uint32_t)n;
                    cc->bytes_out += (uint64_t)n;
                    WF_STAT_ADD(&cc->w->stats, bytes_out, (uint64_t)n);
                    progress = true;
                } else if (n == -EAGAIN) {
                    cc->writable = false;
                } else {
                    cc_abort(cc, cc->status);
                    return;
                }
            }
            if (cc->phase == PH_SEND_CLOSE && cc->rh_off == cc->rh_len) {
                cc->resp_done = true;
                cc_finish(cc);
                progress = true;
            }
            break;
        case PH_LINGER:
            progress = cc_step_linger(cc);
            break;
        case PH_INSPECT:
            progress = cc_step_inspect(cc);
            break;
        default:
            return;
        }
        if (cc->phase == PH_DEAD)
            return;
        if (!progress && cc->phase == phase)
            break;
    }
    /* edge-triggered readiness will not be signalled again: continue after
     * the other connections of this batch had their turn */
    if (guard == 256)
        wf_loop_defer(cc->w->loop, &cc->redrive, cc_redrive, cc);
    cc_waits(cc);
}

/* ---- connection events and timers ---- */

static void cc_event(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    cconn_t *cc = io->data;
    ev = wf_conn_ready(&cc->c, ev);
    if (ev & WF_IO_READ)
        cc->readable = true;
    if (ev & WF_IO_WRITE)
        cc->writable = true;
    if (ev & WF_IO_HUP) {
        cc->rdhup = true;
        cc->readable = true;
    }
    if (ev & WF_IO_ERR) {
        cc->readable = cc->writable = true;
        if (cc->phase == PH_PROXY || cc->phase == PH_SEND_CLOSE || cc->phase == PH_INSPECT) {
            /* reset by the client: stop the upstream exchange now rather than at the first write */
            WF_STAT_INC(&cc->w->stats, client_aborted);
            wf_debug("client %.*s:%u: connection reset", cc->ip_len, cc->ip, cc->port);
            cc_abort(cc, 499);
            return;
        }
    }
    cc_drive(cc);
}

static void cc_timer(wf_loop_t *loop, wf_timer_t *t)
{
    cconn_t *cc = t->data;
    wf_worker_t *w = cc->w;
    const wf_server_conf_t *sc = cc->sc;
    uint64_t now = wf_loop_now(loop);
    if (cc->phase == PH_HEAD) {
        bool slow = now >= cc_header_rate_due(cc);
        if (cc->t_head && (now >= cc->t_head + sc->header_timeout_ms || slow)) {
            if (now >= cc->t_head + sc->header_timeout_ms) {
                WF_STAT_INC(&w->stats, timeout_header);
            } else {
                WF_STAT_INC(&w->stats, slow_header);
                wf_debug("client %.*s:%u: request header under min_rates.header (%u bytes in %llums)", cc->ip_len,
                         cc->ip, cc->port, cc->in.end - cc->in.start, (unsigned long long)(now - cc->t_head));
            }
            if (cc->c.tls && !wf_tls_conn_established(&cc->c))
                WF_STAT_INC(&w->stats, tls_failed_timeout);
            if (cc->in.end == 0) { /* not a byte since accept: nothing to answer */
                cc_close(cc);
                return;
            }
            wf_debug("client %.*s:%u: request header timed out", cc->ip_len, cc->ip, cc->port);
            cc_new_request_id(cc, NULL);
            cc->t_req_ns = wf_now_ns();
            if (!cc_block_take(cc)) {
                cc_close(cc);
                return;
            }
            cc_send_error(cc, 408);
            cc_drive(cc);
            return;
        }
        if (!cc->t_head && cc->t_idle && now >= cc->t_idle + sc->idle_timeout_ms) {
            WF_STAT_INC(&w->stats, timeout_idle);
            wf_debug("client %.*s:%u: keep-alive connection idle for %llums, closing", cc->ip_len, cc->ip, cc->port,
                     (unsigned long long)sc->idle_timeout_ms);
            cc_close(cc);
            return;
        }
    } else if (cc->phase == PH_LINGER) {
        if (now >= cc->t_rd + LINGER_MS) {
            cc_close(cc);
            return;
        }
    } else {
        if (cc->t_wr && (now >= cc->t_wr + sc->send_timeout_ms || now >= cc_send_rate_due(cc))) {
            if (now >= cc->t_wr + sc->send_timeout_ms)
                WF_STAT_INC(&w->stats, timeout_send);
            else
                WF_STAT_INC(&w->stats, slow_send);
            wf_debug("client %.*s:%u: send timed out or under min_rates.send", cc->ip_len, cc->ip, cc->port);
            cc_abort(cc, cc->status ? cc->status : 408);
            return;
        }
        if (cc->t_rd && (now >= cc->t_rd + sc->body_timeout_ms || now >= cc_body_rate_due(cc))) {
            if (now >= cc->t_rd + sc->body_timeout_ms)
                WF_STAT_INC(&w->stats, timeout_body);
            else
                WF_STAT_INC(&w->stats, slow_body);
            wf_debug("client %.*s:%u: request body timed out or under min_rates.body", cc->ip_len, cc->ip, cc->port);
            cc->req_done = true; /* stop reading; the connection closes */
            cc->req_keepalive = false;
            cc_send_error(cc, 408);
            if (cc->phase != PH_DEAD)
                cc_drive(cc);
            return;
        }
        if (cc->t_up && cc->up) {
            bool connecting = cc->up->connecting;
            if (now >= cc->t_up + (connecting ? sc->up_connect_timeout_ms : sc->up_timeout_ms)) {
                const char *addr = cc_up_name(cc);
                if (connecting)
                    WF_STAT_INC(&w->stats, timeout_upstream_connect);
                else
                    WF_STAT_INC(&w->stats, timeout_upstream);
                wf_info("upstream %s: %s timed out", addr, connecting ? "connect" : "response");
                if (cc->upm && !cc->resp_started)
                    wf_upstream_failed(cc->upm, now);
                if (connecting && cc->up_attempts < wf_upstream_max_tries(cc->pool)) {
                    /* nothing was sent: another member may take it */
                    cc_up_release(cc, false);
                    cc->t_up = 0;
                    cc_up_acquire(cc, true, NULL);
                    if (cc->phase != PH_DEAD)
                        cc_drive(cc);
                    return;
                }
                if (!cc->resp_started)
                    WF_STAT_INC(&w->stats, upstream_504);
                cc_send_error(cc, 504);
                if (cc->phase != PH_DEAD)
                    cc_drive(cc);
                return;
            }
        }
    }
    cc_arm(cc);
}

static void cc_free_deferred(wf_loop_t *loop, void *data)
{
    cconn_t *cc = data;
    wf_pool_put(&cc->w->cc_pool, cc);
}

static void cc_close(cconn_t *cc)
{
    wf_worker_t *w = cc->w;
    if (cc->phase == PH_DEAD)
        return;
    if (cc->up)
        cc_up_release(cc, false);
    cc_insp_drop(cc);
    cc->phase = PH_DEAD;
    cc_block_release(cc);
    wf_loop_timer_cancel(w->loop, &cc->timer);
    wf_conn_close(w->loop, &cc->c);
    if (cc->prev)
        cc->prev->next = cc->next;
    else
        w->conns = cc->next;
    if (cc->next)
        cc->next->prev = cc->prev;
    WF_STAT_INC(&w->stats, conn_closed);
    w->nconns--;
    atomic_fetch_sub_explicit(&conns_total, 1, memory_order_relaxed);
    if (cc->climit == 1)
        wf_connlimit_release(wf_ratelimit_global, &cc->peer);
    wf_gen_unref(cc->gen);
    cc->gen = NULL;
    wf_loop_defer(w->loop, &cc->defer, cc_free_deferred, cc);
    if (w->accept_paused && !w->shutting_down && w->nconns < w->gen->conf->max_connections &&
        !wf_timer_armed(&w->accept_timer))
        wf_worker_listeners_pause(w, false);
    if (w->shutting_down && w->nconns == 0)
        wf_loop_stop(w->loop);
}

/* ---- accepting ---- */

/* Closes one of this worker's connections to make room at the process cap:
 * the oldest of those that have not sent a byte since accept (the shape
 * of a connection flood), else the keep-alive connection idle longest if
 * it has been idle for SHED_MIN_IDLE_MS. Connections with a request in
 * progress or part of one received are never chosen, nor keep-alive
 * clients between two requests, so clients being served stay served.
 * Returns whether one was closed. */
static bool cc_shed_idle(wf_worker_t *w)
{
    cconn_t *victim = NULL, *idle = NULL;
    uint64_t now = wf_loop_now(w->loop);
    for (cconn_t *cc = w->conns; cc; cc = cc->next) {
        if (cc->phase != PH_HEAD || cc->in.end != cc->in.start)
            continue;
        if (cc->nreq == 0) {
            if (!victim || cc->t_accept < victim->t_accept)
                victim = cc;
        } else if (!idle || cc->t_idle < idle->t_idle) {
            idle = cc;
        }
    }
    if (!victim && idle && now - idle->t_idle >= SHED_MIN_IDLE_MS)
        victim = idle;
    if (!victim)
        return false;
    WF_STAT_INC(&w->stats, conn_shed);
    wf_debug("client %.*s:%u: idle connection closed to make room (limits.max_connections_total)", victim->ip_len,
             victim->ip, victim->port);
    cc_close(victim);
    return true;
}

static void accept_resume(wf_loop_t *loop, wf_timer_t *t)
{
    wf_worker_t *w = t->data;
    if (!w->shutting_down && w->nconns < w->gen->conf->max_connections)
        wf_worker_listeners_pause(w, false);
}

void wf_proxy_accept(wf_worker_t *w, int lfd)
{
    wf_gen_t *gen = w->gen;
    const wf_server_conf_t *sc = gen->conf;
    struct wf_tls_server *tls = NULL; /* the listen entry's TLS contexts, in the current generation */
    for (size_t i = 0; i < sc->nlisten; i++)
        if (gen->listen_fds[(size_t)w->id * sc->nlisten + i] == lfd)
            tls = sc->listen[i].tls;
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        if (w->nconns >= sc->max_connections) {
            WF_STAT_INC(&w->stats, conn_limit);
            uint64_t now = wf_loop_now(w->loop);
            if (now - w->limit_logged >= 1000) {
                w->limit_logged = now;
                wf_info("worker %d: %zu connections (limits.max_connections): not accepting until one closes", w->id,
                    w->nconns);
            }
            wf_worker_listeners_pause(w, true);
            return;
        }
        wf_sockaddr_t peer;
        int fd = wf_net_accept(lfd, &peer);
        if (fd == -EAGAIN)
            return;
        if (fd >= 0 && wf_insp_refuse_conn(w, &peer)) {
            close(fd); /* banned or deny-listed: no parsing, no answer */
            continue;
        }
        if (fd < 0) {
            if (fd == -ECONNABORTED || fd == -EINTR)
                continue;
            WF_STAT_INC(&w->stats, accept_errors);
            wf_warn("worker %d: accept: %s", w->id, wf_strerror(fd));
            if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
                wf_worker_listeners_pause(w, true);
                wf_loop_timer_set(w->loop, &w->accept_timer, wf_loop_now(w->loop) + EMFILE_PAUSE_MS);
            }
            return;
        }
        if (sc->max_connections_total &&
            atomic_load_explicit(&conns_total, memory_order_relaxed) >= sc->max_connections_total &&
            !cc_shed_idle(w)) {
            /* at the process cap with no idle connection here to make room:
             * refuse this one and stop accepting for a moment; connections
             * in progress go on being served */
            close(fd);
            WF_STAT_INC(&w->stats, conn_limit_total);
            uint64_t now = wf_loop_now(w->loop);
            if (now - w->limit_logged >= 1000) {
                w->limit_logged = now;
                wf_info("worker %d: limits.max_connections_total (%llu) reached: refusing new connections", w->id,
                        (unsigned long long)sc->max_connections_total);
            }
            wf_worker_listeners_pause(w, true);
            wf_loop_timer_set(w->loop, &w->accept_timer, now + TOTAL_CAP_PAUSE_MS);
            return;
        }
        cconn_t *cc = wf_pool_get(&w->cc_pool);
        if (!cc) {
            close(fd);
            WF_STAT_INC(&w->stats, oom);
            return;
        }
        memset(cc, 0, sizeof(*cc));
        cc->w = w;
        cc->gen = gen;
        wf_gen_ref(gen);
        cc->sc = sc;
        wf_conn_init(&cc->c, &wf_conn_tcp, fd);
        if (tls && wf_tls_conn_accept(&cc->c, tls, fd, &w->stats) < 0) {
            close(fd);
            wf_gen_unref(gen);
            wf_pool_put(&w->cc_pool, cc);
            WF_STAT_INC(&w->stats, oom);
            continue;
        }
        wf_timer_init(&cc->timer, cc_timer, cc);
        cc->ip_len = (uint8_t)wf_sockaddr_ip(&peer, cc->ip, sizeof(cc->ip), &cc->port);
        cc->v6 = peer.ss.ss_family == AF_INET6;
        cc->peer = peer;
        cc_reset_exchange(cc);
        cc->phase = PH_HEAD;
        cc->writable = true;
        cc->t_accept = wf_loop_now(w->loop);
        cc->t_head = cc->t_accept; /* the first request's header is due within timeouts.header of accept */
        if (wf_loop_io_add(w->loop, &cc->c.io, fd, WF_IO_READ | WF_IO_WRITE | WF_IO_EDGE, cc_event, cc) < 0) {
            cc->c.type->close(&cc->c);
            wf_gen_unref(gen);
            wf_pool_put(&w->cc_pool, cc);
            continue;
        }
        cc->next = w->conns;
        if (w->conns)
            w->conns->prev = cc;
        w->conns = cc;
        w->nconns++;
        atomic_fetch_add_explicit(&conns_total, 1, memory_order_relaxed);
        cc->climit = wf_connlimit_acquire(wf_ratelimit_global, &peer, sc->rate_limits.conn_per_client, cc->t_accept);
        WF_STAT_INC(&w->stats, conn_accepted);
        cc_arm(cc);
    }
}

void wf_proxy_worker_init(wf_worker_t *w)
{
    wf_pool_init(&w->cc_pool, sizeof(cconn_t), 0);
    wf_pool_init(&w->up_pool, sizeof(upconn_t), 0);
    w->blocks.maxfree = 256;
    wf_timer_init(&w->accept_timer, accept_resume, w);
    if (wf_insp_worker_init(w))
        wf_error("worker %d: out of memory for inspection: requests are not inspected", w->id);
}

void wf_proxy_shutdown_begin(wf_worker_t *w)
{
    w->shutting_down = true;
    cconn_t *next;
    for (cconn_t *cc = w->conns; cc; cc = next) {
        next = cc->next;
        if (cc->phase == PH_HEAD && cc->in.end == 0)
            cc_close(cc);
    }
    while (w->idle_up)
        up_close(w, w->idle_up);
    if (w->nconns == 0)
        wf_loop_stop(w->loop);
}

void wf_proxy_close_all(wf_worker_t *w)
{
    w->shutting_down = true;
    while (w->conns)
        cc_close(w->conns);
    while (w->idle_up)
        up_close(w, w->idle_up);
}

void wf_proxy_worker_free(wf_worker_t *w)
{
    wf_proxy_close_all(w);
    wf_loop_run_once(w->loop, 0); /* runs the deferred frees */
    wf_insp_worker_free(w);
    wf_pool_free(&w->cc_pool);
    wf_pool_free(&w->up_pool);
    while (w->blocks.free) {
        void *b = w->blocks.free;
        w->blocks.free = *(void **)b;
        free(b);
    }
}
