/* Internal JSON helpers shared by the model-directory loaders (config.json,
 * wafer.json, the safetensors header). Not part of the public API. */
#ifndef WAFER_INFER_JSONUTIL_H
#define WAFER_INFER_JSONUTIL_H

#include "wafer/infer.h"

#include <jansson.h>

/* Copies a name from a hostile file into out for an error message: at most
 * cap-1 bytes, control bytes and quotes replaced by '?', "..." when cut. */
void wf_json_quote_name(const char *s, char *out, size_t cap);

/* Formats "file: message" into err (if not NULL) and returns s. */
wf_status_t wf_json_fail(wf_err_t *err, wf_status_t s, const char *file, const char *fmt, ...)
    WF_PRINTF(4, 5);

/* Reads a JSON file of at most max_bytes whose top level is an object, with
 * duplicate keys rejected and nesting limited to max_depth. */
wf_status_t wf_json_load_object(const char *path, size_t max_bytes, int max_depth, json_t **out, wf_err_t *err);

/* Deepest nesting of objects and arrays in a JSON text (strings skipped). */
int wf_json_depth(const uint8_t *p, size_t n);

#endif
