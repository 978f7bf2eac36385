/*
 * wafer core: memory (arenas, fixed-size pools, bounded byte buffers),
 * monotonic time, hashing, JSON strings and the process log.
 *
 * Memory habits: allocate at start-up; per request, allocate from an arena
 * that is reset when the request ends; per connection, take fixed-size
 * objects from a pool. Buffers have a hard capacity: nothing on the data
 * path grows without bound.
 */
#ifndef WAFER_CORE_H
#define WAFER_CORE_H

#include "wafer/common.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>

/* ---- arena: bump allocation in chunks, freed all at once ---- */

typedef struct wf_arena_chunk wf_arena_chunk_t;

typedef struct {
    wf_arena_chunk_t *head;   /* current chunk */
    wf_arena_chunk_t *first;  /* the first chunk is kept across resets */
    size_t chunk_size;        /* size of ordinary chunks */
    size_t limit;             /* bytes the arena may hold in all; 0 = no limit */
    size_t total;             /* bytes held now (chunks) */
} wf_arena_t;

/* chunk_size: bytes per chunk; limit: cap on all chunks together (0: none). */
void wf_arena_init(wf_arena_t *a, size_t chunk_size, size_t limit);
/* Returns 16-byte aligned memory, or NULL when out of memory or over limit. */
void *wf_arena_alloc(wf_arena_t *a, size_t n);
void *wf_arena_calloc(wf_arena_t *a, size_t n);
char *wf_arena_strndup(wf_arena_t *a, const char *s, size_t n);
/* Frees all but the first chunk and rewinds it. */
void wf_arena_reset(wf_arena_t *a);
void wf_arena_free(wf_arena_t *a);

/* ---- pool: fixed-size objects, bounded count ---- */

typedef struct {
    size_t obj_size;
    size_t max;      /* most objects alive at once */
    size_t live;     /* objects handed out now */
    void *free_list;
    size_t free_count;
} wf_pool_t;

void wf_pool_init(wf_pool_t *p, size_t obj_size, size_t max);
/* NULL when `max` objects are alive or memory is exhausted. */
void *wf_pool_get(wf_pool_t *p);
void wf_pool_put(wf_pool_t *p, void *obj);
void wf_pool_free(wf_pool_t *p);

/* ---- growable arrays ---- */

/* Makes room in a heap array of `elem`-byte items for item n (n <= *cap):
 * with n < *cap returns p as it is, otherwise reallocates it to twice *cap
 * items (`first` when *cap is 0) and updates *cap. Returns the array, or NULL
 * (p and *cap unchanged) when there is no memory or the size overflows. */
void *wf_array_grow(void *p, size_t *cap, size_t n, size_t elem, size_t first);

/* ---- buf: a byte buffer with a hard capacity ---- */

typedef struct {
    char *data;
    size_t start; /* first unread byte */
    size_t end;   /* one past the last written byte */
    size_t cap;   /* allocated bytes */
    size_t max;   /* the most it may grow to */
} wf_buf_t;

/* Allocates `initial` bytes now; grows on demand up to `max`. */
int wf_buf_init(wf_buf_t *b, size_t initial, size_t max);
void wf_buf_free(wf_buf_t *b);
static inline size_t wf_buf_len(const wf_buf_t *b) { return b->end - b->start; }
static inline char *wf_buf_rptr(const wf_buf_t *b) { return b->data + b->start; }
static inline char *wf_buf_wptr(const wf_buf_t *b) { return b->data + b->end; }
static inline size_t wf_buf_space(const wf_buf_t *b) { return b->cap - b->end; }
/* Ensures at least `n` writable bytes after end, compacting or growing
 * (up to max). Returns 0 or WF_ELIMIT / -ENOMEM. */
