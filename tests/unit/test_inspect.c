/* Inspection units: decoding (with evasions), extraction from every part of a
 * request, limits and flags, the fast path and the model text. */
#include "test.h"
#include "wafer/inspect.h"

#include <stdio.h>

static wf_arena_t A;

static void arena_fresh(void)
{
    static int init;
    if (!init) {
        wf_arena_init(&A, 64 * 1024, 64u << 20);
        init = 1;
    }
    wf_arena_reset(&A);
}

/* Decodes and returns a NUL-terminated copy (arena memory). */
static const char *dec(const char *in, uint32_t mode, uint32_t *flags)
{
    uint32_t f = 0;
    wf_str_t s = wf_inspect_decode_str(&A, wf_str_c(in), mode, 3, &f);
    if (flags)
        *flags = f;
    return s.p ? s.p : "(null)";
}

#define V (WF_DECODE_PERCENT | WF_DECODE_PLUS | WF_DECODE_ENTITIES)

TEST(decode_percent_and_plus)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("a%20b+c", V, &f), "a b c");
    CHECK(f & WF_UNIT_F_PERCENT);
    CHECK(!(f & WF_UNIT_F_MULTI_DECODED));
    CHECK_EQ_STR(dec("a+b", WF_DECODE_PERCENT, &f), "a+b");
    CHECK_EQ_STR(dec("a+b", V, &f), "a b");
    /* mixed-case hex digits */
    CHECK_EQ_STR(dec("%3c%3C%3cScRiPt%3E", V, &f), "<<<ScRiPt>");
    /* broken escapes stay as they are */
    CHECK_EQ_STR(dec("100%", V, &f), "100%");
    CHECK_EQ_STR(dec("%zz%4", V, &f), "%zz%4");
    CHECK_EQ_STR(dec("100%25", V, &f), "100%");
    CHECK(!(f & WF_UNIT_F_MULTI_DECODED));
    /* '+' decoded in the first pass only: %2B stays a plus */
    CHECK_EQ_STR(dec("1%2B1", V, &f), "1+1");
}

TEST(decode_double_encoding)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("%2527%20or%201%3D1", V, &f), "' or 1=1");
    CHECK(f & WF_UNIT_F_MULTI_DECODED);
    CHECK_EQ_STR(dec("%25252e%25252e%25252f", V, &f), "../");
    CHECK(f & WF_UNIT_F_MULTI_DECODED);
    CHECK(!(f & WF_UNIT_F_DECODE_LIMIT));
    /* four levels with three passes: what is left is flagged */
    CHECK_EQ_STR(dec("%2525252e", V, &f), "%2e");
    CHECK(f & WF_UNIT_F_DECODE_LIMIT);
    uint32_t g = 0;
    wf_str_t one = wf_inspect_decode_str(&A, WF_STR("%2527"), V, 1, &g);
    CHECK(one.n == 3 && !memcmp(one.p, "%27", 3));
    CHECK(g & WF_UNIT_F_DECODE_LIMIT);
}

TEST(decode_overlong_utf8)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("..%c0%af..%c0%afetc", V, &f), "../../etc");
    CHECK(f & WF_UNIT_F_OVERLONG);
    CHECK_EQ_STR(dec("%e0%80%ae%e0%80%ae/", V, &f), "../");
    CHECK(f & WF_UNIT_F_OVERLONG);
    CHECK_EQ_STR(dec("%C0%BCscript%C0%BE", V, &f), "<script>");
    /* overlong NUL: shown as %00, flagged twice */
    CHECK_EQ_STR(dec("a%c0%80b", V, &f), "a%00b");
    CHECK((f & WF_UNIT_F_OVERLONG) && (f & WF_UNIT_F_CONTROL));
    /* double-encoded overlong */
    CHECK_EQ_STR(dec("%25c0%25af", V, &f), "/");
    CHECK((f & WF_UNIT_F_OVERLONG) && (f & WF_UNIT_F_MULTI_DECODED));
}

TEST(decode_percent_u)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("%u003Cscript%u003e", V, &f), "<script>");
    CHECK(f & WF_UNIT_F_PCT_U);
    CHECK_EQ_STR(dec("%uD83D%uDE00", V, &f), "\xf0\x9f\x98\x80");
    CHECK_EQ_STR(dec("%uD800x", V, &f), "\xef\xbf\xbdx");
    /* fullwidth through %u folds to ASCII */
    CHECK_EQ_STR(dec("%uFF1Cscript%uFF1E", V, &f), "<script>");
    CHECK((f & WF_UNIT_F_PCT_U) && (f & WF_UNIT_F_UNICODE));
    CHECK_EQ_STR(dec("%u00zz", V, &f), "%u00zz");
}

