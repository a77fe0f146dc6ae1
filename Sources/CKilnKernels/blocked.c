/* blocked.c — the blocked layout (NCHW16c, see kiln_kernels.h): reorders to and from NCHW, depthwise
 * convolution, max/average pooling and global pooling.
 *
 * One pixel's 16 channels is one GCC/Clang vector (kiln_v16). Each kernel body is an always-inline function
 * instantiated three times — portable C (no target attribute; also the NEON build), AVX2+FMA and AVX-512F —
 * and blocked_current() picks the instantiation that matches the kernel table in use. Window kernels split
 * every output row into border columns (a window that crosses the left/right edge: per-pixel clipped taps)
 * and interior columns (every column tap inside: several pixels at once with independent accumulators).
 * Rows crossing the top/bottom edge only clip the kernel rows, so they take the same paths. */
#include "internal.h"

#include <math.h>

/* Every function that passes a kiln_v16 by value is always-inline, so no call ever uses the vector ABI that
 * -Wpsabi warns about (it differs between the portable, AVX2 and AVX-512 instantiations). */
#pragma GCC diagnostic ignored "-Wpsabi"

/* ---- Vectors ---- */

typedef float kiln_v16 __attribute__((vector_size(64)));
typedef int32_t kiln_v16i __attribute__((vector_size(64)));
/* Memory view for loads and stores at any float alignment. */
typedef float kiln_v16u __attribute__((vector_size(64), aligned(4), may_alias));

#define KILN_INLINE static inline __attribute__((always_inline))
#define KILN_VLD(p) (*(const kiln_v16u *)(const void *)(p))
#define KILN_VST(p, v) (*(kiln_v16u *)(void *)(p) = (v))

KILN_INLINE kiln_v16 v16_splat(float s) {
    kiln_v16 v;
    for (int i = 0; i < 16; i++) v[i] = s;
    return v;
}

/* m ? a : b per lane (m lanes are all-ones or zero). */
KILN_INLINE kiln_v16 v16_select(kiln_v16i m, kiln_v16 a, kiln_v16 b) {
    return (kiln_v16)(((kiln_v16i)a & m) | ((kiln_v16i)b & ~m));
}

/* The max pooling step of kiln_maxpool2d_nchw: v wins when greater or NaN, and a NaN accumulator stays. */
KILN_INLINE kiln_v16 v16_max_nan(kiln_v16 acc, kiln_v16 v) {
    return v16_select((v > acc) | (v != v), v, acc);
}

static size_t block_count(size_t channels) { return (channels + KILN_BLOCK - 1) / KILN_BLOCK; }

size_t kiln_blocked_channels(size_t channels) { return block_count(channels) * KILN_BLOCK; }

/* ---- Window geometry ---- */

/* Taps k in [0, K) whose input coordinate base + k·d lies in [0, in): the run [*k0, *k1). */
static inline void tap_range(ptrdiff_t base, size_t in, size_t K, size_t d, size_t *k0, size_t *k1) {
    size_t a = 0, b = K;
    if (base < 0) a = ((size_t)(-base) + d - 1) / d;
    if (base >= (ptrdiff_t)in) {
        b = 0;
    } else {
        size_t n = ((size_t)((ptrdiff_t)in - base) + d - 1) / d;
        if (n < b) b = n;
    }
    if (a > b) a = b;
    *k0 = a;
    *k1 = b;
}

