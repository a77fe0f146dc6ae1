/* int8_x86.c — the int8 kernels for x86-64 (contracts: kiln_qtile_fn and kiln_qkernel in internal.h). Every one
 * is exact: AVX-512 VNNI's vpdpbusd multiplies uint8 by int8 into int32 without intermediate saturation; the AVX2
 * kernels widen both operands to 16 bits and use vpmaddwd (two products of at most 255·128 per int32 lane), never
 * vpmaddubsw, whose int16 pair sums saturate. Each family has the fused-QDQ product (the product and the
 * requantizing output stage in registers), QuantizeLinear and the depthwise convolution. */
#include "internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define KILN_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))
#define KILN_AVX2_INT __attribute__((target("avx2,fma")))

static inline uint32_t load4(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The per-column constants of the fused-QDQ output stage for columns nb .. nb + width of p, zero from width to block:
 * colc = bias − za·(column sum), zbv = B's zero point in the stored domain, mv = multiplier, fbv = float bias.
 * Returns whether a zbv is nonzero (the row sums of A are needed). */
static int q_column_constants(const kiln_qgemm_params *p, uint32_t za, size_t nb, size_t width, size_t block, int32_t *colc,
                              int32_t *zbv, float *mv, float *fbv) {
    int need_rowsum = 0;
    for (size_t j = 0; j < block; j++) {
        if (j >= width) {
            colc[j] = zbv[j] = 0;
            mv[j] = fbv[j] = 0.0f;
            continue;
        }
        const size_t col = nb + j;
        const uint32_t csum = (uint32_t)p->col_sums[col];
        int32_t zb = p->b_zero ? p->b_zero[col * p->b_zero_stride] : 0;
        if (p->b_unsigned) zb -= 128;
        zbv[j] = zb;
        need_rowsum |= zb != 0;
        colc[j] = (int32_t)((p->bias ? (uint32_t)p->bias[col] : 0u) - za * csum);
        mv[j] = (float)p->multiplier[col * p->multiplier_stride];
        fbv[j] = p->fbias ? p->fbias[col] : 0.0f;
    }
    return need_rowsum;
}

/* Whether the vector depthwise loops take this case: the fused-QDQ stage into [channel][pixel] rows, a horizontal
 * stride of at most max_stride, unit horizontal dilation, at most 256 taps. */
static int dw_vector_case(const kiln_conv2d_params *p, const kiln_qgemm_params *q, size_t max_stride) {
    return p->stride_w >= 1 && p->stride_w <= max_stride && p->dilation_w == 1 && p->kernel_h * p->kernel_w <= 256 && q->round == KILN_QROUND_FLOAT &&
           q->out != KILN_QOUT_INT32 && q->cs == 1 && p->out_width > 0;
}

/* Channel c's `taps` weights less its zero point, as floats. */
static void dw_taps(const uint8_t *weight, size_t c, size_t taps, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                    float *wc) {
    const int32_t wz = w_zero ? w_zero[c * w_zero_stride] : 0;
    for (size_t t = 0; t < taps; t++) {
        const uint8_t raw = weight[c * taps + t];
        wc[t] = (float)((w_signed ? (int32_t)(int8_t)raw : (int32_t)raw) - wz);
    }
}

/* 6 rows × 32 columns: one zmm of 16 int32 sums per row and panel; each vpdpbusd adds 4 k. */
KILN_VNNI static void vnni_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                                 const int8_t *b1, int32_t *acc) {
    __m512i c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512();
    __m512i c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512();
    __m512i c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512();
    __m512i c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512();
    __m512i c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512();
    __m512i c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512();
    const uint8_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (size_t g = 0; g < kq; g++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(b0 + g * 64));
        __m512i w1 = _mm512_loadu_si512((const void *)(b1 + g * 64));
        size_t o = g * 4;
        __m512i v;
        v = _mm512_set1_epi32((int)(load4(a0 + o) ^ a_xor)); c00 = _mm512_dpbusd_epi32(c00, v, w0); c01 = _mm512_dpbusd_epi32(c01, v, w1);
        v = _mm512_set1_epi32((int)(load4(a1 + o) ^ a_xor)); c10 = _mm512_dpbusd_epi32(c10, v, w0); c11 = _mm512_dpbusd_epi32(c11, v, w1);
        v = _mm512_set1_epi32((int)(load4(a2 + o) ^ a_xor)); c20 = _mm512_dpbusd_epi32(c20, v, w0); c21 = _mm512_dpbusd_epi32(c21, v, w1);
        v = _mm512_set1_epi32((int)(load4(a3 + o) ^ a_xor)); c30 = _mm512_dpbusd_epi32(c30, v, w0); c31 = _mm512_dpbusd_epi32(c31, v, w1);
        v = _mm512_set1_epi32((int)(load4(a4 + o) ^ a_xor)); c40 = _mm512_dpbusd_epi32(c40, v, w0); c41 = _mm512_dpbusd_epi32(c41, v, w1);
        v = _mm512_set1_epi32((int)(load4(a5 + o) ^ a_xor)); c50 = _mm512_dpbusd_epi32(c50, v, w0); c51 = _mm512_dpbusd_epi32(c51, v, w1);
    }
    _mm512_storeu_si512((void *)(acc + 0), c00); _mm512_storeu_si512((void *)(acc + 16), c01);
    _mm512_storeu_si512((void *)(acc + 32), c10); _mm512_storeu_si512((void *)(acc + 48), c11);
    _mm512_storeu_si512((void *)(acc + 64), c20); _mm512_storeu_si512((void *)(acc + 80), c21);
    _mm512_storeu_si512((void *)(acc + 96), c30); _mm512_storeu_si512((void *)(acc + 112), c31);
    _mm512_storeu_si512((void *)(acc + 128), c40); _mm512_storeu_si512((void *)(acc + 144), c41);
    _mm512_storeu_si512((void *)(acc + 160), c50); _mm512_storeu_si512((void *)(acc + 176), c51);
}

KILN_AVX2_INT static void x86_transpose16(const uint8_t *src, size_t src_stride, uint8_t *dst, size_t dst_stride);
KILN_AVX2_INT static inline __m128i avx2_low_bytes(__m256i y);

/* ---- AVX-512 VNNI: the whole product with the fused-QDQ output stage in registers ---- */

/* Rows of a tile: 7 × 32 columns (14 accumulators) measured 3–5% faster than 6 on the bench CNN's layers and fits
 * their widths (28, 56) exactly; 8 spills. */
#define VNNI_MR 7

/* Σ over kq groups of 4 k of rows a[0..VNNI_MR) times np ≤ 4 panels (panel bytes apart) starting at b, added to acc. */
KILN_VNNI static inline __attribute__((always_inline)) void vnni_block(const int np, size_t kq, const uint8_t *const a[VNNI_MR],
                                                                        size_t a_off, int use_xor, __m512i axor,
                                                                        const int8_t *b, size_t panel, __m512i acc[VNNI_MR][4]) {
    for (size_t g = 0; g < kq; g++) {
        __m512i w[4];
        for (int q = 0; q < np; q++) w[q] = _mm512_loadu_si512((const void *)(b + q * panel + g * 64));
        for (int i = 0; i < VNNI_MR; i++) {
            __m512i v = _mm512_set1_epi32((int)load4(a[i] + a_off + g * 4));
            if (use_xor) v = _mm512_xor_si512(v, axor);
            for (int q = 0; q < np; q++) acc[i][q] = _mm512_dpbusd_epi32(acc[i][q], v, w[q]);
        }
    }
}

/* Per-call constants of vnni_qgemm_float. */
typedef struct {
    size_t kq, kt, panel, segments, seg_kq, segment_stride;
    int use_xor, need_rowsum;
    __m512i axor;
    __m512 lo, hi, magic;
    __m512i yz;
} vnni_consts;

/* One VNNI_MR-row × (np·16)-column tile at rows r (rows valid), columns n (cols valid), block column offset j0 of the
 * column constants: product, output stage (as kiln_qstore_row: v = acc + colc − zb·t; f = (float)v·m + fb; clamped to
 * [lo, hi], a NaN to lo; rounded half to even; + y_zero), stored as bytes. */
