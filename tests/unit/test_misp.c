/* MISP import from the feed fixtures (tests/fixtures/misp): configuration, each feed format, failures keeping the
 * previous table. The REST API and sightings are tested against a local server in tests/e2e/test_misp.py. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/misp.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define FIX WAFER_SOURCE_DIR "/tests/fixtures/misp"

static wf_misp_conf_t *parse(const char *yaml, wf_conf_err_t *err, int *rc_out)
{
    wf_conf_t *c = NULL;
    wf_misp_conf_t *mc = NULL;
    int rc = wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, err);
    if (rc == 0)
        rc = wf_misp_conf_parse(c, wf_conf_get(wf_conf_root(c), "misp"), &mc, err);
    wf_conf_free(c);
    if (rc_out)
        *rc_out = rc;
    return mc;
}

static void expect_error(const char *yaml, const char *where, const char *what)
{
    wf_conf_err_t err = { { 0 } };
    wf_misp_conf_t *mc = parse(yaml, &err, NULL);
    CHECK(mc == NULL);
    if (strncmp(err.msg, where, strlen(where)) != 0 || !strstr(err.msg, what)) {
        fprintf(stderr, "  got \"%s\", want \"%s...%s\"\n", err.msg, where, what);
        CHECK(0);
    }
    wf_misp_conf_free(mc);
}

TEST(conf)
{
    wf_conf_err_t err;
    wf_misp_conf_t *mc = parse("x: 1\n", &err, NULL);
    CHECK(mc && mc->nfeeds == 0 && !mc->has_api && mc->action == WF_MISP_BLOCK);
    wf_misp_conf_free(mc);
    mc = parse("misp:\n"
               "  action: flag\n"
               "  sightings: true\n"
               "  timeout: 2s\n"
               "  feeds:\n"
               "    - {url: https://feeds.example/misp, format: misp, refresh: 30m}\n"
               "    - {name: ips, url: /var/lib/ips.csv, format: csv, column: 2, delimiter: ';', type: ip-src}\n"
               "    - {url: \"file:///x.txt\", format: freetext, tags: [osint]}\n"
               "  api: {url: \"https://misp.example/\", key: abcDEF123, refresh: 5m, last: 30d, types: [ip-src, url]}\n",
               &err, NULL);
    if (!mc)
        fprintf(stderr, "%s\n", err.msg);
    CHECK(mc != NULL);
    if (mc) {
        CHECK_EQ_INT(mc->action, WF_MISP_FLAG);
        CHECK_EQ_INT(mc->nfeeds, 3);
        CHECK_EQ_STR(mc->feeds[0].name, "feed0");
        CHECK_EQ_INT(mc->feeds[0].refresh_ms, 1800000);
        CHECK_EQ_INT(mc->feeds[1].column, 2);
        CHECK_EQ_INT(mc->feeds[1].delimiter, ';');
        CHECK_EQ_STR(mc->feeds[1].type, "ip-src");
        CHECK_EQ_INT(mc->feeds[2].format, WF_MISP_FEED_FREETEXT);
        CHECK_EQ_STR(mc->feeds[2].tags[0], "osint");
        CHECK_EQ_STR(mc->api.url, "https://misp.example");
        CHECK_EQ_STR(mc->api.key, "abcDEF123");
        CHECK_EQ_INT(mc->api.ntypes, 2);
        CHECK_EQ_STR(mc->api.last, "30d");
        CHECK_EQ_INT(mc->timeout_ms, 2000);
    }
    wf_misp_conf_free(mc);

    expect_error("misp:\n  feeds:\n    - {url: x, format: misp}\n", "t.yaml:3:", "url");
    expect_error("misp:\n  feeds:\n    - {url: /x, format: stix}\n", "t.yaml:3:", "format");
    expect_error("misp:\n  feeds:\n    - {url: /x}\n    - {urll: /y}\n", "t.yaml:4:", "unknown key");
    expect_error("misp:\n  feeds:\n    - {url: /x, format: csv, type: md5}\n", "t.yaml:3:", "not a type");
    expect_error("misp:\n  feeds:\n    - {url: /x, format: misp, column: 2}\n", "t.yaml:3:", "csv only");
    expect_error("misp:\n  feeds:\n    - {name: a, url: /x}\n    - {name: a, url: /y}\n", "t.yaml:4:", "twice");
    expect_error("misp:\n  api: {url: https://m.example}\n", "t.yaml:2:", "key");
    expect_error("misp:\n  api: {url: ftp://m.example, key: k}\n", "t.yaml:2:", "http(s)");
    expect_error("misp:\n  api: {url: https://m.example, key: \"a b\"}\n", "t.yaml:2:", "printable");
    expect_error("misp:\n  api: {url: https://m.example, key: k, last: soon}\n", "t.yaml:2:", "period");
    expect_error("misp:\n  sightings: true\n", "t.yaml:2:", "api");
    expect_error("misp:\n  action: drop\n", "t.yaml:2:", "action");
}

static bool match_ip(wf_ioc_store_t *s, const char *a, wf_ioc_hit_t *h)
{
    wf_sockaddr_t sa;
    if (wf_sockaddr_parse(a, &sa) != 0)
        abort();
    return wf_ioc_store_match(s, &sa, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, h);
}

static bool match_req(wf_ioc_store_t *s, const char *host, const char *url, const char *ua, wf_ioc_hit_t *h)
{
    return wf_ioc_store_match(s, NULL, wf_str_c(host), wf_str_c(url), wf_str_c(ua), h);
}

TEST(feeds_from_fixtures)
{
    wf_conf_err_t err;
    wf_misp_conf_t *mc = parse("misp:\n"
                               "  feeds:\n"
                               "    - {name: circl, url: \"" FIX "/feed-misp\", format: misp}\n"
                               "    - {name: ips, url: \"file://" FIX "/feed.csv\", format: csv}\n"
                               "    - {name: text, url: \"" FIX "/feed.txt\", format: freetext, tags: [osint]}\n",
                               &err, NULL);
    CHECK(mc != NULL);
    if (!mc) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m;
    char e[256];
    CHECK_EQ_INT(wf_misp_new(mc, store, &m, e, sizeof(e)), 0);
    wf_misp_conf_free(mc); /* the importer keeps its own copy */
    CHECK_EQ_INT(wf_misp_import(m, true), 0);

    wf_ioc_store_stats_t st;
    wf_ioc_store_stats(store, &st);
    /* misp: 198.51.100.23, 2001:db8:bad::/48, 192.0.2.0/25; csv: 3; text: 192.0.2.200, 2001:db8:c2::1 */
    CHECK_EQ_INT(st.loaded.per_kind[WF_IOC_IP], 8);
    CHECK_EQ_INT(st.loaded.per_kind[WF_IOC_DOMAIN], 3); /* webmail-login, mail.badlogin, c2.botnet */
    CHECK_EQ_INT(st.loaded.per_kind[WF_IOC_URL], 3);
    CHECK_EQ_INT(st.loaded.per_kind[WF_IOC_UA], 1);

    wf_ioc_hit_t h;
    CHECK(match_ip(store, "198.51.100.23:1", &h)); /* in both events of the MISP feed */
    CHECK_EQ_INT(h.nevents, 2);
    CHECK(strstr(h.tags, "tlp:white") && strstr(h.tags, "tlp:amber") && strstr(h.tags, "feed:circl"));
    CHECK(!match_ip(store, "198.51.100.24:1", &h)); /* to_ids false */
    CHECK(!match_ip(store, "203.0.113.66:1", &h));  /* deleted */
    CHECK(match_ip(store, "192.0.2.77:1", &h));
    CHECK_EQ_STR(h.events[0], "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d");
    CHECK(strstr(h.tags, "scanner") != NULL);
    CHECK(match_ip(store, "192.0.2.200:1", &h));
    CHECK_EQ_STR(h.tags, "feed:text,osint");
    CHECK_EQ_INT(h.nevents, 0);
    CHECK(match_ip(store, "[2001:db8:bad:1::5]:1", &h));
    CHECK(match_ip(store, "[2001:db8:c2::1]:1", &h));
    CHECK(match_ip(store, "203.0.113.11:1", &h));
    CHECK(match_ip(store, "203.0.113.15:1", &h));
    CHECK(!match_ip(store, "203.0.113.16:1", &h));
    CHECK(match_req(store, "x.webmail-login.example", "/", "", &h));
    CHECK_EQ_STR(h.events[0], "5f0c6a0e-8d34-4c1a-9d6e-2b1f3c4d5e6f");
    CHECK(strstr(h.tags, "kill-chain:delivery") != NULL);
    CHECK(match_req(store, "mail.badlogin.example", "/", "", &h));
    CHECK(match_req(store, "c2.botnet.example", "/", "", &h));
    CHECK(match_req(store, "cdn.phish.example", "/owa/auth.php?x=1", "", &h));
    CHECK(match_req(store, "evil-downloads.example", "/dropper.exe", "", &h));
    CHECK(match_req(store, "a.test", "/", "sqlmap/1.8.3#stable (https://sqlmap.org)", &h));
    CHECK(!match_req(store, "report.example", "/y", "curl/8", &h));

    wf_misp_stats_t ms;
    wf_misp_stats(m, &ms);
    CHECK_EQ_INT(ms.nsources, 3);
    CHECK_EQ_INT(ms.tables, 1);
    CHECK_EQ_INT(ms.sources[0].ok, 1);
    CHECK_EQ_INT(ms.sources[0].attributes, 8);
    CHECK(ms.sources[0].skipped >= 4); /* to_ids false, md5, deleted, the hostile manifest key */
    CHECK_EQ_INT(ms.sources[1].attributes, 3);
    CHECK_EQ_INT(ms.sources[2].attributes, 5);

    CHECK_EQ_INT(wf_misp_metrics_register(m, store), 0);
    wf_buf_t out;
    wf_buf_init(&out, 4096, 1 << 20);
    CHECK_EQ_INT(wf_metrics_render(&out), 0);
    wf_buf_append(&out, "", 1);
    const char *text = wf_buf_rptr(&out);
    CHECK(strstr(text, "wafer_ioc_indicators{kind=\"ip\"} 8\n") != NULL);
    CHECK(strstr(text, "wafer_ioc_indicators{kind=\"user-agent\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_misp_fetches_total{source=\"circl\",result=\"ok\"} 1\n") != NULL);
    CHECK(strstr(text, "wafer_misp_attributes{source=\"text\"} 5\n") != NULL);
    CHECK(strstr(text, "wafer_misp_sightings_total{result=\"sent\"} 0\n") != NULL);
    if (!strstr(text, "wafer_ioc_indicators{kind=\"ip\"} 8\n"))
        fprintf(stderr, "%s\n", text);
    wf_metrics_unregister(m);
    wf_metrics_unregister(store);
    wf_buf_free(&out);
    wf_misp_free(m);
    wf_ioc_store_free(store);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    fputs(text, fp);
    fclose(fp);
}

