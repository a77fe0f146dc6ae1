/* ak_plugin.c — the shared plugin-ABI glue of the accelerator sample plugins (ak_plugin.h). */
#include "ak_plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const kiln_plugin_host *host;

void ak_set_host(const kiln_plugin_host *h) { host = h; }

const kiln_plugin_host *ak_host(void) { return host; }

kiln_plugin_error *ak_error(int32_t code, const char *format, ...) {
    char message[600];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    return host->error_create(host->host_context, code, message);
}

void ak_log_debug(const char *line) {
    if (host && host->log) host->log(host->host_context, KILN_PLUGIN_LOG_DEBUG, line);
}

/* ---- the graph ---- */

kiln_plugin_error *ak_decode_graph(const kiln_plugin_bytes *bytes, Kiln__Ir__Graph **out) {
    if (!bytes || bytes->struct_size < sizeof(kiln_plugin_bytes)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes missing or struct_size too small");
    if (bytes->format != KILN_PLUGIN_FORMAT_IR_GRAPH) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes have format %u, expected KILN_PLUGIN_FORMAT_IR_GRAPH", bytes->format);
    if (!bytes->data && bytes->size > 0) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "graph bytes: NULL data");
    static const uint8_t empty[1] = {0};
    *out = kiln__ir__graph__unpack(NULL, bytes->size, bytes->size ? bytes->data : empty);
    if (!*out) return ak_error(KILN_ERROR_INVALID_MODEL, "graph bytes (%zu) are not a valid kiln.ir.Graph", bytes->size);
    return NULL;
}

const Kiln__Ir__Tensor *ak_initializer(const Kiln__Ir__Graph *g, const char *name) {
    for (size_t i = 0; i < g->n_initializers; i++)
        if (strcmp(g->initializers[i]->name, name) == 0) return g->initializers[i];
    return NULL;
}

const Kiln__Ir__Attribute *ak_attribute(const Kiln__Ir__Node *node, const char *name) {
    for (size_t i = 0; i < node->n_attributes; i++)
        if (strcmp(node->attributes[i]->name, name) == 0) return node->attributes[i];
    return NULL;
}

int64_t ak_int_attr(const Kiln__Ir__Node *node, const char *name, int64_t fallback) {
    const Kiln__Ir__Attribute *a = ak_attribute(node, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_I ? a->i : fallback;
}

float ak_float_attr(const Kiln__Ir__Node *node, const char *name, float fallback) {
    const Kiln__Ir__Attribute *a = ak_attribute(node, name);
    return a && a->value_case == KILN__IR__ATTRIBUTE__VALUE_F ? a->f : fallback;
}

ak_shape ak_graph_shape(const Kiln__Ir__Graph *g, const char *name, int search_outputs) {
    ak_shape s = {0, 0, 0, {0}};
    const Kiln__Ir__Tensor *t = ak_initializer(g, name);
    if (t) {
        s.dtype = t->dtype;
        s.known = t->n_shape <= AK_MAX_RANK;
        s.rank = (uint32_t)t->n_shape;
        for (size_t d = 0; s.known && d < t->n_shape; d++) s.dims[d] = t->shape[d];
        return s;
    }
    const Kiln__Ir__Value *const *lists[3] = {(const Kiln__Ir__Value *const *)g->inputs, (const Kiln__Ir__Value *const *)g->value_types,
                                              (const Kiln__Ir__Value *const *)g->outputs};
    size_t counts[3] = {g->n_inputs, g->n_value_types, search_outputs ? g->n_outputs : 0};
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            const Kiln__Ir__Value *v = lists[l][i];
            if (strcmp(v->name, name) != 0) continue;
            if (!v->type || v->type->value_case != KILN__IR__TYPE__VALUE_TENSOR || !v->type->tensor) continue;
            const Kiln__Ir__TensorType *tt = v->type->tensor;
            s.dtype = tt->dtype;
            if (!tt->has_shape || tt->n_dims > AK_MAX_RANK) return s;
            s.rank = (uint32_t)tt->n_dims;
            s.known = 1;
            for (size_t d = 0; d < tt->n_dims; d++) {
                if (!tt->dims[d] || tt->dims[d]->value_case != KILN__IR__DIM__VALUE_FIXED || tt->dims[d]->fixed < 0) { s.known = 0; break; }
                s.dims[d] = tt->dims[d]->fixed;
            }
            return s;
        }
    return s;
}

/* ---- owners ---- */

