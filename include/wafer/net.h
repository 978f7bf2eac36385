/*
 * wafer networking: socket addresses, listeners, outgoing connections and the
 * connection vtable behind which plain TCP and TLS (wafer/tls.h) live, in the
 * manner of redis connection.h.
 *
 * All sockets are non-blocking and close-on-exec. Errors are negative errno.
 */
#ifndef WAFER_NET_H
#define WAFER_NET_H

#include "wafer/common.h"
#include "wafer/event.h"
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct {
    struct sockaddr_storage ss;
    socklen_t len;
} wf_sockaddr_t;

/* Parses "host:port", "[v6]:port" or "*:port" (IPv4 any). A host that is not
 * a numeric address is resolved once (blocking; configuration time only).
 * Returns 0 or -EINVAL. */
int wf_sockaddr_parse(const char *text, wf_sockaddr_t *out);
/* Formats "ip:port" or "[ip6]:port" into out; returns its length. */
size_t wf_sockaddr_format(const wf_sockaddr_t *a, char *out, size_t outlen);
/* Formats only the IP text (no brackets) and returns the port. */
size_t wf_sockaddr_ip(const wf_sockaddr_t *a, char *out, size_t outlen, uint16_t *port);
bool wf_sockaddr_eq(const wf_sockaddr_t *a, const wf_sockaddr_t *b);

/* Opens a listening socket: SO_REUSEADDR, SO_REUSEPORT (when reuseport, so
 * that every worker has its own socket and accept queue), IPV6_V6ONLY for
 * IPv6, non-blocking. Returns the descriptor or -errno. */
int wf_net_listen(const wf_sockaddr_t *a, int backlog, bool reuseport);
/* Fails with -EADDRINUSE if another socket (of any process, SO_REUSEPORT
 * or not) is bound to the address: binding with SO_REUSEPORT alone would
 * silently share the port with a second running instance. */
int wf_net_listen_probe(const wf_sockaddr_t *a);
/* Accepts one connection (non-blocking, TCP_NODELAY). Returns the
 * descriptor, -EAGAIN when none is pending, or -errno. */
int wf_net_accept(int lfd, wf_sockaddr_t *peer);
/* Starts a non-blocking connect (TCP_NODELAY). Returns the descriptor in
 * *fd and 0 when connected at once, -EINPROGRESS when the result comes with
 * writability (check it with wf_net_connect_result), or -errno (no fd). */
int wf_net_connect(const wf_sockaddr_t *a, int *fd);
/* The outcome of a connect in progress: 0 or -errno (SO_ERROR). */
int wf_net_connect_result(int fd);

/* ---- connections ---- */

typedef struct wf_conn wf_conn_t;

/* Each returns bytes (0 from read: end of stream), -EAGAIN, or -errno. */
typedef struct {
    const char *name;
    ssize_t (*read)(wf_conn_t *c, void *buf, size_t len);
    ssize_t (*write)(wf_conn_t *c, const void *buf, size_t len);
    ssize_t (*writev)(wf_conn_t *c, const struct iovec *iov, int iovcnt);
    int (*shutdown)(wf_conn_t *c, int how); /* SHUT_WR, ... */
    void (*close)(wf_conn_t *c);            /* closes the descriptor; the object stays the caller's */
} wf_conn_type_t;

struct wf_conn {
    const wf_conn_type_t *type;
    int fd;
    wf_io_t io;       /* registered edge-triggered by the owner */
    void *tls;        /* TLS state (wafer/tls.h), NULL for plain TCP */
    unsigned want;    /* WF_CONN_*_WANTS_*: what a pending TLS read or write waits for */
};

enum {
    WF_CONN_READ_WANTS_WRITE = 1u << 0, /* a read returned -EAGAIN until the socket is writable */
    WF_CONN_WRITE_WANTS_READ = 1u << 1, /* a write returned -EAGAIN until the socket is readable */
};

extern const wf_conn_type_t wf_conn_tcp;

static inline void wf_conn_init(wf_conn_t *c, const wf_conn_type_t *type, int fd)
{
    c->type = type;
    c->fd = fd;
    c->io.fd = -1;
    c->tls = NULL;
    c->want = 0;
}
/* The readiness an edge-triggered owner should record for events ev: a TLS
 * read waiting for writability becomes possible on a write event, a write
 * waiting for readability on a read event (plain TCP: ev unchanged). */
static inline unsigned wf_conn_ready(const wf_conn_t *c, unsigned ev)
{
    if ((c->want & WF_CONN_READ_WANTS_WRITE) && (ev & WF_IO_WRITE))
        ev |= WF_IO_READ;
    if ((c->want & WF_CONN_WRITE_WANTS_READ) && (ev & (WF_IO_READ | WF_IO_HUP)))
        ev |= WF_IO_WRITE;
    return ev;
}
static inline ssize_t wf_conn_read(wf_conn_t *c, void *buf, size_t len) { return c->type->read(c, buf, len); }
static inline ssize_t wf_conn_write(wf_conn_t *c, const void *buf, size_t len) { return c->type->write(c, buf, len); }
static inline ssize_t wf_conn_writev(wf_conn_t *c, const struct iovec *iov, int n) { return c->type->writev(c, iov, n); }
static inline int wf_conn_shutdown(wf_conn_t *c, int how) { return c->type->shutdown(c, how); }
/* Unregisters from the loop (without a system call) and closes. */
static inline void wf_conn_close(wf_loop_t *loop, wf_conn_t *c)
{
    if (c->fd < 0)
        return;
    wf_loop_io_forget(loop, &c->io);
    c->type->close(c);
    c->fd = -1;
}

#endif
