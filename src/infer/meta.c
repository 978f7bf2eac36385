/* wafer.json loader: labels, thresholds, tokenizer and input spec (format: docs/model-format.md). */
#include "wafer/infer.h"
#include "infer/jsonutil.h"

#include <math.h>
#include <stdio.h>

#define META_MAX_FILE (1u << 20)
#define META_DEFAULT_MAX_LEN 512
#define META_DEFAULT_THRESHOLD 0.5f
#define META_DEFAULT_TEXT_FORMAT "wafer-unit-v1"

#define fail wf_json_fail

/* Identifiers (unit kinds, text formats): [a-z0-9_.-], starting with a letter. */
static bool is_ident(const char *s, size_t n)
{
    if (n == 0 || !(s[0] >= 'a' && s[0] <= 'z'))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static wf_status_t check_keys(const char *path, const char *where, json_t *obj, const char *const *allowed,
                              wf_err_t *err)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        size_t i;
        for (i = 0; allowed[i]; i++)
            if (!strcmp(k, allowed[i]))
                break;
        if (!allowed[i]) {
            char q[48];
            wf_json_quote_name(k, q, sizeof q);
            return fail(err, WF_ERR_FORMAT, path, "%s'%s': unknown field", where, q);
        }
    }
    return WF_OK;
}

static wf_status_t parse_tokenizer(const char *path, json_t *jt, const wf_model_config_t *cfg, wf_tok_opts_t *tok,
                                   wf_err_t *err)
{
    static const char *const keys[] = { "kind", "lowercase", "strip_accents", "tokenize_chinese_chars",
                                        "max_input_chars_per_word", NULL };
    if (!jt)
        return fail(err, WF_ERR_FORMAT, path, "tokenizer: missing");
    if (!json_is_object(jt))
        return fail(err, WF_ERR_FORMAT, path, "tokenizer: not an object");
    wf_status_t s = check_keys(path, "tokenizer.", jt, keys, err);
    if (s != WF_OK)
        return s;
    json_t *v = json_object_get(jt, "kind");
    if (!v)
        return fail(err, WF_ERR_FORMAT, path, "tokenizer.kind: missing (\"wordpiece\" or \"bytes\")");
    if (!json_is_string(v))
        return fail(err, WF_ERR_FORMAT, path, "tokenizer.kind: not a string");
    if (!strcmp(json_string_value(v), "wordpiece"))
        tok->kind = WF_TOK_WORDPIECE;
    else if (!strcmp(json_string_value(v), "bytes"))
        tok->kind = WF_TOK_BYTES;
    else
        return fail(err, WF_ERR_UNSUPPORTED, path, "tokenizer.kind: must be \"wordpiece\" or \"bytes\"");

    tok->lowercase = true;
    tok->strip_accents = -1;
    tok->tokenize_chinese_chars = true;
    tok->max_input_chars_per_word = 100;
    if ((v = json_object_get(jt, "lowercase"))) {
        if (!json_is_boolean(v))
            return fail(err, WF_ERR_FORMAT, path, "tokenizer.lowercase: not true or false");
        tok->lowercase = json_is_true(v);
    }
    if ((v = json_object_get(jt, "strip_accents")) && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return fail(err, WF_ERR_FORMAT, path, "tokenizer.strip_accents: not true, false or null");
        tok->strip_accents = json_is_true(v) ? 1 : 0;
    }
    if ((v = json_object_get(jt, "tokenize_chinese_chars"))) {
        if (!json_is_boolean(v))
            return fail(err, WF_ERR_FORMAT, path, "tokenizer.tokenize_chinese_chars: not true or false");
        tok->tokenize_chinese_chars = json_is_true(v);
    }
    if ((v = json_object_get(jt, "max_input_chars_per_word"))) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 100000)
            return fail(err, WF_ERR_FORMAT, path, "tokenizer.max_input_chars_per_word: not an integer in [1, 100000]");
        tok->max_input_chars_per_word = (int)json_integer_value(v);
    }
    /* byte ids are value + 5 (after the five special tokens) */
    if (tok->kind == WF_TOK_BYTES && cfg && cfg->vocab_size < 261)
        return fail(err, WF_ERR_FORMAT, path,
                    "tokenizer.kind: \"bytes\" needs vocab_size >= 261 but config.json has %d", cfg->vocab_size);
    return WF_OK;
}

