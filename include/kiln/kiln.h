/*
 * kiln.h — Kiln's embedding C API (ABI 1.2).
 *
 * Load a model (ONNX or a compiled .kiln artifact), inspect its inputs and outputs, run it, read its
 * partition report, and compile models to artifacts — from C, C++, or anything with a C FFI.
 * Documentation/CABI.md describes the API by task, the ownership table and the versioning policy.
 *
 * Conventions (they hold for every function below unless its comment says otherwise):
 *  - Every fallible call returns `kiln_error *`: NULL means success; otherwise the caller owns the
 *    error and frees it with kiln_error_free. There is no thread-local "last error".
 *  - Nothing unwinds across this boundary: every failure inside Kiln becomes a kiln_error.
 *  - A NULL handle or a NULL required pointer is reported as a KILN_ERROR_INVALID_ARGUMENT error,
 *    never a crash. A handle that was already freed is undefined behaviour (as with free()).
 *  - Output parameters (`out_*`) are written only on success.
 *  - Every struct the caller passes in starts with `size_t struct_size`, which the caller sets to
 *    sizeof(the struct) as compiled against its header. The library reads and writes only the fields
 *    that fit in struct_size, so programs built against an older header keep working. The one
 *    exception is kiln_tensor, whose layout is DLPack's DLTensor and is frozen by that standard.
 *  - Strings are NUL-terminated UTF-8.
 *  - Handles: kiln_context, kiln_model and kiln_outputs may be used from any thread. kiln_run and
 *    kiln_run_alloc may be called on one kiln_model from several threads at once; a handle must not
 *    be freed while another thread uses it.
 */
#ifndef KILN_KILN_H
#define KILN_KILN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

/* ---------------------------------------------------------------------------------------------- */
/* Versions                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* The ABI version this header describes. A program built against major M runs with any libkiln whose
 * ABI major is M and whose minor is at least the minor it was built with: call KILN_ABI_CHECK() first. */
#define KILN_ABI_VERSION_MAJOR 1
#define KILN_ABI_VERSION_MINOR 5

/* This header's ABI version as (major << 16) | minor, the form kiln_abi_version() and kiln_abi_check() use. */
#define KILN_ABI_VERSION (((uint32_t)KILN_ABI_VERSION_MAJOR << 16) | (uint32_t)KILN_ABI_VERSION_MINOR)

/* Kiln's release version, e.g. "0.1.0". Static storage: never freed, valid forever. */
KILN_API const char *kiln_version(void);

/* The ABI version of the loaded library, as (major << 16) | minor. */
KILN_API uint32_t kiln_abi_version(void);

/* Forward declaration; see Errors below. */
typedef struct kiln_error kiln_error;

/* ABI 1.2. Checks that this library can serve a program built against kiln.h version `header_version`
 * ((major << 16) | minor): NULL when the library's major equals the header's and its minor is at least
 * the header's; otherwise a KILN_ERROR_VERSION_MISMATCH error (owned by the caller) whose message names
 * both versions — "this program was built against kiln.h ABI 1.3, but the loaded libkiln implements ABI
 * 1.2: use libkiln 1.3 or newer". Call it through KILN_ABI_CHECK() before anything else. A library older
 * than 1.2 lacks this symbol, so a 1.2 program fails to start against it (the dynamic loader names the
 * missing kiln_abi_check): the check holds in that direction too. */
KILN_API kiln_error *kiln_abi_check(uint32_t header_version);

/* kiln_abi_check for the header this program was compiled with. */
#define KILN_ABI_CHECK() kiln_abi_check(KILN_ABI_VERSION)

/* ---------------------------------------------------------------------------------------------- */
/* Errors                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* An error: a code and a message. Created by the library, owned by the caller, freed with
 * kiln_error_free. (Declared above, with kiln_abi_check.) */

