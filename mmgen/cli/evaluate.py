"""``mmgen eval KIND ...``: evaluation commands (one subcommand per kind of model).

The group is extensible: every module listed in :data:`EVAL_MODULES` exposes ``register_eval(subparsers)`` and
adds its own subcommands (this module adds ``image-tokenizer``).

    mmgen eval image-tokenizer --model DIR --data SHARDS [--features PATH] [--limit N]

prints PSNR (dB, per image on [0, 1], averaged), SSIM, codebook usage (fraction of codes used over the set),
perplexity of the token histogram and rFID/rKID (originals vs reconstructions) in a feature network's space.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import warnings
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, positive_int

#: modules with ``register_eval(subparsers)``; later features append theirs here
EVAL_MODULES: tuple[str, ...] = ("mmgen.cli.evaluate", "mmgen.cli.evaluate_maskgit", "mmgen.cli.evaluate_probe",
                                  "mmgen.cli.evaluate_text_to_image", "mmgen.cli.evaluate_audio")


def register(sub: Any) -> None:
    parser = sub.add_parser("eval", help="evaluate models (tokenizer reconstruction quality, ...)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="kind", metavar="KIND", parser_class=type(parser))
    kinds.required = True
    for name in EVAL_MODULES:
        importlib.import_module(name).register_eval(kinds)


def register_eval(kinds: Any) -> None:
    parser = kinds.add_parser("image-tokenizer", help="PSNR, SSIM, codebook usage, perplexity, rFID of a tokenizer")
    parser.add_argument("--model", required=True, type=existing_path, help="tokenizer folder (mmgen or diffusers)")
    parser.add_argument("--data", required=True, help="image shards: a folder, glob or brace pattern")
    parser.add_argument("--split", default="holdout", help="split prefix when --data is a folder (default: holdout)")
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluate at most N images")
    parser.add_argument("--batch-size", type=positive_int, default=100)
    parser.add_argument("--features", type=existing_path, default=None,
                        help="mmgen model folder with a features() method for rFID (default: the shipped MNIST "
                             "judge, assets/mnist-judge)")
    parser.add_argument("--no-fid", action="store_true", help="skip rFID/rKID")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.set_defaults(func=run_image_tokenizer)


def load_features(path: Path | None, channels: int) -> Any:
    """The feature network for rFID and where it came from: ``path``, else the shipped MNIST judge (None, i.e. no
    rFID, when it cannot read ``channels``-channel images), else a random-init DigitClassifier (warned)."""
    from mmgen.assets import MNIST_JUDGE, asset_path
    from mmgen.registry import create_model, load_pretrained

    candidates = [Path(path)] if path is not None else [asset_path(MNIST_JUDGE, required=False)]
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            network = load_pretrained(candidate).eval()
            reads = getattr(network.config, "in_channels", channels)
            if reads == channels:
                return network, str(candidate)
            if path is None:  # the shipped MNIST judge cannot read RGB images: no rFID rather than a crash
                return None, f"none (rFID skipped: {candidate.name} reads {reads}-channel images; pass --features)"
            from mmgen.errors import InvalidArgumentError

            raise InvalidArgumentError("--features", f"a feature network for {channels}-channel images",
                                       f"{path} reads {reads}-channel images")
    if path is not None:
        from mmgen.errors import CheckpointError

        raise CheckpointError(f"{path}: no config.json (expected an mmgen model folder with a features() method)")
    warnings.warn("rFID: no feature network given (--features) and none shipped; using a RANDOMLY initialised "
                  "DigitClassifier: rFID values are only comparable between runs with the same seed", stacklevel=2)
    import torch

    torch.manual_seed(0)
    return create_model("digit-classifier-mnist", in_channels=channels).eval(), "random-init digit classifier"


def run_image_tokenizer(args: argparse.Namespace) -> int:
    import torch

    from mmgen.cli.tokenize import load_tokenizer
    from mmgen.data import expand_shards, read_samples
    from mmgen.errors import DataError
    from mmgen.eval.image_metrics import evaluate_tokenizer
    from mmgen.training.tasks.image_tokenizer import TokenizerImages

    tokenizer = load_tokenizer(args.model)
    cfg = tokenizer.config
    shards = expand_shards(args.data, split=args.split if Path(args.data).is_dir() else None)
    samples = read_samples(shards, TokenizerImages(cfg.image_size, cfg.in_channels, train=False), limit=args.limit)
    if not samples:
        raise DataError(f"{args.data}: no decodable images")
    images = torch.stack([s["image"] for s in samples])
    features, source = (None, "") if args.no_fid else load_features(args.features, cfg.in_channels)
    results = evaluate_tokenizer(tokenizer, images.split(args.batch_size), features=features)
    results["features"] = source
    for key, value in results.items():
        print(f"{key:>11}: {value:.4f}" if isinstance(value, float) else f"{key:>11}: {value}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.flush()
    return 0
