"""Chapter 11 exercises: a detector, a threshold and a score written by hand and checked against the
library's ``Mahalanobis``, ``set_threshold``/``predict`` and ``MSP``, on features and logits the checks draw."""
from __future__ import annotations

import numpy as np

from exercises._check import as_array, as_callable, as_float, close, elements_off, fail, passed

EX = "ch11 exercise {}"


def _features(seed: int, n: int = 400, d: int = 6, classes: int = 4):
    """Class-clustered features (n, d), labels (n,) and test features (n // 2, d), float64."""
    rng = np.random.default_rng(seed)
    mix = rng.normal(0, 1, (d, d))
    means = rng.normal(0, 3, (classes, d))
    y = rng.integers(0, classes, n)
    return rng.normal(0, 1, (n, d)) @ mix + means[y], y, rng.normal(0, 4, (n // 2, d))


def check_exercise_1(mahalanobis) -> bool:
    """Implement it: ``mahalanobis(z_train (N, D), y_train (N,), z_test (M, D)) -> (M,)``: class means
    ``μ_c``, one shared ML covariance ``Σ = (1/N) Σ_i (z_i - μ_{y_i})(z_i - μ_{y_i})ᵀ``, score
    ``min_c (z - μ_c)ᵀ Σ⁻¹ (z - μ_c)``. Compared with ``ebm_ood.Mahalanobis().fit(z, y).score(z_test)``
    (whose relative ridge of 1e-6 is inside the tolerance) on features the check draws."""
    ex = EX.format(1)
    import ebm_ood
    fn = as_callable(mahalanobis, "mahalanobis", ex)
    z, y, z_test = _features(111)
    want = ebm_ood.Mahalanobis().fit(z, y).score(z_test)
    got = as_array(fn(z.copy(), y.copy(), z_test.copy()), "mahalanobis(z, y, z_test)", ex, shape=(len(z_test),))
    tol = 1e-4 * np.abs(want) + 1e-8
    if np.any(np.abs(got - want) > tol):
        fail(ex, f"your scores differ from ebm_ood.Mahalanobis: {elements_off(got, want, tol)}",
             "the covariance is shared: centre each sample on its own class mean, average over all N (not "
             "N - 1); the score is the smallest squared distance, not a sum or a square root")
    return passed(ex, "Mahalanobis is a class-Gaussian fit and a minimum of squared distances: nothing is "
                      "trained, which is why it needs only features and labels.")


def check_exercise_2(threshold_and_flags) -> bool:
    """Implement it: ``threshold_and_flags(score_val (N,), score_new (M,), tpr) -> (t, flags (M,) bool)``:
    the threshold that keeps the fraction ``tpr`` of held-out ID scores (``np.quantile``, linear
    interpolation) and the OOD flags ``score_new > t``. Compared with a library detector's
    ``set_threshold(x_val, tpr)`` / ``threshold_`` / ``predict`` (``ebm_ood.MaxLogit`` on logits the check
    draws, fed to you as its scores) at rates the check draws."""
    ex = EX.format(2)
    import ebm_ood
    fn = as_callable(threshold_and_flags, "threshold_and_flags", ex)
    rng = np.random.default_rng(112)
    logits_val, logits_new = rng.normal(0, 2, (300, 5)), rng.normal(0, 2, (200, 5)) - 0.5
    det = ebm_ood.MaxLogit().fit(rng.normal(0, 2, (100, 5)))
    for tpr in (0.95, round(float(rng.uniform(0.6, 0.9)), 3)):
        det.set_threshold(logits_val, tpr=tpr)
        out = fn(det.score(logits_val), det.score(logits_new), tpr)
        if not isinstance(out, tuple) or len(out) != 2:
            fail(ex, f"expected a pair (t, flags), got {type(out).__name__}")
        close(ex, f"t at tpr = {tpr}", as_float(out[0], "t", ex), float(det.threshold_),
              1e-9 * max(1.0, abs(float(det.threshold_))),
              "np.quantile of the validation scores at tpr: the ID scores below it are kept as ID")
        flags = as_array(out[1], "flags", ex, shape=(len(logits_new),))
        want = det.predict(logits_new).astype(np.float64)
        if not np.array_equal(flags, want):
            fail(ex, f"at tpr = {tpr} your flags differ from predict's in {int((flags != want).sum())} of "
                     f"{len(want)} samples", "higher score = more OOD: flag score > t")
    return passed(ex, "set_threshold is a quantile of held-out ID scores and predict a comparison: the ID "
                      "rejection rate is 1 - tpr by construction, the OOD detection rate is what you measure.")


def check_exercise_3(msp) -> bool:
    """Implement it: ``msp(logits (N, C)) -> (N,)``, the MSP score ``-max_y softmax(f)_y`` (higher = more
    OOD), finite for logits as large as 1e4. Compared with ``ebm_ood.MSP().score`` on logits the check draws,
    some of them huge."""
    ex = EX.format(3)
    import ebm_ood
    fn = as_callable(msp, "msp", ex)
    rng = np.random.default_rng(113)
    logits = rng.normal(0, 3, (60, 8))
    logits[:10] *= 3000.0                                        # naive exp overflows here
    want = ebm_ood.MSP().fit(logits).score(logits)
    got = as_array(fn(logits.copy()), "msp(logits)", ex, shape=(len(logits),))
    if np.any(np.abs(got - want) > 1e-9):
        fail(ex, f"your scores differ from ebm_ood.MSP: {elements_off(got, want, 1e-9)}",
             "subtract the row maximum before exponentiating; the score is minus the largest probability")
    return passed(ex, "MSP saturates at -1 for any confident logit vector: far-away inputs get confident logits, "
                      "which is why MSP can sit near chance on far OOD sets.")