TEST(decode_html_entities)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("&lt;script&gt;", V, &f), "<script>");
    CHECK(f & WF_UNIT_F_ENTITY);
    CHECK_EQ_STR(dec("&#60;&#x3C;&#X3c&#0000060;", V, &f), "<<<<");
    CHECK_EQ_STR(dec("javascript&colon;alert&lpar;1&rpar;", V, &f), "javascript:alert(1)");
    CHECK_EQ_STR(dec("AT&amp;T", V, &f), "AT&T");
    CHECK_EQ_STR(dec("&bogus; & &;", V, &f), "&bogus; & &;");
    CHECK(!(f & WF_UNIT_F_ENTITY));
    CHECK_EQ_STR(dec("&#0;&#xD800;&#99999999;", V, &f), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    /* percent-encoded entity: percent first, then the entity */
    CHECK_EQ_STR(dec("%26lt%3Bimg", V, &f), "<img");
    /* not decoded without the flag */
    CHECK_EQ_STR(dec("&lt;", WF_DECODE_PERCENT, &f), "&lt;");
    /* named references are case-sensitive and need ';' */
    CHECK_EQ_STR(dec("&LT;&Lt;&lt", V, &f), "<&Lt;&lt");
}

TEST(decode_controls_and_utf8)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("a%00b", V, &f), "a%00b");
    CHECK(f & WF_UNIT_F_CONTROL);
    CHECK_EQ_STR(dec("a\x01\x7f", 0, &f), "a%01%7F");
    CHECK(f & WF_UNIT_F_CONTROL);
    /* TAB, LF and CR stay in values but are escaped in names */
    CHECK_EQ_STR(dec("a%0d%0ab\tc", V, &f), "a\r\nb\tc");
    CHECK(!(f & WF_UNIT_F_CONTROL));
    CHECK_EQ_STR(dec("a%0d%0ab", WF_DECODE_PERCENT | WF_DECODE_NAME, &f), "a%0D%0Ab");
    /* Latin-1 bytes (CSIC 2010) read as Latin-1; C1 bytes as %XX */
    CHECK_EQ_STR(dec("Jam%F3n+Ib%E9rico", V, &f), "Jam\xc3\xb3n Ib\xc3\xa9rico");
    CHECK(f & WF_UNIT_F_BAD_UTF8);
    CHECK_EQ_STR(dec("x%85y", V, &f), "x%85y");
    /* valid UTF-8 passes unchanged and unflagged */
    CHECK_EQ_STR(dec("caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac", V, &f), "caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac");
    CHECK(f == 0);
    /* surrogates and code points past U+10FFFF in UTF-8 are invalid */
    /* (0xA0 read as Latin-1 is a no-break space, which folds to a space) */
    CHECK_EQ_STR(dec("\xed\xa0\x80", 0, &f), "\xc3\xad %80");
    CHECK(f & WF_UNIT_F_BAD_UTF8);
    /* a truncated sequence at the end */
    CHECK_EQ_STR(dec("a\xe6\x97", 0, &f), "a\xc3\xa6%97");
}

TEST(decode_unicode_forms)
{
    arena_fresh();
    uint32_t f;
    /* fullwidth < > ' and a ligature fold to ASCII */
    CHECK_EQ_STR(dec("\xef\xbc\x9cscript\xef\xbc\x9e", 0, &f), "<script>");
    CHECK(f & WF_UNIT_F_UNICODE);
    CHECK_EQ_STR(dec("\xef\xbc\x87 or 1=1", 0, &f), "' or 1=1");
    CHECK_EQ_STR(dec("\xef\xac\x81le", 0, &f), "file");
    /* the one-dot leader and the ellipsis read as dots */
    CHECK_EQ_STR(dec("\xe2\x80\xa4\xe2\x80\xa4/", 0, &f), "../");
    /* letters with accents are not folded: their decomposition is not ASCII */
    CHECK_EQ_STR(dec("\xc3\xb1", 0, &f), "\xc3\xb1");
    CHECK(!(f & WF_UNIT_F_UNICODE));
}

TEST(decode_keeps_comments_and_case)
{
    arena_fresh();
    uint32_t f;
    CHECK_EQ_STR(dec("1/**/UnIoN/**/SeLeCt/*!50000*/1", V, &f), "1/**/UnIoN/**/SeLeCt/*!50000*/1");
    CHECK(f == 0);
    CHECK_EQ_STR(dec("1%2f%2a%2a%2funion", V, &f), "1/**/union");
}

TEST(decode_truncates_at_character_boundary)
{
    arena_fresh();
    char scratch[64], out[8];
    uint32_t f = 0;
    size_t n = wf_inspect_decode(WF_STR("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"), 0, 3, scratch, out, 5, &f);
    CHECK_EQ_INT(n, 4);
    CHECK(f & WF_UNIT_F_TRUNCATED);
    f = 0;
    n = wf_inspect_decode(WF_STR("a%00"), WF_DECODE_PERCENT, 3, scratch, out, 3, &f);
    CHECK_EQ_INT(n, 1); /* "%00" does not fit after "a" */
    CHECK(f & WF_UNIT_F_TRUNCATED);
}

/* ---- extraction ---- */

static wf_http_header_t H[16];

