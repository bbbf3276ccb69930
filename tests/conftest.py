"""Shared test settings: deterministic, quiet, fast."""
import os

os.environ.setdefault("EBM_OOD_FAST", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Two threads thrash on the tiny tensors of the tests; one is faster and deterministic.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
