/*
 * Up to two products with bias and fp32 outputs in one launch (tile.cuh):
 * the attention projections, which in MobileBERT read two different inputs.
 * Each block takes BM rows and up to LIN_NC columns of one product.
 */
#include "infer/cuda/tile.cuh"

#define LIN_NC 64 /* narrow: at small batches, more blocks read the weights at once */

template <int BM>
static __global__ void __launch_bounds__(TILE_THREADS)
    linear_k(wf_cu_lin_t p0, wf_cu_lin_t p1, int nc0, int rows)
{
    extern __shared__ __align__(128) unsigned char sm[];
    bf16 *Ws = (bf16 *)sm, *As = (bf16 *)(sm + TILE_WS_BYTES);
    float *Cs = (float *)sm;
    int y = blockIdx.y;
    const wf_cu_lin_t &P = y < nc0 ? p0 : p1;
    int n0 = (y < nc0 ? y : y - nc0) * LIN_NC;
    int N = P.N - n0 < LIN_NC ? P.N - n0 : LIN_NC;
    int row0 = blockIdx.x * BM;
    tile_w_t p = tile_w(P.w, P.K, n0, N, P.K);
    tile_prologue(p, Ws);
    tile_pdl_wait();
    tile_pdl_trigger();
    tile_rows_load(As, P.K + 8, P.x, P.ldx, row0, rows, P.K, BM);
    tile_mma<BM>(p, As, P.K + 8, Ws, Cs, N + 4);
    for (int e = threadIdx.x; e < BM * N; e += TILE_THREADS) {
        int r = e / N, c = e % N;
        if (row0 + r < rows)
            P.out[(size_t)(row0 + r) * P.ldo + n0 + c] = Cs[r * (N + 4) + c] + P.b[n0 + c];
    }
}

static size_t lin_smem(int K, int bm) { return TILE_WS_BYTES + (size_t)bm * (K + 8) * sizeof(bf16); }

int wf_cu_linear_ok(const wf_cu_lin_t *p)
{
    return p->K > 0 && p->K % TILE_KT == 0 && p->N > 0 && p->N % 16 == 0 && p->ldx % 8 == 0 &&
           lin_smem(p->K, 32) <= TILE_SMEM_MAX;
}

cudaError_t wf_cu_linear(const wf_cu_lin_t *p0, const wf_cu_lin_t *p1, int rows, int pdl, cudaStream_t st)
{
    int bm = tile_bm(rows);
    int nc0 = (p0->N + LIN_NC - 1) / LIN_NC, nc1 = p1 ? (p1->N + LIN_NC - 1) / LIN_NC : 0;
    int K = p1 && p1->K > p0->K ? p1->K : p0->K;
    wf_cu_lin_t q1 = p1 ? *p1 : *p0;
    dim3 grid((rows + bm - 1) / bm, nc0 + nc1);
    if (bm == 16)
        return tile_launch(linear_k<16>, grid, 1, lin_smem(K, 16), pdl, st, *p0, q1, nc0, rows);
    return tile_launch(linear_k<32>, grid, 1, lin_smem(K, 32), pdl, st, *p0, q1, nc0, rows);
}

cudaError_t wf_cu_linear_setup(void)
{
    cudaError_t e = cudaFuncSetAttribute(linear_k<16>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_k<32>, cudaFuncAttributeMaxDynamicSharedMemorySize, TILE_SMEM_MAX);
    /* all shared memory, like the attention kernel: consecutive kernels need no L1/shared reconfiguration */
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_k<16>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    if (e == cudaSuccess)
        e = cudaFuncSetAttribute(linear_k<32>, cudaFuncAttributePreferredSharedMemoryCarveout, 100);
    return e;
}
