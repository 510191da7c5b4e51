"""ShardStream: img2dataset layout, rank/worker splitting, corrupt data, exact resume, no-data errors."""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen.data import DataWarning, ShardStream, ShardWriter, StreamPosition, make_loader, read_samples
from mmgen.data.decode import decode_sample, sample_generator
from mmgen.errors import DataError

BAD_PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 40


def write_set(out: Path, count: int = 40, per_shard: int = 10, corrupt: tuple[int, ...] = ()) -> Path:
    """``count`` 4x4 gray images whose pixels equal their index (mod 256); ``corrupt`` indices get a broken PNG."""
    with ShardWriter(out, "train", per_shard) as writer:
        for index in range(count):
            if index in corrupt:
                writer.write(index, {"png": BAD_PNG, "cls": index % 4})
            else:
                writer.write_image_sample(index, np.full((4, 4), index % 256, np.uint8), label=index % 4)
    return out


def keys_of(batches: list[dict[str, Any]]) -> list[str]:
    return [key for batch in batches for key in batch["key"]]


def take(stream: ShardStream, num_workers: int, count: int | None = None) -> list[dict[str, Any]]:
    batches = []
    for batch in make_loader(stream, num_workers):
        batches.append(batch)
        if count is not None and len(batches) == count:
            break
    return batches


