/*
 * The CPU backend: float32; matrix products by our packed-weight kernel
 * (gemm.c: AVX-512 or AVX2+FMA, picked at run time) or, on CPUs without
 * them, OpenBLAS sgemm; our own fused epilogues (bias + activation, bias +
 * residual + LayerNorm/NoNorm, embeddings) and attention.
 *
 * Batches are packed, not padded: the tokens of all sequences form one
 * (T, width) matrix, so each linear layer is one product over all T tokens;
 * only attention looks at sequence boundaries (each token attends to the
 * tokens of its own sequence). Parallelism comes from our pool: each thread
 * runs the product on its own block of rows (or columns, when there are few
 * rows) and applies the epilogue while the rows are in cache; OpenBLAS, where
 * used, is told to use one thread, so two thread pools never compete.
 *
 * Memory: weights are converted to float32 once at init (F32 tensors that
 * need no fusing are used in place); activations live in one block sized
 * from max_tokens/max_batch at init. run() allocates nothing.
 */
#include "infer/arch.h"
#include "infer/err.h"
#include "infer/backend.h"
#include "infer/cpu/gemm.h"
#include "infer/cpu/pool.h"
#include "wafer/core.h"

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* The elementwise kernels and attention get an AVX2 clone picked at load
 * time (the build targets baseline x86-64; sgemm is OpenBLAS's own dispatch). */
/* Not under ThreadSanitizer: its instrumented ifunc resolver runs before its runtime is up. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define WF_SIMD __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WF_SIMD
#endif

/* Query rows per attention work item. */
#define ATTN_QBLOCK 64

typedef struct { const float *w, *b; int out, in; const float *p; /* packed for wf_gemm, or NULL */ } lin_t;
typedef struct { const float *w, *b; } nrm_t;

typedef struct {
    lin_t bott;            /* bottleneck input [+ attention] (bn_out x H) */
    nrm_t bn_in, bn_att;
    lin_t proj0, proj1;    /* q/k/v projections; proj1.out == 0 when all are in proj0 */
    int src0, src1;        /* which activation feeds proj0/proj1 */
    lin_t ao;
    nrm_t ao_n;
    lin_t fi[WF_ARCH_MAX_FFN], fo[WF_ARCH_MAX_FFN];
    nrm_t fn[WF_ARCH_MAX_FFN];
    lin_t in, out;
    nrm_t out_n;
    lin_t ob;
    nrm_t ob_n;
} layer_t;

enum { SRC_X, SRC_BI, SRC_BA };

typedef struct {
    wf_model_config_t cfg;
    wf_arch_dims_t d;
    wf_weights_t w; /* the model's tensors, with .f filled for the ones used in place */
    const float *word, *pos, *type0;
    lin_t emb_t;
    nrm_t emb_n;
    layer_t layers[WF_ARCH_MAX_LAYERS];
    lin_t pooler, cls;
    float *wblock;  /* converted weights */
    float *pblock;  /* the same, packed for wf_gemm (NULL: OpenBLAS) */
    float *ablock;  /* activations */
    wf_tpool_t *pool;
    int threads, lmax;
    /* activations (row-major, leading dimension = width) */
    float *x, *x2, *e, *bt, *qkv, *ctx, *a, *a2, *h, *cls_in, *pooled, *scratch;
    int *posid, *start, *items;
    int nitems;
    size_t scratch_per_thread;
} cpu_t;

/* ------------------------------------------------------------------ kernels */

/* exp and erf without libm calls, so that the loops using them vectorise.
 * exp: Cephes' expf (range reduction by ln 2 in two parts, degree-6
 * polynomial), within 1e-7 relative of libm over the softmax range. erf: the
 * rational approximation Eigen and XLA use for float, within 5e-7 absolute. */
static inline float exp_fast(float x)
{
    /* Ternaries, not fminf: they vectorise. NaN (hostile weights) maps to the
     * low end, so that the conversion to int below is always defined. */
    x = !(x >= -87.3f) ? -87.3f : x;
    x = x > 88.0f ? 88.0f : x;
    float n = rintf(x * 1.44269504088896341f);
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { int32_t i; float f; } sc = { .i = ((int32_t)n + 127) << 23 };
    return y * sc.f;
}

static inline float erf_fast(float x)
{
    x = x < -4.0f ? -4.0f : x;
    x = x > 4.0f ? 4.0f : x;
    float x2 = x * x;
    float a = -2.72614225801306e-10f;
    a = a * x2 + 2.77068142495902e-08f;
    a = a * x2 + -2.10102402082508e-06f;
    a = a * x2 + -5.69250639462346e-05f;
    a = a * x2 + -7.34990630326855e-04f;
    a = a * x2 + -2.95459980854025e-03f;
    a = a * x2 + -1.60960333262415e-02f;
    float b = -1.45660718464996e-05f;
    b = b * x2 + -2.13374055278905e-04f;
    b = b * x2 + -1.68282697438203e-03f;
    b = b * x2 + -7.37332916720468e-03f;
    b = b * x2 + -1.42647390514189e-02f;
    return x * a / b;
}

static inline float tanh_fast(float x) { return 1.0f - 2.0f / (exp_fast(2.0f * x) + 1.0f); }

/* One loop per activation, so that each vectorises; always inlined, so that
 * it is compiled into each clone of its caller (an out-of-line copy is built
 * for the baseline only, and its ReLU was a compare-and-branch per element). */
static inline __attribute__((always_inline)) void act_rows(wf_act_t a, float *y, int c0, int c1)
{
    switch (a) {
    case WF_ACT_GELU:
        for (int j = c0; j < c1; j++)
            y[j] = 0.5f * y[j] * (1.0f + erf_fast(y[j] * (float)M_SQRT1_2));
        break;
    case WF_ACT_GELU_NEW:
        for (int j = c0; j < c1; j++) {
            float v = y[j];
            y[j] = 0.5f * v * (1.0f + tanh_fast(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        }
        break;
    case WF_ACT_RELU:
        for (int j = c0; j < c1; j++)
            y[j] = y[j] > 0.0f ? y[j] : 0.0f;
        break;
    case WF_ACT_TANH:
        for (int j = c0; j < c1; j++)
            y[j] = tanh_fast(y[j]);
        break;
    }
}

WF_SIMD static void norm_row(float *y, int n, const nrm_t *nm, wf_norm_t type, float eps)
{
    if (type == WF_NORM_NONORM) {
        for (int i = 0; i < n; i++)
            y[i] = y[i] * nm->w[i] + nm->b[i];
        return;
    }
    /* Eight running sums, so that the reductions vectorise (and stay deterministic). */
    float acc[8] = { 0 }, acc2[8] = { 0 };
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++)
            acc[k] += y[i + k];
    float s = 0.0f;
    for (; i < n; i++)
        s += y[i];
    for (int k = 0; k < 8; k++)
        s += acc[k];
    float mean = s / n;
    for (i = 0; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            float c = y[i + k] - mean;
            acc2[k] += c * c;
        }
    float v = 0.0f;
    for (; i < n; i++)
        v += (y[i] - mean) * (y[i] - mean);
    for (int k = 0; k < 8; k++)
        v += acc2[k];
    float rstd = 1.0f / sqrtf(v / n + eps);
    for (int i = 0; i < n; i++)
        y[i] = (y[i] - mean) * rstd * nm->w[i] + nm->b[i];
}

/* What follows a product, row by row. */
typedef struct {
    const float *bias;
    bool act;
    wf_act_t act_kind;
    const float *res; /* residual rows (row r at res + r*ldr) */
    int ldr;
    const float *pos; /* embeddings: + pos[posid[r]] + type0 */
    const int *posid;
    const float *type0;
    int nseg;         /* norms over column segments of `seg_len` (0: none) */
    int seg_len;
    const nrm_t *seg[2];
    wf_norm_t norm;
    float eps;
} epi_t;

WF_SIMD static void epi_row(const epi_t *e, float *y, int r, int c0, int c1, bool bias_done)
{
    if (e->bias && !bias_done)
        for (int j = c0; j < c1; j++)
            y[j] += e->bias[j];
    if (e->act)
        act_rows(e->act_kind, y, c0, c1);
    if (e->res) {
        const float *rr = e->res + (size_t)r * e->ldr;
        for (int j = c0; j < c1; j++)
            y[j] += rr[j];
    }
    if (e->pos) {
        const float *pr = e->pos + (size_t)e->posid[r] * (c1 - c0);
        for (int j = c0; j < c1; j++)
            y[j] = y[j] + pr[j] + e->type0[j];
    }
    for (int s = 0; s < e->nseg; s++)
        norm_row(y + s * e->seg_len, e->seg_len, e->seg[s], e->norm, e->eps);
}

static bool epi_needs_rows(const epi_t *e) { return e->res || e->pos || e->nseg; }

typedef struct {
    cpu_t *c;
    const float *X;
    int ldx, T;
    const lin_t *L;
    float *Y;
    int ldy;
    const epi_t *e;
} lin_job_t;

static void lin_rows(void *ctx, int r0, int r1, int tid)
{
    lin_job_t *j = ctx;
    const lin_t *L = j->L;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, L->out, L->in, 1.0f, j->X + (size_t)r0 * j->ldx,
                j->ldx, L->w, L->in, 0.0f, j->Y + (size_t)r0 * j->ldy, j->ldy);
    for (int r = r0; r < r1; r++)
        epi_row(j->e, j->Y + (size_t)r * j->ldy, r, 0, L->out, false);
}

static void lin_cols(void *ctx, int c0, int c1, int tid)
{
    lin_job_t *j = ctx;
    const lin_t *L = j->L;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->T, c1 - c0, L->in, 1.0f, j->X, j->ldx,
                L->w + (size_t)c0 * L->in, L->in, 0.0f, j->Y + c0, j->ldy);
    /* Column blocks may only do what is elementwise; the rest follows per row. */
    if (!epi_needs_rows(j->e))
        for (int r = 0; r < j->T; r++)
            epi_row(j->e, j->Y + (size_t)r * j->ldy, r, c0, c1, false);
    else if (j->e->bias)
        for (int r = 0; r < j->T; r++) {
            float *y = j->Y + (size_t)r * j->ldy;
            for (int c = c0; c < c1; c++)
                y[c] += j->e->bias[c];
        }
}

