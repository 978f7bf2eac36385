/* Upstream pools: the `upstream:` pool keys and the `upstreams:` section (see wafer/upstream.h). */
#include "wafer/core.h"
#include "wafer/upstream.h"

#include <stdio.h>
#include <stdlib.h>

#define DAY_MS (24ull * 3600 * 1000)

const char *const wf_upstream_member_keys[] = { "address", "weight", "backup", NULL };
const char *const wf_upstream_pool_keys[] = { "balance", "hash_key", "health_check", "passive", "retries", NULL };

static const char *const pool_keys_named[] = { "servers", "balance", "hash_key", "health_check", "passive", "retries",
                                               NULL };
static const char *const health_keys[] = { "path", "host", "interval", "timeout", "expect_status", "rise", "fall", NULL };
static const char *const passive_keys[] = { "max_fails", "fail_timeout", NULL };
static const char *const balance_names[] = { "round_robin", "least_conn", "hash", NULL };

static void pool_defaults(wf_upstream_pool_conf_t *p)
{
    memset(p, 0, sizeof(*p));
    p->balance = WF_BALANCE_ROUND_ROBIN;
    p->max_fails = 1;
    p->fail_timeout_ms = 10000;
    p->retries = -1;
    p->health.interval_ms = 5000;
    p->health.timeout_ms = 2000;
    p->health.rise = 2;
    p->health.fall = 3;
}

static void pool_free(wf_upstream_pool_conf_t *p)
{
    free(p->name);
    for (size_t i = 0; i < p->nmembers; i++)
        free(p->members[i].address);
    free(p->members);
    free(p->hash_header);
    free(p->health.path);
    free(p->health.host);
}

void wf_upstream_pools_free(wf_upstream_pool_conf_t *pools, size_t npools)
{
    if (!pools)
        return;
    for (size_t i = 0; i < npools; i++)
        pool_free(&pools[i]);
    free(pools);
}

int wf_upstream_pool_index(const wf_upstream_pool_conf_t *pools, size_t npools, const char *name)
{
    for (size_t i = 0; i < npools; i++)
        if (!strcmp(pools[i].name, name))
            return (int)i;
    return -1;
}

static int dup_str(char **dst, const char *s)
{
    free(*dst);
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

/* weight and backup of one server entry (its address was parsed already). */
static int parse_member_opts(const wf_conf_t *c, const wf_conf_node_t *it, wf_upstream_member_conf_t *m,
                             wf_conf_err_t *err)
{
    int64_t wt = 1;
    int rc;
    if ((rc = wf_conf_int(c, it, "weight", 1, WF_UPSTREAM_MAX_WEIGHT, &wt, err)) ||
        (rc = wf_conf_bool(c, it, "backup", &m->backup, err)))
        return rc;
    m->weight = (uint32_t)wt;
    return 0;
}

static int parse_servers(const wf_conf_t *c, const wf_conf_node_t *sec, wf_upstream_pool_conf_t *p, wf_conf_err_t *err)
{
    const wf_conf_node_t *n = wf_conf_get(sec, "servers");
    if (!n)
        return wf_conf_errorf(c, sec, err, "missing key \"servers\"");
    if (n->type != WF_CONF_SEQ || n->nitems == 0)
        return wf_conf_errorf(c, n, err, "expected a non-empty list of {address: host:port, weight: N}");
    if (n->nitems > WF_UPSTREAM_MAX_MEMBERS)
        return wf_conf_errorf(c, n, err, "at most %d servers per pool", WF_UPSTREAM_MAX_MEMBERS);
    p->members = calloc(n->nitems, sizeof(*p->members));
    if (!p->members)
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i], *a;
        wf_upstream_member_conf_t *m = &p->members[p->nmembers++];
        if (it->type != WF_CONF_MAP)
            return wf_conf_errorf(c, it, err, "expected a mapping such as {address: 127.0.0.1:8081}");
        int rc = wf_conf_check_keys(c, it, wf_upstream_member_keys, err);
        if (rc)
            return rc;
        if (!(a = wf_conf_get(it, "address")))
            return wf_conf_errorf(c, it, err, "missing key \"address\"");
        if (a->type != WF_CONF_SCALAR || wf_sockaddr_parse(a->value, &m->addr))
            return wf_conf_errorf(c, a, err, "expected host:port or [v6]:port, got \"%s\"", a->value ? a->value : "");
        if ((rc = dup_str(&m->address, a->value)) || (rc = parse_member_opts(c, it, m, err)))
            return rc;
    }
    return 0;
}

