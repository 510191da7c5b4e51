"""Training masks for masked image modeling (MAE, BEiT-style): pluggable strategies over a patch grid.

Every strategy is a small object called as ``strategy(batch_size, grid, generator=..., device=...)`` and returns a
bool mask ``[B, L]`` (``L = h * w``, row-major over the grid) with **True = masked**. Every row masks exactly
``strategy.num_masked(L)`` patches, so an encoder that sees only the visible patches can gather them into one
dense ``[B, L - M, D]`` tensor.

* :class:`RandomMasking`: a uniformly random subset (MAE).
* :class:`BlockMasking`: random rectangles of patches until the ratio is reached (BEiT's block-wise masking), topped
  up with single random patches when the last rectangle would overshoot.
* :class:`HardPatchMasking`: loss-guided (hard-patch mining, "Hard Patches Mining for Masked Image Modeling"): a
  fraction of the masked patches are those an auxiliary predictor scores hardest (``scores``, ``[B, L]``), the rest
  random; the fraction ramps up with training ``progress`` (easy to hard).

Pure tensor code: no weights live here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

import torch

from mmgen.errors import InvalidArgumentError

MaskingKind = Literal["random", "block", "hard"]
MASKING_KINDS: tuple[str, ...] = ("random", "block", "hard")


class MaskStrategy(Protocol):
    """What the MIM models call; see the module docstring."""

    ratio: float
    needs_scores: bool

    def num_masked(self, num_patches: int) -> int: ...

    def __call__(self, batch_size: int, grid: tuple[int, int], *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, scores: torch.Tensor | None = None,
                 progress: float = 1.0) -> torch.Tensor: ...


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 < ratio < 1.0:
        raise InvalidArgumentError("mask_ratio", "a number in (0, 1)", ratio)
    return float(ratio)


def _check_grid(batch_size: int, grid: tuple[int, int]) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise InvalidArgumentError("batch_size", "a positive integer", batch_size)
    if len(grid) != 2 or any(not isinstance(g, int) or g <= 0 for g in grid):
        raise InvalidArgumentError("grid", "(h, w) with positive integers", tuple(grid))
    return grid[0] * grid[1]


def _mask_from_order(order: torch.Tensor, count: int) -> torch.Tensor:
    """order: [B, L] patch indices in masking priority → bool mask [B, L] with the first ``count`` masked."""
    mask = torch.zeros(order.shape, dtype=torch.bool, device=order.device)
    return mask.scatter_(1, order[:, :count], True)


def _random_order(batch_size: int, length: int, generator: torch.Generator | None,
                  device: torch.device | str | None) -> torch.Tensor:
    """A random permutation of ``range(length)`` per row: [B, L] int64 (drawn on CPU, so seeds replay anywhere)."""
    noise = torch.rand(batch_size, length, generator=generator)
    return noise.argsort(dim=1).to(device)


@dataclass
class RandomMasking:
    """Mask ``round(ratio * L)`` uniformly random patches per image (MAE)."""

    ratio: float = 0.75
    needs_scores = False

    def __post_init__(self) -> None:
        self.ratio = _check_ratio(self.ratio)

    def num_masked(self, num_patches: int) -> int:
        return min(num_patches - 1, max(1, round(self.ratio * num_patches)))

    def __call__(self, batch_size: int, grid: tuple[int, int], *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, scores: torch.Tensor | None = None,
                 progress: float = 1.0) -> torch.Tensor:
        """→ bool [B, h*w], True = masked, exactly ``num_masked(h*w)`` per row."""
        length = _check_grid(batch_size, grid)
        order = _random_order(batch_size, length, generator, device)
        return _mask_from_order(order, self.num_masked(length))


@dataclass
class BlockMasking(RandomMasking):
    """BEiT's block-wise masking: rectangles of ``>= min_block`` patches with aspect ratio in
    ``[min_aspect, 1/min_aspect]`` are added while they fit in the budget; single random patches fill the rest."""

    ratio: float = 0.4
    min_block: int = 4
    min_aspect: float = 0.3
    max_attempts: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.min_aspect <= 1.0:
            raise InvalidArgumentError("min_aspect", "a number in (0, 1]", self.min_aspect)

    def _one(self, grid: tuple[int, int], count: int, generator: torch.Generator | None) -> torch.Tensor:
        """One image's mask [h, w] with exactly ``count`` True (block-shaped as far as the budget allows)."""
        h, w = grid
        mask = torch.zeros(h, w, dtype=torch.bool)
        log_aspect = (math.log(self.min_aspect), -math.log(self.min_aspect))
        while int(mask.sum()) < count:
            budget = count - int(mask.sum())
            placed = False
            for _ in range(self.max_attempts):
                u = torch.rand(4, generator=generator).tolist()
                area = min(self.min_block, budget) + u[0] * max(0, budget - min(self.min_block, budget))
                aspect = math.exp(log_aspect[0] + u[1] * (log_aspect[1] - log_aspect[0]))
                bh = max(1, min(h, round(math.sqrt(area * aspect))))
                bw = max(1, min(w, round(math.sqrt(area / aspect))))
                top, left = int(u[2] * (h - bh + 1)), int(u[3] * (w - bw + 1))
                new = int((~mask[top:top + bh, left:left + bw]).sum())
                if 0 < new <= budget:
                    mask[top:top + bh, left:left + bw] = True
                    placed = True
                    break
            if not placed:  # no rectangle fits the remaining budget: fill with single random patches
                free = (~mask).flatten().nonzero().squeeze(1)
                pick = free[torch.randperm(free.numel(), generator=generator)[:budget]]
                mask.view(-1)[pick] = True
        return mask

    def __call__(self, batch_size: int, grid: tuple[int, int], *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, scores: torch.Tensor | None = None,
                 progress: float = 1.0) -> torch.Tensor:
        """→ bool [B, h*w], True = masked, exactly ``num_masked(h*w)`` per row, blocks inside the grid."""
        count = self.num_masked(_check_grid(batch_size, grid))
        masks = [self._one(grid, count, generator).flatten() for _ in range(batch_size)]
        return torch.stack(masks).to(device)


