/*
 * kiln_npu.c — a Kiln backend plugin (plugin ABI 1.2 to 1.4; profile needs 1.4) for an Inferentia-like NPU target, npu-nc2, written
 * against the public headers only (include/kiln/kiln_plugin.h and the generated kiln.ir C code).
 *
 * Backend "sampleneuron.nc2" (the kiln. prefix is reserved for built-ins), target "npu-nc2". It claims float32
 * MatMul/Gemm with constant weights, MatMul of two computed operands (attention's, B loaded as TensorE's stationary
 * operand at run time), Conv (group 1 or grouped, as implicit GEMMs; depthwise, on VectorE), Transpose/Reshape/Flatten/Concat
 * (DMA copies), Add/Sub/Mul/Div/Max/Min with NumPy broadcasting (an operand broadcast along the last axis is VectorE's
 * per-partition operand), Relu/Sigmoid/Tanh/Exp/Erf/Gelu, Clip/HardSigmoid/HardSwish/LeakyRelu with constant
 * parameters, MaxPool/AveragePool/GlobalAveragePool, and Softmax and
 * LayerNormalization over the last axis, and lowers them into instruction streams for a NeuronCore-v2-like core (isa.h):
 * DMA queues, TensorE (128×128 systolic), VectorE and ScalarE synchronized by semaphores, with bias and
 * activation fused into the ScalarE drain of PSUM after a MatMul/Gemm. execute runs the streams on a
 * functional simulator (bf16 rounding on DMA, fp32 accumulation in PSUM) in the order the accelkit cycle
 * model schedules them, and records the cycle model's report (device properties "estimate.*"; with
 * KILN_NPU_TRACE=FILE a Chrome trace of each run, "{run}" in FILE replaced by the run's number; with
 * KILN_NPU_REPORT=FILE a text summary the same way), and keeps each executable's last run for the profile
 * callback (`kiln run --profile`): one step per instruction, named by the graph node(s) it came from. With the
 * compile option cores=2 a program runs on both cores of the device: placement batch splits dim 0 between them,
 * placement pipeline cuts the nodes into two stages (balanced by the cycle model) and streams the batch's images
 * through them; both cores' DMA queues share the device's memory bandwidth.
 * Documentation/targets/NPU.md documents the ISA, the parameters and their sources.
 */
#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"
#include "isa.h"
#include "accelkit.h"
#include "ak_plugin.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NPU_BACKEND_NAME "sampleneuron.nc2"
#define NPU_PLUGIN_NAME "kiln-npu"
#define NPU_VERSION "0.1.0"
#define NPU_TARGET "npu-nc2"
#define NPU_COMPAT NPU_BACKEND_NAME "/knpu1"

/* Engine parameters (Documentation/targets/NPU.md says which are documented, derived or assumed). */
#define TENSOR_HZ 2.8e9
#define VECTOR_HZ 1.12e9
#define SCALAR_HZ 1.4e9
/* The profile's one reference clock: every engine's time is reported in TensorE cycles. */
#define PROFILE_CLOCK_HZ TENSOR_HZ
#define DMA_BYTES_PER_SECOND (27.0 * 1073741824.0)
#define DMA_OVERHEAD_S 64e-9       /* assumed fixed cost per DMA descriptor */
#define LANE_OVERHEAD_CYCLES 100   /* VectorE/ScalarE fixed cost per instruction (documented as "~100") */
#define ENGINE_TENSOR 0
#define ENGINE_VECTOR 1
#define ENGINE_SCALAR 2
#define ENGINE_DMA0 3
#define ENGINE_COUNT (3 + NPU_DMA_QUEUES)
#define F32 1                      /* kiln.ir DataType FLOAT */
/* Two cores share their device's memory: 820 GB/s per Inferentia2 device (NPU.md). */
#define DEVICE_HBM_BYTES_PER_SECOND 820e9

/* The engines of one core and of two (defined with the simulator, below), and the cycle model's view of an instruction. */
static const ak_engine engines[ENGINE_COUNT];
static const ak_engine engines2[2 * ENGINE_COUNT];
static ak_op model_op(const npu_insn *n, uint32_t core);

/* ---- graph helpers ------------------------------------------------------------------------------- */

/* A value's element type and fixed shape (known = 0 when the rank or a dim is not known). */
typedef ak_shape shape;

/* Shapes of values produced by claimed nodes, by name (a linear list: graphs handed to a backend are small). */
typedef struct shape_table { const char **names; shape *shapes; size_t count; } shape_table;

/* The shape of `name`: from the table of claimed results first, then from the graph. */
static shape lookup(const Kiln__Ir__Graph *g, const shape_table *known, const char *name) {
    for (size_t i = 0; i < known->count; i++) if (strcmp(known->names[i], name) == 0) return known->shapes[i];
    return ak_graph_shape(g, name, 0);
}

/* Element count of a known shape (-1 when it exceeds the model's tensor limit). */
static int64_t count_of(const shape *s) { return npu_element_count(s->rank, s->dims); }

/* Ceiling division. */
static uint64_t ceil_div(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

/* Largest contraction the lowering keeps on chip: two moving slots of ceil(K/128) tiles of 512 fp32 each. */
#define MAX_K 2048
/* SBUF bytes per partition the weights of one MatMul/Gemm may take (fp32 worst case). */
#define MAX_WEIGHT_BYTES (96u * 1024u)

/* 2-D window geometry (pooling and convolution). */
typedef struct window { uint64_t N, C, H, W, OH, OW; uint32_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr; } window;

/* An ints attribute of exactly `n` values in [lo, hi] into v (absent: `fallback` for each). 0, or -1. */
static int ints_attr(const Kiln__Ir__Node *node, const char *name, size_t n, int64_t lo, int64_t hi, int64_t fallback, int64_t *v) {
    const Kiln__Ir__Attribute *a = ak_attribute(node, name);
    for (size_t i = 0; i < n; i++) v[i] = fallback;
    if (!a) return 0;
    if (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != n) return -1;
    for (size_t i = 0; i < n; i++) {
        if (a->ints->values[i] < lo || a->ints->values[i] > hi) return -1;
        v[i] = a->ints->values[i];
    }
    return 0;
}

/* The 2-D window of a Conv (kernel from w's dims when kh, kw are 0) or pooling node over x [N, C, H, W]. 0, or 1
 * with the reason in why. */
static int window_of(const Kiln__Ir__Node *node, const shape *x, int64_t kh, int64_t kw, int dilations, window *g, char *why, size_t size) {
    int64_t k[2] = {kh, kw}, s[2], d[2], p[4];
    const Kiln__Ir__Attribute *ap = ak_attribute(node, "auto_pad");
    if (ap && !(ap->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(ap->s, "NOTSET") == 0)) { snprintf(why, size, "%s: auto_pad is not supported (give pads)", node->op); return 1; }
    if (!kh && ints_attr(node, "kernel_shape", 2, 1, 64, 0, k)) { snprintf(why, size, "%s: kernel_shape must list 2 sizes in 1..64", node->op); return 1; }
    if (kh) { int64_t ks[2]; if (ints_attr(node, "kernel_shape", 2, 1, 64, 0, ks) || (ak_attribute(node, "kernel_shape") && (ks[0] != kh || ks[1] != kw))) { snprintf(why, size, "%s: kernel_shape differs from the weights", node->op); return 1; } }
    if (k[0] < 1 || k[1] < 1 || k[0] > 64 || k[1] > 64) { snprintf(why, size, "%s: a 2-D kernel of 1..64 per side is supported", node->op); return 1; }
    if (ints_attr(node, "strides", 2, 1, 64, 1, s) || ints_attr(node, "dilations", 2, 1, dilations ? 64 : 1, 1, d) || ints_attr(node, "pads", 4, 0, 64, 0, p)) {
        snprintf(why, size, "%s: strides (1..64), dilations (%s) and pads (0..64) must list 2, 2 and 4 values", node->op, dilations ? "1..64" : "1 only");
        return 1;
    }
    if (ak_int_attr(node, "ceil_mode", 0) != 0) { snprintf(why, size, "%s: ceil_mode 1 is not supported", node->op); return 1; }
    int64_t eh = (k[0] - 1) * d[0] + 1, ew = (k[1] - 1) * d[1] + 1, H = x->dims[2], W = x->dims[3];
    if (H + p[0] + p[2] < eh || W + p[1] + p[3] < ew) { snprintf(why, size, "%s: the window is larger than the padded input", node->op); return 1; }
    *g = (window){(uint64_t)x->dims[0], (uint64_t)x->dims[1], (uint64_t)H, (uint64_t)W, (uint64_t)((H + p[0] + p[2] - eh) / s[0] + 1), (uint64_t)((W + p[1] + p[3] - ew) / s[1] + 1),
                  (uint32_t)k[0], (uint32_t)k[1], (uint32_t)s[0], (uint32_t)s[1], (uint32_t)d[0], (uint32_t)d[1], (uint32_t)p[0], (uint32_t)p[1], (uint32_t)p[2], (uint32_t)p[3]};
    if (g->OW > NPU_MAX_COLS) { snprintf(why, size, "%s: an output row of %llu exceeds the %u columns of one instruction", node->op, (unsigned long long)g->OW, NPU_MAX_COLS); return 1; }
    return 0;
}

/* SBUF bytes per partition the depthwise lowering gives its input planes (the rest: the tap table and two
 * accumulator and two output slots of 512 fp32). */
#define DW_PLANE_BUDGET (160u * 1024u)

/* How a depthwise Conv (group = C = O) is laid out on the partitions: each partition holds one (image, channel)
 * pair's band of `band_rows` output rows; `kpack` bands of the same (up to 128) channels share a tile. The band's
 * padded input rows sit in SBUF as sh·sw phase planes (plane (a, b) holds padded position (y·sh + a, x·sw + b) at
 * y·Wq + x), so every tap of the kernel reads one contiguous run of a plane for a run of whole output rows. */
typedef struct dw_plan {
    uint64_t NC;           /* N·C: the (image, channel) pairs */
    uint32_t taps;         /* KH·KW */
    uint32_t Wq, Hq;       /* a phase plane's pitch and rows (per band) */
    uint32_t band_rows, bands, kpack, ncr;
    uint32_t plane_len;    /* elements per phase plane: Hq·Wq + the furthest column shift */
} dw_plan;

/* The depthwise layout for window g, elements of es bytes in the planes. 0, or 1 with the reason in why. */
static int depthwise_plan(const window *g, uint32_t es, dw_plan *d, char *why, size_t size) {
    uint64_t Wq = (g->W + g->pl + g->pr + g->sw - 1) / g->sw;
    if (Wq > NPU_MAX_COLS) { snprintf(why, size, "Conv (depthwise): a padded input row of %llu columns per phase exceeds %u", (unsigned long long)Wq, NPU_MAX_COLS); return 1; }
    if ((uint64_t)g->kh * g->kw + 1 > NPU_MAX_COLS) { snprintf(why, size, "Conv (depthwise): %u taps exceed the %u a tap table holds", g->kh * g->kw, NPU_MAX_COLS - 1); return 1; }
    uint32_t qj = ((g->kw - 1) * g->dw) / g->sw, phases = g->sh * g->sw;
    uint64_t NC = g->N * g->C, ncr = NC < NPU_PARTITIONS ? NC : NPU_PARTITIONS, kfit = NPU_PARTITIONS / ncr;
    /* the most output rows a band may hold within the plane budget */
    uint64_t most = 0;
    for (uint64_t rows = g->OH; rows >= 1 && !most; rows = rows > 64 ? rows / 2 : rows - 1) {
        uint64_t hb = (rows - 1) * g->sh + (uint64_t)(g->kh - 1) * g->dh + 1, hq = (hb + g->sh - 1) / g->sh;
        if ((uint64_t)phases * (hq * Wq + qj) * es <= DW_PLANE_BUDGET) most = rows;
    }
    if (!most) { snprintf(why, size, "Conv (depthwise): one output row's input planes exceed the SBUF share this lowering gives them"); return 1; }
    uint64_t bands = (g->OH + most - 1) / most;
    if (bands < kfit) bands = kfit < g->OH ? kfit : g->OH; /* more bands: more partitions busy */
    uint64_t band_rows = (g->OH + bands - 1) / bands;
    bands = (g->OH + band_rows - 1) / band_rows;
    uint64_t hb = (band_rows - 1) * g->sh + (uint64_t)(g->kh - 1) * g->dh + 1, hq = (hb + g->sh - 1) / g->sh;
    *d = (dw_plan){NC, g->kh * g->kw, (uint32_t)Wq, (uint32_t)hq, (uint32_t)band_rows, (uint32_t)bands, (uint32_t)(bands < kfit ? bands : kfit), (uint32_t)ncr,
                   (uint32_t)(hq * Wq + qj)};
    return 0;
}

/* rejects for Conv, the pools, Softmax and LayerNormalization. */
static int rejects_more(const Kiln__Ir__Graph *g, const shape_table *known, const Kiln__Ir__Node *node, shape *out, char *why, size_t size) {
    const char *op = node->op;
#define REJECT(...) do { snprintf(why, size, __VA_ARGS__); return 1; } while (0)
    int conv = strcmp(op, "Conv") == 0, maxpool = strcmp(op, "MaxPool") == 0, avgpool = strcmp(op, "AveragePool") == 0;
    int gap = strcmp(op, "GlobalAveragePool") == 0, softmax = strcmp(op, "Softmax") == 0, layernorm = strcmp(op, "LayerNormalization") == 0;
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output (optional outputs are not supported)", op);
    size_t lo = conv || layernorm ? 2 : 1, hi = conv || layernorm ? 3 : 1;
    if (node->n_inputs < lo || node->n_inputs > hi) REJECT("%s with %zu inputs is not supported", op, node->n_inputs);
    for (size_t i = 0; i < node->n_inputs; i++) if (!node->inputs[i][0] && i < lo) REJECT("%s: omitted inputs are not supported", op);
    shape x = lookup(g, known, node->inputs[0]);
    if (x.dtype != F32) REJECT("%s: input '%s' is not float32; npu-nc2 takes float32 tensors", op, node->inputs[0]);
    if (!x.known) REJECT("%s: the shape of input '%s' is not known at compile time", op, node->inputs[0]);
    int64_t count = count_of(&x);
    if (count <= 0) REJECT("%s: empty or too large inputs are not supported", op);
    for (size_t k = 1; k < node->n_inputs; k++) {
        if (!node->inputs[k][0]) continue;
        const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[k]);
        if (!t || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->dtype != F32) REJECT("%s: input %zu must be a float32 initializer", op, k);
        for (size_t i = 0; i < g->n_inputs; i++)
            if (strcmp(g->inputs[i]->name, node->inputs[k]) == 0) REJECT("%s: input %zu is a graph input that a caller may override; its data is compiled in", op, k);
    }
    if (softmax || layernorm) {
        int64_t axis = ak_int_attr(node, "axis", -1);
        if (x.rank < 1 || (axis != -1 && axis != (int64_t)x.rank - 1)) REJECT("%s: only the last axis is supported", op);
        int64_t C = x.dims[x.rank - 1];
        if (C > NPU_MAX_COLS) REJECT("%s: the last axis (%lld) exceeds the %u columns one tile holds", op, (long long)C, NPU_MAX_COLS);
        for (size_t k = 1; layernorm && k < node->n_inputs; k++) {
            if (!node->inputs[k][0]) continue;
            shape s = ak_graph_shape(g, node->inputs[k], 0);
            if (!s.known || count_of(&s) != C || (int64_t)ak_initializer(g, node->inputs[k])->raw.len != C * 4)
                REJECT("LayerNormalization: scale and bias must hold %lld values (the last axis)", (long long)C);
        }
        *out = x;
        return 0;
    }
    if (x.rank != 4) REJECT("%s: only 2-D NCHW inputs (rank 4) are supported", op);
    if (gap) { *out = x; out->dims[2] = out->dims[3] = 1; return 0; }
    window w;
    if (conv) {
        shape ws = ak_graph_shape(g, node->inputs[1], 0);
        int64_t group = ak_int_attr(node, "group", 1);
        int depthwise = group != 1 && group == x.dims[1];
        if (group < 1 || x.dims[1] % group || !ws.known || ws.rank != 4 || ws.dims[0] % group)
            REJECT("Conv: group %lld must divide the %lld input channels and the output channels", (long long)group, (long long)x.dims[1]);
        if (ws.dims[1] != x.dims[1] / group) REJECT("Conv: the weights must be [O, C/group, KH, KW] with C/group = %lld", (long long)(x.dims[1] / group));
        if (depthwise && ws.dims[0] != x.dims[1]) REJECT("Conv (depthwise): a channel multiplier of more than 1 (%lld outputs from %lld channels) is not supported yet", (long long)ws.dims[0], (long long)x.dims[1]);
        if (window_of(node, &x, ws.dims[2], ws.dims[3], 1, &w, why, size)) return 1;
        uint64_t O = (uint64_t)ws.dims[0], K = w.C / (uint64_t)group * w.kh * w.kw, Og = O / (uint64_t)group;
        if ((int64_t)ak_initializer(g, node->inputs[1])->raw.len != count_of(&ws) * 4) REJECT("Conv: the weights do not match their shape");
        if (node->n_inputs == 3 && node->inputs[2][0]) {
            shape bs = ak_graph_shape(g, node->inputs[2], 0);
            if (bs.rank != 1 || bs.dims[0] != (int64_t)O || (int64_t)ak_initializer(g, node->inputs[2])->raw.len != (int64_t)O * 4) REJECT("Conv: B must hold O = %llu values", (unsigned long long)O);
        }
        if (depthwise) {
            dw_plan plan;
            if (depthwise_plan(&w, 4, &plan, why, size)) return 1;
            if (w.N * w.C * (plan.taps + 1) >= NPU_MAX_TENSOR_ELEMENTS) REJECT("Conv (depthwise): the tap table would exceed the tensor limit");
            *out = x;
            out->dims[2] = (int64_t)w.OH; out->dims[3] = (int64_t)w.OW;
            return 0;
        }
        if (K > MAX_K) REJECT("Conv: the contraction (C/group)·KH·KW (%llu) exceeds %d, the most this lowering keeps in SBUF", (unsigned long long)K, MAX_K);
        if (ceil_div(K, 128) * ceil_div(Og, 128) * 128 * 4 > MAX_WEIGHT_BYTES) REJECT("Conv: the weights do not fit the SBUF share this lowering gives them");
        if (w.N * w.OH * w.OW * K >= NPU_MAX_TENSOR_ELEMENTS) REJECT("Conv: the im2col matrix would exceed the tensor limit");
        *out = x;
        out->dims[1] = (int64_t)O; out->dims[2] = (int64_t)w.OH; out->dims[3] = (int64_t)w.OW;
        return 0;
    }
    if (window_of(node, &x, 0, 0, maxpool, &w, why, size)) return 1;
    if (maxpool && ak_int_attr(node, "storage_order", 0) != 0) REJECT("MaxPool: storage_order 1 is not supported");
    if (avgpool && (ak_int_attr(node, "count_include_pad", 0) & ~1)) REJECT("AveragePool: count_include_pad must be 0 or 1");
    if (w.pt >= w.kh || w.pb >= w.kh || w.pl >= w.kw || w.pr >= w.kw) REJECT("%s: pads must be smaller than the kernel", op);
    *out = x;
    out->dims[2] = (int64_t)w.OH; out->dims[3] = (int64_t)w.OW;
    return 0;
#undef REJECT
}

/* The output shape of a Reshape of x by the int64 initializer `shape_name` (0 copies x's dim, -1 is inferred). 0, or 1
 * with the reason. */
static int reshape_shape(const Kiln__Ir__Graph *g, const shape *x, const char *shape_name, int64_t allowzero, shape *out, char *why, size_t size) {
    const Kiln__Ir__Tensor *t = ak_initializer(g, shape_name);
    if (!t || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->dtype != KILN__IR__DATA_TYPE__INT64 || t->n_shape != 1 || t->raw.len % 8 || t->raw.len / 8 > NPU_MAX_RANK) {
        snprintf(why, size, "Reshape: the shape must be a 1-D int64 initializer of at most %d values", NPU_MAX_RANK);
        return 1;
    }
    if (allowzero) { snprintf(why, size, "Reshape: allowzero 1 is not supported"); return 1; }
    *out = *x;
    out->rank = (uint32_t)(t->raw.len / 8);
    int64_t known = 1, infer = -1, total = count_of(x);
    for (uint32_t d = 0; d < out->rank; d++) {
        int64_t v;
        memcpy(&v, t->raw.data + 8 * d, 8);
        if (v == 0) { if (d >= x->rank) { snprintf(why, size, "Reshape: a 0 past the input's rank"); return 1; } v = x->dims[d]; }
        if (v == -1) { if (infer >= 0) { snprintf(why, size, "Reshape: more than one -1"); return 1; } infer = d; v = 1; }
        else if (v < 1) { snprintf(why, size, "Reshape: dim %lld", (long long)v); return 1; }
        out->dims[d] = v;
        known *= v;
        if (known > total) { snprintf(why, size, "Reshape: the shape holds more elements than the input"); return 1; }
    }
    if (infer >= 0) out->dims[infer] = total / known;
    if (count_of(out) != total) { snprintf(why, size, "Reshape: the shape does not hold the input's %lld elements", (long long)total); return 1; }
    return 0;
}

/* rejects for the data-movement ops (DMA copies): Transpose, Reshape, Flatten, Concat. */
static int rejects_copy(const Kiln__Ir__Graph *g, const shape_table *known, const Kiln__Ir__Node *node, shape *out, char *why, size_t size) {
    const char *op = node->op;
#define REJECT(...) do { snprintf(why, size, __VA_ARGS__); return 1; } while (0)
    int concat = strcmp(op, "Concat") == 0, reshape = strcmp(op, "Reshape") == 0;
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output", op);
    size_t want = reshape ? 2 : 1;
    if (concat ? node->n_inputs < 1 : node->n_inputs != want) REJECT("%s with %zu inputs is not supported", op, node->n_inputs);
    for (size_t i = 0; i < (reshape ? 1 : node->n_inputs); i++) {
        if (!node->inputs[i][0]) REJECT("%s: omitted inputs are not supported", op);
        shape s = lookup(g, known, node->inputs[i]);
        if (s.dtype != F32) REJECT("%s: input '%s' is not float32; npu-nc2 takes float32 tensors", op, node->inputs[i]);
        if (!s.known || s.rank < 1) REJECT("%s: the shape of input '%s' is not known at compile time (or it is a scalar)", op, node->inputs[i]);
        if (count_of(&s) <= 0) REJECT("%s: empty or too large inputs are not supported", op);
        const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[i]);
        if (t && (t->data_case != KILN__IR__TENSOR__DATA_RAW || (int64_t)t->raw.len != count_of(&s) * 4)) REJECT("%s: initializer '%s' has no inline data of its shape", op, node->inputs[i]);
    }
    shape x = lookup(g, known, node->inputs[0]);
    if (reshape) return reshape_shape(g, &x, node->inputs[1], ak_int_attr(node, "allowzero", 0), out, why, size);
    if (strcmp(op, "Flatten") == 0) {
        int64_t axis = ak_int_attr(node, "axis", 1);
        if (axis < 0) axis += x.rank;
        if (axis < 0 || axis > (int64_t)x.rank) REJECT("Flatten: axis out of range");
        int64_t a = 1, b = 1;
        for (int64_t d = 0; d < (int64_t)x.rank; d++) { if (d < axis) a *= x.dims[d]; else b *= x.dims[d]; }
        *out = x; out->rank = 2; out->dims[0] = a; out->dims[1] = b;
        return 0;
    }
    if (strcmp(op, "Transpose") == 0) {
        int64_t perm[NPU_MAX_RANK];
        for (uint32_t d = 0; d < x.rank; d++) perm[d] = x.rank - 1 - d;
        const Kiln__Ir__Attribute *a = ak_attribute(node, "perm");
        if (a && ints_attr(node, "perm", x.rank, 0, x.rank - 1, 0, perm)) REJECT("Transpose: perm must list each of the %u axes once", x.rank);
        uint32_t seen = 0;
        for (uint32_t d = 0; d < x.rank; d++) seen |= 1u << perm[d];
        if (seen != (1u << x.rank) - 1) REJECT("Transpose: perm must list each of the %u axes once", x.rank);
        *out = x;
        for (uint32_t d = 0; d < x.rank; d++) out->dims[d] = x.dims[perm[d]];
        return 0;
    }
    /* Concat */
    int64_t axis = ak_int_attr(node, "axis", 0);
    if (axis < 0) axis += x.rank;
    if (axis < 0 || axis >= (int64_t)x.rank) REJECT("Concat: axis out of range");
    *out = x;
    for (size_t i = 1; i < node->n_inputs; i++) {
        shape s = lookup(g, known, node->inputs[i]);
        if (s.rank != x.rank) REJECT("Concat: inputs of different ranks");
        for (uint32_t d = 0; d < x.rank; d++)
            if ((int64_t)d != axis && s.dims[d] != x.dims[d]) REJECT("Concat: inputs differ off the axis");
        out->dims[axis] += s.dims[axis];
    }
    if (count_of(out) < 0) REJECT("Concat: the result is too large");
    return 0;
