"""The argument contract of the fused SGLD op: the raw op (CPU and Meta kernels) refuses what the Python
wrapper refuses, with an error naming the argument, and changes nothing when it refuses; what it accepts
matches the twin, and it bumps x's version counter like any in-place op."""
import math

import pytest
import torch

from ebm_ood.sampling import ops, philox

needs_ext = pytest.mark.skipif(ops.backend() != "extension", reason="fused op not built (no compiler)")
ARGS = (0.1, 0.5, -2.0, 2.0)  # step_size, noise_std, clamp_min, clamp_max


def raw(x, g, step=0.1, noise=0.5, lo=-2.0, hi=2.0, seed=3, offset=0):
    torch.ops.ebm_ood.sgld_step_(x, g, step, noise, lo, hi, seed, offset)


def wrapper(x, g, step=0.1, noise=0.5, lo=-2.0, hi=2.0, seed=3, offset=0):
    ops.sgld_step_(x, g, step, noise, lo, hi, seed=seed, offset=offset)


@pytest.fixture(params=["raw", "extension", "twin"])
def call(request, monkeypatch):
    """The op reached three ways: raw, the wrapper over the extension, the wrapper over the twin."""
    if request.param != "twin" and ops.backend() != "extension":
        pytest.skip("fused op not built")
    if request.param == "twin":
        monkeypatch.setitem(ops._STATE, "backend", "twin")
    return raw if request.param == "raw" else wrapper


def assert_refused(call, x, *args, match, **kw):
    before = x.detach().clone()
    with pytest.raises((RuntimeError, ValueError, TypeError), match=match):
        call(x, *args, **kw)
    assert torch.equal(x.detach(), before)  # nothing written


# ---------------------------------------------------------------- aliasing (the kernel's __restrict__)
@pytest.mark.parametrize("views", ["same", "partial", "partial-reversed", "one-element"])
def test_x_and_grad_sharing_memory_are_refused(call, views):
    buf = torch.arange(16, dtype=torch.float32)
    x, g = {"same": (buf, buf), "partial": (buf[:12], buf[4:]), "partial-reversed": (buf[4:], buf[:12]),
            "one-element": (buf[:8], buf[7:15])}[views]
    assert_refused(call, x, g, match="share memory|shares memory")


