/*
 * payload_robustness.c — a malformed npu-nc2 payload is an error, never a crash; a valid one computes the
 * right answer.
 *
 * Links the plugin's sources directly (built with -fsanitize=address,undefined by run-tests) behind a minimal
 * host. It builds a kiln.ir graph (x[130,20] -> MatMul W[20,140] -> Add b[140] -> Relu -> Mul g[140]), compiles
 * it with auto-cast none and checks the simulated result against a plain C computation, then feeds load every
 * truncation of the payload, 2000 random corruptions (each one that still loads is executed), and hand-made
 * payloads that are well formed but impossible (a DMA past its tensor, a store into a constant, PSUM bank 8, a
 * vector operand mode or reduction that does not exist,
 * DMA queue 16, a wait no instruction satisfies, MultiplyMoving without a matching stationary, a shape whose
 * element count overflows, a layer index past the layer table, an empty or NUL-holding layer name, a DMA tile past
 * partition 127 from its first-partition field, a multiply-accumulate addend past the partition). Each must end
 * in an error or a clean run. A depthwise Conv's payload (first-partition DMAs, multiply-accumulates) must match plain C
 * and survive corruptions; the graph compiled for two cores (placement batch and pipeline: views, a core table) must
 * match too, and views past their base, of themselves or of a constant, 3 cores, an instruction on core 2 and a store
 * into a view of an input are refused. It also checks the layer table's names and the profile callback (ABI 1.4). Exits 1 on any failed expectation.
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
enum { M = 130, K = 20, N = 140 };
static float X[M * K], W[K * N], B[N], G[N], Y[M * N];

/* The packed graph of the test model. */
static uint8_t *graph_bytes(size_t *size) {
    static const int64_t xd[2] = {M, K}, wd[2] = {K, N}, bd[1] = {N}, yd[2] = {M, N};
    static char *in0[2] = {"x", "W"}, *in1[2] = {"h0", "b"}, *in2[1] = {"h1"}, *in3[2] = {"h", "g"};
    Kiln__Ir__Graph g;
    kiln__ir__graph__init(&g);
    g.name = "robustness";
    const int f32 = KILN__IR__DATA_TYPE__FLOAT32;
    Kiln__Ir__Value *inputs[1] = {value("x", f32, 2, xd)}, *outputs[1] = {value("y", f32, 2, yd)};
    Kiln__Ir__Tensor *inits[3] = {init("W", f32, 2, wd, W, sizeof W), init("b", f32, 1, bd, B, sizeof B), init("g", f32, 1, bd, G, sizeof G)};
    Kiln__Ir__Node *nodes[4] = {node("MatMul", "MatMul", in0, 2, "h0", NULL, 0), node("Add", "Add", in1, 2, "h1", NULL, 0), node("Relu", "Relu", in2, 1, "h", NULL, 0),
                                node("Mul", "Mul", in3, 2, "y", NULL, 0)};
    g.n_inputs = 1; g.inputs = inputs;
    g.n_outputs = 1; g.outputs = outputs;
    g.n_initializers = 3; g.initializers = inits;
    g.n_nodes = 4; g.nodes = nodes;
    return ak_test_pack(&g, size);
}

/* Loads `bytes` and, when that works, executes it on X. Returns 0 when both worked (result in out, when given),
 * 1 when load refused, 2 when execute refused. */