#undef REJECT
}

/* ---- upsampling: nearest Resize by whole factors, ConvTranspose with stride = kernel ------------------ */

/* A string attribute, or `fallback`. */
static const char *str_attr(const Kiln__Ir__Node *node, const char *name, const char *fallback) {
    const Kiln__Ir__Attribute *a = ak_attribute(node, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && a->s ? a->s : fallback;
}

/* The whole factor s by which a nearest Resize repeats each of `in` elements into `out` = s·in, when every output
 * index o reads input index o / s under the node's coordinate transformation and rounding as ONNX defines them
 * (`scale` is the factor the model gives, or out / in for sizes); else 0. */
static int64_t nearest_factor(const char *transform, const char *rounding, int64_t in, int64_t out, double scale) {
    if (in < 1 || out < in || out % in) return 0;
    int64_t s = out / in;
    for (int64_t o = 0; o < out; o++) {
        double x;
        if (strcmp(transform, "half_pixel") == 0) x = (o + 0.5) / scale - 0.5;
        else if (strcmp(transform, "pytorch_half_pixel") == 0) x = out > 1 ? (o + 0.5) / scale - 0.5 : 0.0;
        else if (strcmp(transform, "align_corners") == 0) x = out > 1 ? (double)o * (double)(in - 1) / (double)(out - 1) : 0.0;
        else if (strcmp(transform, "asymmetric") == 0) x = o / scale;
        else if (strcmp(transform, "tf_half_pixel_for_nn") == 0) x = (o + 0.5) / scale;
        else return 0;
        double r;
        if (strcmp(rounding, "floor") == 0) r = floor(x);
        else if (strcmp(rounding, "ceil") == 0) r = ceil(x);
        else if (strcmp(rounding, "round_prefer_ceil") == 0) r = floor(x + 0.5);
        else if (strcmp(rounding, "round_prefer_floor") == 0) r = ceil(x - 0.5);
        else return 0;
        r = r < 0 ? 0 : r > (double)(in - 1) ? (double)(in - 1) : r;
        if ((int64_t)r != o / s) return 0;
    }
    return s;
}

/* rejects for Resize (nearest, whole factors along H and W: DMA copies) and ConvTranspose (stride = kernel, no padding:
 * one matmul and a scatter by DMA). */
static int rejects_upsample(const Kiln__Ir__Graph *g, const shape_table *known, const Kiln__Ir__Node *node, shape *out, char *why, size_t size) {
    const char *op = node->op;
#define REJECT(...) do { snprintf(why, size, __VA_ARGS__); return 1; } while (0)
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output", op);
    if (node->n_inputs < 1 || !node->inputs[0][0]) REJECT("%s: the input is missing", op);
    shape x = lookup(g, known, node->inputs[0]);
    if (x.dtype != F32) REJECT("%s: input '%s' is not float32; npu-nc2 takes float32 tensors", op, node->inputs[0]);
    if (!x.known || x.rank != 4 || count_of(&x) <= 0) REJECT("%s: only NCHW inputs (rank 4) of known, non-empty shape are supported", op);
    *out = x;
    for (size_t k = 1; k < node->n_inputs; k++) /* scales, sizes, weights and bias are compiled in */
        for (size_t i = 0; i < g->n_inputs; i++)
            if (node->inputs[k][0] && strcmp(g->inputs[i]->name, node->inputs[k]) == 0) REJECT("%s: input %zu is a graph input that a caller may override; its data is compiled in", op, k);
    if (strcmp(op, "Resize") == 0) {
        const char *mode = str_attr(node, "mode", "nearest"), *transform = str_attr(node, "coordinate_transformation_mode", "half_pixel");
        const char *rounding = str_attr(node, "nearest_mode", "round_prefer_floor");
        if (strcmp(mode, "nearest") != 0) REJECT("Resize: mode %s is not supported (nearest only)", mode);
        if (ak_int_attr(node, "antialias", 0) != 0 || ak_attribute(node, "axes")) REJECT("Resize: antialias and axes are not supported");
        size_t si = node->n_inputs == 2 ? 1 : 2, zi = 3; /* opset 10: (X, scales); 11 and later: (X, roi, scales, sizes) */
        const Kiln__Ir__Tensor *sc = si < node->n_inputs && node->inputs[si][0] ? ak_initializer(g, node->inputs[si]) : NULL;
        const Kiln__Ir__Tensor *sz = zi < node->n_inputs && node->inputs[zi][0] ? ak_initializer(g, node->inputs[zi]) : NULL;
        double scale[4] = {1, 1, 1, 1};
        if (sc && sc->raw.len == 16 && sc->dtype == F32 && sc->data_case == KILN__IR__TENSOR__DATA_RAW) {
            for (int d = 0; d < 4; d++) { float f; memcpy(&f, sc->raw.data + 4 * d, 4); scale[d] = f; out->dims[d] = (int64_t)floor((double)x.dims[d] * f); }
        } else if (sz && sz->raw.len == 32 && sz->dtype == KILN__IR__DATA_TYPE__INT64 && sz->data_case == KILN__IR__TENSOR__DATA_RAW) {
            for (int d = 0; d < 4; d++) { memcpy(&out->dims[d], sz->raw.data + 8 * d, 8); scale[d] = (double)out->dims[d] / (double)x.dims[d]; }
        } else REJECT("Resize: the scales (4 floats) or sizes (4 int64) must be an initializer");
        if (out->dims[0] != x.dims[0] || out->dims[1] != x.dims[1]) REJECT("Resize: only H and W may change");
        if (!nearest_factor(transform, rounding, x.dims[2], out->dims[2], scale[2]) || !nearest_factor(transform, rounding, x.dims[3], out->dims[3], scale[3]))
            REJECT("Resize: only whole upsampling factors that repeat each pixel are supported (%s, %s, %lldx%lld -> %lldx%lld)", transform, rounding,
                   (long long)x.dims[2], (long long)x.dims[3], (long long)out->dims[2], (long long)out->dims[3]);
        if (count_of(out) < 0) REJECT("Resize: the result is too large");
        return 0;
    }
    /* ConvTranspose */
    if (node->n_inputs < 2 || node->n_inputs > 3) REJECT("ConvTranspose with %zu inputs is not supported", node->n_inputs);
    const Kiln__Ir__Tensor *w = ak_initializer(g, node->inputs[1]);
    shape ws = ak_graph_shape(g, node->inputs[1], 0);
    if (!w || w->data_case != KILN__IR__TENSOR__DATA_RAW || ws.dtype != F32 || !ws.known || ws.rank != 4 || ws.dims[0] != x.dims[1] || (int64_t)w->raw.len != count_of(&ws) * 4)
        REJECT("ConvTranspose: the weights must be a float32 initializer [C, O, KH, KW]");
    int64_t O = ws.dims[1], kh = ws.dims[2], kw = ws.dims[3], st[2], pads[4], dil[2], opad[2];
    if (ak_int_attr(node, "group", 1) != 1) REJECT("ConvTranspose: group must be 1");
    if (ints_attr(node, "strides", 2, 1, 64, 1, st) || st[0] != kh || st[1] != kw) REJECT("ConvTranspose: the strides must equal the kernel (%lldx%lld)", (long long)kh, (long long)kw);
    if (ints_attr(node, "pads", 4, 0, 0, 0, pads) || ints_attr(node, "dilations", 2, 1, 1, 1, dil) || ints_attr(node, "output_padding", 2, 0, 0, 0, opad))
        REJECT("ConvTranspose: pads, output_padding and dilations other than 0, 0 and 1 are not supported");
    if (ak_attribute(node, "output_shape")) REJECT("ConvTranspose: output_shape is not supported");
    const char *ap = str_attr(node, "auto_pad", "NOTSET");
    if (strcmp(ap, "NOTSET") != 0 && strcmp(ap, "VALID") != 0) REJECT("ConvTranspose: auto_pad %s is not supported", ap);
    if (node->n_inputs == 3 && node->inputs[2][0]) {
        const Kiln__Ir__Tensor *b = ak_initializer(g, node->inputs[2]);
        if (!b || b->data_case != KILN__IR__TENSOR__DATA_RAW || b->dtype != F32 || (int64_t)b->raw.len != O * 4) REJECT("ConvTranspose: B must be a float32 initializer of O = %lld values", (long long)O);
    }
    uint64_t C = (uint64_t)x.dims[1], J = (uint64_t)(O * kh * kw);
    if (C > MAX_K) REJECT("ConvTranspose: the contraction (%llu channels) exceeds %d, the most this lowering keeps in SBUF", (unsigned long long)C, MAX_K);
    if (ceil_div(C, 128) * ceil_div(J, 128) * 128 * 4 > MAX_WEIGHT_BYTES) REJECT("ConvTranspose: the weights do not fit the SBUF share this lowering gives them");
    out->dims[1] = O; out->dims[2] = x.dims[2] * kh; out->dims[3] = x.dims[3] * kw;
    if (count_of(out) < 0) REJECT("ConvTranspose: the result is too large");
    return 0;
#undef REJECT
}

/* ---- elementwise ops ---------------------------------------------------------------------------- */

/* The ScalarE function that is the whole of a one-input op (an activation a MatMul or Conv drain can fuse), or -1. */
static int func_of(const Kiln__Ir__Node *node) {
    const char *op = node->op;
    if (node->domain[0] && strcmp(node->domain, "ai.onnx") != 0) return -1;
    if (strcmp(op, "Gelu") == 0) {
        const Kiln__Ir__Attribute *a = ak_attribute(node, "approximate");
        return !a || (a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "none") == 0) ? NPU_FUNC_GELU : -1;
    }
    return strcmp(op, "Relu") == 0 ? NPU_FUNC_RELU : strcmp(op, "Sigmoid") == 0 ? NPU_FUNC_SIGMOID : strcmp(op, "Tanh") == 0 ? NPU_FUNC_TANH
         : strcmp(op, "Exp") == 0 ? NPU_FUNC_EXP : strcmp(op, "Erf") == 0 ? NPU_FUNC_ERF : -1;
}

/* The VectorE op of a two-input elementwise op, or -1. */
static int alu_of(const char *op) {
    return strcmp(op, "Add") == 0 ? NPU_ALU_ADD : strcmp(op, "Sub") == 0 ? NPU_ALU_SUB : strcmp(op, "Mul") == 0 ? NPU_ALU_MUL
         : strcmp(op, "Div") == 0 ? NPU_ALU_DIV : strcmp(op, "Max") == 0 ? NPU_ALU_MAX : strcmp(op, "Min") == 0 ? NPU_ALU_MIN : -1;
}

/* A binary elementwise op's result seen as rows × columns, and where each operand's values lie. The result's dims of
 * size 1 are dropped and neighbours along which the operands broadcast alike are merged; the last merged dim may be
 * cut into rows and at most 512 columns (broadcast_view says when). dims[rank - 1] is the columns, the dims before it number the rows; stride[k][d] is operand k's element
 * stride along merged dim d, 0 where it broadcasts. An operand with stride 0 along the columns holds one value per
 * row: VectorE reads it as its per-partition operand. */
typedef struct ew_view {
    uint32_t rank;
    int64_t dims[NPU_MAX_RANK + 1];
    int64_t stride[2][NPU_MAX_RANK + 1];
} ew_view;

/* What one more elementwise tile costs beyond its columns, in VectorE cycles (for the choice of the view's columns):
 * the instruction's fixed overhead and its DMAs' share. */
#define EW_TILE_OVERHEAD 200u

/* The shape of a and b broadcast together (NumPy's rules) into *out and its view, or 1 when they do not broadcast. */
static int broadcast_view(const shape *a, const shape *b, shape *out, ew_view *v) {
    uint32_t r = a->rank > b->rank ? a->rank : b->rank, n = 0;
    int64_t dims[NPU_MAX_RANK + 1];
    int flags[NPU_MAX_RANK + 1]; /* bit k: operand k broadcasts along the dim */
    *out = *a;
    out->rank = r;
    for (uint32_t d = 0; d < r; d++) {
        int64_t ad = d + a->rank >= r ? a->dims[d + a->rank - r] : 1, bd = d + b->rank >= r ? b->dims[d + b->rank - r] : 1;
        if (ad != bd && ad != 1 && bd != 1) return 1;
        int64_t od = ad > bd ? ad : bd;
        out->dims[d] = od;
        if (od == 1) continue;
        int f = (ad == 1) | (bd == 1) << 1;
        if (n && flags[n - 1] == f) dims[n - 1] *= od;
        else { dims[n] = od; flags[n++] = f; }
    }
    if (!n) { dims[0] = 1; flags[0] = 0; n = 1; }
    /* The columns: the last merged dim, or a divisor of it with the rest moved into the rows, whichever costs VectorE
     * the least (tiles × (columns + per-instruction overhead)). Only where the split leaves each operand one DMA per
     * tile: along the last dim every operand is contiguous, or the one that broadcasts is a single value. */
    if (flags[n - 1] == 0 || n == 1) { /* one merged dim with a broadcast: that operand is a single value */
        uint64_t D = (uint64_t)dims[n - 1], before = 1, best_c = D;
        for (uint32_t d = 0; d + 1 < n; d++) before *= (uint64_t)dims[d];
        uint64_t best = ceil_div(before, NPU_PARTITIONS) * ceil_div(D, NPU_MAX_COLS) * ((D < NPU_MAX_COLS ? D : NPU_MAX_COLS) + EW_TILE_OVERHEAD);
        for (uint64_t c = 1; c <= NPU_MAX_COLS && c < D; c++) {
            uint64_t cost = ceil_div(before * (D / c), NPU_PARTITIONS) * (c + EW_TILE_OVERHEAD);
            if (D % c == 0 && cost < best) { best = cost; best_c = c; }
        }
        if (best_c != D) { dims[n] = (int64_t)best_c; dims[n - 1] /= (int64_t)best_c; flags[n] = flags[n - 1]; n++; }
    }
    v->rank = n;
    for (int k = 0; k < 2; k++) {
        int64_t at = 1;
        for (int d = (int)n - 1; d >= 0; d--) {
            v->dims[d] = dims[d];
            v->stride[k][d] = flags[d] >> k & 1 ? 0 : at;
            if (!(flags[d] >> k & 1)) at *= dims[d];
        }
    }
    return 0;
}

/* Whether operand k of the view holds one value per row (it broadcasts along the columns). Such an operand is loaded in
 * fp32 in every auto-cast mode (VectorE reads its per-partition operand in fp32). */
static int ew_per_row(const ew_view *v, int k) { return v->stride[k][v->rank - 1] == 0; }

/* Why a one-input elementwise op with constant parameters cannot run (Clip's bounds must be scalar float32
 * initializers), or 0. */
static int rejects_unary(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *node, char *why, size_t size) {
    const char *op = node->op;
    if (strcmp(op, "Clip") != 0) {
        if (node->n_inputs != 1) { snprintf(why, size, "%s with %zu inputs is not supported", op, node->n_inputs); return 1; }
        return 0;
    }
    if (node->n_inputs < 1 || node->n_inputs > 3) { snprintf(why, size, "Clip with %zu inputs is not supported", node->n_inputs); return 1; }
    for (size_t k = 1; k < node->n_inputs; k++) {
        if (!node->inputs[k][0]) continue;
        const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[k]);
        int graph_input = 0;
        for (size_t i = 0; i < g->n_inputs; i++) graph_input |= strcmp(g->inputs[i]->name, node->inputs[k]) == 0;
        if (!t || graph_input || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->dtype != F32 || t->raw.len != 4) {
            snprintf(why, size, "Clip: the %s bound must be a float32 scalar initializer (bounds computed at run time are not supported)", k == 1 ? "lower" : "upper");
            return 1;
        }
    }
    return 0;
}

/* A one-input op's scalar parameter: Clip's bound k (1 lower, 2 upper; from its input, else its attribute of opset
 * 6, else ±infinity). */
static float clip_bound(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *node, size_t k) {
    if (k < node->n_inputs && node->inputs[k][0]) {
        const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[k]);
        float v;
        memcpy(&v, t->raw.data, 4);
        return v;
    }
    return ak_float_attr(node, k == 1 ? "min" : "max", k == 1 ? -INFINITY : INFINITY);
}

/* Why this backend cannot run `node` (into why), or 0 when it can; *out receives the result's shape. */
static int rejects(const Kiln__Ir__Graph *g, const shape_table *known, const Kiln__Ir__Node *node, shape *out, char *why, size_t size) {
    const char *op = node->op;
#define REJECT(...) do { snprintf(why, size, __VA_ARGS__); return 1; } while (0)
    if (node->domain[0] && strcmp(node->domain, "ai.onnx") != 0) REJECT("op %s.%s: only the ONNX domain is supported", node->domain, op);
    int matmul = strcmp(op, "MatMul") == 0, gemm = strcmp(op, "Gemm") == 0, binary = alu_of(op) >= 0;
    int act = func_of(node) >= 0 || strcmp(op, "Clip") == 0 || strcmp(op, "HardSigmoid") == 0 || strcmp(op, "HardSwish") == 0 || strcmp(op, "LeakyRelu") == 0;
    int conv = strcmp(op, "Conv") == 0, maxpool = strcmp(op, "MaxPool") == 0, avgpool = strcmp(op, "AveragePool") == 0;
    int gap = strcmp(op, "GlobalAveragePool") == 0, softmax = strcmp(op, "Softmax") == 0, layernorm = strcmp(op, "LayerNormalization") == 0;
    int copy = strcmp(op, "Transpose") == 0 || strcmp(op, "Reshape") == 0 || strcmp(op, "Flatten") == 0 || strcmp(op, "Concat") == 0;
    int upsample = strcmp(op, "Resize") == 0 || strcmp(op, "ConvTranspose") == 0, batchnorm = strcmp(op, "BatchNormalization") == 0;
    if (!matmul && !gemm && !binary && !act && !conv && !maxpool && !avgpool && !gap && !softmax && !layernorm && !copy && !upsample && !batchnorm)
        REJECT("op %s is not supported on npu-nc2 yet (supported: MatMul, Gemm, Conv, Add, Sub, Mul, Div, Max, Min, Relu, Sigmoid, Tanh, Exp, Erf, "
               "Gelu, Clip, HardSigmoid, HardSwish, LeakyRelu, MaxPool, AveragePool, GlobalAveragePool, Softmax, LayerNormalization, Transpose, "
               "Reshape, Flatten, Concat, Resize, ConvTranspose, BatchNormalization)", op);
    if (conv || maxpool || avgpool || gap || softmax || layernorm) return rejects_more(g, known, node, out, why, size);
    if (copy) return rejects_copy(g, known, node, out, why, size);
    if (upsample) return rejects_upsample(g, known, node, out, why, size);
    if (batchnorm) { /* inference form, what Kiln's passes did not fold into a Conv: x·s[c] + t[c], two VectorE passes */
        if (node->n_inputs != 5 || node->n_outputs != 1 || !node->outputs[0][0]) REJECT("BatchNormalization: only the inference form (5 inputs, 1 output) is supported");
        if (ak_int_attr(node, "training_mode", 0) != 0) REJECT("BatchNormalization: training_mode is not supported");
        shape x = lookup(g, known, node->inputs[0]);
        if (x.dtype != F32 || !x.known || x.rank < 2 || count_of(&x) <= 0) REJECT("BatchNormalization: the input must be float32 [N, C, ...] of known shape");
        for (size_t k = 1; k < 5; k++) {
            const Kiln__Ir__Tensor *t = ak_initializer(g, node->inputs[k]);
            int graph_input = 0;
            for (size_t i = 0; i < g->n_inputs; i++) graph_input |= strcmp(g->inputs[i]->name, node->inputs[k]) == 0;
            if (!t || graph_input || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->dtype != F32 || (int64_t)t->raw.len != x.dims[1] * 4)
                REJECT("BatchNormalization: scale, B, mean and var must be float32 initializers of C = %lld values", (long long)x.dims[1]);
        }
        *out = x;
        return 0;
    }
    if (node->n_outputs != 1 || !node->outputs[0][0]) REJECT("%s must have exactly one output", op);
    if (act && rejects_unary(g, node, why, size)) return 1;
    size_t want_in = act ? 1 : 2;
    if (node->n_inputs < want_in || node->n_inputs > (gemm ? 3u : act ? node->n_inputs : want_in)) REJECT("%s with %zu inputs is not supported", op, node->n_inputs);
    shape in[3];
    for (size_t i = 0; i < (act ? 1 : node->n_inputs); i++) {
        if (!node->inputs[i][0]) REJECT("%s: omitted inputs are not supported", op);
        in[i] = lookup(g, known, node->inputs[i]);
        if (in[i].dtype != F32) REJECT("%s: input '%s' is not float32 (type %d); npu-nc2 takes float32 tensors", op, node->inputs[i], in[i].dtype);
        if (!in[i].known) REJECT("%s: the shape of input '%s' is not known at compile time", op, node->inputs[i]);
        if (count_of(&in[i]) < 0) REJECT("%s: input '%s' is too large", op, node->inputs[i]);
    }
    if (count_of(&in[0]) == 0 || (!act && node->n_inputs > 1 && count_of(&in[1]) == 0)) REJECT("%s: zero-size tensors are not supported", op);
    if (act) { *out = in[0]; return 0; }
    if (binary) {
        ew_view v;
        if (broadcast_view(&in[0], &in[1], out, &v)) REJECT("%s: the inputs' shapes do not broadcast together", op);
        if (count_of(out) < 0) REJECT("%s: the result is too large", op);
        /* VectorE takes a per-row value as its second operand only: the lowering swaps the operands of the others */
        if (ew_per_row(&v, 0) && alu_of(op) == NPU_ALU_DIV) REJECT("Div: a dividend broadcast along the last axis is not supported");
        return 0;
    }
    /* MatMul / Gemm */
    const Kiln__Ir__Tensor *w = ak_initializer(g, node->inputs[1]);
    if (matmul && !w) { /* both operands computed (attention's Q·Kᵀ and ·V): B is loaded as the stationary operand at run time */
        const shape *A = &in[0], *B = &in[1];
        if (A->rank < 2 || B->rank < 2) REJECT("MatMul: with a computed B, both operands must have rank 2 or more");
        int shared = B->rank == 2, batched = A->rank == B->rank && memcmp(A->dims, B->dims, (A->rank - 2) * sizeof(int64_t)) == 0;
        if (!shared && !batched) REJECT("MatMul: with a computed B, B must be one matrix or have A's batch dims (no broadcasting of batch dims)");
        int64_t K = A->dims[A->rank - 1], N = B->dims[B->rank - 1];
        if (B->dims[B->rank - 2] != K) REJECT("MatMul: A has %lld columns, B %lld rows", (long long)K, (long long)B->dims[B->rank - 2]);
        if (K > MAX_K) REJECT("MatMul: the contraction (%lld) exceeds %d, the most this lowering keeps in SBUF", (long long)K, MAX_K);
        if (ceil_div((uint64_t)K, 128) * ceil_div((uint64_t)N, 128) * 128 * 4 > MAX_WEIGHT_BYTES)
            REJECT("MatMul: B (%lld×%lld) does not fit the SBUF share this lowering gives the stationary operand", (long long)K, (long long)N);
        *out = *A;
        out->dims[out->rank - 1] = N;
        return 0;
    }
    if (!w || w->data_case != KILN__IR__TENSOR__DATA_RAW) REJECT("%s: the weights (input B) must be an initializer", op);
    for (size_t i = 0; i < g->n_inputs; i++)
        for (size_t k = 1; k < node->n_inputs; k++)
            if (strcmp(g->inputs[i]->name, node->inputs[k]) == 0)
                REJECT("%s: input %zu is a graph input that a caller may override; its data is compiled into the weight layout", op, k);
    if (in[1].rank != 2) REJECT("%s: B must be a matrix", op);
    int trans_b = 0;
    if (gemm) {
        if (in[0].rank != 2) REJECT("Gemm: A must be a matrix");
        if (ak_int_attr(node, "transA", 0) != 0) REJECT("Gemm: transA is not supported");
        trans_b = ak_int_attr(node, "transB", 0) != 0;
        const Kiln__Ir__Attribute *alpha = ak_attribute(node, "alpha"), *beta = ak_attribute(node, "beta");
        if ((alpha && alpha->value_case != KILN__IR__ATTRIBUTE__VALUE_F) || (beta && beta->value_case != KILN__IR__ATTRIBUTE__VALUE_F))
            REJECT("Gemm: alpha and beta must be floats");
    } else if (in[0].rank < 2) REJECT("MatMul: A must have rank 2 or more");
    int64_t K = in[0].dims[in[0].rank - 1], N = trans_b ? in[1].dims[0] : in[1].dims[1], KB = trans_b ? in[1].dims[1] : in[1].dims[0];
    if (K != KB) REJECT("%s: A has %lld columns, B %lld rows", op, (long long)K, (long long)KB);
    if (K < 1 || N < 1) REJECT("%s: empty matrices are not supported", op);
    if (K > MAX_K) REJECT("%s: the contraction (%lld) exceeds %d, the most this lowering keeps in SBUF", op, (long long)K, MAX_K);
    if (ceil_div((uint64_t)K, 128) * ceil_div((uint64_t)N, 128) * 128 * 4 > MAX_WEIGHT_BYTES)
        REJECT("%s: the weights (%lld×%lld) do not fit the SBUF share this lowering gives them (weight streaming is not done yet)", op, (long long)K, (long long)N);
    if (gemm && node->n_inputs == 3) {
        const Kiln__Ir__Tensor *c = ak_initializer(g, node->inputs[2]);
        int64_t n = count_of(&in[2]);
        if (!c || n != N || (in[2].rank == 2 && in[2].dims[0] != 1) || in[2].rank > 2 || in[2].rank < 1)
            REJECT("Gemm: C must be an initializer of shape [N] or [1, N]");
    }
    *out = in[0];
    out->dims[out->rank - 1] = N;
    return 0;
#undef REJECT
}

