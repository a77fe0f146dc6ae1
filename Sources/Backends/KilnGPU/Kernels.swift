// kiln.gpu's kernels: OpenCL C templates. Each launch builds its template with a prelude of `#define`s
// (shape arrays, the elementwise expression) and build options of `-D` scalars (sizes, the tile size),
// so that every loop bound is a compile-time constant. Identical texts are built once per device.
// Every kernel writes its result through ACT(v): the identity, unless elementwise ops that follow the node
// were fused into it (`Lowering.fuseActivations`), which then need no launch and no buffer of their own.
// Buffers hold elements of type T, read with LD(p, i) and written with ST(p, i, v) (`Kernels.storage`):
// float, or half when built with -DKILN_FP16=1 (`precision=fp16`); arithmetic is float either way.

enum Kernels {
    /// The storage prelude every program starts with: T, LD and ST for float or half buffers. vload_half and
    /// vstore_half are core OpenCL C, so half storage needs no extension.
    static let storage = """
    #if KILN_FP16
    #define T half
    #define LD(p, i) vload_half((i), (p))
    #define ST(p, i, v) vstore_half_rte((v), (i), (p))
    #else
    #define T float
    #define LD(p, i) ((p)[(i)])
    #define ST(p, i, v) ((p)[(i)] = (v))
    #endif

    """

