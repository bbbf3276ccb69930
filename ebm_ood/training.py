"""The one small trainer every method shares: Adam with a linear learning-rate warm-up, model selection
on ID validation data only, a divergence guard, resumable checkpoints and a progress bar.

:func:`train` reads top to bottom: set up the optimizers and their schedules, then for each step draw a
batch, compute the losses, back-propagate, step the optimizers and check for divergence; every
``eval_every`` steps validate, keep the best snapshot and save a checkpoint; at the end restore the best.
The divergence guard lives in :mod:`ebm_ood.plumbing.divergence_guard` (losses and logged energies every step,
parameters after every optimizer step, so the snapshot it restores is never an exploded one), what a
checkpoint holds and when a run may resume from it in :mod:`ebm_ood.plumbing.resume` (a checkpoint of another
run is refused, naming what differs).

A method supplies ``step_fn(xb, yb, step) -> (loss, logs)`` where ``loss`` is a scalar tensor, or a
dict ``{optimizer_name: loss}`` when several optimizers train different parameters (VERA: the EBM and
the generator). Each loss is back-propagated only into its own optimizer's parameters
(``backward(inputs=...)``). ``logs`` maps names to floats; keys listed in ``guard_keys`` (energies)
are checked against ``max_abs`` by the divergence guard.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from ebm_ood.plumbing.checks import check_positive
from ebm_ood.plumbing.divergence_guard import check_losses, check_params, diverged
from ebm_ood.plumbing.resume import TrainingState, restore, resume_training, run_identity, save_training, snapshot

__all__ = ["TrainConfig", "History", "train", "to_tensor", "batched_mean", "seed_everything",
           "steps_for_epochs", "effective_warmup"]

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
    group_betas: dict = field(default_factory=dict)  # per-optimizer Adam betas, e.g. {"ebm": (0.9, 0.999)}
    epochs: int | None = None  # when set, replaces steps by steps_for_epochs(epochs, N, batch_size)
    warmup_share: float | None = None  # when set, the warm-up is at most this share of the run (effective_warmup)


def steps_for_epochs(epochs: int, n: int, batch_size: int) -> int:
    """Optimisation steps of ``epochs`` passes over ``n`` training samples in batches of ``batch_size``,
    as an epoch-counting trainer (the authors' PyTorch Lightning, last batch kept) takes them:
    ``epochs · ⌈n / batch_size⌉``. (Our batches are drawn with replacement; only the count matches.)"""
    for value, what in ((epochs, "epochs"), (n, "n"), (batch_size, "batch_size")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what}: expected a positive integer, got {value!r}")
    return int(epochs) * -(-int(n) // int(batch_size))


def effective_warmup(warmup: int, steps: int, share: float | None) -> int:
    """The warm-up steps a run of ``steps`` steps takes: ``warmup``, or with a ``share`` at most that share
    of the run, ``min(warmup, ⌊share · steps⌋)`` (so a warm-up written in steps never outlasts a run whose
    length is counted in epochs of a small dataset)."""
    if share is None:
        return int(warmup)
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share <= 1:
        raise ValueError(f"warmup_share: expected None or a number in (0, 1], got {share!r}")
    return min(int(warmup), math.floor(share * int(steps)))


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
    for g, betas in config.group_betas.items():
        if g not in groups:
            raise ValueError(f"group_betas: {g!r} is not an optimizer; expected keys among {sorted(groups)}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0.0 <= float(b) < 1.0 for b in betas)):
            raise ValueError(f"group_betas[{g!r}]: expected a pair (beta1, beta2) in [0, 1), got {betas!r}")
    for g in groups:
        lr = config.lrs.get(g, config.lr)
        beta1 = float(config.group_betas.get(g, config.betas)[0])
        # Adam's first step moves a parameter by lr / (1 - β1) in float32; beyond float32's range the
        # optimizer itself fails with an overflow error
        if 0.0 <= beta1 < 1.0 and lr / (1.0 - beta1) > float(np.finfo(np.float32).max):
            name = f"lrs[{g!r}]" if g in config.lrs else "lr"
            raise ValueError(f"{name}: {lr!r} is too large: Adam's step lr / (1 - beta1) = {lr / (1.0 - beta1):.3g} "
                             "overflows float32; use a learning rate of order 1e-3")


def _check_inputs(modules: dict[str, nn.Module], x: torch.Tensor, y: torch.Tensor | None, config: TrainConfig,
                  groups: dict[str, list[str]]) -> TrainConfig:
    """Raise on bad arguments; return ``config``, its ``steps`` replaced by :func:`steps_for_epochs` of
    the ``len(x)`` training samples when ``config.epochs`` is set and its ``warmup`` by
    :func:`effective_warmup` of those steps."""
    _check_config(config, groups)
    for g, names in groups.items():
        if unknown := [n for n in names if n not in modules]:
            raise ValueError(f"groups: optimizer {g!r} names modules {unknown} that are not in modules {sorted(modules)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("x: expected at least one training sample, got none")
    if y is not None and y.shape[0] != n:
        raise ValueError(f"y: expected {n} labels (one per sample of x), got {y.shape[0]}")
    if config.epochs is not None:
        config = replace(config, steps=steps_for_epochs(config.epochs, n, config.batch_size))
    return replace(config, warmup=effective_warmup(config.warmup, config.steps, config.warmup_share))


def _params(modules: dict[str, nn.Module], names) -> list[nn.Parameter]:
    return [p for n in names for p in modules[n].parameters() if p.requires_grad]


def _adam_with_warmup(params: dict[str, list[nn.Parameter]], config: TrainConfig) -> tuple[dict, dict]:
    """One Adam per optimizer group (learning rate ``config.lrs[g]``, else ``config.lr``; betas
    ``config.group_betas[g]``, else ``config.betas``) and its schedule: the learning rate at step s is
    ``lr · min(1, (s + 1) / warmup)``."""
    optimizers = {
        g: torch.optim.Adam(p, lr=config.lrs.get(g, config.lr), betas=tuple(config.group_betas.get(g, config.betas)),
                            weight_decay=config.weight_decay)
        for g, p in params.items()
    }
    warm = int(config.warmup)
    schedulers = {g: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
                  for g, o in optimizers.items()}
    return optimizers, schedulers


def _batch(x: torch.Tensor, y: torch.Tensor | None, size: int, generator: torch.Generator):
    """``size`` samples of ``(x, y)`` drawn uniformly with replacement; ``y`` may be ``None`` (no labels)."""
    idx = torch.randint(0, x.shape[0], (size,), generator=generator).to(x.device)
    return x[idx], (y[idx] if y is not None else None)


def _by_optimizer(out: tuple, groups: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """``step_fn``'s ``(loss, logs)`` with the loss as ``{optimizer name: loss}`` (a single tensor is the
    first optimizer's)."""
    losses, logs = out
    if not isinstance(losses, dict):
        return {next(iter(groups)): losses}, logs
    if unknown := sorted(set(losses) - set(groups)):
        raise ValueError(f"step_fn: returned losses {unknown} for no optimizer; the optimizers are {sorted(groups)}")
    return losses, logs


def _values(losses: dict[str, torch.Tensor], logs: dict) -> dict[str, float]:
    """A step's losses (as ``loss_<optimizer>``) and logged values, as floats."""
    return {**{f"loss_{g}": float(l.detach()) for g, l in losses.items()}, **{k: float(v) for k, v in logs.items()}}


def train(modules: dict[str, nn.Module], step_fn: Callable, x: torch.Tensor, y: torch.Tensor | None,
          config: TrainConfig, *, name: str, groups: dict[str, list[str]] | None = None,
          validate: Callable[[], float] | None = None, stateful: dict | None = None,
          identity: dict | None = None) -> History:
    """Run ``config.steps`` optimisation steps of ``step_fn`` on random mini-batches of ``(x, y)``.

    ``groups`` maps optimizer names to module names (default: one optimizer ``"main"`` over all modules).
    ``validate()`` returns a number where higher is better (ID validation only); the modules end with the
    weights of the best validation. ``stateful`` holds objects with ``state_dict``/``load_state_dict`` (a
    replay buffer) and ``identity`` what else defines the run (the method's config), for checkpoints
    (:mod:`ebm_ood.plumbing.resume`). On divergence the last validated weights are restored (:class:`DivergenceError`).
    """
    groups, stateful, path = groups or {"main": list(modules)}, stateful or {}, config.checkpoint_path
    config = _check_inputs(modules, x, y, config, groups)  # with config.epochs: steps for len(x) samples
    params = {g: _params(modules, names) for g, names in groups.items()}
    optimizers, schedulers = _adam_with_warmup(params, config)
    state = TrainingState(modules, optimizers, schedulers, stateful, torch.Generator().manual_seed(int(config.seed)))
    hist, start, evals_without_gain, best = History(), 0, 0, snapshot(modules)
    run_id = run_identity(name, modules, groups, stateful, x, y, config, identity) if path else None
    if path and os.path.exists(path):
        start, evals_without_gain, best = resume_training(path, run_id, config.steps, state, hist, config.patience)
    good, last_finite, bs = snapshot(modules), {}, min(config.batch_size, x.shape[0])
    with _Progress(config.steps, start, name, config.progress) as bar:
        for step in range(start, start if hist.stopped_early else config.steps):  # resumed after its stop: none
            xb, yb = _batch(x, y, bs, state.batches)
            for m in modules.values():
                m.train()
            losses, logs = _by_optimizer(step_fn(xb, yb, step), groups)
            if problem := check_losses(losses, logs, config.guard_keys, config.max_abs):
                raise diverged(name, step, problem, modules, good, last_finite)
            for o in optimizers.values():
                o.zero_grad(set_to_none=True)
            for g, loss in losses.items():
                loss.backward(inputs=params[g], retain_graph=len(losses) > 1)
            for g, o in optimizers.items():
                o.step()
                schedulers[g].step()
            if problem := check_params(modules, config.max_param):
                raise diverged(name, step, problem, modules, good, last_finite)
            last_finite = _values(losses, logs)
            bar.update(last_finite)
            if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
                value = float(validate()) if validate is not None else float(step)
                hist.logs.append((step + 1, {**last_finite, "val": value}))
                good = snapshot(modules)  # the last validated weights: what the divergence guard restores
                if value > hist.best_value:
                    hist.best_value, hist.best_step, best, evals_without_gain = value, step + 1, good, 0
                else:
                    evals_without_gain += 1
                if path:
                    save_training(path, state, hist, step + 1, evals_without_gain, best, run_id)
                if config.patience is not None and evals_without_gain >= config.patience:
                    hist.stopped_early = True
                    break
    hist.steps_done = hist.logs[-1][0] if hist.stopped_early else config.steps
    restore(modules, best)
    for m in modules.values():
        m.eval()
    return hist


PROGRESS_ENV = "EBM_OOD_PROGRESS_SECONDS"  # seconds between progress lines when stderr is not a terminal
PROGRESS_SECONDS = 30.0


class _Progress:
    """Training progress on stderr, from values the step already computed (so it never changes a result):
    on a terminal a tqdm bar (step, rate, ETA) with the last step's losses; otherwise (a log file, a worker
    of ``--jobs``/``--executor dask``) one line every :data:`PROGRESS_SECONDS` seconds (``$EBM_OOD_PROGRESS_SECONDS``)
    ``NAME: step s/total (p%), loss_<opt> v, t s elapsed, ETA e s``; nothing when ``enabled`` is False."""

    def __init__(self, total: int, start: int, name: str, enabled: bool):
        import time

        self.total, self.start, self.name, self.step, self.clock = total, start, name, start, time.monotonic
        self.t0 = self.last = self.clock()
        self.bar = self.every = None
        if not enabled:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=start, desc=name, leave=False, dynamic_ncols=True, file=sys.stderr)
        else:
            raw = os.environ.get(PROGRESS_ENV, "").strip()
            try:
                self.every = max(0.0, float(raw)) if raw else PROGRESS_SECONDS
            except ValueError:
                raise ValueError(f"{PROGRESS_ENV}: expected a number of seconds, got {raw!r}") from None

    def update(self, values: dict[str, float]) -> None:
        """One step done; ``values``: its losses and logged floats (:func:`_values`)."""
        self.step += 1
        losses = {k: v for k, v in values.items() if k.startswith("loss_")}
        if self.bar is not None:
            self.bar.set_postfix(losses, refresh=False)
            self.bar.update(1)
        elif self.every is not None and self.clock() - self.last >= self.every:
            self.last = now = self.clock()
            done = self.step - self.start
            eta = (now - self.t0) / done * (self.total - self.step)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in losses.items())
            print(f"{self.name}: step {self.step}/{self.total} ({100 * self.step // max(self.total, 1)}%), {shown}, "
                  f"{now - self.t0:.0f} s elapsed, ETA {eta:.0f} s", file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()


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
