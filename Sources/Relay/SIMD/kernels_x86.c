/* The x86-64 levels: SSE2 (every x86-64 CPU) and AVX2 (compiled with a target attribute, run
   only when cpuid says the CPU and OS have it, see dispatch.c). Tails shorter than a vector use
   one overlapping load ending at the last byte where the operation allows it (scans, copy),
   else the scalar code. */
#if defined(__x86_64__)
#include <immintrin.h>
#include "CRelaySIMD.h"
#include "scalar.h"
#include "json_small.h"
#include "levels.h"

#define AVX2 __attribute__((target("avx2")))
/* The SSE2 spans are the AVX2 ones' path for short inputs: a tail call there keeps their
   prologue as small as the common case needs. */
#define NOINLINE __attribute__((noinline))

/* ---- SSE2 ---- */

/* Bytes of the 16-byte vector `v` that end a JSON plain run: '"', '\\', < 0x20 or >= 0x80 (a
   signed compare against 0x20 catches both: bytes >= 0x80 are negative). */
static inline __m128i sse2_json_special(__m128i v) {
    return _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
                        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
}

/* The first position >= i of p[0..n) whose byte sets a bit of `mask_of` (a movemask of a
   per-byte predicate), for the last n - i < 16 bytes when n >= 16: one load ending at p[n-1],
   with the bits for bytes before i shifted out. */
#define SSE2_TAIL(p, i, n, mask_of)                                                    \
    do {                                                                               \
        unsigned m_ = (unsigned)(mask_of(_mm_loadu_si128((const __m128i *)((p) + (n) - 16)))); \
        m_ >>= 16 - ((n) - (i));                                                       \
        return m_ ? (i) + (size_t)__builtin_ctz(m_) : (n);                             \
    } while (0)

#define SSE2_ASCII_MASK(v) _mm_movemask_epi8(v)
#define SSE2_JSON_MASK(v) _mm_movemask_epi8(sse2_json_special(v))

static NOINLINE size_t sse2_ascii_span(const uint8_t *p, size_t n) {
    if (n < 16) return scalar_ascii_span(p, n);
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        const __m128i *q = (const __m128i *)(p + i);
        __m128i a = _mm_loadu_si128(q), b = _mm_loadu_si128(q + 1);
        __m128i c = _mm_loadu_si128(q + 2), d = _mm_loadu_si128(q + 3);
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) != 0) {
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(a) | (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16
                | (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32 | (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
            return i + (size_t)__builtin_ctzll(m);
        }
    }
    for (; n - i >= 16; i += 16) {
        int m = _mm_movemask_epi8(_mm_loadu_si128((const __m128i *)(p + i)));
        if (m != 0) return i + (size_t)__builtin_ctz((unsigned)m);
    }
    if (i == n) return n;
    SSE2_TAIL(p, i, n, SSE2_ASCII_MASK);
}

static NOINLINE size_t sse2_json_plain_span(const uint8_t *p, size_t n) {
    if (n < 16) return scalar_json_plain_span(p, n);
    /* The first 16 bytes alone: most JSON strings end in them. */
    int first = SSE2_JSON_MASK(_mm_loadu_si128((const __m128i *)p));
    if (first != 0) return (size_t)__builtin_ctz((unsigned)first);
    size_t i = 16;
    for (; n - i >= 64; i += 64) {
        const __m128i *q = (const __m128i *)(p + i);
        __m128i a = sse2_json_special(_mm_loadu_si128(q)), b = sse2_json_special(_mm_loadu_si128(q + 1));
        __m128i c = sse2_json_special(_mm_loadu_si128(q + 2)), d = sse2_json_special(_mm_loadu_si128(q + 3));
        if (_mm_movemask_epi8(_mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d))) != 0) {
            uint64_t m = (uint64_t)(unsigned)_mm_movemask_epi8(a) | (uint64_t)(unsigned)_mm_movemask_epi8(b) << 16
                | (uint64_t)(unsigned)_mm_movemask_epi8(c) << 32 | (uint64_t)(unsigned)_mm_movemask_epi8(d) << 48;
            return i + (size_t)__builtin_ctzll(m);
        }
    }
    for (; n - i >= 16; i += 16) {
        int m = SSE2_JSON_MASK(_mm_loadu_si128((const __m128i *)(p + i)));
        if (m != 0) return i + (size_t)__builtin_ctz((unsigned)m);
    }
    if (i == n) return n;
    SSE2_TAIL(p, i, n, SSE2_JSON_MASK);
}

/* SSE2 has no byte shuffle for the table lookups of the AVX2 validator: ASCII runs go 64 bytes
   per step, other bytes through the scalar sequence check. */
static bool sse2_utf8_valid(const uint8_t *p, size_t n) {
    return scalar_utf8_valid_from(p, 0, n, sse2_ascii_span);
}

/* 32 zero bytes, then 32 0xFF: the 32 bytes at tail_lanes + k (the 16 at tail_lanes + 16 + k)
   are zeros but for their last k, the lanes of a vector ending at a buffer's last byte that hold
   its last k bytes. */
