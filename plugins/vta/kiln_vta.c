/*
 * kiln_vta.c — samplevta.fpga, a Kiln backend plugin (plugin ABI 1.2 to 1.4; profile needs 1.4) for a VTA-like FPGA accelerator
 * (Apache TVM VTA's default 1×16×16 int8 GEMM configuration), targets fpga-vta-pynq and fpga-vta-zcu104,
 * written against the public headers only (include/kiln/kiln_plugin.h and the generated kiln.ir C code).
 *
 * The backend is named "samplevta.fpga": `kiln plugin-check` reserves the kiln. prefix for built-in backends.
 *
 * claim: quantized convolution and dense layers and residual adds, as QLinearConv / QLinearMatMul or as the
 * QDQ form onnxruntime's quantize_static writes (DequantizeLinear -> Conv/Gemm/MatMul/Add [-> Relu] ->
 * QuantizeLinear), int8 activations and weights, per-tensor scales whose requantization multiplier is
 * exactly m·2^-s (Documentation/targets/FPGA.md, "Requantization"). Everything else falls back to the host.
 * compile: lowers the layers into one VTA program (isa.h): tiles fitted to the on-chip buffers, double-buffered
 * halves of inp/wgt/acc, micro-op kernels, dependency tokens between the load, compute and store modules,
 * and a DRAM image (packed weights, biases, micro-ops, padded activation tensors).
 * execute: schedules the program with the cycle model (accelkit), executes the instructions in that order on
 * the functional simulator, and reports counters and per-layer latency (device properties "last_run.*";
 * KILN_VTA_REPORT=FILE writes a per-layer table for each run, "{run}" in FILE replaced by the run's number).
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

#define VTA_BACKEND_NAME "samplevta.fpga"
#define VTA_PLUGIN_NAME "kiln-vta"
#define VTA_VERSION "0.1.0"
#define VTA_COMPAT_PREFIX VTA_BACKEND_NAME "/kvta1;target="

/* IR element types used here (kiln.ir.DataType). */
enum { IR_F32 = 1, IR_U8 = 2, IR_I8 = 3, IR_I32 = 6 };

/* Limits: the DRAM image a payload may ask for, and the work one run may do (GEMM MACs + ALU lane ops + DMA
 * bytes): a payload asking for more is refused at load rather than left running for hours. */
#define VTA_MAX_DRAM ((uint64_t)256 << 20)
#define VTA_MAX_WORK ((uint64_t)1 << 36)
#define VTA_MAX_DIM 65536
#define VTA_MAX_LAYERS 1024
#define VTA_MAX_IO 64
#define VTA_MAX_INSNS ((size_t)1 << 22) /* instructions one compiled program may have */

/* On-chip layout chosen by the compiler: bias at the bottom of acc, then two halves of three tiles each. */
#define ACC_BIAS_ENTRIES 128
#define TILE_MAX_ENTRIES ((VTA_ACC_DEPTH - ACC_BIAS_ENTRIES) / 6) /* 320 */
#define INP_HALF (VTA_INP_DEPTH / 2)
#define WGT_HALF (VTA_WGT_DEPTH / 2)

/* ---- graph helpers ------------------------------------------------------------------------------- */

typedef ak_shape shape;

/* The node producing `value`, or -1. */
static int64_t producer(const Kiln__Ir__Graph *g, const char *value) {
    if (!value[0]) return -1;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_outputs; k++)
            if (strcmp(g->nodes[i]->outputs[k], value) == 0) return (int64_t)i;
    return -1;
}

/* How many node inputs (and graph outputs) read `value`; the first consuming node in *first. */
static size_t consumers(const Kiln__Ir__Graph *g, const char *value, int64_t *first) {
    size_t n = 0;
    if (first) *first = -1;
    for (size_t i = 0; i < g->n_nodes; i++)
        for (size_t k = 0; k < g->nodes[i]->n_inputs; k++)
            if (strcmp(g->nodes[i]->inputs[k], value) == 0) { if (first && *first < 0) *first = (int64_t)i; n++; }
    for (size_t i = 0; i < g->n_outputs; i++) if (strcmp(g->outputs[i]->name, value) == 0) n++;
    return n;
}

static int is_graph_output(const Kiln__Ir__Graph *g, const char *value) {
    for (size_t i = 0; i < g->n_outputs; i++) if (strcmp(g->outputs[i]->name, value) == 0) return 1;
    return 0;
}

/* A positive finite float32 scalar initializer (any rank, one element). */
static int scale_of(const Kiln__Ir__Graph *g, const char *name, double *out) {
    const Kiln__Ir__Tensor *t = name[0] ? ak_initializer(g, name) : NULL;
    if (!t || (int)t->dtype != IR_F32 || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->raw.len != 4) return 0;
    float f;
    memcpy(&f, t->raw.data, 4);
    if (!(f > 0) || !isfinite(f)) return 0;
    *out = f;
    return 1;
}

/* A zero point: an int8 (or, with allow32, int32) initializer whose elements are all equal; absent = 0 of
 * type `absent_type`. Returns the type, or 0. */
static int zero_point_of(const Kiln__Ir__Graph *g, const Kiln__Ir__Node *n, size_t index, int allow32, int absent_type, int32_t *out) {
    *out = 0;
    if (n->n_inputs <= index || !n->inputs[index][0]) return absent_type;
    const Kiln__Ir__Tensor *t = ak_initializer(g, n->inputs[index]);
    if (!t || t->data_case != KILN__IR__TENSOR__DATA_RAW) return 0;
    int dt = (int)t->dtype;
    size_t es = dt == IR_I8 || dt == IR_U8 ? 1 : dt == IR_I32 ? 4 : 0;
    if (!es || (dt == IR_I32 && !allow32) || t->raw.len == 0 || t->raw.len % es) return 0;
    for (size_t i = 0; i < t->raw.len; i += es) {
        int32_t v;
        if (es == 4) memcpy(&v, t->raw.data + i, 4);
        else v = dt == IR_I8 ? (int8_t)t->raw.data[i] : t->raw.data[i];
        if (i == 0) *out = v;
        else if (v != *out) return 0;
    }
    return (int)t->dtype;
}

static int is_pow2(double x) { int e; return x > 0 && frexp(x, &e) == 0.5; }

/* ---- layers: what the plugin lowers ----------------------------------------------------------------- */

enum { L_CONV = 0, L_ADD = 1 };
enum { W_OIHW = 0, W_KN = 1, W_NK = 2 };

typedef struct layer {
    int kind, form_qdq;                 /* form_qdq: DequantizeLinear/QuantizeLinear pattern (else QLinear*) */
    const char *name;
    int n_in;
    const char *in[2];                  /* int8 input values */
    int32_t zin[2];                     /* their zero points */
    int dense;                          /* rank-2 [M, K] input and [M, N] output */
    int64_t C, H, W, O, KH, KW, sh, sw, pt, pl, pb, pr, OH, OW;
    const Kiln__Ir__Tensor *w;          /* int8 weights (conv/dense) */
    int w_layout;
    const Kiln__Ir__Tensor *bias;       /* int32 [O] or NULL */
    int32_t add_w[2];                   /* residual add: 2^k multipliers of each input */
    int32_t m, s, relu, zy;             /* requantization: clamp(round_half_even(acc·m / 2^s) [max 0] + zy) */
    const char *out;                    /* int8 output value */
    size_t nodes[12]; int n_nodes;      /* the graph nodes this layer covers */
    int64_t act_dq[2]; int n_act_dq;    /* activation DequantizeLinear nodes (may be shared by layers) */
    int valid;
    char why[320];
    Kiln__Ir__Tensor own_w, own_b;      /* weights/bias recovered from float constants (the host folded their DequantizeLinear) */
    uint8_t *own_wdata, *own_bdata;
} layer;

static void free_layers(layer *layers, size_t count) {
    for (size_t i = 0; layers && i < count; i++) { free(layers[i].own_wdata); free(layers[i].own_bdata); }
    free(layers);
}

/* The exponent of the lowest set bit of a nonzero finite float: f = k·2^e with k an odd integer. */
static int low_exponent(float f) {
    int e;
    double m = frexp((double)f, &e);         /* f = m·2^e, 0.5 <= |m| < 1, m has 24 significant bits */
    int64_t k = (int64_t)ldexp(fabs(m), 24);
    int tz = 0;
    while (!(k & 1)) { k >>= 1; tz++; }
    return e - 24 + tz;
}

/* The int8 values and shapes layers produce, for the shapes of later layers' inputs. */
typedef struct known_shapes { const char *name[VTA_MAX_LAYERS]; shape s[VTA_MAX_LAYERS]; size_t count; } known_shapes;

static shape value_shape(const Kiln__Ir__Graph *g, const known_shapes *k, const char *name) {
    for (size_t i = 0; k && i < k->count; i++) if (strcmp(k->name[i], name) == 0) return k->s[i];
    return ak_graph_shape(g, name, 1);
}

/* Finds m, s with value = m·2^-s, 1 <= m <= 32767, 0 <= s <= 15 (smallest s). */
static int exact_multiplier(double value, int32_t *m, int32_t *s) {
    for (int k = 0; k <= 15; k++) {
        double v = ldexp(value, k);
        if (v == floor(v) && v >= 1 && v <= 32767) { *m = (int32_t)v; *s = k; return 1; }
    }
    return 0;
}

#define FAIL(...) do { snprintf(L->why, sizeof L->why, __VA_ARGS__); return 0; } while (0)

/* The int8 weight value at [o][i][kh][kw] of layer L (0 outside the real channels). */
static int32_t weight_at(const layer *L, int64_t o, int64_t i, int64_t kh, int64_t kw) {
    if (o >= L->O || i >= L->C) return 0;
    size_t at;
    if (L->w_layout == W_OIHW) at = (size_t)(((o * L->C + i) * L->KH + kh) * L->KW + kw);
    else if (L->w_layout == W_KN) at = (size_t)(i * L->O + o);
    else at = (size_t)(o * L->C + i);
    return (int8_t)L->w->raw.data[at];
}

static int32_t bias_at(const layer *L, int64_t o) {
    if (!L->bias || o >= L->O) return 0;
    int32_t b;
    memcpy(&b, L->bias->raw.data + 4 * o, 4);
    return b;
}

/* Checks the accumulator bounds that make the lowering exact (FPGA.md, "Requantization"): the int32
 * accumulator and acc·m never overflow; in the QDQ form every partial sum is below 2^24 quanta, so that the
 * float32 graph kiln.reference runs computes it exactly. */
static int check_bounds(layer *L) {
    double xmax = 0;
    for (int i = 0; i < L->n_in; i++) {
        double a = fabs(-128.0 - L->zin[i]), b = fabs(127.0 - L->zin[i]);
        double v = (a > b ? a : b) * (L->kind == L_ADD ? L->add_w[i] : 1);
        xmax = L->kind == L_ADD ? xmax + v : (v > xmax ? v : xmax);
    }
    double worst = 0;
    if (L->kind == L_ADD) worst = xmax;
    for (int64_t o = 0; L->kind == L_CONV && o < L->O; o++) {
        double sum = 0, raw = 0;
        for (int64_t i = 0; i < L->C; i++)
            for (int64_t kh = 0; kh < L->KH; kh++)
                for (int64_t kw = 0; kw < L->KW; kw++) { double w = abs(weight_at(L, o, i, kh, kw)); sum += w; raw += w * 128; }
        double b = fabs((double)bias_at(L, o)), bound = sum * xmax + b;
        if (raw + b + fabs((double)L->zin[0]) * sum >= 2147483647.0) FAIL("%s: the int32 accumulator could overflow", L->name);
        if (bound > worst) worst = bound;
    }
    if (L->form_qdq && worst >= 16777216.0)
        FAIL("%s: an accumulator bound of %.0f quanta is not below 2^24, so the float32 QDQ graph is not exact and the lowering could differ", L->name, worst);
    if (worst * L->m + 32768.0 >= 2147483647.0) FAIL("%s: acc·m could overflow int32 (bound %.0f, m %d)", L->name, worst, L->m);
    return 1;
}

/* Fills the convolution geometry of L from its input shape and the node's attributes. */
static int conv_geometry(layer *L, const Kiln__Ir__Node *n, shape x) {
    if (!x.known || x.rank != 4 || x.dims[0] != 1) FAIL("%s: the input must have a known shape [1, C, H, W]", L->name);
    L->C = x.dims[1]; L->H = x.dims[2]; L->W = x.dims[3];
    const Kiln__Ir__Tensor *w = L->w;
    if (w->n_shape != 4 || w->shape[1] != L->C) FAIL("%s: weights must be [O, %lld, KH, KW]", L->name, (long long)L->C);
    L->O = w->shape[0]; L->KH = w->shape[2]; L->KW = w->shape[3];
    if (ak_int_attr(n, "group", 1) != 1) FAIL("%s: grouped convolution is not supported", L->name);
    const Kiln__Ir__Attribute *a = ak_attribute(n, "auto_pad");
    if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "NOTSET") != 0) FAIL("%s: auto_pad %s is not supported", L->name, a->s);
    L->sh = L->sw = 1; L->pt = L->pl = L->pb = L->pr = 0;
    const char *lists[3] = {"strides", "pads", "dilations"};
    size_t lengths[3] = {2, 4, 2};
    for (int k = 0; k < 3; k++) {
        a = ak_attribute(n, lists[k]);
        if (!a) continue;
        if (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != lengths[k]) FAIL("%s: %s must list %zu integers", L->name, lists[k], lengths[k]);
        for (size_t i = 0; i < lengths[k]; i++) {
            int64_t v = a->ints->values[i];
            if (k == 0 && (v < 1 || v > 64)) FAIL("%s: stride %lld is not supported", L->name, (long long)v);
            if (k == 1 && (v < 0 || v > 15)) FAIL("%s: padding %lld is not supported (0..15)", L->name, (long long)v);
            if (k == 2 && v != 1) FAIL("%s: dilation is not supported", L->name);
        }
        if (k == 0) { L->sh = a->ints->values[0]; L->sw = a->ints->values[1]; }
        if (k == 1) { L->pt = a->ints->values[0]; L->pl = a->ints->values[1]; L->pb = a->ints->values[2]; L->pr = a->ints->values[3]; }
    }
    a = ak_attribute(n, "kernel_shape");
    if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != 2 || a->ints->values[0] != L->KH || a->ints->values[1] != L->KW))
        FAIL("%s: kernel_shape differs from the weights", L->name);
    if (L->C < 1 || L->O < 1 || L->KH < 1 || L->KW < 1 || L->C > 2048 || L->O > 2048 || L->H > 4096 || L->W > 4096 || L->KH > 15 || L->KW > 15)
        FAIL("%s: sizes out of the supported range", L->name);
    if (L->H + L->pt + L->pb < L->KH || L->W + L->pl + L->pr < L->KW) FAIL("%s: the kernel is larger than the padded input", L->name);
    L->OH = (L->H + L->pt + L->pb - L->KH) / L->sh + 1;
    L->OW = (L->W + L->pl + L->pr - L->KW) / L->sw + 1;
    return 1;
}

