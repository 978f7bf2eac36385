/* wafer scan: requests in, verdicts out, in input order, through one
 * inference session in large batches (include/wafer/scan.h, docs/scan.md).
 * This reads files, not the data path: it allocates with malloc, once, in
 * sizes fixed by the options. */
#include "wafer/scan.h"
#include "wafer/core.h"
#include "wafer/policy.h"

#include <stdlib.h>

typedef struct {
    uint64_t index;
    size_t unit0;          /* first of its classified units in the chunk */
    uint32_t nunits;       /* classified units */
    uint32_t nskipped;     /* safe or unread units */
    uint32_t rflags;       /* WF_INSPECT_R_* */
    bool invalid;
    size_t reason_off, reason_len;
    size_t extra_off, extra_len;
} sreq_t;

typedef struct {
    uint8_t kind;
    bool cut;              /* display text cut to display_bytes */
    uint32_t part;
    size_t name_off, name_len;
    size_t text_off, text_len; /* display text */
    uint32_t entry;        /* cache entry holding its probabilities */
} sunit_t;

typedef struct {
    uint64_t hash;
    size_t off;            /* model text in the pool */
    uint32_t len;
} centry_t;

struct wf_scan {
    wf_scan_opts_t o;
    const wf_model_t *model;
    const wf_model_meta_t *meta;
    const wf_tokenizer_t *tok;
    wf_session_t *sess;
    int L;                 /* labels */
    int max_len;           /* tokens per unit */
    wf_inspect_conf_t iconf;
    bool reads[WF_UNIT__COUNT];
    wf_arena_t arena;      /* one request's units */
    wf_inspect_stats_t istats;
    wf_scan_stats_t st;
    /* the chunk */
    sreq_t *reqs;
    size_t nreqs;
    sunit_t *units;
    size_t nunits, units_cap;
    wf_buf_t tb;           /* names, display texts, reasons, copied fields */
    uint32_t *todo;        /* cache entries the model has yet to run on */
    size_t ntodo;
    /* the cache of unit texts (cleared between chunks when it could overflow) */
    centry_t *ent;
    float *probs;          /* ent x L */
    size_t nent, ent_cap;
    uint32_t *table;       /* open addressing: entry + 1, 0 empty */
    size_t tmask;
    char *pool;
    size_t pool_len, pool_cap, text_max;
    /* a model batch */
    int32_t *ids;
    const int32_t **ptrs;
    int *lens;
    float *bprobs;
    char err[256];
    void (*progress)(const wf_scan_stats_t *, void *);
    void *progress_arg;
};

static const char *const reserved_keys[] = { "index", "verdict", "class", "score", "units", "units_more",
                                             "inspected", "skipped", "flags", "reason", NULL };

void wf_scan_opts_default(wf_scan_opts_t *o)
{
    *o = (wf_scan_opts_t){
        .format = WF_INPUT_RAW,
        .lines_name = "q",
        .chunk_units = 4096,
        .chunk_requests = 8192,
        .chunk_bytes = 16u << 20,
        .cache_entries = 65536,
        .cache_bytes = 32u << 20,
        .max_batch = 64,
        .max_listed_units = 16,
        .display_bytes = 256,
        .out = NULL,
    };
}

#define ERR(code, ...)                                                                 \
    do {                                                                               \
        if (err)                                                                       \
            snprintf(err->msg, sizeof(err->msg), __VA_ARGS__);                         \
        wf_scan_free(sc);                                                              \
        return (code);                                                                 \
    } while (0)

