/*
 * tlsload: TLS load client of bench/e2e. wrk cannot measure handshakes faithfully: it negotiates TLS 1.2 only and
 * resumes the session of its previous connection when it reconnects, so "Connection: close" under wrk measures
 * abbreviated handshakes. Here every connection gets a fresh SSL object and no session: a full handshake (unless
 * -r), with the protocol version and TLS 1.2 ciphers chosen on the command line.
 *
 *   tlsload -c CONNS -d SECONDS [-n REQUESTS_PER_CONNECTION] [-V 1.2|1.3] [-C TLS12_CIPHERS] [-r] HOST PORT [PATH]
 *
 * CONNS threads, each with one connection at a time, blocking I/O: connect, handshake (SNI "localhost"), then
 * REQUESTS_PER_CONNECTION GET requests (0: as many as fit in the time; keep-alive), the last one with
 * "Connection: close" (and every one when -n 1: a handshake per request). -r resumes each thread's previous session.
 * Latency: from sending a request to its complete response; with -n 1 from connect() to the complete response (the
 * handshake included). Prints one line for bench/e2e/run.sh (the fields of bench/e2e/mix.lua's line, plus
 * handshakes, resumed, and the protocol, cipher and key exchange group of the first connection):
 *   E2E requests=N seconds=S rps=R p50_ms= p90_ms= p99_ms= s2xx= s403= s429= s503= sother= errors= handshakes=N
 *       hps=R resumed=N proto=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 group=x25519
 * Not part of wafer; built by bench/e2e/run.sh with the system's OpenSSL.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAMPLES (1u << 20) /* latency samples kept per thread; later ones are counted, not kept */

typedef struct {
    pthread_t tid;
    uint64_t requests, handshakes, resumed, errors, s2xx, s403, s429, s503, sother;
    uint32_t *lat_us;
    size_t nlat;
} worker_t;

static SSL_CTX *ctx;
static struct sockaddr_in addr;
static const char *path = "/";
static long per_conn = 1;
static int resume;
static double deadline;
static atomic_int first_done;
static char first_proto[32], first_cipher[128], first_group[64];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads one HTTP/1.1 response (Content-Length framed, or to the close). Returns the status, 0 on error. *close is
 * set when the server ends the connection after it. */
