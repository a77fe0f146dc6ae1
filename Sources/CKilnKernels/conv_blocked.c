/* conv_blocked.c — dense convolution into the blocked (NCHW16c) layout as a direct convolution.
 *
 * A tile is up to 6 output pixels × up to 4 blocks of 16 output channels (24 accumulators of 16 lanes):
 * for every input channel and tap it broadcasts each pixel's input value and multiplies it by the weight
 * vectors of the blocks. Nothing is packed at run time: the pixels' input values are read in place from a
 * zero-bordered copy of the input (or the input itself for unpadded convolutions), so every tap is in
 * bounds. A work item is one group of 4 output blocks × one chunk of output pixels; inside it the input
 * blocks are taken a few at a time (as many as keep their weights within L1) and the chunk's tiles
 * accumulate into the output between passes, the epilogue fused into the last pass.
 *
 * Packed weight layout: [group g of ≤4 output blocks][input block cb][tap t][input channel ci][block b][16],
 * where a "block" of input is 16 channels (blocked input) or 1 channel (NCHW input), and the blocks of a
 * group are interleaved per (cb, t, ci) so one tile reads one contiguous run of weights.
 */
#include "internal.h"

#include <string.h>

enum {
    KILN_CB_PIXELS = 6,   /* pixels per tile (12 on AVX-512 when a group has at most 2 output blocks) */
    KILN_CB_PIXELS_MAX = 12,
    KILN_CB_GROUP = 4,    /* output blocks per work item (and per tile on AVX-512) */
    KILN_CB_CHUNK = 48,   /* target output pixels per work item */
    KILN_CB_L1 = 32768,   /* bytes of weights one pass keeps in L1 */
};

typedef struct blocked_geometry {
    size_t ib;        /* channels per input block: 16 (blocked input) or 1 (NCHW input) */
    size_t cb;        /* input blocks */
    size_t cob;       /* output blocks */
    size_t groups;    /* work groups of ≤ 4 output blocks */
    size_t taps;      /* kernel_h · kernel_w */
    size_t hp, wp;    /* rows and columns of the source image (padded copy, or the input) */
    size_t ps;        /* floats between adjacent pixels of the source: ib == 16 ? 16 : 1 */
    int direct;       /* the source is the input itself */
    size_t pixels;    /* out_height · out_width */
    size_t chunks, chunk; /* pixel chunks per group and their size */
} blocked_geometry;

static size_t div_up(size_t a, size_t b) { return (a + b - 1) / b; }

static int usable(const kiln_conv2d_params *p) {
    return p->stride_h && p->stride_w && p->dilation_h && p->dilation_w && p->groups == 1 && p->kernel_h &&
           p->kernel_w;
}

static blocked_geometry geometry(const kiln_conv2d_params *p, int blocked_input) {
    blocked_geometry g;
    g.ib = blocked_input ? KILN_BLOCK : 1;
    g.cb = blocked_input ? div_up(p->in_channels, KILN_BLOCK) : p->in_channels;
    g.cob = div_up(p->out_channels, KILN_BLOCK);
    g.groups = div_up(g.cob, KILN_CB_GROUP);
    g.taps = p->kernel_h * p->kernel_w;
    g.ps = blocked_input ? KILN_BLOCK : 1;
    /* The source must hold every tap of every output pixel: the input plus its leading pads plus
     * whatever the last window reaches beyond it. */
    size_t reach_h = p->out_height ? (p->out_height - 1) * p->stride_h + (p->kernel_h - 1) * p->dilation_h + 1 : 0;
    size_t reach_w = p->out_width ? (p->out_width - 1) * p->stride_w + (p->kernel_w - 1) * p->dilation_w + 1 : 0;
    g.hp = p->pad_top + p->in_height > reach_h ? p->pad_top + p->in_height : reach_h;
    g.wp = p->pad_left + p->in_width > reach_w ? p->pad_left + p->in_width : reach_w;
    g.direct = p->pad_top == 0 && p->pad_left == 0 && g.hp == p->in_height && g.wp == p->in_width;
    g.pixels = p->out_height * p->out_width;
    g.chunks = g.pixels ? div_up(g.pixels, KILN_CB_CHUNK) : 0;
    g.chunk = g.chunks ? div_up(g.pixels, g.chunks) : 0;
    return g;
}

size_t kiln_conv2d_blocked_pack_weight_size(const kiln_conv2d_params *p, int blocked_input) {
    if (!usable(p)) return 0;
    blocked_geometry g = geometry(p, blocked_input);
    size_t n = g.cob * KILN_BLOCK * g.cb * g.ib * g.taps;
    return n ? n : 1;
}

void kiln_conv2d_blocked_pack_weight(const kiln_conv2d_params *p, int blocked_input, const float *weight,
                                     float *packed) {
    if (!usable(p)) return;
    blocked_geometry g = geometry(p, blocked_input);
    const size_t cin = p->in_channels, cout = p->out_channels;
    /* Group grp holds [cb][tap][ci][b][lane]: element (((cb·taps + t)·ib + ci)·nb + b)·BLOCK + lane. The source
     * is OIHW, taps contiguous, so sixteen taps are moved at a time: each lane reads one run of taps and the
     * sixteen destination rows it writes stay in L1. Walking the destination in order instead read a new cache
     * line for every float (a 512-tap 1-D convolution's weight took ~0.5 ms). */
    for (size_t grp = 0; grp < g.groups; grp++) {
        size_t b0 = grp * KILN_CB_GROUP;
        size_t nb = g.cob - b0 < KILN_CB_GROUP ? g.cob - b0 : KILN_CB_GROUP;
        float *group = packed + b0 * g.cb * g.taps * g.ib * KILN_BLOCK;
        const size_t tap_stride = g.ib * nb * KILN_BLOCK;
        for (size_t cb = 0; cb < g.cb; cb++)
            for (size_t t0 = 0; t0 < g.taps; t0 += 16) {
                size_t tn = g.taps - t0 < 16 ? g.taps - t0 : 16;
                for (size_t ci = 0; ci < g.ib; ci++)
                    for (size_t b = 0; b < nb; b++) {
                        float *base = group + (((cb * g.taps + t0) * g.ib + ci) * nb + b) * KILN_BLOCK;
                        size_t c = cb * g.ib + ci;
                        for (size_t lane = 0; lane < KILN_BLOCK; lane++) {
                            size_t co = (b0 + b) * KILN_BLOCK + lane;
                            const float *w = co < cout && c < cin ? weight + (co * cin + c) * g.taps + t0 : NULL;
                            for (size_t tt = 0; tt < tn; tt++) base[tt * tap_stride + lane] = w ? w[tt] : 0.0f;
                        }
                    }
            }
    }
}