/* Outputs x in [0, out) whose every tap x·s - pad + k·d (k < K) lies in [0, in): the run [*lo, *hi). */
static inline void interior_range(size_t out, size_t in, size_t K, size_t s, size_t d, size_t pad, size_t *lo,
                                  size_t *hi) {
    if (K == 0) {
        *lo = 0;
        *hi = out;
        return;
    }
    size_t span = (K - 1) * d;
    if (in + pad < span + 1) {
        *lo = *hi = 0;
        return;
    }
    size_t a = (pad + s - 1) / s, b = (in - 1 + pad - span) / s + 1;
    if (b > out) b = out;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

static int params_usable(const kiln_conv2d_params *p) {
    return p->stride_h && p->stride_w && p->dilation_h && p->dilation_w;
}

/* What a window combines: weighted taps (depthwise), the maximum, or the sum. */
enum { MODE_DW = 0, MODE_MAX = 1, MODE_SUM = 2 };

/*
 * Accumulates taps kh in [kh0, kh1) × kw in [kw0, kw1) into acc[j] (j < U) for U output pixels of one row
 * whose leftmost window starts at input row ih0 and column iw0 (signed; every tap read lies inside), the
 * pixels sw columns apart. in_b is the channel block (W pixels a row), w_b its packed weights (KW taps a row).
 */
KILN_INLINE void window_taps(const int mode, const int U, const float *in_b, size_t W, ptrdiff_t ih0, size_t kh0,
                             size_t kh1, size_t dh, ptrdiff_t iw0, size_t kw0, size_t kw1, size_t dw, size_t sw,
                             const float *w_b, size_t KW, kiln_v16 *acc) {
    const size_t step = sw * KILN_BLOCK;
    for (size_t kh = kh0; kh < kh1; kh++) {
        const float *row = in_b + (size_t)(ih0 + (ptrdiff_t)(kh * dh)) * W * KILN_BLOCK;
        for (size_t kw = kw0; kw < kw1; kw++) {
            const float *x = row + (size_t)(iw0 + (ptrdiff_t)(kw * dw)) * KILN_BLOCK;
            if (mode == MODE_DW) {
                kiln_v16 wv = KILN_VLD(w_b + (kh * KW + kw) * KILN_BLOCK);
                for (int j = 0; j < U; j++) acc[j] += wv * KILN_VLD(x + (size_t)j * step);
            } else if (mode == MODE_MAX) {
                for (int j = 0; j < U; j++) acc[j] = v16_max_nan(acc[j], KILN_VLD(x + (size_t)j * step));
            } else {
                for (int j = 0; j < U; j++) acc[j] += KILN_VLD(x + (size_t)j * step);
            }
        }
    }
}

/* ---- Depthwise convolution ---- */

/* Epilogue state of one call: activations other than NONE/RELU/CLIP run over each finished row. */
typedef struct dw_epilogue {
    const float *residual; /* blocked, like the output; NULL for none */
    int inline_act;        /* 0 none (or applied per row), 1 ReLU, 2 clip */
    int row_act;           /* apply kt->activation over each finished row */
    kiln_activation act;
    float alpha, beta;
} dw_epilogue;

static dw_epilogue dw_epilogue_of(const kiln_epilogue *ep) {
    dw_epilogue e = {NULL, 0, 0, KILN_ACT_NONE, 0.0f, 0.0f};
    if (!ep) return e;
    e.residual = ep->residual;
    e.act = ep->activation;
    e.alpha = ep->alpha;
    e.beta = ep->beta;
    if (ep->activation == KILN_ACT_RELU) e.inline_act = 1;
    else if (ep->activation == KILN_ACT_CLIP) e.inline_act = 2;
    else if (ep->activation != KILN_ACT_NONE) e.row_act = 1;
    return e;
}

/* Bias, residual, the PReLU slope (when prelu) and the inline activation of one output pixel, then the store. */
KILN_INLINE void dw_store(float *o, kiln_v16 v, kiln_v16 bias, const float *res, int prelu, kiln_v16 slope,
                          int inline_act, kiln_v16 va, kiln_v16 vb) {
    v += bias;
    if (res) v += KILN_VLD(res);
    if (prelu) v = v16_select(v < 0.0f, v * slope, v);
    if (inline_act == 1) {
        v = v16_select(v > 0.0f, v, v16_splat(0.0f));
    } else if (inline_act == 2) {
        v = v16_select(v > va, v, va);
        v = v16_select(v < vb, v, vb);
    }
    KILN_VST(o, v);
}

/* U interior pixels of one row starting at output column ow. */
#define KILN_DW_GROUP(UU)                                                                                            \
    do {                                                                                                             \
        kiln_v16 acc[8];                                                                                             \
        for (int j = 0; j < (UU); j++) acc[j] = zero;                                                                \
        window_taps(MODE_DW, (UU), in_b, W, ih0, kh0, kh1, dh, (ptrdiff_t)(ow * sw) - (ptrdiff_t)pl, 0, KW, dw, sw,  \
                    w_b, KW, acc);                                                                                   \
        for (int j = 0; j < (UU); j++)                                                                               \
            dw_store(orow + (ow + (size_t)j) * KILN_BLOCK, acc[j], bias, rrow ? rrow + (ow + (size_t)j) * KILN_BLOCK \
                                                                              : NULL,                                \
                     prelu, slope, e.inline_act, va, vb);                                                            \
    } while (0)

/*
 * The depthwise kernel: U pixels per interior group (a compile-time constant after inlining). spec is a
 * shape the caller checked (SPEC_*), so that tap loops, column stride and dilation are constants.
 */
KILN_INLINE void dw_body(const kiln_kernel_table *kt, const kiln_conv2d_params *p, const float *input,
                         const float *packed, float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue,
                         const float *slopes, const int U, const int spec) {
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width;
    const size_t KH = spec ? 3 : p->kernel_h, KW = spec ? 3 : p->kernel_w;
    const size_t sh = p->stride_h, sw = spec ? (size_t)spec : p->stride_w;
    const size_t dh = spec ? 1 : p->dilation_h, dw = spec ? 1 : p->dilation_w;
    const size_t pt = p->pad_top, pl = p->pad_left, C = p->in_channels;
    const size_t nb = block_count(C);
    if (cb1 > nb) cb1 = nb;
    size_t lo, hi;
    interior_range(OW, W, KW, sw, dw, pl, &lo, &hi);
    const dw_epilogue e = dw_epilogue_of(epilogue);
    const kiln_v16 zero = v16_splat(0.0f), va = v16_splat(e.alpha), vb = v16_splat(e.beta);
    for (size_t cb = cb0; cb < cb1; cb++) {
        const float *in_b = input + cb * H * W * KILN_BLOCK;
        const float *w_b = packed + cb * KH * KW * KILN_BLOCK;
        float *out_b = output + cb * OH * OW * KILN_BLOCK;
        const float *res_b = e.residual ? e.residual + cb * OH * OW * KILN_BLOCK : NULL;
        kiln_v16 bias = zero;
        if (epilogue && epilogue->bias)
            for (size_t l = 0; l < KILN_BLOCK && cb * KILN_BLOCK + l < C; l++) bias[l] = epilogue->bias[cb * KILN_BLOCK + l];
        const int prelu = slopes != NULL;
        kiln_v16 slope = zero;
        if (prelu)
            for (size_t l = 0; l < KILN_BLOCK && cb * KILN_BLOCK + l < C; l++) slope[l] = slopes[cb * KILN_BLOCK + l];
        for (size_t oh = 0; oh < OH; oh++) {
            const ptrdiff_t ih0 = (ptrdiff_t)(oh * sh) - (ptrdiff_t)pt;
            size_t kh0, kh1;
            tap_range(ih0, H, KH, dh, &kh0, &kh1);
            float *orow = out_b + oh * OW * KILN_BLOCK;
            const float *rrow = res_b ? res_b + oh * OW * KILN_BLOCK : NULL;
            size_t ow = 0;
            for (int side = 0; side < 2; side++) {
                /* side 0: border columns [0, lo) then the interior; side 1: border columns [hi, OW). */
                size_t end = side == 0 ? lo : OW;
                for (; ow < end; ow++) {
                    const ptrdiff_t iw0 = (ptrdiff_t)(ow * sw) - (ptrdiff_t)pl;
                    size_t kw0, kw1;
                    tap_range(iw0, W, KW, dw, &kw0, &kw1);
                    kiln_v16 acc[1] = {zero};
                    window_taps(MODE_DW, 1, in_b, W, ih0, kh0, kh1, dh, iw0, kw0, kw1, dw, sw, w_b, KW, acc);
                    dw_store(orow + ow * KILN_BLOCK, acc[0], bias, rrow ? rrow + ow * KILN_BLOCK : NULL, prelu, slope,
                             e.inline_act, va, vb);
                }
                if (side == 1) break;
                for (; ow + (size_t)U <= hi; ow += (size_t)U) KILN_DW_GROUP(U);
                if (U > 4)
                    for (; ow + 4 <= hi; ow += 4) KILN_DW_GROUP(4);
                if (U > 2)
                    for (; ow + 2 <= hi; ow += 2) KILN_DW_GROUP(2);
                for (; ow < hi; ow++) KILN_DW_GROUP(1);
            }
            if (e.row_act) kt->activation(e.act, e.alpha, e.beta, OW * KILN_BLOCK, orow, orow);
        }
    }
}

size_t kiln_depthwise_blocked_pack_weight_size(const kiln_conv2d_params *p) {
    return block_count(p->in_channels) * p->kernel_h * p->kernel_w * KILN_BLOCK;
}

void kiln_depthwise_blocked_pack_weight(const kiln_conv2d_params *p, const float *weight, float *packed) {
    const size_t C = p->in_channels, KK = p->kernel_h * p->kernel_w, nb = block_count(C);
    for (size_t cb = 0; cb < nb; cb++)
        for (size_t k = 0; k < KK; k++)
            for (size_t l = 0; l < KILN_BLOCK; l++) {
                size_t c = cb * KILN_BLOCK + l;
                packed[(cb * KK + k) * KILN_BLOCK + l] = c < C ? weight[c * KK + k] : 0.0f;
            }
}

/* ---- Pooling ---- */

/* Per-pixel finish of the pooling groups: the maximum as it is, the sum divided by its count. */
#define KILN_POOL_GROUP(UU)                                                                                          \
    do {                                                                                                             \
        kiln_v16 acc[8];                                                                                             \
        for (int j = 0; j < (UU); j++) acc[j] = init;                                                                \
        window_taps(mode, (UU), in_b, W, ih0, kh0, kh1, dh, (ptrdiff_t)(ow * sw) - (ptrdiff_t)pl, 0, KW, dw, sw, NULL, \
                    KW, acc);                                                                                        \
        for (int j = 0; j < (UU); j++) {                                                                             \
            kiln_v16 v = acc[j];                                                                                     \
            if (mode == MODE_SUM) v = interior_count > 0.0f ? v / interior_count : zero;                             \
            KILN_VST(orow + (ow + (size_t)j) * KILN_BLOCK, v16_select(real, v, zero));                               \
        }                                                                                                            \
    } while (0)

/*
 * Max (mode MODE_MAX) or average (MODE_SUM) pooling with the semantics of kiln_maxpool2d_nchw and
 * kiln_avgpool2d_nchw_padded (count_include_pad counts window positions inside the padded extent
 * [-pad_top, H + pad_bottom) × [-pad_left, W + pad_right)).
 */
KILN_INLINE void pool_body(const int mode, const kiln_conv2d_params *p, int count_include_pad, size_t pb, size_t pr,
                           const float *input, float *output, size_t cb0, size_t cb1, const int U, const int spec) {
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width;
    const size_t KH = spec ? 3 : p->kernel_h, KW = spec ? 3 : p->kernel_w;
    const size_t sh = p->stride_h, sw = spec ? (size_t)spec : p->stride_w;
    const size_t dh = spec ? 1 : p->dilation_h, dw = spec ? 1 : p->dilation_w;
    const size_t pt = p->pad_top, pl = p->pad_left, C = p->in_channels;
    const size_t nb = block_count(C);
    if (cb1 > nb) cb1 = nb;
    size_t lo, hi;
    interior_range(OW, W, KW, sw, dw, pl, &lo, &hi);
    const kiln_v16 zero = v16_splat(0.0f);
    const kiln_v16 init = mode == MODE_MAX ? v16_splat(-INFINITY) : zero;
    for (size_t cb = cb0; cb < cb1; cb++) {
        const float *in_b = input + cb * H * W * KILN_BLOCK;
        float *out_b = output + cb * OH * OW * KILN_BLOCK;
        /* Padding lanes are written as zero: an empty max window (-inf) or a sum of large garbage must not
         * leave them infinite. */
        kiln_v16i real;
        for (int l = 0; l < KILN_BLOCK; l++) real[l] = cb * KILN_BLOCK + (size_t)l < C ? -1 : 0;
        for (size_t oh = 0; oh < OH; oh++) {
            const ptrdiff_t ih0 = (ptrdiff_t)(oh * sh) - (ptrdiff_t)pt;
            size_t kh0, kh1;
            tap_range(ih0, H, KH, dh, &kh0, &kh1);
            float hcount = 0.0f;
            if (mode == MODE_SUM) {
                size_t c0 = kh0, c1 = kh1;
                if (count_include_pad) tap_range(ih0 + (ptrdiff_t)pt, H + pt + pb, KH, dh, &c0, &c1);
                hcount = (float)(c1 - c0);
            }
            /* Interior columns count all KW taps, with or without count_include_pad. */
            const float interior_count = hcount * (float)KW;
            float *orow = out_b + oh * OW * KILN_BLOCK;
            size_t ow = 0;
            for (int side = 0; side < 2; side++) {
                size_t end = side == 0 ? lo : OW;
                for (; ow < end; ow++) {
                    const ptrdiff_t iw0 = (ptrdiff_t)(ow * sw) - (ptrdiff_t)pl;
                    size_t kw0, kw1;
                    tap_range(iw0, W, KW, dw, &kw0, &kw1);
                    kiln_v16 acc[1] = {init};
                    window_taps(mode, 1, in_b, W, ih0, kh0, kh1, dh, iw0, kw0, kw1, dw, sw, NULL, KW, acc);
                    kiln_v16 v = acc[0];
                    if (mode == MODE_SUM) {
                        size_t c0 = kw0, c1 = kw1;
                        if (count_include_pad) tap_range(iw0 + (ptrdiff_t)pl, W + pl + pr, KW, dw, &c0, &c1);
                        float count = hcount * (float)(c1 - c0);
                        v = count > 0.0f ? v / count : zero;
                    }
                    KILN_VST(orow + ow * KILN_BLOCK, v16_select(real, v, zero));
                }
                if (side == 1) break;
                for (; ow + (size_t)U <= hi; ow += (size_t)U) KILN_POOL_GROUP(U);
                if (U > 4)
                    for (; ow + 4 <= hi; ow += 4) KILN_POOL_GROUP(4);
                if (U > 2)
                    for (; ow + 2 <= hi; ow += 2) KILN_POOL_GROUP(2);
                for (; ow < hi; ow++) KILN_POOL_GROUP(1);
            }
        }
    }
}

/* Global average or max over hw pixels of each block; only real channels are written. */
KILN_INLINE void global_body(size_t C, size_t hw, int is_max, const float *input, float *output) {
    const size_t nb = block_count(C);
    for (size_t cb = 0; cb < nb; cb++) {
        const float *in_b = input + cb * hw * KILN_BLOCK;
        kiln_v16 r;
        if (is_max) {
            kiln_v16 m0 = v16_splat(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
            size_t i = 0;
            for (; i + 4 <= hw; i += 4) {
                m0 = v16_max_nan(m0, KILN_VLD(in_b + (i + 0) * KILN_BLOCK));
                m1 = v16_max_nan(m1, KILN_VLD(in_b + (i + 1) * KILN_BLOCK));
                m2 = v16_max_nan(m2, KILN_VLD(in_b + (i + 2) * KILN_BLOCK));
                m3 = v16_max_nan(m3, KILN_VLD(in_b + (i + 3) * KILN_BLOCK));
            }
            for (; i < hw; i++) m0 = v16_max_nan(m0, KILN_VLD(in_b + i * KILN_BLOCK));
            r = v16_max_nan(v16_max_nan(m0, m1), v16_max_nan(m2, m3));
        } else {
            kiln_v16 s0 = v16_splat(0.0f), s1 = s0, s2 = s0, s3 = s0;
            size_t i = 0;
            for (; i + 4 <= hw; i += 4) {
                s0 += KILN_VLD(in_b + (i + 0) * KILN_BLOCK);
                s1 += KILN_VLD(in_b + (i + 1) * KILN_BLOCK);
                s2 += KILN_VLD(in_b + (i + 2) * KILN_BLOCK);
                s3 += KILN_VLD(in_b + (i + 3) * KILN_BLOCK);
            }
            for (; i < hw; i++) s0 += KILN_VLD(in_b + i * KILN_BLOCK);
            r = hw ? ((s0 + s1) + (s2 + s3)) / (float)hw : s0;
        }
        for (size_t l = 0; l < KILN_BLOCK && cb * KILN_BLOCK + l < C; l++) output[cb * KILN_BLOCK + l] = r[l];
    }
}

/* ---- Instantiations and dispatch ---- */

typedef struct blocked_impl {
    void (*dw)(const kiln_kernel_table *kt, const kiln_conv2d_params *p, const float *input, const float *packed,
               float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue, const float *slope);
    void (*maxpool)(const kiln_conv2d_params *p, const float *input, float *output, size_t cb0, size_t cb1);
    void (*avgpool)(const kiln_conv2d_params *p, int count_include_pad, size_t pb, size_t pr, const float *input,
                    float *output, size_t cb0, size_t cb1);
    void (*global)(size_t C, size_t hw, int is_max, const float *input, float *output);
} blocked_impl;

/* Specialized shapes: a 3×3 window, dilation 1, column stride 1 or 2 (the value of the constant). */
enum { SPEC_NONE = 0, SPEC_3X3_S1 = 1, SPEC_3X3_S2 = 2 };

static int spec_of(const kiln_conv2d_params *p) {
    if (p->kernel_h != 3 || p->kernel_w != 3 || p->dilation_h != 1 || p->dilation_w != 1) return SPEC_NONE;
    return p->stride_w == 1 ? SPEC_3X3_S1 : p->stride_w == 2 ? SPEC_3X3_S2 : SPEC_NONE;
}

/* Calls BODY(spec) with spec a constant: the specialized instantiation for p's shape. */
#define KILN_SPECIALIZE(p, BODY)                                                                                     \
    switch (spec_of(p)) {                                                                                            \
    case SPEC_3X3_S1: BODY(SPEC_3X3_S1); break;                                                                      \
    case SPEC_3X3_S2: BODY(SPEC_3X3_S2); break;                                                                      \
    default: BODY(SPEC_NONE); break;                                                                                 \
    }

/* Kernel calls for KILN_SPECIALIZE inside the instantiations (u: pixels per interior group). */
#define KILN_DW_CALL(spec) dw_body(kt, p, input, packed, output, cb0, cb1, epilogue, slope, u, spec)
#define KILN_MAXPOOL_CALL(spec) pool_body(MODE_MAX, p, 0, 0, 0, input, output, cb0, cb1, u, spec)
#define KILN_AVGPOOL_CALL(spec) pool_body(MODE_SUM, p, cip, pb, pr, input, output, cb0, cb1, u, spec)

/* One instantiation of every kernel under the target attribute ATTR, U pixels per interior group. */
#define KILN_BLOCKED_INSTANCE(NAME, ATTR, U)                                                                         \
    ATTR static void NAME##_dw(const kiln_kernel_table *kt, const kiln_conv2d_params *p, const float *input,        \
                               const float *packed, float *output, size_t cb0, size_t cb1,                          \
                               const kiln_epilogue *epilogue, const float *slope) {                                 \
        const int u = U;                                                                                             \
        KILN_SPECIALIZE(p, KILN_DW_CALL)                                                                             \
    }                                                                                                                \
    ATTR static void NAME##_maxpool(const kiln_conv2d_params *p, const float *input, float *output, size_t cb0,     \
                                    size_t cb1) {                                                                    \
        const int u = U;                                                                                             \
        KILN_SPECIALIZE(p, KILN_MAXPOOL_CALL)                                                                        \
    }                                                                                                                \
    ATTR static void NAME##_avgpool(const kiln_conv2d_params *p, int cip, size_t pb, size_t pr, const float *input, \
                                    float *output, size_t cb0, size_t cb1) {                                         \
        const int u = U;                                                                                             \
        KILN_SPECIALIZE(p, KILN_AVGPOOL_CALL)                                                                        \
    }                                                                                                                \
    ATTR static void NAME##_global(size_t C, size_t hw, int is_max, const float *input, float *output) {           \
        global_body(C, hw, is_max, input, output);                                                                   \
    }                                                                                                                \
    static const blocked_impl NAME##_impl = {NAME##_dw, NAME##_maxpool, NAME##_avgpool, NAME##_global};

