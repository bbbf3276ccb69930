"""Where the chapters' figures go, in a script and in a notebook, and that a notebook shows them inline."""
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ebm_ood.plumbing import plotting, tutorial

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))


class _Kernel:                       # what get_ipython() returns inside a Jupyter kernel
    kernel = object()


def fake_ipython(monkeypatch, shown: list):
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: _Kernel()
    display = types.ModuleType("IPython.display")
    display.display = shown.append
    ipython.display = display
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", display)


def test_not_a_notebook_without_a_kernel(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert not plotting.in_notebook()
    terminal = types.ModuleType("IPython")

    class TerminalInteractiveShell:
        pass

    terminal.get_ipython = TerminalInteractiveShell
    monkeypatch.setitem(sys.modules, "IPython", terminal)
    assert not plotting.in_notebook()


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_figures_stay_in_the_tutorials_folder(chapter, monkeypatch, tmp_path):
    monkeypatch.delenv("EBM_OOD_FIGURES", raising=False)
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    monkeypatch.setattr(sys, "argv", [str(chapter)])                     # python tutorials/NN_x.py
    assert tutorial.figures_dir() == ROOT / "tutorials" / "figures"
    # the same chapter as a notebook: the kernel runs in the notebook's folder, argv[0] is the launcher
    notebook_dir = tmp_path / "tutorials"
    notebook_dir.mkdir()
    monkeypatch.chdir(notebook_dir)
    monkeypatch.setattr(sys, "argv", [str(tmp_path / "venv/lib/site-packages/ipykernel_launcher.py"), "-f", "k.json"])
    fake_ipython(monkeypatch, [])
    assert tutorial.figures_dir() == notebook_dir / "figures"


class _Figure:
    def savefig(self, fh, **kw):
        fh.write(b"PNG bytes")


def test_save_figure_shows_inline_in_a_notebook_then_closes(monkeypatch, tmp_path):
    closed, shown = [], []
    monkeypatch.setattr(plotting, "pyplot", lambda: types.SimpleNamespace(close=closed.append))
    monkeypatch.setenv("EBM_OOD_FIGURES", str(tmp_path))
    fig = _Figure()
    fake_ipython(monkeypatch, shown)
    path = tutorial.save_figure(fig, "x.png")
    assert shown == [fig] and closed == [fig] and path.read_bytes() == b"PNG bytes"
    monkeypatch.delitem(sys.modules, "IPython")                           # a script: saved, not shown
    fig2 = _Figure()
    tutorial.save_figure(fig2, "y.png")
    assert shown == [fig] and closed == [fig, fig2] and (tmp_path / "y.png").is_file()


class _Axes:                        # records what ecdf_axes draws; no matplotlib needed
    def __init__(self):
        self.steps, self.xscale = [], None

    def step(self, x, y, **kw):
        self.steps.append((np.asarray(x), np.asarray(y), kw))

    def set_xscale(self, scale, **kw):
        self.xscale = (scale, kw)

    def set(self, **kw):
        self.labels = kw

    def grid(self, *a, **kw):
        pass

    def legend(self, *a, **kw):
        pass


def test_ecdf_axes_draws_the_empirical_cdf():
    from scipy import stats
    rng = np.random.default_rng(0)
    scores = {"ID": rng.normal(0, 1, 50), "far": 10.0 ** rng.uniform(1, 4, 30), "ties": np.array([2.0, 2.0, 1.0])}
    ax = _Axes()
    curves = plotting.ecdf_axes(ax, scores, linthresh=5.0)
    assert list(curves) == list(scores) and len(ax.steps) == 3
    for (name, s), (x, y, kw) in zip(scores.items(), ax.steps):
        assert kw["where"] == "post" and kw["label"] == name
        reference = stats.ecdf(s).cdf                                   # scipy's empirical CDF
        np.testing.assert_allclose(y[x != np.roll(x, -1)], reference.evaluate(x[x != np.roll(x, -1)]))
        np.testing.assert_array_equal(curves[name][0], np.sort(s))
    assert ax.xscale == ("symlog", {"linthresh": 5.0})


def test_ecdf_axes_rejects_an_empty_set():
    with pytest.raises(ValueError, match=r"scores\['empty'\]: expected at least one score"):
        plotting.ecdf_axes(_Axes(), {"empty": np.array([])})
