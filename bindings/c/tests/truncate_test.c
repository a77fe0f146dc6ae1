/*
 * truncate_test — an artifact file that changes after it was loaded (Documentation/ArtifactFormat.md,
 * "Reading the file"): kiln_model_load_file, then the file is truncated, then kiln_run.
 *
 *   truncate_test ARTIFACT.kiln SCRATCH_PATH
 *
 * Copies ARTIFACT to SCRATCH_PATH, loads the copy, truncates it to 0 bytes and to half its size in turn
 * and runs the model (x: f32[2, 4], the C tests' model) after each. Every run must either succeed or
 * return a kiln_error: the test that runs this program fails if it dies of a signal (SIGBUS was what a
 * memory-mapped artifact gave). Prints "ok run after truncation: N bytes" lines and exits 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <kiln/kiln.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int copy(const char *from, const char *to, long *size) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    if (!in || !out) return 1;
    char buffer[65536];
    size_t n;
    *size = 0;
    while ((n = fread(buffer, 1, sizeof buffer, in)) > 0) {
        if (fwrite(buffer, 1, n, out) != n) return 1;
        *size += (long)n;
    }
    fclose(in);
    return fclose(out) != 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: truncate_test ARTIFACT.kiln SCRATCH_PATH\n");
        return 2;
    }
    long size = 0;
    if (copy(argv[1], argv[2], &size) != 0) {
        printf("FAIL copying %s to %s\n", argv[1], argv[2]);
        return 1;
    }
    kiln_context *context = NULL;
    kiln_model *model = NULL;
    kiln_error *error = kiln_context_create(NULL, &context);
    if (!error) error = kiln_model_load_file(context, argv[2], NULL, &model);
    if (error) {
        printf("FAIL load: %s\n", kiln_error_message(error));
        return 1;
    }
    long lengths[2] = {size / 2, 0};
    for (int i = 0; i < 2; i++) {
        if (truncate(argv[2], lengths[i]) != 0) {
            printf("FAIL truncate\n");
            return 1;
        }
        float data[8] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};
        int64_t shape[2] = {2, 4};
        kiln_tensor input = {.data = data, .device = {KILN_DEVICE_CPU, 0}, .ndim = 2,
                             .dtype = {KILN_DTYPE_FLOAT, 32, 1}, .shape = shape, .strides = NULL, .byte_offset = 0};
        kiln_outputs *outputs = NULL;
        error = kiln_run_alloc(model, &input, 1, NULL, &outputs);
        if (error) {
            printf("ok typed error after truncation to %ld bytes: %s\n", lengths[i], kiln_error_message(error));
            kiln_error_free(error);
        } else {
            size_t count = 0;
            kiln_outputs_count(outputs, &count);
            for (size_t o = 0; o < count; o++) {
                kiln_tensor t;
                if (kiln_outputs_get(outputs, o, &t) == NULL && t.dtype.bits == 32 && t.ndim > 0) {
                    volatile float first = *(const float *)((const char *)t.data + t.byte_offset);
                    (void)first;
                }
            }
            printf("ok run after truncation to %ld bytes: %zu outputs\n", lengths[i], count);
            kiln_outputs_free(outputs);
        }
    }
    kiln_model_free(model);
    kiln_context_free(context);
    return 0;
}
