/* The epoll event loop (see wafer/event.h). */
#include "wafer/event.h"
#include "wafer/core.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS 256
#define LOOP_MAX_HOOKS 8

struct wf_loop {
    int epfd;
    bool stop;
    uint64_t now;
    wf_timer_t **heap;
    size_t nheap, capheap;
    struct { wf_loop_hook_cb cb; void *data; } hooks[LOOP_MAX_HOOKS];
    int nhooks;
    wf_defer_t *defer_head, **defer_tail;
    int wakefd;
    wf_io_t wake_io;
    wf_loop_hook_cb wake_cb;
    void *wake_data;
    struct epoll_event events[LOOP_MAX_EVENTS];
};

static void loop_wake_read(wf_loop_t *loop, wf_io_t *io, unsigned ev)
{
    uint64_t v;
    while (read(io->fd, &v, sizeof(v)) == sizeof(v))
        ;
    if (loop->wake_cb)
        loop->wake_cb(loop, loop->wake_data);
}

int wf_loop_new(wf_loop_t **out)
{
    wf_loop_t *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wakefd < 0) {
        int e = errno;
        if (l->epfd >= 0)
            close(l->epfd);
        if (l->wakefd >= 0)
            close(l->wakefd);
        free(l);
        return -e;
    }
    l->defer_tail = &l->defer_head;
    l->wake_io.fd = -1;
    int rc = wf_loop_io_add(l, &l->wake_io, l->wakefd, WF_IO_READ, loop_wake_read, NULL);
    if (rc) {
        wf_loop_free(l);
        return rc;
    }
    wf_loop_update_time(l);
    *out = l;
    return 0;
}

void wf_loop_free(wf_loop_t *loop)
{
    if (!loop)
        return;
    close(loop->epfd);
    close(loop->wakefd);
    free(loop->heap);
    free(loop);
}

static uint32_t epoll_mask(unsigned mask)
{
    uint32_t e = EPOLLRDHUP;
    if (mask & WF_IO_READ)
        e |= EPOLLIN;
    if (mask & WF_IO_WRITE)
        e |= EPOLLOUT;
    if (mask & WF_IO_EDGE)
        e |= EPOLLET;
    return e;
}

int wf_loop_io_add(wf_loop_t *loop, wf_io_t *io, int fd, unsigned mask, wf_io_cb cb, void *data)
{
    struct epoll_event ev = { .events = epoll_mask(mask), .data.ptr = io };
    io->fd = fd;
    io->mask = mask;
    io->cb = cb;
    io->data = data;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        io->fd = -1;
        return -errno;
    }
    return 0;
}

int wf_loop_io_mod(wf_loop_t *loop, wf_io_t *io, unsigned mask)
{
    struct epoll_event ev = { .events = epoll_mask(mask), .data.ptr = io };
    if (io->fd < 0)
        return -EBADF;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
        return -errno;
    io->mask = mask;
    return 0;
}

void wf_loop_io_del(wf_loop_t *loop, wf_io_t *io)
{
    if (io->fd < 0)
        return;
    epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
    io->fd = -1;
}

void wf_loop_io_forget(wf_loop_t *loop, wf_io_t *io) { io->fd = -1; }

/* ---- timers: a binary min-heap of pointers; t->idx is its slot + 1 ---- */

static void heap_swap(wf_loop_t *l, size_t a, size_t b)
{
    wf_timer_t *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->idx = a + 1;
    l->heap[b]->idx = b + 1;
}

static void heap_up(wf_loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->when <= l->heap[i]->when)
            break;
        heap_swap(l, i, p);
        i = p;
    }
}

static void heap_down(wf_loop_t *l, size_t i)
{
    for (;;) {
        size_t c = 2 * i + 1, m = i;
        if (c < l->nheap && l->heap[c]->when < l->heap[m]->when)
            m = c;
        if (c + 1 < l->nheap && l->heap[c + 1]->when < l->heap[m]->when)
            m = c + 1;
        if (m == i)
            return;
        heap_swap(l, i, m);
        i = m;
    }
}

int wf_loop_timer_set(wf_loop_t *loop, wf_timer_t *t, uint64_t when_ms)
{
    if (t->idx) {
        uint64_t old = t->when;
        t->when = when_ms;
        if (when_ms < old)
            heap_up(loop, t->idx - 1);
        else
            heap_down(loop, t->idx - 1);
        return 0;
    }
    wf_timer_t **nh = wf_array_grow(loop->heap, &loop->capheap, loop->nheap, sizeof(*nh), 256);
    if (!nh)
        return -ENOMEM;
    loop->heap = nh;
    t->when = when_ms;
    loop->heap[loop->nheap] = t;
    t->idx = ++loop->nheap;
    heap_up(loop, loop->nheap - 1);
    return 0;
}

