/*
 * A deliberately broken Kiln plugin, for Kiln's tests and for trying `kiln plugin-check`: it claims every
 * node, "compiles" to an empty payload and runs graphs whose outputs are copies of the first input — and
 * breaks one rule of kiln_plugin.h, chosen at compile time with -DBROKEN_MODE=N:
 *   0  nothing (a correct plugin: identity-ish behaviour)
 *   1  claim returns success with a NULL supported array
 *   2  compile returns an error
 *   3  compile returns success with a NULL payload of 16 bytes
 *   4  load returns success without an executable
 *   5  execute returns an error
 *   6  execute returns success but leaves output data NULL
 *   7  the entry returns neither a header nor an error
 *   8  the header's struct_size is too small
 *   9  execute returns an error pointer the host never made
 *  10  execute hands back output memory from malloc instead of host->alloc
 *  11  a backend callback (execute) is NULL
 *  12  claim rejects a node without a reason
 *  13  execute crashes (a NULL pointer write: SIGSEGV)
 *  14  claim aborts (SIGABRT) on any graph with nodes
 *  15  (ABI 1.2) devices reports a device of an unknown kind
 *  16  (ABI 1.2) the backend sets KILN_PLUGIN_BACKEND_DEVICE_BUFFERS without the buffer callbacks
 *  17  (ABI 1.2) devices returns an error
 *  18  claim hangs (sleeps forever) on any graph with nodes
 *  19  claims every node but refuses (KILN_ERROR_UNSUPPORTED) to compile any graph with a Relu node: a claim
 *      broken at compile time, which the host answers by repartitioning without those nodes
 *  20  (ABI 1.3) declares options "echo" (any text) and "level" (low|high); compile fails with an error listing
 *      the options it received, so a test sees exactly what the host passed
 *  21  (ABI 1.3) declares two options called "level"
 *  22  (ABI 1.3) declares an option with a NULL name
 *  23  answers ABI 1.2 with the 1.3 struct size and an impossible option list (5 options, NULL array): the
 *      host must read it as 1.2, without the options
 *  24  (ABI 1.4) profile gives 5 steps with a NULL array
 *  25  (ABI 1.4) profile returns an error
 * Modes 15 to 17 and 23 answer ABI 1.2, 20 to 22 answer 1.3, 24 and 25 answer 1.4; the others answer 1.0 with
 * the 1.0 struct sizes.
 */
#define _POSIX_C_SOURCE 200809L /* sleep */
#include <kiln/kiln_plugin.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef BROKEN_MODE
#define BROKEN_MODE 0
#endif

static const kiln_plugin_host *host;

static kiln_plugin_error *fail(int32_t code, const char *message) { return host->error_create(host->host_context, code, message); }

/* Counts the nodes of a kiln.ir.Graph without a protobuf library: field 5 (nodes), length-delimited. */
static int count_nodes(const kiln_plugin_bytes *graph, size_t *count) {
    const uint8_t *p = graph->data, *end = p + graph->size;
    *count = 0;
    while (p < end) {
        uint64_t key = 0, length = 0;
        int shift = 0;
        do { if (p >= end || shift > 63) return 0; key |= (uint64_t)(*p & 0x7f) << shift; shift += 7; } while (*p++ & 0x80);
        if ((key & 7) != 2) return 0; /* every field of Graph is length-delimited */
        shift = 0;
        do { if (p >= end || shift > 63) return 0; length |= (uint64_t)(*p & 0x7f) << shift; shift += 7; } while (*p++ & 0x80);
        if (length > (uint64_t)(end - p)) return 0;
        if ((key >> 3) == 5) (*count)++;
        p += length;
    }
    return 1;
}

static uint8_t all_ones[4096];

static kiln_plugin_error *claim(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out) {
    (void)context;
    size_t n;
    if (!count_nodes(graph, &n) || n > sizeof all_ones) return fail(KILN_ERROR_INVALID_MODEL, "claim: cannot read the graph");
    if (BROKEN_MODE == 14 && n > 0) abort();
    while (BROKEN_MODE == 18 && n > 0) sleep(60);
    memset(all_ones, 1, sizeof all_ones);
    out->node_count = n;
    out->supported = BROKEN_MODE == 1 ? NULL : all_ones;
#if BROKEN_MODE == 12
    static uint8_t none[4096];
    out->supported = none;
    out->reasons = NULL;
#endif
    return NULL;
}

static kiln_plugin_error *compile(void *context, const kiln_plugin_bytes *graph, const kiln_plugin_compile_options *options,
                                  kiln_plugin_payload *out) {
    (void)context; (void)graph; (void)options;
    if (BROKEN_MODE == 2) return fail(KILN_ERROR_RUNTIME, "the compiler exploded");
    if (BROKEN_MODE == 20) {
        char got[512] = "compile got options:";
        size_t count = options && options->option_keys && options->option_values ? options->option_count : 0;
        for (size_t i = 0; i < count; i++) {
            size_t used = strlen(got);
            snprintf(got + used, sizeof got - used, " %s=%s", options->option_keys[i], options->option_values[i]);
        }
        return fail(KILN_ERROR_RUNTIME, got);
    }
    if (BROKEN_MODE == 19) {
        static const char relu[] = "Relu"; /* an op name in the graph's bytes: crude, enough for a test */
        for (size_t i = 0; i + 4 <= graph->size; i++) {
            if (memcmp((const uint8_t *)graph->data + i, relu, 4) == 0) return fail(KILN_ERROR_UNSUPPORTED, "Relu is not supported after all");
        }
    }
    out->data = NULL;
    out->size = BROKEN_MODE == 3 ? 16 : 0;
    out->compat = "broken/1";
    return NULL;
}

