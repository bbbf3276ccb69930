"""Checkpoints: written atomically (temporary file + rename), read with ``torch.load(weights_only=True)``.

An interrupted save never corrupts the previous checkpoint: the old file is replaced only by a complete
new one (``os.replace`` is atomic on POSIX and Windows). A checkpoint holds only tensors, numbers,
strings, lists and dicts, so no code runs when it is loaded.
"""
from __future__ import annotations

import os
import zipfile

import torch

from ebm_ood.atomic import write_atomic
from ebm_ood.errors import CheckpointError

MAGIC = "ebm_ood-checkpoint-v1"


def save_checkpoint(state: dict, path: str | os.PathLike) -> None:
    """Write ``{"magic": MAGIC, **state}`` to ``path`` atomically."""
    write_atomic(path, lambda fh: torch.save({"magic": MAGIC, **state}, fh))


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; missing, truncated or foreign files raise
    :class:`CheckpointError` with the reason."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path!r} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path!r} is truncated or corrupt ({type(err).__name__}: {err})") from None
    except Exception as err:  # e.g. UnpicklingError for files holding arbitrary objects
        raise CheckpointError(f"checkpoint {path!r} is not a plain-weights ebm_ood checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("magic") != MAGIC:
        raise CheckpointError(f"checkpoint {path!r} is not an ebm_ood checkpoint (no {MAGIC!r} marker)")
    return state
