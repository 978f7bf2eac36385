/*
 * wafer security operations: the security event record, and the hub that
 * carries events from the data path to the sinks (docs/events.md).
 *
 * A worker that blocks, flags, bans or refuses a request fills one
 * wf_secev_t (fixed size, no pointers: it is copied into the queue whole)
 * and calls wf_secops_emit(). The call never blocks and never allocates: the
 * event goes into a bounded multi-producer queue, or is counted as dropped
 * when the queue is full. Sink threads take events off the queue and deliver
 * them (JSON lines file, syslog, Fluentd forward, TheHive); a sink that is
 * down spools to a bounded on-disk queue and retries with backoff, so a slow
 * or dead sink never delays a request.
 *
 * Field names in the JSON form follow the Elastic Common Schema where one
 * exists (source.ip, url.path, http.request.method, event.action, ...) and
 * live under "wafer." where none does (wafer.units, wafer.model, ...).
 */
#ifndef WAFER_SECOPS_H
#define WAFER_SECOPS_H

#include "wafer/common.h"
#include "wafer/conf.h"
#include "wafer/core.h"
#include <stdbool.h>
#include <stdint.h>

/* What the firewall did with the request. */
typedef enum {
    WF_SECEV_BLOCK,    /* refused with 403 (policy mode block) */
    WF_SECEV_MONITOR,  /* forwarded; logged only (mode monitor) */
    WF_SECEV_TAG,      /* forwarded with X-Wafer-Verdict / X-Wafer-Score (mode tag) */
    WF_SECEV_BAN,      /* refused because its client is banned (no parsing or inference) */
    WF_SECEV_DENY,     /* refused by a deny list, an indicator or an identity policy */
    WF_SECEV_LIMIT,    /* refused by a rate or connection limit (429) */
    WF_SECEV_PASS,     /* forwarded uninspected (fail-open overload, inspection off for the route) */
    WF_SECEV_UNAVAILABLE, /* refused with 503 because inference could not keep up (fail-closed) */
    WF_SECEV__COUNT
} wf_secev_action_t;

/* Why. */
typedef enum {
    WF_SECEV_R_MODEL,     /* the model classified a unit as an attack */
    WF_SECEV_R_BANNED,    /* the client was banned after repeated detections */
    WF_SECEV_R_DENYLIST,  /* the client network is deny-listed */
    WF_SECEV_R_INDICATOR, /* a MISP indicator matched (wafer.misp carries the events) */
    WF_SECEV_R_IDENTITY,  /* the client certificate's identity may not reach the route */
    WF_SECEV_R_RATE,      /* a rate limit */
    WF_SECEV_R_CONNLIMIT, /* a connection limit */
    WF_SECEV_R_OVERLOAD,  /* inference queue full or too slow */
    WF_SECEV_R__COUNT
} wf_secev_reason_t;

/* "block", "monitor", ... / "model", "banned", ... */
const char *wf_secev_action_name(wf_secev_action_t a);
const char *wf_secev_reason_name(wf_secev_reason_t r);

#define WF_SECEV_MAX_UNITS 8
#define WF_SECEV_TEXT 256   /* unit text kept per unit (cut at a UTF-8 boundary) */
#define WF_SECEV_MAX_MISP 8

/* One unit that decided (or helped decide) the verdict. */
typedef struct {
    char kind[16];             /* wf_unit_kind_name: "query", "json", ... */
    char name[64];             /* the unit's name (argument, JSON path, header, ...) */
    char text[WF_SECEV_TEXT];  /* the decoded text the model saw (cut) */
    char cls[32];              /* the class it crossed, or the closest one */
    float score;               /* the model's probability of cls */
} wf_secev_unit_t;

/* One security event. Strings are NUL-terminated and cut to fit; an empty
 * string means "not known" and is left out of the JSON form. */
typedef struct {
    uint64_t time_ns;          /* wall clock (CLOCK_REALTIME), nanoseconds since the epoch */
    wf_secev_action_t action;
    wf_secev_reason_t reason;
    uint16_t status;           /* HTTP status sent to the client; 0 when forwarded */

    char request_id[129];
    char client_ip[46];        /* no brackets */
    uint16_t client_port;
    char identity[256];        /* mTLS client identity (URI SAN, DNS SAN or subject), or "" */

    char method[16];
    char host[256];            /* Host (or the absolute-form authority) */
    char path[512];            /* raw path as received (cut) */
    char query[512];           /* raw query without '?' (cut) */
    char user_agent[256];
    char route[64];            /* name of the matched route, "" for the default */

    char cls[32];              /* deciding class ("sqli", ...), or "" */
    float score;               /* its probability */
    uint32_t nunits;
    wf_secev_unit_t units[WF_SECEV_MAX_UNITS];
    uint32_t units_total;      /* units that crossed (may exceed nunits) */

    char model[64];            /* model id (wafer.json "name"@"version") */
    uint32_t detections;       /* for a ban: detections in the window that caused it */
    uint64_t ban_until_ns;     /* for a ban: when it ends (wall clock) */

    uint32_t nmisp;
    char misp_event[WF_SECEV_MAX_MISP][40]; /* MISP event ids (numeric or uuid) */
    char misp_tags[256];       /* comma-separated tags of the matching attributes */
} wf_secev_t;

