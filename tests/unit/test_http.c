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

TEST_MAIN()
