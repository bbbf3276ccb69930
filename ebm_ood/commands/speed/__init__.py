"""Speed benchmarks (``ebm-ood bench NAME``): each module has ``add_arguments(parser)`` and ``run(args) -> int``."""