static const uint8_t tail_lanes[64] __attribute__((aligned(32))) = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
};

/* `key` for a vector that starts at p[x] with x = 4m + phase (RFC 6455 §5.3: byte x takes key
   byte x mod 4): its low byte is key byte `phase`. */
static inline uint32_t key_at(uint32_t key, size_t phase) {
    unsigned shift = (unsigned)(phase & 3) * 8;
    return shift == 0 ? key : (key >> shift) | (key << (32 - shift));
}

/* Unmasks the last k (< 16) bytes of p[0..n) (n >= 16) with one vector ending at p[n-1]: the
   lanes before them are already unmasked and XOR with zero. Returns the vector, for the ASCII
   verdict (its other lanes are unmasked bytes too). */
static inline __m128i sse2_unmask_tail(uint8_t *p, size_t n, size_t k, uint32_t key) {
    __m128i *q = (__m128i *)(p + n - 16);
    __m128i lanes = _mm_loadu_si128((const __m128i *)(tail_lanes + 16 + k));
    __m128i v = _mm_xor_si128(_mm_loadu_si128(q), _mm_and_si128(_mm_set1_epi32((int)key_at(key, n)), lanes));
    _mm_storeu_si128(q, v);
    return v;
}

static bool sse2_unmask(uint8_t *p, size_t n, uint32_t key) {
    const __m128i k = _mm_set1_epi32((int)key);
    __m128i seen = _mm_setzero_si128();  /* OR of the unmasked bytes: their high bits say non-ASCII */
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m128i *q = (__m128i *)(p + i);
        __m128i a = _mm_xor_si128(_mm_loadu_si128(q), k), b = _mm_xor_si128(_mm_loadu_si128(q + 1), k);
        __m128i c = _mm_xor_si128(_mm_loadu_si128(q + 2), k), d = _mm_xor_si128(_mm_loadu_si128(q + 3), k);
        _mm_storeu_si128(q, a);
        _mm_storeu_si128(q + 1, b);
        _mm_storeu_si128(q + 2, c);
        _mm_storeu_si128(q + 3, d);
        seen = _mm_or_si128(seen, _mm_or_si128(_mm_or_si128(a, b), _mm_or_si128(c, d)));
    }
    for (; n - i >= 16; i += 16) {
        __m128i *q = (__m128i *)(p + i);
        __m128i a = _mm_xor_si128(_mm_loadu_si128(q), k);
        _mm_storeu_si128(q, a);
        seen = _mm_or_si128(seen, a);
    }
    /* i is a multiple of 16, so the key phase is unchanged. */
    if (i == n) return _mm_movemask_epi8(seen) == 0;  /* a multiple of 16 bytes: no tail */
    if (n >= 16) return _mm_movemask_epi8(_mm_or_si128(seen, sse2_unmask_tail(p, n, n - i, key))) == 0;
    return scalar_unmask(p, n, key);  /* under 16 bytes: nothing unmasked above */
}

static void sse2_copy_large(void *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    uint8_t *d = dst;
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)(s + i)), b = _mm_loadu_si128((const __m128i *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32)), e = _mm_loadu_si128((const __m128i *)(s + i + 48));
        _mm_storeu_si128((__m128i *)(d + i), a);
        _mm_storeu_si128((__m128i *)(d + i + 16), b);
        _mm_storeu_si128((__m128i *)(d + i + 32), c);
        _mm_storeu_si128((__m128i *)(d + i + 48), e);
    }
    if (i < n) {  /* the last 64 bytes again, overlapping what is already copied */
        i = n - 64;
        __m128i a = _mm_loadu_si128((const __m128i *)(s + i)), b = _mm_loadu_si128((const __m128i *)(s + i + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + i + 32)), e = _mm_loadu_si128((const __m128i *)(s + i + 48));
        _mm_storeu_si128((__m128i *)(d + i), a);
        _mm_storeu_si128((__m128i *)(d + i + 16), b);
        _mm_storeu_si128((__m128i *)(d + i + 32), c);
        _mm_storeu_si128((__m128i *)(d + i + 48), e);
    }
}

/* The copy and mask of json_small.h, 16 bytes per step: whole 64-byte words of the mask at
   once, then 16-byte steps, the last one a load ending at p[n-1] (stored over the zeros behind
   the copy); an input under 16 bytes by memcpy. `copy` NULL (a constant): the mask alone, for
   the in-place walk (n >= JSON_SMALL_IN_PLACE_MIN). */