/* Clears the record and sets time_ns to now. */
void wf_secev_init(wf_secev_t *ev);
/* Copies a slice into a fixed field, cut at a UTF-8 boundary that fits,
 * always NUL-terminated. */
void wf_secev_set(char *field, size_t cap, wf_str_t s);
#define WF_SECEV_SET(ev, field, s) wf_secev_set((ev)->field, sizeof((ev)->field), (s))

/* Appends the event as one JSON object (no newline) to out. Returns 0 or
 * -ENOMEM / -WF_ELIMIT when out cannot grow. */
int wf_secev_json(const wf_secev_t *ev, wf_buf_t *out);

/* ---- the hub ---- */

typedef struct wf_secops wf_secops_t;

/* The `events:` section of the configuration (docs/configuration.md). */
typedef struct wf_secops_conf wf_secops_conf_t;

/* Parses the `events` section (node may be NULL: defaults, which are a
 * queue of 4096 events and no sink). Unknown keys are errors. */
int wf_secops_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_secops_conf_t **out, wf_conf_err_t *err);
void wf_secops_conf_free(wf_secops_conf_t *sc);
/* Whether two parsed sections were written the same (keys, values, order):
 * a reload uses it to say that a changed section needs a restart. */
bool wf_secops_conf_same(const wf_secops_conf_t *a, const wf_secops_conf_t *b);

/* Starts the queue, the dispatcher thread and one thread per configured
 * sink; conf must stay valid until wf_secops_stop. With no sink configured
 * it starts nothing and sets *out to NULL. Call it with the signals that
 * the process handles blocked (the threads inherit the mask). Returns 0 or
 * -errno with a message in err. */
int wf_secops_start(const wf_secops_conf_t *conf, wf_secops_t **out, char *err, size_t errlen);
/* Delivers what is queued (up to events.stop_timeout; a sink with a spool
 * keeps what it could not deliver there for the next start), then stops and
 * frees h. NULL is a no-op. */
void wf_secops_stop(wf_secops_t *h);
/* SIGUSR1: file sinks reopen their files. */
void wf_secops_reopen(wf_secops_t *h);

/* Queues one event (copied). Thread-safe, lock-free, never blocks. Returns 0,
 * or -WF_EOVERLOAD when the queue is full (counted in wf_secops_stats().dropped). */
int wf_secops_emit(wf_secops_t *h, const wf_secev_t *ev);

/* Counters of the hub and of each sink (relaxed reads; for tests, the admin
 * listener and the metrics collector). */
typedef struct {
    uint64_t emitted;   /* events accepted by wf_secops_emit */
    uint64_t dropped;   /* refused because the queue was full */
    uint64_t depth;     /* events in the queue now */
} wf_secops_stats_t;

typedef struct {
    char name[64];      /* the sink's configured name */
    const char *type;   /* "file", "syslog", "forward" */
    bool up;            /* its last delivery attempt succeeded */
    uint64_t queued;    /* events handed to the sink */
    uint64_t delivered; /* events whose delivery the destination confirmed (or written, for a file) */
    uint64_t retried;   /* failed delivery attempts that were retried */
    uint64_t spooled;   /* events written to the spool */
    uint64_t dropped;   /* lost: sink queue full, or spool full/absent when delivery failed */
    uint64_t spool_bytes; /* bytes in the spool now */
    uint64_t depth;     /* events in the sink's queue now */
} wf_secops_sink_stats_t;

void wf_secops_stats(const wf_secops_t *h, wf_secops_stats_t *out);
/* Fills up to max entries (one per sink, in configuration order); returns
 * the number of sinks. */
size_t wf_secops_sink_stats(const wf_secops_t *h, wf_secops_sink_stats_t *out, size_t max);

/* The process-wide hub used by the data plane (NULL when none is running:
 * emit then only counts). Set by the server at start. */
extern wf_secops_t *wf_secops_global;
static inline int wf_secops_emit_global(const wf_secev_t *ev)
{
    return wf_secops_global ? wf_secops_emit(wf_secops_global, ev) : -WF_EOVERLOAD;
}

#endif
