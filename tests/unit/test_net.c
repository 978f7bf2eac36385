/* Listeners, non-blocking connect/accept, the TCP connection vtable, and the
 * probe that refuses an address another socket holds. */
#include "test.h"
#include "wafer/net.h"

#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

static uint16_t bound_port(int fd)
{
    struct sockaddr_in sin;
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    return ntohs(sin.sin_port);
}

TEST(listen_connect_accept_and_io)
{
    wf_sockaddr_t a;
    CHECK_EQ_INT(wf_sockaddr_parse("127.0.0.1:0", &a), 0);
    int lfd = wf_net_listen(&a, 16, true);
    CHECK(lfd >= 0);
    if (lfd < 0)
        return;
    char text[64];
    snprintf(text, sizeof(text), "127.0.0.1:%u", bound_port(lfd));
    wf_sockaddr_t to;
    CHECK_EQ_INT(wf_sockaddr_parse(text, &to), 0);

    /* the address is held: a probe (and so a second wafer) must fail */
    CHECK_EQ_INT(wf_net_listen_probe(&to), -EADDRINUSE);

    int cfd = -1;
    int rc = wf_net_connect(&to, &cfd);
    CHECK(rc == 0 || rc == -EINPROGRESS);
    struct pollfd pf = { cfd, POLLOUT, 0 };
    CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
    CHECK_EQ_INT(wf_net_connect_result(cfd), 0);

    wf_sockaddr_t peer;
    int afd = -EAGAIN;
    for (int i = 0; i < 200 && afd == -EAGAIN; i++) {
        afd = wf_net_accept(lfd, &peer);
        if (afd == -EAGAIN)
            usleep(1000);
    }
    CHECK(afd >= 0);
    char ip[64];
    uint16_t port = 0;
    wf_sockaddr_ip(&peer, ip, sizeof(ip), &port);
    CHECK_EQ_STR(ip, "127.0.0.1");
    CHECK(port != 0);
    CHECK_EQ_INT(wf_net_accept(lfd, &peer), -EAGAIN);

    wf_conn_t c, s;
    wf_conn_init(&c, &wf_conn_tcp, cfd);
    wf_conn_init(&s, &wf_conn_tcp, afd);
    char buf[64];
    CHECK_EQ_INT(wf_conn_read(&s, buf, sizeof(buf)), -EAGAIN);
    struct iovec iov[2] = { { "hello ", 6 }, { "world", 5 } };
    CHECK_EQ_INT(wf_conn_writev(&c, iov, 2), 11);
    pf = (struct pollfd){ afd, POLLIN, 0 };
    CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
    CHECK_EQ_INT(wf_conn_read(&s, buf, sizeof(buf)), 11);
    CHECK(memcmp(buf, "hello world", 11) == 0);
    CHECK_EQ_INT(wf_conn_shutdown(&c, SHUT_WR), 0);
    CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
    CHECK_EQ_INT(wf_conn_read(&s, buf, sizeof(buf)), 0); /* end of stream */
    c.type->close(&c);
    s.type->close(&s);
    close(lfd);

    /* released: the probe passes now */
    CHECK_EQ_INT(wf_net_listen_probe(&to), 0);
}

TEST(connect_refused)
{
    wf_sockaddr_t a;
    CHECK_EQ_INT(wf_sockaddr_parse("127.0.0.1:0", &a), 0);
    int lfd = wf_net_listen(&a, 1, false);
    CHECK(lfd >= 0);
    char text[64];
    snprintf(text, sizeof(text), "127.0.0.1:%u", bound_port(lfd));
    close(lfd); /* nobody listens there now */
    wf_sockaddr_t to;
    CHECK_EQ_INT(wf_sockaddr_parse(text, &to), 0);
    int fd = -1;
    int rc = wf_net_connect(&to, &fd);
    if (rc == -EINPROGRESS) {
        struct pollfd pf = { fd, POLLOUT, 0 };
        CHECK_EQ_INT(poll(&pf, 1, 2000), 1);
        rc = wf_net_connect_result(fd);
        close(fd);
    }
    CHECK_EQ_INT(rc, -ECONNREFUSED);
}

TEST(v6_listener)
{
    wf_sockaddr_t a;
    CHECK_EQ_INT(wf_sockaddr_parse("[::1]:0", &a), 0);
    int lfd = wf_net_listen(&a, 4, true);
    if (lfd == -EADDRNOTAVAIL || lfd == -EAFNOSUPPORT)
        return; /* no IPv6 loopback on this machine */
    CHECK(lfd >= 0);
    if (lfd >= 0)
        close(lfd);
}

TEST_MAIN()
