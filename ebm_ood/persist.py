"""Save and load a fitted detector without pickle: ``save(detector, path)`` / ``load(path)``.

The file is a checkpoint-format file (:mod:`ebm_ood.plumbing.checkpoint`: a SHA-256 header line, then the bytes of
``torch.save``, written atomically), so any changed, truncated or inserted byte is a
:class:`~ebm_ood.plumbing.errors.CheckpointError`, and the payload is read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers. The payload is one dict:

* ``"format"``: :data:`FORMAT`;
* ``"json"``: a JSON document describing the detector: class names, settings and learned scalars, with
  every array and tensor replaced by a reference into ``"tensors"``;
* ``"tensors"``: ``{"t0": tensor, ...}`` (numpy arrays are stored as tensors and come back as numpy).

Loading decodes only from allow-lists, so a file (even a crafted one with a valid digest) never chooses
a function to run: torch dtypes by name; numpy dtypes of booleans, integers and floats, each matching
its stored tensor's dtype and shape; classes of ebm_ood that are detectors, networks (``nn.Module``),
configuration dataclasses, :class:`~ebm_ood.backbone.Backbone` or the SGLD replay buffer, and
``nn.Module`` classes of ``torch.nn``; bound methods only ``forward`` or a public method that a network's
own (non-torch) class defines. Such objects are rebuilt from their class and attributes (``cls.__new__``
then the saved attributes, which may not replace a method or property of the class; no constructor
runs). Every malformed or unexpected entry is a :class:`~ebm_ood.plumbing.errors.CheckpointError`.

A file that passes the allow-lists is then checked for what it means (:func:`_check_detector`): every
detector's recorded settings are passed through its class's own constructor (so a setting its constructor
refuses, such as ``KNN(k=-1)``, is refused here too), the attributes that constructor sets must equal the
stored ones, the fitted state must be complete (``input_shape_``, a threshold in range) and score a probe
batch of zeros with one score per sample, and a class may add cheap checks of how its learned arrays fit
together (:meth:`~ebm_ood.detector.Detector._fitted_mismatch`). Any failure is a ``CheckpointError`` naming
the field.

A network of another class (your own model inside a :class:`~ebm_ood.backbone.Backbone`, or given to
``CDDetector(net=...)``) is stored as its ``state_dict`` and its class name; ``load`` then needs
``modules={"ClassName": factory}``, a zero-argument callable returning a fresh instance, whose weights are
then loaded from the file. Plain functions (e.g. ``Backbone(features=lambda x: ...)``) cannot be stored;
pass bound methods of a module (``features=model.embed``) or modules instead. Tensors come back on the
device they were saved from, or on the CPU where that device is missing (the detector's ``device`` too).
"""
from __future__ import annotations

import inspect
import json
import os
import sys
import types
import warnings
from collections import OrderedDict
from dataclasses import fields, is_dataclass

import numpy as np
import torch
from torch import nn

from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.plumbing.checkpoint import decode_checkpoint, encode_checkpoint
from ebm_ood.detector import Detector
from ebm_ood.plumbing.errors import CheckpointError, NonFiniteError

FORMAT = "ebm_ood.detector/2"
_SKIP = {"_memo"}                          # per-run caches (Backbone feature memo): not saved
_PLAIN = {"ebm_ood.backbone:Backbone", "ebm_ood.sampling.replay_buffer:ReplayBuffer"}  # plain classes rebuilt
# Modules that moved since files were written (old name -> new name, both under ``ebm_ood.``): a file naming a
# class by its old module still loads. Only modules defining classes a file may hold (detectors, networks,
# configuration dataclasses) are listed; the class is still looked up among loaded modules, never imported on
# the file's word.
MOVED_MODULES = {
    "resume": "plumbing.resume",
    "benchmark.cell_log": "commands.cell_log",
    "benchmark.methods": "commands.benchmark.registry",
    "experiments.bottleneck": "commands.experiments.bottleneck",
    "experiments.common": "commands.experiments.common",
    "experiments.density_vs_norm": "commands.experiments.density_vs_norm",
    "experiments.embeddings": "commands.experiments.embeddings",
    "experiments.gamma_sweep": "commands.experiments.gamma_sweep",
    "experiments.samples": "commands.experiments.samples",
    "experiments.smoothness": "commands.experiments.smoothness",
    "experiments.supervision": "commands.experiments.supervision",
    "speed.detectors": "commands.speed.detectors",
}
_MAX_DEPTH = 200                           # nesting of the JSON description (real detectors: < 30)
_TORCH_DTYPES = {str(d).removeprefix("torch."): d for d in vars(torch).values() if isinstance(d, torch.dtype)}
_NUMPY_DTYPES = {np.dtype(t).str for t in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8,
                                           np.uint16, np.uint32, np.uint64, np.float16, np.float32, np.float64)}
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
          "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
          "_load_state_dict_post_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
          "_forward_pre_hooks_with_kwargs")


