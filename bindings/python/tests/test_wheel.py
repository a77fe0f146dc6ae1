"""The wheel scripts/build-wheel makes: installed into a fresh venv, `import kiln` finds the libkiln inside the
package with no environment variable, runs a model, and registers the bundled sample plugin.

The wheel is $KILN_WHEEL when set (scripts/test builds it once); otherwise this test runs scripts/build-wheel,
which reuses the release build in .build-install when it is up to date."""
import glob
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from conftest import expected

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> str:
    given = os.environ.get("KILN_WHEEL")
    if given:
        return given
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "build-wheel"), "--out", str(out)], check=True)
    found = glob.glob(str(out / "kiln-*.whl"))
    assert len(found) == 1, found
    return found[0]


def test_wheel_is_tagged_for_this_glibc_and_carries_the_library_and_plugins(wheel):
    major, minor = os.confstr("CS_GNU_LIBC_VERSION").split()[1].split(".")[:2]
    name = os.path.basename(wheel)
    assert name.endswith(f"-py3-none-manylinux_{major}_{minor}_{os.uname().machine}.whl"), name
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        wheel_file = z.read(next(n for n in names if n.endswith(".dist-info/WHEEL"))).decode()
    assert {"kiln/__init__.py", "kiln/dlr.py", "kiln/spark.py", "kiln/ray.py", "kiln/_scale.py", "kiln/py.typed",
            "kiln/lib/libkiln.so.0",
            "kiln/plugins/libkiln_sample_plugin.so", "kiln/_fastrun.abi3.so", "kiln/_fastrun.pyi"} <= names
    assert "Root-Is-Purelib: false" in wheel_file
    assert not any("libswift" in n for n in names), "the Swift runtime is linked statically, not bundled"


def test_fresh_venv_installs_the_wheel_and_runs_a_model_without_environment(wheel, model_path, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel], check=True)
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 10
    np.save(tmp_path / "x.npy", x)
    script = f"""
import numpy as np, kiln, os
assert kiln.library_path().endswith(os.path.join("site-packages", "kiln", "lib", "libkiln.so.0")), kiln.library_path()
assert "sample.bytecode" in kiln.backends(), kiln.backends()
bundled = kiln.bundled_plugins()
assert [(os.path.basename(p), b) for p, b in bundled.items()] == [("libkiln_sample_plugin.so", ["sample.bytecode"])], bundled
x = np.load({str(tmp_path / "x.npy")!r})
assert kiln._fast is not None, "the wheel's kiln._fastrun did not load"
with kiln.load({model_path!r}) as model:
    y = model.run({{"x": x}})["y"]
    y_again = model.run({{"x": x}})["y"]  # the second call with these shapes runs through kiln._fastrun
    assert model._plans.fast is not None and np.array_equal(y, y_again)
np.save({str(tmp_path / "y.npy")!r}, y)
kiln.compile({model_path!r}, {str(tmp_path / "plugin.kiln")!r}, backends="sample.bytecode", fallback="allow")
plugin_model = kiln.load({str(tmp_path / "plugin.kiln")!r})
assert "sample.bytecode" in {{e.backend for e in plugin_model.partition}}
np.save({str(tmp_path / "y_plugin.npy")!r}, plugin_model.run({{"x": x}})["y"])
from kiln.dlr import DLRModel
print(DLRModel({str(tmp_path / "plugin.kiln")!r}).get_output_names())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KILN_") and k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    result = subprocess.run([python, "-c", script], env=env, cwd=str(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['y', 's', 'xi']"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), expected(x)["y"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "y_plugin.npy"), expected(x)["y"], rtol=1e-5, atol=1e-6)

    # KILN_LIBRARY still overrides the bundled library: a copy elsewhere (with the libraries it needs) is used.
    bundled = subprocess.run([python, "-c", "import kiln, os; print(os.path.dirname(kiln._BUNDLED_LIBRARY))"], env=env,
                             cwd=str(tmp_path), capture_output=True, text=True, check=True).stdout.strip()
    other = tmp_path / "other"
    other.mkdir()
    for name in os.listdir(bundled):
        shutil.copy(os.path.join(bundled, name), other / name)
    override = str(other / "libkiln.so.0")
    result = subprocess.run([python, "-c", "import kiln; print(kiln.library_path()); print(kiln.version())"],
                            env=dict(env, KILN_LIBRARY=override), cwd=str(tmp_path), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == override
