#include "test.h"
#include "wafer/http.h"
#include "http/scan.h"

static wf_http_limits_t lim;
static wf_http_header_t hdrs[128];

static int req(const char *s, wf_http_request_t *r)
{
    wf_http_limits_default(&lim);
    return wf_http_parse_request(s, strlen(s), &lim, r, hdrs);
}

TEST(request_simple)
{
    wf_http_request_t r;
    const char *s = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: example.com\r\nUser-Agent:  t \r\n\r\n";
    CHECK_EQ_INT(req(s, &r), (int)strlen(s));
    CHECK(wf_str_eq(r.method, WF_STR("GET")));
    CHECK(wf_str_eq(r.path, WF_STR("/a/b")));
    CHECK(wf_str_eq(r.query, WF_STR("x=1&y=2")));
    CHECK(wf_str_eq(r.host, WF_STR("example.com")));
    CHECK_EQ_INT(r.minor_version, 1);
    CHECK_EQ_INT(r.nheaders, 2);
    CHECK(wf_str_eq(r.headers[1].value, WF_STR("t")));
    CHECK(r.flags & WF_HTTP_F_KEEP_ALIVE);
    CHECK(r.flags & WF_HTTP_F_NO_BODY);
    for (size_t k = 0; k < strlen(s); k++)
        CHECK_EQ_INT(wf_http_parse_request(s, k, &lim, &r, hdrs), WF_HTTP_INCOMPLETE);
}

TEST(request_absolute_form)
{
    wf_http_request_t r;
    const char *s = "GET http://localhost:8080/tienda1/index.jsp?id=2 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n";
    CHECK_EQ_INT(req(s, &r), (int)strlen(s));
    CHECK(r.flags & WF_HTTP_F_ABSOLUTE_FORM);
    CHECK(wf_str_eq(r.host, WF_STR("localhost:8080")));
    CHECK(wf_str_eq(r.path, WF_STR("/tienda1/index.jsp")));
    CHECK(wf_str_eq(r.query, WF_STR("id=2")));
}

TEST(request_smuggling)
{
    wf_http_request_t r;
    CHECK_EQ_INT(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", &r),
                 WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_CL_AND_TE);
    CHECK_EQ_INT(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", &r),
                 WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_CONTENT_LENGTH_DUP);
    CHECK_EQ_INT(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &r), WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_TE_UNSUPPORTED);
    CHECK_EQ_INT(wf_http_err_status(r.error), 501);
    CHECK_EQ_INT(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", &r), WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_TE_NOT_CHUNKED);
    CHECK_EQ_INT(req("GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", &r), WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_OBS_FOLD);
    CHECK_EQ_INT(req("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", &r), WF_HTTP_ERROR);
    CHECK_EQ_INT(r.error, WF_HTTP_E_BARE_CR);
}

TEST(response_framing)
{
    wf_http_response_t r;
    wf_http_limits_default(&lim);
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    CHECK_EQ_INT(wf_http_parse_response(s, strlen(s), &lim, WF_STR("GET"), &r, hdrs), (int)strlen(s) - 5);
    CHECK_EQ_INT(r.status, 200);
    CHECK(wf_str_eq(r.reason, WF_STR("OK")));
    CHECK(r.flags & WF_HTTP_F_CONTENT_LENGTH);
    CHECK_EQ_INT(r.content_length, 5);
    CHECK(wf_http_parse_response(s, strlen(s), &lim, WF_STR("HEAD"), &r, hdrs) > 0);
    CHECK(r.flags & WF_HTTP_F_NO_BODY);
    s = "HTTP/1.1 200 \r\n\r\n";
    CHECK(wf_http_parse_response(s, strlen(s), &lim, WF_STR("GET"), &r, hdrs) > 0);
    CHECK(r.flags & WF_HTTP_F_UNTIL_CLOSE);
    CHECK(!(r.flags & WF_HTTP_F_KEEP_ALIVE));
}

