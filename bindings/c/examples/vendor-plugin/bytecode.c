/* The sample plugin's bytecode: encoding, validated decoding and a plain interpreter (see bytecode.h). */
#include "bytecode.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- encoding ---------------------------------------------------------------------------------- */

static void reserve(bc_buffer *b, size_t more) {
    if (b->failed) return;
    if (b->size + more <= b->capacity) return;
    size_t capacity = b->capacity ? b->capacity : 256;
    while (capacity < b->size + more) capacity *= 2;
    uint8_t *grown = realloc(b->data, capacity);
    if (!grown) { b->failed = 1; return; }
    b->data = grown;
    b->capacity = capacity;
}

void bc_put_bytes(bc_buffer *b, const void *data, size_t size) {
    reserve(b, size);
    if (b->failed || size == 0) return;
    memcpy(b->data + b->size, data, size);
    b->size += size;
}

void bc_put_u32(bc_buffer *b, uint32_t v) {
    uint8_t bytes[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    bc_put_bytes(b, bytes, 4);
}

void bc_put_i64(bc_buffer *b, int64_t v) {
    uint64_t u = (uint64_t)v;
    bc_put_u32(b, (uint32_t)u);
    bc_put_u32(b, (uint32_t)(u >> 32));
}

void bc_put_f32(bc_buffer *b, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    bc_put_u32(b, u);
}

void bc_encode(const bc_program *p, bc_buffer *out) {
    bc_put_bytes(out, "KSB1", 4);
    bc_put_u32(out, p->register_count);
    bc_put_u32(out, p->input_count);
    for (uint32_t i = 0; i < p->input_count; i++) bc_put_u32(out, p->inputs[i]);
    bc_put_u32(out, p->output_count);
    for (uint32_t i = 0; i < p->output_count; i++) bc_put_u32(out, p->outputs[i]);
    bc_put_u32(out, p->constant_count);
    for (uint32_t i = 0; i < p->constant_count; i++) {
        const bc_constant *c = &p->constants[i];
        bc_put_u32(out, c->reg);
        bc_put_u32(out, (uint32_t)c->shape.rank);
        for (int32_t d = 0; d < c->shape.rank; d++) bc_put_i64(out, c->shape.dims[d]);
        int64_t n = bc_element_count(&c->shape);
        for (int64_t e = 0; e < n; e++) bc_put_f32(out, c->data[e]);
    }
    bc_put_u32(out, p->instruction_count);
    for (uint32_t i = 0; i < p->instruction_count; i++) {
        const bc_instruction *in = &p->instructions[i];
        bc_put_u32(out, in->opcode);
        bc_put_u32(out, in->input_count);
        for (uint32_t k = 0; k < in->input_count; k++) bc_put_u32(out, in->inputs[k]);
        bc_put_u32(out, in->output);
        for (int k = 0; k < BC_PARAM_COUNT; k++) bc_put_i64(out, in->params[k]);
        for (int k = 0; k < BC_FPARAM_COUNT; k++) bc_put_f32(out, in->fparams[k]);
    }
}

/* ---- decoding ---------------------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *data;
    size_t size, at;
} reader;

static int get_u32(reader *r, uint32_t *v) {
    if (r->size - r->at < 4) return 0;
    const uint8_t *p = r->data + r->at;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    r->at += 4;
    return 1;
}

static int get_i64(reader *r, int64_t *v) {
    uint32_t lo, hi;
    if (!get_u32(r, &lo) || !get_u32(r, &hi)) return 0;
    *v = (int64_t)((uint64_t)hi << 32 | lo);
    return 1;
}

static int get_f32(reader *r, float *v) {
    uint32_t u;
    if (!get_u32(r, &u)) return 0;
    memcpy(v, &u, 4);
    return 1;
}

int64_t bc_element_count(const bc_shape *shape) {
    int64_t n = 1;
    for (int32_t d = 0; d < shape->rank; d++) {
        int64_t dim = shape->dims[d];
        if (dim < 0) return -1;
        if (dim != 0 && n > INT64_MAX / dim) return -1;
        n *= dim;
    }
    return n;
}

static int fail(char *why, size_t why_size, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(why, why_size, format, args);
    va_end(args);
    return 1;
}

void bc_free(bc_program *p) {
    if (p->constants)
        for (uint32_t i = 0; i < p->constant_count; i++) free(p->constants[i].data);
    free(p->inputs);
    free(p->outputs);
    free(p->constants);
    free(p->instructions);
    memset(p, 0, sizeof *p);
}

/* Marks register `reg` defined; fails when it is out of range or already defined (registers are SSA). */
static int define(uint8_t *defined, uint32_t count, uint32_t reg, char *why, size_t why_size, const char *what) {
    if (reg >= count) return fail(why, why_size, "payload: %s register %u out of range (%u registers)", what, reg, count);
    if (defined[reg]) return fail(why, why_size, "payload: %s register %u is defined twice", what, reg);
    defined[reg] = 1;
    return 0;
}

int bc_decode(const void *data, size_t size, bc_program *p, char *why, size_t why_size) {
    memset(p, 0, sizeof *p);
    reader r = {data, size, 0};
    if (!data || size < 4 || memcmp(data, "KSB1", 4) != 0)
        return fail(why, why_size, "payload: not a sample-bytecode payload (bad magic, %zu bytes)", size);
    r.at = 4;
    uint8_t *defined = NULL;
#define NEED(cond, ...) do { if (!(cond)) { fail(why, why_size, __VA_ARGS__); goto bad; } } while (0)
    NEED(get_u32(&r, &p->register_count), "payload: truncated header");
    NEED(p->register_count <= (r.size - r.at) + 1024, "payload: %u registers is implausible", p->register_count);
    defined = calloc(p->register_count ? p->register_count : 1, 1);
    NEED(defined, "payload: out of memory");

    NEED(get_u32(&r, &p->input_count) && p->input_count <= (r.size - r.at) / 4, "payload: bad input count");
    p->inputs = calloc(p->input_count ? p->input_count : 1, sizeof(uint32_t));
    NEED(p->inputs, "payload: out of memory");
    for (uint32_t i = 0; i < p->input_count; i++) {
        NEED(get_u32(&r, &p->inputs[i]), "payload: truncated inputs");
        if (define(defined, p->register_count, p->inputs[i], why, why_size, "input")) goto bad;
    }
    NEED(get_u32(&r, &p->output_count) && p->output_count <= (r.size - r.at) / 4, "payload: bad output count");
    p->outputs = calloc(p->output_count ? p->output_count : 1, sizeof(uint32_t));
    NEED(p->outputs, "payload: out of memory");
    for (uint32_t i = 0; i < p->output_count; i++) {
        NEED(get_u32(&r, &p->outputs[i]), "payload: truncated outputs");
        NEED(p->outputs[i] < p->register_count, "payload: output register %u out of range", p->outputs[i]);
    }
    NEED(get_u32(&r, &p->constant_count) && p->constant_count <= (r.size - r.at) / 8, "payload: bad constant count");
    p->constants = calloc(p->constant_count ? p->constant_count : 1, sizeof(bc_constant));
    NEED(p->constants, "payload: out of memory");
    for (uint32_t i = 0; i < p->constant_count; i++) {
        bc_constant *c = &p->constants[i];
        uint32_t rank;
        NEED(get_u32(&r, &c->reg) && get_u32(&r, &rank), "payload: truncated constant %u", i);
        if (define(defined, p->register_count, c->reg, why, why_size, "constant")) goto bad;
        NEED(rank <= BC_MAX_RANK, "payload: constant %u has rank %u (at most %d)", i, rank, BC_MAX_RANK);
        c->shape.rank = (int32_t)rank;
        for (uint32_t d = 0; d < rank; d++) NEED(get_i64(&r, &c->shape.dims[d]), "payload: truncated constant %u", i);
        int64_t n = bc_element_count(&c->shape);
        NEED(n >= 0 && (uint64_t)n <= (r.size - r.at) / 4, "payload: constant %u's data is truncated or its shape is invalid", i);
        c->data = malloc(n ? (size_t)n * 4 : 4);
        NEED(c->data, "payload: out of memory");
        for (int64_t e = 0; e < n; e++) get_f32(&r, &c->data[e]);
    }
    NEED(get_u32(&r, &p->instruction_count) && p->instruction_count <= (r.size - r.at) / 16, "payload: bad instruction count");
    p->instructions = calloc(p->instruction_count ? p->instruction_count : 1, sizeof(bc_instruction));
    NEED(p->instructions, "payload: out of memory");
    for (uint32_t i = 0; i < p->instruction_count; i++) {
        bc_instruction *in = &p->instructions[i];
        NEED(get_u32(&r, &in->opcode) && get_u32(&r, &in->input_count), "payload: truncated instruction %u", i);
        uint32_t min_in, max_in;
        switch (in->opcode) {
        case BC_RELU: min_in = max_in = 1; break;
        case BC_ADD: case BC_MATMUL: min_in = max_in = 2; break;
        case BC_GEMM: case BC_CONV: min_in = 2; max_in = 3; break;
        default: fail(why, why_size, "payload: instruction %u has unknown opcode %u", i, in->opcode); goto bad;
        }
        NEED(in->input_count >= min_in && in->input_count <= max_in, "payload: instruction %u has %u inputs", i, in->input_count);
        for (uint32_t k = 0; k < in->input_count; k++) {
            NEED(get_u32(&r, &in->inputs[k]), "payload: truncated instruction %u", i);
            if (k >= min_in && in->inputs[k] == BC_NO_REGISTER) continue;
            NEED(in->inputs[k] < p->register_count && defined[in->inputs[k]],
                 "payload: instruction %u reads register %u before it is defined", i, in->inputs[k]);
        }
        NEED(get_u32(&r, &in->output), "payload: truncated instruction %u", i);
        if (define(defined, p->register_count, in->output, why, why_size, "instruction output")) goto bad;
        for (int k = 0; k < BC_PARAM_COUNT; k++) NEED(get_i64(&r, &in->params[k]), "payload: truncated instruction %u", i);
        for (int k = 0; k < BC_FPARAM_COUNT; k++) NEED(get_f32(&r, &in->fparams[k]), "payload: truncated instruction %u", i);
        if (in->opcode == BC_CONV) {
            NEED(in->params[0] >= 1 && in->params[0] < (1 << 20), "payload: instruction %u: group %lld", i, (long long)in->params[0]);
            for (int k = 1; k < BC_PARAM_COUNT; k++)
                NEED(in->params[k] >= (k >= 3 && k <= 6 ? 0 : 1) && in->params[k] < (1 << 20),
                     "payload: instruction %u: bad convolution parameter %d", i, k);
        }
    }
    for (uint32_t i = 0; i < p->output_count; i++)
        NEED(defined[p->outputs[i]], "payload: output register %u is never defined", p->outputs[i]);
    NEED(r.at == r.size, "payload: %zu unexpected trailing bytes", r.size - r.at);
#undef NEED
    free(defined);
    return 0;
bad:
    free(defined);
    bc_free(p);
    return 1;
}

/* ---- interpreter ------------------------------------------------------------------------------- */

void bc_tensor_release(bc_tensor *t) {
    if (t->owned) free(t->data);
    t->data = NULL;
    t->owned = 0;
}

/* Whether the product of `factors` (an instruction's loop trip counts) exceeds BC_MAX_WORK; 0 when one is 0. */
static int work_exceeds_cap(const int64_t *factors, int count) {
    for (int i = 0; i < count; i++)
        if (factors[i] <= 0) return 0;
    uint64_t total = 1;
    for (int i = 0; i < count; i++)
        if (__builtin_mul_overflow(total, (uint64_t)factors[i], &total) || total > (uint64_t)BC_MAX_WORK) return 1;
    return 0;
}

static int make_output(bc_tensor *out, const bc_shape *shape, char *why, size_t why_size) {
    int64_t n = bc_element_count(shape);
    if (n < 0 || (uint64_t)n > SIZE_MAX / 4) return fail(why, why_size, "result of %lld elements is too large", (long long)n);
    out->shape = *shape;
    out->data = calloc(n ? (size_t)n : 1, 4);
    out->owned = 1;
    if (!out->data) return fail(why, why_size, "out of memory for %lld elements", (long long)n);
    return 0;
}

/* Broadcasts shapes a and b (numpy rules) into *out. */
static int broadcast(const bc_shape *a, const bc_shape *b, bc_shape *out, char *why, size_t why_size, const char *op) {
    int32_t rank = a->rank > b->rank ? a->rank : b->rank;
    out->rank = rank;
    for (int32_t i = 0; i < rank; i++) {
        int32_t ai = i - (rank - a->rank), bi = i - (rank - b->rank);
        int64_t da = ai >= 0 ? a->dims[ai] : 1, db = bi >= 0 ? b->dims[bi] : 1;
        if (da != db && da != 1 && db != 1)
            return fail(why, why_size, "%s: shapes cannot broadcast (dim %d: %lld vs %lld)", op, i, (long long)da, (long long)db);
        out->dims[i] = da == 1 ? db : da;
    }
    return 0;
}

/* Element strides of `t` when viewed with `rank` dims, 0 on broadcast dims of `out`. */
static void broadcast_strides(const bc_shape *t, const bc_shape *out, int64_t *strides) {
    int64_t stride = 1;
    for (int32_t i = out->rank - 1; i >= 0; i--) {
        int32_t ti = i - (out->rank - t->rank);
        int64_t dim = ti >= 0 ? t->dims[ti] : 1;
        strides[i] = dim == 1 ? 0 : stride;
        stride *= dim;
    }
}

static int run_add(const bc_tensor *a, const bc_tensor *b, bc_tensor *out, char *why, size_t why_size) {
    bc_shape shape;
    if (broadcast(&a->shape, &b->shape, &shape, why, why_size, "Add")) return 1;
    if (make_output(out, &shape, why, why_size)) return 1;
    int64_t sa[BC_MAX_RANK], sb[BC_MAX_RANK], index[BC_MAX_RANK] = {0};
    broadcast_strides(&a->shape, &shape, sa);
    broadcast_strides(&b->shape, &shape, sb);
    int64_t n = bc_element_count(&shape), ia = 0, ib = 0;
    for (int64_t e = 0; e < n; e++) {
        out->data[e] = a->data[ia] + b->data[ib];
        for (int32_t d = shape.rank - 1; d >= 0; d--) {
            index[d]++;
            ia += sa[d];
            ib += sb[d];
            if (index[d] < shape.dims[d]) break;
            ia -= sa[d] * index[d];
            ib -= sb[d] * index[d];
            index[d] = 0;
        }
    }
    return 0;
}

static int run_relu(const bc_tensor *x, bc_tensor *out, char *why, size_t why_size) {
    if (make_output(out, &x->shape, why, why_size)) return 1;
    int64_t n = bc_element_count(&x->shape);
    for (int64_t e = 0; e < n; e++) out->data[e] = x->data[e] > 0 ? x->data[e] : 0;
    return 0;
}

static int run_matmul(const bc_tensor *a, const bc_tensor *b, bc_tensor *out, char *why, size_t why_size) {
    if (a->shape.rank < 1 || b->shape.rank < 1) return fail(why, why_size, "MatMul: operands must have rank >= 1");
    bc_shape as = a->shape, bs = b->shape;
    int a_vector = as.rank == 1, b_vector = bs.rank == 1;
    if (a_vector) { as.rank = 2; as.dims[1] = as.dims[0]; as.dims[0] = 1; }
    if (b_vector) { bs.rank = 2; bs.dims[1] = 1; }
    int64_t m = as.dims[as.rank - 2], k = as.dims[as.rank - 1], n = bs.dims[bs.rank - 1];
    if (bs.dims[bs.rank - 2] != k)
        return fail(why, why_size, "MatMul: inner dims differ (%lld vs %lld)", (long long)k, (long long)bs.dims[bs.rank - 2]);
    bc_shape abatch = {as.rank - 2, {0}}, bbatch = {bs.rank - 2, {0}}, batch;
    memcpy(abatch.dims, as.dims, sizeof(int64_t) * (size_t)abatch.rank);
    memcpy(bbatch.dims, bs.dims, sizeof(int64_t) * (size_t)bbatch.rank);
    if (broadcast(&abatch, &bbatch, &batch, why, why_size, "MatMul")) return 1;
    bc_shape shape = batch;
    if (!a_vector) shape.dims[shape.rank++] = m;
    if (!b_vector) shape.dims[shape.rank++] = n;
    if (shape.rank > BC_MAX_RANK) return fail(why, why_size, "MatMul: result rank too large");
    if (make_output(out, &shape, why, why_size)) return 1;
    int64_t sa[BC_MAX_RANK], sb[BC_MAX_RANK], index[BC_MAX_RANK] = {0};
    broadcast_strides(&abatch, &batch, sa);
    broadcast_strides(&bbatch, &batch, sb);
    int64_t batches = bc_element_count(&batch), ia = 0, ib = 0;
    for (int64_t t = 0; t < batches; t++) {
        const float *pa = a->data + ia * m * k, *pb = b->data + ib * k * n;
        float *pc = out->data + t * m * n;
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                float sum = 0;
                for (int64_t p = 0; p < k; p++) sum += pa[i * k + p] * pb[p * n + j];
                pc[i * n + j] = sum;
            }
        for (int32_t d = batch.rank - 1; d >= 0; d--) {
            index[d]++;
            ia += sa[d];
            ib += sb[d];
            if (index[d] < batch.dims[d]) break;
            ia -= sa[d] * index[d];
            ib -= sb[d] * index[d];
            index[d] = 0;
        }
    }
    return 0;
}

