/* The grammar walk of `pyry_json_valid_small` (RFC 8259), shared by every level: each level
   builds the mask of string-run ends its own way and hands it to `json_small_walk`. The rules
   are those of the Swift scanner (JSONScanner.swift), the reference: same whitespace set, same
   depth rule, `\u` escapes of any code unit, raw bytes >= 0x80 in strings as well-formed UTF-8
   (RFC 3629 §4) unless the caller validated them.

   The walk reads either a padded copy of the input (zeros after it stop every read) or, for an
   input that ends in a closing bracket, the input itself (see json_small_in_place): no copy, so
   the only pass over a long plain run is the one that builds its (empty) mask words. */
#ifndef PYRY_JSON_SMALL_H
#define PYRY_JSON_SMALL_H
#include "CRelaySIMD.h"
#include "scalar.h"

/* Mask words: one bit per input byte, plus the word holding bit n and the one after it (see
   json_small_seal). */
#define JSON_SMALL_WORDS (PYRY_JSON_SMALL_MAX / 64 + 2)
/* The walk reads a copy of the input followed by at least 16 zero bytes (room for 64, aligned
   for 32-byte stores): a zero is valid nowhere a token is expected, so no read needs a bounds
   check. */
#define JSON_SMALL_COPY (PYRY_JSON_SMALL_MAX + 64)

/* Sets every bit from n to the end of its word: a search for the next set bit from any i <= n
   stops at n at the latest, so a string cut by the end of the input ends there. The word after
   it is set too, so the search may read words in pairs (json_small_next). */
static inline void json_small_seal(uint64_t *special, size_t n) {
    special[n >> 6] |= ~0ULL << (n & 63);
    special[(n >> 6) + 1] = ~0ULL;
}

/* From this size on an input that ends in '}' or ']' is walked where it lies, without a copy
   (below it the copy is a few vector stores, and the usual phone message keeps its path). */
#define JSON_SMALL_IN_PLACE_MIN 256

/* Whether the walk may read p[0..n) itself instead of a padded copy (no zeros after the input
   to stop it). Each read of the walk past a position follows from the byte there being other
   than a closing bracket: a literal, number, escape or UTF-8 sequence goes on, a ',', ':' or
   opening bracket needs what comes next. When the last byte is '}' or ']' that leaves two ways
   past it, both closed in place: the string search, which stops at the next mask bit (p[n-1]
   is flagged, where a string still open is invalid: json_small_seal_in_place,
   json_small_string), and what follows a closer that is p[n-1] itself (json_small_walk stops
   there). Literals are compared byte by byte, each read after a byte that matched, never by a
   wider load. */
static inline bool json_small_in_place(const uint8_t *p, size_t n) {
    return n >= JSON_SMALL_IN_PLACE_MIN && (p[n - 1] == '}' || p[n - 1] == ']');
}

/* json_small_seal for the in-place walk: p[n-1] (a closing bracket, no string-run end by
   itself) is flagged too, so a search inside a string stops there, never at n. */
static inline void json_small_seal_in_place(uint64_t *special, size_t n) {
    json_small_seal(special, n);
    special[(n - 1) >> 6] |= 1ULL << ((n - 1) & 63);
}

/* The portable level's copy and mask: 8 bytes per step in a word (SWAR), whose flags may
   include plain bytes above a true hit (see BYTES_BELOW); the walk looks at every byte it stops
   at, so an extra bit costs a step, never a verdict. Returns whether a byte <= 0x20 (a candidate
   for whitespace) may be among the input's. */
static inline bool scalar_json_small_prepare(const uint8_t *p, size_t n, uint8_t *copy, uint64_t *special) {
    if (n > 0) memcpy(copy, p, n);
    memset(copy + n, 0, 16);
    for (size_t w = 0; w <= n >> 6; w++) special[w] = 0;
    bool blanks = false;
    size_t i = 0;
#if PYRY_SWAR
    for (; n - i >= 8; i += 8) {
        uint64_t w = load64(p + i);
        uint64_t hits = swar_json_special(w);
        /* The high bit of byte k to bit k: each (k, j) product lands on its own bit, so no carries. */
        special[i >> 6] |= (((hits >> 7) * 0x0102040810204080ULL) >> 56) << (i & 63);
        blanks |= BYTES_BELOW(w, 0x21) != 0;
    }
#endif
    for (; i < n; i++) {
        special[i >> 6] |= (uint64_t)json_special_byte(p[i]) << (i & 63);
        blanks |= p[i] <= ' ';
    }
    json_small_seal(special, n);
    return blanks;
}

