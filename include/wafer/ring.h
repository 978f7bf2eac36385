/*
 * wafer ring: the submission and verdict rings between the data plane and
 * the inference service, in a memory region that both sides can reach.
 *
 * Layout of a ring in its region (all offsets 128-byte aligned):
 *   control   three 128-byte lines, one writer each:
 *             line 0 (GPU): done = submissions whose verdicts are written, batches
 *             line 1 (GPU): status (0 = running; else a wf_ring_status_t) and detail
 *             line 2 (host): stop
 *   slots     `slots` submission slots of wf_ring_slot_t + max_len tokens
 *   verdicts  `slots` verdict slots of wf_ring_verdict_t + num_labels floats
 *
 * Protocol (single writer per word; no host-native atomics are needed on the
 * GPU side, none exist over PCIe on these GPUs):
 *   - Submission n (n = 0, 1, ...) goes to slot n % slots. The producer
 *     writes the payload (len, flags, request id, unit id, tokens), then
 *     publishes seq = n + 1 with a release store. It may reuse a slot only
 *     when the consumer has taken the verdict of the submission before it in
 *     that slot (n < consumed + slots), which also means the GPU is done with it.
 *   - The GPU takes submissions in order, batches the ready ones, runs the
 *     model, writes each verdict (seq = n + 1 last), fences system-wide, then
 *     publishes done with one store.
 *   - The consumer acquires done and reads verdicts consumed..done-1.
 * One producer thread and one consumer thread per ring (the two may be the
 * same); wf_ring_submit and wf_ring_poll are not safe to call concurrently
 * from several producers or several consumers.
 */
#ifndef WAFER_RING_H
#define WAFER_RING_H

#include "wafer/common.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- regions */

typedef enum {
    WF_RING_MEM_HOST,        /* plain host memory: host-only tests, the CPU backend */
    WF_RING_MEM_HOST_MAPPED, /* pinned host memory mapped into the GPU (cudaHostAlloc mapped) */
    WF_RING_MEM_GPU_DMABUF,  /* GPU memory exported as a dma-buf, for a NIC/DPU writing over RDMA */
} wf_ring_mem_t;

typedef struct wf_ring_region wf_ring_region_t;

/* Allocates a region of at least `bytes`. -ENOTSUP for the GPU kinds in a
 * build without CUDA or where the GPU cannot (no device, no dma-buf support);
 * a message in err when not NULL. */
int wf_ring_region_new(wf_ring_mem_t kind, size_t bytes, wf_ring_region_t **out, char *err, size_t errlen);
void wf_ring_region_free(wf_ring_region_t *r);
wf_ring_mem_t wf_ring_region_kind(const wf_ring_region_t *r);
size_t wf_ring_region_size(const wf_ring_region_t *r);
/* The region as the host sees it; NULL for GPU memory (only a NIC/DPU writes it). */
void *wf_ring_region_host(const wf_ring_region_t *r);
/* The region as the GPU sees it; NULL for plain host memory. */
void *wf_ring_region_device(const wf_ring_region_t *r);
/* The dma-buf file descriptor of a GPU region (owned by the region), else -1.
 * A DPU/NIC registers it for RDMA writes (ibv_reg_dmabuf_mr); see docs/ring.md. */
int wf_ring_region_dmabuf_fd(const wf_ring_region_t *r);

/* ------------------------------------------------------------------ rings */

typedef struct {
    uint32_t slots;      /* power of two, 2..1<<20 */
    uint32_t max_len;    /* tokens per submission, 1..65536 */
    uint32_t num_labels; /* probabilities per verdict, 1..32 */
} wf_ring_opts_t;

/* Submission slot header; max_len int32 tokens follow. */
typedef struct {
    uint64_t seq;        /* n + 1 once submission n is published */
    uint32_t len;        /* tokens */
    uint32_t flags;      /* reserved, 0 */
    uint64_t request_id;
    uint32_t unit_id;
    uint32_t pad;
} wf_ring_slot_t;

enum {
    WF_RING_V_INVALID = 1u << 0, /* the submission was malformed (length, token ids): no probabilities */
};

/* Verdict slot header; num_labels float probabilities follow. */
typedef struct {
    uint64_t seq;        /* n + 1 once the verdict of submission n is written */
    uint64_t request_id;
    uint32_t unit_id;
    int32_t label;       /* argmax, -1 when invalid */
    uint32_t flags;      /* WF_RING_V_* */
    uint32_t pad;
} wf_ring_verdict_t;

typedef enum {
    WF_RING_OK = 0,
    WF_RING_ERR_LAUNCH = 1, /* a device-side graph launch failed (detail: its cudaError_t) */
    WF_RING_ERR_BUCKET = 2, /* no bucket holds a batch (cannot happen when sized by wf_ring_gpu_start) */
} wf_ring_status_t;

typedef struct wf_ring wf_ring_t;

/* Bytes a ring of these options needs in its region. */
size_t wf_ring_bytes(const wf_ring_opts_t *o);
/* Lays a ring out at the start of a region (clearing it when the host can
 * write it). -EINVAL on bad options, -ENOSPC when the region is too small. */