static int run_gemm(const bc_instruction *in, const bc_tensor *a, const bc_tensor *b, const bc_tensor *c, bc_tensor *out,
                    char *why, size_t why_size) {
    if (a->shape.rank != 2 || b->shape.rank != 2) return fail(why, why_size, "Gemm: A and B must be matrices");
    int trans_a = in->params[0] != 0, trans_b = in->params[1] != 0;
    float alpha = in->fparams[0], beta = in->fparams[1];
    int64_t m = trans_a ? a->shape.dims[1] : a->shape.dims[0], k = trans_a ? a->shape.dims[0] : a->shape.dims[1];
    int64_t kb = trans_b ? b->shape.dims[1] : b->shape.dims[0], n = trans_b ? b->shape.dims[0] : b->shape.dims[1];
    if (k != kb) return fail(why, why_size, "Gemm: inner dims differ (%lld vs %lld)", (long long)k, (long long)kb);
    bc_shape shape = {2, {m, n}};
    int64_t sc[BC_MAX_RANK] = {0, 0};
    if (c) {
        bc_shape check;
        if (c->shape.rank > 2 || broadcast(&c->shape, &shape, &check, why, why_size, "Gemm") ||
            check.dims[0] != m || check.dims[1] != n)
            return fail(why, why_size, "Gemm: C does not broadcast to [%lld, %lld]", (long long)m, (long long)n);
        broadcast_strides(&c->shape, &shape, sc);
    }
    if (make_output(out, &shape, why, why_size)) return 1;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float sum = 0;
            for (int64_t p = 0; p < k; p++) {
                float av = trans_a ? a->data[p * m + i] : a->data[i * k + p];
                float bv = trans_b ? b->data[j * k + p] : b->data[p * n + j];
                sum += av * bv;
            }
            float bias = c ? beta * c->data[i * sc[0] + j * sc[1]] : 0;
            out->data[i * n + j] = alpha * sum + bias;
        }
    return 0;
}

