#include "test.h"
#include "wafer/core.h"
#include "wafer/infer.h"

#include <jansson.h>
#include <stdbool.h>
#include <unistd.h>

#define FIX "tests/fixtures/tokenizer/"

static wf_tok_opts_t wp_opts(bool lower)
{
    wf_tok_opts_t o = { .kind = WF_TOK_WORDPIECE, .lowercase = lower, .strip_accents = -1,
                        .tokenize_chinese_chars = true, .max_input_chars_per_word = 100 };
    return o;
}

static wf_tokenizer_t *load_fix(bool lower)
{
    wf_tok_opts_t o = wp_opts(lower);
    wf_tokenizer_t *t = NULL;
    wf_err_t err;
    wf_status_t st = wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err);
    if (st != WF_OK)
        fprintf(stderr, "load: %s\n", err.msg);
    return t;
}

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = 0;
    for (; h[0] && h[1]; h += 2) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (unsigned char)v;
    }
    return n;
}

static bool ids_eq(const int32_t *ids, int n, json_t *arr)
{
    if (!json_is_array(arr) || (size_t)n != json_array_size(arr))
        return false;
    for (int i = 0; i < n; i++)
        if (ids[i] != json_integer_value(json_array_get(arr, (size_t)i)))
            return false;
    return true;
}

/* Every fixture string, both lower-case modes: our ids must equal
 * BertTokenizerFast's; we also report how many equal the Python tokenizer's. */
TEST(parity_with_hugging_face)
{
    wf_tokenizer_t *tl = load_fix(true), *tc = load_fix(false);
    CHECK(tl && tc);
    if (!tl || !tc)
        return;
    FILE *f = fopen(FIX "cases.jsonl", "r");
    CHECK(f != NULL);
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    int n[2] = { 0 }, fast_ok[2] = { 0 }, slow_ok[2] = { 0 }, slow_fast_eq[2] = { 0 }, trunc_ok = 0, trunc_n = 0;
    static int32_t ids[8192];
    static unsigned char raw[65536];
    int shown = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *rec = json_loads(line, JSON_ALLOW_NUL, &je);
        CHECK(rec != NULL);
        if (!rec)
            continue;
        json_t *jt = json_object_get(rec, "text"), *jh = json_object_get(rec, "hex");
        bool lower = json_is_true(json_object_get(rec, "lower"));
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        if (jh) {
            len = unhex(json_string_value(jh), raw);
            text = (const char *)raw;
        }
        wf_tokenizer_t *t = lower ? tl : tc;
        int m = wf_tokenizer_encode(t, text, len, ids, 8192);
        json_t *fast = json_object_get(rec, "ids_fast"), *slow = json_object_get(rec, "ids_slow");
        n[lower]++;
        bool okf = m > 0 && ids_eq(ids, m, fast);
        fast_ok[lower] += okf;
        slow_ok[lower] += m > 0 && ids_eq(ids, m, slow ? slow : fast);
        slow_fast_eq[lower] += slow == NULL;
        if (!okf && shown++ < 10) {
            fprintf(stderr, "mismatch (lower=%d) text=%s\n  ours:", lower, json_dumps(jt, JSON_ENCODE_ANY));
            for (int i = 0; i < m; i++)
                fprintf(stderr, " %d", ids[i]);
            fprintf(stderr, "\n  fast: %s\n", json_dumps(fast, 0));
        }
        /* tokenize() counts the same tokens, without [CLS]/[SEP] */
        CHECK_EQ_INT(wf_tokenizer_tokenize(t, text, len, NULL, 0), (int)json_array_size(fast) - 2);
        json_t *t16 = json_object_get(rec, "t16");
        if (t16) {
            int32_t tr[16];
            int k = wf_tokenizer_encode(t, text, len, tr, 16);
            trunc_n++;
            trunc_ok += ids_eq(tr, k, t16);
        }
        json_decref(rec);
    }
    free(line);
    fclose(f);
    for (int lc = 1; lc >= 0; lc--)
        printf("parity lower=%d: %d/%d identical to BertTokenizerFast, %d/%d to BertTokenizer (Python); "
               "HF slow==fast on %d/%d\n", lc, fast_ok[lc], n[lc], slow_ok[lc], n[lc], slow_fast_eq[lc], n[lc]);
    printf("parity truncation max_len=16: %d/%d\n", trunc_ok, trunc_n);
    CHECK(n[0] > 2000 && n[1] > 2000);
    CHECK_EQ_INT(fast_ok[0], n[0]);
    CHECK_EQ_INT(fast_ok[1], n[1]);
    CHECK(trunc_n > 50);
    CHECK_EQ_INT(trunc_ok, trunc_n);
    wf_tokenizer_free(tl);
    wf_tokenizer_free(tc);
}

