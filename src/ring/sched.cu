/*
 * The GPU's own scheduler (self-scheduled mode), over one ring or several
 * (one per data-plane worker: each ring keeps its single producer and single
 * consumer, and the scheduler is the one reader of every ring's slots).
 *
 * Two variants (wf_ring_sched_opts_t.mode), the same poll round (sched_take)
 * and the same publish kernel, both launched once by the host, which then
 * makes no CUDA call.
 *
 * Device graph launch: three device-launchable graphs, chained by tail
 * launches:
 *
 *   sched (1 block)   polls the submission rings (warp 0: one lane per ring
 *                     for the stop words and "anything ready"; lane 0 then
 *                     takes consecutive ready submissions ring by ring,
 *                     starting one ring further each batch) until max_batch
 *                     submissions are taken or max_wait_ns have passed since
 *                     the first; validates them, packs the valid ones into
 *                     the input block of the smallest bucket that holds them,
 *                     then tail-launches  bucket graph -> publish -> sched.
 *   bucket graph      the captured forward pass (backend.cu).
 *   publish (1 block) writes each verdict into its ring, fences system-wide,
 *                     writes the verdicts' seq, fences, then the completion
 *                     index of every ring the batch took from.
 *
 * Tail launches run one after the other once the launching graph has ended,
 * so each graph sees the previous one's results, and the scheduler polls
 * again only when the batch's verdicts are out (one batch in flight; the
 * session's buffers are the scheduler's alone). A failed device-side launch
 * writes the status word of every ring and stops the chain; the host reads it.
 *
 * WHILE: one host-launched graph whose conditional WHILE node loops over
 * loop_poll_k (the poll round; sets the SWITCH's value to the bucket) ->
 * SWITCH { each bucket's forward pass, captured into its branch } ->
 * publish_k. No device-side launches; on stop (or a failure) the poll kernel
 * clears the loop's condition and the graph ends.
 */
#include "infer/cuda/cuda_common.h"

extern "C" {
#include "ring/ring_internal.h"
#include "wafer/core.h"
#include "wafer/infer.h"
}

#include <errno.h>
#include <new>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCHED_THREADS 512
#define SCHED_MAX_BUCKETS 32
#define SCHED_MAX_RINGS WF_RING_SCHED_MAX_RINGS
#define FULL_MASK 0xffffffffu

typedef struct {
    uint32_t rr;   /* the ring the next batch starts taking from */
    int32_t count; /* submissions in the batch in flight */
} sched_state_t;

typedef struct {
    char *const *bases; /* (nrings) each ring's region, device view */
    int nrings;
    wf_ring_layout_t l; /* every ring has the same options, so the same layout */
    uint32_t nslots, max_len, C;
    int vocab, max_pos, max_batch;
    uint64_t max_wait_ns;
    int nb;
    int tokens[SCHED_MAX_BUCKETS], seqs[SCHED_MAX_BUCKETS];
    cudaGraphExec_t g[SCHED_MAX_BUCKETS];
    int32_t *d_in;
    const float *d_probs;
    cudaGraphExec_t publish;
    sched_state_t *st;
    uint64_t *next; /* (nrings) the next submission to take from each ring */
    int32_t *took;  /* (nrings) submissions of the batch in flight from each ring */
    uint64_t *iseq; /* (max_batch) batch entry i: its submission number in its ring */
    int32_t *iring; /* (max_batch) ... and its ring */
    int32_t *map;   /* (max_batch) sequence index of entry i, -1 if invalid */
    int32_t *lens;  /* (max_batch) */
    /* the WHILE variant: the loop's condition and the SWITCH's bucket */
    cudaGraphConditionalHandle h_loop, h_bucket;
} sched_params_t;

