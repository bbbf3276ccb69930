"""The shared trainer: divergence guard, model selection, warm-up, resume equals an uninterrupted run."""
import math

import pytest
import torch
from torch import nn

from ebm_ood.plumbing.errors import CheckpointError, DivergenceError
from ebm_ood.training import TrainConfig, batched_mean, train
from ebm_ood.presets import check_preset


def _regression(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 3, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.3
    return x, y


def _step(net):
    def step(xb, yb, _):
        loss = ((net(xb).squeeze(1) - yb) ** 2).mean()
        return loss, {"mse": loss.item()}
    return step


def test_trainer_fits_least_squares():
    torch.manual_seed(0)
    x, y = _regression()
    net = nn.Linear(3, 1)
    train({"net": net}, _step(net), x, y, TrainConfig(steps=600, lr=0.05, progress=False), name="ls")
    w_ls = torch.linalg.lstsq(torch.cat([x, torch.ones(256, 1)], 1), y[:, None]).solution.squeeze()
    assert torch.allclose(torch.cat([net.weight.squeeze(), net.bias]), w_ls, atol=1e-2)


def test_divergence_guard_names_step_and_restores_weights():
    torch.manual_seed(0)
    x, y = _regression()
    net = nn.Linear(3, 1)

    def step(xb, yb, s):
        loss = ((net(xb).squeeze(1) - yb) ** 2).mean()
        if s == 25:
            loss = loss * float("nan")
        return loss, {"e_pos": 1.0}

    cfg = TrainConfig(steps=50, lr=0.01, eval_every=10, progress=False)
    with pytest.raises(DivergenceError, match="step 25") as info:
        train({"net": net}, step, x, y, cfg, name="toy")
    assert info.value.step == 25 and math.isfinite(info.value.last_finite["loss_main"])
    assert all(torch.isfinite(p).all() for p in net.parameters())
    # weights equal the snapshot taken at step 20 (the last validation before the failure)
    torch.manual_seed(0)
    ref = nn.Linear(3, 1)
    train({"net": ref}, _step(ref), x, y, TrainConfig(steps=20, lr=0.01, eval_every=10, progress=False), name="ref")
    assert torch.allclose(ref.weight, net.weight) and torch.allclose(ref.bias, net.bias)


def test_energy_bound_guard():
    net = nn.Linear(3, 1)
    x, y = _regression()
    step = lambda xb, yb, s: (net(xb).mean(), {"e_pos": 1e9})
    with pytest.raises(DivergenceError, match="e_pos"):
        train({"net": net}, step, x, y, TrainConfig(steps=5, progress=False), name="toy")


def test_model_selection_keeps_best_validation():
    torch.manual_seed(0)
    x, y = _regression()
    net = nn.Linear(3, 1)
    values = iter([1.0, 5.0, 2.0, 3.0])
    seen = []

    def validate():
        seen.append(net.weight.detach().clone())
        return next(values)

    hist = train({"net": net}, _step(net), x, y, TrainConfig(steps=40, lr=0.01, eval_every=10, progress=False),
                 name="sel", validate=validate)
    assert hist.best_step == 20 and torch.equal(net.weight, seen[1])


def test_warmup_is_linear():
    # Adam's update with a constant gradient direction has magnitude lr_s (bias-corrected), so the
    # weight changes reveal the schedule lr_s = lr · min(1, (s + 1) / warmup)
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(100.0)
    ws = []

    def step(xb, yb, s):
        ws.append(net.weight.item())
        return net(xb).mean(), {}  # gradient 1 at every step

    train({"net": net}, step, torch.ones(8, 1), None, TrainConfig(steps=7, lr=1.0, warmup=4, progress=False), name="warm")
    deltas = [ws[i] - ws[i + 1] for i in range(len(ws) - 1)]
    assert deltas == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0], abs=1e-5)


def test_resume_equals_uninterrupted(tmp_path):
    x, y = _regression()

    def run(steps, path):
        torch.manual_seed(0)
        net = nn.Linear(3, 1)
        torch.manual_seed(1)

        def step(xb, yb, _):  # uses the global RNG (like SGLD noise) so RNG state must be restored
            noise = 0.1 * torch.randn_like(yb)
            loss = ((net(xb).squeeze(1) - yb - noise) ** 2).mean()
            return loss, {}

        cfg = TrainConfig(steps=steps, lr=0.05, eval_every=10, warmup=5, progress=False, checkpoint_path=path)
        train({"net": net}, step, x, y, cfg, name="r")
        return net

    full = run(40, None)
    ck = str(tmp_path / "ck.pt")
    run(20, ck)  # "interrupted" after 20 steps, checkpoint written at step 20
    resumed = run(40, ck)
    assert torch.equal(full.weight, resumed.weight) and torch.equal(full.bias, resumed.bias)


