"""Atomic file writes: a file is either the old complete one or the new complete one, never half written
(an interrupted save, a full disk or a crash leaves the previous version in place). Checkpoints, feature
caches, figures and result tables all write through :func:`write_atomic`.

The temporary file is ``.<name>.<pid>-<random>.tmp`` next to the target. A process killed mid-write
(``kill -9``) cannot delete its own; the next write of the same target removes every such file whose
writer process is gone (:func:`remove_orphans`)."""
from __future__ import annotations

import os
import re
import secrets
from typing import BinaryIO, Callable


def temp_name(path: str | os.PathLike) -> str:
    """A fresh temporary path next to ``path``: ``.<name>.<pid>-<8 hex>.tmp`` (no clash between writers)."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # exists but belongs to someone else, or cannot tell: keep its file
        return True
    return True


def remove_orphans(path: str | os.PathLike) -> list[str]:
    """Delete the temporary files of ``path`` left by writers that no longer run; returns their paths."""
    path = os.path.abspath(os.fspath(path))
    folder, base = os.path.dirname(path), os.path.basename(path)
    pattern = re.compile(re.escape(f".{base}.") + r"(\d+)-[0-9a-f]{8}\.tmp")
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = pattern.fullmatch(name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            try:
                os.unlink(os.path.join(folder, name))
                removed.append(os.path.join(folder, name))
            except OSError:  # removed meanwhile by another writer
                pass
    return removed


def write_atomic(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> str:
    """Write ``path`` atomically: into a temporary file in the same folder, synced, then ``os.replace``, so
    a crash never leaves a half-written file (the old one, if any, stays). ``content`` is text (UTF-8),
    bytes, or ``write(fh)`` writing to the binary file object (e.g. ``lambda fh: np.savez(fh, ...)``).
    Returns the path."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    remove_orphans(path)
    tmp = temp_name(path)
    try:
        with open(tmp, "xb") as fh:  # the umask's permissions
            if callable(content):
                content(fh)
            else:
                fh.write(content.encode("utf-8") if isinstance(content, str) else content)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
