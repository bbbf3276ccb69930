"""Figures. matplotlib is optional (the ``plots`` extra): code asks :func:`pyplot` and skips the drawing
when it returns None, so every computation and check still runs without it.

In a script, figures are drawn off-screen (Agg) and written as PNG files. In a Jupyter notebook the
backend is left as the notebook set it, and :func:`write_figure` also shows each figure inline.
"""
from __future__ import annotations

import os
import sys

import numpy as np

from ebm_ood.plumbing.atomic import write_atomic


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session: a notebook, JupyterLab, or VS Code's notebooks."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython() if hasattr(shell, "get_ipython") else None
    return ip is not None and ip.__class__.__name__ != "TerminalInteractiveShell" and hasattr(ip, "kernel")


def pyplot():
    """``matplotlib.pyplot``, or None when matplotlib is not installed. Outside a notebook it uses the
    file-only Agg backend (no windows pop up, nothing needs a display)."""
    try:
        import matplotlib
    except ImportError:
        return None
    if not in_notebook():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_figure(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (and, in a notebook, show it inline), close it,
    return the path."""
    try:
        if in_notebook():
            from IPython.display import display

            display(fig)
        return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    finally:
        pyplot().close(fig)


def ecdf_axes(ax, scores: dict, linthresh: float = 10.0, xlabel: str = "score") -> dict:
    """Draw one empirical CDF per set of ``scores`` (``{name: (N,) array}``) on ``ax``, with a symmetric log
    x axis (linear in ``[-linthresh, linthresh]``): sets whose scores lie orders of magnitude apart stay
    readable, nothing is clipped, and no bars hide each other. Returns ``{name: (x sorted, F(x))}``, with
    ``F(x_i) = i / N`` — the curves drawn."""
    curves = {}
    for name, s in scores.items():
        x = np.sort(np.asarray(s, dtype=np.float64).ravel())
        if x.size == 0:
            raise ValueError(f"scores[{name!r}]: expected at least one score, got an empty array")
        curves[name] = (x, np.arange(1, x.size + 1) / x.size)
        ax.step(*curves[name], where="post", lw=1.3, label=name)
    ax.set_xscale("symlog", linthresh=linthresh)
    ax.set(xlabel=f"{xlabel}\n(symmetric log scale, linear in [-{linthresh:g}, {linthresh:g}])",
           ylabel="fraction of the set ≤ x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return curves
