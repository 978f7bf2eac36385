/* TLS with OpenSSL 3 behind the connection vtable; contexts, SNI, session
 * tickets, identities and identity policies (see wafer/tls.h). */
#include "wafer/tls.h"
#include "wafer/core.h"

#include <arpa/inet.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#define SCRATCH 16384 /* one TLS record of plaintext */

/* ---- small helpers ---- */

/* The most useful text of OpenSSL's error queue (then cleared). */
static const char *ssl_reason(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_error();
    if (!e) {
        snprintf(buf, cap, "unknown error");
    } else {
        const char *r = ERR_reason_error_string(e);
        if (r)
            snprintf(buf, cap, "%s", r);
        else
            ERR_error_string_n(e, buf, cap);
    }
    ERR_clear_error();
    return buf;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* A file named in the configuration: relative paths are relative to the
 * configuration file's folder. */
static char *conf_path(const wf_conf_t *c, const char *v)
{
    const char *file = wf_conf_file(c);
    const char *slash = file ? strrchr(file, '/') : NULL;
    if (v[0] == '/' || !slash)
        return strdup(v);
    size_t dl = (size_t)(slash - file) + 1, vl = strlen(v);
    char *p = malloc(dl + vl + 1);
    if (!p)
        return NULL;
    memcpy(p, file, dl);
    memcpy(p + dl, v, vl + 1);
    return p;
}

/* Reads a file key: present and a non-empty string. NULL in *out when absent. */
static int get_file(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **out, wf_conf_err_t *err)
{
    const char *v = NULL;
    *out = NULL;
    int rc = wf_conf_str(c, map, key, &v, err);
    if (rc || !v)
        return rc;
    if (!*v)
        return wf_conf_errorf(c, wf_conf_get(map, key), err, "expected a file name");
    if (!(*out = conf_path(c, v)))
        return -ENOMEM;
    if (access(*out, R_OK) < 0)
        return wf_conf_errorf(c, wf_conf_get(map, key), err, "%s: %s", *out, strerror(errno));
    return 0;
}

/* ---- session ticket keys: process-wide, so that reloads keep them ---- */

typedef struct {
    unsigned char name[16], aes[32], hmac[32];
    uint64_t born_ms;
    bool set;
} tkey_t;

static pthread_rwlock_t tk_lock = PTHREAD_RWLOCK_INITIALIZER;
static tkey_t tk_cur, tk_prev;
static uint64_t tk_rotate_ms = 3600 * 1000;

static void tkeys_set_rotation(uint64_t ms)
{
    pthread_rwlock_wrlock(&tk_lock);
    tk_rotate_ms = ms ? ms : 1;
    pthread_rwlock_unlock(&tk_lock);
}

/* The key to encrypt with now (rotated first when due). */
static int tkeys_current(uint64_t now, tkey_t *out)
{
    pthread_rwlock_rdlock(&tk_lock);
    bool due = !tk_cur.set || now - tk_cur.born_ms >= tk_rotate_ms;
    if (!due)
        *out = tk_cur;
    pthread_rwlock_unlock(&tk_lock);
    if (!due)
        return 0;
    pthread_rwlock_wrlock(&tk_lock);
    int rc = 0;
    if (!tk_cur.set || now - tk_cur.born_ms >= tk_rotate_ms) {
        tkey_t k = { .born_ms = now, .set = true };
        if (RAND_bytes(k.name, sizeof(k.name)) <= 0 || RAND_bytes(k.aes, sizeof(k.aes)) <= 0 ||
            RAND_bytes(k.hmac, sizeof(k.hmac)) <= 0) {
            rc = -EIO;
        } else {
            tk_prev = tk_cur;
            tk_cur = k;
        }
    }
    *out = tk_cur;
    pthread_rwlock_unlock(&tk_lock);
    return rc || !out->set ? -EIO : 0;
}

/* 1: the current key, 2: the previous one (the ticket is renewed), 0: none. */
static int tkeys_find(const unsigned char *name, uint64_t now, tkey_t *out)
{
    int rc = 0;
    pthread_rwlock_rdlock(&tk_lock);
    if (tk_cur.set && !memcmp(name, tk_cur.name, 16)) {
        *out = tk_cur;
        rc = 1;
    } else if (tk_prev.set && !memcmp(name, tk_prev.name, 16) && now - tk_prev.born_ms < 2 * tk_rotate_ms) {
        *out = tk_prev;
        rc = 2;
    }
    pthread_rwlock_unlock(&tk_lock);
    return rc;
}

static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx,
                     int enc)
{
    tkey_t k;
    int rc = 1;
    uint64_t now = wf_now_ms();
    if (enc) {
        if (tkeys_current(now, &k) || RAND_bytes(iv, 16) <= 0)
            return -1;
        memcpy(key_name, k.name, 16);
        if (!EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv))
            rc = -1;
    } else {
        rc = tkeys_find(key_name, now, &k);
        if (rc == 0)
            return 0; /* unknown or expired key: a full handshake */
        if (!EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv))
            rc = -1;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (rc > 0 && !EVP_MAC_CTX_set_params(hctx, params))
        rc = -1;
    OPENSSL_cleanse(&k, sizeof(k));
    return rc;
}

/* ---- server contexts ---- */

typedef struct {
    SSL_CTX *ctx;
    char *cert, *key;
    char **names; /* lower case; "*.example.com" for wildcards */
    size_t nnames;
} tls_cert_t;

struct wf_tls_server {
    tls_cert_t *certs;
    size_t ncerts;
    wf_tls_verify_t verify;
};

