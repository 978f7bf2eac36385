/* Extraction of inspection units from a request (see wafer/inspect.h and
 * docs/inspection.md "Units"). */
#include "internal.h"

#include <stdio.h>

void wf_inspect_conf_default(wf_inspect_conf_t *c)
{
    static const char *const hdrs[] = { "user-agent", "referer",        "origin",    "x-forwarded-for",
                                        "x-forwarded-host", "x-real-ip", "true-client-ip", "forwarded",
                                        "from" };
    memset(c, 0, sizeof(*c));
    c->max_units = 256;
    c->max_unit_bytes = 1024;
    c->window_overlap = 64;
    c->max_total_bytes = 65536;
    c->max_value_bytes = 65536;
    c->max_name_bytes = 128;
    c->max_body_bytes = 1u << 20;
    c->max_json_depth = 32;
    c->max_multipart_parts = 64;
    c->max_part_header_bytes = 1024;
    c->max_decode_passes = 3;
    c->path_segments = true;
    c->fast_path = true;
    c->safe_max_len = 64;
    for (size_t i = 0; i < WF_ARRAY_LEN(hdrs); i++)
        c->headers[i] = wf_str_c(hdrs[i]);
    c->nheaders = WF_ARRAY_LEN(hdrs);
}

static void emit(wf_ix_t *x, wf_unit_kind_t kind, wf_str_t name, wf_str_t text, uint32_t flags, uint32_t part)
{
    if (x->out->n >= x->cap_units) {
        x->out->flags |= WF_INSPECT_R_UNITS_DROPPED;
        x->stats->units_dropped++;
        return;
    }
    wf_unit_t *u = &x->out->units[x->out->n++];
    u->kind = kind;
    u->name = name;
    u->text = text;
    u->flags = flags;
    u->part = part;
    x->stats->units++;
    if (flags & WF_UNIT_F_TRUNCATED)
        x->stats->units_truncated++;
    if (x->conf->fast_path && wf_unit_is_safe(x->conf, u)) {
        u->flags |= WF_UNIT_F_SAFE;
        x->stats->units_safe++;
    }
}

static size_t utf8_back(const char *s, size_t i, size_t lo)
{
    while (i > lo && ((unsigned char)s[i] & 0xc0) == 0x80)
        i--;
    return i;
}

