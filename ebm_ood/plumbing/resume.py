"""Resumable training: what a checkpoint of :func:`ebm_ood.training.train` holds, and when a run may
continue from one.

A checkpoint (written by :func:`save_training`, read back by :func:`resume_training`) holds

* the state of every object that changes while training (:class:`TrainingState`): the modules, the
  optimizers, their learning-rate schedules, the caller's ``stateful`` objects (a replay buffer), the
  batch-order generator and torch's global generator (SGLD noise);
* where the run stands: steps done, validations without gain, the best validation so far (step, value
  and weights) and the logs of every validation;
* the run's identity (:func:`run_identity`): what defines the run, so that a checkpoint of another run
  (other data, seed, method config, modules or training config) is refused, naming what differs.

The file format itself (digest header, atomic write, ``weights_only`` load) is :mod:`ebm_ood.plumbing.checkpoint`.
"""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ebm_ood.plumbing.checkpoint import load_checkpoint, save_checkpoint
from ebm_ood.plumbing.errors import CheckpointError

# fields of the training config a resumed run may change: the budget and the bookkeeping
RESUMABLE_FIELDS = ("steps", "patience", "progress", "checkpoint_path")


def snapshot(modules: dict[str, nn.Module]) -> dict:
    """A deep copy of every module's ``state_dict``: ``{module name: state_dict}``."""
    return {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}


def restore(modules: dict[str, nn.Module], snap: dict) -> None:
    """Load the weights of a :func:`snapshot` back into ``modules``."""
    for k, m in modules.items():
        m.load_state_dict(snap[k])


@dataclass
class TrainingState:
    """The objects whose state a checkpoint saves and restores (all keyed by name as in ``train``)."""

    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler]  # one per optimizer
    stateful: dict  # objects with state_dict/load_state_dict, e.g. a replay buffer
    batches: torch.Generator  # draws the mini-batch indices

    def state_dict(self) -> dict:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules.items()},
            "optimizers": {g: o.state_dict() for g, o in self.optimizers.items()},
            "schedulers": {g: s.state_dict() for g, s in self.schedulers.items()},
            "stateful": {k: o.state_dict() for k, o in self.stateful.items()},
            "batch_rng": self.batches.get_state(), "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, ck: dict) -> None:
        for k, m in self.modules.items():
            m.load_state_dict(ck["modules"][k])
        for g in self.optimizers:
            self.optimizers[g].load_state_dict(ck["optimizers"][g])
            self.schedulers[g].load_state_dict(ck["schedulers"][g])
        for k, obj in self.stateful.items():
            obj.load_state_dict(ck["stateful"][k])
        self.batches.set_state(ck["batch_rng"])
        torch.set_rng_state(ck["torch_rng"])


def save_training(path: str, state: TrainingState, hist, step: int, evals_without_gain: int, best: dict,
                  run_id: dict) -> None:
    """Write the checkpoint of a run after ``step`` steps: ``state``, the model selection so far (``hist``,
    a :class:`ebm_ood.training.History`; ``best``, the :func:`snapshot` of the best validation) and
    ``run_id`` (:func:`run_identity`)."""
    save_checkpoint({
        **state.state_dict(),
        "step": step, "evals_without_gain": evals_without_gain,
        "best_step": hist.best_step, "best_value": hist.best_value, "best": best,
        "logs": [[s, l] for s, l in hist.logs], "identity": run_id,
    }, path)


def resume_training(path: str, run_id: dict, steps: int, state: TrainingState, hist,
                    patience: int | None = None) -> tuple[int, int, dict]:
    """Continue a run from the checkpoint at ``path``: refuse it unless it is this run's
    (:func:`check_resumable`), then load ``state`` and ``hist``'s best step, best value and logs;
    ``hist.stopped_early`` is set when the checkpoint's validations without gain already reach
    ``patience`` (the run had stopped early there: no step is taken past its stop).

    Returns ``(steps done, validations without gain, snapshot of the best validation)``. A checkpoint
    that does not fit the modules or optimizers raises :class:`CheckpointError` and leaves the modules
    with the weights they had.
    """
    ck = load_checkpoint(path)
    check_resumable(ck, run_id, path, steps)
    before = snapshot(state.modules)
    try:
        state.load_state_dict(ck)
        start, evals_without_gain = int(ck["step"]), int(ck["evals_without_gain"])
        hist.best_step, hist.best_value = int(ck["best_step"]), float(ck["best_value"])
        hist.logs = [(int(s), dict(l)) for s, l in ck["logs"]]
        hist.stopped_early = patience is not None and bool(hist.logs) and evals_without_gain >= patience
        return start, evals_without_gain, ck["best"]
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        restore(state.modules, before)  # the weights the caller passed in, not half of the checkpoint's
        raise CheckpointError(f"checkpoint {path!r} does not fit this run's modules and "
                              f"optimizers ({type(err).__name__}: {err}); delete it to start afresh") from None