__attribute__((always_inline)) static inline bool sse2_json_small_prepare(const uint8_t *p, size_t n, uint8_t *copy,
                                                                         uint64_t *special) {
    /* The smallest byte seen, per lane: one instruction per vector; whether any byte is <= 0x20
       is asked once, at the end. */
    __m128i least = _mm_set1_epi8((char)0xFF);
#define SSE2_BLANKS(v) least = _mm_min_epu8(least, (v))
    size_t i = 0;
    for (; n - i >= 64; i += 64) {
        const __m128i *q = (const __m128i *)(p + i);
        __m128i a = _mm_loadu_si128(q), b = _mm_loadu_si128(q + 1), c = _mm_loadu_si128(q + 2), d = _mm_loadu_si128(q + 3);
        if (copy) {
            __m128i *to = (__m128i *)(copy + i);
            _mm_store_si128(to, a);
            _mm_store_si128(to + 1, b);
            _mm_store_si128(to + 2, c);
            _mm_store_si128(to + 3, d);
        }
        SSE2_BLANKS(a);
        SSE2_BLANKS(b);
        SSE2_BLANKS(c);
        SSE2_BLANKS(d);
        special[i >> 6] = (uint64_t)(unsigned)SSE2_JSON_MASK(a) | (uint64_t)(unsigned)SSE2_JSON_MASK(b) << 16
            | (uint64_t)(unsigned)SSE2_JSON_MASK(c) << 32 | (uint64_t)(unsigned)SSE2_JSON_MASK(d) << 48;
    }
    uint64_t last = 0;
    /* At most three 16-byte steps remain, written out (as a loop the compiler makes the copy a
       memcpy call). */
#define STEP                                                              \
    if (n - i >= 16) {                                                    \
        __m128i v = _mm_loadu_si128((const __m128i *)(p + i));            \
        if (copy) _mm_store_si128((__m128i *)(copy + i), v);              \
        SSE2_BLANKS(v);                                                   \
        last |= (uint64_t)(unsigned)SSE2_JSON_MASK(v) << (i & 63);        \
        i += 16;                                                          \
    }
    STEP STEP STEP
#undef STEP
    if (copy) {
        _mm_store_si128((__m128i *)(copy + i), _mm_setzero_si128());
        _mm_store_si128((__m128i *)(copy + i + 16), _mm_setzero_si128());
    }
    if (i < n) {
        if (n >= 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(p + n - 16));
            if (copy) _mm_storeu_si128((__m128i *)(copy + n - 16), v);
            SSE2_BLANKS(v);
            last |= (uint64_t)((unsigned)SSE2_JSON_MASK(v) >> (16 - (n - i))) << (i & 63);
        } else {
            memcpy(copy, p, n);
            __m128i v = _mm_load_si128((const __m128i *)copy);
            SSE2_BLANKS(v);  /* the padding's zeros count too: a short input takes the full walk */
            last = (unsigned)SSE2_JSON_MASK(v);  /* the zeros' bits: sealed anyway */
        }
    }
#undef SSE2_BLANKS
    special[n >> 6] = last;
    json_small_seal(special, n);
    return _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(least, _mm_set1_epi8(' ')), least)) != 0;
}

NOINLINE static bool sse2_json_valid_small(const uint8_t *p, size_t n, size_t max_depth, bool utf8_validated) {
    uint64_t special[JSON_SMALL_WORDS];
    if (json_small_in_place(p, n)) {
        bool blanks = sse2_json_small_prepare(p, n, NULL, special);
        json_small_seal_in_place(special, n);
        return JSON_SMALL_WALK_IN_PLACE(p, n, special, max_depth, utf8_validated, blanks);
    }
    uint8_t copy[JSON_SMALL_COPY] __attribute__((aligned(16)));
    bool blanks = sse2_json_small_prepare(p, n, copy, special);
    return JSON_SMALL_WALK(copy, n, special, max_depth, utf8_validated, blanks);
}

const pyry_simd_kernels pyry_simd_sse2 = {
    "sse2", sse2_ascii_span, sse2_json_plain_span, sse2_utf8_valid, sse2_unmask, sse2_copy_large, sse2_json_valid_small,
    PYRY_JSON_SMALL_MAX_SSE2,
};

/* ---- AVX2 ---- */

/* '"' (0x22) and '\\' (0x5C) in one table lookup by the low nibble: the table holds each at its
   own nibble (2, 12) and 0x80 elsewhere, which no byte < 0x80 equals; a byte >= 0x80 looks up 0
   (the shuffle's rule), which it does not equal either. Two instructions where two compares
   and an OR take three. */
#define QUOTE_BACKSLASH_ROW \
    (char)0x80, (char)0x80, '"', (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80, \
    (char)0x80, (char)0x80, (char)0x80, (char)0x80, '\\', (char)0x80, (char)0x80, (char)0x80
AVX2 static inline __m256i avx2_quote_or_backslash(__m256i v) {
    const __m256i table = _mm256_setr_epi8(QUOTE_BACKSLASH_ROW, QUOTE_BACKSLASH_ROW);
    return _mm256_cmpeq_epi8(_mm256_shuffle_epi8(table, v), v);
}

/* Bytes of `v` that end a JSON plain run, as sse2_json_special. */
AVX2 static inline __m256i avx2_json_special(__m256i v) {
    return _mm256_or_si256(avx2_quote_or_backslash(v), _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v));
}

