/*
 * secops_drive: a test driver for the security-event hub. Starts the hub of
 * a configuration's `events:` section, emits events at a rate, waits for the
 * sinks, stops, and prints the counters as one JSON line on stdout.
 *
 *   secops_drive -c wafer.yaml [-n COUNT] [-r PER_SECOND] [-p ID_PREFIX]
 *                [-w WAIT_SECONDS] [-d DELIVERED]
 *
 * Event i has request_id "<prefix>-<i>" (six digits), client 192.0.2.(i%250)
 * and a unit whose text holds quotes, backslashes, control characters and
 * non-ASCII UTF-8, so receivers can check that each event arrived whole.
 * After emitting, it waits up to -w seconds until every sink has delivered
 * -d events (default: COUNT), then stops the hub (a sink that is down keeps
 * the rest in its spool). SIGTERM/SIGINT stop the emitting early.
 */
#include "wafer/conf.h"
#include "wafer/secops.h"

#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;
static void on_stop(int s) { (void)s; stop_flag = 1; }

static void fill(wf_secev_t *ev, const char *prefix, long i)
{
    char tmp[128];
    wf_secev_init(ev);
    ev->action = (wf_secev_action_t)(i % 3 == 2 ? WF_SECEV_MONITOR : WF_SECEV_BLOCK);
    ev->reason = WF_SECEV_R_MODEL;
    ev->status = ev->action == WF_SECEV_BLOCK ? 403 : 0;
    snprintf(tmp, sizeof(tmp), "%s-%06ld", prefix, i);
    WF_SECEV_SET(ev, request_id, wf_str_c(tmp));
    snprintf(tmp, sizeof(tmp), "192.0.2.%ld", i % 250);
    WF_SECEV_SET(ev, client_ip, wf_str_c(tmp));
    ev->client_port = (uint16_t)(40000 + i % 20000);
    WF_SECEV_SET(ev, method, WF_STR("GET"));
    WF_SECEV_SET(ev, host, WF_STR("shop.example"));
    WF_SECEV_SET(ev, path, WF_STR("/search"));
    WF_SECEV_SET(ev, query, WF_STR("q=1%27%20or%201=1"));
    WF_SECEV_SET(ev, user_agent, WF_STR("drive/1.0"));
    WF_SECEV_SET(ev, route, WF_STR("shop"));
    WF_SECEV_SET(ev, cls, WF_STR("sqli"));
    ev->score = 0.97f;
    ev->nunits = 1;
    ev->units_total = 1;
    WF_SECEV_SET(ev, units[0].kind, WF_STR("query"));
    WF_SECEV_SET(ev, units[0].name, WF_STR("q"));
    WF_SECEV_SET(ev, units[0].text, WF_STR("1' or \"1\"=\"1\" \\ \t\x01 caf\xc3\xa9 \xe2\x9c\x93 ]"));
    WF_SECEV_SET(ev, units[0].cls, WF_STR("sqli"));
    ev->units[0].score = 0.97f;
    WF_SECEV_SET(ev, model, WF_STR("wafer-test@1"));
}

static void print_stats(wf_secops_t *h, long sent)
{
    wf_secops_stats_t st;
    wf_secops_stats(h, &st);
    printf("{\"sent\":%ld,\"emitted\":%llu,\"dropped\":%llu,\"sinks\":[", sent, (unsigned long long)st.emitted,
           (unsigned long long)st.dropped);
    wf_secops_sink_stats_t ss[16];
    size_t n = WF_MIN(wf_secops_sink_stats(h, ss, 16), (size_t)16);
    for (size_t i = 0; i < n; i++)
        printf("%s{\"name\":\"%s\",\"up\":%s,\"queued\":%llu,\"delivered\":%llu,\"retried\":%llu,\"spooled\":%llu,"
               "\"dropped\":%llu,\"spool_bytes\":%llu}",
               i ? "," : "", ss[i].name, ss[i].up ? "true" : "false", (unsigned long long)ss[i].queued,
               (unsigned long long)ss[i].delivered, (unsigned long long)ss[i].retried,
               (unsigned long long)ss[i].spooled, (unsigned long long)ss[i].dropped,
               (unsigned long long)ss[i].spool_bytes);
    printf("]}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    const char *conf_path = NULL, *prefix = "ev";
    long count = 0, delivered_want = -1;
    double rate = 0, wait_s = 10;
    int opt;
    while ((opt = getopt(argc, argv, "c:n:r:p:w:d:")) != -1) {
        switch (opt) {
        case 'c': conf_path = optarg; break;
        case 'n': count = atol(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'p': prefix = optarg; break;
        case 'w': wait_s = atof(optarg); break;
        case 'd': delivered_want = atol(optarg); break;
        default:
            fprintf(stderr, "usage: secops_drive -c FILE [-n N] [-r RATE] [-p PREFIX] [-w SECONDS] [-d DELIVERED]\n");
            return 2;
        }
    }
    if (!conf_path) {
        fprintf(stderr, "secops_drive: -c FILE is required\n");
        return 2;
    }
    if (delivered_want < 0)
        delivered_want = count;
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    wf_secops_conf_t *sc = NULL;
    if (wf_conf_load_file(conf_path, &c, &err) ||
        wf_secops_conf_parse(c, wf_conf_get(wf_conf_root(c), "events"), &sc, &err)) {
        fprintf(stderr, "secops_drive: %s\n", err.msg);
        return 1;
    }
    wf_conf_free(c);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    wf_secops_t *h = NULL;
    char msg[512];
    if (wf_secops_start(sc, &h, msg, sizeof(msg)) || !h) {
        fprintf(stderr, "secops_drive: %s\n", h ? msg : "no sink configured");
        return 1;
    }
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    signal(SIGTERM, on_stop);
    signal(SIGINT, on_stop);

    wf_secev_t *ev = malloc(sizeof(*ev));
    uint64_t t0 = wf_now_ns();
    long i;
    for (i = 0; i < count && !stop_flag; i++) {
        if (rate > 0) {
            uint64_t due = t0 + (uint64_t)((double)i * 1e9 / rate);
            uint64_t now = wf_now_ns();
            if (due > now)
                usleep((useconds_t)((due - now) / 1000));
        }
        fill(ev, prefix, i);
        wf_secops_emit(h, ev);
    }
    uint64_t deadline = wf_now_ms() + (uint64_t)(wait_s * 1000);
    while (wf_now_ms() < deadline && !stop_flag) {
        wf_secops_sink_stats_t ss[16];
        size_t n = WF_MIN(wf_secops_sink_stats(h, ss, 16), (size_t)16);
        size_t ok = 0;
        for (size_t k = 0; k < n; k++)
            ok += ss[k].delivered >= (uint64_t)delivered_want;
        if (ok == n)
            break;
        usleep(20000);
    }
    print_stats(h, i);
    wf_secops_stop(h);
    wf_secops_conf_free(sc);
    free(ev);
    return 0;
}