KILN_VNNI static inline __attribute__((always_inline)) void vnni_tile_float(
    const int np, const vnni_consts *k, const kiln_qgemm_params *p, const uint8_t *const ap[VNNI_MR], const uint8_t *const tp[VNNI_MR],
    const int8_t *b, const int32_t *colc, const int32_t *zbv, const float *mv, const float *fbv, const uint32_t *t,
    size_t r, size_t rows, size_t n, size_t cols) {
    __m512i acc[VNNI_MR][4];
    for (int i = 0; i < VNNI_MR; i++)
        for (int q = 0; q < np; q++) acc[i][q] = _mm512_setzero_si512();
    /* One piece of each row at a time (a_segments), kq / segments groups each; one piece when not segmented. */
    for (size_t s = 0; s < k->segments; s++) {
        const size_t off = s * k->segment_stride, g0 = s * k->seg_kq;
        if (k->use_xor) vnni_block(np, k->seg_kq, ap, off, 1, k->axor, b + g0 * 64, k->panel, acc);
        else vnni_block(np, k->seg_kq, ap, off, 0, k->axor, b + g0 * 64, k->panel, acc);
    }
    if (k->kt) vnni_block(np, 1, tp, 0, k->use_xor, k->axor, b + k->kq * 64, k->panel, acc);
    uint8_t *c = (uint8_t *)p->c;
    const int direct = p->cs == 1;
    uint8_t tmp[VNNI_MR][64];
    for (int q = 0; q < np; q++) {
        const __m512i cc = _mm512_loadu_si512((const void *)(colc + q * 16)), zb = _mm512_loadu_si512((const void *)(zbv + q * 16));
        const __m512 m = _mm512_loadu_ps(mv + q * 16), fb = _mm512_loadu_ps(fbv + q * 16);
        const size_t left = cols - (size_t)q * 16;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        for (size_t i = 0; i < rows; i++) {
            __m512i v = _mm512_add_epi32(acc[i][q], cc);
            if (k->need_rowsum) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zb, _mm512_set1_epi32((int)t[i])));
            __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(v), m);
            f = _mm512_add_ps(f, fb);
            f = _mm512_max_ps(f, k->lo); /* MAXPS returns the second operand for a NaN */
            f = _mm512_min_ps(f, k->hi);
            f = _mm512_sub_ps(_mm512_add_ps(f, k->magic), k->magic);
            __m512i y = _mm512_add_epi32(_mm512_cvttps_epi32(f), k->yz);
            if (direct) _mm512_mask_cvtepi32_storeu_epi8(c + (ptrdiff_t)(r + i) * p->rs + (ptrdiff_t)n + q * 16, mask, y);
            else _mm_storeu_si128((__m128i *)(tmp[i] + q * 16), _mm512_cvtepi32_epi8(y));
        }
    }
    if (!direct) {
        for (size_t j = 0; j < cols; j++) {
            uint8_t *col = c + (ptrdiff_t)(n + j) * p->cs + (ptrdiff_t)r * p->rs;
            for (size_t i = 0; i < rows; i++) col[(ptrdiff_t)i * p->rs] = tmp[i][j];
        }
    }
}

#define VNNI_QBLOCK 256

KILN_VNNI static void vnni_qgemm_float(const kiln_qgemm_params *p, size_t r0, size_t r1, size_t n0, size_t n1) {
    vnni_consts k;
    const size_t K = p->k;
    k.kq = K / 4;
    k.kt = K % 4;
    k.panel = ((K + 3) / 4) * 64;
    /* Pieces of rows (the caller checked that each holds a multiple of 4 k, so there is no tail). */
    k.segments = p->a_segments > 1 ? p->a_segments : 1;
    k.seg_kq = k.kq / k.segments;
    k.segment_stride = (size_t)p->a_segment_stride;
    k.use_xor = p->a_signed != 0;
    k.axor = _mm512_set1_epi32((int)0x80808080u);
    k.lo = _mm512_set1_ps((float)(p->qmin - p->y_zero));
    k.hi = _mm512_set1_ps((float)(p->qmax - p->y_zero));
    k.magic = _mm512_set1_ps(12582912.0f);
    k.yz = _mm512_set1_epi32(p->y_zero);
    const uint32_t za = (uint32_t)p->a_zero + (p->a_signed ? 128u : 0u);
    const uint8_t xb = p->a_signed ? 0x80 : 0;
    int32_t colc[VNNI_QBLOCK] __attribute__((aligned(64))), zbv[VNNI_QBLOCK] __attribute__((aligned(64)));
    float mv[VNNI_QBLOCK] __attribute__((aligned(64))), fbv[VNNI_QBLOCK] __attribute__((aligned(64)));
    uint8_t tail[VNNI_MR][4];
    const uint8_t *ap[VNNI_MR], *tp[VNNI_MR];
    uint32_t t[VNNI_MR];
    for (size_t nb = n0; nb < n1; nb += VNNI_QBLOCK) {
        const size_t ne = n1 - nb < VNNI_QBLOCK ? n1 : nb + VNNI_QBLOCK, width = ne - nb;
        k.need_rowsum = q_column_constants(p, za, nb, width, VNNI_QBLOCK, colc, zbv, mv, fbv);
        for (size_t r = r0; r < r1; r += VNNI_MR) {
            const size_t rows = r1 - r < VNNI_MR ? r1 - r : VNNI_MR;
            for (size_t i = 0; i < VNNI_MR; i++) {
                const size_t row = r + (i < rows ? i : rows - 1);
                ap[i] = p->a + row * p->lda;
                memset(tail[i], 0, 4);
                for (size_t j = 0; j < k.kt; j++) tail[i][j] = ap[i][k.kq * 4 + j];
                tp[i] = tail[i];
                if (k.need_rowsum) {
                    uint32_t s = 0;
                    const size_t piece = K / k.segments;
                    for (size_t g = 0; g < k.segments; g++)
                        for (size_t j = 0; j < piece; j++) s += (uint32_t)(uint8_t)(ap[i][g * k.segment_stride + j] ^ xb);
                    t[i] = s - (uint32_t)K * za;
                }
            }
            /* 32 columns a tile: measured faster than 48 or 64 here (the weight panels of a 3×3 layer at 128 channels
             * stay in L1, and 48 or 64 spill). */
            for (size_t n = nb; n < ne; n += 32) {
                const size_t cols = ne - n < 32 ? ne - n : 32, j0 = n - nb;
                const int8_t *b = p->packed_b + (n / KILN_QGEMM_NR) * k.panel;
                switch ((cols + 15) / 16) {
                case 2: vnni_tile_float(2, &k, p, ap, tp, b, colc + j0, zbv + j0, mv + j0, fbv + j0, t, r, rows, n, cols); break;
                default: vnni_tile_float(1, &k, p, ap, tp, b, colc + j0, zbv + j0, mv + j0, fbv + j0, t, r, rows, n, cols); break;
                }
            }
        }
    }
}

/* kiln_quantize_u8 16 values at a time, the same operations in the same order: the division in double, rounded to
 * float; a NaN gives 0; clamped to the bounds less the zero point ± 1, rounded half to even, the zero point added,
 * clamped to the type; the low byte stored. */
KILN_VNNI static void vnni_quantize(const float *x, size_t n, float scale, int32_t zero, int is_signed, uint8_t *y) {
    const float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f, z = (float)zero;
    /* x / scale in float32: for float operands it is the double quotient rounded to float (double has more than
     * 2·24 + 2 bits, so rounding twice is exact), which the portable loop computes, at a fraction of the cost. */
    const __m512 s = _mm512_set1_ps(scale);
    const __m512 clo = _mm512_set1_ps(lo - z - 1.0f), chi = _mm512_set1_ps(hi - z + 1.0f), vz = _mm512_set1_ps(z);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi), magic = _mm512_set1_ps(12582912.0f);
    for (size_t i = 0; i < n; i += 16) {
        const size_t left = n - i;
        const __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
        const __m512 v = _mm512_maskz_loadu_ps(mask, x + i);
        const __m512 q = _mm512_div_ps(v, s);
        const __mmask16 nan = _mm512_cmp_ps_mask(q, q, _CMP_UNORD_Q);
        __m512 c = _mm512_min_ps(_mm512_max_ps(q, clo), chi);
        __m512 r = _mm512_add_ps(_mm512_sub_ps(_mm512_add_ps(c, magic), magic), vz);
        r = _mm512_mask_mov_ps(r, nan, _mm512_setzero_ps());
        r = _mm512_min_ps(_mm512_max_ps(r, vlo), vhi);
        _mm512_mask_cvtepi32_storeu_epi8(y + i, mask, _mm512_cvttps_epi32(r));
    }
}

