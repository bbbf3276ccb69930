"""Elflein Experiment 3, Table 3: EBMs trained on embeddings. Each EBM (``M-E``) is trained on the
average-pooled penultimate features ``z`` (N, D) of the frozen cross-entropy classifier of the same
(dataset, seed) — the benchmark's shared classifier (:func:`~ebm_ood.commands.benchmark.registry.shared_backbone`) —
and compared with the same method trained on the inputs (``M``).

Table 3 reports the % improvement in AUC-PR of ``M-E`` over ``M``, averaged over the natural and the
non-natural OOD sets. The paper: +53.65 % natural and +10.98 % non-natural on average (images only).
On feature vectors every method uses its tabular configuration (an MLP energy), so by default the
features are scaled like the tabular data: min-max with the ID training features' statistics
(``--scale minmax``; ``--scale none`` trains on the raw features, whose scale is set by the classifier).

Run: ``ebm-ood experiment embeddings [--dataset digits] [--quick]``.
Writes ``embeddings.md`` (Table 3 + the AUC-PR table) and ``embeddings.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ebm_ood.commands.benchmark.registry import MethodSpec, RunContext
from ebm_ood.tables import elflein_table, metric_caption
from ebm_ood.data.embedded import minmax_fit
from ebm_ood.detector import Detector
from ebm_ood.commands.experiments.common import Settings, add_common_arguments, build_ebm, run_variants, settings_from_args
from ebm_ood.commands.experiments.improvement import improvement_table
from ebm_ood.commands.experiments.output import finish

NAME = "embeddings"
SUMMARY = "Elflein Exp. 3, Table 3: EBMs trained on a classifier's embeddings against EBMs on inputs"
SCALES = ("minmax", "none")


@dataclass
class EmbeddingsConfig:
    settings: Settings = field(default_factory=Settings)
    scale: str = "minmax"  # feature scaling before the EBM: "minmax" (ID training statistics) | "none"


class MinMaxScaled(Detector):
    """``inner`` fitted on ``(x - lo) / range`` with per-feature ``lo``, ``range`` of the training
    features (as the tabular data, :func:`~ebm_ood.data.embedded.minmax_fit`); x: (N, D)."""

    def __init__(self, inner: Detector):
        super().__init__(inner.device)
        self.inner, self.name, self.needs_labels = inner, inner.name, inner.needs_labels

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.lo_) / self.range_).astype(np.float32)

    def _fit(self, x, y):
        self.lo_, self.range_ = minmax_fit(x)
        val = self.validation_
        self.inner.fit(self._scaled(x), y, validation=None if val is None else (self._scaled(val[0]), val[1]))

    def _score(self, x):
        return self.inner.score(self._scaled(x))


def embedded_spec(label: str, method: str, settings: Settings, scale: str = "minmax") -> MethodSpec:
    """``M-E``: ``method`` (tabular config) on the penultimate features ``z`` (N, D) of the shared CE
    classifier of the run's (dataset, seed), optionally min-max scaled."""
    if scale not in SCALES:
        raise ValueError(f"scale: expected one of {SCALES}, got {scale!r}")

    def build(ctx: RunContext):
        from ebm_ood.commands.benchmark.registry import shared_backbone
        from ebm_ood.backbone import FeatureSpaceDetector

        det = build_ebm(method, settings, ctx, kind="tabular")
        return FeatureSpaceDetector(shared_backbone(ctx), MinMaxScaled(det) if scale == "minmax" else det,
                                    which="z", name=label)

    return MethodSpec(label, build, description=f"{method} on CE features ({scale})")


def run_experiment(cfg: EmbeddingsConfig, log=None) -> dict:
    """Train M (inputs) and M-E (classifier features) per method; ``improvement`` = Table 3 rows."""
    s = cfg.settings
    results, groups, improvement = run_variants(s, lambda m: embedded_spec(f"{m}-E", m, s, cfg.scale), log=log)
    return {**s.header(NAME), "scale": cfg.scale, "groups": groups, "results": results, "improvement": improvement}


def render(data: dict) -> str:
    return "\n".join([
        f"# Elflein Table 3 — embeddings on {data['dataset']} (preset {data['preset']}, "
        f"seeds {','.join(map(str, data['seeds']))})", "",
        f"% improvement in {metric_caption(data['metric'])} of M-E (trained on the CE classifier's features) "
        f"over M (trained on inputs), mean over the OOD sets of each group. Features scaled: {data['scale']}.", "",
        improvement_table(data["improvement"], data["dataset"]), "",
        f"## {metric_caption(data['metric'])} (%) per OOD set", "",
        elflein_table(data["results"], data["groups"], data["metric"]), ""])


def add_arguments(p) -> None:
    add_common_arguments(p, NAME)
    p.add_argument("--scale", choices=SCALES, default="minmax", help="feature scaling (default minmax, ID training statistics)")


def run(args) -> int:
    data = run_experiment(EmbeddingsConfig(settings_from_args(args), args.scale))
    return finish(args.out, NAME, render(data), data)
