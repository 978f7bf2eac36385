/* The firewall policy: the `policy:` section, routes, thresholds and exclusions (include/wafer/policy.h). */
#include "wafer/policy.h"
#include "wafer/http.h"
#include "wafer/tls.h"
#include "wafer/core.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 4096

/* One route in matching order, its host and path lengths computed once. */
struct wf_route_ix {
    const wf_route_t *r;
    const char *host;  /* NULL: any; for a wildcard, the suffix with its dot (".example.com") */
    const char *path;
    uint16_t hlen, plen;
    bool wildcard;
    bool dir;          /* path ends in '/': a plain prefix */
};
#define MAX_LIST 65536 /* entries in one list (exclusions, networks, thresholds) */

static const char *const mode_names[] = { "off", "monitor", "tag", "block", NULL };

const char *wf_mode_name(wf_mode_t m)
{
    return (unsigned)m < WF_ARRAY_LEN(mode_names) - 1 ? mode_names[m] : "?";
}

static int dupstr(char **dst, const char *s)
{
    char *d = strdup(s ? s : "");
    if (!d)
        return -ENOMEM;
    free(*dst);
    *dst = d;
    return 0;
}

static int seq_of(const wf_conf_t *c, const wf_conf_node_t *n, const char *what, wf_conf_err_t *err)
{
    if (n->type != WF_CONF_SEQ)
        return wf_conf_errorf(c, n, err, "expected a list of %s", what);
    if (n->nitems > MAX_LIST)
        return wf_conf_errorf(c, n, err, "too many entries (at most %d)", MAX_LIST);
    return 0;
}

/* ---- values shared by the top level and routes ---- */

static int parse_mode(const wf_conf_t *c, const wf_conf_node_t *map, wf_mode_t *mode, bool *set, wf_conf_err_t *err)
{
    int m = (int)*mode, rc;
    if (!wf_conf_get(map, "mode"))
        return 0;
    if ((rc = wf_conf_enum(c, map, "mode", mode_names, &m, err)))
        return rc;
    *mode = (wf_mode_t)m;
    if (set)
        *set = true;
    return 0;
}

static bool class_name_ok(const char *s)
{
    if (!*s || strlen(s) >= 32)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-' && *s != '.')
            return false;
    return true;
}

/* {class: probability, ...} */
static int parse_thresholds(const wf_conf_t *c, const wf_conf_node_t *n, char ***names, float **values, size_t *count,
                            wf_conf_err_t *err)
{
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping of class names to thresholds, such as {sqli: 0.9}");
    if (n->nitems > WF_MAX_LABELS)
        return wf_conf_errorf(c, n, err, "too many classes (at most %d)", WF_MAX_LABELS);
    *names = calloc(n->nitems ? n->nitems : 1, sizeof(char *));
    *values = calloc(n->nitems ? n->nitems : 1, sizeof(float));
    if (!*names || !*values)
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i];
        if (!class_name_ok(it->key))
            return wf_conf_errorf(c, it, err, "\"%s\" is not a class name", it->key);
        char *end = NULL;
        double v = it->type == WF_CONF_SCALAR && it->value && *it->value ? strtod(it->value, &end) : NAN;
        if (!end || *end || !(v >= 0.0 && v <= 1.0))
            return wf_conf_errorf(c, it, err, "expected a probability in [0, 1], got \"%s\"",
                                  it->type == WF_CONF_SCALAR && it->value ? it->value : "(not a scalar)");
        if (!((*names)[i] = strdup(it->key)))
            return -ENOMEM;
        (*values)[i] = (float)v;
        (*count)++;
    }
    return 0;
}

static int kind_from_name(const char *s)
{
    for (int k = 0; k < WF_UNIT__COUNT; k++)
        if (strcmp(s, wf_unit_kind_name((wf_unit_kind_t)k)) == 0)
            return k;
    return -1;
}

static void exclusion_free(wf_exclusion_t *e)
{
    free(e->name);
    for (size_t i = 0; i < e->nclasses; i++)
        free(e->classes[i]);
    free(e->classes);
}

