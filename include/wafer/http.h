/*
 * wafer HTTP/1.1 message parsing (RFC 9110 / RFC 9112), strict by default.
 *
 * The parsers are allocation-free and stateless between calls in the manner of
 * picohttpparser: give them the bytes received so far; they return the number
 * of bytes the header block takes (request/status line, fields and the empty
 * line), WF_HTTP_INCOMPLETE when more bytes are needed, or WF_HTTP_ERROR with
 * an error code that maps to a status (400, 413, 414, 431, 501, ...).
 * A header block is bounded by limits->max_header_bytes, so re-parsing from
 * the start when more bytes arrive costs a bounded amount.
 *
 * Framing is decided by the parser, never by the caller: Content-Length and
 * Transfer-Encoding are tracked as flags and every ambiguous combination is an
 * error (request smuggling defence).
 *
 * Bodies in chunked coding go through wf_http_chunked_t, an incremental
 * decoder that reports where chunk data lies without modifying the buffer, so
 * that a proxy can forward the bytes as received and an inspector can read
 * the decoded data.
 */
#ifndef WAFER_HTTP_H
#define WAFER_HTTP_H

#include "wafer/common.h"
#include <stdbool.h>

#define WF_HTTP_INCOMPLETE (-2)
#define WF_HTTP_ERROR (-1)

/* Why a message was refused. Each maps to a status code and a stable name
 * (used in logs and metrics). */
typedef enum {
    WF_HTTP_OK = 0,
    WF_HTTP_E_METHOD,            /* 400 invalid method token */
    WF_HTTP_E_TARGET,            /* 400 invalid request-target */
    WF_HTTP_E_VERSION,           /* 400 (505 for HTTP/2+ or 0.9 framing) invalid version */
    WF_HTTP_E_REQUEST_LINE,      /* 400 malformed request line */
    WF_HTTP_E_STATUS_LINE,       /* 502 (response) malformed status line */
    WF_HTTP_E_HEADER_NAME,       /* 400 invalid field name (token characters only) */
    WF_HTTP_E_HEADER_VALUE,      /* 400 invalid field value character (CTL, DEL) */
    WF_HTTP_E_BARE_CR,           /* 400 CR not followed by LF */
    WF_HTTP_E_BARE_LF,           /* 400 LF without CR (strict mode) */
    WF_HTTP_E_OBS_FOLD,          /* 400 obsolete line folding */
    WF_HTTP_E_SPACE_BEFORE_COLON,/* 400 whitespace between field name and colon */
    WF_HTTP_E_URI_TOO_LONG,      /* 414 */
    WF_HTTP_E_HEADERS_TOO_LARGE, /* 431 header block over max_header_bytes */
    WF_HTTP_E_TOO_MANY_HEADERS,  /* 431 more than max_headers fields */
    WF_HTTP_E_CL_AND_TE,         /* 400 Content-Length together with Transfer-Encoding */
    WF_HTTP_E_CONTENT_LENGTH,    /* 400 malformed Content-Length */
    WF_HTTP_E_CONTENT_LENGTH_DUP,/* 400 several differing Content-Length values */
    WF_HTTP_E_TE_NOT_CHUNKED,    /* 400 Transfer-Encoding whose final coding is not chunked, or chunked twice */
    WF_HTTP_E_TE_UNSUPPORTED,    /* 501 a transfer coding other than chunked */
    WF_HTTP_E_TE_HTTP10,         /* 400 Transfer-Encoding in an HTTP/1.0 message */
    WF_HTTP_E_HOST_MISSING,      /* 400 HTTP/1.1 request without Host */
    WF_HTTP_E_HOST_DUP,          /* 400 several Host fields */
    WF_HTTP_E_HOST_INVALID,      /* 400 Host value not a valid authority */
    WF_HTTP_E_EXPECT,            /* 417 an expectation other than 100-continue */
    WF_HTTP_E_BODY_TOO_LARGE,    /* 413 Content-Length or chunked total over max_body_bytes */
    WF_HTTP_E_CHUNK,             /* 400 malformed chunked framing */
    WF_HTTP_E_CHUNK_EXT_TOO_LONG,/* 400 chunk line or extensions over max_chunk_line */
    WF_HTTP_E_TRAILER,           /* 400 malformed or oversized trailer section */
    WF_HTTP_E_VERSION_UNSUPPORTED,/* 505 well-formed HTTP/x.y other than 1.0 and 1.1 */
    WF_HTTP_E__COUNT
} wf_http_err_t;

