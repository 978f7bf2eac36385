/* A strict, bounded, non-recursive JSON scanner (RFC 8259) that turns every
 * leaf into a unit named by its path (user.tags[2]). Nesting is tracked in an
 * explicit stack of max_json_depth entries, so hostile nesting costs neither
 * stack nor unbounded memory. */
#include "internal.h"

#include <stdio.h>

typedef struct {
    const char *p;
    size_t n, i;
} js_t;

typedef struct {
    bool array;
    uint32_t index;
    size_t path_len; /* length of the container's own path */
} frame_t;

static void ws(js_t *j)
{
    while (j->i < j->n) {
        char c = j->p[j->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        j->i++;
    }
}

static int hex4(const char *p)
{
    int v = 0;
    for (int k = 0; k < 4; k++) {
        char c = p[k];
        int h = c >= '0' && c <= '9' ? c - '0' : (c | 0x20) >= 'a' && (c | 0x20) <= 'f' ? (c | 0x20) - 'a' + 10 : -1;
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Scans a string at j->i (on the opening quote) and unescapes it into out
 * (capacity cap; the unescaped form is never longer than the escaped one, so
 * cap >= the raw length is enough; beyond cap bytes are dropped and *cut set).
 * Returns the unescaped length or -1 when malformed. */
static long string(js_t *j, char *out, size_t cap, uint32_t *flags, bool *cut)
{
    j->i++;
    size_t w = 0;
    while (j->i < j->n) {
        unsigned char c = (unsigned char)j->p[j->i];
        if (c == '"') {
            j->i++;
            return (long)w;
        }
        if (c < 0x20)
            return -1;
        char buf[4];
        size_t k = 1;
        if (c != '\\') {
            buf[0] = (char)c;
            j->i++;
        } else {
            if (j->i + 1 >= j->n)
                return -1;
            char e = j->p[j->i + 1];
            j->i += 2;
            switch (e) {
            case '"': buf[0] = '"'; break;
            case '\\': buf[0] = '\\'; break;
            case '/': buf[0] = '/'; break;
            case 'b': buf[0] = '\b'; break;
            case 'f': buf[0] = '\f'; break;
            case 'n': buf[0] = '\n'; break;
            case 'r': buf[0] = '\r'; break;
            case 't': buf[0] = '\t'; break;
            case 'u': {
                if (j->i + 4 > j->n)
                    return -1;
                int u = hex4(j->p + j->i);
                if (u < 0)
                    return -1;
                j->i += 4;
                uint32_t cp = (uint32_t)u;
                if (cp >= 0xd800 && cp <= 0xdbff) {
                    int lo = -1;
                    if (j->i + 6 <= j->n && j->p[j->i] == '\\' && j->p[j->i + 1] == 'u')
                        lo = hex4(j->p + j->i + 2);
                    if (lo >= 0xdc00 && lo <= 0xdfff) {
                        cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                        j->i += 6;
                    } else {
                        cp = 0xfffd;
                    }
                } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                    cp = 0xfffd;
                }
                if (cp < 0x80) {
                    buf[0] = (char)cp;
                    *flags |= WF_UNIT_F_JSON_ESCAPE;
                } else if (cp < 0x800) {
                    buf[0] = (char)(0xc0 | (cp >> 6));
                    buf[1] = (char)(0x80 | (cp & 0x3f));
                    k = 2;
                } else if (cp < 0x10000) {
                    buf[0] = (char)(0xe0 | (cp >> 12));
                    buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    buf[2] = (char)(0x80 | (cp & 0x3f));
                    k = 3;
                } else {
                    buf[0] = (char)(0xf0 | (cp >> 18));
                    buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
                    buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
                    buf[3] = (char)(0x80 | (cp & 0x3f));
                    k = 4;
                }
                break;
            }
            default:
                return -1;
            }
        }
        if (w + k <= cap) {
            memcpy(out + w, buf, k);
            w += k;
        } else {
            *cut = true;
        }
    }
    return -1;
}

static bool number(js_t *j)
{
    size_t i = j->i;
    const char *p = j->p;
    size_t n = j->n;
#define DIG(c) ((c) >= '0' && (c) <= '9')
    if (i < n && p[i] == '-')
        i++;
    if (i >= n || !DIG(p[i]))
        return false;
    if (p[i] == '0')
        i++;
    else
        while (i < n && DIG(p[i]))
            i++;
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !DIG(p[i]))
            return false;
        while (i < n && DIG(p[i]))
            i++;
    }
    if (i < n && (p[i] == 'e' || p[i] == 'E')) {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !DIG(p[i]))
            return false;
        while (i < n && DIG(p[i]))
            i++;
    }
