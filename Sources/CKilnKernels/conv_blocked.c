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
    KILN_CB_PIXELS = 6,   /* pixels per tile */
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
    float *dst = packed;
    for (size_t grp = 0; grp < g.groups; grp++) {
        size_t b0 = grp * KILN_CB_GROUP;
        size_t nb = g.cob - b0 < KILN_CB_GROUP ? g.cob - b0 : KILN_CB_GROUP;
        for (size_t cb = 0; cb < g.cb; cb++)
            for (size_t t = 0; t < g.taps; t++)
                for (size_t ci = 0; ci < g.ib; ci++)
                    for (size_t b = 0; b < nb; b++)
                        for (size_t lane = 0; lane < KILN_BLOCK; lane++) {
                            size_t co = (b0 + b) * KILN_BLOCK + lane, c = cb * g.ib + ci;
                            *dst++ = co < cout && c < cin ? weight[(co * cin + c) * g.taps + t] : 0.0f;
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
    const float *src[KILN_CB_PIXELS]; /* each pixel's tap (0, 0), channel 0 of the first input block */
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
    int clamp;                        /* finish: clamp to [lo, hi] */
    float lo, hi;
    const char *prefetch;             /* lines to fetch into L2 while computing (NULL for none) */
    size_t prefetch_lines;
} blocked_tile;

typedef float kiln_cv16 __attribute__((vector_size(64), aligned(4)));
#define KILN_CV_LOAD(p) (*(const kiln_cv16 *)(const void *)(p))
#define KILN_CV_STORE(p, v) (*(kiln_cv16 *)(void *)(p) = (v))
#define KILN_CV_SPLAT(x) ({ float s_ = (x); (kiln_cv16){s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_, s_}; })
#define KILN_UNROLL _Pragma("clang loop unroll(full)")

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
                    if (t->clamp) {                                                                             \
                        acc[j][b] = __builtin_elementwise_max(acc[j][b], KILN_CV_SPLAT(t->lo));                \
                        acc[j][b] = __builtin_elementwise_min(acc[j][b], KILN_CV_SPLAT(t->hi));                \
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
static const blocked_tile_fn avx512_tiles[2][KILN_CB_GROUP][KILN_CB_PIXELS] = {
    {KILN_TILE_ROW(avx512, 1, 1), KILN_TILE_ROW(avx512, 2, 1), KILN_TILE_ROW(avx512, 3, 1),
     KILN_TILE_ROW(avx512, 4, 1)},
    {KILN_TILE_ROW(avx512, 1, 16), KILN_TILE_ROW(avx512, 2, 16), KILN_TILE_ROW(avx512, 3, 16),
     KILN_TILE_ROW(avx512, 4, 16)},
};
#endif

/* Runs tile t (any nb ≤ 4) with the kernels of the current ISA: all blocks at once on AVX-512, one block
 * at a time elsewhere. */
static void run_tile(int family, blocked_tile *t, int ib16) {
    size_t n = t->n;
#if defined(__x86_64__)
    if (family == 2) {
        avx512_tiles[ib16][t->nb - 1][n - 1](t);
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
#if defined(__x86_64__)
        if (family == 1) {
            avx2_tiles[ib16][n - 1](&one);
            continue;
        }
#endif
        generic_tiles[ib16][n - 1](&one);
    }
}

static int current_family(void) {
    const char *isa = kiln_kernels_current()->isa;
    if (strcmp(isa, "avx512") == 0) return 2;
    if (strcmp(isa, "avx2") == 0) return 1;
    return 0;
}

void kiln_conv2d_blocked(const kiln_conv2d_params *p, int blocked_input, const float *source,
                         const float *packed_weight, float *output, size_t w0, size_t w1,
                         const kiln_epilogue *epilogue) {
    if (!usable(p)) return;
    const blocked_geometry g = geometry(p, blocked_input);
    const size_t items = g.groups * g.chunks;
    if (w1 > items) w1 = items;
    if (w0 >= w1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    const int family = current_family();
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

        blocked_tile t;
        t.nb = nb;
        t.taps = taps;
        t.ntaps = g.taps;
        t.cb_stride = src_block;
        t.w_ci = nb * KILN_BLOCK;
        t.out_block = P * KILN_BLOCK;
        t.bias = bias_ptr;
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
        size_t count = q1 - q0, tiles = div_up(count, KILN_CB_PIXELS);
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
