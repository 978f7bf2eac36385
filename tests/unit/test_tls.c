/* TLS: context building (and refusals with reasons), SNI choice, identities
 * from generated certificates, glob matching and identity policies, and
 * handshakes and transfers through the connection vtable over a socketpair. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/tls.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[64];

/* ---- certificate generation with the OpenSSL API ---- */

static EVP_PKEY *gen_key(void) { return EVP_EC_gen("P-256"); }

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (e) {
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
}

/* subject like "/O=Example/CN=ops"; san may be NULL; ca_x/ca_k NULL: self-signed CA. */
static X509 *gen_cert(EVP_PKEY *key, const char *subject, const char *san, X509 *ca_x, EVP_PKEY *ca_k)
{
    static long serial = 1;
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_NAME_new();
    char tmp[256];
    snprintf(tmp, sizeof(tmp), "%s", subject);
    for (char *part = strtok(tmp, "/"); part; part = strtok(NULL, "/")) {
        char *eq = strchr(part, '=');
        *eq = 0;
        X509_NAME_add_entry_by_txt(n, part, MBSTRING_UTF8, (const unsigned char *)eq + 1, -1, -1, 0);
    }
    X509_set_subject_name(x, n);
    X509_set_issuer_name(x, ca_x ? X509_get_subject_name(ca_x) : n);
    X509_NAME_free(n);
    add_ext(x, ca_x ? ca_x : x, NID_basic_constraints, ca_x ? "CA:FALSE" : "critical,CA:TRUE");
    if (san)
        add_ext(x, ca_x ? ca_x : x, NID_subject_alt_name, san);
    X509_sign(x, ca_k ? ca_k : key, EVP_sha256());
    return x;
}

static void write_pem(const char *name, X509 *x, EVP_PKEY *k)
{
    char path[128];
    FILE *fp;
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    fp = fopen(path, "w");
    PEM_write_X509(fp, x);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    fp = fopen(path, "w");
    PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL);
    fclose(fp);
}

