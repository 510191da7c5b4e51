"""Masked TTS on held-out espeak-ng sentences: duration error, mel-cepstral distance, spectrograms, inpainting, speed.

For each held-out sentence (``mmgen data speech`` holdout split: sentences never seen in training) the pipeline
speaks the text with the sample's voice and speaking rate, and the result is compared with espeak-ng's own rendering:

* duration: ``|generated - espeak| / espeak`` (mean %, and the fraction within 20%), plus the same for the length
  predictor alone without the rate hint (unknown voice and rate);
* mel-cepstral distance (dB, DTW-aligned, from :mod:`mmgen.eval.audio_metrics`) to espeak-ng's rendering, next to
  two references: the codec's own resynthesis of the espeak audio (the floor this model can reach) and a different
  held-out sentence (an unrelated utterance);
* a spectrogram PNG (espeak-ng vs generated) and WAVs in ``--out``;
* intelligibility (the shipped ``assets/phoneme-judge`` or ``--judge DIR`` from ``mmgen train phoneme-judge``): the
  phoneme error rate of the generated speech against the sentence's espeak-ng phonemes, beside the PER of
  espeak-ng's own audio (the judge's error) and of the codec's resynthesis of it (the floor this model can reach);
* inpainting: the fraction of tokens outside the edited span that are unchanged (must be 1.0);
* speed: real-time factor = seconds of audio generated per second of compute (``speak``, default steps), and the
  codec's encode/decode speed table from ``benchmarks/audio_codec.py`` (ratio vs the ``encodec`` package).

    python benchmarks/speech.py --model assets/tts-speech --data runs/speech --num 20 --out runs/speech-eval
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmgen.data import read_samples
from mmgen.data.audio_io import resample, save_audio
from mmgen.eval.audio_metrics import mel_cepstral_distance as mcd_per_item
from mmgen.eval.audio_metrics import save_mel_png
from mmgen.pipelines import load_pipeline
from mmgen.pipelines.speech import SpeechPipeline


def mel_cepstral_distance(reference: torch.Tensor, generated: torch.Tensor, sample_rate: int) -> float:
    """MCD in dB between two mono waveforms ``[T]``, DTW-aligned (they differ in length and timing)."""
    return float(mcd_per_item(generated.reshape(1, -1), reference.reshape(1, -1), sample_rate, align=True)[0])


def held_out(data: str, count: int, sample_rate: int) -> list[dict[str, Any]]:
    """The first ``count`` held-out utterances: ``{"text", "phonemes", "voice", "rate", "wav" [T] at sample_rate}``."""
    split = "holdout" if any(Path(data).glob("holdout-*.tar")) else None
    rows = []
    for sample in read_samples(data, limit=count, split=split):
        meta = sample.get("meta") or {}
        wav = resample(sample["audio"].mean(0), sample["sample_rate"], sample_rate)
        rows.append({"text": meta.get("text") or sample.get("text"), "phonemes": meta.get("phonemes"),
                     "voice": meta.get("voice"), "rate": meta.get("rate"), "wav": wav})
    return rows


def speak_row(pipe: SpeechPipeline, row: dict[str, Any], seed: int, **options: Any) -> tuple[torch.Tensor, float]:
    """The generated waveform ``[T]`` for a held-out row (its voice and rate) and the seconds it took."""
    voice = row["voice"] if row["voice"] in pipe.transformer.config.voices else None
    start = time.perf_counter()
    out = pipe.speak(row["text"], voice=voice, rate=row["rate"], generator=torch.Generator().manual_seed(seed),
                     **options)
    return out.wav[0], time.perf_counter() - start


def quality(pipe: SpeechPipeline, rows: list[dict[str, Any]], out: Path, **options: Any) -> dict[str, float]:
    """Duration error, MCD (+ references), RTF; writes WAVs and the spectrogram PNG into ``out``.

    Each row gains ``"generated"`` and ``"resynthesis"`` waveforms ``[T]`` (for :func:`intelligibility`).
    """
    rate, errors, blind, mcds, floors, unrelated, seconds, compute = pipe.sample_rate, [], [], [], [], [], 0.0, 0.0
    for index, row in enumerate(rows):
        wav, took = speak_row(pipe, row, index, **options)
        ref = row["wav"]
        seconds, compute = seconds + wav.shape[-1] / rate, compute + took
        errors.append(abs(wav.shape[-1] - ref.shape[-1]) / ref.shape[-1])
        blind.append(abs(pipe.predicted_frames(row["text"], None, None) * pipe.hop_length - ref.shape[-1])
                     / ref.shape[-1])
        mcds.append(mel_cepstral_distance(ref, wav, rate))
        resynth = pipe.decode(pipe.encode(ref.reshape(1, 1, -1).to(pipe.device)))[0, 0, : ref.shape[-1]]
        floors.append(mel_cepstral_distance(ref, resynth, rate))
        row.update(generated=wav, resynthesis=resynth)
        unrelated.append(mel_cepstral_distance(ref, rows[(index + 1) % len(rows)]["wav"], rate))
        if index < 3:
            save_audio(out / f"generated_{index:02d}.wav", wav[None], rate)
            save_audio(out / f"espeak_{index:02d}.wav", ref[None], rate)
            save_mel_png([(f"espeak-ng ({row['voice']}, {row['rate']} wpm): {row['text']}", ref),
                          ("mmgen TTS (same text, voice and rate)", wav)], rate, out / f"spectrogram_{index:02d}.png")
    return {"sentences": len(rows), "duration_abs_error_pct": 100 * statistics.mean(errors),
            "duration_within_20pct": sum(e <= 0.2 for e in errors) / len(errors),
            "duration_abs_error_pct_no_rate_hint": 100 * statistics.mean(blind),
            "duration_within_20pct_no_rate_hint": sum(e <= 0.2 for e in blind) / len(blind),
            "mcd_db": statistics.mean(mcds), "mcd_db_codec_resynthesis": statistics.mean(floors),
            "mcd_db_unrelated_sentence": statistics.mean(unrelated), "real_time_factor": seconds / compute}


def intelligibility(judge_dir: Path | None, rows: list[dict[str, Any]], sample_rate: int) -> dict[str, Any]:
    """Phoneme error rates (the phoneme judge's reading vs the espeak-ng phonemes) of the generated speech, of
    espeak-ng's own audio and of the codec's resynthesis of it, plus one example transcript pair."""
    from mmgen.eval.intelligibility import load_phoneme_judge, phoneme_error_rate

    judge = load_phoneme_judge(judge_dir)
    phonemes = [row["phonemes"] for row in rows]
    if any(not p for p in phonemes):
        raise SystemExit("the phoneme error rate needs held-out shards with espeak-ng phonemes (mmgen data speech); "
                         "pass --no-judge to skip it")
    results: dict[str, Any] = {}
    for name, key in (("generated", "generated"), ("espeak", "wav"), ("codec_resynthesis", "resynthesis")):
        per = phoneme_error_rate(judge, [row[key] for row in rows], sample_rate, phonemes)
        results[f"per_{name}"] = per.per
        if name == "generated":
            results["example_reference"], results["example_generated"] = per.references[0], per.hypotheses[0]
    return results


def inpainting_check(pipe: SpeechPipeline, row: dict[str, Any], start: float = 1.0, end: float = 1.6) -> dict:
    """Inpaint ``[start, end)`` seconds of a held-out clip with its text; token equality outside the span."""
    out = pipe.inpaint(row["wav"], pipe.sample_rate, start, min(end, row["wav"].shape[-1] / pipe.sample_rate),
                       text=row["text"], generator=torch.Generator().manual_seed(0))
    span, original = out.extras["token_mask"], out.extras["original_tokens"]
    kept = (out.tokens[..., ~span] == original[..., ~span]).float().mean()
    changed = (out.tokens[..., span] != original[..., span]).float().mean()
    return {"inpaint_tokens_kept_outside_span": float(kept), "inpaint_tokens_changed_inside_span": float(changed),
            "inpaint_span_frames": int(span.sum())}


def codec_speed(model_dir: Path) -> str:
    """benchmarks/audio_codec.py's speed table (wav → codes → wav vs the ``encodec`` package) for this codec."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from audio_codec import codec_speed_table, format_table

    index = json.loads((model_dir / "pipeline.json").read_text())
    codec_dir = model_dir / index.get("audio_tokenizer", "audio_tokenizer")  # a copy, or a shared folder
    return format_table(codec_speed_table((str(codec_dir),), repeats=3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("assets/tts-speech"), help="speech pipeline folder")
    parser.add_argument("--data", required=True, help="speech shards with a holdout split (mmgen data speech)")
    parser.add_argument("--num", type=int, default=20, help="held-out sentences to speak")
    parser.add_argument("--out", type=Path, default=Path("runs/speech-eval"), help="folder for WAVs and PNGs")
    parser.add_argument("--steps", type=int, default=None, help="coarse-level decoding steps (default: pipeline's)")
    parser.add_argument("--no-codec-table", action="store_true", help="skip benchmarks/audio_codec.py's table")
    parser.add_argument("--judge", type=Path, help="phoneme judge folder for the PER (default: assets/phoneme-judge)")
    parser.add_argument("--no-judge", action="store_true", help="skip the phoneme error rates")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipeline(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = held_out(args.data, args.num, pipe.sample_rate)
    with torch.inference_mode():
        results = {**quality(pipe, rows, args.out, num_steps=args.steps), **inpainting_check(pipe, rows[0])}
        if not args.no_judge:
            results.update(intelligibility(args.judge, rows, pipe.sample_rate))
    results["threads"] = torch.get_num_threads()
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    for key, value in results.items():
        print(f"{key:40s} {value:.4g}" if isinstance(value, float) else f"{key:40s} {value}")
    print(f"WAVs and spectrograms: {args.out}")
    if not args.no_codec_table:
        print(codec_speed(args.model))


if __name__ == "__main__":
    main()
