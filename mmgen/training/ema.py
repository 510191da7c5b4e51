"""Exponential moving average of a model's weights (kept in fp32 on the model's device)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """``shadow = decay_t * shadow + (1 - decay_t) * weights`` after every optimizer step.

    With ``warmup`` the decay ramps as ``min(decay, (1 + n) / (10 + n))`` so early averages are not dominated by
    the random initialisation. Buffers (e.g. batch-norm statistics, EMA codebooks) are copied, not averaged.
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True):
        self.decay, self.warmup = decay, warmup
        self.num_updates = 0
        self.shadow = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = self.current_decay()
        self.num_updates += 1
        live = dict(model.named_parameters())
        for name, shadow in self.shadow.named_parameters():
            shadow.lerp_(live[name].detach().to(shadow.dtype), 1.0 - decay)
        live_buffers = dict(model.named_buffers())
        for name, buffer in self.shadow.named_buffers():
            buffer.copy_(live_buffers[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor], num_updates: int) -> None:
        self.shadow.load_state_dict(state)
        self.num_updates = num_updates
