/* The admin endpoints for bans, called as plain functions with requests built here. */
#include "test.h"
#include "wafer/core.h"
#include "wafer/policy.h"

#include <jansson.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    wf_buf_t body;
    wf_admin_resp_t resp;
} reply_t;

static void call(wf_admin_fn fn, wf_bans_t *b, const char *rest, const char *query, reply_t *r)
{
    wf_buf_init(&r->body, 256, 1 << 20);
    r->resp = (wf_admin_resp_t){ .status = 200, .content_type = NULL, .body = &r->body };
    wf_admin_req_t req = { .method = WF_STR("X"), .path = WF_STR("/bans"), .rest = wf_str_c(rest),
                           .query = wf_str_c(query), .body = WF_STR_NULL };
    fn(&req, &r->resp, b);
}

static json_t *body_json(reply_t *r)
{
    json_error_t je;
    json_t *j = json_loadb(wf_buf_rptr(&r->body), wf_buf_len(&r->body), 0, &je);
    if (!j)
        fprintf(stderr, "  not JSON (%s): %.*s\n", je.text, (int)wf_buf_len(&r->body), wf_buf_rptr(&r->body));
    return j;
}

static wf_sockaddr_t addr_of(const char *s)
{
    wf_sockaddr_t a;
    if (wf_sockaddr_parse(s, &a) != 0)
        abort();
    return a;
}

