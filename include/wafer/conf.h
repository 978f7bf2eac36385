/*
 * wafer configuration: a YAML document (libyaml) loaded into a tree of nodes
 * that remember their file, line and column, with typed accessors whose
 * errors name the file, the line and the key:
 *
 *     wafer.yaml:12:5: listen.timeouts.header: expected a duration such as 30s or 500ms, got "fast"
 *
 * Each part parses its own section with these accessors into its own struct;
 * unknown keys are errors (wf_conf_check_keys), so a typo never silently
 * falls back to a default.
 */
#ifndef WAFER_CONF_H
#define WAFER_CONF_H

#include "wafer/common.h"
#include <stdbool.h>

typedef enum { WF_CONF_SCALAR, WF_CONF_MAP, WF_CONF_SEQ } wf_conf_type_t;

typedef struct wf_conf_node wf_conf_node_t;
struct wf_conf_node {
    wf_conf_type_t type;
    const char *key;     /* key in the parent map, or NULL */
    const char *path;    /* dotted path from the root, e.g. "upstreams[0].address" */
    const char *value;   /* scalar text (NUL-terminated), or NULL */
    bool quoted;         /* scalar was quoted in the source */
    int line, col;       /* 1-based position in the file */
    wf_conf_node_t **items; /* children: map values (with key) or sequence items */
    size_t nitems;
};

typedef struct wf_conf wf_conf_t;

/* Error text, already formatted with file:line:col. */
typedef struct {
    char msg[512];
} wf_conf_err_t;

/* Loads and parses a YAML file. The root must be a mapping. Returns 0 or
 * WF_ECONFIG / -errno with err filled in. */
int wf_conf_load_file(const char *path, wf_conf_t **out, wf_conf_err_t *err);
/* Same, from memory; `name` stands in for the file name in messages. */
int wf_conf_load_string(const char *name, const char *text, size_t len, wf_conf_t **out, wf_conf_err_t *err);
void wf_conf_free(wf_conf_t *c);

const wf_conf_node_t *wf_conf_root(const wf_conf_t *c);
const char *wf_conf_file(const wf_conf_t *c);

/* Child of a mapping by key, or NULL. */
const wf_conf_node_t *wf_conf_get(const wf_conf_node_t *map, const char *key);

/* Fails if the mapping has a key not in the NULL-terminated list. */
int wf_conf_check_keys(const wf_conf_t *c, const wf_conf_node_t *map, const char *const *allowed, wf_conf_err_t *err);

/* Typed getters: if the key is absent, *out keeps its value (the default)
 * and 0 is returned; if present but invalid, WF_ECONFIG with err set. */
int wf_conf_str(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, const char **out, wf_conf_err_t *err);
int wf_conf_bool(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, bool *out, wf_conf_err_t *err);
int wf_conf_int(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, int64_t min, int64_t max, int64_t *out, wf_conf_err_t *err);
/* Sizes: plain bytes or with a k/m/g suffix (binary: 1k = 1024). */
int wf_conf_size(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, uint64_t min, uint64_t max, uint64_t *out, wf_conf_err_t *err);
/* Durations in milliseconds: "250ms", "30s", "5m", "1h"; a bare number is seconds. */
int wf_conf_duration_ms(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, uint64_t min, uint64_t max, uint64_t *out, wf_conf_err_t *err);
/* One of a NULL-terminated list of words; *out is its index. */
int wf_conf_enum(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, const char *const *words, int *out, wf_conf_err_t *err);

/* Formats an error at a node: "<file>:<line>:<col>: <path>: <message>". */
int wf_conf_errorf(const wf_conf_t *c, const wf_conf_node_t *at, wf_conf_err_t *err, const char *fmt, ...) WF_PRINTF(4, 5);

/* Value parsers, usable on their own (0 or -EINVAL). */
int wf_parse_size(const char *s, uint64_t *out);
int wf_parse_duration_ms(const char *s, uint64_t *out);

#endif