/* Fills supported[i] (and reasons[i], malloc'ed, for rejected nodes). Returns 0 when out of memory. */
static int analyze(const Kiln__Ir__Graph *g, uint8_t *supported, char **reasons) {
    shape_table known = {calloc(g->n_nodes + 1, sizeof(char *)), calloc(g->n_nodes + 1, sizeof(shape)), 0};
    if (!known.names || !known.shapes) { free(known.names); free(known.shapes); return 0; }
    for (size_t i = 0; i < g->n_nodes; i++) {
        char why[640];
        shape out;
        int rejected = rejects(g, &known, g->nodes[i], &out, why, sizeof why);
        supported[i] = !rejected;
        if (rejected && reasons && !(reasons[i] = ak_strdup(why))) { free(known.names); free(known.shapes); return 0; }
        if (!rejected) { known.names[known.count] = g->nodes[i]->outputs[0]; known.shapes[known.count++] = out; }
    }
    free(known.names);
    free(known.shapes);
    return 1;
}

/* Callback: which nodes of the graph this backend runs, with a reason for each rejected one. */
static kiln_plugin_error *claim(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out) {
    (void)context;
    return ak_claim(graph, out, analyze);
}

/* ---- compile: graph -> instruction streams ------------------------------------------------------ */

/* Lowering state: the program being built, tensor ids by value name, semaphore and queue counters. */
typedef struct lowering {
    const Kiln__Ir__Graph *g;
    npu_program *p;
    uint32_t tensor_capacity, insn_capacity;
    const char **tensor_names;           /* tensor_count names (NULL for compile-made constants) */
    shape *tensor_shapes;
    uint32_t done_sem;                    /* counts every DMA store: an op's loads wait for all earlier stores */
    uint32_t stores;                      /* stores emitted so far */
    uint32_t load_queue, store_queue;     /* round-robin: loads on queues 0-7, stores on 8-15 */
    uint8_t *named;                       /* per node: already part of a layer's name */
    uint32_t core;                        /* the core the instructions emitted now run on */
    uint32_t scope;                       /* value names resolve to tensors from this index on (and to constants) */
    uint32_t *node_const;                 /* per node: its compile-made weight constant, shared by every batch slice */
    uint64_t *node_const_key;             /* what that constant depends on besides the node (the depthwise table: its rows) */
    int failed;
} lowering;

/* A new tensor (kind, shape, optional constant data of `dtype` taken over). Returns its id. */
static uint32_t add_tensor(lowering *l, const char *name, uint32_t kind, const shape *s, uint32_t dtype, uint8_t *data, uint64_t bytes) {
    npu_program *p = l->p;
    if (p->tensor_count == l->tensor_capacity) {
        uint32_t capacity = l->tensor_capacity ? 2 * l->tensor_capacity : 16;
        npu_tensor *t = realloc(p->tensors, capacity * sizeof *t);
        if (t) p->tensors = t;
        const char **n = realloc(l->tensor_names, capacity * sizeof *n);
        if (n) l->tensor_names = n;
        shape *sh = realloc(l->tensor_shapes, capacity * sizeof *sh);
        if (sh) l->tensor_shapes = sh;
        if (!t || !n || !sh) { l->failed = 1; free(data); return 0; }
        l->tensor_capacity = capacity;
    }
    npu_tensor *t = &p->tensors[p->tensor_count];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->rank = s->rank;
    memcpy(t->dims, s->dims, sizeof t->dims);
    t->elements = (uint64_t)npu_element_count(s->rank, s->dims);
    t->dtype = kind == NPU_T_CONST ? dtype : NPU_F32;
    t->data = data;
    t->bytes = bytes;
    l->tensor_names[p->tensor_count] = name;
    l->tensor_shapes[p->tensor_count] = *s;
    return p->tensor_count++;
}

/* The tensor holding value `name` in the current scope (a batch slice's views and intermediates; constants are
 * shared by every scope), or NPU_NONE. */
static uint32_t tensor_of(const lowering *l, const char *name) {
    for (uint32_t i = 0; i < l->p->tensor_count; i++)
        if (l->tensor_names[i] && (i >= l->scope || l->p->tensors[i].kind == NPU_T_CONST) && strcmp(l->tensor_names[i], name) == 0) return i;
    return NPU_NONE;
}

/* The float32 data of an initializer as a constant tensor, as stored (no layout change). */
static uint32_t constant_tensor(lowering *l, const char *name) {
    uint32_t t = tensor_of(l, name);
    if (t != NPU_NONE) return t;
    const Kiln__Ir__Tensor *init = ak_initializer(l->g, name);
    shape s = ak_graph_shape(l->g, name, 0);
    if (!init || init->data_case != KILN__IR__TENSOR__DATA_RAW || s.dtype != F32 || !s.known) { l->failed = 2; return 0; }
    int64_t n = count_of(&s);
    if (n < 0 || (uint64_t)n * 4 != init->raw.len) { l->failed = 2; return 0; }
    uint8_t *data = malloc(init->raw.len ? init->raw.len : 1);
    if (!data) { l->failed = 1; return 0; }
    if (init->raw.len) memcpy(data, init->raw.data, init->raw.len);
    return add_tensor(l, name, NPU_T_CONST, &s, NPU_F32, data, init->raw.len);
}

/* Appends an instruction with no waits or signals beyond those given. */
static npu_insn *emit(lowering *l, uint32_t opcode) {
    npu_program *p = l->p;
    if (p->insn_count == l->insn_capacity) {
        uint32_t capacity = l->insn_capacity ? 2 * l->insn_capacity : 256;
        npu_insn *grown = realloc(p->insns, capacity * sizeof *grown);
        if (grown) p->insns = grown;
        uint32_t *cores = realloc(p->core_of, capacity * sizeof *cores);
        if (cores) p->core_of = cores;
        if (!grown || !cores) { l->failed = 1; static _Thread_local npu_insn sink; return &sink; } /* written, never read */
        l->insn_capacity = capacity;
    }
    p->core_of[p->insn_count] = l->core;
    npu_insn *n = &p->insns[p->insn_count++];
    memset(n, 0, sizeof *n);
    n->opcode = opcode;
    n->wait_sem[0] = n->wait_sem[1] = n->signal_sem[0] = n->signal_sem[1] = NPU_NONE;
    return n;
}

/* Names the layer of the instructions emitted from `begin` on: node i's name, then "+" and the name of each
 * later node its lowering fused (set in `fused`, not yet named: a fused node is never lowered itself); a
 * node without a name is "Op#index". No instructions, no layer. */
static void name_layer(lowering *l, size_t i, const uint8_t *fused, uint32_t begin) {
    if (l->failed || begin >= l->p->insn_count) return;
    char name[AK_MAX_LAYER_NAME + 1];
    size_t at = 0;
    for (size_t j = i; j < l->g->n_nodes && at < sizeof name - 1; j++) {
        if (j != i && (!fused[j] || l->named[j])) continue;
        const Kiln__Ir__Node *node = l->g->nodes[j];
        int n = node->name && node->name[0] ? snprintf(name + at, sizeof name - at, "%s%s", j == i ? "" : "+", node->name)
                                            : snprintf(name + at, sizeof name - at, "%s%s#%zu", j == i ? "" : "+", node->op, j);
        if (n < 0) break;
        at += (size_t)n < sizeof name - at ? (size_t)n : sizeof name - 1 - at;
        l->named[j] = 1;
    }
    uint32_t layer = ak_layers_add(&l->p->layers, name);
    if (layer == UINT32_MAX || ak_layers_assign(&l->p->layers, begin, l->p->insn_count, layer)) l->failed = 1;
}

/* A new semaphore. */
static uint32_t sem(lowering *l) { return l->p->semaphore_count++; }

/* Emits a DMA between DRAM tensor t (offset, partition stride, element stride) and SBUF address addr. */
static npu_insn *dma(lowering *l, int store, uint32_t t, uint64_t offset, uint32_t pstride, uint32_t estride, uint32_t parts, uint32_t cols, uint32_t addr, uint32_t dtype) {
    npu_insn *n = emit(l, store ? NPU_DMA_STORE : NPU_DMA_LOAD);
    n->func = store ? 8 + (l->store_queue++ % 8) : l->load_queue++ % 8;
    n->a = t; n->b = (uint32_t)offset; n->c = pstride; n->d = estride;
    n->parts = parts; n->cols = cols; n->e = addr; n->f = dtype;
    if (store) { n->signal_sem[1] = l->done_sem; l->stores++; }
    return n;
}

/* The float bits of 1.0 (the ScalarE scale of every lowered activation). */
static uint32_t one_bits(void) { float f = 1.0f; uint32_t u; memcpy(&u, &f, 4); return u; }

/* Lowers Y[M,N] = func(scale·X[M,K]·W[K,N] + bias) with W a tensor in [K,N] layout; X[m][k] is element x_start + k·x_kstride +
 * m·x_mstride of its tensor (row-major [M, K]: 1 and K; a channel-major [K, M] image: M and 1), and Y[m][n] goes to element y_start + n·y_pstride + m·y_estride of its (y_estride = N,
 * y_pstride = 1: row-major [M, N]; y_estride = 1, y_pstride = M: channel-major, as a convolution's NCHW result). Tiles: K by
 * 128 (partitions), N by 128 (stationary columns = PSUM partitions), M by 512 (moving columns = one PSUM bank).
 * Weights and bias load once; the moving tiles of consecutive M tiles alternate between two SBUF slots, the
 * results between two output slots, and N tiles rotate over the 8 PSUM banks, so DMA overlaps compute. */
static void lower_matmul(lowering *l, uint32_t x, uint32_t w, uint32_t bias, uint32_t func, float scale, uint32_t y, uint64_t M, uint64_t K, uint64_t N,
                         uint64_t x_start, uint64_t y_start, uint32_t y_pstride, uint32_t y_estride, uint64_t w_start, uint64_t b_start,
                         uint32_t x_kstride, uint32_t x_mstride) {
    uint32_t scale_bits;
    memcpy(&scale_bits, &scale, 4);
    ak_gemm_tiling t;
    if (ak_gemm_tile(M, K, N, 128, 128, 512, &t)) { l->failed = 2; return; }
    uint32_t cast = l->p->auto_cast >= NPU_CAST_MATMUL, dt = cast ? NPU_BF16 : NPU_F32, es = cast ? 2 : 4;
    ak_buffer_pool sbuf;
    ak_pool_init(&sbuf, "SBUF", NPU_PARTITIONS, NPU_SBUF_PARTITION_BYTES);
    int64_t w_base = ak_pool_alloc(&sbuf, t.k_tiles * t.n_tiles * 128 * es, 64);
    int64_t b_base = ak_pool_alloc(&sbuf, t.n_tiles * 4, 64);
    int64_t x_base = ak_pool_alloc(&sbuf, 2 * t.k_tiles * 512 * es, 64);
    int64_t o_base = ak_pool_alloc(&sbuf, 2 * 512 * 4, 64);
    if (w_base < 0 || b_base < 0 || x_base < 0 || o_base < 0) { l->failed = 3; return; }
    uint32_t prior = l->stores, w_full = sem(l), x_full[2] = {sem(l), sem(l)}, x_free[2] = {sem(l), sem(l)};
    uint32_t out_full[2] = {sem(l), sem(l)}, out_free[2] = {sem(l), sem(l)}, bank_full[NPU_PSUM_BANKS], bank_free[NPU_PSUM_BANKS];
    for (uint32_t b = 0; b < NPU_PSUM_BANKS; b++) { bank_full[b] = sem(l); bank_free[b] = sem(l); }
    uint32_t weight_loads = 0;
    for (uint64_t kt = 0; kt < t.k_tiles; kt++)
        for (uint64_t nt = 0; nt < t.n_tiles; nt++) {
            npu_insn *n = dma(l, 0, w, w_start + kt * 128 * N + nt * 128, (uint32_t)N, 1, ak_tile_extent(K, 128, kt), ak_tile_extent(N, 128, nt),
                              (uint32_t)(w_base + (int64_t)((kt * t.n_tiles + nt) * 128 * es)), dt);
            n->wait_sem[0] = l->done_sem; n->wait_value[0] = prior; n->signal_sem[0] = w_full;
            weight_loads++;
        }
    for (uint64_t nt = 0; bias != NPU_NONE && nt < t.n_tiles; nt++) {
        npu_insn *n = dma(l, 0, bias, b_start + nt * 128, 1, 1, ak_tile_extent(N, 128, nt), 1, (uint32_t)(b_base + (int64_t)(nt * 4)), NPU_F32);
        n->wait_sem[0] = l->done_sem; n->wait_value[0] = prior; n->signal_sem[0] = w_full;
        weight_loads++;
    }
    uint32_t bank_uses[NPU_PSUM_BANKS] = {0}, out_uses[2] = {0}, tile = 0;
    for (uint64_t mt = 0; mt < t.m_tiles; mt++) {
        uint32_t s = (uint32_t)(mt % 2), use = (uint32_t)(mt / 2), mext = ak_tile_extent(M, 512, mt);
        uint32_t slot = (uint32_t)(x_base + (int64_t)(s * t.k_tiles * 512 * es));
        for (uint64_t kt = 0; kt < t.k_tiles; kt++) {
            npu_insn *n = dma(l, 0, x, x_start + mt * 512 * x_mstride + kt * 128 * x_kstride, x_kstride, x_mstride, ak_tile_extent(K, 128, kt), mext,
                              slot + (uint32_t)(kt * 512 * es), dt);
            n->wait_sem[0] = x_free[s]; n->wait_value[0] = use;
            n->wait_sem[1] = l->done_sem; n->wait_value[1] = prior;
            n->signal_sem[0] = x_full[s];
        }
        for (uint64_t nt = 0; nt < t.n_tiles; nt++, tile++) {
            uint32_t b = tile % NPU_PSUM_BANKS, next = ak_tile_extent(N, 128, nt), o = tile % 2;
            for (uint64_t kt = 0; kt < t.k_tiles; kt++) {
                uint32_t kext = ak_tile_extent(K, 128, kt);
                npu_insn *ls = emit(l, NPU_LOAD_STATIONARY);
                ls->parts = kext; ls->cols = next; ls->f = dt;
                ls->a = (uint32_t)(w_base + (int64_t)((kt * t.n_tiles + nt) * 128 * es));
                ls->wait_sem[0] = w_full; ls->wait_value[0] = weight_loads;
                npu_insn *mm = emit(l, NPU_MULTIPLY_MOVING);
                mm->parts = kext; mm->cols = mext; mm->f = dt; mm->a = slot + (uint32_t)(kt * 512 * es); mm->b = b; mm->c = kt > 0;
                mm->wait_sem[0] = x_full[s]; mm->wait_value[0] = (uint32_t)(t.k_tiles * (use + 1));
                mm->wait_sem[1] = bank_free[b]; mm->wait_value[1] = bank_uses[b];
                if (kt + 1 == t.k_tiles) {
                    mm->signal_sem[0] = bank_full[b];
                    if (nt + 1 == t.n_tiles) mm->signal_sem[1] = x_free[s];
                }
            }
            npu_insn *act = emit(l, NPU_ACTIVATE);
            act->func = func; act->parts = next; act->cols = mext; act->a = b; act->b = 1;
            act->c = (uint32_t)(o_base + o * 512 * 4); act->d = bias != NPU_NONE ? (uint32_t)(b_base + (int64_t)(nt * 4)) : NPU_NONE;
            act->e = NPU_F32; act->f = scale_bits;
            act->wait_sem[0] = bank_full[b]; act->wait_value[0] = bank_uses[b] + 1;
            act->wait_sem[1] = out_free[o]; act->wait_value[1] = out_uses[o];
            act->signal_sem[0] = bank_free[b]; act->signal_sem[1] = out_full[o];
            npu_insn *st = dma(l, 1, y, y_start + mt * 512 * y_estride + nt * 128 * y_pstride, y_pstride, y_estride, next, mext, act->c, NPU_F32);
            st->wait_sem[0] = out_full[o]; st->wait_value[0] = out_uses[o] + 1;
            st->signal_sem[0] = out_free[o];
            bank_uses[b]++;
            out_uses[o]++;
        }
    }
}

/* The float bits of f. */
static uint32_t float_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* A one-element fp32 constant (for broadcasts by DMA strides of 0). */
static uint32_t scalar_constant(lowering *l, float v) {
    float *d = malloc(4);
    if (!d) { l->failed = 1; return 0; }
    *d = v;
    shape s = {F32, 1, 1, {1}};
    return add_tensor(l, NULL, NPU_T_CONST, &s, NPU_F32, (uint8_t *)d, 4);
}

/* One pass of an elementwise op over a tile in SBUF: ScalarE's func(v·scale + bias) or VectorE's v (op) operand, v
 * being the op's first input on the first pass and the previous pass's result after it. */
enum { EW_B, EW_X, EW_CONST };
typedef struct ew_step {
    int vector;       /* 1: VectorE op `op`; 0: ScalarE function `op` */
    int operand;      /* VectorE: EW_B (the op's second input), EW_X (its first input, again) or EW_CONST (`value`) */
    uint32_t op;
    float scale;      /* ScalarE */
    int has_value;    /* ScalarE: `value` is the bias (else 0) */
    float value;
} ew_step;

/* The element offset of row `row` of operand k of the view. */
static uint64_t ew_row_offset(const ew_view *v, int k, uint64_t row) {
    uint64_t at = 0;
    for (int d = (int)v->rank - 2; d >= 0; d--) {
        at += (row % (uint64_t)v->dims[d]) * (uint64_t)v->stride[k][d];
        row /= (uint64_t)v->dims[d];
    }
    return at;
}

/* The most partitions one elementwise DMA moves: a 128-row tile goes as four DMAs on four queues, which run side by side. */
#define EW_DMA_PARTITIONS 32u

/* Loads rows [row0, row0 + rows) of operand k (tensor t) of the view, columns from col0 (cols of them, or its one value
 * per row when `per_row`) into SBUF partitions 0.. at addr: one DMA per run of rows whose offsets step evenly
 * (broadcast rows repeat by a partition stride of 0). Each load waits until the slot is free (free_sem ≥ free_value)
 * and every earlier op's stores are done, and signals full_sem. Returns the number of DMAs. */
static uint32_t ew_load(lowering *l, uint32_t t, const ew_view *v, int k, int per_row, uint64_t row0, uint32_t rows, uint64_t col0, uint32_t cols, uint32_t addr,
                        uint32_t dtype, uint32_t free_sem, uint32_t free_value, uint32_t full_sem, uint32_t prior) {
    uint64_t off[NPU_PARTITIONS];
    for (uint32_t r = 0; r < rows; r++) off[r] = ew_row_offset(v, k, row0 + r) + (per_row ? 0 : col0);
    uint32_t count = 0;
    for (uint32_t r = 0; r < rows;) {
        uint64_t step = r + 1 < rows && off[r + 1] >= off[r] ? off[r + 1] - off[r] : 0;
        uint32_t run = 1;
        while (r + run < rows && run < EW_DMA_PARTITIONS && off[r + run] == off[r] + run * step) run++;
        npu_insn *n = dma(l, 0, t, off[r], (uint32_t)step, 1, run, per_row ? 1 : cols, addr, dtype);
        n->func |= r << 8; /* the tile's first partition */
        n->wait_sem[0] = free_sem; n->wait_value[0] = free_value;
        n->wait_sem[1] = l->done_sem; n->wait_value[1] = prior;
        n->signal_sem[0] = full_sem;
        count++;
        r += run;
    }
    return count;
}

/* Lowers an elementwise op into y: the passes `steps` over the view v of its first input a (operand 0) and its second b
 * (operand 1, or NPU_NONE), tiles of 128 rows × 512 columns alternating between two sets of SBUF slots so that one
 * tile's DMA overlaps the other's passes. a must not hold one value per row (the caller swaps such operands). The
 * constants of EW_CONST passes and ScalarE biases are loaded once, one value per partition. With auto-cast all the
 * inputs are rounded to bf16 on load; a pass after the first reads the previous result in fp32, so when a later pass
 * reads the first input again (EW_X), a ScalarE copy to fp32 comes first. */
