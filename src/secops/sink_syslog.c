/*
 * The syslog sink: RFC 5424 messages over UDP (RFC 5426, one datagram per
 * event), TCP with octet-counting framing (RFC 6587) or TLS (RFC 5425).
 *
 *   <PRI>1 TIMESTAMP HOSTNAME wafer PROCID MSGID [wafer@32473 k="v" ...] {json}
 *
 * PRI is facility * 8 + a severity derived from the action; MSGID is the
 * action; MSG is the event's JSON form.
 */
#include "secops_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

typedef enum { T_UDP, T_TCP, T_TLS } transport_t;

typedef struct {
    transport_t transport;
    char *address;
    wf_sockaddr_t addr;
    int facility;
    char *app_name, *hostname;
    uint64_t max_datagram;
    uint64_t timeout_ms;
    char *ca, *cert, *key, *server_name;
} syslog_conf_t;

typedef struct {
    const syslog_conf_t *conf;
    char name[64];
    char hostname[256];
    char procid[24];
    void *tls_ctx;
    wf_sconn_t conn;
    int udp_fd;
    wf_buf_t msg, out;
    char lasterr[256];
} syslog_sink_t;

static const char *const syslog_keys[] = { "transport", "address", "facility", "app_name", "hostname", "max_datagram",
                                           "timeout", "ca", "cert", "key", "server_name", NULL };

static const char *const facilities[] = { "kern",   "user",   "mail",   "daemon", "auth",   "syslog", "lpr",
                                          "news",   "uucp",   "cron",   "authpriv", "ftp",  "ntp",    "audit",
                                          "alert",  "clock",  "local0", "local1", "local2", "local3", "local4",
                                          "local5", "local6", "local7", NULL };

static void syslog_conf_free(void *p)
{
    syslog_conf_t *sc = p;
    if (!sc)
        return;
    free(sc->address);
    free(sc->app_name);
    free(sc->hostname);
    free(sc->ca);
    free(sc->cert);
    free(sc->key);
    free(sc->server_name);
    free(sc);
}

/* A header field: PRINTUSASCII only (RFC 5424 section 6), at most max. */
static bool header_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (!n || n > max)
        return false;
    for (; *s; s++)
        if (*s < 33 || *s > 126)
            return false;
    return true;
}

static int opt_str(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **out, wf_conf_err_t *err)
{
    const char *v = NULL;
    int rc = wf_conf_str(c, map, key, &v, err);
    if (rc || !v)
        return rc;
    if (!(*out = strdup(v)))
        return -ENOMEM;
    return 0;
}

static int syslog_conf_parse(const wf_conf_t *c, const wf_conf_node_t *map, void **out, wf_conf_err_t *err)
{
    static const char *const transports[] = { "udp", "tcp", "tls", NULL };
    syslog_conf_t *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    int tr = T_UDP, fac = 16, rc;
    sc->max_datagram = 2048;
    sc->timeout_ms = 5000;
    if ((rc = wf_conf_enum(c, map, "transport", transports, &tr, err)) ||
        (rc = wf_conf_enum(c, map, "facility", facilities, &fac, err)) ||
        (rc = opt_str(c, map, "address", &sc->address, err)) || (rc = opt_str(c, map, "app_name", &sc->app_name, err)) ||
        (rc = opt_str(c, map, "hostname", &sc->hostname, err)) ||
        (rc = wf_conf_size(c, map, "max_datagram", 480, 65000, &sc->max_datagram, err)) ||
        (rc = wf_conf_duration_ms(c, map, "timeout", 1, 600000, &sc->timeout_ms, err)) ||
        (rc = opt_str(c, map, "ca", &sc->ca, err)) || (rc = opt_str(c, map, "cert", &sc->cert, err)) ||
        (rc = opt_str(c, map, "key", &sc->key, err)) || (rc = opt_str(c, map, "server_name", &sc->server_name, err)))
        goto fail;
    sc->transport = (transport_t)tr;
    sc->facility = fac;
    if (!sc->address) {
        rc = wf_conf_errorf(c, map, err, "a syslog sink needs an address (host:port)");
        goto fail;
    }
    if (wf_sockaddr_parse(sc->address, &sc->addr)) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "address"), err, "\"%s\" is not a host:port that resolves",
                            sc->address);
        goto fail;
    }
    if (!sc->app_name && !(sc->app_name = strdup("wafer"))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (!header_ok(sc->app_name, 48)) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "app_name"), err, "1 to 48 printable ASCII characters, no space");
        goto fail;
    }
    if (sc->hostname && !header_ok(sc->hostname, 255)) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "hostname"), err, "1 to 255 printable ASCII characters, no space");
        goto fail;
    }
    if (sc->transport != T_TLS && (sc->ca || sc->cert || sc->key || sc->server_name)) {
        const char *k = sc->ca ? "ca" : sc->cert ? "cert" : sc->key ? "key" : "server_name";
        rc = wf_conf_errorf(c, wf_conf_get(map, k), err, "only for transport: tls");
        goto fail;
    }
    if (sc->key && !sc->cert) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "key"), err, "a key needs a cert");
        goto fail;
    }
    if (sc->transport == T_TLS && !sc->server_name) {
        /* verify the certificate against the host part of the address */
        const char *a = sc->address, *colon = strrchr(a, ':');
        size_t n = colon ? (size_t)(colon - a) : strlen(a);
        if (n >= 2 && a[0] == '[') {
            a++;
            n -= 2;
        }
        if (!(sc->server_name = strndup(a, n))) {
            rc = -ENOMEM;
            goto fail;
        }
    }
    *out = sc;
    return 0;