    /// y[i] = OP(x[i]) for i < COUNT.
    static let unary = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void unary(__global const T* x, __global T* y, const float alpha) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        const float v = LD(x, i);
        ST(y, i, ACT(OP(v)));
    }
    """

    /// y[i] = OP(a[ia], b[ib]) with numpy broadcasting: ASTR/BSTR are each input's strides along the
    /// output's dims ODIM (0 where the input is broadcast).
    static let binary = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __constant int ODIM[RANK] = ODIM_INIT;
    __constant int ASTR[RANK] = ASTR_INIT;
    __constant int BSTR[RANK] = BSTR_INIT;
    __kernel void binary(__global const T* a, __global const T* b, __global T* y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        int r = i, ia = 0, ib = 0;
        for (int d = RANK - 1; d >= 0; --d) {
            const int c = r % ODIM[d];
            r /= ODIM[d];
            ia += c * ASTR[d];
            ib += c * BSTR[d];
        }
        const float x = LD(a, ia), z = LD(b, ib);
        ST(y, i, ACT(OP(x, z)));
    }
    """

    /// Tiled SGEMM: Y[batch] (M×N) = alpha · A·B + beta · C. A(m,k) is at a[m*SAM + k*SAK], B(k,n) at
    /// b[k*SBK + n*SBN] (so transposes are strides); ABS/BBS are the batch strides (0: shared). C(m,n) at
    /// c[m*CSM + n*CSN] when HAS_C. One TS×TS work-group computes one tile, staging A and B tiles in local memory.
    static let gemm = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void gemm(__global const T* A, __global const T* B, __global const T* C, __global T* Y,
                       const float alpha, const float beta) {
        const int tn = get_local_id(0), tm = get_local_id(1);
        const int n = get_group_id(0) * TS + tn, m = get_group_id(1) * TS + tm;
        const int batch = get_global_id(2);
        const int ao = batch * ABS, bo = batch * BBS;
        __local float As[TS][TS];
        __local float Bs[TS][TS + 1];
        float acc = 0.0f;
        for (int k0 = 0; k0 < K; k0 += TS) {
            const int ka = k0 + tn, kb = k0 + tm;
            As[tm][tn] = (m < M && ka < K) ? LD(A, ao + m * SAM + ka * SAK) : 0.0f;
            Bs[tm][tn] = (kb < K && n < N) ? LD(B, bo + kb * SBK + n * SBN) : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int kk = 0; kk < TS; ++kk) acc += As[tm][kk] * Bs[kk][tn];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (m < M && n < N) {
            float v = alpha * acc;
    #if HAS_C
            v += beta * LD(C, m * CSM + n * CSN);
    #endif
            ST(Y, batch * M * N + m * N + n, ACT(v));
        }
    }
    """

    /// 2-D convolution as an implicit GEMM per (image, group): Y(m, p) = Σ_k W(m, k) · X̂(k, p) + bias, where
    /// k runs over (input channel of the group, kh, kw), p over output pixels, and X̂ (im2col) is read
    /// from X on the fly with strides, pads and dilations (zero outside the image). Tiles as in gemm.
    static let conv = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void conv(__global const T* X, __global const T* Wt, __global const T* Bias, __global T* Y) {
        const int tp = get_local_id(0), tm = get_local_id(1);
        const int p = get_group_id(0) * TS + tp, m = get_group_id(1) * TS + tm;
        const int z = get_global_id(2), img = z / G, g = z % G;
        const int xo = (img * C + g * CG) * H * W, wo = g * MG * KK;
        __local float As[TS][TS];
        __local float Bs[TS][TS + 1];
        float acc = 0.0f;
        const int oh = p / OW, ow = p % OW;
        for (int k0 = 0; k0 < KK; k0 += TS) {
            const int ka = k0 + tp, kb = k0 + tm;
            As[tm][tp] = (m < MG && ka < KK) ? LD(Wt, wo + m * KK + ka) : 0.0f;
            float v = 0.0f;
            if (kb < KK && p < P) {
                const int c = kb / (KH * KW), r = kb % (KH * KW);
                const int ih = oh * SH - PT + (r / KW) * DH, iw = ow * SW - PL + (r % KW) * DW;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) v = LD(X, xo + (c * H + ih) * W + iw);
            }
            Bs[tm][tp] = v;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (int kk = 0; kk < TS; ++kk) acc += As[tm][kk] * Bs[kk][tp];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
        if (m < MG && p < P) {
            float v = acc;
    #if HAS_BIAS
            v += LD(Bias, g * MG + m);
    #endif
            ST(Y, (img * M + g * MG + m) * P + p, ACT(v));
        }
    }
    """

    /// Max or average pooling over a KH×KW window (strides, pads, dilations), one work-item per output;
    /// padding never wins a max; an average divides by the window's cells inside the image, or inside the
    /// padded image when COUNT_PAD.
    static let pool = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void pool(__global const T* X, __global T* Y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        const int ow = i % OW, t = i / OW, oh = t % OH, plane = t / OH;
        const int xo = plane * H * W;
    #if IS_MAX
        float acc = -INFINITY;
    #else
        float acc = 0.0f;
    #endif
        int cells = 0;
        for (int kh = 0; kh < KH; ++kh) {
            const int ih = oh * SH - PT + kh * DH;
            for (int kw = 0; kw < KW; ++kw) {
                const int iw = ow * SW - PL + kw * DW;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W) {
    #if IS_MAX
                    acc = fmax(acc, LD(X, xo + ih * W + iw));
    #else
                    acc += LD(X, xo + ih * W + iw);
    #endif
                    cells += 1;
                } else if (COUNT_PAD && ih >= -PT && ih < H + PB && iw >= -PL && iw < W + PR) {
                    cells += 1;
                }
            }
        }
    #if IS_MAX
        ST(Y, i, ACT(acc));
    #else
        ST(Y, i, ACT(cells > 0 ? acc / (float)cells : 0.0f));
    #endif
    }
    """

    /// Global average or max pooling: one work-item per (image, channel) plane of S elements.
    static let globalPool = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void global_pool(__global const T* X, __global T* Y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        const int xo = i * S;
    #if IS_MAX
        float acc = -INFINITY;
        for (int j = 0; j < S; ++j) acc = fmax(acc, LD(X, xo + j));
        ST(Y, i, ACT(acc));
    #else
        float acc = 0.0f;
        for (int j = 0; j < S; ++j) acc += LD(X, xo + j);
        ST(Y, i, ACT(acc / (float)S));
    #endif
    }
    """

    /// Softmax along one axis of extent A: one work-item per (outer, inner) line, max-subtracted.
    static let softmax = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void softmax(__global const T* X, __global T* Y) {
        const int i = get_global_id(0);
        if (i >= OUTER * INNER) return;
        const int base = (i / INNER) * A * INNER + i % INNER;
        float mx = -INFINITY;
        for (int j = 0; j < A; ++j) mx = fmax(mx, LD(X, base + j * INNER));
        float sum = 0.0f;
        for (int j = 0; j < A; ++j) sum += exp(LD(X, base + j * INNER) - mx);
    #if IS_LOG
        const float ls = log(sum);
        for (int j = 0; j < A; ++j) ST(Y, base + j * INNER, ACT((LD(X, base + j * INNER) - mx) - ls));
    #else
        for (int j = 0; j < A; ++j) ST(Y, base + j * INNER, ACT(exp(LD(X, base + j * INNER) - mx) / sum));
    #endif
    }
    """

    /// Transpose (and Slice, Expand): output element i reads the input at BASE + Σ coordinate·ISTR over the
    /// output's dims ODIM (strides may be 0 for broadcast or negative for reversed slices).
    static let transpose = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    #ifndef BASE
    #define BASE 0
    #endif
    __constant int ODIM[RANK] = ODIM_INIT;
    __constant int ISTR[RANK] = ISTR_INIT;
    __kernel void transpose(__global const T* x, __global T* y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        int r = i, src = BASE;
        for (int d = RANK - 1; d >= 0; --d) {
            src += (r % ODIM[d]) * ISTR[d];
            r /= ODIM[d];
        }
        ST(y, i, ACT(LD(x, src)));
    }
    """

    /// Inference batch normalization: channel c = (i / INNER) % CH.
    static let batchNorm = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void batch_norm(__global const T* X, __global const T* S, __global const T* B, __global const T* Mean, __global const T* Var,
                             __global T* Y, const float eps) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        const int c = (i / INNER) % CH;
        const float v = (LD(X, i) - LD(Mean, c)) / sqrt(LD(Var, c) + eps) * LD(S, c) + LD(B, c);
        ST(Y, i, ACT(v));
    }
    """

    /// Layer normalization of ROWS rows of WIDTH: mean and variance in float, then scale (and bias); the
    /// row's mean and 1/σ to MeanOut and InvOut when HAS_MEAN and HAS_INV (else those are unused aliases of Y).
    static let layerNorm = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void layer_norm(__global const T* X, __global const T* S, __global const T* B, __global T* MeanOut, __global T* InvOut,
                             __global T* Y, const float eps) {
        const int r = get_global_id(0);
        if (r >= ROWS) return;
        const int o = r * WIDTH;
        float mean = 0.0f;
        for (int j = 0; j < WIDTH; ++j) mean += LD(X, o + j);
        mean /= (float)WIDTH;
        float var = 0.0f;
        for (int j = 0; j < WIDTH; ++j) { const float d = LD(X, o + j) - mean; var += d * d; }
        const float inv = 1.0f / sqrt(var / (float)WIDTH + eps);
    #if HAS_MEAN
        ST(MeanOut, r, mean);
    #endif
    #if HAS_INV
        ST(InvOut, r, inv);
    #endif
        for (int j = 0; j < WIDTH; ++j) {
            float v = (LD(X, o + j) - mean) * inv * LD(S, j);
    #if HAS_BIAS
            v += LD(B, j);
    #endif
            ST(Y, o + j, ACT(v));
        }
    }
    """

    /// A reduction: output element i starts at Σ coordinate·OSTR over the kept dims ODIM, and folds the RCOUNT
    /// elements at Σ coordinate·RSTR over the reduced dims RDIM with ACC, from INIT, finished by FIN.
    static let reduce = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __constant int ODIM[ORANK] = ODIM_INIT;
    __constant int OSTR[ORANK] = OSTR_INIT;
    __constant int RDIM[RRANK] = RDIM_INIT;
    __constant int RSTR[RRANK] = RSTR_INIT;
    __kernel void reduce(__global const T* X, __global T* Y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        int r = i, base = 0;
        for (int d = ORANK - 1; d >= 0; --d) { base += (r % ODIM[d]) * OSTR[d]; r /= ODIM[d]; }
        float a = INIT;
        for (int j = 0; j < RCOUNT; ++j) {
            int q = j, off = 0;
            for (int d = RRANK - 1; d >= 0; --d) { off += (q % RDIM[d]) * RSTR[d]; q /= RDIM[d]; }
            const float v = LD(X, base + off);
            a = ACC(a, v);
        }
        ST(Y, i, ACT(FIN(a)));
    }
    """

    /// ConvTranspose: output (n, m, oh, ow) sums X(n, c, ih, iw) · W(c, m mod MG, kh, kw) over the input
    /// channels c of m's group and the taps with ih·SH = oh + PT − kh·DH (and likewise for w), plus bias.
    static let convTranspose = """
    #ifndef ACT
    #define ACT(v) (v)
    #endif
    __kernel void conv_transpose(__global const T* X, __global const T* Wt, __global const T* Bias, __global T* Y) {
        const int i = get_global_id(0);
        if (i >= COUNT) return;
        const int ow = i % OW, t = i / OW, oh = t % OH, t2 = t / OH, m = t2 % M, n = t2 / M;
        const int g = m / MG, mg = m % MG;
        float acc = 0.0f;
        for (int kh = 0; kh < KH; ++kh) {
            const int th = oh + PT - kh * DH;
            if (th < 0 || th % SH != 0 || th / SH >= H) continue;
            const int ih = th / SH;
            for (int kw = 0; kw < KW; ++kw) {
                const int tw = ow + PL - kw * DW;
                if (tw < 0 || tw % SW != 0 || tw / SW >= W) continue;
                const int iw = tw / SW;
                for (int c = 0; c < CG; ++c) {
                    const int ci = g * CG + c;
                    acc += LD(X, ((n * C + ci) * H + ih) * W + iw) * LD(Wt, ((ci * MG + mg) * KH + kh) * KW + kw);
                }
            }
        }
    #if HAS_BIAS
        acc += LD(Bias, m);
    #endif
        ST(Y, i, ACT(acc));
    }
    """
}
