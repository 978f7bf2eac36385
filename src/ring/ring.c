/* Rings over a memory region: layout, the host producer and consumer. */
#include "ring/ring_internal.h"
#include "wafer/infer.h"
#ifdef WAFER_HAVE_CUDA
#include "infer/cuda_module.h"
#endif

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINE 128
#define ALIGN_UP(x, a) (((x) + (a) - 1) & ~((size_t)(a) - 1))

struct wf_ring {
    wf_ring_region_t *region;
    wf_ring_opts_t o;
    wf_ring_layout_t l;
    char *base;               /* host view */
    /* host-private: one writer each (the producer, the consumer), read by the other */
    _Atomic uint64_t next;    /* submissions published */
    _Atomic uint64_t consumed;
};

int wf_ring_region_new(wf_ring_mem_t kind, size_t bytes, wf_ring_region_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (bytes == 0 || bytes > ((size_t)1 << 40)) {
        if (err)
            snprintf(err, errlen, "ring region: size %zu out of range", bytes);
        return -EINVAL;
    }
    wf_ring_region_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->kind = kind;
    r->size = ALIGN_UP(bytes, 4096);
    r->fd = -1;
    if (kind == WF_RING_MEM_HOST) {
        r->host = aligned_alloc(4096, r->size);
        if (!r->host) {
            free(r);
            return -ENOMEM;
        }
        memset(r->host, 0, r->size);
        *out = r;
        return 0;
    }
#ifdef WAFER_HAVE_CUDA
    char why[512];
    const wf_cuda_module_t *cm = wf_cuda_module(why, sizeof(why));
    if (!cm) {
        if (err)
            snprintf(err, errlen, "ring region: GPU memory kinds need the CUDA module: %s", why);
        free(r);
        return -ENOTSUP;
    }
    int rc = cm->region_alloc(r, err, errlen);
    if (rc < 0) {
        free(r);
        return rc;
    }
    *out = r;
    return 0;
#else
    if (err)
        snprintf(err, errlen, "ring region: GPU memory kinds need the CUDA backend, which is not built in");
    free(r);
    return -ENOTSUP;
#endif
}

void wf_ring_region_free(wf_ring_region_t *r)
{
    if (!r)
        return;
    if (r->kind == WF_RING_MEM_HOST)
        free(r->host);
#ifdef WAFER_HAVE_CUDA
    else /* a GPU region exists only if the module was loaded */
        wf_cuda_module(NULL, 0)->region_free(r);
#endif
    free(r);
}

wf_ring_mem_t wf_ring_region_kind(const wf_ring_region_t *r) { return r->kind; }
size_t wf_ring_region_size(const wf_ring_region_t *r) { return r->size; }
void *wf_ring_region_host(const wf_ring_region_t *r) { return r->host; }
void *wf_ring_region_device(const wf_ring_region_t *r) { return r->dev; }
int wf_ring_region_dmabuf_fd(const wf_ring_region_t *r) { return r->fd; }

static int opts_ok(const wf_ring_opts_t *o)
{
    return o && o->slots >= 2 && o->slots <= (1u << 20) && (o->slots & (o->slots - 1)) == 0 && o->max_len >= 1 &&
           o->max_len <= 65536 && o->num_labels >= 1 && o->num_labels <= 32;
}

void wf_ring_layout(const wf_ring_opts_t *o, wf_ring_layout_t *l)
{
    memset(l, 0, sizeof(*l));
    l->ctrl_done = 0;
    l->ctrl_batches = 8;
    l->ctrl_status = LINE;
    l->ctrl_detail = LINE + 4;
    l->ctrl_stop = 2 * LINE;
    l->slot_bytes = ALIGN_UP(sizeof(wf_ring_slot_t) + sizeof(int32_t) * (size_t)o->max_len, LINE);
    l->verdict_bytes = ALIGN_UP(sizeof(wf_ring_verdict_t) + sizeof(float) * (size_t)o->num_labels, 64);
    l->slots = 3 * LINE;
    l->verdicts = ALIGN_UP(l->slots + l->slot_bytes * (size_t)o->slots, LINE);
    l->total = ALIGN_UP(l->verdicts + l->verdict_bytes * (size_t)o->slots, LINE);
}

size_t wf_ring_bytes(const wf_ring_opts_t *o)
{
    if (!opts_ok(o))
        return 0;
    wf_ring_layout_t l;
    wf_ring_layout(o, &l);
    return l.total;
}

int wf_ring_new(wf_ring_region_t *region, const wf_ring_opts_t *o, wf_ring_t **out)
{
    *out = NULL;
    if (!region || !opts_ok(o))
        return -EINVAL;
    wf_ring_t *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    r->region = region;
    r->o = *o;
    wf_ring_layout(o, &r->l);
    if (r->l.total > region->size) {
        free(r);
        return -ENOSPC;
    }
    r->base = region->host;
    if (r->base)
        memset(r->base, 0, r->l.total);
    *out = r;
    return 0;
}

