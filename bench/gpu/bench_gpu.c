/*
 * bench_gpu: the CUDA backend's throughput (units/s) and submit-to-verdict
 * latency (p50/p99) per batch size, host-launched graph mode.
 *
 *   bench_gpu [-m mobilebert,bert-small] [-l 128,64] [-b 1,2,4,...] [-s SECONDS] [-k DIR] [-v 1]
 *   bench_gpu -d MODEL_DIR [-l 16,32,64,128] [-b ...] [-s SECONDS] [-v 1]
 *
 * -m models (tests/common/rand_model.h: the exact google/mobilebert-uncased
 * architecture, random weights; a compact BERT standing in for the default
 * model), -l one sequence length per model, -b batch sizes, -s seconds per
 * point, -k keep each model directory under DIR/<model> (so that
 * bench/gpu/torch_bench.py runs PyTorch on the same weights).
 * -d a model directory instead (models/default, say): every length of -l at
 * every batch size of -b, one session sized for the largest batch and length.
 * Batches whose tokens exceed WAFER_BENCH_MAX_TOKENS (default 1048576) are skipped.
 * One latency sample is one wf_session_run(): pack, graph launch (input copy,
 * forward, logits copy), synchronise, host softmax. TFLOP/s counts the
 * products and attention of the model's real tokens.
 */
#include "rand_model.h"
#include "timing.h"
#include "infer/cuda_module.h"

#include <sys/stat.h>

/* FLOPs of one sequence of L tokens: 2*in*out per token per linear layer, 4*L*L*I attention per layer. */
static double seq_flops(const wf_model_config_t *cfg, int L)
{
    wf_arch_dims_t d;
    wf_arch_dims(cfg, &d, NULL);
    double H = d.hidden, I = d.true_hidden, F = d.inter, lin = 0;
    if (d.bottleneck)
        lin += H * I * (d.kq_shared ? 2 : 1);
    lin += d.kq_shared ? (2 * I * I + H * I) : 3 * I * (d.bn_attention ? I : H);
    lin += I * I;
    lin += d.nffn * 2 * I * F + 2 * I * F;
    if (d.bottleneck)
        lin += I * H;
    double per_layer = 2 * lin * L + 4.0 * L * L * I;
    double emb = d.emb_in ? 2.0 * d.emb_in * H * L : 0;
    double head = (d.has_pooler ? 2 * H * H : 0) + 2 * H * cfg->num_labels;
    return cfg->num_hidden_layers * per_layer + emb + head;
}

/* One batch size and length on a session: a table row. */
static int bench_point(wf_session_t *s, const char *name, const wf_model_config_t *cfg, int L, int B, double secs,
                       const int32_t *const *ptrs, const int *ls, float *probs)
{
    static double lat[200000];
    for (int w = 0; w < 3; w++) /* builds the bucket's graph, then warms */
        if (wf_session_run(s, ptrs, ls, B, probs, NULL) != WF_OK) {
            fprintf(stderr, "run failed\n");
            return -1;
        }
    int n = 0;
    double t0 = tm_now_s(), t = t0;
    while ((t - t0 < secs || n < 20) && n < 200000) {
        double a = tm_now_s();
        if (wf_session_run(s, ptrs, ls, B, probs, NULL) != WF_OK)
            return -1;
        t = tm_now_s();
        lat[n++] = t - a;
    }
    qsort(lat, n, sizeof(double), tm_cmp_double);
    double total = t - t0;
    printf("| wafer cuda graph | %s | %d | %d | %.3f | %.3f | %.0f | %.1f |\n", name, L, B, lat[n / 2] * 1e3,
           lat[(int)(n * 0.99)] * 1e3, (double)B * n / total, seq_flops(cfg, L) * B * n / total / 1e12);
    fflush(stdout);
    return 0;
}

