/*
 * kernels.c — kiln.dsp's kernels, written once against hvx.h (see kernels.h for each contract and
 * Documentation/targets/DSP.md for the arithmetic). No libc, no division, no allocation.
 */
#include "kernels.h"
#include "hvx.h"

/* ceil(a / 2^s) without division. */
static inline size_t ceil_shift(size_t a, unsigned s) { return (a + ((size_t)1 << s) - 1) >> s; }

/* Copies n bytes (the kernels do not call memcpy: they also build freestanding). */
static inline void copy_bytes(uint8_t *d, const uint8_t *s, size_t n) { for (size_t i = 0; i < n; i++) d[i] = s[i]; }

/* A byte as a signed or unsigned value. */
static inline int32_t byte_value(uint8_t b, int is_unsigned) { return is_unsigned ? (int32_t)b : (int32_t)(int8_t)b; }

/* The requantization of one int32 vector up to the zero point (everything before the final clamp). */
static inline HVX_Vector requant_vector(HVX_Vector acc, HVX_Vector mult, int32_t shift, HVX_Vector round, HVX_Vector zp) {
    HVX_Vector t = hvx_vmpyowh_rnd_sacc(hvx_vmpyewuh(acc, mult), acc, mult);
    if (shift > 0) t = hvx_vasrw(hvx_vaddwsat(t, round), shift);
    return hvx_vaddwsat(t, zp);
}

/* Four int32 vectors (values 0..31, 32..63, 64..95, 96..127) narrowed with saturation to 128 bytes in order. */
static inline HVX_Vector narrow4(HVX_Vector r0, HVX_Vector r1, HVX_Vector r2, HVX_Vector r3, int out_unsigned) {
    HVX_Vector h01 = hvx_vpackwh_sat(r1, r0), h23 = hvx_vpackwh_sat(r3, r2);
    return out_unsigned ? hvx_vpackhub_sat(h23, h01) : hvx_vpackhb_sat(h23, h01);
}

/* Stores the first n (<= 128) bytes of v at p. */
static inline void store_head(uint8_t *p, HVX_Vector v, size_t n) {
    if (n >= 128) { hvx_store(p, v); return; }
    uint8_t tmp[128];
    hvx_store(tmp, v);
    copy_bytes(p, tmp, n);
}

/* Loads n (<= 128) bytes from p into a vector whose other bytes are `fill`. */
static inline HVX_Vector load_head(const uint8_t *p, size_t n, uint8_t fill) {
    if (n >= 128) return hvx_load(p);
    uint8_t tmp[128];
    for (size_t i = 0; i < 128; i++) tmp[i] = i < n ? p[i] : fill;
    return hvx_load(tmp);
}

/* Splits 128 bytes into four int32 vectors (bytes 0..31, 32..63, 64..95, 96..127), sign- or zero-extended. */
static inline void widen4(HVX_Vector v, int is_unsigned, HVX_Vector out[4]) {
    HVX_VectorPair h = is_unsigned ? hvx_vunpackub(v) : hvx_vunpackb(v);
    HVX_VectorPair lo = hvx_vunpackh(hvx_lo(h)), hi = hvx_vunpackh(hvx_hi(h));
    out[0] = hvx_lo(lo); out[1] = hvx_hi(lo); out[2] = hvx_lo(hi); out[3] = hvx_hi(hi);
}

void dsp_requant_i32(const int32_t *in, size_t n, const dsp_requant *q, int out_unsigned, uint8_t *out) {
    HVX_Vector mult = hvx_vsplatw(q->multiplier), zp = hvx_vsplatw(q->zero_point);
    HVX_Vector round = hvx_vsplatw(q->shift > 0 ? (int32_t)(1u << (q->shift - 1)) : 0);
    for (size_t i = 0; i < n; i += 128) {
        size_t count = n - i < 128 ? n - i : 128;
        int32_t tmp[128];
        for (size_t k = 0; k < 128; k++) tmp[k] = k < count ? in[i + k] : 0;
        HVX_Vector r[4];
        for (int j = 0; j < 4; j++) r[j] = requant_vector(hvx_load(tmp + 32 * j), mult, q->shift, round, zp);
        store_head(out + i, narrow4(r[0], r[1], r[2], r[3], out_unsigned), count);
    }
}