ak_owner *ak_owner_new(int kind) {
    ak_owner *o = calloc(1, sizeof *o);
    if (o) o->kind = kind;
    return o;
}

void ak_release(void *context, void *token) {
    (void)context;
    ak_owner *o = token;
    if (!o) return;
    for (size_t i = 0; o->reasons && i < o->count; i++) free(o->reasons[i]);
    free(o->reasons);
    free(o->supported);
    free(o->payload.data);
    free(o->devices);
    free(o->steps);
    free(o->text);
    free(o);
}

char *ak_strdup(const char *text) {
    size_t n = strlen(text) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, text, n);
    return copy;
}

/* ---- answers ---- */

kiln_plugin_error *ak_claim(const kiln_plugin_bytes *graph, kiln_plugin_claim *out, ak_analyze_fn analyze) {
    if (!out || out->struct_size < sizeof(kiln_plugin_claim)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "claim: out is NULL or its struct_size is too small");
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = ak_decode_graph(graph, &g);
    if (e) return e;
    ak_owner *o = ak_owner_new(AK_OWNER_CLAIM);
    if (o) {
        o->count = g->n_nodes;
        o->supported = calloc(g->n_nodes + 1, 1);
        o->reasons = calloc(g->n_nodes + 1, sizeof(char *));
    }
    if (!o || !o->supported || !o->reasons || !analyze(g, o->supported, o->reasons)) {
        ak_release(NULL, o);
        kiln__ir__graph__free_unpacked(g, NULL);
        return ak_error(KILN_ERROR_INTERNAL, "claim: out of memory");
    }
    out->node_count = g->n_nodes;
    out->supported = o->supported;
    out->reasons = (const char *const *)o->reasons;
    out->owner = o;
    kiln__ir__graph__free_unpacked(g, NULL);
    return NULL;
}

kiln_plugin_error *ak_payload_answer(kiln_plugin_payload *out, ak_owner *o, const char *compat) {
    if (!o || o->payload.failed) { ak_release(NULL, o); return ak_error(KILN_ERROR_INTERNAL, "compile: out of memory"); }
    out->data = o->payload.data;
    out->size = o->payload.size;
    out->compat = compat ? compat : o->compat;
    out->owner = o;
    return NULL;
}

kiln_plugin_error *ak_check_compat(const char *compat, const char *want, const char *backend) {
    if (!compat) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "check: compat is NULL");
    if (strcmp(compat, want) != 0) return ak_error(KILN_ERROR_VERSION_MISMATCH, "%s loads payloads '%s', not '%s'", backend, want, compat);
    return NULL;
}

/* The storage of one device answer (owned by an ak_owner). */
typedef struct device_answer {
    kiln_plugin_device device;
    const kiln_plugin_device *pointers[1];
    const char *keys[AK_MAX_DEVICE_PROPERTIES];
    const char *values[AK_MAX_DEVICE_PROPERTIES];
    char text[AK_MAX_DEVICE_PROPERTIES][24];
} device_answer;

kiln_plugin_error *ak_device_answer(kiln_plugin_device_list *out, const char *name, uint64_t memory_bytes, size_t count,
                                    const char *const *keys, const char *const *fixed, const uint64_t *live) {
    if (!out || out->struct_size < sizeof(kiln_plugin_device_list)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "devices: out is NULL or its struct_size is too small");
    if (count > AK_MAX_DEVICE_PROPERTIES) return ak_error(KILN_ERROR_INTERNAL, "devices: %zu properties (at most %d)", count, AK_MAX_DEVICE_PROPERTIES);
    ak_owner *o = ak_owner_new(AK_OWNER_DEVICES);
    device_answer *a = calloc(1, sizeof *a);
    if (!o || !a) { free(o); free(a); return ak_error(KILN_ERROR_INTERNAL, "devices: out of memory"); }
    o->devices = a;
    for (size_t k = 0; k < count; k++) {
        a->keys[k] = keys[k];
        if (fixed[k]) a->values[k] = fixed[k];
        else {
            snprintf(a->text[k], sizeof a->text[k], "%llu", (unsigned long long)live[k]);
            a->values[k] = a->text[k];
        }
    }
    a->device.struct_size = sizeof a->device;
    a->device.name = name;
    a->device.kind = KILN_PLUGIN_DEVICE_SIMULATOR;
    a->device.memory_bytes = memory_bytes;
    a->device.property_count = count;
    a->device.property_keys = a->keys;
    a->device.property_values = a->values;
    a->pointers[0] = &a->device;
    out->device_count = 1;
    out->devices = a->pointers;
    out->owner = o;
    return NULL;
}

