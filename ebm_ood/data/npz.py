"""Reading ``.npz`` files that someone else may have written: each array's header is checked before any
memory is allocated, and every failure is a :class:`~ebm_ood.plumbing.errors.FormatError` naming the file and key.

An ``.npz`` is a zip archive of ``.npy`` members (``numpy.savez``). For each requested key the ``.npy``
header is read first and refused when its dtype holds Python objects (nothing is ever unpickled) or when it
claims another size than the member holds, ``prod(shape) * itemsize != member size - header size``, or the
member claims more bytes than its stored data can expand to (stored: equal sizes; deflate: at most
1032:1); only then is the array read. A path that is not a regular file (a folder, a FIFO, a device) is
refused without opening it.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ebm_ood.plumbing.errors import FormatError

MAX_DEFLATE_RATIO = 1032  # the most that deflate can expand: 258 bytes from each 2-bit code, about 1032:1
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def check_regular_file(path: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` if nothing is at ``path`` and :class:`FormatError` if it is not a regular
    file (symbolic links are followed)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found") from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise FormatError(f"{path}: is not a regular file ({kind}); expected an .npz archive written by numpy.savez")


def read_npz(path: str | os.PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of the ``.npz`` at ``path`` that it holds (absent keys are left out; the caller
    decides which are required). Every array's header is checked before it is read (module docstring)."""
    path = Path(path)
    check_regular_file(path)
    if not zipfile.is_zipfile(path):
        raise FormatError(f"{path}: not a readable .npz file: not a zip archive of .npy arrays (write it with "
                          "numpy.savez; a single .npy, a pickle or other bytes are refused)")
    try:
        with zipfile.ZipFile(path) as archive:
            members = {}
            for info in archive.infolist():
                key = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
                members.setdefault(key, info)
            return {key: _read_member(archive, members[key], path, key) for key in keys if key in members}
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as e:
        # RuntimeError: an encrypted member; NotImplementedError: a compression method zipfile lacks
        raise FormatError(f"{path}: not a readable .npz file ({e}); the archive is truncated or damaged") from e


def member_names(path: str | os.PathLike) -> list[str]:
    """The array keys held by the ``.npz`` at ``path`` (call after :func:`read_npz` has accepted it)."""
    with zipfile.ZipFile(path) as archive:
        return [n[:-4] if n.endswith(".npy") else n for n in archive.namelist()]


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path, key: str) -> np.ndarray:
    where = f"{path}: {key}"
    with archive.open(info) as fp:
        try:
            version = np.lib.format.read_magic(fp)
            if version not in _HEADER_READERS:
                raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported (1.0 or 2.0)")
            shape, fortran, dtype = _HEADER_READERS[version](fp)
        except (ValueError, SyntaxError, TypeError) as e:
            raise FormatError(f"{where}: not a readable .npy array header ({e})") from e
        header_size = fp.tell()
    if dtype.hasobject:
        raise FormatError(f"{where}: dtype {dtype} holds Python objects, which are never unpickled; "
                          "save plain numeric (or string) arrays")
    claimed = math.prod(shape) * dtype.itemsize  # Python ints: exact however large the claim
    held = info.file_size - header_size
    if claimed != held:
        raise FormatError(f"{where}: the header claims shape {tuple(shape)} of {dtype} ({claimed} bytes) but the "
                          f"archive member holds {held} bytes; the file is damaged or was not written by numpy.savez")
    stored, deflated = info.compress_type == zipfile.ZIP_STORED, info.compress_type == zipfile.ZIP_DEFLATED
    if ((stored and info.compress_size != info.file_size)
            or (deflated and info.file_size > MAX_DEFLATE_RATIO * info.compress_size + 1024)
            or info.header_offset + info.compress_size > os.path.getsize(path)):
        raise FormatError(f"{where}: the archive member claims {info.file_size} bytes, more than its "
                          f"{info.compress_size} stored bytes can hold; the file is damaged or crafted")
    try:
        with archive.open(info) as fp:
            return np.lib.format.read_array(fp, allow_pickle=False)
    except MemoryError as e:
        raise FormatError(f"{where}: shape {tuple(shape)} of {dtype} needs {claimed} bytes, more memory than "
                          "is available") from e
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise FormatError(f"{where}: unreadable array ({e}); the file is truncated or damaged") from e