@dataclass
class HardPatchMasking(RandomMasking):
    """Loss-guided masking: ``hard_fraction * progress`` of the masked patches are the top-scored ones
    (``scores`` [B, L], higher = harder, from the model's difficulty head), the rest uniformly random."""

    hard_fraction: float = 0.5
    needs_scores = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.hard_fraction <= 1.0:
            raise InvalidArgumentError("hard_fraction", "a number in [0, 1]", self.hard_fraction)

    def __call__(self, batch_size: int, grid: tuple[int, int], *, generator: torch.Generator | None = None,
                 device: torch.device | str | None = None, scores: torch.Tensor | None = None,
                 progress: float = 1.0) -> torch.Tensor:
        """scores: [B, h*w] predicted difficulty → bool [B, h*w], exactly ``num_masked(h*w)`` True per row."""
        length = _check_grid(batch_size, grid)
        if scores is None or tuple(scores.shape) != (batch_size, length):
            got = None if scores is None else tuple(scores.shape)
            raise InvalidArgumentError("scores", f"predicted difficulties [{batch_size}, {length}]", got)
        count = self.num_masked(length)
        hard = round(count * self.hard_fraction * min(max(progress, 0.0), 1.0))
        order = _random_order(batch_size, length, generator, scores.device)
        if hard:
            ranked = scores.detach().float().argsort(dim=1, descending=True)
            is_hard = _mask_from_order(ranked, hard)
            # hard patches first, then the others in random order (a stable sort keeps the random order)
            order = order.gather(1, (~is_hard).gather(1, order).to(torch.int8).argsort(dim=1, stable=True))
        return _mask_from_order(order, count).to(device)


def build_mask_strategy(kind: str, ratio: float, *, hard_fraction: float = 0.5) -> MaskStrategy:
    """The strategy named ``kind`` (``random``, ``block`` or ``hard``) masking ``ratio`` of the patches."""
    if kind == "random":
        return RandomMasking(ratio)
    if kind == "block":
        return BlockMasking(ratio)
    if kind == "hard":
        return HardPatchMasking(ratio, hard_fraction=hard_fraction)
    raise InvalidArgumentError("masking", f"one of {', '.join(MASKING_KINDS)}", kind)


def visible_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask: bool [B, L] (True = masked, same count per row) → (ids_keep [B, V], ids_restore [B, L]).

    ``ids_keep`` lists the visible patches in grid order; ``ids_restore`` un-shuffles ``[visible, masked]`` back to
    grid order (``x_full = cat([x_visible, x_masked], 1).gather(1, ids_restore)``).
    """
    counts = mask.sum(dim=1)
    if mask.ndim != 2 or mask.dtype != torch.bool or bool((counts != counts[0]).any()):
        raise InvalidArgumentError("mask", "a bool [B, L] mask with the same number of True per row",
                                   f"{mask.dtype} {tuple(mask.shape)}")
    ids_shuffle = mask.to(torch.int8).argsort(dim=1, stable=True)
    ids_restore = ids_shuffle.argsort(dim=1)
    return ids_shuffle[:, :mask.shape[1] - int(counts[0])], ids_restore


__all__ = [
    "MASKING_KINDS",
    "BlockMasking",
    "HardPatchMasking",
    "MaskStrategy",
    "MaskingKind",
    "RandomMasking",
    "build_mask_strategy",
    "visible_indices",
]
