/*
 * isa.c — encoding, functional simulator and cycle model of samplevta.fpga's VTA-like ISA (isa.h).
 */
#include "isa.h"
#include "accelkit.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const vta_target vta_targets[2] = {
    {"fpga-vta-pynq", 100e6, 8, 32},
    {"fpga-vta-zcu104", 333e6, 16, 32},
};

const vta_target *vta_find_target(const char *name) {
    for (int i = 0; i < 2; i++) if (name && strcmp(name, vta_targets[i].name) == 0) return &vta_targets[i];
    return NULL;
}

static void say(char *why, size_t size, const char *format, ...) {
    if (!why || !size) return;
    va_list a;
    va_start(a, format);
    vsnprintf(why, size, format, a);
    va_end(a);
}

/* ---- encoding ---------------------------------------------------------------------------------- */

/* A field of `bits` at bit `at` of a 128-bit word (w[0] low, w[1] high); fields never straddle the words. */
typedef struct field { uint8_t word, at, bits; } field;

/* Puts v into the field; returns -1 when it does not fit. */
static int put(uint64_t w[2], field f, uint64_t v) {
    uint64_t mask = f.bits == 64 ? ~0ull : ((1ull << f.bits) - 1);
    if (v & ~mask) return -1;
    w[f.word] |= v << f.at;
    return 0;
}
static uint32_t get(const uint64_t w[2], field f) { return (uint32_t)((w[f.word] >> f.at) & ((1ull << f.bits) - 1)); }

/* Word 0: common fields. */
static const field F_OPCODE = {0, 0, 3}, F_POP_PREV = {0, 3, 1}, F_POP_NEXT = {0, 4, 1}, F_PUSH_PREV = {0, 5, 1}, F_PUSH_NEXT = {0, 6, 1};
/* LOAD/STORE */
static const field F_MEM = {0, 7, 3}, F_SRAM = {0, 10, 16}, F_DRAM = {0, 26, 32};
static const field F_YSIZE = {1, 0, 16}, F_XSIZE = {1, 16, 16}, F_XSTRIDE = {1, 32, 16};
static const field F_YPAD0 = {1, 48, 4}, F_YPAD1 = {1, 52, 4}, F_XPAD0 = {1, 56, 4}, F_XPAD1 = {1, 60, 4};
/* GEMM/ALU */
static const field F_RESET = {0, 7, 1}, F_UOP_BGN = {0, 8, 13}, F_UOP_END = {0, 21, 14}, F_ITER_OUT = {0, 35, 14}, F_ITER_IN = {0, 49, 14};
static const field F_DST_FO = {1, 0, 11}, F_DST_FI = {1, 11, 11}, F_SRC_FO = {1, 22, 11}, F_SRC_FI = {1, 33, 11};
static const field F_WGT_FO = {1, 44, 10}, F_WGT_FI = {1, 54, 10};
static const field F_ALU_OP = {1, 44, 3}, F_USE_IMM = {1, 47, 1}, F_IMM = {1, 48, 16};

static void store_words(const uint64_t w[2], uint8_t out[VTA_INSN_BYTES]) {
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 8; b++) out[8 * k + b] = (uint8_t)(w[k] >> (8 * b));
}