/* Dense geometry: x [M, K], weights K×N in `layout`. */
static int dense_geometry(layer *L, shape x) {
    if (!x.known || x.rank != 2) FAIL("%s: the input must have a known shape [M, K]", L->name);
    const Kiln__Ir__Tensor *w = L->w;
    if (w->n_shape != 2) FAIL("%s: weights must be a matrix", L->name);
    int64_t K = L->w_layout == W_KN ? w->shape[0] : w->shape[1], N = L->w_layout == W_KN ? w->shape[1] : w->shape[0];
    if (K != x.dims[1]) FAIL("%s: shapes do not multiply", L->name);
    if (x.dims[0] < 1 || K < 1 || N < 1 || x.dims[0] > 4096 || K > 2048 || N > 2048) FAIL("%s: sizes out of the supported range", L->name);
    L->dense = 1;
    L->C = K; L->H = 1; L->W = x.dims[0]; L->O = N; L->KH = L->KW = 1; L->sh = L->sw = 1;
    L->pt = L->pl = L->pb = L->pr = 0; L->OH = 1; L->OW = x.dims[0];
    return 1;
}

static int weights_ok(layer *L, const Kiln__Ir__Tensor *w) {
    if (!w || (int)w->dtype != IR_I8 || w->data_case != KILN__IR__TENSOR__DATA_RAW) FAIL("%s: weights must be an int8 initializer", L->name);
    int64_t n = 1;
    for (size_t d = 0; d < w->n_shape; d++) { if (w->shape[d] < 0 || w->shape[d] > 65536) FAIL("%s: weight shape out of range", L->name); n *= w->shape[d]; }
    if ((uint64_t)n != w->raw.len) FAIL("%s: weight data does not match its shape", L->name);
    L->w = w;
    return 1;
}

static int bias_ok(layer *L, const Kiln__Ir__Tensor *b) {
    if (!b || (int)b->dtype != IR_I32 || b->data_case != KILN__IR__TENSOR__DATA_RAW || b->n_shape != 1 || b->shape[0] != L->O || b->raw.len != 4 * (size_t)L->O)
        FAIL("%s: the bias must be an int32 initializer of %lld elements", L->name, (long long)L->O);
    L->bias = b;
    return 1;
}

/* Float32 weights (and an optional float32 bias) that the host's constant folding produced from
 * DequantizeLinear(int8) (and DequantizeLinear(int32, s_x·s_w)): recovers the integers exactly, with the weight
 * scale 2^e for the largest e that makes every weight (and every bias / s_x) an integer multiple. The float
 * graph then computes exactly what the integers do. Sets *sw. */
static int recover_weights(layer *L, const Kiln__Ir__Tensor *w, const Kiln__Ir__Tensor *b, double sx, double *sw) {
    if (!w || (int)w->dtype != IR_F32 || w->data_case != KILN__IR__TENSOR__DATA_RAW || w->raw.len % 4) FAIL("%s: the weights are neither a DequantizeLinear of int8 nor a float32 constant", L->name);
    if (b && ((int)b->dtype != IR_F32 || b->data_case != KILN__IR__TENSOR__DATA_RAW || b->raw.len % 4)) FAIL("%s: the bias is neither a DequantizeLinear of int32 nor a float32 constant", L->name);
    int64_t n = 1;
    for (size_t d = 0; d < w->n_shape; d++) { if (w->shape[d] < 0 || w->shape[d] > 65536) FAIL("%s: weight shape out of range", L->name); n *= w->shape[d]; }
    if ((uint64_t)n * 4 != w->raw.len || n > (1 << 24)) FAIL("%s: weight data does not match its shape", L->name);
    int ex, e = 1000;
    frexp(sx, &ex);
    ex -= 1; /* sx = 2^ex */
    size_t nb = b ? b->raw.len / 4 : 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < (pass ? nb : (size_t)n); i++) {
            float f;
            memcpy(&f, (pass ? b : w)->raw.data + 4 * i, 4);
            if (!isfinite(f)) FAIL("%s: a weight or bias is not finite", L->name);
            if (f == 0) continue;
            int le = low_exponent(f) - (pass ? ex : 0);
            if (le < e) e = le;
        }
    if (e == 1000) e = 0;
    if (e < -60 || e > 60) FAIL("%s: the float weights are not int8 values times a power of two", L->name);
    L->own_wdata = malloc((size_t)n + 1);
    L->own_bdata = nb ? malloc(4 * nb) : NULL;
    if (!L->own_wdata || (nb && !L->own_bdata)) FAIL("%s: out of memory", L->name);
    for (int64_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, w->raw.data + 4 * i, 4);
        double q = ldexp((double)f, -e);
        if (q < -128 || q > 127) FAIL("%s: the float weights are not int8 values times a power of two (a weight is %g times the largest common power of two)", L->name, q);
        L->own_wdata[i] = (uint8_t)(int8_t)q;
    }
    for (size_t i = 0; i < nb; i++) {
        float f;
        memcpy(&f, b->raw.data + 4 * i, 4);
        double q = ldexp((double)f, -e - ex);
        if (fabs(q) >= 16777216.0) FAIL("%s: a bias of %g quanta is too large to be exact", L->name, q);
        int32_t v = (int32_t)q;
        memcpy(L->own_bdata + 4 * i, &v, 4);
    }
    L->own_w = *w;
    L->own_w.dtype = (Kiln__Ir__DataType)IR_I8;
    L->own_w.raw.data = L->own_wdata;
    L->own_w.raw.len = (size_t)n;
    L->w = &L->own_w;
    if (b) {
        L->own_b = *b;
        L->own_b.dtype = (Kiln__Ir__DataType)IR_I32;
        L->own_b.raw.data = L->own_bdata;
        L->own_b.raw.len = 4 * nb;
    }
    *sw = ldexp(1.0, e);
    return 1;
}

/* A DequantizeLinear node of an int8 value: its input, scale and zero point. */
static int dq_of(const Kiln__Ir__Graph *g, int64_t index, const char **src, double *scale, int32_t *zp, int want_type) {
    if (index < 0) return 0;
    const Kiln__Ir__Node *n = g->nodes[index];
    if (strcmp(n->op, "DequantizeLinear") != 0 || n->n_inputs < 2 || n->n_outputs != 1 || (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)) return 0;
    for (size_t i = 0; i < n->n_attributes; i++) {
        const char *a = n->attributes[i]->name;
        if (strcmp(a, "axis") != 0) return 0; /* block_size, output_dtype: not this form */
    }
    shape s = ak_graph_shape(g, n->inputs[0], 1);
    int zt = zero_point_of(g, n, 2, want_type == IR_I32, want_type, zp);
    if (!scale_of(g, n->inputs[1], scale) || zt != want_type) return 0;
    if (s.dtype && s.dtype != want_type) return 0;
    *src = n->inputs[0];
    return 1;
}

/* Matches a QDQ layer at anchor node `a` (Conv, Gemm, MatMul or Add). */
static int match_qdq(const Kiln__Ir__Graph *g, const known_shapes *k, size_t a, layer *L) {
    const Kiln__Ir__Node *n = g->nodes[a];
    int relu_only = strcmp(n->op, "Relu") == 0; /* DequantizeLinear -> Relu -> QuantizeLinear: an elementwise layer of one input */
    int add = strcmp(n->op, "Add") == 0 || relu_only, conv = strcmp(n->op, "Conv") == 0, gemm = strcmp(n->op, "Gemm") == 0;
    L->kind = add ? L_ADD : L_CONV;
    if (relu_only) L->relu = 1;
    L->form_qdq = 1;
    L->nodes[L->n_nodes++] = a;
    if (n->n_outputs != 1) FAIL("%s: one output expected", L->name);
    if (relu_only ? n->n_inputs != 1 : (n->n_inputs < 2 || n->n_inputs > 3 || (add && n->n_inputs != 2))) FAIL("%s: %zu inputs are not supported", L->name, n->n_inputs);
    double sx[2] = {0, 0}, sw = 0, sy = 0;
    /* activation inputs */
    int acts = relu_only ? 1 : add ? 2 : 1;
    for (int i = 0; i < acts; i++) {
        int64_t p = producer(g, n->inputs[i]);
        if (!dq_of(g, p, &L->in[i], &sx[i], &L->zin[i], IR_I8)) FAIL("%s: input %d is not a DequantizeLinear of an int8 tensor with a scalar scale and int8 zero point", L->name, i);
        if (ak_initializer(g, L->in[i])) FAIL("%s: input %d is a constant", L->name, i);
        if (!is_pow2(sx[i])) FAIL("%s: input scale %g is not a power of two (the QDQ form is lowered exactly only with power-of-two scales)", L->name, sx[i]);
        L->act_dq[L->n_act_dq++] = p;
        L->nodes[L->n_nodes++] = (size_t)p;
    }
    L->n_in = acts;
    if (!add) {
        int64_t p = producer(g, n->inputs[1]);
        const char *wsrc;
        int32_t wz;
        const Kiln__Ir__Tensor *folded_w = p < 0 ? ak_initializer(g, n->inputs[1]) : NULL, *folded_b = NULL;
        if (folded_w) {
            /* the host folded DequantizeLinear(weights) (and the bias's) into float32 constants */
            if (n->n_inputs == 3 && n->inputs[2][0]) {
                folded_b = producer(g, n->inputs[2]) < 0 ? ak_initializer(g, n->inputs[2]) : NULL;
                if (!folded_b) FAIL("%s: the bias must be a constant when the weights are", L->name);
            }
            if (!recover_weights(L, folded_w, folded_b, sx[0], &sw)) return 0;
        } else {
            if (!dq_of(g, p, &wsrc, &sw, &wz, IR_I8) || !ak_initializer(g, wsrc)) FAIL("%s: the weights are not a DequantizeLinear of an int8 initializer with a scalar scale (per-channel scales are not supported)", L->name);
            if (wz != 0) FAIL("%s: weight zero point %d is not 0", L->name, wz);
            if (!is_pow2(sw)) FAIL("%s: weight scale %g is not a power of two", L->name, sw);
            if (consumers(g, n->inputs[1], NULL) != 1) FAIL("%s: the dequantized weights have other consumers", L->name);
            L->nodes[L->n_nodes++] = (size_t)p;
            if (!weights_ok(L, ak_initializer(g, wsrc))) return 0;
        }
        shape x = value_shape(g, k, L->in[0]);
        if (conv) { L->w_layout = W_OIHW; if (!conv_geometry(L, n, x)) return 0; }
        else {
            if (gemm) {
                const Kiln__Ir__Attribute *al = ak_attribute(n, "alpha"), *be = ak_attribute(n, "beta");
                if ((al && (al->value_case != KILN__IR__ATTRIBUTE__VALUE_F || al->f != 1.0f)) || (be && (be->value_case != KILN__IR__ATTRIBUTE__VALUE_F || be->f != 1.0f)))
                    FAIL("%s: Gemm with alpha or beta other than 1 is not supported", L->name);
                if (ak_int_attr(n, "transA", 0) != 0) FAIL("%s: Gemm with transA is not supported", L->name);
                L->w_layout = ak_int_attr(n, "transB", 0) ? W_NK : W_KN;
            } else {
                L->w_layout = W_KN;
            }
            if (!dense_geometry(L, x)) return 0;
        }
        if (folded_b) {
            if (!bias_ok(L, &L->own_b)) return 0;
        } else if (n->n_inputs == 3 && n->inputs[2][0]) {
            if (!conv && !gemm) FAIL("%s: MatMul takes no bias", L->name);
            int64_t bp = producer(g, n->inputs[2]);
            const char *bsrc;
            double bs;
            int32_t bz;
            if (!dq_of(g, bp, &bsrc, &bs, &bz, IR_I32) || bz != 0) FAIL("%s: the bias is not a DequantizeLinear of an int32 initializer with zero point 0", L->name);
            if (bs != (double)(float)(sx[0] * sw)) FAIL("%s: the bias scale %g is not input scale × weight scale", L->name, bs);
            if (consumers(g, n->inputs[2], NULL) != 1) FAIL("%s: the dequantized bias has other consumers", L->name);
            if (!bias_ok(L, ak_initializer(g, bsrc))) return 0;
            L->nodes[L->n_nodes++] = (size_t)bp;
        }
    } else {
        shape a0 = value_shape(g, k, L->in[0]), a1 = relu_only ? a0 : value_shape(g, k, L->in[1]);
        if (!a0.known || !a1.known || a0.rank != a1.rank || (a0.rank != 4 && a0.rank != 2)) FAIL("%s: both inputs need the same known shape of rank 4 or 2", L->name);
        for (uint32_t d = 0; d < a0.rank; d++) if (a0.dims[d] != a1.dims[d]) FAIL("%s: broadcasting is not supported", L->name);
        if (a0.rank == 4) { if (a0.dims[0] != 1) FAIL("%s: batch must be 1", L->name); L->C = a0.dims[1]; L->H = a0.dims[2]; L->W = a0.dims[3]; }
        else { L->dense = 1; L->C = a0.dims[1]; L->H = 1; L->W = a0.dims[0]; }
        if (L->C < 1 || L->C > 2048 || L->H < 1 || L->H > 4096 || L->W < 1 || L->W > 4096) FAIL("%s: sizes out of the supported range", L->name);
        L->O = L->C; L->KH = L->KW = 1; L->sh = L->sw = 1; L->OH = L->H; L->OW = L->W;
    }
    /* [Relu ->] QuantizeLinear */
    const char *v = n->outputs[0];
    int64_t next;
    if (consumers(g, v, &next) != 1 || next < 0 || is_graph_output(g, v)) FAIL("%s: the result must feed exactly one QuantizeLinear (or Relu)", L->name);
    if (!relu_only && strcmp(g->nodes[next]->op, "Relu") == 0) {
        L->relu = 1;
        L->nodes[L->n_nodes++] = (size_t)next;
        v = g->nodes[next]->outputs[0];
        if (g->nodes[next]->n_outputs != 1 || consumers(g, v, &next) != 1 || next < 0 || is_graph_output(g, v)) FAIL("%s: the Relu must feed exactly one QuantizeLinear", L->name);
    }
    const Kiln__Ir__Node *q = g->nodes[next];
    if (strcmp(q->op, "QuantizeLinear") != 0 || q->n_inputs < 2 || q->n_outputs != 1 || strcmp(q->inputs[0], v) != 0) FAIL("%s: the result is not quantized by a QuantizeLinear", L->name);
    for (size_t i = 0; i < q->n_attributes; i++)
        if (strcmp(q->attributes[i]->name, "axis") != 0) FAIL("%s: QuantizeLinear attribute %s is not supported", L->name, q->attributes[i]->name);
    if (!scale_of(g, q->inputs[1], &sy)) FAIL("%s: the output scale must be a scalar float32 initializer", L->name);
    if (zero_point_of(g, q, 2, 0, IR_U8, &L->zy) != IR_I8) FAIL("%s: the output must be int8 (an int8 zero point)", L->name);
    if (!is_pow2(sy)) FAIL("%s: output scale %g is not a power of two", L->name, sy);
    L->nodes[L->n_nodes++] = (size_t)next;
    L->out = q->outputs[0];
    if (add) {
        int ea, eb, ey;
        frexp(sx[0], &ea); frexp(relu_only ? sx[0] : sx[1], &eb); frexp(sy, &ey);
        int e = ea < eb ? ea : eb;
        if (ey < e) e = ey;
        if (ea - e > 6 || eb - e > 6) FAIL("%s: the input scales differ from each other or the output scale by more than 2^6", L->name);
        L->add_w[0] = 1 << (ea - e); L->add_w[1] = relu_only ? 0 : 1 << (eb - e);
        L->m = 1; L->s = ey - e;
        if (L->s > 15) FAIL("%s: requantization shift %d is out of range", L->name, L->s);
    } else {
        double M = sx[0] * sw / sy;
        if (!exact_multiplier(M, &L->m, &L->s) || L->m != 1) FAIL("%s: requantization multiplier %g is not 2^-s with 0 <= s <= 15", L->name, M);
    }
    return check_bounds(L);
}

