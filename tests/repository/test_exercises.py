"""The chapter exercises: every reference solution passes its check, and a deliberately wrong answer fails
it with a message that says what is wrong.

Checks live in ``tutorials/exercises/chNN.py`` (``check_exercise_k(answer)``), solutions in
``tutorials/exercises/solutions/chNN.py`` (``exercise_k()``). Each chapter's Exercises section names its checks.
"""
from __future__ import annotations

import importlib
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tutorials"))

from exercises._check import ExerciseError  # noqa: E402

CHAPTERS = sorted(p.stem for p in (ROOT / "tutorials" / "exercises").glob("ch[0-9][0-9].py"))


def _numbers_of(ch: str) -> list[int]:
    module = importlib.import_module(f"exercises.{ch}")
    return sorted(int(m.group(1)) for name in dir(module) if (m := re.fullmatch(r"check_exercise_(\d+)", name)))


CASES = [(ch, k) for ch in CHAPTERS for k in _numbers_of(ch)]


def check(ch: str, k: int):
    return getattr(importlib.import_module(f"exercises.{ch}"), f"check_exercise_{k}")


def solution(ch: str, k: int):
    return getattr(importlib.import_module(f"exercises.solutions.{ch}"), f"exercise_{k}")


def test_every_chapter_has_exercise_checks():
    chapters = sorted(p.stem[:2] for p in (ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
    assert [f"ch{c}" for c in chapters] == CHAPTERS
    for ch in CHAPTERS:
        assert _numbers_of(ch)[:3] == [1, 2, 3], f"{ch}: expected check_exercise_1..3"


@pytest.mark.parametrize("ch", CHAPTERS)
def test_chapter_text_points_at_its_checks(ch):
    chapter = next((ROOT / "tutorials").glob(f"{ch[2:]}_*.py"))
    text = chapter.read_text(encoding="utf-8").split("## Exercises", 1)[-1]
    missing = [k for k in _numbers_of(ch) if f"check_exercise_{k}" not in text]
    assert not missing, f"{chapter.name}: the Exercises section does not name check_exercise_{missing}"
    assert f"from exercises import {ch}" in text, f"{chapter.name}: the Exercises section does not import {ch}"


@pytest.mark.parametrize("ch,k", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_reference_solution_passes(ch, k, capsys):
    torch.manual_seed(0)
    assert check(ch, k)(solution(ch, k)()) is True
    assert "correct" in capsys.readouterr().out


def _ch01_2_forgot_area():
    return lambda e, g1, g2: float(np.exp(-e).sum())


def _ch02_1_sigma():
    sigma = np.array([[1.0, 0.8], [0.8, 1.0]])
    return {"cov_0.2": sigma, "cov_0.5": sigma, "eta_max": 0.8}


def _ch02_4_full_step():
    """The gradient step without the ½ of HEAT Eq. 4."""
    def chain(energy, x0, n_steps, eta, noise):
        x = x0.clone()
        for t in range(n_steps):
            x.requires_grad_(True)
            (g,) = torch.autograd.grad(energy(x).sum(), x)
            x = (x.detach() - eta * g + eta**0.5 * noise(t)).detach()
        return x
    return chain


def _ch04_3_ssm_square_for_vr():
    """½(vᵀs)² in both forms: SSM-VR's ½‖s‖² forgotten."""
    def ssm_loss(energy, x, v, variance_reduction):
        x = x.detach().requires_grad_(True)
        s = -torch.autograd.grad(energy(x).sum(), x, create_graph=True)[0]
        sv = (s * v).sum(1)
        hv = torch.autograd.grad(sv.sum(), x, create_graph=True)[0]
        return ((hv * v).sum(1) + 0.5 * sv**2).detach()
    return ssm_loss


def _ch03_2_langevin_as_decoupled():
    """Treats the Langevin form like the decoupled one (T = σ²/(2α) with the arguments as given)."""
    from exercises.solutions import ch03
    right = ch03.exercise_2()
    return {**right, "temperature": lambda form, step, noise: noise**2 / (2 * step)}


def _ch03_4_mask_first():
    """Draws the restart mask before the slots."""
    def buffer_sample(buffer, batch_size, reinit_prob, generator):
        reinit = torch.rand(batch_size, generator=generator) < reinit_prob
        idx = torch.randint(0, len(buffer), (batch_size,), generator=generator)
        x = buffer[idx]
        x[reinit] = torch.rand((int(reinit.sum()), buffer.shape[1]), generator=generator) * 2 - 1
        return x, idx
    return buffer_sample


def _ch11_1_unpooled():
    """The covariance of the raw features (np.cov, not centred on the class means)."""
    def mahalanobis(z, y, z_test):
        means = np.stack([z[y == c].mean(0) for c in np.unique(y)])
        precision = np.linalg.inv(np.cov(z.T))
        d = z_test[:, None, :] - means[None]
        return np.einsum("nci,ij,ncj->nc", d, precision, d).min(1)
    return mahalanobis


def _ch11_3_naive_softmax():
    """exp of the raw logits: overflows to inf/inf for large logits."""
    def msp(logits):
        with np.errstate(over="ignore", invalid="ignore"):
            return -np.exp(logits).max(1) / np.exp(logits).sum(1)
    return msp


def _ch07_1_swapped():
    from exercises.solutions import ch07
    table = ch07.exercise_1()
    return {r: {**row, "aupr_in": row["aupr_out"], "aupr_out": row["aupr_in"]} for r, row in table.items()}


def _ch08_1_of_means():
    from exercises.ch08 import BASE, GROUPS, NEW
    out = {}
    for g in ("natural", "non-natural"):
        names = [n for n, gg in GROUPS.items() if gg == g]
        new, base = np.mean([NEW[n] for n in names]), np.mean([BASE[n] for n in names])
        out[g] = 100 * (new - base) / base
    return out


def _ch09_4_with_normaliser():
    """-log of the normalised equal-weight mixture: the paper's form has no normaliser."""
    from scipy import special, stats
    return lambda z, means, cov: -special.logsumexp(
        np.stack([stats.multivariate_normal(m, cov).logpdf(z) for m in means], 1) - np.log(len(means)), axis=1)


def _ch10_3_swapped():
    from ebm_ood.sampling import philox
    return lambda s, o, n: -philox.normal(n, s, o).double().numpy()


WRONG = {
    ("ch01", 1): (lambda: (lambda f, t: -torch.logsumexp(f / t, dim=1)), r"at T = 0\.1 .*differ"),
    ("ch01", 2): (_ch01_2_forgot_area, r"Z = 2513\.27, too large, by a relative error between 1e\+02 and 1e\+03"),
    ("ch01", 3): (lambda: (lambda b: {"E(x)": -b, "E(x,y)": 0.0, "log p(y|x)": 0.0}),
                  r"change of E\(x,y\) at b = 2\.5 = 0 is too large"),
    ("ch02", 1): (_ch02_1_sigma, r"at η = 0\.2 .*not Σ"),
    ("ch02", 2): (lambda: {"predicted": 0.5, "measure": lambda a, s: s**2 / (2 * a)},
                  r"measure\(0\.\d+, 0\.\d+\) = .* is too small.*equipartition T·d/2 holds only"),
    ("ch02", 3): (lambda: (lambda center: np.full(4, 0.25)), r"shares\(\[-?[0-9.]+, -?[0-9.]+\]\).*elements are off"),
    ("ch02", 4): (_ch02_4_full_step, r"chain ends away from the library's"),
    ("ch03", 1): (lambda: 2.0, r"theta = 2 is too small, by a relative error between 1e-01 and 1e\+00"),
    ("ch03", 2): (_ch03_2_langevin_as_decoupled, r"temperature\('langevin', [0-9.]+, [0-9.]+\) = .* is (too large|too small)"),
    ("ch03", 3): (lambda: 0.0, r"c = 0 is not the minimum"),
    ("ch03", 4): (_ch03_4_mask_first, r"your slots differ from the library's"),
    ("ch04", 1): (lambda: np.linalg.inv(np.cov(importlib.import_module("exercises.ch04").gaussian_data().T,
                                                 bias=True)), r"E\[xxᵀ\], not the covariance"),
    ("ch04", 2): (lambda: {"rademacher": 44.96, "gaussian": 44.96}, r"Rademacher variance = 44\.96"),
    ("ch04", 3): (_ch04_3_ssm_square_for_vr, r"SSM-VR \(rademacher v\): \d+ of 12 elements are off"),
    ("ch05", 1): (lambda: (lambda s: {"sigma_best": 0.5, "log_z": 0.2258}),
                  r"sigma_best at the width the check draws = 0\.5 is too small"),
    ("ch05", 2): (lambda: (lambda x: -0.5 * (np.asarray(x) ** 2).sum(1)), r"differs from log N"),
    ("ch05", 4): (lambda: (lambda x, h, log_xi, g, sigma: -(x[None] - g(h.reshape(-1, 2)).view(*h.shape[:2], 3)).mean(0)
                           / sigma**2), r"differs from the library's importance_score"),
    ("ch05", 3): (lambda: (lambda x: (np.zeros((2000, 2)), np.full(2000, -10.2993))),
                  r"mean of your z is off the posterior mean"),
    ("ch06", 1): (lambda: (lambda y: -0.5 * np.log(y) ** 2 - 0.5 * math.log(2 * math.pi) + np.log(y)),
                  r"wrong sign"),
    ("ch06", 2): (lambda: (lambda z, z0, a, b: torch.zeros(len(z))), r"d = 2, α = 0\.7.*off by"),
    ("ch06", 3): (lambda: (lambda lp, d, delta: -np.asarray(lp) / (d * math.log(2))), r"log2\(256\) bits/dim; your 1\.0000 is too small"),
    ("ch07", 1): (_ch07_1_swapped, r"aupr_in at 10:1"),
    ("ch07", 2): (lambda: {"auroc": 0.8556, "fpr95": 0.05}, r"fpr95 = 0\.05"),
    ("ch07", 3): (lambda: {"auroc": float(np.mean(np.greater.outer(
        *[np.round(s, 1) for s in importlib.import_module("exercises.ch07").two_gaussians(2000, 200)][::-1]))),
        "tied_pairs": 0.0}, r"tied pairs as 0"),
    ("ch07", 4): (lambda: (lambda a, b: importlib.import_module("ebm_ood.metrics").aupr_out(a, b)),
                  r"balanced_aupr_out at \d+ ID / \d+ OOD scores = .* is too"),
    ("ch08", 1): (_ch08_1_of_means, r"non-natural: .* is the improvement of the mean"),
    ("ch08", 2): (lambda: {"no_bias": 0.0, "bias": 0.0}, r"slope \(no_bias\) = 0"),
    ("ch08", 3): (lambda: {"t": 0.6285, "p": 0.04, "significant": True}, r"^ch08 exercise 3: t = 0\.6285"),
    ("ch09", 1): (lambda: (lambda e, b: np.mean(e, 1) if b == 0 else
                           np.log(np.exp(b * e).sum(1)) / b if np.isfinite(b) else e.max(1)),
                  r"the mean, not the sum|β = -inf"),
    ("ch09", 2): (lambda: (lambda z: np.zeros(len(z))), r"differ from -log q\(z\)"),
    ("ch09", 3): (lambda: {"predicted": 0.25, "measure": lambda a, eta: 1 / (1 + a)},
                  r"measure\([0-9.]+, [0-9.]+\) = .* is too small"),
    ("ch09", 4): (_ch09_4_with_normaliser,
                  r"differ from GMMPrior\(form='paper'\)"),
    ("ch10", 1): (lambda: {"same_offset": 0.0, "next_offset": 0.0}, r"same_offset = 0 is too small.*same inputs, same numbers"),
    ("ch10", 2): (lambda: {"low": [1, 2, 3, 4], "high": [1, 2, 3, 4]}, r"low: your words \[1, 2, 3, 4\]"),
    ("ch10", 3): (_ch10_3_swapped, r"noise\(1234, 7, 10\) differs"),
    ("ch11", 1): (_ch11_1_unpooled, r"differ from ebm_ood\.Mahalanobis"),
    ("ch11", 2): (lambda: (lambda sv, sn, tpr: (float(np.quantile(sv, tpr)), np.asarray(sn) < np.quantile(sv, tpr))),
                  r"flags differ from predict's"),
    ("ch11", 3): (_ch11_3_naive_softmax, r"msp\(logits\): expected finite"),
}


def test_every_exercise_has_a_wrong_answer():
    assert sorted(WRONG) == sorted(CASES)


def _record(answer, seen: list):
    """``answer`` with every callable in it wrapped so that the numbers it returns are appended to ``seen``."""
    if isinstance(answer, dict):
        return {k: _record(v, seen) for k, v in answer.items()}
    if callable(answer):
        def recorded(*args, **kwargs):
            out = answer(*args, **kwargs)
            seen.append(_record(out, seen))
            return out
        return recorded
    return answer


def _floats(value) -> list[float]:
    """Every number in ``value`` (dicts, lists, arrays, tensors; bools skipped) as a float."""
    if isinstance(value, dict):
        return [f for v in value.values() for f in _floats(v)]
    if isinstance(value, bool) or value is None or callable(value):
        return []
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)):
        return [f for v in value for f in _floats(v)]
    arr = np.asarray(value, dtype=np.float64).ravel()
    return [float(v) for v in arr if np.isfinite(v)]


def expected_values(ch: str, k: int) -> list[float]:
    """The numbers the reference solution gives (its answer, and what its functions return when the check
    calls them): the values a failure message must not show."""
    seen: list = []
    torch.manual_seed(0)
    answer = _record(solution(ch, k)(), seen)
    assert check(ch, k)(answer) is True
    return _floats(answer) + [f for out in seen for f in _floats(out)]


def _significant(text: str) -> int:
    return len(re.sub(r"^0+", "", re.sub(r"[^0-9]", "", text.split("e")[0])).rstrip("0"))


def _answer_values(answer) -> list[float]:
    """The numbers a (wrong) answer holds: a message may echo what the student gave."""
    return _floats(answer)


def _forms(v: float) -> set[str]:
    return {format(x, fmt) for fmt in (".2f", ".3f", ".4f", ".6f", ".3g", ".4g", ".5g", ".6g") for x in (v, abs(v))}


def leaked(message: str, values: list[float], own: list[float] = ()) -> list[str]:
    """The printed forms (2–6 decimals, 3–6 significant digits, with and without sign) of ``values`` that
    ``message`` contains; forms with fewer than 3 significant digits (0.5, 8, 65) are too common to count, and
    forms of the answer's ``own`` numbers (which a message may echo) do not count."""
    echoed = {f for v in own for f in _forms(v)}
    found = []
    for v in values:
        for fmt in (".2f", ".3f", ".4f", ".6f", ".3g", ".4g", ".5g", ".6g"):
            for form in {format(v, fmt), format(abs(v), fmt)}:
                if form not in echoed and _significant(form) >= 3 and re.search(rf"(?<![0-9.]){re.escape(form)}(?![0-9])", message):
                    found.append(form)
    return sorted(set(found))


def _perturb(answer):
    """A wrong answer made from the right one: every number moved by 30 % and 0.05 (functions' outputs too)."""
    if isinstance(answer, dict):
        return {k: _perturb(v) for k, v in answer.items()}
    if isinstance(answer, bool):
        return answer
    if callable(answer):
        return lambda *args, **kwargs: _perturb(answer(*args, **kwargs))
    if hasattr(answer, "detach"):
        return answer * 1.3 + 0.05
    if isinstance(answer, int):
        return answer + 1
    if isinstance(answer, list) and all(isinstance(v, int) for v in answer):
        return [v + 1 for v in answer]
    if isinstance(answer, tuple):
        return tuple(_perturb(v) for v in answer)
    return np.asarray(answer, dtype=np.float64) * 1.3 + 0.05


@pytest.mark.parametrize("ch,k", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_wrong_answer_is_rejected(ch, k):
    make, match = WRONG[(ch, k)]
    with pytest.raises(ExerciseError, match=re.compile(match, re.S)) as err:
        check(ch, k)(make())
    shown = leaked(str(err.value), expected_values(ch, k), own=_answer_values(make()))
    assert not shown, f"{ch} exercise {k}: the failure message shows the expected value(s) {shown}:\n{err.value}"


@pytest.mark.parametrize("ch,k", CASES, ids=[f"{c}-{k}" for c, k in CASES])
def test_perturbed_answer_fails_without_revealing_the_answer(ch, k):
    """Each number of the reference answer moved by 30 %: the check fails, and its message says how far off
    and in which direction but never prints the expected value."""
    torch.manual_seed(0)
    with pytest.raises(ExerciseError) as err:
        check(ch, k)(_perturb(solution(ch, k)()))
    shown = leaked(str(err.value), expected_values(ch, k))
    assert not shown, f"{ch} exercise {k}: the failure message shows the expected value(s) {shown}:\n{err.value}"


def test_leak_detector_sees_a_printed_value():
    assert leaked("theta = 2, but the independent computation gives 4.08163", [4.081632]) == ["4.08163"]
    assert leaked("theta = 2 is too small, by a relative error between 1e-01 and 1e+00", [4.081632]) == []


def test_close_says_direction_and_decade_not_the_value():
    from exercises._check import close
    with pytest.raises(ExerciseError) as err:
        close("ex", "theta", 2.0, 4.0816327, 0.01)
    assert "too small" in str(err.value) and "between 1e-01 and 1e+00" in str(err.value)
    assert not leaked(str(err.value), [4.0816327])


@pytest.mark.parametrize("bad,match", [("text", r"answer: expected a dict"),
                                        ({"predicted": 1.0}, r"expected keys \['measure', 'predicted'\]"),
                                        ({"predicted": "x", "measure": 1.0}, r"predicted.*expected one number")])
def test_malformed_answer_is_named(bad, match):
    with pytest.raises(ExerciseError, match=match):
        check("ch02", 2)(bad)


def test_philox_reference_known_answer():
    """The checks' own Philox (plain ints) reproduces the Random123 known-answer vector for counter 0, key 0."""
    from exercises.ch10 import philox_reference
    assert philox_reference((0, 0, 0, 0), (0, 0)) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