int vta_encode(const vta_insn *in, uint8_t out[VTA_INSN_BYTES]) {
    uint64_t w[2] = {0, 0};
    int bad = put(w, F_OPCODE, in->opcode) | put(w, F_POP_PREV, in->pop_prev) | put(w, F_POP_NEXT, in->pop_next) |
              put(w, F_PUSH_PREV, in->push_prev) | put(w, F_PUSH_NEXT, in->push_next);
    switch (in->opcode) {
    case VTA_OP_LOAD: case VTA_OP_STORE:
        bad |= put(w, F_MEM, in->mem) | put(w, F_SRAM, in->sram_base) | put(w, F_DRAM, in->dram_base) | put(w, F_YSIZE, in->y_size) |
               put(w, F_XSIZE, in->x_size) | put(w, F_XSTRIDE, in->x_stride) | put(w, F_YPAD0, in->y_pad0) | put(w, F_YPAD1, in->y_pad1) |
               put(w, F_XPAD0, in->x_pad0) | put(w, F_XPAD1, in->x_pad1);
        break;
    case VTA_OP_GEMM: case VTA_OP_ALU:
        bad |= put(w, F_RESET, in->reset) | put(w, F_UOP_BGN, in->uop_bgn) | put(w, F_UOP_END, in->uop_end) | put(w, F_ITER_OUT, in->iter_out) |
               put(w, F_ITER_IN, in->iter_in) | put(w, F_DST_FO, in->dst_fo) | put(w, F_DST_FI, in->dst_fi) | put(w, F_SRC_FO, in->src_fo) |
               put(w, F_SRC_FI, in->src_fi);
        if (in->opcode == VTA_OP_GEMM) bad |= put(w, F_WGT_FO, in->wgt_fo) | put(w, F_WGT_FI, in->wgt_fi);
        else {
            if (in->imm < -32768 || in->imm > 32767) bad = -1;
            bad |= put(w, F_ALU_OP, in->alu_op) | put(w, F_USE_IMM, in->use_imm) | put(w, F_IMM, (uint16_t)in->imm);
        }
        break;
    case VTA_OP_FINISH: break;
    default: return -1;
    }
    if (bad) return -1;
    store_words(w, out);
    return 0;
}

int vta_decode(const uint8_t in[VTA_INSN_BYTES], vta_insn *out, char *why, size_t why_size) {
    uint64_t w[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 8; b++) w[k] |= (uint64_t)in[8 * k + b] << (8 * b);
    memset(out, 0, sizeof *out);
    out->opcode = get(w, F_OPCODE);
    out->pop_prev = get(w, F_POP_PREV); out->pop_next = get(w, F_POP_NEXT);
    out->push_prev = get(w, F_PUSH_PREV); out->push_next = get(w, F_PUSH_NEXT);
    switch (out->opcode) {
    case VTA_OP_LOAD: case VTA_OP_STORE:
        out->mem = get(w, F_MEM); out->sram_base = get(w, F_SRAM); out->dram_base = get(w, F_DRAM);
        out->y_size = get(w, F_YSIZE); out->x_size = get(w, F_XSIZE); out->x_stride = get(w, F_XSTRIDE);
        out->y_pad0 = get(w, F_YPAD0); out->y_pad1 = get(w, F_YPAD1); out->x_pad0 = get(w, F_XPAD0); out->x_pad1 = get(w, F_XPAD1);
        if (out->opcode == VTA_OP_LOAD && out->mem > VTA_MEM_ACC) { say(why, why_size, "LOAD of unknown memory type %u", out->mem); return -1; }
        if (out->opcode == VTA_OP_STORE && out->mem != VTA_MEM_OUT) { say(why, why_size, "STORE from memory type %u (only OUT is stored)", out->mem); return -1; }
        if (out->opcode == VTA_OP_STORE && (out->y_pad0 | out->y_pad1 | out->x_pad0 | out->x_pad1)) { say(why, why_size, "STORE with padding"); return -1; }
        if (out->mem == VTA_MEM_UOP && (out->y_pad0 | out->y_pad1 | out->x_pad0 | out->x_pad1)) { say(why, why_size, "LOAD UOP with padding"); return -1; }
        return 0;
    case VTA_OP_GEMM: case VTA_OP_ALU:
        out->reset = get(w, F_RESET); out->uop_bgn = get(w, F_UOP_BGN); out->uop_end = get(w, F_UOP_END);
        out->iter_out = get(w, F_ITER_OUT); out->iter_in = get(w, F_ITER_IN);
        out->dst_fo = get(w, F_DST_FO); out->dst_fi = get(w, F_DST_FI); out->src_fo = get(w, F_SRC_FO); out->src_fi = get(w, F_SRC_FI);
        if (out->opcode == VTA_OP_GEMM) { out->wgt_fo = get(w, F_WGT_FO); out->wgt_fi = get(w, F_WGT_FI); }
        else {
            out->alu_op = get(w, F_ALU_OP); out->use_imm = get(w, F_USE_IMM); out->imm = (int16_t)get(w, F_IMM);
            if (out->alu_op > VTA_ALU_MUL) { say(why, why_size, "unknown ALU op %u", out->alu_op); return -1; }
        }
        if (out->uop_end > VTA_UOP_DEPTH) { say(why, why_size, "uop_end %u is past the uop buffer (%d)", out->uop_end, VTA_UOP_DEPTH); return -1; }
        return 0;
    case VTA_OP_FINISH: return 0;
    default: say(why, why_size, "unknown opcode %u", out->opcode); return -1;
    }
}

