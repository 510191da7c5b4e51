"""HFCLIPTextEncoder: spec strings, options (layer / padding / mask), save + reload, parity with transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmgen.conditioning import load_text_encoder
from mmgen.conditioning.hf_clip import HFCLIPOptions, HFCLIPTextEncoder
from mmgen.errors import CheckpointError, InvalidArgumentError

WORDS = ["a", "red", "blue", "circle", "square", "cat", "hello", "world"]


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of byte-level BPE (GPT-2 / CLIP), in byte order."""
    kept = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    out, extra = [], 0
    for byte in range(256):
        out.append(chr(byte) if byte in kept else chr(256 + extra))
        extra += byte not in kept
    return out


def tiny_clip_tokenizer(max_length: int = 12):
    """A CLIP BPE tokenizer over bytes plus merges that make each of ``WORDS`` one token."""
    from transformers import CLIPTokenizer

    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    merges = []
    for word in WORDS:
        pieces = [*word[:-1], word[-1] + "</w>"]
        while len(pieces) > 1:
            merges.append((pieces[0], pieces[1]))
            pieces = [pieces[0] + pieces[1], *pieces[2:]]
            vocab.setdefault(pieces[0], len(vocab))
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(dict.fromkeys(merges)), model_max_length=max_length)


def tiny_clip_text_model(tokenizer, *, hidden: int = 16, projection: int | None = 12, layers: int = 3, seed: int = 0):
    """A random ``CLIPTextModelWithProjection`` (or ``CLIPTextModel`` when ``projection`` is None)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                            num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=16,
                            projection_dim=projection or hidden, bos_token_id=tokenizer.bos_token_id,
                            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)
    return model.eval()


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """diffusers layout: ROOT/text_encoder (model) + ROOT/tokenizer."""
    root = tmp_path_factory.mktemp("clip")
    tokenizer = tiny_clip_tokenizer()
    tiny_clip_text_model(tokenizer).save_pretrained(root / "text_encoder")
    tokenizer.save_pretrained(root / "tokenizer")
    return root


def test_defaults_match_transformers_last_layer_and_mask(clip_folder: Path) -> None:
    from transformers import CLIPTextModelWithProjection

    encoder = load_text_encoder(f"hf-clip:{clip_folder / 'text_encoder'}")
    assert isinstance(encoder, HFCLIPTextEncoder)
    assert (encoder.hidden_size, encoder.pooled_size, encoder.max_length) == (16, 12, 12)
    out = encoder.encode(["a red circle", "cat"])
    assert out.states.shape == (2, 5, 16) and out.pooled.shape == (2, 12)
    assert out.mask.tolist() == [[True] * 5, [True] * 3 + [False] * 2]  # bos, words, eos; padded to longest
    reference = CLIPTextModelWithProjection.from_pretrained(str(clip_folder / "text_encoder")).eval()
    ids = encoder.tokenizer(["a red circle", "cat"], padding="longest", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = reference(input_ids=ids)
    torch.testing.assert_close(out.states, expected.last_hidden_state)
    torch.testing.assert_close(out.pooled, expected.text_embeds)


def test_amused_options_penultimate_layer_padding_attended(clip_folder: Path) -> None:
    spec = f"hf-clip:{clip_folder / 'text_encoder'}?hidden_layer=-2&padding=max_length&mask_padding=false"
    encoder = load_text_encoder(spec)
    assert encoder.options == HFCLIPOptions(hidden_layer=-2, padding="max_length", mask_padding=False)
    assert encoder.spec == spec
    out = encoder.encode(["a red circle", ""])
    assert out.states.shape == (2, 12, 16) and bool(out.mask.all())
    ids = encoder.tokenizer(["a red circle", ""], padding="max_length", max_length=12, return_tensors="pt").input_ids
    with torch.no_grad():
        hidden = encoder.model(input_ids=ids, output_hidden_states=True).hidden_states[-2]
    torch.testing.assert_close(out.states, hidden)
    last = load_text_encoder(spec.split("?")[0]).encode(["a red circle"]).states
    assert (out.states[:1, :5] - last).abs().max() > 1e-2  # a different layer than the default


def test_save_pretrained_round_trip_keeps_options_and_relative_spec(clip_folder: Path, tmp_path: Path) -> None:
    options = HFCLIPOptions(hidden_layer=-2, padding="max_length", mask_padding=False, max_length=10)
    encoder = HFCLIPTextEncoder.from_pretrained(clip_folder / "text_encoder", options)
    encoder.save_pretrained(tmp_path / "pipe" / "text_encoder", dtype=torch.float16)
    reloaded = load_text_encoder("hf-clip:text_encoder", base_dir=tmp_path / "pipe")
    assert reloaded.options == options and reloaded.spec == "hf-clip:text_encoder"
    assert reloaded.model.dtype == torch.float32
    a, b = encoder.encode("hello world"), reloaded.encode("hello world")
    assert a.states.shape == (1, 10, 16)
    torch.testing.assert_close(a.states, b.states, atol=5e-3, rtol=0)  # fp16 weights on disk


def test_plain_clip_text_model_pools_eos_state(tmp_path: Path) -> None:
    tokenizer = tiny_clip_tokenizer()
    model = tiny_clip_text_model(tokenizer, projection=None)
    model.save_pretrained(tmp_path / "enc")
    tokenizer.save_pretrained(tmp_path / "enc")  # tokenizer inside the model folder also works
    encoder = load_text_encoder(f"hf-clip:{tmp_path / 'enc'}")
    out = encoder.encode(["blue square"])
    assert encoder.pooled_size == 16
    torch.testing.assert_close(out.pooled, out.states[:, 3])  # pooler output = final state at the EOS token


def test_errors_are_one_line(clip_folder: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        load_text_encoder(f"hf-clip:{tmp_path}")
    with pytest.raises(InvalidArgumentError, match="hf-clip option"):
        load_text_encoder(f"hf-clip:{clip_folder / 'text_encoder'}?layer=3")
    with pytest.raises(InvalidArgumentError, match="padding"):
        load_text_encoder(f"hf-clip:{clip_folder / 'text_encoder'}?padding=left")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError):
        load_text_encoder(f"hf-clip:{tmp_path}")
