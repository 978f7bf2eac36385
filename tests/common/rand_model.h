/*
 * Randomly initialised model directories for the tests and benchmarks
 * (bench_infer, bench_gpu, gpu_agree, ring_test; header-only; tools, not the library):
 *   "mobilebert": the exact google/mobilebert-uncased architecture (24 layers,
 *                 embedding 128 -> trigram 384 -> 512, bottleneck 128, 4 heads,
 *                 4 FFNs, NoNorm, ReLU), 2 labels;
 *   "bert-small": a compact BERT (4 layers, hidden 256, 4 heads, intermediate
 *                 1024, GELU), standing in for the default model, which does
 *                 not exist yet.
 * Names and layout are transformers', so PyTorch loads the same weights with
 * from_pretrained(dir).
 */
#ifndef WAFER_TEST_RAND_MODEL_H
#define WAFER_TEST_RAND_MODEL_H

#include "infer/arch.h"
#include "st_writer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rm_rng = 0x9E3779B97F4A7C15ull;
static inline float rm_frand(void) /* uniform in [-1, 1) */
{
    rm_rng ^= rm_rng << 13;
    rm_rng ^= rm_rng >> 7;
    rm_rng ^= rm_rng << 17;
    return (float)((rm_rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

typedef struct {
    stw_tensor_t t[4096];
    char names[4096][160];
    int n;
} rm_list_t;

static wf_status_t rm_collect(void *ctx, wf_param_t *p, const char *name, int ndim, const int64_t *shape)
{
    rm_list_t *w = (rm_list_t *)ctx;
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
    float *d = (float *)malloc(numel * sizeof(float));
    if (!d)
        return WF_ERR_NOMEM;
    int norm_w = strstr(name, "LayerNorm.weight") != NULL;
    int bias = strstr(name, ".bias") != NULL;
    /* Linear weights ~ U(-a, a), a = 1/sqrt(in) (nn.Linear's default bound). Larger (a = 1.7/sqrt(in))
     * makes the 24-layer NoNorm MobileBERT chaotic: rounding its weights to bf16 alone, on the CPU, changes
     * the logits completely; with this bound it changes them by about 2%. */
    const char *sc = getenv("RM_SCALE");
    float a = ndim == 2 ? (sc ? (float)atof(sc) : 1.0f) / sqrtf((float)shape[1]) : 0.05f;
    for (size_t i = 0; i < numel; i++)
        d[i] = norm_w ? 1.0f + 0.1f * rm_frand() : (bias ? 0.02f : a) * rm_frand();
    if (getenv("RM_ROUND_BF16")) /* experiments: the same weights rounded to bf16 */
        for (size_t i = 0; i < numel; i++) {
            uint32_t u;
            memcpy(&u, &d[i], 4);
            u = (u + 0x7fffu + ((u >> 16) & 1)) & 0xffff0000u;
            memcpy(&d[i], &u, 4);
        }
    t->data = d;
    t->nbytes = numel * sizeof(float);
    w->n++;
    return WF_OK;
}

static inline int rm_write_text(const char *dir, const char *file, const char *text)
{
    char p[1024];
    snprintf(p, sizeof(p), "%s/%s", dir, file);
    FILE *f = fopen(p, "w");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

/* Writes config.json, wafer.json, vocab.txt, model.safetensors into dir. */
static inline int rm_write_model(const char *dir, const char *kind)
{
    wf_model_config_t cfg;
    memset(&cfg, 0, sizeof(cfg));
    const char *json;
    if (strcmp(kind, "mobilebert") == 0) {
        cfg = (wf_model_config_t){ .arch = WF_ARCH_MOBILEBERT, .vocab_size = 30522, .hidden_size = 512,
                                   .num_hidden_layers = 24, .num_attention_heads = 4, .intermediate_size = 512,
                                   .max_position_embeddings = 512, .type_vocab_size = 2, .layer_norm_eps = 1e-12f,
                                   .hidden_act = WF_ACT_RELU, .embedding_size = 128, .trigram_input = true,
                                   .use_bottleneck = true, .intra_bottleneck_size = 128,
                                   .key_query_shared_bottleneck = true, .num_feedforward_networks = 4,
                                   .normalization_type = WF_NORM_NONORM, .classifier_activation = true,
                                   .num_labels = 2 };
        json = "{\"model_type\": \"mobilebert\", \"vocab_size\": 30522, \"hidden_size\": 512, "
               "\"num_hidden_layers\": 24, \"num_attention_heads\": 4, \"intermediate_size\": 512, "
               "\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"hidden_act\": \"relu\", "
               "\"embedding_size\": 128, \"intra_bottleneck_size\": 128, \"true_hidden_size\": 128, "
               "\"trigram_input\": true, \"use_bottleneck\": true, \"key_query_shared_bottleneck\": true, "
               "\"use_bottleneck_attention\": false, \"num_feedforward_networks\": 4, "
               "\"normalization_type\": \"no_norm\", \"classifier_activation\": true, \"layer_norm_eps\": 1e-12, "
               "\"id2label\": {\"0\": \"benign\", \"1\": \"attack\"}, \"label2id\": {\"benign\": 0, \"attack\": 1}}\n";
    } else if (strcmp(kind, "bert-small") == 0) {
        cfg = (wf_model_config_t){ .arch = WF_ARCH_BERT, .vocab_size = 30522, .hidden_size = 256,
                                   .num_hidden_layers = 4, .num_attention_heads = 4, .intermediate_size = 1024,
                                   .max_position_embeddings = 512, .type_vocab_size = 2, .layer_norm_eps = 1e-12f,
                                   .hidden_act = WF_ACT_GELU, .num_labels = 2 };
        json = "{\"model_type\": \"bert\", \"vocab_size\": 30522, \"hidden_size\": 256, "
               "\"num_hidden_layers\": 4, \"num_attention_heads\": 4, \"intermediate_size\": 1024, "
               "\"max_position_embeddings\": 512, \"type_vocab_size\": 2, \"hidden_act\": \"gelu\", "
               "\"layer_norm_eps\": 1e-12, "
               "\"id2label\": {\"0\": \"benign\", \"1\": \"attack\"}, \"label2id\": {\"benign\": 0, \"attack\": 1}}\n";
    } else {
        return -1;
    }
    if (rm_write_text(dir, "config.json", json) != 0)
        return -1;
    if (rm_write_text(dir, "wafer.json",
                      "{\"name\": \"random\", \"labels\": [\"benign\", \"attack\"], \"thresholds\": [0.5, 0.5], "
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
    rm_list_t *w = (rm_list_t *)calloc(1, sizeof(*w));
    wf_weights_t *ws = (wf_weights_t *)calloc(1, sizeof(*ws));
    if (!w || !ws)
        return -1;
    int rc = wf_arch_params(&cfg, ws, rm_collect, w) == WF_OK ? 0 : -1;
    snprintf(p, sizeof(p), "%s/model.safetensors", dir);
    if (rc == 0)
        rc = stw_write(p, w->t, w->n);
    for (int i = 0; i < w->n; i++)
        free((void *)w->t[i].data);
    free(w);
    free(ws);
    return rc;
}

static inline void rm_remove_model(const char *dir)
{
    const char *files[] = { "config.json", "wafer.json", "vocab.txt", "model.safetensors" };
    char p[1024];
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

#endif
