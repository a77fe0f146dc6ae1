/* dispatch.c — CPU feature detection and the choice of kernel table (made once, switchable by
 * kiln_kernels_force_generic). */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static kiln_cpu_features detect_features(void) {
    kiln_cpu_features f = {0, 0, 0, 0, 0, 0};
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2") ? 1 : 0;
    f.fma = __builtin_cpu_supports("fma") ? 1 : 0;
    f.avx512f = __builtin_cpu_supports("avx512f") ? 1 : 0;
    f.avx512vnni = f.avx512f && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni") ? 1 : 0;
#elif defined(__aarch64__)
    f.neon = 1; /* Advanced SIMD is mandatory on AArch64. */
#if defined(__linux__)
    f.dotprod = (getauxval(AT_HWCAP) & (1UL << 20)) ? 1 : 0; /* HWCAP_ASIMDDP */
#endif
#endif
    return f;
}

static kiln_cpu_features cached_features;
static atomic_int features_ready;
static atomic_int force_generic;
static _Atomic(const kiln_kernel_table *) best_table;

kiln_cpu_features kiln_cpu_detect(void) {
    if (!atomic_load_explicit(&features_ready, memory_order_acquire)) {
        /* Detection is idempotent, so a race only repeats the same work. */
        cached_features = detect_features();
        atomic_store_explicit(&features_ready, 1, memory_order_release);
    }
    return cached_features;
}

static const kiln_kernel_table *choose_best(void) {
#if defined(__x86_64__)
    kiln_cpu_features f = kiln_cpu_detect();
    if (f.avx2 && f.fma) return f.avx512f ? &kiln_avx512_table : &kiln_avx2_table;
#elif defined(__aarch64__)
    return &kiln_neon_table;
#endif
    return &kiln_generic_table;
}

const kiln_kernel_table *kiln_kernels_current(void) {
    if (atomic_load_explicit(&force_generic, memory_order_relaxed)) return &kiln_generic_table;
    const kiln_kernel_table *t = atomic_load_explicit(&best_table, memory_order_acquire);
    if (t == NULL) {
        t = choose_best();
        atomic_store_explicit(&best_table, t, memory_order_release);
    }
    return t;
}

int kiln_kernels_generic_forced(void) { return atomic_load_explicit(&force_generic, memory_order_relaxed); }

int kiln_kernels_force_generic(int force) {
    return atomic_exchange(&force_generic, force ? 1 : 0);
}

kiln_family kiln_family_of(const kiln_kernel_table *kt) {
#if defined(__x86_64__)
    if (kt == &kiln_avx512_table) return KILN_FAMILY_AVX512;
    if (kt == &kiln_avx2_table) return KILN_FAMILY_AVX2;
#endif
    (void)kt;
    return KILN_FAMILY_PORTABLE;
}

const char *kiln_kernels_isa(void) {
    return kiln_kernels_current()->isa;
}

/* ---- Per-thread scratch ---- */

static _Thread_local float *scratch_ptr[3];
static _Thread_local size_t scratch_cap[3];

float *kiln_scratch(int slot, size_t floats) {
    if (floats == 0) floats = 16;
    if (scratch_cap[slot] < floats) {
        free(scratch_ptr[slot]);
        size_t bytes = (floats * sizeof(float) + 63) & ~(size_t)63;
        scratch_ptr[slot] = aligned_alloc(64, bytes);
        scratch_cap[slot] = scratch_ptr[slot] ? floats : 0;
    }
    return scratch_ptr[slot];
}

int kiln_kernels_select_isa(const char *isa) {
    const kiln_kernel_table *t = NULL;
    if (isa == NULL || strcmp(isa, "host") == 0) {
        t = choose_best();
    } else if (strcmp(isa, "generic") == 0) {
        t = &kiln_generic_table;
    }
#if defined(__x86_64__)
    else {
        kiln_cpu_features f = kiln_cpu_detect();
        if (strcmp(isa, "avx2") == 0 && f.avx2 && f.fma) t = &kiln_avx2_table;
        else if (strcmp(isa, "avx512") == 0 && f.avx512f && f.avx2 && f.fma) t = &kiln_avx512_table;
    }
#elif defined(__aarch64__)
    else if (strcmp(isa, "neon") == 0) {
        t = &kiln_neon_table;
    }
#endif
    if (t == NULL) return -1;
    atomic_store_explicit(&best_table, t, memory_order_release);
    return 0;
}
