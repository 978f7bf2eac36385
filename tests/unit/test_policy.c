/* The firewall policy: parsing, routes, thresholds, exclusions, networks and flow bans. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/metrics.h"
#include "wafer/policy.h"

#include <math.h>
#include <pthread.h>

static wf_policy_t *load(const char *yaml, wf_conf_err_t *err, int *rc_out)
{
    wf_conf_t *c = NULL;
    wf_policy_t *p = NULL;
    int rc = wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, err);
    if (rc == 0)
        rc = wf_policy_parse(c, wf_conf_get(wf_conf_root(c), "policy"), &p, err);
    wf_conf_free(c);
    if (rc_out)
        *rc_out = rc;
    return p;
}

/* Expects a parse error whose message starts with `where` and contains `what`. */
static void expect_error(const char *yaml, const char *where, const char *what)
{
    wf_conf_err_t err = { { 0 } };
    int rc = 0;
    wf_policy_t *p = load(yaml, &err, &rc);
    CHECK(p == NULL);
    CHECK(rc != 0);
    if (strncmp(err.msg, where, strlen(where)) != 0 || !strstr(err.msg, what)) {
        fprintf(stderr, "  got \"%s\", want \"%s...%s\"\n", err.msg, where, what);
        CHECK(0);
    }
    wf_policy_free(p);
}

static wf_sockaddr_t addr(const char *s)
{
    wf_sockaddr_t a;
    memset(&a, 0, sizeof(a));
    if (wf_sockaddr_parse(s, &a) != 0) {
        fprintf(stderr, "bad address %s\n", s);
        abort();
    }
    return a;
}

static const char *labels[] = { "benign", "sqli", "xss", "cmdi" };
static const float model_th[] = { 0.5f, 0.5f, 0.6f, 0.7f };

TEST(defaults)
{
    wf_conf_err_t err;
    wf_policy_t *p = load("x: 1\n", &err, NULL);
    CHECK(p != NULL);
    CHECK_EQ_INT(p->mode, WF_MODE_BLOCK);
    CHECK_EQ_INT(p->ban.detections, 5);
    CHECK_EQ_INT(p->ban.window_ms, 60000);
    CHECK_EQ_INT(p->ban.duration_ms, 600000);
    CHECK_EQ_INT(p->ban.max_clients, 65536);
    CHECK(!p->ban.fixed_window);
    CHECK_EQ_INT(p->nroutes, 0);
    char e[256];
    CHECK_EQ_INT(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)), 0);
    const wf_route_t *r = wf_policy_route(p, WF_STR("a.example"), WF_STR("/x"));
    CHECK(r == &p->root);
    CHECK_EQ_STR(r->name, "default");
    CHECK(r->thresholds[2] == 0.6f);
    wf_policy_free(p);
}

static const char *full_yaml =
    "policy:\n"
    "  mode: monitor\n"
    "  thresholds: {sqli: 0.9, xss: 0.95}\n"
    "  exclusions:\n"
    "    - {kind: query, name: \"q\", classes: [sqli]}\n"
    "    - {kind: header, name: User-Agent}\n"
    "  allow: [127.0.0.0/8, \"::1\"]\n"
    "  deny: [192.0.2.0/24, 10.1.2.3]\n"
    "  ban: {detections: 3, window: 10s, duration: 1m, max_clients: 100, counting: fixed}\n"
    "  routes:\n"
    "    - name: api\n"
    "      host: API.example.com\n"
    "      path: /api\n"
    "      mode: block\n"
    "      thresholds: {sqli: 0.8}\n"
    "      exclusions: [{kind: json, name: \"user.tags[*\", classes: xss}]\n"
    "    - name: wild\n"
    "      host: \"*.example.com\"\n"
    "      path: /\n"
    "      mode: tag\n"
    "    - name: wild-deep\n"
    "      host: \"*.eu.example.com\"\n"
    "    - name: static\n"
    "      path: /static/\n"
    "      mode: off\n"
    "      inherit_exclusions: false\n"
    "      exclusions: [{classes: [cmdi]}]\n"
    "    - path: /api/v2\n"
    "      host: api.example.com.\n"
    "    - name: first\n"
    "      path: /dup\n"
    "    - name: second\n"
    "      path: /dup\n";

