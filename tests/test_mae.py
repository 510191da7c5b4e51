"""MAE model: shapes, the encoder sees only visible patches, save/load, bad inputs, CPU smoke run of the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mmgen.cli.main import main
from mmgen.errors import ConfigError, InvalidArgumentError
from mmgen.models.mim import MaskedAutoencoder
from mmgen.registry import create_model, load_pretrained

TINY = dict(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
            decoder_heads=2)


def tiny(**overrides: object) -> MaskedAutoencoder:
    torch.manual_seed(0)
    model = create_model("mae-tiny-test", **{**TINY, **overrides})
    assert isinstance(model, MaskedAutoencoder)
    return model


def images(batch: int = 4, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_patchify_round_trip_and_output_shapes() -> None:
    model = tiny()
    x = images()
    assert torch.equal(model.unpatchify(model.patchify(x)), x)
    out = model(x)
    assert out.pred.shape == (4, 16, 16) and out.mask.shape == (4, 16)
    assert out.mask.sum(1).tolist() == [12] * 4
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(("sees", "tokens"), [("visible", 1 + 4), ("all", 1 + 16)])
def test_encoder_sees_only_visible_patches(sees: str, tokens: int) -> None:
    model = tiny(encoder_sees=sees)
    seen: list[tuple[int, ...]] = []
    model.encoder.blocks[0].register_forward_hook(lambda mod, args, out: seen.append(tuple(args[0].shape)))
    model(images())
    assert seen == [(4, tokens, 32)]


def test_loss_only_counts_masked_patches() -> None:
    model = tiny()
    x = images()
    mask = model.masking(4, model.grid, generator=torch.Generator().manual_seed(0))
    out = model(x, mask)
    expected = (out.patch_loss * mask).sum() / mask.sum()
    assert torch.allclose(out.recon_loss, expected)
    recon = model.reconstruct(x, mask)
    keep = ~mask.view(4, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.allclose(recon[keep], x[keep])


def test_hard_patch_masking_trains_the_difficulty_head() -> None:
    model = tiny(masking="hard", hard_fraction=1.0)
    out = model(images(), progress=1.0)
    out.loss.backward()
    assert model.difficulty is not None and model.difficulty.weight.grad is not None
    assert model.predict_difficulty(images()).shape == (4, 16)
    with pytest.raises(ConfigError, match="hard"):
        tiny().predict_difficulty(images())


def test_save_and_load_give_identical_outputs(tmp_path: Path) -> None:
    model = tiny().eval()
    model.save_pretrained(tmp_path / "mae")
    same = load_pretrained(tmp_path / "mae")
    x = images()
    mask = model.masking(4, model.grid, generator=torch.Generator().manual_seed(0))
    assert torch.equal(model(x, mask).pred, same(x, mask).pred)
    assert torch.equal(model.features(x), same.features(x))


def test_bad_inputs_are_clear_errors() -> None:
    model = tiny()
    with pytest.raises(InvalidArgumentError, match="images"):
        model(torch.zeros(2, 3, 16, 16))
    with pytest.raises(InvalidArgumentError, match="images"):
        model(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(InvalidArgumentError, match="mask"):
        model(images(2), torch.zeros(2, 16, dtype=torch.bool))  # nothing masked
    with pytest.raises(InvalidArgumentError, match="mask"):
        model(images(2), torch.tensor([[True] * 3 + [False] * 13, [True] * 4 + [False] * 12]))
    with pytest.raises(ConfigError, match="patch_size"):
        tiny(patch_size=5)
    with pytest.raises(ConfigError, match="encoder_sees"):
        tiny(encoder_sees="some")
    with pytest.raises(InvalidArgumentError, match="mask_ratio"):
        tiny(mask_ratio=1.0)


def test_cli_smoke_run_writes_model_metrics_and_reconstruction_grids(labelled_shards: Path, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    code = main(["train", "mae", "--data", str(labelled_shards), "--out", str(run), "--model", "mae-tiny-test",
                 "image_size=12", "patch_size=4", "steps=4", "batch_size=8", "eval_every=4", "sample_every=2",
                 "log_every=2", "ckpt_every=4", "progress=false", "--probe-train", "64"])
    assert code == 0
    assert (run / "model" / "config.json").is_file()
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["reconstruction_000002.png",
                                                                       "reconstruction_000004.png"]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/probe_linear" in r for r in records) and any("recon_mse" in r for r in records)
    capsys.readouterr()
    assert main(["eval", "probe", "--model", str(run), "--data", str(labelled_shards), "--baseline"]) == 0
    printed = capsys.readouterr().out
    assert "model: linear" in printed and "random-init" in printed and "pixels" in printed
    assert "(dim 64)" in printed  # cls + mean patch token of the 32-wide encoder
    assert main(["eval", "probe", "--model", str(run), "--data", str(labelled_shards), "--last-blocks", "2"]) == 0
    assert "(dim 96)" in capsys.readouterr().out


def test_cli_user_errors_exit_2(labelled_shards: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "mae", "--data", str(labelled_shards), "--out", str(tmp_path / "r"), "mask_ratio=2",
                 "steps=1"]) == 2
    assert "mask_ratio" in capsys.readouterr().err
    assert main(["eval", "probe", "--model", str(tmp_path), "--data", str(labelled_shards)]) == 2
