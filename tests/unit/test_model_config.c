/* config.json (BERT, MobileBERT) and wafer.json loaders: defaults, consistency checks, errors. */
#include "test.h"
#include "wafer/infer.h"

#include <unistd.h>

static char tmp_path[64];

/* Writes text to a temporary file and returns its path. */
static const char *write_tmp(const char *text)
{
    strcpy(tmp_path, "/tmp/wafer-cfg-XXXXXX");
    int fd = mkstemp(tmp_path);
    size_t n = strlen(text);
    if (fd < 0 || write(fd, text, n) != (ssize_t)n)
        abort();
    close(fd);
    return tmp_path;
}

static wf_status_t load_cfg(const char *text, wf_model_config_t *cfg, wf_err_t *err)
{
    err->msg[0] = 0;
    wf_status_t s = wf_model_config_load(write_tmp(text), cfg, err);
    unlink(tmp_path);
    return s;
}

#define CFG_REJECT(text, status, needle)                                                          \
    do {                                                                                          \
        wf_model_config_t c_;                                                                     \
        wf_err_t e_;                                                                              \
        CHECK_EQ_INT(load_cfg(text, &c_, &e_), status);                                           \
        if (!strstr(e_.msg, needle) || !strstr(e_.msg, "/tmp/wafer-cfg-")) {                      \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, e_.msg,    \
                    needle);                                                                      \
            wf_test_failed_now = 1;                                                               \
        }                                                                                         \
    } while (0)

TEST(bert_defaults)
{
    wf_model_config_t c;
    wf_err_t err;
    CHECK_EQ_INT(load_cfg("{\"model_type\": \"bert\"}", &c, &err), WF_OK);
    CHECK_EQ_INT(c.arch, WF_ARCH_BERT);
    CHECK_EQ_INT(c.vocab_size, 30522);
    CHECK_EQ_INT(c.hidden_size, 768);
    CHECK_EQ_INT(c.num_hidden_layers, 12);
    CHECK_EQ_INT(c.num_attention_heads, 12);
    CHECK_EQ_INT(c.intermediate_size, 3072);
    CHECK_EQ_INT(c.max_position_embeddings, 512);
    CHECK_EQ_INT(c.type_vocab_size, 2);
    CHECK(c.layer_norm_eps == 1e-12f);
    CHECK_EQ_INT(c.hidden_act, WF_ACT_GELU);
    CHECK_EQ_INT(c.pad_token_id, 0);
    CHECK_EQ_INT(c.normalization_type, WF_NORM_LAYER_NORM);
    CHECK_EQ_INT(c.embedding_size, 768);
    CHECK(!c.use_bottleneck && !c.trigram_input);
    CHECK_EQ_INT(c.num_feedforward_networks, 1);
    CHECK_EQ_INT(wf_model_config_true_hidden(&c), 768);
    CHECK_EQ_INT(c.num_labels, 2);
    CHECK_EQ_STR(c.id2label[0], "LABEL_0");
    CHECK_EQ_STR(c.id2label[1], "LABEL_1");
}

TEST(mobilebert_defaults)
{
    wf_model_config_t c;
    wf_err_t err;
    CHECK_EQ_INT(load_cfg("{\"model_type\": \"mobilebert\"}", &c, &err), WF_OK);
    CHECK_EQ_INT(c.arch, WF_ARCH_MOBILEBERT);
    CHECK_EQ_INT(c.vocab_size, 30522);
    CHECK_EQ_INT(c.hidden_size, 512);
    CHECK_EQ_INT(c.num_hidden_layers, 24);
    CHECK_EQ_INT(c.num_attention_heads, 4);
    CHECK_EQ_INT(c.intermediate_size, 512);
    CHECK_EQ_INT(c.hidden_act, WF_ACT_RELU);
    CHECK_EQ_INT(c.embedding_size, 128);
    CHECK(c.trigram_input && c.use_bottleneck && !c.use_bottleneck_attention && c.key_query_shared_bottleneck);
    CHECK_EQ_INT(c.intra_bottleneck_size, 128);
    CHECK_EQ_INT(c.num_feedforward_networks, 4);
    CHECK_EQ_INT(c.normalization_type, WF_NORM_NONORM);
    CHECK(c.classifier_activation); /* MobileBertConfig's default is True */
    CHECK_EQ_INT(wf_model_config_true_hidden(&c), 128);
    CHECK_EQ_INT(c.num_labels, 2);
}

