"""The JIT build cache of the fused op: each checkout keeps its own build, so alternating between two
clones (same sources, different paths) compiles each once and then reuses it."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ebm_ood.sampling import ops

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CXX", "c++")) is None or shutil.which("ninja") is None
                                    and not (Path(sys.executable).parent / "ninja").exists(),
                                    reason="no C++ compiler or ninja")

BUILD = ("import ebm_ood, sys; from ebm_ood.sampling import ops; "
         "assert ebm_ood.__file__.startswith(sys.argv[1]), ebm_ood.__file__; print(ops.backend())")


def _checkout(root: Path) -> Path:
    """A clone of this repository as the op sees it: setup.py, the package and csrc/ under ``root``. Returns its
    csrc/."""
    shutil.copytree(ROOT / "ebm_ood", root / "ebm_ood", ignore=shutil.ignore_patterns("__pycache__", "*.so"))
    shutil.copytree(CSRC, root / "csrc")
    shutil.copy(ROOT / "setup.py", root / "setup.py")
    return root / "csrc"


def _libraries(ext: Path) -> dict[str, int]:
    """Every built library under the cache folder, with its modification time (ns)."""
    return {str(p.relative_to(ext)): p.stat().st_mtime_ns for p in ext.rglob("*.so")}


def _build(src: Path, ext: Path) -> subprocess.CompletedProcess:
    """Load the op the way a run from the checkout of ``src`` does (JIT build into ``ext``)."""
    env = {**os.environ, "PYTHONPATH": str(src.parent), "EBM_OOD_EXTENSIONS_DIR": str(ext)}
    env.pop("EBM_OOD_FORCE_TWIN", None)
    r = subprocess.run([sys.executable, "-c", BUILD, str(src.parent)], capture_output=True, text=True, env=env,
                       cwd=str(src.parent), timeout=900)
    assert r.returncode == 0 and r.stdout.strip() == "extension", r.stderr
    return r


def test_two_checkouts_get_their_own_build_folders(tmp_path):
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    sources = lambda s: [s / "sgld_cpu.cpp"]  # noqa: E731
    name_a, name_b = ops.build_name(a, sources(a), ["-O3"]), ops.build_name(b, sources(b), ["-O3"])
    assert name_a != name_b
    assert ops.build_name(a, sources(a), ["-O3"]) == name_a                 # stable for one checkout
    assert ops.build_name(a, sources(a), ["-O2"]) != name_a                 # flags still count
    (a / "philox.h").write_text((a / "philox.h").read_text() + "\n// edited\n")
    assert ops.build_name(a, sources(a), ["-O3"]) != name_a                 # and so do the sources' bytes


@needs_compiler
def test_alternating_checkouts_reuse_their_builds(tmp_path):
    """Build from clone A, then clone B, then A again: the third run compiles nothing."""
    a, b = _checkout(tmp_path / "a"), _checkout(tmp_path / "b")
    ext = tmp_path / "ext"
    first = _build(a, ext)
    assert "compiling the fused SGLD op" in first.stderr
    _build(b, ext)
    built = _libraries(ext)
    assert len(built) == 2, built                                        # one library per checkout
    again = _build(a, ext)
    assert "compiling" not in again.stderr
    assert _libraries(ext) == built                                      # nothing rebuilt