/* Error codes (the numbers of Swift's KilnError.Code; stable forever, new codes may be added). */
enum {
    KILN_OK = 0,                       /* only returned by kiln_error_code(NULL) */
    KILN_ERROR_IO = 1,                 /* a file could not be opened, read or written */
    KILN_ERROR_INVALID_MODEL = 2,      /* the model is not a valid model */
    KILN_ERROR_UNSUPPORTED = 3,        /* an operator or type that no selected backend supports */
    KILN_ERROR_INVALID_ARGUMENT = 4,   /* a wrong argument: NULL handle, wrong tensor shape/dtype, bad option */
    KILN_ERROR_RUNTIME = 5,            /* an operator failed while running */
    KILN_ERROR_INVALID_ARTIFACT = 6,   /* a .kiln artifact is corrupt, truncated or unreadable */
    KILN_ERROR_VERSION_MISMATCH = 7,   /* an artifact or plugin needs another version of Kiln */
    KILN_ERROR_INTERNAL = 8            /* a bug in Kiln */
};

/* The error's code (one of KILN_ERROR_*); KILN_OK (0) for NULL. */
KILN_API int32_t kiln_error_code(const kiln_error *error);

/* The error's message. Owned by `error`: valid until kiln_error_free(error). Never NULL ("" for a
 * NULL error). */
KILN_API const char *kiln_error_message(const kiln_error *error);

/* Frees an error. NULL is allowed (does nothing). */
KILN_API void kiln_error_free(kiln_error *error);

/* ---------------------------------------------------------------------------------------------- */
/* Tensors: the DLPack DLTensor layout                                                            */
/* ---------------------------------------------------------------------------------------------- */

/* Element type, laid out as DLPack's DLDataType. `code` is a KILN_DTYPE_* (DLPack's DLDataTypeCode
 * numbers), `bits` the width of one element, `lanes` is always 1 for Kiln. */
typedef struct kiln_dtype {
    uint8_t code;
    uint8_t bits;
    uint16_t lanes;
} kiln_dtype;

/* Type codes (DLPack's DLDataTypeCode numbers). */
enum {
    KILN_DTYPE_INT = 0,                /* int8/16/32/64 (bits 8/16/32/64), int4/int2 (bits 4/2, padded) */
    KILN_DTYPE_UINT = 1,               /* uint8/16/32/64, uint4/uint2 (padded) */
    KILN_DTYPE_FLOAT = 2,              /* float16/32/64 */
    KILN_DTYPE_OPAQUE = 3,             /* reported for element types with no DLPack code (strings) */
    KILN_DTYPE_BFLOAT = 4,             /* bfloat16 (bits 16) */
    KILN_DTYPE_COMPLEX = 5,            /* complex64/128 (bits 64/128) */
    KILN_DTYPE_BOOL = 6,               /* bool (bits 8, one byte per element, 0 or 1) */
    KILN_DTYPE_FLOAT8_E4M3FN = 10,
    KILN_DTYPE_FLOAT8_E4M3FNUZ = 11,
    KILN_DTYPE_FLOAT8_E5M2 = 12,
    KILN_DTYPE_FLOAT8_E5M2FNUZ = 13,
    KILN_DTYPE_FLOAT8_E8M0FNU = 14,
    KILN_DTYPE_FLOAT4_E2M1FN = 17      /* bits 4, padded */
};
/* Sub-byte types (int4, uint4, int2, uint2, float4_e2m1fn) cross padded: one element per byte, in the
 * low bits (DLPack's DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED convention), never packed. */

/* A device, laid out as DLPack's DLDevice. Kiln 1.0 reads and writes host memory only. */
typedef struct kiln_device {
    int32_t device_type;               /* KILN_DEVICE_* (DLPack's DLDeviceType numbers) */
    int32_t device_id;                 /* 0 for the host */
} kiln_device;

enum {
    KILN_DEVICE_CPU = 1                /* host memory (DLPack's kDLCPU) */
};

/* A tensor, laid out exactly as DLPack's DLTensor, so a DLTensor (e.g. DLManagedTensor.dl_tensor)
 * can be copied into a kiln_tensor field by field or by memcpy, and back. No struct_size: DLPack
 * freezes this layout. Element (i0, …, in-1) lives at
 *     (char *)data + byte_offset + (i0 * strides[0] + … + in-1 * strides[n-1]) * element_bytes
 * where element_bytes is bits / 8 (1 for sub-byte types). */
