"""The repository holds source and text only: no binaries, wheels, datasets or large files.

Datasets are prepared by ``data_scripts/`` and results are written by the CLI; neither is committed.
"""
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MAX_BYTES = 200_000
BINARY_SUFFIXES = {".whl", ".so", ".pt", ".pth", ".npz", ".npy", ".png", ".jpg", ".gz", ".zip", ".tar", ".pkl"}


def tracked_files():
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def offending(paths):
    """Return ``(path, reason)`` for each file that is large, binary by suffix, or holds a NUL byte."""
    bad = []
    for path in paths:
        if not path.is_file():
            continue
        data = path.read_bytes()
        if len(data) > MAX_BYTES:
            bad.append((path, f"{len(data)} bytes > {MAX_BYTES}"))
        elif path.suffix.lower() in BINARY_SUFFIXES:
            bad.append((path, f"binary suffix {path.suffix}"))
        elif b"\0" in data:
            bad.append((path, "contains NUL bytes"))
    return bad


def test_no_binary_or_large_files_tracked():
    bad = offending(tracked_files())
    assert not bad, "tracked files that do not belong in the repository: " + ", ".join(
        f"{p.relative_to(ROOT)} ({why})" for p, why in bad
    )


def test_offending_flags_each_kind(tmp_path):
    text = tmp_path / "ok.py"
    text.write_text("print('hello')\n")
    big = tmp_path / "big.txt"
    big.write_text("a" * (MAX_BYTES + 1))
    wheel = tmp_path / "x-0.1-py3-none-any.whl"
    wheel.write_bytes(b"PK")
    nul = tmp_path / "blob.dat"
    nul.write_bytes(b"abc\0def")
    flagged = {p.name for p, _ in offending([text, big, wheel, nul])}
    assert flagged == {"big.txt", wheel.name, "blob.dat"}
