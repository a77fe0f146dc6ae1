"""Post-training int8 quantization through the C ABI's compile options (kiln.compile(..., quantize="int8",
calibration=DIR)): the same settings and checks as `kiln compile --quantize int8`."""
import os

import numpy as np
import pytest

import kiln
from conftest import expected


def _calibration(folder, count=8, seed=5):
    """`count` samples of x: f32[16, 4], one .npy file per sample (the one-input layout)."""
    os.makedirs(folder)
    rng = np.random.default_rng(seed)
    for k in range(count):
        np.save(os.path.join(folder, f"{k:03d}.npy"), rng.normal(size=(16, 4)).astype(np.float32))
    return folder


def test_quantized_compile_runs_close_to_float_but_not_equal(model_path, tmp_path):
    calibration = _calibration(str(tmp_path / "calibration"))
    artifact = tmp_path / "q.kiln"
    kiln.compile(model_path, artifact, quantize="int8", calibration=calibration, calibration_method="percentile",
                 percentile=99.9, activation_type="int8")
    x = np.random.default_rng(11).normal(size=(16, 4)).astype(np.float32)
    got = kiln.load(artifact).run({"x": x})["y"]
    want = expected(x)["y"]
    # int8 weights and activations: within a few quanta of the float answer, and not the float answer itself
    # (which would mean nothing was quantized).
    np.testing.assert_allclose(got, want, atol=0.05 * float(np.abs(want).max()))
    assert not np.array_equal(got, want)
    plain = tmp_path / "f.kiln"
    kiln.compile(model_path, plain)
    np.testing.assert_allclose(kiln.load(plain).run({"x": x})["y"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("options, named", [
    ({"quantize": "int8"}, "compile option calibration"),
    ({"calibration": "CAL"}, "compile option quantize"),
    ({"quantize": "int4", "calibration": "CAL"}, "int4"),
    ({"quantize": "int8", "calibration": "CAL", "calibration_method": "median"}, "calibration_method"),
    ({"quantize": "int8", "calibration": "CAL", "percentile": "101"}, "percentile"),
    ({"quantize": "int8", "calibration": "CAL", "percentile": "nan"}, "compile option percentile 'nan'"),
    ({"quantize": "int8", "calibration": "CAL", "keep_float": "Softmax"}, "Softmax"),
    ({"quantize": "int8", "calibration": "CAL", "quantize_outputs": "maybe"}, "quantize_outputs"),
    ({"quantize": "int8", "calibration": "NONE"}, "NONE"),
])
def test_bad_quantization_options_are_typed_errors_and_write_nothing(model_path, tmp_path, options, named):
    calibration = _calibration(str(tmp_path / "calibration"), count=2)
    options = {k: (v.replace("CAL", calibration).replace("NONE", str(tmp_path / "none")) if isinstance(v, str) else v)
               for k, v in options.items()}
    named = named.replace("NONE", str(tmp_path / "none"))
    artifact = tmp_path / "q.kiln"
    with pytest.raises(kiln.InvalidArgumentError) as error:
        kiln.compile(model_path, artifact, **options)
    assert named in str(error.value)
    assert not artifact.exists()
