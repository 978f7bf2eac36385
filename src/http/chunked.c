/*
 * Incremental chunked-body decoder (RFC 9112 7.1). A byte-at-a-time state
 * machine: the outcome does not depend on how the input is split, and no
 * byte is looked at twice (chunk data is reported as a span, never copied).
 */
#include "wafer/http.h"

enum {
    CH_SIZE0,     /* first hex digit of chunk-size */
    CH_SIZE,      /* more hex digits, or what follows the size */
    CH_AFTER,     /* after a complete extension: ';', BWS or the line end */
    CH_WS_SEMI,   /* BWS that must lead to ';' */
    CH_NAME0,     /* BWS, then the first tchar of chunk-ext-name */
    CH_NAME,      /* chunk-ext-name */
    CH_WS_EQ,     /* BWS after a name: '=' or ';' */
    CH_VAL0,      /* BWS, then a token or a quoted-string */
    CH_VAL,       /* token value */
    CH_QS,        /* inside a quoted-string */
    CH_QP,        /* after a backslash in a quoted-string */
    CH_SIZE_LF,   /* CR of the size line seen */
    CH_DATA,      /* chunk data */
    CH_DATA_CR,   /* the CRLF after chunk data */
    CH_DATA_LF,
    CH_TR_LINE0,  /* start of a trailer field line or of the final empty line */
    CH_TR_NAME,
    CH_TR_VALUE,
    CH_TR_LF,     /* CR at the end of a trailer field seen */
    CH_END_LF,    /* CR of the final empty line seen */
    CH_DONE,
    CH_FAILED,
};

/* tchar, as in parser.c (kept local so the decoder stands alone) */
static bool tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
    case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Fields refused in the trailer section: merged into the header section by a
 * lax recipient they would change framing or routing (RFC 9110 6.5.1). */
static const char *const tr_forbidden[] = { "content-length", "transfer-encoding", "host" };

/* Matches a trailer name against tr_forbidden one byte at a time (the name may
 * be split across calls). While a trailer name is read, chunk_left (zero in
 * the trailer section) holds the set of candidates still matching and
 * line_len (unused there) the name's length so far. */
static void tr_name_byte(wf_http_chunked_t *c, unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        ch += 32;
    for (unsigned k = 0; k < sizeof(tr_forbidden) / sizeof(tr_forbidden[0]); k++)
        if ((c->chunk_left >> k) & 1)
            if (c->line_len >= strlen(tr_forbidden[k]) || (unsigned char)tr_forbidden[k][c->line_len] != ch)
                c->chunk_left &= ~(1ull << k);
    c->line_len++;
}

static bool tr_name_forbidden(const wf_http_chunked_t *c)
{
    for (unsigned k = 0; k < sizeof(tr_forbidden) / sizeof(tr_forbidden[0]); k++)
        if (((c->chunk_left >> k) & 1) && strlen(tr_forbidden[k]) == c->line_len)
            return true;
    return false;
}

void wf_http_chunked_init(wf_http_chunked_t *c, const wf_http_limits_t *lim)
{
    memset(c, 0, sizeof(*c));
    c->state = CH_SIZE0;
    c->lim = lim;
}

