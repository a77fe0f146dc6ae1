/*
 * hvx_exact.c — the exactness harness of kiln.dsp.
 *
 * Built twice by run-hvx-exact: on the host against the C functional model of hvx.h, and with
 * clang --target=hexagon ... -mhvx -mhvx-length=128b (freestanding) against the real instructions, run
 * under qemu-hexagon. Both builds run every modelled instruction and every kernel on the same
 * fixed-seed random inputs (with saturation edges mixed in) and print one line per case: the case name
 * and a hex dump (instructions) or a hash and a head of the output (kernels). The script compares the two
 * outputs byte for byte. Kernels are also checked in both builds against plain scalar code of the
 * documented arithmetic (kernels_ref.h); a disagreement prints "MISMATCH" and fails the run.
 */
#include "exact_io.h"
#include "../hvx.h"
#include "../kernels.h"
#include "kernels_ref.h"

/* Iterations per instruction. */
#define INSN_CASES 48

/* A vector's bytes. */
static void vec_bytes(HVX_Vector v, uint8_t out[128]) { hvx_store(out, v); }

/* Random bytes with edge values of lanes of `width` bytes (1, 2 or 4) mixed in. */
static HVX_Vector random_vector(int width) {
    uint8_t bytes[128];
    for (int i = 0; i < 128; i++) bytes[i] = (uint8_t)rnd32();
    int lanes = width == 1 ? 128 : width == 2 ? 64 : 32;
    for (int lane = 0; lane < lanes; lane++) {
        uint32_t pick = rnd32() & 15;
        if (pick >= 6) continue;
        uint32_t value;
        uint32_t top = width == 1 ? 0x80u : width == 2 ? 0x8000u : 0x80000000u;
        switch (pick) {
        case 0: value = top; break;             /* MIN */
        case 1: value = top - 1; break;         /* MAX */
        case 2: value = 0; break;
        case 3: value = 0xffffffffu; break;     /* -1 */
        case 4: value = 1; break;
        default: value = top + 1; break;        /* MIN + 1 */
        }
        for (int k = 0; k < width; k++) bytes[lane * width + k] = (uint8_t)(value >> (8 * k));
    }
    return hvx_load(bytes);
}

/* Prints "name index: hex". */
static void print_vector(const char *name, int index, HVX_Vector v) {
    uint8_t bytes[128];
    vec_bytes(v, bytes);
    out_str(name);
    out_str(" ");
    out_i64(index);
    out_str(": ");
    out_hex(bytes, 128);
    out_str("\n");
}