static wf_http_request_t mkreq(const char *path, const char *query)
{
    wf_http_request_t r;
    memset(&r, 0, sizeof(r));
    r.method = WF_STR("GET");
    r.path = wf_str_c(path);
    r.query = wf_str_c(query);
    r.headers = H;
    r.nheaders = 0;
    return r;
}

static void addh(wf_http_request_t *r, const char *n, const char *v)
{
    H[r->nheaders++] = (wf_http_header_t){ wf_str_c(n), wf_str_c(v) };
}

/* Finds the unit with kind and name; NULL if none. */
static const wf_unit_t *find(const wf_units_t *us, wf_unit_kind_t k, const char *name)
{
    for (size_t i = 0; i < us->n; i++)
        if (us->units[i].kind == k && wf_str_eq(us->units[i].name, wf_str_c(name)))
            return &us->units[i];
    return NULL;
}

static int text_is(const wf_unit_t *u, const char *t)
{
    return u && wf_str_eq(u->text, wf_str_c(t));
}

static size_t count_kind(const wf_units_t *us, wf_unit_kind_t k)
{
    size_t n = 0;
    for (size_t i = 0; i < us->n; i++)
        n += us->units[i].kind == k;
    return n;
}

TEST(extract_path_and_segments)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_http_request_t r = mkreq("/api/b%2Fc/..%2f..%2fetc", "");
    wf_units_t us;
    CHECK_EQ_INT(wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL), 0);
    CHECK(text_is(find(&us, WF_UNIT_PATH, ""), "/api/b/c/../../etc"));
    CHECK(text_is(find(&us, WF_UNIT_SEGMENT, "1"), "api"));
    CHECK(text_is(find(&us, WF_UNIT_SEGMENT, "2"), "b/c"));
    CHECK(text_is(find(&us, WF_UNIT_SEGMENT, "3"), "../../etc"));
    CHECK_EQ_INT(count_kind(&us, WF_UNIT_SEGMENT), 3);
    CHECK(find(&us, WF_UNIT_SEGMENT, "1")->flags & WF_UNIT_F_SAFE);
    CHECK(!(find(&us, WF_UNIT_PATH, "")->flags & WF_UNIT_F_SAFE));
    /* one segment: the path unit alone */
    r = mkreq("/index.html", "");
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL);
    CHECK_EQ_INT(us.n, 1);
    CHECK(us.units[0].flags & WF_UNIT_F_SAFE);
}

TEST(extract_query_arguments)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_http_request_t r = mkreq("/", "id=1&name=O%27Brien+x&flag&=v&a%5Bb%5D=2&&q=%3Cscript%3E");
    wf_units_t us;
    wf_inspect_stats_t st = { 0 };
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK(text_is(find(&us, WF_UNIT_QUERY, "id"), "1"));
    CHECK(find(&us, WF_UNIT_QUERY, "id")->flags & WF_UNIT_F_SAFE);
    CHECK(text_is(find(&us, WF_UNIT_QUERY, "name"), "O'Brien x"));
    CHECK(text_is(find(&us, WF_UNIT_QUERY, "a[b]"), "2"));
    CHECK(text_is(find(&us, WF_UNIT_QUERY, "q"), "<script>"));
    CHECK(!(find(&us, WF_UNIT_QUERY, "q")->flags & WF_UNIT_F_SAFE));
    /* "flag" (no '=') is a value with no name; "=v" a value with an empty name */
    CHECK_EQ_INT(count_kind(&us, WF_UNIT_QUERY), 6);
    int flag = 0, v = 0;
    for (size_t i = 0; i < us.n; i++) {
        flag += us.units[i].kind == WF_UNIT_QUERY && !us.units[i].name.n && text_is(&us.units[i], "flag");
        v += us.units[i].kind == WF_UNIT_QUERY && !us.units[i].name.n && text_is(&us.units[i], "v");
    }
    CHECK(flag == 1 && v == 1);
    CHECK_EQ_INT(st.requests, 1);
    CHECK_EQ_INT(st.units, us.n);
}

TEST(extract_cookies_and_headers)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_http_request_t r = mkreq("/", "");
    addh(&r, "Cookie", "sid=abc123; t=1%27+or+1; empty=");
    addh(&r, "cookie", "second=2");
    addh(&r, "User-Agent", "Mozilla/5.0 () { :; }; /bin/bash -c id");
    addh(&r, "Accept", "text/html");
    addh(&r, "X-Forwarded-For", "127.0.0.1' or sleep(5)#");
    wf_units_t us;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL);
    CHECK(text_is(find(&us, WF_UNIT_COOKIE, "sid"), "abc123"));
    CHECK(text_is(find(&us, WF_UNIT_COOKIE, "t"), "1' or 1"));
    CHECK(text_is(find(&us, WF_UNIT_COOKIE, "empty"), ""));
    CHECK(text_is(find(&us, WF_UNIT_COOKIE, "second"), "2"));
    CHECK(text_is(find(&us, WF_UNIT_HEADER, "user-agent"), "Mozilla/5.0 () { :; }; /bin/bash -c id"));
    CHECK(text_is(find(&us, WF_UNIT_HEADER, "x-forwarded-for"), "127.0.0.1' or sleep(5)#"));
    CHECK(!find(&us, WF_UNIT_HEADER, "accept"));
    /* a configured list replaces the default */
    c.headers[0] = WF_STR("Accept");
    c.nheaders = 1;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL);
    CHECK(text_is(find(&us, WF_UNIT_HEADER, "accept"), "text/html"));
    CHECK(!find(&us, WF_UNIT_HEADER, "user-agent"));
}