static void lower_elementwise(lowering *l, uint32_t a, uint32_t b, const ew_view *v, const ew_step *steps, uint32_t nsteps, uint32_t y) {
    uint64_t C = (uint64_t)v->dims[v->rank - 1], R = l->p->tensors[y].elements / C;
    if (!C || !R) return; /* nothing to compute */
    uint32_t dt = l->p->auto_cast == NPU_CAST_ALL ? NPU_BF16 : NPU_F32, es = npu_dtype_size(dt);
    int b_per_row = b != NPU_NONE && ew_per_row(v, 1), copy_x = 0;
    uint32_t consts = 0, const_index[8];
    for (uint32_t k = 0; k < nsteps; k++) {
        copy_x |= steps[k].operand == EW_X && steps[k].vector && dt != NPU_F32;
        if ((steps[k].vector && steps[k].operand == EW_CONST) || (!steps[k].vector && steps[k].has_value)) const_index[k] = consts++;
    }
    ak_buffer_pool sbuf;
    ak_pool_init(&sbuf, "SBUF", NPU_PARTITIONS, NPU_SBUF_PARTITION_BYTES);
    int64_t in_base = ak_pool_alloc(&sbuf, 2 * 2 * 512 * es, 64), o_base = ak_pool_alloc(&sbuf, 2 * 512 * 4, 64);
    int64_t x_base = copy_x ? ak_pool_alloc(&sbuf, 2 * 512 * 4, 64) : 0, c_base = consts ? ak_pool_alloc(&sbuf, consts * 4, 64) : 0;
    if (in_base < 0 || o_base < 0 || x_base < 0 || c_base < 0) { l->failed = 3; return; }
    uint32_t prior = l->stores, in_full[2] = {sem(l), sem(l)}, in_free[2] = {sem(l), sem(l)}, out_full[2] = {sem(l), sem(l)}, out_free[2] = {sem(l), sem(l)};
    uint32_t progress[2] = {sem(l), sem(l)}, loaded[2] = {consts, consts}, passes[2] = {0, 0}, stored[2] = {0, 0};
    for (uint32_t k = 0; k < nsteps; k++) {
        if ((steps[k].vector && steps[k].operand == EW_CONST) || (!steps[k].vector && steps[k].has_value)) {
            npu_insn *n = dma(l, 0, scalar_constant(l, steps[k].value), 0, 0, 1, NPU_PARTITIONS, 1, (uint32_t)c_base + 4 * const_index[k], NPU_F32);
            n->wait_sem[0] = l->done_sem; n->wait_value[0] = prior;
            n->signal_sem[0] = in_full[0]; n->signal_sem[1] = in_full[1];
        }
    }
    /* the passes of one tile: an fp32 copy of the input first when needed; the last one to read an input slot frees it */
    uint32_t m = nsteps + (uint32_t)copy_x, last_input = 0;
    for (uint32_t k = 0; k < nsteps; k++)
        if ((k == 0 && !copy_x) || (steps[k].vector && (steps[k].operand == EW_B || (steps[k].operand == EW_X && !copy_x)))) last_input = k + (uint32_t)copy_x;
    uint32_t tile = 0;
    for (uint64_t rt = 0; rt < ceil_div(R, 128); rt++)
        for (uint64_t ct = 0; ct < ceil_div(C, 512); ct++, tile++) {
            uint32_t sl = tile % 2, use = tile / 2, rows = ak_tile_extent(R, 128, rt), cols = ak_tile_extent(C, 512, ct);
            uint32_t a_addr = (uint32_t)(in_base + (int64_t)(sl * 2 * 512 * es)), b_addr = a_addr + 512 * es, o_addr = (uint32_t)(o_base + (int64_t)(sl * 512 * 4));
            uint32_t x_addr = copy_x ? (uint32_t)(x_base + (int64_t)(sl * 512 * 4)) : a_addr;
            loaded[sl] += ew_load(l, a, v, 0, 0, rt * 128, rows, ct * 512, cols, a_addr, dt, in_free[sl], use, in_full[sl], prior);
            if (b != NPU_NONE)
                loaded[sl] += ew_load(l, b, v, 1, b_per_row, rt * 128, rows, ct * 512, cols, b_addr, b_per_row ? NPU_F32 : dt, in_free[sl], use, in_full[sl], prior);
            uint32_t src = a_addr, src_type = dt;
            for (uint32_t j = 0; j < m; j++) {
                npu_insn *c;
                if (copy_x && j == 0) {
                    c = emit(l, NPU_ACTIVATE);
                    c->func = NPU_FUNC_IDENTITY; c->b = 0; c->c = x_addr; c->d = NPU_NONE; c->f = one_bits();
                    c->a = src; c->e = src_type;
                    src = x_addr; src_type = NPU_F32;
                } else {
                    const ew_step *st = &steps[j - (uint32_t)copy_x];
                    c = emit(l, st->vector ? NPU_VECTOR : NPU_ACTIVATE);
                    c->func = st->op; c->a = src; c->e = src_type; c->c = o_addr;
                    if (!st->vector) { c->b = 0; c->d = st->has_value ? (uint32_t)c_base + 4 * const_index[j - (uint32_t)copy_x] : NPU_NONE; c->f = float_bits(st->scale); }
                    else if (st->operand == EW_B) { c->b = b_addr; c->d = b_per_row ? 1 : 0; }
                    else if (st->operand == EW_X) { c->b = x_addr; c->d = 0; }
                    else { c->b = (uint32_t)c_base + 4 * const_index[j - (uint32_t)copy_x]; c->d = 1; }
                    src = o_addr; src_type = NPU_F32;
                }
                c->parts = rows; c->cols = cols;
                if (j == 0) {
                    c->wait_sem[0] = in_full[sl]; c->wait_value[0] = loaded[sl];
                    c->wait_sem[1] = out_free[sl]; c->wait_value[1] = stored[sl];
                } else { c->wait_sem[0] = progress[sl]; c->wait_value[0] = passes[sl] + j; }
                c->signal_sem[0] = j + 1 < m ? progress[sl] : out_full[sl];
                if (j == last_input) c->signal_sem[1] = in_free[sl];
            }
            passes[sl] += m - 1;
            for (uint32_t r = 0; r < rows; r += EW_DMA_PARTITIONS) {
                uint32_t part = rows - r < EW_DMA_PARTITIONS ? rows - r : EW_DMA_PARTITIONS;
                npu_insn *st = dma(l, 1, y, (rt * 128 + r) * C + ct * 512, (uint32_t)C, 1, part, cols, o_addr, NPU_F32);
                st->func |= r << 8;
                st->wait_sem[0] = out_full[sl]; st->wait_value[0] = use + 1;
                st->signal_sem[0] = out_free[sl];
            }
            stored[sl] += (uint32_t)ceil_div(rows, EW_DMA_PARTITIONS);
        }
}

/* ---- reductions, normalizations, pooling and convolution ---------------------------------------------------- */

/* A strictly ordered sequence of instructions over several engines: each waits until the ones before it in the
 * chain have completed (one semaphore counting completions). The lowerings below use one for each op: simple and
 * correct, with no overlap between the op's DMA and compute (NPU.md, "Lowering"). */
typedef struct chain { uint32_t sem, done; } chain;

/* Makes n the next link of c (its first wait and signal slots); loads also wait for every earlier op's stores. */
static npu_insn *link_insn(lowering *l, chain *c, npu_insn *n, uint32_t prior) {
    n->wait_sem[0] = c->sem; n->wait_value[0] = c->done;
    n->signal_sem[0] = c->sem;
    c->done++;
    if (n->opcode == NPU_DMA_LOAD) { n->wait_sem[1] = l->done_sem; n->wait_value[1] = prior; }
    return n;
}

/* A new chain. */
static chain new_chain(lowering *l) { chain c = {sem(l), 0}; return c; }


/* ScalarE: dst = func(src·scale + bias) over parts × cols in SBUF (fp32); bias an SBUF address or NPU_NONE. */
static npu_insn *scalar_op(lowering *l, chain *c, uint32_t prior, uint32_t func, uint32_t parts, uint32_t cols, uint32_t src, uint32_t dst, float scale, uint32_t bias) {
    npu_insn *n = emit(l, NPU_ACTIVATE);
    n->func = func; n->parts = parts; n->cols = cols; n->a = src; n->b = 0; n->c = dst; n->d = bias; n->e = NPU_F32; n->f = float_bits(scale);
    return link_insn(l, c, n, prior);
}

/* VectorE: dst = a (alu) b over parts × cols (fp32); per_partition: b is one value per partition. */
static npu_insn *vector_op(lowering *l, chain *c, uint32_t prior, uint32_t alu, uint32_t parts, uint32_t cols, uint32_t a, uint32_t b, uint32_t dst, int per_partition) {
    npu_insn *n = emit(l, NPU_VECTOR);
    n->func = alu; n->parts = parts; n->cols = cols; n->a = a; n->b = b; n->c = dst; n->d = per_partition ? 1 : 0; n->e = NPU_F32;
    return link_insn(l, c, n, prior);
}

/* VectorE: dst[p] = (accumulate ? dst[p] : ·) reduced with a[p][0..cols) (alu add or max). */
static npu_insn *reduce_op(lowering *l, chain *c, uint32_t prior, uint32_t alu, uint32_t parts, uint32_t cols, uint32_t a, uint32_t dst, int accumulate) {
    npu_insn *n = emit(l, NPU_REDUCE);
    n->func = alu; n->parts = parts; n->cols = cols; n->a = a; n->c = dst; n->d = accumulate ? 1 : 0; n->e = NPU_F32;
    return link_insn(l, c, n, prior);
}

/* A chained DMA in fp32. */
static npu_insn *chained_dma(lowering *l, chain *c, uint32_t prior, int store, uint32_t t, uint64_t offset, uint32_t pstride, uint32_t estride, uint32_t parts, uint32_t cols, uint32_t addr) {
    return link_insn(l, c, dma(l, store, t, offset, pstride, estride, parts, cols, addr, NPU_F32), prior);
}

/* SBUF byte addresses of `count` fp32 tiles of `cols` columns, one after another (64-byte aligned). */
static int sbuf_tiles(lowering *l, uint32_t count, uint32_t cols, uint32_t *addr) {
    ak_buffer_pool pool;
    ak_pool_init(&pool, "SBUF", NPU_PARTITIONS, NPU_SBUF_PARTITION_BYTES);
    for (uint32_t i = 0; i < count; i++) {
        int64_t at = ak_pool_alloc(&pool, (uint64_t)cols * 4, 64);
        if (at < 0) { l->failed = 3; return 0; }
        addr[i] = (uint32_t)at;
    }
    return 1;
}

/* Softmax over the last axis of X viewed as [R rows × C ≤ 512]: rows on partitions, per tile of 128 rows
 * max (VectorE reduce) -> -max (ScalarE) -> exp(x - max) (ScalarE, the bias) -> sum (VectorE reduce) ->
 * 1/sum (ScalarE) -> e·(1/sum) (VectorE, a per-partition operand). */
static void lower_softmax(lowering *l, uint32_t x, uint32_t y, uint64_t R, uint32_t C) {
    enum { XA, EX, YA, M, NM, S, RS, TILES };
    uint32_t at[TILES];
    if (!sbuf_tiles(l, TILES, C, at)) return;
    uint32_t prior = l->stores;
    chain c = new_chain(l);
    for (uint64_t rt = 0; rt < ceil_div(R, 128); rt++) {
        uint32_t rows = ak_tile_extent(R, 128, rt);
        uint64_t offset = rt * 128 * C;
        chained_dma(l, &c, prior, 0, x, offset, C, 1, rows, C, at[XA]);
        reduce_op(l, &c, prior, NPU_ALU_MAX, rows, C, at[XA], at[M], 0);
        scalar_op(l, &c, prior, NPU_FUNC_IDENTITY, rows, 1, at[M], at[NM], -1.0f, NPU_NONE);
        scalar_op(l, &c, prior, NPU_FUNC_EXP, rows, C, at[XA], at[EX], 1.0f, at[NM]);
        reduce_op(l, &c, prior, NPU_ALU_ADD, rows, C, at[EX], at[S], 0);
        scalar_op(l, &c, prior, NPU_FUNC_RECIPROCAL, rows, 1, at[S], at[RS], 1.0f, NPU_NONE);
        vector_op(l, &c, prior, NPU_ALU_MUL, rows, C, at[EX], at[RS], at[YA], 1);
        chained_dma(l, &c, prior, 1, y, offset, C, 1, rows, C, at[YA]);
    }
}

/* LayerNormalization over the last axis of X viewed as [R × C ≤ 512] with scale and bias rows of C:
 * mean (reduce, ·1/C) -> x - mean -> mean of squares -> 1/sqrt(var + eps) (ScalarE, eps loaded as its bias) ->
 * normalized · scale + bias (VectorE, the rows broadcast to every partition by DMA partition stride 0). */
static void lower_layernorm(lowering *l, uint32_t x, uint32_t scale, uint32_t bias, float epsilon, uint32_t y, uint64_t R, uint32_t C) {
    enum { XA, XC, SQ, GA, BA, YA, S, NMEAN, SS, RSTD, EPS, TILES };
    uint32_t at[TILES];
    uint32_t eps = scalar_constant(l, epsilon);
    if (l->failed || !sbuf_tiles(l, TILES, C, at)) return;
    uint32_t prior = l->stores;
    chain c = new_chain(l);
    chained_dma(l, &c, prior, 0, scale, 0, 0, 1, NPU_PARTITIONS, C, at[GA]);
    if (bias != NPU_NONE) chained_dma(l, &c, prior, 0, bias, 0, 0, 1, NPU_PARTITIONS, C, at[BA]);
    chained_dma(l, &c, prior, 0, eps, 0, 0, 0, NPU_PARTITIONS, 1, at[EPS]);
    for (uint64_t rt = 0; rt < ceil_div(R, 128); rt++) {
        uint32_t rows = ak_tile_extent(R, 128, rt);
        uint64_t offset = rt * 128 * C;
        chained_dma(l, &c, prior, 0, x, offset, C, 1, rows, C, at[XA]);
        reduce_op(l, &c, prior, NPU_ALU_ADD, rows, C, at[XA], at[S], 0);
        scalar_op(l, &c, prior, NPU_FUNC_IDENTITY, rows, 1, at[S], at[NMEAN], -1.0f / (float)C, NPU_NONE);
        vector_op(l, &c, prior, NPU_ALU_ADD, rows, C, at[XA], at[NMEAN], at[XC], 1);
        vector_op(l, &c, prior, NPU_ALU_MUL, rows, C, at[XC], at[XC], at[SQ], 0);
        reduce_op(l, &c, prior, NPU_ALU_ADD, rows, C, at[SQ], at[SS], 0);
        scalar_op(l, &c, prior, NPU_FUNC_RSQRT, rows, 1, at[SS], at[RSTD], 1.0f / (float)C, at[EPS]);
        vector_op(l, &c, prior, NPU_ALU_MUL, rows, C, at[XC], at[RSTD], at[YA], 1);
        vector_op(l, &c, prior, NPU_ALU_MUL, rows, C, at[YA], at[GA], at[YA], 0);
        if (bias != NPU_NONE) vector_op(l, &c, prior, NPU_ALU_ADD, rows, C, at[YA], at[BA], at[YA], 0);
        chained_dma(l, &c, prior, 1, y, offset, C, 1, rows, C, at[YA]);
    }
}

/* GlobalAveragePool of X [N, C, H, W]: rows N·C on partitions, H·W summed in column tiles of 512 (VectorE reduce,
 * accumulating), then ·1/(H·W) (ScalarE) and stored as [N, C, 1, 1]. */
static void lower_global_average(lowering *l, uint32_t x, uint32_t y, uint64_t rows_total, uint64_t hw) {
    enum { XA, S, O, TILES };
    uint32_t at[TILES];
    if (!sbuf_tiles(l, TILES, NPU_MAX_COLS, at)) return;
    uint32_t prior = l->stores;
    chain c = new_chain(l);
    for (uint64_t rt = 0; rt < ceil_div(rows_total, 128); rt++) {
        uint32_t rows = ak_tile_extent(rows_total, 128, rt);
        for (uint64_t ct = 0; ct < ceil_div(hw, NPU_MAX_COLS); ct++) {
            uint32_t cols = ak_tile_extent(hw, NPU_MAX_COLS, ct);
            chained_dma(l, &c, prior, 0, x, rt * 128 * hw + ct * NPU_MAX_COLS, (uint32_t)hw, 1, rows, cols, at[XA]);
            reduce_op(l, &c, prior, NPU_ALU_ADD, rows, cols, at[XA], at[S], ct > 0);
        }
        scalar_op(l, &c, prior, NPU_FUNC_IDENTITY, rows, 1, at[S], at[O], 1.0f / (float)hw, NPU_NONE);
        chained_dma(l, &c, prior, 1, y, rt * 128, 1, 1, rows, 1, at[O]);
    }
}


/* The output columns [ow0, ow1) whose input column ow·sw − pl + k·dw lies inside [0, W). */
static void valid_columns(const window *g, uint32_t k, uint64_t *ow0, uint64_t *ow1) {
    int64_t lo = (int64_t)g->pl - (int64_t)k * g->dw, hi = (int64_t)g->W - 1 + lo; /* ow·sw must lie in [lo, hi] */
    int64_t a = lo <= 0 ? 0 : (lo + g->sw - 1) / g->sw, b = hi < 0 ? -1 : hi / g->sw;
    *ow0 = (uint64_t)a;
    *ow1 = b < 0 ? 0 : (uint64_t)b + 1 > g->OW ? g->OW : (uint64_t)b + 1;
    if (*ow1 < *ow0) *ow1 = *ow0;
}

/* MaxPool / AveragePool of X [N, C, H, W]: rows N·C on partitions; for each output row and kernel offset one DMA
 * gathers the strided window row (positions in the padding are first filled from a constant, -inf or 0, by a
 * broadcast DMA), and VectorE folds it in (max or add). AveragePool then multiplies by a compile-time row of
 * 1/count (the window's valid positions, or the whole window with count_include_pad). */
static void lower_pool(lowering *l, uint32_t x, uint32_t y, const window *g, int average, int include_pad) {
    enum { WIN, ACC, RC, TILES };
    uint32_t at[TILES];
    uint32_t fill = scalar_constant(l, average ? 0.0f : -INFINITY), rc = NPU_NONE;
    if (average && !l->failed) {
        float *r = malloc(g->OH * g->OW * 4 + 4);
        if (!r) { l->failed = 1; return; }
        for (uint64_t oh = 0; oh < g->OH; oh++)
            for (uint64_t ow = 0; ow < g->OW; ow++) {
                int64_t h0 = (int64_t)(oh * g->sh) - g->pt, w0 = (int64_t)(ow * g->sw) - g->pl, count = 0;
                for (int64_t i = 0; i < g->kh; i++)
                    for (int64_t j = 0; j < g->kw; j++) {
                        int64_t h = h0 + i, w = w0 + j;
                        int inside = h >= 0 && h < (int64_t)g->H && w >= 0 && w < (int64_t)g->W;
                        int in_padded = h >= -(int64_t)g->pt && h < (int64_t)(g->H + g->pb) && w >= -(int64_t)g->pl && w < (int64_t)(g->W + g->pr);
                        count += include_pad ? in_padded : inside;
                    }
                r[oh * g->OW + ow] = 1.0f / (float)(count ? count : 1);
            }
        shape s = {F32, 1, 2, {(int64_t)g->OH, (int64_t)g->OW}};
        rc = add_tensor(l, NULL, NPU_T_CONST, &s, NPU_F32, (uint8_t *)r, g->OH * g->OW * 4);
    }
    if (l->failed || !sbuf_tiles(l, TILES, (uint32_t)g->OW, at)) return;
    uint32_t prior = l->stores, alu = average ? NPU_ALU_ADD : NPU_ALU_MAX;
    uint64_t rows_total = g->N * g->C, hw = g->H * g->W, ohw = g->OH * g->OW;
    chain c = new_chain(l);
    for (uint64_t rt = 0; rt < ceil_div(rows_total, 128); rt++) {
        uint32_t rows = ak_tile_extent(rows_total, 128, rt);
        for (uint64_t oh = 0; oh < g->OH; oh++) {
            int first = 1;
            for (uint32_t i = 0; i < g->kh; i++) {
                int64_t ih = (int64_t)(oh * g->sh) - g->pt + (int64_t)i * g->dh;
                for (uint32_t j = 0; j < g->kw; j++) {
                    uint64_t ow0, ow1;
                    valid_columns(g, j, &ow0, &ow1);
                    int row_inside = ih >= 0 && ih < (int64_t)g->H;
                    if (!row_inside || ow0 >= ow1) {
                        if (average) continue; /* adds nothing */
                        chained_dma(l, &c, prior, 0, fill, 0, 0, 0, rows, (uint32_t)g->OW, at[WIN]);
                    } else {
                        if (ow0 > 0 || ow1 < g->OW) chained_dma(l, &c, prior, 0, fill, 0, 0, 0, rows, (uint32_t)g->OW, at[WIN]);
                        uint64_t iw0 = ow0 * g->sw + (uint64_t)j * g->dw - g->pl;
                        chained_dma(l, &c, prior, 0, x, rt * 128 * hw + (uint64_t)ih * g->W + iw0, (uint32_t)hw, g->sw, rows, (uint32_t)(ow1 - ow0), at[WIN] + (uint32_t)ow0 * 4);
                    }
                    if (first) scalar_op(l, &c, prior, NPU_FUNC_IDENTITY, rows, (uint32_t)g->OW, at[WIN], at[ACC], 1.0f, NPU_NONE);
                    else vector_op(l, &c, prior, alu, rows, (uint32_t)g->OW, at[ACC], at[WIN], at[ACC], 0);
                    first = 0;
                }
            }
            if (first) { /* average with no valid position in any window of the row: zeros */
                chained_dma(l, &c, prior, 0, fill, 0, 0, 0, rows, (uint32_t)g->OW, at[ACC]);
            }
            if (average) {
                chained_dma(l, &c, prior, 0, rc, oh * g->OW, 0, 1, rows, (uint32_t)g->OW, at[RC]);
                vector_op(l, &c, prior, NPU_ALU_MUL, rows, (uint32_t)g->OW, at[ACC], at[RC], at[ACC], 0);
            }
            chained_dma(l, &c, prior, 1, y, rt * 128 * ohw + oh * g->OW, (uint32_t)ohw, 1, rows, (uint32_t)g->OW, at[ACC]);
        }
    }
}

/* Conv as an implicit GEMM over the g->C input channels from c0 of x's C_total and the O output channels from o0 of y's
 * O_total (group 1: all of them; a group of a grouped Conv: its share): DMA gathers the im2col matrix
 * T[N·OH·OW, K = C·KH·KW] into an intermediate tensor (positions in the padding stay 0: intermediates start zeroed),
 * one DMA pair (load to SBUF, store to T) per output row, kernel offset and tile of 128 channels; then each image's
 * rows of T go through lower_matmul against the weights in [K, O] layout (from element w_start of w; the bias from
 * b_start), its result stored channel-major into Y [N, O_total, OH, OW]. */
