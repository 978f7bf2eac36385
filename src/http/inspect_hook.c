/*
 * Inspection of proxied requests (inspect_hook.h): client lists and bans,
 * unit extraction, the verdict cache (shared by the workers), submission to
 * the detection service, the verdict and what the policy makes of it,
 * security events.
 *
 * A parked request lives in a slot of the worker's request table; its key
 * for the detection service is (sequence << 32 | slot), so that a verdict
 * that arrives after the request was cancelled or timed out finds another
 * sequence number (or an idle slot) and is ignored. Slots and their arenas
 * are allocated on first use and kept: the table is bounded by
 * detection.max_inflight.
 */
#include "inspect_hook.h"
#include "wafer/ioc.h"
#include "wafer/misp.h"
#include "wafer/metrics.h"
#include "wafer/admin.h"
#include "wafer/detect.h"
#include "wafer/policy.h"
#include "wafer/secops.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* An entry holds the class probabilities (num_labels floats) followed by its
 * key, in CACHE_DATA bytes: the key is the unit's model text when it fits
 * there (232 bytes with the default model's 6 labels; at least 128 bytes, as
 * WF_MAX_LABELS is 32), otherwise its token ids: their count in two bytes,
 * then the ids packed in as many bits as the vocabulary needs (13 for the
 * default model's 8192, so its 128 ids take 210 bytes). The model reads only
 * the ids, so two texts with the same ids have the same verdict, and a long
 * text (a JWT cookie, a JSON blob) is cached too; one with more ids than fit
 * is not. The key is exact: no hash decides a hit. */
#define CACHE_DATA 256
#define CACHE_WAYS 4
enum { KEY_TEXT = 1, KEY_IDS = 2 };
#define LOG_EVERY_MS 1000
#define TOP_UNITS WF_SECEV_MAX_UNITS

typedef struct {
    uint64_t hash, engine;
    uint32_t stamp;       /* the set's clock at the last use */
    uint16_t len;         /* of the key */
    uint8_t kind;         /* KEY_TEXT, KEY_IDS */
    float data[CACHE_DATA / sizeof(float)]; /* probabilities, then the key */
} centry_t;

typedef struct {
    uint32_t unit;        /* index in the request's units */
    bool done, failed;
    float *probs;         /* num_labels, arena */
    const char *mkey;     /* cache key kept for cache_put (arena), or NULL */
    uint16_t mlen;
    uint8_t mkind;
    uint64_t hash;
} cunit_t;

struct wf_insp_req {
    struct wf_insp *wi;
    void *owner;
    uint32_t slot, seq;
    bool live, parked, arena_ready;
    wf_gen_t *gen;                 /* the worker's newest generation at the request's start */
    const wf_policy_t *pol;
    const wf_route_t *route;
    wf_mode_t mode;
    const wf_detect_conf_t *dc;
    wf_detect_engine_t *eng;
    wf_arena_t arena;
    wf_sockaddr_t peer;
    char *head;
    size_t head_len;
    wf_units_t units;
    cunit_t *cu;
    uint32_t ncu, npending;
    wf_timer_t timer;
    bool body_cut;
    /* for events */
    char ip[46];
    uint16_t port;
    wf_str_t rid, method, host, path, query, ua;
    /* the outcome */
    bool attack;
    int cls;
    float score;
};

typedef struct wf_insp {
    wf_worker_t *w;
    wf_detect_port_t *port;
    wf_insp_req_t **table;
    uint32_t nslots;
    uint32_t *free_slots;
    uint32_t nfree;
    int32_t *ids;
    size_t ids_cap;
    char *text;
    size_t text_cap;
    char idkey[CACHE_DATA]; /* a cache key of token ids */
    uint64_t log_last, log_quiet;  /* overload log: last line, lines suppressed since */
} wf_insp_t;

/* ---- the cache ---- */

/* The cache is shared by the workers (a value one worker has classified is
 * known to all): cache_entries x workers entries, sets of CACHE_WAYS, each set
 * with its own mutex and LRU clock. It is made at start, from the starting
 * configuration, and freed after the workers exited. */
typedef struct {
    pthread_mutex_t mu;
    uint32_t clock;
} cset_t;

static struct {
    centry_t *e;
    cset_t *set;
    uint32_t nsets; /* power of two; 0: no cache */
} cache;

static int cache_init(uint64_t entries)
{
    uint32_t sets = 1;
    while ((uint64_t)sets * CACHE_WAYS < entries && sets < (1u << 24))
        sets <<= 1;
    cache.e = calloc((size_t)sets * CACHE_WAYS, sizeof(*cache.e));
    cache.set = calloc(sets, sizeof(*cache.set));
    if (!cache.e || !cache.set) {
        free(cache.e);
        free(cache.set);
        cache.e = NULL;
        cache.set = NULL;
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < sets; i++)
        pthread_mutex_init(&cache.set[i].mu, NULL);
    cache.nsets = sets;
    return 0;
}

static void cache_free(void)
{
    for (uint32_t i = 0; i < cache.nsets; i++)
        pthread_mutex_destroy(&cache.set[i].mu);
    free(cache.e);
    free(cache.set);
    cache.e = NULL;
    cache.set = NULL;
    cache.nsets = 0;
}

/* The longest key an entry holds next to L probabilities. */
static size_t cache_key_max(int L) { return CACHE_DATA - sizeof(float) * (size_t)L; }

/* Packs k token ids of `bits` bits each after a two-byte count into out
 * (cap bytes). Returns the key's length, or 0 when it does not fit. */
static size_t pack_ids(const int32_t *ids, int k, unsigned bits, uint8_t *out, size_t cap)
{
    size_t n = 2 + ((size_t)k * bits + 7) / 8;
    if (k <= 0 || k > 0xffff || n > cap)
        return 0;
    out[0] = (uint8_t)k;
    out[1] = (uint8_t)(k >> 8);
    memset(out + 2, 0, n - 2);
    uint64_t acc = 0;
    unsigned have = 0;
    size_t o = 2;
    for (int j = 0; j < k; j++) {
        acc |= (uint64_t)(uint32_t)ids[j] << have;
        have += bits;
        while (have >= 8) {
            out[o++] = (uint8_t)acc;
            acc >>= 8;
            have -= 8;
        }
    }
    if (have)
        out[o++] = (uint8_t)acc;
    return o;
}

static bool cache_get(uint64_t eng, int kind, uint64_t h, const char *k, size_t len, float *out, int L)
{
    if (!cache.nsets || len > cache_key_max(L))
        return false;
    uint32_t si = (uint32_t)h & (cache.nsets - 1);
    cset_t *cs = &cache.set[si];
    centry_t *set = &cache.e[(size_t)si * CACHE_WAYS];
    bool hit = false;
    pthread_mutex_lock(&cs->mu);
    for (int i = 0; i < CACHE_WAYS; i++) {
        centry_t *e = &set[i];
        if (e->hash == h && e->len == len && e->kind == kind && e->engine == eng &&
            !memcmp((const char *)(e->data + L), k, len)) {
            memcpy(out, e->data, sizeof(float) * (size_t)L);
            e->stamp = ++cs->clock;
            hit = true;
            break;
        }
    }
    pthread_mutex_unlock(&cs->mu);
    return hit;
}

static void cache_put(uint64_t eng, int kind, uint64_t h, const char *k, size_t len, const float *p, int L)
{
    if (!cache.nsets || len > cache_key_max(L))
        return;
    uint32_t si = (uint32_t)h & (cache.nsets - 1);
    cset_t *cs = &cache.set[si];
    centry_t *set = &cache.e[(size_t)si * CACHE_WAYS];
    pthread_mutex_lock(&cs->mu);
    centry_t *v = &set[0];
    for (int i = 0; i < CACHE_WAYS; i++) {
        if (set[i].engine == 0) {
            v = &set[i];
            break;
        }
        /* another worker may have put the same key while this one waited for the model */
        if (set[i].hash == h && set[i].len == len && set[i].kind == kind && set[i].engine == eng &&
            !memcmp((const char *)(set[i].data + L), k, len)) {
            v = &set[i];
            break;
        }
        if ((int32_t)(set[i].stamp - v->stamp) < 0)
            v = &set[i];
    }
    v->hash = h;
    v->engine = eng;
    v->kind = (uint8_t)kind;
    v->len = (uint16_t)len;
    v->stamp = ++cs->clock;
    memcpy(v->data, p, sizeof(float) * (size_t)L);
    memcpy((char *)(v->data + L), k, len);
    pthread_mutex_unlock(&cs->mu);
}

/* ---- security events ---- */

typedef struct {
    wf_str_t ip, rid, method, host, path, query, ua;
    uint16_t port;
    const char *route;
} evsrc_t;

static void ev_fill(wf_secev_t *ev, const evsrc_t *s, wf_secev_action_t a, wf_secev_reason_t r, uint16_t status)
{
    wf_secev_init(ev);
    ev->action = a;
    ev->reason = r;
    ev->status = status;
    WF_SECEV_SET(ev, request_id, s->rid);
    WF_SECEV_SET(ev, client_ip, s->ip);
    ev->client_port = s->port;
    WF_SECEV_SET(ev, method, s->method);
    WF_SECEV_SET(ev, host, s->host);
    WF_SECEV_SET(ev, path, s->path);
    WF_SECEV_SET(ev, query, s->query);
    WF_SECEV_SET(ev, user_agent, s->ua);
    if (s->route)
        WF_SECEV_SET(ev, route, wf_str_c(s->route));
}

static void ev_src_req(evsrc_t *s, const wf_insp_start_t *st)
{
    const wf_http_request_t *req = st->req;
    const wf_http_header_t *ua = wf_http_header_find(req->headers, req->nheaders, "user-agent");
    *s = (evsrc_t){ .ip = st->ip, .rid = st->rid, .method = req->method, .host = req->host, .path = req->path,
                    .query = req->query, .ua = ua ? ua->value : WF_STR_NULL, .port = st->port };
}

static void ev_src_ir(evsrc_t *s, const wf_insp_req_t *ir)
{
    *s = (evsrc_t){ .ip = wf_str_c(ir->ip), .rid = ir->rid, .method = ir->method, .host = ir->host,
                    .path = ir->path, .query = ir->query, .ua = ir->ua, .port = ir->port,
                    .route = ir->route && ir->route != &ir->pol->root ? ir->route->name : NULL };
}

static void ev_model(wf_secev_t *ev, const wf_insp_req_t *ir)
{
    if (ir->eng)
        WF_SECEV_SET(ev, model, wf_str_c(wf_detect_engine_meta(ir->eng)->name));
}

/* ---- the request table ---- */

static wf_insp_req_t *req_new(wf_insp_t *wi)
{
    if (!wi->nfree)
        return NULL;
    uint32_t slot = wi->free_slots[--wi->nfree];
    wf_insp_req_t *ir = wi->table[slot];
    if (!ir) {
        ir = calloc(1, sizeof(*ir));
        if (!ir) {
            wi->nfree++;
            return NULL;
        }
        ir->slot = slot;
        ir->wi = wi;
        wi->table[slot] = ir;
    }
    if (!ir->arena_ready) {
        wf_arena_init(&ir->arena, 16384, 0);
        ir->arena_ready = true;
    }
    uint32_t seq = ir->seq;
    wf_arena_t a = ir->arena;
    memset(ir, 0, sizeof(*ir));
    ir->arena = a;
    ir->arena_ready = true;
    ir->wi = wi;
    ir->slot = slot;
    ir->seq = seq;
    ir->live = true;
    wf_timer_init(&ir->timer, NULL, ir);
    return ir;
}

static uint64_t req_key(const wf_insp_req_t *ir) { return ((uint64_t)ir->seq << 32) | ir->slot; }

void wf_insp_end(wf_insp_req_t *ir)
{
    if (!ir || !ir->live)
        return;
    wf_insp_t *wi = ir->wi;
    if (wf_timer_armed(&ir->timer))
        wf_loop_timer_cancel(wi->w->loop, &ir->timer);
    ir->parked = false;
    if (ir->eng)
        wf_detect_engine_unref(ir->eng);
    ir->eng = NULL;
    if (ir->gen)
        wf_gen_unref(ir->gen);
    ir->gen = NULL;
    wf_arena_reset(&ir->arena);
    ir->live = false;
    ir->seq++;
    wi->free_slots[wi->nfree++] = ir->slot;
}

void wf_insp_cancel(wf_insp_req_t *ir) { wf_insp_end(ir); }

/* ---- requests by action, class and route (wafer_inspection_verdicts_total) ---- */

static wf_lcount_t *verdicts;

static void count_verdict(wf_secev_action_t a, const char *cls, const wf_route_t *route)
{
    const char *v[] = { wf_secev_action_name(a), cls, route ? route->name : "" };
    wf_lcount_add(verdicts, v, 1);
}

/* ---- overload ---- */

/* Applies detection.overload: counts, logs (at most once a second per worker) and, for a request
 * that has its context, emits a pass (fail-open) or unavailable (fail-closed) event. */
static wf_insp_action_t overload(wf_insp_t *wi, wf_insp_req_t *ir, const wf_detect_conf_t *dc, const char *why)
{
    wf_worker_t *w = wi->w;
    bool closed = dc->overload == WF_OVERLOAD_FAIL_CLOSED;
    if (ir) {
        wf_secev_t ev;
        evsrc_t s;
        ev_src_ir(&s, ir);
        ev_fill(&ev, &s, closed ? WF_SECEV_UNAVAILABLE : WF_SECEV_PASS, WF_SECEV_R_OVERLOAD, closed ? 503 : 0);
        ev_model(&ev, ir);
        if (wf_secops_emit_global(&ev) < 0)
            WF_STAT_INC(&w->stats, events_dropped);
    }
    count_verdict(closed ? WF_SECEV_UNAVAILABLE : WF_SECEV_PASS, "none", ir ? ir->route : NULL);
    if (closed)
        WF_STAT_INC(&w->stats, overload_closed);
    else
        WF_STAT_INC(&w->stats, overload_open);
    uint64_t now = wf_loop_now(w->loop);
    if (now - wi->log_last >= LOG_EVERY_MS || !wi->log_last) {
        wf_warn("worker %d: detection overloaded (%s): %s (%llu more since the last such line)", w->id, why,
                closed ? "answering 503 (overload: fail_closed)" : "forwarding uninspected (overload: fail_open)",
                (unsigned long long)wi->log_quiet);
        wi->log_last = now;
        wi->log_quiet = 0;
    } else {
        wi->log_quiet++;
    }
    return closed ? WF_INSP_UNAVAILABLE : WF_INSP_PASS;
}

/* ---- the verdict ---- */

typedef struct {
    float margin;
    uint32_t k;           /* index in cu */
    wf_unit_verdict_t uv;
} top_t;

static void emit_detection(wf_insp_req_t *ir, wf_secev_action_t a, uint16_t status, const top_t *top, size_t ntop,
                           size_t crossing)
{
    const wf_model_meta_t *meta = wf_detect_engine_meta(ir->eng);
    wf_secev_t ev;
    evsrc_t s;
    ev_src_ir(&s, ir);
    ev_fill(&ev, &s, a, WF_SECEV_R_MODEL, status);
    ev_model(&ev, ir);
    WF_SECEV_SET(&ev, cls, wf_str_c(meta->labels[ir->cls]));
    ev.score = ir->score;
    ev.units_total = (uint32_t)crossing;
    for (size_t i = 0; i < ntop; i++) {
        const wf_unit_t *u = &ir->units.units[ir->cu[top[i].k].unit];
        wf_secev_unit_t *eu = &ev.units[ev.nunits++];
        wf_secev_set(eu->kind, sizeof(eu->kind), wf_str_c(wf_unit_kind_name(u->kind)));
        wf_secev_set(eu->name, sizeof(eu->name), u->name);
        wf_secev_set(eu->text, sizeof(eu->text), u->text);
        wf_secev_set(eu->cls, sizeof(eu->cls), wf_str_c(meta->labels[top[i].uv.cls]));
        eu->score = top[i].uv.score;
    }
    if (wf_secops_emit_global(&ev) < 0)
        WF_STAT_INC(&ir->wi->w->stats, events_dropped);
}

static void record_ban(wf_insp_req_t *ir)
{
    if (!wf_bans_global)
        return;
    uint64_t now = wf_now_ms(), until = 0;
    uint32_t count = 0;
    if (wf_bans_record(wf_bans_global, &ir->peer, now, &until, &count) != 1)
        return;
    WF_STAT_INC(&ir->wi->w->stats, bans_started);
    wf_info("client %s banned for %llums after %u detections (request %.*s)", ir->ip,
            (unsigned long long)(until - now), count, (int)ir->rid.n, ir->rid.p);
    wf_secev_t ev;
    evsrc_t s;
    ev_src_ir(&s, ir);
    ev_fill(&ev, &s, WF_SECEV_BAN, WF_SECEV_R_BANNED, 403);
    ev_model(&ev, ir);
    ev.detections = count;
    ev.ban_until_ns = ev.time_ns + (until - now) * 1000000u;
    if (wf_secops_emit_global(&ev) < 0)
        WF_STAT_INC(&ir->wi->w->stats, events_dropped);
}

static wf_insp_action_t decide(wf_insp_req_t *ir)
{
    wf_worker_t *w = ir->wi->w;
    const wf_model_meta_t *meta = wf_detect_engine_meta(ir->eng);
    int L = meta->num_labels;
    for (uint32_t k = 0; k < ir->ncu; k++)
        if (ir->cu[k].failed)
            return overload(ir->wi, ir, ir->dc, "inference failed");
    bool use_pol = ir->pol && ir->pol->bound && ir->pol->nlabels == L;
    float thr[WF_MAX_LABELS];
    wf_verdict_t v;
    wf_verdict_init(&v);
    top_t top[TOP_UNITS];
    size_t ntop = 0;
    for (uint32_t k = 0; k < ir->ncu; k++) {
        const cunit_t *c = &ir->cu[k];
        const float *t = meta->thresholds;
        if (use_pol) {
            wf_policy_unit_thresholds(ir->pol, ir->route, &ir->units.units[c->unit], thr);
            t = thr;
        }
        wf_unit_verdict_t uv;
        if (!wf_verdict_add(&v, (long)k, c->probs, t, L, &uv))
            continue;
        /* keep the TOP_UNITS largest margins, in order */
        size_t at = ntop;
        while (at > 0 && top[at - 1].margin < uv.margin)
            at--;
        if (at >= TOP_UNITS)
            continue;
        size_t last = ntop < TOP_UNITS ? ntop : TOP_UNITS - 1;
        memmove(&top[at + 1], &top[at], sizeof(top_t) * (last - at));
        top[at] = (top_t){ uv.margin, k, uv };
        if (ntop < TOP_UNITS)
            ntop++;
    }
    WF_STAT_INC(&w->stats, inspected);
    ir->attack = v.attack;
    ir->cls = v.cls;
    ir->score = v.score;
    if (!v.attack) {
        count_verdict(ir->mode == WF_MODE_TAG ? WF_SECEV_TAG : WF_SECEV_PASS, meta->labels[0], ir->route);
        return ir->mode == WF_MODE_TAG ? WF_INSP_TAG : WF_INSP_PASS;
    }
    count_verdict(ir->mode == WF_MODE_MONITOR ? WF_SECEV_MONITOR : ir->mode == WF_MODE_TAG ? WF_SECEV_TAG : WF_SECEV_BLOCK,
                  meta->labels[v.cls], ir->route);
    switch (ir->mode) {
    case WF_MODE_MONITOR:
        WF_STAT_INC(&w->stats, monitored);
        emit_detection(ir, WF_SECEV_MONITOR, 0, top, ntop, v.crossing);
        return WF_INSP_PASS;
    case WF_MODE_TAG:
        WF_STAT_INC(&w->stats, tagged);
        emit_detection(ir, WF_SECEV_TAG, 0, top, ntop, v.crossing);
        return WF_INSP_TAG;
    default:
        WF_STAT_INC(&w->stats, blocked);
        emit_detection(ir, WF_SECEV_BLOCK, 403, top, ntop, v.crossing);
        wf_debug("request %.*s blocked: %s %.4f", (int)ir->rid.n, ir->rid.p, meta->labels[v.cls], (double)v.score);
        record_ban(ir);
        return WF_INSP_BLOCK;
    }
}

static void on_verdict(void *arg, uint64_t key, uint32_t unit, const float *probs)
{
    wf_insp_t *wi = arg;
    uint32_t slot = (uint32_t)key;
    if (slot >= wi->nslots)
        return;
    wf_insp_req_t *ir = wi->table[slot];
    if (!ir || !ir->live || !ir->parked || ir->seq != (uint32_t)(key >> 32) || unit >= ir->ncu)
        return; /* the request went away or gave up waiting */
    cunit_t *c = &ir->cu[unit];
    if (c->done)
        return;
    c->done = true;
    if (probs) {
        int L = wf_detect_engine_meta(ir->eng)->num_labels;
        memcpy(c->probs, probs, sizeof(float) * (size_t)L);
        if (c->mkey)
            cache_put(wf_detect_engine_id(ir->eng), c->mkind, c->hash, c->mkey, c->mlen, probs, L);
    } else {
        c->failed = true;
    }
    if (--ir->npending)
        return;
    ir->parked = false;
    wf_loop_timer_cancel(wi->w->loop, &ir->timer);
    wf_proxy_insp_done(ir->owner, decide(ir));
}

static void on_timeout(wf_loop_t *loop, wf_timer_t *t)
{
    wf_insp_req_t *ir = t->data;
    if (!ir->live || !ir->parked)
        return;
    ir->parked = false; /* verdicts still due are ignored */
    WF_STAT_INC(&ir->wi->w->stats, verdict_timeouts);
    wf_proxy_insp_done(ir->owner, overload(ir->wi, ir, ir->dc, "verdict timeout"));
}

/* ---- classification ---- */

static int ensure_scratch(wf_insp_t *wi, size_t text, size_t ids)
{
    if (text > wi->text_cap) {
        char *p = realloc(wi->text, text);
        if (!p)
            return -ENOMEM;
        wi->text = p;
        wi->text_cap = text;
    }
    if (ids > wi->ids_cap) {
        int32_t *p = realloc(wi->ids, ids * sizeof(int32_t));
        if (!p)
            return -ENOMEM;
        wi->ids = p;
        wi->ids_cap = ids;
    }
    return 0;
}

static wf_insp_action_t classify(wf_insp_req_t *ir, const wf_http_request_t *req, wf_str_t body)
{
    wf_insp_t *wi = ir->wi;
    wf_worker_t *w = wi->w;
    const wf_detect_conf_t *dc = ir->dc;
    ir->eng = wf_detect_engine_get(wf_detect_global);
    const wf_model_meta_t *meta = wf_detect_engine_meta(ir->eng);
    const wf_tokenizer_t *tok = wf_detect_engine_tokenizer(ir->eng);
    int L = meta->num_labels, M = wf_detect_engine_max_len(ir->eng);
    uint64_t eid = wf_detect_engine_id(ir->eng);
    size_t tmax = wf_unit_text_max(&dc->inspect);
    unsigned id_bits = 1;
    while (id_bits < 31 && (1u << id_bits) < (unsigned)wf_tokenizer_vocab_size(tok))
        id_bits++;
    size_t kmax = cache_key_max(L);
    wf_inspect_stats_t ist = { 0 };
    /* a unit lost for want of memory would be a request forwarded partly uninspected */
    if (ensure_scratch(wi, tmax, (size_t)M) ||
        wf_inspect_request(&dc->inspect, req, body, &ir->arena, &ir->units, &ist) < 0 || ist.no_memory)
        return overload(wi, ir, dc, "out of memory");
    if (ir->body_cut)
        ir->units.flags |= WF_INSPECT_R_BODY_CUT;
    ir->cu = ir->units.n ? wf_arena_alloc(&ir->arena, sizeof(cunit_t) * ir->units.n) : NULL;
    if (ir->units.n && !ir->cu)
        return overload(wi, ir, dc, "out of memory");
    for (size_t i = 0; i < ir->units.n; i++) {
        const wf_unit_t *u = &ir->units.units[i];
        WF_STAT_INC(&w->stats, units_extracted);
        if (u->flags & WF_UNIT_F_SAFE) {
            WF_STAT_INC(&w->stats, units_safe);
            continue;
        }
        if (!wf_detect_engine_reads(ir->eng, u->kind))
            continue;
        cunit_t *c = &ir->cu[ir->ncu];
        *c = (cunit_t){ .unit = (uint32_t)i };
        c->probs = wf_arena_alloc(&ir->arena, sizeof(float) * (size_t)L);
        if (!c->probs)
            return overload(wi, ir, dc, "out of memory");
        size_t len = WF_MIN(wf_unit_text(u, wi->text, tmax), tmax);
        /* the key: the text, or (a long text) its token ids, tokenized here once for the cache and the model */
        int k = 0, kind = 0;
        const char *key = NULL;
        size_t klen = 0;
        if (len <= kmax) {
            kind = KEY_TEXT;
            key = wi->text;
            klen = len;
        } else {
            k = wf_tokenizer_encode(tok, wi->text, len, wi->ids, M);
            klen = pack_ids(wi->ids, k, id_bits, (uint8_t *)wi->idkey, kmax);
            if (klen) {
                kind = KEY_IDS;
                key = wi->idkey;
            }
        }
        if (kind) {
            c->hash = wf_hash64(key, klen, 0x77af + (uint64_t)kind);
            if (cache_get(eid, kind, c->hash, key, klen, c->probs, L)) {
                WF_STAT_INC(&w->stats, units_cached);
                c->done = true;
                ir->ncu++;
                continue;
            }
            if (cache.nsets) {
                char *t = wf_arena_alloc(&ir->arena, klen ? klen : 1);
                if (t) {
                    memcpy(t, key, klen);
                    c->mkey = t;
                    c->mlen = (uint16_t)klen;
                    c->mkind = (uint8_t)kind;
                }
            }
        }
        if (!k)
            k = wf_tokenizer_encode(tok, wi->text, len, wi->ids, M);
        if (k <= 0) {
            c->done = c->failed = true;
            ir->ncu++;
            continue;
        }
        int rc = wf_detect_submit(wi->port, ir->eng, req_key(ir), ir->ncu, wi->ids, k);
        if (rc < 0) {
            wf_detect_flush(wi->port);
            return overload(wi, ir, dc, rc == -EAGAIN ? "inference queue full" : wf_strerror(rc));
        }
        WF_STAT_INC(&w->stats, units_model);
        ir->npending++;
        ir->ncu++;
    }
    if (!ir->npending)
        return decide(ir);
    wf_detect_flush(wi->port);
    ir->timer.cb = on_timeout;
    wf_loop_timer_set(w->loop, &ir->timer, wf_loop_now(w->loop) + dc->timeout_ms);
    ir->parked = true;
    return WF_INSP_WAIT;
}

/* ---- the hooks ---- */

bool wf_insp_refuse_conn(wf_worker_t *w, const wf_sockaddr_t *peer)
{
    const wf_policy_t *pol = w->gen->conf->policy;
    if (pol && pol->ndeny && wf_policy_client(pol, peer) == WF_CLIENT_DENY) {
        WF_STAT_INC(&w->stats, denied);
        return true;
    }
    if (pol && pol->nallow && wf_policy_client(pol, peer) == WF_CLIENT_ALLOW)
        return false;
    if (wf_bans_global && wf_bans_check(wf_bans_global, peer, wf_now_ms(), NULL)) {
        WF_STAT_INC(&w->stats, banned);
        return true;
    }
    return false;
}

static wf_str_t arena_copy(wf_arena_t *a, wf_str_t s, size_t max)
{
    size_t n = WF_MIN(s.n, max);
    char *p = n ? wf_arena_strndup(a, s.p, n) : NULL;
    return p ? wf_str(p, n) : WF_STR_NULL;
}

/* A request refused for who sent it (deny-listed, banned): its event, its verdict count, 403. */
static wf_insp_action_t refuse_client(const wf_insp_start_t *st, wf_secev_action_t a, wf_secev_reason_t r)
{
    wf_secev_t ev;
    evsrc_t s;
    ev_src_req(&s, st);
    ev_fill(&ev, &s, a, r, 403);
    wf_secops_emit_global(&ev);
    count_verdict(a, "none", NULL);
    return WF_INSP_REFUSE;
}

wf_insp_action_t wf_insp_begin(wf_worker_t *w, const wf_insp_start_t *st, wf_insp_req_t **out, size_t *body_limit)
{
    *out = NULL;
    wf_insp_t *wi = w->insp;
    const wf_server_conf_t *gc = w->gen->conf;
    const wf_policy_t *pol = gc->policy;
    const wf_http_request_t *req = st->req;
    if (pol && (pol->nallow || pol->ndeny)) {
        wf_client_list_t cl = wf_policy_client(pol, st->peer);
        if (cl == WF_CLIENT_DENY) {
            WF_STAT_INC(&w->stats, denied);
            return refuse_client(st, WF_SECEV_DENY, WF_SECEV_R_DENYLIST);
        }
        if (cl == WF_CLIENT_ALLOW) {
            WF_STAT_INC(&w->stats, allowlisted);
            count_verdict(WF_SECEV_PASS, "none", NULL);
            return WF_INSP_PASS;
        }
    }
    uint64_t until = 0;
    if (wf_bans_global && wf_bans_check(wf_bans_global, st->peer, wf_now_ms(), &until)) {
        WF_STAT_INC(&w->stats, banned);
        return refuse_client(st, WF_SECEV_BAN, WF_SECEV_R_BANNED);
    }
    if (wf_misp_global) {
        wf_ioc_hit_t hit;
        const wf_http_header_t *ua = wf_http_header_find(req->headers, req->nheaders, "user-agent");
        int act = wf_misp_check(st->peer, req->host, req->target, ua ? ua->value : WF_STR_NULL, &hit);
        if (act >= 0) {
            bool block = act == WF_MISP_BLOCK;
            WF_STAT_INC(&w->stats, indicator_matched);
            wf_secev_t ev;
            evsrc_t s;
            ev_src_req(&s, st);
            ev_fill(&ev, &s, block ? WF_SECEV_DENY : WF_SECEV_MONITOR, WF_SECEV_R_INDICATOR, block ? 403 : 0);
            wf_ioc_hit_secev(&hit, &ev);
            wf_secops_emit_global(&ev);
            if (block) {
                count_verdict(WF_SECEV_DENY, "none", NULL);
                return WF_INSP_REFUSE;
            }
        }
    }
    const wf_detect_conf_t *dc = gc->detect;
    if (!dc || !dc->enabled || !wf_detect_global)
        return WF_INSP_PASS;
    if (!wi)
        return dc->overload == WF_OVERLOAD_FAIL_CLOSED ? WF_INSP_UNAVAILABLE : WF_INSP_PASS;
    const wf_route_t *route = NULL;
    wf_mode_t mode = WF_MODE_BLOCK;
    if (pol) {
        route = wf_policy_route(pol, req->host, req->path);
        mode = route->mode_set ? route->mode : pol->mode;
    }
    if (mode == WF_MODE_OFF) {
        count_verdict(WF_SECEV_PASS, "none", route);
        return WF_INSP_PASS;
    }
    if (!wi->port) /* the worker could not open its detection port (logged at start) */
        return overload(wi, NULL, dc, "no detection port in this worker");
    wf_insp_req_t *ir = req_new(wi);
    if (!ir)
        return overload(wi, NULL, dc, "too many requests waiting for verdicts (detection.max_inflight)");
    *out = ir;
    ir->owner = st->owner;
    ir->gen = w->gen;
    wf_gen_ref(ir->gen);
    ir->pol = pol;
    ir->route = route;
    ir->mode = mode;
    ir->dc = dc;
    ir->peer = *st->peer;
    ir->port = st->port;
    snprintf(ir->ip, sizeof(ir->ip), "%.*s", (int)st->ip.n, st->ip.p);
    wf_arena_t *a = &ir->arena;
    a->limit = 0;
    const wf_http_header_t *ua = wf_http_header_find(req->headers, req->nheaders, "user-agent");
    ir->rid = arena_copy(a, st->rid, WF_REQUEST_ID_MAX);
    ir->method = arena_copy(a, req->method, 15);
    ir->host = arena_copy(a, req->host, 255);
    ir->path = arena_copy(a, req->path, 511);
    ir->query = arena_copy(a, req->query, 511);
    ir->ua = arena_copy(a, ua ? ua->value : WF_STR_NULL, 255);
    /* the request's memory: the body copy, the units and their texts */
    a->limit = WF_MAX(a->total, (size_t)16384) + 2 * dc->inspect.max_body_bytes + 8 * dc->inspect.max_total_bytes +
               (1u << 20);
    if (st->has_body) {
        ir->head = wf_arena_alloc(a, st->head_len);
        if (!ir->head)
            return overload(wi, ir, dc, "out of memory");
        memcpy(ir->head, st->head, st->head_len);
        ir->head_len = st->head_len;
        *body_limit = WF_MIN(dc->inspect.max_body_bytes, st->buf_cap);
        return WF_INSP_BODY;
    }
    return classify(ir, req, WF_STR_NULL);
}

bool wf_insp_reject_oversize(wf_insp_req_t *ir)
{
    if (ir->dc->body_over_limit != WF_BODY_REJECT)
        return false;
    WF_STAT_INC(&ir->wi->w->stats, body_over_limit);
    return true;
}

wf_insp_action_t wf_insp_body(wf_insp_req_t *ir, wf_str_t raw, bool chunked, bool complete)
{
    wf_insp_t *wi = ir->wi;
    wf_worker_t *w = wi->w;
    const wf_detect_conf_t *dc = ir->dc;
    if (!complete) {
        WF_STAT_INC(&w->stats, body_over_limit);
        if (dc->body_over_limit == WF_BODY_REJECT)
            return WF_INSP_TOO_LARGE;
        ir->body_cut = true;
    }
    wf_str_t body = raw;
    if (chunked) {
        char *o = raw.n ? wf_arena_alloc(&ir->arena, raw.n) : NULL;
        if (raw.n && !o)
            return overload(wi, ir, dc, "out of memory");
        wf_http_limits_t lim;
        wf_http_limits_default(&lim);
        lim.max_body_bytes = 0;
        wf_http_chunked_t ch;
        wf_http_chunked_init(&ch, &lim);
        size_t off = 0, n = 0;
        while (off < raw.n) {
            size_t used = 0;
            wf_str_t data;
            int rc = wf_http_chunked_feed(&ch, raw.p + off, raw.n - off, &used, &data);
            if (data.n) {
                memcpy(o + n, data.p, data.n);
                n += data.n;
            }
            off += used;
            if (rc != 0 || used == 0)
                break;
        }
        body = wf_str(o, n);
    }
    wf_http_limits_t lim;
    wf_http_limits_default(&lim);
    lim.max_header_bytes = ir->head_len;
    lim.max_headers = w->hdrs_cap;
    lim.max_uri = ir->head_len;
    lim.max_body_bytes = 0;
    wf_http_request_t req;
    int rc = wf_http_parse_request(ir->head, ir->head_len, &lim, &req, w->hdrs);
    if (rc <= 0) {
        wf_error("worker %d: request %.*s: its header no longer parses (%d); not inspected", w->id, (int)ir->rid.n,
                 ir->rid.p, rc);
        return overload(wi, ir, dc, "internal error");
    }
    return classify(ir, &req, body);
}

int wf_insp_tag_head(const wf_insp_req_t *ir, char *head, size_t len, size_t cap)
{
    /* drop the client's own X-Wafer-* verdict fields: the upstream must be able to trust them */
    char *p = memchr(head, '\n', len);
    if (!p || len < 4)
        return -1;
    size_t i = (size_t)(p - head) + 1;
    while (i + 2 <= len && !(head[i] == '\r' && head[i + 1] == '\n')) {
        char *e = memchr(head + i, '\n', len - i);
        if (!e)
            return -1;
        size_t ll = (size_t)(e - (head + i)) + 1;
        wf_str_t line = wf_str(head + i, ll);
        bool drop = (line.n >= 16 && wf_str_eq_lit_nocase(wf_str(line.p, 16), "x-wafer-verdict:")) ||
                    (line.n >= 14 && wf_str_eq_lit_nocase(wf_str(line.p, 14), "x-wafer-score:"));
        if (drop) {
            memmove(head + i, head + i + ll, len - i - ll);
            len -= ll;
        } else {
            i += ll;
        }
    }
    char add[96];
    int n = snprintf(add, sizeof(add), "X-Wafer-Verdict: %s\r\nX-Wafer-Score: %.4f\r\n",
                     ir->attack ? "attack" : "benign", (double)ir->score);
    if (n < 0 || len + (size_t)n > cap || i > len)
        return -1;
    memmove(head + i + n, head + i, len - i);
    memcpy(head + i, add, (size_t)n);
    return (int)(len + (size_t)n);
}

bool wf_insp_accept_json(const wf_http_request_t *req)
{
    const wf_http_header_t *h = wf_http_header_find(req->headers, req->nheaders, "accept");
    if (!h)
        return false;
    const char *v = h->value.p;
    size_t n = h->value.n;
    const char *json = NULL, *html = NULL;
    for (size_t i = 0; i < n; i++) {
        if (!json && n - i >= 4 && !strncasecmp(v + i, "json", 4))
            json = v + i;
        if (!html && n - i >= 9 && !strncasecmp(v + i, "text/html", 9))
            html = v + i;
    }
    return json && (!html || json < html);
}

int wf_insp_block_response(bool json, wf_str_t rid, bool keepalive, char *out, size_t cap)
{
    char body[512];
    int bn;
    if (json)
        bn = snprintf(body, sizeof(body),
                      "{\"status\":403,\"error\":\"forbidden\",\"message\":\"The request was blocked by the web "
                      "application firewall.\",\"request_id\":\"%.*s\"}\n", (int)rid.n, rid.p);
    else
        bn = snprintf(body, sizeof(body),
                      "<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body>\n"
                      "<h1>403 Forbidden</h1>\n<p>The request was blocked by the web application firewall.</p>\n"
                      "<p>Request id: %.*s</p>\n</body></html>\n", (int)rid.n, rid.p);
    if (bn < 0 || (size_t)bn >= sizeof(body))
        return -1;
    int n = snprintf(out, cap,
                     "HTTP/1.1 403 Forbidden\r\nContent-Type: %s\r\nContent-Length: %d\r\nCache-Control: no-store\r\n"
                     "X-Request-Id: %.*s\r\nConnection: %s\r\n\r\n%s",
                     json ? "application/json" : "text/html; charset=utf-8", bn, (int)rid.n, rid.p,
                     keepalive ? "keep-alive" : "close", body);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

/* ---- workers ---- */

int wf_insp_worker_init(wf_worker_t *w)
{
    wf_insp_t *wi = calloc(1, sizeof(*wi));
    if (!wi)
        return -ENOMEM;
    wi->w = w;
    const wf_detect_conf_t *dc = w->gen->conf->detect;
    wi->nslots = dc ? dc->max_inflight : 1024;
    wi->table = calloc(wi->nslots, sizeof(*wi->table));
    wi->free_slots = malloc(sizeof(uint32_t) * wi->nslots);
    if (!wi->table || !wi->free_slots)
        goto nomem;
    for (uint32_t i = 0; i < wi->nslots; i++)
        wi->free_slots[i] = wi->nslots - 1 - i;
    wi->nfree = wi->nslots;
    w->insp = wi;
    if (wf_detect_global) {
        int rc = wf_detect_port_open(wf_detect_global, w->loop, on_verdict, wi, &wi->port);
        if (rc) {
            wf_error("worker %d: detection port: %s; this worker forwards requests uninspected or refuses them "
                     "as detection.overload says", w->id, wf_strerror(rc));
            wi->port = NULL;
        }
    }
    return 0;
nomem:
    free(wi->table);
    free(wi->free_slots);
    free(wi);
    return -ENOMEM;
}

void wf_insp_worker_free(wf_worker_t *w)
{
    wf_insp_t *wi = w->insp;
    if (!wi)
        return;
    wf_detect_port_close(wi->port);
    for (uint32_t i = 0; i < wi->nslots; i++) {
        wf_insp_req_t *ir = wi->table[i];
        if (!ir)
            continue;
        if (ir->live)
            wf_insp_end(ir);
        if (ir->arena_ready)
            wf_arena_free(&ir->arena);
        free(ir);
    }
    free(wi->table);
    free(wi->free_slots);
    free(wi->ids);
    free(wi->text);
    free(wi);
    w->insp = NULL;
}

/* A failed policy binding is a refusal of the configuration. */
static int bind_policy(wf_server_conf_t *sc, char *err, size_t errlen)
{
    if (!sc->policy || !wf_detect_global)
        return 0;
    wf_detect_engine_t *e = wf_detect_engine_get(wf_detect_global);
    const wf_model_meta_t *m = wf_detect_engine_meta(e);
    const char *labels[WF_MAX_LABELS];
    for (int i = 0; i < m->num_labels; i++)
        labels[i] = m->labels[i];
    char msg[400] = "";
    int rc = wf_policy_bind(sc->policy, labels, m->thresholds, m->num_labels, msg, sizeof(msg));
    wf_detect_engine_unref(e);
    if (rc) {
        snprintf(err, errlen, "%s: policy: %s", sc->file, msg);
        return -1;
    }
    return 0;
}

int wf_insp_prepare(wf_server_conf_t *sc, bool first, char *err, size_t errlen)
{
    const wf_detect_conf_t *dc = sc->detect;
    if (!verdicts) {
        static const char *const labels[] = { "action", "class", "route", NULL };
        verdicts = wf_lcount_new("wafer_inspection_verdicts_total",
                                 "Requests by what the firewall did (action), the deciding class (benign, an attack "
                                 "class, or none when no model verdict decided) and route.",
                                 labels, 4096);
        if (!verdicts) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (sc->policy) {
        if (!wf_bans_global) {
            wf_bans_global = wf_bans_new(&sc->policy->ban);
            if (!wf_bans_global) {
                snprintf(err, errlen, "out of memory");
                return -1;
            }
        } else {
            wf_bans_configure(wf_bans_global, &sc->policy->ban);
        }
    }
    if (dc && dc->enabled) {
        if (!wf_detect_global) {
            if (!first) {
                snprintf(err, errlen, "%s: detection: inspection was off at start; turning it on needs a restart",
                         sc->file);
                return -1;
            }
            char msg[600];
            if (dc->cache_entries && cache_init((uint64_t)dc->cache_entries * (uint64_t)sc->workers) < 0) {
                snprintf(err, errlen, "%s: detection: no memory for a cache of %llu entries", sc->file,
                         (unsigned long long)dc->cache_entries * (unsigned long long)sc->workers);
                return -1;
            }
            sc->detect->ports = sc->workers;
            int rc = wf_detect_start(dc, &wf_detect_global, msg, sizeof(msg));
            if (rc) {
                cache_free();
                snprintf(err, errlen, "%s: detection: %s", sc->file, msg);
                return -1;
            }
        } else if (!first) {
            char msg[600];
            int rc = wf_detect_reload_model(wf_detect_global, dc->model_dir, msg, sizeof(msg));
            if (rc < 0)
                wf_error("reload: the new model is refused and the current one keeps serving: %s", msg);
        }
    } else if (wf_detect_global && !first) {
        wf_warn("reload: detection is off in %s: new requests are not inspected", sc->file);
    }
    if (wf_detect_global) {
        wf_detect_engine_t *e = wf_detect_engine_get(wf_detect_global);
        wf_admin_set_info("model.id", wf_detect_engine_meta(e)->name);
        wf_admin_set_info("model.backend", wf_detect_engine_backend(e));
        wf_detect_engine_unref(e);
    }
    return bind_policy(sc, err, errlen);
}

void wf_insp_shutdown(void)
{
    wf_detect_stop(wf_detect_global);
    wf_detect_global = NULL;
    cache_free();
}

int wf_server_conf_check(wf_server_conf_t *sc, char *err, size_t errlen)
{
    const wf_detect_conf_t *dc = sc->detect;
    if (!dc || !dc->enabled)
        return 0;
    wf_model_t *m = NULL;
    wf_err_t me = { { 0 } };
    wf_status_t s = wf_model_load(dc->model_dir, &m, &me);
    if (s != WF_OK) {
        snprintf(err, errlen, "%s: detection.model %s: %s", sc->file, dc->model_dir,
                 me.msg[0] ? me.msg : wf_status_str(s));
        return -1;
    }
    const wf_model_meta_t *meta = wf_model_get_meta(m);
    const char *labels[WF_MAX_LABELS];
    for (int i = 0; i < meta->num_labels; i++)
        labels[i] = meta->labels[i];
    char msg[400] = "";
    int rc = sc->policy ? wf_policy_bind(sc->policy, labels, meta->thresholds, meta->num_labels, msg, sizeof(msg)) : 0;
    wf_model_free(m);
    if (rc) {
        snprintf(err, errlen, "%s: policy: %s", sc->file, msg);
        return -1;
    }
    return 0;
}
