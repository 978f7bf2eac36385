/* wafer classify: print label probabilities for texts, for people to try a model.
 *
 *   wafer classify -m MODEL_DIR [--backend cpu] [--threads N] [--json] [TEXT...]
 *
 * Texts come from the arguments, or one per stdin line when there are none.
 * Output: a table (one row per text), or one JSON object per line with --json.
 * Exit 0 on success, 2 on any error (the reason on stderr). */
#include "commands.h"
#include "wafer/infer.h"
#include "wafer/policy.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define CLASSIFY_BATCH 64

static void usage(FILE *fp)
{
    fprintf(fp, "usage: wafer classify -m MODEL_DIR [--backend cpu|cuda|auto] [--threads N] [--json] [--] [TEXT...]\n"
                "       texts from the arguments (after -- if one starts with '-'), or one per stdin line\n");
}

struct classify {
    const wf_model_meta_t *meta;
    wf_session_t *sess;
    bool json;
    int width; /* table column width: the longest label, at least 9 */
    float *probs;
};

/* Writes s as the body of a JSON string: valid UTF-8 kept, control
 * characters escaped, invalid bytes replaced by U+FFFD. */
static void put_json_str(const char *s, size_t n)
{
    putchar('"');
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            printf("\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            printf("\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            putchar(c);
            i++;
        } else {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
            if (k > 0) {
                fwrite(s + i, 1, (size_t)k, stdout);
                i += (size_t)k;
            } else {
                fputs("\\ufffd", stdout);
                i++;
            }
        }
    }
    putchar('"');
}

/* Writes s for a terminal: printable ASCII and valid UTF-8 as they are, other bytes as \xNN. */
static void put_text(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) {
            putchar(c);
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = c >= 0x80 ? utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                                          (utf8proc_ssize_t)(n - i), &cp)
                                       : -1;
        if (k > 0 && utf8proc_category(cp) != UTF8PROC_CATEGORY_CC) {
            fwrite(s + i, 1, (size_t)k, stdout);
            i += (size_t)k;
        } else {
            printf("\\x%02x", c);
            i++;
        }
    }
}

static void print_header(const struct classify *c)
{
    if (c->json)
        return;
    for (int l = 0; l < c->meta->num_labels; l++)
        printf("%-*s ", c->width, c->meta->labels[l]);
    printf("%-*s %-7s text\n", c->width, "class", "verdict");
}

static void print_result(const struct classify *c, const char *text, size_t len, const float *p)
{
    const wf_model_meta_t *m = c->meta;
    int top = 0;
    for (int l = 1; l < m->num_labels; l++)
        if (p[l] > p[top])
            top = l;
    wf_unit_verdict_t uv;
    bool attack = wf_verdict_unit(p, m->thresholds, m->num_labels, &uv);
    if (c->json) {
        fputs("{\"text\":", stdout);
        put_json_str(text, len);
        fputs(",\"class\":", stdout);
        put_json_str(m->labels[top], strlen(m->labels[top]));
        printf(",\"verdict\":\"%s\",\"probs\":{", attack ? "attack" : "benign");
        for (int l = 0; l < m->num_labels; l++) {
            if (l)
                putchar(',');
            put_json_str(m->labels[l], strlen(m->labels[l]));
            printf(":%.6g", p[l]);
        }
        fputs("}}\n", stdout);
    } else {
        for (int l = 0; l < m->num_labels; l++)
            printf("%-*.6f ", c->width, p[l]);
        printf("%-*s %-7s ", c->width, m->labels[top], attack ? "attack" : "benign");
        put_text(text, len);
        putchar('\n');
    }
}

static int run_batch(struct classify *c, const char *const *texts, const size_t *lens, int n)
{
    if (n == 0)
        return 0;
    wf_status_t s = wf_session_classify(c->sess, texts, lens, n, c->probs);
    if (s != WF_OK) {
        fprintf(stderr, "wafer classify: %s\n", wf_status_str(s));
        return 2;
    }
    for (int i = 0; i < n; i++)
        print_result(c, texts[i], lens[i], c->probs + (size_t)i * (size_t)c->meta->num_labels);
    return 0;
}

