#ifndef CRELAYSIMD_H
#define CRELAYSIMD_H
/* Data-path scanning helpers for the codecs, 16 bytes per step with SSE2 where the compiler
   targets it (Swift's generic SIMD types compiled to scalar code on this toolchain). Pure: no
   kernel interface here, so the codecs need not import one. */
#include <stddef.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdint.h>

/* Length of the prefix of p[0..n) free of bytes that end or complicate a JSON string run:
   '"', '\\', control characters (< 0x20) and non-ASCII (>= 0x80). RFC 8259 §7. */
static inline size_t pyry_json_plain_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    const __m128i space = _mm_set1_epi8(0x20);
    while (n - i >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));
        /* Signed compare: bytes >= 0x80 are negative, so "v < 0x20" also catches non-ASCII. */
        __m128i special = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                                       _mm_cmplt_epi8(v, space));
        int mask = _mm_movemask_epi8(special);
        if (mask != 0) return i + (size_t)__builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n) {
        uint8_t b = p[i];
        if (b == '"' || b == '\\' || b < 0x20 || b >= 0x80) return i;
        i++;
    }
    return n;
}

/* Length of the ASCII prefix (bytes < 0x80) of p[0..n): the UTF-8 validator's fast path. */
static inline size_t pyry_ascii_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if defined(__SSE2__)
    while (n - i >= 16) {
        int mask = _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)));
        if (mask != 0) return i + (size_t)__builtin_ctz((unsigned)mask);
        i += 16;
    }
#endif
    while (i < n && p[i] < 0x80) i++;
    return i;
}

#endif
