"""``mmgen eval audio-tokenizer --model CODEC --data SHARDS``: a codec against the mu-law/low-pass baseline.

For each ``--bandwidths`` value (kbit/s) the codec uses ``quantizers_for_bandwidth(kbps)`` RVQ levels; the baseline
runs at the codec's actual bitrate with its best bit depth on the data. Printed per bandwidth: mel distance (mean
|Δ log-mel|, lower is better), SI-SNR (dB, higher is better), mel-cepstral distance (dB) and first-level codebook
usage. ``--out DIR`` also writes WAVs (original, codec, baseline) of a few utterances and ``mel.png`` to listen to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, non_negative_int, positive_int


def register_eval(kinds: Any) -> None:
    parser = kinds.add_parser("audio-tokenizer", help="mel distance, SI-SNR, MCD of an audio codec vs a mu-law "
                              "baseline at the same bitrate", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path,
                        help="audio tokenizer folder (mmgen, or a transformers EncodecModel folder)")
    parser.add_argument("--data", required=True, help="speech shards: a folder, glob or brace pattern")
    parser.add_argument("--split", default="holdout", help="split prefix when --data is a folder (default: holdout)")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate at most N utterances")
    parser.add_argument("--bandwidths", default="1.5,3", help="comma-separated kbit/s (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, help="write WAVs + mel.png of a few utterances here")
    parser.add_argument("--samples", type=non_negative_int, default=3, help="utterances written to --out")
    parser.add_argument("--no-baseline", action="store_true", help="skip the mu-law/low-pass baseline")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.set_defaults(func=run_audio_tokenizer)


def _bandwidths(text: str) -> tuple[float, ...]:
    from mmgen.errors import InvalidArgumentError

    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InvalidArgumentError("--bandwidths", "comma-separated kbit/s, e.g. 1.5,3", text) from None
    if not values or any(v <= 0 for v in values):
        raise InvalidArgumentError("--bandwidths", "positive kbit/s values", text)
    return values


def read_utterances(data: str, split: str, tokenizer: Any, limit: int | None) -> list[Any]:
    """Whole utterances [C, T] at the codec's rate from shards (corrupt samples skipped and counted)."""
    from mmgen.data import expand_shards, read_samples
    from mmgen.errors import DataError
    from mmgen.training.tasks.audio_tokenizer import SpeechSegments

    shards = expand_shards(data, split=split if Path(data).is_dir() else None)
    decode = SpeechSegments(tokenizer.sample_rate, tokenizer.channels, train=False)
    samples = read_samples(shards, decode, limit=limit)
    if not samples:
        raise DataError(f"{data}: no decodable audio")
    return [s["audio"] for s in samples]


def run_audio_tokenizer(args: argparse.Namespace) -> int:
    import torch

    from mmgen.cli.tokenize_audio import load_audio_tokenizer
    from mmgen.errors import CheckpointError
    from mmgen.eval.audio_metrics import evaluate_audio_codec, write_reconstructions

    bandwidths = _bandwidths(args.bandwidths)
    tokenizer = load_audio_tokenizer(args.model)
    if tokenizer is None:
        raise CheckpointError(f"{args.model}: not an audio tokenizer folder (mmgen or transformers EnCodec)")
    wavs = read_utterances(args.data, args.split, tokenizer, args.limit)
    with torch.no_grad():
        results = evaluate_audio_codec(tokenizer, wavs, bandwidths, baseline=not args.no_baseline)
    print(f"{len(wavs)} utterances, {results['seconds']:.1f} s at {tokenizer.sample_rate} Hz")
    for kbps in bandwidths:
        key = f"{kbps:g}"
        line = (f"{results['kbps@' + key]:g} kbit/s ({int(results['levels@' + key])} levels): "
                f"mel {results['mel@' + key]:.3f}  SI-SNR {results['si_snr@' + key]:.2f} dB  "
                f"MCD {results['mcd@' + key]:.2f} dB  usage {results['usage@' + key]:.3f}")
        if not args.no_baseline:
            line += (f"  | mu-law {int(results['baseline_bits@' + key])}-bit: mel "
                     f"{results['baseline_mel@' + key]:.3f}  SI-SNR {results['baseline_si_snr@' + key]:.2f} dB")
        print(line)
    if args.out is not None and args.samples:
        paths = write_reconstructions(tokenizer, wavs[: args.samples], bandwidths, args.out,
                                      baseline=not args.no_baseline)
        print(f"wrote {len(paths)} files to {args.out} (mel.png compares them)")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