static void lower_conv(lowering *l, uint32_t x, uint32_t w, uint32_t bias, uint32_t func, uint32_t y, const window *g, uint64_t O,
                       uint64_t c0, uint64_t C_total, uint64_t o0, uint64_t O_total, uint64_t w_start, uint64_t b_start) {
    uint64_t P = g->OH * g->OW, K = g->C * g->kh * g->kw, hw = g->H * g->W, khw = (uint64_t)g->kh * g->kw;
    if (khw == 1 && g->sh == 1 && g->sw == 1 && !g->pt && !g->pl && !g->pb && !g->pr) {
        /* pointwise: TensorE reads the image where it is (X[p][c] = x[c·H·W + p]), no im2col copy */
        for (uint64_t n = 0; n < g->N && !l->failed; n++)
            lower_matmul(l, x, w, bias, func, 1.0f, y, P, K, O, n * C_total * hw + c0 * hw, n * O_total * P + o0 * P, (uint32_t)P, 1, w_start, b_start,
                         (uint32_t)hw, 1);
        return;
    }
    shape ts = {F32, 1, 2, {(int64_t)(g->N * P), (int64_t)K}};
    uint32_t t = add_tensor(l, NULL, NPU_T_SCRATCH, &ts, NPU_F32, NULL, 0);
    uint32_t at[1];
    if (l->failed || !sbuf_tiles(l, 1, (uint32_t)g->OW, at)) return;
    uint32_t prior = l->stores;
    chain c = new_chain(l);
    for (uint64_t n = 0; n < g->N; n++)
        for (uint64_t oh = 0; oh < g->OH; oh++)
            for (uint32_t i = 0; i < g->kh; i++) {
                int64_t ih = (int64_t)(oh * g->sh) - g->pt + (int64_t)i * g->dh;
                if (ih < 0 || ih >= (int64_t)g->H) continue;
                for (uint32_t j = 0; j < g->kw; j++) {
                    uint64_t ow0, ow1;
                    valid_columns(g, j, &ow0, &ow1);
                    if (ow0 >= ow1) continue;
                    uint64_t iw0 = ow0 * g->sw + (uint64_t)j * g->dw - g->pl;
                    for (uint64_t ct = 0; ct < ceil_div(g->C, 128); ct++) {
                        uint32_t parts = ak_tile_extent(g->C, 128, ct), cols = (uint32_t)(ow1 - ow0);
                        chained_dma(l, &c, prior, 0, x, n * C_total * hw + (c0 + ct * 128) * hw + (uint64_t)ih * g->W + iw0, (uint32_t)hw, g->sw, parts, cols, at[0]);
                        chained_dma(l, &c, prior, 1, t, (n * P + oh * g->OW + ow0) * K + ct * 128 * khw + (uint64_t)i * g->kw + j, (uint32_t)khw, (uint32_t)K,
                                    parts, cols, at[0]);
                    }
                }
            }
    for (uint64_t n = 0; n < g->N && !l->failed; n++)
        lower_matmul(l, t, w, bias, func, 1.0f, y, P, K, O, n * P * K, n * O_total * P + o0 * P, (uint32_t)P, 1, w_start, b_start, 1, (uint32_t)K);
}

/* Depthwise Conv (group = C = O) on VectorE, laid out by depthwise_plan: per tile, the tap table rows (KH·KW
 * weights and the bias of each partition's channel, from the compile-time table [N·C, KH·KW + 1]) and the band's
 * padded input rows, as sh·sw phase planes, are loaded by DMA (the DMA's first partition places each band's
 * channels; planes are first zeroed from a constant when the Conv pads); then, for each run of whole output rows
 * (≤ 512 columns, Wq per row), the first tap is a VECTOR multiply by the per-partition weight and every further
 * tap a multiply-accumulate (VECTOR mode 2) of a shifted run of a plane; ScalarE adds the bias and applies a
 * fused activation; DMA stores the valid OW columns of each row into Y [N, C, OH, OW]. Accumulator and output
 * slots alternate, so the drain and the stores of one run overlap the taps of the next; a tile's loads wait for
 * the previous tile's stores (its planes, table and slots are reused). */
static void lower_depthwise(lowering *l, uint32_t x, uint32_t table, uint32_t func, uint32_t y, const window *g) {
    uint32_t dt = l->p->auto_cast == NPU_CAST_ALL ? NPU_BF16 : NPU_F32, es = npu_dtype_size(dt);
    dw_plan d;
    char why[200];
    if (depthwise_plan(g, es, &d, why, sizeof why)) { l->failed = 3; return; }
    uint32_t phases = g->sh * g->sw, padded = g->pt || g->pl || g->pb || g->pr;
    ak_buffer_pool pool;
    ak_pool_init(&pool, "SBUF", NPU_PARTITIONS, NPU_SBUF_PARTITION_BYTES);
    int64_t wt = ak_pool_alloc(&pool, (uint64_t)(d.taps + 1) * 4, 64), acc = ak_pool_alloc(&pool, 2 * 512 * 4, 64), outs = ak_pool_alloc(&pool, 2 * 512 * 4, 64);
    int64_t planes = ak_pool_alloc(&pool, (uint64_t)phases * d.plane_len * es, 64);
    if (wt < 0 || acc < 0 || outs < 0 || planes < 0) { l->failed = 3; return; }
    uint32_t zero = padded ? scalar_constant(l, 0.0f) : NPU_NONE;
    if (l->failed) return;
    uint32_t loaded = sem(l), filled = sem(l), acc_full[2] = {sem(l), sem(l)}, acc_free[2] = {sem(l), sem(l)}, out_full[2] = {sem(l), sem(l)}, out_free[2] = {sem(l), sem(l)};
    uint32_t loads = 0, fills = 0, runs = 0, out_stores[2] = {0, 0}, pitch = (uint32_t)(g->H * g->W), opitch = (uint32_t)(g->OH * g->OW);
    uint32_t rows_per_run = NPU_MAX_COLS / d.Wq;
#define PLANE(a, b) ((uint32_t)planes + ((a) * g->sw + (b)) * d.plane_len * es)
    for (uint64_t nc0 = 0; nc0 < d.NC; nc0 += NPU_PARTITIONS) {
        uint32_t ncr = ak_tile_extent(d.NC, NPU_PARTITIONS, nc0 / NPU_PARTITIONS);
        for (uint32_t k0 = 0; k0 < d.bands; k0 += d.kpack) {
            uint32_t kb = d.bands - k0 < d.kpack ? d.bands - k0 : d.kpack, parts = kb * ncr, after = l->stores;
            uint32_t group_rows = (uint32_t)(g->OH - (uint64_t)k0 * d.band_rows < d.band_rows ? g->OH - (uint64_t)k0 * d.band_rows : d.band_rows);
            for (uint32_t ph = 0; padded && ph < phases; ph++)
                for (uint32_t at = 0; at < d.plane_len; at += NPU_MAX_COLS) {
                    uint32_t cols = d.plane_len - at < NPU_MAX_COLS ? d.plane_len - at : NPU_MAX_COLS;
                    npu_insn *n = dma(l, 0, zero, 0, 0, 0, parts, cols, (uint32_t)planes + (ph * d.plane_len + at) * es, dt);
                    n->wait_sem[0] = l->done_sem; n->wait_value[0] = after; n->signal_sem[0] = filled;
                    fills++;
                }
            for (uint32_t kk = 0; kk < kb; kk++) {
                npu_insn *n = dma(l, 0, table, nc0 * (d.taps + 1), d.taps + 1, 1, ncr, d.taps + 1, (uint32_t)wt, NPU_F32);
                n->func |= (kk * ncr) << 8;
                n->wait_sem[0] = l->done_sem; n->wait_value[0] = after; n->signal_sem[0] = loaded;
                loads++;
                uint64_t r0 = (uint64_t)(k0 + kk) * d.band_rows * g->sh; /* the band's first padded row */
                for (uint32_t a = 0; a < g->sh; a++)
                    for (uint32_t b = 0; b < g->sw; b++)
                        for (uint32_t yq = 0; yq < d.Hq; yq++) {
                            int64_t ih = (int64_t)(r0 + (uint64_t)yq * g->sh + a) - g->pt;
                            if (ih < 0 || ih >= (int64_t)g->H) continue;
                            int64_t lo = (int64_t)g->pl - b, hi = (int64_t)g->W - 1 + (int64_t)g->pl - b; /* x·sw in [lo, hi] */
                            int64_t x0 = lo <= 0 ? 0 : (lo + g->sw - 1) / g->sw, x1 = hi < 0 ? 0 : hi / g->sw + 1;
                            if (x1 > (int64_t)d.Wq) x1 = d.Wq;
                            if (x1 <= x0) continue;
                            uint64_t iw0 = (uint64_t)(x0 * g->sw + b - g->pl);
                            npu_insn *ld = dma(l, 0, x, nc0 * pitch + (uint64_t)ih * g->W + iw0, pitch, g->sw, ncr, (uint32_t)(x1 - x0),
                                               PLANE(a, b) + ((uint32_t)yq * d.Wq + (uint32_t)x0) * es, dt);
                            ld->func |= (kk * ncr) << 8;
                            ld->wait_sem[0] = l->done_sem; ld->wait_value[0] = after;
                            if (padded) { ld->wait_sem[1] = filled; ld->wait_value[1] = fills; }
                            ld->signal_sem[0] = loaded;
                            loads++;
                        }
            }
            for (uint32_t r = 0; r < group_rows; r += rows_per_run, runs++) {
                uint32_t rows = group_rows - r < rows_per_run ? group_rows - r : rows_per_run, cols = rows * d.Wq, s = runs % 2, use = runs / 2;
                uint32_t slot = (uint32_t)acc + s * 512 * 4, out = (uint32_t)outs + s * 512 * 4;
                for (uint32_t t = 0; t < d.taps; t++) {
                    uint32_t di = (t / g->kw) * g->dh, dj = (t % g->kw) * g->dw;
                    npu_insn *v = emit(l, NPU_VECTOR);
                    v->func = NPU_ALU_MUL; v->parts = parts; v->cols = cols; v->e = dt; v->c = slot; v->b = (uint32_t)wt + t * 4;
                    v->a = PLANE(di % g->sh, dj % g->sw) + ((r + di / g->sh) * d.Wq + dj / g->sw) * es;
                    v->d = t ? NPU_VECTOR_MAC : 1; v->f = t ? slot : 0;
                    if (t == 0) { v->wait_sem[0] = loaded; v->wait_value[0] = loads; v->wait_sem[1] = acc_free[s]; v->wait_value[1] = use; }
                    if (t + 1 == d.taps) v->signal_sem[0] = acc_full[s];
                }
                npu_insn *act = emit(l, NPU_ACTIVATE);
                act->func = func; act->parts = parts; act->cols = cols; act->a = slot; act->b = 0; act->c = out; act->d = (uint32_t)wt + d.taps * 4;
                act->e = NPU_F32; act->f = one_bits();
                act->wait_sem[0] = acc_full[s]; act->wait_value[0] = use + 1; act->wait_sem[1] = out_free[s]; act->wait_value[1] = out_stores[s];
                act->signal_sem[0] = acc_free[s]; act->signal_sem[1] = out_full[s];
                for (uint32_t kk = 0; kk < kb; kk++)
                    for (uint32_t i = 0; i < rows; i++) {
                        uint64_t oh = (uint64_t)(k0 + kk) * d.band_rows + r + i;
                        if (oh >= (uint64_t)(k0 + kk + 1) * d.band_rows || oh >= g->OH) continue;
                        npu_insn *st = dma(l, 1, y, nc0 * opitch + oh * g->OW, opitch, 1, ncr, (uint32_t)g->OW, out + i * d.Wq * 4, NPU_F32);
                        st->func |= (kk * ncr) << 8;
                        st->wait_sem[0] = out_full[s]; st->wait_value[0] = use + 1; st->signal_sem[0] = out_free[s];
                        out_stores[s]++;
                    }
            }
        }
    }
#undef PLANE
}

/* A strided copy DRAM -> SBUF -> DRAM of the index space dims[0 .. rank) (rank 1 .. NPU_MAX_RANK): element i of it
 * is read at src[so + Σ i_d·ss[d]] and written at dst[dso + Σ i_d·ds[d]]. The last dim goes along a tile's columns
 * (≤ 512), the one before along its partitions (as many as make about 4096 elements, ≤ 128), the others are looped over; each tile is one load (queues
 * 0-7) and one store (8-15), tiles rotating over eight SBUF slots so that eight loads and stores are in flight. What Transpose
 * (the source strides permuted), Reshape/Flatten (contiguous both ways) and Concat (each input into its part of the
 * result) lower to: DMA only, no engine. */
static void lower_copy(lowering *l, uint32_t src, uint64_t so, const int64_t *ss, uint32_t dst, uint64_t dso, const int64_t *ds, const int64_t *dims, uint32_t rank) {
    int64_t d2[NPU_MAX_RANK + 1], s2[NPU_MAX_RANK + 1], t2[NPU_MAX_RANK + 1];
    uint32_t r = rank < 2 ? 2 : rank;
    for (uint32_t d = 0; d < r; d++) { /* a rank-1 copy gets a leading dim of 1 */
        uint32_t k = rank < 2 ? (d == 0 ? NPU_MAX_RANK : 0) : d;
        d2[d] = k == NPU_MAX_RANK ? 1 : dims[k]; s2[d] = k == NPU_MAX_RANK ? 0 : ss[k]; t2[d] = k == NPU_MAX_RANK ? 0 : ds[k];
    }
    uint64_t outer = 1;
    for (uint32_t d = 0; d + 2 < r; d++) outer *= (uint64_t)d2[d];
    uint64_t P = (uint64_t)d2[r - 2], C = (uint64_t)d2[r - 1];
    if (!outer || !P || !C) return;
    /* tiles of about 4096 elements (16 KiB): each DMA's 64 ns descriptor stays small beside its bytes, and a large copy
     * is cut into enough tiles to keep the eight load and eight store queues busy */
    uint32_t cmax = C < NPU_MAX_COLS ? (uint32_t)C : NPU_MAX_COLS, pmax = 4096 / cmax;
    pmax = pmax < 1 ? 1 : pmax > 128 ? 128 : pmax;
    enum { SLOTS = 8 }; /* one per load queue: eight tiles in flight */
    uint32_t slot[SLOTS], full[SLOTS], freed[SLOTS], prior = l->stores, tile = 0;
    if (!sbuf_tiles(l, SLOTS, NPU_MAX_COLS, slot)) return;
    for (uint32_t k = 0; k < SLOTS; k++) { full[k] = sem(l); freed[k] = sem(l); }
    for (uint64_t o = 0; o < outer; o++) {
        uint64_t rest = o, sbase = so, dbase = dso;
        for (int d = (int)r - 3; d >= 0; d--) { uint64_t i = rest % (uint64_t)d2[d]; rest /= (uint64_t)d2[d]; sbase += i * (uint64_t)s2[d]; dbase += i * (uint64_t)t2[d]; }
        for (uint64_t pt = 0; pt < ceil_div(P, pmax); pt++)
            for (uint64_t ct = 0; ct < ceil_div(C, NPU_MAX_COLS); ct++, tile++) {
                uint32_t sl = tile % SLOTS, use = tile / SLOTS, parts = ak_tile_extent(P, pmax, pt), cols = ak_tile_extent(C, NPU_MAX_COLS, ct);
                npu_insn *ld = dma(l, 0, src, sbase + pt * pmax * (uint64_t)s2[r - 2] + ct * NPU_MAX_COLS * (uint64_t)s2[r - 1], (uint32_t)s2[r - 2], (uint32_t)s2[r - 1], parts, cols, slot[sl], NPU_F32);
                ld->wait_sem[0] = freed[sl]; ld->wait_value[0] = use;
                ld->wait_sem[1] = l->done_sem; ld->wait_value[1] = prior;
                ld->signal_sem[0] = full[sl];
                npu_insn *st = dma(l, 1, dst, dbase + pt * pmax * (uint64_t)t2[r - 2] + ct * NPU_MAX_COLS * (uint64_t)t2[r - 1], (uint32_t)t2[r - 2], (uint32_t)t2[r - 1], parts, cols, slot[sl], NPU_F32);
                st->wait_sem[0] = full[sl]; st->wait_value[0] = use + 1;
                st->signal_sem[0] = freed[sl];
            }
    }
}

/* Row-major strides of a shape. */
static void contiguous_strides(const shape *s, int64_t *strides) {
    int64_t at = 1;
    for (int d = (int)s->rank - 1; d >= 0; d--) { strides[d] = at; at *= s->dims[d]; }
}

/* How many nodes read `name`, and whether it is a graph output. */
static size_t uses_of(const Kiln__Ir__Graph *g, const char *name, int *is_output) {
    size_t n = 0;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++) n += strcmp(g->nodes[i]->inputs[k], name) == 0;
    *is_output = 0;
    for (size_t i = 0; i < g->n_outputs; i++) *is_output |= strcmp(g->outputs[i]->name, name) == 0;
    return n;
}

/* The node after `i` that reads `name`, when it is the only reader and `name` is no graph output; else -1. */
static long sole_reader(const Kiln__Ir__Graph *g, size_t i, const char *name) {
    int out;
    if (uses_of(g, name, &out) != 1 || out) return -1;
    for (size_t j = i + 1; j < g->n_nodes; j++)
        for (size_t k = 0; k < g->nodes[j]->n_inputs; k++)
            if (strcmp(g->nodes[j]->inputs[k], name) == 0) return (long)j;
    return -1;
}

/* The tensor for node output `name`: the graph output of that name, or a new scratch tensor. */
static uint32_t result_tensor(lowering *l, const char *name, const shape *s) {
    uint32_t t = tensor_of(l, name);
    if (t != NPU_NONE) return t;
    return add_tensor(l, name, NPU_T_SCRATCH, s, NPU_F32, NULL, 0);
}

/* Lowers nodes [from, to) of g (shapes in `known`) into l's program on l's core: the fusion decisions go to `fused`
 * (shared by the segments of one batch slice, so that a node fused into an earlier segment is not lowered again);
 * node_first, when given, receives the index of each lowered node's first instruction. Returns NULL or an error
 * (l->failed reports the lowering's own failures). */
