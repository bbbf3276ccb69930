"""Atomic file writes: a file is either the old complete one or the new complete one, never half written
(an interrupted save, a full disk or a crash leaves the previous version in place). Checkpoints, feature
caches, figures and result tables all write through :func:`write_atomic`."""
from __future__ import annotations

import os
import secrets
from typing import BinaryIO, Callable


def write_atomic(path: str | os.PathLike, content: str | bytes | Callable[[BinaryIO], None]) -> str:
    """Write ``path`` atomically: into a temporary file in the same folder, synced, then ``os.replace``, so
    a crash never leaves a half-written file (the old one, if any, stays). ``content`` is text (UTF-8),
    bytes, or ``write(fh)`` writing to the binary file object (e.g. ``lambda fh: np.savez(fh, ...)``).
    Returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as fh:  # a fresh name (no clash between writers); the umask's permissions
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
