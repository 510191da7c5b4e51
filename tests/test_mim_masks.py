"""Masking strategies for MIM: exact counts, block masks inside the grid, loss-guided choice, bad inputs."""

from __future__ import annotations

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling.mim_masks import (
    BlockMasking,
    HardPatchMasking,
    RandomMasking,
    build_mask_strategy,
    visible_indices,
)


@pytest.mark.parametrize("kind", ["random", "block", "hard"])
@pytest.mark.parametrize(("ratio", "grid"), [(0.75, (7, 7)), (0.4, (14, 14)), (0.5, (3, 5)), (0.1, (2, 2))])
def test_every_row_masks_exactly_the_requested_count(kind: str, ratio: float, grid: tuple[int, int]) -> None:
    strategy = build_mask_strategy(kind, ratio)
    length = grid[0] * grid[1]
    scores = torch.randn(6, length) if kind == "hard" else None
    mask = strategy(6, grid, generator=torch.Generator().manual_seed(1), scores=scores)
    assert mask.dtype == torch.bool and mask.shape == (6, length)
    expected = strategy.num_masked(length)
    assert 0 < expected < length
    assert mask.sum(1).tolist() == [expected] * 6


def test_masks_replay_with_the_same_generator_and_differ_between_rows() -> None:
    for strategy in (RandomMasking(0.75), BlockMasking(0.4)):
        a = strategy(4, (7, 7), generator=torch.Generator().manual_seed(3))
        b = strategy(4, (7, 7), generator=torch.Generator().manual_seed(3))
        assert torch.equal(a, b)
        assert len({tuple(row.tolist()) for row in a}) > 1


def test_block_masks_are_rectangles_inside_the_grid() -> None:
    strategy = BlockMasking(0.4, min_block=4)
    grid = (14, 14)
    mask = strategy(8, grid, generator=torch.Generator().manual_seed(0)).view(8, *grid)
    # block-shaped: most masked patches have a masked 4-neighbour (random masking at 40% gives far fewer)
    padded = torch.nn.functional.pad(mask.float(), (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    clustered = ((neighbours > 0) & mask).sum() / mask.sum()
    assert clustered > 0.9
    random_mask = RandomMasking(0.4)(8, grid, generator=torch.Generator().manual_seed(0)).view(8, *grid)
    padded = torch.nn.functional.pad(random_mask.float(), (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    assert ((neighbours > 0) & random_mask).sum() / random_mask.sum() < clustered


def test_hard_patch_masking_picks_the_top_scored_patches() -> None:
    scores = torch.arange(16.0).repeat(3, 1)  # patch 15 hardest
    full = HardPatchMasking(0.5, hard_fraction=1.0)(3, (4, 4), scores=scores, progress=1.0)
    assert full[:, 8:].all() and not full[:, :8].any()
    ramp = HardPatchMasking(0.5, hard_fraction=1.0)(3, (4, 4), scores=scores, progress=0.5,
                                                     generator=torch.Generator().manual_seed(0))
    assert ramp[:, 12:].all()  # the 4 hardest (half of 8 at progress 0.5), the rest random
    assert ramp.sum(1).tolist() == [8, 8, 8]


def test_visible_indices_round_trip() -> None:
    mask = RandomMasking(0.75)(5, (7, 7), generator=torch.Generator().manual_seed(0))
    ids_keep, ids_restore = visible_indices(mask)
    assert ids_keep.shape == (5, 49 - 37)
    assert not mask.gather(1, ids_keep).any()
    tokens = torch.arange(49.0).repeat(5, 1)
    shuffled = torch.cat([tokens.gather(1, ids_keep), tokens.masked_select(mask).view(5, -1)], 1)
    assert torch.equal(shuffled.gather(1, ids_restore), tokens)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5, True, "0.5"])
def test_bad_ratio_is_a_clear_error(ratio: object) -> None:
    with pytest.raises(InvalidArgumentError, match="mask_ratio"):
        RandomMasking(ratio)  # type: ignore[arg-type]


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(InvalidArgumentError, match="masking"):
        build_mask_strategy("checkerboard", 0.5)
    with pytest.raises(InvalidArgumentError, match="grid"):
        RandomMasking(0.5)(2, (0, 4))
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        RandomMasking(0.5)(0, (4, 4))
    with pytest.raises(InvalidArgumentError, match="scores"):
        HardPatchMasking(0.5)(2, (4, 4))
    with pytest.raises(InvalidArgumentError, match="mask"):
        visible_indices(torch.tensor([[True, False], [True, True]]))
