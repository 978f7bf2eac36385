/* Backend-neutral sessions: pick a backend, validate every batch once here,
 * turn logits into probabilities. */
#include "infer/arch.h"
#include "infer/err.h"
#include "infer/backend.h"
#include "wafer/core.h"
#ifdef WAFER_HAVE_CUDA
#include "infer/cuda_module.h"
#endif

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

/* Largest token total one session may be sized for (activation memory grows
 * linearly with it; attention scratch with the longest sequence). */
#define WF_SESSION_MAX_TOKENS (1 << 22)
#define WF_SESSION_MAX_THREADS 256

struct wf_session {
    const wf_model_t *model;
    const wf_backend_ops_t *ops;
    void *state;
    int max_batch, max_tokens, num_labels, vocab_size, max_pos;
    /* wf_session_classify's buffers, sized once */
    int32_t *tok_ids;
    const int32_t **tok_ptrs;
    int *tok_lens;
    float *logits;
};

wf_status_t wf_session_new(const wf_model_t *m, const wf_session_opts_t *opts, wf_session_t **out, wf_err_t *err)
{
    *out = NULL;
    if (!m || !opts)
        ERR(WF_ERR_INVALID, "session: no model or options");
    const char *be = opts->backend ? opts->backend : "auto";
    const wf_backend_ops_t *ops;
    if (strcmp(be, "cpu") == 0) {
        ops = &wf_backend_cpu;
    } else if (strcmp(be, "auto") == 0) {
        ops = &wf_backend_cpu;
#ifdef WAFER_HAVE_CUDA
        char why[256];
        if (wf_cuda_probe(why, sizeof(why)))
            ops = wf_cuda_module(NULL, 0)->backend;
        else {
            static atomic_int logged; /* one line per process, not per session */
            if (atomic_exchange(&logged, 1) == 0)
                wf_info("inference: backend auto: %s; using the CPU backend", why);
        }
#endif
    } else if (strcmp(be, "cuda") == 0) {
#ifdef WAFER_HAVE_CUDA
        char why[256];
        if (!wf_cuda_probe(why, sizeof(why)))
            ERR(WF_ERR_BACKEND, "session: backend \"cuda\": %s (use \"cpu\" or \"auto\")", why);
        ops = wf_cuda_module(NULL, 0)->backend;
#else
        ERR(WF_ERR_UNSUPPORTED, "session: backend \"cuda\" is not built into this version of wafer (use \"cpu\")");
#endif
    } else
        ERR(WF_ERR_INVALID, "session: unknown backend \"%s\" (expected auto, cpu or cuda)", be);
    if (opts->threads < 0 || opts->threads > WF_SESSION_MAX_THREADS)
        ERR(WF_ERR_INVALID, "session: threads %d out of range 0..%d", opts->threads, WF_SESSION_MAX_THREADS);
    if (opts->max_batch < 1 || opts->max_tokens < 1 || opts->max_tokens > WF_SESSION_MAX_TOKENS)
        ERR(WF_ERR_INVALID, "session: max_batch %d / max_tokens %d out of range (1.., 1..%d)", opts->max_batch,
            opts->max_tokens, WF_SESSION_MAX_TOKENS);
    if (opts->max_batch > opts->max_tokens)
        ERR(WF_ERR_INVALID, "session: max_batch %d exceeds max_tokens %d (every sequence has a token)",
            opts->max_batch, opts->max_tokens);

    wf_session_t *s = calloc(1, sizeof(*s));
    if (!s)
        ERR(WF_ERR_NOMEM, "out of memory");
    const wf_model_config_t *cfg = wf_model_get_config(m);
    s->model = m;
    s->ops = ops;
    s->max_batch = opts->max_batch;
    s->max_tokens = opts->max_tokens;
    s->num_labels = cfg->num_labels;
    s->vocab_size = cfg->vocab_size;
    s->max_pos = cfg->max_position_embeddings;
    s->tok_ids = malloc(sizeof(int32_t) * (size_t)opts->max_tokens);
    s->tok_ptrs = malloc(sizeof(*s->tok_ptrs) * (size_t)opts->max_batch);
    s->tok_lens = malloc(sizeof(int) * (size_t)opts->max_batch);
    s->logits = malloc(sizeof(float) * (size_t)opts->max_batch * (size_t)s->num_labels);
    if (!s->tok_ids || !s->tok_ptrs || !s->tok_lens || !s->logits) {
        wf_session_free(s);
        ERR(WF_ERR_NOMEM, "out of memory");
    }
    wf_session_opts_t o = *opts;
    if (o.threads == 0)
        o.threads = 1;
    wf_status_t st = ops->init(m, &o, &s->state, err);
    if (st != WF_OK) {
        wf_session_free(s);
        return st;
    }
    *out = s;
    return WF_OK;
}

