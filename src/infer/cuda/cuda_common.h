/*
 * Internal to the CUDA backend: error checks that count host CUDA calls, and
 * the launchers of our kernels (one .cu per op family, each launcher takes a
 * stream). Included by .cu files only.
 */
#ifndef WAFER_INFER_CUDA_COMMON_H
#define WAFER_INFER_CUDA_COMMON_H

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "infer/cuda/cuda.h"

typedef __nv_bfloat16 bf16;

/* Every CUDA runtime/driver/cuBLASLt call the backend makes goes through one
 * of these, so wf_cuda_host_calls() counts them (the zero-calls-per-request
 * proof of the self-scheduled ring). */
extern "C" void wf_cuda_count_call(void);

#define WF_CU(call) (wf_cuda_count_call(), (call))

/* ---- embed.cu ---- */
/* MobileBERT's embedding transformation input (T, W) in bf16: per token the
 * rows [next, this, previous] of the bf16 word table (zeros past the
 * sequence's ends) when trigram, else [this]. A token continues its
 * predecessor's sequence when posid == previous posid + 1. With pout (else
 * NULL), also pout (T, H) bf16 = pos[posid] + type0 per token: the C matrix
 * of the embedding transformation's product when its NoNorm is folded. */
void wf_cu_embed_gather(const int32_t *ids, const int32_t *posid, int T, const bf16 *word, int E, int trigram,
                        bf16 *out, const float *pos, const float *type0, int H, bf16 *pout, cudaStream_t st);

/* ---- norm.cu ---- */
typedef struct {
    const float *y;    /* input rows (T, ldy); or NULL with gword: rows of the bf16 word table */
    int ldy;
    const bf16 *gword; /* BERT embeddings: y row r = gword[ids[r]] */
    const int32_t *ids;
    const float *res;  /* + residual rows (ldr), optional */
    int ldr;
    const float *pos;  /* + pos[posid[r]] + type0, optional (embeddings) */
    const int32_t *posid;
    const float *type0;
    const float *w[2], *b[2]; /* per segment norm parameters */
    int width, nseg;
    int layernorm;     /* 0: NoNorm (x*w+b) */
    float eps;
    float *o32;        /* fp32 output (ld32), optional */
    int ld32;
    bf16 *o16;         /* bf16 copy (ld16), optional */
    int ld16;
    int rows;
} wf_cu_norm_args_t;
void wf_cu_norm(const wf_cu_norm_args_t *a, cudaStream_t st);

/* In-place activation on bf16 (T, n) for the kinds cuBLASLt has no epilogue
 * for (erf GELU, tanh). kind: wf_act_t. */
void wf_cu_act_bf16(bf16 *x, long n, int kind, cudaStream_t st);

/* ---- linear.cu, linear_norm.cu, ffn_norm.cu: the fused products (tile.cuh) ----
 * bf16 inputs and weights, fp32 accumulation, K a multiple of 32, N a multiple of 16; each _ok says whether a
 * shape fits (else use cuBLASLt and the separate kernels). pdl: launch as a programmatic dependent launch
 * (the kernel may start before its predecessor ends, and waits for it before reading activations).
 * Each _setup raises the kernels' shared-memory limit (host, once, outside any capture). */
typedef struct {
    const bf16 *x;  /* (rows, K), ldx */
    const bf16 *w;  /* (N, K) */
    const float *b; /* (N) */
    float *out;     /* (rows, N), ldo */
    int ldx, K, N, ldo;
} wf_cu_lin_t;
/* out = x W^T + b for one or two products (p1 may be NULL) over the same rows, one launch. */
int wf_cu_linear_ok(const wf_cu_lin_t *p);
cudaError_t wf_cu_linear(const wf_cu_lin_t *p0, const wf_cu_lin_t *p1, int rows, int pdl, cudaStream_t st);
cudaError_t wf_cu_linear_setup(void);

/* norm(X W^T + bias + a->res [+ a->pos, a->type0]) per a (a->y and a->gword NULL: the product is the input;
 * N == a->nseg * a->width, at most 512), a->rows rows. */
int wf_cu_linear_norm_ok(int K, int N, const wf_cu_norm_args_t *a);
cudaError_t wf_cu_linear_norm(const bf16 *X, int ldx, int K, const bf16 *W, const float *bias, int N,
                              const wf_cu_norm_args_t *a, int pdl, cudaStream_t st);
cudaError_t wf_cu_linear_norm_setup(void);

/* norm(act(X Wi^T + bi) Wo^T + bo + a->res): a feed-forward block, the hidden state (bf16) never leaving the
 * chip. X (rows, I), Wi (F, I), Wo (I, F); act: wf_act_t. */
int wf_cu_ffn_norm_ok(int I, int F, const wf_cu_norm_args_t *a);
cudaError_t wf_cu_ffn_norm(const bf16 *X, int ldx, int I, const bf16 *Wi, const float *bi, int F, int act,
                           const bf16 *Wo, const float *bo, const wf_cu_norm_args_t *a, int pdl, cudaStream_t st);
cudaError_t wf_cu_ffn_norm_setup(void);