typedef struct {
    unsigned protocols;
    const char *ciphers, *ciphersuites;
    bool tickets;
    int64_t cache;
    uint64_t timeout_ms;
    char *client_ca;
    wf_tls_verify_t verify;
    int64_t depth;
    unsigned tag;
} srv_opts_t;

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    for (unsigned i = 0; i < inlen;) {
        unsigned l = in[i];
        if (i + 1 + l > inlen)
            break;
        if (l == 8 && !memcmp(in + i + 1, "http/1.1", 8)) {
            *out = in + i + 1;
            *outlen = 8;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + l;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
}

static int sni_cb(SSL *ssl, int *al, void *arg)
{
    wf_tls_server_t *s = arg;
    size_t i = wf_tls_server_pick(s, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (i && !SSL_set_SSL_CTX(ssl, s->certs[i].ctx))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static void set_proto_range(SSL_CTX *ctx, unsigned protocols)
{
    SSL_CTX_set_min_proto_version(ctx, (protocols & WF_TLS_V12) ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ctx, (protocols & WF_TLS_V13) ? TLS1_3_VERSION : TLS1_2_VERSION);
}

static const long ctx_modes = SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS;

/* Settings every certificate's context shares (SNI may move a connection to
 * any of them; sessions and tickets stay with the default one). Returns a
 * key name on failure with the reason in why. */
static const char *ctx_common(SSL_CTX *ctx, wf_tls_server_t *s, const srv_opts_t *o, char *why, size_t cap)
{
    set_proto_range(ctx, o->protocols);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
                                 (o->tickets ? 0 : SSL_OP_NO_TICKET));
    SSL_CTX_set_mode(ctx, ctx_modes);
    SSL_CTX_set_read_ahead(ctx, 1); /* one recv for several records, not two per record */
    if (!SSL_CTX_set_cipher_list(ctx, o->ciphers))
        return ssl_reason(why, cap), "ciphers";
    if (!SSL_CTX_set_ciphersuites(ctx, o->ciphersuites))
        return ssl_reason(why, cap), "ciphersuites";
    unsigned char sid[16];
    int sl = snprintf((char *)sid, sizeof(sid), "wafer/%u", o->tag);
    SSL_CTX_set_session_id_context(ctx, sid, (unsigned)WF_MIN((size_t)sl, sizeof(sid) - 1));
    if (o->cache > 0) {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
        SSL_CTX_sess_set_cache_size(ctx, o->cache);
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    SSL_CTX_set_timeout(ctx, (long)(o->timeout_ms / 1000 ? o->timeout_ms / 1000 : 1));
    if (o->tickets)
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, s);
    if (o->verify != WF_TLS_VERIFY_OFF) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (o->verify == WF_TLS_VERIFY_REQUIRED ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
                           NULL);
        SSL_CTX_set_verify_depth(ctx, (int)o->depth);
        if (!SSL_CTX_load_verify_locations(ctx, o->client_ca, NULL))
            return ssl_reason(why, cap), "client_ca";
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(o->client_ca);
        if (!names)
            return ssl_reason(why, cap), "client_ca";
        SSL_CTX_set_client_CA_list(ctx, names);
    }
    return NULL;
}

static int add_name(tls_cert_t *ct, const char *name, size_t n)
{
    if (!n || n > 253)
        return 0;
    char **v = realloc(ct->names, (ct->nnames + 1) * sizeof(*v));
    if (!v)
        return -ENOMEM;
    ct->names = v;
    char *s = malloc(n + 1);
    if (!s)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        s[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    s[n] = 0;
    v[ct->nnames++] = s;
    return 0;
}

/* The names a certificate answers to: its DNS SANs, else its subject CN. */
static int cert_names(tls_cert_t *ct)
{
    X509 *x = SSL_CTX_get0_certificate(ct->ctx);
    if (!x)
        return 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens) && !rc; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_DNS)
            rc = add_name(ct, (const char *)ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(gens);
    if (rc || ct->nnames)
        return rc;
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    return n > 0 ? add_name(ct, cn, (size_t)n) : 0;
}

void wf_tls_server_free(wf_tls_server_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->ncerts; i++) {
        tls_cert_t *ct = &s->certs[i];
        SSL_CTX_free(ct->ctx);
        free(ct->cert);
        free(ct->key);
        for (size_t j = 0; j < ct->nnames; j++)
            free(ct->names[j]);
        free(ct->names);
    }
    free(s->certs);
    free(s);
}

size_t wf_tls_server_ncerts(const wf_tls_server_t *s) { return s->ncerts; }
wf_tls_verify_t wf_tls_server_client_verify(const wf_tls_server_t *s) { return s->verify; }

size_t wf_tls_server_pick(const wf_tls_server_t *s, const char *name)
{
    if (!name || !*name)
        return 0;
    for (size_t i = 0; i < s->ncerts; i++)
        for (size_t j = 0; j < s->certs[i].nnames; j++)
            if (!strcasecmp(s->certs[i].names[j], name))
                return i;
    const char *dot = strchr(name, '.');
    if (!dot || dot == name)
        return 0;
    for (size_t i = 0; i < s->ncerts; i++)
        for (size_t j = 0; j < s->certs[i].nnames; j++) {
            const char *n = s->certs[i].names[j];
            if (n[0] == '*' && n[1] == '.' && !strcasecmp(n + 1, dot))
                return i;
        }
    return 0;
}