static kiln_plugin_error *lower_nodes(lowering *l, const Kiln__Ir__Graph *g, const shape_table *known_table, size_t from, size_t to, uint8_t *fused, uint32_t *node_first) {
    npu_program *p = l->p;
    uint32_t auto_cast = p->auto_cast;
    const shape_table known = *known_table;
    kiln_plugin_error *e = NULL;
    l->g = g;
    memset(l->named, 0, g->n_nodes + 1);
    size_t pending = SIZE_MAX; /* the node whose instructions start at `begin` and still need their layer */
    uint32_t begin = 0;
    for (size_t i = from; !l->failed && i <= to; i++) {
        if (pending != SIZE_MAX) { name_layer(l, pending, fused, begin); pending = SIZE_MAX; }
        if (i == to || fused[i]) continue;
        if (node_first) node_first[i] = p->insn_count;
        pending = i;
        begin = p->insn_count;
        const Kiln__Ir__Node *node = g->nodes[i];
        const char *op = node->op;
        shape out = lookup(g, &known, node->outputs[0]);
        if (strcmp(op, "MatMul") == 0 && !ak_initializer(g, node->inputs[1])) {
            /* a computed B: one lower_matmul per matrix of the batch, B read from device memory as it is ([K, N] rows) */
            shape xs = lookup(g, &known, node->inputs[0]), bs = lookup(g, &known, node->inputs[1]);
            uint32_t x = tensor_of(l, node->inputs[0]), w = tensor_of(l, node->inputs[1]);
            if (x == NPU_NONE || w == NPU_NONE) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: an input of MatMul '%s' is not an input or earlier result", node->outputs[0]); return e; }
            uint64_t K = (uint64_t)xs.dims[xs.rank - 1], N = (uint64_t)bs.dims[bs.rank - 1], batch = 1, M;
            if (bs.rank > 2) for (uint32_t d = 0; d + 2 < xs.rank; d++) batch *= (uint64_t)xs.dims[d];
            M = (uint64_t)count_of(&xs) / K / batch;
            const char *result = node->outputs[0];
            uint32_t func = NPU_FUNC_IDENTITY;
            long j = sole_reader(g, i, result);
            if (j >= 0 && func_of(g->nodes[j]) >= 0) { func = (uint32_t)func_of(g->nodes[j]); fused[j] = 1; result = g->nodes[j]->outputs[0]; }
            shape rs = lookup(g, &known, result);
            uint32_t y = result_tensor(l, result, &rs);
            for (uint64_t bi = 0; bi < batch && !l->failed; bi++)
                lower_matmul(l, x, w, NPU_NONE, func, 1.0f, y, M, K, N, bi * M * K, bi * M * N, 1, (uint32_t)N, bs.rank > 2 ? bi * K * N : 0, 0, 1, (uint32_t)K);
            continue;
        }
        if (strcmp(op, "MatMul") == 0 || strcmp(op, "Gemm") == 0) {
            int gemm = op[0] == 'G', trans_b = gemm && ak_int_attr(node, "transB", 0) != 0;
            shape xs = lookup(g, &known, node->inputs[0]);
            const Kiln__Ir__Tensor *wi = ak_initializer(g, node->inputs[1]);
            shape ws = ak_graph_shape(g, node->inputs[1], 0);
            uint64_t K = (uint64_t)xs.dims[xs.rank - 1], N = (uint64_t)out.dims[out.rank - 1], M = K ? (uint64_t)count_of(&xs) / K : 0;
            if (wi->raw.len != K * N * 4 || ws.rank != 2) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: %s weights do not match their shape", op); return e; }
            /* the weight layout: [K, N] row-major, transposed here when transB, rounded to bf16 when auto-cast */
            int cast = auto_cast >= NPU_CAST_MATMUL;
            uint8_t *data = malloc(K * N * (cast ? 2 : 4) + 1);
            if (!data) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
            for (uint64_t k = 0; k < K; k++)
                for (uint64_t n = 0; n < N; n++) {
                    float v;
                    memcpy(&v, wi->raw.data + 4 * (trans_b ? n * K + k : k * N + n), 4);
                    if (cast) { uint16_t h = ak_bf16_from_f32(v); memcpy(data + 2 * (k * N + n), &h, 2); }
                    else memcpy(data + 4 * (k * N + n), &v, 4);
                }
            shape kn = {F32, 1, 2, {(int64_t)K, (int64_t)N}};
            uint32_t w = l->node_const[i] != NPU_NONE ? l->node_const[i] : add_tensor(l, NULL, NPU_T_CONST, &kn, cast ? NPU_BF16 : NPU_F32, data, K * N * (cast ? 2 : 4));
            if (l->node_const[i] == w) free(data);
            l->node_const[i] = w;
            uint32_t bias = NPU_NONE, func = NPU_FUNC_IDENTITY;
            float alpha = gemm ? ak_float_attr(node, "alpha", 1.0f) : 1.0f, beta = gemm ? ak_float_attr(node, "beta", 1.0f) : 1.0f;
            if (gemm && node->n_inputs == 3) {
                /* beta·C folded into the bias at compile time (rounded to fp32 as the reference does) */
                const Kiln__Ir__Tensor *ci = ak_initializer(g, node->inputs[2]);
                if (!ci || ci->data_case != KILN__IR__TENSOR__DATA_RAW || ci->raw.len != N * 4) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: Gemm C does not match N"); return e; }
                float *c = malloc(N * 4 + 4);
                if (!c) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
                for (uint64_t n = 0; n < N; n++) { float v; memcpy(&v, ci->raw.data + 4 * n, 4); c[n] = beta * v; }
                shape cs = {F32, 1, 1, {(int64_t)N}};
                bias = add_tensor(l, NULL, NPU_T_CONST, &cs, NPU_F32, (uint8_t *)c, N * 4);
            }
            const char *result = node->outputs[0];
            long j = sole_reader(g, i, result);
            /* fuse a following Add of a constant [N] row (when there is no bias yet), then an activation */
            if (j >= 0 && bias == NPU_NONE && strcmp(g->nodes[j]->op, "Add") == 0) {
                const Kiln__Ir__Node *add = g->nodes[j];
                const char *other = strcmp(add->inputs[0], result) == 0 ? add->inputs[1] : add->inputs[0];
                shape os = ak_graph_shape(g, other, 0);
                if (ak_initializer(g, other) && os.known && os.rank == 1 && (uint64_t)os.dims[0] == N && strcmp(add->inputs[0], add->inputs[1]) != 0) {
                    bias = constant_tensor(l, other);
                    fused[j] = 1;
                    result = add->outputs[0];
                    j = sole_reader(g, (size_t)j, result);
                }
            }
            if (j >= 0 && func_of(g->nodes[j]) >= 0) {
                func = (uint32_t)func_of(g->nodes[j]);
                fused[j] = 1;
                result = g->nodes[j]->outputs[0];
            }
            uint32_t x = tensor_of(l, node->inputs[0]);
            if (x == NPU_NONE) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: '%s' is not an input or earlier result", node->inputs[0]); return e; }
            shape rs = lookup(g, &known, result);
            uint32_t y = result_tensor(l, result, &rs);
            if (!l->failed) lower_matmul(l, x, w, bias, func, alpha, y, M, K, N, 0, 0, 1, (uint32_t)N, 0, 0, 1, (uint32_t)K);
            continue;
        }
        if (strcmp(op, "Resize") == 0 || strcmp(op, "ConvTranspose") == 0) {
            shape xs = lookup(g, &known, node->inputs[0]);
            uint32_t x = tensor_of(l, node->inputs[0]);
            if (x == NPU_NONE) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: '%s' is not an input or earlier result", node->inputs[0]); return e; }
            uint64_t N = (uint64_t)xs.dims[0], C = (uint64_t)xs.dims[1], H = (uint64_t)xs.dims[2], W = (uint64_t)xs.dims[3], hw = H * W;
            if (op[0] == 'R') {
                /* out[nc, y·sh + ky, x·sw + kx] = in[nc, y, x]: one strided copy, the sh·sw phases outermost, rows of W */
                uint32_t y = result_tensor(l, node->outputs[0], &out);
                int64_t sh = out.dims[2] / xs.dims[2], sw = out.dims[3] / xs.dims[3], OW = out.dims[3];
                int64_t dims[4] = {sh, sw, (int64_t)(N * C * H), (int64_t)W}, ss[4] = {0, 0, (int64_t)W, 1}, ds[4] = {OW, 1, sh * OW, sw};
                if (!l->failed) lower_copy(l, x, 0, ss, y, 0, ds, dims, 4);
                continue;
            }
            /* ConvTranspose, stride = kernel: U[(o, ky, kx)][n·H·W + p] = Σc W[c][o, ky, kx]·x[n, c, p] (+ bias, activation) by
             * TensorE from the image in place, then each (o, ky, kx) plane scattered to out[n, o, y·kh + ky, x·kw + kx] */
            shape ws = ak_graph_shape(g, node->inputs[1], 0);
            const Kiln__Ir__Tensor *wi = ak_initializer(g, node->inputs[1]);
            uint64_t O = (uint64_t)ws.dims[1], kh = (uint64_t)ws.dims[2], kw = (uint64_t)ws.dims[3], J = O * kh * kw;
            int cast = auto_cast >= NPU_CAST_MATMUL;
            uint8_t *data = malloc(C * J * (cast ? 2 : 4) + 1);
            if (!data) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
            for (uint64_t k = 0; k < C * J; k++) { /* [C, O, KH, KW] is already [K = C, N = O·KH·KW] */
                float v;
                memcpy(&v, wi->raw.data + 4 * k, 4);
                if (cast) { uint16_t h = ak_bf16_from_f32(v); memcpy(data + 2 * k, &h, 2); }
                else memcpy(data + 4 * k, &v, 4);
            }
            shape kn = {F32, 1, 2, {(int64_t)C, (int64_t)J}};
            uint32_t wt = l->node_const[i] != NPU_NONE ? l->node_const[i] : add_tensor(l, NULL, NPU_T_CONST, &kn, cast ? NPU_BF16 : NPU_F32, data, C * J * (cast ? 2 : 4));
            if (l->node_const[i] == wt) free(data);
            l->node_const[i] = wt;
            uint32_t bias = NPU_NONE, func = NPU_FUNC_IDENTITY;
            if (node->n_inputs == 3 && node->inputs[2][0]) { /* one value per output channel, repeated for its KH·KW columns */
                const Kiln__Ir__Tensor *bi = ak_initializer(g, node->inputs[2]);
                float *b = malloc(J * 4 + 4);
                if (!b) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
                for (uint64_t j = 0; j < J; j++) memcpy(b + j, bi->raw.data + 4 * (j / (kh * kw)), 4);
                shape bs = {F32, 1, 1, {(int64_t)J}};
                bias = add_tensor(l, NULL, NPU_T_CONST, &bs, NPU_F32, (uint8_t *)b, J * 4);
            }
            const char *result = node->outputs[0];
            long j = sole_reader(g, i, result);
            if (j >= 0 && func_of(g->nodes[j]) >= 0) { func = (uint32_t)func_of(g->nodes[j]); fused[j] = 1; result = g->nodes[j]->outputs[0]; }
            shape rs = lookup(g, &known, result), us = {F32, 1, 2, {(int64_t)J, (int64_t)(N * hw)}};
            uint32_t y = result_tensor(l, result, &rs), u = add_tensor(l, NULL, NPU_T_SCRATCH, &us, NPU_F32, NULL, 0);
            for (uint64_t n = 0; n < N && !l->failed; n++)
                lower_matmul(l, x, wt, bias, func, 1.0f, u, hw, C, J, n * C * hw, n * hw, (uint32_t)(N * hw), 1, 0, 0, (uint32_t)hw, 1);
            int64_t OH = (int64_t)(H * kh), OW = (int64_t)(W * kw), NHW = (int64_t)(N * hw);
            int64_t dims[6] = {(int64_t)N, (int64_t)O, (int64_t)kh, (int64_t)kw, (int64_t)H, (int64_t)W};
            int64_t ss[6] = {(int64_t)hw, (int64_t)(kh * kw) * NHW, (int64_t)kw * NHW, NHW, (int64_t)W, 1};
            int64_t ds[6] = {(int64_t)O * OH * OW, OH * OW, OW, 1, (int64_t)kh * OW, (int64_t)kw};
            if (!l->failed) lower_copy(l, u, 0, ss, y, 0, ds, dims, 6);
            continue;
        }
        if (strcmp(op, "Conv") == 0 || strcmp(op, "MaxPool") == 0 || strcmp(op, "AveragePool") == 0 || strcmp(op, "GlobalAveragePool") == 0 ||
            strcmp(op, "Softmax") == 0 || strcmp(op, "LayerNormalization") == 0) {
            shape xs = lookup(g, &known, node->inputs[0]);
            uint32_t x = tensor_of(l, node->inputs[0]);
            if (x == NPU_NONE) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: '%s' is not an input or earlier result", node->inputs[0]); return e; }
            const char *result = node->outputs[0];
            uint64_t C = (uint64_t)xs.dims[xs.rank - 1], total = (uint64_t)count_of(&xs);
            if (op[0] == 'S') { uint32_t y = result_tensor(l, result, &out); if (!l->failed) lower_softmax(l, x, y, total / C, (uint32_t)C); continue; }
            if (op[0] == 'L') {
                uint32_t sc = constant_tensor(l, node->inputs[1]), b = node->n_inputs > 2 && node->inputs[2][0] ? constant_tensor(l, node->inputs[2]) : NPU_NONE;
                uint32_t y = result_tensor(l, result, &out);
                if (!l->failed) lower_layernorm(l, x, sc, b, ak_float_attr(node, "epsilon", 1e-5f), y, total / C, (uint32_t)C);
                continue;
            }
            if (op[0] == 'G') { uint32_t y = result_tensor(l, result, &out); if (!l->failed) lower_global_average(l, x, y, (uint64_t)(xs.dims[0] * xs.dims[1]), (uint64_t)(xs.dims[2] * xs.dims[3])); continue; }
            window w;
            char why[640];
            if (op[0] == 'C') {
                shape ws = ak_graph_shape(g, node->inputs[1], 0);
                if (window_of(node, &xs, ws.dims[2], ws.dims[3], 1, &w, why, sizeof why)) { e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: %s", why); return e; }
                uint64_t G = (uint64_t)ak_int_attr(node, "group", 1);
                if (G != 1 && G == w.C) {
                    /* depthwise: the tap table [N·C, KH·KW + 1], weights then bias */
                    uint64_t T = (uint64_t)w.kh * w.kw, rows = w.N * w.C;
                    const Kiln__Ir__Tensor *wi = ak_initializer(g, node->inputs[1]);
                    const Kiln__Ir__Tensor *bi = node->n_inputs > 2 && node->inputs[2][0] ? ak_initializer(g, node->inputs[2]) : NULL;
                    float *table = calloc(rows * (T + 1) + 1, 4);
                    if (!table) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
                    for (uint64_t r = 0; r < rows; r++) {
                        uint64_t c = r % w.C;
                        memcpy(table + r * (T + 1), wi->raw.data + 4 * c * T, 4 * T);
                        if (bi) memcpy(table + r * (T + 1) + T, bi->raw.data + 4 * c, 4);
                    }
                    shape ts = {F32, 1, 2, {(int64_t)rows, (int64_t)(T + 1)}};
                    int cached = l->node_const[i] != NPU_NONE && l->node_const_key[i] == rows;
                    uint32_t tt = cached ? l->node_const[i] : add_tensor(l, NULL, NPU_T_CONST, &ts, NPU_F32, (uint8_t *)table, rows * (T + 1) * 4);
                    if (cached) free(table);
                    l->node_const[i] = tt; l->node_const_key[i] = rows;
                    uint32_t func = NPU_FUNC_IDENTITY;
                    long j = sole_reader(g, i, result);
                    if (j >= 0 && func_of(g->nodes[j]) >= 0) { func = (uint32_t)func_of(g->nodes[j]); fused[j] = 1; result = g->nodes[j]->outputs[0]; }
                    shape rs = lookup(g, &known, result);
                    uint32_t y = result_tensor(l, result, &rs);
                    if (!l->failed) lower_depthwise(l, x, tt, func, y, &w);
                    continue;
                }
                uint64_t O = (uint64_t)ws.dims[0], C = w.C, Og = O / G, K = C / G * w.kh * w.kw;
                const Kiln__Ir__Tensor *wi = ak_initializer(g, node->inputs[1]);
                int cast = auto_cast >= NPU_CAST_MATMUL;
                uint8_t *data = malloc(K * O * (cast ? 2 : 4) + 1);
                if (!data) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
                for (uint64_t gi = 0; gi < G; gi++) /* [O, C/G·KH·KW] -> per group [K, O/G], the groups one after another */
                    for (uint64_t k = 0; k < K; k++)
                        for (uint64_t o = 0; o < Og; o++) {
                            float v;
                            uint64_t at = gi * K * Og + k * Og + o;
                            memcpy(&v, wi->raw.data + 4 * ((gi * Og + o) * K + k), 4);
                            if (cast) { uint16_t h = ak_bf16_from_f32(v); memcpy(data + 2 * at, &h, 2); }
                            else memcpy(data + 4 * at, &v, 4);
                        }
                shape ko = {F32, 1, 2, {(int64_t)(G * K), (int64_t)Og}};
                uint32_t wt = l->node_const[i] != NPU_NONE ? l->node_const[i] : add_tensor(l, NULL, NPU_T_CONST, &ko, cast ? NPU_BF16 : NPU_F32, data, K * O * (cast ? 2 : 4));
                if (l->node_const[i] == wt) free(data);
                l->node_const[i] = wt;
                uint32_t bias = node->n_inputs > 2 && node->inputs[2][0] ? constant_tensor(l, node->inputs[2]) : NPU_NONE, func = NPU_FUNC_IDENTITY;
                long j = sole_reader(g, i, result);
                if (j >= 0 && func_of(g->nodes[j]) >= 0) { func = (uint32_t)func_of(g->nodes[j]); fused[j] = 1; result = g->nodes[j]->outputs[0]; }
                shape rs = lookup(g, &known, result);
                uint32_t y = result_tensor(l, result, &rs);
                window wg = w;
                wg.C = C / G;
                for (uint64_t gi = 0; gi < G && !l->failed; gi++) lower_conv(l, x, wt, bias, func, y, &wg, Og, gi * (C / G), C, gi * Og, O, gi * K * Og, gi * Og);
                continue;
            }
            if (window_of(node, &xs, 0, 0, op[0] == 'M', &w, why, sizeof why)) { e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: %s", why); return e; }
            uint32_t y = result_tensor(l, result, &out);
            if (!l->failed) lower_pool(l, x, y, &w, op[0] == 'A', ak_int_attr(node, "count_include_pad", 0) != 0);
            continue;
        }
        if (strcmp(op, "Transpose") == 0 || strcmp(op, "Reshape") == 0 || strcmp(op, "Flatten") == 0 || strcmp(op, "Concat") == 0) {
            uint32_t y = result_tensor(l, node->outputs[0], &out);
            int64_t ys[NPU_MAX_RANK];
            contiguous_strides(&out, ys);
            uint64_t at = 0; /* Concat: where along the axis the next input goes */
            int64_t axis = op[0] == 'C' ? ak_int_attr(node, "axis", 0) : 0;
            if (axis < 0) axis += out.rank;
            for (size_t k = 0; k < (op[0] == 'C' ? node->n_inputs : 1) && !l->failed; k++) {
                uint32_t x = tensor_of(l, node->inputs[k]);
                if (x == NPU_NONE) x = constant_tensor(l, node->inputs[k]);
                if (l->failed) break;
                shape xs = l->tensor_shapes[x];
                int64_t xstr[NPU_MAX_RANK];
                contiguous_strides(&xs, xstr);
                if (op[0] == 'T') { /* out[i] = x[perm applied]: the source strides permuted */
                    int64_t perm[NPU_MAX_RANK], ps[NPU_MAX_RANK];
                    for (uint32_t d = 0; d < xs.rank; d++) perm[d] = xs.rank - 1 - d;
                    if (ak_attribute(node, "perm")) ints_attr(node, "perm", xs.rank, 0, xs.rank - 1, 0, perm);
                    for (uint32_t d = 0; d < xs.rank; d++) ps[d] = xstr[perm[d]];
                    lower_copy(l, x, 0, ps, y, 0, ys, out.dims, out.rank);
                } else if (op[0] == 'C') { /* x into its slice of the axis */
                    lower_copy(l, x, 0, xstr, y, at * (uint64_t)ys[axis], ys, xs.dims, xs.rank);
                    at += (uint64_t)xs.dims[axis];
                } else { /* Reshape, Flatten: the same elements in the same order, as [count / cols, cols] with cols the
                          * largest divisor of the count up to 512 (few, wide tiles whatever the shapes say) */
                    int64_t count = count_of(&out), cols = NPU_MAX_COLS;
                    while (count % cols) cols--;
                    int64_t flat[2] = {count / cols, cols}, fs[2] = {cols, 1};
                    lower_copy(l, x, 0, fs, y, 0, fs, flat, 2);
                }
            }
            continue;
        }
        if (strcmp(op, "BatchNormalization") == 0) {
            /* y = x·s[c] + t[c] with s = scale / sqrt(var + epsilon), t = B - mean·s (in double, rounded once), as two
             * VectorE passes with a per-row operand each */
            shape xs = lookup(g, &known, node->inputs[0]);
            uint32_t x = tensor_of(l, node->inputs[0]);
            if (x == NPU_NONE) { e = ak_error(KILN_ERROR_INVALID_MODEL, "compile: '%s' is not an input or earlier result", node->inputs[0]); return e; }
            uint64_t C = (uint64_t)xs.dims[1];
            float *sv = malloc(C * 4 + 4), *tv = malloc(C * 4 + 4);
            if (!sv || !tv) { free(sv); free(tv); e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); return e; }
            double eps = ak_float_attr(node, "epsilon", 1e-5f);
            for (uint64_t c = 0; c < C; c++) {
                float p[4];
                for (int k = 0; k < 4; k++) memcpy(&p[k], ak_initializer(g, node->inputs[k + 1])->raw.data + 4 * c, 4);
                double sc = (double)p[0] / sqrt((double)p[3] + eps);
                sv[c] = (float)sc;
                tv[c] = (float)((double)p[1] - (double)p[2] * sc);
            }
            shape cs = xs;
            for (uint32_t d = 0; d < cs.rank; d++) cs.dims[d] = d == 1 ? (int64_t)C : 1;
            uint32_t st = add_tensor(l, NULL, NPU_T_CONST, &cs, NPU_F32, (uint8_t *)sv, C * 4), tt = add_tensor(l, NULL, NPU_T_CONST, &cs, NPU_F32, (uint8_t *)tv, C * 4);
            uint32_t scaled = add_tensor(l, NULL, NPU_T_SCRATCH, &xs, NPU_F32, NULL, 0), y = result_tensor(l, node->outputs[0], &out);
            ew_view v;
            shape vs;
            ew_step mul = {1, EW_B, NPU_ALU_MUL, 1.0f, 0, 0.0f}, add = {1, EW_B, NPU_ALU_ADD, 1.0f, 0, 0.0f};
            if (!l->failed && !broadcast_view(&xs, &cs, &vs, &v)) {
                lower_elementwise(l, x, st, &v, &mul, 1, scaled);
                lower_elementwise(l, scaled, tt, &v, &add, 1, y);
            }
            continue;
        }
        /* elementwise: one op's passes (ew_step) over the tiles of its broadcast view */
        uint32_t a = tensor_of(l, node->inputs[0]);
        if (a == NPU_NONE) a = constant_tensor(l, node->inputs[0]);
        int alu = alu_of(op), f = func_of(node);
        uint32_t b = NPU_NONE;
        if (alu >= 0) { b = tensor_of(l, node->inputs[1]); if (b == NPU_NONE) b = constant_tensor(l, node->inputs[1]); }
        if (l->failed) return NULL;
        ew_step steps[4];
        uint32_t nsteps = 0;
        ew_view v;
        shape vs;
        if (broadcast_view(&l->tensor_shapes[a], &l->tensor_shapes[b != NPU_NONE ? b : a], &vs, &v)) { l->failed = 2; return NULL; }
        if (alu >= 0) {
            steps[nsteps++] = (ew_step){1, EW_B, (uint32_t)alu, 1.0f, 0, 0.0f};
            if (ew_per_row(&v, 0)) { /* VectorE's per-row operand is its second: swap (a - b = -(b - a), exactly) */
                uint32_t t = a; a = b; b = t;
                for (uint32_t d = 0; d < v.rank; d++) { int64_t s0 = v.stride[0][d]; v.stride[0][d] = v.stride[1][d]; v.stride[1][d] = s0; }
                if (alu == NPU_ALU_SUB) steps[nsteps++] = (ew_step){0, 0, NPU_FUNC_IDENTITY, -1.0f, 0, 0.0f};
            }
        } else if (f >= 0) steps[nsteps++] = (ew_step){0, 0, (uint32_t)f, 1.0f, 0, 0.0f};
        else if (strcmp(op, "Clip") == 0) { /* max(x, lo), then min(·, hi); an absent bound is no pass */
            float lo = clip_bound(g, node, 1), hi = clip_bound(g, node, 2);
            if (lo != -INFINITY) steps[nsteps++] = (ew_step){1, EW_CONST, NPU_ALU_MAX, 1.0f, 0, lo};
            if (hi != INFINITY) steps[nsteps++] = (ew_step){1, EW_CONST, NPU_ALU_MIN, 1.0f, 0, hi};
            if (!nsteps) steps[nsteps++] = (ew_step){0, 0, NPU_FUNC_IDENTITY, 1.0f, 0, 0.0f};
        } else if (strcmp(op, "LeakyRelu") == 0) { /* α·x on ScalarE, then max(α·x, x) (min when α > 1) */
            float alpha = ak_float_attr(node, "alpha", 0.01f);
            steps[nsteps++] = (ew_step){0, 0, NPU_FUNC_IDENTITY, alpha, 0, 0.0f};
            steps[nsteps++] = (ew_step){1, EW_X, alpha > 1.0f ? NPU_ALU_MIN : NPU_ALU_MAX, 1.0f, 0, 0.0f};
        } else { /* HardSigmoid: min(max(α·x + β, 0), 1); HardSwish: x times that with α = 1/6, β = 1/2 */
            int swish = strcmp(op, "HardSwish") == 0;
            float alpha = swish ? 1.0f / 6.0f : ak_float_attr(node, "alpha", 0.2f), beta = swish ? 0.5f : ak_float_attr(node, "beta", 0.5f);
            steps[nsteps++] = (ew_step){0, 0, NPU_FUNC_IDENTITY, alpha, 1, beta};
            steps[nsteps++] = (ew_step){1, EW_CONST, NPU_ALU_MAX, 1.0f, 0, 0.0f};
            steps[nsteps++] = (ew_step){1, EW_CONST, NPU_ALU_MIN, 1.0f, 0, 1.0f};
            if (swish) steps[nsteps++] = (ew_step){1, EW_X, NPU_ALU_MUL, 1.0f, 0, 0.0f};
        }
        uint32_t y = result_tensor(l, node->outputs[0], &out);
        if (!l->failed) lower_elementwise(l, a, b, &v, steps, nsteps, y);
    }
    return NULL;
}

/* The shapes of every node's result in g (every node claimed), into known (allocated by the caller for
 * g->n_nodes entries). Returns NULL or an error. */
static kiln_plugin_error *infer_shapes(const Kiln__Ir__Graph *g, shape_table *known) {
    known->count = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        shape out;
        char why[640];
        if (rejects(g, known, g->nodes[i], &out, why, sizeof why)) return ak_error(KILN_ERROR_UNSUPPORTED, "compile: node %zu (%s): %s", i, g->nodes[i]->op, why);
        known->names[known->count] = g->nodes[i]->outputs[0];
        known->shapes[known->count++] = out;
    }
    return NULL;
}

/* Sets dim 0 of every graph input to n, keeping the old values in saved (or, with n < 0, puts saved back). */
static void set_batch(Kiln__Ir__Graph *g, int64_t n, int64_t *saved) {
    for (size_t i = 0; i < g->n_inputs; i++) {
        Kiln__Ir__Type *t = g->inputs[i]->type;
        if (!t || t->value_case != KILN__IR__TYPE__VALUE_TENSOR || !t->tensor || !t->tensor->n_dims || !t->tensor->dims[0]) continue;
        if (n >= 0) { saved[i] = t->tensor->dims[0]->fixed; t->tensor->dims[0]->fixed = n; }
        else t->tensor->dims[0]->fixed = saved[i];
    }
}

/* Per core: the lowering counters that belong to its instruction streams. */
typedef struct core_state { uint32_t done_sem, stores, load_queue, store_queue; } core_state;

/* Makes `core` the core of the instructions emitted from now on (its counters in l, the other's kept in cs). */
static void switch_core(lowering *l, core_state *cs, uint32_t core) {
    cs[l->core] = (core_state){l->done_sem, l->stores, l->load_queue, l->store_queue};
    l->core = core;
    l->done_sem = cs[core].done_sem; l->stores = cs[core].stores; l->load_queue = cs[core].load_queue; l->store_queue = cs[core].store_queue;
}

/* Opens a new scope holding views of rows [b0, b0 + nb) of dim 0 of every graph input and output, under their names. */
static void slice_scope(lowering *l, const Kiln__Ir__Graph *g, uint64_t b0, uint64_t nb) {
    npu_program *p = l->p;
    l->scope = p->tensor_count;
    for (uint32_t k = 0; k < p->input_count + p->output_count; k++) {
        uint32_t full = k < p->input_count ? p->inputs[k] : p->outputs[k - p->input_count];
        const char *name = k < p->input_count ? g->inputs[k]->name : g->outputs[k - p->input_count]->name;
        shape s = l->tensor_shapes[full];
        uint64_t per = p->tensors[full].elements / (uint64_t)s.dims[0];
        s.dims[0] = (int64_t)nb;
        uint32_t v = add_tensor(l, name, NPU_T_VIEW, &s, NPU_F32, NULL, 0);
        if (l->failed) return;
        p->tensors[v].base = full;
        p->tensors[v].offset = b0 * per;
    }
}

static kiln_plugin_error *lower(Kiln__Ir__Graph *g, uint32_t auto_cast, uint32_t cores, int pipeline, npu_program *p, uint32_t *node_first, size_t *split_at);

/* Whether every node keeps dim 0 as the batch, rows of it independent of each other (so that slices of it can be
 * computed apart): the compute ops do; a Transpose moving axis 0, a Concat or Flatten along axis 0, and a Reshape
 * that changes dim 0 do not. `known`: the full batch's shapes. */
