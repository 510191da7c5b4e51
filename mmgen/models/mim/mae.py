"""Masked autoencoder (MAE, He et al. 2022): the encoder sees only the visible patches; a light decoder with mask
tokens reconstructs the (per-patch normalized) pixels of the masked ones.

Method names follow the paper's reference code: :meth:`MaskedAutoencoder.patchify`, :meth:`~.unpatchify`,
:meth:`~.forward_encoder`, :meth:`~.forward_decoder`, :meth:`~.forward_loss`. ``encoder_sees="all"`` is the
ablation where the encoder runs on every token (masked ones replaced by a mask token, SimMIM-style); it exists to
measure what encoding only the visible patches saves (``benchmarks/mae.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mmgen.errors import ConfigError
from mmgen.models.mim.common import MIMConfigBase, MIMModel, difficulty_head, difficulty_loss
from mmgen.models.mim.vit_adapter import init_mae_weights, sincos_pos_embed, vit_blocks
from mmgen.registry import register_config
from mmgen.sampling.mim_masks import visible_indices


@dataclass
class MAEConfig(MIMConfigBase):
    """Encoder (ViT), masking, and the light decoder."""

    decoder_dim: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    norm_pix_loss: bool = True
    encoder_sees: Literal["visible", "all"] = "visible"


@dataclass
class MAEOutput:
    """``MaskedAutoencoder.forward`` result.

    Attributes:
        loss: scalar (reconstruction MSE on masked patches, + the difficulty head's loss when masking is ``hard``).
        pred: [B, L, p*p*C] predicted (normalized when ``norm_pix_loss``) pixels of every patch.
        mask: bool [B, L], True = masked.
        patch_loss: [B, L] per-patch MSE (detached).
        recon_loss: scalar reconstruction MSE alone.
    """

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor
    patch_loss: torch.Tensor
    recon_loss: torch.Tensor


class MaskedAutoencoder(MIMModel):
    """MAE with a timm-compatible ViT encoder (``self.encoder``) and a small ViT decoder."""

    config_class = MAEConfig
    model_type = "mae"

    def __init__(self, config: MAEConfig):
        if config.encoder_sees not in ("visible", "all"):
            raise ConfigError(f"encoder_sees: expected 'visible' or 'all', got {config.encoder_sees!r}")
        super().__init__(config, encoder_mask_token=config.encoder_sees == "all")
        p, c = config.patch_size, config.in_channels
        self.decoder_embed = nn.Linear(config.embed_dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim)) \
            if config.encoder_sees == "visible" else None
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(config.decoder_dim, self.grid), requires_grad=False)
        self.decoder_blocks = vit_blocks(config.decoder_dim, config.decoder_depth, config.decoder_heads,
                                         config.mlp_ratio)
        self.decoder_norm = nn.LayerNorm(config.decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(config.decoder_dim, p * p * c)
        self.difficulty = difficulty_head(config.decoder_dim, config.masking == "hard")
        for module in (self.decoder_embed, self.decoder_blocks, self.decoder_norm, self.decoder_pred):
            init_mae_weights(module)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    # -------------------------------------------------------------------------------------------- patches
    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → patches [B, L, p*p*C] (row-major grid; inside a patch (py, px, c))."""
        p, (h, w) = self.config.patch_size, self.grid
        b, c = images.shape[:2]
        x = images.reshape(b, c, h, p, w, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(b, h * w, p * p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """patches: [B, L, p*p*C] → images [B, C, H, W] (inverse of :meth:`patchify`)."""
        p, (h, w), c = self.config.patch_size, self.grid, self.config.in_channels
        x = patches.reshape(patches.shape[0], h, w, p, p, c)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(patches.shape[0], c, h * p, w * p)

    # ------------------------------------------------------------------------------------------- forward
    def forward_encoder(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images: [B, C, H, W], mask: bool [B, L] → (latent [B, 1+V, D], ids_restore [B, L]).

        The encoder sees the ``V`` visible patches only (or all ``L``, masked ones as mask tokens, when
        ``encoder_sees="all"``; then ``V = L``).
        """
        ids_keep, ids_restore = visible_indices(mask)
        if self.encoder.mask_token is not None:
            return self.encoder.forward_features(images, mask), ids_restore
        tokens = self.encoder.patch_tokens(images)
        visible = tokens.gather(1, ids_keep.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        return self.encoder.forward_tokens(visible), ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latent: [B, 1+V, D], ids_restore: [B, L] → (pred [B, L, p*p*C], decoder states [B, L, Dd])."""
        x = self.decoder_embed(latent)
        if self.mask_token is not None:  # fill the masked slots with mask tokens, back in grid order
            b, length = ids_restore.shape
            fill = self.mask_token.to(x.dtype).expand(b, length + 1 - x.shape[1], -1)
            patches = torch.cat([x[:, 1:], fill], dim=1)
            patches = patches.gather(1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
            x = torch.cat([x[:, :1], patches], dim=1)
        x = self.decoder_norm(self.decoder_blocks(x + self.decoder_pos_embed.to(x.dtype)))[:, 1:]
        return self.decoder_pred(x), x

    def target_patches(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → reconstruction targets [B, L, p*p*C] (per-patch normalized if configured)."""
        target = self.patchify(images.float())
        if self.config.norm_pix_loss:
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        return target

    def forward_loss(self, images: torch.Tensor, pred: torch.Tensor,
                     mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """→ (mean MSE over masked patches (scalar), per-patch MSE [B, L])."""
        patch_loss = (pred.float() - self.target_patches(images)).pow(2).mean(dim=-1)
        return (patch_loss * mask).sum() / mask.sum(), patch_loss

    def forward(self, images: torch.Tensor, mask: torch.Tensor | None = None, *,
                generator: torch.Generator | None = None, progress: float = 1.0) -> MAEOutput:
        """images: [B, C, H, W] in [-1, 1]; mask: optional bool [B, L] (True = masked; default: the configured
        strategy, drawn from ``generator``); progress: training progress in [0, 1] (hard-patch ramp)."""
        self.check_images(images)
        if mask is None:
            mask = self.make_mask(images, generator=generator, progress=progress)
        else:
            mask = self.check_mask(mask, images.shape[0])
        latent, ids_restore = self.forward_encoder(images, mask)
        pred, states = self.forward_decoder(latent, ids_restore)
        recon, patch_loss = self.forward_loss(images, pred, mask)
        loss = recon
        if self.difficulty is not None:
            loss = loss + difficulty_loss(self.difficulty(states).squeeze(-1), patch_loss, mask)
        return MAEOutput(loss, pred, mask, patch_loss.detach(), recon.detach())

    def predict_difficulty(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → difficulty logits [B, L] from the full (unmasked) image."""
        if self.difficulty is None:
            raise ConfigError("predict_difficulty needs masking='hard' (the difficulty head)")
        b, length = images.shape[0], self.encoder.num_patches
        none = torch.zeros(b, length, dtype=torch.bool, device=images.device)
        latent = self.encoder.forward_features(images)
        _, ids_restore = visible_indices(none)
        return self.difficulty(self.forward_decoder(latent, ids_restore)[1]).squeeze(-1)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W], mask: bool [B, L] → images [B, C, H, W]: visible patches kept, masked ones
        predicted (de-normalized with the true patch statistics when ``norm_pix_loss``, as in MAE's figures)."""
        out = self(images, mask)
        patches = self.patchify(images.float())
        pred = out.pred.float()
        if self.config.norm_pix_loss:
            pred = pred * (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt() + patches.mean(dim=-1, keepdim=True)
        mixed = torch.where(mask.unsqueeze(-1), pred, patches)
        return self.unpatchify(mixed).clamp(-1, 1)


# MNIST recipe (CPU, 1 thread): a 4-block, 128-wide encoder and a 2-block, 64-wide decoder make a batch-256 step
# ~0.9 CPU-s, so 20 CPU-minutes are ~1300 steps (~74 epochs of 4500 digits). Raw-pixel targets suit MNIST better
# than per-patch normalized ones (mostly blank patches). With steps=1300 batch_size=256 lr=1.5e-3 warmup_steps=60
# betas=[0.9,0.95] (~19 CPU-minutes) the encoder probes 95.4% linear on the 500 held-out digits (cls + mean patch
# token; random init 86.4%, raw pixels 90.2%): assets/mae-mnist, the command in assets/README.md. The 192x6
# encoder reached far less in the same budget (fewer epochs).
_MNIST = dict(image_size=28, patch_size=4, in_channels=1, embed_dim=128, depth=4, num_heads=4, decoder_dim=64,
              decoder_depth=2, decoder_heads=4, mask_ratio=0.75, masking="random", norm_pix_loss=False)
register_config("vit-tiny-mnist", MaskedAutoencoder.model_type, _MNIST)
register_config("mae-tiny-test", MaskedAutoencoder.model_type,
                {**_MNIST, "embed_dim": 32, "depth": 2, "num_heads": 2, "decoder_dim": 32, "decoder_depth": 1,
                 "decoder_heads": 2})

__all__ = ["MAEConfig", "MAEOutput", "MaskedAutoencoder"]