/* Loads one certificates[] entry into ct (context already made). */
static int load_cert(const wf_conf_t *c, const wf_conf_node_t *it, tls_cert_t *ct, wf_conf_err_t *err)
{
    static const char *const keys[] = { "cert", "key", "names", NULL };
    int rc;
    char why[256];
    if (it->type != WF_CONF_MAP)
        return wf_conf_errorf(c, it, err, "expected a mapping such as {cert: server.pem, key: server.key}");
    if ((rc = wf_conf_check_keys(c, it, keys, err)))
        return rc;
    if (!wf_conf_get(it, "cert"))
        return wf_conf_errorf(c, it, err, "missing key \"cert\"");
    if (!wf_conf_get(it, "key"))
        return wf_conf_errorf(c, it, err, "missing key \"key\"");
    if ((rc = get_file(c, it, "cert", &ct->cert, err)) || (rc = get_file(c, it, "key", &ct->key, err)))
        return rc;
    ERR_clear_error();
    if (!SSL_CTX_use_certificate_chain_file(ct->ctx, ct->cert))
        return wf_conf_errorf(c, wf_conf_get(it, "cert"), err, "%s: cannot load a certificate: %s", ct->cert,
                              ssl_reason(why, sizeof(why)));
    if (!SSL_CTX_use_PrivateKey_file(ct->ctx, ct->key, SSL_FILETYPE_PEM))
        return wf_conf_errorf(c, wf_conf_get(it, "key"), err, "%s: cannot load the private key: %s", ct->key,
                              ssl_reason(why, sizeof(why)));
    if (!SSL_CTX_check_private_key(ct->ctx))
        return wf_conf_errorf(c, wf_conf_get(it, "key"), err, "%s: the key does not match the certificate %s",
                              ct->key, ct->cert);
    X509 *x = SSL_CTX_get0_certificate(ct->ctx);
    if (x && X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
        wf_warn("%s: certificate %s has expired", wf_conf_file(c), ct->cert);
    const wf_conf_node_t *names = wf_conf_get(it, "names");
    if (names) {
        if (names->type != WF_CONF_SEQ || !names->nitems)
            return wf_conf_errorf(c, names, err, "expected a non-empty list of server names");
        for (size_t i = 0; i < names->nitems; i++) {
            const wf_conf_node_t *n = names->items[i];
            if (n->type != WF_CONF_SCALAR || !n->value[0] || strlen(n->value) > 253)
                return wf_conf_errorf(c, n, err, "expected a server name such as www.example.com or *.example.com");
            if ((rc = add_name(ct, n->value, strlen(n->value))))
                return rc;
        }
        return 0;
    }
    return cert_names(ct);
}

int wf_tls_server_parse(const wf_conf_t *c, const wf_conf_node_t *node, unsigned tag, wf_tls_server_t **out,
                        wf_conf_err_t *err)
{
    static const char *const keys[] = { "certificates", "protocols", "ciphers", "ciphersuites", "session_tickets",
                                        "session_cache", "session_timeout", "client_ca", "client_verify",
                                        "verify_depth", NULL };
    static const char *const verify_words[] = { "off", "optional", "required", NULL };
    *out = NULL;
    if (node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {certificates: [{cert: ..., key: ...}]}");
    int rc = wf_conf_check_keys(c, node, keys, err);
    if (rc)
        return rc;
    srv_opts_t o = { .protocols = WF_TLS_V12 | WF_TLS_V13, .ciphers = WF_TLS_DEFAULT_CIPHERS,
                     .ciphersuites = WF_TLS_DEFAULT_CIPHERSUITES, .tickets = true, .cache = 20000,
                     .timeout_ms = 3600 * 1000, .depth = 4, .tag = tag };
    const wf_conf_node_t *n = wf_conf_get(node, "protocols");
    if (n) {
        if (n->type != WF_CONF_SEQ || !n->nitems)
            return wf_conf_errorf(c, n, err, "expected a list of TLSv1.2 and/or TLSv1.3");
        o.protocols = 0;
        for (size_t i = 0; i < n->nitems; i++) {
            const wf_conf_node_t *p = n->items[i];
            if (p->type == WF_CONF_SCALAR && !strcmp(p->value, "TLSv1.2"))
                o.protocols |= WF_TLS_V12;
            else if (p->type == WF_CONF_SCALAR && !strcmp(p->value, "TLSv1.3"))
                o.protocols |= WF_TLS_V13;
            else
                return wf_conf_errorf(c, p, err, "expected TLSv1.2 or TLSv1.3, got \"%s\"",
                                      p->value ? p->value : "a collection");
        }
    }
    int v = 0;
    if ((rc = wf_conf_str(c, node, "ciphers", &o.ciphers, err)) ||
        (rc = wf_conf_str(c, node, "ciphersuites", &o.ciphersuites, err)) ||
        (rc = wf_conf_bool(c, node, "session_tickets", &o.tickets, err)) ||
        (rc = wf_conf_int(c, node, "session_cache", 0, 10000000, &o.cache, err)) ||
        (rc = wf_conf_duration_ms(c, node, "session_timeout", 1000, 7 * 24 * 3600 * 1000ull, &o.timeout_ms, err)) ||
        (rc = wf_conf_enum(c, node, "client_verify", verify_words, &v, err)) ||
        (rc = wf_conf_int(c, node, "verify_depth", 1, 100, &o.depth, err)))
        return rc;
    o.verify = (wf_tls_verify_t)v;
    if ((rc = get_file(c, node, "client_ca", &o.client_ca, err)))
        return rc;
    if (o.verify != WF_TLS_VERIFY_OFF && !o.client_ca) {
        return wf_conf_errorf(c, wf_conf_get(node, "client_verify"), err,
                              "client_verify %s needs client_ca (the CA file client certificates are checked against)",
                              verify_words[v]);
    }
    n = wf_conf_get(node, "certificates");
    if (!n) {
        free(o.client_ca);
        return wf_conf_errorf(c, node, err, "missing key \"certificates\" (a list of {cert: file, key: file})");
    }
    if (n->type != WF_CONF_SEQ || !n->nitems) {
        free(o.client_ca);
        return wf_conf_errorf(c, n, err, "expected a non-empty list of {cert: file, key: file}");
    }
    wf_tls_server_t *s = calloc(1, sizeof(*s));
    if (!s || !(s->certs = calloc(n->nitems, sizeof(*s->certs)))) {
        free(s);
        free(o.client_ca);
        return -ENOMEM;
    }
    s->verify = o.verify;
    rc = 0;
    for (size_t i = 0; i < n->nitems && !rc; i++) {
        tls_cert_t *ct = &s->certs[s->ncerts];
        if (!(ct->ctx = SSL_CTX_new(TLS_server_method()))) {
            rc = -ENOMEM;
            break;
        }
        s->ncerts++;
        char why[256];
        const char *bad = ctx_common(ct->ctx, s, &o, why, sizeof(why));
        if (bad) {
            const wf_conf_node_t *at = wf_conf_get(node, bad);
            if (!strcmp(bad, "client_ca"))
                rc = wf_conf_errorf(c, at, err, "%s: %s", o.client_ca, why);
            else
                rc = wf_conf_errorf(c, at ? at : node, err, "%s", why);
            break;
        }
        rc = load_cert(c, n->items[i], ct, err);
    }
    free(o.client_ca);
    if (rc) {
        wf_tls_server_free(s);
        return rc;
    }
    /* SNI is answered by the default context: the one a connection starts with */
    SSL_CTX_set_tlsext_servername_callback(s->certs[0].ctx, sni_cb);
    SSL_CTX_set_tlsext_servername_arg(s->certs[0].ctx, s);
    if (o.tickets)
        tkeys_set_rotation(o.timeout_ms);
    *out = s;
    return 0;
}

/* ---- client contexts ---- */

#define SESS_SLOTS 256

struct wf_tls_client {
    SSL_CTX *ctx;
    char *server_name;
    bool verify;
    /* the last session of each server, shared by the workers */
    pthread_mutex_t lock;
    struct {
        char key[160];
        SSL_SESSION *sess;
    } slots[SESS_SLOTS];
    size_t nslots, next;
};

void wf_tls_client_free(wf_tls_client_t *cl)
{
    if (!cl)
        return;
    SSL_CTX_free(cl->ctx);
    free(cl->server_name);
    for (size_t i = 0; i < cl->nslots; i++)
        SSL_SESSION_free(cl->slots[i].sess);
    pthread_mutex_destroy(&cl->lock);
    free(cl);
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess);

const char *wf_tls_client_server_name(const wf_tls_client_t *cl) { return cl->server_name; }

int wf_tls_client_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_tls_client_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "enabled", "ca", "verify", "server_name", "client_cert", "client_key",
                                        "protocols", "ciphers", "ciphersuites", NULL };
    *out = NULL;
    if (node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {ca: ca.pem, server_name: app.internal}");
    int rc = wf_conf_check_keys(c, node, keys, err);
    if (rc)
        return rc;
    bool enabled = true, verify = true;
    const char *server_name = NULL, *ciphers = WF_TLS_DEFAULT_CIPHERS, *suites = WF_TLS_DEFAULT_CIPHERSUITES;
    if ((rc = wf_conf_bool(c, node, "enabled", &enabled, err)) || (rc = wf_conf_bool(c, node, "verify", &verify, err)) ||
        (rc = wf_conf_str(c, node, "server_name", &server_name, err)) ||
        (rc = wf_conf_str(c, node, "ciphers", &ciphers, err)) ||
        (rc = wf_conf_str(c, node, "ciphersuites", &suites, err)))
        return rc;
    unsigned protocols = WF_TLS_V12 | WF_TLS_V13;
    const wf_conf_node_t *n = wf_conf_get(node, "protocols");
    if (n) {
        if (n->type != WF_CONF_SEQ || !n->nitems)
            return wf_conf_errorf(c, n, err, "expected a list of TLSv1.2 and/or TLSv1.3");
        protocols = 0;
        for (size_t i = 0; i < n->nitems; i++) {
            const wf_conf_node_t *p = n->items[i];
            if (p->type == WF_CONF_SCALAR && !strcmp(p->value, "TLSv1.2"))
                protocols |= WF_TLS_V12;
            else if (p->type == WF_CONF_SCALAR && !strcmp(p->value, "TLSv1.3"))
                protocols |= WF_TLS_V13;
            else
                return wf_conf_errorf(c, p, err, "expected TLSv1.2 or TLSv1.3");
        }
    }
    if (!enabled)
        return 0;
    char *ca = NULL, *cert = NULL, *key = NULL;
    char why[256];
    if ((rc = get_file(c, node, "ca", &ca, err)) || (rc = get_file(c, node, "client_cert", &cert, err)) ||
        (rc = get_file(c, node, "client_key", &key, err)))
        goto out;
    if (!cert != !key) {
        rc = wf_conf_errorf(c, node, err, "client_cert and client_key go together");
        goto out;
    }
    wf_tls_client_t *cl = calloc(1, sizeof(*cl));
    if (cl)
        pthread_mutex_init(&cl->lock, NULL);
    if (!cl || !(cl->ctx = SSL_CTX_new(TLS_client_method())) || (server_name && !(cl->server_name = strdup(server_name)))) {
        wf_tls_client_free(cl);
        rc = -ENOMEM;
        goto out;
    }
    SSL_CTX_set_app_data(cl->ctx, cl);
    SSL_CTX_set_session_cache_mode(cl->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(cl->ctx, new_session_cb);
    cl->verify = verify;
    SSL_CTX *ctx = cl->ctx;
    ERR_clear_error();
    set_proto_range(ctx, protocols);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, ctx_modes);
    SSL_CTX_set_read_ahead(ctx, 1);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(ctx, alpn, sizeof(alpn) - 1);
    const char *bad = NULL;
    if (!SSL_CTX_set_cipher_list(ctx, ciphers))
        bad = "ciphers";
    else if (!SSL_CTX_set_ciphersuites(ctx, suites))
        bad = "ciphersuites";
    if (bad) {
        rc = wf_conf_errorf(c, wf_conf_get(node, bad), err, "%s", ssl_reason(why, sizeof(why)));
        wf_tls_client_free(cl);
        goto out;
    }
    if (verify) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        if (ca ? !SSL_CTX_load_verify_locations(ctx, ca, NULL) : !SSL_CTX_set_default_verify_paths(ctx)) {
            rc = wf_conf_errorf(c, ca ? wf_conf_get(node, "ca") : node, err, "%s: %s", ca ? ca : "system CA store",
                                ssl_reason(why, sizeof(why)));
            wf_tls_client_free(cl);
            goto out;
        }
    }
    if (cert) {
        if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
            rc = wf_conf_errorf(c, wf_conf_get(node, "client_cert"), err, "%s: cannot load a certificate: %s", cert,
                                ssl_reason(why, sizeof(why)));
        } else if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) || !SSL_CTX_check_private_key(ctx)) {
            rc = wf_conf_errorf(c, wf_conf_get(node, "client_key"), err, "%s: cannot use the private key: %s", key,
                                ssl_reason(why, sizeof(why)));
        }
        if (rc) {
            wf_tls_client_free(cl);
            goto out;
        }
    }
    *out = cl;
