/*
 * wafer inspection: the definition of exactly what text a model sees.
 *
 * From a parsed request (wf_http_request_t, the body bytes, the content type)
 * wf_inspect_request() produces inspection units: the decoded path and its
 * segments, each query argument, each body field (form, JSON, multipart),
 * each cookie and a configured set of headers. Each unit is
 * {kind, name, text, flags}: `text` is the decoded value, `name` locates it
 * (argument name, JSON path, header name) and wf_unit_text() builds the model
 * input from the three ("wafer-unit-v1", docs/inspection.md). A fast path
 * marks units that cannot carry an attack (WF_UNIT_F_SAFE): they are not sent
 * to the model.
 *
 * Everything a request produces lives in a caller-provided arena, and every
 * size is bounded by wf_inspect_conf_t; what a limit cuts is flagged on the
 * unit (or the request) and counted in wf_inspect_stats_t.
 *
 * The readers at the end turn input files (raw HTTP, payload lines, JSON
 * lines, nginx access logs) into requests, for `wafer extract` and
 * `wafer scan`.
 */
#ifndef WAFER_INSPECT_H
#define WAFER_INSPECT_H

#include "wafer/common.h"
#include "wafer/core.h"
#include "wafer/http.h"
#include <stdbool.h>
#include <stdio.h>

/* What a unit is. The names (wf_unit_kind_name) are part of the model text. */
typedef enum {
    WF_UNIT_PATH,      /* the whole decoded path; name "" */
    WF_UNIT_SEGMENT,   /* one path segment (when the path has two or more); name: its 1-based position */
    WF_UNIT_QUERY,     /* a query argument's value; name: the argument's decoded name */
    WF_UNIT_FORM,      /* an application/x-www-form-urlencoded body field */
    WF_UNIT_JSON,      /* a JSON leaf (string, number, true/false/null); name: its path, e.g. user.tags[2] */
    WF_UNIT_MULTIPART, /* a multipart/form-data field value (parts without a file name) */
    WF_UNIT_FILENAME,  /* a multipart file name; name: the field name. File contents are not inspected */
    WF_UNIT_COOKIE,    /* one cookie; name: the cookie name */
    WF_UNIT_HEADER,    /* a configured header; name: the header name in lower case */
    WF_UNIT_BODY,      /* a body that is not form/JSON/multipart, or is invalid as declared */
    WF_UNIT__COUNT
} wf_unit_kind_t;

/* "path", "segment", "query", "form", "json", "multipart", "filename",
 * "cookie", "header", "body". */
const char *wf_unit_kind_name(wf_unit_kind_t k);

/* Unit flags. The first group says what decoding found: each is a reason not
 * to take the fast path. */
enum {
    WF_UNIT_F_MULTI_DECODED = 1u << 0, /* percent-decoded more than once (double encoding) */
    WF_UNIT_F_DECODE_LIMIT = 1u << 1,  /* still percent-encoded after max_decode_passes */
    WF_UNIT_F_PCT_U = 1u << 2,         /* %uXXXX decoded */
    WF_UNIT_F_OVERLONG = 1u << 3,      /* overlong UTF-8 (%c0%af) normalised to its code point */
    WF_UNIT_F_BAD_UTF8 = 1u << 4,      /* invalid UTF-8 bytes (shown as Latin-1 or %XX) */
    WF_UNIT_F_CONTROL = 1u << 5,       /* NUL or other control characters (shown as %XX) */
    WF_UNIT_F_ENTITY = 1u << 6,        /* HTML character references decoded */
    WF_UNIT_F_UNICODE = 1u << 7,       /* compatibility characters (fullwidth, ligatures, ...) folded to ASCII */
    WF_UNIT_F_JSON_ESCAPE = 1u << 8,   /* a JSON \u escape produced an ASCII character */
    WF_UNIT_F_TRUNCATED = 1u << 9,     /* text cut by a limit (max_value_bytes or max_total_bytes) */
    WF_UNIT_F_CHUNK = 1u << 10,        /* one window of a value longer than max_unit_bytes (see wf_unit_t.part) */
    WF_UNIT_F_NAME_CUT = 1u << 11,     /* name cut to max_name_bytes */
    /* informational, no anomaly */
    WF_UNIT_F_PERCENT = 1u << 12,      /* percent-decoded once */
    WF_UNIT_F_SAFE = 1u << 15,         /* fast path: cannot carry an attack; not sent to the model */
};
#define WF_UNIT_F_ANOMALY_MASK 0x0fffu

