/*
 * CPU-versus-GPU agreement (run on a GPU machine by tests/gpu/run.sh; as a
 * ctest it is skipped, exit 77, where no GPU is present).
 *
 * For every parity fixture (its texts' token ids, one packed batch, then one
 * sequence at a time) and for random batches of mixed lengths on the fixtures
 * and on random models of the exact google/mobilebert-uncased architecture
 * and a compact BERT: the CUDA backend's probabilities must be within TOL_P
 * (absolute) of the CPU backend's, and the labels (argmax) must agree
 * wherever the CPU's top two probabilities are more than TOL_P apart (closer
 * than that, bf16 rounding may legitimately swap them; such rows are counted
 * and reported). Logits' relative error (max |gpu - cpu| over a row divided
 * by the row's largest |cpu logit|) is reported.
 */
#include "rand_model.h"
#include "infer/cuda_module.h"
#include "wafer/infer.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOL_P 2e-2
#define MAXN 512
#define MAXL 128

typedef struct {
    double max_dp, max_rel;
    int rows, label_same, label_diff_close, label_diff_bad;
} stats_t;

static void compare(const float *pc, const float *lc, const float *pg, const float *lg, int n, int C, stats_t *s)
{
    for (int i = 0; i < n; i++) {
        const float *a = pc + (size_t)i * C, *b = pg + (size_t)i * C;
        const float *la = lc + (size_t)i * C, *lb = lg + (size_t)i * C;
        int ia = 0, ib = 0;
        double mx = 0, dl = 0;
        for (int j = 0; j < C; j++) {
            double d = fabs((double)a[j] - b[j]);
            if (d > s->max_dp || isnan(b[j]))
                s->max_dp = isnan(b[j]) ? INFINITY : d;
            if (a[j] > a[ia])
                ia = j;
            if (b[j] > b[ib])
                ib = j;
            mx = fmax(mx, fabs(la[j]));
            dl = fmax(dl, fabs((double)la[j] - lb[j]));
        }
        double rel = dl / (mx > 0 ? mx : 1);
        if (rel > s->max_rel || isnan(rel))
            s->max_rel = isnan(rel) ? INFINITY : rel;
        s->rows++;
        if (ia == ib) {
            s->label_same++;
        } else {
            double second = -1;
            for (int j = 0; j < C; j++)
                if (j != ia && a[j] > second)
                    second = a[j];
            if (a[ia] - second <= TOL_P)
                s->label_diff_close++;
            else
                s->label_diff_bad++;
        }
    }
}

static int g_fail;

static void report(const char *model, const char *what, const stats_t *s)
{
    int ok = s->max_dp <= TOL_P && s->label_diff_bad == 0 && s->rows > 0;
    if (!ok)
        g_fail = 1;
    printf("| %s | %s | %d | %d | %d | %.2e | %.2e | %s |\n", model, what, s->rows, s->label_same,
           s->label_diff_close, s->max_dp, s->max_rel, ok ? "ok" : "FAIL");
    fflush(stdout);
}

typedef struct {
    wf_model_t *m;
    wf_session_t *cpu, *gpu;
    int C, vocab;
    float *pc, *lc, *pg, *lg;
} pair_t;

static int pair_open(pair_t *p, const char *dir, int threads)
{
    wf_err_t err = { { 0 } };
    memset(p, 0, sizeof(*p));
    if (wf_model_load(dir, &p->m, &err) != WF_OK) {
        fprintf(stderr, "%s: %s\n", dir, err.msg);
        return -1;
    }
    wf_session_opts_t oc = { "cpu", threads, MAXN, MAXN * MAXL }, og = { "cuda", 1, MAXN, MAXN * MAXL };
    if (wf_session_new(p->m, &oc, &p->cpu, &err) != WF_OK || wf_session_new(p->m, &og, &p->gpu, &err) != WF_OK) {
        fprintf(stderr, "%s: session: %s\n", dir, err.msg);
        return -1;
    }
    if (strcmp(wf_session_backend(p->gpu), "cuda") != 0) {
        fprintf(stderr, "the cuda session runs on %s\n", wf_session_backend(p->gpu));
        return -1;
    }
    p->C = wf_model_get_config(p->m)->num_labels;
    p->vocab = wf_model_get_config(p->m)->vocab_size;
    size_t k = (size_t)MAXN * p->C;
    p->pc = malloc(k * 4);
    p->lc = malloc(k * 4);
    p->pg = malloc(k * 4);
    p->lg = malloc(k * 4);
    return 0;
}

static void pair_close(pair_t *p)
{
    wf_session_free(p->cpu);
    wf_session_free(p->gpu);
    wf_model_free(p->m);
    free(p->pc);
    free(p->lc);
    free(p->pg);
    free(p->lg);
}

static int run_both(pair_t *p, const int32_t *const *ids, const int *lens, int n, stats_t *s)
{
    for (int i = 0; i < n * p->C; i++)
        p->pg[i] = p->lg[i] = NAN; /* poison: every output must be written */
    if (wf_session_run(p->cpu, ids, lens, n, p->pc, p->lc) != WF_OK ||
        wf_session_run(p->gpu, ids, lens, n, p->pg, p->lg) != WF_OK) {
        fprintf(stderr, "run failed\n");
        g_fail = 1;
        return -1;
    }
    compare(p->pc, p->lc, p->pg, p->lg, n, p->C, s);
    return 0;
}

