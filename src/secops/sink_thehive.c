/* The `thehive` sink type of the security-event hub: events are taken into
 * alert groups at once (deliver never fails), and a thread of the sink's
 * own closes the groups when their window ends and delivers the alerts
 * with retries (wafer/thehive.h). Alerts waiting for TheHive are held in
 * memory, bounded by max_pending, not in the hub's spool: an alert is made
 * from many events, and the hub's spool holds events. */
#include "secops_int.h"
#include "wafer/thehive.h"

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

typedef struct {
    wf_thehive_t *th;
    const wf_thehive_conf_t *conf;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
} hive_sink_t;

static void hive_conf_free(void *p)
{
    wf_thehive_conf_free(p);
    free(p);
}

static int hive_conf_parse(const wf_conf_t *c, const wf_conf_node_t *map, void **out, wf_conf_err_t *err)
{
    wf_thehive_conf_t *tc = calloc(1, sizeof(*tc));
    if (!tc)
        return -ENOMEM;
    int rc = wf_thehive_conf_parse(c, map, tc, err);
    if (rc) {
        hive_conf_free(tc);
        return rc;
    }
    *out = tc;
    return 0;
}

static void *hive_main(void *arg)
{
    hive_sink_t *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        pthread_mutex_unlock(&s->mu);
        uint64_t wait = wf_thehive_run(s->th);
        pthread_mutex_lock(&s->mu);
        if (s->stop)
            break;
        /* at least every second, so that a stop is seen soon */
        wait = WF_MIN(WF_MAX(wait, 10), 1000);
        wf_cond_wait_ms(&s->cv, &s->mu, wait);
    }
    pthread_mutex_unlock(&s->mu);
    wf_thehive_finish(s->th, wf_now_ms() + s->conf->flush_timeout_ms);
    return NULL;
}

static int hive_open(const void *conf, const char *name, void **state, char *err, size_t errlen)
{
    const wf_thehive_conf_t *tc = conf;
    hive_sink_t *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->conf = tc;
    int rc = wf_thehive_new(tc, &s->th, err, errlen);
    if (rc) {
        free(s);
        return rc;
    }
    pthread_mutex_init(&s->mu, NULL);
    wf_cond_init_monotonic(&s->cv);
    if ((rc = pthread_create(&s->thread, NULL, hive_main, s)) != 0) {
        snprintf(err, errlen, "sink %s: cannot start its thread: %s", name, strerror(rc));
        pthread_cond_destroy(&s->cv);
        pthread_mutex_destroy(&s->mu);
        wf_thehive_free(s->th);
        free(s);
        return -rc;
    }
    *state = s;
    return 0;
}

static int hive_deliver(void *state, const wf_secev_t *evs, size_t n, size_t *done)
{
    hive_sink_t *s = state;
    for (size_t i = 0; i < n; i++)
        wf_thehive_add(s->th, &evs[i]); /* a full group table is counted by the sink itself */
    *done = n;
    return 0;
}

static void hive_close(void *state)
{
    hive_sink_t *s = state;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    wf_thehive_free(s->th);
    free(s);
}

const wf_sink_mod_t wf_sink_thehive = {
    .type = "thehive",
    .keys = wf_thehive_conf_keys,
    .conf_parse = hive_conf_parse,
    .conf_free = hive_conf_free,
    .open = hive_open,
    .deliver = hive_deliver,
    .reopen = NULL,
    .close = hive_close,
};
