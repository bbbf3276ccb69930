"""Every method the benchmark knows, against the inputs students will feed it: each bad input is a clear
``ValueError``/``TypeError`` naming the argument (non-finite values: their count and first index), an
unfitted detector raises :class:`NotFittedError`, and nothing the caller passed is modified; the CE
baseline's own refusals on tabular data; iterables that are not batches (ebm_ood/plumbing/inputs.py)."""
import re

import numpy as np
import pytest
from sklearn.base import clone
import torch
from torch.utils.data import DataLoader, TensorDataset

from ebm_ood.commands.benchmark.registry import RunContext, methods_for
from ebm_ood.commands.benchmark.runner import fit_method
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.posthoc import KNN, Mahalanobis
from ebm_ood.data import get_dataset
from ebm_ood.plumbing.errors import NonFiniteError, NotFittedError

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
    return {s.name: fit_method(s, ctx) for s in SPECS}


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
    if getattr(det, "fitted_", False):    # the CE row is the seed's shared classifier, trained by its build
        det = clone(det)
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
    from ebm_ood.plumbing.checks import resolve_device

    with pytest.raises((ValueError, RuntimeError), match="(?i)cuda"):
        resolve_device("cuda")


def _huge_inputs(x):
    big = float(np.finfo(np.float32).max)
    for value in (big, -big, 1e30, 1e20):
        one = x.copy()
        one[5, 0, 3, 4] = value
        whole = x.copy()
        whole[11] = value
        two = x.copy()
        two[9, 0, 0, 0], two[2, 0, 7, 1] = value, -value
        yield f"{value:g} one pixel", one, 5
        yield f"{value:g} whole image", whole, 11
        yield f"{value:g} two images", two, 2


@pytest.mark.parametrize("name", NAMES)
def test_finite_but_huge_inputs_give_finite_scores_or_name_the_sample_and_its_range(fitted, digits, name):
    # float32 arithmetic overflows on such inputs: a detector must not return NaN/Inf scores, nor blame the
    # caller's x for non-finite values it does not hold; it names the sample and compares |x| with the fit data.
    det = fitted[name]
    x = digits.x_test[:16].copy()
    for what, bad, first in _huge_inputs(x):
        before = bad.copy()
        try:
            s = det.score(bad)
        except NonFiniteError as err:
            assert str(err).startswith(f"x: sample {first} "), f"{name}, {what}: {err}"
            assert "|x| = " in str(err) and "fit data" in str(err), f"{name}, {what}: {err}"
        else:
            assert s.shape == (16,) and np.isfinite(s).all(), f"{name}, {what}: {s}"
        np.testing.assert_array_equal(bad, before)


@pytest.mark.parametrize("name", ["CE", "CD", "SSM", "VERA", "NF"])
def test_fit_on_one_sample_is_a_clear_error_or_a_fitted_detector(name):
    tab = get_dataset("tabular")
    spec = _spec(name)
    x1, y1 = tab.x_train[:1], tab.y_train[:1]
    det = spec.build(RunContext(dataset=tab, seed=0, preset="quick"))
    try:
        det.fit(x1, y1 if spec.uses_labels else None)
    except ValueError as err:
        assert re.search(r"\b[xy]\b.*at least 2", str(err)), f"{name}: {err}"
    else:
        assert np.isfinite(det.score(tab.x_test[:4])).all()


@pytest.mark.parametrize("name", ["NF", "VERA", "SSM"])
def test_one_huge_training_sample_is_named_when_training_fails(name):
    from dataclasses import replace

    from ebm_ood.plumbing.errors import DivergenceError

    tab = get_dataset("tabular")
    x = tab.x_train.copy()
    x[7] = np.finfo(np.float32).max
    spec = _spec(name)
    det = spec.build(RunContext(dataset=replace(tab, x_train=x), seed=0, preset="quick"))
    with pytest.raises((DivergenceError, NonFiniteError), match=r"sample 7 of x reaches \|x\| = 3.4e\+38"):
        det.fit(x, tab.y_train if spec.uses_labels else None, validation=(tab.x_val, tab.y_val if spec.uses_labels else None))


class _SquareSum:
    """A toy detector: score = Σ_d x_d² in float32, its intermediate checked like every feature detector's."""

    @staticmethod
    def make():
        from ebm_ood.detector import Detector
        from ebm_ood.plumbing.checks import check_array

        class SquareSum(Detector):
            name = "square-sum"

            def _fit(self, x, y):
                pass

            def _score(self, x):
                z = check_array(x.astype(np.float32) ** 2, "z")  # np overflows to inf for |x| > 1.8e19
                return z.sum(1)

        return SquareSum()