#if defined(__aarch64__)
KILN_BLOCKED_INSTANCE(blocked_generic, , 4) /* 32 NEON registers: four 16-lane accumulators fit */
#else
KILN_BLOCKED_INSTANCE(blocked_generic, , 2) /* 16 SSE registers: a 16-lane vector takes four */
#endif

#if defined(__x86_64__)
KILN_BLOCKED_INSTANCE(blocked_avx2, __attribute__((target("avx2,fma"))), 4)
KILN_BLOCKED_INSTANCE(blocked_avx512, __attribute__((target("avx512f"))), 8)
#endif

/* The instantiation matching the kernel table in use. */
static const blocked_impl *blocked_current(const kiln_kernel_table *kt) {
#if defined(__x86_64__)
    switch (kiln_family_of(kt)) {
    case KILN_FAMILY_AVX512: return &blocked_avx512_impl;
    case KILN_FAMILY_AVX2: return &blocked_avx2_impl;
    case KILN_FAMILY_PORTABLE: break;
    }
#endif
    (void)kt;
    return &blocked_generic_impl;
}

void kiln_depthwise_conv2d_blocked(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                   float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue) {
    kiln_depthwise_conv2d_blocked_prelu(p, input, packed_weight, output, cb0, cb1, epilogue, NULL);
}

