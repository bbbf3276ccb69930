"""The papers' experiments as commands (``ebm-ood experiment NAME``), built on the benchmark runner.

Elflein et al. 2021, §4.2–4.3 and App. A: ``supervision`` (Exp. 2, Table 2), ``gamma-sweep`` (Fig. 1),
``density-vs-norm`` (Fig. 2), ``embeddings`` (Exp. 3, Table 3), ``bottleneck`` (Exp. 4, Tables 4/7),
``smoothness`` (Exp. 5, Fig. 4), ``samples`` (Exp. 6, Fig. 5). Each module exposes
``add_arguments(parser)``, ``run(args) -> int`` and a dataclass config + ``run_experiment(config)`` for
use from Python (tutorial 08). The CLI names are listed in ``ebm_ood.cli.EXPERIMENTS``.
"""

