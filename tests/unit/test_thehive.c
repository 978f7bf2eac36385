/* The TheHive sink's pieces that the end-to-end test cannot reach easily:
 * the sourceRef, hostile bytes in the alert document, what is ignored, and
 * the configuration errors. tests/e2e/test_thehive.py tests delivery. */
#include "test.h"
#include "wafer/net.h"
#include "wafer/thehive.h"

#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <unistd.h>

TEST(source_ref_is_stable_and_distinct)
{
    char a[40], b[40];
    wf_thehive_source_ref("wafer", "wafer", "192.0.2.1", "sqli", 1795251840000ull, a);
    wf_thehive_source_ref("wafer", "wafer", "192.0.2.1", "sqli", 1795251840000ull, b);
    CHECK_EQ_STR(a, b);
    CHECK_EQ_INT(strlen(a), 38);
    CHECK(!strncmp(a, "wafer-", 6));
    const char *other[][4] = { { "wafer", "wafer", "192.0.2.1", "xss" },
                               { "wafer", "wafer", "192.0.2.11", "sqli" },
                               { "wafer", "edge", "192.0.2.1", "sqli" },
                               { "wafer", "wafe", "r192.0.2.1", "sqli" } }; /* field boundaries count */
    for (size_t i = 0; i < WF_ARRAY_LEN(other); i++) {
        wf_thehive_source_ref(other[i][0], other[i][1], other[i][2], other[i][3], 1795251840000ull, b);
        CHECK(strcmp(a, b) != 0);
    }
    wf_thehive_source_ref("wafer", "wafer", "192.0.2.1", "sqli", 1795251900000ull, b);
    CHECK(strcmp(a, b) != 0);
}

/* A one-shot HTTP server: answers one request 201 and keeps its body. */
typedef struct {
    int lfd;
    char body[65536];
    size_t body_len;
    int requests;
} srv_t;

static void *srv_main(void *arg)
{
    srv_t *s = arg;
    for (;;) {
        struct pollfd pf = { s->lfd, POLLIN, 0 };
        if (poll(&pf, 1, 5000) != 1)
            return NULL;
        wf_sockaddr_t peer;
        int fd = wf_net_accept(s->lfd, &peer);
        if (fd < 0)
            continue;
        static char buf[1 << 17];
        size_t n = 0;
        char *end = NULL;
        long cl = -1;
        for (;;) {
            struct pollfd cp = { fd, POLLIN, 0 };
            if (poll(&cp, 1, 3000) != 1)
                break;
            ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = 0;
            if (!end && (end = strstr(buf, "\r\n\r\n"))) {
                char *h = strcasestr(buf, "\r\nContent-Length:");
                cl = h ? strtol(h + 17, NULL, 10) : 0;
            }
            if (end && (long)(n - (size_t)(end + 4 - buf)) >= cl)
                break;
        }
        if (end && cl >= 0 && (size_t)cl < sizeof(s->body)) {
            memcpy(s->body, end + 4, (size_t)cl);
            s->body_len = (size_t)cl;
            s->requests++;
        }
        const char *ok = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
        ssize_t w = write(fd, ok, strlen(ok));
        (void)w;
        close(fd);
        if (s->requests)
            return NULL;
    }
}

