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

void wf_json_str_write(FILE *out, const char *p, size_t n, bool ascii)
{
    putc('"', out);
    size_t run = 0; /* bytes that need no escape, written in one call */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c != '"' && c != '\\' && c >= 0x20 && c != 0x7f && (c < 0x80 || !ascii))
            continue;
        if (i > run)
            fwrite(p + run, 1, i - run, out);
        run = i + 1;
        switch (c) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        default: fprintf(out, "\\u%04x", c);
        }
    }
    if (n > run) /* p may be NULL when n is 0 */
        fwrite(p + run, 1, n - run, out);
    putc('"', out);
}
