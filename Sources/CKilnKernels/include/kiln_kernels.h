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
    int avx512vnni; /* AVX-512 F, BW and VNNI (vpdpbusd): the int8 tile */
    int dotprod;    /* AArch64 SDOT/UDOT (Armv8.2 dot product) */
} kiln_cpu_features;

/** Detects the host CPU's features (cached after the first call). */
kiln_cpu_features kiln_cpu_detect(void);

/** Forces (1) or stops forcing (0) the portable C kernels; returns the previous setting. */
int kiln_kernels_force_generic(int force);

/** Name of the kernel family in use ("avx512", "avx2", "neon", "generic"). */
const char *kiln_kernels_isa(void);

/**
 * Selects the kernel family by name for the whole process: "avx512", "avx2", "neon", "generic", or "host"
 * (or NULL) for the best this CPU has. Returns 0 on success, -1 (selection unchanged) when this CPU or
 * build lacks the family. kiln_kernels_force_generic(1) still overrides it while set.
 */
int kiln_kernels_select_isa(const char *isa);

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
 * residual is NULL for none, else an M×N matrix with leading dimension ldr; it must not overlap the
 * output (to add into the output in place, use kiln_sgemm with beta = 1 instead).
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
 * (or N×K when transposed). beta = 0 means C is not read (it may hold garbage or NaN). C must not
 * overlap A or B. Packs A and B blocks into per-thread scratch (grown on demand, kept for the thread's
 * life), so concurrent calls from different threads are safe.
 */
void kiln_sgemm(int transA, int transB, size_t M, size_t N, size_t K, float alpha,
                const float *A, size_t lda, const float *B, size_t ldb, float beta,
                float *C, size_t ldc, const kiln_epilogue *epilogue);

/** Floats needed to hold B (K×N, or N×K when transB) packed for kiln_sgemm_packed. */
size_t kiln_sgemm_pack_b_size(size_t K, size_t N);

/** Packs B once (constant weights) into `packed` (kiln_sgemm_pack_b_size floats; any alignment works,
 * 64-byte alignment is fastest). The layout is described at KILN_SGEMM_NR below. */
void kiln_sgemm_pack_b(int transB, size_t K, size_t N, const float *B, size_t ldb, float *packed);

/**
 * C[M×N] = A[M×K] · B, with B packed by kiln_sgemm_pack_b, then the epilogue (NULL for none).
 * Columns [n0, n1) only (n1 is clamped to N); nothing outside them is written: callers split N (or M, by
 * offsetting A, C and a per-row bias/residual) across threads, which may run concurrently.
 */
void kiln_sgemm_packed(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed,
                       float *C, size_t ldc, size_t n0, size_t n1, const kiln_epilogue *epilogue);

/*
 * Packed-B layout (ISA-independent, so a buffer packed under one ISA is valid under every other and
 * under kiln_kernels_force_generic): B is cut into panels of KILN_SGEMM_NR = 16 columns; panel p holds
 * columns [16p, 16p + 16) for k = 0..K-1 as K consecutive rows of 16 floats (columns past N are zero).
 * Panel p starts at packed + p * K * 16. kiln_sgemm_packed is fastest when n0 is a multiple of
 * KILN_SGEMM_NR (any n0 < n1 <= N is correct).
 */
#define KILN_SGEMM_NR 16
/** Rows per packed-A panel (kiln_conv2d_pack_weight): panel q holds rows [6q, 6q + 6) for each k. */
#define KILN_SGEMM_MR 6

/* ---- Convolution (NCHW, one image per call) ----------------------------------------------- */

/**
 * Shape of a 2-D convolution or pooling window over one NCHW image. The caller computes
 * out_height/out_width from its pads (ONNX formula); pad_bottom/pad_right are implied by them.
 * Input pixels outside [0, in_height) × [0, in_width) read as 0 (convolution) or are skipped (pooling).
 */
typedef struct kiln_conv2d_params {
    size_t in_channels, in_height, in_width;
    size_t out_channels, out_height, out_width;
    size_t kernel_h, kernel_w;
    size_t stride_h, stride_w;     /* >= 1 */
    size_t pad_top, pad_left;
    size_t dilation_h, dilation_w; /* >= 1 */
    size_t groups;                 /* >= 1; in_channels and out_channels are multiples of it */
} kiln_conv2d_params;
/* The kernels trust shapes (callers validate them) but do nothing, rather than divide by zero, when a
 * stride, dilation or groups is 0; input reads stay inside in_height × in_width whatever out_* are. */

/** Floats needed for the packed weight of kiln_conv2d_nchw (per group, Cout/g rows padded to MR). */
size_t kiln_conv2d_pack_weight_size(const kiln_conv2d_params *p);

/**
 * Packs an OIHW weight [out_channels][in_channels/groups][kernel_h][kernel_w] once into `packed`
 * (kiln_conv2d_pack_weight_size floats; 64-byte alignment is fastest). Layout: for each group, the GEMM matrix
 * W_g [Cout/g × (Cin/g·KH·KW)] in KILN_SGEMM_MR-row panels (panel q: K groups of 6 floats).
 */
void kiln_conv2d_pack_weight(const kiln_conv2d_params *p, const float *weight, float *packed);

/**
 * Convolution of one image: output[Cout][OH][OW] from input[Cin][H][W] and a weight packed by
 * kiln_conv2d_pack_weight, as an implicit GEMM (im2col tiles built inside, never the whole matrix;
 * 1×1 stride-1 unpadded convolutions read the input directly). Only output pixels [p0, p1) of the
 * flattened OH·OW plane are written (for every output channel): callers split pixels across threads.
 * Epilogue: bias is per output channel (bias_per_row is ignored); residual[c * ldr + pixel] (ldr is
 * normally OH·OW). input, output and residual must not overlap. Concurrent calls on disjoint pixel
 * ranges of the same output are safe.
 * Uses a per-thread scratch buffer (grown on demand, kept for the thread's life).
 */
