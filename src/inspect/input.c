/* Input readers for `wafer extract` and `wafer scan`: raw HTTP streams,
 * payload lines, JSON lines and nginx access logs (docs/inspection.md
 * "wafer extract"). These are tools that read files, not the data path: they
 * allocate with malloc, bounded by max_record. */
#include "wafer/inspect.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

struct wf_input {
    wf_input_format_t fmt;
    FILE *fp;
    size_t max_record;
    char *buf;
    size_t off, len, cap;
    bool eof;
    bool resync;     /* raw: skip to the next line that looks like a request line */
    uint64_t index;
    wf_http_limits_t lim;
    wf_http_header_t hdrs[WF_INPUT_MAX_HEADERS];
    char *body;      /* decoded chunked bodies */
    size_t body_cap;
    json_t *json;    /* jsonl, json-log: the current row (its strings back the record) */
    wf_str_t line;   /* jsonl: the current row's text, for wf_input_extra_json */
    int extra_form;  /* jsonl: 0 none (invalid row), 1 "raw" row, 2 recorded-request row */
    char *lbuf;      /* json-log: request line and target copies */
    size_t lbuf_cap;
};

int wf_input_format_parse(const char *s)
{
    static const char *const names[] = { "raw", "lines", "jsonl", "nginx", "json-log" };
    for (size_t i = 0; i < WF_ARRAY_LEN(names); i++)
        if (!strcmp(s, names[i]))
            return (int)i;
    return -1;
}

wf_input_t *wf_input_new(wf_input_format_t fmt, FILE *fp, size_t max_record)
{
    wf_input_t *in = calloc(1, sizeof(*in));
    if (!in)
        return NULL;
    in->fmt = fmt;
    in->fp = fp;
    in->max_record = max_record ? max_record : (16u << 20);
    in->cap = 65536;
    in->buf = malloc(in->cap);
    if (!in->buf) {
        free(in);
        return NULL;
    }
    wf_http_limits_default(&in->lim);
    in->lim.lenient |= WF_HTTP_LENIENT_BARE_LF;
    in->lim.max_headers = WF_INPUT_MAX_HEADERS;
    in->lim.max_body_bytes = in->max_record;
    return in;
}

void wf_input_free(wf_input_t *in)
{
    if (!in)
        return;
    if (in->json)
        json_decref(in->json);
    free(in->buf);
    free(in->body);
    free(in->lbuf);
    free(in);
}

void wf_input_set_index(wf_input_t *in, uint64_t next_index) { in->index = next_index; }
uint64_t wf_input_index(const wf_input_t *in) { return in->index; }

