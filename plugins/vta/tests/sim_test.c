/*
 * sim_test.c — unit tests of samplevta.fpga's ISA layer (isa.c) on hand-computed programs, under ASan/UBSan:
 * encodings round-trip and refuse fields that do not fit; the functional simulator's results and counters
 * (bytes loaded per buffer, GEMM and ALU uop-iterations); the cycle model's latencies, the overlap of the
 * three modules through the token queues, and its refusal of deadlocks, overflowing and unbalanced queues.
 */
#include "isa.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
#define EXPECT(cond, what) do { if (!(cond)) { failures++; printf("  FAIL %s (%s:%d)\n", what, __FILE__, __LINE__); } } while (0)

static vta_insn load(uint32_t mem, uint32_t sram, uint32_t dram, uint32_t y, uint32_t x, uint32_t stride) {
    vta_insn in = {0};
    in.opcode = VTA_OP_LOAD; in.mem = mem; in.sram_base = sram; in.dram_base = dram; in.y_size = y; in.x_size = x; in.x_stride = stride;
    return in;
}

static void test_encoding(void) {
    int before = failures;
    vta_insn a = load(VTA_MEM_INP, 1234, 0xdeadbee, 7, 300, 4000);
    a.y_pad0 = 1; a.y_pad1 = 2; a.x_pad0 = 3; a.x_pad1 = 15; a.pop_prev = 0; a.pop_next = 1; a.push_next = 1;
    vta_insn g = {0};
    g.opcode = VTA_OP_GEMM; g.reset = 1; g.uop_bgn = 8191; g.uop_end = 8192; g.iter_out = 16383; g.iter_in = 5;
    g.dst_fo = 2047; g.dst_fi = 3; g.src_fo = 1024; g.src_fi = 1; g.wgt_fo = 1023; g.wgt_fi = 512; g.pop_prev = 1; g.push_prev = 1;
    vta_insn u = {0};
    u.opcode = VTA_OP_ALU; u.alu_op = VTA_ALU_SHR; u.use_imm = 1; u.imm = -32768; u.uop_bgn = 1; u.uop_end = 2; u.iter_out = 1; u.iter_in = 320; u.dst_fi = 1; u.src_fi = 1;
    const vta_insn *all[3] = {&a, &g, &u};
    for (int i = 0; i < 3; i++) {
        uint8_t bytes[16];
        vta_insn back;
        char why[100];
        EXPECT(vta_encode(all[i], bytes) == 0, "encode");
        EXPECT(vta_decode(bytes, &back, why, sizeof why) == 0 && memcmp(&back, all[i], sizeof back) == 0, "decode gives back every field");
    }
    uint8_t bytes[16];
    vta_insn bad = a;
    bad.y_pad0 = 16;
    EXPECT(vta_encode(&bad, bytes) == -1, "a 4-bit pad of 16 does not fit");
    bad = u; bad.imm = 40000;
    EXPECT(vta_encode(&bad, bytes) == -1, "an immediate beyond 16 bits does not fit");
    bad = g; bad.wgt_fo = 1024;
    EXPECT(vta_encode(&bad, bytes) == -1, "a 10-bit wgt factor of 1024 does not fit");
    memset(bytes, 0, sizeof bytes);
    bytes[0] = 7;
    vta_insn out;
    char why[100];
    EXPECT(vta_decode(bytes, &out, why, sizeof why) == -1, "opcode 7 is refused");
    bytes[0] = VTA_OP_ALU; bytes[5] = 0; bytes[8 + 5] = 0x70; /* alu_op field (bits 44..46 of word 1) = 7 */
    EXPECT(vta_decode(bytes, &out, why, sizeof why) == -1, "ALU op 7 is refused");
    vta_uop uo = {2047, 1234, 1023};
    vta_uop ub = vta_uop_decode(vta_uop_encode(uo));
    EXPECT(ub.dst == 2047 && ub.src == 1234 && ub.wgt == 1023, "micro-op round trip");
    printf("encoding: 128-bit instructions and 32-bit micro-ops round-trip; oversized fields and unknown opcodes refused %s\n", failures > before ? "FAIL" : "ok");
}