kiln_plugin_error *ak_load_arguments(const kiln_plugin_bytes *payload, const kiln_plugin_load_options *options, void **out_executable) {
    uint32_t device = 0;
    if (options && KILN_PLUGIN_HAS_FIELD(kiln_plugin_load_options, device, options->struct_size)) device = options->device;
    if (device != 0) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "load: no device %u (there is 1)", device);
    if (!out_executable) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "load: out_executable is NULL");
    if (!payload || payload->struct_size < sizeof(kiln_plugin_bytes)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "load: payload missing");
    if (!payload->data && payload->size) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "load: payload data is NULL");
    return NULL;
}

kiln_plugin_error *ak_check_graph_io(const kiln_plugin_bytes *graph, long want_inputs, size_t want_outputs) {
    if (!graph) return NULL;
    Kiln__Ir__Graph *g;
    kiln_plugin_error *e = ak_decode_graph(graph, &g);
    if (e) return e;
    if (want_inputs >= 0 && (g->n_inputs != (size_t)want_inputs || g->n_outputs != want_outputs))
        e = ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: the payload has %ld inputs and %zu outputs, the graph %zu and %zu", want_inputs, want_outputs, g->n_inputs, g->n_outputs);
    else if (want_inputs < 0 && g->n_outputs != want_outputs)
        e = ak_error(KILN_ERROR_INVALID_ARTIFACT, "load: the payload has %zu outputs, the graph %zu", want_outputs, g->n_outputs);
    kiln__ir__graph__free_unpacked(g, NULL);
    return e;
}

kiln_plugin_error *ak_execute_arguments(const void *executable, size_t input_count, size_t output_count, size_t want_inputs,
                                        size_t want_outputs, const kiln_tensor *inputs, const kiln_tensor *outputs) {
    if (!executable) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: executable is NULL");
    if (input_count != want_inputs || output_count != want_outputs)
        return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: %zu inputs and %zu outputs given, the program takes %zu and %zu", input_count, output_count, want_inputs, want_outputs);
    if ((input_count && !inputs) || (output_count && !outputs)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: NULL tensor array");
    return NULL;
}

kiln_plugin_error *ak_output_alloc(kiln_tensor *out, size_t index, size_t bytes, void **data) {
    if (!out->shape) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "execute: output %zu has no shape array", index);
    if (out->device.device_type != KILN_DEVICE_CPU) return ak_error(KILN_ERROR_UNSUPPORTED, "execute: output %zu is wanted on a device; this backend has no device buffers", index);
    *data = host->alloc(host->host_context, bytes, 64);
    if (!*data) return ak_error(KILN_ERROR_INTERNAL, "execute: out of memory");
    return NULL;
}

kiln_plugin_error *ak_output(kiln_tensor *out, size_t index, const void *data, size_t bytes, uint8_t code, uint8_t bits,
                             uint32_t rank, const int64_t *dims) {
    void *copy;
    kiln_plugin_error *e = ak_output_alloc(out, index, bytes, &copy);
    if (e) return e;
    if (bytes) memcpy(copy, data, bytes);
    out->data = copy; /* the host owns it from here */
    out->dtype.code = code;
    out->dtype.bits = bits;
    out->dtype.lanes = 1;
    out->ndim = (int32_t)rank;
    for (uint32_t d = 0; d < rank; d++) out->shape[d] = dims[d];
    return NULL;
}

/* ---- profiles ---- */

void ak_profile_init(ak_profile *p) {
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->lock, NULL);
}

void ak_profile_destroy(ak_profile *p) {
    free(p->steps);
    pthread_mutex_destroy(&p->lock);
}

void ak_profile_store(ak_profile *p, ak_step *steps, size_t count, uint64_t total_cycles, double clock_hz) {
    pthread_mutex_lock(&p->lock);
    ak_step *old = p->steps;
    p->steps = steps;
    p->count = count;
    p->total_cycles = total_cycles;
    p->clock_hz = clock_hz;
    p->has_run = 1;
    pthread_mutex_unlock(&p->lock);
    free(old);
}

