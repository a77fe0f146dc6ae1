/* int8.c — integer GEMM and convolution (kiln_qgemm, kiln_qim2row, kiln_qdepthwise): packing, the
 * correction terms and output stage (portable C, shared by every ISA so results are bit-identical), the
 * portable register tile and the choice of int8 tile at run time. The ISA tiles are in int8_x86.c and
 * int8_neon.c. */
#include "internal.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ---- Portable tile ---- */

/* acc[r·32 + j] = Σ_k u(a[r][k]) · b[k][j] over kq groups of 4 k, u(x) = x ^ a_xor byte (0 or 0x80), for the
 * 16 columns of b0 (j < 16) and of b1 (j ≥ 16). */
static void generic_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                          const int8_t *b1, int32_t *acc) {
    const uint8_t x = (uint8_t)(a_xor & 0xFF);
    for (int r = 0; r < KILN_QGEMM_MR; r++) {
        int32_t s[32] = {0};
        const uint8_t *ar = a[r];
        for (size_t g = 0; g < kq; g++) {
            const int8_t *p0 = b0 + g * 64, *p1 = b1 + g * 64;
            int32_t a0 = ar[4 * g] ^ x, a1 = ar[4 * g + 1] ^ x, a2 = ar[4 * g + 2] ^ x, a3 = ar[4 * g + 3] ^ x;
            for (int j = 0; j < 16; j++) {
                s[j] += a0 * p0[4 * j] + a1 * p0[4 * j + 1] + a2 * p0[4 * j + 2] + a3 * p0[4 * j + 3];
                s[16 + j] += a0 * p1[4 * j] + a1 * p1[4 * j + 1] + a2 * p1[4 * j + 2] + a3 * p1[4 * j + 3];
            }
        }
        memcpy(acc + r * 32, s, sizeof s);
    }
}

const kiln_qkernel kiln_qkernel_generic = {.isa = "generic", .tile = generic_qtile, .a_offset = 0};

/* ---- Dispatch ---- */

static _Atomic(const kiln_qkernel *) q_selected;

static const kiln_qkernel *q_best(void) {
#if defined(__x86_64__)
    kiln_cpu_features f = kiln_cpu_detect();
    if (f.avx512vnni) return &kiln_qkernel_avx512vnni;
    if (f.avx2) return &kiln_qkernel_avx2;
#elif defined(__aarch64__)
    if (kiln_cpu_detect().dotprod) return &kiln_qkernel_neon;
#endif
    return &kiln_qkernel_generic;
}

const kiln_qkernel *kiln_qkernel_current(void) {
    if (kiln_kernels_generic_forced()) return &kiln_qkernel_generic;
    const kiln_qkernel *k = atomic_load_explicit(&q_selected, memory_order_acquire);
    if (k == NULL) {
        k = q_best();
        atomic_store_explicit(&q_selected, k, memory_order_release);
    }
    return k;
}

const char *kiln_qkernels_isa(void) { return kiln_qkernel_current()->isa; }

int kiln_qkernels_select_isa(const char *isa) {
    const kiln_qkernel *k = NULL;
    if (isa == NULL || strcmp(isa, "host") == 0) k = q_best();
    else if (strcmp(isa, "generic") == 0) k = &kiln_qkernel_generic;
#if defined(__x86_64__)
    else if (strcmp(isa, "avx512vnni") == 0 && kiln_cpu_detect().avx512vnni) k = &kiln_qkernel_avx512vnni;
    else if (strcmp(isa, "avx2") == 0 && kiln_cpu_detect().avx2) k = &kiln_qkernel_avx2;
#elif defined(__aarch64__)
    else if (strcmp(isa, "neon") == 0 && kiln_cpu_detect().dotprod) k = &kiln_qkernel_neon;
#endif
    if (k == NULL) return -1;
    atomic_store_explicit(&q_selected, k, memory_order_release);
    return 0;
}

/* ---- Packing ---- */

size_t kiln_qgemm_pack_b_size(size_t k, size_t n) {
    size_t panels = (n + KILN_QGEMM_NR - 1) / KILN_QGEMM_NR;
    return panels * ((k + 3) / 4) * 64;
}

/* `rows` × `cols` of B (at most 4 × 16) into one 64-byte group, element by element (what lies beyond is left). */
static inline void pack_elements(const uint8_t *at, ptrdiff_t ks, ptrdiff_t ns, uint8_t flip, size_t rows, size_t cols,
                                 int8_t *dst) {
    for (size_t jj = 0; jj < cols; jj++)
        for (size_t r = 0; r < rows; r++) dst[jj * 4 + r] = (int8_t)(at[(ptrdiff_t)r * ks + (ptrdiff_t)jj * ns] ^ flip);
}