TEST(parse_full)
{
    wf_conf_err_t err;
    int rc;
    wf_policy_t *p = load(full_yaml, &err, &rc);
    if (!p)
        fprintf(stderr, "%s\n", err.msg);
    CHECK(p != NULL);
    if (!p)
        return;
    CHECK_EQ_INT(p->mode, WF_MODE_MONITOR);
    CHECK_EQ_INT(p->nthresholds, 2);
    CHECK_EQ_INT(p->nexcl, 2);
    CHECK_EQ_STR(p->excl[1].name, "user-agent"); /* header units are named in lower case */
    CHECK_EQ_INT(p->nallow, 2);
    CHECK_EQ_INT(p->ndeny, 2);
    CHECK_EQ_INT(p->ban.detections, 3);
    CHECK_EQ_INT(p->ban.window_ms, 10000);
    CHECK_EQ_INT(p->ban.duration_ms, 60000);
    CHECK_EQ_INT(p->ban.max_clients, 100);
    CHECK(p->ban.fixed_window);
    CHECK_EQ_INT(p->nroutes, 7);
    CHECK_EQ_STR(p->routes[0].host, "api.example.com");
    CHECK_EQ_STR(p->routes[2].path, "/");
    CHECK_EQ_INT(p->routes[2].mode, WF_MODE_MONITOR); /* inherited */
    CHECK_EQ_STR(p->routes[4].name, "route4");
    CHECK_EQ_STR(p->routes[4].host, "api.example.com");
    CHECK(p->routes[0].inherit_exclusions);
    CHECK(!p->routes[3].inherit_exclusions);
    CHECK(strstr(p->routes[1].where, "t.yaml:17:") != NULL);
    wf_policy_free(p);
}

TEST(parse_errors)
{
    expect_error("policy:\n  mode: block\n  moode: x\n", "t.yaml:3:3:", "unknown key");
    expect_error("policy:\n  mode: blok\n", "t.yaml:2:", "policy.mode");
    expect_error("policy: [1]\n", "t.yaml:1:", "expected a mapping");
    expect_error("policy:\n  thresholds: {sqli: 1.5}\n", "t.yaml:2:", "probability");
    expect_error("policy:\n  thresholds: {sqli: abc}\n", "t.yaml:2:", "probability");
    expect_error("policy:\n  thresholds: [0.5]\n", "t.yaml:2:", "mapping of class names");
    expect_error("policy:\n  allow: [10.0.0.0/33]\n", "t.yaml:2:", "10.0.0.0/33");
    expect_error("policy:\n  deny:\n    - 1.2.3.4\n    - nope\n", "t.yaml:4:7:", "\"nope\"");
    expect_error("policy:\n  exclusions: [{kind: qury}]\n", "t.yaml:2:", "unknown unit kind");
    expect_error("policy:\n  exclusions: [{}]\n", "t.yaml:2:", "at least one");
    expect_error("policy:\n  exclusions: [{kind: query, nam: q}]\n", "t.yaml:2:", "unknown key");
    expect_error("policy:\n  ban: {detections: -1}\n", "t.yaml:2:", "detections");
    expect_error("policy:\n  ban: {window: soon}\n", "t.yaml:2:", "window");
    expect_error("policy:\n  ban: {counting: exact}\n", "t.yaml:2:", "counting");
    expect_error("policy:\n  ban: {ipv6_prefix: 16}\n", "t.yaml:2:", "ipv6_prefix");
    expect_error("policy:\n  routes:\n    - path: /a\n    - path: /b\n      upstrem: x\n", "t.yaml:5:7:",
                 "unknown key (known keys: name, host, path");
    expect_error("policy:\n  routes:\n    - path: api\n", "t.yaml:3:", "starting with '/'");
    expect_error("policy:\n  routes:\n    - host: \"a..b\"\n", "t.yaml:3:", "host name");
    expect_error("policy:\n  routes:\n    - host: \"*\"\n", "t.yaml:3:", "host name");
    expect_error("policy:\n  routes:\n    - name: a\n    - name: a\n", "t.yaml:4:", "used twice");
    expect_error("policy:\n  routes:\n    - name: default\n", "t.yaml:3:", "top level");
    expect_error("policy:\n  routes: {a: 1}\n", "t.yaml:2:", "list of routes");
    expect_error("policy:\n  routes:\n    - mode: tagg\n", "t.yaml:3:", "mode");
}

