/*
 * Tokenizers: BERT WordPiece with the output of Hugging Face's
 * BertTokenizerFast (the Rust `tokenizers` library), and a byte tokenizer.
 *
 * The BERT pipeline, in the order the Rust library applies it:
 *   1. special tokens ([PAD] [UNK] [CLS] [SEP] [MASK], when in the vocabulary)
 *      are matched on the raw input, case-sensitively, before anything else;
 *   2. clean-up: drop NUL, U+FFFD and "other" characters, map whitespace to ' ';
 *   3. put spaces around CJK ideographs;
 *   4. strip accents: NFD, then drop non-spacing marks;
 *   5. lower-case (full mapping: U+0130 gives two code points; no final sigma);
 *   6. split on whitespace, isolate punctuation;
 *   7. WordPiece, greedy longest match first, "##" continuation, a word of more
 *      than max_input_chars_per_word code points becomes [UNK].
 * The sets of steps 2, 3, 4 and 6 come from tok_tables.h, generated from a probe
 * of the Rust library; NFD and lower-casing use utf8proc with the exceptions the
 * probe found.
 *
 * The Python BertTokenizer (BertTokenizerLegacy in transformers 5) differs from
 * the fast one, and so from us, in: final sigma (str.lower() gives U+03C2);
 * unassigned code points and newer format characters (it drops them); newer
 * punctuation and non-spacing marks (it splits / strips them); U+2B820-U+2B91F
 * (it splits them as CJK); NFC before everything (it composes, e.g. U+F900 ->
 * U+8C48); and a special token that appears only after clean-up ("[CL\0S]"
 * is [CLS] there). Details in docs/model-format.md, "Tokenizer". We follow the
 * fast one: it is what transformers loads by default, so models are trained
 * with it.
 *
 * The text is processed in one pass, one word at a time, in a bounded buffer
 * on the stack: nothing is allocated per call.
 */
#include "wafer/core.h"
#include "wafer/infer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <utf8proc.h>

#include "infer/tok_tables.h"

#define TOK_MAX_FILE (64u << 20)   /* vocab.txt size limit */
#define TOK_MAX_LINES (1u << 20)   /* vocabulary entries */
#define TOK_MAX_TOKEN_BYTES 512    /* one vocabulary token */
#define TOK_MAX_WORD_CHARS 1024    /* max_input_chars_per_word upper bound */
#define TOK_BYTES_VOCAB 261
#define TOK_HASH_SEED 0x7a3c1d5e9b2f4861ull

enum { SP_PAD, SP_UNK, SP_CLS, SP_SEP, SP_MASK, SP__COUNT };
static const char *const sp_names[SP__COUNT] = { "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]" };

typedef struct {
    uint32_t off; /* into t->blob */
    uint32_t len;
    int32_t id;
} tok_ent_t;

struct wf_tokenizer {
    wf_tok_opts_t opts;
    bool strip;
    int vocab_size;
    char *blob; /* vocab.txt contents; entries point into it */
    /* Open addressing. Most lookups miss (WordPiece tries the longest piece
     * first), so probing reads only the small tag array; 0 marks a free slot. */
    uint32_t *tags;
    tok_ent_t *tab;
    uint32_t mask;
    int max_token_bytes;
    int32_t sp[SP__COUNT]; /* special token ids, -1 if absent */
};

/* ------------------------------------------------------------ character classes */

enum { CC_OTHER = 0, CC_DROP, CC_SPACE, CC_PUNCT };
static uint8_t ascii_class[128];
static pthread_once_t ascii_once = PTHREAD_ONCE_INIT;

static bool in_ranges(const uint32_t (*r)[2], size_t n, uint32_t cp)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < r[mid][0])
            hi = mid;
        else if (cp > r[mid][1])
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

#define IN(tab, cp) in_ranges(tab, WF_ARRAY_LEN(tab), cp)

static int char_class_slow(uint32_t cp)
{
    if (IN(tok_drop, cp))
        return CC_DROP;
    if (cp == ' ' || IN(tok_space, cp))
        return CC_SPACE;
    if (IN(tok_punct, cp))
        return CC_PUNCT;
    return CC_OTHER;
}

