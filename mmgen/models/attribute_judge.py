"""The shapes attribute judge: which (color, shape) objects an image shows, how many, and where.

``AttributeJudge`` scores images of the procedural shapes dataset (:mod:`mmgen.data.shapes`) so that generated
images can be checked against their prompts (:func:`mmgen.eval.prompt_match.prompt_match`):

* ``object_logits [B, 24]``: one sigmoid per (color, shape) in :data:`mmgen.data.shapes.OBJECTS` order (multi-label).
  A linear head reads the spatial max and mean of the last features: the max keeps channels that fire for a
  color-shape conjunction at one place, so a red circle + blue square does not read as a blue circle.
* ``count_logits [B, 2]`` (one or two objects), ``position_logits [B, 5]`` (of a single object, in
  :data:`~mmgen.data.shapes.POSITIONS` order) and ``relation_logits [B, 4]`` (two objects: the relation of the
  object listed first in ``OBJECTS`` to the other, in :data:`~mmgen.data.shapes.RELATIONS` order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config


@dataclass
class AttributeJudgeConfig:
    image_size: int = 32
    in_channels: int = 3
    num_objects: int = 24
    num_positions: int = 5
    num_relations: int = 4
    channels: tuple[int, ...] = (16, 32, 64)
    hidden_dim: int = 128


@dataclass
class JudgeOutput:
    """Logits of the judge's heads (see the module docstring): ``object_logits [B, 24]``, ``count_logits [B, 2]``
    (index 0: one object, 1: two), ``position_logits [B, 5]``, ``relation_logits [B, 4]``."""

    object_logits: torch.Tensor
    count_logits: torch.Tensor
    position_logits: torch.Tensor
    relation_logits: torch.Tensor


def _conv_block(width: int, out: int, stride: int) -> list[nn.Module]:
    groups = math.gcd(8, out)
    return [nn.Conv2d(width, out, 3, stride=stride, padding=1), nn.GroupNorm(groups, out), nn.GELU(),
            nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(groups, out), nn.GELU()]


class AttributeJudge(PretrainedModel):
    """Conv stages (conv-GN-GELU x2, the first conv of later stages with stride 2) → object logits from the
    spatial max + mean of the features, and a layout MLP on the 4x4-pooled features."""

    config_class = AttributeJudgeConfig
    model_type = "attribute_judge"

    def __init__(self, config: AttributeJudgeConfig):
        super().__init__(config)
        layers: list[nn.Module] = []
        width = config.in_channels
        for index, out in enumerate(config.channels):
            layers += _conv_block(width, out, stride=1 if index == 0 else 2)
            width = out
        self.stages = nn.Sequential(*layers)
        self.object_head = nn.Linear(2 * width, config.num_objects)
        self.layout = nn.Sequential(nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(width * 16, config.hidden_dim),
                                    nn.GELU())
        self.layout_heads = nn.Linear(config.hidden_dim, 2 + config.num_positions + config.num_relations)

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        """images: [B, C, H, W] in [-1, 1] at ``config.image_size`` → :class:`JudgeOutput`."""
        features = self.stages(images)                                   # [B, D, h, w]
        pooled = torch.cat([features.amax((2, 3)), features.mean((2, 3))], dim=-1)  # [B, 2D]
        object_logits = self.object_head(pooled)                        # [B, num_objects]
        count, position, relation = self.layout_heads(self.layout(features)).split(
            [2, self.config.num_positions, self.config.num_relations], dim=-1)
        return JudgeOutput(object_logits, count, position, relation)

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → [B, C, S, S] at the judge's ``image_size`` (area / bilinear), unchanged if equal."""
        size = self.config.image_size
        if images.shape[-2:] == (size, size):
            return images
        mode = "area" if images.shape[-1] > size else "bilinear"
        return F.interpolate(images.float(), size=(size, size), mode=mode)

    @torch.no_grad()
    def present_objects(self, images: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] (any size) → bool [B, num_objects]: objects judged present."""
        logits = self(self.resize(images).to(self.object_head.weight.dtype)).object_logits
        return torch.sigmoid(logits.float()) > threshold


register_config("shapes-judge", AttributeJudge.model_type, {})
register_config("shapes-judge-tiny", AttributeJudge.model_type, {"channels": (8, 8, 16), "hidden_dim": 16})