size_t dsp_gemm_packed_size(size_t K, size_t N) { return ceil_shift(N, 5) * ceil_shift(K, 2) * 128; }

void dsp_gemm_pack_b(const uint8_t *B, size_t K, size_t N, size_t ldb, int b_unsigned, uint8_t *packed, int32_t *colsum) {
    size_t K4 = ceil_shift(K, 2), blocks = ceil_shift(N, 5);
    for (size_t j = 0; j < blocks; j++)
        for (size_t g = 0; g < K4; g++) {
            uint8_t *dst = packed + (j * K4 + g) * 128;
            for (size_t c = 0; c < 32; c++)
                for (size_t i = 0; i < 4; i++) {
                    size_t k = 4 * g + i, n = 32 * j + c;
                    dst[4 * c + i] = k < K && n < N ? B[k * ldb + n] : 0;
                }
        }
    for (size_t n = 0; n < N; n++) {
        uint32_t s = 0;
        for (size_t k = 0; k < K; k++) s += (uint32_t)byte_value(B[k * ldb + n], b_unsigned);
        colsum[n] = (int32_t)s;
    }
}

/* One vrmpy step with the operand order the signedness needs (the unsigned side must be Vu). */
static inline HVX_Vector vrmpy_step(HVX_Vector acc, HVX_Vector a_splat, HVX_Vector b, int a_unsigned, int b_unsigned) {
    if (!a_unsigned && !b_unsigned) return hvx_vrmpybv_acc(acc, a_splat, b);
    if (a_unsigned && !b_unsigned) return hvx_vrmpybusv_acc(acc, a_splat, b);
    if (!a_unsigned) return hvx_vrmpybusv_acc(acc, b, a_splat);
    return hvx_vrmpyubv_acc(acc, a_splat, b);
}

void dsp_qgemm(const dsp_gemm *g) {
    size_t K4 = ceil_shift(g->K, 2);
    uint32_t kzz = (uint32_t)g->K * (uint32_t)g->za * (uint32_t)g->zb;
    for (size_t m = 0; m < g->M; m++) {
        const dsp_requant *rq = g->row_requant ? &g->row_requant[m] : &g->requant;
        HVX_Vector mult = hvx_vsplatw(rq->multiplier), zp = hvx_vsplatw(rq->zero_point);
        HVX_Vector round = hvx_vsplatw(rq->shift > 0 ? (int32_t)(1u << (rq->shift - 1)) : 0);
        const uint8_t *a = g->A + m * g->lda;
        uint32_t rowsum = 0;
        for (size_t k = 0; k < g->K; k++) rowsum += (uint32_t)byte_value(a[k], g->a_unsigned);
        uint32_t row_init = kzz - (uint32_t)g->zb * rowsum + (g->bias_row ? (uint32_t)g->bias_row[m] : 0);
        for (size_t n0 = 0; n0 < g->N; n0 += 128) {
            size_t count = g->N - n0 < 128 ? g->N - n0 : 128;
            int32_t init[128];
            for (size_t c = 0; c < 128; c++) {
                size_t n = n0 + c;
                init[c] = n < g->N ? (int32_t)(row_init - (uint32_t)g->za * (uint32_t)g->colsum[n] +
                                               (g->bias_col ? (uint32_t)g->bias_col[n] : 0))
                                   : 0;
            }
            HVX_Vector acc[4];
            for (int j = 0; j < 4; j++) acc[j] = hvx_load(init + 32 * j);
            size_t first_block = n0 >> 5;
            int live = (int)ceil_shift(count, 5);
            for (size_t k4 = 0; k4 < K4; k4++) {
                uint32_t word = 0;
                for (unsigned i = 0; i < 4; i++) {
                    size_t k = 4 * k4 + i;
                    if (k < g->K) word |= (uint32_t)a[k] << (8 * i);
                }
                HVX_Vector a_splat = hvx_vsplatw((int32_t)word);
                for (int j = 0; j < live; j++) {
                    HVX_Vector b = hvx_load(g->B_packed + ((first_block + (size_t)j) * K4 + k4) * 128);
                    acc[j] = vrmpy_step(acc[j], a_splat, b, g->a_unsigned, g->b_unsigned);
                }
            }
            HVX_Vector r[4];
            for (int j = 0; j < 4; j++) r[j] = requant_vector(acc[j], mult, rq->shift, round, zp);
            store_head(g->C + m * g->ldc + n0, narrow4(r[0], r[1], r[2], r[3], g->out_unsigned), count);
        }
    }
}

