"""BEiT-style masked image modeling: predict an image tokenizer's VQ tokens at masked patches.

The encoder sees every patch, masked ones replaced by a learned mask token; a linear head over the final tokens
predicts the token id (``codebook_size`` classes) that the frozen tokenizer gives each masked patch. The patch grid
must equal the tokenizer's token grid (e.g. 28 px, patch 4 and a 4x-downsampling tokenizer: 7x7). Targets come
from the caller (``mmgen.training.tasks.mim`` runs the tokenizer), so this model never imports a tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError
from mmgen.models.mim.common import MIMConfigBase, MIMModel, difficulty_head, difficulty_loss
from mmgen.models.mim.vit_adapter import init_mae_weights
from mmgen.registry import register_config


@dataclass
class BEiTConfig(MIMConfigBase):
    """Encoder, masking (block-wise by default, as BEiT) and the token head."""

    codebook_size: int = 512
    mask_ratio: float = 0.4
    masking: Literal["random", "block", "hard"] = "block"


@dataclass
class BEiTOutput:
    """``MaskedImageModel.forward`` result.

    Attributes:
        loss: scalar cross-entropy on masked patches (+ the difficulty head's loss when masking is ``hard``).
        logits: [B, M, K] token logits at the masked patches (grid order within each row).
        mask: bool [B, L], True = masked.
        accuracy: scalar top-1 token accuracy on masked patches (detached).
    """

    loss: torch.Tensor
    logits: torch.Tensor
    mask: torch.Tensor
    accuracy: torch.Tensor


class MaskedImageModel(MIMModel):
    """BEiT-style pretraining model: timm-compatible ViT encoder + linear token head."""

    config_class = BEiTConfig
    model_type = "beit_vq"

    def __init__(self, config: BEiTConfig):
        super().__init__(config, encoder_mask_token=True)
        if isinstance(config.codebook_size, bool) or not isinstance(config.codebook_size, int) \
                or config.codebook_size < 2:
            raise InvalidArgumentError("codebook_size", "an integer >= 2", config.codebook_size)
        self.lm_head = nn.Linear(config.embed_dim, config.codebook_size)
        self.difficulty = difficulty_head(config.embed_dim, config.masking == "hard")
        init_mae_weights(self.lm_head)

    def check_targets(self, targets: torch.Tensor, batch_size: int) -> torch.Tensor:
        """targets: token ids [B, h, w] or [B, L] on the patch grid → [B, L] int64."""
        h, w = self.grid
        if not isinstance(targets, torch.Tensor) or targets.is_floating_point() or targets.shape[0] != batch_size \
                or targets[0].numel() != h * w:
            got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise InvalidArgumentError("targets", f"token ids [{batch_size}, {h}, {w}] matching the patch grid "
                                       "(tokenizer grid = image_size / patch_size)", got)
        targets = targets.reshape(batch_size, h * w).long()
        if bool((targets < 0).any()) or bool((targets >= self.config.codebook_size).any()):
            raise InvalidArgumentError("targets", f"ids in [0, {self.config.codebook_size})",
                                       (int(targets.min()), int(targets.max())))
        return targets

    def forward(self, images: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None, progress: float = 1.0) -> BEiTOutput:
        """images: [B, C, H, W] in [-1, 1]; targets: token ids [B, h, w]; mask: optional bool [B, L]
        (default: the configured strategy); progress in [0, 1] (hard-patch ramp)."""
        self.check_images(images)
        b = images.shape[0]
        targets = self.check_targets(targets, b)
        mask = self.make_mask(images, generator=generator, progress=progress) if mask is None \
            else self.check_mask(mask, b)
        tokens = self.encoder.forward_features(images, mask)[:, 1:]
        logits = self.lm_head(tokens[mask]).view(b, -1, self.config.codebook_size)
        chosen = targets[mask].view(b, -1)
        patch_loss = F.cross_entropy(logits.float().transpose(1, 2), chosen, reduction="none")
        loss = patch_loss.mean()
        if self.difficulty is not None:
            full = torch.zeros(b, mask.shape[1], device=patch_loss.device)
            full[mask] = patch_loss.detach().flatten()
            loss = loss + difficulty_loss(self.difficulty(tokens).squeeze(-1), full, mask)
        accuracy = (logits.argmax(-1) == chosen).float().mean().detach()
        return BEiTOutput(loss, logits, mask, accuracy)

    def predict_difficulty(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → difficulty logits [B, L] from the unmasked image."""
        if self.difficulty is None:
            raise InvalidArgumentError("masking", "'hard' for predict_difficulty", self.config.masking)
        return self.difficulty(self.encoder.forward_features(images)[:, 1:]).squeeze(-1)

    @torch.no_grad()
    def predict_tokens(self, images: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """→ token grid [B, h, w]: ``targets`` at visible patches, the model's argmax at masked ones."""
        b = images.shape[0]
        out = self(images, targets, mask)
        tokens = self.check_targets(targets, b).clone()
        tokens[mask] = out.logits.argmax(-1).flatten()
        return tokens.view(b, *self.grid)


register_config("beit-tiny-mnist", MaskedImageModel.model_type,
                dict(image_size=28, patch_size=4, in_channels=1, embed_dim=192, depth=6, num_heads=3,
                     codebook_size=512, mask_ratio=0.4, masking="block"))
register_config("beit-tiny-test", MaskedImageModel.model_type,
                dict(image_size=28, patch_size=4, in_channels=1, embed_dim=32, depth=2, num_heads=2,
                     codebook_size=16, mask_ratio=0.4, masking="block"))

__all__ = ["BEiTConfig", "BEiTOutput", "MaskedImageModel"]
