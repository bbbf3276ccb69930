"""What every chapter in ``tutorials/`` starts with: the quick mode, the seed, the thread count, and
where figures go.

* ``EBM_OOD_FAST=1`` (the test suite sets it) runs a chapter at a smaller size: :data:`FAST`.
* Figures go to ``$EBM_OOD_FIGURES``, else ``figures/`` next to the chapter: beside the script
  (``tutorials/figures``), or in a notebook beside the notebook (Jupyter starts the kernel in the
  notebook's folder, so that is the working folder). In a notebook they also show inline.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from ebm_ood.plumbing import plotting
from ebm_ood.plumbing.threads import set_num_threads

FAST = os.environ.get("EBM_OOD_FAST") == "1"


def figures_dir() -> Path:
    """``$EBM_OOD_FIGURES``, else ``figures/`` beside the running chapter (see the module docstring).

    A notebook's ``sys.argv[0]`` is the kernel launcher inside the virtual environment, never the chapter,
    so in a notebook (or any session without a script) the working folder is used instead."""
    if os.environ.get("EBM_OOD_FIGURES"):
        return Path(os.environ["EBM_OOD_FIGURES"])
    script = sys.argv[0] if sys.argv and sys.argv[0].endswith(".py") else None
    if script is None or plotting.in_notebook():
        return Path.cwd() / "figures"
    return Path(script).resolve().parent / "figures"


def setup(seed: int = 0, threads: int = 1):
    """Seed torch and set its thread count (one thread is fastest on the chapters' small tensors), as an
    explicit choice the library keeps (:func:`ebm_ood.plumbing.threads.set_num_threads`); returns
    ``matplotlib.pyplot``, or None without matplotlib (figures are then skipped)."""
    torch.manual_seed(seed)
    set_num_threads(threads)
    return plotting.pyplot()


def save_figure(fig, name: str) -> Path:
    """Save ``fig`` as ``<figures>/<name>`` and say where."""
    path = Path(plotting.write_figure(fig, figures_dir() / name))
    print(f"figure saved to {path}")
    return path