/* Position of the first set bit at or after i (i <= n, the mask sealed at n). */
static inline size_t json_small_next(const uint64_t *special, size_t i) {
    size_t w = i >> 6;
    uint64_t m = special[w] >> (i & 63);
    /* Most strings end in the word they start in. */
    if (__builtin_expect(m != 0, 1)) return i + (size_t)__builtin_ctzll(m);
    /* A long run: two words per step (the seal makes the pair after the word holding bit n
       readable and nonzero). */
    do w += 2; while ((special[w - 1] | special[w]) == 0);
    if (special[w - 1] != 0) w--;
    return (w << 6) + (size_t)__builtin_ctzll(special[w]);
}

static inline bool json_small_hex(uint8_t c) {
    return (uint8_t)(c - '0') < 10 || (uint8_t)((c | 0x20) - 'a') < 6;
}

/* The string whose content starts at b[i] (after the opening quote): the position after its
   closing quote, or 0 when it is invalid (RFC 8259 §7: escapes, no raw control characters).
   `in_place`: b is the input itself, whose last byte is flagged (json_small_seal_in_place). */
__attribute__((always_inline)) static inline size_t json_small_string(const uint8_t *b, size_t n, const uint64_t *special,
                                                                     size_t i, bool utf8_validated, bool in_place) {
    for (;;) {
        i = json_small_next(special, i);
        uint8_t c = b[i];  /* at n: the zero after the input, a control character */
        if (c == '"') return i + 1;
        if (c == '\\') {
            /* \" \\ \/ \b \f \n \r \t, or \u and 4 hex digits (any code unit, lone surrogates too);
               the zero padding fails every test, so no length check */
            uint8_t e = b[i + 1];
            if (e == 'u') {
                if (!json_small_hex(b[i + 2]) || !json_small_hex(b[i + 3]) || !json_small_hex(b[i + 4])
                    || !json_small_hex(b[i + 5]))
                    return 0;
                i += 6;
            } else if (e == '"' || e == '\\' || e == '/' || e == 'b' || e == 'f' || e == 'n' || e == 'r' || e == 't') {
                i += 2;
            } else {
                return 0;
            }
        } else if (c < 0x20) {
            return 0;
        } else if (c < 0x80 || utf8_validated) {
            /* The input's last byte, flagged for the in-place walk: the string is still open
               at the end of the input. */
            if (in_place && i == n - 1) return 0;
            i++;  /* a plain byte the mask flagged, or text the caller validated */
        } else {
            size_t len = scalar_utf8_sequence(b + i, n - i);
            if (len == 0) return 0;
            i += len;
        }
    }
}

/* RFC 8259 §2: space, tab, LF, CR. */
#define JSON_WS_BITS ((1ULL << ' ') | (1ULL << '\t') | (1ULL << '\n') | (1ULL << '\r'))

/* Validates the n input bytes in `b` (JSON_SMALL_COPY bytes: the input, then zeros) with
   `special` built for them (see CRelaySIMD.h, pyry_json_valid_small). `blanks` false says no
   input byte is <= 0x20, so there is no whitespace to skip: called with a constant, the compact
   JSON most senders write gets a walk without those checks. `in_place` (a constant too): `b` is
   the input itself, ending in '}' or ']' (json_small_in_place), with the mask sealed by
   json_small_seal_in_place. */
