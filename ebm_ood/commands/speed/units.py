"""What the benchmark's long work units cost on image data, piece by piece, and what changing the settings
would save: the image CE classifier's training step and validation, the Backbone's feature extraction and
the HEAT-GMM fit.

Run: ``ebm-ood bench units [--dataset digits|PATH | --synthetic N] [--rounds 5] [--heat-steps 10] [--profile] [--json]``.

Timed calls (each exactly what the benchmark's default preset runs, on ``--dataset``'s images):

* ``CE step``: one training step of :class:`~ebm_ood.methods.ce.CEClassifier` (SmallWRN widen 2, batch 64:
  forward, cross-entropy, backward, Adam with weight decay; the network in ``torch.channels_last`` memory
  format, ``CEConfig.channels_last``), the same step in the default (contiguous) memory format
  (``channels_last=False``), and at batch 128 (compared per sample), a setting that changes the training
  and is therefore measured only;
* ``CE validation``: the validation accuracy on the ID validation split (every ``eval_every`` steps), on the
  network as it trains, at :data:`~ebm_ood.methods.ce.VALIDATION_BATCH` images per pass and at 1,024, with
  whether the two give bit-identical logits;
* ``features``: a fresh :class:`~ebm_ood.backbone.Backbone` extracting the training split's features
  (once per seed in the benchmark: every post-hoc and HEAT method of the seed reuses them), at Backbone's
  default batch (512) and at the benchmark's :data:`~ebm_ood.commands.benchmark.registry.FEATURE_BATCH`, with
  whether the two give bit-identical features;
* ``HEAT-GMM fit``: :class:`~ebm_ood.heat.hybrid.HEATDetector` with ``GMMPrior`` on those features for
  ``--heat-steps`` steps of the default preset (per step: 20 SGLD steps on a batch of 128 negatives), and
  ``GMM prior fit``, the same detector's prior alone (``residual=False``).

Per unit = the preset's step count times the per-step time (CE: ``steps`` and ``steps / eval_every``
validations; HEAT-GMM: the prior fit once plus ``steps`` residual steps); early stopping can end a unit sooner. Each variant's column
``same numbers`` says whether one step from the same weights and batch gives bit-identical weights.
``--seeds S`` also trains the default preset's CE classifier to the end (early stopping included) for each
seed, once in each memory format, and reports its ID validation accuracy, steps and CPU time: the cost of
channels-last at equal accuracy. ``--profile`` prints torch's profiler table (the ops by self CPU time) of three default CE steps and of a
HEAT-GMM fit of ``--heat-steps`` steps. Timing: :mod:`ebm_ood.commands.speed.timing` (interleaved rounds, medians).
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from ebm_ood.commands.flags import add_threads_argument, apply_threads, parse_seeds
from ebm_ood.commands.speed.timing import count_error, interleaved, ratio_summary, round_times

TRAINED_STEPS = 100  # CE steps trained before timing (features for HEAT's prior)
SUMMARY = "image CE training step, feature extraction and HEAT-GMM fit: cost per step and per unit"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", default="digits", help="a built-in image dataset or the path of your image data "
                                                      "folder (default: digits)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="instead of --dataset: N synthetic 1x28x28 training images of 10 classes (and N/9 "
                        "validation images; seeded class patterns plus noise, as in a small MNIST-sized folder)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (default 5)")
    p.add_argument("--calls", type=int, default=3, help="calls per implementation per round (default 3)")
    p.add_argument("--heat-steps", type=int, default=10, help="training steps of the timed HEAT-GMM fit (default 10)")
    p.add_argument("--profile", action="store_true", help="also print torch's profiler table of the CE step and "
                                                          "the HEAT fit")
    p.add_argument("--seeds", type=parse_seeds, metavar="S",
                   help="also train the default CE classifier to the end in each memory format for these seeds "
                        "(a count or a comma list) and compare ID validation accuracy and time per step")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    add_threads_argument(p)


class _CEStep:
    """One CE training step as :func:`ebm_ood.training.train` runs it for CEClassifier, on a fixed batch, on a
    copy of ``net`` (in the memory format ``net`` has)."""

    def __init__(self, net, config, x: torch.Tensor, y: torch.Tensor):
        self.net = copy.deepcopy(net)
        self.x, self.y = x, y
        t = config.train
        self.params = list(self.net.parameters())
        self.opt = torch.optim.Adam(self.params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay)

    def __call__(self) -> float:
        self.net.train()
        loss = F.cross_entropy(self.net(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)
        self.opt.step()
        return float(loss.detach())


def _same_features(a, b) -> bool:
    """Whether two :class:`~ebm_ood.backbone.Features` hold bit-identical arrays."""
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("z", "z_std", "logits"))


@torch.no_grad()
def _same_logits(net, x: torch.Tensor, a: int, b: int) -> bool:
    """Whether ``net`` gives bit-identical logits on ``x`` evaluated ``a`` and ``b`` samples per pass."""
    net.eval()
    return torch.equal(torch.cat([net(c) for c in x.split(a)]), torch.cat([net(c) for c in x.split(b)]))


def _same_after_one_step(a: _CEStep, b: _CEStep) -> bool:
    a(), b()
    return all(torch.equal(p, q.contiguous()) for p, q in zip(a.net.state_dict().values(), b.net.state_dict().values()))


def synthetic_images(n: int, size: int = 28, classes: int = 10, seed: int = 0):
    """A dataset-like object with ``x_train`` (n, 1, size, size) in [-1, 1], ``y_train`` (n,), and ``n // 9``
    validation images: one fixed random pattern per class, 60 % pattern and 40 % uniform noise."""
    from types import SimpleNamespace

    rng = np.random.default_rng(seed)
    patterns = rng.uniform(-1, 1, size=(classes, 1, size, size))

    def split(m):
        y = np.arange(m) % classes
        x = 0.6 * patterns[y] + 0.4 * rng.uniform(-1, 1, size=(m, 1, size, size))
        return x.astype(np.float32), y.astype(np.int64)

    (xt, yt), (xv, yv) = split(n), split(max(classes, n // 9))
    return SimpleNamespace(name=f"synthetic-{n}x{size}x{size}", kind="image", x_train=xt, y_train=yt, x_val=xv, y_val=yv)


def setup(dataset, heat_steps: int) -> tuple[dict, dict, dict, dict]:
    """``(calls, per_sample, per_unit, same)``: name → zero-argument call; name → samples per call (the
    CE steps); name → calls per unit of the default preset; variant → whether one step from the same
    weights gives bit-identical weights to the default step."""
    from dataclasses import replace

    from ebm_ood.backbone import Backbone
    from ebm_ood.commands.benchmark.registry import FEATURE_BATCH
    from ebm_ood.heat.hybrid import HEATDetector, heat_config
    from ebm_ood.heat.priors import GMMPrior
    from ebm_ood.methods.ce import VALIDATION_BATCH, CEClassifier, ce_config, classification_accuracy

    d = _image_dataset(dataset)
    cfg = ce_config("default", "image", d.name)
    # the default preset's network trained for TRAINED_STEPS steps, so that HEAT's prior sees a trained
    # classifier's features (a step's cost does not depend on the weights)
    short = replace(cfg, train=replace(cfg.train, steps=TRAINED_STEPS, eval_every=TRAINED_STEPS, progress=False))
    net = CEClassifier(short, seed=0).fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val)).net_
    x, y = torch.as_tensor(d.x_train, dtype=torch.float32), torch.as_tensor(d.y_train, dtype=torch.long)
    xv, yv = torch.as_tensor(d.x_val, dtype=torch.float32), torch.as_tensor(d.y_val, dtype=torch.long)
    bs = cfg.train.batch_size
    training_net = copy.deepcopy(net)      # the network in the format CEClassifier trains and validates it in
    if cfg.channels_last:
        training_net.to(memory_format=torch.channels_last)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    b1, b2 = idx[:bs], idx[:2 * bs]
    calls = {
        "CE step": _CEStep(training_net, cfg, x[b1], y[b1]),
        "CE step, contiguous": _CEStep(net, cfg, x[b1], y[b1]),
        f"CE step, batch {2 * bs}": _CEStep(training_net, cfg, x[b2], y[b2]),
        "CE validation": lambda: classification_accuracy(training_net, xv, yv),
        "CE validation, batch 1024": lambda: classification_accuracy(training_net, xv, yv, batch_size=1024),
        "features (train split)": lambda: Backbone(net).extract(d.x_train),
        f"features (train split), batch {FEATURE_BATCH}": lambda: Backbone(net, batch_size=FEATURE_BATCH).extract(d.x_train),
    }
    features, features_small = Backbone(net).extract(d.x_train), Backbone(net, batch_size=FEATURE_BATCH).extract(d.x_train)
    z = features.z
    hcfg = heat_config("default")
    hcfg = replace(hcfg, train=replace(hcfg.train, steps=heat_steps, eval_every=heat_steps, progress=False))
    calls["GMM prior fit"] = lambda: HEATDetector(GMMPrior(), hcfg, residual=False).fit(z, d.y_train)
    calls["HEAT-GMM fit"] = lambda: HEATDetector(GMMPrior(), hcfg).fit(z, d.y_train)
    per_sample = {"CE step": bs, "CE step, contiguous": bs, f"CE step, batch {2 * bs}": 2 * bs}
    steps, heat_default = cfg.train.steps, heat_config("default").train.steps
    per_unit = {"CE step": steps, "CE step, contiguous": steps, f"CE step, batch {2 * bs}": steps / 2,
                "CE validation": steps // cfg.train.eval_every, "CE validation, batch 1024": steps // cfg.train.eval_every,
                "features (train split)": 1,
                f"features (train split), batch {FEATURE_BATCH}": 1,
                "GMM prior fit": 1, "HEAT-GMM fit": heat_default / heat_steps}
    same = {"CE step, contiguous": _same_after_one_step(_CEStep(training_net, cfg, x[b1], y[b1]),
                                                        _CEStep(net, cfg, x[b1], y[b1])),
            f"CE step, batch {2 * bs}": False,
            "CE validation, batch 1024": _same_logits(training_net, xv, VALIDATION_BATCH, 1024),
            f"features (train split), batch {FEATURE_BATCH}": _same_features(features, features_small)}
    return calls, per_sample, per_unit, same


def _image_dataset(dataset):
    from ebm_ood.data import get_dataset

    d = get_dataset(dataset) if isinstance(dataset, str) else dataset
    if d.kind != "image":
        raise SystemExit(f"error: --dataset {dataset}: expected image data (N, C, H, W), got {d.kind} data")
    return d


def accuracy_rows(dataset, seeds: list[int]) -> list[dict]:
    """Per seed, then per memory format (channels-last, contiguous): the default preset's CEClassifier
    trained to the end on ``dataset``, its ID validation accuracy (the model selection's best), the steps
    it ran before early stopping, and its CPU seconds."""
    from dataclasses import replace

    from ebm_ood.methods.ce import CEClassifier, ce_config

    d = _image_dataset(dataset)
    cfg = ce_config("default", "image", d.name)
    cfg = replace(cfg, train=replace(cfg.train, progress=False))
    rows = []
    for seed in seeds:
        for channels_last in (True, False):
            t0 = time.process_time()
            det = CEClassifier(replace(cfg, channels_last=channels_last), seed=seed)
            det.fit(d.x_train, d.y_train, validation=(d.x_val, d.y_val))
            cpu = time.process_time() - t0
            rows.append({"seed": seed, "format": "channels-last" if channels_last else "contiguous",
                         "val_accuracy": det.val_accuracy_, "steps": det.history_.steps_done, "cpu_s": cpu,
                         "ms_per_step": 1e3 * cpu / max(det.history_.steps_done, 1)})
    return rows


def accuracy_markdown(rows: list[dict]) -> str:
    out = ["| seed | memory format | ID validation accuracy (%) | steps run | CPU s | CPU ms per step |",
           "|---|---|---|---|---|---|"]
    out += [f"| {r['seed']} | {r['format']} | {100 * r['val_accuracy']:.2f} | {r['steps']} | {r['cpu_s']:.1f} | "
            f"{r['ms_per_step']:.1f} |" for r in rows]
    mean = {f: statistics.mean(r["val_accuracy"] for r in rows if r["format"] == f) for f in ("channels-last", "contiguous")}
    per_step = [a["ms_per_step"] / b["ms_per_step"] for a, b in zip(rows[::2], rows[1::2])]
    out += ["", f"Mean ID validation accuracy: channels-last {100 * mean['channels-last']:.2f} %, contiguous "
                f"{100 * mean['contiguous']:.2f} %; CPU time per step, channels-last / contiguous: median over seeds "
                f"{statistics.median(per_step):.2f}x."]
    return "\n".join(out)


def profile(calls: dict) -> str:
    """torch's profiler table (top 12 ops by self CPU time) of three CE steps and one HEAT-GMM fit."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    out = []
    for name, reps in (("CE step", 3), ("HEAT-GMM fit", 1)):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(reps):
                calls[name]()
        out += [f"### {name} x{reps}", "", "```",
                prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12), "```", ""]
    return "\n".join(out)


