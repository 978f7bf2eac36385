/* The GPU-visible region kinds: pinned host memory mapped into the GPU, and
 * GPU memory exported as a dma-buf for a NIC or DPU to write over RDMA. */
#include "infer/cuda/cuda_common.h"

extern "C" {
#include "ring/ring_internal.h"
}

#include <cuda.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

extern "C" int wf_ring_region_cuda_alloc(wf_ring_region_t *r, char *err, size_t errlen)
{
    char why[256];
    if (!wf_cuda_probe(why, sizeof(why))) {
        if (err)
            snprintf(err, errlen, "ring region: %s", why);
        return -ENOTSUP;
    }
    if (r->kind == WF_RING_MEM_HOST_MAPPED) {
        cudaError_t e = WF_CU(cudaHostAlloc(&r->host, r->size, cudaHostAllocMapped));
        if (e == cudaSuccess)
            e = WF_CU(cudaHostGetDevicePointer(&r->dev, r->host, 0));
        if (e != cudaSuccess) {
            if (r->host)
                WF_CU(cudaFreeHost(r->host));
            r->host = NULL;
            if (err)
                snprintf(err, errlen, "ring region: mapped host memory: %s", cudaGetErrorString(e));
            return -ENOMEM;
        }
        memset(r->host, 0, r->size);
        return 0;
    }
    if (r->kind != WF_RING_MEM_GPU_DMABUF)
        return -EINVAL;
    /* The runtime has no dma-buf export: the driver's, looked up at run time, so that nothing in wafer links
     * libcuda (which a machine without a GPU driver does not have). */
    typedef CUresult (*get_handle_fn)(void *, CUdeviceptr, size_t, CUmemRangeHandleType, unsigned long long);
    get_handle_fn get_handle = NULL;
    cudaDriverEntryPointQueryResult q;
    cudaError_t e = WF_CU(cudaGetDriverEntryPointByVersion("cuMemGetHandleForAddressRange", (void **)&get_handle,
                                                          12000, cudaEnableDefault, &q));
    typedef CUresult (*dev_get_fn)(CUdevice *, int);
    typedef CUresult (*attr_fn)(int *, CUdevice_attribute, CUdevice);
    dev_get_fn dev_get = NULL;
    attr_fn attr = NULL;
    if (e == cudaSuccess && q == cudaDriverEntryPointSuccess)
        e = WF_CU(cudaGetDriverEntryPointByVersion("cuDeviceGet", (void **)&dev_get, 12000, cudaEnableDefault, &q));
    if (e == cudaSuccess && q == cudaDriverEntryPointSuccess)
        e = WF_CU(cudaGetDriverEntryPointByVersion("cuDeviceGetAttribute", (void **)&attr, 12000, cudaEnableDefault,
                                                   &q));
    int supported = 0;
    CUdevice dev;
    if (e == cudaSuccess && dev_get && attr && (wf_cuda_count_call(), dev_get(&dev, 0)) == CUDA_SUCCESS)
        (wf_cuda_count_call(), attr(&supported, CU_DEVICE_ATTRIBUTE_DMA_BUF_SUPPORTED, dev));
    if (e != cudaSuccess || !get_handle || !supported) {
        if (err)
            snprintf(err, errlen, "ring region: this GPU/driver does not export dma-bufs");
        return -ENOTSUP;
    }
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    r->size = (r->size + page - 1) / page * page;
    void *p = NULL;
    e = WF_CU(cudaMalloc(&p, r->size));
    if (e == cudaSuccess)
        e = WF_CU(cudaMemset(p, 0, r->size));
    if (e != cudaSuccess) {
        if (p)
            WF_CU(cudaFree(p));
        if (err)
            snprintf(err, errlen, "ring region: cannot allocate %zu bytes of GPU memory: %s", r->size,
                     cudaGetErrorString(e));
        return -ENOMEM;
    }
    int fd = -1;
    CUresult c = (wf_cuda_count_call(), get_handle(&fd, (CUdeviceptr)p, r->size, CU_MEM_RANGE_HANDLE_TYPE_DMA_BUF_FD, 0));
    if (c != CUDA_SUCCESS || fd < 0) {
        WF_CU(cudaFree(p));
        if (err)
            snprintf(err, errlen, "ring region: dma-buf export failed (CUresult %d)", (int)c);
        return -ENOTSUP;
    }
    r->cu_ptr = (unsigned long long)(uintptr_t)p;
    r->dev = p;
    r->fd = fd;
    r->host = NULL;
    return 0;
}

extern "C" void wf_ring_region_cuda_free(wf_ring_region_t *r)
{
    if (r->kind == WF_RING_MEM_HOST_MAPPED && r->host)
        WF_CU(cudaFreeHost(r->host));
    if (r->kind == WF_RING_MEM_GPU_DMABUF) {
        if (r->fd >= 0)
            close(r->fd);
        if (r->dev)
            WF_CU(cudaFree(r->dev));
    }
}