TEST(extract_form_body)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_http_request_t r = mkreq("/login", "");
    r.method = WF_STR("POST");
    addh(&r, "Content-Type", "application/x-www-form-urlencoded; charset=UTF-8");
    wf_units_t us;
    wf_inspect_request(&c, &r, WF_STR("user=admin%27--&pass=x+y"), &A, &us, NULL);
    CHECK(text_is(find(&us, WF_UNIT_FORM, "user"), "admin'--"));
    CHECK(text_is(find(&us, WF_UNIT_FORM, "pass"), "x y"));
    /* an unknown type: the body is one unit */
    H[0].value = WF_STR("text/xml");
    wf_inspect_request(&c, &r, WF_STR("<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"), &A, &us, NULL);
    CHECK(text_is(find(&us, WF_UNIT_BODY, ""), "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]>"));
}

static wf_units_t json_units(wf_inspect_conf_t *c, const char *ct, const char *body, wf_inspect_stats_t *st)
{
    wf_http_request_t r = mkreq("/", "");
    r.method = WF_STR("POST");
    addh(&r, "Content-Type", ct);
    wf_units_t us;
    wf_inspect_request(c, &r, wf_str_c(body), &A, &us, st);
    return us;
}

TEST(extract_json)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    c.path_segments = false;
    wf_units_t us = json_units(&c, "application/json",
                               "{\"user\":{\"name\":\"x\",\"tags\":[\"a\",\"<b>\"]},\"n\":-1.5e3,\"ok\":true,"
                               "\"z\":null,\"e\":\"\\u003cscript\\u003e\",\"s\":\"a\\\"b\\\\\\n\",\"o\":{},\"l\":[]}",
                               NULL);
    CHECK_EQ_INT(us.flags, 0);
    CHECK(text_is(find(&us, WF_UNIT_JSON, "user.name"), "x"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "user.tags[0]"), "a"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "user.tags[1]"), "<b>"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "n"), "-1.5e3"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "ok"), "true"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "z"), "null"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "e"), "<script>"));
    CHECK(find(&us, WF_UNIT_JSON, "e")->flags & WF_UNIT_F_JSON_ESCAPE);
    CHECK(text_is(find(&us, WF_UNIT_JSON, "s"), "a\"b\\\n"));
    CHECK_EQ_INT(count_kind(&us, WF_UNIT_JSON), 8);
    /* a root array and a root scalar; +json types */
    us = json_units(&c, "application/vnd.api+json", "[1,\"a\",[true]]", NULL);
    CHECK(text_is(find(&us, WF_UNIT_JSON, "[1]"), "a"));
    CHECK(text_is(find(&us, WF_UNIT_JSON, "[2][0]"), "true"));
    us = json_units(&c, "application/json", " \"only\" ", NULL);
    CHECK(text_is(find(&us, WF_UNIT_JSON, ""), "only"));
    /* percent-encoding inside JSON strings is decoded too */
    us = json_units(&c, "application/json", "{\"q\":\"%27%20or%201=1\"}", NULL);
    CHECK(text_is(find(&us, WF_UNIT_JSON, "q"), "' or 1=1"));
}

TEST(extract_json_invalid_and_deep)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_inspect_stats_t st = { 0 };
    static const char *const bad[] = {
        "{\"a\":1,}", "{\"a\" 1}", "[1,2", "{\"a\":01}", "{\"a\":1.}", "{\"a\":\"x\"} x", "{'a':1}", "{\"a\":tru}",
        "{\"a\":\"\x01\"}", "{\"a\":\"\\x\"}", "", "{\"a\":\"\\u12\"}", "[1]]", "{\"a\":-}", "{1:2}",
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        wf_units_t us = json_units(&c, "application/json", bad[i], &st);
        if (!bad[i][0]) {
            CHECK_EQ_INT(us.n, 1); /* empty body: no body unit at all, the path only */
            continue;
        }
        CHECK(us.flags & WF_INSPECT_R_JSON_INVALID);
        CHECK_EQ_INT(count_kind(&us, WF_UNIT_JSON), 0);
        CHECK(text_is(find(&us, WF_UNIT_BODY, ""), bad[i]) || (us.units[us.n - 1].kind == WF_UNIT_BODY));
    }
    CHECK_EQ_INT(st.json_invalid, WF_ARRAY_LEN(bad) - 1);
    /* nesting: 32 levels pass, 33 do not */
    char deep[200];
    memset(deep, '[', 32);
    memset(deep + 32, ']', 32);
    deep[64] = 0;
    wf_units_t us = json_units(&c, "application/json", deep, &st);
    CHECK_EQ_INT(us.flags, 0);
    memset(deep, '[', 33);
    memset(deep + 33, ']', 33);
    deep[66] = 0;
    us = json_units(&c, "application/json", deep, &st);
    CHECK(us.flags & WF_INSPECT_R_JSON_DEPTH);
    CHECK_EQ_INT(st.json_too_deep, 1);
    /* a million opening brackets: bounded work, no recursion */
    size_t big = 1u << 20;
    char *b = wf_arena_alloc(&A, big + 1);
    memset(b, '[', big);
    b[big] = 0;
    us = json_units(&c, "application/json", b, &st);
    CHECK(us.flags & WF_INSPECT_R_JSON_DEPTH);
}

