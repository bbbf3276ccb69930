"""The papers' experiments as commands (``ebm-ood experiment NAME``), built on the benchmark runner.

Elflein et al. 2021, §4.2–4.3 and App. A: ``supervision`` (Exp. 2, Table 2), ``gamma-sweep`` (Fig. 1),
``density-vs-norm`` (Fig. 2), ``embeddings`` (Exp. 3, Table 3), ``bottleneck`` (Exp. 4, Tables 4/7),
``smoothness`` (Exp. 5, Fig. 4), ``samples`` (Exp. 6, Fig. 5). Each module exposes ``NAME`` (its result
files), ``SUMMARY`` (its line in ``ebm-ood experiment --help``), ``add_arguments(parser)``,
``run(args) -> int`` and a dataclass config + ``run_experiment(config)`` for use from Python (tutorial
08); what they share is in :mod:`ebm_ood.commands.experiments.common` (settings, flags, running),
:mod:`~ebm_ood.commands.experiments.improvement` (the "% improvement") and :mod:`~ebm_ood.commands.experiments.output`
(writing results).

Lafon et al. 2023 (HEAT): ``heat-lambda`` (Fig. 3a), ``heat-beta`` (Fig. 3b, Table 3), ``heat-lowdata``
(Fig. 4), and ``heat-diagnose`` (what the residual ``E_θ`` learns; no figure of the paper); each exposes ``add_arguments(parser)`` and ``run(args) -> int``, sharing
:mod:`ebm_ood.commands.experiments.heat_common`. The CLI names are listed in ``ebm_ood.commands.cli.EXPERIMENTS``.
"""
