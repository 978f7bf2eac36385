/* Path normalisation for matching routes (see wafer/http.h). */
#include "wafer/http.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

size_t wf_http_path_normalize(wf_str_t path, char *out)
{
    /* decode into out, after a leading '/' */
    size_t n = 0;
    out[n++] = '/';
    for (size_t i = 0; i < path.n; i++) {
        char c = path.p[i];
        int h, l;
        if (c == '%' && i + 2 < path.n && (h = hexval(path.p[i + 1])) >= 0 && (l = hexval(path.p[i + 2])) >= 0) {
            c = (char)(h << 4 | l);
            i += 2;
        }
        out[n++] = c == '\\' ? '/' : c;
    }
    /* segments, in place: the write position never passes the read position */
    size_t w = 0, r = 0;
    bool dir = false; /* the result ends with '/' */
    while (r < n) {
        while (r < n && out[r] == '/')
            r++;
        size_t s = r;
        while (r < n && out[r] != '/')
            r++;
        size_t len = r - s;
        dir = r < n || len == 0;
        if (len == 0)
            continue;
        if (len == 1 && out[s] == '.') {
            dir = true;
            continue;
        }
        if (len == 2 && out[s] == '.' && out[s + 1] == '.') {
            while (w > 0 && out[w - 1] != '/')
                w--;
            if (w > 0)
                w--; /* the '/' before the dropped segment */
            dir = true;
            continue;
        }
        out[w++] = '/';
        memmove(out + w, out + s, len);
        w += len;
    }
    if (w == 0 || dir)
        out[w++] = '/';
    return w;
}