int kiln_conv2d_blocked_reads_input_directly(const kiln_conv2d_params *p) {
    return usable(p) && geometry(p, 1).direct;
}

size_t kiln_conv2d_blocked_padded_size(const kiln_conv2d_params *p, int blocked_input) {
    if (!usable(p)) return 0;
    blocked_geometry g = geometry(p, blocked_input);
    size_t n = g.cb * g.hp * g.wp * g.ps;
    return n ? n : 1;
}

size_t kiln_conv2d_blocked_pad_units(const kiln_conv2d_params *p, int blocked_input) {
    return usable(p) ? geometry(p, blocked_input).cb : 0;
}

void kiln_conv2d_blocked_pad_input(const kiln_conv2d_params *p, int blocked_input, const float *input,
                                   float *padded, size_t b0, size_t b1) {
    if (!usable(p)) return;
    blocked_geometry g = geometry(p, blocked_input);
    if (b1 > g.cb) b1 = g.cb;
    const size_t ps = g.ps, row = g.wp * ps, in_row = p->in_width * ps;
    const size_t left = p->pad_left * ps, right = row - left - in_row;
    for (size_t cb = b0; cb < b1; cb++) {
        const float *src = input + cb * p->in_height * in_row;
        float *dst = padded + cb * g.hp * row;
        memset(dst, 0, p->pad_top * row * sizeof(float));
        for (size_t h = 0; h < p->in_height; h++) {
            float *d = dst + (p->pad_top + h) * row;
            memset(d, 0, left * sizeof(float));
            memcpy(d + left, src + h * in_row, in_row * sizeof(float));
            memset(d + left + in_row, 0, right * sizeof(float));
        }
        size_t below = g.hp - p->pad_top - p->in_height;
        memset(dst + (p->pad_top + p->in_height) * row, 0, below * row * sizeof(float));
    }
}

size_t kiln_conv2d_blocked_work(const kiln_conv2d_params *p) {
    if (!usable(p)) return 0;
    blocked_geometry g = geometry(p, 1);
    return g.groups * g.chunks;
}

/* ---- The tile ---- */

/* One tile's job: n pixels × nb output blocks over input blocks [cb, cb + cbs). */
typedef struct blocked_tile {
    const float *src[KILN_CB_PIXELS_MAX]; /* each pixel's tap (0, 0), channel 0 of the first input block */
    size_t n, nb;
    size_t cbs, cb_stride;            /* input blocks this pass; floats between input blocks in src */
    const size_t *taps;               /* tap offsets (floats) from a pixel's src */
    size_t ntaps;
    const float *w;                   /* weights of (first cb, tap 0, ci 0, block 0) */
    size_t w_ci;                      /* floats between input channels in w (group blocks × 16) */
    float *out;                       /* pixel j of block b at out + b * out_block + j * 16 */
    size_t out_block;
    int accumulate;                   /* add to what out holds */
    int finish;                       /* last pass: bias, residual, relu/clip */
    const float *bias;                /* nb × 16 floats (finish only; NULL for none) */
    const float *residual;            /* same layout as out (finish only; NULL for none) */
    const float *slope;               /* nb × 16 negative-side multipliers, PReLU (finish only; NULL for none) */
    int clamp;                        /* finish: clamp to [lo, hi] */
    float lo, hi;
    const char *prefetch;             /* lines to fetch into L2 while computing (NULL for none) */
    size_t prefetch_lines;
} blocked_tile;

typedef float kiln_cv16 __attribute__((vector_size(64), aligned(4)));
#define KILN_CV_LOAD(p) (*(const kiln_cv16 *)(const void *)(p))
#define KILN_CV_STORE(p, v) (*(kiln_cv16 *)(void *)(p) = (v))
#define KILN_CV_SPLAT(x) ({ float s_ = (x); (kiln_cv16){s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_}; })
typedef int kiln_cv16i __attribute__((vector_size(64), aligned(4)));
/* min(max(v, lo), hi) lane by lane; a NaN lane stays NaN (its comparisons are false). */
#define KILN_CV_CLAMP(v, lo, hi)                                                                                \
    ({                                                                                                          \
        kiln_cv16 v_ = (v), l_ = KILN_CV_SPLAT(lo), h_ = KILN_CV_SPLAT(hi);                                     \
        kiln_cv16i below_ = v_ < l_;                                                                            \
        v_ = (kiln_cv16)((below_ & (kiln_cv16i)l_) | (~below_ & (kiln_cv16i)v_));                               \
        kiln_cv16i above_ = v_ > h_;                                                                            \
        (kiln_cv16)((above_ & (kiln_cv16i)h_) | (~above_ & (kiln_cv16i)v_));                                    \
    })
/* v < 0 ? v · s : v lane by lane (PReLU; a NaN lane stays NaN). */
#define KILN_CV_PRELU(v, s)                                                                                     \
    ({                                                                                                          \
        kiln_cv16 v_ = (v);                                                                                     \
        kiln_cv16i neg_ = v_ < (kiln_cv16){0};                                                                  \
        (kiln_cv16)((neg_ & (kiln_cv16i)(v_ * (s))) | (~neg_ & (kiln_cv16i)v_));                                \
    })