static int load_and_run(const void *bytes, size_t size, float *out, char *why, size_t why_size) {
    kiln_plugin_bytes payload = {sizeof payload, bytes, size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
    void *executable = NULL;
    kiln_plugin_error *e = backend->load(backend->context, &payload, NULL, &executable);
    if (e) { snprintf(why, why_size, "%s", e->message); free(e); return 1; }
    int64_t shape[2] = {M, K};
    kiln_tensor in = {X, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, shape, NULL, 0};
    int64_t out_shape[KILN_PLUGIN_MAX_RANK];
    kiln_tensor result = {NULL, {KILN_DEVICE_CPU, 0}, 0, {0, 0, 0}, out_shape, NULL, 0};
    e = backend->execute(backend->context, executable, &in, 1, &result, 1);
    if (!e && out && result.data && result.ndim == 2 && out_shape[0] == M && out_shape[1] == N) memcpy(out, result.data, sizeof Y);
    free(result.data);
    backend->unload(backend->context, executable);
    if (e) { snprintf(why, why_size, "%s", e->message); free(e); return 2; }
    return 0;
}

/* Encodes a program (edited from the valid one) and checks that it is refused, at load or at execute. */
static void expect_refused(const npu_program *p, const char *what, const char *needle) {
    npu_buffer b;
    npu_encode(p, &b);
    char why[512] = "";
    int r = load_and_run(b.data, b.size, NULL, why, sizeof why);
    EXPECT(r != 0 && (!needle || strstr(why, needle)), "%s: expected an error mentioning '%s', got %d '%s'", what, needle ? needle : "", r, why);
    free(b.data);
}

/* The valid program decoded, so that hand-made variants can be encoded from it. */
static void decoded(const uint8_t *bytes, size_t size, npu_program *p) {
    char why[256];
    if (npu_decode(bytes, size, p, why, sizeof why)) { printf("FAIL: the valid payload does not decode: %s\n", why); exit(1); }
}

/* The first instruction with `opcode` in p. */
static npu_insn *first(npu_program *p, uint32_t opcode) {
    for (uint32_t i = 0; i < p->insn_count; i++) if (p->insns[i].opcode == opcode) return &p->insns[i];
    printf("FAIL: no instruction with opcode %u\n", opcode);
    exit(1);
}

/* An integer attribute (borrowed). */
static Kiln__Ir__Attribute *int_attr(const char *name, int64_t v) {
    Kiln__Ir__Attribute *a = keep(1, sizeof *a);
    kiln__ir__attribute__init(a);
    a->name = (char *)name;
    a->value_case = KILN__IR__ATTRIBUTE__VALUE_I;
    a->i = v;
    return a;
}

/* Loads and executes a payload on one input tensor; 0 (result copied to out when its size matches), 1 load
 * refused, 2 execute refused. */
static int run_one(const void *bytes, size_t size, float *x, int rank, const int64_t *shape, float *out, size_t out_count) {
    kiln_plugin_bytes payload = {sizeof payload, bytes, size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
    void *executable = NULL;
    kiln_plugin_error *e = backend->load(backend->context, &payload, NULL, &executable);
    if (e) { free(e); return 1; }
    int64_t out_shape[KILN_PLUGIN_MAX_RANK];
    kiln_tensor in = {x, {KILN_DEVICE_CPU, 0}, rank, {KILN_DTYPE_FLOAT, 32, 1}, (int64_t *)shape, NULL, 0};
    kiln_tensor result = {NULL, {KILN_DEVICE_CPU, 0}, 0, {0, 0, 0}, out_shape, NULL, 0};
    e = backend->execute(backend->context, executable, &in, 1, &result, 1);
    if (!e && out && result.data) {
        size_t n = 1;
        for (int d = 0; d < result.ndim; d++) n *= (size_t)out_shape[d];
        if (n == out_count) memcpy(out, result.data, n * 4);
    }
    free(result.data);
    backend->unload(backend->context, executable);
    if (e) { free(e); return 2; }
    return 0;
}

/* A depthwise Conv (x[2,3,5,6], W[3,1,3,3], bias, group 3, strides [2,1], pads 1, fused Relu) compiled through the
 * plugin: its payload uses the DMA's first-partition field and VECTOR's multiply-accumulate mode; the simulated
 * result must match plain C, and corruptions of that payload must be errors or clean runs. */
static void depthwise_case(uint32_t *seed) {
    enum { DN = 2, DC = 3, DH = 5, DW = 6, OH = 3, OW = 6 };
    static float x[DN * DC * DH * DW], w[DC * 9], b[DC], want[DN * DC * OH * OW], got[DN * DC * OH * OW];
    float *arrays[3] = {x, w, b};
    size_t counts[3] = {DN * DC * DH * DW, DC * 9, DC};
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < counts[a]; i++) { *seed = *seed * 1664525u + 1013904223u; arrays[a][i] = (float)(*seed >> 8) / 8388608.0f - 1.0f; }
    for (int n = 0; n < DN; n++)
        for (int c = 0; c < DC; c++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    float acc = 0;
                    for (int i = 0; i < 3; i++)
                        for (int j = 0; j < 3; j++) {
                            int ih = oh * 2 - 1 + i, iw = ow - 1 + j;
                            if (ih >= 0 && ih < DH && iw >= 0 && iw < DW) acc += x[((n * DC + c) * DH + ih) * DW + iw] * w[c * 9 + i * 3 + j];
                        }
                    acc += b[c];
                    want[((n * DC + c) * OH + oh) * OW + ow] = acc > 0 ? acc : 0;
                }
    static const int64_t xd[4] = {DN, DC, DH, DW}, wd[4] = {DC, 1, 3, 3}, bd[1] = {DC}, yd[4] = {DN, DC, OH, OW};
    static int64_t strides[2] = {2, 1}, pads[4] = {1, 1, 1, 1};
    static char *cin[3] = {"x", "w", "b"}, *rin[1] = {"c"};
    const int f32 = KILN__IR__DATA_TYPE__FLOAT32;
    Kiln__Ir__Attribute *attrs[3] = {int_attr("group", DC), ints("strides", 2, strides), ints("pads", 4, pads)};
    Kiln__Ir__Value *inputs[1] = {value("x", f32, 4, xd)}, *outputs[1] = {value("y", f32, 4, yd)};
    Kiln__Ir__Tensor *inits[2] = {init("w", f32, 4, wd, w, sizeof w), init("b", f32, 1, bd, b, sizeof b)};
    Kiln__Ir__Node *nodes[2] = {node("dw", "Conv", cin, 3, "c", attrs, 3), node("relu", "Relu", rin, 1, "y", NULL, 0)};
    Kiln__Ir__Graph g;
    kiln__ir__graph__init(&g);
    g.name = "depthwise";
    g.n_inputs = 1; g.inputs = inputs; g.n_outputs = 1; g.outputs = outputs;
    g.n_initializers = 2; g.initializers = inits; g.n_nodes = 2; g.nodes = nodes;
    size_t gsize;
    uint8_t *gbytes = ak_test_pack(&g, &gsize);
    kiln_plugin_bytes graph = {sizeof graph, gbytes, gsize, KILN_PLUGIN_FORMAT_IR_GRAPH, 0};
    kiln_plugin_compile_options options = {sizeof options, "npu-nc2", 2, 0, 0, NULL, NULL};
    kiln_plugin_payload payload = {sizeof payload, NULL, 0, NULL, NULL};
    kiln_plugin_error *e = backend->compile(backend->context, &graph, &options, &payload);
    EXPECT(!e, "depthwise: compile: %s", e ? e->message : "");
    free(gbytes);
    if (e) { free(e); return; }
    size_t size = payload.size;
    uint8_t *valid = malloc(size);
    memcpy(valid, payload.data, size);
    backend->release(backend->context, payload.owner);
    npu_program p;
    decoded(valid, size, &p);
    uint32_t offset_dmas = 0, macs = 0;
    for (uint32_t i = 0; i < p.insn_count; i++) {
        const npu_insn *n = &p.insns[i];
        offset_dmas += (n->opcode == NPU_DMA_LOAD || n->opcode == NPU_DMA_STORE) && NPU_DMA_PARTITION(n->func) > 0;
        macs += n->opcode == NPU_VECTOR && n->d == NPU_VECTOR_MAC;
    }
    EXPECT(offset_dmas > 0 && macs > 0, "depthwise: %u DMAs with a first partition, %u multiply-accumulates (want both > 0)", offset_dmas, macs);
    npu_program_free(&p);
    EXPECT(run_one(valid, size, x, 4, xd, got, DN * DC * OH * OW) == 0, "depthwise: the valid payload does not run");
    double worst = 0;
    for (size_t i = 0; i < DN * DC * OH * OW; i++) { double d = fabs((double)got[i] - want[i]); worst = d > worst ? d : worst; }
    EXPECT(worst <= 1e-5, "depthwise: the simulated result differs from the C reference by %g", worst);
    uint8_t *bad = malloc(size);
    size_t loaded = 0;
    for (int trial = 0; trial < 300; trial++) {
        memcpy(bad, valid, size);
        *seed = *seed * 1664525u + 1013904223u;
        bad[(*seed >> 4) % size] ^= (uint8_t)(1u << ((*seed >> 24) % 8));
        loaded += run_one(bad, size, x, 4, xd, NULL, 0) != 1;
    }
    printf("payload_robustness: depthwise Conv matches the C reference (largest difference %.3g; %u first-partition DMAs, %u multiply-accumulates); "
           "300 corruptions: %zu loaded, none crashed\n", worst, offset_dmas, macs, loaded);
    free(bad);
    free(valid);
}

/* The MLP graph compiled for two cores (placement batch, then pipeline: a version 3 payload with views and a core
 * table) must compute what one core computes (Y, checked first); then impossible views and core tables are refused. */
static void two_core_case(const uint8_t *gbytes, size_t gsize) {
    kiln_plugin_bytes graph = {sizeof graph, gbytes, gsize, KILN_PLUGIN_FORMAT_IR_GRAPH, 0};
    static const char *const keys[2] = {"cores", "placement"};
    const char *placements[2] = {"batch", "pipeline"};
    for (int k = 0; k < 2; k++) {
        const char *values[2] = {"2", placements[k]};
        kiln_plugin_compile_options options = {sizeof options, "npu-nc2", 2, 0, 2, keys, values};
        kiln_plugin_payload payload = {sizeof payload, NULL, 0, NULL, NULL};
        kiln_plugin_error *e = backend->compile(backend->context, &graph, &options, &payload);
        EXPECT(!e, "two cores (%s): compile: %s", placements[k], e ? e->message : "");
        if (e) { free(e); continue; }
        size_t size = payload.size;
        uint8_t *valid = malloc(size);
        memcpy(valid, payload.data, size);
        backend->release(backend->context, payload.owner);
        float got[M * N];
        char why[512];
        EXPECT(load_and_run(valid, size, got, why, sizeof why) == 0, "two cores (%s): does not run: %s", placements[k], why);
        double worst = 0;
        for (size_t i = 0; i < M * N; i++) { double d = fabs((double)got[i] - Y[i]); worst = d > worst ? d : worst; }
        EXPECT(worst <= 1e-5, "two cores (%s): differs from the C reference by %g", placements[k], worst);
        npu_program p;
        decoded(valid, size, &p);
        uint32_t on1 = 0, views = 0, view = 0;
        for (uint32_t i = 0; i < p.insn_count; i++) on1 += p.core_of[i] == 1;
        for (uint32_t t = 0; t < p.tensor_count; t++) if (p.tensors[t].kind == NPU_T_VIEW) { views++; view = t; }
        EXPECT(p.cores == 2 && on1 > 0 && on1 < p.insn_count && views > 0, "two cores (%s): %u cores, %u of %u instructions on core 1, %u views",
               placements[k], p.cores, on1, p.insn_count, views);
        printf("payload_robustness: two cores (%s) match the C reference (largest difference %.3g; %u of %u instructions on core 1, %u views)\n",
               placements[k], worst, on1, p.insn_count, views);
        if (k == 1) {
            /* Each image's bridge (core 1's one-element store into the barrier scratch tensor) waits for core 0's stores of
             * the image's stage 1 and for every earlier store of core 1: the stores of a core count on one semaphore, and
             * an op's loads trust that count to mean every store before them is done, so a bridge that completed ahead of
             * the previous image's stage 2 would let that stage read a result not yet stored. */
            uint32_t bridges = 0, ordered = 0, stores1 = 0, done1 = NPU_NONE;
            for (uint32_t i = 0; i < p.insn_count; i++) {
                const npu_insn *n = &p.insns[i];
                if (n->opcode != NPU_DMA_STORE || p.core_of[i] != 1) continue;
                if (done1 == NPU_NONE) done1 = n->signal_sem[1];
                const npu_tensor *t = &p.tensors[n->a];
                if (t->kind == NPU_T_SCRATCH && t->elements == 1 && n->parts == 1 && n->cols == 1) {
                    bridges++;
                    ordered += n->wait_sem[1] == done1 && n->wait_value[1] == stores1;
                }
                stores1++;
            }
            EXPECT(bridges > 1 && ordered == bridges, "pipeline: %u of %u bridges wait for all of core 1's earlier stores", ordered, bridges);
        }
        if (k == 0 && views) {
            npu_tensor saved = p.tensors[view];
            p.tensors[view].offset = p.tensors[saved.base].elements; expect_refused(&p, "a view past its base", "passes the end"); p.tensors[view] = saved;
            p.tensors[view].base = view; expect_refused(&p, "a view of itself", "not an earlier"); p.tensors[view] = saved;
            uint32_t c = 0;
            while (c < p.tensor_count && p.tensors[c].kind != NPU_T_CONST) c++;
            if (c < view) { p.tensors[view].base = c; expect_refused(&p, "a view of a constant", "not an earlier"); p.tensors[view] = saved; }
            p.cores = 3; expect_refused(&p, "3 cores", "cores"); p.cores = 2;
            p.core_of[0] = 2; expect_refused(&p, "an instruction on core 2 of 2", "core 2"); p.core_of[0] = 0;
            npu_insn *st = first(&p, NPU_DMA_STORE), saved_st = *st;
            for (uint32_t t = 0; t < p.tensor_count; t++)
                if (p.tensors[t].kind == NPU_T_VIEW && p.tensors[p.tensors[t].base].kind == NPU_T_INPUT) { st->a = t; st->b = 0; break; }
            expect_refused(&p, "a store into a view of an input", "read-only"); *st = saved_st;
        }
        npu_program_free(&p);
        free(valid);
    }
}

/* Builds the valid payload, checks it, then the malformed ones. */
int main(void) {
    backend = ak_test_backend();
    uint32_t s = 12345;
    float *arrays[4] = {X, W, B, G};
    size_t counts[4] = {M * K, K * N, N, N};
    for (int a = 0; a < 4; a++)
        for (size_t i = 0; i < counts[a]; i++) { s = s * 1664525u + 1013904223u; arrays[a][i] = (float)(s >> 8) / 8388608.0f - 1.0f; }
    size_t gsize;
    uint8_t *gbytes = graph_bytes(&gsize);
    kiln_plugin_bytes graph = {sizeof graph, gbytes, gsize, KILN_PLUGIN_FORMAT_IR_GRAPH, 0};
    setenv("KILN_NPU_AUTO_CAST", "none", 1);
    kiln_plugin_compile_options options = {sizeof options, "npu-nc2", 2, 0, 0, NULL, NULL};
    kiln_plugin_payload payload = {sizeof payload, NULL, 0, NULL, NULL};
    kiln_plugin_error *e = backend->compile(backend->context, &graph, &options, &payload);
    if (e) { printf("FAIL: compile: %s\n", e->message); return 1; }
    size_t size = payload.size;
    uint8_t *valid = malloc(size);
    memcpy(valid, payload.data, size);
    backend->release(backend->context, payload.owner);

    /* the valid payload computes relu(x·W + b)·g */
    float got[M * N];
    char why[512];
    int r = load_and_run(valid, size, got, why, sizeof why);
    EXPECT(r == 0, "the valid payload does not run: %s", why);
    double worst = 0;
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float acc = 0;
            for (int k = 0; k < K; k++) acc += X[m * K + k] * W[k * N + n];
            float h = acc + B[n];
            Y[m * N + n] = (h > 0 ? h : 0) * G[n];
            double d = fabs((double)got[m * N + n] - Y[m * N + n]);
            worst = d > worst ? d : worst;
        }
    EXPECT(worst <= 1e-5, "the simulated result differs from the C reference by %g", worst);
    two_core_case(gbytes, gsize);

    /* every truncation */
    size_t refused = 0;
    for (size_t cut = 0; cut < size; cut++) refused += load_and_run(valid, cut, NULL, why, sizeof why) == 1;
    EXPECT(refused == size, "%zu of %zu truncations were refused at load", refused, size);

    /* random corruptions: 1-4 bytes each, anywhere; those that load are executed */
    uint8_t *bad = malloc(size);
    size_t loaded = 0, ran = 0;
    for (int trial = 0; trial < 2000; trial++) {
        memcpy(bad, valid, size);
        int flips = 1 + trial % 4;
        for (int f = 0; f < flips; f++) {
            s = s * 1664525u + 1013904223u;
            size_t at = (s >> 4) % size;
            s = s * 1664525u + 1013904223u;
            bad[at] ^= (uint8_t)(1u << ((s >> 20) % 8)) | (uint8_t)(trial % 7 == 0 ? 0xff : 0);
        }
        int rr = load_and_run(bad, size, NULL, why, sizeof why);
        loaded += rr != 1;
        ran += rr == 0;
    }
    free(bad);

    /* hand-made impossible programs */
    npu_program p;
    decoded(valid, size, &p);
    npu_insn *dma = first(&p, NPU_DMA_LOAD), saved = *dma;
    dma->b = 0xfffffff0u; expect_refused(&p, "a DMA past its tensor", "DMA reaches element"); *dma = saved;
    dma->func = 16; expect_refused(&p, "DMA queue 16", "DMA queue"); *dma = saved;
    dma->func = (127u << 8) | 1u; dma->parts = 2; expect_refused(&p, "a DMA tile from partition 127 of 2 partitions", "passes partition"); *dma = saved;
    dma->func = 1u << 16; expect_refused(&p, "a DMA func word with bit 16 set", "bits above 15"); *dma = saved;
    dma->e = NPU_SBUF_PARTITION_BYTES - 4; expect_refused(&p, "an SBUF tile past the partition", "does not fit"); *dma = saved;
    npu_insn *st = first(&p, NPU_DMA_STORE), saved_st = *st;
    st->a = p.inputs[0]; expect_refused(&p, "a store into an input", "read-only"); *st = saved_st;
    npu_insn *mm = first(&p, NPU_MULTIPLY_MOVING), saved_mm = *mm;
    mm->b = 8; expect_refused(&p, "PSUM bank 8", "PSUM bank"); *mm = saved_mm;
    mm->parts = saved_mm.parts - 1; expect_refused(&p, "MultiplyMoving against a stationary of other rows", "stationary"); *mm = saved_mm;
    mm->wait_value[0] = 1000000; expect_refused(&p, "a wait no instruction satisfies", "deadlock"); *mm = saved_mm;
    mm->signal_sem[0] = p.semaphore_count; expect_refused(&p, "an unknown semaphore", "semaphore"); *mm = saved_mm;
    npu_insn *act = first(&p, NPU_ACTIVATE), saved_act = *act;
    act->func = 9; expect_refused(&p, "activation function 9", "activation function"); *act = saved_act;
    npu_insn *vec = first(&p, NPU_VECTOR), saved_vec = *vec;
    vec->d = 3; expect_refused(&p, "vector operand mode 3", "vector operand mode"); *vec = saved_vec;
    vec->d = NPU_VECTOR_MAC; vec->b = 0; vec->f = NPU_SBUF_PARTITION_BYTES - 4;
    expect_refused(&p, "a multiply-accumulate addend past the partition", "addend tile"); *vec = saved_vec;
    vec->d = 1; vec->b = NPU_SBUF_PARTITION_BYTES - 2; expect_refused(&p, "a per-partition operand past the partition", "does not fit"); *vec = saved_vec;
    vec->opcode = NPU_REDUCE; vec->func = NPU_ALU_MUL; expect_refused(&p, "a product reduction", "reduction"); *vec = saved_vec;
    /* version 4's ops (VectorE min, sub, div; ScalarE erf): a program using one is written as version 4 and runs; the same
     * bytes labelled version 3, as a plugin that predates them would read them, are refused by name */
    for (int k = 0; k < 2; k++) {
        if (k == 0) vec->func = NPU_ALU_MIN; else act->func = NPU_FUNC_ERF;
        npu_buffer b4;
        npu_encode(&p, &b4);
        uint32_t v = 0;
        if (!b4.failed && b4.size > 8) memcpy(&v, b4.data + 4, 4);
        EXPECT(v == 4, "a program using %s is written as version %u, want 4", k ? "erf" : "min", v);
        EXPECT(v == 4 && load_and_run(b4.data, b4.size, NULL, why, sizeof why) == 0, "the version 4 payload using %s runs: %s", k ? "erf" : "min", why);
        v = 3;
        if (b4.size > 8) memcpy(b4.data + 4, &v, 4);
        EXPECT(load_and_run(b4.data, b4.size, NULL, why, sizeof why) == 1 && strstr(why, k ? "activation function 8" : "vector op 3"),
               "%s in a version 3 payload: '%s'", k ? "erf" : "min", why);
        free(b4.data);
        *vec = saved_vec; *act = saved_act;
    }
    vec->opcode = NPU_REDUCE; vec->func = NPU_ALU_ADD; vec->d = 3; expect_refused(&p, "reduction accumulate flag 3", "accumulate flag"); *vec = saved_vec;
    uint32_t in = p.inputs[0];
    int64_t dims[2] = {p.tensors[in].dims[0], p.tensors[in].dims[1]};
    p.tensors[in].dims[0] = (int64_t)1 << 40; p.tensors[in].dims[1] = (int64_t)1 << 40;
    expect_refused(&p, "a shape whose element count overflows", "invalid shape");
    p.tensors[in].dims[0] = dims[0]; p.tensors[in].dims[1] = dims[1];
    p.auto_cast = 7; expect_refused(&p, "auto-cast 7", "auto-cast"); p.auto_cast = 0;
    uint32_t saved_out = p.outputs[0];
    p.outputs[0] = p.inputs[0]; expect_refused(&p, "an output list naming an input", "not a distinct output"); p.outputs[0] = saved_out;
    /* the layer table (version 2): the MatMul's layer names the nodes fused into it; a bad table is a load error */
    EXPECT(p.layers.count == 2 && strcmp(p.layers.names[0], "MatMul+Add+Relu") == 0 && strcmp(p.layers.names[1], "Mul") == 0,
           "layer table: %u layers, first '%s'", p.layers.count, p.layers.count ? p.layers.names[0] : "");
    uint32_t saved_layer = p.layers.of[0];
    p.layers.of[0] = p.layers.count; expect_refused(&p, "a layer index past the table", "layer index"); p.layers.of[0] = saved_layer;
    p.layers.of[p.insn_count - 1] = 0xffffffffu; expect_refused(&p, "layer index 2^32-1", "layer index"); p.layers.of[p.insn_count - 1] = 1;
    char *saved_name = p.layers.names[1];
    p.layers.names[1] = ""; expect_refused(&p, "an empty layer name", "layer name"); p.layers.names[1] = saved_name;
    uint32_t saved_count = p.layers.count;
    p.layers.count = 0; expect_refused(&p, "instructions without a layer table", "layer table"); p.layers.count = saved_count;
    npu_program_free(&p);
    {
        /* a NUL inside a layer name, written by hand at the end of the valid payload's table */
        const char *name = "Mul";
        uint8_t *copy = malloc(size);
        memcpy(copy, valid, size);
        uint8_t *at = NULL;
        for (size_t i = 4; i + 3 <= size; i++) if (memcmp(copy + i, name, 3) == 0 && copy[i - 4] == 3) at = copy + i;
        EXPECT(at != NULL, "the layer name 'Mul' is in the payload");
        if (at) { at[1] = 0; EXPECT(load_and_run(copy, size, NULL, why, sizeof why) == 1 && strstr(why, "NUL"), "a NUL in a layer name: '%s'", why); }
        free(copy);
    }
    /* profile (ABI 1.4): an error before any run; after one, one step per instruction, named by layer */
    {
        kiln_plugin_bytes pb = {sizeof pb, valid, size, KILN_PLUGIN_FORMAT_OPAQUE, 0};
        void *x = NULL;
        kiln_plugin_error *le = backend->load(backend->context, &pb, NULL, &x);
        EXPECT(!le, "load for the profile");
        if (!le) {
            kiln_plugin_profile prof = {sizeof prof, 0, 0, 0, NULL, NULL};
            kiln_plugin_error *pe = backend->profile(backend->context, x, &prof);
            EXPECT(pe && strstr(pe->message, "has not run"), "profile before any run is an error");
            free(pe);
            int64_t shape[2] = {M, K}, out_shape[KILN_PLUGIN_MAX_RANK];
            kiln_tensor in = {X, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, shape, NULL, 0};
            kiln_tensor result = {NULL, {KILN_DEVICE_CPU, 0}, 0, {0, 0, 0}, out_shape, NULL, 0};
            kiln_plugin_error *xe = backend->execute(backend->context, x, &in, 1, &result, 1);
            EXPECT(!xe, "execute for the profile");
            free(xe);
            free(result.data);
            pe = backend->profile(backend->context, x, &prof);
            EXPECT(!pe, "profile after a run: %s", pe ? pe->message : "");
            free(pe);
            size_t mm_steps = 0, mul_steps = 0, other = 0;
            uint64_t end = 0;
            for (size_t i = 0; !pe && i < prof.step_count; i++) {
                const kiln_plugin_profile_step *st = &prof.steps[i];
                mm_steps += strcmp(st->name, "MatMul+Add+Relu") == 0;
                mul_steps += strcmp(st->name, "Mul") == 0;
                other += strcmp(st->name, "MatMul+Add+Relu") != 0 && strcmp(st->name, "Mul") != 0;
                if (st->start_cycle + st->cycles > end) end = st->start_cycle + st->cycles;
            }
            EXPECT(!pe && mm_steps > 0 && mul_steps > 0 && other == 0 && prof.clock_hz == 2.8e9, "profile steps: %zu MatMul, %zu Mul, %zu other, clock %g", mm_steps, mul_steps, other, prof.clock_hz);
            EXPECT(!pe && end <= prof.total_cycles + 1 && end + 1 >= prof.total_cycles, "the last step ends at %llu, the run at %llu", (unsigned long long)end, (unsigned long long)prof.total_cycles);
            if (!pe) backend->release(backend->context, prof.owner);
            backend->unload(backend->context, x);
        }
    }
    /* ABI negotiation (ak_query): the plugin answers the highest minor both speak, 1.2 up to 1.5 */
    /* (the plugin keeps the host it was queried by: static hosts, and the test host queried again afterwards) */
    static kiln_plugin_host hosts[6]; /* [0..4] offer 1.2 .. 1.6, [5] only 1.0 to 1.1 */
    for (uint32_t offered = 2; offered <= 6; offered++) {
        kiln_plugin_host *hp = &hosts[offered - 2];
        *hp = ak_test_host();
        hp->abi_max_minor = offered;
        const kiln_plugin_header *header = NULL;
        kiln_plugin_error *qe = kiln_plugin_query_v1(hp, &header);
        uint32_t want = offered < 5 ? offered : 5;
        EXPECT(!qe && header && header->abi_major == 1 && header->abi_minor == want, "a host offering 1.%u: answered 1.%u, want 1.%u", offered,
               header ? header->abi_minor : 0, want);
        free(qe);
    }
    {
        kiln_plugin_host *hp = &hosts[5];
        *hp = ak_test_host();
        hp->abi_max_minor = 1;
        const kiln_plugin_header *header = NULL;
        kiln_plugin_error *qe = kiln_plugin_query_v1(hp, &header);
        EXPECT(qe && qe->code == KILN_ERROR_VERSION_MISMATCH, "a host of 1.0 to 1.1 is refused with a version mismatch");
        free(qe);
    }
    backend = ak_test_backend();
    depthwise_case(&s);
    EXPECT(load_and_run("KNPU", 4, NULL, why, sizeof why) == 1, "4 bytes of header refused");
    EXPECT(load_and_run(NULL, 0, NULL, why, sizeof why) == 1, "an empty payload refused");

    printf("payload_robustness: valid payload matches the C reference (largest difference %.3g)\n", worst);
    printf("payload_robustness: %zu truncations refused; 2000 corruptions: %zu loaded, %zu of those ran cleanly, the rest were errors\n", refused, loaded, ran);
    printf("payload_robustness: %s\n", failures ? "FAIL" : "PASS");
    free(valid);
    free(gbytes);
    ak_test_release();
    return failures ? 1 : 0;
}