def test_early_stopping_after_patience_validations_without_gain():
    torch.manual_seed(0)
    x, y = _regression()
    net = nn.Linear(3, 1)
    values = iter([1.0, 3.0, 2.0, 2.5, 9.0])  # best at step 20; steps 30 and 40 bring no gain -> stop at 40
    seen = []

    def validate():
        seen.append(net.weight.detach().clone())
        return next(values)

    cfg = TrainConfig(steps=100, lr=0.01, eval_every=10, patience=2, progress=False)
    hist = train({"net": net}, _step(net), x, y, cfg, name="es", validate=validate)
    assert hist.stopped_early and hist.steps_done == 40 and len(seen) == 4
    assert hist.best_step == 20 and hist.best_value == 3.0 and torch.equal(net.weight, seen[1])
    assert [s for s, _ in hist.logs] == [10, 20, 30, 40]
    other = nn.Linear(3, 1)
    full = train({"net": other}, _step(other), x, y, TrainConfig(steps=25, eval_every=10, progress=False), name="n")
    assert not full.stopped_early and full.steps_done == 25 and [s for s, _ in full.logs] == [10, 20, 25]


def test_each_loss_updates_only_its_own_optimizer_group():
    # L_a = a·b trains only a, L_b = -a·b only b. Adam's first step moves a parameter by lr·sign(gradient):
    # ∂L_a/∂a = b > 0 and ∂L_b/∂b = -a < 0. Summing the losses into both would give zero gradients.
    a, b = nn.Linear(1, 1, bias=False), nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        a.weight.fill_(2.0), b.weight.fill_(3.0)

    def step(xb, yb, s):
        prod = (a.weight * b.weight).sum()
        return {"a": prod, "b": -prod}, {}

    train({"a": a, "b": b}, step, torch.zeros(4, 1), None, TrainConfig(steps=1, lr=0.1, progress=False, lrs={"b": 0.2}),
          name="groups", groups={"a": ["a"], "b": ["b"]})
    assert a.weight.item() == pytest.approx(1.9, abs=1e-6) and b.weight.item() == pytest.approx(3.2, abs=1e-6)


def test_bad_configs_and_inputs_are_named():
    x, y = _regression()
    net = nn.Linear(3, 1)
    for bad, name in [({"eval_every": 0}, "eval_every"), ({"batch_size": 0}, "batch_size"), ({"steps": -1}, "steps"),
                      ({"lr": 0.0}, "lr"), ({"patience": 0}, "patience"), ({"lrs": {"gen": 1e-3}}, "lrs")]:
        with pytest.raises(ValueError, match=name):
            train({"net": net}, _step(net), x, y, TrainConfig(progress=False, **bad), name="bad")
    with pytest.raises(ValueError, match="y: expected 256 labels"):
        train({"net": net}, _step(net), x, y[:-1], TrainConfig(steps=1, progress=False), name="bad")
    with pytest.raises(ValueError, match="groups"):
        train({"net": net}, _step(net), x, y, TrainConfig(steps=1, progress=False), name="bad", groups={"main": ["nte"]})
    with pytest.raises(ValueError, match="step_fn"):
        train({"net": net}, lambda xb, yb, s: ({"gen": net(xb).mean()}, {}), x, y, TrainConfig(steps=1, progress=False),
              name="bad")


def test_batched_mean_equals_the_mean_over_all_samples():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(103, 4, generator=g), torch.randn(103, generator=g)
    fn = lambda xb, wb: (xb ** 2).sum(1) * wb
    for bs in (1, 10, 103, 500):
        assert batched_mean(fn, x, w, batch_size=bs) == pytest.approx(float(((x ** 2).sum(1) * w).double().mean()), abs=1e-6)
    with pytest.raises(ValueError, match="at least one sample"):
        batched_mean(fn, x[:0], w[:0], batch_size=4)


def test_check_preset_names_the_argument():
    check_preset("quick", "tabular")
    check_preset("full")
    with pytest.raises(ValueError, match="preset"):
        check_preset("huge", "image")
    with pytest.raises(ValueError, match="kind"):
        check_preset("quick", "text")


@pytest.mark.parametrize("eval_every", [1, 3])
@pytest.mark.parametrize("lr", [1e9, 1e20, 1e30, 1e37])
def test_parameter_guard_never_restores_exploded_weights(lr, eval_every):
    # Adam's first step moves every weight by about lr: the losses of that step are still finite, so only a
    # check of the parameters stops the exploded weights from becoming the snapshot that is restored.
    torch.manual_seed(0)
    x, y = _regression()
    net = nn.Linear(3, 1)
    w0, b0 = net.weight.detach().clone(), net.bias.detach().clone()
    with pytest.raises(DivergenceError, match="parameter net.(weight|bias)") as info:
        train({"net": net}, _step(net), x, y, TrainConfig(steps=20, lr=lr, eval_every=eval_every, progress=False),
              name="big-lr")
    assert info.value.step == 0
    assert torch.equal(net.weight, w0) and torch.equal(net.bias, b0)


