/*
 * wafer detection service: the process-wide inference service that the
 * data-plane workers submit inspection units to (docs/detection-service.md).
 *
 * Workers are "the DPU": they extract units, tokenize them themselves and
 * submit (request key, unit id, token ids) through their own port; units from
 * every worker and connection are batched together. A verdict (the unit's
 * class probabilities) comes back to the submitting worker only, through
 * its port: the port's completion callback runs in the worker's event loop.
 *
 * Backends:
 *   cpu   a pool of inference threads, each with its own wf_session, taking
 *         batches from one bounded multi-producer queue; a verdict goes into
 *         the port's bounded completion queue and the port's eventfd (in the
 *         worker's loop) is signalled once per batch.
 *   cuda  one ring (wafer/ring.h) per port, all made at start (conf.ports)
 *         and served by one scheduler on the GPU, so that units of every
 *         worker share batches; the worker is its ring's producer and
 *         consumer and polls it from its loop while submissions are
 *         outstanding (before-sleep hook and a 1 ms timer). No CUDA call is
 *         made between start and stop (the scheduler is stopped first).
 *
 * Every queue is bounded: a submission that does not fit returns -EAGAIN and
 * the caller's overload policy decides. A port never has more units in
 * flight than its completion queue holds, so a verdict is never dropped.
 *
 * The model can be replaced while serving (wf_detect_reload_model): a new
 * engine is loaded apart, then swapped in; units already submitted finish
 * on the engine they were tokenized for (wf_detect_engine_t, held by the
 * caller with wf_detect_engine_ref).
 */
#ifndef WAFER_DETECT_H
#define WAFER_DETECT_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/event.h"
#include "wafer/infer.h"
#include "wafer/inspect.h"
#include <stdbool.h>
#include <stdint.h>

typedef enum { WF_DETECT_AUTO, WF_DETECT_CPU, WF_DETECT_CUDA } wf_detect_backend_t;
typedef enum { WF_OVERLOAD_FAIL_OPEN, WF_OVERLOAD_FAIL_CLOSED } wf_overload_t;
typedef enum { WF_BODY_INSPECT_PREFIX, WF_BODY_REJECT } wf_body_over_t;

/* The `detection:` section (docs/configuration.md). */
typedef struct wf_detect_conf {
    bool enabled;              /* the section is present and `enabled` is not false */
    char *model_dir;           /* resolved: absolute, or relative to the configuration file */
    wf_detect_backend_t backend; /* auto */
    int threads;               /* CPU inference threads (0 = auto: online CPUs, at most 64) */
    int max_batch;             /* units per model run (32) */
    uint64_t batch_wait_us;    /* the longest a unit waits for others to fill a batch (500us) */
    uint32_t max_queue;        /* units queued for inference, all workers (4096) */
    uint32_t max_inflight;     /* units in flight per worker: its completion queue (4096) */
    wf_overload_t overload;    /* fail_open */
    uint64_t timeout_ms;       /* a request waits this long for its verdict, then overload applies (1s) */
    uint32_t cache_entries;    /* per worker: unit texts remembered with their probabilities (4096; 0: off) */
    wf_body_over_t body_over_limit; /* inspect_prefix */
    wf_inspect_conf_t inspect; /* limits (inspect.h); max_body_bytes is also bounded by limits.buffer_size */
    int ports;                 /* set by the server: ports (workers) that will open; the cuda backend makes one
                                * ring for each at start (0: one) and refuses ports beyond */
} wf_detect_conf_t;

/* Parses the `detection` section (node may be NULL: detection off). The
 * model directory is resolved against the directory of conf_file. Unknown
 * keys are errors. Returns 0 or WF_ECONFIG / -ENOMEM with err set. */
int wf_detect_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, const char *conf_file,
                         wf_detect_conf_t **out, wf_conf_err_t *err);
void wf_detect_conf_free(wf_detect_conf_t *dc);
const char *wf_detect_backend_name(wf_detect_backend_t b);

/* ---- engines: one loaded model and what runs it ---- */

typedef struct wf_detect_engine wf_detect_engine_t;

