"""The equation map ``docs/equations.md`` names only things that exist.

Every table row ``| equation | formula | function | reference test |`` must name at least one function as
``module.path:name`` (or ``module.path:Class.method``) that imports, and at least one test as
``tests/file.py::test_name`` (or ``tests/file.py::TestClass::test_name``; a ``[param]`` suffix is ignored)
that is defined in that file. Test files are parsed with ``ast``, never imported. Each named function must
be *used* by one of its row's tests: its name (the last part of ``module.path:attr.path``, under any
``import ... as`` alias) appears in the test's body or in a module-level helper or fixture of that file the
test reaches, directly or through the code of the function's own module (a test of ``DICE`` uses the
``dice_mask`` that ``DICE`` calls). The map must also cover the numbered equations listed in ``REQUIRED``.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAP = ROOT / "docs" / "equations.md"

# Numbered equations the map must have a row for: (paper, equation number).
REQUIRED = {("Elflein", n) for n in (1, 2, 3)} | {("HEAT", n) for n in (1, 2, 3, 4, 5, 6, 7, 12)}

FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
TEST_RE = re.compile(r"^(tests/[\w/.-]+\.py)::([\w:]+?)(\[.*\])?$")
PAPERS = ("Elflein", "HEAT")


def split_row(line: str) -> list[str]:
    """Cells of a Markdown table row; ``|`` inside backticks or escaped as ``\\|`` does not split."""
    cells, cell, in_code, i = [], [], False, 0
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body) and body[i + 1] == "|":
            cell.append("|")
            i += 2
            continue
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(cell).strip())
            cell = []
        else:
            cell.append(ch)
        i += 1
    cells.append("".join(cell).strip())
    return cells


def parse_rows(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, cells)`` for every data row of every table (header and separator rows skipped)."""
    rows, lines = [], text.splitlines()
    for k, line in enumerate(lines):
        if not line.lstrip().startswith("|"):
            continue
        cells = split_row(line)
        if all(re.fullmatch(r":?-{3,}:?", c) for c in cells if c):       # |---|---|
            continue
        nxt = lines[k + 1] if k + 1 < len(lines) else ""
        if re.match(r"^\s*\|\s*:?-{3,}", nxt):                          # a header row: the next line is |---|
            continue
        rows.append((k + 1, cells))
    return rows


def code_spans(cell: str) -> list[str]:
    return [s.strip() for s in re.findall(r"`([^`]+)`", cell)]


def equation_numbers(cell: str) -> set[tuple[str, int]]:
    """``{(paper, number)}`` named in an equation cell: "HEAT Eq. 4/12", "HEAT Eq. 5–6", "Elflein Eq. 1 (JEM)"."""
    found = set()
    pattern = r"(" + "|".join(PAPERS) + r")\b(.*?)(?=\b(?:" + "|".join(PAPERS) + r")\b|$)"
    for paper, rest in re.findall(pattern, cell):
        m = re.search(r"\bEqs?\b\.?(.*)", rest)
        if not m:
            continue
        nums = re.split(r"[(;]", m.group(1))[0]                          # stop at a parenthesis
        for a, b in re.findall(r"(\d+)\s*[–—-]\s*(\d+)", nums):
            if 0 < int(b) - int(a) <= 20:
                found.update((paper, n) for n in range(int(a), int(b) + 1))
        nums = re.sub(r"(\d+)\s*[–—-]\s*(\d+)", " ", nums)
        found.update((paper, int(n)) for n in re.findall(r"\d+", nums))
    return found


def check_function(spec: str) -> str | None:
    """None when ``module.path:attr.path`` imports and resolves, else the reason it does not."""
    module_name, attr_path = spec.split(":", 1)
    try:
        obj = importlib.import_module(module_name)
    except Exception as err:  # noqa: BLE001  (any import failure is a broken row)
        return f"cannot import {module_name}: {type(err).__name__}: {err}"
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            return f"{module_name} has no attribute {attr_path!r} (missing {part!r})"
        obj = getattr(obj, part)
    if not callable(obj):
        return f"{spec} is not callable"
    return None


@lru_cache(maxsize=None)
def _test_names(path: str) -> frozenset[str]:
    """Names ``test_x`` and ``TestClass::test_x`` defined in a test file (by parsing, not importing)."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(f"{node.name}::{m.name}" for m in node.body
                         if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return frozenset(names)


@lru_cache(maxsize=None)
def _module(path: str) -> tuple[dict, dict]:
    """``(functions, aliases)`` of a test file: its module-level function nodes by name, and
    ``{local name: imported name}`` for every ``import ... as`` / ``from ... import ... as``."""
    tree = ast.parse((ROOT / path).read_text(encoding="utf-8"), filename=path)
    functions, aliases = {}, {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                aliases[a.asname or a.name] = a.name.rsplit(".", 1)[-1]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions[node.name] = node
        elif isinstance(node, ast.ClassDef):
            functions.update({f"{node.name}::{m.name}": m for m in node.body
                              if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))})
    return functions, aliases


def used_names(path: str, test: str) -> set[str]:
    """Every name and attribute the test ``test`` of ``path`` refers to, following module-level helpers
    and fixtures of the same file (aliases resolved to their imported names)."""
    functions, aliases = _module(path)
    seen, todo, names = set(), [test], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in functions:
            continue
        seen.add(name)
        node = functions[name]
        found = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        found |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
        found |= {a.arg for a in node.args.args}  # fixtures
        found |= {aliases[n] for n in found if n in aliases}
        names |= found
        todo.extend(found)
    return names


@lru_cache(maxsize=None)
def _library_defs(module_name: str) -> dict[str, frozenset[str]]:
    """``{top-level def or class: names it refers to}`` of a module's source (parsed, not run)."""
    spec = importlib.util.find_spec(module_name)
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out[node.name] = frozenset({n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                                       | {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)})
    return out