static kiln_plugin_error *check(void *context, const char *compat) {
    (void)context;
    return strcmp(compat, "broken/1") == 0 ? NULL : fail(KILN_ERROR_VERSION_MISMATCH, "only broken/1");
}

static int executable_token;

static kiln_plugin_error *load(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph, void **out) {
    (void)context; (void)graph;
    if (payload->size != 0) return fail(KILN_ERROR_INVALID_ARTIFACT, "load: expected an empty payload");
    *out = BROKEN_MODE == 4 ? NULL : &executable_token;
    return NULL;
}

static kiln_plugin_error *execute(void *context, void *executable, const kiln_tensor *inputs, size_t input_count,
                                  kiln_tensor *outputs, size_t output_count) {
    (void)context; (void)executable;
    if (BROKEN_MODE == 5) return fail(KILN_ERROR_RUNTIME, "the device caught fire");
    if (BROKEN_MODE == 9) return (kiln_plugin_error *)(uintptr_t)0x1234;
    if (BROKEN_MODE == 13) {
        volatile int *nowhere = NULL;
        *nowhere = 1;
        raise(SIGSEGV); /* in case the write above was not fatal */
    }
    if (input_count == 0) return fail(KILN_ERROR_INVALID_ARGUMENT, "no inputs");
    const kiln_tensor *x = &inputs[0];
    size_t bytes = (size_t)(x->dtype.bits + 7) / 8;
    for (int32_t d = 0; d < x->ndim; d++) bytes *= (size_t)x->shape[d];
    for (size_t i = 0; i < output_count; i++) {
        outputs[i].dtype = x->dtype;
        outputs[i].ndim = x->ndim;
        for (int32_t d = 0; d < x->ndim; d++) outputs[i].shape[d] = x->shape[d];
        if (BROKEN_MODE == 6) continue;
        void *data = BROKEN_MODE == 10 ? malloc(bytes + 1) : host->alloc(host->host_context, bytes, 64);
        if (bytes) memcpy(data, x->data, bytes);
        outputs[i].data = data;
    }
    return NULL;
}

static void unload(void *context, void *executable) { (void)context; (void)executable; }
static void release(void *context, void *owner) { (void)context; (void)owner; }

#define ABI_12 (BROKEN_MODE >= 15 && BROKEN_MODE <= 17)

static kiln_plugin_error *devices(void *context, kiln_plugin_device_list *out) {
    (void)context;
    if (BROKEN_MODE == 17) return fail(KILN_ERROR_RUNTIME, "the device is unplugged");
    static const kiln_plugin_device device = {
        .struct_size = sizeof(kiln_plugin_device), .name = "mystery device", .kind = 42, .memory_bytes = 1024};
    static const kiln_plugin_device *const list[] = {&device};
    out->device_count = 1;
    out->devices = list;
    return NULL;
}

#define ABI_13 (BROKEN_MODE >= 20 && BROKEN_MODE <= 22)
#define ABI_14 (BROKEN_MODE >= 24 && BROKEN_MODE <= 25)

static kiln_plugin_error *profile(void *context, void *executable, kiln_plugin_profile *out) {
    (void)context; (void)executable;
    if (BROKEN_MODE == 25) return fail(KILN_ERROR_RUNTIME, "the cycle counters are gone");
    out->clock_hz = 1e9;
    out->total_cycles = 10;
    out->step_count = 5;
    out->steps = NULL;
    return NULL;
}
static const char *const levels[] = {"low", "high"};
static const kiln_plugin_option echo_option = {.struct_size = sizeof(kiln_plugin_option), .name = "echo", .help = "any text"};
static const kiln_plugin_option level_option = {
    .struct_size = sizeof(kiln_plugin_option), .name = "level", .default_value = "low", .help = "a choice", .choice_count = 2, .choices = levels};
static const kiln_plugin_option unnamed_option = {.struct_size = sizeof(kiln_plugin_option), .name = NULL};
static const kiln_plugin_option *const options[] = {
    BROKEN_MODE == 22 ? &unnamed_option : &echo_option, &level_option, &level_option};

static const kiln_plugin_backend backend = {
    .struct_size = ABI_12 || ABI_13 || ABI_14 || BROKEN_MODE == 23 ? sizeof(kiln_plugin_backend) : offsetof(kiln_plugin_backend, release) + sizeof(void *),
    .option_count = BROKEN_MODE == 23 ? 5 : BROKEN_MODE == 21 ? 3 : ABI_13 ? 2 : 0,
    .options = BROKEN_MODE == 23 ? NULL : ABI_13 ? options : NULL,
    .flags = BROKEN_MODE == 16 ? KILN_PLUGIN_BACKEND_DEVICE_BUFFERS : 0,
    .devices = ABI_12 ? devices : NULL,
    .name = "broken.backend",
    .vendor = "Kiln tests",
    .version = "0.0.1",
    .claim = claim,
    .compile = compile,
    .check = check,
    .load = load,
    .execute = BROKEN_MODE == 11 ? NULL : execute,
    .unload = unload,
    .release = release,
    .profile = ABI_14 ? profile : NULL,
};

static const kiln_plugin_backend *const backends[] = {&backend};

static const kiln_plugin_header header = {
    .struct_size = BROKEN_MODE == 8 ? 12 : sizeof(kiln_plugin_header),
    .abi_major = 1,
    .abi_minor = ABI_14 ? 4 : ABI_13 ? 3 : ABI_12 || BROKEN_MODE == 23 ? 2 : 0,
    .name = "broken-plugin",
    .vendor = "Kiln tests",
    .version = "0.0.1",
    .backend_count = 1,
    .backends = backends,
};

KILN_PLUGIN_EXPORT kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *services, const kiln_plugin_header **out) {
    host = services;
    if (BROKEN_MODE == 7) return NULL;
    *out = &header;
    return NULL;
}
