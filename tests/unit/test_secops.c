/* Security events: the record, its JSON form, the queue, the hub, the file sink, the spool. */
#include "test.h"
#include "secops/secops_int.h"
#include "wafer/metrics.h"

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>
#include <unistd.h>

static void tmpdir(char *out, size_t cap)
{
    snprintf(out, cap, "/tmp/wafer-test-secops-XXXXXX");
    if (!mkdtemp(out))
        abort();
}

static void rm_rf(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
}

static void full_event(wf_secev_t *ev)
{
    wf_secev_init(ev);
    ev->time_ns = 1795760684123456789ull; /* 2026-11-27T06:24:44.123456789Z */
    ev->action = WF_SECEV_BLOCK;
    ev->reason = WF_SECEV_R_MODEL;
    ev->status = 403;
    WF_SECEV_SET(ev, request_id, WF_STR("req-1"));
    WF_SECEV_SET(ev, client_ip, WF_STR("2001:db8::1"));
    ev->client_port = 51234;
    WF_SECEV_SET(ev, identity, WF_STR("spiffe://example.org/web"));
    WF_SECEV_SET(ev, method, WF_STR("POST"));
    WF_SECEV_SET(ev, host, WF_STR("shop.example"));
    WF_SECEV_SET(ev, path, WF_STR("/login"));
    WF_SECEV_SET(ev, query, WF_STR("id=1%27%20or%201=1"));
    WF_SECEV_SET(ev, user_agent, WF_STR("curl/8.0"));
    WF_SECEV_SET(ev, route, WF_STR("api"));
    WF_SECEV_SET(ev, cls, WF_STR("sqli"));
    ev->score = 0.9875f;
    ev->nunits = 2;
    WF_SECEV_SET(ev, units[0].kind, WF_STR("query"));
    WF_SECEV_SET(ev, units[0].name, WF_STR("id"));
    WF_SECEV_SET(ev, units[0].text, WF_STR("1' or 1=1"));
    WF_SECEV_SET(ev, units[0].cls, WF_STR("sqli"));
    ev->units[0].score = 0.9875f;
    WF_SECEV_SET(ev, units[1].kind, WF_STR("json"));
    WF_SECEV_SET(ev, units[1].name, WF_STR("$.user"));
    WF_SECEV_SET(ev, units[1].text, WF_STR("admin"));
    WF_SECEV_SET(ev, units[1].cls, WF_STR("benign"));
    ev->units[1].score = 0.5f;
    ev->units_total = 3;
    WF_SECEV_SET(ev, model, WF_STR("wafer-base@1.2"));
    ev->detections = 5;
    ev->ban_until_ns = 1795760744000000000ull;
    ev->nmisp = 2;
    WF_SECEV_SET(ev, misp_event[0], WF_STR("1234"));
    WF_SECEV_SET(ev, misp_event[1], WF_STR("5c0e7b1a-0000-4000-8000-000000000001"));
    WF_SECEV_SET(ev, misp_tags, WF_STR("tlp:green, apt-x,,"));
}

static json_t *to_json(const wf_secev_t *ev)
{
    wf_buf_t b;
    if (wf_buf_init(&b, 256, 1 << 20))
        return NULL;
    json_t *j = NULL;
    if (wf_secev_json(ev, &b) == 0) {
        json_error_t je;
        j = json_loadb(wf_buf_rptr(&b), wf_buf_len(&b), 0, &je);
        if (!j)
            fprintf(stderr, "json: %s at %d: %.*s\n", je.text, je.position, (int)wf_buf_len(&b), wf_buf_rptr(&b));
    }
    wf_buf_free(&b);
    return j;
}

static const char *jstr(json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf, *dot; j && p; p = dot ? dot + 1 : NULL) {
        dot = strchr(p, '.');
        if (dot)
            *dot = 0;
        j = json_object_get(j, p);
    }
    return json_is_string(j) ? json_string_value(j) : NULL;
}

static json_t *jget(json_t *j, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf, *dot; j && p; p = dot ? dot + 1 : NULL) {
        dot = strchr(p, '.');
        if (dot)
            *dot = 0;
        j = json_object_get(j, p);
    }
    return j;
}