#define AVX2_TAIL(p, i, n, mask_of)                                                       \
    do {                                                                                  \
        uint64_t m_ = (uint32_t)(mask_of(_mm256_loadu_si256((const __m256i *)((p) + (n) - 32)))); \
        m_ >>= 32 - ((n) - (i));                                                          \
        return m_ ? (i) + (size_t)__builtin_ctzll(m_) : (n);                              \
    } while (0)

#define AVX2_ASCII_MASK(v) _mm256_movemask_epi8(v)
#define AVX2_JSON_MASK(v) _mm256_movemask_epi8(avx2_json_special(v))

AVX2 static size_t avx2_ascii_span(const uint8_t *p, size_t n) {
    if (n < 32) return sse2_ascii_span(p, n);
    /* The first 32 bytes alone: most JSON strings (and frames) end in them. */
    unsigned first = (unsigned)_mm256_movemask_epi8(_mm256_loadu_si256((const __m256i *)p));
    if (first != 0) return (size_t)__builtin_ctz(first);
    size_t i = 32;
    for (; n - i >= 64; i += 64) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        __m256i b = _mm256_loadu_si256((const __m256i *)(p + i + 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) != 0) {
            uint64_t m = (uint32_t)_mm256_movemask_epi8(a) | (uint64_t)(uint32_t)_mm256_movemask_epi8(b) << 32;
            return i + (size_t)__builtin_ctzll(m);
        }
    }
    if (n - i >= 32) {
        unsigned m = (unsigned)_mm256_movemask_epi8(_mm256_loadu_si256((const __m256i *)(p + i)));
        if (m != 0) return i + (size_t)__builtin_ctz(m);
        i += 32;
    }
    if (i == n) return n;
    AVX2_TAIL(p, i, n, AVX2_ASCII_MASK);
}

/* Whether none of the 128 bytes a..d is one avx2_json_special flags, asked once: '"' and '\\'
   by the table, control and non-ASCII bytes on the bytes' signed minimum (both are below 0x20
   as signed bytes), which lands in *low. */
AVX2 static inline bool avx2_json_plain_block(__m256i a, __m256i b, __m256i c, __m256i d, __m256i *low) {
    __m256i quotes = _mm256_or_si256(_mm256_or_si256(avx2_quote_or_backslash(a), avx2_quote_or_backslash(b)),
                                     _mm256_or_si256(avx2_quote_or_backslash(c), avx2_quote_or_backslash(d)));
    *low = _mm256_min_epi8(_mm256_min_epi8(a, b), _mm256_min_epi8(c, d));
    __m256i any = _mm256_or_si256(quotes, _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), *low));
    return _mm256_testz_si256(any, any);
}

/* The first special byte among the 64 at p + i, returned from the enclosing function. */
#define AVX2_SPAN_STEP64(p, i)                                                                         \
    do {                                                                                               \
        __m256i a_ = avx2_json_special(_mm256_loadu_si256((const __m256i *)((p) + (i))));              \
        __m256i b_ = avx2_json_special(_mm256_loadu_si256((const __m256i *)((p) + (i) + 32)));         \
        if (_mm256_movemask_epi8(_mm256_or_si256(a_, b_)) != 0) {                                      \
            uint64_t m_ = (uint32_t)_mm256_movemask_epi8(a_) | (uint64_t)(uint32_t)_mm256_movemask_epi8(b_) << 32; \
            return (i) + (size_t)__builtin_ctzll(m_);                                                  \
        }                                                                                              \
    } while (0)

AVX2 static size_t avx2_json_plain_span(const uint8_t *p, size_t n) {
    if (n < 32) return sse2_json_plain_span(p, n);
    /* The first 32 bytes alone: most JSON strings (and frames) end in them. */
    unsigned first = (unsigned)AVX2_JSON_MASK(_mm256_loadu_si256((const __m256i *)p));
    if (first != 0) return (size_t)__builtin_ctz(first);
    size_t i = 32;
    /* Then 64: most of the other strings of a document end in them. */
    if (n - i >= 64) {
        AVX2_SPAN_STEP64(p, i);
        i += 64;
    }
    /* A long run: 128 bytes per step, asking only whether a special byte is among them; the
       64-byte steps below find it in the block that has one. */
    for (; n - i >= 128; i += 128) {
        const __m256i *q = (const __m256i *)(p + i);
        __m256i low;
        if (!avx2_json_plain_block(_mm256_loadu_si256(q), _mm256_loadu_si256(q + 1), _mm256_loadu_si256(q + 2),
                                   _mm256_loadu_si256(q + 3), &low))
            break;
    }
    for (; n - i >= 64; i += 64) AVX2_SPAN_STEP64(p, i);
    if (n - i >= 32) {
        unsigned m = (unsigned)AVX2_JSON_MASK(_mm256_loadu_si256((const __m256i *)(p + i)));
        if (m != 0) return i + (size_t)__builtin_ctz(m);
        i += 32;
    }
    if (i == n) return n;
    AVX2_TAIL(p, i, n, AVX2_JSON_MASK);
}

