"""Networks: architecture facts, bottleneck channel arithmetic, pooled features vs direct computation."""
import numpy as np
import pytest
import torch
from torch.nn import functional as F

from ebm_ood.nn import MLP, SmallWRN, bottleneck_channels, build_network, pooled_features


def test_mlp_is_five_linear_layers_of_width_100():
    net = MLP(18, 6)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 5 and all(l.out_features == 100 for l in linears[:-1]) and linears[-1].out_features == 6


def test_mlp_forward_matches_numpy():
    torch.manual_seed(0)
    net = MLP(4, 3, width=6, depth=3).double()
    x = torch.randn(5, 4, dtype=torch.float64)
    h = x.numpy()
    for lin in [m for m in net.body if isinstance(m, torch.nn.Linear)]:
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        h = np.where(h > 0, h, 0.2 * h)  # LeakyReLU(0.2)
    np.testing.assert_allclose(net.features(x).detach().numpy(), h, rtol=1e-12)
    want = h @ net.head.weight.detach().numpy().T + net.head.bias.detach().numpy()
    np.testing.assert_allclose(net(x).detach().numpy(), want, rtol=1e-12)


@pytest.mark.parametrize("bottleneck,form", [(None, "expand"), (0.2, "expand"), (0.2, "reduce")])
def test_wrn_forward_matches_the_documented_layout(bottleneck, form):
    """stem conv → 3 pre-activation blocks x + conv(act(conv(act(x)))) (1x1 shortcut when shapes change;
    strides 1, 2, 2) → optional 1x1 bottleneck (expand: two 1x1 convs C → b → C; reduce: one C → b)
    → act → global average pool → linear head."""
    torch.manual_seed(1)
    net = SmallWRN(2, 4, width=1, bottleneck=bottleneck, bottleneck_form=form).double()
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    act = lambda t: F.leaky_relu(t, 0.2)
    conv = lambda t, m, stride, pad: F.conv2d(t, m.weight, m.bias, stride=stride, padding=pad)
    h = conv(x, net.stem, 1, 1)
    for block, neck, stride in zip(net.blocks, net.necks, (1, 2, 2)):
        r = conv(act(conv(act(h), block.conv1, stride, 1)), block.conv2, 1, 1)
        short = h if isinstance(block.shortcut, torch.nn.Identity) else conv(h, block.shortcut, stride, 0)
        h = short + r
        if bottleneck is not None:
            for m in (neck[0], neck[1]) if form == "expand" else (neck,):
                h = conv(h, m, 1, 0)
    z = act(h).mean(dim=(2, 3))
    torch.testing.assert_close(net.features(x), z, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(x), z @ net.head.weight.T + net.head.bias, rtol=1e-12, atol=1e-12)


def test_wrn_has_no_normalisation_and_is_size_agnostic():
    net = SmallWRN(1, 8)
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.GroupNorm, torch.nn.LayerNorm)) for m in net.modules())
    for hw in (8, 28):
        assert net(torch.randn(2, 1, hw, hw)).shape == (2, 8)
    # no batch dependence: a sample's output does not change with its batch mates
    x = torch.randn(4, 1, 8, 8)
    assert torch.allclose(net(x)[:1], net(x[:1]), atol=1e-6)


def test_bottleneck_channels():
    # the authors' int(f · C): int(25.6) = 25, int(1.6) = 1; at least one channel
    assert bottleneck_channels(128, 0.2) == 25 and bottleneck_channels(32, 0.05) == 1 and bottleneck_channels(8, 0.01) == 1
    net = SmallWRN(1, 8, width=2, bottleneck=0.2, bottleneck_form="reduce")
    necks = [m for m in net.necks]
    assert [n.out_channels for n in necks] == [bottleneck_channels(c, 0.2) for c in (32, 64, 128)]
    assert net.head.in_features == bottleneck_channels(128, 0.2)
    with pytest.raises(ValueError, match="bottleneck"):
        bottleneck_channels(8, 0.0)


def test_pooled_features_match_direct_computation():
    net = SmallWRN(1, 8)
    x = torch.randn(3, 1, 8, 8)
    z, s = pooled_features(net, x)
    fmap = net.feature_map(x)
    assert torch.allclose(z, fmap.mean(dim=(2, 3)), atol=1e-6)
    manual_std = ((fmap - fmap.mean(dim=(2, 3), keepdim=True)) ** 2).mean(dim=(2, 3)).sqrt()
    assert torch.allclose(s, manual_std, atol=1e-5)
    assert torch.allclose(net.head(z), net(x), atol=1e-5)


def test_build_network_picks_architecture():
    assert isinstance(build_network((18,), 3), MLP)
    assert isinstance(build_network((1, 8, 8), 3), SmallWRN)
    with pytest.raises(ValueError, match="input_shape"):
        build_network((2, 3), 3)
    with pytest.raises(ValueError, match="out_dim"):
        build_network((18,), 0)
