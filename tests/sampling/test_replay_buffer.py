"""Persistent replay buffer (ebm_ood/sampling/replay_buffer.py): re-initialisation frequency (binomial test),
writes at the right slots, per-class chunks, checkpoints, reproducibility."""
import numpy as np
import pytest
import scipy.stats as st
import torch

from ebm_ood.sampling import ReplayBuffer


class CountingInit:
    """init(n) returning consecutive integers 0, 1, 2, ...: every fresh start is recognisable."""

    def __init__(self, shape):
        self.next, self.shape = 0, shape

    def __call__(self, n):
        v = torch.arange(self.next, self.next + n, dtype=torch.float32)
        self.next += n
        return v.view(n, *([1] * len(self.shape))).expand(n, *self.shape).clone()


def test_uniform_initialisation():
    buf = ReplayBuffer((3, 2), capacity=5000, generator=torch.Generator().manual_seed(0))
    b = buf.buffer.numpy().ravel()
    assert buf.buffer.shape == (5000, 3, 2) and b.min() >= -1 and b.max() < 1
    assert st.kstest(b, st.uniform(loc=-1, scale=2).cdf).pvalue > 1e-3


def test_reinit_frequency_matches_rho():
    rho, cap = 0.05, 1000
    buf = ReplayBuffer((2,), capacity=cap, reinit_prob=rho, init=CountingInit((2,)),
                       generator=torch.Generator().manual_seed(1))
    fresh = total = 0
    for _ in range(40):
        x, idx = buf.sample(250)
        fresh += int((x[:, 0] >= cap).sum())       # values >= capacity only come from a re-initialisation
        total += 250
        assert torch.equal(x[:, 0] >= cap, buf.last_reinit)
        stored = ~buf.last_reinit
        assert torch.equal(x[stored], buf.buffer[idx[stored]])  # the rest are the stored states
    assert st.binomtest(fresh, total, rho).pvalue > 1e-3
    assert 0.03 < fresh / total < 0.07


def test_update_writes_exactly_the_given_slots():
    buf = ReplayBuffer((4,), capacity=50, generator=torch.Generator().manual_seed(2))
    before = buf.buffer.clone()
    x, _ = buf.sample(8)
    x += 1.0                                          # sample returns a copy: the buffer is untouched
    assert torch.equal(buf.buffer, before)
    idx = torch.tensor([3, 17, 49, 0])
    new = torch.arange(16, dtype=torch.float32).view(4, 4) + 10
    buf.update(idx, new)
    expected = before.numpy().copy()
    expected[idx.numpy()] = new.numpy()
    np.testing.assert_array_equal(buf.buffer.numpy(), expected)
    with pytest.raises(ValueError, match="idx"):
        buf.update(torch.tensor([50]), new[:1])
    with pytest.raises(ValueError, match="x"):
        buf.update(idx, new[:, :3])


def test_per_class_chunks():
    buf = ReplayBuffer((1,), capacity=103, n_classes=10, generator=torch.Generator().manual_seed(3))
    y = torch.randint(0, 10, (500,))
    _, idx = buf.sample(500, y=y)
    assert torch.equal(idx // 10, y)                  # chunk size 103 // 10 = 10
    with pytest.raises(ValueError, match="y"):
        buf.sample(4)
    with pytest.raises(ValueError, match="y"):
        buf.sample(2, y=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="y"):
        ReplayBuffer((1,), capacity=10).sample(2, y=torch.tensor([0, 1]))


def test_same_generator_seed_same_draws_and_state_dict_round_trip():
    def make():
        return ReplayBuffer((3,), capacity=64, generator=torch.Generator().manual_seed(7))

    a, b = make(), make()
    xa, ia = a.sample(16)
    xb, ib = b.sample(16)
    assert torch.equal(xa, xb) and torch.equal(ia, ib)
    a.update(ia, xa * 0 + 5)
    c = ReplayBuffer((3,), capacity=64)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.buffer, a.buffer)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer((3,), capacity=65).load_state_dict(a.state_dict())
    with pytest.raises(ValueError, match="buffer"):
        c.load_state_dict({k: v for k, v in a.state_dict().items() if k != "buffer"})


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="reinit_prob"):
        ReplayBuffer((2,), reinit_prob=1.5)
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer((2,), capacity=0)
    with pytest.raises(ValueError, match="init"):
        ReplayBuffer((2,), capacity=4, init=lambda n: torch.zeros(n, 3))
    with pytest.raises(ValueError, match="n_classes"):
        ReplayBuffer((2,), capacity=4, n_classes=5)
