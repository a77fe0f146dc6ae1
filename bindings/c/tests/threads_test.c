/*
 * threads_test — the concurrency contract of kiln_run (Documentation/CABI.md, "Threads"): one kiln_model
 * run from many threads at once gives the same outputs as one thread.
 *
 *   threads_test MODEL [THREADS [RUNS]]        (defaults: 8 threads x 500 runs each)
 *
 * MODEL is the C tests' model (x: f32[batch, 4]) or its artifact. The program runs it once on one thread,
 * then THREADS threads each run it RUNS times on the same kiln_model with their own input and output
 * buffers and compare every output byte for byte with the single-threaded result. Prints
 * "ok threads T x R" and exits 0, or prints FAIL lines and exits 1. Built and run by
 * Tests/KilnCTests (also under ThreadSanitizer: scripts/test --sanitize thread).
 */
#include <kiln/kiln.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_OUTPUTS 8

static kiln_model *model;
static int runs = 500;
static const float input_values[8] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};

/* The single-threaded outputs: bytes and sizes, by output index. */
static size_t expected_count;
static void *expected[MAX_OUTPUTS];
static size_t expected_bytes[MAX_OUTPUTS];

static size_t tensor_bytes(const kiln_tensor *t) {
    size_t n = t->dtype.bits / 8;
    for (int32_t d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

/* Runs the model once; on success stores each output's bytes through `store` and returns 0. */
static int run_once(char *why, size_t why_size, int (*visit)(size_t, const kiln_tensor *, void *), void *context) {
    float data[8];
    memcpy(data, input_values, sizeof data);
    int64_t shape[2] = {2, 4};
    kiln_tensor input = {.data = data, .device = {KILN_DEVICE_CPU, 0}, .ndim = 2,
                         .dtype = {KILN_DTYPE_FLOAT, 32, 1}, .shape = shape, .strides = NULL, .byte_offset = 0};
    kiln_outputs *outputs = NULL;
    kiln_error *error = kiln_run_alloc(model, &input, 1, NULL, &outputs);
    if (error) {
        snprintf(why, why_size, "kiln_run_alloc: %s", kiln_error_message(error));
        kiln_error_free(error);
        return 1;
    }
    size_t count = 0;
    int failed = 0;
    error = kiln_outputs_count(outputs, &count);
    for (size_t i = 0; !error && !failed && i < count; i++) {
        kiln_tensor t;
        error = kiln_outputs_get(outputs, i, &t);
        if (!error) failed = visit(i, &t, context);
    }
    if (error) {
        snprintf(why, why_size, "outputs: %s", kiln_error_message(error));
        kiln_error_free(error);
        failed = 1;
    } else if (failed) {
        snprintf(why, why_size, "an output differs from the single-threaded run");
    }
    kiln_outputs_free(outputs);
    return failed;
}

static int store(size_t i, const kiln_tensor *t, void *context) {
    (void)context;
    if (i >= MAX_OUTPUTS) return 1;
    expected_bytes[i] = tensor_bytes(t);
    expected[i] = malloc(expected_bytes[i] ? expected_bytes[i] : 1);
    memcpy(expected[i], (const char *)t->data + t->byte_offset, expected_bytes[i]);
    expected_count = i + 1;
    return 0;
}

static int compare(size_t i, const kiln_tensor *t, void *context) {
    (void)context;
    return i >= expected_count || tensor_bytes(t) != expected_bytes[i]
        || memcmp((const char *)t->data + t->byte_offset, expected[i], expected_bytes[i]) != 0;
}

typedef struct worker {
    pthread_t thread;
    int index, failures;
    char why[512];
} worker;

static void *work(void *argument) {
    worker *w = argument;
    for (int r = 0; r < runs; r++) {
        char why[256];
        if (run_once(why, sizeof why, compare, NULL) != 0) {
            if (w->failures++ == 0) snprintf(w->why, sizeof w->why, "run %d: %s", r, why);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: threads_test MODEL [THREADS [RUNS]]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 8;
    if (argc > 3) runs = atoi(argv[3]);
    if (threads < 1 || threads > 256 || runs < 1) {
        fprintf(stderr, "threads_test: bad THREADS or RUNS\n");
        return 2;
    }
    kiln_context *context = NULL;
    kiln_error *error = kiln_context_create(NULL, &context);
    if (!error) error = kiln_model_load_file(context, argv[1], NULL, &model);
    if (error) {
        printf("FAIL load: %s\n", kiln_error_message(error));
        kiln_error_free(error);
        return 1;
    }
    char why[512];
    if (run_once(why, sizeof why, store, NULL) != 0 || expected_count == 0) {
        printf("FAIL single-threaded run: %s\n", why);
        return 1;
    }
    worker *workers = calloc((size_t)threads, sizeof(worker));
    for (int t = 0; t < threads; t++) {
        workers[t].index = t;
        if (pthread_create(&workers[t].thread, NULL, work, &workers[t]) != 0) {
            printf("FAIL pthread_create %d\n", t);
            return 1;
        }
    }
    int failures = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(workers[t].thread, NULL);
        if (workers[t].failures) {
            printf("FAIL thread %d: %d of %d runs failed; first: %s\n", t, workers[t].failures, runs, workers[t].why);
            failures += workers[t].failures;
        }
    }
    free(workers);
    for (size_t i = 0; i < expected_count; i++) free(expected[i]);
    kiln_model_free(model);
    kiln_context_free(context);
    if (failures) return 1;
    printf("ok threads %d x %d (%zu outputs equal to the single-threaded run)\n", threads, runs, expected_count);
    return 0;
}
