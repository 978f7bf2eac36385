/* Indicator tables: building, matching each kind, merging, limits, and the store's swaps under readers. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/ioc.h"

#include <pthread.h>

static wf_sockaddr_t addr(const char *s)
{
    wf_sockaddr_t a;
    if (wf_sockaddr_parse(s, &a) != 0)
        abort();
    return a;
}

static int add(wf_ioc_builder_t *b, const char *type, const char *value, const char *event, const char *tag)
{
    const char *tags[1] = { tag };
    return wf_ioc_builder_add(b, type, wf_str_c(value), event, tags, tag ? 1 : 0);
}

static bool m_ip(const wf_ioc_t *t, const char *a, wf_ioc_hit_t *h)
{
    wf_sockaddr_t sa = addr(a);
    return wf_ioc_match(t, &sa, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, h);
}

static bool m_host(const wf_ioc_t *t, const char *host, const char *url, wf_ioc_hit_t *h)
{
    return wf_ioc_match(t, NULL, wf_str_c(host), wf_str_c(url), WF_STR_NULL, h);
}

TEST(addresses)
{
    wf_ioc_builder_t *b = wf_ioc_builder_new(0);
    CHECK_EQ_INT(add(b, "ip-src", "192.0.2.0/24", "10", "tlp:white"), 1);
    CHECK_EQ_INT(add(b, "ip-dst", "192.0.2.7", "11", "apt"), 1);
    CHECK_EQ_INT(add(b, "ip-dst|port", "198.51.100.1|8080", "12", NULL), 1);
    CHECK_EQ_INT(add(b, "ip-src", "2001:db8::/32", "13", NULL), 1);
    CHECK_EQ_INT(add(b, "ip-src", "2001:db8:1::1", "14", NULL), 1);
    CHECK_EQ_INT(add(b, "ip-src", " 203.0.113.5 ", "15", NULL), 1);
    CHECK_EQ_INT(add(b, "ip-src", "not an ip", "16", NULL), -EINVAL);
    CHECK_EQ_INT(add(b, "ip-src", "10.0.0.0/33", "16", NULL), -EINVAL);
    CHECK_EQ_INT(add(b, "ip-dst|port", "198.51.100.2", "16", NULL), -EINVAL);
    CHECK_EQ_INT(add(b, "md5", "d41d8cd98f00b204e9800998ecf8427e", "16", NULL), 0);
    wf_ioc_t *t = wf_ioc_builder_finish(b);
    wf_ioc_counts_t c;
    wf_ioc_counts(t, &c);
    CHECK_EQ_INT(c.per_kind[WF_IOC_IP], 6);
    CHECK_EQ_INT(c.prefix_lengths, 4); /* /24 /32, /32 /128 */
    wf_ioc_hit_t h;
    CHECK(m_ip(t, "192.0.2.7:1", &h)); /* the longest prefix */
    CHECK_EQ_STR(h.value, "192.0.2.7");
    CHECK_EQ_STR(h.type, "ip-dst");
    CHECK_EQ_INT(h.nevents, 1);
    CHECK_EQ_STR(h.events[0], "11");
    CHECK_EQ_STR(h.tags, "apt");
    CHECK(m_ip(t, "192.0.2.8:1", &h));
    CHECK_EQ_STR(h.value, "192.0.2.0/24");
    CHECK_EQ_STR(h.events[0], "10");
    CHECK(m_ip(t, "[::ffff:192.0.2.9]:1", &h)); /* mapped client */
    CHECK_EQ_STR(h.value, "192.0.2.0/24");
    CHECK(!m_ip(t, "192.0.3.1:1", &h));
    CHECK(m_ip(t, "198.51.100.1:1", &h));
    CHECK(m_ip(t, "[2001:db8:1::1]:1", &h));
    CHECK_EQ_STR(h.value, "2001:db8:1::1");
    CHECK(m_ip(t, "[2001:db8:ffff::1]:1", &h));
    CHECK_EQ_STR(h.value, "2001:db8::/32");
    CHECK(!m_ip(t, "[2001:db9::1]:1", &h));
    CHECK(m_ip(t, "203.0.113.5:9", NULL));
    wf_ioc_free(t);

    /* /0 matches every address of its family */
    b = wf_ioc_builder_new(0);
    CHECK_EQ_INT(add(b, "ip-src", "0.0.0.0/0", "1", NULL), 1);
    t = wf_ioc_builder_finish(b);
    CHECK(m_ip(t, "8.8.8.8:1", &h) && !m_ip(t, "[::1]:1", &h));
    wf_ioc_free(t);
}

