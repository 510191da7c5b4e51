"""``mmgen tokenize encode|decode`` and ``mmgen eval image-tokenizer``: round trips and one-line user errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmgen.cli.main import main
from mmgen.registry import create_model

TINY = dict(image_size=16, block_out_channels=(32, 32), layers_per_block=1, latent_channels=8, codebook_size=32,
            codebook_dim=4)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = create_model("vq-mnist", **TINY)
    model(torch.rand(4, 1, 16, 16) * 2 - 1)  # initialise the codebook
    model.eval().save_pretrained(root / "tok")
    for i in range(3):
        Image.fromarray((np.random.default_rng(i).random((20, 20)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / "rgb.png")
    (root / "notes.png").write_text("not an image")
    return root


def test_encode_decode_round_trip(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    images = [str(workspace / f"{i}.png") for i in range(3)]
    assert main(["tokenize", "encode", "--model", str(workspace / "tok"), *images,
                 "--out", str(workspace / "tokens.npy")]) == 0
    tokens = np.load(workspace / "tokens.npy")
    assert tokens.shape == (3, 8, 8) and tokens.dtype == np.int64
    assert main(["tokenize", "decode", "--model", str(workspace / "tok"), str(workspace / "tokens.npy"),
                 "--out", str(workspace / "recon")]) == 0
    assert sorted(p.name for p in (workspace / "recon").glob("*.png")) == ["000000.png", "000001.png", "000002.png"]
    # an RGB file is converted to the model's single channel
    assert main(["tokenize", "encode", "--model", str(workspace / "tok"), str(workspace / "rgb.png"),
                 "--out", str(workspace / "rgb.npy")]) == 0


def test_user_errors_are_one_line(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    tok = str(workspace / "tok")
    assert main(["tokenize", "encode", "--model", tok, str(workspace / "notes.png"), "--out",
                 str(workspace / "x.npy")]) == 2
    assert "notes.png: not a readable image" in capsys.readouterr().err
    np.save(workspace / "bad.npy", np.full((1, 4, 4), 99, dtype=np.int64))
    assert main(["tokenize", "decode", "--model", tok, str(workspace / "bad.npy"), "--out",
                 str(workspace / "o")]) == 2
    err = capsys.readouterr().err
    assert "ids in [0, 31]" in err and len(err.strip().splitlines()) == 1
    np.save(workspace / "float.npy", np.zeros((1, 4, 4), dtype=np.float32))
    assert main(["tokenize", "decode", "--model", tok, str(workspace / "float.npy"), "--out",
                 str(workspace / "o")]) == 2
    assert "integer token ids" in capsys.readouterr().err
    assert main(["tokenize", "encode", "--model", str(workspace), str(workspace / "0.png"), "--out",
                 str(workspace / "x.npy")]) == 2
    assert "config.json" in capsys.readouterr().err


def test_eval_image_tokenizer(workspace: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mmgen.data import mnist_arrays, write_labeled_arrays

    train_x, train_y, hold_x, hold_y = mnist_arrays(seed=0, holdout=20)
    write_labeled_arrays(tmp_path / "data", (train_x[:10], train_y[:10], hold_x, hold_y), source="test")
    code = main(["eval", "image-tokenizer", "--model", str(workspace / "tok"), "--data", str(tmp_path / "data"),
                 "--json", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr().out
    for key in ("psnr", "ssim", "usage", "perplexity", "rfid"):
        assert key in out
    assert (tmp_path / "r.json").is_file()


def test_rfid_features_must_read_the_tokenizer_s_channels(tmp_path: Path) -> None:
    """The shipped MNIST judge serves 1-channel tokenizers; for RGB ones rFID is skipped unless --features is given,
    and a --features network for the wrong channel count is a clear error."""
    from mmgen.cli.evaluate import load_features
    from mmgen.errors import InvalidArgumentError

    network, source = load_features(None, 3)
    assert network is None and "rFID skipped" in source
    create_model("digit-classifier-mnist").save_pretrained(tmp_path / "gray")
    with pytest.raises(InvalidArgumentError, match="3-channel"):
        load_features(tmp_path / "gray", 3)
    network, _ = load_features(tmp_path / "gray", 1)
    assert network is not None
