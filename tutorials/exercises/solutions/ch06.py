"""Reference solutions for chapter 06."""
from __future__ import annotations

import math

import numpy as np
import torch


def exercise_1():
    return lambda y: -0.5 * np.log(y) ** 2 - 0.5 * math.log(2 * math.pi) - np.log(y)


def exercise_2():
    def radial_log_det(z, z0, alpha, beta):
        d = z.shape[1]
        r = torch.linalg.norm(z - z0, dim=1)
        h = 1.0 / (alpha + r)
        dh = -1.0 / (alpha + r) ** 2
        return (d - 1) * torch.log(torch.abs(1 + beta * h)) + torch.log(torch.abs(1 + beta * h + beta * dh * r))
    return radial_log_det


def exercise_3():
    return lambda log_p, d, delta: -(np.asarray(log_p) + d * math.log(delta)) / (d * math.log(2))
