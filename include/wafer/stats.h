/*
 * wafer data-plane counters. Each worker owns one wf_stats_t and is its only
 * writer (plain increments, no locks, no atomics read-modify-write); readers
 * on other threads load the fields with relaxed atomic loads and sum the
 * workers on demand (wf_stats_sum). The metrics issue exposes them.
 *
 * WF_STATS_FIELDS lists every scalar counter once, so that a struct, a table
 * of names and a summing loop come from the same list. Rejections by the HTTP
 * parser are counted per reason in http_reject[wf_http_err_t].
 */
#ifndef WAFER_STATS_H
#define WAFER_STATS_H

#include "wafer/common.h"
#include "wafer/http.h"

#define WF_STATS_FIELDS(X)                                                                                   \
    X(conn_accepted, "client connections accepted")                                                          \
    X(conn_closed, "client connections closed")                                                              \
    X(conn_limit, "accepts paused because limits.max_connections was reached")                               \
    X(accept_errors, "accept() failures other than EAGAIN")                                                  \
    X(requests, "requests whose header was parsed")                                                          \
    X(requests_rejected, "requests refused by the parser (see http_reject)")                                 \
    X(responses, "responses completed to clients")                                                           \
    X(status_1xx, "responses by class")                                                                      \
    X(status_2xx, "")                                                                                        \
    X(status_3xx, "")                                                                                        \
    X(status_4xx, "")                                                                                        \
    X(status_5xx, "")                                                                                        \
    X(expect_continue, "100 Continue sent")                                                                  \
    X(timeout_header, "request header did not arrive within timeouts.header (408)")                          \
    X(timeout_body, "request body stalled longer than timeouts.body")                                        \
    X(timeout_idle, "keep-alive connections closed after timeouts.idle")                                     \
    X(timeout_send, "client did not take response bytes within timeouts.send")                               \
    X(timeout_upstream_connect, "upstream connect timed out (504)")                                          \
    X(timeout_upstream, "upstream response timed out (504, or close once started)")                          \
    X(upstream_connect_failed, "upstream connect failed")                                                    \
    X(upstream_invalid, "upstream sent an invalid response (502)")                                           \
    X(upstream_closed, "upstream closed or reset the connection mid-exchange")                               \
    X(upstream_retries, "requests resent after a reused upstream connection failed")                         \
    X(upstream_502, "502 Bad Gateway generated")                                                             \
    X(upstream_504, "504 Gateway Timeout generated")                                                         \
    X(upstream_connects, "new upstream connections")                                                         \
    X(upstream_reused, "requests sent over a pooled upstream connection")                                    \
    X(upstream_pool_full, "upstream connections closed because upstream.keepalive idle ones were kept")       \
    X(upstream_idle_closed, "idle upstream connections closed (idle timeout or peer close)")                 \
    X(body_too_large, "request bodies over limits.max_body (413)")                                           \
    X(body_invalid, "malformed chunked request bodies (400)")                                                \
    X(client_aborted, "client closed or reset before the response was complete")                            \
    X(response_aborted, "responses cut short after they had started (client connection closed)")            \
    X(oom, "requests refused for lack of buffers (503)")                                                     \
    X(bytes_in, "bytes read from clients")                                                                   \
    X(bytes_out, "bytes written to clients")                                                                 \
    X(access_log_dropped, "access log lines dropped (buffer full and write failed)")                         \
    X(inspected, "requests classified by the model (verdict reached)")                                      \
    X(blocked, "requests refused with 403 by a detection (mode block)")                                      \
    X(monitored, "detections forwarded unchanged (mode monitor)")                                            \
    X(tagged, "detections forwarded with X-Wafer-Verdict (mode tag)")                                        \
    X(overload_open, "requests forwarded uninspected because detection could not keep up (fail_open)")      \
    X(overload_closed, "requests refused with 503 because detection could not keep up (fail_closed)")       \
    X(verdict_timeouts, "requests whose verdict did not come within detection.timeout")                      \
    X(body_over_limit, "request bodies longer than the inspection limit")                                    \
    X(units_extracted, "inspection units extracted from requests")                                          \
    X(units_safe, "units skipped by the fast path")                                                         \
    X(units_cached, "units whose probabilities came from the verdict cache")                                \
    X(units_model, "units submitted to the model")                                                          \
    X(allowlisted, "requests from allow-listed clients (not inspected)")                                    \
    X(denied, "connections and requests refused: deny-listed client")                                       \
    X(banned, "connections and requests refused: banned client")                                            \
    X(bans_started, "clients banned after repeated detections")                                              \
    X(indicator_matched, "requests that matched a MISP indicator (refused or flagged per misp.action)")        \
    X(events_dropped, "security events dropped (event queue full or no event hub)")                 \
    X(tls_handshakes, "TLS handshakes completed with clients")                                              \
    X(tls_resumed, "client TLS handshakes that resumed a session (ticket or cache)")                        \
    X(tls_failed_protocol, "client TLS handshakes failed: no common protocol version or cipher")            \
    X(tls_failed_certificate, "client TLS handshakes failed: client certificate missing or not verified")    \
    X(tls_failed_alert, "client TLS handshakes failed: the client sent an alert (e.g. unknown CA)")          \
    X(tls_failed_alpn, "client TLS handshakes failed: no common ALPN protocol (only http/1.1 is offered)")   \
    X(tls_failed_plain_http, "plain HTTP sent to a TLS listener")                                           \
    X(tls_failed_closed, "client closed or reset the connection during the TLS handshake")                  \
    X(tls_failed_timeout, "TLS handshake did not complete within timeouts.header")                           \
    X(tls_failed_other, "client TLS handshakes failed for another reason")                                   \
    X(tls_upstream_handshakes, "TLS handshakes completed with upstreams")                                   \
    X(tls_upstream_failed, "TLS handshakes with upstreams failed (verification, protocol; 502)")            \
    X(tls_upstream_resumed, "TLS handshakes with upstreams that resumed the server's last session")         \
    X(identity_denied, "requests refused (403) because the client identity may not reach the route") \
    X(upstream_unavailable, "503: no member of the upstream pool was available (down or ejected)")           \
    X(upstream_member_retries, "requests resent to another pool member after a failure before any response") \
    X(rate_limited, "requests refused with 429 by a rate_limits token bucket")                                \
    X(conn_limited, "requests refused with 429 by rate_limits.connections_per_client")                       \
    X(conn_limit_total, "connections refused at limits.max_connections_total with nothing idle to shed")     \
    X(conn_shed, "idle client connections closed to make room at limits.max_connections_total")             \
    X(slow_header, "request headers slower than min_rates.header (408)")                                    \
    X(slow_body, "request bodies slower than min_rates.body (408)")                                         \
    X(slow_send, "clients taking responses slower than min_rates.send (closed)")

