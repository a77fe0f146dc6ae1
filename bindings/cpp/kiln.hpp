// kiln.hpp — a header-only C++17 wrapper over Kiln's C API (include/kiln/kiln.h).
//
// Handles are move-only RAII objects (std::unique_ptr with the matching kiln_*_free); every kiln_error
// becomes a kiln::Error exception carrying the code and the message. Link with libkiln
// (`pkg-config --cflags --libs kiln`).
//
//   kiln::Context context;
//   kiln::Model model = context.load("model.kiln");
//   std::vector<float> x(1 * 4);
//   std::vector<int64_t> shape{1, 4};
//   kiln::Outputs out = model.run({kiln::tensor(x.data(), shape)});
//   std::vector<float> y = out.copy<float>(0);
#ifndef KILN_KILN_HPP
#define KILN_KILN_HPP

#include <kiln/kiln.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace kiln {

/// A failed Kiln call: the C error's code (KILN_ERROR_*) and message.
class Error : public std::runtime_error {
public:
    Error(int32_t code, const std::string &message) : std::runtime_error(message), code_(code) {}
    /// One of the KILN_ERROR_* numbers.
    int32_t code() const noexcept { return code_; }

private:
    int32_t code_;
};

namespace detail {
/// Throws kiln::Error for a non-NULL error, after freeing it.
inline void check(kiln_error *error) {
    if (error == nullptr) return;
    Error exception(kiln_error_code(error), kiln_error_message(error));
    kiln_error_free(error);
    throw exception;
}

template <class T, void (*Free)(T *)> struct Deleter {
    void operator()(T *p) const noexcept { Free(p); }
};
template <class T, void (*Free)(T *)> using Owned = std::unique_ptr<T, Deleter<T, Free>>;
} // namespace detail

/// The DLPack dtype of a C++ element type.
template <class T> kiln_dtype dtype_of();
template <> inline kiln_dtype dtype_of<float>() { return {KILN_DTYPE_FLOAT, 32, 1}; }
template <> inline kiln_dtype dtype_of<double>() { return {KILN_DTYPE_FLOAT, 64, 1}; }
template <> inline kiln_dtype dtype_of<int8_t>() { return {KILN_DTYPE_INT, 8, 1}; }
template <> inline kiln_dtype dtype_of<int16_t>() { return {KILN_DTYPE_INT, 16, 1}; }
template <> inline kiln_dtype dtype_of<int32_t>() { return {KILN_DTYPE_INT, 32, 1}; }
template <> inline kiln_dtype dtype_of<int64_t>() { return {KILN_DTYPE_INT, 64, 1}; }
template <> inline kiln_dtype dtype_of<uint8_t>() { return {KILN_DTYPE_UINT, 8, 1}; }
template <> inline kiln_dtype dtype_of<uint16_t>() { return {KILN_DTYPE_UINT, 16, 1}; }
template <> inline kiln_dtype dtype_of<uint32_t>() { return {KILN_DTYPE_UINT, 32, 1}; }
template <> inline kiln_dtype dtype_of<uint64_t>() { return {KILN_DTYPE_UINT, 64, 1}; }
template <> inline kiln_dtype dtype_of<bool>() { return {KILN_DTYPE_BOOL, 8, 1}; }

/// Whether two dtypes are the same.
inline bool same_dtype(const kiln_dtype &a, const kiln_dtype &b) { return a.code == b.code && a.bits == b.bits && a.lanes == b.lanes; }

/// A compact row-major host tensor over `data` with `shape`. Non-owning: `data` and `shape` must outlive
/// every use of the returned struct.
template <class T> kiln_tensor tensor(T *data, std::vector<int64_t> &shape) {
    kiln_tensor t{};
    t.data = const_cast<void *>(static_cast<const void *>(data));
    t.device = {KILN_DEVICE_CPU, 0};
    t.ndim = static_cast<int32_t>(shape.size());
    t.dtype = dtype_of<typename std::remove_const<T>::type>();
    t.shape = shape.empty() ? nullptr : shape.data();
    t.strides = nullptr;
    t.byte_offset = 0;
    return t;
}

