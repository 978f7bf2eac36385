/*
 * The server: configuration generations, worker threads (one event loop and
 * one set of SO_REUSEPORT listening sockets each) and the main thread, which
 * only handles signals: SIGTERM/SIGINT graceful shutdown, SIGHUP reload,
 * SIGUSR1 log reopening, SIGUSR2 counters to the error log.
 */
#include "inspect_hook.h"
#include "wafer/policy.h"
#include "server_int.h"
#include "wafer/metrics.h"
#include "wafer/misp.h"
#include "wafer/ratelimit.h"
#include "wafer/upstream.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

static wf_worker_t *workers;
static int nworkers;
static int main_evfd = -1; /* workers write here when they exit */
static uint64_t gen_seq;
static int sig_pipe[2] = { -1, -1 };

/* Libraries may start threads before main (OpenBLAS does) that do not block
 * our signals; a signal delivered to one of them comes through this pipe.
 * Signals that every thread blocks come through the signalfd. */
static void on_signal(int signo)
{
    int saved = errno;
    unsigned char c = (unsigned char)signo;
    ssize_t r = write(sig_pipe[1], &c, 1);
    (void)r;
    errno = saved;
}

/* ---- generations ---- */

void wf_gen_ref(wf_gen_t *g) { atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed); }

void wf_gen_unref(wf_gen_t *g)
{
    if (!g || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
        return;
    wf_upstreams_free(g->ups);
    wf_server_conf_free(g->conf);
    free(g->listen_fds);
    free(g);
}

/* The index in prev's listen list of the address a, or SIZE_MAX (also when
 * there is no prev). Addresses within one configuration are distinct. */
static size_t prev_listen_index(const wf_gen_t *prev, const wf_sockaddr_t *a)
{
    if (prev)
        for (size_t j = 0; j < prev->conf->nlisten; j++)
            if (wf_sockaddr_eq(&prev->conf->listen[j].addr, a))
                return j;
    return SIZE_MAX;
}

/* Builds a generation from conf; listening sockets for addresses that prev
 * already has are taken over, the others opened now (one per worker). On
 * failure nothing is left open and err names the address. */
static int gen_new(wf_server_conf_t *conf, const wf_gen_t *prev, int nw, wf_gen_t **out, char *err, size_t errlen)
{
    wf_gen_t *g = calloc(1, sizeof(*g));
    size_t nl = conf->nlisten;
    if (!g || !(g->listen_fds = malloc(sizeof(int) * nl * (size_t)nw))) {
        free(g);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (size_t i = 0; i < nl * (size_t)nw; i++)
        g->listen_fds[i] = -1;
    g->conf = conf;
    g->nworkers = nw;
    atomic_init(&g->refs, 1);
    int urc = wf_upstreams_new(conf->pools, conf->npools, prev ? prev->ups : NULL, &g->ups);
    if (urc) {
        snprintf(err, errlen, "upstream pools: %s", wf_strerror(urc));
        free(g->listen_fds);
        free(g);
        return urc;
    }
    g->ups->tls = conf->up_tls;
    g->id = ++gen_seq;
    for (size_t i = 0; i < nl; i++) {
        const wf_listen_conf_t *l = &conf->listen[i];
        size_t pj = prev_listen_index(prev, &l->addr);
        for (int wi = 0; wi < nw; wi++) {
            int fd;
            if (pj != SIZE_MAX) {
                fd = prev->listen_fds[(size_t)wi * prev->conf->nlisten + pj];
                if (prev->conf->listen[pj].backlog != l->backlog)
                    listen(fd, l->backlog);
            } else {
                fd = wi == 0 ? wf_net_listen_probe(&l->addr) : 0;
                if (fd == 0)
                    fd = wf_net_listen(&l->addr, l->backlog, true);
                if (fd < 0) {
                    snprintf(err, errlen, "%s: listen %s: %s", conf->file, l->address, wf_strerror(fd));
                    /* close what this generation opened (not what it took over) */
                    for (size_t k = 0; k <= i; k++) {
                        if (prev_listen_index(prev, &conf->listen[k].addr) != SIZE_MAX)
                            continue;
                        for (int x = 0; x < nw; x++)
                            if (g->listen_fds[(size_t)x * nl + k] >= 0)
                                close(g->listen_fds[(size_t)x * nl + k]);
                    }
                    g->conf = NULL;
                    wf_upstreams_free(g->ups);
                    free(g->listen_fds);
                    free(g);
                    return fd;
                }
            }
            g->listen_fds[(size_t)wi * nl + i] = fd;
        }
    }
    *out = g;
    return 0;
}

/* ---- workers ---- */

static void listener_event(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    wf_wlistener_t *l = io->data;
    wf_proxy_accept(l->w, l->fd);
}

/* Starts accepting on a listener; a failure leaves it idle and is logged. */
static void listener_poll(wf_worker_t *w, wf_wlistener_t *l, int fd)
{
    int rc = wf_loop_io_add(w->loop, &l->io, fd, WF_IO_READ, listener_event, l);
    if (rc < 0)
        wf_warn("worker %d: cannot poll listener: %s", w->id, wf_strerror(rc));
}

void wf_worker_listeners_pause(wf_worker_t *w, bool pause)
{
    if (pause == w->accept_paused)
        return;
    w->accept_paused = pause;
    for (size_t i = 0; i < w->nlst; i++) {
        wf_wlistener_t *l = w->lst[i];
        if (pause)
            wf_loop_io_del(w->loop, &l->io);
        else
            listener_poll(w, l, l->fd);
    }
}

static void listener_close(wf_worker_t *w, wf_wlistener_t *l)
{
    wf_loop_io_del(w->loop, &l->io);
    close(l->fd);
    free(l);
}

static void worker_close_listeners(wf_worker_t *w)
{
    for (size_t i = 0; i < w->nlst; i++)
        listener_close(w, w->lst[i]);
    free(w->lst);
    w->lst = NULL;
    w->nlst = 0;
}

/* Switches the worker's listeners to generation g's row: keeps the sockets
 * both have, closes the ones g dropped, polls the new ones. */
static void worker_set_listeners(wf_worker_t *w, wf_gen_t *g)
{
    size_t nl = g->conf->nlisten;
    wf_wlistener_t **nlst = calloc(nl ? nl : 1, sizeof(*nlst));
    if (!nlst) {
        wf_error("worker %d: out of memory switching listeners", w->id);
        return;
    }
    for (size_t i = 0; i < nl; i++) {
        int fd = g->listen_fds[(size_t)w->id * nl + i];
        for (size_t j = 0; j < w->nlst; j++)
            if (w->lst[j] && w->lst[j]->fd == fd) {
                nlst[i] = w->lst[j];
                w->lst[j] = NULL;
            }
        if (!nlst[i]) {
            nlst[i] = calloc(1, sizeof(**nlst));
            if (!nlst[i]) {
                close(fd);
                continue;
            }
            nlst[i]->fd = fd;
            nlst[i]->w = w;
            nlst[i]->io.fd = -1;
            if (!w->accept_paused && !w->shutting_down)
                listener_poll(w, nlst[i], fd);
        }
    }
    for (size_t j = 0; j < w->nlst; j++)
        if (w->lst[j])
            listener_close(w, w->lst[j]);
    free(w->lst);
    /* drop entries that failed to allocate */
    size_t k = 0;
    for (size_t i = 0; i < nl; i++)
        if (nlst[i])
            nlst[k++] = nlst[i];
    w->lst = nlst;
    w->nlst = k;
}

static int worker_size_scratch(wf_worker_t *w, const wf_server_conf_t *sc)
{
    size_t need = WF_MAX(sc->http.max_headers, sc->http_resp.max_headers);
    if (need <= w->hdrs_cap)
        return 0;
    wf_http_header_t *h = realloc(w->hdrs, need * sizeof(*h));
    if (!h)
        return -ENOMEM;
    w->hdrs = h;
    w->hdrs_cap = need;
    return 0;
}

static void worker_apply_gen(wf_worker_t *w, wf_gen_t *g)
{
    if (worker_size_scratch(w, g->conf))
        wf_error("worker %d: out of memory for header scratch", w->id);
    if (!w->shutting_down)
        worker_set_listeners(w, g);
    wf_gen_t *old = w->gen;
    w->gen = g;
    atomic_store(&w->applied, g->id);
    wf_gen_unref(old);
}

static void worker_wake(wf_loop_t *loop, void *data)
{
    wf_worker_t *w = data;
    wf_gen_t *g = atomic_exchange(&w->pending, NULL);
    if (g)
        worker_apply_gen(w, g);
    int cmd = atomic_load(&w->cmd);
    if (cmd & WF_WCMD_FORCE) {
        worker_close_listeners(w);
        wf_proxy_close_all(w);
        wf_loop_stop(loop);
    } else if ((cmd & WF_WCMD_SHUTDOWN) && !w->shutting_down) {
        worker_close_listeners(w);
        wf_proxy_shutdown_begin(w);
    }
}

static void worker_before_sleep(wf_loop_t *loop, void *data)
{
    wf_worker_t *w = data;
    if (w->alog_len)
        wf_access_log_flush(w);
}

static void *worker_main(void *arg)
{
    wf_worker_t *w = arg;
    wf_loop_set_wake(w->loop, worker_wake, w);
    wf_loop_add_before_sleep(w->loop, worker_before_sleep, w);
    worker_set_listeners(w, w->gen);
    worker_wake(w->loop, w); /* commands that came before the loop ran */
    int rc = wf_loop_run(w->loop);
    if (rc < 0)
        wf_error("worker %d: event loop failed: %s", w->id, wf_strerror(rc));
    worker_close_listeners(w);
    wf_proxy_worker_free(w);
    wf_access_log_flush(w);
    atomic_store(&w->exited, true);
    uint64_t one = 1;
    ssize_t r = write(main_evfd, &one, sizeof(one));
    (void)r;
    return NULL;
}

static int workers_start(wf_gen_t *g)
{
    nworkers = g->nworkers;
    workers = calloc((size_t)nworkers, sizeof(*workers));
    if (!workers)
        return -ENOMEM;
    for (int i = 0; i < nworkers; i++) {
        wf_worker_t *w = &workers[i];
        w->id = i;
        int rc = wf_loop_new(&w->loop);
        if (rc)
            return rc;
        wf_gen_ref(g);
        w->gen = g;
        atomic_init(&w->applied, g->id);
        wf_proxy_worker_init(w);
        if ((rc = worker_size_scratch(w, g->conf)))
            return rc;
        wf_stats_register(&w->stats);
        wf_http_latency_init(&w->latency);
        wf_http_latency_register(&w->latency);
        if ((rc = pthread_create(&w->thread, NULL, worker_main, w)) != 0)
            return -rc;
    }
    return 0;
}

static void workers_command(int cmd)
{
    for (int i = 0; i < nworkers; i++) {
        atomic_fetch_or(&workers[i].cmd, cmd);
        wf_loop_wake(workers[i].loop);
    }
}

/* ---- logs, pid file, daemon ---- */

static int apply_logs(const wf_server_conf_t *sc, char *err, size_t errlen)
{
    wf_log_set_level((wf_log_level_t)sc->log_level);
    int rc = wf_log_open(sc->error_log);
    if (rc) {
        snprintf(err, errlen, "%s: log.error_log %s: %s", sc->file, sc->error_log, wf_strerror(rc));
        return rc;
    }
    rc = wf_access_log_open(sc);
    if (rc) {
        snprintf(err, errlen, "%s: log.access_log %s: %s", sc->file, sc->access_log_path, wf_strerror(rc));
        return rc;
    }
    return 0;
}

static int write_pid_file(const char *path)
{
    char tmp[4096];
    int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENAMETOOLONG;
    FILE *fp = fopen(tmp, "w");
    if (!fp)
        return -errno;
    fprintf(fp, "%d\n", (int)getpid());
    if (fclose(fp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return -e;
    }
    return 0;
}

/* Double fork and setsid. Returns in the daemon with *notify_fd set to a
 * pipe on which one byte tells the waiting parent that start-up worked. */
static int daemonize(int *notify_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -errno;
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid > 0) {
        close(p[1]);
        char c;
        ssize_t r;
        do
            r = read(p[0], &c, 1);
        while (r < 0 && errno == EINTR);
        _exit(r == 1 ? 0 : 1);
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid < 0)
        _exit(1);
    if (pid > 0)
        _exit(0);
    umask(022);
    *notify_fd = p[1];
    return 0;
}

/* The access log keeps its own descriptor: "stdout" stays where stdout was. */
static void detach_stdio(bool keep_stdout)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return;
    dup2(fd, STDIN_FILENO);
    if (!keep_stdout)
        dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    if (fd > STDERR_FILENO)
        close(fd);
}

/* ---- main thread ---- */

static wf_gen_t *cur_gen;
static wf_admin_t *admin;

/* /version shows the generation in use, where it came from and when. */
static void admin_info(const wf_gen_t *g)
{
    char v[32], t[40];
    snprintf(v, sizeof(v), "%llu", (unsigned long long)g->id);
    wf_time_rfc3339(wf_wall_us(), t, sizeof(t));
    wf_admin_set_info("config.generation", v);
    wf_admin_set_info("config.file", g->conf->file);
    wf_admin_set_info("config.loaded", t);
}

/* Starts, moves or stops the admin listener as sc says. */
static int admin_apply(const wf_server_conf_t *sc, char *msg, size_t len)
{
    int rc = 0;
    if (!sc->admin.enabled) {
        wf_admin_stop(admin);
        admin = NULL;
    } else if (admin) {
        rc = wf_admin_reconfigure(admin, &sc->admin, msg, len);
    } else if ((rc = wf_admin_start(&sc->admin, &admin, msg, len)) == 0) {
        char a[80];
        wf_admin_address(admin, a, sizeof(a));
        wf_info("admin listener on %s", a);
    }
    return rc;
}

/* MISP indicators: once configured, the store and the importer live as long as the process, and a reload
 * reconfigures the importer in place, so the workers' pointers (wf_ioc_global, wf_misp_global) stay valid. */
static int misp_apply(const wf_server_conf_t *sc, char *msg, size_t len)
{
    const wf_misp_conf_t *mc = sc->misp;
    if (wf_misp_global)
        return wf_misp_reconfigure(wf_misp_global, mc, msg, len);
    if (!mc || (!mc->nfeeds && !mc->has_api))
        return 0;
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m = NULL;
    if (!store) {
        snprintf(msg, len, "misp: out of memory");
        return -ENOMEM;
    }
    int rc = wf_misp_new(mc, store, &m, msg, len);
    if (!rc && !(rc = wf_misp_metrics_register(m, store)))
        rc = wf_misp_start(m, msg, len);
    if (rc) {
        if (!msg[0])
            snprintf(msg, len, "misp: %s", wf_strerror(rc));
        wf_metrics_unregister(m);
        wf_metrics_unregister(store);
        wf_misp_free(m);
        wf_ioc_store_free(store);
        return rc;
    }
    __atomic_store_n(&wf_ioc_global, store, __ATOMIC_RELEASE);
    __atomic_store_n(&wf_misp_global, m, __ATOMIC_RELEASE);
    return 0;
}

static void misp_stop(void)
{
    if (!wf_misp_global)
        return;
    wf_metrics_unregister(wf_misp_global);
    wf_metrics_unregister(wf_ioc_global);
    wf_misp_free(wf_misp_global);
    wf_ioc_store_free(wf_ioc_global);
    wf_misp_global = NULL;
    wf_ioc_global = NULL;
}
static const wf_secops_conf_t *running_events; /* the hub's, kept from the start */

static void reload(const char *path)
{
    wf_conf_err_t err;
    wf_server_conf_t *nc = NULL;
    int rc = wf_server_conf_load(path, &nc, &err);
    if (rc) {
        wf_error("reload refused, the running configuration stays: %s", err.msg);
        return;
    }
    if (nc->workers != nworkers) {
        wf_warn("reload: workers %d -> %d needs a restart; keeping %d", nworkers, nc->workers, nworkers);
        nc->workers = nworkers;
    }
    if ((nc->pid_file || cur_gen->conf->pid_file) &&
        (!nc->pid_file || !cur_gen->conf->pid_file || strcmp(nc->pid_file, cur_gen->conf->pid_file)))
        wf_warn("reload: pid_file changes take effect at the next start");
    if (!wf_secops_conf_same(running_events, nc->events))
        wf_warn("reload: events changes take effect at the next start");
    wf_gen_t *g = NULL;
    char msg[800];
    if (wf_insp_prepare(nc, false, msg, sizeof(msg))) {
        wf_error("reload refused, the running configuration stays: %s", msg);
        wf_server_conf_free(nc);
        return;
    }
    rc = gen_new(nc, cur_gen, nworkers, &g, msg, sizeof(msg));
    if (rc) {
        wf_error("reload refused, the running configuration stays: %s", msg);
        wf_server_conf_free(nc);
        return;
    }
    if (apply_logs(nc, msg, sizeof(msg)))
        wf_error("reload: %s (continuing)", msg);
    for (int i = 0; i < nworkers; i++) {
        wf_gen_ref(g);
        wf_gen_t *old = atomic_exchange(&workers[i].pending, g);
        if (old)
            wf_gen_unref(old);
        wf_loop_wake(workers[i].loop);
    }
    wf_gen_t *prev = cur_gen;
    cur_gen = g;
    /* the new pools check health and report metrics from now on */
    wf_upstreams_retire(prev->ups);
    if ((rc = wf_upstreams_start(g->ups)))
        wf_error("reload: upstream health checks: %s", wf_strerror(rc));
    if (nc->rate_limits.max_entries != prev->conf->rate_limits.max_entries)
        wf_warn("reload: rate_limits.max_entries changes take effect at the next start");
    if (admin_apply(nc, msg, sizeof(msg)))
        wf_error("reload: %s (the admin listener keeps its previous configuration)", msg);
    msg[0] = 0;
    if (misp_apply(nc, msg, sizeof(msg)))
        wf_error("reload: %s (MISP import keeps its previous configuration)", msg);
    admin_info(g);
    /* wait until every worker switched, so that a next reload starts from
     * the sockets the workers really hold */
    for (int tries = 0; tries < 5000; tries++) {
        bool all = true;
        for (int i = 0; i < nworkers; i++)
            if (!atomic_load(&workers[i].exited) && atomic_load(&workers[i].applied) != g->id)
                all = false;
        if (all)
            break;
        usleep(1000);
    }
    wf_gen_unref(prev);
    wf_info("configuration reloaded from %s (generation %llu)", path, (unsigned long long)g->id);
}

static void log_stats(const char *prefix)
{
    wf_stats_t sum;
    wf_stats_sum(&sum);
    wf_stats_log(&sum, prefix);
}

int wf_server_run(const char *conf_path, bool daemon_mode)
{
    char path[4096];
    if (!realpath(conf_path, path)) {
        fprintf(stderr, "wafer: %s: %s\n", conf_path, strerror(errno));
        return 1;
    }
    wf_conf_err_t err;
    wf_server_conf_t *sc = NULL;
    if (wf_server_conf_load(path, &sc, &err)) {
        fprintf(stderr, "wafer: %s\n", err.msg);
        return 1;
    }
    int notify_fd = -1;
    int drc = daemon_mode ? daemonize(&notify_fd) : 0;
    if (drc) {
        fprintf(stderr, "wafer: cannot daemonize: %s\n", wf_strerror(drc));
        wf_server_conf_free(sc);
        return 1;
    }
    char msg[600];
    if (apply_logs(sc, msg, sizeof(msg))) {
        fprintf(stderr, "wafer: %s\n", msg);
        wf_server_conf_free(sc);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL); /* inherited by the workers */
    int sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    main_evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (pipe2(sig_pipe, O_CLOEXEC | O_NONBLOCK) == 0) {
        struct sigaction sa = { .sa_handler = on_signal };
        sigfillset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        for (int s2 = 1; s2 < NSIG; s2++)
            if (sigismember(&set, s2) == 1)
                sigaction(s2, &sa, NULL);
    }
    if (sfd < 0 || main_evfd < 0 || sig_pipe[0] < 0) {
        wf_error("signalfd/eventfd: %s", strerror(errno));
        wf_server_conf_free(sc);
        return 1;
    }
    if (wf_insp_prepare(sc, true, msg, sizeof(msg))) {
        wf_error("%s", msg);
        wf_server_conf_free(sc);
        return 1;
    }
    wf_ratelimit_global = wf_ratelimit_new(sc->rate_limits.max_entries);
    if (!wf_ratelimit_global) {
        wf_error("rate limit table: out of memory");
        wf_server_conf_free(sc);
        return 1;
    }
    int rc = gen_new(sc, NULL, sc->workers, &cur_gen, msg, sizeof(msg));
    if (rc) {
        wf_error("%s", msg);
        wf_server_conf_free(sc);
        return 1;
    }
    bool pid_written = false;
    if (sc->pid_file) {
        rc = write_pid_file(sc->pid_file);
        if (rc) {
            wf_error("pid_file %s: %s", sc->pid_file, wf_strerror(rc));
            return 1;
        }
        pid_written = true;
    }
    char *pid_file = sc->pid_file ? strdup(sc->pid_file) : NULL;
    if ((rc = wf_upstreams_start(cur_gen->ups))) {
        wf_error("upstream health checks: %s", wf_strerror(rc));
        return 1;
    }
    wf_http_metrics_register();
    if (wf_bans_global) {
        wf_bans_admin_register(wf_bans_global);
        wf_bans_metrics_register(wf_bans_global);
    }
    if (admin_apply(sc, msg, sizeof(msg))) {
        wf_error("%s", msg);
        return 1;
    }
    admin_info(cur_gen);
    /* the hub lives as long as the process: a reload keeps it (events: needs a restart) */
    wf_secops_conf_t *evconf = sc->events;
    sc->events = NULL;
    running_events = evconf;
    if (evconf && (rc = wf_secops_start(evconf, &wf_secops_global, msg, sizeof(msg)))) {
        wf_error("%s", msg);
        if (pid_written && pid_file)
            unlink(pid_file);
        return 1;
    }
    msg[0] = 0;
    if ((rc = misp_apply(sc, msg, sizeof(msg)))) {
        wf_error("%s", msg);
        return 1;
    }
    if ((rc = workers_start(cur_gen))) {
        wf_error("cannot start workers: %s", wf_strerror(rc));
        return 1;
    }
    /* the listening sockets exist (gen_new) and the workers poll them */
    wf_admin_set_ready(true);
    {
        char lst[512] = "";
        size_t k = 0;
        for (size_t i = 0; i < sc->nlisten && k < sizeof(lst) - 1; i++) {
            int m = snprintf(lst + k, sizeof(lst) - k, "%s%s", i ? ", " : "", sc->listen[i].address);
            if (m > 0)
                k = WF_MIN(k + (size_t)m, sizeof(lst) - 1);
        }
        wf_info("wafer %s: listening on %s, %d worker%s, upstream %s%s", WF_VERSION, lst, nworkers,
                nworkers == 1 ? "" : "s", sc->servers[0].address, sc->nservers > 1 ? " (+more)" : "");
    }
    if (notify_fd >= 0) {
        char c = 1;
        ssize_t r = write(notify_fd, &c, 1);
        (void)r;
        close(notify_fd);
        detach_stdio(false);
    }

    bool shutting = false, forced = false;
    uint64_t deadline = 0;
    int exited = 0;
    while (exited < nworkers) {
        struct pollfd pf[3] = { { sfd, POLLIN, 0 }, { main_evfd, POLLIN, 0 }, { sig_pipe[0], POLLIN, 0 } };
        int timeout = -1;
        if (shutting && !forced) {
            uint64_t now = wf_now_ms();
            timeout = now >= deadline ? 0 : (int)WF_MIN(deadline - now, (uint64_t)60000);
        }
        int n = poll(pf, 3, timeout);
        if (n < 0 && errno != EINTR)
            break;
        if (pf[1].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(main_evfd, &v, sizeof(v));
            (void)r;
            exited = 0;
            for (int i = 0; i < nworkers; i++)
                exited += atomic_load(&workers[i].exited);
        }
        int signo = 0;
        if (pf[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == sizeof(si))
                signo = (int)si.ssi_signo;
        } else if (pf[2].revents & POLLIN) {
            unsigned char c;
            if (read(sig_pipe[0], &c, 1) == 1)
                signo = c;
        }
        if (signo) {
            {
                switch (signo) {
                case SIGHUP:
                    if (!shutting)
                        reload(path);
                    break;
                case SIGUSR1:
                    wf_info("reopening logs");
                    if (apply_logs(cur_gen->conf, msg, sizeof(msg)))
                        wf_error("%s", msg);
                    wf_secops_reopen(wf_secops_global);
                    break;
                case SIGUSR2:
                    log_stats("counters:");
                    break;
                default: /* SIGTERM, SIGINT */
                    if (!shutting) {
                        shutting = true;
                        wf_admin_set_ready(false);
                        deadline = wf_now_ms() + cur_gen->conf->shutdown_timeout_ms;
                        wf_info("shutting down: no new connections; waiting up to %llums for requests in flight",
                                (unsigned long long)cur_gen->conf->shutdown_timeout_ms);
                        workers_command(WF_WCMD_SHUTDOWN);
                    } else if (!forced) {
                        wf_info("second signal: closing every connection now");
                        forced = true;
                        workers_command(WF_WCMD_FORCE);
                    }
                    break;
                }
            }
        }
        if (shutting && !forced && wf_now_ms() >= deadline) {
            wf_info("shutdown_timeout reached: closing the remaining connections");
            forced = true;
            workers_command(WF_WCMD_FORCE);
        }
    }
    for (int i = 0; i < nworkers; i++) {
        pthread_join(workers[i].thread, NULL);
        wf_stats_unregister(&workers[i].stats);
        wf_http_latency_unregister(&workers[i].latency);
    }
    log_stats("counters:");
    wf_admin_set_ready(false);
    wf_admin_stop(admin);
    admin = NULL;
    misp_stop();
    wf_secops_t *hub = wf_secops_global;
    wf_secops_global = NULL;
    wf_secops_stop(hub);
    running_events = NULL;
    wf_secops_conf_free(evconf);
    wf_insp_shutdown();
    for (int i = 0; i < nworkers; i++) {
        wf_gen_t *p = atomic_exchange(&workers[i].pending, NULL);
        if (p)
            wf_gen_unref(p);
        wf_gen_unref(workers[i].gen);
        wf_loop_free(workers[i].loop);
        free(workers[i].hdrs);
        free(workers[i].alog);
    }
    free(workers);
    wf_gen_unref(cur_gen);
    wf_ratelimit_free(wf_ratelimit_global);
    wf_ratelimit_global = NULL;
    if (pid_written && pid_file)
        unlink(pid_file);
    free(pid_file);
    close(sfd);
    close(main_evfd);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    wf_info("stopped");
    return 0;
}