static void make_pki(void)
{
    if (dir[0])
        return;
    snprintf(dir, sizeof(dir), "/tmp/wafer-tls-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    EVP_PKEY *ca_k = gen_key(), *other_k = gen_key();
    X509 *ca = gen_cert(ca_k, "/CN=unit CA", NULL, NULL, NULL);
    X509 *other = gen_cert(other_k, "/CN=other CA", NULL, NULL, NULL);
    write_pem("ca", ca, ca_k);
    write_pem("other", other, other_k);
    struct { const char *name, *subj, *san; int other; } certs[] = {
        { "a", "/CN=a.test", "DNS:a.test,DNS:*.wild.test", 0 },
        { "b", "/CN=b.test", "DNS:b.test", 0 },
        { "cnonly", "/CN=legacy.test", NULL, 0 },
        { "spiffe", "/CN=web", "URI:spiffe://example.org/ns/prod/sa/web,DNS:web.internal", 0 },
        { "dns", "/CN=svc", "DNS:svc.internal", 0 },
        { "ops", "/C=US/O=Example/CN=ops", NULL, 0 },
        { "evil", "/CN=a\nX-Injected: 1", NULL, 0 },
        { "rogue", "/CN=ops", NULL, 1 },
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(certs); i++) {
        EVP_PKEY *k = gen_key();
        X509 *x = gen_cert(k, certs[i].subj, certs[i].san, certs[i].other ? other : ca, certs[i].other ? other_k : ca_k);
        write_pem(certs[i].name, x, k);
        X509_free(x);
        EVP_PKEY_free(k);
    }
    /* a certificate bigger than a small socket buffer: the server's first flight cannot go out at once */
    {
        static char san[16384];
        size_t k = 0;
        for (int i = 0; i < 300; i++)
            k += (size_t)snprintf(san + k, sizeof(san) - k, "%sDNS:host-%03d.big.test", i ? "," : "", i);
        EVP_PKEY *k2 = gen_key();
        X509 *x = gen_cert(k2, "/CN=big.test", san, ca, ca_k);
        write_pem("big", x, k2);
        X509_free(x);
        EVP_PKEY_free(k2);
    }
    char path[128];
    snprintf(path, sizeof(path), "%s/garbage.pem", dir);
    FILE *fp = fopen(path, "w");
    fputs("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", fp);
    fclose(fp);
    X509_free(ca);
    X509_free(other);
    EVP_PKEY_free(ca_k);
    EVP_PKEY_free(other_k);
}

/* ---- configuration helpers ---- */

/* Parses a YAML document whose root key "tls" is a server (or, client=1, upstream) tls mapping. */
static int parse(const char *yaml, int client, void **out, wf_conf_err_t *err)
{
    char text[4096], path[96];
    /* relative file names are relative to the configuration file: name it inside dir */
    snprintf(path, sizeof(path), "%s/t.yaml", dir);
    snprintf(text, sizeof(text), "%s", yaml);
    wf_conf_t *c = NULL;
    int rc = wf_conf_load_string(path, text, strlen(text), &c, err);
    if (rc)
        return rc;
    const wf_conf_node_t *n = wf_conf_get(wf_conf_root(c), "tls");
    rc = client ? wf_tls_client_parse(c, n, (wf_tls_client_t **)out, err)
                : wf_tls_server_parse(c, n, 0, (wf_tls_server_t **)out, err);
    wf_conf_free(c);
    return rc;
}

static int parse_server(const char *yaml, wf_tls_server_t **out, wf_conf_err_t *err)
{
    return parse(yaml, 0, (void **)out, err);
}

#define HAS(msg, s) (strstr((msg), (s)) != NULL)

TEST(server_context_and_sni)
{
    make_pki();
    wf_conf_err_t err = { { 0 } };
    wf_tls_server_t *s = NULL;
    int rc = parse_server("tls:\n  certificates:\n    - {cert: a.pem, key: a.key}\n    - {cert: b.pem, key: b.key}\n"
                          "    - {cert: cnonly.pem, key: cnonly.key}\n"
                          "    - {cert: b.pem, key: b.key, names: [\"*.extra.test\", Exact.Test]}\n",
                          &s, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "%s\n", err.msg);
        return;
    }
    CHECK_EQ_INT(wf_tls_server_ncerts(s), 4);
    CHECK_EQ_INT(wf_tls_server_pick(s, NULL), 0);
    CHECK_EQ_INT(wf_tls_server_pick(s, ""), 0);
    CHECK_EQ_INT(wf_tls_server_pick(s, "a.test"), 0);
    CHECK_EQ_INT(wf_tls_server_pick(s, "b.test"), 1);
    CHECK_EQ_INT(wf_tls_server_pick(s, "B.TEST"), 1);
    CHECK_EQ_INT(wf_tls_server_pick(s, "legacy.test"), 2); /* subject CN when there is no SAN */
    CHECK_EQ_INT(wf_tls_server_pick(s, "x.wild.test"), 0);
    CHECK_EQ_INT(wf_tls_server_pick(s, "y.extra.test"), 3);
    CHECK_EQ_INT(wf_tls_server_pick(s, "exact.test"), 3);
    CHECK_EQ_INT(wf_tls_server_pick(s, "a.b.extra.test"), 0);  /* a wildcard covers one label */
    CHECK_EQ_INT(wf_tls_server_pick(s, "extra.test"), 0);
    CHECK_EQ_INT(wf_tls_server_pick(s, ".extra.test"), 0);
    CHECK_EQ_INT(wf_tls_server_client_verify(s), WF_TLS_VERIFY_OFF);
    wf_tls_server_free(s);
}