TEST(route_precedence)
{
    wf_conf_err_t err;
    wf_policy_t *p = load(full_yaml, &err, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    char e[256];
    CHECK_EQ_INT(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)), 0);
#define ROUTE(h, path) wf_policy_route(p, WF_STR(h), WF_STR(path))->name
    CHECK_EQ_STR(ROUTE("api.example.com", "/api"), "api");
    CHECK_EQ_STR(ROUTE("API.Example.COM:8443", "/api/users"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com.", "/api/"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/api/v2"), "route4");       /* longest prefix */
    CHECK_EQ_STR(ROUTE("api.example.com", "/api/v2/x"), "route4");
    CHECK_EQ_STR(ROUTE("api.example.com", "/api/v2x"), "api");         /* segment boundary */
    CHECK_EQ_STR(ROUTE("api.example.com", "/apix"), "wild");           /* not /api: the wildcard's / */
    CHECK_EQ_STR(ROUTE("api.example.com", "/static/a.css"), "wild");   /* a host route before any host */
    CHECK_EQ_STR(ROUTE("www.example.com", "/api"), "wild");
    CHECK_EQ_STR(ROUTE("a.b.example.com", "/"), "wild");
    CHECK_EQ_STR(ROUTE("x.eu.example.com", "/"), "wild-deep");         /* longer wildcard suffix */
    CHECK_EQ_STR(ROUTE("example.com", "/static/x"), "static");         /* *.example.com is not example.com */
    CHECK_EQ_STR(ROUTE("other.org", "/static/"), "static");
    CHECK_EQ_STR(ROUTE("other.org", "/static"), "default");            /* "/static/" needs the slash */
    CHECK_EQ_STR(ROUTE("other.org", "/dup"), "first");                 /* a tie goes to the first written */
    CHECK_EQ_STR(ROUTE("[2001:db8::1]:80", "/dup/x"), "first");
    CHECK_EQ_STR(ROUTE("", "/"), "default");
    CHECK_EQ_STR(wf_policy_route(p, WF_STR_NULL, WF_STR("/static/x"))->name, "static"); /* no Host */
    CHECK_EQ_STR(wf_policy_route(p, WF_STR_NULL, WF_STR_NULL)->name, "default");
    CHECK_EQ_STR(ROUTE("evilexample.com", "/"), "default");
    /* the path as the upstream will resolve it: escapes, dot segments, repeated slashes */
    CHECK_EQ_STR(ROUTE("api.example.com", "/%61pi/users"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/static/../api/x"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/x/%2e%2E/api"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/x%2F..%2Fapi"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "//api//v2/"), "route4");
    CHECK_EQ_STR(ROUTE("api.example.com", "/api/./v2"), "route4");
    CHECK_EQ_STR(ROUTE("api.example.com", "/api/v2/.."), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/../../api"), "api");
    CHECK_EQ_STR(ROUTE("api.example.com", "/%2561pi"), "wild");      /* decoded once, as upstreams do */
    CHECK_EQ_STR(ROUTE("other.org", "/static/."), "static");
    CHECK_EQ_STR(ROUTE("other.org", "/static/x/.."), "static");
    CHECK_EQ_STR(ROUTE("other.org", "/static/.."), "default");
    CHECK_EQ_STR(ROUTE("other.org", "/stat%69c/%"), "static");         /* a broken escape stays as it is */
    {
        static char longp[20000];
        memset(longp, 'a', sizeof(longp) - 1);
        memcpy(longp, "/x/", 3);
        memcpy(longp + sizeof(longp) - 12, "/../../dup/", 11);
        longp[sizeof(longp) - 1] = 0; /* "/x/aaaa.../../../dup/" past the stack buffer: "/dup/" */
        CHECK_EQ_STR(wf_policy_route(p, WF_STR("other.org"), wf_str_c(longp))->name, "first");
    }
    CHECK_EQ_INT(wf_policy_route(p, WF_STR("api.example.com"), WF_STR("/api"))->mode, WF_MODE_BLOCK);
    CHECK_EQ_INT(wf_policy_route(p, WF_STR("other.org"), WF_STR("/static/"))->mode, WF_MODE_OFF);
#undef ROUTE
    wf_policy_free(p);
}

static wf_unit_t unit(wf_unit_kind_t k, const char *name)
{
    wf_unit_t u = { .kind = k, .name = wf_str_c(name), .text = WF_STR("x") };
    return u;
}

TEST(thresholds_and_exclusions)
{
    wf_conf_err_t err;
    wf_policy_t *p = load(full_yaml, &err, NULL);
    CHECK(p != NULL);
    if (!p)
        return;
    char e[256];
    CHECK_EQ_INT(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)), 0);
    const wf_route_t *api = &p->routes[0], *wild = &p->routes[1], *stat = &p->routes[3];
    /* model, then top level, then the route's own */
    CHECK(p->root.thresholds[1] == 0.9f && p->root.thresholds[2] == 0.95f && p->root.thresholds[3] == 0.7f);
    CHECK(api->thresholds[1] == 0.8f && api->thresholds[2] == 0.95f && api->thresholds[3] == 0.7f);
    CHECK(wild->thresholds[1] == 0.9f);

    float th[4];
    wf_unit_t u = unit(WF_UNIT_QUERY, "q");
    CHECK(wf_policy_unit_thresholds(p, api, &u, th)); /* inherited top-level exclusion */
    CHECK(isinf(th[1]) && th[2] == 0.95f && th[3] == 0.7f);
    u = unit(WF_UNIT_QUERY, "q2");
    CHECK(!wf_policy_unit_thresholds(p, api, &u, th));
    CHECK(th[1] == 0.8f);
    u = unit(WF_UNIT_FORM, "q");                       /* another kind */
    CHECK(!wf_policy_unit_thresholds(p, api, &u, th));
    u = unit(WF_UNIT_HEADER, "user-agent");            /* every class */
    CHECK(wf_policy_unit_thresholds(p, &p->root, &u, th));
    CHECK(isinf(th[1]) && isinf(th[2]) && isinf(th[3]) && th[0] == 0.5f);
    u = unit(WF_UNIT_JSON, "user.tags[3]");            /* prefix with '*' */
    CHECK(wf_policy_unit_thresholds(p, api, &u, th));
    CHECK(isinf(th[2]) && th[1] == 0.8f);
    u = unit(WF_UNIT_JSON, "user.tags");
    CHECK(!wf_policy_unit_thresholds(p, api, &u, th));
    u = (wf_unit_t){ .kind = WF_UNIT_JSON, .name = WF_STR_NULL, .text = WF_STR("x") }; /* a nameless unit */
    CHECK(!wf_policy_unit_thresholds(p, api, &u, th));
    u = unit(WF_UNIT_JSON, "user.tags[3]");            /* the route's own exclusion only on its route */
    CHECK(!wf_policy_unit_thresholds(p, wild, &u, th));
    u = unit(WF_UNIT_QUERY, "q");                      /* inherit_exclusions: false */
    CHECK(wf_policy_unit_thresholds(p, stat, &u, th));
    CHECK(th[1] == 0.9f && isinf(th[3]));
    wf_policy_free(p);
}