typedef struct {
#define WF_STATS_DECL(name, help) uint64_t name;
    WF_STATS_FIELDS(WF_STATS_DECL)
#undef WF_STATS_DECL
    uint64_t http_reject[WF_HTTP_E__COUNT]; /* parser rejections by reason (wf_http_err_name) */
} wf_stats_t;

/* Increment by the owning worker only. */
#define WF_STAT_INC(s, f) __atomic_store_n(&(s)->f, (s)->f + 1, __ATOMIC_RELAXED)
#define WF_STAT_ADD(s, f, v) __atomic_store_n(&(s)->f, (s)->f + (v), __ATOMIC_RELAXED)

/* A counter's name, help text and offset in wf_stats_t. */
typedef struct {
    const char *name;
    const char *help;
    size_t offset;
} wf_stats_field_t;

extern const wf_stats_field_t wf_stats_fields[];
extern const size_t wf_stats_nfields;

/* Registers a worker's counters (at most 256); returns 0 or -WF_ELIMIT. */
int wf_stats_register(wf_stats_t *s);
void wf_stats_unregister(wf_stats_t *s);
/* Sums every registered worker into out (readable from any thread).
 * Counters of workers that have exited are kept in the sum. */
void wf_stats_sum(wf_stats_t *out);
/* Logs every non-zero counter of s at info level, one line. */
void wf_stats_log(const wf_stats_t *s, const char *prefix);

#endif