#if defined(__clang__)
#define KILN_UNROLL _Pragma("clang loop unroll(full)")
#else
#define KILN_UNROLL _Pragma("GCC unroll 16")
#endif

#define KILN_TILE_BODY(N, NB, IB)                                                                               \
    do {                                                                                                        \
        kiln_cv16 acc[N][NB];                                                                                   \
        KILN_UNROLL for (int j = 0; j < (N); j++)                                                                           \
            KILN_UNROLL for (int b = 0; b < (NB); b++)                                                                      \
                acc[j][b] = t->accumulate ? KILN_CV_LOAD(t->out + b * t->out_block + j * 16) : (kiln_cv16){0};        \
        const float *src[N];                                                                                    \
        KILN_UNROLL for (int j = 0; j < (N); j++) src[j] = t->src[j];                                                       \
        const float *wcb = t->w;                                                                                \
        const size_t w_ci = t->w_ci;                                                                            \
        const char *pf = t->prefetch, *pf_end = pf ? pf + t->prefetch_lines * 64 : pf;                          \
        for (size_t cb = 0; cb < t->cbs; cb++) {                                                                \
            const float *w = wcb;                                                                               \
            for (size_t tap = 0; tap < t->ntaps; tap++) {                                                       \
                const size_t off = t->taps[tap];                                                                \
                for (int k = 0; k < 8 && pf < pf_end; k++, pf += 64) __builtin_prefetch(pf, 0, 2);              \
                for (int ci = 0; ci < (IB); ci++) {                                                             \
                    kiln_cv16 wv[NB];                                                                           \
                    KILN_UNROLL for (int b = 0; b < (NB); b++) wv[b] = KILN_CV_LOAD(w + b * 16);                   \
                    KILN_UNROLL for (int j = 0; j < (N); j++) {                                                             \
                        kiln_cv16 x = KILN_CV_SPLAT(src[j][off + ci]);                                        \
                        KILN_UNROLL for (int b = 0; b < (NB); b++) acc[j][b] += x * wv[b];                                  \
                    }                                                                                           \
                    w += w_ci;                                                                                  \
                }                                                                                               \
            }                                                                                                   \
            KILN_UNROLL for (int j = 0; j < (N); j++) src[j] += t->cb_stride;                                               \
            wcb = w;                                                                                            \
        }                                                                                                       \
        if (t->finish) {                                                                                        \
            KILN_UNROLL for (int b = 0; b < (NB); b++) {                                                                    \
                kiln_cv16 bias = t->bias ? KILN_CV_LOAD(t->bias + b * 16) : (kiln_cv16){0};            \
                KILN_UNROLL for (int j = 0; j < (N); j++) {                                                                 \
                    acc[j][b] += bias;                                                                          \
                    if (t->residual) acc[j][b] += KILN_CV_LOAD(t->residual + b * t->out_block + j * 16); \
                    if (t->slope) acc[j][b] = KILN_CV_PRELU(acc[j][b], KILN_CV_LOAD(t->slope + b * 16));   \
                    if (t->clamp) {                                                                             \
                        acc[j][b] = KILN_CV_CLAMP(acc[j][b], t->lo, t->hi);                                     \
                    }                                                                                           \
                }                                                                                               \
            }                                                                                                   \
        }                                                                                                       \
        KILN_UNROLL for (int j = 0; j < (N); j++)                                                                           \
            KILN_UNROLL for (int b = 0; b < (NB); b++) KILN_CV_STORE(t->out + b * t->out_block + j * 16, acc[j][b]);     \
    } while (0)

/* One instantiation per (pixels, blocks, input block size) and ISA, chosen by a switch. */
#define KILN_TILE_FN(PREFIX, ATTR, N, NB, IB)                                                                   \
    ATTR static void PREFIX##_tile_##N##_##NB##_##IB(const blocked_tile *t) { KILN_TILE_BODY(N, NB, IB); }

#define KILN_TILE_SET_NB(PREFIX, ATTR, NB, IB)                                                                  \
    KILN_TILE_FN(PREFIX, ATTR, 1, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 2, NB, IB)                                 \
    KILN_TILE_FN(PREFIX, ATTR, 3, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 4, NB, IB)                                 \
    KILN_TILE_FN(PREFIX, ATTR, 5, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 6, NB, IB)

#define KILN_TILE_SET12_NB(PREFIX, ATTR, NB, IB)                                                                \
    KILN_TILE_FN(PREFIX, ATTR, 7, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 8, NB, IB)                                 \
    KILN_TILE_FN(PREFIX, ATTR, 9, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 10, NB, IB)                                \
    KILN_TILE_FN(PREFIX, ATTR, 11, NB, IB) KILN_TILE_FN(PREFIX, ATTR, 12, NB, IB)

typedef void (*blocked_tile_fn)(const blocked_tile *t);

#define KILN_TILE_ROW(PREFIX, NB, IB)                                                                           \
    {PREFIX##_tile_1_##NB##_##IB, PREFIX##_tile_2_##NB##_##IB, PREFIX##_tile_3_##NB##_##IB,                     \
     PREFIX##_tile_4_##NB##_##IB, PREFIX##_tile_5_##NB##_##IB, PREFIX##_tile_6_##NB##_##IB}

/* Portable: one output block per tile (the compiler splits the 16 lanes into what the ISA has). */
KILN_TILE_SET_NB(generic, , 1, 16)
KILN_TILE_SET_NB(generic, , 1, 1)
static const blocked_tile_fn generic_tiles[2][KILN_CB_PIXELS] = {KILN_TILE_ROW(generic, 1, 1),
                                                                  KILN_TILE_ROW(generic, 1, 16)};

#if defined(__x86_64__)
#define KILN_ATTR_AVX2 __attribute__((target("avx2,fma")))
#define KILN_ATTR_AVX512 __attribute__((target("avx512f")))
/* AVX2: 6 pixels × 1 block = 12 ymm accumulators. */
KILN_TILE_SET_NB(avx2, KILN_ATTR_AVX2, 1, 16)
KILN_TILE_SET_NB(avx2, KILN_ATTR_AVX2, 1, 1)
static const blocked_tile_fn avx2_tiles[2][KILN_CB_PIXELS] = {KILN_TILE_ROW(avx2, 1, 1), KILN_TILE_ROW(avx2, 1, 16)};
/* AVX-512: 6 pixels × up to 4 blocks = 24 zmm accumulators. */
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 1, 16)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 2, 16)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 3, 16)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 4, 16)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 1, 1)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 2, 1)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 3, 1)
KILN_TILE_SET_NB(avx512, KILN_ATTR_AVX512, 4, 1)
/* With 1 or 2 output blocks, 12 pixels keep 12–24 accumulators busy (6 would leave the FMA latency
 * exposed with a single block). */
