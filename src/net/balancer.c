/*
 * Balancers (see wafer/upstream.h): each is a static const struct of hooks.
 *
 * Every pick skips members that are down, ejected, already tried by the
 * request, or on the other side of the primary/backup divide, so that
 * failover and retries need nothing from the balancer itself.
 */
#include "wafer/core.h"
#include "wafer/upstream.h"

#include <stdio.h>
#include <stdlib.h>

static bool candidate(const wf_upstream_member_t *m, const wf_upstream_tried_t *tried, bool backup, uint64_t now)
{
    return m->conf->backup == backup && !wf_upstream_tried(tried, m->index) && wf_upstream_member_up(m, now);
}

/* ---- smooth weighted round robin ----
 * nginx's algorithm: every candidate's current weight grows by its weight,
 * the largest wins and loses the total. Weights 5,1,1 give a a b a c a a:
 * the heavy member's turns are spread out, not bunched. The state is shared
 * by every worker, so the pick runs under the pool's lock (a few
 * instructions per member). */
static wf_upstream_member_t *rr_pick(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried, bool backup,
                                     uint64_t now)
{
    wf_upstream_member_t *best = NULL;
    int64_t total = 0;
    pthread_mutex_lock(&p->lock);
    for (size_t i = 0; i < p->n; i++) {
        wf_upstream_member_t *m = &p->m[i];
        if (!candidate(m, tried, backup, now))
            continue;
        m->cw += m->conf->weight;
        total += m->conf->weight;
        if (!best || m->cw > best->cw)
            best = m;
    }
    if (best)
        best->cw -= total;
    pthread_mutex_unlock(&p->lock);
    return best;
}

const wf_balancer_t wf_balancer_round_robin = {
    .name = "round_robin",
    .pick = rr_pick,
};

/* ---- least connections ----
 * The fewest active requests per unit of weight (a.active / a.weight <
 * b.active / b.weight, compared by cross-multiplying); ties go round the
 * pool from a rotating start so that an idle pool is not all sent to the
 * first member. Counts are atomics shared by the workers; a pick reads them
 * without a lock, so two workers may pick the same member at once: the
 * imbalance is one request, not a drift. */
static wf_upstream_member_t *lc_pick(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried, bool backup,
                                     uint64_t now)
{
    wf_upstream_member_t *best = NULL;
    int64_t best_a = 0;
    size_t start = atomic_fetch_add_explicit(&p->tie, 1, memory_order_relaxed) % p->n;
    for (size_t k = 0; k < p->n; k++) {
        wf_upstream_member_t *m = &p->m[(start + k) % p->n];
        if (!candidate(m, tried, backup, now))
            continue;
        int64_t a = atomic_load_explicit(&m->active, memory_order_relaxed);
        if (!best || a * (int64_t)best->conf->weight < best_a * (int64_t)m->conf->weight) {
            best = m;
            best_a = a;
        }
    }
    return best;
}

const wf_balancer_t wf_balancer_least_conn = {
    .name = "least_conn",
    .pick = lc_pick,
};

/* ---- consistent hashing ----
 * A ketama-style ring: each primary member puts 160 points per unit of
 * weight on a 64-bit circle, at hashes of "address#i", so a member's points
 * depend on its address alone. A key goes to the first point at or after
 * its hash; when that member is down or tried, to the next point's member.
 * Taking a member out (down, ejected, removed from the configuration) thus
 * moves only the keys it had; the others stay where they were. */

#define RING_POINTS_PER_WEIGHT 160
#define RING_MAX_POINTS (1u << 20)

typedef struct {
    uint64_t h;
    uint32_t member;
} ring_point_t;

typedef struct {
    ring_point_t *pt;
    size_t n;
} ring_t;

static int point_cmp(const void *a, const void *b)
{
    const ring_point_t *x = a, *y = b;
    if (x->h != y->h)
        return x->h < y->h ? -1 : 1;
    return x->member < y->member ? -1 : x->member > y->member;
}

static int ring_init(wf_upstream_pool_t *p)
{
    uint64_t total = 0;
    for (size_t i = 0; i < p->n; i++)
        if (!p->m[i].conf->backup)
            total += (uint64_t)RING_POINTS_PER_WEIGHT * p->m[i].conf->weight;
    /* heavy weights are scaled down together, so their ratios hold */
    uint64_t scale_num = total > RING_MAX_POINTS ? RING_MAX_POINTS : total, scale_den = total ? total : 1;
    ring_t *r = calloc(1, sizeof(*r));
    if (!r || !(r->pt = malloc(sizeof(*r->pt) * (scale_num + p->n)))) {
        free(r);
        return -ENOMEM;
    }
    for (size_t i = 0; i < p->n; i++) {
        const wf_upstream_member_conf_t *mc = p->m[i].conf;
        if (mc->backup)
            continue;
        uint64_t pts = (uint64_t)RING_POINTS_PER_WEIGHT * mc->weight * scale_num / scale_den;
        if (pts == 0)
            pts = 1;
        for (uint64_t k = 0; k < pts; k++) {
            char buf[300];
            int len = snprintf(buf, sizeof(buf), "%s#%llu", mc->address, (unsigned long long)k);
            r->pt[r->n++] = (ring_point_t){ wf_hash64(buf, (size_t)len, 0x6b6574616d61ull), (uint32_t)i };
        }
    }
    qsort(r->pt, r->n, sizeof(*r->pt), point_cmp);
    p->bal_state = r;
    return 0;
}

static void ring_free(wf_upstream_pool_t *p)
{
    ring_t *r = p->bal_state;
    if (r) {
        free(r->pt);
        free(r);
    }
    p->bal_state = NULL;
}

static wf_upstream_member_t *ring_pick(wf_upstream_pool_t *p, uint64_t key, const wf_upstream_tried_t *tried,
                                       bool backup, uint64_t now)
{
    const ring_t *r = p->bal_state;
    if (backup || !r || !r->n) /* backups are not on the ring: any of them will do */
        return rr_pick(p, key, tried, backup, now);
    size_t lo = 0, hi = r->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->pt[mid].h < key)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 0; k < r->n; k++) {
        wf_upstream_member_t *m = &p->m[r->pt[(lo + k) % r->n].member];
        if (candidate(m, tried, false, now))
            return m;
    }
    return NULL;
}

const wf_balancer_t wf_balancer_hash = {
    .name = "hash",
    .init = ring_init,
    .free = ring_free,
    .pick = ring_pick,
};

static const wf_balancer_t *const balancers[] = { &wf_balancer_round_robin, &wf_balancer_least_conn, &wf_balancer_hash };

const wf_balancer_t *wf_balancer_find(const char *name)
{
    for (size_t i = 0; i < WF_ARRAY_LEN(balancers); i++)
        if (!strcmp(balancers[i]->name, name))
            return balancers[i];
    return NULL;
}