TEST(chunked_decode)
{
    wf_http_limits_default(&lim);
    const char *s = "5;a=\"b\\\"c\"\r\nhello\r\n1 ; x\r\n!\r\n0\r\nT: v\r\n\r\nNEXT";
    size_t n = strlen(s);
    /* byte at a time and whole */
    for (int step = 1; step <= 2; step++) {
        wf_http_chunked_t c;
        wf_http_chunked_init(&c, &lim);
        char out[32];
        size_t on = 0, pos = 0;
        int rc = 0;
        while (pos < n && rc == 0) {
            size_t len = step == 1 ? 1 : n - pos, used;
            wf_str_t d;
            rc = wf_http_chunked_feed(&c, s + pos, len, &used, &d);
            memcpy(out + on, d.p, d.n);
            on += d.n;
            pos += used;
        }
        CHECK_EQ_INT(rc, 1);
        CHECK_EQ_INT(on, 6);
        CHECK(memcmp(out, "hello!", 6) == 0);
        CHECK_EQ_INT(pos, n - 4);
    }
}

TEST(chunked_errors)
{
    static const char *bad[] = { "0x5\r\n", "-5\r\n", "5 \r\n", "fffffffffffffffff\r\n", "5\r\nhelloX", "5;\r\n",
                                 "5;a=\r\n", "5\rx" };
    wf_http_limits_default(&lim);
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        wf_http_chunked_t c;
        wf_http_chunked_init(&c, &lim);
        size_t pos = 0, n = strlen(bad[i]), used;
        int rc = 0;
        wf_str_t d;
        while (pos < n && rc == 0) {
            rc = wf_http_chunked_feed(&c, bad[i] + pos, n - pos, &used, &d);
            pos += used;
        }
        if (rc != WF_HTTP_ERROR)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        CHECK_EQ_INT(rc, WF_HTTP_ERROR);
    }
}

TEST(helpers)
{
    wf_http_header_t h[2] = { { WF_STR("Connection"), WF_STR("keep-alive, Upgrade") }, { WF_STR("X"), WF_STR("y") } };
    CHECK(wf_http_header_has_token(h, 2, "connection", "upgrade"));
    CHECK(!wf_http_header_has_token(h, 2, "connection", "close"));
    CHECK(wf_http_header_find(h, 2, "x") == &h[1]);
    CHECK(wf_http_is_hop_by_hop(WF_STR("Transfer-Encoding")));
    CHECK(!wf_http_is_hop_by_hop(WF_STR("Content-Length")));
    CHECK_EQ_STR(wf_http_reason(404), "Not Found");
    CHECK_EQ_STR(wf_http_err_name(WF_HTTP_E_CL_AND_TE), "cl_and_te");
    CHECK_EQ_INT(wf_http_err_status(WF_HTTP_E_URI_TOO_LONG), 414);
}

/* The SIMD scanners and their scalar twins agree on random inputs. */
TEST(scan_simd_matches_scalar)
{
#if WF_HTTP_HAVE_SIMD
    static const unsigned char alphabet[] = { 'a', 'Z', '/', ' ', '\t', '\r', '\n', 0, 0x7f, 0x80, 0xff, 0x1f, 0x20,
                                              0x21, 0x7e, '%' };
    char buf[300];
    uint32_t x = 12345;
    for (int iter = 0; iter < 200000; iter++) {
        size_t n = 0;
        x = x * 1103515245u + 12345u;
        n = (x >> 8) % sizeof(buf);
        int density = (int)((x >> 20) % 64) + 1;
        for (size_t i = 0; i < n; i++) {
            x = x * 1103515245u + 12345u;
            unsigned r = x >> 16;
            buf[i] = (char)((r % density) ? 'a' + (r % 26) : alphabet[(r >> 6) % sizeof(alphabet)]);
        }
        size_t off = n ? (x >> 3) % (n + 1) : 0;
        CHECK(wf_http_scan_value_simd(buf + off, buf + n) == wf_http_scan_value_scalar(buf + off, buf + n));
        CHECK(wf_http_scan_target_simd(buf + off, buf + n) == wf_http_scan_target_scalar(buf + off, buf + n));
    }
    /* every single byte value at every position of a 40-byte run */
    for (int b = 0; b < 256; b++)
        for (int pos = 0; pos < 40; pos++) {
            memset(buf, 'a', 40);
            buf[pos] = (char)b;
            CHECK(wf_http_scan_value_simd(buf, buf + 40) == wf_http_scan_value_scalar(buf, buf + 40));
            CHECK(wf_http_scan_target_simd(buf, buf + 40) == wf_http_scan_target_scalar(buf, buf + 40));
        }
#else
    printf("scan_simd_matches_scalar: no SIMD path on this architecture\n");
#endif
}

