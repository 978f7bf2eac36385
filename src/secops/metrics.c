/* Prometheus text exposition: the writer, histograms and the collector registry. */
#include "wafer/metrics.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_COLLECTORS 64

struct wf_metrics {
    wf_buf_t *out;
    int err;
    char family[128];
};

static struct {
    const char *name;
    wf_metrics_collect_fn fn;
    void *arg;
} collectors[MAX_COLLECTORS];
static size_t ncollectors;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static void put(wf_metrics_t *m, const char *s, size_t n)
{
    if (!m->err)
        m->err = wf_buf_append(m->out, s, n);
}

static void puts_(wf_metrics_t *m, const char *s) { put(m, s, strlen(s)); }

/* HELP text escapes backslash and newline; label values also the double quote. */
static void put_escaped(wf_metrics_t *m, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *rep = NULL;
        if (*s == '\\')
            rep = "\\\\";
        else if (*s == '\n')
            rep = "\\n";
        else if (quote && *s == '"')
            rep = "\\\"";
        if (rep) {
            put(m, run, (size_t)(s - run));
            puts_(m, rep);
            run = s + 1;
        }
    }
    put(m, run, (size_t)(s - run));
}

/* The shortest of %.15g and %.17g that reads back as v (0.1, not 0.10000000000000001). */
static int fmt_double(char *num, size_t cap, double v)
{
    if (isnan(v))
        return snprintf(num, cap, "NaN");
    if (isinf(v))
        return snprintf(num, cap, v > 0 ? "+Inf" : "-Inf");
    if (v == (double)(int64_t)v && fabs(v) < 9e15)
        return snprintf(num, cap, "%lld", (long long)v);
    int n = snprintf(num, cap, "%.15g", v);
    if (strtod(num, NULL) != v)
        n = snprintf(num, cap, "%.17g", v);
    return n;
}

static void put_value(wf_metrics_t *m, double v)
{
    char num[64];
    int n = fmt_double(num, sizeof(num), v);
    put(m, num, (size_t)n);
}

static const char *type_name(wf_metric_type_t t)
{
    switch (t) {
    case WF_METRIC_COUNTER: return "counter";
    case WF_METRIC_GAUGE: return "gauge";
    case WF_METRIC_HISTOGRAM: return "histogram";
    }
    return "untyped";
}

void wf_metrics_family(wf_metrics_t *m, const char *name, wf_metric_type_t type, const char *help)
{
    snprintf(m->family, sizeof(m->family), "%s", name);
    puts_(m, "# HELP ");
    puts_(m, name);
    puts_(m, " ");
    put_escaped(m, help ? help : "", false);
    puts_(m, "\n# TYPE ");
    puts_(m, name);
    puts_(m, " ");
    puts_(m, type_name(type));
    puts_(m, "\n");
}

/* name{labels...,extra} value: labels from a NULL-terminated va_list of pairs,
 * then an optional extra pair (the histogram's "le"). */
static void sample_v(wf_metrics_t *m, const char *suffix, va_list *ap, const char *xname, const char *xval,
                     bool have_value, double v)
{
    puts_(m, m->family);
    if (suffix)
        puts_(m, suffix);
    bool open = false;
    for (;;) {
        const char *ln = ap ? va_arg(*ap, const char *) : NULL;
        if (!ln)
            break;
        const char *lv = va_arg(*ap, const char *);
        puts_(m, open ? "," : "{");
        open = true;
        puts_(m, ln);
        puts_(m, "=\"");
        put_escaped(m, lv ? lv : "", true);
        puts_(m, "\"");
    }
    if (xname) {
        puts_(m, open ? "," : "{");
        open = true;
        puts_(m, xname);
        puts_(m, "=\"");
        puts_(m, xval);
        puts_(m, "\"");
    }
    if (open)
        puts_(m, "}");
    puts_(m, " ");
    if (have_value)
        put_value(m, v);
}

void wf_metrics_sample(wf_metrics_t *m, const char *suffix, ...)
{
    va_list ap;
    va_start(ap, suffix);
    sample_v(m, suffix, &ap, NULL, NULL, false, 0);
    double v = va_arg(ap, double);
    va_end(ap);
    put_value(m, v);
    puts_(m, "\n");
}

void wf_metrics_value(wf_metrics_t *m, double v)
{
    sample_v(m, NULL, NULL, NULL, NULL, true, v);
    puts_(m, "\n");
}

void wf_hist_init_exp(wf_hist_t *h, double start, double factor, uint32_t n)
{
    memset(h, 0, sizeof(*h));
    if (n > WF_HIST_MAX)
        n = WF_HIST_MAX;
    double b = start;
    for (uint32_t i = 0; i < n; i++, b *= factor)
        h->bounds[i] = b;
    h->nbounds = n;
}