/* Encodes text and compares with the ids of the given space-separated tokens. */
static bool toks_are_n(const wf_tokenizer_t *t, const char *text, size_t len, const char *want)
{
    int32_t ids[256], exp[256];
    int n = wf_tokenizer_tokenize(t, text, len, ids, 256);
    int m = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", want);
    for (char *sv, *p = strtok_r(buf, " ", &sv); p; p = strtok_r(NULL, " ", &sv)) {
        exp[m] = wf_tokenizer_token_id(t, p);
        if (exp[m] < 0) {
            fprintf(stderr, "test token %s not in vocab\n", p);
            return false;
        }
        m++;
    }
    bool ok = n == m && memcmp(ids, exp, (size_t)m * sizeof(int32_t)) == 0;
    if (!ok) {
        fprintf(stderr, "\"%s\": got", text);
        for (int i = 0; i < n && i < 256; i++)
            fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, ", want");
        for (int i = 0; i < m; i++)
            fprintf(stderr, " %d", exp[i]);
        fprintf(stderr, "\n");
    }
    return ok;
}

static bool toks_are(const wf_tokenizer_t *t, const char *text, const char *want)
{
    return toks_are_n(t, text, strlen(text), want);
}

TEST(wordpiece_hand_written)
{
    wf_tokenizer_t *l = load_fix(true), *c = load_fix(false);
    CHECK(l && c);
    if (!l || !c)
        return;
    CHECK(toks_are(l, "Hello, World!", "hello , world !"));
    CHECK(toks_are(l, "  hello\t\n\r world  ", "hello world"));
    CHECK(toks_are(l, "", ""));
    CHECK(toks_are(l, "\x01\x7f\xc2\x85 \xe2\x80\x8b", ""));
    /* special tokens are matched in the raw text, case-sensitively */
    CHECK(toks_are(l, "hello [CLS] world", "hello [CLS] world"));
    CHECK(toks_are(l, "x[SEP]y", "x [SEP] y"));
    CHECK(toks_are(l, "[cls]", "[ cl ##s ]"));
    /* a NUL inside does not make a special token (the Python tokenizer differs) */
    CHECK(toks_are_n(l, "[CL\0S]", 6, "[ cl ##s ]"));
    /* accents: stripped with lower-casing, kept without */
    CHECK(toks_are(l, "Caf\xc3\xa9", "cafe"));
    CHECK(toks_are(l, "CAFE\xcc\x81", "cafe"));
    CHECK(toks_are(c, "caf\xc3\xa9", "café"));
    /* U+0130: NFD then drop the dot, then lower: "i" */
    CHECK(toks_are(l, "\xc4\xb0", "i"));
    /* final sigma: the fast tokenizer lower-cases every capital sigma to U+03C3 */
    CHECK(toks_are(l, "a\xce\xa3", "a ##σ"));
    /* CJK ideographs are split; 0x2B820 (BERT's range) is not, as in the Rust library */
    CHECK(toks_are(l, "\xe4\xb8\xad\xe6\x96\x87", "中 文"));
    /* words longer than 100 code points are [UNK] */
    char w[200];
    memset(w, 'x', 101);
    w[101] = 0;
    CHECK(toks_are(l, w, "[UNK]"));
    w[100] = 0;
    CHECK(wf_tokenizer_tokenize(l, w, 100, NULL, 0) >= 1);
    int32_t one;
    CHECK(wf_tokenizer_tokenize(l, w, 100, &one, 1) >= 1 && one != wf_tokenizer_token_id(l, "[UNK]"));
    /* an unknown character makes the whole word [UNK] */
    CHECK(toks_are(l, "abc\xf0\x9f\x9b\xb8", "[UNK]"));
    wf_tokenizer_free(l);
    wf_tokenizer_free(c);
}