/* A full 4 × 16 tile of B into one 64-byte group: column j's four k values at bytes 4j..4j+3. */
static inline void pack_tile(const uint8_t *at, ptrdiff_t ks, ptrdiff_t ns, uint8_t flip, int8_t *dst) {
#if defined(__SSE2__)
    if (ns == 1) { /* B stored K × N: four rows of 16 bytes, interleaved byte by byte, then pair by pair */
        const __m128i f = _mm_set1_epi8((char)flip);
        __m128i r0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)at), f);
        __m128i r1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(at + ks)), f);
        __m128i r2 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(at + 2 * ks)), f);
        __m128i r3 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(at + 3 * ks)), f);
        __m128i lo01 = _mm_unpacklo_epi8(r0, r1), hi01 = _mm_unpackhi_epi8(r0, r1);
        __m128i lo23 = _mm_unpacklo_epi8(r2, r3), hi23 = _mm_unpackhi_epi8(r2, r3);
        _mm_storeu_si128((__m128i *)dst, _mm_unpacklo_epi16(lo01, lo23));
        _mm_storeu_si128((__m128i *)(dst + 16), _mm_unpackhi_epi16(lo01, lo23));
        _mm_storeu_si128((__m128i *)(dst + 32), _mm_unpacklo_epi16(hi01, hi23));
        _mm_storeu_si128((__m128i *)(dst + 48), _mm_unpackhi_epi16(hi01, hi23));
        return;
    }
#endif
    if (ks == 1) { /* B stored N × K (a transposed B, a convolution's filters): each column's four values adjacent */
        const uint32_t f = flip * 0x01010101u;
        for (int jj = 0; jj < KILN_QGEMM_NR; jj++) {
            uint32_t w;
            memcpy(&w, at + (ptrdiff_t)jj * ns, 4);
            w ^= f;
            memcpy(dst + 4 * jj, &w, 4);
        }
        return;
    }
    pack_elements(at, ks, ns, flip, 4, KILN_QGEMM_NR, dst);
}

void kiln_qgemm_pack_b(size_t k, size_t n, const void *b, ptrdiff_t ks, ptrdiff_t ns, int b_unsigned,
                       int8_t *packed, int32_t *col_sums) {
    const uint8_t *src = (const uint8_t *)b;
    const uint8_t flip = b_unsigned ? 0x80 : 0; /* uint8 b is stored as b − 128 */
    size_t kq = (k + 3) / 4, panels = (n + KILN_QGEMM_NR - 1) / KILN_QGEMM_NR;
    /* Each 64-byte group of the output is written whole, in order, from a 4 × 16 tile of the source. Writing
     * the panels column by column or row by row instead strides by a panel (often a multiple of 4 KiB, so
     * every write lands in one L1 set), which made packing most of the time it took to load an int8 model. */
    for (size_t p = 0; p < panels; p++) {
        size_t j0 = p * KILN_QGEMM_NR, cols = n - j0 < KILN_QGEMM_NR ? n - j0 : KILN_QGEMM_NR;
        int8_t *panel = packed + p * kq * 64, *dst = panel;
        for (size_t q = 0; q < kq; q++, dst += 64) {
            size_t rows = k - 4 * q < 4 ? k - 4 * q : 4;
            const uint8_t *at = src + (ptrdiff_t)(4 * q) * ks + (ptrdiff_t)j0 * ns;
            if (cols == KILN_QGEMM_NR && rows == 4) {
                pack_tile(at, ks, ns, flip, dst);
                continue;
            }
            memset(dst, 0, 64); /* an edge tile: what lies beyond B is zero */
            pack_elements(at, ks, ns, flip, rows, cols, dst);
        }
        /* Column sums from the packed panel, whose padding is zero. */
        int32_t sums[KILN_QGEMM_NR] = {0};
        for (size_t t = 0; t < kq * 64; t += 64)
            for (int jj = 0; jj < KILN_QGEMM_NR; jj++)
                sums[jj] += panel[t + 4 * jj] + panel[t + 4 * jj + 1] + panel[t + 4 * jj + 2] + panel[t + 4 * jj + 3];
        for (size_t jj = 0; jj < cols; jj++) col_sums[j0 + jj] = sums[jj];
    }
}

/* ---- Output stage ---- */

static inline int32_t q_b_zero(const kiln_qgemm_params *p, size_t n) {
    /* B's zero point in the stored (int8) domain. */
    int32_t z = p->b_zero ? p->b_zero[n * p->b_zero_stride] : 0;
    return p->b_unsigned ? z - 128 : z;
}

/* Writes the final value v (the centred int32 sum plus bias) of column n (which selects the multiplier and
 * float bias) at element offset `at` of the output. */
static inline void q_store_at(const kiln_qgemm_params *p, uint32_t v, ptrdiff_t at, size_t n) {
    if (p->out == KILN_QOUT_INT32) {
        ((int32_t *)p->c)[at] = (int32_t)v;
        return;
    }
    int32_t acc = (int32_t)v;
    double m = p->multiplier[n * p->multiplier_stride], q;
    switch (p->round) {
    case KILN_QROUND_DOUBLE_ZERO_IN: q = nearbyint((double)acc * m + (double)p->y_zero); break;
    case KILN_QROUND_FLOAT: {
        /* As kiln_qstore_row: clamped to the bounds less the zero point (a NaN to the lower one), then rounded. */
        const float lo = (float)(p->qmin - p->y_zero), hi = (float)(p->qmax - p->y_zero);
        float f = (float)acc * (float)m;
        if (p->fbias) f += p->fbias[n];
        f = f > lo ? f : lo;
        f = f < hi ? f : hi;
        f = (f + 12582912.0f) - 12582912.0f; /* |f| < 2^22: rounds half to even, no libm call */
        q = (double)f + (double)p->y_zero;
        break;
    }
    default: q = nearbyint((double)acc * m) + (double)p->y_zero; break;
    }
    if (q != q) q = 0; /* a NaN scale: 0, clamped */
    int32_t y = q <= (double)p->qmin ? p->qmin : (q >= (double)p->qmax ? p->qmax : (int32_t)q);
    if (p->out == KILN_QOUT_UINT8) ((uint8_t *)p->c)[at] = (uint8_t)y;
    else ((int8_t *)p->c)[at] = (int8_t)y;
}

