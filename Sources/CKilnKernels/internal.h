/*
 * internal.h — private to CKilnKernels: the dispatch table and shared helpers.
 * Not part of the public contract (include/kiln_kernels.h).
 */
#ifndef KILN_KERNELS_INTERNAL_H
#define KILN_KERNELS_INTERNAL_H

#include "kiln_kernels.h"

struct kiln_kernel_table;

#define KILN_MR KILN_SGEMM_MR
#define KILN_NR KILN_SGEMM_NR
/* Products with at most this many rows against a packed B go through kiln_rnn_matmul's few-row kernel
 * (kiln_sgemm_packed sends them there; kiln_rnn_matmul sends more rows back). */
#define KILN_SMALL_M 4

/* 6×16 tile: c[6×16] (row stride ldc) = (accumulate ? c : 0) + a·b over kc steps.
 * a: packed MR panel (kc groups of 6 floats), b: packed NR panel (kc rows of 16 floats). */
typedef void (*kiln_tile16_fn)(size_t kc, const float *a, const float *b, float *c, size_t ldc, int accumulate);
/* 6×32 tile over two adjacent B panels b0 (columns 0..15) and b1 (columns 16..31). */
typedef void (*kiln_tile32_fn)(size_t kc, const float *a, const float *b0, const float *b1, float *c, size_t ldc,
                               int accumulate);
typedef void (*kiln_activation_fn)(kiln_activation act, float alpha, float beta, size_t n, const float *x, float *y);
typedef void (*kiln_unary_fn)(kiln_unary_op op, size_t n, const float *x, float *y);
/* out[i] = a[i] op b[i] (swap: b[i] op a[i]). */
typedef void (*kiln_binary_vv_fn)(kiln_binary_op op, size_t n, const float *a, const float *b, int swap, float *out);
/* out[i] = a[i] op s (swap: s op a[i]). */
typedef void (*kiln_binary_vs_fn)(kiln_binary_op op, size_t n, const float *a, float s, int swap, float *out);
/* One softmax row: y = softmax(scale·x + add). */
typedef void (*kiln_softmax_row_fn)(size_t n, const float *x, float *y, float scale, const float *add);
/* One layer-norm row over v = x + residual (residual may be NULL). */
typedef void (*kiln_layer_norm_row_fn)(size_t n, const float *x, const float *residual, float *y, const float *gamma,
                                       const float *beta, float epsilon, float *mean_out, float *inv_std_out);
/* One output row of a 3×3 depthwise convolution, interior columns [ow0, ow1) only (no padding reads):
 * out[ow] = sum_{kh,kw} w[kh*3+kw] · rows[kh][ow*stride + kw - pad_left], rows[kh] may be NULL (zero row);
 * every row holds in_width floats and the caller guarantees the window of each ow in [ow0, ow1) lies inside. */
typedef void (*kiln_dw3x3_row_fn)(const float *const rows[3], const float *w, size_t stride, size_t pad_left,
                                  size_t in_width, size_t ow0, size_t ow1, float *out);
/* sum of x[0..n) */
typedef float (*kiln_sum_fn)(size_t n, const float *x);
/* The epilogue over a rows×cols block of C at (row0, col0) in epilogue coordinates (ep non-NULL). */
typedef void (*kiln_epilogue_fn)(const struct kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc,
                                 size_t rows, size_t cols, size_t row0, size_t col0);

typedef struct kiln_kernel_table {
    const char *isa;
    kiln_tile16_fn tile16;
    kiln_tile32_fn tile32; /* NULL when the ISA has no wider tile */
    kiln_tile32_fn tile32_rows[2]; /* tile32 for the first 1 or 2 rows only (NULL: none), for M's last rows */
    kiln_activation_fn activation;
    kiln_unary_fn unary;
    kiln_binary_vv_fn binary_vv;
    kiln_binary_vs_fn binary_vs;
    kiln_softmax_row_fn softmax_row;
    kiln_layer_norm_row_fn layer_norm_row;
    kiln_dw3x3_row_fn dw3x3_row;
    kiln_sum_fn sum;
    kiln_epilogue_fn epilogue;
} kiln_kernel_table;

/* The table in use (generic when forced or when the CPU lacks AVX2+FMA). */
const kiln_kernel_table *kiln_kernels_current(void);

