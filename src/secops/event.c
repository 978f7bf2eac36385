/* The security event record and its JSON form (docs/events.md). */
#include "wafer/secops.h"

#include <math.h>
#include <stdio.h>
#include <time.h>

static const char *const action_names[WF_SECEV__COUNT] = {
    [WF_SECEV_BLOCK] = "block", [WF_SECEV_MONITOR] = "monitor", [WF_SECEV_TAG] = "tag",
    [WF_SECEV_BAN] = "ban",     [WF_SECEV_DENY] = "deny",       [WF_SECEV_LIMIT] = "limit",
    [WF_SECEV_PASS] = "pass",   [WF_SECEV_UNAVAILABLE] = "unavailable",
};

static const char *const reason_names[WF_SECEV_R__COUNT] = {
    [WF_SECEV_R_MODEL] = "model",         [WF_SECEV_R_BANNED] = "banned",     [WF_SECEV_R_DENYLIST] = "denylist",
    [WF_SECEV_R_INDICATOR] = "indicator", [WF_SECEV_R_IDENTITY] = "identity", [WF_SECEV_R_RATE] = "rate",
    [WF_SECEV_R_CONNLIMIT] = "connlimit", [WF_SECEV_R_OVERLOAD] = "overload",
};

const char *wf_secev_action_name(wf_secev_action_t a)
{
    return (unsigned)a < WF_SECEV__COUNT ? action_names[a] : "unknown";
}

const char *wf_secev_reason_name(wf_secev_reason_t r)
{
    return (unsigned)r < WF_SECEV_R__COUNT ? reason_names[r] : "unknown";
}

void wf_secev_init(wf_secev_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ev->time_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void wf_secev_set(char *field, size_t cap, wf_str_t s)
{
    if (!cap)
        return;
    size_t n = s.n;
    if (n > cap - 1) {
        n = cap - 1;
        /* s.p[n] is the first byte left out: when it continues a sequence,
         * drop that sequence's first bytes too (at most 3 of them) */
        size_t back = 0;
        while (n > 0 && back < 3 && ((unsigned char)s.p[n] & 0xc0) == 0x80) {
            n--;
            back++;
        }
        if (back == 3 && ((unsigned char)s.p[n] & 0xc0) == 0x80)
            n += back; /* not UTF-8 at all: cut where it fits */
    }
    if (n)
        memcpy(field, s.p, n);
    /* the tail is zeroed so that a record holds no stale bytes (it is copied whole) */
    memset(field + n, 0, cap - n);
}

/* ---- JSON ---- */

typedef struct {
    wf_buf_t *b;
    int err;
    bool first; /* no member written yet in the current object */
} jw_t;

static void jw_raw(jw_t *w, const char *s, size_t n)
{
    if (!w->err)
        w->err = wf_buf_append(w->b, s, n);
}

static void jw_lit(jw_t *w, const char *s) { jw_raw(w, s, strlen(s)); }

static void jw_str(jw_t *w, const char *s, size_t n)
{
    if (!w->err)
        w->err = wf_json_str_append(w->b, s, n);
}

/* Starts a member "key": (with a comma when one came before). */
static void jw_key(jw_t *w, const char *key)
{
    if (!w->first)
        jw_raw(w, ",", 1);
    w->first = false;
    jw_str(w, key, strlen(key));
    jw_raw(w, ":", 1);
}

static void jw_open(jw_t *w, const char *key)
{
    jw_key(w, key);
    jw_raw(w, "{", 1);
    w->first = true;
}

static void jw_close(jw_t *w)
{
    jw_raw(w, "}", 1);
    w->first = false;
}

#define FIELD_LEN(f) strnlen((f), sizeof(f))

/* A string member, left out when empty. */
static void jw_field(jw_t *w, const char *key, const char *v, size_t cap)
{
    size_t n = strnlen(v, cap);
    if (!n)
        return;
    jw_key(w, key);
    jw_str(w, v, n);
}
#define JW_FIELD(w, key, f) jw_field((w), (key), (f), sizeof(f))

static void jw_u64(jw_t *w, const char *key, uint64_t v)
{
    char num[24];
    int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);
    jw_key(w, key);
    jw_raw(w, num, (size_t)n);
}

/* Scores are probabilities; a value that is not finite is written as null. */
static void jw_score(jw_t *w, const char *key, float v)
{
    jw_key(w, key);
    if (!isfinite(v)) {
        jw_lit(w, "null");
        return;
    }
    char num[32];
    int n = snprintf(num, sizeof(num), "%.6g", (double)v);
    jw_raw(w, num, (size_t)n);
}

static void jw_time(jw_t *w, const char *key, uint64_t ns)
{
    char ts[40];
    size_t n = wf_time_rfc3339(ns / 1000u, ts, sizeof(ts));
    jw_key(w, key);
    jw_str(w, ts, n);
}

static bool has_text(const char *f) { return f[0] != 0; }

static bool action_refused(wf_secev_action_t a)
{
    return a == WF_SECEV_BLOCK || a == WF_SECEV_BAN || a == WF_SECEV_DENY || a == WF_SECEV_LIMIT ||
           a == WF_SECEV_UNAVAILABLE;
}

