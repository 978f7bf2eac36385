/* safetensors reader: valid files of each dtype, exact conversions, and every rejection path. */
#include "test.h"
#include "wafer/infer.h"

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <unistd.h>

/* A file in memory: 8-byte LE header length, header, data. */
static uint8_t *build(const char *hdr, const void *data, size_t dlen, size_t *len)
{
    size_t hl = strlen(hdr);
    *len = 8 + hl + dlen;
    uint8_t *b = malloc(*len ? *len : 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hl >> (8 * i));
    memcpy(b + 8, hdr, hl);
    if (dlen)
        memcpy(b + 8 + hl, data, dlen);
    return b;
}

/* Opens hdr+data from memory; returns the status, message in err. */
static wf_status_t try_open(const char *hdr, const void *data, size_t dlen, wf_err_t *err)
{
    size_t len;
    uint8_t *b = build(hdr, data, dlen, &len);
    wf_safetensors_t *st = NULL;
    err->msg[0] = 0;
    wf_status_t s = wf_st_open_mem(b, len, "t.safetensors", &st, err);
    if (s == WF_OK) {
        /* every tensor converts without reading outside the buffer (ASan) */
        for (size_t i = 0; i < wf_st_count(st); i++) {
            const wf_tensor_t *t = wf_st_at(st, i);
            float *f = malloc((size_t)t->numel * sizeof *f + 1);
            CHECK(wf_tensor_to_f32(t, f, (size_t)t->numel) == WF_OK);
            free(f);
        }
        wf_st_close(st);
    }
    free(b);
    return s;
}

/* Expects a rejection with status s and a message containing `needle`. */
#define REJECT(hdr, data, dlen, s, needle)                                                     \
    do {                                                                                       \
        wf_err_t e_;                                                                           \
        wf_status_t got_ = try_open(hdr, data, dlen, &e_);                                     \
        CHECK_EQ_INT(got_, s);                                                                 \
        if (!strstr(e_.msg, needle) || !strstr(e_.msg, "t.safetensors")) {                     \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, e_.msg, \
                    needle);                                                                   \
            wf_test_failed_now = 1;                                                            \
        }                                                                                      \
    } while (0)

static uint8_t zeros[256];