void kiln_depthwise_conv2d_blocked_prelu(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                         float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue,
                                         const float *slope) {
    if (!params_usable(p)) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    blocked_current(kt)->dw(kt, p, input, packed_weight, output, cb0, cb1, epilogue, slope);
}

void kiln_blocked_channel_scale(size_t channels, size_t hw, const float *scale, const float *x, float *y, size_t cb0,
                                size_t cb1) {
    const size_t nb = block_count(channels);
    if (cb1 > nb) cb1 = nb;
    for (size_t cb = cb0; cb < cb1; cb++) {
        kiln_v16 s = v16_splat(0.0f);
        for (size_t l = 0; l < KILN_BLOCK && cb * KILN_BLOCK + l < channels; l++) s[l] = scale[cb * KILN_BLOCK + l];
        const float *xb = x + cb * hw * KILN_BLOCK;
        float *yb = y + cb * hw * KILN_BLOCK;
        for (size_t i = 0; i < hw; i++) KILN_VST(yb + i * KILN_BLOCK, KILN_VLD(xb + i * KILN_BLOCK) * s);
    }
}

void kiln_channel_prelu(size_t channels, size_t hw, const float *slope, const float *x, float *y) {
    for (size_t c = 0; c < channels; c++) {
        const float s = slope[c];
        const float *xc = x + c * hw;
        float *yc = y + c * hw;
        for (size_t i = 0; i < hw; i++) yc[i] = xc[i] < 0.0f ? xc[i] * s : xc[i];
    }
}

