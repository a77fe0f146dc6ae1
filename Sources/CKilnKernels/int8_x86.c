/* int8_x86.c — the int8 register tiles for x86-64 (contract: kiln_qtile_fn in internal.h). Both are exact:
 * AVX-512 VNNI's vpdpbusd multiplies uint8 by int8 into int32 without intermediate saturation; the AVX2 tile
 * widens both operands to 16 bits and uses vpmaddwd (two products of at most 255·128 per int32 lane), never
 * vpmaddubsw, whose int16 pair sums saturate. */
#include "internal.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define KILN_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vnni")))
#define KILN_AVX2_INT __attribute__((target("avx2,fma")))

static inline uint32_t load4(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* 6 rows × 32 columns: one zmm of 16 int32 sums per row and panel; each vpdpbusd adds 4 k. */
KILN_VNNI static void vnni_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                                 const int8_t *b1, int32_t *acc) {
    __m512i c00 = _mm512_setzero_si512(), c01 = _mm512_setzero_si512();
    __m512i c10 = _mm512_setzero_si512(), c11 = _mm512_setzero_si512();
    __m512i c20 = _mm512_setzero_si512(), c21 = _mm512_setzero_si512();
    __m512i c30 = _mm512_setzero_si512(), c31 = _mm512_setzero_si512();
    __m512i c40 = _mm512_setzero_si512(), c41 = _mm512_setzero_si512();
    __m512i c50 = _mm512_setzero_si512(), c51 = _mm512_setzero_si512();
    const uint8_t *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (size_t g = 0; g < kq; g++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(b0 + g * 64));
        __m512i w1 = _mm512_loadu_si512((const void *)(b1 + g * 64));
        size_t o = g * 4;
        __m512i v;
        v = _mm512_set1_epi32((int)(load4(a0 + o) ^ a_xor)); c00 = _mm512_dpbusd_epi32(c00, v, w0); c01 = _mm512_dpbusd_epi32(c01, v, w1);
        v = _mm512_set1_epi32((int)(load4(a1 + o) ^ a_xor)); c10 = _mm512_dpbusd_epi32(c10, v, w0); c11 = _mm512_dpbusd_epi32(c11, v, w1);
        v = _mm512_set1_epi32((int)(load4(a2 + o) ^ a_xor)); c20 = _mm512_dpbusd_epi32(c20, v, w0); c21 = _mm512_dpbusd_epi32(c21, v, w1);
        v = _mm512_set1_epi32((int)(load4(a3 + o) ^ a_xor)); c30 = _mm512_dpbusd_epi32(c30, v, w0); c31 = _mm512_dpbusd_epi32(c31, v, w1);
        v = _mm512_set1_epi32((int)(load4(a4 + o) ^ a_xor)); c40 = _mm512_dpbusd_epi32(c40, v, w0); c41 = _mm512_dpbusd_epi32(c41, v, w1);
        v = _mm512_set1_epi32((int)(load4(a5 + o) ^ a_xor)); c50 = _mm512_dpbusd_epi32(c50, v, w0); c51 = _mm512_dpbusd_epi32(c51, v, w1);
    }
    _mm512_storeu_si512((void *)(acc + 0), c00); _mm512_storeu_si512((void *)(acc + 16), c01);
    _mm512_storeu_si512((void *)(acc + 32), c10); _mm512_storeu_si512((void *)(acc + 48), c11);
    _mm512_storeu_si512((void *)(acc + 64), c20); _mm512_storeu_si512((void *)(acc + 80), c21);
    _mm512_storeu_si512((void *)(acc + 96), c30); _mm512_storeu_si512((void *)(acc + 112), c31);
    _mm512_storeu_si512((void *)(acc + 128), c40); _mm512_storeu_si512((void *)(acc + 144), c41);
    _mm512_storeu_si512((void *)(acc + 160), c50); _mm512_storeu_si512((void *)(acc + 176), c51);
}

