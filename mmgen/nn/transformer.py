"""Pre-norm transformer block on mmgen's one :class:`~mmgen.nn.attention.Attention`.

A block is self-attention, optional cross-attention to a context (text states, prompt tokens), and a GELU MLP,
each a residual branch ``x + branch(norm(x))``. With ``adaln_dim`` set, a conditioning vector modulates every
branch adaLN-Zero style (DiT): ``x + gate * branch(norm(x) * (1 + scale) + shift)`` with ``shift, scale, gate``
predicted from ``cond`` by a zero-initialised linear layer, so a freshly built block is the identity.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError
from mmgen.nn.attention import Attention, Rope
from mmgen.nn.norms import RMSNorm, modulate

NormKind = Literal["layernorm", "rmsnorm"]
Modulation = tuple[Tensor, Tensor, Tensor]


def make_norm(kind: NormKind, dim: int, *, affine: bool = True) -> nn.Module:
    """A LayerNorm or RMSNorm over the last dim (eps 1e-6); ``affine=False`` drops its own scale/shift."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=1e-6, elementwise_affine=affine)
    if kind == "rmsnorm":
        return RMSNorm(dim, eps=1e-6, elementwise_affine=affine)
    raise InvalidArgumentError("norm", "'layernorm' or 'rmsnorm'", kind)


class Mlp(nn.Module):
    """``[..., dim] -> [..., dim]``: Linear, GELU, dropout, Linear, dropout (timm's parameter names)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class TransformerBlock(nn.Module):
    """Pre-norm block: self-attention, optional cross-attention, MLP; optional adaLN-Zero conditioning.

    Args:
        dim: token width. num_heads: attention heads (``dim % num_heads == 0``).
        mlp_ratio: MLP hidden width is ``int(dim * mlp_ratio)``.
        context_dim: width of the cross-attention context; None = no cross-attention.
        qk_norm: RMSNorm on queries and keys per head.
        norm: ``"layernorm"`` or ``"rmsnorm"`` for the pre-norms (without affine parameters under adaLN).
        adaln_dim: width of the conditioning vector ``cond``; None = no modulation.
        dropout: dropout on each residual branch output and on the MLP hidden (attention weights are not dropped).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        *,
        context_dim: int | None = None,
        qk_norm: bool = False,
        norm: NormKind = "layernorm",
        adaln_dim: int | None = None,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        affine = adaln_dim is None
        self.norm1 = make_norm(norm, dim, affine=affine)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm, proj_drop=dropout)
        self.norm_cross: nn.Module | None = None
        self.cross_attn: Attention | None = None
        if context_dim is not None:
            self.norm_cross = make_norm(norm, dim, affine=affine)
            self.cross_attn = Attention(dim, num_heads, context_dim=context_dim, qk_norm=qk_norm, proj_drop=dropout)
        self.norm2 = make_norm(norm, dim, affine=affine)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dropout)
        self.num_branches = 3 if context_dim is not None else 2
        self.adaln: nn.Sequential | None = None
        if adaln_dim is not None:
            self.adaln = nn.Sequential(nn.SiLU(), nn.Linear(adaln_dim, 3 * self.num_branches * dim))
            nn.init.zeros_(self.adaln[1].weight)
            nn.init.zeros_(self.adaln[1].bias)

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys/values of ``context [B, Lc, context_dim]``, to reuse as ``context_kv``."""
        if self.cross_attn is None:
            raise InvalidArgumentError("context", "no context for a block without cross-attention (set context_dim)")
        return self.cross_attn.project_context(context)

    def _modulations(self, cond: Tensor | None) -> list[Modulation | None]:
        """One ``(shift, scale, gate)`` per branch, each ``[B, 1, dim]`` (or ``[B, L, dim]`` for per-token cond)."""
        if self.adaln is None:
            if cond is not None:
                raise InvalidArgumentError("cond", "None for a block built without adaln_dim")
            return [None] * self.num_branches
        if cond is None:
            raise InvalidArgumentError("cond", f"a [B, {self.adaln[1].in_features}] tensor (block has adaln_dim)")
        chunks = self.adaln(cond).chunk(3 * self.num_branches, dim=-1)
        if cond.ndim == 2:
            chunks = tuple(c.unsqueeze(1) for c in chunks)
        return [chunks[i : i + 3] for i in range(0, len(chunks), 3)]

    @staticmethod
    def _branch(x: Tensor, norm: nn.Module, mod: Modulation | None, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """``x + fn(norm(x))``, modulated and gated when ``mod`` is given."""
        h = norm(x)
        if mod is None:
            return x + fn(h)
        shift, scale, gate = mod
        return x + gate * fn(modulate(h, scale, shift))

    def forward(
        self,
        x: Tensor,
        *,
        cond: Tensor | None = None,
        context: Tensor | None = None,
        context_mask: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        context_kv: tuple[Tensor, Tensor] | None = None,
        rope: Rope | None = None,
    ) -> Tensor:
        """Run the block on ``x [B, L, dim]``; returns ``[B, L, dim]``.

        Args:
            cond: ``[B, adaln_dim]`` (or per-token ``[B, L, adaln_dim]``); required iff the block has adaLN.
            context: ``[B, Lc, context_dim]`` for cross-attention (or ``context_kv`` from :meth:`project_context`).
            context_mask: bool ``[B, Lc]``, True = real context token.
            key_padding_mask: bool ``[B, L]`` for self-attention, True = real token.
            rope: rotary embedding for self-attention (see :class:`~mmgen.nn.attention.Attention`).
        """
        mods = self._modulations(cond)
        x = self._branch(x, self.norm1, mods[0], lambda h: self.attn(h, key_padding_mask=key_padding_mask, rope=rope))
        if self.cross_attn is not None:
            cross, kwargs = self.cross_attn, {"key_padding_mask": context_mask, "context_kv": context_kv}
            x = self._branch(x, self.norm_cross, mods[1], lambda h: cross(h, context, **kwargs))
        elif context is not None or context_kv is not None:
            raise InvalidArgumentError("context", "None for a block built without context_dim")
        return self._branch(x, self.norm2, mods[-1], self.mlp)
