"""Install ebm_ood.

A plain ``pip install -e .`` (pip's default build isolation, no torch at build time) installs the pure
Python package; the fused SGLD op in ``csrc/`` is then compiled just in time on first use
(``ebm_ood/sampling/ops.py``). With torch importable at build time
(``pip install --no-build-isolation -e .``) the op is compiled ahead of time here instead.
"""
import os
import runpy

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py as _build_py

HERE = os.path.dirname(os.path.abspath(__file__))


CSRC = ("philox.h", "sgld_update.h", "sgld_tile.h", "sgld_cpu.cpp", "sgld_cuda.cu")
# One list of compiler flags for both builds (read without importing torch or the package).
_FLAGS = runpy.run_path(os.path.join(HERE, "ebm_ood", "plumbing", "build_flags.py"))
CXX_FLAGS, NVCC_FLAGS, LD_FLAGS = _FLAGS["CXX_FLAGS"], _FLAGS["NVCC_FLAGS"], _FLAGS["LD_FLAGS"]


class build_py(_build_py):
    """Also ship csrc/ inside the package (ebm_ood/csrc) so a non-editable install can JIT-compile it."""

    def run(self):
        super().run()
        dest = os.path.join(self.build_lib, "ebm_ood", "csrc")
        os.makedirs(dest, exist_ok=True)
        for name in CSRC:
            src = os.path.join(HERE, "csrc", name)
            if os.path.exists(src):
                self.copy_file(src, os.path.join(dest, name))


def _extension_kwargs():
    """Ahead-of-time build of ``ebm_ood._C`` when torch is importable; otherwise nothing (JIT later)."""
    if os.environ.get("EBM_OOD_NO_BUILD"):
        return {}
    try:
        from torch.utils import cpp_extension
    except ImportError:
        return {}
    import torch

    sources = [os.path.join("csrc", "sgld_cpu.cpp")]
    extra = {"cxx": list(CXX_FLAGS) if os.name != "nt" else ["/O2"]}
    ext_cls = cpp_extension.CppExtension
    if torch.cuda.is_available() or os.environ.get("EBM_OOD_BUILD_CUDA"):
        if cpp_extension.CUDA_HOME is not None:
            sources.append(os.path.join("csrc", "sgld_cuda.cu"))
            extra["cxx"].append("-DEBM_OOD_WITH_CUDA")
            extra["nvcc"] = list(NVCC_FLAGS)
            ext_cls = cpp_extension.CUDAExtension
    if not all(os.path.exists(os.path.join(HERE, s)) for s in sources):
        return {}
    ext = ext_cls("ebm_ood._C", sources, include_dirs=[os.path.join(HERE, "csrc")], extra_compile_args=extra,
                  extra_link_args=list(LD_FLAGS) if os.name != "nt" else [])
    return {"ext_modules": [ext], "cmdclass": {"build_ext": cpp_extension.BuildExtension}}


_EXT = _extension_kwargs()
_CMDCLASS = {"build_py": build_py, **_EXT.pop("cmdclass", {})}

setup(
    name="ebm_ood",
    version="0.1.0",
    description="Out-of-distribution detection with energy-based models, from first principles",
    packages=find_packages(include=["ebm_ood", "ebm_ood.*"]),
    python_requires=">=3.9",
    install_requires=["torch>=2.1", "numpy", "scikit-learn", "tqdm", "Pillow", "ninja", "pybind11"],
    extras_require={
        "test": ["pytest", "hypothesis", "scipy", "distributed"],
        "plots": ["matplotlib"],
        "dist": ["distributed"],
    },
    entry_points={"console_scripts": ["ebm-ood=ebm_ood.commands.cli:main"]},
    cmdclass=_CMDCLASS,
    **_EXT,
)
