/*
 * Policy fast-path micro-benchmark (not a test): what the data plane pays per
 * request before inference, on one thread and on two.
 *
 *   ./build/bench/policy/bench_policy [seconds per case, default 0.5] [only cases whose name contains this]
 *
 * Cases: an indicator lookup (client address, Host with its parent domains,
 * URL, User-Agent) in a table of 100k addresses, 10k networks over 8 prefix
 * lengths, 50k domains, 20k URLs and 1k user agents, for a request that
 * matches nothing (the common case) and for one whose Host does; the ban
 * check with no ban in force and with 10k bans; a detection recorded; a route
 * looked up among 64. Prints the CPU time per operation (thread CPU time, so
 * that a machine shared with other work does not inflate it), on one thread
 * and on each of two threads working at once (contention shows there).
 */
#include "wafer/core.h"
#include "wafer/ioc.h"
#include "wafer/policy.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double secs = 0.5;

typedef struct {
    const char *name;
    long (*fn)(long iters, int tid); /* returns a checksum so the work is not optimised away */
} bench_t;

static wf_ioc_t *ioc;
static wf_bans_t *bans_empty, *bans_full, *bans_rec;
static wf_policy_t *pol;

static wf_sockaddr_t client(uint32_t i)
{
    char s[32];
    wf_sockaddr_t a;
    snprintf(s, sizeof(s), "%u.%u.%u.%u:1", 100 + (i >> 24) % 100, (i >> 16) & 255, (i >> 8) & 255, i & 255);
    wf_sockaddr_parse(s, &a);
    return a;
}

#define NCLIENTS 4096
static wf_sockaddr_t clients[NCLIENTS];

static long b_ioc_miss(long n, int tid)
{
    long hits = 0;
    wf_ioc_hit_t h;
    for (long i = 0; i < n; i++)
        hits += wf_ioc_match(ioc, &clients[i & (NCLIENTS - 1)], WF_STR("www.shop.example.com:443"),
                             WF_STR("/products/list?page=2&sort=price"),
                             WF_STR("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"), &h);
    return hits;
}

static long b_ioc_hit(long n, int tid)
{
    long hits = 0;
    wf_ioc_hit_t h;
    for (long i = 0; i < n; i++)
        hits += wf_ioc_match(ioc, &clients[i & (NCLIENTS - 1)], WF_STR("a.b.bad123.example"), WF_STR("/"),
                             WF_STR_NULL, &h);
    return hits;
}

static long b_ban_empty(long n, int tid)
{
    long b = 0;
    for (long i = 0; i < n; i++)
        b += wf_bans_check(bans_empty, &clients[i & (NCLIENTS - 1)], 1000, NULL);
    return b;
}

static long b_ban_full(long n, int tid)
{
    long b = 0;
    for (long i = 0; i < n; i++)
        b += wf_bans_check(bans_full, &clients[i & (NCLIENTS - 1)], 1000, NULL);
    return b;
}

static long b_ban_record(long n, int tid)
{
    long b = 0;
    for (long i = 0; i < n; i++)
        b += wf_bans_record(bans_rec, &clients[(i * 7 + tid * 2048) & (NCLIENTS - 1)], 1000 + i / 1000, NULL, NULL);
    return b;
}

static long b_route(long n, int tid)
{
    long x = 0;
    static const wf_str_t hosts[4] = { WF_STR("api.example.com"), WF_STR("www.example.com"), WF_STR("x.svc7.example.com"),
                                       WF_STR("other.org") };
    static const wf_str_t paths[4] = { WF_STR("/api/v2/users/7"), WF_STR("/static/app.js"), WF_STR("/svc/9/x"),
                                       WF_STR("/") };
    for (long i = 0; i < n; i++)
        x += (long)(uintptr_t)wf_policy_route(pol, hosts[i & 3], paths[(i >> 2) & 3]);
    return x;
}

typedef struct {
    const bench_t *b;
    long iters;
    int tid;
    long sum;
    double cpu; /* thread CPU seconds */
} job_t;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *run_job(void *arg)
{
    job_t *j = arg;
    double t0 = thread_cpu();
    j->sum = j->b->fn(j->iters, j->tid);
    j->cpu = thread_cpu() - t0;
    return NULL;
}

/* Runs b on nthreads threads, n iterations each; returns the mean thread CPU seconds. */
static double timed(const bench_t *b, int nthreads, long n)
{
    pthread_t th[2];
    job_t jobs[2];
    for (int i = 0; i < nthreads; i++) {
        jobs[i] = (job_t){ b, n, i, 0, 0 };
        pthread_create(&th[i], NULL, run_job, &jobs[i]);
    }
    double cpu = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        cpu += jobs[i].cpu;
    }
    return cpu / nthreads;
}

