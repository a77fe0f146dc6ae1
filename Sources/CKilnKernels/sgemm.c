/* sgemm.c — the blocked SGEMM driver: packing, cache blocking, edge tiles and fused epilogues around the
 * ISA-specific register tiles of the kernel table. */
#include "internal.h"

#include <string.h>
#if defined(__SSE2__)
#include <xmmintrin.h>
#endif

/* Cache blocking: a KC×32 pair of B panels (32 KB) stays in L1 while MC×KC of packed A (144 KB) streams
 * from L2; a KC×NC block of B (256 KB) stays in L2 across the MC blocks of A. kiln_sgemm_packed packs up
 * to MB rows of A per K slice once and reuses them across the NC blocks. */
enum { KILN_KC = 256, KILN_MC = 144, KILN_NC = 256, KILN_MB = 1152 };

void kiln_generic_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                           size_t cols, size_t row0, size_t col0) {
    for (size_t r = 0; r < rows; r++) {
        float *cr = c + r * ldc;
        if (ep->bias) {
            if (ep->bias_per_row)
                kt->binary_vs(KILN_BINARY_ADD, cols, cr, ep->bias[row0 + r], 0, cr);
            else
                kt->binary_vv(KILN_BINARY_ADD, cols, cr, ep->bias + col0, 0, cr);
        }
        if (ep->residual) kt->binary_vv(KILN_BINARY_ADD, cols, cr, ep->residual + (row0 + r) * ep->ldr + col0, 0, cr);
        if (ep->activation != KILN_ACT_NONE) kt->activation(ep->activation, ep->alpha, ep->beta, cols, cr, cr);
    }
}

void kiln_apply_epilogue(const kiln_kernel_table *kt, const kiln_epilogue *ep, float *c, size_t ldc, size_t rows,
                         size_t cols, size_t row0, size_t col0) {
    if (!ep || cols == 0 || rows == 0) return;
    kt->epilogue(kt, ep, c, ldc, rows, cols, row0, col0);
}

/* Packs rows [0, mc) × k [0, kc) of op(A) (origin already offset) into MR-row panels, times alpha. */
void kiln_pack_a(int trans, size_t mc, size_t kc, const float *a, size_t lda, float alpha, float *out) {
    for (size_t q = 0; q < mc; q += KILN_MR) {
        size_t rows = mc - q < KILN_MR ? mc - q : KILN_MR;
        float *dst = out + q * kc;
        if (!trans) {
            const float *src[KILN_MR];
            for (size_t r = 0; r < KILN_MR; r++) src[r] = a + (q + (r < rows ? r : 0)) * lda;
            if (rows == KILN_MR && alpha == 1.0f) {
                for (size_t k = 0; k < kc; k++) {
                    float *d = dst + k * KILN_MR;
                    d[0] = src[0][k]; d[1] = src[1][k]; d[2] = src[2][k];
                    d[3] = src[3][k]; d[4] = src[4][k]; d[5] = src[5][k];
                }
            } else {
                for (size_t k = 0; k < kc; k++)
                    for (size_t r = 0; r < KILN_MR; r++) dst[k * KILN_MR + r] = r < rows ? alpha * src[r][k] : 0.0f;
            }
        } else {
            for (size_t k = 0; k < kc; k++) {
                const float *s = a + k * lda + q;
                for (size_t r = 0; r < KILN_MR; r++) dst[k * KILN_MR + r] = r < rows ? alpha * s[r] : 0.0f;
            }
        }
    }
}