TEST(server_context_refusals_name_file_and_reason)
{
    make_pki();
    struct { const char *yaml, *want1, *want2; } cases[] = {
        { "tls:\n  certificates:\n    - {cert: missing.pem, key: a.key}\n", "certificates[0].cert", "No such file" },
        { "tls:\n  certificates:\n    - {cert: garbage.pem, key: a.key}\n", "garbage.pem", "cannot load a certificate" },
        { "tls:\n  certificates:\n    - {cert: a.pem, key: garbage.pem}\n", "certificates[0].key", "garbage.pem" },
        { "tls:\n  certificates:\n    - {cert: a.pem, key: b.key}\n", "certificates[0].key", "b.key" },
        { "tls:\n  certificates:\n    - {cert: a.pem, key: a.key}\n    - {cert: b.pem}\n", "certificates[1]",
          "missing key \"key\"" },
        { "tls:\n  certificates: []\n", "certificates", "non-empty" },
        { "tls:\n  protocols: [TLSv1.2]\n", "tls", "missing key \"certificates\"" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  protocols: [TLSv1.1]\n", "protocols[0]", "TLSv1.1" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  ciphers: NOPE-NOTHING\n", "tls.ciphers", "cipher" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  ciphersuites: TLS_NOPE\n", "tls.ciphersuites", "" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  client_verify: required\n", "client_verify",
          "needs client_ca" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  client_verify: sometimes\n", "client_verify", "" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  client_ca: garbage.pem\n  client_verify: optional\n",
          "client_ca", "garbage.pem" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key}]\n  session_cach: 10\n", "session_cach", "" },
        { "tls:\n  certificates: [{cert: a.pem, key: a.key, names: []}]\n", "names", "non-empty" },
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(cases); i++) {
        wf_conf_err_t err = { { 0 } };
        wf_tls_server_t *s = NULL;
        int rc = parse_server(cases[i].yaml, &s, &err);
        CHECK(rc != 0);
        CHECK(s == NULL);
        if (!HAS(err.msg, cases[i].want1) || !HAS(err.msg, cases[i].want2))
            fprintf(stderr, "case %zu: unexpected message: %s\n", i, err.msg);
        CHECK(HAS(err.msg, cases[i].want1) && HAS(err.msg, cases[i].want2));
        CHECK(HAS(err.msg, "t.yaml:"));
        wf_tls_server_free(s);
    }
}

TEST(client_context)
{
    make_pki();
    wf_conf_err_t err = { { 0 } };
    wf_tls_client_t *cl = (wf_tls_client_t *)1;
    CHECK_EQ_INT(parse("tls: {enabled: false}\n", 1, (void **)&cl, &err), 0);
    CHECK(cl == NULL);
    CHECK_EQ_INT(parse("tls: {ca: ca.pem, server_name: up.test, client_cert: spiffe.pem, client_key: spiffe.key}\n", 1,
                       (void **)&cl, &err), 0);
    CHECK(cl != NULL);
    if (cl)
        CHECK_EQ_STR(wf_tls_client_server_name(cl), "up.test");
    wf_tls_client_free(cl);
    cl = NULL;
    CHECK(parse("tls: {ca: garbage.pem}\n", 1, (void **)&cl, &err) != 0);
    CHECK(HAS(err.msg, "tls.ca") && HAS(err.msg, "garbage.pem"));
    CHECK(parse("tls: {ca: ca.pem, client_cert: spiffe.pem}\n", 1, (void **)&cl, &err) != 0);
    CHECK(HAS(err.msg, "go together"));
    CHECK(parse("tls: {ca: ca.pem, client_cert: spiffe.pem, client_key: a.key}\n", 1, (void **)&cl, &err) != 0);
    CHECK(HAS(err.msg, "client_key") && HAS(err.msg, "a.key"));
    CHECK(cl == NULL);
}

/* ---- identities ---- */

static void identity_of(const char *name, char *out, size_t cap)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    int n = wf_tls_identity_file(path, out, cap);
    if (n < 0)
        out[0] = 0;
}

