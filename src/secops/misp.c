/* MISP import: feeds and the REST API into the indicator store; sightings back (include/wafer/misp.h). */
#include "wafer/misp.h"
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/policy.h"

#include <ctype.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Error messages name URLs and paths and are cut to their buffer on purpose. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

#define MAX_FEEDS 64
#define MAX_TAGS_PER_ATTR 16

wf_misp_t *wf_misp_global;

/* ---- configuration ---- */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int parse_strv(const wf_conf_t *c, const wf_conf_node_t *n, size_t max, char ***out, size_t *count,
                      wf_conf_err_t *err)
{
    if (n->type == WF_CONF_SCALAR) { /* one value without brackets */
        if (!(*out = calloc(1, sizeof(char *))) || !((*out)[0] = strdup(n->value)))
            return -ENOMEM;
        *count = 1;
        return 0;
    }
    if (n->type != WF_CONF_SEQ || n->nitems == 0 || n->nitems > max)
        return wf_conf_errorf(c, n, err, "expected a list of 1 to %zu strings", max);
    if (!(*out = calloc(n->nitems, sizeof(char *))))
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i];
        if (it->type != WF_CONF_SCALAR || !*it->value || strlen(it->value) > 255)
            return wf_conf_errorf(c, it, err, "expected a string of 1 to 255 bytes");
        if (!((*out)[i] = strdup(it->value)))
            return -ENOMEM;
        (*count)++;
    }
    return 0;
}

static bool url_ok(const char *u)
{
    return u && *u && (!strncmp(u, "http://", 7) || !strncmp(u, "https://", 8) || !strncmp(u, "file://", 7) ||
                       u[0] == '/' || u[0] == '.');
}

