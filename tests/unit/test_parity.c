/*
 * Parity with Hugging Face transformers: the fixture models in
 * tests/fixtures/parity (made by train/tools/gen_parity_fixtures.py) carry the
 * token ids and float64 logits transformers produced for each text. Our
 * logits must match to a relative error of 1e-4 (max |ours - theirs| over a
 * row, divided by the row's largest |logit|), in one packed batch of mixed
 * lengths and one sequence at a time, with one and with several threads; our
 * tokenizer must give the same ids. Also: hostile model directories and
 * batches fail with clear errors.
 */
#include "test.h"
#include "st_writer.h"

#include "wafer/infer.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIXTURES WAFER_SOURCE_DIR "/tests/fixtures/parity"
#define MAX_ROWS 64
#define MAX_IDS 128

typedef struct {
    int n;
    char *text[MAX_ROWS];
    int32_t ids[MAX_ROWS][MAX_IDS];
    int len[MAX_ROWS];
    double logits[MAX_ROWS][WF_MAX_LABELS];
    int nlabels;
} expected_t;

static int load_expected(const char *dir, expected_t *e)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/expected.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    memset(e, 0, sizeof(*e));
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0 && e->n < MAX_ROWS) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o)
            break;
        json_t *ids = json_object_get(o, "ids"), *lg = json_object_get(o, "logits");
        e->text[e->n] = strdup(json_string_value(json_object_get(o, "text")));
        e->len[e->n] = (int)json_array_size(ids);
        for (size_t i = 0; i < json_array_size(ids) && i < MAX_IDS; i++)
            e->ids[e->n][i] = (int32_t)json_integer_value(json_array_get(ids, i));
        e->nlabels = (int)json_array_size(lg);
        for (size_t i = 0; i < json_array_size(lg) && i < WF_MAX_LABELS; i++)
            e->logits[e->n][i] = json_real_value(json_array_get(lg, i));
        json_decref(o);
        e->n++;
    }
    free(line);
    fclose(f);
    return e->n > 0 ? 0 : -1;
}

static void free_expected(expected_t *e)
{
    for (int i = 0; i < e->n; i++)
        free(e->text[i]);
}

static double row_err(const float *got, const double *want, int c)
{
    double scale = 0, err = 0;
    for (int j = 0; j < c; j++) {
        scale = fmax(scale, fabs(want[j]));
        err = fmax(err, fabs(got[j] - want[j]));
    }
    return err / fmax(scale, 1e-30);
}

