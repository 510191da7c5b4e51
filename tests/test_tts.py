"""The TTS text front end (phonemes / characters) and the SpeechTTS model (shapes, padding, caching, saving)."""

from __future__ import annotations

import pytest
import torch

from mmgen.conditioning.phonemes import (
    SymbolVocabulary,
    check_text,
    espeak_available,
    phonemize,
    text_to_symbols,
    unsupported_characters,
)
from mmgen.errors import DataError, InvalidArgumentError
from mmgen.models.speech_tts import SpeechTTS
from mmgen.registry import create_model, load_pretrained
from mmgen.sampling.rvq import rvq_training_mask
from mmgen.training.tasks.speech import SpeechTTSModule, collate_speech, symbol_frames

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


# ----------------------------------------------------------------------------------------------- text front end
def test_check_text_rejects_empty_and_names_unsupported_characters():
    assert check_text("  Hello,   café  world! 42 ") == "Hello, café world! 42"
    assert unsupported_characters("naïve Zoë, 3 o'clock.") == []
    for empty in ("", "   \n"):
        with pytest.raises(InvalidArgumentError, match="non-empty"):
            check_text(empty)
    with pytest.raises(InvalidArgumentError, match=r"'日'.*'本'") as info:
        check_text("hello 日本 🙂")
    assert "'🙂'" in str(info.value)


def test_characters_front_end_and_vocabulary():
    symbols = text_to_symbols("Hello, World.", "characters")
    assert symbols == "hello, world."
    vocab = SymbolVocabulary.build([symbols, "abc"])
    assert vocab.decode(vocab.encode("hello")) == "hello"
    assert len(vocab) == len(set("hello, world.abc")) + 1
    ids, mask = vocab.batch(["abc", "hello, world."])
    assert ids.shape == (2, 13) and mask.sum(1).tolist() == [3, 13] and (ids[~mask] == 0).all()
    with pytest.raises(InvalidArgumentError, match=r"'x'.*'y'"):
        vocab.encode("xylo")
    assert vocab.decode(vocab.encode("xhello", strict=False)) == "hello"      # unknown symbols skipped
    with pytest.raises(InvalidArgumentError, match="speakable"):
        vocab.encode("xyz", strict=False)
    with pytest.raises(InvalidArgumentError, match="text_kind"):
        text_to_symbols("hi", "letters")  # type: ignore[arg-type]


@needs_espeak
def test_phonemize_with_espeak_is_cached_and_matches_the_dataset_format():
    first = phonemize("Hello there. How are you?", "en-gb+f3")
    assert "ˈ" in first and "\n" not in first and " " in first              # IPA, clause lines joined by spaces
    assert phonemize("Hello there. How are you?", "en-gb") == first           # variants do not change phonemes
    assert text_to_symbols("Hello there. How are you?", "phonemes", "en-gb") == first
    with pytest.raises(InvalidArgumentError, match="'ж'"):
        phonemize("жук")


# ------------------------------------------------------------------------------------------------------ model
def _model(**overrides) -> SpeechTTS:
    torch.manual_seed(0)
    return create_model("tts-tiny", **overrides).eval()


