/* The data plane's Prometheus families: wf_stats_t counters (summed over
 * workers) and the request latency histogram (merged over workers). The
 * family names are documented in docs/metrics.md. */
#include "server_int.h"
#include "wafer/metrics.h"

#include <pthread.h>

/* One row per exposed counter; consecutive rows with the same family are
 * the samples of one family. Fields not listed are sums of listed ones
 * (responses, requests_rejected): test_http_metrics checks that every
 * other field appears. */
#define F(field) offsetof(wf_stats_t, field)
static const struct row {
    const char *family, *help, *label, *value;
    size_t off;
} rows[] = {
    { "wafer_connections_accepted_total", "Client connections accepted.", NULL, NULL, F(conn_accepted) },
    { "wafer_connections_closed_total", "Client connections closed.", NULL, NULL, F(conn_closed) },
    { "wafer_connection_limit_hits_total", "Times a worker stopped accepting because limits.max_connections was reached.",
      NULL, NULL, F(conn_limit) },
    { "wafer_accept_errors_total", "accept() failures other than EAGAIN.", NULL, NULL, F(accept_errors) },
    { "wafer_http_requests_total", "Client requests whose header was parsed.", NULL, NULL, F(requests) },
    { "wafer_responses_total", "Responses completed to clients, by status class.", "code", "1xx", F(status_1xx) },
    { "wafer_responses_total", NULL, "code", "2xx", F(status_2xx) },
    { "wafer_responses_total", NULL, "code", "3xx", F(status_3xx) },
    { "wafer_responses_total", NULL, "code", "4xx", F(status_4xx) },
    { "wafer_responses_total", NULL, "code", "5xx", F(status_5xx) },
    { "wafer_http_body_rejects_total", "Request bodies refused: over limits.max_body (413) or malformed chunked coding (400).",
      "reason", "too_large", F(body_too_large) },
    { "wafer_http_body_rejects_total", NULL, "reason", "invalid", F(body_invalid) },
    { "wafer_expect_continue_total", "100 Continue responses sent.", NULL, NULL, F(expect_continue) },
    { "wafer_timeouts_total", "Deadlines that passed, by kind (configuration keys timeouts.* and upstream.*).",
      "kind", "header", F(timeout_header) },
    { "wafer_timeouts_total", NULL, "kind", "body", F(timeout_body) },
    { "wafer_timeouts_total", NULL, "kind", "idle", F(timeout_idle) },
    { "wafer_timeouts_total", NULL, "kind", "send", F(timeout_send) },
    { "wafer_timeouts_total", NULL, "kind", "upstream_connect", F(timeout_upstream_connect) },
    { "wafer_timeouts_total", NULL, "kind", "upstream", F(timeout_upstream) },
    { "wafer_upstream_connections_total", "New upstream connections opened.", NULL, NULL, F(upstream_connects) },
    { "wafer_upstream_reused_total", "Requests sent over a pooled upstream connection.", NULL, NULL,
      F(upstream_reused) },
    { "wafer_upstream_errors_total", "Upstream failures, by kind.", "kind", "connect_failed",
      F(upstream_connect_failed) },
    { "wafer_upstream_errors_total", NULL, "kind", "invalid_response", F(upstream_invalid) },
    { "wafer_upstream_errors_total", NULL, "kind", "closed", F(upstream_closed) },
    { "wafer_upstream_retries_total", "Requests resent after a reused upstream connection failed.", NULL, NULL,
      F(upstream_retries) },
    { "wafer_gateway_errors_total", "Error responses wafer generated for upstream failures, by status.", "code", "502",
      F(upstream_502) },
    { "wafer_gateway_errors_total", NULL, "code", "504", F(upstream_504) },
    { "wafer_upstream_pool_closed_total", "Idle upstream connections closed, by reason.", "reason", "pool_full",
      F(upstream_pool_full) },
    { "wafer_upstream_pool_closed_total", NULL, "reason", "idle", F(upstream_idle_closed) },
    { "wafer_client_aborts_total", "Clients that closed or reset before their response was complete.", NULL, NULL,
      F(client_aborted) },
    { "wafer_responses_aborted_total", "Responses cut short after they had started.", NULL, NULL,
      F(response_aborted) },
    { "wafer_buffer_exhausted_total", "Requests refused with 503 for lack of buffers.", NULL, NULL, F(oom) },
    { "wafer_client_received_bytes_total", "Bytes read from clients.", NULL, NULL, F(bytes_in) },
    { "wafer_client_sent_bytes_total", "Bytes written to clients.", NULL, NULL, F(bytes_out) },
    { "wafer_access_log_dropped_total", "Access log lines dropped (buffer full and write failed).", NULL, NULL,
      F(access_log_dropped) },
    { "wafer_inspection_requests_total", "Requests by what inspection did (docs/detection-service.md).", "result",
      "inspected", F(inspected) },
    { "wafer_inspection_requests_total", NULL, "result", "blocked", F(blocked) },
    { "wafer_inspection_requests_total", NULL, "result", "monitored", F(monitored) },
    { "wafer_inspection_requests_total", NULL, "result", "tagged", F(tagged) },
    { "wafer_inspection_requests_total", NULL, "result", "overload_open", F(overload_open) },
    { "wafer_inspection_requests_total", NULL, "result", "overload_closed", F(overload_closed) },
    { "wafer_inspection_requests_total", NULL, "result", "verdict_timeout", F(verdict_timeouts) },
    { "wafer_inspection_requests_total", NULL, "result", "body_over_limit", F(body_over_limit) },
    { "wafer_inspection_requests_total", NULL, "result", "allowlisted", F(allowlisted) },
    { "wafer_inspection_requests_total", NULL, "result", "denied", F(denied) },
    { "wafer_inspection_requests_total", NULL, "result", "banned", F(banned) },
    { "wafer_inspection_requests_total", NULL, "result", "indicator", F(indicator_matched) },
    { "wafer_inspection_units_total",
      "Inspection units: extracted, skipped by the fast path, answered by the verdict cache, sent to the model.",
      "state", "extracted", F(units_extracted) },
    { "wafer_inspection_units_total", NULL, "state", "safe", F(units_safe) },
    { "wafer_inspection_units_total", NULL, "state", "cached", F(units_cached) },
    { "wafer_inspection_units_total", NULL, "state", "model", F(units_model) },
    { "wafer_inspection_bans_started_total", "Clients banned after repeated detections.", NULL, NULL,
      F(bans_started) },
    { "wafer_inspection_events_dropped_total", "Security events the data plane could not queue.", NULL, NULL,
      F(events_dropped) },
    { "wafer_tls_handshakes_total", "TLS handshakes completed with clients (full and resumed).", NULL, NULL,
      F(tls_handshakes) },
    { "wafer_tls_resumed_total", "Client TLS handshakes that resumed a session (ticket or session cache).", NULL, NULL,
      F(tls_resumed) },
    { "wafer_tls_handshake_failures_total", "Client TLS handshakes that failed, by reason.", "reason", "protocol",
      F(tls_failed_protocol) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "certificate", F(tls_failed_certificate) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "alert", F(tls_failed_alert) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "alpn", F(tls_failed_alpn) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "plain_http", F(tls_failed_plain_http) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "closed", F(tls_failed_closed) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "timeout", F(tls_failed_timeout) },
    { "wafer_tls_handshake_failures_total", NULL, "reason", "other", F(tls_failed_other) },
    { "wafer_upstream_tls_handshakes_total", "TLS handshakes with upstreams, by result.", "result", "ok",
      F(tls_upstream_handshakes) },
    { "wafer_upstream_tls_handshakes_total", NULL, "result", "failed", F(tls_upstream_failed) },
    { "wafer_upstream_tls_resumed_total", "TLS handshakes with upstreams that resumed a session.", NULL, NULL,
      F(tls_upstream_resumed) },
    { "wafer_identity_denied_total", "Requests refused (403) because the client identity may not reach the route.",
      NULL, NULL, F(identity_denied) },
    { "wafer_upstream_no_member_total", "Requests answered 503 because no member of their pool was available.", NULL,
      NULL, F(upstream_unavailable) },
    { "wafer_upstream_member_retries_total",
      "Requests resent to another pool member after a failure before any response byte.", NULL, NULL,
      F(upstream_member_retries) },
    { "wafer_limit_refusals_total", "Requests refused with 429, by limit (rate_limits).", "limit", "rate",
      F(rate_limited) },
    { "wafer_limit_refusals_total", NULL, "limit", "connections_per_client", F(conn_limited) },
    { "wafer_connections_refused_total", "Connections closed at accept: limits.max_connections_total with nothing idle to shed.",
      NULL, NULL, F(conn_limit_total) },
    { "wafer_connections_shed_total", "Idle client connections closed to make room at limits.max_connections_total.",
      NULL, NULL, F(conn_shed) },
    { "wafer_slow_clients_total", "Clients cut for moving data under min_rates, by direction.", "direction", "header",
      F(slow_header) },
    { "wafer_slow_clients_total", NULL, "direction", "body", F(slow_body) },
    { "wafer_slow_clients_total", NULL, "direction", "send", F(slow_send) },
};
#undef F

