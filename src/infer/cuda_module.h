/*
 * The CUDA module (internal): the CUDA backend and the ring's GPU side are
 * built as a separate shared module, wafer-cuda.so, that wafer_lib loads with
 * dlopen only when a session asks for backend "cuda" or "auto", or when a
 * GPU-visible ring region or the ring's GPU scheduler is requested. So a
 * wafer process that never needs the GPU never maps libcudart/libcublasLt,
 * and a CUDA build runs on a machine without the CUDA libraries.
 *
 * The two sides meet in two tables: wf_cuda_host_t, the wafer_lib functions
 * the module calls (it links no part of wafer_lib, so it shares the process's
 * logging, models and rings), and wf_cuda_module_t, what the module offers.
 * The module exports one symbol, WF_CUDA_MODULE_ENTRY.
 */
#ifndef WAFER_INFER_CUDA_MODULE_H
#define WAFER_INFER_CUDA_MODULE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "infer/arch.h"
#include "infer/backend.h"
#include "wafer/core.h"
#include "wafer/ring.h"

/* Bumped whenever either table changes: a module of another version is refused. */
#define WF_CUDA_MODULE_ABI 2
#define WF_CUDA_MODULE_ENTRY "wf_cuda_module_get"
#define WF_CUDA_MODULE_NAME "wafer-cuda.so"

typedef struct {
    int abi;
    void (*logv)(wf_log_level_t lvl, const char *fmt, va_list ap);
    wf_log_level_t (*log_get_level)(void);
    wf_status_t (*arch_dims)(const wf_model_config_t *cfg, wf_arch_dims_t *d, wf_err_t *err);
    const wf_model_config_t *(*model_get_config)(const wf_model_t *m);
    const wf_weights_t *(*model_get_weights_refs)(const wf_model_t *m);
    wf_status_t (*tensor_to_f32)(const wf_tensor_t *t, float *out, size_t n);
    const wf_ring_opts_t *(*ring_get_opts)(const wf_ring_t *r);
    wf_ring_region_t *(*ring_get_region)(const wf_ring_t *r);
    uint64_t (*ring_consumed)(const wf_ring_t *r);
    uint32_t (*ring_status)(const wf_ring_t *r, uint32_t *detail);
    void (*ring_layout)(const wf_ring_opts_t *o, wf_ring_layout_t *l);
    void *(*ring_region_host)(const wf_ring_region_t *r);
    void *(*ring_region_device)(const wf_ring_region_t *r);
    const char *(*session_backend)(const wf_session_t *s);
    const wf_backend_ops_t *(*session_backend_ops)(const wf_session_t *s);
    void *(*session_backend_state)(const wf_session_t *s);
} wf_cuda_host_t;

typedef struct {
    int abi;
    const wf_backend_ops_t *backend; /* the "cuda" backend */
    /* Whether a usable GPU is present: 1, or 0 with the reason in why (cached). */
    int (*probe)(char *why, size_t whylen);
    /* Host CUDA calls made by the backend and the ring since the module was loaded. */
    uint64_t (*host_calls)(void);
    /* A GPU-visible ring region (kind and size set in r): 0, or -errno with a message. */
    int (*region_alloc)(wf_ring_region_t *r, char *err, size_t errlen);
    void (*region_free)(wf_ring_region_t *r);
    /* wf_ring_sched_start_multi / wf_ring_sched_stop (wafer/ring.h). */
    int (*sched_start)(wf_session_t *session, wf_ring_t *const *rings, int nrings, const wf_ring_sched_opts_t *o,
                       wf_ring_sched_t **out, char *err, size_t errlen);
    uint32_t (*sched_stop)(wf_ring_sched_t *s);
} wf_cuda_module_t;

/* The module's entry point: its table, or NULL when host->abi differs from its own. */
typedef const wf_cuda_module_t *(*wf_cuda_module_get_fn)(const wf_cuda_host_t *host);

/* ---- wafer_lib's side (cuda_loader.c), only in builds with WAFER_HAVE_CUDA ---- */

/* Loads the module once per process: the table, or NULL with the reason (dlerror) in why.
 * Looked up at $WAFER_CUDA_MODULE if set, else next to the executable, else in
 * the install lib dir (<libdir>/wafer). */
const wf_cuda_module_t *wf_cuda_module(char *why, size_t whylen);
/* The module loaded and a usable GPU present: 1, or 0 with the reason in why. */
int wf_cuda_probe(char *why, size_t whylen);
/* The module's host CUDA call count; 0 when it is not loaded. */
uint64_t wf_cuda_host_calls(void);

#ifdef __cplusplus
}
#endif

#endif