void kiln_conv2d_nchw(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                      float *output, size_t p0, size_t p1, const kiln_epilogue *epilogue);

/**
 * Plain im2col of group `group` of one image: col[(Cin/g·KH·KW) × (OH·OW)] row-major, row index
 * (c·KH + kh)·KW + kw, zero where the window reads padding. For callers that want an explicit matrix.
 */
void kiln_im2col_nchw(const kiln_conv2d_params *p, const float *input, size_t group, float *col);

/**
 * Depthwise convolution of one image (groups == in_channels == out_channels, any kernel size, stride,
 * pads and dilation; 3×3 stride 1 and 2 have vector fast paths). weight is [C][KH][KW]. Channels
 * [c0, c1) only. Epilogue: bias per channel (bias_per_row ignored), residual[c * ldr + pixel].
 * input and output must not overlap.
 */
void kiln_depthwise_conv2d_nchw(const kiln_conv2d_params *p, const float *input, const float *weight,
                                float *output, size_t c0, size_t c1, const kiln_epilogue *epilogue);

/* ---- Blocked layout (NCHW16c) ------------------------------------------------------------ */

/*
 * The blocked layout of one image of C channels and H×W pixels: [ceil(C/16)][H][W][16], i.e. channel c
 * of pixel (h, w) at ((c / 16) * H * W + h * W + w) * 16 + c % 16. The 16 channels of a pixel are one
 * vector, so convolutions, depthwise convolutions and pooling vectorize across channels without
 * packing or transposes. Lanes past C in the last block are padding: their contents are finite and
 * otherwise unspecified, and no kernel lets them reach a real channel (packed weights are zero there).
 * A batch of N images is N such images back to back.
 */
#define KILN_BLOCK 16

/** Channels rounded up to a whole number of blocks (ceil(c / 16) * 16). */
size_t kiln_blocked_channels(size_t channels);

/** NCHW → blocked for one image (hw = H·W pixels); padding lanes are written as zero. No overlap. */
void kiln_reorder_to_blocked(size_t channels, size_t hw, const float *src, float *dst);

/** Blocked → NCHW for one image (padding lanes are not read). No overlap. */
void kiln_reorder_from_blocked(size_t channels, size_t hw, const float *src, float *dst);

/*
 * Dense convolution (groups == 1) producing a blocked output, as a direct convolution: each output tile
 * of up to 6 pixels × 64 output channels accumulates, per block of 16 input channels, broadcast input
 * values times weight vectors, with the weights of one input block (≤ 36 KB for 3×3) kept in L1 across a
 * run of pixels. The input is either blocked (blocked_input != 0) or NCHW (e.g. a 3-channel image).
 * Steps per image: kiln_conv2d_blocked_pad_input copies the input into a zero-bordered scratch image
 * (so no tap needs a bounds check; for unpadded 1×1 convolutions it is skipped and the input is used
 * as it is), then kiln_conv2d_blocked computes work items [w0, w1) of kiln_conv2d_blocked_work(p);
 * disjoint item ranges may run concurrently on the same output.
 * Epilogue: bias per output channel (length out_channels; bias_per_row is ignored), residual in the
 * blocked layout of the output (ldr is ignored), then the activation. The residual may not overlap
 * the output.
 */

/** Floats of the packed weight for kiln_conv2d_blocked. */
size_t kiln_conv2d_blocked_pack_weight_size(const kiln_conv2d_params *p, int blocked_input);

/** Packs an OIHW weight once (zero for padding channels) for kiln_conv2d_blocked. */
void kiln_conv2d_blocked_pack_weight(const kiln_conv2d_params *p, int blocked_input, const float *weight,
                                     float *packed);

/** Whether kiln_conv2d_blocked reads the input directly (1) or needs kiln_conv2d_blocked_pad_input (0). */
int kiln_conv2d_blocked_reads_input_directly(const kiln_conv2d_params *p);

/** Floats of the zero-bordered input copy (one image). */
size_t kiln_conv2d_blocked_padded_size(const kiln_conv2d_params *p, int blocked_input);

/**
 * Writes channel blocks [b0, b1) of the zero-bordered copy of one image (for an NCHW input a "block" is
 * one channel). Ranges may run concurrently. Count: kiln_conv2d_blocked_pad_units(p, blocked_input).
 */
void kiln_conv2d_blocked_pad_input(const kiln_conv2d_params *p, int blocked_input, const float *input,
                                   float *padded, size_t b0, size_t b1);

/** Units kiln_conv2d_blocked_pad_input splits into (input channel blocks, or channels for NCHW). */
size_t kiln_conv2d_blocked_pad_units(const kiln_conv2d_params *p, int blocked_input);

/** Work items of kiln_conv2d_blocked for one image. */
size_t kiln_conv2d_blocked_work(const kiln_conv2d_params *p);

/**
 * Computes work items [w0, w1) of one image: output (blocked) from `source` (the padded copy, or the
 * input itself when kiln_conv2d_blocked_reads_input_directly) and the packed weight.
 */
void kiln_conv2d_blocked(const kiln_conv2d_params *p, int blocked_input, const float *source,
                         const float *packed_weight, float *output, size_t w0, size_t w1,
                         const kiln_epilogue *epilogue);

/*
 * Winograd F(4×4, 3×3) convolution of a blocked input into a blocked output: 3×3 kernels, stride 1,
 * dilation 1, groups 1, any pads. It multiplies 4 times per output where the direct convolution
 * multiplies 9 times, at the price of input/output transforms and a weight 4× the size, so it pays on
 * large planes (tens of 4×4 tiles or more). Results differ from the direct convolution by rounding
 * (relative error of order 1e-6). Work items [w0, w1) of kiln_conv2d_winograd_work(p) cover groups of
 * output tiles; disjoint ranges may run concurrently. Uses a per-thread scratch buffer (grown on demand,
 * kept for the thread's life). Epilogue as for kiln_conv2d_blocked.
 */