/* ---- ffn_chain.cu ----
 * n feed-forward blocks in a row as one kernel, on bf16 rows (the folded MobileBERT pass): for f < n,
 * a = bf16(bf16(relu(a Wi[f]^T + bi[f])) Wo[f]^T + bo[f] + a), as the cuBLASLt pair with a ReLU epilogue and the
 * residual as C computes it (up to the fp32 summation order). Optionally with the product before (wao: the chain's
 * input is a = bf16(ctx Wao^T + bao + bn) instead of x) and the one after (wob: the output is
 * xout = bf16(a Wob^T + bob + xres), (rows, H), instead of out). Weights (out, in), biases bf16. Fits I = 128,
 * F = 512, H = 512, ReLU, n <= WF_CU_FFN_CHAIN_MAX (_ok). Thread-block clusters of 8 CTAs per 128 rows. pdl:
 * launched as a programmatic dependent launch (weights are read before the wait for the predecessor). _setup:
 * host, once, outside any capture. */
#define WF_CU_FFN_CHAIN_MAX 9 /* WF_ARCH_MAX_FFN + 1 */
typedef struct {
    int rows, n;
    const bf16 *x;  /* (rows, I), when !wao */
    bf16 *out;      /* (rows, I), when !wob; may be x */
    const bf16 *wi[WF_CU_FFN_CHAIN_MAX], *bi[WF_CU_FFN_CHAIN_MAX], *wo[WF_CU_FFN_CHAIN_MAX], *bo[WF_CU_FFN_CHAIN_MAX];
    const bf16 *ctx, *wao, *bao, *bn; /* (rows, I), (I, I), (I), (rows, I) with rows ldbn apart */
    int ldbn;
    const bf16 *wob, *bob, *xres;     /* (H, I), (H), (rows, H) */
    bf16 *xout;                       /* (rows, H), not xres */
} wf_cu_ffn_chain_t;
int wf_cu_ffn_chain_ok(int I, int F, int H, int n, int relu);
cudaError_t wf_cu_ffn_chain(const wf_cu_ffn_chain_t *p, int pdl, cudaStream_t st);
cudaError_t wf_cu_ffn_chain_setup(void);

/* ---- attention.cu ---- */
/* Varlen self-attention over packed tokens. qkv: (T, 3I) fp32 rows [q | k | v];
 * ctx: (T, I) bf16. items[i] = (sequence << 16 | first query row / QB) for
 * i < *nitems; start[s]..start[s+1] are sequence s's rows. grid_items is the
 * bucket's upper bound on *nitems. */
#define WF_CU_ATTN_QB 16
/* Sequences of up to tc_lmax tokens (wf_cu_attention_tc_lmax: 0 when the
 * tensor-core kernel does not apply to this head size) go to the tensor-core
 * kernel, one block per (sequence, head) over nb sequences; longer ones to
 * the general kernel. pdl: launched as programmatic dependent launches (the
 * kernels wait for their predecessor before reading anything), as the fused
 * products are. */
int wf_cu_attention_tc_lmax(int dh, int lmax);
void wf_cu_attention(const float *qkv, bf16 *ctx, const int32_t *start, const int32_t *items, const int32_t *nitems,
                     int grid_items, int nb, int heads, int dh, int tc_lmax, int pdl, cudaStream_t st);
/* The same over bf16 q/k/v: qkv points at the first q element, rows ld apart, q | k | v adjacent (I each). */
void wf_cu_attention_bf16(const bf16 *qkv, int ld, bf16 *ctx, const int32_t *start, const int32_t *items,
                          const int32_t *nitems, int grid_items, int nb, int heads, int dh, int tc_lmax, int pdl,
                          cudaStream_t st);
/* Only each sequence's first query (the head's row), over fp32 K/V in qkv (T, 3I) at the sequences' rows and
 * the queries qc (nb, I): ctx (nb, I) bf16, row s = sequence s (empty sequences: not written). */
void wf_cu_attention_cls(const float *qkv, const float *qc, bf16 *ctx, const int32_t *start, int nb, int heads,
                         int dh, cudaStream_t st);
cudaError_t wf_cu_attention_setup(void);

/* ---- head.cu ---- */
/* CLS rows: out (nb, H) bf16 = x16[start[s]] (x16[s] when compact; zeros for empty sequences). */
void wf_cu_cls_gather(const bf16 *x16, const int32_t *start, int nb, int H, bf16 *out, int compact, cudaStream_t st);
/* The same for fp32 rows (never compact). */
void wf_cu_rows_gather_f32(const float *x, const int32_t *start, int nb, int H, float *out, cudaStream_t st);
/* logits (nb, C) = Wc @ act(in[s]) + bc and probs = softmax(logits). in:
 * pooled (nb, H) fp32 with tanh when pooled != NULL, else x32 rows at start[s]
 * (at s when compact). Empty sequences get zeros. */
void wf_cu_head(const float *pooled, const float *x32, const int32_t *start, int nb, int H, const float *wc,
                const float *bc, int C, float *logits, float *probs, int compact, cudaStream_t st);

#endif