kiln_plugin_error *ak_profile_answer(ak_profile *p, kiln_plugin_profile *out) {
    if (!p) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "profile: executable is NULL");
    if (!out || out->struct_size < sizeof(kiln_plugin_profile)) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "profile: out is NULL or its struct_size is too small");
    pthread_mutex_lock(&p->lock);
    if (!p->has_run) { pthread_mutex_unlock(&p->lock); return ak_error(KILN_ERROR_INVALID_ARGUMENT, "profile: the executable has not run"); }
    if (p->count > 1048576) { pthread_mutex_unlock(&p->lock); return ak_error(KILN_ERROR_UNSUPPORTED, "profile: the run has %zu steps (at most 1048576)", p->count); }
    size_t text = 0;
    for (size_t i = 0; i < p->count; i++) text += strlen(p->steps[i].name) + strlen(p->steps[i].unit) + 2;
    ak_owner *o = ak_owner_new(AK_OWNER_PROFILE);
    if (o) { o->steps = calloc(p->count + 1, sizeof *o->steps); o->text = malloc(text + 1); o->count = p->count; }
    if (!o || !o->steps || !o->text) { pthread_mutex_unlock(&p->lock); ak_release(NULL, o); return ak_error(KILN_ERROR_INTERNAL, "profile: out of memory"); }
    char *at = o->text;
    for (size_t i = 0; i < p->count; i++) {
        const ak_step *s = &p->steps[i];
        size_t n = strlen(s->name) + 1, u = strlen(s->unit) + 1;
        memcpy(at, s->name, n); o->steps[i].name = at; at += n;
        memcpy(at, s->unit, u); o->steps[i].unit = at; at += u;
        o->steps[i].start_cycle = s->start_cycle;
        o->steps[i].cycles = s->cycles;
    }
    out->clock_hz = p->clock_hz;
    out->total_cycles = p->total_cycles;
    pthread_mutex_unlock(&p->lock);
    out->step_count = o->count;
    out->steps = o->steps;
    out->owner = o;
    return NULL;
}

/* Picoseconds as cycles of a clock of `hz`, rounded to nearest. */
static uint64_t ps_to_cycles(uint64_t ps, double hz) { return (uint64_t)((double)ps * hz / 1e12 + 0.5); }

ak_step *ak_steps_from_report(const ak_report *report, const ak_engine *engines, const ak_op *ops, const uint32_t *layer_of,
                              char *const *layers, double clock_hz, uint64_t *total_cycles) {
    ak_step *steps = calloc(report->op_count + 1, sizeof *steps);
    if (!steps) return NULL;
    for (size_t i = 0; i < report->op_count; i++) {
        const char *label = ops[i].label ? ops[i].label : "?";
        steps[i].name = layer_of ? layers[layer_of[i]] : label;
        steps[i].unit = engines[ops[i].engine].name;
        steps[i].start_cycle = ps_to_cycles(report->start_ps[i], clock_hz);
        steps[i].cycles = ps_to_cycles(report->end_ps[i] - report->start_ps[i], clock_hz);
    }
    *total_cycles = ps_to_cycles(report->total_ps, clock_hz);
    return steps;
}

/* ---- the entry ---- */

kiln_plugin_error *ak_query(const kiln_plugin_host *h, const kiln_plugin_header **out_header, kiln_plugin_header *header,
                            const char *plugin_name, uint32_t max_minor) {
    if (!h || h->struct_size < offsetof(kiln_plugin_host, free) + sizeof(h->free) || !h->error_create) return NULL; /* nothing to answer with */
    host = h;
    if (!out_header) return ak_error(KILN_ERROR_INVALID_ARGUMENT, "%s: out_header is NULL", plugin_name);
    if (h->abi_max_major < 1 || (h->abi_max_major == 1 && h->abi_max_minor < 2) || h->abi_min_major > 1)
        return ak_error(KILN_ERROR_VERSION_MISMATCH, "%s speaks plugin ABI 1.2 to 1.%u only; this host speaks %u.%u to %u.%u", plugin_name,
                        max_minor, h->abi_min_major, h->abi_min_minor, h->abi_max_major, h->abi_max_minor);
    header->abi_major = 1;
    uint32_t host_minor = h->abi_max_major > 1 ? UINT32_MAX : h->abi_max_minor; /* negotiate down to what the host offers */
    header->abi_minor = max_minor < host_minor ? max_minor : host_minor;
    if (header->abi_minor < 2) header->abi_minor = 2;
    *out_header = header;
    return NULL;
}

int ak_expand_run(const char *pattern, uint64_t run, char *out, size_t size) {
    const char *at = strstr(pattern, "{run}");
    int n = at ? snprintf(out, size, "%.*s%llu%s", (int)(at - pattern), pattern, (unsigned long long)run, at + 5) : snprintf(out, size, "%s", pattern);
    return n > 0 && (size_t)n < size;
}
