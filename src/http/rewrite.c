/* Header rewriting on the way through the proxy, generated responses and
 * request ids (see wafer/proxy.h). */
#include "wafer/core.h"
#include "wafer/proxy.h"

#include <stdio.h>
#include <sys/random.h>

/* Bounded writer: on overflow every later put is a no-op and the result is -WF_ELIMIT. */
typedef struct {
    char *p;
    size_t n, cap;
    bool over;
} wr_t;

static inline void put(wr_t *w, const char *s, size_t n)
{
    if (w->over || w->cap - w->n < n) {
        w->over = true;
        return;
    }
    memcpy(w->p + w->n, s, n);
    w->n += n;
}
static inline void puts_(wr_t *w, wf_str_t s) { put(w, s.p, s.n); }
#define PUTL(w, lit) put((w), (lit), sizeof(lit) - 1)

static void put_u64(wr_t *w, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(w, tmp + i, sizeof(tmp) - i);
}

static void put_field(wr_t *w, wf_str_t name, wf_str_t value)
{
    puts_(w, name);
    PUTL(w, ": ");
    puts_(w, value);
    PUTL(w, "\r\n");
}

/* Tokens of the Connection fields, collected once per message. */
#define CONN_TOKENS_MAX 16
typedef struct {
    wf_str_t tok[CONN_TOKENS_MAX];
    size_t n;
    bool overflow; /* too many: fall back to a scan per field */
} conn_tokens_t;

