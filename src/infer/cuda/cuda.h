/*
 * The CUDA backend's C interface, internal to the CUDA module (wafer-cuda.so).
 * wafer_lib never calls these directly: it loads the module with dlopen and
 * goes through its table (infer/cuda_module.h).
 *
 * Numerics: weights in bf16 (matrix products through cuBLASLt with fp32
 * accumulation); norm parameters, biases, the residual stream, attention
 * scores/softmax and the classifier head in fp32.
 */
#ifndef WAFER_INFER_CUDA_H
#define WAFER_INFER_CUDA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "infer/backend.h"

extern const wf_backend_ops_t wf_backend_cuda;

/* Whether a usable GPU (compute capability >= 9.0, the code we build) is
 * present: 1, or 0 with the reason written to why. Cached after the first call. */
int wf_cuda_probe(char *why, size_t whylen);

/* Host CUDA calls (runtime, driver, cuBLASLt) made by the backend and the ring
 * since the process started. */
uint64_t wf_cuda_host_calls(void);

/* ---- the backend's device-side entry points, for the ring's scheduler ---- */

/* A bucket's device-side view: where a batch's inputs go and its outputs come
 * from, and the graph that runs it. */
typedef struct {
    int tokens;          /* Tb: token capacity */
    int seqs;            /* nb: sequence capacity */
    int items;           /* attention work items capacity */
    int32_t *d_in;       /* device input block (layout: wf_cuda_in_layout) */
    size_t in_bytes;
    float *d_logits;     /* (nb, C) */
    float *d_probs;      /* (nb, C) */
    void *graph_exec;    /* cudaGraphExec_t (host launch) */
    void *dev_graph_exec;/* cudaGraphExec_t instantiated for device launch, or NULL */
} wf_cuda_bucket_t;

/* Input block layout of a bucket of Tb tokens and nb sequences, in int32:
 * ids[Tb] posid[Tb] start[nb+1] nitems[1] items[Tb/QB + nb]. */
typedef struct {
    size_t ids, posid, start, nitems, items, total;
} wf_cuda_in_layout_t;
void wf_cuda_in_layout(int tokens, int seqs, wf_cuda_in_layout_t *l);

/* Packs a batch into an input block of the given bucket (host memory). */
void wf_cuda_pack(const wf_batch_t *b, int tokens, int seqs, int32_t *blk);

/* Builds (warm-up + capture) the bucket that holds `tokens` tokens and
 * `seqs` sequences, with a device-launchable instance when dev_launch.
 * Returns NULL when over the session's sizes or on failure (message in err). */
const wf_cuda_bucket_t *wf_cuda_bucket_get(void *state, int tokens, int seqs, int dev_launch, wf_err_t *err);
/* Bucket i (0 = smallest) built as above, or NULL past the last. */
const wf_cuda_bucket_t *wf_cuda_bucket_at(void *state, int i, int dev_launch, wf_err_t *err);
/* Captures bucket i's forward pass (inputs in its d_in, outputs in d_probs;
 * no host copies) into an existing graph, e.g. a conditional node's body
 * (cudaGraph_t graph), building (warming up) the bucket first. pdl: with
 * programmatic dependent launches where the session uses them in graphs for
 * device launch (0: plain launches). */
wf_status_t wf_cuda_bucket_capture_into(void *state, int i, void *graph, int pdl, wf_err_t *err);
int wf_cuda_num_labels(void *state);
/* The model's vocabulary size and max_position_embeddings (the scheduler validates submissions). */
void wf_cuda_model_limits(void *state, int *vocab, int *max_pos);
void *wf_cuda_stream(void *state);

#ifdef __cplusplus
}
#endif

#endif
