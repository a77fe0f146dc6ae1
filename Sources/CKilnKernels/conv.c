/* conv.c — NCHW convolution as implicit GEMM over packed weights, im2col, depthwise convolution and
 * pooling. */
#include "internal.h"

#include <math.h>
#include <string.h>

enum { KILN_CONV_KC = 256, KILN_CONV_NC = 256 };

static size_t conv_m(const kiln_conv2d_params *p) { return p->out_channels / p->groups; }
static size_t conv_k(const kiln_conv2d_params *p) {
    return p->in_channels / p->groups * p->kernel_h * p->kernel_w;
}
static size_t round_up(size_t v, size_t m) { return (v + m - 1) / m * m; }

/* Zero strides, dilations or groups are rejected by the callers' validation; the kernels then do nothing
 * rather than divide by zero. */
static int params_usable(const kiln_conv2d_params *p) {
    return p->stride_h && p->stride_w && p->dilation_h && p->dilation_w && p->groups;
}

size_t kiln_conv2d_pack_weight_size(const kiln_conv2d_params *p) {
    if (p->groups == 0) return 0;
    size_t k = conv_k(p);
    return p->groups * round_up(conv_m(p), KILN_MR) * (k ? k : 1);
}

void kiln_conv2d_pack_weight(const kiln_conv2d_params *p, const float *weight, float *packed) {
    if (p->groups == 0) return;
    size_t m = conv_m(p), k = conv_k(p);
    if (m == 0 || k == 0) return;
    size_t per_group = round_up(m, KILN_MR) * k;
    for (size_t g = 0; g < p->groups; g++) kiln_pack_a(0, m, k, weight + g * m * k, k, 1.0f, packed + g * per_group);
}

/* Writers of a run of consecutive columns t.. of one packed row: panel layout puts column t at
 * (t / 16) * panel_stride + t % 16; panel_stride == 0 means a plain row. */
static void put_zero(float *dst, size_t panel_stride, size_t t, size_t n) {
    if (!panel_stride) {
        memset(dst + t, 0, n * sizeof(float));
        return;
    }
    while (n) {
        size_t off = t & (KILN_NR - 1), chunk = KILN_NR - off < n ? KILN_NR - off : n;
        memset(dst + (t / KILN_NR) * panel_stride + off, 0, chunk * sizeof(float));
        t += chunk;
        n -= chunk;
    }
}

static void put_strided(float *dst, size_t panel_stride, size_t t, const float *src, size_t stride, size_t n) {
    if (!panel_stride) {
        if (stride == 1) memcpy(dst + t, src, n * sizeof(float));
        else for (size_t i = 0; i < n; i++) dst[t + i] = src[i * stride];
        return;
    }
    while (n) {
        size_t off = t & (KILN_NR - 1), chunk = KILN_NR - off < n ? KILN_NR - off : n;
        float *d = dst + (t / KILN_NR) * panel_stride + off;
        if (stride == 1) memcpy(d, src, chunk * sizeof(float));
        else for (size_t i = 0; i < chunk; i++) d[i] = src[i * stride];
        src += chunk * stride;
        t += chunk;
        n -= chunk;
    }
}

/*
 * One im2col row (input channel plane `plane`, kernel tap kh, kw) for output pixels [pix, pix + count),
 * written as columns 0..count of dst (see put_zero for the layout).
 */
