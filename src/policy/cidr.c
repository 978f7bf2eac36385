/* IPv4/IPv6 networks (include/wafer/policy.h). */
#include "wafer/policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static const uint8_t v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

int wf_sockaddr_key(const wf_sockaddr_t *a, uint8_t *family, uint8_t addr[16])
{
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)&a->ss;
        *family = AF_INET;
        memset(addr, 0, 16);
        memcpy(addr, &s4->sin_addr, 4);
        return 4;
    }
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&a->ss;
        const uint8_t *b = s6->sin6_addr.s6_addr;
        if (memcmp(b, v4mapped, 12) == 0) {
            *family = AF_INET;
            memset(addr, 0, 16);
            memcpy(addr, b + 12, 4);
            return 4;
        }
        *family = AF_INET6;
        memcpy(addr, b, 16);
        return 16;
    }
    return 0;
}

static void clear_host_bits(uint8_t *a, unsigned bits, unsigned total)
{
    for (unsigned i = bits; i < total; i++)
        a[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
}

int wf_cidr_parse(const char *s, wf_cidr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (!s)
        return -EINVAL;
    size_t n = strlen(s);
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : n;
    if (alen == 0 || alen >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = 0;
    wf_cidr_t c = { 0 };
    unsigned max;
    if (inet_pton(AF_INET, buf, c.addr) == 1) {
        c.family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, c.addr) == 1) {
        c.family = AF_INET6;
        max = 128;
    } else {
        return -EINVAL;
    }
    unsigned bits = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dl = strlen(d);
        if (dl == 0 || dl > 3)
            return -EINVAL;
        bits = 0;
        for (size_t i = 0; i < dl; i++) {
            if (d[i] < '0' || d[i] > '9')
                return -EINVAL;
            bits = bits * 10 + (unsigned)(d[i] - '0');
        }
        if (bits > max)
            return -EINVAL;
    }
    if (c.family == AF_INET6 && bits >= 96 && memcmp(c.addr, v4mapped, 12) == 0) {
        memmove(c.addr, c.addr + 12, 4);
        memset(c.addr + 4, 0, 12);
        c.family = AF_INET;
        bits -= 96;
        max = 32;
    }
    clear_host_bits(c.addr, bits, max);
    c.bits = (uint8_t)bits;
    *out = c;
    return 0;
}

bool wf_cidr_match(const wf_cidr_t *net, const wf_sockaddr_t *a)
{
    uint8_t fam, addr[16];
    if (!wf_sockaddr_key(a, &fam, addr) || fam != net->family)
        return false;
    unsigned full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(addr, net->addr, full) != 0)
        return false;
    if (!rest)
        return true;
    uint8_t mask = (uint8_t)(0xff00u >> rest);
    return (addr[full] & mask) == net->addr[full];
}

size_t wf_cidr_format(const wf_cidr_t *net, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN];
    if (!inet_ntop(net->family == AF_INET ? AF_INET : AF_INET6, net->addr, ip, sizeof(ip)))
        ip[0] = 0;
    int n = snprintf(out, outlen, "%s/%u", ip, net->bits);
    return n < 0 ? 0 : (size_t)n;
}