def _class_path(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}:{cls.__qualname__}"


def _ours(cls: type) -> bool:
    return cls.__module__ == "ebm_ood" or cls.__module__.startswith("ebm_ood.")


def _rebuildable(cls) -> bool:
    """The allow-list of classes rebuilt from their attributes: ebm_ood's detectors, networks and
    configuration dataclasses (and :data:`_PLAIN`), and ``nn.Module`` classes of ``torch.nn``."""
    if not isinstance(cls, type):
        return False
    if cls.__module__.startswith("torch.nn."):
        return issubclass(cls, nn.Module)
    return _ours(cls) and (issubclass(cls, (Detector, nn.Module)) or is_dataclass(cls) or _class_path(cls) in _PLAIN)


def _method_allowed(owner, name) -> bool:
    """A bound method a file may name: ``forward``, or a public method defined by the network's own class
    (not by torch), of an ``nn.Module``."""
    if not isinstance(owner, nn.Module) or not isinstance(name, str) or name.startswith("_"):
        return False
    fn = inspect.getattr_static(type(owner), name, None)
    if not isinstance(fn, types.FunctionType):
        return False
    return name == "forward" or (not fn.__module__.startswith("torch") and
                                 inspect.getattr_static(nn.Module, name, None) is None)


class _Writer:
    def __init__(self):
        self.tensors: dict[str, torch.Tensor] = {}
        self.refs: dict[int, int] = {}
        self.keep: list = []              # keeps encoded objects alive so their ids stay unique

    def tensor(self, t: torch.Tensor) -> str:
        key = f"t{len(self.tensors)}"
        self.tensors[key] = t.detach().cpu().clone()
        return key

    def encode(self, v, where: str):
        if v is None or isinstance(v, (bool, str)):
            return v
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return v if not (isinstance(v, float) and not np.isfinite(v)) else {"__float__": repr(v)}
        if isinstance(v, (np.integer, np.floating, np.bool_)):
            return self.encode(v.item(), where)
        if isinstance(v, np.ndarray):
            if v.dtype.newbyteorder("=").str not in _NUMPY_DTYPES:
                raise TypeError(f"{where}: cannot save a numpy array of dtype {v.dtype}")
            a = np.ascontiguousarray(v, dtype=v.dtype.newbyteorder("="))
            return {"__array__": self.tensor(torch.from_numpy(a.copy())), "dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(v, nn.Parameter):
            return {"__param__": self.tensor(v.data), "grad": bool(v.requires_grad), "device": str(v.device),
                    **_layout(v)}
        if isinstance(v, torch.Tensor):
            return {"__tensor__": self.tensor(v), "device": str(v.device), **_layout(v)}
        if isinstance(v, torch.device):
            return {"__device__": str(v)}
        if isinstance(v, torch.dtype):
            return {"__dtype__": str(v).replace("torch.", "")}
        if isinstance(v, torch.Generator):
            return {"__generator__": self.tensor(v.get_state())}
        if isinstance(v, (list, tuple, set, frozenset)):
            kind = {list: "list", tuple: "tuple", set: "set", frozenset: "set"}.get(type(v), "tuple")
            items = [self.encode(x, f"{where}[{i}]") for i, x in enumerate(v)]
            return items if kind == "list" else {"__" + kind + "__": items}
        if isinstance(v, dict):
            if not all(isinstance(k, str) for k in v):
                raise TypeError(f"{where}: cannot save a dict with non-string keys")
            return {"__dict__": {k: self.encode(x, f"{where}[{k!r}]") for k, x in v.items()}}
        return self.encode_object(v, where)

    def encode_object(self, v, where: str):
        if id(v) in self.refs:
            return {"__ref__": self.refs[id(v)]}
        path = _class_path(v)
        if callable(v) and getattr(v, "__self__", None) is not None and hasattr(v, "__func__"):
            if not _method_allowed(v.__self__, v.__func__.__name__):
                raise TypeError(f"{where}: cannot save the method {v.__func__.__qualname__}; only forward or a "
                                "public method of your network's own class can be stored")
            return {"__method__": v.__func__.__name__, "of": self.encode(v.__self__, f"{where}.__self__")}
        user_net = isinstance(v, nn.Module) and not _ours(type(v)) and not type(v).__module__.startswith("torch.nn.")
        if not user_net and not _rebuildable(type(v)):
            what = "a plain function" if callable(v) else f"an object of class {path}"
            raise TypeError(f"{where}: cannot save {what}; only arrays, tensors, settings and networks (nn.Module) "
                            "can be stored — pass a module or a bound method of one instead")
        ref = self.refs[id(v)] = len(self.refs)
        self.keep.append(v)
        if user_net:                                          # a user's network: its weights only
            return {"__user_module__": path, "id": ref,
                    "state": {k: self.tensor(t) for k, t in v.state_dict().items()}}
        attrs = {k: self.encode(x, f"{where}.{k}") for k, x in vars(v).items() if k not in _SKIP}
        reset = sorted(k for k in vars(v) if k in _SKIP)
        return {"__object__": path, "id": ref, "attrs": attrs, "reset": reset}


def _layout(t: torch.Tensor) -> dict:
    """What the description records of a tensor, checked against the stored tensor on load."""
    return {"dtype": str(t.dtype).removeprefix("torch."), "shape": list(t.shape)}


def save(detector: Detector, path) -> None:
    """Write ``detector`` (fitted or not) to ``path`` (atomically, with a SHA-256 header; see the module
    docstring for the format)."""
    if not isinstance(detector, Detector):
        raise TypeError(f"detector: expected an ebm_ood detector, got {type(detector).__name__}")
    w = _Writer()
    doc = w.encode(detector, type(detector).__name__)
    payload = {"format": FORMAT, "json": json.dumps(doc), "tensors": w.tensors}
    write_atomic(os.fspath(path), encode_checkpoint(payload))


def _device(name) -> torch.device:
    """The saved device, or the CPU where that device is not available here."""
    dev = torch.device(name)
    return dev if dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_available()) else torch.device("cpu")


