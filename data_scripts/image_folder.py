"""OOD-only image sets given as a folder of images: Textures, LSUN, CelebA, TinyImageNet, Places.

These come from several places, some behind a sign-up, so they are never downloaded: get the archive
named in ``WHERE`` (see also README.md), extract it, and run
``python data_scripts/prepare.py NAME --raw-dir EXTRACTED_FOLDER [--size 32]``.
Every image under the folder (recursively, sorted by path) is centre-cropped to a square and resized to
``size`` x ``size`` (bilinear): one split ``test`` with ``x`` (N, 3, size, size) uint8 and ``y`` = -1.
"""
from __future__ import annotations

from pathlib import Path

from ebm_ood.data.formats import read_image_folder

WHERE = {
    "textures": "Describable Textures Dataset (DTD): https://www.robots.ox.ac.uk/~vgg/data/dtd/ "
                "(dtd-r1.0.1.tar.gz; use the dtd/images/ folder)",
    "lsun": "LSUN (resized test set of the ODIN benchmark, 10,000 images): "
            "https://github.com/facebookresearch/odin (LSUN.tar.gz); full LSUN: https://www.yf.io/p/lsun",
    "celeba": "CelebA: https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (img_align_celeba/; the paper uses "
              "the test partition, images 182638-202599 of list_eval_partition.txt)",
    "tinyimagenet": "Tiny ImageNet: http://cs231n.stanford.edu/tiny-imagenet-200.zip (use the val/images/ folder) "
                    "or the Kaggle copy https://www.kaggle.com/c/tiny-imagenet",
    "places": "Places365: http://places2.csail.mit.edu/download.html (the HEAT benchmark uses a 10,000-image "
              "subset of the validation images)",
}
FILES = {name: () for name in WHERE}
DEFAULT_SIZE = 32


class RawFolderMissing(FileNotFoundError):
    """The folder of images was not given or does not exist."""


def needed(name: str, raw_dir: Path):
    return ()


def convert(name: str, raw_dir: Path, size: int = DEFAULT_SIZE, **_) -> dict:
    if not raw_dir.is_dir() or not any(raw_dir.iterdir()):
        raise RawFolderMissing(
            f"{name}: expected a folder of images at {raw_dir}, found none. Get it from {WHERE[name]}, extract it, "
            f"and run: python data_scripts/prepare.py {name} --raw-dir FOLDER")
    x, y, _, _ = read_image_folder(raw_dir, size, mode="RGB")
    return {"test": (x, y, {"pixel_range": [0, 255], "size": size, "source": WHERE[name],
                            "raw_files": [str(raw_dir)]})}
