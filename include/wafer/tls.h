/*
 * wafer TLS (OpenSSL 3) behind the connection vtable of wafer/net.h, and
 * mutual-TLS identities (docs/tls.md).
 *
 * Server side: one wf_tls_server_t per listen entry and configuration
 * generation, built when the configuration is loaded (so that `wafer -t` and
 * a SIGHUP reload refuse a bad certificate or key, naming the file and the
 * reason, and the running generation keeps serving). It holds one SSL_CTX per
 * certificate; the first certificate is the default, the others are chosen by
 * SNI (exact names, then "*.example.com" wildcards matching one label). A
 * connection keeps the contexts it was accepted under (its generation).
 *
 * Session resumption: a session cache per listener and session tickets whose
 * encryption keys are process-wide (kept across reloads) and rotated every
 * session_timeout; a ticket is accepted under the current and the previous
 * key.
 *
 * Client side (TLS to upstreams): one wf_tls_client_t per upstream section,
 * verifying the server's certificate chain against a CA file and its name
 * (SSL_set1_host), sending SNI, and resuming each server's last session.
 *
 * Connections: wf_tls_conn_accept/wf_tls_conn_connect put a descriptor behind
 * the wf_conn_tls type. The handshake is driven by the first reads and
 * writes; a read that needs the socket writable (or a write that needs it
 * readable) returns -EAGAIN and sets c->want, which wf_conn_ready() turns into
 * the right readiness for edge-triggered owners. A read fills the buffer
 * until it is full or the socket is drained, and a write sends until done or
 * the socket is full, so that a short count means "wait for the next edge" as
 * it does with plain TCP. Closing sends close_notify.
 */
#ifndef WAFER_TLS_H
#define WAFER_TLS_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/net.h"
#include "wafer/stats.h"
#include <stdbool.h>

typedef enum { WF_TLS_VERIFY_OFF, WF_TLS_VERIFY_OPTIONAL, WF_TLS_VERIFY_REQUIRED } wf_tls_verify_t;

enum { WF_TLS_V12 = 1u << 0, WF_TLS_V13 = 1u << 1 };

/* Defaults (docs/configuration.md). */
#define WF_TLS_DEFAULT_CIPHERS                                                                                 \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"                \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define WF_TLS_DEFAULT_CIPHERSUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

/* ---- server contexts ---- */

typedef struct wf_tls_server wf_tls_server_t;

/* Parses a listen entry's `tls` mapping and builds its contexts (certificate
 * files are read now; relative paths are relative to the configuration
 * file). Errors name the key, the file and OpenSSL's reason:
 *     wafer.yaml:9:11: listen[0].tls.certificates[0].key: /etc/wafer/k.pem: key does not match the certificate
 * Returns 0 or WF_ECONFIG / -ENOMEM. `tag` makes session ids of this
 * listener distinct from those of others (its index). */
int wf_tls_server_parse(const wf_conf_t *c, const wf_conf_node_t *node, unsigned tag, wf_tls_server_t **out,
                        wf_conf_err_t *err);
void wf_tls_server_free(wf_tls_server_t *s);
/* Number of certificates, and the names the i-th one answers to (for logs and tests). */
size_t wf_tls_server_ncerts(const wf_tls_server_t *s);
/* The certificate index SNI would choose for a server name (NULL or "": the default, 0). */
size_t wf_tls_server_pick(const wf_tls_server_t *s, const char *name);
wf_tls_verify_t wf_tls_server_client_verify(const wf_tls_server_t *s);

/* ---- client contexts (TLS to upstreams) ---- */

typedef struct wf_tls_client wf_tls_client_t;

/* Parses an upstream's `tls` mapping ({enabled, ca, verify, server_name,
 * client_cert, client_key}). *out is NULL when enabled is false. */
int wf_tls_client_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_tls_client_t **out, wf_conf_err_t *err);
void wf_tls_client_free(wf_tls_client_t *cl);
/* The configured server_name, or NULL (then the upstream's host is used). */
const char *wf_tls_client_server_name(const wf_tls_client_t *cl);

/* ---- connections ---- */

extern const wf_conn_type_t wf_conn_tls;

/* Initialises c as the server side of a TLS connection on fd. stats (the
 * owning worker's, may be NULL) receives the tls_* counters. On failure fd is
 * left open and c untouched. Returns 0 or -ENOMEM. */
int wf_tls_conn_accept(wf_conn_t *c, wf_tls_server_t *s, int fd, wf_stats_t *stats);
/* Initialises c as the client side of a TLS connection on fd (connected or
 * connecting). name: the name to verify and send as SNI (the client's
 * server_name wins when set); NULL or a numeric address sends no SNI.
 * peer: the server's address as configured, for logs and as the key under
 * which its last session is kept for resumption (the client keeps one
 * session per peer and name, for at most 256 of them). */
int wf_tls_conn_connect(wf_conn_t *c, wf_tls_client_t *cl, int fd, const char *name, const char *peer,
                        wf_stats_t *stats);
/* Whether the handshake has completed. */
bool wf_tls_conn_established(const wf_conn_t *c);
/* Whether the peer presented a certificate that verified. */
bool wf_tls_conn_peer_verified(const wf_conn_t *c);
/* The peer's identity (see wf_tls_x509_identity), "" when it presented no
 * verified certificate. Computed once per connection. */
wf_str_t wf_tls_conn_identity(wf_conn_t *c);
/* Whether the session was resumed; the protocol ("TLSv1.3") and cipher. */
bool wf_tls_conn_resumed(const wf_conn_t *c);
const char *wf_tls_conn_protocol(const wf_conn_t *c);

/* ---- identities ---- */

#define WF_TLS_IDENTITY_MAX 256

struct x509_st;
/* A certificate's identity: its first URI SAN (spiffe://trust-domain/path),
 * else its first DNS SAN, else its subject DN in RFC 2253 form, most
 * specific first ("CN=ops,O=Example,C=US"). Control characters become '?'
 * (the identity may be sent in a header). Returns the length written into
 * out (NUL-terminated, cut to cap - 1), 0 when there is none. */
size_t wf_tls_x509_identity(const struct x509_st *x, char *out, size_t cap);
/* The same for a PEM certificate file; -errno / -WF_EFORMAT on failure. */
int wf_tls_identity_file(const char *path, char *out, size_t cap);

/* Glob match of a whole string: '*' matches any run of bytes (also '/'
 * and ','), every other byte itself (case-sensitive). */
bool wf_tls_glob_match(wf_str_t pattern, wf_str_t s);

/* A route's identity policy (`access:` in a route). */
typedef struct wf_tls_access {
    char **identities;        /* globs; none: any identity (or none, unless require_client_cert) */
    size_t nidentities;
    bool require_client_cert; /* a verified client certificate is needed */
} wf_tls_access_t;

/* Parses an `access` mapping {identities: [glob, ...], require_client_cert: bool}.
 * Listing identities implies require_client_cert. */
int wf_tls_access_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_tls_access_t **out, wf_conf_err_t *err);
void wf_tls_access_free(wf_tls_access_t *a);
/* Whether a client with this identity (verified: it presented a certificate
 * that verified; identity "" otherwise) may reach a route with policy a
 * (NULL: no policy, always true). */
bool wf_tls_access_allows(const wf_tls_access_t *a, bool verified, wf_str_t identity);

#endif