static int parse_feed(const wf_conf_t *c, const wf_conf_node_t *n, size_t idx, wf_misp_feed_conf_t *f,
                      wf_conf_err_t *err)
{
    static const char *const keys[] = { "name", "url", "format", "refresh", "verify_tls", "to_ids_only",
                                        "max_events", "column", "delimiter", "type", "tags", NULL };
    static const char *const formats[] = { "misp", "csv", "freetext", NULL };
    int rc, fmt = 0;
    int64_t col = 1, maxev = 10000;
    const char *s;
    f->refresh_ms = 3600000;
    f->verify_tls = true;
    f->to_ids_only = true;
    f->delimiter = ',';
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping such as {url: https://..., format: misp}");
    if ((rc = wf_conf_check_keys(c, n, keys, err)))
        return rc;
    char name[32];
    snprintf(name, sizeof(name), "feed%zu", idx);
    s = name;
    if ((rc = wf_conf_str(c, n, "name", &s, err)))
        return rc;
    if (!*s || strlen(s) > 63)
        return wf_conf_errorf(c, wf_conf_get(n, "name"), err, "expected a name of 1 to 63 bytes");
    if (!(f->name = strdup(s)))
        return -ENOMEM;
    s = NULL;
    if ((rc = wf_conf_str(c, n, "url", &s, err)))
        return rc;
    if (!s)
        return wf_conf_errorf(c, n, err, "missing key \"url\" (http(s)://..., file:///... or a path)");
    if (!url_ok(s))
        return wf_conf_errorf(c, wf_conf_get(n, "url"), err, "expected http(s)://..., file:///... or a path, got \"%s\"", s);
    if (!(f->url = strdup(s)))
        return -ENOMEM;
    if ((rc = wf_conf_enum(c, n, "format", formats, &fmt, err)) ||
        (rc = wf_conf_duration_ms(c, n, "refresh", 1000, 7ull * 86400000, &f->refresh_ms, err)) ||
        (rc = wf_conf_bool(c, n, "verify_tls", &f->verify_tls, err)) ||
        (rc = wf_conf_bool(c, n, "to_ids_only", &f->to_ids_only, err)) ||
        (rc = wf_conf_int(c, n, "max_events", 1, 1000000, &maxev, err)) ||
        (rc = wf_conf_int(c, n, "column", 1, 1000, &col, err)))
        return rc;
    f->format = (wf_misp_format_t)fmt;
    f->max_events = (uint32_t)maxev;
    f->column = (int)col;
    s = NULL;
    if ((rc = wf_conf_str(c, n, "delimiter", &s, err)))
        return rc;
    if (s) {
        if (strlen(s) != 1 && strcmp(s, "\\t") != 0)
            return wf_conf_errorf(c, wf_conf_get(n, "delimiter"), err, "expected one character (or \\t)");
        f->delimiter = strlen(s) == 1 ? s[0] : '\t';
    }
    s = NULL;
    if ((rc = wf_conf_str(c, n, "type", &s, err)))
        return rc;
    if (s) {
        if (!wf_ioc_type_supported(s))
            return wf_conf_errorf(c, wf_conf_get(n, "type"), err,
                                  "\"%s\" is not a type wafer matches (ip-src, ip-dst, ip-src|port, ip-dst|port, "
                                  "domain, hostname, hostname|port, domain|ip, url, user-agent)", s);
        if (!(f->type = strdup(s)))
            return -ENOMEM;
    }
    if ((wf_conf_get(n, "column") || wf_conf_get(n, "delimiter")) && f->format != WF_MISP_FEED_CSV)
        return wf_conf_errorf(c, n, err, "column and delimiter apply to format: csv only");
    if (f->type && f->format == WF_MISP_FEED_MISP)
        return wf_conf_errorf(c, wf_conf_get(n, "type"), err, "a MISP feed names each attribute's type; type "
                                                               "applies to csv and freetext feeds");
    const wf_conf_node_t *t = wf_conf_get(n, "tags");
    if (t && (rc = parse_strv(c, t, 16, &f->tags, &f->ntags, err)))
        return rc;
    return 0;
}

static int parse_api(const wf_conf_t *c, const wf_conf_node_t *n, wf_misp_api_conf_t *a, wf_conf_err_t *err)
{
    static const char *const keys[] = { "url", "key", "key_file", "refresh", "verify_tls", "types", "to_ids",
                                        "last", "tags", "page_size", NULL };
    int rc;
    int64_t ps = 5000;
    const char *s = NULL;
    a->refresh_ms = 900000;
    a->verify_tls = true;
    a->to_ids = true;
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping such as {url: https://misp.example, key: ...}");
    if ((rc = wf_conf_check_keys(c, n, keys, err)))
        return rc;
    if ((rc = wf_conf_str(c, n, "url", &s, err)))
        return rc;
    if (!s || (strncmp(s, "http://", 7) && strncmp(s, "https://", 8)))
        return wf_conf_errorf(c, s ? wf_conf_get(n, "url") : n, err, "expected url: http(s)://<MISP instance>");
    if (!(a->url = strdup(s)))
        return -ENOMEM;
    size_t ul = strlen(a->url);
    while (ul > 8 && a->url[ul - 1] == '/')
        a->url[--ul] = 0;
    const char *key = NULL, *key_file = NULL;
    if ((rc = wf_conf_str(c, n, "key", &key, err)) || (rc = wf_conf_str(c, n, "key_file", &key_file, err)))
        return rc;
    if (!key == !key_file)
        return wf_conf_errorf(c, n, err, "give one of key and key_file (the MISP automation key)");
    if (key_file) {
        char buf[256];
        FILE *fp = fopen(key_file, "r");
        if (!fp)
            return wf_conf_errorf(c, wf_conf_get(n, "key_file"), err, "cannot read %s: %s", key_file, strerror(errno));
        size_t r = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[r] = 0;
        while (r && isspace((unsigned char)buf[r - 1]))
            buf[--r] = 0;
        key = buf;
        if (!(a->key = strdup(buf)))
            return -ENOMEM;
    } else if (!(a->key = strdup(key))) {
        return -ENOMEM;
    }
    for (const char *p = a->key; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            return wf_conf_errorf(c, wf_conf_get(n, key_file ? "key_file" : "key"), err,
                                  "the key must be printable ASCII without spaces");
    if (!*a->key)
        return wf_conf_errorf(c, n, err, "the key is empty");
    if ((rc = wf_conf_duration_ms(c, n, "refresh", 1000, 7ull * 86400000, &a->refresh_ms, err)) ||
        (rc = wf_conf_bool(c, n, "verify_tls", &a->verify_tls, err)) ||
        (rc = wf_conf_bool(c, n, "to_ids", &a->to_ids, err)) ||
        (rc = wf_conf_int(c, n, "page_size", 1, 100000, &ps, err)))
        return rc;
    a->page_size = (uint32_t)ps;
    const wf_conf_node_t *t;
    if ((t = wf_conf_get(n, "types"))) {
        if ((rc = parse_strv(c, t, 16, &a->types, &a->ntypes, err)))
            return rc;
        for (size_t i = 0; i < a->ntypes; i++)
            if (!wf_ioc_type_supported(a->types[i]))
                return wf_conf_errorf(c, t, err, "\"%s\" is not a type wafer matches", a->types[i]);
    } else {
        static const char *const def[] = { "ip-src", "ip-dst", "ip-src|port", "ip-dst|port", "domain",
                                           "hostname", "domain|ip", "url", "user-agent" };
        if (!(a->types = calloc(WF_ARRAY_LEN(def), sizeof(char *))))
            return -ENOMEM;
        for (size_t i = 0; i < WF_ARRAY_LEN(def); i++)
            if (!(a->types[a->ntypes++] = strdup(def[i])))
                return -ENOMEM;
    }
    s = NULL;
    if ((rc = wf_conf_str(c, n, "last", &s, err)))
        return rc;
    if (s) {
        size_t l = strlen(s);
        bool ok = l >= 2 && l < 16 && strchr("smhdw", s[l - 1]);
        for (size_t i = 0; ok && i + 1 < l; i++)
            ok = isdigit((unsigned char)s[i]);
        if (!ok)
            return wf_conf_errorf(c, wf_conf_get(n, "last"), err, "expected a MISP period such as 12h, 30d or 4w");
        if (!(a->last = strdup(s)))
            return -ENOMEM;
    }
    if ((t = wf_conf_get(n, "tags")) && (rc = parse_strv(c, t, 32, &a->tags, &a->ntags, err)))
        return rc;
    return 0;
}

void wf_misp_conf_free(wf_misp_conf_t *mc)
{
    if (!mc)
        return;
    for (size_t i = 0; i < mc->nfeeds; i++) {
        wf_misp_feed_conf_t *f = &mc->feeds[i];
        free(f->name);
        free(f->url);
        free(f->type);
        strv_free(f->tags, f->ntags);
    }
    free(mc->feeds);
    free(mc->api.url);
    free(mc->api.key);
    free(mc->api.last);
    strv_free(mc->api.types, mc->api.ntypes);
    strv_free(mc->api.tags, mc->api.ntags);
    free(mc);
}

int wf_misp_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_misp_conf_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "action", "feeds", "api", "sightings", "sightings_interval",
                                        "sightings_queue", "timeout", "retry", "max_bytes", "max_indicators", NULL };
    static const char *const actions[] = { "block", "flag", NULL };
    int rc = -ENOMEM, act = 0;
    int64_t sq = 1024;
    wf_misp_conf_t *mc = calloc(1, sizeof(*mc));
    *out = NULL;
    if (!mc)
        return -ENOMEM;
    mc->sightings_interval_ms = 60000;
    mc->timeout_ms = 30000;
    mc->retry_ms = 60000;
    mc->max_bytes = 256ull << 20;
    mc->max_indicators = 2000000;
    if (!node)
        goto done;
    if ((rc = wf_conf_check_keys(c, node, keys, err)) || (rc = wf_conf_enum(c, node, "action", actions, &act, err)) ||
        (rc = wf_conf_bool(c, node, "sightings", &mc->sightings, err)) ||
        (rc = wf_conf_duration_ms(c, node, "sightings_interval", 1000, 86400000, &mc->sightings_interval_ms, err)) ||
        (rc = wf_conf_int(c, node, "sightings_queue", 1, 1000000, &sq, err)) ||
        (rc = wf_conf_duration_ms(c, node, "timeout", 10, 3600000, &mc->timeout_ms, err)) ||
        (rc = wf_conf_duration_ms(c, node, "retry", 1000, 86400000, &mc->retry_ms, err)) ||
        (rc = wf_conf_size(c, node, "max_bytes", 1024, 16ull << 30, &mc->max_bytes, err)))
        goto fail;
    int64_t mi = (int64_t)mc->max_indicators;
    if ((rc = wf_conf_int(c, node, "max_indicators", 1, 100000000, &mi, err)))
        goto fail;
    mc->max_indicators = (uint64_t)mi;
    mc->action = (wf_misp_action_t)act;
    mc->sightings_queue = (uint32_t)sq;
    const wf_conf_node_t *n;
    if ((n = wf_conf_get(node, "feeds"))) {
        if (n->type != WF_CONF_SEQ || n->nitems > MAX_FEEDS) {
            rc = wf_conf_errorf(c, n, err, "expected a list of at most %d feeds", MAX_FEEDS);
            goto fail;
        }
        rc = -ENOMEM;
        if (!(mc->feeds = calloc(n->nitems ? n->nitems : 1, sizeof(*mc->feeds))))
            goto fail;
        for (size_t i = 0; i < n->nitems; i++) {
            if ((rc = parse_feed(c, n->items[i], i, &mc->feeds[mc->nfeeds++], err)))
                goto fail;
            for (size_t j = 0; j < i; j++)
                if (!strcmp(mc->feeds[j].name, mc->feeds[i].name)) {
                    rc = wf_conf_errorf(c, n->items[i], err, "feed name \"%s\" is used twice", mc->feeds[i].name);
                    goto fail;
                }
        }
    }
    if ((n = wf_conf_get(node, "api"))) {
        mc->has_api = true;
        if ((rc = parse_api(c, n, &mc->api, err)))
            goto fail;
    }
    if (mc->sightings && !mc->has_api) {
        rc = wf_conf_errorf(c, wf_conf_get(node, "sightings"), err, "sightings are sent to the api: configure api");
        goto fail;
    }
done:
    *out = mc;
    return 0;
fail:
    wf_misp_conf_free(mc);
    return rc;
}

/* ---- attributes kept per source ---- */

typedef struct {
    char *id;
    char **tags;
    size_t ntags;
} evinfo_t;

typedef struct {
    char *type, *value;
    int32_t ev; /* index in evs, or -1 */
    char **tags;
    size_t ntags;
} rec_t;

typedef struct {
    evinfo_t *evs;
    size_t nev, evcap;
    rec_t *r;
    size_t n, cap;
    uint64_t skipped;
} recset_t;

static void recset_free(recset_t *rs)
{
    for (size_t i = 0; i < rs->nev; i++) {
        free(rs->evs[i].id);
        strv_free(rs->evs[i].tags, rs->evs[i].ntags);
    }
    for (size_t i = 0; i < rs->n; i++) {
        free(rs->r[i].type);
        free(rs->r[i].value);
        strv_free(rs->r[i].tags, rs->r[i].ntags);
    }
    free(rs->evs);
    free(rs->r);
    memset(rs, 0, sizeof(*rs));
}

/* Tag names of a MISP "Tag" array. */
static int json_tags(json_t *arr, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!json_is_array(arr) || !json_array_size(arr))
        return 0;
    size_t cnt = WF_MIN(json_array_size(arr), (size_t)MAX_TAGS_PER_ATTR);
    if (!(*out = calloc(cnt, sizeof(char *))))
        return -ENOMEM;
    for (size_t i = 0; i < cnt; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(arr, i), "name"));
        if (name && *name && !((*out)[(*n)++] = strdup(name)))
            return -ENOMEM;
    }
    return 0;
}

