"""Run settings of the one trainer (every task shares them; task/model settings live in their own configs)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

from mmgen.errors import InvalidArgumentError


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpointing and logging for a training run.

    ``batch_size`` is per process and per micro-step: the effective batch is
    ``batch_size * grad_accum * world_size``.
    """

    steps: int = 1000
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-4
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.99)
    warmup_steps: int = 100
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    clip_grad: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    ema_decay: float = 0.0
    ema_warmup: bool = True
    ckpt_every: int = 500
    keep_last: int = 2
    log_every: int = 10
    eval_every: int = 0
    sample_every: int = 0
    max_nonfinite: int = 5
    seed: int = 0
    num_workers: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "grad_accum", "ckpt_every", "keep_last", "log_every", "max_nonfinite"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise InvalidArgumentError(name, "a positive integer", value)
        for name in ("eval_every", "sample_every", "warmup_steps", "num_workers", "seed"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise InvalidArgumentError(name, "an integer >= 0", getattr(self, name))
        if not self.lr > 0:
            raise InvalidArgumentError("lr", "a positive number", self.lr)
        if not 0.0 <= self.ema_decay < 1.0:
            raise InvalidArgumentError("ema_decay", "a number in [0, 1) (0 turns EMA off)", self.ema_decay)
        choices = {"schedule": ("cosine", "linear", "constant"), "precision": ("fp32", "bf16", "fp16"),
                   "device": ("auto", "cpu", "cuda")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise InvalidArgumentError(name, f"one of {', '.join(allowed)}", getattr(self, name))
        if self.clip_grad < 0:
            raise InvalidArgumentError("clip_grad", "a number >= 0 (0 turns clipping off)", self.clip_grad)

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``key=value`` overrides into (TrainConfig fields, everything else for the task/model)."""
    names = TrainConfig.field_names()
    train = {k: v for k, v in overrides.items() if k in names}
    return train, {k: v for k, v in overrides.items() if k not in names}