def _condition(model: SpeechTTS, batch: int = 2, drop: list[bool] | None = None):
    ids = torch.randint(1, len(model.config.symbols) + 1, (batch, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1:, 6:] = False
    ids = ids.masked_fill(~mask, 0)
    drop_text = torch.tensor(drop) if drop is not None else None
    voices = torch.tensor([0, model.unknown_voice] * batch)[:batch]
    rates = torch.tensor([150.0, float("nan")] * batch)[:batch]
    return model.encode_text(ids, mask, voices, rates, drop_text)


def test_forward_shapes_and_gradients_reach_every_part():
    model = _model().train()
    condition = _condition(model)
    tokens = torch.randint(0, 32, (2, 2, 20))
    masked = rvq_training_mask(tokens, model.mask_id, lengths=torch.tensor([20, 14]))
    logits = model(masked.inputs, condition, torch.tensor([20, 14]))
    assert logits.shape == (2, 2 * 20, 32) and torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits[masked.loss_mask.reshape(2, -1)], tokens[masked.loss_mask])
    (loss + condition.predicted_frames().sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not [n for n in missing if not n.startswith("transformer.learned_positions")], missing


def test_padding_frames_do_not_change_real_frames():
    model = _model()
    condition = _condition(model, batch=1)
    tokens = torch.randint(0, 33, (1, 2, 12))
    alone = model(tokens, condition)
    padded = torch.cat([tokens, torch.full((1, 2, 5), model.mask_id)], dim=-1)
    with_padding = model(padded, condition, torch.tensor([12])).reshape(1, 2, 17, -1)[:, :, :12]
    torch.testing.assert_close(with_padding.reshape(1, 24, -1), alone, atol=1e-5, rtol=1e-5)


def test_cached_context_and_dropped_text():
    model = _model()
    condition = _condition(model, drop=[False, True])
    tokens = torch.randint(0, 33, (2, 2, 10))
    torch.testing.assert_close(model(tokens, condition, context_kv=model.project_context(condition)),
                               model(tokens, condition))
    assert condition.num_symbols.tolist() == [9, 0]
    assert condition.context_mask[1].tolist() == [True, True] + [False] * 9      # only voice + rate visible
    assert condition.predicted_frames()[1] == 0


def test_stacked_guidance_branches_equal_separate_forwards():
    model = _model()
    condition = _condition(model, batch=1)
    null = condition.without_text()
    assert null.context_mask[0].tolist() == [True, True] + [False] * 9 and null.num_symbols.tolist() == [0]
    tokens = torch.randint(0, 33, (1, 2, 10))
    kv = model.project_context(condition)
    stacked_kv = [(torch.cat([k, k]), torch.cat([v, v])) for k, v in kv]
    both = model(torch.cat([tokens, tokens]), condition.stack(null), context_kv=stacked_kv)
    torch.testing.assert_close(both[:1], model(tokens, condition), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[1:], model(tokens, null), atol=1e-5, rtol=1e-5)


def test_errors_name_the_problem():
    model = _model()
    condition = _condition(model, batch=1)
    with pytest.raises(InvalidArgumentError, match="at most 128"):
        model(torch.zeros(1, 2, 129, dtype=torch.long), condition)
    with pytest.raises(InvalidArgumentError, match=r"\[B, 2, n\]"):
        model(torch.zeros(1, 3, 10, dtype=torch.long), condition)
    with pytest.raises(InvalidArgumentError, match="ids in"):
        model(torch.full((1, 2, 10), 40), condition)
    with pytest.raises(InvalidArgumentError, match="en-us"):
        model.voice_id("klingon")
    assert model.voice_id(None) == model.unknown_voice == 2


def test_save_and_load_fp16(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "tts", dtype=torch.float16)
    loaded = load_pretrained(tmp_path / "tts")
    assert isinstance(loaded, SpeechTTS) and loaded.config.symbols == model.config.symbols
    tokens = torch.randint(0, 33, (1, 2, 10))
    torch.testing.assert_close(loaded(tokens, _condition(loaded, 1)), model(tokens, _condition(model, 1)),
                               atol=2e-2, rtol=2e-2)


def test_training_module_overfits_one_batch():
    torch.manual_seed(0)
    model = create_model("tts-tiny", dim=64, num_heads=4)
    module = SpeechTTSModule(model, text_dropout=0.0, style_dropout=0.0, prompt_prob=0.5)
    pattern = (torch.arange(30)[None, :] // 2 + 3 * torch.arange(2)[:, None]) % 8    # learnable from neighbours
    samples = [{"tokens": pattern[:, :n], "symbols": torch.randint(1, 20, (n // 3,)), "voice": v,
                "rate": 150.0} for n, v in ((24, 0), (18, 1), (30, 2))]
    batch = collate_speech(samples)
    assert batch["tokens"].shape == (3, 2, 30) and batch["lengths"].tolist() == [24, 18, 30]
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    losses = []
    for step in range(40):
        out = module(batch, step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.metrics["token_loss"]))
    assert sum(losses[-5:]) / 5 < min(1.5, 0.5 * sum(losses[:5]) / 5)          # well below log(8) = 2.08
    assert float(out.metrics["length_error"]) < 0.3


# ------------------------------------------------------------------------------------------ duration alignment
def test_frames_follow_the_symbol_spans():
    """Frame f carries the state of the symbol whose (scaled) span covers it, plus its position code."""
    model = _model(alignment="durations")
    ids = torch.tensor([[1, 2, 3]])
    mask = torch.ones_like(ids, dtype=torch.bool)
    spans = torch.tensor([[2.0, 0.0, 6.0]])                              # symbol 2 (a stress mark) gets no frame
    condition = model.encode_text(ids, mask, torch.tensor([0]), None, symbol_frames=spans)
    assert condition.predicted_frames().tolist() == [8.0]
    states = model.aligned_projection(condition.text_states)[0]
    bound = float(model.frame_progress_scale.detach().abs()) * 1.0001            # |sin|, |cos| <= 1
    for frames, first in ((8, 2), (16, 4)):                               # the spans stretch with the length
        features = model._frame_features(condition, torch.tensor([frames]), frames)[0]
        expected = torch.stack([states[0]] * first + [states[2]] * (frames - first))
        assert (features - expected).abs().max() <= bound


def test_duration_model_predicts_per_symbol_frames_and_learns_them():
    torch.manual_seed(0)
    model = create_model("tts-tiny", dim=64, num_heads=4, alignment="durations")
    module = SpeechTTSModule(model, text_dropout=0.5, style_dropout=0.0, prompt_prob=0.0)
    symbols = torch.randint(1, 20, (4, 8))
    durations = (symbols % 3).float() * 2                                     # frames follow the symbol identity
    tokens = torch.randint(0, 32, (4, 2, int(durations.sum(1).max())))
    samples = [{"tokens": tokens[i, :, : int(durations[i].sum())], "symbols": symbols[i], "voice": 0,
                "rate": 150.0, "durations": durations[i]} for i in range(4)]
    batch = collate_speech(samples)
    assert batch["durations"].shape == (4, 8)
    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    for step in range(150):
        out = module(batch, step)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    assert float(out.metrics["length_loss"]) < 0.05 and float(out.metrics["length_error"]) < 0.1
    condition = model.eval().encode_text(batch["symbols"], batch["symbol_mask"], batch["voice"], batch["rate"])
    torch.testing.assert_close(condition.symbol_frames, batch["durations"], atol=0.5, rtol=0.1)


def test_duration_model_refuses_batches_without_durations():
    model = create_model("tts-tiny", alignment="durations")
    module = SpeechTTSModule(model)
    batch = collate_speech([{"tokens": torch.zeros(2, 6, dtype=torch.long), "symbols": torch.tensor([1, 2]),
                             "voice": 0, "rate": 150.0}])
    assert batch["durations"] is None
    with pytest.raises(DataError, match="alignment=uniform"):
        module(batch, 0)
    with pytest.raises(InvalidArgumentError, match="alignment"):
        create_model("tts-tiny", alignment="attention")


def test_symbol_frames_scale_to_the_token_count_and_cut():
    frames = symbol_frames([0.1, 0.0, 0.3], total_frames=20)
    torch.testing.assert_close(frames, torch.tensor([5.0, 0.0, 15.0]))
    cut = symbol_frames([0.1, 0.0, 0.3], total_frames=20, keep_frames=8)
    torch.testing.assert_close(cut, torch.tensor([5.0, 0.0, 3.0]))