out:
    free(ca);
    free(cert);
    free(key);
    return rc;
}

/* ---- connections ---- */

enum { F_PROTOCOL, F_CERT, F_ALERT, F_ALPN, F_HTTP, F_CLOSED, F_OTHER };

typedef struct {
    SSL *ssl;
    wf_stats_t *stats;
    bool server, established, fatal, identity_done, verified;
    bool drained;                         /* a recv during this read came back short: the socket was empty */
    uint16_t idlen;
    char peer[128];                       /* upstream: its address, for logs */
    char skey[160];                       /* upstream: "name@address", where its session is kept */
    char identity[WF_TLS_IDENTITY_MAX];
} tls_conn_t;

static void tls_established(tls_conn_t *t)
{
    t->established = true;
    if (!t->stats)
        return;
    if (t->server) {
        WF_STAT_INC(t->stats, tls_handshakes);
        if (SSL_session_reused(t->ssl))
            WF_STAT_INC(t->stats, tls_resumed);
    } else {
        WF_STAT_INC(t->stats, tls_upstream_handshakes);
        if (SSL_session_reused(t->ssl))
            WF_STAT_INC(t->stats, tls_upstream_resumed);
    }
}

static int fail_kind(unsigned long e)
{
    if (!e)
        return F_CLOSED;
    if (ERR_GET_LIB(e) != ERR_LIB_SSL)
        return F_OTHER;
    int r = ERR_GET_REASON(e);
    switch (r) {
    case SSL_R_UNSUPPORTED_PROTOCOL:
    case SSL_R_WRONG_VERSION_NUMBER:
    case SSL_R_NO_SHARED_CIPHER:
    case SSL_R_NO_PROTOCOLS_AVAILABLE:
    case SSL_R_VERSION_TOO_LOW:
    case SSL_R_VERSION_TOO_HIGH:
    case SSL_R_NO_SUITABLE_KEY_SHARE:
        return F_PROTOCOL;
    case SSL_R_HTTP_REQUEST:
    case SSL_R_HTTPS_PROXY_REQUEST:
        return F_HTTP;
    case SSL_R_CERTIFICATE_VERIFY_FAILED:
    case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
        return F_CERT;
    case SSL_R_NO_APPLICATION_PROTOCOL:
        return F_ALPN;
    case SSL_R_UNEXPECTED_EOF_WHILE_READING:
        return F_CLOSED;
    }
    return r >= SSL_AD_REASON_OFFSET ? F_ALERT : F_OTHER;
}

