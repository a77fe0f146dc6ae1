/* int8_x86.c — the int8 register tiles for x86-64 (contract: kiln_qtile_fn in internal.h). Both are exact:
 * AVX-512 VNNI's vpdpbusd multiplies uint8 by int8 into int32 without intermediate saturation; the AVX2 tile
 * widens both operands to 16 bits and uses vpmaddwd (two products of at most 255·128 per int32 lane), never
 * vpmaddubsw, whose int16 pair sums saturate. */
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
 * column constants: product, output stage (as q_store_row: v = acc + colc − zb·t; f = (float)v·m + fb; clamped to
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
        k.need_rowsum = 0;
        for (size_t j = 0; j < VNNI_QBLOCK; j++) {
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
            k.need_rowsum |= zb != 0;
            colc[j] = (int32_t)((p->bias ? (uint32_t)p->bias[col] : 0u) - za * csum);
            mv[j] = (float)p->multiplier[col * p->multiplier_stride];
            fbv[j] = p->fbias ? p->fbias[col] : 0.0f;
        }
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
 * then added in int32 and the output stage is q_store_row's. */
KILN_VNNI static int vnni_depthwise(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero,
                                    const uint8_t *weight, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                                    const kiln_qgemm_params *q, size_t c0, size_t c1) {
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width, KH = p->kernel_h, KW = p->kernel_w;
    if (p->stride_w != 1 || p->dilation_w != 1 || KH * KW > 256 || q->round != KILN_QROUND_FLOAT || q->out == KILN_QOUT_INT32 ||
        q->cs != 1 || OW == 0)
        return 0;
    const __m512 lo = _mm512_set1_ps((float)(q->qmin - q->y_zero)), hi = _mm512_set1_ps((float)(q->qmax - q->y_zero));
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __m512i yz = _mm512_set1_epi32(q->y_zero), xz = _mm512_set1_epi32(x_zero);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    for (size_t c = c0; c < c1; c++) {
        const int32_t wz = w_zero ? w_zero[c * w_zero_stride] : 0;
        float wc[256];
        for (size_t t = 0; t < KH * KW; t++) {
            const uint8_t raw = weight[c * KH * KW + t];
            wc[t] = (float)((w_signed ? (int32_t)(int8_t)raw : (int32_t)raw) - wz);
        }
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

const kiln_qkernel kiln_qkernel_avx512vnni = {"avx512vnni", vnni_qtile, 0, vnni_qgemm_float, vnni_quantize, vnni_depthwise, x86_transpose16};

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

const kiln_qkernel kiln_qkernel_avx2 = {"avx2", avx2_qtile, 0, NULL, NULL, NULL, x86_transpose16};

#endif