/* -d: a model directory at every length and batch size. */
static int bench_dir(const char *dir, const int *lens, int nlen, const int *batches, int nbat, double secs)
{
    const char *mt = getenv("WAFER_BENCH_MAX_TOKENS");
    long max_tokens = mt && atol(mt) > 0 ? atol(mt) : 1048576;
    int maxb = 1, maxl = 1;
    for (int i = 0; i < nbat; i++)
        maxb = WF_MAX(maxb, batches[i]);
    for (int i = 0; i < nlen; i++)
        maxl = WF_MAX(maxl, lens[i]);
    long cap = WF_MIN((long)maxb * maxl, max_tokens);
    wf_model_t *m;
    wf_err_t err = { { 0 } };
    if (wf_model_load(dir, &m, &err) != WF_OK) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 2;
    }
    const wf_model_config_t *cfg = wf_model_get_config(m);
    wf_session_opts_t o = { "cuda", 1, (int)WF_MIN(maxb, 65535), (int)cap };
    wf_session_t *s;
    if (wf_session_new(m, &o, &s, &err) != WF_OK) {
        fprintf(stderr, "session: %s\n", err.msg);
        return 2;
    }
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    if (!name[0])
        name = dir;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)cap);
    const int32_t **ptrs = malloc(sizeof(*ptrs) * maxb);
    int *ls = malloc(sizeof(int) * maxb);
    float *probs = malloc(sizeof(float) * maxb * cfg->num_labels);
    if (!ids || !ptrs || !ls || !probs)
        return 2;
    int rc = 0;
    for (int li = 0; li < nlen && !rc; li++) {
        int L = WF_MIN(lens[li], cfg->max_position_embeddings);
        for (long i = 0; i < cap; i++) /* [CLS] body [SEP] as real units are */
            ids[i] = i % L == 0 ? 2 : i % L == L - 1 ? 3 : 5 + (int)((rm_frand() + 1.0f) * 0.5f * (cfg->vocab_size - 6));
        for (int bi = 0; bi < nbat && !rc; bi++) {
            int B = batches[bi];
            if ((long)B * L > cap || B > o.max_batch)
                continue;
            for (int b = 0; b < B; b++) {
                ptrs[b] = ids + (size_t)b * L;
                ls[b] = L;
            }
            if (bench_point(s, name, cfg, L, B, secs, ptrs, ls, probs) != 0)
                rc = 2;
        }
    }
    free(ids);
    free(ptrs);
    free(ls);
    free(probs);
    wf_session_free(s);
    wf_model_free(m);
    fprintf(stderr, "host CUDA calls: %llu\n", (unsigned long long)wf_cuda_host_calls());
    return rc;
}

