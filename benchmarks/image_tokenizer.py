"""Encode+decode throughput of mmgen's ImageTokenizer vs diffusers' VQModel with the same weights and image size.

    .venv/bin/python benchmarks/image_tokenizer.py                     # vq-mnist (28px) and a small f8 (64px)
    .venv/bin/python benchmarks/image_tokenizer.py --model assets/vq-mnist --batch 64 --repeats 7

Both sides go images → token ids → images: diffusers as ``encode`` → ``quantize`` → ``decode(ids,
force_not_quantize=True)``, mmgen as ``decode(encode(images))``. fp32 runs in fp32; bf16 runs both under
``torch.autocast(bfloat16)`` (mmgen keeps its codebook search in fp32). Timings alternate between the two models
(A, B, A, B, ...) and report the median, so background load on shared machines hits both alike. Prints images/s and
the ratio mmgen / diffusers (> 1: mmgen faster).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable

import torch

from mmgen.registry import create_model, load_pretrained
from mmgen.tokenizers.image import ImageTokenizer

SMALL_F8 = dict(image_size=64, in_channels=3, out_channels=3, block_out_channels=(64, 128, 128, 256),
                layers_per_block=1, latent_channels=32, codebook_size=1024, codebook_dim=32, kmeans_init=False)


def diffusers_roundtrip(vqmodel: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """images [B, C, H, W] → ids → images, the diffusers way."""

    def run(images: torch.Tensor) -> torch.Tensor:
        latents = vqmodel.encode(images).latents
        ids = vqmodel.quantize(latents)[2][2]
        b, d, h, w = latents.shape
        return vqmodel.decode(ids, force_not_quantize=True, shape=(b, h, w, d)).sample

    return run


def mmgen_roundtrip(tokenizer: ImageTokenizer) -> Callable[[torch.Tensor], torch.Tensor]:
    """images [B, C, H, W] → ids [B, h, w] → images."""
    return lambda images: tokenizer.decode(tokenizer.encode(images))


def time_pair(fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], images: torch.Tensor, repeats: int,
              precision: str) -> dict[str, float]:
    """Median seconds per call of each function, alternating calls; one warm-up call each."""
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode(), autocast:
        for fn in fns.values():
            fn(images)
        for _ in range(repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn(images)
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build(spec: str) -> ImageTokenizer:
    """A registered config name, 'small-f8', or a saved tokenizer folder."""
    if spec == "small-f8":
        torch.manual_seed(0)
        return create_model("vq-mnist", **SMALL_F8).eval()
    if spec in ("vq-mnist", "vq-f16-256", "fsq-mnist"):
        torch.manual_seed(0)
        return create_model(spec, kmeans_init=False).eval()
    return load_pretrained(spec).eval()


def check_same_outputs(tokenizer: ImageTokenizer, reference: Callable, images: torch.Tensor) -> float:
    with torch.inference_mode():
        return float((mmgen_roundtrip(tokenizer)(images) - reference(images)).abs().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", help="config name, 'small-f8' or folder (repeatable)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    args = parser.parse_args()
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'model':<22}{'size':>6}{'prec':>6}{'mmgen img/s':>13}{'diffusers img/s':>17}{'ratio':>8}")
    for spec in args.model or ["vq-mnist", "small-f8"]:
        tokenizer = build(spec)
        size, channels = tokenizer.config.image_size, tokenizer.config.in_channels
        images = torch.rand(args.batch, channels, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
        reference = diffusers_roundtrip(tokenizer.to_diffusers())
        diff = check_same_outputs(tokenizer, reference, images[:4])
        for precision in precisions:
            fns = {"mmgen": mmgen_roundtrip(tokenizer), "diffusers": reference}
            secs = time_pair(fns, images, args.repeats, precision)
            ours, theirs = args.batch / secs["mmgen"], args.batch / secs["diffusers"]
            print(f"{spec:<22}{size:>6}{precision:>6}{ours:>13.1f}{theirs:>17.1f}{ours / theirs:>8.2f}")
        print(f"{'':<22}(fp32 max abs diff between the two: {diff:.2e})")


if __name__ == "__main__":
    main()
