"""The bidirectional masked-token transformer (MaskGIT / Muse) for token grids of any rank.

A model maps tokens (with ``mask_id`` at masked positions) plus conditioning to logits over the codebook; it has
no decoding loop (that is :mod:`mmgen.sampling`) and no timestep input (masked models are time-agnostic).

Grids: images ``[B, h, w]``, video ``[B, t, h, w]``, audio ``[B, levels, frames]`` — positions come from the grid
(learned per-axis tables, fixed sin/cos, or axial RoPE), so one class serves every modality.
Conditioning: class labels (adaLN-Zero or a prefix token; id ``num_classes`` is the null class used for
classifier-free guidance), a pooled vector (a sentence embedding, added to the adaLN-Zero conditioning as in Muse)
and/or a sequence through cross-attention (text token states, phonemes), whose keys/values can be projected once per
prompt with :meth:`MaskedTransformer.project_context`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError
from mmgen.nn.norms import modulate
from mmgen.nn.positions import LearnedGridPositions, axial_rope, sincos_grid_embedding
from mmgen.nn.transformer import TransformerBlock, make_norm
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config

ContextKV = list[tuple[Tensor, Tensor]]


@dataclass
class MaskedTransformerConfig:
    """Architecture of a :class:`MaskedTransformer`.

    ``codebook_size`` real token ids ``0..V-1``; ``mask_id == V``. ``grid`` is the largest token grid (learned
    positions cover it; sincos/RoPE work for any grid). ``num_classes = 0`` means unconditional on classes.
    """

    codebook_size: int = 256
    grid: tuple[int, ...] = (7, 7)
    dim: int = 256
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    positions: Literal["learned", "sincos", "rope"] = "learned"
    num_classes: int = 0
    class_conditioning: Literal["adaln", "prefix"] = "adaln"
    context_dim: int | None = None
    pooled_dim: int | None = None
    qk_norm: bool = False
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.dim % self.num_heads:
            raise InvalidArgumentError("dim", f"a multiple of num_heads={self.num_heads}", self.dim)
        if self.positions not in ("learned", "sincos", "rope"):
            raise InvalidArgumentError("positions", "'learned', 'sincos' or 'rope'", self.positions)
        if self.class_conditioning not in ("adaln", "prefix"):
            raise InvalidArgumentError("class_conditioning", "'adaln' or 'prefix'", self.class_conditioning)


class MaskedTransformer(PretrainedModel):
    """``forward(tokens [B, *grid], class_labels [B]?, context [B, Lc, Cd]?, pooled [B, P]?) -> [B, N, V]``."""

    config_class = MaskedTransformerConfig
    model_type = "masked_transformer"

    def __init__(self, config: MaskedTransformerConfig):
        super().__init__(config)
        c = config
        self.token_embedding = nn.Embedding(c.codebook_size + 1, c.dim)  # + [MASK]
        self.learned_positions = LearnedGridPositions(c.grid, c.dim) if c.positions == "learned" else None
        use_adaln = (c.num_classes > 0 and c.class_conditioning == "adaln") or c.pooled_dim is not None
        self.class_embedding = nn.Embedding(c.num_classes + 1, c.dim) if c.num_classes > 0 else None  # + null
        self.pooled_projection = (nn.Sequential(nn.Linear(c.pooled_dim, c.dim), nn.SiLU(), nn.Linear(c.dim, c.dim))
                                  if c.pooled_dim is not None else None)
        self.blocks = nn.ModuleList(
            TransformerBlock(c.dim, c.num_heads, c.mlp_ratio, context_dim=c.context_dim, qk_norm=c.qk_norm,
                             norm=c.norm, adaln_dim=c.dim if use_adaln else None, dropout=c.dropout)
            for _ in range(c.depth))
        self.final_norm = make_norm(c.norm, c.dim, affine=not use_adaln)
        self.final_modulation = nn.Linear(c.dim, 2 * c.dim) if use_adaln else None
        self.head = nn.Linear(c.dim, c.codebook_size)
        self._init_weights()

    # ------------------------------------------------------------------------------------------------- setup
    def _init_weights(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and "adaln" not in name and "modulation" not in name:
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=0.02)
        if self.final_modulation is not None:
            nn.init.zeros_(self.final_modulation.weight)
            nn.init.zeros_(self.final_modulation.bias)

    @property
    def mask_id(self) -> int:
        return self.config.codebook_size

    @property
    def null_class(self) -> int:
        return self.config.num_classes

    @property
    def has_class_prefix(self) -> bool:
        return self.config.num_classes > 0 and self.config.class_conditioning == "prefix"

    # ------------------------------------------------------------------------------------------------- checks
    def _check_inputs(self, tokens: Tensor, class_labels: Tensor | None, pooled: Tensor | None) -> None:
        if tokens.dtype not in (torch.int64, torch.int32):
            raise InvalidArgumentError("tokens", "an integer tensor of token ids", str(tokens.dtype))
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) > self.mask_id):
            raise InvalidArgumentError("tokens", f"ids in [0, {self.mask_id}] ({self.mask_id} = [MASK])",
                                       f"range [{int(tokens.min())}, {int(tokens.max())}]")
        if self.config.num_classes > 0:
            if class_labels is None:
                raise InvalidArgumentError("class_labels", f"[B] ids in [0, {self.null_class}] "
                                           f"({self.null_class} = unconditional)")
            if int(class_labels.min()) < 0 or int(class_labels.max()) > self.null_class:
                raise InvalidArgumentError("class_labels", f"ids in [0, {self.null_class}]",
                                           f"range [{int(class_labels.min())}, {int(class_labels.max())}]")
        if (pooled is None) != (self.config.pooled_dim is None):
            expected = f"[B, {self.config.pooled_dim}] pooled embeddings" if self.config.pooled_dim else "None"
            raise InvalidArgumentError("pooled", expected, None if pooled is None else tuple(pooled.shape))

    # ------------------------------------------------------------------------------------------------ forward
    def project_context(self, context: Tensor) -> ContextKV:
        """Per-block cross-attention keys/values of ``context [B, Lc, context_dim]``: compute once per prompt."""
        return [block.project_context(context) for block in self.blocks]

    def _embed(self, tokens: Tensor, grid: tuple[int, ...], class_labels: Tensor | None) -> Tensor:
        x = self.token_embedding(tokens.reshape(tokens.shape[0], -1).long())
        if self.learned_positions is not None:
            x = x + self.learned_positions(grid).to(x.dtype)
        elif self.config.positions == "sincos":
            x = x + sincos_grid_embedding(grid, self.config.dim, device=x.device).to(x.dtype)
        if self.has_class_prefix:
            x = torch.cat([self.class_embedding(class_labels)[:, None], x], dim=1)
        return x

    def _condition_vector(self, class_labels: Tensor | None, pooled: Tensor | None) -> Tensor | None:
        """The adaLN conditioning ``[B, dim]``: class embedding + projected pooled embedding (None without adaLN)."""
        if self.final_modulation is None:
            return None
        parts = []
        if self.class_embedding is not None and not self.has_class_prefix:
            parts.append(self.class_embedding(class_labels))
        if self.pooled_projection is not None:
            parts.append(self.pooled_projection(pooled.to(self.pooled_projection[0].weight.dtype)))
        return torch.stack(parts).sum(0)

    def forward(self, tokens: Tensor, class_labels: Tensor | None = None, *, context: Tensor | None = None,
                context_mask: Tensor | None = None, context_kv: ContextKV | None = None,
                pooled: Tensor | None = None, micro_conds: Tensor | None = None) -> Tensor:
        """Logits for every grid position.

        Args:
            tokens: ``[B, *grid]`` ids in ``[0, codebook_size]`` (``codebook_size`` = [MASK]).
            class_labels: ``[B]`` in ``[0, num_classes]`` (``num_classes`` = null/unconditional).
            context: ``[B, Lc, context_dim]`` cross-attention states; or ``context_kv`` from
                :meth:`project_context`. ``context_mask``: ``[B, Lc]`` bool, True = real token.
            pooled: ``[B, pooled_dim]`` sentence embedding (models with ``pooled_dim``).
            micro_conds: not used by this model (aMUSEd's UVit takes them); must be None.

        Returns:
            ``[B, N, codebook_size]`` logits, ``N = prod(grid)`` in row-major order.
        """
        self._check_inputs(tokens, class_labels, pooled)
        if micro_conds is not None:
            raise InvalidArgumentError("micro_conds", "None (this model has no micro-conditioning)", "a tensor")
        grid = tuple(tokens.shape[1:])
        x = self._embed(tokens, grid, class_labels)
        prefix = 1 if self.has_class_prefix else 0
        head_dim = self.config.dim // self.config.num_heads
        rope = axial_rope(grid, head_dim, prefix=prefix, device=x.device) if self.config.positions == "rope" else None
        cond = self._condition_vector(class_labels, pooled)
        for index, block in enumerate(self.blocks):
            kv = context_kv[index] if context_kv is not None else None
            x = block(x, cond=cond, context=None if kv is not None else context, context_mask=context_mask,
                      context_kv=kv, rope=rope)
        x = self.final_norm(x[:, prefix:])
        if self.final_modulation is not None:
            shift, scale = self.final_modulation(cond).unsqueeze(1).chunk(2, dim=-1)
            x = modulate(x, scale, shift)
        return self.head(x)


register_config("maskgit-mnist", MaskedTransformer.model_type, {
    "codebook_size": 1024, "grid": [7, 7], "dim": 192, "depth": 5, "num_heads": 4, "num_classes": 10,
    "class_conditioning": "adaln", "positions": "learned", "dropout": 0.1})
register_config("maskgit-tiny", MaskedTransformer.model_type, {
    "codebook_size": 64, "grid": [4, 4], "dim": 32, "depth": 2, "num_heads": 2, "num_classes": 4})
# Text-to-image on the built-in shapes data (32x32 RGB -> 8x8 tokens); context/pooled dims follow the text encoder
# (MiniLM: 384), codebook and grid follow the tokenizer (the training task fills them in).
register_config("muse-shapes", MaskedTransformer.model_type, {
    "codebook_size": 1024, "grid": [8, 8], "dim": 192, "depth": 6, "num_heads": 4, "context_dim": 384,
    "pooled_dim": 384, "positions": "learned", "dropout": 0.1})
register_config("muse-tiny", MaskedTransformer.model_type, {
    "codebook_size": 64, "grid": [4, 4], "dim": 32, "depth": 2, "num_heads": 2, "context_dim": 16, "pooled_dim": 16})