/* A fatal error: counts and logs a failed handshake. */
static void tls_fatal(tls_conn_t *t, int sslerr)
{
    bool first = !t->fatal;
    t->fatal = true;
    if (!first || t->established) {
        ERR_clear_error();
        return;
    }
    unsigned long e = sslerr == SSL_ERROR_SSL ? ERR_peek_error() : 0;
    char why[256];
    if (e)
        ssl_reason(why, sizeof(why));
    else
        snprintf(why, sizeof(why), "connection closed during the handshake");
    ERR_clear_error();
    if (!t->server) {
        if (t->stats)
            WF_STAT_INC(t->stats, tls_upstream_failed);
        long vr = SSL_get_verify_result(t->ssl);
        if (vr != X509_V_OK)
            wf_info("upstream %s: TLS handshake failed: certificate verification: %s", t->peer,
                    X509_verify_cert_error_string(vr));
        else
            wf_info("upstream %s: TLS handshake failed: %s", t->peer, why);
        return;
    }
    int k = fail_kind(e);
    if (k == F_HTTP) {
        /* what a confused client or operator should see (as nginx answers it); best effort */
        static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 48\r\n"
                                   "Connection: close\r\n\r\nThis port speaks TLS: use https:// to reach it.\n";
        ssize_t r = send(SSL_get_fd(t->ssl), resp, sizeof(resp) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)r;
    }
    if (t->stats) {
        switch (k) {
        case F_PROTOCOL: WF_STAT_INC(t->stats, tls_failed_protocol); break;
        case F_CERT: WF_STAT_INC(t->stats, tls_failed_certificate); break;
        case F_ALERT: WF_STAT_INC(t->stats, tls_failed_alert); break;
        case F_ALPN: WF_STAT_INC(t->stats, tls_failed_alpn); break;
        case F_HTTP: WF_STAT_INC(t->stats, tls_failed_plain_http); break;
        case F_CLOSED: WF_STAT_INC(t->stats, tls_failed_closed); break;
        default: WF_STAT_INC(t->stats, tls_failed_other); break;
        }
    }
    if (k == F_CERT) {
        long vr = SSL_get_verify_result(t->ssl);
        wf_debug("TLS handshake refused: client certificate: %s",
                 vr != X509_V_OK ? X509_verify_cert_error_string(vr) : why);
    } else {
        wf_debug("TLS handshake failed: %s", why);
    }
}

