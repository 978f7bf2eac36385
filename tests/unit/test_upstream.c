/* Upstream pools: balancers (distribution, failover, consistent hashing),
 * passive ejection, health checks, and the pool configuration. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/proxy.h"
#include "wafer/upstream.h"

#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

/* A pool of n members "127.0.0.1:(9000+i)" with the given weights. */
static void make_conf(wf_upstream_pool_conf_t *pc, size_t n, const uint32_t *w, wf_balance_t bal)
{
    memset(pc, 0, sizeof(*pc));
    pc->name = strdup("t");
    pc->members = calloc(n, sizeof(*pc->members));
    pc->nmembers = n;
    pc->balance = bal;
    pc->max_fails = 1;
    pc->fail_timeout_ms = 10000;
    pc->retries = -1;
    for (size_t i = 0; i < n; i++) {
        char a[64];
        snprintf(a, sizeof(a), "127.0.0.1:%zu", 9000 + i);
        pc->members[i].address = strdup(a);
        wf_sockaddr_parse(a, &pc->members[i].addr);
        pc->members[i].weight = w ? w[i] : 1;
    }
}

static void free_conf(wf_upstream_pool_conf_t *pc)
{
    for (size_t i = 0; i < pc->nmembers; i++)
        free(pc->members[i].address);
    free(pc->members);
    free(pc->name);
}

static const wf_upstream_tried_t none;

TEST(round_robin_is_smooth_and_weighted)
{
    uint32_t w[] = { 5, 1, 1 };
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 3, w, WF_BALANCE_ROUND_ROBIN);
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    /* nginx's example: weights 5,1,1 give a a b a c a a, not a a a a a b c */
    char seq[8] = { 0 };
    for (int i = 0; i < 7; i++)
        seq[i] = (char)('a' + wf_upstream_pick(&p, 0, &none, 0)->index);
    CHECK_EQ_STR(seq, "aabacaa");
    int count[3] = { 0 };
    for (int i = 0; i < 7000; i++)
        count[wf_upstream_pick(&p, 0, &none, 0)->index]++;
    CHECK_EQ_INT(count[0], 5000);
    CHECK_EQ_INT(count[1], 1000);
    CHECK_EQ_INT(count[2], 1000);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

TEST(round_robin_skips_down_ejected_and_tried_members_and_uses_backups_last)
{
    uint32_t w[] = { 1, 1, 1 };
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 3, w, WF_BALANCE_ROUND_ROBIN);
    pc.members[2].backup = true;
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    for (int i = 0; i < 10; i++)
        CHECK(wf_upstream_pick(&p, 0, &none, 0)->index != 2); /* the backup waits */
    atomic_store(&p.m[0].healthy, false);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(wf_upstream_pick(&p, 0, &none, 0)->index, 1);
    atomic_store(&p.m[1].ejected_until, 5000);
    CHECK_EQ_INT(wf_upstream_pick(&p, 0, &none, 4999)->index, 2); /* only the backup is left */
    CHECK_EQ_INT(wf_upstream_pick(&p, 0, &none, 5000)->index, 1); /* the ejection is over */
    wf_upstream_tried_t t = none;
    wf_upstream_tried_set(&t, 1);
    CHECK_EQ_INT(wf_upstream_pick(&p, 0, &t, 5000)->index, 2);
    wf_upstream_tried_set(&t, 2);
    CHECK(wf_upstream_pick(&p, 0, &t, 5000) == NULL);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

