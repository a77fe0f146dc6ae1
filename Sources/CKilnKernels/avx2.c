/* avx2.c — AVX2+FMA kernels (x86-64 only; compiled per function with target attributes and chosen at run
 * time, so the package needs no global ISA flags). */
#include "internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define KILN_AVX2 __attribute__((target("avx2,fma")))

/* ---- Register tile: 6 rows × 16 columns, 12 accumulators ---- */

KILN_AVX2 static void avx2_tile16(size_t kc, const float *a, const float *b, float *c, size_t ldc, int accumulate) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
#define KILN_STEP                                                                                                     \
    do {                                                                                                              \
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), av;                                              \
        av = _mm256_broadcast_ss(a + 0); c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01);     \
        av = _mm256_broadcast_ss(a + 1); c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11);     \
        av = _mm256_broadcast_ss(a + 2); c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21);     \
        av = _mm256_broadcast_ss(a + 3); c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31);     \
        av = _mm256_broadcast_ss(a + 4); c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41);     \
        av = _mm256_broadcast_ss(a + 5); c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51);     \
        a += KILN_MR;                                                                                                 \
        b += KILN_NR;                                                                                                 \
    } while (0)
    for (int r = 0; r < KILN_MR; r++) { /* the C tile is read (accumulate) or written at the end */
        _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + (size_t)r * ldc + 15), _MM_HINT_T0);
    }
    size_t k = 0;
    for (; k + 4 <= kc; k += 4) {
        _mm_prefetch((const char *)(b + 8 * KILN_NR), _MM_HINT_T0);
        KILN_STEP; KILN_STEP; KILN_STEP; KILN_STEP;
    }
    for (; k < kc; k++) KILN_STEP;
#undef KILN_STEP
#define KILN_STORE(r, x0, x1)                                                                                         \
    do {                                                                                                              \
        float *cr = c + (size_t)(r) * ldc;                                                                            \
        if (accumulate) {                                                                                             \
            x0 = _mm256_add_ps(x0, _mm256_loadu_ps(cr));                                                              \
            x1 = _mm256_add_ps(x1, _mm256_loadu_ps(cr + 8));                                                          \
        }                                                                                                             \
        _mm256_storeu_ps(cr, x0);                                                                                     \
        _mm256_storeu_ps(cr + 8, x1);                                                                                 \
    } while (0)
    KILN_STORE(0, c00, c01); KILN_STORE(1, c10, c11); KILN_STORE(2, c20, c21);
    KILN_STORE(3, c30, c31); KILN_STORE(4, c40, c41); KILN_STORE(5, c50, c51);
#undef KILN_STORE
}

/* ---- Vector math (float, 8 lanes) ---- */

KILN_AVX2 static inline __m256i tail_mask(size_t remaining) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)remaining), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* e^x: x = n·ln2 + r, |r| <= ln2/2, e^r by its degree-7 Taylor polynomial; 2^n applied as two halves so
 * results stay finite up to ln(FLT_MAX) and underflow gradually. NaN propagates. */
/* exp(x) lane by lane. Results below the smallest normal float are returned as 0: producing a denormal
 * costs a microcode assist of ~100+ cycles on x86, and masked attention scores (x ≈ -1e4) hit it on a
 * quarter of a softmax's elements. */
KILN_AVX2 static inline __m256 exp8(__m256 x) {
    __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm256_min_ps(_mm256_set1_ps(88.7228f), _mm256_max_ps(_mm256_set1_ps(-87.0f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1);
    __m256i n2 = _mm256_sub_epi32(ni, n1);
    __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, _mm256_set1_epi32(127)), 23));
    __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, _mm256_set1_epi32(127)), 23));
    return _mm256_andnot_ps(underflow, _mm256_mul_ps(_mm256_mul_ps(p, s1), s2));
}