static ssize_t tls_read(wf_conn_t *c, void *buf, size_t len)
{
    tls_conn_t *t = c->tls;
    size_t got = 0;
    c->want &= ~WF_CONN_READ_WANTS_WRITE;
    if (t->fatal)
        return -EPROTO;
    /* fill the buffer: one SSL_read returns one record, and what is left in
     * the socket would not be signalled again (edge-triggered). A recv of
     * this call that came back short emptied the socket, so nothing needs
     * another recv (that would only say EAGAIN) once OpenSSL holds no bytes. */
    t->drained = false;
    while (got < len) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_read_ex(t->ssl, (char *)buf + got, len - got, &n);
        if (!t->established && SSL_is_init_finished(t->ssl))
            tls_established(t);
        if (r > 0) {
            got += n;
            if (t->drained && !SSL_has_pending(t->ssl))
                break;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        switch (e) {
        case SSL_ERROR_WANT_READ:
            return got ? (ssize_t)got : -EAGAIN;
        case SSL_ERROR_WANT_WRITE:
            c->want |= WF_CONN_READ_WANTS_WRITE;
            return got ? (ssize_t)got : -EAGAIN;
        case SSL_ERROR_ZERO_RETURN:
            return (ssize_t)got; /* close_notify: end of stream */
        case SSL_ERROR_SYSCALL: {
            int en = errno; /* EAGAIN here would be stale: the connection is unusable */
            tls_fatal(t, e);
            return got ? (ssize_t)got : en && en != EAGAIN ? -en : -ECONNRESET;
        }
        default:
            tls_fatal(t, e);
            return got ? (ssize_t)got : -EPROTO;
        }
    }
    return (ssize_t)got;
}

/* Sends buf until done or the socket is full (then a short count or -EAGAIN). */
static ssize_t tls_send(wf_conn_t *c, tls_conn_t *t, const char *buf, size_t len)
{
    size_t sent = 0;
    while (sent < len) {
        size_t n = 0;
        ERR_clear_error();
        int r = SSL_write_ex(t->ssl, buf + sent, len - sent, &n);
        if (!t->established && SSL_is_init_finished(t->ssl))
            tls_established(t);
        if (r > 0) {
            sent += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, r);
        switch (e) {
        case SSL_ERROR_WANT_WRITE:
            return sent ? (ssize_t)sent : -EAGAIN;
        case SSL_ERROR_WANT_READ:
            c->want |= WF_CONN_WRITE_WANTS_READ;
            return sent ? (ssize_t)sent : -EAGAIN;
        case SSL_ERROR_SYSCALL: {
            int en = errno;
            tls_fatal(t, e);
            return sent ? (ssize_t)sent : en && en != EAGAIN ? -en : -EPIPE;
        }
        case SSL_ERROR_ZERO_RETURN:
            t->fatal = true;
            return sent ? (ssize_t)sent : -EPIPE;
        default:
            tls_fatal(t, e);
            return sent ? (ssize_t)sent : -EPROTO;
        }
    }
    return (ssize_t)sent;
}

static ssize_t tls_write(wf_conn_t *c, const void *buf, size_t len)
{
    tls_conn_t *t = c->tls;
    c->want &= ~WF_CONN_WRITE_WANTS_READ;
    if (t->fatal)
        return -EPROTO;
    return len ? tls_send(c, t, buf, len) : 0;
}

/* Small pieces (a response head and the start of its body) are joined into
 * one record. A retry after -EAGAIN starts at the same byte with at least as
 * many bytes, as SSL_write's retry rule asks (the buffer may move). */
static ssize_t tls_writev(wf_conn_t *c, const struct iovec *iov, int iovcnt)
{
    static __thread char scratch[SCRATCH];
    tls_conn_t *t = c->tls;
    c->want &= ~WF_CONN_WRITE_WANTS_READ;
    if (t->fatal)
        return -EPROTO;
    size_t total = 0, off = 0;
    int i = 0;
    while (i < iovcnt) {
        size_t left = iov[i].iov_len - off;
        const char *p;
        size_t len;
        int ni;
        size_t noff;
        if (left < SCRATCH && i + 1 < iovcnt) {
            len = 0;
            ni = i;
            noff = off;
            while (ni < iovcnt && len < SCRATCH) {
                size_t take = WF_MIN(iov[ni].iov_len - noff, SCRATCH - len);
                memcpy(scratch + len, (const char *)iov[ni].iov_base + noff, take);
                len += take;
                noff += take;
                if (noff == iov[ni].iov_len) {
                    ni++;
                    noff = 0;
                }
            }
            p = scratch;
        } else {
            p = (const char *)iov[i].iov_base + off;
            len = left;
            ni = i + 1;
            noff = 0;
        }
        if (len) {
            ssize_t n = tls_send(c, t, p, len);
            if (n < 0)
                return total ? (ssize_t)total : n;
            total += (size_t)n;
            if ((size_t)n < len)
                return (ssize_t)total;
        }
        i = ni;
        off = noff;
    }
    return (ssize_t)total;
}

