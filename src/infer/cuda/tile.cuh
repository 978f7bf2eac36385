/*
 * The block-level product shared by the fused kernels (linear.cu,
 * linear_norm.cu, ffn_norm.cu): a block of 256 threads computes BM rows times
 * up to TILE_NMAX columns of X W^T (bf16 in, fp32 accumulate on WMMA) with
 * the block's X rows staged in shared memory once and W streamed through a
 * ring of cp.async stages. A cluster of up to 8 blocks shares the columns
 * (or K) of a row block, so that at small batches the weights are read by
 * many SMs at once, and whole rows meet in distributed shared memory: the
 * kernel finishes them there (bias, residual and LayerNorm/NoNorm, or bias
 * and activation into a second product) without a round trip through global
 * memory or another launch.
 *
 * Programmatic dependent launch: a kernel launched with pdl set may start
 * while its predecessor runs. It issues its first weight tiles (which no
 * kernel writes) and only then waits (griddepcontrol.wait) before it reads
 * activations; it lets its own successor start at once. A kernel launched
 * without pdl treats both instructions as no-ops.
 *
 * Included by .cu files only.
 */
#ifndef WAFER_INFER_CUDA_TILE_CUH
#define WAFER_INFER_CUDA_TILE_CUH

#include "infer/cuda/cuda_common.h"

#include "wafer/infer.h"

#include <cooperative_groups.h>
#include <mma.h>
#include <string.h>
#include <utility>

#define TILE_WARPS 8
#define TILE_THREADS (TILE_WARPS * 32)
#define TILE_KT 32                 /* K per stage */
#define TILE_WLD (TILE_KT + 8)     /* a staged W row, in bf16: padded against bank conflicts */
#define TILE_NMAX 512              /* columns per product call */
#define TILE_WS_BYTES (2 * TILE_NMAX * TILE_WLD * 2) /* the stage ring; the fp32 result reuses it */
#define TILE_SMEM_MAX 232448       /* Hopper's per-block opt-in shared memory */

static __device__ __forceinline__ void tile_pdl_wait(void) { asm volatile("griddepcontrol.wait;" ::: "memory"); }
static __device__ __forceinline__ void tile_pdl_trigger(void) { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

static __device__ __forceinline__ void tile_cp16(void *s, const void *g)
{
    unsigned sa = (unsigned)__cvta_generic_to_shared(s);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(sa), "l"(g) : "memory");
}
static __device__ __forceinline__ void tile_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
static __device__ __forceinline__ void tile_wait_pending(int n)
{
    if (n <= 0)
        asm volatile("cp.async.wait_group 0;" ::: "memory");
    else if (n == 1)
        asm volatile("cp.async.wait_group 1;" ::: "memory");
    else if (n == 2)
        asm volatile("cp.async.wait_group 2;" ::: "memory");
    else if (n == 3)
        asm volatile("cp.async.wait_group 3;" ::: "memory");
    else if (n == 4)
        asm volatile("cp.async.wait_group 4;" ::: "memory");
    else if (n == 5)
        asm volatile("cp.async.wait_group 5;" ::: "memory");
    else
        asm volatile("cp.async.wait_group 6;" ::: "memory");
}

/* One product's weights: rows n0 .. n0+N-1 of W (ldw), K columns. */
typedef struct {
    const bf16 *w;
    int ldw, n0, N, K;
    int S;  /* stages in the ring */
    int nk; /* K / TILE_KT */
} tile_w_t;

static __device__ __forceinline__ tile_w_t tile_w(const bf16 *w, int ldw, int n0, int N, int K)
{
    tile_w_t p;
    p.w = w;
    p.ldw = ldw;
    p.n0 = n0;
    p.N = N;
    p.K = K;
    int s = TILE_WS_BYTES / (N * TILE_WLD * 2);
    p.S = s > 8 ? 8 : s;
    p.nk = K / TILE_KT;
    return p;
}

static __device__ __forceinline__ void tile_load(const tile_w_t &p, bf16 *Ws, int t)
{
    bf16 *dst = Ws + (size_t)(t % p.S) * p.N * TILE_WLD;
    const bf16 *src = p.w + (size_t)p.n0 * p.ldw + (size_t)t * TILE_KT;
    for (int e = threadIdx.x; e < p.N * (TILE_KT / 8); e += TILE_THREADS) {
        int n = e / (TILE_KT / 8), k8 = (e % (TILE_KT / 8)) * 8;
        tile_cp16(dst + n * TILE_WLD + k8, src + (size_t)n * p.ldw + k8);
    }
}

