"""The package's structure: imports flow one way through :data:`LAYERS` (so a reader follows any call by
reading imports, and there is no import cycle, including imports by name string), and no function
outgrows a screen."""
import ast
import pathlib
import re

PKG = pathlib.Path(__file__).resolve().parents[2] / "ebm_ood"
MAX_FUNCTION_LINES = 60
# Bottom to top: a module may import its own layer and the layers before it, never a later one. A prefix
# names a package and everything in it. The README's Layout section is rendered from this table
# (:func:`layout_block`; ``test_readme_layout_is_this_table`` checks it), so the two cannot disagree.
LAYERS = [
    (["plumbing", "plumbing.errors", "plumbing.atomic", "plumbing.checks", "plumbing.build_flags", "plumbing.build_lock"],
     "errors, argument checks, atomic writes, the C++ op's build flags and lock"),
    (["plumbing.checkpoint", "plumbing.resume", "plumbing.divergence_guard", "plumbing.threads",
      "plumbing.inputs", "plumbing.fingerprint", "plumbing.plotting"],
     "checkpoint files, resuming, the divergence guard, arrays / tensors / DataLoaders as "
     "inputs, the thread policy, fingerprints, plots"),
    (["plumbing.tutorial"], "the tutorials' fast mode and figures"),
    (["presets"], "the quick / default / full presets (each method keeps its own table)"),
    (["data"], "datasets: what a dataset is, the embedded ones, your own .npz folder, DATASETS by name"),
    (["nn", "energy", "density", "metrics"],
     "networks; Elflein Eq. 1-3 (energies, p(x) = exp(-E(x)) / Z); AUROC / AUPR / FPR95"),
    (["sampling"], "SGLD, the replay buffer, the Philox twin, the fused op's loader (ops.py)"),
    (["detector"], "the Detector API: fit(x, y=None), score(x), higher = more OOD"),
    (["training"], "the training loop every method shares"),
    (["methods"], "Elflein et al. 2021: CE, CD, SSM, VERA, normalizing flows"),
    (["class_gaussian", "backbone"], "class-Gaussian fits; your trained classifier as a feature extractor"),
    (["posthoc"], "MSP, MaxLogit, ODIN, Mahalanobis, SSD+, KNN, ViM, DICE, ReAct"),
    (["heat"], "Lafon et al. 2023 (HEAT): priors, the hybrid EBM, the composition"),
    (["tables", "evaluation", "persist"], "the papers' tables; evaluate(); save / load (no pickle)"),
    (["commands", "commands.cell_log", "commands.flags"],
     "a run's cells log; the flags shared by every command that trains"),
    (["commands.benchmark"], "`ebm-ood benchmark` (METHODS in registry.py, runner, report)"),
    (["commands.experiments"], "`ebm-ood experiment NAME`"),
    (["commands.speed"], "`ebm-ood bench NAME` (speed, side by side)"),
    (["commands.cli", "__main__"], "`ebm-ood`, the one table of commands"),
]


def layout_block() -> str:
    """The README's layering block: two lines per layer, bottom first: its number and modules (as paths under
    ``ebm_ood/``; a package standing for its ``__init__`` is left out beside its modules), then what they hold."""
    lines = []
    for i, (names, what) in enumerate(LAYERS):
        shown = [n for n in names if not any(o.startswith(n + ".") for o in names)]
        lines += [f"{i:>2}  " + " ".join(n.replace(".", "/") for n in shown), f"      {what}"]
    return "\n".join(lines)


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (dotted, without ``ebm_ood.``); the longest matching prefix wins."""
    best, found = -1, None
    for i, (names, _) in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), i
    return found


def imports(tree: ast.AST) -> set[str]:
    """Every ``ebm_ood`` module a module imports, at any depth, including dotted names in strings
    (``importlib.import_module("ebm_ood.x")``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"ebm_ood(\.\w+)+", node.value):
            out.add(node.value)
    known = {module_name(p) for p in PKG.rglob("*.py")}
    return {m.removeprefix("ebm_ood.") for m in out if m.startswith("ebm_ood.") and m.removeprefix("ebm_ood.") in known}


def upward_imports(files) -> list[str]:
    bad = []
    for path in files:
        me = module_name(path)
        if me == "":  # the package's __init__: the public API, importing from every layer
            continue
        mine = layer_of(me)
        if mine is None:
            bad.append(f"{me}: in no layer of LAYERS")
            continue
        for other in sorted(imports(ast.parse(path.read_text()))):
            theirs = layer_of(other)
            if theirs is not None and theirs > mine and not other.startswith(me + "."):
                bad.append(f"{me} (layer {mine}) imports {other} (layer {theirs})")
    return bad


def test_imports_flow_one_way():
    bad = upward_imports(sorted(PKG.rglob("*.py")))
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


def test_the_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    fake = tmp_path / "ebm_ood"
    (fake / "data").mkdir(parents=True)
    monkeypatch.setitem(globals(), "PKG", fake)
    (fake / "commands").mkdir()
    (fake / "commands" / "cli.py").write_text("")
    (fake / "data" / "x.py").write_text("def f():\n    import importlib\n    importlib.import_module('ebm_ood.commands.cli')\n")
    assert upward_imports([fake / "data" / "x.py"]) == [
        f"data.x (layer {layer_of('data')}) imports commands.cli (layer {len(LAYERS) - 1})"]


def test_no_function_over_60_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module_name(path)}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long)


def test_readme_layout_is_this_table():
    readme = (PKG.parent / "README.md").read_text(encoding="utf-8")
    assert layout_block() in readme, "README.md, Layout: paste this block (bottom layer first):\n" + layout_block()


def test_every_module_is_in_one_layer_and_every_layer_names_modules():
    known = {module_name(p) for p in PKG.rglob("*.py")} - {""}
    assert not [m for m in sorted(known) if layer_of(m) is None]
    for names, _ in LAYERS:
        for name in names:
            assert any(m == name or m.startswith(name + ".") for m in known), f"LAYERS names {name}, which does not exist"


def test_no_two_top_level_units_import_each_other():
    """A top-level module or folder of ``ebm_ood/`` (``plumbing``, ``commands``, ``heat``, ``energy``, ...)
    never imports one that imports it back (README, Layout)."""
    edges = set()
    for path in PKG.rglob("*.py"):
        me = module_name(path)
        if me:
            edges |= {(me.split(".")[0], o.split(".")[0]) for o in imports(ast.parse(path.read_text()))}
    both = sorted({tuple(sorted(e)) for e in edges if e[0] != e[1] and (e[1], e[0]) in edges})
    assert not both, f"top-level units importing each other: {both}"