static inline void q_store(const kiln_qgemm_params *p, uint32_t v, size_t r, size_t n) {
    q_store_at(p, v, (ptrdiff_t)r * p->rs + (ptrdiff_t)n * p->cs, n);
}

/* q_store of v[0..cols) at row r, columns n0.. ; the float32 rounding (fused QDQ layers, the hot case) in loops
 * that vectorize. Clamping before rounding gives the same result (the bounds are integers) and keeps |f| < 2^22,
 * where adding and subtracting 1.5·2^23 rounds half to even. */
void kiln_qstore_row(const kiln_qgemm_params *p, const uint32_t *v, size_t cols, size_t r, size_t n0) {
    if (p->out == KILN_QOUT_INT32 || p->round != KILN_QROUND_FLOAT) {
        for (size_t j = 0; j < cols; j++) q_store(p, v[j], r, n0 + j);
        return;
    }
    const float lo = (float)(p->qmin - p->y_zero), hi = (float)(p->qmax - p->y_zero);
    int32_t y[32];
    for (size_t j = 0; j < cols; j++) {
        float f = (float)(int32_t)v[j] * (float)p->multiplier[(n0 + j) * p->multiplier_stride];
        if (p->fbias) f += p->fbias[n0 + j];
        f = f > lo ? f : lo; /* a NaN becomes lo */
        f = f < hi ? f : hi;
        f = (f + 12582912.0f) - 12582912.0f;
        y[j] = (int32_t)f + p->y_zero;
    }
    uint8_t *c = (uint8_t *)p->c + (ptrdiff_t)r * p->rs;
    if (p->cs == 1) {
        for (size_t j = 0; j < cols; j++) c[n0 + j] = (uint8_t)y[j];
    } else {
        for (size_t j = 0; j < cols; j++) c[(ptrdiff_t)(n0 + j) * p->cs] = (uint8_t)y[j];
    }
}

/* ---- GEMM ---- */

/* kiln_qgemm of an A in pieces (a_segments ≥ 2): blocks of rows gathered into contiguous rows, then the product. */
static void q_gemm_gathered(const kiln_qgemm_params *p, size_t segments, size_t r0, size_t r1, size_t n0, size_t n1) {
    enum { BLOCK = 8 * KILN_QGEMM_MR };
    const size_t K = p->k, piece = K / segments, width = p->out == KILN_QOUT_INT32 ? 4 : 1;
    uint8_t *rows = (uint8_t *)kiln_scratch(1, (BLOCK * K + 3) / 4 + 1);
    if (rows == NULL || piece * segments != K) return;
    for (size_t rb = r0; rb < r1; rb += BLOCK) {
        const size_t count = r1 - rb < BLOCK ? r1 - rb : BLOCK;
        for (size_t i = 0; i < count; i++)
            for (size_t s = 0; s < segments; s++)
                memcpy(rows + i * K + s * piece, p->a + (rb + i) * p->lda + (ptrdiff_t)s * p->a_segment_stride, piece);
        kiln_qgemm_params q = *p;
        q.a = rows;
        q.lda = K;
        q.m = count;
        q.a_segments = 0;
        q.a_zero_rows = p->a_zero_rows ? p->a_zero_rows + rb : NULL;
        q.c = (uint8_t *)p->c + (ptrdiff_t)rb * p->rs * (ptrdiff_t)width;
        kiln_qgemm(&q, 0, count, n0, n1);
    }
}