static int batch_splittable(const Kiln__Ir__Graph *g, const shape_table *known) {
    for (size_t i = 0; i < g->n_nodes; i++) {
        const Kiln__Ir__Node *n = g->nodes[i];
        shape x = lookup(g, known, n->inputs[0]), y = lookup(g, known, n->outputs[0]);
        if (strcmp(n->op, "Transpose") == 0) {
            int64_t perm0 = x.rank - 1;
            const Kiln__Ir__Attribute *a = ak_attribute(n, "perm");
            if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_INTS && a->ints && a->ints->n_values) perm0 = a->ints->values[0];
            if (perm0 != 0) return 0;
        }
        if (strcmp(n->op, "Concat") == 0 && (ak_int_attr(n, "axis", 0) == 0 || ak_int_attr(n, "axis", 0) == -(int64_t)x.rank)) return 0;
        if (strcmp(n->op, "Flatten") == 0 && (ak_int_attr(n, "axis", 1) == 0 || ak_int_attr(n, "axis", 1) == -(int64_t)x.rank)) return 0;
        if (strcmp(n->op, "Reshape") == 0 && (!y.rank || !x.rank || y.dims[0] != x.dims[0])) return 0;
    }
    return 1;
}

/* The pipeline's stage boundary: lowers one image on one core, runs the cycle model over it, and returns the
 * node at which the second stage starts — the lowered node k (not fused into an earlier one) that best balances
 * the simulated time up to k against the time from k on (ops run one after another on a core) — or
 * g->n_nodes when fewer than two nodes are lowered. */
static kiln_plugin_error *pipeline_split(Kiln__Ir__Graph *g, uint32_t auto_cast, size_t *split) {
    *split = g->n_nodes;
    int64_t *saved = calloc(g->n_inputs + 1, sizeof(int64_t));
    uint32_t *first = malloc((g->n_nodes + 1) * sizeof(uint32_t));
    if (!saved || !first) { free(saved); free(first); return ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); }
    for (size_t i = 0; i <= g->n_nodes; i++) first[i] = NPU_NONE;
    set_batch(g, 1, saved);
    npu_program one;
    kiln_plugin_error *e = lower(g, auto_cast, 1, 0, &one, first, NULL);
    set_batch(g, -1, saved);
    free(saved);
    if (e) { free(first); return e; }
    ak_op *ops = calloc((size_t)one.insn_count + 1, sizeof(ak_op));
    ak_report r = {0};
    char why[256];
    if (!ops) e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory");
    for (uint32_t i = 0; !e && i < one.insn_count; i++) ops[i] = model_op(&one.insns[i], 0);
    if (!e && ak_simulate(engines, ENGINE_COUNT, ops, one.insn_count, one.semaphore_count, &r, why, sizeof why))
        e = ak_error(KILN_ERROR_INTERNAL, "compile: the one-core program of the pipeline cannot run: %s", why);
    if (!e) {
        uint64_t done = 0, best = UINT64_MAX;
        for (size_t i = 0; i < g->n_nodes; i++) {
            if (first[i] == NPU_NONE) continue;
            if (i > 0 && done > 0) { /* the stage boundary before node i: stage 1 took `done` */
                uint64_t worse = done > r.total_ps - done ? done : r.total_ps - done;
                if (worse < best) { best = worse; *split = i; }
            }
            size_t next = one.insn_count;
            for (size_t j = i + 1; j < g->n_nodes; j++) if (first[j] != NPU_NONE) { next = first[j]; break; }
            for (size_t k = first[i]; k < next; k++) done = r.end_ps[k] > done ? r.end_ps[k] : done;
        }
    }
    ak_report_free(&r);
    free(ops);
    free(first);
    npu_program_free(&one);
    return e;
}

/* Builds the program of `g` (every node claimed) for `cores` cores. With one core every node is lowered once,
 * over the whole batch. With two, dim 0 of every graph input and output is the batch: placement batch gives each
 * core half of it (⌈N/2⌉ and ⌊N/2⌋ rows, each core's instructions reading and writing views of those rows);
 * placement pipeline splits the nodes into two stages at pipeline_split's node and streams the N images through
 * them one by one: core 0 runs stage 1 of image i + 1 while core 1 runs stage 2 of image i, after a bridge (one
 * DMA on core 1 that waits for core 0's stores of image i). node_first (one core only): each lowered node's
 * first instruction. split_at, when given, receives the pipeline's stage boundary. Returns NULL or an error. */
static kiln_plugin_error *lower(Kiln__Ir__Graph *g, uint32_t auto_cast, uint32_t cores, int pipeline, npu_program *p, uint32_t *node_first, size_t *split_at) {
    memset(p, 0, sizeof *p);
    p->auto_cast = auto_cast;
    p->cores = cores;
    lowering l = {.g = g, .p = p};
    l.done_sem = sem(&l);
    kiln_plugin_error *e = NULL;
    uint8_t *fused = calloc(g->n_nodes + 1, 1);
    l.named = calloc(g->n_nodes + 1, 1);
    shape_table known = {calloc(g->n_nodes + 1, sizeof(char *)), calloc(g->n_nodes + 1, sizeof(shape)), 0};
    shape_table slice = {calloc(g->n_nodes + 1, sizeof(char *)), calloc(g->n_nodes + 1, sizeof(shape)), 0};
    int64_t *saved = calloc(g->n_inputs + 1, sizeof(int64_t));
    l.node_const = malloc((g->n_nodes + 1) * sizeof(uint32_t));
    l.node_const_key = calloc(g->n_nodes + 1, sizeof(uint64_t));
    for (size_t i = 0; l.node_const && i <= g->n_nodes; i++) l.node_const[i] = NPU_NONE;
    p->inputs = calloc(g->n_inputs + 1, sizeof(uint32_t));
    p->outputs = calloc(g->n_outputs + 1, sizeof(uint32_t));
    if (!fused || !l.named || !known.names || !known.shapes || !slice.names || !slice.shapes || !saved || !l.node_const || !l.node_const_key || !p->inputs || !p->outputs) { e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); goto done; }
    for (size_t i = 0; i < g->n_inputs; i++) {
        shape s = ak_graph_shape(g, g->inputs[i]->name, 0);
        if (s.dtype != F32 || !s.known || count_of(&s) < 0) { e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: graph input '%s' is not a float32 tensor of known shape", g->inputs[i]->name); goto done; }
        p->inputs[p->input_count++] = add_tensor(&l, g->inputs[i]->name, NPU_T_INPUT, &s, NPU_F32, NULL, 0);
    }
    /* graph outputs: shapes follow from the claimed nodes */
    if ((e = infer_shapes(g, &known))) goto done;
    for (size_t i = 0; i < g->n_outputs; i++) {
        const char *name = g->outputs[i]->name;
        int produced = 0;
        for (size_t j = 0; j < g->n_nodes; j++) produced |= strcmp(g->nodes[j]->outputs[0], name) == 0;
        if (!produced || tensor_of(&l, name) != NPU_NONE) { e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: graph output '%s' is not computed by a node (or is listed twice)", name); goto done; }
        shape s = lookup(g, &known, name);
        p->outputs[p->output_count++] = add_tensor(&l, name, NPU_T_OUTPUT, &s, NPU_F32, NULL, 0);
    }
    if (cores == 1) {
        e = lower_nodes(&l, g, &known, 0, g->n_nodes, fused, node_first);
    } else {
        /* dim 0 of every input and output is the batch the cores share */
        int64_t N = p->input_count ? l.tensor_shapes[p->inputs[0]].dims[0] : 0;
        for (uint32_t k = 0; k < p->input_count + p->output_count; k++) {
            const shape *s = &l.tensor_shapes[k < p->input_count ? p->inputs[k] : p->outputs[k - p->input_count]];
            if (s->rank < 1 || s->dims[0] != N) N = 0;
        }
        if (N >= 1 && !batch_splittable(g, &known)) N = 0;
        for (int half = 0; N >= 1 && half < 2; half++) { /* every slice's shapes must follow (a Reshape's fixed shape may not) */
            int64_t nb = pipeline ? 1 : half == 0 ? (N + 1) / 2 : N / 2;
            if (nb < 1) continue;
            set_batch(g, nb, saved);
            slice.count = 0;
            for (size_t i = 0; i < g->n_nodes && N >= 1; i++) { /* infer_shapes without an error (the host owns errors) */
                shape o;
                char why[640];
                if (rejects(g, &slice, g->nodes[i], &o, why, sizeof why)) N = 0;
                else { slice.names[slice.count] = g->nodes[i]->outputs[0]; slice.shapes[slice.count++] = o; }
            }
            set_batch(g, -1, saved);
        }
        if (N < 1) {
            /* nothing to split: the program runs on core 0 alone (a model cut into several NPU programs may have one) */
            ak_log_debug("npu-nc2: cores=2, but the graph's inputs and outputs do not share a dim 0 (the batch) its nodes keep: this program runs on one core");
            p->cores = 1;
            e = lower_nodes(&l, g, &known, 0, g->n_nodes, fused, node_first);
            goto lowered;
        }
        core_state cs[2] = {{l.done_sem, 0, 0, 0}, {sem(&l), 0, 0, 0}};
        size_t split = g->n_nodes;
        if (pipeline && (e = pipeline_split(g, auto_cast, &split))) goto done;
        if (split_at) *split_at = split;
        shape bs = {F32, 1, 1, {1}};
        uint32_t barrier = pipeline ? add_tensor(&l, NULL, NPU_T_SCRATCH, &bs, NPU_F32, NULL, 0) : 0;
        uint64_t slices = pipeline ? (uint64_t)N : 2;
        for (uint64_t k = 0; k < slices && !e && !l.failed; k++) {
            uint64_t b0 = pipeline ? k : k == 0 ? 0 : (uint64_t)(N + 1) / 2, nb = pipeline ? 1 : k == 0 ? (uint64_t)(N + 1) / 2 : (uint64_t)N / 2;
            if (nb == 0) continue;
            /* the graph's inputs say nb rows while this slice is lowered (their shapes are read from the graph) */
            set_batch(g, (int64_t)nb, saved);
            e = infer_shapes(g, &slice);
            if (!e) {
                slice_scope(&l, g, b0, nb);
                memset(fused, 0, g->n_nodes + 1);
                switch_core(&l, cs, pipeline ? 0 : (uint32_t)k);
                if (!l.failed) e = lower_nodes(&l, g, &slice, 0, split, fused, NULL);
            }
            if (!e && !l.failed && pipeline && split < g->n_nodes) {
                uint32_t stage1_stores = l.stores;
                switch_core(&l, cs, 1);
                /* The bridge counts as one of core 1's stores, and an op's loads trust that count to mean "every store
                 * before me is done": so it also waits for core 1's earlier stores (image i - 1's stage 2), or it
                 * could complete first and let an op of that stage read a result not yet stored. */
                uint32_t stage2_stores = l.stores;
                npu_insn *bridge = dma(&l, 1, barrier, 0, 0, 0, 1, 1, 0, NPU_F32);
                bridge->wait_sem[0] = cs[0].done_sem; bridge->wait_value[0] = stage1_stores;
                bridge->wait_sem[1] = l.done_sem; bridge->wait_value[1] = stage2_stores;
                e = lower_nodes(&l, g, &slice, split, g->n_nodes, fused, NULL);
            }
            set_batch(g, -1, saved);
        }
    }
lowered:
    if (e) goto done;
    if (l.failed == 1) e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory");
    else if (l.failed == 2) e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: an operand is not a float32 initializer with inline data of its shape");
    else if (l.failed == 3) e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: the tiles of an op do not fit SBUF");
done:
    free(fused);
    free(l.named);
    free(known.names);
    free(known.shapes);
    free(slice.names);
    free(slice.shapes);
    free(saved);
    free(l.node_const);
    free(l.node_const_key);
    free(l.tensor_names);
    free(l.tensor_shapes);
    if (e) npu_program_free(p);
    return e;
}

/* The auto-cast mode: the compile option "auto-cast" when the host passes one (--backend-option, ABI 1.3),
 * else the environment variable KILN_NPU_AUTO_CAST, else "matmul". Returns -1 (with the text in *bad) for an unknown value. */
static int auto_cast_mode(const kiln_plugin_compile_options *options, const char **bad) {
    const char *value = getenv("KILN_NPU_AUTO_CAST");
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_compile_options, option_values, options->struct_size) && options->option_keys && options->option_values)
        for (size_t i = 0; i < options->option_count; i++)
            if (options->option_keys[i] && strcmp(options->option_keys[i], "auto-cast") == 0) value = options->option_values[i];
    if (!value || !*value || strcmp(value, "matmul") == 0) return NPU_CAST_MATMUL;
    if (strcmp(value, "none") == 0) return NPU_CAST_NONE;
    if (strcmp(value, "all") == 0) return NPU_CAST_ALL;
    *bad = value;
    return -1;
}

/* A compile option's value: the option `key` when the host passes one (ABI 1.3), else the environment variable
 * `env`, else NULL. */
static const char *option_value(const kiln_plugin_compile_options *options, const char *key, const char *env) {
    const char *value = getenv(env);
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_compile_options, option_values, options->struct_size) && options->option_keys && options->option_values)
        for (size_t i = 0; i < options->option_count; i++)
            if (options->option_keys[i] && strcmp(options->option_keys[i], key) == 0) value = options->option_values[i];
    return value && *value ? value : NULL;
}

/* Callback: compiles a graph of claimed nodes into a KNPU payload for host or npu-nc2. */
static kiln_plugin_error *compile(void *context, const kiln_plugin_bytes *graph, const kiln_plugin_compile_options *options, kiln_plugin_payload *out) {
    (void)context;
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_compile_options, target, options->struct_size) && options->target &&
        strcmp(options->target, "host") != 0 && strcmp(options->target, NPU_TARGET) != 0)
        return ak_error(KILN_ERROR_UNSUPPORTED, "compile: target '%s' is not one of this backend's (host, " NPU_TARGET ")", options->target);
    if (!out || out->struct_size < sizeof(kiln_plugin_payload)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: out is NULL or its struct_size is too small");
    const char *bad = NULL;
    int cast = auto_cast_mode(options, &bad);
    if (cast < 0) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: auto-cast '%s' is not none, matmul or all", bad);
    const char *cores_value = option_value(options, "cores", "KILN_NPU_CORES"), *placement = option_value(options, "placement", "KILN_NPU_PLACEMENT");
    if (cores_value && strcmp(cores_value, "1") != 0 && strcmp(cores_value, "2") != 0) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: cores '%s' is not 1 or 2", cores_value);
    if (placement && strcmp(placement, "batch") != 0 && strcmp(placement, "pipeline") != 0)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: placement '%s' is not batch or pipeline", placement);
    uint32_t cores = cores_value && cores_value[0] == '2' ? 2 : 1;
    int pipeline = placement && strcmp(placement, "pipeline") == 0;
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = ak_decode_graph(graph, &g);
    if (e) return e;
    if (g->n_initializers + g->n_nodes + g->n_inputs + g->n_outputs >= (1u << 20)) {
        kiln__ir__graph__free_unpacked(g, NULL);
        return ak_error(KILN_ERROR_UNSUPPORTED, "compile: graph too large");
    }
    npu_program program;
    e = lower(g, (uint32_t)cast, cores, pipeline, &program, NULL, NULL);
    kiln__ir__graph__free_unpacked(g, NULL);
    if (e) return e;
    ak_owner *o = ak_owner_new(AK_OWNER_PAYLOAD);
    if (o) npu_encode(&program, &o->payload);
    npu_program_free(&program);
    return ak_payload_answer(out, o, NPU_COMPAT);
}

/* Callback: whether this backend loads payloads of compatibility string `compat`. */
static kiln_plugin_error *check(void *context, const char *compat) {
    (void)context;
    return ak_check_compat(compat, NPU_COMPAT, NPU_BACKEND_NAME " " NPU_VERSION);
}

/* A loaded program and its last run's profile (plugin ABI 1.4). */
typedef struct npu_executable {
    npu_program program;
    ak_profile profile;
} npu_executable;

/* Callback: decodes and validates a payload into an executable (an npu_executable) on device 0. */
static kiln_plugin_error *load_with_options(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                                            const kiln_plugin_load_options *options, void **out_executable) {
    (void)context;
    kiln_plugin_error *e = ak_load_arguments(payload, options, out_executable);
    if (e) return e;
    npu_executable *x = calloc(1, sizeof *x);
    if (!x) return ak_error(KILN_ERROR_INTERNAL, "load: out of memory");
    char why[256];
    if (npu_decode(payload->data, payload->size, &x->program, why, sizeof why)) {
        free(x);
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: %s", why);
    }
    if ((e = ak_check_graph_io(graph, -1, x->program.output_count))) { npu_program_free(&x->program); free(x); return e; }
    ak_profile_init(&x->profile);
    *out_executable = x;
    return NULL;
}

/* Callback (ABI 1.0): load_with_options on device 0. */
static kiln_plugin_error *load(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph, void **out_executable) {
    return load_with_options(context, payload, graph, NULL, out_executable);
}

/* ---- execute: the cycle model schedules, the functional simulator runs ----------------------------- */

#define DMA_ENGINE(name) {name, 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}
static const ak_engine engines2[2 * ENGINE_COUNT] = {
    {"TensorE", TENSOR_HZ, 0, 0}, {"VectorE", VECTOR_HZ, 0, 0}, {"ScalarE", SCALAR_HZ, 0, 0},
    DMA_ENGINE("DMA0"), DMA_ENGINE("DMA1"), DMA_ENGINE("DMA2"), DMA_ENGINE("DMA3"), DMA_ENGINE("DMA4"), DMA_ENGINE("DMA5"), DMA_ENGINE("DMA6"), DMA_ENGINE("DMA7"),
    DMA_ENGINE("DMA8"), DMA_ENGINE("DMA9"), DMA_ENGINE("DMA10"), DMA_ENGINE("DMA11"), DMA_ENGINE("DMA12"), DMA_ENGINE("DMA13"), DMA_ENGINE("DMA14"), DMA_ENGINE("DMA15"),
    {"core1.TensorE", TENSOR_HZ, 0, 0}, {"core1.VectorE", VECTOR_HZ, 0, 0}, {"core1.ScalarE", SCALAR_HZ, 0, 0},
    DMA_ENGINE("core1.DMA0"), DMA_ENGINE("core1.DMA1"), DMA_ENGINE("core1.DMA2"), DMA_ENGINE("core1.DMA3"), DMA_ENGINE("core1.DMA4"), DMA_ENGINE("core1.DMA5"),
    DMA_ENGINE("core1.DMA6"), DMA_ENGINE("core1.DMA7"), DMA_ENGINE("core1.DMA8"), DMA_ENGINE("core1.DMA9"), DMA_ENGINE("core1.DMA10"), DMA_ENGINE("core1.DMA11"),
    DMA_ENGINE("core1.DMA12"), DMA_ENGINE("core1.DMA13"), DMA_ENGINE("core1.DMA14"), DMA_ENGINE("core1.DMA15"),
};
#undef DMA_ENGINE