TEST(exclusion_star_alone)
{
    wf_conf_err_t err;
    char e[256];
    wf_policy_t *p = load("policy:\n  exclusions: [{kind: cookie, name: \"*\", classes: [xss]}]\n", &err, NULL);
    CHECK(p != NULL);
    CHECK_EQ_INT(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)), 0);
    float th[4];
    wf_unit_t u = { .kind = WF_UNIT_COOKIE, .name = WF_STR_NULL, .text = WF_STR("x") };
    CHECK(wf_policy_unit_thresholds(p, &p->root, &u, th));
    CHECK(isinf(th[2]) && th[1] == 0.5f);
    u.kind = WF_UNIT_QUERY;
    CHECK(!wf_policy_unit_thresholds(p, &p->root, &u, th));
    wf_policy_free(p);
}

TEST(bind_errors)
{
    wf_conf_err_t err;
    char e[256];
    wf_policy_t *p = load("policy:\n  routes:\n    - path: /a\n      thresholds: {sqlx: 0.5}\n", &err, NULL);
    CHECK(p != NULL);
    CHECK(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)) != 0);
    CHECK(strstr(e, "t.yaml:3:") && strstr(e, "unknown class \"sqlx\"") && strstr(e, "sqli, xss, cmdi"));
    wf_policy_free(p);
    p = load("policy:\n  exclusions: [{classes: [benign]}]\n", &err, NULL);
    CHECK(p != NULL);
    CHECK(wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)) != 0);
    CHECK(strstr(e, "benign class") != NULL);
    wf_policy_free(p);
}