int wf_ring_new(wf_ring_region_t *region, const wf_ring_opts_t *o, wf_ring_t **out);
void wf_ring_free(wf_ring_t *r);
const wf_ring_opts_t *wf_ring_get_opts(const wf_ring_t *r);
wf_ring_region_t *wf_ring_get_region(const wf_ring_t *r);

/* Producer: publishes one submission; returns its sequence number n (>= 0),
 * -EAGAIN when the ring is full (the caller's overload policy decides),
 * -EINVAL when len is 0 or over max_len (nothing is written). */
int64_t wf_ring_submit(wf_ring_t *r, uint64_t request_id, uint32_t unit_id, const int32_t *tokens, uint32_t len);

/* Consumer: copies up to max completed verdicts, in submission order, into
 * out (headers) and probs (max * num_labels floats, may be NULL); returns
 * how many, or -EIO when a verdict's seq is not the one expected (a broken
 * producer/GPU: the ring must be torn down). */
int wf_ring_poll(wf_ring_t *r, wf_ring_verdict_t *out, float *probs, int max);

/* Submissions published / verdicts consumed so far. */
uint64_t wf_ring_submitted(const wf_ring_t *r);
uint64_t wf_ring_consumed(const wf_ring_t *r);
/* The GPU's status word and detail (wf_ring_status_t, cudaError_t). */
uint32_t wf_ring_status(const wf_ring_t *r, uint32_t *detail);

/* Raw layout, for a scheduler (GPU kernel or CPU thread) and tests:
 * control/slot/verdict addresses relative to the region's base. */
typedef struct {
    size_t ctrl_done, ctrl_batches, ctrl_status, ctrl_detail, ctrl_stop;
    size_t slots, slot_bytes, verdicts, verdict_bytes, total;
} wf_ring_layout_t;
void wf_ring_layout(const wf_ring_opts_t *o, wf_ring_layout_t *l);

/* ---------------------------------------------------- the GPU's scheduler */

struct wf_session;

/* How the scheduler runs the bucket graphs (docs/ring.md, "Two schedulers"). */
typedef enum {
    WF_RING_SCHED_DEFAULT = 0, /* WAFER_RING_SCHED=launch|while where set, else the faster one measured */
    WF_RING_SCHED_LAUNCH = 1,  /* device graph launch: sched -> bucket graph -> publish -> sched, by tail launches */
    WF_RING_SCHED_WHILE = 2,   /* one graph launched once: WHILE { poll; SWITCH(bucket) { forward }; publish } */
} wf_ring_sched_mode_t;

typedef struct {
    int max_batch;        /* most submissions per batch (<= the session's max_batch) */
    uint64_t max_wait_ns; /* a partial batch waits at most this long after its first submission */
    int mode;             /* wf_ring_sched_mode_t (0: the default) */
} wf_ring_sched_opts_t;

typedef struct wf_ring_sched wf_ring_sched_t;

/* Starts the self-scheduled mode: a scheduler kernel on the GPU polls the
 * ring, batches what is ready (up to max_batch, or max_wait_ns after the
 * first), packs it into the bucket's input, runs that bucket's graph, then a
 * publish kernel that writes the verdicts and the completion index, and polls
 * again. The bucket graph runs by a device-side tail launch (o->mode
 * WF_RING_SCHED_LAUNCH) or as the selected branch of a conditional SWITCH
 * node inside a conditional WHILE loop, one graph launched once
 * (WF_RING_SCHED_WHILE). In steady state the host makes no CUDA call. The session (backend "cuda", created with max_tokens >=
 * max_batch * the ring's max_len) is used by the scheduler alone until
 * wf_ring_sched_stop. The ring's region must be GPU-visible. Returns a
 * wf_status_t (WF_ERR_UNSUPPORTED without CUDA), message in err. */
int wf_ring_sched_start(struct wf_session *session, wf_ring_t *ring, const wf_ring_sched_opts_t *o, wf_ring_sched_t **out,
                        char *err, size_t errlen);
/* Most rings one scheduler serves. */
#define WF_RING_SCHED_MAX_RINGS 256

/* One scheduler over several rings (1..WF_RING_SCHED_MAX_RINGS, distinct,
 * of the same options): one per producer (a data-plane worker each), so that
 * each ring keeps one producer and one consumer while their submissions
 * share batches and one GPU block polls them all. It takes consecutive ready
 * submissions ring by ring, starting one ring further each batch (no ring
 * waits behind another for more than one batch); verdicts go back to the
 * ring of their submission. wf_ring_sched_start is this with one ring.
 *
 * No CUDA call of any kind may run in the process while a scheduler runs:
 * make every ring, region and session first, start the scheduler last, stop
 * it before freeing anything (docs/ring.md, "CUDA calls and a running
 * scheduler"). A failure of the scheduler is written to every ring's status
 * word. */
int wf_ring_sched_start_multi(struct wf_session *session, wf_ring_t *const *rings, int nrings,
                              const wf_ring_sched_opts_t *o, wf_ring_sched_t **out, char *err, size_t errlen);
/* Raises stop in every ring of the scheduler, waits for it to finish its batch
 * and exit, frees it. Returns the rings' status word (0 when it ran well). */
uint32_t wf_ring_sched_stop(wf_ring_sched_t *s);

#ifdef __cplusplus
}
#endif

#endif
