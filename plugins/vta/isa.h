/*
 * isa.h — the VTA-like ISA of samplevta.fpga (targets fpga-vta-pynq and fpga-vta-zcu104): parameters, the
 * 128-bit instruction and 32-bit micro-op encodings, the functional simulator with its counters, the cycle
 * model (three modules joined by four dependency-token queues, scheduled by accelkit) and the payload.
 *
 * The machine follows the published facts of Apache TVM's VTA default configuration (vta_config.json,
 * hw_spec.h, the VTA paper): a BATCH×BLOCK_IN×BLOCK_OUT = 1×16×16 int8 GEMM core accumulating in int32,
 * on-chip buffers uop 32 KiB, inp 32 KiB, wgt 256 KiB, acc 128 KiB (and out 32 KiB), instructions LOAD,
 * STORE, GEMM, ALU and FINISH, ALU ops MIN, MAX, ADD, SHR and MUL with 16-bit immediates, micro-op kernels
 * repeated by a 2-level affine loop, and load / compute / store modules synchronized by dependency tokens.
 * The bit positions of the fields are this plugin's own (Documentation/targets/FPGA.md lists them).
 * Written from those facts; no VTA source is used.
 */
#ifndef VTA_ISA_H
#define VTA_ISA_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- machine parameters (Documentation/targets/FPGA.md tags each as documented / derived / assumed) ---- */
#define VTA_BATCH 1
#define VTA_BLOCK 16                                   /* BLOCK_IN = BLOCK_OUT */
#define VTA_UOP_BYTES 4
#define VTA_INP_ELEM_BYTES (VTA_BATCH * VTA_BLOCK)      /* 16: one int8 vector of 16 channels */
#define VTA_WGT_ELEM_BYTES (VTA_BLOCK * VTA_BLOCK)      /* 256: a 16×16 int8 block */
#define VTA_ACC_ELEM_BYTES (VTA_BATCH * VTA_BLOCK * 4)  /* 64: 16 int32 */
#define VTA_OUT_ELEM_BYTES (VTA_BATCH * VTA_BLOCK)      /* 16 */
#define VTA_UOP_DEPTH (32768 / VTA_UOP_BYTES)           /* 8192 micro-ops */
#define VTA_INP_DEPTH (32768 / VTA_INP_ELEM_BYTES)      /* 2048 */
#define VTA_WGT_DEPTH (262144 / VTA_WGT_ELEM_BYTES)     /* 1024 */
#define VTA_ACC_DEPTH (131072 / VTA_ACC_ELEM_BYTES)     /* 2048 */
#define VTA_OUT_DEPTH (32768 / VTA_OUT_ELEM_BYTES)      /* 2048 */
#define VTA_QUEUE_DEPTH 8                               /* each dependency-token queue */
#define VTA_INSN_BYTES 16

/* Opcodes, memory types and ALU ops. */
enum { VTA_OP_LOAD = 0, VTA_OP_STORE = 1, VTA_OP_GEMM = 2, VTA_OP_FINISH = 3, VTA_OP_ALU = 4 };
enum { VTA_MEM_UOP = 0, VTA_MEM_WGT = 1, VTA_MEM_INP = 2, VTA_MEM_ACC = 3, VTA_MEM_OUT = 4 };
enum { VTA_ALU_MIN = 0, VTA_ALU_MAX = 1, VTA_ALU_ADD = 2, VTA_ALU_SHR = 3, VTA_ALU_MUL = 4 };
/* Modules and the four token queues: load->compute, compute->load, compute->store, store->compute. */
enum { VTA_MOD_LOAD = 0, VTA_MOD_COMPUTE = 1, VTA_MOD_STORE = 2, VTA_MODULES = 3 };
enum { VTA_Q_L2C = 0, VTA_Q_C2L = 1, VTA_Q_C2S = 2, VTA_Q_S2C = 3, VTA_QUEUES = 4 };

/* One instruction, decoded. Fields that an opcode does not use are 0. */
typedef struct vta_insn {
    uint32_t opcode;
    uint32_t pop_prev, pop_next, push_prev, push_next;    /* dependency flags (0/1) */
    /* LOAD / STORE */
    uint32_t mem, sram_base, dram_base, y_size, x_size, x_stride, y_pad0, y_pad1, x_pad0, x_pad1;
    /* GEMM / ALU */
    uint32_t reset, uop_bgn, uop_end, iter_out, iter_in;
    uint32_t dst_fo, dst_fi, src_fo, src_fi, wgt_fo, wgt_fi;
    uint32_t alu_op, use_imm;
    int32_t imm;
} vta_insn;

/* A micro-op: acc (dst), inp or acc (src) and wgt indices (11 + 11 + 10 bits). */
typedef struct vta_uop { uint32_t dst, src, wgt; } vta_uop;

