/* YAML configuration loading into a positioned tree (see wafer/conf.h). */
#include "wafer/conf.h"
#include "wafer/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <yaml.h>

#define CONF_MAX_DEPTH 64
#define CONF_MAX_BYTES (16u << 20)

struct wf_conf {
    wf_arena_t arena;
    char *file;
    wf_conf_node_t *root;
};

const wf_conf_node_t *wf_conf_root(const wf_conf_t *c) { return c->root; }
const char *wf_conf_file(const wf_conf_t *c) { return c->file; }

static int vseterr(wf_conf_err_t *err, const char *file, int line, int col, const char *path, const char *fmt, va_list ap)
{
    if (!err)
        return -WF_ECONFIG;
    int n;
    if (path && *path)
        n = snprintf(err->msg, sizeof(err->msg), "%s:%d:%d: %s: ", file, line, col, path);
    else
        n = snprintf(err->msg, sizeof(err->msg), "%s:%d:%d: ", file, line, col);
    if (n < 0 || (size_t)n >= sizeof(err->msg))
        return -WF_ECONFIG;
    vsnprintf(err->msg + n, sizeof(err->msg) - (size_t)n, fmt, ap);
    return -WF_ECONFIG;
}

int wf_conf_errorf(const wf_conf_t *c, const wf_conf_node_t *at, wf_conf_err_t *err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vseterr(err, c->file, at ? at->line : 1, at ? at->col : 1, at ? at->path : NULL, fmt, ap);
    va_end(ap);
    return rc;
}

static int seterr(wf_conf_err_t *err, const char *file, int line, int col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = vseterr(err, file, line, col, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

typedef struct {
    wf_conf_t *c;
    yaml_parser_t parser;
    wf_conf_err_t *err;
} loader_t;

static wf_conf_node_t *node_new(loader_t *L, wf_conf_type_t type, const yaml_mark_t *m, const char *key, const char *path)
{
    wf_conf_node_t *n = wf_arena_calloc(&L->c->arena, sizeof(*n));
    if (!n)
        return NULL;
    n->type = type;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    n->key = key;
    n->path = path;
    return n;
}

static int node_push(loader_t *L, wf_conf_node_t *parent, wf_conf_node_t *child, size_t *cap)
{
    if (parent->nitems == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        wf_conf_node_t **items = wf_arena_alloc(&L->c->arena, ncap * sizeof(*items));
        if (!items)
            return -ENOMEM;
        if (parent->nitems)
            memcpy(items, parent->items, parent->nitems * sizeof(*items));
        parent->items = items;
        *cap = ncap;
    }
    parent->items[parent->nitems++] = child;
    return 0;
}

static char *path_join(loader_t *L, const char *base, const char *key, long index)
{
    char tmp[512];
    if (index >= 0)
        snprintf(tmp, sizeof(tmp), "%s[%ld]", base ? base : "", index);
    else if (base && *base)
        snprintf(tmp, sizeof(tmp), "%s.%s", base, key);
    else
        snprintf(tmp, sizeof(tmp), "%s", key);
    return wf_arena_strndup(&L->c->arena, tmp, strlen(tmp));
}

static int next_event(loader_t *L, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&L->parser, ev))
        return seterr(L->err, L->c->file, (int)L->parser.problem_mark.line + 1, (int)L->parser.problem_mark.column + 1,
                      "YAML syntax error: %s%s%s", L->parser.problem ? L->parser.problem : "unknown",
                      L->parser.context ? " " : "", L->parser.context ? L->parser.context : "");
    return 0;
}

static int parse_node(loader_t *L, yaml_event_t *ev, const char *key, const char *path, int depth, wf_conf_node_t **out);

