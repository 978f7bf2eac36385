/* The CPU backend's packed matrix product against a double-precision
 * reference, for shapes that leave partial panels and partial row tiles, for
 * column ranges, and for row independence (a row alone gives the same bits as
 * in a block of rows). On a CPU without a kernel it says so and checks nothing. */
#include "test.h"

#include "infer/cpu/gemm.h"

#include <math.h>
#include <stdint.h>

static uint32_t rng = 12345;
static float frand(void)
{
    rng = rng * 1664525u + 1013904223u;
    return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void one_shape(int rows, int out, int in, int ldx, int ldy)
{
    int nr = wf_gemm_nr();
    float *X = malloc(sizeof(float) * rows * ldx), *W = malloc(sizeof(float) * out * in),
          *b = malloc(sizeof(float) * out), *Y = malloc(sizeof(float) * rows * ldy),
          *Y1 = malloc(sizeof(float) * ldy);
    float *P = aligned_alloc(64, sizeof(float) * wf_gemm_packed_size(out, in));
    for (int i = 0; i < rows * ldx; i++)
        X[i] = frand();
    for (int i = 0; i < out * in; i++)
        W[i] = frand();
    for (int i = 0; i < out; i++)
        b[i] = frand();
    for (int i = 0; i < rows * ldy; i++)
        Y[i] = 1234.0f; /* sentinel: columns past out must stay */
    wf_gemm_pack(W, b, out, in, P);
    int np = (out + nr - 1) / nr;
    /* two column ranges, as the pool splits them */
    int mid = np / 2;
    wf_gemm(P, out, in, X, ldx, rows, Y, ldy, 0, mid);
    wf_gemm(P, out, in, X, ldx, rows, Y, ldy, mid, np);
    double worst = 0.0;
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < out; c++) {
            double s = b[c];
            for (int k = 0; k < in; k++)
                s += (double)X[r * ldx + k] * W[c * in + k];
            double e = fabs(s - Y[r * ldy + c]) / (1.0 + fabs(s));
            worst = e > worst ? e : worst;
        }
        for (int c = out; c < ldy; c++)
            CHECK(Y[r * ldy + c] == 1234.0f);
    }
    CHECK(worst < 1e-5);
    /* each row alone: the same bits */
    for (int r = 0; r < rows; r += 1 + rows / 5) {
        wf_gemm(P, out, in, X + r * ldx, ldx, 1, Y1, ldy, 0, np);
        CHECK(memcmp(Y1, Y + r * ldy, sizeof(float) * out) == 0);
    }
    free(X);
    free(W);
    free(b);
    free(Y);
    free(Y1);
    free(P);
}

TEST(shapes)
{
    if (!wf_gemm_nr()) {
        printf("no packed kernel on this CPU: nothing to check\n");
        return;
    }
    printf("kernel panel width %d\n", wf_gemm_nr());
    const int rows[] = { 1, 2, 5, 6, 7, 11, 12, 13, 25, 61, 130 };
    const int outs[] = { 2, 16, 17, 31, 32, 33, 128, 130 };
    const int ins[] = { 1, 3, 32, 129 };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        for (size_t j = 0; j < sizeof(outs) / sizeof(outs[0]); j++)
            for (size_t k = 0; k < sizeof(ins) / sizeof(ins[0]); k++)
                one_shape(rows[i], outs[j], ins[k], ins[k] + (int)(k & 1), outs[j] + 3);
}

TEST_MAIN()
