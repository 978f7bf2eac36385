/*
 * Parser micro-benchmark (not a test): parses a mix of typical requests in a
 * loop, with the SIMD scanners and with the scalar ones, and prints
 * requests/s and MB/s of header bytes for each.
 *
 *   ./build/bench/parser/bench_parser [seconds per round, default 0.5] [rounds, default 10]
 *
 * Each path reports its best round (the machine is shared).
 */
#include "wafer/http.h"
#include "http/scan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const requests[] = {
    /* curl */
    "GET /index.html HTTP/1.1\r\n"
    "Host: www.example.com\r\n"
    "User-Agent: curl/7.88.1\r\n"
    "Accept: */*\r\n"
    "\r\n",
    /* a browser */
    "GET /wp-content/uploads/2010/03/hello-kitty-darth-vader-pink.jpg HTTP/1.1\r\n"
    "Host: www.kittyhell.com\r\n"
    "User-Agent: Mozilla/5.0 (Macintosh; U; Intel Mac OS X 10_6_3; ja-JP-mac; rv:1.9.2.3) Gecko/20100401 "
    "Firefox/3.6.3 Pathtraq/0.9\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: ja,en-us;q=0.7,en;q=0.3\r\n"
    "Accept-Encoding: gzip,deflate\r\n"
    "Accept-Charset: Shift_JIS,utf-8;q=0.7,*;q=0.7\r\n"
    "Keep-Alive: 115\r\n"
    "Connection: keep-alive\r\n"
    "Cookie: wp_ozh_wsa_visits=2; wp_ozh_wsa_visit_lasttime=xxxxxxxxxx; "
    "__utma=xxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.xxxxxxxxxx.x; "
    "__utmz=xxxxxxxxx.xxxxxxxxxx.x.x.utmccn=(referral)|utmcsr=reader.livedoor.com|utmcct=/reader/|utmcmd=referral\r\n"
    "\r\n",
    /* CSIC 2010 style, absolute-form with a body */
    "POST http://localhost:8080/tienda1/publico/anadir.jsp HTTP/1.1\r\n"
    "User-Agent: Mozilla/5.0 (compatible; Konqueror/3.5; Linux) KHTML/3.5.8 (like Gecko)\r\n"
    "Pragma: no-cache\r\n"
    "Cache-control: no-cache\r\n"
    "Accept: text/xml,application/xml,application/xhtml+xml,text/html;q=0.9,text/plain;q=0.8,image/png,*/*;q=0.5\r\n"
    "Accept-Encoding: x-gzip, x-deflate, gzip, deflate\r\n"
    "Accept-Charset: utf-8, utf-8;q=0.5, *;q=0.5\r\n"
    "Accept-Language: en\r\n"
    "Host: localhost:8080\r\n"
    "Cookie: JSESSIONID=B92A8B48B9008CD29F622A994E0F650D\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\n"
    "Connection: close\r\n"
    "Content-Length: 68\r\n"
    "\r\n",
    /* an API call */
    "POST /api/v1/orders?expand=items HTTP/1.1\r\n"
    "Host: api.example.com\r\n"
    "Authorization: Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N\r\n"
    "Content-Type: application/json\r\n"
    "Transfer-Encoding: chunked\r\n"
    "X-Request-Id: 7f3c2a9e-1b4d-4c8a-9e2f-0a1b2c3d4e5f\r\n"
    "\r\n",
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best of `rounds` rounds of `seconds` each: the machine is shared, and the
 * best round is the one least disturbed by other processes. */
static void run(const char *label, double seconds, int rounds)
{
    wf_http_limits_t lim;
    wf_http_limits_default(&lim);
    wf_http_header_t hdrs[100];
    size_t nreq = sizeof(requests) / sizeof(requests[0]);
    size_t lens[8], batch_bytes = 0;
    for (size_t i = 0; i < nreq; i++) {
        lens[i] = strlen(requests[i]);
        batch_bytes += lens[i];
    }
    double best = 0;
    unsigned long long sink = 0;
    for (int r = 0; r < rounds; r++) {
        unsigned long long parsed = 0;
        double t0 = now(), t;
        do {
            for (int rep = 0; rep < 1000; rep++)
                for (size_t i = 0; i < nreq; i++) {
                    wf_http_request_t req;
                    int rc = wf_http_parse_request(requests[i], lens[i], &lim, &req, hdrs);
                    if (rc <= 0) {
                        fprintf(stderr, "request %zu failed: %d %s\n", i, rc, wf_http_err_name(req.error));
                        exit(1);
                    }
                    sink += (unsigned)rc + req.nheaders;
                }
            parsed += 1000 * nreq;
            t = now();
        } while (t - t0 < seconds);
        double rate = parsed / (t - t0);
        if (rate > best)
            best = rate;
    }
    printf("%-7s %10.0f requests/s  %8.1f MB/s  (best of %d rounds of %.1f s; %zu requests of %zu bytes on "
           "average; check %llu)\n",
           label, best, best * batch_bytes / nreq / 1e6, rounds, seconds, nreq, batch_bytes / nreq, sink % 7);
}

int main(int argc, char **argv)
{
    double seconds = argc > 1 ? atof(argv[1]) : 0.5;
    int rounds = argc > 2 ? atoi(argv[2]) : 10;
    if (wf_http_scan_use_simd(true))
        run("simd", seconds, rounds);
    else
        printf("simd    (not compiled in on this architecture)\n");
    wf_http_scan_use_simd(false);
    run("scalar", seconds, rounds);
    return 0;
}