TEST(domains_urls_agents)
{
    wf_ioc_builder_t *b = wf_ioc_builder_new(0);
    CHECK_EQ_INT(add(b, "domain", "Evil.Example.", "20", "kill-chain:c2"), 1);
    CHECK_EQ_INT(add(b, "hostname", "cdn.bad.test", "21", NULL), 1);
    CHECK_EQ_INT(add(b, "domain|ip", "mixed.test|192.0.2.99", "22", NULL), 1);
    CHECK_EQ_INT(add(b, "domain", "bad host", "23", NULL), -EINVAL);
    CHECK_EQ_INT(add(b, "domain", "a..b", "23", NULL), -EINVAL);
    CHECK_EQ_INT(add(b, "url", "http://Phish.Test/login.php", "24", NULL), 1);
    CHECK_EQ_INT(add(b, "url", "https://phish.test:443/a?x=1#frag", "25", NULL), 1);
    CHECK_EQ_INT(add(b, "url", "other.test:8080/p", "26", NULL), 1);
    CHECK_EQ_INT(add(b, "user-agent", "sqlmap/1.7#stable (https://sqlmap.org)", "27", "tool"), 1);
    CHECK_EQ_INT(add(b, "user-agent", "   ", "28", NULL), -EINVAL);
    wf_ioc_t *t = wf_ioc_builder_finish(b);
    wf_ioc_hit_t h;

    CHECK(m_host(t, "evil.example", "", &h));
    CHECK_EQ_STR(h.value, "evil.example");
    CHECK_EQ_STR(h.tags, "kill-chain:c2");
    CHECK(m_host(t, "WWW.a.EVIL.example:8443", "", &h)); /* parent domain, case, port */
    CHECK_EQ_STR(h.value, "evil.example");
    CHECK(m_host(t, "evil.example.", "", &h));
    CHECK(!m_host(t, "notevil.example", "", &h));
    CHECK(!m_host(t, "example", "", &h));
    CHECK(m_host(t, "x.cdn.bad.test", "", &h));
    CHECK(!m_host(t, "bad.test", "", &h)); /* a parent of the indicator is not the indicator */
    CHECK(m_host(t, "mixed.test", "", &h));
    CHECK(m_ip(t, "192.0.2.99:1", &h));
    CHECK_EQ_STR(h.type, "domain|ip");
    CHECK(!m_host(t, "[2001:db8::1]:80", "/", &h));

    CHECK(m_host(t, "phish.test", "/login.php", &h));
    CHECK_EQ_STR(h.type, "url");
    CHECK_EQ_STR(h.events[0], "24");
    CHECK(m_host(t, "PHISH.test:80", "/login.php?user=x", &h)); /* without the query */
    CHECK_EQ_STR(h.events[0], "24");
    CHECK(!m_host(t, "phish.test", "/login.php5", &h));
    CHECK(!m_host(t, "phish.test", "/Login.php", &h));        /* paths are case-sensitive */
    CHECK(m_host(t, "phish.test", "/a?x=1", &h));
    CHECK_EQ_STR(h.events[0], "25");
    CHECK(!m_host(t, "phish.test", "/a?x=2", &h));
    CHECK(m_host(t, "ignored", "http://phish.test/login.php", &h)); /* absolute-form */
    CHECK(m_host(t, "other.test:8080", "/p", &h));
    CHECK(!m_host(t, "other.test", "/p", &h));
    CHECK(!m_host(t, "phish.test", "login.php", &h));

    CHECK(wf_ioc_match(t, NULL, WF_STR_NULL, WF_STR_NULL, WF_STR("sqlmap/1.7#stable (https://sqlmap.org)"), &h));
    CHECK_EQ_STR(h.type, "user-agent");
    CHECK(!wf_ioc_match(t, NULL, WF_STR_NULL, WF_STR_NULL, WF_STR("sqlmap/1.7"), &h));
    CHECK(!wf_ioc_match(t, NULL, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, &h));
    CHECK(!wf_ioc_match(NULL, NULL, WF_STR("evil.example"), WF_STR_NULL, WF_STR_NULL, &h));
    wf_ioc_free(t);
}

