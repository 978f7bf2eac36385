/*
 * Client connections for the network sinks: TCP, optionally TLS (OpenSSL,
 * verifying the server against a CA file and a host name), with deadlines.
 * The socket stays non-blocking; each call waits with poll() up to its own
 * deadline, so a sink thread never hangs on a destination that went silent.
 */
#include "secops_int.h"
#include "wafer/net.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static void ssl_err(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s%s%s", what, *buf ? ": " : "", buf);
    ERR_clear_error();
}

int wf_sconn_tls_ctx(const char *ca, const char *cert, const char *key, void **out, char *err, size_t errlen)
{
    *out = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ssl_err(err, errlen, "TLS context");
        return -ENOMEM;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca ? SSL_CTX_load_verify_locations(ctx, ca, NULL) : SSL_CTX_set_default_verify_paths(ctx);
    if (!ok) {
        ssl_err(err, errlen, ca ? ca : "default CA paths");
        SSL_CTX_free(ctx);
        return -WF_ECONFIG;
    }
    if (cert && (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
                 SSL_CTX_use_PrivateKey_file(ctx, key ? key : cert, SSL_FILETYPE_PEM) != 1 ||
                 SSL_CTX_check_private_key(ctx) != 1)) {
        ssl_err(err, errlen, cert);
        SSL_CTX_free(ctx);
        return -WF_ECONFIG;
    }
    *out = ctx;
    return 0;
}

void wf_sconn_tls_ctx_free(void *ctx) { SSL_CTX_free(ctx); }

static int wait_fd(int fd, short events, uint64_t deadline_ms)
{
    for (;;) {
        uint64_t now = wf_now_ms();
        if (now >= deadline_ms)
            return -WF_ETIMEOUT;
        struct pollfd p = { fd, events, 0 };
        int n = poll(&p, 1, (int)WF_MIN(deadline_ms - now, (uint64_t)INT32_MAX));
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -errno;
    }
}

/* Waits for what OpenSSL asked for after a call that returned r. */
static int ssl_wait(wf_sconn_t *c, int r, uint64_t deadline_ms)
{
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ)
        return wait_fd(c->fd, POLLIN, deadline_ms);
    if (e == SSL_ERROR_WANT_WRITE)
        return wait_fd(c->fd, POLLOUT, deadline_ms);
    if (e == SSL_ERROR_ZERO_RETURN)
        return -WF_ECLOSED;
    if (e == SSL_ERROR_SYSCALL) {
        ERR_clear_error();
        return errno ? -errno : -WF_ECLOSED;
    }
    ERR_clear_error();
    return -EPROTO;
}

void wf_sconn_close(wf_sconn_t *c);

/* In TLS 1.3 the client's handshake is done before the server has checked
 * the client's certificate (or its absence): a server that refuses it says so
 * with an alert after, and whatever was written by then is lost without an
 * error. So a new connection waits briefly for the server's first records:
 * session tickets (it accepted) or an alert (it did not). */
#define TLS13_SETTLE_MS 250

static int tls13_settle(wf_sconn_t *c, uint64_t wait_ms, char *err, size_t errlen)
{
    if (SSL_version(c->ssl) < TLS1_3_VERSION)
        return 0;
    uint64_t deadline = wf_now_ms() + wait_ms;
    char buf[256];
    for (;;) {
        if (wait_fd(c->fd, POLLIN, deadline) != 0)
            return 0; /* nothing came: the server has nothing to object to */
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0)
            continue; /* a syslog or forward server sends nothing unasked; ignore it */
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ) {
            ERR_clear_error();
            if (SSL_SESSION_is_resumable(SSL_get0_session(c->ssl)))
                return 0; /* a session ticket: the server accepted us */
            continue;
        }
        ssl_err(err, errlen, "TLS: the server refused the connection after the handshake (client certificate?)");
        wf_sconn_close(c);
        return -EACCES;
    }
}

