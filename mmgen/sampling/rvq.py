"""Residual-VQ token grids ``[B, q, n]`` (q levels, n frames): level-wise decoding and the SoundStorm training mask.

Decoding goes level by level, coarse first (SoundStorm, MaskGCT): level 0 is sampled with any
:class:`~mmgen.sampling.samplers.TokenSampler` in many steps while every finer level is still masked, then level 1
in fewer steps with level 0 visible, and so on (default steps ``[12, 4, 2, 1, 1, ...]``). Positions that are not
masked on input (a voice prompt, the audio around an inpainted span) are never changed.

Training mirrors it (:func:`rvq_training_mask`): per sample pick a level l, mask a cosine-schedule fraction of
that level's frames after the prompt prefix, mask all finer levels there, keep coarser levels and the prefix
visible; the loss is taken on the masked positions of level l only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError, check_positive_int
from mmgen.sampling.masking import random_mask, sample_mask_ratios
from mmgen.sampling.samplers import SamplerOutput, TokenSampler, run_sampler
from mmgen.sampling.schedules import ScheduleLike

GridLogitsFn = Callable[[Tensor, int, int], Tensor]


def level_steps(num_levels: int, first: int = 12) -> list[int]:
    """Decoding steps per level: ``first`` for level 0, then a third/half of it down to 1 (``[12, 4, 2, 1, 1]``)."""
    check_positive_int("num_levels", num_levels)
    check_positive_int("steps", first)
    steps = [first]
    for level in range(1, num_levels):
        steps.append(max(1, first // 3) if level == 1 else max(1, steps[-1] // 2))
    return steps


def frame_mask(lengths: Tensor, num_frames: int) -> Tensor:
    """Bool ``[B, n]``: True at the first ``lengths[b]`` frames of each sample (Long ``[B]``)."""
    return torch.arange(num_frames, device=lengths.device)[None, :] < lengths[:, None]


@dataclass
class RVQMaskedBatch:
    """What :func:`rvq_training_mask` returns.

    Attributes:
        inputs: Long ``[B, q, n]``, the model input (``mask_id`` at masked and padded positions).
        loss_mask: Bool ``[B, q, n]``, True at the masked positions of each sample's chosen level.
        levels: Long ``[B]``, the chosen level per sample.
    """

    inputs: Tensor
    loss_mask: Tensor
    levels: Tensor


def rvq_training_mask(tokens: Tensor, mask_id: int, *, lengths: Tensor | None = None,
                      prompt_frames: Tensor | None = None, schedule: ScheduleLike = "cosine",
                      level_weights: Sequence[float] | None = None,
                      generator: torch.Generator | None = None) -> RVQMaskedBatch:
    """The SoundStorm training mask of ``tokens [B, q, n]``.

    Args:
        mask_id: the [MASK] id (the codebook size).
        lengths: Long ``[B]`` real frames per sample (default all n); padding frames become ``mask_id``, never loss.
        prompt_frames: Long ``[B]`` frames of prompt prefix kept visible at every level (default 0).
        schedule: the mask schedule that draws each sample's ratio (the sampler's, so training matches decoding).
        level_weights: ``q`` non-negative weights of choosing each level (default uniform).

    Returns:
        :class:`RVQMaskedBatch`. Every sample with at least one frame after its prompt masks at least one token.
    """
    if tokens.ndim != 3:
        raise InvalidArgumentError("tokens", "a [B, q, n] grid of RVQ levels × frames", tuple(tokens.shape))
    batch, levels, frames = tokens.shape
    device = tokens.device
    lengths = torch.full((batch,), frames, device=device) if lengths is None else lengths.to(device)
    prompt = torch.zeros(batch, dtype=torch.long, device=device) if prompt_frames is None else prompt_frames.to(device)
    weights = torch.ones(levels, dtype=torch.float64) if level_weights is None else \
        torch.as_tensor(level_weights, dtype=torch.float64)
    if weights.shape != (levels,) or bool((weights < 0).any()) or float(weights.sum()) <= 0:
        raise InvalidArgumentError("level_weights", f"{levels} non-negative weights, not all 0", level_weights)
    chosen = torch.multinomial(weights, batch, replacement=True, generator=generator).to(device)
    valid = frame_mask(lengths, frames)                                         # [B, n]
    editable = valid & ~frame_mask(prompt, frames)                              # after the prompt
    level_index = torch.arange(levels, device=device)[None, :, None]           # [1, q, 1]
    region = (level_index == chosen[:, None, None]) & editable[:, None, :]     # [B, q, n]
    ratios = sample_mask_ratios(batch, schedule, generator, device=device)
    loss_mask = random_mask(batch, levels * frames, ratios, generator, region=region.reshape(batch, -1))
    loss_mask = loss_mask.reshape(tokens.shape) & region
    finer = (level_index > chosen[:, None, None]) & editable[:, None, :]
    hidden = loss_mask | finer | ~valid[:, None, :]
    return RVQMaskedBatch(tokens.masked_fill(hidden, mask_id), loss_mask, chosen)


def generate_levels(sampler: TokenSampler | Sequence[TokenSampler], logits_fn: GridLogitsFn, tokens: Tensor,
                    mask_id: int, *, steps: Sequence[int] | None = None, valid_frames: Tensor | None = None,
                    generator: torch.Generator | None = None,
                    callback: Callable[[int, int, SamplerOutput], None] | None = None) -> Tensor:
    """Fill the ``mask_id`` positions of ``tokens [B, q, n]`` level by level, coarse first.

    Args:
        sampler: any :class:`TokenSampler`, or one per level (e.g. a lower temperature for fine levels); its
            step count is set per level from ``steps``.
        logits_fn: ``(tokens [B, q, n], level, step_index) -> logits [B, q * n, V]`` (the model, guidance included).
        tokens: Long ``[B, q, n]``, ``mask_id`` where tokens are to be generated; others are never changed.
        steps: decoding steps per level (default :func:`level_steps` (q)).
        valid_frames: optional Bool ``[B, n]``: frames outside it (padding) are left as they are.
        callback: called after every step with ``(level, step_index, output)``.

    Returns:
        Long ``[B, q, n]`` with every masked position of the valid frames filled.
    """
    if tokens.ndim != 3:
        raise InvalidArgumentError("tokens", "a [B, q, n] grid of RVQ levels × frames", tuple(tokens.shape))
    batch, levels, frames = tokens.shape
    steps = list(steps) if steps is not None else level_steps(levels)
    if len(steps) < levels or any(isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in steps):
        raise InvalidArgumentError("level_steps", f"{levels} positive step counts (one per RVQ level)", steps)
    samplers = list(sampler) if isinstance(sampler, Sequence) else [sampler] * levels
    if len(samplers) < levels:
        raise InvalidArgumentError("sampler", f"one sampler or {levels} (one per RVQ level)", len(samplers))
    valid = torch.ones(batch, frames, dtype=torch.bool, device=tokens.device) if valid_frames is None \
        else valid_frames.to(tokens.device)
    current = tokens.clone()
    for level in range(levels):
        todo = torch.zeros_like(current, dtype=torch.bool)
        todo[:, level] = (current[:, level] == mask_id) & valid
        if not bool(todo.any()):
            continue
        flat = current.reshape(batch, -1)

        def level_logits(flat_tokens: Tensor, index: int, level: int = level) -> Tensor:
            return logits_fn(flat_tokens.reshape(tokens.shape), level, index)

        def level_callback(index: int, out: SamplerOutput, level: int = level) -> None:
            if callback is not None:
                callback(level, index, out)

        flat = run_sampler(samplers[level], level_logits, flat, todo.reshape(batch, -1), num_steps=steps[level],
                           generator=generator, callback=level_callback)
        current = flat.reshape(current.shape)
    return current


__all__ = ["RVQMaskedBatch", "frame_mask", "generate_levels", "level_steps", "rvq_training_mask"]
