"""BEiT-style MIM: token targets at masked patches, tokenizer grid checks, and a CPU smoke run of the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmgen.cli.main import main
from mmgen.errors import ConfigError, InvalidArgumentError
from mmgen.models.mim import MaskedImageModel
from mmgen.registry import create_model

TINY = dict(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, codebook_size=16)


def tiny(**overrides: object) -> MaskedImageModel:
    torch.manual_seed(0)
    model = create_model("beit-tiny-test", **{**TINY, **overrides})
    assert isinstance(model, MaskedImageModel)
    return model


def batch(size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 1, size, size, generator=g) * 2 - 1, torch.randint(0, 16, (3, 4, 4), generator=g)


def test_loss_is_on_masked_tokens_and_mask_token_replaces_them() -> None:
    model = tiny()
    images, targets = batch()
    out = model(images, targets)
    count = model.masking.num_masked(16)
    assert out.mask.sum(1).tolist() == [count] * 3 and out.logits.shape == (3, count, 16)
    out.loss.backward()
    assert model.encoder.mask_token is not None and model.encoder.mask_token.grad is not None
    # masked patches' pixels do not reach the encoder
    changed = images.clone()
    pixel_mask = out.mask.view(3, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    changed[pixel_mask] = 0.5
    with torch.no_grad():
        assert torch.allclose(model(images, targets, out.mask).logits, model(changed, targets, out.mask).logits)
    predicted = model.predict_tokens(images, out.mask, targets)
    assert torch.equal(predicted.view(3, 16)[~out.mask], targets.view(3, 16)[~out.mask])


def test_hard_masking_and_bad_targets() -> None:
    model = tiny(masking="hard")
    images, targets = batch()
    model(images, targets, progress=1.0).loss.backward()
    assert model.difficulty is not None and model.difficulty.weight.grad is not None
    with pytest.raises(InvalidArgumentError, match="targets"):
        model(images, torch.randint(0, 16, (3, 5, 5)))
    with pytest.raises(InvalidArgumentError, match="targets"):
        model(images, targets + 16)
    with pytest.raises(InvalidArgumentError, match="codebook_size"):
        tiny(codebook_size=1)


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random image tokenizer with a 4x4 token grid on 12 px images (3 px per token is not possible, so
    images are 16 px: two downsamplings)."""
    torch.manual_seed(0)
    tokenizer = create_model("vq-mnist", image_size=16, block_out_channels=(8, 8, 8), layers_per_block=1,
                             latent_channels=8, norm_num_groups=4, mid_block_attention=False, codebook_size=16,
                             codebook_dim=4, kmeans_init=False)
    return tokenizer.save_pretrained(tmp_path_factory.mktemp("tok") / "vq")


def test_cli_smoke_run(tokenizer_dir: Path, tmp_path: Path) -> None:
    from conftest import write_labelled_shards

    shards = write_labelled_shards(tmp_path / "shards", size=16, train=32, holdout=16)
    run = tmp_path / "run"
    code = main(["train", "mim", "--target", "vq", "--tokenizer", str(tokenizer_dir), "--data", str(shards),
                 "--out", str(run), "--model", "beit-tiny-test", "image_size=16", "steps=2", "batch_size=8",
                 "sample_every=2", "eval_every=2", "log_every=1", "ckpt_every=2", "progress=false",
                 "--probe-train", "32"])
    assert code == 0
    assert (run / "samples" / "tokens_000002.png").is_file()
    assert (run / "model" / "config.json").is_file()


def test_tokenizer_grid_must_match_patch_grid(tokenizer_dir: Path) -> None:
    from mmgen.training.tasks.mim import load_tokenizer

    with pytest.raises(ConfigError, match="token grid"):
        load_tokenizer(tokenizer_dir, (8, 8), 16)
