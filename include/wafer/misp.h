/*
 * wafer MISP import: indicators from MISP feeds and from a MISP instance's
 * REST API into the indicator store (wafer/ioc.h), on a schedule, on a
 * thread of its own; optional sightings back to MISP. The `misp:` section
 * is documented in docs/configuration.md.
 *
 * Sources:
 *   - a MISP-format feed: <url>/manifest.json (event uuids) and one
 *     <url>/<uuid>.json per event ({"Event": {..., "Attribute": [...],
 *     "Object": [{"Attribute": [...]}], "Tag": [...]}});
 *   - a CSV feed: one value per line in a configured column;
 *   - a freetext feed: any text; addresses, networks, URLs and domains are
 *     recognised in it (defanged forms such as hxxp:// and [.] too);
 *   - the REST API: POST <url>/attributes/restSearch with the API key in
 *     Authorization, for the configured attribute types, page by page.
 * A feed's url is http(s)://..., file:///path or a local path.
 *
 * Each source keeps the attributes of its last successful fetch. After a
 * refresh in which some source succeeded, one table is built from every
 * source's attributes and published; a source that fails keeps its previous
 * attributes, the table in use stays, and the failure is logged and counted.
 */
#ifndef WAFER_MISP_H
#define WAFER_MISP_H

#include "wafer/conf.h"
#include "wafer/ioc.h"
#include <stdbool.h>
#include <stdint.h>

typedef enum { WF_MISP_FEED_MISP, WF_MISP_FEED_CSV, WF_MISP_FEED_FREETEXT } wf_misp_format_t;
typedef enum { WF_MISP_BLOCK, WF_MISP_FLAG } wf_misp_action_t;

typedef struct {
    char *name;             /* "feed<N>" unless given; logs and metrics */
    char *url;
    wf_misp_format_t format;
    uint64_t refresh_ms;    /* 1h */
    bool verify_tls;        /* true */
    bool to_ids_only;       /* MISP feeds: only attributes with to_ids (true) */
    uint32_t max_events;    /* MISP feeds: events read per refresh (10000) */
    int column;             /* CSV: the value's column, from 1 (1) */
    char delimiter;         /* CSV: ',' */
    char *type;             /* CSV/freetext: the MISP type of every value; NULL: recognised per value */
    char **tags;            /* tags given to this feed's indicators */
    size_t ntags;
} wf_misp_feed_conf_t;

typedef struct {
    char *url;              /* base URL of the MISP instance */
    char *key;              /* API key (or read from key_file) */
    uint64_t refresh_ms;    /* 15m */
    bool verify_tls;        /* true */
    char **types;           /* attribute types asked for (default: every type wafer matches) */
    size_t ntypes;
    bool to_ids;            /* ask only for attributes with to_ids (true) */
    char *last;             /* restSearch "last" (published within, e.g. "30d"); NULL: all */
    char **tags;            /* restSearch "tags" filter; none: all */
    size_t ntags;
    uint32_t page_size;     /* restSearch "limit" (5000) */
} wf_misp_api_conf_t;

typedef struct wf_misp_conf {
    wf_misp_action_t action;   /* block (403) or flag (event only, request goes on to inference) */
    wf_misp_feed_conf_t *feeds;
    size_t nfeeds;
    bool has_api;
    wf_misp_api_conf_t api;
    bool sightings;            /* report matches to the API's /sightings/add (false; needs api) */
    uint64_t sightings_interval_ms; /* 60s */
    uint32_t sightings_queue;  /* matches waiting to be reported (1024; more are dropped and counted) */
    uint64_t timeout_ms;       /* per HTTP request (30s) */
    uint64_t retry_ms;         /* after a failed fetch, the next try (1m, or the refresh if shorter) */
    uint64_t max_bytes;        /* one response or file (256m) */
    uint64_t max_indicators;   /* in the table (2000000) */
} wf_misp_conf_t;