TEST(list_add_delete)
{
    wf_ban_conf_t bc = { .detections = 2, .window_ms = 60000, .duration_ms = 600000, .max_clients = 1000 };
    wf_bans_t *b = wf_bans_new(&bc);
    reply_t r;

    call(wf_bans_admin_get, b, "", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    json_t *j = body_json(&r);
    CHECK(json_is_array(j) && json_array_size(j) == 0);
    json_decref(j);
    wf_buf_free(&r.body);

    /* a detection ban and two manual ones */
    wf_sockaddr_t c = addr_of("198.51.100.7:4000");
    uint64_t now = wf_now_ms();
    wf_bans_record(b, &c, now, NULL, NULL);
    CHECK_EQ_INT(wf_bans_record(b, &c, now, NULL, NULL), 1);

    call(wf_bans_admin_post, b, "/2001:db8::1", "duration=90s", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    j = body_json(&r);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "client")), "2001:db8::1") == 0);
    json_int_t left = json_integer_value(json_object_get(j, "seconds_left"));
    CHECK(left >= 89 && left <= 90);
    CHECK_EQ_INT(json_integer_value(json_object_get(j, "detections")), 0);
    const char *until = json_string_value(json_object_get(j, "until"));
    CHECK(until && strlen(until) == 24 && until[10] == 'T' && until[23] == 'Z');
    json_decref(j);
    wf_buf_free(&r.body);

    call(wf_bans_admin_post, b, "/[2001:db8::2]", "x=1&duration=2h", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    wf_buf_free(&r.body);
    call(wf_bans_admin_post, b, "/203.0.113.1", "", &r); /* the configured duration */
    CHECK_EQ_INT(r.resp.status, 200);
    j = body_json(&r);
    left = json_integer_value(json_object_get(j, "seconds_left"));
    CHECK(left >= 599 && left <= 600);
    json_decref(j);
    wf_buf_free(&r.body);

    call(wf_bans_admin_get, b, "", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    j = body_json(&r);
    CHECK(json_is_array(j) && json_array_size(j) == 4);
    int seen = 0;
    for (size_t i = 0; j && i < json_array_size(j); i++) {
        json_t *o = json_array_get(j, i);
        const char *cl = json_string_value(json_object_get(o, "client"));
        if (cl && strcmp(cl, "198.51.100.7") == 0) {
            seen++;
            CHECK_EQ_INT(json_integer_value(json_object_get(o, "detections")), 2);
        }
        if (cl && strcmp(cl, "2001:db8::2") == 0) {
            seen++;
            left = json_integer_value(json_object_get(o, "seconds_left"));
            CHECK(left >= 7199 && left <= 7200);
        }
    }
    CHECK_EQ_INT(seen, 2);
    json_decref(j);
    wf_buf_free(&r.body);

    call(wf_bans_admin_get, b, "/198.51.100.7", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    wf_buf_free(&r.body);

    call(wf_bans_admin_delete, b, "/198.51.100.7", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    j = body_json(&r);
    CHECK(j && json_is_true(json_object_get(j, "lifted")));
    json_decref(j);
    wf_buf_free(&r.body);
    CHECK(!wf_bans_check(b, &c, wf_now_ms(), NULL));

    call(wf_bans_admin_delete, b, "/198.51.100.7", "", &r);
    CHECK_EQ_INT(r.resp.status, 404);
    wf_buf_free(&r.body);
    call(wf_bans_admin_get, b, "/198.51.100.7", "", &r);
    CHECK_EQ_INT(r.resp.status, 404);
    wf_buf_free(&r.body);
    wf_bans_free(b);
}

TEST(ipv6_networks)
{
    wf_ban_conf_t bc = { .detections = 2, .window_ms = 60000, .duration_ms = 600000, .max_clients = 1000,
                         .ipv6_prefix = 64 };
    wf_bans_t *b = wf_bans_new(&bc);
    reply_t r;
    call(wf_bans_admin_post, b, "/2001:db8:5:6:7::1", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    json_t *j = body_json(&r);
    CHECK(j && strcmp(json_string_value(json_object_get(j, "client")), "2001:db8:5:6::/64") == 0);
    json_decref(j);
    wf_buf_free(&r.body);
    call(wf_bans_admin_get, b, "/2001:db8:5:6::abcd", "", &r); /* another address of the network */
    CHECK_EQ_INT(r.resp.status, 200);
    wf_buf_free(&r.body);
    call(wf_bans_admin_get, b, "", "", &r);
    j = body_json(&r);
    CHECK(j && json_array_size(j) == 1 &&
          strcmp(json_string_value(json_object_get(json_array_get(j, 0), "client")), "2001:db8:5:6::/64") == 0);
    json_decref(j);
    wf_buf_free(&r.body);
    call(wf_bans_admin_delete, b, "/2001:db8:5:6::2", "", &r);
    CHECK_EQ_INT(r.resp.status, 200);
    wf_buf_free(&r.body);
    wf_bans_free(b);
}

TEST(bad_requests)
{
    wf_ban_conf_t bc = { .detections = 2, .window_ms = 60000, .duration_ms = 600000, .max_clients = 1000 };
    wf_bans_t *b = wf_bans_new(&bc);
    reply_t r;
    const char *bad_ips[] = { "", "/", "/example.com", "/1.2.3.4/5", "/1.2.3.256", "/[1.2.3.4", NULL };
    for (int i = 0; bad_ips[i]; i++) {
        call(wf_bans_admin_post, b, bad_ips[i], "", &r);
        CHECK_EQ_INT(r.resp.status, 400);
        json_t *j = body_json(&r);
        CHECK(j && json_string_value(json_object_get(j, "error")));
        json_decref(j);
        wf_buf_free(&r.body);
        call(wf_bans_admin_delete, b, bad_ips[i], "", &r);
        CHECK_EQ_INT(r.resp.status, 400);
        wf_buf_free(&r.body);
    }
    const char *bad_dur[] = { "duration=", "duration=soon", "duration=0s", "duration=400d", NULL };
    for (int i = 0; bad_dur[i]; i++) {
        call(wf_bans_admin_post, b, "/192.0.2.1", bad_dur[i], &r);
        CHECK_EQ_INT(r.resp.status, 400);
        wf_buf_free(&r.body);
    }
    wf_sockaddr_t a = addr_of("192.0.2.1:1");
    CHECK(!wf_bans_check(b, &a, wf_now_ms(), NULL));
    call(wf_bans_admin_get, b, "/nope", "", &r);
    CHECK_EQ_INT(r.resp.status, 400);
    wf_buf_free(&r.body);
    wf_bans_free(b);
}

/* ---- through a real admin listener on loopback ---- */

static char *exchange(const wf_sockaddr_t *to, const char *raw)
{
    static char buf[65536];
    size_t n = 0;
    buf[0] = 0;
    int fd = socket(to->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)&to->ss, to->len) < 0) {
        if (fd >= 0)
            close(fd);
        return buf;
    }
    if (write(fd, raw, strlen(raw)) == (ssize_t)strlen(raw)) {
        while (n + 1 < sizeof(buf)) {
            struct pollfd pf = { fd, POLLIN, 0 };
            if (poll(&pf, 1, 3000) != 1)
                break;
            ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
        }
    }
    buf[n] = 0;
    close(fd);
    return buf;
}

static int call_http(const wf_sockaddr_t *to, const char *method, const char *target, json_t **body)
{
    char req[512];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: admin\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
             method, target);
    const char *resp = exchange(to, req);
    int st = -1;
    if (sscanf(resp, "HTTP/1.1 %d", &st) != 1)
        return -1;
    const char *b = strstr(resp, "\r\n\r\n");
    if (body) {
        json_error_t je;
        *body = b ? json_loads(b + 4, 0, &je) : NULL;
    }
    return st;
}

TEST(over_the_admin_listener)
{
    wf_ban_conf_t bc = { .detections = 2, .window_ms = 60000, .duration_ms = 600000, .max_clients = 1000 };
    wf_bans_t *b = wf_bans_new(&bc);
    CHECK_EQ_INT(wf_bans_admin_register(b), 0);
    wf_admin_conf_t ac;
    wf_admin_conf_defaults(&ac);
    free(ac.address);
    ac.address = strdup("127.0.0.1:0");
    wf_sockaddr_parse(ac.address, &ac.addr);
    wf_admin_t *a = NULL;
    char msg[256], addr[80];
    CHECK_EQ_INT(wf_admin_start(&ac, &a, msg, sizeof(msg)), 0);
    wf_admin_conf_free(&ac);
    if (!a)
        return;
    wf_admin_address(a, addr, sizeof(addr));
    wf_sockaddr_t to;
    wf_sockaddr_parse(addr, &to);

    json_t *j = NULL;
    CHECK_EQ_INT(call_http(&to, "POST", "/bans/192.0.2.5?duration=1m", &j), 200);
    CHECK(j && json_integer_value(json_object_get(j, "seconds_left")) == 60);
    json_decref(j);
    wf_sockaddr_t c = addr_of("192.0.2.5:80");
    CHECK(wf_bans_check(b, &c, wf_now_ms(), NULL));
    CHECK_EQ_INT(call_http(&to, "GET", "/bans", &j), 200);
    CHECK(json_is_array(j) && json_array_size(j) == 1);
    CHECK_EQ_STR(json_string_value(json_object_get(json_array_get(j, 0), "client")), "192.0.2.5");
    json_decref(j);
    CHECK_EQ_INT(call_http(&to, "DELETE", "/bans/192.0.2.5", &j), 200);
    json_decref(j);
    CHECK(!wf_bans_check(b, &c, wf_now_ms(), NULL));
    CHECK_EQ_INT(call_http(&to, "DELETE", "/bans/192.0.2.5", &j), 404);
    json_decref(j);
    CHECK_EQ_INT(call_http(&to, "POST", "/bans/not-an-ip", &j), 400);
    json_decref(j);
    int st = call_http(&to, "PUT", "/bans/192.0.2.5", NULL);
    CHECK(st == 404 || st == 405);
    wf_admin_stop(a);
    wf_bans_free(b);
}

TEST_MAIN()