TEST(least_conn_picks_fewest_active_per_weight_and_rotates_ties)
{
    uint32_t w[] = { 1, 1, 2 };
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 3, w, WF_BALANCE_LEAST_CONN);
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    atomic_store(&p.m[0].active, 3);
    atomic_store(&p.m[1].active, 1);
    atomic_store(&p.m[2].active, 4); /* 4/2 = 2 per weight */
    CHECK_EQ_INT(wf_upstream_pick(&p, 0, &none, 0)->index, 1);
    atomic_store(&p.m[1].active, 3);
    CHECK_EQ_INT(wf_upstream_pick(&p, 0, &none, 0)->index, 2);
    /* an idle pool spreads: every member gets picked */
    for (int i = 0; i < 3; i++)
        atomic_store(&p.m[i].active, 0);
    int seen[3] = { 0 };
    for (int i = 0; i < 30; i++)
        seen[wf_upstream_pick(&p, 0, &none, 0)->index]++;
    CHECK(seen[0] > 0 && seen[1] > 0 && seen[2] > 0);
    /* attach/detach drive the counts: with picks attached, load evens out by weight */
    for (int i = 0; i < 400; i++)
        wf_upstream_attach(wf_upstream_pick(&p, 0, &none, 0));
    CHECK_EQ_INT(atomic_load(&p.m[0].active), 100);
    CHECK_EQ_INT(atomic_load(&p.m[1].active), 100);
    CHECK_EQ_INT(atomic_load(&p.m[2].active), 200);
    wf_upstream_detach(&p.m[0]);
    CHECK_EQ_INT(atomic_load(&p.m[0].active), 99);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

#define NKEYS 20000

TEST(consistent_hash_spreads_keys_and_moves_only_a_removed_members_keys)
{
    enum { N = 5 };
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, N, NULL, WF_BALANCE_HASH);
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    static uint32_t before[NKEYS];
    int count[N] = { 0 };
    for (int k = 0; k < NKEYS; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "user-%d", k);
        uint64_t h = wf_hash64(key, (size_t)n, 0x68617368ull);
        before[k] = wf_upstream_pick(&p, h, &none, 0)->index;
        count[before[k]]++;
        CHECK_EQ_INT(wf_upstream_pick(&p, h, &none, 0)->index, before[k]); /* stable */
    }
    for (int i = 0; i < N; i++)
        CHECK(count[i] > NKEYS / N * 7 / 10 && count[i] < NKEYS / N * 13 / 10);

    /* member 2 goes down: its keys move, nobody else's */
    atomic_store(&p.m[2].healthy, false);
    int moved = 0, wrong = 0;
    for (int k = 0; k < NKEYS; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "user-%d", k);
        uint32_t now = wf_upstream_pick(&p, wf_hash64(key, (size_t)n, 0x68617368ull), &none, 0)->index;
        if (now != before[k]) {
            moved++;
            wrong += before[k] != 2;
        }
    }
    CHECK_EQ_INT(wrong, 0);
    CHECK_EQ_INT(moved, count[2]);
    CHECK(moved > NKEYS / N / 2 && moved < NKEYS * 2 / N); /* about 1/N */

    /* removed from the configuration: a ring without it maps the others' keys the same */
    wf_upstream_pool_conf_t pc2;
    make_conf(&pc2, N, NULL, WF_BALANCE_HASH);
    free(pc2.members[2].address);
    memmove(&pc2.members[2], &pc2.members[3], sizeof(pc2.members[0]) * (N - 3));
    pc2.nmembers = N - 1;
    wf_upstream_pool_t p2;
    CHECK_EQ_INT(wf_upstream_pool_init(&p2, &pc2), 0);
    int moved2 = 0;
    for (int k = 0; k < NKEYS; k++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "user-%d", k);
        const char *a = wf_upstream_pick(&p2, wf_hash64(key, (size_t)n, 0x68617368ull), &none, 0)->conf->address;
        if (strcmp(a, pc.members[before[k]].address))
            moved2++;
    }
    CHECK_EQ_INT(moved2, count[2]);
    wf_upstream_pool_free(&p2);
    free_conf(&pc2);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

TEST(hash_weights_share_keys)
{
    uint32_t w[] = { 1, 3 };
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 2, w, WF_BALANCE_HASH);
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    int count[2] = { 0 };
    for (int k = 0; k < NKEYS; k++)
        count[wf_upstream_pick(&p, wf_hash64(&k, sizeof(k), 1), &none, 0)->index]++;
    CHECK(count[1] > 2 * count[0] && count[1] < 4 * count[0]);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