def run(args) -> int:
    error = count_error(args, {"rounds": 2, "calls": 1, "heat_steps": 1})
    if error:
        raise SystemExit(error)
    if args.synthetic is not None and args.synthetic < 10:
        raise SystemExit(f"error: --synthetic: expected at least 10 images (one per class), got {args.synthetic}")
    data = synthetic_images(args.synthetic) if args.synthetic is not None else args.dataset
    label = data.name if args.synthetic is not None else args.dataset
    apply_threads(args.threads)
    from ebm_ood.plumbing.threads import num_threads

    with num_threads(torch.get_num_threads()):
        calls, per_sample, per_unit, same = setup(data, args.heat_steps)
        samples = interleaved(calls, args.rounds, args.calls)
        prof = profile(calls) if args.profile else ""
        accuracy = accuracy_rows(data, args.seeds) if args.seeds else []
    rows = []
    base = samples["CE step"]
    median = {name: statistics.median(round_times(r)) for name, r in samples.items()}
    for name, per_round in samples.items():
        t = median[name]
        unit = t * per_unit[name]
        if name == "HEAT-GMM fit":  # the prior once, the residual's steps scaled to the preset's
            unit = median["GMM prior fit"] + (t - median["GMM prior fit"]) * per_unit[name]
        row = {"call": name, "ms": 1e3 * t, "unit_s": unit}
        if name in per_sample:
            row["ms_per_sample"] = 1e3 * t / per_sample[name]
            scaled = [[c / per_sample[name] for c in r] for r in per_round]
            row["vs_default"] = ratio_summary(scaled, [[c / per_sample["CE step"] for c in r] for r in base])
            row["same_numbers"] = same.get(name, True)
        elif name in same:
            row["same_numbers"] = same[name]
        rows.append(row)
    if args.json:
        print(json.dumps({"dataset": label, "threads": torch.get_num_threads(), "rounds": args.rounds,
                          "rows": rows, "accuracy": accuracy}, indent=2))
    else:
        print(f"# Unit costs on {label} (torch threads: {torch.get_num_threads()}; {args.rounds} interleaved "
              "rounds, medians)\n")
        print("| call | ms per call | ms per sample | per sample vs default [IQR] | same numbers | s per unit (default preset) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            vs = r.get("vs_default")
            ratio = f"{vs['median']:.2f}x [{vs['q1']:.2f}-{vs['q3']:.2f}]" if vs else "-"
            same_txt = "-" if "same_numbers" not in r else ("yes" if r["same_numbers"] else "no")
            print(f"| {r['call']} | {r['ms']:.1f} | {r.get('ms_per_sample', float('nan')):.2f} | {ratio} | {same_txt} "
                  f"| {r['unit_s']:.1f} |".replace("| nan |", "| - |"))
        if accuracy:
            print(f"\n## The default CE classifier trained to the end in each memory format ({label})\n")
            print(accuracy_markdown(accuracy))
        if prof:
            print("\n" + prof)
    return 0
