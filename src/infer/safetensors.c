/* safetensors reader: mmap, strict header validation, dtype conversion (see wafer/infer.h). */
#include "wafer/infer.h"
#include "infer/jsonutil.h"

#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The reference implementation's cap on the JSON header. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)
/* A valid header nests three levels (root, tensor, shape); anything deeper is
 * rejected before jansson builds it. */
#define ST_MAX_DEPTH 8

struct wf_safetensors {
    char *name;           /* file name, for messages */
    void *map;            /* mmap'ed file, or NULL for wf_st_open_mem */
    size_t map_len;
    wf_tensor_t *tensors; /* in data-offset order */
    size_t n;
    size_t *by_name;      /* indices into tensors, sorted by name */
    char *names;          /* one block holding every name */
    size_t nmeta;
    char **meta;          /* key, value, key, value, ... */
};

const char *wf_status_str(wf_status_t s)
{
    switch (s) {
    case WF_OK: return "ok";
    case WF_ERR_IO: return "I/O error";
    case WF_ERR_FORMAT: return "invalid file contents";
    case WF_ERR_UNSUPPORTED: return "unsupported";
    case WF_ERR_NOMEM: return "out of memory";
    case WF_ERR_INVALID: return "invalid argument";
    case WF_ERR_LIMIT: return "limit exceeded";
    case WF_ERR_BACKEND: return "backend failure";
    }
    return "unknown status";
}

static const char *const dtype_names[WF_DT__COUNT] = { "F32", "F16", "BF16", "I64", "I32", "U8" };
static const size_t dtype_sizes[WF_DT__COUNT] = { 4, 2, 2, 8, 4, 1 };

const char *wf_dtype_name(wf_dtype_t t)
{
    return (unsigned)t < WF_DT__COUNT ? dtype_names[t] : "?";
}

size_t wf_dtype_size(wf_dtype_t t)
{
    return (unsigned)t < WF_DT__COUNT ? dtype_sizes[t] : 0;
}

#define fail wf_json_fail

void wf_st_close(wf_safetensors_t *st)
{
    if (!st)
        return;
    if (st->map)
        munmap(st->map, st->map_len);
    for (size_t i = 0; i < 2 * st->nmeta; i++)
        free(st->meta[i]);
    free(st->meta);
    free(st->tensors);
    free(st->by_name);
    free(st->names);
    free(st->name);
    free(st);
}

static int cmp_offsets(const void *a, const void *b)
{
    const wf_tensor_t *x = a, *y = b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py)
        return px < py ? -1 : 1;
    if (x->nbytes != y->nbytes)
        return x->nbytes < y->nbytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_names(const void *a, const void *b, void *arg)
{
    const wf_tensor_t *t = arg;
    return strcmp(t[*(const size_t *)a].name, t[*(const size_t *)b].name);
}

/* Parses one tensor entry into t (name and data pointer set by the caller
 * from the offsets returned in begin and end). */
