"""Shared test settings: deterministic, quiet, fast."""
import os

os.environ.setdefault("EBM_OOD_FAST", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import settings  # noqa: E402

# Property tests draw the same examples on every run (a failure reproduces; CI cannot flake).
# EBM_OOD_HYPOTHESIS_PROFILE=explore draws fresh random examples instead.
settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("EBM_OOD_HYPOTHESIS_PROFILE", "repeatable"))

# Two threads thrash on the tiny tensors of the tests; one is faster and deterministic.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def mixture_2d():
    """``make(n, seed) -> (x (n, 2) float32, y (n,), modes (3, 2))``: three Gaussian modes, std 0.3."""
    def make(n: int = 1200, seed: int = 0):
        rng = np.random.default_rng(seed)
        modes = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
        y = rng.integers(0, 3, n)
        return (modes[y] + 0.3 * rng.standard_normal((n, 2))).astype(np.float32), y, modes.astype(np.float32)
    return make