/* A GEMM over two micro-ops and a 2×3 loop, then ALU ops, checked against a scalar computation, with the counters. */
static void test_functional(void) {
    int before = failures;
    vta_machine m;
    if (vta_machine_init(&m, 1 << 16)) { failures++; return; }
    /* DRAM: uops at 0 (4-byte units), inp at byte 1024 (16-byte units), wgt at byte 4096 (256-byte units), acc (bias) at byte 8192 */
    vta_uop uops[2] = {{0, 0, 0}, {0, 1, 1}}; /* acc[0] += inp[0]·wgt[0] + inp[1]·wgt[1] (plus the loops' offsets) */
    for (int i = 0; i < 2; i++) { uint32_t w = vta_uop_encode(uops[i]); memcpy(m.dram + 4 * i, &w, 4); }
    int8_t *inp = (int8_t *)m.dram + 1024;
    for (int i = 0; i < 16 * 16; i++) inp[i] = (int8_t)((i * 37 + 11) % 256 - 128);
    int8_t *wgt = (int8_t *)m.dram + 4096;
    for (int i = 0; i < 4 * 256; i++) wgt[i] = (int8_t)((i * 53 + 7) % 255 - 127);
    char why[160];
    vta_insn prog[8];
    prog[0] = load(VTA_MEM_UOP, 0, 0, 1, 2, 2);
    prog[1] = load(VTA_MEM_INP, 0, 1024 / 16, 2, 6, 8);   /* two rows of 6 vectors, DRAM stride 8: 12 vectors */
    prog[2] = load(VTA_MEM_WGT, 0, 4096 / 256, 1, 4, 4);
    vta_insn g = {0};
    g.opcode = VTA_OP_GEMM; g.uop_bgn = 0; g.uop_end = 2; g.iter_out = 2; g.iter_in = 3;
    g.dst_fo = 3; g.dst_fi = 1; g.src_fo = 6; g.src_fi = 2; g.wgt_fo = 2; g.wgt_fi = 0;
    vta_insn r = g; r.reset = 1; r.uop_end = 1;
    prog[3] = r; prog[4] = g;
    vta_insn a = {0};
    a.opcode = VTA_OP_ALU; a.uop_bgn = 0; a.uop_end = 1; a.iter_out = 2; a.iter_in = 3; a.dst_fo = 3; a.dst_fi = 1; a.src_fo = 3; a.src_fi = 1;
    a.alu_op = VTA_ALU_SHR; a.use_imm = 1; a.imm = 3;
    prog[5] = a;
    vta_insn st = {0};
    st.opcode = VTA_OP_STORE; st.mem = VTA_MEM_OUT; st.sram_base = 0; st.dram_base = 20000 / 16; st.y_size = 2; st.x_size = 3; st.x_stride = 3;
    prog[6] = st;
    prog[7] = (vta_insn){.opcode = VTA_OP_FINISH};
    int ok = 1;
    for (int i = 0; i < 8 && ok; i++) ok = vta_execute(&m, &prog[i], why, sizeof why) == 0;
    EXPECT(ok, "the program runs");
    /* the scalar version */
    int bad = 0;
    for (int i0 = 0; i0 < 2; i0++)
        for (int i1 = 0; i1 < 3; i1++) {
            int d = i0 * 3 + i1;
            for (int o = 0; o < 16; o++) {
                int32_t sum = 0;
                for (int u = 0; u < 2; u++) {
                    int s = uops[u].src + i0 * 6 + i1 * 2, w = (int)uops[u].wgt + i0 * 2;
                    int srow = s / 6, scol = s % 6; /* sram row s holds DRAM vector row*8 + col */
                    for (int k = 0; k < 16; k++) sum += inp[(srow * 8 + scol) * 16 + k] * wgt[w * 256 + o * 16 + k];
                }
                if (m.acc[d][o] != sum >> 3) bad++;
                if ((int8_t)m.dram[20000 + d * 16 + o] != (int8_t)(sum >> 3)) bad++;
            }
        }
    EXPECT(bad == 0, "GEMM + SHR results and the stored int8 values match the scalar computation");
    EXPECT(m.counters.load_bytes[VTA_MEM_UOP] == 8 && m.counters.load_bytes[VTA_MEM_INP] == 12 * 16 && m.counters.load_bytes[VTA_MEM_WGT] == 4 * 256 &&
           m.counters.load_bytes[VTA_MEM_ACC] == 0 && m.counters.store_bytes == 6 * 16, "bytes loaded per buffer and stored");
    EXPECT(m.counters.gemm_uop_iterations == 2 * 3 * 2 + 2 * 3 * 1 && m.counters.alu_uop_iterations == 6 && m.counters.instructions == 8 && m.finished,
           "GEMM uop-iterations (12 + 6 for the reset), ALU uop-iterations 6, 8 instructions");
    /* ALU semantics on one accumulator vector */
    for (int o = 0; o < 16; o++) { m.acc[100][o] = o * 1000 - 7000; m.acc[101][o] = 5 - o; }
    uint32_t w = vta_uop_encode((vta_uop){100, 101, 0});
    memcpy(&m.uop[50], &w, 4);
    vta_insn op = {0};
    op.opcode = VTA_OP_ALU; op.uop_bgn = 50; op.uop_end = 51; op.iter_out = 1; op.iter_in = 1;
    struct { uint32_t alu; int use_imm; int32_t imm; } steps[] = {{VTA_ALU_SHR, 1, -2}, {VTA_ALU_MAX, 0, 0}, {VTA_ALU_MUL, 1, -3}, {VTA_ALU_ADD, 0, 0}, {VTA_ALU_MIN, 1, 9000}, {VTA_ALU_SHR, 1, 4}};
    int32_t expect[16];
    for (int o = 0; o < 16; o++) {
        int32_t v = (o * 1000 - 7000) * 4, s = 5 - o;
        v = v > s ? v : s; v = v * -3; v = v + s; v = v < 9000 ? v : 9000; v = v >> 4;
        expect[o] = v;
    }
    for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
        op.alu_op = steps[k].alu; op.use_imm = (uint32_t)steps[k].use_imm; op.imm = steps[k].imm;
        vta_execute(&m, &op, why, sizeof why);
    }
    EXPECT(memcmp(m.acc[100], expect, sizeof expect) == 0, "SHR (negative = left), MAX, MUL, ADD, MIN, SHR (arithmetic) on int32 lanes");
    EXPECT(m.out[100][0] == (int8_t)expect[0] && m.out[100][15] == (int8_t)expect[15], "out receives the low 8 bits of every ALU result");
    /* bounds: an access past a buffer or the DRAM is an error */
    vta_insn over = load(VTA_MEM_INP, 2040, 0, 1, 16, 16);
    EXPECT(vta_execute(&m, &over, why, sizeof why) == -1, "a LOAD past the inp buffer is refused");
    over = load(VTA_MEM_WGT, 0, (1 << 16) / 256, 1, 1, 1);
    EXPECT(vta_execute(&m, &over, why, sizeof why) == -1, "a LOAD past the DRAM is refused");
    vta_insn far = op; far.iter_out = 2000; far.dst_fo = 1; far.src_fo = 1;
    EXPECT(vta_execute(&m, &far, why, sizeof why) == -1, "an ALU loop past the acc buffer is refused");
    vta_insn padded = load(VTA_MEM_INP, 0, 1024 / 16, 1, 2, 2);
    padded.x_pad0 = 1; padded.y_pad1 = 1;
    EXPECT(vta_execute(&m, &padded, why, sizeof why) == 0 && m.inp[0][0] == 0 && m.inp[1][0] == inp[0] && m.inp[3][5] == 0 && m.inp[5][0] == 0, "padding fills zeros around the loaded block");
    vta_machine_free(&m);
    printf("functional simulator: GEMM/ALU results, out narrowing, padding, bounds, and fsim counters (bytes per buffer, uop-iterations) %s\n", failures > before ? "FAIL" : "ok");
}

