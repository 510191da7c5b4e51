"""Position information for token grids of any rank (1D audio frames, 2D images, 3D video).

* :func:`sincos_grid_embedding` — fixed sin/cos features, the width split evenly over the grid's axes.
* :class:`LearnedGridPositions` — one learned table per axis, summed (factorised), so a model trained on a grid
  also runs on any smaller grid (shorter audio, fewer frames).
* :func:`axial_rope` — rotary embedding with the head width split over the axes, for :class:`~mmgen.nn.Attention`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def grid_coordinates(grid: Sequence[int], device: torch.device | None = None) -> Tensor:
    """Integer coordinates of every grid cell in row-major order: ``[N, len(grid)]`` with ``N = prod(grid)``."""
    axes = [torch.arange(size, device=device) for size in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


def _axis_widths(total: int, axes: int, multiple: int) -> list[int]:
    """Split ``total`` channels over ``axes`` in multiples of ``multiple`` (the last axes get the remainder)."""
    base = (total // axes) // multiple * multiple
    widths = [base] * axes
    widths[-1] += total - base * axes
    return widths


def sincos_grid_embedding(grid: Sequence[int], dim: int, *, base: float = 10000.0,
                          device: torch.device | None = None) -> Tensor:
    """Fixed sin/cos position features ``[N, dim]`` for a grid (MAE-style, generalised to any rank)."""
    coords = grid_coordinates(grid, device).float()
    parts = []
    for axis, width in enumerate(_axis_widths(dim, len(grid), 2)):
        freqs = base ** (-torch.arange(width // 2, device=device).float() / max(1, width // 2))
        angles = coords[:, axis:axis + 1] * freqs
        parts += [angles.sin(), angles.cos()]
    out = torch.cat(parts, dim=-1)
    return torch.nn.functional.pad(out, (0, dim - out.shape[-1]))


class LearnedGridPositions(nn.Module):
    """Sum of per-axis learned embeddings: ``forward(grid) -> [N, dim]`` for any grid within ``max_grid``."""

    def __init__(self, max_grid: Sequence[int], dim: int):
        super().__init__()
        self.max_grid = tuple(max_grid)
        self.tables = nn.ParameterList([nn.Parameter(torch.randn(size, dim) * 0.02) for size in self.max_grid])

    def forward(self, grid: Sequence[int]) -> Tensor:
        if len(grid) != len(self.max_grid) or any(g > m for g, m in zip(grid, self.max_grid)):
            from mmgen.errors import InvalidArgumentError

            raise InvalidArgumentError("token grid", f"a grid within {self.max_grid}", tuple(grid))
        out = None
        for axis, (table, size) in enumerate(zip(self.tables, grid)):
            shape = [1] * len(grid) + [table.shape[-1]]
            shape[axis] = size
            term = table[:size].reshape(shape)
            out = term if out is None else out + term
        return out.reshape(-1, out.shape[-1])


def axial_rope(grid: Sequence[int], head_dim: int, *, base: float = 10000.0, prefix: int = 0,
               device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """Rotary ``(cos, sin)`` of shape ``[prefix + N, R]`` for a grid, the head width split over the axes.

    Each axis rotates its own channel pairs by its coordinate; ``prefix`` extra leading tokens (class tokens)
    get angle 0 (no rotation). Feed to ``Attention(..., rope=(cos, sin))``.
    """
    coords = grid_coordinates(grid, device).float()
    angles = []
    for axis, width in enumerate(_axis_widths(head_dim, len(grid), 2)):
        half = width // 2
        freqs = base ** (-torch.arange(half, device=device).float() / max(1, half))
        angles.append(coords[:, axis:axis + 1] * freqs)
    theta = torch.cat(angles, dim=-1)
    theta = torch.cat([theta.new_zeros(prefix, theta.shape[-1]), theta], dim=0)
    theta = torch.cat([theta, theta], dim=-1)
    return theta.cos(), theta.sin()


def num_tokens(grid: Sequence[int]) -> int:
    return math.prod(grid)