const wf_model_meta_t *wf_detect_engine_meta(const wf_detect_engine_t *e);
const wf_tokenizer_t *wf_detect_engine_tokenizer(const wf_detect_engine_t *e);
/* Tokens per unit (the model's max_len, bounded by its positions). */
int wf_detect_engine_max_len(const wf_detect_engine_t *e);
/* "cpu" or "cuda". */
const char *wf_detect_engine_backend(const wf_detect_engine_t *e);
/* Whether the model reads units of this kind (wafer.json "units"). */
bool wf_detect_engine_reads(const wf_detect_engine_t *e, wf_unit_kind_t k);
/* A number that changes with every engine (caches key on it). */
uint64_t wf_detect_engine_id(const wf_detect_engine_t *e);
void wf_detect_engine_ref(wf_detect_engine_t *e);
void wf_detect_engine_unref(wf_detect_engine_t *e);

/* ---- the service ---- */

typedef struct wf_detect wf_detect_t;

/* Loads the model and starts the backend. Returns 0 or -errno / -WF_E* with
 * a message naming the file and the reason in err. */
int wf_detect_start(const wf_detect_conf_t *conf, wf_detect_t **out, char *err, size_t errlen);
/* Stops the inference threads (after the queued units) and frees everything.
 * Every port must be closed first. */
void wf_detect_stop(wf_detect_t *d);

/* The engine new submissions go to, with a reference the caller drops. */
wf_detect_engine_t *wf_detect_engine_get(wf_detect_t *d);

/* Loads the model directory `dir` apart and, when it loads, swaps it in for
 * new submissions; the old engine serves what was submitted to it and is
 * freed after. A model that fails to load is refused (err names the file and
 * the reason) and the current one keeps serving. Returns 0, 1 when `dir` is
 * the directory already serving (nothing done), or a negative error. Called
 * from one thread (the main thread). */
int wf_detect_reload_model(wf_detect_t *d, const char *dir, char *err, size_t errlen);

/* ---- ports: one per worker ---- */

typedef struct wf_detect_port wf_detect_port_t;

/* A verdict: probs holds the engine's num_labels probabilities, or is NULL
 * when the unit could not be classified (a backend error). */
typedef void (*wf_detect_verdict_fn)(void *arg, uint64_t key, uint32_t unit, const float *probs);

/* Opens a port in a worker's loop (called in that worker's thread). */
int wf_detect_port_open(wf_detect_t *d, wf_loop_t *loop, wf_detect_verdict_fn fn, void *arg,
                        wf_detect_port_t **out);
/* Closes the port: verdicts still due are discarded. Waits for the units it
 * has in flight on the CPU backend to finish (at most one batch each). */
void wf_detect_port_close(wf_detect_port_t *p);

/* Submits one unit's token ids (with [CLS]/[SEP], len 1..max_len) for
 * engine e (the one it was tokenized with). Returns 0, -EAGAIN when a queue
 * is full (the port's in-flight bound or the service's queue), -EINVAL for
 * a bad length. Never blocks. */
int wf_detect_submit(wf_detect_port_t *p, wf_detect_engine_t *e, uint64_t key, uint32_t unit, const int32_t *ids,
                     int len);
/* Makes queued submissions visible to the backend now (the CPU backend
 * wakes an inference thread once per flush, not once per unit). */
void wf_detect_flush(wf_detect_port_t *p);
/* Units submitted through the port whose verdicts have not been delivered. */
uint32_t wf_detect_port_inflight(const wf_detect_port_t *p);

/* Counters (summed over the service; read from any thread). */
typedef struct {
    uint64_t submitted;        /* units accepted */
    uint64_t completed;        /* verdicts delivered */
    uint64_t rejected_full;    /* submissions refused: a queue was full */
    uint64_t batches;          /* model runs */
    uint64_t errors;           /* units whose run failed */
    uint64_t queue_depth;      /* units queued now */
    uint64_t model_swaps;      /* models replaced by a reload */
    uint64_t gpu_host_calls;   /* cuda backend: host CUDA calls since the GPU scheduler started (0: none per unit) */
} wf_detect_stats_t;
void wf_detect_stats(wf_detect_t *d, wf_detect_stats_t *out);

/* Test knob: WAFER_TEST_INFER_DELAY_MS, read at wf_detect_start, adds that
 * delay to every batch the CPU backend runs (to test overload). */

/* The process-wide service (set by the server at start; NULL when detection is off). */
extern wf_detect_t *wf_detect_global;

#endif