static void test_cycle_model(void) {
    int before = failures;
    const vta_target *pynq = vta_find_target("fpga-vta-pynq"), *zcu = vta_find_target("fpga-vta-zcu104");
    EXPECT(pynq && zcu && pynq->bus_bytes == 8 && zcu->bus_bytes == 16 && pynq->clock_hz == 100e6 && zcu->clock_hz == 333e6, "targets");
    vta_insn p[5];
    p[0] = load(VTA_MEM_INP, 0, 0, 2, 3, 3); p[0].push_next = 1;                    /* 96 bytes */
    vta_insn g = {0};
    g.opcode = VTA_OP_GEMM; g.uop_bgn = 0; g.uop_end = 2; g.iter_out = 2; g.iter_in = 2; g.pop_prev = 1;  /* 8 uop-iterations */
    p[1] = g;
    vta_insn a = {0};
    a.opcode = VTA_OP_ALU; a.uop_bgn = 0; a.uop_end = 1; a.iter_out = 2; a.iter_in = 2; a.push_next = 1; /* 4 uop-iterations */
    p[2] = a;
    vta_insn st = {0};
    st.opcode = VTA_OP_STORE; st.mem = VTA_MEM_OUT; st.y_size = 1; st.x_size = 2; st.x_stride = 2; st.pop_prev = 1; st.push_prev = 1; /* 32 bytes */
    p[3] = st;
    p[4] = (vta_insn){.opcode = VTA_OP_FINISH, .pop_next = 1};
    vta_timing t;
    char why[160];
    /* pynq: LOAD 32 + 96/8 = 44; GEMM 44..52; ALU 52..60 (II 2); STORE 60 + 32 + 4 = 96; FINISH 96..97 */
    EXPECT(vta_schedule(p, 5, pynq, &t, why, sizeof why) == 0, "schedules");
    EXPECT(t.end[0] == 44 && t.start[1] == 44 && t.end[1] == 52 && t.end[2] == 60 && t.start[3] == 60 && t.end[3] == 96 && t.end[4] == 97 && t.total_cycles == 97,
           "pynq: LOAD 44, GEMM 8, ALU 8, STORE 36, FINISH 1 cycles in sequence (97)");
    EXPECT(t.gemm_cycles == 8 && t.alu_cycles == 8 && t.busy_cycles[VTA_MOD_LOAD] == 44 && t.busy_cycles[VTA_MOD_STORE] == 36, "busy cycles per module");
    vta_timing_free(&t);
    /* zcu104: LOAD 32 + 6 = 38; GEMM ..46; ALU ..54; STORE 32 + 2 = 34 -> 88; FINISH 89 */
    EXPECT(vta_schedule(p, 5, zcu, &t, why, sizeof why) == 0 && t.total_cycles == 89, "zcu104: the 128-bit bus halves the transfer beats (89)");
    vta_timing_free(&t);
    /* overlap: two tiles, the second LOAD runs while the first GEMM computes */
    vta_insn q[9];
    q[0] = load(VTA_MEM_INP, 0, 0, 1, 8, 8); q[0].push_next = 1;       /* 32 + 16 = 48 */
    q[1] = load(VTA_MEM_INP, 8, 8, 1, 8, 8); q[1].push_next = 1;       /* 48..96 */
    vta_insn big = g; big.iter_out = 50; big.iter_in = 1; big.uop_end = 2;  /* 100 cycles */
    q[2] = big;                                                         /* pops tile 0: 48..148 */
    q[3] = big; q[3].pop_prev = 1; q[3].push_next = 1;                  /* 148..248 */
    q[4] = st;                                                          /* pops c2s: 248..284, pushes s2c */
    q[5] = (vta_insn){.opcode = VTA_OP_FINISH, .pop_next = 1};
    q[2].pop_prev = 1;
    EXPECT(vta_schedule(q, 6, pynq, &t, why, sizeof why) == 0, "double-buffered program schedules");
    EXPECT(t.start[1] == 48 && t.end[1] == 96 && t.start[2] == 48 && t.end[3] == 248 && t.end[4] == 284 && t.total_cycles == 285,
           "the second LOAD overlaps the first GEMM (total 285, not 48+48+100+100+36+1 = 333)");
    vta_timing_free(&t);
    /* errors: a pop nobody pushes, a load with no previous module, nine outstanding tokens, an unpopped push */
    vta_insn d[2] = {g, (vta_insn){.opcode = VTA_OP_FINISH}};
    EXPECT(vta_schedule(d, 2, pynq, &t, why, sizeof why) == -1, "a pop without a push is refused (unbalanced)");
    vta_insn lp = load(VTA_MEM_INP, 0, 0, 1, 1, 1); lp.pop_prev = 1;
    EXPECT(vta_schedule(&lp, 1, pynq, &t, why, sizeof why) == -1, "the load module has no previous neighbour");
    vta_insn many[20];
    for (int i = 0; i < 9; i++) { many[i] = load(VTA_MEM_INP, 0, 0, 1, 1, 1); many[i].push_next = 1; }
    vta_insn slow = g; slow.pop_prev = 0; slow.iter_out = 1000; slow.iter_in = 1;
    many[9] = slow;
    for (int i = 10; i < 19; i++) { many[i] = g; many[i].iter_out = 1; many[i].iter_in = 1; }
    many[19] = (vta_insn){.opcode = VTA_OP_FINISH};
    EXPECT(vta_schedule(many, 20, pynq, &t, why, sizeof why) == -1 && strstr(why, "depth 8"), "nine tokens waiting in one queue exceed the depth of 8");
    vta_insn eight[18];
    for (int i = 0; i < 8; i++) { eight[i] = load(VTA_MEM_INP, 0, 0, 1, 1, 1); eight[i].push_next = 1; }
    eight[8] = slow;
    for (int i = 9; i < 17; i++) { eight[i] = g; eight[i].iter_out = 1; eight[i].iter_in = 1; }
    eight[17] = (vta_insn){.opcode = VTA_OP_FINISH};
    EXPECT(vta_schedule(eight, 18, pynq, &t, why, sizeof why) == 0 && t.max_queue_occupancy[VTA_Q_L2C] == 8, "eight waiting tokens fit (peak 8)");
    vta_timing_free(&t);
    vta_insn un[2] = {load(VTA_MEM_INP, 0, 0, 1, 1, 1), (vta_insn){.opcode = VTA_OP_FINISH}};
    un[0].push_next = 1;
    EXPECT(vta_schedule(un, 2, pynq, &t, why, sizeof why) == -1, "a push nobody pops is refused");
    printf("cycle model: GEMM 1/uop-iteration, ALU II 2, DMA setup + bytes/bus width, module overlap, queue depth 8 and deadlocks %s\n", failures > before ? "FAIL" : "ok");
}

int main(void) {
    test_encoding();
    test_functional();
    test_cycle_model();
    printf("sim_test: %s (%d failures)\n", failures ? "FAIL" : "PASS", failures);
    return failures ? 1 : 0;
}