/* [{kind: query, name: "q", classes: [sqli]}, ...] */
static int parse_exclusions(const wf_conf_t *c, const wf_conf_node_t *n, wf_exclusion_t **out, size_t *count,
                            wf_conf_err_t *err)
{
    static const char *const keys[] = { "kind", "name", "classes", NULL };
    int rc;
    if ((rc = seq_of(c, n, "exclusions such as {kind: query, name: q, classes: [sqli]}", err)))
        return rc;
    if (!(*out = calloc(n->nitems ? n->nitems : 1, sizeof(wf_exclusion_t))))
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i], *v;
        wf_exclusion_t *e = &(*out)[i];
        e->kind = -1;
        (*count)++;
        if (it->type != WF_CONF_MAP)
            return wf_conf_errorf(c, it, err, "expected a mapping such as {kind: query, name: q, classes: [sqli]}");
        if ((rc = wf_conf_check_keys(c, it, keys, err)))
            return rc;
        if (it->nitems == 0)
            return wf_conf_errorf(c, it, err, "an exclusion needs at least one of kind, name, classes "
                                              "(an empty one would silence every detection)");
        const char *s = NULL;
        if ((rc = wf_conf_str(c, it, "kind", &s, err)))
            return rc;
        if (s && (e->kind = kind_from_name(s)) < 0)
            return wf_conf_errorf(c, wf_conf_get(it, "kind"), err,
                                  "unknown unit kind \"%s\" (known: path segment query form json multipart "
                                  "filename cookie header body)", s);
        s = NULL;
        if ((rc = wf_conf_str(c, it, "name", &s, err)))
            return rc;
        if (s) {
            if (!*s || strlen(s) > 1024)
                return wf_conf_errorf(c, wf_conf_get(it, "name"), err, "expected a unit name of 1 to 1024 bytes");
            if (!(e->name = strdup(s)))
                return -ENOMEM;
            if (e->kind == WF_UNIT_HEADER) /* header units are named in lower case */
                for (char *q = e->name; *q; q++)
                    *q = (char)tolower((unsigned char)*q);
        }
        if ((v = wf_conf_get(it, "classes"))) {
            if (v->type == WF_CONF_SCALAR) { /* one class written without brackets */
                if (!class_name_ok(v->value))
                    return wf_conf_errorf(c, v, err, "\"%s\" is not a class name", v->value);
                if (!(e->classes = calloc(1, sizeof(char *))) || !(e->classes[0] = strdup(v->value)))
                    return -ENOMEM;
                e->nclasses = 1;
                continue;
            }
            if ((rc = seq_of(c, v, "class names", err)))
                return rc;
            if (v->nitems == 0 || v->nitems > WF_MAX_LABELS)
                return wf_conf_errorf(c, v, err, "expected 1 to %d class names (leave out classes for every class)",
                                      WF_MAX_LABELS);
            if (!(e->classes = calloc(v->nitems, sizeof(char *))))
                return -ENOMEM;
            for (size_t j = 0; j < v->nitems; j++) {
                const wf_conf_node_t *cn = v->items[j];
                if (cn->type != WF_CONF_SCALAR || !class_name_ok(cn->value))
                    return wf_conf_errorf(c, cn, err, "expected a class name");
                if (!(e->classes[j] = strdup(cn->value)))
                    return -ENOMEM;
                e->nclasses++;
            }
        }
    }
    return 0;
}

static int parse_cidrs(const wf_conf_t *c, const wf_conf_node_t *n, wf_cidr_t **out, size_t *count, wf_conf_err_t *err)
{
    int rc;
    if ((rc = seq_of(c, n, "networks such as 192.0.2.0/24 or 2001:db8::/32", err)))
        return rc;
    if (!(*out = calloc(n->nitems ? n->nitems : 1, sizeof(wf_cidr_t))))
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i];
        if (it->type != WF_CONF_SCALAR || wf_cidr_parse(it->value, &(*out)[i]) < 0)
            return wf_conf_errorf(c, it, err, "expected an address or a network such as 192.0.2.0/24 or "
                                              "2001:db8::/32, got \"%s\"",
                                  it->type == WF_CONF_SCALAR ? it->value : "(not a scalar)");
        (*count)++;
    }
    return 0;
}

/* ---- routes: one parse function per key; add a part's per-route keys here ---- */

typedef int (*route_key_fn)(const wf_conf_t *c, const wf_conf_node_t *route, const wf_conf_node_t *value,
                            wf_route_t *r, wf_conf_err_t *err);

