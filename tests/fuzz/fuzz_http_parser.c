/*
 * libFuzzer target for the HTTP parser: the request parser, the response
 * parser and the chunked decoder, whole and fed incrementally, with the SIMD
 * and the scalar scanners. The first input byte picks the mode, the
 * leniency flags and small or default limits; the rest is the message.
 *
 * Invariants checked (abort on violation): returned lengths lie within the
 * input; every slice lies within the header block; an error carries a valid
 * code; a prefix of the input yields INCOMPLETE or the outcome of the whole
 * input (same error, or same length once the block is complete); SIMD and
 * scalar paths agree; the chunked decoder gives the same data, length and
 * outcome whatever the split of its input.
 * Every parse reads a buffer of exactly the bytes given (malloc'ed to size),
 * so AddressSanitizer reports any read past the end.
 */
#include "wafer/http.h"
#include "http/scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #c, __LINE__);   \
            abort();                                                              \
        }                                                                         \
    } while (0)

static wf_http_header_t g_hdrs[128];

static char *dup_exact(const char *p, size_t n)
{
    char *b = malloc(n ? n : 1);
    if (n)
        memcpy(b, p, n);
    return b;
}

static void check_slice(wf_str_t s, const char *buf, size_t n)
{
    if (s.n == 0)
        return;
    CHECK(s.p >= buf && s.p + s.n <= buf + n);
}

typedef struct {
    int rc;
    wf_http_err_t err;
    uint32_t flags;
    uint64_t cl;
    size_t nh;
} result_t;

static result_t do_request(const char *data, size_t n, const wf_http_limits_t *lim)
{
    char *buf = dup_exact(data, n);
    wf_http_request_t req;
    result_t r = { 0 };
    r.rc = wf_http_parse_request(buf, n, lim, &req, g_hdrs);
    CHECK(r.rc == WF_HTTP_ERROR || r.rc == WF_HTTP_INCOMPLETE || (r.rc > 0 && (size_t)r.rc <= n));
    if (r.rc == WF_HTTP_ERROR) {
        CHECK(req.error > WF_HTTP_OK && req.error < WF_HTTP_E__COUNT);
        CHECK(wf_http_err_status(req.error) >= 400);
        CHECK(strcmp(wf_http_err_name(req.error), "unknown") != 0);
        r.err = req.error;
    } else if (r.rc > 0) {
        size_t m = (size_t)r.rc;
        CHECK(m <= lim->max_header_bytes);
        CHECK(req.nheaders <= lim->max_headers);
        CHECK(req.target.n <= lim->max_uri);
        check_slice(req.method, buf, m);
        check_slice(req.target, buf, m);
        check_slice(req.path, buf, m);
        check_slice(req.query, buf, m);
        check_slice(req.host, buf, m);
        CHECK(req.method.n > 0 && req.target.n > 0);
        for (size_t i = 0; i < req.nheaders; i++) {
            check_slice(req.headers[i].name, buf, m);
            check_slice(req.headers[i].value, buf, m);
            CHECK(req.headers[i].name.n > 0);
        }
        CHECK(!((req.flags & WF_HTTP_F_CHUNKED) && (req.flags & WF_HTTP_F_CONTENT_LENGTH)));
        if (lim->max_body_bytes && (req.flags & WF_HTTP_F_CONTENT_LENGTH))
            CHECK(req.content_length <= lim->max_body_bytes);
        r.flags = req.flags;
        r.cl = req.content_length;
        r.nh = req.nheaders;
    }
    free(buf);
    return r;
}

static result_t do_response(const char *data, size_t n, const wf_http_limits_t *lim, wf_str_t method)
{
    char *buf = dup_exact(data, n);
    wf_http_response_t res;
    result_t r = { 0 };
    r.rc = wf_http_parse_response(buf, n, lim, method, &res, g_hdrs);
    CHECK(r.rc == WF_HTTP_ERROR || r.rc == WF_HTTP_INCOMPLETE || (r.rc > 0 && (size_t)r.rc <= n));
    if (r.rc == WF_HTTP_ERROR) {
        CHECK(res.error > WF_HTTP_OK && res.error < WF_HTTP_E__COUNT);
        r.err = res.error;
    } else if (r.rc > 0) {
        size_t m = (size_t)r.rc;
        CHECK(res.status >= 100 && res.status <= 999);
        check_slice(res.reason, buf, m);
        CHECK(res.nheaders <= lim->max_headers);
        for (size_t i = 0; i < res.nheaders; i++) {
            check_slice(res.headers[i].name, buf, m);
            check_slice(res.headers[i].value, buf, m);
        }
        r.flags = res.flags;
        r.cl = res.content_length;
        r.nh = res.nheaders;
    }
    free(buf);
    return r;
}

static bool same(result_t a, result_t b)
{
    return a.rc == b.rc && a.err == b.err && a.flags == b.flags && a.cl == b.cl && a.nh == b.nh;
}

/* A prefix of k bytes against the whole input's result. */
static void check_prefix(result_t p, result_t full, size_t k)
{
    if (p.rc == WF_HTTP_INCOMPLETE) {
        CHECK(!(full.rc > 0 && (size_t)full.rc <= k));
        return;
    }
    CHECK(same(p, full));
}

