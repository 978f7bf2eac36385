/*
 * The ring and the GPU's scheduler, on a GPU machine (tests/gpu/run.sh; skipped, exit 77, without a GPU).
 *
 *   ring_test [SUBMISSIONS [RINGS]] checks (default 1000000 submissions, 4 rings)
 *   ring_test probe WHAT           which CUDA work waits for a running scheduler (region, session, run, sched,
 *                                  free)
 *   ring_test bench MODEL LEN      self-scheduled latency and throughput of a random model
 *                                  (tests/common/rand_model.h: mobilebert, bert-small)
 *
 * Checks: a GPU region exports as a dma-buf; over host-mapped memory, with the
 * bert_tiny fixture, the scheduler returns exactly one verdict per submission,
 * in order, with the submission's request and unit ids, probabilities within
 * 2e-2 of the CPU backend's for the same tokens, invalid submissions flagged;
 * the host makes no CUDA call while they flow; the status word stays 0. Then the
 * same with RINGS rings served by one scheduler, a producer and a consumer thread
 * per ring all running at once (SUBMISSIONS / RINGS each), request ids carrying
 * the ring's index (a verdict in the wrong ring is a wrong id); a ring given twice
 * and rings of different shapes are refused, and so is an unknown scheduler mode.
 * WAFER_RING_SCHED=launch|while picks the scheduler variant (unset: the default).
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

/* The scheduler variant this process runs (WAFER_RING_SCHED=launch|while; unset: the library's default). */
static const char *sched_name(void)
{
    const char *m = getenv("WAFER_RING_SCHED");
    return m && *m ? m : "default";
}
#define CHECKT(c, ...)                                                                 \
    do {                                                                               \
        if (!(c)) {                                                                    \
            printf("FAIL: " __VA_ARGS__);                                              \
            printf("\n");                                                              \
            fails++;                                                                   \
        }                                                                              \
    } while (0)

/* The soak's submissions: tokens of pool[k % POOL]; the CPU backend's probabilities for each in ref. */
static int32_t g_pool[POOL][MAXL];
static int g_plen[POOL];
static float g_ref[POOL * WF_MAX_LABELS];
static int g_C, g_vocab;

/* One ring of a soak: its producer thread and its consumer thread, and what the consumer found. */
typedef struct {
    wf_ring_t *ring;
    uint64_t idx, n;
    uint64_t got, invalid, bad_ids, bad_probs, bad_label;
    double max_dp;
    int broken; /* poll error or stall */
} lane_t;

static uint64_t req_id(const lane_t *l, uint64_t k) { return l->idx << 48 | (k * 7 + 3); }

/* Submission k: tokens of pool[k % POOL]; every 99991st gets an out-of-vocabulary id (must come back invalid). */
static void *producer(void *arg)
{
    lane_t *l = arg;
    int32_t bad[MAXL];
    for (uint64_t k = 0; k < l->n; k++) {
        const int32_t *tk = g_pool[k % POOL];
        int len = g_plen[k % POOL];
        if (k % 99991 == 7) {
            memcpy(bad, tk, sizeof(int32_t) * len);
            bad[len / 2] = g_vocab + 5;
            tk = bad;
        }
        while (wf_ring_submit(l->ring, req_id(l, k), (uint32_t)(k & 0xffff), tk, (uint32_t)len) == -EAGAIN)
            ;
    }
    return NULL;
}

