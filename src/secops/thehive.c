/* TheHive 5 alerts from security events: aggregation, the alert document,
 * delivery with libcurl and retries (see wafer/thehive.h). */
#include "wafer/thehive.h"
#include "wafer/core.h"
#include "wafer/metrics.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#define MAX_SAMPLES 10
#define RESP_KEEP 2048 /* bytes of a response body kept for the log and the duplicate check */

/* ---- configuration ---- */

static void conf_defaults(wf_thehive_conf_t *tc)
{
    memset(tc, 0, sizeof(*tc));
    tc->window_ms = 60000;
    tc->max_groups = 1024;
    tc->samples = 3;
    tc->tlp = 2;
    tc->pap = 2;
    tc->tls_verify = true;
    tc->timeout_ms = 10000;
    tc->retry_min_ms = 1000;
    tc->retry_max_ms = 300000;
    tc->max_pending = 1000;
    tc->flush_timeout_ms = 5000;
}

void wf_thehive_conf_free(wf_thehive_conf_t *tc)
{
    if (!tc)
        return;
    free(tc->url);
    if (tc->api_key) {
        explicit_bzero(tc->api_key, strlen(tc->api_key));
        free(tc->api_key);
    }
    free(tc->organisation);
    free(tc->alert_type);
    free(tc->source);
    free(tc->ca_file);
    memset(tc, 0, sizeof(*tc));
}

static int dup_str(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **out, const char *def,
                   wf_conf_err_t *err)
{
    const char *v = NULL;
    int rc = wf_conf_str(c, map, key, &v, err);
    if (rc)
        return rc;
    if (v && !*v)
        return wf_conf_errorf(c, wf_conf_get(map, key), err, "must not be empty");
    if (!v)
        v = def;
    if (v && !(*out = strdup(v)))
        return -ENOMEM;
    return 0;
}

/* An API key from a file: the first line, without its end. */
static int read_key_file(const wf_conf_t *c, const wf_conf_node_t *at, const char *path, char **out,
                         wf_conf_err_t *err)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return wf_conf_errorf(c, at, err, "%s: %s", path, strerror(errno));
    char line[1024];
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    line[n] = 0;
    if (!n) {
        explicit_bzero(line, sizeof(line));
        return wf_conf_errorf(c, at, err, "%s: no API key on its first line", path);
    }
    *out = strdup(line);
    explicit_bzero(line, sizeof(line));
    return *out ? 0 : -ENOMEM;
}

static bool key_chars_ok(const char *k)
{
    for (; *k; k++)
        if ((unsigned char)*k <= ' ' || (unsigned char)*k >= 0x7f)
            return false;
    return true;
}

const char *const wf_thehive_conf_keys[] = { "url", "api_key", "api_key_file", "organisation", "alert_type",
                                             "source", "window", "max_groups", "samples", "tlp", "pap",
                                             "tls_verify", "ca_file", "timeout", "max_pending", "flush_timeout",
                                             NULL };

