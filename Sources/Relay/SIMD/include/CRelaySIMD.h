#ifndef PYRY_CRELAYSIMD_H
#define PYRY_CRELAYSIMD_H
/* Per-byte kernels of the data path: WebSocket unmasking (RFC 6455 §5.3), UTF-8 validation
   (RFC 3629 §4), the JSON string scan (RFC 8259 §7), the one-pass validator of small JSON
   messages and the copy into an output buffer.
   Each comes in three levels: portable scalar C, SSE2 (the x86-64 baseline) and AVX2; the best
   one the CPU offers is chosen once, when the process loads (a constructor reads cpuid), and
   the `pyry_*` entry points below call it. The Swift code these replace stays in the Relay
   module as the reference the fuzzers and tests compare every level against. No allocation. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* One implementation level: the entry points below call the chosen level's functions. */
typedef struct {
    const char *name;
    size_t (*ascii_span)(const uint8_t *p, size_t n);
    size_t (*json_plain_span)(const uint8_t *p, size_t n);
    bool (*utf8_valid)(const uint8_t *p, size_t n);
    bool (*unmask)(uint8_t *p, size_t n, uint32_t key);
    void (*copy_large)(void *dst, const void *src, size_t n);  /* n >= PYRY_COPY_VECTOR_MIN */
    bool (*json_valid_small)(const uint8_t *p, size_t n, size_t max_depth, bool utf8_validated);
    size_t json_small_max;  /* the size up to which json_valid_small is used, see pyry_json_small_max */
} pyry_simd_kernels;

/* The level chosen at load time (set once by a constructor in dispatch.c, read-only after). */
extern const pyry_simd_kernels *pyry_simd_active;

/* Length of the ASCII prefix (bytes < 0x80) of p[0..n). */
static inline size_t pyry_ascii_span(const uint8_t *p, size_t n) { return pyry_simd_active->ascii_span(p, n); }

/* Length of the prefix of p[0..n) free of bytes that end or complicate a JSON string run:
   '"', '\\', control characters (< 0x20) and non-ASCII (>= 0x80). RFC 8259 §7. */
static inline size_t pyry_json_plain_span(const uint8_t *p, size_t n) {
    return pyry_simd_active->json_plain_span(p, n);
}

/* The largest input `pyry_json_valid_small` takes (its buffers live on the stack: 2.6 KiB). */
#define PYRY_JSON_SMALL_MAX 2048

/* Up to this size a JSON message is validated by `pyry_json_valid_small`, larger ones by the
   Swift scanner: where the one pass stops beating the scanner at the active level. The pass
   pays for its copy and mask up front (AVX2 ~0.36 Ir per byte of strings that end often, ~0.25
   in long plain runs, where the scanner's string kernel costs ~0.2) and saves the scanner's
   fixed costs per token and per string. Measured with scripts/callgrind-bytes.sh on a message
   of one long string (the worst case; many short strings gain at every size), the pass still
   wins at 2 KiB with AVX2 (2,217 against 2,361 Ir per message; the limit: 2 KiB,
   PYRY_JSON_SMALL_MAX), breaks even near 1 KiB with SSE2 and 150 bytes for the portable level
   (SWAR, 8 bytes a step; the limit rounded down to 128). */
#define PYRY_JSON_SMALL_MAX_SSE2 1024
#define PYRY_JSON_SMALL_MAX_SCALAR 128
static inline size_t pyry_json_small_max(void) { return pyry_simd_active->json_small_max; }

/* True when p[0..n) (n <= PYRY_JSON_SMALL_MAX) is exactly one JSON value with optional
   whitespace around it (RFC 8259 §2), nested at most `max_depth` arrays/objects deep; string
   bytes >= 0x80 must be well-formed UTF-8 unless `utf8_validated` says the caller checked it.
   Accepts and rejects exactly what the Swift scanner (`JSONScanner`) does, the reference it is
   fuzzed against. One vector pass first marks every byte that ends a plain string run
   ('"', '\\', < 0x20, >= 0x80), so strings are skipped a mask bit at a time, with no call per
   token. */
static inline bool pyry_json_valid_small(const uint8_t *p, size_t n, size_t max_depth, bool utf8_validated) {
    return pyry_simd_active->json_valid_small(p, n, max_depth, utf8_validated);
}

/* True when p[0..n) is complete, well-formed UTF-8 (RFC 3629 §4: no overlongs, no surrogates,
   nothing above U+10FFFF, no sequence cut at the end). */
static inline bool pyry_utf8_valid(const uint8_t *p, size_t n) { return pyry_simd_active->utf8_valid(p, n); }

/* XORs p[0..n) in place with the 4-byte mask `key`, loaded little-endian so that its low byte
   applies to p[0] (RFC 6455 §5.3: the caller rotates it for a payload offset). Returns whether
   every unmasked byte is ASCII (< 0x80), gathered in the same pass: a text payload that is
   needs no UTF-8 validation (RFC 3629 §4). */
static inline bool pyry_unmask(uint8_t *p, size_t n, uint32_t key) { return pyry_simd_active->unmask(p, n, key); }

/* From this size on the copy is the kernel's vector loop: glibc moves large buffers with
   `rep movsb`, which callgrind (the regression gate) counts as one instruction per byte. */
#define PYRY_COPY_VECTOR_MIN 256

/* memcpy for non-overlapping buffers: small ones inline (no call), large ones by the kernel. */
static inline void pyry_copy(void *dst, const void *src, size_t n) {
    if (n < PYRY_COPY_VECTOR_MIN) {
        memcpy(dst, src, n);
    } else {
        pyry_simd_active->copy_large(dst, src, n);
    }
}

enum { PYRY_SIMD_SCALAR = 0, PYRY_SIMD_SSE2 = 1, PYRY_SIMD_AVX2 = 2 };

/* The kernels of `level`, or NULL when this CPU (or this build's architecture) lacks it. Tests
   and fuzzers use it to run every level the machine has against the reference. */
const pyry_simd_kernels *pyry_simd_kernels_for(int level);

/* The level in use. */
int pyry_simd_level(void);

/* Switches to `level` when this CPU has it (false otherwise). Only for the bench tool, to
   measure a lower level (`relay-bench callgrind-driver --simd`): call it before any traffic,
   while the process has one thread. */
bool pyry_simd_select(int level);

#endif
