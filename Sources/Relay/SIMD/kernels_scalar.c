/* The portable level: what a CPU without SSE2/AVX2 (or a non-x86 build) runs. */
#include "CRelaySIMD.h"
#include "scalar.h"
#include "json_small.h"
#include "levels.h"

static size_t ascii_span(const uint8_t *p, size_t n) { return scalar_ascii_span(p, n); }
static size_t json_plain_span(const uint8_t *p, size_t n) { return scalar_json_plain_span(p, n); }
static bool utf8_valid(const uint8_t *p, size_t n) { return scalar_utf8_valid_from(p, 0, n, scalar_ascii_span); }
static bool unmask(uint8_t *p, size_t n, uint32_t key) { return scalar_unmask(p, n, key); }
static void copy_large(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static bool json_valid_small(const uint8_t *p, size_t n, size_t max_depth, bool utf8_validated) {
    uint8_t copy[JSON_SMALL_COPY];
    uint64_t special[JSON_SMALL_WORDS];
    bool blanks = scalar_json_small_prepare(p, n, copy, special);
    return JSON_SMALL_WALK(copy, n, special, max_depth, utf8_validated, blanks);
}

const pyry_simd_kernels pyry_simd_scalar = {
    "scalar", ascii_span, json_plain_span, utf8_valid, unmask, copy_large, json_valid_small, PYRY_JSON_SMALL_MAX_SCALAR,
};
