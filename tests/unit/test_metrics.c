#include "test.h"
#include "wafer/metrics.h"

static void collect_a(wf_metrics_t *m, void *arg)
{
    (void)arg;
    wf_metrics_family(m, "wafer_test_requests_total", WF_METRIC_COUNTER, "Requests by action.\nSecond line \\.");
    wf_metrics_sample(m, NULL, "action", "block", NULL, 3.0);
    wf_metrics_sample(m, NULL, "action", "say \"hi\"\n", "route", "a\\b", NULL, 1.5);
    wf_metrics_family(m, "wafer_test_up", WF_METRIC_GAUGE, "Up.");
    wf_metrics_value(m, 1);
}

static void collect_h(wf_metrics_t *m, void *arg)
{
    wf_hist_t *h = arg;
    wf_metrics_family(m, "wafer_test_latency_seconds", WF_METRIC_HISTOGRAM, "Latency.");
    wf_metrics_hist(m, h, "route", "api", NULL);
}

TEST(exposition)
{
    static wf_hist_t h;
    wf_hist_init_exp(&h, 0.1, 10, 3); /* 0.1 1 10 */
    wf_hist_observe(&h, 0.125);
    wf_hist_observe(&h, 0.0625);
    wf_hist_observe(&h, 0.5);
    wf_hist_observe(&h, 16);
    CHECK_EQ_INT(wf_metrics_register("a", collect_a, NULL), 0);
    CHECK_EQ_INT(wf_metrics_register("h", collect_h, &h), 0);
    wf_buf_t b;
    CHECK_EQ_INT(wf_buf_init(&b, 64, 1 << 20), 0);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    CHECK_EQ_INT(wf_buf_append(&b, "", 1), 0);
    const char *want =
        "# HELP wafer_test_requests_total Requests by action.\\nSecond line \\\\.\n"
        "# TYPE wafer_test_requests_total counter\n"
        "wafer_test_requests_total{action=\"block\"} 3\n"
        "wafer_test_requests_total{action=\"say \\\"hi\\\"\\n\",route=\"a\\\\b\"} 1.5\n"
        "# HELP wafer_test_up Up.\n"
        "# TYPE wafer_test_up gauge\n"
        "wafer_test_up 1\n"
        "# HELP wafer_test_latency_seconds Latency.\n"
        "# TYPE wafer_test_latency_seconds histogram\n"
        "wafer_test_latency_seconds_bucket{route=\"api\",le=\"0.1\"} 1\n"
        "wafer_test_latency_seconds_bucket{route=\"api\",le=\"1\"} 3\n"
        "wafer_test_latency_seconds_bucket{route=\"api\",le=\"10\"} 3\n"
        "wafer_test_latency_seconds_bucket{route=\"api\",le=\"+Inf\"} 4\n"
        "wafer_test_latency_seconds_sum{route=\"api\"} 16.6875\n"
        "wafer_test_latency_seconds_count{route=\"api\"} 4\n";
    CHECK_EQ_STR(wf_buf_rptr(&b), want);
    wf_metrics_unregister(&h);
    wf_buf_clear(&b);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    CHECK_EQ_INT(wf_buf_append(&b, "", 1), 0);
    CHECK(wf_buf_len(&b) > 1 && !strstr(wf_buf_rptr(&b), "latency"));
    wf_buf_free(&b);
}

TEST(render_limit)
{
    static wf_hist_t h;
    wf_hist_init_exp(&h, 1, 2, 20);
    wf_metrics_register("h2", collect_h, &h);
    wf_buf_t b;
    wf_buf_init(&b, 16, 64);
    CHECK(wf_metrics_render(&b) != 0);
    wf_buf_free(&b);
    wf_metrics_unregister(&h);
}

#include <pthread.h>

static wf_lcount_t *lc_shared;

static void *lc_thread(void *arg)
{
    const char *route = arg;
    for (int i = 0; i < 10000; i++) {
        const char *v[] = { i % 2 ? "block" : "pass", i % 2 ? "sqli" : "benign", route };
        wf_lcount_add(lc_shared, v, 1);
    }
    return NULL;
}

TEST(labelled_counters)
{
    const char *labels[] = { "action", "class", "route", NULL };
    lc_shared = wf_lcount_new("wafer_test_verdicts_total", "Verdicts.", labels, 64);
    CHECK(lc_shared != NULL);
    pthread_t th[4];
    const char *routes[] = { "api", "api", "default", "a\"b" };
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, lc_thread, (void *)routes[i]);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    wf_buf_t b;
    wf_buf_init(&b, 64, 1 << 20);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    wf_buf_append(&b, "", 1);
    const char *t = wf_buf_rptr(&b);
    CHECK(strstr(t, "wafer_test_verdicts_total{action=\"block\",class=\"sqli\",route=\"api\"} 10000\n") != NULL);
    CHECK(strstr(t, "wafer_test_verdicts_total{action=\"pass\",class=\"benign\",route=\"default\"} 5000\n") != NULL);
    CHECK(strstr(t, "route=\"a\\\"b\"} 5000\n") != NULL);
    CHECK(strstr(t, "other") == NULL);
    /* past 3/4 of the capacity, new keys count under "other" and nothing is lost */
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        const char *v[] = { "pass", "benign", name };
        wf_lcount_add(lc_shared, v, 2);
    }
    wf_buf_clear(&b);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    wf_buf_append(&b, "", 1);
    t = wf_buf_rptr(&b);
    const char *o = strstr(t, "{action=\"other\",class=\"other\",route=\"other\"} ");
    CHECK(o != NULL);
    long other = o ? strtol(strchr(o, '}') + 2, NULL, 10) : 0;
    CHECK_EQ_INT(other, 2 * (100 - (48 - 6))); /* 6 keys above; 48 = 3/4 of 64 */
    wf_lcount_free(lc_shared);
    wf_buf_free(&b);
}

TEST_MAIN()
