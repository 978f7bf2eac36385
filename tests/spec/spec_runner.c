/*
 * Runs the HTTP parser spec files (the .md files of tests/spec/http/): readable markdown
 * in the spirit of llhttp's test/request/ files.
 *
 * A case is a "### name" heading followed by two fenced blocks:
 *
 *   ```request [option=value ...]      (or ```response, ```chunked)
 *   GET / HTTP/1.1\r\n
 *   Host: a\r\n
 *   \r\n
 *   ```
 *   ```expect
 *   ok method=GET path=/ flags=keep-alive,no-body
 *   ```
 *
 * Input blocks: the line breaks of the markdown file are NOT part of the
 * input; every byte is written explicitly. Escapes: \r \n \t \0 \\ \"
 * \xHH (any byte), and \*N(text) for text repeated N times (text may hold
 * escapes but no ')'). A trailing space must be written \x20 to be seen.
 *
 * Options after the block kind: max_header_bytes= max_headers= max_uri=
 * max_body_bytes= max_chunk_line= max_trailer_bytes= (numbers; the rest of
 * the limits are the defaults), lenient=bare_lf,target_8bit, and for
 * responses method=HEAD (the request method the responses answer).
 *
 * The input is a stream: request and response blocks may hold several
 * messages one after another (pipelining); each message's body is read as
 * its framing says (Content-Length, chunked through wf_http_chunked_t, or
 * until the end of input). The expect block has one line per message:
 *
 *   ok key=value ...        the message parsed; each key given is compared
 *   error=NAME [status=N]   refused with wf_http_err_name() NAME
 *   incomplete              more bytes are needed
 *
 * Keys: request: method target path query host version flags cl headers len
 * body h0 h1 ... (hN = "name:value" of field N); response: version status
 * reason flags cl headers len body hN; chunked: body consumed total rest.
 * flags is the list of set flags in this order: content-length, chunked,
 * until-close, no-body, keep-alive, continue, upgrade, absolute, asterisk,
 * authority ("none" if no flag). Values with spaces are "quoted" (escapes
 * as above).
 *
 * Each case runs with the SIMD scanners and again with the scalar ones, and
 * the input always ends right before a PROT_NONE page, so that any read past
 * the end faults. Each case is also fed incrementally: every proper prefix
 * must give the same outcomes as the whole input up to a last one that is
 * either "incomplete" or the very outcome of the whole input (an error may
 * come early, never a different one); chunked bodies are also fed one byte
 * per call, each byte alone before the guard page.
 *
 * Usage: spec_runner FILE.md...   Prints failures and "N cases, N failed".
 */
#include "wafer/http.h"
#include "http/scan.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

/* The case being run, named if a read past the input hits the guard page. */
static char g_current[512];

static void on_fault(int sig)
{
    static const char msg[] = "spec_runner: memory fault (a read past the input?) in case ";
    ssize_t w = write(2, msg, sizeof(msg) - 1);
    w += write(2, g_current, strlen(g_current));
    w += write(2, "\n", 1);
    (void)w;
    _exit(128 + sig);
}

/* ---------- growable byte string ---------- */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf_t;

