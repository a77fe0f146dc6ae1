"""resnet_model.py — the ResNet-18-like test model of samplevta.fpga, float and quantized.

build_float(path, rng): a small ResNet-18-shaped CNN on a 1x3x32x32 input: a 3x3 stem (16 channels) with
ReLU, a 2x2 MaxPool, three basic blocks (16 channels at 16x16; 32 channels at 8x8 with a stride-2 3x3 and
a 1x1 stride-2 projection shortcut; 64 channels at 4x4 likewise), each ending in a residual Add and ReLU,
then GlobalAveragePool, Flatten and a 64->10 Gemm.

quantize(float_path, q_path, rng, pow2=True): onnxruntime.quantization.quantize_static in QDQ format
(int8 activations and weights, per-tensor, seeded random calibration data). With pow2, every scale of the
quantized graph is then rounded to a power of two (the bias scales set to the product of their input and
weight scales, the int8/int32 values kept): the power-of-two quantization VTA's own flow uses, and what
samplevta.fpga needs to requantize with a shift exactly (Documentation/targets/FPGA.md). `keep` names Gemm
nodes whose scales are left as quantize_static chose them, so that they must fall back to the host.
"""
import math

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static


def build_float(path, rng):
    inits, nodes = [], []

    def conv(name, x, cin, cout, k, stride, relu):
        w = (rng.standard_normal((cout, cin, k, k)) * (2.0 / (cin * k * k)) ** 0.5).astype(np.float32)
        b = (rng.standard_normal(cout) * 0.05).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")])
        p = k // 2
        nodes.append(helper.make_node("Conv", [x, name + ".w", name + ".b"], [name], name=name, kernel_shape=[k, k],
                                      pads=[p, p, p, p], strides=[stride, stride]))
        if relu:
            nodes.append(helper.make_node("Relu", [name], [name + ".r"], name=name + ".relu"))
            return name + ".r"
        return name

    def block(name, x, cin, cout, stride):
        h = conv(name + ".c1", x, cin, cout, 3, stride, True)
        h = conv(name + ".c2", h, cout, cout, 3, 1, False)
        s = x if stride == 1 and cin == cout else conv(name + ".down", x, cin, cout, 1, stride, False)
        nodes.append(helper.make_node("Add", [h, s], [name + ".add"], name=name + ".add"))
        nodes.append(helper.make_node("Relu", [name + ".add"], [name + ".out"], name=name + ".relu"))
        return name + ".out"

    h = conv("stem", "x", 3, 16, 3, 1, True)
    nodes.append(helper.make_node("MaxPool", [h], ["pool"], name="pool", kernel_shape=[2, 2], strides=[2, 2]))
    h = block("b1", "pool", 16, 16, 1)
    h = block("b2", h, 16, 32, 2)
    h = block("b3", h, 32, 64, 2)
    nodes.append(helper.make_node("GlobalAveragePool", [h], ["gap"], name="gap"))
    nodes.append(helper.make_node("Flatten", ["gap"], ["flat"], name="flat"))
    wf = (rng.standard_normal((10, 64)) * 0.125).astype(np.float32)
    bf = (rng.standard_normal(10) * 0.05).astype(np.float32)
    inits.extend([numpy_helper.from_array(wf, "fc.w"), numpy_helper.from_array(bf, "fc.b")])
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["y"], name="fc", transB=1))
    graph = helper.make_graph(nodes, "resnet18_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


class Reader(CalibrationDataReader):
    def __init__(self, rng, count=8):
        self.batches = iter([{"x": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(count)])

    def get_next(self):
        return next(self.batches, None)


def pow2_scales(model, keep=()):
    """Rounds every float scale initializer of Q/DQ nodes to a power of two (in place), except those only
    used by nodes feeding or fed by the Gemm nodes named in `keep`; bias scales become input × weight scale."""
    inits = {i.name: i for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    kept = set()
    for n in model.graph.node:
        if n.name in keep:
            for i in n.input:
                if i in producer and producer[i].op_type == "DequantizeLinear":
                    kept.add(producer[i].input[1])
    def snap(name):
        a = numpy_helper.to_array(inits[name]).astype(np.float64)
        r = np.exp2(np.round(np.log2(a))).astype(np.float32)
        inits[name].CopyFrom(numpy_helper.from_array(r, name))
    scales = set()
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[1] not in kept:
            scales.add(n.input[1])
    for s in sorted(scales):
        snap(s)
    # bias DequantizeLinear (int32 input): scale = input scale × weight scale of its consumer
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm") or len(n.input) < 3 or n.name in keep:
            continue
        dq = [producer[i] for i in n.input]
        sx, sw = (float(numpy_helper.to_array(inits[d.input[1]])) for d in dq[:2])
        bname = dq[2].input[1]
        inits[bname].CopyFrom(numpy_helper.from_array(np.array(sx * sw, dtype=np.float32), bname))


def quantize(float_path, q_path, rng, pow2=True, keep=(), keep_relus=False):
    """keep_relus: quantize_static's QDQKeepRemovableActivations (a Relu of its own between DequantizeLinear and
    QuantizeLinear instead of none)."""
    quantize_static(float_path, q_path, Reader(rng), quant_format=QuantFormat.QDQ, per_channel=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                    extra_options={"QDQKeepRemovableActivations": True} if keep_relus else None)
    model = onnx.load(q_path)
    if pow2:
        pow2_scales(model, keep)
    onnx.save(model, q_path)
    return model
