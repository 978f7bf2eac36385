/*
 * Upstream pools at run time (see wafer/upstream.h): member state shared by
 * the workers, passive ejection, the active health checker thread, and the
 * metrics collector.
 */
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/tls.h"
#include "wafer/upstream.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int wf_upstream_pool_init(wf_upstream_pool_t *p, const wf_upstream_pool_conf_t *conf)
{
    memset(p, 0, sizeof(*p));
    p->conf = conf;
    p->n = conf->nmembers;
    p->id = wf_hash64(conf->name, strlen(conf->name), 0x706f6f6cull);
    p->m = calloc(p->n ? p->n : 1, sizeof(*p->m));
    if (!p->m)
        return -ENOMEM;
    pthread_mutex_init(&p->lock, NULL);
    for (size_t i = 0; i < p->n; i++) {
        wf_upstream_member_t *m = &p->m[i];
        m->conf = &conf->members[i];
        m->pool = p;
        m->index = (uint32_t)i;
        atomic_init(&m->healthy, true);
        p->nprimary += !m->conf->backup;
    }
    static const wf_balancer_t *const by_kind[] = { [WF_BALANCE_ROUND_ROBIN] = &wf_balancer_round_robin,
                                                    [WF_BALANCE_LEAST_CONN] = &wf_balancer_least_conn,
                                                    [WF_BALANCE_HASH] = &wf_balancer_hash };
    p->bal = by_kind[conf->balance];
    if (p->bal->init) {
        int rc = p->bal->init(p);
        if (rc) {
            free(p->m);
            pthread_mutex_destroy(&p->lock);
            return rc;
        }
    }
    return 0;
}

void wf_upstream_pool_free(wf_upstream_pool_t *p)
{
    if (p->bal && p->bal->free)
        p->bal->free(p);
    free(p->m);
    p->m = NULL;
    pthread_mutex_destroy(&p->lock);
}

uint64_t wf_upstream_request_key(const wf_upstream_pool_t *p, wf_str_t client_ip, const wf_http_request_t *req)
{
    wf_str_t k = client_ip;
    if (p->conf->hash_header && req) {
        const wf_http_header_t *h = wf_http_header_find(req->headers, req->nheaders, p->conf->hash_header);
        if (h && h->value.n)
            k = h->value;
    }
    return wf_hash64(k.p ? k.p : "", k.n, 0x68617368ull);
}

wf_upstream_member_t *wf_upstream_pick(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried,
                                       uint64_t now_ms)
{
    wf_upstream_member_t *m = p->bal->pick(p, key, tried, false, now_ms);
    if (!m && p->nprimary < p->n)
        m = p->bal->pick(p, key, tried, true, now_ms);
    return m;
}

int wf_upstream_max_tries(const wf_upstream_pool_t *p)
{
    if (p->conf->retries < 0)
        return (int)p->n;
    return 1 + p->conf->retries;
}

void wf_upstream_attach(wf_upstream_member_t *m)
{
    atomic_fetch_add_explicit(&m->active, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&m->requests, 1, memory_order_relaxed);
}

void wf_upstream_detach(wf_upstream_member_t *m)
{
    atomic_fetch_sub_explicit(&m->active, 1, memory_order_relaxed);
}

bool wf_upstream_failed(wf_upstream_member_t *m, uint64_t now_ms)
{
    wf_upstream_pool_t *p = m->pool;
    atomic_fetch_add_explicit(&m->failures, 1, memory_order_relaxed);
    /* like nginx: a pool of one is never taken out by errors alone (there is nowhere else to go) */
    if (!p->conf->max_fails || p->n < 2)
        return false;
    bool ejected = false;
    pthread_mutex_lock(&p->lock);
    if (now_ms - m->fail_window > p->conf->fail_timeout_ms || !m->fails) {
        m->fail_window = now_ms;
        m->fails = 0;
    }
    if (++m->fails >= p->conf->max_fails) {
        m->fails = 0;
        atomic_store_explicit(&m->ejected_until, now_ms + p->conf->fail_timeout_ms, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->ejections, 1, memory_order_relaxed);
        ejected = true;
    }
    pthread_mutex_unlock(&p->lock);
    if (ejected)
        wf_warn("upstream %s (pool %s): %u failure%s within %llums, ejected for %llums", m->conf->address,
                p->conf->name, p->conf->max_fails, p->conf->max_fails == 1 ? "" : "s",
                (unsigned long long)p->conf->fail_timeout_ms, (unsigned long long)p->conf->fail_timeout_ms);
    return ejected;
}

