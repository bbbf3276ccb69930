"""Writing an experiment's results: Markdown and JSON atomically (NaN → null), both recording the CPU
thread count and CPU kind, and a PNG only when matplotlib imports (else the data and a hint:
``pip install -e ".[plots]"``)."""
from __future__ import annotations

import json
import math
import os
from typing import Callable

import numpy as np

from ebm_ood.plumbing import plotting
from ebm_ood.plumbing.atomic import write_atomic
from ebm_ood.commands.flags import cpu_kind, log_stderr, threads_note

def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    return obj


def write_results(out: str, name: str, markdown: str, data: dict) -> tuple[str, str]:
    """Write ``<out>/<name>.md`` and ``<out>/<name>.json`` atomically (NaN → null), both recording the CPU
    thread count and CPU kind (``"threads"`` and :func:`~ebm_ood.commands.flags.cpu_kind` in the JSON,
    :func:`~ebm_ood.commands.flags.threads_note` in the Markdown); returns both paths."""
    import torch

    data = {**data, "threads": torch.get_num_threads(), **cpu_kind()}
    js = write_atomic(os.path.join(out, f"{name}.json"), json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n")
    md = write_atomic(os.path.join(out, f"{name}.md"), markdown.rstrip() + "\n\n" + threads_note() + "\n")
    return md, js


def draw_figure(draw: Callable, path: str) -> str | None:
    """``draw(plt) -> figure``; saved as PNG at ``path`` (atomically) when matplotlib imports. Without it,
    print how to get the figure and return None (the data is in the JSON next to it)."""
    plt = plotting.pyplot()
    if plt is None:
        log_stderr(f"matplotlib is not installed: wrote the data only; for {os.path.basename(path)} run "
                   f"`pip install -e \".[plots]\"` and rerun")
        return None
    return plotting.write_figure(draw(plt), path)


def finish(out: str, name: str, markdown: str, data: dict, draw: Callable | None = None) -> int:
    """Write the table/JSON (and the figure), print the Markdown, say where things went. Returns 0."""
    md, js = write_results(out, name, markdown, data)
    written = [md, js]
    if draw is not None:
        png = draw_figure(draw, os.path.join(out, f"{name}.png"))
        if png:
            written.append(png)
    print(markdown)
    log_stderr("wrote " + ", ".join(written))
    return 0