static int rk_name(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                   wf_conf_err_t *err)
{
    if (v->type != WF_CONF_SCALAR || !class_name_ok(v->value))
        return wf_conf_errorf(c, v, err, "expected a route name of letters, digits, '_', '-', '.' (at most 31 bytes)");
    return dupstr(&r->name, v->value);
}

/* A host name, or "*." and a name; stored in lower case without a trailing dot. */
static int rk_host(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                   wf_conf_err_t *err)
{
    const char *s = v->type == WF_CONF_SCALAR ? v->value : "";
    size_t n = strlen(s), i = 0;
    if (n && s[n - 1] == '.')
        n--;
    if (n >= 2 && s[0] == '*' && s[1] == '.')
        i = 2;
    bool ok = n > i && n <= 253;
    for (size_t j = i; ok && j < n; j++) {
        char ch = s[j];
        ok = isalnum((unsigned char)ch) || ch == '-' || ch == '_' || (ch == '.' && j > i && s[j - 1] != '.');
    }
    if (!ok)
        return wf_conf_errorf(c, v, err, "expected a host name such as api.example.com or *.example.com, got \"%s\"", s);
    free(r->host);
    if (!(r->host = strndup(s, n)))
        return -ENOMEM;
    for (char *q = r->host; *q; q++)
        *q = (char)tolower((unsigned char)*q);
    return 0;
}

static int rk_path(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                   wf_conf_err_t *err)
{
    const char *s = v->type == WF_CONF_SCALAR ? v->value : "";
    bool ok = s[0] == '/' && strlen(s) <= 4096;
    for (const char *q = s; ok && *q; q++)
        ok = (unsigned char)*q > 0x20 && *q != 0x7f && *q != '?' && *q != '#';
    if (!ok)
        return wf_conf_errorf(c, v, err, "expected a path prefix starting with '/' (no query, no spaces), got \"%s\"", s);
    return dupstr(&r->path, s);
}

static int rk_mode(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                   wf_conf_err_t *err)
{
    return parse_mode(c, m, &r->mode, &r->mode_set, err);
}

static int rk_thresholds(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                         wf_conf_err_t *err)
{
    return parse_thresholds(c, v, &r->threshold_names, &r->threshold_values, &r->nthresholds, err);
}

static int rk_exclusions(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                         wf_conf_err_t *err)
{
    return parse_exclusions(c, v, &r->excl, &r->nexcl, err);
}

static int rk_inherit(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                      wf_conf_err_t *err)
{
    return wf_conf_bool(c, m, "inherit_exclusions", &r->inherit_exclusions, err);
}

static int rk_access(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                     wf_conf_err_t *err)
{
    return wf_tls_access_parse(c, v, &r->access, err);
}

/* The pool's name; proxy_conf.c checks that it exists. */
static int rk_upstream(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                       wf_conf_err_t *err)
{
    if (v->type != WF_CONF_SCALAR || !*v->value)
        return wf_conf_errorf(c, v, err, "expected the name of a pool (upstream: default, or one under upstreams:)");
    return dupstr(&r->upstream, v->value);
}

static int rk_rate_limit(const wf_conf_t *c, const wf_conf_node_t *m, const wf_conf_node_t *v, wf_route_t *r,
                         wf_conf_err_t *err)
{
    return wf_rate_parse(c, m, "rate_limit", &r->rate_limit, err);
}

static const struct {
    const char *key;
    route_key_fn parse;
} route_keys[] = {
    { "name", rk_name },
    { "host", rk_host },
    { "path", rk_path },
    { "mode", rk_mode },
    { "thresholds", rk_thresholds },
    { "exclusions", rk_exclusions },
    { "inherit_exclusions", rk_inherit },
    { "access", rk_access },
    { "upstream", rk_upstream },
    { "rate_limit", rk_rate_limit },
};

static void route_free(wf_route_t *r)
{
    free(r->name);
    free(r->host);
    free(r->path);
    for (size_t i = 0; i < r->nthresholds; i++)
        free(r->threshold_names[i]);
    free(r->threshold_names);
    free(r->threshold_values);
    for (size_t i = 0; i < r->nexcl; i++)
        exclusion_free(&r->excl[i]);
    free(r->excl);
    free(r->where);
    wf_tls_access_free(r->access);
    free(r->upstream);
}

