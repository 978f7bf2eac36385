/* The detection service (src/detect): configuration, batching across
 * submitters, bounded queues, completion routing, closing with units in flight.
 * Runs the CPU backend on the shipped model (models/default). */
#include "test.h"
#include "wafer/core.h"
#include "wafer/detect.h"
#include "wafer/event.h"

#include <math.h>
#include <stdlib.h>

#define MODEL WAFER_SOURCE_DIR "/models/default"

typedef struct {
    int n;
    uint64_t keys[64];
    uint32_t units[64];
    int bad;
} got_t;

static void on_verdict(void *arg, uint64_t key, uint32_t unit, const float *probs)
{
    got_t *g = arg;
    if (!probs || g->n >= 64) {
        g->bad++;
        return;
    }
    float sum = 0;
    for (int i = 0; i < 6; i++)
        sum += probs[i];
    if (fabsf(sum - 1.0f) > 1e-3f)
        g->bad++;
    g->keys[g->n] = key;
    g->units[g->n] = unit;
    g->n++;
}

static wf_detect_conf_t base_conf(void)
{
    wf_detect_conf_t c;
    memset(&c, 0, sizeof(c));
    c.enabled = true;
    c.model_dir = (char *)MODEL;
    c.backend = WF_DETECT_CPU;
    c.threads = 1;
    c.max_batch = 16;
    c.batch_wait_us = 50000; /* long: units of both ports must meet in one batch */
    c.max_queue = 64;
    c.max_inflight = 32;
    c.timeout_ms = 1000;
    wf_inspect_conf_default(&c.inspect);
    return c;
}

static int encode(wf_detect_engine_t *e, const char *text, int32_t *ids)
{
    return wf_tokenizer_encode(wf_detect_engine_tokenizer(e), text, strlen(text), ids, wf_detect_engine_max_len(e));
}

/* Runs both loops until n verdicts in all arrived or 5 s passed. */
static void pump(wf_loop_t *a, wf_loop_t *b, got_t *ga, got_t *gb, int n)
{
    uint64_t end = wf_now_ms() + 5000;
    while (ga->n + gb->n < n && wf_now_ms() < end) {
        wf_loop_run_once(a, 5);
        if (b)
            wf_loop_run_once(b, 5);
    }
}

TEST(conf_parse)
{
    const char *y = "detection:\n  model: m\n  backend: cpu\n  batch_wait: 250us\n  overload: fail_closed\n"
                    "  body_over_limit: reject\n  inspect: {max_body_bytes: 8k}\n";
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    CHECK(wf_conf_load_string("t.yaml", y, strlen(y), &c, &err) == 0);
    wf_detect_conf_t *dc = NULL;
    CHECK(wf_detect_conf_parse(c, wf_conf_get(wf_conf_root(c), "detection"), "/etc/wafer/wafer.yaml", &dc, &err) == 0);
    CHECK(dc && dc->enabled);
    CHECK_EQ_STR(dc->model_dir, "/etc/wafer/m");
    CHECK_EQ_INT(dc->batch_wait_us, 250);
    CHECK_EQ_INT(dc->overload, WF_OVERLOAD_FAIL_CLOSED);
    CHECK_EQ_INT(dc->body_over_limit, WF_BODY_REJECT);
    CHECK_EQ_INT(dc->inspect.max_body_bytes, 8192);
    CHECK(dc->inspect.nheaders > 0); /* the default header list */
    wf_detect_conf_free(dc);
    wf_conf_free(c);

    const char *bad = "detection:\n  backend: tpu\n";
    CHECK(wf_conf_load_string("t.yaml", bad, strlen(bad), &c, &err) == 0);
    CHECK(wf_detect_conf_parse(c, wf_conf_get(wf_conf_root(c), "detection"), "t.yaml", &dc, &err) != 0);
    CHECK(strstr(err.msg, "t.yaml:2") != NULL);
    wf_conf_free(c);
    const char *typo = "detection:\n  modle: x\n";
    CHECK(wf_conf_load_string("t.yaml", typo, strlen(typo), &c, &err) == 0);
    CHECK(wf_detect_conf_parse(c, wf_conf_get(wf_conf_root(c), "detection"), "t.yaml", &dc, &err) != 0);
    wf_conf_free(c);
    /* absent: off */
    CHECK(wf_detect_conf_parse(NULL, NULL, "t.yaml", &dc, &err) == 0);
    CHECK(!dc->enabled);
    wf_detect_conf_free(dc);
}

TEST(bad_model_is_refused_with_file_and_reason)
{
    wf_detect_conf_t c = base_conf();
    c.model_dir = (char *)"/nonexistent/model";
    wf_detect_t *d = NULL;
    char err[600] = "";
    CHECK(wf_detect_start(&c, &d, err, sizeof(err)) != 0);
    CHECK(d == NULL);
    CHECK(strstr(err, "/nonexistent/model") != NULL);
}

