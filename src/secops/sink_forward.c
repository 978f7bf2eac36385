/*
 * The Fluentd forward sink (forward protocol v1): events as [time, record]
 * entries under one tag, in Forward mode ([tag, [[time, record], ...],
 * option]) or PackedForward mode ([tag, bin(entries), option]). With ack,
 * each message carries option "chunk" and counts as delivered only when the
 * server answers {"ack": chunk}; without an answer within ack_timeout the
 * connection is dropped and the batch is sent again. The chunk id is derived
 * from the batch's bytes, so a resent batch has the same id (a receiver can
 * recognise a duplicate). With shared_key, every connection starts with the
 * HELO / PING / PONG handshake and the server's digest is checked.
 *
 * The record is the event's JSON form (wf_secev_json) as a msgpack map;
 * time is an EventTime (ext type 0: seconds and nanoseconds, big-endian).
 */
#include "secops_int.h"

#include <jansson.h>
#include <msgpack.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct {
    char *address;
    wf_sockaddr_t addr;
    char *tag;
    bool packed;
    bool ack;
    uint64_t ack_timeout_ms, timeout_ms;
    char *shared_key, *self_hostname, *username, *password;
} fwd_conf_t;

typedef struct {
    const fwd_conf_t *conf;
    char name[64];
    char hostname[256];
    wf_sconn_t conn;
    msgpack_sbuffer entries, msg;
    msgpack_unpacker unp;
    wf_buf_t json;
    char lasterr[256];
} fwd_sink_t;

static const char *const fwd_keys[] = { "address", "tag", "mode", "ack", "ack_timeout", "timeout", "shared_key",
                                        "self_hostname", "username", "password", NULL };

static void fwd_conf_free(void *p)
{
    fwd_conf_t *fc = p;
    if (!fc)
        return;
    free(fc->address);
    free(fc->tag);
    free(fc->shared_key);
    free(fc->self_hostname);
    free(fc->username);
    free(fc->password);
    free(fc);
}

static int opt_str(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, char **out, wf_conf_err_t *err)
{
    const char *v = NULL;
    int rc = wf_conf_str(c, map, key, &v, err);
    if (rc || !v)
        return rc;
    free(*out);
    if (!(*out = strdup(v)))
        return -ENOMEM;
    return 0;
}

static int fwd_conf_parse(const wf_conf_t *c, const wf_conf_node_t *map, void **out, wf_conf_err_t *err)
{
    static const char *const modes[] = { "forward", "packed", NULL };
    fwd_conf_t *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return -ENOMEM;
    int mode = 1, rc;
    fc->ack = true;
    fc->ack_timeout_ms = 10000;
    fc->timeout_ms = 5000;
    if ((rc = opt_str(c, map, "address", &fc->address, err)) || (rc = opt_str(c, map, "tag", &fc->tag, err)) ||
        (rc = wf_conf_enum(c, map, "mode", modes, &mode, err)) || (rc = wf_conf_bool(c, map, "ack", &fc->ack, err)) ||
        (rc = wf_conf_duration_ms(c, map, "ack_timeout", 1, 600000, &fc->ack_timeout_ms, err)) ||
        (rc = wf_conf_duration_ms(c, map, "timeout", 1, 600000, &fc->timeout_ms, err)) ||
        (rc = opt_str(c, map, "shared_key", &fc->shared_key, err)) ||
        (rc = opt_str(c, map, "self_hostname", &fc->self_hostname, err)) ||
        (rc = opt_str(c, map, "username", &fc->username, err)) ||
        (rc = opt_str(c, map, "password", &fc->password, err)))
        goto fail;
    fc->packed = mode == 1;
    if (!fc->address) {
        rc = wf_conf_errorf(c, map, err, "a forward sink needs an address (host:port)");
        goto fail;
    }
    if (wf_sockaddr_parse(fc->address, &fc->addr)) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "address"), err, "\"%s\" is not a host:port that resolves",
                            fc->address);
        goto fail;
    }
    if (!fc->tag && !(fc->tag = strdup("wafer.security"))) {
        rc = -ENOMEM;
        goto fail;
    }
    if (!*fc->tag) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "tag"), err, "a tag may not be empty");
        goto fail;
    }
    if ((fc->username || fc->password) && !fc->shared_key) {
        rc = wf_conf_errorf(c, wf_conf_get(map, fc->username ? "username" : "password"), err,
                            "user authentication is part of the shared_key handshake: set shared_key too");
        goto fail;
    }
    if (fc->shared_key && !*fc->shared_key) {
        rc = wf_conf_errorf(c, wf_conf_get(map, "shared_key"), err, "an empty shared_key");
        goto fail;
    }
    *out = fc;
    return 0;
