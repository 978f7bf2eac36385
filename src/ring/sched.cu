/*
 * The GPU's own scheduler (self-scheduled mode).
 *
 * Three device-launchable graphs, chained by tail launches so that the host
 * launches once and then makes no CUDA call:
 *
 *   sched (1 block)   polls the submission ring until max_batch submissions
 *                     are ready or max_wait_ns have passed since the first;
 *                     validates them, packs the valid ones into the input
 *                     block of the smallest bucket that holds them, then
 *                     tail-launches  bucket graph -> publish -> sched.
 *   bucket graph      the captured forward pass (backend.cu).
 *   publish (1 block) writes each verdict, fences system-wide, writes the
 *                     verdicts' seq, fences, then the completion index.
 *
 * Tail launches run one after the other once the launching graph has ended,
 * so each graph sees the previous one's results, and the scheduler polls
 * again only when the batch's verdicts are out (one batch in flight; the
 * session's buffers are the scheduler's alone). A failed device-side launch
 * writes the status word and stops the chain; the host reads it.
 */
#include "infer/cuda/cuda_common.h"

extern "C" {
#include "ring/ring_internal.h"
#include "wafer/infer.h"
}

#include <errno.h>
#include <new>
#include <stdio.h>
#include <string.h>

#define SCHED_THREADS 512
#define SCHED_MAX_BUCKETS 32

typedef struct {
    uint64_t next;  /* next submission to take */
    uint64_t first; /* the batch in flight: first submission and count */
    int32_t count;
    int32_t pad;
} sched_state_t;

typedef struct {
    char *base; /* the region, device view */
    wf_ring_layout_t l;
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
    int32_t *map;  /* (max_batch) sequence index of submission i, -1 if invalid */
    int32_t *lens; /* (max_batch) */
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

static __device__ __forceinline__ wf_ring_slot_t *slot_at(const sched_params_t &p, uint64_t n)
{
    return (wf_ring_slot_t *)(p.base + p.l.slots + p.l.slot_bytes * (size_t)(n & (p.nslots - 1)));
}

static __device__ __forceinline__ wf_ring_verdict_t *verdict_at(const sched_params_t &p, uint64_t n)
{
    return (wf_ring_verdict_t *)(p.base + p.l.verdicts + p.l.verdict_bytes * (size_t)(n & (p.nslots - 1)));
}

static __global__ void __launch_bounds__(SCHED_THREADS) sched_k(sched_params_t p)
{
    __shared__ uint64_t s_first;
    __shared__ int s_n, s_go, s_bucket;
    __shared__ int s_tok[SCHED_THREADS], s_seq[SCHED_THREADS], s_items[SCHED_THREADS];
    int tid = threadIdx.x;
    int tmax = p.tokens[p.nb - 1], bmax = p.seqs[p.nb - 1];
    int lmax = (int)p.max_len < p.max_pos ? (int)p.max_len : p.max_pos;

    if (tid == 0) {
        uint64_t first = p.st->next, t0 = 0;
        int k = 0, tok = 0, go = 1;
        for (;;) {
            if (ld_volatile_u32((const uint32_t *)(p.base + p.l.ctrl_stop))) {
                go = 0;
                break;
            }
            bool full = false;
            while (k < p.max_batch && k < bmax) {
                wf_ring_slot_t *s = slot_at(p, first + k);
                if (ld_acquire_sys(&s->seq) != first + k + 1)
                    break;
                int len = (int)*(volatile uint32_t *)&s->len;
                int cl = len < 1 ? 1 : (len > lmax ? lmax : len);
                if (tok + cl > tmax) {
                    full = true;
                    break;
                }
                tok += cl;
                k++;
            }
            if (full || k >= p.max_batch || k >= bmax)
                break;
            if (k > 0) {
                uint64_t now = globaltimer();
                if (t0 == 0)
                    t0 = now;
                if (now - t0 >= p.max_wait_ns)
                    break;
            }
        }
        s_first = first;
        s_n = k;
        s_go = go;
    }
    __syncthreads();
    if (!s_go)
        return; /* stop: no relaunch, the chain ends and the host's stream completes */
    uint64_t first = s_first;
    int n = s_n;

    /* Validate: one warp per submission; lens[i] = its length, 0 when invalid. */
    int warp = tid / 32, lane = tid & 31, nwarps = SCHED_THREADS / 32;
    for (int i = warp; i < n; i += nwarps) {
        wf_ring_slot_t *s = slot_at(p, first + i);
        int len = (int)s->len;
        const int32_t *tk = (const int32_t *)(s + 1);
        bool ok = len >= 1 && len <= lmax;
        for (int j = lane; ok && j < len; j += 32)
            if (tk[j] < 0 || tk[j] >= p.vocab)
                ok = false;
        ok = __all_sync(0xffffffffu, ok);
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
        if (tid == 0) {
            *(volatile uint32_t *)(p.base + p.l.ctrl_detail) = (uint32_t)T;
            __threadfence_system();
            *(volatile uint32_t *)(p.base + p.l.ctrl_status) = WF_RING_ERR_BUCKET;
        }
        return;
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
        const int32_t *src = (const int32_t *)(slot_at(p, first + i) + 1);
        for (int j = lane; j < L; j += 32) {
            /* validated above, but the slot is shared memory: a writer that breaks the protocol must not make
             * the embedding gather read out of bounds */
            int32_t id = src[j];
            ids[s0 + j] = (uint32_t)id < (uint32_t)p.vocab ? id : 0;
            pos[s0 + j] = j;
        }
    }
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        p.st->first = first;
        p.st->count = n;
        p.st->next = first + n;
        cudaError_t e = cudaSuccess;
        if (nv > 0)
            e = cudaGraphLaunch(p.g[b], cudaStreamGraphTailLaunch);
        if (e == cudaSuccess)
            e = cudaGraphLaunch(p.publish, cudaStreamGraphTailLaunch);
        if (e == cudaSuccess)
            e = cudaGraphLaunch(cudaGetCurrentGraphExec(), cudaStreamGraphTailLaunch);
        if (e != cudaSuccess) {
            *(volatile uint32_t *)(p.base + p.l.ctrl_detail) = (uint32_t)e;
            __threadfence_system();
            *(volatile uint32_t *)(p.base + p.l.ctrl_status) = WF_RING_ERR_LAUNCH;
        }
    }
}