void wf_session_free(wf_session_t *s)
{
    if (!s)
        return;
    if (s->state)
        s->ops->free(s->state);
    free(s->tok_ids);
    free(s->tok_ptrs);
    free(s->tok_lens);
    free(s->logits);
    free(s);
}

const char *wf_session_backend(const wf_session_t *s) { return s->ops->name; }
const wf_backend_ops_t *wf_session_backend_ops(const wf_session_t *s) { return s->ops; }
void *wf_session_backend_state(const wf_session_t *s) { return s->state; }

static void softmax_rows(const float *logits, float *probs, int n, int c)
{
    for (int i = 0; i < n; i++) {
        const float *l = logits + (size_t)i * c;
        float *p = probs + (size_t)i * c;
        float mx = l[0];
        for (int j = 1; j < c; j++)
            mx = l[j] > mx ? l[j] : mx;
        double sum = 0;
        for (int j = 0; j < c; j++)
            sum += exp((double)l[j] - mx);
        for (int j = 0; j < c; j++)
            p[j] = (float)(exp((double)l[j] - mx) / sum);
    }
}

wf_status_t wf_session_run(wf_session_t *s, const int32_t *const *ids, const int *lens, int n, float *probs,
                           float *logits)
{
    if (!s || n < 0 || (n > 0 && (!ids || !lens)) || (!probs && !logits))
        return WF_ERR_INVALID;
    if (n > s->max_batch)
        return WF_ERR_LIMIT;
    long total = 0;
    for (int i = 0; i < n; i++) {
        if (lens[i] < 1 || !ids[i])
            return WF_ERR_INVALID;
        if (lens[i] > s->max_pos)
            return WF_ERR_LIMIT;
        total += lens[i];
        if (total > s->max_tokens)
            return WF_ERR_LIMIT;
        for (int j = 0; j < lens[i]; j++)
            if (ids[i][j] < 0 || ids[i][j] >= s->vocab_size)
                return WF_ERR_INVALID;
    }
    if (n == 0)
        return WF_OK;
    wf_batch_t b = { ids, lens, n, (int)total };
    float *lg = logits ? logits : s->logits;
    wf_status_t st = s->ops->run(s->state, &b, lg);
    if (st != WF_OK)
        return st;
    if (probs)
        softmax_rows(lg, probs, n, s->num_labels);
    return WF_OK;
}

wf_status_t wf_session_classify(wf_session_t *s, const char *const *texts, const size_t *lens, int n, float *probs)
{
    if (!s || n < 0 || (n > 0 && (!texts || !lens || !probs)))
        return WF_ERR_INVALID;
    const wf_model_meta_t *meta = wf_model_get_meta(s->model);
    const wf_tokenizer_t *tok = wf_model_get_tokenizer(s->model);
    int max_len = WF_MIN(meta->max_len, WF_MIN(s->max_tokens, s->max_pos));
    int done = 0; /* texts already classified */
    int nb = 0, used = 0;
    for (int i = 0; i <= n; i++) {
        /* Flush when the next text might not fit (or at the end). */
        if (nb > 0 && (i == n || nb == s->max_batch || used + max_len > s->max_tokens)) {
            wf_status_t st = wf_session_run(s, s->tok_ptrs, s->tok_lens, nb, probs + (size_t)done * s->num_labels,
                                            NULL);
            if (st != WF_OK)
                return st;
            done += nb;
            nb = 0;
            used = 0;
        }
        if (i == n)
            break;
        int k = wf_tokenizer_encode(tok, texts[i] ? texts[i] : "", texts[i] ? lens[i] : 0, s->tok_ids + used,
                                    max_len);
        if (k < 0)
            return (wf_status_t)-k;
        if (k == 0)
            return WF_ERR_INVALID;
        s->tok_ptrs[nb] = s->tok_ids + used;
        s->tok_lens[nb] = k;
        nb++;
        used += k;
    }
    return WF_OK;
}
