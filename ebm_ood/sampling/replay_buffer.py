"""Persistent replay buffer for SGLD chains (persistent contrastive divergence: Tieleman 2008;
Du & Mordatch 2019; Elflein App. B: capacity 10,000, re-initialisation probability ρ = 0.05, U(-1, 1)).

Each training step draws a batch of stored chain states, restarts each one from the initial
distribution with probability ρ, runs SGLD from them, and writes the results back to the same slots.
With ``n_classes`` the buffer is split into equal per-class chunks (class-conditional SGLD of the
supervised Elflein code): a draw for class ``y`` comes from chunk ``y``.
"""
from __future__ import annotations

from typing import Callable

import torch


class ReplayBuffer:
    """A (capacity, *shape) tensor of chain states on ``device``.

    shape: sample shape (e.g. (18,) or (1, 28, 28)). init: "uniform" (U(-1, 1)) or a callable
    n -> (n, *shape) tensor. generator: torch.Generator (CPU) for every random choice here.
    Attributes: ``buffer`` (capacity, *shape); ``last_reinit`` (B,) bool mask of the latest ``sample``.
    """

    def __init__(self, shape, capacity: int = 10_000, reinit_prob: float = 0.05,
                 init: str | Callable[[int], torch.Tensor] = "uniform", n_classes: int | None = None,
                 device="cpu", generator: torch.Generator | None = None):
        self.shape = tuple(int(s) for s in (shape if isinstance(shape, (tuple, list, torch.Size)) else (shape,)))
        if int(capacity) != capacity or capacity < 1:
            raise ValueError(f"capacity: expected a positive integer, got {capacity!r}")
        if not 0.0 <= reinit_prob <= 1.0:
            raise ValueError(f"reinit_prob: expected a probability in [0, 1], got {reinit_prob!r}")
        if not (init == "uniform" or callable(init)):
            raise ValueError(f"init: expected 'uniform' or a callable n -> (n, *shape), got {init!r}")
        if n_classes is not None and (int(n_classes) != n_classes or not 1 <= n_classes <= capacity):
            raise ValueError(f"n_classes: expected an integer in [1, capacity={capacity}], got {n_classes!r}")
        self.capacity, self.reinit_prob, self.init = int(capacity), float(reinit_prob), init
        self.n_classes = None if n_classes is None else int(n_classes)
        self.device, self.generator = torch.device(device), generator
        self.buffer = self._initial(self.capacity)                   # (capacity, *shape)
        self.last_reinit = torch.zeros(0, dtype=torch.bool)

    @property
    def chunk(self) -> int:
        """Slots per class (the whole buffer without classes); a remainder of slots is left unused."""
        return self.capacity if self.n_classes is None else self.capacity // self.n_classes

    def _initial(self, n: int) -> torch.Tensor:
        """n fresh chain starts, (n, *shape) float32 on the buffer's device (drawn on CPU: device-independent)."""
        if self.init == "uniform":
            x = torch.rand((n, *self.shape), generator=self.generator) * 2.0 - 1.0
        else:
            x = torch.as_tensor(self.init(n))
            if tuple(x.shape) != (n, *self.shape):
                raise ValueError(f"init: expected a tensor of shape {(n, *self.shape)}, got {tuple(x.shape)}")
        return x.to(device=self.device, dtype=torch.float32)

    def sample(self, batch_size: int, y: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch_size`` stored states uniformly (with replacement), each restarted with prob. ρ.

        y: (B,) int64 classes, required iff ``n_classes`` was given (draw j comes from chunk ``y[j]``).
        Returns x (B, *shape) (a copy) and idx (B,) int64 slot indices for ``update``.
        """
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        b = int(batch_size)
        idx = torch.randint(0, self.chunk, (b,), generator=self.generator)
        if self.n_classes is not None:
            if y is None:
                raise ValueError("y: required for a class-conditional buffer (n_classes was given)")
            y = torch.as_tensor(y).to("cpu", torch.int64)
            if y.shape != (b,) or (y < 0).any() or (y >= self.n_classes).any():
                raise ValueError(f"y: expected shape ({b},) with classes in [0, {self.n_classes}), got {tuple(y.shape)}")
            idx = idx + y * self.chunk
        elif y is not None:
            raise ValueError("y: only for a class-conditional buffer (pass n_classes to the constructor)")
        reinit = torch.rand(b, generator=self.generator) < self.reinit_prob   # (B,) restart mask
        x = self.buffer[idx.to(self.device)]                                  # indexing by a tensor copies
        n_new = int(reinit.sum())
        if n_new:
            x[reinit.to(self.device)] = self._initial(n_new)
        self.last_reinit = reinit
        return x, idx

    def update(self, idx: torch.Tensor, x: torch.Tensor) -> None:
        """Write chain states back: ``buffer[idx[j]] = x[j]`` (with repeated indices one write wins)."""
        idx = torch.as_tensor(idx, dtype=torch.int64)
        if idx.ndim != 1 or (idx < 0).any() or (idx >= self.capacity).any():
            raise ValueError(f"idx: expected a 1-D tensor of slots in [0, {self.capacity})")
        if not isinstance(x, torch.Tensor) or tuple(x.shape) != (idx.shape[0], *self.shape):
            raise ValueError(f"x: expected a tensor of shape {(idx.shape[0], *self.shape)}, "
                             f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
        self.buffer[idx.to(self.device)] = x.detach().to(self.device, self.buffer.dtype)

    def state_dict(self) -> dict:
        """Everything needed to resume: the stored states and the settings they depend on."""
        return {"buffer": self.buffer.detach().cpu().clone(), "shape": self.shape, "capacity": self.capacity,
                "reinit_prob": self.reinit_prob, "n_classes": self.n_classes}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict()`` output; refuses a buffer of another shape/capacity/class split."""
        missing = [key for key in ("buffer", "shape", "capacity", "n_classes") if key not in state]
        if missing:
            raise ValueError(f"state: missing keys {missing}")
        for key in ("shape", "capacity", "n_classes"):
            if (tuple(state[key]) if key == "shape" else state[key]) != getattr(self, key):
                raise ValueError(f"state: {key} is {state[key]!r}, this buffer has {getattr(self, key)!r}")
        buf = torch.as_tensor(state["buffer"])
        if tuple(buf.shape) != (self.capacity, *self.shape):
            raise ValueError(f"state: buffer has shape {tuple(buf.shape)}, expected {(self.capacity, *self.shape)}")
        self.buffer = buf.to(self.device, torch.float32).clone()
        self.reinit_prob = float(state.get("reinit_prob", self.reinit_prob))
