"""Mask schedules γ: [0, 1] → [0, 1], the fraction of tokens still masked at progress u.

Every schedule has γ(0) = 1 (all masked), γ(1) = 0 (nothing masked) and decreases in between. The same schedule
serves training (a mask ratio r = γ(u), u ~ U(0, 1), see :mod:`mmgen.sampling.masking`) and sampling (after step t
of T, ⌊γ((t+1)/T)·N⌋ tokens stay masked, see :mod:`mmgen.sampling.samplers`), so the two cannot drift apart.

Names: ``cosine`` cos(πu/2) (MaskGIT's default), ``linear`` 1 − u, ``sqrt`` 1 − √u, ``square`` 1 − u²,
``arccos`` (2/π)·arccos(u), and ``pow:<p>`` 1 − u^p for any p > 0 (``pow:2`` equals ``square``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Union, overload

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError

ScheduleInput = Union[Tensor, float]
ScheduleLike = Union[str, "MaskSchedule", Callable[[Tensor], Tensor]]

_EXPRESSIONS: dict[str, str] = {
    "cosine": "cos(pi*u/2)",
    "linear": "1 - u",
    "sqrt": "1 - sqrt(u)",
    "square": "1 - u^2",
    "arccos": "(2/pi)*arccos(u)",
}


def _cosine(u: Tensor) -> Tensor:
    return torch.cos(u * (math.pi / 2))


def _linear(u: Tensor) -> Tensor:
    return 1 - u


def _sqrt(u: Tensor) -> Tensor:
    return 1 - torch.sqrt(u)


def _square(u: Tensor) -> Tensor:
    return 1 - u * u


def _arccos(u: Tensor) -> Tensor:
    return torch.arccos(u) * (2 / math.pi)


_FUNCTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "cosine": _cosine,
    "linear": _linear,
    "sqrt": _sqrt,
    "square": _square,
    "arccos": _arccos,
}


@dataclass(frozen=True)
class MaskSchedule:
    """A named mask schedule γ; call it on a float or a tensor of any shape.

    Args:
        name: the registered name (``cosine``, ``pow:3``, ...), kept so configs can store it.
        fn: γ on a float64 tensor of progress values already clamped to [0, 1].

    ``schedule(u)`` returns a float for a float ``u`` and a tensor of ``u``'s shape (float64 when ``u`` is an
    integer tensor, otherwise ``u``'s dtype) for a tensor. Endpoints are exact: γ(0) = 1 and γ(1) = 0.
    """

    name: str
    fn: Callable[[Tensor], Tensor]

    @overload
    def __call__(self, u: Tensor) -> Tensor: ...

    @overload
    def __call__(self, u: float) -> float: ...

    def __call__(self, u: ScheduleInput) -> ScheduleInput:
        if isinstance(u, Tensor):
            out_dtype = u.dtype if u.is_floating_point() else torch.float64
            x = u.to(torch.float64).clamp(0.0, 1.0)
            value = self.fn(x).clamp(0.0, 1.0)
            value = torch.where(x <= 0, torch.ones_like(value), value)
            value = torch.where(x >= 1, torch.zeros_like(value), value)
            return value.to(out_dtype)
        return float(self(torch.tensor(float(u), dtype=torch.float64)))

    def __repr__(self) -> str:
        return f"MaskSchedule({self.name!r})"


def available_schedules() -> list[str]:
    """Names :func:`get_schedule` accepts (``pow:<p>`` stands for any positive exponent)."""
    return [*_FUNCTIONS, "pow:<p>"]


def describe_schedule(name: str) -> str:
    """A formula for a schedule name (``"cos(pi*u/2)"``), for help texts and logs."""
    schedule = get_schedule(name)
    if schedule.name.startswith("pow:"):
        return f"1 - u^{schedule.name[4:]}"
    return _EXPRESSIONS[schedule.name]


def _power_schedule(name: str) -> MaskSchedule:
    text = name[4:].strip()
    try:
        power = float(text)
    except ValueError:
        power = float("nan")
    if not math.isfinite(power) or power <= 0:
        raise InvalidArgumentError("schedule", "pow:<p> with a positive number p (e.g. pow:2.5)", name)
    return MaskSchedule(f"pow:{text}", lambda u: 1 - u.pow(power))


def get_schedule(name: ScheduleLike) -> MaskSchedule:
    """Return the mask schedule called ``name`` (case-insensitive); see :func:`available_schedules`.

    A :class:`MaskSchedule` is returned unchanged and any other callable γ is wrapped (named ``"custom"``), so
    samplers and maskers can take either a name or a function.

    Raises:
        InvalidArgumentError: ``schedule`` names no known schedule, or ``pow:<p>`` has a bad exponent.
    """
    if isinstance(name, MaskSchedule):
        return name
    if callable(name):
        return MaskSchedule("custom", name)
    if not isinstance(name, str):
        raise InvalidArgumentError("schedule", f"one of {available_schedules()}", name)
    key = name.strip().lower()
    if key.startswith("pow:"):
        return _power_schedule(key)
    if key not in _FUNCTIONS:
        raise InvalidArgumentError("schedule", f"one of {available_schedules()}", name)
    return MaskSchedule(key, _FUNCTIONS[key])
