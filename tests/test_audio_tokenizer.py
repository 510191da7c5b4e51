"""The RVQ audio codec: interface, invariants, losses/metrics, training task, CLI (tiny configs, synthetic audio)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmgen.data.audio_io import encode_audio
from mmgen.data.writer import ShardWriter
from mmgen.errors import InvalidArgumentError
from mmgen.eval.audio_metrics import (
    best_mulaw_lowpass,
    mel_cepstral_distance,
    mel_distance,
    mulaw_lowpass,
    si_snr,
)
from mmgen.registry import create_model, list_models, load_pretrained
from mmgen.tokenizers.audio import AudioTokenizer


def _speechlike(seconds: float, rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """[1, T] gliding harmonic tones with a syllable-like envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = 120 + 60 * rng.random() + 40 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * t)
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2)
    return torch.from_numpy(0.2 * wav / np.abs(wav).max()).float()[None]


@pytest.fixture
def tiny() -> AudioTokenizer:
    torch.manual_seed(0)
    return create_model("audio-codec-tiny").eval()


@pytest.fixture
def speech_shards(tmp_path: Path) -> Path:
    out = tmp_path / "speech"
    for split, count in (("train", 6), ("holdout", 2)):
        with ShardWriter(out, split, 4, source="synthetic") as writer:
            for index in range(count):
                rate = 22050 if index == 0 else 16000  # one clip at another rate: resampled by the task
                wav = _speechlike(1.3, rate, seed=index + (100 if split == "holdout" else 0))
                writer.write(None, {"wav": encode_audio(wav, rate), "txt": f"clip {index}"})
    return out


def test_registered_configs_and_interface(tiny: AudioTokenizer):
    assert {"audio-codec-tiny", "audio-codec-speech-16k", "encodec-24khz"} <= set(list_models("*codec*") +
                                                                                 list_models("encodec*"))
    assert tiny.sample_rate == 16000 and tiny.hop_length == 320 and tiny.frame_rate == 50.0
    wav = torch.cat([_speechlike(0.7, seed=1), _speechlike(0.7, seed=2)])[:, None]  # [2, 1, 11200]
    tokens = tiny.encode(wav)
    assert tokens.dtype == torch.long and tokens.shape == (2, tiny.num_quantizers, math.ceil(11200 / 320))
    assert int(tokens.min()) >= 0 and int(tokens.max()) < tiny.codebook_size
    audio = tiny.decode(tokens)
    assert audio.shape == (2, 1, tokens.shape[-1] * 320) and torch.isfinite(audio).all()
    two = tiny.encode(wav, num_quantizers=2)
    assert torch.equal(two, tokens[:, :2])  # levels are a prefix: fewer levels = lower bitrate, same codes
    assert tiny.decode(two).shape == audio.shape
    assert tiny.reconstruct(wav).shape == wav.shape


def test_bandwidth_to_levels():
    codec = create_model("audio-codec-speech-16k", kmeans_init=False)
    assert codec.kbps(1) == 0.5
    assert [codec.quantizers_for_bandwidth(k) for k in (0.1, 1.5, 3.0, 3.2, 100)] == [1, 3, 6, 6, 8]
    with pytest.raises(InvalidArgumentError, match="bandwidth"):
        codec.quantizers_for_bandwidth(0)


def test_bad_inputs_are_clear(tiny: AudioTokenizer):
    with pytest.raises(InvalidArgumentError, match=r"\[B, 1, T\]"):
        tiny.encode(torch.zeros(16000))
    with pytest.raises(InvalidArgumentError, match="channel"):
        tiny.encode(torch.zeros(1, 2, 16000))
    with pytest.raises(InvalidArgumentError, match="floating-point"):
        tiny.encode(torch.zeros(1, 1, 100, dtype=torch.long))
    with pytest.raises(InvalidArgumentError, match="num_quantizers"):
        tiny.encode(torch.zeros(1, 1, 100), num_quantizers=9)
    with pytest.raises(InvalidArgumentError, match="ids in"):
        tiny.decode(torch.full((1, 2, 3), 64))
    with pytest.raises(InvalidArgumentError, match="levels"):
        tiny.decode(torch.zeros(1, 5, 3, dtype=torch.long))