/* Which instantiation of the vector-extension kernels (blocked.c, conv_blocked.c, recurrent.c: one body
 * compiled per target attribute) goes with a table; NEON uses the portable one. */
typedef enum kiln_family { KILN_FAMILY_PORTABLE, KILN_FAMILY_AVX2, KILN_FAMILY_AVX512 } kiln_family;
kiln_family kiln_family_of(const kiln_kernel_table *kt);

extern const kiln_kernel_table kiln_generic_table;
#if defined(__aarch64__)
extern const kiln_kernel_table kiln_neon_table;
#endif

/* Portable kernels (generic.c), shared with the NEON table. */
void kiln_generic_activation(kiln_activation act, float alpha, float beta, size_t n, const float *x, float *y);
void kiln_generic_unary(kiln_unary_op op, size_t n, const float *x, float *y);
void kiln_generic_binary_vv(kiln_binary_op op, size_t n, const float *a, const float *b, int swap, float *out);
void kiln_generic_binary_vs(kiln_binary_op op, size_t n, const float *a, float s, int swap, float *out);
void kiln_generic_softmax_row(size_t n, const float *x, float *y, float scale, const float *add);
void kiln_generic_layer_norm_row(size_t n, const float *x, const float *residual, float *y, const float *gamma,
                                 const float *beta, float epsilon, float *mean_out, float *inv_std_out);
void kiln_generic_dw3x3_row(const float *const rows[3], const float *w, size_t stride, size_t pad_left,
                            size_t in_width, size_t ow0, size_t ow1, float *out);
float kiln_generic_sum(size_t n, const float *x);
/* Bias, residual and activation as separate passes over each row through the table's vector primitives. */
void kiln_generic_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                           size_t cols, size_t row0, size_t col0);
#if defined(__x86_64__)
extern const kiln_kernel_table kiln_avx2_table;
extern const kiln_kernel_table kiln_avx512_table;
#endif

#if defined(__x86_64__)
/* AVX2 kernels reused by the AVX-512 table. */
void kiln_avx2_activation(kiln_activation act, float alpha, float beta, size_t n, const float *x, float *y);
void kiln_avx2_unary(kiln_unary_op op, size_t n, const float *x, float *y);
void kiln_avx2_binary_vv(kiln_binary_op op, size_t n, const float *a, const float *b, int swap, float *out);
void kiln_avx2_binary_vs(kiln_binary_op op, size_t n, const float *a, float s, int swap, float *out);
void kiln_avx2_softmax_row(size_t n, const float *x, float *y, float scale, const float *add);
void kiln_avx2_layer_norm_row(size_t n, const float *x, const float *residual, float *y, const float *gamma,
                              const float *beta, float epsilon, float *mean_out, float *inv_std_out);
void kiln_avx2_dw3x3_row(const float *const rows[3], const float *w, size_t stride, size_t pad_left, size_t in_width,
                         size_t ow0, size_t ow1, float *out);
float kiln_avx2_sum(size_t n, const float *x);
void kiln_avx2_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                        size_t cols, size_t row0, size_t col0);
#endif

/* Scalar reference-quality helpers shared by the generic kernels and vector tails. */
float kiln_scalar_activation(kiln_activation act, float alpha, float beta, float x);
float kiln_scalar_binary(kiln_binary_op op, float a, float b);

/* Per-thread scratch of at least `floats` floats, 64-byte aligned; slot 0, 1 or 2 (independent buffers; slot 2 is
 * the AVX2 int8 product's widened rows, which may run inside a user of slot 1).
 * Returns NULL when allocation fails. */
float *kiln_scratch(int slot, size_t floats);

/* Packing shared by sgemm.c and conv.c (layouts in kiln_kernels.h). */
void kiln_pack_a(int trans, size_t mc, size_t kc, const float *a, size_t lda, float alpha, float *out);
void kiln_pack_b(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *out);
/* C[0..mc) × [0..nc) (+)= prepacked A (MR panels a_stride apart, k slice offset) · B panels packed with kc rows. */
void kiln_gemm_prepacked_a(const kiln_kernel_table *kt, size_t kc, size_t mc, const float *a, size_t a_stride,
                           const float *b, size_t nc, float *c, size_t ldc, int accumulate,
                           const kiln_epilogue *last_ep, size_t erow, size_t ecol);

