/* Rate limits: token buckets (time injected), the bounded shared table,
 * connection counts per client address, and the configuration. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/ratelimit.h"

#include <pthread.h>

TEST(token_bucket_burst_rate_and_retry_wait)
{
    wf_ratelimit_t *t = wf_ratelimit_new(1024);
    wf_rate_t r = { .rate = 10, .burst = 5 };
    wf_str_t k = WF_STR("client-a");
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 1000), 0);
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 1000), 100); /* 10/s: a token every 100ms */
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 1050), 50);
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 1100), 0);
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 1100), 100);
    /* other keys and other kinds have their own buckets */
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, WF_STR("client-b"), &r, 1100), 0);
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_IDENTITY, k, &r, 1100), 0);
    /* a long idle time refills to the burst, not beyond */
    int ok = 0;
    for (int i = 0; i < 20; i++)
        ok += wf_ratelimit_take(t, WF_RL_CLIENT, k, &r, 100000) == 0;
    CHECK_EQ_INT(ok, 5);
    /* rate 0 never limits */
    wf_rate_t off = { 0, 0 };
    for (int i = 0; i < 100; i++)
        CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_ROUTE, k, &off, 0), 0);
    CHECK_EQ_INT(wf_ratelimit_retry_after(100), 1);
    CHECK_EQ_INT(wf_ratelimit_retry_after(1000), 1);
    CHECK_EQ_INT(wf_ratelimit_retry_after(1001), 2);
    /* slow rates: the wait is long, and Retry-After says so */
    wf_rate_t slow = { .rate = 1.0 / 60, .burst = 1 };
    CHECK_EQ_INT(wf_ratelimit_take(t, WF_RL_CLIENT, WF_STR("slow"), &slow, 0), 0);
    CHECK_EQ_INT(wf_ratelimit_retry_after(wf_ratelimit_take(t, WF_RL_CLIENT, WF_STR("slow"), &slow, 0)), 60);
    wf_ratelimit_stats_t st;
    wf_ratelimit_stats(t, &st);
    CHECK_EQ_INT(st.limited[WF_RL_CLIENT], 19);
    wf_ratelimit_free(t);
}

TEST(table_is_bounded_and_counts_evictions)
{
    wf_ratelimit_t *t = wf_ratelimit_new(1024);
    wf_rate_t r = { .rate = 1, .burst = 1 };
    for (int i = 0; i < 100000; i++) {
        char key[32];
        int n = snprintf(key, sizeof(key), "k%d", i);
        wf_ratelimit_take(t, WF_RL_CLIENT, wf_str(key, (size_t)n), &r, (uint64_t)i);
    }
    wf_ratelimit_stats_t st;
    wf_ratelimit_stats(t, &st);
    CHECK_EQ_INT(st.capacity, 1024);
    CHECK(st.entries <= st.capacity);
    CHECK(st.entries > st.capacity * 9 / 10);
    CHECK_EQ_INT(st.entries + st.evicted, 100000);
    /* the most recent key is still known: a second request within the second is refused */
    CHECK(wf_ratelimit_take(t, WF_RL_CLIENT, WF_STR("k99999"), &r, 99999) > 0);
    wf_ratelimit_free(t);
}

static wf_ratelimit_t *shared;
static int allowed[4];

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    wf_rate_t r = { .rate = 0.001, .burst = 1000 };
    for (int i = 0; i < 20000; i++)
        allowed[id] += wf_ratelimit_take(shared, WF_RL_ROUTE, WF_STR("api"), &r, 5) == 0;
    return NULL;
}

TEST(buckets_are_shared_by_threads)
{
    shared = wf_ratelimit_new(4096);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    CHECK_EQ_INT(allowed[0] + allowed[1] + allowed[2] + allowed[3], 1000);
    wf_ratelimit_free(shared);
}