TEST(identity_from_certificates)
{
    make_pki();
    char id[WF_TLS_IDENTITY_MAX];
    identity_of("spiffe", id, sizeof(id));
    CHECK_EQ_STR(id, "spiffe://example.org/ns/prod/sa/web"); /* URI SAN before DNS SAN */
    identity_of("dns", id, sizeof(id));
    CHECK_EQ_STR(id, "svc.internal");
    identity_of("ops", id, sizeof(id));
    CHECK_EQ_STR(id, "CN=ops,O=Example,C=US"); /* most specific first */
    identity_of("evil", id, sizeof(id));
    CHECK(strchr(id, '\n') == NULL && strchr(id, '\r') == NULL);
    CHECK(strncmp(id, "CN=a", 4) == 0);
    char small[8];
    identity_of("spiffe", small, sizeof(small));
    CHECK_EQ_STR(small, "spiffe:");
    CHECK(wf_tls_identity_file("/nonexistent/x.pem", id, sizeof(id)) == -ENOENT);
    char path[128];
    snprintf(path, sizeof(path), "%s/garbage.pem", dir);
    CHECK(wf_tls_identity_file(path, id, sizeof(id)) == -WF_EFORMAT);
}

TEST(glob_match)
{
#define G(p, s) wf_tls_glob_match(wf_str_c(p), wf_str_c(s))
    CHECK(G("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod/sa/web"));
    CHECK(G("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod/"));
    CHECK(!G("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/production/sa/web"));
    CHECK(!G("spiffe://example.org/ns/prod/*", "spiffe://example.org/ns/prod"));
    CHECK(G("CN=ops,*", "CN=ops,O=Example,C=US"));
    CHECK(!G("CN=ops,*", "CN=opsx,O=Example"));
    CHECK(!G("CN=ops,*", "CN=ops"));
    CHECK(G("*", ""));
    CHECK(G("*", "anything"));
    CHECK(G("exact", "exact"));
    CHECK(!G("exact", "exactly"));
    CHECK(!G("exact", "Exact"));
    CHECK(G("a*b*c", "aXXbYYc"));
    CHECK(G("a*b*c", "abc"));
    CHECK(!G("a*b*c", "aXXbYY"));
    CHECK(G("*.internal", "svc.internal"));
    CHECK(G("**x", "abcx"));
    CHECK(!G("", "a"));
    CHECK(G("", ""));
    /* a long hostile subject against a pattern with several stars stays linear enough */
    char big[4096];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK(!G("*a*a*a*a*b", big));
#undef G
}

TEST(access_policy)
{
    const char *yaml = "access:\n  identities: [\"spiffe://example.org/ns/prod/*\", \"CN=ops,*\"]\n";
    wf_conf_err_t err;
    wf_conf_t *c = NULL;
    CHECK_EQ_INT(wf_conf_load_string("t.yaml", yaml, strlen(yaml), &c, &err), 0);
    wf_tls_access_t *a = NULL;
    CHECK_EQ_INT(wf_tls_access_parse(c, wf_conf_get(wf_conf_root(c), "access"), &a, &err), 0);
    wf_conf_free(c);
    CHECK(a && a->require_client_cert && a->nidentities == 2);
    CHECK(wf_tls_access_allows(a, true, WF_STR("spiffe://example.org/ns/prod/sa/web")));
    CHECK(wf_tls_access_allows(a, true, WF_STR("CN=ops,O=Example")));
    CHECK(!wf_tls_access_allows(a, true, WF_STR("spiffe://example.org/ns/dev/sa/web")));
    CHECK(!wf_tls_access_allows(a, false, WF_STR("")));
    CHECK(!wf_tls_access_allows(a, false, WF_STR("CN=ops,O=Example"))); /* not verified: no identity */
    wf_tls_access_free(a);
    CHECK(wf_tls_access_allows(NULL, false, WF_STR("")));

    const char *y2 = "access: {require_client_cert: true}\n";
    CHECK_EQ_INT(wf_conf_load_string("t.yaml", y2, strlen(y2), &c, &err), 0);
    CHECK_EQ_INT(wf_tls_access_parse(c, wf_conf_get(wf_conf_root(c), "access"), &a, &err), 0);
    wf_conf_free(c);
    CHECK(wf_tls_access_allows(a, true, WF_STR("anyone")));
    CHECK(!wf_tls_access_allows(a, false, WF_STR("")));
    wf_tls_access_free(a);

    const char *bad[] = { "access: {identities: [\"x\"], require_client_cert: false}\n", "access: {identities: x}\n",
                          "access: {identitys: [x]}\n", "access: [x]\n", "access: {identities: [\"\"]}\n" };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(wf_conf_load_string("t.yaml", bad[i], strlen(bad[i]), &c, &err), 0);
        a = NULL;
        CHECK(wf_tls_access_parse(c, wf_conf_get(wf_conf_root(c), "access"), &a, &err) != 0);
        CHECK(a == NULL);
        wf_conf_free(c);
    }
}

