"""PatchGAN discriminator (pix2pix / taming-transformers' ``NLayerDiscriminator``) and the hinge GAN losses.

GroupNorm replaces BatchNorm so that the discriminator has no running statistics (DDP- and resume-safe).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.pretrained import PretrainedModel


@dataclass
class PatchDiscriminatorConfig:
    in_channels: int = 3
    channels: int = 64
    num_layers: int = 3


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) or 1, channels)


class PatchDiscriminator(PretrainedModel):
    """images [B, C, H, W] in [-1, 1] → patch logits [B, 1, h', w'] (real > 0 > fake under the hinge loss).

    ``num_layers`` stride-2 4x4 convs (channels doubling up to 8x), one stride-1 conv, then a 1-channel conv.
    """

    config_class = PatchDiscriminatorConfig
    model_type = "patch_discriminator"

    def __init__(self, config: PatchDiscriminatorConfig):
        super().__init__(config)
        width = config.channels
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        for layer in range(1, config.num_layers + 1):
            out = config.channels * min(2 ** layer, 8)
            stride = 2 if layer < config.num_layers else 1
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), _norm(out), nn.LeakyReLU(0.2)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → logits [B, 1, h', w']."""
        return self.net(images)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss: mean(relu(1 - D(real))) + mean(relu(1 + D(fake))), halved (taming's scale)."""
    return 0.5 * (F.relu(1.0 - real_logits.float()).mean() + F.relu(1.0 + fake_logits.float()).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator hinge loss: -mean(D(fake))."""
    return -fake_logits.float().mean()


__all__ = ["PatchDiscriminator", "PatchDiscriminatorConfig", "hinge_d_loss", "hinge_g_loss"]
