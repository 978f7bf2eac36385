/* The process log: one line per message, timestamped, to stderr or a file. */
#include "wafer/core.h"

#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static wf_log_level_t log_level = WF_LOG_INFO;
static FILE *log_fp;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void wf_log_set_level(wf_log_level_t lvl) { log_level = lvl; }
wf_log_level_t wf_log_get_level(void) { return log_level; }

int wf_log_level_parse(const char *s)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int wf_log_open(const char *path)
{
    FILE *fp = NULL;
    if (path) {
        fp = fopen(path, "a");
        if (!fp)
            return -errno;
        setvbuf(fp, NULL, _IOLBF, 0);
    }
    pthread_mutex_lock(&log_lock);
    if (log_fp)
        fclose(log_fp);
    log_fp = fp;
    pthread_mutex_unlock(&log_lock);
    return 0;
}

void wf_logv(wf_log_level_t lvl, const char *fmt, va_list ap)
{
    static const char *const names[] = { "debug", "info", "warn", "error" };
    if (lvl < log_level)
        return;
    char ts[32], line[2048];
    wf_time_rfc3339(wf_wall_us(), ts, sizeof(ts));
    int n = snprintf(line, sizeof(line), "%s [%s] %d: ", ts, names[lvl], (int)getpid());
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + ((size_t)m < sizeof(line) - (size_t)n - 1 ? (size_t)m : sizeof(line) - (size_t)n - 2);
    line[len++] = '\n';
    pthread_mutex_lock(&log_lock);
    fwrite(line, 1, len, log_fp ? log_fp : stderr);
    pthread_mutex_unlock(&log_lock);
}

void wf_log(wf_log_level_t lvl, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    wf_logv(lvl, fmt, ap);
    va_end(ap);
}