KILN_AVX2 static inline __m256 sigmoid8(__m256 x) {
    __m256 one = _mm256_set1_ps(1.0f);
    return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

/* tanh: x·P(x²) for |x| < 0.625 (fitted, ~1e-7 relative), else (1 - e)/(1 + e) with e = e^(-2|x|). */
KILN_AVX2 static inline __m256 tanh8(__m256 x) {
    __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 s = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.544928129e-03f);
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(2.047502069e-02f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-5.367951105e-02f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.333050146e-01f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-3.333322518e-01f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.0f));
    __m256 small = _mm256_mul_ps(x, p);
    __m256 e = exp8(_mm256_mul_ps(ax, _mm256_set1_ps(-2.0f)));
    __m256 one = _mm256_set1_ps(1.0f);
    __m256 large = _mm256_or_ps(_mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e)), sign);
    return _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
}

/* erf: x·P(x²) for |x| <= 1; 1 - e^(-x²)·Q(1/|x|) for 1 < |x| (Q fits erfc(x)·e^(x²) on [1, 4]; |x| is
 * clamped to 4, where erf rounds to 1). Coefficients fitted for this file; <= ~2e-7 relative error. */
KILN_AVX2 static inline __m256 erf8(__m256 x) {
    __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    __m256 ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    __m256 s = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(-5.524186834e-04f);
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(4.889713673e-03f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-2.668557420e-02f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.127917734e-01f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(-3.761217928e-01f));
    p = _mm256_fmadd_ps(p, s, _mm256_set1_ps(1.128379077e+00f));
    __m256 small = _mm256_mul_ps(x, p);
    __m256 cx = _mm256_min_ps(_mm256_set1_ps(4.0f), ax);
    __m256 u = _mm256_div_ps(_mm256_set1_ps(1.0f), cx);
    __m256 q = _mm256_set1_ps(-1.720697793e-02f);
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(1.181322088e-01f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-3.500338715e-01f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(5.721026563e-01f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(-5.040303739e-01f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(5.044728424e-02f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(5.578285453e-01f));
    q = _mm256_fmadd_ps(q, u, _mm256_set1_ps(3.441504796e-04f));
    __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(cx, cx)));
    __m256 large = _mm256_or_ps(_mm256_fnmadd_ps(e, q, _mm256_set1_ps(1.0f)), sign);
    return _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(1.0f), _CMP_LE_OQ));
}

#define KILN_MAP8(N, X, Y, EXPR)                                                                                      \
    do {                                                                                                              \
        size_t i_ = 0;                                                                                                \
        for (; i_ + 8 <= (N); i_ += 8) {                                                                              \
            __m256 v = _mm256_loadu_ps((X) + i_);                                                                     \
            _mm256_storeu_ps((Y) + i_, (EXPR));                                                                       \
        }                                                                                                             \
        if (i_ < (N)) {                                                                                               \
            __m256i m_ = tail_mask((N) - i_);                                                                         \
            __m256 v = _mm256_maskload_ps((X) + i_, m_);                                                              \
            _mm256_maskstore_ps((Y) + i_, m_, (EXPR));                                                                \
        }                                                                                                             \
    } while (0)