TEST(cidr)
{
    wf_cidr_t n;
    wf_sockaddr_t a4 = addr("192.0.2.77:1"), b4 = addr("192.0.3.1:1"), m4 = addr("[::ffff:192.0.2.77]:1");
    wf_sockaddr_t a6 = addr("[2001:db8::1]:1"), b6 = addr("[2001:db9::1]:1");
    char s[64];

    CHECK_EQ_INT(wf_cidr_parse("192.0.2.0/24", &n), 0);
    CHECK(wf_cidr_match(&n, &a4) && !wf_cidr_match(&n, &b4) && wf_cidr_match(&n, &m4) && !wf_cidr_match(&n, &a6));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.200/24", &n), 0); /* host bits cleared */
    wf_cidr_format(&n, s, sizeof(s));
    CHECK_EQ_STR(s, "192.0.2.0/24");
    CHECK_EQ_INT(wf_cidr_parse("0.0.0.0/0", &n), 0);
    CHECK(wf_cidr_match(&n, &a4) && wf_cidr_match(&n, &m4) && !wf_cidr_match(&n, &a6));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.77", &n), 0);
    CHECK(n.bits == 32 && wf_cidr_match(&n, &a4) && wf_cidr_match(&n, &m4));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.76/31", &n), 0);
    CHECK(wf_cidr_match(&n, &a4));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.78/31", &n), 0);
    CHECK(!wf_cidr_match(&n, &a4));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.64/27", &n), 0);   /* .64-.95 */
    CHECK(wf_cidr_match(&n, &a4));
    CHECK_EQ_INT(wf_cidr_parse("192.0.2.96/27", &n), 0);
    CHECK(!wf_cidr_match(&n, &a4));

    CHECK_EQ_INT(wf_cidr_parse("2001:db8::/32", &n), 0);
    CHECK(wf_cidr_match(&n, &a6) && !wf_cidr_match(&n, &b6) && !wf_cidr_match(&n, &a4));
    CHECK_EQ_INT(wf_cidr_parse("::/0", &n), 0);
    CHECK(wf_cidr_match(&n, &a6) && wf_cidr_match(&n, &b6) && !wf_cidr_match(&n, &a4) && !wf_cidr_match(&n, &m4));
    CHECK_EQ_INT(wf_cidr_parse("2001:db8::1/128", &n), 0);
    CHECK(wf_cidr_match(&n, &a6));
    CHECK_EQ_INT(wf_cidr_parse("2001:db8::2/128", &n), 0);
    CHECK(!wf_cidr_match(&n, &a6));
    CHECK_EQ_INT(wf_cidr_parse("2001:db8::/127", &n), 0);
    CHECK(wf_cidr_match(&n, &a6));
    CHECK_EQ_INT(wf_cidr_parse("::ffff:192.0.2.0/120", &n), 0); /* mapped network = 192.0.2.0/24 */
    CHECK(n.family == AF_INET && n.bits == 24 && wf_cidr_match(&n, &a4) && wf_cidr_match(&n, &m4));

    const char *bad[] = { "", "/24", "192.0.2.0/", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/2a", "192.0.2/24",
                          "192.0.2.0/-1", "192.0.2.0/ 24", "1.2.3.4/0024", "example.com", "1.2.3.4/24/1", NULL };
    for (int i = 0; bad[i]; i++) {
        int rc = wf_cidr_parse(bad[i], &n);
        if (rc != -EINVAL)
            fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, -EINVAL);
    }
    CHECK_EQ_INT(wf_cidr_parse(NULL, &n), -EINVAL);
}