void wf_loop_timer_cancel(wf_loop_t *loop, wf_timer_t *t)
{
    if (!t->idx)
        return;
    size_t i = t->idx - 1;
    size_t last = --loop->nheap;
    t->idx = 0;
    if (i != last) {
        loop->heap[i] = loop->heap[last];
        loop->heap[i]->idx = i + 1;
        heap_down(loop, i);
        heap_up(loop, i);
    }
}

size_t wf_loop_timer_count(const wf_loop_t *loop) { return loop->nheap; }

uint64_t wf_loop_now(const wf_loop_t *loop) { return loop->now; }
uint64_t wf_loop_update_time(wf_loop_t *loop) { return loop->now = wf_now_ms(); }

int wf_loop_add_before_sleep(wf_loop_t *loop, wf_loop_hook_cb cb, void *data)
{
    if (loop->nhooks == LOOP_MAX_HOOKS)
        return -WF_ELIMIT;
    loop->hooks[loop->nhooks].cb = cb;
    loop->hooks[loop->nhooks].data = data;
    loop->nhooks++;
    return 0;
}

void wf_loop_defer(wf_loop_t *loop, wf_defer_t *d, wf_loop_hook_cb cb, void *data)
{
    if (d->queued)
        return;
    d->queued = true;
    d->cb = cb;
    d->data = data;
    d->next = NULL;
    *loop->defer_tail = d;
    loop->defer_tail = &d->next;
}

static void run_deferred(wf_loop_t *loop)
{
    while (loop->defer_head) {
        wf_defer_t *d = loop->defer_head;
        loop->defer_head = d->next;
        if (!loop->defer_head)
            loop->defer_tail = &loop->defer_head;
        d->queued = false;
        d->cb(loop, d->data);
    }
}

static void run_timers(wf_loop_t *loop)
{
    /* a bound per iteration so that timers re-armed to "now" cannot starve I/O */
    size_t budget = loop->nheap;
    while (loop->nheap && budget--) {
        wf_timer_t *t = loop->heap[0];
        if (t->when > loop->now)
            break;
        wf_loop_timer_cancel(loop, t);
        t->cb(loop, t);
    }
}

int wf_loop_run_once(wf_loop_t *loop, int timeout_ms)
{
    run_deferred(loop);
    for (int i = 0; i < loop->nhooks; i++)
        loop->hooks[i].cb(loop, loop->hooks[i].data);
    run_deferred(loop);
    if (loop->stop)
        return 0;
    int wait = timeout_ms;
    if (loop->nheap) {
        uint64_t now = wf_loop_update_time(loop);
        uint64_t when = loop->heap[0]->when;
        int tw = when <= now ? 0 : (when - now > 3600000 ? 3600000 : (int)(when - now));
        if (wait < 0 || tw < wait)
            wait = tw;
    }
    int n = epoll_wait(loop->epfd, loop->events, LOOP_MAX_EVENTS, wait);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        return -errno;
    }
    wf_loop_update_time(loop);
    for (int i = 0; i < n; i++) {
        wf_io_t *io = loop->events[i].data.ptr;
        uint32_t e = loop->events[i].events;
        if (io->fd < 0)
            continue; /* closed by an earlier event of this batch */
        unsigned m = 0;
        if (e & EPOLLIN)
            m |= WF_IO_READ;
        if (e & EPOLLOUT)
            m |= WF_IO_WRITE;
        if (e & (EPOLLHUP | EPOLLRDHUP))
            m |= WF_IO_HUP;
        if (e & EPOLLERR)
            m |= WF_IO_ERR;
        io->cb(loop, io, m);
    }
    run_deferred(loop);
    run_timers(loop);
    return n;
}

int wf_loop_run(wf_loop_t *loop)
{
    loop->stop = false;
    while (!loop->stop) {
        int rc = wf_loop_run_once(loop, -1);
        if (rc < 0)
            return rc;
    }
    run_deferred(loop);
    return 0;
}

void wf_loop_stop(wf_loop_t *loop) { loop->stop = true; }
bool wf_loop_stopped(const wf_loop_t *loop) { return loop->stop; }

void wf_loop_wake(wf_loop_t *loop)
{
    uint64_t one = 1;
    ssize_t r = write(loop->wakefd, &one, sizeof(one));
    (void)r;
}

void wf_loop_set_wake(wf_loop_t *loop, wf_loop_hook_cb cb, void *data)
{
    loop->wake_cb = cb;
    loop->wake_data = data;
}