/* Reads more bytes; returns bytes read, 0 at EOF, negative errno on error. */
static long fill(wf_input_t *in)
{
    if (in->eof)
        return 0;
    if (in->off > 0 && (in->off == in->len || in->len == in->cap)) {
        memmove(in->buf, in->buf + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    if (in->len == in->cap) {
        size_t ncap = in->cap * 2;
        size_t most = in->max_record + 65536;
        if (in->cap >= most)
            return -WF_ELIMIT;
        if (ncap > most)
            ncap = most;
        char *nb = realloc(in->buf, ncap);
        if (!nb)
            return -ENOMEM;
        in->buf = nb;
        in->cap = ncap;
    }
    size_t got = fread(in->buf + in->len, 1, in->cap - in->len, in->fp);
    if (got == 0) {
        if (ferror(in->fp))
            return -EIO;
        in->eof = true;
        return 0;
    }
    in->len += got;
    return (long)got;
}

static void rec_reset(wf_input_record_t *rec, uint64_t index)
{
    memset(rec, 0, sizeof(*rec));
    rec->index = index;
}

static void rec_invalid(wf_input_record_t *rec, const char *fmt, const char *a)
{
    rec->invalid = true;
    snprintf(rec->reason, sizeof(rec->reason), fmt, a);
}

/* Next line (without CR LF) of a line-based input. Returns 1, 0 at end,
 * negative errno; a line over max_record is returned cut with *too_long. */
static int next_line(wf_input_t *in, wf_str_t *line, bool *too_long)
{
    *too_long = false;
    size_t searched = 0; /* bytes after off known to hold no LF */
    for (;;) {
        char *nl = memchr(in->buf + in->off + searched, '\n', in->len - in->off - searched);
        if (nl) {
            size_t end = (size_t)(nl - in->buf);
            *line = wf_str(in->buf + in->off, end - in->off);
            in->off = end + 1;
            break;
        }
        searched = in->len - in->off;
        if (searched > in->max_record) {
            /* discard the rest of an overlong line */
            *too_long = true;
            *line = WF_STR_NULL;
            for (;;) {
                in->off = in->len;
                long r = fill(in);
                if (r <= 0)
                    return r < 0 ? (int)r : 1;
                nl = memchr(in->buf + in->off, '\n', in->len - in->off);
                if (nl) {
                    in->off = (size_t)(nl - in->buf) + 1;
                    return 1;
                }
            }
        }
        long r = fill(in);
        if (r < 0)
            return (int)r;
        if (r == 0) {
            if (in->off == in->len)
                return 0;
            *line = wf_str(in->buf + in->off, in->len - in->off);
            in->off = in->len;
            break;
        }
    }
    if (line->n && line->p[line->n - 1] == '\r')
        line->n--;
    return 1;
}

/* Splits a target (origin-form or absolute-form) into path and query. */
static void split_target(wf_str_t t, wf_str_t *path, wf_str_t *query)
{
    const char *hash = t.n ? memchr(t.p, '#', t.n) : NULL;
    if (hash)
        t.n = (size_t)(hash - t.p);
    const char *sep = t.n >= 3 ? memmem(t.p, t.n, "://", 3) : NULL;
    if (sep && t.p[0] != '/') {
        size_t a = (size_t)(sep - t.p) + 3;
        size_t k = a;
        while (k < t.n && t.p[k] != '/' && t.p[k] != '?')
            k++;
        t = wf_str(t.p + k, t.n - k);
    }
    const char *q = t.n ? memchr(t.p, '?', t.n) : NULL;
    *path = q ? wf_str(t.p, (size_t)(q - t.p)) : t;
    *query = q ? wf_str(q + 1, t.n - path->n - 1) : WF_STR_NULL;
    if (!path->n)
        *path = WF_STR("/");
}

/* Parses a whole request held in [p, p+n): header block and body.
 * Returns the bytes it takes, 0 when more are needed, -1 when malformed
 * (reason set). */
static long parse_raw(wf_input_t *in, const char *p, size_t n, bool final, wf_input_record_t *rec)
{
    int r = wf_http_parse_request(p, n, &in->lim, &rec->req, in->hdrs);
    if (r == WF_HTTP_INCOMPLETE) {
        if (!final)
            return 0;
        rec_invalid(rec, "http: %s", "incomplete request");
        return -1;
    }
    if (r < 0) {
        rec_invalid(rec, "http: %s", wf_http_err_name(rec->req.error));
        return -1;
    }
    size_t hl = (size_t)r;
    if (rec->req.flags & WF_HTTP_F_CHUNKED) {
        wf_http_chunked_t c;
        wf_http_chunked_init(&c, &in->lim);
        size_t pos = hl, bl = 0;
        for (;;) {
            size_t used = 0;
            wf_str_t data = WF_STR_NULL;
            int cr = wf_http_chunked_feed(&c, p + pos, n - pos, &used, &data);
            if (cr < 0) {
                rec_invalid(rec, "http: %s", wf_http_err_name(c.error));
                return -1;
            }
            if (data.n) {
                if (bl + data.n > in->body_cap) {
                    size_t nc = WF_MAX(in->body_cap * 2, bl + data.n + 4096);
                    char *nb = realloc(in->body, nc);
                    if (!nb) {
                        rec_invalid(rec, "%s", "out of memory");
                        return -1;
                    }
                    in->body = nb;
                    in->body_cap = nc;
                }
                memcpy(in->body + bl, data.p, data.n);
                bl += data.n;
            }
            pos += used;
            if (cr == 1) {
                rec->body = wf_str(in->body, bl);
                return (long)pos;
            }
            if (used == 0 || pos >= n) {
                if (!final)
                    return 0;
                rec_invalid(rec, "http: %s", "incomplete chunked body");
                return -1;
            }
        }
    }
    if (rec->req.flags & WF_HTTP_F_CONTENT_LENGTH) {
        uint64_t cl = rec->req.content_length;
        if (cl > in->max_record) {
            rec_invalid(rec, "http: %s", "body over the record limit");
            return -1;
        }
        if (n - hl < cl) {
            if (!final)
                return 0;
            rec_invalid(rec, "http: %s", "incomplete body");
            return -1;
        }
        rec->body = wf_str(p + hl, (size_t)cl);
        return (long)(hl + cl);
    }
    return (long)hl;
}

/* "METHOD SP target SP HTTP/1.x" up to the line end? Returns 1, 0 (no), -1 (need more). */
static int request_line_at(const char *p, size_t n)
{
    const char *nl = memchr(p, '\n', n);
    if (!nl)
        return -1;
    size_t e = (size_t)(nl - p);
    size_t k = 0;
    while (k < e && p[k] >= 'A' && p[k] <= 'Z')
        k++;
    if (k == 0 || k >= e || p[k] != ' ')
        return 0;
    return memmem(p, e, " HTTP/1.", 8) ? 1 : 0;
}

static int next_raw(wf_input_t *in, wf_input_record_t *rec)
{
    for (;;) {
        /* skip blank lines between requests (and, after an error, everything
         * up to the next request line) */
        while (in->off < in->len) {
            char c = in->buf[in->off];
            if (!in->resync && (c == '\r' || c == '\n')) {
                in->off++;
                continue;
            }
            if (!in->resync)
                break;
            /* resync: at a line start? */
            if (in->off == 0 || in->buf[in->off - 1] == '\n') {
                int k = request_line_at(in->buf + in->off, in->len - in->off);
                if (k == 1) {
                    in->resync = false;
                    break;
                }
                if (k < 0 && !in->eof)
                    break;
            }
            char *nl = memchr(in->buf + in->off, '\n', in->len - in->off);
            in->off = nl ? (size_t)(nl - in->buf) + 1 : in->len;
        }
        bool need_more = in->off == in->len;
        if (!need_more) {
            rec_reset(rec, in->index);
            if (in->resync) {
                need_more = true;
            } else {
                long r = parse_raw(in, in->buf + in->off, in->len - in->off, in->eof, rec);
                if (r > 0) {
                    in->off += (size_t)r;
                    in->index++;
                    return 1;
                }
                if (r < 0) {
                    in->index++;
                    in->resync = true;
                    /* step past this request line so that resync finds the next one */
                    char *nl = memchr(in->buf + in->off, '\n', in->len - in->off);
                    in->off = nl ? (size_t)(nl - in->buf) + 1 : in->len;
                    return 1;
                }
                need_more = true;
            }
        }
        if (need_more) {
            if (in->eof && in->off == in->len)
                return 0;
            long f = fill(in);
            if (f == -WF_ELIMIT) {
                rec_reset(rec, in->index++);
                rec_invalid(rec, "http: %s", "request over the record limit");
                in->off = in->len;
                in->resync = true;
                return 1;
            }
            if (f < 0)
                return (int)f;
            if (f == 0 && in->eof && in->resync) {
                in->off = in->len;
                return 0;
            }
        }
    }
}

static int next_lines(wf_input_t *in, wf_input_record_t *rec)
{
    wf_str_t line;
    bool too_long;
    int r = next_line(in, &line, &too_long);
    if (r <= 0)
        return r;
    rec_reset(rec, in->index++);
    if (too_long) {
        rec_invalid(rec, "%s", "line over the record limit");
        return 1;
    }
    rec->is_value = true;
    rec->value = line;
    return 1;
}

static bool json_str(json_t *o, const char *key, wf_str_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return false;
    *out = wf_str(json_string_value(v), json_string_length(v));
    return true;
}

/* Reads the next line as a JSON object into in->json (owned by the reader
 * until the next record). Returns what next_line returns when there is no
 * line; otherwise 1, with *out NULL when the record was marked invalid. */
static int next_json_object(wf_input_t *in, wf_input_record_t *rec, json_t **out)
{
    wf_str_t line;
    bool too_long;
    *out = NULL;
    int r = next_line(in, &line, &too_long);
    if (r <= 0)
        return r;
    rec_reset(rec, in->index++);
    if (in->json) {
        json_decref(in->json);
        in->json = NULL;
    }
    in->extra_form = 0;
    in->line = line;
    if (too_long) {
        rec_invalid(rec, "%s", "line over the record limit");
        return 1;
    }
    json_error_t err;
    json_t *o = json_loadb(line.p, line.n, JSON_ALLOW_NUL, &err);
    if (!o) {
        rec_invalid(rec, "json: %.120s", err.text);
        return 1;
    }
    in->json = o;
    if (!json_is_object(o)) {
        rec_invalid(rec, "json: %s", "not an object");
        return 1;
    }
    *out = o;
    return 1;
}

static int next_jsonl(wf_input_t *in, wf_input_record_t *rec)
{
    json_t *o;
    int r = next_json_object(in, rec, &o);
    if (r <= 0 || !o)
        return r;
    wf_str_t raw;
    if (json_str(o, "raw", &raw)) {
        in->extra_form = 1;
        parse_raw(in, raw.p, raw.n, true, rec);
        return 1;
    }
    /* a recorded request: method, url, headers ([[name, value], ...] or
     * {name: value}), body */
    wf_str_t url, method = WF_STR("GET"), body = WF_STR_NULL;
    in->extra_form = 2;
    if (!json_str(o, "url", &url)) {
        rec_invalid(rec, "json: %s", "neither \"raw\" nor \"url\"");
        return 1;
    }
    json_str(o, "method", &method);
    json_str(o, "body", &body);
    wf_http_request_t *q = &rec->req;
    q->method = method;
    q->target = url;
    q->minor_version = 1;
    split_target(url, &q->path, &q->query);
    q->headers = in->hdrs;
    json_t *h = json_object_get(o, "headers");
    size_t nh = 0;
    if (json_is_array(h)) {
        size_t i;
        json_t *pair;
        json_array_foreach(h, i, pair)
        {
            if (nh >= WF_INPUT_MAX_HEADERS)
                break;
            json_t *n = json_array_get(pair, 0), *v = json_array_get(pair, 1);
            if (!json_is_string(n) || !json_is_string(v) || json_string_value(n)[0] == ':')
                continue; /* HTTP/2 pseudo-headers are in the url already */
            in->hdrs[nh++] = (wf_http_header_t){ wf_str(json_string_value(n), json_string_length(n)),
                                                 wf_str(json_string_value(v), json_string_length(v)) };
        }
    } else if (json_is_object(h)) {
        const char *k;
        json_t *v;
        json_object_foreach(h, k, v)
        {
            if (nh >= WF_INPUT_MAX_HEADERS)
                break;
            if (!json_is_string(v) || k[0] == ':')
                continue;
            in->hdrs[nh++] = (wf_http_header_t){ wf_str_c(k), wf_str(json_string_value(v), json_string_length(v)) };
        }
    }
    q->nheaders = nh;
    rec->body = body;
    return 1;
}

/* Undoes nginx's \xHH escaping in place; returns the new length. */
static size_t nginx_unescape(char *s, size_t n)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (s[r] == '\\' && r + 3 < n && s[r + 1] == 'x') {
            char h[3] = { s[r + 2], s[r + 3], 0 };
            char *end;
            long v = strtol(h, &end, 16);
            if (end == h + 2) {
                s[w++] = (char)v;
                r += 3;
                continue;
            }
        }
        s[w++] = s[r];
    }
    return w;
}

