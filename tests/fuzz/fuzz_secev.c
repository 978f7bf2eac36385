/*
 * libFuzzer target for security events read back from a spool and written
 * as JSON: wf_secev_unpack on arbitrary bytes (a damaged spool record) must
 * fail cleanly or give a record that wf_secev_json turns into valid JSON;
 * arbitrary bytes set into every string field (wf_secev_set, cut at UTF-8
 * boundaries) must give valid JSON whose strings are valid UTF-8 (jansson
 * rejects anything else), and pack/unpack must give the record back exactly.
 */
#include "secops/secops_int.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>

#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "invariant failed: %s (line %d)\n", #c, __LINE__);   \
            abort();                                                              \
        }                                                                         \
    } while (0)

static void json_ok(const wf_secev_t *ev)
{
    wf_buf_t b;
    CHECK(wf_buf_init(&b, 1024, 1 << 20) == 0);
    CHECK(wf_secev_json(ev, &b) == 0);
    json_error_t je;
    json_t *j = json_loadb(wf_buf_rptr(&b), wf_buf_len(&b), 0, &je);
    if (!j)
        fprintf(stderr, "invalid JSON: %s: %.*s\n", je.text, (int)wf_buf_len(&b), wf_buf_rptr(&b));
    CHECK(j != NULL);
    json_decref(j);
    wf_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static wf_secev_t ev, back;
    static unsigned char packed[8192];
    if (size == 0)
        return 0;
    /* 1: the bytes as a packed record */
    if (wf_secev_unpack(data, size, &ev) == 0)
        json_ok(&ev);

    /* 2: the bytes spread over the string fields */
    wf_secev_init(&ev);
    ev.action = (wf_secev_action_t)(data[0] % (WF_SECEV__COUNT + 1));
    ev.reason = (wf_secev_reason_t)(data[0] / 16 % (WF_SECEV_R__COUNT + 1));
    ev.nunits = data[0] % 10;
    ev.nmisp = data[0] % 11;
    wf_str_t s = wf_str((const char *)data + 1, size - 1);
    WF_SECEV_SET(&ev, request_id, s);
    WF_SECEV_SET(&ev, client_ip, s);
    WF_SECEV_SET(&ev, host, s);
    WF_SECEV_SET(&ev, path, s);
    WF_SECEV_SET(&ev, query, s);
    WF_SECEV_SET(&ev, user_agent, s);
    WF_SECEV_SET(&ev, misp_tags, s);
    WF_SECEV_SET(&ev, units[0].text, s);
    WF_SECEV_SET(&ev, units[1].name, s);
    WF_SECEV_SET(&ev, misp_event[0], s);
    wf_secev_sanitize(&ev);
    json_ok(&ev);
    CHECK(wf_secev_pack_bound() <= sizeof(packed));
    size_t n = wf_secev_pack(&ev, packed);
    CHECK(n <= wf_secev_pack_bound());
    CHECK(wf_secev_unpack(packed, n, &back) == 0);
    CHECK(memcmp(&ev, &back, sizeof(ev)) == 0);
    return 0;
}