#define MAX_HISTS 256
static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;
static wf_hist_t *hists[MAX_HISTS];
static wf_hist_t hist_gone; /* observations of workers that exited */

/* 100us .. 60s in 1-2.5-5 steps: a WAF's own overhead is sub-millisecond,
 * an upstream's answer may take seconds. */
static const double latency_bounds[] = { 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60 };

void wf_http_latency_init(wf_hist_t *h)
{
    memset(h, 0, sizeof(*h));
    h->nbounds = WF_ARRAY_LEN(latency_bounds);
    memcpy(h->bounds, latency_bounds, sizeof(latency_bounds));
}

int wf_http_latency_register(wf_hist_t *h)
{
    int rc = -WF_ELIMIT;
    pthread_mutex_lock(&hist_lock);
    for (int i = 0; i < MAX_HISTS; i++)
        if (!hists[i]) {
            hists[i] = h;
            rc = 0;
            break;
        }
    pthread_mutex_unlock(&hist_lock);
    return rc;
}

void wf_http_latency_unregister(wf_hist_t *h)
{
    pthread_mutex_lock(&hist_lock);
    for (int i = 0; i < MAX_HISTS; i++)
        if (hists[i] == h) {
            hists[i] = NULL;
            wf_hist_merge(&hist_gone, h);
        }
    pthread_mutex_unlock(&hist_lock);
}

