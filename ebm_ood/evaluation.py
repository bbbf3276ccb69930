"""Evaluate fitted detectors on your own data: every metric of :mod:`ebm_ood.metrics` and the CLI's tables.

``evaluate(detector, x_id_test, {"noise": x_noise, "svhn": x_svhn})`` scores the ID test set once and
every OOD set with ``detector.score`` (higher = more OOD) and computes
:func:`ebm_ood.metrics.all_metrics` for each (ID, OOD set) pair. The metrics, as fractions in [0, 1],
and which class each one counts as positive:

* ``auroc`` — area under the ROC curve, ``P(s_ood > s_id) + ½ P(s_ood = s_id)``; the same whichever class
  is positive;
* ``aupr_in`` — average precision with **ID positive** (HEAT), ranking by ``-score``;
* ``aupr_out`` — average precision with **OOD positive**, ranking by ``score``;
* ``fpr95`` — with **ID positive**: the fraction of OOD samples called ID at the threshold that keeps 95 %
  of the ID samples (``t`` = the 0.95-quantile of the ID scores; ID iff ``score <= t``); lower is better;
* ``aupr_out_bal``, ``aupr_in_bal``, ``auroc_bal`` — the same on the Elflein code's balanced sets (both
  cut to the shorter length, at most 10,112; :func:`ebm_ood.metrics.balance`); ``aupr_out_bal`` (OOD
  positive) is the metric of the Elflein paper's tables;
* ``n_id``, ``n_ood`` — the full set sizes (they fix the chance level, :func:`ebm_ood.metrics.chance_level`).

:meth:`Evaluation.markdown` renders the tables ``ebm-ood benchmark`` prints
(:func:`ebm_ood.tables.elflein_table` and :func:`~ebm_ood.tables.heat_table`), which
split OOD sets into *natural* and *non-natural* by ``groups``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from ebm_ood.tables import ELFLEIN_METRIC, elflein_table, heat_table, metric_caption
from ebm_ood.data import NATURAL, NON_NATURAL
from ebm_ood.plumbing.errors import NonFiniteError, NotFittedError
from ebm_ood.plumbing.inputs import is_batch_iterable, iter_batches
from ebm_ood.metrics import all_metrics

TABLES = ("elflein", "heat")


@dataclass
class Evaluation:
    """What :func:`evaluate` returns. FPR95 here counts ID as the positive class (the fraction of an OOD
    set called ID at the threshold that keeps 95 % of ID samples; :func:`ebm_ood.metrics.fpr_at_tpr`).

    Parameters
    ----------
    metrics : ``{method: {ood_set: {metric: value}}}``, each inner dict exactly
        :func:`ebm_ood.metrics.all_metrics` of (ID scores, that set's scores).
    groups : ``{ood_set: group}`` ("natural", "non-natural", or another tag that the tables leave out).
    groups_given : False when every set was counted natural by default.
    scores : ``{method: {"id": (N,), ood_set: (M,)}}`` float64, the scores behind the metrics (not
        serialised).

    Example
    -------
    >>> import numpy as np, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> det = ebm_ood.KNN(k=5, normalize=False).fit(rng.normal(size=(100, 4)))
    >>> ev = ebm_ood.evaluate(det, rng.normal(size=(50, 4)), {"shifted": rng.normal(3, 1, size=(50, 4))})
    >>> ev.metrics["KNN"]["shifted"]["auroc"] > 0.9
    True
    """

    metrics: dict[str, dict[str, dict[str, float]]]
    groups: dict[str, str]
    groups_given: bool = True
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False, compare=False)

    def table_results(self) -> dict:
        """``{method: {ood_set: {metric: value, metric_std: 0.0, "seeds": 1}}}``: the CLI's aggregated form
        for one run (the CLI's ``±`` is the standard deviation over seeds; one evaluation has none, so the
        tables print the value alone)."""
        return {m: {s: {**row, **{f"{k}_std": 0.0 for k in row}, "seeds": 1}
                    for s, row in per_set.items()} for m, per_set in self.metrics.items()}

    def markdown(self, metric: str = ELFLEIN_METRIC, tables: tuple[str, ...] = TABLES) -> str:
        """The Elflein Table 1 style table of ``metric`` (default ``aupr_out_bal``, the authors' protocol;
        a key of :data:`ebm_ood.tables.METRIC_LABELS`) and the HEAT Table 1 style FPR95 / AUROC
        table, as ``ebm-ood benchmark`` prints them, in percent."""
        unknown = [t for t in tables if t not in TABLES]
        if unknown or not tables:
            raise ValueError(f"tables: expected a non-empty subset of {TABLES}, got {tables!r}")
        caption = metric_caption(metric)
        results = self.table_results()
        parts = []
        if "elflein" in tables:
            parts += [f"## {caption} (%) — Elflein Table 1 style", "",
                      elflein_table(results, self.groups, metric), ""]
        if "heat" in tables:
            parts += ["## FPR95 ↓ / AUROC ↑ (%) — HEAT Table 1 style (near = natural, far = non-natural)", "",
                      heat_table(results, self.groups), ""]
        if not self.groups_given:
            parts.append("No groups given: every OOD set is counted as natural (near).")
        left_out = [f"{s} ({g})" for s, g in self.groups.items() if g not in (NATURAL, NON_NATURAL)]
        if left_out:
            parts.append("Not in the tables (neither natural nor non-natural): " + ", ".join(left_out) + ".")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        """``{"metrics": ..., "groups": ..., "groups_given": ...}`` of plain floats, strings and bools."""
        return {"metrics": {m: {s: {k: float(v) for k, v in row.items()} for s, row in per_set.items()}
                            for m, per_set in self.metrics.items()},
                "groups": dict(self.groups), "groups_given": bool(self.groups_given)}

    def to_json(self, indent: int | None = 2) -> str:
        """:meth:`to_dict` as JSON (methods and sets in evaluation order)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict) -> "Evaluation":
        """The inverse of :meth:`to_dict` (scores are not stored, so they are empty)."""
        missing = [k for k in ("metrics", "groups") if k not in d]
        if missing:
            raise ValueError(f"d: expected the keys 'metrics' and 'groups' of Evaluation.to_dict(), missing {missing}")
        return cls(metrics=d["metrics"], groups=d["groups"], groups_given=bool(d.get("groups_given", True)))