static void parity_one(const char *name, int threads)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", FIXTURES, name);
    expected_t *e = calloc(1, sizeof(*e));
    CHECK(load_expected(dir, e) == 0);
    wf_model_t *m = NULL;
    wf_err_t err = { { 0 } };
    wf_status_t st = wf_model_load(dir, &m, &err);
    if (st != WF_OK)
        fprintf(stderr, "%s: %s\n", name, err.msg);
    CHECK_EQ_INT(st, WF_OK);
    if (!m) {
        free_expected(e);
        free(e);
        return;
    }
    int C = wf_model_get_config(m)->num_labels;
    CHECK_EQ_INT(C, e->nlabels);
    int total = 0;
    for (int i = 0; i < e->n; i++)
        total += e->len[i];
    wf_session_opts_t o = { "cpu", threads, e->n, total };
    wf_session_t *s = NULL;
    CHECK_EQ_INT(wf_session_new(m, &o, &s, &err), WF_OK);
    CHECK_EQ_STR(wf_session_backend(s), "cpu");

    const int32_t *ptrs[MAX_ROWS];
    for (int i = 0; i < e->n; i++)
        ptrs[i] = e->ids[i];
    float *batched = calloc((size_t)e->n * C, sizeof(float)), *single = calloc((size_t)e->n * C, sizeof(float));
    float *probs = calloc((size_t)e->n * C, sizeof(float));
    CHECK_EQ_INT(wf_session_run(s, ptrs, e->len, e->n, probs, batched), WF_OK);
    double max_err = 0, max_diff = 0;
    for (int i = 0; i < e->n; i++) {
        CHECK_EQ_INT(wf_session_run(s, &ptrs[i], &e->len[i], 1, NULL, single + (size_t)i * C), WF_OK);
        double eb = row_err(batched + (size_t)i * C, e->logits[i], C);
        double es = row_err(single + (size_t)i * C, e->logits[i], C);
        max_err = fmax(max_err, fmax(eb, es));
        for (int j = 0; j < C; j++)
            max_diff = fmax(max_diff, fabs(batched[(size_t)i * C + j] - single[(size_t)i * C + j]));
        if (eb > 1e-4 || es > 1e-4)
            fprintf(stderr, "%s: text %d (%d ids): relative error batched %.3g, single %.3g\n", name, i, e->len[i],
                    eb, es);
        double psum = 0;
        for (int j = 0; j < C; j++)
            psum += probs[(size_t)i * C + j];
        CHECK(fabs(psum - 1.0) < 1e-5);
    }
    printf("%s threads=%d: max relative error vs transformers %.3g, max |batched - single| %.3g\n", name, threads,
           max_err, max_diff);
    CHECK(max_err <= 1e-4);
    CHECK(max_diff <= 1e-5);

    /* The same through the tokenizer: our ids must be transformers' ids. */
    const wf_tokenizer_t *tok = wf_model_get_tokenizer(m);
    int max_len = wf_model_get_meta(m)->max_len;
    int mismatches = 0;
    for (int i = 0; i < e->n; i++) {
        int32_t ids[MAX_IDS + 8];
        int k = wf_tokenizer_encode(tok, e->text[i], strlen(e->text[i]), ids, max_len);
        bool same = k == e->len[i] && memcmp(ids, e->ids[i], sizeof(int32_t) * (size_t)k) == 0;
        if (!same) {
            mismatches++;
            fprintf(stderr, "%s: text %d: tokenizer gives %d ids, transformers %d\n", name, i, k, e->len[i]);
        }
    }
    CHECK_EQ_INT(mismatches, 0);
    /* And classify end to end (text -> probabilities) equals run on the reference ids. */
    const char *texts[MAX_ROWS];
    size_t lens[MAX_ROWS];
    for (int i = 0; i < e->n; i++) {
        texts[i] = e->text[i];
        lens[i] = strlen(e->text[i]);
    }
    float *cprobs = calloc((size_t)e->n * C, sizeof(float));
    CHECK_EQ_INT(wf_session_classify(s, texts, lens, e->n, cprobs), WF_OK);
    double pdiff = 0;
    for (int i = 0; i < e->n * C; i++)
        pdiff = fmax(pdiff, fabs(cprobs[i] - probs[i]));
    CHECK(pdiff <= 1e-5);

    free(cprobs);
    free(batched);
    free(single);
    free(probs);
    wf_session_free(s);
    wf_model_free(m);
    free_expected(e);
    free(e);
}

TEST(parity_bert_tiny)
{
    parity_one("bert_tiny", 1);
    parity_one("bert_tiny", 3);
}

TEST(parity_bert_gelu_new_f16)
{
    parity_one("bert_gelu_new_f16", 1);
    parity_one("bert_gelu_new_f16", 2);
}

TEST(parity_mobilebert_tiny)
{
    parity_one("mobilebert_tiny", 1);
    parity_one("mobilebert_tiny", 2);
}

TEST(parity_mobilebert_ln_bf16)
{
    parity_one("mobilebert_ln_bf16", 1);
    parity_one("mobilebert_ln_bf16", 2);
}