/** Whether kiln_conv2d_winograd computes convolutions of this shape. */
int kiln_conv2d_winograd_supported(const kiln_conv2d_params *p);

/** Floats of the transformed weight (36 × blocked Cin × blocked Cout). */
size_t kiln_conv2d_winograd_pack_weight_size(const kiln_conv2d_params *p);

/** Transforms a 3×3 weight packed by kiln_conv2d_blocked_pack_weight (blocked input) into the Winograd
 * weight (zero for padding channels). */
void kiln_conv2d_winograd_pack_weight(const kiln_conv2d_params *p, const float *blocked_weight, float *packed);

/** Work items of kiln_conv2d_winograd for one image. */
size_t kiln_conv2d_winograd_work(const kiln_conv2d_params *p);

/** Computes work items [w0, w1) of one image (input and output blocked, input unpadded). */
void kiln_conv2d_winograd(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                          float *output, size_t w0, size_t w1, const kiln_epilogue *epilogue);

/** Floats of a depthwise weight packed for kiln_depthwise_conv2d_blocked ([ceil(C/16)][KH][KW][16]). */
size_t kiln_depthwise_blocked_pack_weight_size(const kiln_conv2d_params *p);

/** Packs a depthwise weight [C][1][KH][KW] (zero for padding channels). */
void kiln_depthwise_blocked_pack_weight(const kiln_conv2d_params *p, const float *weight, float *packed);

/**
 * Depthwise convolution (groups == in_channels == out_channels) of one blocked image into a blocked
 * output, any kernel size, stride, pads and dilation; channel blocks [cb0, cb1) only (ranges may run
 * concurrently). Epilogue as for kiln_conv2d_blocked (bias per channel, residual blocked).
 * input and output must not overlap.
 */
void kiln_depthwise_conv2d_blocked(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                   float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue);

/** Max pooling of a blocked image (p->in_channels channels) into a blocked output; channel blocks
 * [cb0, cb1). Same window semantics as kiln_maxpool2d_nchw (padding never wins). */
void kiln_maxpool2d_blocked(const kiln_conv2d_params *p, const float *input, float *output, size_t cb0,
                            size_t cb1);

/** Average pooling of a blocked image into a blocked output; channel blocks [cb0, cb1). Same semantics
 * as kiln_avgpool2d_nchw_padded. */
void kiln_avgpool2d_blocked(const kiln_conv2d_params *p, int count_include_pad, size_t pad_bottom,
                            size_t pad_right, const float *input, float *output, size_t cb0, size_t cb1);

/** Global average (is_max == 0) or max pooling of a blocked image of `channels` × hw pixels into NCHW
 * output[c] for c < channels. */
void kiln_global_pool_blocked(size_t channels, size_t hw, int is_max, const float *input, float *output);

/* ---- Pooling (NCHW; channel planes are independent: offset pointers to split channels) ----- */

/**
 * Max pooling of p->in_channels planes (out_channels is ignored; groups ignored). Padding never wins:
 * a window entirely in padding yields -inf.
 */
void kiln_maxpool2d_nchw(const kiln_conv2d_params *p, const float *input, float *output);

/**
 * Average pooling. count_include_pad zero divides by the number of real input pixels in the window;
 * nonzero divides by the number of window positions inside the padded extent
 * [-pad_top, in_height + pad_bottom) × [-pad_left, in_width + pad_right), where pad_bottom/pad_right are
 * what the last window needs beyond the input ((out - 1)·stride + (kernel - 1)·dilation + 1 - in - pad,
 * at least 0). A window with nothing to count yields 0. For explicit end pads (ceil mode), use
 * kiln_avgpool2d_nchw_padded.
 */
void kiln_avgpool2d_nchw(const kiln_conv2d_params *p, int count_include_pad, const float *input, float *output);

/** kiln_avgpool2d_nchw with the bottom/right pads given explicitly (positions beyond them are not counted). */
void kiln_avgpool2d_nchw_padded(const kiln_conv2d_params *p, int count_include_pad, size_t pad_bottom,
                                size_t pad_right, const float *input, float *output);

/** out[c] = mean of in[c][0..hw) for c < channels (GlobalAveragePool). */
void kiln_global_avgpool_nchw(size_t channels, size_t hw, const float *input, float *output);

/* ---- Elementwise -------------------------------------------------------------------------- */

/** Binary operation of kiln_binary. */
typedef enum kiln_binary_op {
    KILN_BINARY_ADD = 0,
    KILN_BINARY_SUB = 1,
    KILN_BINARY_MUL = 2,
    KILN_BINARY_DIV = 3,
    KILN_BINARY_MAX = 4,
    KILN_BINARY_MIN = 5
} kiln_binary_op;

/** How b is broadcast against a rows×cols matrix a in kiln_binary. */
typedef enum kiln_broadcast {
    KILN_BROADCAST_NONE = 0,   /* b is rows×cols like a */
    KILN_BROADCAST_SCALAR = 1, /* b[0] for every element */
    KILN_BROADCAST_ROW = 2,    /* b has cols elements, the same row for every row (per column) */
    KILN_BROADCAST_COLUMN = 3  /* b[r % b_len] for every element of row r (per row / per channel:
                                  NCHW with rows = N·C, cols = H·W, b_len = C) */
} kiln_broadcast;

/**
 * out[r][c] = a[r][c] op B(r, c), or B(r, c) op a[r][c] when swap is nonzero; all matrices
 * contiguous rows×cols. b_len is used only by KILN_BROADCAST_COLUMN. out may equal a exactly (in
 * place), and b too under KILN_BROADCAST_NONE; no other overlap.
 */