const char *wf_http_err_name(wf_http_err_t e);  /* "cl_and_te", ... */
int wf_http_err_status(wf_http_err_t e);         /* 400, 413, ... */

/* Leniency flags: each relaxes one strict rule; 0 is fully strict. */
enum {
    WF_HTTP_LENIENT_BARE_LF = 1u << 0, /* accept LF alone as a line end (not bare CR) */
    WF_HTTP_LENIENT_TARGET_8BIT = 1u << 1, /* accept bytes 0x80-0xff (raw UTF-8) in the request-target */
};

typedef struct {
    size_t max_header_bytes;  /* request/status line + fields + empty line */
    size_t max_headers;       /* number of fields */
    size_t max_uri;           /* request-target bytes */
    uint64_t max_body_bytes;  /* declared or decoded body size; 0 = no limit */
    size_t max_chunk_line;    /* chunk-size line with extensions */
    size_t max_trailer_bytes; /* whole trailer section */
    uint32_t lenient;         /* WF_HTTP_LENIENT_* */
} wf_http_limits_t;

/* Defaults: 16 KiB header block, 100 fields, 8 KiB URI, 1 GiB body, 4 KiB
 * chunk line, 16 KiB trailers, strict. */
void wf_http_limits_default(wf_http_limits_t *lim);

typedef struct {
    wf_str_t name;
    wf_str_t value; /* leading/trailing whitespace removed */
} wf_http_header_t;

/* Message framing flags, set by the parsers. */
enum {
    WF_HTTP_F_CONTENT_LENGTH = 1u << 0, /* body length given by Content-Length */
    WF_HTTP_F_CHUNKED = 1u << 1,        /* Transfer-Encoding: chunked */
    WF_HTTP_F_UNTIL_CLOSE = 1u << 2,    /* (responses) body ends when the connection closes */
    WF_HTTP_F_NO_BODY = 1u << 3,        /* message has no body */
    WF_HTTP_F_KEEP_ALIVE = 1u << 4,     /* connection may be reused after this message */
    WF_HTTP_F_EXPECT_CONTINUE = 1u << 5,/* Expect: 100-continue */
    WF_HTTP_F_UPGRADE = 1u << 6,        /* Connection: upgrade with an Upgrade field */
    WF_HTTP_F_ABSOLUTE_FORM = 1u << 7,  /* request-target in absolute-form */
    WF_HTTP_F_ASTERISK_FORM = 1u << 8,  /* OPTIONS * */
    WF_HTTP_F_AUTHORITY_FORM = 1u << 9, /* CONNECT host:port */
};
/* Notes on the flags (docs/http-parsing.md has all the rules):
 * - A response to HEAD, a 1xx, 204 or 304 has NO_BODY; CONTENT_LENGTH and
 *   content_length may still report its Content-Length field: test NO_BODY
 *   first.
 * - On a response, UPGRADE means the connection becomes a tunnel after the
 *   header block (101 with an Upgrade field, or 2xx to CONNECT); NO_BODY is
 *   set too and KEEP_ALIVE is not.
 * - Repeated identical Content-Length values ("5, 5" or two fields) are
 *   accepted as one value (RFC 9110 8.6): a proxy forwards one
 *   Content-Length field, not the received ones.
 * - A request with neither Content-Length nor Transfer-Encoding has NO_BODY;
 *   a response with neither is UNTIL_CLOSE. */

