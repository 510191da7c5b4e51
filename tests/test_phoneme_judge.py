"""The phoneme judge: symbols, CTC decoding, PER arithmetic, shapes and round trip, learning tone "utterances",
augmentations, and `mmgen train phoneme-judge` (with a tiny codec in the loop, and exact resume).

Fake shards hold tones and noise with stand-in espeak-ng "phonemes"; nothing here needs espeak-ng.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mmgen.cli.main import main
from mmgen.data.audio_augment import (
    CodecResynthesis,
    band_limit,
    codec_resynthesis,
    degrade_speech,
    spec_augment,
)
from mmgen.data.audio_io import encode_audio
from mmgen.data.writer import ShardWriter
from mmgen.errors import InvalidArgumentError
from mmgen.eval.intelligibility import edit_distance, load_phoneme_judge, phoneme_error_rate, score_transcripts
from mmgen.models.phoneme_judge import PhonemeJudge, ctc_greedy_decode, sound_symbols
from mmgen.registry import create_model

RATE = 16000


def test_sound_symbols_drop_marks_and_read_ascii_length():
    assert sound_symbols("həlˈoʊ ðˈɛɹ") == "həloʊðɛɹ"
    assert sound_symbols("ˌa:ftɜnˈʉːn") == "aːftɜnʉːn"
    assert sound_symbols("t\u0361ʃ-_|") == "tʃ"


def test_ctc_greedy_decode_collapses_repeats_and_drops_blanks():
    paths = torch.tensor([[1, 1, 0, 1, 2, 2, 0, 3], [0, 0, 2, 2, 2, 0, 1, 1]])
    log_probs = torch.nn.functional.one_hot(paths, 4).float().log_softmax(-1)
    assert ctc_greedy_decode(log_probs) == [[1, 1, 2, 3], [2, 1]]
    assert ctc_greedy_decode(log_probs, torch.tensor([4, 5])) == [[1, 1], [2]]


def test_edit_distance_and_per_arithmetic():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "") == 2
    result = score_transcripts(["abd", "de", ""], ["ˈa bc", "d ˌe", "fg"])  # marks dropped from references
    assert result.edits == [1, 0, 2] and result.reference_lengths == [3, 2, 2]
    assert math.isclose(result.per, 3 / 7) and result.item_per == [1 / 3, 0.0, 1.0]
    assert math.isclose(result.mean_item_per, (1 / 3 + 1) / 3) and result.references[0] == "abc"
    with pytest.raises(InvalidArgumentError, match="at least one sound symbol"):
        score_transcripts(["a"], ["ˈ "])
    with pytest.raises(InvalidArgumentError, match="one reference per utterance"):
        score_transcripts(["a", "b"], ["a"])


def test_tiny_judge_shapes_gradients_round_trip_and_transcribe(tmp_path: Path):
    torch.manual_seed(0)
    judge = create_model("phoneme-judge-tiny")
    assert judge.vocab_size == 9 and judge.num_parameters() < 50_000
    wav = torch.randn(2, 8000) * 0.1
    out = judge(wav, torch.tensor([8000, 5000]))
    assert out.log_probs.shape == (2, 26, 9) and out.lengths.tolist() == [26, 16]
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(2, 26))
    alone = judge(wav[1:, :5000]).log_probs  # padding changes nothing
    assert alone.shape == (1, 16, 9) and torch.allclose(alone[0], out.log_probs[1, :16], atol=1e-5)
    out.log_probs[:, :, 1].sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in judge.parameters())
    judge.save_pretrained(tmp_path / "judge")
    same = load_phoneme_judge(tmp_path / "judge")
    torch.testing.assert_close(same(wav).log_probs, judge.eval()(wav).log_probs)
    texts = judge.transcribe([torch.randn(4000) * 0.1, torch.randn(2, 6000) * 0.1], sample_rate=8000)
    assert len(texts) == 2 and all(set(t) <= set("abcdefgh") for t in texts)
    assert len(judge.transcribe(torch.zeros(1, 100), RATE)) == 1  # shorter than the STFT window
    with pytest.raises(InvalidArgumentError, match="wavs"):
        judge.transcribe([torch.zeros(0)], RATE)
    with pytest.raises(InvalidArgumentError, match="symbols"):
        create_model("phoneme-judge-tiny", symbols=["ab"])


def _tones(symbols: str, seconds: float = 0.12) -> torch.Tensor:
    """One 'utterance': a tone per symbol (frequency 400 Hz x (index + 1) of a..h), 40 ms gaps between them."""
    t = torch.arange(int(seconds * RATE)) / RATE
    gap = torch.zeros(int(0.04 * RATE))
    parts = [gap]
    for char in symbols:
        parts += [0.5 * torch.sin(2 * math.pi * 400 * ("abcdefgh".index(char) + 1) * t), gap]
    return torch.cat(parts)


def test_tiny_judge_learns_tone_utterances_to_zero_per():
    torch.manual_seed(0)
    judge = create_model("phoneme-judge-tiny")
    texts = ["abca", "hgd", "eefb"]  # a repeat ("ee") needs a blank between its tones
    wavs = [_tones(text) for text in texts]
    lengths = torch.tensor([len(w) for w in wavs])
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    labels = torch.nn.utils.rnn.pad_sequence([torch.tensor(["abcdefgh".index(c) + 1 for c in t]) for t in texts],
                                             batch_first=True)
    features, frames = judge.features(batch, lengths)
    optimizer = torch.optim.Adam(judge.parameters(), lr=3e-3)
    for _ in range(300):  # PER 0 after 70-110 steps for seeds 0-4
        out = judge.forward_features(features, frames)
        loss = torch.nn.functional.ctc_loss(out.log_probs.transpose(0, 1), labels, out.lengths,
                                            torch.tensor([len(t) for t in texts]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = phoneme_error_rate(judge, wavs, RATE, texts)
    assert result.per == 0.0, (result.hypotheses, float(loss))


def test_augmentations_keep_shapes_padding_and_determinism():
    wav = torch.randn(3, 4000) * 0.2
    lengths = torch.tensor([4000, 3000, 1000])
    wav[1, 3000:], wav[2, 1000:] = 0, 0
    a = degrade_speech(wav, lengths, RATE, torch.Generator().manual_seed(1))
    b = degrade_speech(wav, lengths, RATE, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == wav.shape and a[1, 3000:].abs().max() == 0 and a[2, 1000:].abs().max() == 0
    low = band_limit(wav, lengths, RATE, lowpass_p=1.0, cutoff_hz=(2000.0, 2000.0), highpass_p=0.0)
    spectrum = torch.fft.rfft(low[0]).abs()
    assert spectrum[len(spectrum) // 2:].mean() < 0.01 * torch.fft.rfft(wav[0]).abs()[len(spectrum) // 2:].mean()
    features = torch.randn(3, 50, 16)
    masked = spec_augment(features, torch.tensor([50, 40, 10]), freq_width=4, time_width=3, frame_rate=25.0,
                          generator=torch.Generator().manual_seed(0))
    assert masked.shape == features.shape and (masked == 0).any()
    codec = create_model("audio-codec-tiny").eval()
    assert torch.equal(codec.encode(wav[:1, None], 3)[:, :2], codec.encode(wav[:1, None], 2))  # nested RVQ codes
    plain = codec_resynthesis(codec, wav, lengths, RATE, levels=2)
    assert plain.shape == wav.shape and plain[2, 1000:].abs().max() == 0 and plain[2, :1000].abs().max() > 0
    cached = CodecResynthesis(codec, RATE, max_levels=3)
    assert torch.equal(cached(wav, lengths, 2, keys=["a", "b", "c"]), plain) and set(cached.cache) == {"a", "b", "c"}
    assert torch.equal(cached(wav, lengths, 2, keys=["a", "b", "c"]), plain)  # from the cache


def _phoneme_shards(folder: Path, split: str, count: int, with_phonemes: bool = True) -> None:
    """Fake speech: tones + noise, with stand-in espeak-ng IPA strings (stress marks and spaces included)."""
    rng = np.random.default_rng(0)
    phonemes = ["həlˈoʊ ðˈɛɹ", "ɐ ɹˈɛd bˈoʊt", "wiː kˈaʊntᵻd tˈuː", "wˈaɪ"]
    with ShardWriter(folder, split, 2) as writer:
        for index in range(count):
            wav = _tones("abcdefgh"[index % 8: index % 8 + 3]).numpy()
            wav = wav + rng.normal(0, 0.01, wav.shape).astype(np.float32)
            meta = {"text": "stand-in", "voice": "en-us", "rate": 150, "sample_rate": RATE, "seconds": len(wav) / RATE}
            if with_phonemes:
                meta["phonemes"] = phonemes[index % 4]
            writer.write(None, {"wav": encode_audio(torch.from_numpy(wav), RATE), "json": meta})


def test_train_phoneme_judge_cli_with_codec_and_exact_resume(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    data, codec_dir, run, resumed = tmp_path / "data", tmp_path / "codec", tmp_path / "run", tmp_path / "resumed"
    _phoneme_shards(data, "train", 12)  # 6 shards
    _phoneme_shards(data, "holdout", 2)
    torch.manual_seed(0)
    create_model("audio-codec-tiny").save_pretrained(codec_dir)
    argv = ["train", "phoneme-judge", "--data", str(data), "--audio-tokenizer", str(codec_dir), "--model",
            "phoneme-judge-tiny", "--codec-share", "0.5", "--codec-levels", "1-3", "steps=3", "batch_size=2",
            "eval_every=3", "sample_every=3", "ckpt_every=1", "keep_last=5", "log_every=1", "progress=false"]
    assert main([*argv, "--out", str(run)]) == 0
    judge = PhonemeJudge.from_pretrained(run / "model")
    assert set(judge.config.symbols) == set("həloʊðɛɹɐdbtwiːkaʊntᵻuːwaɪ") - {"ˈ", " "}
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
    evals = [m for m in metrics if "eval/per" in m][-1]
    assert {"eval/per_codec_q1", "eval/per_codec_q3"} <= set(evals) and evals["eval/per"] >= 0
    assert "ref " in next((run / "samples").glob("*_transcripts.txt")).read_text(encoding="utf-8")
    shutil.copytree(run, resumed)  # killed after step 1's checkpoint, then resumed
    for folder in (resumed / "checkpoints").iterdir():
        if int(folder.name.split("_")[1]) > 1:
            shutil.rmtree(folder)
    assert main([*argv, "--out", str(resumed), "--resume"]) == 0
    full, again = (load_file(r / "checkpoints" / "step_00000003" / "module.safetensors") for r in (run, resumed))
    assert full.keys() == again.keys() and all(torch.equal(full[k], again[k]) for k in full)
    assert not any(k.startswith("_codec") for k in full)


def test_train_phoneme_judge_refuses_data_without_phonemes(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    _phoneme_shards(tmp_path / "data", "train", 2, with_phonemes=False)
    argv = ["train", "phoneme-judge", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"),
            "--model", "phoneme-judge-tiny", "steps=1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "2 of 2 utterances have no 'phonemes'" in err and "Traceback" not in err and err.count("\n") == 1
    assert main([*argv, "--codec-levels", "3-1"]) == 2
    assert "--codec-levels" in capsys.readouterr().err