def check_usage(functions: list[str], tests: list[str]) -> list[str]:
    """The row's functions that none of its (existing) tests uses, directly or through the code of the
    function's module."""
    used = set()
    for spec in tests:
        m = TEST_RE.match(spec)
        if m and (ROOT / m.group(1)).is_file():
            used |= used_names(m.group(1), m.group(2))
    missing = []
    for f in functions:
        module_name, attr = f.split(":", 1)
        defs, reach, todo = _library_defs(module_name), set(used), list(used)
        while todo:
            for n in defs.get(todo.pop(), ()):
                if n not in reach:
                    reach.add(n)
                    todo.append(n)
        if attr.split(".")[-1] not in reach:
            missing.append(f)
    return missing


def check_test(spec: str) -> str | None:
    m = TEST_RE.match(spec)
    if not m:
        return f"{spec!r} is not of the form tests/file.py::test_name"
    path, name = m.group(1), m.group(2)
    if not (ROOT / path).is_file():
        return f"{path} does not exist"
    if name not in _test_names(path):
        return f"{path} defines no test {name!r}"
    return None


def broken_rows(text: str) -> list[str]:
    problems = []
    for line_no, cells in parse_rows(text):
        where = f"line {line_no} ({cells[0] if cells else ''!r})"
        if len(cells) < 4:
            problems.append(f"{where}: expected 4 cells | equation | formula | function | test |, got {len(cells)}")
            continue
        functions = [s for s in code_spans(cells[2]) if FUNCTION_RE.match(s)]
        tests = [s for s in code_spans(cells[3]) if s.startswith("tests/")]
        if not functions:
            problems.append(f"{where}: no function named as `module.path:name` in {cells[2]!r}")
        if not tests:
            problems.append(f"{where}: no test named as `tests/file.py::test_name` in {cells[3]!r}")
        for spec in functions:
            reason = check_function(spec)
            if reason:
                problems.append(f"{where}: function {spec}: {reason}")
        for spec in tests:
            reason = check_test(spec)
            if reason:
                problems.append(f"{where}: test {spec}: {reason}")
        if not any("test " in p and where in p for p in problems):
            for spec in check_usage(functions, tests):
                problems.append(f"{where}: function {spec} is not used by its test(s) {', '.join(tests)}")
    return problems


def test_map_exists_and_has_rows():
    assert MAP.is_file(), f"{MAP} is missing"
    assert parse_rows(MAP.read_text(encoding="utf-8")), f"{MAP} has no table rows"


def test_every_named_function_and_test_exists():
    problems = broken_rows(MAP.read_text(encoding="utf-8"))
    assert not problems, f"{len(problems)} broken row(s) in docs/equations.md:\n" + "\n".join(problems)


def test_map_covers_the_numbered_equations():
    covered = set()
    for _, cells in parse_rows(MAP.read_text(encoding="utf-8")):
        if cells:
            covered |= equation_numbers(cells[0])
    missing = sorted(REQUIRED - covered)
    assert not missing, "docs/equations.md has no row for: " + ", ".join(f"{p} Eq. {n}" for p, n in missing)


# ----------------------------------------------------------------------------- the checker checks itself
SAMPLE = """
| equation | formula | function | reference test |
|---|---|---|---|
| Elflein Eq. 2 | `p(y|x) = softmax f(x)` | `ebm_ood.energy:class_log_probabilities` | `tests/test_energy.py::test_class_probabilities_match_categorical` |
| HEAT Eq. 4 / Eq. 12 | `z - η/2 ∇E + √η w` | `ebm_ood.energy:no_such_function` | `tests/test_energy.py::test_not_there` |
| HEAT Eq. 5–6 | a \\| b | `no_such_module:f` | `tests/no_such_file.py::test_x[p]` |
| AUROC | `P(s_ood > s_id)` | `ebm_ood.metrics:fpr_at_tpr` | `tests/test_energy.py::test_class_probabilities_match_categorical` |
| DICE | mask | `ebm_ood.posthoc.dice:dice_mask` | `tests/posthoc/test_baselines.py::test_dice_matches_numpy_transcription` |
"""


def test_parser_on_a_sample_table():
    rows = parse_rows(SAMPLE)
    assert [len(c) for _, c in rows] == [4, 4, 4, 4, 4]
    assert rows[0][1][1] == "`p(y|x) = softmax f(x)`"                 # no split inside backticks
    assert rows[2][1][1] == "a | b"                                   # escaped pipe
    assert equation_numbers(rows[1][1][0]) == {("HEAT", 4), ("HEAT", 12)}
    assert equation_numbers(rows[2][1][0]) == {("HEAT", 5), ("HEAT", 6)}
    assert equation_numbers("Elflein Eq. 1 (JEM joint, 2020)") == {("Elflein", 1)}
    problems = broken_rows(SAMPLE)
    assert not any("line 4" in p for p in problems)                    # the good row passes
    assert sum("line 5" in p for p in problems) == 2                   # missing function and missing test
    assert sum("line 6" in p for p in problems) == 2                   # missing module and missing file
    assert [p for p in problems if "line 7" in p] == [                 # exists, but the test never calls it
        "line 7 ('AUROC'): function ebm_ood.metrics:fpr_at_tpr is not used by its test(s) "
        "tests/test_energy.py::test_class_probabilities_match_categorical"]
    assert not any("line 8" in p for p in problems)                    # used through DICE, which calls it


@pytest.mark.parametrize("spec", ["ebm_ood.metrics:auroc", "ebm_ood.sampling.replay_buffer:ReplayBuffer.sample"])
def test_function_specs_resolve(spec):
    assert check_function(spec) is None
