/*
 * bench_infer: throughput and latency of the CPU inference engine, and a
 * logits dump for parity checks against transformers.
 *
 *   bench_infer bench [-t THREADS] [-b BATCH] [-l 32,64,128,256] [-m mobilebert,bert] [-s SECONDS]
 *       builds randomly initialised models (tests/common/rand_model.h: the
 *       MobileBERT config of google/mobilebert-uncased, and "bert", its
 *       bert-small: 4 layers, hidden 256, 4 heads, intermediate 1024) in a
 *       temporary directory and prints a table: for each model and sequence
 *       length, batch-1 latency and sequences/s, and the same for a batch of
 *       BATCH sequences.
 *   bench_infer units MODEL_DIR TEXTS_FILE [-t THREADS] [-b 1,4,16,64] [-s SECONDS]
 *       TEXTS_FILE: one model input text per line (e.g. the "text" fields of
 *       `wafer extract --json` over a request sample). Tokenizes every line
 *       with the model's tokenizer (timed: tokenization per unit), prints the
 *       token-count distribution, then for each batch size runs the texts in
 *       order, BATCH at a time, over and over until -s seconds have passed,
 *       and prints microseconds per unit and units/s (the engine's cost at
 *       the batch sizes the proxy forms: docs/benchmarks.md).
 *   bench_infer ids MODEL_DIR IDS_FILE [-t THREADS]
 *       IDS_FILE: one sequence per line, space-separated token ids. Runs all
 *       of them as one batch and prints one JSON array of logits per line.
 */
#include "rand_model.h"
#include "timing.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -------------------------------------------------------------------- bench */

static double time_runs(wf_session_t *s, const int32_t *const *ids, const int *lens, int n, float *probs,
                        double min_s, int *reps_out)
{
    wf_session_run(s, ids, lens, n, probs, NULL); /* warm-up */
    int reps = 0;
    double t0 = tm_now_s(), t;
    do {
        if (wf_session_run(s, ids, lens, n, probs, NULL) != WF_OK) {
            fprintf(stderr, "run failed\n");
            exit(2);
        }
        reps++;
        t = tm_now_s() - t0;
    } while (t < min_s || reps < 2);
    *reps_out = reps;
    return t / reps;
}

static int cmd_bench(int argc, char **argv)
{
    int threads = 1, batch = 256;
    double secs = 1.0;
    char lens_s[256] = "32,64,128,256", models_s[256] = "mobilebert,bert";
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-b") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc)
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "-l") && i + 1 < argc)
            snprintf(lens_s, sizeof(lens_s), "%s", argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc)
            snprintf(models_s, sizeof(models_s), "%s", argv[++i]);
    }
    int lens[16], nl = 0;
    for (char *tok = strtok(lens_s, ","); tok && nl < 16; tok = strtok(NULL, ","))
        lens[nl++] = atoi(tok);
    int maxl = 0;
    for (int i = 0; i < nl; i++)
        maxl = lens[i] > maxl ? lens[i] : maxl;
    printf("| engine | model | threads | seq len | batch 1 latency ms | batch 1 seq/s | batch %d latency ms | "
           "batch %d seq/s |\n|---|---|---|---|---|---|---|---|\n",
           batch, batch);
    char *save = NULL;
    for (char *model = strtok_r(models_s, ",", &save); model; model = strtok_r(NULL, ",", &save)) {
        char dir[] = "/tmp/wafer-bench-XXXXXX";
        if (!mkdtemp(dir) || rm_write_model(dir, strcmp(model, "mobilebert") == 0 ? "mobilebert" : "bert-small") != 0) {
            fprintf(stderr, "cannot write the %s model\n", model);
            return 2;
        }
        wf_model_t *m;
        wf_err_t err = { { 0 } };
        if (wf_model_load(dir, &m, &err) != WF_OK) {
            fprintf(stderr, "load: %s\n", err.msg);
            rm_remove_model(dir);
            return 2;
        }
        wf_session_opts_t o = { "cpu", threads, batch, batch * maxl };
        wf_session_t *s;
        if (wf_session_new(m, &o, &s, &err) != WF_OK) {
            fprintf(stderr, "session: %s\n", err.msg);
            return 2;
        }
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)batch * maxl);
        const int32_t **ptrs = malloc(sizeof(*ptrs) * batch);
        int *ls = malloc(sizeof(int) * batch);
        float *probs = malloc(sizeof(float) * batch * 2);
        for (int i = 0; i < batch * maxl; i++)
            ids[i] = 5 + (int)((rm_frand() + 1.0f) * 0.5f * 30000);
        for (int li = 0; li < nl; li++) {
            int L = lens[li];
            for (int b = 0; b < batch; b++) {
                ptrs[b] = ids + (size_t)b * L;
                ls[b] = L;
            }
            int r1, rb;
            double t1 = time_runs(s, ptrs, ls, 1, probs, secs, &r1);
            double tb = time_runs(s, ptrs, ls, batch, probs, secs, &rb);
            printf("| wafer | %s | %d | %d | %.2f | %.1f | %.1f | %.1f |\n", model, threads, L, t1 * 1e3, 1.0 / t1,
                   tb * 1e3, batch / tb);
            fflush(stdout);
        }
        free(ids);
        free(ptrs);
        free(ls);
        free(probs);
        wf_session_free(s);
        wf_model_free(m);
        rm_remove_model(dir);
    }
    return 0;
}