KILN_AVX2 void kiln_avx2_activation(kiln_activation act, float alpha, float beta, size_t n, const float *x, float *y) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 va = _mm256_set1_ps(alpha), vb = _mm256_set1_ps(beta);
    switch (act) {
    case KILN_ACT_NONE:
        if (x != y) memmove(y, x, n * sizeof(float));
        return;
    case KILN_ACT_RELU: KILN_MAP8(n, x, y, _mm256_max_ps(zero, v)); return;
    case KILN_ACT_CLIP: KILN_MAP8(n, x, y, _mm256_min_ps(_mm256_max_ps(v, va), vb)); return;
    case KILN_ACT_SIGMOID: KILN_MAP8(n, x, y, sigmoid8(v)); return;
    case KILN_ACT_SILU: KILN_MAP8(n, x, y, _mm256_mul_ps(v, sigmoid8(v))); return;
    case KILN_ACT_HARDSIGMOID:
        KILN_MAP8(n, x, y, _mm256_max_ps(zero, _mm256_min_ps(one, _mm256_fmadd_ps(va, v, vb))));
        return;
    case KILN_ACT_HARDSWISH:
        KILN_MAP8(n, x, y,
                  _mm256_mul_ps(v, _mm256_max_ps(zero, _mm256_min_ps(one, _mm256_fmadd_ps(v, _mm256_set1_ps(1.0f / 6.0f),
                                                                                           half)))));
        return;
    case KILN_ACT_GELU_ERF:
        KILN_MAP8(n, x, y,
                  _mm256_mul_ps(_mm256_mul_ps(half, v),
                                _mm256_add_ps(one, erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f))))));
        return;
    case KILN_ACT_GELU_TANH: {
        const __m256 k0 = _mm256_set1_ps(0.79788456080286536f), k1 = _mm256_set1_ps(0.044715f);
        KILN_MAP8(n, x, y,
                  _mm256_mul_ps(_mm256_mul_ps(half, v),
                                _mm256_add_ps(one, tanh8(_mm256_mul_ps(
                                                       k0, _mm256_fmadd_ps(_mm256_mul_ps(k1, v), _mm256_mul_ps(v, v), v))))));
        return;
    }
    case KILN_ACT_TANH: KILN_MAP8(n, x, y, tanh8(v)); return;
    case KILN_ACT_LEAKY_RELU:
        KILN_MAP8(n, x, y, _mm256_blendv_ps(v, _mm256_mul_ps(va, v), _mm256_cmp_ps(v, zero, _CMP_LT_OQ)));
        return;
    }
    for (size_t i = 0; i < n; i++) y[i] = kiln_scalar_activation(act, alpha, beta, x[i]);
}

KILN_AVX2 void kiln_avx2_unary(kiln_unary_op op, size_t n, const float *x, float *y) {
    const __m256 signbit = _mm256_set1_ps(-0.0f);
    switch (op) {
    case KILN_UNARY_EXP: KILN_MAP8(n, x, y, exp8(v)); return;
    case KILN_UNARY_SQRT: KILN_MAP8(n, x, y, _mm256_sqrt_ps(v)); return;
    case KILN_UNARY_ERF: KILN_MAP8(n, x, y, erf8(v)); return;
    case KILN_UNARY_ABS: KILN_MAP8(n, x, y, _mm256_andnot_ps(signbit, v)); return;
    case KILN_UNARY_NEG: KILN_MAP8(n, x, y, _mm256_xor_ps(signbit, v)); return;
    case KILN_UNARY_RECIPROCAL: KILN_MAP8(n, x, y, _mm256_div_ps(_mm256_set1_ps(1.0f), v)); return;
    case KILN_UNARY_LOG: break;
    }
    kiln_generic_table.unary(op, n, x, y);
}

KILN_AVX2 static inline __m256 binary8(kiln_binary_op op, __m256 a, __m256 b) {
    switch (op) {
    case KILN_BINARY_ADD: return _mm256_add_ps(a, b);
    case KILN_BINARY_SUB: return _mm256_sub_ps(a, b);
    case KILN_BINARY_MUL: return _mm256_mul_ps(a, b);
    case KILN_BINARY_DIV: return _mm256_div_ps(a, b);
    case KILN_BINARY_MAX: return _mm256_max_ps(a, b);
    case KILN_BINARY_MIN: return _mm256_min_ps(a, b);
    }
    return a;
}

#define KILN_ZIP8(N, A, B, Y, EXPR)                                                                                   \
    do {                                                                                                              \
        size_t i_ = 0;                                                                                                \
        for (; i_ + 8 <= (N); i_ += 8) {                                                                              \
            __m256 va = _mm256_loadu_ps((A) + i_), vb = _mm256_loadu_ps((B) + i_);                                    \
            _mm256_storeu_ps((Y) + i_, (EXPR));                                                                       \
        }                                                                                                             \
        if (i_ < (N)) {                                                                                               \
            __m256i m_ = tail_mask((N) - i_);                                                                         \
            __m256 va = _mm256_maskload_ps((A) + i_, m_), vb = _mm256_maskload_ps((B) + i_, m_);                      \
            _mm256_maskstore_ps((Y) + i_, m_, (EXPR));                                                                \
        }                                                                                                             \
    } while (0)

