/*
 * A whole feed-forward block in one kernel (tile.cuh): norm(act(X Wi^T + bi)
 * Wo^T + bo + residual). A cluster of CL blocks shares a row block: block p
 * computes hidden columns p*FS .. p*FS+FS-1 (FS = F / CL; bf16 in shared
 * memory, what the unfused path stores) and from them a partial second
 * product over that share of K; the norm sums the partials across the
 * cluster. The hidden state never leaves the chip.
 */
#include "infer/cuda/tile.cuh"

template <int BM>
static __global__ void __launch_bounds__(TILE_THREADS)
    ffn_norm_k(const bf16 *__restrict__ X, int ldx, int I, const bf16 *__restrict__ Wi, const float *__restrict__ bi,
               int F, int act, const bf16 *__restrict__ Wo, const float *__restrict__ bo, wf_cu_norm_args_t a)
{
    extern __shared__ __align__(128) unsigned char sm[];
    int FS = F / gridDim.y, f0 = blockIdx.y * FS;
    bf16 *Ws = (bf16 *)sm, *As = (bf16 *)(sm + TILE_WS_BYTES), *Hs = As + BM * (I + 8);
    float *Cs = (float *)sm;
    int row0 = blockIdx.x * BM;
    tile_w_t p = tile_w(Wi, I, f0, FS, I);
    tile_prologue(p, Ws);
    /* this block's share of Wo (I rows of FS columns) towards L2 meanwhile */
    int lpr = (FS * (int)sizeof(bf16) + 127) / 128;
    for (int e = threadIdx.x; e < I * lpr; e += TILE_THREADS)
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)(Wo + (size_t)(e / lpr) * F + f0) + (e % lpr) * 128));
    tile_pdl_wait();
    tile_pdl_trigger();
    tile_rows_load(As, I + 8, X, ldx, row0, a.rows, I, BM);
    tile_mma<BM>(p, As, I + 8, Ws, Cs, FS + 4);
    for (int e = threadIdx.x; e < BM * FS; e += TILE_THREADS) {
        int r = e / FS, c = e % FS;
        Hs[r * (FS + 8) + c] = __float2bfloat16(tile_act(Cs[r * (FS + 4) + c] + bi[f0 + c], act));
    }
    __syncthreads();
    tile_w_t q = tile_w(Wo + f0, F, 0, I, FS);
    tile_prologue(q, Ws);
    tile_mma<BM>(q, Hs, FS + 8, Ws, Cs, I + 4);
    tile_norm_cl<BM>(Cs, I + 4, I, I, true, (float *)(Hs + BM * (FS + 8)), bo, row0, a);
}

static int ffn_cluster(int F)
{
    /* shares of at most TILE_NMAX hidden columns, K of the second product a multiple of TILE_KT */
    int cl = tile_cluster(F, TILE_KT);
    return F / cl <= TILE_NMAX ? cl : 0;
}

static size_t ffn_smem(int I, int F, int bm)
{
    int cl = ffn_cluster(F);
    cl = cl ? cl : 1;
    return TILE_WS_BYTES + (size_t)bm * (I + 8) * sizeof(bf16) + (size_t)bm * (F / cl + 8) * sizeof(bf16) +
           tile_red_bytes(bm, I, cl);
}

int wf_cu_ffn_norm_ok(int I, int F, const wf_cu_norm_args_t *a)
{
    return I > 0 && I % TILE_KT == 0 && I <= TILE_NMAX && F > 0 && F % TILE_KT == 0 && ffn_cluster(F) > 0 &&
           a->nseg == 1 && a->width == I && !a->y && !a->gword && ffn_smem(I, F, 32) <= TILE_SMEM_MAX;
}

cudaError_t wf_cu_ffn_norm(const bf16 *X, int ldx, int I, const bf16 *Wi, const float *bi, int F, int act,
                           const bf16 *Wo, const float *bo, const wf_cu_norm_args_t *a, int pdl, cudaStream_t st)
{
    int bm = tile_bm(a->rows), cl = ffn_cluster(F);
    dim3 grid((a->rows + bm - 1) / bm, cl);
    if (bm == 16)
        return tile_launch(ffn_norm_k<16>, grid, cl, ffn_smem(I, F, 16), pdl, st, X, ldx, I, Wi, bi, F, act, Wo, bo, *a);
    return tile_launch(ffn_norm_k<32>, grid, cl, ffn_smem(I, F, 32), pdl, st, X, ldx, I, Wi, bi, F, act, Wo, bo, *a);
}

cudaError_t wf_cu_ffn_norm_setup(void)
{
    cudaError_t e = cudaFuncSetAttribute(ffn_norm_k<16>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(ffn_norm_k<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    /* all shared memory, like the attention kernel: consecutive kernels need no L1/shared reconfiguration */
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(ffn_norm_k<16>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(ffn_norm_k<32>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    return e;
}