static int run_conv(const bc_instruction *in, const bc_tensor *x, const bc_tensor *w, const bc_tensor *bias, bc_tensor *out,
                    char *why, size_t why_size) {
    if (x->shape.rank != 4 || w->shape.rank != 4) return fail(why, why_size, "Conv: X and W must have rank 4 (NCHW)");
    int64_t group = in->params[0];
    int64_t sh = in->params[1], sw = in->params[2], pt = in->params[3], pl = in->params[4], pb = in->params[5], pr = in->params[6];
    int64_t dh = in->params[7], dw = in->params[8];
    int64_t batch = x->shape.dims[0], c_in = x->shape.dims[1], h = x->shape.dims[2], wd = x->shape.dims[3];
    int64_t c_out = w->shape.dims[0], cg = w->shape.dims[1], kh = w->shape.dims[2], kw = w->shape.dims[3];
    /* A constant's dims are only bounded by its element count, which a zero dim makes 0: bound each dim so
     * that cg * group and the output-size arithmetic below cannot overflow int64 (found by fuzzing). */
    for (int k = 0; k < 4; k++)
        if (x->shape.dims[k] > INT32_MAX || w->shape.dims[k] > INT32_MAX)
            return fail(why, why_size, "Conv: a dim of X or W exceeds %d", INT32_MAX);
    if (c_in != cg * group || c_out % group != 0)
        return fail(why, why_size, "Conv: X has %lld channels, W expects %lld x group %lld", (long long)c_in, (long long)cg, (long long)group);
    if (bias && (bias->shape.rank != 1 || bias->shape.dims[0] != c_out))
        return fail(why, why_size, "Conv: B must have shape [%lld]", (long long)c_out);
    int64_t oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1, ow = (wd + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    if (oh < 0 || ow < 0) return fail(why, why_size, "Conv: the kernel is larger than the padded input");
    /* Pads and strides make the output large without large inputs: cap the loop below (found by fuzzing). */
    const int64_t work[] = {batch, c_out, oh, ow, cg, kh, kw};
    if (work_exceeds_cap(work, 7))
        return fail(why, why_size, "Conv: %lld x %lld x %lld x %lld outputs of %lld x %lld x %lld terms exceed the interpreter's cap of %lld multiply-adds",
                    (long long)batch, (long long)c_out, (long long)oh, (long long)ow, (long long)cg, (long long)kh, (long long)kw,
                    (long long)BC_MAX_WORK);
    bc_shape shape = {4, {batch, c_out, oh, ow}};
    if (make_output(out, &shape, why, why_size)) return 1;
    int64_t out_per_group = c_out / group;
    for (int64_t nb = 0; nb < batch; nb++)
        for (int64_t oc = 0; oc < c_out; oc++) {
            int64_t g = oc / out_per_group;
            for (int64_t y = 0; y < oh; y++)
                for (int64_t xo = 0; xo < ow; xo++) {
                    float sum = bias ? bias->data[oc] : 0;
                    for (int64_t ic = 0; ic < cg; ic++)
                        for (int64_t ky = 0; ky < kh; ky++) {
                            int64_t iy = y * sh - pt + ky * dh;
                            if (iy < 0 || iy >= h) continue;
                            for (int64_t kx = 0; kx < kw; kx++) {
                                int64_t ix = xo * sw - pl + kx * dw;
                                if (ix < 0 || ix >= wd) continue;
                                sum += x->data[((nb * c_in + g * cg + ic) * h + iy) * wd + ix] *
                                       w->data[((oc * cg + ic) * kh + ky) * kw + kx];
                            }
                        }
                    out->data[((nb * c_out + oc) * oh + y) * ow + xo] = sum;
                }
        }
    return 0;
}

const char *bc_opcode_name(uint32_t opcode) {
    switch (opcode) {
    case BC_RELU: return "Relu";
    case BC_ADD: return "Add";
    case BC_MATMUL: return "MatMul";
    case BC_GEMM: return "Gemm";
    case BC_CONV: return "Conv";
    default: return "?";
    }
}

/* What instruction `in` cost, from its operands and its result: multiply-adds for the contractions (the
 * output's elements times the length of each dot product), output elements for the elementwise ops. */
static uint64_t instruction_cycles(const bc_instruction *in, const bc_tensor *a, const bc_tensor *b, const bc_tensor *out) {
    int64_t n = bc_element_count(&out->shape);
    if (n <= 0) return 0;
    int64_t depth = 1;
    switch (in->opcode) {
    case BC_MATMUL: depth = a->shape.rank > 0 ? a->shape.dims[a->shape.rank - 1] : 1; break;
    case BC_GEMM: {
        int64_t columns = out->shape.rank > 0 ? out->shape.dims[out->shape.rank - 1] : 1;
        depth = columns > 0 ? bc_element_count(&b->shape) / columns : 0;
        break;
    }
    case BC_CONV: depth = b->shape.rank > 0 && b->shape.dims[0] > 0 ? bc_element_count(&b->shape) / b->shape.dims[0] : 0; break;
    default: break;
    }
    return depth > 0 ? (uint64_t)n * (uint64_t)depth : (uint64_t)n;
}

int bc_run(const bc_program *p, const bc_tensor *inputs, bc_tensor *outputs, char *why, size_t why_size) {
    return bc_run_counted(p, inputs, outputs, NULL, why, why_size);
}

int bc_run_counted(const bc_program *p, const bc_tensor *inputs, bc_tensor *outputs, uint64_t *cycles, char *why, size_t why_size) {
    bc_tensor *regs = calloc(p->register_count ? p->register_count : 1, sizeof(bc_tensor));
    if (!regs) return fail(why, why_size, "out of memory");
    int status = 0;
    for (uint32_t i = 0; i < p->input_count; i++) {
        regs[p->inputs[i]] = inputs[i];
        regs[p->inputs[i]].owned = 0;
    }
    for (uint32_t i = 0; i < p->constant_count; i++) {
        regs[p->constants[i].reg].shape = p->constants[i].shape;
        regs[p->constants[i].reg].data = p->constants[i].data;
    }
    for (uint32_t i = 0; i < p->instruction_count && status == 0; i++) {
        const bc_instruction *in = &p->instructions[i];
        const bc_tensor *a = &regs[in->inputs[0]];
        const bc_tensor *b = in->input_count > 1 ? &regs[in->inputs[1]] : NULL;
        const bc_tensor *c = in->input_count > 2 && in->inputs[2] != BC_NO_REGISTER ? &regs[in->inputs[2]] : NULL;
        bc_tensor *out = &regs[in->output];
        switch (in->opcode) {
        case BC_RELU: status = run_relu(a, out, why, why_size); break;
        case BC_ADD: status = run_add(a, b, out, why, why_size); break;
        case BC_MATMUL: status = run_matmul(a, b, out, why, why_size); break;
        case BC_GEMM: status = run_gemm(in, a, b, c, out, why, why_size); break;
        case BC_CONV: status = run_conv(in, a, b, c, out, why, why_size); break;
        default: status = fail(why, why_size, "unknown opcode %u", in->opcode);
        }
        if (cycles && status == 0) cycles[i] = instruction_cycles(in, a, b, out);
    }
    for (uint32_t i = 0; i < p->output_count && status == 0; i++) {
        const bc_tensor *r = &regs[p->outputs[i]];
        status = make_output(&outputs[i], &r->shape, why, why_size);
        int64_t n = bc_element_count(&r->shape);
        if (status == 0 && n > 0) memcpy(outputs[i].data, r->data, (size_t)n * 4);
    }
    if (status != 0)
        for (uint32_t i = 0; i < p->output_count; i++) bc_tensor_release(&outputs[i]);
    for (uint32_t i = 0; i < p->register_count; i++) bc_tensor_release(&regs[i]);
    free(regs);
    return status;
}
