/*
 * The CUDA backend: BERT and MobileBERT forward passes on one GPU.
 *
 * Weights: one device block, matrices in bf16, biases in fp32 and bf16 (the
 * bias type cuBLASLt's epilogue wants follows the output type), norm
 * parameters, position/type embeddings and the classifier in fp32.
 *
 * Activations: one device block sized for the largest bucket. Products write
 * fp32 where a norm follows (the norm kernel adds the fp32 residual and keeps
 * an fp32 and a bf16 copy of its output: the residual stream stays fp32) and
 * bf16 where only another product reads (the FFN hidden state, with bias and
 * ReLU/GELU fused into cuBLASLt's epilogue).
 *
 * NoNorm models of MobileBERT's layout run folded (fold_decide, place_folded, forward_folded): NoNorm is
 * x * g + b, linear, so each one goes into the weights of the products around it at load time, every residual
 * add is a product's C matrix (beta = 1), and a layer is 11 cuBLASLt products and the attention, no norm kernel
 * (q and k composed with the attention bottleneck: one product gives [bn_in | q | k | v]).
 * The residual stream is then bf16 (cuBLASLt's C and D share a type, and the next product reads it).
 * In buckets of up to FFN_CHAIN_MAX_TOKENS tokens the attention output, the FFN blocks and the output bottleneck
 * (10 of those products) are one kernel of ours (ffn_chain.cu): a layer is 3 graph nodes.
 *
 * Buckets: a batch of T tokens runs in the smallest bucket of Tb >= T tokens
 * (powers of two from 16, and max_tokens). Padding tokens belong to no
 * sequence: attention and the head never read them, and the products compute
 * them harmlessly. Each bucket is captured, after one eager warm-up on a full
 * batch of random ids (where each new product shape gets its cuBLASLt
 * algorithm by timing, tune_pick), into a CUDA graph: host-to-device copy of the packed input, the forward pass,
 * device-to-host copy of the logits. cuBLASLt gets our own workspace, so the
 * graphs hold no memory nodes and can also be instantiated for device launch
 * (the ring's scheduler).
 */
#include "infer/cuda/cuda_common.h"

#include "infer/err.h"

extern "C" {
#include "infer/arch.h"
#include "wafer/core.h"
}

#include <cublasLt.h>

#include <atomic>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cuda_profiler_api.h>
#include <stddef.h>

static std::atomic<uint64_t> g_host_calls{ 0 };
extern "C" void wf_cuda_count_call(void) { g_host_calls.fetch_add(1, std::memory_order_relaxed); }
extern "C" uint64_t wf_cuda_host_calls(void) { return g_host_calls.load(std::memory_order_relaxed); }

extern "C" int wf_cuda_probe(char *why, size_t whylen)
{
    static std::once_flag once;
    static int ok;
    static char reason[256];
    std::call_once(once, [] {
        int n = 0;
        cudaError_t e = WF_CU(cudaGetDeviceCount(&n));
        if (e != cudaSuccess) {
            snprintf(reason, sizeof(reason), "no CUDA device (%s)", cudaGetErrorString(e));
            return;
        }
        if (n < 1) {
            snprintf(reason, sizeof(reason), "no CUDA device");
            return;
        }
        cudaDeviceProp p;
        e = WF_CU(cudaGetDeviceProperties(&p, 0));
        if (e != cudaSuccess) {
            snprintf(reason, sizeof(reason), "cannot query GPU 0 (%s)", cudaGetErrorString(e));
            return;
        }
        if (p.major < 9) {
            snprintf(reason, sizeof(reason), "GPU 0 (%s) has compute capability %d.%d; this build needs 9.0 or newer",
                     p.name, p.major, p.minor);
            return;
        }
        ok = 1;
    });
    if (!ok && why && whylen)
        snprintf(why, whylen, "%s", reason);
    return ok;
}

/* ------------------------------------------------------------------ state */

typedef struct {
    const bf16 *w;     /* (out, in) */
    const float *b32;  /* (out) */
    const bf16 *b16;
    const float *w32;  /* (out, in), classifier only */
    int out, in;
} lin_t;
typedef struct { const float *w, *b; } nrm_t;

enum { SRC_X, SRC_BI, SRC_BA };

typedef struct {
    lin_t bott;
    nrm_t bn_in, bn_att;
    lin_t proj0, proj1;
    int src0, src1;
    lin_t ao;
    nrm_t ao_n;
    lin_t fi[WF_ARCH_MAX_FFN], fo[WF_ARCH_MAX_FFN];
    nrm_t fn[WF_ARCH_MAX_FFN];
    lin_t in, out;
    nrm_t out_n;
    lin_t ob;
    nrm_t ob_n;
} layer_t;

#define MAX_BUCKETS 32
/* With WAFER_CUDA_FUSED=1, buckets up to this many tokens run the fused kernels (fewer graph nodes), larger ones
 * cuBLASLt. Opt-in: measured on an H200 they are slower than the unfused path at every batch size so far
 * (docs/benchmarks.md, "GPU backend", "Fused kernels"); they pass tests/gpu/gpu_agree. */
#define FUSE_MAX_TOKENS 2048
/* The folded pass runs a layer's attention output, FFN blocks and output bottleneck as one kernel (ffn_chain.cu)
 * in buckets of up to this many tokens (WAFER_CUDA_FFN_CHAIN_MAX_TOKENS; WAFER_CUDA_FFN_CHAIN=0: never),
 * cuBLASLt products above. Measured on an H200 (docs/benchmarks.md): 1.57x at 128 tokens, 1.56x at 256, even at
 * 512, 0.83x at 1024 (the kernel spreads each 32 rows over a cluster of 8 SMs that all read the layer's
 * weights: at 1024 tokens that is 32 reads of them a layer). */
#define FFN_CHAIN_MAX_TOKENS 512

typedef struct {
    wf_cuda_bucket_t pub;
    wf_cuda_in_layout_t lay;
    cudaGraphExec_t exec, dexec;
    int built, dbuilt;
} bucket_t;

typedef struct {
    wf_model_config_t cfg;
    wf_arch_dims_t d;
    int C;
    cudaStream_t st;
    cublasLtHandle_t lt;
    void *ws;
    size_t ws_bytes;
    char *wdev, *adev;
    /* weights */
    const bf16 *word;
    const float *pos, *type0;
    lin_t emb_t;
    nrm_t emb_n;
    layer_t L[WF_ARCH_MAX_LAYERS];
    lin_t pooler, cls;
    /* activations */
    float *x32, *x2_32, *g, *qkv, *bt32, *a32, *a2_32, *pooled, *logits, *probs;
    bf16 *x16, *x2_16, *e16, *bt16, *ctx16, *a16, *a2_16, *h16, *cls16, *xq16;
    int32_t *d_in, *h_in;
    float *h_logits;
    size_t in_words;
    int max_tokens, max_batch, tmax, bmax;
    int fused; /* our fused products where shapes allow (WAFER_CUDA_FUSED=1; else cuBLASLt everywhere) */
    int fuse_max; /* ... in buckets of up to this many tokens (WAFER_CUDA_FUSED_MAX_TOKENS) */
    int fold;  /* NoNorms folded into the products' weights, residual stream in bf16 (fold_decide) */
    int fchain;     /* folded pass: a layer's FFN blocks as one kernel (ffn_chain.cu), WAFER_CUDA_FFN_CHAIN: 0 off,
                     * 1 the FFN blocks, 2 (default) with the attention output and output bottleneck products */
    int fchain_max; /* ... in buckets of up to this many tokens (WAFER_CUDA_FFN_CHAIN_MAX_TOKENS) */
    int pdl;   /* programmatic dependent launches in the graphs (fused, folded: WAFER_CUDA_PDL=0 off; else =1 on) */
    int dpdl;  /* the same, in the graphs for device launch */
    bucket_t b[MAX_BUCKETS];
    int nb;
    std::mutex mu; /* bucket building */
    /* cuBLASLt algorithms chosen by measurement (WAFER_CUDA_TUNE=0: off, the heuristic's first everywhere) */
    int tune;
    struct tune_s *tunes;
    int ntunes;
    double tune_s;      /* host time spent choosing, seconds */
    int tune_changed;   /* shapes where another algorithm than the heuristic's first won */
    float tune_tol;     /* WAFER_CUDA_TUNE_TOL, default TUNE_TOL */
    cudaEvent_t ev0, ev1;
    void *tune_ref;     /* the heuristic's output (first TUNE_ROWS rows) to compare each candidate with */
    float *tune_cmp;    /* device: max |d - ref|, max |ref| (as int bits) */
    /* the last layer on the sequences' first rows only (WAFER_CUDA_CLS_ONLY=0: off) */
    int cls_only;
    float *xc32, *qc;
    /* WAFER_CUDA_PROFILE_RUN=N: run N (from 1) is bracketed by cudaProfilerStart/Stop (ncu --profile-from-start off) */
    long prof_run, runs;
} cu_t;

static const char *cu_err_str(cudaError_t e) { return cudaGetErrorString(e); }

/* ------------------------------------------------------------ products */

typedef enum { EPI_BIAS, EPI_RELU, EPI_GELU_TANH } epi_t;

/* ---- cuBLASLt algorithm choice by measurement ----
 * For each distinct product (m, n, k, leading dimensions, output type, epilogue, C or not), the first time it is
 * enqueued outside a capture (a bucket's warm-up), up to TUNE_CANDS of cuBLASLt's heuristic candidates are run on
 * the real buffers and timed with events; the fastest whose output (first TUNE_ROWS rows) is within TUNE_TOL of
 * the heuristic's first (relative to that output's largest magnitude; WAFER_CUDA_TUNE_TOL) is kept for that shape, for every bucket and
 * layer that has it. Repeating a product is harmless: D is never one of its inputs. */
#define TUNE_CANDS 32
#define TUNE_ROWS 256
#define TUNE_TOL 2e-2f
#define MAX_TUNES 1024
#define TUNE_SHAPE_BUDGET_S 0.03 /* timed runs per shape, about */

struct tune_s {
    int m, n, k, ldb, ldd, ldc, f32, epi, hasc, align; /* align: the pointers' common alignment, bytes */
    cublasLtMatmulAlgo_t algo;
};