fail:
    syslog_conf_free(sc);
    return rc;
}

static int syslog_open(const void *conf, const char *name, void **state, char *err, size_t errlen)
{
    const syslog_conf_t *sc = conf;
    syslog_sink_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->conf = sc;
    s->conn.fd = -1;
    s->udp_fd = -1;
    snprintf(s->name, sizeof(s->name), "%s", name);
    if (sc->hostname) {
        snprintf(s->hostname, sizeof(s->hostname), "%s", sc->hostname);
    } else if (gethostname(s->hostname, sizeof(s->hostname) - 1) != 0 || !s->hostname[0]) {
        snprintf(s->hostname, sizeof(s->hostname), "-");
    }
    for (char *p = s->hostname; *p; p++)
        if (*p < 33 || *p > 126)
            *p = '_';
    snprintf(s->procid, sizeof(s->procid), "%d", (int)getpid());
    int rc;
    if ((rc = wf_buf_init(&s->msg, 16 << 10, 1 << 20)) || (rc = wf_buf_init(&s->out, 64 << 10, 64 << 20))) {
        wf_buf_free(&s->msg);
        wf_buf_free(&s->out);
        free(s);
        return rc;
    }
    if (sc->transport == T_TLS &&
        (rc = wf_sconn_tls_ctx(sc->ca, sc->cert, sc->key, &s->tls_ctx, err, errlen))) {
        wf_buf_free(&s->msg);
        wf_buf_free(&s->out);
        free(s);
        return rc;
    }
    *state = s;
    return 0;
}

int wf_secev_severity(wf_secev_action_t a)
{
    switch (a) {
    case WF_SECEV_BLOCK:
    case WF_SECEV_BAN:
    case WF_SECEV_DENY:
    case WF_SECEV_UNAVAILABLE:
        return 4; /* warning */
    case WF_SECEV_PASS:
        return 6; /* informational */
    default:
        return 5; /* notice: monitor, tag, limit */
    }
}

/* An SD-PARAM value: '"', '\' and ']' escaped; anything but printable ASCII
 * becomes '?' (the full text is in the JSON message). */
static void sd_param(wf_buf_t *b, const char *name, const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);
    if (!n)
        return;
    wf_buf_appendf(b, " %s=\"", name);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if (ch == '"' || ch == '\\' || ch == ']') {
            char e[2] = { '\\', (char)ch };
            wf_buf_append(b, e, 2);
        } else {
            char o = ch >= 0x20 && ch < 0x7f ? (char)ch : '?';
            wf_buf_append(b, &o, 1);
        }
    }
    wf_buf_append(b, "\"", 1);
}
#define SD_PARAM(b, name, f) sd_param((b), (name), (f), sizeof(f))