@pytest.mark.parametrize("bad", [{"lr": 3e38}, {"lr": 1e38}, {"lr": float(torch.finfo(torch.float32).max)},
                                 {"lrs": {"main": 3e38}}])
def test_learning_rates_that_overflow_adam_are_named(bad):
    x, y = _regression()
    net = nn.Linear(3, 1)
    w0 = net.weight.detach().clone()
    name = "lrs" if "lrs" in bad else "lr"
    with pytest.raises(ValueError, match=rf"^{name}.*too large"):
        train({"net": net}, _step(net), x, y, TrainConfig(steps=3, progress=False, **bad), name="huge")
    assert torch.equal(net.weight, w0)


def _ckpt_run(path, steps=20, seed=0, x=None, y=None, name="r", module="net", width=1, identity=None, **cfg):
    torch.manual_seed(0)
    xr, yr = _regression()
    x = xr if x is None else x
    y = yr if y is None else y
    net = nn.Linear(3, width)

    def step(xb, yb, _):
        loss = ((net(xb).mean(1) - yb) ** 2).mean()
        return loss, {}

    config = TrainConfig(steps=steps, lr=cfg.pop("lr", 0.05), eval_every=10, seed=seed, progress=False,
                         checkpoint_path=str(path), **cfg)
    return train({module: net}, step, x, y, config, name=name, identity=identity), net


@pytest.mark.parametrize("change, differs", [
    ({"seed": 1}, "seed"),
    ({"x": _regression(5)[0]}, "data"),
    ({"y": _regression()[1] + 1e-3}, "data"),
    ({"x": _regression()[0][:200], "y": _regression()[1][:200]}, "data"),
    ({"lr": 0.01}, "lr"),
    ({"batch_size": 32}, "batch_size"),
    ({"warmup": 5}, "warmup"),
    ({"name": "other"}, "method"),
    ({"identity": {"gamma": 2.0}}, "gamma"),
    ({"module": "model"}, "modules"),
    ({"width": 2}, "modules"),
])
def test_resuming_another_runs_checkpoint_is_refused_naming_the_difference(tmp_path, change, differs):
    path = tmp_path / "ck.pt"
    _ckpt_run(path, identity={"gamma": 1.0} if "identity" in change else None)
    before = path.read_bytes()
    with pytest.raises(CheckpointError, match=f"belongs to another run.*{differs}"):
        _ckpt_run(path, steps=40, **change)
    assert path.read_bytes() == before  # the refused run wrote nothing


def test_checkpoint_past_the_step_budget_is_refused_and_equal_budget_reports_its_steps(tmp_path):
    path = tmp_path / "ck.pt"
    _ckpt_run(path, steps=30)
    for fewer in (0, 10, 29):
        with pytest.raises(CheckpointError, match=f"already at step 30, beyond steps={fewer}"):
            _ckpt_run(path, steps=fewer)
    hist, _ = _ckpt_run(path, steps=30)
    assert hist.steps_done == 30 and [s for s, _ in hist.logs] == [10, 20, 30]


def test_checkpoint_with_renamed_or_missing_entries_names_the_file(tmp_path):
    from ebm_ood.plumbing.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "ck.pt"
    _ckpt_run(path)
    good = load_checkpoint(path)
    for broken in ({**good, "modules": {"model": good["modules"]["net"]}},
                   {k: v for k, v in good.items() if k != "optimizers"},
                   {k: v for k, v in good.items() if k != "batch_rng"},
                   {**good, "modules": {"net": {"weight": torch.zeros(5, 5)}}},
                   {k: v for k, v in good.items() if k != "identity"}):
        save_checkpoint(broken, path)
        with pytest.raises(CheckpointError, match="ck.pt"):
            _ckpt_run(path, steps=40)
    hist, net = _ckpt_run(tmp_path / "fresh.pt", steps=0)  # nothing trained: the initial weights
    for broken in ({k: v for k, v in good.items() if k != "optimizers"}, {k: v for k, v in good.items() if k != "logs"}):
        save_checkpoint(broken, path)
        torch.manual_seed(0)
        other = nn.Linear(3, 1)
        with pytest.raises(CheckpointError, match="does not fit"):
            train({"net": other}, lambda xb, yb, s: (other(xb).sum(), {}), *_regression(),
                  TrainConfig(steps=40, lr=0.05, eval_every=10, progress=False, checkpoint_path=str(path)), name="r")
        assert torch.equal(other.weight, net.weight) and torch.equal(other.bias, net.bias)  # left as passed in
