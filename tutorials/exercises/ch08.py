"""Chapter 08 exercises: the paper's % improvement, the density of a homogeneous network far from the data,
and whether an improvement beats the seed-to-seed spread."""
from __future__ import annotations

import numpy as np
from scipy import stats

from exercises._check import as_dict, as_float, close, fail, passed

EX = "ch08 exercise {}"
GROUPS = {"noise": "non-natural", "constant": "non-natural", "digits-89": "natural", "oodomain": "non-natural"}
BASE = {"noise": 96.13, "constant": 95.43, "digits-89": 61.0, "oodomain": 80.5}   # AUC-PR of M (%)
NEW = {"noise": 94.57, "constant": 98.68, "digits-89": 66.2, "oodomain": 78.9}    # AUC-PR of M-S (%)


def check_exercise_1(answer) -> bool:
    """``answer = {"natural": %, "non-natural": %}``: Elflein's % improvement of ``NEW`` over ``BASE``,
    the mean over each group's sets of ``100 (new - base) / base``."""
    ex = EX.format(1)
    answer = as_dict(answer, ("natural", "non-natural"), "answer", ex)
    for g in ("natural", "non-natural"):
        names = [n for n, gg in GROUPS.items() if gg == g]
        want = float(np.mean([100 * (NEW[n] - BASE[n]) / BASE[n] for n in names]))
        of_means = 100 * (np.mean([NEW[n] for n in names]) - np.mean([BASE[n] for n in names])) / \
            np.mean([BASE[n] for n in names])
        got = as_float(answer[g], f"answer[{g!r}]", ex)
        if abs(got - of_means) < 1e-6 and abs(want - of_means) > 1e-6:
            fail(ex, f"{g}: {got:.3f} % is the improvement of the mean; the paper averages per-set improvements")
        from ebm_ood.commands.experiments.improvement import improvement_by_group
        wrap = lambda d: {k: {"aupr": v} for k, v in d.items()}          # noqa: E731
        if abs(improvement_by_group(wrap(NEW), wrap(BASE), GROUPS, metric="aupr")[g] - want) > 1e-9:
            fail(ex, "internal: the library's improvement_by_group disagrees with the per-set mean")
        close(ex, g, got, want, 1e-6)
    return passed(ex, "per-set improvements, then the mean per group (Table 2's 0.89 for Segment).")


def homogeneous_net(bias: bool = False, seed: int = 0):
    """A 2 → 16 → 16 → 3 LeakyReLU MLP (float64), without biases unless ``bias``."""
    import torch
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(2, 16, bias=bias), torch.nn.LeakyReLU(0.2),
                               torch.nn.Linear(16, 16, bias=bias), torch.nn.LeakyReLU(0.2),
                               torch.nn.Linear(16, 3, bias=bias)).double()


X = np.array([0.3, -0.8])


def check_exercise_2(answer) -> bool:
    """``answer = {"no_bias": slope, "bias": slope}``: the slope ``d log p̃(αx) / dα`` for large α (with
    ``log p̃ = -E = logsumexp f``) at ``X``, for ``homogeneous_net(bias=False)`` and ``homogeneous_net(bias=True)``."""
    ex = EX.format(2)
    import torch
    answer = as_dict(answer, ("no_bias", "bias"), "answer", ex)
    for key, bias in (("no_bias", False), ("bias", True)):
        net = homogeneous_net(bias=bias)
        x = torch.as_tensor(X)
        with torch.no_grad():
            lp = [float(torch.logsumexp(net(a * x[None]), dim=1)) for a in (1e4, 1e4 + 1)]
        want = lp[1] - lp[0]
        close(ex, f"the slope ({key})", as_float(answer[key], key, ex), want, 1e-4 * max(1.0, abs(want)),
              "f(αx) = α f(x) without biases, so logsumexp f(αx) ≈ α max_y f(x)[y]; with biases the "
              "slope is that of the bias-free part of the network (biases only add O(1))")
    return passed(ex, "log p̃(αx) grows linearly in α: a positive slope means the model puts *more* density "
                      "far from the data along x — the failure on non-natural sets.")


SEEDS_BASE = np.array([71.2, 74.8, 69.9])
SEEDS_NEW = np.array([73.0, 77.1, 70.4])


def check_exercise_3(answer) -> bool:
    """``answer = {"t": .., "p": .., "significant": bool}``: Welch's two-sample t-test of the per-seed AUC-PRs
    ``SEEDS_NEW`` against ``SEEDS_BASE`` (two-sided p), and whether the difference is significant at 5 %."""
    ex = EX.format(3)
    answer = as_dict(answer, ("t", "p", "significant"), "answer", ex)
    # Welch by hand: t = Δmean / √(s₁²/n₁ + s₂²/n₂), Welch–Satterthwaite degrees of freedom
    v1, v2 = SEEDS_NEW.var(ddof=1) / 3, SEEDS_BASE.var(ddof=1) / 3
    t = (SEEDS_NEW.mean() - SEEDS_BASE.mean()) / np.sqrt(v1 + v2)
    dof = (v1 + v2) ** 2 / (v1**2 / 2 + v2**2 / 2)
    p = 2 * stats.t.sf(abs(t), dof)
    close(ex, "t", as_float(answer["t"], "t", ex), float(t), 1e-6, "Welch: unequal variances, ddof = 1")
    close(ex, "p", as_float(answer["p"], "p", ex), float(p), 1e-6)
    if bool(answer["significant"]) != bool(p < 0.05):
        fail(ex, f"significant = {answer['significant']} does not follow from p: compare p with 0.05")
    return passed(ex, f"a +{SEEDS_NEW.mean() - SEEDS_BASE.mean():.1f} point mean gain with p = {p:.2f}: with "
                      "3 seeds, the seed-to-seed spread hides it.")