TEST(mobilebert_full)
{
    /* the shape of google/mobilebert-uncased's config with a classification head */
    const char *text = "{\n"
                       "  \"architectures\": [\"MobileBertForSequenceClassification\"],\n"
                       "  \"attention_probs_dropout_prob\": 0.1, \"classifier_activation\": false,\n"
                       "  \"embedding_size\": 128, \"hidden_act\": \"relu\", \"hidden_dropout_prob\": 0.0,\n"
                       "  \"hidden_size\": 512, \"id2label\": {\"0\": \"benign\", \"1\": \"sqli\", \"2\": \"xss\"},\n"
                       "  \"label2id\": {\"benign\": 0, \"sqli\": 1, \"xss\": 2},\n"
                       "  \"initializer_range\": 0.02, \"intermediate_size\": 512, \"intra_bottleneck_size\": 128,\n"
                       "  \"key_query_shared_bottleneck\": true, \"layer_norm_eps\": 1e-12,\n"
                       "  \"max_position_embeddings\": 512, \"model_type\": \"mobilebert\",\n"
                       "  \"normalization_type\": \"no_norm\", \"num_attention_heads\": 4,\n"
                       "  \"num_feedforward_networks\": 4, \"num_hidden_layers\": 24, \"pad_token_id\": 0,\n"
                       "  \"torch_dtype\": \"float32\", \"transformers_version\": \"4.30.0\",\n"
                       "  \"trigram_input\": true, \"true_hidden_size\": 128, \"type_vocab_size\": 2,\n"
                       "  \"use_bottleneck\": true, \"use_bottleneck_attention\": false, \"vocab_size\": 30522\n"
                       "}\n";
    wf_model_config_t c;
    wf_err_t err;
    CHECK_EQ_INT(load_cfg(text, &c, &err), WF_OK);
    CHECK(!c.classifier_activation);
    CHECK_EQ_INT(c.num_labels, 3);
    CHECK_EQ_STR(c.id2label[2], "xss");
    CHECK(c.layer_norm_eps == 1e-12f);
}

TEST(bert_small_with_labels)
{
    wf_model_config_t c;
    wf_err_t err;
    CHECK_EQ_INT(load_cfg("{\"model_type\":\"bert\",\"hidden_size\":64,\"num_attention_heads\":4,"
                          "\"num_hidden_layers\":2,\"intermediate_size\":128,\"vocab_size\":100,"
                          "\"hidden_act\":\"gelu_new\",\"layer_norm_eps\":1e-5,\"num_labels\":4,"
                          "\"position_embedding_type\":\"absolute\",\"problem_type\":null}",
                          &c, &err),
                 WF_OK);
    CHECK_EQ_INT(c.hidden_size, 64);
    CHECK_EQ_INT(c.hidden_act, WF_ACT_GELU_NEW);
    CHECK(c.layer_norm_eps == 1e-5f);
    CHECK_EQ_INT(c.num_labels, 4);
    CHECK_EQ_STR(c.id2label[3], "LABEL_3");
    /* ids in any key order */
    CHECK_EQ_INT(load_cfg("{\"model_type\":\"bert\",\"id2label\":{\"1\":\"b\",\"0\":\"a\"},\"num_labels\":2}", &c,
                          &err),
                 WF_OK);
    CHECK_EQ_STR(c.id2label[0], "a");
    CHECK_EQ_INT(load_cfg("{\"model_type\":\"bert\",\"hidden_act\":\"tanh\"}", &c, &err), WF_OK);
    CHECK_EQ_INT(c.hidden_act, WF_ACT_TANH);
    CHECK_EQ_INT(load_cfg("{\"model_type\":\"mobilebert\",\"use_bottleneck\":false,\"hidden_size\":96,"
                          "\"num_attention_heads\":3,\"normalization_type\":\"layer_norm\"}",
                          &c, &err),
                 WF_OK);
    CHECK_EQ_INT(wf_model_config_true_hidden(&c), 96);
    CHECK_EQ_INT(c.normalization_type, WF_NORM_LAYER_NORM);
}

