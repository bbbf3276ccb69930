"""ODIN (Liang et al. 2018): temperature scaling plus a small input perturbation that raises the
maximum softmax more for ID than for OOD inputs. Works on raw inputs and needs the network.

With ``S_y(x; T) = softmax(f(x) / T)[y]`` and ``ŷ = argmax_y f(x)[y]`` (Liang et al. Eq. 1–2):

    x̃ = x - ε · sign(-∇ₓ log S_ŷ(x; T))          (a step that increases log S_ŷ)
    s(x) = -max_y S_y(x̃; T)                        (higher = more OOD)

HEAT Table 4 uses T = 1000, ε = 0.0014. The authors' code divides the gradient by the per-channel
standard deviation of the image normalisation; our networks take the normalised input directly, so the
step is taken in the network's input space (no division).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ebm_ood.detector import Detector
from ebm_ood.plumbing.checks import check_positive


@dataclass
class ODINConfig:
    """ODIN's two settings.

    Parameters
    ----------
    temperature : float, T of the scaled softmax ``S(x; T) = softmax(f(x) / T)`` (default 1000).
    epsilon : float, ε, the size of the input perturbation (default 0.0014).

    Example
    -------
    >>> import ebm_ood
    >>> ebm_ood.ODINConfig(temperature=100.0).epsilon
    0.0014
    """

    temperature: float = 1000.0  # T in S(x; T) = softmax(f(x) / T)
    epsilon: float = 0.0014  # ε, size of the signed-gradient input step


def odin_perturb(net: nn.Module, x: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """Liang et al. Eq. 2: ``x̃ = x - ε sign(-∇ₓ log S_ŷ(x; T))``. ``x`` (B, ...) → ``x̃`` (B, ...).

    Each sample's gradient is its own (the batch loss is a sum), and only ``x`` receives a gradient.
    """
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        log_s = torch.log_softmax(_logits(net, x) / temperature, dim=1)  # (B, C)
        log_s_hat = log_s.gather(1, log_s.argmax(dim=1, keepdim=True)).sum()  # Σ_n log S_ŷ(x_n; T)
        (grad,) = torch.autograd.grad(log_s_hat, x)
    return (x - epsilon * torch.sign(-grad)).detach()


def odin_score(net: nn.Module, x: torch.Tensor, temperature: float, epsilon: float) -> torch.Tensor:
    """``-max_y S_y(x̃; T)`` (B,), float64; higher = more OOD."""
    x_tilde = odin_perturb(net, x, temperature, epsilon)
    with torch.no_grad():
        return -torch.softmax(_logits(net, x_tilde).double() / temperature, dim=1).amax(dim=1)


def _logits(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``net(x)``, which must be a logits tensor (B, C); anything else is a TypeError naming ``net``."""
    out = net(x)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != x.shape[0]:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        raise TypeError(f"net: ODIN needs net(x) to return logits of shape ({x.shape[0]}, C) for a batch of "
                        f"{x.shape[0]} inputs, got {got}; wrap the model in an nn.Module whose forward returns "
                        "the logits tensor")
    return out


class ODIN(Detector):
    """ODIN on raw inputs: ``-max_y S_y(x̃; T)``, the temperature-scaled softmax of the perturbed input
    ``x̃ = x - ε sign(-∇ₓ log S_ŷ(x; T))`` (Liang et al. 2018). A probability, not an energy.
    Nothing is learned from the ID data (T and ε are fixed; the paper's OOD-tuned search is not done).

    Parameters
    ----------
    net : nn.Module mapping (B, ...) inputs to (B, C) logits; put in eval mode.
    config : ODINConfig (``temperature`` T = 1000, ``epsilon`` ε = 0.0014) or None for the defaults.
    device : torch device or None (CPU).
    batch_size : int, samples per scoring batch (each costs a forward, a backward and a forward).

    Needs
    -----
    The network itself with input gradients (not a Backbone): pass your model; ``fit(x)`` takes raw inputs.

    Example
    -------
    >>> import numpy as np, torch, ebm_ood
    >>> rng = np.random.default_rng(0)
    >>> net = torch.nn.Linear(4, 3)
    >>> x = rng.normal(size=(50, 4)).astype("float32")
    >>> ebm_ood.ODIN(net).fit(x).score(x[:2]).shape
    (2,)
    """

    name = "ODIN"

    def __init__(self, net: nn.Module, config: ODINConfig | None = None, device=None, batch_size: int = 256):
        super().__init__(device, batch_size)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net: expected a torch.nn.Module mapping inputs to logits, got {type(net).__name__}")
        self.config = config or ODINConfig()
        check_positive(self.config.temperature, "temperature")
        check_positive(self.config.epsilon, "epsilon", allow_zero=True)
        self.net = net

    def _fit(self, x, y):
        self.net.to(self.device).eval()

    def _score(self, x):
        self.net.eval()
        t, eps = self.config.temperature, self.config.epsilon
        param = next(self.net.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32  # the network's own precision
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            b = torch.as_tensor(np.ascontiguousarray(x[i : i + self.batch_size]), dtype=dtype, device=self.device)
            out.append(odin_score(self.net, b, t, eps).cpu().numpy())
        return np.concatenate(out)
