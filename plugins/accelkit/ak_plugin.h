/*
 * ak_plugin.h — the plugin-ABI glue the accelerator sample plugins share (npu, dsp, vta): the host pointer
 * and typed errors through it, decoding the kiln.ir graph the host passes, graph lookups (initializers,
 * attributes, recorded shapes), the owner tokens that keep claim / payload / device answers alive until the
 * host releases them, the claim and device-list answers, the argument checks every load and execute starts
 * with, output tensors handed to the host, and the query entry's ABI negotiation.
 *
 * Written against include/kiln/kiln_plugin.h and the generated kiln.ir C code only. Each plugin compiles
 * ak_plugin.c into its own shared library (so the host pointer is per plugin); set it with ak_query (or
 * ak_set_host) before anything else here runs.
 */
#ifndef AK_PLUGIN_H
#define AK_PLUGIN_H

#include <kiln/kiln_plugin.h>
#include "kiln/ir.pb-c.h"
#include "ak_bytes.h"
#include "accelkit.h"

#include <pthread.h>

#include <stddef.h>
#include <stdint.h>

#define AK_MAX_RANK 8
#define AK_MAX_DEVICE_PROPERTIES 32

/* ---- the host and errors -------------------------------------------------------------------------- */

/* Records the host the plugin was queried by (ak_query does this). */
void ak_set_host(const kiln_plugin_host *h);
/* The host recorded by ak_set_host / ak_query (NULL before). */
const kiln_plugin_host *ak_host(void);
/* A new error through the host, with a printf-style message (truncated to 600 bytes). */
kiln_plugin_error *ak_error(int32_t code, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Logs `line` at debug level when the host takes log lines. */
void ak_log_debug(const char *line);

/* ---- the graph ------------------------------------------------------------------------------------- */

/* Unpacks graph bytes (KILN_PLUGIN_FORMAT_IR_GRAPH) into *out (free with kiln__ir__graph__free_unpacked),
 * or returns an error: missing bytes, another format, NULL data, or bytes that are not a kiln.ir.Graph. */
kiln_plugin_error *ak_decode_graph(const kiln_plugin_bytes *bytes, Kiln__Ir__Graph **out);
/* The initializer named `name`, or NULL. */
const Kiln__Ir__Tensor *ak_initializer(const Kiln__Ir__Graph *g, const char *name);
/* The attribute `name` of `node`, or NULL. */
const Kiln__Ir__Attribute *ak_attribute(const Kiln__Ir__Node *node, const char *name);
/* An int attribute's value, or `fallback` when absent or not an int. */
int64_t ak_int_attr(const Kiln__Ir__Node *node, const char *name, int64_t fallback);
/* A float attribute's value, or `fallback` when absent or not a float. */
float ak_float_attr(const Kiln__Ir__Node *node, const char *name, float fallback);

/* A value's element type (kiln.ir DataType) and fixed shape; known = 0 when the rank or a dim is unknown. */
typedef struct ak_shape { int dtype, known; uint32_t rank; int64_t dims[AK_MAX_RANK]; } ak_shape;
/* The type and shape the graph records for `name`: its initializer, else its entry among the inputs and
 * value types (and the outputs when `search_outputs`). Unknown (all zero) when none records it. */
ak_shape ak_graph_shape(const Kiln__Ir__Graph *g, const char *name, int search_outputs);

/* ---- owners handed to the host --------------------------------------------------------------------- */

enum { AK_OWNER_CLAIM = 1, AK_OWNER_PAYLOAD = 2, AK_OWNER_DEVICES = 3, AK_OWNER_PROFILE = 4 };
/* What one answer handed to the host owns; ak_release frees whatever of it is set. */
typedef struct ak_owner {
    int kind;                 /* AK_OWNER_* (for the reader; ak_release frees every field regardless) */
    size_t count;             /* claim: node count */
    uint8_t *supported;       /* claim: one flag per node */
    char **reasons;           /* claim: malloc'ed reason per rejected node (NULL for claimed ones) */
    ak_bytes payload;         /* compile: the encoded payload */
    char compat[96];          /* compile: a compat string built per payload (optional) */
    void *devices;            /* devices: the answer's storage */
    kiln_plugin_profile_step *steps; /* profile: `count` steps; their names and units point into `text` */
    char *text;               /* profile: the steps' names and units, NUL-separated */
} ak_owner;

/* A zeroed owner of `kind`, or NULL when out of memory. */
ak_owner *ak_owner_new(int kind);
/* The backend's release callback: frees an owner token (NULL is ignored). */
void ak_release(void *context, void *token);
/* A malloc'ed copy of `text`, or NULL when out of memory. */
char *ak_strdup(const char *text);

/* ---- answers --------------------------------------------------------------------------------------- */

/* Fills supported[i] for the graph's n_nodes nodes and a malloc'ed reasons[i] (ak_strdup) for each rejected
 * one (reasons may be ignored by nodes that are claimed). Returns 0 when out of memory, else nonzero. */
typedef int (*ak_analyze_fn)(const Kiln__Ir__Graph *g, uint8_t *supported, char **reasons);
/* A whole claim callback body: checks `out`, decodes `graph`, runs `analyze` and hands the answer (owned by
 * an ak_owner) to the host. */
kiln_plugin_error *ak_claim(const kiln_plugin_bytes *graph, kiln_plugin_claim *out, ak_analyze_fn analyze);

/* Hands the payload o->payload encoded to the host in `out` with compat string `compat` (NULL: o->compat);
 * o becomes the answer's owner. When o is NULL or its encoding failed, frees o and returns an out-of-memory
 * error. */
kiln_plugin_error *ak_payload_answer(kiln_plugin_payload *out, ak_owner *o, const char *compat);
/* The body of a check callback for a backend that loads payloads of one compat string `want`; `backend`
 * names it (name and version) in the mismatch error. */
kiln_plugin_error *ak_check_compat(const char *compat, const char *want, const char *backend);

/* Answers a devices callback with one simulated device called `name` with `memory_bytes` and `count`
 * properties: key k is keys[k]; its value is fixed[k] when fixed[k] is not NULL, else live[k] in decimal. */
kiln_plugin_error *ak_device_answer(kiln_plugin_device_list *out, const char *name, uint64_t memory_bytes, size_t count,
                                    const char *const *keys, const char *const *fixed, const uint64_t *live);

/* The checks every load starts with: the device in `options` is 0 (the only one), out_executable is not
 * NULL, the payload is there and its data is not NULL when it has bytes. NULL when all hold. */
kiln_plugin_error *ak_load_arguments(const kiln_plugin_bytes *payload, const kiln_plugin_load_options *options, void **out_executable);
/* When `graph` is given, whether its input and output counts match the payload's (want_inputs < 0: inputs
 * are not compared). NULL when they do or there is no graph. */
kiln_plugin_error *ak_check_graph_io(const kiln_plugin_bytes *graph, long want_inputs, size_t want_outputs);
/* The checks every execute starts with: an executable, the counts the program takes, non-NULL arrays. */
kiln_plugin_error *ak_execute_arguments(const void *executable, size_t input_count, size_t output_count, size_t want_inputs,
                                        size_t want_outputs, const kiln_tensor *inputs, const kiln_tensor *outputs);
/* Hands output `index` to the host: a host-allocated copy of `bytes` bytes from `data`, the dtype (code,
 * bits, 1 lane) and the shape (rank dims). Errors for an output without a shape array or wanted on a device. */
kiln_plugin_error *ak_output(kiln_tensor *out, size_t index, const void *data, size_t bytes, uint8_t code, uint8_t bits,
                             uint32_t rank, const int64_t *dims);
/* Like ak_output, but returns the host allocation of `bytes` in *data for the caller to fill. */
kiln_plugin_error *ak_output_alloc(kiln_tensor *out, size_t index, size_t bytes, void **data);

/* ---- profiles (plugin ABI 1.4) ------------------------------------------------------------------------- */

/* One step of a run as a plugin records it: `name` (the layer) and `unit` borrowed from storage that lives
 * as long as the executable (ak_profile_answer copies them), start and length in the profile's clock. */
typedef struct ak_step { const char *name, *unit; uint64_t start_cycle, cycles; } ak_step;

/* The last successful run of one executable, kept for the profile callback. Executes may run concurrently,
 * so every access takes `lock` (ak_profile_init / ak_profile_destroy). */
typedef struct ak_profile {
    pthread_mutex_t lock;
    int has_run;
    double clock_hz;
    uint64_t total_cycles;
    ak_step *steps;
    size_t count;
} ak_profile;

/* Initializes a profile with no run yet. */
void ak_profile_init(ak_profile *p);
/* Frees a profile's steps and its lock. */
void ak_profile_destroy(ak_profile *p);
/* Replaces the profile's last run with `steps` (`count` of them, malloc'ed; the profile takes them over),
 * `total_cycles` long in a clock of `clock_hz`. */
void ak_profile_store(ak_profile *p, ak_step *steps, size_t count, uint64_t total_cycles, double clock_hz);
/* The body of a backend's profile callback: fills *out with a copy of the last run (owned by an ak_owner of
 * kind AK_OWNER_PROFILE), or returns an error: NULL arguments, out too small, no run yet, out of memory. */
kiln_plugin_error *ak_profile_answer(ak_profile *p, kiln_plugin_profile *out);

/* Turns a simulated run into steps, one per instruction: name = layers[layer_of[i]] (or the instruction's
 * label when layer_of is NULL), unit = its engine's name, start and length converted from picoseconds to
 * cycles of `clock_hz` (rounded to nearest; a DMA's length too). Returns the malloc'ed steps (report->op_count
 * of them) or NULL when out of memory; *total_cycles = the run's end in that clock. */
ak_step *ak_steps_from_report(const ak_report *report, const ak_engine *engines, const ak_op *ops, const uint32_t *layer_of,
                              char *const *layers, double clock_hz, uint64_t *total_cycles);

/* ---- the entry --------------------------------------------------------------------------------------- */

/* The body of kiln_plugin_query_v1 for a plugin speaking ABI 1.2 up to 1.max_minor (2, 3 or 4): checks the
 * host (answers NULL when it cannot even build an error), records it, and sets header->abi_minor to the
 * highest minor both speak before answering *out_header = header. */
kiln_plugin_error *ak_query(const kiln_plugin_host *h, const kiln_plugin_header **out_header, kiln_plugin_header *header,
                            const char *plugin_name, uint32_t max_minor);

/* Copies `pattern` into `out`, replacing a "{run}" in it with `run`. Returns 0 when it does not fit. */
int ak_expand_run(const char *pattern, uint64_t run, char *out, size_t size);

#endif
