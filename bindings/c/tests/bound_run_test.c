/*
 * bound_run_test — kiln_run's fast path (a run bound to the input signature, Sources/KilnC/BoundRuns.swift)
 * gives what the general path gives, and calls it cannot take still go the general way with the same errors.
 *
 *   bound_run_test TWO_INPUTS IDENTITY
 *
 * TWO_INPUTS: a: f32[batch, 3], b: f32[batch, 3] (and the default-valued input scale: f32[3] =
 * {0.5, 2, -1}) → y = (a + b) · scale, z = a − b. IDENTITY: x: f32[batch, 4] → y = Identity(x).
 * kiln_run with no options takes the fast path; kiln_run_alloc, and kiln_run with a timeout, take the
 * general path. Prints "ok NAME" per check or "FAIL NAME: why"; exits 1 on any failure. Built and run by
 * Tests/KilnCTests.
 */
#include <kiln/kiln.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static const float scale[3] = {0.5f, 2.0f, -1.0f};

static void report(int ok, const char *name, const char *why) {
    if (ok) {
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s: %s\n", name, why);
        failures++;
    }
}

static kiln_tensor f32(float *data, int32_t ndim, int64_t *shape) {
    kiln_tensor t = {.data = data, .device = {KILN_DEVICE_CPU, 0}, .ndim = ndim, .dtype = {KILN_DTYPE_FLOAT, 32, 1},
                     .shape = shape, .strides = NULL, .byte_offset = 0};
    return t;
}

/* Runs through kiln_run_alloc and copies output i (n_i floats expected) into out[i]; 0 on success. */
static int run_alloc(kiln_model *model, const kiln_tensor *inputs, size_t input_count, float **out, const size_t *counts,
                     size_t output_count, char *why, size_t why_size) {
    kiln_outputs *outputs = NULL;
    kiln_error *error = kiln_run_alloc(model, inputs, input_count, NULL, &outputs);
    for (size_t i = 0; !error && i < output_count; i++) {
        kiln_tensor t;
        error = kiln_outputs_get(outputs, i, &t);
        if (!error) memcpy(out[i], (const char *)t.data + t.byte_offset, counts[i] * sizeof(float));
    }
    int failed = error != NULL;
    if (error) snprintf(why, why_size, "kiln_run_alloc: %s", kiln_error_message(error));
    kiln_error_free(error);
    kiln_outputs_free(outputs);
    return failed;
}

/* Runs through kiln_run (with `options`); 0 on success, else the error's message in `why`. */
static int run(kiln_model *model, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs, size_t output_count,
               const kiln_run_options *options, char *why, size_t why_size, int32_t *code) {
    kiln_error *error = kiln_run(model, inputs, input_count, outputs, output_count, options);
    if (code) *code = kiln_error_code(error);
    if (error) snprintf(why, why_size, "%s", kiln_error_message(error));
    kiln_error_free(error);
    return error != NULL;
}

static void fill(float *values, size_t count, int seed) {
    /* Small multiples of 1/4: every sum, difference and product by scale is exact. */
    for (size_t i = 0; i < count; i++) values[i] = (float)((int)((i * 7 + (size_t)seed * 13) % 17) - 8) / 4.0f;
}

/* Whether y and z are (a + b) · scale and a − b for `batch` rows. */
static int expected_results(const float *a, const float *b, const float *y, const float *z, int batch) {
    for (int i = 0; i < batch * 3; i++) {
        if (y[i] != (a[i] + b[i]) * scale[i % 3] || z[i] != a[i] - b[i]) return 0;
    }
    return 1;
}

