"""Save and load a fitted detector without pickle: ``save(detector, path)`` / ``load(path)``.

The file holds one dict written with ``torch.save`` (atomically, :func:`ebm_ood.atomic.write_atomic`) and
read back with ``torch.load(..., weights_only=True)``, which refuses anything but tensors and plain
containers:

* ``"format"``: :data:`FORMAT`;
* ``"json"``: a JSON document describing the detector: class names, settings and learned scalars, with
  every array and tensor replaced by a reference into ``"tensors"``;
* ``"tensors"``: ``{"t0": tensor, ...}`` (numpy arrays are stored as tensors and come back as numpy).

Objects are rebuilt from their class and attributes (``cls.__new__`` then the saved attributes; no
constructor and no other code of the file runs), and only classes of ``ebm_ood`` and ``torch.nn`` are
rebuilt that way. A network of another class (your own model inside a :class:`~ebm_ood.backbone.Backbone`,
or given to ``CDDetector(net=...)``) is stored as its ``state_dict`` and its class name; ``load`` then needs
``modules={"ClassName": factory}``, a zero-argument callable returning a fresh instance, whose weights are
then loaded from the file. Plain functions (e.g. ``Backbone(features=lambda x: ...)``) cannot be stored;
pass bound methods of a module (``features=model.embed``) or modules instead. Tensors come back on the
device they were saved from, or on the CPU where that device is missing (the detector's ``device`` too).
"""
from __future__ import annotations

import importlib
import json
import os
from collections import OrderedDict
from dataclasses import is_dataclass

import numpy as np
import torch
from torch import nn

from ebm_ood.atomic import write_atomic
from ebm_ood.detector import Detector
from ebm_ood.errors import CheckpointError

FORMAT = "ebm_ood.detector/1"
_TRUSTED = ("ebm_ood.", "torch.nn.")      # classes rebuilt from their attributes
_SKIP = {"_memo"}                          # per-run caches (Backbone feature memo): not saved


def _class_path(obj_or_cls) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}:{cls.__qualname__}"


def _trusted(path: str) -> bool:
    return path.split(":")[0].startswith(_TRUSTED) or path.split(":")[0] == "ebm_ood"


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
            if v.dtype == object or v.dtype.kind not in "biuf":
                raise TypeError(f"{where}: cannot save a numpy array of dtype {v.dtype}")
            return {"__array__": self.tensor(torch.from_numpy(np.ascontiguousarray(v).copy())),
                    "dtype": v.dtype.str, "shape": list(v.shape)}
        if isinstance(v, nn.Parameter):
            return {"__param__": self.tensor(v.data), "grad": bool(v.requires_grad), "device": str(v.device)}
        if isinstance(v, torch.Tensor):
            return {"__tensor__": self.tensor(v), "device": str(v.device)}
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
            return {"__method__": v.__func__.__name__, "of": self.encode(v.__self__, f"{where}.__self__")}
        if isinstance(v, type) or not hasattr(v, "__dict__") or not (
                _trusted(path) or isinstance(v, nn.Module) or is_dataclass(v)):
            what = "a plain function" if callable(v) else f"an object of class {path}"
            raise TypeError(f"{where}: cannot save {what}; only arrays, tensors, settings and networks (nn.Module) "
                            "can be stored — pass a module or a bound method of one instead")
        ref = self.refs[id(v)] = len(self.refs)
        self.keep.append(v)
        if isinstance(v, nn.Module) and not _trusted(path):   # a user's network: its weights only
            return {"__user_module__": path, "id": ref,
                    "state": {k: self.tensor(t) for k, t in v.state_dict().items()}}
        if is_dataclass(v) and not _trusted(path):
            raise TypeError(f"{where}: cannot save a dataclass of class {path} (not part of ebm_ood)")
        attrs = {k: self.encode(x, f"{where}.{k}") for k, x in vars(v).items() if k not in _SKIP}
        reset = sorted(k for k in vars(v) if k in _SKIP)
        return {"__object__": path, "id": ref, "attrs": attrs, "reset": reset}


def save(detector: Detector, path) -> None:
    """Write ``detector`` (fitted or not) to ``path`` (atomically; see the module docstring for the format)."""
    if not isinstance(detector, Detector):
        raise TypeError(f"detector: expected an ebm_ood detector, got {type(detector).__name__}")
    w = _Writer()
    doc = w.encode(detector, type(detector).__name__)
    payload = {"format": FORMAT, "json": json.dumps(doc), "tensors": w.tensors}
    write_atomic(os.fspath(path), lambda fh: torch.save(payload, fh))


def _device(name: str) -> torch.device:
    """The saved device, or the CPU where that device is not available here."""
    dev = torch.device(name)
    return dev if dev.type == "cpu" or (dev.type == "cuda" and torch.cuda.is_available()) else torch.device("cpu")


