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

/* The last 1 or 2 rows of an M that is not a multiple of 6 (M = 38 ends in 2), which the full tile computed at
 * the cost of 6: rows R of the 6-row panel, two accumulator sets over even and odd k to cover the FMA latency.
 * (Measured: 30% faster for 1-2 rows; a 3-row version was slower than the full tile.) */
#define KILN_TILE32_ROWS(R)                                                                                           \
    KILN_AVX512 static void avx512_tile32_rows##R(size_t kc, const float *a, const float *b0, const float *b1,        \
                                                  float *c, size_t ldc, int accumulate) {                             \
        __m512 e[2 * R], o[2 * R];                                                                                   \
        for (int i = 0; i < 2 * R; i++) e[i] = o[i] = _mm512_setzero_ps();                                           \
        size_t k = 0;                                                                                                 \
        for (; k + 2 <= kc; k += 2) {                                                                                 \
            __m512 x0 = _mm512_loadu_ps(b0), x1 = _mm512_loadu_ps(b1);                                               \
            __m512 y0 = _mm512_loadu_ps(b0 + KILN_NR), y1 = _mm512_loadu_ps(b1 + KILN_NR);                           \
            for (int r = 0; r < R; r++) {                                                                             \
                __m512 av = _mm512_set1_ps(a[r]), aw = _mm512_set1_ps(a[KILN_MR + r]);                               \
                e[2 * r] = _mm512_fmadd_ps(av, x0, e[2 * r]);                                                        \
                e[2 * r + 1] = _mm512_fmadd_ps(av, x1, e[2 * r + 1]);                                                \
                o[2 * r] = _mm512_fmadd_ps(aw, y0, o[2 * r]);                                                        \
                o[2 * r + 1] = _mm512_fmadd_ps(aw, y1, o[2 * r + 1]);                                                \
            }                                                                                                         \
            a += 2 * KILN_MR;                                                                                         \
            b0 += 2 * KILN_NR;                                                                                        \
            b1 += 2 * KILN_NR;                                                                                        \
        }                                                                                                             \
        if (k < kc) {                                                                                                 \
            __m512 x0 = _mm512_loadu_ps(b0), x1 = _mm512_loadu_ps(b1);                                               \
            for (int r = 0; r < R; r++) {                                                                             \
                __m512 av = _mm512_set1_ps(a[r]);                                                                    \
                e[2 * r] = _mm512_fmadd_ps(av, x0, e[2 * r]);                                                        \
                e[2 * r + 1] = _mm512_fmadd_ps(av, x1, e[2 * r + 1]);                                                \
            }                                                                                                         \
        }                                                                                                             \
        for (int r = 0; r < R; r++) {                                                                                 \
            float *cr = c + (size_t)r * ldc;                                                                          \
            __m512 lo = _mm512_add_ps(e[2 * r], o[2 * r]), hi = _mm512_add_ps(e[2 * r + 1], o[2 * r + 1]);           \
            if (accumulate) {                                                                                         \
                lo = _mm512_add_ps(lo, _mm512_loadu_ps(cr));                                                          \
                hi = _mm512_add_ps(hi, _mm512_loadu_ps(cr + 16));                                                     \
            }                                                                                                         \
            _mm512_storeu_ps(cr, lo);                                                                                 \
            _mm512_storeu_ps(cr + 16, hi);                                                                            \
        }                                                                                                             \
    }
KILN_TILE32_ROWS(1)
KILN_TILE32_ROWS(2)
#undef KILN_TILE32_ROWS

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

