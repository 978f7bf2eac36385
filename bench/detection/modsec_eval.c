/*
 * modsec_eval: runs requests through ModSecurity v3 and the OWASP Core Rule Set
 * (the baseline wafer's detection is measured against; see docs/benchmarks.md
 * "Detection: wafer vs ModSecurity + CRS"). Not part of wafer; built only
 * when pkg-config finds libmodsecurity.
 *
 *   modsec_eval [-p PARANOIA] [-t THRESHOLD] [-H RESTRICTED_HEADERS] [-s crs-setup.conf] [-r RULES_DIR] [-w WARMUP]
 *               [-T TIMED -R ROUNDS] IN.jsonl > OUT.jsonl
 *
 * IN.jsonl: one JSON object per line with "raw", the whole HTTP request. OUT.jsonl: one line per input line, in
 * order: {"i": line index, "id": the input's "id" if any, "blocked": bool, "status": intervention status,
 * "score": CRS inbound anomaly score when 949110 fired, "rules": [ids of the rules that matched and logged]}.
 * A line whose request cannot be split is reported with "error" and counts as not blocked.
 *
 * Configuration: modsecurity.conf-recommended's request-side settings (engine on, request body access, its body
 * limits and the 2000xx body-processor rules), then crs-setup.conf, the paranoia level (tx.paranoia_level and
 * tx.executing_paranoia_level) and inbound threshold, then every CRS rule file. -H replaces CRS's
 * tx.restricted_headers (rule 900250 in crs-setup.conf; 3.3.4's default is "/accept-charset/ /content-encoding/
 * /proxy/ /lock-token/ /content-range/ /if/"). Only the request phases run (1
 * and 2): no response is fed.
 *
 * Throughput: every request is split into method, target, headers and body beforehand; the timed part is one
 * transaction from msc_new_transaction to msc_transaction_cleanup, with ModSecurity's server log callback
 * collecting rule ids (a connector's log callback pays the same message formatting). One thread. The first
 * WARMUP requests (default 20) are run once untimed first. The pass that gives the results is timed; with -T, the
 * first TIMED requests are then run ROUNDS (default 3) more times and the best round is reported too (on a
 * shared machine the least disturbed round is the closest to the engine's own cost).
 */
#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

#include <jansson.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} hdr_t;

typedef struct {
    char *buf; /* owns every string below */
    char *method;
    char *target; /* origin-form */
    char *version;
    hdr_t *hdrs;
    size_t nhdrs;
    const char *body;
    size_t body_len;
    json_t *id;
    const char *error;
} req_t;

#define MAX_RULES 64