/* UTF-8 validation 32 bytes at a time by table lookups (Keiser & Lemire, "Validating UTF-8 in
   less than one instruction per byte", 2021; simdjson's and simdutf's "lookup" algorithm): every
   error of RFC 3629 §4 is visible in a pair of adjacent bytes (the high nibble of the first, its
   low nibble, the high nibble of the second), except a missing 3rd/4th byte, found from the bytes
   2 and 3 back. Error bits of the pair tables: */
enum {
    TOO_SHORT = 1 << 0,   /* 11______ 0_______ or 11______ 11______: lead without continuation */
    TOO_LONG = 1 << 1,    /* 0_______ 10______: continuation after ASCII */
    OVERLONG_3 = 1 << 2,  /* 11100000 100_____ */
    TOO_LARGE = 1 << 3,   /* 11110100 1001____ / 101_____, 11110101.. 1001____ / 101_____: > U+10FFFF */
    SURROGATE = 1 << 4,   /* 11101101 101_____: U+D800..U+DFFF */
    OVERLONG_2 = 1 << 5,  /* 1100000_ 10______ */
    TOO_LARGE_1000 = 1 << 6, /* 11110101.. 1000____ (F5 and above) */
    OVERLONG_4 = 1 << 6,  /* 11110000 1000____ (shares the bit: both need the second byte 1000____) */
    TWO_CONTS = 1 << 7,   /* 10______ 10______: fine only as the 3rd/4th byte of a sequence */
    CARRY = TOO_SHORT | TOO_LONG | TWO_CONTS,  /* the errors that do not depend on the low nibble */
};

/* v >> 4 per byte (there is no 8-bit shift). */
AVX2 static inline __m256i avx2_high_nibbles(__m256i v) {
    return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0F));
}

/* The 32 bytes that start `n` bytes before `in` (n = 1..3), `prev` holding the block before. */
#define AVX2_PREV(in, prev, n) _mm256_alignr_epi8((in), _mm256_permute2x128_si256((prev), (in), 0x21), 16 - (n))

/* The three pair tables, indexed by a nibble (each row twice: _mm256_shuffle_epi8 looks up
   within each 16-byte lane). */
#define BYTE1_HIGH_ROW                                                                            \
    TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, TOO_LONG, /* 0_______ */ \
    TWO_CONTS, TWO_CONTS, TWO_CONTS, TWO_CONTS,                                     /* 10______ */ \
    TOO_SHORT | OVERLONG_2,                                                         /* 1100____ */ \
    TOO_SHORT,                                                                      /* 1101____ */ \
    TOO_SHORT | OVERLONG_3 | SURROGATE,                                             /* 1110____ */ \
    TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4                             /* 1111____ */
#define BYTE1_LOW_ROW                                                                             \
    CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4, /* ____0000 */                                   \
    CARRY | OVERLONG_2,                           /* ____0001 */                                   \
    CARRY, CARRY,                                 /* ____001_ */                                   \
    CARRY | TOO_LARGE,                            /* ____0100 */                                   \
    CARRY | TOO_LARGE | TOO_LARGE_1000,           /* ____0101 */                                   \
    CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000, /* ____011_ */         \
    CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000, /* ____1___ */         \
    CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000,                        \
    CARRY | TOO_LARGE | TOO_LARGE_1000,                                                            \
    CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE, /* ____1101 */                                 \
    CARRY | TOO_LARGE | TOO_LARGE_1000, CARRY | TOO_LARGE | TOO_LARGE_1000
#define BYTE2_HIGH_ROW                                                                            \
    TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT, /* 0_______ */ \
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4, /* 1000____ */    \
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE,                   /* 1001____ */    \
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,                    /* 101_____ */    \
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,                                     \
    TOO_SHORT, TOO_SHORT, TOO_SHORT, TOO_SHORT                                    /* 11______ */
static const uint8_t byte1_high_table[32] __attribute__((aligned(32))) = {BYTE1_HIGH_ROW, BYTE1_HIGH_ROW};
static const uint8_t byte1_low_table[32] __attribute__((aligned(32))) = {BYTE1_LOW_ROW, BYTE1_LOW_ROW};
static const uint8_t byte2_high_table[32] __attribute__((aligned(32))) = {BYTE2_HIGH_ROW, BYTE2_HIGH_ROW};

#define AVX2_TABLE(t) _mm256_load_si256((const __m256i *)(t))