void kiln_binary(kiln_binary_op op, kiln_broadcast broadcast, size_t rows, size_t cols, const float *a,
                 const float *b, size_t b_len, int swap, float *out);

/** y[i] = act(x[i]) for i < n (alpha/beta as in kiln_activation). y may equal x (in place). */
void kiln_activation_apply(kiln_activation activation, float alpha, float beta, size_t n, const float *x,
                           float *y);

/** Unary operation of kiln_unary. */
typedef enum kiln_unary_op {
    KILN_UNARY_EXP = 0,
    KILN_UNARY_LOG = 1,
    KILN_UNARY_SQRT = 2,
    KILN_UNARY_ERF = 3,        /* |error| <= 1e-6 relative to erf in float */
    KILN_UNARY_ABS = 4,
    KILN_UNARY_NEG = 5,
    KILN_UNARY_RECIPROCAL = 6
} kiln_unary_op;

/** y[i] = op(x[i]) for i < n. y may equal x (in place). */
void kiln_unary(kiln_unary_op op, size_t n, const float *x, float *y);

/* ---- Row-wise normalizations -------------------------------------------------------------- */

/**
 * Softmax over each row: y[r][:] = softmax(scale · x[r][:] + add[:]); add (cols elements, the same for
 * every row, e.g. an attention mask) may be NULL; scale = 1 for plain Softmax. ldx/ldy are row
 * strides in elements. y may equal x (in place, same ld).
 */
void kiln_softmax_rows(size_t rows, size_t cols, const float *x, size_t ldx, float *y, size_t ldy,
                       float scale, const float *add);

/**
 * Layer normalization over each row of (x + residual): y = (v - mean) / sqrt(var + epsilon) · gamma + beta
 * with gamma/beta of cols elements (either may be NULL: 1 / 0). residual (rows×cols, stride ldx) may
 * be NULL. mean_out/inv_std_out (rows elements) receive the statistics when not NULL. y may equal x or
 * residual (in place, same ld).
 */
void kiln_layer_norm_rows(size_t rows, size_t cols, const float *x, size_t ldx, const float *residual,
                          float *y, size_t ldy, const float *gamma, const float *beta, float epsilon,
                          float *mean_out, float *inv_std_out);

/* ---- Data movement ------------------------------------------------------------------------ */

/** dst[c][r] = src[r][c] for a rows×cols block (lds, ldd are row strides). src and dst must not overlap. */
void kiln_transpose_2d(size_t rows, size_t cols, const float *src, size_t lds, float *dst, size_t ldd);

/**
 * 4-D permutation of a contiguous tensor: dst has shape shape[perm[0..3]] and
 * dst[i0][i1][i2][i3] = src[j] where j indexes src at position perm-inverse of (i0, i1, i2, i3), i.e.
 * output axis d is input axis perm[d] (ONNX Transpose). Lower ranks: pad shape with leading 1s and
 * perm with leading identity. src and dst must not overlap. Does nothing if perm is not a permutation.
 */
void kiln_transpose_4d(const size_t shape[4], const size_t perm[4], const float *src, float *dst);

/* ---- Recurrent cells (ONNX LSTM, GRU, RNN) ------------------------------------------------- */

/*
 * One direction of a recurrent layer runs as: the input projection X·Wᵀ (+ biases) for every time step at once
 * (kiln_sgemm_packed with W packed by kiln_sgemm_pack_b), then per time step the recurrent product H·Rᵀ
 * (kiln_rnn_matmul, R packed the same way) and one kiln_rnn_cell call that applies the gate activations and
 * updates the state. Gates are laid out as ONNX orders them, each `hidden` floats wide: LSTM i, o, f, c;
 * GRU z, r, h; RNN one gate. A GRU with linear_before_reset = 0 needs (r ⊙ h)·Rhᵀ, so its step is
 * kiln_gru_reset_gate, then the product of that into the h-gate columns, then kiln_rnn_cell.
 */

/** Which cell kiln_rnn_cell computes. */
typedef enum kiln_cell_kind {
    KILN_CELL_RNN = 0,
    KILN_CELL_GRU = 1,
    KILN_CELL_LSTM = 2
} kiln_cell_kind;

/**
 * A recurrent cell: its kind, width and activations (ONNX's f, g, h with their alpha/beta; any
 * kiln_activation works, the ONNX defaults are Sigmoid, Tanh, Tanh). RNN uses f only, GRU f and g.
 * clip > 0 clamps every gate pre-activation to [-clip, clip] before its activation (0: no clipping).
 */
typedef struct kiln_cell_params {
    kiln_cell_kind kind;
    size_t hidden;
    kiln_activation f, g, h;
    float f_alpha, f_beta, g_alpha, g_beta, h_alpha, h_beta;
    float clip;
    int input_forget;        /* LSTM: the forget gate is 1 - i (coupled input and forget gates) */
    int linear_before_reset; /* GRU: h-gate = x·Whᵀ + r ⊙ (h·Rhᵀ + Rbh) */
} kiln_cell_params;

/**
 * C[M×N] = A[M×K] · B with B packed by kiln_sgemm_pack_b, columns [n0, n1) only (n1 clamped to N), like
 * kiln_sgemm_packed without an epilogue, but fast for the few rows (batch entries) of a recurrent step:
 * M <= 4 streams each packed panel once for all rows; larger M calls kiln_sgemm_packed. A must not
 * overlap C. Concurrent calls on disjoint column ranges are safe.
 */
void kiln_rnn_matmul(size_t M, size_t N, size_t K, const float *A, size_t lda, const float *packed, float *C,
                     size_t ldc, size_t n0, size_t n1);

