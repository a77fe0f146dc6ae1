/*
 * The sample plugin's own "machine code": a tiny register bytecode for float32 Conv, Relu, Add, MatMul
 * and Gemm, its byte encoding (the payload Kiln stores in artifacts), and an interpreter.
 *
 * Payload layout (all integers little-endian):
 *   "KSB1"                         magic
 *   u32 register_count
 *   u32 input_count,  input_count  x u32 register      (graph inputs, in graph order)
 *   u32 output_count, output_count x u32 register      (graph outputs, in graph order)
 *   u32 constant_count, each: u32 register, u32 rank, rank x i64 dim, element_count x f32
 *   u32 instruction_count, each: u32 opcode, u32 input_count, input_count x u32 register (0xFFFFFFFF =
 *       omitted optional input), u32 output register, PARAM_COUNT x i64 params, FPARAM_COUNT x f32
 * Every count and index is validated by bytecode_decode: a payload this code did not write is an error.
 */
#ifndef SAMPLE_BYTECODE_H
#define SAMPLE_BYTECODE_H

#include <stddef.h>
#include <stdint.h>

#define BC_MAX_RANK 16
#define BC_NO_REGISTER 0xFFFFFFFFu
/* The most multiply-adds one instruction may do: the interpreter has no deadline of its own, so a small
 * program must not keep it busy for minutes (about a second at this cap). The fuzz harness lowers it. */
#ifndef BC_MAX_WORK
#define BC_MAX_WORK ((int64_t)1 << 30)
#endif

enum bc_opcode { BC_RELU = 1, BC_ADD = 2, BC_MATMUL = 3, BC_GEMM = 4, BC_CONV = 5 };

/* Integer parameters per instruction (meaning by opcode):
 *   GEMM: [0] transA, [1] transB
 *   CONV: [0] group, [1..2] strides, [3..6] pads (top, left, bottom, right), [7..8] dilations */
#define BC_PARAM_COUNT 9
/* Float parameters: GEMM [0] alpha, [1] beta. */
#define BC_FPARAM_COUNT 2

typedef struct bc_shape {
    int32_t rank;
    int64_t dims[BC_MAX_RANK];
} bc_shape;

typedef struct bc_constant {
    uint32_t reg;
    bc_shape shape;
    float *data;            /* owned by the program */
} bc_constant;

typedef struct bc_instruction {
    uint32_t opcode;
    uint32_t input_count;
    uint32_t inputs[3];
    uint32_t output;
    int64_t params[BC_PARAM_COUNT];
    float fparams[BC_FPARAM_COUNT];
} bc_instruction;

typedef struct bc_program {
    uint32_t register_count;
    uint32_t input_count, output_count, constant_count, instruction_count;
    uint32_t *inputs, *outputs;
    bc_constant *constants;
    bc_instruction *instructions;
} bc_program;

/* A growable byte buffer. */
typedef struct bc_buffer {
    uint8_t *data;
    size_t size, capacity;
    int failed;             /* set when an allocation failed */
} bc_buffer;

void bc_put_u32(bc_buffer *b, uint32_t v);
void bc_put_i64(bc_buffer *b, int64_t v);
void bc_put_f32(bc_buffer *b, float v);
void bc_put_bytes(bc_buffer *b, const void *data, size_t size);

/* Serializes `program` into `out` (appending). */
void bc_encode(const bc_program *program, bc_buffer *out);

/* Parses and validates `size` bytes into *program (owned by the caller: bc_free). Returns 0 on success,
 * else nonzero with a description of what is wrong written into `why` (`why_size` bytes). */
int bc_decode(const void *data, size_t size, bc_program *program, char *why, size_t why_size);

/* Frees what bc_decode allocated. */
void bc_free(bc_program *program);

/* A tensor while the program runs. */
typedef struct bc_tensor {
    bc_shape shape;
    float *data;
    int owned;              /* data was malloc'ed by the interpreter */
} bc_tensor;

/* Runs `program` on `inputs` (program->input_count tensors, borrowed). On success returns 0 and
 * outputs[i] (program->output_count entries) hold the results (malloc'ed, owned by the caller, free with
 * bc_tensor_release). On failure returns nonzero with a message in `why`. */
int bc_run(const bc_program *program, const bc_tensor *inputs, bc_tensor *outputs, char *why, size_t why_size);

/* bc_run, also filling cycles[i] (program->instruction_count entries; NULL = not wanted) with what
 * instruction i cost on the sample device: one cycle per multiply-add (MatMul, Gemm, Conv) or per output
 * element (Relu, Add). An assumed cost model for the example, not a measurement. */
int bc_run_counted(const bc_program *program, const bc_tensor *inputs, bc_tensor *outputs, uint64_t *cycles,
                   char *why, size_t why_size);

/* The op name of `opcode` ("MatMul"), or "?" for an unknown one. */
const char *bc_opcode_name(uint32_t opcode);

/* Frees a tensor's data when the tensor owns it. */
void bc_tensor_release(bc_tensor *tensor);

/* The number of elements of `shape`, or -1 on overflow. */
int64_t bc_element_count(const bc_shape *shape);

#endif
