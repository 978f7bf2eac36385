/*
 * Backends (internal): one vtable per backend, in the manner of
 * ggml-backend. The session layer (session.c) validates every batch before
 * a backend sees it, so a backend's run() may trust its input: n <= the
 * max_batch and the token total <= the max_tokens it was created for, every
 * length in 1..max_position_embeddings, every id in 0..vocab_size-1.
 */
#ifndef WAFER_INFER_BACKEND_H
#define WAFER_INFER_BACKEND_H

#include "wafer/infer.h"

typedef struct {
    const int32_t *const *ids; /* ids[i]: lens[i] token ids of sequence i */
    const int *lens;
    int n;                     /* sequences */
    int ntokens;               /* sum of lens */
} wf_batch_t;

typedef struct wf_backend_ops {
    const char *name;
    /* Creates the backend's state for a model: converts or uploads weights and
     * sizes all activation memory for opts->max_batch / opts->max_tokens. */
    wf_status_t (*init)(const wf_model_t *m, const wf_session_opts_t *opts, void **state, wf_err_t *err);
    /* Runs a batch; writes n * num_labels logits. Allocates nothing. */
    wf_status_t (*run)(void *state, const wf_batch_t *b, float *logits);
    void (*free)(void *state);
} wf_backend_ops_t;

extern const wf_backend_ops_t wf_backend_cpu;

/* A session's backend and its state (the ring's GPU scheduler drives the CUDA backend's buckets directly). */
const wf_backend_ops_t *wf_session_backend_ops(const wf_session_t *s);
void *wf_session_backend_state(const wf_session_t *s);

#endif
