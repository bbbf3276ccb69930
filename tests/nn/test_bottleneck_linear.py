"""The authors' bottleneck is two 1×1 convs with nothing between them: a single affine map per pixel,
``W₂(W₁h + b₁) + b₂ = (W₂W₁)h + (W₂b₁ + b₂)``, of rank ≤ b. Checked against that closed form (a matrix
product computed here), on block outputs with negative entries, where any activation between the two
convs would show."""
import pytest
import torch

from ebm_ood.nn import SmallWRN


@pytest.mark.parametrize("factor,ranks", [(0.05, (1, 3, 6)), (0.2, (6, 12, 25))])
def test_expand_bottleneck_is_the_product_of_its_two_conv_matrices(factor, ranks):
    torch.manual_seed(0)
    net = SmallWRN(1, 1, width=2, bottleneck=factor).double()
    h = net.stem(torch.randn(8, 1, 8, 8, dtype=torch.float64))
    with torch.no_grad():
        for block, neck, b in zip(net.blocks, net.necks, ranks):
            out = block(h)
            assert (out < 0).any() and (out > 0).any()  # both signs reach the bottleneck
            w1, w2 = neck[0].weight[:, :, 0, 0], neck[-1].weight[:, :, 0, 0]  # (b, C), (C, b)
            assert w1.shape == (b, out.shape[1]) and w2.shape == (out.shape[1], b)
            m, c = w2 @ w1, w2 @ neck[0].bias + neck[-1].bias  # (C, C) of rank <= b, (C,)
            assert torch.linalg.matrix_rank(m).item() == b
            want = torch.einsum("ij,njhw->nihw", m, out) + c[None, :, None, None]
            h = neck(out)
            torch.testing.assert_close(h, want, rtol=1e-10, atol=1e-10)


def test_expand_bottleneck_holds_only_its_two_convs():
    net = SmallWRN(1, 1, width=2, bottleneck=0.2)
    for neck in net.necks:
        assert [type(m) for m in neck.children()] == [torch.nn.Conv2d, torch.nn.Conv2d]