/**
 * One time step of `rows` batch entries, hidden units [j0, j1) (j1 <= p->hidden): reads each entry's gate
 * pre-activations — gx (input projection with every bias already added, except Rbh of a GRU with
 * linear_before_reset) and gh (recurrent product) — applies clip and the activations, and updates the
 * state in place: h (rows × hidden, row stride ldh) and, for LSTM, c (row stride ldc). y, when not NULL,
 * receives the new h too (row stride ldy). Gate g of entry r starts at gx + r·ldgx + g·hidden (gh likewise).
 * LSTM: peephole is P (3·hidden: i, o, f) or NULL; f = 1 - i under input_forget.
 * GRU: rbh is Rbh (hidden floats) when linear_before_reset, else unused; without linear_before_reset the
 * h-gate columns of gh hold (r ⊙ h)·Rhᵀ (see kiln_gru_reset_gate).
 * h and c may not overlap gx, gh or y. Disjoint [j0, j1) ranges may run concurrently.
 */
void kiln_rnn_cell(const kiln_cell_params *p, size_t rows, size_t j0, size_t j1, const float *gx, size_t ldgx,
                   const float *gh, size_t ldgh, const float *peephole, const float *rbh, float *h, size_t ldh,
                   float *c, size_t ldc, float *y, size_t ldy);

/**
 * First half of a GRU step without linear_before_reset: r = f(clip(gx_r + gh_r)) and rh = r ⊙ h for `rows`
 * entries and hidden units [j0, j1) (rh row stride ldrh; rh may not overlap the others). Only the z and r
 * columns of gh are read.
 */
void kiln_gru_reset_gate(const kiln_cell_params *p, size_t rows, size_t j0, size_t j1, const float *gx,
                         size_t ldgx, const float *gh, size_t ldgh, const float *h, size_t ldh, float *rh,
                         size_t ldrh);


/* ---- Integer (int8) GEMM and convolution -------------------------------------------------- */

/*
 * C = (A − a_zero) · (B − b_zero) with 8-bit operands and int32 accumulation, then either stored as int32
 * (MatMulInteger, ConvInteger) or requantized to uint8/int8 (QLinearMatMul, QLinearConv, fused QDQ).
 * Any mix of uint8/int8 operands: inside, A is seen as uint8 and B as int8 (an int8 A is xor-ed with 0x80, a
 * uint8 B is stored minus 128, and the zero points move with them), so every ISA computes the same exact
 * integer sum; the correction terms (row sums of A, column sums of B, K·za·zb) are exact int32 arithmetic
 * that wraps modulo 2^32 as ONNX's int32 accumulation does. Results are bit-identical across ISAs.
 *
 * Packed B: panels of KILN_QGEMM_NR columns; within a panel, K in groups of 4 (zero-padded to a multiple of
 * 4), each group 64 bytes: column j's 4 consecutive k values at bytes 4j..4j+3.
 */
#define KILN_QGEMM_NR 16
#define KILN_QGEMM_MR 6

/** Bytes of B (K × N) packed for kiln_qgemm. */
size_t kiln_qgemm_pack_b_size(size_t k, size_t n);

/**
 * Packs B[k][n] = b[k·ks + n·ns] (int8, or uint8 when b_unsigned) into `packed` (kiln_qgemm_pack_b_size
 * bytes) and writes col_sums[n] = Σ_k of the stored (int8) values, which kiln_qgemm needs.
 */
void kiln_qgemm_pack_b(size_t k, size_t n, const void *b, ptrdiff_t ks, ptrdiff_t ns, int b_unsigned,
                       int8_t *packed, int32_t *col_sums);

/** What kiln_qgemm writes. */
typedef enum kiln_qout {
    KILN_QOUT_INT32 = 0, /* the int32 sum (+ bias) */
    KILN_QOUT_UINT8 = 1, /* requantized, saturated to [qmin, qmax] ⊆ [0, 255] */
    KILN_QOUT_INT8 = 2   /* requantized, saturated to [qmin, qmax] ⊆ [-128, 127] */
} kiln_qout;

/** How an int32 sum becomes a quantized value (v = acc + bias, m = multiplier of the column). */
typedef enum kiln_qround {
    KILN_QROUND_DOUBLE = 0,         /* rint(v·m) + zero, in double (kiln.reference's QLinearConv) */
    KILN_QROUND_DOUBLE_ZERO_IN = 1, /* rint(v·m + zero), in double (kiln.reference's QLinearMatMul) */
    KILN_QROUND_FLOAT = 2           /* rint((float)v·(float)m) + zero, in float32 (ONNX Runtime's int8 kernels) */
} kiln_qround;

/** One int8 product; see kiln_qgemm. */
typedef struct kiln_qgemm_params {
    size_t m, n, k;
    const uint8_t *a;          /* row r, column k at a[r·lda + k] (raw bytes of the uint8/int8 tensor) */
    size_t lda;
    int a_signed;              /* A holds int8 */
    int32_t a_zero;            /* A's zero point in its own type */
    const int32_t *a_zero_rows; /* per-row zero points (MatMulInteger), or NULL for a_zero */
    const int8_t *packed_b;    /* kiln_qgemm_pack_b */
    const int32_t *col_sums;   /* kiln_qgemm_pack_b */
    int b_unsigned;            /* B held uint8 */
    const int32_t *b_zero;     /* B's zero points in its own type: b_zero[n·b_zero_stride] (stride 0: one) or NULL */
    size_t b_zero_stride;
    const int32_t *bias;       /* per column, added to the int32 sum, or NULL */
    kiln_qout out;
    void *c;                   /* element (r, n) at c + r·rs + n·cs, in elements */
    ptrdiff_t rs, cs;
    const double *multiplier;  /* per column (multiplier_stride 1) or one (0); requantizing outputs only */
    size_t multiplier_stride;
    const float *fbias;        /* KILN_QROUND_FLOAT only: per column, added after the multiply, or NULL */
    int32_t y_zero, qmin, qmax;
    kiln_qround round;
    /* 0 or 1: row r of A is k contiguous bytes. n ≥ 2 (dividing k): row r is n pieces of k/n bytes, piece s at
     * a + r·lda + s·a_segment_stride: a convolution read straight from a padded channels-last image, one
     * kernel row a piece, with no im2row copy. */
    size_t a_segments;
    ptrdiff_t a_segment_stride;
} kiln_qgemm_params;