/* Matches QLinearConv / QLinearMatMul at node `a`. */
static int match_qlinear(const Kiln__Ir__Graph *g, const known_shapes *k, size_t a, layer *L) {
    const Kiln__Ir__Node *n = g->nodes[a];
    int conv = strcmp(n->op, "QLinearConv") == 0;
    L->kind = L_CONV;
    L->nodes[L->n_nodes++] = a;
    L->n_in = 1;
    if (n->n_inputs < 8 || n->n_inputs > (conv ? 9u : 8u) || n->n_outputs != 1) FAIL("%s: unexpected inputs or outputs", L->name);
    for (int i = 0; i < 8; i++) if (!n->inputs[i][0]) FAIL("%s: input %d is omitted", L->name, i);
    double sx, sw, sy;
    if (!scale_of(g, n->inputs[1], &sx) || !scale_of(g, n->inputs[4], &sw) || !scale_of(g, n->inputs[6], &sy))
        FAIL("%s: scales must be scalar float32 initializers (per-channel scales are not supported)", L->name);
    int32_t wz;
    if (zero_point_of(g, n, 2, 0, 0, &L->zin[0]) != IR_I8 || zero_point_of(g, n, 7, 0, 0, &L->zy) != IR_I8)
        FAIL("%s: activations must be int8 with scalar int8 zero points", L->name);
    if (zero_point_of(g, n, 5, 0, 0, &wz) != IR_I8) FAIL("%s: weights must be int8 with one zero point (per-channel weight zero points are not supported)", L->name);
    if (wz != 0) FAIL("%s: weight zero point %d is not 0", L->name, wz);
    L->in[0] = n->inputs[0];
    if (ak_initializer(g, L->in[0])) FAIL("%s: the input is a constant", L->name);
    shape x = value_shape(g, k, L->in[0]);
    if (x.dtype && x.dtype != IR_I8) FAIL("%s: the input must be int8", L->name);
    if (!weights_ok(L, ak_initializer(g, n->inputs[3]))) return 0;
    double M;
    if (conv) {
        L->w_layout = W_OIHW;
        if (!conv_geometry(L, n, x)) return 0;
        if (n->n_inputs == 9 && n->inputs[8][0] && !bias_ok(L, ak_initializer(g, n->inputs[8]))) return 0;
        M = sx * sw / sy; /* as kiln.reference computes it, in double */
    } else {
        L->w_layout = W_KN;
        if (!dense_geometry(L, x)) return 0;
        float p = (float)(sx * sw);                 /* kiln.reference rounds the product, then the quotient, to float32 */
        M = (double)(float)((double)p / sy);
    }
    if (!exact_multiplier(M, &L->m, &L->s)) FAIL("%s: requantization multiplier %.9g is not m·2^-s with m < 2^15 and s <= 15", L->name, M);
    L->out = n->outputs[0];
    return check_bounds(L);
}

/* Matches every anchor of g into `layers` (one per anchor node, invalid ones with a reason), then drops
 * layers whose activation DequantizeLinear also feeds a node no valid layer covers, until nothing changes.
 * covered[i] is then the index+1 of a valid layer covering node i (0: none). Returns the layer count, -1 on OOM. */
static long analyze(const Kiln__Ir__Graph *g, layer **out_layers, size_t *covered) {
    layer *layers = calloc(g->n_nodes + 1, sizeof *layers);
    known_shapes *k = calloc(1, sizeof *k);
    if (!layers || !k) { free(layers); free(k); return -1; }
    *out_layers = layers;
    size_t count = 0;
    for (size_t i = 0; i < g->n_nodes; i++) {
        const Kiln__Ir__Node *n = g->nodes[i];
        if (n->domain[0] && strcmp(n->domain, "ai.onnx") != 0) continue;
        int qdq = strcmp(n->op, "Conv") == 0 || strcmp(n->op, "Gemm") == 0 || strcmp(n->op, "MatMul") == 0 || strcmp(n->op, "Add") == 0;
        if (strcmp(n->op, "Relu") == 0 && n->n_inputs == 1) { /* a Relu of its own only when it reads a DequantizeLinear */
            int64_t p = producer(g, n->inputs[0]);
            qdq = p >= 0 && strcmp(g->nodes[p]->op, "DequantizeLinear") == 0;
        }
        int ql = strcmp(n->op, "QLinearConv") == 0 || strcmp(n->op, "QLinearMatMul") == 0;
        if (!qdq && !ql) continue;
        layer *L = &layers[count++];
        L->name = n->name[0] ? n->name : n->op;
        L->valid = qdq ? match_qdq(g, k, i, L) : match_qlinear(g, k, i, L);
        if (L->valid && L->OH * L->OW > 0 && k->count < VTA_MAX_LAYERS) {
            shape s = {IR_I8, 1, L->dense ? 2u : 4u, {0}};
            if (L->dense) { s.dims[0] = L->OW; s.dims[1] = L->O; }
            else { s.dims[0] = 1; s.dims[1] = L->O; s.dims[2] = L->OH; s.dims[3] = L->OW; }
            k->name[k->count] = L->out;
            k->s[k->count++] = s;
        }
    }
    free(k);
    for (int changed = 1; changed;) {
        changed = 0;
        for (size_t i = 0; i < g->n_nodes; i++) covered[i] = 0;
        for (size_t l = 0; l < count; l++)
            if (layers[l].valid)
                for (int j = 0; j < layers[l].n_nodes; j++) covered[layers[l].nodes[j]] = l + 1;
        for (size_t l = 0; l < count; l++) {
            layer *L = &layers[l];
            if (!L->valid) continue;
            for (int d = 0; d < L->n_act_dq && L->valid; d++) {
                const char *v = g->nodes[L->act_dq[d]]->outputs[0];
                if (is_graph_output(g, v)) L->valid = 0;
                for (size_t i = 0; i < g->n_nodes && L->valid; i++)
                    for (size_t j = 0; j < g->nodes[i]->n_inputs; j++)
                        if (strcmp(g->nodes[i]->inputs[j], v) == 0 && (!covered[i] || !layers[covered[i] - 1].valid)) { L->valid = 0; break; }
                if (!L->valid) { snprintf(L->why, sizeof L->why, "%s: its input DequantizeLinear also feeds a node this backend does not run", L->name); changed = 1; }
            }
        }
    }
    *out_layers = layers;
    return (long)count;
}
#undef FAIL

/* ---- the compiled program and its payload ------------------------------------------------------------- */

/* A tensor in DRAM, blocked as [CB][Hp][Wp][16] int8 with a border of (bt, bl, bb, br) filled with `fill`. */
typedef struct io_desc {
    uint32_t rank;                     /* 4: [1, C, H, W]; 2: [W, C] (dense: rows are the W axis) */
    uint32_t C, H, W, CB, Hp, Wp, bt, bl;
    uint64_t off;                      /* DRAM byte offset (a multiple of 256) */
    int32_t fill;
} io_desc;

/* A DRAM segment set before a run: bytes, or a fill value. */
typedef struct segment { uint64_t off, len; uint32_t is_fill; int32_t value; uint8_t *data; } segment;

typedef struct layer_info { char name[64]; uint32_t kind; uint64_t macs, elements; uint32_t begin, end; } layer_info;

typedef struct vta_program {
    uint32_t target;
    uint64_t dram_bytes;
    uint32_t insn_count, segment_count, input_count, output_count, layer_count;
    vta_insn *insns;
    segment *segments;
    io_desc *inputs, *outputs;
    layer_info *layers;
} vta_program;

/* A loaded program and its last run's profile (plugin ABI 1.4). */
typedef struct vta_executable {
    vta_program program;   /* first: a vta_program pointer to it is the executable's */
    ak_profile profile;
} vta_executable;

static void program_free(vta_program *p) {
    if (!p) return;
    for (uint32_t i = 0; p->segments && i < p->segment_count; i++) free(p->segments[i].data);
    free(p->insns); free(p->segments); free(p->inputs); free(p->outputs); free(p->layers);
    memset(p, 0, sizeof *p);
}

static uint64_t io_bytes(const io_desc *t) { return (uint64_t)t->CB * t->Hp * t->Wp * VTA_BLOCK; }

/* ---- payload bytes ---- */


static void put_io(ak_bytes *b, const io_desc *t) {
    uint32_t f[9] = {t->rank, t->C, t->H, t->W, t->CB, t->Hp, t->Wp, t->bt, t->bl};
    for (int i = 0; i < 9; i++) ak_put_u32(b, f[i]);
    ak_put_u64(b, t->off);
    ak_put_u32(b, (uint32_t)t->fill);
}

static void encode_program(const vta_program *p, ak_bytes *b) {
    ak_put(b, "KVTA", 4);
    ak_put_u32(b, 1);
    ak_put_u32(b, p->target);
    ak_put_u64(b, p->dram_bytes);
    uint32_t counts[5] = {p->insn_count, p->segment_count, p->input_count, p->output_count, p->layer_count};
    for (int i = 0; i < 5; i++) ak_put_u32(b, counts[i]);
    for (uint32_t i = 0; i < p->insn_count; i++) {
        uint8_t bytes[VTA_INSN_BYTES];
        if (vta_encode(&p->insns[i], bytes)) { b->failed = 2; return; }
        ak_put(b, bytes, VTA_INSN_BYTES);
    }
    for (uint32_t i = 0; i < p->segment_count; i++) {
        const segment *s = &p->segments[i];
        ak_put_u64(b, s->off); ak_put_u64(b, s->len); ak_put_u32(b, s->is_fill); ak_put_u32(b, (uint32_t)s->value);
        if (!s->is_fill) ak_put(b, s->data, (size_t)s->len);
    }
    for (uint32_t i = 0; i < p->input_count; i++) put_io(b, &p->inputs[i]);
    for (uint32_t i = 0; i < p->output_count; i++) put_io(b, &p->outputs[i]);
    for (uint32_t i = 0; i < p->layer_count; i++) {
        const layer_info *l = &p->layers[i];
        ak_put(b, l->name, sizeof l->name);
        ak_put_u32(b, l->kind); ak_put_u64(b, l->macs); ak_put_u64(b, l->elements); ak_put_u32(b, l->begin); ak_put_u32(b, l->end);
    }
}

