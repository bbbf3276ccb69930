"""OOD-detection metrics, with every convention spelled out.

All functions take ``(score_id, score_ood)``: 1-D arrays where **higher = more OOD** (an energy).
Which class is "positive" matters for the precision-recall and FPR metrics, and the literature disagrees:

* ``auroc`` — area under the ROC curve. It is the same whichever class is positive (as long as the score
  is oriented consistently): ``P(s_ood > s_id) + ½ P(s_ood = s_id)`` (Mann-Whitney).
* ``aupr_in`` — average precision with **ID positive**, ranking by ``-score`` (the HEAT paper; the Elflein
  paper's text).
* ``aupr_out`` — average precision with **OOD positive**, ranking by ``score`` (what the Elflein *code*
  reports in its tables; use ``aupr(..., positive="ood")``).
  Average precision is the step-wise sum ``AP = Σ_n (R_n - R_{n-1}) P_n`` over distinct thresholds,
  no interpolation (as ``sklearn.metrics.average_precision_score``).
* ``fpr_at_tpr`` — FPR at 95 % TPR with **ID positive** (HEAT): the threshold ``t`` is the ``tpr``-quantile
  of the ID scores (``np.quantile``, linear interpolation: ``convention="percentile"``, our default); a
  sample is called ID when its score ``<= t``; FPR is the fraction of OOD samples called ID. Other
  conventions in use: ``"first_roc"`` (the first ROC point whose TPR >= tpr, as many repositories do
  with ``sklearn.metrics.roc_curve``) and ``"nearest_roc"`` (the ROC point whose TPR is nearest to tpr).
  They differ by up to one sample's worth on small sets; tutorial 07 shows a case. The ROC-point
  conventions depend on ranks only; the interpolated percentile does not (it averages two ID scores).

**The Elflein evaluation protocol** (:func:`balance`, the ``*_bal`` metrics of :func:`all_metrics`): the
authors' evaluation (``OODDetectionModel.eval_ood`` in ``selflein/EBM-OOD-Detection``, called by its
``evaluate.py`` with its default ``num=10_000`` and ``batch_size=128``) reads each test set in order for
``num // batch_size + 1`` batches (at most 10,112 samples), then truncates the ID and the OOD scores to the
shorter length, and reports ``average_precision_score`` with **OOD positive** (labels 1 for OOD, score
``-log p``). On such 1:1 sets random scores give ≈ 50 % (:func:`chance_aupr`) and a fully inverted ranking
``1 - ln 2`` ≈ 30.69 %, the floor of the paper's tables. On the full, unbalanced sets the chance level of
AP is the positive class's share instead, so it moves with the set sizes.

Values are fractions in [0, 1]; tables multiply by 100.
"""
from __future__ import annotations

import numpy as np

from ebm_ood.plumbing.checks import check_array


def _check_pair(score_id, score_ood) -> tuple[np.ndarray, np.ndarray]:
    a = check_array(score_id, "score_id", ndim=1, float_only=False).astype(np.float64)
    b = check_array(score_ood, "score_ood", ndim=1, float_only=False).astype(np.float64)
    return a, b


def auroc(score_id, score_ood) -> float:
    """Area under the ROC curve, ``P(s_ood > s_id) + ½ P(s_ood = s_id)``, via average ranks (ties share
    their mean rank): ``(Σ rank(ood) - M(M+1)/2) / (N M)``."""
    a, b = _check_pair(score_id, score_ood)
    s = np.concatenate([a, b])
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), dtype=np.float64)
    sorted_s = s[order]
    # average rank (1-based) within groups of ties
    boundaries = np.flatnonzero(np.diff(sorted_s)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [len(s)]])
    avg = (starts + ends + 1) / 2.0  # mean of 1-based ranks starts+1 .. ends
    ranks[order] = np.repeat(avg, ends - starts)
    n, m = len(a), len(b)
    return float((ranks[n:].sum() - m * (m + 1) / 2.0) / (n * m))


