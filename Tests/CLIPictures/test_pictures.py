"""The pictures and progress of the `kiln` tool: `inspect --dot/--svg` (checked by Graphviz), `run --profile --html`
(rendered by headless Chromium) and `compile`'s progress (plain lines off a terminal, a bar on one).

The tool is $KILN_CLI, else .build/release/kiln, else .build-install/release/kiln. Graphviz (`dot`), Chromium and
util-linux `script` are installed by scripts/setup; a missing one fails the test rather than skipping it."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
import onnx

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def kiln_cli() -> str:
    for candidate in (os.environ.get("KILN_CLI"), os.path.join(ROOT, ".build", "release", "kiln"),
                      os.path.join(ROOT, ".build-install", "release", "kiln")):
        if candidate and os.path.exists(candidate):
            return candidate
    raise AssertionError("no kiln tool: build it (swift build -c release --product kiln) or set KILN_CLI")


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: scripts/setup installs it"
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> str:
    """x: f32[1,3,8,8] -> Conv -> Relu -> LRN -> Conv -> Relu -> y: kiln.cpu fuses each Conv+Relu (the second
    after a layout Reorder step that carries the same label) and leaves LRN to kiln.reference, so the picture has
    three partitions on two backends and two fused steps."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    w2 = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b2 = rng.standard_normal(8).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c"], ["r"], name="relu"),
         helper.make_node("LRN", ["r"], ["n"], name="lrn", size=3),
         helper.make_node("Conv", ["n", "W2", "B2"], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["c2"], ["y"], name="relu2")],
        "pictures", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 8, 8])],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B"),
         numpy_helper.from_array(w2, "W2"), numpy_helper.from_array(b2, "B2")])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    path = str(tmp_path_factory.mktemp("pictures") / "conv_relu_lrn.onnx")
    onnx.save(m, path)
    return path


def test_inspect_dot_colours_nodes_by_backend_groups_fused_steps_and_parses(model, tmp_path):
    out = tmp_path / "graph.dot"
    result = subprocess.run([kiln_cli(), "inspect", model, "--dot", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"graph written to {out}" in result.stdout
    dot = out.read_text()
    nodes = re.findall(r'^\s*n(\d+) \[label="([^"]*)", fillcolor="(#[0-9a-f]{6})"', dot, re.M)
    assert len(nodes) == 5, dot
    colour = {label.split("\\n")[0]: fill for _, label, fill in nodes}
    assert colour["conv"] == colour["relu"] == colour["conv2"] == colour["relu2"] != colour["lrn"]
    colour = {label.split("\\n")[1]: fill for _, label, fill in nodes}
    assert re.search(r'legend\d+ \[label="kiln.cpu", shape=box, style=filled, fillcolor="%s"' % colour["Conv"], dot)
    assert re.search(r'legend\d+ \[label="kiln.reference", shape=box, style=filled, fillcolor="%s"' % colour["LRN"], dot)
    # Each Conv and its Relu are one fused step: a cluster inside a kiln.cpu partition cluster.
    fused = re.findall(r'subgraph cluster_f\d \{\n\s*label="fused: ([^"]+)";[^\n]*\n((?:\s*n\d+ \[[^\n]*\n)+)\s*\}', dot)
    assert [kind for kind, _ in fused] == ["Conv+Relu", "Conv+Relu"], dot
    name = {i: label.split("\\n")[0] for i, label, _ in nodes}
    assert [sorted(name[i] for i in re.findall(r"n(\d+) \[", members)) for _, members in fused] == [
        ["conv", "relu"], ["conv2", "relu2"]]
    assert dot.count("subgraph cluster_p") == 3
    # Edges carry the value types, between nodes too.
    for t in ("f32[1,3,8,8]", "f32[1,4,8,8]", "f32[1,8,8,8]"):
        assert f'label="{t}"' in dot, t
    svg = tmp_path / "graph-by-graphviz.svg"
    subprocess.run([tool("dot"), "-Tsvg", str(out), "-o", str(svg)], check=True)
    text = svg.read_text()
    assert text.count('class="node"') == 5 + 2 + 2  # five ops, the input and output, two legend swatches
    assert colour["LRN"] in text and colour["Conv"] in text


def test_inspect_dot_to_standard_output_and_no_fusion(model):
    result = subprocess.run([kiln_cli(), "inspect", model, "--dot", "-", "--no-fusion"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("digraph kiln {") and result.stdout.rstrip().endswith("}")
    assert "cluster_f" not in result.stdout and "producer:" not in result.stdout


def test_inspect_svg_renders_with_graphviz_and_says_so_without_it(model, tmp_path):
    tool("dot")
    svg = tmp_path / "graph.svg"
    result = subprocess.run([kiln_cli(), "inspect", model, "--svg", str(svg)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    env = dict(os.environ, PATH=str(tmp_path / "empty-path"))
    result = subprocess.run([kiln_cli(), "inspect", model, "--svg", str(tmp_path / "no.svg")], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 1
    assert "Graphviz" in result.stderr and "'dot'" in result.stderr
    assert not (tmp_path / "no.svg").exists()


def test_run_profile_html_renders_in_headless_chromium(model, tmp_path):
    page = tmp_path / "profile.html"
    result = subprocess.run([kiln_cli(), "run", model, "--random", "--profile", "--html", str(page)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"profile page written to {page}" in result.stdout
    html = page.read_text()
    # Self-contained: no external scripts, styles, images or links.
    assert not re.search(r'\b(src|href)\s*=', html)
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html
    steps = len(re.findall(r'"cat":"step"', html))
    assert steps >= 2  # the fused Conv+Relu and LRN... at least the kiln.cpu step and one more
    dom = subprocess.run([tool("chromium"), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                          f"--user-data-dir={tmp_path / 'chromium'}", "--virtual-time-budget=5000", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    body = re.search(r"<body[^>]*>", dom.stdout)
    assert body, dom.stdout[:2000]
    assert 'data-rendered="ok"' in body.group(0), body.group(0)
    assert f'data-steps="{steps}"' in body.group(0)
    assert dom.stdout.count('class="step"') == steps
    assert dom.stdout.count('class="bar"') == int(re.search(r'data-kinds="(\d+)"', body.group(0)).group(1)) >= 1


def test_compile_progress_is_plain_lines_off_a_terminal(model, tmp_path):
    result = subprocess.run([kiln_cli(), "compile", model, "-o", str(tmp_path / "m.kiln")], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    phases = re.findall(r"^\[[0-9.e-]+ s\] (\w+): ", result.stderr, re.M)
    assert phases == ["import", "optimize", "partition", "compile", "write", "file", "done"], result.stderr
    assert re.search(r"^\[[0-9.e-]+ s\] optimize: \d+ passes at opt level 2$", result.stderr, re.M)


def test_compile_progress_is_a_bar_on_a_terminal(model, tmp_path):
    command = f"{kiln_cli()} compile {model} -o {tmp_path / 'm.kiln'}"
    # Bytes, decoded by hand: text mode would turn the bar's carriage returns into newlines.
    result = subprocess.run([tool("script"), "-qec", command, "/dev/null"], capture_output=True,
                            env=dict(os.environ, TERM="xterm"))
    out = result.stdout.decode("utf-8", "replace")
    assert result.returncode == 0, out
    for k, phase in enumerate(["import", "optimize", "partition", "compile", "write", "file"], start=1):
        assert re.search(r"\r\x1b\[2K\[[#-]{24}\] %d/6 %s: " % (k, phase), out), (phase, out)
    assert "[" + "#" * 20 in out  # the bar fills
    assert re.search(r"done: wrote ", out)