/* Writes the flag names set in `flags`, comma-separated ("multi_decoded,safe"),
 * or "-" when none; returns the length (like snprintf). */
size_t wf_unit_flags_str(uint32_t flags, char *out, size_t cap);

typedef struct {
    wf_unit_kind_t kind;
    uint32_t flags;   /* WF_UNIT_F_* */
    uint32_t part;    /* 0 for a whole value; 1, 2, ... for the windows of a long one */
    wf_str_t name;    /* decoded, valid UTF-8; arena memory */
    wf_str_t text;    /* decoded value, valid UTF-8; arena memory */
} wf_unit_t;

/* Request-level flags: what a limit or a malformed body did. */
enum {
    WF_INSPECT_R_UNITS_DROPPED = 1u << 0,   /* more units than max_units: the rest were dropped */
    WF_INSPECT_R_BYTES_CUT = 1u << 1,       /* max_total_bytes reached: later text was not inspected */
    WF_INSPECT_R_BODY_CUT = 1u << 2,        /* body longer than max_body_bytes: the rest was not inspected */
    WF_INSPECT_R_JSON_INVALID = 1u << 3,    /* declared JSON body is not valid JSON: inspected as one body unit */
    WF_INSPECT_R_JSON_DEPTH = 1u << 4,      /* JSON nested deeper than max_json_depth: inspected as one body unit */
    WF_INSPECT_R_MULTIPART_INVALID = 1u << 5, /* malformed multipart body (or no boundary): inspected as one body unit */
    WF_INSPECT_R_MULTIPART_PARTS = 1u << 6, /* more parts than max_multipart_parts: the rest were not inspected */
};

/* The name of request flag 1u << bit ("units_dropped", "bytes_cut", "body_cut",
 * "json_invalid", "json_depth", "multipart_invalid", "multipart_parts"), or
 * NULL past the last one. */
const char *wf_inspect_rflag_name(unsigned bit);

/* Cumulative counters; the caller owns them (one per worker) and may pass NULL. */
typedef struct {
    uint64_t requests;
    uint64_t units;           /* units produced (including safe ones) */
    uint64_t units_safe;      /* of those, marked safe by the fast path */
    uint64_t units_dropped;   /* over max_units */
    uint64_t units_truncated; /* WF_UNIT_F_TRUNCATED */
    uint64_t units_chunked;   /* values split into windows */
    uint64_t bytes_text;      /* bytes of unit text produced */
    uint64_t bytes_cut;       /* input bytes not inspected because of a limit */
    uint64_t bodies_cut;
    uint64_t json_invalid;
    uint64_t json_too_deep;
    uint64_t multipart_invalid;
    uint64_t multipart_parts_dropped;
    uint64_t no_memory;       /* arena exhausted (treated like a limit) */
} wf_inspect_stats_t;

#define WF_INSPECT_MAX_HEADERS 32

/* What to inspect and the limits. wf_inspect_conf_default() fills the
 * defaults documented per field. */
