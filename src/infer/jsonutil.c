/* Internal JSON helpers for the model-directory loaders (see jsonutil.h). */
#include "infer/jsonutil.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

void wf_json_quote_name(const char *s, char *out, size_t cap)
{
    if (!cap)
        return;
    size_t n = s ? strlen(s) : 0, keep = n < cap ? n : (cap > 4 ? cap - 4 : cap - 1);
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c < 0x20 || c == 0x7f || c == '\'' || c == '"' ? '?' : (char)c;
    }
    if (keep < n && cap > 4) {
        memcpy(out + keep, "...", 3);
        keep += 3;
    }
    out[keep] = '\0';
}

wf_status_t wf_json_fail(wf_err_t *err, wf_status_t s, const char *file, const char *fmt, ...)
{
    if (err) {
        int n = snprintf(err->msg, sizeof err->msg, "%s: ", file ? file : "(null)");
        if (n < 0 || (size_t)n >= sizeof err->msg)
            n = 0;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg + n, sizeof err->msg - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return s;
}

int wf_json_depth(const uint8_t *p, size_t n)
{
    int depth = 0, max = 0;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = p[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = 0;
        } else if (c == '"') {
            in_str = 1;
        } else if (c == '{' || c == '[') {
            if (++depth > max)
                max = depth;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

wf_status_t wf_json_load_object(const char *path, size_t max_bytes, int max_depth, json_t **out, wf_err_t *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wf_json_fail(err, WF_ERR_IO, path, "cannot open: %s", strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return wf_json_fail(err, WF_ERR_IO, path, "not a readable regular file");
    }
    if ((uint64_t)sb.st_size > max_bytes) {
        close(fd);
        return wf_json_fail(err, WF_ERR_LIMIT, path, "file is %lld bytes, more than the limit of %zu",
                            (long long)sb.st_size, max_bytes);
    }
    size_t len = (size_t)sb.st_size, got = 0;
    char *buf = malloc(len + 1);
    if (!buf) {
        close(fd);
        return wf_json_fail(err, WF_ERR_NOMEM, path, "out of memory");
    }
    while (got < len) {
        ssize_t r = read(fd, buf + got, len - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return wf_json_fail(err, WF_ERR_IO, path, "cannot read: %s", strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    if (wf_json_depth((const uint8_t *)buf, len) > max_depth) {
        free(buf);
        return wf_json_fail(err, WF_ERR_FORMAT, path, "JSON nests deeper than %d levels", max_depth);
    }
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    free(buf);
    if (!root)
        return wf_json_fail(err, WF_ERR_FORMAT, path, "line %d column %d: invalid JSON: %s", je.line, je.column,
                            je.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return wf_json_fail(err, WF_ERR_FORMAT, path, "top level is not a JSON object");
    }
    *out = root;
    return WF_OK;
}
