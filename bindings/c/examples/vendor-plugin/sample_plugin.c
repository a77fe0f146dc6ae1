/*
 * A sample Kiln vendor plugin (plugin ABI 1.4; it uses the 1.2 fields and 1.4's profile, and declares no options): one backend, "sample.bytecode", that claims float32 Conv
 * (2-D), Relu, Add, MatMul and Gemm, compiles a graph of them into its own bytecode (bytecode.h; that is
 * the payload Kiln stores in artifacts) and runs the bytecode with a plain C interpreter.
 *
 * Devices (ABI 1.2): the backend reports two simulated devices. Each is host memory behind an allocator
 * of its own (a capacity, a count of live buffers and bytes) that counts every transfer between host and
 * device memory: a host input that execute must place on the device, a host output it must bring back,
 * and every buffer_write and buffer_read. The counts are device properties ("transfers.to_device",
 * "transfers.to_host"), so Kiln's tests can see that a value handed from one partition to the next as a
 * device buffer never went through host memory.
 *
 * Build (see Makefile):
 *   cc -std=c11 -O2 -shared -fPIC -fvisibility=hidden -I../../../../include -I../../proto \
 *      sample_plugin.c bytecode.c ../../proto/kiln/ir.pb-c.c -lprotobuf-c -o libkiln_sample_plugin.so
 *
 * Knobs (compile-time, for Kiln's own tests; a real plugin would not have them):
 *   SAMPLE_BACKEND_NAME  the backend's name             (default "sample.bytecode")
 *   SAMPLE_MIN_GROUP_SIZE  (1.5) the backend's min_group_size (default 0: the host's default)
 *   SAMPLE_PLUGIN_NAME   the plugin's name              (default "kiln-sample-plugin")
 *   SAMPLE_ABI_MAJOR     the ABI major of the entry symbol and the header (default KILN_PLUGIN_ABI_MAJOR)
 *   SAMPLE_HEADER_ABI_MAJOR  the major the header claims (default SAMPLE_ABI_MAJOR)
 *   SAMPLE_ABI_MINOR     the minor the plugin is built for (default KILN_PLUGIN_ABI_MINOR). Below 2 the
 *                        plugin is what a 1.0/1.1 build was: the 1.0 struct sizes, no devices, no device
 *                        buffers, no targets — and the fields 1.2 appended hold poison that a host reading
 *                        past struct_size would trip over.
 *   SAMPLE_MIN_HOST_MINOR  the oldest host minor the plugin works with (default 0): an older host is refused
 *   SAMPLE_HEADER_ABI_MINOR  a minor the header claims whatever the host speaks (default: negotiated)
 */
#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"
#include "bytecode.h"

#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SAMPLE_MIN_GROUP_SIZE
#define SAMPLE_MIN_GROUP_SIZE 0
#endif
#ifndef SAMPLE_BACKEND_NAME
#define SAMPLE_BACKEND_NAME "sample.bytecode"
#endif
#ifndef SAMPLE_PLUGIN_NAME
#define SAMPLE_PLUGIN_NAME "kiln-sample-plugin"
#endif
#ifndef SAMPLE_ABI_MAJOR
#define SAMPLE_ABI_MAJOR KILN_PLUGIN_ABI_MAJOR
#endif
#ifndef SAMPLE_HEADER_ABI_MAJOR
#define SAMPLE_HEADER_ABI_MAJOR SAMPLE_ABI_MAJOR
#endif
#ifndef SAMPLE_ABI_MINOR
#define SAMPLE_ABI_MINOR KILN_PLUGIN_ABI_MINOR
#endif
#ifndef SAMPLE_MIN_HOST_MINOR
#define SAMPLE_MIN_HOST_MINOR 0
#endif
#define SAMPLE_VERSION "1.2.0"
/* The compatibility string: the backend's name and the bytecode format version ("KSB1"). */
#define SAMPLE_COMPAT SAMPLE_BACKEND_NAME "/ksb1"

/* The host's services, from the entry call (valid until shutdown). */
static const kiln_plugin_host *host;

/* A new error through the host, with a printf-style message. */
static kiln_plugin_error *error(int32_t code, const char *format, ...) {
    char message[512];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return host->error_create(host->host_context, code, message);
}

/* ---- a small string → int map ------------------------------------------------------------------ */

typedef struct name_map {
    const char **keys;
    int *values;
    size_t capacity, count;
} name_map;