static void ascii_init(void)
{
    for (uint32_t c = 0; c < 128; c++)
        ascii_class[c] = (uint8_t)char_class_slow(c);
}

static inline int char_class(uint32_t cp)
{
    return cp < 128 ? ascii_class[cp] : char_class_slow(cp);
}

static inline bool is_punct(uint32_t cp)
{
    return cp < 128 ? ascii_class[cp] == CC_PUNCT : IN(tok_punct, cp);
}

/* Strict UTF-8 decoding (no overlongs, surrogates or values past U+10FFFF).
 * An invalid byte yields U+FFFD and advances by one; U+FFFD is then dropped by
 * the clean-up, so the result equals the Hugging Face tokenizers' output for
 * the text decoded with errors="replace" (however many U+FFFD that gives). */
static inline uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i)
{
    size_t k = *i;
    unsigned c = s[k];
    if (c < 0x80) {
        *i = k + 1;
        return c;
    }
    uint32_t cp;
    size_t need;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        cp = c & 0x1F, need = 1, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        cp = c & 0x0F, need = 2, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        cp = c & 0x07, need = 3, min = 0x10000;
    } else {
        *i = k + 1;
        return 0xFFFD;
    }
    if (n - k - 1 < need) {
        *i = k + 1;
        return 0xFFFD;
    }
    for (size_t j = 1; j <= need; j++) {
        unsigned b = s[k + j];
        if ((b & 0xC0) != 0x80) {
            *i = k + 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *i = k + 1;
        return 0xFFFD;
    }
    *i = k + 1 + need;
    return cp;
}

/* Canonical decomposition of one code point, for accent stripping (the marks
 * are dropped by the caller). */
static int decompose_cp(uint32_t cp, uint32_t *out)
{
    if (cp < 0xC0) {
        out[0] = cp;
        return 1;
    }
    for (size_t i = 0; i < WF_ARRAY_LEN(tok_strip_exc); i++) {
        if (tok_strip_exc[i].cp == cp) {
            for (int j = 0; j < tok_strip_exc[i].n; j++)
                out[j] = tok_strip_exc[i].to[j];
            return tok_strip_exc[i].n;
        }
    }
    utf8proc_int32_t d[8];
    int last = 0;
    utf8proc_ssize_t n = utf8proc_decompose_char((utf8proc_int32_t)cp, d, 8, UTF8PROC_DECOMPOSE, &last);
    if (n < 1 || n > 8) {
        out[0] = cp;
        return 1;
    }
    for (int i = 0; i < n; i++)
        out[i] = (uint32_t)d[i];
    return (int)n;
}

static int lower_cp(uint32_t cp, uint32_t *out)
{
    if (cp < 128) {
        out[0] = (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
        return 1;
    }
    size_t lo = 0, hi = WF_ARRAY_LEN(tok_lower_exc);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cp < tok_lower_exc[mid].cp)
            hi = mid;
        else if (cp > tok_lower_exc[mid].cp)
            lo = mid + 1;
        else {
            for (int j = 0; j < tok_lower_exc[mid].n; j++)
                out[j] = tok_lower_exc[mid].to[j];
            return tok_lower_exc[mid].n;
        }
    }
    out[0] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
    return 1;
}

static inline int ccc(uint32_t cp)
{
    return cp < 0x300 ? 0 : utf8proc_get_property((utf8proc_int32_t)cp)->combining_class;
}

/* ------------------------------------------------------------ vocabulary lookup */

static inline uint32_t tag_of(uint64_t h)
{
    return (uint32_t)(h >> 32) | 1u;
}

static int32_t vocab_find(const wf_tokenizer_t *t, const char *p, size_t n)
{
    uint64_t h = wf_hash64(p, n, TOK_HASH_SEED);
    uint32_t tag = tag_of(h);
    for (uint32_t i = (uint32_t)h & t->mask; t->tags[i]; i = (i + 1) & t->mask) {
        const tok_ent_t *e = &t->tab[i];
        if (t->tags[i] == tag && e->len == n && memcmp(t->blob + e->off, p, n) == 0)
            return e->id;
    }
    return -1;
}

