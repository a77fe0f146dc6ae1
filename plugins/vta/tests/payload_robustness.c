/*
 * payload_robustness.c — samplevta.fpga on a graph built here in C, behind a minimal host (run-tests builds it
 * with -fsanitize=address,undefined):
 *   1. two chained QLinearConv layers (20 -> 24 channels 3x3 pad 1 with multiplier 3·2^-9, then 24 -> 40 channels
 *      1x1 stride 2 with 2^-6), channel counts that are not multiples of 16 and non-zero zero points, are claimed,
 *      compiled for both targets and run; the int8 results must equal a plain C QLinearConv (double
 *      arithmetic, rounding half to even, as kiln.reference computes it) bit for bit;
 *   2. a multiplier that is not m·2^-s (and a per-channel weight zero point) is not claimed, with a reason;
 *   3. every truncation of the payload, 1000 random corruptions (each one that loads is executed) and hand-made
 *      impossible payloads (a LOAD past the DRAM image, a micro-op range past the buffer, a missing token push
 *      that would deadlock, a DRAM size beyond the cap, trailing bytes) are errors or clean runs, never crashes.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"
#include "../isa.h"
#include "../../accelkit/tests/ak_test_host.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kiln_plugin_backend *backend;

enum { C0 = 20, H0 = 9, W0 = 9, C1 = 24, C2 = 40, H2 = 5, W2 = 5 };
static int8_t X[C0 * H0 * W0], W1[C1 * C0 * 9], W2v[C2 * C1], Y1[C1 * H0 * W0], Y2[C2 * H2 * W2];
static int32_t B1[C1], B2[C2];

enum { F32 = 1, I8 = 3, I32 = 6 };
static float sx = 0.0625f, sw1 = 3.0f / 256, s1 = 0.125f, sw2 = 1.0f / 128, s2 = 0.25f, sw_bad = 0.01f;
static int8_t zx = -3, z1 = 5, z2 = -7, zw = 0, zw_pc[C2];

/* The graph; `bad` gives layer 2 a weight scale whose multiplier is not m·2^-s and a per-channel zero point. */
static uint8_t *graph_bytes(size_t *size, int bad) {
    static const int64_t xd[4] = {1, C0, H0, W0}, w1d[4] = {C1, C0, 3, 3}, b1d[1] = {C1}, w2d[4] = {C2, C1, 1, 1}, b2d[1] = {C2}, yd[4] = {1, C2, H2, W2}, one[1] = {1};
    static const int64_t pcd[1] = {C2};
    static char *in1[9] = {"x", "sx", "zx", "w1", "sw1", "zw", "s1", "z1", "b1"};
    static char *in2[9] = {"y1", "s1", "z1", "w2", "sw2", "zw", "s2", "z2", "b2"};
    static char *in2b[9] = {"y1", "s1", "z1", "w2", "sw_bad", "zw_pc", "s2", "z2", "b2"};
    static int64_t pads1[4] = {1, 1, 1, 1}, strides2[2] = {2, 2};
    Kiln__Ir__Attribute **a1 = keep(1, sizeof *a1), **a2 = keep(1, sizeof *a2);
    a1[0] = ints("pads", 4, pads1);
    a2[0] = ints("strides", 2, strides2);
    Kiln__Ir__Graph g;
    kiln__ir__graph__init(&g);
    g.name = "qconv2";
    Kiln__Ir__Value *inputs[1] = {value("x", I8, 4, xd)}, *outputs[1] = {value("y", I8, 4, yd)};
    Kiln__Ir__Tensor *inits[14] = {
        init("sx", F32, 0, one, &sx, 4), init("zx", I8, 0, one, &zx, 1), init("w1", I8, 4, w1d, W1, sizeof W1), init("sw1", F32, 0, one, &sw1, 4),
        init("zw", I8, 0, one, &zw, 1), init("s1", F32, 0, one, &s1, 4), init("z1", I8, 0, one, &z1, 1), init("b1", I32, 1, b1d, B1, sizeof B1),
        init("w2", I8, 4, w2d, W2v, sizeof W2v), init("sw2", F32, 0, one, &sw2, 4), init("s2", F32, 0, one, &s2, 4), init("z2", I8, 0, one, &z2, 1),
        init("b2", I32, 1, b2d, B2, sizeof B2), init(bad ? "sw_bad" : "unused", F32, 0, one, &sw_bad, 4)};
    Kiln__Ir__Tensor *inits_bad[15];
    memcpy(inits_bad, inits, sizeof inits);
    inits_bad[14] = init("zw_pc", I8, 1, pcd, zw_pc, sizeof zw_pc);
    Kiln__Ir__Node *nodes[2] = {node("conv1", "QLinearConv", in1, 9, "y1", a1, 1), node("conv2", "QLinearConv", bad ? in2b : in2, 9, "y", a2, 1)};
    g.n_inputs = 1; g.inputs = inputs;
    g.n_outputs = 1; g.outputs = outputs;
    g.n_initializers = bad ? 15 : 14; g.initializers = bad ? inits_bad : inits;
    g.n_nodes = 2; g.nodes = nodes;
    return ak_test_pack(&g, size);
}

