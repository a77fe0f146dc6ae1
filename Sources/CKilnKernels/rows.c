/* rows.c — public entry points of the elementwise, row-wise and data-movement kernels: broadcasting
 * forms, row loops and transposes over the dispatched vector primitives. */
#include "internal.h"

#include <string.h>

void kiln_binary(kiln_binary_op op, kiln_broadcast broadcast, size_t rows, size_t cols, const float *a, const float *b,
                 size_t b_len, int swap, float *out) {
    const kiln_kernel_table *kt = kiln_kernels_current();
    switch (broadcast) {
    case KILN_BROADCAST_NONE:
        kt->binary_vv(op, rows * cols, a, b, swap, out);
        return;
    case KILN_BROADCAST_SCALAR:
        kt->binary_vs(op, rows * cols, a, b[0], swap, out);
        return;
    case KILN_BROADCAST_ROW:
        for (size_t r = 0; r < rows; r++) kt->binary_vv(op, cols, a + r * cols, b, swap, out + r * cols);
        return;
    case KILN_BROADCAST_COLUMN:
        if (b_len == 0) return;
        for (size_t r = 0; r < rows; r++) kt->binary_vs(op, cols, a + r * cols, b[r % b_len], swap, out + r * cols);
        return;
    }
}

void kiln_activation_apply(kiln_activation activation, float alpha, float beta, size_t n, const float *x, float *y) {
    kiln_kernels_current()->activation(activation, alpha, beta, n, x, y);
}

void kiln_unary(kiln_unary_op op, size_t n, const float *x, float *y) {
    kiln_kernels_current()->unary(op, n, x, y);
}

void kiln_softmax_rows(size_t rows, size_t cols, const float *x, size_t ldx, float *y, size_t ldy, float scale,
                       const float *add) {
    const kiln_kernel_table *kt = kiln_kernels_current();
    for (size_t r = 0; r < rows; r++) kt->softmax_row(cols, x + r * ldx, y + r * ldy, scale, add);
}

void kiln_layer_norm_rows(size_t rows, size_t cols, const float *x, size_t ldx, const float *residual, float *y,
                          size_t ldy, const float *gamma, const float *beta, float epsilon, float *mean_out,
                          float *inv_std_out) {
    const kiln_kernel_table *kt = kiln_kernels_current();
    for (size_t r = 0; r < rows; r++)
        kt->layer_norm_row(cols, x + r * ldx, residual ? residual + r * ldx : NULL, y + r * ldy, gamma, beta, epsilon,
                           mean_out ? mean_out + r : NULL, inv_std_out ? inv_std_out + r : NULL);
}

void kiln_transpose_2d(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd) {
    enum { T = 32 };
    for (size_t r0 = 0; r0 < rows; r0 += T) {
        size_t r1 = r0 + T < rows ? r0 + T : rows;
        for (size_t c0 = 0; c0 < cols; c0 += T) {
            size_t c1 = c0 + T < cols ? c0 + T : cols;
            for (size_t r = r0; r < r1; r++)
                for (size_t c = c0; c < c1; c++) dst[c * ldd + r] = src[r * lds + c];
        }
    }
}

void kiln_transpose_4d(const size_t shape[4], const size_t perm[4], const float *src, float *dst) {
    size_t in_stride[4];
    in_stride[3] = 1;
    for (int d = 2; d >= 0; d--) in_stride[d] = in_stride[d + 1] * shape[d + 1];
    size_t os[4], st[4];
    unsigned seen = 0;
    for (int d = 0; d < 4; d++) {
        if (perm[d] > 3 || (seen & (1u << perm[d]))) return; /* not a permutation */
        seen |= 1u << perm[d];
        os[d] = shape[perm[d]];
        st[d] = in_stride[perm[d]];
    }
    if (os[0] * os[1] * os[2] * os[3] == 0) return;
    float *o = dst;
    if (st[3] == 1) { /* innermost axis stays innermost: contiguous runs */
        for (size_t i0 = 0; i0 < os[0]; i0++)
            for (size_t i1 = 0; i1 < os[1]; i1++)
                for (size_t i2 = 0; i2 < os[2]; i2++, o += os[3])
                    memcpy(o, src + i0 * st[0] + i1 * st[1] + i2 * st[2], os[3] * sizeof(float));
        return;
    }
    if (st[2] == 1) { /* the two innermost output axes are a transposed input block */
        for (size_t i0 = 0; i0 < os[0]; i0++)
            for (size_t i1 = 0; i1 < os[1]; i1++, o += os[2] * os[3])
                kiln_transpose_2d(os[3], os[2], src + i0 * st[0] + i1 * st[1], st[3], o, os[3]);
        return;
    }
    for (size_t i0 = 0; i0 < os[0]; i0++)
        for (size_t i1 = 0; i1 < os[1]; i1++)
            for (size_t i2 = 0; i2 < os[2]; i2++) {
                const float *s = src + i0 * st[0] + i1 * st[1] + i2 * st[2];
                for (size_t i3 = 0; i3 < os[3]; i3++) *o++ = s[i3 * st[3]];
            }
}