static __device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t *p)
{
    uint64_t v;
    asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

static __device__ __forceinline__ uint32_t ld_volatile_u32(const uint32_t *p) { return *(const volatile uint32_t *)p; }

static __device__ __forceinline__ uint64_t globaltimer(void)
{
    uint64_t t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

static __device__ __forceinline__ wf_ring_slot_t *slot_at(const sched_params_t &p, int r, uint64_t n)
{
    return (wf_ring_slot_t *)(p.bases[r] + p.l.slots + p.l.slot_bytes * (size_t)(n & (p.nslots - 1)));
}

static __device__ __forceinline__ wf_ring_verdict_t *verdict_at(const sched_params_t &p, int r, uint64_t n)
{
    return (wf_ring_verdict_t *)(p.bases[r] + p.l.verdicts + p.l.verdict_bytes * (size_t)(n & (p.nslots - 1)));
}

/* Every ring's status word (after its detail): the scheduler serves them all, so its failure is each one's. */
static __device__ void fail_all(const sched_params_t &p, uint32_t status, uint32_t detail)
{
    for (int r = 0; r < p.nrings; r++)
        *(volatile uint32_t *)(p.bases[r] + p.l.ctrl_detail) = detail;
    __threadfence_system();
    for (int r = 0; r < p.nrings; r++)
        *(volatile uint32_t *)(p.bases[r] + p.l.ctrl_status) = status;
}

#define TAKE_STOP (-1) /* the stop word is up */
#define TAKE_FAIL (-2) /* no bucket holds the batch: every status word written */

/* Both variants' poll round, run by the whole block (SCHED_THREADS): waits for
 * submissions or the stop word, takes a batch, validates it, packs the valid
 * ones into the input block of the smallest bucket that holds them and
 * records the batch for publish_k (st->count, took, next). Returns that
 * bucket's index, p.nb when no submission of the batch is valid (only
 * verdicts to publish), TAKE_STOP or TAKE_FAIL; the same in every thread. */
static __device__ int sched_take(const sched_params_t &p)
{
    __shared__ int s_n, s_go, s_bucket;
    __shared__ uint64_t s_next[SCHED_MAX_RINGS];
    __shared__ int s_take[SCHED_MAX_RINGS];
    __shared__ int s_tok[SCHED_THREADS], s_seq[SCHED_THREADS], s_items[SCHED_THREADS];
    int tid = threadIdx.x, R = p.nrings;
    int tmax = p.tokens[p.nb - 1], bmax = p.seqs[p.nb - 1];
    int lmax = (int)p.max_len < p.max_pos ? (int)p.max_len : p.max_pos;
    int kmax = p.max_batch < bmax ? p.max_batch : bmax;

    for (int r = tid; r < R; r += SCHED_THREADS) {
        s_next[r] = p.next[r];
        s_take[r] = 0;
    }
    __syncthreads();
    if (tid < 32) {
        /* Warp 0 polls. Each round every lane reads the stop word and the next untaken slot of its rings (one
         * round trip over PCIe for all of them); when something is ready, lane 0 takes consecutive ready
         * submissions ring by ring, from ring rr on, while the batch has room. Every branch that ends the loop
         * is decided by lane 0 or by a warp vote, so the warp leaves it together. */
        int lane = tid;
        uint32_t rr = p.st->rr;
        uint64_t t0 = 0;
        int k = 0, tok = 0, go = 1;
        for (;;) {
            bool stop = false, ready = false;
            for (int r = lane; r < R; r += 32) {
                if (ld_volatile_u32((const uint32_t *)(p.bases[r] + p.l.ctrl_stop)))
                    stop = true;
                uint64_t n = s_next[r] + (uint64_t)s_take[r];
                if (ld_acquire_sys(&slot_at(p, r, n)->seq) == n + 1)
                    ready = true;
            }
            if (__any_sync(FULL_MASK, stop)) {
                go = 0;
                break;
            }
            int brk = 0;
            if (__any_sync(FULL_MASK, ready)) {
                if (lane == 0) {
                    for (int q = 0; q < R && !brk; q++) {
                        int r = (int)((rr + (uint32_t)q) % (uint32_t)R);
                        while (k < kmax) {
                            uint64_t n = s_next[r] + (uint64_t)s_take[r];
                            wf_ring_slot_t *s = slot_at(p, r, n);
                            if (ld_acquire_sys(&s->seq) != n + 1)
                                break;
                            int len = (int)*(volatile uint32_t *)&s->len;
                            int cl = len < 1 ? 1 : (len > lmax ? lmax : len);
                            if (tok + cl > tmax) {
                                brk = 1;
                                break;
                            }
                            tok += cl;
                            p.iring[k] = r;
                            p.iseq[k] = n;
                            k++;
                            s_take[r]++;
                        }
                        if (k >= kmax)
                            brk = 1;
                    }
                }
                __syncwarp();
                k = __shfl_sync(FULL_MASK, k, 0);
            }
            if (lane == 0 && !brk && k > 0) {
                uint64_t now = globaltimer();
                if (t0 == 0)
                    t0 = now;
                if (now - t0 >= p.max_wait_ns)
                    brk = 1;
            }
            if (__shfl_sync(FULL_MASK, brk, 0))
                break;
        }
        if (lane == 0) {
            s_n = k;
            s_go = go;
        }
    }
    __syncthreads();
    if (!s_go)
        return TAKE_STOP;
    int n = s_n;

    /* Validate: one warp per submission; lens[i] = its length, 0 when invalid. */
    int warp = tid / 32, lane = tid & 31, nwarps = SCHED_THREADS / 32;
    for (int i = warp; i < n; i += nwarps) {
        wf_ring_slot_t *s = slot_at(p, p.iring[i], p.iseq[i]);
        int len = (int)s->len;
        const int32_t *tk = (const int32_t *)(s + 1);
        bool ok = len >= 1 && len <= lmax;
        for (int j = lane; ok && j < len; j += 32)
            if (tk[j] < 0 || tk[j] >= p.vocab)
                ok = false;
        ok = __all_sync(FULL_MASK, ok);
        if (lane == 0)
            p.lens[i] = ok ? len : 0;
    }
    __syncthreads();

    /* Block-wide exclusive scan of (tokens, sequences, attention items), PER entries a thread. */
    int per = (n + SCHED_THREADS - 1) / SCHED_THREADS, i0 = tid * per, i1 = min(n, i0 + per);
    int tk = 0, sq = 0, it = 0;
    for (int i = i0; i < i1; i++) {
        int L = p.lens[i];
        tk += L;
        sq += L > 0;
        it += (L + WF_CU_ATTN_QB - 1) / WF_CU_ATTN_QB;
    }
    s_tok[tid] = tk;
    s_seq[tid] = sq;
    s_items[tid] = it;
    __syncthreads();
    for (int off = 1; off < SCHED_THREADS; off <<= 1) {
        int a = tid >= off ? s_tok[tid - off] : 0, b = tid >= off ? s_seq[tid - off] : 0,
            c = tid >= off ? s_items[tid - off] : 0;
        __syncthreads();
        s_tok[tid] += a;
        s_seq[tid] += b;
        s_items[tid] += c;
        __syncthreads();
    }
    int T = s_tok[SCHED_THREADS - 1], nv = s_seq[SCHED_THREADS - 1], NI = s_items[SCHED_THREADS - 1];
    if (tid == 0) {
        int b = 0;
        while (b < p.nb && (p.tokens[b] < T || p.seqs[b] < nv))
            b++;
        s_bucket = b;
    }
    __syncthreads();
    int b = s_bucket;
    if (b >= p.nb) {
        if (tid == 0)
            fail_all(p, WF_RING_ERR_BUCKET, (uint32_t)T);
        return TAKE_FAIL;
    }
    int Tb = p.tokens[b], nb = p.seqs[b];
    int32_t *ids = p.d_in, *pos = p.d_in + Tb, *start = p.d_in + 2 * Tb, *nitems = start + nb + 1, *items = nitems + 1;
    {
        int t = s_tok[tid] - tk, s = s_seq[tid] - sq, m = s_items[tid] - it;
        for (int i = i0; i < i1; i++) {
            int L = p.lens[i];
            if (L == 0) {
                p.map[i] = -1;
                continue;
            }
            p.map[i] = s;
            start[s] = t;
            for (int q = 0; q * WF_CU_ATTN_QB < L; q++)
                items[m++] = (s << 16) | q;
            t += L;
            s++;
        }
    }
    for (int s = nv + tid; s <= nb; s += SCHED_THREADS)
        start[s] = T;
    for (int t = T + tid; t < Tb; t += SCHED_THREADS) {
        ids[t] = 0;
        pos[t] = 0;
    }
    if (tid == 0)
        *nitems = NI;
    __syncthreads(); /* start[] of every sequence is written */
    for (int i = warp; i < n; i += nwarps) {
        int L = p.lens[i];
        if (L == 0)
            continue;
        int s0 = start[p.map[i]];
        const int32_t *src = (const int32_t *)(slot_at(p, p.iring[i], p.iseq[i]) + 1);
        for (int j = lane; j < L; j += 32) {
            /* validated above, but the slot is shared memory: a writer that breaks the protocol must not make
             * the embedding gather read out of bounds */
            int32_t id = src[j];
            ids[s0 + j] = (uint32_t)id < (uint32_t)p.vocab ? id : 0;
            pos[s0 + j] = j;
        }
    }
    for (int r = tid; r < R; r += SCHED_THREADS) {
        p.took[r] = s_take[r];
        p.next[r] = s_next[r] + (uint64_t)s_take[r];
    }
    if (tid == 0) {
        p.st->count = n;
        p.st->rr = (p.st->rr + 1) % (uint32_t)R;
    }
    __threadfence();
    __syncthreads();
    return nv > 0 ? b : p.nb;
}

/* Device graph launch: the scheduler graph tail-launches the bucket's graph, the publish graph and itself. */
static __global__ void __launch_bounds__(SCHED_THREADS) sched_k(sched_params_t p)
{
    int b = sched_take(p);
    if (b < 0 || threadIdx.x != 0)
        return; /* stop or failure: no relaunch, the chain ends and the host's stream completes */
    cudaError_t e = cudaSuccess;
    if (b < p.nb)
        e = cudaGraphLaunch(p.g[b], cudaStreamGraphTailLaunch);
    if (e == cudaSuccess)
        e = cudaGraphLaunch(p.publish, cudaStreamGraphTailLaunch);
    if (e == cudaSuccess)
        e = cudaGraphLaunch(cudaGetCurrentGraphExec(), cudaStreamGraphTailLaunch);
    if (e != cudaSuccess)
        fail_all(p, WF_RING_ERR_LAUNCH, (uint32_t)e);
}

/* The WHILE variant's first node in the loop body: selects the SWITCH's branch (the bucket; p.nb or more runs
 * none); on stop or failure an empty batch for publish_k and the loop's condition cleared, so the graph ends
 * after this round and the host's stream completes. */
static __global__ void __launch_bounds__(SCHED_THREADS) loop_poll_k(sched_params_t p)
{
    int b = sched_take(p);
    if (b < 0) {
        for (int r = threadIdx.x; r < p.nrings; r += SCHED_THREADS)
            p.took[r] = 0;
        if (threadIdx.x == 0) {
            p.st->count = 0;
            cudaGraphSetConditional(p.h_loop, 0);
        }
    }
    if (threadIdx.x == 0)
        cudaGraphSetConditional(p.h_bucket, b < 0 ? (unsigned)p.nb : (unsigned)b);
}

static __global__ void publish_k(sched_params_t p)
{
    int n = p.st->count, C = (int)p.C;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        int r = p.iring[i];
        uint64_t q = p.iseq[i];
        wf_ring_verdict_t *v = verdict_at(p, r, q);
        const wf_ring_slot_t *s = slot_at(p, r, q);
        float *pr = (float *)(v + 1);
        v->request_id = s->request_id;
        v->unit_id = s->unit_id;
        int si = p.map[i];
        if (si < 0) {
            v->label = -1;
            v->flags = WF_RING_V_INVALID;
            for (int c = 0; c < C; c++)
                pr[c] = 0.0f;
        } else {
            const float *src = p.d_probs + (size_t)si * C;
            int best = 0;
            for (int c = 0; c < C; c++) {
                pr[c] = src[c];
                if (src[c] > src[best])
                    best = c;
            }
            v->label = best;
            v->flags = 0;
        }
    }
    __threadfence_system();
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        *(volatile uint64_t *)&verdict_at(p, p.iring[i], p.iseq[i])->seq = p.iseq[i] + 1;
    __threadfence_system();
    __syncthreads();
    /* each ring's completion index is the next submission the scheduler takes from it */
    for (int r = threadIdx.x; r < p.nrings; r += blockDim.x) {
        if (p.took[r] == 0)
            continue;
        uint64_t *batches = (uint64_t *)(p.bases[r] + p.l.ctrl_batches);
        *(volatile uint64_t *)batches = *(volatile uint64_t *)batches + 1;
        *(volatile uint64_t *)(p.bases[r] + p.l.ctrl_done) = p.next[r];
    }
    __threadfence_system();
}

/* ------------------------------------------------------------------ host */

/* Measured on an H200 (docs/ring.md, "Two schedulers"): the WHILE graph answers 20-25 us sooner at batch 1 and
 * is as fast from batch 64 on. */
#define SCHED_DEFAULT_MODE WF_RING_SCHED_WHILE

struct wf_ring_sched {
    void *state;
    cudaStream_t st;
    int nrings;
    int mode; /* WF_RING_SCHED_LAUNCH or _WHILE */
    wf_ring_t **rings;
    sched_params_t p;
    cudaGraphExec_t sched, publish; /* device launch */
    cudaGraphExec_t loop;           /* WHILE */
    void *dmem;
};

#define SERR(code, ...)                                                                \
    do {                                                                               \
        if (err)                                                                       \
            snprintf(err, errlen, __VA_ARGS__);                                        \
        sched_free(s);                                                                 \
        return (code);                                                                 \
    } while (0)

static void sched_free(wf_ring_sched_t *s)
{
    if (!s)
        return;
    if (s->sched)
        WF_CU(cudaGraphExecDestroy(s->sched));
    if (s->publish)
        WF_CU(cudaGraphExecDestroy(s->publish));
    if (s->loop)
        WF_CU(cudaGraphExecDestroy(s->loop));
    if (s->dmem)
        WF_CU(cudaFree(s->dmem));
    free(s->rings);
    delete s;
}

/* Captures one kernel launch into a device-launchable, uploaded graph. */
template <typename F> static cudaError_t one_kernel_graph(cudaStream_t st, F launch, cudaGraphExec_t *out)
{
    cudaGraph_t g = NULL;
    cudaError_t e = WF_CU(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    if (e != cudaSuccess)
        return e;
    launch();
    e = WF_CU(cudaStreamEndCapture(st, &g));
    if (e != cudaSuccess)
        return e;
    e = WF_CU(cudaGraphInstantiateWithFlags(out, g, cudaGraphInstantiateFlagDeviceLaunch));
    WF_CU(cudaGraphDestroy(g));
    if (e != cudaSuccess)
        return e;
    return WF_CU(cudaGraphUpload(*out, st));
}

/* The WHILE variant, one graph launched once by the host:
 *
 *   WHILE (h_loop, 1 at launch) {
 *       loop_poll_k                          waits, takes, packs; sets h_bucket (and h_loop = 0 on stop)
 *       SWITCH (h_bucket) { bucket 0's forward pass | bucket 1's | ... }
 *       publish_k
 *   }
 *
 * Each SWITCH branch is the bucket's forward pass captured straight into the branch's body graph. pdl: with
 * programmatic dependent launches where the session uses them. */
static wf_status_t loop_graph_build(wf_ring_sched_t *s, int pdl, char *err, size_t errlen)
{
    sched_params_t &p = s->p;
    cudaGraph_t g = NULL;
    cudaGraphNode_t wn, pn, sn, qn;
    wf_err_t we;
    we.msg[0] = 0;
    const char *what = "graph";
    cudaError_t e = WF_CU(cudaGraphCreate(&g, 0));
    if (e == cudaSuccess) {
        what = "conditional handles";
        e = WF_CU(cudaGraphConditionalHandleCreate(&p.h_loop, g, 1, cudaGraphCondAssignDefault));
    }
    if (e == cudaSuccess)
        e = WF_CU(cudaGraphConditionalHandleCreate(&p.h_bucket, g, (unsigned)p.nb, cudaGraphCondAssignDefault));
    cudaGraphNodeParams wp = {}, sp = {};
    if (e == cudaSuccess) {
        what = "WHILE node";
        wp.type = cudaGraphNodeTypeConditional;
        wp.conditional.handle = p.h_loop;
        wp.conditional.type = cudaGraphCondTypeWhile;
        wp.conditional.size = 1;
        e = WF_CU(cudaGraphAddNode(&wn, g, NULL, NULL, 0, &wp));
    }
    /* the kernel nodes copy their parameters now: the handles are in p */
    void *args[] = { &p };
    if (e == cudaSuccess) {
        what = "poll kernel node";
        cudaKernelNodeParams kp = {};
        kp.func = (void *)loop_poll_k;
        kp.gridDim = dim3(1);
        kp.blockDim = dim3(SCHED_THREADS);
        kp.kernelParams = args;
        e = WF_CU(cudaGraphAddKernelNode(&pn, wp.conditional.phGraph_out[0], NULL, 0, &kp));
    }
    if (e == cudaSuccess) {
        what = "SWITCH node";
        sp.type = cudaGraphNodeTypeConditional;
        sp.conditional.handle = p.h_bucket;
        sp.conditional.type = cudaGraphCondTypeSwitch;
        sp.conditional.size = (unsigned)p.nb;
        e = WF_CU(cudaGraphAddNode(&sn, wp.conditional.phGraph_out[0], &pn, NULL, 1, &sp));
    }
    for (int i = 0; e == cudaSuccess && i < p.nb; i++)
        if (wf_cuda_bucket_capture_into(s->state, i, sp.conditional.phGraph_out[i], pdl, &we) != WF_OK) {
            if (g)
                WF_CU(cudaGraphDestroy(g));
            if (err)
                snprintf(err, errlen, "ring scheduler (WHILE): %s", we.msg);
            return WF_ERR_BACKEND;
        }
    if (e == cudaSuccess) {
        what = "publish kernel node";
        cudaKernelNodeParams kp = {};
        kp.func = (void *)publish_k;
        kp.gridDim = dim3(1);
        kp.blockDim = dim3(256);
        kp.kernelParams = args;
        e = WF_CU(cudaGraphAddKernelNode(&qn, wp.conditional.phGraph_out[0], &sn, 1, &kp));
    }
    if (e == cudaSuccess) {
        what = "instantiation";
        e = WF_CU(cudaGraphInstantiate(&s->loop, g, 0));
    }
    if (g)
        WF_CU(cudaGraphDestroy(g));
    if (e == cudaSuccess) {
        what = "upload";
        e = WF_CU(cudaGraphUpload(s->loop, s->st));
    }
    if (e != cudaSuccess) {
        (void)WF_CU(cudaGetLastError());
        if (s->loop)
            WF_CU(cudaGraphExecDestroy(s->loop));
        s->loop = NULL;
        if (err)
            snprintf(err, errlen, "ring scheduler (WHILE): %s: %s", what, cudaGetErrorString(e));
        return WF_ERR_BACKEND;
    }
    return WF_OK;
}

/* Writes a ring's stop word: a release store where the host sees the region, else a synchronous copy on the
 * legacy stream (which our non-blocking stream does not wait for). */
static void stop_word_set(wf_ring_t *ring, const wf_ring_layout_t *l, uint32_t v)
{
    wf_ring_region_t *rg = wf_ring_get_region(ring);
    if (wf_ring_region_host(rg))
        __atomic_store_n((uint32_t *)((char *)wf_ring_region_host(rg) + l->ctrl_stop), v, __ATOMIC_RELEASE);
    else
        WF_CU(cudaMemcpy((char *)wf_ring_region_device(rg) + l->ctrl_stop, &v, sizeof(v), cudaMemcpyHostToDevice));
}

static size_t align8(size_t x) { return (x + 7) & ~(size_t)7; }

extern "C" int wf_ring_sched_cuda_start(struct wf_session *session, wf_ring_t *const *rings, int nrings,
                                        const wf_ring_sched_opts_t *o, wf_ring_sched_t **out, char *err,
                                        size_t errlen)
{
    *out = NULL;
    wf_ring_sched_t *s = NULL;
    if (!session || !rings || !o)
        SERR(WF_ERR_INVALID, "ring scheduler: no session, rings or options");
    if (nrings < 1 || nrings > SCHED_MAX_RINGS)
        SERR(WF_ERR_INVALID, "ring scheduler: %d rings, not in 1..%d", nrings, SCHED_MAX_RINGS);
    if (wf_session_backend_ops(session) != &wf_backend_cuda)
        SERR(WF_ERR_INVALID, "ring scheduler: the session's backend is %s, not cuda", wf_session_backend(session));
    const wf_ring_opts_t *ro = wf_ring_get_opts(rings[0]);
    for (int r = 0; r < nrings; r++) {
        if (!rings[r])
            SERR(WF_ERR_INVALID, "ring scheduler: ring %d is missing", r);
        const wf_ring_opts_t *q = wf_ring_get_opts(rings[r]);
        if (q->slots != ro->slots || q->max_len != ro->max_len || q->num_labels != ro->num_labels)
            SERR(WF_ERR_INVALID, "ring scheduler: ring %d's options differ from ring 0's (one scheduler serves rings "
                 "of one shape)", r);
        if (!wf_ring_region_device(wf_ring_get_region(rings[r])))
            SERR(WF_ERR_INVALID, "ring scheduler: ring %d's memory is not visible to the GPU", r);
        for (int j = 0; j < r; j++)
            if (rings[j] == rings[r])
                SERR(WF_ERR_INVALID, "ring scheduler: ring %d is ring %d again (a ring has one consumer)", r, j);
    }
    void *state = wf_session_backend_state(session);
    if ((int)ro->num_labels != wf_cuda_num_labels(state))
        SERR(WF_ERR_INVALID, "ring scheduler: rings carry %u probabilities, the model has %d labels", ro->num_labels,
             wf_cuda_num_labels(state));
    if (o->max_batch < 1 || o->max_batch > 65535)
        SERR(WF_ERR_INVALID, "ring scheduler: max_batch %d out of range 1..65535", o->max_batch);
    int mode = o->mode, chosen = 1; /* chosen: by the caller or WAFER_RING_SCHED, not by the default */
    if (mode == WF_RING_SCHED_DEFAULT) {
        const char *env = getenv("WAFER_RING_SCHED");
        chosen = env && *env;
        mode = !chosen ? SCHED_DEFAULT_MODE
               : !strcmp(env, "launch") ? WF_RING_SCHED_LAUNCH
               : !strcmp(env, "while")  ? WF_RING_SCHED_WHILE
                                        : -1;
        if (mode < 0)
            SERR(WF_ERR_INVALID, "ring scheduler: WAFER_RING_SCHED=%s: not launch or while", env);
    }
    if (mode != WF_RING_SCHED_LAUNCH && mode != WF_RING_SCHED_WHILE)
        SERR(WF_ERR_INVALID, "ring scheduler: mode %d: not default, launch or while", o->mode);
    s = new (std::nothrow) wf_ring_sched_t();
    if (!s)
        return WF_ERR_NOMEM;
    s->mode = mode;
    s->rings = (wf_ring_t **)calloc((size_t)nrings, sizeof(*s->rings));
    if (!s->rings)
        SERR(WF_ERR_NOMEM, "ring scheduler: out of memory");
    memcpy(s->rings, rings, sizeof(*rings) * (size_t)nrings);
    s->nrings = nrings;
    s->state = state;
    s->st = (cudaStream_t)wf_cuda_stream(state);
    sched_params_t &p = s->p;
    memset(&p, 0, sizeof(p));
    p.nrings = nrings;
    wf_ring_layout(ro, &p.l);
    p.nslots = ro->slots;
    p.max_len = ro->max_len;
    p.C = ro->num_labels;
    wf_cuda_model_limits(state, &p.vocab, &p.max_pos);
    p.max_batch = o->max_batch;
    p.max_wait_ns = o->max_wait_ns;
    wf_err_t e2;
    const wf_cuda_bucket_t *bk = NULL;
    for (int i = 0; i < SCHED_MAX_BUCKETS; i++) {
        e2.msg[0] = 0;
        bk = wf_cuda_bucket_at(state, i, mode == WF_RING_SCHED_LAUNCH, &e2);
        if (!bk) {
            if (e2.msg[0])
                SERR(WF_ERR_BACKEND, "ring scheduler: %s", e2.msg);
            break;
        }
        p.tokens[i] = bk->tokens;
        p.seqs[i] = bk->seqs;
        p.g[i] = (cudaGraphExec_t)bk->dev_graph_exec;
        p.d_in = bk->d_in;
        p.d_probs = bk->d_probs;
        p.nb = i + 1;
    }
    if (p.nb == 0)
        SERR(WF_ERR_BACKEND, "ring scheduler: no buckets");
    /* Device state: sched_state_t | bases[R] | next[R] | iseq[B] | took[R] | iring[B] | map[B] | lens[B] */
    size_t R = (size_t)nrings, B = (size_t)o->max_batch;
    size_t o_bases = align8(sizeof(sched_state_t)), o_next = o_bases + 8 * R, o_iseq = o_next + 8 * R,
           o_took = o_iseq + 8 * B, o_iring = o_took + 4 * R, o_map = o_iring + 4 * B, o_lens = o_map + 4 * B,
           bytes = o_lens + 4 * B;
    char *init = (char *)calloc(1, bytes);
    if (!init)
        SERR(WF_ERR_NOMEM, "ring scheduler: out of memory");
    for (int r = 0; r < nrings; r++) {
        ((char **)(init + o_bases))[r] = (char *)wf_ring_region_device(wf_ring_get_region(rings[r]));
        /* a ring may already hold published submissions: start from what its consumer has taken */
        ((uint64_t *)(init + o_next))[r] = wf_ring_consumed(rings[r]);
    }
    cudaError_t e = WF_CU(cudaMalloc(&s->dmem, bytes));
    if (e == cudaSuccess)
        e = WF_CU(cudaMemcpy(s->dmem, init, bytes, cudaMemcpyHostToDevice));
    free(init);
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: device state: %s", cudaGetErrorString(e));
    char *dm = (char *)s->dmem;
    p.st = (sched_state_t *)dm;
    p.bases = (char *const *)(dm + o_bases);
    p.next = (uint64_t *)(dm + o_next);
    p.iseq = (uint64_t *)(dm + o_iseq);
    p.took = (int32_t *)(dm + o_took);
    p.iring = (int32_t *)(dm + o_iring);
    p.map = (int32_t *)(dm + o_map);
    p.lens = (int32_t *)(dm + o_lens);

    /* A previous scheduler's stop request must not stop this one. */
    for (int r = 0; r < nrings; r++)
        stop_word_set(rings[r], &p.l, 0);
    if (mode == WF_RING_SCHED_WHILE) {
        char why[256];
        wf_status_t ws = loop_graph_build(s, 1, why, sizeof(why));
        if (ws != WF_OK) {
            /* as the backend does for device-launch graphs: again with plain launches */
            wf_warn("%s; building it again without programmatic dependent launch", why);
            ws = loop_graph_build(s, 0, why, sizeof(why));
        }
        if (ws != WF_OK && chosen)
            SERR(ws, "%s", why);
        if (ws != WF_OK) {
            /* the default, not asked for: a driver without conditional SWITCH nodes, say, gets device launch */
            wf_warn("%s; the scheduler uses device graph launch instead", why);
            mode = s->mode = WF_RING_SCHED_LAUNCH;
            for (int i = 0; i < p.nb; i++) {
                e2.msg[0] = 0;
                bk = wf_cuda_bucket_at(state, i, 1, &e2);
                if (!bk)
                    SERR(WF_ERR_BACKEND, "ring scheduler: %s", e2.msg[0] ? e2.msg : "bucket missing");
                p.g[i] = (cudaGraphExec_t)bk->dev_graph_exec;
            }
        }
    }
    if (mode == WF_RING_SCHED_LAUNCH) {
        e = one_kernel_graph(s->st, [&] { publish_k<<<1, 256, 0, s->st>>>(p); }, &s->publish);
        if (e != cudaSuccess)
            SERR(WF_ERR_BACKEND, "ring scheduler: publish graph: %s", cudaGetErrorString(e));
        p.publish = s->publish;
        e = one_kernel_graph(s->st, [&] { sched_k<<<1, SCHED_THREADS, 0, s->st>>>(p); }, &s->sched);
        if (e != cudaSuccess)
            SERR(WF_ERR_BACKEND, "ring scheduler: scheduler graph: %s", cudaGetErrorString(e));
    }
    /* Everything the scheduler uses exists now: from this launch on, the host makes no CUDA call until
     * wf_ring_sched_cuda_stop (docs/ring.md, "CUDA calls and a running scheduler"). */
    e = WF_CU(cudaGraphLaunch(mode == WF_RING_SCHED_WHILE ? s->loop : s->sched, s->st));
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: launch: %s", cudaGetErrorString(e));
    *out = s;
    return WF_OK;
}

extern "C" uint32_t wf_ring_sched_cuda_stop(wf_ring_sched_t *s)
{
    if (!s)
        return 0;
    for (int r = 0; r < s->nrings; r++)
        stop_word_set(s->rings[r], &s->p.l, 1);
    /* the chain ends at the scheduler's next poll round: the stream completes with it */
    cudaError_t e = WF_CU(cudaStreamSynchronize(s->st));
    uint32_t detail = 0, st = 0;
    for (int r = 0; r < s->nrings && st == 0; r++)
        if (wf_ring_region_host(wf_ring_get_region(s->rings[r])))
            st = wf_ring_status(s->rings[r], &detail);
    if (e != cudaSuccess && st == 0)
        st = WF_RING_ERR_LAUNCH;
    sched_free(s);
    return st;
}