def test_disjoint_views_of_one_buffer_are_fine(call):
    buf = torch.arange(16, dtype=torch.float64)
    call(buf[:8], buf[8:], seed=5)
    ref = torch.arange(8, dtype=torch.float64)
    ops.sgld_step_twin_(ref, torch.arange(8, 16, dtype=torch.float64), *ARGS, 5, 0)
    torch.testing.assert_close(buf[:8], ref, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- autograd
@pytest.mark.parametrize("case", ["leaf", "non-leaf", "leaf-no-grad-mode", "non-leaf-no-grad-mode"])
def test_x_requiring_grad_is_refused(call, case):
    leaf = torch.zeros(8, requires_grad=True)
    x = leaf if case.startswith("leaf") else leaf * 1.0
    if case.endswith("no-grad-mode"):
        with torch.no_grad():
            assert_refused(call, x, torch.ones(8), match="x|autograd|leaf")
    else:
        assert_refused(call, x, torch.ones(8), match="x|autograd|leaf")


def test_grad_requiring_grad_is_refused_when_grad_mode_is_on(call):
    g = torch.ones(8, requires_grad=True) * 1.0
    assert_refused(call, torch.zeros(8), g, match="grad")
    with torch.no_grad():
        call(torch.zeros(8), g)  # nothing is recorded: fine


def test_version_counter_is_bumped_so_stale_graphs_refuse_backward(call):
    w = torch.ones(6, requires_grad=True)
    x = torch.full((6,), 2.0)
    y = (w * x).sum()  # saves x for w's gradient
    version = x._version
    call(x, torch.ones(6))
    assert x._version > version
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


@needs_ext
def test_inference_tensor_is_refused_outside_inference_mode():
    with torch.inference_mode():
        x = torch.zeros(8)
    for call in (raw, wrapper):
        assert_refused(call, x, torch.ones(8), match="inference")
    with torch.inference_mode():
        raw(x, torch.ones(8))
    assert not torch.equal(x, torch.zeros(8))


# ---------------------------------------------------------------- non-finite scalars
@pytest.mark.parametrize("kw,name", [({"lo": math.nan}, "clamp"), ({"hi": math.nan}, "clamp"),
                                     ({"lo": math.nan, "hi": math.nan}, "clamp"), ({"step": math.nan}, "step_size"),
                                     ({"step": math.inf}, "step_size"), ({"noise": -math.inf}, "noise_std"),
                                     ({"noise": math.nan}, "noise_std"), ({"lo": 1.0, "hi": -1.0}, "clamp_min")])
def test_non_finite_or_inverted_scalars_are_refused(call, kw, name):
    assert_refused(call, torch.zeros(8), torch.ones(8), match=name, **kw)


def test_infinite_clamp_bounds_mean_no_bound(call):
    x = torch.zeros(8)
    call(x, torch.ones(8), lo=-math.inf, hi=math.inf, seed=9)
    ref = ops.sgld_step_twin_(torch.zeros(8), torch.ones(8), 0.1, 0.5, -math.inf, math.inf, 9, 0)
    torch.testing.assert_close(x, ref, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- seeds and offsets: 64-bit words
@pytest.mark.parametrize("seed,offset", [(2**63, 0), (2**64 - 1, 2**63), (0, 2**64 - 1), (2**63 + 12345, 7)])
def test_full_64_bit_seeds_and_offsets_match_the_twin(call, seed, offset):
    x = torch.zeros(9)
    call(x, torch.zeros(9), step=0.0, noise=1.0, lo=-math.inf, hi=math.inf, seed=seed, offset=offset)
    assert torch.equal(x, philox.normal(9, seed, offset))


@pytest.mark.parametrize("bad", [-1, -(2**63), 1.5, True, math.nan])
@pytest.mark.parametrize("name", ["seed", "offset"])
def test_seeds_and_offsets_outside_64_bits_are_refused(call, name, bad):
    assert_refused(call, torch.zeros(8), torch.ones(8), match=name, **{name: bad})


def test_wrapper_names_a_seed_too_large_for_64_bits(monkeypatch):
    monkeypatch.setitem(ops._STATE, "backend", "twin")
    with pytest.raises(ValueError, match=r"seed: expected an integer in \[0, 2\^64\)"):
        ops.sgld_step_(torch.zeros(4), torch.zeros(4), 0.1, 0.1, seed=2**64)


# ---------------------------------------------------------------- the Meta kernel checks like the CPU kernel
def _meta(t):
    return torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device="meta")


BAD_TENSORS = {
    "mixed dtypes": (torch.zeros(8), torch.zeros(8, dtype=torch.float64), "dtype"),
    "integer x": (torch.zeros(8, dtype=torch.int64), torch.zeros(8, dtype=torch.int64), "float32 or float64"),
    "bfloat16 x": (torch.zeros(8, dtype=torch.bfloat16), torch.zeros(8, dtype=torch.bfloat16), "float32 or float64"),
    "shapes": (torch.zeros(8), torch.zeros(4, 2), "shape"),
    "x not contiguous": (torch.zeros(4, 4).t(), torch.zeros(4, 4), "contiguous"),
}


@needs_ext
@pytest.mark.parametrize("case", sorted(BAD_TENSORS))
def test_meta_kernel_refuses_what_the_cpu_kernel_refuses(case):
    x, g, match = BAD_TENSORS[case]
    with pytest.raises(RuntimeError, match=match):
        raw(x.clone(), g)
    with pytest.raises(RuntimeError, match=match):
        raw(_meta(x), _meta(g))


@needs_ext
def test_meta_kernel_refuses_mixed_devices_and_non_finite_scalars():
    with pytest.raises(RuntimeError, match="device|meta"):
        raw(torch.empty(8, device="meta"), torch.zeros(8))
    with pytest.raises(RuntimeError, match="clamp"):
        raw(torch.empty(8, device="meta"), torch.empty(8, device="meta"), lo=math.nan)
    with pytest.raises(RuntimeError, match="seed"):
        raw(torch.empty(8, device="meta"), torch.empty(8, device="meta"), seed=-1)
    raw(torch.empty(8, device="meta"), torch.empty(8, device="meta"))  # valid: accepted


@needs_ext
def test_non_contiguous_grad_is_refused_by_the_op_and_copied_by_the_wrapper():
    g = torch.ones(4, 4).t()
    assert_refused(raw, torch.zeros(4, 4), g, match="grad must be contiguous")
    x = torch.zeros(4, 4)
    wrapper(x, g, seed=4)
    torch.testing.assert_close(x, ops.sgld_step_twin_(torch.zeros(4, 4), g.contiguous(), *ARGS, 4, 0), rtol=0,
                               atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available() or ops.backend() != "extension", reason="needs a GPU")
def test_cuda_kernel_checks_like_the_cpu_kernel():
    buf = torch.arange(16.0, device="cuda")
    assert_refused(raw, buf[:12], buf[4:], match="share memory")
    assert_refused(raw, torch.zeros(8, device="cuda"), torch.ones(8, device="cuda"), match="clamp", lo=math.nan)
    assert_refused(raw, torch.zeros(8, device="cuda"), torch.ones(8), match="device")
    x = torch.zeros(8, device="cuda")
    version = x._version
    raw(x, torch.ones(8, device="cuda"), seed=2**63 + 1)
    assert x._version > version
    ref = ops.sgld_step_twin_(torch.zeros(8), torch.ones(8), *ARGS, 2**63 + 1, 0)
    torch.testing.assert_close(x.cpu(), ref, rtol=0, atol=1e-6)


def test_wrapper_names_sparse_tensors_and_non_numbers(monkeypatch):
    monkeypatch.setitem(ops._STATE, "backend", "twin")
    sparse = torch.zeros(4).to_sparse()
    with pytest.raises(TypeError, match="x: expected a dense tensor"):
        ops.sgld_step_(sparse, torch.zeros(4), 0.1, 0.1)
    with pytest.raises(TypeError, match="grad: expected a dense tensor"):
        ops.sgld_step_(torch.zeros(4), sparse, 0.1, 0.1)
    for name, bad in (("step_size", "fast"), ("noise_std", None), ("clamp_min", "low"), ("clamp_max", [1.0])):
        args = {"step_size": 0.1, "noise_std": 0.1, name: bad}
        with pytest.raises(TypeError, match=f"{name}: expected a number"):
            ops.sgld_step_(torch.zeros(4), torch.zeros(4), **args)


def test_wrapper_takes_seeds_of_any_integer_type(monkeypatch):
    import numpy as np

    monkeypatch.setitem(ops._STATE, "backend", "twin")

    def noise(seed):
        return ops.sgld_step_(torch.zeros(6), torch.zeros(6), 0.0, 1.0, seed=seed, offset=5)

    assert torch.equal(noise(np.uint64(2**63 + 3)), noise(2**63 + 3))
    assert torch.equal(noise(torch.tensor(7)), noise(7)) and torch.equal(noise(np.int32(7)), noise(7))
    for bad in (torch.tensor(1.5), np.float64(7.0), "7"):
        with pytest.raises(ValueError, match="seed: expected an integer"):
            noise(bad)
