"""Training masks: ratios from the sampler's schedule, exact counts, regions, one-call masker."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import TrainingMasker, lowest_k_mask, mask_tokens, random_mask, sample_mask_ratios


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_ratios_follow_schedule() -> None:
    ratios = sample_mask_ratios(20000, "cosine", gen())
    assert ratios.shape == (20000,) and ratios.dtype == torch.float32
    # E[cos(pi u / 2)] = 2 / pi; P(r > cos(pi/4)) = P(u < 1/2) = 1/2
    assert ratios.mean().item() == pytest.approx(2 / math.pi, abs=0.01)
    assert (ratios > math.cos(math.pi / 4)).float().mean().item() == pytest.approx(0.5, abs=0.015)
    linear = sample_mask_ratios(20000, "linear", gen())
    assert linear.mean().item() == pytest.approx(0.5, abs=0.01)
    clamped = sample_mask_ratios(1000, "linear", gen(), min_ratio=0.25, max_ratio=0.5)
    assert clamped.min().item() == 0.25 and clamped.max().item() == 0.5
    assert torch.equal(sample_mask_ratios(8, "cosine", gen(3)), sample_mask_ratios(8, "cosine", gen(3)))


@pytest.mark.parametrize("ratio", [0.0, 0.01, 0.3, 0.5, 0.77, 1.0])
def test_exact_counts(ratio: float) -> None:
    n = 50
    mask = random_mask(6, n, torch.full((6,), ratio), gen())
    assert mask.dtype == torch.bool and mask.shape == (6, n)
    assert mask.sum(1).tolist() == [max(1, round(ratio * n))] * 6


def test_per_sample_ratios_and_float() -> None:
    ratios = torch.tensor([0.1, 0.5, 0.9, 1.0])
    assert random_mask(4, 40, ratios, gen()).sum(1).tolist() == [4, 20, 36, 40]
    assert random_mask(3, 10, 0.5, gen()).sum(1).tolist() == [5, 5, 5]


def test_region_counts_and_containment() -> None:
    n = 30
    region = torch.zeros(3, n, dtype=torch.bool)
    region[0, 10:] = True  # 20 eligible
    region[1, ::3] = True  # 10 eligible
    ratios = torch.tensor([0.5, 0.5, 0.5])
    mask = random_mask(3, n, ratios, gen(), region=region)
    assert mask.sum(1).tolist() == [10, 5, 0]  # empty region: nothing to mask
    assert not bool((mask & ~region).any())
    shared = torch.arange(n) >= 20  # [N] region, e.g. the frames after a prompt
    mask = random_mask(2, n, torch.tensor([0.01, 1.0]), gen(), region=shared)
    assert mask.sum(1).tolist() == [1, 10] and not bool((mask & ~shared).any())


def test_positions_uniform() -> None:
    mask = random_mask(4000, 16, torch.full((4000,), 0.25), gen())
    freq = mask.float().mean(0)
    assert torch.allclose(freq, torch.full((16,), 0.25), atol=0.03)


def test_lowest_k_mask() -> None:
    scores = torch.tensor([[3.0, 1.0, 2.0, math.inf], [0.0, 0.0, 5.0, 1.0]])
    assert lowest_k_mask(scores, torch.tensor([2, 3])).tolist() == [[False, True, True, False],
                                                                    [True, True, False, True]]


def test_training_masker() -> None:
    tokens = torch.randint(0, 16, (8, 25), generator=gen(1))
    masker = TrainingMasker("cosine", mask_id=16)
    inputs, mask = masker(tokens, gen(2))
    assert torch.equal(inputs[mask], torch.full_like(inputs[mask], 16))
    assert torch.equal(inputs[~mask], tokens[~mask])
    assert bool((mask.sum(1) >= 1).all())
    again = masker(tokens, gen(2))
    assert torch.equal(again[0], inputs) and torch.equal(again[1], mask)
    batch = masker.sample(tokens, gen(2))
    assert torch.equal(batch.mask, mask)
    expected = torch.round(batch.ratios.double() * 25).long().clamp(min=1)
    assert torch.equal(mask.sum(1), expected)
    region = torch.arange(25) < 5
    _, region_mask = masker(tokens, gen(3), region=region)
    assert not bool(region_mask[:, 5:].any())


def test_bad_inputs() -> None:
    with pytest.raises(InvalidArgumentError, match="mask_id"):
        TrainingMasker("cosine")
    with pytest.raises(InvalidArgumentError, match="schedule"):
        TrainingMasker("nope", mask_id=3)
    with pytest.raises(InvalidArgumentError, match="min_ratio"):
        TrainingMasker(mask_id=3, min_ratio=0.8, max_ratio=0.5)
    with pytest.raises(InvalidArgumentError, match="ratios"):
        random_mask(2, 4, torch.tensor([0.5, 1.5]))
    with pytest.raises(InvalidArgumentError, match="region"):
        random_mask(2, 4, 0.5, region=torch.ones(3, dtype=torch.bool))
    with pytest.raises(InvalidArgumentError, match="mask"):
        mask_tokens(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.bool), 9)
    with pytest.raises(InvalidArgumentError, match="batch"):
        sample_mask_ratios(0, "cosine")
