/* avx512.c — AVX-512F register tiles (x86-64 only). The packed layouts are the ISA-independent ones of
 * kiln_kernels.h: a 6×32 tile reads one 6-row A panel and two adjacent 16-column B panels. */
#include "internal.h"

#if defined(__x86_64__)

#include <immintrin.h>

#define KILN_AVX512 __attribute__((target("avx512f")))

KILN_AVX512 static void avx512_tile32(size_t kc, const float *a, const float *b0, const float *b1, float *c,
                                      size_t ldc, int accumulate) {
    __m512 c00 = _mm512_setzero_ps(), c01 = _mm512_setzero_ps();
    __m512 c10 = _mm512_setzero_ps(), c11 = _mm512_setzero_ps();
    __m512 c20 = _mm512_setzero_ps(), c21 = _mm512_setzero_ps();
    __m512 c30 = _mm512_setzero_ps(), c31 = _mm512_setzero_ps();
    __m512 c40 = _mm512_setzero_ps(), c41 = _mm512_setzero_ps();
    __m512 c50 = _mm512_setzero_ps(), c51 = _mm512_setzero_ps();
#define KILN_STEP                                                                                                     \
    do {                                                                                                              \
        __m512 x0 = _mm512_loadu_ps(b0), x1 = _mm512_loadu_ps(b1), av;                                                \
        av = _mm512_set1_ps(a[0]); c00 = _mm512_fmadd_ps(av, x0, c00); c01 = _mm512_fmadd_ps(av, x1, c01);           \
        av = _mm512_set1_ps(a[1]); c10 = _mm512_fmadd_ps(av, x0, c10); c11 = _mm512_fmadd_ps(av, x1, c11);           \
        av = _mm512_set1_ps(a[2]); c20 = _mm512_fmadd_ps(av, x0, c20); c21 = _mm512_fmadd_ps(av, x1, c21);           \
        av = _mm512_set1_ps(a[3]); c30 = _mm512_fmadd_ps(av, x0, c30); c31 = _mm512_fmadd_ps(av, x1, c31);           \
        av = _mm512_set1_ps(a[4]); c40 = _mm512_fmadd_ps(av, x0, c40); c41 = _mm512_fmadd_ps(av, x1, c41);           \
        av = _mm512_set1_ps(a[5]); c50 = _mm512_fmadd_ps(av, x0, c50); c51 = _mm512_fmadd_ps(av, x1, c51);           \
        a += KILN_MR;                                                                                                 \
        b0 += KILN_NR;                                                                                                \
        b1 += KILN_NR;                                                                                                \
    } while (0)
    for (int r = 0; r < KILN_MR; r++) { /* the C tile is read (accumulate) or written at the end */
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)r * ldc + 16), _MM_HINT_T0);
    }
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        _mm_prefetch((const char *)(b0 + 8 * KILN_NR), _MM_HINT_T0);
        _mm_prefetch((const char *)(b1 + 8 * KILN_NR), _MM_HINT_T0);
        KILN_STEP; KILN_STEP; KILN_STEP; KILN_STEP;
    }
    for (; k < kc; k++) KILN_STEP;
#undef KILN_STEP
#define KILN_STORE(r, x0, x1)                                                                                         \
    do {                                                                                                              \
        float *cr = c + (size_t)(r) * ldc;                                                                            \
        if (accumulate) {                                                                                             \
            x0 = _mm512_add_ps(x0, _mm512_loadu_ps(cr));                                                              \
            x1 = _mm512_add_ps(x1, _mm512_loadu_ps(cr + 16));                                                         \
        }                                                                                                             \
        _mm512_storeu_ps(cr, x0);                                                                                     \
        _mm512_storeu_ps(cr + 16, x1);                                                                                \
    } while (0)
    KILN_STORE(0, c00, c01); KILN_STORE(1, c10, c11); KILN_STORE(2, c20, c21);
    KILN_STORE(3, c30, c31); KILN_STORE(4, c40, c41); KILN_STORE(5, c50, c51);
#undef KILN_STORE
}

KILN_AVX512 static void avx512_tile16(size_t kc, const float *a, const float *b, float *c, size_t ldc,
                                      int accumulate) {
    /* Two accumulator sets over even/odd k hide the FMA latency with only 6 rows. */
    __m512 e0 = _mm512_setzero_ps(), e1 = _mm512_setzero_ps(), e2 = _mm512_setzero_ps();
    __m512 e3 = _mm512_setzero_ps(), e4 = _mm512_setzero_ps(), e5 = _mm512_setzero_ps();
    __m512 o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps(), o2 = _mm512_setzero_ps();
    __m512 o3 = _mm512_setzero_ps(), o4 = _mm512_setzero_ps(), o5 = _mm512_setzero_ps();
    size_t k = 0;
    for (; k + 2 <= kc; k += 2) {
        __m512 x = _mm512_loadu_ps(b), y = _mm512_loadu_ps(b + KILN_NR);
        e0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), x, e0);
        e1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), x, e1);
        e2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), x, e2);
        e3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), x, e3);
        e4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), x, e4);
        e5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), x, e5);
        o0 = _mm512_fmadd_ps(_mm512_set1_ps(a[6]), y, o0);
        o1 = _mm512_fmadd_ps(_mm512_set1_ps(a[7]), y, o1);
        o2 = _mm512_fmadd_ps(_mm512_set1_ps(a[8]), y, o2);
        o3 = _mm512_fmadd_ps(_mm512_set1_ps(a[9]), y, o3);
        o4 = _mm512_fmadd_ps(_mm512_set1_ps(a[10]), y, o4);
        o5 = _mm512_fmadd_ps(_mm512_set1_ps(a[11]), y, o5);
        a += 2 * KILN_MR;
        b += 2 * KILN_NR;
    }
    if (k < kc) {
        __m512 x = _mm512_loadu_ps(b);
        e0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0]), x, e0);
        e1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1]), x, e1);
        e2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2]), x, e2);
        e3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3]), x, e3);
        e4 = _mm512_fmadd_ps(_mm512_set1_ps(a[4]), x, e4);
        e5 = _mm512_fmadd_ps(_mm512_set1_ps(a[5]), x, e5);
    }
    __m512 r[6] = {_mm512_add_ps(e0, o0), _mm512_add_ps(e1, o1), _mm512_add_ps(e2, o2),
                   _mm512_add_ps(e3, o3), _mm512_add_ps(e4, o4), _mm512_add_ps(e5, o5)};
    for (int i = 0; i < 6; i++) {
        float *cr = c + (size_t)i * ldc;
        __m512 v = accumulate ? _mm512_add_ps(r[i], _mm512_loadu_ps(cr)) : r[i];
        _mm512_storeu_ps(cr, v);
    }
}

const kiln_kernel_table kiln_avx512_table = {
    .isa = "avx512",
    .tile16 = avx512_tile16,
    .tile32 = avx512_tile32,
    .activation = kiln_avx2_activation,
    .unary = kiln_avx2_unary,
    .binary_vv = kiln_avx2_binary_vv,
    .binary_vs = kiln_avx2_binary_vs,
    .softmax_row = kiln_avx2_softmax_row,
    .layer_norm_row = kiln_avx2_layer_norm_row,
    .dw3x3_row = kiln_avx2_dw3x3_row,
    .sum = kiln_avx2_sum,
    .epilogue = kiln_avx2_epilogue,
};

#endif /* __x86_64__ */
