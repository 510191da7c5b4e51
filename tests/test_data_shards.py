"""Shard listing (folders, brace patterns, globs, lists) and raw tar reading (key grouping, damaged tars)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from mmgen.data.shards import expand_shards, iter_raw_samples, split_key
from mmgen.errors import DataError


def _touch_tars(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        with tarfile.open(path, "w"):
            pass
        paths.append(str(path))
    return paths


@pytest.fixture
def shard_dir(tmp_path: Path) -> Path:
    _touch_tars(tmp_path / "d", [f"train-{i:06d}.tar" for i in range(3)] + ["holdout-000000.tar"])
    (tmp_path / "d" / "notes.txt").write_text("not a shard")
    return tmp_path / "d"


def test_folder_lists_sorted_tars_and_filters_by_split(shard_dir: Path):
    everything = expand_shards(shard_dir)
    assert [Path(p).name for p in everything] == ["holdout-000000.tar"] + [f"train-{i:06d}.tar" for i in range(3)]
    train = expand_shards(str(shard_dir), split="train")
    assert [Path(p).name for p in train] == [f"train-{i:06d}.tar" for i in range(3)]


def test_brace_glob_comma_and_list_specs(shard_dir: Path):
    d = str(shard_dir)
    brace = expand_shards(f"{d}/train-{{000000..000002}}.tar")
    assert brace == [f"{d}/train-{i:06d}.tar" for i in range(3)]
    assert expand_shards(f"{d}/train-*.tar") == brace
    # commas inside braces belong to the pattern; top-level commas separate specs
    assert expand_shards(f"{d}/train-00000{{0,1}}.tar,{d}/holdout-000000.tar") == [
        f"{d}/train-000000.tar", f"{d}/train-000001.tar", f"{d}/holdout-000000.tar"]
    assert expand_shards([f"{d}/holdout-*.tar", Path(d) / "train-000002.tar"]) == [
        f"{d}/holdout-000000.tar", f"{d}/train-000002.tar"]
    assert expand_shards([brace[0], brace[0]]) == [brace[0]]  # de-duplicated


@pytest.mark.parametrize("spec", ["{d}/missing-*.tar", "{d}/../empty", "{d}/train-{{000007..000009}}.tar"])
def test_no_match_raises_data_error_naming_the_spec(shard_dir: Path, spec: str):
    (shard_dir.parent / "empty").mkdir()
    spec = spec.format(d=shard_dir)
    with pytest.raises(DataError, match=r"missing-|empty|000007"):
        expand_shards(spec)


def test_split_filter_with_no_match_raises(shard_dir: Path):
    with pytest.raises(DataError, match="validation"):
        expand_shards(shard_dir, split="validation")


def test_split_key_follows_webdataset():
    assert split_key("0001.jpg") == ("0001", "jpg")
    assert split_key("a/b.c/0001.seg.PNG") == ("a/b.c/0001", "seg.png")
    assert split_key("README") is None


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_grouping_by_key_with_folders_and_meta_members(tmp_path: Path):
    path = tmp_path / "s.tar"
    path.write_bytes(_tar_bytes([("__meta__", b"x"), ("x/001.jpg", b"j"), ("x/001.txt", b"t"), ("x/001.json", b"{}"),
                                 ("y/001.jpg", b"k"), ("002.cls", b"3"), ("002.cls", b"4")]))
    samples = list(iter_raw_samples(str(path)))
    assert [(s["__key__"], sorted(k for k in s if not k.startswith("__"))) for s in samples] == [
        ("x/001", ["jpg", "json", "txt"]), ("y/001", ["jpg"]), ("002", ["cls"]), ("002", ["cls"])]
    assert samples[0]["__url__"] == str(path)


def test_truncated_and_garbage_tars_report_instead_of_raising(tmp_path: Path):
    data = _tar_bytes([(f"{i:03d}.bin", bytes(3000)) for i in range(4)])
    truncated, garbage = tmp_path / "t.tar", tmp_path / "g.tar"
    truncated.write_bytes(data[: 512 + 3584 + 700])  # inside the second member
    garbage.write_bytes(b"this is not a tar file" * 40)
    errors: list[str] = []
    kept = list(iter_raw_samples(str(truncated), lambda p, exc: errors.append(p)))
    assert [s["__key__"] for s in kept] == ["000"]  # complete samples before the damage are kept
    assert list(iter_raw_samples(str(garbage), lambda p, exc: errors.append(p))) == []
    assert errors == [str(truncated), str(garbage)]
    with pytest.raises(tarfile.ReadError):
        list(iter_raw_samples(str(garbage)))