/* ------------------------------------------------------------ the WordPiece pass */

typedef struct {
    const wf_tokenizer_t *t;
    int32_t *ids;
    int cap;
    int count;      /* tokens produced (may exceed cap) */
    bool stop;      /* stop once cap tokens are out (encode) */
    /* the current word, normalised */
    uint32_t cps[TOK_MAX_WORD_CHARS + 40];
    int n;          /* code points stored */
    int nchars;     /* code points seen (n, or more once the word is too long) */
    int fence;      /* canonical reordering does not move a mark before this index */
    char bytes[2 + 4 * (TOK_MAX_WORD_CHARS + 40)];
    uint16_t off[TOK_MAX_WORD_CHARS + 41];
} tok_run_t;

static inline void emit(tok_run_t *r, int32_t id)
{
    if (r->count < r->cap)
        r->ids[r->count] = id;
    r->count++;
}

static void word_flush(tok_run_t *r)
{
    const wf_tokenizer_t *t = r->t;
    int n = r->n;
    if (r->nchars == 0)
        return;
    if (r->nchars > t->opts.max_input_chars_per_word) {
        emit(r, t->sp[SP_UNK]);
        r->n = r->nchars = r->fence = 0;
        return;
    }
    /* UTF-8 of the word at bytes+2; "##" is written over the two bytes before
     * a continuation piece, which belong to pieces already matched. */
    char *b = r->bytes + 2;
    int len = 0;
    for (int i = 0; i < n; i++) {
        r->off[i] = (uint16_t)len;
        len += (int)wf_utf8_put(b + len, r->cps[i]);
    }
    r->off[n] = (uint16_t)len;
    int first = r->count;
    int start = 0;
    while (start < n) {
        int pre = start > 0 ? 2 : 0;
        int end = n;
        while (end > start && r->off[end] - r->off[start] + pre > t->max_token_bytes)
            end--;
        int32_t id = -1;
        char *p = b + r->off[start] - pre;
        if (pre) {
            p[0] = '#';
            p[1] = '#';
        }
        for (; end > start; end--) {
            id = vocab_find(t, p, (size_t)(r->off[end] - r->off[start] + pre));
            if (id >= 0)
                break;
        }
        if (id < 0) {
            /* the whole word is [UNK]: drop the pieces emitted for it */
            r->count = first;
            emit(r, t->sp[SP_UNK]);
            r->n = r->nchars = r->fence = 0;
            return;
        }
        emit(r, id);
        start = end;
    }
    r->n = r->nchars = r->fence = 0;
}

static inline void word_add(tok_run_t *r, uint32_t cp, bool reorder)
{
    r->nchars++;
    if (r->nchars > r->t->opts.max_input_chars_per_word)
        return; /* [UNK] anyway; keep counting only */
    int i = r->n++;
    r->cps[i] = cp;
    if (reorder) {
        /* canonical ordering (part of NFD): a mark moves before marks of a higher class */
        int c = ccc(cp);
        while (c != 0 && i > r->fence) {
            int pc = ccc(r->cps[i - 1]);
            if (pc <= c)
                break;
            r->cps[i] = r->cps[i - 1];
            r->cps[i - 1] = cp;
            i--;
        }
    }
}

static bool done(const tok_run_t *r)
{
    return r->stop && r->count >= r->cap;
}

/* Normalises one cleaned, non-space code point and adds it to the word,
 * isolating punctuation produced by the normalisation. NFD's canonical
 * ordering runs over the marks before they are dropped, so a dropped mark of
 * class 0 still stops reordering across it. */
static void add_cp(tok_run_t *r, uint32_t cp)
{
    const wf_tokenizer_t *t = r->t;
    uint32_t a[8], b[3];
    int na;
    if (t->strip)
        na = decompose_cp(cp, a);
    else
        a[0] = cp, na = 1;
    for (int i = 0; i < na; i++) {
        uint32_t d = a[i];
        if (t->strip && d >= 0x300 && IN(tok_mark, d)) {
            if (ccc(d) == 0)
                r->fence = r->n;
            continue;
        }
        int nb = 1;
        if (t->opts.lowercase)
            nb = lower_cp(d, b);
        else
            b[0] = d;
        for (int j = 0; j < nb; j++) {
            if (is_punct(b[j])) {
                word_flush(r);
                word_add(r, b[j], false);
                word_flush(r);
            } else {
                word_add(r, b[j], t->strip);
            }
        }
    }
}