/* The first S-1 stages in flight (one commit group each, empty ones too). */
static __device__ __forceinline__ void tile_prologue(const tile_w_t &p, bf16 *Ws)
{
    for (int s = 0; s < p.S - 1; s++) {
        if (s < p.nk)
            tile_load(p, Ws, s);
        tile_commit();
    }
}

/* BM rows of X (ldx) from row0 into As (lda = K + 8); rows past `rows` are zeros. K % 8 == 0. */
static __device__ __forceinline__ void tile_rows_load(bf16 *As, int lda, const bf16 *X, int ldx, int row0, int rows,
                                                      int K, int BM)
{
    int k8n = K / 8;
    for (int e = threadIdx.x; e < BM * k8n; e += TILE_THREADS) {
        int r = e / k8n, k8 = (e % k8n) * 8;
        uint4 v = make_uint4(0, 0, 0, 0);
        if (row0 + r < rows)
            v = *(const uint4 *)(X + (size_t)(row0 + r) * ldx + k8);
        *(uint4 *)(As + r * lda + k8) = v;
    }
}

/* Cs (BM, p.N; ldc, fp32, aliasing Ws) = As (BM, K; lda) @ W[n0 .. n0+N)^T. Expects tile_prologue(p) done;
 * ends with a barrier, so Cs is readable by every thread. */
template <int BM>
static __device__ void tile_mma(const tile_w_t &p, const bf16 *As, int lda, bf16 *Ws, float *Cs, int ldc)
{
    using namespace nvcuda;
    constexpr int RT = BM / 16, G = TILE_WARPS / RT, NF = TILE_NMAX / 16 / G;
    int warp = threadIdx.x >> 5, rt = warp % RT, cg = warp / RT;
    int ntile = p.N / 16;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[NF];
#pragma unroll
    for (int j = 0; j < NF; j++)
        wmma::fill_fragment(acc[j], 0.0f);
    for (int t = 0; t < p.nk; t++) {
        tile_wait_pending(p.S - 2);
        __syncthreads(); /* stage t is here for all; stage t-1 is free for everyone */
        if (t + p.S - 1 < p.nk)
            tile_load(p, Ws, t + p.S - 1);
        tile_commit();
        const bf16 *wt = Ws + (size_t)(t % p.S) * p.N * TILE_WLD;
#pragma unroll
        for (int kk = 0; kk < TILE_KT; kk += 16) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
            wmma::load_matrix_sync(a, As + rt * 16 * lda + t * TILE_KT + kk, lda);
#pragma unroll
            for (int j = 0; j < NF; j++) {
                int ct = cg + G * j;
                if (ct < ntile) {
                    wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                    wmma::load_matrix_sync(b, wt + ct * 16 * TILE_WLD + kk, TILE_WLD);
                    wmma::mma_sync(acc[j], a, b, acc[j]);
                }
            }
        }
    }
    asm volatile("cp.async.wait_group 0;" ::: "memory");
    __syncthreads(); /* every warp is done with Ws: Cs may overwrite it */
#pragma unroll
    for (int j = 0; j < NF; j++) {
        int ct = cg + G * j;
        if (ct < ntile)
            wmma::store_matrix_sync(Cs + rt * 16 * ldc + ct * 16, acc[j], ldc, wmma::mem_row_major);
    }
    __syncthreads();
}

static __device__ __forceinline__ float tile_wsum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float tile_act(float v, int kind)
{
    if (kind == WF_ACT_RELU)
        return v > 0.0f ? v : 0.0f;
    if (kind == WF_ACT_GELU)
        return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
    if (kind == WF_ACT_GELU_NEW)
        return 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    return tanhf(v);
}

/* The norm epilogue over a cluster of CL blocks (cluster dims (1, CL, 1); CL = 1: a block alone) that hold the
 * product of rows row0 .. row0+BM-1 in their Cs (ldc): split by columns (block p has columns p*NS .. p*NS+NS-1)
 * or, when splitk, each a partial sum over its share of K (all N columns). Block `rank` finishes rows rank,
 * rank+CL, ...: it first gathers them (all threads, independent loads from the peers' shared memory) into red
 * (BM/CL rows of N floats, this block's shared memory; unused when CL = 1), then one warp per (row, segment)
 * writes norm(product + bias + residual [+ position + type]) as the norm arguments say (a.y and a.gword
 * unused; width <= 512). */