#define BAD(...) do { snprintf(why, why_size, __VA_ARGS__); program_free(p); return -1; } while (0)

static int get_io(ak_reader *r, io_desc *t, uint64_t dram, char *why, size_t why_size) {
    uint32_t f[9];
    for (int i = 0; i < 9; i++) f[i] = ak_get_u32(r);
    t->rank = f[0]; t->C = f[1]; t->H = f[2]; t->W = f[3]; t->CB = f[4]; t->Hp = f[5]; t->Wp = f[6]; t->bt = f[7]; t->bl = f[8];
    t->off = ak_get_u64(r);
    t->fill = (int32_t)ak_get_u32(r);
    if (r->bad) { snprintf(why, why_size, "payload truncated in a tensor descriptor"); return -1; }
    if (t->rank == 0 && !t->C && !t->H && !t->W && !t->CB && !t->Hp && !t->Wp && !t->bt && !t->bl && !t->off && !t->fill) return 0; /* an ignored input */
    if ((t->rank != 2 && t->rank != 4) || t->C < 1 || t->C > 2048 || t->H < 1 || t->W < 1 || t->H > VTA_MAX_DIM || t->W > VTA_MAX_DIM ||
        t->CB != (t->C + VTA_BLOCK - 1) / VTA_BLOCK || t->Hp < t->H + t->bt || t->Wp < t->W + t->bl || t->Hp > VTA_MAX_DIM || t->Wp > VTA_MAX_DIM ||
        (t->rank == 2 && t->H != 1) || t->fill < -128 || t->fill > 127 || t->off % 256 || t->off > dram || io_bytes(t) > dram - t->off) {
        snprintf(why, why_size, "a tensor descriptor is inconsistent or outside the DRAM image");
        return -1;
    }
    return 0;
}

/* Decodes and validates a payload: every instruction, DRAM range, buffer range and the total work. */
static int decode_program(const void *data, size_t size, vta_program *p, char *why, size_t why_size) {
    memset(p, 0, sizeof *p);
    if (!data || size < 40 || memcmp(data, "KVTA", 4) != 0) BAD("not a samplevta.fpga payload (%zu bytes, no KVTA header)", size);
    ak_reader r = {data, size, 4, 0};
    uint32_t version = ak_get_u32(&r);
    if (version != 1) BAD("payload version %u is not supported (this backend reads version 1)", version);
    p->target = ak_get_u32(&r);
    if (p->target > 1) BAD("unknown target %u", p->target);
    p->dram_bytes = ak_get_u64(&r);
    if (p->dram_bytes > VTA_MAX_DRAM) BAD("the payload asks for %llu bytes of DRAM (at most %llu)", (unsigned long long)p->dram_bytes, (unsigned long long)VTA_MAX_DRAM);
    p->insn_count = ak_get_u32(&r); p->segment_count = ak_get_u32(&r); p->input_count = ak_get_u32(&r); p->output_count = ak_get_u32(&r); p->layer_count = ak_get_u32(&r);
    if (r.bad || p->insn_count > size / VTA_INSN_BYTES || p->segment_count > size / 24 || p->input_count > VTA_MAX_IO || p->output_count > VTA_MAX_IO ||
        p->layer_count > VTA_MAX_LAYERS || p->insn_count == 0)
        BAD("payload counts exceed its size or the limits");
    p->insns = calloc(p->insn_count, sizeof *p->insns);
    p->segments = calloc(p->segment_count + 1, sizeof *p->segments);
    p->inputs = calloc(p->input_count + 1, sizeof *p->inputs);
    p->outputs = calloc(p->output_count + 1, sizeof *p->outputs);
    p->layers = calloc(p->layer_count + 1, sizeof *p->layers);
    if (!p->insns || !p->segments || !p->inputs || !p->outputs || !p->layers) BAD("out of memory");
    uint64_t work = 0;
    for (uint32_t i = 0; i < p->insn_count; i++) {
        if (size - r.at < VTA_INSN_BYTES) BAD("payload truncated in instruction %u", i);
        char reason[160];
        if (vta_decode((const uint8_t *)data + r.at, &p->insns[i], reason, sizeof reason)) BAD("instruction %u: %s", i, reason);
        r.at += VTA_INSN_BYTES;
        const vta_insn *in = &p->insns[i];
        if (in->opcode == VTA_OP_LOAD || in->opcode == VTA_OP_STORE) {
            uint64_t es = vta_elem_bytes(in->mem);
            if (in->y_size && in->x_size) {
                if (in->x_stride < in->x_size) BAD("instruction %u: x_stride is below x_size", i);
                uint64_t end = ((uint64_t)in->dram_base + (uint64_t)(in->y_size - 1) * in->x_stride + in->x_size) * es;
                if (end > p->dram_bytes) BAD("instruction %u reads or writes past the DRAM image", i);
            }
            work += (uint64_t)in->y_size * in->x_size * es;
        } else if (in->opcode == VTA_OP_GEMM) {
            work += vta_uop_iterations(in) * VTA_BLOCK * VTA_BLOCK;
        } else if (in->opcode == VTA_OP_ALU) {
            work += vta_uop_iterations(in) * VTA_BLOCK;
        }
        if (work > VTA_MAX_WORK) BAD("the program's work exceeds this backend's limit (%llu)", (unsigned long long)VTA_MAX_WORK);
    }
    if (p->insns[p->insn_count - 1].opcode != VTA_OP_FINISH) BAD("the program does not end with FINISH");
    for (uint32_t i = 0; i < p->segment_count; i++) {
        segment *s = &p->segments[i];
        s->off = ak_get_u64(&r); s->len = ak_get_u64(&r); s->is_fill = ak_get_u32(&r); s->value = (int32_t)ak_get_u32(&r);
        if (r.bad) BAD("payload truncated in segment %u", i);
        if (s->is_fill > 1 || s->off > p->dram_bytes || s->len > p->dram_bytes - s->off) BAD("segment %u lies outside the DRAM image", i);
        if (!s->is_fill) {
            if (s->len > size - r.at) BAD("payload truncated in segment %u's data", i);
            s->data = malloc(s->len ? (size_t)s->len : 1);
            if (!s->data) BAD("out of memory");
            memcpy(s->data, (const uint8_t *)data + r.at, (size_t)s->len);
            r.at += (size_t)s->len;
        }
    }
    for (uint32_t i = 0; i < p->input_count; i++) if (get_io(&r, &p->inputs[i], p->dram_bytes, why, why_size)) { program_free(p); return -1; }
    for (uint32_t i = 0; i < p->output_count; i++) if (get_io(&r, &p->outputs[i], p->dram_bytes, why, why_size)) { program_free(p); return -1; }
    for (uint32_t i = 0; i < p->layer_count; i++) {
        layer_info *l = &p->layers[i];
        if (size - r.at < sizeof l->name) BAD("payload truncated in layer %u", i);
        memcpy(l->name, (const uint8_t *)data + r.at, sizeof l->name);
        r.at += sizeof l->name;
        l->name[sizeof l->name - 1] = 0;
        l->kind = ak_get_u32(&r); l->macs = ak_get_u64(&r); l->elements = ak_get_u64(&r); l->begin = ak_get_u32(&r); l->end = ak_get_u32(&r);
        if (r.bad) BAD("payload truncated in layer %u", i);
        if (l->begin > l->end || l->end > p->insn_count || l->kind > 2) BAD("layer %u's instruction range or kind is invalid", i);
    }
    if (r.at != size) BAD("%zu trailing bytes after the payload", size - r.at);
    return 0;
}
#undef BAD

/* ---- code generation ------------------------------------------------------------------------------ */

/* Builds the instruction stream with dependency tokens expressed as events: a push returns the event's
 * number on its queue; wait(module, queue, k) makes the module's next instruction(s) pop until k tokens
 * of that queue were popped, so that it starts only after the k-th push (pushes of one module are in
 * program order, so every earlier event of that module has completed too). */
typedef struct builder {
    vta_insn *insns; size_t n, cap;
    uint64_t pushes[VTA_QUEUES], claimed[VTA_QUEUES];
    uint32_t pending[VTA_MODULES][2];   /* pops to attach: [module][0 = prev, 1 = next] */
    segment *segs; size_t nseg, segcap;
    uint64_t dram;
    uint32_t *uops; size_t nuops, uopcap;
    int failed;
} builder;

static vta_insn nop(uint32_t module) {
    vta_insn in = {0};
    if (module == VTA_MOD_LOAD) { in.opcode = VTA_OP_LOAD; in.mem = VTA_MEM_INP; }
    else if (module == VTA_MOD_STORE) { in.opcode = VTA_OP_STORE; in.mem = VTA_MEM_OUT; }
    else in.opcode = VTA_OP_GEMM;
    return in;
}

static size_t append(builder *b, vta_insn in) {
    if (b->failed) return 0;
    if (b->n >= VTA_MAX_INSNS) { b->failed = 5; return 0; }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        vta_insn *p = realloc(b->insns, cap * sizeof *p);
        if (!p) { b->failed = 1; return 0; }
        b->insns = p; b->cap = cap;
    }
    b->insns[b->n] = in;
    return b->n++;
}

/* Appends `in` with the module's pending pops (extra pops go on NOPs before it). */
static size_t emit(builder *b, vta_insn in) {
    uint32_t m = vta_module(&in);
    for (int dir = 0; dir < 2; dir++) {
        while (b->pending[m][dir] > 1) {
            vta_insn n = nop(m);
            if (dir == 0) n.pop_prev = 1; else n.pop_next = 1;
            append(b, n);
            b->pending[m][dir]--;
        }
        if (b->pending[m][dir] == 1) { if (dir == 0) in.pop_prev = 1; else in.pop_next = 1; b->pending[m][dir] = 0; }
    }
    return append(b, in);
}

/* Pushes a token from instruction `at` (the module's latest) towards `dir` (0 prev, 1 next): the event number. */
static uint64_t push(builder *b, size_t at, int dir) {
    if (b->failed) return 0;
    vta_insn *in = &b->insns[at];
    uint32_t m = vta_module(in);
    int q = vta_queue(m, 0, dir == 0);
    if (q < 0) { b->failed = 2; return 0; }
    if (dir == 0 ? in->push_prev : in->push_next) { at = emit(b, nop(m)); in = &b->insns[at]; if (b->failed) return 0; }
    if (dir == 0) in->push_prev = 1; else in->push_next = 1;
    return ++b->pushes[q];
}

static void wait_event(builder *b, uint32_t module, int dir, uint64_t event) {
    int q = vta_queue(module, 1, dir == 0);
    if (q < 0) { b->failed = 2; return; }
    if (event > b->claimed[q]) { b->pending[module][dir] += (uint32_t)(event - b->claimed[q]); b->claimed[q] = event; }
}

/* DRAM: a new region of `bytes`, 256-aligned. */
static uint64_t dram_alloc(builder *b, uint64_t bytes) {
    uint64_t at = b->dram;
    b->dram += (bytes + 255) & ~(uint64_t)255;
    if (b->dram > VTA_MAX_DRAM) b->failed = 3;
    return at;
}

static segment *add_segment(builder *b, uint64_t off, uint64_t len) {
    if (b->failed) return NULL;
    if (b->nseg == b->segcap) {
        size_t cap = b->segcap ? 2 * b->segcap : 64;
        segment *s = realloc(b->segs, cap * sizeof *s);
        if (!s) { b->failed = 1; return NULL; }
        b->segs = s; b->segcap = cap;
    }
    segment *s = &b->segs[b->nseg++];
    memset(s, 0, sizeof *s);
    s->off = off; s->len = len;
    return s;
}

static uint8_t *bytes_segment(builder *b, uint64_t off, uint64_t len) {
    segment *s = add_segment(b, off, len);
    if (!s) return NULL;
    s->data = calloc(len ? (size_t)len : 1, 1);
    if (!s->data) { b->nseg--; b->failed = 1; return NULL; }
    return s->data;
}

/* The micro-op (dst, src, wgt) at a new index of the layer's kernel table, or -1 when the table is full. */
static int64_t uop(builder *b, uint32_t dst, uint32_t src, uint32_t wgt) {
    if (b->nuops >= VTA_UOP_DEPTH) return -1;
    if (b->nuops == b->uopcap) {
        size_t cap = b->uopcap ? 2 * b->uopcap : 1024;
        uint32_t *u = realloc(b->uops, cap * sizeof *u);
        if (!u) { b->failed = 1; return -1; }
        b->uops = u; b->uopcap = cap;
    }
    b->uops[b->nuops] = vta_uop_encode((vta_uop){dst, src, wgt});
    return (int64_t)b->nuops++;
}

/* A one-uop kernel (dst, src) for elementwise ALU over a tile, memoized in a small table per layer. */
typedef struct alu_kernel { uint32_t dst, src, at; } alu_kernel;
typedef struct kernels { alu_kernel k[256]; size_t n; } kernels;
static int64_t alu_uop(builder *b, kernels *ks, uint32_t dst, uint32_t src) {
    for (size_t i = 0; i < ks->n; i++) if (ks->k[i].dst == dst && ks->k[i].src == src) return ks->k[i].at;
    int64_t at = uop(b, dst, src, 0);
    if (at >= 0 && ks->n < 256) ks->k[ks->n++] = (alu_kernel){dst, src, (uint32_t)at};
    return at;
}