void wf_hist_observe(wf_hist_t *h, double v)
{
    uint32_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    __atomic_store_n(&h->counts[i], h->counts[i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, h->count + 1, __ATOMIC_RELAXED);
    /* the sum is read unlocked by the scraper; a torn double is not possible
     * on the targets we build for (aligned 8-byte stores are single copies) */
    double s = h->sum + v;
    __atomic_store(&h->sum, &s, __ATOMIC_RELAXED);
}

void wf_hist_merge(wf_hist_t *dst, const wf_hist_t *src)
{
    if (!dst->nbounds) {
        dst->nbounds = src->nbounds;
        memcpy(dst->bounds, src->bounds, sizeof(dst->bounds));
    }
    for (uint32_t i = 0; i <= src->nbounds && i <= WF_HIST_MAX; i++)
        dst->counts[i] += __atomic_load_n(&src->counts[i], __ATOMIC_RELAXED);
    double s;
    __atomic_load(&src->sum, &s, __ATOMIC_RELAXED);
    dst->sum += s;
    dst->count += __atomic_load_n(&src->count, __ATOMIC_RELAXED);
}

void wf_metrics_hist(wf_metrics_t *m, const wf_hist_t *h, ...)
{
    /* Snapshot first: the writer may be counting while we read, and the
     * buckets must be cumulative and end at _count. */
    uint64_t counts[WF_HIST_MAX + 1];
    uint64_t total = 0;
    for (uint32_t i = 0; i <= h->nbounds; i++)
        total += counts[i] = __atomic_load_n(&h->counts[i], __ATOMIC_RELAXED);
    double sum;
    __atomic_load(&h->sum, &sum, __ATOMIC_RELAXED);

    uint64_t cum = 0;
    char le[64];
    for (uint32_t i = 0; i <= h->nbounds; i++) {
        cum += counts[i];
        if (i < h->nbounds)
            fmt_double(le, sizeof(le), h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        va_list ap;
        va_start(ap, h);
        sample_v(m, "_bucket", &ap, "le", le, true, (double)cum);
        va_end(ap);
        puts_(m, "\n");
    }
    va_list ap;
    va_start(ap, h);
    sample_v(m, "_sum", &ap, NULL, NULL, true, sum);
    va_end(ap);
    puts_(m, "\n");
    va_start(ap, h);
    sample_v(m, "_count", &ap, NULL, NULL, true, (double)total);
    va_end(ap);
    puts_(m, "\n");
}

int wf_metrics_register(const char *name, wf_metrics_collect_fn fn, void *arg)
{
    pthread_mutex_lock(&reg_lock);
    int rc = -WF_ELIMIT;
    if (ncollectors < MAX_COLLECTORS) {
        collectors[ncollectors].name = name;
        collectors[ncollectors].fn = fn;
        collectors[ncollectors].arg = arg;
        ncollectors++;
        rc = 0;
    }
    pthread_mutex_unlock(&reg_lock);
    return rc;
}

void wf_metrics_unregister(void *arg)
{
    pthread_mutex_lock(&reg_lock);
    size_t j = 0;
    for (size_t i = 0; i < ncollectors; i++)
        if (collectors[i].arg != arg)
            collectors[j++] = collectors[i];
    ncollectors = j;
    pthread_mutex_unlock(&reg_lock);
}

int wf_metrics_render(wf_buf_t *out)
{
    wf_metrics_t m = { .out = out };
    /* Collectors run under the lock so that a part cannot unregister (and
     * free its counters) in the middle of a scrape. */
    pthread_mutex_lock(&reg_lock);
    for (size_t i = 0; i < ncollectors && !m.err; i++)
        collectors[i].fn(&m, collectors[i].arg);
    pthread_mutex_unlock(&reg_lock);
    return m.err;
}

/* ---- labelled counters ---- */

typedef struct {
    _Atomic uint64_t count;
    _Atomic uint32_t state; /* 0 free, 1 being filled, 2 published */
    uint32_t hash;
    char values[WF_LCOUNT_LABELS][WF_LCOUNT_VALUE];
} lc_entry_t;

struct wf_lcount {
    const char *family, *help;
    const char *labels[WF_LCOUNT_LABELS];
    int nlabels;
    size_t cap, mask, used;
    lc_entry_t *e;
    lc_entry_t other;
    pthread_mutex_t lock; /* insertions only */
};

static uint32_t lc_hash(const char (*v)[WF_LCOUNT_VALUE], int n)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < n; i++)
        for (const char *p = v[i];; p++) {
            h = (h ^ (unsigned char)*p) * 16777619u;
            if (!*p)
                break;
        }
    return h;
}