static void im2col_row(const kiln_conv2d_params *p, const float *plane, size_t kh, size_t kw, size_t pix, size_t count,
                       float *dst, size_t panel_stride) {
    const ptrdiff_t H = (ptrdiff_t)p->in_height, W = (ptrdiff_t)p->in_width;
    const ptrdiff_t sw = (ptrdiff_t)p->stride_w;
    size_t ow = pix % p->out_width, oh = pix / p->out_width;
    ptrdiff_t ih = (ptrdiff_t)(oh * p->stride_h + kh * p->dilation_h) - (ptrdiff_t)p->pad_top;
    const ptrdiff_t iw_off = (ptrdiff_t)(kw * p->dilation_w) - (ptrdiff_t)p->pad_left;
    size_t j = 0;
    while (j < count) {
        size_t seg = p->out_width - ow;
        if (seg > count - j) seg = count - j;
        if (ih < 0 || ih >= H) {
            put_zero(dst, panel_stride, j, seg);
        } else {
            /* Column s of the segment reads iw0 + s·sw; the valid s form one run [lo, hi). */
            ptrdiff_t iw0 = (ptrdiff_t)ow * sw + iw_off;
            ptrdiff_t lo = iw0 >= 0 ? 0 : (-iw0 + sw - 1) / sw;
            ptrdiff_t hi = iw0 < W ? (W - iw0 + sw - 1) / sw : 0;
            if (lo > (ptrdiff_t)seg) lo = (ptrdiff_t)seg;
            if (hi > (ptrdiff_t)seg) hi = (ptrdiff_t)seg;
            if (hi < lo) hi = lo;
            put_zero(dst, panel_stride, j, (size_t)lo);
            put_strided(dst, panel_stride, j + (size_t)lo, plane + ih * W + iw0 + lo * sw, (size_t)sw, (size_t)(hi - lo));
            put_zero(dst, panel_stride, j + (size_t)hi, seg - (size_t)hi);
        }
        j += seg;
        ow = 0;
        ih += (ptrdiff_t)p->stride_h;
    }
}

void kiln_im2col_nchw(const kiln_conv2d_params *p, const float *input, size_t group, float *col) {
    if (!params_usable(p) || group >= p->groups || p->out_width == 0) return;
    size_t cin_g = p->in_channels / p->groups, P = p->out_height * p->out_width;
    const float *in_g = input + group * cin_g * p->in_height * p->in_width;
    size_t k = 0;
    for (size_t c = 0; c < cin_g; c++)
        for (size_t kh = 0; kh < p->kernel_h; kh++)
            for (size_t kw = 0; kw < p->kernel_w; kw++, k++)
                im2col_row(p, in_g + c * p->in_height * p->in_width, kh, kw, 0, P, col + k * P, 0);
}

