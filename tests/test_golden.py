"""Numerics equal the outputs recorded on x86_64 (tests/golden.py), on whatever machine runs this."""
import numpy as np
import pytest

import golden
from reference import ATOL


@pytest.fixture(scope="module")
def recorded():
    # The file is part of the repository: its absence is a failure, not a reason to skip.
    assert golden.PATH.is_file(), f"{golden.PATH} missing: run python tests/golden.py on x86_64"
    with np.load(golden.PATH, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_inputs_are_reproducible(recorded):
    x, iq = golden.inputs()
    np.testing.assert_array_equal(x, recorded["x"])
    np.testing.assert_array_equal(iq, recorded["iq"])


def test_outputs_equal_x86(recorded):
    now = golden.compute()
    for key in ("prefill", "stream", "features"):
        np.testing.assert_allclose(now[key], recorded[key], atol=ATOL, rtol=0, err_msg=key)
    np.testing.assert_array_equal(now["status"], recorded["status"])