/* A tile's geometry for the ALU loops: toc blocks of `pitch` entries, `count` entries used in each. */
typedef struct tile_loop { uint32_t toc, pitch, count; } tile_loop;

/* ALU op over tile X (with Y as source, or an immediate). */
static void alu_op(builder *b, kernels *ks, tile_loop t, uint32_t op, uint32_t X, int use_imm, int32_t imm, uint32_t Y) {
    int64_t u = alu_uop(b, ks, X, use_imm ? X : Y);
    if (u < 0) { if (!b->failed) b->failed = 4; return; }
    vta_insn in = {0};
    in.opcode = VTA_OP_ALU; in.alu_op = op; in.use_imm = (uint32_t)use_imm; in.imm = imm;
    in.uop_bgn = (uint32_t)u; in.uop_end = (uint32_t)u + 1;
    in.iter_out = t.toc; in.dst_fo = t.pitch; in.src_fo = t.pitch;
    in.iter_in = t.count; in.dst_fi = 1; in.src_fi = 1;
    emit(b, in);
}

/* A plan of one layer: its tensors and tile sizes. */
typedef struct plan {
    const layer *L;
    io_desc *in[2], *out;
    uint32_t ICB, OCB, toc_max, th_max, rows_max, Wn, RP, col0[2];
    uint64_t w_off, bias_off;
} plan;

/* Chooses the tile sizes for L (toc_max output blocks × th_max output rows). Returns 0 or -1 with the reason. */
static int plan_tiles(plan *P, char *why, size_t size) {
    const layer *L = P->L;
    P->OCB = (uint32_t)((L->O + VTA_BLOCK - 1) / VTA_BLOCK);
    P->ICB = (uint32_t)((L->C + VTA_BLOCK - 1) / VTA_BLOCK);
    P->Wn = (uint32_t)((L->OW - 1) * L->sw + L->KW);
    uint32_t wblk = P->ICB * (uint32_t)(L->KH * L->KW);
    uint32_t toc = L->kind == L_ADD ? P->OCB : (WGT_HALF / wblk < P->OCB ? WGT_HALF / wblk : P->OCB);
    if (toc == 0) { snprintf(why, size, "%s: one output block's weights (%u 16×16 blocks) exceed half the wgt buffer", L->name, wblk); return -1; }
    if (P->OCB > ACC_BIAS_ENTRIES) { snprintf(why, size, "%s: more than %d output channels", L->name, ACC_BIAS_ENTRIES * VTA_BLOCK); return -1; }
    for (; toc >= 1; toc--) {
        for (int64_t th = L->OH; th >= 1; th--) {
            uint64_t rows = (uint64_t)(th - 1) * (uint64_t)L->sh + (uint64_t)L->KH;
            uint64_t blocks = L->kind == L_ADD ? (uint64_t)L->n_in * toc : P->ICB;
            if ((uint64_t)toc * (uint64_t)th * (uint64_t)L->OW > TILE_MAX_ENTRIES || blocks * rows * P->Wn > INP_HALF) continue;
            if ((uint64_t)L->sh * P->Wn > 2047) continue;
            P->toc_max = toc; P->th_max = (uint32_t)th; P->rows_max = (uint32_t)rows; P->RP = (uint32_t)(rows * P->Wn);
            return 0;
        }
    }
    snprintf(why, size, "%s: even one output row of one channel block (%lld columns) does not fit the buffers (column tiling is not implemented)", L->name, (long long)L->OW);
    return -1;
}

/* State carried between layers: which weights each wgt half holds and the events guarding each half. */
typedef struct flow {
    uint64_t tile;                      /* global tile counter */
    uint64_t inp_free[2];               /* c2l event: compute finished with inp/wgt half h */
    uint64_t out_free[2];               /* s2c event: store finished with acc/out half h */
    uint64_t last_store;                /* s2c event of the latest tile's stores */
    uint64_t barrier;                   /* c2l event: the previous layer's stores are all done */
    int64_t wgt_key[2];
} flow;

/* Lowers one layer. */
static int lower_layer(builder *b, flow *f, plan *P, uint32_t layer_index, char *why, size_t size) {
    const layer *L = P->L;
    b->nuops = 0;
    kernels *ks = calloc(1, sizeof *ks);
    if (!ks) { b->failed = 1; return -1; }
    uint64_t uop_off = 0;
    /* GEMM kernels for each half (micro-ops first, so that the table is complete before the LOAD UOP) */
    uint32_t gemm_bgn[2], gemm_end[2], reset_at[2];
    uint32_t E = P->toc_max * P->th_max * (uint32_t)L->OW;
    for (int h = 0; h < 2; h++) {
        uint32_t A = ACC_BIAS_ENTRIES + (uint32_t)h * 3 * E, I = (uint32_t)h * INP_HALF, Wb = (uint32_t)h * WGT_HALF;
        int64_t first = -1, u = -1;
        if (L->kind == L_CONV) {
            for (uint32_t icb = 0; icb < P->ICB; icb++)
                for (uint32_t kh = 0; kh < L->KH; kh++)
                    for (uint32_t kw = 0; kw < L->KW; kw++)
                        for (uint32_t c = 0; c < L->OW; c++) {
                            u = uop(b, A + c, I + icb * P->RP + kh * P->Wn + c * (uint32_t)L->sw + kw, Wb + (icb * (uint32_t)L->KH + kh) * (uint32_t)L->KW + kw);
                            if (u < 0) goto full;
                            if (first < 0) first = u;
                        }
        } else {
            for (uint32_t i = 0; i < (uint32_t)L->n_in; i++)
                for (uint32_t c = 0; c < L->OW; c++) {
                    u = uop(b, A + c, I + i * P->toc_max * P->RP + c, Wb + i);
                    if (u < 0) goto full;
                    if (first < 0) first = u;
                }
        }
        gemm_bgn[h] = (uint32_t)first; gemm_end[h] = (uint32_t)u + 1;
        u = uop(b, A, 0, 0);
        if (u < 0) goto full;
        reset_at[h] = (uint32_t)u;
    }
    /* the ALU kernels are added while emitting; the table's DRAM is reserved after emission */
    /* compute: micro-ops and bias (in order with the compute module's earlier work) */
    size_t uop_load = emit(b, (vta_insn){.opcode = VTA_OP_LOAD, .mem = VTA_MEM_UOP, .sram_base = 0, .y_size = 1});
    {
        vta_insn in = {0};
        in.opcode = VTA_OP_LOAD; in.mem = VTA_MEM_ACC; in.sram_base = 0; in.dram_base = (uint32_t)(P->bias_off / VTA_ACC_ELEM_BYTES);
        in.y_size = 1; in.x_size = P->OCB; in.x_stride = P->OCB;
        emit(b, in);
    }
    uint32_t OTILES = (P->OCB + P->toc_max - 1) / P->toc_max, RTILES = (uint32_t)((L->OH + P->th_max - 1) / P->th_max);
    int first_tile = 1;
    for (uint32_t ot = 0; ot < OTILES; ot++)
        for (uint32_t rt = 0; rt < RTILES; rt++) {
            uint32_t ocb0 = ot * P->toc_max, toc = P->OCB - ocb0 < P->toc_max ? P->OCB - ocb0 : P->toc_max;
            uint32_t r0 = rt * P->th_max, th = (uint32_t)L->OH - r0 < P->th_max ? (uint32_t)L->OH - r0 : P->th_max;
            int h = (int)(f->tile & 1);
            uint32_t A = ACC_BIAS_ENTRIES + (uint32_t)h * 3 * E, T = A + E, U = A + 2 * E, I = (uint32_t)h * INP_HALF, Wb = (uint32_t)h * WGT_HALF;
            /* ---- load ---- */
            wait_event(b, VTA_MOD_LOAD, 1, f->inp_free[h]);
            if (first_tile) wait_event(b, VTA_MOD_LOAD, 1, f->barrier);
            size_t last_load = 0;
            int64_t key = ((int64_t)layer_index << 20) | ot;
            if (f->wgt_key[h] != key) {
                vta_insn in = {0};
                in.opcode = VTA_OP_LOAD; in.mem = VTA_MEM_WGT; in.sram_base = Wb; in.y_size = 1;
                uint32_t wblk = L->kind == L_ADD ? (uint32_t)L->n_in : P->ICB * (uint32_t)(L->KH * L->KW);
                in.dram_base = (uint32_t)(P->w_off / VTA_WGT_ELEM_BYTES) + (L->kind == L_ADD ? 0 : ocb0 * wblk);
                in.x_size = L->kind == L_ADD ? (uint32_t)L->n_in : toc * wblk; in.x_stride = in.x_size;
                last_load = emit(b, in);
                f->wgt_key[h] = key;
            }
            uint32_t rows = L->kind == L_ADD ? th : (th - 1) * (uint32_t)L->sh + (uint32_t)L->KH;
            for (int i = 0; i < (L->kind == L_ADD ? L->n_in : 1); i++) {
                const io_desc *t = P->in[i];
                uint32_t blocks = L->kind == L_ADD ? toc : P->ICB;
                for (uint32_t cb = 0; cb < blocks; cb++) {
                    uint32_t src_cb = L->kind == L_ADD ? ocb0 + cb : cb;
                    uint64_t row0 = L->kind == L_ADD ? t->bt + r0 : t->bt - (uint32_t)L->pt + (uint64_t)r0 * (uint64_t)L->sh;
                    vta_insn in = {0};
                    in.opcode = VTA_OP_LOAD; in.mem = VTA_MEM_INP;
                    in.sram_base = I + ((uint32_t)i * P->toc_max + cb) * P->RP;
                    if (L->kind != L_ADD) in.sram_base = I + cb * P->RP;
                    in.dram_base = (uint32_t)(t->off / VTA_INP_ELEM_BYTES + ((uint64_t)src_cb * t->Hp + row0) * t->Wp + P->col0[i]);
                    in.y_size = rows; in.x_size = L->kind == L_ADD ? (uint32_t)L->W : P->Wn; in.x_stride = t->Wp;
                    last_load = emit(b, in);
                }
            }
            uint64_t loaded = push(b, last_load, 1);
            /* ---- compute ---- */
            wait_event(b, VTA_MOD_COMPUTE, 0, loaded);
            wait_event(b, VTA_MOD_COMPUTE, 1, f->out_free[h]);
            tile_loop tl = {toc, P->th_max * (uint32_t)L->OW, th * (uint32_t)L->OW};
            vta_insn g = {0};
            g.opcode = VTA_OP_GEMM; g.reset = 1; g.uop_bgn = reset_at[h]; g.uop_end = reset_at[h] + 1;
            g.iter_out = toc; g.dst_fo = tl.pitch; g.iter_in = tl.count; g.dst_fi = 1;
            emit(b, g);
            memset(&g, 0, sizeof g);
            g.opcode = VTA_OP_GEMM; g.uop_bgn = gemm_bgn[h]; g.uop_end = gemm_end[h];
            g.iter_out = toc; g.dst_fo = tl.pitch;
            g.iter_in = th; g.dst_fi = (uint32_t)L->OW;
            if (L->kind == L_CONV) { g.src_fo = 0; g.wgt_fo = P->ICB * (uint32_t)(L->KH * L->KW); g.src_fi = (uint32_t)L->sh * P->Wn; g.wgt_fi = 0; }
            else { g.src_fo = P->RP; g.wgt_fo = 0; g.src_fi = P->Wn; g.wgt_fi = 0; }
            emit(b, g);
            /* bias: one acc entry per output block, broadcast over the tile's positions */
            int64_t bu = alu_uop(b, ks, A, ocb0);
            if (bu < 0) goto full;
            vta_insn a = {0};
            a.opcode = VTA_OP_ALU; a.alu_op = VTA_ALU_ADD; a.uop_bgn = (uint32_t)bu; a.uop_end = (uint32_t)bu + 1;
            a.iter_out = toc; a.dst_fo = tl.pitch; a.src_fo = 1; a.iter_in = tl.count; a.dst_fi = 1; a.src_fi = 0;
            emit(b, a);
            if (L->m != 1) alu_op(b, ks, tl, VTA_ALU_MUL, A, 1, L->m, 0);
            if (L->s > 0) { /* round half to even: q = (v + 2^(s-1)) >> s, minus 1 when a tie gave an odd q */
                int32_t s = L->s;
                alu_op(b, ks, tl, VTA_ALU_ADD, A, 1, (int32_t)1 << (s - 1), 0);
                alu_op(b, ks, tl, VTA_ALU_MUL, T, 1, 0, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, T, 0, 0, A);            /* T = t */
                alu_op(b, ks, tl, VTA_ALU_SHR, A, 1, s, 0);           /* A = q */
                alu_op(b, ks, tl, VTA_ALU_MUL, U, 1, 0, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, U, 0, 0, A);
                alu_op(b, ks, tl, VTA_ALU_MUL, U, 1, -((int32_t)1 << s), 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, T, 0, 0, U);            /* T = t - q·2^s in [0, 2^s) */
                alu_op(b, ks, tl, VTA_ALU_MIN, T, 1, 1, 0);
                alu_op(b, ks, tl, VTA_ALU_MUL, T, 1, -1, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, T, 1, 1, 0);            /* T = 1 on a tie */
                alu_op(b, ks, tl, VTA_ALU_MUL, U, 1, 0, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, U, 0, 0, A);
                alu_op(b, ks, tl, VTA_ALU_SHR, U, 1, 1, 0);
                alu_op(b, ks, tl, VTA_ALU_MUL, U, 1, -2, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, U, 0, 0, A);            /* U = q mod 2 */
                alu_op(b, ks, tl, VTA_ALU_MIN, T, 0, 0, U);            /* T = tie and odd */
                alu_op(b, ks, tl, VTA_ALU_MUL, T, 1, -1, 0);
                alu_op(b, ks, tl, VTA_ALU_ADD, A, 0, 0, T);
            }
            if (L->relu) alu_op(b, ks, tl, VTA_ALU_MAX, A, 1, 0, 0);
            if (L->zy) alu_op(b, ks, tl, VTA_ALU_ADD, A, 1, L->zy, 0);
            alu_op(b, ks, tl, VTA_ALU_MAX, A, 1, -128, 0);
            alu_op(b, ks, tl, VTA_ALU_MIN, A, 1, 127, 0);
            size_t last_compute = b->n ? b->n - 1 : 0;
            f->inp_free[h] = push(b, last_compute, 0);
            uint64_t computed = push(b, b->n - 1, 1);
            /* ---- store ---- */
            wait_event(b, VTA_MOD_STORE, 0, computed);
            size_t last_store = 0;
            const io_desc *o = P->out;
            for (uint32_t cb = 0; cb < toc; cb++) {
                vta_insn in = {0};
                in.opcode = VTA_OP_STORE; in.mem = VTA_MEM_OUT; in.sram_base = A + cb * tl.pitch;
                in.dram_base = (uint32_t)(o->off / VTA_OUT_ELEM_BYTES + ((uint64_t)(ocb0 + cb) * o->Hp + o->bt + r0) * o->Wp + o->bl);
                in.y_size = th; in.x_size = (uint32_t)L->OW; in.x_stride = o->Wp;
                last_store = emit(b, in);
            }
            f->out_free[h] = f->last_store = push(b, last_store, 0);
            f->tile++;
            first_tile = 0;
            if (b->failed) break;
        }
    /* layer barrier: compute waits for every store of this layer, then tells the load module */
    wait_event(b, VTA_MOD_COMPUTE, 1, f->last_store);
    size_t bar = emit(b, nop(VTA_MOD_COMPUTE));
    f->barrier = push(b, bar, 0);
    /* the micro-op table now is complete: place it in DRAM and patch the LOAD UOP */
    if (!b->failed) {
        uop_off = dram_alloc(b, (uint64_t)b->nuops * VTA_UOP_BYTES);
        uint8_t *d = bytes_segment(b, uop_off, (uint64_t)b->nuops * VTA_UOP_BYTES);
        if (d) for (size_t i = 0; i < b->nuops; i++) for (int k = 0; k < 4; k++) d[4 * i + k] = (uint8_t)(b->uops[i] >> 8 * k);
        if (!b->failed) {
            vta_insn *ul = &b->insns[uop_load];
            ul->dram_base = (uint32_t)(uop_off / VTA_UOP_BYTES);
            ul->x_size = ul->x_stride = (uint32_t)b->nuops;
        }
    }
    free(ks);
    if (b->failed == 4) goto full_freed;
    return b->failed ? -1 : 0;
full:
    free(ks);
full_freed:
    snprintf(why, size, "%s: its micro-op kernels exceed the %d-entry uop buffer", L->name, VTA_UOP_DEPTH);
    if (!b->failed) b->failed = 4;
    return -1;
}