/* Small sessions: classify more texts than fit in one run (chunking). */
TEST(classify_chunks)
{
    wf_model_t *m = NULL;
    wf_err_t err = { { 0 } };
    CHECK_EQ_INT(wf_model_load(FIXTURES "/mobilebert_tiny", &m, &err), WF_OK);
    if (!m)
        return;
    expected_t *e = calloc(1, sizeof(*e));
    CHECK(load_expected(FIXTURES "/mobilebert_tiny", e) == 0);
    int C = e->nlabels;
    wf_session_opts_t big = { "cpu", 2, 64, 64 * 128 }, small = { "cpu", 1, 3, 200 };
    wf_session_t *sb = NULL, *ss = NULL;
    CHECK_EQ_INT(wf_session_new(m, &big, &sb, &err), WF_OK);
    CHECK_EQ_INT(wf_session_new(m, &small, &ss, &err), WF_OK);
    const char *texts[MAX_ROWS];
    size_t lens[MAX_ROWS];
    for (int i = 0; i < e->n; i++) {
        texts[i] = e->text[i];
        lens[i] = strlen(e->text[i]);
    }
    float *pb = calloc((size_t)e->n * C, sizeof(float)), *ps = calloc((size_t)e->n * C, sizeof(float));
    CHECK_EQ_INT(wf_session_classify(sb, texts, lens, e->n, pb), WF_OK);
    CHECK_EQ_INT(wf_session_classify(ss, texts, lens, e->n, ps), WF_OK);
    double d = 0;
    for (int i = 0; i < e->n * C; i++)
        d = fmax(d, fabs(pb[i] - ps[i]));
    CHECK(d <= 1e-5);
    free(pb);
    free(ps);
    wf_session_free(sb);
    wf_session_free(ss);
    wf_model_free(m);
    free_expected(e);
    free(e);
}

TEST(session_rejects_bad_batches)
{
    wf_model_t *m = NULL;
    wf_err_t err = { { 0 } };
    CHECK_EQ_INT(wf_model_load(FIXTURES "/bert_tiny", &m, &err), WF_OK);
    if (!m)
        return;
    wf_session_t *s = NULL;
    wf_session_opts_t cuda = { "cuda", 1, 4, 64 }, bogus = { "tpu", 1, 4, 64 }, zero = { "cpu", 1, 0, 64 };
#ifdef WAFER_HAVE_CUDA
    /* Built with the CUDA backend: a session where a GPU is present, a clear error where none is. */
    wf_status_t cst = wf_session_new(m, &cuda, &s, &err);
    CHECK(cst == WF_OK || (cst == WF_ERR_BACKEND && strstr(err.msg, "cuda") != NULL));
    wf_session_free(s);
    s = NULL;
#else
    CHECK_EQ_INT(wf_session_new(m, &cuda, &s, &err), WF_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "cuda") != NULL);
#endif
    CHECK_EQ_INT(wf_session_new(m, &bogus, &s, &err), WF_ERR_INVALID);
    CHECK_EQ_INT(wf_session_new(m, &zero, &s, &err), WF_ERR_INVALID);
    wf_session_opts_t o = { "cpu", 2, 4, 64 };
    CHECK_EQ_INT(wf_session_new(m, &o, &s, &err), WF_OK);
    int32_t ids[80];
    for (int i = 0; i < 80; i++)
        ids[i] = 5;
    const int32_t *p[5] = { ids, ids, ids, ids, ids };
    int lens[5] = { 4, 4, 4, 4, 4 };
    float probs[5 * WF_MAX_LABELS];
    CHECK_EQ_INT(wf_session_run(s, p, lens, 4, probs, NULL), WF_OK);
    CHECK_EQ_INT(wf_session_run(s, p, lens, 5, probs, NULL), WF_ERR_LIMIT); /* > max_batch */
    int big[1] = { 65 };
    CHECK_EQ_INT(wf_session_run(s, p, big, 1, probs, NULL), WF_ERR_LIMIT); /* > max_tokens */
    int zero_len[1] = { 0 };
    CHECK_EQ_INT(wf_session_run(s, p, zero_len, 1, probs, NULL), WF_ERR_INVALID);
    ids[2] = wf_model_get_config(m)->vocab_size; /* out of the embedding table */
    CHECK_EQ_INT(wf_session_run(s, p, lens, 1, probs, NULL), WF_ERR_INVALID);
    ids[2] = -1;
    CHECK_EQ_INT(wf_session_run(s, p, lens, 1, probs, NULL), WF_ERR_INVALID);
    wf_session_free(s);
    wf_model_free(m);
}

/* ------------------------------------------------------ hostile directories */

static char tmpdir[64];

