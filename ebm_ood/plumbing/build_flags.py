"""Compiler flags of the fused SGLD op, shared by the ahead-of-time build (``setup.py``) and the
just-in-time build (``ops.py``). Plain constants, no imports: ``setup.py`` reads this file without torch.

No FMA contraction (``-ffp-contract=off`` / ``--fmad=false``): the kernels then round exactly like the
PyTorch twin. ``-fno-math-errno`` lets ``sqrtf``/``logf`` vectorise.
"""
CXX_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fopenmp"]
NVCC_FLAGS = ["-O3", "--fmad=false"]
LD_FLAGS = ["-fopenmp"]
