/*
 * The spool: a bounded on-disk FIFO of events for a sink whose destination
 * is down. A directory holds segment files (0000000000000001.seg, ...) of
 * framed records and a `head` file with the read position (segment, offset).
 * Records are appended to the newest segment; delivery reads from the head
 * and advances it only after the destination confirmed, so a restart
 * replays what was not confirmed (at-least-once across a crash; exactly
 * once otherwise). A segment is removed once read past.
 *
 * Segment: "WFSPOOL1", u32 record layout size (sizeof(wf_secev_t)), u32
 * layout version, then frames: u32 payload length, u32 crc32c, payload (the
 * event with its runs of zero bytes squeezed, see wf_secev_pack). Integers
 * are little-endian. A segment of another layout is set aside as .stale.
 */
#include "secops_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEG_MAGIC "WFSPOOL1"
#define SEG_HDR 16
#define LAYOUT_VERSION 1u
#define FRAME_HDR 8

/* ---- crc32c ---- */

static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}

uint32_t wf_crc32c(uint32_t crc, const void *p, size_t n)
{
    pthread_once(&crc_once, crc_init);
    const unsigned char *s = p;
    crc = ~crc;
    while (n--)
        crc = crc_table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* ---- packing: a control byte c < 0x80 is followed by c+1 literal bytes;
 * c >= 0x80 stands for (c & 0x7f) + 1 zero bytes ---- */

size_t wf_secev_pack_bound(void) { return sizeof(wf_secev_t) + sizeof(wf_secev_t) / 128 + 1; }

size_t wf_secev_pack(const wf_secev_t *ev, unsigned char *out)
{
    const unsigned char *p = (const unsigned char *)ev;
    size_t n = sizeof(*ev), i = 0, o = 0;
    while (i < n) {
        size_t j = i;
        if (p[i] == 0) {
            while (j < n && j - i < 128 && p[j] == 0)
                j++;
            out[o++] = (unsigned char)(0x80 | (j - i - 1));
        } else {
            /* a literal run ends at two zeros in a row (one zero is cheaper inline) */
            while (j < n && j - i < 128 && !(p[j] == 0 && (j + 1 >= n || p[j + 1] == 0)))
                j++;
            out[o++] = (unsigned char)(j - i - 1);
            memcpy(out + o, p + i, j - i);
            o += j - i;
        }
        i = j;
    }
    return o;
}

int wf_secev_unpack(const unsigned char *p, size_t n, wf_secev_t *ev)
{
    unsigned char *d = (unsigned char *)ev;
    size_t cap = sizeof(*ev), o = 0, i = 0;
    while (i < n) {
        unsigned c = p[i++];
        size_t run = (c & 0x7f) + 1;
        if (run > cap - o)
            return -WF_EFORMAT;
        if (c & 0x80) {
            memset(d + o, 0, run);
        } else {
            if (run > n - i)
                return -WF_EFORMAT;
            memcpy(d + o, p + i, run);
            i += run;
        }
        o += run;
    }
    if (o != cap)
        return -WF_EFORMAT;
    wf_secev_sanitize(ev);
    return 0;
}

#define TERM(f) ((f)[sizeof(f) - 1] = 0)

void wf_secev_sanitize(wf_secev_t *ev)
{
    if ((unsigned)ev->action >= WF_SECEV__COUNT)
        ev->action = WF_SECEV_BLOCK;
    if ((unsigned)ev->reason >= WF_SECEV_R__COUNT)
        ev->reason = WF_SECEV_R_MODEL;
    TERM(ev->request_id);
    TERM(ev->client_ip);
    TERM(ev->identity);
    TERM(ev->method);
    TERM(ev->host);
    TERM(ev->path);
    TERM(ev->query);
    TERM(ev->user_agent);
    TERM(ev->route);
    TERM(ev->cls);
    TERM(ev->model);
    TERM(ev->misp_tags);
    ev->nunits = WF_MIN(ev->nunits, (uint32_t)WF_SECEV_MAX_UNITS);
    ev->nmisp = WF_MIN(ev->nmisp, (uint32_t)WF_SECEV_MAX_MISP);
    for (size_t i = 0; i < WF_SECEV_MAX_UNITS; i++) {
        TERM(ev->units[i].kind);
        TERM(ev->units[i].name);
        TERM(ev->units[i].text);
        TERM(ev->units[i].cls);
    }
    for (size_t i = 0; i < WF_SECEV_MAX_MISP; i++)
        TERM(ev->misp_event[i]);
}

/* ---- the spool ---- */

#define PEEK_MAX 4096

struct wf_spool {
    char *dir;
    uint64_t max_bytes, seg_bytes;
    bool fsync_;
    uint64_t rseg, roff; /* read position; rseg 0: no segment */
    uint64_t wseg, wsize; /* the segment appended to, and its size */
    int rfd, wfd;
    uint64_t bytes;      /* unread bytes in all segments */
    uint64_t lost;
    uint32_t peek_len[PEEK_MAX]; /* frame sizes returned by the last peek */
    size_t npeek;
    unsigned char *frame; /* one frame's bytes */
};

static void le32_put(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
}

static uint32_t le32_get(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void seg_path(const wf_spool_t *sp, uint64_t seg, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%016llx.seg", sp->dir, (unsigned long long)seg);
}

static void seg_header(unsigned char *h)
{
    memcpy(h, SEG_MAGIC, 8);
    le32_put(h + 8, (uint32_t)sizeof(wf_secev_t));
    le32_put(h + 12, LAYOUT_VERSION);
}

static int fsync_dir(const wf_spool_t *sp)
{
    int fd = open(sp->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int head_write(wf_spool_t *sp)
{
    char tmp[4200], path[4200], line[64];
    snprintf(tmp, sizeof(tmp), "%s/head.tmp", sp->dir);
    snprintf(path, sizeof(path), "%s/head", sp->dir);
    int n = snprintf(line, sizeof(line), "%llu %llu\n", (unsigned long long)sp->rseg, (unsigned long long)sp->roff);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (write(fd, line, (size_t)n) != n)
        rc = errno ? -errno : -EIO;
    if (!rc && sp->fsync_ && fsync(fd) < 0)
        rc = -errno;
    close(fd);
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    return rc;
}

/* Reads a segment's header; true when it is ours and of this layout. */
static bool seg_check(int fd)
{
    unsigned char h[SEG_HDR], want[SEG_HDR];
    seg_header(want);
    return pread(fd, h, SEG_HDR, 0) == SEG_HDR && memcmp(h, want, SEG_HDR) == 0;
}

/* The end of the last whole frame of a segment (a crash may leave half of one). */
static uint64_t seg_valid_end(wf_spool_t *sp, int fd, uint64_t size, uint64_t *frames)
{
    uint64_t off = SEG_HDR;
    unsigned char fh[FRAME_HDR];
    *frames = 0;
    while (off + FRAME_HDR <= size) {
        if (pread(fd, fh, FRAME_HDR, (off_t)off) != FRAME_HDR)
            break;
        uint32_t len = le32_get(fh);
        if (len == 0 || len > wf_secev_pack_bound() || off + FRAME_HDR + len > size)
            break;
        if (pread(fd, sp->frame, len, (off_t)(off + FRAME_HDR)) != (ssize_t)len ||
            wf_crc32c(0, sp->frame, len) != le32_get(fh + 4))
            break;
        off += FRAME_HDR + len;
        (*frames)++;
    }
    return off;
}

void wf_spool_close(wf_spool_t *sp)
{
    if (!sp)
        return;
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->wfd >= 0)
        close(sp->wfd);
    free(sp->frame);
    free(sp->dir);
    free(sp);
}

static int mkdir_p(const char *dir)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof(tmp), "%s", dir) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int wf_spool_open(const char *dir, uint64_t max_bytes, uint64_t segment_bytes, bool fsync_, wf_spool_t **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    int rc = mkdir_p(dir);
    if (rc) {
        snprintf(err, errlen, "spool %s: %s", dir, strerror(-rc));
        return rc;
    }
    wf_spool_t *sp = calloc(1, sizeof(*sp));
    if (!sp)
        return -ENOMEM;
    sp->rfd = sp->wfd = -1;
    sp->max_bytes = max_bytes;
    sp->seg_bytes = segment_bytes;
    sp->fsync_ = fsync_;
    if (!(sp->dir = strdup(dir)) || !(sp->frame = malloc(wf_secev_pack_bound() + FRAME_HDR))) {
        wf_spool_close(sp);
        return -ENOMEM;
    }
    DIR *d = opendir(dir);
    if (!d) {
        rc = -errno;
        snprintf(err, errlen, "spool %s: %s", dir, strerror(errno));
        wf_spool_close(sp);
        return rc;
    }
    uint64_t lo = 0, hi = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char *end;
        unsigned long long id = strtoull(de->d_name, &end, 16);
        if (end != de->d_name + 16 || strcmp(end, ".seg") || id == 0)
            continue;
        lo = lo && lo < id ? lo : id;
        hi = hi > id ? hi : id;
    }
    closedir(d);

    uint64_t hseg = 0, hoff = 0;
    char path[4200];
    snprintf(path, sizeof(path), "%s/head", dir);
    FILE *hf = fopen(path, "re");
    if (hf) {
        unsigned long long a, b;
        if (fscanf(hf, "%llu %llu", &a, &b) == 2) {
            hseg = a;
            hoff = b;
        }
        fclose(hf);
    }
    sp->rseg = 0;
    sp->wseg = hi;
    for (uint64_t id = lo; lo && id <= hi; id++) {
        seg_path(sp, id, path, sizeof(path));
        int fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            continue; /* a gap */
        if (id < hseg) { /* read past before the last stop */
            close(fd);
            unlink(path);
            continue;
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !seg_check(fd)) {
            char stale[4300];
            snprintf(stale, sizeof(stale), "%s.stale", path);
            wf_error("events: spool %s: %s is not a spool segment of this wafer version; set aside as %s", dir,
                     path, stale);
            close(fd);
            if (rename(path, stale) == 0)
                sp->lost++;
            continue;
        }
        uint64_t size = (uint64_t)st.st_size, frames;
        uint64_t valid = seg_valid_end(sp, fd, size, &frames);
        if (valid < size) {
            wf_warn("events: spool %s: %s: %llu damaged bytes at its end (an interrupted write) cut off", dir, path,
                    (unsigned long long)(size - valid));
            if (ftruncate(fd, (off_t)valid) == 0)
                size = valid;
            sp->lost++;
        }
        uint64_t start = SEG_HDR;
        if (!sp->rseg) {
            sp->rseg = id;
            if (id == hseg && hoff >= SEG_HDR && hoff <= size)
                start = hoff;
            sp->roff = start;
        }
        sp->bytes += size - start;
        if (id == hi) {
            sp->wfd = fd;
            sp->wsize = size;
        } else {
            close(fd);
        }
    }
    if (!sp->rseg || sp->bytes == 0) {
        /* nothing unread: start afresh after the newest id */
        if (sp->wfd >= 0) {
            close(sp->wfd);
            sp->wfd = -1;
        }
        for (uint64_t id = lo; lo && id <= hi; id++) {
            seg_path(sp, id, path, sizeof(path));
            unlink(path);
        }
        sp->rseg = sp->roff = 0;
        sp->bytes = 0;
        sp->wsize = 0;
    }
    *out = sp;
    return 0;
}

bool wf_spool_empty(const wf_spool_t *sp) { return sp->bytes == 0; }
uint64_t wf_spool_bytes(const wf_spool_t *sp) { return sp->bytes; }
uint64_t wf_spool_lost(const wf_spool_t *sp) { return sp->lost; }

static int seg_new(wf_spool_t *sp)
{
    if (sp->wfd >= 0) {
        if (sp->fsync_)
            fsync(sp->wfd);
        close(sp->wfd);
        sp->wfd = -1;
    }
    char path[4200];
    uint64_t id = sp->wseg + 1;
    seg_path(sp, id, path, sizeof(path));
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    unsigned char h[SEG_HDR];
    seg_header(h);
    if (write(fd, h, SEG_HDR) != SEG_HDR) {
        int rc = errno ? -errno : -EIO;
        close(fd);
        unlink(path);
        return rc;
    }
    if (sp->fsync_)
        fsync_dir(sp);
    sp->wfd = fd;
    sp->wseg = id;
    sp->wsize = SEG_HDR;
    if (!sp->rseg) {
        sp->rseg = id;
        sp->roff = SEG_HDR;
    }
    return 0;
}

int wf_spool_append(wf_spool_t *sp, const wf_secev_t *evs, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        size_t len = wf_secev_pack(&evs[i], sp->frame + FRAME_HDR);
        le32_put(sp->frame, (uint32_t)len);
        le32_put(sp->frame + 4, wf_crc32c(0, sp->frame + FRAME_HDR, len));
        size_t flen = FRAME_HDR + len;
        if (sp->bytes + flen > sp->max_bytes)
            break;
        if (sp->wfd < 0 || sp->wsize + flen > sp->seg_bytes) {
            int rc = seg_new(sp);
            if (rc)
                return i ? (int)i : rc;
        }
        ssize_t w = pwrite(sp->wfd, sp->frame, flen, (off_t)sp->wsize);
        if (w != (ssize_t)flen) {
            int rc = w < 0 ? -errno : -ENOSPC;
            if (ftruncate(sp->wfd, (off_t)sp->wsize) < 0) {
                /* the half frame is cut off at the next open */
            }
            return i ? (int)i : rc;
        }
        sp->wsize += flen;
        sp->bytes += flen;
    }
    if (i && sp->fsync_ && fdatasync(sp->wfd) < 0)
        return -errno;
    return (int)i;
}

