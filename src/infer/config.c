/* config.json loader for BERT and MobileBERT (see wafer/infer.h). */
#include "wafer/infer.h"
#include "infer/jsonutil.h"

#include <stdio.h>
#include <stdlib.h>

/* Bounds on a config: generous for any real BERT/MobileBERT, small enough
 * that sizes derived from them (weights, activations for max_position
 * tokens) cannot reach terabytes. */
#define CFG_MAX_FILE (1u << 20)
#define CFG_MAX_VOCAB 1000000
#define CFG_MAX_HIDDEN 8192
#define CFG_MAX_LAYERS 128
#define CFG_MAX_HEADS 256
#define CFG_MAX_INTERMEDIATE 65536
#define CFG_MAX_POSITIONS 32768
#define CFG_MAX_TYPES 1024
#define CFG_MAX_FFN 64
/* Estimated parameter count: 2^31 floats (8 GiB). */
#define CFG_MAX_PARAMS (1ull << 31)

#define fail wf_json_fail

int wf_model_config_true_hidden(const wf_model_config_t *cfg)
{
    if (cfg->arch == WF_ARCH_MOBILEBERT && cfg->use_bottleneck)
        return cfg->intra_bottleneck_size;
    return cfg->hidden_size;
}

static wf_status_t get_int(const char *path, json_t *root, const char *key, int def, int min, int max, int *out,
                           wf_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return WF_OK;
    }
    if (!json_is_integer(v))
        return fail(err, WF_ERR_FORMAT, path, "%s: not an integer", key);
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return fail(err, WF_ERR_LIMIT, path, "%s: %lld is outside [%d, %d]", key, (long long)x, min, max);
    *out = (int)x;
    return WF_OK;
}

static wf_status_t get_bool(const char *path, json_t *root, const char *key, bool def, bool *out, wf_err_t *err)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return WF_OK;
    }
    if (!json_is_boolean(v))
        return fail(err, WF_ERR_FORMAT, path, "%s: not true or false", key);
    *out = json_is_true(v);
    return WF_OK;
}