/* Takes every verdict of the lane's ring, in order, and checks each against its submission. */
static void *consumer(void *arg)
{
    lane_t *l = arg;
    int C = g_C;
    wf_ring_verdict_t *v = malloc(sizeof(*v) * 4096);
    float *probs = malloc(sizeof(float) * 4096 * WF_MAX_LABELS);
    double last = tm_now_s();
    while (l->got < l->n) {
        int k = wf_ring_poll(l->ring, v, probs, 4096);
        if (k < 0) {
            printf("FAIL: ring %llu: poll: %d (a verdict out of order or duplicated)\n", (unsigned long long)l->idx, k);
            l->broken = 1;
            break;
        }
        if (k == 0) {
            uint32_t d, st = wf_ring_status(l->ring, &d);
            if (st != 0 || tm_now_s() - last > 10) {
                printf("FAIL: ring %llu: stalled at %llu verdicts (status %u detail %u)\n", (unsigned long long)l->idx,
                       (unsigned long long)l->got, st, d);
                l->broken = 1;
                break;
            }
            continue;
        }
        last = tm_now_s();
        for (int i = 0; i < k; i++, l->got++) {
            uint64_t n = l->got;
            if (v[i].seq != n + 1 || v[i].request_id != req_id(l, n) || v[i].unit_id != (uint32_t)(n & 0xffff))
                l->bad_ids++;
            if (n % 99991 == 7) {
                l->invalid += (v[i].flags & WF_RING_V_INVALID) != 0;
                continue;
            }
            if (v[i].flags)
                l->bad_ids++;
            const float *r = g_ref + (n % POOL) * C, *q = probs + (size_t)i * C;
            int best = 0;
            for (int c = 0; c < C; c++) {
                double d = fabs((double)r[c] - q[c]);
                if (d > l->max_dp)
                    l->max_dp = d;
                if (d > 2e-2 || isnan(q[c]))
                    l->bad_probs++;
                if (r[c] > r[best])
                    best = c;
            }
            if (v[i].label != best) {
                double second = -1;
                for (int c = 0; c < C; c++)
                    if (c != best && r[c] > second)
                        second = r[c];
                if (r[best] - second > 2e-2)
                    l->bad_label++;
            }
        }
    }
    free(v);
    free(probs);
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

static wf_model_t *g_model;

/* The bert_tiny fixture, the pool of submissions and the CPU backend's reference probabilities. */
static int soak_setup(void)
{
    char dir[1200];
    const char *src = getenv("WAFER_SRC");
    snprintf(dir, sizeof(dir), "%s/tests/fixtures/parity/bert_tiny", src ? src : WAFER_SOURCE_DIR);
    wf_err_t err = { { 0 } };
    if (wf_model_load(dir, &g_model, &err) != WF_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    g_C = wf_model_get_config(g_model)->num_labels;
    g_vocab = wf_model_get_config(g_model)->vocab_size;
    const int32_t *ptrs[POOL];
    for (int i = 0; i < POOL; i++) {
        g_plen[i] = 2 + i % (MAXL - 1);
        g_pool[i][0] = 2;
        for (int j = 1; j < g_plen[i] - 1; j++)
            g_pool[i][j] = 5 + (int)((rm_frand() + 1.0f) * 0.5f * (g_vocab - 6));
        g_pool[i][g_plen[i] - 1] = 3;
        ptrs[i] = g_pool[i];
    }
    wf_session_opts_t oc = { "cpu", 4, POOL, POOL * MAXL };
    wf_session_t *cpu;
    if (wf_session_new(g_model, &oc, &cpu, &err) != WF_OK ||
        wf_session_run(cpu, ptrs, g_plen, POOL, g_ref, NULL) != WF_OK) {
        printf("FAIL: cpu reference: %s\n", err.msg);
        return 1;
    }
    wf_session_free(cpu);
    return 0;
}

/* nrings rings, one scheduler over all of them, a producer and a consumer thread per ring, n submissions each,
 * all at once. Every ring, region and session is made before the scheduler starts; it is stopped before any is
 * freed. */
static int soak(uint64_t n, int nrings)
{
    int max_batch = 256;
    wf_session_opts_t og = { "cuda", 1, max_batch, max_batch * MAXL };
    wf_session_t *gpu;
    wf_err_t err = { { 0 } };
    if (wf_session_new(g_model, &og, &gpu, &err) != WF_OK) {
        printf("FAIL: %s\n", err.msg);
        return 1;
    }
    wf_ring_opts_t ro = { 4096, MAXL, (uint32_t)g_C };
    wf_ring_region_t *rg[64];
    wf_ring_t *ring[64];
    static lane_t lanes[64];
    char e[256];
    for (int r = 0; r < nrings; r++) {
        if (wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &rg[r], e, sizeof(e)) != 0 ||
            wf_ring_new(rg[r], &ro, &ring[r]) != 0) {
            printf("FAIL: ring %d: %s\n", r, e);
            return 1;
        }
        memset(&lanes[r], 0, sizeof(lanes[r]));
        lanes[r].ring = ring[r];
        lanes[r].idx = (uint64_t)r;
        lanes[r].n = n;
    }
    wf_ring_sched_opts_t so = { max_batch, 20000, WF_RING_SCHED_DEFAULT };
    wf_ring_sched_t *sch;
    if (nrings > 1) {
        /* refused: a ring twice (it would have two consumers), rings of different shapes */
        wf_ring_t *twice[2] = { ring[0], ring[0] };
        CHECKT(wf_ring_sched_start_multi(gpu, twice, 2, &so, &sch, e, sizeof(e)) == WF_ERR_INVALID, "ring twice");
        wf_ring_sched_opts_t bad = so;
        bad.mode = 7;
        CHECKT(wf_ring_sched_start_multi(gpu, ring, nrings, &bad, &sch, e, sizeof(e)) == WF_ERR_INVALID,
               "an unknown scheduler mode");
        wf_ring_opts_t ro2 = { 2048, MAXL, (uint32_t)g_C };
        wf_ring_region_t *rg2;
        wf_ring_t *other;
        if (wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro2), &rg2, e, sizeof(e)) == 0 &&
            wf_ring_new(rg2, &ro2, &other) == 0) {
            wf_ring_t *mixed[2] = { ring[0], other };
            CHECKT(wf_ring_sched_start_multi(gpu, mixed, 2, &so, &sch, e, sizeof(e)) == WF_ERR_INVALID,
                   "rings of different shapes");
            wf_ring_free(other);
            wf_ring_region_free(rg2);
        }
    }
    double t_start = tm_now_s();
    if (wf_ring_sched_start_multi(gpu, ring, nrings, &so, &sch, e, sizeof(e)) != WF_OK) {
        printf("FAIL: %s\n", e);
        return 1;
    }
    printf("scheduler (%s) over %d ring%s started in %.2f s (graphs for every bucket)\n", sched_name(), nrings,
           nrings == 1 ? "" : "s", tm_now_s() - t_start);
    uint64_t calls0 = wf_cuda_host_calls();
    pthread_t pt[64], ct[64];
    double t0 = tm_now_s();
    for (int r = 0; r < nrings; r++) {
        pthread_create(&ct[r], NULL, consumer, &lanes[r]);
        pthread_create(&pt[r], NULL, producer, &lanes[r]);
    }
    for (int r = 0; r < nrings; r++)
        pthread_join(ct[r], NULL);
    double t = tm_now_s() - t0;
    uint64_t calls1 = wf_cuda_host_calls();
    uint64_t got = 0, invalid = 0, bad_ids = 0, bad_probs = 0, bad_label = 0, least = UINT64_MAX;
    double max_dp = 0;
    int broken = 0;
    for (int r = 0; r < nrings; r++) {
        lane_t *l = &lanes[r];
        if (l->broken)
            pthread_cancel(pt[r]); /* a producer stuck on a full ring */
        pthread_join(pt[r], NULL);
        got += l->got;
        least = l->got < least ? l->got : least;
        invalid += l->invalid;
        bad_ids += l->bad_ids;
        bad_probs += l->bad_probs;
        bad_label += l->bad_label;
        max_dp = l->max_dp > max_dp ? l->max_dp : max_dp;
        broken |= l->broken;
    }
    uint32_t st = wf_ring_sched_stop(sch);
    uint64_t expect_invalid = (n > 7 ? (n - 8) / 99991 + 1 : 0) * (uint64_t)nrings;
    printf("soak, %d ring%s: %llu submissions each, %llu verdicts in %.2f s (%.0f/s; fewest on one ring %llu), "
           "%llu with wrong seq/ids/flags, %llu invalid flagged (expected %llu), max |p_gpu - p_cpu| %.2e, %llu probs "
           "over 2e-2, %llu labels off; host CUDA calls while running: %llu; status %u\n",
           nrings, nrings == 1 ? "" : "s", (unsigned long long)n, (unsigned long long)got, t, got / t,
           (unsigned long long)least, (unsigned long long)bad_ids, (unsigned long long)invalid,
           (unsigned long long)expect_invalid, max_dp, (unsigned long long)bad_probs, (unsigned long long)bad_label,
           (unsigned long long)(calls1 - calls0), st);
    CHECKT(!broken && got == n * (uint64_t)nrings, "lost verdicts");
    CHECKT(bad_ids == 0, "verdicts with wrong ids");
    CHECKT(invalid == expect_invalid, "invalid submissions");
    CHECKT(bad_probs == 0 && bad_label == 0, "probabilities");
    CHECKT(calls1 == calls0, "host CUDA calls while the ring runs");
    CHECKT(st == 0, "status word");
    wf_ring_verdict_t v[8];
    for (int r = 0; r < nrings; r++) {
        CHECKT(wf_ring_poll(ring[r], v, NULL, 8) == 0, "extra verdicts");
        wf_ring_free(ring[r]);
        wf_ring_region_free(rg[r]);
    }
    wf_session_free(gpu);
    return 0;
}