uint32_t vta_uop_encode(vta_uop u) { return (u.dst & 0x7ff) | (u.src & 0x7ff) << 11 | (u.wgt & 0x3ff) << 22; }
vta_uop vta_uop_decode(uint32_t word) { return (vta_uop){word & 0x7ff, (word >> 11) & 0x7ff, (word >> 22) & 0x3ff}; }

uint32_t vta_module(const vta_insn *in) {
    if (in->opcode == VTA_OP_LOAD) return in->mem == VTA_MEM_INP || in->mem == VTA_MEM_WGT ? VTA_MOD_LOAD : VTA_MOD_COMPUTE;
    if (in->opcode == VTA_OP_STORE) return VTA_MOD_STORE;
    return VTA_MOD_COMPUTE;
}

uint32_t vta_elem_bytes(uint32_t mem) {
    switch (mem) {
    case VTA_MEM_UOP: return VTA_UOP_BYTES;
    case VTA_MEM_WGT: return VTA_WGT_ELEM_BYTES;
    case VTA_MEM_INP: return VTA_INP_ELEM_BYTES;
    case VTA_MEM_ACC: return VTA_ACC_ELEM_BYTES;
    case VTA_MEM_OUT: return VTA_OUT_ELEM_BYTES;
    default: return 0;
    }
}

static uint32_t depth_of(uint32_t mem) {
    switch (mem) {
    case VTA_MEM_UOP: return VTA_UOP_DEPTH;
    case VTA_MEM_WGT: return VTA_WGT_DEPTH;
    case VTA_MEM_INP: return VTA_INP_DEPTH;
    case VTA_MEM_ACC: return VTA_ACC_DEPTH;
    case VTA_MEM_OUT: return VTA_OUT_DEPTH;
    default: return 0;
    }
}

/* ---- timing ------------------------------------------------------------------------------------ */

uint64_t vta_uop_iterations(const vta_insn *in) {
    if (in->uop_end <= in->uop_bgn) return 0;
    return (uint64_t)in->iter_out * in->iter_in * (in->uop_end - in->uop_bgn);
}

uint64_t vta_insn_cycles(const vta_insn *in, const vta_target *t) {
    uint64_t c = 0;
    switch (in->opcode) {
    case VTA_OP_GEMM: c = vta_uop_iterations(in); break;
    case VTA_OP_ALU: c = 2 * vta_uop_iterations(in); break;
    case VTA_OP_LOAD: case VTA_OP_STORE: {
        uint64_t bytes = (uint64_t)in->y_size * in->x_size * vta_elem_bytes(in->mem);
        if (bytes) c = ak_bus_cycles(bytes, t->bus_bytes, t->dma_setup_cycles);
        break;
    }
    default: break;
    }
    return c ? c : 1;
}

/* ---- functional simulator ---------------------------------------------------------------------- */

int vta_machine_init(vta_machine *m, size_t dram_bytes) {
    memset(m, 0, sizeof *m);
    m->dram = calloc(dram_bytes + 1, 1);
    m->dram_bytes = dram_bytes;
    m->uop = calloc(VTA_UOP_DEPTH, sizeof *m->uop);
    m->inp = calloc(VTA_INP_DEPTH, sizeof *m->inp);
    m->wgt = calloc(VTA_WGT_DEPTH, sizeof *m->wgt);
    m->acc = calloc(VTA_ACC_DEPTH, sizeof *m->acc);
    m->out = calloc(VTA_OUT_DEPTH, sizeof *m->out);
    if (!m->dram || !m->uop || !m->inp || !m->wgt || !m->acc || !m->out) { vta_machine_free(m); return -1; }
    return 0;
}