typedef struct kiln_tensor {
    void *data;                        /* borrowed: see the function that takes or fills the tensor */
    kiln_device device;                /* must be {KILN_DEVICE_CPU, 0} */
    int32_t ndim;                      /* rank; 0 for a scalar */
    kiln_dtype dtype;
    int64_t *shape;                    /* ndim entries (may be NULL when ndim == 0); borrowed */
    int64_t *strides;                  /* ndim entries in elements, or NULL = compact row-major; borrowed */
    uint64_t byte_offset;              /* bytes from data to the first element */
} kiln_tensor;

/* ---------------------------------------------------------------------------------------------- */
/* Context                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

/* A context: the backends available to the models loaded through it (its backend registry) and
 * their defaults. Create one per process or per independent user. Owned by the caller; free it with
 * kiln_context_free. Models keep alive what they need, so a context may be freed before the models
 * loaded through it. */
typedef struct kiln_context kiln_context;

typedef struct kiln_context_options {
    size_t struct_size;                /* sizeof(kiln_context_options) */
    const char *default_backend;       /* backend that runs whole ONNX models (and compiles them) when the
                                          load or compile options name none; NULL = the host target's
                                          backends (kiln.cpu, with kiln.reference only for the nodes it
                                          cannot run). Borrowed: read during kiln_context_create only. */
} kiln_context_options;

/* Creates a context. `options` may be NULL (defaults). On success *out_context is a new context owned
 * by the caller. */
KILN_API kiln_error *kiln_context_create(const kiln_context_options *options, kiln_context **out_context);

/* Frees a context. NULL is allowed. */
KILN_API void kiln_context_free(kiln_context *context);

/* The number of backends registered in the context. */
KILN_API kiln_error *kiln_context_backend_count(const kiln_context *context, size_t *out_count);

/* The name of backend `index` (0 ≤ index < count), e.g. "kiln.cpu". *out_name is owned by the
 * context: valid until kiln_context_free(context). */
KILN_API kiln_error *kiln_context_backend_name(const kiln_context *context, size_t index, const char **out_name);

/* ---------------------------------------------------------------------------------------------- */
/* Models                                                                                         */
/* ---------------------------------------------------------------------------------------------- */

/* A model prepared to run: imported from ONNX and split among the host target's backends (or prepared
 * whole on the backend the options name), or read from a .kiln artifact and prepared on the backends it
 * was compiled for. Owned by the caller; free with kiln_model_free. */
typedef struct kiln_model kiln_model;

typedef struct kiln_load_options {
    size_t struct_size;                /* sizeof(kiln_load_options) */
    const char *backend;               /* the one backend that runs a whole ONNX model, with no fallback
                                          (an artifact: the backend it must have been compiled for);
                                          NULL = the context's default (by default the host target's
                                          backends). Borrowed (during the call). */
    int32_t num_threads;               /* worker threads for backends that use them (kiln.cpu); 0 = the
                                          backend's default (kiln.cpu: the physical cores). kiln.reference
                                          runs on the calling thread whatever its value. Must be >= 0. */
    uint32_t reserved;                 /* must be 0 (keeps the struct free of padding) */
    uint64_t memory_budget_mb;         /* (ABI 1.3) the most MiB one prepared graph's memory plan may take on
                                          backends that plan memory (kiln.cpu's option memory_budget_mb); a
                                          larger plan is a KILN_ERROR_UNSUPPORTED error at load naming the
                                          largest values. 0 = no budget. */
    /* ABI 1.3: signed artifacts. With trusted_key_count > 0, only a .kiln artifact carrying a valid
     * Ed25519 signature by one of these keys loads (checked before any of it is decoded or reaches a
     * backend); anything else fails with KILN_ERROR_INVALID_ARTIFACT whose message says whether the
     * signature is missing, does not match, or is by an untrusted key id. An ONNX model is refused. */
    const uint8_t *trusted_keys;       /* trusted_key_count raw 32-byte Ed25519 public keys, back to back
                                          (the hex line of a `kiln keygen` KEY.pub); NULL when the count is
                                          0. Borrowed (during the call). */
    size_t trusted_key_count;          /* 0 = no signature required (the default) */
} kiln_load_options;