int wf_thehive_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_thehive_conf_t *out,
                          wf_conf_err_t *err)
{
    conf_defaults(out);
    if (!node || node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {url: https://thehive:9000, api_key: ...}");
    int rc;
    const wf_conf_node_t *n = wf_conf_get(node, "url");
    if (!n)
        return wf_conf_errorf(c, node, err, "missing key \"url\" (TheHive's base URL, https://host:9000)");
    if ((rc = dup_str(c, node, "url", &out->url, NULL, err)))
        return rc;
    if (strncmp(out->url, "http://", 7) && strncmp(out->url, "https://", 8))
        return wf_conf_errorf(c, n, err, "expected an http:// or https:// URL, got \"%s\"", out->url);
    size_t ul = strlen(out->url);
    while (ul && out->url[ul - 1] == '/')
        out->url[--ul] = 0;
    const wf_conf_node_t *kn = wf_conf_get(node, "api_key"), *kf = wf_conf_get(node, "api_key_file");
    if (!!kn == !!kf)
        return wf_conf_errorf(c, node, err, "expected one of \"api_key\" and \"api_key_file\"");
    if (kn && (rc = dup_str(c, node, "api_key", &out->api_key, NULL, err)))
        return rc;
    if (kf) {
        const char *path = NULL;
        if ((rc = wf_conf_str(c, node, "api_key_file", &path, err)))
            return rc;
        if ((rc = read_key_file(c, kf, path, &out->api_key, err)))
            return rc;
    }
    if (!key_chars_ok(out->api_key))
        return wf_conf_errorf(c, kn ? kn : kf, err, "the API key holds spaces or control characters");
    if ((rc = dup_str(c, node, "organisation", &out->organisation, NULL, err)) ||
        (rc = dup_str(c, node, "alert_type", &out->alert_type, "wafer", err)) ||
        (rc = dup_str(c, node, "source", &out->source, "wafer", err)) ||
        (rc = dup_str(c, node, "ca_file", &out->ca_file, NULL, err)))
        return rc;
    if (out->organisation && !key_chars_ok(out->organisation))
        return wf_conf_errorf(c, wf_conf_get(node, "organisation"), err, "holds spaces or control characters");
    int64_t v;
    if ((rc = wf_conf_duration_ms(c, node, "window", 1, 24ull * 3600 * 1000, &out->window_ms, err)))
        return rc;
    v = out->max_groups;
    if ((rc = wf_conf_int(c, node, "max_groups", 1, 1000000, &v, err)))
        return rc;
    out->max_groups = (uint32_t)v;
    v = out->samples;
    if ((rc = wf_conf_int(c, node, "samples", 0, MAX_SAMPLES, &v, err)))
        return rc;
    out->samples = (uint32_t)v;
    v = out->tlp;
    if ((rc = wf_conf_int(c, node, "tlp", 0, 4, &v, err)))
        return rc;
    out->tlp = (int)v;
    v = out->pap;
    if ((rc = wf_conf_int(c, node, "pap", 0, 3, &v, err)))
        return rc;
    out->pap = (int)v;
    if ((rc = wf_conf_bool(c, node, "tls_verify", &out->tls_verify, err)) ||
        (rc = wf_conf_duration_ms(c, node, "timeout", 1, 600000, &out->timeout_ms, err)) ||
        (rc = wf_conf_duration_ms(c, node, "flush_timeout", 0, 3600000, &out->flush_timeout_ms, err)))
        return rc;
    /* the hub's common `retry` mapping (its keys are checked by the hub) */
    const wf_conf_node_t *rt = wf_conf_get(node, "retry");
    if (rt && rt->type == WF_CONF_MAP &&
        ((rc = wf_conf_duration_ms(c, rt, "initial", 1, 3600000, &out->retry_min_ms, err)) ||
         (rc = wf_conf_duration_ms(c, rt, "max", 1, 24ull * 3600 * 1000, &out->retry_max_ms, err))))
        return rc;
    if (out->retry_max_ms < out->retry_min_ms)
        return wf_conf_errorf(c, rt, err, "retry.max must not be below retry.initial");
    v = out->max_pending;
    if ((rc = wf_conf_int(c, node, "max_pending", 1, 1000000, &v, err)))
        return rc;
    out->max_pending = (uint32_t)v;
    return 0;
}

/* ---- state ---- */

typedef struct {
    uint64_t time_ms;
    wf_secev_action_t action;
    uint16_t status;
    float score;
    char request_id[129];
    char method[16];
    char host[256];
    char path[512];
    char query[512];
    char user_agent[256];
    char route[64];
    char unit_kind[16], unit_name[64], unit_text[WF_SECEV_TEXT];
} sample_t;

typedef struct {
    bool used;
    int32_t next;                 /* hash chain */
    char ip[46];
    char cls[32];
    uint64_t ws_ms;               /* window start (wall clock, ms) */
    uint64_t first_ms, last_ms, count;
    uint64_t by_action[WF_SECEV__COUNT];
    float max_score;
    bool indicator;
    uint32_t nmisp;
    char misp_event[WF_SECEV_MAX_MISP][40];
    char misp_tags[256];
    uint32_t nsamples;
    sample_t *samples;            /* conf.samples of them */
} group_t;

typedef struct pending {
    struct pending *next;
    char ref[40];
    char *body;
    uint32_t attempts;
    uint64_t next_ms;             /* monotonic */
    uint64_t delay_ms;
} pending_t;

struct wf_thehive {
    wf_thehive_conf_t conf;
    pthread_mutex_t lock;         /* guards the groups: add and run may come from two threads */
    group_t *groups;
    int32_t *buckets;
    uint32_t nbuckets, ngroups;
    pending_t *pend_head, **pend_tail;
    uint32_t npending;
    CURL *curl;
    struct curl_slist *headers;
    char endpoint[1024];
    uint64_t last_warn_ms;        /* delivery failures are logged when they change, else every 10 s */
    long last_warn_status;
    uint64_t last_drop_warn_ms;

    _Atomic uint64_t created, duplicate, failed, dropped, retries, events, events_dropped;
    _Atomic uint64_t a_groups, a_pending;
    struct wf_thehive *next_instance;
};

/* Every instance adds to the same families (one collector for all). */
static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_thehive_t *instances;
static uint64_t gone[7]; /* counts of freed instances: created .. events_dropped */

static void inc(_Atomic uint64_t *c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }
static uint64_t ld(const _Atomic uint64_t *c) { return atomic_load_explicit(c, memory_order_relaxed); }

void wf_thehive_stats(const wf_thehive_t *th, wf_thehive_stats_t *o)
{
    o->created = ld(&th->created);
    o->duplicate = ld(&th->duplicate);
    o->failed = ld(&th->failed);
    o->dropped = ld(&th->dropped);
    o->retries = ld(&th->retries);
    o->events = ld(&th->events);
    o->events_dropped = ld(&th->events_dropped);
    o->groups = ld(&th->a_groups);
    o->pending = ld(&th->a_pending);
}

static void collect(wf_metrics_t *m, void *arg)
{
    uint64_t s[9];
    pthread_mutex_lock(&inst_lock);
    memcpy(s, gone, sizeof(gone));
    s[7] = s[8] = 0;
    for (wf_thehive_t *t = instances; t; t = t->next_instance) {
        wf_thehive_stats_t st;
        wf_thehive_stats(t, &st);
        s[0] += st.created, s[1] += st.duplicate, s[2] += st.failed, s[3] += st.dropped;
        s[4] += st.retries, s[5] += st.events, s[6] += st.events_dropped;
        s[7] += st.groups, s[8] += st.pending;
    }
    pthread_mutex_unlock(&inst_lock);
    wf_metrics_family(m, "wafer_thehive_alerts_total", WF_METRIC_COUNTER,
                      "TheHive alerts by outcome (duplicate: TheHive already had the sourceRef; delivered).");
    wf_metrics_sample(m, NULL, "result", "created", NULL, (double)s[0]);
    wf_metrics_sample(m, NULL, "result", "duplicate", NULL, (double)s[1]);
    wf_metrics_sample(m, NULL, "result", "failed", NULL, (double)s[2]);
    wf_metrics_sample(m, NULL, "result", "dropped", NULL, (double)s[3]);
    wf_metrics_family(m, "wafer_thehive_retries_total", WF_METRIC_COUNTER,
                      "TheHive delivery attempts that failed and were retried later.");
    wf_metrics_value(m, (double)s[4]);
    wf_metrics_family(m, "wafer_thehive_events_total", WF_METRIC_COUNTER,
                      "Security events taken into TheHive alert groups, or dropped (group table full).");
    wf_metrics_sample(m, NULL, "result", "aggregated", NULL, (double)s[5]);
    wf_metrics_sample(m, NULL, "result", "dropped", NULL, (double)s[6]);
    wf_metrics_family(m, "wafer_thehive_groups", WF_METRIC_GAUGE, "TheHive alert groups open.");
    wf_metrics_value(m, (double)s[7]);
    wf_metrics_family(m, "wafer_thehive_pending", WF_METRIC_GAUGE, "TheHive alerts waiting for delivery.");
    wf_metrics_value(m, (double)s[8]);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int curl_ok;
static void global_init(void)
{
    curl_ok = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
    wf_metrics_register("thehive", collect, &instances);
}

/* ---- sourceRef ---- */

void wf_thehive_source_ref(const char *type, const char *source, const char *client_ip, const char *cls,
                           uint64_t window_start_ms, char *out)
{
    /* fields joined with NUL so that no two different keys give the same bytes */
    unsigned char md[EVP_MAX_MD_SIZE];
    char buf[1024];
    int n = snprintf(buf, sizeof(buf), "%s%c%s%c%s%c%s%c%llu", type, 0, source, 0, client_ip, 0, cls, 0,
                     (unsigned long long)window_start_ms);
    unsigned int mdlen = 0;
    if (n < 0 || (size_t)n >= sizeof(buf) || !EVP_Digest(buf, (size_t)n, md, &mdlen, EVP_sha256(), NULL))
        memset(md, 0, sizeof(md)); /* cannot happen with the field sizes we have */
    static const char hex[] = "0123456789abcdef";
    memcpy(out, "wafer-", 6);
    for (int i = 0; i < 16; i++) {
        out[6 + 2 * i] = hex[md[i] >> 4];
        out[7 + 2 * i] = hex[md[i] & 15];
    }
    out[38] = 0;
}

/* ---- groups ---- */

static uint32_t group_hash(const char *ip, const char *cls, uint64_t ws)
{
    uint64_t h = wf_hash64(ip, strlen(ip), ws);
    return (uint32_t)wf_hash64(cls, strlen(cls), h);
}

static group_t *group_find(wf_thehive_t *th, const char *ip, const char *cls, uint64_t ws, bool create)
{
    uint32_t b = group_hash(ip, cls, ws) & (th->nbuckets - 1);
    for (int32_t i = th->buckets[b]; i >= 0; i = th->groups[i].next) {
        group_t *g = &th->groups[i];
        if (g->ws_ms == ws && !strcmp(g->ip, ip) && !strcmp(g->cls, cls))
            return g;
    }
    if (!create || th->ngroups >= th->conf.max_groups)
        return NULL;
    for (uint32_t i = 0; i < th->conf.max_groups; i++) {
        group_t *g = &th->groups[i];
        if (g->used)
            continue;
        sample_t *s = g->samples;
        memset(g, 0, sizeof(*g));
        g->samples = s;
        g->used = true;
        snprintf(g->ip, sizeof(g->ip), "%s", ip);
        snprintf(g->cls, sizeof(g->cls), "%s", cls);
        g->ws_ms = ws;
        g->next = th->buckets[b];
        th->buckets[b] = (int32_t)i;
        th->ngroups++;
        atomic_store_explicit(&th->a_groups, th->ngroups, memory_order_relaxed);
        return g;
    }
    return NULL;
}

static void group_remove(wf_thehive_t *th, group_t *g)
{
    int32_t idx = (int32_t)(g - th->groups);
    uint32_t b = group_hash(g->ip, g->cls, g->ws_ms) & (th->nbuckets - 1);
    for (int32_t *p = &th->buckets[b]; *p >= 0; p = &th->groups[*p].next)
        if (*p == idx) {
            *p = g->next;
            break;
        }
    g->used = false;
    th->ngroups--;
    atomic_store_explicit(&th->a_groups, th->ngroups, memory_order_relaxed);
}

/* MISP event ids are numbers or UUIDs; anything else is not copied into
 * the alert's Markdown. */
static bool misp_id_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F') || *s == '-'))
            return false;
    return true;
}

static void add_misp(group_t *g, const wf_secev_t *ev)
{
    for (uint32_t i = 0; i < ev->nmisp && i < WF_SECEV_MAX_MISP; i++) {
        if (strnlen(ev->misp_event[i], sizeof(ev->misp_event[i])) == sizeof(ev->misp_event[i]) ||
            !misp_id_ok(ev->misp_event[i]))
            continue;
        bool have = false;
        for (uint32_t j = 0; j < g->nmisp; j++)
            have |= !strcmp(g->misp_event[j], ev->misp_event[i]);
        if (!have && g->nmisp < WF_SECEV_MAX_MISP)
            snprintf(g->misp_event[g->nmisp++], sizeof(g->misp_event[0]), "%s", ev->misp_event[i]);
    }
    /* tags: comma-separated; add those not yet present while they fit */
    char all[sizeof(ev->misp_tags)];
    memcpy(all, ev->misp_tags, sizeof(all));
    all[sizeof(all) - 1] = 0;
    const char *p = all;
    while (*p) {
        size_t n = strcspn(p, ",");
        char tag[128];
        if (n && n < sizeof(tag)) {
            memcpy(tag, p, n);
            tag[n] = 0;
            bool have = false;
            const char *q = g->misp_tags;
            while (*q && !have) {
                size_t m = strcspn(q, ",");
                have = m == n && !memcmp(q, tag, n);
                q += m + (q[m] == ',');
            }
            size_t cur = strlen(g->misp_tags);
            if (!have && cur + n + 2 < sizeof(g->misp_tags)) {
                if (cur)
                    g->misp_tags[cur++] = ',';
                memcpy(g->misp_tags + cur, tag, n + 1);
            }
        }
        p += n + (p[n] == ',');
    }
}

int wf_thehive_add(wf_thehive_t *th, const wf_secev_t *ev)
{
    if (ev->action == WF_SECEV_PASS || ev->action == WF_SECEV_UNAVAILABLE || ev->action == WF_SECEV_LIMIT ||
        (unsigned)ev->action >= WF_SECEV__COUNT)
        return 1;
    uint64_t now = wf_wall_us() / 1000;
    uint64_t ws = now - now % th->conf.window_ms;
    char cls[sizeof(ev->cls)], ip[sizeof(ev->client_ip)];
    snprintf(cls, sizeof(cls), "%.*s", (int)strnlen(ev->cls, sizeof(cls) - 1), ev->cls);
    snprintf(ip, sizeof(ip), "%.*s", (int)strnlen(ev->client_ip, sizeof(ip) - 1), ev->client_ip);
    if (!cls[0])
        snprintf(cls, sizeof(cls), "%s", wf_secev_reason_name(ev->reason));
    if (!ip[0])
        snprintf(ip, sizeof(ip), "unknown");
    pthread_mutex_lock(&th->lock);
    group_t *g = group_find(th, ip, cls, ws, true);
    if (!g) {
        pthread_mutex_unlock(&th->lock);
        inc(&th->events_dropped);
        uint64_t m = wf_now_ms();
        if (m - th->last_drop_warn_ms > 10000) {
            th->last_drop_warn_ms = m;
            wf_warn("thehive: %u alert groups open (max_groups): events of new groups are dropped",
                    th->conf.max_groups);
        }
        return -WF_ELIMIT;
    }
    uint64_t t = ev->time_ns ? ev->time_ns / 1000000 : now;
    if (!g->count || t < g->first_ms)
        g->first_ms = t;
    if (t > g->last_ms)
        g->last_ms = t;
    g->count++;
    g->by_action[ev->action]++;
    if (ev->score > g->max_score)
        g->max_score = ev->score;
    g->indicator |= ev->reason == WF_SECEV_R_INDICATOR || ev->nmisp > 0;
    add_misp(g, ev);
    if (g->nsamples < th->conf.samples) {
        sample_t *s = &g->samples[g->nsamples++];
        memset(s, 0, sizeof(*s));
        s->time_ms = t;
        s->action = ev->action;
        s->status = ev->status;
        s->score = ev->score;
        memcpy(s->request_id, ev->request_id, sizeof(s->request_id));
        memcpy(s->method, ev->method, sizeof(s->method));
        memcpy(s->host, ev->host, sizeof(s->host));
        memcpy(s->path, ev->path, sizeof(s->path));
        memcpy(s->query, ev->query, sizeof(s->query));
        memcpy(s->user_agent, ev->user_agent, sizeof(s->user_agent));
        memcpy(s->route, ev->route, sizeof(s->route));
        if (ev->nunits) {
            memcpy(s->unit_kind, ev->units[0].kind, sizeof(s->unit_kind));
            memcpy(s->unit_name, ev->units[0].name, sizeof(s->unit_name));
            memcpy(s->unit_text, ev->units[0].text, sizeof(s->unit_text));
        }
        /* fields are NUL-terminated by the producer; do not trust it further than that */
        s->request_id[sizeof(s->request_id) - 1] = s->method[sizeof(s->method) - 1] = 0;
        s->host[sizeof(s->host) - 1] = s->path[sizeof(s->path) - 1] = s->query[sizeof(s->query) - 1] = 0;
        s->user_agent[sizeof(s->user_agent) - 1] = s->route[sizeof(s->route) - 1] = 0;
        s->unit_kind[sizeof(s->unit_kind) - 1] = s->unit_name[sizeof(s->unit_name) - 1] = 0;
        s->unit_text[sizeof(s->unit_text) - 1] = 0;
    }
    pthread_mutex_unlock(&th->lock);
    inc(&th->events);
    return 0;
}

/* ---- the alert document ---- */

/* Text as JSON needs it: valid UTF-8, with each invalid byte as U+FFFD. */
static json_t *jstr(const char *s)
{
    size_t n = strlen(s), k = 0;
    char *o = malloc(n * 3 + 1);
    if (!o)
        return json_string("");
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        uint32_t cp = 0;
        if (p[i] < 0x80)
            len = 1;
        else if ((p[i] & 0xe0) == 0xc0)
            len = 2, cp = p[i] & 0x1f;
        else if ((p[i] & 0xf0) == 0xe0)
            len = 3, cp = p[i] & 0x0f;
        else if ((p[i] & 0xf8) == 0xf0)
            len = 4, cp = p[i] & 0x07;
        bool ok = len > 0 && i + len <= n;
        for (size_t j = 1; ok && j < len; j++) {
            ok = (p[i + j] & 0xc0) == 0x80;
            cp = cp << 6 | (p[i + j] & 0x3f);
        }
        static const uint32_t min[] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (ok && len > 1 && (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)))
            ok = false;
        if (ok && len == 1 && p[i] == 0)
            ok = false;
        if (ok) {
            memcpy(o + k, p + i, len);
            k += len;
            i += len;
        } else {
            memcpy(o + k, "\xef\xbf\xbd", 3);
            k += 3;
            i++;
        }
    }
    json_t *j = json_stringn(o, k);
    free(o);
    return j ? j : json_string("");
}