/* -------------------------------------------------------------------- units */

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int cmd_units(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_infer units MODEL_DIR TEXTS_FILE [-t THREADS] [-b 1,4,16,64] [-s SECONDS]\n");
        return 2;
    }
    int threads = 1;
    double secs = 1.0;
    char bs_s[256] = "1,4,16,64";
    for (int i = 2; i + 1 < argc; i++) {
        if (!strcmp(argv[i], "-t"))
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s"))
            secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "-b"))
            snprintf(bs_s, sizeof(bs_s), "%s", argv[++i]);
    }
    int bs[16], nb = 0, bmax = 1;
    for (char *tok = strtok(bs_s, ","); tok && nb < 16; tok = strtok(NULL, ","))
        if ((bs[nb] = atoi(tok)) > 0) {
            bmax = bs[nb] > bmax ? bs[nb] : bmax;
            nb++;
        }
    wf_model_t *m;
    wf_err_t err = { { 0 } };
    if (wf_model_load(argv[0], &m, &err) != WF_OK) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 2;
    }
    const wf_tokenizer_t *tok = wf_model_get_tokenizer(m);
    int M = wf_model_get_meta(m)->max_len;
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1024, n = 0, chars = 0;
    char **texts = malloc(sizeof(char *) * cap);
    size_t *tlens = malloc(sizeof(size_t) * cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        if (line[got - 1] == '\n')
            got--;
        if (n == cap) {
            cap *= 2;
            texts = realloc(texts, sizeof(char *) * cap);
            tlens = realloc(tlens, sizeof(size_t) * cap);
        }
        texts[n] = malloc((size_t)got + 1);
        memcpy(texts[n], line, (size_t)got);
        tlens[n] = (size_t)got;
        chars += (size_t)got;
        n++;
    }
    free(line);
    fclose(f);
    if (!n) {
        fprintf(stderr, "%s: no texts\n", argv[1]);
        return 2;
    }
    int32_t *ids = malloc(sizeof(int32_t) * n * (size_t)M);
    int *lens = malloc(sizeof(int) * n), *sorted = malloc(sizeof(int) * n);
    double t0 = tm_now_s();
    size_t tokens = 0;
    for (size_t i = 0; i < n; i++) {
        lens[i] = wf_tokenizer_encode(tok, texts[i], tlens[i], ids + i * (size_t)M, M);
        if (lens[i] <= 0) {
            fprintf(stderr, "line %zu: tokenizer error\n", i + 1);
            return 2;
        }
        tokens += (size_t)lens[i];
    }
    double ttok = tm_now_s() - t0;
    memcpy(sorted, lens, sizeof(int) * n);
    qsort(sorted, n, sizeof(int), cmp_int);
    size_t at_max = 0;
    for (size_t i = 0; i < n; i++)
        at_max += lens[i] == M;
    printf("%zu texts, %.1f bytes and %.1f tokens a text (with [CLS] and [SEP]; median %d, p90 %d, %.1f%% cut at "
           "%d); tokenization %.2f us a text\n",
           n, (double)chars / n, (double)tokens / n, sorted[n / 2], sorted[n * 9 / 10], 100.0 * at_max / n, M,
           ttok * 1e6 / n);
    wf_session_opts_t o = { "cpu", threads, bmax, bmax * M };
    wf_session_t *s;
    if (wf_session_new(m, &o, &s, &err) != WF_OK) {
        fprintf(stderr, "session: %s\n", err.msg);
        return 2;
    }
    const int32_t **ptrs = malloc(sizeof(*ptrs) * (size_t)bmax);
    int *bl = malloc(sizeof(int) * (size_t)bmax);
    float *probs = malloc(sizeof(float) * (size_t)bmax * WF_MAX_LABELS);
    printf("| threads | batch | us per unit | units/s | us per token |\n|---|---|---|---|---|\n");
    for (int bi = 0; bi < nb; bi++) {
        int B = bs[bi];
        size_t pos = 0, units = 0, toks = 0;
        double start = tm_now_s(), t;
        do {
            int k = 0;
            for (; k < B; k++, pos = (pos + 1) % n) {
                ptrs[k] = ids + pos * (size_t)M;
                bl[k] = lens[pos];
                toks += (size_t)lens[pos];
            }
            if (wf_session_run(s, ptrs, bl, k, probs, NULL) != WF_OK) {
                fprintf(stderr, "run failed\n");
                return 2;
            }
            units += (size_t)k;
            t = tm_now_s() - start;
        } while (t < secs);
        printf("| %d | %d | %.1f | %.0f | %.2f |\n", threads, B, t * 1e6 / units, units / t, t * 1e6 / toks);
        fflush(stdout);
    }
    wf_session_free(s);
    wf_model_free(m);
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(tlens);
    free(ids);
    free(lens);
    free(sorted);
    free(ptrs);
    free(bl);
    free(probs);
    return 0;
}