def data_fingerprint(*tensors: torch.Tensor | None) -> str:
    """SHA-256 over the shapes, dtypes and bytes of ``tensors`` (``None`` counts as absent labels)."""
    h = hashlib.sha256()
    for t in tensors:
        if t is None:
            h.update(b"none;")
            continue
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)};".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _plain(obj, config_type: type):
    """A JSON-able, comparable form of a config value (dataclasses as dicts, tuples as lists). A training
    config (an instance of ``config_type``), wherever it sits, leaves out the :data:`RESUMABLE_FIELDS`."""
    if hasattr(obj, "__dataclass_fields__"):
        skip = RESUMABLE_FIELDS if isinstance(obj, config_type) else ()
        return {f: _plain(getattr(obj, f), config_type) for f in obj.__dataclass_fields__ if f not in skip}
    if isinstance(obj, dict):
        return {str(k): _plain(v, config_type) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, config_type) for v in obj]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return repr(obj)


def run_identity(name: str, modules: dict[str, nn.Module], groups: dict, stateful: dict, x: torch.Tensor,
                 y: torch.Tensor | None, config, identity: dict | None = None) -> dict:
    """What defines a training run, as recorded in its checkpoints: the method ``name``, the modules'
    parameter names and shapes, the optimizer groups and stateful objects, the training config (a
    :class:`ebm_ood.training.TrainConfig`, without the fields a resumed run may change: steps, patience,
    progress, checkpoint_path; the seed is in it), a SHA-256 fingerprint of ``(x, y)`` and the caller's
    ``identity`` (e.g. the method's config). Values are JSON strings, so two identities compare exactly."""
    train_cfg = {k: v for k, v in _plain(config, type(config)).items() if k != "seed"}
    arch = {k: {p: list(t.shape) for p, t in m.state_dict().items()} for k, m in modules.items()}
    parts = {"method": name, "modules": arch, "optimizers": {g: list(v) for g, v in groups.items()},
             "stateful": sorted(stateful), "train config": train_cfg, "seed": _plain(config.seed, type(config)),
             "data fingerprint": data_fingerprint(x, y), "method config": _plain(identity or {}, type(config))}
    return {k: json.dumps(v, sort_keys=True) for k, v in parts.items()}


def _differences(recorded: dict, current: dict) -> list[str]:
    """One line per entry of the identity ``current`` that differs from the ``recorded`` one."""
    out = []
    for key in current:
        a, b = recorded.get(key), current[key]
        if a == b:
            continue
        if a is not None and key in ("train config", "method config", "modules"):
            da, db = json.loads(a), json.loads(b)
            fields = [f for f in sorted(set(da) | set(db)) if da.get(f, "(absent)") != db.get(f, "(absent)")]
            detail = ", ".join(f"{f}: {json.dumps(da.get(f, '(absent)'))} -> {json.dumps(db.get(f, '(absent)'))}"
                               for f in fields)
            out.append(f"{key} ({detail})")
        elif key == "data fingerprint":
            fa, fb = (json.loads(v) if v is not None else "(absent)" for v in (a, b))
            out.append(f"data (fingerprint {fa[:12]}... -> {fb[:12]}...)")
        else:
            out.append(f"{key} ({a} -> {b})")
    return out


def check_resumable(ck: dict, run_id: dict, path: str, steps: int) -> None:
    """Refuse (:class:`CheckpointError`) a checkpoint ``ck`` read from ``path`` that records no identity,
    another run's identity than ``run_id``, or more steps done than the run's budget ``steps``."""
    recorded = ck.get("identity")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"checkpoint {path!r} records no run identity (method, config, data, seed); "
                              "delete it to start afresh")
    diff = _differences(recorded, run_id)
    if diff:
        raise CheckpointError(f"checkpoint {path!r} belongs to another run; it differs in: " + "; ".join(diff)
                              + ". Use another checkpoint_path or delete the file to start afresh")
    done = ck.get("step")
    if isinstance(done, int) and done > steps:
        raise CheckpointError(f"checkpoint {path!r} is already at step {done}, beyond steps={steps}; "
                              f"set steps >= {done} to resume it, or delete it to start afresh")