def average_precision(score_pos, score_neg) -> float:
    """Step-wise average precision where **higher score = positive**: ``Σ_n (R_n - R_{n-1}) P_n`` over the
    distinct thresholds taken from high to low (tied scores enter together)."""
    s = np.concatenate([score_pos, score_neg])
    label = np.concatenate([np.ones(len(score_pos)), np.zeros(len(score_neg))])
    order = np.argsort(-s, kind="mergesort")
    s, label = s[order], label[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(label)[last_of_group]
    predicted = last_of_group + 1.0
    precision = tp / predicted
    recall = tp / len(score_pos)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def aupr(score_id, score_ood, positive: str = "id") -> float:
    """Area under the precision-recall curve (average precision) with ``positive`` in {"id", "ood"}."""
    a, b = _check_pair(score_id, score_ood)
    if positive == "id":
        return average_precision(-a, -b)
    if positive == "ood":
        return average_precision(b, a)
    raise ValueError(f"positive: expected 'id' or 'ood', got {positive!r}")


def aupr_in(score_id, score_ood) -> float:
    """AUPR with ID as the positive class (HEAT; the Elflein paper's text)."""
    return aupr(score_id, score_ood, positive="id")


def aupr_out(score_id, score_ood) -> float:
    """AUPR with OOD as the positive class (the Elflein code's tables)."""
    return aupr(score_id, score_ood, positive="ood")


def fpr_at_tpr(score_id, score_ood, tpr: float = 0.95, convention: str = "percentile") -> float:
    """False-positive rate (OOD called ID) at the threshold keeping ``tpr`` of ID samples (ID positive).

    ``convention``: "percentile" (default: ``t = quantile(score_id, tpr)``, ID iff ``score <= t``),
    "first_roc" (first ROC point with TPR >= tpr), "nearest_roc" (ROC point with TPR nearest tpr).
    """
    a, b = _check_pair(score_id, score_ood)
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr: expected a value in (0, 1], got {tpr}")
    if convention == "percentile":
        t = np.quantile(a, tpr)
        return float(np.mean(b <= t))
    if convention not in ("first_roc", "nearest_roc"):
        raise ValueError(f"convention: expected 'percentile', 'first_roc' or 'nearest_roc', got {convention!r}")
    # ROC with ID positive: thresholds over distinct scores, ascending (call ID iff score <= t)
    thresholds = np.unique(np.concatenate([a, b]))
    tprs = np.searchsorted(np.sort(a), thresholds, side="right") / len(a)
    fprs = np.searchsorted(np.sort(b), thresholds, side="right") / len(b)
    if convention == "first_roc":
        i = int(np.argmax(tprs >= tpr - 1e-12))
    else:
        i = int(np.argmin(np.abs(tprs - tpr)))
    return float(fprs[i])


AUTHORS_MAX_ITEMS = 10_000  # eval_ood's default num=10_000 (evaluate.py passes --max-eval to eval_classifier only)
AUTHORS_BATCH_SIZE = 128  # evaluate.py: eval_model(..., batch_size=128)


def balanced_length(n_id: int, n_ood: int, max_items: int = AUTHORS_MAX_ITEMS,
                    batch_size: int = AUTHORS_BATCH_SIZE) -> int:
    """The Elflein code's evaluation length: each set is read for ``max_items // batch_size + 1`` whole
    batches (so at most ``(max_items // batch_size + 1) · batch_size`` = 10,112 samples), then both are cut
    to the shorter one: ``min(n_id, n_ood, that cap)``."""
    if max_items < 1 or batch_size < 1:
        raise ValueError(f"max_items, batch_size: expected positive integers, got {max_items}, {batch_size}")
    return int(min(n_id, n_ood, (max_items // batch_size + 1) * batch_size))


def balance(score_id, score_ood, max_items: int = AUTHORS_MAX_ITEMS,
            batch_size: int = AUTHORS_BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The first :func:`balanced_length` scores of each set, in the order given (the authors' test
    loaders do not shuffle; ``get_dataset`` puts every OOD set in a random order fixed by the seed, so the
    first n are a random sample). Returns ``(score_id[:n], score_ood[:n])``."""
    a, b = _check_pair(score_id, score_ood)
    n = balanced_length(len(a), len(b), max_items, batch_size)
    return a[:n], b[:n]


def chance_aupr(n_pos: int, n_neg: int) -> float:
    """Expected average precision of a uniformly random ranking of ``n_pos`` positives among
    ``n = n_pos + n_neg`` samples (no ties): ``(H_n + (n_pos - 1)/(n - 1) · (n - H_n)) / n`` with the
    harmonic number ``H_n``. (A positive at rank r has precision ``(1 + #positives above it) / r``, and
    ``(r - 1)(n_pos - 1)/(n - 1)`` other positives above it on average.) ≈ ``n_pos / n`` for large sets:
    50 % on the protocol's 1:1 sets."""
    n = n_pos + n_neg
    if n_pos < 1 or n_neg < 0:
        raise ValueError(f"n_pos, n_neg: expected n_pos >= 1 and n_neg >= 0, got {n_pos}, {n_neg}")
    if n == 1:
        return 1.0
    h = float(np.sum(1.0 / np.arange(1, n + 1)))
    return (h + (n_pos - 1) / (n - 1) * (n - h)) / n


def chance_level(metric: str, n_id: int, n_ood: int) -> float:
    """What random scores give on average for ``metric`` (a key of :func:`all_metrics`) at these set
    sizes, as a fraction: AUROC 0.5; FPR95 0.95; AP :func:`chance_aupr` of its positive class, on the
    :func:`balanced_length` sets for the ``*_bal`` metrics."""
    if metric.endswith("_bal"):
        n_id = n_ood = balanced_length(n_id, n_ood)
        metric = metric[: -len("_bal")]
    if metric == "auroc":
        return 0.5
    if metric == "fpr95":
        return 0.95
    if metric == "aupr_in":
        return chance_aupr(n_id, n_ood)
    if metric == "aupr_out":
        return chance_aupr(n_ood, n_id)
    raise ValueError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")


# every key of all_metrics: the full sets (HEAT), the Elflein protocol's balanced sets (*_bal), the set sizes
METRICS = ("auroc", "aupr_in", "aupr_out", "fpr95", "aupr_out_bal", "aupr_in_bal", "auroc_bal", "n_id", "n_ood")


def all_metrics(score_id, score_ood) -> dict[str, float]:
    """Every metric we report, as fractions: on the full sets ``auroc, aupr_in, aupr_out, fpr95``; on the
    Elflein protocol's balanced sets (:func:`balance`) ``aupr_out_bal`` (the paper's tables),
    ``aupr_in_bal``, ``auroc_bal``; and the full set sizes ``n_id, n_ood`` (for :func:`chance_level`)."""
    a, b = _check_pair(score_id, score_ood)
    ab, bb = balance(a, b)
    return {
        "auroc": auroc(a, b),
        "aupr_in": aupr_in(a, b),
        "aupr_out": aupr_out(a, b),
        "fpr95": fpr_at_tpr(a, b, 0.95),
        "aupr_out_bal": aupr_out(ab, bb),
        "aupr_in_bal": aupr_in(ab, bb),
        "auroc_bal": auroc(ab, bb),
        "n_id": float(len(a)),
        "n_ood": float(len(b)),
    }
