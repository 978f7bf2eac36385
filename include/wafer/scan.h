/*
 * wafer scan: classify requests offline (docs/scan.md).
 *
 * A scanner reads requests with the input readers of inspect.h, extracts
 * their units, sends the units the fast path keeps to one inference session
 * in large batches (across requests), applies the model's per-class
 * thresholds (policy.h) and writes one verdict per request, in input order.
 *
 * Memory is bounded: input is processed as a stream of chunks (at most
 * chunk_units classified units or chunk_requests requests at a time); a
 * cache of recently classified unit texts (exact text match, bounded in
 * entries and bytes) saves the model from texts it has already seen, such
 * as the user agent that every request of a client repeats.
 */
#ifndef WAFER_SCAN_H
#define WAFER_SCAN_H

#include "wafer/infer.h"
#include "wafer/inspect.h"
#include <stdio.h>

typedef struct {
    wf_input_format_t format;
    const char *lines_name;   /* argument name of `lines` payloads ("q") */
    size_t chunk_units;       /* units classified per chunk (4096) */
    size_t chunk_requests;    /* requests per chunk (8192) */
    size_t chunk_bytes;       /* text bytes held per chunk (16 MiB) */
    size_t cache_entries;     /* unit texts remembered across chunks (65536; 0: only within a chunk) */
    size_t cache_bytes;       /* bytes of text the cache holds (32 MiB) */
    int max_batch;            /* sequences per model run; must be <= the session's max_batch (128) */
    size_t max_listed_units;  /* crossing units listed per request (16) */
    size_t display_bytes;     /* unit text shown per listed unit (256) */
    FILE *out;                /* JSON-lines output, or NULL for none (summary only) */
} wf_scan_opts_t;

void wf_scan_opts_default(wf_scan_opts_t *o);

typedef struct {
    uint64_t requests;        /* records read, invalid ones included */
    uint64_t benign, attack, invalid;
    uint64_t per_class[WF_MAX_LABELS]; /* attack requests by deciding class */
    uint64_t units;           /* units extracted */
    uint64_t units_safe;      /* skipped by the fast path */
    uint64_t units_unread;    /* skipped: a kind the model does not read (wafer.json "units") */
    uint64_t units_classified;/* units given a probability */
    uint64_t units_model;     /* of those, texts the model ran on (the rest came from the cache) */
    uint64_t units_crossing;  /* units that crossed a threshold */
    uint64_t tokens;          /* tokens the model ran on */
    uint64_t model_ns;        /* time in wf_session_run */
    uint64_t inspect_ns;      /* time in extraction */
    uint64_t start_ns;        /* when the scanner was created */
} wf_scan_stats_t;

typedef struct wf_scan wf_scan_t;

/* Creates a scanner over a loaded model and a session made for it (both
 * owned by the caller, outliving the scanner). Returns WF_ERR_INVALID with
 * a message for options the session cannot serve, or WF_ERR_NOMEM. */
wf_status_t wf_scan_new(const wf_model_t *m, wf_session_t *s, const wf_scan_opts_t *opts, wf_scan_t **out,
                        wf_err_t *err);
void wf_scan_free(wf_scan_t *sc);

/* Called after every chunk (progress display). */
void wf_scan_set_progress(wf_scan_t *sc, void (*fn)(const wf_scan_stats_t *st, void *arg), void *arg);

/* Scans one input stream to its end and writes every verdict (nothing is
 * held back across calls); request numbers continue across calls. Returns 0,
 * or a negative errno / -WF_E* for a read, write or inference failure, which
 * wf_scan_error() describes. */
int wf_scan_file(wf_scan_t *sc, FILE *in);
const char *wf_scan_error(const wf_scan_t *sc);

const wf_scan_stats_t *wf_scan_stats(const wf_scan_t *sc);

/* Writes the summary (docs/scan.md "Summary"): one "key: value" line each. */
void wf_scan_summary_print(const wf_scan_t *sc, FILE *fp);

#endif
