/* isa.c — encoding and validating decoding of npu-nc2 payloads (format in isa.h). */
#include "isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bytes per element: fp32 4, bf16 2, anything else 0 (unknown). */
uint32_t npu_dtype_size(uint32_t t) { return t == NPU_F32 ? 4 : t == NPU_BF16 ? 2 : 0; }

/* The product of the dims with an overflow check against the tensor limit. */
int64_t npu_element_count(uint32_t rank, const int64_t *dims) {
    uint64_t n = 1;
    for (uint32_t i = 0; i < rank; i++) {
        if (dims[i] < 0) return -1;
        if (dims[i] != 0 && n > NPU_MAX_TENSOR_ELEMENTS / (uint64_t)dims[i]) return -1;
        n *= (uint64_t)dims[i];
    }
    return (int64_t)n;
}

/* Writes the payload in the layout of isa.h. */
void npu_encode(const npu_program *p, npu_buffer *out) {
    memset(out, 0, sizeof *out);
    int v3 = p->cores > 1, v4 = 0;
    for (uint32_t i = 0; i < p->tensor_count; i++) v3 |= p->tensors[i].kind == NPU_T_VIEW;
    for (uint32_t i = 0; i < p->insn_count; i++)
        v4 |= (p->insns[i].opcode == NPU_VECTOR && p->insns[i].func > NPU_ALU_LAST_V3) || (p->insns[i].opcode == NPU_ACTIVATE && p->insns[i].func > NPU_FUNC_LAST_V3);
    v3 |= v4;
    ak_put(out, "KNPU", 4);
    ak_put_u32(out, v4 ? 4 : v3 ? 3 : 2);
    ak_put_u32(out, p->auto_cast);
    ak_put_u32(out, p->tensor_count); ak_put_u32(out, p->input_count); ak_put_u32(out, p->output_count);
    ak_put_u32(out, p->semaphore_count); ak_put_u32(out, p->insn_count);
    for (uint32_t i = 0; i < p->tensor_count; i++) {
        const npu_tensor *t = &p->tensors[i];
        ak_put_u32(out, t->kind); ak_put_u32(out, t->rank);
        for (uint32_t d = 0; d < t->rank; d++) ak_put_u64(out, (uint64_t)t->dims[d]);
        if (t->kind == NPU_T_CONST) { ak_put_u32(out, t->dtype); ak_put_u64(out, t->bytes); ak_put(out, t->data, (size_t)t->bytes); }
        if (t->kind == NPU_T_VIEW) { ak_put_u32(out, t->base); ak_put_u64(out, t->offset); }
    }
    for (uint32_t i = 0; i < p->input_count; i++) ak_put_u32(out, p->inputs[i]);
    for (uint32_t i = 0; i < p->output_count; i++) ak_put_u32(out, p->outputs[i]);
    for (uint32_t i = 0; i < p->insn_count; i++) {
        const npu_insn *n = &p->insns[i];
        uint32_t w[16] = {n->opcode, n->func, n->wait_sem[0], n->wait_value[0], n->wait_sem[1], n->wait_value[1], n->signal_sem[0], n->signal_sem[1],
                          n->parts, n->cols, n->a, n->b, n->c, n->d, n->e, n->f};
        for (int k = 0; k < 16; k++) ak_put_u32(out, w[k]);
    }
    ak_put_layers(out, &p->layers, p->insn_count);
    if (v3) {
        ak_put_u32(out, p->cores ? p->cores : 1);
        for (uint32_t i = 0; i < p->insn_count; i++) ak_put_u32(out, p->core_of ? p->core_of[i] : 0);
    }
}

/* The kind a tensor is written and read as: a view's base's. */
static uint32_t effective_kind(const npu_program *p, const npu_tensor *t) { return t->kind == NPU_T_VIEW ? p->tensors[t->base].kind : t->kind; }

/* Whether an SBUF tile at byte address `addr` of `cols` elements of `esize` bytes fits a partition. */
static int sbuf_fits(uint32_t addr, uint32_t cols, uint32_t esize) {
    return esize && (uint64_t)addr + (uint64_t)cols * esize <= NPU_SBUF_PARTITION_BYTES;
}