size_t dsp_conv_scratch_bytes(size_t C, size_t group, size_t KH, size_t KW, size_t OH, size_t OW) {
    size_t cg = 0;
    for (size_t s = 0; s + group <= C; s += group) cg++; /* C / group without division */
    return dsp_gemm_packed_size(cg * KH * KW, OH * OW);
}

void dsp_qconv(const dsp_conv *c) {
    size_t cg = 0, og = 0;
    for (size_t s = 0; s + c->group <= c->C; s += c->group) cg++;
    for (size_t s = 0; s + c->group <= c->O; s += c->group) og++;
    size_t K = cg * c->KH * c->KW, N = c->OH * c->OW, K4 = ceil_shift(K, 2), blocks = ceil_shift(N, 5);
    for (size_t gi = 0; gi < c->group; gi++) {
        /* im2col of this group's channels, packed the way dsp_gemm_pack_b packs B (rows k, columns pixels);
         * indices advance as counters because the kernels do not divide */
        size_t ch = 0, ky = 0, kx = 0;
        for (size_t k = 0; k < K4 * 4; k++) {
            size_t oy = 0, ox = 0;
            for (size_t n = 0; n < blocks * 32; n++) {
                uint8_t v = 0;
                if (k < K && n < N) {
                    int64_t iy = (int64_t)(oy * c->stride_h + ky * c->dil_h) - (int64_t)c->pad_top;
                    int64_t ix = (int64_t)(ox * c->stride_w + kx * c->dil_w) - (int64_t)c->pad_left;
                    v = iy >= 0 && ix >= 0 && iy < (int64_t)c->H && ix < (int64_t)c->W
                            ? c->X[((gi * cg + ch) * c->H + (size_t)iy) * c->W + (size_t)ix]
                            : (uint8_t)c->zx;
                }
                c->scratch[((n >> 5) * K4 + (k >> 2)) * 128 + 4 * (n & 31) + (k & 3)] = v;
                if (++ox == c->OW) { ox = 0; oy++; }
            }
            if (++kx == c->KW) { kx = 0; if (++ky == c->KH) { ky = 0; ch++; } }
        }
        for (size_t n = 0; n < N; n++) {
            uint32_t s = 0;
            size_t j = n >> 5, col = n & 31;
            for (size_t k = 0; k < K; k++)
                s += (uint32_t)byte_value(c->scratch[(j * K4 + (k >> 2)) * 128 + 4 * col + (k & 3)], c->x_unsigned);
            c->scratch_colsum[n] = (int32_t)s;
        }
        dsp_gemm g = {
            .M = og, .N = N, .K = K,
            .A = c->Wt + gi * og * K, .lda = K, .a_unsigned = c->w_unsigned, .za = c->zw,
            .B_packed = c->scratch, .colsum = c->scratch_colsum, .b_unsigned = c->x_unsigned, .zb = c->zx,
            .bias_row = c->bias ? c->bias + gi * og : NULL, .bias_col = NULL,
            .requant = c->requant, .out_unsigned = c->out_unsigned,
            .row_requant = c->channel_requant ? c->channel_requant + gi * og : NULL,
            .C = c->Y + gi * og * N, .ldc = N,
        };
        dsp_qgemm(&g);
    }
}