static void random_batches(pair_t *p, const char *name)
{
    static int32_t ids[MAXN * MAXL];
    static const int32_t *ptrs[MAXN];
    static int lens[MAXN];
    const int sizes[] = { 1, 3, 17, 64, 257, 512 };
    stats_t s;
    memset(&s, 0, sizeof(s));
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        int n = sizes[k], t = 0;
        for (int i = 0; i < n; i++) {
            int L = 2 + (int)((rm_frand() + 1.0f) * 0.5f * (MAXL - 2));
            if (L > MAXL)
                L = MAXL;
            ptrs[i] = ids + t;
            lens[i] = L;
            ids[t] = 2 < p->vocab ? 2 : 0;
            for (int j = 1; j < L - 1; j++)
                ids[t + j] = (int32_t)((rm_frand() + 1.0f) * 0.5f * (p->vocab - 1));
            ids[t + L - 1] = 3 < p->vocab ? 3 : 0;
            t += L;
        }
        if (run_both(p, ptrs, lens, n, &s) != 0)
            return;
    }
    report(name, "random batches 1..512, lengths 2..128", &s);
}

static void fixture(const char *dir, const char *name, int threads)
{
    pair_t p;
    if (pair_open(&p, dir, threads) != 0) {
        g_fail = 1;
        return;
    }
    char path[1200];
    snprintf(path, sizeof(path), "%s/expected.jsonl", dir);
    FILE *f = fopen(path, "r");
    static int32_t ids[MAXN * MAXL];
    static const int32_t *ptrs[MAXN];
    static int lens[MAXN];
    static double ref[MAXN][WF_MAX_LABELS];
    int n = 0, t = 0;
    char *line = NULL;
    size_t cap = 0;
    while (f && getline(&line, &cap, f) > 0 && n < MAXN) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o)
            break;
        json_t *a = json_object_get(o, "ids"), *lg = json_object_get(o, "logits");
        int L = (int)json_array_size(a);
        if (L < 1 || L > MAXL) {
            json_decref(o);
            continue;
        }
        ptrs[n] = ids + t;
        lens[n] = L;
        for (int j = 0; j < L; j++)
            ids[t + j] = (int32_t)json_integer_value(json_array_get(a, j));
        for (int j = 0; j < p.C && j < (int)json_array_size(lg); j++)
            ref[n][j] = json_real_value(json_array_get(lg, j));
        t += L;
        n++;
        json_decref(o);
    }
    free(line);
    if (f)
        fclose(f);
    stats_t s;
    memset(&s, 0, sizeof(s));
    run_both(&p, ptrs, lens, n, &s);
    /* the GPU's logits against transformers' float64 ones */
    double rel_hf = 0;
    for (int i = 0; i < n; i++) {
        double mx = 0, dl = 0;
        for (int j = 0; j < p.C; j++) {
            mx = fmax(mx, fabs(ref[i][j]));
            dl = fmax(dl, fabs(ref[i][j] - p.lg[(size_t)i * p.C + j]));
        }
        rel_hf = fmax(rel_hf, dl / (mx > 0 ? mx : 1));
    }
    char what[128];
    snprintf(what, sizeof(what), "fixture texts, one batch of %d (GPU vs transformers rel %.2e)", n, rel_hf);
    report(name, what, &s);
    memset(&s, 0, sizeof(s));
    for (int i = 0; i < n; i++)
        run_both(&p, &ptrs[i], &lens[i], 1, &s);
    report(name, "fixture texts, one at a time", &s);
    random_batches(&p, name);
    pair_close(&p);
}

int main(int argc, char **argv)
{
    char why[256];
    if (!wf_cuda_probe(why, sizeof(why))) {
        printf("gpu_agree: skipped: %s\n", why);
        return 77;
    }
    int threads = argc > 1 ? atoi(argv[1]) : 8;
    printf("tolerance: |p_gpu - p_cpu| <= %.0e; labels agree unless the CPU's top two are within it\n\n", TOL_P);
    printf("| model | inputs | rows | same label | label differs, top-2 within tol | max abs prob diff | "
           "max logits rel err | result |\n|---|---|---|---|---|---|---|---|\n");
    const char *fx[] = { "bert_tiny", "bert_gelu_new_f16", "mobilebert_tiny", "mobilebert_ln_bf16" };
    for (size_t i = 0; i < 4; i++) {
        char dir[1024];
        const char *src = getenv("WAFER_SRC"); /* the source tree, where it moved (tests/gpu/run.sh) */
        snprintf(dir, sizeof(dir), "%s/tests/fixtures/parity/%s", src ? src : WAFER_SOURCE_DIR, fx[i]);
        fixture(dir, fx[i], threads);
    }
    const char *kinds[] = { "mobilebert", "bert-small" };
    for (size_t i = 0; i < 2; i++) {
        char dir[] = "/tmp/wafer-agree-XXXXXX";
        if (!mkdtemp(dir) || rm_write_model(dir, kinds[i]) != 0) {
            fprintf(stderr, "cannot write the %s model\n", kinds[i]);
            return 2;
        }
        pair_t p;
        if (pair_open(&p, dir, threads) == 0) {
            char name[64];
            snprintf(name, sizeof(name), "random %s", kinds[i]);
            random_batches(&p, name);
            pair_close(&p);
        } else {
            g_fail = 1;
        }
        rm_remove_model(dir);
    }
    /* last: its random batches draw from the generator that the random models above are made with */
    {
        char dir[1024];
        const char *src = getenv("WAFER_SRC");
        snprintf(dir, sizeof(dir), "%s/models/default", src ? src : WAFER_SOURCE_DIR);
        pair_t p;
        if (pair_open(&p, dir, threads) == 0) {
            random_batches(&p, "models/default");
            pair_close(&p);
        } else {
            g_fail = 1;
        }
    }
    printf("\ngpu_agree: %s (host CUDA calls: %llu)\n", g_fail ? "FAIL" : "ok",
           (unsigned long long)wf_cuda_host_calls());
    return g_fail ? 1 : 0;
}