/* Rows in blocks small enough that the epilogue finds them in cache; a
 * multiple of the kernels' tile heights (6 and 12). */
#define LIN_ROW_BLOCK 60

static void lin_rows_packed(void *ctx, int r0, int r1, int tid)
{
    lin_job_t *j = ctx;
    const lin_t *L = j->L;
    int np = (L->out + wf_gemm_nr() - 1) / wf_gemm_nr();
    for (int b = r0; b < r1; b += LIN_ROW_BLOCK) {
        int e = b + LIN_ROW_BLOCK < r1 ? b + LIN_ROW_BLOCK : r1;
        wf_gemm(L->p, L->out, L->in, j->X + (size_t)b * j->ldx, j->ldx, e - b, j->Y + (size_t)b * j->ldy, j->ldy, 0,
                np);
        for (int r = b; r < e; r++)
            epi_row(j->e, j->Y + (size_t)r * j->ldy, r, 0, L->out, true);
    }
}

/* Panels p0..p1 of the output for all rows (few rows); the bias is in the product. */
static void lin_cols_packed(void *ctx, int p0, int p1, int tid)
{
    lin_job_t *j = ctx;
    const lin_t *L = j->L;
    int nr = wf_gemm_nr();
    wf_gemm(L->p, L->out, L->in, j->X, j->ldx, j->T, j->Y, j->ldy, p0, p1);
    if (!epi_needs_rows(j->e)) {
        int c1 = p1 * nr < L->out ? p1 * nr : L->out;
        for (int r = 0; r < j->T; r++)
            epi_row(j->e, j->Y + (size_t)r * j->ldy, r, p0 * nr, c1, true);
    }
}

