/* wafer scan's pieces: the verdict rule (policy.h), the json-log reader and
 * the fields jsonl copies to the output (inspect.h). The whole command is
 * tested end to end in tests/e2e/test_scan.py. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/inspect.h"
#include "wafer/policy.h"

#include <math.h>

static const float thr[4] = { 0.5f, 0.9f, 0.5f, 0.3f }; /* benign, sqli, xss, cmdi */

TEST(unit_below_every_threshold_is_benign)
{
    const float p[4] = { 0.4f, 0.89f, 0.0f, 0.0f };
    wf_unit_verdict_t u;
    CHECK(!wf_verdict_unit(p, thr, 4, &u));
    CHECK_EQ_INT(u.cls, 1); /* the closest attack class, for reporting */
    CHECK(fabsf(u.margin - (0.89f - 0.9f)) < 1e-6f);
}

TEST(unit_threshold_is_inclusive_and_per_class)
{
    const float p[4] = { 0.2f, 0.0f, 0.5f, 0.3f };
    wf_unit_verdict_t u;
    CHECK(wf_verdict_unit(p, thr, 4, &u));
    /* xss crosses by 0, cmdi by 0: equal margins, the lower class id wins */
    CHECK_EQ_INT(u.cls, 2);
    const float q[4] = { 0.05f, 0.45f, 0.1f, 0.4f };
    CHECK(wf_verdict_unit(q, thr, 4, &u));
    /* sqli has the highest probability but is under its own threshold: cmdi decides */
    CHECK_EQ_INT(u.cls, 3);
    CHECK(u.score == 0.4f);
}

TEST(unit_largest_margin_among_crossing_classes)
{
    const float t2[3] = { 0.5f, 0.1f, 0.5f };
    const float p[3] = { 0.0f, 0.35f, 0.65f }; /* class 1 margin .25, class 2 margin .15 */
    wf_unit_verdict_t u;
    CHECK(wf_verdict_unit(p, t2, 3, &u));
    CHECK_EQ_INT(u.cls, 1);
}

TEST(unit_nan_never_crosses_and_benign_class_is_ignored)
{
    const float p[4] = { 1.0f, NAN, 0.0f, 0.0f };
    wf_unit_verdict_t u;
    CHECK(!wf_verdict_unit(p, thr, 4, &u));
    const float all_nan[4] = { NAN, NAN, NAN, NAN };
    CHECK(!wf_verdict_unit(all_nan, thr, 4, &u));
    const float t0[2] = { 0.0f, 1.0f };
    const float b[2] = { 1.0f, 0.0f }; /* benign at 1 >= its "threshold" 0: not an attack */
    CHECK(!wf_verdict_unit(b, t0, 2, &u));
}

TEST(request_deciding_unit_is_the_largest_margin)
{
    wf_verdict_t v;
    wf_verdict_init(&v);
    CHECK(v.unit == -1 && !v.attack && v.score == 1.0f);
    const float a[4] = { 0.7f, 0.1f, 0.1f, 0.1f };
    const float b[4] = { 0.4f, 0.0f, 0.0f, 0.6f }; /* cmdi margin .3 */
    const float c[4] = { 0.0f, 0.95f, 0.05f, 0.0f }; /* sqli margin .05 */
    const float d[4] = { 0.1f, 0.0f, 0.9f, 0.0f }; /* xss margin .4 */
    CHECK(!wf_verdict_add(&v, 0, a, thr, 4, NULL));
    CHECK(!v.attack && v.score == 0.7f); /* benign so far: its lowest benign probability */
    CHECK(wf_verdict_add(&v, 1, b, thr, 4, NULL));
    CHECK(v.attack && v.cls == 3 && v.unit == 1 && v.score == 0.6f);
    wf_unit_verdict_t uv;
    CHECK(wf_verdict_add(&v, 2, c, thr, 4, &uv));
    CHECK(uv.cls == 1 && v.cls == 3 && v.unit == 1);
    CHECK(wf_verdict_add(&v, 3, d, thr, 4, NULL));
    CHECK(v.cls == 2 && v.unit == 3 && v.score == 0.9f);
    CHECK(!wf_verdict_add(&v, 4, a, thr, 4, NULL));
    CHECK(v.cls == 2 && v.unit == 3);
    CHECK_EQ_INT(v.units, 5);
    CHECK_EQ_INT(v.crossing, 3);
}

