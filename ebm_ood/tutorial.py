"""What every chapter in ``tutorials/`` starts with: the quick mode, the seed, the thread count, and
where figures go.

* ``EBM_OOD_FAST=1`` (the test suite sets it) runs a chapter at a smaller size: :data:`FAST`.
* Figures go to ``$EBM_OOD_FIGURES``, else ``figures/`` next to the chapter script (``tutorials/figures``),
  else (in a notebook) ``figures/`` in the working folder.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ebm_ood import plotting

FAST = os.environ.get("EBM_OOD_FAST") == "1"


def figures_dir() -> Path:
    if os.environ.get("EBM_OOD_FIGURES"):
        return Path(os.environ["EBM_OOD_FIGURES"])
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else None
    return (Path(script).resolve().parent if script else Path.cwd()) / "figures"


def setup(seed: int = 0, threads: int = 1):
    """Seed torch and set its thread count (one thread is fastest on the chapters' small tensors);
    returns ``matplotlib.pyplot``, or None without matplotlib (figures are then skipped)."""
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    return plotting.pyplot()


def save_figure(fig, name: str) -> Path:
    """Save ``fig`` as ``<figures>/<name>`` and say where."""
    path = Path(plotting.save_figure(fig, figures_dir() / name))
    print(f"figure saved to {path}")
    return path