static void sb_put(sbuf_t *b, const void *d, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_printf(sbuf_t *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    sb_put(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* Escaped form of bytes, for keys and messages. */
static void sb_escaped(sbuf_t *b, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\r')
            sb_put(b, "\\r", 2);
        else if (c == '\n')
            sb_put(b, "\\n", 2);
        else if (c == '\t')
            sb_put(b, "\\t", 2);
        else if (c == '\\')
            sb_put(b, "\\\\", 2);
        else if (c == '"')
            sb_put(b, "\\\"", 2);
        else if (c < 0x20 || c >= 0x7f)
            sb_printf(b, "\\x%02x", c);
        else
            sb_put(b, &p[i], 1);
    }
}

/* ---------- escape decoding ---------- */

static int hexd(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = tolower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Decodes [p, end) into out; skips raw newlines if skip_nl. false on a bad escape. */
static bool unescape(const char *p, const char *end, sbuf_t *out, bool skip_nl)
{
    while (p < end) {
        char c = *p++;
        if (c == '\n' && skip_nl)
            continue;
        if (c != '\\') {
            sb_put(out, &c, 1);
            continue;
        }
        if (p >= end)
            return false;
        c = *p++;
        char o;
        switch (c) {
        case 'r': o = '\r'; break;
        case 'n': o = '\n'; break;
        case 't': o = '\t'; break;
        case '0': o = 0; break;
        case '\\': o = '\\'; break;
        case '"': o = '"'; break;
        case 'x':
            if (end - p < 2 || hexd(p[0]) < 0 || hexd(p[1]) < 0)
                return false;
            o = (char)(hexd(p[0]) * 16 + hexd(p[1]));
            p += 2;
            break;
        case '*': {
            char *e;
            long cnt = strtol(p, &e, 10);
            if (e == p || cnt < 0 || e >= end || *e != '(')
                return false;
            const char *close = memchr(e, ')', (size_t)(end - e));
            if (!close)
                return false;
            sbuf_t inner = { 0 };
            if (!unescape(e + 1, close, &inner, skip_nl)) {
                free(inner.p);
                return false;
            }
            for (long i = 0; i < cnt; i++)
                sb_put(out, inner.p ? inner.p : "", inner.n);
            free(inner.p);
            p = close + 1;
            continue;
        }
        default:
            return false;
        }
        sb_put(out, &o, 1);
    }
    return true;
}

/* ---------- guard-page placement ---------- */

typedef struct {
    char *base;
    size_t size; /* usable bytes before the guard page */
} guard_t;

static void guard_init(guard_t *g, size_t need)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    g->size = (need + pg) / pg * pg;
    g->base = mmap(NULL, g->size + pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->base == MAP_FAILED) {
        perror("mmap");
        exit(2);
    }
    if (mprotect(g->base + g->size, pg, PROT_NONE) != 0) {
        perror("mprotect");
        exit(2);
    }
}

static void guard_free(guard_t *g)
{
    munmap(g->base, g->size + (size_t)sysconf(_SC_PAGESIZE));
}

/* Copies n bytes so that they end right at the guard page. */
static const char *guard_place(guard_t *g, const char *d, size_t n)
{
    char *p = g->base + g->size - n;
    memcpy(p, d, n);
    return p;
}

/* ---------- outcomes ---------- */

enum { OC_OK, OC_ERROR, OC_INCOMPLETE };

typedef struct {
    int kind;
    wf_http_err_t err;
    sbuf_t kv;   /* "key=value\n" lines, body excluded */
    sbuf_t body; /* decoded body */
    bool until_close;
    long rest;   /* chunked: bytes after the body (varies with prefixes, so not in kv) */
} outcome_t;

typedef struct {
    outcome_t *v;
    size_t n;
} outcomes_t;

static outcome_t *oc_new(outcomes_t *o)
{
    o->v = realloc(o->v, (o->n + 1) * sizeof(*o->v));
    if (!o->v)
        abort();
    outcome_t *r = &o->v[o->n++];
    memset(r, 0, sizeof(*r));
    sb_put(&r->kv, "", 0);
    sb_put(&r->body, "", 0);
    return r;
}

static void oc_free(outcomes_t *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].kv.p);
        free(o->v[i].body.p);
    }
    free(o->v);
    o->v = NULL;
    o->n = 0;
}

static void kv_str(outcome_t *r, const char *key, wf_str_t v)
{
    sb_printf(&r->kv, "%s=", key);
    sb_escaped(&r->kv, v.p, v.n);
    sb_put(&r->kv, "\n", 1);
}

static void kv_num(outcome_t *r, const char *key, unsigned long long v)
{
    sb_printf(&r->kv, "%s=%llu\n", key, v);
}

static void kv_flags(outcome_t *r, uint32_t f)
{
    static const char *const names[] = { "content-length", "chunked", "until-close", "no-body", "keep-alive",
                                         "continue", "upgrade", "absolute", "asterisk", "authority" };
    sb_put(&r->kv, "flags=", 6);
    bool any = false;
    for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (f & (1u << i)) {
            if (any)
                sb_put(&r->kv, ",", 1);
            sb_put(&r->kv, names[i], strlen(names[i]));
            any = true;
        }
    if (!any)
        sb_put(&r->kv, "none", 4);
    sb_put(&r->kv, "\n", 1);
}

