/* Model directories: config.json + wafer.json + vocab.txt + model.safetensors,
 * with every tensor the architecture reads checked before anything runs. */
#include "infer/arch.h"
#include "infer/err.h"

#include <stdio.h>
#include <stdlib.h>

struct wf_model {
    wf_model_config_t cfg;
    wf_model_meta_t meta;
    wf_tokenizer_t *tok;
    wf_safetensors_t *st;
    wf_weights_t w;
};

typedef struct {
    const wf_safetensors_t *st;
    const char *path;
    wf_err_t *err;
} check_t;

static void shape_str(char *out, size_t cap, int ndim, const int64_t *shape)
{
    size_t n = 0;
    n += snprintf(out + n, cap - n, "(");
    for (int i = 0; i < ndim && n < cap; i++)
        n += snprintf(out + n, cap - n, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (n < cap)
        snprintf(out + n, cap - n, ")");
}

static wf_status_t check_param(void *ctx, wf_param_t *p, const char *name, int ndim, const int64_t *shape)
{
    check_t *c = ctx;
    wf_err_t *err = c->err;
    const wf_tensor_t *t = wf_st_find(c->st, name);
    if (!t)
        ERR(WF_ERR_FORMAT, "%s: missing tensor %s", c->path, name);
    if (t->dtype != WF_DT_F32 && t->dtype != WF_DT_F16 && t->dtype != WF_DT_BF16)
        ERR(WF_ERR_UNSUPPORTED, "%s: tensor %s has dtype %s, expected F32, F16 or BF16", c->path, name,
            wf_dtype_name(t->dtype));
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (!ok) {
        char want[64], got[160];
        shape_str(want, sizeof(want), ndim, shape);
        shape_str(got, sizeof(got), t->ndim, t->shape);
        ERR(WF_ERR_FORMAT, "%s: tensor %s has shape %s, expected %s from config.json", c->path, name, got, want);
    }
    p->t = t;
    p->f = NULL;
    return WF_OK;
}

static wf_status_t join(char *out, size_t cap, const char *dir, const char *file, wf_err_t *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, file);
    if (n < 0 || (size_t)n >= cap)
        ERR(WF_ERR_INVALID, "model directory path too long");
    return WF_OK;
}

wf_status_t wf_model_load(const char *dir, wf_model_t **out, wf_err_t *err)
{
    *out = NULL;
    if (!dir)
        ERR(WF_ERR_INVALID, "no model directory given");
    wf_model_t *m = calloc(1, sizeof(*m));
    if (!m)
        ERR(WF_ERR_NOMEM, "out of memory");
    char path[4096];
    wf_status_t s;
    wf_arch_dims_t d;

    if ((s = join(path, sizeof(path), dir, "config.json", err)) != WF_OK ||
        (s = wf_model_config_load(path, &m->cfg, err)) != WF_OK)
        goto fail;
    if ((s = wf_arch_dims(&m->cfg, &d, err)) != WF_OK) {
        char tmp[sizeof(err->msg)];
        if (err) {
            snprintf(tmp, sizeof(tmp), "%.300s: %.200s", path, err->msg);
            memcpy(err->msg, tmp, sizeof(tmp));
        }
        goto fail;
    }
    if ((s = join(path, sizeof(path), dir, "wafer.json", err)) != WF_OK ||
        (s = wf_model_meta_load(path, &m->cfg, &m->meta, err)) != WF_OK)
        goto fail;
    if (m->meta.num_labels != m->cfg.num_labels) {
        if (err)
            snprintf(err->msg, sizeof(err->msg), "%.300s: %d labels, but config.json has num_labels %d", path,
                     m->meta.num_labels, m->cfg.num_labels);
        s = WF_ERR_FORMAT;
        goto fail;
    }
    if (m->meta.max_len < 2 || m->meta.max_len > m->cfg.max_position_embeddings) {
        if (err)
            snprintf(err->msg, sizeof(err->msg), "%.300s: max_len %d out of range 2..%d (max_position_embeddings)",
                     path, m->meta.max_len, m->cfg.max_position_embeddings);
        s = WF_ERR_FORMAT;
        goto fail;
    }

    if (m->meta.tok.kind == WF_TOK_WORDPIECE) {
        if ((s = join(path, sizeof(path), dir, "vocab.txt", err)) != WF_OK ||
            (s = wf_tokenizer_load(path, &m->meta.tok, &m->tok, err)) != WF_OK)
            goto fail;
    } else if ((s = wf_tokenizer_load(NULL, &m->meta.tok, &m->tok, err)) != WF_OK) {
        goto fail;
    }
    if (wf_tokenizer_vocab_size(m->tok) > m->cfg.vocab_size) {
        if (err)
            snprintf(err->msg, sizeof(err->msg), "%.300s: tokenizer has %d ids, but config.json has vocab_size %d",
                     dir, wf_tokenizer_vocab_size(m->tok), m->cfg.vocab_size);
        s = WF_ERR_FORMAT;
        goto fail;
    }

    if ((s = join(path, sizeof(path), dir, "model.safetensors", err)) != WF_OK ||
        (s = wf_st_open(path, &m->st, err)) != WF_OK)
        goto fail;
    check_t c = { m->st, path, err };
    if ((s = wf_arch_params(&m->cfg, &m->w, check_param, &c)) != WF_OK)
        goto fail;
    *out = m;
    return WF_OK;
fail:
    wf_model_free(m);
    return s;
}

void wf_model_free(wf_model_t *m)
{
    if (!m)
        return;
    if (m->tok)
        wf_tokenizer_free(m->tok);
    if (m->st)
        wf_st_close(m->st);
    free(m);
}

const wf_model_config_t *wf_model_get_config(const wf_model_t *m) { return &m->cfg; }
const wf_model_meta_t *wf_model_get_meta(const wf_model_t *m) { return &m->meta; }
const wf_tokenizer_t *wf_model_get_tokenizer(const wf_model_t *m) { return m->tok; }
const wf_safetensors_t *wf_model_get_weights(const wf_model_t *m) { return m->st; }
const wf_weights_t *wf_model_get_weights_refs(const wf_model_t *m) { return &m->w; }