/* Error bits of the 32-byte block `in`, given the block before it. */
AVX2 static inline __m256i avx2_utf8_block_errors(__m256i in, __m256i prev) {
    __m256i prev1 = AVX2_PREV(in, prev, 1);
    __m256i special = _mm256_and_si256(
        _mm256_and_si256(_mm256_shuffle_epi8(AVX2_TABLE(byte1_high_table), avx2_high_nibbles(prev1)),
                         _mm256_shuffle_epi8(AVX2_TABLE(byte1_low_table), _mm256_and_si256(prev1, _mm256_set1_epi8(0x0F)))),
        _mm256_shuffle_epi8(AVX2_TABLE(byte2_high_table), avx2_high_nibbles(in)));
    /* A byte 2 back that is 111_____ or 3 back that is 1111____ needs this byte to be a
       continuation: there TWO_CONTS is expected and flips to 0, elsewhere to an error. */
    __m256i third = _mm256_subs_epu8(AVX2_PREV(in, prev, 2), _mm256_set1_epi8((char)(0xE0 - 0x80)));
    __m256i fourth = _mm256_subs_epu8(AVX2_PREV(in, prev, 3), _mm256_set1_epi8((char)(0xF0 - 0x80)));
    __m256i must_continue = _mm256_and_si256(_mm256_or_si256(third, fourth), _mm256_set1_epi8((char)0x80));
    return _mm256_xor_si256(must_continue, special);
}

AVX2 static bool avx2_utf8_valid(const uint8_t *p, size_t n) {
    /* 32 to 64 bytes of ASCII, the usual small text message: two loads, no scan. */
    if (n - 32 <= 32) {
        __m256i a = _mm256_loadu_si256((const __m256i *)p), b = _mm256_loadu_si256((const __m256i *)(p + n - 32));
        if (_mm256_movemask_epi8(_mm256_or_si256(a, b)) == 0) return true;
    }
    size_t i = avx2_ascii_span(p, n);
    if (i == n) return true;
    /* p[i-1] is ASCII (or i is 0): as the "block before" it is the same as zeros. */
    __m256i prev = _mm256_setzero_si256();
    __m256i error = _mm256_setzero_si256();
    for (; n - i >= 32; i += 32) {
        __m256i in = _mm256_loadu_si256((const __m256i *)(p + i));
        error = _mm256_or_si256(error, avx2_utf8_block_errors(in, prev));
        prev = in;
    }
    /* The rest, padded with zeros: a sequence cut by the end of the input meets a zero (ASCII)
       where it needs a continuation, so that is an error too. Runs even when nothing is left. */
    uint8_t last[32] = {0};
    memcpy(last, p + i, n - i);
    error = _mm256_or_si256(error, avx2_utf8_block_errors(_mm256_loadu_si256((const __m256i *)last), prev));
    return _mm256_testz_si256(error, error);
}

/* Unmasks the 128 bytes at q, ORing them into *seen. */
AVX2 static inline void avx2_unmask128(__m256i *q, __m256i k, __m256i *seen) {
    __m256i a = _mm256_xor_si256(_mm256_loadu_si256(q), k), b = _mm256_xor_si256(_mm256_loadu_si256(q + 1), k);
    __m256i c = _mm256_xor_si256(_mm256_loadu_si256(q + 2), k), d = _mm256_xor_si256(_mm256_loadu_si256(q + 3), k);
    _mm256_storeu_si256(q, a);
    _mm256_storeu_si256(q + 1, b);
    _mm256_storeu_si256(q + 2, c);
    _mm256_storeu_si256(q + 3, d);
    *seen = _mm256_or_si256(*seen, _mm256_or_si256(_mm256_or_si256(a, b), _mm256_or_si256(c, d)));
}

AVX2 static bool avx2_unmask(uint8_t *p, size_t n, uint32_t key) {
    const __m256i k = _mm256_set1_epi32((int)key);
    __m256i seen = _mm256_setzero_si256();  /* OR of the unmasked bytes: their high bits say non-ASCII */
    size_t i = 0;
    if (n >= 128) {
        /* 256 bytes per turn (half the loop's own instructions per byte), then one 128. */
        for (; n - i >= 256; i += 256) {
            avx2_unmask128((__m256i *)(p + i), k, &seen);
            avx2_unmask128((__m256i *)(p + i + 128), k, &seen);
        }
        if (n - i >= 128) {
            avx2_unmask128((__m256i *)(p + i), k, &seen);
            i += 128;
        }
    }
    for (; n - i >= 32; i += 32) {
        __m256i *q = (__m256i *)(p + i);
        __m256i a = _mm256_xor_si256(_mm256_loadu_si256(q), k);
        _mm256_storeu_si256(q, a);
        seen = _mm256_or_si256(seen, a);
    }
    if (n - i >= 16) {
        __m128i *q = (__m128i *)(p + i);
        __m128i a = _mm_xor_si128(_mm_loadu_si128(q), _mm256_castsi256_si128(k));
        _mm_storeu_si128(q, a);
        seen = _mm256_or_si256(seen, _mm256_zextsi128_si256(a));  /* upper half zero */
        i += 16;
    }
    if (i == n) return _mm256_movemask_epi8(seen) == 0;  /* a multiple of 16 bytes: no tail */
    if (n >= 32) {
        /* The last n - i (< 16) bytes: one vector ending at p[n-1], whose lanes before them are
           already unmasked and XOR with zero (sse2_unmask_tail, 32 bytes wide). */
        __m256i *q = (__m256i *)(p + n - 32);
        __m256i lanes = _mm256_loadu_si256((const __m256i *)(tail_lanes + (n - i)));
        __m256i v = _mm256_xor_si256(_mm256_loadu_si256(q), _mm256_and_si256(_mm256_set1_epi32((int)key_at(key, n)), lanes));
        _mm256_storeu_si256(q, v);
        seen = _mm256_or_si256(seen, v);
        return _mm256_movemask_epi8(seen) == 0;
    }
    bool ascii = _mm256_movemask_epi8(seen) == 0;
    if (n >= 16) return _mm_movemask_epi8(sse2_unmask_tail(p, n, n - i, key)) == 0 && ascii;
    /* i is a multiple of 16, so the key phase is unchanged. */
    return scalar_unmask(p + i, n - i, key) && ascii;
}