static int tls_shutdown(wf_conn_t *c, int how)
{
    tls_conn_t *t = c->tls;
    if (how != SHUT_RD && t->established && !t->fatal) {
        ERR_clear_error();
        SSL_shutdown(t->ssl); /* close_notify; the peer's is not waited for */
        ERR_clear_error();
    }
    return shutdown(c->fd, how) < 0 ? -errno : 0;
}

static void tls_close(wf_conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (t) {
        if (t->established && !t->fatal && !(SSL_get_shutdown(t->ssl) & SSL_SENT_SHUTDOWN)) {
            ERR_clear_error();
            SSL_shutdown(t->ssl);
        }
        ERR_clear_error();
        SSL_free(t->ssl);
        free(t);
        c->tls = NULL;
    }
    close(c->fd);
}

const wf_conn_type_t wf_conn_tls = {
    .name = "tls",
    .read = tls_read,
    .write = tls_write,
    .writev = tls_writev,
    .shutdown = tls_shutdown,
    .close = tls_close,
};

/* Sees every recv of the socket BIO: a short one means the socket is empty. */
static long bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret, size_t *processed)
{
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        tls_conn_t *t = (tls_conn_t *)BIO_get_callback_arg(b);
        if (ret > 0 && processed && *processed < len)
            t->drained = true;
    }
    return ret;
}

static tls_conn_t *tls_conn_new(SSL_CTX *ctx, int fd, wf_stats_t *stats)
{
    tls_conn_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->stats = stats;
    if (!(t->ssl = SSL_new(ctx)) || !SSL_set_fd(t->ssl, fd)) {
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    BIO *rb = SSL_get_rbio(t->ssl);
    BIO_set_callback_ex(rb, bio_cb);
    BIO_set_callback_arg(rb, (char *)t);
    return t;
}

int wf_tls_conn_accept(wf_conn_t *c, wf_tls_server_t *s, int fd, wf_stats_t *stats)
{
    tls_conn_t *t = tls_conn_new(s->certs[0].ctx, fd, stats);
    if (!t)
        return -ENOMEM;
    t->server = true;
    SSL_set_accept_state(t->ssl);
    wf_conn_init(c, &wf_conn_tls, fd);
    c->tls = t;
    return 0;
}

/* Keeps a new session of an upstream (a reference is taken: returns 1). */
static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    wf_tls_client_t *cl = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    tls_conn_t *t = SSL_get_app_data(ssl);
    if (!cl || !t || !t->skey[0])
        return 0;
    pthread_mutex_lock(&cl->lock);
    size_t i = 0;
    while (i < cl->nslots && strcmp(cl->slots[i].key, t->skey))
        i++;
    if (i == cl->nslots) {
        if (cl->nslots < SESS_SLOTS)
            cl->nslots++;
        else
            i = cl->next++ % SESS_SLOTS;
        snprintf(cl->slots[i].key, sizeof(cl->slots[i].key), "%s", t->skey);
    }
    SSL_SESSION *old = cl->slots[i].sess;
    cl->slots[i].sess = sess;
    pthread_mutex_unlock(&cl->lock);
    SSL_SESSION_free(old);
    return 1;
}

/* Offers the last session of this upstream, if it can still be resumed. */
static void reuse_session(wf_tls_client_t *cl, tls_conn_t *t)
{
    SSL_SESSION *sess = NULL;
    pthread_mutex_lock(&cl->lock);
    for (size_t i = 0; i < cl->nslots; i++)
        if (!strcmp(cl->slots[i].key, t->skey)) {
            sess = cl->slots[i].sess;
            if (sess)
                SSL_SESSION_up_ref(sess);
            break;
        }
    pthread_mutex_unlock(&cl->lock);
    if (sess) {
        if (SSL_SESSION_is_resumable(sess))
            SSL_set_session(t->ssl, sess);
        SSL_SESSION_free(sess);
    }
}

int wf_tls_conn_connect(wf_conn_t *c, wf_tls_client_t *cl, int fd, const char *name, const char *peer,
                        wf_stats_t *stats)
{
    tls_conn_t *t = tls_conn_new(cl->ctx, fd, stats);
    if (!t)
        return -ENOMEM;
    if (cl->server_name)
        name = cl->server_name;
    snprintf(t->peer, sizeof(t->peer), "%s", peer ? peer : name ? name : "?");
    snprintf(t->skey, sizeof(t->skey), "%s@%s", name ? name : "", peer ? peer : "");
    SSL_set_app_data(t->ssl, t);
    SSL_set_connect_state(t->ssl);
    if (name && *name) {
        unsigned char tmp[16];
        bool ip = inet_pton(AF_INET, name, tmp) == 1 || inet_pton(AF_INET6, name, tmp) == 1;
        int ok = 1;
        if (!ip)
            ok = SSL_set_tlsext_host_name(t->ssl, name);
        if (ok && cl->verify)
            ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) : SSL_set1_host(t->ssl, name);
        if (!ok) {
            SSL_free(t->ssl);
            free(t);
            ERR_clear_error();
            return -EINVAL;
        }
    }
    reuse_session(cl, t);
    wf_conn_init(c, &wf_conn_tls, fd);
    c->tls = t;
    return 0;
}

bool wf_tls_conn_established(const wf_conn_t *c)
{
    const tls_conn_t *t = c->tls;
    return t && t->established;
}

bool wf_tls_conn_resumed(const wf_conn_t *c)
{
    const tls_conn_t *t = c->tls;
    return t && t->established && SSL_session_reused(t->ssl);
}

const char *wf_tls_conn_protocol(const wf_conn_t *c)
{
    const tls_conn_t *t = c->tls;
    return t ? SSL_get_version(t->ssl) : "";
}