int main(int argc, char **argv)
{
    char models_s[256] = "mobilebert,bert-small", lens_s[128] = "128,64",
         batches_s[256] = "1,2,4,8,16,32,64,128,256,512,1024,2048,4096", keep[512] = "", mdir[512] = "";
    double secs = 0.3;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-m"))
            snprintf(models_s, sizeof(models_s), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "-l"))
            snprintf(lens_s, sizeof(lens_s), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "-b"))
            snprintf(batches_s, sizeof(batches_s), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "-s"))
            secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "-d"))
            snprintf(mdir, sizeof(mdir), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "-k"))
            snprintf(keep, sizeof(keep), "%s", argv[i + 1]);
        else if (!strcmp(argv[i], "-v")) /* -v 1: debug log (each graph's node count) */
            wf_log_set_level(atoi(argv[i + 1]) ? WF_LOG_DEBUG : WF_LOG_INFO);
    }
    char why[256];
    if (!wf_cuda_probe(why, sizeof(why))) {
        fprintf(stderr, "bench_gpu: %s\n", why);
        return 77;
    }
    int batches[32], nbat = 0, lens[8], nlen = 0, maxb = 1;
    for (char *t = strtok(batches_s, ","); t && nbat < 32; t = strtok(NULL, ",")) {
        batches[nbat] = atoi(t);
        maxb = WF_MAX(maxb, batches[nbat]);
        nbat++;
    }
    for (char *t = strtok(lens_s, ","); t && nlen < 8; t = strtok(NULL, ","))
        lens[nlen++] = atoi(t);
    printf("| engine | model | seq len | batch | p50 ms | p99 ms | units/s | TFLOP/s |\n"
           "|---|---|---|---|---|---|---|---|\n");
    if (mdir[0])
        return bench_dir(mdir, lens, nlen, batches, nbat, secs);
    int mi = 0;
    char *save = NULL;
    for (char *model = strtok_r(models_s, ",", &save); model; model = strtok_r(NULL, ",", &save), mi++) {
        int L = lens[mi < nlen ? mi : nlen - 1];
        char dir[600];
        if (keep[0]) {
            snprintf(dir, sizeof(dir), "%s/%s", keep, model);
            mkdir(keep, 0755);
            mkdir(dir, 0755);
        } else {
            snprintf(dir, sizeof(dir), "/tmp/wafer-bench-gpu-XXXXXX");
            if (!mkdtemp(dir))
                return 2;
        }
        if (rm_write_model(dir, model) != 0) {
            fprintf(stderr, "cannot write the %s model\n", model);
            return 2;
        }
        wf_model_t *m;
        wf_err_t err = { { 0 } };
        if (wf_model_load(dir, &m, &err) != WF_OK) {
            fprintf(stderr, "load: %s\n", err.msg);
            return 2;
        }
        wf_session_opts_t o = { "cuda", 1, maxb, maxb * L };
        wf_session_t *s;
        if (wf_session_new(m, &o, &s, &err) != WF_OK) {
            fprintf(stderr, "session: %s\n", err.msg);
            return 2;
        }
        const wf_model_config_t *cfg = wf_model_get_config(m);
        double fl = seq_flops(cfg, L);
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)maxb * L);
        const int32_t **ptrs = malloc(sizeof(*ptrs) * maxb);
        int *ls = malloc(sizeof(int) * maxb);
        float *probs = malloc(sizeof(float) * maxb * cfg->num_labels);
        for (int i = 0; i < maxb * L; i++)
            ids[i] = 5 + (int)((rm_frand() + 1.0f) * 0.5f * (cfg->vocab_size - 6));
        for (int b = 0; b < maxb; b++) {
            ptrs[b] = ids + (size_t)b * L;
            ls[b] = L;
        }
        static double lat[200000];
        for (int bi = 0; bi < nbat; bi++) {
            int B = batches[bi];
            for (int w = 0; w < 3; w++) /* builds the bucket's graph, then warms */
                if (wf_session_run(s, ptrs, ls, B, probs, NULL) != WF_OK) {
                    fprintf(stderr, "run failed\n");
                    return 2;
                }
            int n = 0;
            double t0 = tm_now_s(), t = t0;
            while ((t - t0 < secs || n < 20) && n < 200000) {
                double a = tm_now_s();
                if (wf_session_run(s, ptrs, ls, B, probs, NULL) != WF_OK)
                    return 2;
                t = tm_now_s();
                lat[n++] = t - a;
            }
            qsort(lat, n, sizeof(double), tm_cmp_double);
            double total = t - t0;
            printf("| wafer cuda graph | %s | %d | %d | %.3f | %.3f | %.0f | %.1f |\n", model, L, B, lat[n / 2] * 1e3,
                   lat[(int)(n * 0.99)] * 1e3, (double)B * n / total, fl * B * n / total / 1e12);
            fflush(stdout);
        }
        free(ids);
        free(ptrs);
        free(ls);
        free(probs);
        wf_session_free(s);
        wf_model_free(m);
        if (!keep[0])
            rm_remove_model(dir);
    }
    fprintf(stderr, "host CUDA calls: %llu\n", (unsigned long long)wf_cuda_host_calls());
    return 0;
}
