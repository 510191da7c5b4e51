"""Evaluating text-to-image pipelines: generate for prompts, then score the images with an attribute judge."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from mmgen.errors import InvalidArgumentError
from mmgen.eval.prompt_match import PromptMatch, prompt_match


@torch.no_grad()
def generate_for_prompts(pipe: Any, prompts: Sequence[str], *, batch_size: int = 64, seed: int = 0,
                         progress: bool = False, **options: Any) -> torch.Tensor:
    """One image per prompt (seeded, in batches) → pixels ``[N, C, H, W]`` in [-1, 1]."""
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    chunks = [list(prompts[i:i + batch_size]) for i in range(0, len(prompts), batch_size)]
    bar = tqdm(chunks, desc="generate", unit="batch", disable=not progress)
    return torch.cat([pipe(chunk, generator=generator, **options).pixels.cpu() for chunk in bar])


def prompt_accuracy(pipe: Any, judge: torch.nn.Module, prompts: Sequence[str], *, seed: int = 0,
                    batch_size: int = 64, progress: bool = False, **options: Any) -> PromptMatch:
    """Generate one image per prompt and judge it (:func:`~mmgen.eval.prompt_match.prompt_match`)."""
    if not prompts:
        raise InvalidArgumentError("prompts", "at least one prompt", 0)
    pixels = generate_for_prompts(pipe, prompts, batch_size=batch_size, seed=seed, progress=progress, **options)
    return prompt_match(judge, pixels, list(prompts))


def read_prompts(path: str | Path, limit: int | None = None) -> list[str]:
    """Prompts from a ``.jsonl`` file (``{"prompt": ...}`` per line, as ``mmgen data shapes`` writes) or a ``.txt``
    file (one per line)."""
    path = Path(path)
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        try:
            prompts = [json.loads(line)["prompt"] for line in lines]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise InvalidArgumentError("prompts", f"a .jsonl file with a 'prompt' per line ({path})",
                                       str(error)) from None
    else:
        prompts = [line.strip() for line in lines]
    if not prompts:
        raise InvalidArgumentError("prompts", f"at least one prompt in {path}", "an empty file")
    return prompts[:limit] if limit else prompts