TEST(valid_all_dtypes)
{
    /* two F32, one F16, one BF16, one I64, one I32, one U8, one empty, one scalar */
    float f32[6] = { 1.0f, -2.5f, 0.0f, 3.25f, 1e-3f, -1e30f };
    uint16_t f16[3] = { 0x3c00, 0xc000, 0x0001 };  /* 1, -2, 2^-24 */
    uint16_t bf16[2] = { 0x3f80, 0xc0a0 };         /* 1, -5 */
    int64_t i64[2] = { -7, 1ll << 40 };
    int32_t i32[1] = { -123456 };
    uint8_t u8[3] = { 0, 128, 255 };
    float scalar = 42.0f;
    uint8_t data[24 + 6 + 4 + 16 + 4 + 3 + 4];
    size_t o = 0;
    memcpy(data + o, f32, 24), o += 24;
    memcpy(data + o, f16, 6), o += 6;
    memcpy(data + o, bf16, 4), o += 4;
    memcpy(data + o, i64, 16), o += 16;
    memcpy(data + o, i32, 4), o += 4;
    memcpy(data + o, u8, 3), o += 3;
    memcpy(data + o, &scalar, 4), o += 4;
    CHECK_EQ_INT(o, sizeof data);
    const char *hdr =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
        "\"h\":{\"dtype\":\"F16\",\"shape\":[3],\"data_offsets\":[24,30]},"
        "\"bf\":{\"dtype\":\"BF16\",\"shape\":[1,2],\"data_offsets\":[30,34]},"
        "\"ids\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[34,50]},"
        "\"i\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[50,54]},"
        "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[54,54]},"
        "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[54,57]},"
        "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[57,61]}}   ";
    size_t len;
    uint8_t *b = build(hdr, data, sizeof data, &len);
    wf_safetensors_t *st = NULL;
    wf_err_t err;
    CHECK_EQ_INT(wf_st_open_mem(b, len, "t.safetensors", &st, &err), WF_OK);
    if (!st) {
        fprintf(stderr, "%s\n", err.msg);
        free(b);
        return;
    }
    CHECK_EQ_INT(wf_st_count(st), 8);
    CHECK_EQ_STR(wf_st_metadata(st, "format"), "pt");
    CHECK(wf_st_metadata(st, "nope") == NULL);
    /* wf_st_at is in data order */
    CHECK_EQ_STR(wf_st_at(st, 0)->name, "b.weight");
    CHECK_EQ_STR(wf_st_at(st, 7)->name, "s");
    CHECK(wf_st_at(st, 8) == NULL);
    CHECK(wf_st_find(st, "missing") == NULL);
    CHECK(wf_st_find(st, "") == NULL);

    const wf_tensor_t *t = wf_st_find(st, "b.weight");
    CHECK(t && t->dtype == WF_DT_F32 && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3 && t->numel == 6 &&
          t->nbytes == 24);
    float out[8];
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 6), WF_OK);
    CHECK(memcmp(out, f32, sizeof f32) == 0);
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 5), WF_ERR_INVALID); /* n must equal numel */

    t = wf_st_find(st, "h");
    CHECK(t && t->dtype == WF_DT_F16);
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 3), WF_OK);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));

    t = wf_st_find(st, "bf");
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 2), WF_OK);
    CHECK(out[0] == 1.0f && out[1] == -5.0f);

    t = wf_st_find(st, "ids");
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 2), WF_OK);
    CHECK(out[0] == -7.0f && out[1] == 1099511627776.0f);
    t = wf_st_find(st, "i");
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 1), WF_OK);
    CHECK(out[0] == -123456.0f);
    t = wf_st_find(st, "u");
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 3), WF_OK);
    CHECK(out[0] == 0.0f && out[1] == 128.0f && out[2] == 255.0f);
    t = wf_st_find(st, "empty");
    CHECK(t && t->numel == 0 && t->nbytes == 0 && t->ndim == 2);
    CHECK_EQ_INT(wf_tensor_to_f32(t, NULL, 0), WF_OK);
    t = wf_st_find(st, "s");
    CHECK(t && t->ndim == 0 && t->numel == 1);
    CHECK_EQ_INT(wf_tensor_to_f32(t, out, 1), WF_OK);
    CHECK(out[0] == 42.0f);
    wf_st_close(st);
    free(b);
}