static __global__ void publish_k(sched_params_t p)
{
    uint64_t first = p.st->first;
    int n = p.st->count, C = (int)p.C;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        wf_ring_verdict_t *v = verdict_at(p, first + i);
        const wf_ring_slot_t *s = slot_at(p, first + i);
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
        *(volatile uint64_t *)&verdict_at(p, first + i)->seq = first + i + 1;
    __threadfence_system();
    __syncthreads();
    if (threadIdx.x == 0) {
        uint64_t *batches = (uint64_t *)(p.base + p.l.ctrl_batches);
        *(volatile uint64_t *)batches = *(volatile uint64_t *)batches + 1;
        *(volatile uint64_t *)(p.base + p.l.ctrl_done) = first + n;
        __threadfence_system();
    }
}

/* ------------------------------------------------------------------ host */

struct wf_ring_sched {
    void *state;
    cudaStream_t st;
    wf_ring_t *ring;
    sched_params_t p;
    cudaGraphExec_t sched, publish;
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
    if (s->dmem)
        WF_CU(cudaFree(s->dmem));
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

extern "C" int wf_ring_sched_cuda_start(struct wf_session *session, wf_ring_t *ring, const wf_ring_sched_opts_t *o,
                                   wf_ring_sched_t **out, char *err, size_t errlen)
{
    *out = NULL;
    wf_ring_sched_t *s = NULL;
    if (!session || !ring || !o)
        SERR(WF_ERR_INVALID, "ring scheduler: no session, ring or options");
    if (wf_session_backend_ops(session) != &wf_backend_cuda)
        SERR(WF_ERR_INVALID, "ring scheduler: the session's backend is %s, not cuda", wf_session_backend(session));
    wf_ring_region_t *rg = wf_ring_get_region(ring);
    if (!wf_ring_region_device(rg))
        SERR(WF_ERR_INVALID, "ring scheduler: the ring's memory is not visible to the GPU");
    const wf_ring_opts_t *ro = wf_ring_get_opts(ring);
    void *state = wf_session_backend_state(session);
    if ((int)ro->num_labels != wf_cuda_num_labels(state))
        SERR(WF_ERR_INVALID, "ring scheduler: ring carries %u probabilities, the model has %d labels", ro->num_labels,
             wf_cuda_num_labels(state));
    if (o->max_batch < 1 || o->max_batch > 65535)
        SERR(WF_ERR_INVALID, "ring scheduler: max_batch %d out of range 1..65535", o->max_batch);
    s = new (std::nothrow) wf_ring_sched_t();
    if (!s)
        return WF_ERR_NOMEM;
    s->state = state;
    s->ring = ring;
    s->st = (cudaStream_t)wf_cuda_stream(state);
    sched_params_t &p = s->p;
    memset(&p, 0, sizeof(p));
    p.base = (char *)wf_ring_region_device(rg);
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
        bk = wf_cuda_bucket_at(state, i, 1, &e2);
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
    size_t bytes = sizeof(sched_state_t) + 2 * sizeof(int32_t) * (size_t)o->max_batch;
    cudaError_t e = WF_CU(cudaMalloc(&s->dmem, bytes));
    if (e == cudaSuccess)
        e = WF_CU(cudaMemset(s->dmem, 0, bytes));
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: device state: %s", cudaGetErrorString(e));
    p.st = (sched_state_t *)s->dmem;
    p.map = (int32_t *)((char *)s->dmem + sizeof(sched_state_t));
    p.lens = p.map + o->max_batch;
    /* The ring may already hold published submissions: start from the host's next consumed. */
    sched_state_t init;
    memset(&init, 0, sizeof(init));
    init.next = wf_ring_consumed(ring);
    e = WF_CU(cudaMemcpy(p.st, &init, sizeof(init), cudaMemcpyHostToDevice));
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: device state: %s", cudaGetErrorString(e));

    /* A previous scheduler's stop request must not stop this one. */
    uint32_t zero = 0;
    if (wf_ring_region_host(rg))
        __atomic_store_n((uint32_t *)((char *)wf_ring_region_host(rg) + p.l.ctrl_stop), zero, __ATOMIC_RELEASE);
    else
        WF_CU(cudaMemcpy(p.base + p.l.ctrl_stop, &zero, sizeof(zero), cudaMemcpyHostToDevice));
    e = one_kernel_graph(s->st, [&] { publish_k<<<1, 256, 0, s->st>>>(p); }, &s->publish);
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: publish graph: %s", cudaGetErrorString(e));
    p.publish = s->publish;
    e = one_kernel_graph(s->st, [&] { sched_k<<<1, SCHED_THREADS, 0, s->st>>>(p); }, &s->sched);
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: scheduler graph: %s", cudaGetErrorString(e));
    e = WF_CU(cudaGraphLaunch(s->sched, s->st));
    if (e != cudaSuccess)
        SERR(WF_ERR_BACKEND, "ring scheduler: launch: %s", cudaGetErrorString(e));
    *out = s;
    return WF_OK;
}

extern "C" uint32_t wf_ring_sched_cuda_stop(wf_ring_sched_t *s)
{
    if (!s)
        return 0;
    wf_ring_region_t *rg = wf_ring_get_region(s->ring);
    uint32_t one = 1;
    if (wf_ring_region_host(rg))
        __atomic_store_n((uint32_t *)((char *)wf_ring_region_host(rg) + s->p.l.ctrl_stop), one, __ATOMIC_RELEASE);
    else /* GPU memory: a synchronous copy on the legacy stream, which our non-blocking stream does not wait for */
        WF_CU(cudaMemcpy(s->p.base + s->p.l.ctrl_stop, &one, sizeof(one), cudaMemcpyHostToDevice));
    cudaError_t e = WF_CU(cudaStreamSynchronize(s->st));
    uint32_t detail = 0, st = 0;
    if (wf_ring_region_host(rg))
        st = wf_ring_status(s->ring, &detail);
    if (e != cudaSuccess && st == 0)
        st = WF_RING_ERR_LAUNCH;
    sched_free(s);
    return st;
}
