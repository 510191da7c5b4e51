"""Samplers: masked-count trajectory, full unmasking, the inpainting invariant, per-sample starts, seeds."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import (
    MaskGITSampler,
    RandomOrderSampler,
    SamplerOutput,
    TokenSampler,
    create_sampler,
    get_schedule,
    run_sampler,
)

V, MASK_ID = 12, 12


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_model(seed: int = 123):
    """A fake model: fresh random logits [B, N, V] at every call (its own stream, not the sampler's)."""
    stream = gen(seed)
    return lambda tokens, t: torch.randn(*tokens.shape, V, generator=stream) * 3


def start(initial: list[int], n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens [B, N] with ``initial[b]`` random masked positions (mask id) and given tokens elsewhere."""
    g = gen(seed)
    tokens = torch.randint(0, V, (len(initial), n), generator=g)
    is_masked = torch.zeros(len(initial), n, dtype=torch.bool)
    for b, count in enumerate(initial):
        is_masked[b, torch.randperm(n, generator=g)[:count]] = True
    return tokens.masked_fill(is_masked, MASK_ID), is_masked


def trajectory(sampler: TokenSampler, tokens: torch.Tensor, is_masked: torch.Tensor, seed: int = 0,
               model=None) -> list[SamplerOutput]:
    outs: list[SamplerOutput] = []
    run_sampler(sampler, model or random_model(), tokens, is_masked, generator=gen(seed),
                callback=lambda t, out: outs.append(out))
    return outs


SAMPLERS = [lambda: MaskGITSampler("cosine", num_steps=8), lambda: RandomOrderSampler(num_steps=8),
            lambda: MaskGITSampler("arccos", temperature=(2.0, 0.5), choice_temperature=(2.0, 0.0), top_k=4,
                                   num_steps=8),
            lambda: RandomOrderSampler(temperature=0.5, top_p=0.9, schedule="cosine", num_steps=8)]


@pytest.mark.parametrize("make", SAMPLERS)
def test_counts_follow_schedule_and_end_unmasked(make) -> None:
    sampler = make()
    tokens, is_masked = start([64, 40, 17, 1, 0], 64)
    n0 = is_masked.sum(1)
    outs = trajectory(sampler, tokens, is_masked)
    assert len(outs) == 8
    previous = n0
    for t, out in enumerate(outs):
        counts = out.is_masked.sum(1)
        assert torch.equal(counts, sampler.num_to_keep_masked(t))
        plain = torch.floor(sampler.schedule((t + 1) / 8) * n0.double() + 1e-9).long()
        assert bool((counts <= plain).all())
        assert bool((counts[previous > 0] < previous[previous > 0]).all()), "each step unmasks >= 1"
        previous = counts
    assert torch.equal(outs[0].is_masked.sum(1)[:1], torch.tensor([int(sampler.schedule(1 / 8) * 64)]))
    assert not bool(outs[-1].is_masked.any())
    assert bool((outs[-1].tokens < V).all())


@pytest.mark.parametrize("make", SAMPLERS)
def test_never_changes_unmasked_tokens(make) -> None:
    tokens, is_masked = start([30, 10, 0], 36, seed=4)
    fixed, fixed_mask = tokens.clone(), ~is_masked
    outs = trajectory(make(), tokens, is_masked)
    previous_tokens, previous_mask = tokens, is_masked
    for out in outs:
        assert torch.equal(out.tokens[fixed_mask], fixed[fixed_mask]), "given tokens never change"
        settled = ~previous_mask
        assert torch.equal(out.tokens[settled], previous_tokens[settled]), "unmasked tokens stay fixed"
        assert bool((out.is_masked <= previous_mask).all()), "no position is masked again"
        assert bool((out.tokens[out.is_masked] == MASK_ID).all()), "still-masked keep their input value"
        assert bool((out.confidence[settled] == math.inf).all())
        previous_tokens, previous_mask = out.tokens, out.is_masked


@pytest.mark.parametrize("make", SAMPLERS)
def test_seeds(make) -> None:
    tokens, is_masked = start([48, 48], 48)
    model = lambda toks, t: torch.randn(*toks.shape, V, generator=gen(t))  # same logits for every run
    first = run_sampler(make(), model, tokens, is_masked, generator=gen(1))
    assert torch.equal(first, run_sampler(make(), model, tokens, is_masked, generator=gen(1)))
    assert not torch.equal(first, run_sampler(make(), model, tokens, is_masked, generator=gen(2)))


def test_deterministic_model_is_followed() -> None:
    tokens, is_masked = start([20, 5], 20)
    target = torch.arange(20) % V
    peaked = lambda toks, t: torch.nn.functional.one_hot(target, V).float().expand(2, -1, -1) * 60
    for sampler in (MaskGITSampler(num_steps=4), RandomOrderSampler(num_steps=20)):
        out = run_sampler(sampler, peaked, tokens, is_masked, generator=gen())
        assert torch.equal(out[is_masked], target.expand(2, -1)[is_masked])
        assert torch.equal(out[~is_masked], tokens[~is_masked])


def test_maskgit_keeps_most_confident() -> None:
    """Without noise (temperature 0, choice temperature 0) the least confident positions are re-masked."""
    n = 8
    confidence = torch.arange(1, n + 1, dtype=torch.float32)  # position i: logit margin i + 1
    logits = torch.zeros(1, n, V)
    logits[0, :, 3] = confidence
    sampler = MaskGITSampler("linear", temperature=0.0, choice_temperature=0.0, num_steps=4)
    out = sampler.step(0, logits, torch.full((1, n), MASK_ID), torch.ones(1, n, dtype=torch.bool))
    assert out.is_masked[0].tolist() == [True] * 6 + [False] * 2
    assert out.tokens[0, 6:].tolist() == [3, 3] and out.sampled is not None and bool((out.sampled == 3).all())


def test_random_order_ignores_confidence() -> None:
    tokens, is_masked = start([32], 32)
    sampler = RandomOrderSampler(num_steps=4)
    a = sampler.step(0, torch.randn(1, 32, V, generator=gen(1)), tokens, is_masked, generator=gen(5))
    b = sampler.step(0, torch.randn(1, 32, V, generator=gen(2)) * 10, tokens, is_masked, generator=gen(5))
    assert torch.equal(a.is_masked, b.is_masked)
    firsts = torch.stack([sampler.step(0, torch.zeros(1, 32, V), tokens, is_masked, generator=gen(s)).is_masked[0]
                          for s in range(400)])
    assert firsts.float().mean(0).sub(0.75).abs().max().item() < 0.12  # uniform: each kept masked w.p. 24/32


def test_first_hitting_one_per_step() -> None:
    tokens, is_masked = start([10], 10)
    outs = trajectory(RandomOrderSampler(num_steps=10), tokens, is_masked)
    assert [int(o.is_masked.sum()) for o in outs] == list(range(9, -1, -1))


def test_more_steps_than_tokens() -> None:
    tokens, is_masked = start([3, 0], 16)
    sampler = MaskGITSampler(num_steps=10)
    outs = trajectory(sampler, tokens, is_masked)
    assert [int(o.is_masked[0].sum()) for o in outs] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 0]
    assert not bool(outs[-1].is_masked.any())


def test_reusable_and_anneal() -> None:
    sampler = MaskGITSampler(temperature=(2.0, 0.0), choice_temperature=4.5, num_steps=5)
    assert sampler.timesteps == [0, 1, 2, 3, 4]
    assert [sampler.temperature_at(t) for t in range(5)] == [2.0, 1.5, 1.0, 0.5, 0.0]
    assert sampler.choice_temperature_at(0) == pytest.approx(4.5 * 0.8) and sampler.choice_temperature_at(4) == 0
    for batch, n in ((2, 16), (3, 9)):  # a second call with another shape re-records at step 0
        tokens, is_masked = start([n] * batch, n)
        assert not bool(run_sampler(sampler, random_model(), tokens, is_masked).eq(MASK_ID).any())
    sampler.set_steps(3)
    assert sampler.timesteps == [0, 1, 2] and sampler.num_to_keep_masked(2).tolist() == [0, 0, 0]
    assert isinstance(create_sampler("random", num_steps=2), RandomOrderSampler)
    assert "cosine" in repr(MaskGITSampler()) and get_schedule("cosine") == MaskGITSampler().schedule


def test_bad_inputs() -> None:
    sampler = MaskGITSampler()
    with pytest.raises(RuntimeError, match="set_steps"):
        _ = sampler.timesteps
    for bad in (0, -3, 2.5):
        with pytest.raises(InvalidArgumentError, match="num_steps"):
            sampler.set_steps(bad)  # type: ignore[arg-type]
    sampler.set_steps(4)
    tokens, is_masked = start([8], 8)
    with pytest.raises(InvalidArgumentError, match="step_index"):
        sampler.step(4, torch.zeros(1, 8, V), tokens, is_masked)
    with pytest.raises(InvalidArgumentError, match="logits"):
        sampler.step(0, torch.zeros(1, 7, V), tokens, is_masked)
    with pytest.raises(InvalidArgumentError, match="is_masked"):
        sampler.step(0, torch.zeros(1, 8, V), tokens, is_masked.long())
    with pytest.raises(InvalidArgumentError, match="schedule"):
        MaskGITSampler("cosinus")
    with pytest.raises(InvalidArgumentError, match="choice_temperature"):
        MaskGITSampler(choice_temperature=-1.0)
    with pytest.raises(InvalidArgumentError, match="temperature"):
        RandomOrderSampler(temperature=(1.0, -1.0))
    with pytest.raises(InvalidArgumentError, match="top_k"):
        RandomOrderSampler(top_k=0)
    with pytest.raises(InvalidArgumentError, match="sampler"):
        create_sampler("beam")
