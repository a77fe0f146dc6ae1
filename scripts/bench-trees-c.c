/*
 * bench-trees-c — the latency of kiln_run on a tree-ensemble artifact, called from C (no Python in the path),
 * for scripts/bench-trees: it separates the Python binding's per-call cost from the runtime's.
 *
 *   bench-trees-c ARTIFACT.kiln X.f32 FEATURES ROWS THREADS SECONDS
 *
 * X.f32 holds at least ROWS × FEATURES raw float32 values (row-major). The program loads the artifact with
 * THREADS threads, runs it on the first ROWS rows with caller-provided outputs (kiln_run) for about SECONDS,
 * and prints the median latency of one call in nanoseconds. Errors print their message and exit with status 1.
 *
 * KILN_TREES_VARIANT=NAME (leafmask, lockstep, worklist, none) chooses kiln.cpu's tree walk before the artifact
 * loads (kiln_trees_select_variant in CKilnKernels), to compare the walks in one library.
 */
#include <kiln/kiln.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static void check(kiln_error *error, const char *what) {
    if (error == NULL) return;
    fprintf(stderr, "bench-trees-c: %s: %s\n", what, kiln_error_message(error));
    kiln_error_free(error);
    exit(1);
}

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: bench-trees-c ARTIFACT.kiln X.f32 FEATURES ROWS THREADS SECONDS\n");
        return 1;
    }
    long features = atol(argv[3]), rows = atol(argv[4]), threads = atol(argv[5]);
    double seconds = atof(argv[6]);
    if (features <= 0 || rows <= 0 || threads <= 0 || seconds <= 0) {
        fprintf(stderr, "bench-trees-c: FEATURES, ROWS, THREADS and SECONDS must be positive\n");
        return 1;
    }
    float *x = malloc((size_t)(features * rows) * sizeof(float));
    FILE *f = fopen(argv[2], "rb");
    if (x == NULL || f == NULL || fread(x, sizeof(float), (size_t)(features * rows), f) != (size_t)(features * rows)) {
        fprintf(stderr, "bench-trees-c: cannot read %ld × %ld floats from %s\n", rows, features, argv[2]);
        return 1;
    }
    fclose(f);
    const char *variant = getenv("KILN_TREES_VARIANT");
    if (variant != NULL && *variant != 0) {
        int (*select)(const char *) = (int (*)(const char *))dlsym(RTLD_DEFAULT, "kiln_trees_select_variant");
        if (select == NULL || select(variant) != 0) {
            fprintf(stderr, "bench-trees-c: cannot choose the tree walk %s\n", variant);
            return 1;
        }
    }
    kiln_context *context = NULL;
    check(kiln_context_create(NULL, &context), "creating a context");
    kiln_load_options options = {0};
    options.struct_size = sizeof options;
    options.num_threads = (int32_t)threads;
    kiln_model *model = NULL;
    check(kiln_model_load_file(context, argv[1], &options, &model), "loading the artifact");

    int64_t in_shape[2] = {rows, features}, out_shape[2] = {rows, 1};
    float *y = malloc((size_t)rows * sizeof(float));
    kiln_tensor input = {x, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, in_shape, NULL, 0};
    kiln_tensor output = {y, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, out_shape, NULL, 0};
    check(kiln_run(model, &input, 1, &output, 1, NULL), "running"); /* warm-up; plans the shape */

    size_t capacity = 1 << 20, count = 0;
    double *times = malloc(capacity * sizeof(double));
    double start = now_ns();
    do {
        double t0 = now_ns();
        check(kiln_run(model, &input, 1, &output, 1, NULL), "running");
        times[count++] = now_ns() - t0;
    } while (count < capacity && (now_ns() - start < seconds * 1e9 || count < 3));
    qsort(times, count, sizeof(double), compare);
    printf("%.0f\n", times[count / 2]);
    kiln_model_free(model);
    kiln_context_free(context);
    free(times);
    free(y);
    free(x);
    return 0;
}
