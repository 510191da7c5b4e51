"""SpeechPipeline (speak / inpaint / continue), the speak/audio-inpaint/audio-continue commands and `train speech`.

Tiny random codecs ("audio-codec-tiny") and transformers stand in for real checkpoints; the training smoke run
writes its own noise "speech" shards, so nothing here needs espeak-ng.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

from mmgen.cli.main import main
from mmgen.data.audio_io import encode_audio, load_audio, save_audio
from mmgen.data.writer import ShardWriter
from mmgen.errors import CheckpointError, InvalidArgumentError
from mmgen.pipelines import load_pipeline
from mmgen.pipelines.speech import SpeechPipeline, paste_outside
from mmgen.registry import create_model

CHARS = list("abcdefghijklmnopqrstuvwxyz .,'?!")


@pytest.fixture(scope="module")
def pipe_dir(tmp_path_factory):
    torch.manual_seed(0)
    codec = create_model("audio-codec-tiny")
    tts = create_model("tts-tiny", codebook_size=codec.codebook_size, text_kind="characters", symbols=CHARS,
                       max_frames=256)
    folder = tmp_path_factory.mktemp("speech") / "pipe"
    SpeechPipeline(tts, codec).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pipe(pipe_dir):
    return load_pipeline(pipe_dir)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """1.5 s of a gliding tone at 16 kHz, written as a WAV file."""
    t = torch.arange(24000) / 16000
    wav = 0.3 * torch.sin(2 * torch.pi * (200 + 100 * t) * t)[None]
    return save_audio(tmp_path_factory.mktemp("audio") / "clip.wav", wav, 16000)


def test_speak_uses_the_length_predictor_or_seconds(pipe):
    out = pipe.speak("hello there", generator=torch.Generator().manual_seed(0))
    predicted = pipe.predicted_frames("hello there", pipe.transformer.config.voices[0], 160.0)
    assert out.tokens.shape == (1, 2, predicted) and (out.tokens < pipe.transformer.mask_id).all()
    assert out.wav.shape == (1, predicted * pipe.hop_length) and out.wav.abs().max() <= 1
    forced = pipe.speak("hello there", seconds=0.5, generator=torch.Generator().manual_seed(0))
    assert forced.tokens.shape[-1] == 25
    again = pipe.speak("hello there", generator=torch.Generator().manual_seed(0))
    assert torch.equal(again.tokens, out.tokens)


def test_inpaint_keeps_everything_outside_the_span(pipe, clip):
    wav, rate, _ = load_audio(clip)
    out = pipe.inpaint(wav, rate, 0.5, 0.9, text="a new word", guidance_scale=2.0,
                       generator=torch.Generator().manual_seed(1))
    span, original = out.extras["token_mask"], out.extras["original_tokens"]
    assert span.sum() == 20 and span[25:45].all()
    assert torch.equal(out.tokens[..., ~span], original[..., ~span])            # token level: unchanged
    assert not torch.equal(out.tokens[..., span], original[..., span])
    fade, hop = 160, pipe.hop_length
    outside = torch.ones(wav.shape[-1], dtype=torch.bool)
    outside[25 * hop - fade: 45 * hop + fade] = False
    torch.testing.assert_close(out.wav[..., outside], wav[..., outside])        # samples: the original


def test_continue_and_prompted_speech_keep_the_prompt(pipe, clip, caplog):
    wav, _, _ = load_audio(clip)
    wav_8k = torch.nn.functional.interpolate(wav[None], scale_factor=0.5, mode="linear")[0]
    with caplog.at_level(logging.WARNING, logger="mmgen.pipelines.speech"):
        out = pipe.continue_(wav_8k, 8000, seconds=0.4, generator=torch.Generator().manual_seed(2))
    assert "8000 Hz resampled" in caplog.text
    prompt = pipe.encode(pipe.prepare_audio(wav, 16000))
    assert out.tokens.shape[-1] == prompt.shape[-1] + 20 and out.extras["prompt_frames"] == 75
    assert torch.equal(out.tokens[..., :75], pipe.encode(pipe.prepare_audio(wav_8k, 8000)))
    spoken = pipe.speak("more words", prompt_audio=wav, prompt_text="a tone", generator=torch.Generator())
    assert spoken.tokens.shape[1] == 2 and spoken.extras["prompt_frames"] == 75
    assert spoken.wav.shape[-1] == spoken.tokens.shape[-1] * pipe.hop_length


def test_bad_inputs_raise_clear_errors(pipe, clip):
    wav, rate, _ = load_audio(clip)
    with pytest.raises(InvalidArgumentError, match="non-empty"):
        pipe.speak("   ")
    with pytest.raises(InvalidArgumentError, match="'Ω'"):
        pipe.speak("ohm Ω")
    with pytest.raises(InvalidArgumentError, match="start < end"):
        pipe.inpaint(wav, rate, 1.2, 0.4)
    with pytest.raises(InvalidArgumentError, match="start < end"):
        pipe.inpaint(wav, rate, 1.0, 9.0)
    with pytest.raises(InvalidArgumentError, match="seconds"):
        pipe.continue_(wav, rate)
    with pytest.raises(InvalidArgumentError, match=r"seconds: expected a duration in \(0, 5.1\]"):
        pipe.speak("hello", seconds=60.0)
    with pytest.raises(InvalidArgumentError, match=r"at most 5\.1 s"):
        pipe.speak("hello " * 30)


def test_paste_outside_crossfades():
    original, generated = torch.zeros(1, 100), torch.ones(1, 100)
    out = paste_outside(original, generated, 40, 60, 5)
    assert (out[0, :35] == 0).all() and (out[0, 40:60] == 1).all() and (out[0, 65:] == 0).all()
    assert (out[0, 35:40].diff() > 0).all() and (out[0, 60:65].diff() < 0).all()


def test_cli_speak_inpaint_continue(pipe_dir, clip, tmp_path, capsys):
    speech = tmp_path / "speech.wav"
    assert main(["speak", str(pipe_dir), "hello world", "--out", str(speech), "--steps", "3",
                 "--mel", str(tmp_path / "mel.png")]) == 0
    data, rate = sf.read(speech)
    assert rate == 16000 and data.ndim == 1 and len(data) > 0 and (tmp_path / "mel.png").stat().st_size > 1000
    edited = tmp_path / "edited.wav"
    assert main(["audio-inpaint", str(pipe_dir), "--audio", str(clip), "--start", "0.2", "--end", "0.6",
                 "--out", str(edited)]) == 0
    assert sf.info(edited).frames == 24000
    longer = tmp_path / "longer.wav"
    assert main(["audio-continue", str(pipe_dir), "--audio", str(clip), "--seconds", "0.5", "--out",
                 str(longer)]) == 0
    assert sf.info(longer).frames == (75 + 25) * 320
    assert main(["speak", str(pipe_dir), "", "--out", str(tmp_path / "x.wav")]) == 2
    assert main(["speak", str(pipe_dir), "ça va 😀", "--out", str(tmp_path / "x.wav")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].startswith("mmgen speak: error: text: expected a non-empty sentence")
    assert "😀" in err[-1] and "Traceback" not in "".join(err)
    assert main(["audio-inpaint", str(pipe_dir), "--audio", str(clip), "--start", "1", "--end", "0.5",
                 "--out", str(edited)]) == 2


def _noise_speech_shards(folder, split: str, count: int, timed: bool = False) -> None:
    """Fake "speech": seeded noise clips with a sentence and rate/voice metadata (no espeak-ng needed)."""
    rng = np.random.default_rng(0)
    with ShardWriter(folder, split, 100) as writer:
        for index in range(count):
            text = ["hello there", "a red boat", "we counted two boats", "why?"][index % 4]
            wav = torch.from_numpy(rng.uniform(-0.3, 0.3, 4000 + 800 * index).astype(np.float32))
            meta = {"text": text, "phonemes": None, "voice": ["en-us", "en-gb"][index % 2], "rate": 150 + index,
                    "sample_rate": 16000, "seconds": len(wav) / 16000}
            if timed:  # stand-in "phonemes" (the text) with per-symbol durations, as `mmgen data speech` writes
                meta.update(phonemes=text, durations=[meta["seconds"] / len(text)] * len(text))
            writer.write(None, {"wav": encode_audio(wav, 16000), "txt": text, "json": meta})


def test_train_speech_cli_smoke(tmp_path, capsys):
    data, codec_dir, run = tmp_path / "data", tmp_path / "codec", tmp_path / "run"
    _noise_speech_shards(data, "train", 6)
    _noise_speech_shards(data, "holdout", 2)
    torch.manual_seed(0)
    create_model("audio-codec-tiny").save_pretrained(codec_dir)
    assert main(["train", "speech", "--data", str(data), "--audio-tokenizer", str(codec_dir), "--out", str(run),
                 "--model", "tts-tiny", "--text-kind", "characters", "steps=3", "batch_size=3", "sample_every=3",
                 "eval_every=3", "log_every=1", "progress=false", "max_frames=64"]) == 0
    summary = json.loads((run / "tokens" / "speech_tokens.json").read_text())
    assert summary["counts"] == {"train": 6, "holdout": 2} and summary["voices"] == ["en-gb", "en-us"]
    assert set("hello") <= set(summary["symbols"])
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["loss"]) for m in metrics if "loss" in m)
    assert any("eval/holdout_duration_error" in m for m in metrics)
    assert sorted(p.suffix for p in (run / "samples").iterdir()) == [".png", ".wav", ".wav"]
    pipe = load_pipeline(run / "pipeline")
    assert pipe.transformer.config.symbols == tuple(summary["symbols"]) and pipe.num_levels == 2
    assert pipe.transformer.config.rate_center == 152.5


def test_train_speech_aligns_by_durations_when_the_data_has_them(tmp_path, capsys):
    data, plain, codec_dir = tmp_path / "data", tmp_path / "plain", tmp_path / "codec"
    _noise_speech_shards(data, "train", 6, timed=True)
    _noise_speech_shards(data, "holdout", 2, timed=True)
    _noise_speech_shards(plain, "train", 4)
    torch.manual_seed(0)
    create_model("audio-codec-tiny").save_pretrained(codec_dir)
    common = ["--audio-tokenizer", str(codec_dir), "--model", "tts-tiny", "--text-kind", "phonemes", "steps=3",
              "batch_size=3", "eval_every=3", "log_every=1", "progress=false", "max_frames=64"]
    assert main(["train", "speech", "--data", str(data), "--out", str(tmp_path / "run"), *common]) == 0
    summary = json.loads((tmp_path / "run" / "tokens" / "speech_tokens.json").read_text())
    assert summary["durations"] == 6
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(m["length_loss"]) for m in metrics if "length_loss" in m)
    pipe = load_pipeline(tmp_path / "run" / "pipeline")
    assert pipe.transformer.config.alignment == "durations"
    capsys.readouterr()
    assert main(["train", "speech", "--data", str(plain), "--out", str(tmp_path / "run2"), *common,
                 "alignment=durations"]) == 2
    err = capsys.readouterr().err
    assert "alignment" in err and "0 of 4" in err and "Traceback" not in err


def test_pipeline_can_reference_a_shared_codec_folder(pipe, tmp_path):
    """Shipped pipelines point at one codec folder (relative path in pipeline.json) instead of copying it."""
    codec_dir = pipe.audio_tokenizer.save_pretrained(tmp_path / "codec")
    pipe.save_pretrained(tmp_path / "tts", audio_tokenizer_path=codec_dir)
    assert not (tmp_path / "tts" / "audio_tokenizer").exists()
    assert json.loads((tmp_path / "tts" / "pipeline.json").read_text())["audio_tokenizer"] == "../codec"
    again = load_pipeline(tmp_path / "tts")
    tokens = torch.randint(0, pipe.audio_tokenizer.codebook_size, (1, 2, 6))
    torch.testing.assert_close(again.audio_tokenizer.decode(tokens), pipe.audio_tokenizer.decode(tokens))
    (tmp_path / "codec" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="audio tokenizer is missing"):
        load_pipeline(tmp_path / "tts")
    with pytest.raises(CheckpointError, match="not a saved audio tokenizer"):
        pipe.save_pretrained(tmp_path / "tts2", audio_tokenizer_path=tmp_path / "nothing")
