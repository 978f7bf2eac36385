/* Decoding of inspected values into model text (see wafer/inspect.h and
 * docs/inspection.md "Decoding"). Every step works in place or writes at most
 * the caller's capacity: no allocation here. */
#include "wafer/inspect.h"

#include <utf8proc.h>

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* %uXXXX at p (p[0] == '%'); returns the code unit or -1. */
static long pct_u_at(const char *p, size_t left)
{
    if (left < 6 || (p[1] != 'u' && p[1] != 'U'))
        return -1;
    long v = 0;
    for (int i = 2; i < 6; i++) {
        int h = hexval((unsigned char)p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

static bool has_escape(const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (b[i] != '%')
            continue;
        if (i + 2 < n && hexval((unsigned char)b[i + 1]) >= 0 && hexval((unsigned char)b[i + 2]) >= 0)
            return true;
        if (pct_u_at(b + i, n - i) >= 0)
            return true;
    }
    return false;
}

/* One percent-decoding pass in place; output never grows (%XX: 3 -> 1,
 * %uXXXX: 6 -> at most 3, a surrogate pair: 12 -> 4). */
static size_t pct_pass(char *b, size_t n, bool plus, uint32_t *flags)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        char c = b[r];
        if (c == '+' && plus) {
            b[w++] = ' ';
            continue;
        }
        if (c != '%') {
            b[w++] = c;
            continue;
        }
        int h1, h2;
        if (r + 2 < n && (h1 = hexval((unsigned char)b[r + 1])) >= 0 && (h2 = hexval((unsigned char)b[r + 2])) >= 0) {
            b[w++] = (char)(h1 * 16 + h2);
            r += 2;
            continue;
        }
        long u = pct_u_at(b + r, n - r);
        if (u < 0) {
            b[w++] = c;
            continue;
        }
        *flags |= WF_UNIT_F_PCT_U;
        uint32_t cp = (uint32_t)u;
        size_t used = 6;
        if (cp >= 0xd800 && cp <= 0xdbff) {
            long lo = r + 6 < n && b[r + 6] == '%' ? pct_u_at(b + r + 6, n - r - 6) : -1;
            if (lo >= 0xdc00 && lo <= 0xdfff) {
                cp = 0x10000 + ((cp - 0xd800) << 10) + ((uint32_t)lo - 0xdc00);
                used = 12;
            } else {
                cp = 0xfffd;
            }
        } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            cp = 0xfffd;
        }
        w += wf_utf8_put(b + w, cp);
        r += used - 1;
    }
    return w;
}

/* HTML named character references that matter for evasion (punctuation that
 * HTML5 names) plus the common Latin-1 letters. Each replacement is shorter
 * than its reference, so decoding in place never grows. */
static const struct {
    const char *name;
    uint32_t cp;
} entities[] = {
    { "amp", '&' },      { "lt", '<' },       { "gt", '>' },       { "quot", '"' },     { "apos", '\'' },
    { "nbsp", 0xa0 },    { "Tab", '\t' },     { "NewLine", '\n' }, { "colon", ':' },    { "semi", ';' },
    { "comma", ',' },    { "period", '.' },   { "sol", '/' },      { "bsol", '\\' },    { "lpar", '(' },
    { "rpar", ')' },     { "lsqb", '[' },     { "rsqb", ']' },     { "lbrack", '[' },   { "rbrack", ']' },
    { "lcub", '{' },     { "rcub", '}' },     { "lbrace", '{' },   { "rbrace", '}' },   { "excl", '!' },
    { "quest", '?' },    { "num", '#' },      { "percnt", '%' },   { "plus", '+' },     { "equals", '=' },
    { "ast", '*' },      { "midast", '*' },   { "grave", '`' },    { "Hat", '^' },      { "lowbar", '_' },
    { "verbar", '|' },   { "vert", '|' },     { "dollar", '$' },   { "commat", '@' },   { "QUOT", '"' },
    { "AMP", '&' },      { "LT", '<' },       { "GT", '>' },       { "copy", 0xa9 },    { "reg", 0xae },
    { "iexcl", 0xa1 },   { "iquest", 0xbf },  { "laquo", 0xab },   { "raquo", 0xbb },   { "aacute", 0xe1 },
    { "eacute", 0xe9 },  { "iacute", 0xed },  { "oacute", 0xf3 },  { "uacute", 0xfa },  { "ntilde", 0xf1 },
    { "Aacute", 0xc1 },  { "Eacute", 0xc9 },  { "Iacute", 0xcd },  { "Oacute", 0xd3 },  { "Uacute", 0xda },
    { "Ntilde", 0xd1 },  { "uuml", 0xfc },    { "ouml", 0xf6 },    { "auml", 0xe4 },    { "ccedil", 0xe7 },
    { "euro", 0x20ac },  { "hellip", 0x2026 }, { "ndash", 0x2013 }, { "mdash", 0x2014 },
};

