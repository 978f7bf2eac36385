/*
 * Varlen self-attention for short sequences, packed tokens, no padding.
 *
 * One block per (work item, head): a work item is WF_CU_ATTN_QB query rows of
 * one sequence. Its 4 warps take one query row at a time; keys and values
 * stream through shared memory in tiles of 32 (one key per lane), with an
 * online softmax in fp32 so that any length up to max_position works with
 * fixed shared memory. head_dim <= ATTN_DMAX.
 */
#include "infer/cuda/cuda_common.h"

#include <stdlib.h>
#include <string.h>

#define ATTN_WARPS 4
#define ATTN_KT 32
#define ATTN_DMAX 128
#define ATTN_DV (ATTN_DMAX / 32)

/* q/k/v elements come as fp32 (the unfolded pass) or bf16 (the folded pass's one product over x) */
static __device__ __forceinline__ float ldv(const float *p) { return *p; }
static __device__ __forceinline__ float ldv(const bf16 *p) { return __bfloat162float(*p); }

static __device__ __forceinline__ float wmax(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ float wsum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

template <typename TI>
static __global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_k(const TI *__restrict__ qkv, int ld, bf16 *__restrict__ ctx, const int32_t *__restrict__ start,
           const int32_t *__restrict__ items, const int32_t *__restrict__ nitems, int heads, int dh, int skip_le,
           const TI *__restrict__ qc)
{
    __shared__ float ks[ATTN_KT][ATTN_DMAX + 1];
    __shared__ float vs[ATTN_KT][ATTN_DMAX + 1];
    __shared__ float qs[ATTN_WARPS][WF_CU_ATTN_QB / ATTN_WARPS][ATTN_DMAX];
    asm volatile("griddepcontrol.wait;" ::: "memory"); /* no-op unless launched with pdl */
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    /* qc: one block per sequence, its first query only, from qc (row seq), the output at row seq */
    int seq, q0 = 0;
    if (qc) {
        seq = blockIdx.x;
    } else {
        if ((int)blockIdx.x >= *nitems)
            return;
        int it = items[blockIdx.x];
        seq = it >> 16;
        q0 = (it & 0xffff) * WF_CU_ATTN_QB;
    }
    int hd = blockIdx.y;
    int base = start[seq], L = start[seq + 1] - base;
    if (L <= skip_le)
        return; /* the tensor-core kernel's (or, with qc, an empty sequence) */
    int I = heads * dh;
    int QL = qc ? 1 : L; /* queries this launch answers */
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const TI *Q = qkv + (size_t)base * ld + hd * dh, *K = Q + I, *V = Q + 2 * I;
    if (qc)
        Q = qc + (size_t)seq * I + hd * dh;
    float scale = rsqrtf((float)dh);

    /* this warp's query rows: q0 + warp + ATTN_WARPS * k */
    const int RW = WF_CU_ATTN_QB / ATTN_WARPS;
    float m[RW], l[RW], acc[RW][ATTN_DV];
#pragma unroll
    for (int k = 0; k < RW; k++) {
        int q = q0 + warp + ATTN_WARPS * k;
        for (int d = lane; d < dh; d += 32)
            qs[warp][k][d] = q < QL ? ldv(Q + (size_t)q * ld + d) * scale : 0.0f;
        m[k] = -INFINITY;
        l[k] = 0.0f;
#pragma unroll
        for (int i = 0; i < ATTN_DV; i++)
            acc[k][i] = 0.0f;
    }
    for (int t0 = 0; t0 < L; t0 += ATTN_KT) {
        int nk = min(ATTN_KT, L - t0);
        __syncthreads();
        for (int e = threadIdx.x; e < nk * dh; e += blockDim.x) {
            int t = e / dh, d = e % dh;
            ks[t][d] = ldv(K + (size_t)(t0 + t) * ld + d);
            vs[t][d] = ldv(V + (size_t)(t0 + t) * ld + d);
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < RW; k++) {
            int q = q0 + warp + ATTN_WARPS * k;
            if (q >= QL)
                continue;
            float s = -INFINITY;
            if (lane < nk) {
                s = 0.0f;
                for (int d = 0; d < dh; d++)
                    s += qs[warp][k][d] * ks[lane][d];
            }
            float mn = fmaxf(m[k], wmax(s));
            float corr = __expf(m[k] - mn);
            float p = lane < nk ? __expf(s - mn) : 0.0f;
            l[k] = l[k] * corr + wsum(p);
            m[k] = mn;
#pragma unroll
            for (int i = 0; i < ATTN_DV; i++)
                acc[k][i] *= corr;
            for (int j = 0; j < nk; j++) {
                float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
                for (int i = 0; i < ATTN_DV; i++) {
                    int d = lane + 32 * i;
                    if (d < dh)
                        acc[k][i] += pj * vs[j][d];
                }
            }
        }
    }
#pragma unroll
    for (int k = 0; k < RW; k++) {
        int q = q0 + warp + ATTN_WARPS * k;
        if (q >= QL)
            continue;
        float inv = 1.0f / l[k];
        bf16 *o = ctx + (size_t)(qc ? seq : base + q) * I + hd * dh;
#pragma unroll
        for (int i = 0; i < ATTN_DV; i++) {
            int d = lane + 32 * i;
            if (d < dh)
                o[d] = __float2bfloat16(acc[k][i] * inv);
        }
    }
}

/*
 * The same work items with every thread busy, for head sizes of 16, 32 and 64 (attn_row_k): a query row is
 * AR_G adjacent lanes, each taking every AR_G-th key, with the row's q and its output accumulator in registers;
 * keys and values stream through shared memory in fp32 tiles of AR_KT rows, padded so that the AR_G rows read
 * at once fall in distinct banks (16-byte reads, the query's lanes broadcast). Each lane keeps an online softmax
 * over its keys (exp2, rescaled only when its maximum grows); the AR_G partial results of a row merge by
 * shuffles at the end. The general kernel above does one query row per warp with serial dot products: an
 * ncu profile of MobileBERT (head size 32, 128 tokens) gave it 39 us a layer at batch 1 and 79% of the pass at
 * batch 1024 (docs/benchmarks.md). WAFER_CUDA_ATTN_ROW=0 turns this kernel off.
 */
#define AR_G 8
#define AR_KT 64
#define AR_THREADS (WF_CU_ATTN_QB * AR_G)

static __device__ __forceinline__ float4 ld4(const float *p) { return *(const float4 *)p; }
static __device__ __forceinline__ float4 ld4(const bf16 *p)
{
    uint2 u = *(const uint2 *)p;
    float2 a = __bfloat1622float2(*(const __nv_bfloat162 *)&u.x), b = __bfloat1622float2(*(const __nv_bfloat162 *)&u.y);
    return make_float4(a.x, a.y, b.x, b.y);
}

template <typename TI, int DH>
static __global__ void __launch_bounds__(AR_THREADS)
    attn_row_k(const TI *__restrict__ qkv, int ld, bf16 *__restrict__ ctx, const int32_t *__restrict__ start,
               const int32_t *__restrict__ items, const int32_t *__restrict__ nitems, int heads, int skip_le)
{
    __shared__ __align__(16) float ks[AR_KT][DH + 4];
    __shared__ __align__(16) float vs[AR_KT][DH + 4];
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    if ((int)blockIdx.x >= *nitems)
        return;
    int it = items[blockIdx.x], seq = it >> 16, q0 = (it & 0xffff) * WF_CU_ATTN_QB;
    int hd = blockIdx.y;
    int base = start[seq], L = start[seq + 1] - base;
    if (L <= skip_le)
        return; /* the tensor-core kernel's */
    int I = heads * DH;
    const TI *Q = qkv + (size_t)base * ld + hd * DH, *K = Q + I, *V = Q + 2 * I;
    int qi = threadIdx.x / AR_G, kl = threadIdx.x % AR_G, q = q0 + qi;
    bool active = q < L; /* inactive lanes still join the shuffles */
    const float scale = rsqrtf((float)DH) * 1.4426950408889634f; /* log2(e): exp2 below */
    float qr[DH], acc[DH];
#pragma unroll
    for (int d = 0; d < DH; d += 4) {
        float4 v = active ? ld4(Q + (size_t)q * ld + d) : make_float4(0.f, 0.f, 0.f, 0.f);
        qr[d] = v.x * scale;
        qr[d + 1] = v.y * scale;
        qr[d + 2] = v.z * scale;
        qr[d + 3] = v.w * scale;
        acc[d] = acc[d + 1] = acc[d + 2] = acc[d + 3] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int t0 = 0; t0 < L; t0 += AR_KT) {
        int nk = min(AR_KT, L - t0);
        __syncthreads();
        for (int e = threadIdx.x; e < nk * (DH / 4); e += AR_THREADS) {
            int t = e / (DH / 4), d = (e % (DH / 4)) * 4;
            *(float4 *)&ks[t][d] = ld4(K + (size_t)(t0 + t) * ld + d);
            *(float4 *)&vs[t][d] = ld4(V + (size_t)(t0 + t) * ld + d);
        }
        __syncthreads();
        if (!active)
            continue;
        for (int j = kl; j < nk; j += AR_G) {
            float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma unroll
            for (int d = 0; d < DH; d += 4) {
                float4 k4 = *(const float4 *)&ks[j][d];
                s0 = fmaf(qr[d], k4.x, s0);
                s1 = fmaf(qr[d + 1], k4.y, s1);
                s2 = fmaf(qr[d + 2], k4.z, s2);
                s3 = fmaf(qr[d + 3], k4.w, s3);
            }
            float sc = (s0 + s1) + (s2 + s3);
            if (sc > m) {
                float c = exp2f(m - sc);
                l *= c;
#pragma unroll
                for (int d = 0; d < DH; d++)
                    acc[d] *= c;
                m = sc;
            }
            float p = exp2f(sc - m);
            l += p;
#pragma unroll
            for (int d = 0; d < DH; d += 4) {
                float4 v4 = *(const float4 *)&vs[j][d];
                acc[d] = fmaf(p, v4.x, acc[d]);
                acc[d + 1] = fmaf(p, v4.y, acc[d + 1]);
                acc[d + 2] = fmaf(p, v4.z, acc[d + 2]);
                acc[d + 3] = fmaf(p, v4.w, acc[d + 3]);
            }
        }
    }
    float mg = m;
#pragma unroll
    for (int o = 1; o < AR_G; o <<= 1)
        mg = fmaxf(mg, __shfl_xor_sync(0xffffffffu, mg, o));
    float c = m == -INFINITY ? 0.0f : exp2f(m - mg); /* a lane without keys adds nothing */
    l *= c;
#pragma unroll
    for (int d = 0; d < DH; d++)
        acc[d] *= c;
#pragma unroll
    for (int o = 1; o < AR_G; o <<= 1) {
        l += __shfl_xor_sync(0xffffffffu, l, o);
#pragma unroll
        for (int d = 0; d < DH; d++)
            acc[d] += __shfl_xor_sync(0xffffffffu, acc[d], o);
    }
    if (!active)
        return;
    float inv = 1.0f / l;
    bf16 *out = ctx + (size_t)(base + q) * I + hd * DH;
#pragma unroll
    for (int d = 0; d < DH; d++) /* lane kl writes its eighth of the row (compile-time register indices) */
        if (d / (DH / AR_G) == kl)
            out[d] = __float2bfloat16(acc[d] * inv);
}

/*
 * Tensor-core attention for sequences of up to ATTN_TC_LMAX tokens and head
 * sizes that are multiples of 16 up to 64: one block per (sequence, head)
 * stages K and V once in shared memory as bf16; each of its warps takes
 * 16-query tiles: S = Q K^T (WMMA bf16, fp32 accumulate) into shared memory,
 * an fp32 softmax per row (unnormalised exp in bf16 as P), O = P V (WMMA),
 * divided by the row sums. Longer sequences go to attn_k.
 */
#include <mma.h>
using namespace nvcuda;

#define ATTN_TC_WARPS 4
#define ATTN_TC_LMAX 256

static size_t tc_smem(int lmax, int dh)
{
    size_t kv = 2 * (size_t)lmax * dh * sizeof(bf16);
    size_t per_warp = 16 * (size_t)dh * sizeof(bf16) + 16 * (size_t)lmax * sizeof(float) +
                      16 * (size_t)lmax * sizeof(bf16) + 16 * (size_t)dh * sizeof(float) + 16 * sizeof(float);
    return kv + ATTN_TC_WARPS * ((per_warp + 127) & ~(size_t)127) + 128;
}

template <typename TI>
static __global__ void __launch_bounds__(ATTN_TC_WARPS * 32)
    attn_tc_k(const TI *__restrict__ qkv, int ld, bf16 *__restrict__ ctx, const int32_t *__restrict__ start, int nb,
              int heads, int dh, int lmax)
{
    extern __shared__ __align__(128) unsigned char sm[];
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
    int seq = blockIdx.x, hd = blockIdx.y;
    int base = start[seq], L = start[seq + 1] - base;
    if (L == 0 || L > lmax)
        return;
    int Lp = (L + 15) & ~15;
    int I = heads * dh;
    const TI *Q = qkv + (size_t)base * ld + hd * dh, *K = Q + I, *V = Q + 2 * I;
    bf16 *Ks = (bf16 *)sm, *Vs = Ks + (size_t)lmax * dh;
    size_t per_warp = 16 * (size_t)dh * sizeof(bf16) + 16 * (size_t)lmax * sizeof(float) +
                      16 * (size_t)lmax * sizeof(bf16) + 16 * (size_t)dh * sizeof(float) + 16 * sizeof(float);
    per_warp = (per_warp + 127) & ~(size_t)127;
    unsigned char *wbase = sm + (((2 * (size_t)lmax * dh * sizeof(bf16)) + 127) & ~(size_t)127);
    for (int e = threadIdx.x; e < Lp * dh; e += blockDim.x) {
        int t = e / dh, d = e % dh;
        Ks[e] = __float2bfloat16(t < L ? ldv(K + (size_t)t * ld + d) : 0.0f);
        Vs[e] = __float2bfloat16(t < L ? ldv(V + (size_t)t * ld + d) : 0.0f);
    }
    __syncthreads();
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    unsigned char *w = wbase + warp * per_warp;
    bf16 *Qs = (bf16 *)w;
    float *Ss = (float *)(Qs + 16 * dh);
    bf16 *Ps = (bf16 *)(Ss + 16 * lmax);
    float *Os = (float *)(Ps + 16 * lmax);
    float *rsum = Os + 16 * dh;
    float scale = rsqrtf((float)dh);
    for (int q0 = warp * 16; q0 < L; q0 += ATTN_TC_WARPS * 16) {
        for (int e = lane; e < 16 * dh; e += 32) {
            int r = e / dh, d = e % dh;
            Qs[e] = __float2bfloat16(q0 + r < L ? ldv(Q + (size_t)(q0 + r) * ld + d) * scale : 0.0f);
        }
        __syncwarp();
        for (int k0 = 0; k0 < Lp; k0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int kk = 0; kk < dh; kk += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
                wmma::load_matrix_sync(a, Qs + kk, dh);
                wmma::load_matrix_sync(b, Ks + (size_t)k0 * dh + kk, dh);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Ss + k0, acc, lmax, wmma::mem_row_major);
        }
        __syncwarp();
        for (int r = 0; r < 16; r++) {
            float *sr = Ss + r * lmax;
            float mx = -INFINITY;
            for (int j = lane; j < L; j += 32)
                mx = fmaxf(mx, sr[j]);
            mx = wmax(mx);
            float sum = 0.0f;
            for (int j = lane; j < Lp; j += 32) {
                float p = j < L ? __expf(sr[j] - mx) : 0.0f;
                bf16 pb = __float2bfloat16(p);
                Ps[r * lmax + j] = pb;
                sum += __bfloat162float(pb); /* the sum of what P V multiplies */
            }
            sum = wsum(sum);
            if (lane == 0)
                rsum[r] = sum;
        }
        __syncwarp();
        for (int d0 = 0; d0 < dh; d0 += 16) {
            wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc;
            wmma::fill_fragment(acc, 0.0f);
            for (int k0 = 0; k0 < Lp; k0 += 16) {
                wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
                wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::row_major> b;
                wmma::load_matrix_sync(a, Ps + k0, lmax);
                wmma::load_matrix_sync(b, Vs + (size_t)k0 * dh + d0, dh);
                wmma::mma_sync(acc, a, b, acc);
            }
            wmma::store_matrix_sync(Os + d0, acc, dh, wmma::mem_row_major);
        }
        __syncwarp();
        for (int e = lane; e < 16 * dh; e += 32) {
            int r = e / dh, d = e % dh;
            if (q0 + r < L)
                ctx[(size_t)(base + q0 + r) * I + hd * dh + d] = __float2bfloat16(Os[e] / rsum[r]);
        }
        __syncwarp();
    }
}