/* QLinearConv as kiln.reference computes it: centered int8 values, double requantization, half to even. */
static void ref_qconv(const int8_t *x, int C, int H, int W, int zxv, const int8_t *w, int O, int K, int pad, int stride, const int32_t *b,
                      double M, int zy, int8_t *y, int OH, int OW) {
    for (int o = 0; o < O; o++)
        for (int r = 0; r < OH; r++)
            for (int c = 0; c < OW; c++) {
                double acc = b[o];
                for (int i = 0; i < C; i++)
                    for (int kh = 0; kh < K; kh++)
                        for (int kw = 0; kw < K; kw++) {
                            int yy = r * stride + kh - pad, xx = c * stride + kw - pad;
                            if (yy < 0 || yy >= H || xx < 0 || xx >= W) continue;
                            acc += (double)(x[(i * H + yy) * W + xx] - zxv) * w[((o * C + i) * K + kh) * K + kw];
                        }
                double q = nearbyint(acc * M) + zy;
                y[(o * OH + r) * OW + c] = (int8_t)(q < -128 ? -128 : q > 127 ? 127 : q);
            }
}

static kiln_plugin_error *run(void *exe, int8_t *out) {
    static const int64_t xd[4] = {1, C0, H0, W0};
    kiln_tensor in = {0};
    in.data = X; in.device.device_type = KILN_DEVICE_CPU; in.ndim = 4; in.dtype.code = KILN_DTYPE_INT; in.dtype.bits = 8; in.dtype.lanes = 1;
    in.shape = (int64_t *)xd;
    int64_t shape[KILN_PLUGIN_MAX_RANK];
    kiln_tensor o = {0};
    o.shape = shape; o.device.device_type = KILN_DEVICE_CPU;
    kiln_plugin_error *e = backend->execute(backend->context, exe, &in, 1, &o, 1);
    if (!e && out) {
        if (o.ndim != 4 || shape[1] != C2 || shape[2] != H2 || shape[3] != W2) { failures++; printf("FAIL: output shape\n"); }
        else memcpy(out, o.data, sizeof Y2);
    }
    free(o.data);
    return e;
}

