"""Mask schedules: endpoints, monotonicity, formulas, float/tensor calls, bad names."""

from __future__ import annotations

import math

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.sampling import MaskSchedule, available_schedules, describe_schedule, get_schedule

NAMES = ["cosine", "linear", "sqrt", "square", "arccos", "pow:3", "pow:0.5"]
FORMULAS = {
    "cosine": lambda u: math.cos(math.pi * u / 2),
    "linear": lambda u: 1 - u,
    "sqrt": lambda u: 1 - math.sqrt(u),
    "square": lambda u: 1 - u * u,
    "arccos": lambda u: 2 / math.pi * math.acos(u),
    "pow:3": lambda u: 1 - u**3,
    "pow:0.5": lambda u: 1 - u**0.5,
}


@pytest.mark.parametrize("name", NAMES)
def test_endpoints_exact_and_decreasing(name: str) -> None:
    schedule = get_schedule(name)
    assert schedule(0.0) == 1.0 and schedule(1.0) == 0.0
    u = torch.linspace(0, 1, 1001, dtype=torch.float64)
    values = schedule(u)
    assert values.dtype == torch.float64 and values.shape == u.shape
    assert bool((values[1:] < values[:-1]).all()), "strictly decreasing on [0, 1]"
    assert bool(((values >= 0) & (values <= 1)).all())


@pytest.mark.parametrize("name", NAMES)
def test_matches_formula(name: str) -> None:
    schedule = get_schedule(name)
    for u in (0.1, 0.25, 0.5, 0.9):
        assert schedule(u) == pytest.approx(FORMULAS[name](u), abs=1e-12)
    assert isinstance(schedule(0.3), float)


def test_tensor_dtype_and_clamping() -> None:
    schedule = get_schedule("cosine")
    assert schedule(torch.tensor([0.5], dtype=torch.float32)).dtype == torch.float32
    assert schedule(torch.tensor([0, 1])).tolist() == [1.0, 0.0]  # integer input → float64
    assert schedule(torch.tensor([-0.5, 1.5])).tolist() == [1.0, 0.0]


def test_lookup_variants() -> None:
    assert get_schedule(" Cosine ").name == "cosine"
    cosine = get_schedule("cosine")
    assert get_schedule(cosine) is cosine
    custom = get_schedule(lambda u: 1 - u)
    assert isinstance(custom, MaskSchedule) and custom(0.25) == pytest.approx(0.75)
    assert get_schedule("pow:2")(0.3) == pytest.approx(get_schedule("square")(0.3))
    assert "pow:<p>" in available_schedules() and "arccos" in available_schedules()
    assert describe_schedule("pow:2.5") == "1 - u^2.5" and "cos" in describe_schedule("cosine")


@pytest.mark.parametrize("bad", ["cosin", "pow:", "pow:-1", "pow:abc", "pow:nan", "", 3])
def test_unknown_schedule_raises(bad: object) -> None:
    with pytest.raises(InvalidArgumentError, match="schedule"):
        get_schedule(bad)  # type: ignore[arg-type]
