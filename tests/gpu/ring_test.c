/*
 * The ring and the GPU's scheduler, on a GPU machine (tests/gpu/run.sh; skipped, exit 77, without a GPU).
 *
 *   ring_test [SUBMISSIONS]        checks (default 1000000 submissions)
 *   ring_test bench MODEL LEN      self-scheduled latency and throughput of a random model
 *                                  (tests/common/rand_model.h: mobilebert, bert-small)
 *
 * Checks: a GPU region exports as a dma-buf; over host-mapped memory, with the
 * bert_tiny fixture, the scheduler returns exactly one verdict per submission,
 * in order, with the submission's request and unit ids, probabilities within
 * 2e-2 of the CPU backend's for the same tokens, invalid submissions flagged;
 * the host makes no CUDA call while they flow; the status word stays 0.
 */
#include "rand_model.h"
#include "timing.h"
#include "infer/cuda_module.h"
#include "wafer/infer.h"
#include "wafer/ring.h"

#include <errno.h>
#include <pthread.h>

#define POOL 64
#define MAXL 32

static int fails;
#define CHECKT(c, ...)                                                                 \
    do {                                                                               \
        if (!(c)) {                                                                    \
            printf("FAIL: " __VA_ARGS__);                                              \
            printf("\n");                                                              \
            fails++;                                                                   \
        }                                                                              \
    } while (0)

typedef struct {
    wf_ring_t *ring;
    uint64_t n;
    int32_t pool[POOL][MAXL];
    int plen[POOL];
    int vocab;
} prod_t;

/* Submission k: tokens of pool[k % POOL]; every 99991st gets an out-of-vocabulary id (must come back invalid). */
static void *producer(void *arg)
{
    prod_t *p = arg;
    int32_t bad[MAXL];
    for (uint64_t k = 0; k < p->n; k++) {
        const int32_t *tk = p->pool[k % POOL];
        int len = p->plen[k % POOL];
        if (k % 99991 == 7) {
            memcpy(bad, tk, sizeof(int32_t) * len);
            bad[len / 2] = p->vocab + 5;
            tk = bad;
        }
        while (wf_ring_submit(p->ring, k * 7 + 3, (uint32_t)(k & 0xffff), tk, (uint32_t)len) == -EAGAIN)
            ;
    }
    return NULL;
}

static void test_dmabuf(void)
{
    wf_ring_region_t *r;
    char err[256] = "";
    int rc = wf_ring_region_new(WF_RING_MEM_GPU_DMABUF, 1 << 20, &r, err, sizeof(err));
    if (rc == 0) {
        printf("dma-buf region: %zu bytes of GPU memory at %p exported as dma-buf fd %d\n", wf_ring_region_size(r),
               wf_ring_region_device(r), wf_ring_region_dmabuf_fd(r));
        CHECKT(wf_ring_region_dmabuf_fd(r) >= 0 && wf_ring_region_host(r) == NULL, "dma-buf region fields");
        wf_ring_region_free(r);
    } else {
        printf("dma-buf region: not available: %s (%d)\n", err, rc);
        fails++;
    }
}