__attribute__((always_inline)) static inline bool json_small_walk(const uint8_t *b, size_t n, const uint64_t *special,
                                                                 size_t max_depth, bool utf8_validated, bool blanks,
                                                                 bool in_place) {
    size_t i = 0, depth = 0;
    /* One bit per open container, 1 = object; each costs a byte of input, so n bits suffice.
       The innermost one's kind is also in `in_object`. */
    uint64_t stack[PYRY_JSON_SMALL_MAX / 64];
    bool in_object = false;
    uint8_t c;
#define SKIP_WS \
    if (blanks) while (b[i] <= ' ' && ((JSON_WS_BITS >> b[i]) & 1)) i++
#define DIGITS while ((uint8_t)(b[i] - '0') < 10) i++
    SKIP_WS;

value:
    c = b[i];
    /* An object and an array each get their own code: one shared path would have to test the
       kind again, and the compiler turns such joins into a dispatch on a state variable. */
    if (c == '{') {
        if (depth == max_depth) return false;
        stack[depth >> 6] |= 1ULL << (depth & 63);
        in_object = true;
        depth++;
        i++;
        SKIP_WS;
        if (b[i] == '}') {
            i++;
            goto close;
        }
        goto member;
    }
    if (c == '[') {
        if (depth == max_depth) return false;
        stack[depth >> 6] &= ~(1ULL << (depth & 63));
        in_object = false;
        depth++;
        i++;
        SKIP_WS;
        if (b[i] == ']') {
            i++;
            goto close;
        }
        goto value;
    }
    if (c == '"') {
        i = json_small_string(b, n, special, i + 1, utf8_validated, in_place);
        if (i == 0) return false;
        goto after_value;
    }
    if (c == '-' || (uint8_t)(c - '0') < 10) {
        /* RFC 8259 §6: [ minus ] int [ frac ] [ exp ], int without leading zeros. */
        if (c == '-') c = b[++i];
        if (c == '0') {
            i++;
        } else if ((uint8_t)(c - '1') < 9) {
            DIGITS;
        } else {
            return false;
        }
        if (b[i] == '.') {
            size_t start = ++i;
            DIGITS;
            if (i == start) return false;
        }
        if ((b[i] | 0x20) == 'e') {
            i++;
            if (b[i] == '+' || b[i] == '-') i++;
            size_t start = i;
            DIGITS;
            if (i == start) return false;
        }
        goto after_value;
    }
    /* true, false, null: the padding makes 8 bytes readable, compared under a mask; in place,
       byte by byte (each read needs the byte before to match, so none passes the closer). */
    if (in_place) {
        if (c == 't' && b[i + 1] == 'r' && b[i + 2] == 'u' && b[i + 3] == 'e') {
            i += 4;
        } else if (c == 'n' && b[i + 1] == 'u' && b[i + 2] == 'l' && b[i + 3] == 'l') {
            i += 4;
        } else if (c == 'f' && b[i + 1] == 'a' && b[i + 2] == 'l' && b[i + 3] == 's' && b[i + 4] == 'e') {
            i += 5;
        } else {
            return false;
        }
    } else {
        uint64_t word;
        memcpy(&word, b + i, 8);
        if (c == 't' && (word & 0xFFFFFFFF) == (uint64_t)('t' | 'r' << 8 | 'u' << 16 | (uint32_t)'e' << 24)) {
            i += 4;
        } else if (c == 'n' && (word & 0xFFFFFFFF) == (uint64_t)('n' | 'u' << 8 | 'l' << 16 | (uint32_t)'l' << 24)) {
            i += 4;
        } else if (c == 'f' && memcmp(b + i, "false", 5) == 0) {
            i += 5;
        } else {
            return false;
        }
    }

after_value:
    SKIP_WS;
    if (depth == 0) return i == n;
    if (in_object) {
        c = b[i];
        if (c == ',') {
            i++;
            SKIP_WS;
            goto member;
        }
        if (c != '}') return false;
    } else {
        c = b[i];
        if (c == ',') {
            i++;
            SKIP_WS;
            goto value;
        }
        if (c != ']') return false;
    }
    i++;
close:
    depth--;
    /* In place, a closer may be the input's last byte: nothing after it is read (valid only
       when it closed the outermost value). */
    if (in_place && i == n) return depth == 0;
    in_object = depth > 0 && ((stack[(depth - 1) >> 6] >> ((depth - 1) & 63)) & 1);
    goto after_value;

member:
    /* "name" ws : ws, then the value. */
    if (b[i] != '"') return false;
    i = json_small_string(b, n, special, i + 1, utf8_validated, in_place);
    if (i == 0) return false;
    SKIP_WS;
    if (b[i] != ':') return false;
    i++;
    SKIP_WS;
    goto value;
#undef SKIP_WS
#undef DIGITS
}

/* The walk for `blanks` and `in_place` as constants (see json_small_walk). */
#define JSON_SMALL_WALK(b, n, special, max_depth, utf8_validated, blanks)                   \
    ((blanks) ? json_small_walk(b, n, special, max_depth, utf8_validated, true, false)      \
              : json_small_walk(b, n, special, max_depth, utf8_validated, false, false))
#define JSON_SMALL_WALK_IN_PLACE(p, n, special, max_depth, utf8_validated, blanks)          \
    ((blanks) ? json_small_walk(p, n, special, max_depth, utf8_validated, true, true)       \
              : json_small_walk(p, n, special, max_depth, utf8_validated, false, true))
#endif