/* A string field, or NULL when absent; an error when present and not a string. */
static wf_status_t get_str(const char *path, json_t *root, const char *key, const char **out, wf_err_t *err)
{
    json_t *v = json_object_get(root, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return WF_OK;
    if (!json_is_string(v))
        return fail(err, WF_ERR_FORMAT, path, "%s: not a string", key);
    *out = json_string_value(v);
    return WF_OK;
}

#define TRY(x)                  \
    do {                        \
        wf_status_t s_ = (x);   \
        if (s_ != WF_OK) {      \
            json_decref(root);  \
            return s_;          \
        }                       \
    } while (0)

static wf_status_t parse_labels(const char *path, json_t *root, wf_model_config_t *cfg, wf_err_t *err)
{
    json_t *id2label = json_object_get(root, "id2label"), *label2id = json_object_get(root, "label2id");
    int num_labels; /* -1: not given */
    wf_status_t s = get_int(path, root, "num_labels", -1, 1, WF_MAX_LABELS, &num_labels, err);
    if (s != WF_OK)
        return s;
    if (!id2label || json_is_null(id2label)) {
        if (label2id && !json_is_null(label2id))
            return fail(err, WF_ERR_FORMAT, path, "label2id: given without id2label");
        cfg->num_labels = num_labels > 0 ? num_labels : 2;
        for (int i = 0; i < cfg->num_labels; i++)
            snprintf(cfg->id2label[i], sizeof cfg->id2label[i], "LABEL_%d", i);
        return WF_OK;
    }
    if (!json_is_object(id2label))
        return fail(err, WF_ERR_FORMAT, path, "id2label: not an object");
    size_t n = json_object_size(id2label);
    if (n < 1 || n > WF_MAX_LABELS)
        return fail(err, WF_ERR_LIMIT, path, "id2label: %zu labels (1 to %d supported)", n, WF_MAX_LABELS);
    if (num_labels > 0 && (size_t)num_labels != n)
        return fail(err, WF_ERR_FORMAT, path, "num_labels is %d but id2label has %zu labels", num_labels, n);
    bool seen[WF_MAX_LABELS] = { false };
    const char *key;
    json_t *v;
    json_object_foreach(id2label, key, v) {
        char qk[40];
        wf_json_quote_name(key, qk, sizeof qk);
        /* keys are decimal ids without sign or leading zeros */
        size_t kl = strlen(key);
        long id = -1;
        if (kl >= 1 && kl <= 2 && key[0] >= '0' && key[0] <= '9' && (kl == 1 || (key[0] != '0' && key[1] >= '0' &&
                                                                                  key[1] <= '9')))
            id = strtol(key, NULL, 10);
        if (id < 0 || (size_t)id >= n)
            return fail(err, WF_ERR_FORMAT, path, "id2label: key '%s' is not an id from 0 to %zu", qk, n - 1);
        if (!json_is_string(v))
            return fail(err, WF_ERR_FORMAT, path, "id2label.%s: not a string", qk);
        const char *label = json_string_value(v);
        size_t ll = strlen(label);
        if (ll == 0 || ll >= sizeof cfg->id2label[0] || ll != json_string_length(v))
            return fail(err, WF_ERR_FORMAT, path, "id2label.%s: label must be 1 to %zu bytes without NUL", qk,
                        sizeof cfg->id2label[0] - 1);
        seen[id] = true;
        memcpy(cfg->id2label[id], label, ll + 1);
    }
    cfg->num_labels = (int)n;
    for (size_t i = 0; i < n; i++) {
        if (!seen[i]) /* duplicates are rejected by the parser, so n keys cover 0..n-1 */
            return fail(err, WF_ERR_FORMAT, path, "id2label: id %zu is missing", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->id2label[i], cfg->id2label[j])) {
                char ql[40];
                wf_json_quote_name(cfg->id2label[i], ql, sizeof ql);
                return fail(err, WF_ERR_FORMAT, path, "id2label: label '%s' is used for ids %zu and %zu", ql, j, i);
            }
    }
    if (label2id && !json_is_null(label2id)) {
        if (!json_is_object(label2id))
            return fail(err, WF_ERR_FORMAT, path, "label2id: not an object");
        if (json_object_size(label2id) != n)
            return fail(err, WF_ERR_FORMAT, path, "label2id has %zu entries but id2label has %zu",
                        json_object_size(label2id), n);
        for (size_t i = 0; i < n; i++) {
            json_t *x = json_object_get(label2id, cfg->id2label[i]);
            if (!x || !json_is_integer(x) || json_integer_value(x) != (json_int_t)i) {
                char ql[40];
                wf_json_quote_name(cfg->id2label[i], ql, sizeof ql);
                return fail(err, WF_ERR_FORMAT, path, "label2id: '%s' does not map to %zu as in id2label", ql, i);
            }
        }
    }
    return WF_OK;
}