/* Validates one instruction against the program's tensors and semaphores: 0, or -1 with a reason. */
static int check_insn(const npu_program *p, uint32_t version, uint32_t i, const npu_insn *n, char *why, size_t why_size) {
#define BAD(...) do { int at_ = snprintf(why, why_size, "instruction %u: ", i); if (at_ > 0 && (size_t)at_ < why_size) snprintf(why + at_, why_size - (size_t)at_, __VA_ARGS__); return -1; } while (0)
    if (n->opcode < 1 || n->opcode > NPU_OP_LAST) BAD("unknown opcode %u", n->opcode);
    for (int k = 0; k < 2; k++) {
        if (n->wait_sem[k] != NPU_NONE && n->wait_sem[k] >= p->semaphore_count) BAD("waits on semaphore %u of %u", n->wait_sem[k], p->semaphore_count);
        if (n->signal_sem[k] != NPU_NONE && n->signal_sem[k] >= p->semaphore_count) BAD("signals semaphore %u of %u", n->signal_sem[k], p->semaphore_count);
    }
    if (n->parts < 1 || n->parts > NPU_PARTITIONS) BAD("%u partitions (1..%u)", n->parts, NPU_PARTITIONS);
    if (n->cols < 1 || n->cols > NPU_MAX_COLS) BAD("%u columns (1..%u)", n->cols, NPU_MAX_COLS);
    switch (n->opcode) {
    case NPU_DMA_LOAD: case NPU_DMA_STORE: {
        if (n->func >> 16) BAD("DMA func word %#x has bits above 15 set", n->func);
        if (NPU_DMA_QUEUE(n->func) >= NPU_DMA_QUEUES) BAD("DMA queue %u (0..%u)", NPU_DMA_QUEUE(n->func), NPU_DMA_QUEUES - 1);
        if (NPU_DMA_PARTITION(n->func) + n->parts > NPU_PARTITIONS)
            BAD("DMA tile of %u partitions from partition %u passes partition %u", n->parts, NPU_DMA_PARTITION(n->func), NPU_PARTITIONS);
        if (n->a >= p->tensor_count) BAD("tensor %u of %u", n->a, p->tensor_count);
        const npu_tensor *t = &p->tensors[n->a];
        uint32_t kind = effective_kind(p, t);
        if (n->opcode == NPU_DMA_STORE && kind != NPU_T_OUTPUT && kind != NPU_T_SCRATCH) BAD("stores into a read-only tensor %u", n->a);
        uint64_t last = (uint64_t)n->b + (uint64_t)(n->parts - 1) * n->c + (uint64_t)(n->cols - 1) * n->d; /* < 2^42: no overflow */
        if (last >= t->elements) BAD("DMA reaches element %llu of tensor %u (%llu elements)", (unsigned long long)last, n->a, (unsigned long long)t->elements);
        if (!sbuf_fits(n->e, n->cols, npu_dtype_size(n->f))) BAD("SBUF tile at %u of %u elements of type %u does not fit", n->e, n->cols, n->f);
        break;
    }
    case NPU_LOAD_STATIONARY:
        if (n->cols > NPU_STATIONARY_COLS) BAD("stationary tile has %u columns (at most %u)", n->cols, NPU_STATIONARY_COLS);
        if (!sbuf_fits(n->a, n->cols, npu_dtype_size(n->f))) BAD("stationary tile does not fit SBUF");
        break;
    case NPU_MULTIPLY_MOVING:
        if (!sbuf_fits(n->a, n->cols, npu_dtype_size(n->f))) BAD("moving tile does not fit SBUF");
        if (n->b >= NPU_PSUM_BANKS) BAD("PSUM bank %u (0..%u)", n->b, NPU_PSUM_BANKS - 1);
        if (n->c > 1) BAD("accumulate flag %u", n->c);
        break;
    case NPU_ACTIVATE:
        if (n->func > (version >= 4 ? NPU_FUNC_LAST : NPU_FUNC_LAST_V3)) BAD("activation function %u (payload version %u)", n->func, version);
        if (n->b > 1) BAD("source space %u", n->b);
        if (n->b == 1 && n->a >= NPU_PSUM_BANKS) BAD("PSUM bank %u", n->a);
        if (n->b == 0 && !sbuf_fits(n->a, n->cols, npu_dtype_size(n->e))) BAD("source tile does not fit SBUF (or bad element type %u)", n->e);
        if (!sbuf_fits(n->c, n->cols, 4)) BAD("destination tile does not fit SBUF");
        if (n->d != NPU_NONE && !sbuf_fits(n->d, 1, 4)) BAD("bias does not fit SBUF");
        break;
    case NPU_VECTOR:
        if (n->func > (version >= 4 ? NPU_ALU_LAST : NPU_ALU_LAST_V3)) BAD("vector op %u (payload version %u)", n->func, version);
        if (n->d > NPU_VECTOR_MAC) BAD("vector operand mode %u", n->d);
        if (!sbuf_fits(n->a, n->cols, npu_dtype_size(n->e)) || !sbuf_fits(n->c, n->cols, 4) ||
            (n->d == 0 ? !sbuf_fits(n->b, n->cols, npu_dtype_size(n->e)) : !sbuf_fits(n->b, 1, 4)))
            BAD("vector tile does not fit SBUF (or bad element type %u)", n->e);
        if (n->d == NPU_VECTOR_MAC && !sbuf_fits(n->f, n->cols, 4)) BAD("multiply-accumulate addend tile at %u does not fit SBUF", n->f);
        break;
    case NPU_REDUCE:
        if (n->func != NPU_ALU_ADD && n->func != NPU_ALU_MAX) BAD("reduction %u", n->func);
        if (n->d > 1) BAD("accumulate flag %u", n->d);
        if (!sbuf_fits(n->a, n->cols, npu_dtype_size(n->e)) || !sbuf_fits(n->c, 1, 4)) BAD("reduction tile does not fit SBUF (or bad element type %u)", n->e);
        break;
    }
    return 0;
#undef BAD
}

