"""Shared fixtures: tiny labelled image shards written with mmgen's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def write_labelled_shards(out: Path, *, train: int = 96, holdout: int = 32, size: int = 12, classes: int = 4,
                          per_shard: int = 24, seed: int = 0) -> Path:
    """Images whose class is the position of a bright square (learnable in a few steps)."""
    from mmgen.data.writer import ShardWriter

    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("holdout", holdout)):
        with ShardWriter(out, split, per_shard, source="synthetic") as writer:
            for index in range(count):
                label = int(rng.integers(classes))
                image = (rng.random((size, size)) * 60).astype(np.uint8)
                row, col = divmod(label, 2)
                half = size // 2
                image[row * half:(row + 1) * half, col * half:(col + 1) * half] += 150
                writer.write_image_sample(index, image, label=label)
    return out


@pytest.fixture
def labelled_shards(tmp_path: Path) -> Path:
    return write_labelled_shards(tmp_path / "shards")