wf_status_t wf_scan_new(const wf_model_t *m, wf_session_t *s, const wf_scan_opts_t *opts, wf_scan_t **out,
                        wf_err_t *err)
{
    *out = NULL;
    wf_scan_t *sc = NULL;
    if (!m || !s || !opts)
        ERR(WF_ERR_INVALID, "scan: no model, session or options");
    if (opts->max_batch < 1 || opts->chunk_requests < 1 || opts->chunk_units < 1 || opts->chunk_bytes < 4096)
        ERR(WF_ERR_INVALID, "scan: max_batch, chunk_units, chunk_requests and chunk_bytes must be positive");
    sc = calloc(1, sizeof(*sc));
    if (!sc)
        ERR(WF_ERR_NOMEM, "out of memory");
    sc->o = *opts;
    if (!sc->o.lines_name)
        sc->o.lines_name = "q";
    sc->model = m;
    sc->meta = wf_model_get_meta(m);
    sc->tok = wf_model_get_tokenizer(m);
    sc->sess = s;
    sc->L = sc->meta->num_labels;
    sc->max_len = WF_MIN(sc->meta->max_len, wf_model_get_config(m)->max_position_embeddings);
    wf_inspect_conf_default(&sc->iconf);
    /* wafer.json "units": the kinds this model reads; none listed: all. A
     * name that is no unit kind (model-format.md's older example names
     * "query_value") makes the list unreliable: then every kind is read, since
     * classifying a unit too many is safe and skipping one is not. */
    for (int k = 0; k < WF_UNIT__COUNT; k++)
        sc->reads[k] = sc->meta->nunits == 0;
    for (int i = 0; i < sc->meta->nunits; i++) {
        int k = 0;
        while (k < WF_UNIT__COUNT && strcmp(sc->meta->units[i], wf_unit_kind_name((wf_unit_kind_t)k)))
            k++;
        if (k == WF_UNIT__COUNT) {
            wf_warn("scan: model %s: wafer.json \"units\" names \"%s\", which is no unit kind (path segment "
                    "query form json multipart filename cookie header body); reading every kind",
                    sc->meta->name, sc->meta->units[i]);
            for (k = 0; k < WF_UNIT__COUNT; k++)
                sc->reads[k] = true;
            break;
        }
        sc->reads[k] = true;
    }
    size_t per_req = sc->iconf.max_units;
    sc->o.chunk_units = WF_MAX(sc->o.chunk_units, per_req);
    size_t ucap = sc->o.chunk_units + per_req;
    sc->units_cap = ucap;
    sc->text_max = wf_unit_text_max(&sc->iconf);
    sc->ent_cap = WF_MAX(sc->o.cache_entries, ucap);
    size_t tsize = 1;
    while (tsize < 2 * sc->ent_cap)
        tsize <<= 1;
    sc->tmask = tsize - 1;
    sc->pool_cap = WF_MAX(sc->o.cache_bytes, ucap * sc->text_max);
    size_t B = (size_t)sc->o.max_batch;
    wf_arena_init(&sc->arena, 256 * 1024, 16u << 20);
    sc->reqs = malloc(sizeof(*sc->reqs) * sc->o.chunk_requests);
    sc->units = malloc(sizeof(*sc->units) * ucap);
    sc->todo = malloc(sizeof(*sc->todo) * ucap);
    sc->ent = malloc(sizeof(*sc->ent) * sc->ent_cap);
    sc->probs = malloc(sizeof(float) * sc->ent_cap * (size_t)sc->L);
    sc->table = calloc(tsize, sizeof(*sc->table));
    sc->pool = malloc(sc->pool_cap);
    sc->ids = malloc(sizeof(int32_t) * B * (size_t)sc->max_len);
    sc->ptrs = malloc(sizeof(*sc->ptrs) * B);
    sc->lens = malloc(sizeof(int) * B);
    sc->bprobs = malloc(sizeof(float) * B * (size_t)sc->L);
    if (!sc->reqs || !sc->units || !sc->todo || !sc->ent || !sc->probs || !sc->table || !sc->pool || !sc->ids ||
        !sc->ptrs || !sc->lens || !sc->bprobs || wf_buf_init(&sc->tb, 1u << 20, sc->o.chunk_bytes + (64u << 20)))
        ERR(WF_ERR_NOMEM, "out of memory");
    sc->st.start_ns = wf_now_ns();
    *out = sc;
    return WF_OK;
}

void wf_scan_free(wf_scan_t *sc)
{
    if (!sc)
        return;
    wf_arena_free(&sc->arena);
    wf_buf_free(&sc->tb);
    free(sc->reqs);
    free(sc->units);
    free(sc->todo);
    free(sc->ent);
    free(sc->probs);
    free(sc->table);
    free(sc->pool);
    free(sc->ids);
    free(sc->ptrs);
    free(sc->lens);
    free(sc->bprobs);
    free(sc);
}

void wf_scan_set_progress(wf_scan_t *sc, void (*fn)(const wf_scan_stats_t *, void *), void *arg)
{
    sc->progress = fn;
    sc->progress_arg = arg;
}

const wf_scan_stats_t *wf_scan_stats(const wf_scan_t *sc) { return &sc->st; }
const char *wf_scan_error(const wf_scan_t *sc) { return sc->err; }

/* ---- the cache ---- */

/* At a chunk's start: make room for a whole chunk, forgetting everything if
 * the chunk might not fit. */