static void kv_headers(outcome_t *r, const wf_http_header_t *h, size_t n)
{
    kv_num(r, "headers", n);
    for (size_t i = 0; i < n; i++) {
        sb_printf(&r->kv, "h%zu=", i);
        sb_escaped(&r->kv, h[i].name.p, h[i].name.n);
        sb_put(&r->kv, ":", 1);
        sb_escaped(&r->kv, h[i].value.p, h[i].value.n);
        sb_put(&r->kv, "\n", 1);
    }
}

/* Slices must lie inside the input. */
static bool in_buf(wf_str_t s, const char *buf, size_t len)
{
    if (s.n == 0)
        return true;
    return s.p >= buf && s.p + s.n <= buf + len;
}

static int g_slice_errors;

/* Reads a chunked body at buf[*off..len) into r. Returns false if the stream ends here. */
static bool read_chunked(const wf_http_limits_t *lim, const char *buf, size_t len, size_t *off, outcome_t *r,
                         uint64_t *total)
{
    wf_http_chunked_t c;
    wf_http_chunked_init(&c, lim);
    for (;;) {
        size_t used;
        wf_str_t d;
        int rc = wf_http_chunked_feed(&c, buf + *off, len - *off, &used, &d);
        if (used > len - *off || !in_buf(d, buf + *off, used))
            g_slice_errors++;
        *off += used;
        if (rc == WF_HTTP_ERROR) {
            r->kind = OC_ERROR;
            r->err = c.error;
            return false;
        }
        sb_put(&r->body, d.p, d.n);
        if (total)
            *total = c.total;
        if (rc == 1)
            return true;
        if (*off == len || used == 0) {
            r->kind = OC_INCOMPLETE;
            return false;
        }
    }
}

/* Reads a body of n bytes. */
static bool read_fixed(const char *buf, size_t len, size_t *off, uint64_t n, outcome_t *r)
{
    if ((uint64_t)(len - *off) < n) {
        r->kind = OC_INCOMPLETE;
        return false;
    }
    sb_put(&r->body, buf + *off, (size_t)n);
    *off += (size_t)n;
    return true;
}

typedef struct {
    int mode; /* 0 request, 1 response, 2 chunked */
    wf_http_limits_t lim;
    wf_str_t method;
    char method_buf[32];
} spec_opts_t;

static void run_requests(const spec_opts_t *o, const char *buf, size_t len, outcomes_t *out)
{
    size_t off = 0;
    wf_http_header_t *hdrs = malloc((o->lim.max_headers ? o->lim.max_headers : 1) * sizeof(*hdrs));
    do {
        outcome_t *r = oc_new(out);
        wf_http_request_t req;
        int rc = wf_http_parse_request(buf + off, len - off, &o->lim, &req, hdrs);
        if (rc == WF_HTTP_INCOMPLETE) {
            r->kind = OC_INCOMPLETE;
            break;
        }
        if (rc == WF_HTTP_ERROR) {
            r->kind = OC_ERROR;
            r->err = req.error;
            break;
        }
        if (rc <= 0 || (size_t)rc > len - off) {
            g_slice_errors++;
            break;
        }
        const char *mb = buf + off;
        size_t ml = (size_t)rc;
        wf_str_t sl[] = { req.method, req.target, req.path, req.query, req.host };
        for (size_t i = 0; i < 5; i++)
            if (!in_buf(sl[i], mb, ml))
                g_slice_errors++;
        for (size_t i = 0; i < req.nheaders; i++)
            if (!in_buf(req.headers[i].name, mb, ml) || !in_buf(req.headers[i].value, mb, ml))
                g_slice_errors++;
        r->kind = OC_OK;
        kv_str(r, "method", req.method);
        kv_str(r, "target", req.target);
        kv_str(r, "path", req.path);
        kv_str(r, "query", req.query);
        kv_str(r, "host", req.host);
        sb_printf(&r->kv, "version=1.%d\n", req.minor_version);
        kv_flags(r, req.flags);
        kv_num(r, "cl", req.content_length);
        kv_num(r, "len", (unsigned long long)rc);
        kv_headers(r, req.headers, req.nheaders);
        off += (size_t)rc;
        bool more;
        if (req.flags & WF_HTTP_F_CHUNKED)
            more = read_chunked(&o->lim, buf, len, &off, r, NULL);
        else if (req.flags & WF_HTTP_F_CONTENT_LENGTH)
            more = read_fixed(buf, len, &off, req.content_length, r);
        else
            more = true;
        if (!more)
            break;
    } while (off < len);
    free(hdrs);
}

