/* The server configuration: defaults, every section, and errors that name
 * file:line:col and the key. */
#include "test.h"
#include "wafer/detect.h"
#include "wafer/policy.h"
#include "wafer/proxy.h"

static int load(const char *text, wf_server_conf_t **out, wf_conf_err_t *err)
{
    wf_conf_t *c = NULL;
    *out = NULL;
    int rc = wf_conf_load_string("t.yaml", text, strlen(text), &c, err);
    if (rc)
        return rc;
    wf_server_conf_t *sc = malloc(sizeof(*sc));
    wf_server_conf_defaults(sc);
    rc = wf_server_conf_parse(c, sc, err);
    wf_conf_free(c);
    if (rc) {
        wf_server_conf_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

#define MINIMAL "listen:\n  - address: 127.0.0.1:8080\nupstream:\n  servers:\n    - address: 127.0.0.1:8081\n"

TEST(defaults_from_minimal)
{
    wf_server_conf_t *sc;
    wf_conf_err_t err;
    CHECK_EQ_INT(load(MINIMAL, &sc, &err), 0);
    CHECK(sc->workers >= 1);
    CHECK(sc->workers_auto);
    CHECK_EQ_INT(sc->nlisten, 1);
    CHECK_EQ_INT(sc->listen[0].backlog, 511);
    CHECK_EQ_INT(sc->nservers, 1);
    CHECK_EQ_INT(sc->up_keepalive, 32);
    CHECK_EQ_INT(sc->up_connect_timeout_ms, 5000);
    CHECK_EQ_INT(sc->up_timeout_ms, 60000);
    CHECK(sc->xff && sc->via && !sc->forwarded && !sc->trust_request_id);
    CHECK_EQ_STR(sc->request_id_header, "X-Request-Id");
    CHECK_EQ_INT(sc->max_header_bytes, 16384);
    CHECK_EQ_INT(sc->max_headers, 100);
    CHECK_EQ_INT(sc->max_uri, 8192);
    CHECK_EQ_INT(sc->max_body, 1ull << 30);
    CHECK_EQ_INT(sc->max_connections, 10000);
    CHECK_EQ_INT(sc->buffer_size, 65536);
    CHECK_EQ_INT(sc->header_timeout_ms, 30000);
    CHECK_EQ_INT(sc->idle_timeout_ms, 75000);
    CHECK_EQ_INT(sc->shutdown_timeout_ms, 30000);
    CHECK_EQ_INT(sc->access_log, WF_ACCESS_LOG_STDOUT);
    CHECK_EQ_INT(sc->http.max_header_bytes, 16384);
    CHECK_EQ_INT(sc->http.max_body_bytes, 1ull << 30);
    CHECK_EQ_INT(sc->http_resp.max_body_bytes, 0);
    wf_server_conf_free(sc);
}

TEST(every_section)
{
    const char *text = "workers: 3\n"
                       "pid_file: /tmp/w.pid\n"
                       "log:\n  level: debug\n  error_log: /tmp/e.log\n  access_log: off\n"
                       "listen:\n  - address: 127.0.0.1:8080\n    backlog: 100\n  - address: \"[::1]:8080\"\n"
                       "upstream:\n  servers:\n    - address: 127.0.0.1:8081\n    - address: 127.0.0.2:8081\n"
                       "  keepalive: 4\n  connect_timeout: 250ms\n  timeout: 2m\n  idle_timeout: 10s\n"
                       "proxy:\n  x_forwarded_for: false\n  forwarded: true\n  via: no\n"
                       "  request_id_header: X-Trace\n  trust_request_id: yes\n"
                       "limits:\n  max_header_bytes: 8k\n  max_headers: 50\n  max_uri: 2k\n  max_body: 10m\n"
                       "  max_connections: 7\n  buffer_size: 16k\n"
                       "timeouts:\n  header: 5s\n  body: 6s\n  idle: 7s\n  send: 8s\n"
                       "shutdown_timeout: 1s\n";
    wf_server_conf_t *sc;
    wf_conf_err_t err;
    int rc = load(text, &sc, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
    if (rc)
        return;
    CHECK_EQ_INT(sc->workers, 3);
    CHECK(!sc->workers_auto);
    CHECK_EQ_STR(sc->pid_file, "/tmp/w.pid");
    CHECK_EQ_INT(sc->log_level, 0);
    CHECK_EQ_STR(sc->error_log, "/tmp/e.log");
    CHECK_EQ_INT(sc->access_log, WF_ACCESS_LOG_OFF);
    CHECK_EQ_INT(sc->nlisten, 2);
    CHECK_EQ_INT(sc->listen[0].backlog, 100);
    CHECK_EQ_INT(sc->listen[1].addr.ss.ss_family, AF_INET6);
    CHECK_EQ_INT(sc->nservers, 2);
    CHECK_EQ_INT(sc->up_keepalive, 4);
    CHECK_EQ_INT(sc->up_connect_timeout_ms, 250);
    CHECK_EQ_INT(sc->up_timeout_ms, 120000);
    CHECK_EQ_INT(sc->up_idle_timeout_ms, 10000);
    CHECK(!sc->xff && sc->forwarded && !sc->via && sc->trust_request_id);
    CHECK_EQ_STR(sc->request_id_header, "X-Trace");
    CHECK_EQ_INT(sc->max_header_bytes, 8192);
    CHECK_EQ_INT(sc->max_headers, 50);
    CHECK_EQ_INT(sc->max_uri, 2048);
    CHECK_EQ_INT(sc->max_body, 10 << 20);
    CHECK_EQ_INT(sc->max_connections, 7);
    CHECK_EQ_INT(sc->buffer_size, 16384);
    CHECK_EQ_INT(sc->header_timeout_ms, 5000);
    CHECK_EQ_INT(sc->body_timeout_ms, 6000);
    CHECK_EQ_INT(sc->idle_timeout_ms, 7000);
    CHECK_EQ_INT(sc->send_timeout_ms, 8000);
    CHECK_EQ_INT(sc->shutdown_timeout_ms, 1000);
    CHECK_EQ_INT(sc->http.max_uri, 2048);
    CHECK_EQ_INT(sc->http.max_headers, 50);
    wf_server_conf_free(sc);
}

/* Each bad document and the start of the error it must give. */
static void expect_error(const char *text, const char *prefix)
{
    wf_server_conf_t *sc;
    wf_conf_err_t err = { "" };
    int rc = load(text, &sc, &err);
    CHECK(rc != 0);
    if (rc == 0) {
        wf_server_conf_free(sc);
        return;
    }
    if (strncmp(err.msg, prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "expected \"%s...\", got \"%s\"\n", prefix, err.msg);
        CHECK(0);
    }
}

TEST(errors_name_file_line_and_key)
{
    expect_error(MINIMAL "proxy:\n  via: maybe\n", "t.yaml:7:3: proxy.via: expected true or false");
    expect_error(MINIMAL "proxy:\n  x_forwarded: true\n", "t.yaml:7:3: proxy.x_forwarded: unknown key");
    expect_error(MINIMAL "limits:\n  max_body: lots\n", "t.yaml:7:3: limits.max_body: expected a size");
    expect_error(MINIMAL "timeouts:\n  header: fast\n", "t.yaml:7:3: timeouts.header: expected a duration");
    expect_error(MINIMAL "limits:\n  max_header_bytes: 10\n", "t.yaml:7:3: limits.max_header_bytes: size 10 is out of range");
    expect_error(MINIMAL "workers: many\n", "t.yaml:6:1: workers: expected auto or a number");
    expect_error(MINIMAL "log:\n  level: loud\n", "t.yaml:7:3: log.level: expected one of debug, info, warn, error");
    expect_error(MINIMAL "proxy:\n  request_id_header: \"X Id\"\n", "t.yaml:7:3: proxy.request_id_header: \"X Id\" is not a valid header name");
    expect_error("listen:\n  - address: nowhere\nupstream:\n  servers:\n    - address: 127.0.0.1:1\n",
                 "t.yaml:2:5: listen[0].address: expected host:port");
    expect_error("listen:\n  - address: 127.0.0.1:1\n  - address: 127.0.0.1:1\nupstream:\n  servers:\n    - address: 127.0.0.1:1\n",
                 "t.yaml:3:5: listen[1]: address 127.0.0.1:1 is listed twice");
    expect_error("listen:\n  - address: 127.0.0.1:1\n", "t.yaml:1:1: missing key \"upstream\"");
    expect_error("listen:\n  - address: 127.0.0.1:1\nupstream:\n  servers: []\n", "t.yaml:4:3: upstream.servers: expected a non-empty list");
    expect_error("upstream:\n  servers:\n    - address: 127.0.0.1:1\n", "t.yaml:1:1: missing key \"listen\"");
    expect_error(MINIMAL "upstream2: {}\n", "t.yaml:6:1: upstream2: unknown key");
}

TEST(shipped_configuration_is_valid)
{
    wf_server_conf_t *sc = NULL;
    wf_conf_err_t err;
    int rc = wf_server_conf_load("conf/wafer.yaml", &sc, &err);
    if (rc)
        fprintf(stderr, "%s\n", err.msg);
    CHECK_EQ_INT(rc, 0);
    if (!sc)
        return;
    CHECK_EQ_STR(sc->listen[0].address, "127.0.0.1:8080");
    CHECK_EQ_STR(sc->servers[0].address, "127.0.0.1:8081");
    /* the product: inspection on, in block mode, with the shipped model */
    CHECK(sc->detect && sc->detect->enabled);
    CHECK(sc->detect && strstr(sc->detect->model_dir, "conf/../models/default") != NULL);
    CHECK(sc->policy && sc->policy->mode == WF_MODE_BLOCK);
    wf_server_conf_free(sc);
}

TEST(sockaddr_parse_and_format)
{
    wf_sockaddr_t a;
    char buf[64];
    CHECK_EQ_INT(wf_sockaddr_parse("127.0.0.1:80", &a), 0);
    wf_sockaddr_format(&a, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "127.0.0.1:80");
    CHECK_EQ_INT(wf_sockaddr_parse("[::1]:8443", &a), 0);
    wf_sockaddr_format(&a, buf, sizeof(buf));
    CHECK_EQ_STR(buf, "[::1]:8443");
    CHECK_EQ_INT(wf_sockaddr_parse("*:8080", &a), 0);
    CHECK(wf_sockaddr_parse("127.0.0.1", &a) != 0);
    CHECK(wf_sockaddr_parse("127.0.0.1:99999", &a) != 0);
    CHECK(wf_sockaddr_parse("::1:80", &a) != 0);
    CHECK(wf_sockaddr_parse("[::1]80", &a) != 0);
    CHECK(wf_sockaddr_parse("1.2.3.4:", &a) != 0);
}

TEST_MAIN()
