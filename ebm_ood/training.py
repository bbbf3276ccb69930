"""The one small trainer every method shares: Adam, linear learning-rate warm-up, model selection on
ID validation data only, a divergence guard, resumable checkpoints and a progress bar.

The divergence guard checks every step's losses and logged energies, and the parameters after every
optimizer step (finite, ``|p| <= max_param``), so the snapshot it restores is never an exploded one.
A checkpoint records what defines its run (:func:`run_identity`: method, modules, optimizers, the
training config except ``steps``/``patience``, a SHA-256 fingerprint of the data, the seed and the
caller's ``identity``); resuming from the checkpoint of another run is refused, naming what differs.

A method supplies ``step_fn(xb, yb, step) -> (loss, logs)`` where ``loss`` is a scalar tensor, or a
dict ``{optimizer_name: loss}`` when several optimizers train different parameters (VERA: the EBM and
the generator). Each loss is back-propagated only into its own optimizer's parameters
(``backward(inputs=...)``). ``logs`` maps names to floats; keys listed in ``guard_keys`` (energies)
are checked against ``max_abs`` by the divergence guard.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from ebm_ood.checkpoint import load_checkpoint, save_checkpoint
from ebm_ood.errors import CheckpointError, DivergenceError
from ebm_ood.checks import check_positive

@dataclass
class TrainConfig:
    steps: int = 1000  # optimisation steps
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 0  # steps of linear learning-rate warm-up (Elflein CD: 2,500)
    eval_every: int = 100  # steps between validations / snapshots
    patience: int | None = None  # validations without improvement before stopping early
    max_abs: float = 1e5  # divergence guard: bound on |logged energies|
    max_param: float = 1e8  # divergence guard: bound on |every parameter| after each optimizer step
    guard_keys: tuple[str, ...] = ("e_pos", "e_neg")
    seed: int = 0  # batch order
    progress: bool = True
    checkpoint_path: str | None = None  # resumable training state, saved at every validation
    lrs: dict = field(default_factory=dict)  # per-optimizer learning rates, e.g. {"gen": 6e-5}


@dataclass
class History:
    steps_done: int = 0
    best_step: int = -1
    best_value: float = -math.inf
    logs: list = field(default_factory=list)  # (step, {name: value}) at every validation
    stopped_early: bool = False


def _check_config(config: TrainConfig, groups: dict[str, list[str]]) -> None:
    for name in ("batch_size", "eval_every"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    for name in ("steps", "warmup"):
        value = getattr(config, name)
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    if config.patience is not None and (not isinstance(config.patience, (int, np.integer)) or config.patience < 1):
        raise ValueError(f"patience: expected None or a positive integer, got {config.patience!r}")
    check_positive(config.lr, "lr")
    check_positive(config.max_abs, "max_abs")
    check_positive(config.max_param, "max_param")
    check_positive(config.weight_decay, "weight_decay", allow_zero=True)
    for g, lr in config.lrs.items():
        if g not in groups:
            raise ValueError(f"lrs: {g!r} is not an optimizer; expected keys among {sorted(groups)}")
        check_positive(lr, f"lrs[{g!r}]")
    beta1 = float(config.betas[0])
    for g in groups:
        lr = config.lrs.get(g, config.lr)
        # Adam's first step moves a parameter by lr / (1 - β1) in float32; beyond float32's range the
        # optimizer itself fails with an overflow error
        if 0.0 <= beta1 < 1.0 and lr / (1.0 - beta1) > float(np.finfo(np.float32).max):
            name = f"lrs[{g!r}]" if g in config.lrs else "lr"
            raise ValueError(f"{name}: {lr!r} is too large: Adam's step lr / (1 - beta1) = {lr / (1.0 - beta1):.3g} "
                             "overflows float32; use a learning rate of order 1e-3")


def _params(modules: dict[str, nn.Module], names) -> list[nn.Parameter]:
    return [p for n in names for p in modules[n].parameters() if p.requires_grad]


def train(
    modules: dict[str, nn.Module],
    step_fn: Callable,
    x: torch.Tensor,
    y: torch.Tensor | None,
    config: TrainConfig,
    *,
    name: str,
    groups: dict[str, list[str]] | None = None,
    validate: Callable[[], float] | None = None,
    stateful: dict | None = None,
    identity: dict | None = None,
) -> History:
    """Run ``config.steps`` optimisation steps of ``step_fn`` on random mini-batches of ``(x, y)``.

    ``groups`` maps optimizer names to module names (default: one optimizer ``"main"`` over all
    modules). ``validate()`` returns a number where higher is better (ID validation only); the modules
    end with the weights of the best validation. ``stateful`` holds extra objects with
    ``state_dict``/``load_state_dict`` (a replay buffer) saved in checkpoints. ``identity`` holds what
    else defines the run (e.g. the method's config); with ``stateful`` and the rest of
    :func:`run_identity` it must match a checkpoint to resume from it, else :class:`CheckpointError`
    names what differs, as it does for a checkpoint already past ``config.steps``. On divergence the
    modules are restored to their last good snapshot and :class:`DivergenceError` is raised.
    """
    groups = groups or {"main": list(modules)}
    stateful = stateful or {}
    _check_config(config, groups)
    for g, names in groups.items():
        if unknown := [n for n in names if n not in modules]:
            raise ValueError(f"groups: optimizer {g!r} names modules {unknown} that are not in modules {sorted(modules)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x: expected at least one training sample, got none")
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y: expected {n} labels (one per sample of x), got {y.shape[0]}")
    params = {g: _params(modules, names) for g, names in groups.items()}
    optimizers = {
        g: torch.optim.Adam(params[g], lr=config.lrs.get(g, config.lr), betas=config.betas,
                            weight_decay=config.weight_decay)
        for g in groups
    }
    warm = int(config.warmup)
    schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
                  for g, o in optimizers.items()}
    batch_gen = torch.Generator().manual_seed(int(config.seed))
    hist = History()
    snapshot = _snapshot(modules)
    best = snapshot
    start, evals_without_gain = 0, 0

    run_id = run_identity(name, modules, groups, stateful, x, y, config, identity) if config.checkpoint_path else None
    if config.checkpoint_path and os.path.exists(config.checkpoint_path):
        ck = load_checkpoint(config.checkpoint_path)
        _check_resumable(ck, run_id, config)
        try:
            for k, m in modules.items():
                m.load_state_dict(ck["modules"][k])
            for g in optimizers:
                optimizers[g].load_state_dict(ck["optimizers"][g])
                schedulers[g].load_state_dict(ck["schedulers"][g])
            for k, obj in stateful.items():
                obj.load_state_dict(ck["stateful"][k])
            batch_gen.set_state(ck["batch_rng"])
            torch.set_rng_state(ck["torch_rng"])
            start, evals_without_gain = int(ck["step"]), int(ck["evals_without_gain"])
            hist.best_step, hist.best_value = int(ck["best_step"]), float(ck["best_value"])
            hist.logs = [(int(s), dict(l)) for s, l in ck["logs"]]
            best, snapshot = ck["best"], _snapshot(modules)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            _restore(modules, snapshot)  # the weights the caller passed in, not half of the checkpoint's
            raise CheckpointError(f"checkpoint {config.checkpoint_path!r} does not fit this run's modules and "
                                  f"optimizers ({type(err).__name__}: {err}); delete it to start afresh") from None

    bs = min(config.batch_size, n)
    last_finite: dict = {}
    bar = _progress(config.steps, start, name, config.progress)
    for step in range(start, config.steps):
        idx = torch.randint(0, n, (bs,), generator=batch_gen).to(x.device)
        xb, yb = x[idx], (y[idx] if y is not None else None)
        for m in modules.values():
            m.train()
        losses, logs = step_fn(xb, yb, step)
        if not isinstance(losses, dict):
            losses = {next(iter(groups)): losses}
        elif unknown := sorted(set(losses) - set(groups)):
            raise ValueError(f"step_fn: returned losses {unknown} for no optimizer; the optimizers are {sorted(groups)}")
        problem = _check(losses, logs, config)
        if problem:
            _restore(modules, snapshot)
            bar.close()
            raise DivergenceError(name, step, problem, last_finite)
        for o in optimizers.values():
            o.zero_grad(set_to_none=True)
        for g, loss in losses.items():
            loss.backward(inputs=params[g], retain_graph=len(losses) > 1)
        for g, o in optimizers.items():
            o.step()
            schedulers[g].step()
        problem = _check_params(modules, config.max_param)
        if problem:
            _restore(modules, snapshot)
            bar.close()
            raise DivergenceError(name, step, problem, last_finite)
        last_finite = {**{f"loss_{g}": float(l.detach()) for g, l in losses.items()}, **{k: float(v) for k, v in logs.items()}}
        bar.update(1)
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            value = float(validate()) if validate is not None else float(step)
            hist.logs.append((step + 1, {**last_finite, "val": value}))
            snapshot = _snapshot(modules)
            if value > hist.best_value:
                hist.best_value, hist.best_step, best, evals_without_gain = value, step + 1, snapshot, 0
            else:
                evals_without_gain += 1
            if config.checkpoint_path:
                save_checkpoint({
                    "modules": {k: m.state_dict() for k, m in modules.items()},
                    "optimizers": {g: o.state_dict() for g, o in optimizers.items()},
                    "schedulers": {g: s.state_dict() for g, s in schedulers.items()},
                    "stateful": {k: o.state_dict() for k, o in stateful.items()},
                    "batch_rng": batch_gen.get_state(), "torch_rng": torch.get_rng_state(),
                    "step": step + 1, "evals_without_gain": evals_without_gain,
                    "best_step": hist.best_step, "best_value": hist.best_value, "best": best,
                    "logs": [[s, l] for s, l in hist.logs], "identity": run_id,
                }, config.checkpoint_path)
            if config.patience is not None and evals_without_gain >= config.patience:
                hist.stopped_early = True
                break
    bar.close()
    hist.steps_done = step + 1 if hist.stopped_early else config.steps
    _restore(modules, best)
    for m in modules.values():
        m.eval()
    return hist


def _check(losses: dict, logs: dict, config: TrainConfig) -> str | None:
    for g, l in losses.items():
        if not torch.isfinite(l.detach()).all():
            return f"non-finite loss ({g} = {float(l.detach())})"
    for k, v in logs.items():
        v = float(v)
        if not math.isfinite(v):
            return f"non-finite {k} = {v}"
        if k in config.guard_keys and abs(v) > config.max_abs:
            return f"|{k}| = {abs(v):.3g} exceeds the bound {config.max_abs:.3g}"
    return None


def _check_params(modules: dict[str, nn.Module], bound: float) -> str | None:
    named = [(f"{k}.{pn}", p) for k, m in modules.items() for pn, p in m.named_parameters() if p.numel()]
    if not named:
        return None
    dev = named[0][1].device
    tops = torch.stack([p.detach().abs().amax().float().to(dev) for _, p in named])
    if bool(torch.isfinite(tops).all()) and float(tops.max()) <= bound:  # one device sync per step
        return None
    for (pname, _), top in zip(named, tops.tolist()):
        if not math.isfinite(top) or top > bound:
            return f"parameter {pname} reached |value| = {top:.3g} (bound max_param = {bound:.3g})"
    return None


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


def _plain(obj):
    """A JSON-able, comparable form of a config value (dataclasses as dicts, tuples as lists)."""
    if hasattr(obj, "__dataclass_fields__"):  # a TrainConfig anywhere leaves out what a resumed run may change
        skip = _RESUMABLE_FIELDS if isinstance(obj, TrainConfig) else ()
        return {f: _plain(getattr(obj, f)) for f in obj.__dataclass_fields__ if f not in skip}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (bool, int, float, str)) or obj is None:
        return obj
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    return repr(obj)


# fields of TrainConfig a resumed run may change: the budget and the bookkeeping
_RESUMABLE_FIELDS = ("steps", "patience", "progress", "checkpoint_path")


def run_identity(name: str, modules: dict[str, nn.Module], groups: dict, stateful: dict, x: torch.Tensor,
                 y: torch.Tensor | None, config: TrainConfig, identity: dict | None = None) -> dict:
    """What defines a training run, as recorded in its checkpoints: the method ``name``, the modules'
    parameter names and shapes, the optimizer groups and stateful objects, the training config (without
    the fields a resumed run may change: steps, patience, progress, checkpoint_path; the seed is in it),
    a SHA-256 fingerprint of ``(x, y)`` and the caller's ``identity`` (e.g. the method's config).
    Values are JSON strings, so two identities compare exactly."""
    train_cfg = {k: v for k, v in _plain(config).items() if k != "seed"}
    arch = {k: {p: list(t.shape) for p, t in m.state_dict().items()} for k, m in modules.items()}
    parts = {"method": name, "modules": arch, "optimizers": {g: list(v) for g, v in groups.items()},
             "stateful": sorted(stateful), "train config": train_cfg, "seed": _plain(config.seed),
             "data fingerprint": data_fingerprint(x, y), "method config": _plain(identity or {})}
    return {k: json.dumps(v, sort_keys=True) for k, v in parts.items()}


def _differences(recorded: dict, current: dict) -> list[str]:
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
            out.append(f"data (fingerprint {str(a)[:12]}... -> {b[:12]}...)")
        else:
            out.append(f"{key} ({a} -> {b})")
    return out


def _check_resumable(ck: dict, run_id: dict, config: TrainConfig) -> None:
    path = config.checkpoint_path
    recorded = ck.get("identity")
    if not isinstance(recorded, dict):
        raise CheckpointError(f"checkpoint {path!r} records no run identity (method, config, data, seed); "
                              "delete it to start afresh")
    diff = _differences(recorded, run_id)
    if diff:
        raise CheckpointError(f"checkpoint {path!r} belongs to another run; it differs in: " + "; ".join(diff)
                              + ". Use another checkpoint_path or delete the file to start afresh")
    done = ck.get("step")
    if isinstance(done, int) and done > config.steps:
        raise CheckpointError(f"checkpoint {path!r} is already at step {done}, beyond steps={config.steps}; "
                              f"set steps >= {done} to resume it, or delete it to start afresh")


def _snapshot(modules: dict[str, nn.Module]) -> dict:
    return {k: copy.deepcopy(m.state_dict()) for k, m in modules.items()}


def _restore(modules: dict[str, nn.Module], snap: dict) -> None:
    for k, m in modules.items():
        m.load_state_dict(snap[k])


def _progress(total: int, start: int, name: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=name, leave=False, disable=(not enabled) or None, dynamic_ncols=True)


def to_tensor(x, device=None, dtype=torch.float32) -> torch.Tensor | None:
    """numpy or tensor → contiguous tensor on ``device``; ``None`` (no labels) stays ``None``."""
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.ascontiguousarray(x), dtype=dtype, device=device)


def batched_mean(fn: Callable[..., torch.Tensor], *tensors: torch.Tensor, batch_size: int) -> float:
    """``mean_n fn(...)_n`` over all samples, evaluated ``batch_size`` samples at a time (validation criteria).

    ``fn(*batches) -> (B,)`` per-sample values for aligned slices of ``tensors`` (each (N, ...)); the sum
    is accumulated in float64. Gradients are left to the caller (SSM's criterion needs them).
    """
    n = tensors[0].shape[0]
    if n == 0:
        raise ValueError("tensors: expected at least one sample, got none")
    total = 0.0
    for i in range(0, n, batch_size):
        total += float(fn(*(t[i : i + batch_size] for t in tensors)).detach().double().sum())
    return total / n


def seed_everything(seed: int) -> None:
    """One seed fixes every CPU result: torch (and the fused op's noise, which is seeded from torch)
    and numpy's legacy global generator."""
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2**32))
