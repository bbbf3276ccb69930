"""The cells log of a run (``results.cells.jsonl`` / ``NAME.cells.jsonl``): every finished (dataset, seed,
method) cell appended as one JSON line as it completes, so a run that dies keeps its cells and a rerun of
the same command resumes from them.

Rules (README, Reliability):

* Nothing is touched before :meth:`CellLog.start`, which the commands call after every flag is checked.
* ``lock`` (and ``start``) takes an exclusive ``flock`` on the output folder (released by :meth:`CellLog.close` or
  when the process dies): a second run into the same folder is refused (:class:`RunLockedError`).
* An existing log whose header equals this run's (its flags minus ``--jobs``/``--json``/``--out``/``--executor``/``--scheduler``, the
  thread count, and the sha256 of the user files it reads: ``--classifier`` FILE, data folder files) is resumed: its finished cells are kept and not run again (failed cells are run
  again). A log of another run is never deleted: it is renamed aside to ``<name>.1``, ``<name>.2``, ...
* Each cell is one ``write`` of a whole line; a write that fails (full disk, read-only file) is undone
  (the file is cut back to its last whole line) and raised as :class:`CellLogError` naming the path.
  A broken last line left by a kill is ignored with a message, never a crash; good lines are all kept.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from ebm_ood.plumbing.atomic import write_atomic

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Linux/macOS: runs are not locked
    fcntl = None

RUN_NEUTRAL_FLAGS = ("jobs", "json", "out", "executor", "scheduler")  # flags that never change a cell's numbers


@dataclass
class CellResult:
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # ood_set -> metric -> value
    seconds: float = 0.0
    error: str | None = None


class CellLogError(RuntimeError):
    """A cell could not be written to the log (``path``); the log still ends with a whole line."""

    def __init__(self, path: str, err: OSError):
        self.path = path
        super().__init__(f"could not write {path}: {err.strerror or err}")


class RunLockedError(RuntimeError):
    """Another run holds the output folder."""


def same_run(a: dict, b: dict) -> bool:
    """Whether two log headers describe the same run: equal apart from :data:`RUN_NEUTRAL_FLAGS`."""
    def key(h):
        flags = h.get("flags", {}) if isinstance(h.get("flags"), dict) else {}
        return {**h, "flags": {k: v for k, v in flags.items() if k not in RUN_NEUTRAL_FLAGS}}
    return isinstance(a, dict) and isinstance(b, dict) and key(a) == key(b)


def read_cells(path: str, log=None) -> tuple[dict | None, dict, int]:
    """``(header, cells, broken)`` of a log: ``cells[(dataset, seed, method)]`` is the last
    :class:`CellResult` recorded for the key; ``broken`` counts lines that are not whole JSON cells (each
    reported through ``log``). ``header`` is None when the first line is not a header."""
    with open(path, "rb") as fh:
        raw = fh.read().split(b"\n")
    if raw and raw[-1] == b"":
        raw.pop()
    header, cells, broken = None, {}, 0
    for i, line in enumerate(raw):
        try:
            obj = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            obj = None
        if i == 0 and isinstance(obj, dict) and "header" in obj:
            header = obj["header"]
            continue
        try:
            key = (obj["dataset"], int(obj["seed"]), obj["method"])
            cell = CellResult(metrics=obj["metrics"] or {}, seconds=float(obj["seconds"]), error=obj["error"])
        except (TypeError, KeyError, ValueError):
            broken += 1
            if log is not None:
                log(f"{path}: ignoring line {i + 1}, not a whole cell ({len(line)} bytes; "
                    "an interrupted write leaves such a line)")
            continue
        cells[key] = cell
    return header, cells, broken


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class CellLog:
    """``on_cell`` for :func:`~ebm_ood.commands.benchmark.runner.run_benchmark`: appends every finished cell to a
    JSON Lines file (module docstring: header line ``{"header": header}``, then one line ``{"dataset",
    "seed", "method", "seconds", "error", "metrics"}`` per cell, synced). :meth:`start` returns the
    finished cells of an interrupted identical run, to be skipped."""

    def __init__(self, path: str | os.PathLike, header: dict, log=_stderr):
        self.path, self.header, self.log = os.fspath(path), header, log
        self.kept: dict | None = None  # (dataset, seed, method) -> CellResult, once started
        self._lock_fd: int | None = None

    @property
    def started(self) -> bool:
        return self.kept is not None

    def lock(self) -> None:
        """Take the exclusive lock on the log's folder (idempotent; writes nothing); :class:`RunLockedError`
        when another process holds it."""
        if fcntl is None or self._lock_fd is not None:
            return
        folder = os.path.dirname(os.path.abspath(self.path))
        fd = os.open(folder, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(f"--out {folder!r}: another run is writing there now; wait for it or choose "
                                 "another --out") from None
        self._lock_fd = fd

    def _aside(self) -> str:
        n = 1
        while os.path.lexists(f"{self.path}.{n}"):
            n += 1
        os.rename(self.path, f"{self.path}.{n}")
        return f"{self.path}.{n}"

    def start(self) -> dict:
        """Lock the folder and open the log (resume, or set an older run's log aside; module docstring).
        Returns ``{(dataset, seed, method): CellResult}`` of the finished cells kept. Idempotent."""
        if self.kept is not None:
            return {k: c for k, c in self.kept.items() if c.error is None}
        self.lock()
        try:
            kept = {}
            if os.path.lexists(self.path):
                header, cells, _ = read_cells(self.path, self.log)
                if header is not None and same_run(header, self.header):
                    kept = cells
                    with open(self.path, "rb") as fh:
                        fh.seek(0, os.SEEK_END)
                        size = fh.tell()
                        fh.seek(max(size - 1, 0))
                        ends_whole = size == 0 or fh.read(1) == b"\n"
                    if not ends_whole:  # the fragment stays, as its own (ignored) line
                        self._append(b"\n")
                    ok = sum(c.error is None for c in cells.values())
                    self.log(f"resuming from {self.path}: {ok} finished cell{'s' * (ok != 1)} kept"
                             + (f", {len(cells) - ok} failed one{'s' * (len(cells) - ok != 1)} to run again"
                                if len(cells) > ok else ""))
                else:
                    moved = self._aside()
                    self.log(f"{self.path} holds the cells of another run (other flags or changed input files): moved it to {moved}")
            if not os.path.lexists(self.path):
                write_atomic(self.path, json.dumps({"header": self.header}, sort_keys=True, default=str) + "\n")
        except BaseException:
            self.close()
            raise
        self.kept = kept
        return {k: c for k, c in kept.items() if c.error is None}

    def close(self) -> None:
        """Release the folder lock (the log stays)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _append(self, data: bytes) -> None:
        """Append ``data`` with whole-or-nothing semantics: on failure the file is cut back to its size before."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as err:
            raise CellLogError(self.path, err) from err
        try:
            size = os.fstat(fd).st_size
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            except OSError as err:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    pass
                raise CellLogError(self.path, err) from err
        finally:
            os.close(fd)

    def __call__(self, dataset: str, seed: int, method: str, cell: CellResult) -> None:
        self.start()
        line = json.dumps({"dataset": dataset, "seed": seed, "method": method, "seconds": cell.seconds,
                           "error": cell.error, "metrics": cell.metrics}, sort_keys=True,
                          default=lambda v: v.item() if isinstance(v, np.generic) else str(v))
        self._append((line + "\n").encode("utf-8"))
        self.kept[(dataset, seed, method)] = cell