def _detectors(detector) -> dict:
    """``{row name: detector}``, every one fitted."""
    if isinstance(detector, dict):
        if not detector:
            raise ValueError("detector: expected a fitted detector or a non-empty dict {name: fitted detector}, "
                             "got an empty dict")
        named = {str(k): v for k, v in detector.items()}
        label = lambda k: f"detector[{k!r}]"  # noqa: E731
    else:
        named = {getattr(detector, "name", type(detector).__name__): detector}
        label = lambda k: "detector"  # noqa: E731
    for key, det in named.items():
        if not callable(getattr(det, "score", None)):
            raise TypeError(f"{label(key)}: expected a fitted detector (with fit/score), got {type(det).__name__}")
        check = getattr(det, "check_fitted", None)
        if callable(check):
            try:
                check()
            except NotFittedError as err:
                raise NotFittedError(f"{label(key)}: {err}") from err
    return named


def _ood_sets(ood_data, names) -> dict:
    if not isinstance(ood_data, dict):
        raise TypeError(f"ood_data: expected a dict {{name: OOD data}}, got {type(ood_data).__name__}")
    if not ood_data:
        raise ValueError("ood_data: expected a dict {name: OOD data} with at least one OOD set, got an empty dict")
    if names is None:
        return dict(ood_data)
    names = [names] if isinstance(names, str) else list(names)
    unknown = [n for n in names if n not in ood_data]
    if unknown or not names:
        raise ValueError(f"names: expected a non-empty list of keys of ood_data ({', '.join(map(str, ood_data))}), "
                         f"got {names!r}" + (f"; unknown: {', '.join(map(str, unknown))}" if unknown else ""))
    return {n: ood_data[n] for n in names}


