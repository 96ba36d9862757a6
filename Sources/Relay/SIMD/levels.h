/* The kernel tables of each level (kernels_*.c) for the dispatcher (dispatch.c). */
#ifndef PYRY_SIMD_LEVELS_H
#define PYRY_SIMD_LEVELS_H
#include "CRelaySIMD.h"

extern const pyry_simd_kernels pyry_simd_scalar;
#if defined(__x86_64__)
extern const pyry_simd_kernels pyry_simd_sse2;
extern const pyry_simd_kernels pyry_simd_avx2;
#endif
#endif