static int severity_of(const group_t *g)
{
    if (g->max_score <= 0)
        return g->indicator ? 3 : 2; /* no model score: an indicator, a deny list, a ban */
    if (g->max_score >= 0.98f)
        return 4;
    if (g->max_score >= 0.9f)
        return 3;
    if (g->max_score >= 0.7f)
        return 2;
    return 1;
}

/* A fence longer than any backtick run in the text, so that untrusted
 * text inside a Markdown code block can neither close it nor become
 * links or images in TheHive's view. */
static int fence_len(const char *s)
{
    int best = 0, run = 0;
    for (; *s; s++) {
        run = *s == '`' ? run + 1 : 0;
        if (run > best)
            best = run;
    }
    return best < 3 ? 3 : best + 1;
}

static void md_fence(wf_buf_t *b, int n)
{
    while (n-- > 0)
        wf_buf_append(b, "`", 1);
    wf_buf_append(b, "\n", 1);
}

static void md_code(wf_buf_t *b, const char *text)
{
    int f = fence_len(text);
    md_fence(b, f);
    wf_buf_appendf(b, "%s\n", text);
    md_fence(b, f);
}

static void host_only(const char *host, char *out, size_t cap)
{
    /* drop the port; keep an IPv6 literal's brackets out */
    const char *h = host;
    size_t n = strlen(h);
    if (h[0] == '[') {
        const char *e = strchr(h, ']');
        n = e ? (size_t)(e - h - 1) : 0;
        h++;
    } else {
        const char *c = strrchr(h, ':');
        if (c)
            n = (size_t)(c - h);
    }
    if (n >= cap)
        n = cap - 1;
    memcpy(out, h, n);
    out[n] = 0;
}