/* Decodes HTML character references in place, one pass. Numeric references
 * need no ';' (browsers accept &#60); named ones do. */
static size_t entity_pass(char *b, size_t n, uint32_t *flags)
{
    size_t w = 0;
    for (size_t r = 0; r < n; r++) {
        if (b[r] != '&' || r + 2 >= n) {
            b[w++] = b[r];
            continue;
        }
        size_t p = r + 1;
        uint32_t cp = 0;
        bool ok = false;
        if (b[p] == '#') {
            p++;
            bool hex = p < n && (b[p] == 'x' || b[p] == 'X');
            if (hex)
                p++;
            size_t d0 = p;
            uint64_t v = 0;
            while (p < n) {
                int h = hexval((unsigned char)b[p]);
                if (h < 0 || (!hex && h > 9))
                    break;
                v = v * (hex ? 16 : 10) + (uint64_t)h;
                if (v > 0x110000)
                    v = 0x110000; /* saturate: any longer number is invalid */
                p++;
            }
            if (p > d0) {
                ok = true;
                cp = (uint32_t)v;
                if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                    cp = 0xfffd;
                if (p < n && b[p] == ';')
                    p++;
            }
        } else {
            size_t s = p;
            while (p < n && p - s < 8 && ((b[p] | 0x20) >= 'a' && (b[p] | 0x20) <= 'z'))
                p++;
            if (p < n && b[p] == ';' && p > s) {
                for (size_t i = 0; i < WF_ARRAY_LEN(entities); i++) {
                    if (entities[i].name[0] != b[s])
                        continue;
                    size_t len = strlen(entities[i].name);
                    if (len == p - s && memcmp(entities[i].name, b + s, len) == 0) {
                        ok = true;
                        cp = entities[i].cp;
                        p++;
                        break;
                    }
                }
            }
        }
        if (!ok) {
            b[w++] = b[r];
            continue;
        }
        *flags |= WF_UNIT_F_ENTITY;
        w += wf_utf8_put(b + w, cp);
        r = p - 1;
    }
    return w;
}

static const char HEX[] = "0123456789ABCDEF";

/* Appends `k` bytes if they fit. */
static bool put(char *out, size_t cap, size_t *w, const char *s, size_t k)
{
    if (*w + k > cap)
        return false;
    memcpy(out + *w, s, k);
    *w += k;
    return true;
}

static bool put_pct(char *out, size_t cap, size_t *w, unsigned char c)
{
    char e[3] = { '%', HEX[c >> 4], HEX[c & 15] };
    return put(out, cap, w, e, 3);
}

/* An ASCII character: controls are shown as %XX. */
static bool put_ascii(char *out, size_t cap, size_t *w, unsigned char c, bool name, uint32_t *flags)
{
    bool ws = c == '\t' || c == '\n' || c == '\r';
    if (c < 0x20 || c == 0x7f) {
        if (!ws)
            *flags |= WF_UNIT_F_CONTROL;
        if (!ws || name)
            return put_pct(out, cap, w, c);
    }
    char ch = (char)c;
    return put(out, cap, w, &ch, 1);
}

/* A code point >= 0x80: C1 controls as %XX of their UTF-8 bytes,
 * compatibility characters whose decomposition is all ASCII folded to it. */