typedef struct {
    int ids[MAX_RULES];
    int nids;
    int score;
} hits_t;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ModSecurity's text log line: '... [id "942100"] ... [msg "Inbound Anomaly Score Exceeded (Total Score: 10)"]'. */
static void log_cb(void *data, const void *msg)
{
    hits_t *h = data;
    const char *s = msg;
    if (!h || !s)
        return;
    for (const char *p = strstr(s, "[id \""); p; p = strstr(p + 5, "[id \"")) {
        int id = atoi(p + 5);
        bool seen = false;
        for (int k = 0; k < h->nids; k++)
            seen = seen || h->ids[k] == id;
        if (!seen && h->nids < MAX_RULES)
            h->ids[h->nids++] = id;
        if (id == 949110) {
            const char *t = strstr(s, "Total Score: ");
            if (t)
                h->score = atoi(t + 13);
        }
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static char *line_end(char *p, char *end, char **next)
{
    char *nl = memchr(p, '\n', end - p);
    if (!nl) {
        *next = end;
        return end;
    }
    *next = nl + 1;
    return (nl > p && nl[-1] == '\r') ? nl - 1 : nl;
}

/* Splits a well-formed request; absolute-form targets become origin-form (as a proxy passes them on). */
static void req_split(req_t *r, const char *raw, size_t len)
{
    r->buf = malloc(len + 1);
    memcpy(r->buf, raw, len);
    r->buf[len] = 0;
    char *p = r->buf, *end = r->buf + len, *next;
    char *le = line_end(p, end, &next);
    *le = 0;
    char *sp1 = strchr(p, ' ');
    char *sp2 = sp1 ? strrchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || sp2 == sp1) {
        r->error = "request line";
        return;
    }
    *sp1 = 0;
    *sp2 = 0;
    r->method = p;
    r->target = sp1 + 1;
    r->version = sp2 + 1;
    if (!strncmp(r->version, "HTTP/", 5))
        r->version += 5;
    if (!strncasecmp(r->target, "http://", 7) || !strncasecmp(r->target, "https://", 8)) {
        char *a = strstr(r->target, "://") + 3;
        char *slash = a + strcspn(a, "/?");
        if (*slash == '/')
            r->target = slash;
        else { /* "http://host?x" becomes "/?x": the byte before is the authority's (or "://"'s) last */
            slash[-1] = '/';
            r->target = slash - 1;
        }
    }
    size_t cap = 16;
    r->hdrs = malloc(cap * sizeof *r->hdrs);
    p = next;
    while (p < end) {
        le = line_end(p, end, &next);
        if (le == p) { /* blank line: the body follows */
            p = next;
            break;
        }
        *le = 0;
        char *colon = strchr(p, ':');
        if (colon) {
            if (r->nhdrs == cap)
                r->hdrs = realloc(r->hdrs, (cap *= 2) * sizeof *r->hdrs);
            hdr_t *h = &r->hdrs[r->nhdrs++];
            h->name = p;
            h->name_len = colon - p;
            char *v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            h->value = v;
            h->value_len = le - v;
        }
        p = next;
    }
    r->body = p < end ? p : end;
    r->body_len = end - r->body;
}

/* The disruptive rule (949110 and its score, or a 2000xx body rule) is named in the intervention's log only. */
static int check(Transaction *t, int *status, hits_t *h)
{
    ModSecurityIntervention it = {.status = 200};
    if (msc_intervention(t, &it)) {
        *status = it.status;
        if (it.log)
            log_cb(h, it.log);
        free(it.url);
        free(it.log);
        return 1;
    }
    return 0;
}

/* One transaction through the request phases; returns the intervention status or 0. */
static int req_eval(ModSecurity *ms, RulesSet *rules, const req_t *r, hits_t *h)
{
    int status = 0;
    Transaction *t = msc_new_transaction(ms, rules, h);
    msc_process_connection(t, "127.0.0.1", 40000, "127.0.0.1", 80);
    msc_process_uri(t, r->target, r->method, r->version);
    if (check(t, &status, h))
        goto out;
    for (size_t k = 0; k < r->nhdrs; k++)
        msc_add_n_request_header(t, (const unsigned char *)r->hdrs[k].name, r->hdrs[k].name_len,
                                 (const unsigned char *)r->hdrs[k].value, r->hdrs[k].value_len);
    msc_process_request_headers(t);
    if (check(t, &status, h))
        goto out;
    if (r->body_len)
        msc_append_request_body(t, (const unsigned char *)r->body, r->body_len);
    msc_process_request_body(t);
    check(t, &status, h);
out:
    msc_transaction_cleanup(t);
    return status;
}

static const char *const recommended =
    /* modsecurity.conf-recommended (ModSecurity v3), request side */
    "SecRuleEngine On\n"
    "SecRequestBodyAccess On\n"
    "SecRule REQUEST_HEADERS:Content-Type \"^(?:application(?:/soap\\+|/)|text/)xml\" "
    "\"id:'200000',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=XML\"\n"
    "SecRule REQUEST_HEADERS:Content-Type \"^application/json\" "
    "\"id:'200001',phase:1,t:none,t:lowercase,pass,nolog,ctl:requestBodyProcessor=JSON\"\n"
    "SecRequestBodyLimit 13107200\n"
    "SecRequestBodyNoFilesLimit 131072\n"
    "SecRequestBodyLimitAction Reject\n"
    "SecRule REQBODY_ERROR \"!@eq 0\" "
    "\"id:'200002',phase:2,t:none,log,deny,status:400,msg:'Failed to parse request body.'\"\n"
    "SecRule MULTIPART_STRICT_ERROR \"!@eq 0\" "
    "\"id:'200003',phase:2,t:none,log,deny,status:400,msg:'Multipart request body failed strict validation'\"\n"
    "SecRule MULTIPART_UNMATCHED_BOUNDARY \"@eq 1\" "
    "\"id:'200004',phase:2,t:none,log,deny,msg:'Multipart parser detected a possible unmatched boundary.'\"\n"
    "SecPcreMatchLimit 1000\n"
    "SecPcreMatchLimitRecursion 1000\n"
    "SecRule TX:/^MSC_/ \"!@streq 0\" \"id:'200005',phase:2,t:none,deny,msg:'ModSecurity internal error flagged: "
    "%{MATCHED_VAR_NAME}'\"\n"
    "SecResponseBodyAccess Off\n"
    "SecAuditEngine Off\n"
    "SecArgumentSeparator &\n"
    "SecCookieFormat 0\n";

int main(int argc, char **argv)
{
    int pl = 1, threshold = 5, warmup = 20, timed = 0, rounds = 3, opt;
    const char *setup = "/etc/modsecurity/crs/crs-setup.conf";
    const char *rules_dir = "/usr/share/modsecurity-crs/rules";
    const char *restricted = NULL;
    while ((opt = getopt(argc, argv, "p:t:H:s:r:w:T:R:")) != -1) {
        switch (opt) {
        case 'p': pl = atoi(optarg); break;
        case 't': threshold = atoi(optarg); break;
        case 'H': restricted = optarg; break;
        case 's': setup = optarg; break;
        case 'r': rules_dir = optarg; break;
        case 'w': warmup = atoi(optarg); break;
        case 'T': timed = atoi(optarg); break;
        case 'R': rounds = atoi(optarg); break;
        default:
            fprintf(stderr, "usage: %s [-p PARANOIA] [-t THRESHOLD] [-H RESTRICTED_HEADERS] [-s crs-setup.conf] [-r RULES_DIR] [-w WARMUP] "
                            "[-T TIMED -R ROUNDS] IN.jsonl > OUT.jsonl\n", argv[0]);
            return 2;
        }
    }
    if (optind != argc - 1 || pl < 1 || pl > 4) {
        fprintf(stderr, "%s: one input file and a paranoia level 1..4 are needed\n", argv[0]);
        return 2;
    }

    FILE *in = fopen(argv[optind], "r");
    if (!in) {
        fprintf(stderr, "%s: %s: %s\n", argv[0], argv[optind], strerror(errno));
        return 1;
    }
    size_t n = 0, cap = 1024;
    req_t *reqs = calloc(cap, sizeof *reqs);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    while ((len = getline(&line, &lcap, in)) > 0) {
        if (len <= 1)
            continue;
        if (n == cap) {
            reqs = realloc(reqs, (cap *= 2) * sizeof *reqs);
            memset(reqs + n, 0, (cap - n) * sizeof *reqs);
        }
        req_t *r = &reqs[n++];
        json_error_t err;
        json_t *o = json_loadb(line, len, JSON_ALLOW_NUL, &err);
        json_t *raw = o ? json_object_get(o, "raw") : NULL;
        if (!json_is_string(raw)) {
            r->error = o ? "no \"raw\" string" : "not JSON";
            json_decref(o);
            continue;
        }
        r->id = json_incref(json_object_get(o, "id"));
        req_split(r, json_string_value(raw), json_string_length(raw));
        json_decref(o);
    }
    free(line);
    fclose(in);

    char *conf = NULL;
    size_t conf_len = 0;
    FILE *cf = open_memstream(&conf, &conf_len);
    fputs(recommended, cf);
    fprintf(cf, "Include %s\n", setup);
    fprintf(cf, "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level=%d\"\n", pl);
    fprintf(cf, "SecAction \"id:900001,phase:1,nolog,pass,t:none,setvar:tx.executing_paranoia_level=%d\"\n", pl);
    fprintf(cf, "SecAction \"id:900110,phase:1,nolog,pass,t:none,setvar:tx.inbound_anomaly_score_threshold=%d,"
                "setvar:tx.outbound_anomaly_score_threshold=4\"\n", threshold);
    if (restricted) {
        if (strpbrk(restricted, "'\"\\\n")) {
            fprintf(stderr, "%s: -H: quotes, backslashes and newlines are not allowed\n", argv[0]);
            return 2;
        }
        fprintf(cf, "SecAction \"id:900250,phase:1,nolog,pass,t:none,setvar:'tx.restricted_headers=%s'\"\n",
                restricted);
    }
    fprintf(cf, "Include %s/*.conf\n", rules_dir);
    fclose(cf);

    ModSecurity *ms = msc_init();
    msc_set_connector_info(ms, "wafer bench/detection/modsec_eval");
    msc_set_log_cb(ms, log_cb);
    RulesSet *rules = msc_create_rules_set();
    const char *error = NULL;
    int nrules = msc_rules_add(rules, conf, &error);
    if (nrules < 0) {
        fprintf(stderr, "%s: loading the rules failed: %s\n", argv[0], error ? error : "?");
        return 1;
    }
    free(conf);

    hits_t *hits = calloc(n ? n : 1, sizeof *hits);
    int *status = calloc(n ? n : 1, sizeof *status);
    double *lat = calloc(n ? n : 1, sizeof *lat);
    for (size_t i = 0; i < n && (int)i < warmup; i++) {
        hits_t scratch = {0};
        if (!reqs[i].error)
            req_eval(ms, rules, &reqs[i], &scratch);
    }
    size_t evaluated = 0, blocked = 0;
    double total = 0;
    for (size_t i = 0; i < n; i++) {
        if (reqs[i].error)
            continue;
        double t0 = now_s();
        status[i] = req_eval(ms, rules, &reqs[i], &hits[i]);
        lat[i] = now_s() - t0;
        total += lat[i];
        evaluated++;
        blocked += status[i] != 0;
    }

    double best = 0;
    size_t tn = 0;
    for (int round = 0; timed > 0 && round < rounds; round++) {
        double t = 0;
        tn = 0;
        for (size_t i = 0; i < n && (int)i < timed; i++) {
            if (reqs[i].error)
                continue;
            hits_t scratch = {0};
            double t0 = now_s();
            req_eval(ms, rules, &reqs[i], &scratch);
            t += now_s() - t0;
            tn++;
        }
        if (round == 0 || t < best)
            best = t;
    }

    for (size_t i = 0; i < n; i++) {
        json_t *o = json_object();
        json_object_set_new(o, "i", json_integer(i));
        if (reqs[i].id)
            json_object_set(o, "id", reqs[i].id);
        if (reqs[i].error)
            json_object_set_new(o, "error", json_string(reqs[i].error));
        json_object_set_new(o, "blocked", json_boolean(status[i] != 0));
        json_object_set_new(o, "status", json_integer(status[i]));
        json_object_set_new(o, "score", json_integer(hits[i].score));
        json_t *ids = json_array();
        for (int k = 0; k < hits[i].nids; k++)
            json_array_append_new(ids, json_integer(hits[i].ids[k]));
        json_object_set_new(o, "rules", ids);
        char *s = json_dumps(o, JSON_COMPACT);
        puts(s);
        free(s);
        json_decref(o);
    }

    double p99 = 0;
    if (evaluated) {
        double *v = malloc(evaluated * sizeof *v);
        size_t m = 0;
        for (size_t i = 0; i < n; i++)
            if (!reqs[i].error)
                v[m++] = lat[i];
        qsort(v, m, sizeof *v, cmp_double);
        p99 = v[(size_t)((m - 1) * 0.99)];
        free(v);
    }
    fprintf(stderr,
            "modsec_eval: PL %d threshold %d%s: %zu requests (%zu not split), %zu blocked; %.3f s in transactions, "
            "%.1f requests/s (one thread), mean %.3f ms, p99 %.3f ms; %s, %d rules\n",
            pl, threshold, restricted ? " (restricted_headers replaced)" : "", n, n - evaluated, blocked, total, evaluated / (total > 0 ? total : 1),
            evaluated ? total / evaluated * 1e3 : 0, p99 * 1e3, msc_who_am_i(ms), nrules);
    if (timed > 0)
        fprintf(stderr, "modsec_eval: PL %d: best of %d rounds over the first %zu requests: %.3f s, %.1f timed requests/s\n",
                pl, rounds, tn, best, tn / (best > 0 ? best : 1));

    for (size_t i = 0; i < n; i++) {
        free(reqs[i].buf);
        free(reqs[i].hdrs);
        json_decref(reqs[i].id);
    }
    free(reqs);
    free(hits);
    free(status);
    free(lat);
    msc_rules_cleanup(rules);
    msc_cleanup(ms);
    return 0;
}