int wf_http_chunked_feed(wf_http_chunked_t *c, const char *buf, size_t len, size_t *consumed, wf_str_t *data)
{
    const wf_http_limits_t *lim = c->lim;
    bool lf_ok = (lim->lenient & WF_HTTP_LENIENT_BARE_LF) != 0;
    size_t i = 0;
    *data = wf_str(buf, 0);
    *consumed = 0;
    if (c->state == CH_DONE)
        return 1;
    if (c->state == CH_FAILED)
        return WF_HTTP_ERROR;

#define FAIL(e) do { c->error = (e); c->state = CH_FAILED; *consumed = i; return WF_HTTP_ERROR; } while (0)

    while (i < len) {
        unsigned char ch = (unsigned char)buf[i];
        int st = c->state;

        if (st == CH_DATA) {
            size_t n = len - i;
            if ((uint64_t)n > c->chunk_left)
                n = (size_t)c->chunk_left;
            *data = wf_str(buf + i, n);
            i += n;
            c->chunk_left -= n;
            c->total += n;
            if (c->chunk_left == 0)
                c->state = CH_DATA_CR;
            *consumed = i;
            return 0;
        }

        /* the size line, extensions included, is bounded */
        if (st <= CH_QP) {
            if (ch != '\r' && ch != '\n' && ++c->line_len > lim->max_chunk_line)
                FAIL(WF_HTTP_E_CHUNK_EXT_TOO_LONG);
        } else if (st >= CH_TR_LINE0 && st <= CH_TR_LF &&
                   !(st == CH_TR_LINE0 && (ch == '\r' || ch == '\n'))) {
            /* the final empty line is not part of the trailer section */
            if (++c->trailer_len > lim->max_trailer_bytes)
                FAIL(WF_HTTP_E_TRAILER);
        }

        /* what ends the size line, from the states where it may end */
        bool line_end_ok = st == CH_SIZE || st == CH_AFTER || st == CH_NAME || st == CH_VAL;

        switch (st) {
        case CH_SIZE0:
            if (hexval(ch) < 0)
                FAIL(WF_HTTP_E_CHUNK);
            c->chunk_left = (uint64_t)hexval(ch);
            c->state = CH_SIZE;
            break;
        case CH_SIZE:
            if (hexval(ch) >= 0) {
                if (c->chunk_left > (UINT64_MAX >> 4))
                    FAIL(WF_HTTP_E_CHUNK);
                c->chunk_left = (c->chunk_left << 4) | (uint64_t)hexval(ch);
                break;
            }
            if (lim->max_body_bytes &&
                (c->chunk_left > lim->max_body_bytes || c->total > lim->max_body_bytes - c->chunk_left))
                FAIL(WF_HTTP_E_BODY_TOO_LARGE);
            c->state = CH_AFTER;
            /* fall through */
        case CH_AFTER:
            if (ch == ';')
                c->state = CH_NAME0;
            else if (ch == ' ' || ch == '\t')
                c->state = CH_WS_SEMI;
            else if (ch != '\r' && ch != '\n')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_WS_SEMI:
            if (ch == ';')
                c->state = CH_NAME0;
            else if (ch != ' ' && ch != '\t')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_NAME0:
            if (tchar(ch))
                c->state = CH_NAME;
            else if (ch != ' ' && ch != '\t')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_NAME:
            if (tchar(ch))
                break;
            if (ch == '=')
                c->state = CH_VAL0;
            else if (ch == ';')
                c->state = CH_NAME0;
            else if (ch == ' ' || ch == '\t')
                c->state = CH_WS_EQ;
            else if (ch != '\r' && ch != '\n')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_WS_EQ:
            if (ch == '=')
                c->state = CH_VAL0;
            else if (ch == ';')
                c->state = CH_NAME0;
            else if (ch != ' ' && ch != '\t')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_VAL0:
            if (ch == '"')
                c->state = CH_QS;
            else if (tchar(ch))
                c->state = CH_VAL;
            else if (ch != ' ' && ch != '\t')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_VAL:
            if (tchar(ch))
                break;
            if (ch == ';')
                c->state = CH_NAME0;
            else if (ch == ' ' || ch == '\t')
                c->state = CH_WS_SEMI;
            else if (ch != '\r' && ch != '\n')
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_QS:
            /* qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text */
            if (ch == '"')
                c->state = CH_AFTER;
            else if (ch == '\\')
                c->state = CH_QP;
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                FAIL(WF_HTTP_E_CHUNK);
            break;
        case CH_QP:
            if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                FAIL(WF_HTTP_E_CHUNK);
            c->state = CH_QS;
            break;
        case CH_SIZE_LF:
            if (ch != '\n')
                FAIL(WF_HTTP_E_BARE_CR);
            c->line_len = 0;
            c->state = c->chunk_left ? CH_DATA : CH_TR_LINE0;
            break;
        case CH_DATA_CR:
            if (ch == '\r')
                c->state = CH_DATA_LF;
            else if (ch == '\n' && lf_ok)
                c->state = CH_SIZE0;
            else
                FAIL(ch == '\n' ? WF_HTTP_E_BARE_LF : WF_HTTP_E_CHUNK);
            break;
        case CH_DATA_LF:
            if (ch != '\n')
                FAIL(WF_HTTP_E_BARE_CR);
            c->state = CH_SIZE0;
            break;
        case CH_TR_LINE0:
            if (ch == '\r') {
                c->state = CH_END_LF;
            } else if (ch == '\n') {
                if (!lf_ok)
                    FAIL(WF_HTTP_E_BARE_LF);
                c->state = CH_DONE;
            } else if (tchar(ch)) {
                c->chunk_left = (1ull << (sizeof(tr_forbidden) / sizeof(tr_forbidden[0]))) - 1;
                c->line_len = 0;
                tr_name_byte(c, ch);
                c->state = CH_TR_NAME;
            } else {
                FAIL(WF_HTTP_E_TRAILER);
            }
            break;
        case CH_TR_NAME:
            if (ch == ':') {
                if (tr_name_forbidden(c))
                    FAIL(WF_HTTP_E_TRAILER);
                c->chunk_left = 0;
                c->line_len = 0;
                c->state = CH_TR_VALUE;
            } else if (tchar(ch)) {
                tr_name_byte(c, ch);
            } else {
                FAIL(WF_HTTP_E_TRAILER);
            }
            break;
        case CH_TR_VALUE:
            if (ch == '\r')
                c->state = CH_TR_LF;
            else if (ch == '\n' && lf_ok)
                c->state = CH_TR_LINE0;
            else if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
                FAIL(WF_HTTP_E_TRAILER);
            break;
        case CH_TR_LF:
            if (ch != '\n')
                FAIL(WF_HTTP_E_TRAILER);
            c->state = CH_TR_LINE0;
            break;
        case CH_END_LF:
            if (ch != '\n')
                FAIL(WF_HTTP_E_BARE_CR);
            c->state = CH_DONE;
            break;
        }

        if (line_end_ok && (ch == '\r' || ch == '\n')) {
            if (ch == '\r') {
                c->state = CH_SIZE_LF;
            } else if (!lf_ok) {
                FAIL(WF_HTTP_E_BARE_LF);
            } else {
                c->line_len = 0;
                c->state = c->chunk_left ? CH_DATA : CH_TR_LINE0;
            }
        }
        i++;
        if (c->state == CH_DONE) {
            *consumed = i;
            return 1;
        }
    }
    *consumed = i;
    return 0;
#undef FAIL
}
