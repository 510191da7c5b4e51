"""Categorical draws: float64 Gumbel-max matches the distribution; temperature, top-k, top-p; bad options."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import categorical, filter_top_p, gumbel_noise, sample_categorical


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def peaked_logits(tail: int = 200, gap: float = 7.0) -> torch.Tensor:
    """One dominant id and ``tail`` ids ``gap`` nats below it: ~15% of the mass is in the tail."""
    logits = torch.full((tail + 1,), -gap)
    logits[0] = 0.0
    return logits


def assert_matches(ids: torch.Tensor, probs: torch.Tensor, groups: int = 10) -> None:
    """Chi-square-like check: the dominant id and ``groups`` pooled tail groups within 5 sigma each."""
    rows = ids.numel()
    counts = torch.bincount(ids.flatten(), minlength=probs.numel()).double()
    pooled_counts = torch.cat([counts[:1], counts[1:].reshape(groups, -1).sum(1)])
    pooled_probs = torch.cat([probs[:1], probs[1:].reshape(groups, -1).sum(1)])
    sigma = (pooled_probs * (1 - pooled_probs) / rows).sqrt()
    error = (pooled_counts / rows - pooled_probs).abs()
    assert bool((error < 5 * sigma).all()), (error / sigma).tolist()


def test_gumbel_noise_float64_statistics() -> None:
    noise = gumbel_noise((200000,), gen())
    assert noise.dtype == torch.float64 and bool(noise.isfinite().all())
    assert noise.mean().item() == pytest.approx(0.5772156649, abs=0.01)  # Euler–Mascheroni
    assert noise.var().item() == pytest.approx(math.pi**2 / 6, abs=0.03)
    assert gumbel_noise((3, 4), gen(), dtype=torch.float32).dtype == torch.float32


def test_uniforms_finer_than_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 uniforms are multiples of 2^-24, so fp32 Gumbel never exceeds ~16.6 and ids > 17 nats behind the top
    never win; float64 uniforms are off that grid and reach ~36.7."""
    u = categorical.uniform_noise((10000,), gen())
    assert u.dtype == torch.float64 and bool(((u * 2**24).frac() != 0).any())
    monkeypatch.setattr(categorical, "uniform_noise", lambda shape, *a, **k: torch.full(shape, 1 - 2.0**-50,
                                                                                         dtype=torch.float64))
    assert 30 < categorical.gumbel_noise((1,)).item() < 40


def test_empirical_distribution_peaked() -> None:
    logits = peaked_logits()
    rows = 20000
    ids, log_probs = sample_categorical(logits.expand(rows, -1), generator=gen())
    assert ids.shape == (rows,) and ids.dtype == torch.long and log_probs.dtype == torch.float64
    assert_matches(ids, logits.double().softmax(-1))
    hot = sample_categorical(logits.expand(rows, -1), temperature=2.0, generator=gen(1))[0]
    assert_matches(hot, (logits.double() / 2).softmax(-1))


def test_log_probs_are_model_log_probs() -> None:
    logits = torch.randn(64, 12, generator=gen(5))
    for temperature in (0.0, 0.7, 3.0):
        ids, log_probs = sample_categorical(logits, temperature=temperature, top_k=4, generator=gen())
        expected = logits.double().log_softmax(-1).gather(-1, ids[:, None])[:, 0]
        assert torch.allclose(log_probs, expected, atol=1e-12)


def test_temperature_zero_is_argmax() -> None:
    logits = torch.randn(4, 7, 33, generator=gen(2))
    ids, _ = sample_categorical(logits, temperature=0.0, generator=gen())
    assert ids.shape == (4, 7) and torch.equal(ids, logits.argmax(-1))


def test_top_k_only_allowed_ids_and_renormalized() -> None:
    logits = torch.randn(2000, 50, generator=gen(3))
    ids, _ = sample_categorical(logits, top_k=5, generator=gen())
    allowed = logits.topk(5, dim=-1).indices
    assert bool((allowed == ids[:, None]).any(-1).all())
    two = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    picks = sample_categorical(two.expand(20000, -1), top_k=2, generator=gen(4))[0]
    assert set(picks.unique().tolist()) == {0, 1}
    assert (picks == 0).double().mean().item() == pytest.approx(0.625, abs=0.015)


@pytest.mark.parametrize(("top_p", "allowed"), [(0.4, {0}), (0.75, {0, 1}), (0.85, {0, 1, 2}), (1.0, {0, 1, 2, 3})])
def test_top_p_only_allowed_ids(top_p: float, allowed: set[int]) -> None:
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])  # sorted: 1 (0.5), 3 (0.3), 0 (0.15), 2 (0.05)
    order = [1, 3, 0, 2]
    picks = sample_categorical(probs.log().expand(4000, -1), top_p=top_p, generator=gen())[0]
    assert set(picks.unique().tolist()) == {order[i] for i in allowed}


def test_filter_top_p_keeps_best_id() -> None:
    logits = torch.tensor([[0.0, 10.0, 1.0]], dtype=torch.float64)
    assert filter_top_p(logits.clone(), 0.01).isfinite().tolist() == [[False, True, False]]


def test_reproducible_and_dtypes() -> None:
    logits = torch.randn(8, 16, 64, generator=gen(6)).to(torch.bfloat16)
    a = sample_categorical(logits, generator=gen(1))[0]
    assert torch.equal(a, sample_categorical(logits, generator=gen(1))[0])
    assert not torch.equal(a, sample_categorical(logits, generator=gen(2))[0])
    assert sample_categorical(torch.zeros(0, 5))[0].shape == (0,)


@pytest.mark.parametrize(("kwargs", "name"), [({"temperature": -1.0}, "temperature"),
                                              ({"temperature": math.nan}, "temperature"),
                                              ({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
                                              ({"top_p": 1.5}, "top_p")])
def test_bad_options(kwargs: dict[str, float], name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=name):
        sample_categorical(torch.zeros(2, 3), **kwargs)  # type: ignore[arg-type]