/* One run of TWO_INPUTS at `batch` through kiln_run, checked against kiln_run_alloc and the arithmetic. */
static int two_inputs_once(kiln_model *model, int batch, int seed, int compare_alloc, char *why, size_t why_size) {
    float a[3 * 8], b[3 * 8], y[3 * 8], z[3 * 8], y2[3 * 8], z2[3 * 8];
    size_t n = (size_t)batch * 3;
    fill(a, n, seed);
    fill(b, n, seed + 1);
    int64_t shape[2] = {batch, 3}, yshape[2] = {batch, 3}, zshape[2] = {batch, 3};
    kiln_tensor inputs[2] = {f32(a, 2, shape), f32(b, 2, shape)};
    kiln_tensor outputs[2] = {f32(y, 2, yshape), f32(z, 2, zshape)};
    if (run(model, inputs, 2, outputs, 2, NULL, why, why_size, NULL)) return 1;
    if (!expected_results(a, b, y, z, batch)) {
        snprintf(why, why_size, "batch %d: kiln_run's y or z is not (a + b) * scale, a - b", batch);
        return 1;
    }
    if (!compare_alloc) return 0;
    float *out[2] = {y2, z2};
    size_t counts[2] = {n, n};
    if (run_alloc(model, inputs, 2, out, counts, 2, why, why_size)) return 1;
    if (memcmp(y, y2, n * sizeof(float)) != 0 || memcmp(z, z2, n * sizeof(float)) != 0) {
        snprintf(why, why_size, "batch %d: kiln_run and kiln_run_alloc differ", batch);
        return 1;
    }
    return 0;
}

typedef struct worker {
    pthread_t thread;
    kiln_model *model;
    int index, runs, failures;
    char why[512];
} worker;

static void *work(void *argument) {
    worker *w = argument;
    for (int r = 0; r < w->runs; r++) {
        char why[256];
        /* Threads alternate signatures, so that runs of both and new bindings overlap. */
        int batch = (w->index + r) % 2 ? 3 : 1;
        if (two_inputs_once(w->model, batch, w->index * 1000 + r, 0, why, sizeof why) != 0) {
            if (w->failures++ == 0) snprintf(w->why, sizeof w->why, "run %d: %s", r, why);
        }
    }
    return NULL;
}

static void two_inputs(kiln_model *model) {
    char why[2048] = "";
    /* The signature changes between calls: batch 1, then 3, then 1 again (a kept binding). */
    int batches[4] = {1, 3, 1, 3};
    for (int k = 0; k < 4; k++) {
        char name[64];
        snprintf(name, sizeof name, "two_inputs_batch_%d_call_%d", batches[k], k);
        report(two_inputs_once(model, batches[k], k, 1, why, sizeof why) == 0, name, why);
    }

    /* A wrong output shape after fast-path calls: the general path's error, word for word. */
    float a[6], b[6], y[9], z[6];
    fill(a, 6, 5);
    fill(b, 6, 6);
    int64_t shape[2] = {2, 3}, wrong[2] = {3, 3}, zshape[2] = {2, 3};
    kiln_tensor inputs[2] = {f32(a, 2, shape), f32(b, 2, shape)};
    kiln_tensor outputs[2] = {f32(y, 2, shape), f32(z, 2, zshape)};
    int ok = run(model, inputs, 2, outputs, 2, NULL, why, sizeof why, NULL) == 0;
    report(ok, "two_inputs_batch_2", why);
    kiln_run_options timed = {.struct_size = sizeof(kiln_run_options), .flags = 0, .timeout_ms = 60000};
    struct { const char *name; int64_t *shape; kiln_dtype dtype; int null_data; } cases[3] = {
        {"wrong_output_shape", wrong, {KILN_DTYPE_FLOAT, 32, 1}, 0},
        {"wrong_output_dtype", shape, {KILN_DTYPE_INT, 32, 1}, 0},
        {"null_output_data", shape, {KILN_DTYPE_FLOAT, 32, 1}, 1},
    };
    for (int c = 0; c < 3; c++) {
        kiln_tensor bad[2] = {f32(cases[c].null_data ? NULL : y, 2, cases[c].shape), f32(z, 2, zshape)};
        bad[0].dtype = cases[c].dtype;
        char fast[512] = "", general[512] = "";
        int32_t fast_code = 0, general_code = 0;
        int failed_fast = run(model, inputs, 2, bad, 2, NULL, fast, sizeof fast, &fast_code);
        int failed_general = run(model, inputs, 2, bad, 2, &timed, general, sizeof general, &general_code);
        snprintf(why, sizeof why, "codes %d/%d, messages '%s' / '%s'", fast_code, general_code, fast, general);
        report(failed_fast && failed_general && fast_code == KILN_ERROR_INVALID_ARGUMENT && fast_code == general_code
               && strcmp(fast, general) == 0 && strstr(fast, "outputs[0]") != NULL, cases[c].name, why);
    }
    /* ...and a right call after them still runs. */
    report(two_inputs_once(model, 2, 9, 1, why, sizeof why) == 0, "two_inputs_after_errors", why);

    /* Inputs the fast path does not take (strided, unaligned) give the same results through the general path. */
    float at[6], a_t[6], y1[6], z1[6];
    fill(at, 6, 11);  /* a stored transposed: element (i, j) at at[j * 2 + i] */
    for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) a_t[i * 3 + j] = at[j * 2 + i];
    int64_t strides[2] = {1, 2};
    kiln_tensor strided[2] = {f32(at, 2, shape), f32(b, 2, shape)};
    strided[0].strides = strides;
    kiln_tensor out1[2] = {f32(y1, 2, shape), f32(z1, 2, zshape)};
    ok = run(model, strided, 2, out1, 2, NULL, why, sizeof why, NULL) == 0;
    if (ok && !(ok = expected_results(a_t, b, y1, z1, 2))) snprintf(why, sizeof why, "wrong results");
    report(ok, "strided_input", why);
    char *raw = malloc(6 * sizeof(float) + 1);
    memcpy(raw + 1, a, 6 * sizeof(float));
    kiln_tensor unaligned[2] = {f32((float *)(void *)(raw + 1), 2, shape), f32(b, 2, shape)};
    ok = run(model, unaligned, 2, out1, 2, NULL, why, sizeof why, NULL) == 0;
    if (ok && !(ok = expected_results(a, b, y1, z1, 2))) snprintf(why, sizeof why, "wrong results");
    report(ok, "unaligned_input", why);
    free(raw);

    /* 8 threads × 200 runs on one model, two signatures interleaved. */
    worker workers[8];
    memset(workers, 0, sizeof workers);
    for (int t = 0; t < 8; t++) {
        workers[t].model = model;
        workers[t].index = t;
        workers[t].runs = 200;
        pthread_create(&workers[t].thread, NULL, work, &workers[t]);
    }
    int failed = 0;
    for (int t = 0; t < 8; t++) {
        pthread_join(workers[t].thread, NULL);
        if (workers[t].failures && !failed++) snprintf(why, sizeof why, "thread %d: %d failures; first: %s", t, workers[t].failures, workers[t].why);
    }
    report(!failed, "threads_8_x_200", why);
}

