"""A small CNN image classifier: the demo's first model and the class judge used to evaluate generators.

``DigitClassifier`` maps images in [-1, 1] to class logits and exposes penultimate ``features`` (for FID/KID in
the classifier's feature space, and for linear probes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config


@dataclass
class DigitClassifierConfig:
    in_channels: int = 1
    num_classes: int = 10
    channels: tuple[int, ...] = (16, 32)
    feature_dim: int = 64
    dropout: float = 0.1


class DigitClassifier(PretrainedModel):
    """Conv stages (conv-GN-GELU ×2, then 2× downsample) → 3x3 average pool → ``feature_dim`` → logits."""

    config_class = DigitClassifierConfig
    model_type = "digit_classifier"

    def __init__(self, config: DigitClassifierConfig):
        super().__init__(config)
        layers: list[nn.Module] = []
        width = config.in_channels
        for out in config.channels:
            groups = math.gcd(8, out)
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.GroupNorm(groups, out), nn.GELU(),
                       nn.Conv2d(out, out, 3, padding=1), nn.GroupNorm(groups, out), nn.GELU(), nn.MaxPool2d(2)]
            width = out
        self.stages = nn.Sequential(*layers)
        # a 3x3 pooled map keeps the coarse layout that tells digits apart (global pooling would lose it)
        self.to_features = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.Flatten(),
                                         nn.Linear(width * 9, config.feature_dim), nn.GELU())
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    @property
    def num_features(self) -> int:  # torchmetrics' FID accepts a feature network with this attribute
        return self.config.feature_dim

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → features [B, feature_dim]."""
        return self.to_features(self.stages(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → logits [B, num_classes]."""
        return self.head(self.dropout(self.features(images)))


register_config("digit-classifier-mnist", DigitClassifier.model_type, {})
