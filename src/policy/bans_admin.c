/* The admin endpoints for flow bans: GET /bans, GET|DELETE|POST /bans/<ip> (include/wafer/policy.h). */
#include "wafer/admin.h"
#include "wafer/core.h"
#include "wafer/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#define MAX_MANUAL_MS (365ull * 86400000ull)

static void reply_error(wf_admin_resp_t *resp, int status, const char *msg)
{
    resp->status = status;
    resp->content_type = "application/json";
    wf_buf_clear(resp->body);
    wf_buf_appendf(resp->body, "{\"error\":\"%s\"}\n", msg); /* msg: fixed text, no quoting needed */
}

static void ip_text(const wf_sockaddr_t *a, char *out, size_t outlen)
{
    uint8_t fam, addr[16];
    out[0] = 0;
    if (wf_sockaddr_key(a, &fam, addr))
        inet_ntop(fam, addr, out, (socklen_t)outlen);
}

/* "/192.0.2.1", "/2001:db8::1" or "/[2001:db8::1]" into an address; false when it is none. */
static bool parse_ip(wf_str_t rest, wf_sockaddr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 2];
    if (rest.n < 2 || rest.p[0] != '/' || rest.n - 1 >= sizeof(buf))
        return false;
    memcpy(buf, rest.p + 1, rest.n - 1);
    buf[rest.n - 1] = 0;
    char *ip = buf;
    size_t n = rest.n - 1;
    if (ip[0] == '[' && n > 2 && ip[n - 1] == ']') {
        ip[n - 1] = 0;
        ip++;
    }
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *s4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->ss;
    if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        out->len = sizeof(*s4);
        return true;
    }
    if (inet_pton(AF_INET6, ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        out->len = sizeof(*s6);
        return true;
    }
    return false;
}

typedef struct {
    wf_buf_t *out;
    uint64_t now_ms, wall_us;
    size_t n;
    int rc;
    unsigned v6bits;
} list_ctx_t;

static int ban_json(wf_buf_t *out, const wf_sockaddr_t *client, uint64_t until_ms, uint32_t det, uint64_t now_ms,
                    uint64_t wall_us, unsigned v6bits)
{
    char ip[INET6_ADDRSTRLEN + 4], ts[40];
    uint8_t fam, addr[16];
    ip[0] = 0;
    if (wf_sockaddr_key(client, &fam, addr)) {
        if (fam == AF_INET6 && v6bits < 128) { /* bans of IPv6 clients are per network: show it */
            wf_cidr_t net = { .family = AF_INET6, .bits = (uint8_t)v6bits };
            char s[INET6_ADDRSTRLEN];
            inet_ntop(AF_INET6, addr, s, sizeof(s));
            snprintf(ip, sizeof(ip), "%s/%u", s, v6bits);
            if (wf_cidr_parse(ip, &net) == 0)
                wf_cidr_format(&net, ip, sizeof(ip));
        } else {
            inet_ntop(fam, addr, ip, INET6_ADDRSTRLEN);
        }
    }
    uint64_t left_ms = until_ms > now_ms ? until_ms - now_ms : 0;
    wf_time_rfc3339(wall_us + left_ms * 1000, ts, sizeof(ts));
    return wf_buf_appendf(out, "{\"client\":\"%s\",\"until\":\"%s\",\"seconds_left\":%llu,\"detections\":%u}", ip, ts,
                          (unsigned long long)((left_ms + 999) / 1000), det);
}

static void list_one(const wf_sockaddr_t *client, uint64_t until_ms, uint32_t det, void *arg)
{
    list_ctx_t *ctx = arg;
    if (ctx->rc)
        return;
    if (ctx->n++ && (ctx->rc = wf_buf_append(ctx->out, ",", 1)))
        return;
    ctx->rc = ban_json(ctx->out, client, until_ms, det, ctx->now_ms, ctx->wall_us, ctx->v6bits);
}

