/* wafer scan: classify requests offline, one verdict per request
 * (docs/scan.md). Argument handling, the default model directory and the
 * progress line; the work is in src/inspect/scan.c. */
#include "commands.h"
#include "wafer/scan.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *fp)
{
    fprintf(fp,
            "usage: wafer scan [-m MODEL_DIR] [--format raw|lines|jsonl|nginx|json-log] [--output jsonl|summary]\n"
            "                  [--threads N] [--backend cpu|cuda|auto] [--name NAME] [FILE|-]...\n"
            "  one JSON object per request (--output jsonl, the default unless stdout is a terminal) or\n"
            "  counts (--output summary). Exit 0: nothing found, 1: an attack was found, 2: error.\n"
            "  MODEL_DIR defaults to models/default (next to the binary's share/wafer or the source tree).\n");
}

static bool is_model_dir(const char *d)
{
    char p[PATH_MAX];
    struct stat st;
    snprintf(p, sizeof(p), "%s/wafer.json", d);
    return stat(p, &st) == 0;
}

/* models/default: installed (<prefix>/share/wafer/models/default next to
 * <prefix>/bin/wafer), in a build folder of the source tree (build/wafer ->
 * models/default), or the source tree this binary was built from. */
static const char *default_model(char *buf, size_t cap, char *looked, size_t lcap)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    const char *cands[3];
    char c0[PATH_MAX + 64], c1[PATH_MAX + 64];
    size_t nc = 0;
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(c0, sizeof(c0), "%s/../share/wafer/models/default", exe);
            snprintf(c1, sizeof(c1), "%s/../models/default", exe);
            cands[nc++] = c0;
            cands[nc++] = c1;
        }
    }
    cands[nc++] = WAFER_SOURCE_DIR "/models/default";
    size_t w = 0;
    for (size_t i = 0; i < nc; i++) {
        if (is_model_dir(cands[i])) {
            if (!realpath(cands[i], buf))
                snprintf(buf, cap, "%s", cands[i]);
            return buf;
        }
        w += (size_t)snprintf(looked + w, w < lcap ? lcap - w : 0, "%s%s", i ? ", " : "", cands[i]);
        if (w >= lcap)
            w = lcap - 1;
    }
    return NULL;
}

static void progress(const wf_scan_stats_t *st, void *arg)
{
    double secs = (double)(wf_now_ns() - st->start_ns) / 1e9;
    fprintf(stderr, "\r\033[K%llu requests  %.0f/s  attacks %llu  invalid %llu", (unsigned long long)st->requests,
            secs > 0 ? st->requests / secs : 0.0, (unsigned long long)st->attack, (unsigned long long)st->invalid);
    fflush(stderr);
}

