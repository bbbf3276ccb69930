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


def decade(x: float) -> str:
    """The decade ``x > 0`` lies in ("between 1e-03 and 1e-02"): how far off, never the value itself."""
    if x == 0:
        return "0"
    lo = 10.0 ** np.floor(np.log10(x))
    return f"between {lo:.0e} and {10 * lo:.0e}"


def off_by(got: float, expected: float) -> str:
    """How far ``got`` is from ``expected`` and in which direction, without the value of ``expected``:
    the decade of the relative error (the absolute error where ``|expected|`` is below 1e-3)."""
    direction = "too large" if got > expected else "too small"
    if abs(expected) >= 1e-3:
        return f"{direction}, by a relative error {decade(abs(got - expected) / abs(expected))}"
    return f"{direction}, by an absolute error {decade(abs(got - expected))}"


def elements_off(got: np.ndarray, expected: np.ndarray, tol: np.ndarray | float, limit: int = 6) -> str:
    """Which elements of ``got`` miss ``expected`` by more than ``tol`` and in which direction (index and
    "too large"/"too small"), and the decade of the largest error; never the expected values."""
    bad = np.argwhere(~(np.abs(got - expected) <= tol))
    parts = [f"{tuple(int(i) for i in idx) if got.ndim > 1 else int(idx[0])}: "
             f"{'too large' if got[tuple(idx)] > expected[tuple(idx)] else 'too small'}" for idx in bad[:limit]]
    more = f" and {len(bad) - limit} more" if len(bad) > limit else ""
    err = float(np.abs(got - expected).max())
    return (f"{len(bad)} of {got.size} elements are off ({'; '.join(parts)}{more}); the largest error is "
            f"{decade(err)}")


def close(exercise: str, name: str, got: float, expected: float, atol: float, hint: str = "") -> None:
    """Fail unless ``|got - expected| <= atol``; the message says how far off and in which direction."""
    if not abs(got - expected) <= atol:
        fail(exercise, f"{name} = {got:.6g} is {off_by(got, expected)} (tolerance {atol:.2g})", hint)


def close_array(exercise: str, name: str, got: np.ndarray, expected: np.ndarray, tol, hint: str = "") -> None:
    """Fail unless every ``|got - expected| <= tol`` (elementwise); the message names the elements that are
    off and their direction, not the expected values."""
    if not np.all(np.abs(got - expected) <= tol):
        fail(exercise, f"{name}: {elements_off(got, expected, tol)}", hint)