static __global__ void tune_cmp_k(const void *d, const void *ref, int f32, long n, float *out)
{
    float dm = 0.0f, rm = 0.0f;
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float a = f32 ? ((const float *)d)[i] : __bfloat162float(((const bf16 *)d)[i]);
        float b = f32 ? ((const float *)ref)[i] : __bfloat162float(((const bf16 *)ref)[i]);
        float e = fabsf(a - b);
        dm = fmaxf(dm, e == e && e <= 3.0e38f ? e : 3.0e38f); /* NaN or inf: fails */
        rm = fmaxf(rm, fabsf(b) <= 3.0e38f ? fabsf(b) : 0.0f);
    }
    atomicMax((int *)out, __float_as_int(dm)); /* non-negative floats order as their bits */
    atomicMax((int *)out + 1, __float_as_int(rm));
}

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static bool stream_capturing(cudaStream_t st)
{
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    return WF_CU(cudaStreamIsCapturing(st, &cs)) != cudaSuccess || cs != cudaStreamCaptureStatusNone;
}

/* Seconds per run of algo (reps runs after one untimed), or a negative value if it fails. */
static double tune_time(cu_t *c, const cublasLtMatmulAlgo_t *algo, int reps, cublasLtMatmulDesc_t op,
                        cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb, cublasLtMatrixLayout_t lc,
                        cublasLtMatrixLayout_t ld, const void *W, const void *X, const void *Cm, void *D,
                        const float *alpha, const float *beta, cudaStream_t st)
{
    if (WF_CU(cublasLtMatmul(c->lt, op, alpha, W, la, X, lb, beta, Cm, lc, D, ld, algo, c->ws, c->ws_bytes, st)) !=
        CUBLAS_STATUS_SUCCESS)
        return -1;
    WF_CU(cudaEventRecord(c->ev0, st));
    for (int r = 0; r < reps; r++)
        if (WF_CU(cublasLtMatmul(c->lt, op, alpha, W, la, X, lb, beta, Cm, lc, D, ld, algo, c->ws, c->ws_bytes,
                                 st)) != CUBLAS_STATUS_SUCCESS)
            return -1;
    WF_CU(cudaEventRecord(c->ev1, st));
    float ms = 0;
    if (WF_CU(cudaEventSynchronize(c->ev1)) != cudaSuccess || WF_CU(cudaEventElapsedTime(&ms, c->ev0, c->ev1)) != cudaSuccess)
        return -1;
    return ms * 1e-3 / reps;
}

/* The candidates hs[0..found) timed on the real buffers; the winner's algo into t. */
static void tune_pick(cu_t *c, struct tune_s *t, const cublasLtMatmulHeuristicResult_t *hs, int found,
                      cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t la, cublasLtMatrixLayout_t lb,
                      cublasLtMatrixLayout_t lc, cublasLtMatrixLayout_t ld, const void *W, const void *X,
                      const void *Cm, void *D, cudaStream_t st)
{
    double w0 = mono_s();
    float alpha = 1.0f, beta = Cm != D ? 1.0f : 0.0f;
    size_t esz = t->f32 ? 4 : 2, cmp_n = (size_t)(t->n < TUNE_ROWS ? t->n : TUNE_ROWS) * t->ldd;
    t->algo = hs[0].algo;
    double best = tune_time(c, &hs[0].algo, 3, op, la, lb, lc, ld, W, X, Cm, D, &alpha, &beta, st);
    if (best < 0 || WF_CU(cudaMemcpyAsync(c->tune_ref, D, cmp_n * esz, cudaMemcpyDeviceToDevice, st)) != cudaSuccess)
        goto done;
    {
        int reps = best > 0 ? (int)(2e-3 / best) : 20;
        reps = reps < 2 ? 2 : reps > 20 ? 20 : reps;
        int cands = (int)(TUNE_SHAPE_BUDGET_S / (best * (reps + 1)));
        cands = cands < 4 ? 4 : cands;
        if (cands > found)
            cands = found;
        best = tune_time(c, &hs[0].algo, reps, op, la, lb, lc, ld, W, X, Cm, D, &alpha, &beta, st);
        for (int i = 1; i < cands && best > 0; i++) {
            double ti = tune_time(c, &hs[i].algo, reps, op, la, lb, lc, ld, W, X, Cm, D, &alpha, &beta, st);
            if (ti < 0 || ti >= best)
                continue;
            float h[2];
            if (WF_CU(cudaMemsetAsync(c->tune_cmp, 0, 2 * sizeof(float), st)) != cudaSuccess)
                break;
            tune_cmp_k<<<64, 256, 0, st>>>(D, c->tune_ref, t->f32, (long)cmp_n, c->tune_cmp);
            if (WF_CU(cudaMemcpyAsync(h, c->tune_cmp, sizeof(h), cudaMemcpyDeviceToHost, st)) != cudaSuccess ||
                WF_CU(cudaStreamSynchronize(st)) != cudaSuccess)
                break;
            if (!(h[0] <= c->tune_tol * (h[1] > 1e-6f ? h[1] : 1e-6f)))
                continue;
            best = ti;
            t->algo = hs[i].algo;
        }
        if (memcmp(&t->algo, &hs[0].algo, sizeof(t->algo)) != 0)
            c->tune_changed++;
    }
done:
    /* leave D as the chosen algorithm computes it, as the warm-up pass expects */
    WF_CU(cublasLtMatmul(c->lt, op, &alpha, W, la, X, lb, &beta, Cm, lc, D, ld, &t->algo, c->ws, c->ws_bytes, st));
    (void)WF_CU(cudaGetLastError());
    c->tune_s += mono_s() - w0;
}

/* D (rows, L->out; ldd) = X (rows, L->in; ldx) @ W^T + b [+ Cm (rows, L->out; ldc), of D's type], then the
 * epilogue. Row-major for us is column-major transposed for cuBLASLt: D^T = W X^T, m = out, n = rows, k = in.
 * With Cm, beta = 1: a residual add inside the product (D = X W^T + C + b). */
static cublasStatus_t gemm_c(cu_t *c, const bf16 *X, int ldx, int rows, const lin_t *L, void *D, bool d_f32, int ldd,
                             epi_t epi, const void *Cm, int ldc, cudaStream_t st)
{
    cublasLtMatmulDesc_t op = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL, lc = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    cublasStatus_t s;
    cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtEpilogue_t e = epi == EPI_RELU ? CUBLASLT_EPILOGUE_RELU_BIAS
                           : epi == EPI_GELU_TANH ? CUBLASLT_EPILOGUE_GELU_BIAS
                                                  : CUBLASLT_EPILOGUE_BIAS;
    const void *bias = d_f32 ? (const void *)L->b32 : (const void *)L->b16;
    cudaDataType_t dt = d_f32 ? CUDA_R_32F : CUDA_R_16BF;
    float alpha = 1.0f, beta = Cm ? 1.0f : 0.0f;
    cublasLtMatmulHeuristicResult_t hs[TUNE_CANDS];
    const cublasLtMatmulAlgo_t *algo;
    /* cuBLASLt's heuristic assumes 256-byte aligned matrices unless told: tell it (q/k/v column slices) */
    uint32_t align = 256;
    while (align > 2 && (((uintptr_t)X | (uintptr_t)D | (uintptr_t)L->w | (uintptr_t)(Cm ? Cm : D)) & (align - 1)))
        align >>= 1;
    struct tune_s key = { L->out, rows, L->in, ldx, ldd, Cm ? ldc : 0, d_f32, (int)epi, Cm != NULL, (int)align, {} };
    int found = 0;
#define TRYS(x)                                                                        \
    do {                                                                               \
        s = WF_CU(x);                                                                  \
        if (s != CUBLAS_STATUS_SUCCESS)                                                \
            goto out;                                                                  \
    } while (0)
    TRYS(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    TRYS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
    TRYS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
    TRYS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)));
    TRYS(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)));
    TRYS(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, L->in, L->out, L->in));
    TRYS(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, L->in, rows, ldx));
    TRYS(cublasLtMatrixLayoutCreate(&ld, dt, L->out, rows, ldd));
    if (Cm)
        TRYS(cublasLtMatrixLayoutCreate(&lc, dt, L->out, rows, ldc));
    else
        Cm = D, lc = ld;
    TRYS(cublasLtMatmulPreferenceCreate(&pref));
    TRYS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &c->ws_bytes,
                                              sizeof(c->ws_bytes)));
    if (align < 256) {
        TRYS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &align, sizeof(align)));
        TRYS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &align, sizeof(align)));
        TRYS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align, sizeof(align)));
        TRYS(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &align, sizeof(align)));
    }
    TRYS(cublasLtMatmulAlgoGetHeuristic(c->lt, op, la, lb, lc, ld, pref, c->tune ? TUNE_CANDS : 1, hs, &found));
    if (found < 1) {
        s = CUBLAS_STATUS_NOT_SUPPORTED;
        goto out;
    }
    algo = &hs[0].algo;
    if (c->tune) {
        struct tune_s *t = NULL;
        for (int i = 0; i < c->ntunes && !t; i++)
            if (!memcmp(&c->tunes[i], &key, offsetof(struct tune_s, algo)))
                t = &c->tunes[i];
        if (!t && c->ntunes < MAX_TUNES && !stream_capturing(st)) {
            t = &c->tunes[c->ntunes++];
            *t = key;
            tune_pick(c, t, hs, found, op, la, lb, lc, ld, L->w, X, Cm, D, st);
            goto out; /* D computed */
        }
        if (t)
            algo = &t->algo;
    }
    TRYS(cublasLtMatmul(c->lt, op, &alpha, L->w, la, X, lb, &beta, Cm, lc, D, ld, algo, c->ws, c->ws_bytes, st));
#undef TRYS
out:
    if (lc && lc != ld)
        WF_CU(cublasLtMatrixLayoutDestroy(lc));
    if (pref)
        WF_CU(cublasLtMatmulPreferenceDestroy(pref));
    if (ld)
        WF_CU(cublasLtMatrixLayoutDestroy(ld));
    if (lb)
        WF_CU(cublasLtMatrixLayoutDestroy(lb));
    if (la)
        WF_CU(cublasLtMatrixLayoutDestroy(la));
    if (op)
        WF_CU(cublasLtMatmulDescDestroy(op));
    return s;
}

static cublasStatus_t gemm(cu_t *c, const bf16 *X, int ldx, int rows, const lin_t *L, void *D, bool d_f32, int ldd,
                           epi_t epi, cudaStream_t st)
{
    return gemm_c(c, X, ldx, rows, L, D, d_f32, ldd, epi, NULL, 0, st);
}

/* ------------------------------------------------------------- forward */

