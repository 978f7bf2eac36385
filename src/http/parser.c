/*
 * HTTP/1.1 request and response header parsing (RFC 9110 / RFC 9112).
 *
 * The block is scanned once, front to back, and every decision is taken at
 * the first byte that settles it: a prefix of a message therefore yields
 * either WF_HTTP_INCOMPLETE or the very error the whole message yields. The
 * framing rules that need the whole field section (Content-Length against
 * Transfer-Encoding, Host, Expect) are applied at the end in a fixed order,
 * so the error does not depend on the order of the fields.
 */
#include "wafer/http.h"
#include "http/scan.h"

#include <limits.h>

static const char *const err_names[WF_HTTP_E__COUNT] = {
    [WF_HTTP_OK] = "ok",
    [WF_HTTP_E_METHOD] = "method",
    [WF_HTTP_E_TARGET] = "target",
    [WF_HTTP_E_VERSION] = "version",
    [WF_HTTP_E_REQUEST_LINE] = "request_line",
    [WF_HTTP_E_STATUS_LINE] = "status_line",
    [WF_HTTP_E_HEADER_NAME] = "header_name",
    [WF_HTTP_E_HEADER_VALUE] = "header_value",
    [WF_HTTP_E_BARE_CR] = "bare_cr",
    [WF_HTTP_E_BARE_LF] = "bare_lf",
    [WF_HTTP_E_OBS_FOLD] = "obs_fold",
    [WF_HTTP_E_SPACE_BEFORE_COLON] = "space_before_colon",
    [WF_HTTP_E_URI_TOO_LONG] = "uri_too_long",
    [WF_HTTP_E_HEADERS_TOO_LARGE] = "headers_too_large",
    [WF_HTTP_E_TOO_MANY_HEADERS] = "too_many_headers",
    [WF_HTTP_E_CL_AND_TE] = "cl_and_te",
    [WF_HTTP_E_CONTENT_LENGTH] = "content_length",
    [WF_HTTP_E_CONTENT_LENGTH_DUP] = "content_length_dup",
    [WF_HTTP_E_TE_NOT_CHUNKED] = "te_not_chunked",
    [WF_HTTP_E_TE_UNSUPPORTED] = "te_unsupported",
    [WF_HTTP_E_TE_HTTP10] = "te_http10",
    [WF_HTTP_E_HOST_MISSING] = "host_missing",
    [WF_HTTP_E_HOST_DUP] = "host_dup",
    [WF_HTTP_E_HOST_INVALID] = "host_invalid",
    [WF_HTTP_E_EXPECT] = "expect",
    [WF_HTTP_E_BODY_TOO_LARGE] = "body_too_large",
    [WF_HTTP_E_CHUNK] = "chunk",
    [WF_HTTP_E_CHUNK_EXT_TOO_LONG] = "chunk_ext_too_long",
    [WF_HTTP_E_TRAILER] = "trailer",
    [WF_HTTP_E_VERSION_UNSUPPORTED] = "version_unsupported",
};

const char *wf_http_err_name(wf_http_err_t e)
{
    if ((unsigned)e >= WF_HTTP_E__COUNT || !err_names[e])
        return "unknown";
    return err_names[e];
}

int wf_http_err_status(wf_http_err_t e)
{
    switch (e) {
    case WF_HTTP_OK:
        return 200;
    case WF_HTTP_E_STATUS_LINE:
        return 502;
    case WF_HTTP_E_URI_TOO_LONG:
        return 414;
    case WF_HTTP_E_HEADERS_TOO_LARGE:
    case WF_HTTP_E_TOO_MANY_HEADERS:
        return 431;
    case WF_HTTP_E_TE_UNSUPPORTED:
        return 501;
    case WF_HTTP_E_EXPECT:
        return 417;
    case WF_HTTP_E_BODY_TOO_LARGE:
        return 413;
    case WF_HTTP_E_VERSION_UNSUPPORTED:
        return 505;
    default:
        return 400;
    }
}

