// test_kiln — exercises kiln.hpp on the test model that Tests/KilnCTests builds:
//     x: f32[batch, 4]  →  y: f32[batch, 3] = Relu(x · W + b),  s: i64[2] = Shape(x),  xi = Identity(x)
//
//   test_kiln MODEL.onnx
//
// Prints "value NAME DIMS: v0 v1 …" for each output of a run on x = [[0.0 … 0.3], [0.4 … 0.7]] (the Swift
// test compares them with kiln.reference), then "ok NAME" / "FAIL NAME: why" per check; exits 1 on a failure.
#include "kiln.hpp"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <type_traits>

namespace {
int failures = 0;

void expect(bool condition, const char *name, const std::string &why = "") {
    if (condition) {
        std::printf("ok %s\n", name);
    } else {
        std::printf("FAIL %s: %s\n", name, why.c_str());
        failures++;
    }
}

/// Runs `body`, expecting a kiln::Error with `code` whose message contains `part`.
template <class Body> void expect_error(Body body, int32_t code, const std::string &part, const char *name) {
    try {
        body();
        expect(false, name, "no exception");
    } catch (const kiln::Error &e) {
        expect(e.code() == code && std::string(e.what()).find(part) != std::string::npos, name,
               "code " + std::to_string(e.code()) + ": " + e.what());
    }
}

std::string dims(const std::vector<int64_t> &shape) {
    std::string s;
    for (size_t i = 0; i < shape.size(); i++) s += (i ? "," : "") + std::to_string(shape[i]);
    return s;
}
} // namespace

int main(int argc, char **argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: test_kiln MODEL.onnx\n");
        return 2;
    }
    static_assert(!std::is_copy_constructible<kiln::Model>::value, "handles are move-only");
    static_assert(std::is_nothrow_move_constructible<kiln::Model>::value, "handles move without throwing");
    try {
        expect(!kiln::version().empty(), "version");
        kiln::Context context;
        auto backends = context.backends();
        expect(!backends.empty() && backends[0] == "kiln.cpu", "backends");

        kiln::Model loaded = context.load(argv[1]);
        kiln::Model model = std::move(loaded); // ownership moves; `loaded` is empty
        expect(loaded.get() == nullptr && model.get() != nullptr, "move");
        expect(model.input_count() == 1 && model.output_count() == 3, "counts");
        kiln::ValueInfo x_info = model.input(0);
        expect(x_info.name == "x" && x_info.rank == 2 && x_info.dims == std::vector<int64_t>{-1, 4} &&
                   x_info.dim_names[0] == "batch" && x_info.dim_names[1].empty() && kiln::same_dtype(x_info.dtype, kiln::dtype_of<float>()),
               "input_info");
        expect(model.output(1).name == "s" && kiln::same_dtype(model.output(1).dtype, kiln::dtype_of<int64_t>()), "output_info");
        auto partition = model.partition();
        expect(partition.size() == 5 && partition[0].node == "matmul" && partition[0].backend == "kiln.cpu", "partition");

        std::vector<float> x{0.0f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f};
        std::vector<int64_t> x_shape{2, 4};
        kiln::Outputs out = model.run({kiln::tensor(x.data(), x_shape)});
        for (size_t i = 0; i < out.size(); i++) {
            std::printf("value %s %s:", out.name(i).c_str(), dims(out.shape(i)).c_str());
            if (kiln::same_dtype(out.tensor(i).dtype, kiln::dtype_of<float>())) {
                for (float v : out.copy<float>(i)) std::printf(" %.9g", static_cast<double>(v));
            } else {
                for (int64_t v : out.copy<int64_t>(i)) std::printf(" %lld", static_cast<long long>(v));
            }
            std::printf("\n");
        }
        std::vector<float> y = out.copy<float>(0);
        expect_error([&] { out.copy<double>(0); }, KILN_ERROR_INVALID_ARGUMENT, "'y'", "copy_wrong_type");

        // Caller-provided outputs.
        std::vector<float> y2(6), xi(8);
        std::vector<int64_t> s(2), y_shape{2, 3}, s_shape{2}, xi_shape{2, 4};
        std::vector<kiln_tensor> outputs{kiln::tensor(y2.data(), y_shape), kiln::tensor(s.data(), s_shape), kiln::tensor(xi.data(), xi_shape)};
        model.run({kiln::tensor(x.data(), x_shape)}, outputs);
        expect(y2 == y && s == std::vector<int64_t>{2, 4} && xi == x, "caller_outputs");

        // Errors carry the code and a message naming what is wrong.
        std::vector<int64_t> bad_shape{2, 5};
        std::vector<float> bad(10);
        expect_error([&] { model.run({kiln::tensor(bad.data(), bad_shape)}); }, KILN_ERROR_INVALID_ARGUMENT, "input 'x'", "wrong_input_shape");
        std::vector<double> wide(8);
        expect_error([&] { model.run({kiln::tensor(wide.data(), x_shape)}); }, KILN_ERROR_INVALID_ARGUMENT, "f64", "wrong_input_dtype");
        expect_error([&] { context.load("/no/such/file.onnx"); }, KILN_ERROR_IO, "/no/such/file.onnx", "missing_file");
        expect_error([&] { kiln::Context("no.such.backend"); }, KILN_ERROR_INVALID_ARGUMENT, "no.such.backend", "unknown_backend");

        // Loading from memory.
        std::ifstream file(argv[1], std::ios::binary);
        std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
        kiln::Model from_memory = context.load(bytes.data(), bytes.size());
        bytes.assign(bytes.size(), 0);
        expect(from_memory.run({kiln::tensor(x.data(), x_shape)}).copy<float>(0) == y, "load_memory");

        // Compiling to an artifact in memory and running it.
        std::ifstream again(argv[1], std::ios::binary);
        std::vector<char> onnx((std::istreambuf_iterator<char>(again)), std::istreambuf_iterator<char>());
        std::vector<uint8_t> artifact = context.compile(onnx.data(), onnx.size());
        expect(artifact.size() > 8 && artifact[0] == 'K' && artifact[1] == 'I' && artifact[2] == 'L' && artifact[3] == 'N', "compile_memory");
        kiln::Model compiled = context.load(artifact.data(), artifact.size());
        expect(compiled.run({kiln::tensor(x.data(), x_shape)}).copy<float>(0) == y, "compiled_artifact");
        kiln::CompileOptions options;
        options.options["no_such_option"] = "1";
        expect_error([&] { context.compile(onnx.data(), onnx.size(), options); }, KILN_ERROR_INVALID_ARGUMENT, "no_such_option",
                     "unknown_compile_option");
    } catch (const kiln::Error &e) {
        std::printf("FAIL unexpected kiln::Error %d: %s\n", e.code(), e.what());
        return 1;
    }
    std::printf("%s: %d failure(s)\n", failures ? "FAILED" : "PASSED", failures);
    return failures ? 1 : 0;
}