/* Next quoted field at *i in line; false if none. */
static bool quoted(char *p, size_t n, size_t *i, wf_str_t *out)
{
    size_t k = *i;
    while (k < n && p[k] != '"')
        k++;
    if (k >= n)
        return false;
    size_t s = ++k;
    while (k < n && p[k] != '"')
        k++;
    if (k >= n)
        return false;
    size_t len = nginx_unescape(p + s, k - s);
    *out = wf_str(p + s, len);
    *i = k + 1;
    return true;
}

static int next_nginx(wf_input_t *in, wf_input_record_t *rec)
{
    wf_str_t line;
    bool too_long;
    int r = next_line(in, &line, &too_long);
    if (r <= 0)
        return r;
    rec_reset(rec, in->index++);
    if (too_long) {
        rec_invalid(rec, "%s", "line over the record limit");
        return 1;
    }
    char *p = (char *)line.p;
    size_t i = 0;
    wf_str_t request, referer = WF_STR_NULL, ua = WF_STR_NULL;
    if (!quoted(p, line.n, &i, &request)) {
        rec_invalid(rec, "nginx: %s", "no quoted request");
        return 1;
    }
    if (quoted(p, line.n, &i, &referer))
        quoted(p, line.n, &i, &ua);
    /* "METHOD target HTTP/x.y" */
    const char *sp = memchr(request.p, ' ', request.n);
    if (!sp || sp == request.p) {
        rec_invalid(rec, "nginx: %s", "malformed request line");
        return 1;
    }
    wf_http_request_t *q = &rec->req;
    q->method = wf_str(request.p, (size_t)(sp - request.p));
    wf_str_t t = wf_str(sp + 1, request.n - q->method.n - 1);
    const char *last = NULL;
    for (size_t k = t.n; k > 0; k--)
        if (t.p[k - 1] == ' ') {
            last = t.p + k - 1;
            break;
        }
    if (last && t.p + t.n - last > 5 && !memcmp(last + 1, "HTTP/", 5))
        t.n = (size_t)(last - t.p);
    if (!t.n) {
        rec_invalid(rec, "nginx: %s", "malformed request line");
        return 1;
    }
    q->target = t;
    q->minor_version = 1;
    split_target(t, &q->path, &q->query);
    q->headers = in->hdrs;
    size_t nh = 0;
    if (referer.n && !(referer.n == 1 && referer.p[0] == '-'))
        in->hdrs[nh++] = (wf_http_header_t){ WF_STR("Referer"), referer };
    if (ua.n && !(ua.n == 1 && ua.p[0] == '-'))
        in->hdrs[nh++] = (wf_http_header_t){ WF_STR("User-Agent"), ua };
    q->nheaders = nh;
    return 1;
}