static wf_status_t parse_entry(const char *file, const char *qname, json_t *v, uint64_t data_len, wf_tensor_t *t,
                               uint64_t *begin, uint64_t *end, wf_err_t *err)
{
    if (!json_is_object(v))
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': entry is not an object", qname);
    json_t *jdt = json_object_get(v, "dtype"), *jshape = json_object_get(v, "shape"),
           *joff = json_object_get(v, "data_offsets");
    if (!jdt || !jshape || !joff)
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': missing %s", qname,
                    !jdt ? "dtype" : !jshape ? "shape" : "data_offsets");
    if (json_object_size(v) != 3) {
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets")) {
                char qk[72];
                wf_json_quote_name(k, qk, sizeof qk);
                return fail(err, WF_ERR_FORMAT, file, "tensor '%s': unknown field '%s'", qname, qk);
            }
        }
    }
    if (!json_is_string(jdt))
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': dtype is not a string", qname);
    const char *dts = json_string_value(jdt);
    int dt = -1;
    for (int i = 0; i < WF_DT__COUNT; i++)
        if (!strcmp(dts, dtype_names[i]) && strlen(dts) == json_string_length(jdt))
            dt = i;
    if (dt < 0) {
        char qd[72];
        wf_json_quote_name(dts, qd, sizeof qd);
        return fail(err, WF_ERR_UNSUPPORTED, file,
                    "tensor '%s': dtype '%s' is not supported (F32, F16, BF16, I64, I32, U8)", qname, qd);
    }
    t->dtype = (wf_dtype_t)dt;

    if (!json_is_array(jshape))
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': shape is not a list", qname);
    size_t nd = json_array_size(jshape);
    if (nd > WF_TENSOR_MAX_DIMS)
        return fail(err, WF_ERR_UNSUPPORTED, file, "tensor '%s': %zu dimensions (at most %d supported)", qname, nd,
                    WF_TENSOR_MAX_DIMS);
    bool zero = false;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(jshape, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return fail(err, WF_ERR_FORMAT, file, "tensor '%s': shape[%zu] is not a non-negative integer", qname, d);
        t->shape[d] = (int64_t)json_integer_value(x);
        zero |= t->shape[d] == 0;
    }
    /* The product is bounded by what the data section can hold at every
     * step, so it never overflows; a zero dimension makes any shape empty. */
    uint64_t numel = 1, esize = wf_dtype_size(t->dtype), cap = data_len / esize;
    for (size_t d = 0; d < nd && !zero; d++) {
        uint64_t dim = (uint64_t)t->shape[d];
        if (numel > cap / dim)
            return fail(err, WF_ERR_FORMAT, file, "tensor '%s': shape needs more bytes than the data section has (%llu)",
                        qname, (unsigned long long)data_len);
        numel *= dim;
    }
    if (zero)
        numel = 0;
    t->ndim = (int)nd;
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(numel * esize);

    if (!json_is_array(joff) || json_array_size(joff) != 2)
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': data_offsets is not a list of two integers", qname);
    json_t *jb = json_array_get(joff, 0), *je = json_array_get(joff, 1);
    if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 || json_integer_value(je) < 0)
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': data_offsets are not non-negative integers", qname);
    *begin = (uint64_t)json_integer_value(jb);
    *end = (uint64_t)json_integer_value(je);
    if (*begin > *end)
        return fail(err, WF_ERR_FORMAT, file, "tensor '%s': data_offsets begin %llu is after end %llu", qname,
                    (unsigned long long)*begin, (unsigned long long)*end);
    if (*end > data_len)
        return fail(err, WF_ERR_FORMAT, file,
                    "tensor '%s': data_offsets end %llu is past the end of the data section (%llu bytes)", qname,
                    (unsigned long long)*end, (unsigned long long)data_len);
    if (*end - *begin != t->nbytes)
        return fail(err, WF_ERR_FORMAT, file,
                    "tensor '%s': data_offsets span %llu bytes but shape and dtype %s need %zu", qname,
                    (unsigned long long)(*end - *begin), wf_dtype_name(t->dtype), t->nbytes);
    return WF_OK;
}