/* Loads the model at `path`: a .kiln artifact (recognised by its magic bytes) or an ONNX model
 * (external data is read relative to the model's folder). `options` may be NULL. `path` is borrowed
 * during the call. On success *out_model is a new model owned by the caller. */
KILN_API kiln_error *kiln_model_load_file(kiln_context *context, const char *path, const kiln_load_options *options,
                                          kiln_model **out_model);

/* Loads a model held in memory: `size` bytes at `data`, a .kiln artifact or an ONNX model (which must
 * not use external data). The bytes are COPIED during the call: the caller may free or reuse them as
 * soon as the call returns. On success *out_model is a new model owned by the caller. */
KILN_API kiln_error *kiln_model_load_memory(kiln_context *context, const void *data, size_t size,
                                            const kiln_load_options *options, kiln_model **out_model);

/* Frees a model. NULL is allowed. Every string and array a model query returned becomes invalid. */
KILN_API void kiln_model_free(kiln_model *model);

/* A model input or output, filled in by kiln_model_input / kiln_model_output. */
typedef struct kiln_value_info {
    size_t struct_size;                /* in: sizeof(kiln_value_info), set by the caller */
    const char *name;                  /* owned by the model: valid until kiln_model_free */
    kiln_dtype dtype;                  /* element type; code KILN_DTYPE_OPAQUE for strings and non-tensors */
    int32_t elem_type;                 /* ONNX TensorProto.DataType number (1 = float, 7 = int64, …);
                                          0 when the value is not a tensor (a sequence or map) */
    int32_t rank;                      /* number of dims; -1 when the rank is unknown */
    const int64_t *dims;               /* rank entries; -1 for a symbolic or unknown dim. Owned by the
                                          model (valid until kiln_model_free); NULL when rank <= 0 */
    const char *const *dim_names;      /* rank entries: the symbol ("batch") of a symbolic dim, NULL for a
                                          fixed or unknown one. Owned by the model; NULL when rank <= 0 */
} kiln_value_info;

/* The number of inputs the caller must supply (graph inputs without an initializer), in the order
 * kiln_run takes them. */
KILN_API kiln_error *kiln_model_input_count(const kiln_model *model, size_t *out_count);

/* The number of outputs, in the order kiln_run produces them. */
KILN_API kiln_error *kiln_model_output_count(const kiln_model *model, size_t *out_count);

/* Describes input `index`. `info->struct_size` must be set; the other fields are written. */
KILN_API kiln_error *kiln_model_input(const kiln_model *model, size_t index, kiln_value_info *info);

/* Describes output `index`. `info->struct_size` must be set; the other fields are written. */
KILN_API kiln_error *kiln_model_output(const kiln_model *model, size_t index, kiln_value_info *info);

/* One line of the partition report: which backend runs a node, and why. */
typedef struct kiln_partition_entry {
    size_t struct_size;                /* in: sizeof(kiln_partition_entry), set by the caller */
    const char *node;                  /* node name ("#12" for an unnamed node); owned by the model */
    const char *op;                    /* operator, "Conv" or "domain.Op"; owned by the model */
    const char *backend;               /* backend name, e.g. "kiln.reference"; owned by the model */
    const char *reason;                /* why this backend runs it; owned by the model */
} kiln_partition_entry;

/* The number of entries in the model's partition report (one per top-level node). */
KILN_API kiln_error *kiln_model_partition_count(const kiln_model *model, size_t *out_count);

/* Entry `index` of the partition report. `entry->struct_size` must be set; the strings are owned by
 * the model and valid until kiln_model_free. */
KILN_API kiln_error *kiln_model_partition_entry(const kiln_model *model, size_t index, kiln_partition_entry *entry);