/* ---- json-log: JSON access logs ---- */

/* A string at `key`: a top-level member of that exact name (flattened logs
 * write "url.original"), else the dotted path through nested objects
 * (ECS, Caddy). An array of strings (Caddy's header values) gives its first. */
static bool jl_get(json_t *o, const char *key, wf_str_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v && strchr(key, '.')) {
        char part[64];
        const char *k = key;
        v = o;
        while (v && *k) {
            const char *dot = strchr(k, '.');
            size_t n = dot ? (size_t)(dot - k) : strlen(k);
            if (n >= sizeof(part))
                return false;
            memcpy(part, k, n);
            part[n] = 0;
            v = json_is_object(v) ? json_object_get(v, part) : NULL;
            k += n + (dot ? 1 : 0);
        }
    }
    if (json_is_array(v))
        v = json_array_get(v, 0);
    if (!json_is_string(v))
        return false;
    *out = wf_str(json_string_value(v), json_string_length(v));
    return true;
}

static bool jl_first(json_t *o, const char *const *keys, wf_str_t *out)
{
    for (; *keys; keys++)
        if (jl_get(o, *keys, out) && out->n)
            return true;
    return false;
}

/* The field names read, first present non-empty one wins (docs/scan.md). */
static const char *const jl_method[] = { "method", "request_method", "http_method", "verb", "RequestMethod",
                                         "http.request.method", "httpRequest.requestMethod", "request.method",
                                         NULL };
