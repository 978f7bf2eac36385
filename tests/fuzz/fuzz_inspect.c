/* Fuzzes extraction: random request bytes (parsed by the real parser) and
 * random bodies of every supported type go through wf_inspect_request with
 * small limits; every unit must respect the limits and be valid UTF-8. */
#include "wafer/inspect.h"

#include <stdlib.h>

static bool utf8_valid(const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        size_t len = c < 0x80 ? 1 : c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        if (!len || i + len > n)
            return false;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            unsigned char cc = (unsigned char)p[i + k];
            if ((cc & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

static void check(const wf_inspect_conf_t *c, const wf_units_t *us)
{
    if (us->n > c->max_units)
        abort();
    size_t total = 0;
    for (size_t i = 0; i < us->n; i++) {
        const wf_unit_t *u = &us->units[i];
        if ((unsigned)u->kind >= WF_UNIT__COUNT || u->text.n > c->max_unit_bytes || u->name.n > c->max_name_bytes)
            abort();
        if (!utf8_valid(u->text.p, u->text.n) || !utf8_valid(u->name.p, u->name.n))
            abort();
        if (!u->part)
            total += u->text.n;
        total += u->name.n;
        char buf[512];
        size_t need = wf_unit_text(u, buf, sizeof(buf));
        if (need > wf_unit_text_max(c))
            abort();
    }
    /* windows share their value's bytes; names are counted once per unit */
    (void)total;
}

static const char *const types[] = {
    "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=b",
    "multipart/form-data; boundary=\"a b\"", "text/plain", "application/x+json",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wf_arena_t arena;
    static bool init;
    if (!init) {
        wf_arena_init(&arena, 64 * 1024, 8u << 20);
        init = true;
    }
    if (size < 2)
        return 0;
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    /* small limits so that every limit is reached often */
    c.max_units = 16 + data[0] % 16;
    c.max_unit_bytes = 32 + data[1] % 64;
    c.window_overlap = data[1] % 40;
    c.max_total_bytes = 512;
    c.max_value_bytes = 256;
    c.max_name_bytes = 24;
    c.max_json_depth = 4;
    c.max_multipart_parts = 3;
    c.max_part_header_bytes = 64;
    uint8_t mode = data[0] >> 5;
    const char *p = (const char *)data + 2;
    size_t n = size - 2;
    wf_units_t us;
    if (mode < 4) {
        /* a raw request: header block by the parser, the rest as its body */
        wf_http_limits_t lim;
        wf_http_limits_default(&lim);
        lim.lenient = mode & 1 ? WF_HTTP_LENIENT_BARE_LF : 0;
        wf_http_header_t hdrs[100];
        wf_http_request_t req;
        int r = wf_http_parse_request(p, n, &lim, &req, hdrs);
        if (r >= 0) {
            wf_inspect_request(&c, &req, wf_str(p + r, n - (size_t)r), &arena, &us, NULL);
            check(&c, &us);
        }
    } else {
        /* a body of a chosen type with a fixed request */
        wf_http_header_t h = { WF_STR("Content-Type"), wf_str_c(types[data[1] % WF_ARRAY_LEN(types)]) };
        wf_http_request_t req;
        memset(&req, 0, sizeof(req));
        req.method = WF_STR("POST");
        req.path = WF_STR("/");
        req.headers = &h;
        req.nheaders = 1;
        /* half the time the body also serves as the query string and cookie */
        wf_http_header_t hh[2] = { h, { WF_STR("Cookie"), wf_str(p, n) } };
        if (mode >= 6) {
            req.query = wf_str(p, n);
            req.headers = hh;
            req.nheaders = 2;
        }
        wf_inspect_request(&c, &req, wf_str(p, n), &arena, &us, NULL);
        check(&c, &us);
        wf_units_t one = { 0 };
        wf_inspect_value(&c, WF_UNIT_QUERY, WF_STR("q"), wf_str(p, n), &arena, &one, NULL);
        check(&c, &one);
    }
    wf_arena_reset(&arena);
    return 0;
}
