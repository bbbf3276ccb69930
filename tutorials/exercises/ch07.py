"""Chapter 07 exercises: prevalence, population values of AUROC and FPR95, and ties."""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from exercises._check import as_callable, as_dict, as_float, close, fail, passed

EX = "ch07 exercise {}"
RATIOS = {"10:1": (2000, 200), "1:1": (2000, 2000), "1:10": (200, 2000)}


def two_gaussians(n_id: int, n_ood: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Section 1's energies: ID ~ N(0, 1) (n_id,), OOD ~ N(1.5, 1) (n_ood,)."""
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, n_id), rng.normal(1.5, 1.0, n_ood)


def check_exercise_1(table) -> bool:
    """``table = {"10:1": {"auroc": .., "aupr_in": .., "aupr_out": ..}, "1:1": {...}, "1:10": {...}}`` for
    ``two_gaussians(n_id, n_ood)`` with the sizes in ``RATIOS``."""
    ex = EX.format(1)
    table = as_dict(table, tuple(RATIOS), "table", ex)
    for ratio, (n_id, n_ood) in RATIOS.items():
        row = as_dict(table[ratio], ("auroc", "aupr_in", "aupr_out"), f"table[{ratio!r}]", ex)
        a, b = two_gaussians(n_id, n_ood)
        y_ood = np.r_[np.zeros(n_id), np.ones(n_ood)]
        s = np.r_[a, b]
        want = {"auroc": roc_auc_score(y_ood, s), "aupr_in": average_precision_score(1 - y_ood, -s),
                "aupr_out": average_precision_score(y_ood, s)}
        for k, v in want.items():
            close(ex, f"{k} at {ratio}", as_float(row[k], f"table[{ratio!r}][{k!r}]", ex), v, 1e-3,
                  "AUPR-In: ID positive, scored by -energy; AUPR-Out: OOD positive, scored by energy")
    return passed(ex, "AUROC stays put while AUPR-In and AUPR-Out follow the share of their positive class.")


def check_exercise_2(answer) -> bool:
    """``answer = {"auroc": .., "fpr95": ..}``: the population values (infinitely many samples) for ID
    energies ~ N(0, 1) and OOD energies ~ N(1.5, 1): AUROC = P(OOD score > ID score) and FPR at the
    threshold that keeps 95 % of ID."""
    ex = EX.format(2)
    answer = as_dict(answer, ("auroc", "fpr95"), "answer", ex)
    # brute force on a fine grid: P(S_ood > S_id) = ∫ φ(x) (1 - Φ(x - 1.5)) dx; FPR = P(S_ood <= q_0.95)
    x = np.linspace(-10, 10, 200_001)
    auroc = float(np.sum(stats.norm.pdf(x) * stats.norm.sf(x - 1.5)) * (x[1] - x[0]))
    t = x[np.searchsorted(stats.norm.cdf(x), 0.95)]
    fpr = float(stats.norm.cdf(t - 1.5))
    close(ex, "auroc", as_float(answer["auroc"], "auroc", ex), auroc, 1e-4,
          "the difference of two independent normals is normal: N(1.5, 2)")
    close(ex, "fpr95", as_float(answer["fpr95"], "fpr95", ex), fpr, 1e-3,
          "threshold t = Φ⁻¹(0.95) on the ID scores; OOD accepted when its score is ≤ t")
    return passed(ex, f"AUROC = Φ(1.5/√2) = {auroc:.4f}, FPR95 = Φ(Φ⁻¹(0.95) - 1.5) = {fpr:.4f}: compare with "
                      "the sample values the chapter prints.")


def check_exercise_3(answer) -> bool:
    """``answer = {"auroc": .., "tied_pairs": ..}`` for ``two_gaussians(2000, 200)`` rounded to one decimal:
    the AUROC (ties count ½) and the fraction of (ID, OOD) pairs whose rounded scores are equal."""
    ex = EX.format(3)
    answer = as_dict(answer, ("auroc", "tied_pairs"), "answer", ex)
    a, b = (np.round(s, 1) for s in two_gaussians(2000, 200))
    greater, tied = (b[None, :] > a[:, None]).mean(), (b[None, :] == a[:, None]).mean()
    got = as_float(answer["auroc"], "auroc", ex)
    if abs(got - greater) < 1e-9 and tied > 0:
        fail(ex, "your AUROC counts tied pairs as 0: they count ½")
    close(ex, "auroc", got, float(greater + 0.5 * tied), 1e-9)
    close(ex, "tied_pairs", as_float(answer["tied_pairs"], "tied_pairs", ex), float(tied), 1e-9)
    return passed(ex, f"{100 * tied:.1f} % of the pairs tie after rounding; with ties at ½ AUROC moves only by "
                      "what rounding reorders.")


def check_exercise_4(balanced_aupr_out) -> bool:
    """Implement it: ``balanced_aupr_out(score_id, score_ood) -> float``, the Elflein code's protocol (the
    paper's tables): read each set in stored order for ``10_000 // 128 + 1`` whole batches of 128 (at most
    10,112 scores), cut both to the shorter length, then average precision with OOD positive, ranked by the
    score (the step-wise sum ``Σ (R_n - R_{n-1}) P_n``, no interpolation). Compared with the library's
    ``all_metrics(...)["aupr_out_bal"]`` at set sizes the check draws (one above the cap)."""
    ex = EX.format(4)
    from ebm_ood.metrics import all_metrics
    fn = as_callable(balanced_aupr_out, "balanced_aupr_out", ex)
    rng = np.random.default_rng(74)
    for n_id, n_ood in ((int(rng.integers(300, 900)), int(rng.integers(1500, 3000))),
                        (int(rng.integers(10_500, 12_000)), int(rng.integers(10_300, 11_000)))):
        a = np.round(rng.normal(0.0, 1.0, n_id), 2)                         # rounded: ties happen
        b = np.round(rng.normal(0.8, 1.2, n_ood) + np.linspace(0.0, 1.0, n_ood), 2)   # drifts with the order
        want = all_metrics(a, b)["aupr_out_bal"]
        n = min(n_id, n_ood, 10_112)
        if abs(want - average_precision_score(np.r_[np.zeros(n), np.ones(n)], np.r_[a[:n], b[:n]])) > 1e-12:
            fail(ex, "internal: the library's protocol disagrees with sklearn on the cut sets")
        close(ex, f"balanced_aupr_out at {n_id} ID / {n_ood} OOD scores",
              as_float(fn(a.copy(), b.copy()), "balanced_aupr_out", ex), want, 1e-9,
              "cut both sets to min(n_id, n_ood, 10112) keeping the first scores (no shuffling), then AP with "
              "OOD as the positive class")
    return passed(ex, "the paper's AUPR is AP-Out on 1:1 sets of at most 10,112: chance is ≈ 50 % there, "
                      "whatever the original set sizes.")
