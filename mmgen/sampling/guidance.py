"""Classifier-free guidance for masked-token models (Muse): logit mixing, scale schedules, batching helpers.

Guidance works on logits: ``uncond + s · (cond − uncond)``; s = 0 gives the unconditional model, s = 1 the plain
conditional one, s > 1 pushes samples toward the condition. Training drops the condition for a fraction of the
samples (:func:`cfg_dropout_mask`, ~10% in Muse) so one model serves both branches, and sampling runs both branches in
ONE forward pass of a doubled batch::

    logits = model(cfg_batch(tokens), cond=cfg_batch(labels, null_labels))      # batch 2B
    cond_logits, uncond_logits = split_cfg_batch(logits)                         # each [B, N, V]
    logits = apply_guidance(cond_logits, uncond_logits, guidance_scale_at(t, T, scale, "linear"))

Scale schedules (``guidance_scale_at``): ``constant`` uses the scale at every step; ``linear`` and ``cosine`` ramp from
1 (no guidance: the plain conditional model) at step 0 to the full scale at the last step, as Muse increases
guidance over the steps so that the first tokens are drawn with more diversity. A scale below 1 ramps down from 1 in
the same way (the ramp always starts at the conditional model, never the unconditional one).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError, check_positive_int
from mmgen.sampling.categorical import uniform_noise

GUIDANCE_SCHEDULES = ("constant", "linear", "cosine")


def check_guidance_scale(scale: float) -> float:
    """Return ``scale`` as a float if it is a finite number >= 0, else raise naming ``guidance_scale``."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 0:
        raise InvalidArgumentError("guidance_scale", "a finite number >= 0", scale)
    return float(scale)


def apply_guidance(cond_logits: Tensor, uncond_logits: Tensor, scale: float | Tensor) -> Tensor:
    """Mix the two branches: ``uncond + scale · (cond − uncond)``, computed and returned in float32.

    Args:
        cond_logits: ``[B, N, V]`` logits with the condition.
        uncond_logits: ``[B, N, V]`` logits with the null condition (or a negative prompt).
        scale: a number >= 0, or a float tensor ``[B]`` of per-sample scales.

    Returns:
        float32 ``[B, N, V]`` (float64 inputs stay float64).
    """
    if cond_logits.shape != uncond_logits.shape:
        raise InvalidArgumentError("uncond_logits", f"the shape of cond_logits {tuple(cond_logits.shape)}",
                                   tuple(uncond_logits.shape))
    dtype = torch.promote_types(torch.promote_types(cond_logits.dtype, uncond_logits.dtype), torch.float32)
    cond, uncond = cond_logits.to(dtype), uncond_logits.to(dtype)
    if isinstance(scale, Tensor):
        if scale.ndim != 1 or scale.shape[0] != cond.shape[0] or bool((scale < 0).any() | ~scale.isfinite().all()):
            raise InvalidArgumentError("guidance_scale", f"{cond.shape[0]} finite values >= 0", scale.tolist())
        factor = scale.to(cond.device, dtype).view(-1, *([1] * (cond.ndim - 1)))
        return uncond + factor * (cond - uncond)
    return torch.lerp(uncond, cond, check_guidance_scale(scale))


def guidance_scale_at(step_index: int, num_steps: int, scale: float, schedule: str = "constant") -> float:
    """The guidance scale at ``step_index`` of ``num_steps``.

    ``constant``: ``scale``. ``linear``: ``1 + (scale − 1) · t/(T−1)``. ``cosine``: the same ramp eased by
    ``(1 − cos(π · t/(T−1))) / 2``. With one step the full scale is used.

    Raises:
        InvalidArgumentError: ``num_steps`` <= 0, ``step_index`` outside ``[0, T)``, ``guidance_scale`` < 0 or an
            unknown ``guidance_schedule``.
    """
    check_positive_int("num_steps", num_steps)
    scale = check_guidance_scale(scale)
    if isinstance(step_index, bool) or not isinstance(step_index, int) or not 0 <= step_index < num_steps:
        raise InvalidArgumentError("step_index", f"an integer in [0, {num_steps - 1}]", step_index)
    if schedule not in GUIDANCE_SCHEDULES:
        raise InvalidArgumentError("guidance_schedule", f"one of {list(GUIDANCE_SCHEDULES)}", schedule)
    if schedule == "constant" or num_steps == 1:
        return scale
    progress = step_index / (num_steps - 1)
    if schedule == "cosine":
        progress = (1 - math.cos(math.pi * progress)) / 2
    return 1.0 + (scale - 1.0) * progress


def cfg_batch(cond: Tensor, uncond: Tensor | None = None) -> Tensor:
    """Stack the conditional and unconditional inputs along the batch for one forward pass.

    Args:
        cond: ``[B, ...]`` (tokens, class ids, text states, masks).
        uncond: ``[B, ...]`` or ``[1, ...]`` (broadcast, e.g. one null text embedding) or a 0-dim tensor (e.g. the
            null class id); None repeats ``cond`` (for inputs both branches share, like the tokens).

    Returns:
        ``[2B, ...]``: ``cond`` first, then ``uncond``.
    """
    if uncond is None:
        return torch.cat([cond, cond], dim=0)
    uncond = uncond.to(cond.device, cond.dtype)
    if uncond.ndim == 0 and cond.ndim == 1:
        uncond = uncond.expand(cond.shape[0])
    elif uncond.ndim == cond.ndim and uncond.shape[1:] == cond.shape[1:] and uncond.shape[0] == 1:
        uncond = uncond.expand_as(cond)
    if uncond.shape != cond.shape:
        raise InvalidArgumentError("uncond", f"shape {tuple(cond.shape)} (or a batch of 1)", tuple(uncond.shape))
    return torch.cat([cond, uncond], dim=0)


def split_cfg_batch(output: Tensor) -> tuple[Tensor, Tensor]:
    """Undo :func:`cfg_batch` on the model output: ``[2B, ...]`` → ``(cond [B, ...], uncond [B, ...])``."""
    if output.ndim == 0 or output.shape[0] % 2:
        raise InvalidArgumentError("output", "an even batch (cond then uncond)", tuple(output.shape))
    cond, uncond = output.chunk(2, dim=0)
    return cond, uncond


def guided_logits(batched_logits: Tensor, scale: float | Tensor) -> Tensor:
    """:func:`split_cfg_batch` then :func:`apply_guidance`: ``[2B, N, V]`` → float32 ``[B, N, V]``."""
    cond, uncond = split_cfg_batch(batched_logits)
    return apply_guidance(cond, uncond, scale)


def cfg_dropout_mask(batch: int, prob: float, generator: torch.Generator | None = None, *,
                     device: torch.device | str | None = None) -> Tensor:
    """Training-time conditioning dropout: Bool ``[B]``, True where the condition is replaced by the null one.

    Args:
        batch: B.
        prob: the drop probability in [0, 1] (Muse: 0.1).
    """
    check_positive_int("batch", batch)
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 <= prob <= 1:
        raise InvalidArgumentError("cond_drop_prob", "a number in [0, 1]", prob)
    return uniform_noise((batch,), generator, device=device) < prob