/* Builds one message into s->msg. */
static int syslog_format(syslog_sink_t *s, const wf_secev_t *ev)
{
    wf_buf_t *b = &s->msg;
    wf_buf_clear(b);
    char ts[40];
    wf_time_rfc3339(ev->time_ns / 1000u, ts, sizeof(ts));
    int pri = s->conf->facility * 8 + wf_secev_severity(ev->action);
    int rc = wf_buf_appendf(b, "<%d>1 %s %s %s %s %s [wafer@32473 action=\"%s\" reason=\"%s\"", pri, ts, s->hostname,
                            s->conf->app_name, s->procid, wf_secev_action_name(ev->action),
                            wf_secev_action_name(ev->action), wf_secev_reason_name(ev->reason));
    if (rc)
        return rc;
    if (ev->status) {
        char st[8];
        snprintf(st, sizeof(st), "%u", ev->status);
        sd_param(b, "status", st, sizeof(st));
    }
    SD_PARAM(b, "client", ev->client_ip);
    SD_PARAM(b, "request_id", ev->request_id);
    SD_PARAM(b, "route", ev->route);
    SD_PARAM(b, "class", ev->cls);
    if (ev->cls[0]) {
        char sc[32];
        snprintf(sc, sizeof(sc), "%.4f", (double)ev->score);
        sd_param(b, "score", sc, sizeof(sc));
    }
    if ((rc = wf_buf_append(b, "] ", 2)))
        return rc;
    return wf_secev_json(ev, b);
}

static int syslog_connect(syslog_sink_t *s)
{
    const syslog_conf_t *sc = s->conf;
    if (sc->transport == T_UDP) {
        if (s->udp_fd >= 0)
            return 0;
        int fd = socket(sc->addr.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (const struct sockaddr *)&sc->addr.ss, sc->addr.len) < 0) {
            int rc = -errno;
            close(fd);
            return rc;
        }
        s->udp_fd = fd;
        return 0;
    }
    if (s->conn.fd >= 0 && !wf_sconn_usable(&s->conn))
        wf_sconn_close(&s->conn);
    if (s->conn.fd >= 0)
        return 0;
    char e[256];
    int rc = wf_sconn_open(&s->conn, &sc->addr, s->tls_ctx, sc->server_name, sc->timeout_ms, e, sizeof(e));
    if (rc && strcmp(e, s->lasterr)) {
        wf_warn("events: sink %s: %s: %s", s->name, sc->address, e);
        snprintf(s->lasterr, sizeof(s->lasterr), "%s", e);
    }
    if (!rc)
        s->lasterr[0] = 0;
    return rc;
}

static int syslog_deliver(void *state, const wf_secev_t *evs, size_t n, size_t *done)
{
    syslog_sink_t *s = state;
    const syslog_conf_t *sc = s->conf;
    *done = 0;
    int rc = syslog_connect(s);
    if (rc)
        return rc;
    if (sc->transport == T_UDP) {
        for (size_t i = 0; i < n; i++) {
            if ((rc = syslog_format(s, &evs[i])))
                return rc;
            size_t len = WF_MIN(wf_buf_len(&s->msg), (size_t)sc->max_datagram);
            /* a cut message ends on a whole UTF-8 character */
            while (len < wf_buf_len(&s->msg) && len > 0 && ((unsigned char)wf_buf_rptr(&s->msg)[len] & 0xc0) == 0x80)
                len--;
            if (send(s->udp_fd, wf_buf_rptr(&s->msg), len, MSG_NOSIGNAL) < 0) {
                rc = -errno;
                close(s->udp_fd);
                s->udp_fd = -1;
                return rc;
            }
            *done = i + 1;
        }
        return 0;
    }
    /* stream: "LEN SP MSG" frames, the whole batch in one write */
    wf_buf_clear(&s->out);
    for (size_t i = 0; i < n; i++) {
        if ((rc = syslog_format(s, &evs[i])) ||
            (rc = wf_buf_appendf(&s->out, "%zu ", wf_buf_len(&s->msg))) ||
            (rc = wf_buf_append(&s->out, wf_buf_rptr(&s->msg), wf_buf_len(&s->msg))))
            return rc;
    }
    rc = wf_sconn_write(&s->conn, wf_buf_rptr(&s->out), wf_buf_len(&s->out));
    if (rc) {
        wf_sconn_close(&s->conn);
        return rc;
    }
    *done = n;
    return 0;
}

static void syslog_close(void *state)
{
    syslog_sink_t *s = state;
    wf_sconn_close(&s->conn);
    if (s->udp_fd >= 0)
        close(s->udp_fd);
    if (s->tls_ctx)
        wf_sconn_tls_ctx_free(s->tls_ctx);
    wf_buf_free(&s->msg);
    wf_buf_free(&s->out);
    free(s);
}

const wf_sink_mod_t wf_sink_syslog = {
    .type = "syslog",
    .keys = syslog_keys,
    .conf_parse = syslog_conf_parse,
    .conf_free = syslog_conf_free,
    .open = syslog_open,
    .deliver = syslog_deliver,
    .reopen = NULL,
    .close = syslog_close,
};