extern "C" void wf_cuda_in_layout(int tokens, int seqs, wf_cuda_in_layout_t *l)
{
    size_t o = 0;
    l->ids = o;
    o += tokens;
    l->posid = o;
    o += tokens;
    l->start = o;
    o += seqs + 1;
    l->nitems = o;
    o += 1;
    l->items = o;
    o += tokens / WF_CU_ATTN_QB + seqs;
    l->total = o;
}

extern "C" void wf_cuda_pack(const wf_batch_t *b, int tokens, int seqs, int32_t *blk)
{
    wf_cuda_in_layout_t l;
    wf_cuda_in_layout(tokens, seqs, &l);
    int32_t *ids = blk + l.ids, *pos = blk + l.posid, *start = blk + l.start, *items = blk + l.items;
    int t = 0, ni = 0;
    for (int s = 0; s < b->n; s++) {
        start[s] = t;
        int L = b->lens[s];
        memcpy(ids + t, b->ids[s], sizeof(int32_t) * (size_t)L);
        for (int j = 0; j < L; j++)
            pos[t + j] = j;
        for (int q = 0; q * WF_CU_ATTN_QB < L; q++)
            items[ni++] = (s << 16) | q;
        t += L;
    }
    for (int s = b->n; s <= seqs; s++)
        start[s] = t;
    for (; t < tokens; t++) {
        ids[t] = 0;
        pos[t] = 0;
    }
    blk[l.nitems] = ni;
}

/* The forward pass with the NoNorms folded (c->fold: MobileBERT with NoNorm, see fold_decide and place_all):
 * only cuBLASLt products, the attention, the embedding gather and the head; every residual add is a product's
 * C matrix. The streams hold representations, not values: x = xr * Sx + Tx (the layer input) and, inside a
 * layer, a = ar * s + t, per column, with the scales and shifts folded into the weights that read them. */
static cublasStatus_t forward_folded(cu_t *c, const bucket_t *bk, cudaStream_t st, int pdl)
{
    const wf_arch_dims_t *d = &c->d;
    int T = bk->pub.tokens, nb = bk->pub.seqs;
    int H = d->hidden, I = d->true_hidden, F = d->inter;
    const int32_t *ids = c->d_in + bk->lay.ids, *posid = c->d_in + bk->lay.posid, *start = c->d_in + bk->lay.start,
                  *nitems = c->d_in + bk->lay.nitems, *items = c->d_in + bk->lay.items;
    cublasStatus_t s;
#define GC(...)                                                                        \
    do {                                                                               \
        s = gemm_c(c, __VA_ARGS__, st);                                                \
        if (s != CUBLAS_STATUS_SUCCESS)                                                \
            return s;                                                                  \
    } while (0)
    epi_t act_epi = c->cfg.hidden_act == WF_ACT_RELU       ? EPI_RELU
                    : c->cfg.hidden_act == WF_ACT_GELU_NEW ? EPI_GELU_TANH
                                                           : EPI_BIAS;
    bf16 *x16 = c->x16, *x2_16 = c->x2_16;
    /* xr = E Wt^T + bt + (pos + type0): the position rows are the product's C (in x2_16 for the moment) */
    wf_cu_embed_gather(ids, posid, T, c->word, c->cfg.embedding_size, c->cfg.trigram_input, c->e16, c->pos,
                       c->type0, H, x2_16, st);
    GC(c->e16, d->emb_in, T, &c->emb_t, x16, false, H, EPI_BIAS, x2_16, H);
    int tc_lmax = wf_cu_attention_tc_lmax(d->head_dim, T < c->cfg.max_position_embeddings ? T : c->cfg.max_position_embeddings);
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        const layer_t *L = &c->L[l];
        /* [bn_in | q | k | v] in one product (xq_place): values, not representations */
        int nblk = d->nffn + 1;
        int chain = c->fchain && T <= c->fchain_max && wf_cu_ffn_chain_ok(I, F, H, nblk, act_epi == EPI_RELU)
                        ? c->fchain
                        : 0;
        /* programmatic dependent launches (our kernels only; cuBLASLt's are plain) where the chain runs: measured
         * there only (docs/benchmarks.md) */
        int kpdl = chain ? pdl : 0;
        GC(x16, H, T, &L->bott, c->xq16, false, 4 * I, EPI_BIAS, NULL, 0);
        wf_cu_attention_bf16(c->xq16 + I, 4 * I, c->ctx16, start, items, nitems, T / WF_CU_ATTN_QB + nb, nb,
                             d->heads, d->head_dim, tc_lmax, kpdl, st);
        bf16 *a16 = c->a16, *a2_16 = c->a2_16;
        if (chain < 2)
            GC(c->ctx16, I, T, &L->ao, a16, false, I, EPI_BIAS, c->xq16, 4 * I);
        if (chain) {
            /* the layer's FFN blocks as one kernel (ffn_chain.cu) instead of 2 * nblk products; with chain 2
             * also the attention output before and the output bottleneck after: 3 nodes a layer */
            wf_cu_ffn_chain_t fc;
            memset(&fc, 0, sizeof(fc));
            fc.rows = T;
            fc.n = nblk;
            for (int f = 0; f < nblk; f++) {
                const lin_t *Li = f < d->nffn ? &L->fi[f] : &L->in, *Lo = f < d->nffn ? &L->fo[f] : &L->out;
                fc.wi[f] = Li->w, fc.bi[f] = Li->b16, fc.wo[f] = Lo->w, fc.bo[f] = Lo->b16;
            }
            if (chain >= 2) {
                fc.ctx = c->ctx16, fc.wao = L->ao.w, fc.bao = L->ao.b16, fc.bn = c->xq16, fc.ldbn = 4 * I;
                fc.wob = L->ob.w, fc.bob = L->ob.b16, fc.xres = x16, fc.xout = x2_16;
            } else {
                fc.x = a16, fc.out = a2_16;
            }
            if (WF_CU(wf_cu_ffn_chain(&fc, kpdl, st)) != cudaSuccess)
                return CUBLAS_STATUS_EXECUTION_FAILED;
            bf16 *t16 = a16;
            a16 = a2_16;
            a2_16 = t16;
        }
        for (int f = 0; f <= d->nffn && !chain; f++) {
            const lin_t *Li = f < d->nffn ? &L->fi[f] : &L->in, *Lo = f < d->nffn ? &L->fo[f] : &L->out;
            GC(a16, I, T, Li, c->h16, false, F, act_epi, NULL, 0);
            if (act_epi == EPI_BIAS)
                wf_cu_act_bf16(c->h16, (long)T * F, c->cfg.hidden_act, st);
            GC(c->h16, F, T, Lo, a2_16, false, I, EPI_BIAS, a16, I);
            bf16 *t16 = a16;
            a16 = a2_16;
            a2_16 = t16;
        }
        if (chain < 2)
            GC(a16, I, T, &L->ob, x2_16, false, H, EPI_BIAS, x16, H);
        bf16 *t16 = x16;
        x16 = x2_16;
        x2_16 = t16;
    }
    wf_cu_cls_gather(x16, start, nb, H, c->cls16, 0, st);
    GC(c->cls16, H, nb, &c->pooler, c->pooled, true, H, EPI_BIAS, NULL, 0);
    wf_cu_head(c->pooled, NULL, start, nb, H, c->cls.w32, c->cls.b32, c->C, c->logits, c->probs, 0, st);
#undef GC
    return CUBLAS_STATUS_SUCCESS;
}

/* Enqueues the forward pass of bucket k on st (eager or under capture). Where c->fused and the shapes allow,
 * each product and what follows it up to the next norm is one kernel of ours (linear.cu, linear_norm.cu,
 * ffn_norm.cu), launched as programmatic dependent launches when pdl; elsewhere cuBLASLt and the separate
 * norm/activation kernels. MobileBERT: 9 kernels a layer fused, 21 not, 12 folded (c->fold: forward_folded). */
