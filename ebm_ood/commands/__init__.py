"""The applications built on the library: the ``ebm-ood`` command line (``cli.py``), the flags every command
that trains shares (``flags.py``), the run's cells log (``cell_log.py``), ``ebm-ood benchmark``
(``benchmark/``), ``ebm-ood experiment NAME`` (``experiments/``) and ``ebm-ood bench NAME`` (``speed/``).

Nothing in the library imports from here (README, Layout)."""