static bool put_cp(char *out, size_t cap, size_t *w, uint32_t cp, bool name, uint32_t *flags)
{
    char u[4];
    size_t k = wf_utf8_put(u, cp);
    if (cp < 0xa0) {
        *flags |= WF_UNIT_F_CONTROL;
        for (size_t i = 0; i < k; i++)
            if (!put_pct(out, cap, w, (unsigned char)u[i]))
                return false;
        return true;
    }
    utf8proc_int32_t d[8];
    int bc = 0;
    utf8proc_ssize_t nd = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_COMPAT | UTF8PROC_DECOMPOSE, &bc);
    if (nd > 0 && nd <= 8) {
        bool ascii = true;
        for (utf8proc_ssize_t i = 0; i < nd; i++)
            if (d[i] < 0 || d[i] >= 0x80)
                ascii = false;
        if (ascii) {
            size_t w0 = *w;
            for (utf8proc_ssize_t i = 0; i < nd; i++)
                if (!put_ascii(out, cap, w, (unsigned char)d[i], name, flags)) {
                    *w = w0;
                    return false;
                }
            *flags |= WF_UNIT_F_UNICODE;
            return true;
        }
    }
    return put(out, cap, w, u, k);
}

/* UTF-8 normalisation from b into out. */
static size_t utf8_pass(const char *b, size_t n, bool name, char *out, size_t cap, uint32_t *flags, size_t *used)
{
    size_t w = 0;
    size_t r = 0;
    while (r < n) {
        unsigned char c = (unsigned char)b[r];
        bool ok;
        if (c < 0x80) {
            if (!put_ascii(out, cap, &w, c, name, flags))
                break;
            r++;
            continue;
        }
        /* lead byte: sequence length and the smallest code point that needs it */
        size_t len = 0;
        uint32_t cp = 0, min = 0;
        if (c >= 0xc0 && c <= 0xdf) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4, cp = c & 0x07, min = 0x10000;
        }
        bool valid = len > 0 && r + len <= n;
        for (size_t i = 1; valid && i < len; i++) {
            unsigned char cc = (unsigned char)b[r + i];
            if ((cc & 0xc0) != 0x80)
                valid = false;
            else
                cp = (cp << 6) | (cc & 0x3f);
        }
        if (valid && (cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
            valid = false;
        if (!valid) {
            /* one invalid byte: Latin-1 for 0xA0-0xFF, %XX for 0x80-0x9F */
            *flags |= WF_UNIT_F_BAD_UTF8;
            if (c >= 0xa0)
                ok = put_cp(out, cap, &w, c, name, flags);
            else
                ok = put_pct(out, cap, &w, c);
            if (!ok)
                break;
            r++;
            continue;
        }
        if (cp < min)
            *flags |= WF_UNIT_F_OVERLONG;
        ok = cp < 0x80 ? put_ascii(out, cap, &w, (unsigned char)cp, name, flags) : put_cp(out, cap, &w, cp, name, flags);
        if (!ok)
            break;
        r += len;
    }
    *used = r;
    return w;
}

size_t wf_inspect_decode(wf_str_t in, uint32_t mode, unsigned max_passes, char *scratch, char *out,
                         size_t out_cap, uint32_t *flags)
{
    if (in.n)
        memcpy(scratch, in.p, in.n);
    size_t n = in.n;
    if (mode & WF_DECODE_PERCENT) {
        unsigned pass = 0;
        while (pass < max_passes && has_escape(scratch, n)) {
            n = pct_pass(scratch, n, pass == 0 && (mode & WF_DECODE_PLUS), flags);
            pass++;
            *flags |= pass == 1 ? WF_UNIT_F_PERCENT : WF_UNIT_F_MULTI_DECODED;
        }
        if (pass == 0 && (mode & WF_DECODE_PLUS))
            n = pct_pass(scratch, n, true, flags);
        if (pass == max_passes && has_escape(scratch, n))
            *flags |= WF_UNIT_F_DECODE_LIMIT;
    }
    if (mode & WF_DECODE_ENTITIES)
        n = entity_pass(scratch, n, flags);
    size_t used = 0;
    size_t w = utf8_pass(scratch, n, (mode & WF_DECODE_NAME) != 0, out, out_cap, flags, &used);
    if (used < n)
        *flags |= WF_UNIT_F_TRUNCATED;
    return w;
}

wf_str_t wf_inspect_decode_str(wf_arena_t *a, wf_str_t in, uint32_t mode, unsigned max_passes, uint32_t *flags)
{
    size_t cap = 4 * in.n + 16;
    char *scratch = wf_arena_alloc(a, in.n + 1);
    char *out = wf_arena_alloc(a, cap + 1);
    if (!scratch || !out)
        return WF_STR_NULL;
    size_t n = wf_inspect_decode(in, mode, max_passes, scratch, out, cap, flags);
    out[n] = 0;
    return wf_str(out, n);
}
