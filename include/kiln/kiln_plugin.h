/*
 * kiln_plugin.h — the vendor backend ABI (plugin ABI 1.4).
 *
 * A plugin is a shared library that adds one or more backends to Kiln. It exports exactly ONE symbol,
 * kiln_plugin_query_v1, whose name carries the ABI major. Kiln dlopens the library (RTLD_NOW |
 * RTLD_LOCAL), calls the entry with its supported ABI range and a table of host services, and receives
 * a plugin header listing the plugin's backends as tables of callbacks. Documentation/WritingABackend.md
 * walks through the sample plugin in bindings/c/examples/vendor-plugin/.
 *
 * Rules that hold for everything below:
 *  - Every struct starts with `size_t struct_size`, set by whoever fills the struct to sizeof(the struct)
 *    as that side compiled it. Fields are only ever appended. A reader never reads a field that does not
 *    fit inside struct_size (KILN_PLUGIN_HAS_FIELD below); a missing field means its documented default.
 *    The one exception is kiln_tensor (from kiln.h), whose layout is DLPack's DLTensor, frozen by DLPack.
 *  - The first three fields of kiln_plugin_header (struct_size, abi_major, abi_minor) are frozen forever:
 *    every future ABI major keeps them, so a host can always tell which ABI a plugin speaks.
 *  - Versions are negotiated as a range. The host says which ABI versions it speaks (abi_min..abi_max);
 *    the plugin answers with the one version it uses, which must lie in that range: a plugin built
 *    against a newer minor than the host's abi_max answers the host's abi_max when it can work without
 *    the newer fields (struct_size tells each side which fields the other knows), and otherwise refuses.
 *    A host refuses a header whose version lies outside its range, naming both versions. A major change
 *    is a new entry symbol (kiln_plugin_query_v2), so a plugin may export several entries to serve hosts
 *    of several majors, and the host picks the newest it speaks.
 *  - What each minor added is marked "(1.2)", "(1.3)" or "(1.4)" below and listed in the changelog in
 *    Documentation/WritingABackend.md. 1.1 changed no plugin struct (the minor follows kiln.h's); a
 *    plugin that reports 1.0 or 1.1 has the 1.0 struct sizes.
 *  - Fallible callbacks return `kiln_plugin_error *`: NULL is success; otherwise an error the plugin made
 *    with host->error_create. The host owns every error the plugin returns; the plugin never frees one.
 *  - Nothing unwinds across this boundary (no C++ exceptions, no longjmp out of a callback).
 *  - Strings are NUL-terminated UTF-8.
 *  - Graphs cross as bytes of the protobuf message kiln.ir.Graph (proto/kiln/ir.proto) with every
 *    tensor's data inline (Tensor.raw). Kiln ships C code generated from that schema by protoc-c in
 *    bindings/c/proto/kiln/ir.pb-c.{h,c}; link it with libprotobuf-c. Build the plugin with
 *    -fvisibility=hidden so that its copy of protobuf-c (and everything else) stays private.
 *  - Threads: claim, compile, check and load (and in 1.2 devices, load_with_options and the buffer
 *    callbacks) may be called from any thread, concurrently (each call with its own arguments). execute is called concurrently on one executable only when the backend sets
 *    KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE; otherwise the host serializes execute per executable.
 *    unload is never concurrent with execute of the same executable.
 */
#ifndef KILN_PLUGIN_H
#define KILN_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h" /* kiln_tensor, kiln_dtype, kiln_device (DLPack layouts) and the KILN_ERROR_* codes */