static void lin_epi_rows(void *ctx, int r0, int r1, int tid)
{
    lin_job_t *j = ctx;
    for (int r = r0; r < r1; r++)
        epi_row(j->e, j->Y + (size_t)r * j->ldy, r, 0, j->L->out, true);
}

/* Y (T, out) = epilogue(X (T, in) @ W^T). */
static void linear(cpu_t *c, const float *X, int ldx, int T, const lin_t *L, float *Y, int ldy, const epi_t *e)
{
    lin_job_t j = { c, X, ldx, T, L, Y, ldy, e };
    int k = c->threads;
    if (L->p) {
        if (k == 1 || T >= 8 * k) {
            wf_tpool_for(c->pool, T, (T + k - 1) / k, lin_rows_packed, &j);
            return;
        }
        int np = (L->out + wf_gemm_nr() - 1) / wf_gemm_nr();
        wf_tpool_for(c->pool, np, (np + k - 1) / k, lin_cols_packed, &j);
        if (epi_needs_rows(e))
            wf_tpool_for(c->pool, T, 1, lin_epi_rows, &j);
        return;
    }
    if (k == 1 || T >= 8 * k) {
        int grain = (T + k - 1) / k;
        wf_tpool_for(c->pool, T, grain, lin_rows, &j);
        return;
    }
    /* Few rows (small batches): split the output columns instead. */
    int grain = (L->out + k - 1) / k;
    grain = (grain + 15) & ~15;
    wf_tpool_for(c->pool, L->out, grain, lin_cols, &j);
    if (epi_needs_rows(e))
        wf_tpool_for(c->pool, T, 1, lin_epi_rows, &j);
}

/* ---------------------------------------------------------------- attention */

typedef struct {
    cpu_t *c;
    const float *qkv;
    float *ctx;
    bool first_only; /* only each sequence's first query row, written to ctx row s */
} attn_job_t;

/* Softmax over each row of S (rows, L), in place. */
WF_SIMD static void softmax_rows(float *S, int rows, int L)
{
    for (int q = 0; q < rows; q++) {
        float *sc = S + (size_t)q * L;
        /* Sixteen running maxima and sums, so that the reductions vectorise
         * (a single accumulator is a serial dependency the compiler may not
         * reorder); the result does not depend on the vector width. */
        float mxv[16], smv[16];
        for (int k = 0; k < 16; k++)
            mxv[k] = sc[0];
        int t = 0;
        for (; t + 16 <= L; t += 16)
            for (int k = 0; k < 16; k++)
                mxv[k] = sc[t + k] > mxv[k] ? sc[t + k] : mxv[k];
        float mx = sc[0];
        for (; t < L; t++)
            mx = sc[t] > mx ? sc[t] : mx;
        for (int k = 0; k < 16; k++)
            mx = mxv[k] > mx ? mxv[k] : mx;
        for (int k = 0; k < 16; k++)
            smv[k] = 0.0f;
        for (t = 0; t + 16 <= L; t += 16)
            for (int k = 0; k < 16; k++) {
                float v = exp_fast(sc[t + k] - mx);
                sc[t + k] = v;
                smv[k] += v;
            }
        float sum = 0.0f;
        for (; t < L; t++) {
            sc[t] = exp_fast(sc[t] - mx);
            sum += sc[t];
        }
        for (int k = 0; k < 16; k++)
            sum += smv[k];
        float inv = 1.0f / sum;
        for (int t = 0; t < L; t++)
            sc[t] *= inv;
    }
}

/* One item: ATTN_QBLOCK query rows of one head of one sequence, against all
 * keys of that sequence only (packed batches need no mask). With first_only,
 * the first query row of the sequence alone (items of later blocks do
 * nothing), its context written to row s of ctx. */
