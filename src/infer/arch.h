/*
 * Architectures (internal): the tensors BERT and MobileBERT sequence
 * classifiers need, with transformers' names and shapes, and where the
 * backends find them.
 *
 * One walker, wf_arch_params(), enumerates every parameter of a config in a
 * fixed order with its name and expected shape. The model loader uses it to
 * look up and check the tensors of model.safetensors; a backend uses it on
 * its own copy of wf_weights_t to convert them. Both see the same list, so a
 * tensor the forward pass reads is always one the loader checked.
 */
#ifndef WAFER_INFER_ARCH_H
#define WAFER_INFER_ARCH_H

#include "wafer/infer.h"

#define WF_ARCH_MAX_LAYERS 64
#define WF_ARCH_MAX_FFN 8
#define WF_ARCH_MAX_DIM 16384

/* One parameter: the checked tensor (model) and, in a backend's copy, the
 * float32 data the backend computes with. */
typedef struct {
    const wf_tensor_t *t;
    const float *f;
} wf_param_t;

typedef struct { wf_param_t w, b; } wf_lin_params_t;  /* w (out, in), b (out) */
typedef struct { wf_param_t w, b; } wf_norm_params_t; /* (dim) */

typedef struct {
    /* MobileBERT bottlenecks (use_bottleneck) */
    wf_lin_params_t bn_input, bn_attention;
    wf_norm_params_t bn_input_norm, bn_attention_norm;
    /* self-attention */
    wf_lin_params_t q, k, v, attn_out;
    wf_norm_params_t attn_norm;
    /* extra feed-forward blocks (MobileBERT num_feedforward_networks - 1) */
    wf_lin_params_t ffn_inter[WF_ARCH_MAX_FFN], ffn_out[WF_ARCH_MAX_FFN];
    wf_norm_params_t ffn_norm[WF_ARCH_MAX_FFN];
    /* main feed-forward block */
    wf_lin_params_t inter, out;
    wf_norm_params_t out_norm;
    /* MobileBERT output bottleneck (use_bottleneck) */
    wf_lin_params_t out_bn;
    wf_norm_params_t out_bn_norm;
} wf_layer_params_t;

typedef struct {
    wf_param_t word_emb, pos_emb, type_emb;
    wf_lin_params_t emb_transform; /* MobileBERT (trigram or embedding_size != hidden_size) */
    wf_norm_params_t emb_norm;
    wf_layer_params_t layers[WF_ARCH_MAX_LAYERS];
    wf_lin_params_t pooler; /* absent for MobileBERT without classifier_activation */
    wf_lin_params_t classifier;
} wf_weights_t;

/* Derived sizes and switches of a config, as the forward pass uses them. */
typedef struct {
    int hidden;       /* H: the residual stream */
    int true_hidden;  /* I: attention/FFN width (MobileBERT intra_bottleneck_size, else H) */
    int emb_in;       /* width of the embedding transformation's input (E or 3E), 0 if none */
    int heads, head_dim;
    int inter;        /* F */
    int nffn;         /* extra FFN blocks */
    bool bottleneck;  /* MobileBERT use_bottleneck */
    bool kq_shared;   /* q/k from the attention bottleneck, v from the hidden state */
    bool bn_attention;/* q/k/v all from the input bottleneck */
    bool has_pooler;
    wf_norm_t norm;   /* encoder norm type */
    float eps;        /* config layer_norm_eps */
    float emb_eps;    /* embeddings norm eps (MobileBERT: nn.LayerNorm's default 1e-5) */
    float out_eps;    /* main FFN output norm eps (MobileBERT: 1e-5) */
} wf_arch_dims_t;

/* Validates a config's sizes and combination of switches and derives dims.
 * WF_ERR_FORMAT/UNSUPPORTED with a message naming the key on failure. */
wf_status_t wf_arch_dims(const wf_model_config_t *cfg, wf_arch_dims_t *d, wf_err_t *err);

/* Called for each parameter: its slot in `w`, its name and expected shape
 * (ndim 1 or 2). A non-OK return stops the walk and is returned. */
typedef wf_status_t (*wf_param_fn)(void *ctx, wf_param_t *p, const char *name, int ndim, const int64_t *shape);
wf_status_t wf_arch_params(const wf_model_config_t *cfg, wf_weights_t *w, wf_param_fn fn, void *ctx);

/* Model internals shared with the backends. */
const wf_weights_t *wf_model_get_weights_refs(const wf_model_t *m);

#endif
