"""Signed artifacts through the Python binding: kiln.load(..., trusted_keys=[...])."""
import os

import numpy as np
import pytest

import kiln

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "Tests", "Fixtures", "artifacts", "format-1")
SIGNED = os.path.join(FIXTURES, "signed", "add_relu.kiln")
PUBLIC_KEY = os.path.join(FIXTURES, "signed", "fixture-key.pub")
UNSIGNED = os.path.join(FIXTURES, "add_relu.kiln")
X = np.array([[1, -2, 3], [-4, 5, -6]], dtype=np.float32)
Y = np.full((2, 3), 0.5, dtype=np.float32)


def test_a_signed_artifact_loads_with_its_key_as_a_path_or_bytes():
    raw = kiln.read_public_key(PUBLIC_KEY)
    assert len(raw) == 32
    for keys in ([PUBLIC_KEY], [raw]):
        model = kiln.load(SIGNED, trusted_keys=keys)
        outputs = model.run({"x": X, "y": Y})
        np.testing.assert_allclose(outputs["relu"], np.maximum(X + Y, 0))
    with open(SIGNED, "rb") as f:
        kiln.load(f.read(), trusted_keys=[raw])
    kiln.load(SIGNED)  # no requirement: loads as any artifact


def test_unsigned_tampered_and_untrusted_artifacts_are_refused():
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(UNSIGNED, trusted_keys=[PUBLIC_KEY])
    assert e.value.code == kiln.INVALID_ARTIFACT and "is not signed" in e.value.message

    with open(SIGNED, "rb") as f:
        data = bytearray(f.read())
    # The manifest's first stored byte (section 0's offset is at bytes 40..47 of the file).
    offset = int.from_bytes(data[40:48], "little")
    data[offset] ^= 1
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(bytes(data), trusted_keys=[PUBLIC_KEY])
    assert e.value.code == kiln.INVALID_ARTIFACT and "does not match the artifact's contents" in e.value.message

    with pytest.raises(kiln.KilnError) as e:
        kiln.load(SIGNED, trusted_keys=[bytes(range(32))])
    assert e.value.code in (kiln.INVALID_ARTIFACT, kiln.INVALID_ARGUMENT)


def test_trusted_keys_are_checked():
    with pytest.raises(kiln.KilnError) as e:
        kiln.load(SIGNED, trusted_keys=[b"short"])
    assert e.value.code == kiln.INVALID_ARGUMENT
    with pytest.raises(kiln.KilnError):
        kiln.load(SIGNED, trusted_keys=[UNSIGNED])  # not a key file
    with pytest.raises(kiln.KilnError):
        kiln.load(SIGNED, trusted_keys=[])
    with pytest.raises(kiln.KilnError):
        kiln.load(SIGNED, trusted_keys=PUBLIC_KEY)  # a single path, not a list