static const char *const jl_target[] = { "request_uri", "url", "url.original", "RequestPath", "request.uri",
                                         "httpRequest.requestUrl", "request_url", "uri_full", NULL };
static const char *const jl_path[] = { "path", "url.path", "uri", "request_path", NULL };
static const char *const jl_query[] = { "query", "query_string", "args", "url.query", "request_query", NULL };
static const char *const jl_ua[] = { "user_agent", "http_user_agent", "user_agent.original", "userAgent",
                                     "useragent", "agent", "request_User-Agent", "httpRequest.userAgent",
                                     "request.headers.User-Agent", "headers.user-agent", "headers.User-Agent",
                                     NULL };
static const char *const jl_referer[] = { "referer", "referrer", "http_referer", "http.request.referrer",
                                          "request_Referer", "httpRequest.referer", "request.headers.Referer",
                                          "headers.referer", "headers.Referer", NULL };

static int next_jsonlog(wf_input_t *in, wf_input_record_t *rec)
{
    json_t *o;
    int r = next_json_object(in, rec, &o);
    if (r <= 0 || !o)
        return r;
    wf_http_request_t *q = &rec->req;
    wf_str_t method = WF_STR_NULL, target = WF_STR_NULL, reqline;
    /* nginx's $request: "METHOD target HTTP/x.y" */
    json_t *rl = json_object_get(o, "request");
    if (json_is_string(rl) && (reqline = wf_str(json_string_value(rl), json_string_length(rl))).n) {
        const char *sp = memchr(reqline.p, ' ', reqline.n);
        if (sp && sp > reqline.p) {
            method = wf_str(reqline.p, (size_t)(sp - reqline.p));
            target = wf_str(sp + 1, reqline.n - method.n - 1);
            const char *last = memrchr(target.p, ' ', target.n);
            if (last && target.p + target.n - last > 5 && !memcmp(last + 1, "HTTP/", 5))
                target.n = (size_t)(last - target.p);
        }
    }
    if (!method.n)
        jl_first(o, jl_method, &method);
    if (!target.n && !jl_first(o, jl_target, &target)) {
        wf_str_t path, query = WF_STR_NULL;
        if (!jl_first(o, jl_path, &path)) {
            rec_invalid(rec, "json-log: %s", "no request path (fields: request, request_uri, url, path, ...)");
            return 1;
        }
        jl_first(o, jl_query, &query);
        if (query.n && query.p[0] == '?')
            query = wf_str(query.p + 1, query.n - 1);
        if (query.n && !memchr(path.p, '?', path.n)) {
            size_t need = path.n + 1 + query.n;
            if (need > in->lbuf_cap) {
                char *nb = realloc(in->lbuf, need);
                if (!nb) {
                    rec_invalid(rec, "%s", "out of memory");
                    return 1;
                }
                in->lbuf = nb;
                in->lbuf_cap = need;
            }
            memcpy(in->lbuf, path.p, path.n);
            in->lbuf[path.n] = '?';
            memcpy(in->lbuf + path.n + 1, query.p, query.n);
            target = wf_str(in->lbuf, need);
        } else {
            target = path;
        }
    }
    q->method = method.n ? method : WF_STR("GET");
    q->target = target;
    q->minor_version = 1;
    split_target(target, &q->path, &q->query);
    q->headers = in->hdrs;
    size_t nh = 0;
    wf_str_t v;
    if (jl_first(o, jl_referer, &v) && !(v.n == 1 && v.p[0] == '-'))
        in->hdrs[nh++] = (wf_http_header_t){ WF_STR("Referer"), v };
    if (jl_first(o, jl_ua, &v) && !(v.n == 1 && v.p[0] == '-'))
        in->hdrs[nh++] = (wf_http_header_t){ WF_STR("User-Agent"), v };
    q->nheaders = nh;
    return 1;
}