TEST(err_table_complete)
{
    for (int e = 0; e < WF_HTTP_E__COUNT; e++) {
        CHECK(strcmp(wf_http_err_name((wf_http_err_t)e), "unknown") != 0);
        int st = wf_http_err_status((wf_http_err_t)e);
        CHECK(st == 200 || st == 400 || st == 413 || st == 414 || st == 417 || st == 431 || st == 501 ||
              st == 502 || st == 505);
        CHECK(strcmp(wf_http_reason(st), "Unknown") != 0);
    }
    CHECK_EQ_STR(wf_http_err_name(WF_HTTP_E__COUNT), "unknown");
    CHECK_EQ_INT(wf_http_err_status(WF_HTTP_E_TOO_MANY_HEADERS), 431);
    CHECK_EQ_INT(wf_http_err_status(WF_HTTP_E_BODY_TOO_LARGE), 413);
    CHECK_EQ_INT(wf_http_err_status(WF_HTTP_E_EXPECT), 417);
    CHECK_EQ_INT(wf_http_err_status(WF_HTTP_E_VERSION_UNSUPPORTED), 505);
}

TEST(limits_default)
{
    wf_http_limits_t l;
    memset(&l, 0xff, sizeof(l));
    wf_http_limits_default(&l);
    CHECK_EQ_INT(l.max_header_bytes, 16384);
    CHECK_EQ_INT(l.max_headers, 100);
    CHECK_EQ_INT(l.max_uri, 8192);
    CHECK(l.max_body_bytes == (1ull << 30));
    CHECK_EQ_INT(l.max_chunk_line, 4096);
    CHECK_EQ_INT(l.max_trailer_bytes, 16384);
    CHECK_EQ_INT(l.lenient, 0);
}

/* After the end of the body the decoder keeps answering 1 and consumes nothing;
 * after an error it keeps answering the error. */
TEST(chunked_sticky_states)
{
    wf_http_limits_default(&lim);
    wf_http_chunked_t c;
    size_t used;
    wf_str_t d;
    wf_http_chunked_init(&c, &lim);
    CHECK_EQ_INT(wf_http_chunked_feed(&c, "0\r\n\r\nX", 6, &used, &d), 1);
    CHECK_EQ_INT(used, 5);
    CHECK_EQ_INT(wf_http_chunked_feed(&c, "X", 1, &used, &d), 1);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(d.n, 0);
    wf_http_chunked_init(&c, &lim);
    CHECK_EQ_INT(wf_http_chunked_feed(&c, "z", 1, &used, &d), WF_HTTP_ERROR);
    CHECK_EQ_INT(c.error, WF_HTTP_E_CHUNK);
    CHECK_EQ_INT(wf_http_chunked_feed(&c, "0\r\n\r\n", 5, &used, &d), WF_HTTP_ERROR);
    /* an empty feed is no progress, not an error */
    wf_http_chunked_init(&c, &lim);
    CHECK_EQ_INT(wf_http_chunked_feed(&c, "", 0, &used, &d), 0);
    CHECK_EQ_INT(used, 0);
}