def test_save_load_round_trip(tiny: AudioTokenizer, tmp_path: Path):
    wav = _speechlike(0.5)[None]
    tiny.save_pretrained(tmp_path / "fp32")
    again = load_pretrained(tmp_path / "fp32")
    assert torch.equal(again.encode(wav), tiny.encode(wav))
    torch.testing.assert_close(again.decode(tiny.encode(wav)), tiny.decode(tiny.encode(wav)))
    tiny.save_pretrained(tmp_path / "fp16", dtype=torch.float16)
    half = load_pretrained(tmp_path / "fp16")
    assert (tmp_path / "fp16" / "model.safetensors").stat().st_size < (tmp_path / "fp32" /
                                                                       "model.safetensors").stat().st_size
    assert half.decode(half.encode(wav)).dtype == torch.float32


@pytest.mark.parametrize("latent_norm", [True, "frame"])
def test_training_forward_dropout_gradients_and_latent_norm(latent_norm: bool | str):
    torch.manual_seed(0)
    codec = create_model("audio-codec-tiny", num_quantizers=4, latent_norm=latent_norm, kmeans_init=True).train()
    wav = torch.cat([_speechlike(0.4, seed=s) for s in range(4)])[:, None]
    levels = set()
    for _ in range(12):
        out = codec(wav)
        levels.add(out.levels)
        assert out.reconstruction.shape == wav.shape
        kept = (out.indices[0, :, 0] >= 0).sum().item()
        assert kept == out.levels and (out.indices[:, out.levels:] == -1).all()
    assert len(levels) > 1  # quantizer dropout draws different numbers of levels
    codec.zero_grad()
    (out.reconstruction - wav).abs().mean().backward()
    first = codec.encoder.layers[0].conv.parametrizations.weight.original1
    assert first.grad is not None and first.grad.abs().sum() > 0  # straight-through reaches the encoder
    bypass = codec(wav, quantize=False)
    assert (bypass.indices == -1).all() and bypass.aux_loss == 0


