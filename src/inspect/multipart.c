/* multipart/form-data (RFC 7578, RFC 2046 section 5.1), strict and bounded:
 * the body must start with the first delimiter (no preamble), delimiters end
 * in CRLF, every part has a Content-Disposition: form-data header with one
 * name, and the close delimiter must come. Anything else is malformed, and
 * the caller inspects the raw body instead. */
#include "internal.h"

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* RFC 2046 bchars, less the space, which a boundary may not end with. */
static bool is_bchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("'()+_,-./:=? ", c));
}

/* Reads one parameter (name=value) of a header value at *i, after a ';'.
 * Values may be tokens or quoted strings (backslash escapes removed into
 * out, capacity cap). Returns false when malformed. */
static bool param(wf_str_t v, size_t *i, wf_str_t *name, char *out, size_t cap, wf_str_t *value)
{
    size_t k = *i;
    while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\t'))
        k++;
    size_t s = k;
    while (k < v.n && is_tchar((unsigned char)v.p[k]))
        k++;
    if (k == s || k >= v.n || v.p[k] != '=')
        return false;
    *name = wf_str(v.p + s, k - s);
    k++;
    size_t w = 0;
    if (k < v.n && v.p[k] == '"') {
        k++;
        for (;;) {
            if (k >= v.n)
                return false;
            char c = v.p[k++];
            if (c == '"')
                break;
            if (c == '\\') {
                if (k >= v.n)
                    return false;
                c = v.p[k++];
            }
            if (out) {
                if (w >= cap)
                    return false;
                out[w++] = c;
            }
        }
        *value = out ? wf_str(out, w) : WF_STR_NULL;
    } else {
        s = k;
        while (k < v.n && v.p[k] != ';' && v.p[k] != ' ' && v.p[k] != '\t')
            k++;
        if (k == s)
            return false;
        *value = wf_str(v.p + s, k - s);
    }
    while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\t'))
        k++;
    if (k < v.n && v.p[k] != ';')
        return false;
    *i = k < v.n ? k + 1 : k;
    return true;
}

static bool boundary_of(wf_str_t ct, char *buf, size_t cap, wf_str_t *b)
{
    const char *semi = memchr(ct.p, ';', ct.n);
    if (!semi)
        return false;
    size_t i = (size_t)(semi - ct.p) + 1;
    bool found = false;
    while (i < ct.n) {
        wf_str_t name, value;
        size_t k = i;
        while (k < ct.n && (ct.p[k] == ' ' || ct.p[k] == '\t'))
            k++;
        bool isb = ct.n - k >= 9 && strncasecmp(ct.p + k, "boundary=", 9) == 0;
        if (!param(ct, &i, &name, isb ? buf : NULL, cap, &value))
            return false;
        if (wf_str_eq_lit_nocase(name, "boundary")) {
            if (found)
                return false; /* two boundaries: ambiguous */
            found = true;
            *b = value;
        }
    }
    if (!found || b->n < 1 || b->n > 70 || b->p[b->n - 1] == ' ')
        return false;
    for (size_t k = 0; k < b->n; k++)
        if (!is_bchar((unsigned char)b->p[k]))
            return false;
    return true;
}

/* The part headers: finds Content-Disposition and its name/filename. */
static bool part_headers(wf_str_t h, char *nbuf, char *fbuf, size_t cap, wf_str_t *name, wf_str_t *filename,
                         bool *has_file)
{
    bool disp = false;
    size_t i = 0;
    while (i < h.n) {
        const char *crlf = memmem(h.p + i, h.n - i, "\r\n", 2);
        size_t end = crlf ? (size_t)(crlf - h.p) : h.n;
        wf_str_t line = wf_str(h.p + i, end - i);
        i = crlf ? end + 2 : h.n;
        const char *colon = memchr(line.p, ':', line.n);
        if (!colon || colon == line.p)
            return false;
        wf_str_t hn = wf_str(line.p, (size_t)(colon - line.p));
        for (size_t k = 0; k < hn.n; k++)
            if (!is_tchar((unsigned char)hn.p[k]))
                return false;
        if (!wf_str_eq_lit_nocase(hn, "content-disposition"))
            continue;
        if (disp)
            return false;
        disp = true;
        wf_str_t v = wf_str(colon + 1, line.n - hn.n - 1);
        size_t k = 0;
        while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\t'))
            k++;
        if (v.n - k < 9 || strncasecmp(v.p + k, "form-data", 9) != 0)
            return false;
        k += 9;
        while (k < v.n && (v.p[k] == ' ' || v.p[k] == '\t'))
            k++;
        if (k < v.n && v.p[k] != ';')
            return false;
        if (k < v.n)
            k++;
        bool got_name = false, got_file = false;
        while (k < v.n) {
            wf_str_t pn, pv;
            /* peek the parameter's name to pick where its value goes */
            size_t kk = k;
            while (kk < v.n && (v.p[kk] == ' ' || v.p[kk] == '\t'))
                kk++;
            size_t s0 = kk;
            while (kk < v.n && is_tchar((unsigned char)v.p[kk]))
                kk++;
            wf_str_t peek = wf_str(v.p + s0, kk - s0);
            char *buf = wf_str_eq_lit_nocase(peek, "name")
                            ? nbuf
                            : wf_str_eq_lit_nocase(peek, "filename") || wf_str_eq_lit_nocase(peek, "filename*") ? fbuf
                                                                                                                 : NULL;
            if (!param(v, &k, &pn, buf, cap, &pv))
                return false;
            if (wf_str_eq_lit_nocase(pn, "name")) {
                if (got_name)
                    return false;
                got_name = true;
                *name = pv;
            } else if (wf_str_eq_lit_nocase(pn, "filename") || wf_str_eq_lit_nocase(pn, "filename*")) {
                if (got_file)
                    return false;
                got_file = true;
                *filename = pv;
            }
        }
        if (!got_name)
            return false;
        *has_file = got_file;
    }
    return disp;
}