TEST(batches_units_of_two_ports_and_routes_each_verdict_home)
{
    wf_detect_conf_t c = base_conf();
    wf_detect_t *d = NULL;
    char err[600] = "";
    CHECK(wf_detect_start(&c, &d, err, sizeof(err)) == 0);
    if (!d)
        return;
    wf_loop_t *la, *lb;
    wf_loop_new(&la);
    wf_loop_new(&lb);
    got_t ga = { 0 }, gb = { 0 };
    wf_detect_port_t *pa = NULL, *pb = NULL;
    CHECK(wf_detect_port_open(d, la, on_verdict, &ga, &pa) == 0);
    CHECK(wf_detect_port_open(d, lb, on_verdict, &gb, &pb) == 0);
    wf_detect_engine_t *e = wf_detect_engine_get(d);
    int32_t ids[64];
    for (int i = 0; i < 4; i++) {
        int n = encode(e, i % 2 ? "query q: hello world" : "query id: 1 UNION SELECT password FROM users--", ids);
        CHECK(wf_detect_submit(pa, e, 100 + (uint64_t)i, (uint32_t)i, ids, n) == 0);
        CHECK(wf_detect_submit(pb, e, 200 + (uint64_t)i, (uint32_t)i, ids, n) == 0);
    }
    CHECK_EQ_INT(wf_detect_port_inflight(pa), 4);
    wf_detect_flush(pa);
    wf_detect_flush(pb);
    pump(la, lb, &ga, &gb, 8);
    CHECK_EQ_INT(ga.n, 4);
    CHECK_EQ_INT(gb.n, 4);
    CHECK_EQ_INT(ga.bad + gb.bad, 0);
    for (int i = 0; i < ga.n; i++)
        CHECK(ga.keys[i] >= 100 && ga.keys[i] < 104 && ga.units[i] == ga.keys[i] - 100);
    for (int i = 0; i < gb.n; i++)
        CHECK(gb.keys[i] >= 200 && gb.keys[i] < 204 && gb.units[i] == gb.keys[i] - 200);
    CHECK_EQ_INT(wf_detect_port_inflight(pa), 0);
    wf_detect_stats_t st;
    wf_detect_stats(d, &st);
    CHECK_EQ_INT(st.submitted, 8);
    CHECK_EQ_INT(st.completed, 8);
    CHECK(st.batches >= 1 && st.batches <= 2); /* one thread, a 50 ms batch wait: the 8 units meet */
    /* a bad length is refused, nothing queued */
    CHECK_EQ_INT(wf_detect_submit(pa, e, 1, 0, ids, 0), -EINVAL);
    CHECK_EQ_INT(wf_detect_submit(pa, e, 1, 0, ids, wf_detect_engine_max_len(e) + 1), -EINVAL);
    wf_detect_engine_unref(e);
    wf_detect_port_close(pa);
    wf_detect_port_close(pb);
    wf_detect_stop(d);
    wf_loop_free(la);
    wf_loop_free(lb);
}

TEST(queues_are_bounded_and_closing_waits_for_units_in_flight)
{
    setenv("WAFER_TEST_INFER_DELAY_MS", "100", 1);
    wf_detect_conf_t c = base_conf();
    c.max_batch = 2;
    c.batch_wait_us = 0;
    c.max_queue = 4;
    c.max_inflight = 6;
    wf_detect_t *d = NULL;
    char err[600] = "";
    CHECK(wf_detect_start(&c, &d, err, sizeof(err)) == 0);
    unsetenv("WAFER_TEST_INFER_DELAY_MS");
    if (!d)
        return;
    wf_loop_t *la;
    wf_loop_new(&la);
    got_t ga = { 0 };
    wf_detect_port_t *pa = NULL;
    CHECK(wf_detect_port_open(d, la, on_verdict, &ga, &pa) == 0);
    wf_detect_engine_t *e = wf_detect_engine_get(d);
    int32_t ids[64];
    int n = encode(e, "query q: hello", ids);
    int ok = 0, full = 0;
    for (int i = 0; i < 10; i++) {
        int rc = wf_detect_submit(pa, e, (uint64_t)i, 0, ids, n);
        if (rc == 0)
            ok++;
        else if (rc == -EAGAIN)
            full++;
    }
    /* at most max_queue waiting plus one batch (2) taken by the thread, and never over max_inflight */
    CHECK(ok >= 4 && ok <= 6);
    CHECK_EQ_INT(ok + full, 10);
    wf_detect_stats_t st;
    wf_detect_stats(d, &st);
    CHECK_EQ_INT(st.rejected_full, full);
    /* the port's own bound: nothing more while 6 are in flight */
    while (ok < 6 && wf_detect_submit(pa, e, 99, 0, ids, n) == 0)
        ok++;
    if (ok == 6)
        CHECK_EQ_INT(wf_detect_submit(pa, e, 100, 0, ids, n), -EAGAIN);
    wf_detect_flush(pa);
    /* closing with units in flight waits for them; no verdict is delivered after close */
    wf_detect_port_close(pa);
    CHECK(ga.n == 0);
    wf_detect_engine_unref(e);
    wf_detect_stop(d);
    wf_loop_free(la);
}

TEST_MAIN()