static cublasStatus_t forward(cu_t *c, const bucket_t *bk, cudaStream_t st, int pdl)
{
    const wf_arch_dims_t *d = &c->d;
    int T = bk->pub.tokens, nb = bk->pub.seqs;
    int H = d->hidden, I = d->true_hidden, F = d->inter;
    const int32_t *ids = c->d_in + bk->lay.ids, *posid = c->d_in + bk->lay.posid, *start = c->d_in + bk->lay.start,
                  *nitems = c->d_in + bk->lay.nitems, *items = c->d_in + bk->lay.items;
    bool ln = d->norm == WF_NORM_LAYER_NORM;
    bool fz = c->fused && T <= c->fuse_max;
    int R = T; /* rows of the products and norms: T, or nb in a last layer on the first rows only */
    int compact = 0; /* the last layer's output is one row per sequence */
    cublasStatus_t s;
    if (c->fold)
        return forward_folded(c, bk, st, pdl);
#define G(...)                                                                         \
    do {                                                                               \
        s = gemm(c, __VA_ARGS__, st);                                                  \
        if (s != CUBLAS_STATUS_SUCCESS)                                                \
            return s;                                                                  \
    } while (0)
#define K(x)                                                                           \
    do {                                                                               \
        if ((x) != cudaSuccess)                                                        \
            return CUBLAS_STATUS_EXECUTION_FAILED;                                     \
    } while (0)
    wf_cu_norm_args_t na;
#define NORM_BEGIN() memset(&na, 0, sizeof(na)), na.nseg = 1, na.layernorm = ln, na.rows = R
    /* y = X W^T + b, then the norm na describes (na.y set by this macro on the unfused path) */
#define LIN_NORM(X, ldx, Lp)                                                           \
    do {                                                                               \
        if (fz && wf_cu_linear_norm_ok((Lp)->in, (Lp)->out, &na)) {                    \
            K(wf_cu_linear_norm(X, ldx, (Lp)->in, (Lp)->w, (Lp)->b32, (Lp)->out, &na, pdl, st)); \
        } else {                                                                       \
            G(X, ldx, R, Lp, c->g, true, (Lp)->out, EPI_BIAS);                         \
            na.y = c->g;                                                               \
            na.ldy = (Lp)->out;                                                        \
            wf_cu_norm(&na, st);                                                       \
        }                                                                              \
    } while (0)
    epi_t act_epi = c->cfg.hidden_act == WF_ACT_RELU       ? EPI_RELU
                    : c->cfg.hidden_act == WF_ACT_GELU_NEW ? EPI_GELU_TANH
                                                           : EPI_BIAS;
    bool act_kernel = act_epi == EPI_BIAS;
    /* norm(act(X Wi^T + bi) Wo^T + bo + na.res) */
#define FFN_NORM(X, Li, Lo)                                                            \
    do {                                                                               \
        if (fz && (Lo)->out == I && wf_cu_ffn_norm_ok(I, F, &na)) {                    \
            K(wf_cu_ffn_norm(X, I, I, (Li)->w, (Li)->b32, F, c->cfg.hidden_act, (Lo)->w, (Lo)->b32, &na, pdl, st)); \
        } else {                                                                       \
            G(X, I, R, Li, c->h16, false, F, act_epi);                                 \
            if (act_kernel)                                                            \
                wf_cu_act_bf16(c->h16, (long)R * F, c->cfg.hidden_act, st);            \
            G(c->h16, F, R, Lo, c->g, true, (Lo)->out, EPI_BIAS);                      \
            na.y = c->g;                                                               \
            na.ldy = (Lo)->out;                                                        \
            wf_cu_norm(&na, st);                                                       \
        }                                                                              \
    } while (0)

    float *x32 = c->x32, *x2_32 = c->x2_32;
    bf16 *x16 = c->x16, *x2_16 = c->x2_16;
    NORM_BEGIN();
    na.pos = c->pos;
    na.posid = posid;
    na.type0 = c->type0;
    na.w[0] = c->emb_n.w;
    na.b[0] = c->emb_n.b;
    na.width = H;
    na.eps = d->emb_eps;
    na.o32 = x32;
    na.ld32 = H;
    na.o16 = x16;
    na.ld16 = H;
    if (d->emb_in) {
        wf_cu_embed_gather(ids, posid, T, c->word, c->cfg.embedding_size, c->cfg.trigram_input, c->e16, NULL, NULL, 0,
                           NULL, st);
        LIN_NORM(c->e16, d->emb_in, &c->emb_t);
    } else {
        na.gword = c->word;
        na.ids = ids;
        wf_cu_norm(&na, st);
    }

    int tc_lmax = wf_cu_attention_tc_lmax(d->head_dim, T < c->cfg.max_position_embeddings ? T : c->cfg.max_position_embeddings);
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        const layer_t *L = &c->L[l];
        if (d->bottleneck) {
            NORM_BEGIN();
            na.nseg = d->kq_shared ? 2 : 1;
            na.width = I;
            na.w[0] = L->bn_in.w;
            na.b[0] = L->bn_in.b;
            na.w[1] = L->bn_att.w;
            na.b[1] = L->bn_att.b;
            na.eps = d->eps;
            na.o32 = c->bt32;
            na.ld32 = 2 * I;
            na.o16 = c->bt16;
            na.ld16 = 2 * I;
            LIN_NORM(x16, H, &L->bott);
        }
        const bf16 *src[3] = { x16, c->bt16, c->bt16 + I };
        const int lds[3] = { H, 2 * I, 2 * I };
        /* The head reads only each sequence's first row: in the last layer only K and V are needed for every
         * token; q, the attention, its output, the FFN and the norms run on the nb first rows (compact, row s =
         * sequence s), with the residual gathered from them. BERT's layout (q | k | v one product over x). */
        bool cls = c->cls_only && !fz && !d->bottleneck && !d->kq_shared && !L->proj1.out && L->src0 == SRC_X &&
                   l == c->cfg.num_hidden_layers - 1;
        if (cls) {
            lin_t q = L->proj0, kv = L->proj0;
            q.out = I;
            kv.w += (size_t)I * kv.in;
            kv.b32 += I;
            kv.b16 += I;
            kv.out = 2 * I;
            G(x16, H, T, &kv, c->qkv + I, true, 3 * I, EPI_BIAS);
            wf_cu_cls_gather(x16, start, nb, H, c->cls16, 0, st);
            wf_cu_rows_gather_f32(x32, start, nb, H, c->xc32, st);
            G(c->cls16, H, nb, &q, c->qc, true, I, EPI_BIAS);
            wf_cu_attention_cls(c->qkv, c->qc, c->ctx16, start, nb, d->heads, d->head_dim, st);
            R = nb;
            compact = 1;
            x32 = c->xc32; /* the residual, compact */
        } else {
        wf_cu_lin_t p0 = { src[L->src0], L->proj0.w, L->proj0.b32, c->qkv, lds[L->src0], L->proj0.in, L->proj0.out, 3 * I };
        wf_cu_lin_t p1 = { src[L->src1], L->proj1.w, L->proj1.b32, c->qkv + L->proj0.out, lds[L->src1], L->proj1.in,
                           L->proj1.out, 3 * I };
        if (fz && wf_cu_linear_ok(&p0) && (!L->proj1.out || wf_cu_linear_ok(&p1))) {
            K(wf_cu_linear(&p0, L->proj1.out ? &p1 : NULL, T, pdl, st));
        } else {
            G(src[L->src0], lds[L->src0], T, &L->proj0, c->qkv, true, 3 * I, EPI_BIAS);
            if (L->proj1.out)
                G(src[L->src1], lds[L->src1], T, &L->proj1, c->qkv + L->proj0.out, true, 3 * I, EPI_BIAS);
        }
        wf_cu_attention(c->qkv, c->ctx16, start, items, nitems, T / WF_CU_ATTN_QB + nb, nb, d->heads, d->head_dim,
                        tc_lmax, pdl && fz, st);
        }

        NORM_BEGIN();
        na.res = d->bottleneck ? c->bt32 : x32;
        na.ldr = d->bottleneck ? 2 * I : H;
        na.w[0] = L->ao_n.w;
        na.b[0] = L->ao_n.b;
        na.width = I;
        na.eps = d->eps;
        na.o32 = c->a32;
        na.ld32 = I;
        na.o16 = c->a16;
        na.ld16 = I;
        LIN_NORM(c->ctx16, I, &L->ao);
        float *a32 = c->a32, *a2_32 = c->a2_32;
        bf16 *a16 = c->a16, *a2_16 = c->a2_16;
        for (int f = 0; f < d->nffn; f++) {
            NORM_BEGIN();
            na.res = a32;
            na.ldr = I;
            na.w[0] = L->fn[f].w;
            na.b[0] = L->fn[f].b;
            na.width = I;
            na.eps = d->eps;
            na.o32 = a2_32;
            na.ld32 = I;
            na.o16 = a2_16;
            na.ld16 = I;
            FFN_NORM(a16, &L->fi[f], &L->fo[f]);
            float *t32 = a32;
            a32 = a2_32;
            a2_32 = t32;
            bf16 *t16 = a16;
            a16 = a2_16;
            a2_16 = t16;
        }
        NORM_BEGIN();
        na.res = a32;
        na.ldr = I;
        na.w[0] = L->out_n.w;
        na.b[0] = L->out_n.b;
        na.width = I;
        na.eps = d->out_eps;
        if (d->bottleneck) {
            na.o32 = a2_32;
            na.ld32 = I;
            na.o16 = a2_16;
            na.ld16 = I;
            FFN_NORM(a16, &L->in, &L->out);
            NORM_BEGIN();
            na.res = x32;
            na.ldr = H;
            na.w[0] = L->ob_n.w;
            na.b[0] = L->ob_n.b;
            na.width = H;
            na.eps = d->eps;
            na.o32 = x2_32;
            na.ld32 = H;
            na.o16 = x2_16;
            na.ld16 = H;
            LIN_NORM(a2_16, I, &L->ob);
        } else {
            na.o32 = x2_32;
            na.ld32 = H;
            na.o16 = x2_16;
            na.ld16 = H;
            FFN_NORM(a16, &L->in, &L->out);
        }
        float *t32 = x32;
        x32 = x2_32;
        x2_32 = t32;
        bf16 *t16 = x16;
        x16 = x2_16;
        x2_16 = t16;
    }
    if (d->has_pooler) {
        wf_cu_cls_gather(x16, start, nb, H, c->cls16, compact, st);
        G(c->cls16, H, nb, &c->pooler, c->pooled, true, H, EPI_BIAS);
        wf_cu_head(c->pooled, NULL, start, nb, H, c->cls.w32, c->cls.b32, c->C, c->logits, c->probs, 0, st);
    } else {
        wf_cu_head(NULL, x32, start, nb, H, c->cls.w32, c->cls.b32, c->C, c->logits, c->probs, compact, st);
    }
#undef G
#undef K
#undef NORM_BEGIN
#undef LIN_NORM
#undef FFN_NORM
    return CUBLAS_STATUS_SUCCESS;
}

/* ------------------------------------------------------------- buckets */