/* A DRAM tensor by value name during compile. */
typedef struct tensor_ref { const char *name; io_desc d; int has_fill, is_input; uint32_t bb, br; } tensor_ref;

static tensor_ref *find_tensor(tensor_ref *t, size_t n, const char *name) {
    for (size_t i = 0; i < n; i++) if (strcmp(t[i].name, name) == 0) return &t[i];
    return NULL;
}

/* Compiles the valid layers of g (every node of g covered) for `target` into *p. UNSUPPORTED-worthy
 * problems return 1 with the reason; internal failures -1; success 0. */
static int compile_graph(const Kiln__Ir__Graph *g, layer *layers, size_t count, uint32_t target, vta_program *p, char *why, size_t size) {
    memset(p, 0, sizeof *p);
    int rc = 1;
    size_t nt = 0;
    tensor_ref *ts = calloc(2 * count + g->n_inputs + 1, sizeof *ts);
    plan *plans = calloc(count + 1, sizeof *plans);
    builder b = {0};
    flow fl = {0};
    fl.wgt_key[0] = fl.wgt_key[1] = -1;
    if (!ts || !plans) { rc = -1; snprintf(why, size, "out of memory"); goto done; }
    /* graph inputs: int8 tensors of known shape read by layers */
    for (size_t i = 0; i < g->n_inputs; i++) {
        shape s = ak_graph_shape(g, g->inputs[i]->name, 1);
        tensor_ref *t = &ts[nt++];
        t->name = g->inputs[i]->name;
        t->is_input = 1;
        if (ak_initializer(g, t->name)) { t->d.rank = 0; continue; } /* a constant the program already holds: ignored at run time */
        if (s.dtype != IR_I8 || !s.known || (s.rank != 4 && s.rank != 2) || (s.rank == 4 && s.dims[0] != 1)) {
            snprintf(why, size, "graph input '%s' is not an int8 tensor of known shape [1, C, H, W] or [M, K]", t->name);
            goto done;
        }
        t->d.rank = s.rank;
        if (s.rank == 4) { t->d.C = (uint32_t)s.dims[1]; t->d.H = (uint32_t)s.dims[2]; t->d.W = (uint32_t)s.dims[3]; }
        else { t->d.C = (uint32_t)s.dims[1]; t->d.H = 1; t->d.W = (uint32_t)s.dims[0]; }
        if (s.dims[s.rank == 4 ? 1 : 1] < 1 || s.dims[s.rank - 1] < 1 || (s.rank == 4 && s.dims[2] < 1) || t->d.C > 2048 || t->d.H > 4096 || t->d.W > 4096) {
            snprintf(why, size, "graph input '%s' has a shape out of range", t->name);
            goto done;
        }
    }
    for (size_t l = 0; l < count; l++) {
        const layer *L = &layers[l];
        tensor_ref *t = &ts[nt++];
        t->name = L->out;
        t->d.rank = L->dense ? 2 : 4;
        t->d.C = (uint32_t)L->O; t->d.H = (uint32_t)L->OH; t->d.W = (uint32_t)L->OW;
    }
    /* borders and fills from the consumers */
    for (size_t l = 0; l < count; l++) {
        const layer *L = &layers[l];
        for (int i = 0; i < L->n_in; i++) {
            tensor_ref *t = find_tensor(ts, nt, L->in[i]);
            if (!t) { snprintf(why, size, "%s reads '%s', which is neither a graph input nor an earlier layer's result", L->name, L->in[i]); goto done; }
            if (t->d.C != L->C || t->d.H != L->H || t->d.W != L->W || (t->d.rank == 2) != (L->dense != 0)) {
                snprintf(why, size, "%s: the shape of '%s' does not match", L->name, L->in[i]);
                goto done;
            }
            if (t->has_fill && t->d.fill != L->zin[i]) { snprintf(why, size, "'%s' is read with two different zero points", L->name); goto done; }
            t->has_fill = 1; t->d.fill = L->zin[i];
            if (L->kind == L_CONV) {
                if ((uint32_t)L->pt > t->d.bt) t->d.bt = (uint32_t)L->pt;
                if ((uint32_t)L->pl > t->d.bl) t->d.bl = (uint32_t)L->pl;
                if ((uint32_t)L->pb > t->bb) t->bb = (uint32_t)L->pb;
                if ((uint32_t)L->pr > t->br) t->br = (uint32_t)L->pr;
            }
        }
    }
    for (size_t i = 0; i < nt; i++) {
        io_desc *d = &ts[i].d;
        if (d->rank == 0) continue;
        d->CB = (d->C + VTA_BLOCK - 1) / VTA_BLOCK;
        d->Hp = d->H + d->bt + ts[i].bb;
        d->Wp = d->W + d->bl + ts[i].br;
        if ((uint64_t)d->CB * d->Hp * d->Wp * VTA_BLOCK > VTA_MAX_DRAM) { snprintf(why, size, "tensor '%s' is too large", ts[i].name); goto done; }
        d->off = dram_alloc(&b, io_bytes(d));
        if (!ts[i].is_input && (d->bt || d->bl || ts[i].bb || ts[i].br || d->C % VTA_BLOCK)) {
            segment *s = add_segment(&b, d->off, io_bytes(d));
            if (s) { s->is_fill = 1; s->value = d->fill; }
        }
    }
    /* graph outputs: layer results */
    for (size_t i = 0; i < g->n_outputs; i++)
        if (!find_tensor(ts, nt, g->outputs[i]->name) || find_tensor(ts, nt, g->outputs[i]->name)->is_input) {
            snprintf(why, size, "graph output '%s' is not the result of a layer this backend lowers", g->outputs[i]->name);
            goto done;
        }
    /* weights and biases, then the plans */
    for (size_t l = 0; l < count; l++) {
        plan *P = &plans[l];
        const layer *L = &layers[l];
        P->L = L;
        for (int i = 0; i < L->n_in; i++) {
            P->in[i] = &find_tensor(ts, nt, L->in[i])->d;
            P->col0[i] = L->kind == L_ADD ? P->in[i]->bl : P->in[i]->bl - (uint32_t)L->pl;
        }
        P->out = &find_tensor(ts, nt, L->out)->d;
        if (plan_tiles(P, why, size)) goto done;
        uint32_t blocks = L->kind == L_ADD ? (uint32_t)L->n_in : P->OCB * P->ICB * (uint32_t)(L->KH * L->KW);
        P->w_off = dram_alloc(&b, (uint64_t)blocks * VTA_WGT_ELEM_BYTES);
        int8_t *w = (int8_t *)bytes_segment(&b, P->w_off, (uint64_t)blocks * VTA_WGT_ELEM_BYTES);
        P->bias_off = dram_alloc(&b, (uint64_t)P->OCB * VTA_ACC_ELEM_BYTES);
        uint8_t *bias = bytes_segment(&b, P->bias_off, (uint64_t)P->OCB * VTA_ACC_ELEM_BYTES);
        if (!w || !bias) { rc = -1; snprintf(why, size, "out of memory or DRAM"); goto done; }
        for (uint32_t o = 0; o < P->OCB * VTA_BLOCK; o++) {
            int64_t acc = 0;
            if (L->kind == L_ADD) {
                if (o < L->O) acc = -((int64_t)L->zin[0] * L->add_w[0] + (L->n_in > 1 ? (int64_t)L->zin[1] * L->add_w[1] : 0));
            } else if (o < L->O) {
                int64_t sum = 0;
                for (int64_t i = 0; i < L->C; i++)
                    for (int64_t kh = 0; kh < L->KH; kh++)
                        for (int64_t kw = 0; kw < L->KW; kw++) sum += weight_at(L, o, i, kh, kw);
                acc = bias_at(L, o) - (int64_t)L->zin[0] * sum; /* padding holds the zero point, so the correction is the same everywhere */
            }
            uint32_t v = (uint32_t)(int32_t)acc;
            for (int k = 0; k < 4; k++) bias[4 * o + k] = (uint8_t)(v >> 8 * k);
        }
        if (L->kind == L_ADD) {
            for (int i = 0; i < L->n_in; i++)
                for (int d = 0; d < VTA_BLOCK; d++) w[i * 256 + d * VTA_BLOCK + d] = (int8_t)L->add_w[i];
        } else {
            size_t at = 0;
            for (uint32_t ob = 0; ob < P->OCB; ob++)
                for (uint32_t ib = 0; ib < P->ICB; ib++)
                    for (int64_t kh = 0; kh < L->KH; kh++)
                        for (int64_t kw = 0; kw < L->KW; kw++, at++)
                            for (int o = 0; o < VTA_BLOCK; o++)
                                for (int i = 0; i < VTA_BLOCK; i++)
                                    w[at * 256 + (size_t)o * VTA_BLOCK + (size_t)i] = (int8_t)weight_at(L, ob * VTA_BLOCK + o, ib * VTA_BLOCK + i, kh, kw);
        }
    }
    p->layers = calloc(count + 1, sizeof *p->layers);
    if (!p->layers) { rc = -1; snprintf(why, size, "out of memory"); goto done; }
    for (size_t l = 0; l < count; l++) {
        const layer *L = &layers[l];
        layer_info *li = &p->layers[l];
        snprintf(li->name, sizeof li->name, "%s", L->name);
        li->kind = L->kind == L_ADD && L->n_in == 1 ? 2u : (uint32_t)L->kind; /* 2: elementwise Relu */
        li->elements = (uint64_t)L->O * (uint64_t)L->OH * (uint64_t)L->OW;
        li->macs = L->kind == L_ADD ? 0 : li->elements * (uint64_t)L->C * (uint64_t)L->KH * (uint64_t)L->KW;
        li->begin = (uint32_t)b.n;
        if (lower_layer(&b, &fl, &plans[l], (uint32_t)l, why, size)) {
            if (b.failed == 3) snprintf(why, size, "the DRAM image exceeds %llu bytes", (unsigned long long)VTA_MAX_DRAM);
            if (b.failed == 5) snprintf(why, size, "the program exceeds %zu instructions", VTA_MAX_INSNS);
            rc = b.failed == 3 || b.failed == 4 || b.failed == 5 ? 1 : -1;
            goto done;
        }
        li->end = (uint32_t)b.n;
    }
    /* drain every queue, then FINISH */
    for (int m = 0; m < VTA_MODULES; m++)
        for (int dir = 0; dir < 2; dir++) {
            int q = vta_queue((uint32_t)m, 1, dir == 0);
            if (q >= 0) wait_event(&b, (uint32_t)m, dir, b.pushes[q]);
        }
    for (int m = 0; m < VTA_MODULES; m++)
        if (m != VTA_MOD_COMPUTE && (b.pending[m][0] || b.pending[m][1])) emit(&b, nop((uint32_t)m));
    emit(&b, (vta_insn){.opcode = VTA_OP_FINISH});
    if (b.failed) { rc = b.failed == 5 ? 1 : -1; snprintf(why, size, b.failed == 5 ? "the program exceeds the instruction limit" : "out of memory while generating code"); goto done; }
    p->target = target;
    p->dram_bytes = b.dram;
    p->insn_count = (uint32_t)b.n; p->insns = b.insns; b.insns = NULL;
    p->segment_count = (uint32_t)b.nseg; p->segments = b.segs; b.segs = NULL; b.nseg = 0;
    p->layer_count = (uint32_t)count;
    p->inputs = calloc(g->n_inputs + 1, sizeof *p->inputs);
    p->outputs = calloc(g->n_outputs + 1, sizeof *p->outputs);
    if (!p->inputs || !p->outputs) { rc = -1; snprintf(why, size, "out of memory"); goto done; }
    p->input_count = (uint32_t)g->n_inputs; p->output_count = (uint32_t)g->n_outputs;
    for (size_t i = 0; i < g->n_inputs; i++) p->inputs[i] = find_tensor(ts, nt, g->inputs[i]->name)->d;
    for (size_t i = 0; i < g->n_outputs; i++) p->outputs[i] = find_tensor(ts, nt, g->outputs[i]->name)->d;
    rc = 0;
done:
    if (rc) program_free(p);
    for (size_t i = 0; i < b.nseg; i++) free(b.segs[i].data);
    free(b.segs); free(b.insns); free(b.uops);
    free(ts); free(plans);
    return rc;
}

