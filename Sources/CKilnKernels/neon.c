/* neon.c — AArch64 Advanced SIMD register tile (NEON is mandatory on AArch64, so no run-time check). The
 * rest of the NEON table is the portable C of generic.c, which compilers vectorize for NEON. */
#include "internal.h"

#if defined(__aarch64__)

#include <arm_neon.h>

/* 6×16 tile: 24 accumulators of 4 lanes, B row in 4 registers, A column broadcast by lane. */
static void neon_tile16(size_t kc, const float *a, const float *b, float *c, size_t ldc, int accumulate) {
    float32x4_t acc[KILN_MR][4];
    for (int r = 0; r < KILN_MR; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_f32(0.0f);
    for (size_t k = 0; k < kc; k++) {
        float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8), b3 = vld1q_f32(b + 12);
        float32x4_t a03 = vld1q_f32(a);
        float32x2_t a45 = vld1_f32(a + 4);
#define KILN_ROW(r, vec, lane, LANEFN)                                                                                \
    acc[r][0] = LANEFN(acc[r][0], b0, vec, lane);                                                                     \
    acc[r][1] = LANEFN(acc[r][1], b1, vec, lane);                                                                     \
    acc[r][2] = LANEFN(acc[r][2], b2, vec, lane);                                                                     \
    acc[r][3] = LANEFN(acc[r][3], b3, vec, lane);
        KILN_ROW(0, a03, 0, vfmaq_laneq_f32)
        KILN_ROW(1, a03, 1, vfmaq_laneq_f32)
        KILN_ROW(2, a03, 2, vfmaq_laneq_f32)
        KILN_ROW(3, a03, 3, vfmaq_laneq_f32)
        KILN_ROW(4, a45, 0, vfmaq_lane_f32)
        KILN_ROW(5, a45, 1, vfmaq_lane_f32)
#undef KILN_ROW
        a += KILN_MR;
        b += KILN_NR;
    }
    for (int r = 0; r < KILN_MR; r++) {
        float *cr = c + (size_t)r * ldc;
        for (int q = 0; q < 4; q++) {
            float32x4_t v = acc[r][q];
            if (accumulate) v = vaddq_f32(v, vld1q_f32(cr + 4 * q));
            vst1q_f32(cr + 4 * q, v);
        }
    }
}

const kiln_kernel_table kiln_neon_table = {
    .isa = "neon",
    .tile16 = neon_tile16,
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

#endif /* __aarch64__ */