/* The pool keys shared by `upstream:` and each `upstreams:` entry. */
static int parse_pool_opts(const wf_conf_t *c, const wf_conf_node_t *sec, wf_upstream_pool_conf_t *p, wf_conf_err_t *err)
{
    int rc, bal = (int)p->balance;
    if ((rc = wf_conf_enum(c, sec, "balance", balance_names, &bal, err)))
        return rc;
    p->balance = (wf_balance_t)bal;
    const char *hk = NULL;
    if ((rc = wf_conf_str(c, sec, "hash_key", &hk, err)))
        return rc;
    if (hk) {
        if (!strcmp(hk, "client_ip")) {
            free(p->hash_header);
            p->hash_header = NULL;
        } else if (!strncmp(hk, "header:", 7) && hk[7]) {
            for (const char *q = hk + 7; *q; q++)
                if (!(*q > 32 && *q < 127 && !strchr("\"(),/:;<=>?@[\\]{}", *q)))
                    return wf_conf_errorf(c, wf_conf_get(sec, "hash_key"), err, "\"%s\" is not a valid header name",
                                          hk + 7);
            if ((rc = dup_str(&p->hash_header, hk + 7)))
                return rc;
        } else {
            return wf_conf_errorf(c, wf_conf_get(sec, "hash_key"), err,
                                  "expected client_ip or header:NAME, got \"%s\"", hk);
        }
        if (p->balance != WF_BALANCE_HASH)
            return wf_conf_errorf(c, wf_conf_get(sec, "hash_key"), err, "hash_key needs balance: hash");
    }
    int64_t r = p->retries;
    if ((rc = wf_conf_int(c, sec, "retries", 0, WF_UPSTREAM_MAX_MEMBERS, &r, err)))
        return rc;
    p->retries = (int)r;

    const wf_conf_node_t *n = wf_conf_get(sec, "passive");
    if (n) {
        if (n->type != WF_CONF_MAP)
            return wf_conf_errorf(c, n, err, "expected a mapping such as {max_fails: 1, fail_timeout: 10s}");
        int64_t mf = p->max_fails;
        if ((rc = wf_conf_check_keys(c, n, passive_keys, err)) ||
            (rc = wf_conf_int(c, n, "max_fails", 0, 1000000, &mf, err)) ||
            (rc = wf_conf_duration_ms(c, n, "fail_timeout", 1, DAY_MS, &p->fail_timeout_ms, err)))
            return rc;
        p->max_fails = (uint32_t)mf;
    }
    n = wf_conf_get(sec, "health_check");
    if (n) {
        wf_health_conf_t *h = &p->health;
        if (n->type != WF_CONF_MAP)
            return wf_conf_errorf(c, n, err, "expected a mapping such as {path: /health, interval: 5s}");
        if ((rc = wf_conf_check_keys(c, n, health_keys, err)))
            return rc;
        h->enabled = true;
        const char *s = "/";
        if ((rc = wf_conf_str(c, n, "path", &s, err)))
            return rc;
        if (s[0] != '/' || strpbrk(s, " \r\n\t"))
            return wf_conf_errorf(c, wf_conf_get(n, "path"), err, "expected an origin-form path such as /health");
        if ((rc = dup_str(&h->path, s)))
            return rc;
        s = NULL;
        if ((rc = wf_conf_str(c, n, "host", &s, err)))
            return rc;
        if (s) {
            if (!*s || strpbrk(s, " \r\n\t"))
                return wf_conf_errorf(c, wf_conf_get(n, "host"), err, "expected a host name");
            if ((rc = dup_str(&h->host, s)))
                return rc;
        }
        int64_t st = h->expect_status, rise = h->rise, fall = h->fall;
        if ((rc = wf_conf_duration_ms(c, n, "interval", 10, DAY_MS, &h->interval_ms, err)) ||
            (rc = wf_conf_duration_ms(c, n, "timeout", 1, DAY_MS, &h->timeout_ms, err)) ||
            (rc = wf_conf_int(c, n, "expect_status", 100, 599, &st, err)) ||
            (rc = wf_conf_int(c, n, "rise", 1, 1000, &rise, err)) ||
            (rc = wf_conf_int(c, n, "fall", 1, 1000, &fall, err)))
            return rc;
        h->expect_status = (int)st;
        h->rise = (uint32_t)rise;
        h->fall = (uint32_t)fall;
    }
    size_t nprimary = 0;
    for (size_t i = 0; i < p->nmembers; i++)
        nprimary += !p->members[i].backup;
    if (!nprimary)
        return wf_conf_errorf(c, sec, err, "every server is a backup: at least one must not be");
    return 0;
}

