/*
 * c_api_test — exercises kiln.h on the test model that Tests/KilnCTests builds:
 *     inputs  x: f32[batch, 4]
 *     outputs y: f32[batch, 3] = Relu(x · W + b), s: i64[2] = Shape(x), xi: f32[batch, 4] = Identity(x)
 *
 *   c_api_test MODEL [ARTIFACT [PLUGIN]]
 *
 * PLUGIN is the sample vendor plugin (bindings/c/examples/vendor-plugin, backend "sample.bytecode"): when
 * given, it is registered in one context, the model is compiled for it and run, and the results compared.
 *
 * Prints every output of a run on x = [[0.0, 0.1, …, 0.3], [0.4, …, 0.7]] as
 *     value NAME DIMS: v0 v1 …
 * for the Swift test to compare with kiln.reference, then "ok NAME" or "FAIL NAME: why" per check.
 * Exits 1 when a check fails.
 */
#define _POSIX_C_SOURCE 200809L /* setenv */
#include <kiln/kiln.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures = 0;

static void expect(int condition, const char *name, const char *why) {
    if (condition) {
        printf("ok %s\n", name);
    } else {
        printf("FAIL %s: %s\n", name, why);
        failures++;
    }
}

/* Checks that `error` is an error with `code` whose message contains every string in `parts`
 * (NULL-terminated), then frees it. */
static void expect_error(kiln_error *error, int32_t code, const char *name, const char *const *parts) {
    char why[1024];
    if (error == NULL) {
        expect(0, name, "succeeded; expected an error");
        return;
    }
    const char *message = kiln_error_message(error);
    int ok = kiln_error_code(error) == code;
    for (const char *const *p = parts; ok && p && *p; p++) ok = strstr(message, *p) != NULL;
    snprintf(why, sizeof why, "code %d, message: %s", (int)kiln_error_code(error), message);
    expect(ok, name, why);
    kiln_error_free(error);
}

static void must(kiln_error *error, const char *what) {
    if (error == NULL) return;
    printf("FAIL %s: %s\n", what, kiln_error_message(error));
    kiln_error_free(error);
    exit(1);
}

static float x_data[8] = {0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};
static int64_t x_shape[2] = {2, 4};

static kiln_tensor make_x(void) {
    kiln_tensor t = {x_data, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, x_shape, NULL, 0};
    return t;
}

static void print_outputs(kiln_outputs *outputs) {
    size_t count = 0;
    must(kiln_outputs_count(outputs, &count), "kiln_outputs_count");
    for (size_t i = 0; i < count; i++) {
        const char *name;
        kiln_tensor t;
        must(kiln_outputs_name(outputs, i, &name), "kiln_outputs_name");
        must(kiln_outputs_get(outputs, i, &t), "kiln_outputs_get");
        printf("value %s ", name);
        int64_t n = 1;
        for (int32_t d = 0; d < t.ndim; d++) {
            printf(d ? ",%" PRId64 : "%" PRId64, t.shape[d]);
            n *= t.shape[d];
        }
        printf(":");
        for (int64_t k = 0; k < n; k++) {
            if (t.dtype.code == KILN_DTYPE_FLOAT && t.dtype.bits == 32) printf(" %.9g", (double)((const float *)t.data)[k]);
            else if (t.dtype.code == KILN_DTYPE_INT && t.dtype.bits == 64) printf(" %" PRId64, ((const int64_t *)t.data)[k]);
            else printf(" ?");
        }
        printf("\n");
    }
}

struct thread_job {
    kiln_model *model;
    int ok;
};

