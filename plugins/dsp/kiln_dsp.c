/*
 * kiln_dsp.c — kiln.dsp, a Kiln backend plugin (plugin ABI 1.2 to 1.4) in the style of a Qualcomm Hexagon HVX DSP
 * target, written against the public headers only (include/kiln/kiln_plugin.h and the generated kiln.ir C
 * code in bindings/c/proto).
 *
 * Backend "sampledsp.hvx" (a vendor.target name: the kiln. prefix is reserved for built-in backends),
 * target "dsp-hvx". It claims QuantizeLinear, DequantizeLinear, QLinearMatMul and
 * QLinearConv (per-tensor scales and zero points that are initializers, int8/uint8), MaxPool on
 * uint8/int8 and float32 Relu, com.microsoft QLinearAdd (dsp_qadd) and QLinearAveragePool / QLinearGlobalAveragePool
 * (dsp_avgpool, when x and y share their quantization), and Conv in QDQ form (DequantizeLinear -> Conv -> QuantizeLinear, lowered as QLinearConv),
 * compiles a graph of them into its own payload (program.h, compat "sampledsp.hvx/kdsp1"), and executes it with the
 * kernels of kernels.c running on the C functional model of HVX (hvx.h) — the same kernel source that
 * tests/run-hvx-exact proves bit-exact on the real instruction set under qemu-hexagon.
 *
 * A simulated memory and timing model estimates what a run would cost on the DSP: every operand is staged
 * DDR -> VTCM by DMA in tiles of at most the VTCM size, results go back the same way, and the HVX work is
 * counted in vector instructions. The parameters that are assumptions (not measurements) are marked so in
 * the device properties and in Documentation/targets/DSP.md. The estimate of the last execute is reported as
 * device properties ("estimate.*"), logged at debug level, written to KILN_DSP_REPORT=FILE ("{run}" in FILE
 * replaced by the run's number) and, per executable, kept for the profile callback (ABI 1.4: `kiln run
 * --profile`), each op's share on "HVX" and "DMA" named by the graph node it came from.
 */
#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"
#include "kernels.h"
#include "program.h"
#include "../accelkit/ak_plugin.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DSP_BACKEND_NAME "sampledsp.hvx" /* plugin-check reserves the kiln. prefix for built-in backends */
#define DSP_PLUGIN_NAME "kiln-dsp"
#define DSP_VERSION "0.1.0"
#define DSP_TARGET "dsp-hvx"
#define DSP_COMPAT DSP_BACKEND_NAME "/kdsp1"

/* Memory/timing model. Facts: HVX vectors are 128 bytes (HVX_BYTES). Assumptions: the rest. */
#define DSP_VTCM_BYTES ((uint64_t)8 << 20)      /* assumed VTCM size (8 MiB) */
#define DSP_HVX_CONTEXTS 4                       /* assumed HVX contexts running in parallel */
#define DSP_CLOCK_HZ 1000000000ull               /* assumed 1.0 GHz, 1 vector op per context per cycle */
#define DSP_DMA_BYTES_PER_SECOND 10000000000ull  /* assumed 10 GB/s DDR <-> VTCM */

/* Work a single op may do (elements × reduction length): a payload asking for more is refused rather
 * than left running for hours. */
#define DSP_MAX_OP_WORK ((uint64_t)1 << 36)

/* Output channels of one QLinearConv (bounds the per-channel requantization table). */
#define DSP_MAX_CHANNELS 4096

/* ---- the last run's estimate (device properties) ------------------------------------------------- */

static _Atomic uint64_t last_hvx_ops, last_dma_bytes, last_tiles, last_cycles, runs;

/* What one execute cost in the model. */
typedef struct dsp_cost { uint64_t hvx_ops, dma_bytes, tiles; } dsp_cost;

/* Counts one op: its operand and result bytes cross by DMA in VTCM-sized tiles; its vector work runs on
 * DSP_HVX_CONTEXTS contexts. */
static void cost_add(dsp_cost *c, uint64_t bytes_in, uint64_t bytes_out, uint64_t vector_ops) {
    uint64_t bytes = bytes_in + bytes_out;
    c->dma_bytes += bytes;
    c->tiles += bytes ? (bytes + DSP_VTCM_BYTES / 2 - 1) / (DSP_VTCM_BYTES / 2) : 0; /* half the VTCM per tile: double buffering */
    c->hvx_ops += vector_ops;
}

/* The HVX cycles of `c`'s vector work spread over the contexts. */
static uint64_t compute_cycles(const dsp_cost *c) { return (c->hvx_ops + DSP_HVX_CONTEXTS - 1) / DSP_HVX_CONTEXTS; }
/* The DMA cycles of `c`'s bytes. */
static uint64_t dma_cycles(const dsp_cost *c) { return c->dma_bytes * DSP_CLOCK_HZ / DSP_DMA_BYTES_PER_SECOND; }

/* Cycles of a run: DMA and compute overlap (double-buffered tiles), so the longer of the two. */
static uint64_t cost_cycles(const dsp_cost *c) {
    uint64_t compute = compute_cycles(c), dma = dma_cycles(c);
    return compute > dma ? compute : dma;
}

/* ---- names, types, initializers ------------------------------------------------------------------ */

/* The element type and rank recorded for `name` in `g` (inputs, initializers, value types), or 0/-1. */
static void value_type(const Kiln__Ir__Graph *g, const char *name, int *dtype, int *rank) {
    *dtype = 0;
    *rank = -1;
    for (size_t i = 0; i < g->n_initializers; i++)
        if (strcmp(g->initializers[i]->name, name) == 0) { *dtype = g->initializers[i]->dtype; *rank = (int)g->initializers[i]->n_shape; return; }
    const Kiln__Ir__Value *const *lists[2] = {(const Kiln__Ir__Value *const *)g->inputs, (const Kiln__Ir__Value *const *)g->value_types};
    size_t counts[2] = {g->n_inputs, g->n_value_types};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            const Kiln__Ir__Value *v = lists[l][i];
            if (strcmp(v->name, name) != 0) continue;
            if (v->type && v->type->value_case == KILN__IR__TYPE__VALUE_TENSOR && v->type->tensor) {
                *dtype = v->type->tensor->dtype;
                *rank = v->type->tensor->has_shape ? (int)v->type->tensor->n_dims : -1;
            }
            return;
        }
}

/* The dims of `name` when its type records a shape whose dims are all fixed: its rank (dims into `dims`, at most
 * DSP_MAX_RANK), else -1. */
static int fixed_dims(const Kiln__Ir__Graph *g, const char *name, int64_t *dims) {
    for (size_t i = 0; i < g->n_value_types + g->n_inputs; i++) {
        const Kiln__Ir__Value *v = i < g->n_inputs ? g->inputs[i] : g->value_types[i - g->n_inputs];
        if (strcmp(v->name, name) != 0) continue;
        if (!v->type || v->type->value_case != KILN__IR__TYPE__VALUE_TENSOR || !v->type->tensor || !v->type->tensor->has_shape) return -1;
        const Kiln__Ir__TensorType *t = v->type->tensor;
        if (t->n_dims > DSP_MAX_RANK) return -1;
        for (size_t d = 0; d < t->n_dims; d++) {
            if (t->dims[d]->value_case != KILN__IR__DIM__VALUE_FIXED) return -1;
            dims[d] = t->dims[d]->fixed;
        }
        return (int)t->n_dims;
    }
    return -1;
}

static long producer_of(const Kiln__Ir__Graph *g, const char *name);

/* The fixed dims of `name` as fixed_dims finds them, or, for the result of a com.microsoft QLinearAdd,
 * QLinearAveragePool or QLinearGlobalAveragePool (whose shapes the host's inference may not record), computed from
 * the dims of their inputs (at most `depth` producers back). Its rank, or -1. */
static int inferred_dims(const Kiln__Ir__Graph *g, const char *name, int64_t *dims, int depth) {
    int rank = fixed_dims(g, name, dims);
    const Kiln__Ir__Tensor *t = rank < 0 ? ak_initializer(g, name) : NULL;
    if (t && t->n_shape <= DSP_MAX_RANK) {
        for (size_t d = 0; d < t->n_shape; d++) dims[d] = t->shape[d];
        return (int)t->n_shape;
    }
    long at = rank < 0 && depth > 0 ? producer_of(g, name) : -1;
    if (at < 0) return rank;
    const Kiln__Ir__Node *n = g->nodes[at];
    if (strcmp(n->domain, "com.microsoft") != 0 || n->n_inputs < 5) return -1;
    if (strcmp(n->op, "QLinearAdd") == 0 && n->n_inputs >= 4) { /* multidirectional broadcasting */
        int64_t a[DSP_MAX_RANK], b[DSP_MAX_RANK];
        int ra = inferred_dims(g, n->inputs[0], a, depth - 1), rb = inferred_dims(g, n->inputs[3], b, depth - 1);
        if (ra < 0 || rb < 0) return -1;
        rank = ra > rb ? ra : rb;
        for (int d = 0; d < rank; d++) {
            int64_t da = d + ra >= rank ? a[d + ra - rank] : 1, db = d + rb >= rank ? b[d + rb - rank] : 1;
            if (da != db && da != 1 && db != 1) return -1;
            dims[d] = da == 1 ? db : da;
        }
        return rank;
    }
    int global = strcmp(n->op, "QLinearGlobalAveragePool") == 0;
    if (!global && strcmp(n->op, "QLinearAveragePool") != 0) return -1;
    if (inferred_dims(g, n->inputs[0], dims, depth - 1) != 4) return -1;
    if (global) { dims[2] = dims[3] = 1; return 4; }
    const Kiln__Ir__Attribute *k = ak_attribute(n, "kernel_shape"), *st = ak_attribute(n, "strides"), *p = ak_attribute(n, "pads");
    if (!k || k->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !k->ints || k->ints->n_values != 2) return -1;
    if ((st && (st->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !st->ints || st->ints->n_values != 2)) ||
        (p && (p->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !p->ints || p->ints->n_values != 4)) || ak_int_attr(n, "ceil_mode", 0) != 0)
        return -1;
    const Kiln__Ir__Attribute *ap = ak_attribute(n, "auto_pad");
    int valid = ap && ap->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(ap->s, "VALID") == 0;
    for (int d = 0; d < 2; d++) {
        int64_t kd = k->ints->values[d], sd = st ? st->ints->values[d] : 1, pd = p && !valid ? p->ints->values[d] + p->ints->values[d + 2] : 0;
        if (kd < 1 || sd < 1 || pd < 0 || dims[2 + d] + pd < kd) return -1;
        dims[2 + d] = (dims[2 + d] + pd - kd) / sd + 1;
    }
    return 4;
}

/* The one element of a 1-element initializer of `dtype` as a double; 0 when it is not one. */
static int scalar_initializer(const Kiln__Ir__Graph *g, const char *name, int dtype, double *out) {
    const Kiln__Ir__Tensor *t = ak_initializer(g, name);
    if (!t || (int)t->dtype != dtype || t->data_case != KILN__IR__TENSOR__DATA_RAW) return 0;
    for (size_t d = 0; d < t->n_shape; d++) if (t->shape[d] != 1) return 0;
    size_t size = dsp_dtype_size((uint32_t)dtype);
    if (!size || t->raw.len != size) return 0;
    const uint8_t *p = t->raw.data;
    switch (dtype) {
    case DSP_F32: { float f; memcpy(&f, p, 4); *out = f; return 1; }
    case DSP_U8: *out = p[0]; return 1;
    case DSP_I8: *out = (int8_t)p[0]; return 1;
    default: return 0;
    }
}

/* The float32 values of an initializer of rank 0 or 1 with 1 or `count` elements (per-tensor or per-channel),
 * all positive and finite: how many (1 or count), or 0 when it is not one. */
static size_t scale_initializer(const Kiln__Ir__Graph *g, const char *name, size_t count, float *values) {
    const Kiln__Ir__Tensor *t = ak_initializer(g, name);
    if (!t || (int)t->dtype != DSP_F32 || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->n_shape > 1) return 0;
    size_t n = t->raw.len / 4;
    if (t->raw.len % 4 || (n != 1 && n != count) || (t->n_shape == 1 && (int64_t)n != t->shape[0])) return 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(&values[i], t->raw.data + 4 * i, 4);
        if (!(values[i] > 0) || !isfinite(values[i])) return 0;
    }
    return n;
}

/* The output type of claimed node `node` (for the types of later nodes). */
static int output_dtype(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *node) {
    const char *op = node->op;
    if (strcmp(op, "DequantizeLinear") == 0 || strcmp(op, "Relu") == 0) return DSP_F32;
    if (strcmp(op, "QLinearAveragePool") == 0 || strcmp(op, "QLinearGlobalAveragePool") == 0) {
        int d = 0, r;
        if (node->n_inputs > 4 && node->inputs[4][0]) value_type(g, node->inputs[4], &d, &r);
        return d ? d : DSP_U8;
    }
    if (strcmp(op, "MaxPool") == 0) {
        int d = 0, r;
        if (node->n_inputs > 0) value_type(g, node->inputs[0], &d, &r);
        return d ? d : DSP_U8;
    }
    size_t zp = strcmp(op, "QuantizeLinear") == 0 ? 2 : 7;
    if (node->n_inputs > zp && node->inputs[zp][0]) { int d, r; value_type(g, node->inputs[zp], &d, &r); return d; }
    return DSP_U8;
}

/* Writes a reason into why (size bytes) and returns 1: the rejection of a node. */
#define REJECT(...) do { snprintf(why, size, __VA_ARGS__); return 1; } while (0)

/* The element type of input `name` of a node: recorded in the graph, or in `known` (values claimed nodes produce). */
static int input_dtype(const Kiln__Ir__Graph *g, const char *name, const char *const *known_names, const int *known_types, size_t known_count) {
    int d, r;
    value_type(g, name, &d, &r);
    for (size_t k = 0; !d && k < known_count; k++)
        if (strcmp(known_names[k], name) == 0) d = known_types[k];
    return d;
}

/* Why this backend cannot run com.microsoft node `node` (QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool;
 * into why), or 0 when it can. */