int wf_spool_peek(wf_spool_t *sp, wf_secev_t *evs, size_t max)
{
    sp->npeek = 0;
    max = WF_MIN(max, (size_t)PEEK_MAX);
    uint64_t off = sp->roff;
    unsigned char fh[FRAME_HDR];
    char path[4200];
    while (sp->npeek < max && sp->bytes) {
        if (sp->rfd < 0) {
            seg_path(sp, sp->rseg, path, sizeof(path));
            sp->rfd = open(path, O_RDONLY | O_CLOEXEC);
            if (sp->rfd < 0) {
                if (errno != ENOENT || sp->rseg >= sp->wseg)
                    return sp->npeek ? (int)sp->npeek : -errno;
                sp->rseg++; /* a gap left by a set-aside segment */
                sp->roff = off = SEG_HDR;
                continue;
            }
        }
        uint64_t size = sp->rseg == sp->wseg ? sp->wsize : 0;
        if (!size) {
            struct stat st;
            if (fstat(sp->rfd, &st) < 0)
                return sp->npeek ? (int)sp->npeek : -errno;
            size = (uint64_t)st.st_size;
        }
        if (off >= size) {
            if (sp->rseg >= sp->wseg || sp->npeek)
                break; /* end of what was written / the batch spans no segment boundary */
            /* finished with this segment */
            close(sp->rfd);
            sp->rfd = -1;
            seg_path(sp, sp->rseg, path, sizeof(path));
            unlink(path);
            sp->bytes -= WF_MIN(sp->bytes, size - sp->roff + 0);
            sp->rseg++;
            sp->roff = off = SEG_HDR;
            head_write(sp);
            continue;
        }
        uint32_t len = 0;
        bool ok = pread(sp->rfd, fh, FRAME_HDR, (off_t)off) == FRAME_HDR;
        if (ok) {
            len = le32_get(fh);
            ok = len && len <= wf_secev_pack_bound() && off + FRAME_HDR + len <= size &&
                 pread(sp->rfd, sp->frame, len, (off_t)(off + FRAME_HDR)) == (ssize_t)len &&
                 wf_crc32c(0, sp->frame, len) == le32_get(fh + 4) &&
                 wf_secev_unpack(sp->frame, len, &evs[sp->npeek]) == 0;
        }
        if (!ok) {
            /* damaged on disk: the rest of this segment cannot be framed */
            wf_error("events: spool %s: segment %016llx damaged at offset %llu; its remaining %llu bytes are lost",
                     sp->dir, (unsigned long long)sp->rseg, (unsigned long long)off,
                     (unsigned long long)(size - off));
            sp->lost++;
            if (sp->npeek)
                break;
            sp->bytes -= WF_MIN(sp->bytes, size - sp->roff);
            sp->roff = off = size;
            if (sp->rseg == sp->wseg) {
                /* appends go to a fresh segment after this one */
                close(sp->wfd);
                sp->wfd = -1;
            }
            continue;
        }
        sp->peek_len[sp->npeek++] = FRAME_HDR + len;
        off += FRAME_HDR + len;
    }
    if (sp->bytes == 0 && sp->npeek == 0)
        return 0;
    return (int)sp->npeek;
}

/* Everything read: remove the files and start afresh. */
static void spool_reset(wf_spool_t *sp)
{
    char path[4200];
    if (sp->rfd >= 0)
        close(sp->rfd);
    if (sp->wfd >= 0)
        close(sp->wfd);
    sp->rfd = sp->wfd = -1;
    for (uint64_t id = sp->rseg; id && id <= sp->wseg; id++) {
        seg_path(sp, id, path, sizeof(path));
        unlink(path);
    }
    snprintf(path, sizeof(path), "%s/head", sp->dir);
    unlink(path);
    sp->rseg = sp->roff = 0;
    sp->wsize = 0;
    sp->bytes = 0;
}

int wf_spool_advance(wf_spool_t *sp, size_t n)
{
    n = WF_MIN(n, sp->npeek);
    uint64_t adv = 0;
    for (size_t i = 0; i < n; i++)
        adv += sp->peek_len[i];
    memmove(sp->peek_len, sp->peek_len + n, (sp->npeek - n) * sizeof(sp->peek_len[0]));
    sp->npeek -= n;
    sp->roff += adv;
    sp->bytes -= WF_MIN(sp->bytes, adv);
    if (sp->bytes == 0) {
        spool_reset(sp);
        return 0;
    }
    return head_write(sp);
}