static bool is_ip_literal(const char *h)
{
    if (strchr(h, ':'))
        return true;
    for (; *h; h++)
        if (!(*h == '.' || (*h >= '0' && *h <= '9')))
            return false;
    return true;
}

static void add_observable(json_t *obs, const char *type, const char *data, const char *msg, json_t *tags)
{
    if (!data || !*data)
        return;
    json_t *d = jstr(data); /* compared as sent: two invalid byte sequences may read the same */
    size_t i;
    json_t *o;
    json_array_foreach(obs, i, o)
    {
        if (!strcmp(json_string_value(json_object_get(o, "dataType")), type) &&
            json_equal(json_object_get(o, "data"), d)) {
            json_decref(d);
            return; /* TheHive refuses an alert with the same observable twice */
        }
    }
    o = json_object();
    json_object_set_new(o, "dataType", json_string(type));
    json_object_set_new(o, "data", d);
    if (msg)
        json_object_set_new(o, "message", json_string(msg));
    if (tags)
        json_object_set(o, "tags", tags);
    json_array_append_new(obs, o);
}

static char *alert_json(const wf_thehive_t *th, const group_t *g, char *ref)
{
    const wf_thehive_conf_t *c = &th->conf;
    wf_thehive_source_ref(c->alert_type, c->source, g->ip, g->cls, g->ws_ms, ref);
    char t0[32], t1[32], t2[32];
    wf_time_rfc3339(g->first_ms * 1000, t0, sizeof(t0));
    wf_time_rfc3339(g->last_ms * 1000, t1, sizeof(t1));
    wf_time_rfc3339(g->ws_ms * 1000, t2, sizeof(t2));

    json_t *tags = json_array();
    json_array_append_new(tags, json_string("wafer"));
    char tag[160];
    snprintf(tag, sizeof(tag), "class:%s", g->cls);
    json_array_append_new(tags, jstr(tag));
    for (int a = 0; a < WF_SECEV__COUNT; a++)
        if (g->by_action[a]) {
            snprintf(tag, sizeof(tag), "action:%s", wf_secev_action_name((wf_secev_action_t)a));
            json_array_append_new(tags, json_string(tag));
        }
    for (uint32_t i = 0; i < g->nmisp; i++) {
        snprintf(tag, sizeof(tag), "misp:event=%s", g->misp_event[i]);
        json_array_append_new(tags, jstr(tag));
    }
    for (const char *p = g->misp_tags; *p;) {
        size_t n = strcspn(p, ",");
        if (n && n < sizeof(tag)) {
            memcpy(tag, p, n);
            tag[n] = 0;
            json_array_append_new(tags, jstr(tag));
        }
        p += n + (p[n] == ',');
    }

    wf_buf_t d;
    wf_buf_init(&d, 4096, 256 * 1024);
    wf_buf_appendf(&d, "**%llu request%s** from `%s` classified **%s**", (unsigned long long)g->count,
                   g->count == 1 ? "" : "s", g->ip, g->cls);
    if (g->max_score > 0)
        wf_buf_appendf(&d, " (highest score %.3f)", g->max_score);
    wf_buf_appendf(&d, ", first %s, last %s, in the window that started %s (%llu s).\n\nActions:", t0, t1, t2,
                   (unsigned long long)(c->window_ms / 1000));
    bool first = true;
    for (int a = 0; a < WF_SECEV__COUNT; a++)
        if (g->by_action[a]) {
            wf_buf_appendf(&d, "%s %s %llu", first ? "" : ",", wf_secev_action_name((wf_secev_action_t)a),
                           (unsigned long long)g->by_action[a]);
            first = false;
        }
    wf_buf_appendf(&d, ".\n");
    if (g->nmisp) {
        wf_buf_appendf(&d, "\nMISP events:");
        for (uint32_t i = 0; i < g->nmisp; i++)
            wf_buf_appendf(&d, "%s %s", i ? "," : "", g->misp_event[i]);
        wf_buf_appendf(&d, ".\n");
    }
    if (g->nsamples)
        wf_buf_appendf(&d, "\n### Sample requests (%u of %llu)\n", g->nsamples, (unsigned long long)g->count);

    json_t *obs = json_array();
    json_t *ctags = json_array();
    snprintf(tag, sizeof(tag), "class:%s", g->cls);
    json_array_append_new(ctags, jstr(tag));
    add_observable(obs, "ip", g->ip, "client address", ctags);
    for (uint32_t i = 0; i < g->nsamples; i++) {
        const sample_t *s = &g->samples[i];
        char ts[32];
        wf_time_rfc3339(s->time_ms * 1000, ts, sizeof(ts));
        wf_buf_appendf(&d, "\n%u. %s, %s", i + 1, ts, wf_secev_action_name(s->action));
        if (s->status)
            wf_buf_appendf(&d, " (%u)", s->status);
        if (s->score > 0)
            wf_buf_appendf(&d, ", score %.3f", s->score);
        wf_buf_appendf(&d, "\n\n");
        /* everything the client chose goes inside a code block */
        wf_buf_t u;
        wf_buf_init(&u, 1024, 8192);
        wf_buf_appendf(&u, "%s %s%s%s%s\nHost: %s\nUser-Agent: %s\nRequest-Id: %s%s%s", s->method, s->path,
                       s->query[0] ? "?" : "", s->query, "", s->host, s->user_agent, s->request_id,
                       s->route[0] ? "\nRoute: " : "", s->route);
        if (s->unit_kind[0])
            wf_buf_appendf(&u, "\nUnit %s %s: %s", s->unit_kind, s->unit_name, s->unit_text);
        wf_buf_append(&u, "", 1);
        md_code(&d, wf_buf_rptr(&u));
        wf_buf_free(&u);

        char host[256];
        host_only(s->host, host, sizeof(host));
        if (host[0]) {
            char url[1400];
            snprintf(url, sizeof(url), "http://%s%s%s%s", s->host, s->path[0] ? s->path : "/", s->query[0] ? "?" : "",
                     s->query);
            add_observable(obs, "url", url, "requested URL (sample)", ctags);
            if (!is_ip_literal(host))
                add_observable(obs, "hostname", host, "requested host", NULL);
        }
        add_observable(obs, "user-agent", s->user_agent, "client user agent (sample)", NULL);
    }
    json_decref(ctags);
    wf_buf_append(&d, "", 1);

    char title[256];
    snprintf(title, sizeof(title), "wafer: %s from %s (%llu request%s)", g->cls, g->ip, (unsigned long long)g->count,
             g->count == 1 ? "" : "s");
    json_t *a = json_object();
    json_object_set_new(a, "type", json_string(c->alert_type));
    json_object_set_new(a, "source", json_string(c->source));
    json_object_set_new(a, "sourceRef", json_string(ref));
    json_object_set_new(a, "title", jstr(title));
    json_object_set_new(a, "description", jstr(wf_buf_rptr(&d)));
    json_object_set_new(a, "severity", json_integer(severity_of(g)));
    json_object_set_new(a, "date", json_integer((json_int_t)g->first_ms));
    json_object_set_new(a, "tags", tags);
    json_object_set_new(a, "tlp", json_integer(c->tlp));
    json_object_set_new(a, "pap", json_integer(c->pap));
    json_object_set_new(a, "observables", obs);
    wf_buf_free(&d);
    char *out = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return out;
}