int wf_buf_reserve(wf_buf_t *b, size_t n);
int wf_buf_append(wf_buf_t *b, const void *p, size_t n);
int wf_buf_appendf(wf_buf_t *b, const char *fmt, ...) WF_PRINTF(2, 3);
static inline void wf_buf_consume(wf_buf_t *b, size_t n)
{
    b->start += n;
    if (b->start == b->end)
        b->start = b->end = 0;
}
static inline void wf_buf_commit(wf_buf_t *b, size_t n) { b->end += n; }
static inline void wf_buf_clear(wf_buf_t *b) { b->start = b->end = 0; }
/* Moves unread bytes to the front. */
void wf_buf_compact(wf_buf_t *b);

/* ---- UTF-8 ---- */

/* The length (1-4) of the valid UTF-8 sequence at p[0..n), n >= 1, or 0 when
 * it is not one (overlong forms, surrogates and code points past U+10FFFF are
 * invalid). */
size_t wf_utf8_seq_len(const unsigned char *p, size_t n);
/* Writes code point cp (at most 0x10FFFF; not checked) as 1-4 bytes of UTF-8
 * at o; returns the count. */
static inline size_t wf_utf8_put(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* ---- time ---- */

/* Monotonic clock in nanoseconds / milliseconds. */
uint64_t wf_now_ns(void);
static inline uint64_t wf_now_ms(void) { return wf_now_ns() / 1000000u; }

/* A condition variable whose timed waits run on the monotonic clock (not
 * moved by changes to the wall clock), and a wait of at most ms on it. The
 * wait returns 0 when signalled (or woken spuriously), ETIMEDOUT after ms. */
int wf_cond_init_monotonic(pthread_cond_t *cv);
int wf_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, uint64_t ms);
/* Wall clock, microseconds since the epoch. */
uint64_t wf_wall_us(void);
/* Writes an RFC 3339 UTC timestamp with milliseconds ("2026-11-21T06:24:44.123Z")
 * into out (at least 25 bytes); returns its length. */
size_t wf_time_rfc3339(uint64_t wall_us, char *out, size_t outlen);

/* ---- hashing ---- */

uint64_t wf_hash64(const void *p, size_t n, uint64_t seed);

/* ---- JSON output ---- */

/* Writes p[0..n) as a JSON string literal, quotes included: '"', '\\' and
 * control characters (and DEL) escaped, other bytes as they are. Meant for
 * text known to be valid UTF-8; for text that may not be, `ascii` escapes
 * every byte past 0x7f as the Latin-1 character \u00XX. */
void wf_json_str_write(FILE *out, const char *p, size_t n, bool ascii);
/* Appends p[0..n) to out as a JSON string literal for text of unknown
 * encoding: valid UTF-8 is kept, each byte of an invalid sequence is written
 * as the Latin-1 character \u00XX, so the result is always valid JSON.
 * Returns 0 or -ENOMEM / -WF_ELIMIT. */
int wf_json_str_append(wf_buf_t *out, const char *p, size_t n);

/* ---- log (the process's error log, to stderr or a file) ---- */

typedef enum { WF_LOG_DEBUG, WF_LOG_INFO, WF_LOG_WARN, WF_LOG_ERROR } wf_log_level_t;

void wf_log_set_level(wf_log_level_t lvl);
wf_log_level_t wf_log_get_level(void);
/* Parses "debug", "info", "warn", "error"; returns -1 if unknown. */
int wf_log_level_parse(const char *s);
/* Redirects the log to a file (append); NULL restores stderr. */
int wf_log_open(const char *path);
void wf_log(wf_log_level_t lvl, const char *fmt, ...) WF_PRINTF(2, 3);
void wf_logv(wf_log_level_t lvl, const char *fmt, va_list ap);

#define wf_debug(...) do { if (wf_log_get_level() <= WF_LOG_DEBUG) wf_log(WF_LOG_DEBUG, __VA_ARGS__); } while (0)
#define wf_info(...) wf_log(WF_LOG_INFO, __VA_ARGS__)
#define wf_warn(...) wf_log(WF_LOG_WARN, __VA_ARGS__)
#define wf_error(...) wf_log(WF_LOG_ERROR, __VA_ARGS__)

#endif