TEST(config_errors)
{
    CFG_REJECT("", WF_ERR_FORMAT, "invalid JSON");
    CFG_REJECT("[1]", WF_ERR_FORMAT, "not a JSON object");
    CFG_REJECT("{\"model_type\":\"bert\",}", WF_ERR_FORMAT, "line 1");
    CFG_REJECT("{\"model_type\":\"bert\",\"model_type\":\"bert\"}", WF_ERR_FORMAT, "duplicate");
    CFG_REJECT("{}", WF_ERR_FORMAT, "model_type: missing");
    CFG_REJECT("{\"model_type\":\"gpt2\"}", WF_ERR_UNSUPPORTED, "'gpt2' is not supported");
    CFG_REJECT("{\"model_type\":3}", WF_ERR_FORMAT, "model_type: not a string");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_size\":\"768\"}", WF_ERR_FORMAT, "hidden_size: not an integer");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_size\":768.0}", WF_ERR_FORMAT, "hidden_size: not an integer");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_size\":0}", WF_ERR_LIMIT, "hidden_size: 0 is outside");
    CFG_REJECT("{\"model_type\":\"bert\",\"num_hidden_layers\":-1}", WF_ERR_LIMIT, "num_hidden_layers");
    CFG_REJECT("{\"model_type\":\"bert\",\"vocab_size\":1000000000000}", WF_ERR_LIMIT, "vocab_size");
    CFG_REJECT("{\"model_type\":\"bert\",\"max_position_embeddings\":2147483647}", WF_ERR_LIMIT,
               "max_position_embeddings");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_size\":8192,\"intermediate_size\":65536,\"num_hidden_layers\":128,"
               "\"num_attention_heads\":8}",
               WF_ERR_LIMIT, "parameters");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_size\":100,\"num_attention_heads\":12}", WF_ERR_FORMAT,
               "hidden_size 100 is not a multiple of num_attention_heads 12");
    CFG_REJECT("{\"model_type\":\"mobilebert\",\"intra_bottleneck_size\":130}", WF_ERR_FORMAT,
               "intra_bottleneck_size 130 is not a multiple");
    CFG_REJECT("{\"model_type\":\"mobilebert\",\"true_hidden_size\":512}", WF_ERR_FORMAT, "true_hidden_size 512");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_act\":\"swish\"}", WF_ERR_UNSUPPORTED, "hidden_act: 'swish'");
    CFG_REJECT("{\"model_type\":\"bert\",\"hidden_act\":1}", WF_ERR_FORMAT, "hidden_act: not a string");
    CFG_REJECT("{\"model_type\":\"bert\",\"layer_norm_eps\":0}", WF_ERR_FORMAT, "layer_norm_eps");
    CFG_REJECT("{\"model_type\":\"bert\",\"layer_norm_eps\":\"1e-12\"}", WF_ERR_FORMAT, "layer_norm_eps");
    CFG_REJECT("{\"model_type\":\"bert\",\"pad_token_id\":100,\"vocab_size\":100}", WF_ERR_FORMAT, "pad_token_id");
    CFG_REJECT("{\"model_type\":\"bert\",\"position_embedding_type\":\"relative_key\"}", WF_ERR_UNSUPPORTED,
               "position_embedding_type");
    CFG_REJECT("{\"model_type\":\"bert\",\"is_decoder\":true}", WF_ERR_UNSUPPORTED, "is_decoder");
    CFG_REJECT("{\"model_type\":\"bert\",\"problem_type\":\"multi_label_classification\"}", WF_ERR_UNSUPPORTED,
               "problem_type");
    CFG_REJECT("{\"model_type\":\"mobilebert\",\"normalization_type\":\"rms\"}", WF_ERR_UNSUPPORTED,
               "normalization_type");
    CFG_REJECT("{\"model_type\":\"mobilebert\",\"trigram_input\":1}", WF_ERR_FORMAT, "trigram_input: not true");
    CFG_REJECT("{\"model_type\":\"mobilebert\",\"num_feedforward_networks\":0}", WF_ERR_LIMIT,
               "num_feedforward_networks");
    /* labels */
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":[\"a\"]}", WF_ERR_FORMAT, "id2label: not an object");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{}}", WF_ERR_LIMIT, "id2label: 0 labels");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"2\":\"b\"}}", WF_ERR_FORMAT, "key '2'");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"01\":\"b\"}}", WF_ERR_FORMAT, "key '01'");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"-1\":\"b\"}}", WF_ERR_FORMAT, "key '-1'");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"a\"}}", WF_ERR_FORMAT,
               "label 'a' is used for ids 0 and 1");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"\"}}", WF_ERR_FORMAT, "id2label.1");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"0123456789012345678901234567890123\"}}",
               WF_ERR_FORMAT, "id2label.1");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":2}}", WF_ERR_FORMAT,
               "id2label.1: not a string");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"b\"},\"num_labels\":3}", WF_ERR_FORMAT,
               "num_labels is 3 but id2label has 2");
    CFG_REJECT("{\"model_type\":\"bert\",\"num_labels\":33}", WF_ERR_LIMIT, "num_labels");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"b\"},\"label2id\":{\"a\":1,\"b\":0}}",
               WF_ERR_FORMAT, "label2id: 'a' does not map to 0");
    CFG_REJECT("{\"model_type\":\"bert\",\"id2label\":{\"0\":\"a\",\"1\":\"b\"},\"label2id\":{\"a\":0}}",
               WF_ERR_FORMAT, "label2id has 1 entries");
    CFG_REJECT("{\"model_type\":\"bert\",\"label2id\":{\"a\":0}}", WF_ERR_FORMAT, "label2id: given without id2label");
    /* depth and size */
    char deep[600];
    strcpy(deep, "{\"model_type\":\"bert\",\"x\":");
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    for (int i = 0; i < 100; i++)
        strcat(deep, "]");
    strcat(deep, "}");
    CFG_REJECT(deep, WF_ERR_FORMAT, "nests deeper");
    wf_model_config_t c;
    wf_err_t err;
    CHECK_EQ_INT(wf_model_config_load("/nonexistent/config.json", &c, &err), WF_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/config.json: cannot open") != NULL);
}