const kiln_qkernel kiln_qkernel_avx512vnni = {"avx512vnni", vnni_qtile, 0};

/* The 4 k of a row, zero-extended to 16 bits and repeated across the register: [a0 a1 a2 a3] × 4. */
KILN_AVX2_INT static inline __m256i avx2_a4(const uint8_t *p, uint32_t a_xor) {
    __m128i t = _mm_cvtepu8_epi16(_mm_cvtsi32_si128((int)(load4(p) ^ a_xor)));
    return _mm256_broadcastq_epi64(t);
}

/* Two rows × one 16-column panel. Register q of a row holds columns 4q..4q+3 as pairs of partial sums
 * (k 0–1 and k 2–3 of each group), added pairwise at the end. */
KILN_AVX2_INT static void avx2_qpanel(size_t kq, const uint8_t *a0, const uint8_t *a1, uint32_t a_xor, const int8_t *b,
                                      int32_t *out0, int32_t *out1) {
    __m256i s00 = _mm256_setzero_si256(), s01 = _mm256_setzero_si256(), s02 = _mm256_setzero_si256(), s03 = _mm256_setzero_si256();
    __m256i s10 = _mm256_setzero_si256(), s11 = _mm256_setzero_si256(), s12 = _mm256_setzero_si256(), s13 = _mm256_setzero_si256();
    for (size_t g = 0; g < kq; g++) {
        const int8_t *w = b + g * 64;
        __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 0)));
        __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 16)));
        __m256i w2 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 32)));
        __m256i w3 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(w + 48)));
        __m256i x0 = avx2_a4(a0 + g * 4, a_xor), x1 = avx2_a4(a1 + g * 4, a_xor);
        s00 = _mm256_add_epi32(s00, _mm256_madd_epi16(x0, w0));
        s01 = _mm256_add_epi32(s01, _mm256_madd_epi16(x0, w1));
        s02 = _mm256_add_epi32(s02, _mm256_madd_epi16(x0, w2));
        s03 = _mm256_add_epi32(s03, _mm256_madd_epi16(x0, w3));
        s10 = _mm256_add_epi32(s10, _mm256_madd_epi16(x1, w0));
        s11 = _mm256_add_epi32(s11, _mm256_madd_epi16(x1, w1));
        s12 = _mm256_add_epi32(s12, _mm256_madd_epi16(x1, w2));
        s13 = _mm256_add_epi32(s13, _mm256_madd_epi16(x1, w3));
    }
    /* hadd within 128-bit halves gives [c0 c1 c4 c5 | c2 c3 c6 c7]; the 64-bit permute puts them in order. */
    _mm256_storeu_si256((__m256i *)(out0 + 0), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s00, s01), 0xD8));
    _mm256_storeu_si256((__m256i *)(out0 + 8), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s02, s03), 0xD8));
    _mm256_storeu_si256((__m256i *)(out1 + 0), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s10, s11), 0xD8));
    _mm256_storeu_si256((__m256i *)(out1 + 8), _mm256_permute4x64_epi64(_mm256_hadd_epi32(s12, s13), 0xD8));
}

KILN_AVX2_INT static void avx2_qtile(size_t kq, const uint8_t *const a[KILN_QGEMM_MR], uint32_t a_xor, const int8_t *b0,
                                     const int8_t *b1, int32_t *acc) {
    for (int r = 0; r < KILN_QGEMM_MR; r += 2) {
        avx2_qpanel(kq, a[r], a[r + 1], a_xor, b0, acc + r * 32, acc + (r + 1) * 32);
        if (b1 != b0) avx2_qpanel(kq, a[r], a[r + 1], a_xor, b1, acc + r * 32 + 16, acc + (r + 1) * 32 + 16);
    }
}

const kiln_qkernel kiln_qkernel_avx2 = {"avx2", avx2_qtile, 0};

#endif
