/* Fuzzes the indicator tables and the MISP feed parsers, the two places where
 * hostile text meets them: feed files (a compromised or spoofed feed) and
 * request fields (Host, target, User-Agent, from any client).
 *
 * Input: a first byte choosing the feed format (CSV or freetext), then the
 * feed text up to a NUL byte, then request fields separated by NUL bytes
 * (host, target, user agent). The feed is read by the real importer from a
 * memfd (/proc/self/fd/N), and the request fields are looked up in the
 * table it built. Then each request field is added alone as an indicator
 * (domain, url, user-agent): when it is accepted, it must match itself. */
#include "wafer/core.h"
#include "wafer/ioc.h"
#include "wafer/misp.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int quiet = 0;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!quiet) {
        wf_log_set_level(WF_LOG_ERROR);
        quiet = 1;
    }
    if (size < 1)
        return 0;
    int csv = data[0] & 1;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    const char *nul = memchr(p, 0, n);
    size_t feed_len = nul ? (size_t)(nul - p) : n;
    const char *fields[3] = { "", "", "" };
    size_t flen[3] = { 0, 0, 0 };
    if (nul) {
        const char *q = nul + 1, *end = p + n;
        for (int i = 0; i < 3 && q <= end; i++) {
            const char *z = memchr(q, 0, (size_t)(end - q));
            size_t l = z ? (size_t)(z - q) : (size_t)(end - q);
            fields[i] = q;
            flen[i] = l;
            q += l + 1;
        }
    }
    int fd = memfd_create("feed", 0);
    if (fd < 0)
        return 0;
    if (write(fd, p, feed_len) != (ssize_t)feed_len) {
        close(fd);
        return 0;
    }
    char yaml[256];
    snprintf(yaml, sizeof(yaml), "misp:\n  max_indicators: 1000\n  feeds:\n    - {url: /proc/self/fd/%d, format: %s}\n",
             fd, csv ? "csv" : "freetext");
    wf_conf_t *c = NULL;
    wf_conf_err_t err;
    wf_misp_conf_t *mc = NULL;
    if (wf_conf_load_string("f.yaml", yaml, strlen(yaml), &c, &err) ||
        wf_misp_conf_parse(c, wf_conf_get(wf_conf_root(c), "misp"), &mc, &err))
        abort();
    wf_conf_free(c);
    wf_ioc_store_t *store = wf_ioc_store_new();
    wf_misp_t *m = NULL;
    char e[128];
    if (wf_misp_new(mc, store, &m, e, sizeof(e)))
        abort();
    wf_misp_conf_free(mc);
    if (wf_misp_import(m, true) != 0)
        abort(); /* a readable file never fails */
    wf_ioc_hit_t h;
    const wf_ioc_t *t = wf_ioc_read_begin(store);
    wf_ioc_match(t, NULL, wf_str(fields[0], flen[0]), wf_str(fields[1], flen[1]), wf_str(fields[2], flen[2]), &h);
    wf_ioc_counts_t cnt;
    wf_ioc_counts(t, &cnt);
    wf_ioc_read_end(store);
    if (cnt.per_kind[WF_IOC_IP] + cnt.per_kind[WF_IOC_DOMAIN] + cnt.per_kind[WF_IOC_URL] + cnt.per_kind[WF_IOC_UA] >
        1000)
        abort();
    wf_misp_free(m);
    wf_ioc_store_free(store);
    close(fd);

    static const char *const types[3] = { "domain", "url", "user-agent" };
    for (int i = 0; i < 3; i++) {
        wf_ioc_builder_t *b = wf_ioc_builder_new(0);
        const char *tag = "t";
        int rc = wf_ioc_builder_add(b, types[i], wf_str(fields[i], flen[i]), "1", &tag, 1);
        wf_ioc_t *one = wf_ioc_builder_finish(b);
        if (rc == 1) {
            wf_str_t v = wf_str(fields[i], flen[i]);
            bool hit = i == 0 ? wf_ioc_match(one, NULL, v, WF_STR_NULL, WF_STR_NULL, &h)
                     : i == 1 ? wf_ioc_match(one, NULL, WF_STR_NULL, v, WF_STR_NULL, &h)
                              : wf_ioc_match(one, NULL, WF_STR_NULL, WF_STR_NULL, v, &h);
            if (!hit || strcmp(h.type, types[i]) != 0 || strcmp(h.tags, "t") != 0) {
                fprintf(stderr, "%s \"%.*s\" accepted but does not match itself\n", types[i], (int)flen[i], fields[i]);
                abort();
            }
        } else if (rc != 0 && rc != -EINVAL) {
            abort();
        }
        wf_ioc_free(one);
    }
    return 0;
}
