/*
 * wafer: common definitions shared by every part.
 *
 * Error convention (data plane): functions return 0 or a positive count on
 * success and a negative value on failure: either a negated errno (-ENOMEM,
 * -EINVAL, ...) or one of the WF_E* codes below, which live above errno's
 * range. wf_strerror() names both. Inference uses its own status enum
 * (wafer/infer.h); tools exit on error, the library never does.
 */
#ifndef WAFER_COMMON_H
#define WAFER_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <errno.h>

#define WF_VERSION_MAJOR 0
#define WF_VERSION_MINOR 1
#define WF_VERSION_PATCH 0
#define WF_VERSION "0.1.0"

/* wafer-specific errors, negated like errno values */
enum {
    WF_EBASE = 10000,
    WF_EPARSE,      /* malformed input */
    WF_EAGAIN_MORE, /* incomplete input: feed more bytes */
    WF_ELIMIT,      /* a configured limit was hit */
    WF_ECONFIG,     /* invalid configuration */
    WF_EFORMAT,     /* a file is not in the expected format */
    WF_ECLOSED,     /* peer closed the connection */
    WF_ETIMEOUT,    /* a deadline passed */
    WF_EUPSTREAM,   /* upstream failed */
    WF_EOVERLOAD,   /* a bounded queue is full */
    WF_ELAST
};

/* Name of an error code returned by any data-plane function (negative). */
const char *wf_strerror(int err);

/* A (pointer, length) slice; never assumed NUL-terminated. */
typedef struct {
    const char *p;
    size_t n;
} wf_str_t;

#define WF_STR(lit) ((wf_str_t){ (lit), sizeof(lit) - 1 })
#define WF_STR_NULL ((wf_str_t){ NULL, 0 })

static inline wf_str_t wf_str(const char *p, size_t n) { return (wf_str_t){ p, n }; }
static inline wf_str_t wf_str_c(const char *s) { return (wf_str_t){ s, s ? strlen(s) : 0 }; }
static inline int wf_str_eq(wf_str_t a, wf_str_t b) { return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0); }
/* ASCII case-insensitive equality (header names, tokens). */
int wf_str_eq_nocase(wf_str_t a, wf_str_t b);
static inline int wf_str_eq_lit_nocase(wf_str_t a, const char *lit) { return wf_str_eq_nocase(a, wf_str_c(lit)); }

#define WF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define WF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define WF_MAX(a, b) ((a) > (b) ? (a) : (b))
#define WF_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((size_t)(a) - 1))
#define WF_CONTAINER_OF(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

#if defined(__GNUC__)
#define WF_LIKELY(x) __builtin_expect(!!(x), 1)
#define WF_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define WF_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define WF_UNUSED __attribute__((unused))
#else
#define WF_LIKELY(x) (x)
#define WF_UNLIKELY(x) (x)
#define WF_PRINTF(a, b)
#define WF_UNUSED
#endif

#endif