/* Runs every modelled instruction INSN_CASES times. */
static void test_instructions(void) {
    for (int i = 0; i < INSN_CASES; i++) {
        HVX_Vector x = random_vector(4), bu = random_vector(1), bv = random_vector(1);
        print_vector("vrmpybv_acc", i, hvx_vrmpybv_acc(x, bu, bv));
        print_vector("vrmpybusv_acc", i, hvx_vrmpybusv_acc(x, bu, bv));
        print_vector("vrmpyubv_acc", i, hvx_vrmpyubv_acc(x, bu, bv));
        /* large accumulations: 64 rounds of extreme bytes */
        HVX_Vector acc = x, mn = hvx_vsplatb(-128), mx = hvx_vsplatb(127);
        for (int k = 0; k < 64; k++) acc = hvx_vrmpybv_acc(acc, (k & 1) ? mn : bu, (k & 2) ? mn : mx);
        print_vector("vrmpybv_acc.long", i, acc);

        HVX_Vector hu = random_vector(2), hv = random_vector(2);
        print_vector("vmpyhvsrs", i, hvx_vmpyhvsrs(hu, hv));
        print_vector("vmpyhvsrs.min", i, hvx_vmpyhvsrs(hvx_vsplath(-32768), hv));
        print_vector("vaddhsat", i, hvx_vaddhsat(hu, hv));
        print_vector("vsubhsat", i, hvx_vsubhsat(hu, hv));

        HVX_Vector wu = random_vector(4), wv = random_vector(4);
        print_vector("vaddwsat", i, hvx_vaddwsat(wu, wv));
        print_vector("vsubwsat", i, hvx_vsubwsat(wu, wv));
        print_vector("vmpyewuh", i, hvx_vmpyewuh(wu, wv));
        print_vector("vmpyowh_rnd_sacc", i, hvx_vmpyowh_rnd_sacc(x, wu, wv));
        print_vector("q31mul", i, hvx_vmpyowh_rnd_sacc(hvx_vmpyewuh(wu, wv), wu, wv));
        int32_t shift = (int32_t)(rnd32() & 63);
        print_vector("vasrw", i, hvx_vasrw(wu, shift));
        print_vector("vaslw", i, hvx_vaslw(wu, shift));
        print_vector("vasrwhrndsat", i, hvx_vasrwhrndsat(wu, wv, shift));
        print_vector("vasrhbsat", i, hvx_vasrhbsat(hu, hv, shift));
        print_vector("vpackwh_sat", i, hvx_vpackwh_sat(wu, wv));
        print_vector("vpackhb_sat", i, hvx_vpackhb_sat(hu, hv));
        print_vector("vpackhub_sat", i, hvx_vpackhub_sat(hu, hv));
        HVX_VectorPair p = hvx_vunpackb(bu);
        print_vector("vunpackb.lo", i, hvx_lo(p));
        print_vector("vunpackb.hi", i, hvx_hi(p));
        p = hvx_vunpackub(bu);
        print_vector("vunpackub.lo", i, hvx_lo(p));
        print_vector("vunpackub.hi", i, hvx_hi(p));
        p = hvx_vunpackh(hu);
        print_vector("vunpackh.lo", i, hvx_lo(p));
        print_vector("vunpackh.hi", i, hvx_hi(p));
        print_vector("vmaxb", i, hvx_vmaxb(bu, bv));
        print_vector("vminb", i, hvx_vminb(bu, bv));
        print_vector("vmaxub", i, hvx_vmaxub(bu, bv));
        print_vector("vminub", i, hvx_vminub(bu, bv));
        int32_t r = (int32_t)rnd32();
        print_vector("vsplatb", i, hvx_vsplatb(r));
        print_vector("vsplath", i, hvx_vsplath(r));
        print_vector("vsplatw", i, hvx_vsplatw(r));
        int32_t seg = (int32_t)(rnd32() & 0xff); /* all 3 segment bits and the odd-half bit, plus high garbage */
        print_vector("vlut32", i, hvx_vlut32(bu, bv, seg));
        print_vector("vlut32_or", i, hvx_vlut32_or(hvx_vlut32(bu, bv, seg ^ 1), bu, bv, seg));
        print_vector("vsubb", i, hvx_vsubb(bu, bv));
    }
}

/* The kernel cases (below). */
void exact_kernels(int *failures);

/* Runs everything; returns the process status (1 when a kernel disagreed with its scalar reference). */
static int exact_main(void) {
    out_str(HVX_NATIVE ? "# hvx_exact: Hexagon HVX instructions\n" : "# hvx_exact: C functional model\n");
    test_instructions();
    int failures = 0;
    exact_kernels(&failures);
    out_str("# failures ");
    out_i64(failures);
    out_str("\n");
    exact_flush();
    return failures ? 1 : 0;
}

#if defined(__hexagon__)
/* The freestanding entry: no libc, so no main. */
void _start(void) { exact_exit(exact_main()); }
#else
/* The host entry. */
int main(void) { return exact_main(); }
#endif

/* ---- kernels -------------------------------------------------------------------------------- */

static uint8_t buf_a[65536], buf_b[65536], buf_c[65536], buf_d[65536], packed[262144];
static int32_t buf_i32[16384], colsum[16384], bias_r[1024], bias_c[1024];
static dsp_requant row_q[1024];

/* Random bytes, a quarter of them the extremes 0x80, 0x7f, 0x00, 0xff. */
static void random_bytes(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd32();
        p[i] = (r & 3) == 0 ? (uint8_t)"\x80\x7f\x00\xff"[(r >> 2) & 3] : (uint8_t)(r >> 8);
    }
}

/* A random requantization: multiplier in [2^30, 2^31) (sometimes 0), shift in [lo, hi], zero point in
 * the byte range of the output. */