#define MP_CT "multipart/form-data; boundary=----xyz"

TEST(extract_multipart)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    const char *body = "------xyz\r\n"
                       "Content-Disposition: form-data; name=\"comment\"\r\n"
                       "\r\n"
                       "hello' or 1=1--\r\n"
                       "------xyz\r\n"
                       "Content-Disposition: form-data; name=\"upload\"; filename=\"shell.php%00.jpg\"\r\n"
                       "Content-Type: application/octet-stream\r\n"
                       "\r\n"
                       "<?php system($_GET['c']); ?>\r\n"
                       "------xyz\r\n"
                       "Content-Disposition: form-data; name=\"a\\\"b\"\r\n"
                       "\r\n"
                       "\r\n"
                       "------xyz--\r\n";
    wf_units_t us = json_units(&c, MP_CT, body, NULL);
    CHECK_EQ_INT(us.flags, 0);
    CHECK(text_is(find(&us, WF_UNIT_MULTIPART, "comment"), "hello' or 1=1--"));
    CHECK(text_is(find(&us, WF_UNIT_FILENAME, "upload"), "shell.php%00.jpg"));
    CHECK(find(&us, WF_UNIT_FILENAME, "upload")->flags & WF_UNIT_F_CONTROL);
    CHECK(text_is(find(&us, WF_UNIT_MULTIPART, "a\"b"), ""));
    for (size_t i = 0; i < us.n; i++)
        CHECK(!memmem(us.units[i].text.p, us.units[i].text.n, "system", 6)); /* file contents are not units */
    /* quoted boundary with another parameter after it */
    us = json_units(&c, "multipart/form-data; boundary=\"----xyz\"; charset=utf-8", body, NULL);
    CHECK_EQ_INT(us.flags, 0);
    CHECK(find(&us, WF_UNIT_MULTIPART, "comment"));
}

TEST(extract_multipart_invalid)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_inspect_stats_t st = { 0 };
    c.max_part_header_bytes = 100;
    static const char *const bad[] = {
        /* no close delimiter */
        "------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n",
        /* preamble */
        "junk\r\n------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nv\r\n------xyz--",
        /* two names */
        "------xyz\r\nContent-Disposition: form-data; name=\"a\"; name=\"b\"\r\n\r\nv\r\n------xyz--",
        /* no Content-Disposition */
        "------xyz\r\nContent-Type: text/plain\r\n\r\nv\r\n------xyz--",
        /* not form-data */
        "------xyz\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nv\r\n------xyz--",
        /* bare LF */
        "------xyz\nContent-Disposition: form-data; name=\"a\"\n\nv\n------xyz--",
        /* a part without headers */
        "------xyz\r\n\r\nv\r\n------xyz--",
        /* a header block longer than max_part_header_bytes */
        "------xyz\r\nContent-Disposition: form-data; name=\"a\"\r\nX-Pad: "
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
        "\r\n\r\nv\r\n------xyz--",
        /* unterminated quoted name */
        "------xyz\r\nContent-Disposition: form-data; name=\"a\r\n\r\nv\r\n------xyz--",
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(bad); i++) {
        wf_units_t us = json_units(&c, MP_CT, bad[i], &st);
        CHECK(us.flags & WF_INSPECT_R_MULTIPART_INVALID);
        CHECK_EQ_INT(count_kind(&us, WF_UNIT_MULTIPART), 0);
        CHECK_EQ_INT(count_kind(&us, WF_UNIT_BODY), 1);
    }
    CHECK_EQ_INT(st.multipart_invalid, WF_ARRAY_LEN(bad));
    /* no boundary, or an invalid one */
    wf_units_t us = json_units(&c, "multipart/form-data", "x", &st);
    CHECK(us.flags & WF_INSPECT_R_MULTIPART_INVALID);
    us = json_units(&c, "multipart/form-data; boundary=a; boundary=b", "x", &st);
    CHECK(us.flags & WF_INSPECT_R_MULTIPART_INVALID);
    /* part limit */
    c.max_multipart_parts = 2;
    const char *three = "--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n"
                        "--b\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\n2\r\n"
                        "--b\r\nContent-Disposition: form-data; name=\"c\"\r\n\r\n3\r\n--b--\r\n";
    us = json_units(&c, "multipart/form-data; boundary=b", three, &st);
    CHECK(us.flags & WF_INSPECT_R_MULTIPART_PARTS);
    CHECK_EQ_INT(count_kind(&us, WF_UNIT_MULTIPART), 2);
}

