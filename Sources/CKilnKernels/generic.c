/* generic.c — portable C kernels: the fallback on every CPU, the `generic` target, and the plain-C path
 * that compilers auto-vectorize for NEON and other ISAs. */
#include "internal.h"

#include <math.h>
#include <string.h>

float kiln_scalar_activation(kiln_activation act, float alpha, float beta, float x) {
    switch (act) {
    case KILN_ACT_NONE: return x;
    case KILN_ACT_RELU: return x > 0.0f ? x : 0.0f;
    case KILN_ACT_CLIP: return fminf(fmaxf(x, alpha), beta);
    case KILN_ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case KILN_ACT_SILU: return x / (1.0f + expf(-x));
    case KILN_ACT_HARDSIGMOID: return fmaxf(0.0f, fminf(1.0f, alpha * x + beta));
    case KILN_ACT_HARDSWISH: return x * fmaxf(0.0f, fminf(1.0f, x * (1.0f / 6.0f) + 0.5f));
    case KILN_ACT_GELU_ERF: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case KILN_ACT_GELU_TANH: {
        float inner = 0.79788456080286536f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(inner));
    }
    case KILN_ACT_TANH: return tanhf(x);
    case KILN_ACT_LEAKY_RELU: return x < 0.0f ? alpha * x : x;
    }
    return x;
}

float kiln_scalar_binary(kiln_binary_op op, float a, float b) {
    switch (op) {
    case KILN_BINARY_ADD: return a + b;
    case KILN_BINARY_SUB: return a - b;
    case KILN_BINARY_MUL: return a * b;
    case KILN_BINARY_DIV: return a / b;
    case KILN_BINARY_MAX: return fmaxf(a, b);
    case KILN_BINARY_MIN: return fminf(a, b);
    }
    return a;
}

#if defined(__GNUC__) || defined(__clang__)
/* Portable 4-lane vectors (GCC/Clang vector extensions): NEON on AArch64, SSE2 on x86-64, scalar elsewhere.
 * 24 accumulators fit AArch64's 32 vector registers. */
typedef float kiln_v4 __attribute__((vector_size(16)));

static inline kiln_v4 load_v4(const float *p) {
    kiln_v4 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store_v4(float *p, kiln_v4 v) { memcpy(p, &v, sizeof v); }

static void generic_tile16(size_t kc, const float *a, const float *b, float *c, size_t ldc, int accumulate) {
    kiln_v4 acc[KILN_MR][4];
    for (int r = 0; r < KILN_MR; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = (kiln_v4){0.0f, 0.0f, 0.0f, 0.0f};
    for (size_t k = 0; k < kc; k++) {
        const float *bk = b + k * KILN_NR;
        kiln_v4 b0 = load_v4(bk), b1 = load_v4(bk + 4), b2 = load_v4(bk + 8), b3 = load_v4(bk + 12);
        const float *ak = a + k * KILN_MR;
        for (int r = 0; r < KILN_MR; r++) {
            kiln_v4 av = {ak[r], ak[r], ak[r], ak[r]};
            acc[r][0] += av * b0;
            acc[r][1] += av * b1;
            acc[r][2] += av * b2;
            acc[r][3] += av * b3;
        }
    }
    for (int r = 0; r < KILN_MR; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int q = 0; q < 4; q++) {
            kiln_v4 v = acc[r][q];
            if (accumulate) v += load_v4(cr + 4 * q);
            store_v4(cr + 4 * q, v);
        }
    }
}
#else
static void generic_tile16(size_t kc, const float *a, const float *b, float *c, size_t ldc, int accumulate) {
    float acc[KILN_MR][KILN_NR];
    for (int r = 0; r < KILN_MR; r++)
        for (int j = 0; j < KILN_NR; j++) acc[r][j] = 0.0f;
    for (size_t k = 0; k < kc; k++) {
        const float *bk = b + k * KILN_NR;
        const float *ak = a + k * KILN_MR;
        for (int r = 0; r < KILN_MR; r++) {
            float av = ak[r];
            for (int j = 0; j < KILN_NR; j++) acc[r][j] += av * bk[j];
        }
    }
    for (int r = 0; r < KILN_MR; r++) {
        float *cr = c + (size_t)r * ldc;
        if (accumulate)
            for (int j = 0; j < KILN_NR; j++) cr[j] += acc[r][j];
        else
            for (int j = 0; j < KILN_NR; j++) cr[j] = acc[r][j];
    }
}
#endif

void kiln_generic_activation(kiln_activation act, float alpha, float beta, size_t n, const float *x, float *y) {
    switch (act) {
    case KILN_ACT_NONE:
        if (x != y) memmove(y, x, n * sizeof(float));
        return;
    case KILN_ACT_RELU:
        for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return;
    default:
        for (size_t i = 0; i < n; i++) y[i] = kiln_scalar_activation(act, alpha, beta, x[i]);
    }
}

void kiln_generic_unary(kiln_unary_op op, size_t n, const float *x, float *y) {
    switch (op) {
    case KILN_UNARY_EXP: for (size_t i = 0; i < n; i++) y[i] = expf(x[i]); return;
    case KILN_UNARY_LOG: for (size_t i = 0; i < n; i++) y[i] = logf(x[i]); return;
    case KILN_UNARY_SQRT: for (size_t i = 0; i < n; i++) y[i] = sqrtf(x[i]); return;
    case KILN_UNARY_ERF: for (size_t i = 0; i < n; i++) y[i] = erff(x[i]); return;
    case KILN_UNARY_ABS: for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]); return;
    case KILN_UNARY_NEG: for (size_t i = 0; i < n; i++) y[i] = -x[i]; return;
    case KILN_UNARY_RECIPROCAL: for (size_t i = 0; i < n; i++) y[i] = 1.0f / x[i]; return;
    }
}