void wf_bans_admin_get(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans)
{
    wf_bans_t *b = bans;
    uint64_t now = wf_now_ms(), wall = wf_wall_us();
    resp->content_type = "application/json";
    if (req->rest.n > 1 || (req->rest.n == 1 && req->rest.p[0] != '/')) {
        wf_sockaddr_t a;
        uint64_t until;
        uint32_t det;
        if (!parse_ip(req->rest, &a))
            return reply_error(resp, 400, "expected /bans/<ip>");
        if (!wf_bans_get(b, &a, now, &until, &det))
            return reply_error(resp, 404, "not banned");
        if (ban_json(resp->body, &a, until, det, now, wall, wf_bans_ipv6_prefix(b)) ||
            wf_buf_append(resp->body, "\n", 1))
            return reply_error(resp, 500, "response too large");
        return;
    }
    list_ctx_t ctx = { .out = resp->body, .now_ms = now, .wall_us = wall, .v6bits = wf_bans_ipv6_prefix(b) };
    ctx.rc = wf_buf_append(resp->body, "[", 1);
    wf_bans_foreach(b, now, list_one, &ctx);
    if (ctx.rc || wf_buf_append(resp->body, "]\n", 2))
        return reply_error(resp, 500, "too many bans to list in one response");
}

void wf_bans_admin_delete(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans)
{
    wf_sockaddr_t a;
    char ip[INET6_ADDRSTRLEN];
    resp->content_type = "application/json";
    if (!parse_ip(req->rest, &a))
        return reply_error(resp, 400, "expected /bans/<ip>");
    if (!wf_bans_get(bans, &a, wf_now_ms(), NULL, NULL) || wf_bans_remove(bans, &a) != 1)
        return reply_error(resp, 404, "not banned");
    ip_text(&a, ip, sizeof(ip));
    wf_info("bans: %s lifted through the admin listener", ip);
    wf_buf_appendf(resp->body, "{\"client\":\"%s\",\"lifted\":true}\n", ip);
}

/* The value of `key` in a query string, or an empty slice. */
static bool query_param(wf_str_t q, const char *key, wf_str_t *val)
{
    size_t kl = strlen(key);
    const char *p = q.p, *end = q.p + q.n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *val = wf_str(p + kl + 1, (size_t)(e - p - kl - 1));
            return true;
        }
        p = e + 1;
    }
    return false;
}

void wf_bans_admin_post(const wf_admin_req_t *req, wf_admin_resp_t *resp, void *bans)
{
    wf_bans_t *b = bans;
    wf_sockaddr_t a;
    resp->content_type = "application/json";
    if (!parse_ip(req->rest, &a))
        return reply_error(resp, 400, "expected /bans/<ip>");
    uint64_t dur = wf_bans_duration_ms(b);
    wf_str_t v;
    if (query_param(req->query, "duration", &v)) {
        char buf[32];
        if (v.n == 0 || v.n >= sizeof(buf))
            return reply_error(resp, 400, "duration: expected a duration such as 90s, 10m or 2h");
        memcpy(buf, v.p, v.n);
        buf[v.n] = 0;
        if (wf_parse_duration_ms(buf, &dur) < 0 || dur == 0 || dur > MAX_MANUAL_MS)
            return reply_error(resp, 400, "duration: expected a duration such as 90s, 10m or 2h (at most 365d)");
    }
    uint64_t now = wf_now_ms(), wall = wf_wall_us();
    if (wf_bans_add(b, &a, now, dur) < 0)
        return reply_error(resp, 400, "cannot ban this address");
    char ip[INET6_ADDRSTRLEN];
    ip_text(&a, ip, sizeof(ip));
    wf_info("bans: %s banned for %llu ms through the admin listener", ip, (unsigned long long)dur);
    uint64_t until = now + dur;
    uint32_t det = 0;
    wf_bans_get(b, &a, now, &until, &det);
    if (ban_json(resp->body, &a, until, det, now, wall, wf_bans_ipv6_prefix(b)) || wf_buf_append(resp->body, "\n", 1))
        return reply_error(resp, 500, "response too large");
}

int wf_bans_admin_register(wf_bans_t *b)
{
    int rc;
    if ((rc = wf_admin_handle("GET", "/bans", wf_bans_admin_get, b)) ||
        (rc = wf_admin_handle("DELETE", "/bans", wf_bans_admin_delete, b)) ||
        (rc = wf_admin_handle("POST", "/bans", wf_bans_admin_post, b)))
        return rc;
    return 0;
}
