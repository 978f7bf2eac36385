/* The JSON-lines file sink: one event per line, appended; reopened on SIGUSR1. */
#include "secops_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* Lines are written in chunks of about this many bytes. */
#define FILE_CHUNK (1u << 20)

typedef enum { FSYNC_NONE, FSYNC_BATCH, FSYNC_EVENT } fsync_mode_t;

typedef struct {
    char *path;
    fsync_mode_t fsync_mode;
} file_conf_t;

typedef struct {
    const file_conf_t *conf;
    char name[64];
    int fd;
    wf_buf_t buf;
} file_sink_t;

static const char *const file_keys[] = { "path", "fsync", NULL };

static void file_conf_free(void *p)
{
    file_conf_t *fc = p;
    if (!fc)
        return;
    free(fc->path);
    free(fc);
}

static int file_conf_parse(const wf_conf_t *c, const wf_conf_node_t *map, void **out, wf_conf_err_t *err)
{
    static const char *const modes[] = { "none", "batch", "event", NULL };
    file_conf_t *fc = calloc(1, sizeof(*fc));
    if (!fc)
        return -ENOMEM;
    const char *path = NULL;
    int mode = FSYNC_NONE, rc;
    if ((rc = wf_conf_str(c, map, "path", &path, err)) || (rc = wf_conf_enum(c, map, "fsync", modes, &mode, err))) {
        file_conf_free(fc);
        return rc;
    }
    if (!path || !*path) {
        file_conf_free(fc);
        return wf_conf_errorf(c, map, err, "a file sink needs a path");
    }
    fc->fsync_mode = (fsync_mode_t)mode;
    if (!(fc->path = strdup(path))) {
        file_conf_free(fc);
        return -ENOMEM;
    }
    *out = fc;
    return 0;
}

static int file_open_fd(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
    return fd < 0 ? -errno : fd;
}

static int file_open(const void *conf, const char *name, void **state, char *err, size_t errlen)
{
    const file_conf_t *fc = conf;
    file_sink_t *f = calloc(1, sizeof(*f));
    if (!f)
        return -ENOMEM;
    f->conf = fc;
    snprintf(f->name, sizeof(f->name), "%s", name);
    int rc = wf_buf_init(&f->buf, 64 << 10, 4 * FILE_CHUNK);
    if (rc) {
        free(f);
        return rc;
    }
    f->fd = file_open_fd(fc->path);
    if (f->fd < 0) {
        rc = f->fd;
        snprintf(err, errlen, "%s: %s", fc->path, strerror(-rc));
        wf_buf_free(&f->buf);
        free(f);
        return rc;
    }
    *state = f;
    return 0;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Writes the lines in buf as one write; a failed write is cut back so that
 * the file never holds half a line that a retry would repeat. */
static int file_flush(file_sink_t *f, bool sync)
{
    if (!wf_buf_len(&f->buf))
        return 0;
    if (f->fd < 0 && (f->fd = file_open_fd(f->conf->path)) < 0) {
        int rc = f->fd;
        f->fd = -1;
        return rc;
    }
    struct stat st;
    off_t before = fstat(f->fd, &st) == 0 ? st.st_size : -1;
    int rc = write_all(f->fd, wf_buf_rptr(&f->buf), wf_buf_len(&f->buf));
    if (rc == 0 && sync && fdatasync(f->fd) < 0)
        rc = -errno;
    if (rc && before >= 0 && ftruncate(f->fd, before) < 0)
        wf_warn("events: sink %s: %s: cannot cut a failed write back: %s", f->name, f->conf->path, strerror(errno));
    wf_buf_clear(&f->buf);
    return rc;
}

static int file_deliver(void *state, const wf_secev_t *evs, size_t n, size_t *done)
{
    file_sink_t *f = state;
    *done = 0;
    for (size_t i = 0; i < n; i++) {
        size_t mark = wf_buf_len(&f->buf);
        int rc = wf_secev_json(&evs[i], &f->buf);
        if (rc == 0 && (rc = wf_buf_append(&f->buf, "\n", 1)))
            f->buf.end = f->buf.start + mark;
        if (rc)
            return rc; /* cannot happen: the buffer holds many times the longest event */
        if (f->conf->fsync_mode == FSYNC_EVENT || wf_buf_len(&f->buf) >= FILE_CHUNK) {
            if ((rc = file_flush(f, f->conf->fsync_mode == FSYNC_EVENT)))
                return rc;
            *done = i + 1;
        }
    }
    int rc = file_flush(f, f->conf->fsync_mode == FSYNC_BATCH);
    if (rc)
        return rc;
    *done = n;
    return 0;
}

static void file_reopen(void *state)
{
    file_sink_t *f = state;
    int fd = file_open_fd(f->conf->path);
    if (fd < 0) {
        wf_error("events: sink %s: reopen %s: %s; still writing to the old file", f->name, f->conf->path,
                 strerror(-fd));
        return;
    }
    if (f->fd >= 0)
        close(f->fd);
    f->fd = fd;
}

static void file_close(void *state)
{
    file_sink_t *f = state;
    if (f->fd >= 0)
        close(f->fd);
    wf_buf_free(&f->buf);
    free(f);
}

const wf_sink_mod_t wf_sink_file = {
    .type = "file",
    .keys = file_keys,
    .conf_parse = file_conf_parse,
    .conf_free = file_conf_free,
    .open = file_open,
    .deliver = file_deliver,
    .reopen = file_reopen,
    .close = file_close,
};