/* Applies the epilogue to a rows×cols block of C at (row0, col0) in epilogue coordinates. */
void kiln_apply_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                         size_t cols, size_t row0, size_t col0);

/* ---- int8 kernels (int8.c, int8_x86.c, int8_neon.c) ---- */

/* acc[r·32 + j] = Σ_k u(a[r][k]) · b[k][j] (overwritten, not accumulated) over kq groups of 4 k: rows
 * r < KILN_QGEMM_MR, columns j < 16 from panel b0 and j ≥ 16 from panel b1 (b1 may equal b0). u(x) = x xor
 * the low byte of a_xor (0 or 0x80), read as uint8. A tile may compute Σ (u − a_offset)·b instead; the caller
 * adds a_offset·Σb back. */
typedef void (*kiln_qtile_fn)(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                              const int8_t *b1, int32_t *acc);
/* The whole of kiln_qgemm for the fused-QDQ output stage (KILN_QROUND_FLOAT to uint8/int8, one a_zero): tile and
 * requantizing epilogue in registers, bit-identical to the portable path. NULL when an ISA has none. */
typedef void (*kiln_qgemm_float_fn)(const kiln_qgemm_params *p, size_t r0, size_t r1, size_t n0, size_t n1);
typedef struct kiln_qkernel {
    const char *isa;
    kiln_qtile_fn tile;
    int a_offset;
    kiln_qgemm_float_fn gemm_float;
    /* kiln_quantize_u8, bit-identical, or NULL for the portable loop. */
    void (*quantize)(const float *x, size_t n, float scale, int32_t zero, int is_signed, uint8_t *y);
    /* kiln_qdepthwise, bit-identical, when it returns 1 (0: not this case, the portable loop runs). */
    int (*depthwise)(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero, const uint8_t *weight,
                     int w_signed, const int32_t *w_zero, size_t w_zero_stride, const kiln_qgemm_params *q, size_t c0, size_t c1);
    /* dst[j·dst_stride + i] = src[i·src_stride + j] for a 16 × 16 block of bytes (kiln_qpad_hwc's channels-last
     * copy), or NULL for the portable loop. */
    void (*transpose16)(const uint8_t *src, size_t src_stride, uint8_t *dst, size_t dst_stride);
    /* kiln_qwinograd_conv, bit-identical, where it beats the family's product (NULL: the portable loops, and
     * kiln_qwinograd_preferred says 0). */
    void (*winograd)(const kiln_conv2d_params *p, const uint8_t *padded, size_t wp, const int16_t *packed,
                     const kiln_qgemm_params *q, size_t ty0, size_t ty1);
    /* kiln_dequantize_u8, bit-identical, or NULL for the portable loop. */
    void (*dequantize)(const uint8_t *x, size_t n, int is_signed, int32_t zero, float scale, float *y);
    /* kiln_qadd, bit-identical, or NULL for the portable loop. */
    void (*add)(const uint8_t *a, uint8_t a_xor, int32_t a_offset, float a_scale, const uint8_t *b, uint8_t b_xor,
                int32_t b_offset, float b_scale, size_t n, float y_scale, int32_t y_zero, int y_signed, uint8_t *y);
} kiln_qkernel;
/* Winograd F(2×2, 3×3)'s input transform U = Bᵀ d B of the 4×4 tile at padded pixel (py, px) of kiln_qpad_hwc's
 * copy (c channels, wp pixels a row), channel ch, its bytes xored with xb: u[pos], pos = 4·row + column. */
void kiln_qwinograd_input(const uint8_t *padded, size_t wp, size_t c, size_t py, size_t px, size_t ch, uint8_t xb, int32_t u[16]);
/* kiln_qgemm's output stage of v[0..cols) (the centred sums plus bias) at row r, columns n0.. */
void kiln_qstore_row(const kiln_qgemm_params *p, const uint32_t *v, size_t cols, size_t r, size_t n0);
const kiln_qkernel *kiln_qkernel_current(void);
extern const kiln_qkernel kiln_qkernel_generic;
#if defined(__x86_64__)
extern const kiln_qkernel kiln_qkernel_avx2;
extern const kiln_qkernel kiln_qkernel_avx512vnni;
#elif defined(__aarch64__)
extern const kiln_qkernel kiln_qkernel_neon;
#endif
/* Whether kiln_kernels_force_generic is in effect. */
int kiln_kernels_generic_forced(void);

#endif