/* Which CUDA work waits for a running scheduler (the multi-worker start-up hang): starts one scheduler, then
 * does WHAT while it spins; a watchdog reports it blocked after 5 s. Run each in its own process (run.sh). */
static volatile int probe_done;
static void *probe_watchdog(void *arg)
{
    const char *what = arg;
    for (int i = 0; i < 500 && !probe_done; i++)
        usleep(10000);
    if (!probe_done) {
        printf("probe %s: BLOCKED for 5 s while a scheduler runs\n", what);
        fflush(stdout);
        _exit(3);
    }
    return NULL;
}

static int probe(const char *what)
{
    if (soak_setup())
        return 2;
    int max_batch = 64;
    wf_session_opts_t og = { "cuda", 1, max_batch, max_batch * MAXL };
    wf_session_t *gpu, *gpu2 = NULL, *gpu3 = NULL;
    wf_err_t err = { { 0 } };
    wf_ring_opts_t ro = { 1024, MAXL, (uint32_t)g_C };
    wf_ring_region_t *rg, *rg2, *rg3 = NULL;
    wf_ring_t *ring, *ring2;
    char e[256];
    if (wf_session_new(g_model, &og, &gpu, &err) != WF_OK || wf_session_new(g_model, &og, &gpu2, &err) != WF_OK ||
        wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &rg, e, sizeof(e)) ||
        wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, wf_ring_bytes(&ro), &rg2, e, sizeof(e)) ||
        wf_ring_new(rg, &ro, &ring) || wf_ring_new(rg2, &ro, &ring2)) {
        printf("FAIL: probe setup: %s %s\n", err.msg, e);
        return 2;
    }
    wf_ring_sched_opts_t so = { max_batch, 0, WF_RING_SCHED_DEFAULT };
    wf_ring_sched_t *sch, *sch2 = NULL;
    if (wf_ring_sched_start(gpu, ring, &so, &sch, e, sizeof(e)) != WF_OK) {
        printf("FAIL: %s\n", e);
        return 2;
    }
    pthread_t wd;
    pthread_create(&wd, NULL, probe_watchdog, (void *)what);
    double t0 = tm_now_s();
    int rc = 0;
    if (!strcmp(what, "region")) /* cudaHostAlloc(mapped) + cudaHostGetDevicePointer */
        rc = wf_ring_region_new(WF_RING_MEM_HOST_MAPPED, 1 << 20, &rg3, e, sizeof(e));
    else if (!strcmp(what, "session")) /* stream, cuBLASLt handle, cudaMalloc, weight upload, cudaHostAlloc */
        rc = wf_session_new(g_model, &og, &gpu3, &err) == WF_OK ? 0 : -1;
    else if (!strcmp(what, "run")) { /* a host-launched run of another session: warm-up, capture, instantiate, sync */
        int32_t tk[3] = { 2, 7, 3 };
        const int32_t *ids[1] = { tk };
        int lens[1] = { 3 };
        float pr[WF_MAX_LABELS];
        rc = wf_session_run(gpu2, ids, lens, 1, pr, NULL) == WF_OK ? 0 : -1;
    } else if (!strcmp(what, "sched")) /* a second scheduler: bucket warm-up, capture, instantiate, upload, launch */
        rc = wf_ring_sched_start(gpu2, ring2, &so, &sch2, e, sizeof(e)) == WF_OK ? 0 : -1;
    else if (!strcmp(what, "free")) /* cudaFreeHost of a region made before */
        wf_ring_region_free(rg2), rg2 = NULL;
    else {
        printf("probe: unknown %s (region, session, run, sched, free)\n", what);
        _exit(2);
    }
    probe_done = 1;
    printf("probe %s: returned (%d) in %.3f s while a scheduler runs\n", what, rc, tm_now_s() - t0);
    pthread_join(wd, NULL);
    /* a second scheduler must work too: one submission through it */
    if (sch2) {
        int32_t tk[3] = { 2, 7, 3 };
        wf_ring_verdict_t v;
        wf_ring_submit(ring2, 1, 1, tk, 3);
        double w0 = tm_now_s();
        int k = 0;
        while ((k = wf_ring_poll(ring2, &v, NULL, 1)) == 0 && tm_now_s() - w0 < 5)
            ;
        printf("probe sched: the second scheduler answered: %s\n", k == 1 ? "yes" : "no");
        wf_ring_sched_stop(sch2);
    }
    wf_ring_sched_stop(sch);
    wf_ring_region_free(rg3);
    wf_session_free(gpu3);
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
        wf_ring_sched_opts_t so = { B, B == 1 ? 0 : 200000, WF_RING_SCHED_DEFAULT };
        wf_ring_sched_t *sch;
        double ts = tm_now_s();
        if (wf_ring_sched_start(gpu, ring, &so, &sch, e, sizeof(e)) != WF_OK) {
            printf("FAIL: %s\n", e);
            return 2;
        }
        ts = tm_now_s() - ts;
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
        printf("| wafer ring (GPU-scheduled, %s) | %s | %d | %d | %.3f | %.3f | %.0f | host CUDA calls %llu, status %u, "
               "started in %.2f s |\n",
               sched_name(), kind, L, B, lat[rounds / 2] * 1e3, lat[(int)(rounds * 0.99)] * 1e3, (double)B * rounds / t,
               (unsigned long long)calls, st, ts);
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
    if (argc > 2 && !strcmp(argv[1], "probe"))
        return probe(argv[2]);
    uint64_t N = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    int R = argc > 2 ? atoi(argv[2]) : 4;
    if (R < 1 || R > 64) {
        printf("ring_test: rings 1..64\n");
        return 2;
    }
    test_dmabuf();
    if (soak_setup())
        return 1;
    soak(N, 1);
    if (R > 1)
        soak(N / (uint64_t)R, R);
    wf_model_free(g_model);
    printf("ring_test: %s\n", fails ? "FAIL" : "ok");
    return fails ? 1 : 0;
}
