/*
 * The CUDA module's C glue (wafer-cuda.so): its entry point, and the wafer_lib
 * functions that the CUDA code calls, forwarded to the loading process's own
 * through the host table (the module links no part of wafer_lib, so the
 * process's log settings, models and rings are the ones it sees). Only the
 * entry point is exported (module.map); every other symbol here is local.
 */
#include "infer/cuda_module.h"
#include "infer/cuda/cuda.h"
#include "ring/ring_internal.h"

#include <stddef.h>

static const wf_cuda_host_t *g_host;

void wf_logv(wf_log_level_t lvl, const char *fmt, va_list ap) { g_host->logv(lvl, fmt, ap); }

void wf_log(wf_log_level_t lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_host->logv(lvl, fmt, ap);
    va_end(ap);
}

wf_log_level_t wf_log_get_level(void) { return g_host->log_get_level(); }

wf_status_t wf_arch_dims(const wf_model_config_t *cfg, wf_arch_dims_t *d, wf_err_t *err)
{
    return g_host->arch_dims(cfg, d, err);
}

const wf_model_config_t *wf_model_get_config(const wf_model_t *m) { return g_host->model_get_config(m); }
const wf_weights_t *wf_model_get_weights_refs(const wf_model_t *m) { return g_host->model_get_weights_refs(m); }
wf_status_t wf_tensor_to_f32(const wf_tensor_t *t, float *out, size_t n) { return g_host->tensor_to_f32(t, out, n); }
const wf_ring_opts_t *wf_ring_get_opts(const wf_ring_t *r) { return g_host->ring_get_opts(r); }
wf_ring_region_t *wf_ring_get_region(const wf_ring_t *r) { return g_host->ring_get_region(r); }
uint64_t wf_ring_consumed(const wf_ring_t *r) { return g_host->ring_consumed(r); }
uint32_t wf_ring_status(const wf_ring_t *r, uint32_t *detail) { return g_host->ring_status(r, detail); }
void wf_ring_layout(const wf_ring_opts_t *o, wf_ring_layout_t *l) { g_host->ring_layout(o, l); }
void *wf_ring_region_host(const wf_ring_region_t *r) { return g_host->ring_region_host(r); }
void *wf_ring_region_device(const wf_ring_region_t *r) { return g_host->ring_region_device(r); }
const char *wf_session_backend(const wf_session_t *s) { return g_host->session_backend(s); }
const wf_backend_ops_t *wf_session_backend_ops(const wf_session_t *s) { return g_host->session_backend_ops(s); }
void *wf_session_backend_state(const wf_session_t *s) { return g_host->session_backend_state(s); }

static const wf_cuda_module_t g_module = {
    WF_CUDA_MODULE_ABI,
    &wf_backend_cuda,
    wf_cuda_probe,
    wf_cuda_host_calls,
    wf_ring_region_cuda_alloc,
    wf_ring_region_cuda_free,
    wf_ring_sched_cuda_start,
    wf_ring_sched_cuda_stop,
};

const wf_cuda_module_t *wf_cuda_module_get(const wf_cuda_host_t *host);

const wf_cuda_module_t *wf_cuda_module_get(const wf_cuda_host_t *host)
{
    if (!host || host->abi != WF_CUDA_MODULE_ABI)
        return NULL;
    g_host = host;
    return &g_module;
}
