"""Text-to-image speed: mmgen's pipeline vs diffusers' AmusedPipeline on the same aMUSEd-256 weights, one run.

Random weights at the aMUSEd-256 architecture (U-ViT: width 1024, 22 layers, 8192 codes, vocabulary 8256, 16x16
tokens; VQ-GAN f16 with 8192 codes; CLIP-L/14 text tower with projection; CLIP's real BPE vocabulary from
open_clip). The diffusers pipeline is built in memory and mmgen's is converted from it
(``mmgen.interop.amused.pipeline_from_diffusers``), so both hold the same weights. Both run ``--steps`` steps,
batch 1, classifier-free guidance 10 (aMUSEd's default: cond + uncond in one batch), the same prompt; seconds per
image are medians over ``--repeats`` round-robin rounds (after one warm-up round), and each setting's time is
split into text encoder / transformer (all steps) / VQ decode / the rest (sampling, glue).

Settings: ``fp32``; ``bf16-autocast`` (the whole call under ``torch.autocast("cpu", bfloat16)``; for mmgen, the
pipeline's ``autocast="bf16"`` on the transformer only); diffusers ``bf16-autocast-cl`` adds channels_last conv
weights to the VQ; diffusers ``bf16`` holds every component in bf16 (what ``from_pretrained(...,
torch_dtype=torch.bfloat16)`` gives: no per-call weight casts); mmgen ``bf16`` is its per-component policy:
transformer weights stored in bf16 (no per-call weight casts) under autocast, text encoder fp32, VQ decoder in bf16
and channels_last (measured: 2-3x faster than fp32 or plain autocast on this CPU); ``bf16-fp32vq`` keeps the VQ
decoder in fp32. Ratios are against the fastest diffusers setting in the run.

    python benchmarks/text_to_image.py [--steps 12] [--repeats 2] [--threads N] [--settings all|best]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import gzip
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "a photograph of a red fox sitting in fresh snow, golden hour"
COMPONENTS = ("text", "transformer", "vq decode")
Case = tuple[Callable[..., None], "Timers"]
DIFFUSERS_SETTINGS = {"all": ("fp32", "bf16-autocast", "bf16-autocast-cl", "bf16"), "best": ("bf16-autocast", "bf16")}
MMGEN_SETTINGS = {"all": ("fp32", "bf16-autocast", "bf16-fp32vq", "bf16"), "best": ("bf16",)}


def clip_tokenizer() -> Any:
    """CLIP's BPE tokenizer (49408 tokens) from the vocabulary file open_clip ships."""
    import open_clip
    from open_clip.tokenizer import bytes_to_unicode
    from transformers import CLIPTokenizer

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as file:
        merges = [tuple(line.split()) for line in file.read().split("\n")[1:49152 - 256 - 1]]
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=77)


def build_diffusers_pipeline() -> Any:
    """AmusedPipeline with random weights at the aMUSEd-256 configuration."""
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from diffusers.pipelines.deprecated.amused import AmusedPipeline
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = clip_tokenizer()
    text = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        max_position_embeddings=77, projection_dim=768, hidden_act="quick_gelu", bos_token_id=49406,
        eos_token_id=49407, pad_token_id=49407))
    transformer = UVit2DModel(sample_size=16)  # diffusers' defaults are aMUSEd's: hidden 1024, 22 layers, ...
    vqvae = VQModel(block_out_channels=(128, 256, 256, 512, 768), down_block_types=("DownEncoderBlock2D",) * 5,
                    up_block_types=("UpDecoderBlock2D",) * 5, layers_per_block=2, latent_channels=64,
                    num_vq_embeddings=8192, vq_embed_dim=64, mid_block_add_attention=False, lookup_from_codebook=True,
                    force_upcast=True, sample_size=256)
    pipe = AmusedPipeline(vqvae=vqvae.eval(), tokenizer=tokenizer, text_encoder=text.eval(),
                          transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=8255))
    pipe.set_progress_bar_config(disable=True)
    return pipe