/* ---- handshakes through the vtable ---- */

typedef struct {
    wf_conn_t s, c;
    wf_stats_t st_s, st_c;
} pair_t;

/* Drives both ends until the client's bytes arrived at the server (or a
 * failure). Returns the bytes the server read, or a negative error. */
static ssize_t pump(pair_t *p, const char *msg, size_t len, char *got, size_t cap, int *cerr)
{
    size_t sent = 0, recvd = 0;
    *cerr = 0;
    for (int i = 0; i < 100000 && recvd < len; i++) {
        if (sent < len) {
            ssize_t n = wf_conn_write(&p->c, msg + sent, len - sent);
            if (n > 0)
                sent += (size_t)n;
            else if (n != -EAGAIN) {
                *cerr = (int)n;
                return n;
            }
        }
        ssize_t n = wf_conn_read(&p->s, got + recvd, cap - recvd);
        if (n > 0)
            recvd += (size_t)n;
        else if (n == 0 || (n < 0 && n != -EAGAIN))
            return n == 0 ? -WF_ECLOSED : n;
    }
    return (ssize_t)recvd;
}

static int pair_open(pair_t *p, wf_tls_server_t *srv, wf_tls_client_t *cl, const char *name)
{
    int fds[2];
    memset(p, 0, sizeof(*p));
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) < 0)
        return -errno;
    CHECK_EQ_INT(wf_tls_conn_accept(&p->s, srv, fds[0], &p->st_s), 0);
    CHECK_EQ_INT(wf_tls_conn_connect(&p->c, cl, fds[1], name, "test-peer", &p->st_c), 0);
    return 0;
}

static void pair_close(pair_t *p)
{
    p->s.type->close(&p->s);
    p->c.type->close(&p->c);
}