/* kiln_qdepthwise for the fused-QDQ stage, unit horizontal stride and dilation, [channel][pixel] rows: 16 output
 * pixels a vector. Σ (x − x_zero)(w − w_zero) is accumulated in float32, which is exact here: every product is an
 * integer of magnitude ≤ 255², so every partial sum of at most 256 of them is an integer below 2^24. The bias is
 * then added in int32 and the output stage is kiln_qstore_row's. */
KILN_VNNI static int vnni_depthwise(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero,
                                    const uint8_t *weight, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                                    const kiln_qgemm_params *q, size_t c0, size_t c1) {
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width, KH = p->kernel_h, KW = p->kernel_w;
    if (!dw_vector_case(p, q, 1)) return 0;
    const __m512 lo = _mm512_set1_ps((float)(q->qmin - q->y_zero)), hi = _mm512_set1_ps((float)(q->qmax - q->y_zero));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512i yz = _mm512_set1_epi32(q->y_zero), xz = _mm512_set1_epi32(x_zero);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t c = c0; c < c1; c++) {
        float wc[256];
        dw_taps(weight, c, KH * KW, w_signed, w_zero, w_zero_stride, wc);
        const uint8_t *plane = input + c * H * W;
        const __m512i bias = _mm512_set1_epi32(q->bias ? q->bias[c] : 0);
        const __m512 m = _mm512_set1_ps((float)q->multiplier[c * q->multiplier_stride]);
        const __m512 fb = _mm512_set1_ps(q->fbias ? q->fbias[c] : 0.0f);
        uint8_t *out = (uint8_t *)q->c + (ptrdiff_t)c * q->rs;
        for (size_t oy = 0; oy < OH; oy++) {
            for (size_t ox0 = 0; ox0 < OW; ox0 += 16) {
                const size_t left = OW - ox0;
                const __mmask16 live = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1u);
                __m512 acc = _mm512_setzero_ps();
                for (size_t ky = 0; ky < KH; ky++) {
                    const long iy = (long)(oy * p->stride_h) - (long)p->pad_top + (long)(ky * p->dilation_h);
                    if (iy < 0 || iy >= (long)H) continue;
                    const uint8_t *line = plane + (size_t)iy * W;
                    for (size_t kx = 0; kx < KW; kx++) {
                        /* ix = ox − pad_left + kx; lanes whose ix falls outside the row read nothing and add nothing. */
                        const long ix0 = (long)ox0 - (long)p->pad_left + (long)kx;
                        const __m512i ix = _mm512_add_epi32(_mm512_set1_epi32((int)ix0), lane);
                        __mmask16 in = _mm512_mask_cmpge_epi32_mask(live, ix, _mm512_setzero_si512());
                        in = _mm512_mask_cmplt_epi32_mask(in, ix, _mm512_set1_epi32((int)W));
                        if (!in) continue;
                        /* The load starts at the first lane inside (masked loads do not touch masked-off bytes,
                         * but their address must stay inside the object for C). */
                        const unsigned first = (unsigned)__builtin_ctz((unsigned)in);
                        const __m128i bytes = _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((__mmask64)(in >> first), line + ix0 + (long)first));
                        __m512i xv = x_signed ? _mm512_cvtepi8_epi32(bytes) : _mm512_cvtepu8_epi32(bytes);
                        xv = _mm512_sub_epi32(xv, xz);
                        const __m512 xf = _mm512_cvtepi32_ps(xv);
                        /* Shift the lanes back into place: lane i holds pixel ox0 + first + i. */
                        const __m512 placed = _mm512_castsi512_ps(
                            _mm512_maskz_permutexvar_epi32(in, _mm512_sub_epi32(lane, _mm512_set1_epi32((int)first)), _mm512_castps_si512(xf)));
                        acc = _mm512_mask3_fmadd_ps(placed, _mm512_set1_ps(wc[ky * KW + kx]), acc, in);
                    }
                }
                const __m512i v = _mm512_add_epi32(_mm512_cvtps_epi32(acc), bias);
                __m512 f = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(v), m), fb);
                f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
                f = _mm512_sub_ps(_mm512_add_ps(f, magic), magic);
                _mm512_mask_cvtepi32_storeu_epi8(out + oy * OW + ox0, live, _mm512_add_epi32(_mm512_cvttps_epi32(f), yz));
            }
        }
    }
    return 1;
}

/* The AVX2 dequantizing and residual sum serve the AVX-512 family as well (the same bytes: the families quantize
 * alike). */
KILN_AVX2_INT static void avx2_dequantize(const uint8_t *x, size_t n, int is_signed, int32_t zero, float scale, float *y);
KILN_AVX2_INT static void avx2_qadd(const uint8_t *a, uint8_t a_xor, int32_t a_offset, float a_scale, const uint8_t *b,
                                    uint8_t b_xor, int32_t b_offset, float b_scale, size_t n, float y_scale, int32_t y_zero,
                                    int y_signed, uint8_t *y);
const kiln_qkernel kiln_qkernel_avx512vnni = {"avx512vnni", vnni_qtile, 0, vnni_qgemm_float, vnni_quantize, vnni_depthwise, x86_transpose16, NULL, avx2_dequantize, avx2_qadd};

/* The 4 k of a row, zero-extended to 16 bits and repeated across the register: [a0 a1 a2 a3] × 4. */
KILN_AVX2_INT static inline __m256i avx2_a4(const uint8_t *p, uint32_t a_xor) {
    __m128i t = _mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)(load4(p) ^ a_xor)));
    return _mm256_broadcastq_epi64(t);
}

/* Two rows × one 16-column panel. Register q of a row holds columns 4q..4q+3 as pairs of partial sums
 * (k 0–1 and k 2–3 of each group), added pairwise at the end. */
KILN_AVX2_INT static void avx2_qpanel(size_t kq, const uint8_t *a0, const uint8_t *a1, uint32_t a_xor, const int8_t *b,
                                      int32_t *out0, int32_t *out1) {
    __m256i s00 = _mm256_setzero_si256(), s01 = _mm256_setzero_si256(), s02 = _mm256_setzero_si256(), s03 = _mm256_setzero_si256();
    __m256i s10 = _mm256_setzero_si256(), s11 = _mm256_setzero_si256(), s12 = _mm256_setzero_si256(), s13 = _mm256_setzero_si256();
    for (size_t g = 0; g < kq; g++) {
        const int8_t *w = b + g * 64;
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 0)));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16)));
        __m256i w2 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 32)));
        __m256i w3 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 48)));
        __m256i x0 = avx2_a4(a0 + g * 4, a_xor), x1 = avx2_a4(a1 + g * 4, a_xor);
        s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x0, w0));
        s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x0, w1));
        s02 = _mm256_add_epi32(s02, _mm256_madd_epi16(x0, w2));
        s03 = _mm256_add_epi32(s03, _mm256_madd_epi16(x0, w3));
        s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x1, w0));
        s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x1, w1));
        s12 = _mm256_add_epi32(s12, _mm256_madd_epi16(x1, w2));
        s13 = _mm256_add_epi32(s13, _mm256_madd_epi16(x1, w3));
    }
    /* hadd within 128-bit halves gives [c0 c1 c4 c5 | c2 c3 c6 c7]; the 64-bit permute puts them in order. */
    _mm256_storeu_si256((__m256i *)(out0 + 0), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s00, s01), 0xD8));
    _mm256_storeu_si256((__m256i *)(out0 + 8), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s02, s03), 0xD8));
    _mm256_storeu_si256((__m256i *)(out1 + 0), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s10, s11), 0xD8));
    _mm256_storeu_si256((__m256i *)(out1 + 8), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s12, s13), 0xD8));
}

KILN_AVX2_INT static void avx2_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                                     const int8_t *b1, int32_t *acc) {
    for (int r = 0; r < KILN_QGEMM_MR; r += 2) {
        avx2_qpanel(kq, a[r], a[r + 1], a_xor, b0, acc + r * 32, acc + (r + 1) * 32);
        if (b1 != b0) avx2_qpanel(kq, a[r], a[r + 1], a_xor, b1, acc + r * 32 + 16, acc + (r + 1) * 32 + 16);
    }
}

/* ---- AVX2: the fused-QDQ product in registers, exact ----
 * Without VNNI the one exact integer multiply-add is vpmaddwd (int16 pairs into int32). Rows of A are widened to
 * int16 once per tile of rows (the xor of a signed A and the segments of a convolution's window applied on the
 * way), so the inner loop only broadcasts 4 k of a row (one 8-byte load) and sign-extends the packed weights. */