class _Malformed(Exception):
    """One malformed entry of the description (turned into a CheckpointError naming the file)."""


def _expect(v, key: str, kind, where: str):
    """``v[key]``, which must be of type ``kind`` (bool is not an int here)."""
    if not isinstance(v, dict) or key not in v:
        raise _Malformed(f"{where} lacks {key!r}")
    x = v[key]
    if not isinstance(x, kind) or (kind is int and isinstance(x, bool)):
        raise _Malformed(f"{where}[{key!r}] is a {type(x).__name__}, expected {getattr(kind, '__name__', kind)}")
    return x


_MARKERS = {  # marker -> the keys its entry has (all of them, no others)
    "__array__": {"dtype", "shape"}, "__param__": {"grad", "device", "dtype", "shape"},
    "__tensor__": {"device", "dtype", "shape"},
    "__float__": set(), "__device__": set(), "__dtype__": set(), "__generator__": set(), "__tuple__": set(),
    "__set__": set(), "__dict__": set(), "__ref__": set(), "__method__": {"of"},
    "__user_module__": {"id", "state"}, "__object__": {"id", "attrs", "reset"},
}


class _Reader:
    def __init__(self, tensors: dict, modules: dict, path: str):
        self.tensors, self.modules, self.path = tensors, modules, path
        self.objects: dict[int, object] = {}
        self.used: set[str] = set()

    def tensor(self, key, where: str) -> torch.Tensor:
        if not isinstance(key, str) or key not in self.tensors:
            raise _Malformed(f"{where} refers to a tensor {str(key)[:40]!r} the file does not contain")
        if key in self.used:
            raise _Malformed(f"{where} refers to tensor {key!r} a second time")
        self.used.add(key)
        return self.tensors[key]

    def decode(self, v, where: str = "detector", depth: int = 0):
        if depth > _MAX_DEPTH:
            raise _Malformed(f"{where} is nested deeper than {_MAX_DEPTH} levels")
        if v is None or isinstance(v, (bool, int, float, str)):
            return v
        if isinstance(v, list):
            return [self.decode(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
        if not isinstance(v, dict):
            raise _Malformed(f"{where} is a {type(v).__name__}")
        marker = [k for k in v if k in _MARKERS]
        if len(marker) != 1 or set(v) != {marker[0], *_MARKERS[marker[0]]}:
            raise _Malformed(f"{where} is an entry this version cannot read (keys {[k[:40] for k in sorted(v)[:4]]})")
        return getattr(self, "d_" + marker[0].strip("_"))(v, where, depth + 1)

    # one decoder per marker ------------------------------------------------------------------------
    def d_array(self, v, where, depth):
        t = self.tensor(v["__array__"], where)
        dtype, shape = _expect(v, "dtype", str, where), _expect(v, "shape", list, where)
        if dtype not in _NUMPY_DTYPES:
            raise _Malformed(f"{where} has numpy dtype {dtype[:40]!r}, not one of {sorted(_NUMPY_DTYPES)}")
        a = t.numpy()
        if a.dtype.str != dtype or list(a.shape) != shape:
            raise _Malformed(f"{where} says dtype {dtype} shape {shape[:8]} but its tensor has dtype "
                             f"{a.dtype.str} shape {list(a.shape)}")
        return a

    def d_param(self, v, where, depth):
        grad = _expect(v, "grad", bool, where)
        t = self._on_device(self._laid_out(v["__param__"], v, where), v, where)
        if grad and not (t.is_floating_point() or t.is_complex()):
            raise _Malformed(f"{where} asks for gradients of a {t.dtype} tensor")
        return nn.Parameter(t, requires_grad=grad)

    def d_tensor(self, v, where, depth):
        return self._on_device(self._laid_out(v["__tensor__"], v, where), v, where)

    def _laid_out(self, key, v, where):
        """The stored tensor ``key``, which must have the dtype and shape the description records."""
        t = self.tensor(key, where)
        dtype, shape = _expect(v, "dtype", str, where), _expect(v, "shape", list, where)
        if dtype != str(t.dtype).removeprefix("torch.") or shape != list(t.shape):
            raise _Malformed(f"{where} says dtype {dtype[:40]} shape {shape[:8]} but its tensor has dtype "
                             f"{str(t.dtype).removeprefix('torch.')} shape {list(t.shape)}")
        return t

    def _on_device(self, t, v, where):
        return t.to(self._device(_expect(v, "device", str, where), where))

    def _device(self, name, where):
        try:
            return _device(name)
        except (RuntimeError, ValueError, TypeError) as err:
            raise _Malformed(f"{where} names device {name[:40]!r}, which torch cannot read") from err

    def d_float(self, v, where, depth):
        text = _expect(v, "__float__", str, where)
        if text not in ("nan", "inf", "-inf"):
            raise _Malformed(f"{where} holds the non-finite float {text[:40]!r}, not nan, inf or -inf")
        return float(text)

    def d_device(self, v, where, depth):
        return self._device(_expect(v, "__device__", str, where), where)

    def d_dtype(self, v, where, depth):
        name = _expect(v, "__dtype__", str, where)
        if name not in _TORCH_DTYPES:
            raise _Malformed(f"{where} names {name[:40]!r}, which is not a torch dtype")
        return _TORCH_DTYPES[name]

    def d_generator(self, v, where, depth):
        state, g = self.tensor(v["__generator__"], where), torch.Generator()
        ref = g.get_state()
        if state.dtype != ref.dtype or state.shape != ref.shape:
            raise _Malformed(f"{where} holds a generator state of dtype {state.dtype} shape {tuple(state.shape)}, "
                             f"expected {ref.dtype} {tuple(ref.shape)}")
        g.set_state(state)
        return g

    def d_tuple(self, v, where, depth):
        return tuple(self.decode(_expect(v, "__tuple__", list, where), where, depth))

    def d_set(self, v, where, depth):
        items = self.decode(_expect(v, "__set__", list, where), where, depth)
        try:
            return set(items)
        except TypeError as err:
            raise _Malformed(f"{where} is a set of unhashable items") from err

    def d_dict(self, v, where, depth):
        items = _expect(v, "__dict__", dict, where)
        return {k: self.decode(x, f"{where}[{k!r}]", depth) for k, x in items.items()}

    def d_ref(self, v, where, depth):
        ref = _expect(v, "__ref__", int, where)
        if ref not in self.objects:
            raise _Malformed(f"{where} refers to object {ref}, which the file has not defined before")
        return self.objects[ref]

    def d_method(self, v, where, depth):
        name = _expect(v, "__method__", str, where)
        owner = self.decode(v["of"], f"{where}.__self__", depth)
        if not _method_allowed(owner, name):
            raise _Malformed(f"{where} names the method {name[:40]!r} of a {type(owner).__name__}; only forward or "
                             "a public method of a network's own class may be stored")
        return getattr(owner, name)

    def _new_id(self, v, where):
        ref = _expect(v, "id", int, where)
        if ref in self.objects:
            raise _Malformed(f"{where} defines object {ref} a second time")
        return ref

    def d_user_module(self, v, where, depth):
        path, ref = _expect(v, "__user_module__", str, where), self._new_id(v, where)
        state = _expect(v, "state", dict, where)
        qual = path.split(":")[-1]
        name = qual.rsplit(".", 1)[-1]
        factory = self.modules.get(name) or self.modules.get(qual) or self.modules.get(path)
        if factory is None:
            raise CheckpointError(
                f"path: {self.path} holds a network of class {path}, which is not part of ebm_ood, so its "
                f"architecture is not in the file (only its weights are); pass "
                f"load(path, modules={{{name!r}: lambda: {name}(...)}}) with a factory that builds a fresh one")
        module = factory()
        if not isinstance(module, nn.Module):
            raise _FactoryError(f"modules[{name!r}]: expected a factory returning an nn.Module, got {type(module).__name__}")
        weights = {k: self.tensor(t, f"{where}.state[{k!r}]") for k, t in state.items()}
        try:
            module.load_state_dict(weights)
        except RuntimeError as err:
            raise CheckpointError(f"path: {self.path}: the weights stored for {path} do not fit the network "
                                  f"modules[{name!r}] builds ({str(err).splitlines()[0][:300]})") from err
        self.objects[ref] = module.eval()
        return module

    def d_object(self, v, where, depth):
        path, ref = _expect(v, "__object__", str, where), self._new_id(v, where)
        raw, reset = _expect(v, "attrs", dict, where), _expect(v, "reset", list, where)
        cls = self._class(path, where)
        if not all(isinstance(k, str) and k in _SKIP for k in reset):
            raise _Malformed(f"{where} resets {reset[:4]}, not per-run caches")
        for k in raw:
            _check_attribute(cls, k, where)
        obj = cls.__new__(cls)
        self.objects[ref] = obj
        attrs = {k: self.decode(x, f"{where}.{k}", depth) for k, x in raw.items()}
        if isinstance(obj, nn.Module):
            nn.Module.__init__(obj)
            _check_module_state(attrs, where)
            for k, x in attrs.items():
                if k in ("_parameters", "_buffers", "_modules") or k in _HOOKS:
                    x = OrderedDict(x)
                object.__setattr__(obj, k, x)
        else:
            obj.__dict__.update(attrs)
            obj.__dict__.update({k: {} for k in reset})
        return obj

    def _class(self, path: str, where: str) -> type:
        mod, sep, qual = path.partition(":")
        if not sep or not (mod == "ebm_ood" or mod.startswith(("ebm_ood.", "torch.nn."))):
            raise CheckpointError(f"path: {self.path} asks for class {path[:100]}, which is not part of ebm_ood or "
                                  "torch.nn; refusing to build it")
        if mod.removeprefix("ebm_ood.") in MOVED_MODULES:   # a file written before its class's module moved
            mod = "ebm_ood." + MOVED_MODULES[mod.removeprefix("ebm_ood.")]
        cls = sys.modules.get(mod)          # never imported on the file's word: importing runs a module's code
        for part in qual.split(".") if cls is not None else ():
            cls = inspect.getattr_static(cls, part, None)
        if cls is None:
            raise CheckpointError(f"path: {self.path} needs class {path[:100]}, which this version of ebm_ood "
                                  "does not have (or whose module is not loaded by import ebm_ood)")
        if not isinstance(cls, type) or _class_path(cls) != f"{mod}:{qual}" or not _rebuildable(cls):
            raise CheckpointError(f"path: {self.path} asks for {path[:100]}, which is not a class defined in ebm_ood "
                                  "or torch.nn that a detector file may hold (detectors, networks, settings); "
                                  "refusing to build it")
        return cls


class _FactoryError(TypeError):
    """A ``modules=`` factory returned something other than a network (the caller's error, not the file's)."""


def _check_attribute(cls: type, name: str, where: str) -> None:
    """An attribute a file may set: not a dunder, and not a name the class gives a method, property or
    other descriptor (an instance attribute would replace it)."""
    if name.startswith("__") and name.endswith("__"):
        raise _Malformed(f"{where} sets the special attribute {name[:40]!r}")
    static = inspect.getattr_static(cls, name, None)
    if static is not None and (callable(static) or hasattr(type(static), "__get__")):
        raise _Malformed(f"{where} sets {name[:40]!r}, which {cls.__name__} defines as a method or property")


def _check_module_state(attrs: dict, where: str) -> None:
    """An ``nn.Module``'s registries hold what they should: parameters, tensors, modules, and no hooks."""
    want = {"_parameters": nn.Parameter, "_buffers": torch.Tensor, "_modules": nn.Module}
    for k, kind in want.items():
        x = attrs.get(k, {})
        if not isinstance(x, dict) or not all(isinstance(n, str) and (m is None or isinstance(m, kind))
                                              for n, m in x.items()):
            raise _Malformed(f"{where}.{k} is not a dict of {kind.__name__}")
    for k in _HOOKS:
        if attrs.get(k):
            raise _Malformed(f"{where}.{k} holds hooks; a saved network has none")
    if not isinstance(attrs.get("training", False), bool):
        raise _Malformed(f"{where}.training is not a bool")


def load(path, modules: dict | None = None) -> Detector:
    """Read a detector written by :func:`save`. ``modules``: ``{"ClassName": factory}`` for networks whose
    class is not part of ebm_ood (your own model): a zero-argument callable returning a fresh instance.
    A changed, truncated, crafted or foreign file raises :class:`~ebm_ood.plumbing.errors.CheckpointError`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no saved detector at {path!r}")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise CheckpointError(f"path: {path} cannot be read ({err.strerror or err})") from None
    fix = "save the detector again with ebm_ood.save"
    payload = decode_checkpoint(data, f"path: {path}", fix)
    if payload.get("format") != FORMAT:
        got = payload.get("format")
        raise CheckpointError(f"path: {path} is not an ebm_ood detector file (expected format {FORMAT!r}, "
                              f"got {str(got)[:60]!r})")
    tensors = payload.get("tensors")
    if not isinstance(tensors, dict) or not all(isinstance(k, str) and type(t) is torch.Tensor
                                                for k, t in tensors.items()):
        raise CheckpointError(f"path: {path} has no dict of named tensors; {fix}")
    try:
        doc = json.loads(payload["json"])
        reader = _Reader(tensors, dict(modules or {}), path)
        detector = reader.decode(doc)
    except (CheckpointError, _FactoryError):
        raise
    except _Malformed as err:
        raise CheckpointError(f"path: {path} is malformed: {err}") from None
    except Exception as err:  # noqa: BLE001 - whatever else a malformed description provokes (RecursionError, ...)
        raise CheckpointError(f"path: {path} has a corrupt description ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200] if str(err) else ''})") from None
    if not isinstance(detector, Detector):
        raise CheckpointError(f"path: {path} does not hold a detector (got {type(detector).__name__})")
    for obj in reader.objects.values():         # the pieces first (a Backbone), then the detectors using them
        if not isinstance(obj, Detector) and hasattr(type(obj), "_init_args"):
            _check_rebuilt(obj, path)
    for obj in reader.objects.values():
        if isinstance(obj, Detector):
            _check_detector(obj, path)
    return detector


def _check_rebuilt(obj, path: str) -> None:
    """A plain object with ``_init_args()`` (a Backbone): its arguments pass its constructor's checks, and
    the plain attributes the constructor sets equal the stored ones."""
    cls, where = type(obj), f"path: {path} holds a {type(obj).__name__}"
    try:
        kwargs = obj._init_args()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = cls(**kwargs)
    except Exception as err:  # noqa: BLE001 - a missing attribute or a refused argument
        raise CheckpointError(f"{where} whose settings its constructor refuses: {_first_line(err)}") from None
    _compare_attributes(obj, fresh, list(kwargs.values()), where)


_UNSET = object()


def _check_detector(det: Detector, path: str) -> None:
    """Check what a decoded detector means (module docstring): its settings through its constructor, the
    constructor's attributes against the stored ones, and its fitted state. Raises CheckpointError."""
    cls, where = type(det), f"path: {path} holds a {type(det).__name__}"
    params = det.__dict__.get("_params", _UNSET)
    if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
        raise CheckpointError(f"{where} without its settings (_params); save the detector again with ebm_ood.save")
    kwargs = dict(params)
    if "device" in kwargs and isinstance(det.__dict__.get("device"), torch.device):
        kwargs["device"] = det.__dict__["device"]       # the saved device, or the CPU where it is missing here
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fresh = cls(**kwargs)
    except Exception as err:  # noqa: BLE001 - whatever the constructor refuses, it refuses for the file too
        raise CheckpointError(f"{where} whose settings its constructor refuses: {_first_line(err)}") from None
    _compare_attributes(det, fresh, list(params.values()), where)
    if not det.__dict__.get("fitted_", False):
        return
    problem = _fitted_problem(det)
    if problem:
        raise CheckpointError(f"{where} whose fitted state is inconsistent: {problem}")


def _compare_attributes(loaded, fresh, args: list, where: str) -> None:
    """The public attributes ``fresh`` (built from ``args``) sets must be in ``loaded``: equal plain values
    (:func:`_is_value`), and the very objects passed (networks, detectors) where the constructor keeps them."""
    given = [v for v in args if not _is_value(v)]
    for k, want in vars(fresh).items():
        if k.startswith("_") or k.endswith("_") or k == "device":
            continue
        got = loaded.__dict__.get(k, _UNSET)
        if any(want is g for g in given) and got is not want:
            raise CheckpointError(f"{where} whose attribute {k!r} is not the {k} its settings name")
        if _is_value(want) and not _equal(got, want):
            raise CheckpointError(f"{where} whose attribute {k!r} ({_brief(got)}) disagrees with its settings, "
                                  f"which give {_brief(want)}")


def _fitted_problem(det: Detector) -> str | None:
    """What is wrong with a fitted detector's learned state, or None."""
    shape = det.__dict__.get("input_shape_")
    if not (isinstance(shape, tuple) and shape and all(isinstance(s, int) and s >= 1 for s in shape)):
        return f"input_shape_ is {_brief(shape)}, expected a tuple of positive ints"
    has_t, has_tpr = "threshold_" in det.__dict__, "threshold_tpr_" in det.__dict__
    if has_t != has_tpr:
        return "threshold_ and threshold_tpr_ must be stored together"
    if has_t:
        t, tpr = det.__dict__["threshold_"], det.__dict__["threshold_tpr_"]
        if not (isinstance(t, float) and np.isfinite(t)):
            return f"threshold_ is {_brief(t)}, expected a finite float"
        if not (isinstance(tpr, float) and 0.0 < tpr <= 1.0):
            return f"threshold_tpr_ is {_brief(tpr)}, expected a fraction in (0, 1]"
    try:
        problem = det._fitted_mismatch()
        if problem:
            return problem
        probe = det._probe_fitted()
    except NonFiniteError:          # zeros may be outside what the model handles; not a sign of a bad file
        probe = None
    except Exception as err:  # noqa: BLE001 - learned arrays that do not fit together fail in many ways
        return f"scoring a probe batch fails ({type(err).__name__}: {_first_line(err)})"
    if probe is not None and probe.shape != (2,):
        return f"a probe batch of 2 samples gets scores of shape {probe.shape}"
    return None


def _is_value(v) -> bool:
    """Plain settings compared after rebuilding: numbers, strings, arrays, configs and containers of them."""
    if v is None or isinstance(v, (bool, int, float, str, np.ndarray, np.generic)):
        return True
    if is_dataclass(v) and not isinstance(v, type):
        return all(_is_value(getattr(v, f.name)) for f in fields(v))
    if isinstance(v, (tuple, list)):
        return all(_is_value(x) for x in v)
    if isinstance(v, dict):
        return all(_is_value(x) for x in v.values())
    return False


def _equal(a, b) -> bool:
    """``a`` equals ``b`` in type and value (NaN equals NaN; arrays also in dtype and shape)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(
            np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if is_dataclass(a):
        return all(_equal(getattr(a, f.name), getattr(b, f.name)) for f in fields(a))
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (float, np.floating)) and np.isnan(a) and np.isnan(b):
        return True
    return bool(a == b)


def _brief(v) -> str:
    if isinstance(v, np.ndarray):
        return f"an array {v.dtype} {v.shape}"
    if v is _UNSET:
        return "missing"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0][:300] if text else type(err).__name__