static int read_response(SSL *ssl, int *close_after)
{
    char buf[16384];
    size_t len = 0;
    char *end = NULL;
    while (!end) {
        if (len == sizeof(buf) - 1)
            return 0;
        int n = SSL_read(ssl, buf + len, (int)(sizeof(buf) - 1 - len));
        if (n <= 0)
            return 0;
        len += (size_t)n;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = 0;
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return 0;
    long clen = -1;
    *close_after = 0;
    for (char *p = strstr(buf, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        if (!strncasecmp(p + 2, "content-length:", 15))
            clen = strtol(p + 17, NULL, 10);
        else if (!strncasecmp(p + 2, "connection:", 11) && strcasestr(p + 13, "close") &&
                 strcasestr(p + 13, "close") < strstr(p + 2, "\r\n"))
            *close_after = 1;
    }
    size_t have = len - (size_t)(end + 4 - buf);
    if (clen < 0) { /* body to the close */
        while (SSL_read(ssl, buf, sizeof(buf)) > 0)
            ;
        *close_after = 1;
        return status;
    }
    while ((long)have < clen) {
        int n = SSL_read(ssl, buf, (int)sizeof(buf));
        if (n <= 0)
            return 0;
        have += (size_t)n;
    }
    return status;
}

static void count_status(worker_t *w, int status)
{
    if (status == 403)
        w->s403++;
    else if (status >= 200 && status < 300)
        w->s2xx++;
    else if (status == 429)
        w->s429++;
    else if (status == 503)
        w->s503++;
    else
        w->sother++;
}

static void *run(void *arg)
{
    worker_t *w = arg;
    SSL_SESSION *sess = NULL;
    char req[512], req_close[512];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tlsload\r\n\r\n", path);
    snprintf(req_close, sizeof(req_close),
             "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: tlsload\r\nConnection: close\r\n\r\n", path);
    while (now_s() < deadline) {
        double t0 = now_s();
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
            w->errors++;
            if (fd >= 0)
                close(fd);
            usleep(1000);
            continue;
        }
        SSL *ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        SSL_set_tlsext_host_name(ssl, "localhost");
        if (resume && sess)
            SSL_set_session(ssl, sess);
        if (SSL_connect(ssl) != 1) {
            w->errors++;
            SSL_free(ssl);
            close(fd);
            continue;
        }
        w->handshakes++;
        if (SSL_session_reused(ssl))
            w->resumed++;
        if (!atomic_exchange(&first_done, 1)) {
            snprintf(first_proto, sizeof(first_proto), "%s", SSL_get_version(ssl));
            snprintf(first_cipher, sizeof(first_cipher), "%s", SSL_get_cipher_name(ssl));
            const char *g = SSL_group_to_name(ssl, SSL_get_negotiated_group(ssl));
            snprintf(first_group, sizeof(first_group), "%s", g ? g : "unknown");
        }
        for (long i = 0; (per_conn == 0 || i < per_conn) && now_s() < deadline; i++) {
            int last = per_conn > 0 && i == per_conn - 1;
            const char *r = last ? req_close : req;
            double t1 = per_conn == 1 ? t0 : now_s();
            if (SSL_write(ssl, r, (int)strlen(r)) <= 0) {
                w->errors++;
                break;
            }
            int close_after = 0;
            int status = read_response(ssl, &close_after);
            if (!status) {
                w->errors++;
                break;
            }
            w->requests++;
            count_status(w, status);
            if (w->nlat < MAX_SAMPLES)
                w->lat_us[w->nlat++] = (uint32_t)((now_s() - t1) * 1e6);
            if (close_after)
                break;
        }
        if (resume) { /* TLS 1.3 tickets arrive after the handshake: take the session once the exchange is done */
            SSL_SESSION *s = SSL_get1_session(ssl);
            if (s) {
                if (sess)
                    SSL_SESSION_free(sess);
                sess = s;
            }
        }
        SSL_shutdown(ssl); /* our close_notify; not waiting for the peer's */
        SSL_free(ssl);
        close(fd);
    }
    if (sess)
        SSL_SESSION_free(sess);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int conns = 16, opt;
    double secs = 10;
    const char *ver = NULL, *ciphers = NULL;
    while ((opt = getopt(argc, argv, "c:d:n:V:C:r")) != -1) {
        switch (opt) {
        case 'c': conns = atoi(optarg); break;
        case 'd': secs = atof(optarg); break;
        case 'n': per_conn = atol(optarg); break;
        case 'V': ver = optarg; break;
        case 'C': ciphers = optarg; break;
        case 'r': resume = 1; break;
        default: goto usage;
        }
    }
    if (argc - optind < 2 || conns < 1 || conns > 4096 || secs <= 0 || per_conn < 0)
        goto usage;
    if (argc - optind > 2)
        path = argv[optind + 2];
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)atoi(argv[optind + 1]));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1) {
        fprintf(stderr, "tlsload: %s is not an IPv4 address\n", argv[optind]);
        return 2;
    }
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (ver) {
        int v = !strcmp(ver, "1.2") ? TLS1_2_VERSION : !strcmp(ver, "1.3") ? TLS1_3_VERSION : 0;
        if (!v) {
            fprintf(stderr, "tlsload: -V takes 1.2 or 1.3\n");
            return 2;
        }
        SSL_CTX_set_min_proto_version(ctx, v);
        SSL_CTX_set_max_proto_version(ctx, v);
    }
    if (ciphers && SSL_CTX_set_cipher_list(ctx, ciphers) != 1) {
        fprintf(stderr, "tlsload: no usable cipher in %s\n", ciphers);
        return 2;
    }
    worker_t *ws = calloc((size_t)conns, sizeof(*ws));
    if (!ws)
        return 1;
    double start = now_s();
    deadline = start + secs;
    for (int i = 0; i < conns; i++) {
        ws[i].lat_us = malloc(MAX_SAMPLES * sizeof(uint32_t));
        if (!ws[i].lat_us || pthread_create(&ws[i].tid, NULL, run, &ws[i]) != 0) {
            fprintf(stderr, "tlsload: cannot start thread %d\n", i);
            return 1;
        }
    }
    worker_t t = {0};
    size_t nlat = 0;
    for (int i = 0; i < conns; i++) {
        pthread_join(ws[i].tid, NULL);
        t.requests += ws[i].requests;
        t.handshakes += ws[i].handshakes;
        t.resumed += ws[i].resumed;
        t.errors += ws[i].errors;
        t.s2xx += ws[i].s2xx;
        t.s403 += ws[i].s403;
        t.s429 += ws[i].s429;
        t.s503 += ws[i].s503;
        t.sother += ws[i].sother;
        nlat += ws[i].nlat;
    }
    double elapsed = now_s() - start;
    uint32_t *all = malloc((nlat ? nlat : 1) * sizeof(uint32_t));
    if (!all)
        return 1;
    size_t k = 0;
    for (int i = 0; i < conns; i++) {
        memcpy(all + k, ws[i].lat_us, ws[i].nlat * sizeof(uint32_t));
        k += ws[i].nlat;
        free(ws[i].lat_us);
    }
    qsort(all, nlat, sizeof(uint32_t), cmp_u32);
#define PCT(p) (nlat ? all[(size_t)((double)(nlat - 1) * (p) / 100.0)] / 1000.0 : 0.0)
    printf("E2E requests=%llu seconds=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f s2xx=%llu s403=%llu s429=%llu "
           "s503=%llu sother=%llu errors=%llu handshakes=%llu hps=%.1f resumed=%llu proto=%s cipher=%s group=%s\n",
           (unsigned long long)t.requests, elapsed, (double)t.requests / elapsed, PCT(50), PCT(90), PCT(99),
           (unsigned long long)t.s2xx, (unsigned long long)t.s403, (unsigned long long)t.s429,
           (unsigned long long)t.s503, (unsigned long long)t.sother, (unsigned long long)t.errors,
           (unsigned long long)t.handshakes, (double)t.handshakes / elapsed, (unsigned long long)t.resumed,
           first_done ? first_proto : "none", first_done ? first_cipher : "none", first_done ? first_group : "none");
    free(all);
    free(ws);
    SSL_CTX_free(ctx);
    return t.requests ? 0 : 1;
usage:
    fprintf(stderr, "usage: tlsload -c CONNS -d SECONDS [-n REQUESTS_PER_CONNECTION] [-V 1.2|1.3] [-C CIPHERS] [-r] "
                    "HOST PORT [PATH]\n");
    return 2;
}