/* ---- delivery ---- */

typedef struct {
    char data[RESP_KEEP + 1];
    size_t len;
} resp_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    resp_t *r = arg;
    size_t k = size * n, take = WF_MIN(k, RESP_KEEP - r->len);
    memcpy(r->data + r->len, p, take);
    r->len += take;
    r->data[r->len] = 0;
    return k;
}

enum { SEND_OK, SEND_DUPLICATE, SEND_RETRY, SEND_FAILED };

static int send_alert(wf_thehive_t *th, const pending_t *p)
{
    resp_t r = { .len = 0 };
    r.data[0] = 0;
    CURL *h = th->curl;
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, p->body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(p->body));
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    uint64_t now = wf_now_ms();
    long what = cc != CURLE_OK ? -(long)cc : status;
    bool warn = what != th->last_warn_status || now - th->last_warn_ms > 10000;
    if (warn) {
        th->last_warn_status = what;
    }
    if (cc != CURLE_OK) {
        if (warn) {
            th->last_warn_ms = now;
            wf_warn("thehive: %s: %s (alert %s is kept and retried)", th->endpoint, curl_easy_strerror(cc), p->ref);
        }
        return SEND_RETRY;
    }
    if (status == 200 || status == 201)
        return SEND_OK;
    /* TheHive answers 400 (some versions 409) when type+source+sourceRef
     * exist: our earlier attempt was created after all */
    if ((status == 400 || status == 409) && strcasestr(r.data, "already exist"))
        return SEND_DUPLICATE;
    if (status == 401 || status == 403 || status == 408 || status == 429 || status >= 500) {
        if (warn) {
            th->last_warn_ms = now;
            wf_warn("thehive: %s answered %ld%s%.200s (alert %s is kept and retried)", th->endpoint, status,
                    r.len ? ": " : "", r.data, p->ref);
        }
        return SEND_RETRY;
    }
    wf_error("thehive: %s refused alert %s with %ld: %.300s", th->endpoint, p->ref, status, r.data);
    return SEND_FAILED;
}