fail:
    fwd_conf_free(fc);
    return rc;
}

static int fwd_open(const void *conf, const char *name, void **state, char *err, size_t errlen)
{
    const fwd_conf_t *fc = conf;
    fwd_sink_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->conf = fc;
    f->conn.fd = -1;
    snprintf(f->name, sizeof(f->name), "%s", name);
    if (fc->self_hostname)
        snprintf(f->hostname, sizeof(f->hostname), "%s", fc->self_hostname);
    else if (gethostname(f->hostname, sizeof(f->hostname) - 1) != 0)
        snprintf(f->hostname, sizeof(f->hostname), "wafer");
    msgpack_sbuffer_init(&f->entries);
    msgpack_sbuffer_init(&f->msg);
    if (!msgpack_unpacker_init(&f->unp, 4096) || wf_buf_init(&f->json, 16 << 10, 1 << 20)) {
        msgpack_sbuffer_destroy(&f->entries);
        msgpack_sbuffer_destroy(&f->msg);
        free(f);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    *state = f;
    return 0;
}

/* ---- JSON to msgpack ---- */

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_json(msgpack_packer *pk, const json_t *j)
{
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(j));
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            pack_str(pk, k, strlen(k));
            pack_json(pk, v);
        }
        break;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(j));
        size_t i;
        json_t *v;
        json_array_foreach(j, i, v) pack_json(pk, v);
        break;
    }
    case JSON_STRING: pack_str(pk, json_string_value(j), json_string_length(j)); break;
    case JSON_INTEGER: msgpack_pack_int64(pk, json_integer_value(j)); break;
    case JSON_REAL: msgpack_pack_double(pk, json_real_value(j)); break;
    case JSON_TRUE: msgpack_pack_true(pk); break;
    case JSON_FALSE: msgpack_pack_false(pk); break;
    default: msgpack_pack_nil(pk); break;
    }
}

/* One [time, record] entry. */
static int pack_entry(fwd_sink_t *f, msgpack_packer *pk, const wf_secev_t *ev)
{
    wf_buf_clear(&f->json);
    int rc = wf_secev_json(ev, &f->json);
    if (rc)
        return rc;
    json_error_t je;
    /* the JSON form keeps key order, and so does the map (JSON_PRESERVE_ORDER) */
    json_t *j = json_loadb(wf_buf_rptr(&f->json), wf_buf_len(&f->json), JSON_PRESERVE_ORDER, &je);
    if (!j)
        return -WF_EFORMAT;
    msgpack_pack_array(pk, 2);
    unsigned char t[8];
    uint32_t sec = (uint32_t)(ev->time_ns / 1000000000u), nsec = (uint32_t)(ev->time_ns % 1000000000u);
    for (int i = 0; i < 4; i++) {
        t[i] = (unsigned char)(sec >> (24 - 8 * i));
        t[4 + i] = (unsigned char)(nsec >> (24 - 8 * i));
    }
    msgpack_pack_ext(pk, 8, 0);
    msgpack_pack_ext_body(pk, t, 8);
    pack_json(pk, j);
    json_decref(j);
    return 0;
}

static void sha512_hex(const char *const *parts, const size_t *lens, size_t n, char out[129])
{
    unsigned char md[SHA512_DIGEST_LENGTH];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestInit_ex(ctx, EVP_sha512(), NULL);
    for (size_t i = 0; i < n; i++)
        EVP_DigestUpdate(ctx, parts[i], lens[i]);
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < mdlen; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[2 * mdlen] = 0;
}