/** Rows [r0, r1) and columns [n0, n1) of the product (n0 a multiple of KILN_QGEMM_NR). Disjoint ranges may run
 *  concurrently. */
void kiln_qgemm(const kiln_qgemm_params *p, size_t r0, size_t r1, size_t n0, size_t n1);

/**
 * Rows of the im2col matrix of group `group` of one uint8/int8 image (kiln_conv2d_params shapes): row
 * p (output pixel) holds the window [c][kh][kw] of the group's channels, `pad_value` where it reads outside,
 * zero bytes up to `ld` (at least K = Cin/g·KH·KW). Pixels [p0, p1) only, row p at rows + (p − p0)·ld.
 */
void kiln_qim2row(const kiln_conv2d_params *p, const uint8_t *input, size_t group, uint8_t pad_value,
                  uint8_t *rows, size_t ld, size_t p0, size_t p1);

/** Channels-last copy of pixels [i0, i1) of one image of c channels × hw pixels: output[i·c + ch] = input[ch·hw + i]. */
void kiln_qtranspose_hwc(const uint8_t *input, size_t c, size_t hw, uint8_t *output, size_t i0, size_t i1);

/**
 * kiln_qim2row over a channels-last image (kiln_qtranspose_hwc): row p holds the window in [kh][kw][c] order
 * (c over the group's channels), `pad_value` outside, zero bytes up to `ld`. The weight's K must be packed in
 * the same order.
 */
void kiln_qim2row_hwc(const kiln_conv2d_params *p, const uint8_t *hwc, size_t group, uint8_t pad_value, uint8_t *rows,
                      size_t ld, size_t p0, size_t p1);

/**
 * Rows [y0, y1) of a padded channels-last copy of one image of c channels × h × w (NCHW bytes): output[(py·wp +
 * px)·c + ch] = input[ch·h·w + (py − pad_top)·w + px − pad_left] where that lies in the image, pad_value elsewhere;
 * hp × wp padded pixels in all. kiln_qgemm reads convolution windows from it directly (a_segments).
 */
void kiln_qpad_hwc(const uint8_t *input, size_t c, size_t h, size_t w, size_t pad_top, size_t pad_left, size_t wp,
                   uint8_t pad_value, uint8_t *output, size_t y0, size_t y1);

/**
 * Exact int8 3×3 convolution (stride 1, dilation 1, one group) by Winograd F(2×2, 3×3): 2.25× fewer multiplies than
 * kiln_qgemm's product, with the same result bit for bit. The transforms are integer: the input tile's (values at
 * most 255) stays within ±1020 and the filter's, less its zero point and taken at twice G's scale, within ±9 · 255;
 * the products' sums are taken modulo 2^32, and the output transform gives 4× the window's sum, divided exactly
 * where that sum fits (kiln_qwinograd_pack checks it).
 */
/** Whether kiln_qwinograd_conv is faster here than kiln_qgemm's product (the int8 kernels selected now). */
int kiln_qwinograd_preferred(void);
/** int16 values of the transformed filters of c channels × n filters. */
size_t kiln_qwinograd_pack_size(size_t c, size_t n);
/**
 * Transforms filters w[n][c][3][3] (int8 bytes, or uint8 when w_unsigned) less their zero points (w_zero[j], in w's
 * type; NULL for none) into `packed` (kiln_qwinograd_pack_size values) and writes col_sums[j] = Σ of filter j's
 * centred values. Returns 1; 0 when the convolution would not be exact (9 · 255 · max|w − zero| · c ≥ 2^29), and then
 * `packed` must not be used.
 */
int kiln_qwinograd_pack(size_t c, size_t n, const uint8_t *w, int w_unsigned, const int32_t *w_zero, int16_t *packed,
                        int32_t *col_sums);
/**
 * Rows of 2×2 output tiles [ty0, ty1) of one image: the window sums of `padded` (kiln_qpad_hwc's channels-last copy,
 * wp pixels a row, at least 2·⌈out_height/2⌉ + 2 rows and wp ≥ 2·⌈out_width/2⌉ + 2) by the filters `packed`, then the
 * output stage of `q` as kiln_qgemm's (q->k = in_channels, q->n = out_channels, q->col_sums from
 * kiln_qwinograd_pack; one a_zero; the filters' zero points are those given to kiln_qwinograd_pack, b_zero is not read; c, rs,
 * cs address [channel][pixel]).
 */
void kiln_qwinograd_conv(const kiln_conv2d_params *p, const uint8_t *padded, size_t wp, const int16_t *packed,
                         const kiln_qgemm_params *q, size_t ty0, size_t ty1);

/**
 * Depthwise integer convolution of one image (groups == in_channels == out_channels), channels [c0, c1):
 * acc = Σ (x − x_zero)(w − w_zero[c]) over the window (padding contributes nothing), then the output stage
 * of `q` (its out, bias, multiplier, zero, bounds and rounding; c, rs, cs address [channel][pixel]).
 * x_signed / w_signed say whether input / weight bytes are int8.
 */
void kiln_qdepthwise(const kiln_conv2d_params *p, const uint8_t *input, int x_signed, int32_t x_zero,
                     const uint8_t *weight, int w_signed, const int32_t *w_zero, size_t w_zero_stride,
                     const kiln_qgemm_params *q, size_t c0, size_t c1);