static int rejects_contrib(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *node, const char *const *known_names, const int *known_types,
                           size_t known_count, char *why, size_t size) {
    const char *op = node->op;
    int add = strcmp(op, "QLinearAdd") == 0, global = strcmp(op, "QLinearGlobalAveragePool") == 0;
    int pool = global || strcmp(op, "QLinearAveragePool") == 0;
    if (!add && !pool)
        REJECT("op com.microsoft.%s is not supported (supported in com.microsoft: QLinearAdd, QLinearAveragePool, QLinearGlobalAveragePool; "
               "QLinearMul has no kernel here)", op);
    size_t inputs = add ? 8 : 5;
    if (node->n_inputs != inputs) REJECT("%s with %zu inputs is not supported (all %zu, zero points included, must be given)", op, node->n_inputs, inputs);
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output", op);
    for (size_t i = 0; i < inputs; i++)
        if (!node->inputs[i][0]) REJECT("%s: input %zu is omitted (omitted zero points are not supported)", op, i);
    /* data inputs, scales and zero points by position */
    size_t data[2] = {0, add ? 3 : 0}, scales[3] = {1, add ? 4 : 1, add ? 6 : 3}, zps[3] = {2, add ? 5 : 2, add ? 7 : 4};
    int t = input_dtype(g, node->inputs[0], known_names, known_types, known_count);
    if (t != DSP_U8 && t != DSP_I8) REJECT("%s: input 0 must be uint8 or int8 (it is type %d)", op, t);
    if (add && input_dtype(g, node->inputs[data[1]], known_names, known_types, known_count) != t)
        REJECT("QLinearAdd: A and B must have the same element type (uint8 or int8)");
    float s[3];
    double z[3];
    for (int k = 0; k < 3; k++) {
        if (scale_initializer(g, node->inputs[scales[k]], 1, &s[k]) != 1)
            REJECT("%s: scale input %zu must be a positive float32 initializer with one element (per-axis scales are not supported)", op, scales[k]);
        if (!scalar_initializer(g, node->inputs[zps[k]], t, &z[k]))
            REJECT("%s: zero point input %zu must be an initializer with one element of the data's type (uint8 or int8)", op, zps[k]);
    }
    if (add) {
        /* dsp_qadd: qa = s_a/(2m), qb = s_b/(2m) with m = max(s_a, s_b), qout = 2m/(2^20·s_y), each a Q31 requantization */
        double sa = s[0], sb = s[1], sy = s[2], m = sa > sb ? sa : sb;
        double small = (sa < sb ? sa : sb) / (2 * m), out = 2 * m / (1048576.0 * sy);
        if (small < 1e-9) REJECT("QLinearAdd: A's and B's scales differ by a factor above 5e8 (not supported by the Q31 requantization)");
        if (!(out < 0.999999)) REJECT("QLinearAdd: the output scale %g is below 2^-19 of the larger input scale %g (not supported by dsp_qadd's 2^20 fixed point)", sy, m);
        if (out < 1e-18) REJECT("QLinearAdd: the output scale %g is too large against the input scales", sy);
        return 0;
    }
    /* dsp_avgpool averages the bytes themselves: the result is in x's quantization, so y must share it */
    if (memcmp(&s[0], &s[2], 4) != 0 || z[0] != z[2])
        REJECT("%s: y_scale and y_zero_point must equal x_scale and x_zero_point (the average pooling kernel averages the bytes and does not requantize)", op);
    int64_t dims[DSP_MAX_RANK];
    int rank = inferred_dims(g, node->inputs[0], dims, 16), d, r;
    value_type(g, node->inputs[0], &d, &r);
    if (r < 0) r = rank;
    if (r != 4) REJECT("%s: only 2-D pooling of a rank-4 (NCHW) input of known rank is supported", op);
    const Kiln__Ir__Attribute *a = ak_attribute(node, "channels_last");
    if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || a->i != 0)) REJECT("%s: channels_last 1 (NHWC) is not supported", op);
    if (global) {
        if (rank != 4 || dims[2] < 1 || dims[3] < 1 || dims[2] * dims[3] > 128)
            REJECT("QLinearGlobalAveragePool: the image must have a known size of at most 128 elements (the kernel's int16 window sums)");
        return 0;
    }
    a = ak_attribute(node, "kernel_shape");
    if (!a || a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != 2) REJECT("QLinearAveragePool: kernel_shape must list 2 integers");
    int64_t k[2] = {a->ints->values[0], a->ints->values[1]};
    if (k[0] < 1 || k[1] < 1 || k[0] * k[1] > 128) REJECT("QLinearAveragePool: windows of more than 128 elements are not supported (the kernel's int16 window sums)");
    int64_t pads = 0;
    const char *lists[3] = {"strides", "pads", "dilations"};
    size_t lengths[3] = {2, 4, 2};
    for (int j = 0; j < 3; j++) {
        a = ak_attribute(node, lists[j]);
        if (!a) continue;
        if (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != lengths[j]) REJECT("QLinearAveragePool: attribute %s must list %zu integers", lists[j], lengths[j]);
        for (size_t i = 0; i < a->ints->n_values; i++) {
            int64_t v = a->ints->values[i];
            if (j == 0 && (v < 1 || v > 4096)) REJECT("QLinearAveragePool: strides out of range");
            if (j == 1 && (v < 0 || v >= k[i & 1])) REJECT("QLinearAveragePool: pads must be smaller than the kernel");
            if (j == 2 && v != 1) REJECT("QLinearAveragePool: dilations are not supported");
            if (j == 1) pads += v;
        }
    }
    a = ak_attribute(node, "ceil_mode");
    if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || a->i != 0)) REJECT("QLinearAveragePool: ceil_mode 1 is not supported");
    a = ak_attribute(node, "auto_pad");
    if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "NOTSET") != 0 && strcmp(a->s, "VALID") != 0)
        REJECT("QLinearAveragePool: auto_pad %s is not supported", a->s);
    if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "VALID") == 0) pads = 0;
    a = ak_attribute(node, "count_include_pad");
    if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || (a->i != 0 && a->i != 1))) REJECT("QLinearAveragePool: count_include_pad must be 0 or 1");
    if (a && a->i == 1 && pads > 0 && z[0] != 0)
        REJECT("QLinearAveragePool: count_include_pad 1 with pads needs x_zero_point 0 (the kernel's padding is the byte 0, the real value 0 only then)");
    return 0;
}

/* Why this backend cannot run `node` (into why), or 0 when it can. `known` lists types of values claimed
 * nodes produce (name -> dtype), which the graph may not record. */
static int rejects(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *node, const char *const *known_names, const int *known_types,
                   size_t known_count, char *why, size_t size) {
    const char *op = node->op;
    if (strcmp(node->domain, "com.microsoft") == 0) return rejects_contrib(g, node, known_names, known_types, known_count, why, size);
    if (node->domain[0] && strcmp(node->domain, "ai.onnx") != 0) REJECT("op %s.%s: only the ONNX and com.microsoft domains are supported", node->domain, op);
    int quantize = strcmp(op, "QuantizeLinear") == 0, dequantize = strcmp(op, "DequantizeLinear") == 0;
    int matmul = strcmp(op, "QLinearMatMul") == 0, conv = strcmp(op, "QLinearConv") == 0, relu = strcmp(op, "Relu") == 0;
    int maxpool = strcmp(op, "MaxPool") == 0;
    if (!quantize && !dequantize && !matmul && !conv && !relu && !maxpool)
        REJECT("op %s is not supported (supported: QuantizeLinear, DequantizeLinear, QLinearMatMul, QLinearConv, MaxPool on uint8/int8, Relu)", op);
    size_t min_in = relu || maxpool ? 1 : quantize || dequantize ? 2 : 8, max_in = relu || maxpool ? 1 : quantize || dequantize ? 3 : 9;
    if (node->n_inputs < min_in || node->n_inputs > max_in) REJECT("%s with %zu inputs is not supported", op, node->n_inputs);
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output", op);
    int dtypes[9], ranks[9];
    for (size_t i = 0; i < node->n_inputs; i++) {
        dtypes[i] = 0; ranks[i] = -1;
        if (!node->inputs[i][0]) {
            if (i < min_in && !(matmul || conv)) REJECT("%s: required input %zu is omitted", op, i);
            continue;
        }
        value_type(g, node->inputs[i], &dtypes[i], &ranks[i]);
        for (size_t k = 0; !dtypes[i] && k < known_count; k++)
            if (strcmp(known_names[k], node->inputs[i]) == 0) dtypes[i] = known_types[k];
        if (!dtypes[i]) REJECT("%s: the element type of input '%s' is unknown", op, node->inputs[i]);
    }
    if (relu) {
        if (dtypes[0] != DSP_F32) REJECT("Relu: input has element type %d; only float32 is supported", dtypes[0]);
        return 0;
    }
    if (maxpool) {
        if (dtypes[0] != DSP_U8 && dtypes[0] != DSP_I8) REJECT("MaxPool: only uint8 and int8 inputs are supported (type %d)", dtypes[0]);
        if (ranks[0] != 4) REJECT("MaxPool: only 2-D pooling of a rank-4 input of known rank is supported");
        const Kiln__Ir__Attribute *a = ak_attribute(node, "kernel_shape");
        if (!a || a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != 2) REJECT("MaxPool: kernel_shape must list 2 integers");
        int64_t k[2] = {a->ints->values[0], a->ints->values[1]};
        if (k[0] < 1 || k[1] < 1 || k[0] > 256 || k[1] > 256) REJECT("MaxPool: kernel_shape out of range");
        const char *lists[3] = {"strides", "pads", "dilations"};
        size_t lengths[3] = {2, 4, 2};
        for (int j = 0; j < 3; j++) {
            a = ak_attribute(node, lists[j]);
            if (!a) continue;
            if (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != lengths[j]) REJECT("MaxPool: attribute %s must list %zu integers", lists[j], lengths[j]);
            for (size_t i = 0; i < a->ints->n_values; i++) {
                int64_t v = a->ints->values[i];
                if (j == 0 && (v < 1 || v > 4096)) REJECT("MaxPool: strides out of range");
                if (j == 1 && (v < 0 || v >= k[i & 1])) REJECT("MaxPool: pads must be smaller than the kernel");
                if (j == 2 && v != 1) REJECT("MaxPool: dilations are not supported");
            }
        }
        a = ak_attribute(node, "ceil_mode");
        if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || a->i != 0)) REJECT("MaxPool: ceil_mode is not supported");
        a = ak_attribute(node, "storage_order");
        if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || a->i != 0)) REJECT("MaxPool: storage_order 1 is not supported");
        a = ak_attribute(node, "auto_pad");
        if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "NOTSET") != 0 && strcmp(a->s, "VALID") != 0)
            REJECT("MaxPool: auto_pad %s is not supported", a->s);
        return 0;
    }
    for (size_t i = 0; i < node->n_attributes; i++) {
        const char *a = node->attributes[i]->name;
        if (strcmp(a, "output_dtype") == 0 || strcmp(a, "block_size") == 0 || strcmp(a, "saturate") == 0)
            REJECT("%s: attribute %s is not supported", op, a);
    }
    if (quantize || dequantize) {
        double s;
        if (quantize && dtypes[0] != DSP_F32) REJECT("QuantizeLinear: x must be float32 (it is type %d)", dtypes[0]);
        if (dequantize && dtypes[0] != DSP_U8 && dtypes[0] != DSP_I8 && dtypes[0] != DSP_I32)
            REJECT("DequantizeLinear: x must be uint8, int8 or int32 (it is type %d)", dtypes[0]);
        if (!scalar_initializer(g, node->inputs[1], DSP_F32, &s) || !(s > 0) || !isfinite(s))
            REJECT("%s: the scale must be a positive float32 initializer with one element (per-axis scales are not supported)", op);
        if (node->n_inputs > 2 && node->inputs[2][0]) {
            double z;
            int zt = dtypes[2];
            if (zt == DSP_I32) { /* int32 (bias) dequantization: one element */
                const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[2]);
                if (!dequantize || !t || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->raw.len != 4 || t->n_shape > 1)
                    REJECT("%s: an int32 zero point must be an initializer with one element", op);
            } else if (zt != DSP_U8 && zt != DSP_I8) {
                REJECT("%s: the zero point must be uint8 or int8 (it is type %d)", op, zt);
            } else if (!scalar_initializer(g, node->inputs[2], zt, &z)) {
                REJECT("%s: the zero point must be an initializer with one element", op);
            }
            if (dequantize && zt != dtypes[0]) REJECT("DequantizeLinear: x and the zero point differ in type");
        }
        return 0;
    }
    /* QLinearMatMul: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp[, bias (int32, one per column: a QDQ
     * MatMul/Gemm lowered here)], attribute transB (b given as N×K: a QDQ Gemm); QLinearConv: x, x_scale, x_zp, w,
     * w_scale, w_zp, y_scale, y_zp[, B]. QLinearConv's w_scale and w_zp may be per output channel, QLinearMatMul's
     * b_scale and b_zp per column when b is an initializer. */
    const Kiln__Ir__Tensor *w = ak_initializer(g, node->inputs[3]);
    if (conv && (!w || w->n_shape != 4 || w->shape[0] < 1)) REJECT("QLinearConv: w must be a rank-4 initializer");
    if (conv && w->shape[0] > DSP_MAX_CHANNELS) REJECT("QLinearConv: more than %d output channels are not supported", DSP_MAX_CHANNELS);
    int trans_b = matmul && ak_int_attr(node, "transB", 0) != 0;
    size_t channels = conv ? (size_t)w->shape[0] : 1;
    if (matmul && w && w->n_shape == 2 && w->shape[trans_b ? 0 : 1] >= 1 && w->shape[trans_b ? 0 : 1] <= DSP_MAX_CHANNELS) channels = (size_t)w->shape[trans_b ? 0 : 1];
    float wscales[DSP_MAX_CHANNELS];
    double scale[3] = {0, 0, 0};
    size_t scale_at[3] = {1, 4, 6}, data_at[3] = {0, 3, 7}, wscale_count = 1;
    for (int k = 0; k < 3; k++) {
        float one;
        if (k == 1) {
            wscale_count = node->inputs[4][0] ? scale_initializer(g, node->inputs[4], channels, wscales) : 0;
            if (!wscale_count) REJECT("%s: %s must be a positive float32 initializer with 1 or %zu (per %s) elements", op, conv ? "w_scale" : "b_scale",
                                      channels, conv ? "output channel" : "column of b");
            scale[1] = wscales[0];
            continue;
        }
        if (!node->inputs[scale_at[k]][0] || scale_initializer(g, node->inputs[scale_at[k]], 1, &one) != 1)
            REJECT("%s: scale input %zu must be a positive float32 initializer with one element", op, scale_at[k]);
        scale[k] = one;
    }
    for (int k = 0; k < 3; k++) {
        size_t zi = data_at[k] == 7 ? 7 : data_at[k] + 2, di = data_at[k];
        int t = dtypes[di];
        if (k < 2 && t != DSP_U8 && t != DSP_I8) REJECT("%s: input %zu must be uint8 or int8 (it is type %d)", op, di, t);
        double z;
        if (!node->inputs[zi][0]) REJECT("%s: zero point input %zu must be given", op, zi);
        if (dtypes[zi] != DSP_U8 && dtypes[zi] != DSP_I8) REJECT("%s: zero point input %zu must be uint8 or int8", op, zi);
        if (k < 2 && dtypes[zi] != t) REJECT("%s: input %zu and its zero point differ in type", op, di);
        if (k == 1 && (conv || channels > 1)) { /* one value, or one per channel (column) that are all equal */
            const Kiln__Ir__Tensor *zt = ak_initializer(g, node->inputs[zi]);
            if (!zt || zt->data_case != KILN__IR__TENSOR__DATA_RAW || zt->n_shape > 1 || (zt->raw.len != 1 && zt->raw.len != channels))
                REJECT("%s: the zero point of input 3 must be an initializer with 1 or %zu elements", op, channels);
            for (size_t i = 1; i < zt->raw.len; i++)
                if (zt->raw.data[i] != zt->raw.data[0]) REJECT("%s: per-channel zero points of input 3 must all be equal", op);
            continue;
        }
        if (!scalar_initializer(g, node->inputs[zi], dtypes[zi], &z)) REJECT("%s: zero point input %zu must be an initializer with one element", op, zi);
    }
    for (size_t c = 0; c < wscale_count; c++) {
        double ratio = (double)(float)((float)scale[0] * wscales[c]) / scale[2];
        if (!(ratio < 0.999999)) REJECT("%s: the requantization scale %g is not below 1 (not supported by the Q31 requantization)", op, ratio);
        if (ratio < 1e-18) REJECT("%s: the requantization scale %g is too small", op, ratio);
    }
    if (matmul) {
        if (ranks[0] >= 0 && ranks[0] < 2) REJECT("QLinearMatMul: a must have rank 2 or more");
        if (ranks[3] != 2) REJECT("QLinearMatMul: b must be a matrix of known rank 2 (batched b is not supported)");
        if (trans_b && !w) REJECT("QLinearMatMul: a transposed b must be an initializer");
        if (node->n_inputs > 8 && node->inputs[8][0]) {
            const Kiln__Ir__Tensor *b = ak_initializer(g, node->inputs[8]);
            if (dtypes[8] != DSP_I32 || !b || b->data_case != KILN__IR__TENSOR__DATA_RAW || !w || b->raw.len != 4 * channels)
                REJECT("QLinearMatMul: the bias must be an int32 initializer with one value per column of an initializer b");
        }
        return 0;
    }
    if (ranks[0] >= 0 && ranks[0] != 4) REJECT("QLinearConv: only 2-D convolution (rank-4 x) is supported");
    if (node->n_inputs > 8 && node->inputs[8][0] && dtypes[8] != DSP_I32) REJECT("QLinearConv: the bias must be int32");
    const Kiln__Ir__Attribute *a = ak_attribute(node, "auto_pad");
    if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "NOTSET") != 0 && strcmp(a->s, "VALID") != 0)
        REJECT("QLinearConv: auto_pad %s is not supported", a->s);
    const char *lists[4] = {"strides", "dilations", "pads", "kernel_shape"};
    size_t lengths[4] = {2, 2, 4, 2};
    for (int k = 0; k < 4; k++) {
        a = ak_attribute(node, lists[k]);
        if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != lengths[k]))
            REJECT("QLinearConv: attribute %s must list %zu integers", lists[k], lengths[k]);
        for (size_t i = 0; a && i < a->ints->n_values; i++)
            if (a->ints->values[i] < (k == 2 ? 0 : 1) || a->ints->values[i] > 4096) REJECT("QLinearConv: attribute %s has value %lld out of range", lists[k], (long long)a->ints->values[i]);
    }
    a = ak_attribute(node, "kernel_shape");
    if (a && (a->ints->values[0] != w->shape[2] || a->ints->values[1] != w->shape[3])) REJECT("QLinearConv: kernel_shape differs from w's shape");
    a = ak_attribute(node, "group");
    if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_I || a->i < 1 || a->i > 65536)) REJECT("QLinearConv: group must be a positive integer");
    int64_t group = a ? a->i : 1;
    if (w->shape[0] < 1 || w->shape[0] % group != 0) REJECT("QLinearConv: w's %lld output channels do not divide into %lld groups", (long long)w->shape[0], (long long)group);
    return 0;
