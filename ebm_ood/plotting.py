"""Figures. matplotlib is optional (the ``plots`` extra): code asks :func:`pyplot` and skips the drawing
when it returns None, so every computation and check still runs without it."""
from __future__ import annotations

import os

from ebm_ood.atomic import write_atomic


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | os.PathLike) -> str:
    """Write ``fig`` as PNG to ``path`` atomically, close it, return the path."""
    try:
        return write_atomic(path, lambda fh: fig.savefig(fh, format="png", dpi=110, bbox_inches="tight"))
    finally:
        pyplot().close(fig)
