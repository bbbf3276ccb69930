"""Scoring time of every post-hoc detector and of HEAT's parts per 10k samples of 512-d features (HEAT Table 12 analog).

Run: ``ebm-ood bench detectors`` or ``python -m ebm_ood.commands.speed.detectors [--repeats 7] [--json]``.

Data: synthetic class clusters, ``z = ReLU(μ_y + ε)`` with 10 classes, 20k training and 10k test
features of dimension 512 (float32, as a backbone returns them), and a nearest-mean linear head
(W, b). Every detector (and HEAT part) is fitted once on the training features; the timed call is one
``score`` of the 10k test features, starting from the features (MSP / MaxLogit include the head's
matmul; ODIN perturbs the head's input, i.e. its cost here is head forward + backward + forward, not
the backbone's as in the paper). Every scorer is timed once per round over ``--repeats`` interleaved rounds
(after one warm-up); reported: the median time, and the ratio to MSP (the cheapest score: one matmul and a
softmax) as the median of per-round ratios with its interquartile range. HEAT's parts: :mod:`ebm_ood.commands.speed.heat_parts`.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ebm_ood.commands.speed import heat_parts
from ebm_ood.commands.speed.timing import count_error, interleaved, ratio_summary, round_times
from ebm_ood.plumbing.threads import set_num_threads
from ebm_ood.posthoc import DICE, KNN, MSP, ODIN, MaxLogit, Mahalanobis, ReAct, SSDPlus, ViM

SUMMARY = "scoring and fitting time of every post-hoc detector and HEAT's parts, with peers"


@dataclass
class BenchConfig:
    n_train: int = 20000  # training features the detectors are fitted on
    n_test: int = 10000  # features scored per timed call
    dim: int = 512  # feature dimension D
    classes: int = 10  # C
    repeats: int = 5  # timed calls per detector (median reported)
    seed: int = 0


def synthetic_features(cfg: BenchConfig):
    """``(z_train (N, D), y_train (N,), z_test (M, D), W (C, D), b (C,))``, float32 features."""
    rng = np.random.default_rng(cfg.seed)
    means = np.maximum(rng.normal(size=(cfg.classes, cfg.dim)), 0) * 2

    def draw(n):                      # in row blocks: float32 out, no full-size float64 temporary
        y = rng.integers(0, cfg.classes, n)
        z = np.empty((n, cfg.dim), dtype=np.float32)
        for i in range(0, n, 8192):
            rows = slice(i, min(n, i + 8192))
            z[rows] = np.maximum(means[y[rows]] + rng.normal(size=(rows.stop - i, cfg.dim)), 0)
        return z, y

    z_train, y_train = draw(cfg.n_train)
    z_test, _ = draw(cfg.n_test)
    w = means / np.linalg.norm(means, axis=1, keepdims=True)
    return z_train, y_train, z_test, w, -0.5 * (w * w).sum(axis=1)


def detector_timers(z_train, y_train, z_test, w, b) -> dict:
    """name → a zero-argument call that scores ``z_test`` with a fitted detector."""
    to_logits = lambda z: z @ w.T.astype(np.float32) + b.astype(np.float32)  # noqa: E731
    head = torch.nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(w)), head.bias.copy_(torch.as_tensor(b))
    timers = {}
    for name, det in [("MSP", MSP()), ("MaxLogit", MaxLogit())]:
        det.fit(to_logits(z_train))
        timers[name] = lambda det=det: det.score(to_logits(z_test))
    odin = ODIN(head, device="cpu", batch_size=len(z_test)).fit(z_train[:10])
    timers["ODIN (head only)"] = lambda: odin.score(z_test)
    fitted = [
        ("Mahalanobis", Mahalanobis(), True), ("SSD+", SSDPlus(), True), ("KNN", KNN(k=50), False),
        ("ViM", ViM(w, b), False), ("DICE", DICE(w, b), False), ("ReAct", ReAct(w, b), False),
    ]
    for name, det, labels in fitted:
        det.fit(z_train, y_train if labels else None)
        timers[name] = lambda det=det: det.score(z_test)
    timers.update(knn_peer_timers(z_train, z_test, k=50))
    return timers


def knn_peer_timers(z_train, z_test, k: int) -> dict:
    """The same k-th-neighbour search by library peers, beside our ``KNN``: scikit-learn's exact brute-force
    ``NearestNeighbors`` and, when installed, faiss ``IndexFlatIP`` (exact inner-product search on the unit
    rows; the k-th distance follows as ``sqrt(2 - 2 cos)``)."""
    from sklearn.neighbors import NearestNeighbors

    from ebm_ood.posthoc.knn import l2_normalize

    unit_train = l2_normalize(z_train)
    nn_index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(unit_train)
    timers = {"KNN peer: sklearn brute": lambda: nn_index.kneighbors(l2_normalize(z_test))[0][:, -1]}
    try:
        import faiss
    except ImportError:
        return timers
    flat = faiss.IndexFlatIP(unit_train.shape[1])
    flat.add(unit_train.astype(np.float32))

    def faiss_knn():
        cos, _ = flat.search(l2_normalize(z_test).astype(np.float32), k)
        return np.sqrt(np.maximum(2.0 - 2.0 * cos[:, -1].astype(np.float64), 0.0))

    timers["KNN peer: faiss IndexFlatIP"] = faiss_knn
    return timers


def gaussian_fit_timers(z_train, y_train, batch_size: int = 8192) -> dict:
    """Fitting the class-conditional Gaussian that Mahalanobis, SSD+ and the GMM prior share: ours, streamed
    in batches of ``batch_size`` (memory O(batch · D + D²)), beside numpy's ``np.cov`` of the class-centred
    features (the whole float64 copy in memory at once)."""
    from ebm_ood.class_gaussian import fit_class_gaussian

    classes = np.unique(y_train)

    def peer():
        z = z_train.astype(np.float64)
        means = np.stack([z[y_train == c].mean(0) for c in classes])
        return means, np.cov((z - means[np.searchsorted(classes, y_train)]).T, bias=True)

    return {"fit: class Gaussian, streamed (ours)": lambda: fit_class_gaussian(z_train, y_train, batch_size=batch_size),
            "fit peer: np.cov": peer}


def _fit_in_fresh_process(cfg: BenchConfig, name: str, threads: int) -> dict:
    """In a spawned process: draw the features, then fit once with ``name``; the wall time and the peak
    resident memory the fit added on top of the features (Linux ``ru_maxrss``)."""
    import resource

    set_num_threads(threads)
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads)
    z_train, y_train, *_ = synthetic_features(cfg)
    fit = gaussian_fit_timers(z_train, y_train)[name]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    fit()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"name": name, "seconds": seconds, "peak_mb": peak / 1024, "added_mb": (peak - before) / 1024,
            "features_mb": z_train.nbytes / 2**20}


def run_fit_memory(cfg: BenchConfig, threads: int) -> list[dict]:
    """``--fit-only``: each Gaussian fit once, in its own fresh process, so that its peak memory is its own."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    rows = []
    for name in ("fit: class Gaussian, streamed (ours)", "fit peer: np.cov"):
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            rows.append(pool.submit(_fit_in_fresh_process, cfg, name, threads).result())
    for r in rows:
        r["ratio_to_peer"] = r["seconds"] / rows[-1]["seconds"]
    return rows


