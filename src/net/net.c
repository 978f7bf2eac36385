/* Socket addresses, listeners, connects and the plain TCP connection type. */
#include "wafer/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int wf_sockaddr_parse(const char *text, wf_sockaddr_t *out)
{
    char host[256];
    const char *port;
    memset(out, 0, sizeof(*out));
    if (!text || !*text)
        return -EINVAL;
    if (text[0] == '[') {
        const char *rb = strchr(text, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - text - 1) >= sizeof(host))
            return -EINVAL;
        memcpy(host, text + 1, (size_t)(rb - text - 1));
        host[rb - text - 1] = 0;
        port = rb + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (!colon || (size_t)(colon - text) >= sizeof(host) || strchr(text, ':') != colon)
            return -EINVAL;
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = 0;
        port = colon + 1;
    }
    char *end;
    if (!*port || *port < '0' || *port > '9')
        return -EINVAL;
    unsigned long p = strtoul(port, &end, 10);
    if (*end || p > 65535)
        return -EINVAL;
    if (!*host || !strcmp(host, "*"))
        strcpy(host, "0.0.0.0");
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, host, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        s4->sin_port = htons((uint16_t)p);
        out->len = sizeof(*s4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        out->len = sizeof(*s6);
        return 0;
    }
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return -EINVAL;
    memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
    out->len = res->ai_addrlen;
    freeaddrinfo(res);
    if (out->ss.ss_family == AF_INET)
        s4->sin_port = htons((uint16_t)p);
    else if (out->ss.ss_family == AF_INET6)
        s6->sin6_port = htons((uint16_t)p);
    else
        return -EINVAL;
    return 0;
}

size_t wf_sockaddr_ip(const wf_sockaddr_t *a, char *out, size_t outlen, uint16_t *port)
{
    const void *src;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        src = &s6->sin6_addr;
        if (port)
            *port = ntohs(s6->sin6_port);
    } else {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        src = &s4->sin_addr;
        if (port)
            *port = ntohs(s4->sin_port);
    }
    if (!inet_ntop(a->ss.ss_family, src, out, (socklen_t)outlen)) {
        if (outlen)
            out[0] = 0;
        return 0;
    }
    return strlen(out);
}

size_t wf_sockaddr_format(const wf_sockaddr_t *a, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    uint16_t port = 0;
    wf_sockaddr_ip(a, ip, sizeof(ip), &port);
    int n = snprintf(out, outlen, a->ss.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
    return n < 0 ? 0 : (size_t)n < outlen ? (size_t)n : outlen - 1;
}

bool wf_sockaddr_eq(const wf_sockaddr_t *a, const wf_sockaddr_t *b)
{
    return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int wf_net_listen(const wf_sockaddr_t *a, int backlog, bool reuseport)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:;
    int e = errno;
    close(fd);
    return -e;
}

int wf_net_listen_probe(const wf_sockaddr_t *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (a->ss.ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0)
        rc = -errno;
    close(fd);
    return rc;
}

static void tcp_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

int wf_net_accept(int lfd, wf_sockaddr_t *peer)
{
    peer->len = sizeof(peer->ss);
    int fd = accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    tcp_nodelay(fd);
    return fd;
}

int wf_net_connect(const wf_sockaddr_t *a, int *out)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    tcp_nodelay(fd);
    *out = fd;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) == 0)
        return 0;
    if (errno == EINPROGRESS)
        return -EINPROGRESS;
    int e = errno;
    close(fd);
    *out = -1;
    return -e;
}

int wf_net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* ---- plain TCP ---- */

static ssize_t tcp_read(wf_conn_t *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(c->fd, buf, len);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t tcp_write(wf_conn_t *c, const void *buf, size_t len)
{
    for (;;) {
        ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static ssize_t tcp_writev(wf_conn_t *c, const struct iovec *iov, int iovcnt)
{
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };
    for (;;) {
        ssize_t n = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
        if (n >= 0)
            return n;
        if (errno == EINTR)
            continue;
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

static int tcp_shutdown(wf_conn_t *c, int how) { return shutdown(c->fd, how) < 0 ? -errno : 0; }

static void tcp_close(wf_conn_t *c) { close(c->fd); }

const wf_conn_type_t wf_conn_tcp = {
    .name = "tcp",
    .read = tcp_read,
    .write = tcp_write,
    .writev = tcp_writev,
    .shutdown = tcp_shutdown,
    .close = tcp_close,
};