static int add_event(recset_t *rs, const char *id, json_t *tags, char *const *extra, size_t nextra)
{
    evinfo_t *ne = wf_array_grow(rs->evs, &rs->evcap, rs->nev, sizeof(*ne), 64);
    if (!ne)
        return -ENOMEM;
    rs->evs = ne;
    evinfo_t *e = &rs->evs[rs->nev];
    memset(e, 0, sizeof(*e));
    rs->nev++;
    if (id && !(e->id = strdup(id)))
        return -ENOMEM;
    if (json_tags(tags, &e->tags, &e->ntags))
        return -ENOMEM;
    if (nextra) {
        char **nt = realloc(e->tags, (e->ntags + nextra) * sizeof(char *));
        if (!nt)
            return -ENOMEM;
        e->tags = nt;
        for (size_t i = 0; i < nextra; i++)
            if (!(e->tags[e->ntags++] = strdup(extra[i])))
                return -ENOMEM;
    }
    return (int)(rs->nev - 1);
}

static int add_rec(recset_t *rs, const char *type, const char *value, size_t vlen, int32_t ev, json_t *tags)
{
    if (!wf_ioc_type_supported(type)) {
        rs->skipped++;
        return 0;
    }
    rec_t *nr = wf_array_grow(rs->r, &rs->cap, rs->n, sizeof(*nr), 1024);
    if (!nr)
        return -ENOMEM;
    rs->r = nr;
    rec_t *r = &rs->r[rs->n];
    memset(r, 0, sizeof(*r));
    r->ev = ev;
    if (!(r->type = strdup(type)) || !(r->value = strndup(value, vlen)) || json_tags(tags, &r->tags, &r->ntags)) {
        free(r->type);
        free(r->value);
        strv_free(r->tags, r->ntags);
        return -ENOMEM;
    }
    rs->n++;
    return 1;
}

/* ---- fetching ---- */

typedef struct {
    wf_buf_t *out;
    bool over;
} sink_t;

static size_t on_data(char *p, size_t size, size_t n, void *arg)
{
    sink_t *s = arg;
    if (wf_buf_append(s->out, p, size * n) < 0) {
        s->over = true;
        return 0;
    }
    return size * n;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

typedef struct {
    const char *method;       /* "GET" or "POST" */
    const char *body;         /* POST: JSON */
    const char *key;          /* API key, or NULL */
    bool verify_tls;
} http_req_t;

static int http_do(const wf_misp_conf_t *mc, const char *url, const http_req_t *rq, wf_buf_t *out, char *err,
                   size_t errlen)
{
    CURL *h = curl_easy_init();
    if (!h) {
        snprintf(err, errlen, "curl_easy_init failed");
        return -ENOMEM;
    }
    struct curl_slist *hd = NULL;
    char auth[600];
    sink_t sink = { out, false };
    char cerr[CURL_ERROR_SIZE] = "";
    hd = curl_slist_append(hd, "Accept: application/json");
    if (rq->body)
        hd = curl_slist_append(hd, "Content-Type: application/json");
    if (rq->key) {
        snprintf(auth, sizeof(auth), "Authorization: %s", rq->key);
        hd = curl_slist_append(hd, auth);
    }
    hd = curl_slist_append(hd, "Expect:");
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "wafer/" WF_VERSION);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)mc->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)WF_MIN(mc->timeout_ms, 10000));
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    /* a redirect would carry the API key elsewhere: follow them for feeds only */
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, rq->key ? 0L : 1L);
    curl_easy_setopt(h, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, rq->verify_tls ? 1L : 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, rq->verify_tls ? 2L : 0L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    if (rq->body) {
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, rq->body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(rq->body));
    }
    CURLcode cc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(hd);
    curl_easy_cleanup(h);
    if (sink.over) {
        snprintf(err, errlen, "%s %s: response larger than max_bytes (%llu)", rq->method, url,
                 (unsigned long long)mc->max_bytes);
        return -WF_ELIMIT;
    }
    if (cc != CURLE_OK) {
        snprintf(err, errlen, "%s %s: %s", rq->method, url, cerr[0] ? cerr : curl_easy_strerror(cc));
        return cc == CURLE_OPERATION_TIMEDOUT ? -WF_ETIMEOUT : -EIO;
    }
    if (status < 200 || status > 299) {
        size_t n = WF_MIN(wf_buf_len(out), (size_t)200);
        char snippet[201];
        for (size_t i = 0; i < n; i++) {
            char ch = wf_buf_rptr(out)[i];
            snippet[i] = ch >= 0x20 && ch < 0x7f ? ch : ' ';
        }
        snippet[n] = 0;
        snprintf(err, errlen, "%s %s: HTTP status %ld%s%s", rq->method, url, status, n ? ": " : "", snippet);
        return -EPROTO;
    }
    return 0;
}

static int file_read(const wf_misp_conf_t *mc, const char *path, wf_buf_t *out, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    for (;;) {
        size_t want = WF_MIN((size_t)65536, out->max - out->end);
        char probe;
        if (want == 0) { /* at the limit: one more byte means too large */
            ssize_t r = read(fd, &probe, 1);
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0)
                break;
        }
        if (want == 0 || wf_buf_reserve(out, want) < 0) {
            close(fd);
            snprintf(err, errlen, "%s: larger than max_bytes (%llu)", path, (unsigned long long)mc->max_bytes);
            return -WF_ELIMIT;
        }
        ssize_t r = read(fd, wf_buf_wptr(out), wf_buf_space(out));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            return -e;
        }
        if (r == 0)
            break;
        wf_buf_commit(out, (size_t)r);
    }
    close(fd);
    return 0;
}

/* GET a feed document: an http(s) URL, file:///path or a path; base + "/" + name when name is given. */
static int feed_get(const wf_misp_conf_t *mc, const wf_misp_feed_conf_t *f, const char *name, wf_buf_t *out,
                    char *err, size_t errlen)
{
    char url[4096];
    const char *base = f->url;
    size_t bl = strlen(base);
    while (bl > 1 && base[bl - 1] == '/')
        bl--;
    int n = name ? snprintf(url, sizeof(url), "%.*s/%s", (int)bl, base, name) : snprintf(url, sizeof(url), "%s", base);
    if (n < 0 || (size_t)n >= sizeof(url)) {
        snprintf(err, errlen, "feed url too long");
        return -EINVAL;
    }
    wf_buf_clear(out);
    if (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8)) {
        http_req_t rq = { .method = "GET", .verify_tls = f->verify_tls };
        return http_do(mc, url, &rq, out, err, errlen);
    }
    return file_read(mc, !strncmp(url, "file://", 7) ? url + 7 : url, out, err, errlen);
}

/* ---- MISP-format feeds ---- */