/* ---- running a program ------------------------------------------------------------------------------ */

/* What one run measured (the device properties show the last one). */
typedef struct run_stats {
    vta_counters counters;
    uint64_t total_cycles, gemm_cycles, alu_cycles, busy[VTA_MODULES];
    uint32_t max_queue[VTA_QUEUES];
} run_stats;

static _Atomic uint64_t stat_runs, stat_cycles, stat_gemm_iters, stat_alu_iters, stat_load_uop, stat_load_wgt, stat_load_inp, stat_load_acc, stat_store, stat_insns;

/* "{run}" in `pattern` replaced by the run number. */
/* Writes the per-layer table of a run: cycles from the first start to the last end of the layer's instructions. */
static void write_report(FILE *f, const vta_program *p, const vta_timing *t, const run_stats *s) {
    const vta_target *tg = &vta_targets[p->target];
    double peak = 2.0 * VTA_BLOCK * VTA_BLOCK * tg->clock_hz / 1e9;
    fprintf(f, "samplevta.fpga %s: %.0f MHz, %u-bit AXI, DMA setup %u cycles, peak %.1f GOPS\n", tg->name, tg->clock_hz / 1e6, tg->bus_bytes * 8, tg->dma_setup_cycles, peak);
    fprintf(f, "| layer | kind | MACs | cycles | latency (us) | GOPS | GEMM busy | MAC efficiency | ALU busy |\n");
    fprintf(f, "|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (uint32_t l = 0; l < p->layer_count; l++) {
        const layer_info *li = &p->layers[l];
        uint64_t first = UINT64_MAX, last = 0, gemm = 0, alu = 0, iters = 0;
        for (uint32_t i = li->begin; i < li->end; i++) {
            const vta_insn *in = &p->insns[i];
            /* the span covers instructions that move or compute something (a NOP carrying a token may start early) */
            int work = in->opcode == VTA_OP_GEMM || in->opcode == VTA_OP_ALU ? vta_uop_iterations(in) > 0
                     : in->opcode == VTA_OP_LOAD || in->opcode == VTA_OP_STORE ? in->y_size && in->x_size : 1;
            if (work && t->start[i] < first) first = t->start[i];
            if (work && t->end[i] > last) last = t->end[i];
            if (in->opcode == VTA_OP_GEMM) { gemm += t->end[i] - t->start[i]; if (!in->reset) iters += vta_uop_iterations(in); }
            if (in->opcode == VTA_OP_ALU) alu += t->end[i] - t->start[i];
        }
        uint64_t cycles = first != UINT64_MAX && last > first ? last - first : 0;
        double us = (double)cycles / tg->clock_hz * 1e6;
        double gops = us > 0 ? 2.0 * (double)li->macs / (us * 1e3) : 0;
        fprintf(f, "| %s | %s | %llu | %llu | %.2f | %.2f | %.1f%% | %.1f%% | %.1f%% |\n", li->name, li->kind == L_ADD ? "add" : li->kind == 2 ? "relu" : "conv/dense",
                (unsigned long long)li->macs, (unsigned long long)cycles, us, gops, cycles ? 100.0 * (double)gemm / (double)cycles : 0,
                iters ? 100.0 * (double)li->macs / ((double)iters * VTA_BLOCK * VTA_BLOCK) : 0, cycles ? 100.0 * (double)alu / (double)cycles : 0);
    }
    uint64_t macs = 0;
    for (uint32_t l = 0; l < p->layer_count; l++) macs += p->layers[l].macs;
    double us = (double)s->total_cycles / tg->clock_hz * 1e6;
    fprintf(f, "| total | | %llu | %llu | %.2f | %.2f | %.1f%% | | %.1f%% |\n", (unsigned long long)macs, (unsigned long long)s->total_cycles, us,
            us > 0 ? 2.0 * (double)macs / (us * 1e3) : 0, s->total_cycles ? 100.0 * (double)s->gemm_cycles / (double)s->total_cycles : 0,
            s->total_cycles ? 100.0 * (double)s->alu_cycles / (double)s->total_cycles : 0);
    fprintf(f, "fsim: %llu instructions, GEMM uop-iterations %llu, ALU uop-iterations %llu, loaded bytes uop %llu wgt %llu inp %llu acc %llu, stored %llu\n",
            (unsigned long long)s->counters.instructions, (unsigned long long)s->counters.gemm_uop_iterations, (unsigned long long)s->counters.alu_uop_iterations,
            (unsigned long long)s->counters.load_bytes[VTA_MEM_UOP], (unsigned long long)s->counters.load_bytes[VTA_MEM_WGT],
            (unsigned long long)s->counters.load_bytes[VTA_MEM_INP], (unsigned long long)s->counters.load_bytes[VTA_MEM_ACC], (unsigned long long)s->counters.store_bytes);
    fprintf(f, "modules busy: load %llu, compute %llu, store %llu cycles; token queues peak l2c %u c2l %u c2s %u s2c %u (depth %d)\n",
            (unsigned long long)s->busy[0], (unsigned long long)s->busy[1], (unsigned long long)s->busy[2],
            s->max_queue[0], s->max_queue[1], s->max_queue[2], s->max_queue[3], VTA_QUEUE_DEPTH);
}

/* Runs program p on the DRAM image: the cycle model orders the instructions, the functional simulator runs them. */
static kiln_plugin_error *run_program(const vta_program *p, vta_machine *m, run_stats *s, vta_timing *t) {
    char why[256];
    if (vta_schedule(p->insns, p->insn_count, &vta_targets[p->target], t, why, sizeof why))
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: the program's dependency tokens are inconsistent: %s", why);
    /* KILN_VTA_ORDER=random:SEED (tests): run the instructions in a random order the tokens allow instead */
    const char *order_env = getenv("KILN_VTA_ORDER");
    if (order_env && strncmp(order_env, "random:", 7) == 0 && t->count) {
        if (vta_random_order(p->insns, p->insn_count, strtoull(order_env + 7, NULL, 10), t->order))
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: the program's dependency tokens deadlock");
    }
    for (size_t k = 0; k < t->count; k++) {
        size_t i = t->order[k];
        if (vta_execute(m, &p->insns[i], why, sizeof why))
            return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: instruction %zu: %s", i, why);
    }
    if (!m->finished) return ak_error(KILN_ERROR_INVALID_ARTIFACT, "execute: the program did not reach FINISH");
    s->counters = m->counters;
    s->total_cycles = t->total_cycles; s->gemm_cycles = t->gemm_cycles; s->alu_cycles = t->alu_cycles;
    for (int e = 0; e < VTA_MODULES; e++) s->busy[e] = t->busy_cycles[e];
    for (int q = 0; q < VTA_QUEUES; q++) s->max_queue[q] = t->max_queue_occupancy[q];
    return NULL;
}

/* The element (c, y, x) of a DRAM tensor. */
static size_t io_index(const io_desc *d, uint32_t c, uint32_t y, uint32_t x) {
    return (size_t)d->off + ((((size_t)(c / VTA_BLOCK) * d->Hp + d->bt + y) * d->Wp + d->bl + x) * VTA_BLOCK) + c % VTA_BLOCK;
}

static int shape_matches(const io_desc *d, const kiln_tensor *t) {
    if (t->ndim != (int32_t)d->rank || !t->shape) return 0;
    if (d->rank == 4) return t->shape[0] == 1 && t->shape[1] == d->C && t->shape[2] == d->H && t->shape[3] == d->W;
    return t->shape[0] == d->W && t->shape[1] == d->C;
}

/* A run's instructions as profile steps in the target's cycles: name = the layer whose instruction range holds
 * the instruction ("(program)" for the final drain and FINISH), unit = its module ("load", "compute",
 * "store"). NULL when out of memory. */
static ak_step *profile_steps(const vta_program *p, const vta_timing *t) {
    static const char *const modules[VTA_MODULES] = {"load", "compute", "store"};
    ak_step *steps = calloc((size_t)p->insn_count + 1, sizeof *steps);
    if (!steps) return NULL;
    for (uint32_t i = 0; i < p->insn_count; i++) {
        steps[i].name = "(program)";
        steps[i].unit = modules[vta_module(&p->insns[i])];
        steps[i].start_cycle = t->start[i];
        steps[i].cycles = t->end[i] - t->start[i];
    }
    for (uint32_t l = 0; l < p->layer_count; l++)
        for (uint32_t i = p->layers[l].begin; i < p->layers[l].end; i++) steps[i].name = p->layers[l].name[0] ? p->layers[l].name : "(unnamed layer)";
    return steps;
}