static wf_status_t load_meta(const char *text, const wf_model_config_t *cfg, wf_model_meta_t *m, wf_err_t *err)
{
    err->msg[0] = 0;
    wf_status_t s = wf_model_meta_load(write_tmp(text), cfg, m, err);
    unlink(tmp_path);
    return s;
}

static void three_label_cfg(wf_model_config_t *c)
{
    wf_err_t err;
    if (load_cfg("{\"model_type\":\"bert\",\"max_position_embeddings\":256,\"vocab_size\":300,"
                 "\"id2label\":{\"0\":\"benign\",\"1\":\"sqli\",\"2\":\"xss\"}}",
                 c, &err) != WF_OK)
        abort();
}

#define META_REJECT(text, cfg, status, needle)                                                    \
    do {                                                                                          \
        wf_model_meta_t m_;                                                                       \
        wf_err_t e_;                                                                              \
        CHECK_EQ_INT(load_meta(text, cfg, &m_, &e_), status);                                     \
        if (!strstr(e_.msg, needle) || !strstr(e_.msg, "/tmp/wafer-cfg-")) {                      \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, e_.msg,    \
                    needle);                                                                      \
            wf_test_failed_now = 1;                                                               \
        }                                                                                         \
    } while (0)

TEST(meta_full)
{
    wf_model_config_t c;
    three_label_cfg(&c);
    wf_model_meta_t m;
    wf_err_t err;
    CHECK_EQ_INT(load_meta("{\"format\":1,\"name\":\"wafer-test-1\",\"labels\":[\"benign\",\"sqli\",\"xss\"],"
                           "\"thresholds\":{\"sqli\":0.25,\"xss\":1},\"max_len\":128,"
                           "\"tokenizer\":{\"kind\":\"wordpiece\",\"lowercase\":false,\"strip_accents\":true,"
                           "\"tokenize_chinese_chars\":false,\"max_input_chars_per_word\":50},"
                           "\"units\":[\"path\",\"query_value\"],\"text_format\":\"wafer-unit-v1\"}",
                           &c, &m, &err),
                 WF_OK);
    CHECK_EQ_STR(m.name, "wafer-test-1");
    CHECK_EQ_INT(m.num_labels, 3);
    CHECK_EQ_STR(m.labels[2], "xss");
    CHECK(m.thresholds[0] == 0.5f && m.thresholds[1] == 0.25f && m.thresholds[2] == 1.0f);
    CHECK_EQ_INT(m.max_len, 128);
    CHECK_EQ_INT(m.tok.kind, WF_TOK_WORDPIECE);
    CHECK(!m.tok.lowercase && m.tok.strip_accents == 1 && !m.tok.tokenize_chinese_chars);
    CHECK_EQ_INT(m.tok.max_input_chars_per_word, 50);
    CHECK_EQ_INT(m.nunits, 2);
    CHECK_EQ_STR(m.units[1], "query_value");
    CHECK_EQ_STR(m.text_format, "wafer-unit-v1");
}