TEST(invalid_utf8_is_dropped)
{
    wf_tokenizer_t *l = load_fix(true);
    CHECK(l != NULL);
    if (!l)
        return;
    CHECK(toks_are(l, "hel\xfflo", "hello"));
    CHECK(toks_are(l, "\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80hello\xe2\x82", "hello"));
    CHECK(toks_are(l, "[CLS]\xff[SEP]", "[CLS] [SEP]"));
    wf_tokenizer_free(l);
}

TEST(encode_truncates_and_wraps)
{
    wf_tokenizer_t *l = load_fix(true);
    CHECK(l != NULL);
    if (!l)
        return;
    int32_t cls = wf_tokenizer_token_id(l, "[CLS]"), sep = wf_tokenizer_token_id(l, "[SEP]");
    int32_t ids[8];
    CHECK_EQ_INT(wf_tokenizer_encode(l, "", 0, ids, 8), 2);
    CHECK(ids[0] == cls && ids[1] == sep);
    CHECK_EQ_INT(wf_tokenizer_encode(l, "a b c d e f g h i j", 19, ids, 5), 5);
    CHECK(ids[0] == cls && ids[1] == wf_tokenizer_token_id(l, "a") && ids[3] == wf_tokenizer_token_id(l, "c") &&
          ids[4] == sep);
    CHECK_EQ_INT(wf_tokenizer_encode(l, "a", 1, ids, 2), 2);
    CHECK(ids[0] == cls && ids[1] == sep);
    CHECK(wf_tokenizer_encode(l, "a", 1, ids, 1) < 0);
    CHECK(wf_tokenizer_encode(l, NULL, 3, ids, 8) < 0);
    CHECK_EQ_INT(wf_tokenizer_encode(l, NULL, 0, ids, 8), 2);
    /* tokenize() returns the full count even past cap */
    CHECK_EQ_INT(wf_tokenizer_tokenize(l, "a b c d e f g h i j", 19, ids, 3), 10);
    wf_tokenizer_free(l);
}

TEST(byte_tokenizer)
{
    wf_tok_opts_t o = { .kind = WF_TOK_BYTES, .max_input_chars_per_word = 100, .strip_accents = -1 };
    wf_tokenizer_t *t = NULL;
    wf_err_t err;
    CHECK(wf_tokenizer_load(NULL, &o, &t, &err) == WF_OK);
    if (!t)
        return;
    CHECK_EQ_INT(wf_tokenizer_vocab_size(t), 261);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[PAD]"), 0);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[UNK]"), 1);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[CLS]"), 2);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[SEP]"), 3);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[MASK]"), 4);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "A"), 'A' + 5);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "AB"), -1);
    int32_t ids[8];
    /* no normalisation, no special-token matching, raw bytes (NUL and 0xFF too) */
    CHECK_EQ_INT(wf_tokenizer_encode(t, "A\0\xff", 3, ids, 8), 5);
    CHECK(ids[0] == 2 && ids[1] == 'A' + 5 && ids[2] == 5 && ids[3] == 260 && ids[4] == 3);
    CHECK_EQ_INT(wf_tokenizer_encode(t, "[CLS]xyz", 8, ids, 4), 4);
    CHECK(ids[0] == 2 && ids[1] == '[' + 5 && ids[2] == 'C' + 5 && ids[3] == 3);
    CHECK_EQ_INT(wf_tokenizer_tokenize(t, "hello", 5, ids, 2), 5);
    wf_tokenizer_free(t);
}

