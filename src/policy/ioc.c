/* Indicator tables and their store (include/wafer/ioc.h). */
#include "wafer/ioc.h"
#include "wafer/core.h"
#include "wafer/policy.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Key prefixes: one hash table holds every kind, and the interned event ids and tags. */
enum { K_IP4 = 'a', K_IP6 = 'b', K_DOMAIN = 'd', K_URL = 'u', K_UA = 'g', K_EVENT = 'e', K_TAG = 't' };

#define MAX_KEY 4096 /* longest value indexed (bytes); longer URLs and user agents are skipped */

typedef struct {
    uint64_t h; /* 0: empty */
    uint32_t off, len;
    uint32_t val;
} slot_t;

typedef struct {
    uint32_t ev[WF_IOC_MAX_EVENTS];
    uint32_t tag[WF_IOC_MAX_TAGS];
    uint32_t disp_off, disp_len; /* the indicator as shown */
    uint8_t nev, ntag, type, kind;
} meta_t;

typedef struct {
    uint32_t off, len;
} span_t;

struct wf_ioc {
    uint64_t seed;
    slot_t *slots;
    size_t cap, n;
    char *pool;
    size_t plen, pcap;
    meta_t *meta;
    size_t nmeta, metacap;
    span_t *interned; /* event ids and tags, by intern id */
    size_t ninterned, interncap;
    size_t per_kind[WF_IOC__COUNT];
    size_t nevents;
    uint64_t *filter;  /* a two-bit-per-key Bloom filter over the indicator keys (set by finish) */
    uint64_t fmask;    /* bits in the filter - 1 */
    uint8_t plens4[33], nplens4; /* prefix lengths present, longest first */
    uint8_t plens6[129], nplens6;
    bool has4[33], has6[129];
};

struct wf_ioc_builder {
    wf_ioc_t t;
    size_t max;
    bool failed;
};

static const struct {
    const char *name;
    uint8_t kinds; /* bit per wf_ioc_kind_t */
    bool port;     /* "value|port": the address before the bar */
} types[] = {
    { "ip-src", 1u << WF_IOC_IP, false },        { "ip-dst", 1u << WF_IOC_IP, false },
    { "ip-src|port", 1u << WF_IOC_IP, true },    { "ip-dst|port", 1u << WF_IOC_IP, true },
    { "domain", 1u << WF_IOC_DOMAIN, false },    { "hostname", 1u << WF_IOC_DOMAIN, false },
    { "hostname|port", 1u << WF_IOC_DOMAIN, true },
    { "domain|ip", (1u << WF_IOC_DOMAIN) | (1u << WF_IOC_IP), false },
    { "url", 1u << WF_IOC_URL, false },          { "user-agent", 1u << WF_IOC_UA, false },
};

static const char *const kind_names[] = { "ip", "domain", "url", "user-agent" };

const char *wf_ioc_kind_name(wf_ioc_kind_t k)
{
    return (unsigned)k < WF_IOC__COUNT ? kind_names[k] : "?";
}

static int type_index(const char *type)
{
    for (size_t i = 0; type && i < WF_ARRAY_LEN(types); i++)
        if (strcmp(type, types[i].name) == 0)
            return (int)i;
    return -1;
}

bool wf_ioc_type_supported(const char *type)
{
    return type_index(type) >= 0;
}

/* ---- the hash table ---- */

/* Eight bytes a step with a 64x64->128 multiply fold: several times faster than core's byte-wise FNV on the
 * 10-100 byte keys looked up here, several per request. Seeded per table; not a MAC. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static uint64_t key_hash(const wf_ioc_t *t, const char *k, size_t n)
{
    uint64_t h = t->seed ^ (n * 0x9e3779b97f4a7c15ull), w;
    for (; n >= 8; k += 8, n -= 8) {
        memcpy(&w, k, 8);
        h = fold(h ^ w, 0xa0761d6478bd642full);
    }
    w = 0;
    memcpy(&w, k, n);
    h = fold(h ^ w ^ ((uint64_t)n << 56), 0xe7037ed1a0b428dbull);
    h = fold(h, 0x8ebc6af09c88c6e3ull);
    return h ? h : 1;
}

/* The slot of key k (hash h), or NULL; the table has slots. */
static const slot_t *probe(const wf_ioc_t *t, const char *k, size_t n, uint64_t h)
{
    for (size_t i = h & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        const slot_t *s = &t->slots[i];
        if (!s->h)
            return NULL;
        if (s->h == h && s->len == n && memcmp(t->pool + s->off, k, n) == 0)
            return s;
    }
}