TEST(passive_ejection_after_max_fails_within_fail_timeout)
{
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 2, NULL, WF_BALANCE_ROUND_ROBIN);
    pc.max_fails = 2;
    pc.fail_timeout_ms = 1000;
    wf_upstream_pool_t p;
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    wf_upstream_member_t *m = &p.m[0];
    CHECK(!wf_upstream_failed(m, 100));
    CHECK(!wf_upstream_failed(m, 1200)); /* the first fell out of the window */
    CHECK(wf_upstream_failed(m, 1300));
    CHECK(!wf_upstream_member_up(m, 1301));
    CHECK(wf_upstream_member_up(m, 2300));
    CHECK_EQ_INT(atomic_load(&m->ejections), 1);
    CHECK_EQ_INT(atomic_load(&m->failures), 3);
    wf_upstream_pool_free(&p);
    free_conf(&pc);

    /* a pool of one is never emptied by errors */
    make_conf(&pc, 1, NULL, WF_BALANCE_ROUND_ROBIN);
    CHECK_EQ_INT(wf_upstream_pool_init(&p, &pc), 0);
    for (int i = 0; i < 5; i++)
        CHECK(!wf_upstream_failed(&p.m[0], 10));
    CHECK(wf_upstream_member_up(&p.m[0], 11));
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

/* ---- health checks against a tiny server ---- */

static int srv_fd;
static const char *srv_reply;

static void *serve_one(void *arg)
{
    int c = accept(srv_fd, NULL, NULL);
    if (c >= 0) {
        char buf[1024];
        ssize_t n = read(c, buf, sizeof(buf));
        (void)n;
        if (srv_reply)
            n = write(c, srv_reply, strlen(srv_reply));
        close(c);
    }
    return NULL;
}

static int check_with(const char *reply, int expect_status)
{
    srv_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    bind(srv_fd, (struct sockaddr *)&a, sizeof(a));
    listen(srv_fd, 4);
    getsockname(srv_fd, (struct sockaddr *)&a, &len);
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 1, NULL, WF_BALANCE_ROUND_ROBIN);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(a.sin_port));
    wf_sockaddr_parse(addr, &pc.members[0].addr);
    pc.health.enabled = true;
    pc.health.timeout_ms = 5000; /* no case here waits for it: a slow machine must not fail them */
    pc.health.expect_status = expect_status;
    wf_upstream_pool_t p;
    wf_upstream_pool_init(&p, &pc);
    srv_reply = reply;
    pthread_t t;
    pthread_create(&t, NULL, serve_one, NULL);
    int rc = wf_upstream_check_once(&p, &p.m[0], NULL);
    pthread_join(t, NULL);
    close(srv_fd);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
    return rc;
}