/* ---- every pool of a generation ---- */


int wf_upstreams_new(const wf_upstream_pool_conf_t *pools, size_t npools, const wf_upstreams_t *prev,
                     wf_upstreams_t **out)
{
    *out = NULL;
    wf_upstreams_t *u = calloc(1, sizeof(*u));
    if (!u || !(u->pools = calloc(npools ? npools : 1, sizeof(*u->pools)))) {
        free(u);
        return -ENOMEM;
    }
    u->wake[0] = u->wake[1] = -1;
    atomic_init(&u->stop, false);
    for (size_t i = 0; i < npools; i++) {
        int rc = wf_upstream_pool_init(&u->pools[i], &pools[i]);
        if (rc) {
            u->npools = i;
            wf_upstreams_free(u);
            return rc;
        }
        u->npools = i + 1;
    }
    /* members that stay keep what is known about them */
    for (size_t i = 0; prev && i < u->npools; i++) {
        wf_upstream_pool_t *p = &u->pools[i];
        for (size_t j = 0; j < prev->npools; j++) {
            const wf_upstream_pool_t *q = &prev->pools[j];
            if (strcmp(q->conf->name, p->conf->name))
                continue;
            atomic_store(&p->unavailable, atomic_load(&q->unavailable));
            atomic_store(&p->retries, atomic_load(&q->retries));
            for (size_t a = 0; a < p->n; a++)
                for (size_t b = 0; b < q->n; b++) {
                    wf_upstream_member_t *m = &p->m[a];
                    const wf_upstream_member_t *o = &q->m[b];
                    if (!wf_sockaddr_eq(&m->conf->addr, &o->conf->addr))
                        continue;
                    if (p->conf->health.enabled && q->conf->health.enabled)
                        atomic_store(&m->healthy, atomic_load(&o->healthy));
                    atomic_store(&m->ejected_until, atomic_load(&o->ejected_until));
                    atomic_store(&m->requests, atomic_load(&o->requests));
                    atomic_store(&m->failures, atomic_load(&o->failures));
                    atomic_store(&m->ejections, atomic_load(&o->ejections));
                    atomic_store(&m->health_changes, atomic_load(&o->health_changes));
                    atomic_store(&m->checks_failed, atomic_load(&o->checks_failed));
                    m->rise_n = o->rise_n;
                    m->fall_n = o->fall_n;
                    break;
                }
        }
    }
    *out = u;
    return 0;
}

/* ---- active health checks ----
 * One thread per process runs every check, all at once: each is a small
 * non-blocking state machine (connect, send the request, read the status
 * line) polled together with a wake-up pipe, so a member that hangs costs
 * its own timeout and delays no other check. */

enum { CK_IDLE, CK_CONNECT, CK_SEND, CK_READ };

typedef struct {
    const wf_upstream_pool_t *p;
    wf_upstream_member_t *m;
    struct wf_tls_client *tls;
    wf_conn_t c;
    int phase;
    uint64_t deadline;
    char req[1024];
    size_t reqlen, off;
    char buf[16];
    size_t got;
} check_t;