KILN_AVX2 void kiln_avx2_binary_vv(kiln_binary_op op, size_t n, const float *a, const float *b, int swap, float *out) {
    if (op == KILN_BINARY_MAX || op == KILN_BINARY_MIN) {
        kiln_generic_table.binary_vv(op, n, a, b, swap, out); /* fmaxf/fminf NaN rules */
        return;
    }
    if (swap) {
        const float *t = a;
        a = b;
        b = t;
    }
    switch (op) {
    case KILN_BINARY_ADD: KILN_ZIP8(n, a, b, out, _mm256_add_ps(va, vb)); return;
    case KILN_BINARY_SUB: KILN_ZIP8(n, a, b, out, _mm256_sub_ps(va, vb)); return;
    case KILN_BINARY_MUL: KILN_ZIP8(n, a, b, out, _mm256_mul_ps(va, vb)); return;
    case KILN_BINARY_DIV: KILN_ZIP8(n, a, b, out, _mm256_div_ps(va, vb)); return;
    default: KILN_ZIP8(n, a, b, out, binary8(op, va, vb)); return;
    }
}

KILN_AVX2 void kiln_avx2_binary_vs(kiln_binary_op op, size_t n, const float *a, float s, int swap, float *out) {
    if (op == KILN_BINARY_MAX || op == KILN_BINARY_MIN) {
        kiln_generic_table.binary_vs(op, n, a, s, swap, out);
        return;
    }
    const __m256 vs = _mm256_set1_ps(s);
    if (swap) {
        switch (op) {
        case KILN_BINARY_SUB: KILN_MAP8(n, a, out, _mm256_sub_ps(vs, v)); return;
        case KILN_BINARY_DIV: KILN_MAP8(n, a, out, _mm256_div_ps(vs, v)); return;
        default: break; /* commutative */
        }
    }
    switch (op) {
    case KILN_BINARY_ADD: KILN_MAP8(n, a, out, _mm256_add_ps(v, vs)); return;
    case KILN_BINARY_SUB: KILN_MAP8(n, a, out, _mm256_sub_ps(v, vs)); return;
    case KILN_BINARY_MUL: KILN_MAP8(n, a, out, _mm256_mul_ps(v, vs)); return;
    case KILN_BINARY_DIV: KILN_MAP8(n, a, out, _mm256_div_ps(v, vs)); return;
    default: KILN_MAP8(n, a, out, binary8(op, v, vs)); return;
    }
}

KILN_AVX2 static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KILN_AVX2 static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

KILN_AVX2 float kiln_avx2_sum(size_t n, const float *x) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
        acc1 = _mm256_add_ps(acc1, _mm256_loadu_ps(x + i + 8));
    }
    if (i + 8 <= n) {
        acc0 = _mm256_add_ps(acc0, _mm256_loadu_ps(x + i));
        i += 8;
    }
    if (i < n) acc1 = _mm256_add_ps(acc1, _mm256_maskload_ps(x + i, tail_mask(n - i)));
    return hsum8(_mm256_add_ps(acc0, acc1));
}

KILN_AVX2 void kiln_avx2_softmax_row(size_t n, const float *x, float *y, float scale, const float *add) {
    if (n == 0) return;
    const __m256 vscale = _mm256_set1_ps(scale);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_mul_ps(vscale, _mm256_loadu_ps(x + i));
        if (add) v = _mm256_add_ps(v, _mm256_loadu_ps(add + i));
        _mm256_storeu_ps(y + i, v);
        vmax = _mm256_max_ps(vmax, v);
    }
    float m = hmax8(vmax);
    for (; i < n; i++) {
        float v = scale * x[i] + (add ? add[i] : 0.0f);
        y[i] = v;
        if (v > m) m = v;
    }
    if (m == -INFINITY) m = 0.0f;
    const __m256 vm = _mm256_set1_ps(m);
    KILN_MAP8(n, y, y, exp8(_mm256_sub_ps(v, vm)));
    float sum = kiln_avx2_sum(n, y);
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    KILN_MAP8(n, y, y, _mm256_mul_ps(v, inv));
}