void kiln_qgemm(const kiln_qgemm_params *p, size_t r0, size_t r1, size_t n0, size_t n1) {
    if (r1 > p->m) r1 = p->m;
    if (n1 > p->n) n1 = p->n;
    if (r0 >= r1 || n0 >= n1) return;
    const kiln_qkernel *kk = kiln_qkernel_current();
    const size_t segments = p->a_segments > 1 ? p->a_segments : 1;
    if (kk->gemm_float && p->round == KILN_QROUND_FLOAT && p->out != KILN_QOUT_INT32 && p->a_zero_rows == NULL &&
        (segments == 1 || (p->k % segments == 0 && (p->k / segments) % 4 == 0))) {
        kk->gemm_float(p, r0, r1, n0, n1);
        return;
    }
    if (segments > 1) {
        q_gemm_gathered(p, segments, r0, r1, n0, n1);
        return;
    }
    const size_t K = p->k, kq = K / 4, kt = K % 4, panel = ((K + 3) / 4) * 64;
    const uint32_t a_xor = p->a_signed ? 0x80808080u : 0;
    const uint32_t a_shift = p->a_signed ? 128u : 0u;
    int need_rowsum = 0;
    for (size_t n = n0; n < n1 && !need_rowsum; n++) need_rowsum = q_b_zero(p, n) != 0;
    int32_t acc[KILN_QGEMM_MR * 32], acct[KILN_QGEMM_MR * 32];
    uint32_t rowsum[KILN_QGEMM_MR] = {0}, za[KILN_QGEMM_MR];
    uint8_t tail[KILN_QGEMM_MR][4];
    const uint8_t *ap[KILN_QGEMM_MR], *tp[KILN_QGEMM_MR];
    for (size_t r = r0; r < r1; r += KILN_QGEMM_MR) {
        size_t rows = r1 - r < KILN_QGEMM_MR ? r1 - r : KILN_QGEMM_MR;
        for (size_t i = 0; i < KILN_QGEMM_MR; i++) {
            size_t row = r + (i < rows ? i : rows - 1);
            ap[i] = p->a + row * p->lda;
            memset(tail[i], 0, 4);
            for (size_t j = 0; j < kt; j++) tail[i][j] = ap[i][kq * 4 + j];
            tp[i] = tail[i];
            za[i] = (uint32_t)(p->a_zero_rows ? p->a_zero_rows[row] : p->a_zero) + a_shift;
            if (need_rowsum && i < rows) {
                uint32_t s = 0;
                const uint8_t x = (uint8_t)(a_xor & 0xFF);
                for (size_t j = 0; j < K; j++) s += (uint32_t)(uint8_t)(ap[i][j] ^ x);
                rowsum[i] = s;
            }
        }
        for (size_t n = n0; n < n1; n += 32) {
            size_t cols = n1 - n < 32 ? n1 - n : 32;
            const int8_t *b0 = p->packed_b + (n / KILN_QGEMM_NR) * panel;
            const int8_t *b1 = cols > KILN_QGEMM_NR ? b0 + panel : b0;
            kk->tile(kq, ap, a_xor, b0, b1, acc);
            if (kt) {
                kk->tile(1, tp, a_xor, b0 + kq * 64, b1 + kq * 64, acct);
                for (size_t i = 0; i < rows; i++)
                    for (size_t j = 0; j < cols; j++) acc[i * 32 + j] = (int32_t)((uint32_t)acc[i * 32 + j] + (uint32_t)acct[i * 32 + j]);
            }
            /* Per column: column sum, B zero point, bias (and the tile's a_offset); then per row, vector-friendly
             * loops over the columns. */
            uint32_t csum[32], zbv[32], base[32];
            for (size_t j = 0; j < cols; j++) {
                size_t col = n + j;
                csum[j] = (uint32_t)p->col_sums[col];
                zbv[j] = (uint32_t)q_b_zero(p, col);
                base[j] = (uint32_t)kk->a_offset * csum[j] + (p->bias ? (uint32_t)p->bias[col] : 0u);
            }
            for (size_t i = 0; i < rows; i++) {
                uint32_t v[32];
                const uint32_t t = rowsum[i] - (uint32_t)K * za[i], zai = za[i];
                for (size_t j = 0; j < cols; j++) v[j] = (uint32_t)acc[i * 32 + j] + base[j] - zai * csum[j] - zbv[j] * t;
                kiln_qstore_row(p, v, cols, r + i, n);
            }
        }
    }
}

/* ---- Convolution helpers ---- */

void kiln_qim2row(const kiln_conv2d_params *p, const uint8_t *input, size_t group, uint8_t pad_value,
                  uint8_t *rows, size_t ld, size_t p0, size_t p1) {
    if (p->groups == 0 || p->stride_h == 0 || p->stride_w == 0 || p->out_width == 0) return;
    const size_t cg = p->in_channels / p->groups, KH = p->kernel_h, KW = p->kernel_w;
    const size_t H = p->in_height, W = p->in_width, OW = p->out_width, K = cg * KH * KW;
    for (size_t px = p0; px < p1; px++) {
        uint8_t *row = rows + (px - p0) * ld;
        size_t oy = px / OW, ox = px % OW;
        long y0 = (long)(oy * p->stride_h) - (long)p->pad_top, x0 = (long)(ox * p->stride_w) - (long)p->pad_left;
        size_t at = 0;
        for (size_t c = 0; c < cg; c++) {
            const uint8_t *plane = input + (group * cg + c) * H * W;
            for (size_t ky = 0; ky < KH; ky++) {
                long iy = y0 + (long)(ky * p->dilation_h);
                if (iy < 0 || iy >= (long)H) {
                    memset(row + at, pad_value, KW);
                    at += KW;
                    continue;
                }
                const uint8_t *line = plane + (size_t)iy * W;
                for (size_t kx = 0; kx < KW; kx++) {
                    long ix = x0 + (long)(kx * p->dilation_w);
                    row[at++] = (ix < 0 || ix >= (long)W) ? pad_value : line[ix];
                }
            }
        }
        if (ld > K) memset(row + K, 0, ld - K);
    }
}

void kiln_qtranspose_hwc(const uint8_t *input, size_t c, size_t hw, uint8_t *output, size_t i0, size_t i1) {
    if (c == 3) {
        /* An image's 3 planes (a stem's input): each pixel's 3 bytes together, which the compiler turns into
         * interleaving shuffles. */
        const uint8_t *restrict r = input, *restrict g = input + hw, *restrict b = input + 2 * hw;
        uint8_t *restrict out = output;
        for (size_t i = i0; i < i1; i++) {
            out[3 * i] = r[i];
            out[3 * i + 1] = g[i];
            out[3 * i + 2] = b[i];
        }
        return;
    }
    /* Blocks of 16 pixels × all channels keep both sides in cache lines. */
    for (size_t b = i0; b < i1; b += 16) {
        size_t e = b + 16 < i1 ? b + 16 : i1;
        for (size_t ch = 0; ch < c; ch++) {
            const uint8_t *src = input + ch * hw;
            for (size_t i = b; i < e; i++) output[i * c + ch] = src[i];
        }
    }
}

