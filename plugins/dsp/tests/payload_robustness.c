/*
 * payload_robustness.c — a malformed kiln.dsp payload is an error, never a crash.
 *
 * Links the plugin's sources directly (built with -fsanitize=address,undefined by run-tests) behind a
 * minimal host, builds one valid payload (QuantizeLinear -> QLinearConv -> QLinearMatMul ->
 * DequantizeLinear, with constants), checks that it loads and runs, and then feeds load every truncation,
 * 4000 random corruptions (each one that still loads is executed) and hand-made payloads that are well
 * formed but ask for the impossible (zero strides, huge pads, mismatched shapes, undefined values, shape
 * products that overflow; QLinearAdd and QLinearAveragePool with impossible windows, operands or quantization, and in a
 * version 3 payload). Each must end in an error or a clean run; the sanitizers turn any out-of-bounds
 * access or undefined behaviour into a failure. It also checks that the valid run's cost estimate is reported
 * through the device properties and follows the documented model. Exits 1 on any failed expectation.
 */
#include <kiln/kiln_plugin.h>
#include "../program.h"
#include "../../accelkit/tests/ak_test_host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kiln_plugin_backend *backend;

/* When want_profile is set, load_and_run also asks for the profile (ABI 1.4) before the run (which must fail)
 * and after it, and keeps what the later one reported here. */
static int want_profile, profile_before_failed, profile_names_ok;
static uint64_t profile_hvx, profile_dma, profile_total;
static size_t profile_steps;

/* Asks for `executable`'s profile and, after a run, sums it per unit and checks its layer names. */
static void take_profile(void *executable, int after_run) {
    kiln_plugin_profile prof;
    memset(&prof, 0, sizeof prof);
    prof.struct_size = sizeof prof;
    kiln_plugin_error *e = backend->profile(backend->context, executable, &prof);
    if (!after_run) { profile_before_failed = e != NULL && strstr(e->message, "has not run") != NULL; free(e); return; }
    if (e) { printf("profile: %s\n", e->message); free(e); return; }
    static const char *const layers[4] = {"quant", "conv1", "fc", "dequant"};
    profile_names_ok = prof.step_count > 0;
    profile_hvx = profile_dma = 0;
    for (size_t i = 0; i < prof.step_count; i++) {
        const kiln_plugin_profile_step *st = &prof.steps[i];
        int known = 0;
        for (int k = 0; k < 4; k++) known |= strcmp(st->name, layers[k]) == 0;
        profile_names_ok &= known;
        if (strcmp(st->unit, "HVX") == 0) profile_hvx += st->cycles;
        else if (strcmp(st->unit, "DMA") == 0) profile_dma += st->cycles;
        else profile_names_ok = 0;
    }
    profile_total = prof.total_cycles;
    profile_steps = prof.step_count;
    backend->release(backend->context, prof.owner);
}

/* Loads `bytes` and, when that works, executes it on x (float32 [1,2,6,6]). Returns 0 when both worked,
 * 1 when load refused, 2 when execute refused. */