int wf_cu_attention_tc_lmax(int dh, int lmax)
{
    /* Measured on an H200 (docs/benchmarks.md, "GPU backend"): this kernel is 7% faster at MobileBERT batch 4096
     * but slower at batch 1 and for BERT's 64-wide heads, so it is opt-in until it stages K/V and the softmax
     * better. Both kernels pass tests/gpu/gpu_agree. */
    const char *env = getenv("WAFER_CUDA_ATTN_TC");
    if (dh % 16 != 0 || dh > 64 || !env || strcmp(env, "1") != 0)
        return 0;
    return lmax < ATTN_TC_LMAX ? ((lmax + 15) & ~15) : ATTN_TC_LMAX;
}

template <typename TI>
static void attention(const TI *qkv, int ld, bf16 *ctx, const int32_t *start, const int32_t *items,
                      const int32_t *nitems, int grid_items, int nb, int heads, int dh, int tc_lmax, int pdl,
                      cudaStream_t st)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    cfg.stream = st;
    if (tc_lmax > 0) {
        cfg.gridDim = dim3(nb, heads);
        cfg.blockDim = dim3(ATTN_TC_WARPS * 32);
        cfg.dynamicSmemBytes = tc_smem(tc_lmax, dh);
        cudaLaunchKernelEx(&cfg, attn_tc_k<TI>, qkv, ld, ctx, start, nb, heads, dh, tc_lmax);
    }
    cfg.gridDim = dim3(grid_items, heads);
    cfg.dynamicSmemBytes = 0;
    const char *env = getenv("WAFER_CUDA_ATTN_ROW");
    bool row = !(env && !strcmp(env, "0"));
    cfg.blockDim = dim3(AR_THREADS);
    if (row && dh == 16)
        cudaLaunchKernelEx(&cfg, attn_row_k<TI, 16>, qkv, ld, ctx, start, items, nitems, heads, tc_lmax);
    else if (row && dh == 32)
        cudaLaunchKernelEx(&cfg, attn_row_k<TI, 32>, qkv, ld, ctx, start, items, nitems, heads, tc_lmax);
    else if (row && dh == 64)
        cudaLaunchKernelEx(&cfg, attn_row_k<TI, 64>, qkv, ld, ctx, start, items, nitems, heads, tc_lmax);
    else {
        cfg.blockDim = dim3(ATTN_WARPS * 32);
        cudaLaunchKernelEx(&cfg, attn_k<TI>, qkv, ld, ctx, start, items, nitems, heads, dh, tc_lmax, (const TI *)NULL);
    }
}

