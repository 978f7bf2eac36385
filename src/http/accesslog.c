/* The JSON access log: each worker appends lines to its own buffer and writes
 * the buffer out in the loop's before-sleep hook, so that a request costs no
 * system call of its own. The descriptor is shared: reopening (SIGUSR1,
 * reload) replaces the file under the same descriptor number with dup2, so
 * workers never see a closed descriptor. */
#include "server_int.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

atomic_int wf_access_log_fd = -1;
static bool alog_is_pipe;

int wf_access_log_open(const wf_server_conf_t *sc)
{
    int nfd;
    if (sc->access_log == WF_ACCESS_LOG_OFF) {
        /* the old descriptor stays open (unused) so that no worker writes to a reused number */
        atomic_store(&wf_access_log_fd, -1);
        return 0;
    }
    if (sc->access_log == WF_ACCESS_LOG_STDOUT)
        nfd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    else
        nfd = open(sc->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (nfd < 0)
        return -errno;
    struct stat st;
    alog_is_pipe = fstat(nfd, &st) == 0 && !S_ISREG(st.st_mode);
    static int keep_fd = -1; /* the number workers write to, once chosen */
    if (keep_fd < 0) {
        keep_fd = nfd;
    } else {
        dup3(nfd, keep_fd, O_CLOEXEC);
        close(nfd);
    }
    atomic_store(&wf_access_log_fd, keep_fd);
    return 0;
}

void wf_access_log_flush(wf_worker_t *w)
{
    int fd = atomic_load_explicit(&wf_access_log_fd, memory_order_relaxed);
    size_t off = 0;
    while (fd >= 0 && off < w->alog_len) {
        size_t n = w->alog_len - off;
        if (alog_is_pipe && n > PIPE_BUF) {
            /* whole lines of at most PIPE_BUF bytes stay unmixed with other workers' */
            size_t cut = PIPE_BUF;
            while (cut > 0 && w->alog[off + cut - 1] != '\n')
                cut--;
            n = cut ? cut : PIPE_BUF;
        }
        ssize_t r = write(fd, w->alog + off, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            WF_STAT_INC(&w->stats, access_log_dropped);
            break;
        }
        off += (size_t)r;
    }
    w->alog_len = 0;
}

char *wf_access_log_reserve(wf_worker_t *w, size_t n)
{
    if (!w->alog) {
        w->alog_cap = 64 * 1024;
        w->alog = malloc(w->alog_cap);
        if (!w->alog)
            return NULL;
    }
    if (w->alog_cap - w->alog_len < n)
        wf_access_log_flush(w);
    if (w->alog_cap - w->alog_len < n)
        return NULL;
    return w->alog + w->alog_len;
}