KILN_AVX2 void kiln_avx2_layer_norm_row(size_t n, const float *x, const float *residual, float *y, const float *gamma,
                                        const float *beta, float epsilon, float *mean_out, float *inv_std_out) {
    if (residual) kiln_avx2_binary_vv(KILN_BINARY_ADD, n, x, residual, 0, y);
    else if (x != y) memmove(y, x, n * sizeof(float));
    float mean = n ? kiln_avx2_sum(n, y) / (float)n : 0.0f;
    const __m256 vmean = _mm256_set1_ps(mean);
    __m256 acc = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 d = _mm256_sub_ps(_mm256_loadu_ps(y + i), vmean);
        acc = _mm256_fmadd_ps(d, d, acc);
    }
    float var = hsum8(acc);
    for (; i < n; i++) {
        float d = y[i] - mean;
        var += d * d;
    }
    var = n ? var / (float)n : 0.0f;
    float inv_std = 1.0f / sqrtf(var + epsilon);
    const __m256 vinv = _mm256_set1_ps(inv_std);
    const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
    i = 0;
    for (; i < n; i += 8) {
        __m256i m = tail_mask(n - i < 8 ? n - i : 8);
        __m256 v = _mm256_mul_ps(_mm256_sub_ps(_mm256_maskload_ps(y + i, m), vmean), vinv);
        __m256 g = gamma ? _mm256_maskload_ps(gamma + i, m) : one;
        __m256 b = beta ? _mm256_maskload_ps(beta + i, m) : zero;
        _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(v, g, b));
    }
    if (mean_out) *mean_out = mean;
    if (inv_std_out) *inv_std_out = inv_std;
}

KILN_AVX2 static inline __m256 even8(const float *p) { /* p[0], p[2], ..., p[14] */
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 s = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}