void wf_cu_attention_cls(const float *qkv, const float *qc, bf16 *ctx, const int32_t *start, int nb, int heads,
                         int dh, cudaStream_t st)
{
    attn_k<float><<<dim3(nb, heads), ATTN_WARPS * 32, 0, st>>>(qkv, 3 * heads * dh, ctx, start, NULL, NULL, heads, dh,
                                                               0, qc);
}

void wf_cu_attention(const float *qkv, bf16 *ctx, const int32_t *start, const int32_t *items, const int32_t *nitems,
                     int grid_items, int nb, int heads, int dh, int tc_lmax, int pdl, cudaStream_t st)
{
    attention(qkv, 3 * heads * dh, ctx, start, items, nitems, grid_items, nb, heads, dh, tc_lmax, pdl, st);
}

void wf_cu_attention_bf16(const bf16 *qkv, int ld, bf16 *ctx, const int32_t *start, const int32_t *items,
                          const int32_t *nitems, int grid_items, int nb, int heads, int dh, int tc_lmax, int pdl,
                          cudaStream_t st)
{
    attention(qkv, ld, ctx, start, items, nitems, grid_items, nb, heads, dh, tc_lmax, pdl, st);
}

/* Raises the tensor-core kernel's shared-memory limit (host, once, outside any capture). */
cudaError_t wf_cu_attention_setup(void)
{
    cudaError_t e = cudaFuncSetAttribute(attn_tc_k<float>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)tc_smem(ATTN_TC_LMAX, 64));
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attn_tc_k<bf16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)tc_smem(ATTN_TC_LMAX, 64));
    /* the fused products run with all shared memory: so does this, so that no reconfiguration separates them */
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attn_k<float>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(attn_k<bf16>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    return e;
}