def run_bench(cfg: BenchConfig, log=None) -> dict:
    """``{"config", "torch_threads", "rows": [{"name", "seconds", "ms_per_10k", "ratio_to_msp", "ratio_q1",
    "ratio_q3"}], "fit_rows": [{"name", "seconds", "ratio_to_peer", ...}]}``: every scorer timed in
    ``cfg.repeats`` interleaved rounds (:mod:`ebm_ood.commands.speed.timing`); ratios are medians of per-round ratios."""
    z_train, y_train, z_test, w, b = synthetic_features(cfg)
    timers = detector_timers(z_train, y_train, z_test, w, b)
    timers.update(heat_parts.timers(z_train, y_train, z_test, w, b))
    if log:
        log(f"timing {len(timers)} scorers in {cfg.repeats} interleaved rounds")
    per_10k = 1e3 * 1e4 / cfg.n_test
    return {"config": asdict(cfg), "torch_threads": torch.get_num_threads(),
            "rows": _summarise(interleaved(timers, cfg.repeats, calls=1), "MSP", "ratio_to_msp", per_10k),
            "fit_rows": _summarise(interleaved(gaussian_fit_timers(z_train, y_train), cfg.repeats, calls=1),
                                   "fit peer: np.cov", "ratio_to_peer", per_10k)}


