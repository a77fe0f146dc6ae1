import os

import pytest

from differential import KILN, make_models


@pytest.fixture(scope="session", autouse=True)
def models():
    """The scripts/make-models models, written once per session: the tests make their own inputs."""
    assert os.path.exists(KILN), f"{KILN} not found: build it (swift build -c release --product kiln) or set KILN"
    make_models()