#undef REJECT
}

/* ---- Conv in QDQ form (kiln compile --quantize int8, onnxruntime's QDQ format) ------------------------------------ */

/* A float Conv between DequantizeLinear nodes (x, per-channel w, int32 bias) and one QuantizeLinear: the same
 * computation as QLinearConv(x_q, sx, zx, w_q, sw, zw, sy, zy, b_q) as long as the bias is quantized with scale
 * sx·sw and zero point 0, which is how int8 quantizers write it. */
typedef struct qdq_conv {
    long dx, dw, db, q;           /* the DequantizeLinear nodes of x, w and the bias (-1: none) and the QuantizeLinear */
    int absorb_dx;                /* dx feeds only this Conv: it need not run */
    char *inputs[9], *outputs[1];
    Kiln__Ir__Node node;          /* the equivalent QLinearConv (the Conv's attributes, Q's output) */
} qdq_conv;

/* The node whose output is `name`, or -1. */
static long producer_of(const Kiln__Ir__Graph *g, const char *name) {
    for (size_t i = 0; name[0] && i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_outputs; k++)
            if (strcmp(g->nodes[i]->outputs[k], name) == 0) return (long)i;
    return -1;
}

/* How many node inputs and graph outputs read `name`; the reading node in *only when there is one (-1 for a graph output). */
static size_t readers_of(const Kiln__Ir__Graph *g, const char *name, long *only) {
    size_t n = 0;
    *only = -1;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++)
            if (strcmp(g->nodes[i]->inputs[k], name) == 0) { n++; *only = (long)i; }
    for (size_t i = 0; i < g->n_outputs; i++) if (strcmp(g->outputs[i]->name, name) == 0) { n++; *only = -1; }
    return n;
}

/* Whether node `index` is op `op` of the ONNX domain with at least `inputs` inputs. */
static int is_op(const Kiln__Ir__Graph *g, long index, const char *op, size_t inputs) {
    if (index < 0) return 0;
    const Kiln__Ir__Node *n = g->nodes[index];
    return strcmp(n->op, op) == 0 && (!n->domain[0] || strcmp(n->domain, "ai.onnx") == 0) && n->n_inputs >= inputs && n->n_outputs == 1;
}

/* Fills m's lowered node: `op` (QLinearConv or QLinearMatMul) named and attributed as `src`, on x_q, sx, zx, w_q, sw,
 * zw, sy, zy (and the int32 bias when m->db names one) read from the DequantizeLinear and QuantizeLinear nodes; notes
 * whether dx feeds nothing else. Returns 1 (a match). */
static int qdq_lowered(const Kiln__Ir__Graph *g, qdq_conv *m, const Kiln__Ir__Node *dx, const Kiln__Ir__Node *dw,
                       const Kiln__Ir__Node *q, const Kiln__Ir__Node *src, const char *op) {
    long only;
    m->absorb_dx = readers_of(g, dx->outputs[0], &only) == 1;
    char *none = (char *)"";
    char *inputs[9] = {dx->inputs[0], dx->inputs[1], dx->n_inputs > 2 ? dx->inputs[2] : none, dw->inputs[0], dw->inputs[1],
                       dw->n_inputs > 2 ? dw->inputs[2] : none, q->inputs[1], q->n_inputs > 2 ? q->inputs[2] : none,
                       m->db >= 0 ? g->nodes[m->db]->inputs[0] : none};
    memcpy(m->inputs, inputs, sizeof inputs);
    m->outputs[0] = q->outputs[0];
    kiln__ir__node__init(&m->node);
    m->node.name = src->name;
    m->node.domain = none;
    m->node.op = (char *)op;
    m->node.n_inputs = m->db >= 0 ? 9 : 8;
    m->node.inputs = m->inputs;
    m->node.n_outputs = 1;
    m->node.outputs = m->outputs;
    m->node.n_attributes = src->n_attributes;
    m->node.attributes = src->attributes;
    return 1;
}

/* Whether node i is a Conv in QDQ form; fills *m (which must not move afterwards: m->node points into it). */
static int find_qdq_conv(const Kiln__Ir__Graph *g, size_t i, qdq_conv *m) {
    const Kiln__Ir__Node *conv = g->nodes[i];
    if (!is_op(g, (long)i, "Conv", 2) || conv->n_inputs > 3) return 0;
    long only;
    m->dx = producer_of(g, conv->inputs[0]);
    m->dw = producer_of(g, conv->inputs[1]);
    m->db = conv->n_inputs == 3 && conv->inputs[2][0] ? producer_of(g, conv->inputs[2]) : -1;
    if (!is_op(g, m->dx, "DequantizeLinear", 2) || !is_op(g, m->dw, "DequantizeLinear", 2)) return 0;
    if (conv->n_inputs == 3 && conv->inputs[2][0] && !is_op(g, m->db, "DequantizeLinear", 2)) return 0;
    if (readers_of(g, conv->outputs[0], &only) != 1 || !is_op(g, only, "QuantizeLinear", 2)) return 0;
    m->q = only;
    const Kiln__Ir__Node *dx = g->nodes[m->dx], *dw = g->nodes[m->dw], *q = g->nodes[m->q];
    const Kiln__Ir__Tensor *w = ak_initializer(g, dw->inputs[0]);
    if (!w || w->n_shape != 4 || readers_of(g, dw->outputs[0], &only) != 1) return 0;
    float sx, sw[DSP_MAX_CHANNELS], sb[DSP_MAX_CHANNELS];
    size_t O = (size_t)w->shape[0];
    if (O < 1 || O > DSP_MAX_CHANNELS || scale_initializer(g, dx->inputs[1], 1, &sx) != 1) return 0;
    size_t nw = scale_initializer(g, dw->inputs[1], O, sw);
    if (!nw || (nw > 1 && ak_int_attr(dw, "axis", 1) != 0)) return 0; /* per-channel scales must run along w's axis 0 */
    if (m->db >= 0) {
        const Kiln__Ir__Node *db = g->nodes[m->db];
        const Kiln__Ir__Tensor *b = ak_initializer(g, db->inputs[0]), *zb = db->n_inputs > 2 && db->inputs[2][0] ? ak_initializer(g, db->inputs[2]) : NULL;
        if (!b || (int)b->dtype != DSP_I32 || readers_of(g, db->outputs[0], &only) != 1) return 0;
        size_t nb = scale_initializer(g, db->inputs[1], O, sb);
        if (!nb || (nb > 1 && ak_int_attr(db, "axis", 1) != 0)) return 0;
        for (size_t o = 0; o < O; o++) { /* the bias scale is sx·sw (as the quantizer rounds it to float) */
            float want = sx * sw[nw > 1 ? o : 0], have = sb[nb > 1 ? o : 0];
            if (!(fabsf(have - want) <= 1e-6f * fabsf(want))) return 0;
        }
        for (size_t k = 0; zb && zb->data_case == KILN__IR__TENSOR__DATA_RAW && k < zb->raw.len; k++)
            if (zb->raw.data[k] != 0) return 0;
        if (zb && zb->data_case != KILN__IR__TENSOR__DATA_RAW) return 0;
    }
    return qdq_lowered(g, m, dx, dw, q, conv, "QLinearConv");
}

/* Whether node i is a MatMul (or a Gemm with transA 0, alpha and beta 1) in QDQ form — DequantizeLinear x,
 * DequantizeLinear of an initializer matrix w (per-tensor or per-column scales), optionally a Gemm bias
 * DequantizeLinear'd from int32 with scale sx·sw and zero point 0, one QuantizeLinear — lowered as a QLinearMatMul (a
 * fully connected layer) with the bias as a 9th input and Gemm's transB; fills *m as find_qdq_conv does. */
static int find_qdq_fc(const Kiln__Ir__Graph *g, size_t i, qdq_conv *m) {
    const Kiln__Ir__Node *mm = g->nodes[i];
    int gemm = is_op(g, (long)i, "Gemm", 2);
    if (!gemm && (!is_op(g, (long)i, "MatMul", 2) || mm->n_inputs != 2 || mm->n_attributes)) return 0;
    if (gemm) {
        if (mm->n_inputs > 3) return 0;
        for (size_t k = 0; k < mm->n_attributes; k++) {
            const Kiln__Ir__Attribute *a = mm->attributes[k];
            if (!strcmp(a->name, "transA") && a->value_case == KILN__IR__ATTRIBUTE__VALUE_I && a->i == 0) continue;
            if (!strcmp(a->name, "transB") && a->value_case == KILN__IR__ATTRIBUTE__VALUE_I && (a->i == 0 || a->i == 1)) continue;
            if ((!strcmp(a->name, "alpha") || !strcmp(a->name, "beta")) && a->value_case == KILN__IR__ATTRIBUTE__VALUE_F && a->f == 1.0f) continue;
            return 0;
        }
    }
    int trans_b = gemm && ak_int_attr(mm, "transB", 0) != 0;
    long only;
    m->dx = producer_of(g, mm->inputs[0]);
    m->dw = producer_of(g, mm->inputs[1]);
    m->db = gemm && mm->n_inputs == 3 && mm->inputs[2][0] ? producer_of(g, mm->inputs[2]) : -1;
    if (!is_op(g, m->dx, "DequantizeLinear", 2) || !is_op(g, m->dw, "DequantizeLinear", 2)) return 0;
    if (gemm && mm->n_inputs == 3 && mm->inputs[2][0] && !is_op(g, m->db, "DequantizeLinear", 2)) return 0;
    if (readers_of(g, mm->outputs[0], &only) != 1 || !is_op(g, only, "QuantizeLinear", 2)) return 0;
    m->q = only;
    const Kiln__Ir__Node *dx = g->nodes[m->dx], *dw = g->nodes[m->dw], *q = g->nodes[m->q];
    const Kiln__Ir__Tensor *w = ak_initializer(g, dw->inputs[0]);
    if (!w || w->n_shape != 2 || readers_of(g, dw->outputs[0], &only) != 1) return 0;
    float sx, sw[DSP_MAX_CHANNELS], sb[DSP_MAX_CHANNELS];
    int64_t N = w->shape[trans_b ? 0 : 1];
    if (N < 1 || N > DSP_MAX_CHANNELS || scale_initializer(g, dx->inputs[1], 1, &sx) != 1) return 0;
    size_t nw = scale_initializer(g, dw->inputs[1], (size_t)N, sw);
    if (!nw || (nw > 1 && ak_int_attr(dw, "axis", 1) != (trans_b ? 0 : 1))) return 0; /* per-column scales run along the columns of b */
    if (m->db >= 0) {
        const Kiln__Ir__Node *db = g->nodes[m->db];
        const Kiln__Ir__Tensor *b = ak_initializer(g, db->inputs[0]), *zb = db->n_inputs > 2 && db->inputs[2][0] ? ak_initializer(g, db->inputs[2]) : NULL;
        if (!b || (int)b->dtype != DSP_I32 || b->data_case != KILN__IR__TENSOR__DATA_RAW || b->raw.len != 4 * (size_t)N || readers_of(g, db->outputs[0], &only) != 1) return 0;
        size_t nb = scale_initializer(g, db->inputs[1], (size_t)N, sb);
        if (!nb) return 0;
        for (int64_t o = 0; o < N; o++) {
            float want = sx * sw[nw > 1 ? o : 0], have = sb[nb > 1 ? o : 0];
            if (!(fabsf(have - want) <= 1e-6f * fabsf(want))) return 0;
        }
        if (zb && zb->data_case != KILN__IR__TENSOR__DATA_RAW) return 0;
        for (size_t k = 0; zb && k < zb->raw.len; k++) if (zb->raw.data[k] != 0) return 0;
    }
    return qdq_lowered(g, m, dx, dw, q, mm, "QLinearMatMul"); /* with mm's transB (and transA 0, alpha/beta 1) */
}

/* The QDQ Convs (and MatMul/Gemm fully connected layers) of g: role[i] 2 for a Conv lowered as m[i].node, 1 for the DequantizeLinear/QuantizeLinear nodes it
 * absorbs. With `known` (claim), a pattern whose QLinearConv this backend would reject is left out, its reason in
 * why_conv[i] (malloc'ed; may be NULL). Returns 0 when out of memory. */
static int qdq_convs(const Kiln__Ir__Graph *g, qdq_conv *m, uint8_t *role, const char *const *known_names, const int *known_types, size_t known,
                     char **why_conv) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        int conv = find_qdq_conv(g, i, &m[i]);
        if (!conv && !find_qdq_fc(g, i, &m[i])) continue;
        char why[320];
        if (known_names && rejects(g, &m[i].node, known_names, known_types, known, why, sizeof why)) {
            char text[400];
            snprintf(text, sizeof text, "%s in QDQ form, as %s: %s", g->nodes[i]->op, conv ? "QLinearConv" : "QLinearMatMul", why);
            if (why_conv && !(why_conv[i] = ak_strdup(text))) return 0;
            continue;
        }
        role[i] = 2;
        role[m[i].dw] = role[m[i].q] = 1;
        if (m[i].db >= 0) role[m[i].db] = 1;
        if (m[i].absorb_dx) role[m[i].dx] = 1;
    }
    return 1;
}

/* ---- elementwise float chains between a DequantizeLinear and a QuantizeLinear, as one lookup table ---------------- */

/* Nodes one lookup-table region may hold. */
#define DSP_MAX_LUT_NODES 32

/* A region of elementwise float ops computing, element by element, a function of one DequantizeLinear's output and of
 * constants, read at its end by exactly one QuantizeLinear — e.g. hard-swish (Add, Clip, Mul, Div) or Add of a
 * per-channel bias then Relu. Byte in, byte out: the whole region is a 256-entry table (one per channel when a
 * constant varies along one axis), evaluated at compile time in float32 as kiln.reference evaluates the ops. */
typedef struct lut_region {
    long dq, q;                        /* the DequantizeLinear at the root, the QuantizeLinear at the end */
    int absorb_dq;                     /* dq's output is read only inside the region: it need not run */
    size_t count;                      /* interior nodes, ascending (topological) after find_lut_region */
    long nodes[DSP_MAX_LUT_NODES];
    int64_t channels, from_end;        /* constants varying along one axis: its length and position counted from the last */
    int64_t min_rank;                  /* the largest constant rank (the input must have at least this rank) */
    int in_dtype, out_dtype;
    int softmax;                       /* instead: DequantizeLinear -> Softmax (last axis) -> QuantizeLinear, nodes[0] the Softmax */
    int32_t out_multiplier, out_exponent;  /* softmax: 1/s_y = out_multiplier · 2^-31 · 2^out_exponent */
    int64_t axis;                      /* softmax: the Softmax's axis attribute (-1 or the last axis) */
} lut_region;