TEST(limits_units_and_windows)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_inspect_stats_t st = { 0 };
    c.max_units = 3;
    wf_http_request_t r = mkreq("/", "a=1&b=2&c=3&d=4&e=5");
    wf_units_t us;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK_EQ_INT(us.n, 3);
    CHECK(us.flags & WF_INSPECT_R_UNITS_DROPPED);
    CHECK(st.units_dropped >= 2);

    /* a long value becomes overlapping windows that together cover it */
    wf_inspect_conf_default(&c);
    c.max_unit_bytes = 16;
    c.window_overlap = 4;
    char q[64];
    snprintf(q, sizeof(q), "v=%s", "0123456789abcdefghijklmnopqrstuvwxyz<script>");
    r = mkreq("/", q);
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK(us.n >= 4);
    size_t covered = 0;
    int found = 0;
    for (size_t i = 0; i < us.n; i++) {
        const wf_unit_t *u = &us.units[i];
        if (u->kind != WF_UNIT_QUERY)
            continue;
        CHECK(u->flags & WF_UNIT_F_CHUNK);
        CHECK(u->text.n <= 16);
        CHECK_EQ_INT(u->part, (uint32_t)(i)); /* path unit first, then parts 1.. */
        covered += u->text.n;
        found |= memmem(u->text.p, u->text.n, "<script>", 8) != NULL;
    }
    CHECK(found); /* the tag is whole in one window thanks to the overlap */
    CHECK(covered >= 44);
    CHECK_EQ_INT(st.units_chunked, 1);

    /* total budget */
    wf_inspect_conf_default(&c);
    c.max_total_bytes = 10;
    r = mkreq("/", "a=0123456789&b=x");
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK(us.flags & WF_INSPECT_R_BYTES_CUT);
    size_t total = 0;
    for (size_t i = 0; i < us.n; i++)
        total += us.units[i].text.n + us.units[i].name.n;
    CHECK(total <= 10);

    /* value and body limits */
    wf_inspect_conf_default(&c);
    c.max_value_bytes = 8;
    r = mkreq("/", "a=0123456789");
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK(find(&us, WF_UNIT_QUERY, "a")->flags & WF_UNIT_F_TRUNCATED);
    CHECK(text_is(find(&us, WF_UNIT_QUERY, "a"), "01234567"));
    wf_inspect_conf_default(&c);
    c.max_body_bytes = 4;
    wf_units_t b = json_units(&c, "application/x-www-form-urlencoded", "a=123456", &st);
    CHECK(b.flags & WF_INSPECT_R_BODY_CUT);
    CHECK(text_is(find(&b, WF_UNIT_FORM, "a"), "12"));
}

TEST(limits_long_names)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    c.max_name_bytes = 8;
    wf_http_request_t r = mkreq("/", "aaaaaaaaaa%3Cscript%3E=1");
    wf_units_t us;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL);
    /* the name is cut on its unit, and inspected whole as a unit of its own */
    int whole = 0, cut = 0;
    for (size_t i = 0; i < us.n; i++) {
        const wf_unit_t *u = &us.units[i];
        if (u->kind != WF_UNIT_QUERY)
            continue;
        CHECK(u->flags & WF_UNIT_F_NAME_CUT);
        whole += text_is(u, "aaaaaaaaaa<script>");
        cut += u->name.n == 8 && text_is(u, "1");
    }
    CHECK(whole == 1 && cut == 1);
}

TEST(limits_arena_exhausted)
{
    /* an arena too small for the scratch buffers: no units, counted, no crash */
    wf_arena_t small;
    wf_arena_init(&small, 4096, 16 * 1024);
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_inspect_stats_t st = { 0 };
    wf_http_request_t r = mkreq("/a", "x=1");
    wf_units_t us;
    CHECK_EQ_INT(wf_inspect_request(&c, &r, WF_STR_NULL, &small, &us, &st), 0);
    CHECK_EQ_INT(us.n, 0);
    CHECK(us.flags & WF_INSPECT_R_UNITS_DROPPED);
    CHECK_EQ_INT(st.no_memory, 1);
    CHECK(small.total <= 16 * 1024);
    /* with smaller limits the same arena is enough */
    c.max_value_bytes = 1024;
    c.max_units = 8;
    wf_arena_reset(&small);
    wf_inspect_request(&c, &r, WF_STR_NULL, &small, &us, &st);
    CHECK_EQ_INT(us.n, 2);
    wf_arena_free(&small);
}

/* ---- fast path ---- */