void wf_sconn_close(wf_sconn_t *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

int wf_sconn_open(wf_sconn_t *c, const wf_sockaddr_t *addr, void *tls_ctx, const char *server_name, uint64_t timeout_ms,
                  char *err, size_t errlen)
{
    c->fd = -1;
    c->ssl = NULL;
    c->timeout_ms = timeout_ms;
    uint64_t deadline = wf_now_ms() + timeout_ms;
    int rc = wf_net_connect(addr, &c->fd);
    if (rc == -EINPROGRESS) {
        rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc == 0)
            rc = wf_net_connect_result(c->fd);
    }
    if (rc) {
        snprintf(err, errlen, "connect: %s", wf_strerror(rc));
        wf_sconn_close(c);
        return rc;
    }
    if (!tls_ctx)
        return 0;
    c->ssl = SSL_new(tls_ctx);
    if (!c->ssl || !SSL_set_fd(c->ssl, c->fd)) {
        ssl_err(err, errlen, "TLS");
        wf_sconn_close(c);
        return -ENOMEM;
    }
    if (server_name && *server_name) {
        /* SNI for a name, never for an address literal; the certificate must match either */
        unsigned char tmp[16];
        bool literal = inet_pton(AF_INET, server_name, tmp) == 1 || inet_pton(AF_INET6, server_name, tmp) == 1;
        if (!literal)
            SSL_set_tlsext_host_name(c->ssl, server_name);
        X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
        if (literal ? !X509_VERIFY_PARAM_set1_ip_asc(vp, server_name) : !SSL_set1_host(c->ssl, server_name)) {
            ssl_err(err, errlen, "TLS server name");
            wf_sconn_close(c);
            return -EINVAL;
        }
    }
    for (;;) {
        int r = SSL_connect(c->ssl);
        if (r == 1)
            return tls13_settle(c, WF_MIN(timeout_ms, (uint64_t)TLS13_SETTLE_MS), err, errlen);
        long vr = SSL_get_verify_result(c->ssl);
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            if (vr != X509_V_OK)
                snprintf(err, errlen, "TLS handshake: server certificate not accepted: %s",
                         X509_verify_cert_error_string(vr));
            else
                ssl_err(err, errlen, "TLS handshake");
            wf_sconn_close(c);
            return -EPROTO;
        }
        if ((rc = ssl_wait(c, r, deadline))) {
            snprintf(err, errlen, "TLS handshake: %s", wf_strerror(rc));
            wf_sconn_close(c);
            return rc;
        }
    }
}

int wf_sconn_write(wf_sconn_t *c, const void *p, size_t n)
{
    uint64_t deadline = wf_now_ms() + c->timeout_ms;
    const char *s = p;
    while (n) {
        if (c->ssl) {
            int r = SSL_write(c->ssl, s, (int)WF_MIN(n, (size_t)INT32_MAX));
            if (r > 0) {
                s += r;
                n -= (size_t)r;
                continue;
            }
            int rc = ssl_wait(c, r, deadline);
            if (rc)
                return rc;
            continue;
        }
        ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);
        if (w > 0) {
            s += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc)
            return rc;
    }
    return 0;
}

ssize_t wf_sconn_read(wf_sconn_t *c, void *p, size_t n, uint64_t timeout_ms)
{
    uint64_t deadline = wf_now_ms() + timeout_ms;
    for (;;) {
        if (c->ssl) {
            int r = SSL_read(c->ssl, p, (int)WF_MIN(n, (size_t)INT32_MAX));
            if (r > 0)
                return r;
            int rc = ssl_wait(c, r, deadline);
            if (rc == -WF_ECLOSED)
                return 0;
            if (rc)
                return rc;
            continue;
        }
        ssize_t r = recv(c->fd, p, n, 0);
        if (r >= 0)
            return r;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
        int rc = wait_fd(c->fd, POLLIN, deadline);
        if (rc)
            return rc;
    }
}

bool wf_sconn_usable(wf_sconn_t *c)
{
    if (c->fd < 0)
        return false;
    struct pollfd p = { c->fd, POLLIN, 0 };
    if (poll(&p, 1, 0) <= 0)
        return true; /* nothing pending: as far as we can tell, alive */
    if (p.revents & (POLLERR | POLLHUP))
        return false;
    /* readable: the peer closed, or sent something (TLS session tickets) */
    char buf[512];
    if (c->ssl) {
        int r = SSL_read(c->ssl, buf, sizeof(buf));
        if (r > 0)
            return true;
        int e = SSL_get_error(c->ssl, r);
        ERR_clear_error();
        return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
    ssize_t r = recv(c->fd, buf, sizeof(buf), MSG_PEEK | MSG_DONTWAIT);
    return r > 0 || (r < 0 && (errno == EAGAIN || errno == EINTR));
}