void wf_http_limits_default(wf_http_limits_t *lim)
{
    lim->max_header_bytes = 16 * 1024;
    lim->max_headers = 100;
    lim->max_uri = 8 * 1024;
    lim->max_body_bytes = 1ull << 30;
    lim->max_chunk_line = 4 * 1024;
    lim->max_trailer_bytes = 16 * 1024;
    lim->lenient = 0;
}

/* tchar of RFC 9110 5.6.2 */
static const unsigned char tchar_tab[256] = {
    ['!'] = 1, ['#'] = 1, ['$'] = 1, ['%'] = 1, ['&'] = 1, ['\''] = 1, ['*'] = 1, ['+'] = 1, ['-'] = 1,
    ['.'] = 1, ['^'] = 1, ['_'] = 1, ['`'] = 1, ['|'] = 1, ['~'] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_tchar(unsigned char c) { return tchar_tab[c]; }
static inline bool is_ows(char c) { return c == ' ' || c == '\t'; }
static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }
static inline unsigned char lower(unsigned char c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Case-insensitive comparison of a slice with a lower-case literal. */
static bool eq_lit(wf_str_t s, const char *lit, size_t n)
{
    if (s.n != n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)s.p[i]) != (unsigned char)lit[i])
            return false;
    return true;
}
#define EQ_LIT(s, lit) eq_lit((s), (lit), sizeof(lit) - 1)

/* Next element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed;
 * empty elements are returned too (callers decide). *done starts false. */
static bool list_next(wf_str_t *rest, wf_str_t *elem, bool *done)
{
    if (*done)
        return false;
    const char *p = rest->p, *end = rest->p + rest->n;
    const char *comma = rest->n ? memchr(p, ',', rest->n) : NULL;
    const char *a = p, *b = comma ? comma : end;
    while (a < b && is_ows(*a))
        a++;
    while (b > a && is_ows(b[-1]))
        b--;
    *elem = wf_str(a, (size_t)(b - a));
    if (comma)
        *rest = wf_str(comma + 1, (size_t)(end - comma - 1));
    else
        *done = true;
    return true;
}

/* ---- Host / authority validation (RFC 3986 3.2.2, RFC 9110 7.2) ---- */