void vta_machine_free(vta_machine *m) {
    free(m->dram); free(m->uop); free(m->inp); free(m->wgt); free(m->acc); free(m->out);
    memset(m, 0, sizeof *m);
}

/* The on-chip element `index` of memory `mem` (a byte pointer) — index already checked. */
static uint8_t *sram_elem(vta_machine *m, uint32_t mem, uint32_t index) {
    switch (mem) {
    case VTA_MEM_UOP: return (uint8_t *)&m->uop[index];
    case VTA_MEM_WGT: return (uint8_t *)m->wgt[index];
    case VTA_MEM_INP: return (uint8_t *)m->inp[index];
    case VTA_MEM_ACC: return (uint8_t *)m->acc[index];
    default: return (uint8_t *)m->out[index];
    }
}

/* Copies one element between DRAM (little-endian) and SRAM. The host is little-endian for int32 (checked at build by the tests). */
static void copy_in(vta_machine *m, uint32_t mem, uint32_t index, const uint8_t *src) {
    uint32_t n = vta_elem_bytes(mem);
    uint8_t *dst = sram_elem(m, mem, index);
    if (src) memcpy(dst, src, n); else memset(dst, 0, n);
}

static int load_store(vta_machine *m, const vta_insn *in, char *why, size_t size) {
    uint32_t es = vta_elem_bytes(in->mem), depth = depth_of(in->mem);
    uint64_t rows = (uint64_t)in->y_pad0 + in->y_size + in->y_pad1, cols = (uint64_t)in->x_pad0 + in->x_size + in->x_pad1;
    if (in->y_size && in->x_size) {
        if (in->x_stride < in->x_size) { say(why, size, "x_stride %u < x_size %u", in->x_stride, in->x_size); return -1; }
        uint64_t last = ((uint64_t)in->dram_base + (uint64_t)(in->y_size - 1) * in->x_stride + in->x_size) * es;
        if (last > m->dram_bytes) { say(why, size, "DRAM access ends at byte %llu, past the %zu-byte DRAM", (unsigned long long)last, m->dram_bytes); return -1; }
    }
    uint64_t on_chip = in->y_size && in->x_size ? rows * cols : 0;
    if (in->sram_base + on_chip > depth) { say(why, size, "%s of %llu elements at %u overruns a buffer of %u", in->opcode == VTA_OP_LOAD ? "LOAD" : "STORE", (unsigned long long)on_chip, in->sram_base, depth); return -1; }
    if (!on_chip) return 0;
    uint64_t bytes = (uint64_t)in->y_size * in->x_size * es;
    if (in->opcode == VTA_OP_STORE) {
        for (uint32_t y = 0; y < in->y_size; y++)
            for (uint32_t x = 0; x < in->x_size; x++)
                memcpy(m->dram + ((uint64_t)in->dram_base + (uint64_t)y * in->x_stride + x) * es, m->out[in->sram_base + y * in->x_size + x], es);
        m->counters.store_bytes += bytes;
        return 0;
    }
    for (uint64_t y = 0; y < rows; y++)
        for (uint64_t x = 0; x < cols; x++) {
            int pad = y < in->y_pad0 || y >= in->y_pad0 + in->y_size || x < in->x_pad0 || x >= in->x_pad0 + in->x_size;
            const uint8_t *src = pad ? NULL : m->dram + ((uint64_t)in->dram_base + (y - in->y_pad0) * in->x_stride + (x - in->x_pad0)) * es;
            copy_in(m, in->mem, (uint32_t)(in->sram_base + y * cols + x), src);
        }
    m->counters.load_bytes[in->mem] += bytes;
    return 0;
}