/* Rows of a tile: 6 rows × 8 columns is 12 accumulators, 2 weight registers, a broadcast and a product. */
#define AVX2_MR 6

/* out[i] = the 8 int32 sums of rows aw[i] (int16, kg·4 values, aw_stride apart) by the 8 columns at b: the first or
 * second half of each 64-byte group of a packed panel (int8, sign-extended here), or with `wide` each 32-value group of
 * a kiln_qwinograd_pack panel (int16). The groups hold each column's 4 k adjacent, so a register of 16 weights is 4
 * columns × 4 k and each product lane holds half of a column's sum; the halves are added pairwise at the end. */
KILN_AVX2_INT static inline __attribute__((always_inline)) void avx2_tile8(const int mr, const int wide, size_t kg, const int16_t *aw,
                                                                          size_t aw_stride, const void *b, __m256i out[AVX2_MR]) {
    __m256i acc[AVX2_MR][2];
    for (int i = 0; i < mr; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const int8_t *b8 = (const int8_t *)b;
    const int16_t *b16 = (const int16_t *)b;
    for (size_t g = 0; g < kg; g++) {
        const __m256i w0 = wide ? _mm256_loadu_si256((const __m256i *)(b16 + g * 32))
                                : _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b8 + g * 64)));
        const __m256i w1 = wide ? _mm256_loadu_si256((const __m256i *)(b16 + g * 32 + 16))
                                : _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b8 + g * 64 + 16)));
        for (int i = 0; i < mr; i++) {
            long long x;
            memcpy(&x, aw + (size_t)i * aw_stride + g * 4, 8);
            const __m256i xv = _mm256_set1_epi64x(x);
            acc[i][0] = _mm256_add_epi32(acc[i][0], _mm256_madd_epi16(xv, w0));
            acc[i][1] = _mm256_add_epi32(acc[i][1], _mm256_madd_epi16(xv, w1));
        }
    }
    /* hadd gives [c0 c1 c4 c5 | c2 c3 c6 c7]; the 64-bit permute puts the columns in order. */
    for (int i = 0; i < mr; i++) out[i] = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[i][0], acc[i][1]), 0xD8);
}

/* Per-call constants of avx2_qgemm_float. */
typedef struct {
    size_t kg, aw_stride, panel;
    int need_rowsum, direct;
    __m256 lo, hi, magic;
    __m256i yz;
} avx2_consts;

/* The fused-QDQ output stage of 8 centred sums plus bias v (column multipliers m, float biases fb): f = (float)v·m
 * + fb, clamped to [lo, hi] (a NaN to lo), rounded half to even, + y_zero; the 8 bytes in the low half. */
KILN_AVX2_INT static inline __attribute__((always_inline)) __m256i avx2_requantize8_i32(const avx2_consts *k, __m256i v, __m256 m, __m256 fb) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), m);
    f = _mm256_add_ps(f, fb);
    f = _mm256_max_ps(f, k->lo); /* MAXPS returns the second operand for a NaN */
    f = _mm256_min_ps(f, k->hi);
    f = _mm256_sub_ps(_mm256_add_ps(f, k->magic), k->magic);
    return _mm256_add_epi32(_mm256_cvttps_epi32(f), k->yz);
}

/* avx2_requantize8_i32's 8 values as bytes, in the low half. */
KILN_AVX2_INT static inline __attribute__((always_inline)) __m128i avx2_requantize8(const avx2_consts *k, __m256i v, __m256 m, __m256 fb) {
    return avx2_low_bytes(avx2_requantize8_i32(k, v, m, fb));
}

/* The output stage of one tile (as kiln_qstore_row: v = acc + colc − zb·t; f = (float)v·m + fb; clamped to [lo, hi], a
 * NaN to lo; rounded half to even; + y_zero), rows × cols (≤ 8) bytes at row r, column n. */
KILN_AVX2_INT static inline __attribute__((always_inline)) void avx2_store8(const int mr, const avx2_consts *k, const kiln_qgemm_params *p,
                                                                           const __m256i sums[AVX2_MR], const int32_t *colc, const int32_t *zbv,
                                                                           const float *mv, const float *fbv, const uint32_t *t, size_t r,
                                                                           size_t n, size_t cols) {
    const __m256i cc = _mm256_loadu_si256((const __m256i *)colc), zb = _mm256_loadu_si256((const __m256i *)zbv);
    const __m256 m = _mm256_loadu_ps(mv), fb = _mm256_loadu_ps(fbv);
    uint8_t *c = (uint8_t *)p->c;
    if (mr == AVX2_MR && p->rs == 1 && !k->direct) {
        /* [channel][pixel] output, a whole tile: the 6 rows packed to bytes (the values are within the output type,
         * so the saturating packs keep them), each 128-bit lane then holds 4 channels' bytes, which one shuffle
         * each groups by channel: 4 rows a channel from the first pack, 2 from the second. */
        __m256i v[AVX2_MR];
        for (int i = 0; i < AVX2_MR; i++) {
            __m256i s = _mm256_add_epi32(sums[i], cc);
            if (k->need_rowsum) s = _mm256_sub_epi32(s, _mm256_mullo_epi32(zb, _mm256_set1_epi32((int)t[i])));
            v[i] = avx2_requantize8_i32(k, s, m, fb);
        }
        const __m256i p01 = _mm256_packs_epi32(v[0], v[1]), p23 = _mm256_packs_epi32(v[2], v[3]), p45 = _mm256_packs_epi32(v[4], v[5]);
        const int is_signed = p->out == KILN_QOUT_INT8;
        /* Lane L: rows 0–3 (or 4, 5, 4, 5) of channels 4L..4L+3, 4 bytes a row. */
        const __m256i a = is_signed ? _mm256_packs_epi16(p01, p23) : _mm256_packus_epi16(p01, p23);
        const __m256i b = is_signed ? _mm256_packs_epi16(p45, p45) : _mm256_packus_epi16(p45, p45);
        const __m256i by4 = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                             0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        const __m256i by2 = _mm256_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, -1, -1, -1, -1, -1, -1, -1, -1,
                                             0, 4, 1, 5, 2, 6, 3, 7, -1, -1, -1, -1, -1, -1, -1, -1);
        uint32_t quads[8];
        uint16_t pairs[16];
        const __m256i q = _mm256_shuffle_epi8(a, by4), w = _mm256_shuffle_epi8(b, by2);
        _mm256_storeu_si256((__m256i *)quads, q);
        _mm256_storeu_si256((__m256i *)pairs, w); /* channels 0–3 at 0–3, 4–7 at 8–11 */
        for (size_t j = 0; j < cols; j++) {
            uint8_t *col = c + (ptrdiff_t)(n + j) * p->cs + (ptrdiff_t)r;
            memcpy(col, &quads[j], 4);
            memcpy(col + 4, &pairs[j < 4 ? j : j + 4], 2);
        }
        return;
    }
    uint8_t tmp[AVX2_MR][8];
    for (int i = 0; i < mr; i++) {
        __m256i v = _mm256_add_epi32(sums[i], cc);
        if (k->need_rowsum) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(zb, _mm256_set1_epi32((int)t[i])));
        const __m128i bytes = avx2_requantize8(k, v, m, fb);
        if (k->direct && cols == 8) _mm_storel_epi64((__m128i *)(c + (ptrdiff_t)(r + (size_t)i) * p->rs + (ptrdiff_t)n), bytes);
        else _mm_storel_epi64((__m128i *)tmp[i], bytes);
    }
    if (k->direct && cols == 8) return;
    for (size_t j = 0; j < cols; j++) {
        uint8_t *col = c + (ptrdiff_t)(n + j) * p->cs + (ptrdiff_t)r * p->rs;
        for (int i = 0; i < mr; i++) col[(ptrdiff_t)i * p->rs] = tmp[i][j];
    }
}

KILN_AVX2_INT static inline __attribute__((always_inline)) void avx2_tile_float(const int mr, const avx2_consts *k, const kiln_qgemm_params *p,
                                                                               const int16_t *aw, const int8_t *b, const int32_t *colc,
                                                                               const int32_t *zbv, const float *mv, const float *fbv,
                                                                               const uint32_t *t, size_t r, size_t n, size_t cols) {
    __m256i sums[AVX2_MR];
    avx2_tile8(mr, 0, k->kg, aw, k->aw_stride, b, sums);
    avx2_store8(mr, k, p, sums, colc, zbv, mv, fbv, t, r, n, cols);
}