static void attn_items(void *ctx, int i0, int i1, int tid)
{
    attn_job_t *j = ctx;
    cpu_t *c = j->c;
    int Iw = c->d.true_hidden, dh = c->d.head_dim, ld = 3 * Iw;
    float scale = 1.0f / sqrtf((float)dh);
    float *S = c->scratch + tid * c->scratch_per_thread; /* (ATTN_QBLOCK, L) */
    if (wf_gemm_nr()) {
        /* Our kernel: keys (scaled) and the values' transpose packed per
         * item (L * dh each, against 2 * ATTN_QBLOCK * L * dh multiply-adds). */
        float *PK = S + (size_t)ATTN_QBLOCK * c->lmax;
        float *PV = PK + wf_gemm_packed_size(c->lmax, dh);
        for (int it = i0; it < i1; it++) {
            int s = c->items[3 * it], hd = c->items[3 * it + 1], q0 = c->items[3 * it + 2];
            int base = c->start[s], L = c->start[s + 1] - base;
            if (j->first_only && q0)
                continue;
            int nq = j->first_only ? 1 : q0 + ATTN_QBLOCK < L ? ATTN_QBLOCK : L - q0;
            size_t orow = j->first_only ? (size_t)s : (size_t)(base + q0);
            const float *Q = j->qkv + (size_t)(base + q0) * ld + hd * dh;
            const float *K = j->qkv + (size_t)base * ld + Iw + hd * dh;
            const float *V = K + Iw;
            int npk = (L + wf_gemm_nr() - 1) / wf_gemm_nr(), npv = (dh + wf_gemm_nr() - 1) / wf_gemm_nr();
            wf_gemm_pack_view(K, (size_t)ld, 1, scale, NULL, L, dh, PK);
            wf_gemm(PK, L, dh, Q, ld, nq, S, L, 0, npk);
            softmax_rows(S, nq, L);
            wf_gemm_pack_view(V, 1, (size_t)ld, 1.0f, NULL, dh, L, PV);
            wf_gemm(PV, dh, L, S, L, nq, j->ctx + orow * Iw + hd * dh, Iw, 0, npv);
        }
        return;
    }
    for (int it = i0; it < i1; it++) {
        int s = c->items[3 * it], hd = c->items[3 * it + 1], q0 = c->items[3 * it + 2];
        int base = c->start[s], L = c->start[s + 1] - base;
        if (j->first_only && q0)
            continue;
        int nq = j->first_only ? 1 : q0 + ATTN_QBLOCK < L ? ATTN_QBLOCK : L - q0;
        size_t orow = j->first_only ? (size_t)s : (size_t)(base + q0);
        const float *Q = j->qkv + (size_t)(base + q0) * ld + hd * dh;
        const float *K = j->qkv + (size_t)base * ld + Iw + hd * dh;
        const float *V = K + Iw;
        /* S = Q K^T / sqrt(dh) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, L, dh, scale, Q, ld, K, ld, 0.0f, S, L);
        softmax_rows(S, nq, L);
        /* ctx = S V */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, dh, L, 1.0f, S, L, V, ld, 0.0f,
                    j->ctx + orow * Iw + hd * dh, Iw);
    }
}

/* --------------------------------------------------------------- embeddings */

typedef struct {
    cpu_t *c;
    const wf_batch_t *b;
} emb_job_t;

/* BERT (and MobileBERT without a transformation): x = norm(word + pos + type0). */
static void emb_plain(void *ctx, int s0, int s1, int tid)
{
    emb_job_t *j = ctx;
    cpu_t *c = j->c;
    int H = c->d.hidden;
    for (int s = s0; s < s1; s++) {
        const int32_t *ids = j->b->ids[s];
        for (int t = 0; t < j->b->lens[s]; t++) {
            float *y = c->x + (size_t)(c->start[s] + t) * H;
            const float *w = c->word + (size_t)ids[t] * H, *p = c->pos + (size_t)t * H;
            for (int i = 0; i < H; i++)
                y[i] = w[i] + p[i] + c->type0[i];
            norm_row(y, H, &c->emb_n, c->d.norm, c->d.emb_eps);
        }
    }
}

/* MobileBERT: the transformation's input rows, [next token, token, previous
 * token] with zeros past the sequence's ends (trigram), or the token alone. */
static void emb_gather(void *ctx, int s0, int s1, int tid)
{
    emb_job_t *j = ctx;
    cpu_t *c = j->c;
    int E = c->cfg.embedding_size, W = c->d.emb_in;
    bool tri = c->cfg.trigram_input;
    for (int s = s0; s < s1; s++) {
        const int32_t *ids = j->b->ids[s];
        int L = j->b->lens[s];
        for (int t = 0; t < L; t++) {
            float *y = c->e + (size_t)(c->start[s] + t) * W;
            if (!tri) {
                memcpy(y, c->word + (size_t)ids[t] * E, sizeof(float) * E);
                continue;
            }
            if (t + 1 < L)
                memcpy(y, c->word + (size_t)ids[t + 1] * E, sizeof(float) * E);
            else
                memset(y, 0, sizeof(float) * E);
            memcpy(y + E, c->word + (size_t)ids[t] * E, sizeof(float) * E);
            if (t > 0)
                memcpy(y + 2 * E, c->word + (size_t)ids[t - 1] * E, sizeof(float) * E);
            else
                memset(y + 2 * E, 0, sizeof(float) * E);
        }
    }
}