void kiln_conv2d_nchw(const kiln_conv2d_params *p, const float *input, const float *packed_weight, float *output,
                      size_t p0, size_t p1, const kiln_epilogue *epilogue) {
    if (!params_usable(p) || p->out_width == 0) return;
    const size_t P = p->out_height * p->out_width;
    if (p1 > P) p1 = P;
    const size_t M = conv_m(p), K = conv_k(p), cin_g = p->in_channels / p->groups;
    const size_t HW = p->in_height * p->in_width, KHW = p->kernel_h * p->kernel_w;
    if (M == 0 || p0 >= p1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    kiln_epilogue ep;
    if (epilogue) {
        ep = *epilogue;
        ep.bias_per_row = 1;
    }
    const kiln_epilogue *epp = epilogue ? &ep : NULL;
    if (K == 0) {
        for (size_t c = 0; c < p->out_channels; c++) memset(output + c * P + p0, 0, (p1 - p0) * sizeof(float));
        kiln_apply_epilogue(kt, epp, output + p0, P, p->out_channels, p1 - p0, 0, p0);
        return;
    }
    const int direct = p->kernel_h == 1 && p->kernel_w == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                       p->pad_top == 0 && p->pad_left == 0 && p->out_height == p->in_height &&
                       p->out_width == p->in_width;
    size_t kc_max = K < KILN_CONV_KC ? K : KILN_CONV_KC;
    float *bbuf = kiln_scratch(1, kc_max * KILN_CONV_NC);
    if (!bbuf) return;
    const size_t per_group = round_up(M, KILN_MR) * K;
    for (size_t g = 0; g < p->groups; g++) {
        const float *in_g = input + g * cin_g * HW;
        const float *a_g = packed_weight + g * per_group;
        float *out_g = output + g * M * P;
        for (size_t jc = p0; jc < p1; jc += KILN_CONV_NC) {
            size_t nc = p1 - jc < KILN_CONV_NC ? p1 - jc : KILN_CONV_NC;
            for (size_t pc = 0; pc < K; pc += KILN_CONV_KC) {
                size_t kc = K - pc < KILN_CONV_KC ? K - pc : KILN_CONV_KC;
                if (direct) {
                    kiln_pack_b(0, kc, nc, in_g + pc * HW + jc, HW, bbuf);
                } else {
                    size_t panel_stride = kc * KILN_NR;
                    for (size_t k = pc; k < pc + kc; k++) {
                        size_t c = k / KHW, r = k % KHW;
                        im2col_row(p, in_g + c * HW, r / p->kernel_w, r % p->kernel_w, jc, nc,
                                   bbuf + (k - pc) * KILN_NR, panel_stride);
                    }
                    size_t tail = nc % KILN_NR;
                    if (tail) /* zero the unused columns of the last panel (their results are discarded) */
                        for (size_t k = 0; k < kc; k++)
                            memset(bbuf + (nc / KILN_NR) * panel_stride + k * KILN_NR + tail, 0,
                                   (KILN_NR - tail) * sizeof(float));
                }
                kiln_gemm_prepacked_a(kt, kc, M, a_g + pc * KILN_MR, K * KILN_MR, bbuf, nc, out_g + jc, P, pc > 0,
                                      pc + kc == K ? epp : NULL, g * M, jc);
            }
        }
    }
}

/* ---- Depthwise ---- */

static void depthwise_plane_generic(const kiln_conv2d_params *p, const float *in, const float *w, float *out) {
    const ptrdiff_t H = (ptrdiff_t)p->in_height, W = (ptrdiff_t)p->in_width;
    for (size_t oh = 0; oh < p->out_height; oh++) {
        for (size_t ow = 0; ow < p->out_width; ow++) {
            float acc = 0.0f;
            for (size_t kh = 0; kh < p->kernel_h; kh++) {
                ptrdiff_t ih = (ptrdiff_t)(oh * p->stride_h + kh * p->dilation_h) - (ptrdiff_t)p->pad_top;
                if (ih < 0 || ih >= H) continue;
                for (size_t kw = 0; kw < p->kernel_w; kw++) {
                    ptrdiff_t iw = (ptrdiff_t)(ow * p->stride_w + kw * p->dilation_w) - (ptrdiff_t)p->pad_left;
                    if (iw < 0 || iw >= W) continue;
                    acc += w[kh * p->kernel_w + kw] * in[ih * W + iw];
                }
            }
            out[oh * p->out_width + ow] = acc;
        }
    }
}

/* 3×3 depthwise plane through a zero-padded copy, so every output column takes the vector path; the
 * epilogue runs over the plane while it is still in cache. */
static void depthwise_plane_3x3(const kiln_kernel_table *kt, const kiln_conv2d_params *p, const float *in,
                                const float *w, float *out, float *padded, size_t wp, size_t hp,
                                const kiln_epilogue *ep, size_t channel) {
    const size_t W = p->in_width, H = p->in_height, pt = p->pad_top, pl = p->pad_left, OW = p->out_width;
    for (size_t y = 0; y < hp; y++) {
        float *row = padded + y * wp;
        if (y < pt || y >= pt + H) {
            memset(row, 0, wp * sizeof(float));
            continue;
        }
        memset(row, 0, pl * sizeof(float));
        memcpy(row + pl, in + (y - pt) * W, W * sizeof(float));
        memset(row + pl + W, 0, (wp - pl - W) * sizeof(float));
    }
    for (size_t oh = 0; oh < p->out_height; oh++) {
        const float *base = padded + oh * p->stride_h * wp;
        const float *rows[3] = {base, base + wp, base + 2 * wp};
        float *orow = out + oh * OW;
        kt->dw3x3_row(rows, w, p->stride_w, 0, wp, 0, OW, orow);
    }
    if (ep) kiln_apply_epilogue(kt, ep, out, 0, 1, p->out_height * OW, channel, 0);
}

void kiln_depthwise_conv2d_nchw(const kiln_conv2d_params *p, const float *input, const float *weight, float *output,
                                size_t c0, size_t c1, const kiln_epilogue *epilogue) {
    if (!params_usable(p)) return;
    if (c1 > p->in_channels) c1 = p->in_channels;
    const kiln_kernel_table *kt = kiln_kernels_current();
    const size_t HW = p->in_height * p->in_width, P = p->out_height * p->out_width, KK = p->kernel_h * p->kernel_w;
    const int fast = p->kernel_h == 3 && p->kernel_w == 3 && p->dilation_h == 1 && p->dilation_w == 1 &&
                     p->stride_h >= 1 && (p->stride_w == 1 || p->stride_w == 2);
    kiln_epilogue ep;
    if (epilogue) {
        ep = *epilogue;
        ep.bias_per_row = 1;
    }
    size_t wp = 0, hp = 0;
    float *padded = NULL;
    if (fast && p->out_height > 0 && p->out_width > 0) {
        /* Rows hold the left pad, the input row and room for whole 8-wide vectors past the last output. */
        size_t need = p->out_width * p->stride_w + 2, have = p->pad_left + p->in_width;
        wp = (need > have ? need : have) + 16;
        size_t rows_needed = (p->out_height - 1) * p->stride_h + 3, rows_have = p->pad_top + p->in_height;
        hp = rows_needed > rows_have ? rows_needed : rows_have;
        padded = kiln_scratch(1, wp * hp);
    }
    for (size_t c = c0; c < c1; c++) {
        const float *in = input + c * HW;
        float *out = output + c * P;
        if (padded) {
            depthwise_plane_3x3(kt, p, in, weight + c * KK, out, padded, wp, hp, epilogue ? &ep : NULL, c);
            continue;
        }
        depthwise_plane_generic(p, in, weight + c * KK, out);
        if (epilogue) kiln_apply_epilogue(kt, &ep, out, P, 1, P, c, 0);
    }
}

/* ---- Pooling ---- */

/* Output columns ow whose tap iw = ow·stride + off lies in [lo, hi): the run [*a, *b). */
static void tap_columns(ptrdiff_t off, size_t stride, ptrdiff_t lo, ptrdiff_t hi, size_t out, size_t *a, size_t *b) {
    ptrdiff_t s = (ptrdiff_t)stride;
    ptrdiff_t first = off >= lo ? 0 : (lo - off + s - 1) / s;
    ptrdiff_t end = off < hi ? (hi - off + s - 1) / s : 0;
    if (end > (ptrdiff_t)out) end = (ptrdiff_t)out;
    if (first > end) first = end;
    *a = (size_t)first;
    *b = (size_t)end;
}

void kiln_maxpool2d_nchw(const kiln_conv2d_params *p, const float *input, float *output) {
    if (!p->stride_h || !p->stride_w || !p->dilation_h || !p->dilation_w) return;
    const ptrdiff_t H = (ptrdiff_t)p->in_height, W = (ptrdiff_t)p->in_width;
    const size_t HW = p->in_height * p->in_width, P = p->out_height * p->out_width, OW = p->out_width;
    const size_t sw = p->stride_w;
    for (size_t c = 0; c < p->in_channels; c++) {
        const float *in = input + c * HW;
        for (size_t oh = 0; oh < p->out_height; oh++) {
            float *o = output + c * P + oh * OW;
            for (size_t ow = 0; ow < OW; ow++) o[ow] = -INFINITY;
            for (size_t kh = 0; kh < p->kernel_h; kh++) {
                ptrdiff_t ih = (ptrdiff_t)(oh * p->stride_h + kh * p->dilation_h) - (ptrdiff_t)p->pad_top;
                if (ih < 0 || ih >= H) continue;
                const float *row = in + ih * W;
                for (size_t kw = 0; kw < p->kernel_w; kw++) {
                    ptrdiff_t off = (ptrdiff_t)(kw * p->dilation_w) - (ptrdiff_t)p->pad_left;
                    size_t a, b;
                    tap_columns(off, sw, 0, W, OW, &a, &b);
                    for (size_t ow = a; ow < b; ow++) {
                        float v = row[off + (ptrdiff_t)(ow * sw)];
                        o[ow] = (v > o[ow] || v != v) ? v : o[ow];
                    }
                }
            }
        }
    }
}

void kiln_avgpool2d_nchw_padded(const kiln_conv2d_params *p, int count_include_pad, size_t pad_bottom,
                                size_t pad_right, const float *input, float *output) {
    if (!p->stride_h || !p->stride_w || !p->dilation_h || !p->dilation_w) return;
    const ptrdiff_t H = (ptrdiff_t)p->in_height, W = (ptrdiff_t)p->in_width;
    const ptrdiff_t h_lo = -(ptrdiff_t)p->pad_top, w_lo = -(ptrdiff_t)p->pad_left;
    const ptrdiff_t h_hi = H + (ptrdiff_t)pad_bottom, w_hi = W + (ptrdiff_t)pad_right;
    const size_t HW = p->in_height * p->in_width, P = p->out_height * p->out_width, OW = p->out_width;
    const size_t sw = p->stride_w;
    /* Per-column divisor factor: how many kw taps of column ow are counted. */
    float *wcount = kiln_scratch(0, OW);
    if (!wcount) return;
    for (size_t ow = 0; ow < OW; ow++) {
        size_t n = 0;
        for (size_t kw = 0; kw < p->kernel_w; kw++) {
            ptrdiff_t iw = (ptrdiff_t)(ow * sw + kw * p->dilation_w) + w_lo;
            n += count_include_pad ? (iw >= w_lo && iw < w_hi) : (iw >= 0 && iw < W);
        }
        wcount[ow] = (float)n;
    }
    for (size_t c = 0; c < p->in_channels; c++) {
        const float *in = input + c * HW;
        for (size_t oh = 0; oh < p->out_height; oh++) {
            float *o = output + c * P + oh * OW;
            for (size_t ow = 0; ow < OW; ow++) o[ow] = 0.0f;
            size_t hcount = 0;
            for (size_t kh = 0; kh < p->kernel_h; kh++) {
                ptrdiff_t ih = (ptrdiff_t)(oh * p->stride_h + kh * p->dilation_h) + h_lo;
                hcount += count_include_pad ? (ih >= h_lo && ih < h_hi) : (ih >= 0 && ih < H);
                if (ih < 0 || ih >= H) continue;
                const float *row = in + ih * W;
                for (size_t kw = 0; kw < p->kernel_w; kw++) {
                    ptrdiff_t off = (ptrdiff_t)(kw * p->dilation_w) + w_lo;
                    size_t a, b;
                    tap_columns(off, sw, 0, W, OW, &a, &b);
                    for (size_t ow = a; ow < b; ow++) o[ow] += row[off + (ptrdiff_t)(ow * sw)];
                }
            }
            for (size_t ow = 0; ow < OW; ow++) {
                float count = (float)hcount * wcount[ow];
                o[ow] = count > 0.0f ? o[ow] / count : 0.0f;
            }
        }
    }
}

static size_t implied_end_pad(size_t out, size_t stride, size_t kernel, size_t dilation, size_t in, size_t pad) {
    if (out == 0 || kernel == 0) return 0;
    size_t reach = (out - 1) * stride + (kernel - 1) * dilation + 1;
    return reach > in + pad ? reach - in - pad : 0;
}

void kiln_avgpool2d_nchw(const kiln_conv2d_params *p, int count_include_pad, const float *input, float *output) {
    kiln_avgpool2d_nchw_padded(
        p, count_include_pad,
        implied_end_pad(p->out_height, p->stride_h, p->kernel_h, p->dilation_h, p->in_height, p->pad_top),
        implied_end_pad(p->out_width, p->stride_w, p->kernel_w, p->dilation_w, p->in_width, p->pad_left), input,
        output);
}

void kiln_global_avgpool_nchw(size_t channels, size_t hw, const float *input, float *output) {
    const kiln_kernel_table *kt = kiln_kernels_current();
    for (size_t c = 0; c < channels; c++) output[c] = hw ? kt->sum(hw, input + c * hw) / (float)hw : 0.0f;
}
