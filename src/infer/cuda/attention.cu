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

#define ATTN_WARPS 4
#define ATTN_KT 32
#define ATTN_DMAX 128
#define ATTN_DV (ATTN_DMAX / 32)

__device__ __forceinline__ float wmax(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float wsum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void __launch_bounds__(ATTN_WARPS * 32)
    attn_k(const float *__restrict__ qkv, bf16 *__restrict__ ctx, const int32_t *__restrict__ start,
           const int32_t *__restrict__ items, const int32_t *__restrict__ nitems, int heads, int dh)
{
    __shared__ float ks[ATTN_KT][ATTN_DMAX + 1];
    __shared__ float vs[ATTN_KT][ATTN_DMAX + 1];
    __shared__ float qs[ATTN_WARPS][WF_CU_ATTN_QB / ATTN_WARPS][ATTN_DMAX];
    if ((int)blockIdx.x >= *nitems)
        return;
    int it = items[blockIdx.x], seq = it >> 16, q0 = (it & 0xffff) * WF_CU_ATTN_QB;
    int hd = blockIdx.y;
    int base = start[seq], L = start[seq + 1] - base;
    int I = heads * dh, ld = 3 * I;
    int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    const float *Q = qkv + (size_t)base * ld + hd * dh, *K = Q + I, *V = Q + 2 * I;
    float scale = rsqrtf((float)dh);

    /* this warp's query rows: q0 + warp + ATTN_WARPS * k */
    const int RW = WF_CU_ATTN_QB / ATTN_WARPS;
    float m[RW], l[RW], acc[RW][ATTN_DV];
#pragma unroll
    for (int k = 0; k < RW; k++) {
        int q = q0 + warp + ATTN_WARPS * k;
        for (int d = lane; d < dh; d += 32)
            qs[warp][k][d] = q < L ? Q[(size_t)q * ld + d] * scale : 0.0f;
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
            ks[t][d] = K[(size_t)(t0 + t) * ld + d];
            vs[t][d] = V[(size_t)(t0 + t) * ld + d];
        }
        __syncthreads();
#pragma unroll
        for (int k = 0; k < RW; k++) {
            int q = q0 + warp + ATTN_WARPS * k;
            if (q >= L)
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
        if (q >= L)
            continue;
        float inv = 1.0f / l[k];
        bf16 *o = ctx + (size_t)(base + q) * I + hd * dh;
#pragma unroll
        for (int i = 0; i < ATTN_DV; i++) {
            int d = lane + 32 * i;
            if (d < dh)
                o[d] = __float2bfloat16(acc[k][i] * inv);
        }
    }
}

void wf_cu_attention(const float *qkv, bf16 *ctx, const int32_t *start, const int32_t *items, const int32_t *nitems,
                     int grid_items, int heads, int dh, cudaStream_t st)
{
    dim3 grid(grid_items, heads);
    attn_k<<<grid, ATTN_WARPS * 32, 0, st>>>(qkv, ctx, start, items, nitems, heads, dh);
}
