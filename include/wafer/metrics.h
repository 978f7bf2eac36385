/*
 * wafer metrics: the Prometheus text exposition format (version 0.0.4),
 * served at /metrics on the admin listener.
 *
 * Each part registers a collector once at start-up; a scrape calls every
 * collector in registration order, on the admin thread, with a writer. A
 * collector reads its part's counters with relaxed atomic loads (counters are
 * written by one thread each, see stats.h) and writes whole families:
 *
 *     wf_metrics_family(m, "wafer_requests_total", WF_METRIC_COUNTER, "Requests by action.");
 *     wf_metrics_sample(m, NULL, "action", "block", (double)n_block);
 *     wf_metrics_sample(m, NULL, "action", "pass", (double)n_pass);
 *
 * Names follow Prometheus conventions: a wafer_ prefix, _total on counters,
 * base units (_seconds, _bytes). Label values are escaped by the writer.
 */
#ifndef WAFER_METRICS_H
#define WAFER_METRICS_H

#include "wafer/core.h"
#include <stdbool.h>
#include <stdint.h>

typedef enum { WF_METRIC_COUNTER, WF_METRIC_GAUGE, WF_METRIC_HISTOGRAM } wf_metric_type_t;

typedef struct wf_metrics wf_metrics_t;

/* Starts a family: writes its # HELP and # TYPE lines. The samples that
 * follow (until the next family) belong to it. */
void wf_metrics_family(wf_metrics_t *m, const char *name, wf_metric_type_t type, const char *help);
/* One sample of the current family. suffix: NULL, or "_bucket", "_sum",
 * "_count" for histograms. Then label pairs (name, value) ending with a
 * NULL name, then the value:
 *     wf_metrics_sample(m, NULL, "class", "sqli", "route", "api", NULL, 12.0);
 * The label list is terminated by NULL before the value; values may contain
 * any bytes (escaped as the format requires). */
void wf_metrics_sample(wf_metrics_t *m, const char *suffix, ...);
/* A sample with no labels. */
void wf_metrics_value(wf_metrics_t *m, double v);

/* A fixed-bucket histogram, one writer thread (plain stores of relaxed
 * atomics), readable from the admin thread. Bounds in the unit of the
 * metric, ascending; at most WF_HIST_MAX bounds (+Inf is implicit). */
#define WF_HIST_MAX 24
typedef struct {
    uint32_t nbounds;
    double bounds[WF_HIST_MAX];
    uint64_t counts[WF_HIST_MAX + 1]; /* counts[i]: observations <= bounds[i] and > bounds[i-1]; last: +Inf */
    double sum;
    uint64_t count;
} wf_hist_t;

/* Exponential bounds: start, start*factor, ... (n of them, n <= WF_HIST_MAX). */
void wf_hist_init_exp(wf_hist_t *h, double start, double factor, uint32_t n);
/* Records one observation (owning thread only). */
void wf_hist_observe(wf_hist_t *h, double v);
/* Adds src into dst (for summing per-worker histograms with the same bounds). */
void wf_hist_merge(wf_hist_t *dst, const wf_hist_t *src);
/* Writes the _bucket/_sum/_count samples of h into the current family, with
 * extra label pairs (NULL-terminated list) before "le". */
void wf_metrics_hist(wf_metrics_t *m, const wf_hist_t *h, ...);

typedef void (*wf_metrics_collect_fn)(wf_metrics_t *m, void *arg);

/* Registers a collector (thread-safe). Returns 0 or -WF_ELIMIT (64 at most). */
int wf_metrics_register(const char *name, wf_metrics_collect_fn fn, void *arg);
/* Removes every collector registered with `arg` (for parts that stop). */
void wf_metrics_unregister(void *arg);

/* Runs every collector into out (the scrape body). Returns 0 or -ENOMEM /
 * -WF_ELIMIT when out cannot hold it. */
int wf_metrics_render(wf_buf_t *out);

/* Registers (once; later calls do nothing) the process collector:
 * wafer_build_info{version,cuda}, process_cpu_seconds_total,
 * process_start_time_seconds, process_resident_memory_bytes,
 * process_virtual_memory_bytes, process_open_fds, process_max_fds.
 * wf_admin_start calls it. */
void wf_metrics_process_register(void);

/* ---- labelled counters ----
 * A process-wide bounded table of counters keyed by up to WF_LCOUNT_LABELS
 * short label values (an action, a class, a route name), for families whose
 * label values are only known at run time. Any thread may add; the common
 * case (the key exists) takes no lock. When the table is full, new keys are
 * counted under the value "other" in every label, so no count is lost. */
#define WF_LCOUNT_LABELS 3
#define WF_LCOUNT_VALUE 48 /* longest label value kept; longer ones are cut */

typedef struct wf_lcount wf_lcount_t;

/* labels: the label names (NULL-terminated, at most WF_LCOUNT_LABELS).
 * capacity: keys held (64..65536). Registers its collector. NULL on ENOMEM. */
wf_lcount_t *wf_lcount_new(const char *family, const char *help, const char *const *labels, size_t capacity);
/* Adds n to the counter of the key (values in label order; NULL reads as ""). */
void wf_lcount_add(wf_lcount_t *t, const char *const *values, uint64_t n);
/* Unregisters and frees (no thread may be adding). */
void wf_lcount_free(wf_lcount_t *t);

#endif
