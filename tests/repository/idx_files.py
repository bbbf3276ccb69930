"""IDX files (the MNIST family's format) written here, for the data_scripts tests: a module of helpers, not
of tests, imported by its name (pytest puts this folder on the import path)."""
import gzip
import struct

import numpy as np


def idx_bytes(arr, magic):
    """The IDX encoding of a uint8 array: magic number, big-endian sizes, then the bytes."""
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(np.uint8).tobytes()


def write_idx_set(folder, rng, n_train=30, n_test=20):
    """Random 28x28 train / t10k images and labels 0..9 as the four gzipped IDX files; returns the arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(x, 2051)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(y, 2049)))
        data[prefix] = (x, y)
    return data