TEST(json_full_event)
{
    wf_secev_t *ev = malloc(sizeof(*ev));
    full_event(ev);
    json_t *j = to_json(ev);
    CHECK(j != NULL);
    CHECK_EQ_STR(jstr(j, "@timestamp"), "2026-11-27T06:24:44.123Z");
    CHECK_EQ_STR(jstr(j, "event.kind"), "alert");
    CHECK_EQ_STR(json_string_value(json_array_get(jget(j, "event.category"), 0)), "web");
    CHECK_EQ_STR(json_string_value(json_array_get(jget(j, "event.type"), 0)), "denied");
    CHECK_EQ_STR(jstr(j, "event.action"), "block");
    CHECK_EQ_STR(jstr(j, "event.reason"), "model");
    CHECK_EQ_STR(jstr(j, "http.request.id"), "req-1");
    CHECK_EQ_STR(jstr(j, "http.request.method"), "POST");
    CHECK_EQ_INT(json_integer_value(jget(j, "http.response.status_code")), 403);
    CHECK_EQ_STR(jstr(j, "source.ip"), "2001:db8::1");
    CHECK_EQ_INT(json_integer_value(jget(j, "source.port")), 51234);
    CHECK_EQ_STR(jstr(j, "url.domain"), "shop.example");
    CHECK_EQ_STR(jstr(j, "url.path"), "/login");
    CHECK_EQ_STR(jstr(j, "url.query"), "id=1%27%20or%201=1");
    CHECK_EQ_STR(jstr(j, "user_agent.original"), "curl/8.0");
    CHECK_EQ_STR(jstr(j, "threat.indicator.provider"), "misp");
    CHECK_EQ_STR(jstr(j, "wafer.identity"), "spiffe://example.org/web");
    CHECK_EQ_STR(jstr(j, "wafer.route"), "api");
    CHECK_EQ_STR(jstr(j, "wafer.class"), "sqli");
    CHECK(fabs(json_real_value(jget(j, "wafer.score")) - 0.9875) < 1e-6);
    json_t *units = jget(j, "wafer.units");
    CHECK_EQ_INT(json_array_size(units), 2);
    CHECK_EQ_STR(jstr(json_array_get(units, 0), "text"), "1' or 1=1");
    CHECK_EQ_STR(jstr(json_array_get(units, 0), "kind"), "query");
    CHECK_EQ_STR(jstr(json_array_get(units, 1), "name"), "$.user");
    CHECK_EQ_STR(jstr(json_array_get(units, 1), "class"), "benign");
    CHECK(fabs(json_real_value(jget(json_array_get(units, 1), "score")) - 0.5) < 1e-6);
    CHECK_EQ_INT(json_integer_value(jget(j, "wafer.units_total")), 3);
    CHECK_EQ_STR(jstr(j, "wafer.model"), "wafer-base@1.2");
    CHECK_EQ_INT(json_integer_value(jget(j, "wafer.detections")), 5);
    CHECK_EQ_STR(jstr(j, "wafer.ban_until"), "2026-11-27T06:25:44.000Z");
    json_t *me = jget(j, "wafer.misp.events"), *mt = jget(j, "wafer.misp.tags");
    CHECK_EQ_INT(json_array_size(me), 2);
    CHECK_EQ_STR(json_string_value(json_array_get(me, 1)), "5c0e7b1a-0000-4000-8000-000000000001");
    CHECK_EQ_INT(json_array_size(mt), 2);
    CHECK_EQ_STR(json_string_value(json_array_get(mt, 0)), "tlp:green");
    CHECK_EQ_STR(json_string_value(json_array_get(mt, 1)), "apt-x");
    json_decref(j);

    /* an empty event: only what is always there */
    wf_secev_init(ev);
    ev->action = WF_SECEV_PASS;
    ev->reason = WF_SECEV_R_OVERLOAD;
    j = to_json(ev);
    CHECK(j != NULL);
    CHECK_EQ_STR(jstr(j, "event.kind"), "event");
    CHECK_EQ_STR(jstr(j, "event.reason"), "overload");
    CHECK(jget(j, "source") == NULL && jget(j, "url") == NULL && jget(j, "http") == NULL);
    CHECK(jget(j, "wafer.units") == NULL && jget(j, "threat") == NULL);
    json_decref(j);
    free(ev);
}

