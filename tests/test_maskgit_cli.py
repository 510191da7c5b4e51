"""CPU smoke run of `mmgen train maskgit` and the generate/inpaint/outpaint/vary commands, with bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmgen import create_model
from mmgen.cli.main import main

TOKENIZER = dict(image_size=12, in_channels=1, out_channels=1, block_out_channels=[8, 16, 16], layers_per_block=1,
                 latent_channels=8, norm_num_groups=8, mid_block_attention=False, codebook_size=32, codebook_dim=4,
                 kmeans_init=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from conftest import write_labelled_shards

    root = tmp_path_factory.mktemp("maskgit")
    shards = write_labelled_shards(root / "shards", train=48, holdout=16)
    torch.manual_seed(0)
    create_model("vq-mnist", **TOKENIZER).save_pretrained(root / "tokenizer")
    code = main(["train", "maskgit", "--data", str(shards), "--tokenizer", str(root / "tokenizer"), "--out",
                 str(root / "run"), "steps=4", "batch_size=8", "ckpt_every=2", "sample_every=4", "log_every=2",
                 "dim=32", "depth=1", "num_heads=2", "num_classes=4", "progress=false", "--sample-steps", "2"])
    assert code == 0
    Image.fromarray((np.random.default_rng(0).random((12, 12)) * 255).astype(np.uint8)).save(root / "digit.png")
    mask = np.zeros((12, 12), np.uint8)
    mask[6:, :] = 255
    Image.fromarray(mask).save(root / "mask.png")
    return root


def test_training_writes_a_pipeline_and_samples(trained):
    run = trained / "run"
    assert (run / "pipeline" / "pipeline.json").is_file()
    assert (run / "model" / "config.json").is_file() and (run / "curves.png").is_file()
    assert list((run / "samples").glob("*.png"))


def test_generate_and_edit_commands(trained, capsys):
    pipe, out = str(trained / "run" / "pipeline"), trained / "out"
    assert main(["generate", pipe, "--class", "2", "--num", "4", "--steps", "3", "--guidance", "2", "--seed", "1",
                 "--out", str(out / "grid.png")]) == 0
    assert Image.open(out / "grid.png").size[0] > 12
    assert main(["generate", pipe, "--class", "1", "--num", "3", "--steps", "2", "--out", str(out / "many"),
                 "--guidance", "3", "--guidance-schedule", "linear", "--top-k", "5", "--top-p", "0.9",
                 "--choice-temperature", "2", "--sampler", "random-order"]) == 0
    assert len(list((out / "many").glob("*.png"))) == 3
    image, mask = str(trained / "digit.png"), str(trained / "mask.png")
    assert main(["inpaint", pipe, "--image", image, "--mask", mask, "--class", "1", "--steps", "2",
                 "--out", str(out / "inpainted.png")]) == 0
    assert main(["outpaint", pipe, "--image", image, "--direction", "right", "--extend", "2", "--class", "1",
                 "--steps", "2", "--out", str(out / "wide.png")]) == 0
    assert Image.open(out / "wide.png").size == (12 + 2 * 4, 12)
    assert main(["vary", pipe, "--image", image, "--strength", "0.5", "--class", "3", "--steps", "2",
                 "--out", str(out / "varied.png")]) == 0


@pytest.mark.parametrize(("extra", "expected"), [
    (["--class", "9"], "class: expected a class id in [0, 3], got 9"),
    (["--class", "1", "--steps", "0"], "argument --steps: expected a positive integer, got 0"),
    (["--class", "1", "--guidance", "-1"], "argument --guidance: expected a number >= 0, got -1.0"),
])
def test_bad_generate_arguments_are_one_line_errors(trained, capsys, extra, expected):
    with pytest.raises(SystemExit) if "argument" in expected else _no_raise() as info:
        code = main(["generate", str(trained / "run" / "pipeline"), "--out", str(trained / "x.png"), *extra])
    err = capsys.readouterr().err
    assert (info.value.code if info else code) == 2
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_mask_size_mismatch_is_a_clear_error(trained, capsys):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(trained / "small_mask.png")
    code = main(["inpaint", str(trained / "run" / "pipeline"), "--image", str(trained / "digit.png"),
                 "--mask", str(trained / "small_mask.png"), "--class", "1", "--out", str(trained / "y.png")])
    err = capsys.readouterr().err
    assert code == 2 and "--mask: expected a mask of the image's size 12x12" in err


class _no_raise:
    value = None

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_pretokenized_shards_train_the_same_way(trained, tmp_path):
    shards, tokens = trained / "shards", tmp_path / "tokens"
    assert main(["tokenize", "shards", "--model", str(trained / "tokenizer"), "--data", str(shards),
                 "--out", str(tokens)]) == 0
    from mmgen.data import read_samples
    from mmgen.training.tasks.maskgit import decode_image_or_tokens

    sample = read_samples(tokens, decode_image_or_tokens, limit=1, split="train")[0]
    assert sample["tokens"].shape == (3, 3) and sample["tokens"].dtype == torch.long and sample["label"] >= 0
    assert main(["train", "maskgit", "--data", str(tokens), "--out", str(tmp_path / "run"), "steps=2",
                 "batch_size=4", "dim=32", "depth=1", "num_heads=2", "num_classes=4", "codebook_size=32",
                 "grid=[3,3]", "progress=false"]) == 0