typedef struct {
    size_t max_units;          /* units per request (256) */
    size_t max_unit_bytes;     /* text bytes of one unit (1024); a longer value is split into windows */
    size_t window_overlap;     /* bytes each window repeats from the previous one (64) */
    size_t max_total_bytes;    /* text bytes over all units of a request (65536) */
    size_t max_value_bytes;    /* raw bytes of one value read for decoding (65536) */
    size_t max_name_bytes;     /* bytes of a unit name (128) */
    size_t max_body_bytes;     /* body bytes inspected (1 MiB) */
    size_t max_json_depth;     /* nesting of JSON arrays/objects (32) */
    size_t max_multipart_parts;/* parts of a multipart body (64) */
    size_t max_part_header_bytes; /* header block of one multipart part (1024) */
    unsigned max_decode_passes;/* percent-decoding passes (3) */
    bool path_segments;        /* emit segment units (true) */
    bool fast_path;            /* mark safe units (true) */
    size_t safe_max_len;       /* the fast path's longest value (64) */
    /* Headers inspected as units (case-insensitive names). Default: User-Agent,
     * Referer, Origin, X-Forwarded-For, X-Forwarded-Host, X-Real-IP,
     * True-Client-IP, Forwarded, From. */
    wf_str_t headers[WF_INSPECT_MAX_HEADERS];
    size_t nheaders;
} wf_inspect_conf_t;

void wf_inspect_conf_default(wf_inspect_conf_t *c);

/* The units of one request (arena memory). */
typedef struct {
    wf_unit_t *units;
    size_t n;
    uint32_t flags; /* WF_INSPECT_R_* */
} wf_units_t;

/* Extracts the units of a request. `req` gives method, path, query and
 * headers (parsed by wf_http_parse_request or built by hand); `body` is the
 * whole decoded body (after chunked decoding), possibly empty; its type comes
 * from req's Content-Type header. Allocates only from `arena`; when the
 * arena's limit is reached the remaining units are dropped and counted
 * (stats->no_memory). Returns 0, or -EINVAL for a bad argument. */
int wf_inspect_request(const wf_inspect_conf_t *conf, const wf_http_request_t *req, wf_str_t body,
                       wf_arena_t *arena, wf_units_t *out, wf_inspect_stats_t *stats);

/* Extracts one value as a unit of `kind` with raw (wire-form) name and value,
 * appended to `out` (initialise *out to zero first). Used for payload lines
 * (`wafer extract --format lines`) and tests. Returns 0 or -EINVAL. */
int wf_inspect_value(const wf_inspect_conf_t *conf, wf_unit_kind_t kind, wf_str_t raw_name, wf_str_t raw_value,
                     wf_arena_t *arena, wf_units_t *out, wf_inspect_stats_t *stats);

/* ---- decoding (exposed for tests and tools) ---- */

enum {
    WF_DECODE_PERCENT = 1u << 0,  /* %XX and %uXXXX, repeated up to max passes */
    WF_DECODE_PLUS = 1u << 1,     /* '+' is a space (first pass only: query, form, cookie) */
    WF_DECODE_ENTITIES = 1u << 2, /* HTML character references, one pass */
    WF_DECODE_NAME = 1u << 3,     /* also show TAB, LF, CR as %XX (names are one line) */
};

/* Decodes `in` into `out` (at most out_cap bytes, cut at a character
 * boundary): percent passes, then HTML entities, then UTF-8 normalisation
 * (overlong forms to their code point, invalid bytes 0xA0-0xFF as Latin-1
 * and 0x80-0x9F as %XX, compatibility characters whose decomposition is ASCII
 * folded to it, control characters as %XX). `scratch` must hold in.n bytes.
 * Returns the bytes written; *flags gets WF_UNIT_F_* (TRUNCATED when cut). */
size_t wf_inspect_decode(wf_str_t in, uint32_t mode, unsigned max_passes, char *scratch, char *out,
                         size_t out_cap, uint32_t *flags);

/* Convenience for tests: decodes into arena memory (capacity 4 * in.n + 16). */
wf_str_t wf_inspect_decode_str(wf_arena_t *a, wf_str_t in, uint32_t mode, unsigned max_passes, uint32_t *flags);

/* ---- the fast path ---- */

