/* Residual + LayerNorm/NoNorm (and BERT's embedding sum) after a product, in fp32. */
#include "infer/cuda/cuda_common.h"

#include "wafer/infer.h"

static __device__ __forceinline__ float warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* One warp per (row, segment). The input value of a column is recomputed in
 * each pass (it is in L1), so the output may alias y. */
static __global__ void norm_k(wf_cu_norm_args_t a)
{
    int wid = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    int r = wid / a.nseg, s = wid % a.nseg;
    if (r >= a.rows)
        return;
    int W = a.width, c0 = s * W;
    const float *y = a.y ? a.y + (size_t)r * a.ldy + c0 : NULL;
    const bf16 *g = a.gword ? a.gword + (size_t)a.ids[r] * W : NULL;
    const float *rr = a.res ? a.res + (size_t)r * a.ldr + c0 : NULL;
    const float *pr = a.pos ? a.pos + (size_t)a.posid[r] * W : NULL;
    const float *w = a.w[s], *b = a.b[s];
#define VAL(j) ((y ? y[j] : __bfloat162float(g[j])) + (rr ? rr[j] : 0.0f) + (pr ? pr[j] + a.type0[j] : 0.0f))
    float mean = 0.0f, rstd = 1.0f;
    if (a.layernorm) {
        float sum = 0.0f;
        for (int j = lane; j < W; j += 32)
            sum += VAL(j);
        mean = warp_sum(sum) / W;
        float var = 0.0f;
        for (int j = lane; j < W; j += 32) {
            float c = VAL(j) - mean;
            var += c * c;
        }
        rstd = rsqrtf(warp_sum(var) / W + a.eps);
    }
    float *o32 = a.o32 ? a.o32 + (size_t)r * a.ld32 + c0 : NULL;
    bf16 *o16 = a.o16 ? a.o16 + (size_t)r * a.ld16 + c0 : NULL;
    for (int j = lane; j < W; j += 32) {
        float v = (VAL(j) - mean) * rstd * w[j] + b[j];
        if (o32)
            o32[j] = v;
        if (o16)
            o16[j] = __float2bfloat16(v);
    }
#undef VAL
}

void wf_cu_norm(const wf_cu_norm_args_t *a, cudaStream_t st)
{
    int wpb = 8;
    long warps = (long)a->rows * a->nseg;
    norm_k<<<(unsigned)((warps + wpb - 1) / wpb), 32 * wpb, 0, st>>>(*a);
}

static __global__ void act_k(bf16 *x, long n, int kind)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) {
        float v = __bfloat162float(x[i]);
        if (kind == WF_ACT_GELU)
            v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        else if (kind == WF_ACT_GELU_NEW)
            v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else if (kind == WF_ACT_RELU)
            v = v > 0.0f ? v : 0.0f;
        else
            v = tanhf(v);
        x[i] = __float2bfloat16(v);
    }
}

void wf_cu_act_bf16(bf16 *x, long n, int kind, cudaStream_t st)
{
    long blocks = (n + 255) / 256;
    if (blocks > 132 * 16)
        blocks = 132 * 16;
    act_k<<<(unsigned)blocks, 256, 0, st>>>(x, n, kind);
}
