"""A tree ensemble through the C ABI: an XGBoost model compiled by kiln.compile (recognized by its contents)
and run from the artifact gives XGBoost's own predictions."""
import numpy as np
import pytest

import kiln

xgb = pytest.importorskip("xgboost")


def test_compiled_xgboost_model_runs(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 5)).astype(np.float32)
    x[rng.random(size=x.shape) < 0.1] = np.nan
    y = (np.nan_to_num(x[:, 0]) - np.nan_to_num(x[:, 2]) > 0).astype(np.float32)
    booster = xgb.train({"objective": "binary:logistic", "max_depth": 4, "seed": 1}, xgb.DMatrix(x, label=y), 15)
    model = tmp_path / "model.json"
    booster.save_model(str(model))
    artifact = tmp_path / "model.kiln"
    kiln.compile(model, artifact)
    session = kiln.load(artifact)
    got = session.run({"x": x})["predictions"]
    assert got.shape == (300, 1)
    np.testing.assert_allclose(got[:, 0], booster.predict(xgb.DMatrix(x)), rtol=1e-5, atol=1e-6)