/// A model input or output.
struct ValueInfo {
    std::string name;
    kiln_dtype dtype{};
    int32_t elem_type = 0;             ///< ONNX TensorProto.DataType; 0 for a non-tensor
    int32_t rank = -1;                 ///< -1: unknown
    std::vector<int64_t> dims;         ///< -1 for symbolic or unknown dims
    std::vector<std::string> dim_names; ///< the symbol, or "" for fixed and unknown dims
};

/// One partition-report line.
struct PartitionEntry {
    std::string node, op, backend, reason;
};

/// Outputs allocated by the runtime (owns them; move-only).
class Outputs {
public:
    explicit Outputs(kiln_outputs *outputs) : outputs_(outputs) {}

    size_t size() const {
        size_t n = 0;
        detail::check(kiln_outputs_count(outputs_.get(), &n));
        return n;
    }
    std::string name(size_t i) const {
        const char *name = nullptr;
        detail::check(kiln_outputs_name(outputs_.get(), i, &name));
        return name;
    }
    /// A view of output `i`, valid while this object lives. Read-only data.
    kiln_tensor tensor(size_t i) const {
        kiln_tensor t{};
        detail::check(kiln_outputs_get(outputs_.get(), i, &t));
        return t;
    }
    /// Output `i`'s shape.
    std::vector<int64_t> shape(size_t i) const {
        kiln_tensor t = tensor(i);
        return std::vector<int64_t>(t.shape, t.shape + t.ndim);
    }
    /// A copy of output `i`'s elements; throws kiln::Error (KILN_ERROR_INVALID_ARGUMENT) if T is not its type.
    template <class T> std::vector<T> copy(size_t i) const {
        kiln_tensor t = tensor(i);
        if (!same_dtype(t.dtype, dtype_of<T>())) {
            throw Error(KILN_ERROR_INVALID_ARGUMENT, "output '" + name(i) + "' does not hold elements of the requested type");
        }
        size_t count = 1;
        for (int32_t d = 0; d < t.ndim; d++) count *= static_cast<size_t>(t.shape[d]);
        std::vector<T> values(count);
        if (count) std::memcpy(values.data(), t.data, count * sizeof(T));
        return values;
    }
    kiln_outputs *get() const noexcept { return outputs_.get(); }

private:
    detail::Owned<kiln_outputs, kiln_outputs_free> outputs_;
};

/// A loaded model (move-only).
class Model {
public:
    explicit Model(kiln_model *model) : model_(model) {}

    size_t input_count() const {
        size_t n = 0;
        detail::check(kiln_model_input_count(model_.get(), &n));
        return n;
    }
    size_t output_count() const {
        size_t n = 0;
        detail::check(kiln_model_output_count(model_.get(), &n));
        return n;
    }
    ValueInfo input(size_t i) const { return describe(i, kiln_model_input); }
    ValueInfo output(size_t i) const { return describe(i, kiln_model_output); }

    std::vector<PartitionEntry> partition() const {
        size_t n = 0;
        detail::check(kiln_model_partition_count(model_.get(), &n));
        std::vector<PartitionEntry> entries;
        for (size_t i = 0; i < n; i++) {
            kiln_partition_entry e{};
            e.struct_size = sizeof e;
            detail::check(kiln_model_partition_entry(model_.get(), i, &e));
            entries.push_back({e.node, e.op, e.backend, e.reason});
        }
        return entries;
    }

    /// Runs with runtime-allocated outputs. `inputs` in model-input order.
    Outputs run(const std::vector<kiln_tensor> &inputs) const {
        kiln_outputs *outputs = nullptr;
        detail::check(kiln_run_alloc(model_.get(), inputs.data(), inputs.size(), nullptr, &outputs));
        return Outputs(outputs);
    }
    /// Runs into caller-provided outputs (dtypes and shapes are checked before anything is written).
    void run(const std::vector<kiln_tensor> &inputs, std::vector<kiln_tensor> &outputs) const {
        detail::check(kiln_run(model_.get(), inputs.data(), inputs.size(), outputs.data(), outputs.size(), nullptr));
    }
    kiln_model *get() const noexcept { return model_.get(); }

private:
    ValueInfo describe(size_t i, kiln_error *(*query)(const kiln_model *, size_t, kiln_value_info *)) const {
        kiln_value_info info{};
        info.struct_size = sizeof info;
        detail::check(query(model_.get(), i, &info));
        ValueInfo v;
        v.name = info.name;
        v.dtype = info.dtype;
        v.elem_type = info.elem_type;
        v.rank = info.rank;
        for (int32_t d = 0; d < info.rank; d++) {
            v.dims.push_back(info.dims[d]);
            v.dim_names.push_back(info.dim_names[d] ? info.dim_names[d] : "");
        }
        return v;
    }