/* Packs k [0, kc) × columns [0, nc) of op(B) (origin already offset) into NR-column panels of kc rows. */
void kiln_pack_b(int trans, size_t kc, size_t nc, const float *b, size_t ldb, float *out) {
    for (size_t p = 0; p < nc; p += KILN_NR) {
        size_t cols = nc - p < KILN_NR ? nc - p : KILN_NR;
        float *dst = out + p * kc;
        if (!trans) {
            for (size_t k = 0; k < kc; k++) {
                const float *s = b + k * ldb + p;
                float *d = dst + k * KILN_NR;
                if (cols == KILN_NR) {
                    memcpy(d, s, KILN_NR * sizeof(float));
                } else {
                    size_t j = 0;
                    for (; j < cols; j++) d[j] = s[j];
                    for (; j < KILN_NR; j++) d[j] = 0.0f;
                }
            }
        } else if (cols == KILN_NR) {
            /* B stored N × K: sixteen rows of B become the panel's columns, transposed 4 × 4 at a time so that
             * reads and writes both run along memory (a column at a time wrote one float per 64 bytes). */
            size_t k = 0;
#if defined(__SSE2__)
            for (; k + 4 <= kc; k += 4)
                for (size_t j = 0; j < KILN_NR; j += 4) {
                    const float *s = b + (p + j) * ldb + k;
                    __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ldb), r2 = _mm_loadu_ps(s + 2 * ldb),
                           r3 = _mm_loadu_ps(s + 3 * ldb);
                    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                    float *d = dst + k * KILN_NR + j;
                    _mm_storeu_ps(d, r0);
                    _mm_storeu_ps(d + KILN_NR, r1);
                    _mm_storeu_ps(d + 2 * KILN_NR, r2);
                    _mm_storeu_ps(d + 3 * KILN_NR, r3);
                }
#endif
            for (; k < kc; k++)
                for (size_t j = 0; j < KILN_NR; j++) dst[k * KILN_NR + j] = b[(p + j) * ldb + k];
        } else {
            for (size_t j = 0; j < KILN_NR; j++) {
                if (j < cols) {
                    const float *s = b + (p + j) * ldb;
                    for (size_t k = 0; k < kc; k++) dst[k * KILN_NR + j] = s[k];
                } else {
                    for (size_t k = 0; k < kc; k++) dst[k * KILN_NR + j] = 0.0f;
                }
            }
        }
    }
}

/*
 * One KC slice: C[0..mc) × [lo, hi) (+)= A-panels · B-panels, then the epilogue when `last`.
 * a: MR panels a_stride floats apart (k slice already offset); b: NR panels b_stride apart, panel 0 holding
 * columns [0, 16) of c; erow/ecol: coordinates of c[0][0] for the epilogue.
 */