TEST(meta_defaults)
{
    wf_model_config_t c;
    three_label_cfg(&c);
    wf_model_meta_t m;
    wf_err_t err;
    CHECK_EQ_INT(load_meta("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],"
                           "\"tokenizer\":{\"kind\":\"bytes\"}}",
                           &c, &m, &err),
                 WF_OK);
    CHECK_EQ_INT(m.max_len, 256); /* capped by max_position_embeddings */
    CHECK(m.thresholds[1] == 0.5f && m.thresholds[2] == 0.5f);
    CHECK_EQ_INT(m.tok.kind, WF_TOK_BYTES);
    CHECK(m.tok.lowercase && m.tok.strip_accents == -1 && m.tok.tokenize_chinese_chars);
    CHECK_EQ_INT(m.tok.max_input_chars_per_word, 100);
    CHECK_EQ_INT(m.nunits, 0);
    CHECK_EQ_STR(m.text_format, "wafer-unit-v1");
    /* without a config: no cross-checks, max_len 512 */
    CHECK_EQ_INT(load_meta("{\"name\":\"m\",\"labels\":[\"a\",\"b\"],\"tokenizer\":{\"kind\":\"wordpiece\"}}", NULL,
                           &m, &err),
                 WF_OK);
    CHECK_EQ_INT(m.max_len, 512);
    /* thresholds as a list, one per label */
    CHECK_EQ_INT(load_meta("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":[0.5,0.9,0.1],"
                           "\"tokenizer\":{\"kind\":\"wordpiece\"},\"units\":[]}",
                           &c, &m, &err),
                 WF_OK);
    CHECK(m.thresholds[1] == 0.9f && m.thresholds[2] == 0.1f);
    CHECK_EQ_INT(m.nunits, 0);
}

