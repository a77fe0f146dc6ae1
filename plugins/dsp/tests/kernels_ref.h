/*
 * kernels_ref.h — plain scalar C of the arithmetic kernels.h documents, element by element, with no HVX.
 * The exactness harness checks every kernel against these in both builds.
 */
#ifndef KILN_DSP_KERNELS_REF_H
#define KILN_DSP_KERNELS_REF_H

#include "../kernels.h"

/* floor(x / 2^s) for any sign. */
static inline int64_t ref_floor_shift(int64_t x, unsigned s) { return x >= 0 ? x >> s : -((-(x + 1)) >> s) - 1; }
/* x saturated to int32. */
static inline int64_t ref_sat32(int64_t x) { return x > INT32_MAX ? INT32_MAX : x < INT32_MIN ? INT32_MIN : x; }
/* A byte as a signed or unsigned value. */
static inline int32_t ref_byte(uint8_t b, int is_unsigned) { return is_unsigned ? b : (int8_t)b; }

/* The requantization up to the zero point, before the final clamp (sat32 at each step, as documented). */
static inline int32_t ref_requant_wide(int32_t acc, const dsp_requant *q) {
    int64_t t = ref_sat32(ref_floor_shift((int64_t)acc * q->multiplier + ((int64_t)1 << 30), 31));
    if (q->shift > 0) t = ref_floor_shift(ref_sat32(t + ((int64_t)1 << (q->shift - 1))), (unsigned)q->shift);
    return (int32_t)ref_sat32(t + q->zero_point);
}

/* The final clamp to int8 or uint8. */
static inline uint8_t ref_clamp8(int64_t v, int is_unsigned) {
    int64_t lo = is_unsigned ? 0 : -128, hi = is_unsigned ? 255 : 127;
    return (uint8_t)(int8_t)(v < lo ? lo : v > hi ? hi : v);
}

/* dsp_gemm on unpacked B (K×N, row stride ldb). */
static inline void ref_gemm(const dsp_gemm *g, const uint8_t *B, size_t ldb, uint8_t *C) {
    for (size_t m = 0; m < g->M; m++)
        for (size_t n = 0; n < g->N; n++) {
            uint32_t acc = (g->bias_row ? (uint32_t)g->bias_row[m] : 0) + (g->bias_col ? (uint32_t)g->bias_col[n] : 0);
            for (size_t k = 0; k < g->K; k++)
                acc += (uint32_t)((ref_byte(g->A[m * g->lda + k], g->a_unsigned) - g->za) *
                                  (ref_byte(B[k * ldb + n], g->b_unsigned) - g->zb));
            const dsp_requant *q = g->row_requant ? &g->row_requant[m] : &g->requant;
            C[m * g->ldc + n] = ref_clamp8(ref_requant_wide((int32_t)acc, q), g->out_unsigned);
        }
}

/* dsp_qconv as a direct convolution. */
static inline void ref_conv(const dsp_conv *c, uint8_t *Y) {
    size_t cg = c->C / c->group, og = c->O / c->group;
    for (size_t o = 0; o < c->O; o++) {
        size_t gi = o / og;
        for (size_t oy = 0; oy < c->OH; oy++)
            for (size_t ox = 0; ox < c->OW; ox++) {
                uint32_t acc = c->bias ? (uint32_t)c->bias[o] : 0;
                for (size_t ch = 0; ch < cg; ch++)
                    for (size_t ky = 0; ky < c->KH; ky++)
                        for (size_t kx = 0; kx < c->KW; kx++) {
                            int64_t iy = (int64_t)(oy * c->stride_h + ky * c->dil_h) - (int64_t)c->pad_top;
                            int64_t ix = (int64_t)(ox * c->stride_w + kx * c->dil_w) - (int64_t)c->pad_left;
                            int32_t x = c->zx;
                            if (iy >= 0 && ix >= 0 && iy < (int64_t)c->H && ix < (int64_t)c->W)
                                x = ref_byte(c->X[((gi * cg + ch) * c->H + (size_t)iy) * c->W + (size_t)ix], c->x_unsigned);
                            int32_t w = ref_byte(c->Wt[((o * cg + ch) * c->KH + ky) * c->KW + kx], c->w_unsigned);
                            acc += (uint32_t)((x - c->zx) * (w - c->zw));
                        }
                const dsp_requant *q = c->channel_requant ? &c->channel_requant[o] : &c->requant;
                Y[(o * c->OH + oy) * c->OW + ox] = ref_clamp8(ref_requant_wide((int32_t)acc, q), c->out_unsigned);
            }
    }
}

