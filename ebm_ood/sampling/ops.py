"""The fused SGLD update ``x <- clamp(x - step_size * grad + noise_std * n)`` and where it comes from.

This is the only module that knows whether the compiled op (``csrc/``, registered as
``torch.ops.ebm_ood.sgld_step_``) or its pure-PyTorch twin is in use:

1. ``ebm_ood._C`` built ahead of time by ``setup.py`` (``pip install --no-build-isolation -e .``);
2. otherwise a just-in-time build of ``csrc/`` with ``torch.utils.cpp_extension.load`` (ninja), cached under
   ``$EBM_OOD_EXTENSIONS_DIR`` (default ``~/.cache/ebm_ood/torch_extensions``) in a folder of its own per
   checkout (``build_name``), so two clones never rebuild each other's op; the first compile prints one
   line; concurrent runs build once (``build_lock.py``: a killed build never blocks a later one);
3. otherwise (no compiler, build error) the twin below, with a one-line warning.
``EBM_OOD_FORCE_TWIN=1`` forces the twin.

The noise ``n`` is Philox4x32-10 + Box–Muller (``philox.py`` documents the stream), a pure function of
``(seed, offset, element index)``: the C++ kernel, the CUDA kernel and the twin give the same numbers.
The op has **no autograd formula**: it is an in-place sampler update on detached tensors (the SGLD loop
takes gradients with respect to ``x`` *before* calling it), so calling it on a tensor that requires grad
is refused; like any in-place op it bumps ``x``'s version counter, so a graph that saved ``x`` before the
update refuses to backpropagate. The op itself checks every argument the wrapper checks (dtypes, shapes,
devices, contiguity, ``x`` and ``grad`` not sharing memory, finite step and noise, no NaN clamp bound, seed
and offset in [0, 2^64)); its Meta kernel makes the same checks.
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import sys
import warnings
from pathlib import Path

import torch

from ebm_ood.sampling import philox
from ebm_ood.plumbing.build_flags import CXX_FLAGS, LD_FLAGS, NVCC_FLAGS  # shared with setup.py
from ebm_ood.plumbing.build_lock import build_lock

_STATE: dict = {"backend": None}
_SOURCES = ("philox.h", "sgld_update.h", "sgld_tile.h", "sgld_cpu.cpp")


def _csrc_dir() -> Path | None:
    """The op's sources, found one way: a package inside a repository checkout (``setup.py`` beside
    ``ebm_ood/``: a clone or an editable install) reads the checkout's ``csrc/``; an installed package reads
    the copy ``setup.py`` ships inside it (``ebm_ood/csrc``). None when that folder lacks a source."""
    here = Path(__file__).resolve().parent.parent            # ebm_ood/
    src = here.parent / "csrc" if (here.parent / "setup.py").is_file() else here / "csrc"
    return src if all((src / s).is_file() for s in _SOURCES) else None


def build_name(src: Path, sources: list[Path], cflags: list[str]) -> str:
    """The JIT build's name and folder: a hash of the source folder's absolute path, the sources' bytes, the
    flags and the torch/python versions.

    The path is part of it because ninja's build file records absolute source paths: two checkouts sharing
    one folder would each rewrite it and recompile the op on every alternate use.
    """
    digest = hashlib.sha1(f"{Path(src).resolve()}\0".encode())
    for f in (*sources, *(src / h for h in _SOURCES if h.endswith(".h"))):
        digest.update(f.read_bytes())
    digest.update(f"{torch.__version__}-{sys.version_info[:2]}-{cflags}-{NVCC_FLAGS}".encode())
    return f"ebm_ood_sgld_{digest.hexdigest()[:12]}"


def _jit_build(src: Path | None = None) -> None:
    """Compile ``src`` (default: this checkout's ``csrc/``) with ninja, once per source folder, source bytes,
    flags and torch/python version, and load it.

    The CUDA kernel is added when torch has a usable CUDA device and toolkit.
    """
    from torch.utils import cpp_extension

    src = _csrc_dir() if src is None else Path(src)
    if src is None:
        raise RuntimeError("the csrc/ sources were not found next to the package")
    sources, cflags = [src / "sgld_cpu.cpp"], list(CXX_FLAGS)
    if torch.cuda.is_available() and cpp_extension.CUDA_HOME is not None and (src / "sgld_cuda.cu").is_file():
        sources.append(src / "sgld_cuda.cu")
        cflags.append("-DEBM_OOD_WITH_CUDA")
    name = build_name(src, sources, cflags)
    root = Path(os.environ.get("EBM_OOD_EXTENSIONS_DIR", Path.home() / ".cache" / "ebm_ood" / "torch_extensions"))
    build_dir = root / name
    with build_lock(build_dir):  # one builder at a time; clears torch's lock left by a killed build
        if not (build_dir / f"{name}.so").exists():
            print(f"ebm_ood: compiling the fused SGLD op (first use only, ~30 s) into {build_dir}", file=sys.stderr)
        cpp_extension.load(
            name=name,
            sources=[str(s) for s in sources],
            extra_include_paths=[str(src)],
            extra_cflags=cflags,
            extra_cuda_cflags=NVCC_FLAGS,
            extra_ldflags=LD_FLAGS,
            build_directory=str(build_dir),
            is_python_module=False,
            verbose=False,
        )


def _load() -> str:
    if _STATE["backend"] is not None:
        return _STATE["backend"]
    backend = "twin"
    if os.environ.get("EBM_OOD_FORCE_TWIN", "") not in ("", "0"):
        _STATE["backend"] = backend
        return backend
    try:
        import ebm_ood._C  # noqa: F401  (registers torch.ops.ebm_ood.sgld_step_)

        backend = "extension"
    except ImportError:
        try:
            _jit_build()
            backend = "extension"
        except Exception as err:  # no compiler, no ninja, build error: fall back, say so once
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            warnings.warn(f"ebm_ood: fused SGLD op unavailable ({first}); using the pure-PyTorch twin", stacklevel=3)
    if backend == "extension" and not hasattr(torch.ops.ebm_ood, "sgld_step_"):
        backend = "twin"
    _STATE["backend"] = backend
    return backend


def backend() -> str:
    """``"extension"`` when the compiled op is in use, else ``"twin"`` (loads/compiles on first call)."""
    return _load()


def _shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two contiguous tensors have an element in common."""
    if a.numel() == 0 or b.numel() == 0 or a.device != b.device or a.device.type == "meta":
        return False
    if a.untyped_storage().data_ptr() != b.untyped_storage().data_ptr():
        return False
    a0, b0 = a.data_ptr(), b.data_ptr()
    return a0 < b0 + b.numel() * b.element_size() and b0 < a0 + a.numel() * a.element_size()


def _check(x: torch.Tensor, grad: torch.Tensor, step_size: float, noise_std: float, clamp_min: float,
           clamp_max: float) -> None:
    """The op's argument checks (csrc/sgld_cpu.cpp ``checked_params`` makes the same ones), as Python errors."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x: expected a torch.Tensor, got {type(x).__name__}")
    if not isinstance(grad, torch.Tensor):
        raise TypeError(f"grad: expected a torch.Tensor, got {type(grad).__name__}")
    for name, t in (("x", x), ("grad", grad)):
        if t.layout != torch.strided:
            raise TypeError(f"{name}: expected a dense tensor, got layout {t.layout}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x: expected float32 or float64, got {x.dtype}")
    if grad.shape != x.shape or grad.dtype != x.dtype or grad.device != x.device:
        raise ValueError(
            f"grad: expected shape {tuple(x.shape)}, dtype {x.dtype}, device {x.device} like x; "
            f"got {tuple(grad.shape)}, {grad.dtype}, {grad.device}"
        )
    if not x.is_contiguous():
        raise ValueError("x: the in-place update needs a contiguous tensor (call .contiguous() first)")
    if grad.is_contiguous() and _shares_memory(x, grad):  # a non-contiguous grad is copied below
        raise ValueError("grad: shares memory with x, which the update overwrites; pass a separate grad (grad.clone())")
    if x.requires_grad:
        raise ValueError("x: the SGLD op has no autograd; pass a detached tensor (x.detach())")
    if grad.requires_grad and torch.is_grad_enabled():
        raise ValueError("grad: the SGLD op has no autograd; pass a detached tensor (grad.detach())")
    if x.is_inference() and not torch.is_inference_mode_enabled():
        raise ValueError("x: an inference tensor can only be updated inside torch.inference_mode(); pass x.clone()")
    for name, value in (("step_size", step_size), ("noise_std", noise_std)):
        if not math.isfinite(value):
            raise ValueError(f"{name}: must be finite, got {value}")
    if math.isnan(clamp_min) or math.isnan(clamp_max):
        raise ValueError(f"clamp_min, clamp_max: must not be NaN, got {clamp_min}, {clamp_max} "
                         "(use -inf / inf for no bound)")
    if clamp_min > clamp_max:
        raise ValueError(f"clamp_min: must be <= clamp_max, got {clamp_min} > {clamp_max}")


KEY_LIMIT = 2**64  # seed and offset are 64-bit words of the Philox key and counter


def _key_word(value, name: str) -> int:
    """``value`` as a Python int in [0, 2^64): ints, numpy integers and 0-d integer tensors pass."""
    try:
        word = operator.index(value) if not isinstance(value, bool) else None
    except TypeError:
        word = None
    if word is None or not 0 <= word < KEY_LIMIT:
        raise ValueError(f"{name}: expected an integer in [0, 2^64), got {value!r}")
    return word


def _number(value, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {value!r}") from None


def draw_seed(generator: torch.Generator | None = None) -> int:
    """A fresh 63-bit Philox key from torch's (CPU) generator, so ``torch.manual_seed`` fixes the noise."""
    return int(torch.randint(0, 2**63 - 1, (), generator=generator, dtype=torch.int64))


def sgld_step_twin_(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset) -> torch.Tensor:
    """Pure-PyTorch reference of ``torch.ops.ebm_ood.sgld_step_`` (same noise, same rounding order).

    ``x <- clamp(x - step_size * grad + noise_std * n, clamp_min, clamp_max)``, ``n = philox.normal(...)``,
    with the decoupled SGLD form of the Elflein/JEM code; the Langevin form (HEAT Eq. 4) is the special
    case ``step_size = η/2, noise_std = sqrt(η)``. x, grad: same shape (any), float32/float64, contiguous.
    """
    n = philox.normal(x.numel(), seed, offset, device=x.device).view(x.shape).to(x.dtype)
    # x_{t+1} = x_t - α ∇ₓE(x_t) + σ ε_t, ε_t ~ N(0, I)  (HEAT Eq. 4 is α = η/2, σ = √η)
    v = x - grad * step_size
    v += n * noise_std
    return torch.clamp(v, clamp_min, clamp_max, out=x)


def sgld_step_(x, grad, step_size, noise_std, clamp_min=-math.inf, clamp_max=math.inf, generator=None,
               *, seed=None, offset=0, check=True) -> torch.Tensor:
    """In place: ``x <- clamp(x - step_size * grad + noise_std * n)``, ``n ~ N(0, I)`` (one fused pass).

    x, grad: same shape (any), float32/float64, one device, not sharing memory; x contiguous and not
    requiring grad. seed/offset (integers in [0, 2^64)) select the Philox stream; by default ``seed`` is
    drawn from ``generator`` (torch's default generator when None), so ``torch.manual_seed`` makes the
    update reproducible. A chain keeps one seed and passes ``offset = t`` at step t: counters never repeat,
    so no noise is reused within the chain.
    ``check=False`` skips the Python-side input checks (the sampler checks its first step only; the C++ op
    still checks). Returns x.
    """
    step_size, noise_std = _number(step_size, "step_size"), _number(noise_std, "noise_std")
    clamp_min, clamp_max = _number(clamp_min, "clamp_min"), _number(clamp_max, "clamp_max")
    if check:
        _check(x, grad, step_size, noise_std, clamp_min, clamp_max)
    if not grad.is_contiguous():
        grad = grad.contiguous()
    seed = draw_seed(generator) if seed is None else _key_word(seed, "seed")
    offset = _key_word(offset, "offset")
    if (_STATE["backend"] or _load()) == "extension":
        torch.ops.ebm_ood.sgld_step_.default(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset)
        return x
    return sgld_step_twin_(x, grad, step_size, noise_std, clamp_min, clamp_max, seed, offset)
