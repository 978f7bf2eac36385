/*
 * wafer indicator tables: indicators of compromise (from MISP, see
 * wafer/misp.h) that the data plane checks before inference.
 *
 * A table (wf_ioc_t) is built off the data path by a builder, then never
 * changes: workers read it without locks. Addresses and networks are held
 * in one hash table per prefix length (longest prefix first at lookup: at
 * most the number of distinct prefix lengths loaded, usually a handful);
 * domains, URLs and user agents in exact-match hash sets. Every indicator
 * carries the MISP events it came from and the tags of its attributes and
 * events, merged when several attributes name the same value.
 *
 * Refresh: a store (wf_ioc_store_t) holds the current table. A reader
 * brackets its lookups with wf_ioc_read_begin/end (a store of its own epoch
 * in a per-thread slot: no shared write on the data path); the importer
 * publishes a new table with wf_ioc_store_publish, which swaps the pointer
 * and frees the old table once no reader can still hold it.
 */
#ifndef WAFER_IOC_H
#define WAFER_IOC_H

#include "wafer/common.h"
#include "wafer/net.h"
#include "wafer/secops.h"
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    WF_IOC_IP,     /* ip-src, ip-dst (addresses and CIDRs), the address part of ip-*|port and domain|ip */
    WF_IOC_DOMAIN, /* domain, hostname, the domain part of domain|ip: the Host or any parent domain of it */
    WF_IOC_URL,    /* url: host + path (+ query) */
    WF_IOC_UA,     /* user-agent: the whole User-Agent value */
    WF_IOC__COUNT
} wf_ioc_kind_t;

/* "ip", "domain", "url", "user-agent" */
const char *wf_ioc_kind_name(wf_ioc_kind_t k);

#define WF_IOC_MAX_EVENTS 8 /* events kept per indicator (more are counted, not named) */
#define WF_IOC_MAX_TAGS 8   /* tags kept per indicator */

/* What matched: copied out of the table, so it stays valid after the read
 * section ends. */
typedef struct {
    wf_ioc_kind_t kind;
    char value[256];                        /* the indicator: "192.0.2.0/24", "evil.example", a URL, a UA (cut) */
    char type[32];                          /* its MISP attribute type ("ip-src", "domain", ...) */
    uint32_t nevents;
    char events[WF_IOC_MAX_EVENTS][40];     /* MISP event ids (API) or uuids (feeds) */
    char tags[256];                         /* comma-separated, cut at a whole tag */
} wf_ioc_hit_t;

typedef struct wf_ioc wf_ioc_t;
typedef struct wf_ioc_builder wf_ioc_builder_t;

/* A builder holds at most max_indicators indicators (0: no limit). */
wf_ioc_builder_t *wf_ioc_builder_new(size_t max_indicators);
void wf_ioc_builder_free(wf_ioc_builder_t *b);
/* Adds one MISP attribute. type is the MISP type; event (may be NULL or "")
 * names its event; tags are the attribute's and event's tags. Returns 1 when
 * added (or merged into an existing indicator), 0 when the type is not one
 * wafer matches (skipped), -EINVAL when the value is not valid for its type,
 * -WF_ELIMIT past max_indicators, -ENOMEM. */
int wf_ioc_builder_add(wf_ioc_builder_t *b, const char *type, wf_str_t value, const char *event,
                       const char *const *tags, size_t ntags);
/* Whether wafer matches this MISP attribute type. */
bool wf_ioc_type_supported(const char *type);
/* Turns the builder into a table (the builder is consumed, even on NULL = out of memory). */
wf_ioc_t *wf_ioc_builder_finish(wf_ioc_builder_t *b);
void wf_ioc_free(wf_ioc_t *t);

typedef struct {
    size_t per_kind[WF_IOC__COUNT]; /* indicators loaded */
    size_t events;                  /* distinct events */
    size_t prefix_lengths;          /* distinct address prefix lengths (lookup probes per address, at most) */
} wf_ioc_counts_t;
void wf_ioc_counts(const wf_ioc_t *t, wf_ioc_counts_t *out);

/*
 * The data-plane lookup, in this order: the client address (longest prefix;
 * an IPv4-mapped IPv6 client is looked up as IPv4), the Host (without port
 * and trailing dot, case-insensitive; then each parent domain down to two
 * labels: an indicator "example.com" matches "a.b.example.com"), the URL,
 * the User-Agent. Empty slices and a NULL client are skipped.
 *
 * url is the request target as received: origin-form ("/p?q", joined to the
 * Host) or absolute-form ("http://h/p?q"). It matches an indicator for the
 * same host (lower case, ":80"/":443" dropped), path and query, and then one
 * for the same host and path without a query. The scheme is not compared.
 *
 * Returns whether something matched; *hit (may be NULL) receives the first
 * match. No allocation; safe from any number of threads.
 */
bool wf_ioc_match(const wf_ioc_t *t, const wf_sockaddr_t *client, wf_str_t host, wf_str_t url, wf_str_t user_agent,
                  wf_ioc_hit_t *hit);

/* Copies a hit's events and tags into a security event (misp_event, nmisp,
 * misp_tags) and sets its reason to WF_SECEV_R_INDICATOR. */
void wf_ioc_hit_secev(const wf_ioc_hit_t *hit, wf_secev_t *ev);

/* ---- the store: the current table, swapped atomically ---- */

typedef struct wf_ioc_store wf_ioc_store_t;

wf_ioc_store_t *wf_ioc_store_new(void);
/* Frees the store and its table (no reader may be inside). */
void wf_ioc_store_free(wf_ioc_store_t *s);
/* Enters a read section and returns the current table (NULL: none loaded).
 * Not nested; keep the section short (one request's lookups). */
const wf_ioc_t *wf_ioc_read_begin(wf_ioc_store_t *s);
void wf_ioc_read_end(wf_ioc_store_t *s);
/* Makes t current (t may be NULL: no table) and frees the previous table
 * once every reader that could hold it has left its read section. Called
 * by one thread at a time (the importer); may sleep while it waits. */
void wf_ioc_store_publish(wf_ioc_store_t *s, wf_ioc_t *t);
/* read_begin + wf_ioc_match + read_end; counts hits per kind. */
bool wf_ioc_store_match(wf_ioc_store_t *s, const wf_sockaddr_t *client, wf_str_t host, wf_str_t url,
                        wf_str_t user_agent, wf_ioc_hit_t *hit);

typedef struct {
    wf_ioc_counts_t loaded;           /* the current table */
    uint64_t hits[WF_IOC__COUNT];     /* matches through wf_ioc_store_match */
    uint64_t swaps;                   /* tables published */
} wf_ioc_store_stats_t;
void wf_ioc_store_stats(wf_ioc_store_t *s, wf_ioc_store_stats_t *out);

/* The process-wide store (created by the server when `misp:` is configured). */
extern wf_ioc_store_t *wf_ioc_global;

#endif