/* Copies the 128 bytes at s to d. */
AVX2 static inline void avx2_copy128(__m256i *d, const __m256i *s) {
    __m256i x0 = _mm256_loadu_si256(s), x1 = _mm256_loadu_si256(s + 1);
    __m256i x2 = _mm256_loadu_si256(s + 2), x3 = _mm256_loadu_si256(s + 3);
    _mm256_storeu_si256(d, x0);
    _mm256_storeu_si256(d + 1, x1);
    _mm256_storeu_si256(d + 2, x2);
    _mm256_storeu_si256(d + 3, x3);
}

AVX2 static void avx2_copy_large(void *dst, const void *src, size_t n) {
    const uint8_t *s = src;
    uint8_t *d = dst;
    /* 256 bytes per turn (half the loop's own instructions per byte), then one 128. */
    size_t i = 0;
    for (; n - i >= 256; i += 256) {
        avx2_copy128((__m256i *)(d + i), (const __m256i *)(s + i));
        avx2_copy128((__m256i *)(d + i + 128), (const __m256i *)(s + i + 128));
    }
    if (n - i >= 128) {
        avx2_copy128((__m256i *)(d + i), (const __m256i *)(s + i));
        i += 128;
    }
    /* The last 128 bytes again, overlapping what is already copied. */
    if (i < n) avx2_copy128((__m256i *)(d + n - 128), (const __m256i *)(s + n - 128));
}

/* One 64-byte word of avx2_json_small_prepare from its two vectors: its copy (unless `copy`
   is NULL), its blanks, its mask word. */
AVX2 static inline uint64_t avx2_json_small_word_of(__m256i a, __m256i b, uint8_t *copy, __m256i *least) {
    if (copy) {
        _mm256_store_si256((__m256i *)copy, a);
        _mm256_store_si256((__m256i *)(copy + 32), b);
    }
    *least = _mm256_min_epu8(*least, _mm256_min_epu8(a, b));
    return (uint64_t)(uint32_t)AVX2_JSON_MASK(a) | (uint64_t)(uint32_t)AVX2_JSON_MASK(b) << 32;
}

/* avx2_json_small_word_of the 64 bytes at p. */
AVX2 static inline uint64_t avx2_json_small_word(const uint8_t *p, uint8_t *copy, __m256i *least) {
    return avx2_json_small_word_of(_mm256_loadu_si256((const __m256i *)p), _mm256_loadu_si256((const __m256i *)(p + 32)),
                                   copy, least);
}

/* sse2_json_small_prepare 32 bytes per step; inputs under 32 bytes go to it. `copy` NULL (a
   constant): the mask alone, for the in-place walk. */
