/* BERT and MobileBERT parameter tables, mirroring transformers'
 * modeling_bert.py and modeling_mobilebert.py (module names = tensor names). */
#include "infer/arch.h"
#include "infer/err.h"

#include <stdio.h>

static bool dim_ok(int v) { return v > 0 && v <= WF_ARCH_MAX_DIM; }

wf_status_t wf_arch_dims(const wf_model_config_t *cfg, wf_arch_dims_t *d, wf_err_t *err)
{
    memset(d, 0, sizeof(*d));
    bool mb = cfg->arch == WF_ARCH_MOBILEBERT;
    if (!dim_ok(cfg->hidden_size))
        ERR(WF_ERR_FORMAT, "config: hidden_size %d out of range 1..%d", cfg->hidden_size, WF_ARCH_MAX_DIM);
    if (!dim_ok(cfg->intermediate_size))
        ERR(WF_ERR_FORMAT, "config: intermediate_size %d out of range 1..%d", cfg->intermediate_size, WF_ARCH_MAX_DIM);
    if (cfg->num_hidden_layers < 1 || cfg->num_hidden_layers > WF_ARCH_MAX_LAYERS)
        ERR(WF_ERR_UNSUPPORTED, "config: num_hidden_layers %d out of range 1..%d", cfg->num_hidden_layers,
            WF_ARCH_MAX_LAYERS);
    if (cfg->vocab_size < 1 || cfg->vocab_size > (1 << 24))
        ERR(WF_ERR_FORMAT, "config: vocab_size %d out of range", cfg->vocab_size);
    if (cfg->max_position_embeddings < 2 || cfg->max_position_embeddings > 65536)
        ERR(WF_ERR_FORMAT, "config: max_position_embeddings %d out of range 2..65536", cfg->max_position_embeddings);
    if (cfg->type_vocab_size < 1 || cfg->type_vocab_size > 1024)
        ERR(WF_ERR_FORMAT, "config: type_vocab_size %d out of range 1..1024", cfg->type_vocab_size);
    if (cfg->num_labels < 1 || cfg->num_labels > WF_MAX_LABELS)
        ERR(WF_ERR_UNSUPPORTED, "config: num_labels %d out of range 1..%d", cfg->num_labels, WF_MAX_LABELS);
    if (!(cfg->layer_norm_eps >= 0.0f && cfg->layer_norm_eps < 1.0f))
        ERR(WF_ERR_FORMAT, "config: layer_norm_eps out of range");
    if (cfg->hidden_act != WF_ACT_GELU && cfg->hidden_act != WF_ACT_GELU_NEW && cfg->hidden_act != WF_ACT_RELU &&
        cfg->hidden_act != WF_ACT_TANH)
        ERR(WF_ERR_UNSUPPORTED, "config: hidden_act not supported");

    d->hidden = cfg->hidden_size;
    d->inter = cfg->intermediate_size;
    d->eps = cfg->layer_norm_eps;
    d->emb_eps = cfg->layer_norm_eps;
    d->out_eps = cfg->layer_norm_eps;
    d->norm = WF_NORM_LAYER_NORM;
    d->has_pooler = true;
    d->true_hidden = cfg->hidden_size;
    if (mb) {
        if (!dim_ok(cfg->embedding_size))
            ERR(WF_ERR_FORMAT, "config: embedding_size %d out of range", cfg->embedding_size);
        if (cfg->num_feedforward_networks < 1 || cfg->num_feedforward_networks > WF_ARCH_MAX_FFN + 1)
            ERR(WF_ERR_UNSUPPORTED, "config: num_feedforward_networks %d out of range 1..%d",
                cfg->num_feedforward_networks, WF_ARCH_MAX_FFN + 1);
        d->norm = cfg->normalization_type;
        d->bottleneck = cfg->use_bottleneck;
        if (d->bottleneck) {
            if (!dim_ok(cfg->intra_bottleneck_size))
                ERR(WF_ERR_FORMAT, "config: intra_bottleneck_size %d out of range", cfg->intra_bottleneck_size);
            d->true_hidden = cfg->intra_bottleneck_size;
            d->bn_attention = cfg->use_bottleneck_attention;
            d->kq_shared = !d->bn_attention && cfg->key_query_shared_bottleneck;
            /* Otherwise query/key take the hidden state but are sized for the bottleneck:
             * transformers itself only runs that when both widths agree. */
            if (!d->bn_attention && !d->kq_shared && d->true_hidden != d->hidden)
                ERR(WF_ERR_UNSUPPORTED,
                    "config: use_bottleneck without use_bottleneck_attention or key_query_shared_bottleneck "
                    "needs intra_bottleneck_size (%d) == hidden_size (%d)", d->true_hidden, d->hidden);
        }
        d->nffn = cfg->num_feedforward_networks - 1;
        if (cfg->trigram_input)
            d->emb_in = 3 * cfg->embedding_size;
        else if (cfg->embedding_size != cfg->hidden_size)
            d->emb_in = cfg->embedding_size;
        d->has_pooler = cfg->classifier_activation;
        /* MobileBertEmbeddings and MobileBertOutput build their norm without eps=. */
        d->emb_eps = 1e-5f;
        d->out_eps = 1e-5f;
    }
    if (cfg->num_attention_heads < 1 || d->true_hidden % cfg->num_attention_heads != 0)
        ERR(WF_ERR_FORMAT, "config: num_attention_heads %d does not divide the attention width %d",
            cfg->num_attention_heads, d->true_hidden);
    d->heads = cfg->num_attention_heads;
    d->head_dim = d->true_hidden / d->heads;
    return WF_OK;
}

