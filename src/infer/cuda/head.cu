/* The classification head: CLS rows, tanh(pooler), classifier and softmax in fp32. */
#include "infer/cuda/cuda_common.h"

static __global__ void cls_gather_k(const bf16 *__restrict__ x16, const int32_t *__restrict__ start, int nb, int H,
                             bf16 *__restrict__ out, int compact)
{
    int s = blockIdx.x;
    bool empty = start[s + 1] == start[s];
    const bf16 *src = x16 + (size_t)(compact ? s : start[s]) * H;
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        out[(size_t)s * H + j] = empty ? __float2bfloat16(0.0f) : src[j];
}

void wf_cu_cls_gather(const bf16 *x16, const int32_t *start, int nb, int H, bf16 *out, int compact, cudaStream_t st)
{
    cls_gather_k<<<nb, 128, 0, st>>>(x16, start, nb, H, out, compact);
}

static __global__ void rows_gather_f32_k(const float *__restrict__ x, const int32_t *__restrict__ start, int H,
                                         float *__restrict__ out)
{
    int s = blockIdx.x;
    bool empty = start[s + 1] == start[s];
    const float *src = x + (size_t)start[s] * H;
    for (int j = threadIdx.x; j < H; j += blockDim.x)
        out[(size_t)s * H + j] = empty ? 0.0f : src[j];
}

void wf_cu_rows_gather_f32(const float *x, const int32_t *start, int nb, int H, float *out, cudaStream_t st)
{
    rows_gather_f32_k<<<nb, 128, 0, st>>>(x, start, H, out);
}

/* One warp per sequence. */
static __global__ void head_k(const float *__restrict__ pooled, const float *__restrict__ x32,
                       const int32_t *__restrict__ start, int nb, int H, const float *__restrict__ wc,
                       const float *__restrict__ bc, int C, float *__restrict__ logits, float *__restrict__ probs,
                       int compact)
{
    int s = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (s >= nb)
        return;
    float *lo = logits + (size_t)s * C, *pr = probs + (size_t)s * C;
    if (start[s + 1] == start[s]) {
        for (int c = lane; c < C; c += 32) {
            lo[c] = 0.0f;
            pr[c] = 0.0f;
        }
        return;
    }
    const float *in = pooled ? pooled + (size_t)s * H : x32 + (size_t)(compact ? s : start[s]) * H;
    float mine = 0.0f; /* lane c keeps logit c (C <= 32) */
    for (int c = 0; c < C; c++) {
        float acc = 0.0f;
        for (int j = lane; j < H; j += 32) {
            float v = pooled ? tanhf(in[j]) : in[j];
            acc += v * wc[(size_t)c * H + j];
        }
        for (int o = 16; o > 0; o >>= 1)
            acc += __shfl_xor_sync(0xffffffffu, acc, o);
        if (lane == c)
            mine = acc + bc[c];
    }
    float mx = lane < C ? mine : -INFINITY;
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    float e = lane < C ? expf(mine - mx) : 0.0f, sum = e;
    for (int o = 16; o > 0; o >>= 1)
        sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane < C) {
        lo[lane] = mine;
        pr[lane] = e / sum;
    }
}

void wf_cu_head(const float *pooled, const float *x32, const int32_t *start, int nb, int H, const float *wc,
                const float *bc, int C, float *logits, float *probs, int compact, cudaStream_t st)
{
    int wpb = 4;
    head_k<<<(nb + wpb - 1) / wpb, 32 * wpb, 0, st>>>(pooled, x32, start, nb, H, wc, bc, C, logits, probs, compact);
}