static void pending_pop(wf_thehive_t *th)
{
    pending_t *p = th->pend_head;
    th->pend_head = p->next;
    if (!th->pend_head)
        th->pend_tail = &th->pend_head;
    th->npending--;
    atomic_store_explicit(&th->a_pending, th->npending, memory_order_relaxed);
    free(p->body);
    free(p);
}

static void pending_push(wf_thehive_t *th, const group_t *g)
{
    pending_t *p = calloc(1, sizeof(*p));
    if (!p || !(p->body = alert_json(th, g, p->ref))) {
        free(p);
        inc(&th->dropped);
        wf_error("thehive: out of memory building an alert; dropped");
        return;
    }
    if (th->npending >= th->conf.max_pending) {
        inc(&th->dropped);
        wf_warn("thehive: %u alerts wait for delivery (max_pending): alert %s dropped", th->npending,
                th->pend_head->ref);
        pending_pop(th);
    }
    p->delay_ms = th->conf.retry_min_ms;
    *th->pend_tail = p;
    th->pend_tail = &p->next;
    th->npending++;
    atomic_store_explicit(&th->a_pending, th->npending, memory_order_relaxed);
}

/* Closes groups whose window ended (all when `all`). */
static void close_groups(wf_thehive_t *th, bool all)
{
    pthread_mutex_lock(&th->lock);
    uint64_t now = wf_wall_us() / 1000;
    for (uint32_t i = 0; i < th->conf.max_groups && th->ngroups; i++) {
        group_t *g = &th->groups[i];
        if (g->used && (all || now >= g->ws_ms + th->conf.window_ms)) {
            pending_push(th, g);
            group_remove(th, g);
        }
    }
    pthread_mutex_unlock(&th->lock);
}

