/*
 * wafer event loop: epoll, timers and a before-sleep hook, in the manner of
 * redis ae.c, with intrusive handles so that nothing is allocated per event.
 *
 * One loop per thread; nothing here is thread-safe except wf_loop_wake().
 *
 * File events: a wf_io_t is embedded in the object that owns a descriptor.
 * Registration is edge-triggered (WF_IO_EDGE, the data path: register once,
 * track readiness in the owner until a call returns EAGAIN) or level-triggered
 * (listeners, eventfds). The callback gets the ready mask (WF_IO_READ,
 * WF_IO_WRITE, WF_IO_HUP, WF_IO_ERR).
 *
 * Timers: a wf_timer_t is embedded too; the loop keeps them in a binary
 * min-heap (O(log n) set/cancel, O(1) peek), so that ten thousand connection
 * deadlines cost nothing while they do not fire. A common pattern, which the
 * proxy uses: keep the real deadline in the owner and let the timer fire
 * early, then re-arm, instead of moving the timer on every read.
 *
 * Deferred work: wf_loop_defer() queues a callback to run after the current
 * batch of events, before the loop sleeps: objects that may still be named by
 * other events of the batch are freed there.
 */
#ifndef WAFER_EVENT_H
#define WAFER_EVENT_H

#include "wafer/common.h"
#include <stdbool.h>

typedef struct wf_loop wf_loop_t;

enum {
    WF_IO_READ = 1u << 0,
    WF_IO_WRITE = 1u << 1,
    WF_IO_HUP = 1u << 2,  /* peer closed (both directions or its write side) */
    WF_IO_ERR = 1u << 3,
    WF_IO_EDGE = 1u << 8, /* registration flag: edge-triggered */
};

typedef struct wf_io wf_io_t;
typedef void (*wf_io_cb)(wf_loop_t *loop, wf_io_t *io, unsigned events);

struct wf_io {
    int fd;           /* -1 when not registered */
    unsigned mask;    /* registered WF_IO_* (with WF_IO_EDGE) */
    wf_io_cb cb;
    void *data;       /* owner, for the callback */
};

typedef struct wf_timer wf_timer_t;
typedef void (*wf_timer_cb)(wf_loop_t *loop, wf_timer_t *t);

struct wf_timer {
    uint64_t when;    /* loop time in ms */
    size_t idx;       /* heap slot + 1; 0 when not armed */
    wf_timer_cb cb;
    void *data;
};

typedef void (*wf_loop_hook_cb)(wf_loop_t *loop, void *data);

/* Creates a loop. Returns 0 or -errno. */
int wf_loop_new(wf_loop_t **out);
void wf_loop_free(wf_loop_t *loop);

/* Registers fd for events (WF_IO_READ|WF_IO_WRITE, optionally WF_IO_EDGE). */
int wf_loop_io_add(wf_loop_t *loop, wf_io_t *io, int fd, unsigned mask, wf_io_cb cb, void *data);
int wf_loop_io_mod(wf_loop_t *loop, wf_io_t *io, unsigned mask);
/* Unregisters (the descriptor is not closed). Safe on an unregistered io. */
void wf_loop_io_del(wf_loop_t *loop, wf_io_t *io);
/* Unregisters io without a system call, for a descriptor about to be closed
 * (closing removes it from epoll). Events already fetched for it in this
 * batch are dropped. */
void wf_loop_io_forget(wf_loop_t *loop, wf_io_t *io);

static inline void wf_timer_init(wf_timer_t *t, wf_timer_cb cb, void *data)
{
    t->when = 0;
    t->idx = 0;
    t->cb = cb;
    t->data = data;
}
static inline bool wf_timer_armed(const wf_timer_t *t) { return t->idx != 0; }
/* Arms (or moves) the timer to fire at loop time `when_ms`. 0 or -ENOMEM. */
int wf_loop_timer_set(wf_loop_t *loop, wf_timer_t *t, uint64_t when_ms);
void wf_loop_timer_cancel(wf_loop_t *loop, wf_timer_t *t);
/* Number of armed timers. */
size_t wf_loop_timer_count(const wf_loop_t *loop);

/* Loop time in ms (monotonic, cached once per iteration). */
uint64_t wf_loop_now(const wf_loop_t *loop);
/* Refreshes the cached time from the clock. */
uint64_t wf_loop_update_time(wf_loop_t *loop);

/* Called before every sleep, in the order added. At most 8 hooks. */
int wf_loop_add_before_sleep(wf_loop_t *loop, wf_loop_hook_cb cb, void *data);

/* Runs cb(data) after the current batch of events (before sleeping). The
 * queue is bounded only by memory of its caller: a wf_defer_t is embedded. */
typedef struct wf_defer {
    struct wf_defer *next;
    wf_loop_hook_cb cb;
    void *data;
    bool queued;
} wf_defer_t;
void wf_loop_defer(wf_loop_t *loop, wf_defer_t *d, wf_loop_hook_cb cb, void *data);

/* Runs until wf_loop_stop(). Returns 0 or -errno on a fatal epoll error. */
int wf_loop_run(wf_loop_t *loop);
/* One iteration: waits at most timeout_ms (-1: until an event or timer). */
int wf_loop_run_once(wf_loop_t *loop, int timeout_ms);
void wf_loop_stop(wf_loop_t *loop);
bool wf_loop_stopped(const wf_loop_t *loop);

/* Thread-safe: wakes the loop from another thread; the loop then calls
 * the wake callback (set with wf_loop_set_wake) in its own thread. */
void wf_loop_wake(wf_loop_t *loop);
void wf_loop_set_wake(wf_loop_t *loop, wf_loop_hook_cb cb, void *data);

#endif
