/* The server configuration: YAML sections into wf_server_conf_t (see wafer/proxy.h). */
#include "wafer/core.h"
#include "wafer/detect.h"
#include "wafer/misp.h"
#include "wafer/policy.h"
#include "wafer/proxy.h"
#include "wafer/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define KB 1024ull
#define MB (1024ull * 1024)
#define GB (1024ull * 1024 * 1024)
#define DAY_MS (24ull * 3600 * 1000)

void wf_server_conf_defaults(wf_server_conf_t *sc)
{
    memset(sc, 0, sizeof(*sc));
    sc->workers_auto = true;
    sc->log_level = WF_LOG_INFO;
    sc->access_log = WF_ACCESS_LOG_STDOUT;
    sc->up_keepalive = 32;
    sc->up_connect_timeout_ms = 5000;
    sc->up_timeout_ms = 60000;
    sc->up_idle_timeout_ms = 30000;
    sc->xff = true;
    sc->forwarded = false;
    sc->via = true;
    sc->request_id_header = strdup("X-Request-Id");
    sc->trust_request_id = false;
    sc->max_header_bytes = 16 * KB;
    sc->max_headers = 100;
    sc->max_uri = 8 * KB;
    sc->max_body = 1 * GB;
    sc->max_connections = 10000;
    sc->buffer_size = 64 * KB;
    sc->header_timeout_ms = 30000;
    sc->body_timeout_ms = 60000;
    sc->idle_timeout_ms = 75000;
    sc->send_timeout_ms = 60000;
    sc->shutdown_timeout_ms = 30000;
    wf_ratelimit_conf_defaults(&sc->rate_limits);
}

void wf_server_conf_free(wf_server_conf_t *sc)
{
    if (!sc)
        return;
    free(sc->file);
    free(sc->pid_file);
    free(sc->error_log);
    free(sc->access_log_path);
    for (size_t i = 0; i < sc->nlisten; i++) {
        free(sc->listen[i].address);
        wf_tls_server_free(sc->listen[i].tls);
    }
    free(sc->listen);
    for (size_t i = 0; i < sc->nservers; i++)
        free(sc->servers[i].address);
    free(sc->servers);
    wf_upstream_pools_free(sc->pools, sc->npools);
    wf_tls_client_free(sc->up_tls);
    free(sc->request_id_header);
    free(sc->identity_header);
    wf_policy_free(sc->policy);
    wf_detect_conf_free(sc->detect);
    wf_admin_conf_free(&sc->admin);
    wf_secops_conf_free(sc->events);
    wf_misp_conf_free(sc->misp);
    free(sc);
}

static int set_str(char **dst, const char *v)
{
    char *s = v ? strdup(v) : NULL;
    if (v && !s)
        return -ENOMEM;
    free(*dst);
    *dst = s;
    return 0;
}

/* A mapping section: absent is fine (defaults), anything else must be a map. */
static int section(const wf_conf_t *c, const wf_conf_node_t *root, const char *key, const char *const *keys,
                   const wf_conf_node_t **out, wf_conf_err_t *err)
{
    *out = wf_conf_get(root, key);
    if (!*out)
        return 0;
    if ((*out)->type != WF_CONF_MAP)
        return wf_conf_errorf(c, *out, err, "expected a mapping");
    return wf_conf_check_keys(c, *out, keys, err);
}

static int parse_address(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **text,
                         wf_sockaddr_t *addr, wf_conf_err_t *err)
{
    const wf_conf_node_t *n = wf_conf_get(map, key);
    if (!n)
        return wf_conf_errorf(c, map, err, "missing key \"%s\"", key);
    if (n->type != WF_CONF_SCALAR)
        return wf_conf_errorf(c, n, err, "expected host:port or [v6]:port");
    if (wf_sockaddr_parse(n->value, addr))
        return wf_conf_errorf(c, n, err, "expected host:port or [v6]:port, got \"%s\"", n->value);
    return set_str(text, n->value);
}