KILN_TILE_SET12_NB(avx512, KILN_ATTR_AVX512, 1, 16)
KILN_TILE_SET12_NB(avx512, KILN_ATTR_AVX512, 2, 16)
KILN_TILE_SET12_NB(avx512, KILN_ATTR_AVX512, 1, 1)
KILN_TILE_SET12_NB(avx512, KILN_ATTR_AVX512, 2, 1)
#define KILN_TILE_ROW_7_12(PREFIX, NB, IB)                                                                      \
    {PREFIX##_tile_7_##NB##_##IB, PREFIX##_tile_8_##NB##_##IB, PREFIX##_tile_9_##NB##_##IB,                     \
     PREFIX##_tile_10_##NB##_##IB, PREFIX##_tile_11_##NB##_##IB, PREFIX##_tile_12_##NB##_##IB}
static const blocked_tile_fn avx512_wide_tiles[2][2][6] = {
    {KILN_TILE_ROW_7_12(avx512, 1, 1), KILN_TILE_ROW_7_12(avx512, 2, 1)},
    {KILN_TILE_ROW_7_12(avx512, 1, 16), KILN_TILE_ROW_7_12(avx512, 2, 16)},
};
static const blocked_tile_fn avx512_tiles[2][KILN_CB_GROUP][KILN_CB_PIXELS] = {
    {KILN_TILE_ROW(avx512, 1, 1), KILN_TILE_ROW(avx512, 2, 1), KILN_TILE_ROW(avx512, 3, 1),
     KILN_TILE_ROW(avx512, 4, 1)},
    {KILN_TILE_ROW(avx512, 1, 16), KILN_TILE_ROW(avx512, 2, 16), KILN_TILE_ROW(avx512, 3, 16),
     KILN_TILE_ROW(avx512, 4, 16)},
};
#endif

/* Runs tile t (any nb ≤ 4; more than 6 pixels only on AVX-512 with nb ≤ 2) with the kernels of the current
 * ISA: all blocks at once on AVX-512, one block at a time elsewhere. */
static void run_tile(kiln_family family, blocked_tile *t, int ib16) {
    size_t n = t->n;
    (void)family;
#if defined(__x86_64__)
    if (family == KILN_FAMILY_AVX512) {
        if (n > KILN_CB_PIXELS) avx512_wide_tiles[ib16][t->nb - 1][n - 1 - KILN_CB_PIXELS](t);
        else avx512_tiles[ib16][t->nb - 1][n - 1](t);
        return;
    }
#endif
    blocked_tile one = *t;
    one.nb = 1;
    for (size_t b = 0; b < t->nb; b++) {
        one.w = t->w + b * 16;
        one.out = t->out + b * t->out_block;
        one.bias = t->bias ? t->bias + b * 16 : NULL;
        one.residual = t->residual ? t->residual + b * t->out_block : NULL;
        one.slope = t->slope ? t->slope + b * 16 : NULL;
#if defined(__x86_64__)
        if (family == KILN_FAMILY_AVX2) {
            avx2_tiles[ib16][n - 1](&one);
            continue;
        }
#endif
        generic_tiles[ib16][n - 1](&one);
    }
}


/* Per-channel values of output blocks [b0, b0 + nb) as lanes (zero past out_channels); NULL when src is. */
static const float *channel_lanes(const float *src, size_t out_channels, size_t b0, size_t nb, float *dst) {
    if (!src) return NULL;
    for (size_t i = 0; i < nb * KILN_BLOCK; i++) {
        size_t co = b0 * KILN_BLOCK + i;
        dst[i] = co < out_channels ? src[co] : 0.0f;
    }
    return dst;
}

void kiln_conv2d_blocked(const kiln_conv2d_params *p, int blocked_input, const float *source,
                         const float *packed_weight, float *output, size_t w0, size_t w1,
                         const kiln_epilogue *epilogue) {
    kiln_conv2d_blocked_prelu(p, blocked_input, source, packed_weight, output, w0, w1, epilogue, NULL);
}

void kiln_conv2d_blocked_prelu(const kiln_conv2d_params *p, int blocked_input, const float *source,
                               const float *packed_weight, float *output, size_t w0, size_t w1,
                               const kiln_epilogue *epilogue, const float *slope) {
    if (!usable(p)) return;
    const blocked_geometry g = geometry(p, blocked_input);
    const size_t items = g.groups * g.chunks;
    if (w1 > items) w1 = items;
    if (w0 >= w1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    const kiln_family family = kiln_family_of(kiln_kernels_current());
    const int ib16 = blocked_input ? 1 : 0;
    const size_t P = g.pixels, OW = p->out_width, ps = g.ps;
    const size_t src_block = g.hp * g.wp * ps;

    /* Tap offsets from a pixel's window origin, in floats of the source. */
    size_t *taps = (size_t *)kiln_scratch(0, g.taps * (sizeof(size_t) / sizeof(float)));
    if (!taps) return;
    for (size_t kh = 0; kh < p->kernel_h; kh++)
        for (size_t kw = 0; kw < p->kernel_w; kw++)
            taps[kh * p->kernel_w + kw] = (kh * p->dilation_h * g.wp + kw * p->dilation_w) * ps;

    /* Input blocks per pass: as many as keep one group's weights for the pass within L1. */
    const size_t w_per_cb_block = g.taps * g.ib * KILN_BLOCK * sizeof(float);
    const int act = epilogue ? (int)epilogue->activation : KILN_ACT_NONE;
    const int inline_act = act == KILN_ACT_NONE || act == KILN_ACT_RELU || act == KILN_ACT_CLIP;
    /* Weights beyond half of L2 are streamed (see the prefetch below). */
    const int stream = g.cob * KILN_BLOCK * g.cb * g.ib * g.taps * sizeof(float) > (1u << 20);

    for (size_t item = w0; item < w1; item++) {
        size_t grp = item / g.chunks, chunk = item % g.chunks;
        size_t b0 = grp * KILN_CB_GROUP;
        size_t nb = g.cob - b0 < KILN_CB_GROUP ? g.cob - b0 : KILN_CB_GROUP;
        size_t q0 = chunk * g.chunk, q1 = q0 + g.chunk < P ? q0 + g.chunk : P;
        if (q0 >= q1) continue;
        size_t per_pass = KILN_CB_L1 / (w_per_cb_block * nb);
        if (per_pass == 0) per_pass = 1;
        const float *wg = packed_weight + b0 * KILN_BLOCK * g.cb * g.ib * g.taps;
        const size_t w_cb = g.taps * g.ib * nb * KILN_BLOCK;

        float bias[KILN_CB_GROUP * KILN_BLOCK];
        const float *bias_ptr = NULL;
        if (epilogue && epilogue->bias) {
            for (size_t i = 0; i < nb * KILN_BLOCK; i++) {
                size_t co = b0 * KILN_BLOCK + i;
                bias[i] = co < p->out_channels ? epilogue->bias[co] : 0.0f;
            }
            bias_ptr = bias;
        }
        float slopes[KILN_CB_GROUP * KILN_BLOCK];

        blocked_tile t;
        t.nb = nb;
        t.taps = taps;
        t.ntaps = g.taps;
        t.cb_stride = src_block;
        t.w_ci = nb * KILN_BLOCK;
        t.out_block = P * KILN_BLOCK;
        t.bias = bias_ptr;
        t.slope = channel_lanes(slope, p->out_channels, b0, nb, slopes);
        t.clamp = 0;
        t.lo = 0.0f;
        t.hi = 0.0f;
        if (epilogue && act == KILN_ACT_RELU) {
            t.clamp = 1;
            t.lo = 0.0f;
            t.hi = __builtin_inff();
        } else if (epilogue && act == KILN_ACT_CLIP) {
            t.clamp = 1;
            t.lo = epilogue->alpha;
            t.hi = epilogue->beta;
        }
        /* The chunk's pixels: each one's window origin in the source, and tiles of near-equal size
         * (never a lone pixel when the chunk has more than 6), worked out once for all passes. */
        size_t origin[KILN_CB_CHUNK], sizes[KILN_CB_CHUNK];
        size_t tile_pixels = family == KILN_FAMILY_AVX512 && nb <= 2 ? KILN_CB_PIXELS_MAX : KILN_CB_PIXELS;
        size_t count = q1 - q0, tiles = div_up(count, tile_pixels);
        for (size_t q = q0, oh = q0 / OW, ow = q0 % OW; q < q1; q++) {
            origin[q - q0] = (oh * p->stride_h * g.wp + ow * p->stride_w) * ps;
            if (++ow == OW) {
                ow = 0;
                oh++;
            }
        }
        for (size_t i = 0, done = 0; i < tiles; i++) {
            sizes[i] = div_up(count - done, tiles - i);
            done += sizes[i];
        }
        for (size_t cb = 0; cb < g.cb; cb += per_pass) {
            size_t cbs = g.cb - cb < per_pass ? g.cb - cb : per_pass;
            int last = cb + cbs == g.cb;
            t.cbs = cbs;
            t.accumulate = cb > 0;
            t.finish = last;
            t.w = wg + cb * w_cb;
            const float *base = source + cb * src_block;
            /* The weights that follow this pass (the next pass, or the next group's first) stream from
             * L3 or memory when the layer's weights exceed L2: the tiles fetch them into L2 a slice each. */
            const float *next = t.w + cbs * w_cb;
            size_t next_len = stream ? per_pass * w_cb : 0;
            size_t q = q0;
            for (size_t i = 0; i < tiles; i++) {
                size_t n = sizes[i];
                size_t pf0 = i * next_len / tiles, pf1 = (i + 1) * next_len / tiles;
                t.prefetch = pf1 > pf0 ? (const char *)(next + pf0) : NULL;
                t.prefetch_lines = (pf1 - pf0) / 16;
                t.n = n;
                for (size_t j = 0; j < n; j++) t.src[j] = base + origin[q - q0 + j];
                t.out = output + b0 * P * KILN_BLOCK + q * KILN_BLOCK;
                t.residual = last && epilogue && epilogue->residual
                                 ? epilogue->residual + b0 * P * KILN_BLOCK + q * KILN_BLOCK
                                 : NULL;
                run_tile(family, &t, ib16);
                if (last && epilogue && !inline_act)
                    for (size_t b = 0; b < nb; b++)
                        kt->activation(epilogue->activation, epilogue->alpha, epilogue->beta, n * KILN_BLOCK,
                                       t.out + b * P * KILN_BLOCK, t.out + b * P * KILN_BLOCK);
                q += n;
            }
        }
    }
}

/* ---- Winograd F(4×4, 3×3) ----
 *
 * A 3×3, stride-1 convolution computed per 4×4 output tile from a 6×6 input patch d: Y = Aᵀ[(G g Gᵀ) ⊙
 * (Bᵀ d B)]A, summed over input channels. For every one of the 36 positions ξ of the transformed tile
 * the sum over input channels is a matrix product M_ξ[tile][co] = Σ_ci V_ξ[tile][ci] · U_ξ[ci][co] — 4
 * multiplications per output where the direct convolution needs 9. A work item is a group of up to
 * KILN_WINO_TILES output tiles over all channels: transform their input patches (vectors of 16
 * channels), run the 36 products with the direct convolution's tiles (1×1 "taps", the transformed tiles
 * as pixels), and transform back with the epilogue fused.
 *
 * Packed weight: for each ξ, U_ξ laid out as the blocked convolution's weights of a 1×1 convolution.
 * Per-thread scratch: V [36][input blocks][tiles][16] then M [36][output blocks][tiles][16].
 */

enum { KILN_WINO_TILES = 12 };

int kiln_conv2d_winograd_supported(const kiln_conv2d_params *p) {
    return p->groups == 1 && p->kernel_h == 3 && p->kernel_w == 3 && p->stride_h == 1 && p->stride_w == 1 &&
           p->dilation_h == 1 && p->dilation_w == 1 && p->in_channels > 0 && p->out_channels > 0;
}

static size_t wino_tile_count(const kiln_conv2d_params *p) {
    return div_up(p->out_height, 4) * div_up(p->out_width, 4);
}

size_t kiln_conv2d_winograd_pack_weight_size(const kiln_conv2d_params *p) {
    if (!kiln_conv2d_winograd_supported(p)) return 0;
    return 36 * kiln_blocked_channels(p->in_channels) * kiln_blocked_channels(p->out_channels);
}

void kiln_conv2d_winograd_pack_weight(const kiln_conv2d_params *p, const float *blocked_weight, float *packed) {
    if (!kiln_conv2d_winograd_supported(p)) return;
    static const double G[6][3] = {{1.0 / 4, 0, 0},           {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                   {-1.0 / 6, 1.0 / 6, -1.0 / 6}, {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                   {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
    const size_t cin = p->in_channels, cout = p->out_channels;
    const size_t cb = div_up(cin, KILN_BLOCK), cob = div_up(cout, KILN_BLOCK);
    const size_t per_xi = cob * KILN_BLOCK * cb * KILN_BLOCK;
    memset(packed, 0, 36 * per_xi * sizeof(float));
    for (size_t co = 0; co < cout; co++) {
        size_t block = co / KILN_BLOCK, b0 = block / KILN_CB_GROUP * KILN_CB_GROUP, b = block - b0;
        size_t nb = cob - b0 < KILN_CB_GROUP ? cob - b0 : KILN_CB_GROUP;
        /* The group's start in both layouts, and (channel ci, block b, lane) inside it; the blocked layout
         * has 9 taps per input block where U_ξ has one. */
        const float *src = blocked_weight + b0 * KILN_BLOCK * cb * KILN_BLOCK * 9;
        float *dst = packed + b0 * KILN_BLOCK * cb * KILN_BLOCK;
        for (size_t ci = 0; ci < cin; ci++) {
            size_t c_blk = ci / KILN_BLOCK, c_in = ci % KILN_BLOCK, lane = b * KILN_BLOCK + co % KILN_BLOCK;
            double g[3][3], gt[6][3];
            for (size_t tap = 0; tap < 9; tap++)
                g[tap / 3][tap % 3] = src[((c_blk * 9 + tap) * KILN_BLOCK + c_in) * nb * KILN_BLOCK + lane];
            for (int r = 0; r < 6; r++) /* G g */
                for (int c = 0; c < 3; c++) gt[r][c] = G[r][0] * g[0][c] + G[r][1] * g[1][c] + G[r][2] * g[2][c];
            size_t offset = (c_blk * KILN_BLOCK + c_in) * nb * KILN_BLOCK + lane;
            for (int r = 0; r < 6; r++) /* (G g) Gᵀ */
                for (int c = 0; c < 6; c++)
                    dst[(size_t)(r * 6 + c) * per_xi + offset] =
                        (float)(gt[r][0] * G[c][0] + gt[r][1] * G[c][1] + gt[r][2] * G[c][2]);
        }
    }
}

size_t kiln_conv2d_winograd_work(const kiln_conv2d_params *p) {
    return kiln_conv2d_winograd_supported(p) ? div_up(wino_tile_count(p), KILN_WINO_TILES) : 0;
}

/* Bᵀ x for one column of 6 (in place over x[0..5], stride s between elements). */
#define KILN_WINO_BT(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3, y4, y5)                                             \
    do {                                                                                                        \
        y0 = (x0) * 4.0f - (x2) * 5.0f + (x4);                                                                  \
        y1 = ((x3) + (x4)) - ((x1) + (x2)) * 4.0f;                                                              \
        y2 = ((x4) - (x3)) + ((x1) - (x2)) * 4.0f;                                                              \
        y3 = ((x4) - (x2)) + ((x3) - (x1)) * 2.0f;                                                              \
        y4 = ((x4) - (x2)) - ((x3) - (x1)) * 2.0f;                                                              \
        y5 = (x1) * 4.0f - (x3) * 5.0f + (x5);                                                                  \
    } while (0)

/* Aᵀ x for one column of 6 into 4. */
#define KILN_WINO_AT(x0, x1, x2, x3, x4, x5, y0, y1, y2, y3)                                                     \
    do {                                                                                                        \
        kiln_cv16 s12 = (x1) + (x2), d12 = (x1) - (x2), s34 = (x3) + (x4), d34 = (x3) - (x4);                  \
        y0 = (x0) + s12 + s34;                                                                                  \
        y1 = d12 + d34 * 2.0f;                                                                                  \
        y2 = s12 + s34 * 4.0f;                                                                                  \
        y3 = d12 + d34 * 8.0f + (x5);                                                                           \
    } while (0)

/* Input transform of one 6×6 patch of one input block whose top-left input pixel is (y0, x0) (may lie
 * outside: those pixels read as zero): v[ξ · vstride] for ξ = 0..35. */
#define KILN_WINO_INPUT_BODY                                                                                    \
    do {                                                                                                        \
        kiln_cv16 d[6][6], t[6][6];                                                                             \
        int inside = y0 >= 0 && x0 >= 0 && y0 + 6 <= (ptrdiff_t)h && x0 + 6 <= (ptrdiff_t)w;                    \
        KILN_UNROLL for (int r = 0; r < 6; r++) KILN_UNROLL for (int c = 0; c < 6; c++) {                       \
            ptrdiff_t y = y0 + r, x = x0 + c;                                                                   \
            d[r][c] = inside || (y >= 0 && y < (ptrdiff_t)h && x >= 0 && x < (ptrdiff_t)w)                      \
                          ? KILN_CV_LOAD(in + ((size_t)y * w + (size_t)x) * KILN_BLOCK)                         \
                          : (kiln_cv16){0};                                                                     \
        }                                                                                                       \
        KILN_UNROLL for (int c = 0; c < 6; c++)                                                                 \
            KILN_WINO_BT(d[0][c], d[1][c], d[2][c], d[3][c], d[4][c], d[5][c], t[0][c], t[1][c], t[2][c],       \
                         t[3][c], t[4][c], t[5][c]);                                                            \
        KILN_UNROLL for (int r = 0; r < 6; r++) {                                                               \
            kiln_cv16 o0, o1, o2, o3, o4, o5;                                                                   \
            KILN_WINO_BT(t[r][0], t[r][1], t[r][2], t[r][3], t[r][4], t[r][5], o0, o1, o2, o3, o4, o5);         \
            KILN_CV_STORE(v + (size_t)(r * 6 + 0) * vstride, o0);                                               \
            KILN_CV_STORE(v + (size_t)(r * 6 + 1) * vstride, o1);                                               \
            KILN_CV_STORE(v + (size_t)(r * 6 + 2) * vstride, o2);                                               \
            KILN_CV_STORE(v + (size_t)(r * 6 + 3) * vstride, o3);                                               \
            KILN_CV_STORE(v + (size_t)(r * 6 + 4) * vstride, o4);                                               \
            KILN_CV_STORE(v + (size_t)(r * 6 + 5) * vstride, o5);                                               \
        }                                                                                                       \
    } while (0)

/* Output transform of one tile of one output block: m[ξ · mstride] → the 4×4 outputs at (oy, ox), those
 * inside oh × ow only, with bias (vector), residual (blocked, same place as out) and relu/clip fused. */
#define KILN_WINO_OUTPUT_BODY                                                                                   \
    do {                                                                                                        \
        kiln_cv16 s[4][6];                                                                                      \
        KILN_UNROLL for (int c = 0; c < 6; c++) {                                                               \
            kiln_cv16 m0 = KILN_CV_LOAD(m + (size_t)(0 * 6 + c) * mstride);                                     \
            kiln_cv16 m1 = KILN_CV_LOAD(m + (size_t)(1 * 6 + c) * mstride);                                     \
            kiln_cv16 m2 = KILN_CV_LOAD(m + (size_t)(2 * 6 + c) * mstride);                                     \
            kiln_cv16 m3 = KILN_CV_LOAD(m + (size_t)(3 * 6 + c) * mstride);                                     \
            kiln_cv16 m4 = KILN_CV_LOAD(m + (size_t)(4 * 6 + c) * mstride);                                     \
            kiln_cv16 m5 = KILN_CV_LOAD(m + (size_t)(5 * 6 + c) * mstride);                                     \
            KILN_WINO_AT(m0, m1, m2, m3, m4, m5, s[0][c], s[1][c], s[2][c], s[3][c]);                           \
        }                                                                                                       \
        kiln_cv16 b = KILN_CV_LOAD(bias);                                                                       \
        KILN_UNROLL for (int r = 0; r < 4; r++) {                                                               \
            kiln_cv16 y[4];                                                                                     \
            KILN_WINO_AT(s[r][0], s[r][1], s[r][2], s[r][3], s[r][4], s[r][5], y[0], y[1], y[2], y[3]);         \
            if (oy + (size_t)r >= oh) break;                                                                    \
            KILN_UNROLL for (int c = 0; c < 4; c++) {                                                           \
                if (ox + (size_t)c >= ow) break;                                                                \
                size_t at = ((oy + (size_t)r) * ow + ox + (size_t)c) * KILN_BLOCK;                              \
                kiln_cv16 v = y[c] + b;                                                                         \
                if (residual) v += KILN_CV_LOAD(residual + at);                                                 \
                if (slope) v = KILN_CV_PRELU(v, KILN_CV_LOAD(slope));                                           \
                if (clamp) v = KILN_CV_CLAMP(v, lo, hi);                                                        \
                KILN_CV_STORE(out + at, v);                                                                     \
            }                                                                                                   \
        }                                                                                                       \
    } while (0)

typedef void (*wino_input_fn)(const float *in, size_t h, size_t w, ptrdiff_t y0, ptrdiff_t x0, float *v,
                              size_t vstride);
typedef void (*wino_output_fn)(const float *m, size_t mstride, const float *bias, const float *residual,
                               const float *slope, int clamp,
                               float lo, float hi, float *out, size_t oh, size_t ow, size_t oy, size_t ox);

#define KILN_WINO_FNS(PREFIX, ATTR)                                                                             \
    ATTR static void PREFIX##_wino_input(const float *in, size_t h, size_t w, ptrdiff_t y0, ptrdiff_t x0,      \
                                         float *v, size_t vstride) {                                            \
        KILN_WINO_INPUT_BODY;                                                                                   \
    }                                                                                                           \
    ATTR static void PREFIX##_wino_output(const float *m, size_t mstride, const float *bias,                    \
                                          const float *residual, const float *slope, int clamp, float lo,       \
                                          float hi, float *out,                                                 \
                                          size_t oh, size_t ow, size_t oy, size_t ox) {                         \
        KILN_WINO_OUTPUT_BODY;                                                                                  \
    }

KILN_WINO_FNS(generic, )
#if defined(__x86_64__)
KILN_WINO_FNS(avx2, KILN_ATTR_AVX2)
KILN_WINO_FNS(avx512, KILN_ATTR_AVX512)
#endif

void kiln_conv2d_winograd(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                          float *output, size_t w0, size_t w1, const kiln_epilogue *epilogue) {
    kiln_conv2d_winograd_prelu(p, input, packed_weight, output, w0, w1, epilogue, NULL);
}

void kiln_conv2d_winograd_prelu(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                float *output, size_t w0, size_t w1, const kiln_epilogue *epilogue,
                                const float *slope) {
    if (!kiln_conv2d_winograd_supported(p)) return;
    const size_t T = KILN_WINO_TILES, ntiles = wino_tile_count(p), items = div_up(ntiles, T);
    if (w1 > items) w1 = items;
    if (w0 >= w1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    const kiln_family family = kiln_family_of(kiln_kernels_current());
    wino_input_fn transform_in = generic_wino_input;
    wino_output_fn transform_out = generic_wino_output;
#if defined(__x86_64__)
    if (family == KILN_FAMILY_AVX512) {
        transform_in = avx512_wino_input;
        transform_out = avx512_wino_output;
    } else if (family == KILN_FAMILY_AVX2) {
        transform_in = avx2_wino_input;
        transform_out = avx2_wino_output;
    }
#endif
    const size_t H = p->in_height, W = p->in_width, OH = p->out_height, OW = p->out_width;
    const size_t cb = div_up(p->in_channels, KILN_BLOCK), cob = div_up(p->out_channels, KILN_BLOCK);
    const size_t groups = div_up(cob, KILN_CB_GROUP), per_xi = cob * KILN_BLOCK * cb * KILN_BLOCK;
    const size_t tiles_x = div_up(OW, 4), P = OH * OW;
    float *V = kiln_scratch(1, 36 * T * (cb + cob) * KILN_BLOCK);
    if (!V) return;
    float *M = V + 36 * T * cb * KILN_BLOCK;
    static const size_t one_tap[1] = {0};
    const int act = epilogue ? (int)epilogue->activation : KILN_ACT_NONE;
    const int inline_act = act == KILN_ACT_NONE || act == KILN_ACT_RELU || act == KILN_ACT_CLIP;
    const int clamp = epilogue && (act == KILN_ACT_RELU || act == KILN_ACT_CLIP);
    const float lo = act == KILN_ACT_CLIP ? epilogue->alpha : 0.0f;
    const float hi = act == KILN_ACT_CLIP ? epilogue->beta : __builtin_inff();

    for (size_t item = w0; item < w1; item++) {
        size_t t0 = item * T, tn = ntiles - t0 < T ? ntiles - t0 : T;
        /* Input patches → V. */
        for (size_t c = 0; c < cb; c++)
            for (size_t t = 0; t < tn; t++) {
                size_t ty = (t0 + t) / tiles_x, tx = (t0 + t) % tiles_x;
                transform_in(input + c * H * W * KILN_BLOCK, H, W, (ptrdiff_t)(ty * 4) - (ptrdiff_t)p->pad_top,
                             (ptrdiff_t)(tx * 4) - (ptrdiff_t)p->pad_left, V + (c * T + t) * KILN_BLOCK,
                             cb * T * KILN_BLOCK);
            }
        /* The 36 products, M_ξ = V_ξ · U_ξ, as 1×1 blocked convolutions over the transformed tiles. */
        blocked_tile bt;
        memset(&bt, 0, sizeof bt);
        bt.taps = one_tap;
        bt.ntaps = 1;
        bt.cbs = cb;
        bt.cb_stride = T * KILN_BLOCK;
        bt.out_block = T * KILN_BLOCK;
        for (size_t xi = 0; xi < 36; xi++)
            for (size_t grp = 0; grp < groups; grp++) {
                size_t b0 = grp * KILN_CB_GROUP;
                bt.nb = cob - b0 < KILN_CB_GROUP ? cob - b0 : KILN_CB_GROUP;
                bt.w = packed_weight + xi * per_xi + b0 * KILN_BLOCK * cb * KILN_BLOCK;
                bt.w_ci = bt.nb * KILN_BLOCK;
                size_t step = family == KILN_FAMILY_AVX512 && bt.nb <= 2 ? KILN_CB_PIXELS_MAX : KILN_CB_PIXELS;
                for (size_t j0 = 0; j0 < tn; j0 += step) {
                    bt.n = tn - j0 < step ? tn - j0 : step;
                    for (size_t j = 0; j < bt.n; j++) bt.src[j] = V + (xi * cb * T + j0 + j) * KILN_BLOCK;
                    bt.out = M + ((xi * cob + b0) * T + j0) * KILN_BLOCK;
                    run_tile(family, &bt, 1);
                }
            }
        /* M → outputs, with the epilogue. */
        for (size_t c = 0; c < cob; c++) {
            float bias[KILN_BLOCK], slopes[KILN_BLOCK];
            for (size_t l = 0; l < KILN_BLOCK; l++) {
                size_t co = c * KILN_BLOCK + l;
                bias[l] = epilogue && epilogue->bias && co < p->out_channels ? epilogue->bias[co] : 0.0f;
            }
            const float *slope_c = channel_lanes(slope, p->out_channels, c, 1, slopes);
            float *out = output + c * P * KILN_BLOCK;
            const float *res = epilogue && epilogue->residual ? epilogue->residual + c * P * KILN_BLOCK : NULL;
            for (size_t t = 0; t < tn; t++) {
                size_t oy = (t0 + t) / tiles_x * 4, ox = (t0 + t) % tiles_x * 4;
                transform_out(M + (c * T + t) * KILN_BLOCK, cob * T * KILN_BLOCK, bias, res, slope_c, clamp, lo, hi, out, OH,
                              OW, oy, ox);
                if (epilogue && !inline_act)
                    for (size_t r = oy; r < oy + 4 && r < OH; r++) {
                        size_t n = OW - ox < 4 ? OW - ox : 4;
                        float *row = out + (r * OW + ox) * KILN_BLOCK;
                        kt->activation(epilogue->activation, epilogue->alpha, epilogue->beta, n * KILN_BLOCK, row, row);
                    }
            }
        }
    }
}