def test_frame_latent_norm_is_the_same_in_training_and_inference():
    """A per-frame norm has no running statistics: codes at inference are the codes training saw (a BatchNorm
    whose running statistics lag the encoder can send every frame to one code)."""
    torch.manual_seed(0)
    codec = create_model("audio-codec-tiny", latent_norm="frame", quantizer_dropout=False, kmeans_init=False)
    wav = torch.cat([_speechlike(0.4, seed=s) for s in range(2)])[:, None]
    normed = codec.train().encode_latents(wav)
    torch.testing.assert_close(normed, codec.eval().encode_latents(wav))
    torch.testing.assert_close(normed.mean(1), torch.zeros_like(normed[:, 0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(normed.std(1, unbiased=False), torch.ones_like(normed[:, 0]), atol=1e-2, rtol=0)
    with pytest.raises(InvalidArgumentError, match="latent_norm"):
        create_model("audio-codec-tiny", latent_norm="group")


def test_metrics_behave():
    clean = _speechlike(1.0)
    noisy = clean + 0.01 * torch.randn_like(clean)
    assert si_snr(clean, clean).item() > 60
    assert si_snr(3.0 * noisy, clean).item() == pytest.approx(si_snr(noisy, clean).item(), abs=1e-3)
    assert mel_distance(clean, clean, 16000).item() == 0.0
    noisier = clean + 0.05 * torch.randn_like(clean)
    assert 0 < mel_distance(noisy, clean, 16000).item() < mel_distance(noisier, clean, 16000).item()
    assert mel_cepstral_distance(clean, clean, 16000).item() == pytest.approx(0.0, abs=1e-4)
    shifted = torch.cat([torch.zeros(1, 1600), clean], dim=-1)  # 100 ms of silence first
    aligned = mel_cepstral_distance(shifted, clean, 16000, align=True).item()
    assert aligned < mel_cepstral_distance(shifted, clean, 16000).item()


def test_mulaw_lowpass_baseline():
    clean = _speechlike(1.0)
    low = mulaw_lowpass(clean, 16000, kbps=3.0, bits=3)  # 1000 Hz x 3 bits
    assert low.shape == clean.shape and low.abs().max() <= 1
    better = mulaw_lowpass(clean, 16000, kbps=64.0, bits=8)  # 8 kHz x 8 bits
    assert si_snr(better, clean) > si_snr(low, clean)
    best = best_mulaw_lowpass([clean], 16000, 3.0)
    assert best["bits"] * best["rate_hz"] == pytest.approx(3000, rel=0.01)
    with pytest.raises(InvalidArgumentError):
        mulaw_lowpass(clean, 16000, kbps=0.01, bits=8)


def test_train_task_smoke(speech_shards: Path, tmp_path: Path):
    from mmgen.cli.main import main

    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="22050 Hz is resampled"):
        code = main(["train", "audio-tokenizer", "--data", str(speech_shards), "--out", str(out), "--model",
                     "audio-codec-tiny", "--segment", "0.3-0.5", "--eval-samples", "2", "steps=3", "batch_size=2",
                     "eval_every=3", "sample_every=3", "progress=false", "quantizer_warmup=1", "disc_weight=0.1",
                     "disc_filters=4", "disc_scales=[64,128]", "latent_norm=true", "log_every=1"])
    assert code == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/mel@1.5" in r and "eval/si_snr@3" in r for r in records)
    assert any("d_loss" in r and "feat" in r for r in records)
    samples = out / "samples" / "step_0000003"
    assert (samples / "mel.png").is_file() and (samples / "00_codec_3kbps.wav").is_file()
    model = load_pretrained(out / "model")
    assert isinstance(model, AudioTokenizer) and model.config.latent_norm


def test_tokenize_and_eval_cli_with_audio(tiny: AudioTokenizer, speech_shards: Path, tmp_path: Path, capsys):
    from mmgen.cli.main import main

    tiny.save_pretrained(tmp_path / "codec")
    sf.write(tmp_path / "a.wav", _speechlike(0.6)[0].numpy(), 16000)
    sf.write(tmp_path / "b.flac", _speechlike(0.9, rate=22050)[0].numpy(), 22050)
    (tmp_path / "broken.wav").write_bytes(b"RIFF....WAVEjunk")
    args = ["tokenize", "encode", "--model", str(tmp_path / "codec"), str(tmp_path / "a.wav"),
            str(tmp_path / "b.flac"), "--out", str(tmp_path / "tok.npy"), "--bandwidth", "0.6"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "resampled" in captured.err and "2 RVQ levels" in captured.out
    tokens = np.load(tmp_path / "tok.npy")
    assert tokens.shape == (2, 2, 45) and (tokens[0, :, 30:] == -1).all() and (tokens[1] >= 0).all()
    assert main(["tokenize", "decode", "--model", str(tmp_path / "codec"), str(tmp_path / "tok.npy"), "--out",
                 str(tmp_path / "rec")]) == 0
    assert sf.info(tmp_path / "rec" / "000000.wav").frames == 30 * 320
    assert main(["tokenize", "encode", "--model", str(tmp_path / "codec"), str(tmp_path / "broken.wav"),
                 "--out", str(tmp_path / "x.npy")]) == 2
    assert "broken.wav: not a readable audio file" in capsys.readouterr().err
    assert main(["eval", "audio-tokenizer", "--model", str(tmp_path / "codec"), "--data", str(speech_shards),
                 "--out", str(tmp_path / "listen"), "--samples", "1", "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    assert "mu-law" in printed and "SI-SNR" in printed
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["num_utterances"] == 2 and "baseline_mel@3" in results
    assert (tmp_path / "listen" / "mel.png").is_file() and (tmp_path / "listen" / "00_mulaw_1.5kbps.wav").is_file()
