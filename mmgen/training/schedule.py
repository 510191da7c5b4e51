"""Learning-rate schedules: linear warmup, then cosine / linear decay to ``min_lr_ratio`` or constant."""

from __future__ import annotations

import math
from collections.abc import Callable

from mmgen.training.config import TrainConfig


def lr_multiplier(config: TrainConfig) -> Callable[[int], float]:
    """A function ``step -> factor`` applied to every param group's base lr (for ``LambdaLR``)."""
    warmup, total, floor = config.warmup_steps, config.steps, config.min_lr_ratio

    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if config.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if config.schedule == "linear":
            return floor + (1.0 - floor) * (1.0 - progress)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
