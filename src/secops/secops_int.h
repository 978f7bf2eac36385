/*
 * Inside the security-event hub: the bounded event queue, the sink
 * interface, the on-disk spool. Not part of the public API.
 */
#ifndef WAFER_SECOPS_INT_H
#define WAFER_SECOPS_INT_H

#include "wafer/net.h"
#include "wafer/secops.h"

#include <pthread.h>
#include <stdatomic.h>

/* ---- a bounded multi-producer multi-consumer queue of events ----
 * Dmitry Vyukov's bounded MPMC ring: each cell carries a sequence number
 * that says whose turn it is, so producers and the consumer only CAS their
 * own position counter. Push and pop never block and never allocate. A
 * consumer that finds the queue empty sleeps on a futex that producers wake
 * only when it is asleep (one load on the fast path). */
typedef struct {
    _Atomic size_t seq;
    wf_secev_t ev;
} wf_evq_cell_t;

typedef struct {
    wf_evq_cell_t *cells;
    size_t cap;
    _Alignas(64) _Atomic size_t enq;
    _Alignas(64) _Atomic size_t deq;
    _Alignas(64) _Atomic uint32_t wake;  /* futex word, bumped by wakers */
    _Atomic uint32_t sleeping;            /* the consumer is (about to be) asleep */
    size_t wake_depth;                    /* a push wakes a sleeping consumer only from this depth on */
} wf_evq_t;

/* wake_depth 1: every push wakes a sleeping consumer (a futex system call
 * each time); more: pushes below that depth leave the consumer to find the
 * events when its wait times out, so that a producer on the data path
 * rarely makes a system call. The memory is touched here, at start-up. */
int wf_evq_init(wf_evq_t *q, size_t cap, size_t wake_depth);
void wf_evq_free(wf_evq_t *q);
/* false when full */
bool wf_evq_push(wf_evq_t *q, const wf_secev_t *ev);
/* false when empty */
bool wf_evq_pop(wf_evq_t *q, wf_secev_t *ev);
size_t wf_evq_depth(wf_evq_t *q);
/* Consumer: sleeps until an event is pushed, wf_evq_wake, or timeout_ms. */
void wf_evq_wait(wf_evq_t *q, uint64_t timeout_ms);
void wf_evq_wake(wf_evq_t *q);

/* ---- sinks ----
 * A sink type is a static const struct of hooks, registered in the table in
 * hub.c. All hooks but conf_parse/conf_free run on the sink's own thread. */
typedef struct wf_sink_mod {
    const char *type;
    const char *const *keys; /* the sink's own keys (the common ones are checked by the hub) */
    /* Parses the sink's keys from its map into a new *conf. */
    int (*conf_parse)(const wf_conf_t *c, const wf_conf_node_t *map, void **conf, wf_conf_err_t *err);
    void (*conf_free)(void *conf);
    /* Prepares the sink (files opened; network sinks connect lazily in
     * deliver, so that a destination that is down does not stop wafer). */
    int (*open)(const void *conf, const char *name, void **state, char *err, size_t errlen);
    /* Delivers evs[0..n) in order. Returns 0 when the destination has taken
     * (or confirmed) all of them, or a negative error with *done set to how
     * many of the first ones it did confirm; the rest are retried later. */
    int (*deliver)(void *state, const wf_secev_t *evs, size_t n, size_t *done);
    /* Reopens files (SIGUSR1); may be NULL. */
    void (*reopen)(void *state);
    void (*close)(void *state);
} wf_sink_mod_t;

extern const wf_sink_mod_t wf_sink_file;
extern const wf_sink_mod_t wf_sink_syslog;
extern const wf_sink_mod_t wf_sink_forward;
extern const wf_sink_mod_t wf_sink_thehive;

