"""Training-time masking drawn from the same mask schedule the samplers use.

A training step draws one mask ratio per sample, r = γ(u) with u ~ U(0, 1) (MaskGIT), masks exactly
``max(1, round(r · N_region))`` positions chosen uniformly among the eligible ones, and replaces them by the mask id::

    masker = TrainingMasker("cosine", mask_id=codebook_size)
    inputs, mask = masker(tokens)                  # tokens [B, N] -> inputs [B, N], mask [B, N] (True = masked)
    loss = F.cross_entropy(logits[mask], tokens[mask])

``region`` (Bool ``[B, N]`` or ``[N]``) restricts masking to some positions: one RVQ level, the frames after an
audio or video prompt, an inpainting window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError, check_positive_int
from mmgen.sampling.categorical import uniform_noise
from mmgen.sampling.schedules import MaskSchedule, ScheduleLike, get_schedule


def _check_ratio(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidArgumentError(name, "a number in [0, 1]", value)
    return float(value)


def sample_mask_ratios(batch: int, schedule: ScheduleLike = "cosine", generator: torch.Generator | None = None, *,
                       min_ratio: float = 0.0, max_ratio: float = 1.0,
                       device: torch.device | str | None = None) -> Tensor:
    """Draw one mask ratio per sample: r = γ(u), u ~ U(0, 1), clamped to ``[min_ratio, max_ratio]``.

    Args:
        batch: B.
        schedule: a schedule name or :class:`MaskSchedule` (the sampler's, so training matches sampling).
        min_ratio: lower clamp (e.g. 1/N); :func:`random_mask` masks at least one token anyway.
        max_ratio: upper clamp.

    Returns:
        FloatTensor ``[B]`` (float32) on ``device``.
    """
    check_positive_int("batch", batch)
    low, high = _check_ratio("min_ratio", min_ratio), _check_ratio("max_ratio", max_ratio)
    if low > high:
        raise InvalidArgumentError("min_ratio", f"at most max_ratio ({high})", min_ratio)
    u = uniform_noise((batch,), generator, device=device)
    ratios = get_schedule(schedule)(u)
    return ratios.clamp(low, high).to(torch.float32)


def _region_mask(region: Tensor | None, batch: int, num_tokens: int, device: torch.device) -> Tensor:
    """The eligible positions as Bool ``[B, N]``."""
    if region is None:
        return torch.ones(batch, num_tokens, dtype=torch.bool, device=device)
    if region.dtype != torch.bool or region.shape not in ((num_tokens,), (batch, num_tokens)):
        raise InvalidArgumentError("region", f"a bool tensor of shape [{num_tokens}] or [{batch}, {num_tokens}]",
                                   f"{region.dtype} {tuple(region.shape)}")
    return region.to(device).expand(batch, num_tokens)


def lowest_k_mask(scores: Tensor, counts: Tensor) -> Tensor:
    """Mark the ``counts[b]`` lowest ``scores[b]`` per row.

    Args:
        scores: ``[B, N]`` (put +inf on positions that must not be chosen).
        counts: Long ``[B]``, each in ``[0, N]``.

    Returns:
        Bool ``[B, N]`` with exactly ``counts[b]`` True per row (ties broken by a stable sort on position).
    """
    order = scores.argsort(dim=1, stable=True)
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(scores.shape[1], device=scores.device)
                                            .expand_as(order).contiguous())
    return ranks < counts.to(scores.device).unsqueeze(1)


def random_mask(batch: int, num_tokens: int, ratios: Tensor | float, generator: torch.Generator | None = None, *,
                region: Tensor | None = None) -> Tensor:
    """Choose exactly ``max(1, round(r_b · N_region_b))`` positions per sample uniformly among ``region``.

    Args:
        batch: B.
        num_tokens: N, tokens per (flattened) sample.
        ratios: FloatTensor ``[B]`` (or one float for all) in [0, 1].
        region: optional Bool ``[B, N]`` or ``[N]``, True where masking is allowed (default: everywhere). A sample
            with an empty region gets no masked position.

    Returns:
        BoolTensor ``[B, N]``, True = masked, on ``ratios``' device (or ``region``'s, or the CPU).
    """
    check_positive_int("batch", batch)
    check_positive_int("num_tokens", num_tokens)
    device = ratios.device if isinstance(ratios, Tensor) else (region.device if region is not None else None)
    device = torch.device(device or "cpu")
    ratios = torch.as_tensor(ratios, dtype=torch.float64, device=device)
    ratios = ratios.expand(batch) if ratios.ndim == 0 else ratios
    if ratios.shape != (batch,) or bool(((ratios < 0) | (ratios > 1) | ratios.isnan()).any()):
        raise InvalidArgumentError("ratios", f"{batch} values in [0, 1]", ratios.tolist())
    eligible = _region_mask(region, batch, num_tokens, device)
    available = eligible.sum(dim=1)
    counts = torch.minimum(torch.round(ratios * available).long().clamp(min=1), available)
    scores = uniform_noise((batch, num_tokens), generator, device=device).masked_fill_(~eligible, float("inf"))
    return lowest_k_mask(scores, counts)


def mask_tokens(tokens: Tensor, mask: Tensor, mask_id: int) -> Tensor:
    """Replace the masked positions of ``tokens`` by ``mask_id``.

    Args:
        tokens: Long ``[B, N]`` (any shape).
        mask: Bool of the same shape, True = masked.

    Returns:
        a new LongTensor like ``tokens``.
    """
    if mask.shape != tokens.shape or mask.dtype != torch.bool:
        raise InvalidArgumentError("mask", f"a bool tensor of shape {tuple(tokens.shape)}",
                                   f"{mask.dtype} {tuple(mask.shape)}")
    return tokens.masked_fill(mask, mask_id)


@dataclass
class MaskedBatch:
    """What :meth:`TrainingMasker.sample` returns.

    Attributes:
        inputs: Long ``[B, N]``, the tokens with masked positions set to ``mask_id`` (the model input).
        mask: Bool ``[B, N]``, True = masked (where the loss is taken).
        ratios: Float ``[B]``, the drawn mask ratios r = γ(u) (for loss weighting or logging).
    """

    inputs: Tensor
    mask: Tensor
    ratios: Tensor


class TrainingMasker:
    """The one-call training API: draw ratios from ``schedule``, mask that many random tokens, return the input.

    Args:
        schedule: the mask schedule name or object (use the sampler's; default MaskGIT's cosine).
        mask_id: the id of the [MASK] token (== codebook_size). Required.
        min_ratio: lower clamp of the drawn ratios (at least one token is masked whatever it is).
        max_ratio: upper clamp of the drawn ratios.
    """

    def __init__(self, schedule: ScheduleLike = "cosine", mask_id: int | None = None, min_ratio: float = 0.0,
                 max_ratio: float = 1.0):
        if isinstance(mask_id, bool) or not isinstance(mask_id, int) or mask_id < 0:
            raise InvalidArgumentError("mask_id", "a non-negative integer (the codebook size)", mask_id)
        self.schedule: MaskSchedule = get_schedule(schedule)
        self.mask_id = mask_id
        self.min_ratio, self.max_ratio = _check_ratio("min_ratio", min_ratio), _check_ratio("max_ratio", max_ratio)
        if self.min_ratio > self.max_ratio:
            raise InvalidArgumentError("min_ratio", f"at most max_ratio ({self.max_ratio})", min_ratio)

    def sample(self, tokens: Tensor, generator: torch.Generator | None = None,
               region: Tensor | None = None) -> MaskedBatch:
        """Mask ``tokens`` Long ``[B, N]``; see :class:`MaskedBatch`."""
        if tokens.ndim != 2:
            raise InvalidArgumentError("tokens", "a [B, N] tensor (flatten the grid first)", tuple(tokens.shape))
        batch, num_tokens = tokens.shape
        ratios = sample_mask_ratios(batch, self.schedule, generator, min_ratio=self.min_ratio,
                                    max_ratio=self.max_ratio, device=tokens.device)
        mask = random_mask(batch, num_tokens, ratios, generator, region=region)
        return MaskedBatch(mask_tokens(tokens, mask, self.mask_id), mask, ratios)

    def __call__(self, tokens: Tensor, generator: torch.Generator | None = None,
                 region: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Mask ``tokens`` Long ``[B, N]`` → ``(inputs [B, N], mask [B, N])`` (True = masked)."""
        batch = self.sample(tokens, generator, region)
        return batch.inputs, batch.mask

    def __repr__(self) -> str:
        return (f"TrainingMasker(schedule={self.schedule.name!r}, mask_id={self.mask_id}, "
                f"min_ratio={self.min_ratio}, max_ratio={self.max_ratio})")
