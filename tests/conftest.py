"""Shared fixtures: tiny labelled image shards written with mmgen's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def write_labelled_shards(out: Path, *, train: int = 96, holdout: int = 32, size: int = 12, classes: int = 4,
                          per_shard: int = 24, seed: int = 0) -> Path:
    """Noisy images whose class is a texture: horizontal stripes, vertical stripes, checkerboard or plain."""
    from mmgen.data.writer import ShardWriter

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("holdout", holdout)):
        with ShardWriter(out, split, per_shard, source="synthetic") as writer:
            for index in range(count):
                label = int(rng.integers(classes))
                yy, xx = np.mgrid[:size, :size] // 2 % 2
                pattern = [yy, xx, yy ^ xx, np.zeros_like(yy)][label % 4]
                image = (rng.random((size, size)) * 40 + pattern * 200).astype(np.uint8)
                writer.write_image_sample(index, image, label=label)
    return out


@pytest.fixture
def labelled_shards(tmp_path: Path) -> Path:
    return write_labelled_shards(tmp_path / "shards")