TEST(failure_keeps_previous)
{
    char dir[] = "/tmp/wafer-misp-XXXXXX", a[64], b[64], yaml[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(a, sizeof(a), "%s/a.txt", dir);
    snprintf(b, sizeof(b), "%s/b.csv", dir);
    write_file(a, "192.0.2.1\n");
    write_file(b, "evil.example\n");
    snprintf(yaml, sizeof(yaml),
             "misp:\n  max_bytes: 2k\n  feeds:\n    - {name: a, url: \"%s\", format: freetext}\n"
             "    - {name: b, url: \"%s\", format: csv, type: domain}\n", a, b);
    wf_conf_err_t err;
    wf_misp_conf_t *mc = parse(yaml, &err, NULL);
    CHECK(mc != NULL);
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m;
    char e[256];
    CHECK_EQ_INT(wf_misp_new(mc, store, &m, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK_EQ_INT(wf_misp_import(m, true), 0);
    CHECK(match_ip(store, "192.0.2.1:1", NULL));
    CHECK(match_req(store, "evil.example", "", "", NULL));

    /* a disappears, b changes: a keeps what it had, b's new content is used */
    unlink(a);
    write_file(b, "worse.example\n");
    CHECK_EQ_INT(wf_misp_import(m, true), 1);
    CHECK(match_ip(store, "192.0.2.1:1", NULL));
    CHECK(!match_req(store, "evil.example", "", "", NULL));
    CHECK(match_req(store, "worse.example", "", "", NULL));

    /* b grows past max_bytes: both fail, the table stays and is not rebuilt */
    FILE *fp = fopen(b, "w");
    for (int i = 0; i < 500; i++)
        fprintf(fp, "d%d.example\n", i);
    fclose(fp);
    wf_misp_stats_t ms;
    wf_misp_stats(m, &ms);
    uint64_t tables = ms.tables;
    CHECK_EQ_INT(wf_misp_import(m, true), 2);
    wf_misp_stats(m, &ms);
    CHECK_EQ_INT(ms.tables, tables);
    CHECK_EQ_INT(ms.sources[0].failed, 2);
    CHECK_EQ_INT(ms.sources[1].failed, 1);
    CHECK(match_req(store, "worse.example", "", "", NULL));
    CHECK(match_ip(store, "192.0.2.1:1", NULL));

    /* nothing due: a round that is not forced fetches nothing */
    CHECK_EQ_INT(wf_misp_import(m, false), 0);
    wf_misp_free(m);
    wf_ioc_store_free(store);
    unlink(b);
    rmdir(dir);
}

TEST(reconfigure)
{
    char dir[] = "/tmp/wafer-misp-XXXXXX", a[64], b[64], c[64], yaml[512];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(a, sizeof(a), "%s/a.txt", dir);
    snprintf(b, sizeof(b), "%s/b.txt", dir);
    snprintf(c, sizeof(c), "%s/c.txt", dir);
    write_file(a, "192.0.2.1\n");
    write_file(b, "192.0.2.2\n");
    write_file(c, "192.0.2.3\n");
    wf_conf_err_t err;
    snprintf(yaml, sizeof(yaml), "misp:\n  feeds:\n    - {name: a, url: \"%s\", format: freetext}\n"
                                 "    - {name: b, url: \"%s\", format: freetext}\n", a, b);
    wf_misp_conf_t *mc = parse(yaml, &err, NULL);
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m;
    char e[256];
    CHECK_EQ_INT(wf_misp_new(mc, store, &m, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK_EQ_INT(wf_misp_action(m), WF_MISP_BLOCK);
    CHECK_EQ_INT(wf_misp_import(m, true), 0);
    CHECK(match_ip(store, "192.0.2.1:1", NULL) && match_ip(store, "192.0.2.2:1", NULL));

    /* a goes, b stays (and keeps what it loaded when its file is gone), c comes; flag now */
    snprintf(yaml, sizeof(yaml), "misp:\n  action: flag\n  feeds:\n    - {name: b, url: \"%s\", format: freetext}\n"
                                 "    - {name: c, url: \"%s\", format: freetext}\n", b, c);
    mc = parse(yaml, &err, NULL);
    CHECK_EQ_INT(wf_misp_reconfigure(m, mc, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK_EQ_INT(wf_misp_action(m), WF_MISP_FLAG);
    CHECK(match_ip(store, "192.0.2.1:1", NULL)); /* the table stays until the next import */
    unlink(b);
    CHECK_EQ_INT(wf_misp_import(m, false), 1); /* every source is due after a reconfigure; b fails */
    CHECK(!match_ip(store, "192.0.2.1:1", NULL));
    CHECK(match_ip(store, "192.0.2.2:1", NULL));
    CHECK(match_ip(store, "192.0.2.3:1", NULL));
    wf_misp_stats_t ms;
    wf_misp_stats(m, &ms);
    CHECK_EQ_INT(ms.nsources, 2);
    CHECK_EQ_INT(ms.sources[0].ok, 1); /* b's counters came along */
    CHECK_EQ_INT(ms.sources[0].failed, 1);

    /* no source left: no indicator either */
    mc = parse("misp:\n  action: block\n", &err, NULL);
    CHECK_EQ_INT(wf_misp_reconfigure(m, mc, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK(!match_ip(store, "192.0.2.3:1", NULL));
    wf_misp_free(m);
    wf_ioc_store_free(store);
    unlink(a);
    unlink(c);
    rmdir(dir);
}

TEST(data_plane_check)
{
    wf_conf_err_t err;
    wf_misp_conf_t *mc = parse("misp:\n  action: flag\n  feeds:\n    - {url: \"" FIX "/feed.txt\", format: freetext}\n",
                               &err, NULL);
    wf_ioc_hit_t h;
    wf_sockaddr_t a, b;
    wf_sockaddr_parse("192.0.2.200:5", &a);
    wf_sockaddr_parse("192.0.2.201:5", &b);
    CHECK_EQ_INT(wf_misp_check(&a, WF_STR_NULL, WF_STR_NULL, WF_STR_NULL, &h), -1); /* nothing configured */
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m;
    char e[256];
    CHECK_EQ_INT(wf_misp_new(mc, store, &m, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK_EQ_INT(wf_misp_import(m, true), 0);
    wf_ioc_global = store;
    wf_misp_global = m;
    CHECK_EQ_INT(wf_misp_check(&a, WF_STR("x.test"), WF_STR("/"), WF_STR("curl"), &h), WF_MISP_FLAG);
    CHECK_EQ_STR(h.value, "192.0.2.200");
    CHECK_EQ_INT(wf_misp_check(&b, WF_STR("c2.botnet.example:8080"), WF_STR("/"), WF_STR("curl"), &h), WF_MISP_FLAG);
    CHECK_EQ_STR(h.value, "c2.botnet.example");
    CHECK_EQ_INT(wf_misp_check(&b, WF_STR("x.test"), WF_STR("/"), WF_STR("curl"), &h), -1);
    wf_ioc_store_stats_t st;
    wf_ioc_store_stats(store, &st);
    CHECK_EQ_INT(st.hits[WF_IOC_IP], 1);
    CHECK_EQ_INT(st.hits[WF_IOC_DOMAIN], 1);
    wf_ioc_global = NULL;
    wf_misp_global = NULL;
    wf_misp_free(m);
    wf_ioc_store_free(store);
}

TEST(thread_imports_at_start)
{
    wf_conf_err_t err;
    wf_misp_conf_t *mc = parse("misp:\n  feeds:\n    - {url: \"" FIX "/feed.txt\", format: freetext}\n", &err, NULL);
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m;
    char e[256];
    CHECK_EQ_INT(wf_misp_new(mc, store, &m, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    CHECK_EQ_INT(wf_misp_start(m, e, sizeof(e)), 0);
    bool seen = false;
    for (int i = 0; i < 200 && !seen; i++) {
        seen = match_ip(store, "192.0.2.200:1", NULL);
        if (!seen)
            usleep(10000);
    }
    CHECK(seen);
    /* a reload while the thread runs: it stops, takes the new sources and imports them at once */
    mc = parse("misp:\n  feeds:\n    - {url: \"" FIX "/feed.csv\", format: csv}\n", &err, NULL);
    CHECK_EQ_INT(wf_misp_reconfigure(m, mc, e, sizeof(e)), 0);
    wf_misp_conf_free(mc);
    seen = false;
    for (int i = 0; i < 200 && !seen; i++) {
        seen = match_ip(store, "203.0.113.10:1", NULL) && !match_ip(store, "192.0.2.200:1", NULL);
        if (!seen)
            usleep(10000);
    }
    CHECK(seen);
    wf_misp_free(m);
    wf_ioc_store_free(store);
}

TEST_MAIN()
