"""The benchmark's Markdown report: one table per dataset and suite, and wall times per method."""
from __future__ import annotations

from ebm_ood.tables import elflein_table, heat_table, metric_caption, timing_table


def render_markdown(results: dict, timings: dict, groups: dict, specs, *, preset: str, seeds, metric: str,
                    total_seconds: float) -> str:
    """``results``/``timings`` of :func:`~ebm_ood.commands.benchmark.runner.run_benchmark`; ``groups``: {dataset:
    {ood_set: group}}; ``metric``: the Elflein tables' metric (a key of
    :data:`~ebm_ood.tables.METRIC_LABELS`; the caption says which protocol)."""
    suites = {s.name: s.suites for s in specs}
    parts = [f"# ebm-ood benchmark (preset {preset}, seeds {','.join(map(str, seeds))})", ""]
    for dataset, per_method in results.items():
        title = " ".join(str(dataset).splitlines())
        ell = {m: r for m, r in per_method.items() if "elflein" in suites.get(m, ())}
        heat = {m: r for m, r in per_method.items() if "heat" in suites.get(m, ())}
        if ell:
            parts += [f"## {title}: {metric_caption(metric)} (%) — Elflein Table 1 style", "",
                      elflein_table(ell, groups[dataset], metric), ""]
        if heat:
            parts += [f"## {title}: FPR95 ↓ / AUROC ↑ (%) — HEAT Table 1 style (near = natural, far = non-natural)", "",
                      heat_table(heat, groups[dataset]), ""]
    parts += ["## Wall time per method", "", timing_table(timings), "",
              "Each row is its cells' own wall times summed over the seeds (the cell that first needs the seed's "
              "shared CE classifier or backbone includes its training); cells run by parallel workers overlap, so "
              "the rows can add up to more than the total.", "",
              f"Total: {total_seconds:.1f} s wall-clock time of the whole run (cells kept from an earlier run "
              "not included)."]
    return "\n".join(parts)
