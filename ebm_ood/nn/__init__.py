"""Networks: the tabular MLP, a small WideResNet-style conv net, and pooled penultimate features."""
from numbers import Integral

from ebm_ood.nn.pooling import pooled_features
from ebm_ood.nn.mlp import MLP
from ebm_ood.nn.wrn import BOTTLENECK_FORMS, SmallWRN, bottleneck_channels

__all__ = ["MLP", "SmallWRN", "BOTTLENECK_FORMS", "bottleneck_channels", "pooled_features", "build_network"]


def build_network(input_shape: tuple[int, ...], out_dim: int, *, widen: int = 2, bottleneck: float | None = None,
                  mlp_width: int = 100, depth: int = 5, bottleneck_form: str = "expand"):
    """The paper's architecture for an input shape: an MLP of ``depth`` layers of width ``mlp_width`` (paper:
    5 and 100) for (D,), the SmallWRN (widening factor ``widen``, optional 1x1 ``bottleneck`` of ``bottleneck_form``) for (C, H, W).
    Output: (N, out_dim)."""
    if isinstance(out_dim, bool) or not isinstance(out_dim, Integral) or out_dim < 1:
        raise ValueError(f"out_dim: expected a positive integer, got {out_dim!r}")
    if len(input_shape) == 1:
        return MLP(input_shape[0], out_dim, width=mlp_width, depth=depth)
    if len(input_shape) == 3:
        return SmallWRN(input_shape[0], out_dim, width=widen, bottleneck=bottleneck, bottleneck_form=bottleneck_form)
    raise ValueError(f"input_shape: expected (D,) or (C, H, W), got {input_shape}")
