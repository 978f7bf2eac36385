/* The admin listener: configuration, routing, token, readiness, /version,
 * limits and timeouts, over real loopback connections. */
#include "test.h"
#include "wafer/admin.h"
#include "wafer/metrics.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

static wf_admin_t *start(const char *yaml, wf_sockaddr_t *to)
{
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    wf_admin_conf_t ac;
    if (wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    int rc = wf_admin_conf_parse(c, wf_conf_get(wf_conf_root(c), "admin"), &ac, &err);
    wf_conf_free(c);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return NULL;
    }
    wf_admin_t *a = NULL;
    char msg[256];
    rc = wf_admin_start(&ac, &a, msg, sizeof(msg));
    wf_admin_conf_free(&ac);
    if (rc) {
        fprintf(stderr, "%s\n", msg);
        return NULL;
    }
    char addr[80];
    wf_admin_address(a, addr, sizeof(addr));
    wf_sockaddr_parse(addr, to);
    return a;
}

static int dial(const wf_sockaddr_t *to)
{
    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

/* Reads until the peer closes (or 3 s pass) into out. */
static size_t read_all(int fd, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 1 < cap) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (poll(&pf, 1, 3000) != 1)
            break;
        ssize_t r = read(fd, out + n, cap - 1 - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    out[n] = 0;
    return n;
}

/* Sends raw bytes on a new connection and returns everything until close. */
static char *exchange(const wf_sockaddr_t *to, const char *raw)
{
    static char buf[65536];
    buf[0] = 0;
    int fd = dial(to);
    if (fd < 0)
        return buf;
    size_t len = strlen(raw);
    if (write(fd, raw, len) != (ssize_t)len) {
        close(fd);
        return buf;
    }
    read_all(fd, buf, sizeof(buf));
    close(fd);
    return buf;
}

static char *get(const wf_sockaddr_t *to, const char *path, const char *auth)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: admin\r\n%s%s%sConnection: close\r\n\r\n", path,
             auth ? "Authorization: " : "", auth ? auth : "", auth ? "\r\n" : "");
    return exchange(to, req);
}

static int status_of(const char *resp)
{
    int st = 0;
    if (sscanf(resp, "HTTP/1.1 %d", &st) != 1)
        return -1;
    return st;
}

