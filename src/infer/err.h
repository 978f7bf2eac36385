/*
 * Inference (internal): the one way the loader, the session and the backends
 * report an error: ERR(code, fmt, ...) writes the message into the function's
 * `wf_err_t *err` when the caller gave one, then returns `code` (a wf_status_t).
 * Include it only from .c/.cu files: the short name is meant to stay private.
 */
#ifndef WAFER_INFER_ERR_H
#define WAFER_INFER_ERR_H

#include <stdio.h>

#define ERR(code, ...)                                                                 \
    do {                                                                               \
        if (err)                                                                       \
            snprintf(err->msg, sizeof(err->msg), __VA_ARGS__);                         \
        return (code);                                                                 \
    } while (0)

#endif
