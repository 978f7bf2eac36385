/*
 * A chain of feed-forward blocks as one kernel, for the folded MobileBERT pass (backend.cu, forward_folded) at
 * small token counts, where each cuBLASLt product is a launch of a few microseconds and the FFN pairs were 8 of
 * a layer's 12 graph nodes. Optionally also the product before the chain (the attention output: a = ctx Wao^T +
 * bao + bn) and the one after it (the output bottleneck: x' = a Wob^T + bob + x), so that a layer is 3 nodes.
 *
 * Shapes: hidden I = 128, intermediate F = 512, ReLU, layer width H = 512. One cluster of FC_CL (8) CTAs takes
 * FC_RB (32) rows, so that a batch of 128 tokens spreads over 32 SMs; CTA j of a cluster owns the hidden columns
 * [64j, 64j + 64) of every block and the rows [4j, 4j + 4) of the running a, and keeps a copy of the cluster's
 * 32 rows of a in shared memory. Per block:
 *   phase 1: h = relu(a Wi_j^T + bi_j) (32 x 64; warps: 2 row groups x 4 column groups), rounded to bf16 as
 *            cuBLASLt's bf16 output would be, into shared memory;
 *   phase 2: the partial product h Wo[:, j-slice]^T (32 x 128, fp32), each row sent to the CTA that owns it
 *            (distributed shared memory), one slot per source CTA;
 *   reduce:  after a cluster barrier, CTA j sums its 4 rows' 8 slots, adds bo and the residual a, rounds to bf16
 *            and writes the rows into every CTA's copy of a (or, after the last block, to global memory).
 * The attention output product: CTA j computes the columns [16j, 16j + 16) of the 32 rows into every copy. The
 * output bottleneck: CTA j the columns [64j, 64j + 64). The weights and biases of the next block stream in
 * (cp.async) while a block computes. Tensor cores through mma.sync (bf16, fp32 accumulation).
 * (A first version, one cluster per 128 rows and h kept in registers, ran 42 us a layer at 128 tokens on 8 SMs:
 * slower than the 10 cuBLASLt products it replaced; docs/benchmarks.md.)
 */
#include "infer/cuda/cuda_common.h"

#include <cooperative_groups.h>

namespace cg = cooperative_groups;

#define FC_I 128
#define FC_F 512
#define FC_H 512
#define FC_CL 8               /* CTAs a cluster */
#define FC_FS (FC_F / FC_CL)  /* hidden columns a CTA: 64 */
#define FC_RB 32              /* rows a cluster */
#define FC_RO (FC_RB / FC_CL) /* rows of a a CTA owns: 4 */
#define FC_THREADS 256        /* 8 warps: 2 row groups of 16 x 4 column groups */
/* shared memory pitches (elements), rows padded by 16 bytes so that the 8 rows an ldmatrix reads hit distinct banks */
#define PA (FC_I + 8)
#define PW1 (FC_I + 8)
#define PW2 (FC_FS + 8)
#define PH (FC_FS + 8)
#define PR (FC_I + 8)
/* a weight buffer: Wi slice (FC_FS x PW1) | Wo slice (FC_I x PW2) | bi slice (FC_FS) | bo (FC_I); the output
 * bottleneck's slice and bias take the Wi and bi places */
#define WB_W2 (FC_FS * PW1)
#define WB_BI (WB_W2 + FC_I * PW2)
#define WB_BO (WB_BI + FC_FS)
#define FC_WB (WB_BO + FC_I)
/* shared memory, bf16 elements then floats: a | h | 2 weight buffers | x slice (output bottleneck) | partials
 * (before block 0: the attention output's ctx rows, Wao slice, bn slice, bao slice) */
#define S_H (FC_RB * PA)
#define S_W (S_H + FC_RB * PH)
#define S_X (S_W + 2 * FC_WB)
#define S_RED_BYTES ((size_t)(S_X + FC_RB * FC_FS) * 2)
#define FC_SMEM (S_RED_BYTES + (size_t)FC_CL * FC_RO * PR * 4)
/* the attention output's staging inside the partials' area (elements from there) */
#define AO_W (FC_RB * PA)
#define AO_BN (AO_W + 16 * PW1)
#define AO_B (AO_BN + FC_RB * 16)
#define AO_END (AO_B + 16)
static_assert((size_t)AO_END * 2 <= (size_t)FC_CL * FC_RO * PR * 4, "attention output staging");
static_assert(S_H % 8 == 0 && S_W % 8 == 0 && S_X % 8 == 0 && FC_WB % 8 == 0 && WB_BI % 8 == 0 && WB_BO % 8 == 0,
              "16-byte aligned areas");

