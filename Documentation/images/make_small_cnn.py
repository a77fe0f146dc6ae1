#!/usr/bin/env python3
"""Writes small-cnn.onnx, the model of the pictures in GettingStarted.md (needs the onnx package):

    .venv/bin/python Documentation/images/make_small_cnn.py out/small-cnn.onnx
    .build/release/kiln inspect out/small-cnn.onnx --svg Documentation/images/small-cnn-graph.svg
    .build/release/kiln run out/small-cnn.onnx --random --profile --html out/small-cnn-profile.html
    chromium --headless --no-sandbox --window-size=1000,560 --screenshot=Documentation/images/small-cnn-profile.png \
        file://$PWD/out/small-cnn-profile.html

A 1x3x64x64 image through Conv+Relu, MaxPool, LRN (which kiln.cpu leaves to kiln.reference), Conv+Relu,
GlobalAveragePool, Flatten, Gemm and Softmax, with seeded random weights.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(path: str) -> None:
    rng = np.random.default_rng(5)

    def weight(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["image", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("LRN", ["p1"], ["n1"], name="lrn1", size=3),
        helper.make_node("Conv", ["n1", "W2", "B2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "W3", "B3"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "small-cnn", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])],
        [weight("W1", 16, 3, 3, 3), weight("B1", 16), weight("W2", 32, 16, 3, 3), weight("B2", 32),
         weight("W3", 10, 32), weight("B3", 10)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "small-cnn.onnx")
