"""Shared test settings: deterministic, quiet, fast."""
import os

os.environ.setdefault("EBM_OOD_FAST", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