static void collect(wf_metrics_t *m, void *arg)
{
    wf_stats_t s;
    wf_stats_sum(&s);
    const char *fam = NULL;
    for (size_t i = 0; i < WF_ARRAY_LEN(rows); i++) {
        const struct row *r = &rows[i];
        if (!fam || strcmp(fam, r->family)) {
            fam = r->family;
            wf_metrics_family(m, fam, WF_METRIC_COUNTER, r->help);
        }
        double v = (double)*(const uint64_t *)((const char *)&s + r->off);
        if (r->label)
            wf_metrics_sample(m, NULL, r->label, r->value, NULL, v);
        else
            wf_metrics_value(m, v);
    }
    wf_metrics_family(m, "wafer_http_rejects_total", WF_METRIC_COUNTER,
                      "Requests refused by the HTTP parser, by reason (docs/http-parsing.md).");
    for (int e = 1; e < WF_HTTP_E__COUNT; e++)
        if (e != WF_HTTP_E_STATUS_LINE) /* responses only: counted as upstream errors */
            wf_metrics_sample(m, NULL, "reason", wf_http_err_name((wf_http_err_t)e), NULL, (double)s.http_reject[e]);

    wf_hist_t h;
    wf_http_latency_init(&h);
    pthread_mutex_lock(&hist_lock);
    wf_hist_merge(&h, &hist_gone);
    for (int i = 0; i < MAX_HISTS; i++)
        if (hists[i])
            wf_hist_merge(&h, hists[i]);
    pthread_mutex_unlock(&hist_lock);
    wf_metrics_family(m, "wafer_request_duration_seconds", WF_METRIC_HISTOGRAM,
                      "Time from a request's header to the end of its response (or its abort).");
    wf_metrics_hist(m, &h, NULL);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void do_register(void) { wf_metrics_register("http", collect, (void *)rows); }
void wf_http_metrics_register(void) { pthread_once(&once, do_register); }