TEST(meta_errors)
{
    wf_model_config_t c;
    three_label_cfg(&c);
    const char *tk = ",\"tokenizer\":{\"kind\":\"wordpiece\"}";
    char buf[512];
#define WITH(fmt) (snprintf(buf, sizeof buf, fmt, tk), buf)
    META_REJECT("{\"labels\":[\"benign\",\"sqli\",\"xss\"],\"tokenizer\":{\"kind\":\"bytes\"}}", &c, WF_ERR_FORMAT,
                "name: missing");
    META_REJECT(WITH("{\"name\":\"a b\",\"labels\":[\"benign\",\"sqli\",\"xss\"]%s}"), &c, WF_ERR_FORMAT, "name:");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\"]%s}"), &c, WF_ERR_FORMAT,
                "labels: 2 labels but config.json's id2label has 3");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"xss\",\"sqli\"]%s}"), &c, WF_ERR_FORMAT,
                "labels[1]: 'xss' but config.json's id2label[1] is 'sqli'");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"a\",\"a\"]%s}"), NULL, WF_ERR_FORMAT, "labels[1]: 'a' repeats");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"a\"]%s}"), NULL, WF_ERR_FORMAT, "labels: 1 labels");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":\"a\"%s}"), NULL, WF_ERR_FORMAT, "labels: not a list");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"a\",3]%s}"), NULL, WF_ERR_FORMAT, "labels[1]");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":{\"cmdi\":0.5}%s}"),
                &c, WF_ERR_FORMAT, "thresholds.cmdi: not one of the labels");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":{\"sqli\":1.5}%s}"),
                &c, WF_ERR_FORMAT, "thresholds.sqli: not a number in [0, 1]");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":{\"sqli\":\"x\"}%s}"),
                &c, WF_ERR_FORMAT, "thresholds.sqli");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":[0.5,0.5]%s}"),
                &c, WF_ERR_FORMAT, "thresholds: 2 values for 3 labels");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":[0.5,0.5,-1]%s}"),
                &c, WF_ERR_FORMAT, "thresholds[2]: not a number");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"thresholds\":0.5%s}"),
                &c, WF_ERR_FORMAT, "thresholds: not a list or an object");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"max_len\":257%s}"), &c,
                WF_ERR_FORMAT, "max_len: not an integer in [2, 256]");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"max_len\":1%s}"), &c, WF_ERR_FORMAT,
                "max_len");
    META_REJECT("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"]}", &c, WF_ERR_FORMAT, "tokenizer: missing");
    META_REJECT("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"tokenizer\":{}}", &c, WF_ERR_FORMAT,
                "tokenizer.kind: missing");
    META_REJECT("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"tokenizer\":{\"kind\":\"bpe\"}}", &c,
                WF_ERR_UNSUPPORTED, "tokenizer.kind");
    META_REJECT("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],"
                "\"tokenizer\":{\"kind\":\"wordpiece\",\"lowercase\":1}}",
                &c, WF_ERR_FORMAT, "tokenizer.lowercase");
    META_REJECT("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],"
                "\"tokenizer\":{\"kind\":\"wordpiece\",\"do_lower_case\":true}}",
                &c, WF_ERR_FORMAT, "tokenizer.'do_lower_case': unknown field");
    wf_model_config_t small;
    wf_err_t err;
    CHECK_EQ_INT(load_cfg("{\"model_type\":\"bert\",\"vocab_size\":100}", &small, &err), WF_OK);
    META_REJECT("{\"name\":\"m\",\"labels\":[\"LABEL_0\",\"LABEL_1\"],\"tokenizer\":{\"kind\":\"bytes\"}}", &small,
                WF_ERR_FORMAT, "vocab_size >= 261");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"units\":[\"Path\"]%s}"), &c,
                WF_ERR_FORMAT, "units[0]");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"units\":[\"path\",\"path\"]%s}"), &c,
                WF_ERR_FORMAT, "units[1]: repeats units[0]");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"text_format\":\"\"%s}"), &c,
                WF_ERR_FORMAT, "text_format");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"format\":2%s}"), &c,
                WF_ERR_UNSUPPORTED, "format: only version 1");
    META_REJECT(WITH("{\"name\":\"m\",\"labels\":[\"benign\",\"sqli\",\"xss\"],\"treshold\":{}%s}"), &c,
                WF_ERR_FORMAT, "'treshold': unknown field");
    META_REJECT(WITH("{\"name\":\"m\",\"name\":\"n\",\"labels\":[\"benign\",\"sqli\",\"xss\"]%s}"), &c,
                WF_ERR_FORMAT, "duplicate");
#undef WITH
}

TEST_MAIN()