void kiln_maxpool2d_blocked(const kiln_conv2d_params *p, const float *input, float *output, size_t cb0, size_t cb1) {
    if (!params_usable(p)) return;
    blocked_current(kiln_kernels_current())->maxpool(p, input, output, cb0, cb1);
}

void kiln_avgpool2d_blocked(const kiln_conv2d_params *p, int count_include_pad, size_t pad_bottom, size_t pad_right,
                            const float *input, float *output, size_t cb0, size_t cb1) {
    if (!params_usable(p)) return;
    blocked_current(kiln_kernels_current())
        ->avgpool(p, count_include_pad, pad_bottom, pad_right, input, output, cb0, cb1);
}

void kiln_global_pool_blocked(size_t channels, size_t hw, int is_max, const float *input, float *output) {
    blocked_current(kiln_kernels_current())->global(channels, hw, is_max, input, output);
}

/* ---- Reorders ---- */

#if defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector)
#define KILN_HAVE_SHUFFLE 1
#endif
#endif

#if defined(KILN_HAVE_SHUFFLE)
typedef float kiln_v4 __attribute__((vector_size(16)));
typedef float kiln_v4u __attribute__((vector_size(16), aligned(4), may_alias));

/* Transposes the 4×4 block of rows s[0], s[0] + ls, … into rows d[0], d[0] + ld, …. */
static inline void transpose4(const float *s, size_t ls, float *d, size_t ld) {
    kiln_v4 a = *(const kiln_v4u *)(const void *)s, b = *(const kiln_v4u *)(const void *)(s + ls);
    kiln_v4 c = *(const kiln_v4u *)(const void *)(s + 2 * ls), e = *(const kiln_v4u *)(const void *)(s + 3 * ls);
    kiln_v4 t0 = __builtin_shufflevector(a, b, 0, 4, 1, 5), t1 = __builtin_shufflevector(a, b, 2, 6, 3, 7);
    kiln_v4 t2 = __builtin_shufflevector(c, e, 0, 4, 1, 5), t3 = __builtin_shufflevector(c, e, 2, 6, 3, 7);
    *(kiln_v4u *)(void *)d = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    *(kiln_v4u *)(void *)(d + ld) = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    *(kiln_v4u *)(void *)(d + 2 * ld) = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    *(kiln_v4u *)(void *)(d + 3 * ld) = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
}
#endif

