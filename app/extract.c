/* wafer extract: print the exact model input text of every inspection unit
 * (docs/inspection.md "wafer extract"). */
#include "commands.h"
#include "wafer/inspect.h"

#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *fp)
{
    fprintf(fp, "usage: wafer extract [--format raw|lines|jsonl|nginx|json-log] [--json] [--all] [--name NAME]...\n"
                "                     [--stats] [FILE|-]...\n"
                "  one line per unit: INDEX TAB KIND TAB \"NAME\" TAB FLAGS TAB \"TEXT\" (JSON strings),\n"
                "  or a JSON object per unit with --json. --all also prints units the fast path skips.\n"
                "  --name: argument name(s) for --format lines (cycled by line; default q).\n");
}

/* The text is valid UTF-8 (the decoder guarantees it), so bytes past 0x7f pass. */
static void put_json_str(FILE *out, const char *p, size_t n) { wf_json_str_write(out, p, n, false); }

typedef struct {
    bool json, all;
    char *text;
    size_t text_cap;
    FILE *out;
} emit_opts_t;

static void print_units(emit_opts_t *o, uint64_t index, const wf_units_t *us)
{
    char fl[256];
    if (us->flags) {
        size_t w = 0;
        const char *name;
        for (unsigned b = 0; (name = wf_inspect_rflag_name(b)); b++)
            if (us->flags & (1u << b))
                w += (size_t)snprintf(fl + w, sizeof(fl) - w, "%s%s", w ? "," : "", name);
        if (o->json)
            fprintf(o->out, "{\"index\":%llu,\"request_flags\":\"%s\"}\n", (unsigned long long)index, fl);
        else
            fprintf(o->out, "%llu\trequest\t\"\"\t%s\t\"\"\n", (unsigned long long)index, fl);
    }
    for (size_t i = 0; i < us->n; i++) {
        const wf_unit_t *u = &us->units[i];
        if ((u->flags & WF_UNIT_F_SAFE) && !o->all)
            continue;
        size_t tl = wf_unit_text(u, o->text, o->text_cap);
        tl = WF_MIN(tl, o->text_cap);
        wf_unit_flags_str(u->flags, fl, sizeof(fl));
        if (o->json) {
            fprintf(o->out, "{\"index\":%llu,\"kind\":\"%s\",\"name\":", (unsigned long long)index,
                    wf_unit_kind_name(u->kind));
            put_json_str(o->out, u->name.p, u->name.n);
            fprintf(o->out, ",\"part\":%u,\"flags\":\"%s\",\"text\":", u->part, fl);
            put_json_str(o->out, o->text, tl);
            fputs("}\n", o->out);
        } else {
            fprintf(o->out, "%llu\t%s\t", (unsigned long long)index, wf_unit_kind_name(u->kind));
            put_json_str(o->out, u->name.p, u->name.n);
            fprintf(o->out, "\t%s\t", fl);
            put_json_str(o->out, o->text, tl);
            putc('\n', o->out);
        }
    }
}

static void print_invalid(emit_opts_t *o, uint64_t index, const char *reason)
{
    if (o->json) {
        fprintf(o->out, "{\"index\":%llu,\"invalid\":", (unsigned long long)index);
        put_json_str(o->out, reason, strlen(reason));
        fputs("}\n", o->out);
    } else {
        fprintf(o->out, "%llu\tinvalid\t\"\"\t-\t", (unsigned long long)index);
        put_json_str(o->out, reason, strlen(reason));
        putc('\n', o->out);
    }
}

