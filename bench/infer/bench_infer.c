/*
 * bench_infer: throughput and latency of the CPU inference engine, and a
 * logits dump for parity checks against transformers.
 *
 *   bench_infer bench [-t THREADS] [-b BATCH] [-l 32,64,128,256] [-m mobilebert,bert] [-s SECONDS]
 *       builds randomly initialised models (the MobileBERT config of
 *       google/mobilebert-uncased, and a small BERT: 4 layers, hidden 256,
 *       4 heads, intermediate 1024) in a temporary directory and prints a
 *       table: for each model and sequence length, batch-1 latency and
 *       sequences/s, and the same for a batch of BATCH sequences.
 *   bench_infer ids MODEL_DIR IDS_FILE [-t THREADS]
 *       IDS_FILE: one sequence per line, space-separated token ids. Runs all
 *       of them as one batch and prints one JSON array of logits per line.
 */
#include "infer/arch.h"
#include "st_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

/* ------------------------------------------------------ random model writer */

typedef struct {
    stw_tensor_t t[4096];
    char names[4096][160];
    int n;
} wlist_t;

static wf_status_t collect(void *ctx, wf_param_t *p, const char *name, int ndim, const int64_t *shape)
{
    wlist_t *w = ctx;
    if (w->n >= 4096)
        return WF_ERR_LIMIT;
    stw_tensor_t *t = &w->t[w->n];
    snprintf(w->names[w->n], sizeof(w->names[0]), "%s", name);
    t->name = w->names[w->n];
    t->dtype = "F32";
    t->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        t->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    float *d = malloc(numel * sizeof(float));
    if (!d)
        return WF_ERR_NOMEM;
    bool norm_w = strstr(name, "LayerNorm.weight") != NULL;
    bool bias = strstr(name, ".bias") != NULL;
    for (size_t i = 0; i < numel; i++)
        d[i] = norm_w ? 1.0f + 0.1f * frand() : (bias ? 0.02f : 0.05f) * frand();
    t->data = d;
    t->nbytes = numel * sizeof(float);
    w->n++;
    return WF_OK;
}

static int write_text(const char *dir, const char *file, const char *text)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static int write_model(const char *dir, const char *kind)
{
    wf_model_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    char json[2048];
    bool mb = strcmp(kind, "mobilebert") == 0;
    if (mb) {
        cfg = (wf_model_config_t){ .arch = WF_ARCH_MOBILEBERT, .vocab_size = 30522, .hidden_size = 512,
                                   .num_hidden_layers = 24, .num_attention_heads = 4, .intermediate_size = 512,
                                   .max_position_embeddings = 512, .type_vocab_size = 2, .layer_norm_eps = 1e-12f,
                                   .hidden_act = WF_ACT_RELU, .embedding_size = 128, .trigram_input = true,
                                   .use_bottleneck = true, .intra_bottleneck_size = 128,
                                   .key_query_shared_bottleneck = true, .num_feedforward_networks = 4,
                                   .normalization_type = WF_NORM_NONORM, .classifier_activation = true,
                                   .num_labels = 2 };
        snprintf(json, sizeof(json),
                 "{\"model_type\": \"mobilebert\", \"vocab_size\": 30522, \"hidden_size\": 512, "
                 "\"num_hidden_layers\": 24, \"num_attention_heads\": 4, \"intermediate_size\": 512, "
                 "\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"hidden_act\": \"relu\", "
                 "\"embedding_size\": 128, \"intra_bottleneck_size\": 128, \"trigram_input\": true, "
                 "\"use_bottleneck\": true, \"key_query_shared_bottleneck\": true, "
                 "\"use_bottleneck_attention\": false, \"num_feedforward_networks\": 4, "
                 "\"normalization_type\": \"no_norm\", \"classifier_activation\": true, "
                 "\"id2label\": {\"0\": \"benign\", \"1\": \"attack\"}}\n");
    } else {
        cfg = (wf_model_config_t){ .arch = WF_ARCH_BERT, .vocab_size = 30522, .hidden_size = 256,
                                   .num_hidden_layers = 4, .num_attention_heads = 4, .intermediate_size = 1024,
                                   .max_position_embeddings = 512, .type_vocab_size = 2, .layer_norm_eps = 1e-12f,
                                   .hidden_act = WF_ACT_GELU, .num_labels = 2 };
        snprintf(json, sizeof(json),
                 "{\"model_type\": \"bert\", \"vocab_size\": 30522, \"hidden_size\": 256, "
                 "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"intermediate_size\": 1024, "
                 "\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"hidden_act\": \"gelu\", "
                 "\"id2label\": {\"0\": \"benign\", \"1\": \"attack\"}}\n");
    }
    if (write_text(dir, "config.json", json) != 0)
        return -1;
    if (write_text(dir, "wafer.json",
                   "{\"name\": \"bench\", \"labels\": [\"benign\", \"attack\"], \"thresholds\": [0.5, 0.5], "
                   "\"max_len\": 512, \"tokenizer\": {\"kind\": \"wordpiece\", \"lowercase\": true}, "
                   "\"units\": [], \"text_format\": \"wafer-unit-v1\"}\n") != 0)
        return -1;
    char p[1024];
    snprintf(p, sizeof(p), "%s/vocab.txt", dir);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (int i = 5; i < 30522; i++)
        fprintf(f, "w%d\n", i);
    if (fclose(f) != 0)
        return -1;
    wlist_t *w = calloc(1, sizeof(*w));
    wf_weights_t *ws = calloc(1, sizeof(*ws));
    if (!w || !ws)
        return -1;
    int rc = wf_arch_params(&cfg, ws, collect, w) == WF_OK ? 0 : -1;
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    if (rc == 0)
        rc = stw_write(p, w->t, w->n);
    for (int i = 0; i < w->n; i++)
        free((void *)w->t[i].data);
    free(w);
    free(ws);
    return rc;
}

static void rm_model(const char *dir)
{
    const char *files[] = { "config.json", "wafer.json", "vocab.txt", "model.safetensors" };
    char p[1024];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* -------------------------------------------------------------------- bench */

static double time_runs(wf_session_t *s, const int32_t *const *ids, const int *lens, int n, float *probs,
                        double min_s, int *reps_out)
{
    wf_session_run(s, ids, lens, n, probs, NULL); /* warm-up */
    int reps = 0;
    double t0 = now_s(), t;
    do {
        if (wf_session_run(s, ids, lens, n, probs, NULL) != WF_OK) {
            fprintf(stderr, "run failed\n");
            exit(2);
        }
        reps++;
        t = now_s() - t0;
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
        if (!mkdtemp(dir) || write_model(dir, model) != 0) {
            fprintf(stderr, "cannot write the %s model\n", model);
            return 2;
        }
        wf_model_t *m;
        wf_err_t err = { { 0 } };
        if (wf_model_load(dir, &m, &err) != WF_OK) {
            fprintf(stderr, "load: %s\n", err.msg);
            rm_model(dir);
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
            ids[i] = 5 + (int)((frand() + 1.0f) * 0.5f * 30000);
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
        rm_model(dir);
    }
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
    double t0 = now_s();
    wf_status_t st = wf_session_run(s, ptrs, lens, nseq, probs, logits);
    double t = now_s() - t0;
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
    if (argc >= 2 && !strcmp(argv[1], "ids"))
        return cmd_ids(argc - 2, argv + 2);
    fprintf(stderr, "usage: bench_infer bench [-t N] [-b BATCH] [-l LENS] [-m MODELS] [-s SECONDS]\n"
                    "       bench_infer ids MODEL_DIR IDS_FILE [-t N]\n");
    return 2;
}