/* Row `row` of A (its segments joined, the signed xor applied) widened to int16 at dst, zero-padded to a whole
 * group; returns the sum of the row's values when `sum` (B has zero points to correct for), else 0. Inlined with a
 * constant `sum`, so that a product with no zero points does not pay for the sums. */
KILN_AVX2_INT static inline __attribute__((always_inline)) uint32_t avx2_widen_row(const kiln_qgemm_params *p, size_t row, size_t segments,
                                                                                  size_t piece, size_t padded, int16_t *dst, const int sum) {
    const uint8_t xb = p->a_signed ? 0x80 : 0;
    const __m128i x = _mm_set1_epi8((char)xb);
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i total = _mm256_setzero_si256();
    uint32_t s = 0;
    for (size_t g = 0; g < segments; g++) {
        const uint8_t *src = p->a + row * p->lda + (ptrdiff_t)g * p->a_segment_stride;
        int16_t *out = dst + g * piece;
        size_t j = 0;
        for (; j + 16 <= piece; j += 16) {
            const __m256i v = _mm256_cvtepu8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + j)), x));
            _mm256_storeu_si256((__m256i *)(out + j), v);
            if (sum) total = _mm256_add_epi32(total, _mm256_madd_epi16(v, ones));
        }
        if (j < piece && piece >= 16) {
            /* The last 16 values, overlapping the ones written (rewritten with the same values); only the lanes
             * from j on join the sum. A stem's row of 27 would otherwise take 11 scalar steps. */
            const size_t back = piece - 16;
            const __m256i v = _mm256_cvtepu8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(src + back)), x));
            _mm256_storeu_si256((__m256i *)(out + back), v);
            if (sum) {
                const __m256i lane = _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
                const __m256i fresh = _mm256_cmpgt_epi16(lane, _mm256_set1_epi16((short)(j - back - 1)));
                total = _mm256_add_epi32(total, _mm256_madd_epi16(_mm256_and_si256(v, fresh), ones));
            }
            j = piece;
        }
        for (; j < piece; j++) {
            out[j] = (int16_t)(uint8_t)(src[j] ^ xb);
            s += (uint32_t)out[j];
        }
    }
    for (size_t j = segments * piece; j < padded; j++) dst[j] = 0;
    if (!sum) return 0;
    int32_t lanes[8];
    _mm256_storeu_si256((__m256i *)lanes, total);
    for (int i = 0; i < 8; i++) s += (uint32_t)lanes[i];
    return s;
}

#define AVX2_QBLOCK 256

KILN_AVX2_INT static void avx2_qgemm_float(const kiln_qgemm_params *p, size_t r0, size_t r1, size_t n0, size_t n1) {
    avx2_consts k;
    const size_t K = p->k;
    k.kg = (K + 3) / 4;
    k.aw_stride = k.kg * 4;
    k.panel = k.kg * 64;
    k.direct = p->cs == 1;
    k.lo = _mm256_set1_ps((float)(p->qmin - p->y_zero));
    k.hi = _mm256_set1_ps((float)(p->qmax - p->y_zero));
    k.magic = _mm256_set1_ps(12582912.0f);
    k.yz = _mm256_set1_epi32(p->y_zero);
    /* Pieces of rows (the caller checked that each holds a multiple of 4 k). */
    const size_t segments = p->a_segments > 1 ? p->a_segments : 1, piece = K / segments;
    const uint32_t za = (uint32_t)p->a_zero + (p->a_signed ? 128u : 0u);
    int16_t *aw = (int16_t *)kiln_scratch(2, (AVX2_MR * k.aw_stride + 1) / 2);
    if (aw == NULL) return;
    int32_t colc[AVX2_QBLOCK] __attribute__((aligned(32))), zbv[AVX2_QBLOCK] __attribute__((aligned(32)));
    float mv[AVX2_QBLOCK] __attribute__((aligned(32))), fbv[AVX2_QBLOCK] __attribute__((aligned(32)));
    uint32_t t[AVX2_MR];
    for (size_t nb = n0; nb < n1; nb += AVX2_QBLOCK) {
        const size_t ne = n1 - nb < AVX2_QBLOCK ? n1 : nb + AVX2_QBLOCK, width = ne - nb;
        k.need_rowsum = q_column_constants(p, za, nb, width, AVX2_QBLOCK, colc, zbv, mv, fbv);
        for (size_t r = r0; r < r1; r += AVX2_MR) {
            const size_t rows = r1 - r < AVX2_MR ? r1 - r : AVX2_MR;
            for (size_t i = 0; i < rows; i++)
                t[i] = k.need_rowsum ? avx2_widen_row(p, r + i, segments, piece, k.aw_stride, aw + i * k.aw_stride, 1) - (uint32_t)K * za
                                     : avx2_widen_row(p, r + i, segments, piece, k.aw_stride, aw + i * k.aw_stride, 0);
            for (size_t n = nb; n < ne; n += 8) {
                const size_t cols = ne - n < 8 ? ne - n : 8, j0 = n - nb;
                /* Columns n.. are the first or second half of each group of panel n / 16. */
                const int8_t *b = p->packed_b + (n / KILN_QGEMM_NR) * k.panel + (n % KILN_QGEMM_NR) / 8 * 32;
                switch (rows) {
#define AVX2_TILE_CASE(R) case R: avx2_tile_float(R, &k, p, aw, b, colc + j0, zbv + j0, mv + j0, fbv + j0, t, r, n, cols); break;
                AVX2_TILE_CASE(6) AVX2_TILE_CASE(5) AVX2_TILE_CASE(4) AVX2_TILE_CASE(3) AVX2_TILE_CASE(2) AVX2_TILE_CASE(1)
#undef AVX2_TILE_CASE
                default: break;
                }
            }
        }
    }
}

/* kiln_qwinograd_conv: passes of up to 16 blocks of AVX2_MR tiles. A pass first computes its tiles' input transforms
 * (int16, channels padded to groups of 4); then, 8 filters at a time, each block's 16 transforms are the rows of 16
 * products by the filters' transforms (avx2_tile8), and the output transform and the output stage (avx2_store8, one
 * pixel at a time; kiln_qstore_row for stages other than the fused-QDQ one) follow. */