/* The largest index a loop reaches from `base` with factors fo, fi over iter_out × iter_in. */
static uint64_t reach(uint32_t base, const vta_insn *in, uint32_t fo, uint32_t fi) {
    return (uint64_t)base + (uint64_t)(in->iter_out ? in->iter_out - 1 : 0) * fo + (uint64_t)(in->iter_in ? in->iter_in - 1 : 0) * fi;
}

static int8_t narrow(int32_t v) { return (int8_t)(uint8_t)((uint32_t)v & 0xff); }

static int32_t alu(uint32_t op, int32_t a, int32_t b) {
    switch (op) {
    case VTA_ALU_MIN: return a < b ? a : b;
    case VTA_ALU_MAX: return a > b ? a : b;
    case VTA_ALU_ADD: return (int32_t)((uint32_t)a + (uint32_t)b);
    case VTA_ALU_MUL: return (int32_t)((uint32_t)a * (uint32_t)b);
    default: /* SHR: arithmetic right shift; a negative amount shifts left (amounts taken modulo 32) */
        if (b >= 0) return a >> (b & 31);
        return (int32_t)((uint32_t)a << ((-b) & 31));
    }
}

static int compute(vta_machine *m, const vta_insn *in, char *why, size_t size) {
    uint64_t iters = vta_uop_iterations(in);
    if (!iters) return 0;
    int gemm = in->opcode == VTA_OP_GEMM;
    for (uint32_t u = in->uop_bgn; u < in->uop_end; u++) {
        vta_uop op = vta_uop_decode(m->uop[u]);
        if (reach(op.dst, in, in->dst_fo, in->dst_fi) >= VTA_ACC_DEPTH) { say(why, size, "uop %u: acc index out of range", u); return -1; }
        if (!in->reset && reach(op.src, in, in->src_fo, in->src_fi) >= (gemm ? VTA_INP_DEPTH : VTA_ACC_DEPTH)) { say(why, size, "uop %u: src index out of range", u); return -1; }
        if (gemm && !in->reset && reach(op.wgt, in, in->wgt_fo, in->wgt_fi) >= VTA_WGT_DEPTH) { say(why, size, "uop %u: wgt index out of range", u); return -1; }
    }
    for (uint32_t i0 = 0; i0 < in->iter_out; i0++)
        for (uint32_t i1 = 0; i1 < in->iter_in; i1++)
            for (uint32_t u = in->uop_bgn; u < in->uop_end; u++) {
                vta_uop op = vta_uop_decode(m->uop[u]);
                uint32_t d = op.dst + i0 * in->dst_fo + i1 * in->dst_fi, s = op.src + i0 * in->src_fo + i1 * in->src_fi;
                int32_t *acc = m->acc[d];
                if (in->reset) memset(acc, 0, sizeof m->acc[d]);
                else if (gemm) {
                    uint32_t w = op.wgt + i0 * in->wgt_fo + i1 * in->wgt_fi;
                    for (int o = 0; o < VTA_BLOCK; o++) {
                        int32_t sum = 0;
                        for (int k = 0; k < VTA_BLOCK; k++) sum += (int32_t)m->inp[s][k] * (int32_t)m->wgt[w][o][k];
                        acc[o] = (int32_t)((uint32_t)acc[o] + (uint32_t)sum);
                    }
                } else {
                    int32_t src[VTA_BLOCK];
                    memcpy(src, m->acc[s], sizeof src);
                    for (int o = 0; o < VTA_BLOCK; o++) acc[o] = alu(in->alu_op, acc[o], in->use_imm ? in->imm : src[o]);
                }
                for (int o = 0; o < VTA_BLOCK; o++) m->out[d][o] = narrow(acc[o]);
            }
    if (gemm) m->counters.gemm_uop_iterations += iters;
    else m->counters.alu_uop_iterations += iters;
    return 0;
}