void kiln_generic_binary_vv(kiln_binary_op op, size_t n, const float *a, const float *b, int swap, float *out) {
    if (swap) {
        const float *t = a;
        a = b;
        b = t;
    }
    switch (op) {
    case KILN_BINARY_ADD: for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i]; return;
    case KILN_BINARY_SUB: for (size_t i = 0; i < n; i++) out[i] = a[i] - b[i]; return;
    case KILN_BINARY_MUL: for (size_t i = 0; i < n; i++) out[i] = a[i] * b[i]; return;
    case KILN_BINARY_DIV: for (size_t i = 0; i < n; i++) out[i] = a[i] / b[i]; return;
    default: for (size_t i = 0; i < n; i++) out[i] = kiln_scalar_binary(op, a[i], b[i]);
    }
}

void kiln_generic_binary_vs(kiln_binary_op op, size_t n, const float *a, float s, int swap, float *out) {
    if (swap) {
        for (size_t i = 0; i < n; i++) out[i] = kiln_scalar_binary(op, s, a[i]);
        return;
    }
    switch (op) {
    case KILN_BINARY_ADD: for (size_t i = 0; i < n; i++) out[i] = a[i] + s; return;
    case KILN_BINARY_SUB: for (size_t i = 0; i < n; i++) out[i] = a[i] - s; return;
    case KILN_BINARY_MUL: for (size_t i = 0; i < n; i++) out[i] = a[i] * s; return;
    case KILN_BINARY_DIV: for (size_t i = 0; i < n; i++) out[i] = a[i] / s; return;
    default: for (size_t i = 0; i < n; i++) out[i] = kiln_scalar_binary(op, a[i], s);
    }
}

void kiln_generic_softmax_row(size_t n, const float *x, float *y, float scale, const float *add) {
    if (n == 0) return;
    float m = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        float v = scale * x[i] + (add ? add[i] : 0.0f);
        y[i] = v;
        if (v > m) m = v;
    }
    if (m == -INFINITY) m = 0.0f; /* every entry -inf: exp gives 0, sum 0, result NaN as in the reference */
    float sum = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float e = expf(y[i] - m);
        y[i] = e;
        sum += e;
    }
    float inv = 1.0f / sum;
    for (size_t i = 0; i < n; i++) y[i] *= inv;
}

void kiln_generic_layer_norm_row(size_t n, const float *x, const float *residual, float *y, const float *gamma,
                                   const float *beta, float epsilon, float *mean_out, float *inv_std_out) {
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float v = x[i] + (residual ? residual[i] : 0.0f);
        y[i] = v;
        sum += v;
    }
    float mean = n ? (float)(sum / (double)n) : 0.0f;
    double var = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = y[i] - mean;
        var += (double)d * d;
    }
    float inv_std = 1.0f / sqrtf((float)(n ? var / (double)n : 0.0) + epsilon);
    for (size_t i = 0; i < n; i++) {
        float v = (y[i] - mean) * inv_std;
        y[i] = v * (gamma ? gamma[i] : 1.0f) + (beta ? beta[i] : 0.0f);
    }
    if (mean_out) *mean_out = mean;
    if (inv_std_out) *inv_std_out = inv_std;
}

void kiln_generic_dw3x3_row(const float *const rows[3], const float *w, size_t stride, size_t pad_left,
                              size_t in_width, size_t ow0, size_t ow1, float *out) {
    (void)in_width;
    for (size_t ow = ow0; ow < ow1; ow++) {
        size_t iw = ow * stride - pad_left;
        float acc = 0.0f;
        for (int kh = 0; kh < 3; kh++) {
            const float *r = rows[kh];
            if (!r) continue;
            acc += w[kh * 3 + 0] * r[iw] + w[kh * 3 + 1] * r[iw + 1] + w[kh * 3 + 2] * r[iw + 2];
        }
        out[ow] = acc;
    }
}

float kiln_generic_sum(size_t n, const float *x) {
    float s = 0.0f;
    for (size_t i = 0; i < n; i++) s += x[i];
    return s;
}

const kiln_kernel_table kiln_generic_table = {
    .isa = "generic",
    .tile16 = generic_tile16,
    .tile32 = NULL,
    .activation = kiln_generic_activation,
    .unary = kiln_generic_unary,
    .binary_vv = kiln_generic_binary_vv,
    .binary_vs = kiln_generic_binary_vs,
    .softmax_row = kiln_generic_softmax_row,
    .layer_norm_row = kiln_generic_layer_norm_row,
    .dw3x3_row = kiln_generic_dw3x3_row,
    .sum = kiln_generic_sum,
    .epilogue = kiln_generic_epilogue,
};