/* Starts a check. Returns 1 when it is under way, else the result. */
static int check_start(check_t *k, uint64_t now)
{
    const wf_health_conf_t *h = &k->p->conf->health;
    int n = snprintf(k->req, sizeof(k->req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wafer-health-check\r\nConnection: close\r\n\r\n",
                     h->path ? h->path : "/", h->host ? h->host : k->m->conf->address);
    if (n < 0 || (size_t)n >= sizeof(k->req))
        return -WF_ELIMIT;
    k->reqlen = (size_t)n;
    k->off = k->got = 0;
    k->deadline = now + h->timeout_ms;
    int fd = -1;
    int rc = wf_net_connect(&k->m->conf->addr, &fd);
    if (rc != 0 && rc != -EINPROGRESS)
        return rc;
    wf_conn_init(&k->c, &wf_conn_tcp, fd);
    k->phase = rc ? CK_CONNECT : CK_SEND;
    if (k->tls) {
        /* the members speak TLS to requests, so to checks too: verified as requests verify them */
        char host[256];
        const char *a = k->m->conf->address, *end = strrchr(a, ':');
        size_t n = end ? (size_t)(end - a) : strlen(a);
        if (n >= 2 && a[0] == '[' && a[n - 1] == ']') {
            a++;
            n -= 2;
        }
        snprintf(host, sizeof(host), "%.*s", (int)n, a);
        if ((rc = wf_tls_conn_connect(&k->c, k->tls, fd, host, k->m->conf->address, NULL)) < 0) {
            close(fd);
            k->c.fd = -1;
            k->phase = CK_IDLE;
            return rc;
        }
    }
    return 1;
}

/* The status line's verdict: 0 or -WF_EUPSTREAM. */
static int check_status(const check_t *k)
{
    const char *b = k->buf;
    if (memcmp(b, "HTTP/1.", 7) || b[8] != ' ' || b[9] < '1' || b[9] > '5' || b[10] < '0' || b[10] > '9' ||
        b[11] < '0' || b[11] > '9')
        return -WF_EUPSTREAM;
    int status = (b[9] - '0') * 100 + (b[10] - '0') * 10 + (b[11] - '0');
    int want = k->p->conf->health.expect_status;
    return (want ? status == want : status >= 200 && status < 400) ? 0 : -WF_EUPSTREAM;
}

/* Moves a check on after its descriptor was ready. Returns 1 while it goes
 * on, else the result. */
static int check_step(check_t *k)
{
    if (k->phase == CK_CONNECT) {
        int rc = wf_net_connect_result(k->c.fd);
        if (rc)
            return rc;
        k->phase = CK_SEND;
    }
    while (k->phase == CK_SEND) {
        ssize_t w = wf_conn_write(&k->c, k->req + k->off, k->reqlen - k->off);
        if (w < 0)
            return w == -EAGAIN ? 1 : (int)w;
        k->off += (size_t)w;
        if (k->off == k->reqlen)
            k->phase = CK_READ;
    }
    while (k->got < 12) {
        ssize_t r = wf_conn_read(&k->c, k->buf + k->got, sizeof(k->buf) - k->got);
        if (r == 0)
            return -WF_ECLOSED;
        if (r < 0)
            return r == -EAGAIN ? 1 : (int)r;
        k->got += (size_t)r;
    }
    return check_status(k);
}

static void check_close(check_t *k)
{
    if (k->phase != CK_IDLE && k->c.fd >= 0)
        k->c.type->close(&k->c);
    k->c.fd = -1;
    k->phase = CK_IDLE;
}

/* What to poll for: a TLS read may wait for writability and a write for readability. */
static short check_events(const check_t *k)
{
    if (k->phase == CK_CONNECT)
        return POLLOUT;
    if (k->phase == CK_READ)
        return (k->c.want & WF_CONN_READ_WANTS_WRITE) ? POLLOUT : POLLIN;
    return (k->c.want & WF_CONN_WRITE_WANTS_READ) ? POLLIN : POLLOUT;
}

int wf_upstream_check_once(const wf_upstream_pool_t *p, const wf_upstream_member_t *m, struct wf_tls_client *tls)
{
    check_t k = { .p = p, .m = (wf_upstream_member_t *)m, .tls = tls, .phase = CK_IDLE };
    int rc = check_start(&k, wf_now_ms());
    while (rc == 1) {
        uint64_t now = wf_now_ms();
        if (now >= k.deadline) {
            rc = -WF_ETIMEOUT;
            break;
        }
        struct pollfd pf = { k.c.fd, check_events(&k), 0 };
        int n = poll(&pf, 1, (int)(k.deadline - now));
        if (n < 0 && errno != EINTR)
            rc = -errno;
        else if (n > 0)
            rc = check_step(&k);
    }
    check_close(&k);
    return rc;
}

static void check_result(wf_upstream_member_t *m, int rc)
{
    const wf_health_conf_t *h = &m->pool->conf->health;
    bool up = atomic_load(&m->healthy);
    if (rc == 0) {
        m->fall_n = 0;
        if (!up && ++m->rise_n >= h->rise) {
            m->rise_n = 0;
            atomic_store(&m->healthy, true);
            atomic_fetch_add(&m->health_changes, 1);
            wf_warn("upstream %s (pool %s): health check passed %u time%s, up", m->conf->address,
                    m->pool->conf->name, h->rise, h->rise == 1 ? "" : "s");
        }
        return;
    }
    atomic_fetch_add(&m->checks_failed, 1);
    m->rise_n = 0;
    if (up && ++m->fall_n >= h->fall) {
        m->fall_n = 0;
        atomic_store(&m->healthy, false);
        atomic_fetch_add(&m->health_changes, 1);
        wf_warn("upstream %s (pool %s): health check failed %u time%s (%s), down", m->conf->address,
                m->pool->conf->name, h->fall, h->fall == 1 ? "" : "s", wf_strerror(rc));
    } else if (!up) {
        wf_debug("upstream %s: health check: %s", m->conf->address, wf_strerror(rc));
    }
}

static void check_done(check_t *k, int rc, uint64_t now)
{
    check_close(k);
    check_result(k->m, rc);
    k->m->next_check = now + k->p->conf->health.interval_ms;
}

static void *health_main(void *arg)
{
    wf_upstreams_t *u = arg;
    size_t nk = 0;
    for (size_t i = 0; i < u->npools; i++)
        if (u->pools[i].conf->health.enabled)
            nk += u->pools[i].n;
    check_t *ks = calloc(nk, sizeof(*ks));
    struct pollfd *pf = calloc(nk + 1, sizeof(*pf));
    size_t *idx = calloc(nk + 1, sizeof(*idx));
    if (!ks || !pf || !idx) {
        wf_error("upstream health checks: out of memory; members stay as they are");
        goto out;
    }
    uint64_t now = wf_now_ms();
    size_t j = 0;
    for (size_t i = 0; i < u->npools; i++) {
        if (!u->pools[i].conf->health.enabled)
            continue;
        for (size_t k = 0; k < u->pools[i].n; k++, j++) {
            ks[j] = (check_t){ .p = &u->pools[i], .m = &u->pools[i].m[k], .tls = u->tls, .phase = CK_IDLE };
            ks[j].m->next_check = now; /* at once: a start or a reload learns the state quickly */
        }
    }
    while (!atomic_load(&u->stop)) {
        now = wf_now_ms();
        uint64_t next = now + 60000;
        size_t np = 0;
        for (size_t k = 0; k < nk; k++) {
            check_t *c = &ks[k];
            if (c->phase == CK_IDLE && c->m->next_check <= now) {
                int rc = check_start(c, now);
                if (rc != 1)
                    check_done(c, rc, now);
            }
            if (c->phase != CK_IDLE && now >= c->deadline)
                check_done(c, -WF_ETIMEOUT, now);
            if (c->phase == CK_IDLE) {
                next = WF_MIN(next, c->m->next_check);
            } else {
                next = WF_MIN(next, c->deadline);
                pf[np] = (struct pollfd){ c->c.fd, check_events(c), 0 };
                idx[np++] = k;
            }
        }
        pf[np] = (struct pollfd){ u->wake[0], POLLIN, 0 };
        int n = poll(pf, np + 1, next > now ? (int)(next - now) : 0);
        if (n <= 0)
            continue;
        now = wf_now_ms();
        for (size_t q = 0; q < np; q++) {
            if (!pf[q].revents)
                continue;
            check_t *c = &ks[idx[q]];
            int rc = check_step(c);
            if (rc != 1)
                check_done(c, rc, now);
        }
    }
out:
    for (size_t k = 0; ks && k < nk; k++)
        check_close(&ks[k]);
    free(ks);
    free(pf);
    free(idx);
    return NULL;
}

/* ---- metrics ---- */

static void collect(wf_metrics_t *mt, void *arg)
{
    wf_upstreams_t *u = arg;
    uint64_t now = wf_now_ms();
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        { "wafer_upstream_requests_total", "Requests sent to an upstream member (attempts).",
          offsetof(wf_upstream_member_t, requests) },
        { "wafer_upstream_failures_total", "Upstream failures before a response (connect, reset, timeout).",
          offsetof(wf_upstream_member_t, failures) },
        { "wafer_upstream_ejections_total", "Passive ejections after upstreams.*.passive.max_fails failures.",
          offsetof(wf_upstream_member_t, ejections) },
        { "wafer_upstream_health_changes_total", "Up/down transitions decided by active health checks.",
          offsetof(wf_upstream_member_t, health_changes) },
        { "wafer_upstream_health_checks_failed_total", "Active health checks that failed.",
          offsetof(wf_upstream_member_t, checks_failed) },
    };
    for (size_t c = 0; c < WF_ARRAY_LEN(counters); c++) {
        wf_metrics_family(mt, counters[c].name, WF_METRIC_COUNTER, counters[c].help);
        for (size_t i = 0; i < u->npools; i++)
            for (size_t j = 0; j < u->pools[i].n; j++) {
                const wf_upstream_member_t *m = &u->pools[i].m[j];
                const atomic_ullong *v = (const atomic_ullong *)((const char *)m + counters[c].off);
                wf_metrics_sample(mt, NULL, "pool", u->pools[i].conf->name, "member", m->conf->address, NULL,
                                  (double)atomic_load_explicit(v, memory_order_relaxed));
            }
    }
    wf_metrics_family(mt, "wafer_upstream_up", WF_METRIC_GAUGE,
                      "1 when a member may get requests (healthy and not ejected), else 0.");
    for (size_t i = 0; i < u->npools; i++)
        for (size_t j = 0; j < u->pools[i].n; j++) {
            const wf_upstream_member_t *m = &u->pools[i].m[j];
            wf_metrics_sample(mt, NULL, "pool", u->pools[i].conf->name, "member", m->conf->address, NULL,
                              wf_upstream_member_up(m, now) ? 1.0 : 0.0);
        }
    wf_metrics_family(mt, "wafer_upstream_active_requests", WF_METRIC_GAUGE, "Requests attached to a member now.");
    for (size_t i = 0; i < u->npools; i++)
        for (size_t j = 0; j < u->pools[i].n; j++) {
            const wf_upstream_member_t *m = &u->pools[i].m[j];
            wf_metrics_sample(mt, NULL, "pool", u->pools[i].conf->name, "member", m->conf->address, NULL,
                              (double)atomic_load_explicit(&m->active, memory_order_relaxed));
        }
    wf_metrics_family(mt, "wafer_upstream_unavailable_total", WF_METRIC_COUNTER,
                      "Requests answered 503 because no member of the pool was available.");
    for (size_t i = 0; i < u->npools; i++)
        wf_metrics_sample(mt, NULL, "pool", u->pools[i].conf->name, NULL,
                          (double)atomic_load_explicit(&u->pools[i].unavailable, memory_order_relaxed));
    wf_metrics_family(mt, "wafer_upstream_pool_retries_total", WF_METRIC_COUNTER,
                      "Requests resent to another member after a failure before any response byte.");
    for (size_t i = 0; i < u->npools; i++)
        wf_metrics_sample(mt, NULL, "pool", u->pools[i].conf->name, NULL,
                          (double)atomic_load_explicit(&u->pools[i].retries, memory_order_relaxed));
}

