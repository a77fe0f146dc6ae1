/* program.c — encoding and validating decoding of kiln.dsp payloads (format in program.h). */
#include "program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t dsp_dtype_size(uint32_t dtype) {
    switch (dtype) {
    case DSP_F32: case DSP_I32: return 4;
    case DSP_U8: case DSP_I8: return 1;
    default: return 0;
    }
}

int64_t dsp_element_count(uint32_t rank, const int64_t *dims) {
    int64_t n = 1;
    for (uint32_t i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] != 0 && n > ((int64_t)1 << 62) / dims[i]) return -1;
        n *= dims[i];
    }
    return n;
}

void dsp_encode(const dsp_program *p, dsp_buffer *out) {
    memset(out, 0, sizeof *out);
    ak_put(out, "KDSP", 4);
    ak_put_u32(out, 4); /* 3: LookupTable, Softmax, QLinearMatMul's transB and bias; 4: QLinearAdd, QLinearAveragePool; the layout is version 2's */
    ak_put_u32(out, p->value_count); ak_put_u32(out, p->input_count); ak_put_u32(out, p->output_count);
    ak_put_u32(out, p->constant_count); ak_put_u32(out, p->op_count);
    for (uint32_t i = 0; i < p->input_count; i++) { ak_put_u32(out, p->inputs[i]); ak_put_u32(out, p->input_dtypes[i]); }
    for (uint32_t i = 0; i < p->output_count; i++) ak_put_u32(out, p->outputs[i]);
    for (uint32_t i = 0; i < p->constant_count; i++) {
        const dsp_constant *c = &p->constants[i];
        ak_put_u32(out, c->value); ak_put_u32(out, c->dtype); ak_put_u32(out, c->rank);
        for (uint32_t d = 0; d < c->rank; d++) ak_put_u64(out, (uint64_t)c->dims[d]);
        ak_put_u64(out, c->bytes);
        ak_put(out, c->data, (size_t)c->bytes);
    }
    for (uint32_t i = 0; i < p->op_count; i++) {
        const dsp_op *op = &p->ops[i];
        ak_put_u32(out, op->opcode); ak_put_u32(out, op->input_count);
        for (uint32_t k = 0; k < op->input_count; k++) ak_put_u32(out, op->inputs[k]);
        ak_put_u32(out, op->output);
        for (int k = 0; k < DSP_OP_PARAMS; k++) ak_put_u64(out, (uint64_t)op->params[k]);
    }
    ak_put_layers(out, &p->layers, p->op_count);
}


#define FAIL(...) do { snprintf(why, why_size, __VA_ARGS__); dsp_program_free(p); return -1; } while (0)

