/* Per-worker counters, summed on demand (see wafer/stats.h). */
#include "wafer/stats.h"
#include "wafer/core.h"

#include <pthread.h>
#include <stdio.h>

#define STATS_MAX_WORKERS 256

const wf_stats_field_t wf_stats_fields[] = {
#define WF_STATS_ROW(name, help) { #name, help, offsetof(wf_stats_t, name) },
    WF_STATS_FIELDS(WF_STATS_ROW)
#undef WF_STATS_ROW
};
const size_t wf_stats_nfields = WF_ARRAY_LEN(wf_stats_fields);

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_stats_t *stats_workers[STATS_MAX_WORKERS];
static wf_stats_t stats_gone; /* sums of unregistered workers */

int wf_stats_register(wf_stats_t *s)
{
    int rc = -WF_ELIMIT;
    pthread_mutex_lock(&stats_lock);
    for (int i = 0; i < STATS_MAX_WORKERS; i++)
        if (!stats_workers[i]) {
            stats_workers[i] = s;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&stats_lock);
    return rc;
}

static void stats_add(wf_stats_t *out, const wf_stats_t *s)
{
    const uint64_t *src = (const uint64_t *)s;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(wf_stats_t) / sizeof(uint64_t); i++)
        dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void wf_stats_unregister(wf_stats_t *s)
{
    pthread_mutex_lock(&stats_lock);
    for (int i = 0; i < STATS_MAX_WORKERS; i++)
        if (stats_workers[i] == s) {
            stats_workers[i] = NULL;
            stats_add(&stats_gone, s);
        }
    pthread_mutex_unlock(&stats_lock);
}

void wf_stats_sum(wf_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&stats_lock);
    stats_add(out, &stats_gone);
    for (int i = 0; i < STATS_MAX_WORKERS; i++)
        if (stats_workers[i])
            stats_add(out, stats_workers[i]);
    pthread_mutex_unlock(&stats_lock);
}

void wf_stats_log(const wf_stats_t *s, const char *prefix)
{
    char line[4096];
    size_t n = 0;
    for (size_t i = 0; i < wf_stats_nfields && n < sizeof(line) - 64; i++) {
        uint64_t v = *(const uint64_t *)((const char *)s + wf_stats_fields[i].offset);
        if (v) {
            int m = snprintf(line + n, sizeof(line) - n, " %s=%llu", wf_stats_fields[i].name, (unsigned long long)v);
            if (m > 0)
                n += (size_t)m;
        }
    }
    for (int e = 1; e < WF_HTTP_E__COUNT && n < sizeof(line) - 64; e++) {
        if (s->http_reject[e]) {
            int m = snprintf(line + n, sizeof(line) - n, " reject_%s=%llu", wf_http_err_name((wf_http_err_t)e),
                             (unsigned long long)s->http_reject[e]);
            if (m > 0)
                n += (size_t)m;
        }
    }
    if (n >= sizeof(line))
        n = sizeof(line) - 1;
    line[n] = 0;
    wf_info("%s%s", prefix, n ? line : " (all zero)");
}