static const ak_engine engines[ENGINE_COUNT] = {
    {"TensorE", TENSOR_HZ, 0, 0}, {"VectorE", VECTOR_HZ, 0, 0}, {"ScalarE", SCALAR_HZ, 0, 0},
    {"DMA0", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA1", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA2", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
    {"DMA3", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA4", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA5", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
    {"DMA6", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA7", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA8", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
    {"DMA9", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA10", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA11", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
    {"DMA12", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA13", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S}, {"DMA14", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
    {"DMA15", 0, DMA_BYTES_PER_SECOND, DMA_OVERHEAD_S},
};

static const char *const labels[NPU_OP_LAST + 1] = {"?", "DmaLoad", "DmaStore", "LoadStationary", "MultiplyMoving", "Activate", "Vector", "Reduce"};

/* The cycle model's view of instruction n: its engine and cost. */
static ak_op model_op(const npu_insn *n, uint32_t core) {
    ak_op op = {0, {n->wait_sem[0], n->wait_sem[1]}, {n->wait_value[0], n->wait_value[1]}, {n->signal_sem[0], n->signal_sem[1]}, 0, 0, labels[n->opcode]};
    switch (n->opcode) {
    case NPU_DMA_LOAD: case NPU_DMA_STORE: op.engine = ENGINE_DMA0 + NPU_DMA_QUEUE(n->func); op.bytes = (uint64_t)n->parts * n->cols * npu_dtype_size(n->f); break;
    case NPU_LOAD_STATIONARY: op.engine = ENGINE_TENSOR; op.cycles = ak_load_stationary_cycles(n->cols); break;
    case NPU_MULTIPLY_MOVING: op.engine = ENGINE_TENSOR; op.cycles = ak_multiply_moving_cycles(n->cols, n->f == NPU_F32); break;
    case NPU_ACTIVATE: op.engine = ENGINE_SCALAR; op.cycles = ak_lane_cycles(n->cols, 0, LANE_OVERHEAD_CYCLES); break;
    case NPU_VECTOR: case NPU_REDUCE: op.engine = ENGINE_VECTOR; op.cycles = ak_lane_cycles(n->cols, n->e == NPU_F32, LANE_OVERHEAD_CYCLES); break;
    }
    op.engine += core * ENGINE_COUNT;
    return op;
}

/* The simulated machine's state during one execute. */
typedef struct machine {
    uint8_t *sbuf;                 /* NPU_PARTITIONS × stride: the part of each partition the program uses */
    size_t stride;                 /* bytes per partition held (<= NPU_SBUF_PARTITION_BYTES) */
    float *psum;                   /* NPU_PARTITIONS × NPU_PSUM_BANKS × NPU_PSUM_BANK_FP32 */
    float *stationary;             /* 128 × 128: [k][n] */
    uint32_t stationary_parts, stationary_cols;
    float **dram;                  /* one fp32 array per tensor */
} machine;

/* SBUF element j of partition p at address addr, of type dtype, as fp32. */
static float sbuf_get(const machine *m, uint32_t p, uint32_t addr, uint32_t j, uint32_t dtype) {
    const uint8_t *at = m->sbuf + (size_t)p * m->stride + addr + (size_t)j * npu_dtype_size(dtype);
    if (dtype == NPU_BF16) { uint16_t h; memcpy(&h, at, 2); return ak_f32_from_bf16(h); }
    float f;
    memcpy(&f, at, 4);
    return f;
}

/* Writes v as type dtype (bf16: rounded to nearest even) to SBUF. */
static void sbuf_set(machine *m, uint32_t p, uint32_t addr, uint32_t j, uint32_t dtype, float v) {
    uint8_t *at = m->sbuf + (size_t)p * m->stride + addr + (size_t)j * npu_dtype_size(dtype);
    if (dtype == NPU_BF16) { uint16_t h = ak_bf16_from_f32(v); memcpy(at, &h, 2); }
    else memcpy(at, &v, 4);
}

/* ScalarE's function. */
static float activation(uint32_t func, float x) {
    switch (func) {
    case NPU_FUNC_RELU: return x > 0 ? x : 0.0f;
    case NPU_FUNC_SIGMOID: return 1.0f / (1.0f + expf(-x));
    case NPU_FUNC_TANH: return tanhf(x);
    case NPU_FUNC_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678f));
    case NPU_FUNC_EXP: return expf(x);
    case NPU_FUNC_RECIPROCAL: return 1.0f / x;
    case NPU_FUNC_RSQRT: return 1.0f / sqrtf(x);
    case NPU_FUNC_ERF: return erff(x);
    default: return x;
    }
}

/* VectorE's ALU. */
static float vector_alu(uint32_t op, float a, float b) {
    switch (op) {
    case NPU_ALU_ADD: return a + b;
    case NPU_ALU_MUL: return a * b;
    case NPU_ALU_MAX: return a > b ? a : b;
    case NPU_ALU_MIN: return a < b ? a : b;
    case NPU_ALU_SUB: return a - b;
    case NPU_ALU_DIV: return a / b;
    default: return a;
    }
}

/* The bytes of each SBUF partition a (validated) program touches: the end of its furthest tile. */
static size_t sbuf_extent(const npu_program *p) {
    uint64_t end = 0;
    for (uint32_t i = 0; i < p->insn_count; i++) {
        const npu_insn *n = &p->insns[i];
        uint64_t e = 0;
        switch (n->opcode) {
        case NPU_DMA_LOAD: case NPU_DMA_STORE: e = (uint64_t)n->e + (uint64_t)n->cols * npu_dtype_size(n->f); break;
        case NPU_LOAD_STATIONARY: case NPU_MULTIPLY_MOVING: e = (uint64_t)n->a + (uint64_t)n->cols * npu_dtype_size(n->f); break;
        case NPU_ACTIVATE:
            e = (uint64_t)n->c + (uint64_t)n->cols * 4;
            if (n->b == 0 && (uint64_t)n->a + (uint64_t)n->cols * npu_dtype_size(n->e) > e) e = (uint64_t)n->a + (uint64_t)n->cols * npu_dtype_size(n->e);
            if (n->d != NPU_NONE && (uint64_t)n->d + 4 > e) e = (uint64_t)n->d + 4;
            break;
        case NPU_REDUCE: {
            uint64_t a = (uint64_t)n->a + (uint64_t)n->cols * npu_dtype_size(n->e), c = (uint64_t)n->c + 4;
            e = a > c ? a : c;
            break;
        }
        case NPU_VECTOR: {
            uint64_t src = (uint64_t)n->cols * npu_dtype_size(n->e), a = n->a + src, b = n->b + (n->d ? 4 : src), c = n->c + (uint64_t)n->cols * 4;
            e = a > b ? a : b;
            e = c > e ? c : e;
            if (n->d == NPU_VECTOR_MAC && (uint64_t)n->f + (uint64_t)n->cols * 4 > e) e = (uint64_t)n->f + (uint64_t)n->cols * 4;
            break;
        }
        }
        end = e > end ? e : end;
    }
    return end > NPU_SBUF_PARTITION_BYTES ? NPU_SBUF_PARTITION_BYTES : (size_t)end;
}

/* Executes one (validated) instruction on the machine. Returns NULL or an error. */
static kiln_plugin_error *step(machine *m, const npu_insn *n, size_t index) {
    switch (n->opcode) {
    case NPU_DMA_LOAD: case NPU_DMA_STORE: {
        float *t = m->dram[n->a];
        uint32_t first = NPU_DMA_PARTITION(n->func);
        for (uint32_t p = 0; p < n->parts; p++)
            for (uint32_t j = 0; j < n->cols; j++) {
                uint64_t at = (uint64_t)n->b + (uint64_t)p * n->c + (uint64_t)j * n->d;
                if (n->opcode == NPU_DMA_LOAD) sbuf_set(m, first + p, n->e, j, n->f, t[at]);
                else t[at] = sbuf_get(m, first + p, n->e, j, n->f);
            }
        return NULL;
    }
    case NPU_LOAD_STATIONARY:
        for (uint32_t k = 0; k < n->parts; k++)
            for (uint32_t c = 0; c < n->cols; c++) m->stationary[k * NPU_STATIONARY_COLS + c] = sbuf_get(m, k, n->a, c, n->f);
        m->stationary_parts = n->parts;
        m->stationary_cols = n->cols;
        return NULL;
    case NPU_MULTIPLY_MOVING:
        if (m->stationary_parts != n->parts)
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: instruction %zu: MultiplyMoving of %u rows against a stationary of %u rows", index, n->parts, m->stationary_parts);
        for (uint32_t c = 0; c < m->stationary_cols; c++) {
            float *row = m->psum + ((size_t)c * NPU_PSUM_BANKS + n->b) * NPU_PSUM_BANK_FP32;
            for (uint32_t j = 0; j < n->cols; j++) {
                float acc = n->c ? row[j] : 0.0f;
                for (uint32_t k = 0; k < n->parts; k++) acc += m->stationary[k * NPU_STATIONARY_COLS + c] * sbuf_get(m, k, n->a, j, n->f);
                row[j] = acc;
            }
        }
        return NULL;
    case NPU_ACTIVATE: {
        float scale;
        memcpy(&scale, &n->f, 4);
        for (uint32_t p = 0; p < n->parts; p++) {
            float bias = n->d != NPU_NONE ? sbuf_get(m, p, n->d, 0, NPU_F32) : 0.0f;
            for (uint32_t j = 0; j < n->cols; j++) {
                float x = n->b ? m->psum[((size_t)p * NPU_PSUM_BANKS + n->a) * NPU_PSUM_BANK_FP32 + j] : sbuf_get(m, p, n->a, j, n->e);
                sbuf_set(m, p, n->c, j, NPU_F32, activation(n->func, x * scale + bias));
            }
        }
        return NULL;
    }
    case NPU_VECTOR:
        for (uint32_t p = 0; p < n->parts; p++)
            for (uint32_t j = 0; j < n->cols; j++) {
                float a = sbuf_get(m, p, n->a, j, n->e), b = n->d ? sbuf_get(m, p, n->b, 0, NPU_F32) : sbuf_get(m, p, n->b, j, n->e);
                float r = vector_alu(n->func, a, b);
                if (n->d == NPU_VECTOR_MAC) r += sbuf_get(m, p, n->f, j, NPU_F32);
                sbuf_set(m, p, n->c, j, NPU_F32, r);
            }
        return NULL;
    case NPU_REDUCE:
        for (uint32_t p = 0; p < n->parts; p++) {
            float acc = n->d ? sbuf_get(m, p, n->c, 0, NPU_F32) : sbuf_get(m, p, n->a, 0, n->e);
            for (uint32_t j = n->d ? 0 : 1; j < n->cols; j++) {
                float x = sbuf_get(m, p, n->a, j, n->e);
                acc = n->func == NPU_ALU_ADD ? acc + x : (x > acc ? x : acc);
            }
            sbuf_set(m, p, n->c, 0, NPU_F32, acc);
        }
        return NULL;
    }
    return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: instruction %zu has opcode %u", index, n->opcode);
}

static _Atomic uint64_t last_total_ps, last_tensor_cycles, last_vector_cycles, last_scalar_cycles, last_dma_bytes, last_instructions, runs;
static _Atomic uint64_t last_tensor_util, last_vector_util, last_scalar_util; /* per mille */

/* The end of the last store into each row of dim 0 (the batch) of the graph outputs, in ps, into done[0 .. rows)
 * (rows: dim 0 of the first output; 0 when an output has rank 0 or another dim 0). The latency of each image of
 * the batch in the simulated schedule, when all of them arrive at the start of the run. Returns rows. */
static uint64_t batch_done(const npu_program *p, const ak_report *r, uint64_t *done, uint64_t capacity) {
    if (!p->output_count) return 0;
    const npu_tensor *first = &p->tensors[p->outputs[0]];
    uint64_t rows = first->rank ? (uint64_t)first->dims[0] : 0;
    for (uint32_t k = 0; k < p->output_count; k++) {
        const npu_tensor *t = &p->tensors[p->outputs[k]];
        if (!t->rank || (uint64_t)t->dims[0] != rows) return 0;
    }
    if (!rows || rows > capacity) return 0;
    memset(done, 0, rows * sizeof *done);
    for (uint32_t i = 0; i < p->insn_count; i++) {
        const npu_insn *n = &p->insns[i];
        if (n->opcode != NPU_DMA_STORE) continue;
        const npu_tensor *t = &p->tensors[n->a];
        uint32_t base = t->kind == NPU_T_VIEW ? t->base : n->a;
        uint64_t offset = t->kind == NPU_T_VIEW ? t->offset : 0;
        const npu_tensor *full = &p->tensors[base];
        if (full->kind != NPU_T_OUTPUT || !full->elements) continue;
        uint64_t per = full->elements / rows, lo = offset + n->b, hi = lo + (uint64_t)(n->parts - 1) * n->c + (uint64_t)(n->cols - 1) * n->d;
        for (uint64_t b = lo / per; b <= hi / per && b < rows; b++) done[b] = r->end_ps[i] > done[b] ? r->end_ps[i] : done[b];
    }
    return rows;
}

/* Records a run's report for the device properties, the debug log and (when asked) files. */
static void record(const npu_program *p, const ak_op *ops, const ak_report *r) {
    const ak_engine *eng = p->cores > 1 ? engines2 : engines;
    uint32_t engine_count = p->cores > 1 ? 2 * ENGINE_COUNT : ENGINE_COUNT;
    atomic_store(&last_total_ps, r->total_ps);
    atomic_store(&last_tensor_cycles, r->cycles[ENGINE_TENSOR] + (p->cores > 1 ? r->cycles[ENGINE_COUNT + ENGINE_TENSOR] : 0));
    atomic_store(&last_vector_cycles, r->cycles[ENGINE_VECTOR] + (p->cores > 1 ? r->cycles[ENGINE_COUNT + ENGINE_VECTOR] : 0));
    atomic_store(&last_scalar_cycles, r->cycles[ENGINE_SCALAR] + (p->cores > 1 ? r->cycles[ENGINE_COUNT + ENGINE_SCALAR] : 0));
    atomic_store(&last_dma_bytes, r->dma_bytes);
    atomic_store(&last_instructions, p->insn_count);
    atomic_store(&last_tensor_util, (uint64_t)llround(1000 * ak_utilization(r, ENGINE_TENSOR)));
    atomic_store(&last_vector_util, (uint64_t)llround(1000 * ak_utilization(r, ENGINE_VECTOR)));
    atomic_store(&last_scalar_util, (uint64_t)llround(1000 * ak_utilization(r, ENGINE_SCALAR)));
    uint64_t run = atomic_fetch_add(&runs, 1);
    const char *trace = getenv("KILN_NPU_TRACE"), *report = getenv("KILN_NPU_REPORT");
    char trace_path[1024];
    if (trace && *trace && ak_expand_run(trace, run, trace_path, sizeof trace_path)) {
        FILE *f = fopen(trace_path, "w");
        if (f) { ak_write_chrome_trace(f, eng, engine_count, ops, r); fclose(f); }
    }
    char report_path[1024];
    if (report && *report && ak_expand_run(report, run, report_path, sizeof report_path)) {
        FILE *f = fopen(report_path, "w");
        if (f) {
            fprintf(f, "npu-nc2 cycle model, auto-cast %s, %u instructions, %u core%s\n", p->auto_cast == NPU_CAST_NONE ? "none" : p->auto_cast == NPU_CAST_ALL ? "all" : "matmul",
                    p->insn_count, p->cores, p->cores > 1 ? "s (sharing 820 GB/s of device memory)" : "");
            ak_write_summary(f, eng, engine_count, r);
            uint64_t done[256], rows = batch_done(p, r, done, 256);
            if (rows) {
                fprintf(f, "done by batch row (us):");
                for (uint64_t b = 0; b < rows; b++) fprintf(f, " %.3f", (double)done[b] / 1e6);
                fprintf(f, "\n");
            }
            fclose(f);
        }
    }
    {
        char line[256];
        snprintf(line, sizeof line, "npu-nc2 estimate: %.3f us, TensorE %llu cycles (%.1f%%), DMA %llu bytes, %u instructions",
                 (double)r->total_ps / 1e6, (unsigned long long)r->cycles[ENGINE_TENSOR], 100 * ak_utilization(r, ENGINE_TENSOR),
                 (unsigned long long)r->dma_bytes, p->insn_count);
        ak_log_debug(line);
    }
}

/* Callback: runs a program: schedules its streams with the cycle model (two cores: their 2 × 19 engines, the
 * DMA queues sharing the device's memory bandwidth), executes them in that order on the functional simulator
 * (one SBUF, PSUM and TensorE per core; DRAM shared, views pointing into their base), and returns the outputs. */
static kiln_plugin_error *execute(void *context, void *executable, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs, size_t output_count) {
    (void)context;
    npu_executable *x = executable;
    const npu_program *p = x ? &x->program : NULL;
    kiln_plugin_error *e = ak_execute_arguments(executable, input_count, output_count, p ? p->input_count : 0, p ? p->output_count : 0, inputs, outputs);
    if (e) return e;
    uint32_t core_count = p->cores > 1 ? p->cores : 1;
    machine m[NPU_MAX_CORES];
    memset(m, 0, sizeof m);
    float **dram = calloc((size_t)p->tensor_count + 1, sizeof(float *));
    ak_op *ops = calloc((size_t)p->insn_count + 1, sizeof(ak_op));
    ak_report report = {0};
    int ok = dram && ops;
    for (uint32_t c = 0; c < core_count; c++) {
        m[c].stride = sbuf_extent(p);
        m[c].sbuf = calloc((size_t)NPU_PARTITIONS * m[c].stride + 1, 1);
        m[c].psum = calloc((size_t)NPU_PARTITIONS * NPU_PSUM_BANKS * NPU_PSUM_BANK_FP32, sizeof(float));
        m[c].stationary = calloc((size_t)NPU_PARTITIONS * NPU_STATIONARY_COLS, sizeof(float));
        m[c].dram = dram;
        ok = ok && m[c].sbuf && m[c].psum && m[c].stationary;
    }
    if (!ok) { e = ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); goto done; }
    for (uint32_t t = 0; !e && t < p->tensor_count; t++) {
        const npu_tensor *nt = &p->tensors[t];
        if (nt->kind == NPU_T_VIEW) { dram[t] = dram[nt->base] + nt->offset; continue; } /* bases come first (npu_decode) */
        dram[t] = calloc((size_t)nt->elements + 1, sizeof(float));
        if (!dram[t]) { e = ak_error(KILN_ERROR_INTERNAL, "execute: out of memory"); break; }
        for (uint64_t i = 0; nt->kind == NPU_T_CONST && i < nt->elements; i++) {
            if (nt->dtype == NPU_BF16) { uint16_t h; memcpy(&h, nt->data + 2 * i, 2); dram[t][i] = ak_f32_from_bf16(h); }
            else memcpy(&dram[t][i], nt->data + 4 * i, 4);
        }
    }
    for (uint32_t i = 0; !e && i < p->input_count; i++) {
        const kiln_tensor *in = &inputs[i];
        const npu_tensor *nt = &p->tensors[p->inputs[i]];
        if (in->dtype.code != KILN_DTYPE_FLOAT || in->dtype.bits != 32 || in->dtype.lanes != 1)
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %u is not float32", i);
        else if (in->device.device_type != KILN_DEVICE_CPU || in->strides || in->byte_offset)
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %u is not a compact CPU tensor", i);
        else if (in->ndim != (int32_t)nt->rank || (in->ndim > 0 && !in->shape))
            e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %u has rank %d; the program was compiled for rank %u", i, in->ndim, nt->rank);
        for (uint32_t d = 0; !e && d < nt->rank; d++)
            if (in->shape[d] != nt->dims[d]) e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %u dim %u is %lld; the program was compiled for %lld", i, d, (long long)in->shape[d], (long long)nt->dims[d]);
        if (!e && nt->elements && !in->data) e = ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %u has NULL data", i);
        if (!e && nt->elements) memcpy(dram[p->inputs[i]], in->data, (size_t)nt->elements * 4);
    }
    if (e) goto done;
    for (uint32_t i = 0; i < p->insn_count; i++) ops[i] = model_op(&p->insns[i], p->core_of ? p->core_of[i] : 0);
    char why[256];
    const ak_engine *eng = core_count > 1 ? engines2 : engines;
    if (ak_simulate_shared(eng, core_count * ENGINE_COUNT, ops, p->insn_count, p->semaphore_count, core_count > 1 ? DEVICE_HBM_BYTES_PER_SECOND : 0,
                           &report, why, sizeof why)) {
        e = ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: the instruction streams cannot run: %s", why);
        goto done;
    }
    for (size_t k = 0; !e && k < p->insn_count; k++) {
        size_t i = report.order[k];
        e = step(&m[p->core_of ? p->core_of[i] : 0], &p->insns[i], i);
    }
    for (size_t i = 0; !e && i < output_count; i++) {
        const npu_tensor *nt = &p->tensors[p->outputs[i]];
        e = ak_output(&outputs[i], i, dram[p->outputs[i]], (size_t)nt->elements * 4, KILN_DTYPE_FLOAT, 32, nt->rank, nt->dims);
    }
    if (!e) {
        record(p, ops, &report);
        uint64_t total = 0;
        ak_step *steps = ak_steps_from_report(&report, eng, ops, p->layers.count ? p->layers.of : NULL, p->layers.names, PROFILE_CLOCK_HZ, &total);
        if (steps) ak_profile_store(&x->profile, steps, p->insn_count, total, PROFILE_CLOCK_HZ);
        else e = ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    }
done:
    ak_report_free(&report);
    for (uint32_t t = 0; dram && t < p->tensor_count; t++) if (p->tensors[t].kind != NPU_T_VIEW) free(dram[t]);
    free(dram);
    for (uint32_t c = 0; c < core_count; c++) { free(m[c].sbuf); free(m[c].psum); free(m[c].stationary); }
    free(ops);
    return e;
}

/* Callback (1.4): the last run's instructions as steps, per layer (the graph node(s) each came from) and
 * engine, in TensorE cycles (PROFILE_CLOCK_HZ). */
static kiln_plugin_error *profile(void *context, void *executable, kiln_plugin_profile *out) {
    (void)context;
    return ak_profile_answer(executable ? &((npu_executable *)executable)->profile : NULL, out);
}

/* Callback: frees an executable. */
static void unload(void *context, void *executable) {
    (void)context;
    if (!executable) return;
    npu_executable *x = executable;
    npu_program_free(&x->program);
    ak_profile_destroy(&x->profile);
    free(x);
}

/* ---- the device ---------------------------------------------------------------------------------------- */

enum { FIXED_PROPERTIES = 11, LIVE_PROPERTIES = 10, DEVICE_PROPERTY_COUNT = FIXED_PROPERTIES + LIVE_PROPERTIES };

/* Callback: the one simulated NeuronCore, with its parameters and the last run's estimate as properties. */
static kiln_plugin_error *devices(void *context, kiln_plugin_device_list *out) {
    (void)context;
    static const char *const keys[DEVICE_PROPERTY_COUNT] = {
        "tensor_engine", "vector_engine", "scalar_engine", "sbuf_bytes", "psum_bytes", "dma", "assumed.dma_overhead_ns", "auto_cast",
        "executes_on", "cores", "device_memory_bandwidth", "estimate.runs", "estimate.last_run.ns", "estimate.last_run.tensor_cycles", "estimate.last_run.vector_cycles",
        "estimate.last_run.scalar_cycles", "estimate.last_run.dma_bytes", "estimate.last_run.instructions",
        "estimate.last_run.tensor_utilization_permille", "estimate.last_run.vector_utilization_permille", "estimate.last_run.scalar_utilization_permille"};
    static const char *const fixed[DEVICE_PROPERTY_COUNT] = {
        "128x128 systolic, 2.8 GHz, bf16/fp16 in, fp32 accumulate", "128 lanes, 1.12 GHz", "128 lanes, 1.4 GHz, func(in*scale+bias)",
        "25165824 (128 partitions x 192 KiB)", "2097152 (128 partitions x 8 banks x 512 fp32)", "16 queues x 27 GiB/s", "64",
        "compile option auto-cast or KILN_NPU_AUTO_CAST: none|matmul|all (default matmul)",
        "the host, through a functional simulator of the instruction streams",
        "2 per device (each with the engines, SBUF and PSUM above): compile options cores=1|2 and placement=batch|pipeline, or KILN_NPU_CORES, KILN_NPU_PLACEMENT",
        "820 GB/s, shared by both cores' 32 DMA queues (cores=2)"};
    uint64_t live[DEVICE_PROPERTY_COUNT] = {
        [FIXED_PROPERTIES] = atomic_load(&runs), atomic_load(&last_total_ps) / 1000, atomic_load(&last_tensor_cycles), atomic_load(&last_vector_cycles),
        atomic_load(&last_scalar_cycles), atomic_load(&last_dma_bytes), atomic_load(&last_instructions),
        atomic_load(&last_tensor_util), atomic_load(&last_vector_util), atomic_load(&last_scalar_util)};
    return ak_device_answer(out, "npu-nc2 simulator (NeuronCore-v2-like: TensorE, VectorE, ScalarE, 16 DMA queues)",
                            (uint64_t)NPU_PARTITIONS * NPU_SBUF_PARTITION_BYTES, DEVICE_PROPERTY_COUNT, keys, fixed, live);
}

/* ---- the plugin ------------------------------------------------------------------------------------------ */

static const char *const targets[] = {NPU_TARGET};

/* The compile option a 1.3 host accepts as --backend-option auto-cast=MODE and passes to compile. */
static const char *const auto_cast_choices[] = {"none", "matmul", "all"};
static const kiln_plugin_option auto_cast_option = {
    .struct_size = sizeof(kiln_plugin_option),
    .name = "auto-cast",
    .default_value = "matmul (or KILN_NPU_AUTO_CAST)",
    .help = "fp32 to bf16 on the way into the engines: none, matmul (MatMul/Gemm operands) or all (also elementwise operands)",
    .choice_count = 3,
    .choices = auto_cast_choices,
};
static const char *const cores_choices[] = {"1", "2"};
static const kiln_plugin_option cores_option = {
    .struct_size = sizeof(kiln_plugin_option),
    .name = "cores",
    .default_value = "1 (or KILN_NPU_CORES)",
    .help = "NeuronCores of the device the program runs on: 1, or 2 (placed by the option placement)",
    .choice_count = 2,
    .choices = cores_choices,
};
static const char *const placement_choices[] = {"batch", "pipeline"};
static const kiln_plugin_option placement_option = {
    .struct_size = sizeof(kiln_plugin_option),
    .name = "placement",
    .default_value = "batch (or KILN_NPU_PLACEMENT)",
    .help = "with cores=2: batch (each core runs half the batch) or pipeline (two stages of the ops, the batch's images streamed through them)",
    .choice_count = 2,
    .choices = placement_choices,
};
static const kiln_plugin_option *const options[] = {&auto_cast_option, &cores_option, &placement_option};

static const kiln_plugin_backend backend = {
    .struct_size = sizeof(kiln_plugin_backend),
    .name = NPU_BACKEND_NAME,
    .vendor = "Kiln (NPU sample target)",
    .version = NPU_VERSION,
    .flags = KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE, /* execute reads the program only; the machine is per call */
    .context = NULL,
    .claim = claim, .compile = compile, .check = check, .load = load, .execute = execute, .unload = unload, .release = ak_release,
    .devices = devices, .load_with_options = load_with_options,
    .target_count = 1, .targets = targets,
    .option_count = 3, .options = options,
    .profile = profile,
    /* (1.5) As torch-neuron partitions: a segment of fewer than 2 nodes stays on the CPU. */
    .min_group_size = 2,
};
static const kiln_plugin_backend *const backends[] = {&backend};

static kiln_plugin_header header = {
    .struct_size = sizeof(kiln_plugin_header),
    .abi_major = KILN_PLUGIN_ABI_MAJOR,
    .abi_minor = KILN_PLUGIN_ABI_MINOR,
    .name = NPU_PLUGIN_NAME,
    .vendor = "Kiln (NPU sample target)",
    .version = NPU_VERSION,
    .backend_count = 1,
    .backends = backends,
    .context = NULL,
    .shutdown = NULL,
};

/* The entry: negotiates ABI 1.2 (the devices and targets fields need a 1.2 host), or 1.3 with a host that
 * speaks it (which then also reads the declared auto-cast option). */
KILN_PLUGIN_EXPORT kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *h, const kiln_plugin_header **out_header) {
    return ak_query(h, out_header, &header, NPU_PLUGIN_NAME, 5);
}