static wf_status_t capture(cu_t *c, bucket_t *bk, bool host, int pdl, cudaGraphExec_t *out, wf_err_t *err)
{
    cudaGraph_t g = NULL;
    cudaError_t e = WF_CU(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
    if (e != cudaSuccess)
        ERR(WF_ERR_BACKEND, "cuda: cannot begin graph capture: %s", cu_err_str(e));
    if (host)
        WF_CU(cudaMemcpyAsync(c->d_in, c->h_in, bk->lay.total * sizeof(int32_t), cudaMemcpyHostToDevice, c->st));
    cublasStatus_t s = forward(c, bk, c->st, pdl);
    if (host)
        WF_CU(cudaMemcpyAsync(c->h_logits, c->logits, sizeof(float) * (size_t)bk->pub.seqs * c->C,
                              cudaMemcpyDeviceToHost, c->st));
    e = WF_CU(cudaStreamEndCapture(c->st, &g));
    if (s != CUBLAS_STATUS_SUCCESS || e != cudaSuccess) {
        if (g)
            WF_CU(cudaGraphDestroy(g));
        ERR(WF_ERR_BACKEND, "cuda: graph capture of the %d-token bucket failed: %s / cuBLASLt %d", bk->pub.tokens,
            cu_err_str(e), (int)s);
    }
    if (wf_log_get_level() <= WF_LOG_DEBUG) {
        size_t n = 0;
        if (WF_CU(cudaGraphGetNodes(g, NULL, &n)) == cudaSuccess)
            wf_debug("cuda: %d-token bucket, %s graph: %zu nodes (%s, %s)", bk->pub.tokens,
                     host ? "host-launched" : "device-launched", n,
                     c->fold ? "NoNorms folded" : c->fused ? "fused" : "unfused",
                     pdl ? "programmatic dependent launch" : "plain launches");
    }
    e = WF_CU(cudaGraphInstantiateWithFlags(out, g, host ? 0 : cudaGraphInstantiateFlagDeviceLaunch));
    WF_CU(cudaGraphDestroy(g));
    if (e != cudaSuccess)
        ERR(WF_ERR_BACKEND, "cuda: cannot instantiate the %d-token graph%s: %s", bk->pub.tokens,
            host ? "" : " for device launch", cu_err_str(e));
    if (!host) {
        e = WF_CU(cudaGraphUpload(*out, c->st));
        if (e != cudaSuccess)
            ERR(WF_ERR_BACKEND, "cuda: cannot upload the device-launch graph: %s", cu_err_str(e));
    }
    return WF_OK;
}

/* With programmatic dependent launches where the session uses them; should a graph with them fail to
 * capture or instantiate (device launch, say), again without, and without from then on. */
static wf_status_t capture_any(cu_t *c, bucket_t *bk, bool host, cudaGraphExec_t *out, wf_err_t *err)
{
    int *pdl = host ? &c->pdl : &c->dpdl;
    if (*pdl) {
        wf_err_t e1;
        if (capture(c, bk, host, 1, out, &e1) == WF_OK)
            return WF_OK;
        (void)WF_CU(cudaGetLastError());
        wf_warn("cuda: %s; capturing %s graphs without programmatic dependent launch", e1.msg,
                host ? "host-launched" : "device-launched");
        *pdl = 0;
    }
    return capture(c, bk, host, 0, out, err);
}

static wf_status_t bucket_build(cu_t *c, bucket_t *bk, bool dev, wf_err_t *err)
{
    if (!bk->built) {
        /* Warm-up (module loading, cuBLASLt's first-use work, the choice of cuBLASLt's algorithms) on a full
         * batch of random ids, so that the products are timed on data like a real batch's. */
        int n = bk->pub.seqs, Ls = bk->pub.tokens / n;
        if (Ls > c->cfg.max_position_embeddings)
            Ls = c->cfg.max_position_embeddings;
        int32_t *ids = (int32_t *)malloc(sizeof(int32_t) * (size_t)n * Ls);
        const int32_t **ptrs = (const int32_t **)malloc(sizeof(*ptrs) * n);
        int *lens = (int *)malloc(sizeof(int) * n);
        if (!ids || !ptrs || !lens) {
            free(ids);
            free(ptrs);
            free(lens);
            ERR(WF_ERR_NOMEM, "cuda: out of memory");
        }
        uint32_t r = 12345u;
        for (long i = 0; i < (long)n * Ls; i++) {
            r = r * 1664525u + 1013904223u;
            ids[i] = (int32_t)((r >> 8) % (uint32_t)c->cfg.vocab_size);
        }
        for (int i = 0; i < n; i++) {
            ptrs[i] = ids + (size_t)i * Ls;
            lens[i] = Ls;
        }
        wf_batch_t wb = { ptrs, lens, n, n * Ls };
        wf_cuda_pack(&wb, bk->pub.tokens, bk->pub.seqs, c->h_in);
        free(ids);
        free(ptrs);
        free(lens);
        double t0 = c->tune_s;
        int ch0 = c->tune_changed, nt0 = c->ntunes;
        cudaError_t e = WF_CU(cudaMemcpyAsync(c->d_in, c->h_in, bk->lay.total * sizeof(int32_t), cudaMemcpyHostToDevice,
                                              c->st));
        cublasStatus_t s = e == cudaSuccess ? forward(c, bk, c->st, c->pdl) : CUBLAS_STATUS_EXECUTION_FAILED;
        if (e == cudaSuccess)
            e = WF_CU(cudaStreamSynchronize(c->st));
        if (e != cudaSuccess || s != CUBLAS_STATUS_SUCCESS)
            ERR(WF_ERR_BACKEND, "cuda: warm-up of the %d-token bucket failed: %s / cuBLASLt %d", bk->pub.tokens,
                cu_err_str(e), (int)s);
        if (c->tune)
            wf_debug("cuda: %d-token bucket: %d products' algorithms chosen by measurement in %.1f ms (%d not "
                     "cuBLASLt's first); %.1f ms in all so far",
                     bk->pub.tokens, c->ntunes - nt0, (c->tune_s - t0) * 1e3, c->tune_changed - ch0, c->tune_s * 1e3);
        wf_status_t st = capture_any(c, bk, true, &bk->exec, err);
        if (st != WF_OK)
            return st;
        bk->pub.graph_exec = bk->exec;
        bk->built = 1;
    }
    if (dev && !bk->dbuilt) {
        wf_status_t st = capture_any(c, bk, false, &bk->dexec, err);
        if (st != WF_OK)
            return st;
        bk->pub.dev_graph_exec = bk->dexec;
        bk->dbuilt = 1;
    }
    return WF_OK;
}

static bucket_t *bucket_for(cu_t *c, int tokens, int seqs)
{
    for (int i = 0; i < c->nb; i++)
        if (c->b[i].pub.tokens >= tokens && c->b[i].pub.seqs >= seqs)
            return &c->b[i];
    return NULL;
}

extern "C" const wf_cuda_bucket_t *wf_cuda_bucket_get(void *state, int tokens, int seqs, int dev_launch,
                                                      wf_err_t *err)
{
    cu_t *c = (cu_t *)state;
    bucket_t *bk = bucket_for(c, tokens, seqs);
    if (!bk) {
        if (err)
            snprintf(err->msg, sizeof(err->msg), "cuda: no bucket holds %d tokens / %d sequences", tokens, seqs);
        return NULL;
    }
    std::lock_guard<std::mutex> g(c->mu);
    if (bucket_build(c, bk, dev_launch != 0, err) != WF_OK)
        return NULL;
    return &bk->pub;
}

extern "C" const wf_cuda_bucket_t *wf_cuda_bucket_at(void *state, int i, int dev_launch, wf_err_t *err)
{
    cu_t *c = (cu_t *)state;
    if (i < 0 || i >= c->nb)
        return NULL;
    std::lock_guard<std::mutex> g(c->mu);
    if (bucket_build(c, &c->b[i], dev_launch != 0, err) != WF_OK)
        return NULL;
    return &c->b[i].pub;
}

extern "C" wf_status_t wf_cuda_bucket_capture_into(void *state, int i, void *graph, int pdl, wf_err_t *err)
{
    cu_t *c = (cu_t *)state;
    if (i < 0 || i >= c->nb)
        ERR(WF_ERR_INVALID, "cuda: no bucket %d", i);
    std::lock_guard<std::mutex> g(c->mu);
    bucket_t *bk = &c->b[i];
    wf_status_t st = bucket_build(c, bk, false, err); /* the warm-up: algorithms chosen, modules loaded */
    if (st != WF_OK)
        return st;
    cudaError_t e = WF_CU(cudaStreamBeginCaptureToGraph(c->st, (cudaGraph_t)graph, NULL, NULL, 0,
                                                        cudaStreamCaptureModeThreadLocal));
    if (e != cudaSuccess)
        ERR(WF_ERR_BACKEND, "cuda: cannot begin a capture into a graph: %s", cu_err_str(e));
    cublasStatus_t s = forward(c, bk, c->st, pdl && c->dpdl);
    cudaGraph_t out = NULL;
    e = WF_CU(cudaStreamEndCapture(c->st, &out));
    if (s != CUBLAS_STATUS_SUCCESS || e != cudaSuccess)
        ERR(WF_ERR_BACKEND, "cuda: capture of the %d-token bucket into a graph failed: %s / cuBLASLt %d",
            bk->pub.tokens, cu_err_str(e), (int)s);
    return WF_OK;
}

extern "C" void wf_cuda_model_limits(void *state, int *vocab, int *max_pos)
{
    cu_t *c = (cu_t *)state;
    *vocab = c->cfg.vocab_size;
    *max_pos = c->cfg.max_position_embeddings;
}

extern "C" int wf_cuda_num_labels(void *state) { return ((cu_t *)state)->C; }
extern "C" void *wf_cuda_stream(void *state) { return ((cu_t *)state)->st; }

/* ---------------------------------------------------------------- run */

static wf_status_t cu_run(void *state, const wf_batch_t *b, float *logits)
{
    cu_t *c = (cu_t *)state;
    bucket_t *bk = bucket_for(c, b->ntokens, b->n);
    if (!bk)
        return WF_ERR_LIMIT;
    {
        std::lock_guard<std::mutex> g(c->mu);
        if (!bk->built) {
            wf_err_t err;
            if (bucket_build(c, bk, false, &err) != WF_OK) {
                wf_error("%s", err.msg);
                return WF_ERR_BACKEND;
            }
        }
    }
    wf_cuda_pack(b, bk->pub.tokens, bk->pub.seqs, c->h_in);
    bool prof = ++c->runs == c->prof_run;
    if (prof)
        WF_CU(cudaProfilerStart());
    cudaError_t e = WF_CU(cudaGraphLaunch(bk->exec, c->st));
    if (e == cudaSuccess)
        e = WF_CU(cudaStreamSynchronize(c->st));
    if (prof)
        WF_CU(cudaProfilerStop());
    if (e != cudaSuccess) {
        wf_error("cuda: inference failed: %s", cu_err_str(e));
        return WF_ERR_BACKEND;
    }
    memcpy(logits, c->h_logits, sizeof(float) * (size_t)b->n * c->C);
    return WF_OK;
}

/* ---------------------------------------------------------------- init */

static uint16_t f2bf(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

typedef struct {
    char *host; /* NULL while sizing */
    char *dev;
    size_t off;
    wf_status_t st;
} place_t;

static size_t take(place_t *p, size_t bytes)
{
    size_t at = (p->off + 255) & ~(size_t)255;
    p->off = at + bytes;
    return at;
}

/* Converts n floats of t into the block at `at` (bf16 or fp32). */
static void put(place_t *p, size_t at, const wf_tensor_t *t, size_t n, bool as_bf16, size_t first = 0)
{
    if (!p->host || p->st != WF_OK)
        return;
    float *tmp = (float *)malloc(sizeof(float) * (size_t)t->numel);
    if (!tmp) {
        p->st = WF_ERR_NOMEM;
        return;
    }
    wf_status_t s = wf_tensor_to_f32(t, tmp, (size_t)t->numel);
    if (s != WF_OK)
        p->st = s;
    if (as_bf16) {
        uint16_t *o = (uint16_t *)(p->host + at);
        for (size_t i = 0; i < n; i++)
            o[i] = f2bf(tmp[first + i]);
    } else {
        memcpy(p->host + at, tmp + first, sizeof(float) * n);
    }
    free(tmp);
}

template <typename X> static X *dptr(place_t *p, size_t at) { return p->host ? (X *)(p->dev + at) : NULL; }

/* A NoNorm folded into a product (c->fold). The product reads a representation r of its input x,
 * x = r * s + t per input column (s, t NULL: r is x), and writes y * m + a per output row instead of its
 * value y (m, a NULL: y itself). So W' = diag(m) W diag(s), b' = m * (b + W t) + a. */
typedef struct {
    const float *s, *t, *m, *a;
} fold_t;

/* One product's rows folded per f (f->m, f->a indexed from row) into W (out, in) and B (out), floats. */
static wf_status_t fold_rows(const wf_lin_params_t *l, const fold_t *f, size_t row, int in, float *W, float *B)
{
    int o = (int)l->w.t->shape[0];
    wf_status_t st = wf_tensor_to_f32(l->w.t, W, (size_t)o * in);
    if (st == WF_OK)
        st = wf_tensor_to_f32(l->b.t, B, (size_t)o);
    if (st != WF_OK)
        return st;
    for (int r = 0; r < o; r++) {
        float *wr = W + (size_t)r * in;
        double acc = B[r];
        if (f->t)
            for (int j = 0; j < in; j++)
                acc += (double)wr[j] * f->t[j];
        double m = f->m ? f->m[row + r] : 1.0;
        for (int j = 0; j < in; j++)
            wr[j] = (float)(m * wr[j] * (f->s ? f->s[j] : 1.0f));
        B[r] = (float)(m * acc + (f->a ? f->a[row + r] : 0.0f));
    }
    return WF_OK;
}

/* Rows [row, row + o) of a placed product from floats: weights bf16, bias fp32 and bf16. */
static void store_rows(place_t *p, size_t aw, size_t ab32, size_t ab16, size_t row, int o, int in, const float *W,
                       const float *B)
{
    uint16_t *w16 = (uint16_t *)(p->host + aw) + row * in, *b16 = (uint16_t *)(p->host + ab16) + row;
    float *b32 = (float *)(p->host + ab32) + row;
    for (size_t i = 0; i < (size_t)o * in; i++)
        w16[i] = f2bf(W[i]);
    for (int r = 0; r < o; r++) {
        b32[r] = B[r];
        b16[r] = f2bf(B[r]);
    }
}

/* Stores the product(s) ls (stacked by output row, so f->m and f->a index the stacked rows) folded per f. */
static void put_folded(place_t *p, wf_lin_params_t **ls, int n, const fold_t *f, int in, size_t aw, size_t ab32,
                       size_t ab16)
{
    size_t row = 0;
    for (int i = 0; i < n && p->st == WF_OK; i++) {
        int o = (int)ls[i]->w.t->shape[0];
        float *W = (float *)malloc(sizeof(float) * (size_t)o * in), *B = (float *)malloc(sizeof(float) * (size_t)o);
        wf_status_t st = W && B ? fold_rows(ls[i], f, row, in, W, B) : WF_ERR_NOMEM;
        if (st == WF_OK)
            store_rows(p, aw, ab32, ab16, row, o, in, W, B);
        else
            p->st = st;
        free(W);
        free(B);
        row += o;
    }
}

/* The folded layer's first product (forward_folded): over the layer input's representation xr, the rows
 * [bn_in | q | k | v] (4I, bf16 out). q and k read the attention bottleneck, which is linear once its NoNorm is
 * folded (A xr + a), so their weights are composed with it: Wq A, Wq a + bq. The value of bn_in, and q, k, v. */
static lin_t xq_place(place_t *p, wf_layer_params_t *P, int H, int I, const fold_t *fin, const fold_t *fatt)
{
    lin_t r;
    memset(&r, 0, sizeof(r));
    r.in = H;
    r.out = 4 * I;
    size_t aw = take(p, (size_t)r.out * H * 2), ab32 = take(p, (size_t)r.out * 4), ab16 = take(p, (size_t)r.out * 2);
    r.w = dptr<bf16>(p, aw);
    r.b32 = dptr<float>(p, ab32);
    r.b16 = dptr<bf16>(p, ab16);
    if (!p->host || p->st != WF_OK)
        return r;
    float *W = (float *)malloc(sizeof(float) * (size_t)I * H), *B = (float *)malloc(sizeof(float) * I);
    float *A = (float *)malloc(sizeof(float) * (size_t)I * H), *a = (float *)malloc(sizeof(float) * I);
    float *Wq = (float *)malloc(sizeof(float) * (size_t)I * I), *bq = (float *)malloc(sizeof(float) * I);
    double *acc = (double *)malloc(sizeof(double) * H);
    fold_t fv = { fin->s, fin->t, NULL, NULL }, none = { NULL, NULL, NULL, NULL };
    wf_status_t st = W && B && A && a && Wq && bq && acc ? WF_OK : WF_ERR_NOMEM;
    if (st == WF_OK)
        st = fold_rows(&P->bn_input, fin, 0, H, W, B);
    if (st == WF_OK)
        store_rows(p, aw, ab32, ab16, 0, I, H, W, B);
    if (st == WF_OK)
        st = fold_rows(&P->bn_attention, fatt, 0, H, A, a);
    const wf_lin_params_t *qk[2] = { &P->q, &P->k };
    for (int i = 0; i < 2 && st == WF_OK; i++) {
        st = fold_rows(qk[i], &none, 0, I, Wq, bq);
        for (int o = 0; o < I && st == WF_OK; o++) {
            double bo = bq[o];
            for (int j = 0; j < H; j++)
                acc[j] = 0.0;
            for (int k = 0; k < I; k++) {
                double w = Wq[(size_t)o * I + k];
                const float *ar = A + (size_t)k * H;
                for (int j = 0; j < H; j++)
                    acc[j] += w * ar[j];
                bo += w * a[k];
            }
            for (int j = 0; j < H; j++)
                W[(size_t)o * H + j] = (float)acc[j];
            B[o] = (float)bo;
        }
        if (st == WF_OK)
            store_rows(p, aw, ab32, ab16, (size_t)(1 + i) * I, I, H, W, B);
    }
    if (st == WF_OK)
        st = fold_rows(&P->v, &fv, 0, H, W, B);
    if (st == WF_OK)
        store_rows(p, aw, ab32, ab16, (size_t)3 * I, I, H, W, B);
    if (st != WF_OK)
        p->st = st;
    free(W);
    free(B);
    free(A);
    free(a);
    free(Wq);
    free(bq);
    free(acc);
    return r;
}

/* Linear layers over the same input as one: weights stacked by output row; folded per f where given. */
static lin_t lin_place(place_t *p, wf_lin_params_t **ls, int n, bool w32, const fold_t *f = NULL)
{
    lin_t r;
    memset(&r, 0, sizeof(r));
    if (!ls[0]->w.t)
        return r;
    r.in = (int)ls[0]->w.t->shape[1];
    for (int i = 0; i < n; i++)
        r.out += (int)ls[i]->w.t->shape[0];
    size_t aw = take(p, (size_t)r.out * r.in * 2), ab32 = take(p, (size_t)r.out * 4), ab16 = take(p, (size_t)r.out * 2);
    size_t aw32 = w32 ? take(p, (size_t)r.out * r.in * 4) : 0;
    size_t row = 0;
    if (f && p->host)
        put_folded(p, ls, n, f, r.in, aw, ab32, ab16);
    for (int i = 0; i < n && !f; i++) {
        int o = (int)ls[i]->w.t->shape[0];
        put(p, aw + row * r.in * 2, ls[i]->w.t, (size_t)o * r.in, true);
        if (w32)
            put(p, aw32 + row * r.in * 4, ls[i]->w.t, (size_t)o * r.in, false);
        put(p, ab32 + row * 4, ls[i]->b.t, (size_t)o, false);
        put(p, ab16 + row * 2, ls[i]->b.t, (size_t)o, true);
        row += o;
    }
    r.w = dptr<bf16>(p, aw);
    r.b32 = dptr<float>(p, ab32);
    r.b16 = dptr<bf16>(p, ab16);
    r.w32 = w32 ? dptr<float>(p, aw32) : NULL;
    return r;
}

static lin_t lin1(place_t *p, wf_lin_params_t *l, bool w32 = false, const fold_t *f = NULL)
{
    wf_lin_params_t *ls[1] = { l };
    return lin_place(p, ls, 1, w32, f);
}

static nrm_t nrm_place(place_t *p, wf_norm_params_t *n)
{
    nrm_t r = { NULL, NULL };
    if (!n->w.t)
        return r;
    size_t dim = (size_t)n->w.t->numel;
    size_t aw = take(p, dim * 4), ab = take(p, dim * 4);
    put(p, aw, n->w.t, dim, false);
    put(p, ab, n->b.t, dim, false);
    r.w = dptr<float>(p, aw);
    r.b = dptr<float>(p, ab);
    return r;
}

/* A norm's weight or bias as floats (malloc'd; NULL on failure). */
static float *vecf(const wf_param_t *q)
{
    if (!q->t)
        return NULL;
    size_t n = (size_t)q->t->numel;
    float *v = (float *)malloc(sizeof(float) * n);
    if (v && wf_tensor_to_f32(q->t, v, n) != WF_OK) {
        free(v);
        v = NULL;
    }
    return v;
}

/* The NoNorm scales the folded forward pass divides by: the layer input's Sx (H) and, per layer, the FFN
 * chain's s (I), products of the NoNorm weights. Each entry must stay far from 0 and from overflow. */
static bool scale_ok(const float *v, int n)
{
    for (int i = 0; i < n; i++)
        if (!(fabsf(v[i]) >= 1e-8f && fabsf(v[i]) <= 1e8f))
            return false;
    return true;
}

/* One walk over the NoNorm chain (fold_walk): for each product, how it is folded. */
typedef struct {
    float *Sx, *Tx, *s, *t, *m, *a;
    int H, I;
    bool ok;
} chain_t;

static void mul_add(float *v, float *w, const float *g, const float *b, int n)
{
    for (int i = 0; i < n; i++) {
        v[i] *= g[i];
        if (w)
            w[i] = w[i] * g[i] + b[i];
    }
}

/* Whether the forward pass can run with the NoNorms folded into the products (forward_folded): MobileBERT's
 * layout (NoNorm, bottlenecks with a shared q/k input, embedding transformation, pooler) with every scale
 * within range. WAFER_CUDA_FOLD=0 turns it off. */
static bool fold_decide(const cu_t *c, const wf_weights_t *w)
{
    const wf_arch_dims_t *d = &c->d;
    const char *e = getenv("WAFER_CUDA_FOLD");
    if ((e && !strcmp(e, "0")) || d->norm == WF_NORM_LAYER_NORM || !d->bottleneck || !d->kq_shared || !d->emb_in ||
        !d->has_pooler || !w->pooler.w.t)
        return false;
    int H = d->hidden, I = d->true_hidden;
    float *Sx = vecf(&w->emb_norm.w), *s = (float *)malloc(sizeof(float) * (size_t)I);
    bool ok = Sx && s && scale_ok(Sx, H);
    for (int l = 0; ok && l < c->cfg.num_hidden_layers; l++) {
        const wf_layer_params_t *P = &w->layers[l];
        float *g = vecf(&P->attn_norm.w);
        ok = g != NULL;
        if (ok)
            memcpy(s, g, sizeof(float) * (size_t)I);
        free(g);
        ok = ok && scale_ok(s, I);
        for (int f = 0; ok && f <= d->nffn; f++) {
            g = vecf(f < d->nffn ? &P->ffn_norm[f].w : &P->out_norm.w);
            ok = g != NULL;
            if (ok)
                mul_add(s, NULL, g, NULL, I);
            free(g);
            ok = ok && scale_ok(s, I);
        }
        g = ok ? vecf(&P->out_bn_norm.w) : NULL;
        ok = ok && g;
        if (ok)
            mul_add(Sx, NULL, g, NULL, H);
        free(g);
        ok = ok && scale_ok(Sx, H);
    }
    free(Sx);
    free(s);
    return ok;
}

/* The layers and the pooler for forward_folded (fold_decide said yes): the weights of each product folded with
 * the representation of its input and of its output (fold_t), the norms placed too (unused), so that the
 * layout's size is the same as unfolded. */
static void place_folded(cu_t *c, place_t *p, wf_weights_t *w)
{
    const wf_arch_dims_t *d = &c->d;
    int H = d->hidden, I = d->true_hidden;
    size_t n = (size_t)(H > 2 * I ? H : 2 * I);
    float *Sx = vecf(&w->emb_norm.w), *Tx = vecf(&w->emb_norm.b);
    float *s = (float *)malloc(sizeof(float) * n), *t = (float *)malloc(sizeof(float) * n);
    float *m = (float *)malloc(sizeof(float) * n), *a = (float *)malloc(sizeof(float) * n);
    float *g = NULL, *b = NULL;
    if (!Sx || !Tx || !s || !t || !m || !a) {
        p->st = WF_ERR_NOMEM;
        goto out;
    }
#define NORM(np)                                                                       \
    do {                                                                               \
        free(g);                                                                       \
        free(b);                                                                       \
        g = vecf(&(np)->w);                                                            \
        b = vecf(&(np)->b);                                                            \
        if (!g || !b) {                                                                \
            p->st = WF_ERR_NOMEM;                                                      \
            goto out;                                                                  \
        }                                                                              \
    } while (0)
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        wf_layer_params_t *P = &w->layers[l];
        layer_t *L = &c->L[l];
        memset(L, 0, sizeof(*L));
        /* bottlenecks: read x (Sx, Tx), write the NoNorms' values */
        NORM(&P->bn_input_norm);
        memcpy(m, g, sizeof(float) * I);
        memcpy(a, b, sizeof(float) * I);
        L->bn_in = nrm_place(p, &P->bn_input_norm);
        NORM(&P->bn_attention_norm);
        memcpy(m + I, g, sizeof(float) * I);
        memcpy(a + I, b, sizeof(float) * I);
        L->bn_att = nrm_place(p, &P->bn_attention_norm);
        fold_t fin = { Sx, Tx, m, a }, fatt = { Sx, Tx, m + I, a + I };
        L->bott = xq_place(p, P, H, I, &fin, &fatt); /* [bn_in | q | k | v] */
        /* ar = ctx Wo^T + bo + bn_in: a = ar * g + b */
        L->ao = lin1(p, &P->attn_out);
        L->ao_n = nrm_place(p, &P->attn_norm);
        NORM(&P->attn_norm);
        memcpy(s, g, sizeof(float) * I);
        memcpy(t, b, sizeof(float) * I);
        /* FFN blocks: ar' = h (Wo / s)^T + bo / s + ar, then a' = ar' * (s g) + (t g + b) */
        for (int f = 0; f <= d->nffn; f++) {
            bool last = f == d->nffn;
            fold_t fi = { s, t, NULL, NULL };
            lin_t li = lin1(p, last ? &P->inter : &P->ffn_inter[f], false, &fi);
            for (int i = 0; i < I; i++)
                m[i] = 1.0f / s[i];
            fold_t fo = { NULL, NULL, m, NULL };
            lin_t lo = lin1(p, last ? &P->out : &P->ffn_out[f], false, &fo);
            wf_norm_params_t *np = last ? &P->out_norm : &P->ffn_norm[f];
            nrm_t nn = nrm_place(p, np);
            if (last) {
                L->in = li;
                L->out = lo;
                L->out_n = nn;
            } else {
                L->fi[f] = li;
                L->fo[f] = lo;
                L->fn[f] = nn;
            }
            NORM(np);
            mul_add(s, t, g, b, I);
        }
        /* xr' = (a Wob^T + bob) / Sx + xr, then x' = xr' * (Sx g) + (Tx g + b) */
        for (int i = 0; i < H; i++)
            m[i] = 1.0f / Sx[i];
        fold_t fo = { s, t, m, NULL };
        L->ob = lin1(p, &P->out_bn, false, &fo);
        L->ob_n = nrm_place(p, &P->out_bn_norm);
        NORM(&P->out_bn_norm);
        mul_add(Sx, Tx, g, b, H);
    }
    {
        fold_t fp = { Sx, Tx, NULL, NULL };
        c->pooler = lin1(p, &w->pooler, false, &fp);
        c->cls = lin1(p, &w->classifier, true);
    }
#undef NORM
out:
    free(g);
    free(b);
    free(Sx);
    free(Tx);
    free(s);
    free(t);
    free(m);
    free(a);
}

static void place_all(cu_t *c, place_t *p, const wf_weights_t *mw)
{
    const wf_arch_dims_t *d = &c->d;
    wf_weights_t w = *mw;
    int H = d->hidden;
    const wf_tensor_t *we = w.word_emb.t;
    size_t awd = take(p, (size_t)we->numel * 2);
    put(p, awd, we, (size_t)we->numel, true);
    c->word = dptr<bf16>(p, awd);
    size_t apos = take(p, (size_t)w.pos_emb.t->numel * 4);
    put(p, apos, w.pos_emb.t, (size_t)w.pos_emb.t->numel, false);
    c->pos = dptr<float>(p, apos);
    size_t aty = take(p, (size_t)H * 4); /* row 0: token_type_ids are all zero */
    put(p, aty, w.type_emb.t, (size_t)H, false);
    c->type0 = dptr<float>(p, aty);
    if (d->emb_in)
        c->emb_t = lin1(p, &w.emb_transform);
    c->emb_n = nrm_place(p, &w.emb_norm);
    if (c->fold) {
        place_folded(c, p, &w);
        return;
    }
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        wf_layer_params_t *P = &w.layers[l];
        layer_t *L = &c->L[l];
        memset(L, 0, sizeof(*L));
        if (d->bottleneck) {
            wf_lin_params_t *bl[2] = { &P->bn_input, &P->bn_attention };
            L->bott = lin_place(p, bl, d->kq_shared ? 2 : 1, false);
            L->bn_in = nrm_place(p, &P->bn_input_norm);
            if (d->kq_shared)
                L->bn_att = nrm_place(p, &P->bn_attention_norm);
        }
        if (d->kq_shared) {
            wf_lin_params_t *qk[2] = { &P->q, &P->k };
            L->proj0 = lin_place(p, qk, 2, false);
            L->src0 = SRC_BA;
            L->proj1 = lin1(p, &P->v);
            L->src1 = SRC_X;
        } else {
            wf_lin_params_t *qkv[3] = { &P->q, &P->k, &P->v };
            L->proj0 = lin_place(p, qkv, 3, false);
            L->src0 = d->bn_attention ? SRC_BI : SRC_X;
        }
        L->ao = lin1(p, &P->attn_out);
        L->ao_n = nrm_place(p, &P->attn_norm);
        for (int f = 0; f < d->nffn; f++) {
            L->fi[f] = lin1(p, &P->ffn_inter[f]);
            L->fo[f] = lin1(p, &P->ffn_out[f]);
            L->fn[f] = nrm_place(p, &P->ffn_norm[f]);
        }
        L->in = lin1(p, &P->inter);
        L->out = lin1(p, &P->out);
        L->out_n = nrm_place(p, &P->out_norm);
        if (d->bottleneck) {
            L->ob = lin1(p, &P->out_bn);
            L->ob_n = nrm_place(p, &P->out_bn_norm);
        }
    }
    if (d->has_pooler)
        c->pooler = lin1(p, &w.pooler);
    c->cls = lin1(p, &w.classifier, true);
}

