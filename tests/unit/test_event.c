/* The event loop: timer ordering, moving and cancelling, many deadlines,
 * deferred work, before-sleep hooks and file events. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/event.h"

#include <unistd.h>

static int fired[64];
static int nfired;

static void on_timer(wf_loop_t *loop, wf_timer_t *t) { fired[nfired++] = (int)(intptr_t)t->data; }

TEST(timers_fire_in_deadline_order)
{
    wf_loop_t *loop;
    CHECK_EQ_INT(wf_loop_new(&loop), 0);
    wf_timer_t t[5];
    uint64_t now = wf_loop_now(loop);
    int order[5] = { 30, 10, 50, 20, 40 };
    for (int i = 0; i < 5; i++) {
        wf_timer_init(&t[i], on_timer, (void *)(intptr_t)order[i]);
        CHECK_EQ_INT(wf_loop_timer_set(loop, &t[i], now + (uint64_t)order[i]), 0);
    }
    CHECK_EQ_INT(wf_loop_timer_count(loop), 5);
    nfired = 0;
    while (nfired < 5)
        wf_loop_run_once(loop, 200);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(fired[i], (i + 1) * 10);
    CHECK_EQ_INT(wf_loop_timer_count(loop), 0);
    CHECK(wf_loop_now(loop) >= now + 50);
    wf_loop_free(loop);
}

TEST(timers_move_and_cancel)
{
    wf_loop_t *loop;
    CHECK_EQ_INT(wf_loop_new(&loop), 0);
    wf_timer_t a, b, c;
    wf_timer_init(&a, on_timer, (void *)1);
    wf_timer_init(&b, on_timer, (void *)2);
    wf_timer_init(&c, on_timer, (void *)3);
    uint64_t now = wf_loop_now(loop);
    wf_loop_timer_set(loop, &a, now + 10);
    wf_loop_timer_set(loop, &b, now + 20);
    wf_loop_timer_set(loop, &c, now + 30);
    wf_loop_timer_set(loop, &a, now + 40); /* later */
    wf_loop_timer_set(loop, &c, now + 5);  /* earlier */
    wf_loop_timer_cancel(loop, &b);
    wf_loop_timer_cancel(loop, &b); /* twice is harmless */
    CHECK(!wf_timer_armed(&b));
    CHECK(wf_timer_armed(&a));
    nfired = 0;
    while (wf_loop_timer_count(loop))
        wf_loop_run_once(loop, 100);
    CHECK_EQ_INT(nfired, 2);
    CHECK_EQ_INT(fired[0], 3);
    CHECK_EQ_INT(fired[1], 1);
    wf_loop_free(loop);
}

/* Ten thousand deadlines set, moved and cancelled at random pop in order. */
static uint64_t last_when;
static int order_ok, popped;
static void on_many(wf_loop_t *loop, wf_timer_t *t)
{
    if (t->when < last_when)
        order_ok = 0;
    last_when = t->when;
    popped++;
}

TEST(timer_heap_many)
{
    wf_loop_t *loop;
    CHECK_EQ_INT(wf_loop_new(&loop), 0);
    enum { N = 10000 };
    static wf_timer_t t[N];
    uint64_t x = 88172645463325252ull, span = WF_MIN(wf_loop_now(loop), (uint64_t)100000); /* deadlines in the past: all due */
    for (int i = 0; i < N; i++) {
        wf_timer_init(&t[i], on_many, NULL);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        wf_loop_timer_set(loop, &t[i], 1 + x % span);
    }
    int cancelled = 0;
    for (int i = 0; i < N; i += 3) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        if (x & 1) {
            wf_loop_timer_cancel(loop, &t[i]);
            cancelled++;
        } else {
            wf_loop_timer_set(loop, &t[i], 1 + x % span);
        }
    }
    CHECK_EQ_INT(wf_loop_timer_count(loop), N - cancelled);
    order_ok = 1;
    last_when = 0;
    popped = 0;
    while (wf_loop_timer_count(loop))
        wf_loop_run_once(loop, 0);
    CHECK(order_ok);
    CHECK_EQ_INT(popped, N - cancelled);
    wf_loop_free(loop);
}

static int hook_calls, deferred_calls;
static void on_hook(wf_loop_t *loop, void *data) { hook_calls++; }
static void on_defer(wf_loop_t *loop, void *data) { deferred_calls += (int)(intptr_t)data; }

static char readbuf[16];
static ssize_t readn;
static void on_read(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    CHECK(ev & WF_IO_READ);
    readn = read(io->fd, readbuf, sizeof(readbuf));
    wf_loop_stop(loop);
}

TEST(io_hooks_and_defer)
{
    wf_loop_t *loop;
    CHECK_EQ_INT(wf_loop_new(&loop), 0);
    int p[2];
    CHECK_EQ_INT(pipe(p), 0);
    wf_io_t io = { .fd = -1 };
    CHECK_EQ_INT(wf_loop_io_add(loop, &io, p[0], WF_IO_READ | WF_IO_EDGE, on_read, NULL), 0);
    CHECK_EQ_INT(wf_loop_add_before_sleep(loop, on_hook, NULL), 0);
    wf_defer_t d = { 0 };
    wf_loop_defer(loop, &d, on_defer, (void *)5);
    wf_loop_defer(loop, &d, on_defer, (void *)5); /* queued once */
    CHECK_EQ_INT(write(p[1], "hi", 2), 2);
    hook_calls = deferred_calls = 0;
    CHECK_EQ_INT(wf_loop_run(loop), 0);
    CHECK_EQ_INT(readn, 2);
    CHECK(memcmp(readbuf, "hi", 2) == 0);
    CHECK(hook_calls >= 1);
    CHECK_EQ_INT(deferred_calls, 5);
    wf_loop_io_del(loop, &io);
    CHECK_EQ_INT(io.fd, -1);
    close(p[0]);
    close(p[1]);
    wf_loop_free(loop);
}

TEST(wake_from_same_thread_runs_callback)
{
    wf_loop_t *loop;
    CHECK_EQ_INT(wf_loop_new(&loop), 0);
    hook_calls = 0;
    wf_loop_set_wake(loop, on_hook, NULL);
    wf_loop_wake(loop);
    wf_loop_run_once(loop, 1000);
    CHECK_EQ_INT(hook_calls, 1);
    wf_loop_free(loop);
}

TEST_MAIN()