#define FAIL(...) do { snprintf(why, why_size, __VA_ARGS__); npu_program_free(p); return -1; } while (0)

/* Reads and validates a payload (isa.h); every failure frees what was read and names the fault. */
int npu_decode(const void *data, size_t size, npu_program *p, char *why, size_t why_size) {
    memset(p, 0, sizeof *p);
    if (!data || size < 32 || memcmp(data, "KNPU", 4) != 0) FAIL("not an npu-nc2 payload (%zu bytes, no KNPU header)", size);
    ak_reader r = {data, size, 4, 0};
    uint32_t version = ak_get_u32(&r);
    if (version < 1 || version > 4) FAIL("payload version %u is not supported (this backend reads versions 1 to 4)", version);
    p->cores = 1;
    p->auto_cast = ak_get_u32(&r);
    if (p->auto_cast > NPU_CAST_ALL) FAIL("auto-cast mode %u is unknown", p->auto_cast);
    p->tensor_count = ak_get_u32(&r); p->input_count = ak_get_u32(&r); p->output_count = ak_get_u32(&r);
    p->semaphore_count = ak_get_u32(&r); p->insn_count = ak_get_u32(&r);
    if (p->tensor_count > size / 8 || p->input_count > size / 4 || p->output_count > size / 4 || p->insn_count > size / 64 || p->semaphore_count > (1u << 20))
        FAIL("payload counts exceed its size");
    p->tensors = calloc((size_t)p->tensor_count + 1, sizeof(npu_tensor));
    p->inputs = calloc((size_t)p->input_count + 1, sizeof(uint32_t));
    p->outputs = calloc((size_t)p->output_count + 1, sizeof(uint32_t));
    p->insns = calloc((size_t)p->insn_count + 1, sizeof(npu_insn));
    if (!p->tensors || !p->inputs || !p->outputs || !p->insns) FAIL("out of memory");
    for (uint32_t i = 0; i < p->tensor_count; i++) {
        npu_tensor *t = &p->tensors[i];
        t->kind = ak_get_u32(&r); t->rank = ak_get_u32(&r);
        if (r.bad) FAIL("payload truncated in tensor %u", i);
        if (t->kind > NPU_T_VIEW || (t->kind == NPU_T_VIEW && version < 3)) FAIL("tensor %u has unknown kind %u", i, t->kind);
        if (t->rank > NPU_MAX_RANK) FAIL("tensor %u has rank %u (at most %d)", i, t->rank, NPU_MAX_RANK);
        for (uint32_t d = 0; d < t->rank; d++) t->dims[d] = (int64_t)ak_get_u64(&r);
        if (r.bad) FAIL("payload truncated in tensor %u", i);
        int64_t n = npu_element_count(t->rank, t->dims);
        if (n < 0) FAIL("tensor %u has an invalid shape", i);
        t->elements = (uint64_t)n;
        t->dtype = NPU_F32;
        if (t->kind == NPU_T_CONST) {
            t->dtype = ak_get_u32(&r);
            t->bytes = ak_get_u64(&r);
            if (r.bad) FAIL("payload truncated in tensor %u", i);
            uint32_t es = npu_dtype_size(t->dtype);
            if (!es) FAIL("constant %u has unknown element type %u", i, t->dtype);
            if (t->bytes != t->elements * es) FAIL("constant %u: %llu bytes do not match its shape", i, (unsigned long long)t->bytes);
            if (t->bytes > r.size - r.at) FAIL("payload truncated in constant %u's data", i);
            t->data = malloc(t->bytes ? (size_t)t->bytes : 1);
            if (!t->data) FAIL("out of memory");
            memcpy(t->data, r.data + r.at, (size_t)t->bytes);
            r.at += (size_t)t->bytes;
        }
        if (t->kind == NPU_T_VIEW) {
            t->base = ak_get_u32(&r);
            t->offset = ak_get_u64(&r);
            if (r.bad) FAIL("payload truncated in tensor %u", i);
            if (t->base >= i || p->tensors[t->base].kind == NPU_T_VIEW || p->tensors[t->base].kind == NPU_T_CONST)
                FAIL("view %u names tensor %u, which is not an earlier input, output or intermediate", i, t->base);
            if (t->offset > p->tensors[t->base].elements || t->elements > p->tensors[t->base].elements - t->offset)
                FAIL("view %u (%llu elements from %llu) passes the end of tensor %u", i, (unsigned long long)t->elements, (unsigned long long)t->offset, t->base);
        }
    }
    uint8_t *seen = calloc((size_t)p->tensor_count + 1, 1);
    if (!seen) FAIL("out of memory");
    for (uint32_t i = 0; i < p->input_count + p->output_count; i++) {
        int input = i < p->input_count;
        uint32_t t = ak_get_u32(&r);
        if (r.bad) { free(seen); FAIL("payload truncated in its input/output lists"); }
        if (t >= p->tensor_count || seen[t] || p->tensors[t].kind != (input ? NPU_T_INPUT : NPU_T_OUTPUT)) {
            free(seen);
            FAIL("%s %u names tensor %u, which is not a distinct %s tensor", input ? "input" : "output", input ? i : i - p->input_count, t, input ? "input" : "output");
        }
        seen[t] = 1;
        if (input) p->inputs[i] = t; else p->outputs[i - p->input_count] = t;
    }
    for (uint32_t t = 0; t < p->tensor_count; t++)
        if (!seen[t] && (p->tensors[t].kind == NPU_T_INPUT || p->tensors[t].kind == NPU_T_OUTPUT)) { free(seen); FAIL("tensor %u is an input or output the lists do not name", t); }
    free(seen);
    for (uint32_t i = 0; i < p->insn_count; i++) {
        npu_insn *n = &p->insns[i];
        uint32_t w[16];
        for (int k = 0; k < 16; k++) w[k] = ak_get_u32(&r);
        if (r.bad) FAIL("payload truncated in instruction %u", i);
        *n = (npu_insn){w[0], w[1], {w[2], w[4]}, {w[3], w[5]}, {w[6], w[7]}, w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]};
        char reason[200];
        if (check_insn(p, version, i, n, reason, sizeof reason)) FAIL("%s", reason);
    }
    if (version >= 2) {
        char reason[200];
        if (ak_get_layers(&r, p->insn_count, &p->layers, reason, sizeof reason)) FAIL("%s", reason);
    }
    if (version >= 3) {
        p->cores = ak_get_u32(&r);
        if (r.bad) FAIL("payload truncated in its core count");
        if (p->cores < 1 || p->cores > NPU_MAX_CORES) FAIL("%u cores (this device has 1 to %u)", p->cores, NPU_MAX_CORES);
        p->core_of = calloc((size_t)p->insn_count + 1, sizeof(uint32_t));
        if (!p->core_of) FAIL("out of memory");
        for (uint32_t i = 0; i < p->insn_count; i++) {
            p->core_of[i] = ak_get_u32(&r);
            if (r.bad) FAIL("payload truncated in its core table");
            if (p->core_of[i] >= p->cores) FAIL("instruction %u runs on core %u of %u", i, p->core_of[i], p->cores);
        }
    }
    if (r.at != r.size) FAIL("%zu trailing bytes after the program", r.size - r.at);
    return 0;
}

/* Frees a program's tensors, lists and instructions. */
void npu_program_free(npu_program *p) {
    for (uint32_t i = 0; p->tensors && i < p->tensor_count; i++) free(p->tensors[i].data);
    free(p->tensors); free(p->inputs); free(p->outputs); free(p->insns); free(p->core_of);
    ak_layers_free(&p->layers);
    memset(p, 0, sizeof *p);
}