static int parse_route(const wf_conf_t *c, const wf_conf_node_t *n, size_t index, wf_route_t *r, wf_conf_err_t *err)
{
    char buf[512];
    int rc;
    r->inherit_exclusions = true;
    r->mode = WF_MODE_BLOCK;
    snprintf(buf, sizeof(buf), "%s:%d:%d: %s", wf_conf_file(c), n->line, n->col, n->path ? n->path : "policy.routes");
    if ((rc = dupstr(&r->where, buf)))
        return rc;
    if (n->type != WF_CONF_MAP)
        return wf_conf_errorf(c, n, err, "expected a mapping such as {name: api, path: /api/, mode: monitor}");
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *v = n->items[i];
        size_t k = 0;
        while (k < WF_ARRAY_LEN(route_keys) && strcmp(route_keys[k].key, v->key) != 0)
            k++;
        if (k == WF_ARRAY_LEN(route_keys)) {
            size_t o = 0;
            for (size_t j = 0; j < WF_ARRAY_LEN(route_keys) && o < sizeof(buf); j++)
                o += snprintf(buf + o, sizeof(buf) - o, "%s%s", j ? ", " : "", route_keys[j].key);
            return wf_conf_errorf(c, v, err, "unknown key (known keys: %s)", buf);
        }
        if ((rc = route_keys[k].parse(c, n, v, r, err)))
            return rc;
    }
    if (!r->name) {
        snprintf(buf, sizeof(buf), "route%zu", index);
        if ((rc = dupstr(&r->name, buf)))
            return rc;
    }
    if (!r->path && (rc = dupstr(&r->path, "/")))
        return rc;
    return 0;
}

/* Specificity order: exact host, then wildcard (longest suffix first), then any host; then the longest path;
 * then the order written. */
static int host_rank(const wf_route_t *r)
{
    return !r->host ? 0 : r->host[0] == '*' ? 1 : 2;
}

static const wf_route_t *sort_routes;
static int route_cmp(const void *a, const void *b)
{
    const wf_route_t *x = &sort_routes[*(const size_t *)a], *y = &sort_routes[*(const size_t *)b];
    int hx = host_rank(x), hy = host_rank(y);
    if (hx != hy)
        return hy - hx;
    if (hx == 1 && strlen(x->host) != strlen(y->host))
        return strlen(x->host) < strlen(y->host) ? 1 : -1;
    size_t px = strlen(x->path), py = strlen(y->path);
    if (px != py)
        return px < py ? 1 : -1;
    return *(const size_t *)a < *(const size_t *)b ? -1 : 1;
}

void wf_policy_free(wf_policy_t *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->nthresholds; i++)
        free(p->threshold_names[i]);
    free(p->threshold_names);
    free(p->threshold_values);
    for (size_t i = 0; i < p->nexcl; i++)
        exclusion_free(&p->excl[i]);
    free(p->excl);
    free(p->allow);
    free(p->deny);
    for (size_t i = 0; i < p->nroutes; i++)
        route_free(&p->routes[i]);
    free(p->routes);
    free(p->root.name);
    free(p->root.path);
    free(p->root.where);
    free(p->order);
    free(p);
}