/* Loads `data` and, when it loads, runs it: either may fail, neither may crash. Returns 1 when both succeeded. */
static int try_payload(const void *data, size_t size, const kiln_plugin_bytes *graph) {
    kiln_plugin_bytes p = {sizeof p, data, size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
    void *exe = NULL;
    kiln_plugin_error *e = backend->load(backend->context, &p, graph, &exe);
    if (e) { free(e); return 0; }
    e = run(exe, NULL);
    int ok = e == NULL;
    free(e);
    backend->unload(backend->context, exe);
    return ok;
}

int main(void) {
    srand(7);
    for (size_t i = 0; i < sizeof X; i++) X[i] = (int8_t)(rand() % 256 - 128);
    for (size_t i = 0; i < sizeof W1; i++) W1[i] = (int8_t)(rand() % 256 - 128);
    for (size_t i = 0; i < sizeof W2v; i++) W2v[i] = (int8_t)(rand() % 256 - 128);
    for (int i = 0; i < C1; i++) B1[i] = rand() % 20001 - 10000;
    for (int i = 0; i < C2; i++) B2[i] = rand() % 2001 - 1000;
    for (int i = 0; i < C2; i++) zw_pc[i] = (int8_t)(i % 3);
    /* a tie-heavy input: many accumulators land exactly on .5 after the shift */
    for (int i = 0; i < 40; i++) X[i] = zx;
    backend = ak_test_backend();
    EXPECT(strcmp(backend->name, "samplevta.fpga") == 0, "backend name");

    /* 1. claim, compile, run, compare */
    size_t gsize;
    uint8_t *gb = graph_bytes(&gsize, 0);
    kiln_plugin_bytes graph = {sizeof graph, gb, gsize, KILN_PLUGIN_FORMAT_IR_GRAPH, 0};
    kiln_plugin_claim claim = {sizeof claim, 0, NULL, NULL, NULL};
    kiln_plugin_error *e = backend->claim(backend->context, &graph, &claim);
    EXPECT(!e && claim.node_count == 2 && claim.supported[0] && claim.supported[1], "both QLinearConv nodes are claimed (%s)", e ? e->message : claim.reasons && claim.reasons[0] ? claim.reasons[0] : claim.reasons && claim.reasons[1] ? claim.reasons[1] : "");
    if (!e) backend->release(backend->context, claim.owner);
    free(e);
    ref_qconv(X, C0, H0, W0, zx, W1, C1, 3, 1, 1, B1, (double)sx * (double)sw1 / (double)s1, z1, Y1, H0, W0);
    ref_qconv(Y1, C1, H0, W0, z1, W2v, C2, 1, 0, 2, B2, (double)s1 * (double)sw2 / (double)s2, z2, Y2, H2, W2);
    uint8_t *payload = NULL;
    size_t payload_size = 0;
    const char *targets[2] = {"fpga-vta-pynq", "fpga-vta-zcu104"};
    for (int t = 0; t < 2; t++) {
        kiln_plugin_compile_options opts = {sizeof opts, targets[t], 2, 0, 0, NULL, NULL};
        kiln_plugin_payload out = {sizeof out, NULL, 0, NULL, NULL};
        e = backend->compile(backend->context, &graph, &opts, &out);
        EXPECT(!e, "compile for %s: %s", targets[t], e ? e->message : "");
        if (e) { free(e); continue; }
        EXPECT(strstr(out.compat, targets[t]) && !backend->check(backend->context, out.compat), "compat names the target and check accepts it");
        if (t == 0) { payload = malloc(out.size); memcpy(payload, out.data, out.size); payload_size = out.size; }
        kiln_plugin_bytes p = {sizeof p, out.data, out.size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
        void *exe = NULL;
        e = backend->load(backend->context, &p, &graph, &exe);
        EXPECT(!e, "load: %s", e ? e->message : "");
        if (!e) {
            /* profile (ABI 1.4): an error before any run; after it, steps per layer (conv1, conv2, "(program)") and module */
            kiln_plugin_profile prof;
            memset(&prof, 0, sizeof prof);
            prof.struct_size = sizeof prof;
            kiln_plugin_error *pe = backend->profile(backend->context, exe, &prof);
            EXPECT(pe && strstr(pe->message, "has not run"), "profile before any run is an error");
            free(pe);
            int8_t got[sizeof Y2];
            e = run(exe, got);
            EXPECT(!e, "execute: %s", e ? e->message : "");
            pe = e ? NULL : backend->profile(backend->context, exe, &prof);
            EXPECT(!pe, "profile after a run: %s", pe ? pe->message : "");
            if (!e && !pe) {
                uint64_t per_layer[3] = {0}, end = 0;
                int odd = 0;
                for (size_t i = 0; i < prof.step_count; i++) {
                    const kiln_plugin_profile_step *st = &prof.steps[i];
                    int layer = strcmp(st->name, "conv1") == 0 ? 0 : strcmp(st->name, "conv2") == 0 ? 1 : strcmp(st->name, "(program)") == 0 ? 2 : -1;
                    odd += layer < 0 || (strcmp(st->unit, "load") && strcmp(st->unit, "compute") && strcmp(st->unit, "store"));
                    if (layer >= 0) per_layer[layer] += st->cycles;
                    if (st->start_cycle + st->cycles > end) end = st->start_cycle + st->cycles;
                }
                EXPECT(!odd && per_layer[0] > 0 && per_layer[1] > 0 && end == prof.total_cycles && prof.clock_hz > 0,
                       "%s profile: %d odd steps, conv1 %llu, conv2 %llu cycles, last end %llu of %llu", targets[t], odd,
                       (unsigned long long)per_layer[0], (unsigned long long)per_layer[1], (unsigned long long)end, (unsigned long long)prof.total_cycles);
                backend->release(backend->context, prof.owner);
            }
            free(pe);
            int diff = 0;
            for (size_t i = 0; !e && i < sizeof Y2; i++) diff += got[i] != Y2[i];
            EXPECT(!e && diff == 0, "%s: %d of %zu outputs differ from the C QLinearConv reference", targets[t], diff, sizeof Y2);
            free(e);
            backend->unload(backend->context, exe);
        } else free(e);
        backend->release(backend->context, out.owner);
    }
    /* the tokens are sufficient: any order the hardware allows gives the same result; without one token pair
     * (the first load->compute handshake) some orders read inputs before they are loaded */
    int orders_ok = 0, broken_differs = 0;
    for (int variant = 0; payload && variant < 2; variant++) {
        uint8_t *pl = malloc(payload_size);
        memcpy(pl, payload, payload_size);
        if (variant == 1) {
            uint32_t count;
            memcpy(&count, pl + 20, 4);
            int cleared_push = 0, cleared_pop = 0;
            for (uint32_t i = 0; i < count && !(cleared_push && cleared_pop); i++) {
                vta_insn in;
                char why[100];
                uint8_t *at = pl + 40 + 16 * (size_t)i;
                if (vta_decode(at, &in, why, sizeof why)) continue;
                uint32_t m = vta_module(&in);
                if (!cleared_push && m == VTA_MOD_LOAD && in.push_next) { in.push_next = 0; cleared_push = 1; vta_encode(&in, at); }
                else if (!cleared_pop && m == VTA_MOD_COMPUTE && in.pop_prev) { in.pop_prev = 0; cleared_pop = 1; vta_encode(&in, at); }
            }
        }
        kiln_plugin_bytes p = {sizeof p, pl, payload_size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
        void *exe = NULL;
        e = backend->load(backend->context, &p, &graph, &exe);
        EXPECT(!e, "load (variant %d): %s", variant, e ? e->message : "");
        for (int seed = 1; !e && seed <= 24; seed++) {
            char value[32];
            snprintf(value, sizeof value, "random:%d", seed);
            setenv("KILN_VTA_ORDER", value, 1);
            int8_t got[sizeof Y2];
            kiln_plugin_error *r = run(exe, got);
            int same = !r && memcmp(got, Y2, sizeof Y2) == 0;
            if (variant == 0) orders_ok += same; else broken_differs += !same;
            free(r);
        }
        unsetenv("KILN_VTA_ORDER");
        if (!e) backend->unload(backend->context, exe);
        free(e);
        e = NULL;
        free(pl);
    }
    EXPECT(orders_ok == 24, "only %d of 24 random token-respecting orders gave the reference result", orders_ok);
    EXPECT(broken_differs > 0, "without the first load->compute token no order went wrong: the random orders do not exercise the tokens");
    printf("dependency tokens: 24 random orders the tokens allow all give the same result; without one token pair %d of 24 orders go wrong\n", broken_differs);

    kiln_plugin_error *mismatch = backend->check(backend->context, "samplevta.fpga/kvta1;target=fpga-vta-u250");
    EXPECT(mismatch && mismatch->code == KILN_ERROR_VERSION_MISMATCH, "check refuses an unknown target");
    free(mismatch);
    printf("two QLinearConv layers (multiplier 3·2^-9 and 2^-6, zero points -3/5/-7, 20/24/40 channels): bit-exact vs the C reference on both targets%s\n", failures ? " — FAIL" : "");

    /* 2. refusals with reasons */
    size_t bsize;
    uint8_t *bb = graph_bytes(&bsize, 1);
    kiln_plugin_bytes bad_graph = {sizeof bad_graph, bb, bsize, KILN_PLUGIN_FORMAT_IR_GRAPH, 0};
    kiln_plugin_claim c2 = {sizeof c2, 0, NULL, NULL, NULL};
    e = backend->claim(backend->context, &bad_graph, &c2);
    EXPECT(!e && c2.node_count == 2 && c2.supported[0] && !c2.supported[1] && c2.reasons && c2.reasons[1] && strstr(c2.reasons[1], "per-channel weight zero points"),
           "layer 2 with a per-channel weight zero point is refused with its reason (%s)", !e && c2.reasons && c2.reasons[1] ? c2.reasons[1] : "");
    if (!e) backend->release(backend->context, c2.owner);
    free(e);
    memset(zw_pc, 0, sizeof zw_pc);
    free(bb);
    bb = graph_bytes(&bsize, 1);
    bad_graph.data = bb; bad_graph.size = bsize;
    e = backend->claim(backend->context, &bad_graph, &c2);
    EXPECT(!e && !c2.supported[1] && c2.reasons[1] && strstr(c2.reasons[1], "m·2^-s"), "a multiplier 0.01·0.125/0.25 is not m·2^-s: refused (%s)", !e && c2.reasons[1] ? c2.reasons[1] : "");
    if (!e) backend->release(backend->context, c2.owner);
    free(e);
    kiln_plugin_compile_options opts = {sizeof opts, "fpga-vta-pynq", 2, 0, 0, NULL, NULL};
    kiln_plugin_payload out = {sizeof out, NULL, 0, NULL, NULL};
    e = backend->compile(backend->context, &bad_graph, &opts, &out);
    EXPECT(e && e->code == KILN_ERROR_UNSUPPORTED, "compiling a graph with an unclaimed node is UNSUPPORTED");
    free(e);
    free(bb);

    /* 3. malformed payloads */
    int loaded = 0;
    for (size_t n = 0; payload && n < payload_size; n += (n < 64 ? 1 : 211)) loaded += try_payload(payload, n, &graph);
    EXPECT(loaded == 0, "%d truncated payloads loaded", loaded);
    uint8_t *copy = malloc(payload_size + 1);
    int ran = 0;
    for (int k = 0; payload && k < 1000; k++) {
        memcpy(copy, payload, payload_size);
        int flips = 1 + rand() % 4;
        for (int f = 0; f < flips; f++) copy[(size_t)rand() % payload_size] ^= (uint8_t)(1u << (rand() % 8));
        ran += try_payload(copy, payload_size, &graph);
    }
    /* hand-made: corrupt one instruction's fields through the encoder (up to 4 instructions of each kind) */
    size_t insn_at = 4 + 4 + 4 + 8 + 5 * 4;
    uint32_t insn_count;
    memcpy(&insn_count, payload + 4 + 4 + 4 + 8, 4);
    int refused = 0, cases = 0;
    for (int kind = 0; payload && kind < 4; kind++) {
        int of_kind = 0;
        for (uint32_t i = 0; i < insn_count && of_kind < 4; i++) {
            vta_insn in, mod;
            char why[100];
            if (vta_decode(payload + insn_at + 16 * i, &in, why, sizeof why)) continue;
            mod = in;
            if (kind == 0 && in.opcode == VTA_OP_LOAD && in.y_size) mod.dram_base = 0xfffffff;
            else if (kind == 1 && in.opcode == VTA_OP_GEMM && in.uop_end > in.uop_bgn) { mod.uop_bgn = 8000; mod.uop_end = 8192; mod.iter_out = 16000; }
            else if (kind == 2 && (in.push_next || in.push_prev)) mod.push_next = mod.push_prev = 0;
            else if (kind == 3 && in.opcode == VTA_OP_ALU) { mod.iter_out = 16383; mod.iter_in = 16383; }
            else continue;
            memcpy(copy, payload, payload_size);
            if (vta_encode(&mod, copy + insn_at + 16 * i)) continue;
            of_kind++; cases++;
            refused += !try_payload(copy, payload_size, &graph);
        }
    }
    EXPECT(cases >= 12 && refused == cases, "%d of %d impossible instructions (DRAM overrun, uop range, missing token, loops past the buffers) were refused", refused, cases);
    memcpy(copy, payload, payload_size);
    uint64_t huge = (uint64_t)1 << 40;
    memcpy(copy + 12, &huge, 8);
    EXPECT(!try_payload(copy, payload_size, &graph), "a DRAM image of 1 TiB is refused");
    memcpy(copy, payload, payload_size);
    copy[payload_size] = 0;
    EXPECT(!try_payload(copy, payload_size + 1, &graph), "trailing bytes are refused");
    EXPECT(!try_payload("KVTA", 4, &graph) && !try_payload(NULL, 0, &graph), "empty and tiny payloads are refused");
    printf("malformed payloads: every truncation refused; %d of 1000 random corruptions still ran, the others failed cleanly; %d impossible instructions refused\n", ran, refused);
    free(copy);
    free(payload);
    free(gb);
    ak_test_release();
    printf("payload_robustness: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