template <int BM>
static __device__ void tile_norm_cl(float *Cs, int ldc, int N, int NS, bool splitk, float *red, const float *bias,
                                   int row0, const wf_cu_norm_args_t &a)
{
    namespace cg = cooperative_groups;
    cg::cluster_group cl = cg::this_cluster();
    int CL = (int)cl.num_blocks(), rank = (int)cl.block_rank();
    int rows_per = BM / CL, ldred = N;
    if (CL > 1) {
        cl.sync(); /* every block's Cs is complete */
        const float *pq[8];
#pragma unroll
        for (int q = 0; q < 8; q++)
            pq[q] = cl.map_shared_rank(Cs, q < CL ? q : 0);
        for (int e = threadIdx.x; e < rows_per * N; e += TILE_THREADS) {
            int rl = e / N, c = e % N, r = rank + CL * rl;
            float x = 0.0f;
            if (splitk) {
#pragma unroll
                for (int q = 0; q < 8; q++)
                    if (q < CL)
                        x += pq[q][r * ldc + c];
            } else {
                x = cl.map_shared_rank(Cs, c / NS)[r * ldc + c % NS];
            }
            red[rl * N + c] = x;
        }
        cl.sync(); /* red is complete, and no block reads a peer's Cs any more */
    } else {
        red = Cs;
        ldred = ldc;
    }
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int W = a.width;
    for (int u = warp; u < rows_per * a.nseg; u += TILE_WARPS) {
        int rl = u / a.nseg, s = u % a.nseg, gr = row0 + rank + CL * rl;
        if (gr >= a.rows)
            continue;
        int c0 = s * W;
        const float *cr = red + (size_t)rl * ldred + c0, *bs = bias + c0;
        const float *rr = a.res ? a.res + (size_t)gr * a.ldr + c0 : NULL;
        const float *pr = a.pos ? a.pos + (size_t)a.posid[gr] * W : NULL;
        float v[16];
        float sum = 0.0f;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int j = lane + 32 * i;
            v[i] = 0.0f;
            if (j < W) {
                float x = cr[j] + bs[j];
                if (rr)
                    x += rr[j];
                if (pr)
                    x += pr[j] + a.type0[j];
                v[i] = x;
                sum += x;
            }
        }
        float mean = 0.0f, rstd = 1.0f;
        if (a.layernorm) {
            mean = tile_wsum(sum) / W;
            float var = 0.0f;
#pragma unroll
            for (int i = 0; i < 16; i++) {
                int j = lane + 32 * i;
                if (j < W)
                    var += (v[i] - mean) * (v[i] - mean);
            }
            rstd = rsqrtf(tile_wsum(var) / W + a.eps);
        }
        const float *w = a.w[s], *b = a.b[s];
        float *o32 = a.o32 ? a.o32 + (size_t)gr * a.ld32 + c0 : NULL;
        bf16 *o16 = a.o16 ? a.o16 + (size_t)gr * a.ld16 + c0 : NULL;
#pragma unroll
        for (int i = 0; i < 16; i++) {
            int j = lane + 32 * i;
            if (j < W) {
                float y = (v[i] - mean) * rstd * w[j] + b[j];
                if (o32)
                    o32[j] = y;
                if (o16)
                    o16[j] = __float2bfloat16(y);
            }
        }
    }
}

/* Bytes of red for tile_norm_cl. */
static inline size_t tile_red_bytes(int bm, int N, int cl) { return cl > 1 ? (size_t)(bm / cl) * N * sizeof(float) : 0; }

/* The cluster size for splitting n columns (or a K of n) into shares that are multiples of `mult`: 8, 4, 2 or 1. */
static inline int tile_cluster(int n, int mult)
{
    for (int cl = 8; cl > 1; cl /= 2)
        if (n % (cl * mult) == 0)
            return cl;
    return 1;
}

/* Launches k on st with 256 threads a block, in clusters of (1, cluster, 1) blocks (grid.y == cluster), as a
 * programmatic dependent launch when pdl. */
template <typename... Exp, typename... Act>
static cudaError_t tile_launch(void (*k)(Exp...), dim3 grid, int cluster, size_t smem, int pdl, cudaStream_t st,
                               Act &&...args)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(TILE_THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = st;
    cudaLaunchAttribute at[2];
    int n = 0;
    if (cluster > 1) {
        at[n].id = cudaLaunchAttributeClusterDimension;
        at[n].val.clusterDim.x = 1;
        at[n].val.clusterDim.y = (unsigned)cluster;
        at[n].val.clusterDim.z = 1;
        n++;
    }
    if (pdl) {
        at[n].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        at[n].val.programmaticStreamSerializationAllowed = 1;
        n++;
    }
    cfg.attrs = at;
    cfg.numAttrs = n;
    return cudaLaunchKernelEx(&cfg, k, std::forward<Act>(args)...);
}

/* Row block: 16 rows while that leaves fewer blocks than about one wave of 32-row blocks, else 32. */
static inline int tile_bm(int rows) { return (rows + 31) / 32 < 132 ? 16 : 32; }

#endif