typedef struct {
    wf_str_t method;
    wf_str_t target;      /* request-target exactly as received */
    wf_str_t path;        /* path part of the target; empty for asterisk and authority form, and for an
                           * absolute-form target without a path (forward it as "/") */
    wf_str_t query;       /* after '?', without it; empty if none */
    wf_str_t host;        /* Host field value (or the authority of absolute- and authority-form, which
                           * wins over Host); empty if there is none */
    int minor_version;    /* HTTP/1.x */
    uint32_t flags;       /* WF_HTTP_F_* */
    uint64_t content_length;
    wf_http_header_t *headers;
    size_t nheaders;
    wf_http_err_t error;  /* set when WF_HTTP_ERROR is returned */
} wf_http_request_t;

/* Parses a request header block. `hdrs` has room for lim->max_headers
 * entries; the result's slices point into `buf`. Returns the header block's
 * length, WF_HTTP_INCOMPLETE or WF_HTTP_ERROR (req->error says why). */
int wf_http_parse_request(const char *buf, size_t len, const wf_http_limits_t *lim, wf_http_request_t *req,
                          wf_http_header_t *hdrs);

typedef struct {
    int minor_version;
    int status;
    wf_str_t reason;
    uint32_t flags;
    uint64_t content_length;
    wf_http_header_t *headers;
    size_t nheaders;
    wf_http_err_t error;
} wf_http_response_t;

/* Parses a response header block. `request_method` decides framing (a
 * response to HEAD, or a 1xx/204/304, has no body; a 2xx to CONNECT is a
 * tunnel). Same return convention as wf_http_parse_request. */
int wf_http_parse_response(const char *buf, size_t len, const wf_http_limits_t *lim, wf_str_t request_method,
                           wf_http_response_t *res, wf_http_header_t *hdrs);

/* Incremental chunked-body decoder. */
typedef struct {
    int state;
    uint64_t chunk_left;  /* data bytes left in the current chunk */
    uint64_t total;       /* decoded bytes so far */
    size_t line_len;      /* bytes of the current size line or trailer */
    size_t trailer_len;   /* bytes of trailer section so far */
    const wf_http_limits_t *lim;
    wf_http_err_t error;
} wf_http_chunked_t;

void wf_http_chunked_init(wf_http_chunked_t *c, const wf_http_limits_t *lim);

/* Feeds bytes of a chunked body. Consumes framing and at most one run of
 * chunk data per call: *consumed says how many bytes of buf were used and
 * *data points at the decoded data among them (possibly empty). Returns 1 when
 * the body (last chunk and trailers) is complete, 0 when more input is needed
 * or more remains in buf, WF_HTTP_ERROR on malformed framing (c->error). */
int wf_http_chunked_feed(wf_http_chunked_t *c, const char *buf, size_t len, size_t *consumed, wf_str_t *data);

/* Header helpers. */
const wf_http_header_t *wf_http_header_find(const wf_http_header_t *hdrs, size_t n, const char *name);
/* True if a comma-separated field (e.g. Connection) of the message holds `token` (case-insensitive). */
bool wf_http_header_has_token(const wf_http_header_t *hdrs, size_t n, const char *name, const char *token);
/* True for hop-by-hop fields that a proxy must not forward (Connection,
 * Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade,
 * Proxy-Authenticate/Authorization). Fields named in Connection are also
 * hop-by-hop: check those with wf_http_header_has_token. */
bool wf_http_is_hop_by_hop(wf_str_t name);

/* Standard reason phrase of a status code ("Bad Request"); "Unknown" if none. */
const char *wf_http_reason(int status);

/* The path that access rules match against, as an upstream will read it:
 * percent-decoded once, '\\' read as '/', runs of '/' collapsed and dot
 * segments removed (RFC 3986 5.2.4), so that "/%61dmin", "/x/../admin",
 * "//admin" and "/a%2f..%2fadmin" all give "/admin" (a final '/' is kept:
 * "/admin/" and "/admin/." give "/admin/").
 * The result starts with '/'. out has room for path.n + 2 bytes; returns the
 * length (not NUL-terminated). */
size_t wf_http_path_normalize(wf_str_t path, char *out);

#endif