/* Encodes `in` into 16 bytes (little-endian 64-bit words). Returns 0, or -1 when a field does not fit its width. */
int vta_encode(const vta_insn *in, uint8_t out[VTA_INSN_BYTES]);
/* Decodes 16 bytes. Returns 0, or -1 (reason in why) for an unknown opcode, memory type or ALU op. */
int vta_decode(const uint8_t in[VTA_INSN_BYTES], vta_insn *out, char *why, size_t why_size);
uint32_t vta_uop_encode(vta_uop u);
vta_uop vta_uop_decode(uint32_t word);
/* The module that executes `in` (LOAD of UOP/ACC runs on compute, as in VTA). */
uint32_t vta_module(const vta_insn *in);
/* The token queue a flag of an instruction on `module` uses (pop or push, towards the previous or the next
 * module), or -1 when the module has no such neighbour (load has no previous, store no next). */
int vta_queue(uint32_t module, int pop, int prev);
/* DRAM bytes one element of memory type `mem` occupies (0 for an unknown type). */
uint32_t vta_elem_bytes(uint32_t mem);

/* ---- timing ----------------------------------------------------------------------------------- */

typedef struct vta_target {
    const char *name;          /* "fpga-vta-pynq" */
    double clock_hz;
    uint32_t bus_bytes;        /* AXI data width in bytes per cycle */
    uint32_t dma_setup_cycles; /* fixed cost of one LOAD/STORE */
} vta_target;
extern const vta_target vta_targets[2];
/* The target named `name`, or NULL. */
const vta_target *vta_find_target(const char *name);

/* Cycles of one instruction on its module: GEMM 1 per uop-iteration, ALU 2 per uop-iteration, LOAD/STORE
 * setup + ceil(bytes / bus_bytes); at least 1. */
uint64_t vta_insn_cycles(const vta_insn *in, const vta_target *t);
/* Uop-iterations of a GEMM/ALU: iter_out × iter_in × (uop_end − uop_bgn), 0 when uop_end <= uop_bgn. */
uint64_t vta_uop_iterations(const vta_insn *in);

/* ---- functional simulator ----------------------------------------------------------------------- */

/* What the functional simulator counts (as VTA's fsim does). */
typedef struct vta_counters {
    uint64_t load_bytes[4];     /* DRAM bytes read into uop, wgt, inp, acc */
    uint64_t store_bytes;       /* DRAM bytes written from out */
    uint64_t gemm_uop_iterations, alu_uop_iterations;
    uint64_t instructions;
} vta_counters;

/* The on-chip state and the DRAM the simulator works on. */
typedef struct vta_machine {
    uint8_t *dram; size_t dram_bytes;
    uint32_t *uop;               /* VTA_UOP_DEPTH */
    int8_t (*inp)[VTA_BLOCK];    /* VTA_INP_DEPTH */
    int8_t (*wgt)[VTA_BLOCK][VTA_BLOCK]; /* VTA_WGT_DEPTH, [out][in] */
    int32_t (*acc)[VTA_BLOCK];   /* VTA_ACC_DEPTH */
    int8_t (*out)[VTA_BLOCK];    /* VTA_OUT_DEPTH */
    vta_counters counters;
    int finished;
} vta_machine;

/* Allocates the buffers (and dram_bytes of zeroed DRAM). Returns 0 or -1 when out of memory. */
int vta_machine_init(vta_machine *m, size_t dram_bytes);
void vta_machine_free(vta_machine *m);
/* Executes one instruction. Every buffer and DRAM access is checked: returns 0, or -1 with the reason. */
int vta_execute(vta_machine *m, const vta_insn *in, char *why, size_t why_size);

/* ---- cycle model -------------------------------------------------------------------------------- */

typedef struct vta_timing {
    uint64_t total_cycles;
    uint64_t busy_cycles[VTA_MODULES];
    uint64_t gemm_cycles, alu_cycles;
    uint64_t *start, *end;       /* per instruction, in cycles (allocated; vta_timing_free) */
    size_t *order;               /* instruction indices in start order */
    size_t count;
    uint32_t max_queue_occupancy[VTA_QUEUES];
} vta_timing;

/* Schedules `count` instructions on the three modules with accelkit's event model: every module runs its
 * instructions in program order; a pop waits for the matching push of the neighbouring module (token
 * queues as counting semaphores). Afterwards checks that no queue ever held more than VTA_QUEUE_DEPTH
 * tokens and that every push was popped. Returns 0, or -1 with the reason (deadlock, overflow, an unbalanced queue). */
int vta_schedule(const vta_insn *insns, size_t count, const vta_target *t, vta_timing *out, char *why, size_t why_size);
void vta_timing_free(vta_timing *t);

/* A random order of the instructions that respects only what the hardware guarantees: each module's program
 * order, and that the k-th pop of a queue comes after the instruction of its k-th push. Executing a program in
 * any such order must give the same result when its tokens cover every dependency (the tests use it to check
 * the compiler's tokens). Fills order[count]; returns 0, or -1 when the tokens deadlock. */
int vta_random_order(const vta_insn *insns, size_t count, uint64_t seed, size_t *order);

#endif