int wf_cmd_scan(int argc, char **argv)
{
    const char *dir = NULL, *backend = "cpu", *output = NULL;
    int threads = 1, fmt = WF_INPUT_RAW;
    wf_scan_opts_t so;
    wf_scan_opts_default(&so);
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        if (!strcmp(a, "--")) {
            i++;
            break;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        static const char *const valued[] = { "-m", "--model", "--format", "--output", "--threads", "--backend",
                                              "--name" };
        const char *opt = NULL;
        for (size_t k = 0; k < WF_ARRAY_LEN(valued) && !opt; k++) {
            size_t l = strlen(valued[k]);
            if (!strcmp(a, valued[k])) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "wafer scan: %s needs a value\n", a);
                    usage(stderr);
                    return 2;
                }
                opt = valued[k];
                v = argv[++i];
            } else if (valued[k][1] == '-' && !strncmp(a, valued[k], l) && a[l] == '=') {
                opt = valued[k];
                v = a + l + 1;
            }
        }
        if (!opt) {
            if (a[0] == '-' && a[1]) {
                fprintf(stderr, "wafer scan: unknown option '%s'\n", a);
                usage(stderr);
                return 2;
            }
            break;
        }
        if (!strcmp(opt, "-m") || !strcmp(opt, "--model")) {
            dir = v;
        } else if (!strcmp(opt, "--format")) {
            fmt = wf_input_format_parse(v);
            if (fmt < 0) {
                fprintf(stderr, "wafer scan: unknown format '%s' (raw, lines, jsonl, nginx, json-log)\n", v);
                return 2;
            }
        } else if (!strcmp(opt, "--output")) {
            if (strcmp(v, "jsonl") && strcmp(v, "summary")) {
                fprintf(stderr, "wafer scan: unknown output '%s' (jsonl, summary)\n", v);
                return 2;
            }
            output = v;
        } else if (!strcmp(opt, "--threads")) {
            char *end;
            long t = strtol(v, &end, 10);
            if (*v == '\0' || *end != '\0' || t < 1 || t > 256) {
                fprintf(stderr, "wafer scan: --threads: '%s' is not a number from 1 to 256\n", v);
                return 2;
            }
            threads = (int)t;
        } else if (!strcmp(opt, "--backend")) {
            backend = v;
        } else {
            so.lines_name = v;
        }
    }
    if (!output)
        output = isatty(STDOUT_FILENO) ? "summary" : "jsonl";
    so.format = (wf_input_format_t)fmt;
    so.out = !strcmp(output, "jsonl") ? stdout : NULL;

    char dbuf[PATH_MAX], looked[3 * PATH_MAX];
    if (!dir && !(dir = default_model(dbuf, sizeof(dbuf), looked, sizeof(looked)))) {
        fprintf(stderr, "wafer scan: no model given and no default model found (looked for wafer.json in %s); "
                        "pass -m MODEL_DIR\n", looked);
        return 2;
    }
    /* open every file before reading any: a typo fails before minutes of work */
    const char *stdin_only[] = { "-" };
    char **files = argc > i ? argv + i : (char **)stdin_only;
    int nfiles = argc > i ? argc - i : 1;
    FILE **fps = calloc((size_t)nfiles, sizeof(*fps));
    if (!fps) {
        fprintf(stderr, "wafer scan: out of memory\n");
        return 2;
    }
    int rc = 0;
    for (int f = 0; f < nfiles && !rc; f++) {
        fps[f] = strcmp(files[f], "-") ? fopen(files[f], "rb") : stdin;
        if (!fps[f]) {
            fprintf(stderr, "wafer scan: %s: %s\n", files[f], strerror(errno));
            rc = 2;
        }
    }
    wf_err_t err = { { 0 } };
    wf_model_t *model = NULL;
    wf_session_t *sess = NULL;
    wf_scan_t *sc = NULL;
    if (!rc) {
        wf_status_t s = wf_model_load(dir, &model, &err);
        if (s == WF_OK) {
            const wf_model_meta_t *meta = wf_model_get_meta(model);
            wf_session_opts_t opts = {
                .backend = backend,
                .threads = threads,
                .max_batch = so.max_batch,
                .max_tokens = so.max_batch * meta->max_len,
            };
            s = wf_session_new(model, &opts, &sess, &err);
        }
        if (s == WF_OK)
            s = wf_scan_new(model, sess, &so, &sc, &err);
        if (s != WF_OK) {
            fprintf(stderr, "wafer scan: %s: %s\n", dir, err.msg[0] ? err.msg : wf_status_str(s));
            rc = 2;
        }
    }
    bool bar = !rc && isatty(STDERR_FILENO);
    if (bar)
        wf_scan_set_progress(sc, progress, NULL);
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof(obuf));
    for (int f = 0; f < nfiles && !rc; f++) {
        int r = wf_scan_file(sc, fps[f]);
        if (r) {
            fprintf(stderr, "%swafer scan: %s: %s\n", bar ? "\n" : "", files[f], wf_scan_error(sc));
            rc = 2;
        }
    }
    if (bar)
        fputs("\r\033[K", stderr);
    for (int f = 0; f < nfiles; f++)
        if (fps[f] && fps[f] != stdin)
            fclose(fps[f]);
    free(fps);
    if (sc && !rc && !so.out)
        wf_scan_summary_print(sc, stdout);
    if (fflush(stdout) != 0 && rc != 2) {
        fprintf(stderr, "wafer scan: writing the output failed\n");
        rc = 2;
    }
    if (!rc && wf_scan_stats(sc)->attack)
        rc = 1;
    wf_scan_free(sc);
    wf_session_free(sess);
    wf_model_free(model);
    return rc;
}