/* Texts from stdin, one per line (a trailing \r is dropped), in batches. */
static int run_stdin(struct classify *c)
{
    char *texts[CLASSIFY_BATCH] = { NULL };
    size_t caps[CLASSIFY_BATCH] = { 0 }, lens[CLASSIFY_BATCH];
    int n = 0, rc = 0;
    for (;;) {
        ssize_t r = getline(&texts[n], &caps[n], stdin);
        if (r < 0)
            break;
        size_t len = (size_t)r;
        if (len && texts[n][len - 1] == '\n')
            len--;
        if (len && texts[n][len - 1] == '\r')
            len--;
        lens[n++] = len;
        if (n == CLASSIFY_BATCH) {
            if ((rc = run_batch(c, (const char *const *)texts, lens, n)))
                break;
            n = 0;
        }
    }
    if (!rc && ferror(stdin)) {
        fprintf(stderr, "wafer classify: reading stdin failed\n");
        rc = 2;
    }
    if (!rc)
        rc = run_batch(c, (const char *const *)texts, lens, n);
    for (int i = 0; i < CLASSIFY_BATCH; i++)
        free(texts[i]);
    return rc;
}

int wf_cmd_classify(int argc, char **argv)
{
    const char *dir = NULL, *backend = "cpu";
    int threads = 1, first_text = argc;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--")) {
            first_text = i + 1;
            break;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model") || !strcmp(a, "--backend") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "wafer classify: %s needs a value\n", a);
                usage(stderr);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--backend")) {
                backend = v;
            } else if (!strcmp(a, "--threads")) {
                char *end;
                long t = strtol(v, &end, 10);
                if (*v == '\0' || *end != '\0' || t < 1 || t > 1024) {
                    fprintf(stderr, "wafer classify: --threads: '%s' is not a number from 1 to 1024\n", v);
                    return 2;
                }
                threads = (int)t;
            } else {
                dir = v;
            }
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "wafer classify: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        } else {
            first_text = i;
            break;
        }
    }
    if (!dir) {
        fprintf(stderr, "wafer classify: -m MODEL_DIR is required\n");
        usage(stderr);
        return 2;
    }

    wf_err_t err = { { 0 } };
    wf_model_t *model = NULL;
    wf_status_t s = wf_model_load(dir, &model, &err);
    if (s != WF_OK) {
        fprintf(stderr, "wafer classify: %s\n", err.msg[0] ? err.msg : wf_status_str(s));
        return 2;
    }
    const wf_model_meta_t *meta = wf_model_get_meta(model);
    wf_session_opts_t opts = {
        .backend = backend,
        .threads = threads,
        .max_batch = CLASSIFY_BATCH,
        .max_tokens = CLASSIFY_BATCH * meta->max_len,
    };
    struct classify c = { .meta = meta, .json = json, .width = 9 };
    for (int l = 0; l < meta->num_labels; l++)
        c.width = WF_MAX(c.width, (int)strlen(meta->labels[l]));
    s = wf_session_new(model, &opts, &c.sess, &err);
    if (s != WF_OK) {
        fprintf(stderr, "wafer classify: %s\n", err.msg[0] ? err.msg : wf_status_str(s));
        wf_model_free(model);
        return 2;
    }
    c.probs = calloc((size_t)CLASSIFY_BATCH * (size_t)meta->num_labels, sizeof *c.probs);
    int rc = 0;
    if (!c.probs) {
        fprintf(stderr, "wafer classify: out of memory\n");
        rc = 2;
    } else {
        print_header(&c);
        if (first_text < argc) {
            for (int i = first_text; i < argc && !rc; i += CLASSIFY_BATCH) {
                int n = WF_MIN(CLASSIFY_BATCH, argc - i);
                size_t lens[CLASSIFY_BATCH];
                for (int k = 0; k < n; k++)
                    lens[k] = strlen(argv[i + k]);
                rc = run_batch(&c, (const char *const *)(argv + i), lens, n);
            }
        } else {
            rc = run_stdin(&c);
        }
    }
    if (fflush(stdout) != 0 && !rc) {
        fprintf(stderr, "wafer classify: writing the output failed\n");
        rc = 2;
    }
    free(c.probs);
    wf_session_free(c.sess);
    wf_model_free(model);
    return rc;
}
