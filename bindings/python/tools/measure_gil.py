#!/usr/bin/env python3
"""Measures what releasing the GIL during `Model.run` buys: two Python threads, each running its own model,
concurrently versus the same runs one after the other.

    .venv/bin/python bindings/python/tools/measure_gil.py [--runs N] [--repeats R] [--size S] [--length L]

Each model is loaded with threads=1 (kiln.cpu's own pool off), so any speed-up comes from the two Python threads
running libkiln at once. The model is a chain of L MatMul+Tanh steps on SxS float32 matrices (built with the onnx
package). Prints the median over R repeats of: the sequential time (2 x N runs), the concurrent time, the
speed-up, and the core count; the figures in bindings/python/README.md come from this script.
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kiln  # noqa: E402


def chain_model(path: str, size: int, length: int) -> None:
    """Writes a chain of `length` MatMul+Tanh steps on size x size float32 matrices to `path`."""
    rng = np.random.default_rng(7)
    nodes, initializers, previous = [], [], "x"
    for k in range(length):
        initializers.append(numpy_helper.from_array(
            (rng.standard_normal((size, size)) / np.sqrt(size)).astype(np.float32), f"W{k}"))
        out = "y" if k == length - 1 else f"t{k}"
        nodes += [helper.make_node("MatMul", [previous, f"W{k}"], [f"m{k}"]), helper.make_node("Tanh", [f"m{k}"], [out])]
        previous = out
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per thread (default 20)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the whole measurement (default 5)")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--length", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "chain.onnx")
        chain_model(path, args.size, args.length)
        models = [kiln.load(path, threads=1), kiln.load(path, threads=1)]
        x = np.ones((args.size, args.size), np.float32) / args.size
        for m in models:
            m.run({"x": x})

        def work(model: kiln.Model) -> None:
            for _ in range(args.runs):
                model.run({"x": x})

        sequential, concurrent = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            work(models[0])
            work(models[1])
            sequential.append(time.perf_counter() - start)
            threads = [threading.Thread(target=work, args=(m,)) for m in models]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            concurrent.append(time.perf_counter() - start)
    seq, con = statistics.median(sequential), statistics.median(concurrent)
    load = os.getloadavg()[0]
    print(f"model: {args.length} x (MatMul {args.size}x{args.size} + Tanh), threads=1 per model; "
          f"{args.runs} runs per thread; median of {args.repeats}")
    print(f"sequential (2 x {args.runs} runs): {seq * 1e3:.0f} ms ({seq / (2 * args.runs) * 1e3:.1f} ms a run)")
    print(f"concurrent (2 threads):  {con * 1e3:.0f} ms")
    print(f"speed-up: {seq / con:.2f}x on {os.cpu_count()} cores (load average {load:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
