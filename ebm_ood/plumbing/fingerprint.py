"""Content fingerprints of what computes a network's features: the key of the :class:`~ebm_ood.backbone.Backbone`
feature memo and disk cache.

:func:`callable_digest` feeds a ``hashlib`` hash with everything a callable's output depends on that can be
read without running it:

* an ``nn.Module``: for the module and each submodule, its name, class (module path and qualified name), the
  bytecode of its ``forward``, its plain settings (public attributes that are numbers, strings, booleans,
  None or tuples of them: ``stride``, ``eps``, ``p``, …; ``training`` is left out, features are computed in
  eval mode), the code of functions set as attributes (a replaced ``forward``) and of its forward hooks,
  and the bytes, dtype, shape and device of every parameter and buffer (non-persistent buffers and plain
  tensor attributes too). Weights changed in any way (an optimiser step, ``load_state_dict``,
  ``p.data.copy_``, a write through a numpy view) change the digest;
* a bound method of a module: the method's qualified name and bytecode, and the module as above;
* a plain function (a lambda, a closure): its qualified name and bytecode, the values of its closure cells
  and of the globals its code names (recursively, with the same rules);
* ``functools.partial``: the function, its arguments and keywords.

A function that depends on anything else (an object that is none of these: a tensor, array, number,
string, list, tuple or dict of them, module, class, Python module or function) cannot be read:
:func:`callable_digest` returns False and the callable is *opaque* (``Backbone.hash`` is None). Not
covered: a module's attributes of other classes, and code the digest cannot see (a helper a ``forward``
calls, edited between runs).
"""
from __future__ import annotations

import functools
import types

import numpy as np
import torch
from torch import nn

_PLAIN = (bool, int, float, complex, str, bytes, type(None))
MAX_DEPTH = 6


class Opaque(Exception):
    """Raised inside the digest when a value cannot be fingerprinted."""


def tensor_digest(h, t: torch.Tensor) -> None:
    """Feed ``h`` with a tensor's dtype, shape, device and bytes (copied to the CPU for the hash)."""
    t = t.detach()
    h.update(f"T{t.dtype}{tuple(t.shape)}{t.device.type}".encode())
    if t.device.type == "meta":
        return
    try:
        flat = t.reshape(-1).contiguous().cpu()
        h.update(flat.view(torch.uint8).numpy().data if flat.numel() else b"")
    except (RuntimeError, TypeError) as err:     # a sparse or quantized tensor: no plain bytes to read
        raise Opaque(f"tensor of layout {t.layout}") from err


@functools.lru_cache(maxsize=4096)
def code_bytes(code: types.CodeType) -> bytes:
    parts = [code.co_qualname.encode() if hasattr(code, "co_qualname") else code.co_name.encode(),
             code.co_code, repr(code.co_names).encode()]
    for c in code.co_consts:
        parts.append(code_bytes(c) if isinstance(c, types.CodeType) else repr(c).encode())
    return b"\0".join(parts)


def _global_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _global_names(c)
    return names


def module_digest(h, m: nn.Module) -> None:
    """Feed ``h`` with a module's structure, settings, code and weights (module docstring)."""
    for name, sub in m.named_modules(remove_duplicate=False):
        cls = type(sub)
        h.update(f"M{name}:{cls.__module__}.{cls.__qualname__}".encode())
        forward = getattr(cls.forward, "__code__", None)
        if forward is not None:
            h.update(code_bytes(forward))
        for k in sorted(vars(sub)):
            v = vars(sub)[k]
            if k.startswith("_") or k == "training":
                continue
            if isinstance(v, _PLAIN) or (isinstance(v, tuple) and all(isinstance(e, _PLAIN) for e in v)):
                h.update(f"{k}={v!r}".encode())
            elif isinstance(v, (torch.Tensor, np.ndarray)):
                h.update(k.encode())
                tensor_digest(h, torch.as_tensor(v))
            elif isinstance(getattr(v, "__code__", None), types.CodeType):      # e.g. a replaced forward
                h.update(k.encode() + code_bytes(v.__code__))
        for hooks in (sub._forward_pre_hooks, sub._forward_hooks):      # which hooks run, by their code
            for hook in hooks.values():
                code = getattr(getattr(hook, "__func__", hook), "__code__", None)
                h.update(code_bytes(code) if code is not None else type(hook).__qualname__.encode())
        for kind, store in (("p", sub._parameters), ("b", sub._buffers)):
            for k, t in store.items():
                h.update(f"{kind}{k}".encode())
                if t is not None:
                    tensor_digest(h, t)


