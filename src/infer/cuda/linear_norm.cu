/* A product followed by bias, residual and LayerNorm/NoNorm, in one kernel (tile.cuh). A cluster of CL blocks
 * shares a row block's N columns; the norm reads whole rows from the cluster's shared memory. */
#include "infer/cuda/tile.cuh"

template <int BM>
static __global__ void __launch_bounds__(TILE_THREADS)
    linear_norm_k(const bf16 *__restrict__ X, int ldx, int K, const bf16 *__restrict__ W, const float *__restrict__ bias,
                  int N, wf_cu_norm_args_t a)
{
    extern __shared__ __align__(128) unsigned char sm[];
    bf16 *Ws = (bf16 *)sm, *As = (bf16 *)(sm + TILE_WS_BYTES);
    float *Cs = (float *)sm;
    int row0 = blockIdx.x * BM;
    int NS = N / gridDim.y;
    tile_w_t p = tile_w(W, K, blockIdx.y * NS, NS, K);
    tile_prologue(p, Ws);
    tile_pdl_wait();
    tile_pdl_trigger();
    tile_rows_load(As, K + 8, X, ldx, row0, a.rows, K, BM);
    tile_mma<BM>(p, As, K + 8, Ws, Cs, NS + 4);
    tile_norm_cl<BM>(Cs, NS + 4, N, NS, false, (float *)(As + BM * (K + 8)), bias, row0, a);
}

static size_t ln_smem(int K, int N, int bm)
{
    return TILE_WS_BYTES + (size_t)bm * (K + 8) * sizeof(bf16) + tile_red_bytes(bm, N, tile_cluster(N, 16));
}

int wf_cu_linear_norm_ok(int K, int N, const wf_cu_norm_args_t *a)
{
    return K > 0 && K % TILE_KT == 0 && N > 0 && N % 16 == 0 && N <= TILE_NMAX && a->nseg * a->width == N &&
           a->width <= 512 && !a->y && !a->gword && ln_smem(K, N, 32) <= TILE_SMEM_MAX;
}

cudaError_t wf_cu_linear_norm(const bf16 *X, int ldx, int K, const bf16 *W, const float *bias, int N,
                              const wf_cu_norm_args_t *a, int pdl, cudaStream_t st)
{
    int bm = tile_bm(a->rows), cl = tile_cluster(N, 16);
    dim3 grid((a->rows + bm - 1) / bm, cl);
    if (bm == 16)
        return tile_launch(linear_norm_k<16>, grid, cl, ln_smem(K, N, 16), pdl, st, X, ldx, K, W, bias, N, *a);
    return tile_launch(linear_norm_k<32>, grid, cl, ln_smem(K, N, 32), pdl, st, X, ldx, K, W, bias, N, *a);
}

cudaError_t wf_cu_linear_norm_setup(void)
{
    cudaError_t e = cudaFuncSetAttribute(linear_norm_k<16>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_norm_k<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    /* all shared memory, like the attention kernel: consecutive kernels need no L1/shared reconfiguration */
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_norm_k<16>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_norm_k<32>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    return e;
}