TEST(json_hostile_bytes)
{
    wf_secev_t *ev = malloc(sizeof(*ev));
    wf_secev_init(ev);
    static const char path[] = "/a\"b\\c\n\r\t\x01\x1f\x7f/\xc3\xa9/\xff\xfe/\xc3/\xed\xa0\x80/\xf0\x9f\x98\x80/\xe2\x80\xa8";
    WF_SECEV_SET(ev, path, wf_str(path, sizeof(path) - 1));
    /* every byte value in a unit's text */
    char all[255];
    for (int i = 0; i < 255; i++)
        all[i] = (char)(i + 1);
    ev->nunits = 1;
    WF_SECEV_SET(ev, units[0].text, wf_str(all, sizeof(all)));
    ev->units[0].score = 0.0f / 0.0f; /* NaN */
    ev->score = 1.0f / 0.0f;
    WF_SECEV_SET(ev, cls, WF_STR("x"));
    ev->nmisp = 99; /* out of range counts are clamped */
    ev->nunits = 1;
    json_t *j = to_json(ev);
    CHECK(j != NULL); /* jansson rejects invalid UTF-8 and bad escapes */
    const char *p = jstr(j, "url.path");
    /* valid UTF-8 (é, 😀, U+2028) kept; invalid bytes as U+00XX */
    CHECK_EQ_STR(p, "/a\"b\\c\n\r\t\x01\x1f\x7f/\xc3\xa9/\xc3\xbf\xc3\xbe/\xc3\x83/\xc3\xad\xc2\xa0\xc2\x80/"
                    "\xf0\x9f\x98\x80/\xe2\x80\xa8");
    const char *t = jstr(json_array_get(jget(j, "wafer.units"), 0), "text");
    CHECK(t != NULL && strlen(t) > 128);
    CHECK(json_is_null(jget(json_array_get(jget(j, "wafer.units"), 0), "score")));
    CHECK(json_is_null(jget(j, "wafer.score")));
    CHECK_EQ_INT(json_array_size(jget(j, "wafer.misp.events")), WF_SECEV_MAX_MISP);
    json_decref(j);

    /* a full buffer: an error and nothing half-written */
    wf_buf_t b;
    wf_buf_init(&b, 64, 200);
    wf_buf_append(&b, "x", 1);
    CHECK(wf_secev_json(ev, &b) == WF_ELIMIT || wf_secev_json(ev, &b) < 0);
    CHECK_EQ_INT(wf_buf_len(&b), 1);
    wf_buf_free(&b);
    free(ev);
}

TEST(set_cuts_at_utf8_boundary)
{
    char f[6];
    wf_secev_set(f, sizeof(f), WF_STR("abc\xc3\xa9\xc3\xa9")); /* 'é' would straddle the cut */
    CHECK_EQ_STR(f, "abc\xc3\xa9");
    wf_secev_set(f, sizeof(f), WF_STR("ab\xf0\x9f\x98\x80x"));
    CHECK_EQ_STR(f, "ab");
    wf_secev_set(f, sizeof(f), WF_STR("\x80\x80\x80\x80\x80\x80\x80")); /* not UTF-8: cut where it fits */
    CHECK_EQ_INT(strlen(f), 5);
    wf_secev_set(f, sizeof(f), WF_STR("hi"));
    CHECK_EQ_STR(f, "hi");
    CHECK(f[3] == 0 && f[4] == 0 && f[5] == 0); /* no stale bytes */
    wf_secev_set(f, sizeof(f), WF_STR_NULL);
    CHECK_EQ_STR(f, "");
    CHECK_EQ_STR(wf_secev_action_name(WF_SECEV_UNAVAILABLE), "unavailable");
    CHECK_EQ_STR(wf_secev_reason_name(WF_SECEV_R_CONNLIMIT), "connlimit");
    CHECK_EQ_STR(wf_secev_action_name((wf_secev_action_t)99), "unknown");
}

TEST(queue_full)
{
    wf_evq_t q;
    CHECK_EQ_INT(wf_evq_init(&q, 3, 1), 0);
    wf_secev_t *ev = malloc(sizeof(*ev));
    wf_secev_init(ev);
    for (int i = 0; i < 3; i++) {
        ev->detections = (uint32_t)i;
        CHECK(wf_evq_push(&q, ev));
    }
    CHECK(!wf_evq_push(&q, ev));
    CHECK_EQ_INT(wf_evq_depth(&q), 3);
    CHECK(wf_evq_pop(&q, ev));
    CHECK_EQ_INT(ev->detections, 0);
    CHECK(wf_evq_push(&q, ev)); /* a slot is free again */
    for (int i = 1; i < 3; i++) {
        CHECK(wf_evq_pop(&q, ev));
        CHECK_EQ_INT(ev->detections, i);
    }
    CHECK(wf_evq_pop(&q, ev));
    CHECK(!wf_evq_pop(&q, ev));
    wf_evq_free(&q);
    free(ev);
}