def _value_digest(h, v, depth: int, seen: set) -> None:
    if isinstance(v, _PLAIN):
        h.update(repr(v).encode())
    elif isinstance(v, (tuple, list)):
        h.update(f"L{len(v)}".encode())
        for e in v:
            _value_digest(h, e, depth, seen)
    elif isinstance(v, dict):
        h.update(f"D{len(v)}".encode())
        for k in v:
            _value_digest(h, k, depth, seen)
            _value_digest(h, v[k], depth, seen)
    elif isinstance(v, (torch.Tensor, np.ndarray, np.generic)):
        tensor_digest(h, torch.as_tensor(np.asarray(v)) if not isinstance(v, torch.Tensor) else v)
    elif isinstance(v, (types.ModuleType, type, torch.dtype, torch.device)):
        h.update(f"N{getattr(v, '__module__', '')}.{getattr(v, '__qualname__', getattr(v, '__name__', v))}".encode())
    elif callable(v):
        _callable_digest(h, v, depth + 1, seen)
    else:
        raise Opaque(type(v).__name__)


def _callable_digest(h, fn, depth: int, seen: set) -> None:
    if depth > MAX_DEPTH:
        raise Opaque("too deep")
    if id(fn) in seen:
        h.update(b"R")
        return
    seen.add(id(fn))
    if isinstance(fn, nn.Module):
        module_digest(h, fn)
    elif isinstance(fn, types.MethodType) and isinstance(fn.__self__, nn.Module):
        code = getattr(fn.__func__, "__code__", None)
        if code is None:
            raise Opaque(f"method {fn.__name__}")
        h.update(code_bytes(code))
        module_digest(h, fn.__self__)
    elif isinstance(fn, types.FunctionType):
        h.update(code_bytes(fn.__code__))
        for cell in fn.__closure__ or ():
            try:
                value = cell.cell_contents
            except ValueError:              # an empty cell (a name not yet bound)
                continue
            _value_digest(h, value, depth, seen)
        _value_digest(h, fn.__defaults__ or (), depth, seen)
        for name in sorted(_global_names(fn.__code__)):
            if name in fn.__globals__:
                h.update(name.encode())
                _value_digest(h, fn.__globals__[name], depth, seen)
    elif isinstance(fn, functools.partial):
        _callable_digest(h, fn.func, depth + 1, seen)
        _value_digest(h, fn.args, depth, seen)
        _value_digest(h, fn.keywords, depth, seen)
    elif isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)) and not isinstance(
            getattr(fn, "__self__", None), (nn.Module, torch.Tensor, np.ndarray)):
        h.update(f"B{getattr(fn, '__module__', '')}.{fn.__qualname__}".encode())
    else:
        raise Opaque(type(fn).__name__)


def callable_digest(h, fn) -> bool:
    """Feed ``h`` with everything ``fn``'s output depends on (module docstring). Returns False (and leaves
    ``h`` in an unspecified state) when ``fn`` is opaque."""
    try:
        _callable_digest(h, fn, 0, set())
    except Opaque:
        return False
    return True


def referenced_modules(fn) -> list[nn.Module]:
    """The ``nn.Module`` objects a callable runs: itself, the module of a bound method, or the modules held by
    a plain function's closure cells, defaults and named globals (and by a ``functools.partial``)."""
    if isinstance(fn, nn.Module):
        return [fn]
    if isinstance(getattr(fn, "__self__", None), nn.Module):
        return [fn.__self__]
    if isinstance(fn, functools.partial):
        return referenced_modules(fn.func) + [a for a in (*fn.args, *fn.keywords.values()) if isinstance(a, nn.Module)]
    if not isinstance(fn, types.FunctionType):
        return []
    values = []
    for cell in fn.__closure__ or ():
        try:
            values.append(cell.cell_contents)
        except ValueError:
            continue
    values += list(fn.__defaults__ or ())
    values += [fn.__globals__[n] for n in sorted(_global_names(fn.__code__)) if n in fn.__globals__]
    return [v for v in values if isinstance(v, nn.Module)]
