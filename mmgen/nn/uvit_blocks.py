"""Layers of the U-ViT token model (aMUSEd's ``UVit2DModel`` architecture), on mmgen's one attention.

Feature maps stay channels-last (``[B, H, W, C]``) through the conv stages so norms and linears act on the last
dim; convolutions see a permuted view (channels_last memory format, no copies).

* :class:`ConvNextBlock`: depthwise 3x3 conv, RMSNorm, GELU MLP with global response norm, residual, then a
  FiLM modulation ``x * (1 + scale) + shift`` from the conditioning vector.
* :class:`ContextBlock`: two pre-norm cross-attentions to the text context (aMUSEd's "SkipFF" block: no
  self-attention, no MLP), the context optionally mapped to the block width by ``SiLU → Linear``.
* :class:`UVitStage`: optional down/up-sampling around ``num_res_blocks`` (ConvNext, ContextBlock) pairs.
* :class:`UVitLayer`: transformer layer: self-attention, cross-attention, GEGLU MLP, each pre-normed by a
  conditioning-modulated norm (:class:`ModulatedNorm`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgen.nn.attention import Attention
from mmgen.nn.norms import RMSNorm, modulate

KV = tuple[Tensor, Tensor]


def make_attention(dim: int, num_heads: int, *, context_dim: int | None, bias: bool, dropout: float = 0.0) -> Attention:
    """mmgen's :class:`Attention` with or without biases on every projection (aMUSEd uses none); ``dropout``
    acts on the output projection."""
    attn = Attention(dim, num_heads, context_dim=context_dim, qkv_bias=bias, proj_drop=dropout)
    if not bias:
        attn.proj = nn.Linear(dim, dim, bias=False)
    return attn


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN on channels-last ``x [B, H, W, C]``: ``γ · (x · n) + β + x``, n = L2 over space / mean."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: Tensor) -> Tensor:
        spatial = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True)
        scaled = spatial / (spatial.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * scaled) + self.beta + x


class ConvNextBlock(nn.Module):
    """``x [B, H, W, C], cond [B, Dc] -> [B, H, W, C]``."""

    def __init__(self, channels: int, cond_dim: int, *, eps: float, affine: bool, bias: bool, dropout: float,
                 expansion: int = 4) -> None:
        super().__init__()
        hidden = channels * expansion
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=bias)
        self.norm = RMSNorm(channels, eps=eps, elementwise_affine=affine)
        self.channelwise_linear_1 = nn.Linear(channels, hidden, bias=bias)
        self.channelwise_norm = GlobalResponseNorm(hidden)
        self.channelwise_linear_2 = nn.Linear(hidden, channels, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.cond_embeds_mapper = nn.Linear(cond_dim, 2 * channels, bias=bias)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        h = self.depthwise(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        h = self.channelwise_linear_1(self.norm(h))
        h = self.channelwise_linear_2(self.channelwise_norm(F.gelu(h)))
        x = x + self.dropout(h)
        scale, shift = self.cond_embeds_mapper(F.silu(cond)).chunk(2, dim=-1)
        return modulate(x, scale[:, None, None], shift[:, None, None])


class ContextBlock(nn.Module):
    """Two pre-norm cross-attention branches to ``context``: ``x [B, L, C] -> [B, L, C]``."""

    def __init__(self, channels: int, num_heads: int, context_dim: int, *, bias: bool, dropout: float) -> None:
        super().__init__()
        self.kv_mapper = nn.Linear(context_dim, channels, bias=bias) if context_dim != channels else None
        self.norm1 = RMSNorm(channels, eps=1e-6)
        self.attn1 = make_attention(channels, num_heads, context_dim=channels, bias=bias, dropout=dropout)
        self.norm2 = RMSNorm(channels, eps=1e-6)
        self.attn2 = make_attention(channels, num_heads, context_dim=channels, bias=bias, dropout=dropout)

    def project_context(self, context: Tensor) -> list[KV]:
        """Keys/values of both attentions for ``context [B, Lc, context_dim]``."""
        if self.kv_mapper is not None:
            context = self.kv_mapper(F.silu(context))
        return [self.attn1.project_context(context), self.attn2.project_context(context)]

    def forward(self, x: Tensor, context_kv: list[KV], context_mask: Tensor | None) -> Tensor:
        x = x + self.attn1(self.norm1(x), context_kv=context_kv[0], key_padding_mask=context_mask)
        return x + self.attn2(self.norm2(x), context_kv=context_kv[1], key_padding_mask=context_mask)


class Resample(nn.Module):
    """RMSNorm then a 2x2 stride-2 conv (``"down"``) or transposed conv (``"up"``), channels-last in and out."""

    def __init__(self, channels: int, kind: Literal["down", "up"], *, eps: float, affine: bool, bias: bool) -> None:
        super().__init__()
        self.kind = kind
        self.norm = RMSNorm(channels, eps=eps, elementwise_affine=affine)
        conv_class = nn.Conv2d if kind == "down" else nn.ConvTranspose2d
        self.conv = conv_class(channels, channels, kernel_size=2, stride=2, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x).permute(0, 3, 1, 2)
        if self.kind == "down":  # bottom/right zero row and column: odd sizes round up
            h = F.pad(h, (0, 1, 0, 1))
        return self.conv(h).permute(0, 2, 3, 1)


class UVitStage(nn.Module):
    """The conv stage before (``down``) or after (``up``) the transformer: ``x [B, H, W, C] -> [B, H', W', C]``."""

    def __init__(self, channels: int, num_blocks: int, cond_dim: int, num_heads: int, *, resample: str | None,
                 eps: float, affine: bool, bias: bool, dropout: float, attention_dropout: float) -> None:
        super().__init__()
        norm_args = dict(eps=eps, affine=affine, bias=bias)
        self.downsample = Resample(channels, "down", **norm_args) if resample == "down" else None
        self.res_blocks = nn.ModuleList(ConvNextBlock(channels, cond_dim, dropout=dropout, **norm_args)
                                        for _ in range(num_blocks))
        self.attention_blocks = nn.ModuleList(
            ContextBlock(channels, num_heads, cond_dim, bias=bias, dropout=attention_dropout)
            for _ in range(num_blocks))
        self.upsample = Resample(channels, "up", **norm_args) if resample == "up" else None

    def project_context(self, context: Tensor) -> list[KV]:
        return [kv for block in self.attention_blocks for kv in block.project_context(context)]

    def forward(self, x: Tensor, cond: Tensor, context_kv: list[KV], context_mask: Tensor | None) -> Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        for index, (res_block, attention_block) in enumerate(zip(self.res_blocks, self.attention_blocks)):
            x = res_block(x, cond)
            b, h, w, c = x.shape
            x = attention_block(x.reshape(b, h * w, c), context_kv[2 * index: 2 * index + 2], context_mask)
            x = x.reshape(b, h, w, c)
        if self.upsample is not None:
            x = self.upsample(x)
        return x


class ModulatedNorm(nn.Module):
    """``norm(x) * (1 + scale) + shift`` with ``(scale, shift) = Linear(SiLU(cond))``; x ``[B, L, D]``, cond
    ``[B, Dc]``. ``kind`` picks RMSNorm or LayerNorm (with a bias only when ``bias``)."""

    def __init__(self, dim: int, cond_dim: int, kind: Literal["rms", "layer"], *, eps: float, affine: bool,
                 bias: bool) -> None:
        super().__init__()
        self.linear = nn.Linear(cond_dim, 2 * dim, bias=bias)
        self.norm = (RMSNorm(dim, eps=eps, elementwise_affine=affine) if kind == "rms"
                     else nn.LayerNorm(dim, eps=eps, elementwise_affine=affine, bias=bias))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        scale, shift = self.linear(F.silu(cond)).chunk(2, dim=-1)
        return modulate(self.norm(x), scale[:, None], shift[:, None])


class GEGLU(nn.Module):
    """``[..., dim] -> [..., dim]``: ``proj`` to 2·hidden, ``a · GELU(gate)``, ``out`` back to dim."""

    def __init__(self, dim: int, hidden: int, *, bias: bool, dropout: float) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * hidden, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return self.out(self.dropout(value * F.gelu(gate)))


class UVitLayer(nn.Module):
    """Transformer layer on ``x [B, L, D]`` with conditioning vector ``cond [B, D]`` and text keys/values."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, *, eps: float, affine: bool, bias: bool,
                 dropout: float) -> None:
        super().__init__()
        norm_args = dict(eps=eps, affine=affine, bias=bias)
        self.norm1 = ModulatedNorm(dim, dim, "rms", **norm_args)
        self.attn1 = make_attention(dim, num_heads, context_dim=None, bias=bias, dropout=dropout)
        self.norm2 = ModulatedNorm(dim, dim, "rms", **norm_args)
        self.attn2 = make_attention(dim, num_heads, context_dim=dim, bias=bias, dropout=dropout)
        self.norm3 = ModulatedNorm(dim, dim, "layer", **norm_args)
        self.ff = GEGLU(dim, mlp_dim, bias=bias, dropout=dropout)

    def forward(self, x: Tensor, cond: Tensor, context_kv: KV, context_mask: Tensor | None) -> Tensor:
        x = x + self.attn1(self.norm1(x, cond))
        x = x + self.attn2(self.norm2(x, cond), context_kv=context_kv, key_padding_mask=context_mask)
        return x + self.ff(self.norm3(x, cond))
