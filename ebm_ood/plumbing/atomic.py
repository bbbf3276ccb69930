"""Atomic file writes: a file is either the old complete one or the new complete one, never half written
(an interrupted save, a full disk or a crash leaves the previous version in place). Checkpoints, feature
caches, figures and result tables all write through :func:`write_atomic`.

The temporary file is ``.<name>.<pid>-<random>.tmp`` next to the target, with ``<name>`` cut to its first
200 bytes plus a hash of the whole name when longer (so a target name of up to 255 bytes, the usual limit,
always has a valid temporary name). A process killed mid-write (``kill -9``) cannot delete its own; the
next write of the same target removes every such file whose writer process is gone (:func:`remove_orphans`)."""
from __future__ import annotations

import hashlib
import os
import re
import secrets
from typing import BinaryIO, Callable


NAME_BYTES = 200  # a target name longer than this is shortened in its temporary name


def _stem(base: str) -> str:
    """The ``<name>`` part of ``base``'s temporary names: ``base``, or when its UTF-8 form is longer than
    :data:`NAME_BYTES`, its first bytes (whole characters) + ``~`` + 12 hex digits of its SHA-256."""
    raw = os.fsencode(base)
    if len(raw) <= NAME_BYTES:
        return base
    head = raw[:NAME_BYTES - 13].decode("utf-8", errors="ignore")
    return f"{head}~{hashlib.sha256(raw).hexdigest()[:12]}"


def temp_name(path: str | os.PathLike) -> str:
    """A fresh temporary path next to ``path``: ``.<name>.<pid>-<8 hex>.tmp`` (no clash between writers;
    ``<name>``: :func:`_stem`, at most 200 bytes, so the temporary name stays under 255 bytes)."""
    path = os.path.abspath(os.fspath(path))
    return os.path.join(os.path.dirname(path), f".{_stem(os.path.basename(path))}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


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
    pattern = re.compile(re.escape(f".{_stem(base)}.") + r"(\d+)-[0-9a-f]{8}\.tmp")
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
