"""CE on images trains the network it builds in channels-last memory format (a speed setting): the same
function as the default format up to rounding, and an ordinary network once fitted."""
import copy
from dataclasses import replace

import torch
from torch.nn import functional as F

import ebm_ood.methods.ce as ce_module
from ebm_ood.data import get_dataset
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.nn import build_network


def _digits():
    d = get_dataset("digits")
    return d.x_train[:300], d.y_train[:300], d.x_val[:60], d.y_val[:60]


def _config(**overrides):
    cfg = ce_config("quick", "image")
    return replace(cfg, train=replace(cfg.train, steps=6, eval_every=3), **overrides)


def _record_conv_formats(net, seen: list) -> None:
    """Append to ``seen``, for every convolution output of ``net``, whether it is channels-last."""
    def hook(_module, _inputs, out):
        seen.append(out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous())

    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(hook)


def _fit_recording(monkeypatch, config, seen):
    build = ce_module.build_network

    def build_and_record(*args, **kwargs):
        net = build(*args, **kwargs)
        _record_conv_formats(net, seen)
        return net

    monkeypatch.setattr(ce_module, "build_network", build_and_record)
    x, y, xv, yv = _digits()
    return CEClassifier(config, seed=0).fit(x, y, validation=(xv, yv)), xv


def test_trains_in_channels_last_and_ends_in_the_default_format(monkeypatch):
    seen = []
    det, xv = _fit_recording(monkeypatch, _config(), seen)
    assert seen and all(seen)                     # every convolution ran channels-last while training
    assert all(p.is_contiguous() for p in det.net_.parameters())
    seen.clear()
    det.score(xv)                                  # the fitted network is an ordinary one
    assert seen and not any(seen)


def test_the_switch_trains_in_the_default_format(monkeypatch):
    seen = []
    _fit_recording(monkeypatch, _config(channels_last=False), seen)
    assert seen and not any(seen)


def test_a_network_you_pass_keeps_its_format():
    x, y, xv, yv = _digits()
    torch.manual_seed(0)
    net, seen = build_network((1, 8, 8), 10, widen=1), []
    _record_conv_formats(net, seen)
    CEClassifier(_config(), seed=0, net=net).fit(x, y, validation=(xv, yv))
    assert seen and not any(seen)


def test_either_format_gives_the_same_loss_and_gradients_up_to_rounding():
    """Reference: the cross-entropy and its gradients in the default format (autograd) are the independent
    computation; in channels-last format they agree with them to float32 rounding (not bit for bit: the
    convolutions sum in another order)."""
    x, y, _, _ = _digits()
    torch.manual_seed(0)
    net = build_network((1, 8, 8), 10, widen=2)
    xb, yb = torch.as_tensor(x[:64]), torch.as_tensor(y[:64], dtype=torch.long)
    results = []
    for channels_last in (False, True):
        n = copy.deepcopy(net)
        if channels_last:
            n.to(memory_format=torch.channels_last)
        loss = F.cross_entropy(n(xb), yb)
        grads = torch.autograd.grad(loss, list(n.parameters()))
        results.append((loss, [g.contiguous() for g in grads]))
    (loss0, grads0), (loss1, grads1) = results
    assert torch.allclose(loss0, loss1, rtol=1e-5)
    for (name, _), g0, g1 in zip(net.named_parameters(), grads0, grads1):
        scale = g0.abs().max()
        assert scale > 0, name
        assert torch.allclose(g0, g1, rtol=1e-4, atol=1e-4 * float(scale)), name