static kiln_plugin_error *execute_program(const vta_program *p, ak_profile *profile, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs, size_t output_count) {
    for (size_t i = 0; i < input_count; i++) {
        const kiln_tensor *t = &inputs[i];
        if (p->inputs[i].rank == 0) continue;
        if (t->dtype.code != KILN_DTYPE_INT || t->dtype.bits != 8 || t->dtype.lanes != 1) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu must be int8", i);
        if (t->strides || t->byte_offset || t->device.device_type != KILN_DEVICE_CPU) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is not a compact CPU tensor", i);
        if (!shape_matches(&p->inputs[i], t)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu's shape differs from the one the program was compiled for", i);
        if (!t->data) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has NULL data", i);
    }
    for (size_t i = 0; i < output_count; i++) {
        if (!outputs[i].shape) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: output %zu has no shape array", i);
        if (outputs[i].device.device_type != KILN_DEVICE_CPU) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: output %zu is wanted on a device; this backend has no device buffers", i);
    }
    vta_machine m;
    if (vta_machine_init(&m, (size_t)p->dram_bytes)) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    for (uint32_t i = 0; i < p->segment_count; i++) {
        const segment *s = &p->segments[i];
        if (s->is_fill) memset(m.dram + s->off, (uint8_t)(int8_t)s->value, (size_t)s->len);
        else memcpy(m.dram + s->off, s->data, (size_t)s->len);
    }
    for (size_t i = 0; i < input_count; i++) {
        const io_desc *d = &p->inputs[i];
        if (d->rank == 0) continue;
        memset(m.dram + d->off, (uint8_t)(int8_t)d->fill, (size_t)io_bytes(d));
        const int8_t *x = inputs[i].data;
        for (uint32_t c = 0; c < d->C; c++)
            for (uint32_t y = 0; y < d->H; y++)
                for (uint32_t w = 0; w < d->W; w++)
                    m.dram[io_index(d, c, y, w)] = (uint8_t)(d->rank == 4 ? x[((size_t)c * d->H + y) * d->W + w] : x[(size_t)w * d->C + c]);
    }
    run_stats s = {0};
    vta_timing t = {0};
    kiln_plugin_error *e = run_program(p, &m, &s, &t);
    for (size_t i = 0; !e && i < output_count; i++) {
        const io_desc *d = &p->outputs[i];
        size_t n = (size_t)d->C * d->H * d->W;
        int8_t *y;
        if ((e = ak_output_alloc(&outputs[i], i, n, (void **)&y))) break;
        for (uint32_t c = 0; c < d->C; c++)
            for (uint32_t r = 0; r < d->H; r++)
                for (uint32_t w = 0; w < d->W; w++)
                    y[d->rank == 4 ? ((size_t)c * d->H + r) * d->W + w : (size_t)w * d->C + c] = (int8_t)m.dram[io_index(d, c, r, w)];
        outputs[i].data = y;
        outputs[i].dtype.code = KILN_DTYPE_INT; outputs[i].dtype.bits = 8; outputs[i].dtype.lanes = 1;
        outputs[i].ndim = (int32_t)d->rank;
        if (d->rank == 4) { outputs[i].shape[0] = 1; outputs[i].shape[1] = d->C; outputs[i].shape[2] = d->H; outputs[i].shape[3] = d->W; }
        else { outputs[i].shape[0] = d->W; outputs[i].shape[1] = d->C; }
    }
    if (!e) {
        ak_step *steps = profile_steps(p, &t);
        if (steps) ak_profile_store(profile, steps, p->insn_count, t.total_cycles, vta_targets[p->target].clock_hz);
        else e = ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    }
    if (!e) {
        uint64_t run = atomic_fetch_add(&stat_runs, 1);
        atomic_store(&stat_cycles, s.total_cycles);
        atomic_store(&stat_gemm_iters, s.counters.gemm_uop_iterations);
        atomic_store(&stat_alu_iters, s.counters.alu_uop_iterations);
        atomic_store(&stat_load_uop, s.counters.load_bytes[VTA_MEM_UOP]);
        atomic_store(&stat_load_wgt, s.counters.load_bytes[VTA_MEM_WGT]);
        atomic_store(&stat_load_inp, s.counters.load_bytes[VTA_MEM_INP]);
        atomic_store(&stat_load_acc, s.counters.load_bytes[VTA_MEM_ACC]);
        atomic_store(&stat_store, s.counters.store_bytes);
        atomic_store(&stat_insns, s.counters.instructions);
        const char *report = getenv("KILN_VTA_REPORT");
        char path[1024];
        if (report && *report && ak_expand_run(report, run, path, sizeof path)) {
            FILE *f = fopen(path, "w");
            if (f) { write_report(f, p, &t, &s); fclose(f); }
        }
        {
            char line[256];
            snprintf(line, sizeof line, "%s estimate: %llu cycles (%.2f us), GEMM %llu uop-iterations, ALU %llu", vta_targets[p->target].name,
                     (unsigned long long)s.total_cycles, (double)s.total_cycles / vta_targets[p->target].clock_hz * 1e6,
                     (unsigned long long)s.counters.gemm_uop_iterations, (unsigned long long)s.counters.alu_uop_iterations);
            ak_log_debug(line);
        }
    }
    vta_timing_free(&t);
    vta_machine_free(&m);
    return e;
}

/* ---- the plugin ABI ----------------------------------------------------------------------------------- */

/* Why node i is not claimed, given the layers that analyze matched. */
static void reason_for(const Kiln__Ir__Graph *g, size_t i, const layer *layers, size_t count, char *why, size_t size) {
    const Kiln__Ir__Node *n = g->nodes[i];
    for (size_t l = 0; l < count; l++)
        if (!layers[l].valid)
            for (int j = 0; j < layers[l].n_nodes; j++)
                if (layers[l].nodes[j] == i) { snprintf(why, size, "%s", layers[l].why[0] ? layers[l].why : "not lowerable"); return; }
    snprintf(why, size, "%s is not part of a quantized Conv/Gemm/MatMul/Add layer this backend lowers (QLinearConv, QLinearMatMul, or DequantizeLinear -> op [-> Relu] -> QuantizeLinear)", n->op);
}

/* Claims the nodes of the layers analyze matched; the reason for every other node (ak_analyze_fn). */
static int claim_nodes(const Kiln__Ir__Graph *g, uint8_t *supported, char **reasons) {
    size_t *covered = calloc(g->n_nodes + 1, sizeof *covered);
    layer *layers = NULL;
    long count = covered ? analyze(g, &layers, covered) : -1;
    int ok = count >= 0;
    for (size_t i = 0; ok && i < g->n_nodes; i++) {
        supported[i] = covered[i] != 0;
        if (supported[i]) continue;
        char why[400];
        reason_for(g, i, layers, (size_t)count, why, sizeof why);
        ok = (reasons[i] = ak_strdup(why)) != NULL;
    }
    free_layers(layers, count > 0 ? (size_t)count : 0);
    free(covered);
    return ok;
}

/* Callback: which nodes of the graph this backend runs, with a reason for each rejected one. */
static kiln_plugin_error *claim(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out) {
    (void)context;
    return ak_claim(graph, out, claim_nodes);
}

static kiln_plugin_error *compile(void *context, const kiln_plugin_bytes *graph, const kiln_plugin_compile_options *options, kiln_plugin_payload *out) {
    (void)context;
    if (!out || out->struct_size < sizeof(kiln_plugin_payload)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: out is NULL or its struct_size is too small");
    const char *target_name = options && options->target ? options->target : "host";
    uint32_t target = 0;
    if (strcmp(target_name, "host") != 0) {
        const vta_target *t = vta_find_target(target_name);
        if (!t) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "compile: unknown target '%s' (fpga-vta-pynq, fpga-vta-zcu104)", target_name);
        target = (uint32_t)(t - vta_targets);
    }
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = ak_decode_graph(graph, &g);
    if (e) return e;
    size_t *covered = calloc(g->n_nodes + 1, sizeof *covered);
    layer *layers = NULL, *valid = NULL;
    long count = covered ? analyze(g, &layers, covered) : -1;
    size_t nvalid = 0;
    char why[600] = "";
    if (count < 0) e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory");
    for (size_t i = 0; !e && i < g->n_nodes; i++)
        if (!covered[i]) {
            char r[400];
            reason_for(g, i, layers, (size_t)count, r, sizeof r);
            e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: node %zu ('%s', %s) is not claimed: %s", i, g->nodes[i]->name, g->nodes[i]->op, r);
        }
    if (!e && count == 0) e = ak_error(KILN_ERROR_UNSUPPORTED, "compile: the graph has no layer to lower");
    if (!e) {
        valid = calloc((size_t)count + 1, sizeof *valid);
        if (!valid) e = ak_error(KILN_ERROR_INTERNAL, "compile: out of memory");
        for (long l = 0; !e && l < count; l++) if (layers[l].valid) valid[nvalid++] = layers[l];
    }
    vta_program p;
    ak_owner *o = NULL;
    if (!e) {
        int rc = compile_graph(g, valid, nvalid, target, &p, why, sizeof why);
        if (rc) e = ak_error(rc > 0 ? KILN_ERROR_UNSUPPORTED : KILN_ERROR_INTERNAL, "compile: %s", why);
    }
    free(valid); free_layers(layers, count > 0 ? (size_t)count : 0); free(covered);
    kiln__ir__graph__free_unpacked(g, NULL);
    if (e) return e;
    o = ak_owner_new(AK_OWNER_PAYLOAD);
    if (o) encode_program(&p, &o->payload);
    program_free(&p);
    if (o && o->payload.failed == 2) { ak_release(NULL, o); return ak_error(KILN_ERROR_INTERNAL, "compile: an instruction field does not fit its encoding"); }
    if (o) snprintf(o->compat, sizeof o->compat, VTA_COMPAT_PREFIX "%s", vta_targets[target].name);
    return ak_payload_answer(out, o, NULL);
}

static kiln_plugin_error *check(void *context, const char *compat) {
    (void)context;
    if (!compat) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "check: compat is NULL");
    for (int i = 0; i < 2; i++) {
        char want[96];
        snprintf(want, sizeof want, VTA_COMPAT_PREFIX "%s", vta_targets[i].name);
        if (strcmp(compat, want) == 0) return NULL;
    }
    return ak_error(KILN_ERROR_VERSION_MISMATCH, VTA_BACKEND_NAME " " VTA_VERSION " loads payloads '" VTA_COMPAT_PREFIX "fpga-vta-pynq|fpga-vta-zcu104', not '%s'", compat);
}

static kiln_plugin_error *load_with_options(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                                            const kiln_plugin_load_options *options, void **out_executable) {
    (void)context;
    kiln_plugin_error *e = ak_load_arguments(payload, options, out_executable);
    if (e) return e;
    vta_executable *x = calloc(1, sizeof *x);
    if (!x) return ak_error(KILN_ERROR_INTERNAL, "load: out of memory");
    vta_program *p = &x->program; /* the first member: freeing p frees x */
    char why[300];
    if (decode_program(payload->data, payload->size, p, why, sizeof why)) { free(p); return ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: %s", why); }
    /* the token protocol must be deadlock-free and within the queue depth before anything runs */
    vta_timing t;
    if (vta_schedule(p->insns, p->insn_count, &vta_targets[p->target], &t, why, sizeof why)) {
        program_free(p); free(p);
        return ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: the program's dependency tokens are inconsistent: %s", why);
    }
    vta_timing_free(&t);
    if ((e = ak_check_graph_io(graph, (long)p->input_count, p->output_count))) { program_free(p); free(p); return e; }
    ak_profile_init(&x->profile);
    *out_executable = x;
    return NULL;
}

static kiln_plugin_error *load(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph, void **out_executable) {
    return load_with_options(context, payload, graph, NULL, out_executable);
}

static kiln_plugin_error *execute(void *context, void *executable, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs, size_t output_count) {
    (void)context;
    vta_executable *x = executable;
    const vta_program *p = x ? &x->program : NULL;
    kiln_plugin_error *e = ak_execute_arguments(executable, input_count, output_count, p ? p->input_count : 0, p ? p->output_count : 0, inputs, outputs);
    return e ? e : execute_program(p, &x->profile, inputs, input_count, outputs, output_count);
}

/* Callback (1.4): the last run's instructions as steps per layer and module, in the target's cycles. */
static kiln_plugin_error *profile(void *context, void *executable, kiln_plugin_profile *out) {
    (void)context;
    return ak_profile_answer(executable ? &((vta_executable *)executable)->profile : NULL, out);
}

static void unload(void *context, void *executable) {
    (void)context;
    if (!executable) return;
    vta_executable *x = executable;
    program_free(&x->program);
    ak_profile_destroy(&x->profile);
    free(x);
}

enum { DEVICE_PROPERTY_COUNT = 22 };

/* Callback: the one simulated accelerator, with its parameters and the last run's counters as properties. */
static kiln_plugin_error *devices(void *context, kiln_plugin_device_list *out) {
    (void)context;
    static const char *const keys[DEVICE_PROPERTY_COUNT] = {
        "isa", "gemm", "buffers", "alu", "targets", "assumed.dma_setup_cycles", "executes_on", "token_queues", "requantization", "backend_name",
        "fsim.runs", "last_run.cycles", "last_run.gemm_uop_iterations", "last_run.alu_uop_iterations", "last_run.load_bytes.uop",
        "last_run.load_bytes.wgt", "last_run.load_bytes.inp", "last_run.load_bytes.acc", "last_run.store_bytes", "last_run.instructions",
        "limits.dram_bytes", "limits.work"};
    static const char *const fixed[DEVICE_PROPERTY_COUNT] = {
        "VTA-like: 128-bit LOAD/STORE/GEMM/ALU/FINISH, 32-bit micro-ops, 2-level affine loops",
        "1x16x16 int8 x int8 -> int32 (BATCH 1, BLOCK_IN 16, BLOCK_OUT 16)",
        "uop 32 KiB, inp 32 KiB, wgt 256 KiB, acc 128 KiB, out 32 KiB",
        "MIN MAX ADD SHR MUL, 16-bit immediates, initiation interval 2",
        "fpga-vta-pynq 100 MHz 64-bit AXI; fpga-vta-zcu104 333 MHz 128-bit AXI",
        "32",
        "the host, through the functional simulator of isa.c in the order of the cycle model",
        "load->compute, compute->load, compute->store, store->compute; depth 8",
        "clamp(round_half_even(acc*m / 2^s) + zero_point), m < 2^15, s <= 15 (Documentation/targets/FPGA.md)",
        "samplevta.fpga (the kiln. prefix is reserved for built-in backends)",
        [20] = "268435456", "68719476736"};
    uint64_t live[DEVICE_PROPERTY_COUNT] = {
        [10] = atomic_load(&stat_runs), atomic_load(&stat_cycles), atomic_load(&stat_gemm_iters), atomic_load(&stat_alu_iters),
        atomic_load(&stat_load_uop), atomic_load(&stat_load_wgt), atomic_load(&stat_load_inp), atomic_load(&stat_load_acc),
        atomic_load(&stat_store), atomic_load(&stat_insns)};
    return ak_device_answer(out, "VTA-like FPGA accelerator (functional simulator and cycle model)", VTA_MAX_DRAM, DEVICE_PROPERTY_COUNT, keys, fixed, live);
}

static const char *const targets[] = {"fpga-vta-pynq", "fpga-vta-zcu104"};

static const kiln_plugin_backend backend = {
    .struct_size = sizeof(kiln_plugin_backend),
    .name = VTA_BACKEND_NAME,
    .vendor = "Kiln (VTA-like FPGA sample target)",
    .version = VTA_VERSION,
    .flags = KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE, /* execute reads the program only; each run has its own machine */
    .context = NULL,
    .claim = claim, .compile = compile, .check = check, .load = load, .execute = execute, .unload = unload, .release = ak_release,
    .devices = devices, .load_with_options = load_with_options,
    .target_count = 2, .targets = targets,
    .profile = profile,
};
static const kiln_plugin_backend *const backends[] = {&backend};

static kiln_plugin_header header = {
    .struct_size = sizeof(kiln_plugin_header),
    .abi_major = KILN_PLUGIN_ABI_MAJOR,
    .abi_minor = 2, /* it uses nothing 1.3 appended (declared options), so it answers 1.2 to every host */
    .name = VTA_PLUGIN_NAME,
    .vendor = "Kiln (VTA-like FPGA sample target)",
    .version = VTA_VERSION,
    .backend_count = 1,
    .backends = backends,
    .context = NULL,
    .shutdown = NULL,
};

/* The entry: negotiates ABI 1.2 (the devices and targets fields need a 1.2 host). */
KILN_PLUGIN_EXPORT kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *h, const kiln_plugin_header **out_header) {
    return ak_query(h, out_header, &header, VTA_PLUGIN_NAME, 4);
}
