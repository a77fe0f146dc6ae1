/*
 * ak_test_host.h — what the plugins' payload-robustness drivers share: a minimal plugin host (errors, logs,
 * allocation), an EXPECT that counts failures, and builders of kiln.ir graphs whose pieces are freed together
 * (ak_test_release). Header-only; include it once, in the test driver, after kiln_plugin.h and kiln/ir.pb-c.h.
 */
#ifndef AK_TEST_HOST_H
#define AK_TEST_HOST_H

#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The host's error: a code and the message. */
struct kiln_plugin_error { int32_t code; char message[600]; };

/* Host service: a new error (the test frees it). */
static inline kiln_plugin_error *ak_test_error(void *context, int32_t code, const char *message) {
    (void)context;
    kiln_plugin_error *e = calloc(1, sizeof *e);
    e->code = code;
    snprintf(e->message, sizeof e->message, "%s", message ? message : "");
    return e;
}
/* Host service: ignores log lines. */
static inline void ak_test_log(void *context, int32_t level, const char *message) { (void)context; (void)level; (void)message; }
/* Host service: malloc (the test frees with free). */
static inline void *ak_test_alloc(void *context, size_t size, size_t alignment) { (void)context; (void)alignment; return malloc(size ? size : 1); }
/* Host service: free. */
static inline void ak_test_free(void *context, void *pointer) { (void)context; free(pointer); }

/* A host of ABI 1.0 to 1.2 with the services above. */
static inline kiln_plugin_host ak_test_host(void) {
    kiln_plugin_host h = {sizeof h, 1, 0, 1, 2, "test", NULL, ak_test_error, ak_test_log, ak_test_alloc, ak_test_free};
    return h;
}

/* Queries the plugin linked into the test (kiln_plugin_query_v1) with ak_test_host and returns its only
 * backend; exits 1 when that fails. */
kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *host, const kiln_plugin_header **out_header);
static inline const kiln_plugin_backend *ak_test_backend(void) {
    static kiln_plugin_host h;
    h = ak_test_host();
    const kiln_plugin_header *header = NULL;
    kiln_plugin_error *e = kiln_plugin_query_v1(&h, &header);
    if (e || !header || header->backend_count != 1) { printf("FAIL: query\n"); free(e); exit(1); }
    return header->backends[0];
}

static int failures;
/* Counts a failure and prints its message when `cond` does not hold. */
#define EXPECT(cond, ...) do { if (!(cond)) { printf("FAIL: " __VA_ARGS__); printf("\n"); failures++; } } while (0)

/* Allocations of the test graphs, freed by ak_test_release. */
static void *ak_test_kept[256];
static int ak_test_kept_count;
/* calloc that remembers the block for ak_test_release. */
static inline void *keep(size_t count, size_t size) {
    void *p = calloc(count, size);
    if (ak_test_kept_count < 256) ak_test_kept[ak_test_kept_count++] = p;
    return p;
}
/* Frees every block from keep. */
static inline void ak_test_release(void) { while (ak_test_kept_count) free(ak_test_kept[--ak_test_kept_count]); }

/* A value of element type `dtype` (kiln.ir DataType) with a fixed shape. */
static inline Kiln__Ir__Value *value(const char *name, int dtype, int rank, const int64_t *dims) {
    Kiln__Ir__Value *v = keep(1, sizeof *v);
    Kiln__Ir__Type *t = keep(1, sizeof *t);
    Kiln__Ir__TensorType *tt = keep(1, sizeof *tt);
    kiln__ir__value__init(v); kiln__ir__type__init(t); kiln__ir__tensor_type__init(tt);
    tt->dtype = (Kiln__Ir__DataType)dtype;
    tt->has_shape = 1;
    tt->n_dims = (size_t)rank;
    tt->dims = keep((size_t)rank + 1, sizeof(Kiln__Ir__Dim *));
    for (int d = 0; d < rank; d++) {
        tt->dims[d] = keep(1, sizeof(Kiln__Ir__Dim));
        kiln__ir__dim__init(tt->dims[d]);
        tt->dims[d]->value_case = KILN__IR__DIM__VALUE_FIXED;
        tt->dims[d]->fixed = dims[d];
    }
    t->value_case = KILN__IR__TYPE__VALUE_TENSOR;
    t->tensor = tt;
    v->name = (char *)name;
    v->type = t;
    return v;
}

/* An initializer of element type `dtype` over `bytes` bytes of `data` (borrowed). */
static inline Kiln__Ir__Tensor *init(const char *name, int dtype, int rank, const int64_t *dims, const void *data, size_t bytes) {
    Kiln__Ir__Tensor *t = keep(1, sizeof *t);
    kiln__ir__tensor__init(t);
    t->name = (char *)name;
    t->dtype = (Kiln__Ir__DataType)dtype;
    t->n_shape = (size_t)rank;
    t->shape = (int64_t *)dims;
    t->data_case = KILN__IR__TENSOR__DATA_RAW;
    t->raw.data = (uint8_t *)data;
    t->raw.len = bytes;
    return t;
}

/* An attribute listing `n` integers (borrowed). */
static inline Kiln__Ir__Attribute *ints(const char *name, size_t n, int64_t *values) {
    Kiln__Ir__Attribute *a = keep(1, sizeof *a);
    Kiln__Ir__Ints *l = keep(1, sizeof *l);
    kiln__ir__attribute__init(a); kiln__ir__ints__init(l);
    l->n_values = n; l->values = values;
    a->name = (char *)name;
    a->value_case = KILN__IR__ATTRIBUTE__VALUE_INTS;
    a->ints = l;
    return a;
}

/* A node of the default domain with one output and `n_attrs` attributes (borrowed). */
static inline Kiln__Ir__Node *node(const char *name, const char *op, char **inputs, size_t n_inputs, char *output, Kiln__Ir__Attribute **attrs, size_t n_attrs) {
    Kiln__Ir__Node *n = keep(1, sizeof *n);
    kiln__ir__node__init(n);
    n->name = (char *)name; n->domain = (char *)""; n->op = (char *)op;
    n->n_inputs = n_inputs; n->inputs = inputs;
    n->n_outputs = 1; n->outputs = keep(1, sizeof(char *)); n->outputs[0] = output;
    n->n_attributes = n_attrs; n->attributes = attrs;
    return n;
}

/* Packs `g` into a malloc'ed buffer of *size bytes. */
static inline uint8_t *ak_test_pack(const Kiln__Ir__Graph *g, size_t *size) {
    *size = kiln__ir__graph__get_packed_size(g);
    uint8_t *bytes = malloc(*size ? *size : 1);
    kiln__ir__graph__pack(g, bytes);
    return bytes;
}

#endif