static int soak(uint64_t N)
{
    char dir[1200];
    const char *src = getenv("WAFER_SRC");
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/parity/bert_tiny", src ? src : WAFER_SOURCE_DIR);
    wf_model_t *m;
    wf_err_t err = { { 0 } };
    if (wf_model_load(dir, &m, &err) != WF_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    int C = wf_model_get_config(m)->num_labels, vocab = wf_model_get_config(m)->vocab_size;
    static prod_t p;
    p.vocab = vocab;
    const int32_t *ptrs[POOL];
    for (int i = 0; i < POOL; i++) {
        p.plen[i] = 2 + i % (MAXL - 1);
        p.pool[i][0] = 2;
        for (int j = 1; j < p.plen[i] - 1; j++)
            p.pool[i][j] = 5 + (int)((rm_frand() + 1.0f) * 0.5f * (vocab - 6));
        p.pool[i][p.plen[i] - 1] = 3;
        ptrs[i] = p.pool[i];
    }
    /* reference: the CPU backend on the same tokens */
    float ref[POOL * WF_MAX_LABELS];
    wf_session_opts_t oc = { "cpu", 4, POOL, POOL * MAXL };
    wf_session_t *cpu;
    if (wf_session_new(m, &oc, &cpu, &err) != WF_OK || wf_session_run(cpu, ptrs, p.plen, POOL, ref, NULL) != WF_OK) {
        printf("FAIL: cpu reference: %s\n", err.msg);
        return 1;
    }
    wf_session_free(cpu);

    int max_batch = 256;
    wf_session_opts_t og = { "cuda", 1, max_batch, max_batch * MAXL };
    wf_session_t *gpu;
    if (wf_session_new(m, &og, &gpu, &err) != WF_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    wf_ring_opts_t ro = { 4096, MAXL, (uint32_t)C };
    wf_ring_region_t *rg;
    char e[256];
    if (wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &rg, e, sizeof(e)) != 0) {
        printf("FAIL: %s\n", e);
        return 1;
    }
    wf_ring_t *ring;
    if (wf_ring_new(rg, &ro, &ring) != 0) {
        printf("FAIL: ring\n");
        return 1;
    }
    wf_ring_sched_opts_t so = { max_batch, 20000 };
    wf_ring_sched_t *sch;
    double t_start = tm_now_s();
    if (wf_ring_sched_start(gpu, ring, &so, &sch, e, sizeof(e)) != WF_OK) {
        printf("FAIL: %s\n", e);
        return 1;
    }
    printf("scheduler started in %.2f s (device graphs for every bucket)\n", tm_now_s() - t_start);
    uint64_t calls0 = wf_cuda_host_calls();
    p.ring = ring;
    p.n = N;
    pthread_t th;
    double t0 = tm_now_s();
    pthread_create(&th, NULL, producer, &p);
    static wf_ring_verdict_t v[4096];
    static float probs[4096 * WF_MAX_LABELS];
    uint64_t got = 0, invalid = 0, bad_ids = 0, bad_probs = 0, bad_label = 0;
    double max_dp = 0;
    double last = tm_now_s();
    while (got < N) {
        int k = wf_ring_poll(ring, v, probs, 4096);
        if (k < 0) {
            printf("FAIL: poll: %d (a verdict out of order or duplicated)\n", k);
            fails++;
            break;
        }
        if (k == 0) {
            uint32_t d, st = wf_ring_status(ring, &d);
            if (st != 0 || tm_now_s() - last > 10) {
                printf("FAIL: stalled at %llu verdicts (status %u detail %u)\n", (unsigned long long)got, st, d);
                fails++;
                break;
            }
            continue;
        }
        last = tm_now_s();
        for (int i = 0; i < k; i++, got++) {
            uint64_t n = got;
            if (v[i].seq != n + 1 || v[i].request_id != n * 7 + 3 || v[i].unit_id != (uint32_t)(n & 0xffff))
                bad_ids++;
            if (n % 99991 == 7) {
                invalid += (v[i].flags & WF_RING_V_INVALID) != 0;
                continue;
            }
            if (v[i].flags)
                bad_ids++;
            const float *r = ref + (n % POOL) * C, *q = probs + (size_t)i * C;
            int best = 0;
            for (int c = 0; c < C; c++) {
                double d = fabs((double)r[c] - q[c]);
                if (d > max_dp)
                    max_dp = d;
                if (d > 2e-2 || isnan(q[c]))
                    bad_probs++;
                if (r[c] > r[best])
                    best = c;
            }
            if (v[i].label != best) {
                double second = -1;
                for (int c = 0; c < C; c++)
                    if (c != best && r[c] > second)
                        second = r[c];
                if (r[best] - second > 2e-2)
                    bad_label++;
            }
        }
    }
    double t = tm_now_s() - t0;
    uint64_t calls1 = wf_cuda_host_calls();
    pthread_join(th, NULL);
    uint32_t st = wf_ring_sched_stop(sch);
    uint64_t expect_invalid = N > 7 ? (N - 8) / 99991 + 1 : 0;
    printf("soak: %llu submissions, %llu verdicts in %.2f s (%.0f/s), %llu with wrong seq/ids/flags, "
           "%llu invalid flagged (expected %llu), max |p_gpu - p_cpu| %.2e, %llu probs over 2e-2, %llu labels off; "
           "host CUDA calls while running: %llu; status %u\n",
           (unsigned long long)N, (unsigned long long)got, t, got / t, (unsigned long long)bad_ids,
           (unsigned long long)invalid, (unsigned long long)expect_invalid, max_dp, (unsigned long long)bad_probs,
           (unsigned long long)bad_label, (unsigned long long)(calls1 - calls0), st);
    CHECKT(got == N, "lost verdicts");
    CHECKT(bad_ids == 0, "verdicts with wrong ids");
    CHECKT(invalid == expect_invalid, "invalid submissions");
    CHECKT(bad_probs == 0 && bad_label == 0, "probabilities");
    CHECKT(calls1 == calls0, "host CUDA calls while the ring runs");
    CHECKT(st == 0, "status word");
    CHECKT(wf_ring_poll(ring, v, probs, 4096) == 0, "extra verdicts");
    wf_ring_free(ring);
    wf_ring_region_free(rg);
    wf_session_free(gpu);
    wf_model_free(m);
    return 0;
}

/* Self-scheduled latency (one submission in flight) and throughput (ring kept full) of a random model. */
static int bench(const char *kind, int L)
{
    char dir[] = "/tmp/wafer-ring-bench-XXXXXX";
    if (!mkdtemp(dir) || rm_write_model(dir, kind) != 0)
        return 2;
    wf_model_t *m;
    wf_err_t err = { { 0 } };
    if (wf_model_load(dir, &m, &err) != WF_OK)
        return 2;
    int C = wf_model_get_config(m)->num_labels, vocab = wf_model_get_config(m)->vocab_size;
    int max_batch = 4096;
    wf_session_opts_t og = { "cuda", 1, max_batch, max_batch * L };
    wf_session_t *gpu;
    if (wf_session_new(m, &og, &gpu, &err) != WF_OK) {
        printf("FAIL: %s\n", err.msg);
        return 2;
    }
    wf_ring_opts_t ro = { 16384, (uint32_t)L, (uint32_t)C };
    wf_ring_region_t *rg;
    char e[256];
    wf_ring_t *ring;
    if (wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &rg, e, sizeof(e)) != 0 ||
        wf_ring_new(rg, &ro, &ring) != 0) {
        printf("FAIL: ring %s\n", e);
        return 2;
    }
    int32_t *tk = malloc(sizeof(int32_t) * L);
    for (int j = 0; j < L; j++)
        tk[j] = 5 + (int)((rm_frand() + 1.0f) * 0.5f * (vocab - 6));
    static wf_ring_verdict_t v[16384];
    static double lat[20000];
    const int batches[] = { 1, 64, 1024, 4096 };
    for (size_t bi = 0; bi < sizeof(batches) / sizeof(batches[0]); bi++) {
        int B = batches[bi];
        /* wait 0 for batch 1 (latency), 200 us otherwise (lets a burst fill the batch) */
        wf_ring_sched_opts_t so = { B, B == 1 ? 0 : 200000 };
        wf_ring_sched_t *sch;
        if (wf_ring_sched_start(gpu, ring, &so, &sch, e, sizeof(e)) != WF_OK) {
            printf("FAIL: %s\n", e);
            return 2;
        }
        uint64_t calls0 = wf_cuda_host_calls();
        /* rounds of B submissions: latency of each round from its first submit to its last verdict */
        int rounds = 0, got = 0;
        double t0 = tm_now_s();
        while ((tm_now_s() - t0 < 0.5 || rounds < 20) && rounds < 20000) {
            double a = tm_now_s();
            for (int i = 0; i < B; i++)
                while (wf_ring_submit(ring, (uint64_t)i, 0, tk, (uint32_t)L) == -EAGAIN)
                    ;
            got = 0;
            double w0 = tm_now_s();
            while (got < B) {
                int k = wf_ring_poll(ring, v, NULL, 16384);
                if (k < 0 || wf_ring_status(ring, NULL) || tm_now_s() - w0 > 10) {
                    printf("FAIL: poll %d status %u\n", k, wf_ring_status(ring, NULL));
                    return 2;
                }
                got += k;
            }
            lat[rounds++] = tm_now_s() - a;
        }
        double t = tm_now_s() - t0;
        uint64_t calls = wf_cuda_host_calls() - calls0;
        uint32_t st = wf_ring_sched_stop(sch);
        qsort(lat, rounds, sizeof(double), tm_cmp_double);
        printf("| wafer ring (GPU-scheduled) | %s | %d | %d | %.3f | %.3f | %.0f | host CUDA calls %llu, status %u |\n",
               kind, L, B, lat[rounds / 2] * 1e3, lat[(int)(rounds * 0.99)] * 1e3, (double)B * rounds / t,
               (unsigned long long)calls, st);
        fflush(stdout);
    }
    wf_ring_free(ring);
    wf_ring_region_free(rg);
    wf_session_free(gpu);
    wf_model_free(m);
    rm_remove_model(dir);
    free(tk);
    return 0;
}

int main(int argc, char **argv)
{
    char why[256];
    if (!wf_cuda_probe(why, sizeof(why))) {
        printf("ring_test: skipped: %s\n", why);
        return 77;
    }
    if (argc > 1 && !strcmp(argv[1], "bench"))
        return bench(argc > 2 ? argv[2] : "mobilebert", argc > 3 ? atoi(argv[3]) : 128);
    uint64_t N = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    test_dmabuf();
    soak(N);
    printf("ring_test: %s\n", fails ? "FAIL" : "ok");
    return fails ? 1 : 0;
}
