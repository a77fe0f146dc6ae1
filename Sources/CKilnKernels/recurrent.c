/* recurrent.c — recurrent cells (ONNX LSTM, GRU, RNN): the small-batch recurrent product on packed weights
 * and the fused per-step cell update.
 *
 * The cell update works on chunks of CELL_CHUNK hidden units that stay in L1: it gathers the gate
 * pre-activations of a chunk (input part + recurrent part + peepholes, clipped) into a small buffer, runs
 * the kernel table's activation over it (vectorized for the ISA in use) and combines the gates into the new
 * state, so every gate value is read once from memory. The recurrent product has one inline body compiled
 * three times (portable, AVX2+FMA, AVX-512F) through GCC/Clang vector extensions. */
#include "internal.h"

#include <string.h>

enum { CELL_CHUNK = 64, RNN_MAX_ROWS = KILN_SMALL_M, RNN_MAX_PANELS = 8 };

/* ---- The fused cell update ---------------------------------------------------------------- */

static void clip_all(float *x, size_t n, float clip) {
    if (!(clip > 0.0f)) return;
    for (size_t k = 0; k < n; k++) x[k] = x[k] < -clip ? -clip : (x[k] > clip ? clip : x[k]);
}

/* One LSTM chunk [j, j + n) of one batch entry (gate order i, o, f, c; peepholes i, o, f). */
static void lstm_chunk(const kiln_kernel_table *kt, const kiln_cell_params *p, size_t j, size_t n, const float *gx,
                       const float *gh, const float *peephole, float *h, float *c, float *y) {
    const size_t H = p->hidden;
    float buf[4 * CELL_CHUNK];
    float *pi = buf, *pf = buf + n, *pc = buf + 2 * n, *po = buf + 3 * n;
    const float *xi = gx + j, *xo = gx + H + j, *xf = gx + 2 * H + j, *xc = gx + 3 * H + j;
    const float *hi = gh + j, *ho = gh + H + j, *hf = gh + 2 * H + j, *hc = gh + 3 * H + j;
    float *cs = c + j;
    if (peephole) {
        const float *peep_i = peephole + j, *peep_f = peephole + 2 * H + j;
        for (size_t k = 0; k < n; k++) {
            pi[k] = xi[k] + hi[k] + peep_i[k] * cs[k];
            pf[k] = xf[k] + hf[k] + peep_f[k] * cs[k];
        }
    } else {
        for (size_t k = 0; k < n; k++) {
            pi[k] = xi[k] + hi[k];
            pf[k] = xf[k] + hf[k];
        }
    }
    for (size_t k = 0; k < n; k++) pc[k] = xc[k] + hc[k];
    clip_all(buf, 3 * n, p->clip);
    kt->activation(p->f, p->f_alpha, p->f_beta, 2 * n, buf, buf);
    kt->activation(p->g, p->g_alpha, p->g_beta, n, pc, pc);
    if (p->input_forget) {
        for (size_t k = 0; k < n; k++) cs[k] = (1.0f - pi[k]) * cs[k] + pi[k] * pc[k];
    } else {
        for (size_t k = 0; k < n; k++) cs[k] = pf[k] * cs[k] + pi[k] * pc[k];
    }
    if (peephole) {
        const float *peep_o = peephole + H + j;
        for (size_t k = 0; k < n; k++) po[k] = xo[k] + ho[k] + peep_o[k] * cs[k];
    } else {
        for (size_t k = 0; k < n; k++) po[k] = xo[k] + ho[k];
    }
    clip_all(po, n, p->clip);
    kt->activation(p->f, p->f_alpha, p->f_beta, n, po, po);
    kt->activation(p->h, p->h_alpha, p->h_beta, n, cs, pc); /* pc now holds h(c) */
    float *hs = h + j;
    for (size_t k = 0; k < n; k++) hs[k] = po[k] * pc[k];
    if (y) memcpy(y + j, hs, n * sizeof(float));
}