static int parse_collection(loader_t *L, wf_conf_node_t *n, int is_map, int depth)
{
    size_t cap = 0;
    long index = 0;
    for (;;) {
        yaml_event_t ev;
        int rc = next_event(L, &ev);
        if (rc)
            return rc;
        if (ev.type == (is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT)) {
            yaml_event_delete(&ev);
            return 0;
        }
        const char *key = NULL;
        char *path;
        yaml_mark_t key_mark = ev.start_mark;
        if (is_map) {
            if (ev.type != YAML_SCALAR_EVENT) {
                rc = seterr(L->err, L->c->file, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                            "%s%smapping keys must be plain scalars", n->path, *n->path ? ": " : "");
                yaml_event_delete(&ev);
                return rc;
            }
            key = wf_arena_strndup(&L->c->arena, (const char *)ev.data.scalar.value, ev.data.scalar.length);
            if (!key) {
                yaml_event_delete(&ev);
                return -ENOMEM;
            }
            for (size_t i = 0; i < n->nitems; i++) {
                if (strcmp(n->items[i]->key, key) == 0) {
                    rc = seterr(L->err, L->c->file, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                                "%s: duplicate key (first at line %d)", path_join(L, n->path, key, -1), n->items[i]->line);
                    yaml_event_delete(&ev);
                    return rc;
                }
            }
            yaml_event_delete(&ev);
            path = path_join(L, n->path, key, -1);
            rc = next_event(L, &ev);
            if (rc)
                return rc;
        } else {
            path = path_join(L, n->path, NULL, index++);
        }
        if (!path) {
            yaml_event_delete(&ev);
            return -ENOMEM;
        }
        wf_conf_node_t *child;
        rc = parse_node(L, &ev, key, path, depth + 1, &child);
        if (rc)
            return rc;
        if (is_map) {
            /* errors about an entry point at its key */
            child->line = (int)key_mark.line + 1;
            child->col = (int)key_mark.column + 1;
        }
        rc = node_push(L, n, child, &cap);
        if (rc)
            return rc;
    }
}

/* Consumes `ev` (the node's first event) and the rest of the node. */
static int parse_node(loader_t *L, yaml_event_t *ev, const char *key, const char *path, int depth, wf_conf_node_t **out)
{
    int rc = 0;
    wf_conf_node_t *n = NULL;
    if (depth > CONF_MAX_DEPTH) {
        rc = seterr(L->err, L->c->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "nesting deeper than %d levels", CONF_MAX_DEPTH);
        yaml_event_delete(ev);
        return rc;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        n = node_new(L, WF_CONF_SCALAR, &ev->start_mark, key, path);
        if (!n || !(n->value = wf_arena_strndup(&L->c->arena, (const char *)ev->data.scalar.value, ev->data.scalar.length))) {
            rc = -ENOMEM;
            break;
        }
        if (strlen(n->value) != ev->data.scalar.length) {
            rc = seterr(L->err, L->c->file, n->line, n->col, "%s: NUL byte in value", path);
            break;
        }
        n->quoted = ev->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
                    ev->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
        break;
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
        int is_map = ev->type == YAML_MAPPING_START_EVENT;
        n = node_new(L, is_map ? WF_CONF_MAP : WF_CONF_SEQ, &ev->start_mark, key, path);
        if (!n) {
            rc = -ENOMEM;
            break;
        }
        yaml_event_delete(ev);
        rc = parse_collection(L, n, is_map, depth);
        *out = n;
        return rc;
    }
    case YAML_ALIAS_EVENT:
        rc = seterr(L->err, L->c->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "%s: YAML aliases are not supported", path);
        break;
    default:
        rc = seterr(L->err, L->c->file, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                    "unexpected YAML event");
        break;
    }
    yaml_event_delete(ev);
    *out = n;
    return rc;
}

