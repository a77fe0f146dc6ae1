"""Models quantized by ONNX Runtime's own tools import and run on kiln.reference: quantize_static in QDQ form
(QuantizeLinear/DequantizeLinear around float ops) and in QOperator form (QLinearConv, QLinearMatMul and the
com.microsoft QLinearAdd/QLinearMul/QLinearGlobalAveragePool/QLinearConcat/QLinearSigmoid/QLinearSoftmax contrib
ops), and quantize_dynamic (DynamicQuantizeLinear, MatMulInteger, ConvInteger). Kiln's outputs are compared with
ORT running the same quantized model: QOperator and dynamic models compute the same integer arithmetic (within
one output step); a QDQ graph is computed in float between its pairs by kiln.reference, which ORT fuses into
integer kernels, so it gets a looser bound.
"""
import logging

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from differential import compile_with_no_flags, onnxruntime_outputs, run_kiln


def _ort_saturates_u8s8():
    """Whether ONNX Runtime's uint8 × int8 kernels may saturate here: on x86 CPUs without VNNI (AVX512-VNNI or
    AVX-VNNI), ORT multiplies with vpmaddubsw, which adds each pair of products into a saturating int16, so its
    answer for full-range int8 weights is not the exact integer arithmetic these tests compare against (ORT's
    quantization guide says so and offers reduce_range). With 7-bit weights (`reduce_range=True`) no pair can
    saturate (2 × 255 × 64 < 32768), so the tests quantize that way there."""
    import platform
    if platform.machine() not in ("x86_64", "AMD64", "i686"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return True
    return not ({"avx512_vnni", "avx_vnni"} & set(flags))


REDUCE_RANGE = _ort_saturates_u8s8()


def small_cnn(path):
    """x[1,3,16,16] -> Conv -> Relu -> Conv, + residual Conv (Add), Mul, Sigmoid, Concat, GlobalAveragePool,
    Flatten, Gemm -> Softmax, seeded weights."""
    rng = np.random.default_rng(4)

    def w(name, *shape, s=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * s).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), w("b1", 8, s=0.1), w("w2", 8, 8, 3, 3, s=0.1), w("b2", 8, s=0.1),
             w("w3", 8, 3, 1, 1), w("b3", 8, s=0.1), w("w4", 10, 16), w("b4", 10, s=0.1)]
    pads = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], **pads),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], **pads),
        helper.make_node("Conv", ["x", "w3", "b3"], ["c3"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "c3"], ["s"]),
        helper.make_node("Mul", ["s", "c3"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["g"]),
        helper.make_node("Concat", ["s", "g"], ["cat"], axis=1),
        helper.make_node("GlobalAveragePool", ["cat"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("Gemm", ["f", "w4", "b4"], ["logits"], transB=1),
        helper.make_node("Softmax", ["logits"], ["y"], axis=-1),
    ]
    graph = helper.make_graph(nodes, "cnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def images(n, seed):
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, (1, 3, 16, 16)).astype(np.float32)} for _ in range(n)]


def quantized(tmp_path, form):
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    logging.getLogger().setLevel(logging.ERROR)
    src, dst = str(tmp_path / "float.onnx"), str(tmp_path / f"{form}.onnx")
    small_cnn(src)
    if form == "dynamic":
        quantize_dynamic(src, dst, weight_type=QuantType.QUInt8, op_types_to_quantize=["Conv", "MatMul", "Gemm"])
        return dst

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(images(8, 1))

        def get_next(self):
            return next(self.items, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QDQ if form == "qdq" else QuantFormat.QOperator,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    reduce_range=REDUCE_RANGE)
    return dst


@pytest.mark.parametrize("form,bound", [("qoperator", 1 / 255 + 1e-6), ("dynamic", 0.02), ("qdq", 0.05)])
def test_ort_quantized_models_run_on_kiln_reference(form, bound, tmp_path):
    model = quantized(tmp_path, form)
    ops = {(n.domain, n.op_type) for n in onnx.load(model).graph.node}
    if form == "qoperator":
        assert {("com.microsoft", "QLinearAdd"), ("com.microsoft", "QLinearMul"), ("", "QLinearConv")} <= ops, ops
    if form == "dynamic":
        assert ("", "DynamicQuantizeLinear") in ops, ops
    for i, sample in enumerate(images(3, 100)):
        expected = onnxruntime_outputs(model, sample)
        out = tmp_path / f"run{i}"
        out.mkdir()
        run_kiln(model, sample, out, "--backend", "kiln.reference")
        got = np.load(out / "out" / "y.npy")
        err = float(np.abs(got - expected["y"]).max())
        assert err <= bound, f"{form}: max |kiln - ort| {err:.4g} > {bound:.4g} ({got} vs {expected['y']})"