/* One GRU chunk (gate order z, r, h). */
static void gru_chunk(const kiln_kernel_table *kt, const kiln_cell_params *p, size_t j, size_t n, const float *gx,
                      const float *gh, const float *rbh, float *h, float *y) {
    const size_t H = p->hidden;
    float buf[3 * CELL_CHUNK];
    float *pz = buf, *pr = buf + n, *ph = buf + 2 * n;
    const float *xz = gx + j, *xr = gx + H + j, *xh = gx + 2 * H + j;
    const float *hz = gh + j, *hr = gh + H + j, *hh = gh + 2 * H + j;
    for (size_t k = 0; k < n; k++) pz[k] = xz[k] + hz[k];
    if (p->linear_before_reset) {
        for (size_t k = 0; k < n; k++) pr[k] = xr[k] + hr[k];
        clip_all(buf, 2 * n, p->clip);
        kt->activation(p->f, p->f_alpha, p->f_beta, 2 * n, buf, buf);
        const float *rb = rbh ? rbh + j : NULL;
        if (rb) {
            for (size_t k = 0; k < n; k++) ph[k] = xh[k] + pr[k] * (hh[k] + rb[k]);
        } else {
            for (size_t k = 0; k < n; k++) ph[k] = xh[k] + pr[k] * hh[k];
        }
    } else {
        clip_all(pz, n, p->clip);
        kt->activation(p->f, p->f_alpha, p->f_beta, n, pz, pz);
        for (size_t k = 0; k < n; k++) ph[k] = xh[k] + hh[k];
    }
    clip_all(ph, n, p->clip);
    kt->activation(p->g, p->g_alpha, p->g_beta, n, ph, ph);
    float *hs = h + j;
    for (size_t k = 0; k < n; k++) hs[k] = (1.0f - pz[k]) * ph[k] + pz[k] * hs[k];
    if (y) memcpy(y + j, hs, n * sizeof(float));
}

/* One plain RNN chunk. */
static void rnn_chunk(const kiln_kernel_table *kt, const kiln_cell_params *p, size_t j, size_t n, const float *gx,
                      const float *gh, float *h, float *y) {
    float *hs = h + j;
    for (size_t k = 0; k < n; k++) hs[k] = gx[j + k] + gh[j + k];
    clip_all(hs, n, p->clip);
    kt->activation(p->f, p->f_alpha, p->f_beta, n, hs, hs);
    if (y) memcpy(y + j, hs, n * sizeof(float));
}

