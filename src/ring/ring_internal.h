/* Internal to ring/: the region object and the CUDA implementations of the GPU kinds. */
#ifndef WAFER_RING_INTERNAL_H
#define WAFER_RING_INTERNAL_H

#include "wafer/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wf_ring_region {
    wf_ring_mem_t kind;
    size_t size;
    void *host, *dev;
    int fd;
    unsigned long long cu_ptr; /* CUdeviceptr of a GPU region */
};

/* In the CUDA module (wafer-cuda.so), reached through its table (infer/cuda_module.h):
 * region_cuda.cu: fills r (kind and size set) or returns -errno with a message. */
int wf_ring_region_cuda_alloc(wf_ring_region_t *r, char *err, size_t errlen);
void wf_ring_region_cuda_free(wf_ring_region_t *r);
/* sched.cu: wf_ring_sched_start_multi / wf_ring_sched_stop. */
int wf_ring_sched_cuda_start(struct wf_session *session, wf_ring_t *const *rings, int nrings,
                             const wf_ring_sched_opts_t *o, wf_ring_sched_t **out, char *err, size_t errlen);
uint32_t wf_ring_sched_cuda_stop(wf_ring_sched_t *s);

#ifdef __cplusplus
}
#endif

#endif