KILN_AVX2_INT static void avx2_winograd(const kiln_conv2d_params *p, const uint8_t *padded, size_t wp, const int16_t *packed,
                                        const kiln_qgemm_params *q, size_t ty0, size_t ty1) {
    const size_t C = p->in_channels, N = q->n, OH = p->out_height, OW = p->out_width, TX = (OW + 1) / 2;
    const size_t groups = (C + 3) / 4, cp = groups * 4, panels = (N + 7) / 8, block = 16 * AVX2_MR * cp;
    /* Tiles per pass over the filters: as many whole blocks as keep their input transforms within ~128 KiB (L2), so
     * each filter panel is read from memory once per pass rather than once per block (a 128 × 128 layer's
     * transformed filters take 512 KiB, the whole L2 of some cores). */
    size_t per_pass = 65536 / block;
    per_pass = (per_pass < 1 ? 1 : per_pass > 16 ? 16 : per_pass) * AVX2_MR;
    int16_t *u = (int16_t *)kiln_scratch(2, per_pass * 16 * cp / 2 + 16);
    if (u == NULL) return;
    avx2_consts k;
    k.kg = groups;
    k.aw_stride = cp;
    k.need_rowsum = 0;
    k.direct = 0;
    k.lo = _mm256_set1_ps((float)(q->qmin - q->y_zero));
    k.hi = _mm256_set1_ps((float)(q->qmax - q->y_zero));
    k.magic = _mm256_set1_ps(12582912.0f);
    k.yz = _mm256_set1_epi32(q->y_zero);
    const uint32_t za = (uint32_t)q->a_zero + (q->a_signed ? 128u : 0u);
    const int fused = q->round == KILN_QROUND_FLOAT && q->out != KILN_QOUT_INT32, p_rs1 = q->rs == 1;
    const __m128i xb = _mm_set1_epi8(q->a_signed ? (char)0x80 : 0);
    const uint32_t t0[1] = {0};
    int32_t colc[8] __attribute__((aligned(32))), zbv[8] __attribute__((aligned(32))) = {0};
    float mv[8] __attribute__((aligned(32))), fbv[8] __attribute__((aligned(32)));
    const size_t first = ty0 * TX, last = ty1 * TX;
    for (size_t pass = first; pass < last; pass += per_pass) {
        const size_t pass_end = last - pass < per_pass ? last : pass + per_pass;
        /* Block b of the pass at u + b·block: u[(pos·AVX2_MR + i)·cp + ch] is U = Bᵀ d B of its tile i, 16 channels a
         * vector (the rest one at a time). */
        for (size_t tile = pass; tile < pass_end; tile++) {
            const size_t i = (tile - pass) % AVX2_MR, ty = tile / TX, tx = tile % TX;
            int16_t *ub = u + (tile - pass) / AVX2_MR * block;
            const uint8_t *base = padded + (2 * ty * wp + 2 * tx) * C;
            size_t ch = 0;
            for (; ch + 16 <= C; ch += 16) {
                __m256i d[4][4];
                for (int y = 0; y < 4; y++)
                    for (int x = 0; x < 4; x++)
                        d[y][x] = _mm256_cvtepu8_epi16(_mm_xor_si128(_mm_loadu_si128((const __m128i *)(base + ((size_t)y * wp + (size_t)x) * C + ch)), xb));
                for (int x = 0; x < 4; x++) {
                    const __m256i e0 = _mm256_sub_epi16(d[0][x], d[2][x]), e1 = _mm256_add_epi16(d[1][x], d[2][x]);
                    const __m256i e2 = _mm256_sub_epi16(d[2][x], d[1][x]), e3 = _mm256_sub_epi16(d[1][x], d[3][x]);
                    d[0][x] = e0; d[1][x] = e1; d[2][x] = e2; d[3][x] = e3;
                }
                for (int y = 0; y < 4; y++) {
                    const __m256i r[4] = {_mm256_sub_epi16(d[y][0], d[y][2]), _mm256_add_epi16(d[y][1], d[y][2]),
                                          _mm256_sub_epi16(d[y][2], d[y][1]), _mm256_sub_epi16(d[y][1], d[y][3])};
                    for (int x = 0; x < 4; x++)
                        _mm256_storeu_si256((__m256i *)(ub + ((size_t)(y * 4 + x) * AVX2_MR + i) * cp + ch), r[x]);
                }
            }
            for (; ch < cp; ch++) {
                int32_t one[16] = {0};
                if (ch < C) kiln_qwinograd_input(padded, wp, C, 2 * ty, 2 * tx, ch, q->a_signed ? 0x80 : 0, one);
                for (int pos = 0; pos < 16; pos++) ub[((size_t)pos * AVX2_MR + i) * cp + ch] = (int16_t)one[pos];
            }
        }
        for (size_t nb = 0; nb < panels; nb++) {
            const size_t n = nb * 8, cols = N - n < 8 ? N - n : 8;
            for (size_t j = 0; j < 8; j++) {
                const size_t col = n + (j < cols ? j : 0);
                colc[j] = (int32_t)((q->bias ? (uint32_t)q->bias[col] : 0u) - za * (uint32_t)q->col_sums[col]);
                mv[j] = fused ? (float)q->multiplier[col * q->multiplier_stride] : 0.0f;
                fbv[j] = fused && q->fbias ? q->fbias[col] : 0.0f;
            }
            for (size_t tb = pass; tb < pass_end; tb += AVX2_MR) {
                const size_t count = pass_end - tb < AVX2_MR ? pass_end - tb : AVX2_MR;
                const int16_t *ub = u + (tb - pass) / AVX2_MR * block;
                __m256i m[16][AVX2_MR];
                for (size_t pos = 0; pos < 16; pos++) {
                    const int16_t *b = packed + (pos * panels + nb) * groups * 32;
                    const int16_t *a = ub + pos * AVX2_MR * cp;
                    switch (count) {
#define AVX2_WG_CASE(R) case R: avx2_tile8(R, 1, groups, a, cp, b, m[pos]); break;
                    AVX2_WG_CASE(6) AVX2_WG_CASE(5) AVX2_WG_CASE(4) AVX2_WG_CASE(3) AVX2_WG_CASE(2) AVX2_WG_CASE(1)
#undef AVX2_WG_CASE
                    default: break;
                    }
                }
                for (size_t i = 0; i < count; i++) {
                    const size_t ty = (tb + i) / TX, tx = (tb + i) % TX;
                    /* Aᵀ M A over the 8 filters: columns first (t), then rows; 4× the sums, divided exactly. */
                    __m256i t[2][4];
                    for (int x = 0; x < 4; x++) {
                        t[0][x] = _mm256_add_epi32(_mm256_add_epi32(m[x][i], m[4 + x][i]), m[8 + x][i]);
                        t[1][x] = _mm256_sub_epi32(_mm256_sub_epi32(m[4 + x][i], m[8 + x][i]), m[12 + x][i]);
                    }
                    __m256i y[2][2];
                    for (int r = 0; r < 2; r++) {
                        y[r][0] = _mm256_srai_epi32(_mm256_add_epi32(_mm256_add_epi32(t[r][0], t[r][1]), t[r][2]), 2);
                        y[r][1] = _mm256_srai_epi32(_mm256_sub_epi32(_mm256_sub_epi32(t[r][1], t[r][2]), t[r][3]), 2);
                    }
                    if (fused && p_rs1 && 2 * ty + 1 < OH && 2 * tx + 1 < OW) {
                        /* A whole tile: each filter's two pixels of a row are adjacent. The 4 vectors packed to bytes
                         * (within the output type, so the saturating packs keep them) and one shuffle per half put each
                         * filter's 4 bytes together: row 0's pair, then row 1's. */
                        const __m256i cc = _mm256_load_si256((const __m256i *)colc);
                        const __m256 mm = _mm256_load_ps(mv), fb = _mm256_load_ps(fbv);
                        const __m256i h0 = _mm256_packs_epi32(avx2_requantize8_i32(&k, _mm256_add_epi32(y[0][0], cc), mm, fb),
                                                              avx2_requantize8_i32(&k, _mm256_add_epi32(y[0][1], cc), mm, fb));
                        const __m256i h1 = _mm256_packs_epi32(avx2_requantize8_i32(&k, _mm256_add_epi32(y[1][0], cc), mm, fb),
                                                              avx2_requantize8_i32(&k, _mm256_add_epi32(y[1][1], cc), mm, fb));
                        const __m256i bytes = q->out == KILN_QOUT_INT8 ? _mm256_packs_epi16(h0, h1) : _mm256_packus_epi16(h0, h1);
                        const __m256i by4 = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                                             0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
                        uint16_t pairs[16];
                        _mm256_storeu_si256((__m256i *)pairs, _mm256_shuffle_epi8(bytes, by4)); /* filter j: pairs[2j], [2j + 1] */
                        uint8_t *at = (uint8_t *)q->c + (ptrdiff_t)(2 * ty * OW + 2 * tx);
                        for (size_t j = 0; j < cols; j++) {
                            memcpy(at + (ptrdiff_t)(n + j) * q->cs, &pairs[2 * j], 2);
                            memcpy(at + (ptrdiff_t)(n + j) * q->cs + (ptrdiff_t)OW, &pairs[2 * j + 1], 2);
                        }
                        continue;
                    }
                    for (int r = 0; r < 2; r++) {
                        for (int dx = 0; dx < 2; dx++) {
                            const size_t oy = 2 * ty + (size_t)r, ox = 2 * tx + (size_t)dx;
                            if (oy >= OH || ox >= OW) continue;
                            if (fused) {
                                avx2_store8(1, &k, q, &y[r][dx], colc, zbv, mv, fbv, t0, oy * OW + ox, n, cols);
                            } else { /* other output stages: the portable one */
                                uint32_t v[8];
                                _mm256_storeu_si256((__m256i *)v, _mm256_add_epi32(y[r][dx], _mm256_load_si256((const __m256i *)colc)));
                                kiln_qstore_row(q, v, cols, oy * OW + ox, n);
                            }
                        }
                    }
                }
            }
        }
    }
}

/* The low bytes of 8 int32 lanes, in order, in the low 8 bytes. */
KILN_AVX2_INT static inline __m128i avx2_low_bytes(__m256i y) {
    const __m256i low = _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                         0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i b = _mm256_shuffle_epi8(y, low);
    return _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1));
}

