"""What every exercise check shares: one error type, and converters that name what was expected."""
from __future__ import annotations

from typing import Callable

import numpy as np


class ExerciseError(AssertionError):
    """A wrong (or malformed) answer to an exercise; the message says what is wrong."""


def fail(exercise: str, what: str, hint: str = "") -> None:
    """Raise :class:`ExerciseError` for ``exercise`` ("ch01 exercise 2") with ``what`` and an optional hint."""
    raise ExerciseError(f"{exercise}: {what}" + (f"\n  hint: {hint}" if hint else ""))


def passed(exercise: str, detail: str = "") -> bool:
    """Print that ``exercise`` is solved (with ``detail``) and return True."""
    print(f"{exercise}: correct." + (f" {detail}" if detail else ""))
    return True


def as_float(value, name: str, exercise: str) -> float:
    """``value`` as a finite float, else an error naming ``name``."""
    try:
        out = float(np.asarray(value, dtype=np.float64).reshape(()))
    except (TypeError, ValueError):
        fail(exercise, f"{name}: expected one number, got {type(value).__name__} {value!r:.80}")
    if not np.isfinite(out):
        fail(exercise, f"{name}: expected a finite number, got {out}")
    return out


def as_array(value, name: str, exercise: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` (numpy array, torch tensor, list) as a finite float64 array of ``shape``."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    try:
        out = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        fail(exercise, f"{name}: expected an array of numbers, got {type(value).__name__}")
    if shape is not None and out.shape != tuple(shape):
        fail(exercise, f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not np.all(np.isfinite(out)):
        fail(exercise, f"{name}: expected finite numbers, got {out.ravel()[:6]}...")
    return out


def as_callable(value, name: str, exercise: str) -> Callable:
    """``value`` if it is callable, else an error."""
    if not callable(value):
        fail(exercise, f"{name}: expected a function, got {type(value).__name__}")
    return value


def as_dict(value, keys: tuple[str, ...], name: str, exercise: str) -> dict:
    """``value`` as a dict with exactly ``keys``."""
    if not isinstance(value, dict):
        fail(exercise, f"{name}: expected a dict with keys {list(keys)}, got {type(value).__name__}")
    if set(value) != set(keys):
        fail(exercise, f"{name}: expected keys {sorted(keys)}, got {sorted(map(str, value))}")
    return value


def close(exercise: str, name: str, got: float, expected: float, atol: float, hint: str = "") -> None:
    """Fail unless ``|got - expected| <= atol``."""
    if not abs(got - expected) <= atol:
        fail(exercise, f"{name} = {got:.6g}, but the independent computation gives {expected:.6g} "
                       f"(tolerance {atol:.2g})", hint)