static bool uuid_ok(const char *s)
{
    if (strlen(s) != 36)
        return false;
    for (int i = 0; i < 36; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
            return false;
    }
    return true;
}

static bool to_ids_of(json_t *a)
{
    json_t *t = json_object_get(a, "to_ids");
    if (json_is_boolean(t))
        return json_is_true(t);
    if (json_is_integer(t))
        return json_integer_value(t) != 0;
    if (json_is_string(t))
        return strcmp(json_string_value(t), "0") != 0 && strcmp(json_string_value(t), "false") != 0;
    return false;
}

static bool deleted_of(json_t *a)
{
    json_t *d = json_object_get(a, "deleted");
    return json_is_true(d) || (json_is_string(d) && !strcmp(json_string_value(d), "1")) ||
           (json_is_integer(d) && json_integer_value(d) != 0);
}

static int add_attrs(recset_t *rs, json_t *attrs, int32_t ev, bool to_ids_only)
{
    size_t i;
    json_t *a;
    if (!json_is_array(attrs))
        return 0;
    json_array_foreach(attrs, i, a)
    {
        const char *type = json_string_value(json_object_get(a, "type"));
        json_t *v = json_object_get(a, "value");
        if (!type || !json_is_string(v) || deleted_of(a) || (to_ids_only && !to_ids_of(a))) {
            rs->skipped++;
            continue;
        }
        if (add_rec(rs, type, json_string_value(v), json_string_length(v), ev, json_object_get(a, "Tag")) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* An event of feed f: its tags, then "feed:NAME" and the feed's configured tags. */
static int feed_event(recset_t *rs, const wf_misp_feed_conf_t *f, const char *id, json_t *tags)
{
    char feedtag[80];
    snprintf(feedtag, sizeof(feedtag), "feed:%s", f->name);
    char *extra[17];
    size_t nextra = 0;
    extra[nextra++] = feedtag;
    for (size_t i = 0; i < f->ntags; i++)
        extra[nextra++] = f->tags[i];
    return add_event(rs, id, tags, extra, nextra);
}

static int parse_event(recset_t *rs, const wf_misp_feed_conf_t *f, const char *uuid, json_t *root, char *err,
                       size_t errlen)
{
    json_t *e = json_object_get(root, "Event");
    if (!json_is_object(e)) {
        snprintf(err, errlen, "%s.json: no \"Event\" object", uuid);
        return -WF_EFORMAT;
    }
    const char *id = json_string_value(json_object_get(e, "uuid"));
    int ev = feed_event(rs, f, id && uuid_ok(id) ? id : uuid, json_object_get(e, "Tag"));
    if (ev < 0)
        return ev;
    if (add_attrs(rs, json_object_get(e, "Attribute"), ev, f->to_ids_only) < 0)
        return -ENOMEM;
    size_t i;
    json_t *o;
    json_array_foreach(json_object_get(e, "Object"), i, o)
    {
        if (add_attrs(rs, json_object_get(o, "Attribute"), ev, f->to_ids_only) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int fetch_misp_feed(const wf_misp_conf_t *mc, const wf_misp_feed_conf_t *f, recset_t *rs, wf_buf_t *buf,
                           char *err, size_t errlen)
{
    int rc = feed_get(mc, f, "manifest.json", buf, err, errlen);
    if (rc)
        return rc;
    json_error_t je;
    json_t *man = json_loadb(wf_buf_rptr(buf), wf_buf_len(buf), 0, &je);
    if (!json_is_object(man)) {
        snprintf(err, errlen, "%s/manifest.json: %s", f->url, man ? "not a JSON object" : je.text);
        json_decref(man);
        return -WF_EFORMAT;
    }
    const char *uuid;
    json_t *meta;
    size_t nread = 0;
    json_object_foreach(man, uuid, meta)
    {
        if (!uuid_ok(uuid)) { /* also keeps "../" out of the file name */
            rs->skipped++;
            continue;
        }
        if (nread++ >= f->max_events) {
            wf_warn("misp: feed %s: more than max_events (%u) events; the rest are not read", f->name, f->max_events);
            break;
        }
        char name[48];
        snprintf(name, sizeof(name), "%s.json", uuid);
        if ((rc = feed_get(mc, f, name, buf, err, errlen)))
            break;
        json_t *ev = json_loadb(wf_buf_rptr(buf), wf_buf_len(buf), 0, &je);
        if (!ev) {
            snprintf(err, errlen, "%s/%s: %s (line %d)", f->url, name, je.text, je.line);
            rc = -WF_EFORMAT;
            break;
        }
        rc = parse_event(rs, f, uuid, ev, err, errlen);
        json_decref(ev);
        if (rc)
            break;
    }
    json_decref(man);
    return rc;
}

/* ---- CSV and freetext feeds ---- */

static bool is_domain(const char *s, size_t n)
{
    if (n < 3 || n > 253 || s[0] == '.' || s[0] == '-' || s[n - 1] == '.')
        return false;
    size_t last_dot = 0;
    bool dot = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (i && s[i - 1] == '.')
                return false;
            dot = true;
            last_dot = i;
        } else if (!isalnum(c) && c != '-' && c != '_') {
            return false;
        }
    }
    if (!dot || n - last_dot - 1 < 2)
        return false;
    for (size_t i = last_dot + 1; i < n; i++)
        if (!isalpha((unsigned char)s[i]))
            return false;
    return true;
}

/* The MISP type of a value found in a feed, or NULL. */
static const char *guess_type(const char *v, size_t n)
{
    char b[64];
    wf_cidr_t c;
    if (n < sizeof(b)) {
        memcpy(b, v, n);
        b[n] = 0;
        if (wf_cidr_parse(b, &c) == 0)
            return "ip-src";
    }
    if ((n > 7 && !strncasecmp(v, "http://", 7)) || (n > 8 && !strncasecmp(v, "https://", 8)))
        return "url";
    if (is_domain(v, n))
        return "domain";
    return NULL;
}

/* hxxp(s):// and [.] / (.) / [:] back to their real forms, in place; returns the new length. */
static size_t refang(char *s, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (i + 4 <= n && !strncasecmp(s + i, "hxxp", 4)) {
            memcpy(s + o, "http", 4);
            o += 4, i += 4;
        } else if (i + 3 <= n && (s[i] == '[' || s[i] == '(' || s[i] == '{') && (s[i + 1] == '.' || s[i + 1] == ':') &&
                   (s[i + 2] == ']' || s[i + 2] == ')' || s[i + 2] == '}')) {
            s[o++] = s[i + 1];
            i += 3;
        } else {
            s[o++] = s[i++];
        }
    }
    return o;
}

static int add_value(recset_t *rs, const wf_misp_feed_conf_t *f, int32_t ev, const char *v, size_t n)
{
    while (n && isspace((unsigned char)*v))
        v++, n--;
    while (n && isspace((unsigned char)v[n - 1]))
        n--;
    if (!n)
        return 0;
    const char *type = f->type ? f->type : guess_type(v, n);
    if (!type) {
        rs->skipped++;
        return 0;
    }
    return add_rec(rs, type, v, n, ev, NULL) < 0 ? -ENOMEM : 0;
}


/* One CSV line: the column's field (double quotes with "" escapes allowed). */
static bool csv_field(const char *p, size_t n, char delim, int column, char *out, size_t cap, size_t *outn)
{
    int col = 1;
    size_t i = 0;
    while (i <= n) {
        size_t o = 0;
        bool quoted = i < n && p[i] == '"';
        if (quoted) {
            i++;
            while (i < n) {
                if (p[i] == '"') {
                    if (i + 1 < n && p[i + 1] == '"') {
                        if (o < cap)
                            out[o++] = '"';
                        i += 2;
                        continue;
                    }
                    i++;
                    break;
                }
                if (o < cap)
                    out[o++] = p[i];
                i++;
            }
            while (i < n && p[i] != delim)
                i++;
        } else {
            while (i < n && p[i] != delim) {
                if (o < cap)
                    out[o++] = p[i];
                i++;
            }
        }
        if (col == column) {
            *outn = o < cap ? o : cap;
            return o <= cap;
        }
        col++;
        i++; /* the delimiter */
    }
    return false;
}

static int parse_csv(recset_t *rs, const wf_misp_feed_conf_t *f, const char *p, size_t n)
{
    int ev = feed_event(rs, f, NULL, NULL);
    if (ev < 0)
        return ev;
    char field[4096];
    for (size_t i = 0; i < n;) {
        const char *nl = memchr(p + i, '\n', n - i);
        size_t len = nl ? (size_t)(nl - (p + i)) : n - i;
        const char *line = p + i;
        i += len + 1;
        if (len && line[len - 1] == '\r')
            len--;
        if (!len || line[0] == '#')
            continue;
        size_t fl;
        if (!csv_field(line, len, f->delimiter, f->column, field, sizeof(field), &fl)) {
            rs->skipped++;
            continue;
        }
        int rc = add_value(rs, f, ev, field, fl);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_freetext(recset_t *rs, const wf_misp_feed_conf_t *f, char *p, size_t n)
{
    int ev = feed_event(rs, f, NULL, NULL);
    if (ev < 0)
        return ev;
    n = refang(p, n);
    static const char seps[] = " \t\r\n,;\"'<>|";
    for (size_t i = 0; i < n;) {
        if (p[i] == '#' && (i == 0 || p[i - 1] == '\n')) { /* a comment line */
            while (i < n && p[i] != '\n')
                i++;
            continue;
        }
        if (memchr(seps, p[i], sizeof(seps) - 1)) {
            i++;
            continue;
        }
        size_t j = i;
        while (j < n && !memchr(seps, p[j], sizeof(seps) - 1))
            j++;
        size_t len = j - i;
        while (len && strchr(".)]}", p[i + len - 1])) /* sentence punctuation */
            len--;
        while (len && strchr("([{", p[i]))
            i++, len--;
        int rc = add_value(rs, f, ev, p + i, len);
        if (rc < 0)
            return rc;
        i = j;
    }
    return 0;
}

/* ---- the REST API ---- */

static json_t *rest_body(const wf_misp_api_conf_t *a, uint32_t page)
{
    json_t *types = json_array();
    for (size_t i = 0; i < a->ntypes; i++)
        json_array_append_new(types, json_string(a->types[i]));
    json_t *b = json_pack("{s:s, s:o, s:i, s:i, s:b, s:b}", "returnFormat", "json", "type", types, "page", (int)page,
                          "limit", (int)a->page_size, "includeEventTags", 1, "deleted", 0);
    if (!b)
        return NULL;
    if (a->to_ids)
        json_object_set_new(b, "to_ids", json_true());
    if (a->last)
        json_object_set_new(b, "last", json_string(a->last));
    if (a->ntags) {
        json_t *tags = json_array();
        for (size_t i = 0; i < a->ntags; i++)
            json_array_append_new(tags, json_string(a->tags[i]));
        json_object_set_new(b, "tags", tags);
    }
    return b;
}

static const char *json_text(json_t *v, char *buf, size_t cap)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(buf, cap, "%lld", (long long)json_integer_value(v));
        return buf;
    }
    return NULL;
}

static int fetch_api(const wf_misp_conf_t *mc, recset_t *rs, wf_buf_t *buf, char *err, size_t errlen)
{
    const wf_misp_api_conf_t *a = &mc->api;
    char url[2048];
    snprintf(url, sizeof(url), "%s/attributes/restSearch", a->url);
    uint64_t total = 0;
    /* events by id, so that attributes of one event share its record */
    json_t *seen = json_object();
    int rc = 0;
    for (uint32_t page = 1; page <= 100000; page++) {
        json_t *body = rest_body(a, page);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text) {
            rc = -ENOMEM;
            break;
        }
        http_req_t rq = { .method = "POST", .body = text, .key = a->key, .verify_tls = a->verify_tls };
        wf_buf_clear(buf);
        rc = http_do(mc, url, &rq, buf, err, errlen);
        free(text);
        if (rc)
            break;
        json_error_t je;
        json_t *root = json_loadb(wf_buf_rptr(buf), wf_buf_len(buf), 0, &je);
        json_t *attrs = json_object_get(json_object_get(root, "response"), "Attribute");
        if (!json_is_array(attrs)) {
            if (root)
                snprintf(err, errlen, "POST %s: page %u: no response.Attribute array in the answer", url, page);
            else
                snprintf(err, errlen, "POST %s: page %u: the answer is not JSON (%s)", url, page, je.text);
            json_decref(root);
            rc = -WF_EFORMAT;
            break;
        }
        size_t i, count = json_array_size(attrs);
        json_t *at;
        json_array_foreach(attrs, i, at)
        {
            char idbuf[32];
            json_t *event = json_object_get(at, "Event");
            const char *evid = json_text(json_object_get(at, "event_id"), idbuf, sizeof(idbuf));
            if (!evid)
                evid = json_text(json_object_get(event, "id"), idbuf, sizeof(idbuf));
            int32_t ev = -1;
            if (evid) {
                json_t *known = json_object_get(seen, evid);
                if (known) {
                    ev = (int32_t)json_integer_value(known);
                } else {
                    ev = add_event(rs, evid, json_object_get(event, "Tag"), NULL, 0);
                    if (ev < 0) {
                        rc = -ENOMEM;
                        break;
                    }
                    json_object_set_new(seen, evid, json_integer(ev));
                }
            }
            const char *type = json_string_value(json_object_get(at, "type"));
            json_t *v = json_object_get(at, "value");
            if (!type || !json_is_string(v) || deleted_of(at)) {
                rs->skipped++;
                continue;
            }
            if (add_rec(rs, type, json_string_value(v), json_string_length(v), ev, json_object_get(at, "Tag")) < 0) {
                rc = -ENOMEM;
                break;
            }
        }
        json_decref(root);
        total += count;
        if (rc || count < a->page_size || total >= mc->max_indicators)
            break;
    }
    json_decref(seen);
    return rc;
}

/* ---- the importer ---- */

typedef struct {
    const wf_misp_feed_conf_t *feed; /* NULL: the API */
    recset_t data;
    bool have;
    uint64_t next_ms;
    wf_misp_source_stats_t st;
} source_t;

struct wf_misp {
    wf_misp_conf_t *conf;  /* a copy: parsed again from nothing would lose it; see wf_misp_new */
    wf_ioc_store_t *store;
    source_t *src;
    size_t nsrc;
    pthread_mutex_t mu;    /* stats, stop flag */
    pthread_cond_t cv;
    bool stop, started;
    pthread_t thread;
    uint64_t tables, truncated;
    /* sightings: a bounded queue; the data plane only try-locks it */
    pthread_mutex_t sq_mu;
    char (*sq)[256];
    uint32_t sq_n, sq_cap;
    bool sightings_on;     /* read by the data plane (atomic): conf may be swapped by a reload */
    int action;            /* wf_misp_action_t, likewise */
    uint64_t s_sent, s_dropped, s_failed;
    uint64_t next_sightings_ms;
};

static int conf_copy(const wf_misp_conf_t *in, wf_misp_conf_t **out)
{
    wf_misp_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    *c = *in;
    c->feeds = NULL;
    c->nfeeds = 0;
    memset(&c->api, 0, sizeof(c->api));
    bool ok = true;
    if (in->nfeeds && !(c->feeds = calloc(in->nfeeds, sizeof(*c->feeds))))
        ok = false;
    for (size_t i = 0; ok && i < in->nfeeds; i++) {
        const wf_misp_feed_conf_t *s = &in->feeds[i];
        wf_misp_feed_conf_t *d = &c->feeds[c->nfeeds++];
        *d = *s;
        d->name = xstrdup(s->name);
        d->url = xstrdup(s->url);
        d->type = xstrdup(s->type);
        d->tags = NULL;
        d->ntags = 0;
        ok = d->name && d->url && (!s->type || d->type);
        if (ok && s->ntags && (ok = (d->tags = calloc(s->ntags, sizeof(char *))) != NULL))
            for (size_t j = 0; ok && j < s->ntags; j++)
                ok = (d->tags[d->ntags++] = strdup(s->tags[j])) != NULL;
    }
    if (ok && in->has_api) {
        const wf_misp_api_conf_t *s = &in->api;
        wf_misp_api_conf_t *d = &c->api;
        *d = *s;
        d->url = xstrdup(s->url);
        d->key = xstrdup(s->key);
        d->last = xstrdup(s->last);
        d->types = calloc(s->ntypes ? s->ntypes : 1, sizeof(char *));
        d->tags = calloc(s->ntags ? s->ntags : 1, sizeof(char *));
        d->ntypes = d->ntags = 0;
        ok = d->url && d->key && (!s->last || d->last) && d->types && d->tags;
        for (size_t j = 0; ok && j < s->ntypes; j++)
            ok = (d->types[d->ntypes++] = strdup(s->types[j])) != NULL;
        for (size_t j = 0; ok && j < s->ntags; j++)
            ok = (d->tags[d->ntags++] = strdup(s->tags[j])) != NULL;
    }
    if (!ok) {
        wf_misp_conf_free(c);
        return -ENOMEM;
    }
    *out = c;
    return 0;
}

/* The sources of a configuration, in order: its feeds, then the API. */
static source_t *sources_make(const wf_misp_conf_t *c, size_t *n)
{
    *n = c->nfeeds + (c->has_api ? 1 : 0);
    source_t *src = calloc(*n ? *n : 1, sizeof(*src));
    if (!src)
        return NULL;
    for (size_t i = 0; i < c->nfeeds; i++) {
        src[i].feed = &c->feeds[i];
        snprintf(src[i].st.name, sizeof(src[i].st.name), "%s", c->feeds[i].name);
    }
    if (c->has_api)
        snprintf(src[*n - 1].st.name, sizeof(src[0].st.name), "api");
    return src;
}

static void sources_free(source_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        recset_free(&src[i].data);
    free(src);
}

int wf_misp_new(const wf_misp_conf_t *conf, wf_ioc_store_t *store, wf_misp_t **out, char *err, size_t errlen)
{
    pthread_once(&curl_once, curl_init);
    wf_misp_t *m = calloc(1, sizeof(*m));
    *out = NULL;
    if (!m || conf_copy(conf, &m->conf) < 0) {
        free(m);
        snprintf(err, errlen, "misp: out of memory");
        return -ENOMEM;
    }
    m->store = store;
    m->src = sources_make(m->conf, &m->nsrc);
    m->sq_cap = m->conf->sightings_queue;
    m->sq = calloc(m->sq_cap, sizeof(*m->sq));
    if (!m->src || !m->sq) {
        wf_misp_conf_free(m->conf);
        free(m->src);
        free(m->sq);
        free(m);
        snprintf(err, errlen, "misp: out of memory");
        return -ENOMEM;
    }
    m->sightings_on = m->conf->sightings;
    m->action = m->conf->action;
    pthread_mutex_init(&m->mu, NULL);
    pthread_mutex_init(&m->sq_mu, NULL);
    wf_cond_init_monotonic(&m->cv);
    *out = m;
    return 0;
}

wf_misp_action_t wf_misp_action(const wf_misp_t *m)
{
    return (wf_misp_action_t)__atomic_load_n(&m->action, __ATOMIC_RELAXED);
}

static uint64_t source_refresh(const wf_misp_t *m, const source_t *s)
{
    return s->feed ? s->feed->refresh_ms : m->conf->api.refresh_ms;
}

/* Builds one table from every source's last good attributes and publishes it. */
static void rebuild(wf_misp_t *m)
{
    wf_ioc_builder_t *b = wf_ioc_builder_new(m->conf->max_indicators);
    if (!b) {
        wf_error("misp: out of memory building the indicator table; the previous table stays");
        return;
    }
    uint64_t truncated = 0, invalid = 0;
    const char *tags[2 * MAX_TAGS_PER_ATTR + 17];
    for (size_t si = 0; si < m->nsrc; si++) {
        const recset_t *rs = &m->src[si].data;
        for (size_t i = 0; i < rs->n; i++) {
            const rec_t *r = &rs->r[i];
            const evinfo_t *e = r->ev >= 0 ? &rs->evs[r->ev] : NULL;
            size_t nt = 0;
            for (size_t j = 0; j < r->ntags; j++)
                tags[nt++] = r->tags[j];
            for (size_t j = 0; e && j < e->ntags && nt < WF_ARRAY_LEN(tags); j++)
                tags[nt++] = e->tags[j];
            int rc = wf_ioc_builder_add(b, r->type, wf_str_c(r->value), e ? e->id : NULL, tags, nt);
            if (rc == -WF_ELIMIT)
                truncated++;
            else if (rc == -EINVAL)
                invalid++;
            else if (rc < 0) {
                wf_ioc_builder_free(b);
                wf_error("misp: %s building the indicator table; the previous table stays", wf_strerror(rc));
                return;
            }
        }
    }
    wf_ioc_t *t = wf_ioc_builder_finish(b);
    if (!t) {
        wf_error("misp: out of memory building the indicator table; the previous table stays");
        return;
    }
    wf_ioc_counts_t c;
    wf_ioc_counts(t, &c);
    wf_ioc_store_publish(m->store, t);
    pthread_mutex_lock(&m->mu);
    m->tables++;
    m->truncated = truncated;
    pthread_mutex_unlock(&m->mu);
    if (truncated)
        wf_warn("misp: max_indicators (%llu) reached: %llu attributes left out", (unsigned long long)m->conf->max_indicators,
                (unsigned long long)truncated);
    wf_info("misp: indicator table loaded: %zu addresses/networks, %zu domains, %zu urls, %zu user agents, "
            "%zu events; %llu invalid values skipped",
            c.per_kind[WF_IOC_IP], c.per_kind[WF_IOC_DOMAIN], c.per_kind[WF_IOC_URL], c.per_kind[WF_IOC_UA], c.events,
            (unsigned long long)invalid);
}

static int fetch_source(wf_misp_t *m, source_t *s, recset_t *rs, char *err, size_t errlen)
{
    wf_buf_t buf;
    if (wf_buf_init(&buf, WF_MIN((size_t)65536, m->conf->max_bytes), m->conf->max_bytes) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    int rc;
    if (!s->feed) {
        rc = fetch_api(m->conf, rs, &buf, err, errlen);
    } else if (s->feed->format == WF_MISP_FEED_MISP) {
        rc = fetch_misp_feed(m->conf, s->feed, rs, &buf, err, errlen);
    } else {
        rc = feed_get(m->conf, s->feed, NULL, &buf, err, errlen);
        if (!rc)
            rc = s->feed->format == WF_MISP_FEED_CSV ? parse_csv(rs, s->feed, wf_buf_rptr(&buf), wf_buf_len(&buf))
                                                     : parse_freetext(rs, s->feed, wf_buf_rptr(&buf), wf_buf_len(&buf));
        if (rc == -ENOMEM)
            snprintf(err, errlen, "out of memory");
    }
    wf_buf_free(&buf);
    return rc;
}

int wf_misp_import(wf_misp_t *m, bool all)
{
    int failed = 0;
    bool changed = false;
    for (size_t i = 0; i < m->nsrc; i++) {
        source_t *s = &m->src[i];
        uint64_t now = wf_now_ms();
        if (!all && s->next_ms > now)
            continue;
        recset_t rs = { 0 };
        char err[512] = "";
        int rc = fetch_source(m, s, &rs, err, sizeof(err));
        now = wf_now_ms();
        pthread_mutex_lock(&m->mu);
        if (rc) {
            s->st.failed++;
            s->next_ms = now + WF_MIN(m->conf->retry_ms, source_refresh(m, s));
        } else {
            s->st.ok++;
            s->st.attributes = rs.n;
            s->st.skipped = rs.skipped;
            s->st.last_ok_wall_us = wf_wall_us();
            s->next_ms = now + source_refresh(m, s);
        }
        pthread_mutex_unlock(&m->mu);
        if (rc) {
            recset_free(&rs);
            failed++;
            wf_error("misp: %s: %s; keeping its previous %s", s->st.name, err,
                     s->have ? "indicators" : "state (nothing loaded from it yet)");
            continue;
        }
        wf_info("misp: %s: %zu attributes (%llu skipped: other types, not to_ids, deleted or unrecognised)", s->st.name,
                rs.n, (unsigned long long)rs.skipped);
        recset_free(&s->data);
        s->data = rs;
        s->have = true;
        changed = true;
    }
    if (changed)
        rebuild(m);
    return failed;
}

/* ---- sightings ---- */

void wf_misp_sighting(wf_misp_t *m, const wf_ioc_hit_t *hit)
{
    if (!m || !__atomic_load_n(&m->sightings_on, __ATOMIC_RELAXED))
        return;
    if (pthread_mutex_trylock(&m->sq_mu) != 0) {
        __atomic_fetch_add(&m->s_dropped, 1, __ATOMIC_RELAXED);
        return;
    }
    if (m->sq_n < m->sq_cap)
        snprintf(m->sq[m->sq_n++], sizeof(m->sq[0]), "%s", hit->value);
    else
        __atomic_fetch_add(&m->s_dropped, 1, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&m->sq_mu);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

int wf_misp_sightings_flush(wf_misp_t *m)
{
    if (!m->conf->sightings || !m->conf->has_api)
        return 0;
    pthread_mutex_lock(&m->sq_mu);
    uint32_t n = m->sq_n;
    char (*vals)[256] = n ? malloc(n * sizeof(*vals)) : NULL;
    if (vals)
        memcpy(vals, m->sq, n * sizeof(*vals));
    if (vals || !n)
        m->sq_n = 0;
    pthread_mutex_unlock(&m->sq_mu);
    if (!n)
        return 0;
    if (!vals)
        return -ENOMEM;
    qsort(vals, n, sizeof(*vals), cmp_str);
    json_t *arr = json_array();
    size_t distinct = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || strcmp(vals[i], vals[i - 1]) != 0) {
            json_array_append_new(arr, json_string(vals[i]));
            distinct++;
        }
    json_t *body = json_pack("{s:o, s:s, s:s, s:I}", "values", arr, "source", "wafer", "type", "0", "timestamp",
                             (json_int_t)(wf_wall_us() / 1000000));
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    int rc = -ENOMEM;
    char err[512] = "out of memory";
    if (text) {
        char url[2048];
        snprintf(url, sizeof(url), "%s/sightings/add", m->conf->api.url);
        wf_buf_t buf;
        if (wf_buf_init(&buf, 4096, 1 << 20) == 0) {
            http_req_t rq = { .method = "POST", .body = text, .key = m->conf->api.key, .verify_tls = m->conf->api.verify_tls };
            rc = http_do(m->conf, url, &rq, &buf, err, sizeof(err));
            wf_buf_free(&buf);
        }
        free(text);
    }
    if (rc == 0) {
        __atomic_fetch_add(&m->s_sent, distinct, __ATOMIC_RELAXED);
        free(vals);
        return (int)distinct;
    }
    __atomic_fetch_add(&m->s_failed, 1, __ATOMIC_RELAXED);
    wf_warn("misp: sightings: %s; %u kept for the next try", err, n);
    /* put them back in front of what arrived meanwhile, as far as the bound allows */
    pthread_mutex_lock(&m->sq_mu);
    uint32_t room = m->sq_cap - m->sq_n, keep = WF_MIN(room, n);
    memmove(m->sq + keep, m->sq, m->sq_n * sizeof(*m->sq));
    memcpy(m->sq, vals, keep * sizeof(*vals));
    m->sq_n += keep;
    if (keep < n)
        __atomic_fetch_add(&m->s_dropped, n - keep, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&m->sq_mu);
    free(vals);
    return rc;
}

/* ---- the thread ---- */

static void *thread_main(void *arg)
{
    wf_misp_t *m = arg;
    m->next_sightings_ms = wf_now_ms() + m->conf->sightings_interval_ms;
    for (;;) {
        pthread_mutex_lock(&m->mu);
        for (;;) {
            if (m->stop)
                break;
            uint64_t now = wf_now_ms(), due = UINT64_MAX;
            for (size_t i = 0; i < m->nsrc; i++)
                due = WF_MIN(due, m->src[i].next_ms);
            if (m->conf->sightings)
                due = WF_MIN(due, m->next_sightings_ms);
            if (due <= now)
                break;
            uint64_t wait = WF_MIN(due - now, 3600000);
            wf_cond_wait_ms(&m->cv, &m->mu, wait);
        }
        bool stop = m->stop;
        pthread_mutex_unlock(&m->mu);
        if (stop)
            break;
        wf_misp_import(m, false);
        if (m->conf->sightings && wf_now_ms() >= m->next_sightings_ms) {
            wf_misp_sightings_flush(m);
            m->next_sightings_ms = wf_now_ms() + m->conf->sightings_interval_ms;
        }
    }
    if (m->conf->sightings)
        wf_misp_sightings_flush(m);
    return NULL;
}

int wf_misp_start(wf_misp_t *m, char *err, size_t errlen)
{
    int rc = pthread_create(&m->thread, NULL, thread_main, m);
    if (rc) {
        snprintf(err, errlen, "misp: cannot start the import thread: %s", strerror(rc));
        return -rc;
    }
    m->started = true;
    return 0;
}

static void thread_stop(wf_misp_t *m)
{
    if (!m->started)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_signal(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    m->started = false;
    m->stop = false;
}

int wf_misp_reconfigure(wf_misp_t *m, const wf_misp_conf_t *conf, char *err, size_t errlen)
{
    wf_misp_conf_t *nc;
    size_t nn;
    if (conf_copy(conf, &nc) < 0) {
        snprintf(err, errlen, "misp: out of memory");
        return -ENOMEM;
    }
    source_t *ns = sources_make(nc, &nn);
    char (*nq)[256] = calloc(nc->sightings_queue, sizeof(*nq));
    if (!ns || !nq) {
        free(ns);
        free(nq);
        wf_misp_conf_free(nc);
        snprintf(err, errlen, "misp: out of memory");
        return -ENOMEM;
    }
    bool was = m->started;
    thread_stop(m);
    /* a source that is still configured the same way keeps what it loaded */
    for (size_t i = 0; i < nn; i++)
        for (size_t j = 0; j < m->nsrc; j++) {
            const source_t *o = &m->src[j];
            bool same = !ns[i].feed ? !o->feed && !strcmp(nc->api.url, m->conf->api.url)
                                    : o->feed && !strcmp(ns[i].feed->name, o->feed->name) &&
                                          !strcmp(ns[i].feed->url, o->feed->url) && ns[i].feed->format == o->feed->format;
            if (same && m->src[j].have) {
                ns[i].data = m->src[j].data;
                ns[i].have = true;
                memset(&m->src[j].data, 0, sizeof(m->src[j].data));
                m->src[j].have = false;
                ns[i].st = m->src[j].st;
            }
        }
    pthread_mutex_lock(&m->mu);
    source_t *os = m->src;
    size_t on = m->nsrc;
    wf_misp_conf_t *oc = m->conf;
    m->src = ns;
    m->nsrc = nn;
    m->conf = nc;
    pthread_mutex_unlock(&m->mu);
    pthread_mutex_lock(&m->sq_mu);
    uint32_t keep = WF_MIN(m->sq_n, nc->sightings_queue);
    memcpy(nq, m->sq, keep * sizeof(*nq));
    free(m->sq);
    m->sq = nq;
    m->sq_n = keep;
    m->sq_cap = nc->sightings_queue;
    pthread_mutex_unlock(&m->sq_mu);
    __atomic_store_n(&m->sightings_on, nc->sightings, __ATOMIC_RELAXED);
    __atomic_store_n(&m->action, (int)nc->action, __ATOMIC_RELAXED);
    sources_free(os, on);
    wf_misp_conf_free(oc);
    if (!nn)
        wf_ioc_store_publish(m->store, NULL); /* no source any more: no indicator either */
    return was ? wf_misp_start(m, err, errlen) : 0;
}

void wf_misp_free(wf_misp_t *m)
{
    if (!m)
        return;
    thread_stop(m);
    sources_free(m->src, m->nsrc);
    free(m->sq);
    pthread_mutex_destroy(&m->mu);
    pthread_mutex_destroy(&m->sq_mu);
    pthread_cond_destroy(&m->cv);
    wf_misp_conf_free(m->conf);
    free(m);
}

void wf_misp_stats(wf_misp_t *m, wf_misp_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&m->mu);
    out->nsources = m->nsrc;
    for (size_t i = 0; i < m->nsrc && i < WF_ARRAY_LEN(out->sources); i++)
        out->sources[i] = m->src[i].st;
    out->tables = m->tables;
    out->truncated = m->truncated;
    pthread_mutex_unlock(&m->mu);
    out->sightings_sent = __atomic_load_n(&m->s_sent, __ATOMIC_RELAXED);
    out->sightings_dropped = __atomic_load_n(&m->s_dropped, __ATOMIC_RELAXED);
    out->sightings_failed = __atomic_load_n(&m->s_failed, __ATOMIC_RELAXED);
}

int wf_misp_check(const wf_sockaddr_t *client, wf_str_t host, wf_str_t target, wf_str_t user_agent, wf_ioc_hit_t *hit)
{
    wf_ioc_store_t *store = __atomic_load_n(&wf_ioc_global, __ATOMIC_ACQUIRE);
    wf_misp_t *m = __atomic_load_n(&wf_misp_global, __ATOMIC_ACQUIRE);
    if (!store || !m || !wf_ioc_store_match(store, client, host, target, user_agent, hit))
        return -1;
    wf_misp_sighting(m, hit);
    return (int)wf_misp_action(m);
}

/* ---- metrics ---- */

static void store_collect(wf_metrics_t *mt, void *arg)
{
    wf_ioc_store_stats_t st;
    wf_ioc_store_stats(arg, &st);
    wf_metrics_family(mt, "wafer_ioc_indicators", WF_METRIC_GAUGE, "Indicators in the table in use, by kind.");
    for (int k = 0; k < WF_IOC__COUNT; k++)
        wf_metrics_sample(mt, NULL, "kind", wf_ioc_kind_name((wf_ioc_kind_t)k), NULL, (double)st.loaded.per_kind[k]);
    wf_metrics_family(mt, "wafer_ioc_hits_total", WF_METRIC_COUNTER, "Requests that matched an indicator, by kind.");
    for (int k = 0; k < WF_IOC__COUNT; k++)
        wf_metrics_sample(mt, NULL, "kind", wf_ioc_kind_name((wf_ioc_kind_t)k), NULL, (double)st.hits[k]);
    wf_metrics_family(mt, "wafer_ioc_tables_total", WF_METRIC_COUNTER, "Indicator tables published.");
    wf_metrics_value(mt, (double)st.swaps);
}

static void misp_collect(wf_metrics_t *mt, void *arg)
{
    wf_misp_stats_t st;
    wf_misp_stats(arg, &st);
    size_t n = WF_MIN(st.nsources, WF_ARRAY_LEN(st.sources));
    wf_metrics_family(mt, "wafer_misp_fetches_total", WF_METRIC_COUNTER, "Fetches of each MISP source, by result.");
    for (size_t i = 0; i < n; i++) {
        wf_metrics_sample(mt, NULL, "source", st.sources[i].name, "result", "ok", NULL, (double)st.sources[i].ok);
        wf_metrics_sample(mt, NULL, "source", st.sources[i].name, "result", "failed", NULL, (double)st.sources[i].failed);
    }
    wf_metrics_family(mt, "wafer_misp_attributes", WF_METRIC_GAUGE,
                      "Attributes kept from each source's last successful fetch.");
    for (size_t i = 0; i < n; i++)
        wf_metrics_sample(mt, NULL, "source", st.sources[i].name, NULL, (double)st.sources[i].attributes);
    wf_metrics_family(mt, "wafer_misp_last_success_timestamp_seconds", WF_METRIC_GAUGE,
                      "When each source was last fetched successfully (0: never).");
    for (size_t i = 0; i < n; i++)
        wf_metrics_sample(mt, NULL, "source", st.sources[i].name, NULL, (double)st.sources[i].last_ok_wall_us / 1e6);
    wf_metrics_family(mt, "wafer_misp_indicators_truncated", WF_METRIC_GAUGE,
                      "Attributes left out of the last table because max_indicators was reached.");
    wf_metrics_value(mt, (double)st.truncated);
    wf_metrics_family(mt, "wafer_misp_sightings_total", WF_METRIC_COUNTER, "Sightings reported to MISP, by result.");
    wf_metrics_sample(mt, NULL, "result", "sent", NULL, (double)st.sightings_sent);
    wf_metrics_sample(mt, NULL, "result", "dropped", NULL, (double)st.sightings_dropped);
    wf_metrics_sample(mt, NULL, "result", "failed", NULL, (double)st.sightings_failed);
}

int wf_misp_metrics_register(wf_misp_t *m, wf_ioc_store_t *store)
{
    int rc = wf_metrics_register("ioc", store_collect, store);
    if (!rc && m)
        rc = wf_metrics_register("misp", misp_collect, m);
    return rc;
}