static void lc_collect(wf_metrics_t *m, void *arg)
{
    wf_lcount_t *t = arg;
    wf_metrics_family(m, t->family, WF_METRIC_COUNTER, t->help);
    for (size_t i = 0; i <= t->cap; i++) {
        lc_entry_t *e = i < t->cap ? &t->e[i] : &t->other;
        if (i < t->cap && atomic_load_explicit(&e->state, memory_order_acquire) != 2)
            continue;
        uint64_t c = atomic_load_explicit(&e->count, memory_order_relaxed);
        if (i == t->cap && !c)
            continue;
        /* one sample with up to three label pairs */
        const char *l[WF_LCOUNT_LABELS] = { 0 };
        const char *v[WF_LCOUNT_LABELS] = { 0 };
        for (int k = 0; k < t->nlabels; k++) {
            l[k] = t->labels[k];
            v[k] = e->values[k];
        }
        if (t->nlabels == 1)
            wf_metrics_sample(m, NULL, l[0], v[0], NULL, (double)c);
        else if (t->nlabels == 2)
            wf_metrics_sample(m, NULL, l[0], v[0], l[1], v[1], NULL, (double)c);
        else
            wf_metrics_sample(m, NULL, l[0], v[0], l[1], v[1], l[2], v[2], NULL, (double)c);
    }
}

wf_lcount_t *wf_lcount_new(const char *family, const char *help, const char *const *labels, size_t capacity)
{
    wf_lcount_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    size_t cap = 64;
    while (cap < capacity && cap < 65536)
        cap <<= 1;
    t->e = calloc(cap, sizeof(*t->e));
    if (!t->e) {
        free(t);
        return NULL;
    }
    t->family = family;
    t->help = help;
    while (t->nlabels < WF_LCOUNT_LABELS && labels[t->nlabels]) {
        t->labels[t->nlabels] = labels[t->nlabels];
        snprintf(t->other.values[t->nlabels], WF_LCOUNT_VALUE, "other");
        t->nlabels++;
    }
    t->cap = cap;
    t->mask = cap - 1;
    pthread_mutex_init(&t->lock, NULL);
    if (wf_metrics_register(family, lc_collect, t)) {
        wf_lcount_free(t);
        return NULL;
    }
    return t;
}

void wf_lcount_add(wf_lcount_t *t, const char *const *values, uint64_t n)
{
    if (!t)
        return;
    char key[WF_LCOUNT_LABELS][WF_LCOUNT_VALUE];
    memset(key, 0, sizeof(key));
    for (int k = 0; k < t->nlabels; k++) {
        /* cut at a UTF-8 boundary: label values must stay valid UTF-8 */
        const char *v = values[k] ? values[k] : "";
        size_t len = strnlen(v, WF_LCOUNT_VALUE - 1);
        if (len == WF_LCOUNT_VALUE - 1)
            while (len && ((unsigned char)v[len] & 0xC0) == 0x80)
                len--;
        memcpy(key[k], v, len);
    }
    uint32_t h = lc_hash((const char (*)[WF_LCOUNT_VALUE])key, t->nlabels);
    bool locked = false;
    for (;;) {
        size_t i = h & t->mask;
        for (size_t probes = 0; probes < t->cap; probes++, i = (i + 1) & t->mask) {
            lc_entry_t *e = &t->e[i];
            uint32_t st = atomic_load_explicit(&e->state, memory_order_acquire);
            if (st == 2) {
                if (e->hash == h && !memcmp(e->values, key, sizeof(key))) {
                    atomic_fetch_add_explicit(&e->count, n, memory_order_relaxed);
                    if (locked)
                        pthread_mutex_unlock(&t->lock);
                    return;
                }
                continue;
            }
            if (st == 1 || !locked)
                break; /* an insertion in progress or a free slot: insert under the lock */
            /* locked and free: the key is not in the table; take the slot */
            if (t->used * 4 >= t->cap * 3)
                goto full;
            atomic_store_explicit(&e->state, 1, memory_order_relaxed);
            e->hash = h;
            memcpy(e->values, key, sizeof(key));
            atomic_store_explicit(&e->count, n, memory_order_relaxed);
            atomic_store_explicit(&e->state, 2, memory_order_release);
            t->used++;
            pthread_mutex_unlock(&t->lock);
            return;
        }
        if (locked)
            goto full;
        pthread_mutex_lock(&t->lock);
        locked = true;
    }
full:
    atomic_fetch_add_explicit(&t->other.count, n, memory_order_relaxed);
    pthread_mutex_unlock(&t->lock);
}

void wf_lcount_free(wf_lcount_t *t)
{
    if (!t)
        return;
    wf_metrics_unregister(t);
    pthread_mutex_destroy(&t->lock);
    free(t->e);
    free(t);
}
