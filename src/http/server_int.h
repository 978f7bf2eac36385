/* Internal to src/http: configuration generations, workers and the proxy's
 * per-connection entry points shared by proxy.c and server.c. */
#ifndef WAFER_HTTP_SERVER_INT_H
#define WAFER_HTTP_SERVER_INT_H

#include "wafer/core.h"
#include "wafer/event.h"
#include "wafer/metrics.h"
#include "wafer/net.h"
#include "wafer/proxy.h"
#include "wafer/stats.h"

#include <pthread.h>
#include <stdatomic.h>

/* A configuration generation: refcounted; connections keep the one they
 * were accepted under, new connections get the newest. */
typedef struct wf_gen {
    wf_server_conf_t *conf;
    atomic_int refs;
    uint64_t id;
    int nworkers;
    int *listen_fds; /* [worker * conf->nlisten + i]; owned by the worker that polls it */
} wf_gen_t;

void wf_gen_ref(wf_gen_t *g);
void wf_gen_unref(wf_gen_t *g);

typedef struct cconn cconn_t;
typedef struct upconn upconn_t;

/* A buffer block pool: every client connection takes one block (both
 * direction buffers and both head areas) while it is active. */
typedef struct {
    size_t size;
    void *free;
    size_t nfree, maxfree;
} wf_blockpool_t;

enum { WF_WCMD_SHUTDOWN = 1, WF_WCMD_FORCE = 2 };

typedef struct {
    int fd;
    wf_io_t io;
    struct wf_worker *w;
} wf_wlistener_t;

typedef struct wf_worker {
    int id;
    pthread_t thread;
    wf_loop_t *loop;
    wf_gen_t *gen;                 /* current generation (one reference held) */
    atomic_ullong applied;         /* id of the generation in use, for the main thread */
    atomic_bool exited;
    _Atomic(wf_gen_t *) pending;   /* set by the main thread on reload */
    atomic_int cmd;                /* WF_WCMD_* */

    wf_wlistener_t **lst;          /* listeners this worker polls (its own sockets) */
    size_t nlst;
    bool accept_paused;
    bool shutting_down;
    wf_timer_t accept_timer;
    uint64_t limit_logged;         /* when the connection limit was last logged (at most once a second) */       /* resumes accepting after EMFILE */

    size_t nconns;
    cconn_t *conns;                /* every client connection (a list) */
    wf_pool_t cc_pool, up_pool;
    wf_blockpool_t blocks;
    upconn_t *idle_up;             /* idle upstream connections, most recent first */
    size_t nidle_up;
    uint32_t rr;                   /* round robin over upstream servers */

    wf_http_header_t *hdrs;        /* parser scratch: max_headers entries */
    size_t hdrs_cap;
    uint64_t rid_state;

    char *alog;                    /* access log lines waiting for the before-sleep flush */
    size_t alog_len, alog_cap;

    struct wf_insp *insp;          /* inspection state (inspect_hook.c) */

    wf_stats_t stats;
    wf_hist_t latency;             /* request duration, seconds (metrics.c) */
} wf_worker_t;

/* proxy.c */
void wf_proxy_accept(wf_worker_t *w, int lfd);
/* Starts graceful shutdown in this worker: idle connections close now, the
 * others after their current exchange. */
void wf_proxy_shutdown_begin(wf_worker_t *w);
/* Closes every connection now. */
void wf_proxy_close_all(wf_worker_t *w);
void wf_proxy_worker_init(wf_worker_t *w);
void wf_proxy_worker_free(wf_worker_t *w);
/* Re-enables accepting when below the connection limit. */
void wf_worker_listeners_pause(wf_worker_t *w, bool pause);

/* metrics.c: the data plane's Prometheus collector (registered once) and
 * the per-worker latency histograms it merges at scrape time. */
void wf_http_metrics_register(void);
void wf_http_latency_init(wf_hist_t *h);
int wf_http_latency_register(wf_hist_t *h);
/* Keeps h's observations in the merged sum after the worker exits. */
void wf_http_latency_unregister(wf_hist_t *h);

/* access log (accesslog.c) */
int wf_access_log_open(const wf_server_conf_t *sc);
void wf_access_log_flush(wf_worker_t *w);
/* Room for one line in the worker buffer (flushing first if needed). */
char *wf_access_log_reserve(wf_worker_t *w, size_t n);
static inline bool wf_access_log_on(void)
{
    extern atomic_int wf_access_log_fd;
    return atomic_load_explicit(&wf_access_log_fd, memory_order_relaxed) >= 0;
}

#endif
