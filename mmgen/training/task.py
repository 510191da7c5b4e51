"""The contract between the one :class:`~mmgen.training.trainer.Trainer` and each model's training task.

A task supplies:

* ``build_module()``: an ``nn.Module`` whose ``forward(batch, step) -> LossOutput`` computes the training loss for
  one batch. It holds everything that trains (a tokenizer *and* its discriminator, say). The trainer wraps it in
  DDP, so all trainable computation must go through ``forward``. Parts trained adversarially keep their gradients
  apart inside ``forward`` (detach fakes for the discriminator loss; freeze the discriminator for the generator's
  adversarial loss), so that one backward of the summed loss is correct.
* ``export_model(module)``: the :class:`~mmgen.pretrained.PretrainedModel` inside it that is saved with
  ``save_pretrained`` (EMA tracks this part only).
* ``build_stream(rank, world_size, seed, state)``: an iterable of batches (usually a
  :class:`mmgen.data.ShardStream`) for this rank, resuming from ``state`` (a
  :class:`mmgen.data.StreamPosition` state dict) when given.
* optionally ``param_groups(module)`` (per-group lr/betas/weight decay), ``evaluate(model, step, out_dir)`` returning
  scalar metrics, and ``sample(model, step, out_dir)`` writing PNG/WAV files. Hooks run on rank 0 under a forked RNG,
  so they never change the training trajectory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class LossOutput:
    """What a training module's ``forward`` returns.

    Attributes:
        loss: scalar tensor to minimise (summed over all parts that train).
        metrics: scalars to log (floats or 0-d tensors; averaged over the logging window).
        num_samples: samples in the batch (for samples/s); 0 means "infer from the batch".
    """

    loss: torch.Tensor
    metrics: dict[str, float | torch.Tensor] = field(default_factory=dict)
    num_samples: int = 0


class TrainTask:
    """Base class for training tasks; subclasses override the ``build_*`` methods and optional hooks."""

    #: a short name used in logs ("image-tokenizer", "maskgit", ...)
    name: str = "task"

    def build_module(self) -> nn.Module:
        raise NotImplementedError

    def export_model(self, module: nn.Module) -> nn.Module:
        """The part of ``module`` that is saved as the run's model (default: the module itself)."""
        return module

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        """AdamW parameter groups; extra keys (``lr``, ``betas``, ``weight_decay``) override the run's defaults."""
        decay, no_decay = [], []
        for name, param in module.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or name.endswith(".bias") else decay).append(param)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def build_stream(self, *, rank: int, world_size: int, seed: int,
                     state: dict[str, Any] | None) -> Iterable[dict[str, Any]]:
        raise NotImplementedError

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        return {}

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        return []

    def on_finish(self, model: nn.Module, out_dir: Path) -> list[Path]:
        """After training (rank 0): write extra artifacts, e.g. a ready-to-use pipeline folder."""
        return []

    def config_dict(self) -> dict[str, Any]:
        """Task settings written into the run's ``run_config.json`` (for the record)."""
        return {}
