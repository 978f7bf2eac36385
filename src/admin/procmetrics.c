/* Process metrics in the names Prometheus client libraries use
 * (process_*), read from /proc at scrape time, and wafer_build_info. */
#include "wafer/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

typedef struct {
    double cpu_s, start_s, vsize, rss;
    bool ok;
} procstat_t;

static double boot_time(void)
{
    FILE *f = fopen("/proc/stat", "re");
    if (!f)
        return 0;
    char line[256];
    double bt = 0;
    while (fgets(line, sizeof(line), f))
        if (!strncmp(line, "btime ", 6)) {
            bt = strtod(line + 6, NULL);
            break;
        }
    fclose(f);
    return bt;
}

static procstat_t read_stat(void)
{
    procstat_t p = { 0 };
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "re");
    if (!f)
        return p;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    /* the command name may hold spaces and parentheses: fields start after the last ')' */
    char *s = strrchr(buf, ')');
    if (!s)
        return p;
    s++;
    unsigned long long v[24] = { 0 };
    int k = 0;
    char *end;
    /* fields 3.. (state is a letter; skip it) */
    while (*s == ' ')
        s++;
    s++;
    for (k = 0; k < 22; k++) {
        v[k] = strtoull(s, &end, 10);
        if (end == s)
            break;
        s = end;
    }
    if (k < 22)
        return p;
    /* v[0] is field 4 (ppid): utime 14, stime 15, starttime 22, vsize 23, rss 24 */
    double tck = (double)sysconf(_SC_CLK_TCK);
    p.cpu_s = (double)(v[10] + v[11]) / tck;
    p.start_s = boot_time() + (double)v[18] / tck;
    p.vsize = (double)v[19];
    p.rss = (double)v[20] * (double)sysconf(_SC_PAGESIZE);
    p.ok = true;
    return p;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void collect(wf_metrics_t *m, void *arg)
{
    wf_metrics_family(m, "wafer_build_info", WF_METRIC_GAUGE, "wafer's version and build options (always 1).");
#ifdef WAFER_HAVE_CUDA
    const char *cuda = "true";
#else
    const char *cuda = "false";
#endif
    wf_metrics_sample(m, NULL, "version", WF_VERSION, "cuda", cuda, NULL, 1.0);
    procstat_t p = read_stat();
    if (p.ok) {
        wf_metrics_family(m, "process_cpu_seconds_total", WF_METRIC_COUNTER, "User and system CPU time spent.");
        wf_metrics_value(m, p.cpu_s);
        wf_metrics_family(m, "process_start_time_seconds", WF_METRIC_GAUGE,
                          "Start time of the process since the Unix epoch.");
        wf_metrics_value(m, p.start_s);
        wf_metrics_family(m, "process_virtual_memory_bytes", WF_METRIC_GAUGE, "Virtual memory size.");
        wf_metrics_value(m, p.vsize);
        wf_metrics_family(m, "process_resident_memory_bytes", WF_METRIC_GAUGE, "Resident memory size.");
        wf_metrics_value(m, p.rss);
    }
    int fds = open_fds();
    if (fds >= 0) {
        wf_metrics_family(m, "process_open_fds", WF_METRIC_GAUGE, "Open file descriptors.");
        wf_metrics_value(m, fds);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        wf_metrics_family(m, "process_max_fds", WF_METRIC_GAUGE, "Limit on open file descriptors.");
        wf_metrics_value(m, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
    }
}

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int tag;
static void do_register(void) { wf_metrics_register("process", collect, &tag); }
void wf_metrics_process_register(void) { pthread_once(&once, do_register); }
