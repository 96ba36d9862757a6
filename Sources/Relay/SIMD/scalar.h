/* Portable scalar kernels, shared by every level for the bytes a vector step cannot cover. */
#ifndef PYRY_SIMD_SCALAR_H
#define PYRY_SIMD_SCALAR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Eight bytes per step in a 64-bit word (SWAR) on little-endian hosts, where the lowest flagged
   byte of a word is the first in memory; the rest byte by byte. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define PYRY_SWAR 1
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
/* High bit of each byte of w below b (b <= 0x80); exact at the lowest flagged byte (a borrow
   only runs upward from a true hit). */
#define BYTES_BELOW(w, b) (((w) - ONES * (b)) & ~(w) & HIGHS)

static inline uint64_t load64(const uint8_t *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}
#endif

static inline size_t scalar_ascii_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if PYRY_SWAR
    for (; n - i >= 8; i += 8) {
        uint64_t high = load64(p + i) & HIGHS;
        if (high != 0) return i + (size_t)__builtin_ctzll(high) / 8;
    }
#endif
    while (i < n && p[i] < 0x80) i++;
    return i;
}

/* A byte that ends a plain JSON string run: '"', '\\', a control (< 0x20) or any byte >= 0x80. */
static inline bool json_special_byte(uint8_t b) { return b == '"' || b == '\\' || b < 0x20 || b >= 0x80; }

#if PYRY_SWAR
/* The same test on 8 bytes: the high bit of each special byte is set (and possibly of a plain
   byte above a true hit: see BYTES_BELOW), every other bit clear. */
static inline uint64_t swar_json_special(uint64_t w) {
    return BYTES_BELOW(w ^ (ONES * '"'), 1) | BYTES_BELOW(w ^ (ONES * '\\'), 1) | BYTES_BELOW(w, 0x20) | (w & HIGHS);
}
#endif

static inline size_t scalar_json_plain_span(const uint8_t *p, size_t n) {
    size_t i = 0;
#if PYRY_SWAR
    for (; n - i >= 8; i += 8) {
        uint64_t special = swar_json_special(load64(p + i));
        if (special != 0) return i + (size_t)__builtin_ctzll(special) / 8;
    }
#endif
    while (i < n) {
        if (json_special_byte(p[i])) return i;
        i++;
    }
    return n;
}

/* Length of the well-formed UTF-8 sequence at p[0] (p[0] >= 0x80), or 0 when there is none:
   RFC 3629 §4, the table of valid byte sequences. */
static inline size_t scalar_utf8_sequence(const uint8_t *p, size_t avail) {
#define CONT(k, lo, hi) (p[k] >= (lo) && p[k] <= (hi))
    uint8_t lead = p[0];
    if (lead >= 0xC2 && lead <= 0xDF) return avail >= 2 && CONT(1, 0x80, 0xBF) ? 2 : 0;
    if (lead == 0xE0) return avail >= 3 && CONT(1, 0xA0, 0xBF) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF)
        return avail >= 3 && CONT(1, 0x80, 0xBF) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if (lead == 0xED)  /* U+D800..U+DFFF are not scalar values */
        return avail >= 3 && CONT(1, 0x80, 0x9F) && CONT(2, 0x80, 0xBF) ? 3 : 0;
    if (lead == 0xF0)
        return avail >= 4 && CONT(1, 0x90, 0xBF) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
    if (lead >= 0xF1 && lead <= 0xF3)
        return avail >= 4 && CONT(1, 0x80, 0xBF) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
    if (lead == 0xF4)  /* nothing above U+10FFFF */
        return avail >= 4 && CONT(1, 0x80, 0x8F) && CONT(2, 0x80, 0xBF) && CONT(3, 0x80, 0xBF) ? 4 : 0;
    return 0;  /* 0x80..0xC1 (continuation or overlong lead), 0xF5..0xFF */
#undef CONT
}

/* Validates p[i..n) with sequence checks, after an ASCII skip by `ascii` (the level's own). */
static inline bool scalar_utf8_valid_from(const uint8_t *p, size_t i, size_t n,
                                          size_t (*ascii)(const uint8_t *, size_t)) {
    while (i < n) {
        i += ascii(p + i, n - i);
        if (i == n) break;
        size_t len = scalar_utf8_sequence(p + i, n - i);
        if (len == 0) return false;
        i += len;
    }
    return true;
}

/* XORs 8 bytes per step, then the tail byte by byte; `key` applies its low byte to p[0].
   Returns whether every unmasked byte is ASCII (< 0x80): the OR of the results is at hand, and
   an ASCII text payload needs no UTF-8 pass after it (RFC 3629 §4: ASCII is UTF-8). */
static inline bool scalar_unmask(uint8_t *p, size_t n, uint32_t key) {
    size_t i = 0;
    uint64_t seen = 0;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t k64 = (uint64_t)key | ((uint64_t)key << 32);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;  /* little-endian hosts: byte j of k64 is key byte j mod 4 */
        seen |= w;
        memcpy(p + i, &w, 8);
    }
#endif
    for (uint32_t k = key; i < n; i++, k = (k >> 8) | (k << 24)) {
        p[i] ^= (uint8_t)k;
        seen |= p[i];
    }
    return (seen & 0x8080808080808080ULL) == 0;
}
#endif
