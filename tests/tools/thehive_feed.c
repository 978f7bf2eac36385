/*
 * Test driver for the TheHive sink (tests/e2e/test_thehive.py): reads the
 * `thehive:` mapping of a YAML file, then security events as JSON lines on
 * stdin, hands them to the sink, and runs it until nothing is left to do
 * (no open group, no pending alert) or --max-ms pass. Prints the outcome
 * counters as one JSON object.
 *
 *     thehive_feed CONFIG.yaml [--max-ms N] < events.jsonl
 *
 * An event line: {"client_ip", "cls", "score", "action", "reason", "status",
 * "method", "host", "path", "query", "user_agent", "request_id", "route",
 * "misp_events": [...], "misp_tags": "a,b", "units": [{"kind", "name",
 * "text", "cls", "score"}]}; missing fields stay empty.
 */
#include "wafer/thehive.h"
#include "wafer/core.h"

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
    wf_thehive_conf_t tc;
    if (wf_conf_load_file(argv[1], &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    if (wf_thehive_conf_parse(c, wf_conf_get(wf_conf_root(c), "thehive"), &tc, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 2;
    }
    wf_conf_free(c);
    wf_thehive_t *th = NULL;
    char msg[256];
    if (wf_thehive_new(&tc, &th, msg, sizeof(msg))) {
        fprintf(stderr, "%s\n", msg);
        return 2;
    }
    wf_thehive_conf_free(&tc);

    char line[65536];
    int bad = 0;
    while (fgets(line, sizeof(line), stdin)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        wf_secev_t ev;
        if (!o || parse_event(o, &ev)) {
            fprintf(stderr, "bad event line: %s", line);
            bad = 1;
        } else {
            wf_thehive_add(th, &ev);
        }
        json_decref(o);
    }
    uint64_t deadline = wf_now_ms() + max_ms;
    for (;;) {
        uint64_t wait = wf_thehive_run(th);
        wf_thehive_stats_t s;
        wf_thehive_stats(th, &s);
        if ((!s.groups && !s.pending) || wf_now_ms() >= deadline)
            break;
        wait = WF_MIN(WF_MAX(wait, 5), 200);
        struct timespec ts = { 0, (long)wait * 1000000 };
        nanosleep(&ts, NULL);
    }
    wf_thehive_finish(th, wf_now_ms());
    wf_thehive_stats_t s;
    wf_thehive_stats(th, &s);
    printf("{\"created\": %llu, \"duplicate\": %llu, \"failed\": %llu, \"dropped\": %llu, \"retries\": %llu, "
           "\"events\": %llu, \"events_dropped\": %llu}\n",
           (unsigned long long)s.created, (unsigned long long)s.duplicate, (unsigned long long)s.failed,
           (unsigned long long)s.dropped, (unsigned long long)s.retries, (unsigned long long)s.events,
           (unsigned long long)s.events_dropped);
    wf_thehive_free(th);
    return bad ? 2 : 0;
}