void kiln_qpad_hwc(const uint8_t *input, size_t c, size_t h, size_t w, size_t pad_top, size_t pad_left, size_t wp,
                   uint8_t pad_value, uint8_t *output, size_t y0, size_t y1) {
    const kiln_qkernel *kk = kiln_qkernel_current();
    /* The ISA's 16 × 16 byte transpose, where it has one, moves whole blocks of 16 pixels × 16 channels. */
    void (*const transpose16)(const uint8_t *, size_t, uint8_t *, size_t) = c % 16 == 0 ? kk->transpose16 : NULL;
    for (size_t py = y0; py < y1; py++) {
        uint8_t *line = output + py * wp * c;
        const long iy = (long)py - (long)pad_top;
        if (iy < 0 || iy >= (long)h) {
            memset(line, pad_value, wp * c);
            continue;
        }
        /* The columns inside the image: [x0, x1) padded. */
        const size_t x0 = pad_left < wp ? pad_left : wp, x1 = pad_left + w < wp ? pad_left + w : wp;
        memset(line, pad_value, x0 * c);
        memset(line + x1 * c, pad_value, (wp - x1) * c);
        const uint8_t *src = input + (size_t)iy * w; /* padded column x ≥ x0 ≥ pad_left reads src[x − pad_left] */
        /* Blocks of 16 pixels × all channels keep both sides in cache lines. */
        for (size_t b = x0; b < x1; b += 16) {
            const size_t e = b + 16 < x1 ? b + 16 : x1;
            if (transpose16 && e - b == 16) {
                for (size_t ch = 0; ch < c; ch += 16) transpose16(src + ch * h * w + (b - pad_left), h * w, line + b * c + ch, c);
                continue;
            }
            for (size_t ch = 0; ch < c; ch++) {
                const uint8_t *plane = src + ch * h * w;
                for (size_t x = b; x < e; x++) line[x * c + ch] = plane[x - pad_left];
            }
        }
    }
}

/* memcpy and memset of the few bytes of one window row (a stem's 3 pixels × 3 channels): up to 16 bytes as two
 * overlapping fixed-size moves, which compile to plain loads and stores where the library calls would dominate. */
static inline void q_copy_small(uint8_t *dst, const uint8_t *src, size_t n) {
    /* The first and the last sizeof(T) bytes, which overlap or meet for sizeof(T) ≤ n ≤ 2·sizeof(T). */
#define Q_COPY_ENDS(T)                                 \
    do {                                               \
        T first, last;                                 \
        memcpy(&first, src, sizeof first);             \
        memcpy(&last, src + n - sizeof last, sizeof last); \
        memcpy(dst, &first, sizeof first);             \
        memcpy(dst + n - sizeof last, &last, sizeof last); \
    } while (0)
    if (n > 16) memcpy(dst, src, n);
    else if (n >= 8) Q_COPY_ENDS(uint64_t);
    else if (n >= 4) Q_COPY_ENDS(uint32_t);
    else if (n >= 2) Q_COPY_ENDS(uint16_t);
    else if (n == 1) dst[0] = src[0];
#undef Q_COPY_ENDS
}

/* memset through q_copy_small's moves, for up to 16 bytes. */
static inline void q_fill_small(uint8_t *dst, uint8_t value, size_t n) {
    if (n > 16) {
        memset(dst, value, n);
        return;
    }
    uint8_t v[16];
    for (int i = 0; i < 16; i++) v[i] = value;
    q_copy_small(dst, v, n);
}

void kiln_qim2row_hwc(const kiln_conv2d_params *p, const uint8_t *hwc, size_t group, uint8_t pad_value, uint8_t *rows,
                      size_t ld, size_t p0, size_t p1) {
    if (p->groups == 0 || p->stride_h == 0 || p->stride_w == 0 || p->out_width == 0) return;
    const size_t C = p->in_channels, cg = C / p->groups, KH = p->kernel_h, KW = p->kernel_w;
    const size_t H = p->in_height, W = p->in_width, OW = p->out_width, K = cg * KH * KW;
    const uint8_t *base = hwc + group * cg;
    for (size_t px = p0; px < p1; px++) {
        uint8_t *row = rows + (px - p0) * ld;
        size_t oy = px / OW, ox = px % OW;
        long y0 = (long)(oy * p->stride_h) - (long)p->pad_top, x0 = (long)(ox * p->stride_w) - (long)p->pad_left;
        uint8_t *at = row;
        for (size_t ky = 0; ky < KH; ky++) {
            long iy = y0 + (long)(ky * p->dilation_h);
            if (iy < 0 || iy >= (long)H) {
                q_fill_small(at, pad_value, KW * cg);
                at += KW * cg;
                continue;
            }
            const uint8_t *line = base + (size_t)iy * W * C;
            if (p->dilation_w == 1 && cg == C && x0 >= 0 && x0 + (long)KW <= (long)W) {
                q_copy_small(at, line + (size_t)x0 * C, KW * C); /* the window's pixels are adjacent */
                at += KW * C;
                continue;
            }
            for (size_t kx = 0; kx < KW; kx++, at += cg) {
                long ix = x0 + (long)(kx * p->dilation_w);
                if (ix < 0 || ix >= (long)W) q_fill_small(at, pad_value, cg);
                else q_copy_small(at, line + (size_t)ix * C, cg);
            }
        }
        if (ld > K) q_fill_small(row + K, 0, ld - K);
    }
}

