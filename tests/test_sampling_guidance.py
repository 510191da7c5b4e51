"""Classifier-free guidance: logit mixing in fp32, scale schedules, one batched forward, conditioning dropout."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import (
    apply_guidance,
    cfg_batch,
    cfg_dropout_mask,
    guidance_scale_at,
    guided_logits,
    split_cfg_batch,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_apply_guidance_math() -> None:
    cond, uncond = torch.randn(2, 5, 7, generator=gen(1)), torch.randn(2, 5, 7, generator=gen(2))
    assert torch.allclose(apply_guidance(cond, uncond, 0.0), uncond)
    assert torch.allclose(apply_guidance(cond, uncond, 1.0), cond)
    assert torch.allclose(apply_guidance(cond, uncond, 3.0), uncond + 3 * (cond - uncond), atol=1e-6)
    per_sample = apply_guidance(cond, uncond, torch.tensor([0.0, 2.0]))
    assert torch.allclose(per_sample[0], uncond[0]) and torch.allclose(per_sample[1], 2 * cond[1] - uncond[1])
    low = apply_guidance(cond.to(torch.bfloat16), uncond.to(torch.bfloat16), 2)
    assert low.dtype == torch.float32


def test_guidance_scale_schedules() -> None:
    assert [guidance_scale_at(t, 5, 3.0) for t in range(5)] == [3.0] * 5
    assert [guidance_scale_at(t, 5, 3.0, "linear") for t in range(5)] == [1.0, 1.5, 2.0, 2.5, 3.0]
    cosine = [guidance_scale_at(t, 5, 3.0, "cosine") for t in range(5)]
    assert cosine[0] == pytest.approx(1.0) and cosine[2] == pytest.approx(2.0) and cosine[4] == pytest.approx(3.0)
    assert cosine[1] < 1.5  # eased: slower start than linear
    assert guidance_scale_at(0, 1, 4.0, "linear") == 4.0
    assert guidance_scale_at(3, 4, 0.0, "linear") == 0.0


def test_one_batched_forward_equals_two() -> None:
    weight = torch.randn(4, 9, generator=gen(3))
    table = torch.randn(11, 9, generator=gen(4))  # class 10 is the null class

    def model(tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (tokens.float()[..., None] * weight[tokens % 4] + table[labels][:, None, :])

    tokens = torch.randint(0, 20, (3, 6), generator=gen(5))
    labels = torch.tensor([1, 4, 7])
    both = model(cfg_batch(tokens), cfg_batch(labels, torch.tensor(10)))
    assert both.shape == (6, 6, 9)
    cond, uncond = split_cfg_batch(both)
    assert torch.allclose(cond, model(tokens, labels)) and torch.allclose(uncond, model(tokens, torch.full((3,), 10)))
    assert torch.allclose(guided_logits(both, 2.0), apply_guidance(cond, uncond, 2.0))
    states = torch.randn(3, 4, 8, generator=gen(6))
    null = torch.zeros(1, 4, 8)
    batched = cfg_batch(states, null)
    assert batched.shape == (6, 4, 8) and torch.equal(batched[3:], null.expand(3, -1, -1))


def test_cfg_dropout_mask() -> None:
    drop = cfg_dropout_mask(20000, 0.1, gen())
    assert drop.dtype == torch.bool and drop.float().mean().item() == pytest.approx(0.1, abs=0.01)
    assert not bool(cfg_dropout_mask(50, 0.0, gen()).any()) and bool(cfg_dropout_mask(50, 1.0, gen()).all())


def test_bad_inputs() -> None:
    x = torch.zeros(2, 3, 4)
    for bad in (-0.5, math.nan, math.inf):
        with pytest.raises(InvalidArgumentError, match="guidance_scale"):
            apply_guidance(x, x, bad)
        with pytest.raises(InvalidArgumentError, match="guidance_scale"):
            guidance_scale_at(0, 4, bad)
    with pytest.raises(InvalidArgumentError, match="guidance_scale"):
        apply_guidance(x, x, torch.tensor([1.0, -1.0]))
    for steps in (0, -2):
        with pytest.raises(InvalidArgumentError, match="num_steps"):
            guidance_scale_at(0, steps, 2.0)
    with pytest.raises(InvalidArgumentError, match="step_index"):
        guidance_scale_at(4, 4, 2.0)
    with pytest.raises(InvalidArgumentError, match="guidance_schedule"):
        guidance_scale_at(0, 4, 2.0, "exp")
    with pytest.raises(InvalidArgumentError, match="uncond_logits"):
        apply_guidance(x, torch.zeros(2, 3, 5), 1.0)
    with pytest.raises(InvalidArgumentError, match="output"):
        split_cfg_batch(torch.zeros(3, 2))
    with pytest.raises(InvalidArgumentError, match="uncond"):
        cfg_batch(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(InvalidArgumentError, match="cond_drop_prob"):
        cfg_dropout_mask(4, 1.5)
