"""``mmgen data ...`` through the real CLI entry point (only the data command group is registered)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mmgen.cli.main as cli
from mmgen.data import read_manifest, read_samples


@pytest.fixture(autouse=True)
def only_data_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep these tests independent of the other command groups."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("mmgen.cli.data",))


def test_mnist_writes_train_and_balanced_holdout(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "mnist"
    assert cli.main(["data", "mnist", "--out", str(out), "--holdout", "200", "--samples-per-shard", "2000"]) == 0
    printed = capsys.readouterr().out
    assert "train: 4800" in printed and "holdout: 200" in printed and str(out) in printed
    splits = read_manifest(out)["splits"]
    assert splits["train"]["samples"] == 4800 and len(splits["train"]["shards"]) == 3
    names = sorted(p.name for p in out.glob("*.tar"))
    assert names == ["holdout-000000.tar"] + [f"train-00000{i}.tar" for i in range(3)]
    holdout = read_samples(out, split="holdout")
    labels = Counter(sample["label"] for sample in holdout)
    assert len(holdout) == 200 and len(labels) == 10 and max(labels.values()) <= 25
    assert holdout[0]["image"].shape == (1, 28, 28) and holdout[0]["meta"]["source"] == "mnist_5k"
    assert holdout[0]["meta"]["label"] == holdout[0]["label"]


def test_digits_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["data", "digits", "--out", str(tmp_path), "--holdout", "97"]) == 0
    assert "train: 1700" in capsys.readouterr().out
    assert cli.main(["data", "inspect", str(tmp_path), "--split", "holdout"]) == 0
    printed = capsys.readouterr().out
    assert "1 shard(s), 97 sample(s)" in printed and ".png: 97" in printed and ".cls: 97" in printed


def test_folder_command_counts_unreadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    src = tmp_path / "photos"
    (src / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "a.png")
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(src / "sub" / "b.jpeg")
    (src / "a.txt").write_text("black square")
    (src / "sub" / "c.jpg").write_bytes(b"not a jpeg")
    assert cli.main(["data", "folder", str(src), "--out", str(tmp_path / "out"), "--captions"]) == 0
    printed = capsys.readouterr().out
    assert "train: 2 images" in printed and "skipped 1 unreadable file(s), e.g. sub/c.jpg" in printed
    assert "captions: 1 of 2" in printed
    assert [s.get("text") for s in read_samples(tmp_path / "out")] == ["black square", None]


@pytest.mark.parametrize("argv", [
    ["data", "mnist", "--out", "X", "--samples-per-shard", "0"],
    ["data", "mnist"],
    ["data", "folder", "/no/such/folder", "--out", "X"],
    ["data", "nonsense"],
])
def test_usage_errors_exit_2_with_one_line(argv: list[str], capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_library_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert cli.main(["data", "mnist", "--out", str(tmp_path), "--holdout", "5000"]) == 2
    err = capsys.readouterr().err
    assert err == "mmgen data: error: holdout: expected an integer in [0, 5000), got 5000\n"
    assert cli.main(["data", "inspect", str(tmp_path / "missing-*.tar")]) == 2
    assert "no shards matched" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["mnist", "digits", "skimage", "folder", "inspect"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as info:
        cli.main(["data", command, "--help"])
    assert info.value.code == 0
    assert len(capsys.readouterr().out.splitlines()) > 5


def test_skimage_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    import mmgen.data.builtin as builtin

    images = [("camera", np.zeros((5, 6), np.uint8)), ("rocket", np.zeros((4, 4, 3), np.uint8))]
    monkeypatch.setattr(builtin, "skimage_images", lambda: images)  # the real loader is tested elsewhere
    assert cli.main(["data", "skimage", "--out", str(tmp_path)]) == 0
    assert "train: 2 captioned images" in capsys.readouterr().out
    assert [(s["text"], tuple(s["image"].shape)) for s in read_samples(tmp_path)] == [
        ("camera", (1, 5, 6)), ("rocket", (3, 4, 4))]
