"""ebm_ood.plumbing.threads: the thread count torch runs with inside Detector.fit / Detector.score, observed from
inside a detector, restored afterwards, and overridden by every explicit choice."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ebm_ood.plumbing import threads
from ebm_ood.detector import Detector
from ebm_ood.methods.ce import CEClassifier, ce_config
from ebm_ood.posthoc import Mahalanobis
from ebm_ood.commands.speed import thread_scaling as bench
from ebm_ood.training import TrainConfig

DEFAULT = 3     # torch's "default" count in these tests (any value other than 1 makes the policy visible)


class Probe(Detector):
    """Records torch's thread count inside _fit and _score; ``inner`` is fitted from inside _fit."""

    name = "probe"

    def __init__(self, inner=None, fail=False):
        super().__init__()
        self.inner, self.fail, self.seen = inner, fail, {}

    def _fit(self, x, y):
        self.seen["fit"] = torch.get_num_threads()
        if self.inner is not None:
            self.inner.fit(x)
            self.seen["after inner fit"] = torch.get_num_threads()
        if self.fail:
            raise RuntimeError("probe failed")

    def _score(self, x):
        self.seen["score"] = torch.get_num_threads()
        return x.sum(1)


@pytest.fixture
def at_default(monkeypatch):
    """torch at its (patched) default count, no thread environment variables, no explicit setting."""
    for var in (threads.ENV_VAR, "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(threads, "torch_default_threads", lambda: DEFAULT)
    monkeypatch.setattr(threads, "_chosen", False)          # restored, whatever it was, after the test
    before = torch.get_num_threads()
    torch.set_num_threads(DEFAULT)
    yield
    torch.set_num_threads(before)


X = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)


def test_fit_and_score_run_on_one_thread_and_restore_torch(at_default):
    p = Probe()
    p.fit(X)
    assert p.seen["fit"] == threads.DEFAULT_THREADS == 1
    assert torch.get_num_threads() == DEFAULT
    p.score(X)
    assert p.seen["score"] == 1 and torch.get_num_threads() == DEFAULT
    assert threads.get_num_threads() == 1


def test_nested_calls_decide_once_and_errors_restore(at_default):
    inner = Probe()
    outer = Probe(inner=inner)
    outer.fit(X)
    assert inner.seen["fit"] == 1 and outer.seen["after inner fit"] == 1
    assert torch.get_num_threads() == DEFAULT
    with pytest.raises(RuntimeError, match="probe failed"):
        Probe(fail=True).fit(X)
    assert torch.get_num_threads() == DEFAULT


def test_an_explicit_choice_is_kept_even_at_torchs_default(at_default, monkeypatch):
    threads.set_num_threads(DEFAULT)         # the same count as torch's default, but chosen
    assert torch.get_num_threads() == DEFAULT
    assert Probe().fit(X).seen["fit"] == DEFAULT
    monkeypatch.setenv(threads.ENV_VAR, "2")  # a choice in code wins over the environment
    assert Probe().fit(X).seen["fit"] == DEFAULT
    torch.set_num_threads(2)                 # the latest torch call is the caller's choice
    assert Probe().fit(X).seen["fit"] == 2
    monkeypatch.delenv(threads.ENV_VAR)
    torch.set_num_threads(DEFAULT)
    threads.set_num_threads(None)            # back to the automatic rules
    assert Probe().fit(X).seen["fit"] == 1
    with threads.num_threads(4):
        assert Probe().fit(X).seen["fit"] == 4
    assert Probe().fit(X).seen["fit"] == 1 and torch.get_num_threads() == DEFAULT


def test_environment_variable_wins_over_the_default(at_default, monkeypatch):
    monkeypatch.setenv(threads.ENV_VAR, "2")
    assert Probe().fit(X).seen["fit"] == 2 and torch.get_num_threads() == DEFAULT
    monkeypatch.setenv(threads.ENV_VAR, "two")
    with pytest.raises(ValueError, match=r"EBM_OOD_NUM_THREADS: expected a positive integer number of threads, "
                                         r"got 'two'"):
        Probe().fit(X)
    assert torch.get_num_threads() == DEFAULT
    monkeypatch.setenv(threads.ENV_VAR, "0")
    with pytest.raises(ValueError, match=r"EBM_OOD_NUM_THREADS: .* got '0'"):
        threads.get_num_threads()


def test_a_torch_count_the_user_chose_is_kept(at_default, monkeypatch):
    torch.set_num_threads(2)                # differs from torch's default: the user chose it
    assert Probe().fit(X).seen["fit"] == 2 and torch.get_num_threads() == 2
    torch.set_num_threads(DEFAULT)
    monkeypatch.setenv("OMP_NUM_THREADS", str(DEFAULT))   # torch's default itself came from the user
    assert Probe().fit(X).seen["fit"] == DEFAULT
    monkeypatch.setenv(threads.ENV_VAR, "2")               # the library's own variable wins over OMP's
    assert Probe().fit(X).seen["fit"] == 2