/* ------------------------------------------------------------------ forward */

static epi_t epi_none(const lin_t *L)
{
    epi_t e;
    memset(&e, 0, sizeof(e));
    e.bias = L->b;
    return e;
}

static epi_t epi_norm(const cpu_t *c, const lin_t *L, const float *res, int ldr, const nrm_t *n, float eps)
{
    epi_t e = epi_none(L);
    e.res = res;
    e.ldr = ldr;
    e.nseg = 1;
    e.seg_len = L->out;
    e.seg[0] = n;
    e.norm = c->d.norm;
    e.eps = eps;
    return e;
}

static epi_t epi_act(const cpu_t *c, const lin_t *L)
{
    epi_t e = epi_none(L);
    e.act = true;
    e.act_kind = c->cfg.hidden_act;
    return e;
}

/* Moves row start[s] of m to row s, for s < n (start is increasing and
 * start[s] >= s, so no row is overwritten before it is moved). */
static void first_rows(float *m, int ld, int width, const int *start, int n)
{
    for (int s = 0; s < n; s++)
        if (start[s] != s)
            memmove(m + (size_t)s * ld, m + (size_t)start[s] * ld, sizeof(float) * (size_t)width);
}

/* One layer over the T tokens of the batch; with nseq > 0 (the last layer),
 * the classifier reads only each sequence's first token, so after keys and
 * values of every token the layer goes on with the nseq first rows alone
 * (each row's result depends on its own inputs only, so they are the same
 * as over every token), leaving them in rows 0..nseq-1 of the output. */
static void forward_layer(cpu_t *c, const layer_t *L, int T, int nseq)
{
    const wf_arch_dims_t *d = &c->d;
    int H = d->hidden, Iw = d->true_hidden, F = d->inter;
    const float *bi = NULL, *ba = NULL;
    if (d->bottleneck) {
        /* Input and attention bottlenecks read the same x: one product, one norm per half. */
        epi_t e = epi_none(&L->bott);
        e.nseg = d->kq_shared ? 2 : 1;
        e.seg_len = Iw;
        e.seg[0] = &L->bn_in;
        e.seg[1] = &L->bn_att;
        e.norm = d->norm;
        e.eps = d->eps;
        linear(c, c->x, H, T, &L->bott, c->bt, 2 * Iw, &e);
        bi = c->bt;
        ba = c->bt + Iw;
    }
    const float *src[3] = { c->x, bi, ba };
    const int lds[3] = { H, 2 * Iw, 2 * Iw };
    epi_t e0 = epi_none(&L->proj0);
    linear(c, src[L->src0], lds[L->src0], T, &L->proj0, c->qkv, 3 * Iw, &e0);
    if (L->proj1.out) {
        epi_t e1 = epi_none(&L->proj1);
        linear(c, src[L->src1], lds[L->src1], T, &L->proj1, c->qkv + L->proj0.out, 3 * Iw, &e1);
    }
    attn_job_t aj = { c, c->qkv, c->ctx, nseq > 0 };
    wf_tpool_for(c->pool, c->nitems, 1, attn_items, &aj);
    if (nseq > 0) {
        T = nseq;
        first_rows(c->x, H, H, c->start, nseq);
        if (d->bottleneck)
            first_rows(c->bt, 2 * Iw, Iw, c->start, nseq);
    }

    const float *res = d->bottleneck ? bi : c->x;
    int ldres = d->bottleneck ? 2 * Iw : H;
    epi_t e = epi_norm(c, &L->ao, res, ldres, &L->ao_n, d->eps);
    linear(c, c->ctx, Iw, T, &L->ao, c->a, Iw, &e);
    float *a = c->a, *a2 = c->a2;
    for (int f = 0; f < d->nffn; f++) {
        epi_t ea = epi_act(c, &L->fi[f]);
        linear(c, a, Iw, T, &L->fi[f], c->h, F, &ea);
        epi_t en = epi_norm(c, &L->fo[f], a, Iw, &L->fn[f], d->eps);
        linear(c, c->h, F, T, &L->fo[f], a2, Iw, &en);
        float *t = a;
        a = a2;
        a2 = t;
    }
    epi_t ea = epi_act(c, &L->in);
    linear(c, a, Iw, T, &L->in, c->h, F, &ea);
    if (d->bottleneck) {
        epi_t en = epi_norm(c, &L->out, a, Iw, &L->out_n, d->out_eps);
        linear(c, c->h, F, T, &L->out, a2, Iw, &en);
        epi_t eb = epi_norm(c, &L->ob, c->x, H, &L->ob_n, d->eps);
        linear(c, a2, Iw, T, &L->ob, c->x2, H, &eb);
    } else {
        epi_t en = epi_norm(c, &L->out, a, Iw, &L->out_n, d->out_eps);
        linear(c, c->h, F, T, &L->out, c->x2, H, &en);
    }
    float *t = c->x;
    c->x = c->x2;
    c->x2 = t;
}

/* WAFER_CPU_LAST_LAYER=all runs the last layer over every token (for
 * comparison); read once. */
