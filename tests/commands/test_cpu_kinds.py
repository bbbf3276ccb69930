"""Results on other CPU kinds: every result records the CPU kind it came from (model name and ATen CPU
capability) next to the thread count, and CI reruns the numeric tests on torch's generic kernels with the
same commands the README shows."""
import json
import os
import pathlib
import re
import subprocess
import sys

import torch

from conftest import NUMERIC_TESTS
from ebm_ood.commands.flags import cpu_kind, threads_note

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_cpu_kind_names_the_model_and_the_kernels_torch_runs():
    kind = cpu_kind()
    assert kind["aten_cpu_capability"] == torch.backends.cpu.get_cpu_capability() and kind["torch"] == torch.__version__
    if os.path.exists("/proc/cpuinfo"):
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")]
        assert not names or kind["cpu"] == names[0]
    assert kind["cpu"]
    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "PYTHONPATH": str(ROOT)}
    code = "import json; from ebm_ood.commands.flags import cpu_kind, threads_note; print(json.dumps(cpu_kind())); print(threads_note())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    kind_line, note = out.splitlines()
    assert json.loads(kind_line) == {**kind, "aten_cpu_capability": "DEFAULT"}
    assert f"on {kind['cpu']} (ATen CPU capability DEFAULT, torch {kind['torch']})" in note
    assert note.endswith("one seed reproduces these numbers exactly for this CPU kind and thread count.")
    assert f"ATen CPU capability {kind['aten_cpu_capability']}" in threads_note()


def test_numeric_tests_are_named_test_files_and_selected_by_the_marker():
    assert NUMERIC_TESTS and len(set(NUMERIC_TESTS)) == len(NUMERIC_TESTS)
    found = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(found) == len(set(found)), "two test files share a name: NUMERIC_TESTS could not tell them apart"
    missing = [name for name in NUMERIC_TESTS if name not in found]
    assert not missing, f"NUMERIC_TESTS names files that do not exist: {missing}"
    assert all(re.fullmatch(r"test_\w+\.py", name) for name in NUMERIC_TESTS)
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "--collect-only", "-m", "numeric", "-p", "no:cacheprovider",
                          "tests"], cwd=ROOT, capture_output=True, text=True).stdout
    files = {line.split("::")[0].rsplit("/", 1)[-1] for line in out.splitlines() if "::" in line}
    assert files == set(NUMERIC_TESTS)


def _commands(lines):
    """The install and test commands of shell lines: split on ``&&``, comments and other lines dropped."""
    found = []
    for line in lines:
        for part in line.split("#")[0].split("&&"):
            cmd = " ".join(part.split()).removeprefix("run_tests ").removeprefix("env ")
            if re.match(r"(\w+=\S+ )*(pip install|pytest) ", cmd):
                found.append(cmd)
    return found


def test_ci_runs_the_readme_install_and_test_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("Install the test extras")[1].split("```bash\n")[1].split("```")[0]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    want = _commands(block.splitlines())
    assert want == ["pip install torch==2.13.0", 'pip install -e ".[test]"', "pytest -q tests",
                    "ATEN_CPU_CAPABILITY=default pytest -q -m numeric tests"]
    assert _commands(ci.splitlines()) == want