void dsp_qadd(const uint8_t *a, int32_t za, const uint8_t *b, int32_t zb, size_t n, int is_unsigned,
              const dsp_requant *qa, const dsp_requant *qb, const dsp_requant *qout, uint8_t *y) {
    HVX_Vector ma = hvx_vsplatw(qa->multiplier), mb = hvx_vsplatw(qb->multiplier), mo = hvx_vsplatw(qout->multiplier);
    HVX_Vector ra = hvx_vsplatw(qa->shift > 0 ? (int32_t)(1u << (qa->shift - 1)) : 0);
    HVX_Vector rb = hvx_vsplatw(qb->shift > 0 ? (int32_t)(1u << (qb->shift - 1)) : 0);
    HVX_Vector ro = hvx_vsplatw(qout->shift > 0 ? (int32_t)(1u << (qout->shift - 1)) : 0);
    HVX_Vector zero = hvx_vsplatw(0), vza = hvx_vsplatw(za), vzb = hvx_vsplatw(zb), vzo = hvx_vsplatw(qout->zero_point);
    for (size_t i = 0; i < n; i += 128) {
        size_t count = n - i < 128 ? n - i : 128;
        HVX_Vector wa[4], wb[4], r[4];
        widen4(load_head(a + i, count, 0), is_unsigned, wa);
        widen4(load_head(b + i, count, 0), is_unsigned, wb);
        for (int j = 0; j < 4; j++) {
            HVX_Vector sa = requant_vector(hvx_vaslw(hvx_vsubwsat(wa[j], vza), 20), ma, qa->shift, ra, zero);
            HVX_Vector sb = requant_vector(hvx_vaslw(hvx_vsubwsat(wb[j], vzb), 20), mb, qb->shift, rb, zero);
            r[j] = requant_vector(hvx_vaddwsat(sa, sb), mo, qout->shift, ro, vzo);
        }
        store_head(y + i, narrow4(r[0], r[1], r[2], r[3], is_unsigned), count);
    }
}

void dsp_clip(const uint8_t *x, size_t n, int32_t lo, int32_t hi, int is_unsigned, uint8_t *y) {
    HVX_Vector vlo = hvx_vsplatb(lo), vhi = hvx_vsplatb(hi);
    for (size_t i = 0; i < n; i += 128) {
        size_t count = n - i < 128 ? n - i : 128;
        HVX_Vector v = load_head(x + i, count, 0);
        v = is_unsigned ? hvx_vminub(hvx_vmaxub(v, vlo), vhi) : hvx_vminb(hvx_vmaxb(v, vlo), vhi);
        store_head(y + i, v, count);
    }
}

/* Gathers row (c, iy) of the image at columns ox·stride_w + kx - pad_left for ox in [ox0, ox0 + count)
 * into 128 bytes; positions outside the image (and lanes past count) read `fill`. Returns how many of
 * the count positions were inside. Also marks inside[ox - ox0] += 1 when `inside` is not NULL. */
static size_t gather_row(const dsp_pool *p, size_t c, int64_t iy, size_t kx, size_t ox0, size_t count, uint8_t fill,
                         uint8_t out[128], uint8_t *inside) {
    size_t in = 0;
    for (size_t l = 0; l < 128; l++) {
        uint8_t v = fill;
        if (l < count && iy >= 0 && iy < (int64_t)p->H) {
            int64_t ix = (int64_t)((ox0 + l) * p->stride_w + kx) - (int64_t)p->pad_left;
            if (ix >= 0 && ix < (int64_t)p->W) {
                v = p->X[(c * p->H + (size_t)iy) * p->W + (size_t)ix];
                in++;
                if (inside) inside[l]++;
            }
        }
        out[l] = v;
    }
    return in;
}

void dsp_maxpool(const dsp_pool *p) {
    uint8_t fill = p->is_unsigned ? 0 : 0x80, row[128];
    for (size_t c = 0; c < p->C; c++)
        for (size_t oy = 0; oy < p->OH; oy++)
            for (size_t ox0 = 0; ox0 < p->OW; ox0 += 128) {
                size_t count = p->OW - ox0 < 128 ? p->OW - ox0 : 128;
                HVX_Vector m = hvx_vsplatb(fill);
                for (size_t ky = 0; ky < p->KH; ky++)
                    for (size_t kx = 0; kx < p->KW; kx++) {
                        int64_t iy = (int64_t)(oy * p->stride_h + ky) - (int64_t)p->pad_top;
                        gather_row(p, c, iy, kx, ox0, count, fill, row, NULL);
                        HVX_Vector v = hvx_load(row);
                        m = p->is_unsigned ? hvx_vmaxub(m, v) : hvx_vmaxb(m, v);
                    }
                store_head(p->Y + (c * p->OH + oy) * p->OW + ox0, m, count);
            }
}

int32_t dsp_recip_q15(int32_t count) {
    if (count <= 1) return 32767;
    /* floor((65536 + count) / (2·count)) by shift-subtract */
    uint32_t num = 65536u + (uint32_t)count, den = 2u * (uint32_t)count, q = 0;
    for (int bit = 17; bit >= 0; bit--)
        if ((num >> bit) >= den) { num -= den << bit; q |= 1u << bit; }
    return q > 32767 ? 32767 : (int32_t)q;
}

