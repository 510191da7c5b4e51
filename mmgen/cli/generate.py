"""``mmgen generate|inpaint|outpaint|vary|edit MODEL_DIR ...``: image generation and editing from a pipeline folder.

Class pipelines take ``--class``; text-to-image pipelines (mmgen's or a diffusers aMUSEd folder) take ``--prompt``
and ``--negative-prompt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import existing_path, fraction, non_negative_float, non_negative_int, positive_int


def _sampling_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=existing_path, metavar="MODEL_DIR", help="a pipeline folder")
    parser.add_argument("--class", dest="class_label", type=int, help="class id (class-conditional models)")
    parser.add_argument("--prompt", help="text prompt (text-to-image models; \"\" = unconditional)")
    parser.add_argument("--negative-prompt", help="what guidance steers away from (text-to-image models)")
    parser.add_argument("--steps", type=positive_int, help="decoding steps (default: the pipeline's)")
    parser.add_argument("--guidance", type=non_negative_float, help="classifier-free guidance scale (1 = off)")
    parser.add_argument("--temperature", type=non_negative_float, help="sampling temperature")
    parser.add_argument("--sampler", choices=["maskgit", "random-order"], help="decoding strategy")
    parser.add_argument("--guidance-schedule", choices=["constant", "linear", "cosine"],
                        help="ramp the guidance scale over the steps (from 1 to --guidance)")
    parser.add_argument("--choice-temperature", type=non_negative_float,
                        help="Gumbel noise on confidences (MaskGIT: 4.5, annealed to 0)")
    parser.add_argument("--top-k", type=positive_int, help="sample only from the k most likely tokens")
    parser.add_argument("--top-p", type=fraction, help="nucleus sampling: smallest set with this probability")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    parser.add_argument("--precision", choices=["fp32", "bf16"],
                        help="text-to-image speed policy: bf16 transformer + decoder (default: the pipeline's)")
    parser.add_argument("--zoom", type=positive_int, default=1, help="upscale saved images (nearest) for viewing")
    parser.add_argument("--out", type=Path, required=True, help="an image file (one grid) or a folder")


def register(sub: Any) -> None:
    gen = sub.add_parser("generate", help="generate images", description="Generate images from a pipeline.")
    _sampling_args(gen)
    gen.add_argument("--num", type=positive_int, default=1, help="number of images")
    gen.set_defaults(func=run_generate)

    inp = sub.add_parser("inpaint", help="regenerate a masked region", description="Inpaint an image.")
    _sampling_args(inp)
    inp.add_argument("--image", type=existing_path, required=True, help="the image to edit")
    inp.add_argument("--mask", type=existing_path, required=True, help="mask image, white = regenerate")
    inp.add_argument("--dilate", type=non_negative_int, default=0, help="grow the token mask by N tokens")
    inp.add_argument("--softness", type=non_negative_int, default=0, help="soft seam width in pixels")
    inp.set_defaults(func=run_inpaint)

    out = sub.add_parser("outpaint", help="extend the canvas", description="Extend an image beyond its borders.")
    _sampling_args(out)
    out.add_argument("--image", type=existing_path, required=True, help="the image to extend")
    out.add_argument("--direction", choices=["left", "right", "up", "down"], default="right")
    out.add_argument("--extend", type=positive_int, default=2, help="tokens to add (x downsample factor pixels)")
    out.set_defaults(func=run_outpaint)

    var = sub.add_parser("vary", help="variations of an image (img2img)", description="Re-mask and regenerate.")
    _sampling_args(var)
    var.add_argument("--image", type=existing_path, required=True, help="the source image")
    var.add_argument("--strength", type=fraction, default=0.5, help="fraction of tokens to regenerate (0, 1]")
    var.set_defaults(func=run_vary)

    edit = sub.add_parser("edit", help="mask-free editing towards a new prompt (Muse)",
                          description="Re-mask the tokens the model finds least likely under the new prompt and "
                                      "regenerate them.")
    _sampling_args(edit)
    edit.add_argument("--image", type=existing_path, required=True, help="the source image")
    edit.add_argument("--strength", type=fraction, default=0.3, help="fraction of tokens re-masked per round")
    edit.add_argument("--rounds", type=positive_int, default=1, help="score / re-mask / regenerate rounds")
    edit.set_defaults(func=run_edit)


def _options(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    return {"num_steps": args.steps, "guidance_scale": args.guidance, "temperature": args.temperature,
            "sampler": args.sampler, "guidance_schedule": args.guidance_schedule,
            "choice_temperature": args.choice_temperature, "top_k": args.top_k, "top_p": args.top_p,
            "generator": torch.Generator().manual_seed(args.seed)}


def _condition(args: argparse.Namespace) -> dict[str, Any]:
    """The condition (a prompt, or else a class id) and the negative branch, as keyword arguments."""
    from mmgen.errors import InvalidArgumentError

    if args.prompt is not None and args.class_label is not None:
        raise InvalidArgumentError("prompt", "either --prompt or --class, not both", "both")
    condition = args.prompt if args.prompt is not None else args.class_label
    return {"condition": condition, "negative": args.negative_prompt}


def _load(args: argparse.Namespace) -> Any:
    from mmgen.errors import InvalidArgumentError
    from mmgen.pipelines import load_pipeline

    pipe = load_pipeline(args.model)
    if args.precision is not None:
        if not hasattr(pipe, "set_precision"):
            raise InvalidArgumentError("precision", "a text-to-image pipeline (this one runs in fp32)", args.precision)
        pipe.set_precision(args.precision)
    return pipe


def _save(images: list, args: argparse.Namespace) -> None:
    from mmgen.pipelines.images import save_images, upscale

    paths = save_images([upscale(image, args.zoom) for image in images], args.out)
    print(paths[0] if len(paths) == 1 else f"{len(paths)} images in {args.out}")


def _source(pipe: Any, args: argparse.Namespace) -> Any:
    from mmgen.pipelines.images import load_image

    channels = pipe.image_tokenizer.config.in_channels
    size = tuple(g * pipe.image_tokenizer.downsample_factor for g in pipe.grid)
    return load_image(args.image, channels, size if args.func is not run_outpaint else None)


def run_generate(args: argparse.Namespace) -> int:
    pipe = _load(args)
    result = pipe.generate(**_condition(args), num_images=args.num, **_options(args))
    _save(result.images, args)
    return 0


def run_inpaint(args: argparse.Namespace) -> int:
    import torch.nn.functional as F

    from mmgen.pipelines.editing import inpaint
    from mmgen.pipelines.images import load_image, load_mask

    pipe = _load(args)
    image = load_image(args.image, pipe.image_tokenizer.config.in_channels)
    mask = load_mask(args.mask, tuple(image.shape[-2:]))  # the mask must match the image as given
    size = tuple(g * pipe.image_tokenizer.downsample_factor for g in pipe.grid)
    if tuple(image.shape[-2:]) != size:
        image = F.interpolate(image, size=size, mode="bicubic", align_corners=False).clamp(-1, 1)
        mask = F.interpolate(mask, size=size, mode="nearest")
    result = inpaint(pipe, image, mask, **_condition(args), dilate=args.dilate, softness=args.softness,
                     **_options(args))
    _save(result.images, args)
    return 0


def run_outpaint(args: argparse.Namespace) -> int:
    from mmgen.pipelines.editing import outpaint

    pipe = _load(args)
    result = outpaint(pipe, _source(pipe, args), args.direction, args.extend, **_condition(args), **_options(args))
    _save(result.images, args)
    return 0


def run_vary(args: argparse.Namespace) -> int:
    from mmgen.pipelines.editing import vary

    pipe = _load(args)
    result = vary(pipe, _source(pipe, args), args.strength, **_condition(args), **_options(args))
    _save(result.images, args)
    return 0


def run_edit(args: argparse.Namespace) -> int:
    from mmgen.pipelines.editing import edit

    pipe = _load(args)
    result = edit(pipe, _source(pipe, args), strength=args.strength, rounds=args.rounds, **_condition(args),
                  **_options(args))
    _save(result.images, args)
    return 0
