"""Figures. matplotlib is optional (the ``plots`` extra): code asks :func:`pyplot` and skips the drawing
when it returns None, so every computation and check still runs without it.

In a script, figures are drawn off-screen (Agg) and written as PNG files. In a Jupyter notebook the
backend is left as the notebook set it, and :func:`save_figure` also shows each figure inline.
"""
from __future__ import annotations

import os
import sys

from ebm_ood.atomic import write_atomic


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


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` as PNG to ``path`` atomically (and, in a notebook, show it inline), close it,
    return the path."""
    try:
        if in_notebook():
            from IPython.display import display

            display(fig)
        return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    finally:
        pyplot().close(fig)