/* Delivers due alerts in order; stops at the first that must be retried. */
static void deliver(wf_thehive_t *th, bool ignore_backoff)
{
    while (th->pend_head) {
        pending_t *p = th->pend_head;
        if (!ignore_backoff && p->next_ms > wf_now_ms())
            return;
        p->attempts++;
        switch (send_alert(th, p)) {
        case SEND_OK:
            inc(&th->created);
            pending_pop(th);
            break;
        case SEND_DUPLICATE:
            inc(&th->duplicate);
            pending_pop(th);
            break;
        case SEND_FAILED:
            inc(&th->failed);
            pending_pop(th);
            break;
        default:
            inc(&th->retries);
            p->next_ms = wf_now_ms() + p->delay_ms;
            p->delay_ms = WF_MIN(p->delay_ms * 2, th->conf.retry_max_ms);
            return;
        }
    }
}

uint64_t wf_thehive_run(wf_thehive_t *th)
{
    close_groups(th, false);
    deliver(th, false);
    /* every open group started in the current window or an earlier one, so
     * the next one closes at the end of the current window at the latest */
    uint64_t now = wf_wall_us() / 1000;
    uint64_t wait = th->conf.window_ms - now % th->conf.window_ms;
    pthread_mutex_lock(&th->lock);
    for (uint32_t i = 0; i < th->conf.max_groups && th->ngroups; i++) {
        const group_t *g = &th->groups[i];
        if (g->used) {
            uint64_t end = g->ws_ms + th->conf.window_ms;
            wait = WF_MIN(wait, end > now ? end - now : 0);
        }
    }
    pthread_mutex_unlock(&th->lock);
    if (th->pend_head) {
        uint64_t m = wf_now_ms(), at = th->pend_head->next_ms;
        wait = WF_MIN(wait, at > m ? at - m : 0);
    }
    return wait;
}