static void run_responses(const spec_opts_t *o, const char *buf, size_t len, outcomes_t *out)
{
    size_t off = 0;
    wf_http_header_t *hdrs = malloc((o->lim.max_headers ? o->lim.max_headers : 1) * sizeof(*hdrs));
    do {
        outcome_t *r = oc_new(out);
        wf_http_response_t res;
        int rc = wf_http_parse_response(buf + off, len - off, &o->lim, o->method, &res, hdrs);
        if (rc == WF_HTTP_INCOMPLETE) {
            r->kind = OC_INCOMPLETE;
            break;
        }
        if (rc == WF_HTTP_ERROR) {
            r->kind = OC_ERROR;
            r->err = res.error;
            break;
        }
        if (rc <= 0 || (size_t)rc > len - off) {
            g_slice_errors++;
            break;
        }
        const char *mb = buf + off;
        if (!in_buf(res.reason, mb, (size_t)rc))
            g_slice_errors++;
        r->kind = OC_OK;
        sb_printf(&r->kv, "version=1.%d\n", res.minor_version);
        kv_num(r, "status", (unsigned long long)res.status);
        kv_str(r, "reason", res.reason);
        kv_flags(r, res.flags);
        kv_num(r, "cl", res.content_length);
        kv_num(r, "len", (unsigned long long)rc);
        kv_headers(r, res.headers, res.nheaders);
        off += (size_t)rc;
        bool more;
        if (res.flags & WF_HTTP_F_NO_BODY) {
            more = !(res.flags & WF_HTTP_F_UPGRADE); /* a tunnel: what follows is not HTTP */
        } else if (res.flags & WF_HTTP_F_CHUNKED) {
            more = read_chunked(&o->lim, buf, len, &off, r, NULL);
        } else if (res.flags & WF_HTTP_F_CONTENT_LENGTH) {
            more = read_fixed(buf, len, &off, res.content_length, r);
        } else {
            r->until_close = true;
            sb_put(&r->body, buf + off, len - off);
            off = len;
            more = false;
        }
        if (!more)
            break;
    } while (off < len);
    free(hdrs);
}

static void record_chunked_end(outcome_t *r, uint64_t total, size_t consumed, size_t len)
{
    r->kind = OC_OK;
    kv_num(r, "consumed", consumed);
    kv_num(r, "total", total);
    r->rest = (long)(len - consumed);
}

/* Whole input, several calls as the API asks. */
static void run_chunked(const spec_opts_t *o, const char *buf, size_t len, outcomes_t *out)
{
    outcome_t *r = oc_new(out);
    size_t off = 0;
    uint64_t total = 0;
    if (read_chunked(&o->lim, buf, len, &off, r, &total))
        record_chunked_end(r, total, off, len);
}

/* One byte per call, each byte alone before the guard page. */
static void run_chunked_bytewise(const spec_opts_t *o, guard_t *g, const char *buf, size_t len, outcomes_t *out)
{
    outcome_t *r = oc_new(out);
    wf_http_chunked_t c;
    wf_http_chunked_init(&c, &o->lim);
    for (size_t i = 0; i < len; i++) {
        const char *one = guard_place(g, buf + i, 1);
        size_t used;
        wf_str_t d;
        int rc = wf_http_chunked_feed(&c, one, 1, &used, &d);
        if (used > 1 || !in_buf(d, one, used))
            g_slice_errors++;
        if (rc == WF_HTTP_ERROR) {
            r->kind = OC_ERROR;
            r->err = c.error;
            return;
        }
        sb_put(&r->body, d.p, d.n);
        if (rc == 1) {
            record_chunked_end(r, c.total, i + used, len);
            return;
        }
        if (used != 1)
            g_slice_errors++;
    }
    r->kind = OC_INCOMPLETE;
}

static void run_mode(const spec_opts_t *o, const char *buf, size_t len, outcomes_t *out)
{
    if (o->mode == 0)
        run_requests(o, buf, len, out);
    else if (o->mode == 1)
        run_responses(o, buf, len, out);
    else
        run_chunked(o, buf, len, out);
}