/* Reads the next msgpack object from the server within timeout_ms. */
static int fwd_read_obj(fwd_sink_t *f, msgpack_unpacked *res, uint64_t timeout_ms)
{
    uint64_t deadline = wf_now_ms() + timeout_ms;
    for (;;) {
        msgpack_unpack_return r = msgpack_unpacker_next(&f->unp, res);
        if (r == MSGPACK_UNPACK_SUCCESS)
            return 0;
        if (r == MSGPACK_UNPACK_PARSE_ERROR)
            return -EPROTO;
        if (msgpack_unpacker_message_size(&f->unp) > (1u << 20))
            return -WF_ELIMIT; /* a server that sends megabytes without an object */
        uint64_t now = wf_now_ms();
        if (now >= deadline)
            return -WF_ETIMEOUT;
        if (!msgpack_unpacker_reserve_buffer(&f->unp, 4096))
            return -ENOMEM;
        ssize_t n = wf_sconn_read(&f->conn, msgpack_unpacker_buffer(&f->unp), 4096, deadline - now);
        if (n == 0)
            return -WF_ECLOSED;
        if (n < 0)
            return (int)n;
        msgpack_unpacker_buffer_consumed(&f->unp, (size_t)n);
    }
}

static bool obj_str(const msgpack_object *o, const char **p, size_t *n)
{
    if (o->type == MSGPACK_OBJECT_STR) {
        *p = o->via.str.ptr;
        *n = o->via.str.size;
        return true;
    }
    if (o->type == MSGPACK_OBJECT_BIN) {
        *p = o->via.bin.ptr;
        *n = o->via.bin.size;
        return true;
    }
    return false;
}