KILN_AVX2 static inline __m256 odd8(const float *p) { /* p[1], p[3], ..., p[15] */
    __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
    __m256 s = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* Three taps of one kernel row at 8 outputs starting at r (stride 1 or 2). */
KILN_AVX2 static inline __m256 dw_row8(const float *r, size_t stride, __m256 w0, __m256 w1, __m256 w2) {
    if (stride == 1)
        return _mm256_fmadd_ps(w2, _mm256_loadu_ps(r + 2),
                               _mm256_fmadd_ps(w1, _mm256_loadu_ps(r + 1), _mm256_mul_ps(w0, _mm256_loadu_ps(r))));
    return _mm256_fmadd_ps(w2, even8(r + 2), _mm256_fmadd_ps(w1, odd8(r), _mm256_mul_ps(w0, even8(r))));
}

KILN_AVX2 void kiln_avx2_dw3x3_row(const float *const rows[3], const float *w, size_t stride, size_t pad_left,
                                   size_t in_width, size_t ow0, size_t ow1, float *out) {
    size_t ow = ow0;
    if ((stride == 1 || stride == 2) && rows[0] && rows[1] && rows[2]) {
        const __m256 w0 = _mm256_set1_ps(w[0]), w1 = _mm256_set1_ps(w[1]), w2 = _mm256_set1_ps(w[2]);
        const __m256 w3 = _mm256_set1_ps(w[3]), w4 = _mm256_set1_ps(w[4]), w5 = _mm256_set1_ps(w[5]);
        const __m256 w6 = _mm256_set1_ps(w[6]), w7 = _mm256_set1_ps(w[7]), w8 = _mm256_set1_ps(w[8]);
        const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2];
        /* Vector loads read input columns [iw, iw + 10) (stride 1) or [iw, iw + 18) (stride 2) per 8 outputs;
         * independent partial sums per kernel row and two vectors per step hide the FMA latency. */
        size_t reach = stride == 1 ? 10 : 18;
        for (; ow + 16 <= ow1 && (ow + 8) * stride - pad_left + reach <= in_width; ow += 16) {
            size_t ia = ow * stride - pad_left, ib = ia + 8 * stride;
            __m256 a0 = dw_row8(r0 + ia, stride, w0, w1, w2), b0 = dw_row8(r0 + ib, stride, w0, w1, w2);
            __m256 a1 = dw_row8(r1 + ia, stride, w3, w4, w5), b1 = dw_row8(r1 + ib, stride, w3, w4, w5);
            __m256 a2 = dw_row8(r2 + ia, stride, w6, w7, w8), b2 = dw_row8(r2 + ib, stride, w6, w7, w8);
            _mm256_storeu_ps(out + ow, _mm256_add_ps(_mm256_add_ps(a0, a1), a2));
            _mm256_storeu_ps(out + ow + 8, _mm256_add_ps(_mm256_add_ps(b0, b1), b2));
        }
        for (; ow + 8 <= ow1 && ow * stride - pad_left + reach <= in_width; ow += 8) {
            size_t ia = ow * stride - pad_left;
            __m256 a0 = dw_row8(r0 + ia, stride, w0, w1, w2);
            __m256 a1 = dw_row8(r1 + ia, stride, w3, w4, w5);
            __m256 a2 = dw_row8(r2 + ia, stride, w6, w7, w8);
            _mm256_storeu_ps(out + ow, _mm256_add_ps(_mm256_add_ps(a0, a1), a2));
        }
    }
    for (; ow < ow1; ow++) {
        size_t iw = ow * stride - pad_left;
        float acc = 0.0f;
        for (int kh = 0; kh < 3; kh++) {
            const float *r = rows[kh];
            if (!r) continue;
            acc += w[kh * 3 + 0] * r[iw] + w[kh * 3 + 1] * r[iw + 1] + w[kh * 3 + 2] * r[iw + 2];
        }
        out[ow] = acc;
    }
}

KILN_AVX2 static inline __attribute__((always_inline)) __m256 activation8(kiln_activation act, __m256 v, __m256 va, __m256 vb) {
    const __m256 zero = _mm256_setzero_ps(), one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    switch (act) {
    case KILN_ACT_NONE: return v;
    case KILN_ACT_RELU: return _mm256_max_ps(zero, v);
    case KILN_ACT_CLIP: return _mm256_min_ps(_mm256_max_ps(v, va), vb);
    case KILN_ACT_SIGMOID: return sigmoid8(v);
    case KILN_ACT_SILU: return _mm256_mul_ps(v, sigmoid8(v));
    case KILN_ACT_HARDSIGMOID: return _mm256_max_ps(zero, _mm256_min_ps(one, _mm256_fmadd_ps(va, v, vb)));
    case KILN_ACT_HARDSWISH:
        return _mm256_mul_ps(v, _mm256_max_ps(zero, _mm256_min_ps(one, _mm256_fmadd_ps(v, _mm256_set1_ps(1.0f / 6.0f),
                                                                                          half))));
    case KILN_ACT_GELU_ERF:
        return _mm256_mul_ps(_mm256_mul_ps(half, v),
                             _mm256_add_ps(one, erf8(_mm256_mul_ps(v, _mm256_set1_ps(0.70710678118654752f)))));
    case KILN_ACT_GELU_TANH: {
        __m256 inner = _mm256_mul_ps(_mm256_set1_ps(0.79788456080286536f),
                                     _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
        return _mm256_mul_ps(_mm256_mul_ps(half, v), _mm256_add_ps(one, tanh8(inner)));
    }
    case KILN_ACT_TANH: return tanh8(v);
    case KILN_ACT_LEAKY_RELU: return _mm256_blendv_ps(v, _mm256_mul_ps(va, v), _mm256_cmp_ps(v, zero, _CMP_LT_OQ));
    }
    return v;
}

/* One row of the fused epilogue with the activation fixed at compile time (ACT is a constant in each
 * instantiation below, so the switch in activation8 folds away). */
#define KILN_EPILOGUE_ROW(ACT)                                                                                        \
    do {                                                                                                              \
        size_t j = 0;                                                                                                 \
        for (; j + 8 <= cols; j += 8) {                                                                               \
            __m256 v = _mm256_add_ps(_mm256_loadu_ps(cr + j), row_bias);                                              \
            if (col_bias) v = _mm256_add_ps(v, _mm256_loadu_ps(col_bias + j));                                        \
            if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + j));                                                  \
            _mm256_storeu_ps(cr + j, activation8(ACT, v, va, vb));                                                    \
        }                                                                                                             \
        if (j < cols) {                                                                                               \
            __m256i m = tail_mask(cols - j);                                                                          \
            __m256 v = _mm256_add_ps(_mm256_maskload_ps(cr + j, m), row_bias);                                        \
            if (col_bias) v = _mm256_add_ps(v, _mm256_maskload_ps(col_bias + j, m));                                  \
            if (res) v = _mm256_add_ps(v, _mm256_maskload_ps(res + j, m));                                            \
            _mm256_maskstore_ps(cr + j, m, activation8(ACT, v, va, vb));                                              \
        }                                                                                                             \
    } while (0)

