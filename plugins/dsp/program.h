/*
 * program.h — kiln.dsp's payload: the compiled program Kiln stores in artifacts (compat "sampledsp.hvx/kdsp1").
 *
 * Layout (little-endian):
 *   "KDSP" u32 version (4; 1 to 3 are still read. 3 adds the LookupTable and Softmax ops and QLinearMatMul's
 *   transB and bias, 4 the QLinearAdd and QLinearAveragePool ops; an older payload may not use what a later version
 *   added, so that an older plugin refuses a payload it would misread)
 *   u32 value_count, input_count, output_count, constant_count, op_count
 *   inputs:    input_count × (u32 value, u32 dtype)        dtype: the IR DataType number the input must have
 *   outputs:   output_count × u32 value
 *   constants: constant_count × (u32 value, u32 dtype, u32 rank, rank × i64 dim, u64 byte count, bytes)
 *   ops:       op_count × (u32 opcode, u32 input count (<= DSP_MAX_OP_INPUTS), that many u32 values
 *              (DSP_NO_VALUE = an omitted optional input), u32 output value, DSP_OP_PARAMS × i64 params)
 *   version 2 and 3, the layer table (accelkit's ak_put_layers): u32 layer_count, layer_count × (u32 length, name
 *              bytes: the graph node(s) an op came from, e.g. "conv1+q1"), then op_count × u32 layer index
 *              (< layer_count) — what the profile (plugin ABI 1.4) reports per layer
 * dsp_decode validates every count, index, rank, size and opcode with checked arithmetic: a payload it
 * did not write is an error, never a crash.
 */
#ifndef KILN_DSP_PROGRAM_H
#define KILN_DSP_PROGRAM_H

#include <stddef.h>
#include <stdint.h>

#include "../accelkit/ak_bytes.h"

#define DSP_MAX_RANK 8
#define DSP_MAX_OP_INPUTS 9
#define DSP_OP_PARAMS 12
#define DSP_NO_VALUE 0xffffffffu

/* IR element types the backend handles (kiln.ir DataType numbers). */
enum { DSP_F32 = 1, DSP_U8 = 2, DSP_I8 = 3, DSP_I32 = 6 };

/* Opcodes. QLinearConv params: group, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right,
 * dil_h, dil_w. MaxPool params: kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom,
 * pad_right. LookupTable (inputs x and a uint8 [C, 256] constant of tables in dsp_lut_layout order) params: C, the
 * axis of the channels counted from the last, the least rank x must have, x's dtype, the result's dtype. Softmax
 * (inputs x and a uint8 [2, 256] constant: the high and low bytes of its exp table, dsp_lut_layout order) params:
 * the output multiplier and exponent (kernels.h, dsp_softmax), the output zero point, x's dtype, the result's dtype,
 * the axis (-1 or x's last). QLinearAdd (version 4; inputs a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp, with
 * multidirectional broadcasting) has none. QLinearAveragePool (version 4; inputs x, x_scale, x_zp, y_scale, y_zp)
 * params: kernel_h, kernel_w, stride_h, stride_w, pad_top, pad_left, pad_bottom, pad_right, count_include_pad, global
 * (1: the window is the whole image, QLinearGlobalAveragePool; the others are then 0). Other ops have none. */
enum { DSP_OP_QUANTIZE = 1, DSP_OP_DEQUANTIZE = 2, DSP_OP_QMATMUL = 3, DSP_OP_QCONV = 4, DSP_OP_RELU = 5, DSP_OP_MAXPOOL = 6,
       DSP_OP_LUT = 7, DSP_OP_SOFTMAX = 8, DSP_OP_QADD = 9, DSP_OP_QAVGPOOL = 10, DSP_OP_LAST = 10 };
/* The last opcode a payload of each version may use (index: the version). */
#define DSP_OP_LAST_OF_VERSION(v) ((v) >= 4 ? DSP_OP_LAST : (v) == 3 ? DSP_OP_SOFTMAX : DSP_OP_MAXPOOL)

/* A constant tensor (an initializer the compile copied). */
typedef struct dsp_constant {
    uint32_t value, dtype, rank;
    int64_t dims[DSP_MAX_RANK];
    uint8_t *data;
    uint64_t bytes;
} dsp_constant;

/* One operation. */
typedef struct dsp_op {
    uint32_t opcode, input_count;
    uint32_t inputs[DSP_MAX_OP_INPUTS];
    uint32_t output;
    int64_t params[DSP_OP_PARAMS];
} dsp_op;

/* A whole program. */
typedef struct dsp_program {
    uint32_t value_count, input_count, output_count, constant_count, op_count;
    uint32_t *inputs, *input_dtypes, *outputs;
    dsp_constant *constants;
    dsp_op *ops;
    ak_layers layers;      /* version 2: the graph node(s) each op came from (count 0 in a version 1 payload) */
} dsp_program;

/* A growable byte buffer (failed is set when an allocation failed): accelkit's. */
typedef ak_bytes dsp_buffer;

/* Serializes `p` into `out` (out->failed on allocation failure). */
void dsp_encode(const dsp_program *p, dsp_buffer *out);

/* Parses and validates a payload into `p` (allocated; release with dsp_program_free). Returns 0, or -1
 * with a reason in `why`. */
int dsp_decode(const void *data, size_t size, dsp_program *p, char *why, size_t why_size);

/* Frees what a program owns. */
void dsp_program_free(dsp_program *p);

/* The size in bytes of one element of `dtype`, 0 for an unknown type. */
size_t dsp_dtype_size(uint32_t dtype);

/* The element count of a shape, or -1 when a dim is negative or the product overflows 2^62. */
int64_t dsp_element_count(uint32_t rank, const int64_t *dims);

#endif
