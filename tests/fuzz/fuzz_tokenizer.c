/* libFuzzer target: the tokenizers on arbitrary bytes. The first byte picks
 * the tokenizer (WordPiece lower-cased, cased, lower-cased without accent
 * stripping or CJK splitting and 7-character words, bytes), the second the
 * lengths; the rest is the text, in a private buffer of exactly its size so
 * that any over-read is reported. Checks: ids in range, [CLS] ... [SEP] within
 * max_len, and encode() == [CLS] + the first tokenize() ids + [SEP]. */
#include "wafer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static wf_tokenizer_t *toks[4];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *vocab = WAFER_SOURCE_DIR "/tests/fixtures/tokenizer/vocab.txt";
    wf_tok_opts_t o = { .kind = WF_TOK_WORDPIECE, .lowercase = true, .strip_accents = -1,
                        .tokenize_chinese_chars = true, .max_input_chars_per_word = 100 };
    wf_err_t err;
    for (int i = 0; i < 4; i++) {
        wf_tok_opts_t oi = o;
        if (i == 1)
            oi.lowercase = false;
        if (i == 2) {
            oi.strip_accents = 0;
            oi.tokenize_chinese_chars = false;
            oi.max_input_chars_per_word = 7;
        }
        if (i == 3)
            oi.kind = WF_TOK_BYTES;
        if (wf_tokenizer_load(i == 3 ? NULL : vocab, &oi, &toks[i], &err) != WF_OK) {
            fprintf(stderr, "fuzz_tokenizer: %s\n", err.msg);
            abort();
        }
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    const wf_tokenizer_t *t = toks[data[0] % 4];
    int max_len = 2 + data[1] % 64;
    size_t len = size - 2;
    char *text = malloc(len ? len : 1);
    int32_t *ids = malloc((size_t)max_len * sizeof(int32_t));
    if (!text || !ids)
        abort();
    memcpy(text, data + 2, len);
    int vocab = wf_tokenizer_vocab_size(t);
    int32_t cls = wf_tokenizer_token_id(t, "[CLS]"), sep = wf_tokenizer_token_id(t, "[SEP]");

    int n = wf_tokenizer_encode(t, text, len, ids, max_len);
    if (n < 2 || n > max_len || ids[0] != cls || ids[n - 1] != sep)
        abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= vocab)
            abort();

    int total = wf_tokenizer_tokenize(t, text, len, NULL, 0);
    if (total < 0 || (size_t)total > len)
        abort(); /* never more tokens than input bytes */
    int32_t *all = malloc((size_t)(total ? total : 1) * sizeof(int32_t));
    if (!all)
        abort();
    if (wf_tokenizer_tokenize(t, text, len, all, total) != total)
        abort();
    int keep = total < max_len - 2 ? total : max_len - 2;
    if (n != keep + 2 || memcmp(ids + 1, all, (size_t)keep * sizeof(int32_t)) != 0)
        abort();
    for (int i = 0; i < total; i++)
        if (all[i] < 0 || all[i] >= vocab)
            abort();
    free(all);
    free(ids);
    free(text);
    return 0;
}