/* True if the unit cannot carry an attack (docs/inspection.md "Fast path"):
 * no decoding anomaly, name and text short and made of a safe charset, no
 * traversal/comment/hex-literal shapes, no listed keyword. */
bool wf_unit_is_safe(const wf_inspect_conf_t *conf, const wf_unit_t *u);
/* The value part of the rule alone, for a text inspected as `kind`. */
bool wf_inspect_text_is_safe(wf_unit_kind_t kind, wf_str_t text, size_t max_len);

/* ---- the model text ---- */

#define WF_TEXT_FORMAT "wafer-unit-v1"

/* Builds the model input of a unit: "<kind> <name>: <text>", or
 * "<kind>: <text>" when the name is empty. Writes at most cap bytes and returns
 * the full length it needs (size `out` with wf_unit_text_max). */
size_t wf_unit_text(const wf_unit_t *u, char *out, size_t cap);
/* Longest text wf_unit_text can produce under `conf`. */
size_t wf_unit_text_max(const wf_inspect_conf_t *conf);

/* ---- input readers (wafer extract / wafer scan) ---- */

typedef enum { WF_INPUT_RAW, WF_INPUT_LINES, WF_INPUT_JSONL, WF_INPUT_NGINX, WF_INPUT_JSONLOG } wf_input_format_t;

/* Parses "raw", "lines", "jsonl", "nginx", "json-log"; -1 if unknown.
 * json-log: one JSON access-log object per line (wafer's own, nginx
 * escape=json, Caddy, Traefik, ECS, Google Cloud); the field names it reads
 * are listed in docs/scan.md. */
int wf_input_format_parse(const char *s);

#define WF_INPUT_MAX_HEADERS 128

/* One request read from an input. Slices point into the reader's buffers
 * and stay valid until the next wf_input_next call on the same reader. */
typedef struct {
    uint64_t index;        /* 0-based position of the request in the input (lines: line number - 1) */
    bool invalid;          /* the record could not be read as a request */
    char reason[160];      /* why, when invalid ("http: bare_lf", "json: ...") */
    wf_http_request_t req; /* method, path, query, headers */
    wf_str_t body;         /* decoded body */
    bool is_value;         /* lines format: `value` is one payload, inspected as a query value */
    wf_str_t value;
} wf_input_record_t;

typedef struct wf_input wf_input_t;

/* Opens a reader on a stream (not closed by the reader). max_record bounds one
 * request or line (bytes; 0 = 16 MiB); longer records are reported invalid
 * and skipped. Raw input accepts bare LF line ends (files, not the network:
 * CSIC 2010 mixes CRLF and LF). Returns NULL when out of memory. */
wf_input_t *wf_input_new(wf_input_format_t fmt, FILE *fp, size_t max_record);
/* Reads the next record: 1 (rec filled; check rec->invalid), 0 at the end,
 * negative errno on a read error. */
int wf_input_next(wf_input_t *in, wf_input_record_t *rec);
/* Numbering continues across files: set the next record's index. */
void wf_input_set_index(wf_input_t *in, uint64_t next_index);
uint64_t wf_input_index(const wf_input_t *in);
void wf_input_free(wf_input_t *in);

/* jsonl: appends the current record's fields that are not the request (all
 * but "raw"; or all but "url", "method", "headers", "body") to `out` as JSON
 * object members, each preceded by a comma (`,"id":7,"tag":"x"`), copied
 * byte for byte from the input line, in their order there. A member whose
 * name is in `reserved` (a NULL-terminated list) is written as "input_NAME"
 * so that it cannot collide with the caller's own keys. Appends nothing for
 * other formats or an invalid record. Returns 0 or a negative errno
 * (-WF_ELIMIT when out's maximum is reached). Call before the next
 * wf_input_next. */
int wf_input_extra_json(const wf_input_t *in, const char *const *reserved, wf_buf_t *out);

#endif
