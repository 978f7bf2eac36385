#include "infer/cpu/gemm.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define HAVE_KERNELS 1

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define GK(n) n##_avx2
#define GK_V 8
#define GK_MR 6
#include "infer/cpu/gemm_kern.inc"
#undef GK
#undef GK_V
#undef GK_MR
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define GK(n) n##_avx512
#define GK_V 16
#define GK_MR 12
#include "infer/cpu/gemm_kern.inc"
#undef GK
#undef GK_V
#undef GK_MR
#pragma GCC pop_options
#endif

typedef void (*gemm_fn)(const float *, int, int, const float *, int, int, float *, int, int, int);

static atomic_int g_nr = -1;
static gemm_fn g_fn;

static void choose(void)
{
    int nr = 0;
    gemm_fn fn = NULL;
#ifdef HAVE_KERNELS
    const char *force = getenv("WAFER_CPU_GEMM");
    bool blas = force && strcmp(force, "blas") == 0;
    bool want512 = !force || strcmp(force, "avx512") == 0, want2 = !force || strcmp(force, "avx2") == 0 || want512;
    __builtin_cpu_init();
    if (!blas && want512 && __builtin_cpu_supports("avx512f")) {
        nr = 32;
        fn = gemm_avx512;
    } else if (!blas && want2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        nr = 16;
        fn = gemm_avx2;
    }
#endif
    g_fn = fn;
    atomic_store(&g_nr, nr);
}

int wf_gemm_nr(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, choose);
    return atomic_load(&g_nr);
}

size_t wf_gemm_packed_size(int out, int in)
{
    size_t nr = (size_t)wf_gemm_nr();
    if (!nr)
        return 0;
    size_t np = ((size_t)out + nr - 1) / nr;
    /* panels, then the padded bias; rounded to 64 bytes so that the next layer stays aligned */
    return (np * nr * (size_t)in + np * nr + 15) & ~(size_t)15;
}

void wf_gemm_pack(const float *w, const float *b, int out, int in, float *dst)
{
    wf_gemm_pack_view(w, (size_t)in, 1, 1.0f, b, out, in, dst);
}

void wf_gemm_pack_view(const float *w, size_t sc, size_t sk, float scale, const float *b, int out, int in,
                       float *dst)
{
    int nr = wf_gemm_nr();
    int np = (out + nr - 1) / nr;
    /* Loops in the order that reads w contiguously (attention packs per item). */
    for (int p = 0; p < np; p++) {
        float *d = dst + (size_t)p * in * nr;
        int nc = out - p * nr < nr ? out - p * nr : nr;
        if (sc == 1) {
            for (int k = 0; k < in; k++) {
                const float *src = w + (size_t)p * nr + k * sk;
                for (int j = 0; j < nc; j++)
                    d[(size_t)k * nr + j] = scale * src[j];
                for (int j = nc; j < nr; j++)
                    d[(size_t)k * nr + j] = 0.0f;
            }
        } else {
            for (int j = 0; j < nr; j++) {
                const float *src = w + (p * nr + j) * sc;
                if (j < nc)
                    for (int k = 0; k < in; k++)
                        d[(size_t)k * nr + j] = scale * src[k * sk];
                else
                    for (int k = 0; k < in; k++)
                        d[(size_t)k * nr + j] = 0.0f;
            }
        }
    }
    float *bias = dst + (size_t)np * in * nr;
    for (int c = 0; c < np * nr; c++)
        bias[c] = b && c < out ? b[c] : 0.0f;
}

void wf_gemm(const float *packed, int out, int in, const float *X, int ldx, int rows, float *Y, int ldy, int p0,
             int p1)
{
    wf_gemm_nr();
    g_fn(packed, out, in, X, ldx, rows, Y, ldy, p0, p1);
}
