/* Embeddings: MobileBERT's trigram gather (BERT's plain sum + norm is in norm.cu). */
#include "infer/cuda/cuda_common.h"

/* One warp per token; 16-byte copies when E allows. */
static __global__ void embed_gather_k(const int32_t *__restrict__ ids, const int32_t *__restrict__ posid, int T,
                               const bf16 *__restrict__ word, int E, int trigram, bf16 *__restrict__ out,
                               const float *__restrict__ pos, const float *__restrict__ type0, int H,
                               bf16 *__restrict__ pout)
{
    int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    int lane = threadIdx.x & 31;
    if (r >= T)
        return;
    int W = trigram ? 3 * E : E;
    bf16 *y = out + (size_t)r * W;
    int p = posid[r];
    /* sources: [next, this, prev] or [this]; -1 = zeros */
    long src[3];
    if (trigram) {
        src[0] = (r + 1 < T && posid[r + 1] == p + 1) ? ids[r + 1] : -1;
        src[1] = ids[r];
        src[2] = p > 0 ? ids[r - 1] : -1;
    } else {
        src[0] = ids[r];
    }
    int nsrc = trigram ? 3 : 1;
    bool vec = (E % 8) == 0;
    for (int s = 0; s < nsrc; s++) {
        bf16 *dst = y + s * E;
        if (vec) {
            uint4 *d4 = (uint4 *)dst;
            const uint4 *s4 = src[s] >= 0 ? (const uint4 *)(word + src[s] * E) : NULL;
            for (int j = lane; j < E / 8; j += 32)
                d4[j] = s4 ? s4[j] : make_uint4(0, 0, 0, 0);
        } else {
            for (int j = lane; j < E; j += 32)
                dst[j] = src[s] >= 0 ? word[src[s] * E + j] : __float2bfloat16(0.0f);
        }
    }
    if (pout) {
        const float *pr = pos + (size_t)p * H;
        bf16 *po = pout + (size_t)r * H;
        for (int j = lane; j < H; j += 32)
            po[j] = __float2bfloat16(pr[j] + type0[j]);
    }
}

void wf_cu_embed_gather(const int32_t *ids, const int32_t *posid, int T, const bf16 *word, int E, int trigram,
                        bf16 *out, const float *pos, const float *type0, int H, bf16 *pout, cudaStream_t st)
{
    int wpb = 8;
    embed_gather_k<<<(T + wpb - 1) / wpb, 32 * wpb, 0, st>>>(ids, posid, T, word, E, trigram, out, pos, type0, H,
                                                               pout);
}