/** QuantizeLinear of n floats to uint8 (is_signed 0) or int8, per tensor: y = saturate(rint_even((float)(x / scale)) +
 *  zero), the division in double then rounded to float as kiln.reference does; NaN gives 0, saturated. */
void kiln_quantize_u8(const float *x, size_t n, float scale, int32_t zero, int is_signed, uint8_t *y);

/** DequantizeLinear of n uint8 (is_signed 0) or int8 values, per tensor: y = (float)(x − zero)·scale in float32 (the
 *  difference is exact, so this is kiln.reference's (float(x) − float(zero))·scale). */
void kiln_dequantize_u8(const uint8_t *x, size_t n, int is_signed, int32_t zero, float scale, float *y);

/** The QDQ residual sum of n bytes, DequantizeLinear(a) + DequantizeLinear(b) → QuantizeLinear, as the unfused
 *  nodes compute it: da = (float)((a ^ a_xor) − a_offset)·a_scale and db likewise, in float32, then da + db quantized
 *  by kiln_quantize_u8 with y_scale, y_zero, y_signed. An int8 input is read with xor 0x80 and its zero point + 128
 *  as offset. */
void kiln_qadd(const uint8_t *a, uint8_t a_xor, int32_t a_offset, float a_scale, const uint8_t *b, uint8_t b_xor,
               int32_t b_offset, float b_scale, size_t n, float y_scale, int32_t y_zero, int y_signed, uint8_t *y);

/** The least and greatest of n floats and 0 (the range DynamicQuantizeLinear quantizes over) into *lo and *hi;
 *  NaNs are skipped. */
void kiln_float_range(const float *x, size_t n, float *lo, float *hi);

/** The int8 kernel family in use: "avx512vnni", "avx2", "neon" or "generic". */
const char *kiln_qkernels_isa(void);

/** Chooses the int8 kernel family ("host" for the best here); -1 when this CPU lacks it. kiln_kernels_force_generic
 *  also forces the generic int8 kernels. */
int kiln_qkernels_select_isa(const char *isa);


/* ---- Tree ensembles (trees.c) ---- */

/** One split of a compiled tree ensemble (16 bytes). `word`: feature index (bits 0–23) | KILN_TREE_LE (the
 *  comparison is `x <= threshold`, otherwise `x < threshold`) | KILN_TREE_MISSING_YES (a missing value takes
 *  `yes`) | missing kind << KILN_TREE_MISSING_SHIFT (KILN_TREE_MISSING_NAN, _NAN_OR_ZERO, _NAN_AS_ZERO).
 *  `yes`/`no`: the child when the comparison holds / does not: a split index, or ~leaf (negative) for a leaf. */
typedef struct kiln_tree_node {
    uint32_t word;
    float threshold;
    int32_t yes;
    int32_t no;
} kiln_tree_node;

#define KILN_TREE_FEATURE_MASK 0xFFFFFFu
#define KILN_TREE_LE (1u << 24)
#define KILN_TREE_MISSING_YES (1u << 25)
#define KILN_TREE_MISSING_SHIFT 26
/** NaN is missing. */
#define KILN_TREE_MISSING_NAN 0
/** NaN and |x| <= 1e-35 are missing (LightGBM missing_type=Zero). */
#define KILN_TREE_MISSING_NAN_OR_ZERO 1
/** Nothing is missing; NaN compares as 0 (LightGBM missing_type=None). */
#define KILN_TREE_MISSING_NAN_AS_ZERO 2

/** Which parts of the split rule a forest uses (the walks specialize on it): */
/** every split `x < t`, NaN missing (XGBoost) */
#define KILN_TREES_RULE_LT_NAN 1
/** every split `x <= t`, NaN missing */
#define KILN_TREES_RULE_LE_NAN 2
/** every split `x <= t`, nothing missing: NaN compares as 0 (LightGBM missing_type=None) */
#define KILN_TREES_RULE_LE_NAN_AS_ZERO 3
/** any mix of the word's comparisons and missing kinds */
#define KILN_TREES_RULE_GENERAL 0

/** Walks `count` trees (root i: roots[i], a split index or ~leaf) for the one row `x`; leaves[i] = ~(the leaf tree
 *  i reaches). */
void kiln_trees_walk_row(const kiln_tree_node *nodes, const int32_t *roots, size_t count, const float *x,
                         int32_t *leaves, int rule);

/** Walks one tree (root: a split index or ~leaf) for `rows` rows of x (`stride` floats apart); leaves[r] = ~(the
 *  leaf row r reaches). `rule`: a KILN_TREES_RULE_* that holds for every split of the forest. */
void kiln_trees_walk_rows(const kiln_tree_node *nodes, int32_t root, const float *x, size_t stride, size_t rows,
                          int32_t *leaves, int rule);

/** For a single-output forest: sums[r] += leaf_values[leaf] of each of `trees` trees (roots[0..trees)), tree by
 *  tree in order, for `rows` rows of x; `leaves` is scratch for `rows` entries. */
void kiln_trees_sum_rows(const kiln_tree_node *nodes, const int32_t *roots, size_t trees, const float *leaf_values,
                         const float *x, size_t stride, size_t rows, int32_t *leaves, double *sums, int rule);

/** Chooses the walk: "leafmask" (or "host": the default; kiln_forest_build lays out every forest it can, and adds
 *  the leaf-mask layout to those with at most 64 leaves per tree and one value per leaf when the CPU has AVX-512),
 *  "lockstep" (the same without the leaf masks), "worklist" (kiln_forest_build declines, so kiln.cpu uses
 *  kiln_trees_* for every forest) or "none" (kiln.cpu uses its Swift walk); -1 for another name. Process-wide, read
 *  when a forest is compiled; for tests and measurements. */
