/*
 * kiln_kernels.h — Kiln's CPU microkernels (C, ISA-specific code behind runtime dispatch).
 *
 * Every function is single-threaded and works on the rows/tiles it is given, so the Swift side
 * (Backends/KilnCPU) splits work across its thread pool by calling them on disjoint ranges.
 * ISA-specific variants are compiled with __attribute__((target(...))) and chosen at run time from
 * kiln_cpu_detect(); `kiln_kernels_force_generic(1)` forces the portable C paths (used by tests and
 * by the `generic` target). All matrices are row-major with explicit leading dimensions (in elements).
 */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- CPU features ------------------------------------------------------------------------- */

/** Features of the CPU this process runs on (1 = present). */
typedef struct kiln_cpu_features {
    int avx2;
    int fma;
    int avx512f;
    int neon;
} kiln_cpu_features;

/** Detects the host CPU's features (cached after the first call). */
kiln_cpu_features kiln_cpu_detect(void);

/** Forces (1) or stops forcing (0) the portable C kernels; returns the previous setting. */
int kiln_kernels_force_generic(int force);

/** Name of the kernel family in use ("avx512", "avx2", "neon", "generic"). */
const char *kiln_kernels_isa(void);

/* ---- Fused epilogues ---------------------------------------------------------------------- */

/** Activation applied elementwise after bias and residual. */
typedef enum kiln_activation {
    KILN_ACT_NONE = 0,
    KILN_ACT_RELU = 1,
    KILN_ACT_CLIP = 2,        /* min(max(x, alpha), beta); ReLU6 is alpha = 0, beta = 6 */
    KILN_ACT_SIGMOID = 3,
    KILN_ACT_SILU = 4,        /* x * sigmoid(x) */
    KILN_ACT_HARDSIGMOID = 5, /* max(0, min(1, alpha * x + beta)) */
    KILN_ACT_HARDSWISH = 6,   /* x * max(0, min(1, x / 6 + 1/2)) */
    KILN_ACT_GELU_ERF = 7,    /* 0.5 x (1 + erf(x / sqrt 2)) */
    KILN_ACT_GELU_TANH = 8,
    KILN_ACT_TANH = 9,
    KILN_ACT_LEAKY_RELU = 10  /* x < 0 ? alpha * x : x */
} kiln_activation;

/**
 * What happens to each output element y[i][j] after the product: y = act(y + bias + residual[i][j]).
 * bias is per column (length N) when bias_per_row is 0, per row (length M) otherwise; NULL for none.
 * residual is NULL for none, else an M×N matrix with leading dimension ldr.
 */
typedef struct kiln_epilogue {
    const float *bias;
    int bias_per_row;
    const float *residual;
    size_t ldr;
    kiln_activation activation;
    float alpha;
    float beta;
} kiln_epilogue;

/* ---- SGEMM -------------------------------------------------------------------------------- */

/**
 * C[M×N] = alpha · op(A) · op(B) + beta · C, then the epilogue (NULL for none).
 * op(X) is X or its transpose (transA/transB nonzero). A is M×K (or K×M when transposed), B is K×N
 * (or N×K when transposed). beta = 0 means C is not read (it may hold garbage or NaN).
 */
void kiln_sgemm(int transA, int transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta,
                float *C, size_t ldc, const kiln_epilogue *epilogue);

/** Floats needed to hold B (K×N, or N×K when transB) packed for kiln_sgemm_packed. */
size_t kiln_sgemm_pack_b_size(size_t K, size_t N);

/** Packs B once (constant weights) into `packed` (kiln_sgemm_pack_b_size floats, 64-byte aligned). */
void kiln_sgemm_pack_b(int transB, size_t K, size_t N, const float *B, size_t ldb, float *packed);

/**
 * C[M×N] = A[M×K] · B, with B packed by kiln_sgemm_pack_b, then the epilogue (NULL for none).
 * Columns [n0, n1) only: callers split N (or M, by offsetting A and C) across threads.
 */
void kiln_sgemm_packed(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed,
                       float *C, size_t ldc, size_t n0, size_t n1, const kiln_epilogue *epilogue);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KERNELS_H */