static int special_at(const wf_tokenizer_t *t, const unsigned char *s, size_t n)
{
    for (int k = 0; k < SP__COUNT; k++) {
        if (t->sp[k] < 0)
            continue;
        size_t l = strlen(sp_names[k]);
        if (l <= n && memcmp(s, sp_names[k], l) == 0)
            return k;
    }
    return -1;
}

static void run_wordpiece(tok_run_t *r, const unsigned char *s, size_t n)
{
    const wf_tokenizer_t *t = r->t;
    size_t i = 0;
    r->n = r->nchars = r->fence = 0;
    while (i < n && !done(r)) {
        unsigned c = s[i];
        if (c == '[') {
            int k = special_at(t, s + i, n - i);
            if (k >= 0) {
                word_flush(r);
                emit(r, t->sp[k]);
                i += strlen(sp_names[k]);
                continue;
            }
        }
        uint32_t cp = utf8_next(s, n, &i);
        switch (char_class(cp)) {
        case CC_DROP:
            continue;
        case CC_SPACE:
            word_flush(r);
            continue;
        case CC_PUNCT:
            if (!t->strip && !t->opts.lowercase) {
                word_flush(r);
                word_add(r, cp, false);
                word_flush(r);
                continue;
            }
            break;
        default:
            break;
        }
        if (cp >= 0x3400 && t->opts.tokenize_chinese_chars && IN(tok_cjk, cp)) {
            word_flush(r);
            add_cp(r, cp);
            word_flush(r);
            continue;
        }
        add_cp(r, cp);
    }
    if (!done(r))
        word_flush(r);
}

static int run_bytes(tok_run_t *r, const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n && !done(r); i++)
        emit(r, (int32_t)s[i] + 5);
    return r->count;
}

static int tok_run(const wf_tokenizer_t *t, const char *text, size_t len, int32_t *ids, int cap, bool stop)
{
    if (!t || (!text && len) || (!ids && cap > 0) || cap < 0)
        return -(int)WF_ERR_INVALID;
    if (!stop && len > (size_t)INT32_MAX / 2)
        return -(int)WF_ERR_LIMIT; /* the count could not be returned */
    tok_run_t r; /* ~10 KiB on the stack; its arrays need no initialisation */
    r.t = t;
    r.ids = ids;
    r.cap = cap;
    r.count = 0;
    r.stop = stop;
    r.n = r.nchars = r.fence = 0;
    if (t->opts.kind == WF_TOK_BYTES)
        run_bytes(&r, (const unsigned char *)text, len);
    else
        run_wordpiece(&r, (const unsigned char *)text, len);
    return r.count;
}

int wf_tokenizer_tokenize(const wf_tokenizer_t *t, const char *text, size_t len, int32_t *ids, int cap)
{
    return tok_run(t, text, len, ids, cap, false);
}

int wf_tokenizer_encode(const wf_tokenizer_t *t, const char *text, size_t len, int32_t *ids, int max_len)
{
    if (!t || !ids || max_len < 2)
        return -(int)WF_ERR_INVALID;
    int n = tok_run(t, text, len, ids + 1, max_len - 2, true);
    if (n < 0)
        return n;
    if (n > max_len - 2)
        n = max_len - 2;
    ids[0] = t->sp[SP_CLS];
    ids[n + 1] = t->sp[SP_SEP];
    return n + 2;
}

/* ------------------------------------------------------------ loading */

static wf_status_t fail(wf_err_t *err, wf_status_t st, const char *fmt, ...) WF_PRINTF(3, 4);

static wf_status_t fail(wf_err_t *err, wf_status_t st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return st;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = i;
        if (utf8_next(s, n, &k) == 0xFFFD && !(n - i >= 3 && s[i] == 0xEF && s[i + 1] == 0xBF && s[i + 2] == 0xBD))
            return false;
        i = k;
    }
    return true;
}


