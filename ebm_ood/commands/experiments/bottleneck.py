"""Elflein Experiment 4, Tables 4 and 7: 1×1-conv bottlenecks after every block of the conv energy.

:class:`~ebm_ood.nn.SmallWRN` with ``bottleneck=factor`` follows every block with the authors' 1×1 convs
``C → max(1, ⌊factor · C⌋) → C`` (``--form expand``, default; :func:`~ebm_ood.nn.bottleneck_channels`), or
with one 1×1 conv ``C → ⌊factor · C⌋`` whose output the next block reads (``--form reduce``). Factor 1.0
inserts full-width 1×1 convs: the same function class as no bottleneck, another parametrisation — so the
reference of Table 4 is the network *without* bottleneck ("none", the paper's 1.00 row of Table 7 equals
its unbottlenecked results), and 1.0 is reported as a control.

* Table 7: AUC-PR per OOD set for every factor (0.05, 0.1, 0.2, 1.0) and none.
* Table 4: % improvement in AUC-PR of factor 0.2 over none, averaged over natural / non-natural sets
  (the paper: natural improves for every method).

The bottleneck lives in the conv net: SSM's default image energy is that WRN (with its smooth LeakyReLU,
see its module), and ``image_network="wrn"`` is set here for every factor, including none, so that an
``image_network="mlp"`` default could not slip in. Image datasets only.

Run: ``ebm-ood experiment bottleneck [--factors 0.05,0.1,0.2,1.0] [--quick]``.
Writes ``bottleneck.md`` (Tables 4 and 7) and ``bottleneck.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ebm_ood.tables import elflein_table, metric_caption
from ebm_ood.data import NATURAL, NON_NATURAL
from ebm_ood.nn import BOTTLENECK_FORMS
from ebm_ood.commands.experiments.common import (Settings, add_common_arguments, ebm_spec, groups_of, load_dataset, run_cells, settings_from_args, supports)
from ebm_ood.commands.experiments.improvement import fmt, improvement_by_group, improvement_table
from ebm_ood.commands.experiments.output import finish
from ebm_ood.commands.flags import parse_floats

NAME = "bottleneck"
SUMMARY = "Elflein Exp. 4, Tables 4 and 7: 1×1-conv bottlenecks in the conv energy"
FACTORS = (0.05, 0.1, 0.2, 1.0)


@dataclass
class BottleneckConfig:
    settings: Settings = field(default_factory=Settings)
    factors: tuple[float, ...] = FACTORS  # Table 7's sweep; "none" (no bottleneck) is always added
    table4_factor: float = 0.2  # Table 4 compares this factor with none
    form: str = "expand"  # bottleneck_form: "expand" (the authors') or "reduce"


def label(method: str, factor: float | None) -> str:
    return f"{method} bn={'none' if factor is None else f'{factor:g}'}"


def method_overrides(method: str, factor: float | None, form: str = "expand") -> dict:
    """Config overrides: the bottleneck factor and form, and SSM's conv energy (its bottleneck needs the WRN)."""
    extra = {"image_network": "wrn"} if method == "SSM" else {}
    return {"bottleneck": factor, "bottleneck_form": form, **extra}


def run_experiment(cfg: BottleneckConfig, log=None) -> dict:
    s = cfg.settings
    missing = [m for m in s.methods if not supports(m, "bottleneck")]
    if missing:
        raise ValueError(f"methods without a bottleneck option: {', '.join(missing)}")
    grid = (None,) + tuple(cfg.factors)
    specs = [ebm_spec(label(m, f), m, s, **method_overrides(m, f, cfg.form)) for m in s.methods for f in grid]
    results = run_cells(s, specs, log)
    groups = groups_of(load_dataset(s.dataset))
    sweep = {m: {f"{f:g}": improvement_by_group(results[label(m, f)], results[label(m, None)], groups, s.metric)
                 for f in cfg.factors} for m in s.methods}
    key = f"{cfg.table4_factor:g}"
    improvement = {m: sweep[m][key] for m in s.methods} if cfg.table4_factor in cfg.factors else {}
    return {**s.header(NAME),
            "factors": list(cfg.factors), "table4_factor": cfg.table4_factor, "form": cfg.form, "groups": groups,
            "results": results,
            "improvement": improvement, "improvement_by_factor": sweep}


def render(data: dict) -> str:
    parts = [f"# Elflein Tables 4 and 7 — bottlenecks on {data['dataset']} (preset {data['preset']}, "
             f"seeds {','.join(map(str, data['seeds']))}, form {data['form']})", ""]
    if data["improvement"]:
        parts += [f"## Table 4: % improvement in {metric_caption(data['metric'])}, factor {data['table4_factor']:g} "
                  "vs no bottleneck", "",
                  improvement_table(data["improvement"], data["dataset"]), ""]
    lines = ["| Model | factor | Natural (%) | Non-natural (%) |", "|---|---|---|---|"]
    for m, per in data["improvement_by_factor"].items():
        for f, r in per.items():
            lines.append(f"| {m} | {f} | {fmt(r[NATURAL])} | {fmt(r[NON_NATURAL])} |")
    parts += ["## % improvement of every factor vs no bottleneck", ""] + lines + [""]
    parts += [f"## Table 7: {metric_caption(data['metric'])} (%) per factor", "",
              elflein_table(data["results"], data["groups"], data["metric"]), ""]
    return "\n".join(parts)


def add_arguments(p) -> None:
    add_common_arguments(p, NAME)
    p.add_argument("--factors", default=",".join(f"{f:g}" for f in FACTORS),
                   help="comma list of bottleneck factors in (0, 1] (default 0.05,0.1,0.2,1.0; none is always run)")
    p.add_argument("--form", choices=BOTTLENECK_FORMS, default="expand",
                   help="expand: 1x1 convs C -> f*C -> C after every block (the authors' code, default); "
                        "reduce: one 1x1 conv C -> f*C, the next block reads the reduced width")


def run(args) -> int:
    factors = parse_floats(args.factors, "--factors", lambda f: 0 < f <= 1, "factors in (0, 1]")
    data = run_experiment(BottleneckConfig(settings_from_args(args, image_only=True), factors, form=args.form))
    return finish(args.out, NAME, render(data), data)
