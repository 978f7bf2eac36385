/* The data plane's Prometheus families: every counter of stats.h reaches
 * the exposition, and the per-worker latency histograms are merged, also
 * after a worker is gone. */
#include "test.h"
#include "http/server_int.h"
#include "wafer/metrics.h"

#include <stdlib.h>

static char *render(void)
{
    static wf_buf_t b;
    wf_buf_free(&b);
    wf_buf_init(&b, 4096, 1 << 22);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    wf_buf_append(&b, "", 1);
    return wf_buf_rptr(&b);
}

/* The value of the sample line that starts with `series ` (name and labels). */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return -1;
}

TEST(every_counter_is_exposed)
{
    wf_http_metrics_register();
    wf_http_metrics_register(); /* once only */
    static wf_stats_t s;
    /* a distinct value per field, then find each value in the exposition */
    for (size_t i = 0; i < wf_stats_nfields; i++)
        *(uint64_t *)((char *)&s + wf_stats_fields[i].offset) = 100000 + i * 10;
    for (int e = 0; e < WF_HTTP_E__COUNT; e++)
        s.http_reject[e] = 500000 + (uint64_t)e;
    CHECK_EQ_INT(wf_stats_register(&s), 0);
    char *text = render();
    for (size_t i = 0; i < wf_stats_nfields; i++) {
        const char *name = wf_stats_fields[i].name;
        /* sums of other counters, not families of their own */
        if (!strcmp(name, "responses") || !strcmp(name, "requests_rejected"))
            continue;
        char want[64];
        snprintf(want, sizeof(want), " %zu\n", (size_t)(100000 + i * 10));
        if (!strstr(text, want))
            fprintf(stderr, "stats field %s is not exposed\n", name);
        CHECK(strstr(text, want) != NULL);
    }
    CHECK_EQ_INT(value_of(text, "wafer_connections_accepted_total"), 100000);
    CHECK(value_of(text, "wafer_responses_total{code=\"2xx\"}") > 100000);
    CHECK(value_of(text, "wafer_timeouts_total{kind=\"header\"}") > 100000);
    CHECK_EQ_INT(value_of(text, "wafer_http_rejects_total{reason=\"cl_and_te\"}"), 500000 + WF_HTTP_E_CL_AND_TE);
    CHECK(strstr(text, "reason=\"status_line\"") == NULL);
    /* one family per name: no # TYPE line twice */
    const char *p = text;
    int types = 0;
    while ((p = strstr(p, "# TYPE wafer_responses_total ")))
        types++, p++;
    CHECK_EQ_INT(types, 1);
    wf_stats_unregister(&s);
}

TEST(latency_histograms_merge)
{
    wf_http_metrics_register();
    static wf_hist_t a, b;
    wf_http_latency_init(&a);
    wf_http_latency_init(&b);
    CHECK_EQ_INT(wf_http_latency_register(&a), 0);
    CHECK_EQ_INT(wf_http_latency_register(&b), 0);
    char *text = render();
    double base_count = value_of(text, "wafer_request_duration_seconds_count");
    double base_fast = value_of(text, "wafer_request_duration_seconds_bucket{le=\"0.001\"}");
    wf_hist_observe(&a, 0.0004);
    wf_hist_observe(&a, 0.2);
    wf_hist_observe(&b, 0.0009);
    wf_hist_observe(&b, 100); /* over the last bound: +Inf only */
    text = render();
    CHECK_EQ_INT(value_of(text, "wafer_request_duration_seconds_count") - base_count, 4);
    CHECK_EQ_INT(value_of(text, "wafer_request_duration_seconds_bucket{le=\"0.001\"}") - base_fast, 2);
    CHECK_EQ_INT(value_of(text, "wafer_request_duration_seconds_bucket{le=\"60\"}") - base_count, 3);
    CHECK_EQ_INT(value_of(text, "wafer_request_duration_seconds_bucket{le=\"+Inf\"}") - base_count, 4);
    /* a worker that exits keeps its observations in the sum */
    wf_http_latency_unregister(&a);
    memset(&a, 0xff, sizeof(a));
    text = render();
    CHECK_EQ_INT(value_of(text, "wafer_request_duration_seconds_count") - base_count, 4);
    wf_http_latency_unregister(&b);
}

TEST(process_metrics)
{
    wf_metrics_process_register();
    wf_metrics_process_register();
    char *text = render();
    CHECK(value_of(text, "wafer_build_info{version=\"" WF_VERSION "\",cuda=\"false\"}") == 1 ||
          value_of(text, "wafer_build_info{version=\"" WF_VERSION "\",cuda=\"true\"}") == 1);
    CHECK(value_of(text, "process_resident_memory_bytes") > 1e5);
    CHECK(value_of(text, "process_open_fds") >= 3);
    double start = value_of(text, "process_start_time_seconds");
    double now = (double)wf_wall_us() / 1e6;
    CHECK(start > now - 600 && start <= now + 1);
    const char *p = text;
    int n = 0;
    while ((p = strstr(p, "# TYPE wafer_build_info ")))
        n++, p++;
    CHECK_EQ_INT(n, 1);
}

TEST_MAIN()