/* Runs the model 20 times and checks every result equals the first. */
static void *run_repeatedly(void *argument) {
    struct thread_job *job = argument;
    kiln_tensor x = make_x();
    float first[6], y[6];
    int64_t y_shape[2] = {2, 3}, s_shape[1] = {2}, s[2];
    float xi[8];
    kiln_tensor outs[3] = {
        {y, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, y_shape, NULL, 0},
        {s, {KILN_DEVICE_CPU, 0}, 1, {KILN_DTYPE_INT, 64, 1}, s_shape, NULL, 0},
        {xi, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, x_shape, NULL, 0},
    };
    job->ok = 1;
    for (int r = 0; r < 20; r++) {
        kiln_error *error = kiln_run(job->model, &x, 1, outs, 3, NULL);
        if (error) {
            kiln_error_free(error);
            job->ok = 0;
            return NULL;
        }
        if (r == 0) memcpy(first, y, sizeof y);
        else if (memcmp(first, y, sizeof y) != 0) job->ok = 0;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: c_api_test MODEL [ARTIFACT [PLUGIN]]\n");
        return 2;
    }
    /* Versions. */
    expect(kiln_abi_version() == ((uint32_t)KILN_ABI_VERSION_MAJOR << 16 | KILN_ABI_VERSION_MINOR), "abi_version", "differs from the header");
    expect(kiln_version() != NULL && strlen(kiln_version()) > 0, "version", "empty");
    /* ABI 1.2: the library refuses a program built against a newer kiln.h, naming both versions. */
    expect(KILN_ABI_CHECK() == NULL, "abi_check", "refuses the header it was built with");
    expect(kiln_abi_check((uint32_t)KILN_ABI_VERSION_MAJOR << 16) == NULL, "abi_check_older_minor", "refuses minor 0");
    {
        kiln_error *newer = kiln_abi_check(KILN_ABI_VERSION + 1);
        char wanted_header[32], wanted_library[64];
        snprintf(wanted_header, sizeof wanted_header, "kiln.h ABI %d.%d", KILN_ABI_VERSION_MAJOR, KILN_ABI_VERSION_MINOR + 1);
        snprintf(wanted_library, sizeof wanted_library, "implements ABI %d.%d", KILN_ABI_VERSION_MAJOR, KILN_ABI_VERSION_MINOR);
        expect(newer != NULL && kiln_error_code(newer) == KILN_ERROR_VERSION_MISMATCH, "abi_check_newer_minor", "not a version mismatch");
        expect(strstr(kiln_error_message(newer), wanted_header) && strstr(kiln_error_message(newer), wanted_library), "abi_check_message",
               kiln_error_message(newer));
        kiln_error_free(newer);
        kiln_error *other_major = kiln_abi_check((uint32_t)(KILN_ABI_VERSION_MAJOR + 1) << 16);
        expect(other_major != NULL && kiln_error_code(other_major) == KILN_ERROR_VERSION_MISMATCH, "abi_check_other_major", "accepted");
        kiln_error_free(other_major);
    }

    /* Errors on NULL. */
    expect(kiln_error_code(NULL) == KILN_OK && strcmp(kiln_error_message(NULL), "") == 0, "error_of_null", "not OK/\"\"");
    kiln_error_free(NULL);
    kiln_context_free(NULL);
    kiln_model_free(NULL);
    kiln_outputs_free(NULL);
    kiln_blob_free(NULL);
    expect(kiln_blob_data(NULL) == NULL && kiln_blob_size(NULL) == 0, "blob_of_null", "not NULL/0");
    {
        const char *parts[] = {"out_context", "NULL", NULL};
        expect_error(kiln_context_create(NULL, NULL), KILN_ERROR_INVALID_ARGUMENT, "context_create_null_out", parts);
    }
    kiln_context *context = NULL;
    must(kiln_context_create(NULL, &context), "kiln_context_create");
    {
        const char *parts[] = {"context", NULL};
        kiln_model *m = NULL;
        expect_error(kiln_model_load_file(NULL, argv[1], NULL, &m), KILN_ERROR_INVALID_ARGUMENT, "load_null_context", parts);
        const char *parts2[] = {"path", NULL};
        expect_error(kiln_model_load_file(context, NULL, NULL, &m), KILN_ERROR_INVALID_ARGUMENT, "load_null_path", parts2);
        const char *parts3[] = {"/no/such/model.onnx", NULL};
        expect_error(kiln_model_load_file(context, "/no/such/model.onnx", NULL, &m), KILN_ERROR_IO, "load_missing_file", parts3);
        const char garbage[] = "this is not a model";
        expect_error(kiln_model_load_memory(context, garbage, sizeof garbage, NULL, &m), KILN_ERROR_INVALID_MODEL, "load_garbage", NULL);
        const char *parts4[] = {"no-such-backend", "kiln.reference", NULL};
        kiln_load_options o = {.struct_size = sizeof o, .backend = "no-such-backend"};
        expect_error(kiln_model_load_file(context, argv[1], &o, &m), KILN_ERROR_INVALID_ARGUMENT, "load_unknown_backend", parts4);
        /* A struct from a "newer header" whose unknown trailing field is set is refused. */
        struct { kiln_load_options known; uint64_t newer_field; } newer = {.known = {.struct_size = sizeof newer}, .newer_field = 1};
        const char *parts5[] = {"kiln_load_options", NULL};
        expect_error(kiln_model_load_file(context, argv[1], &newer.known, &m), KILN_ERROR_INVALID_ARGUMENT, "load_newer_options_set", parts5);
        newer.newer_field = 0;
        kiln_error *e = kiln_model_load_file(context, argv[1], &newer.known, &m);
        expect(e == NULL, "load_newer_options_zero", e ? kiln_error_message(e) : "");
        if (e) kiln_error_free(e); else kiln_model_free(m);
        kiln_load_options reserved = {.struct_size = sizeof reserved, .reserved = 7};
        const char *parts7[] = {"reserved", NULL};
        expect_error(kiln_model_load_file(context, argv[1], &reserved, &m), KILN_ERROR_INVALID_ARGUMENT, "load_reserved_set", parts7);
        kiln_load_options bad_size = {.struct_size = 0};
        const char *parts6[] = {"struct_size", NULL};
        expect_error(kiln_model_load_file(context, argv[1], &bad_size, &m), KILN_ERROR_INVALID_ARGUMENT, "load_zero_struct_size", parts6);
    }

    /* ABI 1.3: a memory budget for backends that plan memory; this small model fits in 64 MiB. */
    kiln_load_options load_options = {.struct_size = sizeof load_options, .num_threads = 2, .memory_budget_mb = 64};
    kiln_model *model = NULL;
    must(kiln_model_load_file(context, argv[1], &load_options, &model), "kiln_model_load_file");

    /* Introspection. */
    size_t inputs = 0, outputs = 0;
    must(kiln_model_input_count(model, &inputs), "input_count");
    must(kiln_model_output_count(model, &outputs), "output_count");
    expect(inputs == 1 && outputs == 3, "counts", "expected 1 input and 3 outputs");
    kiln_value_info info = {.struct_size = sizeof info};
    must(kiln_model_input(model, 0, &info), "kiln_model_input");
    expect(strcmp(info.name, "x") == 0 && info.elem_type == 1 && info.dtype.code == KILN_DTYPE_FLOAT && info.dtype.bits == 32 &&
               info.rank == 2 && info.dims[0] == -1 && info.dims[1] == 4 && info.dim_names[0] &&
               strcmp(info.dim_names[0], "batch") == 0 && info.dim_names[1] == NULL,
           "input_info", "x is not f32[batch,4]");
    must(kiln_model_output(model, 1, &info), "kiln_model_output");
    expect(strcmp(info.name, "s") == 0 && info.elem_type == 7 && info.dtype.code == KILN_DTYPE_INT && info.dtype.bits == 64,
           "output_info", "s is not i64");
    {
        const char *parts[] = {"index 5", NULL};
        expect_error(kiln_model_input(model, 5, &info), KILN_ERROR_INVALID_ARGUMENT, "input_index_out_of_range", parts);
        kiln_value_info small = {.struct_size = 8};
        const char *parts2[] = {"kiln_value_info", NULL};
        expect_error(kiln_model_input(model, 0, &small), KILN_ERROR_INVALID_ARGUMENT, "value_info_too_small", parts2);
        const char *parts3[] = {"model", NULL};
        size_t n;
        expect_error(kiln_model_input_count(NULL, &n), KILN_ERROR_INVALID_ARGUMENT, "input_count_null_model", parts3);
        const char *parts4[] = {"out_count", NULL};
        expect_error(kiln_model_input_count(model, NULL), KILN_ERROR_INVALID_ARGUMENT, "input_count_null_out", parts4);
    }

    /* Partition report. */
    size_t entries = 0;
    must(kiln_model_partition_count(model, &entries), "partition_count");
    int all_named = entries > 0;
    int matmul_on_cpu = 0;
    for (size_t i = 0; i < entries; i++) {
        kiln_partition_entry entry = {.struct_size = sizeof entry};
        must(kiln_model_partition_entry(model, i, &entry), "partition_entry");
        printf("partition %s %s %s\n", entry.node, entry.op, entry.backend);
        all_named &= (strcmp(entry.backend, "kiln.cpu") == 0 || strcmp(entry.backend, "kiln.reference") == 0) && strlen(entry.reason) > 0;
        /* With no backend named, the host target's kiln.cpu claims what it runs. */
        matmul_on_cpu |= strcmp(entry.node, "matmul") == 0 && strcmp(entry.op, "MatMul") == 0 && strcmp(entry.backend, "kiln.cpu") == 0;
    }
    expect(all_named && matmul_on_cpu, "partition_report", "entries do not name the nodes, or MatMul is not on kiln.cpu by default");

    /* Runtime-allocated outputs. */
    kiln_tensor x = make_x();
    kiln_outputs *result = NULL;
    must(kiln_run_alloc(model, &x, 1, NULL, &result), "kiln_run_alloc");
    print_outputs(result);
    kiln_tensor y_view, xi_view;
    must(kiln_outputs_get(result, 0, &y_view), "outputs_get");
    must(kiln_outputs_get(result, 2, &xi_view), "outputs_get");
    expect(xi_view.data != (void *)x_data && memcmp(xi_view.data, x_data, sizeof x_data) == 0, "identity_output_copied",
           "an output that is an input must be a copy, not the caller's memory");
    expect(y_view.strides == NULL && y_view.byte_offset == 0 && y_view.device.device_type == KILN_DEVICE_CPU, "output_view_layout",
           "not compact host memory");

    /* Caller-provided outputs: same values; wrong shapes and dtypes are refused before anything is written. */
    float y[6] = {0}, xi[8] = {0};
    int64_t s[2] = {0}, y_shape[2] = {2, 3}, s_shape[1] = {2}, xi_shape[2] = {2, 4};
    kiln_tensor outs[3] = {
        {y, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, y_shape, NULL, 0},
        {s, {KILN_DEVICE_CPU, 0}, 1, {KILN_DTYPE_INT, 64, 1}, s_shape, NULL, 0},
        {xi, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, xi_shape, NULL, 0},
    };
    must(kiln_run(model, &x, 1, outs, 3, NULL), "kiln_run");
    float y_first[6];
    memcpy(y_first, y, sizeof y);
    expect(memcmp(y, y_view.data, sizeof y) == 0 && s[0] == 2 && s[1] == 4 && memcmp(xi, x_data, sizeof xi) == 0,
           "caller_outputs", "differ from runtime-allocated outputs");
    {
        int64_t wrong[2] = {2, 5};
        float sentinel[10];
        for (int i = 0; i < 10; i++) sentinel[i] = -1.0f;
        kiln_tensor bad[3] = {outs[0], outs[1], outs[2]};
        bad[2].shape = wrong;
        bad[2].data = sentinel;
        memset(y, 0, sizeof y);
        const char *parts[] = {"output 'xi'", "outputs[2]", "f32[2,4]", "f32[2,5]", NULL};
        expect_error(kiln_run(model, &x, 1, bad, 3, NULL), KILN_ERROR_INVALID_ARGUMENT, "caller_output_wrong_shape", parts);
        expect(y[0] == 0 && y[1] == 0 && sentinel[0] == -1.0f, "nothing_written_on_error", "outputs were written");
        bad[2].shape = xi_shape;
        bad[2].dtype = (kiln_dtype){KILN_DTYPE_FLOAT, 64, 1};
        const char *parts2[] = {"output 'xi'", "f32[2,4]", "f64[2,4]", NULL};
        expect_error(kiln_run(model, &x, 1, bad, 3, NULL), KILN_ERROR_INVALID_ARGUMENT, "caller_output_wrong_dtype", parts2);
        const char *parts3[] = {"output_count is 2", NULL};
        expect_error(kiln_run(model, &x, 1, outs, 2, NULL), KILN_ERROR_INVALID_ARGUMENT, "caller_output_wrong_count", parts3);
    }

    /* Wrong inputs: each error names the input, the expected and the given type. */
    {
        int64_t wrong_shape[2] = {2, 5};
        float data[10] = {0};
        kiln_tensor bad = {data, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, wrong_shape, NULL, 0};
        kiln_outputs *o = NULL;
        const char *parts[] = {"input 'x'", "expected", "4", "given", "f32[2,5]", NULL};
        expect_error(kiln_run_alloc(model, &bad, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_wrong_shape", parts);
        double ddata[8] = {0};
        kiln_tensor bad_dtype = {ddata, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 64, 1}, x_shape, NULL, 0};
        const char *parts2[] = {"input 'x'", "f32", "f64", NULL};
        expect_error(kiln_run_alloc(model, &bad_dtype, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_wrong_dtype", parts2);
        kiln_tensor rank1 = {data, {KILN_DEVICE_CPU, 0}, 1, {KILN_DTYPE_FLOAT, 32, 1}, wrong_shape, NULL, 0};
        const char *parts3[] = {"input 'x'", "rank 1", NULL};
        expect_error(kiln_run_alloc(model, &rank1, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_wrong_rank", parts3);
        kiln_tensor null_data = {NULL, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, x_shape, NULL, 0};
        const char *parts4[] = {"input 'x'", "data is NULL", NULL};
        expect_error(kiln_run_alloc(model, &null_data, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_null_data", parts4);
        kiln_tensor null_shape = {data, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, NULL, NULL, 0};
        const char *parts5[] = {"input 'x'", "shape is NULL", NULL};
        expect_error(kiln_run_alloc(model, &null_shape, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_null_shape", parts5);
        kiln_tensor gpu = make_x();
        gpu.device.device_type = 2;
        const char *parts6[] = {"input 'x'", "device", NULL};
        expect_error(kiln_run_alloc(model, &gpu, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_wrong_device", parts6);
        int64_t negative[2] = {2, -4};
        kiln_tensor neg = {data, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, negative, NULL, 0};
        const char *parts7[] = {"shape[1] is -4", NULL};
        expect_error(kiln_run_alloc(model, &neg, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_negative_dim", parts7);
        const char *parts8[] = {"input_count is 0", "x", NULL};
        expect_error(kiln_run_alloc(model, NULL, 0, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "input_missing", parts8);
        const char *parts9[] = {"model", NULL};
        expect_error(kiln_run_alloc(NULL, &x, 1, NULL, &o), KILN_ERROR_INVALID_ARGUMENT, "run_null_model", parts9);
        kiln_run_options flags = {.struct_size = sizeof flags, .flags = 1};
        const char *parts10[] = {"flags", NULL};
        expect_error(kiln_run_alloc(model, &x, 1, &flags, &o), KILN_ERROR_INVALID_ARGUMENT, "run_reserved_flags", parts10);
        /* ABI 1.3: a run deadline; a generous one lets the run finish. An ABI 1.0-sized struct still works. */
        kiln_run_options generous = {.struct_size = sizeof generous, .timeout_ms = 60000};
        kiln_error *timed = kiln_run_alloc(model, &x, 1, &generous, &o);
        expect(timed == NULL, "run_timeout_generous", timed ? kiln_error_message(timed) : "");
        if (timed) kiln_error_free(timed); else kiln_outputs_free(o);
        kiln_run_options old = {.struct_size = 16};
        kiln_error *old_run = kiln_run_alloc(model, &x, 1, &old, &o);
        expect(old_run == NULL, "run_options_1_0_size", old_run ? kiln_error_message(old_run) : "");
        if (old_run) kiln_error_free(old_run); else kiln_outputs_free(o);
    }

    /* A strided input (a transposed view of x stored column-major) gives the same results. */
    {
        float column_major[8];
        for (int r = 0; r < 2; r++)
            for (int c = 0; c < 4; c++) column_major[c * 2 + r] = x_data[r * 4 + c];
        int64_t strides[2] = {1, 2};
        kiln_tensor strided = {column_major, {KILN_DEVICE_CPU, 0}, 2, {KILN_DTYPE_FLOAT, 32, 1}, x_shape, strides, 0};
        float y2[6];
        kiln_tensor out2[3] = {outs[0], outs[1], outs[2]};
        out2[0].data = y2;
        /* Write y through byte_offset into a bigger buffer, to exercise output byte_offset. */
        float padded[10] = {0};
        out2[0].data = padded;
        out2[0].byte_offset = 4 * sizeof(float);
        must(kiln_run(model, &strided, 1, out2, 3, NULL), "kiln_run strided");
        memcpy(y2, padded + 4, sizeof y2);
        expect(memcmp(y2, y_view.data, sizeof y2) == 0 && padded[0] == 0, "strided_input_and_byte_offset", "results differ");
    }

    /* Loading from memory (the buffer is freed right after the call: the model must not need it). */
    {
        FILE *f = fopen(argv[1], "rb");
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *bytes = malloc((size_t)size);
        size_t got = fread(bytes, 1, (size_t)size, f);
        fclose(f);
        kiln_model *from_memory = NULL;
        must(kiln_model_load_memory(context, bytes, got, NULL, &from_memory), "kiln_model_load_memory");
        memset(bytes, 0xAB, got);
        free(bytes);
        kiln_outputs *o = NULL;
        must(kiln_run_alloc(from_memory, &x, 1, NULL, &o), "run from memory");
        kiln_tensor t;
        must(kiln_outputs_get(o, 0, &t), "outputs_get");
        expect(memcmp(t.data, y_view.data, 6 * sizeof(float)) == 0, "load_memory", "results differ");
        kiln_outputs_free(o);
        kiln_model_free(from_memory);
    }

    /* The optimized CPU backend with two worker threads: the same answers within float rounding. */
    {
        kiln_load_options cpu = {.struct_size = sizeof cpu, .backend = "kiln.cpu", .num_threads = 2};
        kiln_model *on_cpu = NULL;
        must(kiln_model_load_file(context, argv[1], &cpu, &on_cpu), "load on kiln.cpu");
        kiln_outputs *o = NULL;
        must(kiln_run_alloc(on_cpu, &x, 1, NULL, &o), "run on kiln.cpu");
        kiln_tensor t;
        must(kiln_outputs_get(o, 0, &t), "outputs_get");
        int close = 1;
        for (int i = 0; i < 6; i++) {
            float d = ((const float *)t.data)[i] - y_first[i];
            close &= d < 1e-5f && d > -1e-5f;
        }
        kiln_partition_entry entry = {.struct_size = sizeof entry};
        must(kiln_model_partition_entry(on_cpu, 0, &entry), "partition_entry");
        expect(close && strcmp(entry.backend, "kiln.cpu") == 0, "kiln_cpu_backend", "results or partition differ");
        kiln_outputs_free(o);
        kiln_model_free(on_cpu);
    }

    /* Several threads running one model at once. */
    {
        pthread_t threads[4];
        struct thread_job jobs[4];
        for (int i = 0; i < 4; i++) {
            jobs[i].model = model;
            pthread_create(&threads[i], NULL, run_repeatedly, &jobs[i]);
        }
        int ok = 1;
        for (int i = 0; i < 4; i++) {
            pthread_join(threads[i], NULL);
            ok &= jobs[i].ok;
        }
        expect(ok, "concurrent_runs", "a run failed or gave a different answer");
    }

    /* Outputs outlive the model and the context. */
    kiln_model_free(model);
    kiln_context_free(context);
    must(kiln_outputs_get(result, 0, &y_view), "outputs_get after free");
    expect(memcmp(y_view.data, y_first, sizeof y_first) == 0, "outputs_outlive_model", "changed after kiln_model_free");
    kiln_outputs_free(result);

    /* An artifact, when given: it must load and give the same results. */
    if (argc > 2) {
        kiln_context *c2 = NULL;
        must(kiln_context_create(NULL, &c2), "kiln_context_create");
        kiln_model *artifact = NULL;
        must(kiln_model_load_file(c2, argv[2], NULL, &artifact), "load artifact");
        kiln_outputs *o = NULL;
        must(kiln_run_alloc(artifact, &x, 1, NULL, &o), "run artifact");
        kiln_tensor t;
        must(kiln_outputs_get(o, 0, &t), "outputs_get");
        expect(memcmp(t.data, y_first, sizeof y_first) == 0, "artifact_results", "differ from the ONNX model's");
        kiln_outputs_free(o);
        kiln_model_free(artifact);
        kiln_context_free(c2);
    }

    /* Compile options: unknown keys and bad values are errors naming them. */
    {
        kiln_context *c3 = NULL;
        must(kiln_context_create(NULL, &c3), "kiln_context_create");
        kiln_blob *blob = NULL;
        const char *keys[] = {"no_such_option"}, *values[] = {"1"};
        kiln_compile_options o = {.struct_size = sizeof o, .option_keys = keys, .option_values = values, .option_count = 1};
        const char *parts[] = {"no_such_option", "backends", NULL};
        expect_error(kiln_compile_file(c3, argv[1], "/tmp/never-written.kiln", &o), KILN_ERROR_INVALID_ARGUMENT, "compile_unknown_key", parts);
        keys[0] = "fallback";
        values[0] = "sometimes";
        const char *parts2[] = {"fallback", "sometimes", NULL};
        FILE *f = fopen(argv[1], "rb");
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, 0, SEEK_SET);
        unsigned char *bytes = malloc((size_t)size);
        size_t got = fread(bytes, 1, (size_t)size, f);
        fclose(f);
        expect_error(kiln_compile_memory(c3, bytes, got, &o, &blob), KILN_ERROR_INVALID_ARGUMENT, "compile_bad_fallback", parts2);
        keys[0] = "min_group_size";
        values[0] = "0";
        const char *parts3[] = {"min_group_size", NULL};
        expect_error(kiln_compile_memory(c3, bytes, got, &o, &blob), KILN_ERROR_INVALID_ARGUMENT, "compile_bad_min_group_size", parts3);
        keys[0] = "backends";
        values[0] = "sample.bytecode";
        kiln_error *e = kiln_compile_memory(c3, bytes, got, &o, &blob);
        expect(e != NULL && strstr(kiln_error_message(e), "sample.bytecode") != NULL, "compile_unregistered_backend",
               e ? kiln_error_message(e) : "succeeded without the plugin");
        if (e) kiln_error_free(e); else kiln_blob_free(blob);
        /* Built-in backends selected through the partition keys. */
        const char *k2[] = {"backends", "fallback", "min_group_size", "deny"};
        const char *v2[] = {" kiln.reference ", "allow", "1", "Relu,Shape"};
        kiln_compile_options o2 = {.struct_size = sizeof o2, .option_keys = k2, .option_values = v2, .option_count = 4};
        e = kiln_compile_memory(c3, bytes, got, &o2, &blob);
        expect(e == NULL, "compile_partition_options", e ? kiln_error_message(e) : "");
        if (e) kiln_error_free(e);
        else {
            kiln_model *m = NULL;
            must(kiln_model_load_memory(c3, kiln_blob_data(blob), kiln_blob_size(blob), NULL, &m), "load partitioned artifact");
            size_t n = 0;
            must(kiln_model_partition_count(m, &n), "partition_count");
            int relu_denied = 0;
            for (size_t i = 0; i < n; i++) {
                kiln_partition_entry entry = {.struct_size = sizeof entry};
                must(kiln_model_partition_entry(m, i, &entry), "partition_entry");
                if (strcmp(entry.op, "Relu") == 0) relu_denied = strcmp(entry.backend, "kiln.reference") != 0 && strstr(entry.reason, "den") != NULL;
            }
            expect(relu_denied, "compile_deny_option", "Relu ran on kiln.reference or its reason does not say it was denied");
            kiln_model_free(m);
            kiln_blob_free(blob);
        }
        free(bytes);
        kiln_context_free(c3);
    }

    /* Vendor plugins: registered per context, selectable by compile options, running artifact partitions. */
    {
        kiln_context *with = NULL, *without = NULL;
        must(kiln_context_create(NULL, &with), "kiln_context_create");
        must(kiln_context_create(NULL, &without), "kiln_context_create");
        kiln_error *e = kiln_context_register_plugin(with, "/no/such/plugin.so", NULL);
        expect(e != NULL && strstr(kiln_error_message(e), "/no/such/plugin.so") != NULL, "register_missing_plugin",
               e ? kiln_error_message(e) : "succeeded");
        if (e) kiln_error_free(e);
        const char *parts2[] = {"path", "NULL", NULL};
        expect_error(kiln_context_register_plugin(with, NULL, NULL), KILN_ERROR_INVALID_ARGUMENT, "register_null_path", parts2);
        const char *parts3[] = {"context", NULL};
        expect_error(kiln_context_register_plugin(NULL, "x.so", NULL), KILN_ERROR_INVALID_ARGUMENT, "register_null_context", parts3);
        if (argc > 3) {
            size_t before = 0, after = 0, added = 99, other = 0;
            must(kiln_context_backend_count(with, &before), "backend_count");
            must(kiln_context_register_plugin(with, argv[3], &added), "kiln_context_register_plugin");
            must(kiln_context_backend_count(with, &after), "backend_count");
            must(kiln_context_backend_count(without, &other), "backend_count");
            const char *last = NULL;
            must(kiln_context_backend_name(with, after - 1, &last), "backend_name");
            expect(added == 1 && after == before + 1 && strcmp(last, "sample.bytecode") == 0, "register_plugin", "sample.bytecode not appended");
            expect(other == before, "plugin_is_per_context", "the other context sees the plugin's backend");
            size_t again = 99;
            must(kiln_context_register_plugin(with, argv[3], &again), "register again");
            expect(again == 0, "register_plugin_twice", "registering again added backends");

            const char *keys[] = {"backends", "fallback"}, *values[] = {"sample.bytecode", "allow"};
            kiln_compile_options o = {.struct_size = sizeof o, .option_keys = keys, .option_values = values, .option_count = 2};
            char artifact_path[4096];
            snprintf(artifact_path, sizeof artifact_path, "%s.sample.kiln", argv[1]);
            must(kiln_compile_file(with, argv[1], artifact_path, &o), "compile for the plugin");
            kiln_model *m = NULL;
            must(kiln_model_load_file(with, artifact_path, NULL, &m), "load the plugin artifact");
            size_t n = 0;
            int matmul_on_plugin = 0;
            must(kiln_model_partition_count(m, &n), "partition_count");
            for (size_t i = 0; i < n; i++) {
                kiln_partition_entry entry = {.struct_size = sizeof entry};
                must(kiln_model_partition_entry(m, i, &entry), "partition_entry");
                printf("plugin-partition %s %s %s\n", entry.node, entry.op, entry.backend);
                if (strcmp(entry.op, "MatMul") == 0) matmul_on_plugin = strcmp(entry.backend, "sample.bytecode") == 0;
            }
            expect(matmul_on_plugin, "plugin_partition", "MatMul is not on sample.bytecode");
            kiln_outputs *out = NULL;
            must(kiln_run_alloc(m, &x, 1, NULL, &out), "run the plugin artifact");
            kiln_tensor t;
            must(kiln_outputs_get(out, 0, &t), "outputs_get");
            int close = t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 3;
            for (int i = 0; close && i < 6; i++) {
                float d = ((const float *)t.data)[i] - y_first[i];
                close &= d < 1e-5f && d > -1e-5f;
            }
            expect(close, "plugin_results", "differ from kiln.reference's");
            kiln_outputs_free(out);
            kiln_model_free(m);
            m = NULL;
            e = kiln_model_load_file(without, artifact_path, NULL, &m);
            expect(e != NULL && strstr(kiln_error_message(e), "sample.bytecode") != NULL, "plugin_artifact_needs_plugin",
                   e ? kiln_error_message(e) : "loaded without the plugin");
            if (e) kiln_error_free(e); else kiln_model_free(m);
            remove(artifact_path);

            /* Discovery through KILN_PLUGIN_PATH: the plugin loads, a non-plugin file is reported by path. */
            kiln_context *found = NULL;
            must(kiln_context_create(NULL, &found), "kiln_context_create");
            setenv("KILN_PLUGIN_PATH", argv[3], 1);
            size_t discovered = 0;
            must(kiln_context_discover_plugins(found, &discovered), "kiln_context_discover_plugins");
            expect(discovered == 1, "discover_plugins", "expected one backend");
            kiln_context *broken = NULL;
            must(kiln_context_create(NULL, &broken), "kiln_context_create");
            char list[8192];
            snprintf(list, sizeof list, "%s:%s", argv[1], argv[3]);
            setenv("KILN_PLUGIN_PATH", list, 1);
            e = kiln_context_discover_plugins(broken, NULL);
            size_t count = 0;
            must(kiln_context_backend_count(broken, &count), "backend_count");
            expect(e != NULL && strstr(kiln_error_message(e), argv[1]) != NULL && count == before + 1, "discover_reports_failures",
                   e ? kiln_error_message(e) : "succeeded with a non-plugin file listed");
            if (e) kiln_error_free(e);
            unsetenv("KILN_PLUGIN_PATH");
            kiln_context_free(found);
            kiln_context_free(broken);
        }
        kiln_context_free(with);
        kiln_context_free(without);
    }

    printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
