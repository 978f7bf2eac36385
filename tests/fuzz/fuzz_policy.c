/* Fuzzes the `policy:` section: any YAML the loader accepts goes through
 * wf_policy_parse; a policy that parses is bound to a small model and asked
 * for routes, client lists and unit thresholds, which must stay consistent
 * (a route always, thresholds never below the model's unless configured). */
#include "wafer/core.h"
#include "wafer/policy.h"

#include <math.h>
#include <stdlib.h>

static const char *labels[] = { "benign", "sqli", "xss", "cmdi" };
static const float model_th[] = { 0.5f, 0.5f, 0.5f, 0.5f };

/* A fixed policy, so that every input is also tried as a raw path and a Host (path normalisation). */
static wf_policy_t *fixed;

static void fixed_init(void)
{
    static const char y[] = "policy:\n  routes:\n    - {host: api.example.com, path: /api}\n"
                            "    - {host: \"*.example.com\", path: /static/}\n    - {path: /admin}\n";
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    if (wf_conf_load_string("fixed.yaml", y, sizeof(y) - 1, &c, &err) ||
        wf_policy_parse(c, wf_conf_get(wf_conf_root(c), "policy"), &fixed, &err))
        abort();
    wf_conf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fixed)
        fixed_init();
    const wf_route_t *fr = wf_policy_route(fixed, WF_STR("api.example.com"), wf_str((const char *)data, size));
    if (!fr || (fr != &fixed->root && fr != &fixed->routes[0] && fr != &fixed->routes[1] && fr != &fixed->routes[2]))
        abort();
    fr = wf_policy_route(fixed, wf_str((const char *)data, size), WF_STR("/static/x"));
    if (!fr)
        abort();

    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    if (wf_conf_load_string("fuzz.yaml", (const char *)data, size, &c, &err) != 0)
        return 0;
    wf_policy_t *p = NULL;
    int rc = wf_policy_parse(c, wf_conf_get(wf_conf_root(c), "policy"), &p, &err);
    if (rc != 0) {
        if (p || !err.msg[0])
            abort();
        wf_conf_free(c);
        return 0;
    }
    char e[256];
    if (wf_policy_bind(p, labels, model_th, 4, e, sizeof(e)) == 0) {
        static const char *hosts[] = { "", "api.example.com", "A.B.EXAMPLE.COM:80", "[::1]:8080", "x.", ":" };
        static const char *paths[] = { "/", "/api", "/api/v1/x", "/static/", "" };
        static const char *addrs[] = { "10.0.0.1:1", "[2001:db8::1]:1", "[::ffff:192.0.2.1]:1" };
        for (size_t h = 0; h < WF_ARRAY_LEN(hosts); h++)
            for (size_t q = 0; q < WF_ARRAY_LEN(paths); q++) {
                const wf_route_t *r = wf_policy_route(p, wf_str_c(hosts[h]), wf_str_c(paths[q]));
                if (!r || !r->name)
                    abort();
                wf_unit_t u = { .kind = (wf_unit_kind_t)(h % WF_UNIT__COUNT), .name = wf_str_c(paths[q]),
                                .text = WF_STR("x") };
                float th[4];
                bool any = wf_policy_unit_thresholds(p, r, &u, th);
                bool inf = false;
                for (int k = 1; k < 4; k++)
                    inf |= isinf(th[k]);
                if (any != inf || th[0] != 0.5f)
                    abort();
            }
        for (size_t a = 0; a < WF_ARRAY_LEN(addrs); a++) {
            wf_sockaddr_t sa;
            if (wf_sockaddr_parse(addrs[a], &sa) == 0 && (unsigned)wf_policy_client(p, &sa) > WF_CLIENT_DENY)
                abort();
        }
    }
    wf_policy_free(p);
    wf_conf_free(c);
    return 0;
}
