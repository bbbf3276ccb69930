"""The package's layout (README, Layout): detector files written before a module moved still load, through
an explicit table of moved modules that imports nothing; every command is reachable through the one parser
of ``ebm-ood``; checking a command's flags changes nothing until the run starts."""
import importlib
import inspect
import pathlib

import numpy as np
import pytest

import ebm_ood
from ebm_ood.commands import cli, flags
from ebm_ood.commands.experiments.embeddings import MinMaxScaled
from ebm_ood.persist import MOVED_MODULES, _rebuildable, load, save
from ebm_ood.plumbing.errors import CheckpointError
from ebm_ood.posthoc import KNN

Z = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)


def test_a_file_naming_a_class_by_its_old_module_loads_bit_identical(tmp_path, monkeypatch):
    det = MinMaxScaled(KNN(k=3)).fit(Z)
    monkeypatch.setattr(MinMaxScaled, "__module__", "ebm_ood.experiments.embeddings")   # the old module name
    save(det, tmp_path / "old.pt")
    monkeypatch.undo()
    assert b"ebm_ood.experiments.embeddings:MinMaxScaled" in (tmp_path / "old.pt").read_bytes()   # old module name
    back = load(tmp_path / "old.pt")
    assert type(back) is MinMaxScaled
    np.testing.assert_array_equal(back.score(Z), det.score(Z))


def test_an_old_module_name_outside_the_table_is_still_refused(tmp_path, monkeypatch):
    det = MinMaxScaled(KNN(k=3)).fit(Z)
    monkeypatch.setattr(MinMaxScaled, "__module__", "ebm_ood.tutorial")   # an old module name holding no such class
    save(det, tmp_path / "odd.pt")
    monkeypatch.undo()
    with pytest.raises(CheckpointError, match="ebm_ood.tutorial:MinMaxScaled"):   # old module name
        load(tmp_path / "odd.pt")


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_the_moved_modules_table_names_gone_modules_and_their_new_homes(old):
    new = "ebm_ood." + MOVED_MODULES[old]
    where = pathlib.Path(ebm_ood.__file__).parent.joinpath(*old.split("."))
    assert not where.with_suffix(".py").exists() and not where.is_dir(), f"{old} still exists: it is not moved"
    module = importlib.import_module(new)
    held = [c for c in vars(module).values() if inspect.isclass(c) and c.__module__ == new and _rebuildable(c)]
    assert held, f"{new} defines no class a detector file may hold; {old} need not be in MOVED_MODULES"


def test_every_bench_and_experiment_is_reached_through_the_one_parser():
    parser = cli.build_parser()
    for kind, table in (("bench", cli.BENCHES), ("experiment", cli.EXPERIMENTS)):
        for name, mod in table.items():
            args = parser.parse_args([kind, name])
            assert args._run is mod.run and "command" not in vars(args)
    args = parser.parse_args(["benchmark", "--quick"])
    assert args._run is cli.benchmark.run and args.command == "benchmark"


def test_cli_without_a_name_prints_the_names_and_fails(capsys):
    assert cli.main(["experiment"]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in cli.EXPERIMENTS)


def test_checking_the_run_flags_changes_nothing_until_the_run_starts(tmp_path, monkeypatch):
    threads = []
    monkeypatch.setattr(flags, "set_num_threads", threads.append)
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(["benchmark", "--quick", "--threads", "2", "--out", str(out)])
    assert flags.check_run_arguments(args) == "cpu"
    assert threads == [] and not hasattr(args, "cell_log") and not (out.exists() and any(out.iterdir()))
    flags.start_run(args)
    try:
        assert threads == [2] and args.cell_log.path == str(out / "results.cells.jsonl")
    finally:
        args.cell_log.close()


def _tree(root, *folders):
    from ebm_ood.sampling import ops

    for folder in folders:
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in ops._SOURCES:
            (root / folder / name).write_text("")
    (root / "ebm_ood" / "sampling").mkdir(parents=True, exist_ok=True)
    return str(root / "ebm_ood" / "sampling" / "ops.py")


def test_the_op_sources_are_found_one_way(tmp_path, monkeypatch):
    from ebm_ood.sampling import ops

    checkout = tmp_path / "checkout"
    monkeypatch.setattr(ops, "__file__", _tree(checkout, "csrc", "ebm_ood/csrc"))
    (checkout / "setup.py").write_text("")
    assert ops._csrc_dir() == checkout / "csrc"                     # a checkout: its csrc/, never a copy
    site = tmp_path / "site-packages"                               # installed: the shipped copy, never a
    monkeypatch.setattr(ops, "__file__", _tree(site, "csrc", "ebm_ood/csrc"))   # csrc/ that sits beside it
    assert ops._csrc_dir() == site / "ebm_ood" / "csrc"
    (site / "ebm_ood" / "csrc" / ops._SOURCES[0]).unlink()
    assert ops._csrc_dir() is None
