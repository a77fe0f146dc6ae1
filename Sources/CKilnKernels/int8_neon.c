/* int8_neon.c — the int8 register tile for AArch64 with the dot-product extension (SDOT): each vdotq_s32 adds
 * 4 products of int8 values per int32 lane. A is uint8 in the tile contract, so it is read as u − 128 (xor
 * 0x80, exact in int8) and the tile reports a_offset 128: the caller adds 128·Σb back. Exact, like the others. */
#include "internal.h"

#if defined(__aarch64__)

#include <arm_neon.h>
#include <string.h>

#define KILN_DOTPROD __attribute__((target("arch=armv8.2-a+dotprod")))

KILN_DOTPROD static void neon_qpanel(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor,
                                     const int8_t *b, int32_t *acc) {
    int32x4_t s[KILN_QGEMM_MR][4];
    for (int r = 0; r < KILN_QGEMM_MR; r++)
        for (int q = 0; q < 4; q++) s[r][q] = vdupq_n_s32(0);
    const uint32_t x = a_xor ^ 0x80808080u;
    for (size_t g = 0; g < kq; g++) {
        int8x16_t w0 = vld1q_s8(b + g * 64), w1 = vld1q_s8(b + g * 64 + 16);
        int8x16_t w2 = vld1q_s8(b + g * 64 + 32), w3 = vld1q_s8(b + g * 64 + 48);
        for (int r = 0; r < KILN_QGEMM_MR; r++) {
            uint32_t v;
            memcpy(&v, a[r] + g * 4, 4);
            int8x16_t av = vreinterpretq_s8_u32(vdupq_n_u32(v ^ x));
            s[r][0] = vdotq_s32(s[r][0], w0, av);
            s[r][1] = vdotq_s32(s[r][1], w1, av);
            s[r][2] = vdotq_s32(s[r][2], w2, av);
            s[r][3] = vdotq_s32(s[r][3], w3, av);
        }
    }
    for (int r = 0; r < KILN_QGEMM_MR; r++)
        for (int q = 0; q < 4; q++) vst1q_s32(acc + r * 32 + q * 4, s[r][q]);
}

KILN_DOTPROD static void neon_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                                    const int8_t *b1, int32_t *acc) {
    neon_qpanel(kq, a, a_xor, b0, acc);
    if (b1 != b0) neon_qpanel(kq, a, a_xor, b1, acc + 16);
}

const kiln_qkernel kiln_qkernel_neon = {.isa = "neon", .tile = neon_qtile, .a_offset = 128};

#endif