int wf_conf_load_string(const char *name, const char *text, size_t len, wf_conf_t **out, wf_conf_err_t *err)
{
    *out = NULL;
    if (len > CONF_MAX_BYTES)
        return seterr(err, name, 1, 1, "file larger than %u bytes", CONF_MAX_BYTES);
    wf_conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    wf_arena_init(&c->arena, 16384, 0);
    c->file = strdup(name);
    loader_t L = { .c = c, .err = err };
    if (!c->file || !yaml_parser_initialize(&L.parser)) {
        wf_conf_free(c);
        return -ENOMEM;
    }
    yaml_parser_set_input_string(&L.parser, (const unsigned char *)text, len);
    int rc = 0;
    yaml_event_t ev;
    int state = 0; /* 0: before stream, 1: before document, 2: in document, 3: after document */
    while (rc == 0) {
        rc = next_event(&L, &ev);
        if (rc)
            break;
        if (ev.type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            break;
        }
        if (ev.type == YAML_STREAM_START_EVENT || ev.type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type == YAML_DOCUMENT_START_EVENT) {
            if (state >= 2)
                rc = seterr(err, name, (int)ev.start_mark.line + 1, 1, "more than one YAML document");
            state = 2;
            yaml_event_delete(&ev);
            continue;
        }
        if (ev.type != YAML_MAPPING_START_EVENT) {
            rc = seterr(err, name, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                        "the top level must be a mapping of keys");
            yaml_event_delete(&ev);
            break;
        }
        rc = parse_node(&L, &ev, NULL, wf_arena_strndup(&c->arena, "", 0), 0, &c->root);
    }
    yaml_parser_delete(&L.parser);
    if (rc == 0 && !c->root) {
        /* an empty file is an empty mapping: every default applies */
        yaml_mark_t m = { 0 };
        loader_t L2 = { .c = c, .err = err };
        c->root = node_new(&L2, WF_CONF_MAP, &m, NULL, "");
        if (!c->root)
            rc = -ENOMEM;
    }
    if (rc) {
        if (rc == -ENOMEM && err)
            snprintf(err->msg, sizeof(err->msg), "%s: out of memory", name);
        wf_conf_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

int wf_conf_load_file(const char *path, wf_conf_t **out, wf_conf_err_t *err)
{
    *out = NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        if (err)
            snprintf(err->msg, sizeof(err->msg), "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    size_t cap = 65536, len = 0;
    char *text = malloc(cap);
    int rc = 0;
    while (text) {
        size_t n = fread(text + len, 1, cap - len, fp);
        len += n;
        if (n == 0)
            break;
        if (len == cap) {
            if (cap >= CONF_MAX_BYTES + 1) {
                break;
            }
            char *nt = realloc(text, cap * 2);
            if (!nt) {
                free(text);
                text = NULL;
                break;
            }
            text = nt;
            cap *= 2;
        }
    }
    if (ferror(fp)) {
        int e = errno;
        if (err)
            snprintf(err->msg, sizeof(err->msg), "%s: read error: %s", path, strerror(e));
        rc = -e;
    }
    fclose(fp);
    if (!text)
        return -ENOMEM;
    if (rc == 0)
        rc = wf_conf_load_string(path, text, len, out, err);
    free(text);
    return rc;
}

void wf_conf_free(wf_conf_t *c)
{
    if (!c)
        return;
    wf_arena_free(&c->arena);
    free(c->file);
    free(c);
}

const wf_conf_node_t *wf_conf_get(const wf_conf_node_t *map, const char *key)
{
    if (!map || map->type != WF_CONF_MAP)
        return NULL;
    for (size_t i = 0; i < map->nitems; i++)
        if (strcmp(map->items[i]->key, key) == 0)
            return map->items[i];
    return NULL;
}

/* "a, b, c" from a NULL-terminated list, as many whole words as fit. */
static void words_join(const char *const *words, char *buf, size_t len)
{
    size_t k = 0;
    buf[0] = 0;
    for (; *words; words++) {
        size_t need = strlen(*words) + (k ? 2 : 0);
        if (k + need >= len)
            break;
        k += (size_t)snprintf(buf + k, len - k, "%s%s", k ? ", " : "", *words);
    }
}

int wf_conf_check_keys(const wf_conf_t *c, const wf_conf_node_t *map, const char *const *allowed, wf_conf_err_t *err)
{
    if (!map)
        return 0;
    if (map->type != WF_CONF_MAP)
        return wf_conf_errorf(c, map, err, "expected a mapping");
    for (size_t i = 0; i < map->nitems; i++) {
        int ok = 0;
        for (const char *const *a = allowed; *a; a++)
            if (strcmp(*a, map->items[i]->key) == 0) {
                ok = 1;
                break;
            }
        if (!ok) {
            char known[256];
            words_join(allowed, known, sizeof(known));
            return wf_conf_errorf(c, map->items[i], err, "unknown key (known keys: %s)", known);
        }
    }
    return 0;
}

static const wf_conf_node_t *scalar_at(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, wf_conf_err_t *err, int *rc)
{
    *rc = 0;
    const wf_conf_node_t *n = wf_conf_get(map, key);
    if (!n)
        return NULL;
    if (n->type != WF_CONF_SCALAR) {
        *rc = wf_conf_errorf(c, n, err, "expected a single value, got a %s", n->type == WF_CONF_MAP ? "mapping" : "list");
        return NULL;
    }
    return n;
}

int wf_conf_str(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, const char **out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (n)
        *out = n->value;
    return rc;
}

int wf_conf_bool(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, bool *out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (!n)
        return rc;
    const char *v = n->value;
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "on"))
        *out = true;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "off"))
        *out = false;
    else
        return wf_conf_errorf(c, n, err, "expected true or false, got \"%s\"", v);
    return 0;
}

