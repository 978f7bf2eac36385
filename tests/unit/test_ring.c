/*
 * The ring protocol without a GPU: a CPU thread plays the GPU's scheduler
 * over plain host memory (acquire seq, read the payload, write the verdict,
 * then its seq, then done with a release store), so that lost, duplicated or
 * reordered verdicts, flow control and hostile submissions are tested in CI.
 * The GPU scheduler itself is tested by tests/gpu/ring_test on a GPU machine.
 */
#include "test.h"

#include "wafer/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#define N_SUBMIT 200000

typedef struct {
    wf_ring_t *ring;
    char *base;
    wf_ring_layout_t l;
    wf_ring_opts_t o;
    atomic_int stop;
} fake_gpu_t;

/* Verdict: label = sum of tokens mod num_labels, probs[label] = 1. Batches whatever is ready. */
static void *fake_gpu(void *arg)
{
    fake_gpu_t *g = arg;
    uint64_t next = 0;
    while (!atomic_load(&g->stop)) {
        uint64_t n = next;
        for (;;) {
            wf_ring_slot_t *s = (wf_ring_slot_t *)(g->base + g->l.slots + g->l.slot_bytes * (n & (g->o.slots - 1)));
            if (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) != n + 1)
                break;
            wf_ring_verdict_t *v =
                (wf_ring_verdict_t *)(g->base + g->l.verdicts + g->l.verdict_bytes * (n & (g->o.slots - 1)));
            const int32_t *tk = (const int32_t *)(s + 1);
            long sum = 0;
            for (uint32_t j = 0; j < s->len; j++)
                sum += tk[j];
            float *p = (float *)(v + 1);
            for (uint32_t c = 0; c < g->o.num_labels; c++)
                p[c] = 0;
            v->label = (int32_t)(sum % g->o.num_labels);
            p[v->label] = 1;
            v->request_id = s->request_id;
            v->unit_id = s->unit_id;
            v->flags = 0;
            __atomic_store_n(&v->seq, n + 1, __ATOMIC_RELEASE);
            n++;
        }
        if (n != next) {
            __atomic_store_n((uint64_t *)(g->base + g->l.ctrl_done), n, __ATOMIC_RELEASE);
            next = n;
        }
    }
    return NULL;
}

static void *producer(void *arg)
{
    wf_ring_t *r = arg;
    int32_t tk[16];
    for (uint64_t k = 0; k < N_SUBMIT; k++) {
        int len = 1 + (int)(k % 16);
        for (int j = 0; j < len; j++)
            tk[j] = (int32_t)(k + j);
        while (wf_ring_submit(r, k * 3 + 1, (uint32_t)k, tk, (uint32_t)len) == -EAGAIN)
            ;
    }
    return NULL;
}

TEST(ring_layout_and_limits)
{
    wf_ring_opts_t bad = { 3, 16, 2 }, ok = { 64, 16, 2 };
    CHECK_EQ_INT((int)wf_ring_bytes(&bad), 0);
    size_t need = wf_ring_bytes(&ok);
    CHECK(need > 0);
    wf_ring_layout_t l;
    wf_ring_layout(&ok, &l);
    /* one writer per 128-byte line: done (GPU), status (GPU), stop (host) */
    CHECK(l.ctrl_done / 128 != l.ctrl_status / 128 && l.ctrl_status / 128 != l.ctrl_stop / 128);
    CHECK(l.slots % 128 == 0 && l.slot_bytes % 128 == 0 && l.verdicts % 128 == 0);
    wf_ring_region_t *rg;
    CHECK(need > 4096);
    CHECK_EQ_INT(wf_ring_region_new(WF_RING_MEM_HOST, 4096, &rg, NULL, 0), 0);
    wf_ring_t *r;
    CHECK_EQ_INT(wf_ring_new(rg, &ok, &r), -ENOSPC);
    wf_ring_region_free(rg);
    CHECK_EQ_INT(wf_ring_region_new(WF_RING_MEM_HOST, need, &rg, NULL, 0), 0);
    CHECK_EQ_INT(wf_ring_new(rg, &bad, &r), -EINVAL);
    CHECK_EQ_INT(wf_ring_new(rg, &ok, &r), 0);
    int32_t tk[17] = { 0 };
    CHECK_EQ_INT((int)wf_ring_submit(r, 1, 1, tk, 0), -EINVAL);
    CHECK_EQ_INT((int)wf_ring_submit(r, 1, 1, tk, 17), -EINVAL);
    for (int i = 0; i < 64; i++)
        CHECK_EQ_INT((int)wf_ring_submit(r, 1, 1, tk, 16), i);
    CHECK_EQ_INT((int)wf_ring_submit(r, 1, 1, tk, 16), -EAGAIN); /* full until verdicts are consumed */
    wf_ring_verdict_t v[4];
    CHECK_EQ_INT(wf_ring_poll(r, v, NULL, 4), 0);
    wf_ring_free(r);
    wf_ring_region_free(rg);
#ifndef WAFER_HAVE_CUDA
    char err[128];
    CHECK_EQ_INT(wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, 4096, &rg, err, sizeof(err)), -ENOTSUP);
    CHECK(strstr(err, "CUDA") != NULL);
#endif
}

TEST(ring_no_lost_or_duplicated_verdicts)
{
    wf_ring_opts_t o = { 256, 16, 3 };
    wf_ring_region_t *rg;
    CHECK_EQ_INT(wf_ring_region_new(WF_RING_MEM_HOST, wf_ring_bytes(&o), &rg, NULL, 0), 0);
    wf_ring_t *r;
    CHECK_EQ_INT(wf_ring_new(rg, &o, &r), 0);
    fake_gpu_t g = { r, wf_ring_region_host(rg), { 0 }, o, 0 };
    wf_ring_layout(&o, &g.l);
    pthread_t tg, tp;
    pthread_create(&tg, NULL, fake_gpu, &g);
    pthread_create(&tp, NULL, producer, r);
    wf_ring_verdict_t v[64];
    float probs[64 * 3];
    uint64_t got = 0, bad = 0;
    while (got < N_SUBMIT) {
        int k = wf_ring_poll(r, v, probs, 64);
        if (k < 0) {
            bad++;
            break;
        }
        for (int i = 0; i < k; i++, got++) {
            uint64_t n = got;
            int len = 1 + (int)(n % 16);
            long sum = 0;
            for (int j = 0; j < len; j++)
                sum += (long)(n + j);
            int label = (int)(sum % 3);
            if (v[i].seq != n + 1 || v[i].request_id != n * 3 + 1 || v[i].unit_id != (uint32_t)n ||
                v[i].label != label || probs[i * 3 + label] != 1.0f)
                bad++;
        }
    }
    pthread_join(tp, NULL);
    atomic_store(&g.stop, 1);
    pthread_join(tg, NULL);
    CHECK_EQ_INT((int)got, N_SUBMIT);
    CHECK_EQ_INT((int)bad, 0);
    CHECK_EQ_INT(wf_ring_poll(r, v, probs, 64), 0);
    CHECK_EQ_INT((int)wf_ring_submitted(r), N_SUBMIT);
    CHECK_EQ_INT((int)wf_ring_consumed(r), N_SUBMIT);
    wf_ring_free(r);
    wf_ring_region_free(rg);
}

TEST_MAIN()