/* exp(x) in 16 lanes, as exp8 of avx2.c: results below the smallest normal float are 0 (no denormals). */
KILN_AVX512 static inline __m512 exp16(__m512 x) {
    __mmask16 underflow = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm512_min_ps(_mm512_set1_ps(88.7228f), _mm512_max_ps(_mm512_set1_ps(-87.0f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    /* n >= -126 here, so 2^n is a normal float: scale in one step. */
    __m512 e = _mm512_scalef_ps(p, n);
    return _mm512_maskz_mov_ps((__mmask16)~underflow, e);
}

/* erf(x) in 16 lanes with the two fits of erf8 in avx2.c (|x| <= 1: odd polynomial; else 1 - e^{-x²}·q(1/|x|)). */
KILN_AVX512 static inline __m512 erf16(__m512 x) {
    const __m512 signbit = _mm512_set1_ps(-0.0f);
    __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_castps_si512(signbit)));
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_castps_si512(signbit), _mm512_castps_si512(x)));
    __m512 s = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(-5.524186834e-04f);
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(4.889713673e-03f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-2.668557420e-02f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.127917734e-01f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(-3.761217928e-01f));
    p = _mm512_fmadd_ps(p, s, _mm512_set1_ps(1.128379077e+00f));
    __m512 small = _mm512_mul_ps(x, p);
    __m512 cx = _mm512_min_ps(_mm512_set1_ps(4.0f), ax);
    __m512 u = _mm512_div_ps(_mm512_set1_ps(1.0f), cx);
    __m512 q = _mm512_set1_ps(-1.720697793e-02f);
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(1.181322088e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-3.500338715e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(5.721026563e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(-5.040303739e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(5.044728424e-02f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(5.578285453e-01f));
    q = _mm512_fmadd_ps(q, u, _mm512_set1_ps(3.441504796e-04f));
    __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(cx, cx)));
    __m512 large = _mm512_castsi512_ps(_mm512_or_si512(
        _mm512_castps_si512(_mm512_fnmadd_ps(e, q, _mm512_set1_ps(1.0f))), _mm512_castps_si512(sign)));
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(1.0f), _CMP_LE_OQ), large, small);
}

/* Sigmoid (silu = 0: 1 / (1 + e^-x)) or SiLU (silu = 1: x · sigmoid(x)) in 16 lanes, as sigmoid8 of avx2.c. */
KILN_AVX512 static inline __m512 sigmoid_or_silu16(__m512 v, int silu) {
    const __m512 one = _mm512_set1_ps(1.0f);
    __m512 s = _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), v))));
    return silu ? _mm512_mul_ps(v, s) : s;
}

/* GELU (erf form), the costliest activation of a transformer's feed-forward layer, and sigmoid/SiLU (the
 * swish of EfficientNet- and YOLO-style convolutions' epilogues) in 16 lanes; every other activation is the
 * AVX2 one. */
KILN_AVX512 static void avx512_activation(kiln_activation act, float alpha, float beta, size_t n, const float *x,
                                          float *y) {
    if (act == KILN_ACT_SIGMOID || act == KILN_ACT_SILU) {
        const int silu = act == KILN_ACT_SILU;
        size_t i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, sigmoid_or_silu16(_mm512_loadu_ps(x + i), silu));
        if (i < n) {
            __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
            _mm512_mask_storeu_ps(y + i, m, sigmoid_or_silu16(_mm512_maskz_loadu_ps(m, x + i), silu));
        }
        return;
    }
    if (act != KILN_ACT_GELU_ERF) {
        kiln_avx2_activation(act, alpha, beta, n, x, y);
        return;
    }
    const __m512 half = _mm512_set1_ps(0.5f), one = _mm512_set1_ps(1.0f), rsqrt2 = _mm512_set1_ps(0.70710678118654752f);
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 v = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf16(_mm512_mul_ps(v, rsqrt2)))));
    }
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(m, x + i);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, erf16(_mm512_mul_ps(v, rsqrt2)))));
    }
}

/* The AVX2 fused epilogue, except for GELU: bias and residual passes, then the 16-lane GELU. */
static void avx512_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                            size_t cols, size_t row0, size_t col0) {
    if (ep->activation == KILN_ACT_GELU_ERF) kiln_generic_epilogue(kt, ep, c, ldc, rows, cols, row0, col0);
    else kiln_avx2_epilogue(kt, ep, c, ldc, rows, cols, row0, col0);
}

const kiln_kernel_table kiln_avx512_table = {
    .isa = "avx512",
    .tile16 = avx512_tile16,
    .tile32 = avx512_tile32,
    .tile32_rows = {avx512_tile32_rows1, avx512_tile32_rows2},
    .activation = avx512_activation,
    .unary = kiln_avx2_unary,
    .binary_vv = kiln_avx2_binary_vv,
    .binary_vs = kiln_avx2_binary_vs,
    .softmax_row = kiln_avx2_softmax_row,
    .layer_norm_row = kiln_avx2_layer_norm_row,
    .dw3x3_row = kiln_avx2_dw3x3_row,
    .sum = kiln_avx2_sum,
    .epilogue = avx512_epilogue,
};

#endif /* __x86_64__ */
