"""``mmgen eval text-to-image --model PIPE --prompts FILE``: does each sample show what its prompt asks for?

Generates one image per prompt (held-out prompts: ``mmgen data shapes`` writes ``prompts-holdout.jsonl``, whose
wordings and object combinations never occur in training captions) and scores it with the shapes attribute judge:
a sample matches when the judged set of (color, shape) objects equals the prompt's. Also reports the accuracy on
one- and two-object prompts, per-object recall and, where prompts state them, position and relation accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, non_negative_float, positive_int


def register_eval(kinds: Any) -> None:
    parser = kinds.add_parser("text-to-image", help="prompt accuracy of a text-to-image model (attribute judge)",
                              description=__doc__)
    parser.add_argument("--model", required=True, type=existing_path, help="text-to-image pipeline folder")
    parser.add_argument("--prompts", required=True, type=existing_path, help=".jsonl (prompt per line) or .txt")
    parser.add_argument("--judge", type=existing_path, help="attribute judge folder (default: assets/shapes-judge)")
    parser.add_argument("--num", type=positive_int, default=200, help="prompts used (the first N)")
    parser.add_argument("--steps", type=positive_int, help="decoding steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=non_negative_float, help="guidance scale (default: the pipeline's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.set_defaults(func=run_text_to_image)


def run_text_to_image(args: argparse.Namespace) -> int:
    from mmgen.eval.prompt_match import load_shapes_judge
    from mmgen.eval.text_to_image import prompt_accuracy, read_prompts
    from mmgen.pipelines import load_pipeline

    pipe = load_pipeline(args.model)
    prompts = read_prompts(args.prompts, args.num)
    result = prompt_accuracy(pipe, load_shapes_judge(args.judge), prompts, seed=args.seed, progress=True,
                             num_steps=args.steps, guidance_scale=args.guidance)
    summary = {"prompts": len(prompts), "color_shape_accuracy": result.color_shape_accuracy,
               "position_accuracy": result.position_accuracy, "relation_accuracy": result.relation_accuracy,
               "object_recall_min": min(result.object_recall.values()) if result.object_recall else math.nan}
    for count, name in ((1, "one_object_accuracy"), (2, "two_object_accuracy")):
        kind = [bool(match) for match, asked in zip(result.matches.tolist(), result.requested) if len(asked) == count]
        summary[name] = sum(kind) / len(kind) if kind else math.nan
    for key, value in summary.items():
        print(f"{key:24s} {value:.4f}" if isinstance(value, float) else f"{key:24s} {value}")
    if args.json:
        args.json.write_text(json.dumps({**summary, "object_recall": result.object_recall}, indent=2))
    return 0