int wf_ix_multipart(wf_ix_t *x, wf_str_t body, wf_str_t content_type)
{
    const wf_inspect_conf_t *conf = x->conf;
    char bbuf[80];
    wf_str_t b = WF_STR_NULL;
    if (!boundary_of(content_type, bbuf, sizeof(bbuf), &b))
        return -WF_EPARSE;
    /* "\r\n--" boundary, the delimiter as it appears between parts */
    char delim[80];
    delim[0] = '\r', delim[1] = '\n', delim[2] = '-', delim[3] = '-';
    memcpy(delim + 4, b.p, b.n);
    size_t dl = b.n + 4;
    char *nbuf = wf_arena_alloc(x->arena, conf->max_part_header_bytes + 1);
    char *fbuf = wf_arena_alloc(x->arena, conf->max_part_header_bytes + 1);
    if (!nbuf || !fbuf)
        return -WF_ELIMIT;
    /* the first delimiter has no CRLF before it */
    if (body.n < dl - 2 || memcmp(body.p, delim + 2, dl - 2) != 0)
        return -WF_EPARSE;
    size_t i = dl - 2;
    size_t parts = 0;
    for (;;) {
        /* after a delimiter: "--" closes, CRLF opens a part */
        if (body.n - i >= 2 && body.p[i] == '-' && body.p[i + 1] == '-')
            return 0; /* the epilogue is ignored, as RFC 2046 says */
        if (body.n - i < 2 || body.p[i] != '\r' || body.p[i + 1] != '\n')
            return -WF_EPARSE;
        i += 2;
        /* the header block ends at the first empty line, searched no further
         * than max_part_header_bytes so that a missing one costs little */
        size_t hwin = WF_MIN(body.n - i, conf->max_part_header_bytes + 4);
        const char *hend = memmem(body.p + i, hwin, "\r\n\r\n", 4);
        if (!hend)
            return -WF_EPARSE; /* too long, or a part without headers */
        size_t hlen = (size_t)(hend - (body.p + i));
        wf_str_t name = WF_STR_NULL, filename = WF_STR_NULL;
        bool has_file = false;
        if (!part_headers(wf_str(body.p + i, hlen), nbuf, fbuf, conf->max_part_header_bytes, &name, &filename,
                          &has_file))
            return -WF_EPARSE;
        i += hlen + 4;
        const char *dend = memmem(body.p + i, body.n - i, delim, dl);
        if (!dend)
            return -WF_EPARSE;
        wf_str_t content = wf_str(body.p + i, (size_t)(dend - (body.p + i)));
        if (++parts > conf->max_multipart_parts) {
            x->out->flags |= WF_INSPECT_R_MULTIPART_PARTS;
            x->stats->multipart_parts_dropped++;
            return 0;
        }
        if (has_file) {
            if (filename.n)
                wf_ix_add(x, WF_UNIT_FILENAME, name, WF_DECODE_PERCENT, filename,
                          WF_DECODE_PERCENT | WF_DECODE_ENTITIES, 0);
        } else {
            wf_ix_add(x, WF_UNIT_MULTIPART, name, WF_DECODE_PERCENT, content, WF_DECODE_PERCENT | WF_DECODE_ENTITIES,
                      0);
        }
        i = (size_t)(dend - body.p) + dl;
    }
}