static void measure(const bench_t *b)
{
    printf("| %-36s |", b->name);
    for (int nt = 1; nt <= 2; nt++) {
        long n = 1000;
        double t;
        while ((t = timed(b, nt, n)) < secs / 4)
            n *= 2;
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            t = timed(b, nt, n);
            best = t < best ? t : best;
        }
        double ns = best * 1e9 / (double)n; /* CPU time per operation on one thread */
        printf(" %8.1f | %8.2f |", ns, 1e3 / ns);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    if (argc > 1)
        secs = atof(argv[1]);
    wf_log_set_level(WF_LOG_WARN);
    for (uint32_t i = 0; i < NCLIENTS; i++)
        clients[i] = client(i * 2654435761u);

    wf_ioc_builder_t *b = wf_ioc_builder_new(0);
    char v[128];
    const char *tag = "bench";
    for (uint32_t i = 0; i < 100000; i++) {
        snprintf(v, sizeof(v), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        wf_ioc_builder_add(b, "ip-src", wf_str_c(v), "1", &tag, 1);
    }
    for (uint32_t i = 0; i < 10000; i++) {
        int bits = 16 + (int)(i % 8);
        snprintf(v, sizeof(v), "172.%u.%u.0/%d", 16 + (i % 16), (i / 16) & 255, bits);
        wf_ioc_builder_add(b, "ip-src", wf_str_c(v), "2", &tag, 1);
    }
    for (uint32_t i = 0; i < 50000; i++) {
        snprintf(v, sizeof(v), "bad%u.example", i);
        wf_ioc_builder_add(b, "domain", wf_str_c(v), "3", &tag, 1);
    }
    for (uint32_t i = 0; i < 20000; i++) {
        snprintf(v, sizeof(v), "http://phish%u.example/login.php", i);
        wf_ioc_builder_add(b, "url", wf_str_c(v), "4", &tag, 1);
    }
    for (uint32_t i = 0; i < 1000; i++) {
        snprintf(v, sizeof(v), "EvilBot/%u.0", i);
        wf_ioc_builder_add(b, "user-agent", wf_str_c(v), "5", &tag, 1);
    }
    ioc = wf_ioc_builder_finish(b);

    wf_ban_conf_t bc = { .detections = 1000000, .window_ms = 60000, .duration_ms = 600000, .max_clients = 65536 };
    bans_empty = wf_bans_new(&bc);
    bans_full = wf_bans_new(&bc);
    bans_rec = wf_bans_new(&bc);
    for (uint32_t i = 0; i < 10000; i++) {
        wf_sockaddr_t a = client(0x9e3779b9u * (i + 7));
        wf_bans_add(bans_full, &a, 0, 1000000);
    }

    char yaml[16384];
    size_t o = (size_t)snprintf(yaml, sizeof(yaml), "policy:\n  routes:\n");
    for (int i = 0; i < 64 && o < sizeof(yaml) - 200; i++)
        o += (size_t)snprintf(yaml + o, sizeof(yaml) - o, "    - {host: \"%s\", path: /svc/%d}\n",
                              i % 3 == 0 ? "*.example.com" : i % 3 == 1 ? "api.example.com" : "www.example.com", i);
    wf_conf_t *c;
    wf_conf_err_t err;
    if (wf_conf_load_string("b.yaml", yaml, o, &c, &err) || wf_policy_parse(c, wf_conf_get(wf_conf_root(c), "policy"), &pol, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    wf_conf_free(c);

    static const bench_t benches[] = {
        { "indicator lookup, no match", b_ioc_miss },
        { "indicator lookup, parent domain hit", b_ioc_hit },
        { "ban check, no ban in force", b_ban_empty },
        { "ban check, 10k bans", b_ban_full },
        { "detection recorded", b_ban_record },
        { "route lookup, 64 routes", b_route },
    };
    printf("| case | CPU ns/op, 1 thread | Mops/s per core | CPU ns/op, 2 threads | Mops/s per core |\n");
    printf("|---|---|---|---|---|\n");
    for (size_t i = 0; i < WF_ARRAY_LEN(benches); i++)
        if (argc < 3 || strstr(benches[i].name, argv[2]))
            measure(&benches[i]);
    wf_ioc_free(ioc);
    wf_bans_free(bans_empty);
    wf_bans_free(bans_full);
    wf_bans_free(bans_rec);
    wf_policy_free(pol);
    return 0;
}