void kiln_qdepthwise(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero,
                     const uint8_t *weight, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                     const kiln_qgemm_params *q, size_t c0, size_t c1) {
    if (p->stride_h == 0 || p->stride_w == 0 || p->dilation_h == 0 || p->dilation_w == 0) return;
    const kiln_qkernel *kk = kiln_qkernel_current();
    if (kk->depthwise && kk->depthwise(p, input, x_signed, x_zero, weight, w_signed, w_zero, w_zero_stride, q, c0, c1)) return;
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width;
    const size_t KH = p->kernel_h, KW = p->kernel_w, sw = p->stride_w;
    int32_t *acc = (int32_t *)kiln_scratch(0, OW + KH * KW + 16);
    if (acc == NULL) return;
    int32_t *wc = acc + OW;
    for (size_t c = c0; c < c1; c++) {
        int32_t wz = w_zero ? w_zero[c * w_zero_stride] : 0;
        for (size_t t = 0; t < KH * KW; t++) {
            uint8_t raw = weight[c * KH * KW + t];
            wc[t] = (w_signed ? (int32_t)(int8_t)raw : (int32_t)raw) - wz;
        }
        const uint8_t *plane = input + c * H * W;
        int32_t bias = q->bias ? q->bias[c] : 0;
        for (size_t oy = 0; oy < OH; oy++) {
            for (size_t ox = 0; ox < OW; ox++) acc[ox] = bias;
            for (size_t ky = 0; ky < KH; ky++) {
                long iy = (long)(oy * p->stride_h) - (long)p->pad_top + (long)(ky * p->dilation_h);
                if (iy < 0 || iy >= (long)H) continue;
                const uint8_t *line = plane + (size_t)iy * W;
                for (size_t kx = 0; kx < KW; kx++) {
                    int32_t w = wc[ky * KW + kx];
                    long off = (long)(kx * p->dilation_w) - (long)p->pad_left; /* ix = ox·sw + off */
                    size_t lo = off >= 0 ? 0 : (size_t)((-off + (long)sw - 1) / (long)sw);
                    long last = (long)W - 1 - off; /* ox·sw <= last */
                    if (last < 0) continue;
                    size_t hi = (size_t)last / sw + 1;
                    if (hi > OW) hi = OW;
                    if (lo >= hi) continue;
                    const uint8_t *src = line + (long)(lo * sw) + off;
                    int32_t *dst = acc + lo;
                    const size_t len = hi - lo;
                    if (sw == 1) { /* contiguous: vectorizes */
                        if (x_signed) {
                            for (size_t i = 0; i < len; i++) dst[i] += ((int32_t)(int8_t)src[i] - x_zero) * w;
                        } else {
                            for (size_t i = 0; i < len; i++) dst[i] += ((int32_t)src[i] - x_zero) * w;
                        }
                    } else if (x_signed) {
                        for (size_t i = 0; i < len; i++) dst[i] += ((int32_t)(int8_t)src[i * sw] - x_zero) * w;
                    } else {
                        for (size_t i = 0; i < len; i++) dst[i] += ((int32_t)src[i * sw] - x_zero) * w;
                    }
                }
            }
            if (q->round == KILN_QROUND_FLOAT && q->out != KILN_QOUT_INT32 && q->cs == 1) {
                /* The fused-QDQ output stage over the row, one channel's multiplier: vectorizes (as kiln_qstore_row). */
                const float lo = (float)(q->qmin - q->y_zero), hi = (float)(q->qmax - q->y_zero);
                const float m = (float)q->multiplier[c * q->multiplier_stride], fb = q->fbias ? q->fbias[c] : 0.0f;
                uint8_t *out = (uint8_t *)q->c + (ptrdiff_t)c * q->rs + (ptrdiff_t)(oy * OW);
                for (size_t ox = 0; ox < OW; ox++) {
                    float f = (float)acc[ox] * m;
                    if (q->fbias) f += fb;
                    f = f > lo ? f : lo;
                    f = f < hi ? f : hi;
                    f = (f + 12582912.0f) - 12582912.0f;
                    out[ox] = (uint8_t)((int32_t)f + q->y_zero);
                }
            } else {
                for (size_t ox = 0; ox < OW; ox++)
                    q_store_at(q, (uint32_t)acc[ox], (ptrdiff_t)c * q->rs + (ptrdiff_t)(oy * OW + ox) * q->cs, c);
            }
        }
    }
}

/* ---- Winograd F(2×2, 3×3) (kiln_qwinograd_*) ----
 * Packed filters: for each of the 16 tile positions, panels of 8 filters; within a panel, channels in groups of 4
 * (zero-padded), each group 8 filters × 4 channels of int16 (filter j's 4 at 4j..4j+3): the int16 form of
 * kiln_qgemm's panels, which the ISA tiles read as they read widened rows. */

int kiln_qwinograd_preferred(void) { return kiln_qkernel_current()->winograd != NULL; }

size_t kiln_qwinograd_pack_size(size_t c, size_t n) { return 16 * ((c + 3) / 4 * 4) * ((n + 7) / 8 * 8); }

