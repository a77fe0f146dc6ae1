/*
 * isa.h — the npu-nc2 instruction set and payload (compat "sampleneuron.nc2/knpu1"); documented in
 * Documentation/targets/NPU.md.
 *
 * Memories: device memory (DRAM) holds tensors (fp32 in this model); SBUF is 128 partitions × 192 KiB;
 * PSUM is 128 partitions × 8 banks × 512 fp32. A tile is `parts` partitions × `cols` elements per partition.
 *
 * Every instruction is 16 little-endian u32 words:
 *   0 opcode  1 func  2 wait_sem0  3 wait_value0  4 wait_sem1  5 wait_value1  6 signal_sem0  7 signal_sem1
 *   8 parts   9 cols  10 a  11 b  12 c  13 d  14 e  15 f
 * with operands by opcode:
 *   DMA_LOAD   DRAM tensor a, element offset b, partition stride c, element stride d -> SBUF byte address e,
 *              SBUF element type f (1 fp32, 2 bf16: rounded to nearest even on the way); func = DMA queue 0..15 in
 *              bits 0-7 and the first SBUF partition the tile occupies in bits 8-15 (0 in payloads before the
 *              depthwise Conv lowering; first + parts <= 128), bits 16-31 zero
 *   DMA_STORE  SBUF byte address e (element type f) -> DRAM tensor a at offset b, strides c, d; func as DMA_LOAD
 *   LOAD_STATIONARY   the stationary tile [parts = contraction rows × cols <= 128 columns] from SBUF address a,
 *              element type f, into TensorE
 *   MULTIPLY_MOVING   the moving tile [parts = contraction rows × cols <= 512] from SBUF address a (type f)
 *              through TensorE into PSUM bank b: psum[n][m] = (c ? psum[n][m] : 0) + sum_k S[k][n]·M[k][m]
 *              in fp32, for n < the stationary's columns (its partitions in PSUM)
 *   ACTIVATE   ScalarE: dst[p][j] = func(src[p][j]·scale + bias[p]) with src PSUM bank a (b = 1) or the fp32
 *              SBUF address a (b = 0), dst the fp32 SBUF address c, bias the fp32 SBUF address d (one value per
 *              partition) or NPU_NONE for 0, scale = the float with bits f; func NPU_FUNC_* (erf from version 4); an SBUF source
 *              has element type e (1 fp32, 2 bf16)
 *   VECTOR     VectorE: dst c = src a (op func: NPU_ALU_*: add, mul, max; from version 4 also min, sub, div) src b; sources of element type e, dst fp32; with d = 1,
 *              b is one fp32 value per partition (at SBUF address b) applied along the whole row (d = 0: a tile);
 *              with d = 2 (multiply-accumulate, NKI's scalar_tensor_tensor form): dst c = (a op b[p]) + f[p][j],
 *              b one fp32 value per partition and f the SBUF address of an fp32 addend tile (may equal c)
 *   REDUCE     VectorE: dst c[p][0] (fp32) = reduction (func: NPU_ALU_ADD sum, NPU_ALU_MAX max) over j < cols of
 *              src a[p][j] (element type e), folded into the value already at c when d = 1
 * Synchronization: an instruction starts once semaphore wait_sem_i has count >= wait_value_i (NPU_NONE = no
 * wait) and adds 1 to signal_sem0/1 when it completes. Each engine (TensorE, VectorE, ScalarE, 16 DMA
 * queues) runs its instructions in payload order.
 *
 * Payload (little-endian): "KNPU" u32 version (2, 3 or 4; 1 is still read) u32 auto_cast (0 none, 1 matmul, 2 all)
 *   u32 tensor_count, input_count, output_count, semaphore_count, instruction_count
 *   tensors: tensor_count × (u32 kind (NPU_T_*), u32 rank (<= 8), rank × i64 dims,
 *            constants only: u32 element type (1 fp32, 2 bf16), u64 byte count, bytes)
 *   inputs: input_count × u32 tensor; outputs: output_count × u32 tensor
 *   instructions: instruction_count × 16 u32
 *   version 2 and 3, the layer table (accelkit's ak_put_layers): u32 layer_count, layer_count × (u32 length,
 *            name bytes: the graph node(s) a layer lowers, e.g. "conv1+relu1"), then instruction_count × u32
 *            layer index (< layer_count) — what the profile (plugin ABI 1.4) reports per layer
 *   version 3 and 4 (a program for two cores, or one that uses version 4's ops; other programs are still written as
 *            version 2): tensors may be
 *            views (kind 4: after the dims, u32 base tensor (an earlier input, output or intermediate), u64 element
 *            offset; offset + elements <= the base's); after the layer table, u32 cores (1 or 2), then
 *            instruction_count × u32 core. Each core has its own engines, SBUF and PSUM; DRAM and the semaphores
 *            are the device's, shared.
 *   version 4: version 3's layout; the only difference is that its instructions may use the VectorE ops min, sub
 *            and div and the ScalarE function erf, which a reader of versions 1 to 3 refuses.
 * npu_decode validates all of it with checked arithmetic: a payload it did not write is an error.
 */