static void macro_tile(const kiln_kernel_table *kt, size_t kc, size_t mc, const float *a, size_t a_stride,
                       const float *b, size_t b_stride, size_t lo, size_t hi, float *c, size_t ldc, int accumulate,
                       const kiln_epilogue *last_ep, size_t erow, size_t ecol) {
    float tmp[KILN_MR * 2 * KILN_NR] __attribute__((aligned(64)));
    size_t p = lo / KILN_NR;
    while (p * KILN_NR < hi) {
        size_t base = p * KILN_NR;
        int wide = kt->tile32 != NULL && base >= lo && base + 2 * KILN_NR <= hi;
        size_t width = wide ? 2 * KILN_NR : KILN_NR;
        size_t jlo = (lo > base ? lo : base) - base;
        size_t jhi = (hi < base + width ? hi : base + width) - base;
        int full_cols = jlo == 0 && jhi == width;
        const float *b0 = b + p * b_stride;
        const float *b1 = b0 + b_stride;
        /* With few rows of A the weights stream from memory (each is used by mc rows only, once per run), and
         * the register tile's short prefetch leaves it waiting on them. While every row tile reuses this
         * column block, bring the next one (same k slice) toward L2, a share per row tile. */
        size_t next = p + (wide ? 2 : 1), lines = kc * KILN_NR * sizeof(float) / 64;
        size_t next_panels = next * KILN_NR < hi ? (next * KILN_NR + KILN_NR < hi ? 2 : 1) : 0;
        size_t tiles = (mc + KILN_MR - 1) / KILN_MR, share = (lines + tiles - 1) / tiles;
        for (size_t ir = 0; ir < mc; ir += KILN_MR) {
            size_t rows = mc - ir < KILN_MR ? mc - ir : KILN_MR;
            for (size_t q = 0; q < next_panels; q++) {
                const char *nb = (const char *)(b + (next + q) * b_stride);
                size_t l0 = ir / KILN_MR * share, l1 = l0 + share < lines ? l0 + share : lines;
                for (size_t l = l0; l < l1; l++) __builtin_prefetch(nb + l * 64, 0, 2);
            }
            const float *ap = a + (ir / KILN_MR) * a_stride;
            float *cp = c + ir * ldc + base;
            if (rows == KILN_MR && full_cols) {
                if (wide) kt->tile32(kc, ap, b0, b1, cp, ldc, accumulate);
                else kt->tile16(kc, ap, b0, cp, ldc, accumulate);
            } else {
                if (accumulate)
                    for (size_t r = 0; r < rows; r++)
                        for (size_t j = jlo; j < jhi; j++) tmp[r * width + j] = cp[r * ldc + j];
                if (wide) (rows <= 2 && kt->tile32_rows[rows - 1] ? kt->tile32_rows[rows - 1] : kt->tile32)(kc, ap, b0, b1, tmp, width, accumulate);
                else kt->tile16(kc, ap, b0, tmp, width, accumulate);
                for (size_t r = 0; r < rows; r++)
                    for (size_t j = jlo; j < jhi; j++) cp[r * ldc + j] = tmp[r * width + j];
            }
        }
        p += wide ? 2 : 1;
    }
    /* One epilogue pass per row over the whole column range, while the block is still in cache. */
    if (last_ep) kiln_apply_epilogue(kt, last_ep, c + lo, ldc, mc, hi - lo, erow, ecol + lo);
}

size_t kiln_sgemm_pack_b_size(size_t K, size_t N) {
    size_t panels = (N + KILN_NR - 1) / KILN_NR;
    size_t k = K ? K : 1;
    return panels * k * KILN_NR;
}

void kiln_sgemm_pack_b(int transB, size_t K, size_t N, const float *B, size_t ldb, float *packed) {
    if (K == 0 || N == 0) return;
    kiln_pack_b(transB, K, N, B, ldb, packed);
}

static void fill_zero(size_t rows, size_t cols, float *c, size_t ldc) {
    for (size_t i = 0; i < rows; i++) memset(c + i * ldc, 0, cols * sizeof(float));
}