/* ---------------------------------------------------------------------- ids */

static int cmd_ids(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_infer ids MODEL_DIR IDS_FILE [-t THREADS]\n");
        return 2;
    }
    int threads = 1;
    for (int i = 2; i + 1 < argc; i++)
        if (!strcmp(argv[i], "-t"))
            threads = atoi(argv[i + 1]);
    FILE *f = fopen(argv[1], "r");
    if (!f) {
        perror(argv[1]);
        return 2;
    }
    size_t cap = 1 << 20, n_ids = 0;
    int32_t *ids = malloc(cap * sizeof(int32_t));
    int seqcap = 4096, nseq = 0, *lens = calloc(seqcap, sizeof(int));
    size_t *offs = calloc(seqcap, sizeof(size_t));
    char *line = NULL;
    size_t lcap = 0;
    while (getline(&line, &lcap, f) > 0 && nseq < seqcap) {
        offs[nseq] = n_ids;
        for (char *p = line, *end; *p; p = end) {
            long v = strtol(p, &end, 10);
            if (end == p)
                break;
            if (n_ids < cap)
                ids[n_ids++] = (int32_t)v;
        }
        lens[nseq] = (int)(n_ids - offs[nseq]);
        if (lens[nseq] > 0)
            nseq++;
    }
    free(line);
    fclose(f);
    wf_model_t *m;
    wf_err_t err = { { 0 } };
    if (wf_model_load(argv[0], &m, &err) != WF_OK) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 2;
    }
    wf_session_opts_t o = { "cpu", threads, nseq, (int)n_ids };
    wf_session_t *s;
    if (wf_session_new(m, &o, &s, &err) != WF_OK) {
        fprintf(stderr, "session: %s\n", err.msg);
        return 2;
    }
    const int32_t **ptrs = malloc(sizeof(*ptrs) * nseq);
    for (int i = 0; i < nseq; i++)
        ptrs[i] = ids + offs[i];
    int C = wf_model_get_config(m)->num_labels;
    float *probs = malloc(sizeof(float) * nseq * C), *logits = malloc(sizeof(float) * nseq * C);
    double t0 = tm_now_s();
    wf_status_t st = wf_session_run(s, ptrs, lens, nseq, probs, logits);
    double t = tm_now_s() - t0;
    if (st != WF_OK) {
        fprintf(stderr, "run: %s\n", wf_status_str(st));
        return 2;
    }
    for (int i = 0; i < nseq; i++) {
        printf("[");
        for (int j = 0; j < C; j++)
            printf(j ? ", %.9g" : "%.9g", logits[i * C + j]);
        printf("]\n");
    }
    fprintf(stderr, "%d sequences, %zu tokens, %.3f s\n", nseq, n_ids, t);
    wf_session_free(s);
    wf_model_free(m);
    free(ids);
    free(lens);
    free(offs);
    free(ptrs);
    free(probs);
    free(logits);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "bench"))
        return cmd_bench(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "units"))
        return cmd_units(argc - 2, argv + 2);
    if (argc >= 2 && !strcmp(argv[1], "ids"))
        return cmd_ids(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_infer bench [-t N] [-b BATCH] [-l LENS] [-m MODELS] [-s SECONDS]\n"
                    "       bench_infer units MODEL_DIR TEXTS_FILE [-t N] [-b 1,4,16,64] [-s SECONDS]\n"
                    "       bench_infer ids MODEL_DIR IDS_FILE [-t N]\n");
    return 2;
}