TEST(handshake_identity_and_transfer)
{
    make_pki();
    signal(SIGPIPE, SIG_IGN);
    wf_conf_err_t err = { { 0 } };
    wf_tls_server_t *srv = NULL;
    wf_tls_client_t *cl = NULL, *anon = NULL, *rogue = NULL;
    int rc = parse_server("tls:\n  certificates: [{cert: a.pem, key: a.key}, {cert: b.pem, key: b.key}]\n"
                          "  client_ca: ca.pem\n  client_verify: optional\n", &srv, &err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(parse("tls: {ca: ca.pem, client_cert: spiffe.pem, client_key: spiffe.key}\n", 1, (void **)&cl, &err), 0);
    CHECK_EQ_INT(parse("tls: {ca: ca.pem}\n", 1, (void **)&anon, &err), 0);
    CHECK_EQ_INT(parse("tls: {ca: ca.pem, client_cert: rogue.pem, client_key: rogue.key}\n", 1, (void **)&rogue, &err), 0);
    if (!srv || !cl || !anon || !rogue)
        return;

    /* with a client certificate: the identity is its URI SAN; SNI picks b */
    pair_t p;
    pair_open(&p, srv, cl, "b.test");
    static char big[3 << 20], got[3 << 20];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 131 + (i >> 10));
    int cerr;
    ssize_t n = pump(&p, big, sizeof(big), got, sizeof(got), &cerr);
    CHECK_EQ_INT(n, (ssize_t)sizeof(big));
    CHECK(memcmp(big, got, sizeof(big)) == 0);
    CHECK(wf_tls_conn_established(&p.s) && wf_tls_conn_established(&p.c));
    CHECK(wf_tls_conn_peer_verified(&p.s));
    wf_str_t id = wf_tls_conn_identity(&p.s);
    CHECK(wf_str_eq(id, WF_STR("spiffe://example.org/ns/prod/sa/web")));
    CHECK_EQ_INT(p.st_s.tls_handshakes, 1);
    CHECK_EQ_INT(p.st_c.tls_upstream_handshakes, 1);
    CHECK_EQ_STR(wf_tls_conn_protocol(&p.s), "TLSv1.3");
    /* writev joins small pieces; the server reads them back in order */
    struct iovec iov[3] = { { (void *)"HTTP/1.1 200 OK\r\n", 17 }, { (void *)"\r\n", 2 }, { big, 100000 } };
    size_t total = 17 + 2 + 100000, done = 0, rd = 0;
    for (int i = 0; i < 100000 && rd < total; i++) {
        if (done < total) {
            struct iovec v[3];
            int k = 0;
            size_t skip = done;
            for (int j = 0; j < 3; j++) {
                if (skip >= iov[j].iov_len) {
                    skip -= iov[j].iov_len;
                    continue;
                }
                v[k++] = (struct iovec){ (char *)iov[j].iov_base + skip, iov[j].iov_len - skip };
                skip = 0;
            }
            ssize_t w = wf_conn_writev(&p.s, v, k);
            if (w > 0)
                done += (size_t)w;
            else
                CHECK(w == -EAGAIN);
        }
        ssize_t r = wf_conn_read(&p.c, got + rd, sizeof(got) - rd);
        if (r > 0)
            rd += (size_t)r;
    }
    CHECK_EQ_INT(rd, total);
    CHECK(memcmp(got, "HTTP/1.1 200 OK\r\n\r\n", 19) == 0 && memcmp(got + 19, big, 100000) == 0);
    /* close_notify: the peer sees the end of stream */
    p.s.type->close(&p.s);
    ssize_t r = -EAGAIN;
    for (int i = 0; i < 1000 && r == -EAGAIN; i++)
        r = wf_conn_read(&p.c, got, 100);
    CHECK_EQ_INT(r, 0);
    p.c.type->close(&p.c);

    /* the client kept the server's session: a new connection resumes it, with the identity it had */
    pair_open(&p, srv, cl, "b.test");
    n = pump(&p, "again", 5, got, sizeof(got), &cerr);
    CHECK_EQ_INT(n, 5);
    CHECK(wf_tls_conn_resumed(&p.c) && wf_tls_conn_resumed(&p.s));
    CHECK_EQ_INT(p.st_c.tls_upstream_resumed, 1);
    CHECK_EQ_INT(p.st_s.tls_resumed, 1);
    CHECK(wf_str_eq(wf_tls_conn_identity(&p.s), WF_STR("spiffe://example.org/ns/prod/sa/web")));
    pair_close(&p);

    /* without a certificate (optional): no identity */
    pair_open(&p, srv, anon, "a.test");
    n = pump(&p, "hello", 5, got, sizeof(got), &cerr);
    CHECK_EQ_INT(n, 5);
    CHECK(!wf_tls_conn_peer_verified(&p.s));
    CHECK_EQ_INT(wf_tls_conn_identity(&p.s).n, 0);
    pair_close(&p);

    /* a certificate from another CA: the handshake fails and is counted */
    pair_open(&p, srv, rogue, "a.test");
    n = pump(&p, "hello", 5, got, sizeof(got), &cerr);
    CHECK(n < 0);
    CHECK_EQ_INT(p.st_s.tls_failed_certificate, 1);
    CHECK_EQ_INT(p.st_s.tls_handshakes, 0);
    pair_close(&p);

    /* the client refuses a server whose name does not match */
    pair_open(&p, srv, anon, "elsewhere.test");
    n = pump(&p, "hello", 5, got, sizeof(got), &cerr);
    CHECK(n < 0);
    CHECK_EQ_INT(p.st_c.tls_upstream_failed, 1);
    pair_close(&p);

    wf_tls_server_free(srv);
    wf_tls_client_free(cl);
    wf_tls_client_free(anon);
    wf_tls_client_free(rogue);
}