static wf_status_t load_str(const char *content, size_t len, bool lower, wf_tokenizer_t **t, wf_err_t *err)
{
    char path[] = "/tmp/wafer-vocab-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return WF_ERR_IO;
    if (write(fd, content, len) != (ssize_t)len) {
        close(fd);
        return WF_ERR_IO;
    }
    close(fd);
    wf_tok_opts_t o = wp_opts(lower);
    wf_status_t st = wf_tokenizer_load(path, &o, t, err);
    unlink(path);
    return st;
}

#define BASE "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n"

TEST(vocab_loading)
{
    wf_tokenizer_t *t = NULL;
    wf_err_t err;
    /* duplicates: last wins (Hugging Face does the same); vocab size counts lines */
    const char dup[] = BASE "abc\nxyz\nabc\nd\n";
    CHECK(load_str(dup, sizeof dup - 1, false, &t, &err) == WF_OK);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "abc"), 7);
    CHECK_EQ_INT(wf_tokenizer_vocab_size(t), 9);
    wf_tokenizer_free(t);
    /* CRLF, no final newline */
    const char crlf[] = "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nabc";
    CHECK(load_str(crlf, sizeof crlf - 1, false, &t, &err) == WF_OK);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "abc"), 4);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "[MASK]"), -1);
    CHECK_EQ_INT(wf_tokenizer_vocab_size(t), 5);
    /* without [MASK] in the vocabulary "[MASK]" is ordinary text */
    int32_t ids[8];
    CHECK_EQ_INT(wf_tokenizer_tokenize(t, "[MASK]", 6, ids, 8), 3); /* "[" "MASK" "]", none in the vocab */
    CHECK(ids[0] == 1 && ids[1] == 1 && ids[2] == 1);
    wf_tokenizer_free(t);
    /* blank lines take an id */
    const char blank[] = BASE "abc\n\nxyz\n";
    CHECK(load_str(blank, sizeof blank - 1, false, &t, &err) == WF_OK);
    CHECK_EQ_INT(wf_tokenizer_token_id(t, "xyz"), 7);
    wf_tokenizer_free(t);

    struct {
        const char *content;
        size_t len;
        wf_status_t st;
        const char *msg;
    } bad[] = {
        { "[PAD]\n[CLS]\n[SEP]\n", 18, WF_ERR_FORMAT, "no [UNK]" },
        { "\xef\xbb\xbf" BASE, 3 + sizeof BASE - 1, WF_ERR_FORMAT, ":1: starts with a UTF-8 byte order mark" },
        { BASE "abc\rdef\n", sizeof BASE - 1 + 8, WF_ERR_FORMAT, ":6: carriage return" },
        { BASE "abc \n", sizeof BASE - 1 + 5, WF_ERR_FORMAT, ":6: token begins or ends with whitespace" },
        { BASE "x\n\tabc\n", sizeof BASE - 1 + 7, WF_ERR_FORMAT, ":7: token begins or ends with whitespace" },
        { BASE "ab\xffz\n", sizeof BASE - 1 + 5, WF_ERR_FORMAT, ":6: invalid UTF-8" },
        { BASE "a\0b\n", sizeof BASE - 1 + 4, WF_ERR_FORMAT, ":6: NUL byte" },
        { "", 0, WF_ERR_FORMAT, "empty vocabulary" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        t = NULL;
        err.msg[0] = 0;
        wf_status_t st = load_str(bad[i].content, bad[i].len, true, &t, &err);
        CHECK_EQ_INT(st, bad[i].st);
        CHECK(t == NULL);
        if (!strstr(err.msg, bad[i].msg) || !strstr(err.msg, "/tmp/wafer-vocab-")) {
            fprintf(stderr, "case %zu: message \"%s\" lacks \"%s\" or the path\n", i, err.msg, bad[i].msg);
            CHECK(0);
        }
    }
    /* a token over the length limit */
    static char longv[sizeof BASE + 600];
    memcpy(longv, BASE, sizeof BASE - 1);
    memset(longv + sizeof BASE - 1, 'a', 590);
    longv[sizeof BASE - 1 + 590] = '\n';
    CHECK(load_str(longv, sizeof BASE + 590, true, &t, &err) == WF_ERR_LIMIT);
    CHECK(strstr(err.msg, ":6: token longer than") != NULL);
    /* missing file, bad options */
    wf_tok_opts_t o = wp_opts(true);
    CHECK(wf_tokenizer_load("/nonexistent/vocab.txt", &o, &t, &err) == WF_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/vocab.txt") != NULL);
    CHECK(wf_tokenizer_load(NULL, &o, &t, &err) == WF_ERR_INVALID);
    o.max_input_chars_per_word = 0;
    CHECK(wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err) == WF_ERR_INVALID);
    o.max_input_chars_per_word = 100;
    o.strip_accents = 2;
    CHECK(wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err) == WF_ERR_INVALID);
}