def test_img2dataset_layout_jpg_txt_json(tmp_path: Path):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 6), (250, 10, 10)).save(buffer, format="JPEG", quality=95)
    members = {"000000001.jpg": buffer.getvalue(), "000000001.txt": b"a red square",
               "000000001.json": json.dumps({"url": "http://x/1.jpg", "width": 8}).encode()}
    with tarfile.open(tmp_path / "00000.tar", "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    [sample] = read_samples(tmp_path)
    assert sample["key"] == "000000001" and sample["text"] == "a red square" and sample["meta"]["width"] == 8
    assert sample["image"].shape == (3, 6, 8) and abs(int(sample["image"][0].float().mean()) - 250) < 6


def test_batches_have_stream_info_and_come_whole_from_one_worker(tmp_path: Path):
    write_set(tmp_path, 40, 10)
    stream = ShardStream(tmp_path, None, 4, resampled=False, shuffle_buffer=8, seed=1)
    batches = take(stream, 2)
    assert [b["__stream__"]["worker"] for b in batches] == [0, 1] * 5
    assert batches[0]["image"].shape == (4, 1, 4, 4) and batches[0]["label"].dtype == torch.long
    assert sorted(keys_of(batches)) == [f"{i:08d}" for i in range(40)]
    for batch in batches:  # images and keys stay together
        assert batch["image"][:, 0, 0, 0].tolist() == [int(key) for key in batch["key"]]
    assert batches[-1]["__stream__"]["raw"] == 20 and batches[-1]["__stream__"]["skipped"] == 0


@pytest.mark.parametrize(("shards", "workers"), [(8, 0), (8, 2), (2, 2)])
def test_ranks_and_workers_get_disjoint_covering_data(tmp_path: Path, shards: int, workers: int):
    write_set(tmp_path, 8 * 5, 40 // shards)  # (2, 2): 4 consumers > 2 shards -> split by sample
    per_rank = [keys_of(take(ShardStream(tmp_path, None, 3, resampled=False, seed=5, rank=rank, world_size=2),
                             workers)) for rank in range(2)]
    assert not set(per_rank[0]) & set(per_rank[1])
    assert sorted(per_rank[0] + per_rank[1]) == [f"{i:08d}" for i in range(40)]
    assert min(len(keys) for keys in per_rank) >= 15


def test_finite_epochs_are_deterministic_and_reshuffled(tmp_path: Path):
    write_set(tmp_path, 20, 5)
    stream = ShardStream(tmp_path, None, 5, resampled=False, epochs=2, shuffle_buffer=10, seed=3)
    first, again = keys_of(take(stream, 0)), keys_of(take(stream, 0))
    assert first == again and sorted(first) == sorted([f"{i:08d}" for i in range(20)] * 2)
    assert first[:20] != first[20:]  # the second pass has its own order (the buffer also mixes across passes)


def test_corrupt_member_is_skipped_counted_and_warned(tmp_path: Path):
    write_set(tmp_path, 10, 10, corrupt=(3,))
    with pytest.warns(DataWarning, match="corrupt sample: '00000003'"):
        batches = take(ShardStream(tmp_path, None, 4, resampled=False, shuffle_buffer=0), 0)
    assert keys_of(batches) == [f"{i:08d}" for i in range(10) if i != 3]
    assert batches[-1]["__stream__"] == {"worker": 0, "workers": 1, "raw": 10, "skipped": 1}
    position = StreamPosition()
    for batch in batches:
        position.update(batch)
    assert position.skipped_total == 1 and position.batches == 3


def test_truncated_and_garbage_tars_are_survived(tmp_path: Path):
    write_set(tmp_path, 30, 10)
    first = tmp_path / "train-000000.tar"
    first.write_bytes(first.read_bytes()[:2000])  # a few complete samples, then a cut inside a member
    (tmp_path / "train-000003.tar").write_bytes(b"garbage" * 100)
    with pytest.warns(DataWarning, match="unreadable shard"):
        keys = keys_of(take(ShardStream(tmp_path, None, 4, resampled=False), 0))
    assert set(keys) >= {f"{i:08d}" for i in range(10, 30)} and len(keys) < 30


def shifted(raw: dict[str, Any]) -> dict[str, Any]:
    """A decoder with a seeded random augmentation (as tasks write them)."""
    sample = decode_sample(raw)
    sample["noise"] = torch.rand(2, generator=sample_generator(raw))
    return sample


def assert_same_batches(got: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["key"] == b["key"] and a["__stream__"] == b["__stream__"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["noise"], b["noise"])


IGNORE_DATA_WARNINGS = pytest.mark.filterwarnings("ignore::mmgen.data.DataWarning")


@IGNORE_DATA_WARNINGS
@pytest.mark.parametrize("workers", [0, 2])
def test_exact_resume_of_an_infinite_stream(tmp_path: Path, workers: int):
    write_set(tmp_path, 30, 6, corrupt=(4, 17, 22))
    make = lambda state=None: ShardStream(tmp_path, shifted, 4, shuffle_buffer=9, seed=7, state=state)
    reference = take(make(), workers, 14)
    position = StreamPosition()
    for batch in reference[:5]:
        position.update(batch)
    state = json.loads(json.dumps(position.state_dict()))
    resumed = take(make(state), workers, 9)
    assert state["batches"] == 5 and state["workers"] == max(workers, 1)
    assert_same_batches(resumed, reference[5:])
    assert sum(b["__stream__"]["skipped"] for b in reference[-2:]) > 0  # corrupt samples were met and counted


@pytest.mark.parametrize("consumed", [3, 4, 5])
def test_exact_resume_when_a_finite_worker_has_ended(tmp_path: Path, consumed: int):
    write_set(tmp_path, 12, 4)  # 3 shards over 2 workers: worker 0 yields 4 batches, worker 1 only 2
    make = lambda state=None: ShardStream(tmp_path, shifted, 2, resampled=False, seed=2, state=state)
    reference = take(make(), 2)
    assert [b["__stream__"]["worker"] for b in reference] == [0, 1, 0, 1, 0, 0]
    position = StreamPosition()
    for batch in reference[:consumed]:
        position.update(batch)
    assert_same_batches(take(make(position.state_dict()), 2), reference[consumed:])


def test_resume_with_other_worker_count_is_refused(tmp_path: Path):
    write_set(tmp_path, 8, 4)
    position = StreamPosition()
    position.update(take(ShardStream(tmp_path, None, 2, seed=0), 0, 1)[0])
    with pytest.raises(DataError, match="worker"):
        take(ShardStream(tmp_path, None, 2, seed=0, state=position.state_dict()), 2, 1)


@IGNORE_DATA_WARNINGS
@pytest.mark.parametrize("workers", [0, 2])
def test_infinite_stream_without_decodable_samples_raises(tmp_path: Path, workers: int):
    write_set(tmp_path, 6, 3, corrupt=tuple(range(6)))
    start = time.monotonic()
    with pytest.raises(DataError, match="no decodable sample") as info:
        take(ShardStream(tmp_path, None, 2, shuffle_buffer=4), workers, 1)
    assert "\n" not in str(info.value) and time.monotonic() - start < 20


def test_infinite_stream_over_unreadable_shards_raises(tmp_path: Path):
    (tmp_path / "a.tar").write_bytes(b"not a tar" * 50)
    with pytest.warns(DataWarning), pytest.raises(DataError, match="no readable sample"):
        take(ShardStream(tmp_path, None, 2), 0, 1)


def test_bad_arguments(tmp_path: Path):
    write_set(tmp_path, 2, 2)
    with pytest.raises(DataError, match="no shards matched"):
        ShardStream(tmp_path / "nothing-here-*.tar", None, 2)
    for kwargs in ({"epochs": 2}, {"rank": 2, "world_size": 2}, {"shuffle_buffer": -1}):
        with pytest.raises(ValueError):
            ShardStream(tmp_path, None, 2, **kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        ShardStream(tmp_path, None, 0)


def test_resume_fast_forwards_without_decoding(tmp_path: Path):
    write_set(tmp_path, 24, 6)
    calls: list[str] = []

    def counting(raw: dict[str, Any]) -> dict[str, Any]:
        calls.append(raw["__key__"])
        return decode_sample(raw)

    position = StreamPosition()
    for batch in take(ShardStream(tmp_path, counting, 3, seed=4), 0, 5):
        position.update(batch)
    calls.clear()
    take(ShardStream(tmp_path, counting, 3, seed=4, state=position.state_dict()), 0, 1)
    assert len(calls) == 3  # only the next batch's samples were decoded


def test_warnings_are_rate_limited_with_a_summary(tmp_path: Path):
    write_set(tmp_path, 14, 14, corrupt=tuple(range(1, 13)))
    with pytest.warns(DataWarning) as record:
        assert len(read_samples(tmp_path)) == 2
    messages = [str(w.message) for w in record]
    assert len(messages) == 5  # three one by one, "10 ... so far", "12 ... in total"
    assert "10 corrupt samples skipped so far" in messages[3] and "12 corrupt samples skipped in total" in messages[4]


@IGNORE_DATA_WARNINGS
def test_all_corrupt_finite_stream_ends_and_read_samples_raises(tmp_path: Path):
    write_set(tmp_path, 4, 2, corrupt=(0, 1, 2, 3))
    assert take(ShardStream(tmp_path, None, 2, resampled=False), 0) == []
    with pytest.raises(DataError, match="no decodable sample"):
        read_samples(tmp_path)


@IGNORE_DATA_WARNINGS
def test_a_fully_corrupt_shard_does_not_stop_an_infinite_stream(tmp_path: Path):
    write_set(tmp_path, 16, 4, corrupt=(0, 1, 2, 3))  # shard 0 is all corrupt; each rank reads 2 of 4 shards
    batches = take(ShardStream(tmp_path, None, 2, shuffle_buffer=3, rank=0, world_size=2), 0, 40)
    assert len(batches) == 40 and batches[-1]["__stream__"]["skipped"] > 0