static void conn_tokens_collect(const wf_http_header_t *h, size_t nh, conn_tokens_t *ct)
{
    ct->n = 0;
    ct->overflow = false;
    for (size_t i = 0; i < nh; i++) {
        if (!wf_str_eq_lit_nocase(h[i].name, "connection"))
            continue;
        const char *p = h[i].value.p, *e = p + h[i].value.n;
        while (p < e) {
            while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
                p++;
            const char *s = p;
            while (p < e && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            if (p > s) {
                if (ct->n == CONN_TOKENS_MAX) {
                    ct->overflow = true;
                    return;
                }
                ct->tok[ct->n++] = wf_str(s, (size_t)(p - s));
            }
        }
    }
}

static bool named_in_connection(const conn_tokens_t *ct, const wf_http_header_t *h, size_t nh, wf_str_t name)
{
    if (ct->overflow) {
        char tmp[256];
        if (name.n >= sizeof(tmp))
            return false;
        memcpy(tmp, name.p, name.n);
        tmp[name.n] = 0;
        return wf_http_header_has_token(h, nh, "Connection", tmp);
    }
    for (size_t i = 0; i < ct->n; i++)
        if (wf_str_eq_nocase(ct->tok[i], name))
            return true;
    return false;
}

/* Fields that framing and routing depend on: Connection may not remove them. */
static bool protected_field(wf_str_t name)
{
    return wf_str_eq_lit_nocase(name, "host") || wf_str_eq_lit_nocase(name, "content-length") ||
           wf_str_eq_lit_nocase(name, "transfer-encoding");
}

size_t wf_proxy_request_head_size(const wf_server_conf_t *sc, const wf_http_request_t *req, size_t head_len,
                                  const wf_proxy_req_ctx_t *ctx)
{
    /* the head itself, XFF values joined (bounded by the head), and our fields */
    return head_len * 2 + 256 + 2 * ctx->client_ip.n + req->host.n + ctx->default_host.n + ctx->request_id.n +
           (sc->request_id_header ? strlen(sc->request_id_header) : 0) +
           (sc->identity_header ? strlen(sc->identity_header) + ctx->identity.n : 0);
}

int wf_proxy_request_head(const wf_server_conf_t *sc, const wf_http_request_t *req, const wf_proxy_req_ctx_t *ctx,
                          char *out, size_t cap)
{
    wr_t w = { out, 0, cap, false };
    const wf_http_header_t *h = req->headers;
    size_t nh = req->nheaders;
    conn_tokens_t ct;
    conn_tokens_collect(h, nh, &ct);
    wf_str_t rid_name = wf_str_c(sc->request_id_header), id_name = wf_str_c(sc->identity_header);

    puts_(&w, req->method);
    PUTL(&w, " ");
    if (req->flags & WF_HTTP_F_ABSOLUTE_FORM) {
        if (req->path.n)
            puts_(&w, req->path);
        else
            PUTL(&w, "/");
        if (req->query.n) {
            PUTL(&w, "?");
            puts_(&w, req->query);
        }
    } else {
        puts_(&w, req->target);
    }
    PUTL(&w, " HTTP/1.1\r\n");

    bool have_host = false, have_cl = false;
    for (size_t i = 0; i < nh; i++) {
        wf_str_t name = h[i].name;
        if (wf_str_eq_lit_nocase(name, "host")) {
            if (req->flags & WF_HTTP_F_ABSOLUTE_FORM)
                continue; /* replaced by the target's authority below */
            have_host = true;
            put_field(&w, name, h[i].value);
            continue;
        }
        if (wf_str_eq_lit_nocase(name, "content-length")) {
            if (have_cl || !(req->flags & WF_HTTP_F_CONTENT_LENGTH))
                continue;
            have_cl = true;
            /* the parsed value, not the field as received: "5, 5" is valid
             * (RFC 9110 8.6) but a list that stricter upstreams refuse */
            PUTL(&w, "Content-Length: ");
            put_u64(&w, req->content_length);
            PUTL(&w, "\r\n");
            continue;
        }
        if (wf_str_eq_lit_nocase(name, "transfer-encoding"))
            continue; /* re-added below as framed */
        if (wf_http_is_hop_by_hop(name) || wf_str_eq_lit_nocase(name, "expect"))
            continue;
        if (ct.n && !protected_field(name) && named_in_connection(&ct, h, nh, name))
            continue;
        if (sc->xff && wf_str_eq_lit_nocase(name, "x-forwarded-for"))
            continue; /* joined below */
        if (rid_name.n && wf_str_eq_nocase(name, rid_name))
            continue; /* set below */
        if (id_name.n && wf_str_eq_nocase(name, id_name))
            continue; /* only wafer says who the client is */
        put_field(&w, name, h[i].value);
    }
    if (req->flags & WF_HTTP_F_ABSOLUTE_FORM) {
        put_field(&w, WF_STR("Host"), req->host);
    } else if (!have_host && ctx->default_host.n) {
        put_field(&w, WF_STR("Host"), ctx->default_host);
    }
    if (req->flags & WF_HTTP_F_CHUNKED)
        PUTL(&w, "Transfer-Encoding: chunked\r\n");
    if (sc->xff) {
        PUTL(&w, "X-Forwarded-For: ");
        for (size_t i = 0; i < nh; i++) {
            if (wf_str_eq_lit_nocase(h[i].name, "x-forwarded-for") && h[i].value.n) {
                puts_(&w, h[i].value);
                PUTL(&w, ", ");
            }
        }
        puts_(&w, ctx->client_ip);
        PUTL(&w, "\r\n");
    }
    if (sc->forwarded) {
        PUTL(&w, "Forwarded: for=");
        if (ctx->client_v6) {
            PUTL(&w, "\"[");
            puts_(&w, ctx->client_ip);
            PUTL(&w, "]\"");
        } else {
            puts_(&w, ctx->client_ip);
        }
        wf_str_t host = req->host.n ? req->host : ctx->default_host;
        bool host_ok = host.n > 0;
        for (size_t i = 0; i < host.n; i++) /* a token or it must be quoted; quote only safe text */
            if (host.p[i] == '"' || host.p[i] == '\\' || (unsigned char)host.p[i] < 0x21)
                host_ok = false;
        if (host_ok) {
            PUTL(&w, ";host=\"");
            puts_(&w, host);
            PUTL(&w, "\"");
        }
        PUTL(&w, ";proto=http\r\n");
    }
    if (sc->via) {
        if (req->minor_version == 0)
            PUTL(&w, "Via: 1.0 wafer\r\n");
        else
            PUTL(&w, "Via: 1.1 wafer\r\n");
    }
    if (rid_name.n && ctx->request_id.n)
        put_field(&w, rid_name, ctx->request_id);
    if (id_name.n && ctx->identity.n)
        put_field(&w, id_name, ctx->identity);
    PUTL(&w, "\r\n");
    return w.over ? -WF_ELIMIT : (int)w.n;
}

int wf_proxy_response_head(const wf_http_response_t *res, const char *head, size_t head_len, unsigned flags,
                           char *out, size_t cap)
{
    wr_t w = { out, 0, cap, false };
    const char *eol = memchr(head, '\n', head_len);
    if (!eol)
        return -WF_EPARSE;
    put(&w, head, (size_t)(eol - head) + 1); /* the status line as received */
    conn_tokens_t ct;
    conn_tokens_collect(res->headers, res->nheaders, &ct);
    bool have_cl = false;
    for (size_t i = 0; i < res->nheaders; i++) {
        wf_str_t name = res->headers[i].name;
        if (wf_str_eq_lit_nocase(name, "transfer-encoding")) {
            /* kept for a body forwarded as framed, and on a HEAD response (same fields as GET) */
            if ((res->flags & (WF_HTTP_F_CHUNKED | WF_HTTP_F_NO_BODY)) && !(flags & WF_PROXY_RESP_DECHUNK))
                put_field(&w, name, res->headers[i].value);
            continue;
        }
        if (wf_str_eq_lit_nocase(name, "content-length")) {
            if (have_cl)
                continue;
            have_cl = true;
            put_field(&w, name, res->headers[i].value);
            continue;
        }
        if (wf_http_is_hop_by_hop(name))
            continue;
        if (ct.n && !protected_field(name) && named_in_connection(&ct, res->headers, res->nheaders, name))
            continue;
        put_field(&w, name, res->headers[i].value);
    }
    if (flags & WF_PROXY_RESP_VIA) {
        if (res->minor_version == 0)
            PUTL(&w, "Via: 1.0 wafer\r\n");
        else
            PUTL(&w, "Via: 1.1 wafer\r\n");
    }
    if (flags & WF_PROXY_RESP_CLOSE)
        PUTL(&w, "Connection: close\r\n");
    else if (flags & WF_PROXY_RESP_KEEPALIVE10)
        PUTL(&w, "Connection: keep-alive\r\n");
    PUTL(&w, "\r\n");
    return w.over ? -WF_ELIMIT : (int)w.n;
}

int wf_proxy_error_response(int status, wf_str_t request_id, char *out, size_t cap)
{
    char body[256];
    const char *reason = wf_http_reason(status);
    int bl = snprintf(body, sizeof(body), "%d %s\nrequest id: %.*s\n", status, reason,
                      (int)WF_MIN(request_id.n, (size_t)WF_REQUEST_ID_MAX), request_id.p ? request_id.p : "");
    if (bl < 0 || (size_t)bl >= sizeof(body))
        return -WF_ELIMIT;
    wr_t w = { out, 0, cap, false };
    PUTL(&w, "HTTP/1.1 ");
    put_u64(&w, (uint64_t)status);
    PUTL(&w, " ");
    put(&w, reason, strlen(reason));
    PUTL(&w, "\r\nContent-Type: text/plain\r\nContent-Length: ");
    put_u64(&w, (uint64_t)bl);
    PUTL(&w, "\r\nConnection: close\r\n\r\n");
    put(&w, body, (size_t)bl);
    return w.over ? -WF_ELIMIT : (int)w.n;
}

/* ---- request ids ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

size_t wf_request_id_generate(uint64_t *state, char *out)
{
    static const char hex[] = "0123456789abcdef";
    while (*state == 0) {
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
            seed = wf_now_ns() ^ (uint64_t)(uintptr_t)state;
        *state = seed;
    }
    uint64_t a = splitmix64(state), b = splitmix64(state);
    for (int i = 0; i < 16; i++) {
        out[i] = hex[(a >> (60 - 4 * i)) & 15];
        out[16 + i] = hex[(b >> (60 - 4 * i)) & 15];
    }
    out[32] = 0;
    return 32;
}

bool wf_request_id_valid(wf_str_t id)
{
    if (id.n == 0 || id.n > WF_REQUEST_ID_MAX)
        return false;
    for (size_t i = 0; i < id.n; i++) {
        unsigned char c = (unsigned char)id.p[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return false;
    }
    return true;
}