int wf_policy_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_policy_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "mode", "thresholds", "exclusions", "allow", "deny", "ban", "routes", NULL };
    static const char *const ban_keys[] = { "detections", "window", "duration", "max_clients", "counting",
                                            "ipv6_prefix", NULL };
    static const char *const counting[] = { "sliding", "fixed", NULL };
    const wf_conf_node_t *n;
    int rc = -ENOMEM;
    char where[512];
    wf_policy_t *p = calloc(1, sizeof(*p));
    *out = NULL;
    if (!p)
        return -ENOMEM;
    p->mode = WF_MODE_BLOCK;
    p->ban = (wf_ban_conf_t){ .detections = 5, .window_ms = 60000, .duration_ms = 600000, .max_clients = 65536,
                              .ipv6_prefix = 128 };
    if (node && node->type != WF_CONF_MAP) {
        rc = wf_conf_errorf(c, node, err, "expected a mapping");
        goto fail;
    }
    if (node && (rc = wf_conf_check_keys(c, node, keys, err)))
        goto fail;
    if (node) {
        if ((rc = parse_mode(c, node, &p->mode, NULL, err)))
            goto fail;
        if ((n = wf_conf_get(node, "thresholds")) &&
            (rc = parse_thresholds(c, n, &p->threshold_names, &p->threshold_values, &p->nthresholds, err)))
            goto fail;
        if ((n = wf_conf_get(node, "exclusions")) && (rc = parse_exclusions(c, n, &p->excl, &p->nexcl, err)))
            goto fail;
        if ((n = wf_conf_get(node, "allow")) && (rc = parse_cidrs(c, n, &p->allow, &p->nallow, err)))
            goto fail;
        if ((n = wf_conf_get(node, "deny")) && (rc = parse_cidrs(c, n, &p->deny, &p->ndeny, err)))
            goto fail;
        if ((n = wf_conf_get(node, "ban"))) {
            int64_t det = p->ban.detections, maxc = p->ban.max_clients, v6 = p->ban.ipv6_prefix;
            int cnt = 0;
            if ((rc = wf_conf_check_keys(c, n, ban_keys, err)) ||
                (rc = wf_conf_int(c, n, "detections", 0, 1000000, &det, err)) ||
                (rc = wf_conf_duration_ms(c, n, "window", 1, 86400000ull, &p->ban.window_ms, err)) ||
                (rc = wf_conf_duration_ms(c, n, "duration", 1, 365ull * 86400000ull, &p->ban.duration_ms, err)) ||
                (rc = wf_conf_int(c, n, "max_clients", 1, 1 << 26, &maxc, err)) ||
                (rc = wf_conf_enum(c, n, "counting", counting, &cnt, err)) ||
                (rc = wf_conf_int(c, n, "ipv6_prefix", 32, 128, &v6, err)))
                goto fail;
            p->ban.ipv6_prefix = (uint8_t)v6;
            p->ban.detections = (uint32_t)det;
            p->ban.max_clients = (uint32_t)maxc;
            p->ban.fixed_window = cnt == 1;
        }
        if ((n = wf_conf_get(node, "routes"))) {
            if ((rc = seq_of(c, n, "routes such as {name: api, path: /api/, mode: monitor}", err)))
                goto fail;
            if (n->nitems > MAX_ROUTES) {
                rc = wf_conf_errorf(c, n, err, "too many routes (at most %d)", MAX_ROUTES);
                goto fail;
            }
            rc = -ENOMEM;
            if (!(p->routes = calloc(n->nitems ? n->nitems : 1, sizeof(wf_route_t))))
                goto fail;
            for (size_t i = 0; i < n->nitems; i++) {
                wf_route_t *r = &p->routes[p->nroutes++];
                if ((rc = parse_route(c, n->items[i], i, r, err)))
                    goto fail;
                if (!r->mode_set)
                    r->mode = p->mode;
                for (size_t j = 0; j < i; j++)
                    if (strcmp(p->routes[j].name, r->name) == 0) {
                        rc = wf_conf_errorf(c, n->items[i], err, "route name \"%s\" is used twice", r->name);
                        goto fail;
                    }
                if (strcmp(r->name, "default") == 0) {
                    rc = wf_conf_errorf(c, n->items[i], err, "\"default\" names the top level; choose another name");
                    goto fail;
                }
            }
        }
    }
    rc = -ENOMEM;
    size_t *idx = calloc(p->nroutes ? p->nroutes : 1, sizeof(size_t));
    if (!idx || !(p->order = calloc(p->nroutes ? p->nroutes : 1, sizeof(*p->order)))) {
        free(idx);
        goto fail;
    }
    for (size_t i = 0; i < p->nroutes; i++)
        idx[i] = i;
    /* qsort has no context argument in C11; configuration loading is single-threaded */
    sort_routes = p->routes;
    qsort(idx, p->nroutes, sizeof(size_t), route_cmp);
    sort_routes = NULL;
    for (size_t i = 0; i < p->nroutes; i++) {
        const wf_route_t *r = &p->routes[idx[i]];
        struct wf_route_ix *x = &p->order[i];
        x->r = r;
        x->wildcard = r->host && r->host[0] == '*';
        x->host = r->host ? r->host + (x->wildcard ? 1 : 0) : NULL;
        x->hlen = x->host ? (uint16_t)strlen(x->host) : 0;
        x->path = r->path;
        x->plen = (uint16_t)strlen(r->path);
        x->dir = r->path[x->plen - 1] == '/';
    }
    free(idx);

    wf_route_t *root = &p->root;
    snprintf(where, sizeof(where), "%s:%d:%d: policy", wf_conf_file(c), node ? node->line : 1, node ? node->col : 1);
    if (dupstr(&root->name, "default") || dupstr(&root->path, "/") || dupstr(&root->where, where))
        goto fail;
    root->mode = p->mode;
    root->mode_set = true;
    root->threshold_names = p->threshold_names;
    root->threshold_values = p->threshold_values;
    root->nthresholds = p->nthresholds;
    root->excl = p->excl;
    root->nexcl = p->nexcl;
    root->inherit_exclusions = false;
    *out = p;
    return 0;