static void identity_compute(tls_conn_t *t)
{
    if (t->identity_done)
        return;
    if (!t->established)
        return; /* not yet known: asked again later */
    t->identity_done = true;
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (!x || SSL_get_verify_result(t->ssl) != X509_V_OK)
        return;
    if (t->server && !(SSL_get_verify_mode(t->ssl) & SSL_VERIFY_PEER))
        return;
    t->verified = true;
    t->idlen = (uint16_t)wf_tls_x509_identity(x, t->identity, sizeof(t->identity));
}

bool wf_tls_conn_peer_verified(const wf_conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (!t)
        return false;
    identity_compute(t);
    return t->verified;
}

wf_str_t wf_tls_conn_identity(wf_conn_t *c)
{
    tls_conn_t *t = c->tls;
    if (!t)
        return wf_str("", 0);
    identity_compute(t);
    return wf_str(t->identity, t->idlen);
}

/* ---- identities ---- */

static size_t copy_clean(char *out, size_t cap, const unsigned char *s, size_t n)
{
    if (n > cap - 1)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i]);
    out[n] = 0;
    return n;
}

size_t wf_tls_x509_identity(const X509 *x, char *out, size_t cap)
{
    if (!cap)
        return 0;
    out[0] = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    const ASN1_STRING *uri = NULL, *dns = NULL;
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI && !uri && ASN1_STRING_length(g->d.uniformResourceIdentifier) > 0)
            uri = g->d.uniformResourceIdentifier;
        else if (g->type == GEN_DNS && !dns && ASN1_STRING_length(g->d.dNSName) > 0)
            dns = g->d.dNSName;
    }
    size_t n = 0;
    const ASN1_STRING *pick = uri ? uri : dns;
    if (pick)
        n = copy_clean(out, cap, ASN1_STRING_get0_data(pick), (size_t)ASN1_STRING_length(pick));
    GENERAL_NAMES_free(gens);
    if (n)
        return n;
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return 0;
    if (X509_NAME_print_ex(b, X509_get_subject_name(x), 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) > 0) {
        char *data = NULL;
        long len = BIO_get_mem_data(b, &data);
        if (len > 0)
            n = copy_clean(out, cap, (const unsigned char *)data, (size_t)len);
    }
    BIO_free(b);
    ERR_clear_error();
    return n;
}

int wf_tls_identity_file(const char *path, char *out, size_t cap)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -errno;
    X509 *x = PEM_read_X509(fp, NULL, NULL, NULL);
    fclose(fp);
    if (!x) {
        ERR_clear_error();
        return -WF_EFORMAT;
    }
    size_t n = wf_tls_x509_identity(x, out, cap);
    X509_free(x);
    return (int)n;
}

bool wf_tls_glob_match(wf_str_t pat, wf_str_t s)
{
    /* iterative with one backtrack point: the last '*' seen */
    size_t p = 0, i = 0, star = SIZE_MAX, mark = 0;
    while (i < s.n) {
        if (p < pat.n && pat.p[p] == '*') {
            star = p++;
            mark = i;
        } else if (p < pat.n && pat.p[p] == s.p[i]) {
            p++;
            i++;
        } else if (star != SIZE_MAX) {
            p = star + 1;
            i = ++mark;
        } else {
            return false;
        }
    }
    while (p < pat.n && pat.p[p] == '*')
        p++;
    return p == pat.n;
}

void wf_tls_access_free(wf_tls_access_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->nidentities; i++)
        free(a->identities[i]);
    free(a->identities);
    free(a);
}

int wf_tls_access_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_tls_access_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "identities", "require_client_cert", NULL };
    *out = NULL;
    if (node->type != WF_CONF_MAP)
        return wf_conf_errorf(c, node, err, "expected a mapping such as {identities: [\"spiffe://example.org/*\"]}");
    int rc = wf_conf_check_keys(c, node, keys, err);
    if (rc)
        return rc;
    wf_tls_access_t *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    const wf_conf_node_t *n = wf_conf_get(node, "identities");
    if (n) {
        if (n->type != WF_CONF_SEQ) {
            wf_tls_access_free(a);
            return wf_conf_errorf(c, n, err, "expected a list of identities (globs with *)");
        }
        if (n->nitems && !(a->identities = calloc(n->nitems, sizeof(char *)))) {
            wf_tls_access_free(a);
            return -ENOMEM;
        }
        for (size_t i = 0; i < n->nitems; i++) {
            const wf_conf_node_t *it = n->items[i];
            if (it->type != WF_CONF_SCALAR || !it->value[0]) {
                wf_tls_access_free(a);
                return wf_conf_errorf(c, it, err, "expected an identity such as spiffe://example.org/ns/prod/* or CN=ops,*");
            }
            if (!(a->identities[a->nidentities++] = xstrdup(it->value))) {
                wf_tls_access_free(a);
                return -ENOMEM;
            }
        }
        a->require_client_cert = true;
    }
    if ((rc = wf_conf_bool(c, node, "require_client_cert", &a->require_client_cert, err))) {
        wf_tls_access_free(a);
        return rc;
    }
    if (a->nidentities && !a->require_client_cert) {
        wf_tls_access_free(a);
        return wf_conf_errorf(c, wf_conf_get(node, "require_client_cert"), err,
                              "identities need a client certificate: require_client_cert cannot be false");
    }
    *out = a;
    return 0;
}

bool wf_tls_access_allows(const wf_tls_access_t *a, bool verified, wf_str_t identity)
{
    if (!a)
        return true;
    if (a->require_client_cert && !verified)
        return false;
    if (!a->nidentities)
        return true;
    for (size_t i = 0; i < a->nidentities; i++)
        if (wf_tls_glob_match(wf_str_c(a->identities[i]), identity))
            return true;
    return false;
}