void wf_ring_free(wf_ring_t *r) { free(r); }
const wf_ring_opts_t *wf_ring_get_opts(const wf_ring_t *r) { return &r->o; }
wf_ring_region_t *wf_ring_get_region(const wf_ring_t *r) { return r->region; }

static inline wf_ring_slot_t *slot_at(wf_ring_t *r, uint64_t n)
{
    return (wf_ring_slot_t *)(r->base + r->l.slots + r->l.slot_bytes * (size_t)(n & (r->o.slots - 1)));
}

static inline wf_ring_verdict_t *verdict_at(wf_ring_t *r, uint64_t n)
{
    return (wf_ring_verdict_t *)(r->base + r->l.verdicts + r->l.verdict_bytes * (size_t)(n & (r->o.slots - 1)));
}

int64_t wf_ring_submit(wf_ring_t *r, uint64_t request_id, uint32_t unit_id, const int32_t *tokens, uint32_t len)
{
    if (!r->base)
        return -ENOTSUP; /* GPU memory: a NIC/DPU produces, not this host */
    if (len == 0 || len > r->o.max_len || !tokens)
        return -EINVAL;
    uint64_t n = atomic_load_explicit(&r->next, memory_order_relaxed);
    if (n >= atomic_load_explicit(&r->consumed, memory_order_acquire) + r->o.slots)
        return -EAGAIN;
    wf_ring_slot_t *s = slot_at(r, n);
    s->len = len;
    s->flags = 0;
    s->request_id = request_id;
    s->unit_id = unit_id;
    memcpy((char *)s + sizeof(*s), tokens, sizeof(int32_t) * len);
    /* payload before seq: the GPU (or a CPU scheduler) acquires seq, then reads the payload */
    __atomic_store_n(&s->seq, n + 1, __ATOMIC_RELEASE);
    atomic_store_explicit(&r->next, n + 1, memory_order_release);
    return (int64_t)n;
}

int wf_ring_poll(wf_ring_t *r, wf_ring_verdict_t *out, float *probs, int max)
{
    if (!r->base)
        return -ENOTSUP;
    uint64_t done = __atomic_load_n((uint64_t *)(r->base + r->l.ctrl_done), __ATOMIC_ACQUIRE);
    uint64_t c = atomic_load_explicit(&r->consumed, memory_order_relaxed);
    int k = 0;
    while (c < done && k < max) {
        wf_ring_verdict_t *v = verdict_at(r, c);
        if (__atomic_load_n(&v->seq, __ATOMIC_ACQUIRE) != c + 1)
            return -EIO;
        out[k] = *v;
        if (probs)
            memcpy(probs + (size_t)k * r->o.num_labels, (char *)v + sizeof(*v), sizeof(float) * r->o.num_labels);
        k++;
        c++;
    }
    atomic_store_explicit(&r->consumed, c, memory_order_release);
    return k;
}

uint64_t wf_ring_submitted(const wf_ring_t *r) { return atomic_load(&((wf_ring_t *)r)->next); }
uint64_t wf_ring_consumed(const wf_ring_t *r) { return atomic_load(&((wf_ring_t *)r)->consumed); }

uint32_t wf_ring_status(const wf_ring_t *r, uint32_t *detail)
{
    if (!r->base)
        return 0;
    if (detail)
        *detail = __atomic_load_n((uint32_t *)(r->base + r->l.ctrl_detail), __ATOMIC_ACQUIRE);
    return __atomic_load_n((uint32_t *)(r->base + r->l.ctrl_status), __ATOMIC_ACQUIRE);
}

int wf_ring_sched_start(struct wf_session *session, wf_ring_t *ring, const wf_ring_sched_opts_t *o,
                        wf_ring_sched_t **out, char *err, size_t errlen)
{
    wf_ring_t *rings[1] = { ring };
    return wf_ring_sched_start_multi(session, rings, 1, o, out, err, errlen);
}

#ifdef WAFER_HAVE_CUDA
int wf_ring_sched_start_multi(struct wf_session *session, wf_ring_t *const *rings, int nrings,
                              const wf_ring_sched_opts_t *o, wf_ring_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char why[512];
    const wf_cuda_module_t *cm = wf_cuda_module(why, sizeof(why));
    if (!cm) {
        if (err)
            snprintf(err, errlen, "ring: the GPU scheduler needs the CUDA module: %s", why);
        return WF_ERR_BACKEND;
    }
    return cm->sched_start(session, rings, nrings, o, out, err, errlen);
}

uint32_t wf_ring_sched_stop(wf_ring_sched_t *s)
{
    /* a scheduler exists only if the module was loaded */
    return s ? wf_cuda_module(NULL, 0)->sched_stop(s) : 0;
}
#else
int wf_ring_sched_start_multi(struct wf_session *session, wf_ring_t *const *rings, int nrings,
                              const wf_ring_sched_opts_t *o, wf_ring_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    if (err)
        snprintf(err, errlen, "ring: the GPU scheduler needs the CUDA backend, which is not built in");
    return WF_ERR_UNSUPPORTED;
}

uint32_t wf_ring_sched_stop(wf_ring_sched_t *s) { return 0; }
#endif