static void cu_free(void *state)
{
    cu_t *c = (cu_t *)state;
    if (!c)
        return;
    if (c->st)
        WF_CU(cudaStreamSynchronize(c->st));
    for (int i = 0; i < c->nb; i++) {
        if (c->b[i].built)
            WF_CU(cudaGraphExecDestroy(c->b[i].exec));
        if (c->b[i].dbuilt)
            WF_CU(cudaGraphExecDestroy(c->b[i].dexec));
    }
    if (c->lt)
        WF_CU(cublasLtDestroy(c->lt));
    if (c->ev0)
        WF_CU(cudaEventDestroy(c->ev0));
    if (c->ev1)
        WF_CU(cudaEventDestroy(c->ev1));
    if (c->tune_ref)
        WF_CU(cudaFree(c->tune_ref));
    free(c->tunes);
    if (c->st)
        WF_CU(cudaStreamDestroy(c->st));
    if (c->wdev)
        WF_CU(cudaFree(c->wdev));
    if (c->adev)
        WF_CU(cudaFree(c->adev));
    if (c->ws)
        WF_CU(cudaFree(c->ws));
    if (c->h_in)
        WF_CU(cudaFreeHost(c->h_in));
    if (c->h_logits)
        WF_CU(cudaFreeHost(c->h_logits));
    delete c;
}

