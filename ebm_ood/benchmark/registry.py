"""The method registry. A method is a :class:`MethodSpec` whose ``build(ctx)`` returns an unfitted
:class:`~ebm_ood.detectors.base.Detector`; the runner only calls ``fit``/``score`` and never reaches inside.

The specs live in :mod:`ebm_ood.benchmark.methods` (one block per method, in table order), so method
modules never import the benchmark: data flows one way.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Callable

from ebm_ood.data.registry import OODDataset

SUITES = ("elflein", "heat")


@dataclass
class RunContext:
    """What a method's ``build`` may use: the dataset, the seed, the preset ("quick" | "default" |
    "full"), the device, and a per-(dataset, seed) cache for shared pieces (e.g. the trained classifier
    used by HEAT and the -E methods; see :func:`shared`)."""

    dataset: OODDataset
    seed: int
    preset: str = "default"
    device: str = "cpu"
    cache: dict = field(default_factory=dict)

    def shared(self, key: str, make: Callable[[], object]):
        """Build ``make()`` once per context and reuse it (e.g. one backbone for every HEAT detector)."""
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]


@dataclass
class MethodSpec:
    name: str  # as shown in tables, e.g. "CD" or "HEAT-GMM"
    build: Callable[[RunContext], object]  # -> unfitted Detector
    suites: tuple[str, ...] = ("elflein",)
    uses_labels: bool = False  # fit receives y_train
    kinds: tuple[str, ...] = ("tabular", "image")  # dataset kinds it applies to
    description: str = ""


_METHODS: dict[str, MethodSpec] = {}


def register_method(spec: MethodSpec) -> None:
    for s in spec.suites:
        if s not in SUITES:
            raise ValueError(f"suites: unknown suite {s!r}; valid: {SUITES}")
    _METHODS[spec.name.lower()] = spec


def _load() -> None:
    importlib.import_module("ebm_ood.benchmark.methods")


def methods_for(suite: str, names: list[str] | None = None) -> list[MethodSpec]:
    """Every method of ``suite`` ("elflein", "heat" or "all") in table order; or, with ``names``, those
    methods (case-insensitive, from any suite, in the given order, each once). Unknown names list the
    valid ones."""
    _load()
    if suite not in SUITES + ("all",):
        raise ValueError(f"suite: unknown {suite!r}; valid: {', '.join(SUITES + ('all',))}")
    pool = [m for m in _METHODS.values() if suite == "all" or suite in m.suites]
    if not names:
        return pool
    unknown = [n for n in names if n.lower() not in _METHODS]
    if unknown:
        raise ValueError(f"methods: unknown {', '.join(unknown)}; valid: {', '.join(m.name for m in _METHODS.values())}")
    return list({n.lower(): _METHODS[n.lower()] for n in names}.values())