static void cache_make_room(wf_scan_t *sc)
{
    if (sc->nent + sc->units_cap <= sc->ent_cap && sc->pool_len + sc->units_cap * sc->text_max <= sc->pool_cap &&
        sc->o.cache_entries)
        return;
    if (sc->nent)
        memset(sc->table, 0, sizeof(*sc->table) * (sc->tmask + 1));
    sc->nent = 0;
    sc->pool_len = 0;
}

/* The entry for a unit's model text, added (and queued for the model) when new. */
static uint32_t cache_entry(wf_scan_t *sc, const wf_unit_t *u)
{
    char *t = sc->pool + sc->pool_len;
    size_t len = wf_unit_text(u, t, sc->text_max);
    len = WF_MIN(len, sc->text_max);
    uint64_t h = wf_hash64(t, len, 0x5ca9);
    size_t i = (size_t)h & sc->tmask;
    for (;; i = (i + 1) & sc->tmask) {
        uint32_t e = sc->table[i];
        if (!e)
            break;
        const centry_t *c = &sc->ent[e - 1];
        if (c->hash == h && c->len == len && !memcmp(sc->pool + c->off, t, len))
            return e - 1;
    }
    uint32_t e = (uint32_t)sc->nent++;
    sc->ent[e] = (centry_t){ h, sc->pool_len, (uint32_t)len };
    sc->pool_len += len;
    sc->table[i] = e + 1;
    sc->todo[sc->ntodo++] = e;
    return e;
}

/* ---- JSON output ---- */

/* Unit names and texts are valid UTF-8 (the decoder makes them so); a
 * reason is not known to be (parsers quote the input), so it is written with
 * wf_json_str_write's `ascii`. */
static void put_json_str(FILE *out, const char *p, size_t n) { wf_json_str_write(out, p, n, false); }

typedef struct {
    float margin;
    size_t unit;
    wf_unit_verdict_t uv;
} crossing_t;

static int crossing_cmp(const void *a, const void *b)
{
    const crossing_t *x = a, *y = b;
    if (x->margin != y->margin)
        return x->margin > y->margin ? -1 : 1;
    return x->unit < y->unit ? -1 : x->unit > y->unit;
}

static void write_request(wf_scan_t *sc, const sreq_t *r)
{
    FILE *out = sc->o.out;
    const char *tb = wf_buf_rptr(&sc->tb);
    if (r->invalid) {
        sc->st.invalid++;
        if (out) {
            fprintf(out, "{\"index\":%llu,\"verdict\":\"invalid\",\"reason\":", (unsigned long long)r->index);
            wf_json_str_write(out, tb + r->reason_off, r->reason_len, true);
        }
    } else {
        wf_verdict_t v;
        wf_verdict_init(&v);
        crossing_t cr[r->nunits ? r->nunits : 1];
        size_t ncr = 0;
        const float *thr = sc->meta->thresholds;
        for (uint32_t k = 0; k < r->nunits; k++) {
            const sunit_t *u = &sc->units[r->unit0 + k];
            wf_unit_verdict_t uv;
            if (wf_verdict_add(&v, (long)k, sc->probs + (size_t)u->entry * (size_t)sc->L, thr, sc->L, &uv))
                cr[ncr++] = (crossing_t){ uv.margin, k, uv };
        }
        sc->st.units_crossing += ncr;
        if (v.attack) {
            sc->st.attack++;
            sc->st.per_class[v.cls]++;
        } else {
            sc->st.benign++;
        }
        if (out) {
            const char *cls = sc->meta->labels[v.attack ? v.cls : 0];
            fprintf(out, "{\"index\":%llu,\"verdict\":\"%s\",\"class\":", (unsigned long long)r->index,
                    v.attack ? "attack" : "benign");
            put_json_str(out, cls, strlen(cls));
            fprintf(out, ",\"score\":%.6g,\"units\":[", v.score);
            qsort(cr, ncr, sizeof(*cr), crossing_cmp);
            size_t shown = WF_MIN(ncr, sc->o.max_listed_units);
            for (size_t i = 0; i < shown; i++) {
                const sunit_t *u = &sc->units[r->unit0 + cr[i].unit];
                fprintf(out, "%s{\"kind\":\"%s\",\"name\":", i ? "," : "", wf_unit_kind_name((wf_unit_kind_t)u->kind));
                put_json_str(out, tb + u->name_off, u->name_len);
                if (u->part)
                    fprintf(out, ",\"part\":%u", u->part);
                fputs(",\"text\":", out);
                put_json_str(out, tb + u->text_off, u->text_len);
                if (u->cut)
                    fputs(",\"text_cut\":true", out);
                fputs(",\"class\":", out);
                const char *uc = sc->meta->labels[cr[i].uv.cls];
                put_json_str(out, uc, strlen(uc));
                fprintf(out, ",\"score\":%.6g}", cr[i].uv.score);
            }
            putc(']', out);
            if (ncr > shown)
                fprintf(out, ",\"units_more\":%zu", ncr - shown);
            fprintf(out, ",\"inspected\":%u,\"skipped\":%u", r->nunits, r->nskipped);
            if (r->rflags) {
                fputs(",\"flags\":[", out);
                int first = 1;
                const char *name;
                for (unsigned b = 0; (name = wf_inspect_rflag_name(b)); b++)
                    if (r->rflags & (1u << b)) {
                        fprintf(out, "%s\"%s\"", first ? "" : ",", name);
                        first = 0;
                    }
                putc(']', out);
            }
        }
    }
    if (out) {
        fwrite(tb + r->extra_off, 1, r->extra_len, out);
        fputs("}\n", out);
    }
}

