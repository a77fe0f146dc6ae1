/*
 * run_model — the smallest embedding of Kiln: load a model or artifact, feed zeros, print the outputs.
 *
 *   run_model MODEL.onnx|ARTIFACT.kiln
 *
 * Every input gets a tensor of zeros of its shape (symbolic or unknown dims become 1); the program runs
 * the model with runtime-allocated outputs and prints one line per output: its name, element type and
 * shape. Any error prints its message and exits with status 1.
 *
 * Build: see the Makefile beside this file (it uses pkg-config's kiln.pc, or KILN_PREFIX).
 */
#include <kiln/kiln.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

/* Prints `error`'s message, frees it, and exits with status 1 (when error is not NULL). */
static void check(kiln_error *error, const char *what) {
    if (error == NULL) return;
    fprintf(stderr, "run_model: %s: %s (code %d)\n", what, kiln_error_message(error), (int)kiln_error_code(error));
    kiln_error_free(error);
    exit(1);
}

/* The printed name of a dtype ("f32", "i64", …). */
static const char *dtype_name(kiln_dtype t) {
    switch (t.code) {
    case KILN_DTYPE_FLOAT: return t.bits == 16 ? "f16" : t.bits == 32 ? "f32" : "f64";
    case KILN_DTYPE_INT: return t.bits == 8 ? "i8" : t.bits == 16 ? "i16" : t.bits == 32 ? "i32" : t.bits == 64 ? "i64" : "i4";
    case KILN_DTYPE_UINT: return t.bits == 8 ? "u8" : t.bits == 16 ? "u16" : t.bits == 32 ? "u32" : t.bits == 64 ? "u64" : "u4";
    case KILN_DTYPE_BOOL: return "bool";
    case KILN_DTYPE_BFLOAT: return "bf16";
    default: return "other";
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: run_model MODEL.onnx|ARTIFACT.kiln\n");
        return 1;
    }
    /* Refuses a libkiln older than the kiln.h this program was built with (or of another major). */
    kiln_error *version = KILN_ABI_CHECK();
    if (version) {
        fprintf(stderr, "run_model: %s\n", kiln_error_message(version));
        kiln_error_free(version);
        return 1;
    }

    kiln_context *context = NULL;
    check(kiln_context_create(NULL, &context), "creating a context");
    kiln_model *model = NULL;
    check(kiln_model_load_file(context, argv[1], NULL, &model), "loading the model");

    size_t input_count = 0;
    check(kiln_model_input_count(model, &input_count), "counting inputs");
    kiln_tensor *inputs = calloc(input_count ? input_count : 1, sizeof(kiln_tensor));
    int64_t **shapes = calloc(input_count ? input_count : 1, sizeof(int64_t *));
    void **buffers = calloc(input_count ? input_count : 1, sizeof(void *));
    for (size_t i = 0; i < input_count; i++) {
        kiln_value_info info = {.struct_size = sizeof info};
        check(kiln_model_input(model, i, &info), "describing an input");
        if (info.rank < 0) {
            fprintf(stderr, "run_model: input '%s' has an unknown rank\n", info.name);
            return 1;
        }
        int64_t elements = 1;
        shapes[i] = calloc(info.rank ? (size_t)info.rank : 1, sizeof(int64_t));
        for (int32_t d = 0; d < info.rank; d++) {
            shapes[i][d] = info.dims[d] < 0 ? 1 : info.dims[d]; /* symbolic dims become 1 */
            elements *= shapes[i][d];
        }
        size_t element_bytes = info.dtype.bits < 8 ? 1 : info.dtype.bits / 8;
        buffers[i] = calloc(elements ? (size_t)elements : 1, element_bytes); /* zeros */
        inputs[i] = (kiln_tensor){
            .data = buffers[i],
            .device = {KILN_DEVICE_CPU, 0},
            .ndim = info.rank,
            .dtype = info.dtype,
            .shape = shapes[i],
            .strides = NULL,
            .byte_offset = 0,
        };
    }

    kiln_outputs *outputs = NULL;
    check(kiln_run_alloc(model, inputs, input_count, NULL, &outputs), "running the model");
    size_t output_count = 0;
    check(kiln_outputs_count(outputs, &output_count), "counting outputs");
    for (size_t i = 0; i < output_count; i++) {
        const char *name = NULL;
        kiln_tensor tensor;
        check(kiln_outputs_name(outputs, i, &name), "naming an output");
        check(kiln_outputs_get(outputs, i, &tensor), "reading an output");
        printf("%s: %s[", name, dtype_name(tensor.dtype));
        for (int32_t d = 0; d < tensor.ndim; d++) printf(d ? ",%" PRId64 : "%" PRId64, tensor.shape[d]);
        printf("]\n");
    }

    kiln_outputs_free(outputs);
    for (size_t i = 0; i < input_count; i++) {
        free(shapes[i]);
        free(buffers[i]);
    }
    free(shapes);
    free(buffers);
    free(inputs);
    kiln_model_free(model);
    kiln_context_free(context);
    return 0;
}