static __device__ __forceinline__ void cp16(void *s, const void *g, int n)
{
    unsigned sa = (unsigned)__cvta_generic_to_shared(s);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(sa), "l"(g), "r"(n) : "memory");
}
static __device__ __forceinline__ void cp_commit(void) { asm volatile("cp.async.commit_group;" ::: "memory"); }
static __device__ __forceinline__ void cp_wait1(void) { asm volatile("cp.async.wait_group 1;" ::: "memory"); }
static __device__ __forceinline__ void cp_wait0(void) { asm volatile("cp.async.wait_group 0;" ::: "memory"); }

static __device__ __forceinline__ void ldsm4(unsigned r[4], const bf16 *p)
{
    unsigned a = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}

static __device__ __forceinline__ void mma16816(float d[4], const unsigned a[4], unsigned b0, unsigned b1)
{
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

static __device__ __forceinline__ unsigned pack2(float lo, float hi)
{
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(unsigned *)&v;
}
static __device__ __forceinline__ float bf(const bf16 *p) { return __bfloat162float(*p); }

/* acc (16 rows x 8 NT columns) = A (16 rows from A, pitch pa) times W^T (8 NT rows from W, pitch pw), K = 16 KS;
 * a warp's tile in mma.m16n8 accumulator layout: acc[nt] = (row g, columns 8 nt + 2q, +1), (row g + 8, same). */
template <int NT, int KS>
static __device__ __forceinline__ void mma_rows16(float (&acc)[NT][4], const bf16 *A, int pa, const bf16 *W, int pw,
                                                  int lane)
{
#pragma unroll
    for (int i = 0; i < NT; i++)
        acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < KS; kk++) {
        unsigned a[4];
        ldsm4(a, A + ((lane & 7) + ((lane >> 3) & 1) * 8) * pa + kk * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int np = 0; np < NT / 2; np++) {
            unsigned b[4];
            ldsm4(b, W + (np * 16 + (lane & 7) + (lane >> 4) * 8) * pw + kk * 16 + ((lane >> 3) & 1) * 8);
            mma16816(acc[2 * np], a, b[0], b[1]);
            mma16816(acc[2 * np + 1], a, b[2], b[3]);
        }
    }
}

/* rows x 16-byte chunks of a matrix (ld elements) into shared memory (pitch elements); rows at or past `valid`
 * zero-filled (nothing read: the copy's source size is 0, its address `any`, a valid one). */
static __device__ __forceinline__ void load_rows(bf16 *s, int pitch, const bf16 *g, size_t ld, int rows, int chunks,
                                                 int valid, const bf16 *any)
{
    for (int i = threadIdx.x; i < rows * chunks; i += FC_THREADS) {
        int r = i / chunks, c = i % chunks;
        bool in = r < valid;
        cp16(s + r * pitch + c * 8, in ? g + r * ld + c * 8 : any, in ? 16 : 0);
    }
}

/* Block f's slices for CTA j into weight buffer w; f == n: the output bottleneck's (and the x rows it adds, into
 * xs), when there is one. One cp.async group either way, so that cp_wait1 counts the same in every block. */
static __device__ void load_w(const wf_cu_ffn_chain_t &p, int f, int j, bf16 *w, bf16 *xs, int row0, int nrows)
{
    if (f < p.n) {
        load_rows(w, PW1, p.wi[f] + (size_t)j * FC_FS * FC_I, FC_I, FC_FS, FC_I / 8, FC_FS, p.wi[f]);
        load_rows(w + WB_W2, PW2, p.wo[f] + j * FC_FS, FC_F, FC_I, FC_FS / 8, FC_I, p.wo[f]);
        load_rows(w + WB_BI, 0, p.bi[f] + j * FC_FS, 0, 1, FC_FS / 8, 1, p.bi[f]);
        load_rows(w + WB_BO, 0, p.bo[f], 0, 1, FC_I / 8, 1, p.bo[f]);
    } else if (f == p.n && p.wob) {
        load_rows(w, PW1, p.wob + (size_t)j * FC_FS * FC_I, FC_I, FC_FS, FC_I / 8, FC_FS, p.wob);
        load_rows(w + WB_BI, 0, p.bob + j * FC_FS, 0, 1, FC_FS / 8, 1, p.bob);
        load_rows(xs, FC_FS, p.xres + (size_t)row0 * FC_H + j * FC_FS, FC_H, FC_RB, FC_FS / 8, nrows, p.xres);
    }
    cp_commit();
}