TEST(fast_path_rule)
{
    static const char *const safe[] = {
        "",      "1",          "42",  "3.14", "1.2.3",    "abc_DEF", "en-US", "es-AR", "true", "null",
        "B92A8B48B9008CD29F622A994E0F650D", "550e8400-e29b-41d4-a716-446655440000", "Vino", "a1-b2",
        /* phrases: names, places, labels */
        "a b", "Pasar por caja", "Jam\xc3\xb3n Ib\xc3\xa9rico", "Calle Soria 164", "Villafranca de la Sierra",
        "\xc3\x81vila", /* one word with a Latin-1 letter */
    };
    static const char *const unsafe[] = {
        "1 or 1=1", "' or '1'='1", "<script>", "../etc/passwd", "1--", "-1", "5739-5738", "2024-01-05",
        "select", "SeLeCt", "union", "onload", "onwebkitanimationiteration", "0x41424344", "1-true",
        "a..b", "config.php", ".htaccess", "whoami", "__proto__", "alert", "x;ls", "$ne",
        /* phrases that are SQL, script or odd spacing */
        "1 or 1", "1 OR 1", "1 xor 1", "1 is not null", "1 div 0", "1 in users", "order by 5", "1 group by 2",
        "1 limit 1", "case when 1 then 2 else 3 end", "1 and sleep 5", "union select password from users",
        "x union all select 1", "a true", "null x", "a onmouseover b", "a 0x41", "x  y", " a", "a ", "a\tb",
        "a\nb", "Jam\xc3\xb3n \xc3\x97 2", "a \xc3", "Se\xc3\xb1or Or", "a_b c", "a-b c", "a.b c", "cat x",
        "ls la", "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g", /* 65 bytes */
        "1e5.", "sleep", "WAITFOR", "Char", "L2V0.", "%27",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 65 bytes */
    };
    for (size_t i = 0; i < WF_ARRAY_LEN(safe); i++)
        if (!wf_inspect_text_is_safe(WF_UNIT_QUERY, wf_str_c(safe[i]), 64)) {
            fprintf(stderr, "expected safe: %s\n", safe[i]);
            CHECK(0);
        }
    for (size_t i = 0; i < WF_ARRAY_LEN(unsafe); i++)
        if (wf_inspect_text_is_safe(WF_UNIT_QUERY, wf_str_c(unsafe[i]), 64)) {
            fprintf(stderr, "expected unsafe: %s\n", unsafe[i]);
            CHECK(0);
        }
    static const char *const safe_paths[] = { "/", "/a/b.css", "/tienda1/publico/anadir.jsp", "/~user/x-y_z/",
                                              "/api/v1/items/42" };
    static const char *const unsafe_paths[] = { "/a/../b", "/.git/config", "//x", "/etc/passwd", "/a b",
                                                "/x/-rf", "/cgi-bin/x;id", "/a/..", "/wp-login.php?" };
    for (size_t i = 0; i < WF_ARRAY_LEN(safe_paths); i++)
        CHECK(wf_inspect_text_is_safe(WF_UNIT_PATH, wf_str_c(safe_paths[i]), 64));
    for (size_t i = 0; i < WF_ARRAY_LEN(unsafe_paths); i++)
        CHECK(!wf_inspect_text_is_safe(WF_UNIT_PATH, wf_str_c(unsafe_paths[i]), 64));
}

TEST(fast_path_units)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_inspect_stats_t st = { 0 };
    /* an encoded safe-looking value is not safe when its decoding was odd */
    wf_http_request_t r = mkreq("/", "a=%2561&b=%61&user%5B%24ne%5D=1&__proto__%5Bx%5D=1&ok=1");
    wf_units_t us;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, &st);
    CHECK(!(find(&us, WF_UNIT_QUERY, "a")->flags & WF_UNIT_F_SAFE));
    CHECK(find(&us, WF_UNIT_QUERY, "b")->flags & WF_UNIT_F_SAFE);
    CHECK(!(find(&us, WF_UNIT_QUERY, "user[$ne]")->flags & WF_UNIT_F_SAFE));
    CHECK(!(find(&us, WF_UNIT_QUERY, "__proto__[x]")->flags & WF_UNIT_F_SAFE));
    CHECK(find(&us, WF_UNIT_QUERY, "ok")->flags & WF_UNIT_F_SAFE);
    CHECK_EQ_INT(st.units_safe, 3); /* b, ok and the path "/" */
    c.fast_path = false;
    wf_inspect_request(&c, &r, WF_STR_NULL, &A, &us, NULL);
    for (size_t i = 0; i < us.n; i++)
        CHECK(!(us.units[i].flags & WF_UNIT_F_SAFE));
}

/* ---- model text and names ---- */

TEST(model_text)
{
    arena_fresh();
    wf_inspect_conf_t c;
    wf_inspect_conf_default(&c);
    wf_units_t us = { 0 };
    wf_inspect_value(&c, WF_UNIT_QUERY, WF_STR("id"), WF_STR("1%27+or+1%3D1"), &A, &us, NULL);
    CHECK_EQ_INT(us.n, 1);
    char buf[256];
    size_t n = wf_unit_text(&us.units[0], buf, sizeof(buf));
    buf[n] = 0;
    CHECK_EQ_STR(buf, "query id: 1' or 1=1");
    wf_unit_t p = { .kind = WF_UNIT_PATH, .text = WF_STR("/x") };
    n = wf_unit_text(&p, buf, sizeof(buf));
    buf[n] = 0;
    CHECK_EQ_STR(buf, "path: /x");
    /* too small a buffer: returns the length it needs, writes what fits */
    CHECK_EQ_INT(wf_unit_text(&p, buf, 3), 8);
    CHECK_EQ_STR(WF_TEXT_FORMAT, "wafer-unit-v1");
    char fl[128];
    wf_unit_flags_str(WF_UNIT_F_MULTI_DECODED | WF_UNIT_F_SAFE, fl, sizeof(fl));
    CHECK_EQ_STR(fl, "multi_decoded,safe");
    wf_unit_flags_str(0, fl, sizeof(fl));
    CHECK_EQ_STR(fl, "-");
    CHECK_EQ_STR(wf_unit_kind_name(WF_UNIT_FILENAME), "filename");
}