typedef struct {
    const wf_model_config_t *cfg;
    wf_param_fn fn;
    void *ctx;
    char name[160];
} walk_t;

static wf_status_t one(walk_t *k, wf_param_t *p, const char *name, int64_t d0, int64_t d1)
{
    int64_t shape[2] = { d0, d1 };
    return k->fn(k->ctx, p, name, d1 ? 2 : 1, shape);
}

/* `base` + ".weight"/".bias" for a Linear(in -> out). */
static wf_status_t lin(walk_t *k, wf_lin_params_t *l, const char *base, int64_t out, int64_t in)
{
    char n[200];
    snprintf(n, sizeof(n), "%s.weight", base);
    wf_status_t s = one(k, &l->w, n, out, in);
    if (s != WF_OK)
        return s;
    snprintf(n, sizeof(n), "%s.bias", base);
    return one(k, &l->b, n, out, 0);
}

static wf_status_t norm(walk_t *k, wf_norm_params_t *l, const char *base, int64_t dim)
{
    char n[200];
    snprintf(n, sizeof(n), "%s.weight", base);
    wf_status_t s = one(k, &l->w, n, dim, 0);
    if (s != WF_OK)
        return s;
    snprintf(n, sizeof(n), "%s.bias", base);
    return one(k, &l->b, n, dim, 0);
}

#define TRY(x)                                                                         \
    do {                                                                               \
        wf_status_t s_ = (x);                                                          \
        if (s_ != WF_OK)                                                               \
            return s_;                                                                 \
    } while (0)

wf_status_t wf_arch_params(const wf_model_config_t *cfg, wf_weights_t *w, wf_param_fn fn, void *ctx)
{
    wf_arch_dims_t d;
    TRY(wf_arch_dims(cfg, &d, NULL));
    walk_t k = { cfg, fn, ctx, { 0 } };
    bool mb = cfg->arch == WF_ARCH_MOBILEBERT;
    const char *pre = mb ? "mobilebert" : "bert";
    int64_t H = d.hidden, I = d.true_hidden, F = d.inter;
    char b[160];

#define NAME(...) (snprintf(b, sizeof(b), __VA_ARGS__), b)
    TRY(one(&k, &w->word_emb, NAME("%s.embeddings.word_embeddings.weight", pre), cfg->vocab_size,
            mb ? cfg->embedding_size : H));
    TRY(one(&k, &w->pos_emb, NAME("%s.embeddings.position_embeddings.weight", pre), cfg->max_position_embeddings, H));
    TRY(one(&k, &w->type_emb, NAME("%s.embeddings.token_type_embeddings.weight", pre), cfg->type_vocab_size, H));
    if (d.emb_in)
        TRY(lin(&k, &w->emb_transform, NAME("%s.embeddings.embedding_transformation", pre), H, d.emb_in));
    TRY(norm(&k, &w->emb_norm, NAME("%s.embeddings.LayerNorm", pre), H));

    for (int i = 0; i < cfg->num_hidden_layers; i++) {
        wf_layer_params_t *L = &w->layers[i];
        char p[96];
        snprintf(p, sizeof(p), "%s.encoder.layer.%d", pre, i);
        if (d.bottleneck) {
            TRY(lin(&k, &L->bn_input, NAME("%s.bottleneck.input.dense", p), I, H));
            TRY(norm(&k, &L->bn_input_norm, NAME("%s.bottleneck.input.LayerNorm", p), I));
            /* transformers builds bottleneck.attention whenever key_query_shared_bottleneck is set */
            if (cfg->key_query_shared_bottleneck) {
                TRY(lin(&k, &L->bn_attention, NAME("%s.bottleneck.attention.dense", p), I, H));
                TRY(norm(&k, &L->bn_attention_norm, NAME("%s.bottleneck.attention.LayerNorm", p), I));
            }
        }
        TRY(lin(&k, &L->q, NAME("%s.attention.self.query", p), I, I));
        TRY(lin(&k, &L->k, NAME("%s.attention.self.key", p), I, I));
        TRY(lin(&k, &L->v, NAME("%s.attention.self.value", p), I, (mb && d.bn_attention) ? I : H));
        TRY(lin(&k, &L->attn_out, NAME("%s.attention.output.dense", p), I, I));
        TRY(norm(&k, &L->attn_norm, NAME("%s.attention.output.LayerNorm", p), I));
        for (int j = 0; j < d.nffn; j++) {
            TRY(lin(&k, &L->ffn_inter[j], NAME("%s.ffn.%d.intermediate.dense", p, j), F, I));
            TRY(lin(&k, &L->ffn_out[j], NAME("%s.ffn.%d.output.dense", p, j), I, F));
            TRY(norm(&k, &L->ffn_norm[j], NAME("%s.ffn.%d.output.LayerNorm", p, j), I));
        }
        TRY(lin(&k, &L->inter, NAME("%s.intermediate.dense", p), F, I));
        TRY(lin(&k, &L->out, NAME("%s.output.dense", p), I, F));
        TRY(norm(&k, &L->out_norm, NAME("%s.output.LayerNorm", p), I));
        if (d.bottleneck) {
            TRY(lin(&k, &L->out_bn, NAME("%s.output.bottleneck.dense", p), H, I));
            TRY(norm(&k, &L->out_bn_norm, NAME("%s.output.bottleneck.LayerNorm", p), H));
        }
    }
    if (d.has_pooler)
        TRY(lin(&k, &w->pooler, NAME("%s.pooler.dense", pre), H, H));
    TRY(lin(&k, &w->classifier, "classifier", cfg->num_labels, H));
#undef NAME
    return WF_OK;
}