TEST(options)
{
    /* strip_accents=0 with lower-casing keeps the accents; U+0130 lower-cases to "i" + U+0307 */
    wf_tok_opts_t o = wp_opts(true);
    o.strip_accents = 0;
    wf_tokenizer_t *t = NULL;
    wf_err_t err;
    CHECK(wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err) == WF_OK);
    if (t) {
        CHECK(toks_are(t, "CAF\xc3\x89", "café"));
        CHECK(toks_are(t, "\xc4\xb0", "i\xcc\x87"));
        wf_tokenizer_free(t);
    }
    /* no CJK splitting: a run of ideographs is one word */
    o = wp_opts(true);
    o.tokenize_chinese_chars = false;
    CHECK(wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err) == WF_OK);
    if (t) {
        CHECK(toks_are(t, "\xe4\xb8\xad\xe6\x96\x87", "中 ##文"));
        wf_tokenizer_free(t);
    }
    /* a smaller max_input_chars_per_word */
    o = wp_opts(true);
    o.max_input_chars_per_word = 3;
    CHECK(wf_tokenizer_load(FIX "vocab.txt", &o, &t, &err) == WF_OK);
    if (t) {
        CHECK(toks_are(t, "the have", "the [UNK]"));
        wf_tokenizer_free(t);
    }
}

TEST(speed)
{
    wf_tokenizer_t *l = load_fix(true);
    CHECK(l != NULL);
    if (!l)
        return;
    static const char *texts[] = {
        "GET /index.php?id=1%27%20OR%201=1-- HTTP/1.1",
        "username=admin&password=hunter2&remember=on&redirect=%2Fdashboard%3Ftab%3Dsettings",
        "<script>alert(document.cookie)</script> hello world the request header cookie session",
        "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e \xce\x9f\xce\x94\xce\x9f\xce\xa3 \xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xb8\xad\xe6\x96\x87",
        "1 UNION SELECT username, password FROM users WHERE id = 1 /*!50000UNION*/ SELECT 1,2,3 -- ",
    };
    int32_t ids[512];
    long tokens = 0, bytes = 0;
    uint64_t t0 = wf_now_ns();
    int iters = 20000;
    for (int i = 0; i < iters; i++) {
        const char *s = texts[i % 5];
        size_t n = strlen(s);
        int k = wf_tokenizer_encode(l, s, n, ids, 512);
        tokens += k;
        bytes += (long)n;
    }
    double sec = (double)(wf_now_ns() - t0) / 1e9;
    printf("speed: %d strings, %ld tokens, %.1f MB/s, %.2f M tokens/s, %.2f us/string\n", iters, tokens,
           (double)bytes / sec / 1e6, (double)tokens / sec / 1e6, sec / iters * 1e6);
    CHECK(tokens > iters * 10);
    wf_tokenizer_free(l);
}

TEST_MAIN()