/* Decodes a chunked body with pieces of the given sizes (0 = all at once). */
typedef struct {
    int rc;
    wf_http_err_t err;
    size_t consumed;
    uint64_t total;
    uint32_t hash;
    size_t dlen;
} chunk_result_t;

static chunk_result_t do_chunked(const char *data, size_t n, const wf_http_limits_t *lim, size_t piece)
{
    wf_http_chunked_t c;
    wf_http_chunked_init(&c, lim);
    chunk_result_t r = { 0 };
    r.hash = 2166136261u;
    size_t off = 0;
    while (off < n) {
        size_t len = piece ? (n - off < piece ? n - off : piece) : n - off;
        char *buf = dup_exact(data + off, len);
        size_t used = 0;
        wf_str_t d;
        int rc = wf_http_chunked_feed(&c, buf, len, &used, &d);
        CHECK(used <= len);
        CHECK(rc == 0 || rc == 1 || rc == WF_HTTP_ERROR);
        if (d.n) {
            CHECK(d.p >= buf && d.p + d.n <= buf + used);
            for (size_t i = 0; i < d.n; i++)
                r.hash = (r.hash ^ (unsigned char)d.p[i]) * 16777619u;
            r.dlen += d.n;
        }
        free(buf);
        off += used;
        if (rc != 0) {
            r.rc = rc;
            if (rc == WF_HTTP_ERROR) {
                CHECK(c.error > WF_HTTP_OK && c.error < WF_HTTP_E__COUNT);
                r.err = c.error;
                /* an error is sticky */
                size_t u2;
                wf_str_t d2;
                CHECK(wf_http_chunked_feed(&c, data, 0, &u2, &d2) == WF_HTTP_ERROR);
            } else {
                CHECK(c.total == r.dlen);
                if (lim->max_body_bytes)
                    CHECK(c.total <= lim->max_body_bytes);
            }
            break;
        }
        CHECK(used > 0 || len == 0);
    }
    r.consumed = off;
    r.total = c.total;
    return r;
}

static void check_chunked(const char *data, size_t n, const wf_http_limits_t *lim)
{
    chunk_result_t whole = do_chunked(data, n, lim, 0);
    size_t pieces[] = { 1, 3, 7, 64 };
    for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
        chunk_result_t r = do_chunked(data, n, lim, pieces[i]);
        CHECK(r.rc == whole.rc && r.err == whole.err && r.consumed == whole.consumed && r.hash == whole.hash &&
              r.dlen == whole.dlen);
    }
}

/* Prefix lengths to try: all for short inputs, a spread for long ones. */
static size_t prefix_step(size_t n)
{
    return n <= 300 ? 1 : n / 97 + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *msg = (const char *)data + 1;
    size_t n = size - 1;

    wf_http_limits_t lim;
    wf_http_limits_default(&lim);
    if (sel & 0x04)
        lim.lenient |= WF_HTTP_LENIENT_BARE_LF;
    if (sel & 0x08)
        lim.lenient |= WF_HTTP_LENIENT_TARGET_8BIT;
    if (sel & 0x10) {
        lim.max_header_bytes = 96;
        lim.max_headers = 4;
        lim.max_uri = 24;
        lim.max_body_bytes = 40;
        lim.max_chunk_line = 12;
        lim.max_trailer_bytes = 20;
    }
    static const wf_str_t methods[] = { { "GET", 3 }, { "HEAD", 4 }, { "CONNECT", 7 }, { "POST", 4 } };
    wf_str_t method = methods[(sel >> 5) & 3];
    int mode = sel & 3;

    if (mode == 0 || mode == 3) {
        wf_http_scan_use_simd(true);
        result_t full = do_request(msg, n, &lim);
        wf_http_scan_use_simd(false);
        CHECK(same(do_request(msg, n, &lim), full));
        wf_http_scan_use_simd(true);
        for (size_t k = 0; k < n; k += prefix_step(n))
            check_prefix(do_request(msg, k, &lim), full, k);
        if (full.rc > 0 && (full.flags & WF_HTTP_F_CHUNKED))
            check_chunked(msg + full.rc, n - (size_t)full.rc, &lim);
    } else if (mode == 1) {
        wf_http_scan_use_simd(true);
        result_t full = do_response(msg, n, &lim, method);
        wf_http_scan_use_simd(false);
        CHECK(same(do_response(msg, n, &lim, method), full));
        wf_http_scan_use_simd(true);
        for (size_t k = 0; k < n; k += prefix_step(n))
            check_prefix(do_response(msg, k, &lim, method), full, k);
        if (full.rc > 0 && (full.flags & WF_HTTP_F_CHUNKED))
            check_chunked(msg + full.rc, n - (size_t)full.rc, &lim);
    } else {
        check_chunked(msg, n, &lim);
    }

#if WF_HTTP_HAVE_SIMD
    /* the scanners' twins agree on arbitrary bytes, at every start offset below 16 */
    for (size_t off = 0; off < 16 && off <= n; off++) {
        CHECK(wf_http_scan_value_simd(msg + off, msg + n) == wf_http_scan_value_scalar(msg + off, msg + n));
        CHECK(wf_http_scan_target_simd(msg + off, msg + n) == wf_http_scan_target_scalar(msg + off, msg + n));
    }
#endif
    return 0;
}