TEST(f16_every_value_exact)
{
    /* against an independent formula for all 65536 halves */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t e = (h >> 10) & 31, m = h & 1023;
        float sign = (h & 0x8000) ? -1.0f : 1.0f;
        float got = wf_f16_to_f32((uint16_t)h);
        if (e == 31) {
            if (m == 0)
                bad += !(isinf(got) && (got < 0) == (sign < 0));
            else
                bad += !isnan(got);
            continue;
        }
        float want = e == 0 ? sign * ldexpf((float)m, -24) : sign * ldexpf((float)(1024 + m), (int)e - 25);
        bad += memcmp(&got, &want, sizeof got) != 0; /* also tells -0 from +0 */
    }
    CHECK_EQ_INT(bad, 0);
    /* a NaN keeps its payload */
    float nan = wf_f16_to_f32(0x7e01);
    uint32_t bits;
    memcpy(&bits, &nan, 4);
    CHECK_EQ_INT(bits, 0x7fc02000u);
    CHECK(wf_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(wf_f16_to_f32(0x0400) == ldexpf(1.0f, -14));
    CHECK(wf_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
}

TEST(bf16_exact)
{
    CHECK(wf_bf16_to_f32(0x0000) == 0.0f);
    CHECK(wf_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(wf_bf16_to_f32(0x0001) == ldexpf(1.0f, -133)); /* smallest subnormal */
    CHECK(isinf(wf_bf16_to_f32(0xff80)) && wf_bf16_to_f32(0xff80) < 0);
    CHECK(isnan(wf_bf16_to_f32(0x7fc1)));
    CHECK(wf_bf16_to_f32(0x7f7f) == 3.3895313892515355e38f);
}

TEST(unaligned_data)
{
    /* header of odd length puts the data at an odd address */
    float v[2] = { 1.5f, -0.25f };
    const char *hdr = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} ";
    CHECK(strlen(hdr) % 2 == 1);
    size_t len;
    uint8_t *b = build(hdr, v, 8, &len);
    wf_safetensors_t *st;
    wf_err_t err;
    CHECK_EQ_INT(wf_st_open_mem(b, len, "t.safetensors", &st, &err), WF_OK);
    float out[2];
    CHECK_EQ_INT(wf_tensor_to_f32(wf_st_find(st, "x"), out, 2), WF_OK);
    CHECK(out[0] == 1.5f && out[1] == -0.25f);
    wf_st_close(st);
    free(b);
}

TEST(empty_file_of_tensors)
{
    wf_err_t err;
    CHECK_EQ_INT(try_open("{}", NULL, 0, &err), WF_OK);
    CHECK_EQ_INT(try_open("{\"__metadata__\":{}}", NULL, 0, &err), WF_OK);
}

TEST(reject_short_and_bad_lengths)
{
    wf_safetensors_t *st = NULL;
    wf_err_t err;
    uint8_t b[16] = { 0 };
    CHECK_EQ_INT(wf_st_open_mem(b, 7, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "shorter than the 8-byte") != NULL);
    CHECK(st == NULL);
    CHECK_EQ_INT(wf_st_open_mem(b, 0, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK_EQ_INT(wf_st_open_mem(b, 16, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "header length is 0") != NULL);
    b[0] = 9; /* 9 > 16 - 8 */
    CHECK_EQ_INT(wf_st_open_mem(b, 16, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "past the end") != NULL);
    memset(b, 0xff, 8); /* 2^64 - 1 */
    CHECK_EQ_INT(wf_st_open_mem(b, 16, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "exceeds the limit") != NULL);
    memset(b, 0, 8);
    b[0] = 0x01, b[1] = 0xe1, b[2] = 0xf5, b[3] = 0x05; /* 100000001 */
    CHECK_EQ_INT(wf_st_open_mem(b, 16, "t.safetensors", &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "exceeds the limit") != NULL);
    CHECK_EQ_INT(wf_st_open_mem(NULL, 5, "t.safetensors", &st, &err), WF_ERR_INVALID);
}

TEST(reject_bad_json)
{
    REJECT("[1,2]", NULL, 0, WF_ERR_FORMAT, "does not start with '{'");
    REJECT(" {}", NULL, 0, WF_ERR_FORMAT, "does not start with '{'");
    REJECT("{", NULL, 0, WF_ERR_FORMAT, "not valid JSON");
    REJECT("{\"a\":}", NULL, 0, WF_ERR_FORMAT, "not valid JSON");
    REJECT("{} x", NULL, 0, WF_ERR_FORMAT, "not valid JSON");
    REJECT("{\"a\":\"\\u0000\"}", NULL, 0, WF_ERR_FORMAT, "not valid JSON");
    REJECT("{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT,
           "");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[[[[[[[[[[0]]]]]]]]]],\"data_offsets\":[0,0]}}", NULL, 0,
           WF_ERR_FORMAT, "nests deeper");
    /* invalid UTF-8 */
    REJECT("{\"\xff\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT,
           "not valid JSON");
    /* a NUL byte inside the header */
    const char h[] = "{\"a\":1\0}";
    uint8_t b[8 + sizeof h - 1];
    memset(b, 0, 8);
    b[0] = sizeof h - 1;
    memcpy(b + 8, h, sizeof h - 1);
    wf_safetensors_t *st = NULL;
    wf_err_t err;
    CHECK_EQ_INT(wf_st_open_mem(b, sizeof b, "t.safetensors", &st, &err), WF_ERR_FORMAT);
}

TEST(reject_duplicates_and_names)
{
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}",
           NULL, 0, WF_ERR_FORMAT, "duplicate");
    REJECT("{\"\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT, "empty name");
    /* duplicate keys inside an entry are as bad */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0,
           WF_ERR_FORMAT, "duplicate");
}