int kiln_trees_select_variant(const char *name);

/** The walk chosen: "leafmask", "lockstep", "worklist" or "none". */
const char *kiln_trees_variant(void);

/** 1 unless the variant "none" was chosen. */
int kiln_trees_enabled(void);

/** A node of the lockstep layout: the feature key to read (a feature, or feature + F for its negated copy) and
 *  the key at or above which the walk takes the second child. */
typedef struct kiln_forest_node {
    uint32_t feature;
    uint32_t key;
} kiln_forest_node;

/** A tree of the lockstep layout: its root node, its longest and shortest root-to-leaf paths in splits, and
 *  whether walks test for the end (unbalanced trees) rather than always taking `depth` steps. */
typedef struct kiln_forest_tree {
    int32_t root;
    uint16_t depth;
    uint16_t shallow;
    int32_t check;
} kiln_forest_tree;

/** A forest in the lockstep layout (trees.c explains it). */
typedef struct kiln_forest kiln_forest;

/** Lays out a forest given as kiln_tree_node splits (`roots[t]`: a split index or ~leaf) for the lockstep walk
 *  (and, under the variant "leafmask", the leaf-mask walk where it applies: kiln_forest_mask_words).
 *  `leaf_values[leaf]` is each leaf's one value (NULL when leaves carry several; then use the _leaves_ walks).
 *  NULL when a split has missing kind KILN_TREE_MISSING_NAN_OR_ZERO or a NaN threshold, when the trees share
 *  nodes or are malformed, when memory runs out, or when the variant is "worklist" or "none". */
kiln_forest *kiln_forest_build(const kiln_tree_node *nodes, size_t splits, const int32_t *roots, size_t trees,
                               const float *leaf_values, size_t leaves);

/** Frees a forest (NULL is allowed). */
void kiln_forest_free(kiln_forest *forest);

/** F: the features a row's keys cover (the highest feature read, plus 1); a row takes 2F keys. */
size_t kiln_forest_features(const kiln_forest *forest);

/** The 32-bit words per row of the leaf masks kiln_forest_sum_rows walks the forest with (1: every tree has at most
 *  32 leaves; 2: at most 64), or 0 when it walks the forest in lockstep. The leaf masks give the same sums. */
int kiln_forest_mask_words(const kiln_forest *forest);

/** 1 when kiln_forest_sum_row and kiln_forest_leaves_row walk the forest chained (eight lanes, each going on to
 *  its next tree at once: forests of mostly unbalanced trees, under the variant "leafmask"), 0 when in lockstep
 *  (eight trees at a time). Both give the same results. */
int kiln_forest_chained(const kiln_forest *forest);

/** Writes the 2F keys of each of `rows` rows of x (`stride` floats apart, at least F features each) to keys. */
void kiln_forest_expand(const kiln_forest *forest, const float *x, size_t stride, size_t rows, uint32_t *keys);

/** sums[r] += the value of the leaf row r reaches, for every tree in order (single-value leaves only). */
void kiln_forest_sum_rows(const kiln_forest *forest, const uint32_t *keys, size_t rows, double *sums);

/** leaves[r] = the leaf number row r reaches in tree `tree`. */
void kiln_forest_leaves_rows(const kiln_forest *forest, size_t tree, const uint32_t *keys, size_t rows,
                             int32_t *leaves);

/** For one row: *sum += the value of the leaf it reaches in every tree, in tree order (the same additions in the
 *  same order as kiln_forest_sum_rows, so the same bits). */
void kiln_forest_sum_row(const kiln_forest *forest, const uint32_t *keys, double *sum);

/** For one row: leaves[t] = the leaf number it reaches in tree t, for every tree. */
void kiln_forest_leaves_row(const kiln_forest *forest, const uint32_t *keys, int32_t *leaves);

/* ---- Convolutions with a PReLU epilogue ---------------------------------------------------- */

/*
 * The blocked, Winograd and depthwise convolutions with a per-channel PReLU in the epilogue: after the
 * bias and the residual, every negative output v of channel c becomes v · slope[c] (slope holds
 * out_channels floats; LeakyRelu is a slope that repeats alpha), then the epilogue's activation runs
 * (e.g. CLIP with lo = c for PReLU followed by Max(·, c)). slope NULL is the plain kernel. Otherwise as
 * kiln_conv2d_blocked, kiln_conv2d_winograd and kiln_depthwise_conv2d_blocked.
 */
void kiln_conv2d_blocked_prelu(const kiln_conv2d_params *p, int blocked_input, const float *source,
                               const float *packed_weight, float *output, size_t w0, size_t w1,
                               const kiln_epilogue *epilogue, const float *slope);
void kiln_conv2d_winograd_prelu(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                float *output, size_t w0, size_t w1, const kiln_epilogue *epilogue,
                                const float *slope);
void kiln_depthwise_conv2d_blocked_prelu(const kiln_conv2d_params *p, const float *input, const float *packed_weight,
                                         float *output, size_t cb0, size_t cb1, const kiln_epilogue *epilogue,
                                         const float *slope);

/** PReLU over NCHW planes: y[c][i] = x < 0 ? x · slope[c] : x for `channels` planes of hw floats (y may be x). */
void kiln_channel_prelu(size_t channels, size_t hw, const float *slope, const float *x, float *y);

/** y = x · scale[c] per channel of one blocked image of `channels` × hw pixels (Mul by an [N, C, 1, 1] tensor,
 *  e.g. squeeze-and-excitation); channel blocks [cb0, cb1) only (ranges may run concurrently; y may be x).
 *  Padding lanes of y are written as zero. */
void kiln_blocked_channel_scale(size_t channels, size_t hw, const float *scale, const float *x, float *y, size_t cb0,
                                size_t cb1);

#ifdef __cplusplus
}
#endif

#endif /* KILN_KERNELS_H */
