/* libFuzzer target: the safetensors reader on arbitrary bytes. Every tensor
 * of an accepted file is converted, so that an offset or size the validator
 * let through that points outside the input is caught by ASan. */
#include "wafer/infer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a private copy of exactly `size` bytes: any read past it is reported */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);
    wf_safetensors_t *st = NULL;
    wf_err_t err;
    if (wf_st_open_mem(buf, size, "fuzz", &st, &err) == WF_OK) {
        static float out[1 << 16];
        for (size_t i = 0; i < wf_st_count(st); i++) {
            const wf_tensor_t *t = wf_st_at(st, i);
            if (!t || wf_st_find(st, t->name) != t)
                abort();
            if ((const uint8_t *)t->data < buf || (const uint8_t *)t->data + t->nbytes > buf + size)
                abort();
            if (t->numel >= 0 && (size_t)t->numel <= WF_ARRAY_LEN(out) &&
                wf_tensor_to_f32(t, out, (size_t)t->numel) != WF_OK)
                abort();
        }
        wf_st_close(st);
    } else if (!memchr(err.msg, 0, sizeof err.msg) || strncmp(err.msg, "fuzz: ", 6) != 0) {
        abort(); /* every rejection carries a message naming the input */
    }
    free(buf);
    return 0;
}
