/*
 * kernels.h — the int8/uint8 kernels of kiln.dsp, written once against hvx.h.
 *
 * The same source runs on the host (the functional model, inside the plugin) and on Hexagon (the real
 * instructions, inside the exactness harness). Kernels take every buffer from the caller — no allocation,
 * no libc, no division — so they build freestanding. Shapes are validated by the caller (the plugin checks
 * payload sizes with checked arithmetic before calling).
 *
 * Requantization (Documentation/targets/DSP.md, "Requantization"): a real scale 0 < s < 1 is represented by
 * a Q31 multiplier M in [2^30, 2^31) and a right shift n in [0, 31], s ≈ M · 2^-31 · 2^-n. An int32
 * accumulator a becomes
 *     t1 = sat32(floor((a·M + 2^30) / 2^31))          rounded Q31 product (vmpyewuh + vmpyowh_rnd_sacc)
 *     t2 = n > 0 ? floor(sat32(t1 + 2^(n-1)) / 2^n) : t1     round half up (vaddwsat + vasrw)
 *     t3 = sat32(t2 + zero_point)                      (vaddwsat)
 *     y  = clamp(t3, -128, 127) for int8, clamp(t3, 0, 255) for uint8   (vpackwh_sat + vpackhb/hub_sat)
 * dsp_requant_scalar below is that definition in plain C.
 */
#ifndef KILN_DSP_KERNELS_H
#define KILN_DSP_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* A requantization: scale ≈ multiplier · 2^-31 · 2^-shift, then + zero_point (see above). */
typedef struct dsp_requant {
    int32_t multiplier;   /* [2^30, 2^31), or 0 (every result is the zero point) */
    int32_t shift;        /* 0..31 */
    int32_t zero_point;
} dsp_requant;

/* The requantization of one accumulator, in plain C: the definition the vector code must match. */
static inline int32_t dsp_requant_scalar(int32_t acc, const dsp_requant *q, int out_unsigned) {
    int64_t p = (int64_t)acc * q->multiplier + ((int64_t)1 << 30);
    int64_t t = p >= 0 ? p >> 31 : -((-(p + 1)) >> 31) - 1;                  /* floor */
    if (t > INT32_MAX) t = INT32_MAX;
    if (q->shift > 0) {
        t += (int64_t)1 << (q->shift - 1);
        if (t > INT32_MAX) t = INT32_MAX;
        t = t >= 0 ? t >> q->shift : -((-(t + 1)) >> q->shift) - 1;
    }
    t += q->zero_point;
    int64_t lo = out_unsigned ? 0 : -128, hi = out_unsigned ? 255 : 127;
    return (int32_t)(t < lo ? lo : t > hi ? hi : t);
}

/* Requantizes n int32 values into int8 (or uint8 when out_unsigned) bytes. */
void dsp_requant_i32(const int32_t *in, size_t n, const dsp_requant *q, int out_unsigned, uint8_t *out);

/* Bytes of B packed for dsp_qgemm: ceil(N/32) column blocks × ceil(K/4) groups × 128 bytes. */
size_t dsp_gemm_packed_size(size_t K, size_t N);

/* Packs B (K×N row-major bytes, row stride ldb) for dsp_qgemm: block j, group g holds, at byte 4c + i,
 * B[4g + i][32j + c] (zero outside B). colsum[n] = sum over k of B[k][n] as signed or unsigned bytes. */
void dsp_gemm_pack_b(const uint8_t *B, size_t K, size_t N, size_t ldb, int b_unsigned, uint8_t *packed, int32_t *colsum);

/* A quantized matrix product C = requant((A - za)(B - zb) + bias), on bytes. */
typedef struct dsp_gemm {
    size_t M, N, K;
    const uint8_t *A; size_t lda; int a_unsigned; int32_t za;        /* M×K, row stride lda */
    const uint8_t *B_packed; const int32_t *colsum; int b_unsigned; int32_t zb;  /* from dsp_gemm_pack_b */
    const int32_t *bias_row;      /* M values added to row m, or NULL */
    const int32_t *bias_col;      /* N values added to column n, or NULL */
    dsp_requant requant; int out_unsigned;
    const dsp_requant *row_requant; /* M entries (row m uses row_requant[m]: per-channel scales), or NULL */
    uint8_t *C; size_t ldc;       /* M×N, row stride ldc */
} dsp_gemm;

/* Runs a dsp_gemm: per row, 128 columns at a time in four int32 vectors accumulated with vrmpy. */
void dsp_qgemm(const dsp_gemm *g);

/* A quantized 2-D convolution of one NCHW image (groups include depthwise). */
typedef struct dsp_conv {
    size_t C, H, W, O, group, KH, KW, stride_h, stride_w, pad_top, pad_left, dil_h, dil_w, OH, OW;
    const uint8_t *X; int x_unsigned; int32_t zx;          /* C×H×W */
    const uint8_t *Wt; int w_unsigned; int32_t zw;         /* O × (C/group) × KH × KW */
    const int32_t *bias;                                   /* O values or NULL */
    dsp_requant requant; int out_unsigned;
    const dsp_requant *channel_requant;                    /* O entries (per-channel weight scales), or NULL */
    uint8_t *Y;                                            /* O×OH×OW */
    uint8_t *scratch; int32_t *scratch_colsum;             /* dsp_conv_scratch_bytes / OH·OW int32 */
} dsp_conv;

