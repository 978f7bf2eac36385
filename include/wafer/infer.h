/*
 * wafer inference: model directories, tokenizers and a backend-neutral API.
 *
 * A model is a directory in the Hugging Face layout:
 *   config.json        architecture and sizes (BertConfig / MobileBertConfig keys)
 *   model.safetensors  weights (F32, F16 or BF16), names as in transformers
 *   vocab.txt          WordPiece vocabulary, one token per line
 *   wafer.json         labels, per-class thresholds, tokenizer settings,
 *                      maximum sequence length, which inspection units it reads
 *
 * Error convention: every call returns wf_status_t; where a message helps,
 * the call also fills a caller-provided wf_err_t with file, position and reason.
 */
#ifndef WAFER_INFER_H
#define WAFER_INFER_H

#include "wafer/common.h"
#include <stdbool.h>

typedef enum {
    WF_OK = 0,
    WF_ERR_IO,          /* cannot open/read/map a file */
    WF_ERR_FORMAT,      /* file contents invalid (corrupt, hostile, inconsistent) */
    WF_ERR_UNSUPPORTED, /* valid but not supported (architecture, dtype, option) */
    WF_ERR_NOMEM,
    WF_ERR_INVALID,     /* bad argument */
    WF_ERR_LIMIT,       /* over a configured size (batch, length, tokens) */
    WF_ERR_BACKEND,     /* backend failure (device error, no device) */
} wf_status_t;

const char *wf_status_str(wf_status_t s);

typedef struct {
    char msg[512];
} wf_err_t;

/* ---------------------------------------------------------------- safetensors */

typedef enum { WF_DT_F32, WF_DT_F16, WF_DT_BF16, WF_DT_I64, WF_DT_I32, WF_DT_U8, WF_DT__COUNT } wf_dtype_t;

const char *wf_dtype_name(wf_dtype_t t);
size_t wf_dtype_size(wf_dtype_t t);

#define WF_TENSOR_MAX_DIMS 8

typedef struct {
    const char *name;
    wf_dtype_t dtype;
    int ndim;
    int64_t shape[WF_TENSOR_MAX_DIMS];
    int64_t numel;
    const void *data; /* points into the mapped file; may be unaligned */
    size_t nbytes;
} wf_tensor_t;

typedef struct wf_safetensors wf_safetensors_t;

/* Maps and validates a .safetensors file: header length, JSON syntax and
 * size, dtypes, shapes, that offsets are in bounds, ordered, non-overlapping
 * and cover the data section exactly, and that byte sizes match shapes. */
wf_status_t wf_st_open(const char *path, wf_safetensors_t **out, wf_err_t *err);
/* Same over a caller-owned buffer (kept alive by the caller); for tests and fuzzing. */
wf_status_t wf_st_open_mem(const void *buf, size_t len, const char *name, wf_safetensors_t **out, wf_err_t *err);
void wf_st_close(wf_safetensors_t *st);
size_t wf_st_count(const wf_safetensors_t *st);
const wf_tensor_t *wf_st_at(const wf_safetensors_t *st, size_t i);
const wf_tensor_t *wf_st_find(const wf_safetensors_t *st, const char *name);
/* Copies a tensor into float32 (converting F16/BF16). `n` must equal numel. */
wf_status_t wf_tensor_to_f32(const wf_tensor_t *t, float *out, size_t n);
/* wf_st_at() orders tensors by their place in the data section; wf_st_find()
 * is a binary search by name. Integer dtypes convert to the nearest float. */

/* Value of a "__metadata__" entry of the header, or NULL. */
const char *wf_st_metadata(const wf_safetensors_t *st, const char *key);
/* Exact conversions of one IEEE half / bfloat16 value (subnormals, inf, NaN). */
float wf_f16_to_f32(uint16_t h);
float wf_bf16_to_f32(uint16_t h);

/* ---------------------------------------------------------------- config */

typedef enum { WF_ARCH_BERT, WF_ARCH_MOBILEBERT } wf_arch_t;
typedef enum { WF_ACT_GELU, WF_ACT_GELU_NEW, WF_ACT_RELU, WF_ACT_TANH } wf_act_t;
typedef enum { WF_NORM_LAYER_NORM, WF_NORM_NONORM } wf_norm_t;

#define WF_MAX_LABELS 32

typedef struct {
    wf_arch_t arch;
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;
    int type_vocab_size;
    float layer_norm_eps;
    wf_act_t hidden_act;
    int pad_token_id;
    /* MobileBERT (ignored for BERT) */
    int embedding_size;
    bool trigram_input;
    bool use_bottleneck;
    int intra_bottleneck_size;
    bool use_bottleneck_attention;
    bool key_query_shared_bottleneck;
    int num_feedforward_networks;
    wf_norm_t normalization_type;
    bool classifier_activation;
    /* classification head */
    int num_labels;
    char id2label[WF_MAX_LABELS][32];
} wf_model_config_t;

/* Parses a transformers config.json (model_type "bert" or "mobilebert").
 * Keys that are absent take transformers' BertConfig / MobileBertConfig
 * defaults (num_labels 2 with LABEL_0, LABEL_1 when neither id2label nor
 * num_labels is given). For "bert" the MobileBERT fields are set to what
 * describes plain BERT: embedding_size = hidden_size, no trigram input, no
 * bottleneck, one feed-forward network, layer_norm, classifier_activation.
 * Sizes are bounded (see src/infer/config.c) so that a hostile config cannot
 * make a loader allocate without limit. */
wf_status_t wf_model_config_load(const char *path, wf_model_config_t *cfg, wf_err_t *err);
/* MobileBERT's inner width: intra_bottleneck_size with a bottleneck,
 * hidden_size without (transformers' config.true_hidden_size); hidden_size
 * for BERT. */