int wf_upstream_pools_parse(const wf_conf_t *c, const wf_conf_node_t *root, const wf_upstream_member_conf_t *defaults,
                            size_t ndefaults, wf_upstream_pool_conf_t **pools_out, size_t *npools_out, wf_conf_err_t *err)
{
    *pools_out = NULL;
    *npools_out = 0;
    const wf_conf_node_t *ups = wf_conf_get(root, "upstreams"), *up = wf_conf_get(root, "upstream");
    if (ups && ups->type != WF_CONF_MAP)
        return wf_conf_errorf(c, ups, err, "expected a mapping of pool names to {servers: [...], balance: ...}");
    size_t n = 1 + (ups ? ups->nitems : 0);
    if (n > WF_UPSTREAM_MAX_POOLS)
        return wf_conf_errorf(c, ups, err, "at most %d pools", WF_UPSTREAM_MAX_POOLS);
    wf_upstream_pool_conf_t *pools = calloc(n, sizeof(*pools));
    if (!pools)
        return -ENOMEM;
    size_t np = 0;
    int rc = 0;

    /* the default pool: the `upstream:` section, whose servers were parsed with the server settings */
    wf_upstream_pool_conf_t *p = &pools[np++];
    pool_defaults(p);
    if ((rc = dup_str(&p->name, "default")))
        goto fail;
    p->members = calloc(ndefaults ? ndefaults : 1, sizeof(*p->members));
    if (!p->members) {
        rc = -ENOMEM;
        goto fail;
    }
    const wf_conf_node_t *srv = up ? wf_conf_get(up, "servers") : NULL;
    for (size_t i = 0; i < ndefaults; i++) {
        wf_upstream_member_conf_t *m = &p->members[p->nmembers++];
        m->addr = defaults[i].addr;
        m->weight = 1;
        if ((rc = dup_str(&m->address, defaults[i].address)))
            goto fail;
        if (srv && srv->type == WF_CONF_SEQ && i < srv->nitems && srv->items[i]->type == WF_CONF_MAP &&
            (rc = parse_member_opts(c, srv->items[i], m, err)))
            goto fail;
    }
    if (up && (rc = parse_pool_opts(c, up, p, err)))
        goto fail;

    for (size_t i = 0; ups && i < ups->nitems; i++) {
        const wf_conf_node_t *sec = ups->items[i];
        p = &pools[np++];
        pool_defaults(p);
        if (sec->type != WF_CONF_MAP) {
            rc = wf_conf_errorf(c, sec, err, "expected a mapping such as {servers: [{address: 127.0.0.1:8081}]}");
            goto fail;
        }
        if (wf_upstream_pool_index(pools, np - 1, sec->key) >= 0) {
            rc = wf_conf_errorf(c, sec, err, "pool \"%s\" is defined twice (\"default\" is the upstream section)",
                                sec->key);
            goto fail;
        }
        for (const char *q = sec->key; *q; q++)
            if (!(*q == '-' || *q == '_' || *q == '.' || (*q >= '0' && *q <= '9') || ((*q | 32) >= 'a' && (*q | 32) <= 'z'))) {
                rc = wf_conf_errorf(c, sec, err, "a pool name is letters, digits, '-', '_' and '.'");
                goto fail;
            }
        if ((rc = dup_str(&p->name, sec->key)) || (rc = wf_conf_check_keys(c, sec, pool_keys_named, err)) ||
            (rc = parse_servers(c, sec, p, err)) || (rc = parse_pool_opts(c, sec, p, err)))
            goto fail;
    }
    *pools_out = pools;
    *npools_out = np;
    return 0;
fail:
    wf_upstream_pools_free(pools, np);
    return rc;
}
