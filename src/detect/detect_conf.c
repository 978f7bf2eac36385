/* The `detection:` configuration section (wafer/detect.h, docs/configuration.md). */
#include "wafer/core.h"
#include "wafer/detect.h"

#include <stdio.h>
#include <stdlib.h>

#define KB 1024ull
#define MB (1024ull * 1024)

void wf_detect_conf_free(wf_detect_conf_t *dc)
{
    if (!dc)
        return;
    free(dc->model_dir);
    for (size_t i = 0; i < dc->inspect.nheaders; i++)
        free((char *)dc->inspect.headers[i].p);
    free(dc);
}

/* "models/default" relative to the configuration file's directory. */
static char *resolve_dir(const char *conf_file, const char *dir)
{
    if (dir[0] == '/' || !conf_file)
        return strdup(dir);
    const char *slash = strrchr(conf_file, '/');
    size_t n = slash ? (size_t)(slash - conf_file) : 0;
    size_t len = n + 1 + strlen(dir) + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    if (n)
        snprintf(out, len, "%.*s/%s", (int)n, conf_file, dir);
    else
        snprintf(out, len, "%s", dir);
    return out;
}

int wf_detect_conf_parse(const wf_conf_t *c, const wf_conf_node_t *node, const char *conf_file,
                         wf_detect_conf_t **out, wf_conf_err_t *err)
{
    static const char *const keys[] = { "enabled", "model", "backend", "threads", "max_batch", "batch_wait",
                                        "max_queue", "max_inflight", "overload", "timeout", "cache_entries",
                                        "body_over_limit", "inspect", NULL };
    static const char *const ikeys[] = { "max_units", "max_unit_bytes", "max_total_bytes", "max_value_bytes",
                                         "max_body_bytes", "max_json_depth", "max_multipart_parts",
                                         "max_decode_passes", "path_segments", "fast_path", "headers", NULL };
    static const char *const backends[] = { "auto", "cpu", "cuda", NULL };
    static const char *const overloads[] = { "fail_open", "fail_closed", NULL };
    static const char *const bodies[] = { "inspect_prefix", "reject", NULL };
    *out = NULL;
    wf_detect_conf_t *dc = calloc(1, sizeof(*dc));
    if (!dc)
        return -ENOMEM;
    dc->backend = WF_DETECT_AUTO;
    dc->max_batch = 32;
    dc->batch_wait_us = 500;
    dc->max_queue = 4096;
    dc->max_inflight = 4096;
    dc->overload = WF_OVERLOAD_FAIL_OPEN;
    dc->timeout_ms = 1000;
    dc->cache_entries = 65536;
    dc->body_over_limit = WF_BODY_INSPECT_PREFIX;
    wf_inspect_conf_default(&dc->inspect);
    dc->inspect.nheaders = 0; /* owned copies below */
    wf_inspect_conf_t defaults;
    wf_inspect_conf_default(&defaults);
    int rc = 0;
#define CHECK(x)                                                                                             \
    do {                                                                                                     \
        if ((rc = (x)))                                                                                      \
            goto fail;                                                                                       \
    } while (0)
    if (node && node->type != WF_CONF_MAP) {
        rc = wf_conf_errorf(c, node, err, "expected a mapping");
        goto fail;
    }
    dc->enabled = node != NULL;
    const char *model = "models/default";
    if (node) {
        CHECK(wf_conf_check_keys(c, node, keys, err));
        CHECK(wf_conf_bool(c, node, "enabled", &dc->enabled, err));
        CHECK(wf_conf_str(c, node, "model", &model, err));
        if (!model || !*model) {
            rc = wf_conf_errorf(c, wf_conf_get(node, "model"), err, "expected a model directory");
            goto fail;
        }
        int b = (int)dc->backend;
        CHECK(wf_conf_enum(c, node, "backend", backends, &b, err));
        dc->backend = (wf_detect_backend_t)b;
        int64_t v = 0;
        CHECK(wf_conf_int(c, node, "threads", 0, 256, &v, err));
        dc->threads = (int)v;
        v = dc->max_batch;
        CHECK(wf_conf_int(c, node, "max_batch", 1, 1024, &v, err));
        dc->max_batch = (int)v;
        uint64_t ms = 0;
        const wf_conf_node_t *bw = wf_conf_get(node, "batch_wait");
        if (bw) {
            /* microseconds matter here: "500us" as well as the usual durations */
            const char *s = bw->type == WF_CONF_SCALAR ? bw->value : NULL;
            size_t n = s ? strlen(s) : 0;
            char *end = NULL;
            if (s && n > 2 && !strcmp(s + n - 2, "us")) {
                unsigned long long us = strtoull(s, &end, 10);
                if (end != s + n - 2 || us > 1000000) {
                    rc = wf_conf_errorf(c, bw, err, "expected a duration up to 1s such as 500us or 2ms, got \"%s\"", s);
                    goto fail;
                }
                dc->batch_wait_us = us;
            } else {
                CHECK(wf_conf_duration_ms(c, node, "batch_wait", 0, 1000, &ms, err));
                dc->batch_wait_us = ms * 1000;
            }
        }
        v = dc->max_queue;
        CHECK(wf_conf_int(c, node, "max_queue", 1, 1 << 20, &v, err));
        dc->max_queue = (uint32_t)v;
        v = dc->max_inflight;
        CHECK(wf_conf_int(c, node, "max_inflight", 1, 1 << 20, &v, err));
        dc->max_inflight = (uint32_t)v;
        int o = (int)dc->overload;
        CHECK(wf_conf_enum(c, node, "overload", overloads, &o, err));
        dc->overload = (wf_overload_t)o;
        CHECK(wf_conf_duration_ms(c, node, "timeout", 1, 3600 * 1000ull, &dc->timeout_ms, err));
        v = dc->cache_entries;
        CHECK(wf_conf_int(c, node, "cache_entries", 0, 1 << 22, &v, err));
        dc->cache_entries = (uint32_t)v;
        int bo = (int)dc->body_over_limit;
        CHECK(wf_conf_enum(c, node, "body_over_limit", bodies, &bo, err));
        dc->body_over_limit = (wf_body_over_t)bo;
        const wf_conf_node_t *in = wf_conf_get(node, "inspect");
        if (in) {
            if (in->type != WF_CONF_MAP) {
                rc = wf_conf_errorf(c, in, err, "expected a mapping");
                goto fail;
            }
            wf_inspect_conf_t *ic = &dc->inspect;
            CHECK(wf_conf_check_keys(c, in, ikeys, err));
            uint64_t u;
            v = (int64_t)ic->max_units;
            CHECK(wf_conf_int(c, in, "max_units", 1, 65536, &v, err));
            ic->max_units = (size_t)v;
            u = ic->max_unit_bytes;
            CHECK(wf_conf_size(c, in, "max_unit_bytes", 128, 64 * KB, &u, err));
            ic->max_unit_bytes = u;
            ic->window_overlap = WF_MIN(ic->window_overlap, ic->max_unit_bytes / 4);
            u = ic->max_total_bytes;
            CHECK(wf_conf_size(c, in, "max_total_bytes", 1 * KB, 64 * MB, &u, err));
            ic->max_total_bytes = u;
            u = ic->max_value_bytes;
            CHECK(wf_conf_size(c, in, "max_value_bytes", 64, 64 * MB, &u, err));
            ic->max_value_bytes = u;
            u = ic->max_body_bytes;
            CHECK(wf_conf_size(c, in, "max_body_bytes", 0, 1024 * MB, &u, err));
            ic->max_body_bytes = u;
            v = (int64_t)ic->max_json_depth;
            CHECK(wf_conf_int(c, in, "max_json_depth", 1, 1024, &v, err));
            ic->max_json_depth = (size_t)v;
            v = (int64_t)ic->max_multipart_parts;
            CHECK(wf_conf_int(c, in, "max_multipart_parts", 1, 10000, &v, err));
            ic->max_multipart_parts = (size_t)v;
            v = ic->max_decode_passes;
            CHECK(wf_conf_int(c, in, "max_decode_passes", 1, 16, &v, err));
            ic->max_decode_passes = (unsigned)v;
            CHECK(wf_conf_bool(c, in, "path_segments", &ic->path_segments, err));
            CHECK(wf_conf_bool(c, in, "fast_path", &ic->fast_path, err));
            const wf_conf_node_t *hn = wf_conf_get(in, "headers");
            if (hn) {
                if (hn->type != WF_CONF_SEQ || hn->nitems > WF_INSPECT_MAX_HEADERS) {
                    rc = wf_conf_errorf(c, hn, err, "expected a list of at most %d header names",
                                        WF_INSPECT_MAX_HEADERS);
                    goto fail;
                }
                for (size_t i = 0; i < hn->nitems; i++) {
                    const wf_conf_node_t *it = hn->items[i];
                    if (it->type != WF_CONF_SCALAR || !it->value[0]) {
                        rc = wf_conf_errorf(c, it, err, "expected a header name");
                        goto fail;
                    }
                    char *h = strdup(it->value);
                    if (!h) {
                        rc = -ENOMEM;
                        goto fail;
                    }
                    ic->headers[ic->nheaders++] = wf_str_c(h);
                }
                goto headers_done;
            }
        }
    }
    for (size_t i = 0; i < defaults.nheaders; i++) {
        char *h = strndup(defaults.headers[i].p, defaults.headers[i].n);
        if (!h) {
            rc = -ENOMEM;
            goto fail;
        }
        dc->inspect.headers[dc->inspect.nheaders++] = wf_str(h, defaults.headers[i].n);
    }
headers_done:
    dc->model_dir = resolve_dir(conf_file, model);
    if (!dc->model_dir) {
        rc = -ENOMEM;
        goto fail;
    }
#undef CHECK
    *out = dc;
    return 0;
fail:
    if (rc == -ENOMEM && err)
        snprintf(err->msg, sizeof(err->msg), "%s: out of memory", conf_file ? conf_file : "configuration");
    wf_detect_conf_free(dc);
    return rc;
}