/* Bias, residual and activation fused into one vector pass per row. */
KILN_AVX2 void kiln_avx2_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc,
                                  size_t rows, size_t cols, size_t row0, size_t col0) {
    (void)kt;
    const __m256 va = _mm256_set1_ps(ep->alpha), vb = _mm256_set1_ps(ep->beta);
    const float *col_bias = ep->bias && !ep->bias_per_row ? ep->bias + col0 : NULL;
    for (size_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        const __m256 row_bias = _mm256_set1_ps(ep->bias && ep->bias_per_row ? ep->bias[row0 + r] : 0.0f);
        const float *res = ep->residual ? ep->residual + (row0 + r) * ep->ldr + col0 : NULL;
        switch (ep->activation) {
        case KILN_ACT_NONE: KILN_EPILOGUE_ROW(KILN_ACT_NONE); break;
        case KILN_ACT_RELU: KILN_EPILOGUE_ROW(KILN_ACT_RELU); break;
        case KILN_ACT_CLIP: KILN_EPILOGUE_ROW(KILN_ACT_CLIP); break;
        case KILN_ACT_SIGMOID: KILN_EPILOGUE_ROW(KILN_ACT_SIGMOID); break;
        case KILN_ACT_SILU: KILN_EPILOGUE_ROW(KILN_ACT_SILU); break;
        case KILN_ACT_HARDSIGMOID: KILN_EPILOGUE_ROW(KILN_ACT_HARDSIGMOID); break;
        case KILN_ACT_HARDSWISH: KILN_EPILOGUE_ROW(KILN_ACT_HARDSWISH); break;
        case KILN_ACT_GELU_ERF: KILN_EPILOGUE_ROW(KILN_ACT_GELU_ERF); break;
        case KILN_ACT_GELU_TANH: KILN_EPILOGUE_ROW(KILN_ACT_GELU_TANH); break;
        case KILN_ACT_TANH: KILN_EPILOGUE_ROW(KILN_ACT_TANH); break;
        case KILN_ACT_LEAKY_RELU: KILN_EPILOGUE_ROW(KILN_ACT_LEAKY_RELU); break;
        default: kiln_generic_epilogue(&kiln_avx2_table, ep, cr, ldc, 1, cols, row0 + r, col0); break;
        }
    }
}
#undef KILN_EPILOGUE_ROW

const kiln_kernel_table kiln_avx2_table = {
    .isa = "avx2",
    .tile16 = avx2_tile16,
    .tile32 = NULL,
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