TEST(client_lists)
{
    wf_conf_err_t err;
    wf_policy_t *p = load("policy:\n  allow: [10.0.0.0/8, \"2001:db8::/32\"]\n  deny: [10.9.0.0/16]\n", &err, NULL);
    CHECK(p != NULL);
    wf_sockaddr_t a = addr("10.1.1.1:5"), d = addr("10.9.1.1:5"), n = addr("11.0.0.1:5"), a6 = addr("[2001:db8::5]:5");
    CHECK_EQ_INT(wf_policy_client(p, &a), WF_CLIENT_ALLOW);
    CHECK_EQ_INT(wf_policy_client(p, &d), WF_CLIENT_DENY); /* deny wins */
    CHECK_EQ_INT(wf_policy_client(p, &n), WF_CLIENT_DEFAULT);
    CHECK_EQ_INT(wf_policy_client(p, &a6), WF_CLIENT_ALLOW);
    wf_policy_free(p);
}

/* ---- bans ---- */

static wf_ban_conf_t ban_conf(uint32_t det, uint64_t window, uint64_t duration, uint32_t max, bool fixed)
{
    return (wf_ban_conf_t){ .detections = det, .window_ms = window, .duration_ms = duration, .max_clients = max,
                            .fixed_window = fixed };
}

TEST(bans_threshold_window_expiry)
{
    wf_ban_conf_t bc = ban_conf(3, 1000, 5000, 1000, false);
    wf_bans_t *b = wf_bans_new(&bc);
    CHECK(b != NULL);
    wf_sockaddr_t c = addr("198.51.100.1:1"), c2 = addr("198.51.100.2:1");
    uint64_t t = wf_now_ms() + 100000, until = 0;
    uint32_t cnt = 0;
    CHECK(!wf_bans_check(b, &c, t, NULL));
    CHECK_EQ_INT(wf_bans_record(b, &c, t, &until, &cnt), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 100, &until, &cnt), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c2, t + 150, &until, &cnt), 0); /* another client counts apart */
    CHECK(!wf_bans_check(b, &c, t + 200, NULL));
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 900, &until, &cnt), 1);
    CHECK_EQ_INT(until, t + 900 + 5000);
    CHECK_EQ_INT(cnt, 3);
    uint64_t u2 = 0;
    CHECK(wf_bans_check(b, &c, t + 1000, &u2));
    CHECK_EQ_INT(u2, until);
    CHECK(!wf_bans_check(b, &c2, t + 1000, NULL));
    CHECK(wf_bans_check(b, &c, t + 5899, NULL));
    CHECK(!wf_bans_check(b, &c, t + 5900, NULL));                 /* expired */
    wf_bans_stats_t st;
    wf_bans_stats(b, t + 5900, &st);
    CHECK_EQ_INT(st.active, 0);
    CHECK_EQ_INT(st.started, 1);
    CHECK_EQ_INT(st.refused, 2);

    /* spread over more than the sliding window: no ban */
    t += 100000;
    CHECK_EQ_INT(wf_bans_record(b, &c, t, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1500, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 3000, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 4500, NULL, NULL), 0);
    /* sliding: the previous window's 2 count for the part of it still within the last 1000 ms */
    t += 100000;
    CHECK_EQ_INT(wf_bans_record(b, &c, t, NULL, NULL), 0);             /* window starts at t */
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 950, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1010, NULL, NULL), 0);      /* 1 + 2 * 0.99 < 3 */
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1020, NULL, &cnt), 1);      /* 2 + 2 * 0.98 >= 3 */
    CHECK_EQ_INT(cnt, 3);
    wf_bans_free(b);

    /* fixed windows: the same timing does not ban */
    bc.fixed_window = true;
    b = wf_bans_new(&bc);
    CHECK_EQ_INT(wf_bans_record(b, &c, t, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 950, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1010, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1020, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1030, NULL, NULL), 1);
    wf_bans_free(b);

    /* detections 0: bans off */
    bc.detections = 0;
    b = wf_bans_new(&bc);
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(wf_bans_record(b, &c, t + i, NULL, NULL), 0);
    CHECK(!wf_bans_check(b, &c, t + 10, NULL));
    wf_bans_free(b);
}

static void count_ban(const wf_sockaddr_t *client, uint64_t until, uint32_t det, void *arg)
{
    (*(int *)arg)++;
}