@pytest.mark.parametrize("n", [1, 2, 7, 16, 33])
def test_a_batch_failing_at_once_names_its_first_bad_sample(n):
    rng = np.random.default_rng(n)
    det = _SquareSum.make().fit(rng.normal(size=(20, 3)).astype(np.float32))
    with np.errstate(over="ignore"):
        for bad in range(n):
            for second in {bad, min(n - 1, bad + 3)}:
                x = rng.normal(size=(n, 3)).astype(np.float32)
                x[bad, 1], x[second, 2] = 1e30, -1e25
                with pytest.raises(NonFiniteError, match=rf"^x: sample {bad} has a non-finite square-sum score: its "
                                                          rf"values reach \|x\| = 1e\+30, far outside"):
                    det.score(x)
        x = rng.normal(size=(n, 3)).astype(np.float32)
        np.testing.assert_allclose(det.score(x), (x.astype(np.float64) ** 2).sum(1), rtol=1e-5)


# ------------------------------------------------------------------ the CE baseline on tabular data

def test_ce_on_tabular_data_refuses_bad_inputs(ce_tabular):
    d, det = ce_tabular
    with pytest.raises(NotFittedError):
        CEClassifier().score(d.x_test)
    with pytest.raises(ValueError, match="non-finite.*first at index \\(1, 2\\)"):
        x = d.x_test.copy(); x[1, 2] = np.nan; det.score(x)
    with pytest.raises(ValueError, match="shape"):
        det.score(d.x_test[:, :5])
    with pytest.raises(ValueError, match="x: expected shape"):
        det.logits(d.x_test[:, :5])
    with pytest.raises(ValueError, match="non-finite"):
        x = d.x_test.copy(); x[0, 0] = np.inf; det.logits(x)
    with pytest.raises(TypeError, match="floating point"):
        det.score(d.x_test.astype(np.int64))
    assert det.score(d.x_test[:0]).shape == (0,)
    with pytest.raises(ValueError, match="labels"):
        CEClassifier(ce_config("quick")).fit(d.x_train, d.y_train[:-1])
    with pytest.raises(ValueError, match="at least 2 classes"):
        CEClassifier(ce_config("quick")).fit(d.x_train, np.zeros(len(d.x_train), dtype=np.int64))
    with pytest.raises(ValueError, match="needs class labels"):
        CEClassifier(ce_config("quick")).fit(d.x_train)
    with pytest.raises(ValueError, match="expected a non-empty"):
        CEClassifier(ce_config("quick")).fit(d.x_train[:0], d.y_train[:0])
    with pytest.raises(ValueError, match="score"):
        CEClassifier(score="entropy")
    with pytest.raises(ValueError, match="kind"):
        ce_config("quick", "text")
    with pytest.raises(ValueError, match="CUDA is not available"):
        if not torch.cuda.is_available():
            CEClassifier(device="cuda")
        else:
            raise ValueError("CUDA is not available (skipped: this machine has CUDA)")


# ------------------------------------------------------------------ iterables and shapes of the wrong kind

RNG = np.random.default_rng(0)
Z = RNG.normal(size=(50, 4)).astype(np.float32)
Y = np.arange(50) % 3


def _loader(*arrays, batch_size=7):
    return DataLoader(TensorDataset(*map(torch.as_tensor, arrays)), batch_size=batch_size, shuffle=False)


def test_bad_iterables_say_what_they_hold():
    strings = DataLoader(["a.png", "b.png", "c.png"], batch_size=2)
    with pytest.raises(TypeError, match=r"x: expected an iterable of batches .*batch 0 is a list of 2 items \(str, str\)"):
        KNN().fit(strings)
    with pytest.raises(TypeError, match=r"x: .*batch 0 is a dict"):
        KNN().fit(iter([{"x": torch.zeros(2, 3)}]))
    with pytest.raises(TypeError, match=r"x: batch 1 has no labels, unlike batch 0"):
        KNN().fit(iter([(torch.zeros(2, 3), torch.zeros(2)), torch.zeros(2, 3)]))
    with pytest.raises(ValueError, match=r"y: given twice"):
        Mahalanobis().fit(_loader(Z, Y), Y)
    shuffled = DataLoader(TensorDataset(torch.as_tensor(Z)), batch_size=7, shuffle=True)
    with pytest.raises(ValueError, match=r"y: x is a DataLoader with shuffle=True, so labels given separately"):
        Mahalanobis().fit(shuffled, Y)
    with pytest.raises(ValueError, match=r"validation y: given twice"):
        Mahalanobis().fit(Z, Y, validation=(_loader(Z[:9], Y[:9]), Y[:9]))
    with pytest.raises(ValueError, match=r"x: the iterable generator yielded no batches"):
        KNN().fit(b for b in [])
    with pytest.raises(ValueError, match=r"x: batch 1 has samples of shape \(5,\), batch 0 has \(4,\)"):
        KNN().fit(iter([torch.zeros(3, 4), torch.zeros(3, 5)]))
    with pytest.raises(TypeError, match=r"x: expected a numeric array, got dtype object$"):
        KNN().fit(np.array([{"a": 1}], dtype=object))
    with pytest.raises(TypeError, match=r"x: expected a numeric array, got dtype object \(from a list; pass an "
                                        r"array, a tensor or an iterable of batches such as torch\.utils\.data"):
        KNN().fit([{"a": 1}, {"b": 2}])
