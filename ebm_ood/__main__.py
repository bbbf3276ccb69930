"""``python -m ebm_ood`` is the same as the ``ebm-ood`` console script."""
from ebm_ood.commands.cli import main

raise SystemExit(main())
