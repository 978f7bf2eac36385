/* wafer misp: run the MISP import of a configuration now, on this thread, and
 * look values up in the table it built: for operators checking their feeds
 * and API key, and for tests.
 *
 *   wafer misp -c wafer.yaml [--rounds N] [--interval MS] [--ip ADDR] [--host HOST]
 *              [--url TARGET] [--ua UA] [--sightings]
 *
 * Each round fetches every source (the `misp:` section) and prints one JSON
 * line: {"round":N,"failed":F,"indicators":{...},"events":E,"tables":T}.
 * Then each lookup prints {"lookup":...,"hit":true|false,...}; --url is
 * looked up with the --host given before it. --sightings reports the hits
 * to the API's /sightings/add and prints {"sightings_sent":N}.
 * Exit 0 when every round succeeded, 1 when some source failed, 2 on error. */
#include "commands.h"
#include "wafer/conf.h"
#include "wafer/core.h"
#include "wafer/misp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp, "usage: wafer misp -c wafer.yaml [--rounds N] [--interval MS] [--ip ADDR] [--host HOST] "
                "[--url TARGET] [--ua UA] [--sightings]\n");
}

static void put_str(const char *s)
{
    wf_json_str_write(stdout, s, strlen(s), true);
}

static void print_hit(const char *kind, const char *what, bool m, const wf_ioc_hit_t *h)
{
    printf("{\"lookup\":\"%s\",\"value\":", kind);
    put_str(what);
    printf(",\"hit\":%s", m ? "true" : "false");
    if (m) {
        printf(",\"kind\":\"%s\",\"indicator\":", wf_ioc_kind_name(h->kind));
        put_str(h->value);
        printf(",\"type\":");
        put_str(h->type);
        printf(",\"events\":[");
        for (uint32_t i = 0; i < h->nevents; i++) {
            if (i)
                putchar(',');
            put_str(h->events[i]);
        }
        printf("],\"tags\":");
        put_str(h->tags);
    }
    printf("}\n");
}

int wf_cmd_misp(int argc, char **argv)
{
    const char *conf_path = NULL;
    long rounds = 1, interval = 0;
    bool sightings = false;
    int i;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            conf_path = argv[++i];
        else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
            rounds = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--interval") && i + 1 < argc)
            interval = strtol(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--sightings"))
            sightings = true;
        else if ((!strcmp(argv[i], "--ip") || !strcmp(argv[i], "--host") || !strcmp(argv[i], "--url") ||
                  !strcmp(argv[i], "--ua")) && i + 1 < argc)
            i++; /* lookups run after the import */
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!conf_path || rounds < 1 || rounds > 1000 || interval < 0) {
        usage(stderr);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    wf_conf_t *c = NULL;
    wf_conf_err_t cerr;
    wf_misp_conf_t *mc = NULL;
    if (wf_conf_load_file(conf_path, &c, &cerr) != 0 ||
        wf_misp_conf_parse(c, wf_conf_get(wf_conf_root(c), "misp"), &mc, &cerr) != 0) {
        fprintf(stderr, "wafer: %s\n", cerr.msg);
        wf_conf_free(c);
        return 2;
    }
    wf_conf_free(c);
    char err[256];
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m = NULL;
    if (!store || wf_misp_new(mc, store, &m, err, sizeof(err)) != 0) {
        fprintf(stderr, "wafer: %s\n", store ? err : "out of memory");
        wf_misp_conf_free(mc);
        wf_ioc_store_free(store);
        return 2;
    }
    wf_misp_conf_free(mc);
    int status = 0;
    for (long r = 1; r <= rounds; r++) {
        if (r > 1 && interval)
            usleep((useconds_t)interval * 1000);
        int failed = wf_misp_import(m, true);
        if (failed)
            status = 1;
        wf_ioc_store_stats_t st;
        wf_misp_stats_t ms;
        wf_ioc_store_stats(store, &st);
        wf_misp_stats(m, &ms);
        printf("{\"round\":%ld,\"failed\":%d,\"indicators\":{", r, failed);
        for (int k = 0; k < WF_IOC__COUNT; k++)
            printf("%s\"%s\":%zu", k ? "," : "", wf_ioc_kind_name((wf_ioc_kind_t)k), st.loaded.per_kind[k]);
        printf("},\"events\":%zu,\"tables\":%llu}\n", st.loaded.events, (unsigned long long)ms.tables);
    }
    const char *host = "";
    for (i = 1; i < argc; i++) {
        wf_ioc_hit_t h;
        bool hit;
        const char *opt = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(opt, "-c") || !strcmp(opt, "--rounds") || !strcmp(opt, "--interval")) {
            i++;
            continue;
        }
        if (!v || opt[0] != '-' || !strcmp(opt, "--sightings"))
            continue;
        i++;
        if (!strcmp(opt, "--ip")) {
            char buf[80];
            wf_sockaddr_t sa;
            snprintf(buf, sizeof(buf), strchr(v, ':') ? "[%s]:0" : "%s:0", v);
            if (wf_sockaddr_parse(buf, &sa) != 0) {
                fprintf(stderr, "wafer: --ip %s: not an address\n", v);
                status = 2;
                continue;
            }
            hit = wf_ioc_store_match(store, &sa, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, &h);
        } else if (!strcmp(opt, "--host")) {
            host = v;
            hit = wf_ioc_store_match(store, NULL, wf_str_c(v), WF_STR_NULL, WF_STR_NULL, &h);
        } else if (!strcmp(opt, "--url")) {
            /* as an absolute-form target, so that only URL indicators are looked up, not the host's domains */
            char abs[4200];
            int n = snprintf(abs, sizeof(abs), "http://%s%s", host, v);
            hit = n > 0 && (size_t)n < sizeof(abs) &&
                  wf_ioc_store_match(store, NULL, WF_STR_NULL, wf_str(abs, (size_t)n), WF_STR_NULL, &h);
        } else {
            hit = wf_ioc_store_match(store, NULL, WF_STR_NULL, WF_STR_NULL, wf_str_c(v), &h);
        }
        print_hit(opt + 2, v, hit, &h);
        if (hit && sightings)
            wf_misp_sighting(m, &h);
    }
    if (sightings) {
        int n = wf_misp_sightings_flush(m);
        printf("{\"sightings_sent\":%d}\n", n);
        if (n < 0)
            status = 1;
    }
    wf_misp_free(m);
    wf_ioc_store_free(store);
    return status;
}