void wf_thehive_finish(wf_thehive_t *th, uint64_t deadline_ms)
{
    close_groups(th, true);
    while (th->pend_head && wf_now_ms() < deadline_ms) {
        uint64_t at = th->pend_head->next_ms, now = wf_now_ms();
        if (at > now) {
            uint64_t sl = WF_MIN(at - now, deadline_ms - now);
            struct timespec ts = { (time_t)(sl / 1000), (long)(sl % 1000) * 1000000 };
            nanosleep(&ts, NULL);
            continue;
        }
        deliver(th, false);
    }
    while (th->pend_head) {
        inc(&th->dropped);
        pending_pop(th);
    }
}

/* ---- life cycle ---- */

int wf_thehive_new(const wf_thehive_conf_t *conf, wf_thehive_t **out, char *err, size_t errlen)
{
    *out = NULL;
    pthread_once(&once, global_init);
    if (!curl_ok) {
        snprintf(err, errlen, "thehive: libcurl failed to initialise");
        return -ENOMEM;
    }
    wf_thehive_t *th = calloc(1, sizeof(*th));
    if (!th)
        goto oom;
    th->pend_tail = &th->pend_head;
    pthread_mutex_init(&th->lock, NULL);
    wf_thehive_conf_t *c = &th->conf;
    *c = *conf;
    c->url = strdup(conf->url);
    c->api_key = strdup(conf->api_key);
    c->organisation = conf->organisation ? strdup(conf->organisation) : NULL;
    c->alert_type = strdup(conf->alert_type ? conf->alert_type : "wafer");
    c->source = strdup(conf->source ? conf->source : "wafer");
    c->ca_file = conf->ca_file ? strdup(conf->ca_file) : NULL;
    if (!c->url || !c->api_key || !c->alert_type || !c->source || (conf->organisation && !c->organisation) ||
        (conf->ca_file && !c->ca_file))
        goto oom;
    if (c->max_groups == 0 || c->window_ms == 0 || c->samples > MAX_SAMPLES || c->max_pending == 0) {
        snprintf(err, errlen, "thehive: invalid configuration");
        wf_thehive_free(th);
        return -EINVAL;
    }
    th->nbuckets = 1;
    while (th->nbuckets < c->max_groups * 2)
        th->nbuckets <<= 1;
    th->buckets = malloc(sizeof(int32_t) * th->nbuckets);
    th->groups = calloc(c->max_groups, sizeof(group_t));
    if (!th->buckets || !th->groups)
        goto oom;
    for (uint32_t i = 0; i < th->nbuckets; i++)
        th->buckets[i] = -1;
    /* samples are taken per group as needed, but their room is reserved now: memory is bounded up front */
    if (c->samples) {
        sample_t *all = calloc((size_t)c->max_groups * c->samples, sizeof(sample_t));
        if (!all)
            goto oom;
        for (uint32_t i = 0; i < c->max_groups; i++)
            th->groups[i].samples = all + (size_t)i * c->samples;
    }
    snprintf(th->endpoint, sizeof(th->endpoint), "%s/api/v1/alert", c->url);
    th->curl = curl_easy_init();
    if (!th->curl)
        goto oom;
    char hdr[1200];
    snprintf(hdr, sizeof(hdr), "Authorization: Bearer %s", c->api_key);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    hl = hl ? curl_slist_append(hl, "Accept: application/json") : NULL;
    hl = hl ? curl_slist_append(hl, hdr) : NULL;
    explicit_bzero(hdr, sizeof(hdr));
    if (hl && c->organisation) {
        snprintf(hdr, sizeof(hdr), "X-Organisation: %s", c->organisation);
        hl = curl_slist_append(hl, hdr);
    }
    /* no Expect: 100-continue round trip for alert bodies */
    hl = hl ? curl_slist_append(hl, "Expect:") : NULL;
    if (!hl)
        goto oom;
    th->headers = hl;
    CURL *h = th->curl;
    curl_easy_setopt(h, CURLOPT_URL, th->endpoint);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
    if (c->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_file);
    char ua[64];
    snprintf(ua, sizeof(ua), "wafer/%s", WF_VERSION);
    curl_easy_setopt(h, CURLOPT_USERAGENT, ua);
    if (!c->tls_verify && !strncmp(c->url, "https://", 8))
        wf_warn("thehive: tls_verify is off: the API key goes to whoever answers at %s", c->url);
    pthread_mutex_lock(&inst_lock);
    th->next_instance = instances;
    instances = th;
    pthread_mutex_unlock(&inst_lock);
    *out = th;
    return 0;
oom:
    snprintf(err, errlen, "thehive: out of memory");
    wf_thehive_free(th);
    return -ENOMEM;
}

void wf_thehive_free(wf_thehive_t *th)
{
    if (!th)
        return;
    pthread_mutex_lock(&inst_lock);
    for (wf_thehive_t **p = &instances; *p; p = &(*p)->next_instance)
        if (*p == th) {
            *p = th->next_instance;
            wf_thehive_stats_t s;
            wf_thehive_stats(th, &s);
            gone[0] += s.created, gone[1] += s.duplicate, gone[2] += s.failed, gone[3] += s.dropped;
            gone[4] += s.retries, gone[5] += s.events, gone[6] += s.events_dropped;
            break;
        }
    pthread_mutex_unlock(&inst_lock);
    while (th->pend_head)
        pending_pop(th);
    if (th->curl)
        curl_easy_cleanup(th->curl);
    curl_slist_free_all(th->headers);
    if (th->groups)
        free(th->groups[0].samples);
    free(th->groups);
    free(th->buckets);
    wf_thehive_conf_free(&th->conf);
    pthread_mutex_destroy(&th->lock);
    free(th);
}