static void identity(kiln_model *model) {
    char why[512] = "";
    for (int batch = 1; batch <= 3; batch += 2) {
        float x[12], y[12];
        fill(x, (size_t)batch * 4, batch);
        memset(y, 0, sizeof y);
        int64_t shape[2] = {batch, 4}, yshape[2] = {batch, 4};
        kiln_tensor input = f32(x, 2, shape), output = f32(y, 2, yshape);
        int ok = run(model, &input, 1, &output, 1, NULL, why, sizeof why, NULL) == 0;
        if (ok && !(ok = memcmp(x, y, (size_t)batch * 4 * sizeof(float)) == 0)) snprintf(why, sizeof why, "y is not x");
        char name[64];
        snprintf(name, sizeof name, "identity_batch_%d", batch);
        report(ok, name, why);
        /* The output buffer is the input's memory. */
        float before[12];
        memcpy(before, x, sizeof before);
        kiln_tensor same = f32(x, 2, yshape);
        ok = run(model, &input, 1, &same, 1, NULL, why, sizeof why, NULL) == 0;
        if (ok && !(ok = memcmp(x, before, (size_t)batch * 4 * sizeof(float)) == 0)) snprintf(why, sizeof why, "x changed");
        snprintf(name, sizeof name, "identity_in_place_batch_%d", batch);
        report(ok, name, why);
    }
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: bound_run_test TWO_INPUTS IDENTITY\n");
        return 2;
    }
    kiln_context *context = NULL;
    kiln_model *two = NULL, *same = NULL;
    kiln_error *error = kiln_context_create(NULL, &context);
    if (!error) error = kiln_model_load_file(context, argv[1], NULL, &two);
    if (!error) error = kiln_model_load_file(context, argv[2], NULL, &same);
    if (error) {
        printf("FAIL load: %s\n", kiln_error_message(error));
        kiln_error_free(error);
        return 1;
    }
    size_t count = 0;
    error = kiln_model_input_count(two, &count);
    report(!error && count == 2, "two_inputs_takes_two", "the default-valued input is not left to the caller");
    kiln_error_free(error);
    two_inputs(two);
    identity(same);
    kiln_model_free(two);
    kiln_model_free(same);
    kiln_context_free(context);
    return failures ? 1 : 0;
}