wf_status_t wf_model_config_load(const char *path, wf_model_config_t *cfg, wf_err_t *err)
{
    if (!path || !cfg)
        return fail(err, WF_ERR_INVALID, path, "no path or output");
    memset(cfg, 0, sizeof *cfg);
    json_t *root;
    wf_status_t s = wf_json_load_object(path, CFG_MAX_FILE, 16, &root, err);
    if (s != WF_OK)
        return s;

    const char *str;
    TRY(get_str(path, root, "model_type", &str, err));
    if (!str) {
        json_decref(root);
        return fail(err, WF_ERR_FORMAT, path, "model_type: missing (\"bert\" or \"mobilebert\")");
    }
    bool mobile;
    if (!strcmp(str, "bert")) {
        mobile = false;
    } else if (!strcmp(str, "mobilebert")) {
        mobile = true;
    } else {
        char q[40];
        wf_json_quote_name(str, q, sizeof q);
        json_decref(root);
        return fail(err, WF_ERR_UNSUPPORTED, path, "model_type: '%s' is not supported (bert, mobilebert)", q);
    }
    cfg->arch = mobile ? WF_ARCH_MOBILEBERT : WF_ARCH_BERT;

    /* transformers' defaults: BertConfig, MobileBertConfig */
    TRY(get_int(path, root, "vocab_size", 30522, 1, CFG_MAX_VOCAB, &cfg->vocab_size, err));
    TRY(get_int(path, root, "hidden_size", mobile ? 512 : 768, 1, CFG_MAX_HIDDEN, &cfg->hidden_size, err));
    TRY(get_int(path, root, "num_hidden_layers", mobile ? 24 : 12, 1, CFG_MAX_LAYERS, &cfg->num_hidden_layers, err));
    TRY(get_int(path, root, "num_attention_heads", mobile ? 4 : 12, 1, CFG_MAX_HEADS, &cfg->num_attention_heads,
                err));
    TRY(get_int(path, root, "intermediate_size", mobile ? 512 : 3072, 1, CFG_MAX_INTERMEDIATE,
                &cfg->intermediate_size, err));
    TRY(get_int(path, root, "max_position_embeddings", 512, 1, CFG_MAX_POSITIONS, &cfg->max_position_embeddings,
                err));
    TRY(get_int(path, root, "type_vocab_size", 2, 1, CFG_MAX_TYPES, &cfg->type_vocab_size, err));
    TRY(get_int(path, root, "pad_token_id", 0, 0, CFG_MAX_VOCAB, &cfg->pad_token_id, err));
    if (cfg->pad_token_id >= cfg->vocab_size) {
        json_decref(root);
        return fail(err, WF_ERR_FORMAT, path, "pad_token_id %d is not below vocab_size %d", cfg->pad_token_id,
                    cfg->vocab_size);
    }

    json_t *eps = json_object_get(root, "layer_norm_eps");
    cfg->layer_norm_eps = 1e-12f;
    if (eps && !json_is_null(eps)) {
        if (!json_is_number(eps) || !(json_number_value(eps) > 0) || !(json_number_value(eps) < 1)) {
            json_decref(root);
            return fail(err, WF_ERR_FORMAT, path, "layer_norm_eps: not a number in (0, 1)");
        }
        cfg->layer_norm_eps = (float)json_number_value(eps);
    }

    TRY(get_str(path, root, "hidden_act", &str, err));
    if (!str)
        str = mobile ? "relu" : "gelu";
    static const struct {
        const char *name;
        wf_act_t act;
    } acts[] = {
        { "gelu", WF_ACT_GELU }, { "gelu_new", WF_ACT_GELU_NEW }, { "gelu_pytorch_tanh", WF_ACT_GELU_NEW },
        { "relu", WF_ACT_RELU }, { "tanh", WF_ACT_TANH },
    };
    size_t ai;
    for (ai = 0; ai < WF_ARRAY_LEN(acts); ai++)
        if (!strcmp(str, acts[ai].name))
            break;
    if (ai == WF_ARRAY_LEN(acts)) {
        char q[40];
        wf_json_quote_name(str, q, sizeof q);
        json_decref(root);
        return fail(err, WF_ERR_UNSUPPORTED, path, "hidden_act: '%s' is not supported (gelu, gelu_new, relu, tanh)",
                    q);
    }
    cfg->hidden_act = acts[ai].act;

    /* Options that change the computation and that we do not implement. */
    TRY(get_str(path, root, "position_embedding_type", &str, err));
    if (str && strcmp(str, "absolute")) {
        json_decref(root);
        return fail(err, WF_ERR_UNSUPPORTED, path, "position_embedding_type: only \"absolute\" is supported");
    }
    bool flag = false;
    TRY(get_bool(path, root, "is_decoder", false, &flag, err));
    if (flag) {
        json_decref(root);
        return fail(err, WF_ERR_UNSUPPORTED, path, "is_decoder: decoders are not supported");
    }
    TRY(get_str(path, root, "problem_type", &str, err));
    if (str && strcmp(str, "single_label_classification")) {
        json_decref(root);
        return fail(err, WF_ERR_UNSUPPORTED, path,
                    "problem_type: only \"single_label_classification\" (softmax) is supported");
    }

    if (mobile) {
        TRY(get_int(path, root, "embedding_size", 128, 1, CFG_MAX_HIDDEN, &cfg->embedding_size, err));
        TRY(get_bool(path, root, "trigram_input", true, &cfg->trigram_input, err));
        TRY(get_bool(path, root, "use_bottleneck", true, &cfg->use_bottleneck, err));
        TRY(get_int(path, root, "intra_bottleneck_size", 128, 1, CFG_MAX_HIDDEN, &cfg->intra_bottleneck_size, err));
        TRY(get_bool(path, root, "use_bottleneck_attention", false, &cfg->use_bottleneck_attention, err));
        TRY(get_bool(path, root, "key_query_shared_bottleneck", true, &cfg->key_query_shared_bottleneck, err));
        TRY(get_int(path, root, "num_feedforward_networks", 4, 1, CFG_MAX_FFN, &cfg->num_feedforward_networks, err));
        TRY(get_bool(path, root, "classifier_activation", true, &cfg->classifier_activation, err));
        TRY(get_str(path, root, "normalization_type", &str, err));
        if (!str || !strcmp(str, "no_norm")) {
            cfg->normalization_type = WF_NORM_NONORM;
        } else if (!strcmp(str, "layer_norm")) {
            cfg->normalization_type = WF_NORM_LAYER_NORM;
        } else {
            json_decref(root);
            return fail(err, WF_ERR_UNSUPPORTED, path, "normalization_type: must be \"no_norm\" or \"layer_norm\"");
        }
        /* transformers saves the derived true_hidden_size; it must agree */
        int th;
        TRY(get_int(path, root, "true_hidden_size", wf_model_config_true_hidden(cfg), 1, CFG_MAX_HIDDEN, &th, err));
        if (th != wf_model_config_true_hidden(cfg)) {
            json_decref(root);
            return fail(err, WF_ERR_FORMAT, path, "true_hidden_size %d disagrees with %s (%d)", th,
                        cfg->use_bottleneck ? "intra_bottleneck_size" : "hidden_size",
                        wf_model_config_true_hidden(cfg));
        }
    } else {
        cfg->embedding_size = cfg->hidden_size;
        cfg->trigram_input = false;
        cfg->use_bottleneck = false;
        cfg->intra_bottleneck_size = cfg->hidden_size;
        cfg->use_bottleneck_attention = false;
        cfg->key_query_shared_bottleneck = false;
        cfg->num_feedforward_networks = 1;
        cfg->normalization_type = WF_NORM_LAYER_NORM;
        cfg->classifier_activation = true;
    }

    int th = wf_model_config_true_hidden(cfg);
    if (th % cfg->num_attention_heads) {
        json_decref(root);
        return fail(err, WF_ERR_FORMAT, path, "%s %d is not a multiple of num_attention_heads %d",
                    mobile && cfg->use_bottleneck ? "intra_bottleneck_size" : "hidden_size", th,
                    cfg->num_attention_heads);
    }

    /* A rough upper estimate of the weights, to refuse configs no machine can hold. */
    uint64_t h = (uint64_t)cfg->hidden_size, e = (uint64_t)cfg->embedding_size, in = (uint64_t)cfg->intermediate_size;
    uint64_t per_layer = 4 * h * h + 2 * h * in * (uint64_t)cfg->num_feedforward_networks + 16 * h;
    uint64_t params = (uint64_t)cfg->vocab_size * e + (uint64_t)(cfg->max_position_embeddings + cfg->type_vocab_size) * h +
                      3 * e * h + per_layer * (uint64_t)cfg->num_hidden_layers + h * h;
    if (params > CFG_MAX_PARAMS) {
        json_decref(root);
        return fail(err, WF_ERR_LIMIT, path, "sizes imply about %llu parameters, more than the limit of %llu",
                    (unsigned long long)params, (unsigned long long)CFG_MAX_PARAMS);
    }

    s = parse_labels(path, root, cfg, err);
    json_decref(root);
    return s;
}