#define NPROD 4
#define PER_PROD 20000

typedef struct {
    wf_evq_t *q;
    int id;
} prod_arg_t;

static void *producer(void *arg)
{
    prod_arg_t *a = arg;
    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.client_port = (uint16_t)a->id;
    for (uint32_t i = 0; i < PER_PROD; i++) {
        ev.detections = i;
        while (!wf_evq_push(a->q, &ev))
            sched_yield();
    }
    return NULL;
}

TEST(queue_many_producers)
{
    wf_evq_t q;
    CHECK_EQ_INT(wf_evq_init(&q, 64, 16), 0); /* wakes only from 16 queued: the consumer's waits time out too */
    pthread_t t[NPROD];
    prod_arg_t args[NPROD];
    for (int i = 0; i < NPROD; i++) {
        args[i] = (prod_arg_t){ &q, i };
        pthread_create(&t[i], NULL, producer, &args[i]);
    }
    uint32_t next[NPROD] = { 0 };
    size_t got = 0, bad = 0;
    wf_secev_t *ev = malloc(sizeof(*ev));
    while (got < (size_t)NPROD * PER_PROD) {
        if (!wf_evq_pop(&q, ev)) {
            wf_evq_wait(&q, 100);
            continue;
        }
        if (ev->client_port >= NPROD || ev->detections != next[ev->client_port])
            bad++;
        else
            next[ev->client_port]++;
        got++;
    }
    for (int i = 0; i < NPROD; i++)
        pthread_join(t[i], NULL);
    CHECK_EQ_INT(bad, 0); /* each producer's events in its order, none lost or doubled */
    for (int i = 0; i < NPROD; i++)
        CHECK_EQ_INT(next[i], PER_PROD);
    CHECK(!wf_evq_pop(&q, ev));
    wf_evq_free(&q);
    free(ev);
}

static wf_secops_conf_t *conf_from(const char *yaml, wf_conf_err_t *err, int *rc)
{
    wf_conf_t *c = NULL;
    wf_secops_conf_t *sc = NULL;
    *rc = wf_conf_load_string("w.yaml", yaml, strlen(yaml), &c, err);
    if (*rc)
        return NULL;
    *rc = wf_secops_conf_parse(c, wf_conf_get(wf_conf_root(c), "events"), &sc, err);
    wf_conf_free(c);
    return sc;
}