#undef DIG
    j->i = i;
    return true;
}

static bool literal(js_t *j, const char *lit)
{
    size_t l = strlen(lit);
    if (j->n - j->i < l || memcmp(j->p + j->i, lit, l) != 0)
        return false;
    j->i += l;
    return true;
}

/* Path buffer: the path of the value being scanned, cut at cap bytes. */
typedef struct {
    char *b;
    size_t len, cap;
    bool cut;
} path_t;

static void path_append(path_t *pt, const char *s, size_t n)
{
    size_t room = pt->cap - pt->len;
    if (n > room) {
        n = room;
        pt->cut = true;
    }
    memcpy(pt->b + pt->len, s, n);
    pt->len += n;
}

int wf_ix_json(wf_ix_t *x, wf_str_t body)
{
    const wf_inspect_conf_t *conf = x->conf;
    size_t maxd = conf->max_json_depth ? conf->max_json_depth : 1;
    frame_t *st = wf_arena_alloc(x->arena, sizeof(frame_t) * maxd);
    path_t pt = { wf_arena_alloc(x->arena, conf->max_name_bytes + 1), 0, conf->max_name_bytes, false };
    /* string values are unescaped into scratch2; keys into a small buffer */
    char *key = wf_arena_alloc(x->arena, conf->max_name_bytes + 1);
    if (!st || !pt.b || !key) {
        x->stats->no_memory++;
        return -WF_ELIMIT;
    }
    js_t j = { body.p, body.n, 0 };
    size_t depth = 0;
    ws(&j);
    /* each iteration scans one value at the current path, then the
     * punctuation after it */
    for (;;) {
        ws(&j);
        if (j.i >= j.n)
            return -WF_EPARSE;
        char c = j.p[j.i];
        if (c == '{' || c == '[') {
            if (depth >= maxd)
                return -WF_ELIMIT;
            j.i++;
            st[depth] = (frame_t){ c == '[', 0, pt.len };
            depth++;
            ws(&j);
            if (j.i < j.n && j.p[j.i] == (c == '[' ? ']' : '}')) {
                j.i++;
                depth--;
                pt.len = st[depth].path_len;
                goto after_value;
            }
            goto member;
        }
        {
            uint32_t flags = 0;
            wf_str_t raw;
            uint32_t mode = WF_DECODE_PERCENT | WF_DECODE_ENTITIES;
            if (c == '"') {
                bool cut = false;
                long n = string(&j, x->scratch2, conf->max_value_bytes, &flags, &cut);
                if (n < 0)
                    return -WF_EPARSE;
                raw = wf_str(x->scratch2, (size_t)n);
                if (cut)
                    flags |= WF_UNIT_F_TRUNCATED;
            } else {
                size_t s = j.i;
                if (!(literal(&j, "true") || literal(&j, "false") || literal(&j, "null") || number(&j)))
                    return -WF_EPARSE;
                raw = wf_str(j.p + s, j.i - s);
                mode = 0;
            }
            if (pt.cut)
                flags |= WF_UNIT_F_NAME_CUT;
            /* a full unit list is not a JSON error: keep validating */
            wf_ix_add(x, WF_UNIT_JSON, wf_str(pt.b, pt.len), 0, raw, mode, flags);
        }
    after_value:
        ws(&j);
        if (depth == 0) {
            return j.i == j.n ? 0 : -WF_EPARSE;
        }
        if (j.i >= j.n)
            return -WF_EPARSE;
        {
            frame_t *f = &st[depth - 1];
            char p = j.p[j.i++];
            if (p == (f->array ? ']' : '}')) {
                depth--;
                pt.len = f->path_len;
                goto after_value;
            }
            if (p != ',')
                return -WF_EPARSE;
            f->index++;
            ws(&j);
        }
    member: {
        frame_t *f = &st[depth - 1];
        pt.len = f->path_len;
        pt.cut = false;
        if (f->array) {
            char num[24];
            int k = snprintf(num, sizeof(num), "[%u]", f->index);
            path_append(&pt, num, (size_t)k);
            continue;
        }
        ws(&j);
        if (j.i >= j.n || j.p[j.i] != '"')
            return -WF_EPARSE;
        uint32_t kf = 0;
        bool cut = false;
        long kn = string(&j, key, conf->max_name_bytes, &kf, &cut);
        if (kn < 0)
            return -WF_EPARSE;
        ws(&j);
        if (j.i >= j.n || j.p[j.i] != ':')
            return -WF_EPARSE;
        j.i++;
        if (pt.len)
            path_append(&pt, ".", 1);
        path_append(&pt, key, (size_t)kn);
        if (cut)
            pt.cut = true;
    }
    }
}
