/* Chooses the kernel level once, when the process loads (before main, so before any thread). */
#include "CRelaySIMD.h"
#include "levels.h"

const pyry_simd_kernels *pyry_simd_active = &pyry_simd_scalar;
static int active_level = PYRY_SIMD_SCALAR;

const pyry_simd_kernels *pyry_simd_kernels_for(int level) {
    switch (level) {
    case PYRY_SIMD_SCALAR: return &pyry_simd_scalar;
#if defined(__x86_64__)
    case PYRY_SIMD_SSE2: return &pyry_simd_sse2;  /* part of the x86-64 baseline */
    case PYRY_SIMD_AVX2:
        /* libgcc's cpuid check, which also asks the OS (XGETBV) whether it saves YMM state. */
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") ? &pyry_simd_avx2 : NULL;
#endif
    default: return NULL;
    }
}

bool pyry_simd_select(int level) {
    const pyry_simd_kernels *k = pyry_simd_kernels_for(level);
    if (k == NULL) return false;
    pyry_simd_active = k;
    active_level = level;
    return true;
}

__attribute__((constructor)) static void pyry_simd_choose(void) {
    for (int level = PYRY_SIMD_AVX2; level > PYRY_SIMD_SCALAR; level--) {
        if (pyry_simd_select(level)) return;
    }
}

int pyry_simd_level(void) { return active_level; }