/* the route path an access rule is matched against (wafer/http.h) */
TEST(path_normalize)
{
    struct { const char *in, *want; } cases[] = {
        { "/admin", "/admin" }, { "/%61dmin", "/admin" }, { "/x/../admin", "/admin" }, { "//admin", "/admin" },
        { "/a%2f..%2fadmin", "/admin" }, { "/admin/", "/admin/" }, { "/admin/.", "/admin/" },
        { "/admin/..", "/" }, { "/../../admin", "/admin" }, { "", "/" }, { "/", "/" }, { "/.", "/" },
        { "\\admin\\x", "/admin/x" }, { "/%2e%2e/admin", "/admin" }, { "/a/b/../../c/./d", "/c/d" },
        { "/%zz%4", "/%zz%4" }, { "/%", "/%" }, { "admin", "/admin" }, { "/a//b///", "/a/b/" },
        { "/..%2fadmin", "/admin" }, { "/.../x", "/.../x" },
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(cases); i++) {
        char out[64];
        size_t n = wf_http_path_normalize(wf_str_c(cases[i].in), out);
        CHECK(n <= strlen(cases[i].in) + 2);
        out[n] = 0;
        if (strcmp(out, cases[i].want))
            fprintf(stderr, "case %zu: %s -> %s, want %s\n", i, cases[i].in, out, cases[i].want);
        CHECK_EQ_STR(out, cases[i].want);
    }
}

/* A read that needs the socket writable: the server's handshake flight
 * (a large certificate) does not fit its send buffer, so its read returns
 * -EAGAIN with WF_CONN_READ_WANTS_WRITE, and a write event must count as
 * readable for it (wf_conn_ready). */
TEST(read_wants_write_during_handshake)
{
    make_pki();
    wf_conf_err_t err = { { 0 } };
    wf_tls_server_t *srv = NULL;
    wf_tls_client_t *cl = NULL;
    CHECK_EQ_INT(parse_server("tls:\n  certificates: [{cert: big.pem, key: big.key}]\n", &srv, &err), 0);
    CHECK_EQ_INT(parse("tls: {ca: ca.pem}\n", 1, (void **)&cl, &err), 0);
    if (!srv || !cl)
        return;
    pair_t p;
    pair_open(&p, srv, cl, "host-007.big.test");
    int small = 1;
    setsockopt(p.s.fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    char buf[256];
    bool seen_want = false, seen_wwr = false;
    size_t got = 0, sent = 0;
    for (int i = 0; i < 10000 && got < 5; i++) {
        ssize_t n = sent < 5 ? wf_conn_write(&p.c, "hello" + sent, 5 - sent) : wf_conn_read(&p.c, buf, 0);
        if (n > 0)
            sent += (size_t)n;
        else if (n == -EAGAIN && (p.c.want & WF_CONN_WRITE_WANTS_READ))
            seen_wwr = (wf_conn_ready(&p.c, WF_IO_READ) & WF_IO_WRITE) != 0; /* the client waits for the server */
        n = wf_conn_read(&p.s, buf + got, sizeof(buf) - got);
        if (n == -EAGAIN && (p.s.want & WF_CONN_READ_WANTS_WRITE)) {
            seen_want = true;
            CHECK(wf_conn_ready(&p.s, WF_IO_WRITE) & WF_IO_READ);
            CHECK(!(wf_conn_ready(&p.s, WF_IO_WRITE) & WF_IO_HUP));
        } else if (n > 0) {
            got += (size_t)n;
        } else {
            CHECK(n == -EAGAIN);
        }
    }
    CHECK(seen_want);
    CHECK(seen_wwr);
    CHECK_EQ_INT(got, 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(!(p.s.want & WF_CONN_READ_WANTS_WRITE)); /* cleared once the read went on */
    CHECK_EQ_INT(p.st_s.tls_handshakes, 1);
    pair_close(&p);
    wf_tls_server_free(srv);
    wf_tls_client_free(cl);
}

TEST_MAIN()