/* Pixels per tile of the reorders: a tile's 16-lane rows (4 KB) stay in L1 while each lane group visits it. */
enum { KILN_REORDER_TILE = 64 };

void kiln_reorder_to_blocked(size_t channels, size_t hw, const float *src, float *dst) {
    const size_t nb = block_count(channels);
    for (size_t cb = 0; cb < nb; cb++) {
        const size_t nc = channels - cb * KILN_BLOCK < KILN_BLOCK ? channels - cb * KILN_BLOCK : KILN_BLOCK;
        const float *s = src + cb * KILN_BLOCK * hw;
        float *d = dst + cb * hw * KILN_BLOCK;
        for (size_t t0 = 0; t0 < hw; t0 += KILN_REORDER_TILE) {
            const size_t t1 = hw - t0 < KILN_REORDER_TILE ? hw : t0 + KILN_REORDER_TILE;
            for (size_t q = 0; q < KILN_BLOCK; q += 4) {
                size_t i = t0;
#if defined(KILN_HAVE_SHUFFLE)
                if (q + 4 <= nc)
                    for (; i + 4 <= t1; i += 4) transpose4(s + q * hw + i, hw, d + i * KILN_BLOCK + q, KILN_BLOCK);
#endif
                for (; i < t1; i++)
                    for (size_t l = q; l < q + 4; l++) d[i * KILN_BLOCK + l] = l < nc ? s[l * hw + i] : 0.0f;
            }
        }
    }
}

void kiln_reorder_from_blocked(size_t channels, size_t hw, const float *src, float *dst) {
    const size_t nb = block_count(channels);
    for (size_t cb = 0; cb < nb; cb++) {
        const size_t nc = channels - cb * KILN_BLOCK < KILN_BLOCK ? channels - cb * KILN_BLOCK : KILN_BLOCK;
        const float *s = src + cb * hw * KILN_BLOCK;
        float *d = dst + cb * KILN_BLOCK * hw;
        for (size_t t0 = 0; t0 < hw; t0 += KILN_REORDER_TILE) {
            const size_t t1 = hw - t0 < KILN_REORDER_TILE ? hw : t0 + KILN_REORDER_TILE;
            for (size_t q = 0; q < nc; q += 4) {
                size_t i = t0;
#if defined(KILN_HAVE_SHUFFLE)
                if (q + 4 <= nc)
                    for (; i + 4 <= t1; i += 4) transpose4(s + i * KILN_BLOCK + q, KILN_BLOCK, d + q * hw + i, hw);
#endif
                for (; i < t1; i++)
                    for (size_t l = q; l < q + 4 && l < nc; l++) d[l * hw + i] = s[i * KILN_BLOCK + l];
            }
        }
    }
}