/* How many inputs op `n` of a region may have at most (0: not an op a region may hold). */
static size_t lut_op_inputs(const Kiln__Ir__Node *n) {
    if ((n->domain[0] && strcmp(n->domain, "ai.onnx") != 0) || n->n_outputs != 1 || !n->outputs[0][0]) return 0;
    const char *op = n->op;
    const char *allowed[3] = {NULL, NULL, NULL}; /* attributes the op may carry */
    size_t arity = 0;
    if (!strcmp(op, "Add") || !strcmp(op, "Sub") || !strcmp(op, "Mul") || !strcmp(op, "Div") || !strcmp(op, "Max") || !strcmp(op, "Min")) arity = 2;
    else if (!strcmp(op, "Relu") || !strcmp(op, "HardSwish")) arity = 1;
    else if (!strcmp(op, "HardSigmoid")) { arity = 1; allowed[0] = "alpha"; allowed[1] = "beta"; }
    else if (!strcmp(op, "Clip")) { arity = 3; allowed[0] = "min"; allowed[1] = "max"; }
    if (!arity || n->n_inputs < 1 || n->n_inputs > arity || ((arity == 2) && n->n_inputs != 2)) return 0;
    for (size_t i = 0; i < n->n_attributes; i++) {
        const Kiln__Ir__Attribute *a = n->attributes[i];
        int ok = 0;
        for (int k = 0; k < 3; k++) ok |= allowed[k] && !strcmp(a->name, allowed[k]) && a->value_case == KILN__IR__ATTRIBUTE__VALUE_F;
        if (!ok) return 0;
    }
    return arity;
}

/* Whether `name` is a float32 initializer a region can use: one value, or values along one axis (every other dim 1).
 * Updates the region's channel count, axis (from the end) and minimum rank; 0 when it is not one or disagrees. */
static int lut_constant(const Kiln__Ir__Graph *g, const char *name, lut_region *r) {
    const Kiln__Ir__Tensor *t = ak_initializer(g, name);
    if (!t || (int)t->dtype != DSP_F32 || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->n_shape > DSP_MAX_RANK || t->raw.len % 4) return 0;
    int64_t count = 1, axis = -1;
    for (size_t d = 0; d < t->n_shape; d++) {
        if (t->shape[d] < 1 || t->shape[d] > DSP_MAX_CHANNELS) return 0;
        if (t->shape[d] > 1) { if (axis >= 0) return 0; axis = (int64_t)d; }
        count *= t->shape[d];
    }
    if ((uint64_t)count * 4 != t->raw.len) return 0;
    if ((int64_t)t->n_shape > r->min_rank) r->min_rank = (int64_t)t->n_shape;
    if (axis < 0) return 1;
    int64_t from_end = (int64_t)t->n_shape - 1 - axis;
    if (r->channels > 1 && (r->channels != count || r->from_end != from_end)) return 0;
    r->channels = count;
    r->from_end = from_end;
    return 1;
}

/* Whether every node input and graph output reading `name` is one of the region's nodes (or node `also`). */
static int read_within(const Kiln__Ir__Graph *g, const char *name, const lut_region *r, long also) {
    for (size_t i = 0; i < g->n_outputs; i++) if (!strcmp(g->outputs[i]->name, name)) return 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++) {
            if (strcmp(g->nodes[i]->inputs[k], name) != 0) continue;
            int inside = (long)i == also;
            for (size_t j = 0; !inside && j < r->count; j++) inside = r->nodes[j] == (long)i;
            if (!inside) return 0;
        }
    return 1;
}

/* The dtype of a scalar uint8/int8 zero-point initializer, 0 when it is not one. */
static int zero_point_dtype(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *n) {
    double z;
    if (n->n_inputs < 3 || !n->inputs[2][0]) return 0;
    const Kiln__Ir__Tensor *t = ak_initializer(g, n->inputs[2]);
    if (!t || ((int)t->dtype != DSP_U8 && (int)t->dtype != DSP_I8) || !scalar_initializer(g, n->inputs[2], (int)t->dtype, &z)) return 0;
    return (int)t->dtype;
}

/* Whether Q/DQ node n has per-tensor parameters the region can fold: a positive scalar float32 scale, a scalar
 * uint8/int8 zero point, no attributes but axis. Returns the zero point's dtype or 0. */
static int lut_qdq_params(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *n) {
    double s;
    for (size_t i = 0; i < n->n_attributes; i++) if (strcmp(n->attributes[i]->name, "axis") != 0) return 0;
    if (n->n_inputs > 3 || !scalar_initializer(g, n->inputs[1], DSP_F32, &s) || !(s > 0) || !isfinite(s)) return 0;
    return zero_point_dtype(g, n);
}

/* Whether the Softmax `first` between a DequantizeLinear and QuantizeLinear r->q is one dsp_softmax_rows runs; fills *r. */
static int find_softmax(const Kiln__Ir__Graph *g, long first, const uint8_t *role, lut_region *r) {
    const Kiln__Ir__Node *sm = g->nodes[first];
    if (sm->n_inputs != 1 || sm->n_outputs != 1 || (sm->domain[0] && strcmp(sm->domain, "ai.onnx") != 0)) return 0;
    r->axis = -1;
    for (size_t i = 0; i < sm->n_attributes; i++) {
        const Kiln__Ir__Attribute *a = sm->attributes[i];
        if (strcmp(a->name, "axis") != 0 || a->value_case != KILN__IR__ATTRIBUTE__VALUE_I) return 0;
        r->axis = a->i;
    }
    long dq = producer_of(g, sm->inputs[0]);
    if (dq < 0 || role[dq] || !is_op(g, dq, "DequantizeLinear", 2) || !(r->in_dtype = lut_qdq_params(g, g->nodes[dq]))) return 0;
    if (ak_initializer(g, g->nodes[dq]->inputs[0])) return 0;
    if (r->axis != -1) { /* the last axis by number: the input's rank must be known */
        int dtype, rank;
        value_type(g, g->nodes[dq]->inputs[0], &dtype, &rank);
        if (rank < 1 || r->axis != rank - 1) return 0;
    }
    double sy;
    scalar_initializer(g, g->nodes[r->q]->inputs[1], DSP_F32, &sy);
    int exponent;
    double mantissa = frexp(1.0 / (double)(float)sy, &exponent); /* 1/s_y = mantissa · 2^exponent, mantissa in [0.5, 1) */
    int64_t m = llround(mantissa * 2147483648.0);
    if (m >= 2147483648ll) { m = 1073741824; exponent++; }
    if (exponent < -14 || exponent > 30) return 0;
    r->out_multiplier = (int32_t)m;
    r->out_exponent = exponent;
    r->softmax = 1;
    r->dq = dq;
    r->nodes[r->count++] = first;
    long only;
    r->absorb_dq = readers_of(g, g->nodes[dq]->outputs[0], &only) == 1;
    return 1;
}

/* Whether QuantizeLinear node qi ends a lookup-table region (none of whose nodes has a role yet); fills *r. */
static int find_lut_region(const Kiln__Ir__Graph *g, size_t qi, const uint8_t *role, lut_region *r) {
    memset(r, 0, sizeof *r);
    r->dq = -1;
    r->q = (long)qi;
    r->channels = 1;
    const Kiln__Ir__Node *q = g->nodes[qi];
    long only;
    if (role[qi] || !is_op(g, (long)qi, "QuantizeLinear", 2) || !(r->out_dtype = lut_qdq_params(g, q))) return 0;
    long first = producer_of(g, q->inputs[0]);
    if (first < 0 || role[first] || readers_of(g, q->inputs[0], &only) != 1) return 0;
    if (is_op(g, first, "Softmax", 1)) return find_softmax(g, first, role, r);
    if (!lut_op_inputs(g->nodes[first])) return 0;
    r->nodes[r->count++] = first;
    for (size_t k = 0; k < r->count; k++) {
        const Kiln__Ir__Node *n = g->nodes[r->nodes[k]];
        for (size_t j = 0; j < n->n_inputs; j++) {
            const char *in = n->inputs[j];
            if (!in[0]) { if (strcmp(n->op, "Clip") == 0 && j > 0) continue; return 0; }
            if (ak_initializer(g, in)) { if (!lut_constant(g, in, r)) return 0; continue; }
            long p = producer_of(g, in);
            if (p < 0) return 0;
            if (is_op(g, p, "DequantizeLinear", 2)) {
                if (role[p] || (r->dq >= 0 && r->dq != p)) return 0;
                r->dq = p;
                continue;
            }
            if (role[p] || !lut_op_inputs(g->nodes[p])) return 0;
            int seen = 0;
            for (size_t m = 0; m < r->count; m++) seen |= r->nodes[m] == p;
            if (seen) continue;
            if (r->count == DSP_MAX_LUT_NODES) return 0;
            r->nodes[r->count++] = p;
        }
    }
    if (r->dq < 0 || !(r->in_dtype = lut_qdq_params(g, g->nodes[r->dq]))) return 0;
    const Kiln__Ir__Tensor *x = ak_initializer(g, g->nodes[r->dq]->inputs[0]);
    if (x) return 0; /* a constant input: nothing to gain */
    for (size_t k = 1; k < r->count; k++) if (!read_within(g, g->nodes[r->nodes[k]]->outputs[0], r, -1)) return 0;
    r->absorb_dq = read_within(g, g->nodes[r->dq]->outputs[0], r, -1);
    for (size_t a = 1; a < r->count; a++) /* ascending node order: the graph is topologically sorted */
        for (size_t b = a; b > 0 && r->nodes[b - 1] > r->nodes[b]; b--) { long t = r->nodes[b]; r->nodes[b] = r->nodes[b - 1]; r->nodes[b - 1] = t; }
    /* lut_tables evaluates in that order: every value a node reads from the region must come from an earlier node,
     * and the last node must be the one the QuantizeLinear reads */
    if (r->nodes[r->count - 1] != first) return 0;
    for (size_t k = 0; k < r->count; k++) {
        const Kiln__Ir__Node *n = g->nodes[r->nodes[k]];
        for (size_t j = 0; j < n->n_inputs; j++) {
            long p = n->inputs[j][0] && !ak_initializer(g, n->inputs[j]) ? producer_of(g, n->inputs[j]) : -1;
            if (p < 0 || p == r->dq) continue;
            int earlier = 0;
            for (size_t m = 0; m < k; m++) earlier |= r->nodes[m] == p;
            if (!earlier) return 0;
        }
    }
    return 1;
}

/* Element `c` (or the only one) of a float32 initializer that lut_constant accepted. */
static float lut_constant_value(const Kiln__Ir__Tensor *t, int64_t c) {
    float v;
    memcpy(&v, t->raw.data + (t->raw.len > 4 ? 4 * (size_t)c : 0), 4);
    return v;
}

/* A float attribute of n, or `fallback`. */
static float float_attr(const Kiln__Ir__Node *n, const char *name, float fallback) {
    const Kiln__Ir__Attribute *a = ak_attribute(n, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_F ? a->f : fallback;
}

/* The region's tables in plain order (channels × 256 bytes, entry b for input byte b): every input byte dequantized,
 * pushed through the region's ops in float32 (HardSigmoid and HardSwish in double, rounded to float32, as
 * kiln.reference evaluates them), and quantized (round half to even, saturated) as QuantizeLinear does. */
static void lut_tables(const Kiln__Ir__Graph *g, const lut_region *r, uint8_t *tables) {
    const Kiln__Ir__Node *dq = g->nodes[r->dq], *q = g->nodes[r->q];
    double sx, sy, zx, zy;
    scalar_initializer(g, dq->inputs[1], DSP_F32, &sx);
    scalar_initializer(g, dq->inputs[2], r->in_dtype, &zx);
    scalar_initializer(g, q->inputs[1], DSP_F32, &sy);
    scalar_initializer(g, q->inputs[2], r->out_dtype, &zy);
    float in_scale = (float)sx, out_scale = (float)sy, out_zero = (float)zy;
    int32_t lo = r->out_dtype == DSP_U8 ? 0 : -128, hi = r->out_dtype == DSP_U8 ? 255 : 127;
    for (int64_t c = 0; c < r->channels; c++)
        for (int b = 0; b < 256; b++) {
            int32_t xb = r->in_dtype == DSP_U8 ? b : (int32_t)(int8_t)(uint8_t)b;
            float x = (float)((int64_t)xb - (int64_t)zx) * in_scale, values[DSP_MAX_LUT_NODES];
            for (size_t k = 0; k < r->count; k++) {
                const Kiln__Ir__Node *n = g->nodes[r->nodes[k]];
                float a[3] = {0, 0, 0};
                int present[3] = {0, 0, 0};
                for (size_t j = 0; j < n->n_inputs && j < 3; j++) {
                    const char *in = n->inputs[j];
                    if (!in[0]) continue;
                    present[j] = 1;
                    const Kiln__Ir__Tensor *t = ak_initializer(g, in);
                    if (t) { a[j] = lut_constant_value(t, c); continue; }
                    if (!strcmp(in, dq->outputs[0])) { a[j] = x; continue; }
                    for (size_t m = 0; m < k; m++) if (!strcmp(in, g->nodes[r->nodes[m]]->outputs[0])) a[j] = values[m];
                }
                const char *op = n->op;
                float v;
                if (!strcmp(op, "Add")) v = a[0] + a[1];
                else if (!strcmp(op, "Sub")) v = a[0] - a[1];
                else if (!strcmp(op, "Mul")) v = a[0] * a[1];
                else if (!strcmp(op, "Div")) v = a[0] / a[1];
                else if (!strcmp(op, "Max")) v = a[0] < a[1] ? a[1] : a[0];
                else if (!strcmp(op, "Min")) v = a[0] > a[1] ? a[1] : a[0];
                else if (!strcmp(op, "Relu")) v = a[0] > 0 ? a[0] : 0.0f;
                else if (!strcmp(op, "HardSigmoid")) {
                    double t = (double)float_attr(n, "alpha", 0.2f) * a[0] + (double)float_attr(n, "beta", 0.5f);
                    v = (float)(t < 0 ? 0 : t > 1 ? 1 : t);
                } else if (!strcmp(op, "HardSwish")) {
                    double t = (double)a[0] / 6 + 0.5;
                    v = (float)((double)a[0] * (t < 0 ? 0 : t > 1 ? 1 : t));
                } else { /* Clip: inputs, or the attributes of opsets before 11 */
                    v = a[0];
                    if (n->n_inputs < 2) {
                        const Kiln__Ir__Attribute *mn = ak_attribute(n, "min"), *mx = ak_attribute(n, "max");
                        if (mn) { a[1] = mn->f; present[1] = 1; }
                        if (mx) { a[2] = mx->f; present[2] = 1; }
                    }
                    if (present[1]) v = v < a[1] ? a[1] : v;
                    if (present[2]) v = v > a[2] ? a[2] : v;
                }
                values[k] = v;
            }
            float y = values[r->count - 1] / out_scale;
            float rq = nearbyintf(y) + out_zero; /* round half to even, as ONNX specifies; NaN quantizes to 0 as in kiln.reference */
            int32_t out = rq != rq ? 0 : rq <= (float)lo ? lo : rq >= (float)hi ? hi : (int32_t)rq;
            tables[256 * c + b] = (uint8_t)out;
        }
}

/* A Softmax region's two tables in plain order: the high then the low bytes of E[d] = round(65535 · exp(-s_x · d)),
 * d = 0..255 (kernels.h, dsp_softmax). */
static void softmax_tables(const Kiln__Ir__Graph *g, const lut_region *r, uint8_t *tables) {
    double sx;
    scalar_initializer(g, g->nodes[r->dq]->inputs[1], DSP_F32, &sx);
    for (int d = 0; d < 256; d++) {
        long e = lround(65535.0 * exp(-sx * d));
        e = e < 0 ? 0 : e > 65535 ? 65535 : e;
        tables[d] = (uint8_t)(e >> 8);
        tables[256 + d] = (uint8_t)e;
    }
}

/* The lookup-table regions of g (after the QDQ Convs took their nodes): role[q] 3 for the QuantizeLinear lowered as
 * the table lookup (regions[q]), 1 for the nodes it absorbs. */
static void lut_regions(const Kiln__Ir__Graph *g, lut_region *regions, uint8_t *role) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (!find_lut_region(g, i, role, &regions[i])) continue;
        role[i] = 3;
        for (size_t k = 0; k < regions[i].count; k++) role[regions[i].nodes[k]] = 1;
        if (regions[i].absorb_dq) role[regions[i].dq] = 1;
    }
}