TEST(reject_entry_structure)
{
    REJECT("{\"a\":[]}", NULL, 0, WF_ERR_FORMAT, "not an object");
    REJECT("{\"a\":{\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT, "missing dtype");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT, "missing shape");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[0]}}", NULL, 0, WF_ERR_FORMAT, "missing data_offsets");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0],\"x\":1}}", NULL, 0, WF_ERR_FORMAT,
           "unknown field 'x'");
    REJECT("{\"a\":{\"dtype\":32,\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT,
           "dtype is not a string");
    REJECT("{\"a\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_UNSUPPORTED,
           "dtype 'F64'");
    REJECT("{\"a\":{\"dtype\":\"f32\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_UNSUPPORTED,
           "dtype 'f32'");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT,
           "shape is not a list");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}}", NULL, 0, WF_ERR_FORMAT,
           "shape[0] is not a non-negative integer");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", zeros, 4, WF_ERR_FORMAT,
           "shape[0]");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", zeros, 4,
           WF_ERR_UNSUPPORTED, "9 dimensions");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", zeros, 4, WF_ERR_FORMAT,
           "list of two integers");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,\"4\"]}}", zeros, 4, WF_ERR_FORMAT,
           "non-negative integers");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", zeros, 4, WF_ERR_FORMAT,
           "non-negative integers");
    REJECT("{\"__metadata__\":[],\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0,
           WF_ERR_FORMAT, "__metadata__ is not an object");
    REJECT("{\"__metadata__\":{\"k\":1}}", NULL, 0, WF_ERR_FORMAT, "__metadata__ value of 'k'");
}

TEST(reject_sizes_and_offsets)
{
    /* size mismatch: 2 floats need 8 bytes */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", zeros, 8, WF_ERR_FORMAT,
           "need 8");
    REJECT("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}}", zeros, 8, WF_ERR_FORMAT,
           "need 4");
    /* begin after end */
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", zeros, 4, WF_ERR_FORMAT,
           "is after end");
    /* out of bounds */
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[8],\"data_offsets\":[0,8]}}", zeros, 4, WF_ERR_FORMAT,
           "shape needs more bytes");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}", zeros, 4, WF_ERR_FORMAT,
           "past the end of the data section");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[9223372036854775807,9223372036854775807]}}",
           zeros, 4, WF_ERR_FORMAT, "past the end");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,18446744073709551615]}}", zeros, 4,
           WF_ERR_FORMAT, "not valid JSON"); /* jansson: too big integer */
    /* huge shapes whose product overflows 64 bits */
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,0]}}", NULL, 0,
           WF_ERR_FORMAT, "shape needs more bytes");
    REJECT("{\"a\":{\"dtype\":\"F32\",\"shape\":[2,9223372036854775807],\"data_offsets\":[0,8]}}", zeros, 8,
           WF_ERR_FORMAT, "shape needs more bytes");
    /* ... but a zero anywhere makes it empty, as in the reference */
    wf_err_t err;
    CHECK_EQ_INT(try_open("{\"a\":{\"dtype\":\"F32\",\"shape\":[9223372036854775807,0],\"data_offsets\":[0,0]}}",
                          NULL, 0, &err),
                 WF_OK);
    /* overlap */
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[2,6]}}",
           zeros, 6, WF_ERR_FORMAT, "overlaps");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]}}",
           zeros, 4, WF_ERR_FORMAT, "overlaps");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
           "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[2,2]}}",
           zeros, 4, WF_ERR_FORMAT, "overlaps");
    /* holes: at the start, between, at the end */
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}", zeros, 4, WF_ERR_FORMAT,
           "gap of 2 bytes at offset 0");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
           "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]}}",
           zeros, 4, WF_ERR_FORMAT, "gap of 1 bytes at offset 1");
    REJECT("{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}", zeros, 4, WF_ERR_FORMAT,
           "2 bytes after the last tensor");
    REJECT("{}", zeros, 1, WF_ERR_FORMAT, "1 bytes after the last tensor");
    /* out of order in the header but tiling the data: fine */
    CHECK_EQ_INT(try_open("{\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[2,4]},"
                          "\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]}}",
                          zeros, 4, &err),
                 WF_OK);
}