/* dsp_qadd element by element. */
static inline void ref_qadd(const uint8_t *a, int32_t za, const uint8_t *b, int32_t zb, size_t n, int is_unsigned,
                            const dsp_requant *qa, const dsp_requant *qb, const dsp_requant *qout, uint8_t *y) {
    dsp_requant qa0 = *qa, qb0 = *qb;
    qa0.zero_point = 0; qb0.zero_point = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t sa = ref_requant_wide((int32_t)((uint32_t)(ref_byte(a[i], is_unsigned) - za) << 20), &qa0);
        int32_t sb = ref_requant_wide((int32_t)((uint32_t)(ref_byte(b[i], is_unsigned) - zb) << 20), &qb0);
        y[i] = ref_clamp8(ref_requant_wide((int32_t)ref_sat32((int64_t)sa + sb), qout), is_unsigned);
    }
}

/* Max (avg = 0) or average (avg = 1) pooling, position by position. */
static inline void ref_pool(const dsp_pool *p, int avg, uint8_t *Y) {
    for (size_t c = 0; c < p->C; c++)
        for (size_t oy = 0; oy < p->OH; oy++)
            for (size_t ox = 0; ox < p->OW; ox++) {
                int32_t best = p->is_unsigned ? 0 : -128, sum = 0, inside = 0;
                for (size_t ky = 0; ky < p->KH; ky++)
                    for (size_t kx = 0; kx < p->KW; kx++) {
                        int64_t iy = (int64_t)(oy * p->stride_h + ky) - (int64_t)p->pad_top;
                        int64_t ix = (int64_t)(ox * p->stride_w + kx) - (int64_t)p->pad_left;
                        if (iy < 0 || ix < 0 || iy >= (int64_t)p->H || ix >= (int64_t)p->W) continue;
                        int32_t v = ref_byte(p->X[(c * p->H + (size_t)iy) * p->W + (size_t)ix], p->is_unsigned);
                        if (v > best) best = v;
                        sum += v;
                        inside++;
                    }
                int32_t out = best;
                if (avg) {
                    int32_t count = p->count_include_pad ? (int32_t)(p->KH * p->KW) : (inside ? inside : 1);
                    int32_t r = count <= 1 ? 32767 : (65536 + count) / (2 * count);
                    if (r > 32767) r = 32767;
                    int64_t q = ref_floor_shift(2 * (int64_t)sum * r + 0x8000, 16);
                    out = (int32_t)(q > 32767 ? 32767 : q < -32768 ? -32768 : q);
                }
                Y[(c * p->OH + oy) * p->OW + ox] = ref_clamp8(out, p->is_unsigned);
            }
}

/* dsp_softmax_rows element by element, on plain-order tables hi[d], lo[d] (the documented fixed point). */
static inline void ref_softmax(const dsp_softmax *s, const uint8_t hi[256], const uint8_t lo[256], uint8_t *Y) {
    for (size_t r = 0; r < s->rows; r++) {
        const uint8_t *x = s->X + r * s->n;
        int32_t top = ref_byte(x[0], s->x_unsigned);
        for (size_t i = 1; i < s->n; i++) top = ref_byte(x[i], s->x_unsigned) > top ? ref_byte(x[i], s->x_unsigned) : top;
        uint32_t sum = 0;
        for (size_t i = 0; i < s->n; i++) { int32_t d = top - ref_byte(x[i], s->x_unsigned); sum += (uint32_t)(hi[d] * 256 + lo[d]); }
        int32_t k = 0;
        uint64_t S = sum;
        while (S < ((uint64_t)1 << 30)) { S <<= 1; k++; }
        uint64_t R = (((uint64_t)1 << 61) / S);
        if (R > 0x7fffffffu) R = 0x7fffffffu;
        int32_t shift = 45 - k - s->out_exponent, pre = 0;
        if (shift > 31) { pre = shift - 31 > 31 ? 31 : shift - 31; shift = 31; }
        dsp_requant q = {s->out_multiplier, shift, s->zero_point};
        for (size_t i = 0; i < s->n; i++) {
            int32_t d = top - ref_byte(x[i], s->x_unsigned);
            int64_t e = (int64_t)(hi[d] * 256 + lo[d]) << 15;
            int64_t t = ref_sat32(ref_floor_shift(e * (int64_t)R + ((int64_t)1 << 30), 31));
            if (pre > 0) t = ref_floor_shift(ref_sat32(t + ((int64_t)1 << (pre - 1))), (unsigned)pre);
            Y[r * s->n + i] = ref_clamp8(ref_requant_wide((int32_t)t, &q), s->out_unsigned);
        }
    }
}

#endif
