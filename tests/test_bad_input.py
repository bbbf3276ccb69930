"""Every method the benchmark knows, against the inputs students will feed it: each bad input is a clear
``ValueError``/``TypeError`` naming the argument (non-finite values: their count and first index), an
unfitted detector raises :class:`NotFittedError`, and nothing the caller passed is modified."""
import numpy as np
import pytest
import torch

from ebm_ood.benchmark.registry import RunContext, methods_for
from ebm_ood.benchmark.runner import fit_spec
from ebm_ood.data.registry import get_dataset
from ebm_ood.errors import NotFittedError

SPECS = methods_for("all")
NAMES = [s.name for s in SPECS]


@pytest.fixture(scope="module")
def digits():
    return get_dataset("digits")


@pytest.fixture(scope="module")
def ctx(digits):
    return RunContext(dataset=digits, seed=0, preset="quick")


@pytest.fixture(scope="module")
def fresh(digits):
    """A context in which nothing but the shared classifier is ever fitted (HEAT parts are per context)."""
    return RunContext(dataset=digits, seed=0, preset="quick")


@pytest.fixture(scope="module")
def fitted(ctx):
    return {s.name: fit_spec(s, ctx) for s in SPECS}


def _spec(name):
    return next(s for s in SPECS if s.name == name)


def _bad_score_inputs(x):
    nan = x.copy()
    nan[3, 0, 2, 5] = np.nan
    inf = x.copy()
    inf[1, 0, 0, 0], inf[4, 0, 7, 7] = np.inf, -np.inf
    return [
        ("NaN", nan, ValueError, r"x: expected finite values, got 1 non-finite value\(s\).*first at index \(3, 0, 2, 5\)"),
        ("Inf", inf, ValueError, r"x: expected finite values, got 2 non-finite value\(s\).*first at index \(1, 0, 0, 0\)"),
        ("rank", x[0], ValueError, r"x: expected 4 dimensions"),
        ("shape", x[:, :, :7, :7], ValueError, r"x: expected samples of shape \(1, 8, 8\) \(as in fit\), got \(1, 7, 7\)"),
        ("integer images", np.round(8 * (x + 1)).astype(np.int64), TypeError, r"x: expected floating point values"),
        ("strings", "digits.png", TypeError, r"x: expected an array or tensor of numbers"),
        ("None", None, TypeError, r"x: expected an array or tensor, got None"),
        ("objects", np.array([{"a": 1}], dtype=object), TypeError, r"x: expected a numeric array"),
    ]


@pytest.mark.parametrize("name", NAMES)
def test_score_rejects_bad_inputs_and_keeps_the_callers_data(fitted, digits, name):
    det = fitted[name]
    x = digits.x_test[:16].copy()
    for what, bad, err, msg in _bad_score_inputs(x):
        before = bad.copy() if isinstance(bad, np.ndarray) else bad
        with pytest.raises(err, match=msg):
            det.score(bad)
        if isinstance(bad, np.ndarray) and bad.dtype != object:
            np.testing.assert_array_equal(bad, before, err_msg=f"{name} modified the caller's {what} input")
    s = det.score(x)
    np.testing.assert_array_equal(x, digits.x_test[:16])                        # input untouched
    assert s.shape == (16,) and s.dtype == np.float64 and np.isfinite(s).all()
    np.testing.assert_allclose(det.score(torch.from_numpy(x)), s, rtol=1e-5, atol=1e-6)   # torch input, same scores
    assert det.score(x[:0]).shape == (0,)                                       # an empty batch is no error


@pytest.mark.parametrize("name", NAMES)
def test_unfitted_detectors_say_so(fresh, digits, name):
    det = _spec(name).build(fresh)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        det.score(digits.x_test[:4])


@pytest.mark.parametrize("name", NAMES)
def test_fit_rejects_bad_data_before_training(fresh, digits, name):
    ctx = fresh
    spec = _spec(name)
    x, y = digits.x_train[:64].copy(), digits.y_train[:64].copy()
    x_nan = x.copy()
    x_nan[10, 0, 1, 1] = np.nan
    with pytest.raises(ValueError, match=r"x: expected finite values, got 1 non-finite.*\(10, 0, 1, 1\)"):
        spec.build(ctx).fit(x_nan, y if spec.uses_labels else None)
    with pytest.raises(ValueError, match=r"x: expected a non-empty array"):
        spec.build(ctx).fit(x[:0], y[:0] if spec.uses_labels else None)
    with pytest.raises(TypeError, match=r"x: expected floating point"):
        spec.build(ctx).fit(x.astype(np.int32), y if spec.uses_labels else None)
    if spec.uses_labels:
        with pytest.raises(ValueError, match=r"y: expected 64 labels \(one per sample\), got 63"):
            spec.build(ctx).fit(x, y[:63])
        y_neg = y.copy()
        y_neg[5] = -1
        with pytest.raises(ValueError, match=r"y: labels must be >= 0, got -1 at index 5"):
            spec.build(ctx).fit(x, y_neg)
        with pytest.raises(TypeError, match=r"y: expected integer class labels"):
            spec.build(ctx).fit(x, y + 0.5)
    np.testing.assert_array_equal(x, digits.x_train[:64])


def test_validation_data_of_the_wrong_shape_is_rejected(ctx, digits):
    det = _spec("CE").build(ctx)
    with pytest.raises(ValueError, match=r"validation x: expected shape \(N, 1, 8, 8\)"):
        det.fit(digits.x_train[:64], digits.y_train[:64], validation=(digits.x_val[:, :, :4], digits.y_val))


def test_one_class_is_not_a_classification_problem(ctx, digits):
    det = _spec("CE").build(ctx)
    if not det.needs_labels:
        pytest.skip("CE does not declare needs_labels")
    with pytest.raises(ValueError, match=r"at least 2 classes"):
        det.fit(digits.x_train[:32], np.zeros(32, dtype=np.int64))


def test_asking_for_cuda_without_it_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from ebm_ood.validation import resolve_device

    with pytest.raises((ValueError, RuntimeError), match="(?i)cuda"):
        resolve_device("cuda")