int dsp_avgpool(const dsp_pool *p) {
    if (p->KH * p->KW > 128 || p->KH == 0 || p->KW == 0) return -1;
    uint8_t row[128], inside[128];
    int16_t recip[128];
    for (size_t c = 0; c < p->C; c++)
        for (size_t oy = 0; oy < p->OH; oy++)
            for (size_t ox0 = 0; ox0 < p->OW; ox0 += 128) {
                size_t count = p->OW - ox0 < 128 ? p->OW - ox0 : 128;
                for (size_t l = 0; l < 128; l++) inside[l] = 0;
                HVX_Vector sum_lo = hvx_vsplath(0), sum_hi = hvx_vsplath(0);
                for (size_t ky = 0; ky < p->KH; ky++)
                    for (size_t kx = 0; kx < p->KW; kx++) {
                        int64_t iy = (int64_t)(oy * p->stride_h + ky) - (int64_t)p->pad_top;
                        gather_row(p, c, iy, kx, ox0, count, 0, row, inside);
                        HVX_VectorPair w = p->is_unsigned ? hvx_vunpackub(hvx_load(row)) : hvx_vunpackb(hvx_load(row));
                        sum_lo = hvx_vaddhsat(sum_lo, hvx_lo(w));
                        sum_hi = hvx_vaddhsat(sum_hi, hvx_hi(w));
                    }
                for (size_t l = 0; l < 128; l++)
                    recip[l] = (int16_t)dsp_recip_q15(p->count_include_pad ? (int32_t)(p->KH * p->KW) : (inside[l] ? inside[l] : 1));
                HVX_Vector a_lo = hvx_vmpyhvsrs(sum_lo, hvx_load(recip)), a_hi = hvx_vmpyhvsrs(sum_hi, hvx_load(recip + 64));
                HVX_Vector out = p->is_unsigned ? hvx_vpackhub_sat(a_hi, a_lo) : hvx_vpackhb_sat(a_hi, a_lo);
                store_head(p->Y + (c * p->OH + oy) * p->OW + ox0, out, count);
            }
    return 0;
}

void dsp_lut_layout(const uint8_t table[256], uint8_t vlut[256]) {
    for (unsigned k = 0; k < 256; k++) {
        unsigned seg = k >> 5, j = k & 31;
        vlut[128 * (seg >> 2) + 2 * (j + 32 * (seg & 1)) + ((seg >> 1) & 1)] = table[k];
    }
}

void dsp_lut(const uint8_t *x, size_t n, const uint8_t vlut[256], uint8_t *y) {
    HVX_Vector t0 = hvx_load(vlut), t1 = hvx_load(vlut + 128);
    for (size_t i = 0; i < n; i += 128) {
        size_t count = n - i < 128 ? n - i : 128;
        HVX_Vector v = load_head(x + i, count, 0);
        HVX_Vector d = hvx_vlut32(v, t0, 0);
        for (int32_t s = 1; s < 4; s++) d = hvx_vlut32_or(d, v, t0, s);
        for (int32_t s = 4; s < 8; s++) d = hvx_vlut32_or(d, v, t1, s);
        store_head(y + i, d, count);
    }
}

void dsp_softmax_reciprocal(uint32_t sum, int32_t *k, int32_t *reciprocal) {
    int32_t shift = 0;
    uint64_t S = sum ? sum : 1;
    while (S < ((uint64_t)1 << 30)) { S <<= 1; shift++; }
    uint64_t num = (uint64_t)1 << 61, q = 0;
    for (int bit = 31; bit >= 0; bit--)
        if ((num >> bit) >= S) { num -= S << bit; q |= (uint64_t)1 << bit; }
    *k = shift;
    *reciprocal = q > 0x7fffffffu ? 0x7fffffff : (int32_t)q;
}

/* The 16-bit table entries of 128 byte distances as four word vectors (lanes 0..31, 32..63, 64..95, 96..127). */
static inline void exp_words(HVX_Vector d, HVX_Vector hi0, HVX_Vector hi1, HVX_Vector lo0, HVX_Vector lo1, HVX_Vector out[4]) {
    HVX_Vector hi = hvx_vlut32(d, hi0, 0), lo = hvx_vlut32(d, lo0, 0);
    for (int32_t s = 1; s < 4; s++) { hi = hvx_vlut32_or(hi, d, hi0, s); lo = hvx_vlut32_or(lo, d, lo0, s); }
    for (int32_t s = 4; s < 8; s++) { hi = hvx_vlut32_or(hi, d, hi1, s); lo = hvx_vlut32_or(lo, d, lo1, s); }
    HVX_Vector wh[4], wl[4];
    widen4(hi, 1, wh);
    widen4(lo, 1, wl);
    for (int j = 0; j < 4; j++) out[j] = hvx_vaddwsat(hvx_vaslw(wh[j], 8), wl[j]);
}