TEST(bans_add_remove_mapped)
{
    wf_ban_conf_t bc = ban_conf(2, 1000, 5000, 1000, false);
    wf_bans_t *b = wf_bans_new(&bc);
    wf_sockaddr_t c = addr("203.0.113.9:1"), m = addr("[::ffff:203.0.113.9]:2"), v6 = addr("[2001:db8::9]:3");
    uint64_t t = wf_now_ms();
    CHECK_EQ_INT(wf_bans_add(b, &m, t, 60000), 0);
    CHECK(wf_bans_check(b, &c, t + 1, NULL)); /* the mapped address is the same client */
    CHECK_EQ_INT(wf_bans_add(b, &v6, t, 60000), 0);
    CHECK(wf_bans_check(b, &v6, t + 1, NULL));
    int n = 0;
    wf_bans_foreach(b, t + 1, count_ban, &n);
    CHECK_EQ_INT(n, 2);
    CHECK_EQ_INT(wf_bans_remove(b, &c), 1);
    CHECK(!wf_bans_check(b, &c, t + 2, NULL));
    CHECK_EQ_INT(wf_bans_remove(b, &c), 0);
    CHECK_EQ_INT(wf_bans_add(b, &c, t, 0), -EINVAL);
    /* removing forgets detections */
    CHECK_EQ_INT(wf_bans_record(b, &c, t, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_remove(b, &c), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 1, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &c, t + 2, NULL, NULL), 1);
    wf_bans_free(b);
}

TEST(bans_ipv6_prefix)
{
    wf_ban_conf_t bc = ban_conf(2, 1000, 60000, 1000, false);
    bc.ipv6_prefix = 64;
    wf_bans_t *b = wf_bans_new(&bc);
    CHECK_EQ_INT(wf_bans_ipv6_prefix(b), 64);
    wf_sockaddr_t a1 = addr("[2001:db8:1:2::1]:1"), a2 = addr("[2001:db8:1:2:ffff::9]:1"),
                  other = addr("[2001:db8:1:3::1]:1"), v4 = addr("192.0.2.1:1"), v4b = addr("192.0.2.2:1");
    uint64_t t = wf_now_ms();
    CHECK_EQ_INT(wf_bans_record(b, &a1, t, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &other, t, NULL, NULL), 0);
    CHECK_EQ_INT(wf_bans_record(b, &a2, t + 1, NULL, NULL), 1); /* same /64 as a1 */
    CHECK(wf_bans_check(b, &a1, t + 2, NULL) && wf_bans_check(b, &a2, t + 2, NULL));
    CHECK(!wf_bans_check(b, &other, t + 2, NULL));
    CHECK_EQ_INT(wf_bans_record(b, &v4, t, NULL, NULL), 0); /* IPv4 stays per address */
    CHECK_EQ_INT(wf_bans_record(b, &v4b, t, NULL, NULL), 0);
    CHECK(!wf_bans_check(b, &v4, t + 2, NULL));
    CHECK_EQ_INT(wf_bans_remove(b, &a2), 1);
    CHECK(!wf_bans_check(b, &a1, t + 3, NULL));
    bc.ipv6_prefix = 48; /* a reload cannot change it */
    wf_bans_configure(b, &bc);
    CHECK_EQ_INT(wf_bans_ipv6_prefix(b), 64);
    wf_bans_free(b);
}