class _Reader:
    def __init__(self, tensors: dict, modules: dict, path: str):
        self.tensors, self.modules, self.path = tensors, modules, path
        self.objects: dict[int, object] = {}

    def tensor(self, key: str) -> torch.Tensor:
        if key not in self.tensors:
            raise CheckpointError(f"path: {self.path} refers to a tensor {key!r} it does not contain; the file is corrupt")
        return self.tensors[key]

    def decode(self, v):
        if not isinstance(v, (dict, list)):
            return v
        if isinstance(v, list):
            return [self.decode(x) for x in v]
        if "__array__" in v:
            return self.tensor(v["__array__"]).numpy().astype(np.dtype(v["dtype"]), copy=False)
        if "__param__" in v:
            return nn.Parameter(self.tensor(v["__param__"]).to(_device(v.get("device", "cpu"))), requires_grad=v["grad"])
        if "__tensor__" in v:
            return self.tensor(v["__tensor__"]).to(_device(v.get("device", "cpu")))
        if "__float__" in v:
            return float(v["__float__"])
        if "__device__" in v:
            return _device(v["__device__"])
        if "__dtype__" in v:
            return getattr(torch, v["__dtype__"])
        if "__generator__" in v:
            g = torch.Generator()
            g.set_state(self.tensor(v["__generator__"]))
            return g
        if "__tuple__" in v:
            return tuple(self.decode(x) for x in v["__tuple__"])
        if "__set__" in v:
            return set(self.decode(x) for x in v["__set__"])
        if "__dict__" in v:
            return {k: self.decode(x) for k, x in v["__dict__"].items()}
        if "__ref__" in v:
            return self.objects[v["__ref__"]]
        if "__method__" in v:
            return getattr(self.decode(v["of"]), v["__method__"])
        if "__user_module__" in v:
            return self.user_module(v)
        if "__object__" in v:
            return self.obj(v)
        raise CheckpointError(f"path: {self.path} holds an entry this version cannot read ({sorted(v)[:3]})")

    def user_module(self, v):
        path = v["__user_module__"]
        name = path.split(":")[1]
        factory = self.modules.get(name) or self.modules.get(path)
        if factory is None:
            raise CheckpointError(
                f"path: {self.path} holds a network of class {path}, which is not part of ebm_ood, so its "
                f"architecture is not in the file (only its weights are); pass "
                f"load(path, modules={{{name!r}: lambda: {name}(...)}}) with a factory that builds a fresh one")
        module = factory()
        if not isinstance(module, nn.Module):
            raise TypeError(f"modules[{name!r}]: expected a factory returning an nn.Module, got {type(module).__name__}")
        module.load_state_dict({k: self.tensor(t) for k, t in v["state"].items()})
        self.objects[v["id"]] = module.eval()
        return module

    def obj(self, v):
        path = v["__object__"]
        if not _trusted(path):
            raise CheckpointError(f"path: {self.path} asks for class {path}, which is not part of ebm_ood or torch.nn; "
                                  "refusing to build it")
        mod, _, qual = path.partition(":")
        try:
            cls = importlib.import_module(mod)
            for part in qual.split("."):
                cls = getattr(cls, part)
        except (ImportError, AttributeError) as err:
            raise CheckpointError(f"path: {self.path} needs class {path}, which this version of ebm_ood "
                                  "does not have") from err
        if not isinstance(cls, type) or not _trusted(f"{cls.__module__}:"):   # e.g. a module's imported name
            raise CheckpointError(f"path: {self.path} asks for {path}, which is not a class defined in ebm_ood "
                                  "or torch.nn; refusing to build it")
        obj = cls.__new__(cls)
        self.objects[v["id"]] = obj
        attrs = {k: self.decode(x) for k, x in v["attrs"].items()}
        if isinstance(obj, nn.Module):
            nn.Module.__init__(obj)
            for k, x in attrs.items():
                if k in ("_parameters", "_buffers", "_modules"):
                    x = OrderedDict(x)
                object.__setattr__(obj, k, x)
        else:
            obj.__dict__.update(attrs)
            obj.__dict__.update({k: {} for k in v.get("reset", ())})
        return obj


def load(path, modules: dict | None = None) -> Detector:
    """Read a detector written by :func:`save`. ``modules``: ``{"ClassName": factory}`` for networks whose
    class is not part of ebm_ood (your own model): a zero-argument callable returning a fresh instance."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path: no saved detector at {path!r}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or holding something beyond weights
        raise CheckpointError(f"path: {path} is not a readable ebm_ood detector file ({type(err).__name__}: "
                              f"{str(err).splitlines()[0][:200]})") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        got = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"path: {path} is not an ebm_ood detector file (expected format {FORMAT!r}, got {got!r})")
    try:
        doc = json.loads(payload["json"])
    except (KeyError, TypeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"path: {path} has a corrupt description ({err})") from err
    detector = _Reader(payload.get("tensors", {}), dict(modules or {}), path).decode(doc)
    if not isinstance(detector, Detector):
        raise CheckpointError(f"path: {path} does not hold a detector (got {type(detector).__name__})")
    return detector