static bool obj_is(const msgpack_object *o, const char *s)
{
    const char *p;
    size_t n;
    return obj_str(o, &p, &n) && n == strlen(s) && memcmp(p, s, n) == 0;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
    if (m->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (obj_is(&m->via.map.ptr[i].key, key))
            return &m->via.map.ptr[i].val;
    return NULL;
}

static int fwd_fail(fwd_sink_t *f, int rc, const char *fmt, ...) WF_PRINTF(3, 4);
static int fwd_fail(fwd_sink_t *f, int rc, const char *fmt, ...)
{
    char e[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e, sizeof(e), fmt, ap);
    va_end(ap);
    if (strcmp(e, f->lasterr)) {
        wf_warn("events: sink %s: %s: %s", f->name, f->conf->address, e);
        snprintf(f->lasterr, sizeof(f->lasterr), "%s", e);
    }
    wf_sconn_close(&f->conn);
    return rc;
}

/* HELO -> PING -> PONG (forward protocol v1, "Handshake Messages"). */
static int fwd_handshake(fwd_sink_t *f)
{
    const fwd_conf_t *fc = f->conf;
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    int rc = fwd_read_obj(f, &res, fc->timeout_ms);
    if (rc) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, rc, "handshake: no HELO: %s", wf_strerror(rc));
    }
    const msgpack_object *o = &res.data, *opts, *nonce_o, *auth_o;
    const char *nonce, *auth = "";
    size_t nonce_n, auth_n = 0;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 2 || !obj_is(&o->via.array.ptr[0], "HELO") ||
        !(opts = &o->via.array.ptr[1]) || !(nonce_o = map_get(opts, "nonce")) || !obj_str(nonce_o, &nonce, &nonce_n)) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, -EPROTO, "handshake: expected [\"HELO\", {nonce, ...}]");
    }
    if ((auth_o = map_get(opts, "auth")))
        obj_str(auth_o, &auth, &auth_n);
    char nonce_copy[256], auth_copy[256];
    if (nonce_n > sizeof(nonce_copy) || auth_n > sizeof(auth_copy)) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, -EPROTO, "handshake: nonce or auth salt too long");
    }
    memcpy(nonce_copy, nonce, nonce_n);
    memcpy(auth_copy, auth, auth_n);
    msgpack_unpacked_destroy(&res);
    if (auth_n && !fc->username)
        return fwd_fail(f, -EACCES, "handshake: the server asks for a username and password (none configured)");

    unsigned char salt_raw[16];
    char salt[33];
    if (RAND_bytes(salt_raw, sizeof(salt_raw)) != 1)
        return fwd_fail(f, -EIO, "handshake: no random bytes for the salt");
    for (int i = 0; i < 16; i++)
        snprintf(salt + 2 * i, 3, "%02x", salt_raw[i]);
    const char *key = fc->shared_key;
    char digest[129], pwdigest[129] = "";
    {
        const char *parts[] = { salt, f->hostname, nonce_copy, key };
        size_t lens[] = { strlen(salt), strlen(f->hostname), nonce_n, strlen(key) };
        sha512_hex(parts, lens, 4, digest);
    }
    if (auth_n) {
        const char *parts[] = { auth_copy, fc->username, fc->password ? fc->password : "" };
        size_t lens[] = { auth_n, strlen(fc->username), fc->password ? strlen(fc->password) : 0 };
        sha512_hex(parts, lens, 3, pwdigest);
    }
    /* its own buffer: f->msg may hold the batch waiting for this connection */
    msgpack_sbuffer ping;
    msgpack_sbuffer_init(&ping);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &ping, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 6);
    pack_str(&pk, "PING", 4);
    pack_str(&pk, f->hostname, strlen(f->hostname));
    pack_str(&pk, salt, strlen(salt));
    pack_str(&pk, digest, strlen(digest));
    pack_str(&pk, auth_n ? fc->username : "", auth_n ? strlen(fc->username) : 0);
    pack_str(&pk, pwdigest, strlen(pwdigest));
    rc = wf_sconn_write(&f->conn, ping.data, ping.size);
    msgpack_sbuffer_destroy(&ping);
    if (rc)
        return fwd_fail(f, rc, "handshake: PING: %s", wf_strerror(rc));

    msgpack_unpacked_init(&res);
    if ((rc = fwd_read_obj(f, &res, fc->timeout_ms))) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, rc, "handshake: no PONG: %s", wf_strerror(rc));
    }
    o = &res.data;
    const char *reason = "", *srv_host, *srv_digest;
    size_t reason_n = 0, srv_host_n, srv_digest_n;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size < 5 || !obj_is(&o->via.array.ptr[0], "PONG") ||
        o->via.array.ptr[1].type != MSGPACK_OBJECT_BOOLEAN) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, -EPROTO, "handshake: expected [\"PONG\", bool, reason, hostname, digest]");
    }
    obj_str(&o->via.array.ptr[2], &reason, &reason_n);
    if (!o->via.array.ptr[1].via.boolean) {
        rc = fwd_fail(f, -EACCES, "handshake refused by the server: %.*s", (int)WF_MIN(reason_n, (size_t)200), reason);
        msgpack_unpacked_destroy(&res);
        return rc;
    }
    if (!obj_str(&o->via.array.ptr[3], &srv_host, &srv_host_n) ||
        !obj_str(&o->via.array.ptr[4], &srv_digest, &srv_digest_n)) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, -EPROTO, "handshake: PONG without hostname or digest");
    }
    char want[129];
    {
        const char *parts[] = { salt, srv_host, nonce_copy, key };
        size_t lens[] = { strlen(salt), srv_host_n, nonce_n, strlen(key) };
        sha512_hex(parts, lens, 4, want);
    }
    bool ok = srv_digest_n == 128 && CRYPTO_memcmp(want, srv_digest, 128) == 0;
    msgpack_unpacked_destroy(&res);
    if (!ok)
        return fwd_fail(f, -EACCES, "handshake: the server's digest does not match (wrong shared_key?)");
    return 0;
}