static void oc_describe(sbuf_t *b, const outcome_t *r)
{
    if (r->kind == OC_INCOMPLETE) {
        sb_printf(b, "incomplete");
        return;
    }
    if (r->kind == OC_ERROR) {
        sb_printf(b, "error=%s status=%d", wf_http_err_name(r->err), wf_http_err_status(r->err));
        return;
    }
    sb_printf(b, "ok");
    for (const char *p = r->kv.p; *p;) {
        const char *nl = strchr(p, '\n');
        size_t ln = (size_t)(nl - p);
        sb_put(b, " ", 1);
        if (ln > 160) {
            sb_put(b, p, 150);
            sb_printf(b, "...(%zu more)", ln - 150);
        } else {
            sb_put(b, p, ln);
        }
        p = nl + 1;
    }
    if (strstr(r->kv.p, "consumed="))
        sb_printf(b, " rest=%ld", r->rest);
    sb_printf(b, " body=\"");
    sb_escaped(b, r->body.p, r->body.n > 150 ? 150 : r->body.n);
    sb_printf(b, r->body.n > 150 ? "...(%zu more)\"" : "\"", r->body.n - 150);
}

static void ocs_describe(sbuf_t *b, const outcomes_t *o)
{
    for (size_t i = 0; i < o->n; i++) {
        sb_printf(b, "    ");
        oc_describe(b, &o->v[i]);
        sb_printf(b, "\n");
    }
}

/* Whether two outcomes are the same; a body read until close may be a prefix in a. */
static bool oc_same(const outcome_t *a, const outcome_t *b, bool allow_prefix_body)
{
    if (a->kind != b->kind)
        return false;
    if (a->kind == OC_ERROR)
        return a->err == b->err;
    if (a->kind == OC_INCOMPLETE)
        return true;
    if (strcmp(a->kv.p, b->kv.p) != 0 || a->until_close != b->until_close)
        return false;
    if (allow_prefix_body && a->until_close)
        return a->body.n <= b->body.n && memcmp(a->body.p, b->body.p, a->body.n) == 0;
    return a->body.n == b->body.n && memcmp(a->body.p, b->body.p, a->body.n) == 0;
}

static bool ocs_same(const outcomes_t *a, const outcomes_t *b)
{
    if (a->n != b->n)
        return false;
    for (size_t i = 0; i < a->n; i++)
        if (!oc_same(&a->v[i], &b->v[i], false))
            return false;
    return true;
}

/* A prefix's outcomes against the whole input's. */
static bool prefix_consistent(const outcomes_t *p, const outcomes_t *full)
{
    if (p->n == 0 || p->n > full->n)
        return false;
    for (size_t i = 0; i + 1 < p->n; i++)
        if (!oc_same(&p->v[i], &full->v[i], false))
            return false;
    const outcome_t *last = &p->v[p->n - 1];
    if (last->kind == OC_INCOMPLETE)
        return true;
    return oc_same(last, &full->v[p->n - 1], true);
}

/* ---------- expectations ---------- */