int kiln_qwinograd_pack(size_t c, size_t n, const uint8_t *w, int w_unsigned, const int32_t *w_zero, int16_t *packed,
                        int32_t *col_sums) {
    const size_t groups = (c + 3) / 4, panels = (n + 7) / 8;
    /* The centred values and their transforms (at most 9 × 255) fit int16; the sums of the transformed products
     * wrap modulo 2^32 and come out exact when 4 × Σ a·g (a ≤ 255, 9c terms) fits int32 with its two low bits free:
     * 9 · 255 · max|g| · c < 2^29. */
    int64_t largest = 0;
    for (size_t j = 0; j < n; j++)
        for (size_t i = 0; i < c * 9; i++) {
            const uint8_t raw = w[j * c * 9 + i];
            const int64_t g = (w_unsigned ? (int64_t)raw : (int64_t)(int8_t)raw) - (w_zero ? w_zero[j] : 0);
            largest = g < 0 && -g > largest ? -g : (g > largest ? g : largest);
        }
    if (largest > 255 || 9 * 255 * largest * (int64_t)c >= ((int64_t)1 << 29)) return 0;
    for (size_t j = 0; j < n; j++) col_sums[j] = 0;
    /* One 8-filter × 4-channel group at a time: its 16 positions' 32 values each are written whole. */
    for (size_t jb = 0; jb < panels; jb++) {
        for (size_t cg = 0; cg < groups; cg++) {
            int16_t group[16][32] = {{0}};
            for (size_t jj = 0; jj < 8 && jb * 8 + jj < n; jj++) {
                const size_t j = jb * 8 + jj;
                for (size_t cc = 0; cc < 4 && cg * 4 + cc < c; cc++) {
                    const uint8_t *src = w + (j * c + cg * 4 + cc) * 9;
                    const int32_t zero = w_zero ? w_zero[j] : 0;
                    int32_t g[3][3], t[4][3];
                    for (int y = 0; y < 3; y++)
                        for (int x = 0; x < 3; x++) {
                            g[y][x] = (w_unsigned ? (int32_t)src[y * 3 + x] : (int32_t)(int8_t)src[y * 3 + x]) - zero;
                            col_sums[j] += g[y][x];
                        }
                    /* V = G' g G'ᵀ with G' = 2G = [[2,0,0],[1,1,1],[1,−1,1],[0,0,2]]: rows, then columns. */
                    for (int x = 0; x < 3; x++) {
                        t[0][x] = 2 * g[0][x];
                        t[1][x] = g[0][x] + g[1][x] + g[2][x];
                        t[2][x] = g[0][x] - g[1][x] + g[2][x];
                        t[3][x] = 2 * g[2][x];
                    }
                    for (int y = 0; y < 4; y++) {
                        const int32_t v[4] = {2 * t[y][0], t[y][0] + t[y][1] + t[y][2], t[y][0] - t[y][1] + t[y][2], 2 * t[y][2]};
                        for (int x = 0; x < 4; x++) group[y * 4 + x][jj * 4 + cc] = (int16_t)v[x];
                    }
                }
            }
            for (size_t pos = 0; pos < 16; pos++) memcpy(packed + ((pos * panels + jb) * groups + cg) * 32, group[pos], sizeof group[pos]);
        }
    }
    return 1;
}

void kiln_qwinograd_input(const uint8_t *padded, size_t wp, size_t c, size_t py, size_t px, size_t ch, uint8_t xb, int32_t u[16]) {
    int32_t d[4][4], e[4][4];
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) d[y][x] = (uint8_t)(padded[((py + (size_t)y) * wp + px + (size_t)x) * c + ch] ^ xb);
    for (int x = 0; x < 4; x++) {
        e[0][x] = d[0][x] - d[2][x];
        e[1][x] = d[1][x] + d[2][x];
        e[2][x] = d[2][x] - d[1][x];
        e[3][x] = d[1][x] - d[3][x];
    }
    for (int y = 0; y < 4; y++) {
        u[y * 4 + 0] = e[y][0] - e[y][2];
        u[y * 4 + 1] = e[y][1] + e[y][2];
        u[y * 4 + 2] = e[y][2] - e[y][1];
        u[y * 4 + 3] = e[y][1] - e[y][3];
    }
}

/* The output transform Aᵀ M A of one filter's 16 sums, divided by 4: y[dy·2 + dx]. */
static void wg_output(const uint32_t m[16], uint32_t y[4]) {
    uint32_t t[2][4];
    for (int x = 0; x < 4; x++) {
        t[0][x] = m[x] + m[4 + x] + m[8 + x];
        t[1][x] = m[4 + x] - m[8 + x] - m[12 + x];
    }
    for (int r = 0; r < 2; r++) {
        y[r * 2 + 0] = (uint32_t)((int32_t)(t[r][0] + t[r][1] + t[r][2]) >> 2);
        y[r * 2 + 1] = (uint32_t)((int32_t)(t[r][1] - t[r][2] - t[r][3]) >> 2);
    }
}