/* unreserved / sub-delims of RFC 3986 (reg-name characters besides pct-encoded) */
static const unsigned char regname_tab[256] = {
    ['-'] = 1, ['.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1,
    [')'] = 1, ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
    ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
    ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1,
    ['J'] = 1, ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1,
    ['S'] = 1, ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1,
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1,
};

static inline bool is_unreserved_or_subdelim(unsigned char c) { return regname_tab[c]; }

static bool is_hex(unsigned char c)
{
    return is_digit((char)c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* uri-host [ ":" port ]; port required if need_port. Empty is invalid here. */
static bool authority_valid(wf_str_t a, bool need_port)
{
    const char *p = a.p, *end = a.p + a.n;
    if (p == end)
        return false;
    if (*p == '[') {
        /* IP-literal: IPv6address (hex, ':', '.' for an embedded IPv4); IPvFuture is refused */
        p++;
        const char *h = p;
        while (p < end && (is_hex((unsigned char)*p) || *p == ':' || *p == '.'))
            p++;
        if (p == end || *p != ']' || p == h || memchr(h, ':', (size_t)(p - h)) == NULL)
            return false;
        p++;
    } else {
        const char *h = p;
        while (p < end && *p != ':') {
            unsigned char c = (unsigned char)*p;
            if (c == '%') {
                if (end - p < 3 || !is_hex((unsigned char)p[1]) || !is_hex((unsigned char)p[2]))
                    return false;
                p += 3;
                continue;
            }
            if (!is_unreserved_or_subdelim(c))
                return false;
            p++;
        }
        if (p == h)
            return false;
    }
    if (p == end)
        return !need_port;
    if (*p != ':')
        return false;
    p++;
    if (need_port && p == end)
        return false;
    if (end - p > 5)
        return false;
    for (; p < end; p++)
        if (!is_digit(*p))
            return false;
    return true;
}

/* ---- field semantics, collected while parsing, judged at the end ---- */

typedef struct {
    unsigned cl_fields;
    bool cl_bad, cl_diff;
    uint64_t cl;
    bool te_present, te_bad, te_chunked_seen, te_last_chunked, te_other;
    unsigned host_fields;
    wf_str_t host;
    bool expect_continue, expect_bad;
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool has_upgrade;
} fields_t;

static bool parse_u64(wf_str_t s, uint64_t *out)
{
    if (s.n == 0)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < s.n; i++) {
        if (!is_digit(s.p[i]))
            return false;
        unsigned d = (unsigned)(s.p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static void field_content_length(fields_t *f, wf_str_t v)
{
    /* RFC 9110 8.6: a list of identical values is accepted as that value. */
    wf_str_t rest = v, e;
    bool done = false;
    while (list_next(&rest, &e, &done)) {
        uint64_t n;
        if (!parse_u64(e, &n)) {
            f->cl_bad = true;
            return;
        }
        if (f->cl_fields++ && n != f->cl)
            f->cl_diff = true;
        f->cl = n;
    }
}

static void field_transfer_encoding(fields_t *f, wf_str_t v)
{
    f->te_present = true;
    wf_str_t rest = v, e;
    bool done = false;
    while (list_next(&rest, &e, &done)) {
        if (e.n == 0)
            continue;
        /* transfer-coding = token *( OWS ";" OWS transfer-parameter ) */
        size_t i = 0;
        while (i < e.n && is_tchar((unsigned char)e.p[i]))
            i++;
        wf_str_t name = wf_str(e.p, i);
        if (i == 0) {
            f->te_bad = true;
            return;
        }
        bool params = false;
        while (i < e.n) {
            while (i < e.n && is_ows(e.p[i]))
                i++;
            if (i == e.n || e.p[i] != ';') {
                f->te_bad = true;
                return;
            }
            i++;
            while (i < e.n && is_ows(e.p[i]))
                i++;
            size_t k = i;
            while (i < e.n && is_tchar((unsigned char)e.p[i]))
                i++;
            if (i == k || i == e.n || e.p[i] != '=') {
                f->te_bad = true;
                return;
            }
            i++;
            k = i;
            /* value: token only; quoted parameter values are refused (no coding we support has any) */
            while (i < e.n && is_tchar((unsigned char)e.p[i]))
                i++;
            if (i == k) {
                f->te_bad = true;
                return;
            }
            params = true;
        }
        if (EQ_LIT(name, "chunked")) {
            if (f->te_chunked_seen || params) {
                f->te_bad = true;
                return;
            }
            f->te_chunked_seen = true;
            f->te_last_chunked = true;
        } else {
            f->te_other = true;
            f->te_last_chunked = false;
        }
    }
}

static void field_tokens(fields_t *f, wf_str_t v, int which)
{
    wf_str_t rest = v, e;
    bool done = false;
    while (list_next(&rest, &e, &done)) {
        if (which == 0) { /* Connection */
            if (EQ_LIT(e, "close"))
                f->conn_close = true;
            else if (EQ_LIT(e, "keep-alive"))
                f->conn_keep_alive = true;
            else if (EQ_LIT(e, "upgrade"))
                f->conn_upgrade = true;
        } else { /* Expect */
            if (e.n == 0)
                continue;
            if (EQ_LIT(e, "100-continue"))
                f->expect_continue = true;
            else
                f->expect_bad = true;
        }
    }
}

static void field_note(fields_t *f, wf_str_t name, wf_str_t value)
{
    switch (name.n) {
    case 4:
        if (EQ_LIT(name, "host")) {
            if (f->host_fields++ == 0)
                f->host = value;
        }
        break;
    case 6:
        if (EQ_LIT(name, "expect"))
            field_tokens(f, value, 1);
        break;
    case 7:
        if (EQ_LIT(name, "upgrade"))
            f->has_upgrade = true;
        break;
    case 10:
        if (EQ_LIT(name, "connection"))
            field_tokens(f, value, 0);
        break;
    case 14:
        if (EQ_LIT(name, "content-length"))
            field_content_length(f, value);
        break;
    case 17:
        if (EQ_LIT(name, "transfer-encoding"))
            field_transfer_encoding(f, value);
        break;
    }
}

/* ---- the scanner shared by requests and responses ---- */

typedef struct {
    const char *buf, *end; /* end = buf + min(len, max block) */
    bool truncated;        /* the input goes on past end: running out means too large */
    uint32_t lenient;
    wf_http_err_t err;
} scan_t;

static int fail(scan_t *s, wf_http_err_t e)
{
    s->err = e;
    return WF_HTTP_ERROR;
}

static int more(scan_t *s)
{
    if (s->truncated)
        return fail(s, WF_HTTP_E_HEADERS_TOO_LARGE);
    return WF_HTTP_INCOMPLETE;
}

/* *pp at CR or LF: steps over the line end. */
static int eol(scan_t *s, const char **pp)
{
    const char *p = *pp;
    if (*p == '\r') {
        if (p + 1 >= s->end)
            return more(s);
        if (p[1] != '\n')
            return fail(s, WF_HTTP_E_BARE_CR);
        *pp = p + 2;
        return 0;
    }
    if (!(s->lenient & WF_HTTP_LENIENT_BARE_LF))
        return fail(s, WF_HTTP_E_BARE_LF);
    *pp = p + 1;
    return 0;
}

/* "HTTP/" DIGIT "." DIGIT, checked byte by byte so that a prefix fails as soon as it can. */
static int parse_version(scan_t *s, const char **pp, int *minor)
{
    static const char pat[] = "HTTP/d.d";
    const char *p = *pp;
    for (int i = 0; i < 8; i++) {
        if (p + i >= s->end)
            return more(s);
        if (pat[i] == 'd' ? !is_digit(p[i]) : p[i] != pat[i])
            return fail(s, WF_HTTP_E_VERSION);
    }
    if (p[5] != '1' || p[7] > '1')
        return fail(s, WF_HTTP_E_VERSION_UNSUPPORTED);
    *minor = p[7] - '0';
    *pp = p + 8;
    return 0;
}

/* Field lines up to and including the empty line. */
static int parse_fields(scan_t *s, const char **pp, size_t max_headers, wf_http_header_t *hdrs, size_t *nh,
                        fields_t *f)
{
    const char *p = *pp, *end = s->end;
    size_t n = 0;
    int rc;
    for (;;) {
        if (p >= end)
            return more(s);
        char c = *p;
        if (c == '\r' || c == '\n') {
            if ((rc = eol(s, &p)) != 0)
                return rc;
            break;
        }
        if (is_ows(c))
            return fail(s, WF_HTTP_E_OBS_FOLD);
        if (n == max_headers)
            return fail(s, WF_HTTP_E_TOO_MANY_HEADERS);
        const char *n0 = p;
        while (end - p >= 4 && is_tchar((unsigned char)p[0]) && is_tchar((unsigned char)p[1]) &&
               is_tchar((unsigned char)p[2]) && is_tchar((unsigned char)p[3]))
            p += 4;
        while (p < end && is_tchar((unsigned char)*p))
            p++;
        if (p >= end)
            return more(s);
        if (*p != ':' || p == n0) {
            if (p > n0 && is_ows(*p))
                return fail(s, WF_HTTP_E_SPACE_BEFORE_COLON);
            if (*p == '\r') {
                if (p + 1 >= end)
                    return more(s);
                if (p[1] != '\n')
                    return fail(s, WF_HTTP_E_BARE_CR);
            }
            return fail(s, WF_HTTP_E_HEADER_NAME);
        }
        wf_str_t name = wf_str(n0, (size_t)(p - n0));
        p++;
        while (p < end && is_ows(*p))
            p++;
        const char *v0 = p;
        const char *q = wf_http_scan_value(p, end);
        if (q >= end)
            return more(s);
        if (*q != '\r' && *q != '\n')
            return fail(s, WF_HTTP_E_HEADER_VALUE);
        const char *v1 = q;
        while (v1 > v0 && is_ows(v1[-1]))
            v1--;
        if ((rc = eol(s, &q)) != 0)
            return rc;
        p = q;
        hdrs[n].name = name;
        hdrs[n].value = wf_str(v0, (size_t)(v1 - v0));
        field_note(f, name, hdrs[n].value);
        n++;
    }
    *nh = n;
    *pp = p;
    return 0;
}

static void scan_init(scan_t *s, const char *buf, size_t len, const wf_http_limits_t *lim)
{
    size_t max = lim->max_header_bytes;
    if (max > INT_MAX)
        max = INT_MAX;
    s->buf = buf;
    s->truncated = len >= max;
    s->end = buf + (len < max ? len : max);
    s->lenient = lim->lenient;
    s->err = WF_HTTP_OK;
}

/* Framing rules common to requests and responses; 0 or an error. */
static wf_http_err_t framing_check(const fields_t *f, int minor)
{
    if (f->te_present && minor == 0)
        return WF_HTTP_E_TE_HTTP10;
    if (f->te_present && (f->cl_fields || f->cl_bad))
        return WF_HTTP_E_CL_AND_TE;
    if (f->cl_bad)
        return WF_HTTP_E_CONTENT_LENGTH;
    if (f->cl_diff)
        return WF_HTTP_E_CONTENT_LENGTH_DUP;
    if (f->te_bad || (f->te_present && !f->te_chunked_seen && !f->te_other))
        return WF_HTTP_E_TE_NOT_CHUNKED;
    return WF_HTTP_OK;
}

static bool keep_alive(const fields_t *f, int minor)
{
    if (f->conn_close)
        return false;
    return minor >= 1 || f->conn_keep_alive;
}

/* ---- request-target (RFC 9112 3.2) ---- */

static wf_http_err_t parse_target(wf_http_request_t *req)
{
    wf_str_t t = req->target;
    const char *p = t.p, *end = t.p + t.n;
    if (memchr(p, '#', t.n))
        return WF_HTTP_E_TARGET;
    bool connect = req->method.n == 7 && memcmp(req->method.p, "CONNECT", 7) == 0;
    if (connect) {
        /* authority-form only; userinfo is not part of it */
        if (!authority_valid(t, true))
            return WF_HTTP_E_TARGET;
        req->flags |= WF_HTTP_F_AUTHORITY_FORM;
        req->host = t;
        req->path = wf_str(t.p, 0);
        req->query = wf_str(end, 0);
        return WF_HTTP_OK;
    }
    if (t.n == 1 && *p == '*') {
        if (!(req->method.n == 7 && memcmp(req->method.p, "OPTIONS", 7) == 0))
            return WF_HTTP_E_TARGET;
        req->flags |= WF_HTTP_F_ASTERISK_FORM;
        req->path = wf_str(p, 0);
        req->query = wf_str(end, 0);
        return WF_HTTP_OK;
    }
    if (*p != '/') {
        /* absolute-form: "http" or "https" "://" authority path-abempty [ "?" query ] */
        const char *colon = memchr(p, ':', t.n);
        if (!colon)
            return WF_HTTP_E_TARGET;
        wf_str_t scheme = wf_str(p, (size_t)(colon - p));
        if (!EQ_LIT(scheme, "http") && !EQ_LIT(scheme, "https"))
            return WF_HTTP_E_TARGET;
        if (end - colon < 3 || colon[1] != '/' || colon[2] != '/')
            return WF_HTTP_E_TARGET;
        const char *a = colon + 3, *ae = a;
        while (ae < end && *ae != '/' && *ae != '?')
            ae++;
        wf_str_t auth = wf_str(a, (size_t)(ae - a));
        /* userinfo ('@') is refused by authority_valid's character set */
        if (!authority_valid(auth, false))
            return WF_HTTP_E_TARGET;
        req->flags |= WF_HTTP_F_ABSOLUTE_FORM;
        req->host = auth;
        p = ae;
    }
    const char *qm = memchr(p, '?', (size_t)(end - p));
    if (qm) {
        req->path = wf_str(p, (size_t)(qm - p));
        req->query = wf_str(qm + 1, (size_t)(end - qm - 1));
    } else {
        req->path = wf_str(p, (size_t)(end - p));
        req->query = wf_str(end, 0);
    }
    return WF_HTTP_OK;
}

int wf_http_parse_request(const char *buf, size_t len, const wf_http_limits_t *lim, wf_http_request_t *req,
                          wf_http_header_t *hdrs)
{
    scan_t s;
    scan_init(&s, buf, len, lim);
    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    int rc;
#define FAIL(e) (req->error = (e), WF_HTTP_ERROR)
#define RET(x) do { int r_ = (x); if (r_ == WF_HTTP_ERROR) req->error = s.err; return r_; } while (0)

    const char *p = buf, *end = s.end;
    /* RFC 9112 2.2: empty lines before the request-line are ignored */
    for (;;) {
        if (p >= end)
            RET(more(&s));
        if (*p != '\r' && *p != '\n')
            break;
        if ((rc = eol(&s, &p)) != 0)
            RET(rc);
    }

    const char *m0 = p;
    while (p < end && is_tchar((unsigned char)*p))
        p++;
    if (p >= end)
        RET(more(&s));
    if (*p != ' ' || p == m0)
        return FAIL(WF_HTTP_E_METHOD);
    req->method = wf_str(m0, (size_t)(p - m0));
    p++;

    const char *t0 = p;
    size_t avail = (size_t)(end - t0);
    size_t cap = lim->max_uri < SIZE_MAX ? lim->max_uri + 1 : SIZE_MAX;
    const char *tend = t0 + (avail < cap ? avail : cap);
    const char *q = wf_http_scan_target(t0, tend);
    while (q < tend && (unsigned char)*q >= 0x80 && (lim->lenient & WF_HTTP_LENIENT_TARGET_8BIT))
        q = wf_http_scan_target(q + 1, tend);
    if (q >= tend) {
        if ((size_t)(tend - t0) > lim->max_uri)
            return FAIL(WF_HTTP_E_URI_TOO_LONG);
        RET(more(&s));
    }
    if (*q != ' ') {
        if (*q == '\r') {
            if (q + 1 >= end)
                RET(more(&s));
            return FAIL(q[1] == '\n' ? WF_HTTP_E_VERSION : WF_HTTP_E_BARE_CR);
        }
        if (*q == '\n')
            return FAIL(WF_HTTP_E_VERSION);
        return FAIL(WF_HTTP_E_TARGET);
    }
    if (q == t0)
        return FAIL(WF_HTTP_E_REQUEST_LINE);
    req->target = wf_str(t0, (size_t)(q - t0));
    wf_http_err_t te = parse_target(req);
    if (te != WF_HTTP_OK)
        return FAIL(te);
    p = q + 1;

    if ((rc = parse_version(&s, &p, &req->minor_version)) != 0)
        RET(rc);
    if (p >= end)
        RET(more(&s));
    if (*p != '\r' && *p != '\n')
        return FAIL(is_digit(*p) ? WF_HTTP_E_VERSION : WF_HTTP_E_REQUEST_LINE);
    if ((rc = eol(&s, &p)) != 0)
        RET(rc);

    fields_t f;
    memset(&f, 0, sizeof(f));
    if ((rc = parse_fields(&s, &p, lim->max_headers, hdrs, &req->nheaders, &f)) != 0)
        RET(rc);

    wf_http_err_t e = framing_check(&f, req->minor_version);
    if (e != WF_HTTP_OK)
        return FAIL(e);
    if (f.te_present && !f.te_last_chunked)
        return FAIL(WF_HTTP_E_TE_NOT_CHUNKED);
    if (f.te_present && f.te_other)
        return FAIL(WF_HTTP_E_TE_UNSUPPORTED);
    if (f.host_fields > 1)
        return FAIL(WF_HTTP_E_HOST_DUP);
    if (f.host_fields == 0 && req->minor_version == 1)
        return FAIL(WF_HTTP_E_HOST_MISSING);
    /* An empty Host is what a client sends when the target has no authority (RFC 9110 7.2). */
    if (f.host_fields == 1 && f.host.n > 0 && !authority_valid(f.host, false))
        return FAIL(WF_HTTP_E_HOST_INVALID);
    if (f.expect_bad)
        return FAIL(WF_HTTP_E_EXPECT);
    if (f.cl_fields && lim->max_body_bytes && f.cl > lim->max_body_bytes)
        return FAIL(WF_HTTP_E_BODY_TOO_LARGE);

    /* absolute-form: the target's authority wins over Host (RFC 9112 3.2.2) */
    if (!(req->flags & (WF_HTTP_F_ABSOLUTE_FORM | WF_HTTP_F_AUTHORITY_FORM)))
        req->host = f.host_fields ? f.host : wf_str(p, 0);
    if (f.te_present) {
        req->flags |= WF_HTTP_F_CHUNKED;
    } else if (f.cl_fields) {
        req->flags |= WF_HTTP_F_CONTENT_LENGTH;
        req->content_length = f.cl;
        if (f.cl == 0)
            req->flags |= WF_HTTP_F_NO_BODY;
    } else {
        req->flags |= WF_HTTP_F_NO_BODY;
    }
    if (keep_alive(&f, req->minor_version))
        req->flags |= WF_HTTP_F_KEEP_ALIVE;
    /* RFC 9110 10.1.1: 100-continue in an HTTP/1.0 request is ignored */
    if (f.expect_continue && req->minor_version == 1)
        req->flags |= WF_HTTP_F_EXPECT_CONTINUE;
    if (f.conn_upgrade && f.has_upgrade)
        req->flags |= WF_HTTP_F_UPGRADE;
    return (int)(p - buf);
#undef FAIL
#undef RET
}

int wf_http_parse_response(const char *buf, size_t len, const wf_http_limits_t *lim, wf_str_t request_method,
                           wf_http_response_t *res, wf_http_header_t *hdrs)
{
    scan_t s;
    scan_init(&s, buf, len, lim);
    memset(res, 0, sizeof(*res));
    res->headers = hdrs;
    int rc;
#define FAIL(e) (res->error = (e), WF_HTTP_ERROR)
#define RET(x) do { int r_ = (x); if (r_ == WF_HTTP_ERROR) res->error = s.err; return r_; } while (0)

    const char *p = buf, *end = s.end;
    if ((rc = parse_version(&s, &p, &res->minor_version)) != 0)
        RET(rc);
    if (p >= end)
        RET(more(&s));
    if (*p != ' ')
        return FAIL(WF_HTTP_E_STATUS_LINE);
    p++;
    int status = 0;
    for (int i = 0; i < 3; i++, p++) {
        if (p >= end)
            RET(more(&s));
        if (!is_digit(*p) || (i == 0 && *p == '0'))
            return FAIL(WF_HTTP_E_STATUS_LINE);
        status = status * 10 + (*p - '0');
    }
    res->status = status;
    if (p >= end)
        RET(more(&s));
    const char *r0 = p;
    if (*p == ' ') {
        /* reason-phrase = 1*( HTAB / SP / VCHAR / obs-text ), may be absent */
        r0 = ++p;
        p = wf_http_scan_value(p, end);
        if (p >= end)
            RET(more(&s));
    }
    /* a status line without the SP before an empty reason is accepted (common, harmless) */
    if (*p != '\r' && *p != '\n')
        return FAIL(WF_HTTP_E_STATUS_LINE);
    res->reason = wf_str(r0, (size_t)(p - r0));
    if ((rc = eol(&s, &p)) != 0)
        RET(rc);

    fields_t f;
    memset(&f, 0, sizeof(f));
    if ((rc = parse_fields(&s, &p, lim->max_headers, hdrs, &res->nheaders, &f)) != 0)
        RET(rc);

    wf_http_err_t e = framing_check(&f, res->minor_version);
    if (e != WF_HTTP_OK)
        return FAIL(e);
    if (f.cl_fields)
        res->content_length = f.cl;

    bool head = request_method.n == 4 && memcmp(request_method.p, "HEAD", 4) == 0;
    bool connect = request_method.n == 7 && memcmp(request_method.p, "CONNECT", 7) == 0;
    bool ka = keep_alive(&f, res->minor_version);
    /* RFC 9112 6.3, in order */
    if (status / 100 == 1 || status == 204 || status == 304 || head) {
        res->flags |= WF_HTTP_F_NO_BODY;
        if (f.cl_fields)
            res->flags |= WF_HTTP_F_CONTENT_LENGTH;
        if (status == 101 && f.has_upgrade) {
            res->flags |= WF_HTTP_F_UPGRADE;
            ka = false;
        }
    } else if (connect && status / 100 == 2) {
        res->flags |= WF_HTTP_F_NO_BODY | WF_HTTP_F_UPGRADE;
        ka = false;
    } else if (f.te_present) {
        if (f.te_last_chunked) {
            res->flags |= WF_HTTP_F_CHUNKED;
        } else {
            res->flags |= WF_HTTP_F_UNTIL_CLOSE;
            ka = false;
        }
    } else if (f.cl_fields) {
        res->flags |= WF_HTTP_F_CONTENT_LENGTH;
        if (f.cl == 0)
            res->flags |= WF_HTTP_F_NO_BODY;
    } else {
        res->flags |= WF_HTTP_F_UNTIL_CLOSE;
        ka = false;
    }
    if (ka)
        res->flags |= WF_HTTP_F_KEEP_ALIVE;
    return (int)(p - buf);
#undef FAIL
#undef RET
}

/* ---- helpers ---- */

const wf_http_header_t *wf_http_header_find(const wf_http_header_t *hdrs, size_t n, const char *name)
{
    wf_str_t key = wf_str_c(name);
    for (size_t i = 0; i < n; i++)
        if (wf_str_eq_nocase(hdrs[i].name, key))
            return &hdrs[i];
    return NULL;
}

bool wf_http_header_has_token(const wf_http_header_t *hdrs, size_t n, const char *name, const char *token)
{
    wf_str_t key = wf_str_c(name), tok = wf_str_c(token);
    for (size_t i = 0; i < n; i++) {
        if (!wf_str_eq_nocase(hdrs[i].name, key))
            continue;
        wf_str_t rest = hdrs[i].value, e;
        bool done = false;
        while (list_next(&rest, &e, &done))
            if (wf_str_eq_nocase(e, tok))
                return true;
    }
    return false;
}

bool wf_http_is_hop_by_hop(wf_str_t name)
{
    static const char *const hop[] = {
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(hop); i++)
        if (eq_lit(name, hop[i], strlen(hop[i])))
            return true;
    return false;
}

const char *wf_http_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}