int wf_ix_add(wf_ix_t *x, wf_unit_kind_t kind, wf_str_t raw_name, uint32_t name_mode, wf_str_t raw_value,
              uint32_t value_mode, uint32_t extra_flags)
{
    const wf_inspect_conf_t *conf = x->conf;
    if (x->out->n >= x->cap_units) {
        x->out->flags |= WF_INSPECT_R_UNITS_DROPPED;
        x->stats->units_dropped++;
        return -WF_ELIMIT;
    }
    size_t budget = conf->max_total_bytes > x->total ? conf->max_total_bytes - x->total : 0;
    if (budget == 0) {
        x->out->flags |= WF_INSPECT_R_BYTES_CUT;
        x->stats->bytes_cut += raw_name.n + raw_value.n;
        return 0;
    }
    uint32_t flags = extra_flags;
    wf_str_t name = WF_STR_NULL;
    if (raw_name.n) {
        size_t in = WF_MIN(raw_name.n, conf->max_value_bytes);
        size_t cap = WF_MIN(conf->max_name_bytes, budget);
        char *nb = wf_arena_alloc(x->arena, cap + 1);
        if (!nb) {
            x->stats->no_memory++;
            x->out->flags |= WF_INSPECT_R_UNITS_DROPPED;
            return -WF_ELIMIT;
        }
        uint32_t nf = 0;
        size_t n = wf_inspect_decode(wf_str(raw_name.p, in), name_mode | WF_DECODE_NAME, conf->max_decode_passes,
                                     x->scratch, nb, cap, &nf);
        if (kind == WF_UNIT_HEADER)
            for (size_t i = 0; i < n; i++)
                if (nb[i] >= 'A' && nb[i] <= 'Z')
                    nb[i] |= 0x20;
        if ((nf & WF_UNIT_F_TRUNCATED) || in < raw_name.n) {
            /* a long name is a value in its own right: inspect all of it */
            flags |= WF_UNIT_F_NAME_CUT;
            int r = wf_ix_add(x, kind, WF_STR_NULL, 0, raw_name, name_mode | WF_DECODE_ENTITIES, WF_UNIT_F_NAME_CUT);
            if (r < 0)
                return r;
            budget = conf->max_total_bytes > x->total ? conf->max_total_bytes - x->total : 0;
            n = WF_MIN(n, budget);
            n = utf8_back(nb, n, 0);
        }
        flags |= nf & ~(uint32_t)WF_UNIT_F_TRUNCATED;
        name = wf_str(nb, n);
        x->total += n;
        budget -= WF_MIN(budget, n);
    }
    size_t in = raw_value.n;
    if (in > conf->max_value_bytes) {
        in = conf->max_value_bytes;
        flags |= WF_UNIT_F_TRUNCATED;
        x->stats->bytes_cut += raw_value.n - in;
    }
    size_t cap = WF_MIN(budget, 4 * in + 16);
    char *vb = wf_arena_alloc(x->arena, cap + 1);
    if (!vb) {
        x->stats->no_memory++;
        x->out->flags |= WF_INSPECT_R_UNITS_DROPPED;
        return -WF_ELIMIT;
    }
    uint32_t vf = 0;
    size_t n = wf_inspect_decode(wf_str(raw_value.p, in), value_mode, conf->max_decode_passes, x->scratch, vb, cap,
                                 &vf);
    if (vf & WF_UNIT_F_TRUNCATED) {
        x->out->flags |= WF_INSPECT_R_BYTES_CUT;
        x->stats->bytes_cut++;
    }
    flags |= vf;
    x->total += n;
    x->stats->bytes_text += n;
    wf_str_t text = wf_str(vb, n);
    size_t W = conf->max_unit_bytes ? conf->max_unit_bytes : 1;
    if (n <= W) {
        emit(x, kind, name, text, flags, 0);
        return 0;
    }
    /* windows of W bytes, each repeating `ov` bytes of the previous one so
     * that a pattern cut by one boundary is whole in the next window */
    x->stats->units_chunked++;
    size_t ov = WF_MIN(conf->window_overlap, W / 2);
    size_t start = 0;
    for (uint32_t part = 1;; part++) {
        size_t end = WF_MIN(start + W, n);
        if (end < n)
            end = utf8_back(vb, end, start + 1);
        emit(x, kind, name, wf_str(vb + start, end - start), flags | WF_UNIT_F_CHUNK, part);
        if (end >= n || x->out->n >= x->cap_units)
            break;
        size_t next = end > ov ? end - ov : end;
        while (next < end && ((unsigned char)vb[next] & 0xc0) == 0x80)
            next++;
        if (next <= start)
            next = end;
        start = next;
    }
    if (x->out->n >= x->cap_units && start + W < n) {
        x->out->flags |= WF_INSPECT_R_UNITS_DROPPED;
        x->stats->units_dropped++;
    }
    return 0;
}

void wf_ix_urlencoded(wf_ix_t *x, wf_unit_kind_t kind, wf_str_t s)
{
    size_t i = 0;
    while (i < s.n) {
        const char *amp = memchr(s.p + i, '&', s.n - i);
        size_t end = amp ? (size_t)(amp - s.p) : s.n;
        if (end > i) {
            wf_str_t piece = wf_str(s.p + i, end - i);
            const char *eq = memchr(piece.p, '=', piece.n);
            wf_str_t name = eq ? wf_str(piece.p, (size_t)(eq - piece.p)) : WF_STR_NULL;
            wf_str_t value = eq ? wf_str(eq + 1, piece.n - name.n - 1) : piece;
            /* keeps going when full: each argument left over is counted as dropped */
            wf_ix_add(x, kind, name, WF_DECODE_PERCENT | WF_DECODE_PLUS, value,
                      WF_DECODE_PERCENT | WF_DECODE_PLUS | WF_DECODE_ENTITIES, 0);
        }
        i = end + 1;
    }
}

static wf_str_t trim_ows(wf_str_t s)
{
    while (s.n && (s.p[0] == ' ' || s.p[0] == '\t'))
        s.p++, s.n--;
    while (s.n && (s.p[s.n - 1] == ' ' || s.p[s.n - 1] == '\t'))
        s.n--;
    return s;
}

