"""Input checks shared by every public function: one clear error naming the argument, what was expected
and what came. Nothing here changes the caller's data."""
from __future__ import annotations

import numpy as np
import torch

from ebm_ood.plumbing.errors import NonFiniteError


def to_numpy(x, name: str = "input") -> np.ndarray:
    """A read-only view as numpy (torch tensors are detached and moved to CPU). A tensor numpy cannot hold
    (a meta tensor, which has no values; bfloat16 and other dtypes numpy lacks) is a ``TypeError`` naming
    ``name``."""
    if isinstance(x, torch.Tensor):
        if x.device.type == "meta":
            raise TypeError(f"{name}: got a meta tensor, which holds no values; pass a tensor with data")
        try:
            return x.detach().cpu().numpy()
        except TypeError as e:
            raise TypeError(f"{name}: dtype {x.dtype} has no numpy equivalent; convert it first, e.g. "
                            f"{name.split()[-1]}.float()") from e
    return np.asarray(x)


def _describe_nonfinite(arr: np.ndarray) -> str:
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    first = int(np.flatnonzero(bad.reshape(-1))[0])
    first_idx = np.unravel_index(first, arr.shape)
    return f"{count} non-finite value(s) (NaN/Inf), first at index {tuple(int(i) for i in first_idx)}"


_LIST_HINT = ("; a list or tuple is read as one array, never as batches: wrap a list of batches in iter(...) "
              "or pass a DataLoader")


def check_array(
    x,
    name: str,
    *,
    ndim: int | tuple[int, ...] | None = None,
    shape: tuple | None = None,
    allow_empty: bool = False,
    finite: bool = True,
    float_only: bool = True,
) -> np.ndarray:
    """Validate an array-like of numbers and return it as numpy (no copy when possible).

    ``shape`` may contain ``None`` for free dimensions and is matched against the trailing dimensions
    after the batch dimension when its length is ``x.ndim - 1``.
    """
    if x is None:
        raise TypeError(f"{name}: expected an array or tensor, got None")
    if isinstance(x, (str, bytes, dict, set)):
        raise TypeError(f"{name}: expected an array or tensor of numbers, got {type(x).__name__}")
    try:
        arr = to_numpy(x, name)
    except ValueError as err:               # a ragged nested list: numpy cannot make one array of it
        raise ValueError(f"{name}: a {type(x).__name__} that is not one rectangular array of numbers "
                         f"({str(err).splitlines()[0][:120]}){_LIST_HINT if isinstance(x, (list, tuple)) else ''}"
                         ) from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        source = "" if isinstance(x, np.ndarray) else (
            f" (from a {type(x).__name__}; pass an array, a tensor or an iterable of batches such as "
            "torch.utils.data.DataLoader(dataset, batch_size=256))")
        raise TypeError(f"{name}: expected a numeric array, got dtype {arr.dtype}{source}")
    if float_only and arr.dtype.kind != "f":
        raise TypeError(
            f"{name}: expected floating point values (float32/float64), got dtype {arr.dtype}; "
            "convert integer images with x.astype('float32') and scale them as the dataset does"
        )
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if arr.ndim not in allowed:
            batches = isinstance(x, (list, tuple)) and len(x) and isinstance(x[0], (np.ndarray, torch.Tensor))
            raise ValueError(f"{name}: expected {' or '.join(map(str, allowed))} dimensions, got shape {arr.shape}"
                             + (f" (from a {type(x).__name__} of {len(x)} arrays){_LIST_HINT}" if batches else ""))
    if not allow_empty and arr.size == 0:
        raise ValueError(f"{name}: expected a non-empty array, got shape {arr.shape}")
    if shape is not None:
        tail = arr.shape[1:] if len(shape) == arr.ndim - 1 else arr.shape
        if len(tail) != len(shape) or any(s is not None and s != t for s, t in zip(shape, tail)):
            raise ValueError(f"{name}: expected shape (N, {', '.join('*' if s is None else str(s) for s in shape)}), got {arr.shape}")
    if finite and arr.dtype.kind == "f" and arr.size and not np.isfinite(arr).all():
        raise NonFiniteError(f"{name}: expected finite values, got {_describe_nonfinite(arr)}")
    return arr


def check_labels(y, name: str, n: int, num_classes: int | None = None) -> np.ndarray:
    """Validate integer class labels of length ``n`` in ``[0, num_classes)``."""
    arr = to_numpy(y, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class labels, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or not np.all(arr == np.round(arr)):
            raise TypeError(f"{name}: expected integer class labels, got non-integer values of dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    elif arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels, got dtype {arr.dtype}")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per sample), got {arr.shape[0]}")
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: labels must be >= 0, got {int(arr.min())} at index {int(np.argmin(arr))}")
    if num_classes is not None and arr.size and arr.max() >= num_classes:
        raise ValueError(
            f"{name}: labels must be < num_classes={num_classes}, got {int(arr.max())} at index {int(np.argmax(arr))}"
        )
    return arr.astype(np.int64, copy=False)


def check_positive(value, name: str, *, allow_zero: bool = False) -> None:
    """``value`` is a finite number > 0 (>= 0 with ``allow_zero``); else a ValueError naming ``name``."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (is_number and np.isfinite(value) and (value >= 0 if allow_zero else value > 0)):
        raise ValueError(f"{name}: expected a {'non-negative' if allow_zero else 'positive'} finite number, got {value!r}")


def check_int(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int: an integer (not a bool) >= ``minimum``; else a ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return int(value)


def check_bool(value, name: str) -> bool:
    """``value`` as a bool: True or False (numpy's too); else a TypeError naming ``name``."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_in_range(value, name: str, low: float, high: float, *, low_closed: bool, high_closed: bool) -> float:
    """``value`` as a float: a finite number (not a bool) in the interval from ``low`` to ``high`` (each end
    open or closed); else a ValueError naming ``name``."""
    is_number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    ok = is_number and np.isfinite(value) and (value >= low if low_closed else value > low) and (
        value <= high if high_closed else value < high)
    if not ok:
        raise ValueError(f"{name}: expected a number in {'[' if low_closed else '('}{low:g}, {high:g}"
                         f"{']' if high_closed else ')'}, got {value!r}")
    return float(value)


def resolve_device(device=None) -> torch.device:
    """``None``/"auto" → CUDA when available, else CPU. A device this machine does not have (CUDA without it,
    ``cuda:3`` on one GPU, ``mps`` off a Mac) is a clear error."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device: asked for {device!r} but CUDA is not available on this machine; use 'cpu'")
    try:
        torch.empty(0, device=dev)             # the device exists (an MPS or XPU backend, a CUDA index)
    except (RuntimeError, AssertionError, AttributeError) as err:
        raise ValueError(f"device: asked for {device!r}, which this machine does not have "
                         f"({str(err).splitlines()[0] if str(err) else type(err).__name__}); use 'cpu'"
                         + (" or 'cuda'" if torch.cuda.is_available() else "")) from None
    return dev