/* Parses the `misp` section (node may be NULL: no sources). Unknown keys are errors. */
int wf_misp_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, wf_misp_conf_t **out, wf_conf_err_t *err);
void wf_misp_conf_free(wf_misp_conf_t *mc);

typedef struct wf_misp wf_misp_t;

/* Creates the importer over a store (the configuration is copied). Fetches
 * nothing yet. */
int wf_misp_new(const wf_misp_conf_t *conf, wf_ioc_store_t *store, wf_misp_t **out, char *err, size_t errlen);
/* Starts the import thread: a first import at once, then each source on its
 * own schedule; sightings are sent every sightings_interval. */
int wf_misp_start(wf_misp_t *m, char *err, size_t errlen);
/* Stops the thread (an HTTP request in flight ends within timeout) and frees. */
void wf_misp_free(wf_misp_t *m);
/* Applies a reloaded configuration: the thread stops (within timeout),
 * sources still configured alike keep what they loaded, every source is
 * fetched again at once, and the thread restarts if it ran. The table in use
 * stays until the next one is built; with no source left it is emptied.
 * The importer stays at the same address, so the data plane's pointer to it
 * (wf_misp_global) never dangles. */
int wf_misp_reconfigure(wf_misp_t *m, const wf_misp_conf_t *conf, char *err, size_t errlen);
/* The configured action (data plane; follows reloads). */
wf_misp_action_t wf_misp_action(const wf_misp_t *m);

/* One import round on the calling thread: every source (all = true) or
 * those due; publishes a new table when some source succeeded. Returns the
 * number of sources that failed. (wafer misp and tests use it directly.) */
int wf_misp_import(wf_misp_t *m, bool all);

/* Queues a sighting of a matched indicator when sightings are on (data
 * plane: never blocks; a busy or full queue drops it and counts). */
void wf_misp_sighting(wf_misp_t *m, const wf_ioc_hit_t *hit);
/* Sends the queued sightings now (one POST /sightings/add). Returns the
 * number sent, or a negative error (they stay queued, up to the bound). */
int wf_misp_sightings_flush(wf_misp_t *m);

typedef struct {
    char name[64];
    uint64_t ok, failed;         /* fetches */
    uint64_t attributes;         /* kept from the last successful fetch */
    uint64_t skipped;            /* values of a type wafer does not match, or invalid */
    uint64_t last_ok_wall_us;    /* 0: never */
} wf_misp_source_stats_t;

typedef struct {
    size_t nsources;
    wf_misp_source_stats_t sources[32]; /* the first 32 */
    uint64_t tables;             /* tables published */
    uint64_t truncated;          /* attributes left out because max_indicators was reached */
    uint64_t sightings_sent, sightings_dropped, sightings_failed;
} wf_misp_stats_t;
void wf_misp_stats(wf_misp_t *m, wf_misp_stats_t *out);

/* Registers Prometheus metrics for the store (wafer_ioc_indicators{kind},
 * wafer_ioc_hits_total{kind}, wafer_ioc_tables_total) and, when m is not
 * NULL, the importer (wafer_misp_fetches_total{source,result},
 * wafer_misp_attributes{source}, wafer_misp_last_success_timestamp_seconds{source},
 * wafer_misp_indicators_truncated, wafer_misp_sightings_total{result}). */
int wf_misp_metrics_register(wf_misp_t *m, wf_ioc_store_t *store);

/* The data plane's whole check, for the request path (before inference):
 * looks the request up in wf_ioc_global; on a match fills *hit (for
 * wf_ioc_hit_secev), queues a sighting when they are on, and returns the
 * configured action (WF_MISP_BLOCK: refuse with 403, reason "indicator";
 * WF_MISP_FLAG: emit the event and go on). Returns -1 when nothing matched or
 * no table is loaded. Never blocks, never allocates. */
int wf_misp_check(const wf_sockaddr_t *client, wf_str_t host, wf_str_t target, wf_str_t user_agent, wf_ioc_hit_t *hit);

/* The process-wide importer (NULL when `misp:` has no source). */
extern wf_misp_t *wf_misp_global;

#endif