void kiln_rnn_cell(const kiln_cell_params *p, size_t rows, size_t j0, size_t j1, const float *gx, size_t ldgx,
                   const float *gh, size_t ldgh, const float *peephole, const float *rbh, float *h, size_t ldh,
                   float *c, size_t ldc, float *y, size_t ldy) {
    if (j1 > p->hidden) j1 = p->hidden;
    if (j0 >= j1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    for (size_t r = 0; r < rows; r++) {
        const float *gxr = gx + r * ldgx, *ghr = gh + r * ldgh;
        float *hr = h + r * ldh, *yr = y ? y + r * ldy : NULL;
        for (size_t j = j0; j < j1; j += CELL_CHUNK) {
            size_t n = j1 - j < CELL_CHUNK ? j1 - j : CELL_CHUNK;
            switch (p->kind) {
            case KILN_CELL_LSTM: lstm_chunk(kt, p, j, n, gxr, ghr, peephole, hr, c + r * ldc, yr); break;
            case KILN_CELL_GRU: gru_chunk(kt, p, j, n, gxr, ghr, rbh, hr, yr); break;
            case KILN_CELL_RNN: rnn_chunk(kt, p, j, n, gxr, ghr, hr, yr); break;
            }
        }
    }
}

void kiln_gru_reset_gate(const kiln_cell_params *p, size_t rows, size_t j0, size_t j1, const float *gx,
                         size_t ldgx, const float *gh, size_t ldgh, const float *h, size_t ldh, float *rh,
                         size_t ldrh) {
    if (j1 > p->hidden) j1 = p->hidden;
    if (j0 >= j1) return;
    const kiln_kernel_table *kt = kiln_kernels_current();
    const size_t H = p->hidden;
    float buf[CELL_CHUNK];
    for (size_t r = 0; r < rows; r++) {
        const float *xr = gx + r * ldgx + H, *hr = gh + r * ldgh + H, *hs = h + r * ldh;
        float *out = rh + r * ldrh;
        for (size_t j = j0; j < j1; j += CELL_CHUNK) {
            size_t n = j1 - j < CELL_CHUNK ? j1 - j : CELL_CHUNK;
            for (size_t k = 0; k < n; k++) buf[k] = xr[j + k] + hr[j + k];
            clip_all(buf, n, p->clip);
            kt->activation(p->f, p->f_alpha, p->f_beta, n, buf, buf);
            for (size_t k = 0; k < n; k++) out[j + k] = buf[k] * hs[j + k];
        }
    }
}

/* ---- The recurrent product for a few rows ------------------------------------------------- */

#if defined(__GNUC__) || defined(__clang__)

/* 16 floats: one packed-B row of a panel. Compiled as one ZMM register under AVX-512F, two YMM under AVX2,
 * four XMM (or NEON) registers otherwise. */
typedef float rnn_v16 __attribute__((vector_size(64)));

/* out[M × 16P] (row stride 16P) = A[M × K] · panels b, b + bstride, ... (P of them). M and P are constants at
 * every call site, so the loops unroll and the M·P accumulators live in registers. */
static inline __attribute__((always_inline)) void rnn_panels(size_t M, size_t P, size_t K, const float *A,
                                                              size_t lda, const float *b, size_t bstride,
                                                              float *out) {
    rnn_v16 acc[RNN_MAX_ROWS][RNN_MAX_PANELS];
    for (size_t m = 0; m < M; m++)
        for (size_t q = 0; q < P; q++) acc[m][q] = (rnn_v16){0};
    for (size_t k = 0; k < K; k++) {
        rnn_v16 bv[RNN_MAX_PANELS];
        for (size_t q = 0; q < P; q++) memcpy(&bv[q], b + q * bstride + k * KILN_NR, sizeof(rnn_v16));
        for (size_t m = 0; m < M; m++) {
            const float a = A[m * lda + k];
            const rnn_v16 av = {a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a};
            for (size_t q = 0; q < P; q++) acc[m][q] += av * bv[q];
        }
    }
    for (size_t m = 0; m < M; m++)
        for (size_t q = 0; q < P; q++) memcpy(out + m * P * KILN_NR + q * KILN_NR, &acc[m][q], sizeof(rnn_v16));
}

/* The whole product for M <= RNN_MAX_ROWS, columns [n0, n1) (n1 <= N). Each pass covers `group(M)` panels,
 * chosen so that M · group independent accumulators hide the FMA latency within the register file:
 * `wide` is for 32 vector registers that hold a whole rnn_v16 (AVX-512), otherwise one rnn_v16 takes two
 * or four registers. */
static inline __attribute__((always_inline)) void rnn_small_product(int wide, size_t M, size_t K, const float *A,
                                                                     size_t lda, const float *packed, float *C,
                                                                     size_t ldc, size_t n0, size_t n1) {
    float tmp[RNN_MAX_ROWS * RNN_MAX_PANELS * KILN_NR];
    const size_t bstride = K * KILN_NR;
    const size_t group = wide ? (M == 1 ? 8 : M == 2 ? 4 : 2) : (M == 1 ? 4 : M == 2 ? 2 : 1);
    size_t p = n0 / KILN_NR;
    const size_t pend = (n1 + KILN_NR - 1) / KILN_NR;
    while (p < pend) {
        size_t g = pend - p >= group ? group : 1;
        const float *b = packed + p * bstride;
        switch (M * 16 + g) {
        case 1 * 16 + 8: rnn_panels(1, 8, K, A, lda, b, bstride, tmp); break;
        case 1 * 16 + 4: rnn_panels(1, 4, K, A, lda, b, bstride, tmp); break;
        case 1 * 16 + 1: rnn_panels(1, 1, K, A, lda, b, bstride, tmp); break;
        case 2 * 16 + 4: rnn_panels(2, 4, K, A, lda, b, bstride, tmp); break;
        case 2 * 16 + 2: rnn_panels(2, 2, K, A, lda, b, bstride, tmp); break;
        case 2 * 16 + 1: rnn_panels(2, 1, K, A, lda, b, bstride, tmp); break;
        case 3 * 16 + 2: rnn_panels(3, 2, K, A, lda, b, bstride, tmp); break;
        case 3 * 16 + 1: rnn_panels(3, 1, K, A, lda, b, bstride, tmp); break;
        case 4 * 16 + 2: rnn_panels(4, 2, K, A, lda, b, bstride, tmp); break;
        default: rnn_panels(4, 1, K, A, lda, b, bstride, tmp); break;
        }
        size_t base = p * KILN_NR, width = g * KILN_NR;
        size_t lo = n0 > base ? n0 : base, hi = n1 < base + width ? n1 : base + width;
        for (size_t m = 0; m < M; m++) memcpy(C + m * ldc + lo, tmp + m * width + (lo - base), (hi - lo) * sizeof(float));
        p += g;
    }
}

static void rnn_small_generic(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed,
                              float *C, size_t ldc, size_t n0, size_t n1) {
    (void)N;
    rnn_small_product(0, M, K, A, lda, packed, C, ldc, n0, n1);
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void rnn_small_avx2(size_t M, size_t N, size_t K, const float *A,
                                                               size_t lda, const float *packed, float *C,
                                                               size_t ldc, size_t n0, size_t n1) {
    (void)N;
    rnn_small_product(0, M, K, A, lda, packed, C, ldc, n0, n1);
}

__attribute__((target("avx512f"))) static void rnn_small_avx512(size_t M, size_t N, size_t K, const float *A,
                                                                size_t lda, const float *packed, float *C,
                                                                size_t ldc, size_t n0, size_t n1) {
    (void)N;
    rnn_small_product(1, M, K, A, lda, packed, C, ldc, n0, n1);
}
#endif

#else /* no vector extensions: plain loops */

static void rnn_small_generic(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed,
                              float *C, size_t ldc, size_t n0, size_t n1) {
    (void)N;
    const size_t bstride = K * KILN_NR;
    for (size_t m = 0; m < M; m++)
        for (size_t n = n0; n < n1; n++) {
            const float *b = packed + (n / KILN_NR) * bstride + n % KILN_NR;
            float s = 0.0f;
            for (size_t k = 0; k < K; k++) s += A[m * lda + k] * b[k * KILN_NR];
            C[m * ldc + n] = s;
        }
}

#endif

void kiln_rnn_matmul(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed, float *C,
                     size_t ldc, size_t n0, size_t n1) {
    if (n1 > N) n1 = N;
    if (M == 0 || n0 >= n1) return;
    if (M > RNN_MAX_ROWS || K == 0) {
        kiln_sgemm_packed(M, N, K, A, lda, packed, C, ldc, n0, n1, NULL);
        return;
    }
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    const kiln_family family = kiln_family_of(kiln_kernels_current());
    if (family == KILN_FAMILY_AVX512) {
        rnn_small_avx512(M, N, K, A, lda, packed, C, ldc, n0, n1);
        return;
    }
    if (family == KILN_FAMILY_AVX2) {
        rnn_small_avx2(M, N, K, A, lda, packed, C, ldc, n0, n1);
        return;
    }
#endif
    rnn_small_generic(M, N, K, A, lda, packed, C, ldc, n0, n1);
}
