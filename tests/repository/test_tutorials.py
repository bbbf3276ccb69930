"""Every tutorial chapter (``tutorials/NN_topic.py``) runs in fast mode and reads as a lecture.

Each chapter is executed as a script in a subprocess with ``EBM_OOD_FAST=1`` and ``EBM_OOD_FIGURES`` set to a
temporary folder; the test fails if it raises (every chapter carries its own ``assert`` checks). The glob picks
up chapters added later. ``EBM_OOD_TUTORIAL_TIMEOUT`` (seconds, default 300) guards against hangs only. The
fast-mode budget (< 30 s on 2 cores) is printed with the wall and CPU time of each chapter (``pytest -s``) and
asserted on wall time only when ``EBM_OOD_TUTORIAL_BUDGET_S`` is set (say ``30`` on a quiet machine): on a
shared, overloaded machine wall time is mostly noise.
"""
from __future__ import annotations

import ast
import importlib.util
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHAPTERS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
TIMEOUT = float(os.environ.get("EBM_OOD_TUTORIAL_TIMEOUT", "300"))
BUDGET = float(os.environ["EBM_OOD_TUTORIAL_BUDGET_S"]) if os.environ.get("EBM_OOD_TUTORIAL_BUDGET_S") else None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_there_are_chapters():
    assert CHAPTERS, f"no tutorials/[0-9][0-9]_*.py chapters found under {ROOT / 'tutorials'}"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_reads_as_a_lecture(chapter: Path):
    text = chapter.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(chapter))                      # valid Python
    problems = []
    if not re.search(r"^# %% \[markdown\]", text, flags=re.M):
        problems.append("no '# %% [markdown]' cell (jupytext percent format)")
    if not re.search(r"^# %%\s*$", text, flags=re.M):
        problems.append("no '# %%' code cell")
    if not re.search(r"^#\s*#+\s*Exercises\b", text, flags=re.M):
        problems.append("no 'Exercises' section (a markdown heading '# ## Exercises')")
    if not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        problems.append("no assert: a chapter ends its sections with a check the reader can run")
    if "EBM_OOD_FAST" not in text:
        problems.append("does not read EBM_OOD_FAST (the test suite's quick mode)")
    if "plt.show(" in text:
        problems.append("calls plt.show(): save figures to $EBM_OOD_FIGURES instead")
    assert not problems, f"{chapter.name}: " + "; ".join(problems)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[p.stem for p in CHAPTERS])
def test_chapter_runs_in_fast_mode(chapter: Path, tmp_path: Path):
    figures = tmp_path / "figures"
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "EBM_OOD_FAST": "1", "EBM_OOD_FIGURES": str(figures), "MPLBACKEND": "Agg",
           "PYTHONPATH": python_path, "PYTHONWARNINGS": "default"}
    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    start, cpu_start = time.perf_counter(), children_cpu()
    try:
        run = subprocess.run([sys.executable, str(chapter)], cwd=str(ROOT), env=env, capture_output=True,
                             text=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{chapter.name} did not finish within {TIMEOUT:.0f} s in fast mode\n"
                    f"--- output ---\n{(err.stdout or '')[-3000:]}")
    elapsed, cpu = time.perf_counter() - start, children_cpu() - cpu_start
    print(f"{chapter.name}: {elapsed:.1f} s wall, {cpu:.1f} s CPU in fast mode (budget 30 s wall on 2 cores)")
    assert run.returncode == 0, (f"{chapter.name} failed (exit {run.returncode}) after {elapsed:.1f} s\n"
                                 f"--- stdout ---\n{run.stdout[-3000:]}\n--- stderr ---\n{run.stderr[-5000:]}")
    if BUDGET is not None:
        assert elapsed < BUDGET, f"{chapter.name} took {elapsed:.1f} s in fast mode (budget {BUDGET:.0f} s)"
    if HAS_MATPLOTLIB:
        pngs = sorted(figures.glob("*.png"))
        assert pngs, f"{chapter.name} wrote no PNG figure into $EBM_OOD_FIGURES ({figures})"