/* Fills supported[i] (and reasons[i], malloc'ed, for rejected nodes). Returns 0 when out of memory. A first pass
 * learns the types of what the plain ops produce; Convs in QDQ form whose QLinearConv would be accepted are then
 * claimed with the nodes they absorb, then the lookup-table regions (elementwise float chains between a
 * DequantizeLinear and a QuantizeLinear), and a second pass decides every node. */
static int analyze(const Kiln__Ir__Graph *g, uint8_t *supported, char **reasons) {
    const char **names = calloc(g->n_nodes + 1, sizeof(char *));
    int *types = calloc(g->n_nodes + 1, sizeof(int));
    qdq_conv *m = calloc(g->n_nodes + 1, sizeof *m);
    uint8_t *role = calloc(g->n_nodes + 1, 1);
    char **why_conv = calloc(g->n_nodes + 1, sizeof(char *));
    int ok = names && types && m && role && why_conv;
    size_t known = 0;
    for (size_t i = 0; ok && i < g->n_nodes; i++) {
        char why[320];
        if (!rejects(g, g->nodes[i], names, types, known, why, sizeof why)) { names[known] = g->nodes[i]->outputs[0]; types[known++] = output_dtype(g, g->nodes[i]); }
    }
    ok = ok && qdq_convs(g, m, role, names, types, known, why_conv);
    lut_region *lr = ok ? calloc(g->n_nodes + 1, sizeof *lr) : NULL;
    ok = ok && lr;
    if (ok) lut_regions(g, lr, role);
    free(lr);
    known = 0;
    for (size_t i = 0; ok && i < g->n_nodes; i++) {
        char why[320];
        const Kiln__Ir__Node *node = g->nodes[i];
        int rejected = role[i] ? 0 : rejects(g, node, names, types, known, why, sizeof why);
        supported[i] = !rejected;
        if (rejected && reasons && !(reasons[i] = ak_strdup(why_conv[i] ? why_conv[i] : why))) ok = 0;
        if (!rejected && role[i] != 2) { names[known] = node->outputs[0]; types[known++] = output_dtype(g, node); }
        if (role[i] == 2) { names[known] = m[i].outputs[0]; types[known++] = output_dtype(g, g->nodes[m[i].q]); }
    }
    for (size_t i = 0; why_conv && i < g->n_nodes; i++) free(why_conv[i]);
    free(why_conv);
    free(role);
    free(m);
    free(names);
    free(types);
    return ok;
}

/* Callback: which nodes of the graph this backend runs, with a reason for each rejected one. */
static kiln_plugin_error *claim(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out) {
    (void)context;
    return ak_claim(graph, out, analyze);
}

/* ---- compile: graph -> program --------------------------------------------------------------------- */

/* Value ids by name during lowering (a linear list: graphs handed to a backend are small). */
typedef struct names { const char **name; uint32_t count, capacity; } names;

/* The id of value `name` so far, or -1. */
static int64_t find_name(const names *n, const char *name) {
    for (uint32_t i = 0; i < n->count; i++) if (strcmp(n->name[i], name) == 0) return i;
    return -1;
}

