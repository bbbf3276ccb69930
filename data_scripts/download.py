"""Getting raw files: find them in the raw folder or download them, and verify their checksums.

A download goes to ``NAME.part`` next to its final name and is renamed to ``NAME`` only after its checksum
matches. A ``.part`` already there is resumed with an HTTP ``Range`` request only when the result can be
verified (a recorded sha256 or md5) and the server returns exactly the missing range; a ``.part`` of a file
without a recorded digest is discarded and downloaded again from the start. A checksum mismatch
deletes the ``.part`` (never a file the user put there) and raises :class:`ChecksumError`. When nothing can
be downloaded, :class:`DownloadError` names every missing file, its URLs and the folder to put it in.
Before a download, ``NAME`` and ``NAME.part`` must each be absent or a regular file (not a symbolic link,
folder or FIFO): anything else is refused with :class:`~ebm_ood.plumbing.errors.ForeignFilesError`, so nothing
we did not write is written through, replaced or deleted.
"""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ebm_ood.plumbing.errors import ForeignFilesError


@dataclass(frozen=True)
class RawFile:
    name: str  # file name inside the raw folder
    urls: tuple[str, ...]  # the official source first, then mirrors
    sha256: str | None = None  # None = not recorded (we never invent one)
    md5: str | None = None  # the digest the publisher states, where that is md5 only
    size: int | None = None  # bytes, when known


class ChecksumError(ValueError):
    """A raw file's digest differs from the recorded one."""


class DownloadError(RuntimeError):
    """A file could not be downloaded from any of its URLs."""


class MissingRawFilesError(DownloadError):
    """Raw files are not in the raw folder and could not be downloaded; the message says where to put them."""


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, raw: RawFile, log: Callable[[str], None] = print) -> str:
    """Check ``path`` against the recorded sha256 (else md5); return its sha256.

    With no recorded digest, print the computed sha256 with a warning instead of failing.
    """
    sha = file_digest(path, "sha256")
    if raw.sha256 is not None:
        expected, got, algo = raw.sha256.lower(), sha, "sha256"
    elif raw.md5 is not None:
        expected, got, algo = raw.md5.lower(), file_digest(path, "md5"), "md5"
    else:
        log(f"WARNING: no checksum recorded for {raw.name}; computed sha256 = {sha}. "
            f"Compare it with the publisher's value ({raw.urls[0] if raw.urls else 'no URL'}).")
        return sha
    if got != expected:
        raise ChecksumError(
            f"{path}: {algo} mismatch: expected {expected}, got {got}. The file is corrupt, truncated or a "
            f"different version; delete it and download it again from {', '.join(raw.urls) or 'its source'}."
        )
    return sha


def verifiable(raw: RawFile) -> bool:
    """Whether a digest is recorded for ``raw``: only then can a resumed download be checked."""
    return raw.sha256 is not None or raw.md5 is not None


def _fetch(url: str, part: Path, timeout: float, raw: RawFile) -> None:
    """Download ``url`` into ``part``. An existing ``.part`` is resumed (HTTP ``Range``) only when ``raw`` has a
    recorded digest to check the result against, is no longer than ``raw.size`` (when known), and the server
    answers with exactly the requested range; in every other case the download starts from byte 0."""
    have = part.stat().st_size if part.is_file() else 0
    if have and (not verifiable(raw) or (raw.size is not None and have > raw.size)):
        part.unlink()  # cannot be checked, or cannot be a prefix of the file: start over
        have = 0
    headers = {"User-Agent": "ebm_ood-data-scripts", **({"Range": f"bytes={have}-"} if have else {})}
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # range not satisfiable: the .part is complete, or longer than the file
            try:
                verify(part, raw, log=lambda m: None)
                return
            except ChecksumError:
                part.unlink()
                return _fetch(url, part, timeout, raw)
        raise
    with resp:
        partial = have > 0 and getattr(resp, "status", 200) == 206
        content_range = resp.headers.get("Content-Range") or ""
        if partial and not content_range.replace("bytes ", "", 1).startswith(f"{have}-"):
            restart = True  # a range other than the one asked for: splicing it would corrupt the file
        else:
            restart = False
            length = resp.headers.get("Content-Length")
            written = 0
            with open(part, "ab" if partial else "wb") as f:
                for block in iter(lambda: resp.read(1 << 20), b""):
                    f.write(block)
                    written += len(block)
    if restart:
        part.unlink()
        return _fetch(url, part, timeout, raw)
    if length is not None and written < int(length):
        kept = "kept to resume" if verifiable(raw) else "discarded next time: no recorded digest to check a resume"
        raise OSError(f"connection closed after {written} of {length} bytes (the .part file is {kept})")


def download(raw: RawFile, dest_dir: Path, timeout: float = 30.0, log: Callable[[str], None] = print) -> Path:
    """Download ``raw`` into ``dest_dir`` (trying each URL in turn), verify, then rename into place."""
    return _download(raw, dest_dir, timeout, log)[0]


def _download(raw: RawFile, dest_dir: Path, timeout: float, log: Callable[[str], None]) -> tuple[Path, str]:
    """:func:`download`, returning the final path and the file's sha256 (computed once, by :func:`verify`)."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final, part = dest_dir / raw.name, dest_dir / (raw.name + ".part")
    for path in (final, part):
        if os.path.lexists(path) and not stat.S_ISREG(os.lstat(path).st_mode):
            raise ForeignFilesError(f"{path} is not a regular file (a symbolic link, folder or FIFO) and would be "
                                    f"replaced by the download of {raw.name}; move it away, or put the verified "
                                    f"file itself at {final}")
    errors = []
    for url in raw.urls:
        log(f"downloading {url} -> {final}")
        try:
            _fetch(url, part, timeout, raw)
        except (urllib.error.URLError, OSError, socket.timeout, ValueError) as e:
            errors.append(f"{url}: {e}")
            continue
        try:
            sha = verify(part, raw, log)
        except ChecksumError:
            part.unlink(missing_ok=True)
            raise
        os.replace(part, final)
        return final, sha
    raise DownloadError(f"could not download {raw.name}: " + "; ".join(errors or ["no URL recorded"]))


def obtain(files: tuple[RawFile, ...], raw_dir: Path, allow_download: bool = True, timeout: float = 30.0,
           log: Callable[[str], None] = print) -> dict[str, str]:
    """Make every file of ``files`` present and verified in ``raw_dir``; returns ``{name: sha256}``.

    Files already in ``raw_dir`` are verified, not downloaded again (a download is verified, and hashed,
    once). If any file is missing and cannot be
    downloaded, one :class:`MissingRawFilesError` lists all of them with their URLs and where to put them.
    """
    raw_dir = Path(raw_dir)
    digests, missing = {}, []
    for raw in files:
        path = raw_dir / raw.name
        if path.is_file():
            digests[raw.name] = verify(path, raw, log)
        elif not allow_download:
            missing.append((raw, "downloads disabled"))
        else:
            try:
                digests[raw.name] = _download(raw, raw_dir, timeout, log)[1]
            except DownloadError as e:
                missing.append((raw, str(e)))
    if missing:
        lines = [f"  {raw.name}  from {' or '.join(raw.urls) or '(see data_scripts/README.md)'}  [{why}]"
                 for raw, why in missing]
        raise MissingRawFilesError(
            f"missing raw files (no network access?). Download them yourself and put them in {raw_dir}:\n"
            + "\n".join(lines) + f"\nthen run again (add --raw-dir {raw_dir} if that is not the default folder).")
    return digests