static __global__ void __cluster_dims__(FC_CL, 1, 1) __launch_bounds__(FC_THREADS)
    ffn_chain_k(const wf_cu_ffn_chain_t p)
{
    extern __shared__ __align__(16) unsigned char sm[];
    bf16 *As = (bf16 *)sm, *Hs = As + S_H, *Ws = As + S_W, *Xs = As + S_X; /* block f: buffer Ws + (f & 1) * FC_WB */
    float *red = (float *)(sm + S_RED_BYTES);
    bf16 *ao = (bf16 *)red; /* before block 0 only */
    cg::cluster_group cl = cg::this_cluster();
    const int j = (int)cl.block_rank(), warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, q = lane & 3;
    const int rg = warp & 1, cgp = warp >> 1; /* this warp's row group (16 rows) and column group */
    const int row0 = (blockIdx.x / FC_CL) * FC_RB, nrows = min(FC_RB, p.rows - row0);

    /* every CTA of the cluster must be running before any writes into its shared memory: arrive now, wait
     * before the first remote write */
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
    /* weights first: they do not depend on the previous kernel */
    if (p.wao) {
        load_rows(ao + AO_W, PW1, p.wao + (size_t)j * 16 * FC_I, FC_I, 16, FC_I / 8, 16, p.wao);
        load_rows(ao + AO_B, 0, p.bao + j * 16, 0, 1, 2, 1, p.bao);
    }
    cp_commit();
    load_w(p, 0, j, Ws, Xs, row0, nrows);
    asm volatile("griddepcontrol.wait;" ::: "memory"); /* no-op unless launched as a programmatic dependent launch */
    if (p.wao) {
        load_rows(ao, PA, p.ctx + (size_t)row0 * FC_I, FC_I, FC_RB, FC_I / 8, nrows, p.ctx);
        load_rows(ao + AO_BN, 16, p.bn + (size_t)row0 * p.ldbn + j * 16, (size_t)p.ldbn, FC_RB, 2, nrows, p.bn);
    } else {
        load_rows(As, PA, p.x + (size_t)row0 * FC_I, FC_I, FC_RB, FC_I / 8, nrows, p.x);
    }
    cp_commit();
    load_w(p, 1, j, Ws + FC_WB, Xs, row0, nrows);

    if (p.wao) {
        /* a = ctx Wao^T + bao + bn: the columns [16j, 16j + 16) of the 32 rows (warps 0 and 1), into every copy */
        cp_wait1();
        __syncthreads();
        float acc[2][4];
        if (warp < 2)
            mma_rows16<2, FC_I / 16>(acc, ao + warp * 16 * PA, PA, ao + AO_W, PW1, lane);
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
        if (warp < 2) {
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                int c = nt * 8 + 2 * q;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                    int r = warp * 16 + g + 8 * h;
                    const bf16 *bn = ao + AO_BN + r * 16 + c, *b = ao + AO_B + c;
                    unsigned v = pack2(acc[nt][2 * h] + bf(b) + bf(bn), acc[nt][2 * h + 1] + bf(b + 1) + bf(bn + 1));
#pragma unroll
                    for (int k = 0; k < FC_CL; k++)
                        *(unsigned *)(cl.map_shared_rank(As, k) + r * PA + j * 16 + c) = v;
                }
            }
        }
        cl.sync(); /* a complete in every copy; the staging area free for the partial sums */
    } else {
        asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
    }

    for (int f = 0; f < p.n; f++) {
        cp_wait1();
        __syncthreads();
        const bf16 *w = Ws + (f & 1) * FC_WB;
        {
            /* phase 1: h, this warp's 16 rows x 16 columns */
            float acc[2][4];
            mma_rows16<2, FC_I / 16>(acc, As + rg * 16 * PA, PA, w + cgp * 16 * PW1, PW1, lane);
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                int c = cgp * 16 + nt * 8 + 2 * q;
                float b0 = bf(w + WB_BI + c), b1 = bf(w + WB_BI + c + 1);
                int r = rg * 16 + g;
                *(unsigned *)(Hs + r * PH + c) = pack2(fmaxf(acc[nt][0] + b0, 0.0f), fmaxf(acc[nt][1] + b1, 0.0f));
                *(unsigned *)(Hs + (r + 8) * PH + c) =
                    pack2(fmaxf(acc[nt][2] + b0, 0.0f), fmaxf(acc[nt][3] + b1, 0.0f));
            }
        }
        __syncthreads();
        {
            /* phase 2: this warp's 16 rows of h (k = 64) times the Wo slice, output columns [32 cgp, 32 cgp + 32) */
            float o[4][4];
            mma_rows16<4, FC_FS / 16>(o, Hs + rg * 16 * PH, PH, w + WB_W2 + cgp * 32 * PW2, PW2, lane);
#pragma unroll
            for (int h = 0; h < 2; h++) {
                int r = rg * 16 + g + 8 * h; /* owned by CTA r / FC_RO: into its slot j */
                float *dst = cl.map_shared_rank(red, r / FC_RO) + (j * FC_RO + r % FC_RO) * PR + cgp * 32 + 2 * q;
#pragma unroll
                for (int nt = 0; nt < 4; nt++)
                    *(float2 *)(dst + nt * 8) = make_float2(o[nt][2 * h], o[nt][2 * h + 1]);
            }
        }
        cl.sync();
        bool last = f == p.n - 1, out = last && !p.wob;
        {
            /* this CTA's FC_RO rows: 2 columns a thread */
            int r = threadIdx.x >> 6, c = (threadIdx.x & 63) * 2;
            const bf16 *res = As + (j * FC_RO + r) * PA + c, *bo = w + WB_BO + c;
            float s0 = bf(bo) + bf(res), s1 = bf(bo + 1) + bf(res + 1);
#pragma unroll
            for (int slot = 0; slot < FC_CL; slot++) {
                float2 v = *(const float2 *)(red + (slot * FC_RO + r) * PR + c);
                s0 += v.x;
                s1 += v.y;
            }
            unsigned pk = pack2(s0, s1);
            if (out) {
                if (j * FC_RO + r < nrows)
                    *(unsigned *)(p.out + (size_t)(row0 + j * FC_RO + r) * FC_I + c) = pk;
            } else {
                /* the residual was read above by this thread alone: overwriting it everywhere is safe */
#pragma unroll
                for (int k = 0; k < FC_CL; k++)
                    *(unsigned *)(cl.map_shared_rank(As, k) + (j * FC_RO + r) * PA + c) = pk;
            }
        }
        if (out)
            return; /* no remote access after the last barrier: CTAs may exit */
        cl.sync(); /* the new a everywhere; the slots read before anyone writes them again */
        if (!last)
            load_w(p, f + 2, j, Ws + (f & 1) * FC_WB, Xs, row0, nrows);
    }

    /* the output bottleneck: x' (rows, H) = a Wob^T + bob + x, this CTA's columns [64j, 64j + 64) */
    cp_wait0();
    __syncthreads();
    const bf16 *w = Ws + (p.n & 1) * FC_WB;
    float acc[2][4];
    mma_rows16<2, FC_I / 16>(acc, As + rg * 16 * PA, PA, w + cgp * 16 * PW1, PW1, lane);
