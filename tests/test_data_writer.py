"""ShardWriter: real webdataset tars, zero-padded keys, shard rotation, manifest; round trip through the readers."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.data import ShardWriter, read_manifest, read_samples
from mmgen.errors import InvalidArgumentError


def _write(out: Path, count: int, per_shard: int, split: str = "train") -> list[np.ndarray]:
    rng = np.random.default_rng(count)
    images = [rng.integers(0, 256, (5, 7, 3), dtype=np.uint8) for _ in range(count)]
    with ShardWriter(out, split, per_shard, source="unit test") as writer:
        for index, image in enumerate(images):
            writer.write_image_sample(index, image, label=index % 3, text=f"caption {index}", meta={"i": index})
    return images


def test_shards_keys_and_manifest(tmp_path: Path):
    _write(tmp_path, 7, 3)
    names = sorted(p.name for p in tmp_path.glob("*.tar"))
    assert names == ["train-000000.tar", "train-000001.tar", "train-000002.tar"]
    with tarfile.open(tmp_path / "train-000000.tar") as tar:
        members = tar.getnames()
    assert members[:4] == ["00000000.cls", "00000000.json", "00000000.png", "00000000.txt"]
    assert len(members) == 12
    manifest = read_manifest(tmp_path)
    assert manifest == {"source": "unit test", "splits": {"train": {"samples": 7, "shards": names}}}
    _write(tmp_path, 2, 3, split="holdout")  # other splits are kept in the manifest
    assert set(json.loads((tmp_path / "dataset.json").read_text())["splits"]) == {"train", "holdout"}


def test_rewriting_a_split_removes_its_stale_shards(tmp_path: Path):
    _write(tmp_path, 7, 3)
    _write(tmp_path, 2, 3)
    assert sorted(p.name for p in tmp_path.glob("train-*.tar")) == ["train-000000.tar"]


def test_round_trip_through_read_samples(tmp_path: Path):
    images = _write(tmp_path, 5, 2)
    samples = read_samples(tmp_path, split="train")
    assert [s["key"] for s in samples] == [f"{i:08d}" for i in range(5)]
    for index, (sample, image) in enumerate(zip(samples, images)):
        assert torch.equal(sample["image"], torch.from_numpy(image).permute(2, 0, 1))
        assert sample["label"] == index % 3 and sample["text"] == f"caption {index}" and sample["meta"] == {"i": index}
    assert len(read_samples(tmp_path, limit=2)) == 2


def test_webdataset_reads_the_shards(tmp_path: Path):
    import webdataset as wds

    _write(tmp_path, 4, 2)
    dataset = wds.WebDataset(str(tmp_path / "train-{000000..000001}.tar"), shardshuffle=False).decode("rgb8")
    samples = list(dataset)
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(4)]
    assert samples[0]["png"].shape == (5, 7, 3) and samples[1]["cls"] == 1


def test_writer_rejects_bad_keys_and_images(tmp_path: Path):
    with ShardWriter(tmp_path, "train", 2) as writer:
        with pytest.raises(InvalidArgumentError, match="key"):
            writer.write("a.b", {"txt": "x"})
        with pytest.raises(InvalidArgumentError, match="uint8"):
            writer.write_image_sample(0, np.zeros((2, 2), dtype=np.float32))
        writer.write_image_sample("folder/name", torch.zeros(1, 3, 3, dtype=torch.uint8), fmt="jpg")
    assert read_samples(tmp_path)[0]["key"] == "folder/name"