static bool first_rows_on(void)
{
    static atomic_int on = -1;
    int v = atomic_load_explicit(&on, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("WAFER_CPU_LAST_LAYER");
        v = !(e && strcmp(e, "all") == 0);
        atomic_store_explicit(&on, v, memory_order_relaxed);
    }
    return v;
}

static wf_status_t cpu_run(void *state, const wf_batch_t *b, float *logits)
{
    cpu_t *c = state;
    const wf_arch_dims_t *d = &c->d;
    int T = b->ntokens, H = d->hidden;
    /* Sequence starts, positions and attention work items: in the block, no allocation. */
    int nitems = 0;
    c->start[0] = 0;
    for (int s = 0; s < b->n; s++) {
        int L = b->lens[s];
        c->start[s + 1] = c->start[s] + L;
        for (int t = 0; t < L; t++)
            c->posid[c->start[s] + t] = t;
        for (int hd = 0; hd < d->heads; hd++)
            for (int q = 0; q < L; q += ATTN_QBLOCK) {
                c->items[3 * nitems] = s;
                c->items[3 * nitems + 1] = hd;
                c->items[3 * nitems + 2] = q;
                nitems++;
            }
    }
    c->nitems = nitems;

    emb_job_t ej = { c, b };
    if (d->emb_in) {
        wf_tpool_for(c->pool, b->n, 1, emb_gather, &ej);
        epi_t e = epi_norm(c, &c->emb_t, NULL, 0, &c->emb_n, d->emb_eps);
        e.pos = c->pos;
        e.posid = c->posid;
        e.type0 = c->type0;
        linear(c, c->e, d->emb_in, T, &c->emb_t, c->x, H, &e);
    } else {
        wf_tpool_for(c->pool, b->n, 1, emb_plain, &ej);
    }
    int nl = c->cfg.num_hidden_layers;
    bool first_only = first_rows_on();
    for (int l = 0; l < nl; l++)
        forward_layer(c, &c->layers[l], T, first_only && l == nl - 1 ? b->n : 0);

    for (int s = 0; s < b->n; s++)
        memcpy(c->cls_in + (size_t)s * H, c->x + (size_t)(first_only ? s : c->start[s]) * H, sizeof(float) * H);
    const float *pooled = c->cls_in;
    if (d->has_pooler) {
        epi_t e = epi_none(&c->pooler);
        e.act = true;
        e.act_kind = WF_ACT_TANH;
        linear(c, c->cls_in, H, b->n, &c->pooler, c->pooled, H, &e);
        pooled = c->pooled;
    }
    epi_t e = epi_none(&c->cls);
    linear(c, pooled, H, b->n, &c->cls, logits, c->cfg.num_labels, &e);
    return WF_OK;
}

/* ------------------------------------------------------------------- init */

typedef struct {
    float *block; /* NULL while sizing */
    size_t used;  /* floats */
    wf_status_t st;
} place_t;

/* Gives a parameter float32 storage at the cursor (converting), or, when
 * in_place and the tensor is aligned F32, uses the mapped data. */
static const float *place(place_t *pl, wf_param_t *p, bool in_place)
{
    const wf_tensor_t *t = p->t;
    if (!t)
        return NULL;
    if (p->f)
        return p->f;
    if (in_place && t->dtype == WF_DT_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        p->f = t->data;
        return p->f;
    }
    size_t n = (size_t)t->numel;
    float *dst = pl->block ? pl->block + pl->used : NULL;
    pl->used += n;
    if (dst) {
        wf_status_t s = wf_tensor_to_f32(t, dst, n);
        if (s != WF_OK && pl->st == WF_OK)
            pl->st = s;
        p->f = dst;
    }
    return dst;
}

static lin_t lin_of(place_t *pl, wf_lin_params_t *l)
{
    lin_t r = { 0 };
    if (!l->w.t)
        return r;
    r.w = place(pl, &l->w, true);
    r.b = place(pl, &l->b, true);
    r.out = (int)l->w.t->shape[0];
    r.in = (int)l->w.t->shape[1];
    return r;
}

/* Several Linear layers over the same input as one (sum of outs, in): their
 * weights, then their biases, laid out back to back. */
static lin_t lin_fused(place_t *pl, wf_lin_params_t **ls, int n)
{
    lin_t r = { 0 };
    r.in = (int)ls[0]->w.t->shape[1];
    for (int i = 0; i < n; i++) {
        const float *w = place(pl, &ls[i]->w, false);
        if (i == 0)
            r.w = w;
        r.out += (int)ls[i]->w.t->shape[0];
    }
    for (int i = 0; i < n; i++) {
        const float *b = place(pl, &ls[i]->b, false);
        if (i == 0)
            r.b = b;
    }
    return r;
}

static nrm_t nrm_of(place_t *pl, wf_norm_params_t *n)
{
    nrm_t r = { place(pl, &n->w, true), place(pl, &n->b, true) };
    return r;
}

