/* Header rewriting on the way through the proxy: hop-by-hop removal (also
 * fields named in Connection), X-Forwarded-For / Forwarded / Via, request
 * ids, absolute-form targets, response heads and generated errors. */
#include "test.h"
#include "wafer/admin.h"
#include "wafer/proxy.h"

static wf_server_conf_t conf(void)
{
    wf_server_conf_t sc;
    wf_server_conf_defaults(&sc);
    wf_admin_conf_free(&sc.admin); /* not used here; the tests free only what they change */
    wf_http_limits_default(&sc.http);
    return sc;
}

/* Parses raw as a request and rewrites it; returns the head (static). */
static const char *rewrite(const wf_server_conf_t *sc, const char *raw, const char *ip, bool v6)
{
    static char out[4096];
    static wf_http_header_t hdrs[100];
    wf_http_request_t req;
    int n = wf_http_parse_request(raw, strlen(raw), &sc->http, &req, hdrs);
    CHECK(n == (int)strlen(raw));
    if (n <= 0)
        return "(parse error)";
    wf_proxy_req_ctx_t ctx = { wf_str_c(ip), v6, WF_STR("rid-1"), WF_STR("upstream:8081") };
    CHECK(wf_proxy_request_head_size(sc, &req, (size_t)n, &ctx) <= sizeof(out));
    int m = wf_proxy_request_head(sc, &req, &ctx, out, sizeof(out));
    CHECK(m > 0);
    if (m <= 0)
        return "(rewrite error)";
    out[m] = 0;
    return out;
}

TEST(hop_by_hop_removed_and_proxy_fields_added)
{
    wf_server_conf_t sc = conf();
    const char *got = rewrite(&sc,
                              "GET /a?b=1 HTTP/1.1\r\n"
                              "Host: example.com\r\n"
                              "Connection: keep-alive, X-Secret\r\n"
                              "Keep-Alive: timeout=5\r\n"
                              "X-Secret: 1\r\n"
                              "TE: trailers\r\n"
                              "Upgrade: websocket\r\n"
                              "Proxy-Authorization: Basic x\r\n"
                              "Accept: */*\r\n"
                              "X-Request-Id: client-chosen\r\n"
                              "\r\n",
                              "10.0.0.1", false);
    CHECK_EQ_STR(got, "GET /a?b=1 HTTP/1.1\r\n"
                      "Host: example.com\r\n"
                      "Accept: */*\r\n"
                      "X-Forwarded-For: 10.0.0.1\r\n"
                      "Via: 1.1 wafer\r\n"
                      "X-Request-Id: rid-1\r\n"
                      "\r\n");
    free(sc.request_id_header);
}

TEST(xff_appended_forwarded_and_v6)
{
    wf_server_conf_t sc = conf();
    sc.forwarded = true;
    sc.via = false;
    const char *got = rewrite(&sc,
                              "GET / HTTP/1.1\r\n"
                              "X-Forwarded-For: 1.1.1.1\r\n"
                              "Host: h\r\n"
                              "x-forwarded-for: 2.2.2.2, 3.3.3.3\r\n"
                              "Forwarded: for=1.1.1.1\r\n"
                              "\r\n",
                              "::1", true);
    CHECK_EQ_STR(got, "GET / HTTP/1.1\r\n"
                      "Host: h\r\n"
                      "Forwarded: for=1.1.1.1\r\n"
                      "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, ::1\r\n"
                      "Forwarded: for=\"[::1]\";host=\"h\";proto=http\r\n"
                      "X-Request-Id: rid-1\r\n"
                      "\r\n");
    free(sc.request_id_header);
}

TEST(connection_cannot_remove_framing_or_host)
{
    wf_server_conf_t sc = conf();
    sc.xff = sc.via = false;
    free(sc.request_id_header);
    sc.request_id_header = NULL;
    const char *got = rewrite(&sc,
                              "POST /u HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Connection: Host, Content-Length, X-A\r\n"
                              "Content-Length: 3\r\n"
                              "X-A: gone\r\n"
                              "Expect: 100-continue\r\n"
                              "\r\n",
                              "10.0.0.1", false);
    CHECK_EQ_STR(got, "POST /u HTTP/1.1\r\n"
                      "Host: h\r\n"
                      "Content-Length: 3\r\n"
                      "\r\n");
}

TEST(repeated_content_length_forwarded_once_as_parsed)
{
    wf_server_conf_t sc = conf();
    sc.xff = sc.via = false;
    free(sc.request_id_header);
    sc.request_id_header = NULL;
    const char *got = rewrite(&sc,
                              "POST /u HTTP/1.1\r\n"
                              "Host: h\r\n"
                              "Content-Length: 3, 3\r\n"
                              "Content-Length: 3\r\n"
                              "\r\n",
                              "10.0.0.1", false);
    CHECK_EQ_STR(got, "POST /u HTTP/1.1\r\n"
                      "Host: h\r\n"
                      "Content-Length: 3\r\n"
                      "\r\n");
}

TEST(chunked_absolute_form_and_http10)
{
    wf_server_conf_t sc = conf();
    sc.xff = false;
    free(sc.request_id_header);
    sc.request_id_header = NULL;
    const char *got = rewrite(&sc,
                              "POST http://example.org:8080/p?q HTTP/1.1\r\n"
                              "Host: ignored\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "\r\n",
                              "10.0.0.1", false);
    CHECK_EQ_STR(got, "POST /p?q HTTP/1.1\r\n"
                      "Host: example.org:8080\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "Via: 1.1 wafer\r\n"
                      "\r\n");
    got = rewrite(&sc, "GET /old HTTP/1.0\r\n\r\n", "10.0.0.1", false);
    CHECK_EQ_STR(got, "GET /old HTTP/1.1\r\n"
                      "Host: upstream:8081\r\n"
                      "Via: 1.0 wafer\r\n"
                      "\r\n");
}