TEST(hostile_name_in_message)
{
    /* control bytes in a name do not reach the message verbatim */
    REJECT("{\"a\\nb\\u001b[31m\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]}}", NULL, 0,
           WF_ERR_UNSUPPORTED, "'a?b?[31m'");
}

TEST(open_file)
{
    char path[] = "/tmp/wafer-st-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    float v[3] = { 1, 2, 3 };
    size_t len;
    uint8_t *b = build("{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}}", v, 12, &len);
    CHECK(write(fd, b, len) == (ssize_t)len);
    close(fd);
    wf_safetensors_t *st = NULL;
    wf_err_t err;
    CHECK_EQ_INT(wf_st_open(path, &st, &err), WF_OK);
    float out[3];
    CHECK(st && wf_tensor_to_f32(wf_st_find(st, "w"), out, 3) == WF_OK && out[2] == 3.0f);
    wf_st_close(st);
    /* truncated file: the tensor runs past the end */
    CHECK(truncate(path, (off_t)len - 1) == 0);
    CHECK_EQ_INT(wf_st_open(path, &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "data section"));
    CHECK(truncate(path, 5) == 0);
    CHECK_EQ_INT(wf_st_open(path, &st, &err), WF_ERR_FORMAT);
    CHECK(strstr(err.msg, "shorter than the 8-byte"));
    unlink(path);
    CHECK_EQ_INT(wf_st_open(path, &st, &err), WF_ERR_IO);
    CHECK(strstr(err.msg, path) && strstr(err.msg, "cannot open"));
    CHECK_EQ_INT(wf_st_open("/tmp", &st, &err), WF_ERR_IO);
    free(b);
}

TEST(status_and_dtype_names)
{
    CHECK_EQ_STR(wf_status_str(WF_OK), "ok");
    CHECK_EQ_STR(wf_status_str(WF_ERR_FORMAT), "invalid file contents");
    CHECK_EQ_STR(wf_dtype_name(WF_DT_BF16), "BF16");
    CHECK_EQ_INT(wf_dtype_size(WF_DT_I64), 8);
    CHECK_EQ_INT(wf_dtype_size(WF_DT__COUNT), 0);
}

/* The fuzz seeds (tests/fuzz/gen_safetensors_corpus.py): valid_* open, bad_* do not. */
TEST(fuzz_seed_corpus)
{
    const char *dir = "tests/fuzz/corpus/safetensors";
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d)
        return;
    int valid = 0, bad = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        bool want_ok = !strncmp(de->d_name, "valid_", 6);
        if (!want_ok && strncmp(de->d_name, "bad_", 4))
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        wf_safetensors_t *st = NULL;
        wf_err_t err;
        wf_status_t s = wf_st_open(path, &st, &err);
        if ((s == WF_OK) != want_ok) {
            fprintf(stderr, "%s: %s\n", path, s == WF_OK ? "accepted" : err.msg);
            wf_test_failed_now = 1;
        }
        valid += want_ok;
        bad += !want_ok;
        wf_st_close(st);
    }
    closedir(d);
    CHECK(valid >= 5 && bad >= 10);
}

TEST_MAIN()