def _groups(groups, sets: dict) -> tuple[dict[str, str], bool]:
    if groups is None:
        return {n: NATURAL for n in sets}, False
    if not isinstance(groups, dict):
        raise TypeError(f"groups: expected a dict {{ood_set: 'natural' | 'non-natural'}}, got {type(groups).__name__}")
    missing = [n for n in sets if n not in groups]
    if missing:
        raise ValueError(f"groups: no group for the OOD set(s) {', '.join(map(str, missing))}; give each set "
                         f"'{NATURAL}' or '{NON_NATURAL}' (or leave groups=None: all '{NATURAL}')")
    bad = {n: g for n, g in groups.items() if n in sets and (not isinstance(g, str) or not g)}
    if bad:
        raise ValueError(f"groups: expected '{NATURAL}', '{NON_NATURAL}' or another non-empty tag, got {bad}")
    return {n: groups[n] for n in sets}, True


def _score(det, data, what: str, allow_empty: bool = False) -> np.ndarray:
    """``det.score(data)``; an input error is re-raised naming ``what``; an empty set is an error (unless
    ``allow_empty``: one batch of a set)."""
    try:
        s = np.asarray(det.score(data), dtype=np.float64)
    except NonFiniteError as err:
        raise NonFiniteError(f"{what}: {err}") from err
    except (ValueError, TypeError) as err:
        if type(err) not in (ValueError, TypeError):
            raise
        raise type(err)(f"{what}: {err}") from err
    if s.ndim != 1 or (s.shape[0] == 0 and not allow_empty):
        raise ValueError(f"{what}: expected at least one sample to score, got scores of shape {s.shape}")
    return s


def evaluate(detector, id_data, ood_data: dict, *, groups: dict[str, str] | None = None,
             names=None) -> Evaluation:
    """Score ``id_data`` (ID test samples ``(N, ...)``: numpy, tensor, or an iterable of batches such as a
    DataLoader, read once and batch by batch: each batch goes through every detector and is dropped) and
    every set of ``ood_data`` (``{ood_set: (M, ...) data}``, the same kinds) with each fitted detector and
    compute :func:`ebm_ood.metrics.all_metrics` per (ID, OOD set) pair (the module docstring says which
    class each metric counts as positive).

    ``detector``: one fitted detector (its row is named by ``detector.name``) or ``{name: fitted
    detector}`` (one row each, in order). ``groups``: ``{ood_set: "natural" | "non-natural"}`` for the
    tables' split (other tags are kept in the metrics but left out of the tables); default ``None``: every
    set counts as natural, and :meth:`Evaluation.markdown` says so. ``names``: the OOD sets to evaluate, in
    order (default: all of ``ood_data``). Returns an :class:`Evaluation`.
    """
    detectors = _detectors(detector)
    sets = _ood_sets(ood_data, names)
    group_of, given = _groups(groups, sets)
    per_row = {row: {} for row in detectors}
    for key, what, data in [("id", "id_data", id_data)] + [(n, f"ood_data[{n!r}]", d) for n, d in sets.items()]:
        for row, s in _score_all(detectors, data, what).items():
            per_row[row][key] = s
    metrics = {row: {name: all_metrics(per_set["id"], per_set[name]) for name in sets}
               for row, per_set in per_row.items()}
    return Evaluation(metrics=metrics, groups=group_of, groups_given=given, scores=per_row)


def _score_all(detectors: dict, data, what: str) -> dict[str, np.ndarray]:
    """``{row: scores (N,)}`` of one data set. An iterable of batches is read once: each batch is scored by
    every detector (detectors sharing a Backbone run its network once per batch) and dropped."""
    if not is_batch_iterable(data):
        return {row: _score(det, data, what) for row, det in detectors.items()}
    parts = {row: [] for row in detectors}
    for i, (xb, _) in enumerate(iter_batches(data, what)):
        for row, det in detectors.items():
            parts[row].append(_score(det, xb, f"{what} batch {i}", allow_empty=True))
    out = {row: np.concatenate(p) for row, p in parts.items()}
    for s in out.values():
        if s.shape[0] == 0:
            raise ValueError(f"{what}: expected at least one sample to score, got none")
    return out