TEST(merge_limit_secev)
{
    wf_ioc_builder_t *b = wf_ioc_builder_new(3);
    for (int i = 0; i < 12; i++) {
        char ev[16], tag[16];
        snprintf(ev, sizeof(ev), "%d", 100 + i % 10);
        snprintf(tag, sizeof(tag), "tag%d", i % 3);
        CHECK_EQ_INT(add(b, "ip-src", "192.0.2.1", ev, tag), 1);
    }
    CHECK_EQ_INT(add(b, "domain", "a.test", "", NULL), 1);
    CHECK_EQ_INT(add(b, "domain", "b.test", NULL, NULL), 1);
    CHECK_EQ_INT(add(b, "domain", "c.test", "1", NULL), -WF_ELIMIT);
    CHECK_EQ_INT(add(b, "domain", "a.test", "2", NULL), 1); /* merging is not a new indicator */
    wf_ioc_t *t = wf_ioc_builder_finish(b);
    wf_ioc_hit_t h;
    CHECK(m_ip(t, "192.0.2.1:1", &h));
    CHECK_EQ_INT(h.nevents, WF_IOC_MAX_EVENTS);
    CHECK_EQ_STR(h.events[0], "100");
    CHECK_EQ_STR(h.events[7], "107");
    CHECK_EQ_STR(h.tags, "tag0,tag1,tag2");
    wf_ioc_counts_t c;
    wf_ioc_counts(t, &c);
    CHECK_EQ_INT(c.events, 11);

    wf_secev_t ev;
    memset(&ev, 0, sizeof(ev));
    wf_ioc_hit_secev(&h, &ev);
    CHECK_EQ_INT(ev.reason, WF_SECEV_R_INDICATOR);
    CHECK_EQ_INT(ev.nmisp, 8);
    CHECK_EQ_STR(ev.misp_event[1], "101");
    CHECK_EQ_STR(ev.misp_tags, "tag0,tag1,tag2");
    CHECK(m_host(t, "x.a.test", "", &h));
    CHECK_EQ_INT(h.nevents, 1);
    CHECK_EQ_STR(h.events[0], "2");
    wf_ioc_free(t);

    /* tags cut at a whole tag */
    b = wf_ioc_builder_new(0);
    char big[200];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    for (int i = 0; i < 3; i++) {
        big[0] = (char)('a' + i);
        CHECK_EQ_INT(add(b, "domain", "t.test", "1", big), 1);
    }
    t = wf_ioc_builder_finish(b);
    CHECK(m_host(t, "t.test", "", &h));
    CHECK_EQ_INT(strlen(h.tags), 199);
    wf_ioc_free(t);
}

TEST(empty_and_large)
{
    wf_ioc_t *t = wf_ioc_builder_finish(wf_ioc_builder_new(0));
    CHECK(t != NULL);
    CHECK(!m_ip(t, "192.0.2.1:1", NULL));
    CHECK(!m_host(t, "a.test", "/", NULL));
    wf_ioc_free(t);
    wf_ioc_builder_t *b = wf_ioc_builder_new(0);
    char ip[32];
    for (int i = 0; i < 100000; i++) {
        snprintf(ip, sizeof(ip), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        if (add(b, "ip-src", ip, "1", NULL) != 1) {
            CHECK(0);
            break;
        }
    }
    t = wf_ioc_builder_finish(b);
    CHECK(m_ip(t, "10.1.134.159:1", NULL));
    CHECK(!m_ip(t, "10.2.0.0:1", NULL));
    wf_ioc_counts_t c;
    wf_ioc_counts(t, &c);
    CHECK_EQ_INT(c.per_kind[WF_IOC_IP], 100000);
    wf_ioc_free(t);
}

/* Readers match without pause while the store swaps tables; ASan catches a table freed under a reader. */
static wf_ioc_store_t *store;
static int stop;
static long reads[4], hits_seen[4];

static void *reader(void *arg)
{
    int id = (int)(intptr_t)arg;
    wf_sockaddr_t a = addr("192.0.2.1:1");
    while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
        wf_ioc_hit_t h;
        const wf_ioc_t *t = wf_ioc_read_begin(store);
        bool m = wf_ioc_match(t, &a, WF_STR("a.test"), WF_STR_NULL, WF_STR_NULL, &h);
        if (m && strcmp(h.events[0], "gen") != 0)
            abort();
        wf_ioc_read_end(store);
        reads[id]++;
        hits_seen[id] += m;
    }
    return NULL;
}

TEST(store_swaps_under_readers)
{
    store = wf_ioc_store_new();
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, reader, (void *)(intptr_t)i);
    for (int g = 0; g < 200; g++) {
        wf_ioc_builder_t *b = wf_ioc_builder_new(0);
        add(b, "ip-src", g % 2 ? "192.0.2.1" : "192.0.2.0/24", "gen", NULL);
        for (int i = 0; i < 50; i++) {
            char d[32];
            snprintf(d, sizeof(d), "d%d.test", i);
            add(b, "domain", d, "gen", NULL);
        }
        wf_ioc_store_publish(store, wf_ioc_builder_finish(b));
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELAXED);
    long total = 0, hit = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += reads[i];
        hit += hits_seen[i];
    }
    CHECK(total > 0);
    CHECK(hit > 0);
    wf_ioc_hit_t h;
    wf_sockaddr_t a = addr("192.0.2.1:1");
    CHECK(wf_ioc_store_match(store, &a, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, &h));
    wf_ioc_store_stats_t st;
    wf_ioc_store_stats(store, &st);
    CHECK_EQ_INT(st.swaps, 200);
    CHECK_EQ_INT(st.hits[WF_IOC_IP], 1);
    CHECK_EQ_INT(st.loaded.per_kind[WF_IOC_DOMAIN], 50);
    wf_ioc_store_publish(store, NULL);
    CHECK(!wf_ioc_store_match(store, &a, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, &h));
    wf_ioc_store_free(store);
}

TEST_MAIN()