/* One data run per call: a caller loops until the input is used. */
TEST(chunked_one_run_per_call)
{
    wf_http_limits_default(&lim);
    wf_http_chunked_t c;
    wf_http_chunked_init(&c, &lim);
    const char *s = "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    size_t used;
    wf_str_t d;
    CHECK_EQ_INT(wf_http_chunked_feed(&c, s, strlen(s), &used, &d), 0);
    CHECK_EQ_INT(used, 6);
    CHECK(d.n == 3 && memcmp(d.p, "abc", 3) == 0);
    CHECK_EQ_INT(c.total, 3);
}

TEST(hop_by_hop)
{
    static const char *hop[] = { "Connection", "keep-alive", "Proxy-Connection", "TE", "Trailer",
                                 "transfer-encoding", "UPGRADE", "Proxy-Authenticate", "Proxy-Authorization" };
    for (size_t i = 0; i < WF_ARRAY_LEN(hop); i++)
        CHECK(wf_http_is_hop_by_hop(wf_str_c(hop[i])));
    CHECK(!wf_http_is_hop_by_hop(WF_STR("Host")));
    CHECK(!wf_http_is_hop_by_hop(WF_STR("Trailers")));
    CHECK(!wf_http_is_hop_by_hop(WF_STR("T")));
}

/* Requests built at random from good and bad pieces parse the same with
 * both scanners, and every prefix gives INCOMPLETE or the same outcome. */
TEST(random_requests_simd_scalar_prefixes)
{
#if WF_HTTP_HAVE_SIMD
    static const char *const lines[] = {
        "Host: example.com\r\n", "X-Long: 0123456789abcdef0123456789abcdef\r\n", "Content-Length: 3\r\n",
        "Transfer-Encoding: chunked\r\n", "X-Bad: a\x01b\r\n", "X-Del: \x7f\r\n", "X-Tab: a\tb\r\n",
        "X-Obs: \xe9\xff\r\n", " folded\r\n", "Bad Name: x\r\n", "X: a\rb\r\n", "X: lf\n",
        "Connection: close\r\n", "Expect: 100-continue\r\n",
    };
    static const char *const starts[] = { "GET / HTTP/1.1\r\n", "POST /a/b?c=d&e=f HTTP/1.1\r\n",
                                          "GET http://h:1/x?y HTTP/1.1\r\n", "GET /\x80 HTTP/1.1\r\n",
                                          "GET /0123456789abcdef0123456789\x7f HTTP/1.0\r\n" };
    char buf[1024];
    wf_http_header_t h1[128], h2[128];
    uint32_t x = 99;
    wf_http_limits_default(&lim);
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 0;
        x = x * 1103515245u + 12345u;
        const char *st = starts[(x >> 8) % WF_ARRAY_LEN(starts)];
        memcpy(buf, st, strlen(st));
        n += strlen(st);
        int k = (int)((x >> 16) % 6);
        for (int i = 0; i < k; i++) {
            x = x * 1103515245u + 12345u;
            const char *l = lines[(x >> 8) % WF_ARRAY_LEN(lines)];
            memcpy(buf + n, l, strlen(l));
            n += strlen(l);
        }
        memcpy(buf + n, "\r\n", 2);
        n += 2;
        wf_http_request_t a, b;
        wf_http_scan_use_simd(true);
        int ra = wf_http_parse_request(buf, n, &lim, &a, h1);
        wf_http_scan_use_simd(false);
        int rb = wf_http_parse_request(buf, n, &lim, &b, h2);
        wf_http_scan_use_simd(true);
        CHECK_EQ_INT(ra, rb);
        if (ra == WF_HTTP_ERROR)
            CHECK_EQ_INT(a.error, b.error);
        else if (ra > 0)
            CHECK(a.flags == b.flags && a.nheaders == b.nheaders);
        for (size_t p = 0; p < n; p++) {
            int rp = wf_http_parse_request(buf, p, &lim, &b, h2);
            CHECK(rp == WF_HTTP_INCOMPLETE || (rp == WF_HTTP_ERROR && ra == WF_HTTP_ERROR && b.error == a.error));
        }
    }
#endif
}

TEST_MAIN()