static void copy_file(const char *from_dir, const char *to_dir, const char *name)
{
    char a[512], b[512];
    snprintf(a, sizeof(a), "%s/%s", from_dir, name);
    snprintf(b, sizeof(b), "%s/%s", to_dir, name);
    FILE *in = fopen(a, "rb"), *out = fopen(b, "wb");
    CHECK(in && out);
    char buf[8192];
    size_t n;
    while (in && out && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
}

enum { DROP, RESHAPE, RETYPE };

/* Rewrites mobilebert_tiny's weights into tmpdir with `victim` dropped,
 * reshaped (transposed) or given an integer dtype; returns the load status. */
static wf_status_t load_mutated(const char *victim, int how, wf_err_t *err)
{
    const char *src = FIXTURES "/mobilebert_tiny";
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/wafer-parity-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL);
    copy_file(src, tmpdir, "config.json");
    copy_file(src, tmpdir, "wafer.json");
    copy_file(src, tmpdir, "vocab.txt");
    wf_safetensors_t *st = NULL;
    wf_err_t e2;
    char stp[512];
    snprintf(stp, sizeof(stp), "%s/model.safetensors", src);
    CHECK_EQ_INT(wf_st_open(stp, &st, &e2), WF_OK);
    size_t n = wf_st_count(st), k = 0;
    stw_tensor_t *t = calloc(n, sizeof(*t));
    for (size_t i = 0; i < n; i++) {
        const wf_tensor_t *x = wf_st_at(st, i);
        bool hit = strcmp(x->name, victim) == 0;
        if (hit && how == DROP)
            continue;
        t[k].name = x->name;
        t[k].dtype = wf_dtype_name(x->dtype);
        t[k].ndim = x->ndim;
        for (int d = 0; d < x->ndim; d++)
            t[k].shape[d] = (hit && how == RESHAPE) ? x->shape[x->ndim - 1 - d] : x->shape[d];
        if (hit && how == RETYPE)
            t[k].dtype = "I32";
        t[k].data = x->data;
        t[k].nbytes = x->nbytes;
        k++;
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/model.safetensors", tmpdir);
    CHECK(stw_write(path, t, (int)k) == 0);
    free(t);
    wf_st_close(st);
    wf_model_t *m = NULL;
    wf_status_t s = wf_model_load(tmpdir, &m, err);
    CHECK((s == WF_OK) == (m != NULL));
    wf_model_free(m);
    const char *files[] = { "config.json", "wafer.json", "vocab.txt", "model.safetensors" };
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return s;
}

TEST(hostile_missing_tensor)
{
    wf_err_t err = { { 0 } };
    CHECK_EQ_INT(load_mutated("mobilebert.encoder.layer.2.ffn.1.output.LayerNorm.bias", DROP, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "missing tensor mobilebert.encoder.layer.2.ffn.1.output.LayerNorm.bias") != NULL);
    CHECK_EQ_INT(load_mutated("classifier.weight", DROP, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "classifier.weight") != NULL);
}

TEST(hostile_wrong_shape)
{
    wf_err_t err = { { 0 } };
    CHECK_EQ_INT(load_mutated("mobilebert.encoder.layer.1.bottleneck.input.dense.weight", RESHAPE, &err),
                 WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "mobilebert.encoder.layer.1.bottleneck.input.dense.weight has shape (64, 32), "
                          "expected (32, 64)") != NULL);
    if (!strstr(err.msg, "expected (32, 64)"))
        fprintf(stderr, "message: %s\n", err.msg);
}

TEST(hostile_wrong_dtype)
{
    wf_err_t err = { { 0 } };
    CHECK_EQ_INT(load_mutated("mobilebert.embeddings.embedding_transformation.bias", RETYPE, &err),
                 WF_ERR_UNSUPPORTED);
    CHECK(strstr(err.msg, "embedding_transformation.bias") != NULL);
    CHECK(strstr(err.msg, "I32") != NULL);
}

TEST(hostile_missing_files)
{
    wf_model_t *m = NULL;
    wf_err_t err = { { 0 } };
    CHECK(wf_model_load("/nonexistent/wafer-model", &m, &err) != WF_OK);
    CHECK(m == NULL);
    CHECK(err.msg[0] != 0);
    CHECK_EQ_INT(wf_model_load(NULL, &m, &err), WF_ERR_INVALID);
}

TEST_MAIN()