int vta_execute(vta_machine *m, const vta_insn *in, char *why, size_t why_size) {
    m->counters.instructions++;
    switch (in->opcode) {
    case VTA_OP_LOAD: case VTA_OP_STORE: return load_store(m, in, why, why_size);
    case VTA_OP_GEMM: case VTA_OP_ALU: return compute(m, in, why, why_size);
    case VTA_OP_FINISH: m->finished = 1; return 0;
    default: say(why, why_size, "unknown opcode %u", in->opcode); return -1;
    }
}

/* ---- cycle model ------------------------------------------------------------------------------- */

/* The queue a flag of an instruction on `module` uses, or -1 when the module has no such neighbour. */
int vta_queue(uint32_t module, int pop, int prev) {
    if (module == VTA_MOD_LOAD) return prev ? -1 : pop ? VTA_Q_C2L : VTA_Q_L2C;
    if (module == VTA_MOD_STORE) return prev ? (pop ? VTA_Q_C2S : VTA_Q_S2C) : -1;
    if (prev) return pop ? VTA_Q_L2C : VTA_Q_C2L;
    return pop ? VTA_Q_S2C : VTA_Q_C2S;
}

void vta_timing_free(vta_timing *t) {
    free(t->start); free(t->end); free(t->order);
    memset(t, 0, sizeof *t);
}

typedef struct qevent { uint64_t time; int delta; } qevent;
static int qevent_cmp(const void *a, const void *b) {
    const qevent *x = a, *y = b;
    if (x->time != y->time) return x->time < y->time ? -1 : 1;
    return x->delta - y->delta; /* pops (-1) before pushes (+1) at the same instant */
}

int vta_schedule(const vta_insn *insns, size_t count, const vta_target *t, vta_timing *out, char *why, size_t why_size) {
    memset(out, 0, sizeof *out);
    /* one engine per module, each at a 1 GHz pseudo clock so that 1 cycle = 1000 ps exactly */
    ak_engine engines[VTA_MODULES] = {{"load", 1e9, 0, 0}, {"compute", 1e9, 0, 0}, {"store", 1e9, 0, 0}};
    ak_op *ops = calloc(count + 1, sizeof *ops);
    if (!ops) { say(why, why_size, "out of memory"); return -1; }
    uint64_t pops[VTA_QUEUES] = {0}, pushes[VTA_QUEUES] = {0};
    for (size_t i = 0; i < count; i++) {
        const vta_insn *in = &insns[i];
        uint32_t mod = vta_module(in);
        ak_op *op = &ops[i];
        op->engine = mod;
        op->wait_sem[0] = op->wait_sem[1] = op->signal_sem[0] = op->signal_sem[1] = AK_NO_SEM;
        op->cycles = vta_insn_cycles(in, t);
        const uint32_t flags[4] = {in->pop_prev, in->pop_next, in->push_prev, in->push_next};
        for (int f = 0; f < 4; f++) {
            if (!flags[f]) continue;
            int q = vta_queue(mod, f < 2, f == 0 || f == 2);
            if (q < 0) { free(ops); say(why, why_size, "instruction %zu: the %s module has no %s neighbour", i, mod == VTA_MOD_LOAD ? "load" : "store", f == 0 || f == 2 ? "previous" : "next"); return -1; }
            if (f < 2) { op->wait_sem[f] = (uint32_t)q; op->wait_value[f] = (uint32_t)++pops[q]; }
            else { op->signal_sem[f - 2] = (uint32_t)q; pushes[q]++; }
        }
    }
    for (int q = 0; q < VTA_QUEUES; q++)
        if (pops[q] != pushes[q]) { free(ops); say(why, why_size, "token queue %d: %llu pushes but %llu pops", q, (unsigned long long)pushes[q], (unsigned long long)pops[q]); return -1; }
    ak_report r;
    if (ak_simulate(engines, VTA_MODULES, ops, count, VTA_QUEUES, &r, why, why_size)) { free(ops); return -1; }
    out->count = count;
    out->start = calloc(count + 1, sizeof *out->start);
    out->end = calloc(count + 1, sizeof *out->end);
    out->order = r.order; r.order = NULL;
    qevent *ev = calloc(2 * count + 1, sizeof *ev);
    if (!out->start || !out->end || !ev) { free(ev); free(ops); ak_report_free(&r); vta_timing_free(out); say(why, why_size, "out of memory"); return -1; }
    for (size_t i = 0; i < count; i++) {
        out->start[i] = r.start_ps[i] / 1000;
        out->end[i] = r.end_ps[i] / 1000;
        if (insns[i].opcode == VTA_OP_GEMM) out->gemm_cycles += ops[i].cycles;
        if (insns[i].opcode == VTA_OP_ALU) out->alu_cycles += ops[i].cycles;
    }
    out->total_cycles = r.total_ps / 1000;
    for (int e = 0; e < VTA_MODULES; e++) out->busy_cycles[e] = r.busy_ps[e] / 1000;
    /* queue occupancy: a token enters when its pusher ends and leaves when its popper starts */
    for (int q = 0; q < VTA_QUEUES; q++) {
        size_t n = 0;
        for (size_t i = 0; i < count; i++) {
            for (int k = 0; k < 2; k++) if (ops[i].wait_sem[k] == (uint32_t)q) ev[n++] = (qevent){out->start[i], -1};
            for (int k = 0; k < 2; k++) if (ops[i].signal_sem[k] == (uint32_t)q) ev[n++] = (qevent){out->end[i], +1};
        }
        qsort(ev, n, sizeof *ev, qevent_cmp);
        int64_t level = 0, peak = 0;
        for (size_t k = 0; k < n; k++) { level += ev[k].delta; if (level > peak) peak = level; }
        out->max_queue_occupancy[q] = (uint32_t)peak;
    }
    free(ev);
    free(ops);
    ak_report_free(&r);
    for (int q = 0; q < VTA_QUEUES; q++)
        if (out->max_queue_occupancy[q] > VTA_QUEUE_DEPTH) {
            say(why, why_size, "token queue %d would hold %u tokens (depth %d)", q, out->max_queue_occupancy[q], VTA_QUEUE_DEPTH);
            vta_timing_free(out);
            return -1;
        }
    return 0;
}