#ifdef __cplusplus
extern "C" {
#endif

/* The plugin ABI this header describes. */
#define KILN_PLUGIN_ABI_MAJOR 1
#define KILN_PLUGIN_ABI_MINOR 5

/* The entry symbol of ABI major 1, as a string for dlsym. */
#define KILN_PLUGIN_QUERY_SYMBOL_V1 "kiln_plugin_query_v1"

/* The entry symbol's name for ABI major `major` (a plain number): KILN_PLUGIN_QUERY_NAME(1) is
 * kiln_plugin_query_v1. */
#define KILN_PLUGIN_QUERY_NAME(major) KILN_PLUGIN_QUERY_NAME_(major)
#define KILN_PLUGIN_QUERY_NAME_(major) kiln_plugin_query_v##major

/* Marks the one symbol a plugin exports. */
#if defined(__GNUC__) || defined(__clang__)
#define KILN_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define KILN_PLUGIN_EXPORT
#endif

/* True when a struct whose struct_size is `size` contains `field` of `type` (a reader checks this before
 * reading any field that was appended after the struct first shipped). */
#define KILN_PLUGIN_HAS_FIELD(type, field, size) \
    ((size_t)(size) >= offsetof(type, field) + sizeof(((type *)0)->field))

/* The most dimensions an output tensor may have (the size of the shape array the host lends execute). */
#define KILN_PLUGIN_MAX_RANK 16

/* ---------------------------------------------------------------------------------------------- */
/* Host services                                                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* An error: created by the plugin through host->error_create, returned from a callback, then owned and
 * freed by the host. Opaque to the plugin. */
typedef struct kiln_plugin_error kiln_plugin_error;

/* Log levels for host->log. */
enum {
    KILN_PLUGIN_LOG_DEBUG = 0,
    KILN_PLUGIN_LOG_INFO = 1,
    KILN_PLUGIN_LOG_WARNING = 2,
    KILN_PLUGIN_LOG_ERROR = 3
};

/* What the host offers the plugin. Filled by the host; the struct, host_context and every function
 * pointer stay valid from the entry call until the host calls header->shutdown (the plugin may keep
 * the pointer). Every service may be called from any thread. */
typedef struct kiln_plugin_host {
    size_t struct_size;                /* sizeof(kiln_plugin_host) as the host compiled it */
    uint32_t abi_min_major;            /* the oldest plugin ABI the host speaks ... */
    uint32_t abi_min_minor;
    uint32_t abi_max_major;            /* ... and the newest (inclusive) */
    uint32_t abi_max_minor;
    const char *host_version;          /* Kiln's release, e.g. "0.1.0". Host-owned, static. */
    void *host_context;                /* opaque: pass it back to every service below */

    /* A new error with `code` (a KILN_ERROR_* from kiln.h) and `message` (borrowed: copied during the
     * call; NULL reads as ""). Never returns NULL. The plugin hands the error back as a callback's
     * result (transferring it to the host) and must not use it afterwards. */
    kiln_plugin_error *(*error_create)(void *host_context, int32_t code, const char *message);

    /* Logs `message` (borrowed during the call) at `level` (KILN_PLUGIN_LOG_*), attributed to the plugin. */
    void (*log)(void *host_context, int32_t level, const char *message);

    /* Allocates `size` bytes aligned to `alignment` (a power of two, at most 4096; 0 means 64). Returns
     * NULL only when memory is exhausted; size 0 returns a valid unique pointer. Used for execute's
     * outputs (whose ownership passes to the host); the plugin may also use it for its own memory, freeing
     * that with host->free. */
    void *(*alloc)(void *host_context, size_t size, size_t alignment);

    /* Frees memory from host->alloc. NULL does nothing. */
    void (*free)(void *host_context, void *pointer);
} kiln_plugin_host;

/* ---------------------------------------------------------------------------------------------- */
/* Data that crosses                                                                              */
/* ---------------------------------------------------------------------------------------------- */

/* Formats of a kiln_plugin_bytes. */
enum {
    KILN_PLUGIN_FORMAT_OPAQUE = 0,     /* bytes only the backend understands (a payload) */
    KILN_PLUGIN_FORMAT_IR_GRAPH = 1    /* a serialized kiln.ir.Graph (proto/kiln/ir.proto), tensors inline */
};

/* A tagged byte string. Always borrowed from the side that passes it, for the duration of the call
 * only: copy whatever must outlive the call. */
typedef struct kiln_plugin_bytes {
    size_t struct_size;                /* sizeof(kiln_plugin_bytes) */
    const void *data;                  /* `size` bytes; may be NULL when size is 0 */
    size_t size;
    uint32_t format;                   /* KILN_PLUGIN_FORMAT_* */
    uint32_t reserved;                 /* 0 */
} kiln_plugin_bytes;

/* What claim answers: for each node of the graph (in the graph's order), whether the backend runs it,
 * and if not, why. The host sets struct_size and zeroes the rest; the plugin fills the other fields. */
typedef struct kiln_plugin_claim {
    size_t struct_size;                /* set by the host */
    size_t node_count;                 /* must equal the graph's number of nodes */
    const uint8_t *supported;          /* node_count entries, 1 = claimed, 0 = rejected. Plugin-owned (see owner).
                                          May be NULL only when node_count is 0. */
    const char *const *reasons;        /* node_count entries: for a rejected node a non-empty reason ("op
                                          Sigmoid is not supported", "float64 is not supported"), NULL for a
                                          claimed one. Plugin-owned (see owner). May be NULL when every node
                                          is claimed. */
    void *owner;                       /* the plugin's token for the arrays and strings above: valid until the
                                          host calls backend->release(context, owner), exactly once, after
                                          copying them. NULL = nothing to release (static storage). */
} kiln_plugin_claim;

/* How the host asks for a compile. Host-owned, borrowed during the call. */
typedef struct kiln_plugin_compile_options {
    size_t struct_size;                /* sizeof(kiln_plugin_compile_options) */
    const char *target;                /* "host", or a named target */
    int32_t opt_level;                 /* 0–3: the level the graph was optimized at */
    uint32_t reserved;                 /* 0 */
    size_t option_count;               /* key/value options for this backend (0 = none) */
    const char *const *option_keys;
    const char *const *option_values;
} kiln_plugin_compile_options;

/* What compile answers. The host sets struct_size and zeroes the rest; the plugin fills the rest. */
typedef struct kiln_plugin_payload {
    size_t struct_size;                /* set by the host */
    const void *data;                  /* the compiled payload, `size` bytes (may be NULL when size is 0).
                                          Plugin-owned (see owner). Stored verbatim in the artifact. */
    size_t size;
    const char *compat;                /* non-empty compatibility string ("acme.npu/3;sm=2"): what a loader
                                          needs, given back to check() before load. Plugin-owned (see owner). */
    void *owner;                       /* released with backend->release(context, owner), exactly once, after
                                          the host copied data and compat. NULL = static storage. */
} kiln_plugin_payload;

/* ---------------------------------------------------------------------------------------------- */
/* Backends                                                                                       */
/* ---------------------------------------------------------------------------------------------- */

/* Backend flags. */
enum {
    /* execute may be called on one executable from several threads at once. */
    KILN_PLUGIN_BACKEND_CONCURRENT_EXECUTE = 1u << 0,
    /* (1.2) The backend keeps tensors in device buffers: buffer_alloc, buffer_free, buffer_write and
     * buffer_read are set, and execute accepts and produces device-buffer tensors (see execute). */
    KILN_PLUGIN_BACKEND_DEVICE_BUFFERS = 1u << 1
};

/* ---------------------------------------------------------------------------------------------- */
/* Devices (1.2)                                                                                  */
/* ---------------------------------------------------------------------------------------------- */

/* What kind of processor a device is (kiln_plugin_device.kind). The names are those of Swift's
 * DeviceKind and of `kiln backends`. A plugin reports only kinds of the minor it negotiated. */
enum {
    KILN_PLUGIN_DEVICE_CPU = 0,
    KILN_PLUGIN_DEVICE_GPU = 1,
    KILN_PLUGIN_DEVICE_NPU = 2,
    KILN_PLUGIN_DEVICE_FPGA = 3,
    KILN_PLUGIN_DEVICE_DSP = 4,
    KILN_PLUGIN_DEVICE_SIMULATOR = 5   /* a model of hardware that runs on the host */
};

/* kiln_device.device_type of a tensor whose elements live in a backend's device buffer (DLPack's
 * kDLExtDev number): `data` is then the buffer handle (not an address the host may read), `device_id`
 * the index of the device in the backend's device list, byte_offset 0, strides NULL, and the buffer holds
 * the elements compact row-major from its start. */
#define KILN_PLUGIN_DEVICE_BUFFER 12

/* One device a backend runs on. Plugin-owned (see kiln_plugin_device_list.owner). */
typedef struct kiln_plugin_device {
    size_t struct_size;                /* sizeof(kiln_plugin_device) as the plugin compiled it */
    const char *name;                  /* for people, non-empty: "Acme NC2 #0", "PoCL cpu-haswell" */
    uint32_t kind;                     /* KILN_PLUGIN_DEVICE_CPU ... KILN_PLUGIN_DEVICE_SIMULATOR */
    uint32_t reserved;                 /* 0 */
    uint64_t memory_bytes;             /* memory the device owns; 0 = shares the host's or does not say */
    size_t property_count;             /* further facts as key/value strings ("cores" = "8"); 0 = none */
    const char *const *property_keys;  /* property_count non-empty, distinct keys */
    const char *const *property_values;/* property_count values (may be "") */
} kiln_plugin_device;

/* What devices answers. The host sets struct_size and zeroes the rest; the plugin fills the rest. */
typedef struct kiln_plugin_device_list {
    size_t struct_size;                /* set by the host */
    size_t device_count;               /* 0 is allowed: the backend compiles ahead of time only, here */
    const kiln_plugin_device *const *devices; /* device_count pointers (the struct grows across minors).
                                          Plugin-owned (see owner). May be NULL only when device_count is 0. */
    void *owner;                       /* released with backend->release(context, owner), exactly once, after
                                          the host copied the list. NULL = static storage. */
} kiln_plugin_device_list;

/* How the host asks for a load (load_with_options). Host-owned, borrowed during the call. */
typedef struct kiln_plugin_load_options {
    size_t struct_size;                /* sizeof(kiln_plugin_load_options) */
    uint32_t device;                   /* index into the backend's device list: the device to load onto */
    uint32_t reserved;                 /* 0 */
} kiln_plugin_load_options;

/* (1.3) One option a backend takes. The user gives it as `--backend-option NAME=VALUE` (CLI), in
 * kiln_compile_options (C) or kiln.compile's keyword options (Python), as for a built-in backend; `kiln backends` lists it;
 * the host refuses a value outside `choices` before any callback runs, and passes every option the user
 * gave this backend to compile in kiln_plugin_compile_options (option_keys/option_values). Plugin-owned,
 * static until shutdown. */
typedef struct kiln_plugin_option {
    size_t struct_size;                /* sizeof(kiln_plugin_option) as the plugin compiled it */
    const char *name;                  /* "auto-cast": 1 to 64 of [A-Za-z0-9._-], unique within the backend */
    const char *default_value;         /* what compile uses when the option is not given, for people; NULL = "" */
    const char *help;                  /* one line; NULL = "" */
    size_t choice_count;               /* the values allowed (at most 64); 0 = any text */
    const char *const *choices;
} kiln_plugin_option;

/* (1.4) One step of an executable's last execute, as the device (or its simulator) timed it: a layer, a
 * DMA transfer, a kernel launch. All of it plugin-owned, valid until the profile's owner is released. */
typedef struct kiln_plugin_profile_step {
    const char *name;                  /* what ran: the graph node(s), e.g. "conv1" or "conv1+relu1" */
    const char *unit;                  /* where it ran: an engine, queue or module, e.g. "TensorE", "HVX", "DMA" */
    uint64_t start_cycle;              /* when it started, in device cycles from the start of the execute */
    uint64_t cycles;                   /* how long it ran, in device cycles */
} kiln_plugin_profile_step;

/* (1.4) What `profile` fills in: the steps of the executable's last execute, in any order. */
typedef struct kiln_plugin_profile {
    size_t struct_size;                /* sizeof(kiln_plugin_profile), set by the host */
    double clock_hz;                   /* the clock the cycles count (e.g. 2.8e9); 0 = unknown */
    uint64_t total_cycles;             /* the execute from start to end, in device cycles */
    size_t step_count;                 /* at most 1,048,576 */
    const kiln_plugin_profile_step *steps;
    void *owner;                       /* released with `release`; NULL = nothing to release */
} kiln_plugin_profile;

/* One backend: its identity and its callbacks. Plugin-owned; valid until header->shutdown returns.
 * Every callback receives `context` (the plugin's, from this struct) first. The callbacks of ABI 1.0
 * (claim ... release) are required (non-NULL); the fields 1.2 and later appended are optional: the host reads each
 * one only when struct_size covers it (KILN_PLUGIN_HAS_FIELD), and a missing or NULL/0 field means the
 * default written next to it. */
typedef struct kiln_plugin_backend {
    size_t struct_size;                /* sizeof(kiln_plugin_backend) as the plugin compiled it */
    const char *name;                  /* unique "vendor.target" name, e.g. "acme.npu". Plugin-owned. */
    const char *vendor;                /* e.g. "Acme Corp". Plugin-owned. */
    const char *version;               /* semantic version of the backend, e.g. "1.2.0". Plugin-owned. */
    uint64_t flags;                    /* KILN_PLUGIN_BACKEND_* */
    void *context;                     /* the plugin's, passed back to every callback */

    /* Which nodes of `graph` (KILN_PLUGIN_FORMAT_IR_GRAPH, borrowed) this backend runs: fills *out. The
     * host decides the partition; claiming a node is a promise that compile accepts any convex group of
     * claimed nodes as a graph of its own. An empty graph (no nodes) answers node_count 0. */
    kiln_plugin_error *(*claim)(void *context, const kiln_plugin_bytes *graph, kiln_plugin_claim *out);

    /* Compiles `graph` (KILN_PLUGIN_FORMAT_IR_GRAPH, borrowed; every node claimed) into a payload:
     * fills *out. `options` is borrowed. A claim binds: a compile that cannot take the graph after all
     * returns KILN_ERROR_UNSUPPORTED, which refuses every node of `graph`; the host then partitions again
     * with those nodes rejected (when fallback is allowed) and the partition report says the compile
     * refused them. Any other error fails the compile. */
    kiln_plugin_error *(*compile)(void *context, const kiln_plugin_bytes *graph,
                                  const kiln_plugin_compile_options *options, kiln_plugin_payload *out);

    /* NULL when this backend, here, can load a payload whose compatibility string is `compat` (borrowed);
     * otherwise an error (KILN_ERROR_VERSION_MISMATCH) whose message says why not. */
    kiln_plugin_error *(*check)(void *context, const char *compat);

    /* Loads `payload` (KILN_PLUGIN_FORMAT_OPAQUE, borrowed: copy what you keep), compiled for `graph`
     * (KILN_PLUGIN_FORMAT_IR_GRAPH, borrowed; the graph the artifact stores beside the payload). On
     * success *out_executable is a new non-NULL handle, owned by the plugin and released with unload.
     * A payload this backend did not write (garbage, truncated) must be an error, never a crash. */
    kiln_plugin_error *(*load)(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                               void **out_executable);

    /* Runs an executable.
     *  inputs:  input_count tensors, one per graph input in graph order (inputs with an initializer get
     *           the initializer unless the caller overrides it). Compact row-major (strides NULL),
     *           byte_offset 0, on the CPU. Tensors, shapes and data are host-owned, borrowed during the
     *           call, read-only. A zero-size tensor (a dim of 0) may have a NULL or dangling data pointer.
     *           (1.2) When the backend sets KILN_PLUGIN_BACKEND_DEVICE_BUFFERS, an input may instead be a
     *           device-buffer tensor (device {KILN_PLUGIN_DEVICE_BUFFER, d}, d the device the executable
     *           was loaded onto; data a buffer of this backend on d from buffer_alloc or from an earlier
     *           execute's output): borrowed, read-only, still owned by the host.
     *  outputs: output_count tensors, one per graph output in graph order, prepared by the host: data NULL,
     *           ndim 0, strides NULL, byte_offset 0, device CPU, and `shape` pointing to a host-owned array
     *           of KILN_PLUGIN_MAX_RANK int64s. The plugin sets dtype and ndim (<= KILN_PLUGIN_MAX_RANK),
     *           writes the dims into shape[0..ndim), and sets data to memory from host->alloc holding the
     *           elements compact row-major. The plugin must not change shape, strides or byte_offset. Every
     *           data pointer placed in outputs belongs to the host from that moment, whether execute then
     *           succeeds or fails (the host frees it with host->free): the plugin never frees it.
     *           (1.2) With KILN_PLUGIN_BACKEND_DEVICE_BUFFERS, the host may prepare an output with device
     *           {KILN_PLUGIN_DEVICE_BUFFER, d} instead: the plugin then sets data to a new buffer on device
     *           d holding the elements (as if from buffer_alloc; at least their size) and leaves the device
     *           as it is. The host owns that buffer from that moment, like host memory above, and releases
     *           it with buffer_free. This is how a value passes from one partition to the next on one
     *           device without a copy through host memory. */
    kiln_plugin_error *(*execute)(void *context, void *executable, const kiln_tensor *inputs, size_t input_count,
                                  kiln_tensor *outputs, size_t output_count);

    /* Releases an executable from load. Called exactly once per executable, after its last execute. */
    void (*unload)(void *context, void *executable);

    /* Releases the `owner` token of a kiln_plugin_claim, kiln_plugin_payload, (1.2)
     * kiln_plugin_device_list or (1.4) kiln_plugin_profile the plugin filled in. Called exactly once per non-NULL owner. */
    void (*release)(void *context, void *owner);

    /* ---- appended in 1.2 ---- */

    /* The devices this backend can run on here: fills *out. The list's order is fixed while the plugin
     * is loaded (an index names the same device every time); the facts may change between calls (free
     * memory, counters). NULL = one device, the host CPU (what a 1.0 host assumes). */
    kiln_plugin_error *(*devices)(void *context, kiln_plugin_device_list *out);

    /* Like load, onto the device options->device (an index into the device list; the host checks it is
     * in range). NULL = the backend loads onto device 0 only, through load. When set, the host calls it
     * for every load, and load is used only by 1.0 hosts. */
    kiln_plugin_error *(*load_with_options)(void *context, const kiln_plugin_bytes *payload, const kiln_plugin_bytes *graph,
                                            const kiln_plugin_load_options *options, void **out_executable);

    /* The target names this backend compiles for besides "host" ("npu-nc2", "npu-nc3"): a compile
     * option's target may be any of them. target_count 0 (or targets NULL) = none. Plugin-owned, static
     * until shutdown. */
    size_t target_count;
    const char *const *targets;

    /* Device buffers: required when flags has KILN_PLUGIN_BACKEND_DEVICE_BUFFERS, ignored otherwise. A
     * buffer is a plugin handle (not a host address) for `size` bytes of device `device`'s memory.
     * buffer_alloc: a new buffer of `size` bytes (0 allowed) on device `device`; on success
     *   *out_buffer is non-NULL and owned by the host, which releases it with buffer_free.
     * buffer_free: releases a buffer from buffer_alloc or from execute's outputs. Called exactly once per
     *   buffer, never while an execute that reads it runs. NULL does nothing.
     * buffer_write: copies `size` bytes from host memory `source` (borrowed) into the buffer at byte
     *   `offset` (host → device). An out-of-range offset/size is an error, never a crash.
     * buffer_read: copies `size` bytes of the buffer from byte `offset` into host memory `destination`
     *   (host-owned; device → host). Out of range is an error. */
    kiln_plugin_error *(*buffer_alloc)(void *context, uint32_t device, size_t size, void **out_buffer);
    void (*buffer_free)(void *context, void *buffer);
    kiln_plugin_error *(*buffer_write)(void *context, void *buffer, size_t offset, const void *source, size_t size);
    kiln_plugin_error *(*buffer_read)(void *context, const void *buffer, size_t offset, void *destination, size_t size);

    /* ---- appended in 1.3 ---- */

    /* The compile options this backend takes (kiln_plugin_option above), as an array of option_count
     * pointers. option_count 0 (or options NULL) = none: the host then passes none to compile.
     * Plugin-owned, static until shutdown. */
    size_t option_count;
    const kiln_plugin_option *const *options;

    /* ---- appended in 1.4 ---- */

    /* The steps of `executable`'s last successful execute, as the device (or its simulator) timed them:
     * fills *out. The host calls it right after an execute returned success, when the user asked for a
     * profile (`kiln run --profile`), and never while another execute of the same executable runs.
     * NULL = the backend reports no profile. */
    kiln_plugin_error *(*profile)(void *context, void *executable, kiln_plugin_profile *out);

    /* ---- appended in 1.5 ---- */

    /* The fewest connected nodes worth giving this backend when the user sets no minimum group size
     * (`kiln compile --min-group-size`): a smaller group runs on the host's fallback backend instead, since each
     * partition boundary costs copies to and from the device. 0 = the host's default (1: keep every group). */
    uint32_t min_group_size;
} kiln_plugin_backend;

/* ---------------------------------------------------------------------------------------------- */
/* The plugin and its entry symbol                                                                */
/* ---------------------------------------------------------------------------------------------- */

/* What the entry returns. Plugin-owned; valid (with everything it points to) until shutdown returns. */
typedef struct kiln_plugin_header {
    /* Frozen forever: every ABI major starts its header with these three fields. */
    size_t struct_size;                /* sizeof(kiln_plugin_header) as the plugin compiled it */
    uint32_t abi_major;                /* the ABI the plugin speaks: must lie in the host's range */
    uint32_t abi_minor;

    const char *name;                  /* the plugin's name, e.g. "acme-npu". Plugin-owned. */
    const char *vendor;                /* Plugin-owned. */
    const char *version;               /* the plugin's semantic version. Plugin-owned. */
    size_t backend_count;              /* at least 1 */
    const kiln_plugin_backend *const *backends; /* backend_count pointers (pointers, not an array of
                                          structs, because kiln_plugin_backend grows across minors).
                                          Plugin-owned. */
    void *context;                     /* the plugin's, passed to shutdown */

    /* Called once, after every executable was unloaded and every owner released, just before the host
     * dlcloses the library. May be NULL (nothing to do). */
    void (*shutdown)(void *context);
} kiln_plugin_header;

/* The entry point of ABI major 1. The host loads each library file at most once per process (loading it
 * again by another path returns the first load), and calls this once per load, with `host`
 * (host-owned, valid until shutdown). On success the plugin sets *out_header to its header (plugin-owned)
 * and returns NULL. A plugin that speaks no version inside [host->abi_min, host->abi_max] returns an
 * error (KILN_ERROR_VERSION_MISMATCH) naming the versions it speaks. */
typedef kiln_plugin_error *(*kiln_plugin_query_v1_fn)(const kiln_plugin_host *host,
                                                      const kiln_plugin_header **out_header);

KILN_PLUGIN_EXPORT kiln_plugin_error *kiln_plugin_query_v1(const kiln_plugin_host *host,
                                                           const kiln_plugin_header **out_header);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KILN_PLUGIN_H */