TEST(connection_limits_per_client_address)
{
    wf_ratelimit_t *t = wf_ratelimit_new(1024);
    wf_sockaddr_t a, a2, b, v6;
    wf_sockaddr_parse("192.0.2.1:1000", &a);
    wf_sockaddr_parse("192.0.2.1:2000", &a2); /* same address, another port: the same client */
    wf_sockaddr_parse("192.0.2.2:1000", &b);
    wf_sockaddr_parse("[2001:db8::1]:1000", &v6);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &a, 2, 0), 1);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &a2, 2, 0), 1);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &a, 2, 0), 0);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &b, 2, 0), 1);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &v6, 2, 0), 1);
    CHECK_EQ_INT(wf_connlimit_count(t, &a), 2);
    wf_connlimit_release(t, &a2);
    CHECK_EQ_INT(wf_connlimit_count(t, &a), 1);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &a, 2, 0), 1);
    CHECK_EQ_INT(wf_connlimit_acquire(t, &a, 0, 0), 2); /* no limit: nothing counted */
    wf_ratelimit_stats_t st;
    wf_ratelimit_stats(t, &st);
    CHECK_EQ_INT(st.conn_refused, 1);
    CHECK_EQ_INT(st.entries, 3);
    wf_connlimit_release(t, &a);
    wf_connlimit_release(t, &a);
    wf_connlimit_release(t, &b);
    wf_connlimit_release(t, &v6);
    wf_connlimit_release(t, &v6); /* one too many: harmless */
    wf_ratelimit_stats(t, &st);
    CHECK_EQ_INT(st.entries, 0);
    CHECK_EQ_INT(wf_connlimit_count(t, &a), 0);

    /* live counts are never evicted: a table full of them lets newcomers in uncounted */
    wf_ratelimit_t *small = wf_ratelimit_new(1024);
    int counted = 0, untracked = 0;
    for (int i = 0; i < 5000; i++) {
        wf_sockaddr_t x;
        char s[64];
        snprintf(s, sizeof(s), "10.%d.%d.1:80", i / 256, i % 256);
        wf_sockaddr_parse(s, &x);
        int rc = wf_connlimit_acquire(small, &x, 1, (uint64_t)i);
        counted += rc == 1;
        untracked += rc == 2;
    }
    CHECK(counted <= 1024 && counted > 900);
    CHECK_EQ_INT(counted + untracked, 5000);
    wf_ratelimit_free(small);
    wf_ratelimit_free(t);
}

static int parse(const char *yaml, wf_ratelimit_conf_t *rc, wf_conf_err_t *err)
{
    wf_conf_t *c = NULL;
    int r = wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, err);
    if (r)
        return r;
    wf_ratelimit_conf_defaults(rc);
    r = wf_ratelimit_conf_parse(c, wf_conf_get(wf_conf_root(c), "rate_limits"), rc, err);
    wf_conf_free(c);
    return r;
}

TEST(configuration)
{
    wf_ratelimit_conf_t rc;
    wf_conf_err_t err;
    CHECK_EQ_INT(parse("rate_limits: {client: {rate: 10/s, burst: 20}, identity: {rate: 600/m},"
                       " route: {rate: 7200/h, burst: 3}, connections_per_client: 8, max_entries: 4096}\n",
                       &rc, &err), 0);
    CHECK(rc.client.rate == 10 && rc.client.burst == 20);
    CHECK(rc.identity.rate == 10 && rc.identity.burst == 10); /* burst defaults to a second's worth */
    CHECK(rc.route.rate == 2 && rc.route.burst == 3);
    CHECK_EQ_INT(rc.conn_per_client, 8);
    CHECK_EQ_INT(rc.max_entries, 4096);
    CHECK_EQ_INT(parse("rate_limits: {client: {rate: 0.5}}\n", &rc, &err), 0);
    CHECK(rc.client.rate == 0.5 && rc.client.burst == 1);
    CHECK_EQ_INT(parse("other: 1\n", &rc, &err), 0);
    CHECK(rc.client.rate == 0 && rc.conn_per_client == 0);
    static const char *const bad[] = {
        "rate_limits: {client: {rate: fast}}\n",     "rate_limits: {client: {rate: 10/d}}\n",
        "rate_limits: {client: {rate: -1}}\n",       "rate_limits: {client: {burst: 3}}\n",
        "rate_limits: {client: {rate: 1, burst: 0}}\n", "rate_limits: {clients: {rate: 1}}\n",
        "rate_limits: {connections_per_client: -2}\n", "rate_limits: {client: 5}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = parse(bad[i], &rc, &err);
        CHECK(r != 0);
        if (!r)
            fprintf(stderr, "accepted: %s", bad[i]);
    }
}

TEST(min_rate_deadline)
{
    /* 500 B/s after 5s of grace: nothing received yet, cut at 5s */
    CHECK_EQ_INT(wf_min_rate_due(1000, 0, 0, 500, 5000), 6000);
    /* 1000 bytes buy 2s more */
    CHECK_EQ_INT(wf_min_rate_due(1000, 0, 1000, 500, 5000), 8000);
    /* earlier waits of the exchange count: 3s already waited leaves 4s of 7s */
    CHECK_EQ_INT(wf_min_rate_due(20000, 3000, 1000, 500, 5000), 24000);
    /* waited past the credit: due at once */
    CHECK_EQ_INT(wf_min_rate_due(20000, 9000, 1000, 500, 5000), 20000);
    /* huge byte counts do not overflow */
    CHECK(wf_min_rate_due(1, 0, UINT64_MAX - 1, 1, 0) > (uint64_t)1 << 60);
}

TEST_MAIN()