TEST(health_check_reads_the_status)
{
    CHECK_EQ_INT(check_with("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0), 0);
    CHECK_EQ_INT(check_with("HTTP/1.1 302 Found\r\n\r\n", 0), 0);
    CHECK(check_with("HTTP/1.1 503 Unavailable\r\n\r\n", 0) < 0);
    CHECK(check_with("HTTP/1.1 200 OK\r\n\r\n", 204) < 0);
    CHECK_EQ_INT(check_with("HTTP/1.0 204 No Content\r\n\r\n", 204), 0);
    CHECK(check_with("garbage, not http at all\r\n", 0) < 0);
    CHECK(check_with(NULL, 0) < 0); /* closed without a word */
}

TEST(health_check_of_a_closed_port_fails)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(a);
    bind(fd, (struct sockaddr *)&a, sizeof(a));
    getsockname(fd, (struct sockaddr *)&a, &len);
    wf_upstream_pool_conf_t pc;
    make_conf(&pc, 1, NULL, WF_BALANCE_ROUND_ROBIN);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%u", ntohs(a.sin_port));
    wf_sockaddr_parse(addr, &pc.members[0].addr);
    pc.health.timeout_ms = 5000; /* no case here waits for it: a slow machine must not fail them */
    wf_upstream_pool_t p;
    wf_upstream_pool_init(&p, &pc);
    CHECK(wf_upstream_check_once(&p, &p.m[0], NULL) < 0);
    close(fd);
    wf_upstream_pool_free(&p);
    free_conf(&pc);
}

/* ---- configuration ---- */

static int load(const char *yaml, wf_server_conf_t **out, wf_conf_err_t *err)
{
    wf_conf_t *c = NULL;
    int rc = wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, err);
    if (rc)
        return rc;
    wf_server_conf_t *sc = malloc(sizeof(*sc));
    wf_server_conf_defaults(sc);
    rc = wf_server_conf_parse(c, sc, err);
    wf_conf_free(c);
    if (rc) {
        wf_server_conf_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}

TEST(pools_configuration)
{
    wf_server_conf_t *sc = NULL;
    wf_conf_err_t err;
    const char *ok = "listen: [{address: 127.0.0.1:8080}]\n"
                     "upstream:\n"
                     "  servers: [{address: 127.0.0.1:9001, weight: 3}, {address: 127.0.0.1:9002, backup: true}]\n"
                     "  balance: least_conn\n"
                     "  passive: {max_fails: 3, fail_timeout: 5s}\n"
                     "upstreams:\n"
                     "  app:\n"
                     "    servers: [{address: 127.0.0.1:9101}, {address: 127.0.0.1:9102}]\n"
                     "    balance: hash\n"
                     "    hash_key: header:X-User\n"
                     "    retries: 1\n"
                     "    health_check: {path: /healthz, interval: 1s, timeout: 500ms, expect_status: 204, rise: 1, fall: 2}\n";
    int rc = load(ok, &sc, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(sc->npools, 2);
    CHECK_EQ_STR(sc->pools[0].name, "default");
    CHECK_EQ_INT(sc->pools[0].nmembers, 2);
    CHECK_EQ_INT(sc->pools[0].members[0].weight, 3);
    CHECK(sc->pools[0].members[1].backup);
    CHECK_EQ_INT(sc->pools[0].balance, WF_BALANCE_LEAST_CONN);
    CHECK_EQ_INT(sc->pools[0].max_fails, 3);
    CHECK_EQ_INT(sc->pools[0].fail_timeout_ms, 5000);
    CHECK_EQ_INT(sc->pools[0].retries, -1);
    CHECK(!sc->pools[0].health.enabled);
    CHECK_EQ_STR(sc->pools[1].name, "app");
    CHECK_EQ_INT(sc->pools[1].balance, WF_BALANCE_HASH);
    CHECK_EQ_STR(sc->pools[1].hash_header, "X-User");
    CHECK_EQ_INT(sc->pools[1].retries, 1);
    CHECK(sc->pools[1].health.enabled);
    CHECK_EQ_STR(sc->pools[1].health.path, "/healthz");
    CHECK_EQ_INT(sc->pools[1].health.interval_ms, 1000);
    CHECK_EQ_INT(sc->pools[1].health.expect_status, 204);
    CHECK_EQ_INT(sc->pools[1].health.fall, 2);
    CHECK_EQ_INT(wf_upstream_pool_index(sc->pools, sc->npools, "app"), 1);
    CHECK_EQ_INT(wf_upstream_pool_index(sc->pools, sc->npools, "nope"), -1);
    wf_upstreams_t *u = NULL;
    CHECK_EQ_INT(wf_upstreams_new(sc->pools, sc->npools, NULL, &u), 0);
    atomic_store(&u->pools[1].m[1].healthy, false);
    atomic_store(&u->pools[1].m[1].requests, 7);
    wf_upstreams_t *u2 = NULL; /* a reload keeps what is known of members that stay */
    CHECK_EQ_INT(wf_upstreams_new(sc->pools, sc->npools, u, &u2), 0);
    CHECK(!atomic_load(&u2->pools[1].m[1].healthy));
    CHECK_EQ_INT(atomic_load(&u2->pools[1].m[1].requests), 7);
    CHECK(atomic_load(&u2->pools[1].m[0].healthy));
    wf_upstreams_free(u2);
    wf_upstreams_free(u);
    wf_server_conf_free(sc);

    static const struct {
        const char *yaml, *msg;
    } bad[] = {
        { "upstream: {servers: [{address: 127.0.0.1:1}], balance: random}\n", "balance" },
        { "upstream: {servers: [{address: 127.0.0.1:1, weight: 0}]}\n", "weight" },
        { "upstream: {servers: [{address: 127.0.0.1:1, backup: true}]}\n", "backup" },
        { "upstream: {servers: [{address: 127.0.0.1:1}], hash_key: client_ip}\n", "hash_key" },
        { "upstream: {servers: [{address: 127.0.0.1:1}], balance: hash, hash_key: cookie}\n", "hash_key" },
        { "upstream: {servers: [{address: 127.0.0.1:1}]}\nupstreams: {default: {servers: [{address: 127.0.0.1:2}]}}\n",
          "twice" },
        { "upstream: {servers: [{address: 127.0.0.1:1}]}\nupstreams: {app: {servers: []}}\n", "servers" },
        { "upstream: {servers: [{address: 127.0.0.1:1}]}\nupstreams: {app: {servers: [{address: x}]}}\n", "address" },
        { "upstream: {servers: [{address: 127.0.0.1:1}], health_check: {path: nope}}\n", "path" },
        { "upstream: {servers: [{address: 127.0.0.1:1}], health_check: {rise: 0}}\n", "rise" },
        { "upstream: {servers: [{address: 127.0.0.1:1}], passive: {max_fails: -1}}\n", "max_fails" },
        { "upstream: {servers: [{address: 127.0.0.1:1}]}\nupstreams: {app: {servers: [{address: 127.0.0.1:2}], keepalive: 3}}\n",
          "keepalive" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char y[1024];
        snprintf(y, sizeof(y), "listen: [{address: 127.0.0.1:8080}]\n%s", bad[i].yaml);
        sc = NULL;
        rc = load(y, &sc, &err);
        CHECK(rc != 0);
        if (rc == 0) {
            fprintf(stderr, "accepted: %s", bad[i].yaml);
            wf_server_conf_free(sc);
        } else if (!strstr(err.msg, bad[i].msg)) {
            fprintf(stderr, "message for %s lacks \"%s\": %s\n", bad[i].yaml, bad[i].msg, err.msg);
            CHECK(0);
        }
    }
}

TEST(metrics_per_member_and_pool)
{
    wf_upstream_pool_conf_t pc[2];
    make_conf(&pc[0], 2, NULL, WF_BALANCE_ROUND_ROBIN);
    make_conf(&pc[1], 1, NULL, WF_BALANCE_LEAST_CONN);
    free(pc[1].name);
    pc[1].name = strdup("app");
    wf_upstreams_t *u = NULL;
    CHECK_EQ_INT(wf_upstreams_new(pc, 2, NULL, &u), 0);
    CHECK_EQ_INT(wf_upstreams_start(u), 0); /* no health checks: no thread, only the collector */
    CHECK(!u->thread_started);
    wf_upstream_attach(&u->pools[0].m[1]);
    wf_upstream_failed(&u->pools[0].m[1], 1);
    atomic_store(&u->pools[1].unavailable, 4);
    wf_buf_t b;
    wf_buf_init(&b, 4096, 1 << 20);
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    char *text = strndup(wf_buf_rptr(&b), wf_buf_len(&b));
    CHECK(strstr(text, "wafer_upstream_requests_total{pool=\"t\",member=\"127.0.0.1:9001\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_upstream_failures_total{pool=\"t\",member=\"127.0.0.1:9001\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_upstream_ejections_total{pool=\"t\",member=\"127.0.0.1:9001\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_upstream_up{pool=\"t\",member=\"127.0.0.1:9000\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_upstream_active_requests{pool=\"t\",member=\"127.0.0.1:9001\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_upstream_unavailable_total{pool=\"app\"} 4\n") != NULL);
    free(text);
    /* retired: a newer generation reports from now on */
    wf_upstreams_retire(u);
    b.start = b.end = 0;
    CHECK_EQ_INT(wf_metrics_render(&b), 0);
    text = strndup(wf_buf_rptr(&b), wf_buf_len(&b));
    CHECK(strstr(text, "wafer_upstream_requests_total") == NULL);
    free(text);
    wf_buf_free(&b);
    wf_upstreams_free(u);
    free_conf(&pc[0]);
    free_conf(&pc[1]);
}

TEST_MAIN()
