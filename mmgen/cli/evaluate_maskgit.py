"""``mmgen eval maskgit --model PIPE --data SHARDS``: class accuracy, FID/KID and diversity of generated images.

FID/KID are computed in the judge classifier's feature space (offline, no Inception download): generated samples
against the held-out split, beside the floor of real train vs real held-out images of the same count.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, non_negative_float, positive_int


def register_eval(kinds: Any) -> None:
    parser = kinds.add_parser("maskgit", help="class accuracy, FID/KID and diversity of a class-conditional model",
                              description=__doc__)
    parser.add_argument("--model", required=True, type=existing_path, help="MaskGIT pipeline folder")
    parser.add_argument("--data", required=True, type=existing_path, help="real shards folder (train-*, holdout-*)")
    parser.add_argument("--judge", type=existing_path, help="classifier folder (default: assets/mnist-judge)")
    parser.add_argument("--per-class", type=positive_int, default=50, help="samples generated per class")
    parser.add_argument("--steps", type=positive_int, default=8, help="decoding steps")
    parser.add_argument("--guidance", type=non_negative_float, default=2.0, help="guidance scale")
    parser.add_argument("--temperature", type=non_negative_float, default=1.0, help="sampling temperature")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.set_defaults(func=run_maskgit)


def _real(data: Path, split: str, count: int) -> tuple[Any, Any]:
    import torch

    from mmgen.data import read_samples
    from mmgen.training.tasks.classifier import LabelledImages

    samples = read_samples(data, LabelledImages(0), limit=count, split=split)
    return torch.stack([s["image"] for s in samples]), torch.tensor([s["label"] for s in samples])


def evaluate_maskgit(pipe: Any, judge: Any, data: Path, *, per_class: int, seed: int = 0,
                     **options: Any) -> dict[str, float]:
    """The numbers ``mmgen eval maskgit`` prints (see the module docstring)."""
    from mmgen.eval.generation import diversity, features_of, fid_kid, generate_per_class, judge_accuracy

    fake, labels = generate_per_class(pipe, per_class, seed=seed, **options)
    holdout, holdout_labels = _real(data, "holdout", len(fake))
    train, _ = _real(data, "train", len(holdout))
    generated = fid_kid(judge, holdout, fake)
    floor = fid_kid(judge, holdout, train)
    return {
        "class_accuracy": judge_accuracy(judge, fake, labels),
        "judge_accuracy_on_holdout": judge_accuracy(judge, holdout, holdout_labels),
        "fid": generated["fid"], "kid": generated["kid"],
        "fid_floor_train_vs_holdout": floor["fid"], "kid_floor": floor["kid"],
        "fid_ratio_to_floor": generated["fid"] / max(floor["fid"], 1e-12),
        "diversity": diversity(features_of(judge, fake), labels),
        "diversity_real": diversity(features_of(judge, holdout), holdout_labels),
        "num_generated": len(fake), "num_real": len(holdout),
    }


def run_maskgit(args: argparse.Namespace) -> int:
    from mmgen.assets import MNIST_JUDGE, asset_path
    from mmgen.pipelines import load_pipeline
    from mmgen.registry import load_pretrained

    pipe = load_pipeline(args.model)
    judge = load_pretrained(args.judge or asset_path(MNIST_JUDGE))
    results = evaluate_maskgit(pipe, judge, args.data, per_class=args.per_class, seed=args.seed,
                               num_steps=args.steps, guidance_scale=args.guidance, temperature=args.temperature)
    for key, value in results.items():
        print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0
