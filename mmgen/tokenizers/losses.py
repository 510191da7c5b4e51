"""Tokenizer training losses: L1/L2 reconstruction, an optional LPIPS-style perceptual loss, and the VQGAN
adversarial term (adaptive weight, delayed and ramped start).

The GAN onset is the known failure point of VQGAN training; three guards keep it from wrecking reconstructions:

1. the discriminator trains alone for ``disc_warmup`` steps after ``disc_start`` before the generator sees it;
2. the generator's adversarial weight then ramps linearly from 0 over ``disc_ramp`` steps;
3. the adaptive weight (reconstruction / adversarial gradient-norm ratio on the decoder's last layer) is capped at
   ``adaptive_weight_max``, so the adversarial gradient never exceeds ``disc_weight`` times the reconstruction one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import CheckpointError, InvalidArgumentError


@dataclass
class TokenizerLossConfig:
    """Loss settings of the image-tokenizer task (``key=value`` on the ``mmgen train image-tokenizer`` line)."""

    recon_loss: Literal["l1", "l2", "l1+l2"] = "l1+l2"
    perceptual_weight: float = 0.0
    perceptual_weights: str = ""
    disc_weight: float = 0.0
    disc_start: int = 2000
    disc_warmup: int = 200
    disc_ramp: int = 500
    disc_lr_mult: float = 1.0
    disc_channels: int = 64
    disc_layers: int = 2
    adaptive_weight_max: float = 1.0

    def __post_init__(self) -> None:
        if self.recon_loss not in ("l1", "l2", "l1+l2"):
            raise InvalidArgumentError("recon_loss", "one of 'l1', 'l2', 'l1+l2'", self.recon_loss)
        for name in ("perceptual_weight", "disc_weight", "disc_lr_mult", "adaptive_weight_max"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(name, "a number >= 0", getattr(self, name))
        for name in ("disc_start", "disc_warmup", "disc_ramp"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(name, "an integer >= 0", getattr(self, name))
        if self.perceptual_weight > 0 and not self.perceptual_weights:
            raise InvalidArgumentError("perceptual_weights", "a VGG16 weights file when perceptual_weight > 0 "
                                       "(nothing is downloaded)", "''")


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """reconstruction, target: [B, C, H, W] → scalar fp32 mean L1, L2 or their sum."""
    diff = reconstruction.float() - target.float()
    l1, l2 = diff.abs().mean(), diff.square().mean()
    return {"l1": l1, "l2": l2, "l1+l2": l1 + l2}[kind]


def gan_generator_factor(step: int, config: TokenizerLossConfig) -> float:
    """Schedule of the generator's adversarial weight: 0 until ``disc_start + disc_warmup``, then a linear ramp."""
    begin = config.disc_start + config.disc_warmup
    if config.disc_weight <= 0 or step < begin:
        return 0.0
    return config.disc_weight * min(1.0, (step - begin + 1) / max(1, config.disc_ramp))


def adaptive_weight(rec_loss: torch.Tensor, gan_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float) -> torch.Tensor:
    """||∇_last rec_loss|| / ||∇_last gan_loss||, clamped to [0, max_weight], detached (VQGAN's λ)."""
    if not (rec_loss.requires_grad and gan_loss.requires_grad):
        return rec_loss.new_zeros(())
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(gan_loss, last_layer, retain_graph=True)[0]
    weight = rec_grad.float().norm() / (gan_grad.float().norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()


class PerceptualLoss(nn.Module):
    """LPIPS-style distance on VGG16 features (weights from a local file; nothing is downloaded).

    The file holds torchvision ``vgg16`` ``features.*`` weights, optionally with LPIPS' per-channel linear heads
    (``lin{0..4}.model.1.weight``); without heads every channel weighs the same. Inputs [B, C, H, W] in [-1, 1]
    (grayscale is repeated to RGB) → scalar mean distance. The network is frozen.
    """

    _TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
    _SHIFT = (-0.030, -0.088, -0.188)
    _SCALE = (0.458, 0.448, 0.450)

    def __init__(self, weights: str | Path):
        super().__init__()
        from torchvision.models import vgg16

        from mmgen.pretrained import load_state_dict

        state = load_state_dict(weights)
        self.features = vgg16(weights=None).features[: self._TAPS[-1] + 1]
        vgg_state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        missing = set(self.features.state_dict()) - set(vgg_state)
        if missing:
            raise CheckpointError(f"{weights}: not VGG16 weights (missing features.{sorted(missing)[0]} ...)")
        self.features.load_state_dict(vgg_state, strict=False)
        heads = [state.get(f"lin{i}.model.1.weight") for i in range(len(self._TAPS))]
        self.heads = [h.reshape(1, -1, 1, 1).float() if h is not None else None for h in heads]
        self.register_buffer("shift", torch.tensor(self._SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(self._SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = (images.expand(-1, 3, -1, -1) - self.shift) / self.scale
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self._TAPS:
                taps.append(F.normalize(x.float(), dim=1, eps=1e-10))
        return taps

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        total = reconstruction.new_zeros((), dtype=torch.float32)
        for tap, (a, b) in enumerate(zip(self._taps(reconstruction), self._taps(target))):
            diff = (a - b).square()
            head = self.heads[tap]
            diff = (diff * head.to(diff.device)).sum(1) if head is not None else diff.mean(1)
            total = total + diff.mean()
        return total


__all__ = ["PerceptualLoss", "TokenizerLossConfig", "adaptive_weight", "gan_generator_factor",
           "reconstruction_loss"]