/* The bytes of dsp_conv.scratch that a convolution of these sizes needs. */
size_t dsp_conv_scratch_bytes(size_t C, size_t group, size_t KH, size_t KW, size_t OH, size_t OW);

/* Runs a dsp_conv: each group is the product of its weights (as A) and the im2col of its input (as B,
 * packed straight from the image; padding reads as zx). */
void dsp_qconv(const dsp_conv *c);

/* Quantized elementwise add of two equal-length byte tensors:
 *   y = requant_out(requant_a((a - za) << 20) + requant_b((b - zb) << 20))
 * qa and qb carry s_a/(2·max(s_a,s_b)) and s_b/(2·max(s_a,s_b)) (their zero points unused), qout carries
 * 2·max(s_a,s_b)/(2^20·s_y) and the output zero point. */
void dsp_qadd(const uint8_t *a, int32_t za, const uint8_t *b, int32_t zb, size_t n, int is_unsigned,
              const dsp_requant *qa, const dsp_requant *qb, const dsp_requant *qout, uint8_t *y);

/* y = min(max(x, lo), hi) on int8 (or uint8) bytes: Relu is lo = the zero point. */
void dsp_clip(const uint8_t *x, size_t n, int32_t lo, int32_t hi, int is_unsigned, uint8_t *y);

/* A 2-D pooling of one C×H×W image into C×OH×OW. */
typedef struct dsp_pool {
    size_t C, H, W, KH, KW, stride_h, stride_w, pad_top, pad_left, OH, OW;
    int is_unsigned;
    int count_include_pad;        /* average only: divide by KH·KW instead of the in-image count */
    const uint8_t *X; uint8_t *Y;
} dsp_pool;

/* Max pooling (vmaxb / vmaxub over the window; padding never wins). */
void dsp_maxpool(const dsp_pool *p);

/* The Q15 reciprocal of count (1..128): round(32768 / count), at most 32767. */
int32_t dsp_recip_q15(int32_t count);

/* Average pooling: int16 window sums (vaddhsat), times the Q15 reciprocal of each position's count
 * (vmpyhvsrs: round half up of sum · r / 2^15). The window must hold at most 128 elements; returns 0 on
 * success, -1 when it is larger. */
int dsp_avgpool(const dsp_pool *p);

/* Rearranges a 256-entry byte table (entry k for input byte k, read as unsigned) into the two vectors that
 * vlut32 reads: entry k = 32·s + j (segment s = k >> 5) goes to byte 128·(s >> 2) + 2·(j + 32·(s & 1)) + ((s >> 1) & 1).
 * Done once per table (the plugin does it at compile time). */
void dsp_lut_layout(const uint8_t table[256], uint8_t vlut[256]);

/* y[i] = table[x[i]] with the table in dsp_lut_layout's order: 8 vlut32 lookups per 128 bytes (segment s of
 * the table matches the bytes whose top 3 bits are s; the others read 0 and the 8 results are ORed). Activations
 * quantized through a lookup table. */
void dsp_lut(const uint8_t *x, size_t n, const uint8_t vlut[256], uint8_t *y);

/* A quantized Softmax over the last axis of rows × n bytes (n <= DSP_SOFTMAX_MAX_ROW), in fixed point
 * (Documentation/targets/DSP.md, "Softmax"). Per row:
 *   m = the row's largest byte (vmaxb / vmaxub), d = m - x as bytes (vsubb: 0..255);
 *   e = E[d], a 16-bit table E[d] = round(65535 · exp(-s_x · d)) held as a high and a low byte table (two
 *       vlut32 lookups, widened to words: e = hi << 8 + lo);
 *   sum = Σ e (int32, vaddwsat; <= 32768 · 65535 < 2^31);
 *   S = sum << k normalized to [2^30, 2^31), R = min(floor(2^61 / S), 2^31 - 1) (shift-subtract: no division);
 *   t = round((e << 15) · R / 2^31) — the Q31 product, = p · 2^(45 - k) with p = e / sum;
 *   y = requant(t) with multiplier out_multiplier and shift 45 - k - out_exponent (1/s_y = out_multiplier ·
 *       2^-31 · 2^out_exponent), t first shifted right (rounding half up) when that shift passes 31. */
typedef struct dsp_softmax {
    size_t rows, n;
    const uint8_t *X; int x_unsigned;
    const uint8_t *exp_hi, *exp_lo;      /* E's high and low bytes, 256 entries each in dsp_lut_layout order */
    int32_t out_multiplier;              /* [2^30, 2^31) */
    int32_t out_exponent;                /* -14..30 */
    int32_t zero_point; int out_unsigned;
    uint8_t *Y;
    int32_t *scratch;                    /* n rounded up to 128 words */
} dsp_softmax;

/* The longest row dsp_softmax takes (its int32 sum cannot overflow). */
#define DSP_SOFTMAX_MAX_ROW 32768

/* The normalization of a row's sum (> 0) for dsp_softmax: k with sum << k in [2^30, 2^31), and the reciprocal
 * R = min(floor(2^61 / (sum << k)), 2^31 - 1). */
void dsp_softmax_reciprocal(uint32_t sum, int32_t *k, int32_t *reciprocal);

/* Runs a dsp_softmax. */
void dsp_softmax_rows(const dsp_softmax *s);

#endif