static wf_status_t parse(wf_safetensors_t *st, const uint8_t *buf, size_t len, wf_err_t *err)
{
    const char *file = st->name;
    if (len < 8)
        return fail(err, WF_ERR_FORMAT, file, "file is %zu bytes, shorter than the 8-byte header length", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | buf[i];
    if (hlen == 0)
        return fail(err, WF_ERR_FORMAT, file, "header length is 0");
    if (hlen > ST_MAX_HEADER)
        return fail(err, WF_ERR_FORMAT, file, "header length %llu exceeds the limit of %u bytes",
                    (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > len - 8)
        return fail(err, WF_ERR_FORMAT, file, "header length %llu runs past the end of the file (%zu bytes)",
                    (unsigned long long)hlen, len);
    const uint8_t *hdr = buf + 8;
    if (hdr[0] != '{')
        return fail(err, WF_ERR_FORMAT, file, "header does not start with '{'");
    if (wf_json_depth(hdr, hlen) > ST_MAX_DEPTH)
        return fail(err, WF_ERR_FORMAT, file, "header JSON nests deeper than %d levels", ST_MAX_DEPTH);
    json_error_t je;
    json_t *root = json_loadb((const char *)hdr, hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return fail(err, WF_ERR_FORMAT, file, "header is not valid JSON: %s (at byte %d of the header)", je.text,
                    je.position);
    wf_status_t s = WF_OK;
    if (!json_is_object(root)) {
        s = fail(err, WF_ERR_FORMAT, file, "header is not a JSON object");
        goto out;
    }

    const uint8_t *data = hdr + hlen;
    uint64_t data_len = len - 8 - hlen;
    size_t n = json_object_size(root), names_len = 0;
    json_t *jmeta = json_object_get(root, "__metadata__");
    if (jmeta)
        n--;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t klen = json_object_iter_key_len(json_object_key_to_iter(key));
        char qname[72];
        wf_json_quote_name(key, qname, sizeof qname);
        if (klen == 0) {
            s = fail(err, WF_ERR_FORMAT, file, "a tensor has an empty name");
            goto out;
        }
        if (strlen(key) != klen) {
            s = fail(err, WF_ERR_FORMAT, file, "tensor name '%s' contains a NUL byte", qname);
            goto out;
        }
        names_len += klen + 1;
    }
    if (jmeta) {
        if (!json_is_object(jmeta)) {
            s = fail(err, WF_ERR_FORMAT, file, "__metadata__ is not an object");
            goto out;
        }
        size_t nm = json_object_size(jmeta);
        st->meta = calloc(2 * nm + 1, sizeof *st->meta);
        if (!st->meta) {
            s = fail(err, WF_ERR_NOMEM, file, "out of memory");
            goto out;
        }
        json_object_foreach(jmeta, key, val) {
            char qk[72];
            wf_json_quote_name(key, qk, sizeof qk);
            if (!json_is_string(val) || strlen(json_string_value(val)) != json_string_length(val)) {
                s = fail(err, WF_ERR_FORMAT, file, "__metadata__ value of '%s' is not a string", qk);
                goto out;
            }
            st->meta[2 * st->nmeta] = strdup(key);
            st->meta[2 * st->nmeta + 1] = strdup(json_string_value(val));
            st->nmeta++;
            if (!st->meta[2 * st->nmeta - 2] || !st->meta[2 * st->nmeta - 1]) {
                s = fail(err, WF_ERR_NOMEM, file, "out of memory");
                goto out;
            }
        }
    }

    st->tensors = calloc(n ? n : 1, sizeof *st->tensors);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    st->names = malloc(names_len ? names_len : 1);
    uint64_t *offs = calloc(n ? 2 * n : 1, sizeof *offs);
    if (!st->tensors || !st->by_name || !st->names || !offs) {
        free(offs);
        s = fail(err, WF_ERR_NOMEM, file, "out of memory");
        goto out;
    }
    size_t i = 0, npos = 0;
    json_object_foreach(root, key, val) {
        if (val == jmeta)
            continue;
        char qname[72];
        wf_json_quote_name(key, qname, sizeof qname);
        wf_tensor_t *t = &st->tensors[i];
        size_t klen = strlen(key);
        memcpy(st->names + npos, key, klen + 1);
        t->name = st->names + npos;
        npos += klen + 1;
        s = parse_entry(file, qname, val, data_len, t, &offs[2 * i], &offs[2 * i + 1], err);
        if (s != WF_OK) {
            free(offs);
            goto out;
        }
        t->data = data + offs[2 * i];
        i++;
    }
    free(offs);
    st->n = n;

    /* Tensors must tile the data section: sorted by offset, each begins where
     * the previous ends, the first at 0, the last at the end. */
    qsort(st->tensors, n, sizeof *st->tensors, cmp_offsets);
    const uint8_t *pos = data;
    for (i = 0; i < n; i++) {
        const wf_tensor_t *t = &st->tensors[i];
        char qname[72];
        wf_json_quote_name(t->name, qname, sizeof qname);
        if ((const uint8_t *)t->data > pos) {
            s = fail(err, WF_ERR_FORMAT, file, "data section has a gap of %zu bytes at offset %zu (before tensor '%s')",
                     (size_t)((const uint8_t *)t->data - pos), (size_t)(pos - data), qname);
            goto out;
        }
        if ((const uint8_t *)t->data < pos) {
            char qprev[72];
            wf_json_quote_name(st->tensors[i - 1].name, qprev, sizeof qprev);
            s = fail(err, WF_ERR_FORMAT, file, "tensor '%s' overlaps tensor '%s'", qname, qprev);
            goto out;
        }
        pos += t->nbytes;
    }
    if ((uint64_t)(pos - data) != data_len) {
        s = fail(err, WF_ERR_FORMAT, file, "data section has %llu bytes after the last tensor that no tensor covers",
                 (unsigned long long)(data_len - (uint64_t)(pos - data)));
        goto out;
    }
    for (i = 0; i < n; i++)
        st->by_name[i] = i;
    qsort_r(st->by_name, n, sizeof *st->by_name, cmp_names, st->tensors);
out:
    json_decref(root);
    return s;
}

static wf_status_t st_new(const char *name, wf_safetensors_t **out, wf_err_t *err)
{
    *out = NULL;
    wf_safetensors_t *st = calloc(1, sizeof *st);
    if (!st || !(st->name = strdup(name ? name : "(memory)"))) {
        free(st);
        return fail(err, WF_ERR_NOMEM, name ? name : "(memory)", "out of memory");
    }
    *out = st;
    return WF_OK;
}

wf_status_t wf_st_open_mem(const void *buf, size_t len, const char *name, wf_safetensors_t **out, wf_err_t *err)
{
    if (!out)
        return fail(err, WF_ERR_INVALID, name ? name : "(memory)", "no output pointer");
    if (!buf && len)
        return fail(err, WF_ERR_INVALID, name ? name : "(memory)", "NULL buffer");
    wf_safetensors_t *st;
    wf_status_t s = st_new(name, &st, err);
    if (s != WF_OK)
        return s;
    s = parse(st, buf, len, err);
    if (s != WF_OK) {
        wf_st_close(st);
        return s;
    }
    *out = st;
    return WF_OK;
}

wf_status_t wf_st_open(const char *path, wf_safetensors_t **out, wf_err_t *err)
{
    if (!out || !path)
        return fail(err, WF_ERR_INVALID, path ? path : "(null)", "no path or output pointer");
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return fail(err, WF_ERR_IO, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0) {
        int e = errno;
        close(fd);
        return fail(err, WF_ERR_IO, path, "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return fail(err, WF_ERR_IO, path, "not a regular file");
    }
    if ((uint64_t)sb.st_size < 8) {
        close(fd);
        return fail(err, WF_ERR_FORMAT, path, "file is %lld bytes, shorter than the 8-byte header length",
                    (long long)sb.st_size);
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        close(fd);
        return fail(err, WF_ERR_LIMIT, path, "file is too large to map");
    }
    size_t len = (size_t)sb.st_size;
    /* The mapping is private and read-only; a file truncated by someone else
     * while mapped would fault, so model files must not be rewritten in place
     * (write a new file and rename it). */
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return fail(err, WF_ERR_IO, path, "cannot map: %s", strerror(e));
    wf_safetensors_t *st;
    wf_status_t s = st_new(path, &st, err);
    if (s != WF_OK) {
        munmap(map, len);
        return s;
    }
    st->map = map;
    st->map_len = len;
    s = parse(st, map, len, err);
    if (s != WF_OK) {
        wf_st_close(st);
        return s;
    }
    *out = st;
    return WF_OK;
}

size_t wf_st_count(const wf_safetensors_t *st)
{
    return st ? st->n : 0;
}

const wf_tensor_t *wf_st_at(const wf_safetensors_t *st, size_t i)
{
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const wf_tensor_t *wf_st_find(const wf_safetensors_t *st, const char *name)
{
    if (!st || !name)
        return NULL;
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const wf_tensor_t *t = &st->tensors[st->by_name[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *wf_st_metadata(const wf_safetensors_t *st, const char *key)
{
    if (!st || !key)
        return NULL;
    for (size_t i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta[2 * i], key))
            return st->meta[2 * i + 1];
    return NULL;
}

float wf_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* subnormal: shift the mantissa up to an implicit leading 1 */
            uint32_t e = 113;
            while (!(mant & 0x400u)) {
                mant <<= 1;
                e--;
            }
            bits = sign | e << 23 | (mant & 0x3ffu) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | mant << 13; /* inf, or NaN keeping its payload */
    } else {
        bits = sign | (exp + 112) << 23 | mant << 13;
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

float wf_bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The file is little-endian and tensor data may be unaligned: read bytes. */
static inline uint16_t ld16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static inline uint32_t ld32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

wf_status_t wf_tensor_to_f32(const wf_tensor_t *t, float *out, size_t n)
{
    if (!t || (!out && n) || t->numel < 0 || (uint64_t)t->numel != n)
        return WF_ERR_INVALID;
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case WF_DT_F32:
        for (size_t i = 0; i < n; i++) {
            uint32_t b = ld32(p + 4 * i);
            memcpy(&out[i], &b, sizeof b);
        }
        return WF_OK;
    case WF_DT_F16:
        for (size_t i = 0; i < n; i++)
            out[i] = wf_f16_to_f32(ld16(p + 2 * i));
        return WF_OK;
    case WF_DT_BF16:
        for (size_t i = 0; i < n; i++)
            out[i] = wf_bf16_to_f32(ld16(p + 2 * i));
        return WF_OK;
    case WF_DT_I64:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)(int64_t)((uint64_t)ld32(p + 8 * i) | (uint64_t)ld32(p + 8 * i + 4) << 32);
        return WF_OK;
    case WF_DT_I32:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)(int32_t)ld32(p + 4 * i);
        return WF_OK;
    case WF_DT_U8:
        for (size_t i = 0; i < n; i++)
            out[i] = (float)p[i];
        return WF_OK;
    default:
        return WF_ERR_INVALID;
    }
}