int vta_random_order(const vta_insn *insns, size_t count, uint64_t seed, size_t *order) {
    size_t *next = calloc(VTA_MODULES * (count + 1), sizeof *next), cursor[VTA_MODULES] = {0}, length[VTA_MODULES] = {0};
    if (!next) return -1;
    for (size_t i = 0; i < count; i++) { uint32_t m = vta_module(&insns[i]); next[m * (count + 1) + length[m]++] = i; }
    uint64_t pushed[VTA_QUEUES] = {0}, popped[VTA_QUEUES] = {0}, x = seed | 1;
    for (size_t done = 0; done < count; done++) {
        int ready[VTA_MODULES], n = 0;
        for (int m = 0; m < VTA_MODULES; m++) {
            if (cursor[m] == length[m]) continue;
            const vta_insn *in = &insns[next[m * (count + 1) + cursor[m]]];
            int ok = 1;
            if (in->pop_prev) { int q = vta_queue((uint32_t)m, 1, 1); ok &= q >= 0 && popped[q] < pushed[q]; }
            if (in->pop_next) { int q = vta_queue((uint32_t)m, 1, 0); ok &= q >= 0 && popped[q] < pushed[q]; }
            if (ok) ready[n++] = m;
        }
        if (!n) { free(next); return -1; }
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        int m = ready[x % (uint64_t)n];
        size_t i = next[m * (count + 1) + cursor[m]++];
        const vta_insn *in = &insns[i];
        int qp = vta_queue((uint32_t)m, 1, 1), qn = vta_queue((uint32_t)m, 1, 0);
        if (in->pop_prev && qp >= 0) popped[qp]++;
        if (in->pop_next && qn >= 0) popped[qn]++;
        if (in->push_prev) { int q = vta_queue((uint32_t)m, 0, 1); if (q >= 0) pushed[q]++; }
        if (in->push_next) { int q = vta_queue((uint32_t)m, 0, 0); if (q >= 0) pushed[q]++; }
        order[done] = i;
    }
    free(next);
    return 0;
}