def small_lstm(path, direction, hidden=24, seq=7, batch=2, size=10):
    """x[seq, batch, size] -> LSTM (seeded weights and biases, `direction`) -> Y, Y_h, Y_c."""
    rng = np.random.default_rng(9)
    dirs = 2 if direction == "bidirectional" else 1
    inits = [numpy_helper.from_array((rng.standard_normal((dirs, 4 * hidden, size)) * 0.3).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((dirs, 4 * hidden, hidden)) * 0.3).astype(np.float32), "R"),
             numpy_helper.from_array((rng.standard_normal((dirs, 8 * hidden)) * 0.1).astype(np.float32), "B")]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["y", "y_h", "y_c"], hidden_size=hidden, direction=direction)
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, dirs, batch, hidden]),
            helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [dirs, batch, hidden]),
            helper.make_tensor_value_info("y_c", TensorProto.FLOAT, [dirs, batch, hidden])]
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, size])],
                              outs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


@pytest.mark.parametrize("backend", ["kiln.cpu", "kiln.reference"])
@pytest.mark.parametrize("direction, weights", [("forward", "int8"), ("reverse", "int8"), ("bidirectional", "int8"),
                                                ("bidirectional", "int8 per column")])
def test_dynamically_quantized_lstm_matches_onnxruntime(direction, weights, backend, tmp_path):
    """quantize_dynamic turns an LSTM into com.microsoft.DynamicQuantizeLSTM (int8 weights, transposed; X and
    each step's hidden state quantized to uint8 on the fly). kiln.cpu (integer GEMMs, what `kiln compile` picks
    with no flags) and kiln.reference compute the same integer products, so they agree with ORT to float
    rounding, far below one quantization step of the hidden state."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    logging.getLogger().setLevel(logging.ERROR)
    src, dst = str(tmp_path / "float.onnx"), str(tmp_path / "dynamic.onnx")
    small_lstm(src, direction)
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8, per_channel=weights == "int8 per column",
                     op_types_to_quantize=["LSTM"], reduce_range=REDUCE_RANGE)
    ops = {(n.domain, n.op_type) for n in onnx.load(dst).graph.node}
    assert ("com.microsoft", "DynamicQuantizeLSTM") in ops, ops
    rng = np.random.default_rng(12)
    sample = {"x": rng.uniform(-1, 1, (7, 2, 10)).astype(np.float32)}
    # ORT with one thread: with several, ORT quantizes each thread's share of the batch's hidden state on its
    # own range, so its answer for batch > 1 depends on its thread count; with one, the whole batch shares one
    # range, as in kiln.reference.
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(dst, options, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, sample)))
    float_expected = onnxruntime_outputs(src, sample)
    out = tmp_path / "run"
    out.mkdir()
    if backend == "kiln.cpu":
        artifact, fallback = compile_with_no_flags(dst, tmp_path)
        assert fallback.startswith("fallback: none"), fallback
        run_kiln(artifact, sample, out)
    else:
        run_kiln(dst, sample, out, "--backend", backend)
    for name in ("y", "y_h", "y_c"):
        got = np.load(out / "out" / f"{name}.npy")
        err = float(np.abs(got - expected[name]).max())
        assert err <= 1e-5, f"{direction}/{name}: max |kiln - ort| {err:.3g}"
        # The quantized model differs from the float one, so agreeing with ORT's quantized answer means
        # something: it is not the float LSTM's answer.
        assert float(np.abs(expected[name] - float_expected[name]).max()) > 1e-3


def test_dynamically_quantized_lstm_with_uint8_weights_and_zero_points(tmp_path):
    """A DynamicQuantizeLSTM written directly, with uint8 weights around zero point 128, initial states and
    peepholes (which quantize_dynamic never writes): kiln.cpu with no flags gives ORT's answer (one thread)."""
    rng = np.random.default_rng(21)
    seq, batch, size, hidden = 5, 3, 12, 20
    gh = 4 * hidden

    def u8(*shape):
        return numpy_helper.from_array(rng.integers(80, 176, shape).astype(np.uint8))

    inits = {"W": u8(1, size, gh), "R": u8(1, hidden, gh),
             "B": numpy_helper.from_array((rng.standard_normal((1, 2 * gh)) * 0.1).astype(np.float32)),
             "h0": numpy_helper.from_array((rng.standard_normal((1, batch, hidden)) * 0.5).astype(np.float32)),
             "c0": numpy_helper.from_array((rng.standard_normal((1, batch, hidden)) * 0.5).astype(np.float32)),
             "P": numpy_helper.from_array((rng.standard_normal((1, 3 * hidden)) * 0.2).astype(np.float32)),
             "ws": numpy_helper.from_array(np.array([0.01], np.float32)), "wz": numpy_helper.from_array(np.array([128], np.uint8)),
             "rs": numpy_helper.from_array(np.array([0.02], np.float32)), "rz": numpy_helper.from_array(np.array([128], np.uint8))}
    for name, t in inits.items():
        t.name = name
    node = helper.make_node("DynamicQuantizeLSTM", ["x", "W", "R", "B", "", "h0", "c0", "P", "ws", "wz", "rs", "rz"],
                            ["y", "y_h", "y_c"], domain="com.microsoft", hidden_size=hidden)
    outs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [seq, 1, batch, hidden]),
            helper.make_tensor_value_info("y_h", TensorProto.FLOAT, [1, batch, hidden]),
            helper.make_tensor_value_info("y_c", TensorProto.FLOAT, [1, batch, hidden])]
    graph = helper.make_graph([node], "qlstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [seq, batch, size])],
                              outs, list(inits.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    path = str(tmp_path / "qlstm.onnx")
    onnx.save(model, path)
    sample = {"x": rng.uniform(-1, 1, (seq, batch, size)).astype(np.float32)}
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    expected = dict(zip([o.name for o in session.get_outputs()], session.run(None, sample)))
    artifact, fallback = compile_with_no_flags(path, tmp_path)
    assert fallback.startswith("fallback: none"), fallback
    out = tmp_path / "run"
    out.mkdir()
    run_kiln(artifact, sample, out)
    for name in ("y", "y_h", "y_c"):
        err = float(np.abs(np.load(out / "out" / f"{name}.npy") - expected[name]).max())
        assert err <= 1e-5, f"{name}: max |kiln - ort| {err:.3g}"


def test_ort_quantized_average_pooling_runs(tmp_path):
    """quantize_static in QOperator form writes com.microsoft QLinearAveragePool for an AveragePool (padded, with and
    without count_include_pad): kiln runs it (kiln.reference, as the fallback of a no-flags compile) and gives ORT's
    answer within one quantum of the output."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    logging.getLogger().setLevel(logging.ERROR)
    rng = np.random.default_rng(31)
    inits = [numpy_helper.from_array((rng.standard_normal((6, 3, 3, 3)) * 0.3).astype(np.float32), "w1"),
             numpy_helper.from_array((rng.standard_normal((6, 6, 1, 1)) * 0.3).astype(np.float32), "w2")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["c1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("AveragePool", ["p1"], ["p2"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1),
             helper.make_node("Conv", ["p2", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "pool", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 15, 15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 8, 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    src, dst = str(tmp_path / "float.onnx"), str(tmp_path / "q.onnx")
    onnx.save(model, src)
    samples = [{"x": rng.uniform(-1, 1, (1, 3, 15, 15)).astype(np.float32)} for _ in range(6)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(samples[:4])

        def get_next(self):
            return next(self.items, None)

    quantize_static(src, dst, Reader(), quant_format=QuantFormat.QOperator, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE)
    q = onnx.load(dst)
    assert sum(n.op_type == "QLinearAveragePool" for n in q.graph.node) == 2, [n.op_type for n in q.graph.node]
    y_scale = [numpy_helper.to_array(i) for i in q.graph.initializer if i.name.startswith("y_scale")]
    artifact, _ = compile_with_no_flags(dst, tmp_path)
    for i, sample in enumerate(samples[4:]):
        expected = onnxruntime_outputs(dst, sample)
        out = tmp_path / f"run{i}"
        out.mkdir()
        run_kiln(artifact, sample, out)
        err = float(np.abs(np.load(out / "out" / "y.npy") - expected["y"]).max())
        bound = float(y_scale[0]) * 1.01 if y_scale else 1e-2
        assert err <= bound, f"max |kiln - ort| {err:.4g} > {bound:.4g}"
