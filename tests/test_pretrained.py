"""Configs, checkpoints and the model registry."""

from __future__ import annotations

import json

import pytest
import torch

from mmgen import create_model, list_models, load_pretrained
from mmgen.errors import CheckpointError, ConfigError, InvalidArgumentError
from mmgen.models.digit_classifier import DigitClassifier, DigitClassifierConfig
from mmgen.pretrained import load_state_dict
from mmgen.registry import get_config, load_configs, register_config


def _tiny() -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier(DigitClassifierConfig(channels=(8, 16), feature_dim=16)).eval()


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "digit_classifier" and config["channels"] == [8, 16]
    again = DigitClassifier.from_pretrained(tmp_path)
    assert again.config == model.config
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), again(x))
    assert torch.equal(model(x), load_pretrained(tmp_path)(x))


def test_half_precision_save_loads_back_as_fp32(tmp_path):
    model = _tiny()
    model.save_pretrained(tmp_path, dtype=torch.float16)
    again = DigitClassifier.from_pretrained(tmp_path)
    assert next(again.parameters()).dtype == torch.float32
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x), again(x), atol=1e-2)


def test_missing_folder_and_files_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        DigitClassifier.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match=r"config\.json: missing"):
        DigitClassifier.from_pretrained(tmp_path)
    _tiny().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: weights file not found"):
        DigitClassifier.from_pretrained(tmp_path)


def test_corrupt_weights_and_config_are_clear_errors(tmp_path):
    _tiny().save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors"):
        DigitClassifier.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        DigitClassifier.from_pretrained(tmp_path)


def test_mismatched_checkpoint_names_keys_and_shapes(tmp_path):
    _tiny().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["feature_dim"] = 32
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"shape mismatch.*to_features"):
        DigitClassifier.from_pretrained(tmp_path)
    config["model_type"] = "something_else"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="model_type is 'something_else'"):
        DigitClassifier.from_pretrained(tmp_path)


def test_unknown_config_key_is_named(tmp_path):
    _tiny().save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["colour"] = "red"
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['colour'\]"):
        DigitClassifier.from_pretrained(tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickles_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(2), "evil": _Evil()}, tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_state_dict(tmp_path / "weights.pt")
    (tmp_path / "weights.pkl").write_bytes(b"\x80\x04N.")
    with pytest.raises(CheckpointError, match="pickle files are never loaded"):
        load_state_dict(tmp_path / "weights.pkl")
    torch.save({"weight": torch.ones(2)}, tmp_path / "plain.pt")
    assert torch.equal(load_state_dict(tmp_path / "plain.pt")["weight"], torch.ones(2))


def test_registry_create_list_and_user_configs(tmp_path, monkeypatch):
    assert "digit-classifier-mnist" in list_models()
    assert isinstance(create_model("digit-classifier-mnist"), DigitClassifier)
    with pytest.raises(InvalidArgumentError, match="model name"):
        create_model("no-such-model")
    user = tmp_path / "mine.json"
    user.write_text(json.dumps({"tiny-judge": {"base": "digit-classifier-mnist", "channels": [4], "num_classes": 3}}))
    assert load_configs(user) == ["tiny-judge"]
    model = create_model("tiny-judge", feature_dim=8)
    assert model.config.channels == (4,) and model.config.num_classes == 3 and model.config.feature_dim == 8
    assert model(torch.randn(1, 1, 28, 28)).shape == (1, 3)
    with pytest.raises(ConfigError, match="unknown key"):
        get_config("tiny-judge", nonsense=1)
    with pytest.raises(InvalidArgumentError):
        register_config("tiny-judge", "digit_classifier", {})


def test_user_configs_from_environment(tmp_path, monkeypatch):
    import mmgen.registry as registry

    user = tmp_path / "env.json"
    user.write_text(json.dumps({"env-judge": {"model_type": "digit_classifier", "num_classes": 5}}))
    monkeypatch.setenv("MMGEN_CONFIGS", str(user))
    monkeypatch.setattr(registry, "_builtins_loaded", False)
    assert "env-judge" in list_models("env-*")
    assert create_model("env-judge").config.num_classes == 5