typedef struct {
    char *name;
    const wf_sink_mod_t *mod;
    void *mconf;
    uint32_t queue;              /* events in the sink's own queue */
    uint32_t batch;              /* events per delivery */
    char *spool_dir;             /* NULL: no spool (failed batches wait in memory) */
    uint64_t spool_max_bytes;
    uint64_t spool_segment_bytes;
    bool spool_fsync;
    uint64_t retry_initial_ms, retry_max_ms;
} wf_sink_conf_t;

struct wf_secops_conf {
    uint32_t queue;
    uint64_t stop_timeout_ms;
    int sink_nice;               /* added to the sink threads' nice value */
    uint64_t digest;             /* of the section as written (wf_secops_conf_same) */
    wf_sink_conf_t *sinks;
    size_t nsinks;
};

/* ---- spool: a bounded on-disk queue of events, one directory per sink ---- */
typedef struct wf_spool wf_spool_t;

/* Opens (creating) dir and finds what an earlier run left there. */
int wf_spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes, bool fsync_, wf_spool_t **out,
                  char *err, size_t errlen);
void wf_spool_close(wf_spool_t *sp);
/* Appends events; returns how many fit under max_bytes (the rest are for
 * the caller to count as dropped), or a negative error. */
int wf_spool_append(wf_spool_t *sp, const wf_secev_t *evs, size_t n);
/* Reads up to max events from the head without consuming them. Returns the
 * count (0: spool empty) or a negative error. */
int wf_spool_peek(wf_spool_t *sp, wf_secev_t *evs, size_t max);
/* Consumes the first n events returned by the last peek (after delivery). */
int wf_spool_advance(wf_spool_t *sp, size_t n);
bool wf_spool_empty(const wf_spool_t *sp);
uint64_t wf_spool_bytes(const wf_spool_t *sp);
/* Events lost to a damaged or foreign spool file since open. */
uint64_t wf_spool_lost(const wf_spool_t *sp);

/* Compact binary form of one event for the spool (exact, bounded). */
size_t wf_secev_pack_bound(void);
size_t wf_secev_pack(const wf_secev_t *ev, unsigned char *out);
int wf_secev_unpack(const unsigned char *p, size_t n, wf_secev_t *ev);
/* Forces every string NUL-terminated and every count and enum in range
 * (for records read back from disk). */
void wf_secev_sanitize(wf_secev_t *ev);

/* crc32c (Castagnoli) */
uint32_t wf_crc32c(uint32_t crc, const void *p, size_t n);

/* ---- client connections of the network sinks (conn.c) ---- */
struct ssl_st;
typedef struct {
    int fd;
    struct ssl_st *ssl;   /* NULL: plain TCP */
    uint64_t timeout_ms;  /* deadline of each write */
} wf_sconn_t;

/* A TLS client context: verifies the server against the CA file (default
 * paths when NULL); cert/key: an optional client certificate (PEM). */
int wf_sconn_tls_ctx(const char *ca, const char *cert, const char *key, void **out, char *err, size_t errlen);
void wf_sconn_tls_ctx_free(void *ctx);
/* Connects (and with tls_ctx, handshakes, checking the certificate against
 * server_name: a host name or an address literal) within timeout_ms. */
int wf_sconn_open(wf_sconn_t *c, const wf_sockaddr_t *addr, void *tls_ctx, const char *server_name, uint64_t timeout_ms,
                  char *err, size_t errlen);
/* Writes all of p within the connection's timeout. 0 or a negative error. */
int wf_sconn_write(wf_sconn_t *c, const void *p, size_t n);
/* Reads what is there (waiting up to timeout_ms): bytes, 0 at end of stream, or a negative error. */
ssize_t wf_sconn_read(wf_sconn_t *c, void *p, size_t n, uint64_t timeout_ms);
/* False when the peer has closed or reset the connection (checked without
 * waiting): a sink reconnects instead of writing into a dead connection. */
bool wf_sconn_usable(wf_sconn_t *c);
void wf_sconn_close(wf_sconn_t *c);

/* Severity for syslog and Fluentd: 0 (emergency) .. 7 (debug) */
int wf_secev_severity(wf_secev_action_t a);

#endif