int wf_secev_json(const wf_secev_t *ev, wf_buf_t *out)
{
    size_t mark = wf_buf_len(out); /* a length: appending may compact the buffer */
    jw_t w = { out, 0, true };
    jw_raw(&w, "{", 1);
    jw_time(&w, "@timestamp", ev->time_ns);

    jw_open(&w, "event");
    jw_key(&w, "kind");
    jw_lit(&w, ev->action == WF_SECEV_PASS ? "\"event\"" : "\"alert\"");
    jw_key(&w, "category");
    jw_lit(&w, "[\"web\"]");
    jw_key(&w, "type");
    jw_lit(&w, action_refused(ev->action) ? "[\"denied\"]" : "[\"allowed\"]");
    jw_key(&w, "action");
    jw_lit(&w, "\"");
    jw_lit(&w, wf_secev_action_name(ev->action));
    jw_lit(&w, "\"");
    jw_key(&w, "reason");
    jw_lit(&w, "\"");
    jw_lit(&w, wf_secev_reason_name(ev->reason));
    jw_lit(&w, "\"");
    jw_close(&w);

    if (has_text(ev->request_id) || has_text(ev->method) || ev->status) {
        jw_open(&w, "http");
        if (has_text(ev->request_id) || has_text(ev->method)) {
            jw_open(&w, "request");
            JW_FIELD(&w, "id", ev->request_id);
            JW_FIELD(&w, "method", ev->method);
            jw_close(&w);
        }
        if (ev->status) {
            jw_open(&w, "response");
            jw_u64(&w, "status_code", ev->status);
            jw_close(&w);
        }
        jw_close(&w);
    }
    if (has_text(ev->client_ip) || ev->client_port) {
        jw_open(&w, "source");
        JW_FIELD(&w, "ip", ev->client_ip);
        if (ev->client_port)
            jw_u64(&w, "port", ev->client_port);
        jw_close(&w);
    }
    if (has_text(ev->host) || has_text(ev->path) || has_text(ev->query)) {
        jw_open(&w, "url");
        JW_FIELD(&w, "domain", ev->host);
        JW_FIELD(&w, "path", ev->path);
        JW_FIELD(&w, "query", ev->query);
        jw_close(&w);
    }
    if (has_text(ev->user_agent)) {
        jw_open(&w, "user_agent");
        JW_FIELD(&w, "original", ev->user_agent);
        jw_close(&w);
    }
    if (ev->nmisp) {
        jw_open(&w, "threat");
        jw_open(&w, "indicator");
        jw_key(&w, "provider");
        jw_lit(&w, "\"misp\"");
        jw_close(&w);
        jw_close(&w);
    }

    jw_open(&w, "wafer");
    JW_FIELD(&w, "identity", ev->identity);
    JW_FIELD(&w, "route", ev->route);
    JW_FIELD(&w, "class", ev->cls);
    if (has_text(ev->cls) || ev->score != 0)
        jw_score(&w, "score", ev->score);
    uint32_t nunits = WF_MIN(ev->nunits, (uint32_t)WF_SECEV_MAX_UNITS);
    if (nunits) {
        jw_key(&w, "units");
        jw_raw(&w, "[", 1);
        for (uint32_t i = 0; i < nunits; i++) {
            const wf_secev_unit_t *u = &ev->units[i];
            if (i)
                jw_raw(&w, ",", 1);
            jw_raw(&w, "{", 1);
            w.first = true;
            JW_FIELD(&w, "kind", u->kind);
            JW_FIELD(&w, "name", u->name);
            jw_key(&w, "text");
            jw_str(&w, u->text, FIELD_LEN(u->text));
            JW_FIELD(&w, "class", u->cls);
            jw_score(&w, "score", u->score);
            jw_close(&w);
        }
        jw_raw(&w, "]", 1);
    }
    if (ev->units_total || nunits)
        jw_u64(&w, "units_total", WF_MAX(ev->units_total, nunits));
    JW_FIELD(&w, "model", ev->model);
    if (ev->detections)
        jw_u64(&w, "detections", ev->detections);
    if (ev->ban_until_ns)
        jw_time(&w, "ban_until", ev->ban_until_ns);
    uint32_t nmisp = WF_MIN(ev->nmisp, (uint32_t)WF_SECEV_MAX_MISP);
    if (nmisp) {
        jw_open(&w, "misp");
        jw_key(&w, "events");
        jw_raw(&w, "[", 1);
        for (uint32_t i = 0; i < nmisp; i++) {
            if (i)
                jw_raw(&w, ",", 1);
            jw_str(&w, ev->misp_event[i], FIELD_LEN(ev->misp_event[i]));
        }
        jw_raw(&w, "]", 1);
        if (has_text(ev->misp_tags)) {
            /* the comma-separated list as a JSON array of its non-empty items */
            jw_key(&w, "tags");
            jw_raw(&w, "[", 1);
            const char *p = ev->misp_tags, *end = p + FIELD_LEN(ev->misp_tags);
            bool any = false;
            while (p < end) {
                const char *c = memchr(p, ',', (size_t)(end - p));
                const char *e = c ? c : end;
                const char *s = p;
                while (s < e && *s == ' ')
                    s++;
                if (e > s) {
                    if (any)
                        jw_raw(&w, ",", 1);
                    jw_str(&w, s, (size_t)(e - s));
                    any = true;
                }
                p = e + 1;
            }
            jw_raw(&w, "]", 1);
        }
        jw_close(&w);
    }
    jw_close(&w);

    jw_raw(&w, "}", 1);
    if (w.err)
        out->end = out->start + mark; /* nothing half-written */
    return w.err;
}
