"""timm export: the folder loads with nothing but timm and gives mmgen's features (max abs diff <= 1e-5)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from mmgen.cli.main import main
from mmgen.errors import ConfigError, InvalidArgumentError
from mmgen.interop.timm_export import export_timm, find_encoder
from mmgen.registry import create_model

TINY = dict(image_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=2)


def _randomize(model: torch.nn.Module) -> None:
    """Give every weight (norms and biases too) non-trivial values so parity checks all of them."""
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.1 * torch.randn_like(param))


@pytest.mark.parametrize(("name", "pool"), [("mae-tiny-test", "avg"), ("mae-tiny-test", "token"),
                                            ("beit-tiny-test", "avg")])
def test_exported_folder_loads_in_timm_with_identical_features(tmp_path: Path, name: str, pool: str) -> None:
    model = create_model(name, **TINY, global_pool=pool).eval()
    _randomize(model)
    export_timm(model, tmp_path / "timm")
    config = json.loads((tmp_path / "timm" / "config.json").read_text())
    assert config["architecture"].startswith("vit_") and config["model_args"]["embed_dim"] == 32
    assert config["pretrained_cfg"]["input_size"] == [1, 16, 16]
    assert config["pretrained_cfg"]["mean"] == [0.5] and config["pretrained_cfg"]["std"] == [0.5]
    assert (tmp_path / "timm" / "model.safetensors").is_file()

    loaded = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True, num_classes=0).eval()
    images01 = torch.rand(5, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    data_config = timm.data.resolve_data_config(model=loaded)
    assert data_config["input_size"] == (1, 16, 16)
    mean, std = torch.tensor(data_config["mean"]).view(1, -1, 1, 1), torch.tensor(data_config["std"]).view(1, -1, 1, 1)
    with torch.no_grad():
        theirs = loaded((images01 - mean) / std)
        ours = model.features(images01 * 2 - 1)
    assert theirs.shape == (5, 32)
    assert (theirs - ours).abs().max() <= 1e-5


def test_cli_export_checks_parity(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    create_model("mae-tiny-test", **TINY).save_pretrained(tmp_path / "run" / "model")
    assert main(["export", "timm", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "timm")]) == 0
    assert "max abs diff" in capsys.readouterr().out
    assert (tmp_path / "timm" / "config.json").is_file()


def test_non_mim_models_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    classifier = create_model("digit-classifier-mnist")
    with pytest.raises(ConfigError, match="ViT encoder"):
        find_encoder(classifier)
    classifier.save_pretrained(tmp_path / "clf")
    assert main(["export", "timm", "--model", str(tmp_path / "clf"), "--out", str(tmp_path / "o")]) == 2
    assert "not a MIM encoder" in capsys.readouterr().err


def test_probe_features_match_timm_tokens(tmp_path: Path) -> None:
    """The probe's features (cls + mean patch token; cls of the last N blocks) are timm's tokens, rearranged."""
    model = create_model("mae-tiny-test", **TINY).eval()
    _randomize(model)
    export_timm(model, tmp_path / "timm")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'timm'}", pretrained=True, num_classes=0).eval()
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        tokens = loaded.forward_features(images)
        theirs = torch.cat([tokens[:, 0], tokens[:, 1:].mean(1)], dim=1)
        assert (model.probe_features(images) - theirs).abs().max() <= 1e-5
        blocks = loaded.forward_intermediates(images, indices=2, norm=True, output_fmt="NLC",
                                              return_prefix_tokens=True, intermediates_only=True)
        theirs = torch.cat([prefix[:, 0] for _, prefix in blocks] + [tokens[:, 1:].mean(1)], dim=1)
        assert (model.probe_features(images, last_blocks=2) - theirs).abs().max() <= 1e-5
    with pytest.raises(InvalidArgumentError, match="last_blocks"):
        model.probe_features(images, last_blocks=3)
