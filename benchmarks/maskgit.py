"""MaskGIT speed vs muse-maskgit-pytorch's ``MaskGit`` at the same model size, measured in one run.

Prints, for fp32 and bf16 autocast: training tokens/s (forward + backward + AdamW step on masked batches) and
sampling images/s (the decoding loop, ``--steps`` steps, classifier-free guidance ``--guidance``), and the ratio
mmgen / peer. Both models have the same width, depth, heads, MLP width and token grid.

Conditioning differs by design: the peer conditions every block by cross-attention on text embeddings; mmgen's
class-conditional model uses adaLN. The row ``mmgen (xattn)`` gives mmgen the same cross-attention path over a
one-token class embedding, so the ratio is also shown without that architectural saving. The peer's T5 text
encoding is replaced by a precomputed one-token embedding (mmgen's class lookup is equally free), and its VQ-VAE's
decoding is skipped so both loops return tokens.

    python benchmarks/maskgit.py [--grid 16] [--dim 256] [--depth 6] [--batch 8] [--steps 8] [--precision both]
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmgen import create_model
from mmgen.pipelines.maskgit import MaskGITPipeline, SamplingOptions
from mmgen.training.tasks.maskgit import MaskGITModule


def timed_round_robin(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved so machine noise hits all alike.

    A function that raises RuntimeError (e.g. an unsupported precision) is reported as ``nan``.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    alive = dict(fns)
    for round_index in range(repeats + 1):  # round 0 is warmup
        for name, fn in list(alive.items()):
            start = time.perf_counter()
            try:
                fn()
            except RuntimeError as exc:
                print(f"  {name}: failed: {str(exc).splitlines()[0][:80]}")
                del alive[name]
                continue
            if round_index:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) if t else float("nan") for name, t in times.items()}


def build_peer(args: argparse.Namespace, t5_dir: str, flash: bool) -> torch.nn.Module:
    from muse_maskgit_pytorch import MaskGit, MaskGitTransformer, VQGanVAE
    from transformers import T5Config

    T5Config(d_model=args.dim, num_layers=1, num_heads=2, d_kv=32, d_ff=64, vocab_size=128).save_pretrained(t5_dir)
    transformer = MaskGitTransformer(num_tokens=args.codebook, seq_len=args.grid ** 2, dim=args.dim, depth=args.depth,
                                     dim_head=args.dim // args.heads, heads=args.heads, ff_mult=4, t5_name=t5_dir,
                                     flash=flash)
    vae = VQGanVAE(dim=16, codebook_size=args.codebook, layers=2, lookup_free_quantization=True,
                   use_vgg_and_gan=False)
    peer = MaskGit(image_size=args.grid * 4, transformer=transformer, vae=vae, cond_drop_prob=0.1)
    return peer


class _FakeText:
    """Stands in for the peer's T5 encoder: a fixed one-token embedding per prompt (like a class lookup)."""

    def __init__(self, dim: int):
        self.table = torch.randn(16, dim)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return self.table[[hash(t) % 16 for t in texts]][:, None]


def peer_cases(peer: torch.nn.Module, args: argparse.Namespace) -> tuple[Callable, Callable]:
    fake = _FakeText(args.dim)
    peer.transformer.encode_text = fake
    texts = [str(i % 10) for i in range(args.batch)]
    optimizer = torch.optim.AdamW(peer.transformer.parameters(), lr=1e-4)
    ids = torch.randint(0, args.codebook, (args.batch, args.grid, args.grid))

    def train() -> None:
        loss = peer(ids, text_embeds=fake(texts))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    peer.vae.decode_from_ids = lambda ids: ids  # both loops return tokens

    def sample() -> None:
        peer.generate(texts, fmap_size=args.grid, timesteps=args.steps, cond_scale=args.guidance)

    return train, sample