/* ---------------------------------------------------------------------------------------------- */
/* Running                                                                                        */
/* ---------------------------------------------------------------------------------------------- */

typedef struct kiln_run_options {
    size_t struct_size;                /* sizeof(kiln_run_options) */
    uint64_t flags;                    /* reserved: must be 0 */
    uint64_t timeout_ms;               /* (ABI 1.3) the longest the run may take, in milliseconds; 0 = no
                                          limit. The built-in backends check it between steps; a run past it
                                          fails with KILN_ERROR_RUNTIME "run exceeded its deadline of N s". */
} kiln_run_options;

/* Outputs allocated by the runtime (kiln_run_alloc). Owned by the caller; free with kiln_outputs_free.
 * Independent of the model: they stay valid after kiln_model_free. */
typedef struct kiln_outputs kiln_outputs;

/* Runs the model with caller-provided output buffers.
 *  inputs:  input_count (= kiln_model_input_count) tensors in model-input order. Each tensor, its shape
 *           and strides arrays and its data are borrowed during the call only; each must match the
 *           input's dtype and shape (symbolic dims must agree across inputs), else the error names the
 *           input, the expected and the given type.
 *  outputs: output_count (= kiln_model_output_count) tensors in model-output order, filled in by the
 *           caller: data pointing to writable memory, dtype, ndim, shape (and optional strides). After
 *           the model runs, every result's dtype and shape is checked against its tensor (an error names
 *           the output, expected and given) before any data is written; then the results are copied in.
 *           Borrowed during the call only.
 *  options: may be NULL. */
KILN_API kiln_error *kiln_run(kiln_model *model, const kiln_tensor *inputs, size_t input_count, kiln_tensor *outputs,
                              size_t output_count, const kiln_run_options *options);

/* Runs the model and returns its outputs in a new kiln_outputs owned by the caller. `inputs` as for
 * kiln_run; `options` may be NULL. */
KILN_API kiln_error *kiln_run_alloc(kiln_model *model, const kiln_tensor *inputs, size_t input_count,
                                    const kiln_run_options *options, kiln_outputs **out_outputs);

/* The number of tensors in `outputs` (the model's output count). */
KILN_API kiln_error *kiln_outputs_count(const kiln_outputs *outputs, size_t *out_count);

/* The name of output `index`. Owned by `outputs`: valid until kiln_outputs_free. */
KILN_API kiln_error *kiln_outputs_name(const kiln_outputs *outputs, size_t index, const char **out_name);

/* Fills *out_tensor with a view of output `index`: compact row-major (strides NULL), byte_offset 0, on
 * the CPU. Its data and shape are owned by `outputs` and valid until kiln_outputs_free; the data is
 * read-only (it may be shared with the model's constants). */
KILN_API kiln_error *kiln_outputs_get(const kiln_outputs *outputs, size_t index, kiln_tensor *out_tensor);

/* Frees outputs. NULL is allowed. */
KILN_API void kiln_outputs_free(kiln_outputs *outputs);

/* ---------------------------------------------------------------------------------------------- */
/* Compiling                                                                                      */
/* ---------------------------------------------------------------------------------------------- */

/* Bytes produced by the library (e.g. an artifact). Owned by the caller; free with kiln_blob_free. */
typedef struct kiln_blob kiln_blob;

/* Option keys (option_keys[i] = option_values[i]):
 *   opt_level         0–3 (default 2)
 *   backend           the one backend that compiles the whole graph, with no fallback
 *   backends          ABI 1.1: backends that may claim nodes, highest priority first, comma-separated
 *                     ("sample.bytecode,kiln.cpu"), instead of the target's; the rest falls back to the
 *                     host's backends (kiln.cpu, then kiln.reference)
 *   fallback          ABI 1.1: allow | warn | deny — what happens to nodes no selected backend takes
 *   min_group_size    ABI 1.1: groups of a selected backend with fewer nodes run on the fallback (>= 1)
 *   deny              ABI 1.1: ops never given to the selected backends, comma-separated ("Softmax,Gelu")
 *   max_folded_bytes  the largest constant that constant folding may create
 *   quantize          ABI 1.4: int8 — post-training quantization (Documentation/Quantization.md); needs
 *                     calibration. With it: calibration (a folder of .npy samples), calibration_method
 *                     (minmax | percentile | entropy), percentile, activation_type (uint8 | int8),
 *                     keep_float and quantize_ops (comma-separated op types), quantize_outputs (true |
 *                     false), calibration_backend — the same values as `kiln compile`'s flags
 *   metadata.KEY      stores KEY = value in the artifact's metadata
 *   input_shape.NAME  ABI 1.5: fixes input NAME's shape to value "D,D,..." (its symbolic dims; "" for a scalar)
 * Backends are looked up in the context's registry, so a plugin registered there can be selected. */