TEST(request_head_too_small_is_an_error)
{
    wf_server_conf_t sc = conf();
    wf_http_header_t hdrs[10];
    wf_http_request_t req;
    const char *raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    CHECK(wf_http_parse_request(raw, strlen(raw), &sc.http, &req, hdrs) > 0);
    wf_proxy_req_ctx_t ctx = { WF_STR("1.2.3.4"), false, WF_STR("r"), WF_STR("u") };
    char out[20];
    CHECK_EQ_INT(wf_proxy_request_head(&sc, &req, &ctx, out, sizeof(out)), -WF_ELIMIT);
    free(sc.request_id_header);
}

static const char *resp_rewrite(const char *raw, unsigned flags)
{
    static char out[4096];
    static wf_http_header_t hdrs[100];
    wf_http_limits_t lim;
    wf_http_limits_default(&lim);
    wf_http_response_t res;
    int n = wf_http_parse_response(raw, strlen(raw), &lim, WF_STR("GET"), &res, hdrs);
    CHECK(n > 0);
    if (n <= 0)
        return "(parse error)";
    int m = wf_proxy_response_head(&res, raw, (size_t)n, flags, out, sizeof(out));
    CHECK(m > 0 && (size_t)m <= (size_t)n + 64);
    if (m <= 0)
        return "(rewrite error)";
    out[m] = 0;
    return out;
}

TEST(response_head)
{
    const char *raw = "HTTP/1.1 200 OK\r\n"
                      "Connection: keep-alive, X-Hop\r\n"
                      "Keep-Alive: timeout=5\r\n"
                      "X-Hop: 1\r\n"
                      "Transfer-Encoding: chunked\r\n"
                      "Server: s\r\n"
                      "\r\n";
    CHECK_EQ_STR(resp_rewrite(raw, WF_PROXY_RESP_VIA), "HTTP/1.1 200 OK\r\n"
                                                       "Transfer-Encoding: chunked\r\n"
                                                       "Server: s\r\n"
                                                       "Via: 1.1 wafer\r\n"
                                                       "\r\n");
    CHECK_EQ_STR(resp_rewrite(raw, WF_PROXY_RESP_DECHUNK | WF_PROXY_RESP_CLOSE), "HTTP/1.1 200 OK\r\n"
                                                                                "Server: s\r\n"
                                                                                "Connection: close\r\n"
                                                                                "\r\n");
    CHECK_EQ_STR(resp_rewrite("HTTP/1.1 204 No Content\r\nDate: d\r\n\r\n", WF_PROXY_RESP_KEEPALIVE10),
                 "HTTP/1.1 204 No Content\r\nDate: d\r\nConnection: keep-alive\r\n\r\n");
}

TEST(error_response_names_status_and_request_id)
{
    char out[512];
    int n = wf_proxy_error_response(502, WF_STR("abc123"), out, sizeof(out));
    CHECK(n > 0);
    out[n] = 0;
    CHECK_EQ_STR(out, "HTTP/1.1 502 Bad Gateway\r\n"
                      "Content-Type: text/plain\r\n"
                      "Content-Length: 35\r\n"
                      "Connection: close\r\n"
                      "\r\n"
                      "502 Bad Gateway\nrequest id: abc123\n");
    CHECK_EQ_INT(wf_proxy_error_response(502, WF_STR("abc123"), out, 40), -WF_ELIMIT);
}

TEST(request_ids)
{
    uint64_t st = 0;
    char a[33], b[33];
    CHECK_EQ_INT(wf_request_id_generate(&st, a), 32);
    CHECK_EQ_INT(wf_request_id_generate(&st, b), 32);
    CHECK_EQ_INT(strlen(a), 32);
    CHECK(strcmp(a, b) != 0);
    CHECK(wf_request_id_valid(wf_str_c(a)));
    for (int i = 0; i < 32; i++)
        CHECK((a[i] >= '0' && a[i] <= '9') || (a[i] >= 'a' && a[i] <= 'f'));
    /* the same seed gives the same sequence; different seeds differ */
    uint64_t s1 = 42, s2 = 42, s3 = 43;
    char x[33], y[33], z[33];
    wf_request_id_generate(&s1, x);
    wf_request_id_generate(&s2, y);
    wf_request_id_generate(&s3, z);
    CHECK_EQ_STR(x, y);
    CHECK(strcmp(x, z) != 0);
    CHECK(wf_request_id_valid(WF_STR("abc-DEF_1.2:3")));
    CHECK(!wf_request_id_valid(WF_STR("")));
    CHECK(!wf_request_id_valid(WF_STR("a b")));
    CHECK(!wf_request_id_valid(WF_STR("a\"b")));
    CHECK(!wf_request_id_valid(WF_STR("a\r\nX: y")));
    char long_id[WF_REQUEST_ID_MAX + 2];
    memset(long_id, 'a', sizeof(long_id));
    CHECK(wf_request_id_valid(wf_str(long_id, WF_REQUEST_ID_MAX)));
    CHECK(!wf_request_id_valid(wf_str(long_id, WF_REQUEST_ID_MAX + 1)));
}

TEST_MAIN()