TEST(bans_eviction)
{
    wf_ban_conf_t bc = ban_conf(2, 1000, 60000, 4, false); /* one shard of 4 */
    wf_bans_t *b = wf_bans_new(&bc);
    uint64_t t = wf_now_ms();
    wf_sockaddr_t a[8];
    char s[32];
    for (int i = 0; i < 8; i++) {
        snprintf(s, sizeof(s), "10.0.0.%d:1", i + 1);
        a[i] = addr(s);
    }
    CHECK_EQ_INT(wf_bans_add(b, &a[0], t, 60000), 0);      /* oldest, but banned */
    for (int i = 1; i < 4; i++)
        CHECK_EQ_INT(wf_bans_record(b, &a[i], t + i, NULL, NULL), 0);
    /* a fifth client evicts the oldest client that is not banned: a[1] */
    CHECK_EQ_INT(wf_bans_record(b, &a[4], t + 10, NULL, NULL), 0);
    wf_bans_stats_t st;
    wf_bans_stats(b, t + 10, &st);
    CHECK_EQ_INT(st.evicted, 1);
    CHECK(wf_bans_check(b, &a[0], t + 11, NULL));
    CHECK_EQ_INT(wf_bans_record(b, &a[2], t + 12, NULL, NULL), 1); /* a[2] kept its first detection */
    CHECK_EQ_INT(wf_bans_record(b, &a[1], t + 13, NULL, NULL), 0); /* a[1] was forgotten: starts again */
    wf_bans_stats(b, t + 13, &st);
    CHECK_EQ_INT(st.evicted, 2);
    /* every entry banned: the oldest ban goes */
    for (int i = 4; i < 8; i++)
        CHECK_EQ_INT(wf_bans_add(b, &a[i], t + 20 + i, 60000), 0);
    wf_bans_stats(b, t + 30, &st);
    CHECK_EQ_INT(st.active, 4);
    CHECK(!wf_bans_check(b, &a[0], t + 30, NULL));
    /* a smaller max_clients on reload keeps the most recent */
    bc.max_clients = 2;
    wf_bans_configure(b, &bc);
    wf_bans_stats(b, t + 30, &st);
    CHECK_EQ_INT(st.active, 2);
    CHECK(wf_bans_check(b, &a[7], t + 30, NULL) && wf_bans_check(b, &a[6], t + 30, NULL));
    CHECK(!wf_bans_check(b, &a[5], t + 30, NULL));
    bc.max_clients = 100;
    wf_bans_configure(b, &bc);
    CHECK(wf_bans_check(b, &a[7], t + 30, NULL));
    CHECK_EQ_INT(wf_bans_add(b, &a[1], t + 31, 60000), 0);
    wf_bans_stats(b, t + 31, &st);
    CHECK_EQ_INT(st.active, 3);
    wf_bans_free(b);
}

#define THREADS 4
#define CLIENTS 500

static wf_bans_t *shared_bans;
static uint64_t shared_t;
static int started_by[THREADS];

static void *recorder(void *arg)
{
    int id = (int)(intptr_t)arg;
    char s[64];
    for (int round = 0; round < 4; round++)
        for (int i = 0; i < CLIENTS; i++) {
            snprintf(s, sizeof(s), "[2001:db8::%x]:1", i);
            wf_sockaddr_t a = addr(s);
            started_by[id] += wf_bans_record(shared_bans, &a, shared_t, NULL, NULL);
            wf_bans_check(shared_bans, &a, shared_t, NULL);
        }
    return NULL;
}

TEST(bans_concurrent)
{
    /* THREADS * 4 detections per client, 16 ban one: every client banned exactly once */
    wf_ban_conf_t bc = ban_conf(THREADS * 4, 60000, 60000, 65536, false);
    shared_bans = wf_bans_new(&bc);
    shared_t = wf_now_ms();
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        pthread_create(&th[i], NULL, recorder, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    int total = 0;
    for (int i = 0; i < THREADS; i++)
        total += started_by[i];
    CHECK_EQ_INT(total, CLIENTS);
    wf_bans_stats_t st;
    wf_bans_stats(shared_bans, shared_t, &st);
    CHECK_EQ_INT(st.active, CLIENTS);
    CHECK_EQ_INT(st.evicted, 0);
    wf_bans_free(shared_bans);
}

TEST(bans_metrics)
{
    wf_ban_conf_t bc = ban_conf(1, 1000, 60000, 100, false);
    wf_bans_t *b = wf_bans_new(&bc);
    wf_sockaddr_t c = addr("192.0.2.9:1");
    uint64_t t = wf_now_ms();
    CHECK_EQ_INT(wf_bans_record(b, &c, t, NULL, NULL), 1);
    CHECK(wf_bans_check(b, &c, t + 1, NULL));
    CHECK_EQ_INT(wf_bans_metrics_register(b), 0);
    wf_buf_t out;
    wf_buf_init(&out, 4096, 1 << 20);
    CHECK_EQ_INT(wf_metrics_render(&out), 0);
    wf_buf_append(&out, "", 1);
    const char *s = wf_buf_rptr(&out);
    CHECK(strstr(s, "# TYPE wafer_bans_active gauge\nwafer_bans_active 1\n") != NULL);
    CHECK(strstr(s, "wafer_bans_started_total 1\n") != NULL);
    CHECK(strstr(s, "wafer_bans_refused_total 1\n") != NULL);
    CHECK(strstr(s, "wafer_bans_evicted_total 0\n") != NULL);
    wf_metrics_unregister(b);
    wf_buf_free(&out);
    wf_bans_free(b);
}

TEST_MAIN()
