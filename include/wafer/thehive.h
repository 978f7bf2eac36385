/*
 * wafer TheHive sink: security events become TheHive 5 alerts
 * (POST /api/v1/alert, "Authorization: Bearer <api key>"), one alert per
 * (client address, attack class) and aggregation window, with a count, a
 * few sample requests, observables (ip, url, user-agent, hostname), tags
 * for the classes and MISP matches, and a severity from the score.
 * docs/thehive.md describes the alert and the configuration.
 *
 * Every alert's sourceRef is a hash of its group key and window start, so
 * that a retry after a timeout (TheHive may have created the alert) never
 * creates a second alert: TheHive refuses a (type, source, sourceRef) it
 * has, and that refusal counts as delivered.
 *
 * Threads: add may run on one thread while run/finish run on another (the
 * groups are under a lock; delivery happens outside it). Memory is bounded:
 * max_groups open groups (events for a new group beyond that are counted
 * and dropped) and max_pending alerts waiting for delivery (the oldest is
 * dropped, counted, when a new one would exceed it).
 */
#ifndef WAFER_THEHIVE_H
#define WAFER_THEHIVE_H

#include "wafer/conf.h"
#include "wafer/secops.h"
#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *url;              /* base URL, "https://thehive.example:9000" (required) */
    char *api_key;          /* required: api_key or api_key_file */
    char *organisation;     /* X-Organisation header (TheHive 5 multi-organisation), or NULL */
    char *alert_type;       /* alert "type" (default "wafer") */
    char *source;           /* alert "source" (default "wafer") */
    uint64_t window_ms;     /* aggregation window (60s) */
    uint32_t max_groups;    /* open groups (1024) */
    uint32_t samples;       /* sample requests per alert (3, at most 10) */
    int tlp, pap;           /* 0..4 / 0..3 (2 = AMBER / 2 = AMBER) */
    bool tls_verify;        /* verify the server certificate and name (true) */
    char *ca_file;          /* CA bundle for tls_verify, or NULL: the system's */
    uint64_t timeout_ms;    /* per request (10s) */
    uint64_t retry_min_ms;  /* retry.initial: first retry delay (1s), doubled up to retry.max (5m) */
    uint64_t retry_max_ms;
    uint32_t max_pending;   /* alerts waiting for delivery (1000) */
    uint64_t flush_timeout_ms; /* at stop, how long delivery may go on (5s) */
} wf_thehive_conf_t;

/* Parses a `thehive` sink mapping (keys in docs/thehive.md). The caller
 * checks the keys (the hub: its common keys plus wf_thehive_conf_keys);
 * the hub's common `retry: {initial, max}` is read here too. *out is
 * overwritten: free it first. Returns 0 or WF_ECONFIG with err set. */
extern const char *const wf_thehive_conf_keys[];
int wf_thehive_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_thehive_conf_t *out,
                          wf_conf_err_t *err);
void wf_thehive_conf_free(wf_thehive_conf_t *tc);

typedef struct wf_thehive wf_thehive_t;

/* Outcome counters (also exported as wafer_thehive_* metrics). */
typedef struct {
    uint64_t created;       /* alerts TheHive created */
    uint64_t duplicate;     /* alerts TheHive already had (a retry of one it created): delivered */
    uint64_t failed;        /* alerts TheHive refused for good (a 4xx other than "already exists") */
    uint64_t dropped;       /* alerts dropped: max_pending exceeded, or undelivered at stop */
    uint64_t retries;       /* delivery attempts that failed and will be retried */
    uint64_t events;        /* events taken into a group */
    uint64_t events_dropped;/* events dropped: max_groups open groups */
    uint64_t groups;        /* open groups now */
    uint64_t pending;       /* alerts waiting now */
} wf_thehive_stats_t;

/* Copies the configuration. Returns 0 or -errno with a message in err. */
int wf_thehive_new(const wf_thehive_conf_t *conf, wf_thehive_t **out, char *err, size_t errlen);
void wf_thehive_free(wf_thehive_t *th);

/* Takes one event into its group (no I/O). Events of actions pass,
 * unavailable and limit are operational, not attacks: they are ignored
 * (returns 1). Returns 0, 1, or -WF_ELIMIT (group table full: dropped). */
int wf_thehive_add(wf_thehive_t *th, const wf_secev_t *ev);

/* Closes the groups whose window ended into alerts and delivers what is due
 * (blocking HTTP, up to timeout_ms per request; after a failure the rest
 * waits for the retry time). Returns the milliseconds until the next thing
 * is due (a window end or a retry), at most the window. */
uint64_t wf_thehive_run(wf_thehive_t *th);

/* At stop: closes every group and tries to deliver everything until
 * deadline_ms (monotonic, wf_now_ms); what is left is counted as dropped. */
void wf_thehive_finish(wf_thehive_t *th, uint64_t deadline_ms);

void wf_thehive_stats(const wf_thehive_t *th, wf_thehive_stats_t *out);

/* The sourceRef of a group: "wafer-" and 32 hex digits of SHA-256 over the
 * alert type, source, client address, class and window start (ms). out has
 * room for 40 bytes. */
void wf_thehive_source_ref(const char *type, const char *source, const char *client_ip, const char *cls,
                           uint64_t window_start_ms, char *out);

#endif