TEST(conf_errors)
{
    wf_conf_err_t err;
    int rc;
    wf_secops_conf_t *sc = conf_from("events:\n  queue: 10\n  sinks:\n    - type: file\n      path: /tmp/x\n      bogus: 1\n",
                                     &err, &rc);
    CHECK(sc == NULL && rc == -WF_ECONFIG);
    CHECK(strstr(err.msg, "w.yaml:6:") != NULL && strstr(err.msg, "bogus") != NULL);
    sc = conf_from("events:\n  sinks:\n    - type: carrier-pigeon\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "w.yaml:3:") && strstr(err.msg, "carrier-pigeon"));
    sc = conf_from("events:\n  sinks:\n    - path: /tmp/x\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "missing type"));
    sc = conf_from("events:\n  sinks:\n    - {type: file, path: /tmp/a}\n    - {type: file, path: /tmp/b}\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "two sinks named \"file\""));
    sc = conf_from("events:\n  sinks:\n    - {type: file, path: /tmp/a, fsync: sometimes}\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "fsync"));
    sc = conf_from("events:\n  sinks:\n    - {type: file, path: /tmp/a, spool: {dir: /tmp/s, max_bytes: 1k}}\n", &err,
                   &rc);
    CHECK(sc == NULL && strstr(err.msg, "max_bytes"));
    sc = conf_from("events:\n  queue: 0\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "queue"));
    sc = conf_from("events:\n  extra: 1\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "w.yaml:2:") && strstr(err.msg, "extra"));
    wf_secops_conf_t *a = conf_from("events:\n  queue: 10\n", &err, &rc), *b = conf_from("events: {queue: 10}\n", &err, &rc),
                     *d = conf_from("events:\n  queue: 11\n", &err, &rc), *none = conf_from("x: 1\n", &err, &rc);
    CHECK(a && b && d && none);
    CHECK(wf_secops_conf_same(a, b));  /* flow or block style: the same section */
    CHECK(!wf_secops_conf_same(a, d));
    CHECK(!wf_secops_conf_same(a, none));
    wf_secops_conf_free(a);
    wf_secops_conf_free(b);
    wf_secops_conf_free(d);
    wf_secops_conf_free(none);
    sc = conf_from("other: 1\n", &err, &rc); /* no section: defaults, no sink */
    CHECK(sc != NULL && sc->queue == 4096 && sc->nsinks == 0);
    wf_secops_t *h = (wf_secops_t *)1;
    char e[256];
    CHECK_EQ_INT(wf_secops_start(sc, &h, e, sizeof(e)), 0);
    CHECK(h == NULL);
    wf_secops_conf_free(sc);
    sc = conf_from("events:\n  sink_nice: 20\n", &err, &rc);
    CHECK(sc == NULL && strstr(err.msg, "sink_nice"));
    sc = conf_from("events:\n  queue: 100\n  stop_timeout: 2s\n  sink_nice: 3\n  sinks:\n    - type: file\n      name: a\n"
                   "      path: /tmp/a\n      queue: 10\n      batch: 5\n      fsync: batch\n"
                   "      spool: {dir: /tmp/s, max_bytes: 1m, segment_bytes: 64k, fsync: true}\n"
                   "      retry: {initial: 100ms, max: 2s}\n",
                   &err, &rc);
    CHECK(sc != NULL);
    if (sc) {
        CHECK_EQ_INT(sc->queue, 100);
        CHECK_EQ_INT(sc->stop_timeout_ms, 2000);
        CHECK_EQ_INT(sc->sink_nice, 3);
        CHECK_EQ_INT(sc->nsinks, 1);
        CHECK_EQ_STR(sc->sinks[0].name, "a");
        CHECK_EQ_INT(sc->sinks[0].queue, 10);
        CHECK_EQ_INT(sc->sinks[0].batch, 5);
        CHECK_EQ_STR(sc->sinks[0].spool_dir, "/tmp/s");
        CHECK_EQ_INT(sc->sinks[0].spool_max_bytes, 1 << 20);
        CHECK_EQ_INT(sc->sinks[0].retry_initial_ms, 100);
        CHECK_EQ_INT(sc->sinks[0].retry_max_ms, 2000);
    }
    wf_secops_conf_free(sc);
}

static size_t count_lines(const char *path, size_t *bad)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t je;
        json_t *j = json_loadb(line, (size_t)len, 0, &je);
        if (!j || line[len - 1] != '\n')
            (*bad)++;
        json_decref(j);
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static bool wait_delivered(wf_secops_t *h, uint64_t want, int ms)
{
    for (int i = 0; i < ms; i++) {
        wf_secops_sink_stats_t st;
        wf_secops_sink_stats(h, &st, 1);
        if (st.delivered >= want)
            return true;
        usleep(1000);
    }
    return false;
}

TEST(file_sink_and_reopen)
{
    char dir[64], yaml[512], path[128], moved[128];
    tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/events.jsonl", dir);
    snprintf(moved, sizeof(moved), "%s/events.jsonl.1", dir);
    snprintf(yaml, sizeof(yaml), "events:\n  sinks:\n    - type: file\n      path: %s\n      fsync: batch\n", path);
    wf_conf_err_t err;
    int rc;
    wf_secops_conf_t *sc = conf_from(yaml, &err, &rc);
    CHECK(sc != NULL);
    wf_secops_t *h = NULL;
    char e[256];
    CHECK_EQ_INT(wf_secops_start(sc, &h, e, sizeof(e)), 0);
    wf_secev_t *ev = malloc(sizeof(*ev));
    full_event(ev);
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(wf_secops_emit(h, ev), 0);
    CHECK(wait_delivered(h, 100, 5000));
    CHECK_EQ_INT(rename(path, moved), 0);
    wf_secops_reopen(h);
    /* reopening happens on the sink thread before its next delivery */
    usleep(50000);
    for (int i = 0; i < 30; i++)
        CHECK_EQ_INT(wf_secops_emit(h, ev), 0);
    CHECK(wait_delivered(h, 130, 5000));

    /* the metrics collector names the sink */
    wf_buf_t b;
    wf_buf_init(&b, 4096, 1 << 20);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    wf_buf_append(&b, "", 1);
    CHECK(strstr(wf_buf_rptr(&b), "wafer_sink_delivered_total{sink=\"file\",type=\"file\"} 130") != NULL);
    CHECK(strstr(wf_buf_rptr(&b), "wafer_events_emitted_total 130") != NULL);
    wf_buf_free(&b);

    wf_secops_stop(h);
    size_t bad = 0;
    CHECK_EQ_INT(count_lines(moved, &bad), 100);
    CHECK_EQ_INT(count_lines(path, &bad), 30);
    CHECK_EQ_INT(bad, 0);
    /* after stop, nothing is registered */
    wf_buf_init(&b, 4096, 1 << 20);
    wf_metrics_render(&b);
    wf_buf_append(&b, "", 1);
    CHECK(strstr(wf_buf_rptr(&b), "wafer_sink") == NULL);
    wf_buf_free(&b);
    wf_secops_conf_free(sc);
    free(ev);
    rm_rf(dir);
}

typedef struct {
    wf_secops_t *h;
    int id;
    uint64_t ok, full;
} emit_arg_t;

static void *emitter(void *arg)
{
    emit_arg_t *a = arg;
    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.client_port = (uint16_t)a->id;
    for (uint32_t i = 0; i < 5000; i++) {
        ev.detections = i;
        if (wf_secops_emit(a->h, &ev) == 0)
            a->ok++;
        else
            a->full++;
        if (i % 64 == 0)
            usleep(100); /* let the dispatcher in now and then: both outcomes happen */
    }
    return NULL;
}

/* Many producers into a small queue: every event is either delivered or
 * counted as dropped, never both, never neither. */
TEST(hub_many_producers_accounting)
{
    char dir[64], yaml[512], path[128];
    tmpdir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/events.jsonl", dir);
    snprintf(yaml, sizeof(yaml), "events:\n  queue: 64\n  sinks:\n    - type: file\n      path: %s\n      queue: 128\n",
             path);
    wf_conf_err_t err;
    int rc;
    wf_secops_conf_t *sc = conf_from(yaml, &err, &rc);
    wf_secops_t *h = NULL;
    char e[256];
    CHECK_EQ_INT(wf_secops_start(sc, &h, e, sizeof(e)), 0);
    pthread_t t[4];
    emit_arg_t a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (emit_arg_t){ h, i, 0, 0 };
        pthread_create(&t[i], NULL, emitter, &a[i]);
    }
    uint64_t ok = 0, full = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ok += a[i].ok;
        full += a[i].full;
    }
    wf_secops_stats_t hs;
    wf_secops_stats(h, &hs);
    CHECK_EQ_INT(hs.emitted, ok);
    CHECK_EQ_INT(hs.dropped, full);
    CHECK_EQ_INT(ok + full, 20000);
    wf_secops_sink_stats_t ss = { 0 };
    for (int i = 0; i < 5000; i++) {
        wf_secops_sink_stats(h, &ss, 1);
        if (ss.delivered + ss.dropped == ok)
            break;
        usleep(1000);
    }
    CHECK_EQ_INT(ss.queued + ss.dropped, ok); /* the sink's queue of 128 overflowed too */
    CHECK_EQ_INT(ss.delivered + ss.dropped, ok);
    wf_secops_stop(h);
    size_t bad = 0, lines = count_lines(path, &bad);
    CHECK_EQ_INT(bad, 0);
    fprintf(stderr, "  4 producers x 5000 into a queue of 64: %llu queued, %llu dropped (queue full), %zu written\n",
            (unsigned long long)ok, (unsigned long long)full, lines);
    CHECK_EQ_INT(lines, ss.delivered);
    CHECK(full > 0);
    wf_secops_conf_free(sc);
    rm_rf(dir);
}

TEST(pack_roundtrip)
{
    wf_secev_t *ev = malloc(sizeof(*ev)), *back = malloc(sizeof(*back));
    unsigned char *buf = malloc(wf_secev_pack_bound());
    full_event(ev);
    size_t n = wf_secev_pack(ev, buf);
    CHECK(n < sizeof(*ev) / 4);
    CHECK(n <= wf_secev_pack_bound());
    CHECK_EQ_INT(wf_secev_unpack(buf, n, back), 0);
    CHECK(memcmp(ev, back, sizeof(*ev)) == 0);
    /* worst case: no zero anywhere */
    memset(ev, 0x41, sizeof(*ev));
    n = wf_secev_pack(ev, buf);
    CHECK(n <= wf_secev_pack_bound());
    CHECK_EQ_INT(wf_secev_unpack(buf, n, back), 0);
    CHECK(back->path[sizeof(back->path) - 1] == 0); /* sanitized */
    /* damaged input never over-reads or over-writes */
    CHECK(wf_secev_unpack(buf, n - 1, back) < 0);
    unsigned char junk[3] = { 0x7f, 'a', 'b' };
    CHECK(wf_secev_unpack(junk, sizeof(junk), back) < 0);
    CHECK(wf_crc32c(0, "123456789", 9) == 0xe3069283u);
    free(ev);
    free(back);
    free(buf);
}

TEST(spool_order_limit_and_restart)
{
    char dir[64], sdir[128], e[256];
    tmpdir(dir, sizeof(dir));
    snprintf(sdir, sizeof(sdir), "%s/spool/a", dir); /* created with its parents */
    wf_spool_t *sp = NULL;
    CHECK_EQ_INT(wf_spool_open(sdir, 64 << 10, 4096, false, &sp, e, sizeof(e)), 0);
    CHECK(wf_spool_empty(sp));
    wf_secev_t *evs = calloc(64, sizeof(*evs));
    full_event(&evs[0]);
    for (int i = 1; i < 64; i++)
        evs[i] = evs[0];
    /* 300 events: several segments of 4k (about 4 events each) */
    uint32_t seq = 0;
    int total = 0;
    for (int round = 0; round < 10; round++) {
        for (int i = 0; i < 30; i++)
            evs[i].detections = seq++;
        int k = wf_spool_append(sp, evs, 30);
        CHECK(k >= 0);
        total += k;
        if (k < 30)
            break;
    }
    CHECK(total > 30 && total < 300); /* the 64k limit cut it */
    CHECK(wf_spool_bytes(sp) <= 64 << 10);
    /* read half, confirm part of a peek */
    uint32_t want = 0;
    int k = wf_spool_peek(sp, evs, 10);
    CHECK(k > 0 && k <= 10);
    for (int i = 0; i < k; i++)
        CHECK_EQ_INT(evs[i].detections, want + (uint32_t)i);
    CHECK_EQ_INT(wf_spool_advance(sp, 2), 0);
    want += 2;
    k = wf_spool_peek(sp, evs, 10);
    CHECK(k > 0);
    CHECK_EQ_INT(evs[0].detections, want);
    CHECK_EQ_INT(wf_spool_advance(sp, (size_t)k), 0);
    want += (uint32_t)k;
    wf_spool_close(sp);

    /* a restart resumes at the confirmed position */
    CHECK_EQ_INT(wf_spool_open(sdir, 64 << 10, 4096, false, &sp, e, sizeof(e)), 0);
    CHECK(!wf_spool_empty(sp));
    /* new events go behind the old ones */
    for (int i = 0; i < 3; i++)
        evs[i].detections = 1000 + (uint32_t)i;
    CHECK_EQ_INT(wf_spool_append(sp, evs, 3), 3);
    uint32_t got = 0;
    bool order_ok = true;
    while ((k = wf_spool_peek(sp, evs, 7)) > 0) {
        for (int i = 0; i < k; i++) {
            uint32_t expect = want < (uint32_t)total ? want : 1000 + (want - (uint32_t)total);
            if (evs[i].detections != expect)
                order_ok = false;
            want++;
            got++;
        }
        CHECK_EQ_INT(wf_spool_advance(sp, (size_t)k), 0);
    }
    CHECK(k == 0);
    CHECK(order_ok);
    CHECK_EQ_INT(want, (uint32_t)total + 3);
    CHECK(wf_spool_empty(sp));
    CHECK_EQ_INT(wf_spool_bytes(sp), 0);
    wf_spool_close(sp);

    /* a torn tail (a crash mid-write) is cut off; the whole events before it survive */
    CHECK_EQ_INT(wf_spool_open(sdir, 1 << 20, 1 << 20, false, &sp, e, sizeof(e)), 0);
    for (int i = 0; i < 5; i++)
        evs[i].detections = 2000 + (uint32_t)i;
    CHECK_EQ_INT(wf_spool_append(sp, evs, 5), 5);
    uint64_t bytes = wf_spool_bytes(sp);
    wf_spool_close(sp);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "f=$(ls %s/*.seg | tail -1); truncate -s -5 $f", sdir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(wf_spool_open(sdir, 1 << 20, 1 << 20, false, &sp, e, sizeof(e)), 0);
    CHECK(wf_spool_bytes(sp) < bytes);
    CHECK_EQ_INT(wf_spool_lost(sp), 1);
    k = wf_spool_peek(sp, evs, 10);
    CHECK_EQ_INT(k, 4);
    CHECK_EQ_INT(evs[3].detections, 2003);
    CHECK(memcmp(evs[3].units[0].text, "1' or 1=1", 10) == 0);
    wf_spool_close(sp);

    /* a segment of another layout is set aside, not misread */
    snprintf(cmd, sizeof(cmd), "f=$(ls %s/*.seg | tail -1); printf 'WFSPOOL1xxxxxxxx' | dd of=$f conv=notrunc 2>/dev/null",
             sdir);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(wf_spool_open(sdir, 1 << 20, 1 << 20, false, &sp, e, sizeof(e)), 0);
    CHECK(wf_spool_empty(sp));
    wf_spool_close(sp);
    snprintf(cmd, sizeof(cmd), "ls %s/*.seg.stale >/dev/null", sdir);
    CHECK_EQ_INT(system(cmd), 0);
    free(evs);
    rm_rf(dir);
}

TEST(conf_network_sinks)
{
    wf_conf_err_t err;
    int rc;
    wf_secops_conf_t *sc = conf_from("events:\n  sinks:\n    - {type: syslog, transport: tcp, address: 127.0.0.1:514, "
                                     "facility: local3, hostname: waf-1}\n    - {type: forward, address: 127.0.0.1:24224, "
                                     "mode: forward, ack: false, shared_key: k, tag: a.b}\n",
                                     &err, &rc);
    CHECK(sc != NULL);
    if (sc)
        CHECK_EQ_INT(sc->nsinks, 2);
    wf_secops_conf_free(sc);
    static const struct {
        const char *yaml, *want;
    } bad[] = {
        { "events:\n  sinks:\n    - {type: syslog}\n", "needs an address" },
        { "events:\n  sinks:\n    - {type: syslog, address: nowhere}\n", "host:port" },
        { "events:\n  sinks:\n    - {type: syslog, address: 127.0.0.1:514, facility: local9}\n", "facility" },
        { "events:\n  sinks:\n    - {type: syslog, address: 127.0.0.1:514, transport: sctp}\n", "transport" },
        { "events:\n  sinks:\n    - {type: syslog, address: 127.0.0.1:514, ca: /x}\n", "only for transport: tls" },
        { "events:\n  sinks:\n    - {type: syslog, address: 127.0.0.1:514, hostname: \"a b\"}\n", "printable" },
        { "events:\n  sinks:\n    - {type: syslog, address: 127.0.0.1:514, max_datagram: 100}\n", "max_datagram" },
        { "events:\n  sinks:\n    - {type: forward}\n", "needs an address" },
        { "events:\n  sinks:\n    - {type: forward, address: 127.0.0.1:1, mode: compressed}\n", "mode" },
        { "events:\n  sinks:\n    - {type: forward, address: 127.0.0.1:1, username: u}\n", "set shared_key too" },
        { "events:\n  sinks:\n    - {type: forward, address: 127.0.0.1:1, tag: \"\"}\n", "tag" },
        { "events:\n  sinks:\n    - {type: forward, address: 127.0.0.1:1, path: /x}\n", "unknown key" },
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        sc = conf_from(bad[i].yaml, &err, &rc);
        CHECK(sc == NULL && rc != 0);
        if (sc || !strstr(err.msg, bad[i].want) || !strstr(err.msg, "w.yaml:3:"))
            fprintf(stderr, "  case %zu: %s\n", i, err.msg);
        CHECK(strstr(err.msg, bad[i].want) != NULL);
        CHECK(strstr(err.msg, "w.yaml:3:") != NULL);
        wf_secops_conf_free(sc);
    }
}

TEST_MAIN()