/* Builds the program of `g` (every node claimed): inputs, constants copied from initializers, ops. */
static kiln_plugin_error *lower(const Kiln__Ir__Graph *g, dsp_program *p) {
    memset(p, 0, sizeof *p);
    names n = {0};
    qdq_conv *qdq = NULL;
    lut_region *luts = NULL;
    uint8_t *role = NULL;
    n.capacity = (uint32_t)(g->n_inputs + g->n_initializers + g->n_nodes + 1);
    n.name = calloc(n.capacity, sizeof(char *));
    p->inputs = calloc(g->n_inputs + 1, sizeof(uint32_t));
    p->input_dtypes = calloc(g->n_inputs + 1, sizeof(uint32_t));
    p->outputs = calloc(g->n_outputs + 1, sizeof(uint32_t));
    p->constants = calloc(g->n_initializers + g->n_nodes + 1, sizeof(dsp_constant)); /* initializers and lookup tables */
    p->ops = calloc(g->n_nodes + 1, sizeof(dsp_op));
    kiln_plugin_error *e = NULL;
    if (!n.name || !p->inputs || !p->input_dtypes || !p->outputs || !p->constants || !p->ops) { e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
    for (size_t i = 0; i < g->n_inputs; i++) {
        int dtype, rank;
        value_type(g, g->inputs[i]->name, &dtype, &rank);
        if (!dsp_dtype_size((uint32_t)dtype)) { e = ak_error(KILN_ERROR_UNSUPPORTED, "graph input '%s' has element type %d", g->inputs[i]->name, dtype); goto done; }
        if (find_name(&n, g->inputs[i]->name) >= 0) { e = ak_error(KILN_ERROR_INVALID_MODEL, "graph input '%s' is listed twice", g->inputs[i]->name); goto done; }
        p->inputs[p->input_count] = n.count;
        p->input_dtypes[p->input_count++] = (uint32_t)dtype;
        n.name[n.count++] = g->inputs[i]->name;
    }
    /* the id of `name`: an input, an earlier result, or an initializer copied in as a constant now */
#define VALUE_OF(name_, out_)                                                                                  \
    do {                                                                                                       \
        int64_t found_ = find_name(&n, (name_));                                                               \
        if (found_ >= 0) { (out_) = (uint32_t)found_; break; }                                                 \
        const Kiln__Ir__Tensor *t_ = ak_initializer(g, (name_));                                                  \
        if (!t_) { e = ak_error(KILN_ERROR_INVALID_MODEL, "value '%s' is used but never defined", (name_)); goto done; } \
        dsp_constant *c_ = &p->constants[p->constant_count];                                                   \
        size_t es_ = dsp_dtype_size((uint32_t)t_->dtype);                                                      \
        if (!es_ || t_->n_shape > DSP_MAX_RANK || t_->data_case != KILN__IR__TENSOR__DATA_RAW) {               \
            e = ak_error(KILN_ERROR_UNSUPPORTED, "initializer '%s' has no inline data of a supported type", (name_)); goto done; } \
        c_->value = n.count; c_->dtype = (uint32_t)t_->dtype; c_->rank = (uint32_t)t_->n_shape;               \
        for (size_t d_ = 0; d_ < t_->n_shape; d_++) c_->dims[d_] = t_->shape[d_];                              \
        int64_t count_ = dsp_element_count(c_->rank, c_->dims);                                                \
        if (count_ < 0 || (uint64_t)count_ * es_ != t_->raw.len) {                                             \
            e = ak_error(KILN_ERROR_INVALID_MODEL, "initializer '%s': data does not match its shape", (name_)); goto done; } \
        c_->bytes = t_->raw.len;                                                                               \
        c_->data = malloc(c_->bytes ? c_->bytes : 1);                                                          \
        if (!c_->data) { e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }                        \
        if (c_->bytes) memcpy(c_->data, t_->raw.data, c_->bytes);                                              \
        p->constant_count++;                                                                                   \
        n.name[n.count] = (name_);                                                                             \
        (out_) = n.count++;                                                                                    \
    } while (0)
    qdq = calloc(g->n_nodes + 1, sizeof *qdq);
    role = calloc(g->n_nodes + 1, 1);
    luts = calloc(g->n_nodes + 1, sizeof *luts);
    if (!qdq || !role || !luts || !qdq_convs(g, qdq, role, NULL, NULL, 0, NULL)) { e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
    lut_regions(g, luts, role);
    for (size_t i = 0; i < g->n_nodes; i++) {
        if (role[i] == 1) continue; /* absorbed into a QDQ Conv's QLinearConv or a lookup table */
        if (role[i] == 3) { /* a lookup-table region or a Softmax: x, its tables (a constant made here) -> the QuantizeLinear's output */
            const lut_region *r = &luts[i];
            dsp_op *op = &p->ops[p->op_count++];
            op->opcode = r->softmax ? DSP_OP_SOFTMAX : DSP_OP_LUT;
            op->input_count = 2;
            VALUE_OF(g->nodes[r->dq]->inputs[0], op->inputs[0]);
            dsp_constant *c = &p->constants[p->constant_count];
            size_t tables = r->softmax ? 2 : (size_t)r->channels;
            uint8_t *plain = malloc(tables * 256);
            c->data = malloc(tables * 256);
            if (!plain || !c->data) { free(plain); free(c->data); c->data = NULL; e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
            if (r->softmax) softmax_tables(g, r, plain);
            else lut_tables(g, r, plain);
            for (size_t k = 0; k < tables; k++) dsp_lut_layout(plain + 256 * k, c->data + 256 * k);
            free(plain);
            c->value = n.count; c->dtype = DSP_U8; c->rank = 2; c->dims[0] = (int64_t)tables; c->dims[1] = 256; c->bytes = (uint64_t)tables * 256;
            p->constant_count++;
            n.name[n.count] = ""; /* no graph name: never looked up */
            op->inputs[1] = n.count++;
            if (r->softmax) {
                double zy;
                scalar_initializer(g, g->nodes[r->q]->inputs[2], r->out_dtype, &zy);
                op->params[0] = r->out_multiplier; op->params[1] = r->out_exponent; op->params[2] = (int64_t)zy;
                op->params[5] = r->axis;
            } else {
                op->params[0] = r->channels; op->params[1] = r->from_end; op->params[2] = r->min_rank;
            }
            op->params[3] = r->in_dtype; op->params[4] = r->out_dtype;
            char layer[AK_MAX_LAYER_NAME + 1]; /* the region's first node "..." its QuantizeLinear, by name */
            const Kiln__Ir__Node *head = g->nodes[r->nodes[0]], *q = g->nodes[i];
            snprintf(layer, sizeof layer, "%s..%s", head->name[0] ? head->name : head->op, q->name[0] ? q->name : q->op);
            uint32_t index = ak_layers_add(&p->layers, layer);
            if (index == UINT32_MAX || ak_layers_assign(&p->layers, p->op_count - 1, p->op_count, index)) { e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
            if (find_name(&n, q->outputs[0]) >= 0) { e = ak_error(KILN_ERROR_INVALID_MODEL, "value '%s' is defined twice", q->outputs[0]); goto done; }
            op->output = n.count;
            n.name[n.count++] = q->outputs[0];
            continue;
        }
        const Kiln__Ir__Node *node = role[i] == 2 ? &qdq[i].node : g->nodes[i];
        if (strcmp(node->op, "Conv") == 0) { e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: Conv '%s' is not in QDQ form within this graph", node->name); goto done; }
        dsp_op *op = &p->ops[p->op_count++];
        const char *name = node->op;
        op->opcode = strcmp(name, "QuantizeLinear") == 0 ? DSP_OP_QUANTIZE : strcmp(name, "DequantizeLinear") == 0 ? DSP_OP_DEQUANTIZE
                   : strcmp(name, "QLinearMatMul") == 0 ? DSP_OP_QMATMUL : strcmp(name, "QLinearConv") == 0 ? DSP_OP_QCONV
                   : strcmp(name, "MaxPool") == 0 ? DSP_OP_MAXPOOL : strcmp(name, "QLinearAdd") == 0 ? DSP_OP_QADD
                   : strcmp(name, "QLinearAveragePool") == 0 || strcmp(name, "QLinearGlobalAveragePool") == 0 ? DSP_OP_QAVGPOOL : DSP_OP_RELU;
        op->input_count = (uint32_t)node->n_inputs;
        for (size_t k = 0; k < node->n_inputs; k++) {
            if (!node->inputs[k][0]) { op->inputs[k] = DSP_NO_VALUE; continue; }
            VALUE_OF(node->inputs[k], op->inputs[k]);
        }
        if (op->opcode == DSP_OP_QCONV) {
            const Kiln__Ir__Attribute *a = ak_attribute(node, "group");
            op->params[0] = a ? a->i : 1;
            op->params[1] = op->params[2] = 1;
            op->params[7] = op->params[8] = 1;
            a = ak_attribute(node, "strides");
            if (a) { op->params[1] = a->ints->values[0]; op->params[2] = a->ints->values[1]; }
            a = ak_attribute(node, "pads"); /* ONNX: begin_h, begin_w, end_h, end_w */
            if (a) for (int k = 0; k < 4; k++) op->params[3 + k] = a->ints->values[k];
            a = ak_attribute(node, "auto_pad");
            if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "VALID") == 0) op->params[3] = op->params[4] = op->params[5] = op->params[6] = 0;
            a = ak_attribute(node, "dilations");
            if (a) { op->params[7] = a->ints->values[0]; op->params[8] = a->ints->values[1]; }
        }
        if (op->opcode == DSP_OP_QMATMUL) op->params[0] = ak_int_attr(node, "transB", 0) != 0;
        if (op->opcode == DSP_OP_QAVGPOOL && strcmp(name, "QLinearGlobalAveragePool") == 0) op->params[9] = 1;
        else if (op->opcode == DSP_OP_QAVGPOOL) op->params[8] = ak_int_attr(node, "count_include_pad", 0);
        if (op->opcode == DSP_OP_MAXPOOL || (op->opcode == DSP_OP_QAVGPOOL && !op->params[9])) { /* the same window params */
            const Kiln__Ir__Attribute *a = ak_attribute(node, "kernel_shape");
            op->params[0] = a->ints->values[0];
            op->params[1] = a->ints->values[1];
            op->params[2] = op->params[3] = 1;
            a = ak_attribute(node, "strides");
            if (a) { op->params[2] = a->ints->values[0]; op->params[3] = a->ints->values[1]; }
            a = ak_attribute(node, "pads"); /* ONNX: begin_h, begin_w, end_h, end_w */
            if (a) for (int k = 0; k < 4; k++) op->params[4 + k] = a->ints->values[k];
            a = ak_attribute(node, "auto_pad");
            if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "VALID") == 0) op->params[4] = op->params[5] = op->params[6] = op->params[7] = 0;
        }
        {
            /* the op's layer: its node's name, and for a QDQ Conv "+" its QuantizeLinear's; "Op#index" when unnamed */
            char layer[AK_MAX_LAYER_NAME + 1];
            const Kiln__Ir__Node *own = g->nodes[i], *q = role[i] == 2 ? g->nodes[qdq[i].q] : NULL;
            int at = own->name[0] ? snprintf(layer, sizeof layer, "%s", own->name) : snprintf(layer, sizeof layer, "%s#%zu", own->op, i);
            if (q && at >= 0 && (size_t)at < sizeof layer) {
                if (q->name[0]) snprintf(layer + at, sizeof layer - (size_t)at, "+%s", q->name);
                else snprintf(layer + at, sizeof layer - (size_t)at, "+%s#%ld", q->op, qdq[i].q);
            }
            uint32_t index = ak_layers_add(&p->layers, layer);
            if (index == UINT32_MAX || ak_layers_assign(&p->layers, p->op_count - 1, p->op_count, index)) { e = ak_error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
        }
        if (find_name(&n, node->outputs[0]) >= 0) { e = ak_error(KILN_ERROR_INVALID_MODEL, "value '%s' is defined twice", node->outputs[0]); goto done; }
        op->output = n.count;
        n.name[n.count++] = node->outputs[0];
    }
    for (size_t i = 0; i < g->n_outputs; i++) VALUE_OF(g->outputs[i]->name, p->outputs[p->output_count++]);
#undef VALUE_OF
    p->value_count = n.count;
done:
    free(n.name);
    free(qdq);
    free(luts);
    free(role);
    if (e) dsp_program_free(p);
    return e;
}

/* Callback: compiles a graph of claimed nodes into a KDSP payload for host or dsp-hvx. */
static kiln_plugin_error *compile(void *context, const kiln_plugin_bytes *graph, const kiln_plugin_compile_options *options, kiln_plugin_payload *out) {
    (void)context;
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_compile_options, target, options->struct_size) && options->target &&
        strcmp(options->target, "host") != 0 && strcmp(options->target, DSP_TARGET) != 0)
        return ak_error(KILN_ERROR_UNSUPPORTED, "compile: target '%s' is not one of this backend's (host, " DSP_TARGET ")", options->target);
    if (!out || out->struct_size < sizeof(kiln_plugin_payload)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: out is NULL or its struct_size is too small");
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = ak_decode_graph(graph, &g);
    if (e) return e;
    if (g->n_initializers + g->n_nodes + g->n_inputs + g->n_outputs >= UINT32_MAX / 2) {
        kiln__ir__graph__free_unpacked(g, NULL);
        return ak_error(KILN_ERROR_UNSUPPORTED, "compile: graph too large");
    }
    uint8_t *supported = calloc(g->n_nodes + 1, 1);
    char **reasons = calloc(g->n_nodes + 1, sizeof(char *));
    if (!supported || !reasons || !analyze(g, supported, reasons)) e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory");
    for (size_t i = 0; !e && i < g->n_nodes; i++)
        if (!supported[i]) e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: node %zu ('%s', %s) is not claimed: %s", i, g->nodes[i]->name, g->nodes[i]->op, reasons[i] ? reasons[i] : "?");
    for (size_t i = 0; reasons && i < g->n_nodes; i++) free(reasons[i]);
    free(reasons);
    free(supported);
    dsp_program program;
    if (!e) e = lower(g, &program);
    kiln__ir__graph__free_unpacked(g, NULL);
    if (e) return e;
    ak_owner *o = ak_owner_new(AK_OWNER_PAYLOAD);
    if (o) dsp_encode(&program, &o->payload);
    dsp_program_free(&program);
    return ak_payload_answer(out, o, DSP_COMPAT);
}

/* Callback: whether this backend loads payloads of compatibility string `compat`. */
static kiln_plugin_error *check(void *context, const char *compat) {
    (void)context;
    return ak_check_compat(compat, DSP_COMPAT, DSP_BACKEND_NAME " " DSP_VERSION);
}

/* Step names of a version 1 payload's ops (it has no layer table), by opcode. */
static const char *const op_names[DSP_OP_LAST + 1] = {"?", "Quantize", "Dequantize", "QLinearMatMul", "QLinearConv", "Relu", "MaxPool", "LookupTable", "Softmax",
                                                       "QLinearAdd", "QLinearAveragePool"};

/* A loaded program and its last run's profile (plugin ABI 1.4). */
typedef struct dsp_executable {
    dsp_program program;   /* first: freeing the program's pointer frees the executable */
    ak_profile profile;
} dsp_executable;

/* Callback: decodes and validates a payload into an executable (a dsp_executable) on device 0. */
static kiln_plugin_error *load_with_options(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                                            const kiln_plugin_load_options *options, void **out_executable) {
    (void)context;
    kiln_plugin_error *e = ak_load_arguments(payload, options, out_executable);
    if (e) return e;
    dsp_executable *x = calloc(1, sizeof *x);
    if (!x) return ak_error(KILN_ERROR_INTERNAL, "load: out of memory");
    dsp_program *program = &x->program;
    char why[256];
    if (dsp_decode(payload->data, payload->size, program, why, sizeof why)) {
        free(program);
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: %s", why);
    }
    if ((e = ak_check_graph_io(graph, (long)program->input_count, program->output_count))) { dsp_program_free(program); free(program); return e; }
    ak_profile_init(&x->profile);
    *out_executable = x;
    return NULL;
}

/* Callback (ABI 1.0): load_with_options on device 0. */
static kiln_plugin_error *load(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph, void **out_executable) {
    return load_with_options(context, payload, graph, NULL, out_executable);
}

/* ---- execute ---------------------------------------------------------------------------------------- */

/* A value during a run: borrowed (inputs, constants) or owned (op results). */
typedef struct run_value {
    uint32_t dtype, rank;
    int64_t dims[DSP_MAX_RANK];
    int64_t count;
    const void *data;
    void *owned;
    int set;
} run_value;

/* A real scale in (0, 1) as a Q31 multiplier and shift (kernels.h). Returns 0, or -1 when out of range. */
static int make_requant(double scale, int32_t zero_point, dsp_requant *q) {
    if (!(scale > 0) || !(scale < 1)) return -1;
    int shift = 0;
    while (scale < 0.5 && shift < 31) { scale *= 2; shift++; }
    int64_t m = llround(scale * 2147483648.0);
    if (m >= 2147483648ll) {
        if (shift == 0) return -1;
        m = 1073741824;
        shift--;
    }
    q->multiplier = (int32_t)m;
    q->shift = shift;
    q->zero_point = zero_point;
    return 0;
}

/* The one float of a value (a scale). */
static int scalar_f32(const run_value *v, float *out) {
    if (!v || v->dtype != DSP_F32 || v->count != 1) return -1;
    memcpy(out, v->data, 4);
    return 0;
}
/* The one byte of a zero point as int32, with its dtype; an absent one is uint8 0. */
static int scalar_zp(const run_value *v, int32_t *out, uint32_t *dtype) {
    if (!v) { *out = 0; *dtype = DSP_U8; return 0; }
    if (v->count != 1) return -1;
    if (v->dtype == DSP_U8) *out = *(const uint8_t *)v->data;
    else if (v->dtype == DSP_I8) *out = *(const int8_t *)v->data;
    else if (v->dtype == DSP_I32) memcpy(out, v->data, 4);
    else return -1;
    *dtype = v->dtype;
    return 0;
}

/* Allocates an op's result of `dtype` and shape into `r`. */
static int make_result(run_value *r, uint32_t dtype, uint32_t rank, const int64_t *dims) {
    r->dtype = dtype;
    r->rank = rank;
    for (uint32_t d = 0; d < rank; d++) r->dims[d] = dims[d];
    r->count = dsp_element_count(rank, dims);
    if (r->count < 0 || (uint64_t)r->count > ((uint64_t)1 << 40)) return -1;
    r->owned = malloc(r->count ? (size_t)r->count * dsp_dtype_size(dtype) : 1);
    r->data = r->owned;
    r->set = 1;
    return r->owned ? 0 : -1;
}

/* Copies byte tensor `src` broadcast (ONNX multidirectional broadcasting, already checked) to the shape `dims` of
 * rank `rank` >= src's into `dst`. */
static void broadcast_bytes(const run_value *src, uint32_t rank, const int64_t *dims, int64_t count, uint8_t *dst) {
    int64_t stride[DSP_MAX_RANK], at[DSP_MAX_RANK] = {0}, step = 1;
    for (uint32_t d = rank; d-- > 0;) {
        int64_t sd = d + src->rank >= rank ? src->dims[d + src->rank - rank] : 1;
        stride[d] = sd == 1 ? 0 : step;
        step *= sd;
    }
    const uint8_t *s = src->data;
    int64_t offset = 0;
    for (int64_t i = 0; i < count; i++) {
        dst[i] = s[offset];
        for (uint32_t d = rank; d-- > 0;) { /* the next index, odometer style */
            offset += stride[d];
            if (++at[d] < dims[d]) break;
            offset -= stride[d] * at[d];
            at[d] = 0;
        }
    }
}

/* QLinearAdd: a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp (per tensor, all of the data's type), broadcast
 * operands materialized to the result's shape, then dsp_qadd. */
static kiln_plugin_error *run_qadd(run_value **in, run_value *out, uint32_t index, dsp_cost *cost) {
    float s[3];
    int32_t z[3];
    uint32_t zt[3];
    size_t si[3] = {1, 4, 6}, zi[3] = {2, 5, 7};
    for (int k = 0; k < 3; k++)
        if (scalar_f32(in[si[k]], &s[k]) || !(s[k] > 0) || !isfinite(s[k]) || scalar_zp(in[zi[k]], &z[k], &zt[k]))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: QLinearAdd's scales must be one positive float32 and its zero points one byte", index);
    const run_value *a = in[0], *b = in[3];
    uint32_t t = a->dtype;
    if ((t != DSP_U8 && t != DSP_I8) || b->dtype != t || zt[0] != t || zt[1] != t || zt[2] != t)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: QLinearAdd's operands, result and zero points must all be uint8 or all int8", index);
    double sa = s[0], sb = s[1], sy = s[2], m = sa > sb ? sa : sb;
    dsp_requant qa, qb, qo;
    if (make_requant(sa / (2 * m), 0, &qa) || make_requant(sb / (2 * m), 0, &qb) || make_requant(2 * m / (1048576.0 * sy), z[2], &qo))
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: QLinearAdd's scales %g, %g -> %g do not fit the Q31 requantization", index, sa, sb, sy);
    uint32_t rank = a->rank > b->rank ? a->rank : b->rank;
    int64_t dims[DSP_MAX_RANK];
    for (uint32_t d = 0; d < rank; d++) {
        int64_t da = d + a->rank >= rank ? a->dims[d + a->rank - rank] : 1, db = d + b->rank >= rank ? b->dims[d + b->rank - rank] : 1;
        if (da != db && da != 1 && db != 1)
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: QLinearAdd's operands do not broadcast (dim %u: %lld and %lld)", index, d, (long long)da, (long long)db);
        dims[d] = da == 1 ? db : da;
    }
    int64_t n = dsp_element_count(rank, dims);
    if (n < 0 || (uint64_t)n > DSP_MAX_OP_WORK) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: QLinearAdd is beyond this backend's work limit", index);
    if (make_result(out, t, rank, dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    uint8_t *ea = a->count != n ? malloc((size_t)n + 1) : NULL, *eb = b->count != n ? malloc((size_t)n + 1) : NULL;
    if ((a->count != n && !ea) || (b->count != n && !eb)) { free(ea); free(eb); return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); }
    if (ea) broadcast_bytes(a, rank, dims, n, ea);
    if (eb) broadcast_bytes(b, rank, dims, n, eb);
    if (n) dsp_qadd(ea ? ea : a->data, z[0], eb ? eb : b->data, z[1], (size_t)n, t == DSP_U8, &qa, &qb, &qo, out->owned);
    free(ea);
    free(eb);
    cost_add(cost, (uint64_t)a->count + (uint64_t)b->count, (uint64_t)n, ((uint64_t)n + 127) / 128 * 90 + (ea || eb ? ((uint64_t)n + 127) / 128 : 0));
    return NULL;
}

/* QLinearAveragePool / QLinearGlobalAveragePool (x and y in the same quantization): dsp_avgpool on the bytes. */
static kiln_plugin_error *run_qavgpool(const dsp_op *op, run_value **in, run_value *out, uint32_t index, dsp_cost *cost) {
    const run_value *x = in[0];
    float sx, sy;
    int32_t zx, zy;
    uint32_t tx, ty;
    if ((x->dtype != DSP_U8 && x->dtype != DSP_I8) || x->rank != 4)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: average pooling takes a rank-4 uint8/int8 tensor", index);
    if (scalar_f32(in[1], &sx) || scalar_f32(in[3], &sy) || scalar_zp(in[2], &zx, &tx) || scalar_zp(in[4], &zy, &ty) ||
        tx != x->dtype || ty != x->dtype || memcmp(&sx, &sy, 4) != 0 || zx != zy)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: average pooling needs y's scale and zero point (of x's type) equal to x's: the kernel does not requantize", index);
    int64_t B = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
    int64_t kh = op->params[0], kw = op->params[1], sh = op->params[2], sw = op->params[3];
    int64_t pt = op->params[4], pl = op->params[5], pb = op->params[6], pr = op->params[7], include = op->params[8], global = op->params[9];
    if (global == 1) {
        if (kh || kw || sh || sw || pt || pl || pb || pr || include) return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u: a global average pooling has window params in the payload", index);
        kh = H; kw = W; sh = sw = 1;
    } else if (global != 0 || kh < 1 || kw < 1 || kh > 128 || kw > 128 || sh < 1 || sw < 1 || sh > 4096 || sw > 4096 || pt < 0 || pl < 0 || pb < 0 ||
               pr < 0 || pt >= kh || pb >= kh || pl >= kw || pr >= kw || (include != 0 && include != 1)) {
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u: average pooling attributes out of range in the payload", index);
    }
    if (kh < 1 || kw < 1 || kh * kw > 128)
        return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: an average pooling window of %lld×%lld (at most 128 elements)", index, (long long)kh, (long long)kw);
    if (include && (pt || pl || pb || pr) && zx != 0)
        return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: count_include_pad with pads needs x_zero_point 0", index);
    if (H + pt + pb < kh || W + pl + pr < kw) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: the window is larger than the padded input", index);
    int64_t OH = (H + pt + pb - kh) / sh + 1, OW = (W + pl + pr - kw) / sw + 1;
    if ((uint64_t)B * (uint64_t)C * (uint64_t)OH * (uint64_t)OW * (uint64_t)(kh * kw) > DSP_MAX_OP_WORK)
        return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: average pooling beyond this backend's work limit", index);
    int64_t dims[4] = {B, C, OH, OW};
    if (make_result(out, x->dtype, 4, dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    dsp_pool pool = {
        .C = (size_t)(B * C), .H = (size_t)H, .W = (size_t)W, .KH = (size_t)kh, .KW = (size_t)kw, .stride_h = (size_t)sh,
        .stride_w = (size_t)sw, .pad_top = (size_t)pt, .pad_left = (size_t)pl, .OH = (size_t)OH, .OW = (size_t)OW,
        .is_unsigned = x->dtype == DSP_U8, .count_include_pad = (int)include, .X = x->data, .Y = out->owned,
    };
    if (out->count && dsp_avgpool(&pool)) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: the average pooling kernel refused the window", index);
    cost_add(cost, (uint64_t)x->count, (uint64_t)out->count, (uint64_t)(B * C * OH) * (((uint64_t)OW + 127) / 128) * ((uint64_t)(kh * kw) * 3 + 6));
    return NULL;
}

/* Runs one op. */
static kiln_plugin_error *run_op(const dsp_op *op, run_value *values, uint32_t index, dsp_cost *cost) {
    run_value *in[DSP_MAX_OP_INPUTS] = {0};
    for (uint32_t k = 0; k < op->input_count; k++) {
        if (op->inputs[k] == DSP_NO_VALUE) continue;
        in[k] = &values[op->inputs[k]];
        if (!in[k]->set) return ak_error(KILN_ERROR_RUNTIME, "execute: op %u reads a value that was never set", index);
    }
    run_value *out = &values[op->output];
    size_t need = op->opcode == DSP_OP_RELU || op->opcode == DSP_OP_MAXPOOL ? 1 : op->opcode == DSP_OP_QAVGPOOL ? 5
                : op->opcode <= DSP_OP_DEQUANTIZE || op->opcode == DSP_OP_LUT || op->opcode == DSP_OP_SOFTMAX ? 2 : 8;
    if (op->input_count < need) return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u has %u inputs, needs %zu", index, op->input_count, need);
    for (size_t k = 0; k < need; k++)
        if (!in[k]) return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u lacks required input %zu", index, k);
    switch (op->opcode) {
    case DSP_OP_RELU: {
        if (in[0]->dtype != DSP_F32) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: Relu input is not float32");
        if (make_result(out, DSP_F32, in[0]->rank, in[0]->dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        const float *x = in[0]->data;
        float *y = out->owned;
        for (int64_t i = 0; i < out->count; i++) y[i] = x[i] > 0 ? x[i] : (x[i] == x[i] ? 0.0f : x[i]);
        cost_add(cost, (uint64_t)out->count * 4, (uint64_t)out->count * 4, ((uint64_t)out->count + 31) / 32);
        return NULL;
    }
    case DSP_OP_MAXPOOL: {
        const run_value *x = in[0];
        if ((x->dtype != DSP_U8 && x->dtype != DSP_I8) || x->rank != 4) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: MaxPool takes a rank-4 uint8/int8 tensor");
        int64_t kh = op->params[0], kw = op->params[1], sh = op->params[2], sw = op->params[3];
        int64_t pt = op->params[4], pl = op->params[5], pb = op->params[6], pr = op->params[7];
        if (kh < 1 || kw < 1 || kh > 256 || kw > 256 || sh < 1 || sw < 1 || sh > 4096 || sw > 4096 ||
            pt < 0 || pl < 0 || pb < 0 || pr < 0 || pt >= kh || pb >= kh || pl >= kw || pr >= kw)
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: MaxPool: attributes out of range in the payload");
        int64_t B = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3];
        if (H + pt + pb < kh || W + pl + pr < kw) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: MaxPool: the window is larger than the padded input");
        int64_t OH = (H + pt + pb - kh) / sh + 1, OW = (W + pl + pr - kw) / sw + 1;
        if ((uint64_t)B * (uint64_t)C * (uint64_t)OH * (uint64_t)OW * (uint64_t)(kh * kw) > DSP_MAX_OP_WORK)
            return ak_error(KILN_ERROR_UNSUPPORTED, "execute: MaxPool is beyond this backend's work limit");
        int64_t dims[4] = {B, C, OH, OW};
        if (make_result(out, x->dtype, 4, dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        dsp_pool pool = {
            .C = (size_t)(B * C), .H = (size_t)H, .W = (size_t)W, .KH = (size_t)kh, .KW = (size_t)kw, .stride_h = (size_t)sh,
            .stride_w = (size_t)sw, .pad_top = (size_t)pt, .pad_left = (size_t)pl, .OH = (size_t)OH, .OW = (size_t)OW,
            .is_unsigned = x->dtype == DSP_U8, .count_include_pad = 0, .X = x->data, .Y = out->owned,
        };
        if (out->count) dsp_maxpool(&pool);
        cost_add(cost, (uint64_t)x->count, (uint64_t)out->count, (uint64_t)(B * C * OH) * (((uint64_t)OW + 127) / 128) * (uint64_t)(kh * kw) * 2);
        return NULL;
    }
    case DSP_OP_QADD: return run_qadd(in, out, index, cost);
    case DSP_OP_QAVGPOOL: return run_qavgpool(op, in, out, index, cost);
    case DSP_OP_LUT: {
        const run_value *x = in[0], *t = in[1];
        int64_t C = op->params[0], from_end = op->params[1], min_rank = op->params[2], xt = op->params[3], yt = op->params[4];
        if (C < 1 || C > DSP_MAX_CHANNELS || from_end < 0 || from_end >= DSP_MAX_RANK || min_rank < 0 || min_rank > DSP_MAX_RANK ||
            (xt != DSP_U8 && xt != DSP_I8) || (yt != DSP_U8 && yt != DSP_I8) || t->dtype != DSP_U8 || t->count != 256 * C)
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u: lookup-table parameters out of range in the payload", index);
        if (x->dtype != (uint32_t)xt) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: the lookup table's input has type %u, not %lld", index, x->dtype, (long long)xt);
        if ((int64_t)x->rank < min_rank || (C > 1 && ((int64_t)x->rank <= from_end || x->dims[x->rank - 1 - from_end] != C)))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: a rank-%u input does not fit the lookup table's %lld channels", index, x->rank, (long long)C);
        if (make_result(out, (uint32_t)yt, x->rank, x->dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        size_t inner = 1, outer = 1;
        if (C > 1) {
            for (uint32_t d = x->rank - (uint32_t)from_end; d < x->rank; d++) inner *= (size_t)x->dims[d];
            outer = inner ? (size_t)x->count / inner / (size_t)C : 0;
        } else {
            inner = (size_t)x->count;
        }
        const uint8_t *src = x->data, *tables = t->data;
        uint8_t *dst = out->owned;
        for (size_t o = 0; o < outer; o++)
            for (int64_t c = 0; c < C; c++) {
                size_t at = (o * (size_t)C + (size_t)c) * inner;
                if (inner) dsp_lut(src + at, inner, tables + 256 * c, dst + at);
            }
        cost_add(cost, (uint64_t)x->count + 256 * (uint64_t)C, (uint64_t)out->count, (uint64_t)outer * (uint64_t)C * (((uint64_t)inner + 127) / 128) * 10 + 2 * (uint64_t)C);
        return NULL;
    }
    case DSP_OP_SOFTMAX: {
        const run_value *x = in[0], *t = in[1];
        int64_t mult = op->params[0], exponent = op->params[1], zy = op->params[2], xt = op->params[3], yt = op->params[4], axis = op->params[5];
        if (mult < ((int64_t)1 << 30) || mult >= ((int64_t)1 << 31) || exponent < -14 || exponent > 30 || (xt != DSP_U8 && xt != DSP_I8) ||
            (yt != DSP_U8 && yt != DSP_I8) || zy < (yt == DSP_U8 ? 0 : -128) || zy > (yt == DSP_U8 ? 255 : 127) || t->dtype != DSP_U8 || t->count != 512)
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: op %u: Softmax parameters out of range in the payload", index);
        if (x->dtype != (uint32_t)xt) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: the Softmax input has type %u, not %lld", index, x->dtype, (long long)xt);
        if (x->rank < 1 || (axis != -1 && axis != (int64_t)x->rank - 1))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: Softmax over axis %lld of a rank-%u input: only the last axis is supported", index, (long long)axis, x->rank);
        int64_t n = x->dims[x->rank - 1];
        if (n > DSP_SOFTMAX_MAX_ROW) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: op %u: Softmax rows of %lld (at most %d)", index, (long long)n, DSP_SOFTMAX_MAX_ROW);
        if (make_result(out, (uint32_t)yt, x->rank, x->dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        size_t rows = n > 0 ? (size_t)(x->count / n) : 0;
        int32_t *scratch = malloc(((size_t)n + 128) * sizeof(int32_t));
        if (!scratch) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        dsp_softmax sm = {
            .rows = rows, .n = (size_t)n, .X = x->data, .x_unsigned = xt == DSP_U8, .exp_hi = t->data, .exp_lo = (const uint8_t *)t->data + 256,
            .out_multiplier = (int32_t)mult, .out_exponent = (int32_t)exponent, .zero_point = (int32_t)zy, .out_unsigned = yt == DSP_U8,
            .Y = out->owned, .scratch = scratch,
        };
        if (rows) dsp_softmax_rows(&sm);
        free(scratch);
        cost_add(cost, (uint64_t)x->count + 512, (uint64_t)out->count, (uint64_t)rows * ((((uint64_t)n + 127) / 128) * 75 + 50));
        return NULL;
    }
    case DSP_OP_QUANTIZE: case DSP_OP_DEQUANTIZE: {
        float scale;
        int32_t zp;
        uint32_t zdtype;
        if (scalar_f32(in[1], &scale) || scalar_zp(op->input_count > 2 ? in[2] : NULL, &zp, &zdtype))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: scale and zero point must have one element each", index);
        if (op->opcode == DSP_OP_QUANTIZE) {
            if (in[0]->dtype != DSP_F32 || zdtype == DSP_I32) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QuantizeLinear takes float32 to uint8/int8");
            if (make_result(out, zdtype, in[0]->rank, in[0]->dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
            const float *x = in[0]->data;
            uint8_t *y = out->owned;
            int32_t lo = zdtype == DSP_U8 ? 0 : -128, hi = zdtype == DSP_U8 ? 255 : 127;
            for (int64_t i = 0; i < out->count; i++) {
                float q = nearbyintf(x[i] / scale); /* round half to even, as ONNX specifies */
                float v = q != q ? (float)zp : q + (float)zp;
                y[i] = (uint8_t)(int32_t)(v < lo ? lo : v > hi ? hi : v);
            }
            cost_add(cost, (uint64_t)out->count * 4, (uint64_t)out->count, ((uint64_t)out->count + 31) / 32 * 3);
        } else {
            if (op->input_count > 2 && in[2] && in[2]->dtype != in[0]->dtype) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: DequantizeLinear: x and zero point differ in type");
            if (make_result(out, DSP_F32, in[0]->rank, in[0]->dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
            float *y = out->owned;
            for (int64_t i = 0; i < out->count; i++) {
                int32_t x;
                if (in[0]->dtype == DSP_U8) x = ((const uint8_t *)in[0]->data)[i];
                else if (in[0]->dtype == DSP_I8) x = ((const int8_t *)in[0]->data)[i];
                else if (in[0]->dtype == DSP_I32) memcpy(&x, (const uint8_t *)in[0]->data + 4 * i, 4);
                else return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: DequantizeLinear input type %u", in[0]->dtype);
                y[i] = (float)((int64_t)x - zp) * scale;
            }
            cost_add(cost, (uint64_t)out->count * dsp_dtype_size(in[0]->dtype), (uint64_t)out->count * 4, ((uint64_t)out->count + 31) / 32 * 3);
        }
        return NULL;
    }
    default: break;
    }
    /* QLinearMatMul / QLinearConv */
    float s[3];
    int32_t z[3];
    uint32_t zt[3];
    size_t si[3] = {1, 4, 6}, zi[3] = {2, 5, 7};
    int per_channel = in[4]->count > 1; /* QLinearConv: per output channel; QLinearMatMul: per column of b */
    for (int k = 0; k < 3; k++) {
        run_value one = *in[si[k]], onez = *in[zi[k]];
        if (k == 1) {  /* per-channel: checked against w below; read the first here */
            one.count = one.count >= 1 && one.dtype == DSP_F32 ? 1 : one.count;
            if (onez.count >= 1 && (onez.dtype == DSP_U8 || onez.dtype == DSP_I8)) {
                for (int64_t i = 1; i < onez.count; i++)
                    if (((const uint8_t *)onez.data)[i] != ((const uint8_t *)onez.data)[0])
                        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: per-channel w zero points must be equal", index);
                onez.count = 1;
            }
        }
        if (scalar_f32(&one, &s[k]) || scalar_zp(&onez, &z[k], &zt[k]) || zt[k] == DSP_I32)
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: scales must be one float32 and zero points one uint8/int8", index);
    }
    const run_value *x = in[0], *w = in[3];
    if ((x->dtype != DSP_U8 && x->dtype != DSP_I8) || (w->dtype != DSP_U8 && w->dtype != DSP_I8) || x->dtype != zt[0] || w->dtype != zt[1])
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: operands must be uint8/int8 matching their zero points", index);
    dsp_requant rq;
    double ratio = (double)(float)(s[0] * s[1]) / s[2];
    if (make_requant(ratio, z[2], &rq)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: requantization scale %g is not in (0, 1)", index, ratio);
    int xu = x->dtype == DSP_U8, wu = w->dtype == DSP_U8, yu = zt[2] == DSP_U8;
    if (op->opcode == DSP_OP_QMATMUL) {
        int64_t trans_b = op->params[0];
        const run_value *bias = op->input_count > 8 ? in[8] : NULL;
        if (trans_b != 0 && trans_b != 1) return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: QLinearMatMul: transB %lld in the payload", (long long)trans_b);
        if (x->rank < 2 || w->rank != 2 || x->dims[x->rank - 1] != w->dims[trans_b ? 1 : 0])
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearMatMul: shapes do not multiply (a rank %u, b rank %u)", x->rank, w->rank);
        int64_t K = w->dims[trans_b ? 1 : 0], N = w->dims[trans_b ? 0 : 1], M = K ? x->count / K : 0;
        if (K == 0) M = dsp_element_count(x->rank - 1, x->dims);
        if ((uint64_t)M * (uint64_t)N > DSP_MAX_OP_WORK || (uint64_t)M * (uint64_t)N * (uint64_t)(K ? K : 1) > DSP_MAX_OP_WORK)
            return ak_error(KILN_ERROR_UNSUPPORTED, "execute: QLinearMatMul of %lld×%lld×%lld is beyond this backend's limit", (long long)M, (long long)K, (long long)N);
        if (bias && (bias->dtype != DSP_I32 || bias->count != N))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearMatMul: the bias must be %lld int32 values", (long long)N);
        if (per_channel && (in[4]->count != N || (in[5]->count > 1 && in[5]->count != N)))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearMatMul: %lld b scales / %lld b zero points for %lld columns",
                            (long long)in[4]->count, (long long)in[5]->count, (long long)N);
        if (per_channel && N > DSP_MAX_CHANNELS) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: QLinearMatMul: more than %d per-column scales", DSP_MAX_CHANNELS);
        int64_t dims[DSP_MAX_RANK];
        for (uint32_t d = 0; d + 1 < x->rank; d++) dims[d] = x->dims[d];
        dims[x->rank - 1] = N;
        if (make_result(out, zt[2], x->rank, dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        if (!trans_b && !per_channel && !bias) { /* C = A·B: the activations as A, 128 columns of B per vrmpy step */
            uint8_t *packed = malloc(dsp_gemm_packed_size((size_t)K, (size_t)N) + 1);
            int32_t *colsum = malloc(((size_t)N + 1) * sizeof(int32_t));
            if (!packed || !colsum) { free(packed); free(colsum); return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); }
            dsp_gemm_pack_b(w->data, (size_t)K, (size_t)N, (size_t)N, wu, packed, colsum);
            dsp_gemm g = {
                .M = (size_t)M, .N = (size_t)N, .K = (size_t)K, .A = x->data, .lda = (size_t)K, .a_unsigned = xu, .za = z[0],
                .B_packed = packed, .colsum = colsum, .b_unsigned = wu, .zb = z[1], .bias_row = NULL, .bias_col = NULL,
                .requant = rq, .out_unsigned = yu, .C = out->owned, .ldc = (size_t)N,
            };
            if (M && N) dsp_qgemm(&g);
            free(packed);
            free(colsum);
            cost_add(cost, (uint64_t)(M * K + K * N), (uint64_t)(M * N),
                     (uint64_t)M * (((uint64_t)N + 127) / 128) * (4 * (((uint64_t)K + 3) / 4) + 4 * 6 + 3));
            return NULL;
        }
        /* a fully connected layer with per-column scales, a bias or b given transposed: C^T = B^T·A^T, so that each
         * column of b is a row of the product with its own requantization (dsp_gemm's row_requant) and bias */
        dsp_requant column_rq[DSP_MAX_CHANNELS];
        for (int64_t o = 0; per_channel && o < N; o++) {
            float ws;
            memcpy(&ws, (const uint8_t *)in[4]->data + 4 * o, 4);
            double r = (double)(float)(s[0] * ws) / s[2];
            if (make_requant(r, z[2], &column_rq[o]))
                return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: column %lld's requantization scale %g is not in (0, 1)", index, (long long)o, r);
        }
        size_t m_ = (size_t)M, n_ = (size_t)N, k_ = (size_t)K;
        uint8_t *wt = trans_b ? NULL : malloc(n_ * k_ + 1), *xt = malloc(k_ * m_ + 1), *ct = malloc(n_ * m_ + 1);
        uint8_t *packed = malloc(dsp_gemm_packed_size(k_, m_) + 1);
        int32_t *colsum = malloc((m_ + 1) * sizeof(int32_t));
        if ((!trans_b && !wt) || !xt || !ct || !packed || !colsum) {
            free(wt); free(xt); free(ct); free(packed); free(colsum);
            return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
        }
        const uint8_t *wsrc = w->data, *xsrc = x->data;
        for (size_t k = 0; !trans_b && k < k_; k++) for (size_t n = 0; n < n_; n++) wt[n * k_ + k] = wsrc[k * n_ + n];
        for (size_t m = 0; m < m_; m++) for (size_t k = 0; k < k_; k++) xt[k * m_ + m] = xsrc[m * k_ + k];
        dsp_gemm_pack_b(xt, k_, m_, m_, xu, packed, colsum);
        dsp_gemm g = {
            .M = n_, .N = m_, .K = k_, .A = trans_b ? wsrc : wt, .lda = k_, .a_unsigned = wu, .za = z[1],
            .B_packed = packed, .colsum = colsum, .b_unsigned = xu, .zb = z[0], .bias_row = bias ? bias->data : NULL, .bias_col = NULL,
            .requant = rq, .out_unsigned = yu, .row_requant = per_channel ? column_rq : NULL, .C = ct, .ldc = m_,
        };
        if (m_ && n_) dsp_qgemm(&g);
        uint8_t *y = out->owned;
        for (size_t n = 0; n < n_; n++) for (size_t m = 0; m < m_; m++) y[m * n_ + n] = ct[n * m_ + m];
        free(wt); free(xt); free(ct); free(packed); free(colsum);
        cost_add(cost, (uint64_t)(M * K + K * N) + (bias ? 4 * (uint64_t)N : 0), (uint64_t)(M * N),
                 (uint64_t)N * (((uint64_t)M + 127) / 128) * (4 * (((uint64_t)K + 3) / 4) + 4 * 6 + 3) + 2 * (((uint64_t)(M * K + M * N) + 127) / 128));
        return NULL;
    }
    /* QLinearConv */
    const run_value *bias = op->input_count > 8 ? in[8] : NULL;
    if (x->rank != 4 || w->rank != 4) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearConv: x and w must have rank 4");
    int64_t group = op->params[0], sh = op->params[1], sw = op->params[2], pt = op->params[3], pl = op->params[4], pb = op->params[5], pr = op->params[6];
    int64_t dh = op->params[7], dw = op->params[8];
    if (group < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || pt < 0 || pl < 0 || pb < 0 || pr < 0 ||
        group > 65536 || sh > 4096 || sw > 4096 || dh > 4096 || dw > 4096 || pt > 4096 || pl > 4096 || pb > 4096 || pr > 4096)
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: QLinearConv: attributes out of range in the payload");
    int64_t B = x->dims[0], C = x->dims[1], H = x->dims[2], W = x->dims[3], O = w->dims[0], KH = w->dims[2], KW = w->dims[3];
    if (C % group || O % group || w->dims[1] * group != C || KH < 1 || KW < 1)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearConv: x has %lld channels, w is %lld×%lld×%lld×%lld, group %lld: they do not fit",
                     (long long)C, (long long)O, (long long)w->dims[1], (long long)KH, (long long)KW, (long long)group);
    if (bias && (bias->dtype != DSP_I32 || bias->count != O)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearConv: the bias must be %lld int32 values", (long long)O);
    int64_t eh = (KH - 1) * dh + 1, ew = (KW - 1) * dw + 1;
    if (H + pt + pb < eh || W + pl + pr < ew) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearConv: the kernel is larger than the padded input");
    int64_t OH = (H + pt + pb - eh) / sh + 1, OW = (W + pl + pr - ew) / sw + 1;
    uint64_t work = (uint64_t)B * (uint64_t)O * (uint64_t)OH * (uint64_t)OW * (uint64_t)(C / group) * (uint64_t)KH * (uint64_t)KW;
    if (work > DSP_MAX_OP_WORK || (uint64_t)OH * (uint64_t)OW > ((uint64_t)1 << 31)) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: QLinearConv is beyond this backend's work limit");
    if (per_channel && (in[4]->count != O || (in[5]->count > 1 && in[5]->count != O)))
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: QLinearConv: %lld w scales / %lld w zero points for %lld output channels",
                     (long long)in[4]->count, (long long)in[5]->count, (long long)O);
    if (O > DSP_MAX_CHANNELS) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: QLinearConv: more than %d output channels", DSP_MAX_CHANNELS);
    dsp_requant channel_rq[DSP_MAX_CHANNELS];
    for (int64_t o = 0; per_channel && o < O; o++) {
        float ws;
        memcpy(&ws, (const uint8_t *)in[4]->data + 4 * o, 4);
        double r = (double)(float)(s[0] * ws) / s[2];
        if (make_requant(r, z[2], &channel_rq[o]))
            return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: op %u: channel %lld's requantization scale %g is not in (0, 1)", index, (long long)o, r);
    }
    int64_t dims[4] = {B, O, OH, OW};
    if (make_result(out, zt[2], 4, dims)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    size_t scratch_bytes = dsp_conv_scratch_bytes((size_t)C, (size_t)group, (size_t)KH, (size_t)KW, (size_t)OH, (size_t)OW);
    uint8_t *scratch = malloc(scratch_bytes + 1);
    int32_t *colsum = malloc(((size_t)(OH * OW) + 1) * sizeof(int32_t));
    if (!scratch || !colsum) { free(scratch); free(colsum); return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); }
    for (int64_t b = 0; b < B; b++) {
        dsp_conv c = {
            .C = (size_t)C, .H = (size_t)H, .W = (size_t)W, .O = (size_t)O, .group = (size_t)group, .KH = (size_t)KH, .KW = (size_t)KW,
            .stride_h = (size_t)sh, .stride_w = (size_t)sw, .pad_top = (size_t)pt, .pad_left = (size_t)pl, .dil_h = (size_t)dh, .dil_w = (size_t)dw,
            .OH = (size_t)OH, .OW = (size_t)OW,
            .X = (const uint8_t *)x->data + (size_t)(b * C * H * W), .x_unsigned = xu, .zx = z[0],
            .Wt = w->data, .w_unsigned = wu, .zw = z[1], .bias = bias ? bias->data : NULL,
            .requant = rq, .out_unsigned = yu, .channel_requant = per_channel ? channel_rq : NULL,
            .Y = (uint8_t *)out->owned + (size_t)(b * O * OH * OW),
            .scratch = scratch, .scratch_colsum = colsum,
        };
        if (O && OH && OW) dsp_qconv(&c);
    }
    free(scratch);
    free(colsum);
    uint64_t K = (uint64_t)(C / group) * (uint64_t)(KH * KW);
    cost_add(cost, (uint64_t)x->count + (uint64_t)w->count + (bias ? 4 * (uint64_t)O : 0), (uint64_t)out->count,
             (uint64_t)B * (uint64_t)O * (((uint64_t)(OH * OW) + 127) / 128) * (4 * ((K + 3) / 4) + 27) + (uint64_t)B * (uint64_t)group * ((scratch_bytes + 127) / 128));
    return NULL;
}

/* Callback: runs a program on host tensors and records its cost estimate. */
static kiln_plugin_error *execute(void *context, void *executable, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs, size_t output_count) {
    (void)context;
    dsp_executable *x = executable;
    const dsp_program *p = x ? &x->program : NULL;
    kiln_plugin_error *e = ak_execute_arguments(executable, input_count, output_count, p ? p->input_count : 0, p ? p->output_count : 0, inputs, outputs);
    if (e) return e;
    run_value *values = calloc(p->value_count + 1, sizeof(run_value));
    ak_step *steps = calloc(2 * (size_t)p->op_count + 1, sizeof *steps);
    if (!values || !steps) { free(values); free(steps); return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); }
    for (size_t i = 0; !e && i < input_count; i++) {
        const kiln_tensor *t = &inputs[i];
        uint32_t want = p->input_dtypes[i];
        uint8_t code = want == DSP_F32 ? KILN_DTYPE_FLOAT : want == DSP_U8 ? KILN_DTYPE_UINT : KILN_DTYPE_INT;
        if (t->dtype.code != code || t->dtype.bits != 8 * dsp_dtype_size(want) || t->dtype.lanes != 1)
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has dtype (code %u, bits %u); the program wants IR type %u", i, t->dtype.code, t->dtype.bits, want);
        else if (t->ndim < 0 || t->ndim > DSP_MAX_RANK || (t->ndim > 0 && !t->shape))
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has rank %d (at most %d)", i, t->ndim, DSP_MAX_RANK);
        else if (t->strides || t->byte_offset || t->device.device_type != KILN_DEVICE_CPU)
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is not a compact CPU tensor", i);
        if (e) break;
        run_value *v = &values[p->inputs[i]];
        v->dtype = want;
        v->rank = (uint32_t)t->ndim;
        for (int32_t d = 0; d < t->ndim; d++) v->dims[d] = t->shape[d];
        v->count = dsp_element_count(v->rank, v->dims);
        if (v->count < 0) { e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has an invalid shape", i); break; }
        if (v->count > 0 && !t->data) { e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has NULL data", i); break; }
        v->data = t->data;
        v->set = 1;
    }
    for (uint32_t i = 0; !e && i < p->constant_count; i++) {
        const dsp_constant *c = &p->constants[i];
        run_value *v = &values[c->value];
        v->dtype = c->dtype;
        v->rank = c->rank;
        memcpy(v->dims, c->dims, sizeof v->dims);
        v->count = dsp_element_count(c->rank, c->dims);
        v->data = c->data;
        v->set = 1;
    }
    dsp_cost cost = {0, 0, 0};
    size_t step_count = 0;
    for (uint32_t i = 0; !e && i < p->op_count; i++) {
        /* the profile: each op's share of the run's HVX and DMA cycles, as differences of the running totals (so
         * that they add up to the whole run's exactly); HVX and DMA each run the ops back to back, overlapped */
        uint64_t hvx0 = compute_cycles(&cost), dma0 = dma_cycles(&cost);
        e = run_op(&p->ops[i], values, i, &cost);
        uint64_t hvx1 = compute_cycles(&cost), dma1 = dma_cycles(&cost);
        const char *layer = p->layers.count ? p->layers.names[p->layers.of[i]] : op_names[p->ops[i].opcode];
        if (hvx1 > hvx0) steps[step_count++] = (ak_step){layer, "HVX", hvx0, hvx1 - hvx0};
        if (dma1 > dma0) steps[step_count++] = (ak_step){layer, "DMA", dma0, dma1 - dma0};
    }
    for (size_t i = 0; !e && i < output_count; i++) {
        const run_value *v = &values[p->outputs[i]];
        e = ak_output(&outputs[i], i, v->data, (size_t)v->count * dsp_dtype_size(v->dtype),
                      v->dtype == DSP_F32 ? KILN_DTYPE_FLOAT : v->dtype == DSP_U8 ? KILN_DTYPE_UINT : KILN_DTYPE_INT, (uint8_t)(8 * dsp_dtype_size(v->dtype)),
                      v->rank, v->dims);
    }
    for (uint32_t i = 0; i < p->value_count; i++) free(values[i].owned);
    free(values);
    if (!e) {
        uint64_t cycles = cost_cycles(&cost);
        atomic_store(&last_hvx_ops, cost.hvx_ops);
        atomic_store(&last_dma_bytes, cost.dma_bytes);
        atomic_store(&last_tiles, cost.tiles);
        atomic_store(&last_cycles, cycles);
        uint64_t run = atomic_fetch_add(&runs, 1);
        ak_profile_store(&x->profile, steps, step_count, cycles, (double)DSP_CLOCK_HZ);
        steps = NULL;
        const char *report = getenv("KILN_DSP_REPORT");
        char path[1024];
        if (report && *report && ak_expand_run(report, run, path, sizeof path)) {
            FILE *f = fopen(path, "w");
            if (f) {
                fprintf(f, "kiln.dsp estimate at the assumed 1.0 GHz: %llu cycles (HVX %llu, DMA %llu, overlapped)\n", (unsigned long long)cycles,
                        (unsigned long long)compute_cycles(&cost), (unsigned long long)dma_cycles(&cost));
                fprintf(f, "%llu HVX ops, %llu DMA bytes in %llu VTCM tiles, %u ops\n", (unsigned long long)cost.hvx_ops, (unsigned long long)cost.dma_bytes,
                        (unsigned long long)cost.tiles, p->op_count);
                fclose(f);
            }
        }
        {
            char line[200];
            snprintf(line, sizeof line, "kiln.dsp estimate: %llu HVX ops, %llu DMA bytes in %llu VTCM tiles, %llu cycles (%.3f us at the assumed 1.0 GHz)",
                     (unsigned long long)cost.hvx_ops, (unsigned long long)cost.dma_bytes, (unsigned long long)cost.tiles,
                     (unsigned long long)cycles, (double)cycles * 1e6 / (double)DSP_CLOCK_HZ);
            ak_log_debug(line);
        }
    }
    free(steps);
    return e;
}

/* Callback (1.4): the last run's ops as steps per layer (the graph node(s) each came from) on "HVX" and "DMA",
 * in cycles of the assumed 1.0 GHz clock. */
static kiln_plugin_error *profile(void *context, void *executable, kiln_plugin_profile *out) {
    (void)context;
    return ak_profile_answer(executable ? &((dsp_executable *)executable)->profile : NULL, out);
}

/* Callback: frees an executable. */
static void unload(void *context, void *executable) {
    (void)context;
    if (!executable) return;
    dsp_executable *x = executable;
    dsp_program_free(&x->program);
    ak_profile_destroy(&x->profile);
    free(x);
}

/* ---- the device ---------------------------------------------------------------------------------------- */

enum { DEVICE_PROPERTY_COUNT = 13 };

/* Callback: the one simulated device, with the model parameters and the last run's estimate as properties. */
static kiln_plugin_error *devices(void *context, kiln_plugin_device_list *out) {
    (void)context;
    static const char *const keys[DEVICE_PROPERTY_COUNT] = {
        "isa", "hvx.vector_bytes", "hvx.vector_registers", "assumed.hvx_contexts", "assumed.clock_hz", "assumed.dma_bytes_per_second",
        "assumed.vtcm_bytes", "executes_on", "estimate.runs", "estimate.last_run.hvx_ops", "estimate.last_run.dma_bytes",
        "estimate.last_run.vtcm_tiles", "estimate.last_run.cycles"};
    static const char *const fixed[DEVICE_PROPERTY_COUNT] = {"Hexagon V66 HVX (128-byte mode)", "128", "32", "4", "1000000000", "10000000000", "8388608",
                                                             "the host, through the C functional model of hvx.h"};
    uint64_t live[DEVICE_PROPERTY_COUNT] = {[8] = atomic_load(&runs), atomic_load(&last_hvx_ops), atomic_load(&last_dma_bytes), atomic_load(&last_tiles),
                                            atomic_load(&last_cycles)};
    return ak_device_answer(out, "dsp-hvx functional model (simulated Hexagon HVX, 128-byte vectors)", DSP_VTCM_BYTES, DEVICE_PROPERTY_COUNT, keys, fixed, live);
}

/* ---- the plugin ------------------------------------------------------------------------------------------ */

static const char *const targets[] = {DSP_TARGET};

static const kiln_plugin_backend backend = {
    .struct_size = sizeof(kiln_plugin_backend),
    .name = DSP_BACKEND_NAME,
    .vendor = "Kiln (DSP sample target)",
    .version = DSP_VERSION,
    .flags = KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE, /* execute reads the program only; results are per call */
    .context = NULL,
    .claim = claim, .compile = compile, .check = check, .load = load, .execute = execute, .unload = unload, .release = ak_release,
    .devices = devices, .load_with_options = load_with_options,
    .profile = profile,
    .target_count = 1, .targets = targets,
};
static const kiln_plugin_backend *const backends[] = {&backend};

static kiln_plugin_header header = {
    .struct_size = sizeof(kiln_plugin_header),
    .abi_major = 1,
    .abi_minor = 2, /* it uses nothing 1.3 appended (declared options), so it answers 1.2 to every host */
    .name = DSP_PLUGIN_NAME,
    .vendor = "Kiln (DSP sample target)",
    .version = DSP_VERSION,
    .backend_count = 1,
    .backends = backends,
    .context = NULL,
    .shutdown = NULL,
};

/* The entry: negotiates ABI 1.2 (the devices and targets fields need a 1.2 host) up to 1.4 (profile). */
KILN_PLUGIN_EXPORT kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *h, const kiln_plugin_header **out_header) {
    return ak_query(h, out_header, &header, DSP_PLUGIN_NAME, 4);
}