static int parse_header_name(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **out,
                             wf_conf_err_t *err)
{
    const char *v = NULL;
    int rc = wf_conf_str(c, map, key, &v, err);
    if (rc || !v)
        return rc;
    for (const char *p = v; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        if (!(ch > 32 && ch < 127 && !strchr("\"(),/:;<=>?@[\\]{}", ch)))
            return wf_conf_errorf(c, wf_conf_get(map, key), err, "\"%s\" is not a valid header name", v);
    }
    return set_str(out, *v ? v : NULL);
}

int wf_server_conf_parse(const wf_conf_t *c, wf_server_conf_t *sc, wf_conf_err_t *err)
{
    static const char *const top_keys[] = { "workers", "pid_file", "log", "listen", "upstream", "proxy",
                                            "limits", "timeouts", "shutdown_timeout", "admin", "events", "detection",
                                            "policy", "misp", "upstreams", "rate_limits", "min_rates", NULL };
    static const char *const log_keys[] = { "level", "error_log", "access_log", NULL };
    static const char *const listen_keys[] = { "address", "backlog", "tls", NULL };
    static const char *const up_keys[] = { "servers", "keepalive", "connect_timeout", "timeout", "idle_timeout", "tls",
                                           "balance", "hash_key", "health_check", "passive", "retries", NULL };
    static const char *const *const server_keys = wf_upstream_member_keys;
    static const char *const min_rate_keys[] = { "header", "body", "send", NULL };
    static const char *const proxy_keys[] = { "x_forwarded_for", "forwarded", "via", "request_id_header",
                                              "trust_request_id", "pass_client_identity", "client_identity_header",
                                              NULL };
    static const char *const limit_keys[] = { "max_header_bytes", "max_headers", "max_uri", "max_body",
                                              "max_connections", "buffer_size", "max_connections_total", NULL };
    static const char *const timeout_keys[] = { "header", "body", "idle", "send", NULL };
    static const char *const levels[] = { "debug", "info", "warn", "error", NULL };

    const wf_conf_node_t *root = wf_conf_root(c), *sec, *n;
    int rc;
    if ((rc = set_str(&sc->file, wf_conf_file(c))))
        return rc;
    if ((rc = wf_conf_check_keys(c, root, top_keys, err)))
        return rc;

    if ((n = wf_conf_get(root, "workers"))) {
        if (n->type == WF_CONF_SCALAR && !strcmp(n->value, "auto")) {
            sc->workers_auto = true;
        } else {
            int64_t w = 1;
            if ((rc = wf_conf_int(c, root, "workers", 1, 256, &w, err)))
                return wf_conf_errorf(c, n, err, "expected auto or a number of workers in [1, 256], got \"%s\"",
                                      n->value ? n->value : "a collection");
            sc->workers = (int)w;
            sc->workers_auto = false;
        }
    }
    if (sc->workers_auto) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        sc->workers = ncpu < 1 ? 1 : ncpu > 256 ? 256 : (int)ncpu;
    }
    const char *s = NULL;
    if ((rc = wf_conf_str(c, root, "pid_file", &s, err)))
        return rc;
    if (s && (rc = set_str(&sc->pid_file, *s ? s : NULL)))
        return rc;

    if ((rc = section(c, root, "log", log_keys, &sec, err)))
        return rc;
    if (sec) {
        int lvl = sc->log_level;
        if ((rc = wf_conf_enum(c, sec, "level", levels, &lvl, err)))
            return rc;
        sc->log_level = lvl;
        s = NULL;
        if ((rc = wf_conf_str(c, sec, "error_log", &s, err)))
            return rc;
        if (s && (rc = set_str(&sc->error_log, (!*s || !strcmp(s, "stderr")) ? NULL : s)))
            return rc;
        s = NULL;
        if ((rc = wf_conf_str(c, sec, "access_log", &s, err)))
            return rc;
        if (s) {
            if (!strcmp(s, "stdout")) {
                sc->access_log = WF_ACCESS_LOG_STDOUT;
            } else if (!strcmp(s, "off") || !*s) {
                sc->access_log = WF_ACCESS_LOG_OFF;
            } else {
                sc->access_log = WF_ACCESS_LOG_FILE;
                if ((rc = set_str(&sc->access_log_path, s)))
                    return rc;
            }
        }
    }

    n = wf_conf_get(root, "listen");
    if (!n)
        return wf_conf_errorf(c, root, err, "missing key \"listen\" (a list of addresses to serve)");
    if (n->type != WF_CONF_SEQ || n->nitems == 0)
        return wf_conf_errorf(c, n, err, "expected a non-empty list of {address: host:port}");
    sc->listen = calloc(n->nitems, sizeof(*sc->listen));
    if (!sc->listen)
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i];
        wf_listen_conf_t *l = &sc->listen[sc->nlisten++];
        l->backlog = 511;
        if (it->type != WF_CONF_MAP)
            return wf_conf_errorf(c, it, err, "expected a mapping such as {address: 127.0.0.1:8080}");
        if ((rc = wf_conf_check_keys(c, it, listen_keys, err)))
            return rc;
        if ((rc = parse_address(c, it, "address", &l->address, &l->addr, err)))
            return rc;
        int64_t bl = l->backlog;
        if ((rc = wf_conf_int(c, it, "backlog", 1, 65535, &bl, err)))
            return rc;
        l->backlog = (int)bl;
        const wf_conf_node_t *tn = wf_conf_get(it, "tls");
        if (tn && (rc = wf_tls_server_parse(c, tn, (unsigned)i, &l->tls, err)))
            return rc;
        for (size_t j = 0; j + 1 < sc->nlisten; j++)
            if (wf_sockaddr_eq(&sc->listen[j].addr, &l->addr))
                return wf_conf_errorf(c, it, err, "address %s is listed twice", l->address);
    }

    if ((rc = section(c, root, "upstream", up_keys, &sec, err)))
        return rc;
    if (!sec)
        return wf_conf_errorf(c, root, err, "missing key \"upstream\" (where requests go)");
    n = wf_conf_get(sec, "servers");
    if (!n)
        return wf_conf_errorf(c, sec, err, "missing key \"servers\"");
    if (n->type != WF_CONF_SEQ || n->nitems == 0)
        return wf_conf_errorf(c, n, err, "expected a non-empty list of {address: host:port}");
    sc->servers = calloc(n->nitems, sizeof(*sc->servers));
    if (!sc->servers)
        return -ENOMEM;
    for (size_t i = 0; i < n->nitems; i++) {
        const wf_conf_node_t *it = n->items[i];
        wf_upstream_server_t *u = &sc->servers[sc->nservers++];
        if (it->type != WF_CONF_MAP)
            return wf_conf_errorf(c, it, err, "expected a mapping such as {address: 127.0.0.1:8081}");
        if ((rc = wf_conf_check_keys(c, it, server_keys, err)))
            return rc;
        if ((rc = parse_address(c, it, "address", &u->address, &u->addr, err)))
            return rc;
    }
    int64_t ka = sc->up_keepalive;
    if ((rc = wf_conf_int(c, sec, "keepalive", 0, 100000, &ka, err)))
        return rc;
    sc->up_keepalive = (uint32_t)ka;
    if ((rc = wf_conf_duration_ms(c, sec, "connect_timeout", 1, DAY_MS, &sc->up_connect_timeout_ms, err)) ||
        (rc = wf_conf_duration_ms(c, sec, "timeout", 1, DAY_MS, &sc->up_timeout_ms, err)) ||
        (rc = wf_conf_duration_ms(c, sec, "idle_timeout", 1, DAY_MS, &sc->up_idle_timeout_ms, err)))
        return rc;
    if ((n = wf_conf_get(sec, "tls")) && (rc = wf_tls_client_parse(c, n, &sc->up_tls, err)))
        return rc;

    if ((rc = section(c, root, "proxy", proxy_keys, &sec, err)))
        return rc;
    if (sec) {
        if ((rc = wf_conf_bool(c, sec, "x_forwarded_for", &sc->xff, err)) ||
            (rc = wf_conf_bool(c, sec, "forwarded", &sc->forwarded, err)) ||
            (rc = wf_conf_bool(c, sec, "via", &sc->via, err)) ||
            (rc = wf_conf_bool(c, sec, "trust_request_id", &sc->trust_request_id, err)) ||
            (rc = parse_header_name(c, sec, "request_id_header", &sc->request_id_header, err)))
            return rc;
        bool pass_identity = false;
        if ((rc = wf_conf_bool(c, sec, "pass_client_identity", &pass_identity, err)))
            return rc;
        if (pass_identity) {
            if ((rc = set_str(&sc->identity_header, "X-Client-Identity")) ||
                (rc = parse_header_name(c, sec, "client_identity_header", &sc->identity_header, err)))
                return rc;
            if (!sc->identity_header)
                return wf_conf_errorf(c, wf_conf_get(sec, "client_identity_header"), err,
                                      "pass_client_identity needs a header name");
        }
    }

    if ((rc = section(c, root, "limits", limit_keys, &sec, err)))
        return rc;
    if (sec) {
        if ((rc = wf_conf_size(c, sec, "max_header_bytes", 256, 1 * MB, &sc->max_header_bytes, err)) ||
            (rc = wf_conf_int(c, sec, "max_headers", 1, 10000, (int64_t *)&sc->max_headers, err)) ||
            (rc = wf_conf_size(c, sec, "max_uri", 16, 1 * MB, &sc->max_uri, err)) ||
            (rc = wf_conf_size(c, sec, "max_body", 0, 1024 * GB, &sc->max_body, err)) ||
            (rc = wf_conf_int(c, sec, "max_connections", 1, 1000000, (int64_t *)&sc->max_connections, err)) ||
            (rc = wf_conf_size(c, sec, "buffer_size", 1 * KB, 64 * MB, &sc->buffer_size, err)) ||
            (rc = wf_conf_int(c, sec, "max_connections_total", 0, 100000000, (int64_t *)&sc->max_connections_total,
                              err)))
            return rc;
    }

    if ((rc = section(c, root, "timeouts", timeout_keys, &sec, err)))
        return rc;
    if (sec) {
        if ((rc = wf_conf_duration_ms(c, sec, "header", 1, DAY_MS, &sc->header_timeout_ms, err)) ||
            (rc = wf_conf_duration_ms(c, sec, "body", 1, DAY_MS, &sc->body_timeout_ms, err)) ||
            (rc = wf_conf_duration_ms(c, sec, "idle", 1, DAY_MS, &sc->idle_timeout_ms, err)) ||
            (rc = wf_conf_duration_ms(c, sec, "send", 1, DAY_MS, &sc->send_timeout_ms, err)))
            return rc;
    }
    if ((rc = wf_conf_duration_ms(c, root, "shutdown_timeout", 0, DAY_MS, &sc->shutdown_timeout_ms, err)))
        return rc;
    wf_admin_conf_free(&sc->admin);
    if ((rc = wf_admin_conf_parse(c, wf_conf_get(root, "admin"), &sc->admin, err)))
        return rc;
    wf_secops_conf_free(sc->events);
    sc->events = NULL;
    if ((rc = wf_secops_conf_parse(c, wf_conf_get(root, "events"), &sc->events, err)))
        return rc;
    wf_misp_conf_free(sc->misp);
    sc->misp = NULL;
    if ((rc = wf_misp_conf_parse(c, wf_conf_get(root, "misp"), &sc->misp, err)))
        return rc;

    if ((rc = wf_detect_conf_parse(c, wf_conf_get(root, "detection"), sc->file, &sc->detect, err)) ||
        (rc = wf_policy_parse(c, wf_conf_get(root, "policy"), &sc->policy, err)))
        return rc;

    {
        wf_upstream_member_conf_t *dm = calloc(sc->nservers, sizeof(*dm));
        if (!dm)
            return -ENOMEM;
        for (size_t i = 0; i < sc->nservers; i++)
            dm[i] = (wf_upstream_member_conf_t){ .address = sc->servers[i].address, .addr = sc->servers[i].addr };
        rc = wf_upstream_pools_parse(c, root, dm, sc->nservers, &sc->pools, &sc->npools, err);
        free(dm);
        if (rc)
            return rc;
    }
    for (size_t i = 0; sc->policy && i < sc->policy->nroutes; i++) {
        wf_route_t *r = &sc->policy->routes[i];
        int pi = r->upstream ? wf_upstream_pool_index(sc->pools, sc->npools, r->upstream) : 0;
        if (pi < 0) {
            snprintf(err->msg, sizeof(err->msg), "%s.upstream: no pool named \"%s\" (\"default\" or one under upstreams:)",
                     r->where ? r->where : "policy.routes", r->upstream);
            return WF_ECONFIG;
        }
        r->upstream_pool = pi;
    }
    if ((rc = wf_ratelimit_conf_parse(c, wf_conf_get(root, "rate_limits"), &sc->rate_limits, err)))
        return rc;
    if ((rc = section(c, root, "min_rates", min_rate_keys, &sec, err)))
        return rc;
    for (size_t i = 0; sec && i < 3; i++) {
        static const char *const mr_keys[] = { "rate", "grace", NULL };
        const wf_conf_node_t *m = wf_conf_get(sec, min_rate_keys[i]);
        __typeof__(sc->min_rate_header) *mr = i == 0 ? &sc->min_rate_header : i == 1 ? &sc->min_rate_body : &sc->min_rate_send;
        if (!m)
            continue;
        if (m->type != WF_CONF_MAP)
            return wf_conf_errorf(c, m, err, "expected a mapping such as {rate: 500, grace: 5s} (bytes per second)");
        mr->grace_ms = 5000;
        if ((rc = wf_conf_check_keys(c, m, mr_keys, err)) ||
            (rc = wf_conf_size(c, m, "rate", 0, 1 * GB, &mr->rate, err)) ||
            (rc = wf_conf_duration_ms(c, m, "grace", 0, DAY_MS, &mr->grace_ms, err)))
            return rc;
    }

    wf_http_limits_default(&sc->http);
    sc->http.max_header_bytes = sc->max_header_bytes;
    sc->http.max_headers = sc->max_headers;
    sc->http.max_uri = sc->max_uri;
    sc->http.max_body_bytes = sc->max_body;
    sc->http_resp = sc->http;
    sc->http_resp.max_body_bytes = 0;
    /* upstreams may send bigger header blocks than clients may (cookies) but not unbounded */
    sc->http_resp.max_headers = WF_MAX(sc->max_headers, 100);
    return 0;
}

int wf_server_conf_load(const char *path, wf_server_conf_t **out, wf_conf_err_t *err)
{
    *out = NULL;
    wf_conf_t *c = NULL;
    int rc = wf_conf_load_file(path, &c, err);
    if (rc)
        return rc;
    wf_server_conf_t *sc = malloc(sizeof(*sc));
    if (!sc) {
        wf_conf_free(c);
        return -ENOMEM;
    }
    wf_server_conf_defaults(sc);
    rc = wf_server_conf_parse(c, sc, err);
    wf_conf_free(c);
    if (rc) {
        if (rc == -ENOMEM && err)
            snprintf(err->msg, sizeof(err->msg), "%s: out of memory", path);
        wf_server_conf_free(sc);
        return rc;
    }
    *out = sc;
    return 0;
}