    detail::Owned<kiln_model, kiln_model_free> model_;
};

/// Compile options: a target and key/value pairs.
struct CompileOptions {
    std::string target = "host";
    std::map<std::string, std::string> options;
};

/// A context: the backends models load onto (move-only).
class Context {
public:
    /// A context whose models run on `default_backend` (empty: Kiln's default).
    explicit Context(const std::string &default_backend = "") {
        kiln_context_options options{};
        options.struct_size = sizeof options;
        options.default_backend = default_backend.empty() ? nullptr : default_backend.c_str();
        kiln_context *context = nullptr;
        detail::check(kiln_context_create(&options, &context));
        context_.reset(context);
    }

    std::vector<std::string> backends() const {
        size_t n = 0;
        detail::check(kiln_context_backend_count(context_.get(), &n));
        std::vector<std::string> names;
        for (size_t i = 0; i < n; i++) {
            const char *name = nullptr;
            detail::check(kiln_context_backend_name(context_.get(), i, &name));
            names.push_back(name);
        }
        return names;
    }

    /// Loads an ONNX model or .kiln artifact from a file.
    Model load(const std::string &path, const std::string &backend = "", int32_t num_threads = 0) const {
        kiln_load_options options = load_options(backend, num_threads);
        kiln_model *model = nullptr;
        detail::check(kiln_model_load_file(context_.get(), path.c_str(), &options, &model));
        return Model(model);
    }
    /// Loads an ONNX model or .kiln artifact from memory (the bytes are copied).
    Model load(const void *data, size_t size, const std::string &backend = "", int32_t num_threads = 0) const {
        kiln_load_options options = load_options(backend, num_threads);
        kiln_model *model = nullptr;
        detail::check(kiln_model_load_memory(context_.get(), data, size, &options, &model));
        return Model(model);
    }

    /// Compiles an ONNX model file into a .kiln artifact file.
    void compile(const std::string &model_path, const std::string &artifact_path, const CompileOptions &options = {}) const {
        Pairs pairs(options);
        kiln_compile_options c = pairs.c_options(options);
        detail::check(kiln_compile_file(context_.get(), model_path.c_str(), artifact_path.c_str(), &c));
    }
    /// Compiles an ONNX model in memory into .kiln artifact bytes.
    std::vector<uint8_t> compile(const void *data, size_t size, const CompileOptions &options = {}) const {
        Pairs pairs(options);
        kiln_compile_options c = pairs.c_options(options);
        kiln_blob *blob = nullptr;
        detail::check(kiln_compile_memory(context_.get(), data, size, &c, &blob));
        detail::Owned<kiln_blob, kiln_blob_free> owned(blob);
        const uint8_t *bytes = static_cast<const uint8_t *>(kiln_blob_data(blob));
        return std::vector<uint8_t>(bytes, bytes + kiln_blob_size(blob));
    }
    kiln_context *get() const noexcept { return context_.get(); }

private:
    static kiln_load_options load_options(const std::string &backend, int32_t num_threads) {
        kiln_load_options options{};
        options.struct_size = sizeof options;
        options.backend = backend.empty() ? nullptr : backend.c_str();
        options.num_threads = num_threads;
        return options;
    }

    /// The C views of CompileOptions' key/value pairs (valid while this object and the options live).
    struct Pairs {
        std::vector<const char *> keys, values;
        explicit Pairs(const CompileOptions &options) {
            for (const auto &kv : options.options) {
                keys.push_back(kv.first.c_str());
                values.push_back(kv.second.c_str());
            }
        }
        kiln_compile_options c_options(const CompileOptions &options) const {
            kiln_compile_options c{};
            c.struct_size = sizeof c;
            c.target = options.target.c_str();
            c.option_keys = keys.data();
            c.option_values = values.data();
            c.option_count = keys.size();
            return c;
        }
    };

    detail::Owned<kiln_context, kiln_context_free> context_;
};

/// Kiln's release version.
inline std::string version() { return kiln_version(); }

} // namespace kiln

#endif // KILN_KILN_HPP