void kiln_sgemm_packed(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed, float *C,
                       size_t ldc, size_t n0, size_t n1, const kiln_epilogue *epilogue) {
    if (n1 > N) n1 = N;
    if (M == 0 || n0 >= n1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    if (K == 0) {
        fill_zero(M, n1 - n0, C + n0, ldc);
        kiln_apply_epilogue(kt, epilogue, C + n0, ldc, M, n1 - n0, 0, n0);
        return;
    }
    if (M <= KILN_SMALL_M) {
        /* A few rows (a batch-1 classifier): the 6-row tiles would waste most of their work, and the
         * product is bound by streaming B, which the few-row kernel reads once. */
        kiln_rnn_matmul(M, N, K, A, lda, packed, C, ldc, n0, n1);
        kiln_apply_epilogue(kt, epilogue, C + n0, ldc, M, n1 - n0, 0, n0);
        return;
    }
    size_t mb_max = M < KILN_MB ? (M + KILN_MR - 1) / KILN_MR * KILN_MR : KILN_MB;
    size_t kc_max = K < KILN_KC ? K : KILN_KC;
    float *abuf = kiln_scratch(0, mb_max * kc_max);
    if (!abuf) return;
    for (size_t ib = 0; ib < M; ib += KILN_MB) {
        size_t mb = M - ib < KILN_MB ? M - ib : KILN_MB;
        for (size_t pc = 0; pc < K; pc += KILN_KC) {
            size_t kc = K - pc < KILN_KC ? K - pc : KILN_KC;
            const kiln_epilogue *ep = pc + kc == K ? epilogue : NULL;
            kiln_pack_a(0, mb, kc, A + ib * lda + pc, lda, 1.0f, abuf);
            for (size_t jc = n0 / KILN_NR * KILN_NR; jc < n1; jc += KILN_NC) {
                size_t lo = jc > n0 ? jc : n0, hi = jc + KILN_NC < n1 ? jc + KILN_NC : n1;
                for (size_t ic = 0; ic < mb; ic += KILN_MC) {
                    size_t mc = mb - ic < KILN_MC ? mb - ic : KILN_MC;
                    macro_tile(kt, kc, mc, abuf + ic * kc, kc * KILN_MR, packed + pc * KILN_NR, K * KILN_NR, lo, hi,
                               C + (ib + ic) * ldc, ldc, pc > 0, ep, ib + ic, 0);
                }
            }
        }
    }
}

void kiln_sgemm(int transA, int transB, size_t M, size_t N, size_t K, float alpha, const float *A, size_t lda,
                const float *B, size_t ldb, float beta, float *C, size_t ldc, const kiln_epilogue *epilogue) {
    if (M == 0 || N == 0) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    if (beta == 0.0f) {
        if (K == 0 || alpha == 0.0f) fill_zero(M, N, C, ldc);
    } else if (beta != 1.0f) {
        for (size_t i = 0; i < M; i++) kt->binary_vs(KILN_BINARY_MUL, N, C + i * ldc, beta, 0, C + i * ldc);
    }
    if (K == 0 || alpha == 0.0f) {
        kiln_apply_epilogue(kt, epilogue, C, ldc, M, N, 0, 0);
        return;
    }
    size_t mc_max = M < KILN_MC ? (M + KILN_MR - 1) / KILN_MR * KILN_MR : KILN_MC;
    size_t kc_max = K < KILN_KC ? K : KILN_KC;
    size_t nc_max = N < KILN_NC ? (N + KILN_NR - 1) / KILN_NR * KILN_NR : KILN_NC;
    float *abuf = kiln_scratch(0, mc_max * kc_max);
    float *bbuf = kiln_scratch(1, kc_max * nc_max);
    if (!abuf || !bbuf) return;
    int accumulate_first = beta != 0.0f;
    for (size_t jc = 0; jc < N; jc += KILN_NC) {
        size_t nc = N - jc < KILN_NC ? N - jc : KILN_NC;
        for (size_t pc = 0; pc < K; pc += KILN_KC) {
            size_t kc = K - pc < KILN_KC ? K - pc : KILN_KC;
            int last = pc + kc == K;
            kiln_pack_b(transB, kc, nc, transB ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, bbuf);
            for (size_t ic = 0; ic < M; ic += KILN_MC) {
                size_t mc = M - ic < KILN_MC ? M - ic : KILN_MC;
                kiln_pack_a(transA, mc, kc, transA ? A + pc * lda + ic : A + ic * lda + pc, lda, alpha, abuf);
                macro_tile(kt, kc, mc, abuf, kc * KILN_MR, bbuf, kc * KILN_NR, 0, nc, C + ic * ldc + jc, ldc,
                           pc > 0 || accumulate_first, last ? epilogue : NULL, ic, jc);
            }
        }
    }
}

/* The implicit-GEMM step of conv.c: prepacked A (weights) and a B block packed on the fly. */
void kiln_gemm_prepacked_a(const kiln_kernel_table *kt, size_t kc, size_t mc, const float *a, size_t a_stride,
                           const float *b, size_t nc, float *c, size_t ldc, int accumulate,
                           const kiln_epilogue *last_ep, size_t erow, size_t ecol) {
    macro_tile(kt, kc, mc, a, a_stride, b, kc * KILN_NR, 0, nc, c, ldc, accumulate, last_ep, erow, ecol);
}