TEST(request_benign_score_is_the_lowest_benign_probability)
{
    wf_verdict_t v;
    wf_verdict_init(&v);
    const float a[4] = { 0.8f, 0.1f, 0.1f, 0.0f };
    const float b[4] = { 0.3f, 0.3f, 0.4f, 0.0f }; /* 0.4 < xss 0.5 */
    wf_verdict_add(&v, 0, a, thr, 4, NULL);
    wf_verdict_add(&v, 1, b, thr, 4, NULL);
    wf_verdict_add(&v, 2, a, thr, 4, NULL);
    CHECK(!v.attack && v.cls == 0 && v.score == 0.3f && v.unit == -1);
}

/* ---- readers ---- */

static wf_input_t *open_str(wf_input_format_t f, const char *s, FILE **fp)
{
    *fp = fmemopen((void *)s, strlen(s), "r");
    return wf_input_new(f, *fp, 0);
}

static int str_is(wf_str_t s, const char *lit) { return s.n == strlen(lit) && !memcmp(s.p, lit, s.n); }

static wf_str_t header(const wf_input_record_t *r, const char *name)
{
    for (size_t i = 0; i < r->req.nheaders; i++)
        if (wf_str_eq_lit_nocase(r->req.headers[i].name, name))
            return r->req.headers[i].value;
    return WF_STR_NULL;
}