static size_t hash(const char *s) {
    size_t h = 1469598103934665603u;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static int map_init(name_map *m, size_t expected) {
    m->capacity = 16;
    while (m->capacity < expected * 2 + 1) m->capacity *= 2;
    m->count = 0;
    m->keys = calloc(m->capacity, sizeof(char *));
    m->values = calloc(m->capacity, sizeof(int));
    return m->keys && m->values;
}

static void map_free(name_map *m) {
    free(m->keys);
    free(m->values);
}

/* The slot of `key`: where it is, or where it would go. */
static size_t map_slot(const name_map *m, const char *key) {
    size_t i = hash(key) & (m->capacity - 1);
    while (m->keys[i] && strcmp(m->keys[i], key) != 0) i = (i + 1) & (m->capacity - 1);
    return i;
}

static int map_get(const name_map *m, const char *key, int *value) {
    size_t i = map_slot(m, key);
    if (!m->keys[i]) return 0;
    *value = m->values[i];
    return 1;
}

/* Sets key (borrowed: must outlive the map) to value; the map never fills because callers size it. */
static void map_set(name_map *m, const char *key, int value) {
    size_t i = map_slot(m, key);
    if (!m->keys[i]) {
        if (m->count + 1 >= m->capacity) return;
        m->keys[i] = key;
        m->count++;
    }
    m->values[i] = value;
}

/* ---- decoding the graph ------------------------------------------------------------------------ */

static kiln_plugin_error *decode_graph(const kiln_plugin_bytes *bytes, Kiln__Ir__Graph **out) {
    if (!bytes || bytes->struct_size < sizeof(kiln_plugin_bytes))
        return error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes missing or struct_size too small");
    if (bytes->format != KILN_PLUGIN_FORMAT_IR_GRAPH)
        return error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes have format %u, expected KILN_PLUGIN_FORMAT_IR_GRAPH", bytes->format);
    if (!bytes->data && bytes->size > 0) return error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes: NULL data");
    static const uint8_t empty[1] = {0};
    *out = kiln__ir__graph__unpack(NULL, bytes->size, bytes->size ? bytes->data : empty);
    if (!*out) return error(KILN_ERROR_INVALID_MODEL, "graph bytes (%zu) are not a valid kiln.ir.Graph", bytes->size);
    return NULL;
}

/* A malloc'ed copy of `s` (strdup is not C11). */
static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

/* Value facts the claim needs: element type (ONNX number) and rank (-1 unknown). Packed as dtype * 64 + rank + 1. */
static int pack_type(int dtype, int rank) { return dtype * 64 + (rank < 0 ? 0 : rank + 1); }
static int packed_dtype(int packed) { return packed / 64; }
static int packed_rank(int packed) { return packed % 64 - 1; }

static int type_of_value(const Kiln__Ir__Value *v) {
    if (!v->type || v->type->value_case != KILN__IR__TYPE__VALUE_TENSOR || !v->type->tensor) return pack_type(0, -1);
    const Kiln__Ir__TensorType *t = v->type->tensor;
    return pack_type((int)t->dtype, t->has_shape && t->n_dims < 63 ? (int)t->n_dims : -1);
}

static const Kiln__Ir__Attribute *attribute(const Kiln__Ir__Node *node, const char *name) {
    for (size_t i = 0; i < node->n_attributes; i++)
        if (strcmp(node->attributes[i]->name, name) == 0) return node->attributes[i];
    return NULL;
}

/* The value types of `graph`: inputs, initializers and the recorded intermediate types. */
static int collect_types(const Kiln__Ir__Graph *g, name_map *types) {
    if (!map_init(types, g->n_inputs + g->n_initializers + g->n_value_types + g->n_nodes * 3 + 8)) return 0;
    for (size_t i = 0; i < g->n_value_types; i++) map_set(types, g->value_types[i]->name, type_of_value(g->value_types[i]));
    for (size_t i = 0; i < g->n_initializers; i++) {
        const Kiln__Ir__Tensor *t = g->initializers[i];
        map_set(types, t->name, pack_type((int)t->dtype, t->n_shape < 63 ? (int)t->n_shape : -1));
    }
    for (size_t i = 0; i < g->n_inputs; i++) map_set(types, g->inputs[i]->name, type_of_value(g->inputs[i]));
    return 1;
}

/* Why this backend cannot run `node` (written into `why`), or 0 when it can. */
static int rejects(const Kiln__Ir__Node *node, name_map *types, char *why, size_t size) {
    const char *op = node->op;
    if (node->domain[0] && strcmp(node->domain, "ai.onnx") != 0) {
        snprintf(why, size, "op %s.%s: only the ONNX domain is supported", node->domain, op);
        return 1;
    }
    size_t min_in, max_in;
    if (strcmp(op, "Relu") == 0) min_in = max_in = 1;
    else if (strcmp(op, "Add") == 0 || strcmp(op, "MatMul") == 0) min_in = max_in = 2;
    else if (strcmp(op, "Gemm") == 0 || strcmp(op, "Conv") == 0) { min_in = 2; max_in = 3; }
    else { snprintf(why, size, "op %s is not supported (supported: Conv, Relu, Add, MatMul, Gemm)", op); return 1; }
    if (node->n_inputs < min_in || node->n_inputs > max_in) {
        snprintf(why, size, "%s with %zu inputs is not supported", op, node->n_inputs);
        return 1;
    }
    if (node->n_outputs != 1 || !node->outputs[0][0]) {
        snprintf(why, size, "%s must have exactly one output", op);
        return 1;
    }
    int ranks[3] = {-1, -1, -1};
    for (size_t i = 0; i < node->n_inputs; i++) {
        if (!node->inputs[i][0]) {
            if (i < min_in) { snprintf(why, size, "%s: required input %zu is omitted", op, i); return 1; }
            continue;
        }
        int packed;
        if (!map_get(types, node->inputs[i], &packed) || packed_dtype(packed) == 0) {
            snprintf(why, size, "%s: the element type of input '%s' is unknown", op, node->inputs[i]);
            return 1;
        }
        if (packed_dtype(packed) != KILN__IR__DATA_TYPE__FLOAT32) {
            snprintf(why, size, "%s: input '%s' has element type %d; only float32 is supported", op, node->inputs[i], packed_dtype(packed));
            return 1;
        }
        ranks[i] = packed_rank(packed);
    }
    if (strcmp(op, "Conv") == 0) {
        if (ranks[1] != 4 || (ranks[0] != -1 && ranks[0] != 4)) {
            snprintf(why, size, "Conv: only 2-D convolution (rank-4 X and W, W's rank known) is supported");
            return 1;
        }
        const Kiln__Ir__Attribute *a = attribute(node, "auto_pad");
        if (a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_S && strcmp(a->s, "NOTSET") != 0 && strcmp(a->s, "VALID") != 0) {
            snprintf(why, size, "Conv: auto_pad %s is not supported", a->s);
            return 1;
        }
        const char *lists[3] = {"strides", "dilations", "pads"};
        size_t lengths[3] = {2, 2, 4};
        for (int k = 0; k < 3; k++) {
            a = attribute(node, lists[k]);
            if (a && (a->value_case != KILN__IR__ATTRIBUTE__VALUE_INTS || !a->ints || a->ints->n_values != lengths[k])) {
                snprintf(why, size, "Conv: attribute %s must list %zu integers", lists[k], lengths[k]);
                return 1;
            }
        }
    }
    if (strcmp(op, "Gemm") == 0 && ((ranks[0] != -1 && ranks[0] != 2) || (ranks[1] != -1 && ranks[1] != 2))) {
        snprintf(why, size, "Gemm: A and B must be matrices");
        return 1;
    }
    return 0;
}

/* Fills supported[i] (and reasons[i], malloc'ed, for rejected nodes). Returns 0 when out of memory. */
static int analyze(const Kiln__Ir__Graph *g, uint8_t *supported, char **reasons) {
    name_map types;
    if (!collect_types(g, &types)) { map_free(&types); return 0; }
    for (size_t i = 0; i < g->n_nodes; i++) {
        char why[256];
        const Kiln__Ir__Node *node = g->nodes[i];
        int rejected = rejects(node, &types, why, sizeof why);
        supported[i] = !rejected;
        if (rejected && reasons) reasons[i] = copy_string(why);
        int known;
        for (size_t k = 0; k < node->n_outputs; k++)
            if (!rejected && !map_get(&types, node->outputs[k], &known))
                map_set(&types, node->outputs[k], pack_type(KILN__IR__DATA_TYPE__FLOAT32, -1));
    }
    map_free(&types);
    return 1;
}

/* ---- blobs handed to the host (released through release) --------------------------------------- */

enum { OWNER_CLAIM = 1, OWNER_PAYLOAD = 2, OWNER_DEVICES = 3, OWNER_PROFILE = 4 };

typedef struct owner {
    int kind;
    size_t count;
    uint8_t *supported;
    char **reasons;
    bc_buffer payload;
    void *devices;          /* OWNER_DEVICES: a device_answer */
    kiln_plugin_profile_step *steps; /* OWNER_PROFILE: `count` steps, their names in `names` */
    char (*names)[32];
} owner;

static void release(void *context, void *token) {
    (void)context;
    owner *o = token;
    if (!o) return;
    if (o->kind == OWNER_CLAIM) {
        for (size_t i = 0; i < o->count; i++) free(o->reasons[i]);
        free(o->reasons);
        free(o->supported);
    } else if (o->kind == OWNER_PAYLOAD) {
        free(o->payload.data);
    } else if (o->kind == OWNER_DEVICES) {
        free(o->devices);
    } else if (o->kind == OWNER_PROFILE) {
        free(o->steps);
        free(o->names);
    }
    free(o);
}

/* ---- devices and their memory (ABI 1.2) ----------------------------------------------------------- */

#define SAMPLE_DEVICE_COUNT 2
#define SAMPLE_DEVICE_MEMORY ((uint64_t)256 << 20)
#define SAMPLE_BUFFER_MAGIC 0x4b534246u /* "KSBF" */

/* Per device: what its allocator holds and how many transfers crossed between host and device. */
static _Atomic uint64_t transfers_to_device[SAMPLE_DEVICE_COUNT], transfers_to_host[SAMPLE_DEVICE_COUNT];
static _Atomic int64_t live_buffers[SAMPLE_DEVICE_COUNT], live_bytes[SAMPLE_DEVICE_COUNT];

/* A buffer of a device's memory: the handle Kiln holds. */
typedef struct sample_buffer {
    uint32_t magic;
    uint32_t device;
    size_t size;
    float *data;
} sample_buffer;

/* A new buffer on `device` adopting `data` (malloc'ed, at least `size` bytes; NULL = allocate it). */
static sample_buffer *device_allocate(uint32_t device, size_t size, float *data) {
    if (device >= SAMPLE_DEVICE_COUNT) return NULL;
    if ((uint64_t)atomic_fetch_add(&live_bytes[device], (int64_t)size) + size > SAMPLE_DEVICE_MEMORY) {
        atomic_fetch_sub(&live_bytes[device], (int64_t)size);
        return NULL;
    }
    sample_buffer *b = malloc(sizeof *b);
    if (b && !data) data = malloc(size ? size : 4);
    if (!b || !data) {
        free(b);
        atomic_fetch_sub(&live_bytes[device], (int64_t)size);
        return NULL;
    }
    b->magic = SAMPLE_BUFFER_MAGIC;
    b->device = device;
    b->size = size;
    b->data = data;
    atomic_fetch_add(&live_buffers[device], 1);
    return b;
}

static void device_release(sample_buffer *b) {
    if (!b) return;
    atomic_fetch_sub(&live_buffers[b->device], 1);
    atomic_fetch_sub(&live_bytes[b->device], (int64_t)b->size);
    b->magic = 0;
    free(b->data);
    free(b);
}

/* `handle` as a buffer of `device`, or NULL when it is not one. */
static sample_buffer *as_buffer(const void *handle, uint32_t device) {
    sample_buffer *b = (sample_buffer *)handle;
    return b && b->magic == SAMPLE_BUFFER_MAGIC && b->device == device ? b : NULL;
}

/* The answer of devices: everything in one block, released as a whole. */
enum { DEVICE_PROPERTY_COUNT = 5 };
typedef struct device_answer {
    kiln_plugin_device devices[SAMPLE_DEVICE_COUNT];
    const kiln_plugin_device *pointers[SAMPLE_DEVICE_COUNT];
    const char *keys[DEVICE_PROPERTY_COUNT];
    const char *values[SAMPLE_DEVICE_COUNT][DEVICE_PROPERTY_COUNT];
    char text[SAMPLE_DEVICE_COUNT][DEVICE_PROPERTY_COUNT - 1][24];
    char names[SAMPLE_DEVICE_COUNT][48];
} device_answer;

static kiln_plugin_error *devices(void *context, kiln_plugin_device_list *out) {
    (void)context;
    if (!out || out->struct_size < sizeof(kiln_plugin_device_list))
        return error(KILN_ERROR_INVALID_ARGUMENT, "devices: out is NULL or its struct_size is too small");
    owner *o = calloc(1, sizeof *o);
    device_answer *a = calloc(1, sizeof *a);
    if (!o || !a) { free(o); free(a); return error(KILN_ERROR_INTERNAL, "devices: out of memory"); }
    o->kind = OWNER_DEVICES;
    o->devices = a;
    static const char *const keys[DEVICE_PROPERTY_COUNT] = {"allocator", "transfers.to_device", "transfers.to_host", "buffers.live", "bytes.live"};
    for (int k = 0; k < DEVICE_PROPERTY_COUNT; k++) a->keys[k] = keys[k];
    for (uint32_t d = 0; d < SAMPLE_DEVICE_COUNT; d++) {
        snprintf(a->names[d], sizeof a->names[d], "sample device %u (host memory)", d);
        snprintf(a->text[d][0], sizeof a->text[d][0], "%llu", (unsigned long long)atomic_load(&transfers_to_device[d]));
        snprintf(a->text[d][1], sizeof a->text[d][1], "%llu", (unsigned long long)atomic_load(&transfers_to_host[d]));
        snprintf(a->text[d][2], sizeof a->text[d][2], "%lld", (long long)atomic_load(&live_buffers[d]));
        snprintf(a->text[d][3], sizeof a->text[d][3], "%lld", (long long)atomic_load(&live_bytes[d]));
        a->values[d][0] = "sample-arena";
        for (int k = 1; k < DEVICE_PROPERTY_COUNT; k++) a->values[d][k] = a->text[d][k - 1];
        kiln_plugin_device *device = &a->devices[d];
        device->struct_size = sizeof *device;
        device->name = a->names[d];
        device->kind = KILN_PLUGIN_DEVICE_SIMULATOR;
        device->memory_bytes = SAMPLE_DEVICE_MEMORY;
        device->property_count = DEVICE_PROPERTY_COUNT;
        device->property_keys = a->keys;
        device->property_values = a->values[d];
        a->pointers[d] = device;
    }
    out->device_count = SAMPLE_DEVICE_COUNT;
    out->devices = a->pointers;
    out->owner = o;
    return NULL;
}

static kiln_plugin_error *buffer_alloc(void *context, uint32_t device, size_t size, void **out_buffer) {
    (void)context;
    if (!out_buffer) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_alloc: out_buffer is NULL");
    if (device >= SAMPLE_DEVICE_COUNT) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_alloc: no device %u (there are %d)", device, SAMPLE_DEVICE_COUNT);
    sample_buffer *b = device_allocate(device, size, NULL);
    if (!b) return error(KILN_ERROR_RUNTIME, "buffer_alloc: device %u cannot hold %zu more bytes", device, size);
    *out_buffer = b;
    return NULL;
}

static void buffer_free(void *context, void *buffer) {
    (void)context;
    sample_buffer *b = buffer;
    if (b && b->magic == SAMPLE_BUFFER_MAGIC) device_release(b);
}

static kiln_plugin_error *buffer_write(void *context, void *buffer, size_t offset, const void *source, size_t size) {
    (void)context;
    sample_buffer *b = buffer;
    if (!b || b->magic != SAMPLE_BUFFER_MAGIC) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_write: not a buffer of this backend");
    if (offset > b->size || size > b->size - offset)
        return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_write: bytes %zu..%zu are outside the %zu-byte buffer", offset, offset + size, b->size);
    if (size && !source) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_write: source is NULL");
    if (size) memcpy((char *)b->data + offset, source, size);
    atomic_fetch_add(&transfers_to_device[b->device], 1);
    return NULL;
}

static kiln_plugin_error *buffer_read(void *context, const void *buffer, size_t offset, void *destination, size_t size) {
    (void)context;
    const sample_buffer *b = buffer;
    if (!b || b->magic != SAMPLE_BUFFER_MAGIC) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_read: not a buffer of this backend");
    if (offset > b->size || size > b->size - offset)
        return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_read: bytes %zu..%zu are outside the %zu-byte buffer", offset, offset + size, b->size);
    if (size && !destination) return error(KILN_ERROR_INVALID_ARGUMENT, "buffer_read: destination is NULL");
    if (size) memcpy(destination, (const char *)b->data + offset, size);
    atomic_fetch_add(&transfers_to_host[b->device], 1);
    return NULL;
}

/* ---- callbacks --------------------------------------------------------------------------------- */

static kiln_plugin_error *claim(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out) {
    (void)context;
    if (!out || out->struct_size < sizeof(kiln_plugin_claim))
        return error(KILN_ERROR_INVALID_ARGUMENT, "claim: out is NULL or its struct_size is too small");
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = decode_graph(graph, &g);
    if (e) return e;
    owner *o = calloc(1, sizeof *o);
    if (o) {
        o->kind = OWNER_CLAIM;
        o->count = g->n_nodes;
        o->supported = calloc(g->n_nodes + 1, 1);
        o->reasons = calloc(g->n_nodes + 1, sizeof(char *));
    }
    if (!o || !o->supported || !o->reasons || !analyze(g, o->supported, o->reasons)) {
        release(NULL, o);
        kiln__ir__graph__free_unpacked(g, NULL);
        return error(KILN_ERROR_INTERNAL, "claim: out of memory");
    }
    out->node_count = g->n_nodes;
    out->supported = o->supported;
    out->reasons = (const char *const *)o->reasons;
    out->owner = o;
    kiln__ir__graph__free_unpacked(g, NULL);
    return NULL;
}

/* The float32 data of initializer `t` as a new constant, or an error. */
static kiln_plugin_error *constant(const Kiln__Ir__Tensor *t, uint32_t reg, bc_constant *c) {
    if (t->dtype != KILN__IR__DATA_TYPE__FLOAT32) return error(KILN_ERROR_UNSUPPORTED, "initializer '%s' is not float32", t->name);
    if (t->n_shape > BC_MAX_RANK) return error(KILN_ERROR_UNSUPPORTED, "initializer '%s' has rank %zu", t->name, t->n_shape);
    c->reg = reg;
    c->shape.rank = (int32_t)t->n_shape;
    for (size_t d = 0; d < t->n_shape; d++) c->shape.dims[d] = t->shape[d];
    int64_t n = bc_element_count(&c->shape);
    if (n < 0 || t->data_case != KILN__IR__TENSOR__DATA_RAW || t->raw.len != (size_t)n * 4)
        return error(KILN_ERROR_INVALID_MODEL, "initializer '%s' has no inline float32 data matching its shape", t->name);
    c->data = malloc(n ? (size_t)n * 4 : 4);
    if (!c->data) return error(KILN_ERROR_INTERNAL, "out of memory");
    if (n) memcpy(c->data, t->raw.data, (size_t)n * 4); /* little-endian host assumed, as the IR is */
    return NULL;
}

static int64_t int_attribute(const Kiln__Ir__Node *node, const char *name, int64_t fallback) {
    const Kiln__Ir__Attribute *a = attribute(node, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_I ? a->i : fallback;
}

static float float_attribute(const Kiln__Ir__Node *node, const char *name, float fallback) {
    const Kiln__Ir__Attribute *a = attribute(node, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_F ? a->f : fallback;
}

static void ints_attribute(const Kiln__Ir__Node *node, const char *name, int64_t *into, size_t count, int64_t fallback) {
    const Kiln__Ir__Attribute *a = attribute(node, name);
    for (size_t i = 0; i < count; i++)
        into[i] = a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_INTS && a->ints && a->ints->n_values == count ? a->ints->values[i] : fallback;
}

/* Builds the bytecode program of `g` (every node supported). */
static kiln_plugin_error *lower(const Kiln__Ir__Graph *g, bc_program *p) {
    memset(p, 0, sizeof *p);
    name_map regs, initializers;
    size_t capacity = g->n_inputs + g->n_initializers + g->n_nodes + 8;
    kiln_plugin_error *e = NULL;
    if (!map_init(&regs, capacity) || !map_init(&initializers, g->n_initializers + 1)) {
        map_free(&regs);
        return error(KILN_ERROR_INTERNAL, "out of memory");
    }
    for (size_t i = 0; i < g->n_initializers; i++) map_set(&initializers, g->initializers[i]->name, (int)i);
    p->inputs = calloc(g->n_inputs + 1, sizeof(uint32_t));
    p->outputs = calloc(g->n_outputs + 1, sizeof(uint32_t));
    p->constants = calloc(g->n_initializers + 1, sizeof(bc_constant));
    p->instructions = calloc(g->n_nodes + 1, sizeof(bc_instruction));
    if (!p->inputs || !p->outputs || !p->constants || !p->instructions) { e = error(KILN_ERROR_INTERNAL, "out of memory"); goto done; }
    p->input_count = (uint32_t)g->n_inputs;
    for (size_t i = 0; i < g->n_inputs; i++) {
        int existing;
        if (map_get(&regs, g->inputs[i]->name, &existing)) { e = error(KILN_ERROR_INVALID_MODEL, "graph input '%s' is listed twice", g->inputs[i]->name); goto done; }
        p->inputs[i] = p->register_count;
        map_set(&regs, g->inputs[i]->name, (int)p->register_count++);
    }
    /* The register holding `name`: an input, an earlier result, or an initializer made a constant now. */
#define REGISTER_OF(name, out_reg)                                                                           \
    do {                                                                                                     \
        int found_, init_;                                                                                   \
        if (map_get(&regs, (name), &found_)) { (out_reg) = (uint32_t)found_; break; }                        \
        if (!map_get(&initializers, (name), &init_)) {                                                       \
            e = error(KILN_ERROR_INVALID_MODEL, "value '%s' is used but never defined", (name));            \
            goto done;                                                                                       \
        }                                                                                                    \
        if ((e = constant(g->initializers[init_], p->register_count, &p->constants[p->constant_count]))) goto done; \
        p->constant_count++;                                                                                 \
        map_set(&regs, (name), (int)p->register_count);                                                      \
        (out_reg) = p->register_count++;                                                                     \
    } while (0)
    for (size_t i = 0; i < g->n_nodes; i++) {
        const Kiln__Ir__Node *node = g->nodes[i];
        bc_instruction *in = &p->instructions[p->instruction_count++];
        const char *op = node->op;
        in->opcode = strcmp(op, "Relu") == 0 ? BC_RELU : strcmp(op, "Add") == 0 ? BC_ADD : strcmp(op, "MatMul") == 0 ? BC_MATMUL
                   : strcmp(op, "Gemm") == 0 ? BC_GEMM : BC_CONV;
        in->input_count = (uint32_t)node->n_inputs;
        for (size_t k = 0; k < node->n_inputs; k++) {
            if (!node->inputs[k][0]) { in->inputs[k] = BC_NO_REGISTER; continue; }
            REGISTER_OF(node->inputs[k], in->inputs[k]);
        }
        if (in->opcode == BC_GEMM) {
            in->params[0] = int_attribute(node, "transA", 0);
            in->params[1] = int_attribute(node, "transB", 0);
            in->fparams[0] = float_attribute(node, "alpha", 1);
            in->fparams[1] = float_attribute(node, "beta", 1);
        } else if (in->opcode == BC_CONV) {
            in->params[0] = int_attribute(node, "group", 1);
            ints_attribute(node, "strides", &in->params[1], 2, 1);
            ints_attribute(node, "pads", &in->params[3], 4, 0);
            ints_attribute(node, "dilations", &in->params[7], 2, 1);
            /* ONNX pads are (begin_h, begin_w, end_h, end_w): reorder into (top, left, bottom, right). */
            int64_t begin_h = in->params[3], begin_w = in->params[4], end_h = in->params[5], end_w = in->params[6];
            in->params[3] = begin_h; in->params[4] = begin_w; in->params[5] = end_h; in->params[6] = end_w;
        }
        int existing;
        if (map_get(&regs, node->outputs[0], &existing)) { e = error(KILN_ERROR_INVALID_MODEL, "value '%s' is defined twice", node->outputs[0]); goto done; }
        in->output = p->register_count;
        map_set(&regs, node->outputs[0], (int)p->register_count++);
    }
    p->output_count = (uint32_t)g->n_outputs;
    for (size_t i = 0; i < g->n_outputs; i++) REGISTER_OF(g->outputs[i]->name, p->outputs[i]);
#undef REGISTER_OF
done:
    map_free(&regs);
    map_free(&initializers);
    if (e) bc_free(p);
    return e;
}

static kiln_plugin_error *compile(void *context, const kiln_plugin_bytes *graph, const kiln_plugin_compile_options *options,
                                  kiln_plugin_payload *out) {
    (void)context;
    if (options && options->struct_size >= offsetof(kiln_plugin_compile_options, target) + sizeof(options->target) &&
        options->target && strcmp(options->target, "host") != 0 && strcmp(options->target, "sample-ksb1") != 0)
        return error(KILN_ERROR_UNSUPPORTED, "compile: target '%s' is not one of this backend's (host, sample-ksb1)", options->target);
    if (!out || out->struct_size < sizeof(kiln_plugin_payload))
        return error(KILN_ERROR_INVALID_ARGUMENT, "compile: out is NULL or its struct_size is too small");
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = decode_graph(graph, &g);
    if (e) return e;
    uint8_t *supported = calloc(g->n_nodes + 1, 1);
    char **reasons = calloc(g->n_nodes + 1, sizeof(char *));
    if (!supported || !reasons || !analyze(g, supported, reasons)) e = error(KILN_ERROR_INTERNAL, "compile: out of memory");
    for (size_t i = 0; !e && i < g->n_nodes; i++)
        if (!supported[i])
            e = error(KILN_ERROR_UNSUPPORTED, "compile: node %zu ('%s', %s) is not claimed: %s", i, g->nodes[i]->name,
                      g->nodes[i]->op, reasons[i] ? reasons[i] : "?");
    for (size_t i = 0; reasons && i < g->n_nodes; i++) free(reasons[i]);
    free(reasons);
    free(supported);
    bc_program program;
    if (!e) e = lower(g, &program);
    kiln__ir__graph__free_unpacked(g, NULL);
    if (e) return e;
    owner *o = calloc(1, sizeof *o);
    if (!o) { bc_free(&program); return error(KILN_ERROR_INTERNAL, "compile: out of memory"); }
    o->kind = OWNER_PAYLOAD;
    bc_encode(&program, &o->payload);
    bc_free(&program);
    if (o->payload.failed) { release(NULL, o); return error(KILN_ERROR_INTERNAL, "compile: out of memory"); }
    out->data = o->payload.data;
    out->size = o->payload.size;
    out->compat = SAMPLE_COMPAT;
    out->owner = o;
    return NULL;
}

static kiln_plugin_error *check(void *context, const char *compat) {
    (void)context;
    if (!compat) return error(KILN_ERROR_INVALID_ARGUMENT, "check: compat is NULL");
    if (strcmp(compat, SAMPLE_COMPAT) != 0)
        return error(KILN_ERROR_VERSION_MISMATCH, SAMPLE_BACKEND_NAME " " SAMPLE_VERSION " loads payloads '" SAMPLE_COMPAT "', not '%s'", compat);
    return NULL;
}

/* A loaded payload: the program, the device it runs on, and what each instruction cost in the last
 * successful execute (for profile; guarded by `lock`, since executes may run concurrently). */
typedef struct sample_executable {
    bc_program program;     /* first: unload frees through it */
    uint32_t device;
    pthread_mutex_t lock;
    uint64_t *cycles;       /* program.instruction_count entries */
    int has_run;
} sample_executable;

static kiln_plugin_error *load_with_options(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                                            const kiln_plugin_load_options *options, void **out_executable) {
    (void)context;
    uint32_t device = 0;
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_load_options, device, options->struct_size)) device = options->device;
    if (device >= SAMPLE_DEVICE_COUNT) return error(KILN_ERROR_INVALID_ARGUMENT, "load: no device %u (there are %d)", device, SAMPLE_DEVICE_COUNT);
    if (!out_executable) return error(KILN_ERROR_INVALID_ARGUMENT, "load: out_executable is NULL");
    if (!payload || payload->struct_size < sizeof(kiln_plugin_bytes)) return error(KILN_ERROR_INVALID_ARGUMENT, "load: payload missing");
    sample_executable *executable = calloc(1, sizeof *executable);
    if (!executable) return error(KILN_ERROR_INTERNAL, "load: out of memory");
    executable->device = device;
    bc_program *program = &executable->program;
    char why[256];
    if (bc_decode(payload->data, payload->size, program, why, sizeof why)) {
        free(executable);
        return error(KILN_ERROR_INVALID_ARTIFACT, "load: %s", why);
    }
    executable->cycles = calloc(program->instruction_count + 1, sizeof(uint64_t));
    if (!executable->cycles) { bc_free(program); free(executable); return error(KILN_ERROR_INTERNAL, "load: out of memory"); }
    pthread_mutex_init(&executable->lock, NULL);
    if (graph) { /* the payload must be for a graph with as many inputs and outputs */
        Kiln__Ir__Graph *g;
        kiln_plugin_error *e = decode_graph(graph, &g);
        if (!e && (g->n_inputs != program->input_count || g->n_outputs != program->output_count))
            e = error(KILN_ERROR_INVALID_ARTIFACT, "load: the payload has %u inputs and %u outputs, the graph %zu and %zu",
                      program->input_count, program->output_count, g->n_inputs, g->n_outputs);
        if (g) kiln__ir__graph__free_unpacked(g, NULL);
        if (e) { pthread_mutex_destroy(&executable->lock); free(executable->cycles); bc_free(program); free(executable); return e; }
    }
    *out_executable = executable;
    return NULL;
}

static kiln_plugin_error *load(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph, void **out_executable) {
    return load_with_options(context, payload, graph, NULL, out_executable);
}

static kiln_plugin_error *execute(void *context, void *executable, const kiln_tensor *inputs, size_t input_count,
                                  kiln_tensor *outputs, size_t output_count) {
    (void)context;
    if (!executable) return error(KILN_ERROR_INVALID_ARGUMENT, "execute: executable is NULL");
    sample_executable *x = executable;
    const bc_program *p = &x->program;
    const uint32_t device = x->device;
    if (input_count != p->input_count || output_count != p->output_count)
        return error(KILN_ERROR_INVALID_ARGUMENT, "execute: %zu inputs and %zu outputs given, the program takes %u and %u",
                     input_count, output_count, p->input_count, p->output_count);
    if ((input_count && !inputs) || (output_count && !outputs)) return error(KILN_ERROR_INVALID_ARGUMENT, "execute: NULL tensor array");
    bc_tensor *in = calloc(input_count + 1, sizeof(bc_tensor));
    bc_tensor *results = calloc(output_count + 1, sizeof(bc_tensor));
    sample_buffer **staged = calloc(input_count + 1, sizeof(sample_buffer *)); /* host inputs placed on the device */
    kiln_plugin_error *e = NULL;
    if (!in || !results || !staged) e = error(KILN_ERROR_INTERNAL, "execute: out of memory");
    for (size_t i = 0; !e && i < input_count; i++) {
        const kiln_tensor *t = &inputs[i];
        if (t->dtype.code != KILN_DTYPE_FLOAT || t->dtype.bits != 32 || t->dtype.lanes != 1)
            e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is not float32 (code %u, bits %u)", i, t->dtype.code, t->dtype.bits);
        else if (t->ndim < 0 || t->ndim > BC_MAX_RANK || (t->ndim > 0 && !t->shape))
            e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has rank %d (at most %d)", i, t->ndim, BC_MAX_RANK);
        else if (t->strides || t->byte_offset)
            e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is not compact", i);
        if (e) break;
        in[i].shape.rank = t->ndim;
        for (int32_t d = 0; d < t->ndim; d++) in[i].shape.dims[d] = t->shape[d];
        int64_t n = bc_element_count(&in[i].shape);
        if (n < 0) { e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has an invalid shape", i); break; }
        if (t->device.device_type == KILN_PLUGIN_DEVICE_BUFFER) {
            /* Already in this device's memory: used where it is. */
            sample_buffer *b = as_buffer(t->data, device);
            if (!b || t->device.device_id != (int32_t)device)
                e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is not a buffer of device %u", i, device);
            else if (b->size < (size_t)n * 4)
                e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu's buffer holds %zu bytes, its shape needs %lld", i, b->size, (long long)n * 4);
            else in[i].data = b->data;
        } else if (t->device.device_type == KILN_DEVICE_CPU) {
            /* In host memory: placed on the device first (one host-to-device transfer). */
            if (n > 0 && !t->data) { e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu has NULL data", i); break; }
            staged[i] = device_allocate(device, (size_t)n * 4, NULL);
            if (!staged[i]) { e = error(KILN_ERROR_RUNTIME, "execute: device %u is out of memory", device); break; }
            if (n) memcpy(staged[i]->data, t->data, (size_t)n * 4);
            atomic_fetch_add(&transfers_to_device[device], 1);
            in[i].data = staged[i]->data;
        } else {
            e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: input %zu is on device type %d", i, t->device.device_type);
        }
    }
    char why[256];
    uint64_t *cycles = e ? NULL : calloc(p->instruction_count + 1, sizeof(uint64_t));
    if (!e && !cycles) e = error(KILN_ERROR_INTERNAL, "execute: out of memory");
    if (!e && bc_run_counted(p, in, results, cycles, why, sizeof why)) e = error(KILN_ERROR_RUNTIME, "execute: %s", why);
    if (!e) {
        pthread_mutex_lock(&x->lock);
        memcpy(x->cycles, cycles, p->instruction_count * sizeof(uint64_t));
        x->has_run = 1;
        pthread_mutex_unlock(&x->lock);
    }
    free(cycles);
    for (size_t i = 0; !e && i < output_count; i++) {
        int64_t n = bc_element_count(&results[i].shape);
        if (!outputs[i].shape) { e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: output %zu has no shape array", i); break; }
        if (outputs[i].device.device_type == KILN_PLUGIN_DEVICE_BUFFER) {
            /* Wanted on the device: the result already is in device memory; the buffer adopts it. */
            if (outputs[i].device.device_id != (int32_t)device) {
                e = error(KILN_ERROR_INVALID_ARGUMENT, "execute: output %zu is wanted on device %d, the executable runs on %u", i, outputs[i].device.device_id, device);
                break;
            }
            sample_buffer *b = device_allocate(device, (size_t)n * 4, results[i].data);
            if (!b) { e = error(KILN_ERROR_RUNTIME, "execute: device %u is out of memory", device); break; }
            results[i].owned = 0;
            results[i].data = NULL;
            outputs[i].data = b; /* the host owns the buffer from here */
        } else {
            /* Wanted in host memory: one device-to-host transfer. */
            void *data = host->alloc(host->host_context, (size_t)n * 4, 64);
            if (!data) { e = error(KILN_ERROR_INTERNAL, "execute: out of memory"); break; }
            if (n) memcpy(data, results[i].data, (size_t)n * 4);
            atomic_fetch_add(&transfers_to_host[device], 1);
            outputs[i].data = data; /* the host owns it from here */
        }
        outputs[i].dtype.code = KILN_DTYPE_FLOAT;
        outputs[i].dtype.bits = 32;
        outputs[i].dtype.lanes = 1;
        outputs[i].ndim = results[i].shape.rank;
        for (int32_t d = 0; d < results[i].shape.rank; d++) outputs[i].shape[d] = results[i].shape.dims[d];
    }
    for (size_t i = 0; results && i < output_count; i++) bc_tensor_release(&results[i]);
    for (size_t i = 0; staged && i < input_count; i++) device_release(staged[i]);
    free(staged);
    free(results);
    free(in);
    return e;
}

static void unload(void *context, void *executable) {
    (void)context;
    if (!executable) return;
    sample_executable *x = executable;
    pthread_mutex_destroy(&x->lock);
    free(x->cycles);
    bc_free(executable);
    free(executable);
}

#if SAMPLE_ABI_MINOR >= 4
/* The assumed clock of the sample device: its cycles are a cost model (bytecode.h), not a measurement. */
#define SAMPLE_CLOCK_HZ 1.0e9

/* (1.4) The last execute's instructions as profile steps, one after another on the device's one core. */
static kiln_plugin_error *profile(void *context, void *executable, kiln_plugin_profile *out) {
    (void)context;
    if (!executable) return error(KILN_ERROR_INVALID_ARGUMENT, "profile: executable is NULL");
    if (!out || out->struct_size < sizeof(kiln_plugin_profile)) return error(KILN_ERROR_INVALID_ARGUMENT, "profile: out is NULL or its struct_size is too small");
    sample_executable *x = executable;
    const bc_program *p = &x->program;
    owner *o = calloc(1, sizeof *o);
    if (o) {
        o->kind = OWNER_PROFILE;
        o->count = p->instruction_count;
        o->steps = calloc(o->count + 1, sizeof *o->steps);
        o->names = calloc(o->count + 1, sizeof *o->names);
    }
    if (!o || !o->steps || !o->names) { release(NULL, o); return error(KILN_ERROR_INTERNAL, "profile: out of memory"); }
    pthread_mutex_lock(&x->lock);
    int has_run = x->has_run;
    uint64_t at = 0;
    for (uint32_t i = 0; i < p->instruction_count; i++) {
        snprintf(o->names[i], sizeof o->names[i], "%u %s", i, bc_opcode_name(p->instructions[i].opcode));
        o->steps[i].name = o->names[i];
        o->steps[i].unit = "core";
        o->steps[i].start_cycle = at;
        o->steps[i].cycles = x->cycles[i];
        at += x->cycles[i];
    }
    pthread_mutex_unlock(&x->lock);
    if (!has_run) { release(NULL, o); return error(KILN_ERROR_INVALID_ARGUMENT, "profile: the executable has not run"); }
    out->clock_hz = SAMPLE_CLOCK_HZ;
    out->total_cycles = at;
    out->step_count = o->count;
    out->steps = o->steps;
    out->owner = o;
    return NULL;
}
#endif

/* ---- the plugin -------------------------------------------------------------------------------- */

static const char *const targets[] = {"sample-ksb1"};

#if SAMPLE_ABI_MINOR >= 2
static const kiln_plugin_backend backend = {
    .struct_size = sizeof(kiln_plugin_backend),
    .name = SAMPLE_BACKEND_NAME,
    .vendor = "Kiln sample vendor",
    .version = SAMPLE_VERSION,
    /* execute keeps no state in the program; values may stay in device buffers between partitions */
    .flags = KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE | KILN_PLUGIN_BACKEND_DEVICE_BUFFERS,
    .context = NULL,
    .claim = claim,
    .compile = compile,
    .check = check,
    .load = load,
    .execute = execute,
    .unload = unload,
    .release = release,
    .devices = devices,
    .load_with_options = load_with_options,
    .target_count = 1,
    .targets = targets,
    .buffer_alloc = buffer_alloc,
    .buffer_free = buffer_free,
    .buffer_write = buffer_write,
    .buffer_read = buffer_read,
#if SAMPLE_ABI_MINOR >= 4
    .profile = profile,
#endif
#if SAMPLE_ABI_MINOR >= 5
    .min_group_size = SAMPLE_MIN_GROUP_SIZE,
#endif
};
#else
/* What a plugin built against kiln_plugin.h 1.0 or 1.1 declared: the struct ended at release. The fields
 * after it are poison, never to be read: a host that reads past struct_size calls address 1. */
#define POISON(type) ((type)(uintptr_t)1)
static const kiln_plugin_backend backend = {
    .struct_size = offsetof(kiln_plugin_backend, release) + sizeof(void (*)(void *, void *)),
    .name = SAMPLE_BACKEND_NAME,
    .vendor = "Kiln sample vendor",
    .version = SAMPLE_VERSION,
    .flags = KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE,
    .context = NULL,
    .claim = claim,
    .compile = compile,
    .check = check,
    .load = load,
    .execute = execute,
    .unload = unload,
    .release = release,
    .devices = POISON(kiln_plugin_error *(*)(void *, kiln_plugin_device_list *)),
    .load_with_options = POISON(kiln_plugin_error *(*)(void *, const kiln_plugin_bytes *, const kiln_plugin_bytes *,
                                                       const kiln_plugin_load_options *, void **)),
    .target_count = 1000000,
    .targets = POISON(const char *const *),
};
/* Used only by 1.2 builds. */
__attribute__((used)) static void *const unused_in_old_builds[] = {(void *)devices, (void *)buffer_alloc, (void *)buffer_free, (void *)buffer_write,
                                             (void *)buffer_read, (void *)load_with_options, (void *)targets};
#endif

static const kiln_plugin_backend *const backends[] = {&backend};

static void plugin_shutdown(void *context) {
    (void)context;
    host = NULL;
}

/* The header as built; the entry answers a copy whose abi_minor is the negotiated one. */
static const kiln_plugin_header built_header = {
    .struct_size = sizeof(kiln_plugin_header),
    .abi_major = SAMPLE_HEADER_ABI_MAJOR,
    .abi_minor = SAMPLE_ABI_MINOR,
    .name = SAMPLE_PLUGIN_NAME,
    .vendor = "Kiln sample vendor",
    .version = SAMPLE_VERSION,
    .backend_count = 1,
    .backends = backends,
    .context = NULL,
    .shutdown = plugin_shutdown,
};

KILN_PLUGIN_EXPORT kiln_plugin_error *KILN_PLUGIN_QUERY_NAME(SAMPLE_ABI_MAJOR)(const kiln_plugin_host *services,
                                                                              const kiln_plugin_header **out_header) {
    if (!services || services->struct_size < sizeof(kiln_plugin_host) || !services->error_create || !services->alloc ||
        !services->free)
        return NULL; /* without error_create there is no way to report; the host sees no header */
    host = services;
    /* Negotiation: this plugin speaks SAMPLE_ABI_MAJOR.SAMPLE_MIN_HOST_MINOR up to .SAMPLE_ABI_MINOR and
     * answers the newest version both sides speak. Against an older host it answers that host's minor:
     * the host then reads only the fields it knows and never calls the newer callbacks. */
    uint32_t minor = SAMPLE_ABI_MINOR;
    const uint32_t min_host_minor = SAMPLE_MIN_HOST_MINOR;
    if (services->abi_max_major == SAMPLE_ABI_MAJOR && services->abi_max_minor < minor) minor = services->abi_max_minor;
    int speaks_major = services->abi_min_major <= SAMPLE_ABI_MAJOR && services->abi_max_major >= SAMPLE_ABI_MAJOR;
    if (!speaks_major || (services->abi_max_major == SAMPLE_ABI_MAJOR && minor < min_host_minor))
        return error(KILN_ERROR_VERSION_MISMATCH, SAMPLE_PLUGIN_NAME " speaks plugin ABI %d.%d to %d.%d; the host speaks %u.%u to %u.%u",
                     SAMPLE_ABI_MAJOR, SAMPLE_MIN_HOST_MINOR, SAMPLE_ABI_MAJOR, SAMPLE_ABI_MINOR, services->abi_min_major,
                     services->abi_min_minor, services->abi_max_major, services->abi_max_minor);
#ifdef SAMPLE_HEADER_ABI_MINOR
    minor = SAMPLE_HEADER_ABI_MINOR;
#endif
    if (!out_header) return error(KILN_ERROR_INVALID_ARGUMENT, "out_header is NULL");
    static kiln_plugin_header header;
    header = built_header;
    header.abi_minor = minor;
    *out_header = &header;
    return NULL;
}
