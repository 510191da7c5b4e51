"""``mmgen eval probe --model RUN --data SHARDS``: linear-probe and k-NN accuracy of a MIM encoder's features.

The probe fits on the training split (``train-*.tar``) and is measured on the held-out split (``holdout-*.tar``)
of labelled shards. Features (DINO's linear evaluation): the final cls token concatenated with the mean patch
token (``--last-blocks N``: the cls tokens of the last N blocks), standardized with the training split's
statistics (MAE's affine-free BatchNorm) before a logistic regression. ``--baseline`` adds the same architecture at
random initialisation (same features, same probe) and raw pixels, measured the same way. Registered in
:data:`mmgen.cli.evaluate.EVAL_MODULES`.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, positive_int


def register_eval(kinds: Any) -> None:
    parser = kinds.add_parser("probe", help="linear-probe and k-NN accuracy of a MIM encoder (MAE, BEiT-style)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, type=existing_path, help="MAE/BEiT run or model folder")
    parser.add_argument("--data", required=True, help="labelled shards: a folder with train-* and holdout-* shards")
    parser.add_argument("--holdout", default=None, help="held-out shards (default: DATA's holdout-*.tar)")
    parser.add_argument("--limit-train", type=positive_int, default=None, help="fit on at most N training samples")
    parser.add_argument("--k", type=positive_int, default=20, help="neighbours for k-NN")
    parser.add_argument("--last-blocks", type=positive_int, default=1,
                        help="concatenate the cls tokens of the last N blocks (+ the mean patch token)")
    parser.add_argument("--baseline", action="store_true", help="also probe a random-init encoder and raw pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random-init baseline")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.set_defaults(func=run_probe)


def run_probe(args: argparse.Namespace) -> int:
    import torch

    from mmgen.data import expand_shards, read_samples
    from mmgen.eval.probe import probe_features
    from mmgen.models.mim.common import load_mim_model
    from mmgen.training.tasks.classifier import LabelledImages

    model = load_mim_model(args.model)
    folder = Path(args.data).is_dir()
    train = read_samples(expand_shards(args.data, split="train" if folder else None), LabelledImages(0),
                         limit=args.limit_train)
    held_out = read_samples(expand_shards(args.holdout or args.data, split="holdout"), LabelledImages(0))
    rows = {"model": probe_features(partial(model.eval().probe_features, last_blocks=args.last_blocks), train,
                                    held_out, k=args.k)}
    if args.baseline:
        torch.manual_seed(args.seed)
        random_init = type(model)(model.config).eval()
        rows["random-init"] = probe_features(partial(random_init.probe_features, last_blocks=args.last_blocks),
                                             train, held_out, k=args.k)
        rows["pixels"] = probe_features(lambda images: images.flatten(1), train, held_out, k=args.k)
    print(f"probe on {len(held_out)} held-out samples (fit on {len(train)}):")
    for name, result in rows.items():
        print(f"  {name:>11}: linear {result.linear_accuracy:.2%}  k-NN {result.knn_accuracy:.2%}  "
              f"(dim {result.feature_dim})")
    if args.json is not None:
        args.json.write_text(json.dumps({k: v.as_dict() for k, v in rows.items()}, indent=2) + "\n")
    return 0
