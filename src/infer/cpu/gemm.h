/*
 * Our own float32 matrix product for the CPU backend's linear layers:
 * Y (rows, out) = X (rows, in) @ W^T + b, with W packed once at session
 * creation into panels of wf_gemm_nr() output columns (the layout the kernel
 * streams), and X read in place (no packing per call, no separate pass for
 * beta or the bias). Kernels for AVX-512 and AVX2+FMA are picked at run time;
 * on other CPUs wf_gemm_nr() is 0 and the backend uses OpenBLAS.
 *
 * Each output row is computed from its own input row only, in one fixed order
 * (bias, then k = 0..in-1 with fused multiply-adds), so a token's result does
 * not depend on which rows share its call: packed batches and single
 * sequences agree exactly.
 */
#ifndef WAFER_INFER_CPU_GEMM_H
#define WAFER_INFER_CPU_GEMM_H

#include <stddef.h>

/* Output columns per panel of the kernel in use (32 AVX-512, 16 AVX2), or 0
 * when there is none. WAFER_CPU_GEMM=blas|avx2|avx512 in the environment
 * forces a choice (one the CPU cannot run falls back to blas); read once. */
int wf_gemm_nr(void);
/* Floats that wf_gemm_pack writes for an (out, in) layer. */
size_t wf_gemm_packed_size(int out, int in);
/* Packs W (out, in) row-major and b (out, or NULL for zeros) into dst (64-byte aligned). */
void wf_gemm_pack(const float *w, const float *b, int out, int in, float *dst);
/* The same for W[c, k] = scale * w[c * sc + k * sk] (a view of a matrix, e.g.
 * keys or the transpose of values inside a packed q/k/v activation). */
void wf_gemm_pack_view(const float *w, size_t sc, size_t sk, float scale, const float *b, int out, int in,
                       float *dst);
/* Y[r, c] = b[c] + sum_k X[r, k] W[c, k] for r < rows and the columns of
 * panels [p0, p1) (columns p0*nr .. min(p1*nr, out)). */
void wf_gemm(const float *packed, int out, int in, const float *X, int ldx, int rows, float *Y, int ldy, int p0,
             int p1);

#endif