TEST(hostile_bytes_make_a_valid_alert)
{
    srv_t s = { 0 };
    wf_sockaddr_t a;
    wf_sockaddr_parse("127.0.0.1:0", &a);
    s.lfd = wf_net_listen(&a, 8, false);
    CHECK(s.lfd >= 0);
    wf_sockaddr_t bound = { .len = sizeof(bound.ss) };
    getsockname(s.lfd, (struct sockaddr *)&bound.ss, &bound.len);
    char addr[64];
    wf_sockaddr_format(&bound, addr, sizeof(addr));
    pthread_t t;
    pthread_create(&t, NULL, srv_main, &s);

    char yaml[256];
    snprintf(yaml, sizeof(yaml), "thehive: {url: \"http://%s\", api_key: k, window: 1h, samples: 2}\n", addr);
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    wf_thehive_conf_t tc;
    CHECK_EQ_INT(wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, &err), 0);
    CHECK_EQ_INT(wf_thehive_conf_parse(c, wf_conf_get(wf_conf_root(c), "thehive"), &tc, &err), 0);
    wf_conf_free(c);
    wf_thehive_t *th = NULL;
    char msg[256];
    CHECK_EQ_INT(wf_thehive_new(&tc, &th, msg, sizeof(msg)), 0);
    wf_thehive_conf_free(&tc);
    if (!th)
        return;

    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.action = WF_SECEV_PASS;
    CHECK_EQ_INT(wf_thehive_add(th, &ev), 1); /* operational, not an attack */
    ev.action = WF_SECEV_BLOCK;
    ev.reason = WF_SECEV_R_MODEL;
    ev.score = 0.5f;
    WF_SECEV_SET(&ev, client_ip, WF_STR("2001:db8::7"));
    WF_SECEV_SET(&ev, cls, WF_STR("path\"traversal"));
    WF_SECEV_SET(&ev, method, WF_STR("GET"));
    WF_SECEV_SET(&ev, host, WF_STR("[2001:db8::1]:8443"));
    WF_SECEV_SET(&ev, path, WF_STR("/a\xff\xfe/\xc3\xa9/\x01\"\\"));
    WF_SECEV_SET(&ev, user_agent, WF_STR("ua\xed\xa0\x80x")); /* an encoded surrogate is not UTF-8 */
    ev.nmisp = 2;
    snprintf(ev.misp_event[0], sizeof(ev.misp_event[0]), "42");
    snprintf(ev.misp_event[1], sizeof(ev.misp_event[1]), "42](http://x)"); /* not an id: left out */
    CHECK_EQ_INT(wf_thehive_add(th, &ev), 0);
    /* different bytes, the same text once made valid: one observable, not two */
    WF_SECEV_SET(&ev, user_agent, WF_STR("ua\xed\xa0\x81x"));
    CHECK_EQ_INT(wf_thehive_add(th, &ev), 0);
    wf_thehive_finish(th, wf_now_ms() + 5000);
    wf_thehive_stats_t st;
    wf_thehive_stats(th, &st);
    CHECK_EQ_INT(st.created, 1);
    CHECK_EQ_INT(st.events, 2);
    pthread_join(t, NULL);
    close(s.lfd);
    wf_thehive_free(th);

    json_error_t je;
    json_t *doc = json_loadb(s.body, s.body_len, 0, &je); /* jansson checks UTF-8 */
    CHECK(doc != NULL);
    if (!doc) {
        fprintf(stderr, "%s: %.300s\n", je.text, s.body);
        return;
    }
    CHECK_EQ_INT(json_integer_value(json_object_get(doc, "severity")), 1);
    CHECK_EQ_STR(json_string_value(json_object_get(doc, "title")), "wafer: path\"traversal from 2001:db8::7 (2 requests)");
    const char *d = json_string_value(json_object_get(doc, "description"));
    CHECK(d && strstr(d, "GET /a\xef\xbf\xbd\xef\xbf\xbd/\xc3\xa9/\x01\"\\") != NULL);
    CHECK(d && strstr(d, "MISP events: 42.") != NULL);
    CHECK(d && !strstr(d, "http://x"));
    json_t *obs = json_object_get(doc, "observables"), *o;
    size_t i;
    int urls = 0, hosts = 0, uas = 0;
    json_array_foreach(obs, i, o)
    {
        const char *dt = json_string_value(json_object_get(o, "dataType"));
        const char *data = json_string_value(json_object_get(o, "data"));
        if (!strcmp(dt, "url")) {
            urls++;
            CHECK(!strncmp(data, "http://[2001:db8::1]:8443/a", 27));
        }
        hosts += !strcmp(dt, "hostname"); /* an address literal is no hostname */
        if (!strcmp(dt, "user-agent")) {
            uas++;
            CHECK_EQ_STR(data, "ua\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbdx");
        }
    }
    CHECK_EQ_INT(urls, 1);
    CHECK_EQ_INT(hosts, 0);
    CHECK_EQ_INT(uas, 1);
    json_decref(doc);
}

TEST(group_table_is_bounded)
{
    wf_thehive_conf_t tc = { 0 };
    const char *yaml = "thehive: {url: \"http://127.0.0.1:9\", api_key: k, max_groups: 2, max_pending: 1}\n";
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    CHECK_EQ_INT(wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, &err), 0);
    CHECK_EQ_INT(wf_thehive_conf_parse(c, wf_conf_get(wf_conf_root(c), "thehive"), &tc, &err), 0);
    wf_conf_free(c);
    wf_thehive_t *th = NULL;
    char msg[128];
    CHECK_EQ_INT(wf_thehive_new(&tc, &th, msg, sizeof(msg)), 0);
    wf_thehive_conf_free(&tc);
    wf_secev_t ev;
    wf_secev_init(&ev);
    ev.action = WF_SECEV_BLOCK;
    WF_SECEV_SET(&ev, cls, WF_STR("sqli"));
    const char *ips[] = { "192.0.2.1", "192.0.2.2", "192.0.2.1", "192.0.2.3" };
    int want[] = { 0, 0, 0, -WF_ELIMIT };
    for (int i = 0; i < 4; i++) {
        WF_SECEV_SET(&ev, client_ip, wf_str_c(ips[i]));
        CHECK_EQ_INT(wf_thehive_add(th, &ev), want[i]);
    }
    wf_thehive_stats_t st;
    wf_thehive_stats(th, &st);
    CHECK_EQ_INT(st.groups, 2);
    CHECK_EQ_INT(st.events, 3);
    CHECK_EQ_INT(st.events_dropped, 1);
    /* nothing listens on port 9: with no time to retry both alerts are dropped, counted */
    wf_thehive_finish(th, wf_now_ms());
    wf_thehive_stats(th, &st);
    CHECK_EQ_INT(st.dropped, 2);
    CHECK_EQ_INT(st.groups, 0);
    CHECK_EQ_INT(st.pending, 0);
    wf_thehive_free(th);
}

TEST_MAIN()
