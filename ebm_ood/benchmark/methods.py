"""Every method the benchmark knows, registered in table order. Each block: a ``build(ctx)`` returning an
unfitted detector configured for ``ctx.preset`` and the dataset kind, and its :class:`MethodSpec`."""
from __future__ import annotations

from ebm_ood.benchmark.registry import MethodSpec, RunContext, register_method
from ebm_ood.methods.ce import CEClassifier, ce_config


# --- CE baseline (Elflein) --------------------------------------------------------------------------
def build_ce(ctx: RunContext) -> CEClassifier:
    return CEClassifier(ce_config(ctx.preset, ctx.dataset.kind), device=ctx.device, seed=ctx.seed)


def shared_classifier(ctx: RunContext) -> CEClassifier:
    """The CE classifier of this (dataset, seed), trained once and shared (HEAT backbone, -E methods)."""
    d = ctx.dataset
    return ctx.shared("ce-classifier", lambda: build_ce(ctx).fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val)))


register_method(MethodSpec("CE", build_ce, suites=("elflein",), uses_labels=True,
                           description="cross-entropy classifier, energy score (Elflein baseline)"))