static const slot_t *lookup(const wf_ioc_t *t, const char *k, size_t n)
{
    return t->cap ? probe(t, k, n, key_hash(t, k, n)) : NULL;
}

/* The data path's lookup: most keys looked up are in no table, and the filter (16 bits per key, in cache)
 * answers those without touching the table (tens of MB for a large feed, one cache miss per probe). */
static const slot_t *lookup_fast(const wf_ioc_t *t, const char *k, size_t n)
{
    uint64_t h = key_hash(t, k, n);
    uint64_t b1 = (h >> 20) & t->fmask, b2 = (h >> 40 | h << 24) & t->fmask;
    if (!(t->filter[b1 >> 6] & (1ull << (b1 & 63))) || !(t->filter[b2 >> 6] & (1ull << (b2 & 63))))
        return NULL;
    return probe(t, k, n, h);
}

static int grow(wf_ioc_t *t)
{
    size_t ncap = t->cap ? t->cap * 2 : 1024;
    slot_t *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slots[i].h)
            continue;
        size_t j = t->slots[i].h & (ncap - 1);
        while (ns[j].h)
            j = (j + 1) & (ncap - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

static int pool_add(wf_ioc_t *t, const char *p, size_t n, uint32_t *off)
{
    if (t->plen + n > UINT32_MAX)
        return -WF_ELIMIT;
    if (t->plen + n > t->pcap) {
        size_t nc = t->pcap ? t->pcap : 65536;
        while (nc < t->plen + n)
            nc *= 2;
        char *np = realloc(t->pool, nc);
        if (!np)
            return -ENOMEM;
        t->pool = np;
        t->pcap = nc;
    }
    memcpy(t->pool + t->plen, p, n);
    *off = (uint32_t)t->plen;
    t->plen += n;
    return 0;
}

/* Finds or inserts a key; *created says which. */
static int upsert(wf_ioc_t *t, const char *k, size_t n, slot_t **out, bool *created)
{
    int rc;
    if ((t->n + 1) * 2 > t->cap && (rc = grow(t)))
        return rc;
    uint64_t h = key_hash(t, k, n);
    size_t i = h & (t->cap - 1);
    for (;; i = (i + 1) & (t->cap - 1)) {
        slot_t *s = &t->slots[i];
        if (!s->h)
            break;
        if (s->h == h && s->len == n && memcmp(t->pool + s->off, k, n) == 0) {
            *out = s;
            *created = false;
            return 0;
        }
    }
    uint32_t off;
    if ((rc = pool_add(t, k, n, &off)))
        return rc;
    t->slots[i] = (slot_t){ .h = h, .off = off, .len = (uint32_t)n };
    t->n++;
    *out = &t->slots[i];
    *created = true;
    return 0;
}

static int intern(wf_ioc_t *t, char prefix, const char *s, uint32_t *id)
{
    char k[MAX_KEY + 1];
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return -EINVAL;
    k[0] = prefix;
    memcpy(k + 1, s, n);
    slot_t *sl;
    bool created;
    int rc = upsert(t, k, n + 1, &sl, &created);
    if (rc)
        return rc;
    if (created) {
        span_t *ni = wf_array_grow(t->interned, &t->interncap, t->ninterned, sizeof(*ni), 256);
        if (!ni)
            return -ENOMEM;
        t->interned = ni;
        t->interned[t->ninterned] = (span_t){ sl->off + 1, (uint32_t)n };
        sl->val = (uint32_t)t->ninterned++;
        if (prefix == K_EVENT)
            t->nevents++;
    }
    *id = sl->val;
    return 0;
}

/* ---- values to keys ---- */

static size_t ip_key(char *k, uint8_t family, const uint8_t *addr, unsigned bits)
{
    size_t alen = family == AF_INET ? 4 : 16;
    k[0] = family == AF_INET ? K_IP4 : K_IP6;
    k[1] = (char)bits;
    unsigned full = bits / 8, rest = bits % 8;
    memcpy(k + 2, addr, full);
    memset(k + 2 + full, 0, alen - full);
    if (rest)
        k[2 + full] = (char)(addr[full] & (uint8_t)(0xff00u >> rest));
    return 2 + alen;
}

/* Lower case, no trailing dot, no port; false when it is not a host name. */
static bool norm_host(wf_str_t in, char *out, size_t cap, size_t *outn)
{
    wf_str_t h = in;
    if (!h.n || h.p[0] == '[')
        return false; /* empty, or an IPv6 literal: no domain */
    const char *colon = memchr(h.p, ':', h.n);
    if (colon)
        h.n = (size_t)(colon - h.p);
    if (h.n && h.p[h.n - 1] == '.')
        h.n--;
    if (h.n == 0 || h.n >= cap)
        return false;
    for (size_t i = 0; i < h.n; i++) {
        unsigned char c = (unsigned char)h.p[i];
        if (!(isalnum(c) || c == '-' || c == '_' || c == '.') || (c == '.' && (i == 0 || h.p[i - 1] == '.')))
            return false;
        out[i] = (char)tolower(c);
    }
    *outn = h.n;
    return true;
}

static bool prefix_nocase(wf_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n >= n && wf_str_eq_nocase(wf_str(s.p, n), wf_str(lit, n));
}

/* URL key: "host[:port]/path[?query]" with the host in lower case, ":80" and ":443" dropped, no fragment. With
 * origin_host set, url is an origin-form target and the host comes from there. Returns the length or 0. */
static size_t norm_url(wf_str_t origin_host, wf_str_t url, char *out, size_t cap)
{
    wf_str_t host, rest;
    if (prefix_nocase(url, "http://") || prefix_nocase(url, "https://")) {
        size_t skip = url.p[4] == ':' ? 7 : 8;
        url = wf_str(url.p + skip, url.n - skip);
        size_t i = 0;
        while (i < url.n && url.p[i] != '/' && url.p[i] != '?' && url.p[i] != '#')
            i++;
        host = wf_str(url.p, i);
        rest = wf_str(url.p + i, url.n - i);
    } else if (origin_host.n && url.n && url.p[0] == '/') {
        host = origin_host;
        rest = url;
    } else if (!origin_host.n) { /* an indicator written without a scheme: "evil.example/x" */
        size_t i = 0;
        while (i < url.n && url.p[i] != '/' && url.p[i] != '?' && url.p[i] != '#')
            i++;
        host = wf_str(url.p, i);
        rest = wf_str(url.p + i, url.n - i);
    } else {
        return 0;
    }
    const char *at = memchr(host.p, '@', host.n); /* userinfo */
    if (at)
        host = wf_str(at + 1, host.n - (size_t)(at + 1 - host.p));
    if (host.n > 3 && memcmp(host.p + host.n - 3, ":80", 3) == 0)
        host.n -= 3;
    else if (host.n > 4 && memcmp(host.p + host.n - 4, ":443", 4) == 0)
        host.n -= 4;
    if (host.n && host.p[host.n - 1] == '.')
        host.n--;
    const char *hash = memchr(rest.p, '#', rest.n);
    if (hash)
        rest.n = (size_t)(hash - rest.p);
    size_t need = host.n + (rest.n && rest.p[0] == '/' ? rest.n : rest.n + 1);
    if (host.n == 0 || need + 1 > cap)
        return 0;
    size_t o = 1;
    out[0] = K_URL;
    for (size_t i = 0; i < host.n; i++)
        out[o++] = (char)tolower((unsigned char)host.p[i]);
    if (!rest.n || rest.p[0] != '/')
        out[o++] = '/';
    memcpy(out + o, rest.p, rest.n);
    return o + rest.n;
}

static wf_str_t trim(wf_str_t s)
{
    while (s.n && isspace((unsigned char)s.p[0]))
        s.p++, s.n--;
    while (s.n && isspace((unsigned char)s.p[s.n - 1]))
        s.n--;
    return s;
}

/* ---- the builder ---- */

wf_ioc_builder_t *wf_ioc_builder_new(size_t max_indicators)
{
    wf_ioc_builder_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->max = max_indicators;
    if (getrandom(&b->t.seed, sizeof(b->t.seed), 0) != sizeof(b->t.seed))
        b->t.seed = wf_now_ns();
    return b;
}

static void table_release(wf_ioc_t *t)
{
    free(t->filter);
    free(t->slots);
    free(t->pool);
    free(t->meta);
    free(t->interned);
}

void wf_ioc_builder_free(wf_ioc_builder_t *b)
{
    if (!b)
        return;
    table_release(&b->t);
    free(b);
}

void wf_ioc_free(wf_ioc_t *t)
{
    if (!t)
        return;
    table_release(t);
    free(t);
}

static size_t total_indicators(const wf_ioc_t *t)
{
    size_t n = 0;
    for (int k = 0; k < WF_IOC__COUNT; k++)
        n += t->per_kind[k];
    return n;
}

static int add_key(wf_ioc_builder_t *b, wf_ioc_kind_t kind, int type, const char *key, size_t klen, wf_str_t disp,
                   const char *event, const char *const *tags, size_t ntags)
{
    wf_ioc_t *t = &b->t;
    slot_t *sl;
    bool created;
    int rc;
    if (!lookup(t, key, klen) && b->max && total_indicators(t) >= b->max)
        return -WF_ELIMIT;
    if ((rc = upsert(t, key, klen, &sl, &created)))
        return rc;
    if (created) {
        meta_t *nm = wf_array_grow(t->meta, &t->metacap, t->nmeta, sizeof(*nm), 1024);
        if (!nm)
            return -ENOMEM;
        t->meta = nm;
        meta_t *m = &t->meta[t->nmeta];
        memset(m, 0, sizeof(*m));
        m->type = (uint8_t)type;
        m->kind = (uint8_t)kind;
        uint32_t off;
        if ((rc = pool_add(t, disp.p, disp.n, &off)))
            return rc;
        m->disp_off = off;
        m->disp_len = (uint32_t)disp.n;
        sl->val = (uint32_t)t->nmeta++;
        t->per_kind[kind]++;
        if (kind == WF_IOC_IP) {
            unsigned bits = (uint8_t)key[1];
            if (key[0] == K_IP4 && !t->has4[bits])
                t->has4[bits] = true;
            else if (key[0] == K_IP6 && !t->has6[bits])
                t->has6[bits] = true;
        }
    }
    uint32_t mi = sl->val, id;
    if (event && *event) {
        if ((rc = intern(t, K_EVENT, event, &id)) && rc != -EINVAL)
            return rc;
        meta_t *m = &t->meta[mi];
        bool have = rc == -EINVAL;
        for (int i = 0; i < m->nev && !have; i++)
            have = m->ev[i] == id;
        if (!have && m->nev < WF_IOC_MAX_EVENTS)
            m->ev[m->nev++] = id;
    }
    for (size_t j = 0; j < ntags; j++) {
        if (!tags[j] || !*tags[j])
            continue;
        if ((rc = intern(t, K_TAG, tags[j], &id))) {
            if (rc == -EINVAL)
                continue;
            return rc;
        }
        meta_t *m = &t->meta[mi];
        bool have = false;
        for (int i = 0; i < m->ntag && !have; i++)
            have = m->tag[i] == id;
        if (!have && m->ntag < WF_IOC_MAX_TAGS)
            m->tag[m->ntag++] = id;
    }
    return 1;
}

static int add_ip(wf_ioc_builder_t *b, int type, wf_str_t v, const char *event, const char *const *tags, size_t ntags)
{
    char s[INET6_ADDRSTRLEN + 8], key[20], disp[64];
    wf_cidr_t c;
    v = trim(v);
    if (v.n == 0 || v.n >= sizeof(s))
        return -EINVAL;
    memcpy(s, v.p, v.n);
    s[v.n] = 0;
    if (wf_cidr_parse(s, &c) < 0)
        return -EINVAL;
    size_t kl = ip_key(key, c.family, c.addr, c.bits);
    size_t dl = wf_cidr_format(&c, disp, sizeof(disp));
    if ((c.family == AF_INET && c.bits == 32) || (c.family == AF_INET6 && c.bits == 128))
        dl = (size_t)(strchr(disp, '/') - disp);
    return add_key(b, WF_IOC_IP, type, key, kl, wf_str(disp, dl), event, tags, ntags);
}

int wf_ioc_builder_add(wf_ioc_builder_t *b, const char *type, wf_str_t value, const char *event,
                       const char *const *tags, size_t ntags)
{
    int ti = type_index(type);
    if (ti < 0)
        return 0;
    char key[MAX_KEY + 2];
    size_t kl;
    wf_str_t v = value;
    if (types[ti].port || (types[ti].kinds & (1u << WF_IOC_IP) && types[ti].kinds & (1u << WF_IOC_DOMAIN))) {
        const char *bar = NULL;
        for (size_t i = v.n; i > 0; i--)
            if (v.p[i - 1] == '|') {
                bar = v.p + i - 1;
                break;
            }
        if (!bar)
            return -EINVAL;
        wf_str_t left = wf_str(v.p, (size_t)(bar - v.p)), right = wf_str(bar + 1, v.n - (size_t)(bar + 1 - v.p));
        if (!types[ti].port) { /* domain|ip */
            int rc = wf_ioc_builder_add(b, "domain", left, event, tags, ntags);
            if (rc < 0)
                return rc;
            return add_ip(b, ti, right, event, tags, ntags);
        }
        v = left;
    }
    switch (types[ti].kinds) {
    case 1u << WF_IOC_IP:
        return add_ip(b, ti, v, event, tags, ntags);
    case 1u << WF_IOC_DOMAIN: {
        size_t n;
        if (!norm_host(trim(v), key + 1, MAX_KEY, &n) || memchr(trim(v).p, ':', trim(v).n))
            return -EINVAL;
        key[0] = K_DOMAIN;
        return add_key(b, WF_IOC_DOMAIN, ti, key, n + 1, wf_str(key + 1, n), event, tags, ntags);
    }
    case 1u << WF_IOC_URL:
        if (!(kl = norm_url(WF_STR_NULL, trim(v), key, sizeof(key))))
            return -EINVAL;
        return add_key(b, WF_IOC_URL, ti, key, kl, trim(v), event, tags, ntags);
    case 1u << WF_IOC_UA:
        v = trim(v);
        if (v.n == 0 || v.n > MAX_KEY)
            return -EINVAL;
        key[0] = K_UA;
        memcpy(key + 1, v.p, v.n);
        return add_key(b, WF_IOC_UA, ti, key, v.n + 1, v, event, tags, ntags);
    }
    return 0;
}

wf_ioc_t *wf_ioc_builder_finish(wf_ioc_builder_t *b)
{
    wf_ioc_t *t = malloc(sizeof(*t));
    if (!t) {
        wf_ioc_builder_free(b);
        return NULL;
    }
    *t = b->t;
    free(b);
    if (!t->cap && grow(t) < 0) {
        wf_ioc_free(t);
        return NULL;
    }
    size_t keys = total_indicators(t), bits = 1024;
    while (bits < keys * 16)
        bits <<= 1;
    if (!(t->filter = calloc(bits / 64, sizeof(uint64_t)))) {
        wf_ioc_free(t);
        return NULL;
    }
    t->fmask = bits - 1;
    for (size_t i = 0; i < t->cap; i++) {
        const slot_t *sl = &t->slots[i];
        char kind = sl->h ? t->pool[sl->off] : 0;
        if (!sl->h || kind == K_EVENT || kind == K_TAG)
            continue;
        uint64_t h = sl->h, b1 = (h >> 20) & t->fmask, b2 = (h >> 40 | h << 24) & t->fmask;
        t->filter[b1 >> 6] |= 1ull << (b1 & 63);
        t->filter[b2 >> 6] |= 1ull << (b2 & 63);
    }
    t->nplens4 = t->nplens6 = 0;
    for (int l = 32; l >= 0; l--)
        if (t->has4[l])
            t->plens4[t->nplens4++] = (uint8_t)l;
    for (int l = 128; l >= 0; l--)
        if (t->has6[l])
            t->plens6[t->nplens6++] = (uint8_t)l;
    return t;
}

void wf_ioc_counts(const wf_ioc_t *t, wf_ioc_counts_t *out)
{
    memset(out, 0, sizeof(*out));
    if (!t)
        return;
    memcpy(out->per_kind, t->per_kind, sizeof(out->per_kind));
    out->events = t->nevents;
    out->prefix_lengths = t->nplens4 + t->nplens6;
}

/* ---- lookups ---- */

/* Copies a slice into a fixed field, cut at a UTF-8 boundary, NUL-terminated (like wf_secev_set, which lives
 * with the event hub; the tables must not need it). */
static void copy_cut(char *dst, size_t cap, const char *p, size_t n)
{
    if (n >= cap) {
        n = cap - 1;
        while (n && ((unsigned char)p[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, p, n);
    dst[n] = 0;
}

static void fill_hit(const wf_ioc_t *t, const slot_t *s, wf_ioc_hit_t *hit)
{
    if (!hit)
        return;
    const meta_t *m = &t->meta[s->val];
    memset(hit, 0, sizeof(*hit));
    hit->kind = (wf_ioc_kind_t)m->kind;
    copy_cut(hit->value, sizeof(hit->value), t->pool + m->disp_off, m->disp_len);
    snprintf(hit->type, sizeof(hit->type), "%s", types[m->type].name);
    for (int i = 0; i < m->nev; i++) {
        const span_t *e = &t->interned[m->ev[i]];
        copy_cut(hit->events[hit->nevents++], sizeof(hit->events[0]), t->pool + e->off, e->len);
    }
    size_t o = 0;
    for (int i = 0; i < m->ntag; i++) {
        const span_t *g = &t->interned[m->tag[i]];
        if (o + (o ? 1 : 0) + g->len >= sizeof(hit->tags))
            break;
        if (o)
            hit->tags[o++] = ',';
        memcpy(hit->tags + o, t->pool + g->off, g->len);
        o += g->len;
    }
    hit->tags[o] = 0;
}

static const slot_t *match_ip(const wf_ioc_t *t, const wf_sockaddr_t *client)
{
    uint8_t fam, addr[16];
    char key[20];
    if (!client || !wf_sockaddr_key(client, &fam, addr))
        return NULL;
    const uint8_t *pl = fam == AF_INET ? t->plens4 : t->plens6;
    size_t np = fam == AF_INET ? t->nplens4 : t->nplens6;
    for (size_t i = 0; i < np; i++) {
        size_t kl = ip_key(key, fam, addr, pl[i]);
        const slot_t *s = lookup_fast(t, key, kl);
        if (s)
            return s;
    }
    return NULL;
}

static const slot_t *match_domain(const wf_ioc_t *t, wf_str_t host)
{
    char key[260];
    size_t n;
    if (!t->per_kind[WF_IOC_DOMAIN] || !norm_host(trim(host), key + 1, sizeof(key) - 1, &n))
        return NULL;
    key[0] = K_DOMAIN;
    const slot_t *s = lookup_fast(t, key, n + 1);
    /* parents, while at least two labels remain */
    for (size_t i = 1; !s && i < n; i++) {
        if (key[i] != '.')
            continue;
        if (!memchr(key + i + 1, '.', n - i))
            break;
        key[i] = K_DOMAIN;
        s = lookup_fast(t, key + i, n + 1 - i);
        key[i] = '.';
    }
    return s;
}

static const slot_t *match_url(const wf_ioc_t *t, wf_str_t host, wf_str_t url)
{
    char key[MAX_KEY + 2];
    url = trim(url);
    if (!t->per_kind[WF_IOC_URL] || !url.n)
        return NULL;
    size_t kl = norm_url(host, url, key, sizeof(key));
    if (!kl)
        return NULL;
    const slot_t *s = lookup_fast(t, key, kl);
    const char *q = memchr(key, '?', kl);
    if (!s && q)
        s = lookup_fast(t, key, (size_t)(q - key));
    return s;
}

static const slot_t *match_ua(const wf_ioc_t *t, wf_str_t ua)
{
    char key[MAX_KEY + 1];
    ua = trim(ua);
    if (!t->per_kind[WF_IOC_UA] || !ua.n || ua.n > MAX_KEY)
        return NULL;
    key[0] = K_UA;
    memcpy(key + 1, ua.p, ua.n);
    return lookup_fast(t, key, ua.n + 1);
}

bool wf_ioc_match(const wf_ioc_t *t, const wf_sockaddr_t *client, wf_str_t host, wf_str_t url, wf_str_t user_agent,
                  wf_ioc_hit_t *hit)
{
    if (!t)
        return false;
    const slot_t *s = match_ip(t, client);
    if (!s)
        s = match_domain(t, host);
    if (!s)
        s = match_url(t, host, url);
    if (!s)
        s = match_ua(t, user_agent);
    if (s)
        fill_hit(t, s, hit);
    return s != NULL;
}

void wf_ioc_hit_secev(const wf_ioc_hit_t *hit, wf_secev_t *ev)
{
    ev->reason = WF_SECEV_R_INDICATOR;
    ev->nmisp = 0;
    for (uint32_t i = 0; i < hit->nevents && i < WF_SECEV_MAX_MISP; i++)
        copy_cut(ev->misp_event[ev->nmisp++], sizeof(ev->misp_event[0]), hit->events[i], strlen(hit->events[i]));
    copy_cut(ev->misp_tags, sizeof(ev->misp_tags), hit->tags, strlen(hit->tags));
}

/* ---- the store ---- */

#define READER_SLOTS 1024

struct wf_ioc_store {
    wf_ioc_t *cur;
    uint64_t epoch;
    uint64_t overflow; /* readers in a section without a slot of their own */
    uint64_t hits[WF_IOC__COUNT];
    uint64_t swaps;
    struct {
        uint64_t epoch; /* 0: outside a read section */
        char pad[56];
    } slots[READER_SLOTS];
};

wf_ioc_store_t *wf_ioc_global;

static uint32_t next_reader;
static __thread int32_t my_reader = -1;

wf_ioc_store_t *wf_ioc_store_new(void)
{
    wf_ioc_store_t *s = aligned_alloc(64, sizeof(*s));
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->epoch = 1;
    return s;
}

void wf_ioc_store_free(wf_ioc_store_t *s)
{
    if (!s)
        return;
    wf_ioc_free(s->cur);
    free(s);
}

const wf_ioc_t *wf_ioc_read_begin(wf_ioc_store_t *s)
{
    if (my_reader < 0)
        my_reader = (int32_t)__atomic_fetch_add(&next_reader, 1, __ATOMIC_RELAXED);
    if (my_reader < READER_SLOTS)
        /* seq_cst: the slot is visible before the pointer is read (publish reads them in the other order) */
        __atomic_store_n(&s->slots[my_reader].epoch, __atomic_load_n(&s->epoch, __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
    else
        __atomic_fetch_add(&s->overflow, 1, __ATOMIC_SEQ_CST);
    return __atomic_load_n(&s->cur, __ATOMIC_SEQ_CST);
}

void wf_ioc_read_end(wf_ioc_store_t *s)
{
    if (my_reader < READER_SLOTS)
        __atomic_store_n(&s->slots[my_reader].epoch, 0, __ATOMIC_RELEASE);
    else
        __atomic_fetch_sub(&s->overflow, 1, __ATOMIC_RELEASE);
}

void wf_ioc_store_publish(wf_ioc_store_t *s, wf_ioc_t *t)
{
    wf_ioc_t *old = __atomic_exchange_n(&s->cur, t, __ATOMIC_SEQ_CST);
    uint64_t e = __atomic_add_fetch(&s->epoch, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&s->swaps, 1, __ATOMIC_RELAXED);
    if (!old)
        return;
    /* a reader whose slot holds an epoch older than e may have read the old pointer */
    uint32_t nslots = WF_MIN(__atomic_load_n(&next_reader, __ATOMIC_RELAXED), READER_SLOTS);
    for (;;) {
        bool busy = __atomic_load_n(&s->overflow, __ATOMIC_ACQUIRE) != 0;
        for (uint32_t i = 0; i < nslots && !busy; i++) {
            uint64_t re = __atomic_load_n(&s->slots[i].epoch, __ATOMIC_ACQUIRE);
            busy = re != 0 && re < e;
        }
        if (!busy)
            break;
        struct timespec ts = { 0, 200000 };
        nanosleep(&ts, NULL);
    }
    wf_ioc_free(old);
}

bool wf_ioc_store_match(wf_ioc_store_t *s, const wf_sockaddr_t *client, wf_str_t host, wf_str_t url,
                        wf_str_t user_agent, wf_ioc_hit_t *hit)
{
    wf_ioc_hit_t local;
    if (!s)
        return false;
    if (!hit)
        hit = &local;
    const wf_ioc_t *t = wf_ioc_read_begin(s);
    bool m = wf_ioc_match(t, client, host, url, user_agent, hit);
    wf_ioc_read_end(s);
    if (m)
        __atomic_fetch_add(&s->hits[hit->kind], 1, __ATOMIC_RELAXED);
    return m;
}

void wf_ioc_store_stats(wf_ioc_store_t *s, wf_ioc_store_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    const wf_ioc_t *t = wf_ioc_read_begin(s);
    wf_ioc_counts(t, &out->loaded);
    wf_ioc_read_end(s);
    for (int k = 0; k < WF_IOC__COUNT; k++)
        out->hits[k] = __atomic_load_n(&s->hits[k], __ATOMIC_RELAXED);
    out->swaps = __atomic_load_n(&s->swaps, __ATOMIC_RELAXED);
}