int wf_conf_int(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, int64_t min, int64_t max, int64_t *out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (!n)
        return rc;
    char *end;
    errno = 0;
    long long v = strtoll(n->value, &end, 10);
    if (errno || end == n->value || *end)
        return wf_conf_errorf(c, n, err, "expected an integer, got \"%s\"", n->value);
    if (v < min || v > max)
        return wf_conf_errorf(c, n, err, "%lld is out of range [%lld, %lld]", v, (long long)min, (long long)max);
    *out = v;
    return 0;
}

int wf_parse_size(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    uint64_t mul = 1;
    if (*end) {
        switch (*end | 32) {
        case 'k': mul = 1ull << 10; break;
        case 'm': mul = 1ull << 20; break;
        case 'g': mul = 1ull << 30; break;
        default: return -EINVAL;
        }
        end++;
        if ((*end | 32) == 'b')
            end++;
        if (*end)
            return -EINVAL;
    }
    if (v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int wf_parse_duration_ms(const char *s, uint64_t *out)
{
    char *end;
    if (!s || *s < '0' || *s > '9')
        return -EINVAL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    uint64_t mul;
    if (!*end || !strcmp(end, "s"))
        mul = 1000;
    else if (!strcmp(end, "ms"))
        mul = 1;
    else if (!strcmp(end, "m"))
        mul = 60000;
    else if (!strcmp(end, "h"))
        mul = 3600000;
    else
        return -EINVAL;
    if (v > UINT64_MAX / mul)
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int wf_conf_size(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, uint64_t min, uint64_t max, uint64_t *out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (!n)
        return rc;
    uint64_t v;
    if (wf_parse_size(n->value, &v))
        return wf_conf_errorf(c, n, err, "expected a size such as 8192, 64k or 10m, got \"%s\"", n->value);
    if (v < min || v > max)
        return wf_conf_errorf(c, n, err, "size %llu is out of range [%llu, %llu]", (unsigned long long)v,
                              (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

int wf_conf_duration_ms(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, uint64_t min, uint64_t max, uint64_t *out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (!n)
        return rc;
    uint64_t v;
    if (wf_parse_duration_ms(n->value, &v))
        return wf_conf_errorf(c, n, err, "expected a duration such as 30s, 500ms or 5m, got \"%s\"", n->value);
    if (v < min || v > max)
        return wf_conf_errorf(c, n, err, "duration %llums is out of range [%llums, %llums]", (unsigned long long)v,
                              (unsigned long long)min, (unsigned long long)max);
    *out = v;
    return 0;
}

int wf_conf_enum(const wf_conf_t *c, const wf_conf_node_t *map, const char *key, const char *const *words, int *out, wf_conf_err_t *err)
{
    int rc;
    const wf_conf_node_t *n = scalar_at(c, map, key, err, &rc);
    if (!n)
        return rc;
    for (int i = 0; words[i]; i++) {
        if (!strcmp(words[i], n->value)) {
            *out = i;
            return 0;
        }
    }
    char known[256];
    words_join(words, known, sizeof(known));
    return wf_conf_errorf(c, n, err, "expected one of %s, got \"%s\"", known, n->value);
}