void dsp_softmax_rows(const dsp_softmax *s) {
    HVX_Vector hi0 = hvx_load(s->exp_hi), hi1 = hvx_load(s->exp_hi + 128), lo0 = hvx_load(s->exp_lo), lo1 = hvx_load(s->exp_lo + 128);
    HVX_Vector mult = hvx_vsplatw(s->out_multiplier);
    uint8_t fill = s->x_unsigned ? 0 : 0x80;
    size_t padded = (s->n + 127) & ~(size_t)127;
    for (size_t r = 0; r < s->rows; r++) {
        const uint8_t *x = s->X + r * s->n;
        uint8_t *y = s->Y + r * s->n;
        /* the row's largest byte */
        HVX_Vector m = hvx_vsplatb(fill);
        for (size_t i = 0; i < s->n; i += 128) {
            HVX_Vector v = load_head(x + i, s->n - i < 128 ? s->n - i : 128, fill);
            m = s->x_unsigned ? hvx_vmaxub(m, v) : hvx_vmaxb(m, v);
        }
        uint8_t lanes[128];
        hvx_store(lanes, m);
        int32_t top = byte_value(lanes[0], s->x_unsigned);
        for (int l = 1; l < 128; l++) { int32_t v = byte_value(lanes[l], s->x_unsigned); top = v > top ? v : top; }
        HVX_Vector vmax = hvx_vsplatb(top);
        /* e = E[m - x] into the scratch words, the lanes past n zero; their sum */
        HVX_Vector acc = hvx_vsplatw(0);
        for (size_t i = 0; i < padded; i += 128) {
            size_t count = s->n - i < 128 ? s->n - i : 128;
            HVX_Vector e[4];
            exp_words(hvx_vsubb(vmax, load_head(x + i, count, (uint8_t)top)), hi0, hi1, lo0, lo1, e);
            for (int j = 0; j < 4; j++) hvx_store(s->scratch + i + 32 * j, e[j]);
            for (size_t l = count; l < 128; l++) s->scratch[i + l] = 0;
            for (int j = 0; j < 4; j++) acc = hvx_vaddwsat(acc, hvx_load(s->scratch + i + 32 * j));
        }
        int32_t words[32];
        hvx_store(words, acc);
        uint32_t sum = 0;
        for (int l = 0; l < 32; l++) sum += (uint32_t)words[l];
        /* 1 / sum, then each e / sum requantized to the output */
        int32_t k, recip;
        dsp_softmax_reciprocal(sum, &k, &recip);
        int32_t shift = 45 - k - s->out_exponent, pre = 0;
        if (shift > 31) { pre = shift - 31 > 31 ? 31 : shift - 31; shift = 31; }
        dsp_requant q = {s->out_multiplier, shift, s->zero_point};
        HVX_Vector vr = hvx_vsplatw(recip), round = hvx_vsplatw(shift > 0 ? (int32_t)(1u << (shift - 1)) : 0);
        HVX_Vector pre_round = hvx_vsplatw(pre > 0 ? (int32_t)(1u << (pre - 1)) : 0), zp = hvx_vsplatw(s->zero_point);
        for (size_t i = 0; i < padded; i += 128) {
            HVX_Vector out[4];
            for (int j = 0; j < 4; j++) {
                HVX_Vector e = hvx_vaslw(hvx_load(s->scratch + i + 32 * j), 15);
                HVX_Vector t = hvx_vmpyowh_rnd_sacc(hvx_vmpyewuh(e, vr), e, vr);
                if (pre > 0) t = hvx_vasrw(hvx_vaddwsat(t, pre_round), pre);
                out[j] = requant_vector(t, mult, q.shift, round, zp);
            }
            store_head(y + i, narrow4(out[0], out[1], out[2], out[3], s->out_unsigned), s->n - i < 128 ? s->n - i : 128);
        }
    }
}