static wf_status_t load_vocab(wf_tokenizer_t *t, const char *path, wf_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, WF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0;
    wf_status_t st = WF_OK;
    if (fseek(f, 0, SEEK_END) != 0) {
        st = fail(err, WF_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        goto out;
    }
    long sz = ftell(f);
    if (sz < 0 || (unsigned long)sz > TOK_MAX_FILE) {
        st = fail(err, sz < 0 ? WF_ERR_IO : WF_ERR_LIMIT, "%s: %s", path,
                  sz < 0 ? "cannot size" : "larger than 64 MiB");
        goto out;
    }
    rewind(f);
    len = (size_t)sz;
    buf = malloc(len + 1);
    if (!buf) {
        st = fail(err, WF_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (len && fread(buf, 1, len, f) != len) {
        st = fail(err, WF_ERR_IO, "%s: read error", path);
        goto out;
    }
    buf[len] = '\0';
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0) {
        st = fail(err, WF_ERR_FORMAT, "%s:1: starts with a UTF-8 byte order mark (Hugging Face would read it "
                  "as part of the first token)", path);
        goto out;
    }

    /* count lines: a final newline ends the last line; it does not start another */
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    if (len && buf[len - 1] != '\n')
        lines++;
    if (lines == 0) {
        st = fail(err, WF_ERR_FORMAT, "%s: empty vocabulary", path);
        goto out;
    }
    if (lines > TOK_MAX_LINES) {
        st = fail(err, WF_ERR_LIMIT, "%s: more than %u tokens", path, TOK_MAX_LINES);
        goto out;
    }
    uint32_t cap = 16;
    while (cap < lines * 4)
        cap <<= 1;
    t->tab = malloc((size_t)cap * sizeof(tok_ent_t));
    t->tags = calloc(cap, sizeof(uint32_t));
    if (!t->tab || !t->tags) {
        st = fail(err, WF_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    t->mask = cap - 1;
    t->blob = buf;

    size_t pos = 0;
    for (size_t line = 0; line < lines; line++) {
        size_t e = pos;
        while (e < len && buf[e] != '\n')
            e++;
        size_t tl = e - pos;
        if (tl && buf[pos + tl - 1] == '\r')
            tl--; /* CRLF: both Hugging Face tokenizers drop the CR */
        const char *tok = buf + pos;
        unsigned long ln = (unsigned long)line + 1;
        if (memchr(tok, '\r', tl)) {
            st = fail(err, WF_ERR_FORMAT, "%s:%lu: carriage return inside a token (the Python tokenizer "
                      "splits the line there, the Rust one does not)", path, ln);
            goto out;
        }
        if (memchr(tok, '\0', tl)) {
            st = fail(err, WF_ERR_FORMAT, "%s:%lu: NUL byte in token", path, ln);
            goto out;
        }
        if (tl && (tok[0] == ' ' || tok[0] == '\t' || tok[0] == '\v' || tok[0] == '\f' || tok[tl - 1] == ' ' ||
                   tok[tl - 1] == '\t' || tok[tl - 1] == '\v' || tok[tl - 1] == '\f')) {
            st = fail(err, WF_ERR_FORMAT, "%s:%lu: token begins or ends with whitespace (the Python tokenizer "
                      "keeps it, the Rust one strips it)", path, ln);
            goto out;
        }
        if (tl > TOK_MAX_TOKEN_BYTES) {
            st = fail(err, WF_ERR_LIMIT, "%s:%lu: token longer than %d bytes", path, ln, TOK_MAX_TOKEN_BYTES);
            goto out;
        }
        if (!valid_utf8((const unsigned char *)tok, tl)) {
            st = fail(err, WF_ERR_FORMAT, "%s:%lu: invalid UTF-8", path, ln);
            goto out;
        }
        /* Duplicates: the last line wins, as in both Hugging Face tokenizers;
         * the earlier id is then never produced. Empty lines take an id that
         * no text can produce, as there too. */
        uint64_t h = wf_hash64(tok, tl, TOK_HASH_SEED);
        uint32_t tag = tag_of(h);
        for (uint32_t i = (uint32_t)h & t->mask;; i = (i + 1) & t->mask) {
            tok_ent_t *en = &t->tab[i];
            if (!t->tags[i]) {
                t->tags[i] = tag;
                en->off = (uint32_t)pos;
                en->len = (uint32_t)tl;
                en->id = (int32_t)line;
                break;
            }
            if (t->tags[i] == tag && en->len == tl && memcmp(buf + en->off, tok, tl) == 0) {
                en->id = (int32_t)line;
                break;
            }
        }
        if ((int)tl > t->max_token_bytes)
            t->max_token_bytes = (int)tl;
        pos = e + 1;
    }
    t->vocab_size = (int)lines;
    for (int k = 0; k < SP__COUNT; k++)
        t->sp[k] = vocab_find(t, sp_names[k], strlen(sp_names[k]));
    for (int k = SP_PAD; k <= SP_SEP; k++) {
        if (t->sp[k] < 0) {
            st = fail(err, WF_ERR_FORMAT, "%s: no %s token in the vocabulary", path, sp_names[k]);
            goto out;
        }
    }
    buf = NULL; /* owned by t */
out:
    if (st != WF_OK && t->blob == buf)
        t->blob = NULL;
    free(buf);
    fclose(f);
    return st;
}

wf_status_t wf_tokenizer_load(const char *vocab_path, const wf_tok_opts_t *opts, wf_tokenizer_t **out, wf_err_t *err)
{
    if (err)
        err->msg[0] = '\0';
    if (!opts || !out)
        return fail(err, WF_ERR_INVALID, "tokenizer: missing options or output");
    *out = NULL;
    if ((opts->kind != WF_TOK_WORDPIECE && opts->kind != WF_TOK_BYTES) || opts->strip_accents < -1 ||
        opts->strip_accents > 1 || opts->max_input_chars_per_word < 1)
        return fail(err, WF_ERR_INVALID, "tokenizer: invalid options (kind %d, strip_accents %d, "
                    "max_input_chars_per_word %d)", (int)opts->kind, opts->strip_accents,
                    opts->max_input_chars_per_word);
    /* the word being matched lives in a fixed buffer on the stack */
    if (opts->max_input_chars_per_word > TOK_MAX_WORD_CHARS)
        return fail(err, WF_ERR_UNSUPPORTED, "tokenizer: max_input_chars_per_word %d is over the supported %d",
                    opts->max_input_chars_per_word, TOK_MAX_WORD_CHARS);
    pthread_once(&ascii_once, ascii_init);
    wf_tokenizer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return fail(err, WF_ERR_NOMEM, "tokenizer: out of memory");
    t->opts = *opts;
    t->strip = opts->strip_accents < 0 ? opts->lowercase : opts->strip_accents > 0;
    if (opts->kind == WF_TOK_BYTES) {
        t->vocab_size = TOK_BYTES_VOCAB;
        for (int k = 0; k < SP__COUNT; k++)
            t->sp[k] = k;
        *out = t;
        return WF_OK;
    }
    if (!vocab_path) {
        free(t);
        return fail(err, WF_ERR_INVALID, "tokenizer: WordPiece needs a vocab.txt");
    }
    wf_status_t st = load_vocab(t, vocab_path, err);
    if (st != WF_OK) {
        wf_tokenizer_free(t);
        return st;
    }
    *out = t;
    return WF_OK;
}

void wf_tokenizer_free(wf_tokenizer_t *t)
{
    if (!t)
        return;
    free(t->tags);
    free(t->tab);
    free(t->blob);
    free(t);
}

int wf_tokenizer_vocab_size(const wf_tokenizer_t *t)
{
    return t ? t->vocab_size : 0;
}

int32_t wf_tokenizer_token_id(const wf_tokenizer_t *t, const char *token)
{
    if (!t || !token)
        return -1;
    size_t n = strlen(token);
    if (t->opts.kind == WF_TOK_BYTES) {
        for (int k = 0; k < SP__COUNT; k++)
            if (strcmp(token, sp_names[k]) == 0)
                return k;
        return n == 1 ? (int32_t)(unsigned char)token[0] + 5 : -1;
    }
    return vocab_find(t, token, n);
}
