/* Shared between the inspect sources: the per-request extraction context. */
#ifndef WAFER_INSPECT_INTERNAL_H
#define WAFER_INSPECT_INTERNAL_H

#include "wafer/inspect.h"

typedef struct {
    const wf_inspect_conf_t *conf;
    wf_arena_t *arena;
    wf_units_t *out;
    wf_inspect_stats_t *stats; /* never NULL here (a local one stands in) */
    size_t cap_units;          /* room in out->units */
    size_t total;              /* text bytes so far */
    char *scratch;             /* max_value_bytes, for decoding */
    char *scratch2;            /* max_value_bytes, for JSON unescaping and names */
} wf_ix_t;

/* Decodes and appends a unit (split into windows when long). `raw_name` is
 * decoded with name_mode | WF_DECODE_NAME; `raw_value` with value_mode.
 * Returns 0, or WF_ELIMIT (negative) when no more units fit. */
int wf_ix_add(wf_ix_t *x, wf_unit_kind_t kind, wf_str_t raw_name, uint32_t name_mode, wf_str_t raw_value,
              uint32_t value_mode, uint32_t extra_flags);

/* Body scanners. Each returns 0 when the body was well-formed (units added),
 * -WF_EPARSE when malformed and -WF_ELIMIT when over a limit that makes the
 * body uninspectable as declared (JSON depth); the caller then rolls back and
 * inspects the raw body as one unit. */
int wf_ix_json(wf_ix_t *x, wf_str_t body);
int wf_ix_multipart(wf_ix_t *x, wf_str_t body, wf_str_t content_type);

/* Splits an urlencoded string on '&' and adds one unit per argument. */
void wf_ix_urlencoded(wf_ix_t *x, wf_unit_kind_t kind, wf_str_t s);

#endif