static dsp_requant random_requant(int32_t lo, int32_t hi, int out_unsigned) {
    dsp_requant q;
    q.multiplier = (rnd32() & 31) == 0 ? 0 : (int32_t)(0x40000000u | (rnd32() & 0x3fffffffu));
    q.shift = (int32_t)rnd_range(lo, hi);
    q.zero_point = out_unsigned ? (int32_t)rnd_range(0, 255) : (int32_t)rnd_range(-128, 127);
    return q;
}

/* Prints a kernel case and compares with the scalar reference. */
static void report(const char *name, int index, const uint8_t *got, const uint8_t *want, size_t n, int *failures) {
    int same = 1;
    for (size_t i = 0; i < n; i++) if (got[i] != want[i]) { same = 0; break; }
    out_str(name); out_str(" "); out_i64(index);
    out_str(": bytes "); out_u64(n);
    out_str(" fnv "); out_hex(&(uint64_t){exact_hash(got, n)}, 8);
    out_str(" head "); out_hex(got, n < 48 ? n : 48);
    out_str(same ? " ref ok\n" : " MISMATCH with the scalar reference\n");
    if (!same) (*failures)++;
}

/* Runs every kernel on random cases and compares each with its scalar reference. */
void exact_kernels(int *failures) {
    /* requantization of raw int32 accumulators, extremes included */
    for (int i = 0; i < 40; i++) {
        size_t n = (size_t)rnd_range(1, 700);
        for (size_t k = 0; k < n; k++) {
            uint32_t r = rnd32();
            buf_i32[k] = (r & 7) == 0 ? (int32_t)(0x80000000u + (r >> 3 & 1) * 0xffffffffu) : (int32_t)(rnd32() >> (r & 31));
            if (r & 0x100) buf_i32[k] = -buf_i32[k] - (int32_t)(r >> 30);
        }
        int u = (int)(rnd32() & 1);
        dsp_requant q = random_requant(0, 31, u);
        dsp_requant_i32(buf_i32, n, &q, u, buf_c);
        for (size_t k = 0; k < n; k++) buf_d[k] = (uint8_t)dsp_requant_scalar(buf_i32[k], &q, u);
        report("requant", i, buf_c, buf_d, n, failures);
    }
    /* matrix products: every signedness, zero points, biases, tails of N and K */
    for (int i = 0; i < 40; i++) {
        size_t M = (size_t)rnd_range(1, 6), N = (size_t)rnd_range(1, 300), K = (size_t)rnd_range(1, 200);
        int au = (int)(rnd32() & 1), bu = (int)(rnd32() & 1), ou = (int)(rnd32() & 1);
        random_bytes(buf_a, M * K);
        random_bytes(buf_b, K * N);
        for (size_t k = 0; k < M; k++) bias_r[k] = (int32_t)rnd_range(-100000, 100000);
        for (size_t k = 0; k < N; k++) bias_c[k] = (int32_t)rnd_range(-100000, 100000);
        dsp_gemm_pack_b(buf_b, K, N, N, bu, packed, colsum);
        dsp_gemm g = {
            .M = M, .N = N, .K = K, .A = buf_a, .lda = K, .a_unsigned = au,
            .za = (i & 3) == 0 ? 0 : (int32_t)(au ? rnd_range(0, 255) : rnd_range(-128, 127)),
            .B_packed = packed, .colsum = colsum, .b_unsigned = bu,
            .zb = (i & 1) ? 0 : (int32_t)(bu ? rnd_range(0, 255) : rnd_range(-128, 127)),
            .bias_row = (i & 4) ? bias_r : NULL, .bias_col = (i & 8) ? bias_c : NULL,
            .requant = random_requant(4, 16, ou), .out_unsigned = ou, .C = buf_c, .ldc = N,
        };
        if (i % 3 == 0) { /* per-row (per-channel) requantization */
            for (size_t k = 0; k < M; k++) row_q[k] = random_requant(4, 16, ou);
            g.row_requant = row_q;
        }
        dsp_qgemm(&g);
        ref_gemm(&g, buf_b, N, buf_d);
        report(g.row_requant ? "qgemm.per_row" : "qgemm", i, buf_c, buf_d, M * N, failures);
    }
    /* convolutions: plain, grouped, depthwise; strides, pads, dilations */
    for (int i = 0; i < 40; i++) {
        size_t C = (size_t)rnd_range(1, 8), H = (size_t)rnd_range(1, 14), W = (size_t)rnd_range(1, 14);
        size_t kind = rnd32() % 3, group = kind == 0 ? 1 : kind == 1 ? C : ((C & 1) ? 1 : 2);
        size_t O = group * (size_t)rnd_range(1, kind == 1 ? 2 : 4);
        size_t KH = (size_t)rnd_range(1, 3), KW = (size_t)rnd_range(1, 3), sh = (size_t)rnd_range(1, 2), sw = (size_t)rnd_range(1, 2);
        size_t dh = (size_t)rnd_range(1, 2), dw = (size_t)rnd_range(1, 2), pt = (size_t)rnd_range(0, 1), pl = (size_t)rnd_range(0, 1);
        size_t eh = (KH - 1) * dh + 1, ew = (KW - 1) * dw + 1;
        if (H + 2 * pt < eh || W + 2 * pl < ew) { H += eh; W += ew; }
        size_t OH = (H + 2 * pt - eh) / sh + 1, OW = (W + 2 * pl - ew) / sw + 1;
        int xu = (int)(rnd32() & 1), wu = (int)((rnd32() & 7) == 0), ou = (int)(rnd32() & 1);
        random_bytes(buf_a, C * H * W);
        random_bytes(buf_b, O * (C / group) * KH * KW);
        for (size_t k = 0; k < O; k++) bias_r[k] = (int32_t)rnd_range(-20000, 20000);
        dsp_conv c = {
            .C = C, .H = H, .W = W, .O = O, .group = group, .KH = KH, .KW = KW, .stride_h = sh, .stride_w = sw,
            .pad_top = pt, .pad_left = pl, .dil_h = dh, .dil_w = dw, .OH = OH, .OW = OW,
            .X = buf_a, .x_unsigned = xu, .zx = (int32_t)(xu ? rnd_range(0, 255) : rnd_range(-128, 127)),
            .Wt = buf_b, .w_unsigned = wu, .zw = (i & 1) ? 0 : (int32_t)(wu ? rnd_range(0, 255) : rnd_range(-128, 127)),
            .bias = (i & 2) ? bias_r : NULL, .requant = random_requant(3, 12, ou), .out_unsigned = ou,
            .Y = buf_c, .scratch = packed, .scratch_colsum = colsum,
        };
        if (i % 3 == 0) { /* per-output-channel requantization */
            for (size_t k = 0; k < O; k++) row_q[k] = random_requant(3, 12, ou);
            c.channel_requant = row_q;
        }
        dsp_qconv(&c);
        ref_conv(&c, buf_d);
        report(group == 1 ? (c.channel_requant ? "qconv.per_channel" : "qconv") : group == C ? "qconv.depthwise" : "qconv.grouped",
               i, buf_c, buf_d, O * OH * OW, failures);
    }
    /* quantized add with realistic scale ratios */
    for (int i = 0; i < 30; i++) {
        size_t n = (size_t)rnd_range(1, 600);
        int u = (int)(rnd32() & 1);
        random_bytes(buf_a, n);
        random_bytes(buf_b, n);
        dsp_requant qa = random_requant(0, 2, u), qb = random_requant(0, 2, u), qo = random_requant(17, 20, u);
        int32_t za = (int32_t)(u ? rnd_range(0, 255) : rnd_range(-128, 127)), zb = (int32_t)(u ? rnd_range(0, 255) : rnd_range(-128, 127));
        dsp_qadd(buf_a, za, buf_b, zb, n, u, &qa, &qb, &qo, buf_c);
        ref_qadd(buf_a, za, buf_b, zb, n, u, &qa, &qb, &qo, buf_d);
        report("qadd", i, buf_c, buf_d, n, failures);
    }
    /* clip / relu */
    for (int i = 0; i < 20; i++) {
        size_t n = (size_t)rnd_range(1, 600);
        int u = (int)(rnd32() & 1);
        random_bytes(buf_a, n);
        int32_t lo = (int32_t)(u ? rnd_range(0, 128) : rnd_range(-128, 0)), hi = (int32_t)(u ? rnd_range(128, 255) : rnd_range(0, 127));
        dsp_clip(buf_a, n, lo, hi, u, buf_c);
        for (size_t k = 0; k < n; k++) {
            int32_t v = ref_byte(buf_a[k], u);
            buf_d[k] = ref_clamp8(v < lo ? lo : v > hi ? hi : v, u);
        }
        report("clip", i, buf_c, buf_d, n, failures);
    }
    /* pooling */
    for (int i = 0; i < 40; i++) {
        dsp_pool p;
        p.C = (size_t)rnd_range(1, 4); p.H = (size_t)rnd_range(2, 20); p.W = (size_t)rnd_range(2, 150);
        p.KH = (size_t)rnd_range(1, 3); p.KW = (size_t)rnd_range(1, 3);
        p.stride_h = (size_t)rnd_range(1, 2); p.stride_w = (size_t)rnd_range(1, 2);
        p.pad_top = (size_t)rnd_range(0, p.KH - 1); p.pad_left = (size_t)rnd_range(0, p.KW - 1);
        if (p.H < p.KH) p.H = p.KH;
        if (p.W < p.KW) p.W = p.KW;
        p.OH = (p.H + 2 * p.pad_top - p.KH) / p.stride_h + 1; p.OW = (p.W + 2 * p.pad_left - p.KW) / p.stride_w + 1;
        p.is_unsigned = (int)(rnd32() & 1); p.count_include_pad = (int)(rnd32() & 1);
        p.X = buf_a; p.Y = buf_c;
        random_bytes(buf_a, p.C * p.H * p.W);
        int avg = i & 1;
        if (avg) { if (dsp_avgpool(&p) != 0) { out_str("avgpool refused a window\n"); (*failures)++; continue; } }
        else dsp_maxpool(&p);
        ref_pool(&p, avg, buf_d);
        report(avg ? "avgpool" : "maxpool", i, buf_c, buf_d, p.C * p.OH * p.OW, failures);
    }
    /* lookup tables */
    for (int i = 0; i < 24; i++) {
        uint8_t table[256], vlut[256];
        random_bytes(table, 256);
        size_t n = (size_t)rnd_range(1, 600);
        random_bytes(buf_a, n);
        if (i == 0) for (size_t k = 0; k < n; k++) buf_a[k] = (uint8_t)k; /* every index at least once */
        dsp_lut_layout(table, vlut);
        dsp_lut(buf_a, n, vlut, buf_c);
        for (size_t k = 0; k < n; k++) buf_d[k] = table[buf_a[k]];
        report("lut", i, buf_c, buf_d, n, failures);
    }
    /* softmax: rows of 1..700 bytes, either signedness, tables of a decreasing 16-bit curve (random steps), output
     * scales from 2^-14 to 2^30 as Q31 multiplier and exponent, a row of all-equal values and one of the extremes */
    for (int i = 0; i < 24; i++) {
        uint8_t hi[256], lo[256], vhi[256], vlo[256];
        uint32_t e = 65535;
        for (int d = 0; d < 256; d++) {
            hi[d] = (uint8_t)(e >> 8); lo[d] = (uint8_t)e;
            uint32_t step = rnd32() % (1u + (e >> (2 + (i & 3))));
            e -= step;
        }
        dsp_lut_layout(hi, vhi);
        dsp_lut_layout(lo, vlo);
        dsp_softmax s = {
            .rows = (size_t)rnd_range(1, 3), .n = (size_t)rnd_range(1, i < 4 ? 2 : 700), .X = buf_a, .x_unsigned = (int)(rnd32() & 1),
            .exp_hi = vhi, .exp_lo = vlo, .out_multiplier = (int32_t)(0x40000000u | (rnd32() & 0x3fffffffu)),
            .out_exponent = (int32_t)rnd_range(i & 1 ? -14 : 6, i & 1 ? 30 : 10), .out_unsigned = (int)(rnd32() & 1), .Y = buf_c, .scratch = buf_i32,
        };
        s.zero_point = s.out_unsigned ? (int32_t)rnd_range(0, 10) : (int32_t)rnd_range(-128, -118);
        random_bytes(buf_a, s.rows * s.n);
        if (i == 4) for (size_t k = 0; k < s.rows * s.n; k++) buf_a[k] = 0x7f;
        dsp_softmax_rows(&s);
        ref_softmax(&s, hi, lo, buf_d);
        report("softmax", i, buf_c, buf_d, s.rows * s.n, failures);
    }
}
