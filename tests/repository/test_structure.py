"""The package's structure: imports flow one way through :data:`LAYERS` (so a reader follows any call by
reading imports, and there is no import cycle, including imports by name string), and no function
outgrows a screen."""
import ast
import pathlib
import re

PKG = pathlib.Path(__file__).resolve().parents[2] / "ebm_ood"
MAX_FUNCTION_LINES = 60
# Bottom to top, as the README's Layout lists them: a module may import its own layer and the layers
# before it, never a later one. A prefix names a package and everything in it.
LAYERS = [
    ["errors", "atomic", "checks", "presets", "plotting"],
    ["data"],
    ["nn", "energy", "density", "metrics"],
    ["sampling"],
    ["threads", "inputs", "fingerprint"],
    ["detector"],
    ["checkpoint", "resume", "divergence_guard", "training"],
    ["methods"],
    ["class_gaussian", "backbone"],
    ["posthoc"],
    ["heat"],
    ["tables", "evaluation", "persist"],
    ["benchmark", "benchmark.methods", "benchmark.runner", "benchmark.report"],
    ["flags"],
    ["benchmark.command", "experiments"],
    ["speed"],
    ["cli", "__main__", "tutorial"],
]


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of ``module`` (dotted, without ``ebm_ood.``); the longest matching prefix wins."""
    best, found = -1, None
    for i, names in enumerate(LAYERS):
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
    (fake / "cli.py").write_text("")
    (fake / "data" / "x.py").write_text("def f():\n    import importlib\n    importlib.import_module('ebm_ood.commands.cli')\n")
    monkeypatch.setitem(globals(), "PKG", fake)
    assert upward_imports([fake / "data" / "x.py"]) == ["data.x (layer 1) imports cli (layer 16)"]


def test_no_function_over_60_lines():
    long = []
    for path in sorted(PKG.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{module_name(path)}.{node.name}: {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + ", ".join(long)
