"""U-ViT masked-token transformer for text-to-image (the aMUSEd / ``UVit2DModel`` architecture), native in mmgen.

::

    tokens [B, h, w] ─► embedding + RMSNorm + linear ─► down stage (ConvNeXt + text cross-attention blocks)
        ─► RMSNorm + linear to width D ─► depth x UVitLayer (self-attn, text cross-attn, GEGLU; norms modulated
        by the conditioning vector) ─► RMSNorm + linear back ─► up stage ─► linear + RMSNorm + linear ─► logits

The conditioning vector is ``MLP([pooled text embedding, sinusoidal micro-conditions])`` (micro-conditions are
aMUSEd's ``[width, height, crop top, crop left, aesthetic score]``); the text token states are projected to width
D and attended to by every stage block and layer. :meth:`UVitTransformer.project_context` computes all their
keys/values once per prompt. The model returns logits and has no decoding loop (see :mod:`mmgen.sampling`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError
from mmgen.nn.norms import RMSNorm
from mmgen.nn.uvit_blocks import KV, UVitLayer, UVitStage
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config


@dataclass
class UVitConfig:
    """Architecture of a :class:`UVitTransformer` (diffusers ``UVit2DModel`` names in brackets).

    ``vocab_size`` rows of token embeddings cover the ``codebook_size`` real ids and the mask id (``mask_id``,
    default ``vocab_size - 1``). ``grid`` is the token grid the model was trained on.
    """

    codebook_size: int = 8192
    vocab_size: int = 8256
    mask_id: int | None = None
    grid: tuple[int, int] = (16, 16)
    dim: int = 1024  # [hidden_size]
    depth: int = 22  # [num_hidden_layers]
    num_heads: int = 16  # [num_attention_heads]
    mlp_dim: int = 2816  # [intermediate_size]
    embed_dim: int = 768  # [in_channels]
    conv_dim: int = 768  # [block_out_channels]
    num_res_blocks: int = 3
    block_num_heads: int = 12
    downsample: bool = False
    upsample: bool = False
    context_dim: int = 768  # [encoder_hidden_size]
    pooled_dim: int = 768  # [cond_embed_dim]
    micro_cond_encode_dim: int = 256
    micro_cond_embed_dim: int = 1280
    default_micro_conds: tuple[float, ...] = (256.0, 256.0, 0.0, 0.0, 6.0)
    use_bias: bool = False
    norm_eps: float = 1e-6  # [layer_norm_eps]
    norm_affine: bool = True  # [ln_elementwise_affine]
    dropout: float = 0.0  # [hidden_dropout]
    attention_dropout: float = 0.0

    def __post_init__(self) -> None:
        for name, width, heads in (("dim", self.dim, self.num_heads), ("conv_dim", self.conv_dim,
                                                                      self.block_num_heads)):
            if width % heads:
                raise InvalidArgumentError(name, f"a multiple of its head count {heads}", width)
        if self.micro_cond_embed_dim % self.micro_cond_encode_dim:
            raise InvalidArgumentError("micro_cond_embed_dim", f"a multiple of micro_cond_encode_dim="
                                       f"{self.micro_cond_encode_dim}", self.micro_cond_embed_dim)
        if len(self.default_micro_conds) != self.num_micro_conds:
            raise InvalidArgumentError("default_micro_conds", f"{self.num_micro_conds} numbers",
                                       list(self.default_micro_conds))
        if self.vocab_size <= self.codebook_size or not 0 <= self.resolved_mask_id < self.vocab_size:
            raise InvalidArgumentError("mask_id", f"an id in [codebook_size, vocab_size) = [{self.codebook_size}, "
                                       f"{self.vocab_size})", self.resolved_mask_id)

    @property
    def num_micro_conds(self) -> int:
        return self.micro_cond_embed_dim // self.micro_cond_encode_dim

    @property
    def resolved_mask_id(self) -> int:
        return self.vocab_size - 1 if self.mask_id is None else self.mask_id


def sinusoidal_embedding(values: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """``values [N] -> [N, dim]``: ``[cos(v·f_i), sin(v·f_i)]`` with ``f_i = max_period^(-i/(dim/2))`` (fp32)."""
    half = dim // 2
    freqs = torch.exp(torch.arange(half, dtype=torch.float32, device=values.device) * (-math.log(max_period) / half))
    angles = values.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class TokenEmbedding(nn.Module):
    """``tokens [B, h, w] -> [B, h, w, conv_dim]``: embedding, RMSNorm, linear (aMUSEd's 1x1 conv)."""

    def __init__(self, c: UVitConfig) -> None:
        super().__init__()
        self.embeddings = nn.Embedding(c.vocab_size, c.embed_dim)
        self.norm = RMSNorm(c.embed_dim, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.proj = nn.Linear(c.embed_dim, c.conv_dim, bias=c.use_bias)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(self.norm(self.embeddings(tokens)))


class LogitsHead(nn.Module):
    """``[B, h, w, conv_dim] -> [B, h, w, codebook_size]``: linear, RMSNorm, linear (aMUSEd's MLM layer)."""

    def __init__(self, c: UVitConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(c.conv_dim, c.embed_dim, bias=c.use_bias)
        self.norm = RMSNorm(c.embed_dim, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.out = nn.Linear(c.embed_dim, c.codebook_size, bias=c.use_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.norm(self.proj(x)))


class CondEmbedding(nn.Module):
    """``[B, pooled_dim + micro_cond_embed_dim] -> [B, dim]``: linear, SiLU, linear."""

    def __init__(self, c: UVitConfig) -> None:
        super().__init__()
        self.linear_1 = nn.Linear(c.pooled_dim + c.micro_cond_embed_dim, c.dim, bias=c.use_bias)
        self.linear_2 = nn.Linear(c.dim, c.dim, bias=c.use_bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_2(nn.functional.silu(self.linear_1(x)))


class UVitTransformer(PretrainedModel):
    """``forward(tokens [B, h, w], context=[B, Lc, context_dim], pooled=[B, pooled_dim]) -> logits
    [B, h*w, codebook_size]`` (row-major positions)."""

    config_class = UVitConfig
    model_type = "uvit"

    def __init__(self, config: UVitConfig):
        super().__init__(config)
        c = config
        norm = dict(eps=c.norm_eps, affine=c.norm_affine, bias=c.use_bias)
        stage = dict(dropout=c.dropout, attention_dropout=c.attention_dropout, **norm)
        self.context_proj = nn.Linear(c.context_dim, c.dim, bias=c.use_bias)
        self.context_norm = RMSNorm(c.dim, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.cond_embed = CondEmbedding(c)
        self.embed = TokenEmbedding(c)
        self.down = UVitStage(c.conv_dim, c.num_res_blocks, c.dim, c.block_num_heads,
                              resample="down" if c.downsample else None, **stage)
        self.to_hidden_norm = RMSNorm(c.conv_dim, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.to_hidden = nn.Linear(c.conv_dim, c.dim, bias=c.use_bias)
        self.layers = nn.ModuleList(UVitLayer(c.dim, c.num_heads, c.mlp_dim, dropout=c.dropout, **norm)
                                    for _ in range(c.depth))
        self.from_hidden_norm = RMSNorm(c.dim, eps=c.norm_eps, elementwise_affine=c.norm_affine)
        self.from_hidden = nn.Linear(c.dim, c.conv_dim, bias=c.use_bias)
        self.up = UVitStage(c.conv_dim, c.num_res_blocks, c.dim, c.block_num_heads,
                            resample="up" if c.upsample else None, **stage)
        self.head = LogitsHead(c)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    # ----------------------------------------------------------------------------------------------- interface
    @property
    def mask_id(self) -> int:
        return self.config.resolved_mask_id

    @property
    def num_context_kv(self) -> int:
        """How many (k, v) pairs :meth:`project_context` returns (2 per stage block, 1 per layer)."""
        return 4 * self.config.num_res_blocks + self.config.depth

    def project_context(self, context: Tensor) -> list[KV]:
        """Keys/values of every cross-attention for text states ``context [B, Lc, context_dim]``, in the order
        down-stage blocks, layers, up-stage blocks; pass as ``context_kv`` at every sampling step."""
        hidden = self.context_norm(self.context_proj(context))
        layers = [layer.attn2.project_context(hidden) for layer in self.layers]
        return self.down.project_context(hidden) + layers + self.up.project_context(hidden)

    def micro_cond_tensor(self, micro_conds: Tensor | Sequence[float] | None, batch: int,
                          device: torch.device) -> Tensor:
        """``[B, K]`` micro-conditions from a tensor ``[B, K]`` / ``[K]``, a list of K numbers or None (defaults)."""
        values = self.config.default_micro_conds if micro_conds is None else micro_conds
        out = torch.as_tensor(values, dtype=torch.float32, device=device)
        if out.ndim == 1:
            out = out.expand(batch, -1)
        if out.shape != (batch, self.config.num_micro_conds):
            raise InvalidArgumentError("micro_conds", f"{self.config.num_micro_conds} numbers (or a [{batch}, "
                                       f"{self.config.num_micro_conds}] tensor)", tuple(out.shape))
        return out

    def condition_vector(self, pooled: Tensor, micro_conds: Tensor) -> Tensor:
        """``pooled [B, pooled_dim]``, ``micro_conds [B, K]`` -> conditioning vector ``[B, dim]``."""
        encoded = sinusoidal_embedding(micro_conds.flatten(), self.config.micro_cond_encode_dim)
        features = torch.cat([pooled.float(), encoded.reshape(pooled.shape[0], -1)], dim=1)
        return self.cond_embed(features.to(self.context_proj.weight.dtype))

    def _check(self, tokens: Tensor, context: Tensor | None, context_kv: list[KV] | None,
               pooled: Tensor | None) -> None:
        if tokens.ndim != 3 or tokens.dtype not in (torch.int64, torch.int32):
            raise InvalidArgumentError("tokens", "an integer tensor [B, h, w]", f"{tokens.dtype} {tuple(tokens.shape)}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.config.vocab_size):
            raise InvalidArgumentError("tokens", f"ids in [0, {self.config.vocab_size - 1}] (mask id {self.mask_id})",
                                       f"range [{int(tokens.min())}, {int(tokens.max())}]")
        if context is None and context_kv is None:
            raise InvalidArgumentError("context", "text states [B, Lc, context_dim] or context_kv (the U-ViT is "
                                       "text-conditioned)")
        if context_kv is not None and len(context_kv) != self.num_context_kv:
            raise InvalidArgumentError("context_kv", f"{self.num_context_kv} (k, v) pairs from project_context",
                                       len(context_kv))
        if pooled is None or pooled.ndim != 2 or pooled.shape != (tokens.shape[0], self.config.pooled_dim):
            got = None if pooled is None else tuple(pooled.shape)
            raise InvalidArgumentError("pooled", f"a [{tokens.shape[0]}, {self.config.pooled_dim}] pooled text "
                                       "embedding", got)

    def forward(self, tokens: Tensor, class_labels: Tensor | None = None, *, context: Tensor | None = None,
                context_mask: Tensor | None = None, context_kv: list[KV] | None = None,
                pooled: Tensor | None = None, micro_conds: Tensor | Sequence[float] | None = None) -> Tensor:
        """Logits ``[B, h*w, codebook_size]`` for ``tokens [B, h, w]`` (mask id at masked positions).

        Args:
            class_labels: must be None (the U-ViT conditions on text only).
            context: text token states ``[B, Lc, context_dim]``, or ``context_kv`` from :meth:`project_context`.
            context_mask: bool ``[B, Lc]``, True = real token (None or all True = attend to every position,
                as aMUSEd does).
            pooled: pooled text embedding ``[B, pooled_dim]``.
            micro_conds: ``[B, K]`` / ``[K]`` / K numbers (None = ``config.default_micro_conds``).
        """
        if class_labels is not None:
            raise InvalidArgumentError("class_labels", "None (the U-ViT is text-conditioned)", "class ids")
        self._check(tokens, context, context_kv, pooled)
        if context_mask is not None and bool(context_mask.all()):
            context_mask = None  # the unmasked fast path, same result
        kv = context_kv if context_kv is not None else self.project_context(context)
        blocks = 2 * self.config.num_res_blocks
        cond = self.condition_vector(pooled, self.micro_cond_tensor(micro_conds, tokens.shape[0], tokens.device))

        x = self.down(self.embed(tokens.long()), cond, kv[:blocks], context_mask)
        b, h, w, _ = x.shape
        x = self.to_hidden(self.to_hidden_norm(x.reshape(b, h * w, -1)))
        for layer, layer_kv in zip(self.layers, kv[blocks:len(kv) - blocks]):
            x = layer(x, cond, layer_kv, context_mask)
        x = self.from_hidden(self.from_hidden_norm(x)).reshape(b, h, w, -1)
        x = self.up(x, cond, kv[len(kv) - blocks:], context_mask)
        return self.head(x).reshape(b, -1, self.config.codebook_size)


# The aMUSEd-256 transformer (~600M parameters; random weights unless converted from a checkpoint).
register_config("amused-256", UVitTransformer.model_type, {})
register_config("uvit-tiny", UVitTransformer.model_type, dict(
    codebook_size=32, vocab_size=40, grid=[4, 4], dim=32, depth=2, num_heads=2, mlp_dim=48, embed_dim=16,
    conv_dim=24, num_res_blocks=1, block_num_heads=2, context_dim=16, pooled_dim=16, micro_cond_encode_dim=4,
    micro_cond_embed_dim=20, default_micro_conds=[16.0, 16.0, 0.0, 0.0, 6.0]))
