"""Checkpoints: written atomically (temporary file + rename), verified by a SHA-256 digest, read with
``torch.load(weights_only=True)``.

File layout: one header line ``ebm_ood-checkpoint-v2 <sha256 hex of the payload>\\n``, then the payload,
the bytes of ``torch.save(state)``. torch's zip reader does not check the archive's CRCs, so a flipped
bit inside a tensor would load as a silently changed weight; the digest turns every such change (in the
header or the payload) into a :class:`CheckpointError`.

An interrupted save never corrupts the previous checkpoint: the old file is replaced only by a complete
new one (``os.replace`` is atomic on POSIX and Windows). A checkpoint holds only tensors, numbers,
strings, lists and dicts, so no code runs when it is loaded. What a training checkpoint holds, and when a
run may resume from one, is :mod:`ebm_ood.plumbing.resume`.
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile

import torch

from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.plumbing.errors import CheckpointError

MAGIC = "ebm_ood-checkpoint-v2"
_HEADER_LEN = len(MAGIC) + 1 + 64 + 1  # "<MAGIC> <64 hex digits>\n"


def encode_checkpoint(state: dict) -> bytes:
    """The bytes of a checkpoint file holding ``state``: the digest header line, then ``torch.save(state)``."""
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    return f"{MAGIC} {hashlib.sha256(payload).hexdigest()}\n".encode("ascii") + payload


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``state`` to ``path`` atomically, with the digest header (:func:`encode_checkpoint`)."""
    write_atomic(path, encode_checkpoint(state))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`. A missing, truncated, altered (digest
    mismatch) or foreign file raises :class:`CheckpointError` with the reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path!r} cannot be read ({err.strerror or err})") from None
    return decode_checkpoint(data, f"checkpoint {path!r}", "delete it to start the run afresh", map_location)


def decode_checkpoint(data: bytes, subject: str, fix: str, map_location="cpu") -> dict:
    """The dict held by the bytes ``data`` of a checkpoint-format file (:func:`encode_checkpoint`): the
    digest is checked before anything is unpickled. A missing header, a digest mismatch or a payload that
    is not a plain-weights dict raises :class:`CheckpointError` naming ``subject`` (e.g. ``"checkpoint
    'run.pt'"``) and suggesting ``fix``."""
    header, payload = data[:_HEADER_LEN], data[_HEADER_LEN:]
    if not header.startswith(MAGIC.encode("ascii") + b" "):
        raise CheckpointError(f"{subject} is not an ebm_ood checkpoint (no {MAGIC!r} header); {fix}")
    stored = header[len(MAGIC) + 1 : -1]
    if header[-1:] != b"\n" or stored != hashlib.sha256(payload).hexdigest().encode("ascii"):
        raise CheckpointError(f"{subject} is truncated or corrupt: its SHA-256 digest does not match "
                              f"its contents; {fix}")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as err:
        raise CheckpointError(f"{subject} is truncated or corrupt ({type(err).__name__}: {err})") from None
    except Exception as err:  # e.g. UnpicklingError for files holding arbitrary objects
        raise CheckpointError(f"{subject} is not a plain-weights ebm_ood checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{subject} holds a {type(state).__name__}, not a dict")
    return state