/* kiln_quantize_u8 of 8 values, as vnni_quantize (the same operations in the same order). */
KILN_AVX2_INT static inline __m128i avx2_quantize8(__m256 v, __m256 s, __m256 clo, __m256 chi, __m256 vz, __m256 vlo, __m256 vhi) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256 q = _mm256_div_ps(v, s);
    const __m256 nan = _mm256_cmp_ps(q, q, _CMP_UNORD_Q);
    const __m256 c = _mm256_min_ps(_mm256_max_ps(q, clo), chi);
    __m256 r = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(c, magic), magic), vz);
    r = _mm256_andnot_ps(nan, r); /* a NaN gives 0 */
    r = _mm256_min_ps(_mm256_max_ps(r, vlo), vhi);
    return avx2_low_bytes(_mm256_cvttps_epi32(r));
}

/* avx2_quantize8 of 4 vectors, the 32 bytes in order at y. Each step is applied to all 4 before the next, so the
 * division's latency overlaps across them (one vector at a time, the chain after the division left the core idle). */
KILN_AVX2_INT static inline void avx2_quantize32(const __m256 v[4], __m256 s, __m256 clo, __m256 chi, __m256 vz, __m256 vlo, __m256 vhi,
                                                int is_signed, uint8_t *y) {
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    __m256 q[4], nan[4];
    __m256i w[4];
    for (int j = 0; j < 4; j++) q[j] = _mm256_div_ps(v[j], s);
    for (int j = 0; j < 4; j++) nan[j] = _mm256_cmp_ps(q[j], q[j], _CMP_UNORD_Q);
    for (int j = 0; j < 4; j++) q[j] = _mm256_min_ps(_mm256_max_ps(q[j], clo), chi);
    for (int j = 0; j < 4; j++) q[j] = _mm256_add_ps(_mm256_sub_ps(_mm256_add_ps(q[j], magic), magic), vz);
    for (int j = 0; j < 4; j++) q[j] = _mm256_andnot_ps(nan[j], q[j]); /* a NaN gives 0 */
    for (int j = 0; j < 4; j++) w[j] = _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(q[j], vlo), vhi));
    /* The values are within the output type's range, so the saturating packs keep them; the packs interleave
     * 128-bit lanes, which the permute puts back in order. */
    const __m256i h0 = _mm256_packs_epi32(w[0], w[1]), h1 = _mm256_packs_epi32(w[2], w[3]);
    const __m256i b = is_signed ? _mm256_packs_epi16(h0, h1) : _mm256_packus_epi16(h0, h1);
    _mm256_storeu_si256((__m256i *)y, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

/* kiln_quantize_u8 32 values at a time, then 8; the last n % 8 through a zero-padded copy. */
KILN_AVX2_INT static void avx2_quantize(const float *x, size_t n, float scale, int32_t zero, int is_signed, uint8_t *y) {
    const float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f, z = (float)zero;
    const __m256 s = _mm256_set1_ps(scale);
    const __m256 clo = _mm256_set1_ps(lo - z - 1.0f), chi = _mm256_set1_ps(hi - z + 1.0f), vz = _mm256_set1_ps(z);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m256 v[4] = {_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(x + i + 24)};
        avx2_quantize32(v, s, clo, chi, vz, vlo, vhi, is_signed, y + i);
    }
    for (; i + 8 <= n; i += 8)
        _mm_storel_epi64((__m128i *)(y + i), avx2_quantize8(_mm256_loadu_ps(x + i), s, clo, chi, vz, vlo, vhi));
    if (i < n) {
        float part[8] = {0};
        uint8_t out[8];
        memcpy(part, x + i, (n - i) * sizeof(float));
        _mm_storel_epi64((__m128i *)out, avx2_quantize8(_mm256_loadu_ps(part), s, clo, chi, vz, vlo, vhi));
        memcpy(y + i, out, n - i);
    }
}

/* (float)((x ^ flip) − offset)·scale of 8 bytes. */
KILN_AVX2_INT static inline __m256 avx2_dequantize8(const uint8_t *x, __m128i flip, __m256i offset, __m256 scale) {
    const __m128i bytes = _mm_xor_si128(_mm_loadl_epi64((const __m128i *)x), flip);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(bytes), offset)), scale);
}

/* kiln_dequantize_u8 32 values at a time (an int8 value read as its byte xor 0x80, less zero + 128), then 8; the
 * last n % 8 through zero-padded copies. */
KILN_AVX2_INT static void avx2_dequantize(const uint8_t *x, size_t n, int is_signed, int32_t zero, float scale, float *y) {
    const __m128i xr = _mm_set1_epi8(is_signed ? (char)0x80 : 0);
    const __m256i offset = _mm256_set1_epi32(zero + (is_signed ? 128 : 0));
    const __m256 s = _mm256_set1_ps(scale);
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) _mm256_storeu_ps(y + i + 8 * j, avx2_dequantize8(x + i + 8 * j, xr, offset, s));
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, avx2_dequantize8(x + i, xr, offset, s));
    if (i < n) {
        uint8_t part[8] = {0};
        float out[8];
        memcpy(part, x + i, n - i);
        _mm256_storeu_ps(out, avx2_dequantize8(part, xr, offset, s));
        memcpy(y + i, out, (n - i) * sizeof(float));
    }
}

/* kiln_qadd 32 values at a time, then 8, each step as the portable loop's (dequantize both, add, quantize); the last
 * n % 8 through zero-padded copies. */
KILN_AVX2_INT static void avx2_qadd(const uint8_t *a, uint8_t a_xor, int32_t a_offset, float a_scale, const uint8_t *b,
                                    uint8_t b_xor, int32_t b_offset, float b_scale, size_t n, float y_scale, int32_t y_zero,
                                    int y_signed, uint8_t *y) {
    const float lo = y_signed ? -128.0f : 0.0f, hi = y_signed ? 127.0f : 255.0f, z = (float)y_zero;
    const __m256 s = _mm256_set1_ps(y_scale);
    const __m256 clo = _mm256_set1_ps(lo - z - 1.0f), chi = _mm256_set1_ps(hi - z + 1.0f), vz = _mm256_set1_ps(z);
    const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
    const __m128i xa = _mm_set1_epi8((char)a_xor), xb = _mm_set1_epi8((char)b_xor);
    const __m256i oa = _mm256_set1_epi32(a_offset), ob = _mm256_set1_epi32(b_offset);
    const __m256 sa = _mm256_set1_ps(a_scale), sb = _mm256_set1_ps(b_scale);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 sums[4];
        for (int j = 0; j < 4; j++)
            sums[j] = _mm256_add_ps(avx2_dequantize8(a + i + 8 * j, xa, oa, sa), avx2_dequantize8(b + i + 8 * j, xb, ob, sb));
        avx2_quantize32(sums, s, clo, chi, vz, vlo, vhi, y_signed, y + i);
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 sum = _mm256_add_ps(avx2_dequantize8(a + i, xa, oa, sa), avx2_dequantize8(b + i, xb, ob, sb));
        _mm_storel_epi64((__m128i *)(y + i), avx2_quantize8(sum, s, clo, chi, vz, vlo, vhi));
    }
    if (i < n) {
        uint8_t pa[8] = {0}, pb[8] = {0}, out[8];
        memcpy(pa, a + i, n - i);
        memcpy(pb, b + i, n - i);
        const __m256 sum = _mm256_add_ps(avx2_dequantize8(pa, xa, oa, sa), avx2_dequantize8(pb, xb, ob, sb));
        _mm_storel_epi64((__m128i *)out, avx2_quantize8(sum, s, clo, chi, vz, vlo, vhi));
        memcpy(y + i, out, n - i);
    }
}

/* kiln_qdepthwise for the fused-QDQ stage, horizontal stride 1 or 2, unit dilation, [channel][pixel] rows: 8 output
 * pixels a vector. Each channel's plane is first copied as float32 (x − x_zero) into rows padded with zeros on
 * both sides, so the window loop has no edges: the zeros are the padding (whose value is x_zero) and the lanes
 * past the row's end. The sums are exact in float32 as in vnni_depthwise (integers below 2^24), so the order of
 * the products does not matter; the bias is added in int32 and the output stage is kiln_qstore_row's. */
