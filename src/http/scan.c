#include "http/scan.h"

#if WF_HTTP_HAVE_SIMD
#include <emmintrin.h>
bool wf_http_scan_simd_on_ = true;
#else
bool wf_http_scan_simd_on_ = false;
#endif

bool wf_http_scan_use_simd(bool on)
{
    wf_http_scan_simd_on_ = on && WF_HTTP_HAVE_SIMD;
    return wf_http_scan_simd_on_;
}

static inline bool value_stop(unsigned char c) { return (c < 0x20 && c != '\t') || c == 0x7f; }
static inline bool target_stop(unsigned char c) { return c <= 0x20 || c >= 0x7f; }

const char *wf_http_scan_value_scalar(const char *p, const char *end)
{
    while (end - p >= 4) {
        if (value_stop((unsigned char)p[0]))
            return p;
        if (value_stop((unsigned char)p[1]))
            return p + 1;
        if (value_stop((unsigned char)p[2]))
            return p + 2;
        if (value_stop((unsigned char)p[3]))
            return p + 3;
        p += 4;
    }
    while (p < end && !value_stop((unsigned char)*p))
        p++;
    return p;
}

const char *wf_http_scan_target_scalar(const char *p, const char *end)
{
    while (end - p >= 4) {
        if (target_stop((unsigned char)p[0]))
            return p;
        if (target_stop((unsigned char)p[1]))
            return p + 1;
        if (target_stop((unsigned char)p[2]))
            return p + 2;
        if (target_stop((unsigned char)p[3]))
            return p + 3;
        p += 4;
    }
    while (p < end && !target_stop((unsigned char)*p))
        p++;
    return p;
}

#if WF_HTTP_HAVE_SIMD
/* Only whole 16-byte blocks inside [p, end) are loaded (unaligned loads), so
 * nothing past end is ever read; the tail goes to the scalar twin. SSE2 has
 * no unsigned byte compare: c <= k is tested as min_epu8(c, k) == c. */
const char *wf_http_scan_value_simd(const char *p, const char *end)
{
    const __m128i k1f = _mm_set1_epi8(0x1f), ktab = _mm_set1_epi8('\t'), kdel = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(x, k1f), x);
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(x, ktab), ctl);
        __m128i stop = _mm_or_si128(ctl, _mm_cmpeq_epi8(x, kdel));
        unsigned m = (unsigned)_mm_movemask_epi8(stop);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return wf_http_scan_value_scalar(p, end);
}

const char *wf_http_scan_target_simd(const char *p, const char *end)
{
    const __m128i k20 = _mm_set1_epi8(0x20), k7f = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)p);
        __m128i lo = _mm_cmpeq_epi8(_mm_min_epu8(x, k20), x);
        __m128i hi = _mm_cmpeq_epi8(_mm_max_epu8(x, k7f), x);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(lo, hi));
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
    return wf_http_scan_target_scalar(p, end);
}
#endif
