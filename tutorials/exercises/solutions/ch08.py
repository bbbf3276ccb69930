"""Reference solutions for chapter 08."""
from __future__ import annotations

import torch
from scipy import stats

from ebm_ood.commands.experiments.improvement import improvement_by_group
from exercises.ch08 import BASE, GROUPS, NEW, SEEDS_BASE, SEEDS_NEW, X, homogeneous_net


def exercise_1():
    wrap = lambda d: {k: {"aupr": v} for k, v in d.items()}              # noqa: E731
    return improvement_by_group(wrap(NEW), wrap(BASE), GROUPS, metric="aupr")


def exercise_2():
    """Slope = max_y f(x)[y] of the bias-free network (biases only shift by a bounded amount)."""
    out = {}
    for key, bias in (("no_bias", False), ("bias", True)):
        net = homogeneous_net(bias=bias)
        if bias:
            for m in net:
                if isinstance(m, torch.nn.Linear):
                    m.bias.data.zero_()
        with torch.no_grad():
            out[key] = float(net(torch.as_tensor(X)[None]).max())
    return out


def exercise_3():
    t, p = stats.ttest_ind(SEEDS_NEW, SEEDS_BASE, equal_var=False)
    return {"t": float(t), "p": float(p), "significant": bool(p < 0.05)}