/* Value of key in an outcome's kv lines (escaped form), or NULL. */
static const char *kv_find(const outcome_t *r, const char *key, size_t *n)
{
    size_t kl = strlen(key);
    for (const char *p = r->kv.p; *p;) {
        const char *nl = strchr(p, '\n');
        if ((size_t)(nl - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *n = (size_t)(nl - p - kl - 1);
            return p + kl + 1;
        }
        p = nl + 1;
    }
    return NULL;
}

/* Compares one expect line with an outcome; appends why not to why. */
static bool expect_match(const char *line, const outcome_t *r, sbuf_t *why)
{
    const char *p = line;
    bool first = true;
    while (*p) {
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        /* token: key[=value], value possibly quoted */
        const char *k0 = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        char key[64];
        snprintf(key, sizeof(key), "%.*s", (int)(p - k0), k0);
        sbuf_t val = { 0 };
        sb_put(&val, "", 0);
        bool has_val = false;
        if (*p == '=') {
            has_val = true;
            p++;
            if (*p == '"') {
                const char *v0 = ++p;
                while (*p && *p != '"') {
                    if (*p == '\\' && p[1])
                        p++;
                    p++;
                }
                if (!unescape(v0, p, &val, false)) {
                    sb_printf(why, "bad escape in expect value of %s", key);
                    free(val.p);
                    return false;
                }
                if (*p == '"')
                    p++;
            } else {
                const char *v0 = p;
                while (*p && *p != ' ')
                    p++;
                if (!unescape(v0, p, &val, false)) {
                    sb_printf(why, "bad escape in expect value of %s", key);
                    free(val.p);
                    return false;
                }
            }
        }
        bool ok = true;
        if (first) {
            first = false;
            if (strcmp(key, "ok") == 0 && !has_val) {
                ok = r->kind == OC_OK;
            } else if (strcmp(key, "incomplete") == 0 && !has_val) {
                ok = r->kind == OC_INCOMPLETE;
            } else if (strcmp(key, "error") == 0 && has_val) {
                ok = r->kind == OC_ERROR && strcmp(val.p, wf_http_err_name(r->err)) == 0;
            } else {
                sb_printf(why, "expect line must start with ok, error=NAME or incomplete");
                ok = false;
            }
            if (!ok && !why->n)
                sb_printf(why, "outcome differs");
        } else if (!has_val) {
            sb_printf(why, "key %s without a value", key);
            ok = false;
        } else if (strcmp(key, "status") == 0 && r->kind != OC_OK) {
            ok = r->kind == OC_ERROR && wf_http_err_status(r->err) == atoi(val.p);
            if (!ok)
                sb_printf(why, "status differs");
        } else if (r->kind != OC_OK) {
            sb_printf(why, "key %s on a failed outcome", key);
            ok = false;
        } else if (strcmp(key, "rest") == 0) {
            ok = r->rest == atol(val.p);
            if (!ok)
                sb_printf(why, "rest: expected %s, got %ld", val.p, r->rest);
        } else if (strcmp(key, "body") == 0) {
            ok = r->body.n == val.n && memcmp(r->body.p, val.p, val.n) == 0;
            if (!ok)
                sb_printf(why, "body differs");
        } else {
            size_t n;
            const char *have = kv_find(r, key, &n);
            /* the stored value is escaped: compare in escaped form */
            sbuf_t esc = { 0 };
            sb_put(&esc, "", 0);
            sb_escaped(&esc, val.p, val.n);
            if (!have) {
                sb_printf(why, "unknown key %s", key);
                ok = false;
            } else if (n != esc.n || memcmp(have, esc.p, n) != 0) {
                sb_printf(why, "%s: expected %.200s, got %.*s", key, esc.p, (int)(n > 200 ? 200 : n), have);
                ok = false;
            }
            free(esc.p);
        }
        free(val.p);
        if (!ok)
            return false;
    }
    if (first) {
        sb_printf(why, "empty expect line");
        return false;
    }
    return true;
}

/* ---------- the markdown file ---------- */

typedef struct {
    char name[256];
    int line;
    spec_opts_t opts;
    sbuf_t input;
    char **expect;
    size_t nexpect;
} spec_case_t;

static bool parse_opts(const char *info, spec_opts_t *o, char *err, size_t errn)
{
    memset(o, 0, sizeof(*o));
    wf_http_limits_default(&o->lim);
    o->method = WF_STR("GET");
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", info);
    char *save = NULL;
    char *tok = strtok_r(buf, " \t", &save);
    if (!tok)
        return false;
    if (strcmp(tok, "request") == 0)
        o->mode = 0;
    else if (strcmp(tok, "response") == 0)
        o->mode = 1;
    else if (strcmp(tok, "chunked") == 0)
        o->mode = 2;
    else
        return false;
    while ((tok = strtok_r(NULL, " \t", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq) {
            snprintf(err, errn, "option without value: %s", tok);
            return false;
        }
        *eq = 0;
        const char *v = eq + 1;
        unsigned long long n = strtoull(v, NULL, 10);
        if (strcmp(tok, "max_header_bytes") == 0)
            o->lim.max_header_bytes = n;
        else if (strcmp(tok, "max_headers") == 0)
            o->lim.max_headers = n;
        else if (strcmp(tok, "max_uri") == 0)
            o->lim.max_uri = n;
        else if (strcmp(tok, "max_body_bytes") == 0)
            o->lim.max_body_bytes = n;
        else if (strcmp(tok, "max_chunk_line") == 0)
            o->lim.max_chunk_line = n;
        else if (strcmp(tok, "max_trailer_bytes") == 0)
            o->lim.max_trailer_bytes = n;
        else if (strcmp(tok, "method") == 0) {
            snprintf(o->method_buf, sizeof(o->method_buf), "%s", v);
            o->method = wf_str(o->method_buf, strlen(o->method_buf));
        } else if (strcmp(tok, "lenient") == 0) {
            char vb[128];
            snprintf(vb, sizeof(vb), "%s", v);
            char *s2 = NULL;
            for (char *f = strtok_r(vb, ",", &s2); f; f = strtok_r(NULL, ",", &s2)) {
                if (strcmp(f, "bare_lf") == 0)
                    o->lim.lenient |= WF_HTTP_LENIENT_BARE_LF;
                else if (strcmp(f, "target_8bit") == 0)
                    o->lim.lenient |= WF_HTTP_LENIENT_TARGET_8BIT;
                else {
                    snprintf(err, errn, "unknown leniency %s", f);
                    return false;
                }
            }
        } else {
            snprintf(err, errn, "unknown option %s", tok);
            return false;
        }
    }
    return true;
}

static char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    sbuf_t b = { 0 };
    char tmp[65536];
    size_t r;
    while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
        sb_put(&b, tmp, r);
    fclose(f);
    sb_put(&b, "", 0);
    *n = b.n;
    return b.p;
}

static int g_cases, g_failed;

static void case_fail(const char *file, const spec_case_t *c, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s:%d: FAIL \"%s\": ", file, c->line, c->name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n");
}

static bool run_case(const char *file, spec_case_t *c)
{
    snprintf(g_current, sizeof(g_current), "%s:%d \"%s\"", file, c->line, c->name);
    const char *in = c->input.p ? c->input.p : "";
    size_t n = c->input.n;
    guard_t g;
    guard_init(&g, n ? n : 1);
    bool ok = true;
    outcomes_t full[2] = { 0 };
    int slice_before = g_slice_errors;

    for (int simd = 0; simd < 2; simd++) {
        wf_http_scan_use_simd(simd == 1);
        const char *buf = guard_place(&g, in, n);
        run_mode(&c->opts, buf, n, &full[simd]);
    }
    wf_http_scan_use_simd(true);
    sbuf_t d = { 0 };
    sb_put(&d, "", 0);
    ocs_describe(&d, &full[1]);

    if (!ocs_same(&full[0], &full[1])) {
        sbuf_t d0 = { 0 };
        sb_put(&d0, "", 0);
        ocs_describe(&d0, &full[0]);
        case_fail(file, c, "scalar and SIMD paths differ:\nscalar:\n%ssimd:\n%s", d0.p, d.p);
        free(d0.p);
        ok = false;
    }

    /* expectations, line by line */
    if (ok && c->nexpect != full[1].n) {
        case_fail(file, c, "%zu expected outcomes, got %zu:\n%s", c->nexpect, full[1].n, d.p);
        ok = false;
    }
    for (size_t i = 0; ok && i < c->nexpect; i++) {
        sbuf_t why = { 0 };
        sb_put(&why, "", 0);
        if (!expect_match(c->expect[i], &full[1].v[i], &why)) {
            case_fail(file, c, "message %zu: %s\n  expected: %.300s\n  got:\n%s", i, why.p, c->expect[i], d.p);
            ok = false;
        }
        free(why.p);
    }

    /* every proper prefix, each right before the guard page */
    for (size_t k = 0; ok && k < n; k++) {
        outcomes_t po = { 0 };
        run_mode(&c->opts, guard_place(&g, in, k), k, &po);
        if (!prefix_consistent(&po, &full[1])) {
            sbuf_t pd = { 0 };
            sb_put(&pd, "", 0);
            ocs_describe(&pd, &po);
            case_fail(file, c, "prefix of %zu bytes is inconsistent:\n%s  whole input:\n%s", k, pd.p, d.p);
            free(pd.p);
            ok = false;
        }
        oc_free(&po);
    }

    if (ok && c->opts.mode == 2) {
        outcomes_t bo = { 0 };
        run_chunked_bytewise(&c->opts, &g, in, n, &bo);
        if (!oc_same(&bo.v[0], &full[1].v[0], false)) {
            sbuf_t bd = { 0 };
            sb_put(&bd, "", 0);
            ocs_describe(&bd, &bo);
            case_fail(file, c, "byte-at-a-time feeding differs:\n%s  whole input:\n%s", bd.p, d.p);
            free(bd.p);
            ok = false;
        }
        oc_free(&bo);
    }

    if (g_slice_errors != slice_before) {
        case_fail(file, c, "a returned length or slice lies outside the input");
        ok = false;
    }
    free(d.p);
    oc_free(&full[0]);
    oc_free(&full[1]);
    guard_free(&g);
    return ok;
}

static void run_file(const char *path)
{
    size_t n;
    char *text = read_file(path, &n);
    if (!text) {
        fprintf(stderr, "%s: cannot read\n", path);
        g_failed++;
        return;
    }
    spec_case_t c;
    memset(&c, 0, sizeof(c));
    bool in_case = false;
    int have_input = 0;
    int lineno = 0;
    char *p = text;

    /* finishes the current case */
#define FINISH_CASE()                                                                                   \
    do {                                                                                                \
        if (in_case) {                                                                                  \
            g_cases++;                                                                                  \
            if (!have_input || c.nexpect == 0) {                                                        \
                case_fail(path, &c, "needs an input block and an expect block");                       \
                g_failed++;                                                                             \
            } else if (!run_case(path, &c)) {                                                           \
                g_failed++;                                                                             \
            }                                                                                           \
            for (size_t i_ = 0; i_ < c.nexpect; i_++)                                                   \
                free(c.expect[i_]);                                                                     \
            free(c.expect);                                                                             \
            free(c.input.p);                                                                            \
            memset(&c, 0, sizeof(c));                                                                   \
            in_case = false;                                                                            \
            have_input = 0;                                                                             \
        }                                                                                               \
    } while (0)

    while (*p) {
        char *nl = strchr(p, '\n');
        char *line_end = nl ? nl : p + strlen(p);
        lineno++;
        size_t ll = (size_t)(line_end - p);
        if (ll >= 4 && memcmp(p, "### ", 4) == 0) {
            FINISH_CASE();
            in_case = true;
            c.line = lineno;
            snprintf(c.name, sizeof(c.name), "%.*s", (int)(ll - 4), p + 4);
        } else if (ll >= 3 && memcmp(p, "```", 3) == 0 && in_case) {
            char info[512];
            snprintf(info, sizeof(info), "%.*s", (int)(ll - 3), p + 3);
            /* collect the block's lines */
            char *b0 = nl ? nl + 1 : line_end;
            char *q = b0;
            char *close = NULL;
            int blines = 0;
            while (*q) {
                char *qn = strchr(q, '\n');
                char *qe = qn ? qn : q + strlen(q);
                if (qe - q >= 3 && memcmp(q, "```", 3) == 0) {
                    close = q;
                    break;
                }
                blines++;
                q = qn ? qn + 1 : qe;
            }
            if (!close) {
                fprintf(stderr, "%s:%d: unterminated block\n", path, lineno);
                g_failed++;
                break;
            }
            if (strcmp(info, "expect") == 0) {
                for (char *l = b0; l < close;) {
                    char *le = strchr(l, '\n');
                    size_t len = (size_t)(le - l);
                    while (len && (l[len - 1] == ' ' || l[len - 1] == '\r'))
                        len--;
                    if (len) {
                        c.expect = realloc(c.expect, (c.nexpect + 1) * sizeof(char *));
                        c.expect[c.nexpect++] = strndup(l, len);
                    }
                    l = le + 1;
                }
            } else {
                char err[256] = "";
                if (!parse_opts(info, &c.opts, err, sizeof(err))) {
                    fprintf(stderr, "%s:%d: bad block kind or option: %s %s\n", path, lineno, info, err);
                    g_failed++;
                } else {
                    c.input.n = 0;
                    sb_put(&c.input, "", 0);
                    if (!unescape(b0, close, &c.input, true)) {
                        fprintf(stderr, "%s:%d: bad escape in input\n", path, lineno);
                        g_failed++;
                    } else {
                        have_input = 1;
                    }
                }
            }
            lineno += blines + 1;
            char *after = strchr(close, '\n');
            p = after ? after + 1 : close + strlen(close);
            continue;
        }
        p = nl ? nl + 1 : line_end;
    }
    FINISH_CASE();
    free(text);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.md...\n", argv[0]);
        return 2;
    }
    signal(SIGSEGV, on_fault);
    signal(SIGBUS, on_fault);
    for (int i = 1; i < argc; i++)
        run_file(argv[i]);
    printf("%d cases, %d failed\n", g_cases, g_failed);
    return (g_failed || g_cases == 0) ? 1 : 0;
}