/* ---- jsonl: the fields copied to wafer scan's output ---- */

static size_t js_ws(const char *p, size_t n, size_t i)
{
    while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    return i;
}

/* End of the JSON string starting at p[i] == '"' (one past the closing quote), or 0. */
static size_t js_str_end(const char *p, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (p[i] == '\\')
            i++;
        else if (p[i] == '"')
            return i + 1;
    }
    return 0;
}

/* End of the JSON value starting at p[i], or 0. The line was validated by
 * jansson, so this only has to find boundaries: strings and nesting. */
static size_t js_value_end(const char *p, size_t n, size_t i)
{
    size_t depth = 0;
    while (i < n) {
        char c = p[i];
        if (c == '"') {
            i = js_str_end(p, n, i);
            if (!i)
                return 0;
            if (!depth)
                return i;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
        } else if (c == '}' || c == ']') {
            if (!depth)
                return i; /* end of a scalar right before the enclosing close */
            if (--depth == 0)
                return i + 1;
        } else if (!depth && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r')) {
            return i;
        }
        i++;
    }
    return depth ? 0 : i;
}

int wf_input_extra_json(const wf_input_t *in, const char *const *reserved, wf_buf_t *out)
{
    if ((in->fmt != WF_INPUT_JSONL) || !in->extra_form || !in->line.n)
        return 0;
    static const char *const req2[] = { "url", "method", "headers", "body", NULL };
    static const char *const req1[] = { "raw", NULL };
    const char *const *skip = in->extra_form == 1 ? req1 : req2;
    const char *p = in->line.p;
    size_t n = in->line.n;
    size_t i = js_ws(p, n, 0);
    if (i >= n || p[i] != '{')
        return 0;
    i = js_ws(p, n, i + 1);
    while (i < n && p[i] == '"') {
        size_t ke = js_str_end(p, n, i);
        if (!ke)
            return -WF_EPARSE;
        size_t c = js_ws(p, n, ke);
        if (c >= n || p[c] != ':')
            return -WF_EPARSE;
        size_t vs = js_ws(p, n, c + 1);
        size_t ve = js_value_end(p, n, vs);
        if (!ve || ve <= vs)
            return -WF_EPARSE;
        /* the member's name, unescaped (it may be written with \u escapes) */
        json_t *kj = json_loadb(p + i, ke - i, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        const char *key = json_is_string(kj) ? json_string_value(kj) : "";
        bool drop = false, rename = false;
        for (const char *const *s = skip; *s; s++)
            drop |= !strcmp(key, *s);
        for (const char *const *s = reserved; s && *s; s++)
            rename |= !strcmp(key, *s);
        json_decref(kj);
        if (!drop) {
            int r = wf_buf_append(out, ",", 1);
            if (!r && rename)
                r = wf_buf_append(out, "\"input_", 7);
            if (!r)
                r = rename ? wf_buf_append(out, p + i + 1, ke - i - 1) : wf_buf_append(out, p + i, ke - i);
            if (!r)
                r = wf_buf_append(out, ":", 1);
            if (!r)
                r = wf_buf_append(out, p + vs, ve - vs);
            if (r)
                return r;
        }
        i = js_ws(p, n, ve);
        if (i < n && p[i] == ',')
            i = js_ws(p, n, i + 1);
    }
    return 0;
}

int wf_input_next(wf_input_t *in, wf_input_record_t *rec)
{
    switch (in->fmt) {
    case WF_INPUT_RAW: return next_raw(in, rec);
    case WF_INPUT_LINES: return next_lines(in, rec);
    case WF_INPUT_JSONL: return next_jsonl(in, rec);
    case WF_INPUT_NGINX: return next_nginx(in, rec);
    case WF_INPUT_JSONLOG: return next_jsonlog(in, rec);
    }
    return -EINVAL;
}