def mmgen_cases(args: argparse.Namespace, cross_attention: bool) -> tuple[Callable, Callable]:
    extra = {"context_dim": args.dim, "num_classes": 0} if cross_attention else {"num_classes": 10}
    model = create_model("maskgit-mnist", codebook_size=args.codebook, grid=[args.grid, args.grid], dim=args.dim,
                         depth=args.depth, num_heads=args.heads, dropout=0.0, **extra)
    module = MaskGITModule(model, None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tokens = torch.randint(0, args.codebook, (args.batch, args.grid, args.grid))
    labels = torch.randint(0, 10, (args.batch,))
    context = torch.randn(args.batch, 1, args.dim)

    def train() -> None:
        module.train()
        if cross_attention:
            inputs, mask = module.masker(tokens.reshape(args.batch, -1))
            logits = model(inputs.reshape(tokens.shape), context=context)
            loss = torch.nn.functional.cross_entropy(logits[mask].float(), tokens.reshape(args.batch, -1)[mask])
        else:
            loss = module({"tokens": tokens, "label": labels}, 0).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    pipe = MaskGITPipeline(model, torch.nn.Identity())
    options = SamplingOptions(num_steps=args.steps, guidance_scale=args.guidance)
    start = torch.full((args.batch, args.grid, args.grid), model.mask_id)

    def sample() -> None:
        model.eval()
        if cross_attention:
            kv = model.project_context(context)
            null_kv = model.project_context(torch.zeros_like(context))
            both = [(torch.cat([a, b]), torch.cat([c, d])) for (a, c), (b, d) in zip(kv, null_kv)]
            _sample_with_context(pipe, start, options, both)
        else:
            pipe.generate_tokens(start, labels, options)

    return train, sample


def _sample_with_context(pipe: MaskGITPipeline, start: torch.Tensor, options: SamplingOptions,
                         context_kv: list) -> None:
    """The pipeline's loop (``run_sampler``), conditioning through cached cross-attention keys/values."""
    from mmgen.sampling import apply_guidance, run_sampler

    model, flat = pipe.transformer, start.reshape(start.shape[0], -1)

    def logits_fn(tokens: torch.Tensor, index: int) -> torch.Tensor:
        both = model(torch.cat([tokens, tokens]).reshape(-1, *start.shape[1:]), context_kv=context_kv).float()
        cond, uncond = both.chunk(2)
        return apply_guidance(cond, uncond, options.guidance_scale)

    with torch.no_grad():
        run_sampler(options.build_sampler(), logits_fn, flat, flat == model.mask_id)


def run(args: argparse.Namespace) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    with tempfile.TemporaryDirectory() as t5_dir:
        cases = {"peer (flash)": peer_cases(build_peer(args, t5_dir, True), args),
                 "peer (no flash)": peer_cases(build_peer(args, t5_dir, False), args),
                 "mmgen": mmgen_cases(args, False), "mmgen (xattn)": mmgen_cases(args, True)}
        tokens = args.batch * args.grid ** 2
        print(f"MaskGIT speed on CPU ({args.threads} threads): grid {args.grid}x{args.grid}, codebook {args.codebook}, "
              f"dim {args.dim}, depth {args.depth}, heads {args.heads}, batch {args.batch}, {args.steps} sampling "
              f"steps, guidance {args.guidance}; torch {torch.__version__}")
        print("ratios are against the faster of the peer's two attention settings")
        print(f"{'precision':9s} {'model':14s} {'train tok/s':>12s} {'ratio':>7s} {'sample img/s':>13s} {'ratio':>7s}")
        for precision in precisions:
            ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if precision == "bf16" else nullcontext
            with ctx():  # the peer's pure-PyTorch flash attention overflows in bf16: reported as failed
                train_s = timed_round_robin({k: v[0] for k, v in cases.items()}, args.repeats)
                sample_s = timed_round_robin({k: v[1] for k, v in cases.items()}, max(1, args.repeats // 2))
            results = {name: (tokens / train_s[name], args.batch / sample_s[name]) for name in cases
                       if math.isfinite(train_s[name])}
            peers = [v for k, v in results.items() if k.startswith("peer")]
            base = (max(p[0] for p in peers), max(p[1] for p in peers))  # the peer at its best setting
            for name, (train_rate, sample_rate) in results.items():
                print(f"{precision:9s} {name:14s} {train_rate:12.0f} {train_rate / base[0]:6.2f}x "
                      f"{sample_rate:13.2f} {sample_rate / base[1]:6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid", type=int, default=16, help="token grid side (16 = 256 tokens, as 256px f16)")
    parser.add_argument("--codebook", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--guidance", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--precision", choices=["fp32", "bf16", "both"], default="both")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