/* ---- chunks ---- */

static int run_model(wf_scan_t *sc)
{
    size_t B = (size_t)sc->o.max_batch;
    size_t done = 0;
    while (done < sc->ntodo) {
        size_t n = WF_MIN(B, sc->ntodo - done);
        size_t used = 0;
        for (size_t i = 0; i < n; i++) {
            const centry_t *c = &sc->ent[sc->todo[done + i]];
            int k = wf_tokenizer_encode(sc->tok, sc->pool + c->off, c->len, sc->ids + used, sc->max_len);
            if (k <= 0) {
                snprintf(sc->err, sizeof(sc->err), "tokenizer: %s", wf_status_str(k < 0 ? (wf_status_t)-k
                                                                                         : WF_ERR_INVALID));
                return -WF_EFORMAT;
            }
            sc->ptrs[i] = sc->ids + used;
            sc->lens[i] = k;
            used += (size_t)k;
        }
        uint64_t t0 = wf_now_ns();
        wf_status_t s = wf_session_run(sc->sess, sc->ptrs, sc->lens, (int)n, sc->bprobs, NULL);
        sc->st.model_ns += wf_now_ns() - t0;
        if (s != WF_OK) {
            snprintf(sc->err, sizeof(sc->err), "inference: %s", wf_status_str(s));
            return -WF_EFORMAT;
        }
        for (size_t i = 0; i < n; i++)
            memcpy(sc->probs + (size_t)sc->todo[done + i] * (size_t)sc->L, sc->bprobs + i * (size_t)sc->L,
                   sizeof(float) * (size_t)sc->L);
        sc->st.units_model += n;
        sc->st.tokens += used;
        done += n;
    }
    sc->ntodo = 0;
    return 0;
}

static int flush_chunk(wf_scan_t *sc)
{
    int rc = run_model(sc);
    if (rc)
        return rc;
    for (size_t i = 0; i < sc->nreqs; i++)
        write_request(sc, &sc->reqs[i]);
    sc->st.units_classified += sc->nunits;
    sc->nreqs = 0;
    sc->nunits = 0;
    wf_buf_clear(&sc->tb);
    if (sc->o.out && ferror(sc->o.out)) {
        snprintf(sc->err, sizeof(sc->err), "writing the output failed");
        return -EIO;
    }
    if (sc->progress)
        sc->progress(&sc->st, sc->progress_arg);
    cache_make_room(sc);
    return 0;
}

static int tb_add(wf_scan_t *sc, const char *p, size_t n, size_t *off)
{
    *off = wf_buf_len(&sc->tb);
    return n ? wf_buf_append(&sc->tb, p, n) : 0;
}