#ifndef KILN_NPU_ISA_H
#define KILN_NPU_ISA_H

#include <stddef.h>
#include <stdint.h>

#include "../accelkit/ak_bytes.h"

#define NPU_NONE 0xffffffffu
#define NPU_PARTITIONS 128u
#define NPU_SBUF_PARTITION_BYTES (192u * 1024u)
#define NPU_PSUM_BANKS 8u
#define NPU_PSUM_BANK_FP32 512u
#define NPU_DMA_QUEUES 16u
/* A DMA's func word: the queue in bits 0-7, the first SBUF partition of its tile in bits 8-15. */
#define NPU_DMA_QUEUE(func) ((func) & 0xffu)
#define NPU_DMA_PARTITION(func) (((func) >> 8) & 0xffu)
#define NPU_VECTOR_MAC 2u
#define NPU_MAX_COLS 512u
#define NPU_STATIONARY_COLS 128u
#define NPU_MAX_RANK 8
#define NPU_MAX_TENSOR_ELEMENTS 0xffffffffull

enum { NPU_DMA_LOAD = 1, NPU_DMA_STORE = 2, NPU_LOAD_STATIONARY = 3, NPU_MULTIPLY_MOVING = 4, NPU_ACTIVATE = 5, NPU_VECTOR = 6, NPU_REDUCE = 7, NPU_OP_LAST = 7 };
enum { NPU_FUNC_IDENTITY = 0, NPU_FUNC_RELU = 1, NPU_FUNC_SIGMOID = 2, NPU_FUNC_TANH = 3, NPU_FUNC_GELU = 4, NPU_FUNC_EXP = 5, NPU_FUNC_RECIPROCAL = 6,
       NPU_FUNC_RSQRT = 7, NPU_FUNC_ERF = 8, NPU_FUNC_LAST = 8 };
/* VectorE ops; MIN, SUB (a - b) and DIV (a / b, IEEE division) are version 4's. */
enum { NPU_ALU_ADD = 0, NPU_ALU_MUL = 1, NPU_ALU_MAX = 2, NPU_ALU_MIN = 3, NPU_ALU_SUB = 4, NPU_ALU_DIV = 5, NPU_ALU_LAST = 5 };
/* The last function and VectorE op a payload before version 4 may use. */
#define NPU_FUNC_LAST_V3 NPU_FUNC_RSQRT
#define NPU_ALU_LAST_V3 NPU_ALU_MAX
enum { NPU_F32 = 1, NPU_BF16 = 2 };
enum { NPU_T_INPUT = 0, NPU_T_CONST = 1, NPU_T_OUTPUT = 2, NPU_T_SCRATCH = 3, NPU_T_VIEW = 4 };
#define NPU_MAX_CORES 2u
enum { NPU_CAST_NONE = 0, NPU_CAST_MATMUL = 1, NPU_CAST_ALL = 2 };

/* One instruction (the 16 words). */
typedef struct npu_insn {
    uint32_t opcode, func, wait_sem[2], wait_value[2], signal_sem[2], parts, cols, a, b, c, d, e, f;
} npu_insn;

/* One DRAM tensor. Constants carry their data (dtype NPU_F32 or NPU_BF16). A view (version 3) names `elements`
 * consecutive elements of an earlier input, output or intermediate `base` from element `offset` on: one batch
 * slice of it, for one core. */
typedef struct npu_tensor {
    uint32_t kind, rank, dtype, base;
    uint64_t offset;
    int64_t dims[NPU_MAX_RANK];
    uint64_t elements;
    uint8_t *data;
    uint64_t bytes;
} npu_tensor;

/* A whole program. */
typedef struct npu_program {
    uint32_t auto_cast, tensor_count, input_count, output_count, semaphore_count, insn_count;
    npu_tensor *tensors;
    uint32_t *inputs, *outputs;
    npu_insn *insns;
    ak_layers layers;      /* version 2: the graph node(s) each instruction came from (count 0 in a version 1 payload) */
    uint32_t cores;        /* version 3: the cores the program runs on (1 or 2; 1 before version 3) */
    uint32_t *core_of;     /* version 3: per instruction, its core (< cores); NULL or all 0 for one core */
} npu_program;

/* A growable byte buffer (failed set when an allocation failed): accelkit's. */
typedef ak_bytes npu_buffer;

/* Serializes `p` into `out` (zeroed first). */
void npu_encode(const npu_program *p, npu_buffer *out);
/* Parses and validates a payload into `p` (release with npu_program_free). 0, or -1 with a reason. */
int npu_decode(const void *data, size_t size, npu_program *p, char *why, size_t why_size);
/* Frees what a program owns. */
void npu_program_free(npu_program *p);
/* The element count of a shape, or -1 when a dim is negative or the count exceeds NPU_MAX_TENSOR_ELEMENTS. */
int64_t npu_element_count(uint32_t rank, const int64_t *dims);
/* Bytes of one SBUF/DRAM element of type t (0 when unknown). */
uint32_t npu_dtype_size(uint32_t t);

#endif