/* ---- input readers ---- */

static int read_all(wf_input_format_t fmt, const char *data, wf_input_record_t *recs, int max)
{
    FILE *fp = fmemopen((void *)data, strlen(data), "r");
    wf_input_t *in = wf_input_new(fmt, fp, 0);
    int n = 0, r;
    static char keep[8][512];
    while (n < max && (r = wf_input_next(in, &recs[n])) > 0) {
        /* copy what tests look at: slices die with the reader */
        wf_input_record_t *x = &recs[n];
        snprintf(keep[n], sizeof(keep[n]), "%.*s|%.*s|%.*s|%.*s", (int)x->req.method.n, x->req.method.p,
                 (int)x->req.path.n, x->req.path.p, (int)x->req.query.n, x->req.query.p, (int)x->body.n,
                 x->body.p);
        x->req.target = wf_str_c(keep[n]);
        n++;
    }
    wf_input_free(in);
    fclose(fp);
    return n;
}

TEST(input_raw_stream)
{
    const char *raw = "GET http://localhost:8080/a/b.jsp?x=1 HTTP/1.1\r\nHost: localhost:8080\r\n\r\n"
                      "POST /f HTTP/1.1\nHost: h\nContent-Length: 3\n\nabc\n\n"
                      "GET /bad HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n"
                      "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                      "GET /last HTTP/1.1\r\nHost: h\r\n\r\n";
    wf_input_record_t recs[8];
    int n = read_all(WF_INPUT_RAW, raw, recs, 8);
    CHECK_EQ_INT(n, 5);
    CHECK_EQ_STR(recs[0].req.target.p, "GET|/a/b.jsp|x=1|");
    CHECK_EQ_STR(recs[1].req.target.p, "POST|/f||abc");
    CHECK(recs[2].invalid);
    CHECK(strstr(recs[2].reason, "http: ") == recs[2].reason);
    CHECK_EQ_STR(recs[3].req.target.p, "POST|/c||abcde");
    CHECK_EQ_STR(recs[4].req.target.p, "GET|/last||");
    for (int i = 0; i < n; i++)
        CHECK_EQ_INT(recs[i].index, i);
    /* a request cut short at the end */
    n = read_all(WF_INPUT_RAW, "POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc", recs, 8);
    CHECK_EQ_INT(n, 1);
    CHECK(recs[0].invalid);
}

TEST(input_lines_jsonl_nginx)
{
    wf_input_record_t recs[8];
    int n = read_all(WF_INPUT_LINES, "a\r\n\nb' or 1=1", recs, 8);
    CHECK_EQ_INT(n, 3);
    CHECK(recs[0].is_value && recs[0].value.n == 1);
    CHECK(recs[1].value.n == 0);
    CHECK_EQ_INT(recs[2].index, 2);

    n = read_all(WF_INPUT_JSONL,
                 "{\"raw\":\"GET /r?a=1 HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n\",\"label\":1}\n"
                 "{\"method\":\"POST\",\"url\":\"https://ex.com/p/q?z=2#frag\",\"headers\":[[\":path\",\"/p\"],"
                 "[\"Content-Type\",\"application/json\"]],\"body\":\"{}\"}\n"
                 "not json\n"
                 "{\"url\":\"/o\",\"headers\":{\"User-Agent\":\"x\"}}\n",
                 recs, 8);
    CHECK_EQ_INT(n, 4);
    CHECK_EQ_STR(recs[0].req.target.p, "GET|/r|a=1|");
    CHECK_EQ_STR(recs[1].req.target.p, "POST|/p/q|z=2|{}");
    CHECK_EQ_INT(recs[1].req.nheaders, 1);
    CHECK(recs[2].invalid);
    CHECK_EQ_STR(recs[3].req.target.p, "GET|/o||");

    n = read_all(WF_INPUT_NGINX,
                 "1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \"GET /s?q=a\\x22b HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n"
                 "1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] \"\\x16\\x03\\x01\" 400 0 \"-\" \"-\"\n"
                 "garbage\n",
                 recs, 8);
    CHECK_EQ_INT(n, 3);
    CHECK_EQ_STR(recs[0].req.target.p, "GET|/s|q=a\"b|");
    CHECK(recs[1].invalid);
    CHECK(recs[2].invalid);
}

TEST_MAIN()
