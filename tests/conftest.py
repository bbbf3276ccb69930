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


# The numeric tests: reference tests (a computation against an independent one, to a float tolerance) and
# equivalence tests (two code paths, one answer). CI runs them a second time on torch's generic CPU kernels
# (`ATEN_CPU_CAPABILITY=default pytest -q -m numeric tests`, README "Two commands"), as a CPU unlike ours
# would compute them. Names are file names, unique across the folders of tests/ (tests/commands/test_cpu_kinds.py
# checks that every name here is a test file).
NUMERIC_TESTS = (
    "test_api.py", "test_baselines.py", "test_bottleneck_linear.py", "test_ce.py",
    "test_class_gaussian.py", "test_contrastive_divergence.py", "test_divergence_guard.py", "test_energy.py",
    "test_evaluation.py", "test_exercises.py", "test_glow.py", "test_heat_compose.py", "test_heat_defaults.py",
    "test_heat_diagnose.py", "test_heat_fidelity.py", "test_heat_hybrid.py", "test_heat_mechanism.py",
    "test_heat_priors.py", "test_inputs.py", "test_metrics.py", "test_nn.py",
    "test_op_contract.py", "test_own_model_trust.py", "test_persist.py", "test_philox.py", "test_radial_flow.py",
    "test_replay_buffer.py", "test_score_matching.py", "test_sgld.py", "test_sgld_op.py",
    "test_ssm_reduction.py", "test_tensor_inputs.py", "test_threads.py", "test_training.py", "test_vera.py",
    "test_vera_form.py",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "numeric: a reference or equivalence test; CI reruns these under "
                                       "ATEN_CPU_CAPABILITY=default (see NUMERIC_TESTS in tests/conftest.py)")


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in NUMERIC_TESTS:
            item.add_marker(pytest.mark.numeric)


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


@pytest.fixture
def forbid_gathering(monkeypatch):
    """``forbid(*modules)``: their ``collect`` fails the test when handed an iterable of batches (raw inputs
    gathered whole) and otherwise behaves as before."""
    from ebm_ood.plumbing.inputs import is_batch_iterable

    def forbid(*modules):
        for module in modules:
            def guarded(data, *a, _original=module.collect, **k):
                if is_batch_iterable(data):
                    pytest.fail("raw inputs were gathered")
                return _original(data, *a, **k)
            monkeypatch.setattr(module, "collect", guarded)
    return forbid


@pytest.fixture(scope="session")
def ce_tabular():
    """The dataset `tabular` and a CE classifier fitted on it with the quick preset (read-only)."""
    from ebm_ood.data import get_dataset
    from ebm_ood.methods.ce import CEClassifier, ce_config
    d = get_dataset("tabular")
    det = CEClassifier(ce_config("quick", "tabular"), device="cpu").fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val))
    return d, det