TEST(json_log_field_names)
{
    const char *in =
        /* wafer's own access log: method and path, no query */
        "{\"time\":\"t\",\"method\":\"POST\",\"path\":\"/a/b\",\"status\":200}\n"
        /* nginx escape=json with $request */
        "{\"request\":\"GET /x?id=1%27 HTTP/1.1\",\"http_user_agent\":\"sqlmap/1.0\",\"http_referer\":\"-\"}\n"
        /* ECS, nested */
        "{\"http\":{\"request\":{\"method\":\"PUT\",\"referrer\":\"http://r/\"}},\"url\":{\"path\":\"/p\","
        "\"query\":\"a=b\"},\"user_agent\":{\"original\":\"UA\"}}\n"
        /* Caddy: request object, header arrays */
        "{\"request\":{\"method\":\"GET\",\"uri\":\"/c?q=2\",\"headers\":{\"User-Agent\":[\"curl/8\"]}}}\n"
        /* Traefik, flattened names; GCP absolute URL */
        "{\"RequestMethod\":\"GET\",\"RequestPath\":\"/t?z=1\",\"request_User-Agent\":\"ua2\"}\n"
        "{\"httpRequest\":{\"requestMethod\":\"GET\",\"requestUrl\":\"https://h.example/g?k=v\"}}\n"
        /* flat ECS keys; query with a leading ? */
        "{\"url.path\":\"/f\",\"url.query\":\"?m=n\"}\n"
        "{\"status\":200}\n"
        "[1]\n"
        "not json\n";
    FILE *fp;
    wf_input_t *r = open_str(WF_INPUT_JSONLOG, in, &fp);
    CHECK(r != NULL);
    wf_input_record_t rec;
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.method, "POST") && str_is(rec.req.path, "/a/b") && rec.req.query.n == 0);
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.path, "/x") && str_is(rec.req.query, "id=1%27"));
    CHECK(str_is(header(&rec, "user-agent"), "sqlmap/1.0") && header(&rec, "referer").n == 0);
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.method, "PUT") && str_is(rec.req.path, "/p") &&
          str_is(rec.req.query, "a=b"));
    CHECK(str_is(header(&rec, "user-agent"), "UA") && str_is(header(&rec, "referer"), "http://r/"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.path, "/c") && str_is(rec.req.query, "q=2"));
    CHECK(str_is(header(&rec, "user-agent"), "curl/8"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.path, "/t") && str_is(rec.req.query, "z=1"));
    CHECK(str_is(header(&rec, "user-agent"), "ua2"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.path, "/g") && str_is(rec.req.query, "k=v"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(!rec.invalid && str_is(rec.req.path, "/f") && str_is(rec.req.query, "m=n"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(rec.invalid && strstr(rec.reason, "no request path"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(rec.invalid && strstr(rec.reason, "not an object"));
    CHECK_EQ_INT(wf_input_next(r, &rec), 1);
    CHECK(rec.invalid && rec.index == 9);
    CHECK_EQ_INT(wf_input_next(r, &rec), 0);
    wf_input_free(r);
    fclose(fp);
}

static void extra_of(const char *line, wf_input_format_t f, char *out, size_t cap)
{
    static const char *const reserved[] = { "index", "verdict", NULL };
    FILE *fp;
    wf_input_t *r = open_str(f, line, &fp);
    wf_input_record_t rec;
    wf_buf_t b;
    wf_buf_init(&b, 64, 1 << 16);
    out[0] = 0;
    if (wf_input_next(r, &rec) == 1 && wf_input_extra_json(r, reserved, &b) == 0)
        snprintf(out, cap, "%.*s", (int)wf_buf_len(&b), wf_buf_rptr(&b));
    wf_buf_free(&b);
    wf_input_free(r);
    fclose(fp);
}

TEST(jsonl_copied_fields_are_byte_exact)
{
    char out[512];
    extra_of("{\"id\": 1.50, \"raw\":\"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n\", \"tags\" : [1,{\"a\":\"}\"}],"
             "\"s\":\"x\\\"y\", \"n\":null,\"e\":{}}\n",
             WF_INPUT_JSONL, out, sizeof(out));
    CHECK_EQ_STR(out, ",\"id\":1.50,\"tags\":[1,{\"a\":\"}\"}],\"s\":\"x\\\"y\",\"n\":null,\"e\":{}");
    /* recorded-request rows: url, method, headers, body are the request */
    extra_of("{\"url\":\"/a?b=c\",\"method\":\"POST\",\"headers\":{\"x\":\"y\"},\"body\":\"z\",\"label\":\"sqli\"}",
             WF_INPUT_JSONL, out, sizeof(out));
    CHECK_EQ_STR(out, ",\"label\":\"sqli\"");
    /* names that collide with the output's own keys are renamed; an escaped name is read unescaped */
    extra_of("{\"r\\u0061w\":\"GET / HTTP/1.1\\r\\n\\r\\n\",\"index\":7,\"verdict\":true,\"k\":-1e5}", WF_INPUT_JSONL,
             out, sizeof(out));
    CHECK_EQ_STR(out, ",\"input_index\":7,\"input_verdict\":true,\"k\":-1e5");
    /* an invalid request in a raw row keeps its fields; an unreadable row has none */
    extra_of("{\"raw\":\"nonsense\",\"id\":3}", WF_INPUT_JSONL, out, sizeof(out));
    CHECK_EQ_STR(out, ",\"id\":3");
    extra_of("{\"raw\":", WF_INPUT_JSONL, out, sizeof(out));
    CHECK_EQ_STR(out, "");
    extra_of("{\"path\":\"/\",\"id\":3}", WF_INPUT_JSONLOG, out, sizeof(out));
    CHECK_EQ_STR(out, "");
}

TEST(format_names)
{
    CHECK_EQ_INT(wf_input_format_parse("json-log"), WF_INPUT_JSONLOG);
    CHECK_EQ_INT(wf_input_format_parse("nginx"), WF_INPUT_NGINX);
    CHECK_EQ_INT(wf_input_format_parse("jsonlog"), -1);
}

TEST_MAIN()