fail:
    wf_policy_free(p);
    return rc;
}

/* ---- binding class names to the model ---- */

static int class_index(const char *name, const char *const *labels, int nlabels)
{
    for (int i = 0; i < nlabels; i++)
        if (strcmp(name, labels[i]) == 0)
            return i;
    return -1;
}

static int unknown_class(const char *where, const char *what, const char *name, const char *const *labels, int nlabels,
                         char *err, size_t errlen)
{
    char known[256];
    size_t o = 0;
    known[0] = 0;
    for (int i = 1; i < nlabels && o < sizeof(known); i++)
        o += snprintf(known + o, sizeof(known) - o, "%s%s", i > 1 ? ", " : "", labels[i]);
    if (nlabels > 0 && strcmp(name, labels[0]) == 0)
        snprintf(err, errlen, "%s: %s: \"%s\" is the model's benign class, not an attack class (attack classes: %s)",
                 where, what, name, known);
    else
        snprintf(err, errlen, "%s: %s: unknown class \"%s\" (the model's attack classes: %s)", where, what, name, known);
    return -WF_ECONFIG;
}

static int bind_thresholds(const wf_route_t *r, float *th, const char *const *labels, int nlabels, char *err,
                           size_t errlen)
{
    for (size_t i = 0; i < r->nthresholds; i++) {
        int k = class_index(r->threshold_names[i], labels, nlabels);
        if (k <= 0)
            return unknown_class(r->where, "thresholds", r->threshold_names[i], labels, nlabels, err, errlen);
        th[k] = r->threshold_values[i];
    }
    return 0;
}

static int bind_exclusions(const wf_route_t *r, const char *const *labels, int nlabels, char *err, size_t errlen)
{
    uint32_t all = nlabels >= 32 ? ~1u : ((1u << nlabels) - 1) & ~1u;
    for (size_t i = 0; i < r->nexcl; i++) {
        wf_exclusion_t *e = &r->excl[i];
        if (!e->nclasses) {
            e->class_mask = all;
            continue;
        }
        e->class_mask = 0;
        for (size_t j = 0; j < e->nclasses; j++) {
            int k = class_index(e->classes[j], labels, nlabels);
            if (k <= 0)
                return unknown_class(r->where, "exclusions", e->classes[j], labels, nlabels, err, errlen);
            e->class_mask |= 1u << k;
        }
    }
    return 0;
}

int wf_policy_bind(wf_policy_t *p, const char *const *labels, const float *model_thresholds, int nlabels, char *err,
                   size_t errlen)
{
    int rc;
    if (nlabels < 1 || nlabels > WF_MAX_LABELS) {
        snprintf(err, errlen, "policy: the model has %d classes (1 to %d supported)", nlabels, WF_MAX_LABELS);
        return -EINVAL;
    }
    float base[WF_MAX_LABELS];
    for (int i = 0; i < nlabels; i++)
        base[i] = model_thresholds[i];
    if ((rc = bind_thresholds(&p->root, base, labels, nlabels, err, errlen)) ||
        (rc = bind_exclusions(&p->root, labels, nlabels, err, errlen)))
        return rc;
    memcpy(p->root.thresholds, base, sizeof(float) * nlabels);
    for (size_t i = 0; i < p->nroutes; i++) {
        wf_route_t *r = &p->routes[i];
        memcpy(r->thresholds, base, sizeof(float) * nlabels);
        if ((rc = bind_thresholds(r, r->thresholds, labels, nlabels, err, errlen)) ||
            (rc = bind_exclusions(r, labels, nlabels, err, errlen)))
            return rc;
    }
    p->nlabels = nlabels;
    p->bound = true;
    return 0;
}

/* ---- per-request lookups ---- */

