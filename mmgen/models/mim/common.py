"""What MAE and the BEiT-style model share: the encoder, the masking strategy, the difficulty head (hard-patch
mining), features for probes and export, and the config fields of masking."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError
from mmgen.models.mim.vit_adapter import ViTConfig, ViTEncoder
from mmgen.pretrained import PretrainedModel
from mmgen.sampling.mim_masks import MaskStrategy, build_mask_strategy


@dataclass
class MaskingConfig:
    """Masking fields (kept apart from the architecture so both MIM configs share them)."""

    mask_ratio: float = 0.75
    masking: Literal["random", "block", "hard"] = "random"
    hard_fraction: float = 0.5


def difficulty_loss(logits: torch.Tensor, patch_loss: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Train the difficulty head to rank patches (hard-patch mining): among each image's masked patches, is this
    patch's loss above their median?

    Args:
        logits: [B, L] difficulty head outputs. patch_loss: [B, L] per-patch training loss (detached here).
        mask: bool [B, L], True = masked (the same count per row).
    Returns:
        scalar binary cross-entropy.
    """
    b = mask.shape[0]
    loss = patch_loss.detach().float()[mask].view(b, -1)
    harder = (loss > loss.median(dim=1, keepdim=True).values).float()
    return F.binary_cross_entropy_with_logits(logits.float()[mask].view(b, -1), harder)


@dataclass
class MIMConfigBase(MaskingConfig, ViTConfig):
    """Encoder architecture + masking: the fields both MIM models start from."""


class MIMModel(PretrainedModel):
    """Base of the MIM models (abstract: no ``model_type``): owns ``encoder`` and ``masking``."""

    def __init__(self, config: MIMConfigBase, *, encoder_mask_token: bool):
        super().__init__(config)
        self.encoder = ViTEncoder(config, mask_token=encoder_mask_token)
        self.masking: MaskStrategy = build_mask_strategy(config.masking, config.mask_ratio,
                                                         hard_fraction=config.hard_fraction)

    @property
    def grid(self) -> tuple[int, int]:
        return self.encoder.grid

    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`InvalidArgumentError` unless ``images`` is a float [B, C, H, W] batch of the right size."""
        c = self.config
        want = (c.in_channels, c.image_size, c.image_size)
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or tuple(images.shape[1:]) != want:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidArgumentError("images", f"a tensor [B, {want[0]}, {want[1]}, {want[2]}] in [-1, 1]", got)
        if not images.is_floating_point():
            raise InvalidArgumentError("images", "floating-point values in [-1, 1]", str(images.dtype))

    def predict_difficulty(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → predicted per-patch difficulty logits [B, L] (needs ``masking='hard'``)."""
        raise NotImplementedError

    def make_mask(self, images: torch.Tensor, *, generator: torch.Generator | None = None,
                  progress: float = 1.0) -> torch.Tensor:
        """A training mask for ``images`` [B, C, H, W] from the configured strategy: bool [B, L], True = masked."""
        scores = None
        if self.masking.needs_scores:
            with torch.no_grad():
                scores = self.predict_difficulty(images)
        return self.masking(images.shape[0], self.grid, generator=generator, device=images.device,
                            scores=scores, progress=progress)

    def check_mask(self, mask: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Validate a user-given mask: bool [B, L] with the same count per row (≥ 1 masked, ≥ 1 visible)."""
        length = self.encoder.num_patches
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (batch_size, length):
            got = (mask.dtype, tuple(mask.shape)) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise InvalidArgumentError("mask", f"a bool tensor [{batch_size}, {length}] (True = masked)", got)
        counts = mask.sum(dim=1)
        if bool((counts != counts[0]).any()) or not 0 < int(counts[0]) < length:
            raise InvalidArgumentError("mask", "the same number (between 1 and L-1) of masked patches per row",
                                       counts.tolist())
        return mask

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → encoder tokens [B, 1+L, D] (no masking)."""
        self.check_images(images)
        return self.encoder.forward_features(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → pooled encoder features [B, D] (what probes and timm see)."""
        self.check_images(images)
        return self.encoder(images)

    def probe_features(self, images: torch.Tensor, last_blocks: int = 1) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → linear-probe features [B, (last_blocks + 1) * D]: cls tokens of the
        last blocks + mean patch token (see :meth:`ViTEncoder.probe_features`)."""
        self.check_images(images)
        return self.encoder.probe_features(images, last_blocks)

    @property
    def num_features(self) -> int:
        return self.config.embed_dim


def difficulty_head(dim: int, enabled: bool) -> nn.Linear | None:
    """The hard-patch-mining head (one logit per patch) when ``enabled``, else None (no unused parameters)."""
    return nn.Linear(dim, 1) if enabled else None


def load_mim_model(path: str | Path, **kwargs: Any) -> MIMModel:
    """Load a MIM model from a model folder or a training run folder (``RUN/model``)."""
    from mmgen.errors import CheckpointError
    from mmgen.registry import load_pretrained

    path = Path(path)
    folder = path / "model" if not (path / "config.json").is_file() and (path / "model").is_dir() else path
    model = load_pretrained(folder, **kwargs)
    if not isinstance(model, MIMModel):
        raise CheckpointError(f"{folder}: a {type(model).__name__}, not a MIM encoder model (MAE or BEiT-style)")
    return model


__all__ = ["MIMConfigBase", "MIMModel", "MaskingConfig", "difficulty_head", "difficulty_loss", "load_mim_model"]