/* Adds one record to the chunk. */
static int add_record(wf_scan_t *sc, wf_input_t *in, const wf_input_record_t *rec)
{
    sreq_t *r = &sc->reqs[sc->nreqs];
    *r = (sreq_t){ .index = rec->index, .unit0 = sc->nunits, .invalid = rec->invalid };
    sc->st.requests++;
    int rc = 0;
    if (rec->invalid) {
        rc = tb_add(sc, rec->reason, strlen(rec->reason), &r->reason_off);
        r->reason_len = strlen(rec->reason);
    } else {
        wf_units_t us = { 0 };
        uint64_t t0 = wf_now_ns();
        wf_arena_reset(&sc->arena);
        if (rec->is_value) {
            sc->istats.requests++;
            wf_inspect_value(&sc->iconf, WF_UNIT_QUERY, wf_str_c(sc->o.lines_name), rec->value, &sc->arena, &us,
                             &sc->istats);
        } else {
            wf_inspect_request(&sc->iconf, &rec->req, rec->body, &sc->arena, &us, &sc->istats);
        }
        sc->st.inspect_ns += wf_now_ns() - t0;
        r->rflags = us.flags;
        sc->st.units += us.n;
        for (size_t i = 0; i < us.n && !rc; i++) {
            const wf_unit_t *u = &us.units[i];
            if (u->flags & WF_UNIT_F_SAFE) {
                sc->st.units_safe++;
                r->nskipped++;
                continue;
            }
            if (!sc->reads[u->kind]) {
                sc->st.units_unread++;
                r->nskipped++;
                continue;
            }
            sunit_t *su = &sc->units[sc->nunits++];
            r->nunits++;
            size_t tl = u->text.n;
            su->cut = tl > sc->o.display_bytes;
            if (su->cut) {
                tl = sc->o.display_bytes;
                while (tl > 0 && ((unsigned char)u->text.p[tl] & 0xc0) == 0x80)
                    tl--; /* cut at a character boundary */
            }
            su->kind = (uint8_t)u->kind;
            su->part = u->part;
            su->name_len = u->name.n;
            su->text_len = tl;
            rc = tb_add(sc, u->name.p, u->name.n, &su->name_off);
            if (!rc)
                rc = tb_add(sc, u->text.p, tl, &su->text_off);
            su->entry = cache_entry(sc, u);
        }
    }
    r->extra_off = wf_buf_len(&sc->tb);
    if (!rc)
        rc = wf_input_extra_json(in, reserved_keys, &sc->tb);
    r->extra_len = wf_buf_len(&sc->tb) - r->extra_off;
    sc->nreqs++;
    if (rc) {
        snprintf(sc->err, sizeof(sc->err), "a request's text is over the chunk limit: %s", wf_strerror(rc));
        return rc;
    }
    if (sc->nreqs == sc->o.chunk_requests || sc->nunits >= sc->o.chunk_units ||
        wf_buf_len(&sc->tb) >= sc->o.chunk_bytes)
        return flush_chunk(sc);
    return 0;
}

int wf_scan_file(wf_scan_t *sc, FILE *fp)
{
    if (sc->nreqs == 0 && sc->nent == 0)
        cache_make_room(sc);
    wf_input_t *in = wf_input_new(sc->o.format, fp, 0);
    if (!in) {
        snprintf(sc->err, sizeof(sc->err), "out of memory");
        return -ENOMEM;
    }
    wf_input_set_index(in, sc->st.requests);
    wf_input_record_t rec;
    int r, rc = 0;
    while ((r = wf_input_next(in, &rec)) > 0)
        if ((rc = add_record(sc, in, &rec)))
            break;
    if (r < 0) {
        snprintf(sc->err, sizeof(sc->err), "reading failed: %s", wf_strerror(r));
        rc = r;
    }
    wf_input_free(in);
    if (!rc && sc->nreqs)
        rc = flush_chunk(sc);
    return rc;
}

void wf_scan_summary_print(const wf_scan_t *sc, FILE *fp)
{
    const wf_scan_stats_t *s = &sc->st;
    double secs = (double)(wf_now_ns() - s->start_ns) / 1e9;
    fprintf(fp, "requests: %llu\n", (unsigned long long)s->requests);
    fprintf(fp, "benign: %llu\n", (unsigned long long)s->benign);
    fprintf(fp, "attack: %llu\n", (unsigned long long)s->attack);
    fprintf(fp, "invalid: %llu\n", (unsigned long long)s->invalid);
    for (int c = 1; c < sc->L; c++)
        fprintf(fp, "class %s: %llu\n", sc->meta->labels[c], (unsigned long long)s->per_class[c]);
    fprintf(fp, "units: %llu\n", (unsigned long long)s->units);
    fprintf(fp, "units skipped (fast path): %llu\n", (unsigned long long)s->units_safe);
    fprintf(fp, "units skipped (not read by the model): %llu\n", (unsigned long long)s->units_unread);
    fprintf(fp, "units classified: %llu\n", (unsigned long long)s->units_classified);
    fprintf(fp, "units run through the model: %llu\n", (unsigned long long)s->units_model);
    fprintf(fp, "units crossing a threshold: %llu\n", (unsigned long long)s->units_crossing);
    fprintf(fp, "model: %s (%s backend)\n", sc->meta->name, wf_session_backend(sc->sess));
    fprintf(fp, "seconds: %.3f (extraction %.3f, model %.3f)\n", secs, s->inspect_ns / 1e9, s->model_ns / 1e9);
    fprintf(fp, "requests/s: %.0f\n", secs > 0 ? (double)s->requests / secs : 0.0);
}
