/*
 * libFuzzer harness for the sample vendor plugin's payload decoder (bindings/c/examples/vendor-plugin):
 * the bytes its `load` hands to bc_decode, then — for a payload that decodes — an encode/decode round
 * trip and a run of the bytecode interpreter on small inputs, as `execute` would.
 *
 * Input: one byte choosing the inputs' shape, then the payload. Built by scripts/fuzz with
 *   clang -fsanitize=fuzzer,address,undefined -I bindings/c/examples/vendor-plugin \
 *         Fuzz/plugin/fuzz_bytecode.c bindings/c/examples/vendor-plugin/bytecode.c
 */
#include "bytecode.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The shapes an input may get: 2-D for MatMul/Gemm/Add/Relu, 4-D (NCHW) for Conv, 1-D, and a scalar. */
static const bc_shape shapes[] = {
    {2, {2, 3}}, {2, {3, 3}}, {4, {1, 2, 5, 5}}, {4, {1, 1, 3, 3}}, {1, {4}}, {0, {0}},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    const bc_shape *shape = &shapes[data[0] % (sizeof shapes / sizeof shapes[0])];
    bc_program program;
    char why[256];
    if (bc_decode(data + 1, size - 1, &program, why, sizeof why) != 0) return 0;

    /* What decodes must encode to the same bytes (the decoder validated it; the encoder writes it). */
    bc_buffer encoded = {0};
    bc_encode(&program, &encoded);
    if (!encoded.failed && (encoded.size != size - 1 || memcmp(encoded.data, data + 1, size - 1) != 0)) {
        bc_program again;
        if (bc_decode(encoded.data, encoded.size, &again, why, sizeof why) != 0) abort(); /* re-encoding broke it */
        bc_free(&again);
    }
    free(encoded.data);

    /* Run it on small inputs, as the plugin's execute does; errors are fine, crashes are not. scripts/fuzz
     * builds this with a lower BC_MAX_WORK, so the interpreter's work cap (not a skip here) keeps every
     * input fast. */
    if (program.input_count <= 8 && program.output_count <= 8) {
        bc_tensor inputs[8], outputs[8];
        memset(outputs, 0, sizeof outputs);
        float values[64];
        for (int i = 0; i < 64; i++) values[i] = (float)(i % 7) - 3.0f;
        for (uint32_t i = 0; i < program.input_count; i++) {
            inputs[i].shape = *shape;
            inputs[i].data = values;
            inputs[i].owned = 0;
        }
        if (bc_run(&program, inputs, outputs, why, sizeof why) == 0) {
            for (uint32_t i = 0; i < program.output_count; i++) bc_tensor_release(&outputs[i]);
        }
    }
    bc_free(&program);
    return 0;
}