void kiln_qwinograd_conv(const kiln_conv2d_params *p, const uint8_t *padded, size_t wp, const int16_t *packed,
                         const kiln_qgemm_params *q, size_t ty0, size_t ty1) {
    const kiln_qkernel *kk = kiln_qkernel_current();
    if (kk->winograd) {
        kk->winograd(p, padded, wp, packed, q, ty0, ty1);
        return;
    }
    const size_t C = p->in_channels, N = q->n, OH = p->out_height, OW = p->out_width, TX = (OW + 1) / 2;
    const size_t groups = (C + 3) / 4, panels = (N + 7) / 8;
    const uint8_t xb = q->a_signed ? 0x80 : 0;
    const uint32_t za = (uint32_t)q->a_zero + (q->a_signed ? 128u : 0u);
    int32_t *u = (int32_t *)kiln_scratch(0, 16 * C + 16);
    if (u == NULL) return;
    for (size_t ty = ty0; ty < ty1; ty++) {
        for (size_t tx = 0; tx < TX; tx++) {
            for (size_t ch = 0; ch < C; ch++) kiln_qwinograd_input(padded, wp, C, 2 * ty, 2 * tx, ch, xb, u + ch * 16);
            for (size_t j = 0; j < N; j++) {
                uint32_t m[16] = {0}, y[4];
                for (size_t pos = 0; pos < 16; pos++) {
                    const int16_t *v = packed + (pos * panels + j / 8) * groups * 32 + (j % 8) * 4;
                    for (size_t ch = 0; ch < C; ch++) m[pos] += (uint32_t)(u[ch * 16 + pos] * v[(ch / 4) * 32 + ch % 4]);
                }
                wg_output(m, y);
                const uint32_t colc = (q->bias ? (uint32_t)q->bias[j] : 0u) - za * (uint32_t)q->col_sums[j];
                for (size_t d = 0; d < 4; d++) {
                    const size_t oy = 2 * ty + d / 2, ox = 2 * tx + d % 2;
                    if (oy >= OH || ox >= OW) continue;
                    const uint32_t v = y[d] + colc;
                    kiln_qstore_row(q, &v, 1, oy * OW + ox, j);
                }
            }
        }
    }
}

/* ---- QuantizeLinear to uint8/int8, per tensor ---- */

void kiln_float_range(const float *x, size_t n, float *lo, float *hi) {
    /* 16 independent lanes, so the compiler keeps them in vector registers (min/max without reassociation); a NaN
     * fails both comparisons and leaves its lane as it was. */
    float l[16] = {0}, h[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) {
            const float v = x[i + k];
            l[k] = v < l[k] ? v : l[k];
            h[k] = v > h[k] ? v : h[k];
        }
    for (; i < n; i++) {
        if (x[i] < l[0]) l[0] = x[i];
        if (x[i] > h[0]) h[0] = x[i];
    }
    float a = 0, b = 0;
    for (int k = 0; k < 16; k++) {
        a = l[k] < a ? l[k] : a;
        b = h[k] > b ? h[k] : b;
    }
    *lo = a;
    *hi = b;
}

void kiln_quantize_u8(const float *x, size_t n, float scale, int32_t zero, int is_signed, uint8_t *y) {
    const kiln_qkernel *kk = kiln_qkernel_current();
    if (kk->quantize) {
        kk->quantize(x, n, scale, zero, is_signed, y);
        return;
    }
    const double s = (double)scale;
    const float lo = is_signed ? -128.0f : 0.0f, hi = is_signed ? 127.0f : 255.0f, z = (float)zero;
    for (size_t i = 0; i < n; i++) {
        float q = (float)((double)x[i] / s);
        float r;
        if (q != q) {
            r = 0.0f; /* NaN has no integer value: 0, clamped */
        } else {
            /* Clamped before rounding (same result, the bounds being integers), then rounded half to even. */
            float c = q > lo - z - 1.0f ? q : lo - z - 1.0f;
            c = c < hi - z + 1.0f ? c : hi - z + 1.0f;
            r = ((c + 12582912.0f) - 12582912.0f) + z;
        }
        r = r < lo ? lo : (r > hi ? hi : r);
        y[i] = is_signed ? (uint8_t)(int8_t)r : (uint8_t)r;
    }
}

void kiln_dequantize_u8(const uint8_t *x, size_t n, int is_signed, int32_t zero, float scale, float *y) {
    const kiln_qkernel *kk = kiln_qkernel_current();
    if (kk->dequantize) {
        kk->dequantize(x, n, is_signed, zero, scale, y);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const int32_t v = is_signed ? (int32_t)(int8_t)x[i] : (int32_t)x[i];
        y[i] = (float)(v - zero) * scale;
    }
}

/* ---- The QDQ residual sum ---- */

void kiln_qadd(const uint8_t *a, uint8_t a_xor, int32_t a_offset, float a_scale, const uint8_t *b, uint8_t b_xor,
               int32_t b_offset, float b_scale, size_t n, float y_scale, int32_t y_zero, int y_signed, uint8_t *y) {
    const kiln_qkernel *kk = kiln_qkernel_current();
    if (kk->add) {
        kk->add(a, a_xor, a_offset, a_scale, b, b_xor, b_offset, b_scale, n, y_scale, y_zero, y_signed, y);
        return;
    }
    /* Blocks of floats that stay in L1 between the sum and kiln_quantize_u8. Each operation is its own statement,
     * so no compiler contracts the product and the sum into one fused multiply-add. */
    float f[256];
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        const size_t m = n - i0 < 256 ? n - i0 : 256;
        for (size_t i = 0; i < m; i++) {
            const float da = (float)((int32_t)(uint8_t)(a[i0 + i] ^ a_xor) - a_offset) * a_scale;
            const float db = (float)((int32_t)(uint8_t)(b[i0 + i] ^ b_xor) - b_offset) * b_scale;
            f[i] = da + db;
        }
        kiln_quantize_u8(f, m, y_scale, y_zero, y_signed, y + i0);
    }
}