static int fwd_connect(fwd_sink_t *f)
{
    if (f->conn.fd >= 0 && !wf_sconn_usable(&f->conn))
        wf_sconn_close(&f->conn);
    if (f->conn.fd >= 0)
        return 0;
    /* a new connection starts a new stream of server messages */
    msgpack_unpacker_destroy(&f->unp);
    if (!msgpack_unpacker_init(&f->unp, 4096))
        return -ENOMEM;
    char e[256];
    int rc = wf_sconn_open(&f->conn, &f->conf->addr, NULL, NULL, f->conf->timeout_ms, e, sizeof(e));
    if (rc)
        return fwd_fail(f, rc, "%s", e);
    if (f->conf->shared_key && (rc = fwd_handshake(f)))
        return rc;
    f->lasterr[0] = 0;
    return 0;
}

static int fwd_deliver(void *state, const wf_secev_t *evs, size_t n, size_t *done)
{
    fwd_sink_t *f = state;
    const fwd_conf_t *fc = f->conf;
    *done = 0;
    int rc;
    /* entries first: the chunk id is a digest of them */
    msgpack_sbuffer_clear(&f->entries);
    msgpack_packer pe;
    msgpack_packer_init(&pe, &f->entries, msgpack_sbuffer_write);
    if (!fc->packed)
        msgpack_pack_array(&pe, n);
    for (size_t i = 0; i < n; i++)
        if ((rc = pack_entry(f, &pe, &evs[i])))
            return rc;
    char chunk[32] = "";
    if (fc->ack) {
        unsigned char md[SHA512_DIGEST_LENGTH];
        SHA512((const unsigned char *)f->entries.data, f->entries.size, md);
        EVP_EncodeBlock((unsigned char *)chunk, md, 18); /* 24 characters */
    }
    msgpack_sbuffer_clear(&f->msg);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->msg, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    pack_str(&pk, fc->tag, strlen(fc->tag));
    if (fc->packed) {
        msgpack_pack_bin(&pk, f->entries.size);
        msgpack_pack_bin_body(&pk, f->entries.data, f->entries.size);
    } else {
        msgpack_sbuffer_write(&f->msg, f->entries.data, f->entries.size);
    }
    msgpack_pack_map(&pk, fc->ack ? 2 : 1);
    pack_str(&pk, "size", 4);
    msgpack_pack_uint64(&pk, n);
    if (fc->ack) {
        pack_str(&pk, "chunk", 5);
        pack_str(&pk, chunk, strlen(chunk));
    }

    if ((rc = fwd_connect(f)))
        return rc;
    if ((rc = wf_sconn_write(&f->conn, f->msg.data, f->msg.size)))
        return fwd_fail(f, rc, "send: %s", wf_strerror(rc));
    if (!fc->ack) {
        *done = n;
        return 0;
    }
    msgpack_unpacked res;
    msgpack_unpacked_init(&res);
    rc = fwd_read_obj(f, &res, fc->ack_timeout_ms);
    if (rc) {
        msgpack_unpacked_destroy(&res);
        return fwd_fail(f, rc, "no ack within %llums: %s", (unsigned long long)fc->ack_timeout_ms, wf_strerror(rc));
    }
    const msgpack_object *a = map_get(&res.data, "ack");
    bool ok = a && obj_is(a, chunk);
    msgpack_unpacked_destroy(&res);
    if (!ok)
        return fwd_fail(f, -EPROTO, "the server answered something other than {\"ack\": \"%s\"}", chunk);
    *done = n;
    return 0;
}

static void fwd_close(void *state)
{
    fwd_sink_t *f = state;
    wf_sconn_close(&f->conn);
    msgpack_sbuffer_destroy(&f->entries);
    msgpack_sbuffer_destroy(&f->msg);
    msgpack_unpacker_destroy(&f->unp);
    wf_buf_free(&f->json);
    free(f);
}

const wf_sink_mod_t wf_sink_forward = {
    .type = "forward",
    .keys = fwd_keys,
    .conf_parse = fwd_conf_parse,
    .conf_free = fwd_conf_free,
    .open = fwd_open,
    .deliver = fwd_deliver,
    .reopen = NULL,
    .close = fwd_close,
};
