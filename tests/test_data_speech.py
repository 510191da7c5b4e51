"""Speech data: the espeak-ng corpus (sentences, voices, phonemes, held-out sentences) and audio-folder import."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mmgen.data import read_samples
from mmgen.data.audio_folder import read_metadata, write_audio_folder
from mmgen.data.audio_io import decode_audio_bytes, encode_audio, load_audio
from mmgen.data.speech import SpeechSpec, generate_sentences, speak, speech_jobs, write_speech
from mmgen.errors import DataError, InvalidArgumentError

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def test_sentences_are_distinct_varied_and_seeded():
    sentences = generate_sentences(3000, seed=1)
    assert len(set(sentences)) == 3000
    assert sentences == generate_sentences(3000, seed=1)
    assert sentences[:50] != generate_sentences(50, seed=2)
    words = {w.strip(".,?").lower() for s in sentences for w in s.split()}
    assert len(words) > 250
    assert all(s[0].isupper() and s[-1] in ".?" for s in sentences)


def test_holdout_sentences_never_occur_in_train():
    jobs = speech_jobs(SpeechSpec(num_train=400, num_holdout=50, seed=3))
    train_text = {text for text, _, _ in jobs["train"]}
    assert len(jobs["holdout"]) == 50
    assert not train_text & {text for text, _, _ in jobs["holdout"]}
    voices = {voice for _, voice, _ in jobs["train"]}
    rates = [rate for _, _, rate in jobs["train"]]
    assert len(voices) >= 5 and 130 <= min(rates) < max(rates) <= 190


def test_spec_rejects_bad_settings():
    with pytest.raises(InvalidArgumentError, match="--rates"):
        SpeechSpec(rate_min=200, rate_max=150).check()
    with pytest.raises(InvalidArgumentError, match="--format"):
        SpeechSpec(fmt="mp3").check()


@needs_espeak
def test_speak_gives_resampled_speech_and_phonemes():
    utterance = speak("The red kettle was quiet.", "en-gb+f3", 170, sample_rate=16000)
    assert utterance.sample_rate == 16000 and utterance.wav.ndim == 1
    assert 0.8 < utterance.seconds < 4.0
    assert utterance.wav.abs().max() > 0.1  # real speech, not silence
    assert "ɛ" in utterance.phonemes or "k" in utterance.phonemes
    assert utterance.meta()["voice"] == "en-gb+f3"


@needs_espeak
def test_write_speech_shards_round_trip(tmp_path: Path):
    spec = SpeechSpec(num_train=5, num_holdout=2, voices=("en-us", "en-gb+m3"), sample_rate=8000, fmt="flac")
    counts = write_speech(tmp_path, spec, samples_per_shard=3, workers=2)
    assert counts == {"train": 5, "holdout": 2}
    samples = read_samples(tmp_path, split="train")
    assert len(samples) == 5
    for sample in samples:
        assert sample["sample_rate"] == 8000 and sample["audio"].shape[0] == 1
        meta = sample["meta"]
        assert meta["text"] == sample["text"] and meta["phonemes"] and meta["voice"] in spec.voices
        assert abs(meta["seconds"] - sample["audio"].shape[-1] / 8000) < 1e-3
        assert len(meta["durations"]) == len(meta["phonemes"])                 # seconds per phoneme symbol
        assert abs(sum(meta["durations"]) - meta["seconds"]) < 2e-3
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert manifest["splits"]["train"]["sample_rate"] == 8000 and manifest["source"] == "espeak-ng"


@needs_espeak
def test_data_speech_cli(tmp_path: Path, capsys):
    from mmgen.cli.main import main

    assert main(["data", "speech", "--out", str(tmp_path), "--num", "3", "--holdout", "1", "--voices",
                 "en-us", "--rates", "150-160"]) == 0
    assert "train: 3 spoken sentences" in capsys.readouterr().out
    assert main(["data", "speech", "--out", str(tmp_path), "--num", "3", "--rates", "fast"]) == 2


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return np.stack([0.3 * np.sin(2 * np.pi * 220 * (c + 1) * t) for c in range(channels)], axis=1)


def test_audio_folder_transcripts_resampling_and_corrupt_files(tmp_path: Path):
    src = tmp_path / "src"
    (src / "wavs").mkdir(parents=True)
    sf.write(src / "wavs" / "LJ001.wav", _tone(0.5, 22050), 22050)
    sf.write(src / "wavs" / "LJ002.flac", _tone(0.4, 16000, channels=2), 16000)
    sf.write(src / "extra.wav", _tone(0.3, 16000), 16000)
    (src / "extra.txt").write_text("a same-name transcript\n")
    sf.write(src / "untranscribed.wav", _tone(0.2, 16000), 16000)
    (src / "broken.wav").write_bytes(b"RIFF\x00\x00not really audio")
    (src / "metadata.csv").write_text("LJ001|Printing, in 1455.|Printing, in fourteen fifty-five.\nLJ002|Hello there\n")
    report = write_audio_folder(src, tmp_path / "out", sample_rate=16000)
    assert report.written == 4 and report.transcripts == 3
    assert report.resampled == {22050: 1}
    assert len(report.skipped) == 1 and report.skipped[0].startswith("broken.wav")
    samples = {s["meta"]["path"]: s for s in read_samples(tmp_path / "out", split="train")}
    lj1 = samples["wavs/LJ001.wav"]
    assert lj1["text"] == "Printing, in fourteen fifty-five." and lj1["sample_rate"] == 16000
    assert abs(lj1["audio"].shape[-1] - 8000) <= 1 and lj1["meta"]["source_sample_rate"] == 22050
    assert samples["wavs/LJ002.flac"]["audio"].shape[0] == 1  # stereo mixed to mono
    assert samples["extra.wav"]["text"] == "a same-name transcript"
    assert "text" not in samples["untranscribed.wav"]
    strict = write_audio_folder(src, tmp_path / "strict", require_transcript=True)
    assert strict.written == 3


def test_audio_folder_errors(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no audio files"):
        write_audio_folder(tmp_path / "empty", tmp_path / "out")
    bad = tmp_path / "metadata.csv"
    bad.write_text("no separator here\n")
    with pytest.raises(DataError, match="id\\|transcript"):
        read_metadata(bad)


def test_audio_io_round_trip_and_clear_errors(tmp_path: Path):
    wav = torch.from_numpy(_tone(0.25, 16000).T).float()
    for fmt in ("wav", "flac"):
        back, rate = decode_audio_bytes(encode_audio(wav, 16000, fmt))
        assert rate == 16000 and torch.allclose(back, wav, atol=1e-4)
    path = tmp_path / "bad.flac"
    path.write_bytes(b"fLaC garbage")
    with pytest.raises(DataError, match=r"bad\.flac: not a readable audio file"):
        load_audio(path)
    with pytest.raises(DataError, match="not found"):
        load_audio(tmp_path / "missing.wav")