/* Lays out (block == NULL: sizes) all weights the forward pass reads. */
static void place_all(cpu_t *c, place_t *pl, const wf_weights_t *model_w)
{
    const wf_arch_dims_t *d = &c->d;
    c->w = *model_w; /* fresh copy: .f all NULL */
    wf_weights_t *w = &c->w;
    c->word = place(pl, &w->word_emb, true);
    c->pos = place(pl, &w->pos_emb, true);
    c->type0 = place(pl, &w->type_emb, true); /* row 0: token_type_ids are all zero */
    if (d->emb_in)
        c->emb_t = lin_of(pl, &w->emb_transform);
    c->emb_n = nrm_of(pl, &w->emb_norm);
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        wf_layer_params_t *P = &w->layers[l];
        layer_t *L = &c->layers[l];
        memset(L, 0, sizeof(*L));
        if (d->bottleneck) {
            wf_lin_params_t *bl[2] = { &P->bn_input, &P->bn_attention };
            L->bott = lin_fused(pl, bl, d->kq_shared ? 2 : 1);
            L->bn_in = nrm_of(pl, &P->bn_input_norm);
            if (d->kq_shared)
                L->bn_att = nrm_of(pl, &P->bn_attention_norm);
        }
        if (d->kq_shared) {
            wf_lin_params_t *qk[2] = { &P->q, &P->k }, *v[1] = { &P->v };
            L->proj0 = lin_fused(pl, qk, 2);
            L->src0 = SRC_BA;
            L->proj1 = lin_fused(pl, v, 1);
            L->src1 = SRC_X;
        } else {
            wf_lin_params_t *qkv[3] = { &P->q, &P->k, &P->v };
            L->proj0 = lin_fused(pl, qkv, 3);
            L->src0 = d->bn_attention ? SRC_BI : SRC_X;
        }
        L->ao = lin_of(pl, &P->attn_out);
        L->ao_n = nrm_of(pl, &P->attn_norm);
        for (int f = 0; f < d->nffn; f++) {
            L->fi[f] = lin_of(pl, &P->ffn_inter[f]);
            L->fo[f] = lin_of(pl, &P->ffn_out[f]);
            L->fn[f] = nrm_of(pl, &P->ffn_norm[f]);
        }
        L->in = lin_of(pl, &P->inter);
        L->out = lin_of(pl, &P->out);
        L->out_n = nrm_of(pl, &P->out_norm);
        if (d->bottleneck) {
            L->ob = lin_of(pl, &P->out_bn);
            L->ob_n = nrm_of(pl, &P->out_bn_norm);
        }
    }
    if (d->has_pooler)
        c->pooler = lin_of(pl, &w->pooler);
    c->cls = lin_of(pl, &w->classifier);
}

/* Every linear layer the forward pass runs, for packing. */
static int lin_list(cpu_t *c, lin_t **out)
{
    int n = 0;
    const wf_arch_dims_t *d = &c->d;
    if (d->emb_in)
        out[n++] = &c->emb_t;
    for (int l = 0; l < c->cfg.num_hidden_layers; l++) {
        layer_t *L = &c->layers[l];
        lin_t *all[] = { &L->bott, &L->proj0, &L->proj1, &L->ao, &L->in, &L->out, &L->ob };
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
            out[n++] = all[i];
        for (int f = 0; f < d->nffn; f++) {
            out[n++] = &L->fi[f];
            out[n++] = &L->fo[f];
        }
    }
    out[n++] = &c->pooler;
    out[n++] = &c->cls;
    return n;
}

/* With a kernel for this CPU, a packed copy of every linear layer's weights
 * and bias (the float32 ones stay for nothing else; the cost is one more copy
 * of the weights in memory). */
static wf_status_t pack_all(cpu_t *c)
{
    if (!wf_gemm_nr())
        return WF_OK;
    lin_t *ls[8 + WF_ARCH_MAX_LAYERS * (7 + 2 * WF_ARCH_MAX_FFN)];
    int n = lin_list(c, ls);
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (ls[i]->out)
            total += wf_gemm_packed_size(ls[i]->out, ls[i]->in);
    if (!total)
        return WF_OK;
    c->pblock = aligned_alloc(64, total * sizeof(float));
    if (!c->pblock)
        return WF_ERR_NOMEM;
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        lin_t *L = ls[i];
        if (!L->out)
            continue;
        wf_gemm_pack(L->w, L->b, L->out, L->in, c->pblock + at);
        L->p = c->pblock + at;
        at += wf_gemm_packed_size(L->out, L->in);
    }
    return WF_OK;
}

static void cpu_free(void *state)
{
    cpu_t *c = state;
    if (!c)
        return;
    if (c->pool)
        wf_tpool_free(c->pool);
    free(c->wblock);
    free(c->pblock);
    free(c->ablock);
    free(c);
}

/* Activation layout: each array rounded up to 64 bytes. */
static size_t take(size_t *off, size_t nfloats)
{
    size_t at = *off;
    *off += (nfloats + 15) & ~(size_t)15;
    return at;
}

/* OpenBLAS picks its kernels from the CPU model; on a model newer than the
 * library (e.g. Emerald Rapids with 0.3.21) it falls back to its SSE3
 * "Prescott" kernels, about 4x slower than its AVX-512 ones. Say so once,
 * with the fix (the variable is read when the library loads), when OpenBLAS
 * does the products, i.e. when our kernel is not in use. */