AVX2 __attribute__((always_inline)) static inline bool avx2_json_small_prepare(const uint8_t *p, size_t n, uint8_t *copy,
                                                                              uint64_t *special) {
    if (n < 32) return sse2_json_small_prepare(p, n, copy, special);
    __m256i least = _mm256_set1_epi8((char)0xFF);  /* as in sse2_json_small_prepare */
#define AVX2_BLANKS(v) least = _mm256_min_epu8(least, (v))
    size_t i = 0;
    for (;;) {
        /* Two words per turn while they hold special bytes (most words of most messages). */
        uint64_t word = 1;
        while (n - i >= 128) {
            special[i >> 6] = avx2_json_small_word(p + i, copy ? copy + i : NULL, &least);
            word = avx2_json_small_word(p + i + 64, copy ? copy + i + 64 : NULL, &least);
            special[(i >> 6) + 1] = word;
            i += 128;
            if (word == 0) break;
        }
        if (word != 0) {  /* fewer than 128 bytes left */
            if (n - i >= 64) {
                special[i >> 6] = avx2_json_small_word(p + i, copy ? copy + i : NULL, &least);
                i += 64;
            }
            break;
        }
        /* Inside a long plain run (a base64 blob, a long text): 256 bytes at a time, asking
           only whether a special byte is among them (avx2_json_plain_block, per half); a
           plain first half alone is a 128-byte step, and the block that has one goes word by
           word. With no special byte every byte is in 0x20..0x7F, where the signed minimum is
           the unsigned one the blank test wants. */
        while (n - i >= 128) {
            const __m256i *q = (const __m256i *)(p + i);
            __m256i a = _mm256_loadu_si256(q), b = _mm256_loadu_si256(q + 1);
            __m256i c = _mm256_loadu_si256(q + 2), d = _mm256_loadu_si256(q + 3);
            __m256i low;
            if (!avx2_json_plain_block(a, b, c, d, &low)) {
                /* The run ends in this block: its two words from the vectors at hand, then
                   word by word again. */
                special[i >> 6] = avx2_json_small_word_of(a, b, copy ? copy + i : NULL, &least);
                special[(i >> 6) + 1] = avx2_json_small_word_of(c, d, copy ? copy + i + 64 : NULL, &least);
                i += 128;
                break;
            }
            if (copy) {
                __m256i *to = (__m256i *)(copy + i);
                _mm256_store_si256(to, a);
                _mm256_store_si256(to + 1, b);
                _mm256_store_si256(to + 2, c);
                _mm256_store_si256(to + 3, d);
            }
            if (n - i >= 256) {
                __m256i e = _mm256_loadu_si256(q + 4), f = _mm256_loadu_si256(q + 5);
                __m256i g = _mm256_loadu_si256(q + 6), h = _mm256_loadu_si256(q + 7);
                __m256i low2;
                if (avx2_json_plain_block(e, f, g, h, &low2)) {
                    if (copy) {
                        __m256i *to = (__m256i *)(copy + i + 128);
                        _mm256_store_si256(to, e);
                        _mm256_store_si256(to + 1, f);
                        _mm256_store_si256(to + 2, g);
                        _mm256_store_si256(to + 3, h);
                    }
                    AVX2_BLANKS(_mm256_min_epi8(low, low2));
                    _mm256_storeu_si256((__m256i *)(special + (i >> 6)), _mm256_setzero_si256());
                    i += 256;
                    continue;
                }
            }
            AVX2_BLANKS(low);
            _mm_storeu_si128((__m128i *)(special + (i >> 6)), _mm_setzero_si128());
            i += 128;
        }
    }
    uint64_t last = 0;
    if (n - i >= 32) {  /* i is a multiple of 64: these are the word's low 32 bits */
        __m256i a = _mm256_loadu_si256((const __m256i *)(p + i));
        if (copy) _mm256_store_si256((__m256i *)(copy + i), a);
        AVX2_BLANKS(a);
        last = (uint32_t)AVX2_JSON_MASK(a);
        i += 32;
    }
    if (copy) {
        _mm256_store_si256((__m256i *)(copy + i), _mm256_setzero_si256());
        _mm256_store_si256((__m256i *)(copy + i + 32), _mm256_setzero_si256());
    }
    if (i < n) {  /* the rest: a load ending at p[n-1] (n >= 32), stored over the zeros */
        __m256i v = _mm256_loadu_si256((const __m256i *)(p + n - 32));
        if (copy) _mm256_storeu_si256((__m256i *)(copy + n - 32), v);
        AVX2_BLANKS(v);
        last |= (uint64_t)((uint32_t)AVX2_JSON_MASK(v) >> (32 - (n - i))) << (i & 63);
    }
#undef AVX2_BLANKS
    special[n >> 6] = last;
    json_small_seal(special, n);
    return _mm256_movemask_epi8(_mm256_cmpeq_epi8(_mm256_min_epu8(least, _mm256_set1_epi8(' ')), least)) != 0;
}

AVX2 static bool avx2_json_valid_small(const uint8_t *p, size_t n, size_t max_depth, bool utf8_validated) {
    uint64_t special[JSON_SMALL_WORDS];
    /* One test sends the usual message (32 to 255 bytes) to the copy below. */
    if (n - 32 >= JSON_SMALL_IN_PLACE_MIN - 32) {
        if (json_small_in_place(p, n)) {
            bool blanks = avx2_json_small_prepare(p, n, NULL, special);
            json_small_seal_in_place(special, n);
            return JSON_SMALL_WALK_IN_PLACE(p, n, special, max_depth, utf8_validated, blanks);
        }
        if (n < 32) return sse2_json_valid_small(p, n, max_depth, utf8_validated);
    }
    uint8_t copy[JSON_SMALL_COPY] __attribute__((aligned(32)));
    bool blanks = avx2_json_small_prepare(p, n, copy, special);
    return JSON_SMALL_WALK(copy, n, special, max_depth, utf8_validated, blanks);
}

const pyry_simd_kernels pyry_simd_avx2 = {
    "avx2", avx2_ascii_span, avx2_json_plain_span, avx2_utf8_valid, avx2_unmask, avx2_copy_large, avx2_json_valid_small,
    PYRY_JSON_SMALL_MAX,
};
#endif