class Timers:
    """Seconds spent inside wrapped callables, per component, for the call being measured."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(COMPONENTS, 0.0)

    def wrap(self, owner: Any, attribute: str, component: str) -> None:
        inner = getattr(owner, attribute)

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.spent[component] += time.perf_counter() - start

        setattr(owner, attribute, timed)

    def reset(self) -> None:
        self.spent = dict.fromkeys(COMPONENTS, 0.0)


def own_components(pipe: Any, names: tuple[str, ...]) -> Any:
    """A shallow copy of ``pipe`` whose components are shallow copies too (weights shared), so each case can wrap
    its own methods with timers."""
    pipe = copy.copy(pipe)
    for name in names:
        setattr(pipe, name, copy.copy(getattr(pipe, name)))
    return pipe


def diffusers_case(pipe: Any, steps: int, setting: str) -> Case:
    """``fp32``, ``bf16-autocast``, ``bf16-autocast-cl`` (also every conv weight in channels_last) or ``bf16``
    (every component's weights in bf16, no autocast)."""
    pipe = own_components(pipe, ("text_encoder", "transformer", "vqvae"))
    if setting.endswith("-cl"):
        pipe.vqvae = copy.deepcopy(pipe.vqvae).to(memory_format=torch.channels_last)
    if setting == "bf16":
        for name in ("text_encoder", "transformer", "vqvae"):
            setattr(pipe, name, copy.deepcopy(getattr(pipe, name)).to(torch.bfloat16))
    timers = Timers()
    timers.wrap(pipe.text_encoder, "forward", "text")
    timers.wrap(pipe.transformer, "forward", "transformer")
    timers.wrap(pipe.vqvae, "decode", "vq decode")

    def call(steps: int = steps) -> None:
        autocast = setting.startswith("bf16-autocast")
        context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
        with context:
            pipe(PROMPT, num_inference_steps=steps, guidance_scale=10.0, generator=torch.Generator().manual_seed(0))

    return call, timers


def mmgen_case(base: Any, steps: int, setting: str) -> Case:
    """``fp32``; ``bf16-autocast`` (fp32 weights, transformer under autocast, fp32 VQ decoder); ``bf16``
    (transformer weights in bf16 + autocast, VQ decoder in bf16 channels_last); ``bf16-fp32vq`` (fp32 decoder)."""
    pipe = own_components(base, ("text_encoder", "transformer", "image_tokenizer"))
    pipe.autocast = None if setting == "fp32" else "bf16"
    if setting == "bf16":  # the pipeline's own per-component policy (what `precision: bf16` in pipeline.json does)
        pipe.transformer = copy.deepcopy(base.transformer)
        pipe.image_tokenizer = copy.deepcopy(base.image_tokenizer)
        pipe.set_precision("bf16")
    elif setting == "bf16-fp32vq":
        pipe.transformer = copy.deepcopy(base.transformer).to(torch.bfloat16)
    timers = Timers()
    timers.wrap(pipe.text_encoder, "_encode", "text")
    timers.wrap(pipe.transformer, "forward", "transformer")
    timers.wrap(pipe.transformer, "project_context", "transformer")
    timers.wrap(pipe.image_tokenizer, "decode", "vq decode")

    def call(steps: int = steps) -> None:
        pipe(PROMPT, num_steps=steps, guidance_scale=10.0, generator=torch.Generator().manual_seed(0))

    return call, timers


def timed_round_robin(cases: dict[str, Case], repeats: int) -> dict[str, dict[str, float]]:
    """Median total and per-component seconds of each case; calls interleaved so machine noise hits all alike
    (each case first warms up with a 1-step call)."""
    for call, _ in cases.values():
        call(1)
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in cases}
    for round_index in range(repeats):
        for name, (call, timers) in cases.items():
            timers.reset()
            start = time.perf_counter()
            call()
            samples[name].append({"total": time.perf_counter() - start, **timers.spent})
            print(f"  round {round_index + 1}/{repeats} {name}: {samples[name][-1]['total']:.1f} s", flush=True)
    return {name: {key: statistics.median(s[key] for s in runs) for key in runs[0]} for name, runs in samples.items()}


@contextlib.contextmanager
def threads(count: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run(args: argparse.Namespace) -> None:
    from mmgen.interop.amused import pipeline_from_diffusers

    torch.manual_seed(0)
    peer = build_diffusers_pipeline()
    ours = pipeline_from_diffusers(peer)
    cases = {f"diffusers {name}": diffusers_case(peer, args.steps, name) for name in DIFFUSERS_SETTINGS[args.settings]}
    cases.update({f"mmgen {name}": mmgen_case(ours, args.steps, name) for name in MMGEN_SETTINGS[args.settings]})
    params = sum(p.numel() for p in ours.transformer.parameters()) / 1e6
    print(f"text-to-image on CPU ({args.threads} threads): aMUSEd-256 architecture (transformer {params:.0f}M "
          f"params, random weights), {args.steps} steps, batch 1, guidance 10; torch {torch.__version__}")
    with torch.inference_mode(), threads(args.threads):
        results = timed_round_robin(cases, args.repeats)
    best = min(v["total"] for k, v in results.items() if k.startswith("diffusers"))
    header = f"{'setting':24s} {'s/image':>8s} {'ratio':>7s} " + " ".join(f"{c:>12s}" for c in (*COMPONENTS, "rest"))
    print(header)
    for name, times in results.items():
        rest = times["total"] - sum(times[c] for c in COMPONENTS)
        parts = " ".join(f"{times[c]:12.2f}" for c in COMPONENTS) + f" {rest:12.2f}"
        print(f"{name:24s} {times['total']:8.2f} {best / times['total']:6.2f}x {parts}")
    print("ratio = diffusers' best s/image / this setting's s/image (higher is faster)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=12, help="decoding steps (aMUSEd's default 12)")
    parser.add_argument("--repeats", type=int, default=2, help="timed rounds after one warm-up round")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--settings", choices=["all", "best"], default="best",
                        help="all: fp32 and bf16 variants of both; best: each side's fastest setting only")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
