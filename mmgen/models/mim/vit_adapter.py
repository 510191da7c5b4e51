"""A thin adapter over timm's ViT pieces (``Block``, ``PatchEmbed``, ``LayerNorm``) for the MIM encoders.

:class:`ViTEncoder` holds exactly the parameters of ``timm.models.vision_transformer.VisionTransformer`` (names
``patch_embed.proj``, ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm``) plus an optional ``mask_token``, and
computes the same function, so :mod:`mmgen.interop.timm_export` hands its weights to timm unchanged. What it adds
is what MIM needs: embedding patches apart from running the blocks (so the encoder can run on the visible patches
only), and replacing masked patches by a learned mask token (BEiT-style).

Position embeddings are fixed 2-D sin-cos (MAE), stored as timm's ``pos_embed`` (cls slot zero). Attention always
uses fused ``scaled_dot_product_attention`` (timm's ``fused_attn``), whatever ``TIMM_FUSED_ATTN`` says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from mmgen.errors import ConfigError, InvalidArgumentError

#: Mean and std that map images in [0, 1] to the model's input range [-1, 1] (per channel).
INPUT_MEAN, INPUT_STD = 0.5, 0.5


@dataclass
class ViTConfig:
    """Encoder architecture shared by the MIM models (the fields timm's ``VisionTransformer`` needs)."""

    image_size: int = 28
    patch_size: int = 4
    in_channels: int = 1
    embed_dim: int = 192
    depth: int = 6
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_path: float = 0.0
    global_pool: Literal["avg", "token"] = "avg"


def check_vit_config(config: ViTConfig) -> None:
    """Raise :class:`ConfigError` for an encoder config that cannot be built."""
    for name in ("image_size", "patch_size", "in_channels", "embed_dim", "depth", "num_heads"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{name}: expected a positive integer, got {value!r}")
    if config.image_size % config.patch_size:
        raise ConfigError(f"image_size={config.image_size} is not a multiple of patch_size={config.patch_size}")
    if config.embed_dim % config.num_heads:
        raise ConfigError(f"embed_dim={config.embed_dim} is not a multiple of num_heads={config.num_heads}")
    if config.global_pool not in ("avg", "token"):
        raise ConfigError(f"global_pool: expected 'avg' or 'token', got {config.global_pool!r}")


def sincos_pos_embed(dim: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding (MAE): [1, (1 if cls_token) + h*w, dim], the cls slot zero."""
    if dim % 4:
        raise ConfigError(f"embed_dim={dim} must be a multiple of 4 for 2-D sin-cos position embeddings")
    h, w = grid
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    parts = [torch.outer(coord.flatten(), omega) for coord in (xs, ys)]
    emb = torch.cat([torch.cat([p.sin(), p.cos()], dim=1) for p in parts], dim=1).float()
    if cls_token:
        emb = torch.cat([torch.zeros(1, dim), emb])
    return emb.unsqueeze(0)


def vit_blocks(dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
               drop_path: float = 0.0) -> nn.Sequential:
    """``depth`` timm ViT ``Block``s (pre-norm, timm's LayerNorm eps 1e-6), fused SDPA attention forced on."""
    from timm.models.vision_transformer import Block

    rates = torch.linspace(0, drop_path, depth).tolist() if depth > 1 else [drop_path] * depth
    blocks = nn.Sequential(*[Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=rate)
                             for rate in rates])
    for block in blocks:
        block.attn.fused_attn = True
    return blocks


def init_mae_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears (and patch projection), zero biases, unit LayerNorms."""
    for sub in module.modules():
        if isinstance(sub, nn.Linear):
            nn.init.xavier_uniform_(sub.weight)
            if sub.bias is not None:
                nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.LayerNorm):
            nn.init.ones_(sub.weight)
            nn.init.zeros_(sub.bias)
        elif isinstance(sub, nn.Conv2d):
            nn.init.xavier_uniform_(sub.weight.view(sub.weight.shape[0], -1))


class ViTEncoder(nn.Module):
    """timm-compatible ViT encoder; ``forward(images) -> [B, D]`` equals timm's ``forward`` with ``num_classes=0``.

    Args:
        config: the architecture.
        mask_token: add a learned ``mask_token`` [1, 1, D] that replaces masked patch embeddings (BEiT-style).
    """

    def __init__(self, config: ViTConfig, *, mask_token: bool = False):
        super().__init__()
        from timm.layers import LayerNorm, PatchEmbed

        check_vit_config(config)
        self.config = config
        self.patch_embed = PatchEmbed(config.image_size, config.patch_size, config.in_channels, config.embed_dim)
        self.grid: tuple[int, int] = tuple(self.patch_embed.grid_size)  # type: ignore[assignment]
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(config.embed_dim, self.grid), requires_grad=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim)) if mask_token else None
        self.blocks = vit_blocks(config.embed_dim, config.depth, config.num_heads, config.mlp_ratio,
                                 config.qkv_bias, config.drop_path)
        self.norm = LayerNorm(config.embed_dim)
        init_mae_weights(self)
        nn.init.normal_(self.cls_token, std=0.02)
        if self.mask_token is not None:
            nn.init.normal_(self.mask_token, std=0.02)

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def patch_tokens(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """images: [B, C, H, W] → patch embeddings + positions [B, L, D]; masked ones (``mask`` [B, L] True)
        replaced by ``mask_token`` first (needs ``mask_token=True``)."""
        x = self.patch_embed(images)
        if mask is not None:
            if self.mask_token is None:
                raise ConfigError("this encoder has no mask token (built with mask_token=False)")
            x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        return x + self.pos_embed[:, 1:]

    def forward_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, N, D] (any subset of patch tokens, positions added) → prepend cls, blocks, norm → [B, 1+N, D]."""
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        return self.norm(self.blocks(torch.cat([cls.to(tokens.dtype), tokens], dim=1)))

    def forward_features(self, images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → normed tokens [B, 1+L, D] (timm's ``forward_features``)."""
        return self.forward_tokens(self.patch_tokens(images, mask))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, 1+L, D] → [B, D]: the cls token (``token``) or the mean of patch tokens (``avg``)."""
        return tokens[:, 0] if self.config.global_pool == "token" else tokens[:, 1:].mean(dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → pooled features [B, D]."""
        return self.pool(self.forward_features(images))

    def probe_features(self, images: torch.Tensor, last_blocks: int = 1) -> torch.Tensor:
        """Linear-evaluation features (DINO's recipe): the cls token of each of the last ``last_blocks`` blocks
        (each through the final norm), then the mean of the final patch tokens → [B, (last_blocks + 1) * D].

        With ``last_blocks=1`` this is ``cat(t[:, 0], t[:, 1:].mean(1))`` of ``t = forward_features(images)``
        (timm: the same on ``model.forward_features``; more blocks: ``model.forward_intermediates(x, indices=n,
        norm=True, output_fmt="NLC", return_prefix_tokens=True, intermediates_only=True)``).
        """
        depth = len(self.blocks)
        if isinstance(last_blocks, bool) or not isinstance(last_blocks, int) or not 1 <= last_blocks <= depth:
            raise InvalidArgumentError("last_blocks", f"an integer in [1, {depth}] (the encoder depth)", last_blocks)
        x = self.patch_tokens(images)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        x = torch.cat([cls.to(x.dtype), x], dim=1)
        taken = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index >= len(self.blocks) - last_blocks:
                taken.append(self.norm(x))
        return torch.cat([t[:, 0] for t in taken] + [taken[-1][:, 1:].mean(dim=1)], dim=-1)

    def timm_state_dict(self) -> dict[str, torch.Tensor]:
        """Weights under timm ``VisionTransformer`` names (the mask token, which timm lacks, left out)."""
        return {k: v for k, v in self.state_dict().items() if k != "mask_token"}

    def timm_model_args(self) -> dict[str, Any]:
        """Keyword arguments that make timm's ``VisionTransformer`` this encoder (``num_classes=0``)."""
        c = self.config
        return dict(img_size=c.image_size, patch_size=c.patch_size, in_chans=c.in_channels, embed_dim=c.embed_dim,
                    depth=c.depth, num_heads=c.num_heads, mlp_ratio=c.mlp_ratio, qkv_bias=c.qkv_bias,
                    class_token=True, global_pool=c.global_pool, fc_norm=False, num_classes=0)


__all__ = ["INPUT_MEAN", "INPUT_STD", "ViTConfig", "ViTEncoder", "check_vit_config", "init_mae_weights",
           "sincos_pos_embed", "vit_blocks"]