static wf_status_t cu_init(const wf_model_t *m, const wf_session_opts_t *o, void **state, wf_err_t *err)
{
    char why[256];
    if (!wf_cuda_probe(why, sizeof(why)))
        ERR(WF_ERR_BACKEND, "cuda backend: %s", why);
    if (o->max_batch > 65535)
        ERR(WF_ERR_LIMIT, "cuda backend: max_batch %d over 65535", o->max_batch);
    cu_t *c = new (std::nothrow) cu_t();
    if (!c)
        ERR(WF_ERR_NOMEM, "out of memory");
    c->cfg = *wf_model_get_config(m);
    wf_status_t st = wf_arch_dims(&c->cfg, &c->d, err);
    if (st != WF_OK) {
        cu_free(c);
        return st;
    }
    const wf_arch_dims_t *d = &c->d;
    c->C = c->cfg.num_labels;
    if (d->head_dim > 128) {
        cu_free(c);
        ERR(WF_ERR_UNSUPPORTED, "cuda backend: attention head size %d over 128", d->head_dim);
    }
    c->max_tokens = o->max_tokens;
    c->max_batch = o->max_batch;
    for (int t = 16;; t *= 2) {
        int tb = t < o->max_tokens ? t : o->max_tokens;
        tb = (tb + WF_CU_ATTN_QB - 1) / WF_CU_ATTN_QB * WF_CU_ATTN_QB;
        bucket_t *bk = &c->b[c->nb++];
        bk->pub.tokens = tb;
        bk->pub.seqs = tb < o->max_batch ? tb : o->max_batch;
        bk->pub.items = tb / WF_CU_ATTN_QB + bk->pub.seqs;
        wf_cuda_in_layout(tb, bk->pub.seqs, &bk->lay);
        bk->pub.in_bytes = bk->lay.total * sizeof(int32_t);
        if (tb >= o->max_tokens || c->nb == MAX_BUCKETS)
            break;
    }
    c->tmax = c->b[c->nb - 1].pub.tokens;
    c->bmax = c->b[c->nb - 1].pub.seqs;
    c->in_words = c->b[c->nb - 1].lay.total;

#define CK(x, what)                                                                    \
    do {                                                                               \
        cudaError_t e_ = WF_CU(x);                                                     \
        if (e_ != cudaSuccess) {                                                       \
            if (err)                                                                   \
                snprintf(err->msg, sizeof(err->msg), "cuda backend: %s: %s", what, cu_err_str(e_)); \
            cu_free(c);                                                                \
            return WF_ERR_BACKEND;                                                     \
        }                                                                              \
    } while (0)
    CK(cudaSetDevice(0), "cannot use GPU 0");
    CK(cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking), "cannot create a stream");
    CK(wf_cu_attention_setup(), "cannot size the attention kernel's shared memory");
    CK(wf_cu_linear_setup(), "cannot size the fused kernels' shared memory");
    CK(wf_cu_linear_norm_setup(), "cannot size the fused kernels' shared memory");
    CK(wf_cu_ffn_norm_setup(), "cannot size the fused kernels' shared memory");
    CK(wf_cu_ffn_chain_setup(), "cannot size the FFN chain kernel's shared memory");
    {
        const char *f = getenv("WAFER_CUDA_FUSED"), *p = getenv("WAFER_CUDA_PDL");
        c->fused = f && !strcmp(f, "1");
        c->pdl = c->dpdl = (c->fused && !(p && !strcmp(p, "0"))) || (p && !strcmp(p, "1"));
        const char *m = getenv("WAFER_CUDA_FUSED_MAX_TOKENS");
        c->fuse_max = m && atoi(m) > 0 ? atoi(m) : FUSE_MAX_TOKENS;
    }
    if (WF_CU(cublasLtCreate(&c->lt)) != CUBLAS_STATUS_SUCCESS) {
        c->lt = NULL;
        cu_free(c);
        ERR(WF_ERR_BACKEND, "cuda backend: cannot create a cuBLASLt handle");
    }
    c->ws_bytes = 32u << 20;
    CK(cudaMalloc(&c->ws, c->ws_bytes), "cannot allocate the cuBLASLt workspace");
    {
        const char *t = getenv("WAFER_CUDA_TUNE"), *cl = getenv("WAFER_CUDA_CLS_ONLY"),
                   *pr = getenv("WAFER_CUDA_PROFILE_RUN");
        c->tune = !(t && !strcmp(t, "0"));
        c->cls_only = !(cl && !strcmp(cl, "0"));
        c->prof_run = pr ? atol(pr) : 0;
        const char *tt = getenv("WAFER_CUDA_TUNE_TOL");
        c->tune_tol = tt && atof(tt) > 0 ? (float)atof(tt) : TUNE_TOL;
        const char *fc = getenv("WAFER_CUDA_FFN_CHAIN"), *fm = getenv("WAFER_CUDA_FFN_CHAIN_MAX_TOKENS");
        c->fchain = fc && *fc ? atoi(fc) : 2;
        c->fchain_max = fm && atoi(fm) > 0 ? atoi(fm) : FFN_CHAIN_MAX_TOKENS;
    }
    if (c->tune) {
        size_t wmax = d->inter;
        if ((size_t)4 * d->true_hidden > wmax)
            wmax = (size_t)4 * d->true_hidden;
        if ((size_t)d->hidden > wmax)
            wmax = d->hidden;
        c->tunes = (struct tune_s *)calloc(MAX_TUNES, sizeof(struct tune_s));
        if (!c->tunes) {
            cu_free(c);
            ERR(WF_ERR_NOMEM, "out of memory");
        }
        CK(cudaEventCreate(&c->ev0), "cannot create an event");
        CK(cudaEventCreate(&c->ev1), "cannot create an event");
        CK(cudaMalloc(&c->tune_ref, TUNE_ROWS * wmax * 4 + 256), "cannot allocate the tuning buffer");
        c->tune_cmp = (float *)((char *)c->tune_ref + TUNE_ROWS * wmax * 4);
    }

    c->fold = !c->fused && fold_decide(c, wf_model_get_weights_refs(m));
    {
        /* the folded pass launches its own kernels (attention, FFN chain) as programmatic dependent launches
         * where the FFN chain runs, unless WAFER_CUDA_PDL=0 */
        const char *p = getenv("WAFER_CUDA_PDL");
        if (c->fold && !(p && !strcmp(p, "0")))
            c->pdl = c->dpdl = 1;
    }
    wf_debug("cuda: NoNorms %s", c->fold ? "folded into the products" : "as kernels");
    /* Weights: size, stage on the host, one copy. */
    place_t p = { NULL, NULL, 0, WF_OK };
    place_all(c, &p, wf_model_get_weights_refs(m));
    if (p.st != WF_OK) { /* the walk stopped early: its size would be short */
        cu_free(c);
        ERR(p.st, "cuda backend: cannot size the weights");
    }
    size_t wbytes = p.off;
    char *host = (char *)malloc(wbytes);
    if (!host) {
        cu_free(c);
        ERR(WF_ERR_NOMEM, "cuda backend: cannot stage %zu MiB of weights", wbytes >> 20);
    }
    CK(cudaMalloc((void **)&c->wdev, wbytes), "cannot allocate weights");
    p = (place_t){ host, c->wdev, 0, WF_OK };
    place_all(c, &p, wf_model_get_weights_refs(m));
    if (p.st != WF_OK) {
        free(host);
        cu_free(c);
        ERR(p.st, "cuda backend: cannot convert weights");
    }
    cudaError_t ce = WF_CU(cudaMemcpy(c->wdev, host, wbytes, cudaMemcpyHostToDevice));
    free(host);
    CK(ce, "cannot upload weights");

    /* Activations, for the largest bucket. */
    size_t T = (size_t)c->tmax, B = (size_t)c->bmax, H = d->hidden, I = d->true_hidden, F = d->inter;
    size_t gw = H > 2 * I ? H : 2 * I;
    place_t a = { NULL, NULL, 0, WF_OK };
    size_t ox = take(&a, T * H * 4), ox2 = take(&a, T * H * 4), og = take(&a, T * gw * 4), oqkv = take(&a, T * 3 * I * 4),
           obt = take(&a, T * 2 * I * 4), oa = take(&a, T * I * 4), oa2 = take(&a, T * I * 4), opool = take(&a, B * H * 4),
           olog = take(&a, B * c->C * 4), oprob = take(&a, B * c->C * 4), ox16 = take(&a, T * H * 2),
           ox2_16 = take(&a, T * H * 2), oe = take(&a, T * (size_t)d->emb_in * 2), obt16 = take(&a, T * 2 * I * 2),
           octx = take(&a, T * I * 2), oa16 = take(&a, T * I * 2), oa2_16 = take(&a, T * I * 2), oh = take(&a, T * F * 2),
           ocls = take(&a, B * H * 2), oin = take(&a, c->in_words * 4), oxq = take(&a, c->fold ? T * 4 * I * 2 : 0),
           oxc = take(&a, B * H * 4), oqc = take(&a, B * I * 4);
    CK(cudaMalloc((void **)&c->adev, a.off), "cannot allocate activations");
    CK(cudaMemset(c->adev, 0, a.off), "cannot clear activations");
    char *A = c->adev;
    c->x32 = (float *)(A + ox);
    c->x2_32 = (float *)(A + ox2);
    c->g = (float *)(A + og);
    c->qkv = (float *)(A + oqkv);
    c->bt32 = (float *)(A + obt);
    c->a32 = (float *)(A + oa);
    c->a2_32 = (float *)(A + oa2);
    c->pooled = (float *)(A + opool);
    c->logits = (float *)(A + olog);
    c->probs = (float *)(A + oprob);
    c->x16 = (bf16 *)(A + ox16);
    c->x2_16 = (bf16 *)(A + ox2_16);
    c->e16 = (bf16 *)(A + oe);
    c->bt16 = (bf16 *)(A + obt16);
    c->ctx16 = (bf16 *)(A + octx);
    c->a16 = (bf16 *)(A + oa16);
    c->a2_16 = (bf16 *)(A + oa2_16);
    c->h16 = (bf16 *)(A + oh);
    c->cls16 = (bf16 *)(A + ocls);
    c->xq16 = (bf16 *)(A + oxq);
    c->xc32 = (float *)(A + oxc);
    c->qc = (float *)(A + oqc);
    c->d_in = (int32_t *)(A + oin);
    CK(cudaHostAlloc((void **)&c->h_in, c->in_words * 4, cudaHostAllocDefault), "cannot allocate pinned input");
    CK(cudaHostAlloc((void **)&c->h_logits, B * c->C * 4, cudaHostAllocDefault), "cannot allocate pinned output");
    for (int i = 0; i < c->nb; i++) {
        c->b[i].pub.d_in = c->d_in;
        c->b[i].pub.d_logits = c->logits;
        c->b[i].pub.d_probs = c->probs;
    }
#undef CK
    *state = c;
    return WF_OK;
}

extern "C" const wf_backend_ops_t wf_backend_cuda = {
    "cuda",
    cu_init,
    cu_run,
    cu_free,
};