def _summarise(samples: dict, reference: str, key: str, per_10k: float) -> list[dict]:
    rows = []
    for name, per_round in samples.items():
        sec = statistics.median(round_times(per_round))
        ratio = ratio_summary(per_round, samples[reference])
        rows.append({"name": name, "seconds": sec, "ms_per_10k": sec * per_10k, key: ratio["median"],
                     "ratio_q1": ratio["q1"], "ratio_q3": ratio["q3"]})
    return rows


def render_markdown(result: dict) -> str:
    c = result["config"]
    lines = [
        f"Scoring time per 10k samples of {c['dim']}-d features ({c['classes']} classes, {c['n_train']} training "
        f"features; {c['repeats']} interleaved rounds; torch threads: {result['torch_threads']})",
        "",
        "| detector | wall ms per 10k | × MSP [IQR] |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r['name']} | {r['ms_per_10k']:.2f} | {r['ratio_to_msp']:.1f} [{r['ratio_q1']:.1f}-{r['ratio_q3']:.1f}] |"
              for r in result["rows"]]
    lines += ["", f"Fitting the class-conditional Gaussian on the {c['n_train']} x {c['dim']} training features "
              f"({c['repeats']} interleaved rounds)", "", "| fit | wall s | × np.cov [IQR] |", "|---|---:|---:|"]
    lines += [f"| {r['name']} | {r['seconds']:.3f} | {r['ratio_to_peer']:.2f} [{r['ratio_q1']:.2f}-{r['ratio_q3']:.2f}] |"
              for r in result["fit_rows"]]
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    d = BenchConfig()
    p.add_argument("--n-train", type=int, default=d.n_train, help=f"training features (default {d.n_train})")
    p.add_argument("--n-test", type=int, default=d.n_test, help=f"features per timed call (default {d.n_test})")
    p.add_argument("--dim", type=int, default=d.dim, help=f"feature dimension (default {d.dim})")
    p.add_argument("--classes", type=int, default=d.classes, help=f"number of classes (default {d.classes})")
    p.add_argument("--repeats", type=int, default=d.repeats, help=f"timed calls per detector (default {d.repeats})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"seed of the synthetic features (default {d.seed})")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for torch and for numpy/sklearn's BLAS and OpenMP pools (default 1; 0 leaves them as "
                        "they are): on a busy shared machine threads waiting for each other inflate small kernels")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    p.add_argument("--fit-only", action="store_true",
                   help="time only the class-Gaussian fits, once each in a fresh process, with their peak memory "
                        "(e.g. --n-train 200000 --dim 2048)")


def run(args) -> int:
    error = count_error(args, {"n_train": 2, "n_test": 1, "dim": 1, "classes": 2, "repeats": 1, "threads": 0,
                                "seed": 0})
    if error:
        print(error, file=sys.stderr)
        return 2
    if args.threads:
        from threadpoolctl import threadpool_limits  # numpy / scipy / sklearn BLAS and OpenMP pools

        set_num_threads(args.threads)
        threadpool_limits(limits=args.threads)
    cfg = BenchConfig(n_train=args.n_train, n_test=args.n_test, dim=args.dim, classes=args.classes,
                      repeats=args.repeats, seed=args.seed)
    if args.fit_only:
        rows = run_fit_memory(cfg, max(1, args.threads or torch.get_num_threads()))
        lines = [f"Fitting the class-conditional Gaussian on {cfg.n_train} x {cfg.dim} float32 features "
                 f"({rows[0]['features_mb']:.0f} MB), once each in a fresh process", "",
                 "| fit | wall s | × np.cov | peak memory MB | added by the fit MB |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['name']} | {r['seconds']:.2f} | {r['ratio_to_peer']:.2f} | {r['peak_mb']:.0f} | "
                  f"{r['added_mb']:.0f} |" for r in rows]
        print(json.dumps(rows, indent=2) if args.json else "\n".join(lines))
        return 0
    result = run_bench(cfg, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps(result, indent=2) if args.json else render_markdown(result))
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").strip().splitlines()[0])
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