static void cookies(wf_ix_t *x, wf_str_t v)
{
    size_t i = 0;
    while (i < v.n) {
        const char *semi = memchr(v.p + i, ';', v.n - i);
        size_t end = semi ? (size_t)(semi - v.p) : v.n;
        wf_str_t piece = trim_ows(wf_str(v.p + i, end - i));
        if (piece.n) {
            const char *eq = memchr(piece.p, '=', piece.n);
            wf_str_t name = eq ? trim_ows(wf_str(piece.p, (size_t)(eq - piece.p))) : WF_STR_NULL;
            wf_str_t value = eq ? trim_ows(wf_str(eq + 1, piece.n - (size_t)(eq - piece.p) - 1)) : piece;
            wf_ix_add(x, WF_UNIT_COOKIE, name, WF_DECODE_PERCENT, value,
                      WF_DECODE_PERCENT | WF_DECODE_PLUS | WF_DECODE_ENTITIES, 0);
        }
        i = end + 1;
    }
}

static void path_units(wf_ix_t *x, wf_str_t path)
{
    if (!path.n)
        return;
    if (wf_ix_add(x, WF_UNIT_PATH, WF_STR_NULL, 0, path, WF_DECODE_PERCENT | WF_DECODE_ENTITIES, 0) < 0)
        return;
    if (!x->conf->path_segments)
        return;
    size_t nseg = 0;
    for (size_t i = 0; i < path.n; i++)
        if (path.p[i] != '/' && (i == 0 || path.p[i - 1] == '/'))
            nseg++;
    if (nseg < 2)
        return;
    /* split the raw path, so that an encoded %2F stays inside its segment */
    size_t pos = 0;
    for (size_t i = 0; i < path.n;) {
        if (path.p[i] == '/') {
            i++;
            continue;
        }
        const char *sl = memchr(path.p + i, '/', path.n - i);
        size_t end = sl ? (size_t)(sl - path.p) : path.n;
        char num[24];
        int k = snprintf(num, sizeof(num), "%zu", ++pos);
        if (wf_ix_add(x, WF_UNIT_SEGMENT, wf_str(num, (size_t)k), 0, wf_str(path.p + i, end - i),
                      WF_DECODE_PERCENT | WF_DECODE_ENTITIES, 0) < 0)
            return;
        i = end;
    }
}

/* The media type of a Content-Type value: before any parameters, trimmed. */
static wf_str_t media_type(wf_str_t ct)
{
    const char *semi = ct.n ? memchr(ct.p, ';', ct.n) : NULL;
    if (semi)
        ct.n = (size_t)(semi - ct.p);
    return trim_ows(ct);
}

static bool media_is_json(wf_str_t t)
{
    if (wf_str_eq_lit_nocase(t, "application/json") || wf_str_eq_lit_nocase(t, "text/json"))
        return true;
    return t.n > 5 && wf_str_eq_lit_nocase(wf_str(t.p + t.n - 5, 5), "+json") && memchr(t.p, '/', t.n);
}

static void body_raw(wf_ix_t *x, wf_str_t body)
{
    wf_ix_add(x, WF_UNIT_BODY, WF_STR_NULL, 0, body, WF_DECODE_PERCENT | WF_DECODE_ENTITIES, 0);
}

static void body_units(wf_ix_t *x, const wf_http_request_t *req, wf_str_t body)
{
    if (!body.n)
        return;
    if (body.n > x->conf->max_body_bytes) {
        x->out->flags |= WF_INSPECT_R_BODY_CUT;
        x->stats->bodies_cut++;
        x->stats->bytes_cut += body.n - x->conf->max_body_bytes;
        body.n = x->conf->max_body_bytes;
    }
    const wf_http_header_t *cth = wf_http_header_find(req->headers, req->nheaders, "content-type");
    wf_str_t ct = cth ? cth->value : WF_STR_NULL;
    wf_str_t type = media_type(ct);
    if (wf_str_eq_lit_nocase(type, "application/x-www-form-urlencoded")) {
        wf_ix_urlencoded(x, WF_UNIT_FORM, body);
        return;
    }
    bool json = media_is_json(type);
    bool multipart = wf_str_eq_lit_nocase(type, "multipart/form-data");
    if (!json && !multipart) {
        body_raw(x, body);
        return;
    }
    size_t n0 = x->out->n, total0 = x->total;
    uint32_t flags0 = x->out->flags;
    int r = json ? wf_ix_json(x, body) : wf_ix_multipart(x, body, ct);
    if (r == 0)
        return;
    /* roll back what the scanner added and inspect the body as it is */
    x->out->n = n0;
    x->total = total0;
    x->out->flags = flags0;
    if (json) {
        x->out->flags |= r == -WF_ELIMIT ? WF_INSPECT_R_JSON_DEPTH : WF_INSPECT_R_JSON_INVALID;
        if (r == -WF_ELIMIT)
            x->stats->json_too_deep++;
        else
            x->stats->json_invalid++;
    } else {
        x->out->flags |= WF_INSPECT_R_MULTIPART_INVALID;
        x->stats->multipart_invalid++;
    }
    body_raw(x, body);
}

