/*
 * Byte scanners of the HTTP parser (internal). Each has a SIMD version
 * (SSE2, x86-64 only) and a scalar twin with the same contract; the parser
 * calls the dispatching wf_http_scan_* functions, tests and the benchmark
 * call the twins directly or switch paths with wf_http_scan_use_simd().
 */
#ifndef WAFER_HTTP_SCAN_H
#define WAFER_HTTP_SCAN_H

#include <stdbool.h>
#include <stddef.h>

/* First byte in [p, end) that may not appear in a field value: a CTL other
 * than HTAB (so CR and LF stop the scan too) or DEL. end if none. Bytes
 * 0x80-0xff (obs-text) pass. */
const char *wf_http_scan_value_scalar(const char *p, const char *end);
/* First byte in [p, end) outside visible ASCII 0x21-0x7e (SP, CTL, DEL and
 * 0x80-0xff stop it). end if none. */
const char *wf_http_scan_target_scalar(const char *p, const char *end);

#if defined(__x86_64__) && defined(__SSE2__)
#define WF_HTTP_HAVE_SIMD 1
const char *wf_http_scan_value_simd(const char *p, const char *end);
const char *wf_http_scan_target_simd(const char *p, const char *end);
#else
#define WF_HTTP_HAVE_SIMD 0
#endif

/* Path selection, process-wide (set once at start-up; default: SIMD when
 * compiled in). Returns whether SIMD is now in use. */
bool wf_http_scan_use_simd(bool on);

extern bool wf_http_scan_simd_on_;

static inline const char *wf_http_scan_value(const char *p, const char *end)
{
#if WF_HTTP_HAVE_SIMD
    if (wf_http_scan_simd_on_)
        return wf_http_scan_value_simd(p, end);
#endif
    return wf_http_scan_value_scalar(p, end);
}

static inline const char *wf_http_scan_target(const char *p, const char *end)
{
#if WF_HTTP_HAVE_SIMD
    if (wf_http_scan_simd_on_)
        return wf_http_scan_target_simd(p, end);
#endif
    return wf_http_scan_target_scalar(p, end);
}

#endif
