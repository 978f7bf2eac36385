/* Arenas, pools and bounded buffers (see wafer/core.h). */
#include "wafer/core.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

struct wf_arena_chunk {
    wf_arena_chunk_t *next;
    size_t size; /* usable bytes after the header */
    size_t used;
    _Alignas(16) char data[];
};

void wf_arena_init(wf_arena_t *a, size_t chunk_size, size_t limit)
{
    memset(a, 0, sizeof(*a));
    a->chunk_size = chunk_size ? chunk_size : 4096;
    a->limit = limit;
}

static wf_arena_chunk_t *arena_chunk_new(wf_arena_t *a, size_t need)
{
    size_t size = need > a->chunk_size ? need : a->chunk_size;
    if (a->limit && a->total + size > a->limit)
        return NULL;
    wf_arena_chunk_t *c = malloc(sizeof(*c) + size);
    if (!c)
        return NULL;
    c->next = NULL;
    c->size = size;
    c->used = 0;
    a->total += size;
    return c;
}

void *wf_arena_alloc(wf_arena_t *a, size_t n)
{
    n = WF_ALIGN_UP(n ? n : 1, 16);
    wf_arena_chunk_t *c = a->head;
    if (c && c->size - c->used >= n) {
        void *p = c->data + c->used;
        c->used += n;
        return p;
    }
    wf_arena_chunk_t *nc = arena_chunk_new(a, n);
    if (!nc)
        return NULL;
    nc->used = n;
    if (!a->first) {
        a->first = a->head = nc;
        return nc->data;
    }
    /* every chunk hangs off the first one, so that reset and free find it */
    nc->next = a->first->next;
    a->first->next = nc;
    /* an oversized chunk is full at once: keep bumping in the current head */
    if (n < a->chunk_size)
        a->head = nc;
    return nc->data;
}

void *wf_arena_calloc(wf_arena_t *a, size_t n)
{
    void *p = wf_arena_alloc(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *wf_arena_strndup(wf_arena_t *a, const char *s, size_t n)
{
    char *p = wf_arena_alloc(a, n + 1);
    if (p) {
        memcpy(p, s, n);
        p[n] = 0;
    }
    return p;
}

void wf_arena_reset(wf_arena_t *a)
{
    if (!a->first)
        return;
    wf_arena_chunk_t *c = a->first->next;
    while (c) {
        wf_arena_chunk_t *next = c->next;
        a->total -= c->size;
        free(c);
        c = next;
    }
    a->first->next = NULL;
    a->first->used = 0;
    a->head = a->first;
}

void wf_arena_free(wf_arena_t *a)
{
    wf_arena_reset(a);
    free(a->first);
    a->first = a->head = NULL;
    a->total = 0;
}

/* ---- pool ---- */

void wf_pool_init(wf_pool_t *p, size_t obj_size, size_t max)
{
    memset(p, 0, sizeof(*p));
    p->obj_size = WF_ALIGN_UP(obj_size < sizeof(void *) ? sizeof(void *) : obj_size, 16);
    p->max = max;
}

void *wf_pool_get(wf_pool_t *p)
{
    if (p->max && p->live >= p->max)
        return NULL;
    void *o = p->free_list;
    if (o) {
        p->free_list = *(void **)o;
        p->free_count--;
    } else {
        o = aligned_alloc(16, p->obj_size);
        if (!o)
            return NULL;
    }
    p->live++;
    return o;
}

void wf_pool_put(wf_pool_t *p, void *obj)
{
    if (!obj)
        return;
    *(void **)obj = p->free_list;
    p->free_list = obj;
    p->free_count++;
    p->live--;
}

void wf_pool_free(wf_pool_t *p)
{
    void *o = p->free_list;
    while (o) {
        void *next = *(void **)o;
        free(o);
        o = next;
    }
    p->free_list = NULL;
    p->free_count = 0;
}

/* ---- growable arrays ---- */

void *wf_array_grow(void *p, size_t *cap, size_t n, size_t elem, size_t first)
{
    if (n < *cap)
        return p;
    size_t nc = *cap ? *cap * 2 : first;
    if (nc <= *cap || nc > SIZE_MAX / elem)
        return NULL;
    void *np = realloc(p, nc * elem);
    if (np)
        *cap = nc;
    return np;
}

/* ---- buf ---- */

int wf_buf_init(wf_buf_t *b, size_t initial, size_t max)
{
    memset(b, 0, sizeof(*b));
    if (initial > max)
        initial = max;
    b->max = max;
    if (initial) {
        b->data = malloc(initial);
        if (!b->data)
            return -ENOMEM;
        b->cap = initial;
    }
    return 0;
}

void wf_buf_free(wf_buf_t *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

void wf_buf_compact(wf_buf_t *b)
{
    if (b->start == 0)
        return;
    size_t len = b->end - b->start;
    if (len)
        memmove(b->data, b->data + b->start, len);
    b->start = 0;
    b->end = len;
}

int wf_buf_reserve(wf_buf_t *b, size_t n)
{
    if (b->cap - b->end >= n)
        return 0;
    if (b->start && b->cap - (b->end - b->start) >= n) {
        wf_buf_compact(b);
        return 0;
    }
    size_t len = b->end - b->start;
    if (len + n > b->max)
        return -WF_ELIMIT;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap < len + n)
        ncap *= 2;
    if (ncap > b->max)
        ncap = b->max;
    char *nd = malloc(ncap);
    if (!nd)
        return -ENOMEM;
    if (len)
        memcpy(nd, b->data + b->start, len);
    free(b->data);
    b->data = nd;
    b->cap = ncap;
    b->start = 0;
    b->end = len;
    return 0;
}

int wf_buf_append(wf_buf_t *b, const void *p, size_t n)
{
    int rc = wf_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->end, p, n);
    b->end += n;
    return 0;
}

int wf_buf_appendf(wf_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -EINVAL;
    int rc = wf_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->end, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->end += (size_t)n;
    return 0;
}
