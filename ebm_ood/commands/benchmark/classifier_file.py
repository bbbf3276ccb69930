"""Your own trained classifier in the benchmark: ``ebm-ood benchmark --classifier FILE.py:FUNCTION``.

``FUNCTION()`` in your Python file returns the trained model: an ``nn.Module`` whose ``forward`` gives
logits and which has ``feature_map`` (x -> (N, C, H, W)) or ``features`` (x -> (N, D)) and a linear
``head``, or a :class:`~ebm_ood.backbone.Backbone` built from your model's pieces. Loading runs your own
code (nothing is unpickled by us); load weights inside it with ``torch.load(..., weights_only=True)``.
The post-hoc detectors and HEAT then work on its features instead of the benchmark's CE classifier.
"""
from __future__ import annotations

import importlib.util
import os
import traceback
from functools import lru_cache

from torch import nn

from ebm_ood.backbone import Backbone


@lru_cache(maxsize=4)
def load_classifier(spec: str):
    """``"path/to/file.py:function"`` → what ``function()`` returns (an ``nn.Module`` in eval mode, or a
    :class:`Backbone`), loaded once per process; each problem is an error naming ``--classifier``."""
    path, _, name = str(spec).rpartition(":")
    if not path or not name.isidentifier():
        raise ValueError(f"--classifier: expected FILE.py:FUNCTION, got {spec!r}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--classifier: file {path!r} not found")
    module_spec = importlib.util.spec_from_file_location(f"_ebm_ood_classifier_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(module_spec)
    _run_user_code(lambda: module_spec.loader.exec_module(module), f"running {path}", path)
    make = getattr(module, name, None)
    if not callable(make):
        raise ValueError(f"--classifier: {path} defines no function {name!r}")
    model = _run_user_code(make, f"{name}() in {path}", path)
    if isinstance(model, Backbone):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"--classifier: {name}() returned {type(model).__name__}; expected an nn.Module or a Backbone")
    if not hasattr(model, "head") or not (hasattr(model, "features") or hasattr(model, "feature_map")):
        raise TypeError(f"--classifier: {name}() returned a {type(model).__name__} without a `head` and `features` "
                        "or `feature_map`, which the detectors need (features and logits); return its pieces as "
                        "Backbone(features=model[:-1], head=model[-1]) (from ebm_ood.backbone import Backbone; "
                        "feature_map= for conv features)")
    return model.eval()


def _run_user_code(call, what: str, path: str):
    """``call()``; any exception it raises, ``SystemExit`` included (but not Ctrl-C), is a ValueError
    naming ``--classifier``, what ran and the line of ``path`` it came from."""
    try:
        return call()
    except KeyboardInterrupt:
        raise
    except BaseException as err:
        where = ""
        if isinstance(err, SyntaxError) and err.lineno:
            where = f" (line {err.lineno})"
        else:
            lines = [f.lineno for f in traceback.extract_tb(err.__traceback__)
                     if os.path.abspath(f.filename) == os.path.abspath(path)]
            where = f" (line {lines[-1]})" if lines else ""
        text = str(err).splitlines()[0] if str(err) else ""
        raise ValueError(f"--classifier: {what} raised {type(err).__name__}{': ' + text if text else ''}{where}") from None
