/*
 * Test driver for the TheHive sink (tests/e2e/test_thehive.py): starts the
 * security-event hub with the `events:` section of a wafer configuration
 * file, emits the events it reads as JSON lines on stdin (wf_secops_emit,
 * as the data plane does), waits until the sinks have taken them and the
 * TheHive sink has nothing left to do (no open group, no pending alert) or
 * --max-ms pass, then stops the hub (as wafer's exit does: open groups are
 * closed and delivered for up to flush_timeout). Prints the TheHive
 * counters from the metrics exposition as one JSON object.
 *
 *     thehive_feed CONFIG.yaml [--max-ms N] < events.jsonl
 *
 * An event line: {"client_ip", "cls", "score", "action", "reason", "status",
 * "method", "host", "path", "query", "user_agent", "request_id", "route",
 * "misp_events": [...], "misp_tags": "a,b", "units": [{"kind", "name",
 * "text", "cls", "score"}]}; missing fields stay empty.
 */
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/secops.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void set(char *field, size_t cap, json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    if (v)
        wf_secev_set(field, cap, wf_str_c(v));
}
#define SET(ev, f, o, k) set((ev)->f, sizeof((ev)->f), o, k)

static int enum_of(const char *name, const char *(*fn)(int), int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(fn(i), name))
            return i;
    return -1;
}
static const char *act_name(int i) { return wf_secev_action_name((wf_secev_action_t)i); }
static const char *rsn_name(int i) { return wf_secev_reason_name((wf_secev_reason_t)i); }

static int parse_event(json_t *o, wf_secev_t *ev)
{
    wf_secev_init(ev);
    SET(ev, client_ip, o, "client_ip");
    SET(ev, cls, o, "cls");
    SET(ev, method, o, "method");
    SET(ev, host, o, "host");
    SET(ev, path, o, "path");
    SET(ev, query, o, "query");
    SET(ev, user_agent, o, "user_agent");
    SET(ev, request_id, o, "request_id");
    SET(ev, route, o, "route");
    SET(ev, misp_tags, o, "misp_tags");
    ev->score = (float)json_number_value(json_object_get(o, "score"));
    ev->status = (uint16_t)json_integer_value(json_object_get(o, "status"));
    const char *a = json_string_value(json_object_get(o, "action"));
    int ai = enum_of(a ? a : "block", act_name, WF_SECEV__COUNT);
    const char *r = json_string_value(json_object_get(o, "reason"));
    int ri = enum_of(r ? r : "model", rsn_name, WF_SECEV_R__COUNT);
    if (ai < 0 || ri < 0)
        return -1;
    ev->action = (wf_secev_action_t)ai;
    ev->reason = (wf_secev_reason_t)ri;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(o, "misp_events"), i, v)
    {
        if (ev->nmisp < WF_SECEV_MAX_MISP && json_is_string(v))
            wf_secev_set(ev->misp_event[ev->nmisp++], sizeof(ev->misp_event[0]), wf_str_c(json_string_value(v)));
    }
    json_array_foreach(json_object_get(o, "units"), i, v)
    {
        if (ev->nunits >= WF_SECEV_MAX_UNITS)
            break;
        wf_secev_unit_t *u = &ev->units[ev->nunits++];
        SET(u, kind, v, "kind");
        SET(u, name, v, "name");
        SET(u, text, v, "text");
        SET(u, cls, v, "cls");
        u->score = (float)json_number_value(json_object_get(v, "score"));
    }
    return 0;
}

/* The value of the sample `series` in a metrics exposition (0 if absent). */
static double metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ')
            return strtod(p + n + 1, NULL);
    return 0;
}

static char *scrape(void)
{
    static wf_buf_t b;
    wf_buf_free(&b);
    wf_buf_init(&b, 1 << 16, 1 << 24);
    wf_metrics_render(&b);
    wf_buf_append(&b, "", 1);
    return wf_buf_rptr(&b);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: thehive_feed CONFIG.yaml [--max-ms N] < events.jsonl\n");
        return 2;
    }
    uint64_t max_ms = 30000;
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--max-ms"))
            max_ms = strtoull(argv[i + 1], NULL, 10);
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    wf_secops_conf_t *sc = NULL;
    if (wf_conf_load_file(argv[1], &c, &err) ||
        wf_secops_conf_parse(c, wf_conf_get(wf_conf_root(c), "events"), &sc, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        wf_conf_free(c);
        return 2;
    }
    wf_conf_free(c);
    wf_secops_t *h = NULL;
    char msg[256];
    if (wf_secops_start(sc, &h, msg, sizeof(msg)) || !h) {
        fprintf(stderr, "%s\n", h ? msg : "no sink configured");
        return 2;
    }

    char line[65536];
    int bad = 0;
    uint64_t emitted = 0;
    while (fgets(line, sizeof(line), stdin)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        wf_secev_t ev;
        if (!o || parse_event(o, &ev)) {
            fprintf(stderr, "bad event line: %s", line);
            bad = 1;
        } else if (wf_secops_emit(h, &ev) == 0) {
            emitted++;
        }
        json_decref(o);
    }
    uint64_t deadline = wf_now_ms() + max_ms;
    while (wf_now_ms() < deadline) {
        wf_secops_sink_stats_t ss;
        wf_secops_sink_stats(h, &ss, 1);
        char *t = scrape();
        if (ss.delivered == emitted && !metric(t, "wafer_thehive_groups") && !metric(t, "wafer_thehive_pending"))
            break;
        struct timespec ts = { 0, 20 * 1000000 };
        nanosleep(&ts, NULL);
    }
    wf_secops_stop(h);
    wf_secops_conf_free(sc);
    char *t = scrape();
    printf("{\"created\": %.0f, \"duplicate\": %.0f, \"failed\": %.0f, \"dropped\": %.0f, \"retries\": %.0f, "
           "\"events\": %.0f, \"events_dropped\": %.0f, \"emitted\": %llu}\n",
           metric(t, "wafer_thehive_alerts_total{result=\"created\"}"),
           metric(t, "wafer_thehive_alerts_total{result=\"duplicate\"}"),
           metric(t, "wafer_thehive_alerts_total{result=\"failed\"}"),
           metric(t, "wafer_thehive_alerts_total{result=\"dropped\"}"), metric(t, "wafer_thehive_retries_total"),
           metric(t, "wafer_thehive_events_total{result=\"aggregated\"}"),
           metric(t, "wafer_thehive_events_total{result=\"dropped\"}"), (unsigned long long)emitted);
    return bad ? 2 : 0;
}