typedef struct kiln_compile_options {
    size_t struct_size;                /* sizeof(kiln_compile_options) */
    const char *target;                /* NULL or "host": this machine's best backends (kiln.cpu; kiln.reference
                                          only for what it cannot run); another registered target
                                          ("x86_64-avx2", a plugin's) selects its backends. Borrowed. */
    const char *const *option_keys;    /* option_count keys, e.g. "opt_level"; borrowed (during the call) */
    const char *const *option_values;  /* option_count values, e.g. "2"; borrowed (during the call) */
    size_t option_count;               /* 0 = no options (the two arrays may then be NULL) */
} kiln_compile_options;

/* Compiles the model at `model_path` (ONNX) to a .kiln artifact written to `artifact_path` (atomically:
 * a failure leaves no partial file). Paths are borrowed during the call; `options` may be NULL. Unknown
 * option keys are an error naming the key. */
KILN_API kiln_error *kiln_compile_file(kiln_context *context, const char *model_path, const char *artifact_path,
                                       const kiln_compile_options *options);

/* Compiles `size` bytes of an ONNX model at `data` (copied during the call) and returns the artifact's
 * bytes in a new blob owned by the caller. */
KILN_API kiln_error *kiln_compile_memory(kiln_context *context, const void *data, size_t size,
                                         const kiln_compile_options *options, kiln_blob **out_artifact);

/* The blob's bytes. Owned by `blob`: valid until kiln_blob_free. NULL for a NULL blob. */
KILN_API const void *kiln_blob_data(const kiln_blob *blob);

/* The blob's size in bytes; 0 for a NULL blob. */
KILN_API size_t kiln_blob_size(const kiln_blob *blob);

/* Frees a blob. NULL is allowed. */
KILN_API void kiln_blob_free(kiln_blob *blob);

/* ---------------------------------------------------------------------------------------------- */
/* Vendor plugins (ABI 1.1)                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* Loads the vendor backend plugin (include/kiln/kiln_plugin.h) at `path` and registers its backends in
 * `context` only: other contexts do not see them. The new backends are appended to the context's backend
 * list (kiln_context_backend_count / kiln_context_backend_name), can be selected by compile options
 * ("backend", "backends") and load options, and run the partitions of artifacts that name them.
 * `path` is borrowed during the call. A library is loaded once per process: registering the same file
 * again (in this or another context) reuses it. `out_added` may be NULL; on success it receives the
 * number of backends newly added to the context (0 when they were already registered). The error for a
 * missing or broken plugin names `path`; a plugin backend may not take a built-in backend's name. */
KILN_API kiln_error *kiln_context_register_plugin(kiln_context *context, const char *path, size_t *out_added);

/* Registers in `context` every plugin named by the environment variable KILN_PLUGIN_PATH: a ':'-separated
 * list of plugin files and folders (a folder's *.so files are taken in name order; entries that do not
 * exist are skipped). Unset or empty registers nothing. Each plugin is loaded as by
 * kiln_context_register_plugin. When some plugins fail, the others stay registered and the returned
 * error (KILN_ERROR_INVALID_ARGUMENT) lists every plugin that failed with its reason. `out_added` may be
 * NULL; on success it receives the number of backends added. */
KILN_API kiln_error *kiln_context_discover_plugins(kiln_context *context, size_t *out_added);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KILN_KILN_H */
