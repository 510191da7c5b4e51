"""``mmgen export timm --model RUN --out DIR``: hand a trained encoder to another library's own format.

``timm``: the MIM encoder of an MAE or BEiT-style run (a run folder or its ``model/`` folder) becomes a timm model
folder (``config.json`` + ``model.safetensors``, written by timm's ``save_for_hf``). Load it with nothing but timm:
``timm.create_model("local-dir:DIR", pretrained=True, num_classes=0)``; its features equal mmgen's (checked on
export unless ``--no-check``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path


def register(sub: Any) -> None:
    parser = sub.add_parser("export", help="export models to other libraries' formats (timm)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="format", metavar="FORMAT", parser_class=type(parser))
    kinds.required = True
    timm_parser = kinds.add_parser("timm", help="a MIM encoder as a timm model folder (local-dir:DIR)")
    timm_parser.add_argument("--model", required=True, type=existing_path, help="MAE/BEiT run or model folder")
    timm_parser.add_argument("--out", required=True, type=Path, help="timm model folder to write")
    timm_parser.add_argument("--no-check", action="store_true", help="skip the feature parity check after export")
    timm_parser.set_defaults(func=run_timm)


def run_timm(args: argparse.Namespace) -> int:
    import torch

    from mmgen.errors import CheckpointError
    from mmgen.interop.timm_export import export_timm, load_timm, max_feature_difference
    from mmgen.models.mim.common import load_mim_model

    model = load_mim_model(args.model)
    out = export_timm(model, args.out)
    print(f"timm model: {out} (timm.create_model('local-dir:{out}', pretrained=True, num_classes=0))")
    if not args.no_check:
        c = model.config
        images = torch.rand(8, c.in_channels, c.image_size, c.image_size, generator=torch.Generator().manual_seed(0))
        diff = max_feature_difference(model, load_timm(out), images * 2 - 1)
        print(f"feature parity: max abs diff {diff:.2e} on 8 random images")
        if diff > 1e-5:
            raise CheckpointError(f"{out}: timm features differ from mmgen's by {diff:.2e} (> 1e-5)")
    return 0