#pragma unroll
    for (int nt = 0; nt < 2; nt++) {
        int c = cgp * 16 + nt * 8 + 2 * q;
        float b0 = bf(w + WB_BI + c), b1 = bf(w + WB_BI + c + 1);
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = rg * 16 + g + 8 * h;
            if (r < nrows)
                *(unsigned *)(p.xout + (size_t)(row0 + r) * FC_H + j * FC_FS + c) =
                    pack2(acc[nt][2 * h] + b0 + bf(Xs + r * FC_FS + c), acc[nt][2 * h + 1] + b1 + bf(Xs + r * FC_FS + c + 1));
        }
    }
}

int wf_cu_ffn_chain_ok(int I, int F, int H, int n, int relu)
{
    return I == FC_I && F == FC_F && H == FC_H && n >= 1 && n <= WF_CU_FFN_CHAIN_MAX && relu;
}

cudaError_t wf_cu_ffn_chain(const wf_cu_ffn_chain_t *p, int pdl, cudaStream_t st)
{
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)((p->rows + FC_RB - 1) / FC_RB * FC_CL));
    cfg.blockDim = dim3(FC_THREADS);
    cfg.dynamicSmemBytes = FC_SMEM;
    cfg.stream = st;
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = at;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, ffn_chain_k, *p);
}

cudaError_t wf_cu_ffn_chain_setup(void)
{
    cudaError_t e = cudaFuncSetAttribute(ffn_chain_k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)FC_SMEM);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(ffn_chain_k, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    return e;
}