KILN_AVX2_INT static int avx2_depthwise(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero,
                                        const uint8_t *weight, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                                        const kiln_qgemm_params *q, size_t c0, size_t c1) {
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width, KH = p->kernel_h, KW = p->kernel_w;
    if (!dw_vector_case(p, q, 2)) return 0;
    /* Each padded row split into S phases (columns S·i + ph at phase ph, index i), so that output ox's tap kx,
     * padded column S·ox + kx, is phase kx % S at ox + kx / S: every tap reads 8 adjacent outputs' values, for ox up
     * to a whole block of 32. Column pad_left + ix holds the plane's ix. */
    const size_t S = p->stride_w, ow32 = (OW + 31) / 32 * 32, pl = p->pad_left;
    const size_t span = ow32 + (KW - 1) / S, filled = (pl + W + S - 1) / S, wph = span > filled ? span : filled, wp = S * wph;
    float *rows = kiln_scratch(2, H * wp + 8);
    if (rows == NULL) return 0;
    const __m256 lo = _mm256_set1_ps((float)(q->qmin - q->y_zero)), hi = _mm256_set1_ps((float)(q->qmax - q->y_zero));
    const __m256 magic = _mm256_set1_ps(12582912.0f);
    const __m256i yz = _mm256_set1_epi32(q->y_zero);
    /* The padding columns of every row stay zero: each channel writes only the plane's columns. */
    memset(rows, 0, H * wp * sizeof(float));
    for (size_t c = c0; c < c1; c++) {
        float wc[256];
        dw_taps(weight, c, KH * KW, w_signed, w_zero, w_zero_stride, wc);
        const uint8_t *plane = input + c * H * W;
        const __m256i xz = _mm256_set1_epi32(x_zero);
        for (size_t y = 0; y < H; y++) {
            float *row = rows + y * wp;
            const uint8_t *line = plane + y * W;
            size_t ix = 0;
            if (S == 1) {
                for (; ix + 8 <= W; ix += 8) {
                    const __m128i b = _mm_loadl_epi64((const __m128i *)(line + ix));
                    const __m256i v = x_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
                    _mm256_storeu_ps(row + pl + ix, _mm256_cvtepi32_ps(_mm256_sub_epi32(v, xz)));
                }
            } else {
                /* 16 values: the even ix to one phase, the odd to the other (which depends on pad_left's parity). */
                float *even = row + (pl % 2) * wph + pl / 2, *odd = row + ((pl + 1) % 2) * wph + (pl + 1) / 2;
                for (; ix + 16 <= W; ix += 16) {
                    const __m128i b = _mm_loadu_si128((const __m128i *)(line + ix));
                    const __m256i v0 = x_signed ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
                    const __m128i b8 = _mm_srli_si128(b, 8);
                    const __m256i v1 = x_signed ? _mm256_cvtepi8_epi32(b8) : _mm256_cvtepu8_epi32(b8);
                    const __m256 f0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(v0, xz)), f1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(v1, xz));
                    /* shuffle_ps takes lanes 0 and 2 (or 1 and 3) of each half: [e0 e1 e4 e5 | e2 e3 e6 e7] before the
                     * 64-bit permute puts them in order. */
                    const __m256 e = _mm256_shuffle_ps(f0, f1, _MM_SHUFFLE(2, 0, 2, 0)), o = _mm256_shuffle_ps(f0, f1, _MM_SHUFFLE(3, 1, 3, 1));
                    _mm256_storeu_ps(even + ix / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
                    _mm256_storeu_ps(odd + ix / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
                }
            }
            for (; ix < W; ix++)
                row[((pl + ix) % S) * wph + (pl + ix) / S] = (float)((x_signed ? (int32_t)(int8_t)line[ix] : (int32_t)line[ix]) - x_zero);
        }
        const __m256i bias = _mm256_set1_epi32(q->bias ? q->bias[c] : 0);
        const __m256 m = _mm256_set1_ps((float)q->multiplier[c * q->multiplier_stride]);
        const __m256 fb = _mm256_set1_ps(q->fbias ? q->fbias[c] : 0.0f);
        uint8_t *out = (uint8_t *)q->c + (ptrdiff_t)c * q->rs;
        for (size_t oy = 0; oy < OH; oy++) {
            for (size_t ob = 0; ob < OW; ob += 32) {
                /* 32 outputs in four independent sums (one chain would wait on each FMA's latency). */
                __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
                for (size_t ky = 0; ky < KH; ky++) {
                    const long iy = (long)(oy * p->stride_h) - (long)p->pad_top + (long)(ky * p->dilation_h);
                    if (iy < 0 || iy >= (long)H) continue;
                    const float *src = rows + (size_t)iy * wp + ob;
                    for (size_t kx = 0; kx < KW; kx++) {
                        const __m256 wv = _mm256_set1_ps(wc[ky * KW + kx]);
                        const float *tap = src + (kx % S) * wph + kx / S;
                        for (int b = 0; b < 4; b++) acc[b] = _mm256_fmadd_ps(_mm256_loadu_ps(tap + 8 * b), wv, acc[b]);
                    }
                }
                for (size_t ox0 = ob; ox0 < OW && ox0 < ob + 32; ox0 += 8) {
                    const __m256i v = _mm256_add_epi32(_mm256_cvtps_epi32(acc[(ox0 - ob) / 8]), bias);
                    __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), m), fb);
                    f = _mm256_min_ps(_mm256_max_ps(f, lo), hi);
                    f = _mm256_sub_ps(_mm256_add_ps(f, magic), magic);
                    const __m128i bytes = avx2_low_bytes(_mm256_add_epi32(_mm256_cvttps_epi32(f), yz));
                    /* A row's last bytes: 8 written whole while they stay within the channel's plane (the overflow
                     * lands on the rows after this one, written after it). */
                    if (oy * OW + ox0 + 8 <= OH * OW) {
                        _mm_storel_epi64((__m128i *)(out + oy * OW + ox0), bytes);
                    } else {
                        uint8_t part[8];
                        _mm_storel_epi64((__m128i *)part, bytes);
                        memcpy(out + oy * OW + ox0, part, OW - ox0);
                    }
                }
            }
        }
    }
    return 1;
}

/* 16 rows of 16 bytes (src, src_stride apart) written as 16 columns: dst[j·dst_stride + i] = src[i·src_stride + j]. Four
 * rounds of interleaving (bytes, pairs, quads, halves). */
KILN_AVX2_INT static void x86_transpose16(const uint8_t *src, size_t src_stride, uint8_t *dst, size_t dst_stride) {
    __m128i r[16], t[16], u[16], v[16];
    for (int i = 0; i < 16; i++) r[i] = _mm_loadu_si128((const __m128i *)(src + (size_t)i * src_stride));
    /* t[2i] / t[2i+1]: rows 2i, 2i+1 interleaved, columns 0–7 / 8–15. */
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm_unpacklo_epi8(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm_unpackhi_epi8(r[2 * i], r[2 * i + 1]);
    }
    /* u[4j + q]: rows 4j..4j+3, columns 4q..4q+3. */
    for (int j = 0; j < 4; j++) {
        u[4 * j + 0] = _mm_unpacklo_epi16(t[4 * j], t[4 * j + 2]);
        u[4 * j + 1] = _mm_unpackhi_epi16(t[4 * j], t[4 * j + 2]);
        u[4 * j + 2] = _mm_unpacklo_epi16(t[4 * j + 1], t[4 * j + 3]);
        u[4 * j + 3] = _mm_unpackhi_epi16(t[4 * j + 1], t[4 * j + 3]);
    }
    /* v[8h + 2q + e]: rows 8h..8h+7, columns 4q + 2e, 4q + 2e + 1. */
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 4; q++) {
            v[8 * h + 2 * q] = _mm_unpacklo_epi32(u[8 * h + q], u[8 * h + 4 + q]);
            v[8 * h + 2 * q + 1] = _mm_unpackhi_epi32(u[8 * h + q], u[8 * h + 4 + q]);
        }
    for (int q = 0; q < 4; q++)
        for (int e = 0; e < 2; e++) {
            const __m128i lo = v[2 * q + e], hi = v[8 + 2 * q + e];
            _mm_storeu_si128((__m128i *)(dst + (size_t)(4 * q + 2 * e) * dst_stride), _mm_unpacklo_epi64(lo, hi));
            _mm_storeu_si128((__m128i *)(dst + (size_t)(4 * q + 2 * e + 1) * dst_stride), _mm_unpackhi_epi64(lo, hi));
        }
}

const kiln_qkernel kiln_qkernel_avx2 = {"avx2", avx2_qtile, 0, avx2_qgemm_float, avx2_quantize, avx2_depthwise, x86_transpose16, avx2_winograd, avx2_dequantize, avx2_qadd};

#endif
