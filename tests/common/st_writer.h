/*
 * A minimal safetensors writer for tests and benchmarks (header-only):
 * writes tensors in the given order with an 8-byte aligned data section.
 */
#ifndef WAFER_TEST_ST_WRITER_H
#define WAFER_TEST_ST_WRITER_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const char *dtype; /* "F32", "F16", "BF16", "I32", ... */
    int ndim;
    int64_t shape[8];
    const void *data;
    size_t nbytes;
} stw_tensor_t;

/* Returns 0 on success, -1 on failure. */
static inline int stw_write(const char *path, const stw_tensor_t *t, int n)
{
    size_t cap = 256 + (size_t)n * 256, len = 0;
    char *h = malloc(cap);
    if (!h)
        return -1;
    len += snprintf(h + len, cap - len, "{");
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        len += snprintf(h + len, cap - len, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
                        t[i].dtype);
        for (int d = 0; d < t[i].ndim; d++)
            len += snprintf(h + len, cap - len, d ? ",%lld" : "%lld", (long long)t[i].shape[d]);
        len += snprintf(h + len, cap - len, "],\"data_offsets\":[%zu,%zu]}", off, off + t[i].nbytes);
        off += t[i].nbytes;
        if (len >= cap - 64) {
            free(h);
            return -1;
        }
    }
    len += snprintf(h + len, cap - len, "}");
    while (len % 8)
        h[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(h);
        return -1;
    }
    uint64_t hl = len;
    unsigned char le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (unsigned char)(hl >> (8 * i));
    int ok = fwrite(le, 1, 8, f) == 8 && fwrite(h, 1, len, f) == len;
    for (int i = 0; ok && i < n; i++)
        ok = t[i].nbytes == 0 || fwrite(t[i].data, 1, t[i].nbytes, f) == t[i].nbytes;
    free(h);
    return (fclose(f) == 0 && ok) ? 0 : -1;
}

#endif