wf_status_t wf_model_meta_load(const char *path, const wf_model_config_t *cfg, wf_model_meta_t *meta, wf_err_t *err)
{
    static const char *const keys[] = { "format", "name", "labels", "thresholds", "max_len",
                                        "tokenizer", "units", "text_format", NULL };
    if (!path || !meta)
        return fail(err, WF_ERR_INVALID, path, "no path or output");
    memset(meta, 0, sizeof *meta);
    json_t *root;
    wf_status_t s = wf_json_load_object(path, META_MAX_FILE, 8, &root, err);
    if (s != WF_OK)
        return s;
    if ((s = check_keys(path, "", root, keys, err)) != WF_OK)
        goto out;

    json_t *v = json_object_get(root, "format");
    if (v && !(json_is_integer(v) && json_integer_value(v) == 1)) {
        s = fail(err, WF_ERR_UNSUPPORTED, path, "format: only version 1 is supported");
        goto out;
    }

    v = json_object_get(root, "name");
    if (!v || !json_is_string(v)) {
        s = fail(err, WF_ERR_FORMAT, path, "name: %s", v ? "not a string" : "missing");
        goto out;
    }
    const char *name = json_string_value(v);
    size_t nl = json_string_length(v);
    bool printable = nl > 0 && nl < sizeof meta->name;
    for (size_t i = 0; printable && i < nl; i++)
        printable = (unsigned char)name[i] > 0x20 && (unsigned char)name[i] < 0x7f;
    if (!printable) {
        s = fail(err, WF_ERR_FORMAT, path, "name: must be 1 to %zu printable ASCII characters without spaces",
                 sizeof meta->name - 1);
        goto out;
    }
    memcpy(meta->name, name, nl + 1);

    v = json_object_get(root, "labels");
    if (!v || !json_is_array(v)) {
        s = fail(err, WF_ERR_FORMAT, path, "labels: %s", v ? "not a list" : "missing");
        goto out;
    }
    size_t n = json_array_size(v);
    if (n < 2 || n > WF_MAX_LABELS) {
        s = fail(err, WF_ERR_FORMAT, path, "labels: %zu labels (2 to %d: labels[0] is the benign class)", n,
                 WF_MAX_LABELS);
        goto out;
    }
    if (cfg && (int)n != cfg->num_labels) {
        s = fail(err, WF_ERR_FORMAT, path, "labels: %zu labels but config.json's id2label has %d", n, cfg->num_labels);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *l = json_array_get(v, i);
        if (!json_is_string(l) || json_string_length(l) == 0 || json_string_length(l) >= sizeof meta->labels[0] ||
            strlen(json_string_value(l)) != json_string_length(l)) {
            s = fail(err, WF_ERR_FORMAT, path, "labels[%zu]: not a string of 1 to %zu bytes", i,
                     sizeof meta->labels[0] - 1);
            goto out;
        }
        memcpy(meta->labels[i], json_string_value(l), json_string_length(l) + 1);
        char q[40];
        wf_json_quote_name(meta->labels[i], q, sizeof q);
        if (cfg && strcmp(meta->labels[i], cfg->id2label[i])) {
            char qc[40];
            wf_json_quote_name(cfg->id2label[i], qc, sizeof qc);
            s = fail(err, WF_ERR_FORMAT, path, "labels[%zu]: '%s' but config.json's id2label[%zu] is '%s'", i, q, i,
                     qc);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(meta->labels[i], meta->labels[j])) {
                s = fail(err, WF_ERR_FORMAT, path, "labels[%zu]: '%s' repeats labels[%zu]", i, q, j);
                goto out;
            }
        meta->thresholds[i] = META_DEFAULT_THRESHOLD;
    }
    meta->num_labels = (int)n;

    /* thresholds: a list with one value per label, or an object label -> value */
    if ((v = json_object_get(root, "thresholds"))) {
        if (json_is_array(v)) {
            if (json_array_size(v) != n) {
                s = fail(err, WF_ERR_FORMAT, path, "thresholds: %zu values for %zu labels", json_array_size(v), n);
                goto out;
            }
            for (size_t i = 0; i < n; i++) {
                json_t *x = json_array_get(v, i);
                double t = json_is_number(x) ? json_number_value(x) : NAN;
                if (!(t >= 0 && t <= 1)) {
                    s = fail(err, WF_ERR_FORMAT, path, "thresholds[%zu]: not a number in [0, 1]", i);
                    goto out;
                }
                meta->thresholds[i] = (float)t;
            }
        } else if (json_is_object(v)) {
            const char *k;
            json_t *x;
            json_object_foreach(v, k, x) {
                char q[40];
                wf_json_quote_name(k, q, sizeof q);
                int i;
                for (i = 0; i < meta->num_labels; i++)
                    if (!strcmp(k, meta->labels[i]))
                        break;
                if (i == meta->num_labels) {
                    s = fail(err, WF_ERR_FORMAT, path, "thresholds.%s: not one of the labels", q);
                    goto out;
                }
                double t = json_is_number(x) ? json_number_value(x) : NAN;
                if (!(t >= 0 && t <= 1)) {
                    s = fail(err, WF_ERR_FORMAT, path, "thresholds.%s: not a number in [0, 1]", q);
                    goto out;
                }
                meta->thresholds[i] = (float)t;
            }
        } else {
            s = fail(err, WF_ERR_FORMAT, path, "thresholds: not a list or an object");
            goto out;
        }
    }

    meta->max_len = META_DEFAULT_MAX_LEN;
    if (cfg && cfg->max_position_embeddings < meta->max_len)
        meta->max_len = cfg->max_position_embeddings;
    if ((v = json_object_get(root, "max_len"))) {
        int hi = cfg ? cfg->max_position_embeddings : 32768;
        if (!json_is_integer(v) || json_integer_value(v) < 2 || json_integer_value(v) > hi) {
            s = fail(err, WF_ERR_FORMAT, path, "max_len: not an integer in [2, %d]%s", hi,
                     cfg ? " (config.json's max_position_embeddings)" : "");
            goto out;
        }
        meta->max_len = (int)json_integer_value(v);
    }

    if ((s = parse_tokenizer(path, json_object_get(root, "tokenizer"), cfg, &meta->tok, err)) != WF_OK)
        goto out;

    if ((v = json_object_get(root, "units"))) {
        size_t nu = json_is_array(v) ? json_array_size(v) : 0;
        if (!json_is_array(v) || nu > WF_ARRAY_LEN(meta->units)) {
            s = fail(err, WF_ERR_FORMAT, path, "units: not a list of at most %zu unit kinds", WF_ARRAY_LEN(meta->units));
            goto out;
        }
        for (size_t i = 0; i < nu; i++) {
            json_t *u = json_array_get(v, i);
            if (!json_is_string(u) || json_string_length(u) >= sizeof meta->units[0] ||
                !is_ident(json_string_value(u), json_string_length(u))) {
                s = fail(err, WF_ERR_FORMAT, path, "units[%zu]: not a unit kind ([a-z][a-z0-9_.-]*, under %zu bytes)",
                         i, sizeof meta->units[0]);
                goto out;
            }
            memcpy(meta->units[i], json_string_value(u), json_string_length(u) + 1);
            for (size_t j = 0; j < i; j++)
                if (!strcmp(meta->units[i], meta->units[j])) {
                    s = fail(err, WF_ERR_FORMAT, path, "units[%zu]: repeats units[%zu]", i, j);
                    goto out;
                }
        }
        meta->nunits = (int)nu;
    }

    strcpy(meta->text_format, META_DEFAULT_TEXT_FORMAT);
    if ((v = json_object_get(root, "text_format"))) {
        if (!json_is_string(v) || json_string_length(v) >= sizeof meta->text_format ||
            !is_ident(json_string_value(v), json_string_length(v))) {
            s = fail(err, WF_ERR_FORMAT, path, "text_format: not an identifier ([a-z][a-z0-9_.-]*, under %zu bytes)",
                     sizeof meta->text_format);
            goto out;
        }
        memcpy(meta->text_format, json_string_value(v), json_string_length(v) + 1);
    }
out:
    json_decref(root);
    return s;
}