static void warn_blas_core(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static atomic_int warned;
    if (wf_gemm_nr())
        return;
    const char *core = openblas_get_corename();
    const char *old[] = { "Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Katmai", "Coppermine",
                          "Northwood", "Banias", "Sandybridge", "Barcelona", "Opteron", "Athlon" };
    bool is_old = false;
    for (size_t i = 0; core && i < sizeof(old) / sizeof(old[0]); i++)
        is_old = is_old || strcasecmp(core, old[i]) == 0;
    if (!is_old || !__builtin_cpu_supports("avx2") || atomic_exchange(&warned, 1))
        return;
    bool avx512 = __builtin_cpu_supports("avx512f");
    wf_warn("cpu backend: OpenBLAS does not know this CPU and uses its %s kernels; start wafer with "
            "OPENBLAS_CORETYPE=%s for several times faster matrix products",
            core, avx512 ? "SkylakeX" : "Haswell");
#endif
}

static wf_status_t cpu_init(const wf_model_t *m, const wf_session_opts_t *o, void **state, wf_err_t *err)
{
    cpu_t *c = calloc(1, sizeof(*c));
    if (!c)
        ERR(WF_ERR_NOMEM, "out of memory");
    c->cfg = *wf_model_get_config(m);
    wf_status_t st = wf_arch_dims(&c->cfg, &c->d, err);
    if (st != WF_OK) {
        cpu_free(c);
        return st;
    }
    const wf_arch_dims_t *d = &c->d;
    c->threads = o->threads;
    c->lmax = WF_MIN(o->max_tokens, c->cfg.max_position_embeddings);

    /* Weights: size, allocate, convert. */
    place_t pl = { NULL, 0, WF_OK };
    place_all(c, &pl, wf_model_get_weights_refs(m));
    size_t wfloats = pl.used;
    c->wblock = wfloats ? aligned_alloc(64, ((wfloats * sizeof(float)) + 63) & ~(size_t)63) : NULL;
    if (wfloats && !c->wblock) {
        cpu_free(c);
        ERR(WF_ERR_NOMEM, "cpu backend: cannot allocate %zu MiB for weights", wfloats * 4 >> 20);
    }
    pl = (place_t){ c->wblock, 0, WF_OK };
    place_all(c, &pl, wf_model_get_weights_refs(m));
    if (pl.st != WF_OK) {
        cpu_free(c);
        ERR(pl.st, "cpu backend: cannot convert weights to float32");
    }

    st = pack_all(c);
    if (st != WF_OK) {
        cpu_free(c);
        ERR(st, "cpu backend: cannot allocate memory for packed weights");
    }

    /* Activations: one block for max_tokens / max_batch. */
    size_t T = (size_t)o->max_tokens, B = (size_t)o->max_batch, H = d->hidden, Iw = d->true_hidden, F = d->inter;
    size_t max_items = (size_t)d->heads * (T / ATTN_QBLOCK + B);
    c->scratch_per_thread = ((size_t)ATTN_QBLOCK * c->lmax + 15) & ~(size_t)15;
    if (wf_gemm_nr()) /* packed keys and values for our kernel */
        c->scratch_per_thread += wf_gemm_packed_size(c->lmax, d->head_dim) + wf_gemm_packed_size(d->head_dim, c->lmax);
    size_t off = 0;
    size_t ox = take(&off, T * H), ox2 = take(&off, T * H), oe = take(&off, T * (size_t)d->emb_in),
           obt = take(&off, d->bottleneck ? T * 2 * Iw : 0), oqkv = take(&off, T * 3 * Iw), octx = take(&off, T * Iw),
           oa = take(&off, T * Iw), oa2 = take(&off, T * Iw), oh = take(&off, T * F),
           ocls = take(&off, B * H), opool = take(&off, B * H),
           oscr = take(&off, c->scratch_per_thread * (size_t)c->threads);
    /* int arrays share the block (same size as float) */
    size_t opos = take(&off, T), ostart = take(&off, B + 1), oitems = take(&off, 3 * max_items);
    if (off > ((size_t)1 << 40) / sizeof(float)) {
        cpu_free(c);
        ERR(WF_ERR_LIMIT, "cpu backend: activations for max_tokens %d would not fit", o->max_tokens);
    }
    c->ablock = aligned_alloc(64, off * sizeof(float));
    if (!c->ablock) {
        cpu_free(c);
        ERR(WF_ERR_NOMEM, "cpu backend: cannot allocate %zu MiB for activations", off * 4 >> 20);
    }
    float *A = c->ablock;
    c->x = A + ox;
    c->x2 = A + ox2;
    c->e = A + oe;
    c->bt = A + obt;
    c->qkv = A + oqkv;
    c->ctx = A + octx;
    c->a = A + oa;
    c->a2 = A + oa2;
    c->h = A + oh;
    c->cls_in = A + ocls;
    c->pooled = A + opool;
    c->scratch = A + oscr;
    c->posid = (int *)(A + opos);
    c->start = (int *)(A + ostart);
    c->items = (int *)(A + oitems);

    c->pool = wf_tpool_new(c->threads);
    if (!c->pool) {
        cpu_free(c);
        ERR(WF_ERR_BACKEND, "cpu backend: cannot start %d threads", o->threads);
    }
    /* Each of our threads calls single-threaded sgemm on its own block. */
    openblas_set_num_threads(1);
    warn_blas_core();
    *state = c;
    return WF_OK;
}

const wf_backend_ops_t wf_backend_cpu = {
    .name = "cpu",
    .init = cpu_init,
    .run = cpu_run,
    .free = cpu_free,
};