int wf_cmd_extract(int argc, char **argv)
{
    int fmt = WF_INPUT_RAW;
    bool stats_out = false;
    emit_opts_t o = { .out = stdout };
    const char *names[64];
    size_t nnames = 0;
    int i = 1;
    for (; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--format") && i + 1 < argc) {
            fmt = wf_input_format_parse(argv[++i]);
            if (fmt < 0) {
                fprintf(stderr, "wafer extract: unknown format '%s'\n", argv[i]);
                return 2;
            }
        } else if (!strncmp(a, "--format=", 9)) {
            fmt = wf_input_format_parse(a + 9);
            if (fmt < 0) {
                fprintf(stderr, "wafer extract: unknown format '%s'\n", a + 9);
                return 2;
            }
        } else if (!strcmp(a, "--json")) {
            o.json = true;
        } else if (!strcmp(a, "--all")) {
            o.all = true;
        } else if (!strcmp(a, "--stats")) {
            stats_out = true;
        } else if (!strcmp(a, "--name") && i + 1 < argc) {
            if (nnames == WF_ARRAY_LEN(names)) {
                fprintf(stderr, "wafer extract: at most %zu --name options\n", WF_ARRAY_LEN(names));
                return 2;
            }
            names[nnames++] = argv[++i];
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--")) {
            i++;
            break;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "wafer extract: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            break;
        }
    }
    if (!nnames)
        names[nnames++] = "q";

    wf_inspect_conf_t conf;
    wf_inspect_conf_default(&conf);
    wf_inspect_stats_t stats = { 0 };
    wf_arena_t arena;
    /* bounded per request: units, scratch, text budget and slack */
    wf_arena_init(&arena, 256 * 1024, 16u << 20);
    o.text_cap = wf_unit_text_max(&conf);
    o.text = malloc(o.text_cap);
    if (!o.text) {
        fprintf(stderr, "wafer extract: out of memory\n");
        return 2;
    }
    int rc = 0;
    uint64_t next_index = 0, invalid = 0, inspect_ns = 0;
    const char *stdin_only[] = { "-" };
    char **files = argc > i ? argv + i : (char **)stdin_only;
    int nfiles = argc > i ? argc - i : 1;
    for (int f = 0; f < nfiles && rc == 0; f++) {
        FILE *fp = strcmp(files[f], "-") ? fopen(files[f], "rb") : stdin;
        if (!fp) {
            fprintf(stderr, "wafer extract: %s: %s\n", files[f], strerror(errno));
            rc = 2;
            break;
        }
        wf_input_t *in = wf_input_new((wf_input_format_t)fmt, fp, 0);
        if (!in) {
            fprintf(stderr, "wafer extract: out of memory\n");
            rc = 2;
        } else {
            wf_input_set_index(in, next_index);
            wf_input_record_t rec;
            int r;
            while ((r = wf_input_next(in, &rec)) > 0) {
                if (rec.invalid) {
                    invalid++;
                    print_invalid(&o, rec.index, rec.reason);
                    continue;
                }
                wf_units_t us = { 0 };
                uint64_t t0 = wf_now_ns();
                if (rec.is_value) {
                    const char *nm = names[rec.index % nnames];
                    stats.requests++;
                    wf_inspect_value(&conf, WF_UNIT_QUERY, wf_str_c(nm), rec.value, &arena, &us, &stats);
                } else {
                    wf_inspect_request(&conf, &rec.req, rec.body, &arena, &us, &stats);
                }
                inspect_ns += wf_now_ns() - t0;
                print_units(&o, rec.index, &us);
                wf_arena_reset(&arena);
            }
            if (r < 0) {
                fprintf(stderr, "wafer extract: %s: %s\n", files[f], wf_strerror(r));
                rc = 2;
            }
            next_index = wf_input_index(in);
            wf_input_free(in);
        }
        if (fp != stdin)
            fclose(fp);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "wafer extract: write error\n");
        rc = 2;
    }
    if (stats_out)
        fprintf(stderr,
                "requests %llu invalid %llu units %llu safe %llu dropped %llu truncated %llu chunked %llu "
                "bytes_cut %llu json_invalid %llu json_too_deep %llu multipart_invalid %llu inspect_ms %.1f\n",
                (unsigned long long)stats.requests, (unsigned long long)invalid, (unsigned long long)stats.units,
                (unsigned long long)stats.units_safe, (unsigned long long)stats.units_dropped,
                (unsigned long long)stats.units_truncated, (unsigned long long)stats.units_chunked,
                (unsigned long long)stats.bytes_cut, (unsigned long long)stats.json_invalid,
                (unsigned long long)stats.json_too_deep, (unsigned long long)stats.multipart_invalid,
                inspect_ns / 1e6);
    free(o.text);
    wf_arena_free(&arena);
    return rc;
}