int wf_model_config_true_hidden(const wf_model_config_t *cfg);

/* ---------------------------------------------------------------- tokenizers */

typedef enum { WF_TOK_WORDPIECE, WF_TOK_BYTES } wf_tok_kind_t;

typedef struct {
    wf_tok_kind_t kind;
    bool lowercase;          /* BERT do_lower_case */
    int strip_accents;       /* -1: follow lowercase (BERT's default), 0: no, 1: yes */
    bool tokenize_chinese_chars;
    int max_input_chars_per_word; /* WordPiece: longer words become [UNK] (100) */
} wf_tok_opts_t;

typedef struct wf_tokenizer wf_tokenizer_t;

/* WordPiece ids equal Hugging Face's BertTokenizerFast for the same vocab.txt
 * and options (docs/model-format.md, "Tokenizer"); "[CLS]" etc. written in
 * the text are those special tokens, as there; invalid UTF-8 bytes are
 * dropped. vocab.txt: one token per line, id = line number, a duplicate's
 * last line wins, [PAD] [UNK] [CLS] [SEP] required; errors name file:line.
 * max_input_chars_per_word: 1 to 1024. wf_tokenizer_vocab_size() is the
 * number of lines (261 for bytes). encode/tokenize allocate nothing. */

/* WordPiece from vocab.txt (BertTokenizer semantics); bytes: ids are
 * byte value + 5 after [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, vocab_path may be NULL. */
wf_status_t wf_tokenizer_load(const char *vocab_path, const wf_tok_opts_t *opts, wf_tokenizer_t **out, wf_err_t *err);
void wf_tokenizer_free(wf_tokenizer_t *t);
int wf_tokenizer_vocab_size(const wf_tokenizer_t *t);
/* Id of a token in the vocabulary, or -1. */
int32_t wf_tokenizer_token_id(const wf_tokenizer_t *t, const char *token);
/* Encodes text as [CLS] tokens [SEP], truncated to max_len ids (max_len >= 2)
 * as BertTokenizer(truncation=True, max_length=max_len) does. Writes at most
 * max_len ids; returns how many, or a negative wf_status_t. Thread-safe. */
int wf_tokenizer_encode(const wf_tokenizer_t *t, const char *text, size_t len, int32_t *ids, int max_len);
/* Token ids without [CLS]/[SEP] and without truncation beyond `cap`; returns
 * the full count (may exceed cap: only cap written). For tests and tools. */
int wf_tokenizer_tokenize(const wf_tokenizer_t *t, const char *text, size_t len, int32_t *ids, int cap);

/* ---------------------------------------------------------------- model */

typedef struct {
    int num_labels;
    char labels[WF_MAX_LABELS][32];   /* labels[0] is the benign class */
    float thresholds[WF_MAX_LABELS];  /* per-class probability threshold for "attack" */
    int max_len;                      /* max sequence length in tokens (with [CLS]/[SEP]) */
    wf_tok_opts_t tok;
    char units[16][32];               /* inspection unit kinds this model reads */
    int nunits;
    char text_format[32];             /* how unit text is built (versioned, e.g. "wafer-unit-v1") */
    char name[64];                    /* model id, as reported in events */
} wf_model_meta_t;

/* Parses wafer.json (format: docs/model-format.md). cfg, when not NULL, is
 * the model's config: labels must then equal its id2label in order and
 * count, and max_len must fit max_position_embeddings. Errors name the file
 * and the field. */
wf_status_t wf_model_meta_load(const char *path, const wf_model_config_t *cfg, wf_model_meta_t *meta, wf_err_t *err);

typedef struct wf_model wf_model_t;

/* Loads a model directory: config.json, wafer.json, vocab.txt (if the
 * tokenizer needs it) and model.safetensors, checking every tensor the
 * architecture needs for presence, dtype and shape. */
wf_status_t wf_model_load(const char *dir, wf_model_t **out, wf_err_t *err);
void wf_model_free(wf_model_t *m);
const wf_model_config_t *wf_model_get_config(const wf_model_t *m);
const wf_model_meta_t *wf_model_get_meta(const wf_model_t *m);
const wf_tokenizer_t *wf_model_get_tokenizer(const wf_model_t *m);
const wf_safetensors_t *wf_model_get_weights(const wf_model_t *m);

/* ---------------------------------------------------------------- sessions (backend-neutral) */

typedef struct {
    const char *backend; /* "cpu", "cuda", or "auto" */
    int threads;         /* CPU threads for one run; 0 = 1 */
    int max_batch;       /* most sequences in one run */
    int max_tokens;      /* most tokens (sum of lengths) in one run */
} wf_session_opts_t;

typedef struct wf_session wf_session_t;

/* Creates a session: converts/uploads weights and sizes all activation
 * memory once for max_batch/max_tokens; nothing is allocated per run. */
wf_status_t wf_session_new(const wf_model_t *m, const wf_session_opts_t *opts, wf_session_t **out, wf_err_t *err);
void wf_session_free(wf_session_t *s);
const char *wf_session_backend(const wf_session_t *s);

/* Runs n sequences of different lengths (no padding): ids[i] holds lens[i]
 * token ids, each with [CLS]/[SEP] already in place. Writes n * num_labels
 * values to probs (softmax) and, if logits is not NULL, the raw logits. */
wf_status_t wf_session_run(wf_session_t *s, const int32_t *const *ids, const int *lens, int n, float *probs, float *logits);

/* Convenience: tokenize and classify texts (tools, tests). */
wf_status_t wf_session_classify(wf_session_t *s, const char *const *texts, const size_t *lens, int n, float *probs);

#endif