int dsp_decode(const void *data, size_t size, dsp_program *p, char *why, size_t why_size) {
    memset(p, 0, sizeof *p);
    if (!data || size < 28 || memcmp(data, "KDSP", 4) != 0) FAIL("not a kiln.dsp payload (%zu bytes, no KDSP header)", size);
    ak_reader r = {data, size, 4, 0};
    uint32_t version = ak_get_u32(&r);
    if (version < 1 || version > 4) FAIL("payload version %u is not supported (this backend reads versions 1 to 4)", version);
    p->value_count = ak_get_u32(&r); p->input_count = ak_get_u32(&r); p->output_count = ak_get_u32(&r);
    p->constant_count = ak_get_u32(&r); p->op_count = ak_get_u32(&r);
    /* every item takes at least 4 bytes, so no count can exceed the payload size */
    if (p->value_count > size || p->input_count > size || p->output_count > size || p->constant_count > size || p->op_count > size)
        FAIL("payload counts exceed its size");
    p->inputs = calloc(p->input_count + 1, sizeof(uint32_t));
    p->input_dtypes = calloc(p->input_count + 1, sizeof(uint32_t));
    p->outputs = calloc(p->output_count + 1, sizeof(uint32_t));
    p->constants = calloc(p->constant_count + 1, sizeof(dsp_constant));
    p->ops = calloc(p->op_count + 1, sizeof(dsp_op));
    if (!p->inputs || !p->input_dtypes || !p->outputs || !p->constants || !p->ops) FAIL("out of memory");
    uint8_t *defined = calloc(p->value_count + 1, 1);
    if (!defined) FAIL("out of memory");
#define FAIL_D(...) do { free(defined); FAIL(__VA_ARGS__); } while (0)
#define DEFINE(v) do {                                                                                       \
        if ((v) >= p->value_count) FAIL_D("value %u out of range (%u values)", (v), p->value_count);      \
        if (defined[(v)]) FAIL_D("value %u is defined twice", (v));                                        \
        defined[(v)] = 1;                                                                                  \
    } while (0)
    for (uint32_t i = 0; i < p->input_count; i++) {
        p->inputs[i] = ak_get_u32(&r); p->input_dtypes[i] = ak_get_u32(&r);
        if (r.bad) FAIL_D("payload truncated in its inputs");
        DEFINE(p->inputs[i]);
        if (!dsp_dtype_size(p->input_dtypes[i])) FAIL_D("input %u has unknown dtype %u", i, p->input_dtypes[i]);
    }
    for (uint32_t i = 0; i < p->output_count; i++) p->outputs[i] = ak_get_u32(&r);
    if (r.bad) FAIL_D("payload truncated in its outputs");
    for (uint32_t i = 0; i < p->constant_count; i++) {
        dsp_constant *c = &p->constants[i];
        c->value = ak_get_u32(&r); c->dtype = ak_get_u32(&r); c->rank = ak_get_u32(&r);
        if (r.bad) FAIL_D("payload truncated in constant %u", i);
        DEFINE(c->value);
        size_t esize = dsp_dtype_size(c->dtype);
        if (!esize) FAIL_D("constant %u has unknown dtype %u", i, c->dtype);
        if (c->rank > DSP_MAX_RANK) FAIL_D("constant %u has rank %u (at most %d)", i, c->rank, DSP_MAX_RANK);
        for (uint32_t d = 0; d < c->rank; d++) c->dims[d] = (int64_t)ak_get_u64(&r);
        c->bytes = ak_get_u64(&r);
        if (r.bad) FAIL_D("payload truncated in constant %u", i);
        int64_t n = dsp_element_count(c->rank, c->dims);
        if (n < 0 || (uint64_t)n > UINT64_MAX / esize || (uint64_t)n * esize != c->bytes) FAIL_D("constant %u: %llu bytes do not match its shape", i, (unsigned long long)c->bytes);
        if (c->bytes > r.size - r.at) FAIL_D("payload truncated in constant %u's data", i);
        c->data = malloc(c->bytes ? (size_t)c->bytes : 1);
        if (!c->data) FAIL_D("out of memory");
        memcpy(c->data, r.data + r.at, (size_t)c->bytes);
        r.at += (size_t)c->bytes;
    }
    for (uint32_t i = 0; i < p->op_count; i++) {
        dsp_op *op = &p->ops[i];
        op->opcode = ak_get_u32(&r); op->input_count = ak_get_u32(&r);
        if (r.bad) FAIL_D("payload truncated in op %u", i);
        if (op->opcode < 1 || op->opcode > DSP_OP_LAST_OF_VERSION(version)) FAIL_D("op %u has unknown opcode %u", i, op->opcode);
        if (op->input_count > DSP_MAX_OP_INPUTS) FAIL_D("op %u has %u inputs (at most %d)", i, op->input_count, DSP_MAX_OP_INPUTS);
        for (uint32_t k = 0; k < op->input_count; k++) {
            op->inputs[k] = ak_get_u32(&r);
            if (op->inputs[k] != DSP_NO_VALUE && (op->inputs[k] >= p->value_count || !defined[op->inputs[k]]))
                FAIL_D("op %u reads value %u before it is defined", i, op->inputs[k]);
        }
        op->output = ak_get_u32(&r);
        for (int k = 0; k < DSP_OP_PARAMS; k++) op->params[k] = (int64_t)ak_get_u64(&r);
        if (r.bad) FAIL_D("payload truncated in op %u", i);
        if (version < 3 && op->opcode == DSP_OP_QMATMUL && (op->params[0] != 0 || op->input_count > 8))
            FAIL_D("op %u: a version %u QLinearMatMul has no transB or bias", i, version);
        DEFINE(op->output);
    }
    for (uint32_t i = 0; i < p->output_count; i++)
        if (p->outputs[i] >= p->value_count || !defined[p->outputs[i]]) FAIL_D("output %u names undefined value %u", i, p->outputs[i]);
    free(defined);
    if (version >= 2) {
        char reason[200];
        if (ak_get_layers(&r, p->op_count, &p->layers, reason, sizeof reason)) FAIL("%s", reason);
    }
    if (r.at != r.size) FAIL("%zu trailing bytes after the program", r.size - r.at);
    return 0;
#undef DEFINE
#undef FAIL_D
}

void dsp_program_free(dsp_program *p) {
    for (uint32_t i = 0; p->constants && i < p->constant_count; i++) free(p->constants[i].data);
    free(p->inputs); free(p->input_dtypes); free(p->outputs); free(p->constants); free(p->ops);
    ak_layers_free(&p->layers);
    memset(p, 0, sizeof *p);
}