/* Host without port and trailing dot. */
static wf_str_t host_name(wf_str_t h)
{
    if (!h.n)
        return h;
    if (h.p[0] == '[') { /* [v6]:port */
        const char *e = memchr(h.p, ']', h.n);
        return e ? wf_str(h.p + 1, (size_t)(e - h.p) - 1) : wf_str(h.p + 1, h.n - 1);
    }
    const char *colon = memchr(h.p, ':', h.n);
    if (colon && !memchr(colon + 1, ':', h.n - (size_t)(colon + 1 - h.p))) /* one colon: host:port */
        h.n = (size_t)(colon - h.p);
    if (h.n && h.p[h.n - 1] == '.')
        h.n--;
    return h;
}

static bool host_matches(const struct wf_route_ix *x, wf_str_t h)
{
    if (x->wildcard) /* "*.example.com": a proper subdomain; x->host is ".example.com" */
        return h.n > x->hlen && wf_str_eq_nocase(wf_str(h.p + h.n - x->hlen, x->hlen), wf_str(x->host, x->hlen));
    return h.n == x->hlen && wf_str_eq_nocase(h, wf_str(x->host, x->hlen));
}

static bool path_matches(const struct wf_route_ix *x, wf_str_t path)
{
    size_t n = x->plen;
    if (path.n < n || memcmp(path.p, x->path, n) != 0)
        return false;
    return x->dir || path.n == n || path.p[n] == '/';
}

/* Routes are matched on the normalised path; this buffer holds it (a longer path: a per-thread buffer). */
#define ROUTE_PATH_BUF 8192

const wf_route_t *wf_policy_route(const wf_policy_t *p, wf_str_t host, wf_str_t raw_path)
{
    char buf[ROUTE_PATH_BUF];
    static __thread char *big;
    static __thread size_t bigcap;
    wf_str_t path = raw_path;
    if (raw_path.n) {
        char *out = buf;
        size_t need = raw_path.n + 2; /* wf_http_path_normalize's room */
        if (need > sizeof(buf)) {
            if (bigcap < need) {
                char *nb = realloc(big, need);
                if (nb) {
                    big = nb;
                    bigcap = need;
                }
            }
            out = bigcap >= need ? big : NULL;
        }
        if (out)
            path = wf_str(out, wf_http_path_normalize(raw_path, out));
    }
    wf_str_t h = host_name(host);
    for (size_t i = 0; i < p->nroutes; i++) {
        const struct wf_route_ix *x = &p->order[i];
        /* the path first: a memcmp that usually fails on its first bytes */
        if (path_matches(x, path) && (!x->host || host_matches(x, h)))
            return x->r;
    }
    return &p->root;
}

wf_client_list_t wf_policy_client(const wf_policy_t *p, const wf_sockaddr_t *client)
{
    for (size_t i = 0; i < p->ndeny; i++)
        if (wf_cidr_match(&p->deny[i], client))
            return WF_CLIENT_DENY;
    for (size_t i = 0; i < p->nallow; i++)
        if (wf_cidr_match(&p->allow[i], client))
            return WF_CLIENT_ALLOW;
    return WF_CLIENT_DEFAULT;
}

static bool exclusion_matches(const wf_exclusion_t *e, const wf_unit_t *u)
{
    if (e->kind >= 0 && (int)u->kind != e->kind)
        return false;
    if (!e->name)
        return true;
    size_t n = strlen(e->name);
    if (n && e->name[n - 1] == '*')
        return u->name.n >= n - 1 && (n == 1 || memcmp(u->name.p, e->name, n - 1) == 0);
    return wf_str_eq(u->name, wf_str(e->name, n));
}

static bool apply_exclusions(const wf_exclusion_t *ex, size_t n, const wf_unit_t *u, float *out, int nlabels)
{
    bool any = false;
    for (size_t i = 0; i < n; i++) {
        if (!exclusion_matches(&ex[i], u))
            continue;
        for (int c = 1; c < nlabels; c++)
            if (ex[i].class_mask & (1u << c)) {
                out[c] = INFINITY;
                any = true;
            }
    }
    return any;
}

bool wf_policy_unit_thresholds(const wf_policy_t *p, const wf_route_t *r, const wf_unit_t *u, float *out)
{
    memcpy(out, r->thresholds, sizeof(float) * p->nlabels);
    bool any = apply_exclusions(r->excl, r->nexcl, u, out, p->nlabels);
    if (r != &p->root && r->inherit_exclusions)
        any |= apply_exclusions(p->excl, p->nexcl, u, out, p->nlabels);
    return any;
}
