"""``mmgen convert amused SRC --out DIR [--dtype fp16|bf16|fp32]``: other libraries' checkpoints → mmgen folders.

``amused``: a diffusers aMUSEd folder (``model_index.json`` + transformer/ vqvae/ text_encoder/ tokenizer/
scheduler/, as ``AmusedPipeline.save_pretrained`` writes it) becomes an mmgen text-to-image pipeline folder
(``pipeline.json`` + transformer/ image_tokenizer/ text_encoder/) that gives the same images. No conversion is
needed just to run one: ``mmgen generate SRC --prompt ...`` opens aMUSEd folders directly.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_dir

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def register(sub: Any) -> None:
    parser = sub.add_parser("convert", help="convert other libraries' checkpoints (diffusers aMUSEd) to mmgen",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="format", metavar="FORMAT", parser_class=type(parser))
    kinds.required = True
    amused = kinds.add_parser("amused", help="a diffusers aMUSEd folder → an mmgen text-to-image pipeline")
    amused.add_argument("source", type=existing_dir, metavar="SRC", help="the aMUSEd folder")
    amused.add_argument("--out", required=True, type=Path, help="mmgen pipeline folder to write")
    amused.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                        help="weights on disk (models load in fp32 either way; default fp32)")
    amused.set_defaults(func=run_amused)


def run_amused(args: argparse.Namespace) -> int:
    import torch

    from mmgen.interop.amused import convert_amused

    out = convert_amused(args.source, args.out, dtype=getattr(torch, DTYPES[args.dtype]))
    print(f"mmgen pipeline: {out} (mmgen generate {out} --prompt \"...\" --out image.png)")
    return 0