static int ix_init(wf_ix_t *x, const wf_inspect_conf_t *conf, wf_arena_t *arena, wf_units_t *out,
                   wf_inspect_stats_t *stats)
{
    x->conf = conf;
    x->arena = arena;
    x->out = out;
    x->stats = stats;
    x->total = 0;
    if (!out->units) {
        out->units = wf_arena_alloc(arena, sizeof(wf_unit_t) * WF_MAX(conf->max_units, (size_t)1));
        out->n = 0;
    }
    x->cap_units = out->units ? conf->max_units : 0;
    for (size_t i = 0; i < out->n; i++)
        x->total += out->units[i].text.n + out->units[i].name.n;
    x->scratch = wf_arena_alloc(arena, conf->max_value_bytes + 16);
    x->scratch2 = wf_arena_alloc(arena, conf->max_value_bytes + 16);
    if (!x->scratch || !x->scratch2 || !out->units) {
        stats->no_memory++;
        out->flags |= WF_INSPECT_R_UNITS_DROPPED;
        return -ENOMEM;
    }
    return 0;
}

int wf_inspect_request(const wf_inspect_conf_t *conf, const wf_http_request_t *req, wf_str_t body,
                       wf_arena_t *arena, wf_units_t *out, wf_inspect_stats_t *stats)
{
    wf_inspect_stats_t local;
    if (!conf || !req || !arena || !out)
        return -EINVAL;
    if (!stats) {
        memset(&local, 0, sizeof(local));
        stats = &local;
    }
    memset(out, 0, sizeof(*out));
    stats->requests++;
    wf_ix_t x;
    if (ix_init(&x, conf, arena, out, stats) < 0)
        return 0;
    path_units(&x, req->path);
    wf_ix_urlencoded(&x, WF_UNIT_QUERY, req->query);
    for (size_t i = 0; i < req->nheaders; i++)
        if (wf_str_eq_lit_nocase(req->headers[i].name, "cookie"))
            cookies(&x, req->headers[i].value);
    for (size_t i = 0; i < req->nheaders; i++) {
        const wf_http_header_t *h = &req->headers[i];
        for (size_t j = 0; j < conf->nheaders; j++)
            if (wf_str_eq_nocase(h->name, conf->headers[j])) {
                wf_ix_add(&x, WF_UNIT_HEADER, h->name, 0, h->value, WF_DECODE_PERCENT | WF_DECODE_ENTITIES, 0);
                break;
            }
    }
    body_units(&x, req, body);
    return 0;
}

int wf_inspect_value(const wf_inspect_conf_t *conf, wf_unit_kind_t kind, wf_str_t raw_name, wf_str_t raw_value,
                     wf_arena_t *arena, wf_units_t *out, wf_inspect_stats_t *stats)
{
    wf_inspect_stats_t local;
    if (!conf || !arena || !out || (unsigned)kind >= WF_UNIT__COUNT)
        return -EINVAL;
    if (!stats) {
        memset(&local, 0, sizeof(local));
        stats = &local;
    }
    wf_ix_t x;
    if (ix_init(&x, conf, arena, out, stats) < 0)
        return 0;
    uint32_t mode = WF_DECODE_PERCENT | WF_DECODE_ENTITIES;
    if (kind == WF_UNIT_QUERY || kind == WF_UNIT_FORM || kind == WF_UNIT_COOKIE)
        mode |= WF_DECODE_PLUS;
    wf_ix_add(&x, kind, raw_name, mode & ~(uint32_t)WF_DECODE_ENTITIES, raw_value, mode, 0);
    return 0;
}