static int load_and_run(const void *bytes, size_t size, char *why, size_t why_size) {
    kiln_plugin_bytes payload = {sizeof payload, bytes, size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
    void *executable = NULL;
    kiln_plugin_error *e = backend->load(backend->context, &payload, NULL, &executable);
    if (e) { snprintf(why, why_size, "%s", e->message); free(e); return 1; }
    if (want_profile) take_profile(executable, 0);
    float xf[72];
    for (int i = 0; i < 72; i++) xf[i] = (float)(i % 13) - 6.0f;
    int64_t shape[4] = {1, 2, 6, 6};
    kiln_tensor in = {xf, {KILN_DEVICE_CPU, 0}, 4, {KILN_DTYPE_FLOAT, 32, 1}, shape, NULL, 0};
    int64_t out_shape[KILN_PLUGIN_MAX_RANK];
    kiln_tensor out = {NULL, {KILN_DEVICE_CPU, 0}, 0, {0, 0, 0}, out_shape, NULL, 0};
    e = backend->execute(backend->context, executable, &in, 1, &out, 1);
    free(out.data);
    if (want_profile && !e) take_profile(executable, 1);
    backend->unload(backend->context, executable);
    if (e) { snprintf(why, why_size, "%s", e->message); free(e); return 2; }
    return 0;
}

/* Value ids of the valid program (V_P: the product). */
enum { V_X, V_XS, V_XZ, V_Q, V_W, V_WS, V_WZ, V_YS, V_YZ, V_B, V_C, V_M, V_MS, V_MZ, V_MM, V_DS, V_P, V_Y, V_COUNT };

static float f_xs = 0.05f, f_ws = 0.02f, f_ys = 0.1f, f_ms = 0.01f, f_mys = 0.2f, f_ds = 0.2f;
static uint8_t u_xz = 128, u_yz = 10;
static int8_t i_wz = 0, i_mwz = 0;
static int8_t w_data[4 * 2 * 3 * 3];
static int32_t b_data[4] = {100, -200, 300, -400};
static int8_t m_data[4 * 6 * 6 * 5];

/* A constant of the valid program. */
static dsp_constant constant(uint32_t value, uint32_t dtype, uint32_t rank, const int64_t *dims, void *data, uint64_t bytes) {
    dsp_constant c;
    memset(&c, 0, sizeof c);
    c.value = value; c.dtype = dtype; c.rank = rank;
    for (uint32_t d = 0; d < rank; d++) c.dims[d] = dims[d];
    c.data = data; c.bytes = bytes;
    return c;
}

/* The valid program: x(f32) -> Quantize -> QLinearConv (4 out, 3x3, pad 1) -> QLinearMatMul
 * over the last dim (6 -> 5) -> Dequantize; value ids from the enum above. */
static void valid_program(dsp_program *p, dsp_constant *cs, dsp_op *ops, uint32_t *inputs, uint32_t *dtypes, uint32_t *outputs) {
    static int64_t one[1] = {1}, wd[4] = {4, 2, 3, 3}, bd[1] = {4}, md[2] = {6, 5};
    for (size_t i = 0; i < sizeof w_data; i++) w_data[i] = (int8_t)(i * 29);
    for (size_t i = 0; i < 30; i++) m_data[i] = (int8_t)(i * 53);
    size_t n = 0;
    cs[n++] = constant(V_XS, DSP_F32, 1, one, &f_xs, 4);
    cs[n++] = constant(V_XZ, DSP_U8, 0, NULL, &u_xz, 1);
    cs[n++] = constant(V_W, DSP_I8, 4, wd, w_data, sizeof w_data);
    cs[n++] = constant(V_WS, DSP_F32, 0, NULL, &f_ws, 4);
    cs[n++] = constant(V_WZ, DSP_I8, 0, NULL, &i_wz, 1);
    cs[n++] = constant(V_YS, DSP_F32, 0, NULL, &f_ys, 4);
    cs[n++] = constant(V_YZ, DSP_U8, 0, NULL, &u_yz, 1);
    cs[n++] = constant(V_B, DSP_I32, 1, bd, b_data, sizeof b_data);
    cs[n++] = constant(V_M, DSP_I8, 2, md, m_data, 30);
    cs[n++] = constant(V_MS, DSP_F32, 0, NULL, &f_ms, 4);
    cs[n++] = constant(V_MZ, DSP_I8, 0, NULL, &i_mwz, 1);
    cs[n++] = constant(V_MM, DSP_F32, 0, NULL, &f_mys, 4);
    cs[n++] = constant(V_DS, DSP_F32, 0, NULL, &f_ds, 4);
    memset(ops, 0, 4 * sizeof *ops);
    ops[0] = (dsp_op){DSP_OP_QUANTIZE, 3, {V_X, V_XS, V_XZ}, V_Q, {0}};
    ops[1] = (dsp_op){DSP_OP_QCONV, 9, {V_Q, V_XS, V_XZ, V_W, V_WS, V_WZ, V_YS, V_YZ, V_B}, V_C, {1, 1, 1, 1, 1, 1, 1, 1, 1}};
    ops[2] = (dsp_op){DSP_OP_QMATMUL, 8, {V_C, V_YS, V_YZ, V_M, V_MS, V_MZ, V_MM, V_YZ}, V_P, {0}};
    ops[3] = (dsp_op){DSP_OP_DEQUANTIZE, 3, {V_P, V_DS, V_YZ}, V_Y, {0}};
    inputs[0] = V_X; dtypes[0] = DSP_F32; outputs[0] = V_Y;
    p->value_count = V_COUNT; p->input_count = 1; p->output_count = 1; p->constant_count = (uint32_t)n; p->op_count = 4;
    p->inputs = inputs; p->input_dtypes = dtypes; p->outputs = outputs; p->constants = cs; p->ops = ops;
    memset(&p->layers, 0, sizeof p->layers);
    static const char *const layers[4] = {"quant", "conv1", "fc", "dequant"};
    for (uint32_t i = 0; i < 4; i++) {
        uint32_t layer = ak_layers_add(&p->layers, layers[i]);
        if (layer == UINT32_MAX || ak_layers_assign(&p->layers, i, i + 1, layer)) { printf("FAIL: out of memory\n"); exit(1); }
    }
}

int main(void) {
    backend = ak_test_backend();

    dsp_program p;
    dsp_constant cs[16];
    dsp_op ops[4];
    uint32_t inputs[1], dtypes[1], outputs[1];
    valid_program(&p, cs, ops, inputs, dtypes, outputs);
    dsp_buffer good;
    dsp_encode(&p, &good);
    char why[600];
    want_profile = 1;
    int r = load_and_run(good.data, good.size, why, sizeof why);
    want_profile = 0;
    EXPECT(r == 0, "the valid payload does not run: %s", why);
    EXPECT(profile_before_failed, "profile before any run is not an error");
    EXPECT(profile_names_ok, "the profile's steps are not all on HVX/DMA in layers quant, conv1, fc, dequant");

    {   /* the valid run was costed: the device reports the estimate, consistent with the documented model */
        kiln_plugin_device_list list;
        memset(&list, 0, sizeof list);
        list.struct_size = sizeof list;
        kiln_plugin_error *de = backend->devices(backend->context, &list);
        EXPECT(!de && list.device_count == 1, "devices failed");
        unsigned long long ops = 0, dma = 0, cycles = 0, runs = 0;
        for (size_t k = 0; !de && k < list.devices[0]->property_count; k++) {
            const char *key = list.devices[0]->property_keys[k], *value = list.devices[0]->property_values[k];
            if (strcmp(key, "estimate.last_run.hvx_ops") == 0) ops = strtoull(value, NULL, 10);
            if (strcmp(key, "estimate.last_run.dma_bytes") == 0) dma = strtoull(value, NULL, 10);
            if (strcmp(key, "estimate.last_run.cycles") == 0) cycles = strtoull(value, NULL, 10);
            if (strcmp(key, "estimate.runs") == 0) runs = strtoull(value, NULL, 10);
        }
        unsigned long long compute = (ops + 3) / 4, transfer = dma / 10; /* 4 contexts; 10 bytes per cycle at 1 GHz */
        EXPECT(runs == 1 && ops > 0 && dma > 0 && cycles == (compute > transfer ? compute : transfer),
               "estimate: runs %llu, %llu HVX ops, %llu DMA bytes, %llu cycles", runs, ops, dma, cycles);
        printf("estimate of the valid run: %llu HVX ops, %llu DMA bytes, %llu cycles\n", ops, dma, cycles);
        /* the profile splits the same estimate per layer: HVX and DMA each add up to the run's, the run to the longer */
        EXPECT(profile_hvx == compute && profile_dma == transfer && profile_total == cycles,
               "profile: HVX %llu (want %llu), DMA %llu (want %llu), total %llu (want %llu)", (unsigned long long)profile_hvx, compute,
               (unsigned long long)profile_dma, transfer, (unsigned long long)profile_total, cycles);
        printf("profile of the valid run: %zu steps, HVX %llu + DMA %llu cycles, %llu cycles per run\n", profile_steps,
               (unsigned long long)profile_hvx, (unsigned long long)profile_dma, (unsigned long long)profile_total);
        if (!de) backend->release(backend->context, list.owner);
        free(de);
    }

    int refused = 0;
    for (size_t cut = 0; cut < good.size; cut++) {
        r = load_and_run(good.data, cut, why, sizeof why);
        EXPECT(r == 1, "a payload truncated to %zu of %zu bytes loaded", cut, good.size);
        refused += r == 1;
    }
    printf("truncations: %d of %zu refused by load\n", refused, good.size);

    uint64_t state = 88172645463325252ull;
    int loaded = 0, ran = 0;
    uint8_t *copy = malloc(good.size);
    for (int trial = 0; trial < 4000; trial++) {
        memcpy(copy, good.data, good.size);
        int flips = 1 + trial % 4;
        for (int f = 0; f < flips; f++) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;
            size_t at = (size_t)(state % good.size);
            copy[at] = (trial & 1) ? (uint8_t)(state >> 32) : (uint8_t)(copy[at] ^ (1u << ((state >> 40) & 7)));
        }
        r = load_and_run(copy, good.size, why, sizeof why);
        loaded += r != 1;
        ran += r == 0;
    }
    free(copy);
    printf("corruptions: 4000 tried, %d loaded, %d ran cleanly, the rest refused; none crashed\n", loaded, ran);

    /* well formed, impossible */
    struct { const char *what; int op; int param; int64_t value; } bad[] = {
        {"group 0", 1, 0, 0}, {"stride 0", 1, 1, 0}, {"negative pad", 1, 3, -1}, {"pad 2^40", 1, 4, (int64_t)1 << 40},
        {"dilation 0", 1, 7, 0}, {"group 3 (channels 2)", 1, 0, 3}, {"stride 2^62", 1, 2, (int64_t)1 << 62},
        {"QLinearMatMul transB 2", 2, 0, 2}, {"QLinearMatMul transB 1 (b 6x5 does not fit a's last dim 6)", 2, 0, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dsp_op saved = ops[bad[i].op];
        ops[bad[i].op].params[bad[i].param] = bad[i].value;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r != 0, "%s ran", bad[i].what);
        printf("%s: %s\n", bad[i].what, r ? why : "ran");
        free(b.data);
        ops[bad[i].op] = saved;
    }
    {   /* the matrix with a shape that does not multiply */
        int64_t saved = cs[8].dims[0];
        cs[8].dims[0] = 5; cs[8].dims[1] = 6;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 2, "a mismatched QLinearMatMul ran or failed to load");
        printf("mismatched matmul: %s\n", why);
        free(b.data);
        cs[8].dims[0] = saved; cs[8].dims[1] = 5;
    }
    {   /* a constant whose dims multiply past 2^64 */
        int64_t saved[2] = {cs[8].dims[0], cs[8].dims[1]};
        cs[8].dims[0] = (int64_t)1 << 40; cs[8].dims[1] = (int64_t)1 << 40;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1, "a constant of 2^80 elements loaded");
        printf("overflowing constant: %s\n", why);
        free(b.data);
        cs[8].dims[0] = saved[0]; cs[8].dims[1] = saved[1];
    }
    {   /* an op that reads a value defined later */
        uint32_t saved = ops[1].inputs[0];
        ops[1].inputs[0] = V_P; /* defined by op 2 */
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1, "an op reading an undefined value loaded");
        printf("undefined value: %s\n", why);
        free(b.data);
        ops[1].inputs[0] = saved;
    }
    {   /* a QLinearConv with too few inputs */
        uint32_t saved = ops[1].input_count;
        ops[1].input_count = 4;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r != 0, "a QLinearConv with 4 inputs ran");
        printf("short QLinearConv: %s\n", why);
        free(b.data);
        ops[1].input_count = saved;
    }
    {   /* per-channel w scales: 4 (one per output channel) run, 3 are refused */
        static float scales[4] = {0.02f, 0.03f, 0.01f, 0.05f};
        static int64_t four[1] = {4}, three[1] = {3};
        dsp_constant saved = cs[3];
        cs[3] = constant(V_WS, DSP_F32, 1, four, scales, 16);
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "per-channel w scales did not run: %s", why);
        free(b.data);
        cs[3] = constant(V_WS, DSP_F32, 1, three, scales, 12);
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 2, "3 w scales for 4 channels ran");
        printf("3 w scales for 4 channels: %s\n", why);
        free(b.data);
        cs[3] = saved;
    }
    {   /* the layer table: an index past it, an empty name, no table for the ops: load errors */
        uint32_t saved = p.layers.of[2];
        p.layers.of[2] = 4;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "layer index"), "an op's layer index past the table: %d %s", r, why);
        printf("layer index past the table: %s\n", why);
        free(b.data);
        p.layers.of[2] = saved;
        char *name = p.layers.names[1];
        p.layers.names[1] = "";
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "layer name"), "an empty layer name: %d %s", r, why);
        free(b.data);
        p.layers.names[1] = name;
        uint32_t count = p.layers.count;
        p.layers.count = 0;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "layer table"), "ops without a layer table: %d %s", r, why);
        free(b.data);
        p.layers.count = count;
    }
    {   /* a lookup table (2 channels along axis 1 of the quantized [1, 2, 6, 6] input): runs; impossible parameters are refused */
        static uint8_t tables[2 * 256];
        static int64_t td[2] = {2, 256}, short_td[2] = {1, 256};
        for (int i = 0; i < 512; i++) tables[i] = (uint8_t)(i * 7);
        dsp_constant saved_c = cs[2];
        dsp_op saved_ops[3] = {ops[1], ops[2], ops[3]};
        cs[2] = constant(V_W, DSP_U8, 2, td, tables, sizeof tables);
        ops[1] = (dsp_op){DSP_OP_LUT, 2, {V_Q, V_W}, V_C, {2, 2, 4, DSP_U8, DSP_I8}};
        ops[2] = (dsp_op){DSP_OP_DEQUANTIZE, 3, {V_C, V_DS, V_WZ}, V_Y, {0}};
        p.op_count = 3;
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "the lookup-table program did not run: %s", why);
        b.data[4] = 2; /* the same program as a version 2 payload: older plugins would not know the op, so it is refused */
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "unknown opcode"), "a version 2 payload with a lookup table: %d %s", r, why);
        printf("lookup table in a version 2 payload: %s\n", why);
        free(b.data);
        struct { const char *what; int param; int64_t value; } lut_bad[] = {
            {"lookup table: 3 channels for 2", 0, 3}, {"lookup table: channels 0", 0, 0}, {"lookup table: axis past the rank", 1, 4},
            {"lookup table: axis 2^40", 1, (int64_t)1 << 40}, {"lookup table: rank 5 wanted", 2, 5}, {"lookup table: int8 input wanted", 3, DSP_I8},
            {"lookup table: int32 result", 4, DSP_I32},
        };
        for (size_t i = 0; i < sizeof lut_bad / sizeof lut_bad[0]; i++) {
            int64_t keep = ops[1].params[lut_bad[i].param];
            ops[1].params[lut_bad[i].param] = lut_bad[i].value;
            dsp_encode(&p, &b);
            r = load_and_run(b.data, b.size, why, sizeof why);
            EXPECT(r == 2, "%s ran or failed to load (%d)", lut_bad[i].what, r);
            printf("%s: %s\n", lut_bad[i].what, why);
            free(b.data);
            ops[1].params[lut_bad[i].param] = keep;
        }
        cs[2] = constant(V_W, DSP_U8, 2, short_td, tables, 256);
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 2, "a lookup table with one table for 2 channels ran (%d)", r);
        printf("lookup table: 1 table for 2 channels: %s\n", why);
        free(b.data);
        /* the same input through a Softmax over its last axis: runs; impossible parameters are refused */
        cs[2] = constant(V_W, DSP_U8, 2, td, tables, sizeof tables);
        ops[1] = (dsp_op){DSP_OP_SOFTMAX, 2, {V_Q, V_W}, V_C, {1 << 30, 8, -128, DSP_U8, DSP_I8, -1}};
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "the Softmax program did not run: %s", why);
        free(b.data);
        struct { const char *what; int param; int64_t value; } sm_bad[] = {
            {"softmax: multiplier below 2^30", 0, 5}, {"softmax: exponent 31", 1, 31}, {"softmax: zero point 300", 2, 300},
            {"softmax: int8 input wanted", 3, DSP_I8}, {"softmax: float result", 4, DSP_F32}, {"softmax: axis 1 of 4", 5, 1},
        };
        for (size_t i = 0; i < sizeof sm_bad / sizeof sm_bad[0]; i++) {
            int64_t keep = ops[1].params[sm_bad[i].param];
            ops[1].params[sm_bad[i].param] = sm_bad[i].value;
            dsp_encode(&p, &b);
            r = load_and_run(b.data, b.size, why, sizeof why);
            EXPECT(r == 2, "%s ran or failed to load (%d)", sm_bad[i].what, r);
            printf("%s: %s\n", sm_bad[i].what, why);
            free(b.data);
            ops[1].params[sm_bad[i].param] = keep;
        }
        cs[2] = saved_c;
        ops[1] = saved_ops[0]; ops[2] = saved_ops[1]; ops[3] = saved_ops[2];
        p.op_count = 4;
    }
    {   /* QLinearAdd then QLinearAveragePool (3x3, stride 2, pads 1) on the quantized [1, 2, 6, 6] input: runs; as a version 3
         * payload it is refused (an older plugin would not know the ops); impossible parameters and operands are refused */
        static uint8_t bias2[2] = {3, 250}, five[5] = {1, 2, 3, 4, 5};
        static int64_t b2d[3] = {2, 1, 1}, b5d[1] = {5};
        dsp_constant saved_c = cs[2];
        dsp_op saved_ops[3] = {ops[1], ops[2], ops[3]};
        ops[1] = (dsp_op){DSP_OP_QADD, 8, {V_Q, V_XS, V_XZ, V_Q, V_XS, V_XZ, V_YS, V_YZ}, V_C, {0}};
        ops[2] = (dsp_op){DSP_OP_QAVGPOOL, 5, {V_C, V_YS, V_YZ, V_YS, V_YZ}, V_P, {3, 3, 2, 2, 1, 1, 1, 1, 0, 0}};
        ops[3] = (dsp_op){DSP_OP_DEQUANTIZE, 3, {V_P, V_DS, V_YZ}, V_Y, {0}};
        dsp_buffer b;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "the QLinearAdd + QLinearAveragePool program did not run: %s", why);
        b.data[4] = 3;
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "unknown opcode"), "a version 3 payload with QLinearAdd: %d %s", r, why);
        printf("QLinearAdd in a version 3 payload: %s\n", why);
        free(b.data);
        struct { const char *what; int param; int64_t value; } pool_bad[] = {
            {"average pool: kernel 0", 0, 0}, {"average pool: kernel 2^40", 1, (int64_t)1 << 40}, {"average pool: 3x129 window", 1, 129},
            {"average pool: stride 0", 2, 0}, {"average pool: pad 3 for a kernel of 3", 4, 3}, {"average pool: negative pad", 7, -1},
            {"average pool: count_include_pad 2", 8, 2}, {"average pool: count_include_pad 1 with pads and zero point 10", 8, 1},
            {"average pool: global 2", 9, 2}, {"average pool: global 1 with a window", 9, 1},
        };
        for (size_t i = 0; i < sizeof pool_bad / sizeof pool_bad[0]; i++) {
            int64_t keep = ops[2].params[pool_bad[i].param];
            ops[2].params[pool_bad[i].param] = pool_bad[i].value;
            dsp_encode(&p, &b);
            r = load_and_run(b.data, b.size, why, sizeof why);
            EXPECT(r == 2, "%s ran or failed to load (%d)", pool_bad[i].what, r);
            printf("%s: %s\n", pool_bad[i].what, why);
            free(b.data);
            ops[2].params[pool_bad[i].param] = keep;
        }
        dsp_op keep_pool = ops[2];
        ops[2] = (dsp_op){DSP_OP_QAVGPOOL, 5, {V_C, V_YS, V_YZ, V_YS, V_YZ}, V_P, {0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "a global average pool of 6x6 did not run: %s", why);
        free(b.data);
        ops[2].inputs[3] = V_DS; /* y's scale 0.2, x's 0.1: the kernel does not requantize */
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 2, "an average pool with y's scale not x's ran (%d)", r);
        printf("average pool, y scale differs: %s\n", why);
        free(b.data);
        ops[2] = keep_pool;
        cs[2] = constant(V_W, DSP_U8, 3, b2d, bias2, 2); /* b of [2, 1, 1]: broadcast along the channels, runs */
        ops[1].inputs[3] = V_W;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "a QLinearAdd broadcasting [2, 1, 1] did not run: %s", why);
        free(b.data);
        cs[2] = constant(V_W, DSP_U8, 1, b5d, five, 5); /* b of [5] against [1, 2, 6, 6]: does not broadcast */
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 2 && strstr(why, "broadcast"), "a QLinearAdd of [1, 2, 6, 6] and [5] ran (%d) %s", r, why);
        printf("QLinearAdd of [1, 2, 6, 6] and [5]: %s\n", why);
        free(b.data);
        struct { const char *what; int input; uint32_t value; } add_bad[] = {
            {"QLinearAdd: int8 b", 3, V_M}, {"QLinearAdd: a byte as the output scale", 6, V_XZ}, {"QLinearAdd: int8 a zero point", 2, V_WZ},
            {"QLinearAdd: a 4-element scale", 4, V_B},
        };
        ops[1].inputs[3] = V_Q;
        for (size_t i = 0; i < sizeof add_bad / sizeof add_bad[0]; i++) {
            uint32_t keep = ops[1].inputs[add_bad[i].input];
            ops[1].inputs[add_bad[i].input] = add_bad[i].value;
            dsp_encode(&p, &b);
            r = load_and_run(b.data, b.size, why, sizeof why);
            EXPECT(r == 2, "%s ran or failed to load (%d)", add_bad[i].what, r);
            printf("%s: %s\n", add_bad[i].what, why);
            free(b.data);
            ops[1].inputs[add_bad[i].input] = keep;
        }
        ops[1].input_count = 7;
        dsp_encode(&p, &b);
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r != 0, "a QLinearAdd with 7 inputs ran");
        printf("QLinearAdd with 7 inputs: %s\n", why);
        free(b.data);
        cs[2] = saved_c;
        ops[1] = saved_ops[0]; ops[2] = saved_ops[1]; ops[3] = saved_ops[2];
    }
    {   /* the valid program as a version 2 payload (what the previous plugin wrote) still runs; with transB it is refused */
        dsp_buffer b;
        dsp_encode(&p, &b);
        b.data[4] = 2;
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 0, "a version 2 payload did not run: %s", why);
        free(b.data);
        ops[2].params[0] = 1;
        dsp_encode(&p, &b);
        b.data[4] = 2;
        r = load_and_run(b.data, b.size, why, sizeof why);
        EXPECT(r == 1 && strstr(why, "transB"), "a version 2 QLinearMatMul with transB: %d %s", r, why);
        printf("transB in a version 2 payload: %s\n", why);
        free(b.data);
        ops[2].params[0] = 0;
    }
    ak_layers_free(&p.layers);
    free(good.data);
    printf(failures ? "payload_robustness: FAIL (%d)\n" : "payload_robustness: PASS\n", failures);
    return failures ? 1 : 0;
}