int wf_upstreams_start(wf_upstreams_t *u)
{
    bool checks = false;
    for (size_t i = 0; i < u->npools; i++)
        checks |= u->pools[i].conf->health.enabled;
    if (checks) {
        if (pipe2(u->wake, O_CLOEXEC | O_NONBLOCK) < 0)
            return -errno;
        int rc = pthread_create(&u->thread, NULL, health_main, u);
        if (rc)
            return -rc;
        u->thread_started = true;
    }

    if (wf_metrics_register("upstreams", collect, u) == 0)
        u->metrics = true;

    return 0;
}

void wf_upstreams_retire(wf_upstreams_t *u)
{
    if (!u)
        return;
    if (u->metrics) {
        wf_metrics_unregister(u);
        u->metrics = false;
    }
    if (u->thread_started) {
        atomic_store(&u->stop, true);
        char c = 1;
        ssize_t r = write(u->wake[1], &c, 1);
        (void)r;
        pthread_join(u->thread, NULL);
        u->thread_started = false;
    }
}

void wf_upstreams_free(wf_upstreams_t *u)
{
    if (!u)
        return;
    wf_upstreams_retire(u);
    for (int i = 0; i < 2; i++)
        if (u->wake[i] >= 0)
            close(u->wake[i]);
    for (size_t i = 0; i < u->npools; i++)
        wf_upstream_pool_free(&u->pools[i]);
    free(u->pools);
    free(u);
}
