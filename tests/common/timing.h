/*
 * Timing helpers for the tests and benchmarks (header-only; tools, not the library).
 */
#ifndef WAFER_TEST_TIMING_H
#define WAFER_TEST_TIMING_H

#include <time.h>

/* Seconds on the monotonic clock. */
static inline double tm_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* qsort comparator for doubles, ascending (latency percentiles). */
static inline int tm_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

#endif