static const char *body_of(const char *resp)
{
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

TEST(conf_defaults_and_errors)
{
    wf_admin_conf_t ac;
    CHECK_EQ_INT(wf_admin_conf_parse(NULL, NULL, &ac, NULL), 0);
    CHECK(ac.enabled);
    CHECK_EQ_STR(ac.address, "127.0.0.1:9901");
    CHECK(ac.token == NULL);
    CHECK_EQ_INT(ac.max_connections, 16);
    CHECK_EQ_INT(ac.timeout_ms, 10000);
    wf_admin_conf_free(&ac);

    static const struct { const char *yaml, *msg; } bad[] = {
        { "admin: {adress: 127.0.0.1:1}\n", "adress" },
        { "admin: {address: nowhere}\n", "expected host:port" },
        { "admin: {token: \"has space\"}\n", "a token is" },
        { "admin: {max_connections: 0}\n", "max_connections" },
        { "admin: {timeout: fast}\n", "timeout" },
        { "admin: [1]\n", "expected a mapping" },
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        wf_conf_t *c = NULL;
        wf_conf_err_t err = { { 0 } };
        CHECK_EQ_INT(wf_conf_load_string("t.yaml", bad[i].yaml, strlen(bad[i].yaml), &c, &err), 0);
        int rc = wf_admin_conf_parse(c, wf_conf_get(wf_conf_root(c), "admin"), &ac, &err);
        CHECK(rc != 0);
        if (!strstr(err.msg, bad[i].msg))
            fprintf(stderr, "case %zu: message \"%s\" lacks \"%s\"\n", i, err.msg, bad[i].msg);
        CHECK(strstr(err.msg, bad[i].msg) != NULL);
        CHECK(strstr(err.msg, "t.yaml:1:") != NULL);
        wf_admin_conf_free(&ac);
        wf_conf_free(c);
    }
}

TEST(json_str_escapes)
{
    wf_buf_t b;
    wf_buf_init(&b, 64, 4096);
    CHECK_EQ_INT(wf_admin_json_str(&b, WF_STR("a\"b\\c\n\x01 \xc3\xa9 \xff\xc3")), 0);
    wf_buf_append(&b, "", 1);
    CHECK_EQ_STR(wf_buf_rptr(&b), "\"a\\\"b\\\\c\\u000a\\u0001 \xc3\xa9 \\u00ff\\u00c3\"");
    wf_buf_free(&b);
}

static void h_echo(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *arg)
{
    resp->status = 202;
    resp->content_type = "text/plain";
    wf_buf_appendf(resp->body, "%s rest=[%.*s] query=[%.*s] body=[%.*s]", (const char *)arg, (int)req->rest.n,
                   req->rest.p, (int)req->query.n, req->query.p, (int)req->body.n, req->body.p);
}

TEST(endpoints_routing_and_readiness)
{
    CHECK_EQ_INT(wf_admin_handle("DELETE", "/things", h_echo, "delete"), 0);
    CHECK_EQ_INT(wf_admin_handle(NULL, "/things/special", h_echo, "any"), 0);
    CHECK_EQ_INT(wf_admin_handle("GET", "things", h_echo, "bad"), -EINVAL);
    wf_admin_set_ready(false);
    wf_sockaddr_t to;
    wf_admin_t *a = start("admin: {address: 127.0.0.1:0}\n", &to);
    CHECK(a != NULL);
    if (!a)
        return;

    char *r = get(&to, "/health", NULL);
    CHECK_EQ_INT(status_of(r), 200);
    CHECK_EQ_STR(body_of(r), "{\"status\":\"ok\"}\n");
    CHECK(strstr(r, "Content-Type: application/json\r\n") != NULL);
    CHECK(strstr(r, "Connection: close\r\n") != NULL);

    CHECK_EQ_INT(status_of(get(&to, "/ready", NULL)), 503);
    wf_admin_set_ready(true);
    CHECK_EQ_INT(status_of(get(&to, "/ready", NULL)), 200);
    wf_admin_set_ready(false);
    CHECK_EQ_INT(status_of(get(&to, "/ready", NULL)), 503);

    CHECK_EQ_INT(status_of(get(&to, "/nothing", NULL)), 404);
    CHECK_EQ_INT(status_of(get(&to, "/healthz", NULL)), 404);
    CHECK_EQ_INT(status_of(get(&to, "/health/x", NULL)), 404); /* built-ins answer their own path only */
    CHECK_EQ_INT(status_of(get(&to, "/thingsx", NULL)), 404);
    r = get(&to, "/things/1", NULL);
    CHECK_EQ_INT(status_of(r), 405);
    CHECK(strstr(r, "Allow: DELETE\r\n") != NULL);

    r = exchange(&to, "DELETE /things/192.0.2.1?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                      "Connection: close\r\n\r\nabc");
    CHECK_EQ_INT(status_of(r), 202);
    CHECK_EQ_STR(body_of(r), "delete rest=[/192.0.2.1] query=[x=1] body=[abc]");
    /* the longest prefix wins; NULL method takes any */
    r = exchange(&to, "PUT /things/special HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 202);
    CHECK(strstr(r, "any rest=[]") != NULL);

    /* HEAD: same head, no body */
    r = exchange(&to, "HEAD /health HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 200);
    CHECK(strstr(r, "Content-Length: 16\r\n") != NULL);
    CHECK_EQ_STR(body_of(r), "");

    /* /version: wafer's version and grouped facts */
    wf_admin_set_info("config.generation", "7");
    wf_admin_set_info("model.id", "wafer-small@1");
    wf_admin_set_info("config.file", "/etc/wafer/\"w\".yaml");
    CHECK_EQ_INT(wf_admin_set_info("a.b.c", "x"), -EINVAL);
    CHECK_EQ_INT(wf_admin_set_info(".x", "x"), -EINVAL);
    r = get(&to, "/version", NULL);
    CHECK_EQ_INT(status_of(r), 200);
    CHECK_EQ_STR(body_of(r), "{\"version\":\"" WF_VERSION "\",\"config\":{\"generation\":\"7\",\"file\":"
                             "\"/etc/wafer/\\\"w\\\".yaml\"},\"model\":{\"id\":\"wafer-small@1\"}}\n");
    wf_admin_set_info("model.id", NULL);
    r = get(&to, "/version", NULL);
    CHECK(strstr(r, "model") == NULL);

    /* metrics: the exposition content type and the admin's own counters */
    r = get(&to, "/metrics", NULL);
    CHECK_EQ_INT(status_of(r), 200);
    CHECK(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n") != NULL);
    CHECK(strstr(r, "wafer_admin_requests_total{code=\"4xx\"} ") != NULL);

    wf_admin_stop(a);
    /* stopped: the port is closed */
    CHECK(dial(&to) < 0);
}

TEST(keepalive_pipelining_and_bad_requests)
{
    wf_sockaddr_t to;
    wf_admin_t *a = start("admin: {address: 127.0.0.1:0}\n", &to);
    CHECK(a != NULL);
    if (!a)
        return;
    /* two pipelined requests on one connection, the second closes it */
    char *r = exchange(&to, "GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /nothing HTTP/1.1\r\nHost: a\r\n"
                            "Connection: close\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 200);
    CHECK(strstr(r, "HTTP/1.1 404 Not Found\r\n") != NULL);

    /* HTTP/1.0: closes unless asked to keep alive, and then says so */
    r = exchange(&to, "GET /health HTTP/1.0\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 200);
    CHECK(strstr(r, "Connection: close\r\n") != NULL);
    r = exchange(&to, "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /health HTTP/1.0\r\n\r\n");
    CHECK(strstr(r, "Connection: keep-alive\r\n") != NULL);
    CHECK(strstr(strstr(r, "keep-alive") ? strstr(r, "keep-alive") : r, "HTTP/1.1 200 OK") != NULL);

    /* keep-alive: a connection serves several requests in turn */
    int fd = dial(&to);
    CHECK(fd >= 0);
    char buf[4096];
    for (int i = 0; i < 3 && fd >= 0; i++) {
        const char *q = "GET /health HTTP/1.1\r\nHost: a\r\n\r\n";
        CHECK_EQ_INT(write(fd, q, strlen(q)), (long long)strlen(q));
        struct pollfd pf = { fd, POLLIN, 0 };
        CHECK_EQ_INT(poll(&pf, 1, 3000), 1);
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        CHECK(n > 0);
        buf[n > 0 ? n : 0] = 0;
        CHECK_EQ_INT(status_of(buf), 200);
    }
    if (fd >= 0)
        close(fd);

    /* hostile input: answered 400 and closed; the listener lives on */
    r = exchange(&to, "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 400);
    CHECK(strstr(r, "cl_and_te") != NULL);
    r = exchange(&to, "\x01\x02garbage\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 400);
    r = exchange(&to, "GET /health HTTP/1.1\r\n\r\n"); /* no Host */
    CHECK_EQ_INT(status_of(r), 400);
    r = exchange(&to, "POST /health HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    CHECK_EQ_INT(status_of(r), 411);
    /* refused with body bytes still coming: the answer must not be lost to a reset */
    static char post[80000];
    int k = snprintf(post, sizeof(post), "POST /health HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n");
    memset(post + k, 'b', sizeof(post) - 1 - (size_t)k);
    r = exchange(&to, post);
    CHECK_EQ_INT(status_of(r), 413);
    static char big[12000];
    static const char head[] = "GET /health HTTP/1.1\r\nHost: a\r\nX: ";
    memcpy(big, head, sizeof(head) - 1);
    memset(big + sizeof(head) - 1, 'a', sizeof(big) - sizeof(head));
    r = exchange(&to, big);
    CHECK(status_of(r) == 431);
    CHECK_EQ_INT(status_of(get(&to, "/health", NULL)), 200);
    wf_admin_stop(a);
}

TEST(token_limits_timeout_and_reconfigure)
{
    wf_sockaddr_t to;
    wf_admin_t *a = start("admin: {address: 127.0.0.1:0, token: t0ken, max_connections: 2, timeout: 300ms}\n", &to);
    CHECK(a != NULL);
    if (!a)
        return;
    char *r = get(&to, "/health", NULL);
    CHECK_EQ_INT(status_of(r), 401);
    CHECK(strstr(r, "WWW-Authenticate: Bearer") != NULL);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer t0ke")), 401);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer t0kenX")), 401);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Basic t0ken")), 401);
    CHECK_EQ_INT(status_of(get(&to, "/nothing", NULL)), 401); /* no hint at which paths exist */
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer t0ken")), 200);
    CHECK_EQ_INT(status_of(get(&to, "/health", "bearer t0ken")), 200);

    /* two idle connections fill the limit; a third is refused with 503 */
    int c1 = dial(&to), c2 = dial(&to);
    CHECK(c1 >= 0 && c2 >= 0);
    usleep(50000);
    r = get(&to, "/health", "Bearer t0ken");
    CHECK_EQ_INT(status_of(r), 503);
    /* the idle ones are closed at the timeout, and the slot is free again */
    char buf[256];
    CHECK_EQ_INT(read_all(c1, buf, sizeof(buf)), 0);
    close(c1);
    close(c2);
    usleep(50000);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer t0ken")), 200);

    /* a request that does not finish in time gets 408 */
    r = exchange(&to, "GET /health HTTP/1.1\r\nHost: a\r\n");
    CHECK_EQ_INT(status_of(r), 408);

    /* reconfigure: the token changes at once, the port stays */
    wf_admin_conf_t ac;
    wf_admin_conf_defaults(&ac);
    char addr[80];
    wf_admin_address(a, addr, sizeof(addr));
    free(ac.address);
    ac.address = strdup(addr);
    wf_sockaddr_parse(addr, &ac.addr);
    ac.token = strdup("n3w");
    char msg[256];
    CHECK_EQ_INT(wf_admin_reconfigure(a, &ac, msg, sizeof(msg)), 0);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer t0ken")), 401);
    CHECK_EQ_INT(status_of(get(&to, "/health", "Bearer n3w")), 200);

    /* a new address rebinds; the old port closes */
    wf_admin_conf_free(&ac);
    wf_admin_conf_defaults(&ac);
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001) };
    socklen_t sl = sizeof(sin);
    bind(probe, (struct sockaddr *)&sin, sizeof(sin));
    getsockname(probe, (struct sockaddr *)&sin, &sl);
    close(probe);
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(sin.sin_port));
    free(ac.address);
    ac.address = strdup(addr);
    wf_sockaddr_parse(addr, &ac.addr);
    CHECK_EQ_INT(wf_admin_reconfigure(a, &ac, msg, sizeof(msg)), 0);
    wf_sockaddr_t to2;
    wf_sockaddr_parse(addr, &to2);
    usleep(50000);
    CHECK_EQ_INT(status_of(get(&to2, "/health", NULL)), 200);
    CHECK(dial(&to) < 0);
    /* an address in use is refused and the listener stays where it is */
    CHECK(wf_admin_reconfigure(a, &(wf_admin_conf_t){ .enabled = true, .address = "x", .addr = to2 }, msg,
                               sizeof(msg)) == 0);
    wf_admin_t *b = NULL;
    CHECK_EQ_INT(wf_admin_start(&ac, &b, msg, sizeof(msg)), -EADDRINUSE);
    CHECK(strstr(msg, addr) != NULL);
    wf_admin_conf_free(&ac);
    wf_admin_stop(a);
}

TEST_MAIN()