def test_bad_counts_are_named():
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match=r"n: expected a positive integer number of threads, got"):
            threads.set_num_threads(bad)
        with pytest.raises(ValueError, match=r"n: expected a positive integer number of threads, got"):
            with threads.num_threads(bad):
                pass


def test_torch_default_threads_reads_the_environment_like_torch(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert threads.torch_default_threads() == 3
    monkeypatch.setenv("MKL_NUM_THREADS", "5")
    assert threads.torch_default_threads() == 5
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.delenv("MKL_NUM_THREADS")
    assert threads.torch_default_threads() == torch.get_num_interop_threads()


def _physical_cores_linux() -> int | None:
    """Distinct (physical id, core id) pairs of /proc/cpuinfo: the physical cores torch's pool defaults to."""
    try:
        with open("/proc/cpuinfo") as fh:
            blocks = fh.read().strip().split("\n\n")
    except OSError:
        return None
    pairs = set()
    for block in blocks:
        fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "core id" not in fields:
            return None
        pairs.add((fields.get("physical id", "0"), fields["core id"]))
    return len(pairs)


def test_torch_default_threads_counts_the_physical_cores(monkeypatch):
    cores = _physical_cores_linux()
    if cores is None:
        pytest.skip("no /proc/cpuinfo with core ids (not x86 Linux)")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(var, raising=False)
    assert threads.torch_default_threads() == cores


def _ce_scores(z, y):
    train = TrainConfig(steps=20, batch_size=32, eval_every=10, progress=False)
    return CEClassifier(ce_config("quick", "tabular"), seed=0, train=train).fit(z[:150], y[:150]).score(z[150:])


def test_results_equal_setting_the_count_by_hand(at_default):
    rng = np.random.default_rng(1)
    z, y = rng.normal(size=(200, 6)).astype(np.float32), rng.integers(0, 2, 200)
    by_policy = _ce_scores(z, y)                      # torch at its default: the policy trains on 1 thread
    torch.set_num_threads(1)                          # by hand
    np.testing.assert_array_equal(_ce_scores(z, y), by_policy)
    torch.set_num_threads(2)
    by_hand = Mahalanobis().fit(z, y).score(z)
    threads.set_num_threads(2)
    np.testing.assert_array_equal(Mahalanobis().fit(z, y).score(z), by_hand)
    torch.set_num_threads(1)
    with threads.num_threads(2):
        np.testing.assert_array_equal(Mahalanobis().fit(z, y).score(z), by_hand)


def test_bench_runs_each_call_at_each_thread_count_and_reports_ratios(at_default):
    seen = []
    rows = bench.bench({"probe": lambda: seen.append(torch.get_num_threads())}, rounds=2, counts=[1, 2, 4])
    assert seen[:3] == [1, 2, 4]                                  # warm-up, then rotating rounds
    assert seen[3:] == [1, 2, 4, 2, 4, 1]
    assert torch.get_num_threads() == DEFAULT
    (row,) = rows
    assert set(row["ms"]) == {1, 2, 4} and set(row["vs_1"]) == {2, 4}
    result = {"torch_default": 2, "cores": 2, "counts": [1, 2], "rounds": 3, "load_avg": 1.0, "rows": [
        {"task": "HEAT fit", "ms": {1: 10.0, 2: 50.0}, "quantised": {1: False, 2: True},
         "vs_1": {2: {"median": 5.0, "q1": 4.0, "q3": 6.0}}}]}
    assert "| HEAT fit | 10.0 | 50.0 (tick-quantised) | 5.00x [4.00-6.00] |" in bench.render(result)


def test_bench_counts_and_argument_errors(capsys):
    counts = bench.thread_counts()
    assert counts == sorted(set(counts)) and 1 in counts and threads.torch_default_threads() in counts
    assert all(n <= max(threads.available_cores(), threads.torch_default_threads()) for n in counts)
    parser = __import__("argparse").ArgumentParser()
    bench.add_arguments(parser)
    assert bench.run(parser.parse_args(["--rounds", "1"])) == 2
    assert "--rounds must be >= 2" in capsys.readouterr().err
    assert bench.run(parser.parse_args(["--steps", "0"])) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_the_cli_thread_flag_is_an_explicit_choice_even_at_torch_default(at_default):
    from ebm_ood.commands.flags import apply_threads

    apply_threads(DEFAULT)           # --threads equal to torch's default: still the user's choice
    p = Probe().fit(X)
    assert p.seen["fit"] == DEFAULT and torch.get_num_threads() == DEFAULT
