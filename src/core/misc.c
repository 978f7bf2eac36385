/* Errors, time, hashing, JSON and string helpers (see wafer/common.h, wafer/core.h). */
#include "wafer/core.h"

#include <stdio.h>
#include <time.h>

const char *wf_strerror(int err)
{
    int e = err < 0 ? -err : err;
    switch (e) {
    case 0: return "success";
    case WF_EPARSE: return "malformed input";
    case WF_EAGAIN_MORE: return "incomplete input";
    case WF_ELIMIT: return "limit exceeded";
    case WF_ECONFIG: return "invalid configuration";
    case WF_EFORMAT: return "invalid file format";
    case WF_ECLOSED: return "connection closed";
    case WF_ETIMEOUT: return "timed out";
    case WF_EUPSTREAM: return "upstream failed";
    case WF_EOVERLOAD: return "overloaded";
    default:
        if (e < WF_EBASE)
            return strerror(e);
        return "unknown error";
    }
}

int wf_str_eq_nocase(wf_str_t a, wf_str_t b)
{
    if (a.n != b.n)
        return 0;
    for (size_t i = 0; i < a.n; i++) {
        unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b.p[i];
        if (x >= 'A' && x <= 'Z')
            x += 32;
        if (y >= 'A' && y <= 'Z')
            y += 32;
        if (x != y)
            return 0;
    }
    return 1;
}

uint64_t wf_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int wf_cond_init_monotonic(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    if (rc)
        return rc;
    if (!(rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC)))
        rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

int wf_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return pthread_cond_timedwait(cv, mu, &ts);
}

uint64_t wf_wall_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

size_t wf_time_rfc3339(uint64_t wall_us, char *out, size_t outlen)
{
    time_t secs = (time_t)(wall_us / 1000000u);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)((wall_us / 1000u) % 1000u));
    return n < 0 ? 0 : (size_t)n < outlen ? (size_t)n : outlen - 1;
}

/* 64-bit FNV-1a with a final avalanche (splitmix64); fast and adequate for
 * tables keyed by data the server controls. Tables keyed by client data use
 * a random per-process seed. */
uint64_t wf_hash64(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ull ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

size_t wf_utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    size_t len;
    uint32_t min, cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000, cp = c & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

typedef void (*json_put_fn)(void *ctx, const char *p, size_t n);

/* The one JSON string escaper; mode: 0 bytes past 0x7f as they are, 1 all of
 * them as \u00XX, 2 valid UTF-8 as it is and each byte of an invalid
 * sequence as \u00XX. */
static void json_str_escape(json_put_fn put, void *ctx, const char *p, size_t n, int mode)
{
    put(ctx, "\"", 1);
    size_t run = 0; /* bytes that need no escape, written in one call */
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)p[i];
        if (c != '"' && c != '\\' && c >= 0x20 && c != 0x7f && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80 && mode == 0) {
            i++;
            continue;
        }
        if (c >= 0x80 && mode == 2) {
            size_t k = wf_utf8_seq_len((const unsigned char *)p + i, n - i);
            if (k) {
                i += k;
                continue;
            }
        }
        if (i > run)
            put(ctx, p + run, i - run);
        run = i + 1;
        switch (c) {
        case '"': put(ctx, "\\\"", 2); break;
        case '\\': put(ctx, "\\\\", 2); break;
        case '\n': put(ctx, "\\n", 2); break;
        case '\r': put(ctx, "\\r", 2); break;
        case '\t': put(ctx, "\\t", 2); break;
        default: {
            static const char hex[] = "0123456789abcdef";
            char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            put(ctx, u, 6);
        }
        }
        i++;
    }
    if (n > run) /* p may be NULL when n is 0 */
        put(ctx, p + run, n - run);
    put(ctx, "\"", 1);
}

static void json_put_file(void *ctx, const char *p, size_t n) { fwrite(p, 1, n, (FILE *)ctx); }

void wf_json_str_write(FILE *out, const char *p, size_t n, bool ascii)
{
    json_str_escape(json_put_file, out, p, n, ascii ? 1 : 0);
}

typedef struct {
    wf_buf_t *b;
    int err;
} json_buf_ctx_t;

static void json_put_buf(void *ctx, const char *p, size_t n)
{
    json_buf_ctx_t *c = ctx;
    if (!c->err)
        c->err = wf_buf_append(c->b, p, n);
}

int wf_json_str_append(wf_buf_t *out, const char *p, size_t n)
{
    json_buf_ctx_t c = { out, 0 };
    json_str_escape(json_put_buf, &c, p, n, 2);
    return c.err;
}
