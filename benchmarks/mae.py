"""MAE's speed claim, measured: training step time with the encoder on the visible patches only vs on all tokens.

    python benchmarks/mae.py [--image-size 224] [--patch-size 16] [--channels 3] [--mask-ratio 0.75] [--batch 16]
                             [--embed-dim 192] [--depth 12] [--heads 3] [--decoder-dim 128] [--decoder-depth 1]
                             [--dtype fp32|bf16] [--budget 10] [--threads N] [--device cpu|cuda]

Both cases are the *same* model (same weights, same mask, same decoder): ``encoder_sees="visible"`` (MAE: the
encoder runs on the ``L - M`` visible patches, mask tokens join in the light decoder) vs ``encoder_sees="all"``
(the encoder runs on all ``L`` tokens with masked ones replaced by a mask token, as BEiT/SimMIM do). A step is
forward + backward + AdamW update. Each case gets a warm-up step, then steps alternate between the two cases (so a
change in machine load hits both alike) until each has used about ``--budget`` seconds; the median is reported.
On CPU a step is timed in process CPU seconds (``time.process_time``: all threads together, unaffected by other
jobs on a shared machine; with ``--threads 1`` it equals the step's compute time), on CUDA in wall seconds.
The defaults are ViT-Ti/16 at 224 px (196 patches) with a light one-block decoder of width 128: the speedup
only appears when the encoder dominates the step, which is the point of MAE's asymmetric design.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mmgen.models.mim.mae import MAEConfig, MaskedAutoencoder

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch-size", type=int, default=16)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--mask-ratio", type=float, default=0.75)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--embed-dim", type=int, default=192)
    parser.add_argument("--depth", type=int, default=12)
    parser.add_argument("--heads", type=int, default=3)
    parser.add_argument("--decoder-dim", type=int, default=128)
    parser.add_argument("--decoder-depth", type=int, default=1)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32", help="autocast dtype (fp32: none)")
    parser.add_argument("--budget", type=float, default=10.0, help="seconds of timed steps per case")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default; 1 is far faster on a CPU shared with other jobs)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    return parser.parse_args(argv)


def build_pair(args: argparse.Namespace) -> dict[str, MaskedAutoencoder]:
    """The same MAE twice: encoder on visible patches / on all tokens (identical shared weights)."""
    common = dict(image_size=args.image_size, patch_size=args.patch_size, in_channels=args.channels,
                  embed_dim=args.embed_dim, depth=args.depth, num_heads=args.heads, mask_ratio=args.mask_ratio,
                  decoder_dim=args.decoder_dim, decoder_depth=args.decoder_depth)
    torch.manual_seed(0)
    visible = MaskedAutoencoder(MAEConfig(**common, encoder_sees="visible"))
    every = MaskedAutoencoder(MAEConfig(**common, encoder_sees="all"))
    every.load_state_dict(visible.state_dict(), strict=False)  # the mask tokens differ in place, nothing else
    return {"visible": visible.to(args.device).train(), "all": every.to(args.device).train()}


def make_step(model: MaskedAutoencoder, images: torch.Tensor, mask: torch.Tensor, dtype: str):
    """A closure doing one training step (forward, backward, AdamW) of ``model`` on a fixed batch and mask."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    autocast = torch.autocast(images.device.type, dtype=DTYPES[dtype], enabled=dtype != "fp32")

    clock = time.perf_counter if images.device.type == "cuda" else time.process_time

    def step() -> float:
        start = clock()
        with autocast:
            loss = model(images, mask).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    return step


def run(args: argparse.Namespace) -> dict[str, float]:
    """Median step seconds per case, and the ratio all / visible."""
    models = build_pair(args)
    c = models["visible"].config
    images = torch.rand(args.batch, c.in_channels, c.image_size, c.image_size, device=args.device) * 2 - 1
    mask = models["visible"].masking(args.batch, models["visible"].grid, generator=torch.Generator().manual_seed(0),
                                     device=args.device)
    steps = {name: make_step(model, images, mask, args.dtype) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # warm-up
        step()
    while min(sum(t) for t in times.values()) < args.budget or min(len(t) for t in times.values()) < 3:
        for name, step in steps.items():
            times[name].append(step())
    result = {name: statistics.median(t) for name, t in times.items()}
    result["ratio"] = result["all"] / result["visible"]
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    patches = (args.image_size // args.patch_size) ** 2
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"MAE training step, {patches} patches, mask ratio {args.mask_ratio}, batch {args.batch}, "
          f"ViT dim {args.embed_dim} depth {args.depth}, decoder {args.decoder_dim}x{args.decoder_depth}, "
          f"{args.dtype} on {args.device} ({torch.get_num_threads()} threads)")
    result = run(args)
    print(f"  encoder on visible patches: {result['visible'] * 1e3:8.1f} ms/step")
    print(f"  encoder on all tokens:      {result['all'] * 1e3:8.1f} ms/step")
    print(f"  speedup (all / visible):    {result['ratio']:8.2f}x")


if __name__ == "__main__":
    main()
