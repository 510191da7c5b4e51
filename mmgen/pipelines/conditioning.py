"""What a pipeline hands its transformer besides the tokens, prepared once per call and reused at every step.

A :class:`Conditioning` holds the model's keyword inputs for the conditional branch and, for classifier-free
guidance, for the conditional and unconditional branches stacked along the batch (``[2B, ...]``: cond first). Text
pipelines put the prompt's cross-attention keys/values (projected once), mask and pooled embedding here; class
pipelines put class ids. The decoding loop only ever calls ``model(tokens, **conditioning.inputs(guided))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

ModelInputs = dict[str, Any]


def take_rows(value: Any, rows: slice) -> Any:
    """The batch rows ``rows`` of a model input: a tensor, a list of (k, v) tensor pairs, or None."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        return value[rows]
    if isinstance(value, (list, tuple)):
        return [take_rows(item, rows) if not isinstance(item, tuple) else tuple(take_rows(t, rows) for t in item)
                for item in value]
    raise TypeError(f"cannot slice a model input of type {type(value).__name__}")


def stack_inputs(cond: ModelInputs, uncond: ModelInputs) -> ModelInputs:
    """Concatenate two input dicts along the batch (cond first); keys must match (None stays None)."""
    if cond.keys() != uncond.keys():
        raise ValueError(f"cond and uncond inputs differ: {sorted(cond)} vs {sorted(uncond)}")
    return {key: None if cond[key] is None else torch.cat([cond[key], uncond[key]]) for key in cond}


@dataclass
class Conditioning:
    """Model inputs for ``batch`` samples.

    Attributes:
        batch: B.
        cond: keyword inputs of the conditional branch (tensors ``[B, ...]``).
        guided: keyword inputs of both branches stacked (``[2B, ...]``, cond first) or None when the pipeline has
            no unconditional branch (unconditional models).
    """

    batch: int
    cond: ModelInputs
    guided: ModelInputs | None = None

    @classmethod
    def from_stacked(cls, batch: int, stacked: ModelInputs) -> Conditioning:
        """Build from inputs already stacked ``[2B, ...]`` (cond rows first): the cond branch is a view of them."""
        return cls(batch, {key: take_rows(value, slice(0, batch)) for key, value in stacked.items()}, stacked)

    def inputs(self, guided: bool) -> ModelInputs:
        """The inputs for one model call: both branches (``[2B]``) when ``guided`` and available, else cond."""
        return self.guided if guided and self.guided is not None else self.cond
