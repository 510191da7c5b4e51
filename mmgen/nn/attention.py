"""The one attention of mmgen: a functional core with backend dispatch, and the :class:`Attention` module.

Every model calls :func:`attention` (directly or through :class:`Attention`); no model carries its own copy.

Tensor conventions
------------------
* ``q``: ``[B, H, Lq, D]``; ``k``: ``[B, H, Lk, D]``; ``v``: ``[B, H, Lk, Dv]``; output ``[B, H, Lq, Dv]``.
  ``Lq != Lk`` is cross-attention.
* ``key_padding_mask``: bool ``[B, Lk]``, **True = keep** (a real token that may be attended to), False = padding.
  This is the Hugging Face ``attention_mask`` convention (1 = real token) and the meaning of a boolean
  ``attn_mask`` in ``torch.nn.functional.scaled_dot_product_attention``; it is the *opposite* of
  ``torch.nn.MultiheadAttention(key_padding_mask=...)``, where True means "ignore".
* ``attn_bias``: broadcastable to ``[B, H, Lq, Lk]``; either additive float (``0`` = free, ``-inf`` = blocked,
  e.g. a relative-position bias) or bool with True = may attend (e.g. a causal mask). Combined with the padding mask.
* A *fully masked row* (a query allowed to attend to no key) yields an all-zero output row and all-zero weights on
  every backend, never NaN; its gradient is zero.

Backends and how one is chosen
------------------------------
``"math"`` (explicit fp32 softmax, the reference), ``"sdpa"`` (``F.scaled_dot_product_attention``),
``"matmul"`` (two matmuls in the inputs' dtype around an fp32 softmax; on CPU with bf16/fp16 inputs and short
sequences it beats sdpa's CPU flash kernel, which is written for long ones: ~3x for cross-attention to 77 text
tokens; for 256-token self-attention it wins inside a model, where its score buffers come back from the allocator
warm, but not in an isolated loop; measured on the aMUSEd-256 U-ViT: 1.10 vs 1.23 s per forward), ``"xformers"``
(``xformers.ops.memory_efficient_attention``, CUDA fp16/bf16 only, imported on first use) and ``"auto"`` (xformers
when installed and the inputs are CUDA fp16/bf16; matmul for CPU bf16/fp16 inputs whose score matrix is small,
:data:`MATMUL_MAX_SCORES` elements; else sdpa). The first of these wins:

1. the ``backend=`` argument of :func:`attention`;
2. the innermost ``with attention_backend("math"):`` block (context-local: per thread / asyncio task, nestable);
3. the environment variable ``MMGEN_ATTN_BACKEND`` (read at every call);
4. ``"auto"``.

``return_weights=True`` always runs the math path. A request for xformers where it cannot run (CPU tensors, fp32,
not installed) logs one warning per reason and runs sdpa.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Literal, Union, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError, check_positive_int
from mmgen.nn.norms import RMSNorm

Backend = Literal["auto", "sdpa", "math", "matmul", "xformers"]
BACKENDS: tuple[str, ...] = get_args(Backend)
ENV_VAR = "MMGEN_ATTN_BACKEND"
#: Rotary embedding: a callable applied to q and k (``[B, H, L, D] -> [B, H, L, D]``) or a ``(cos, sin)`` pair.
Rope = Union[Callable[[Tensor], Tensor], tuple[Tensor, Tensor]]

logger = logging.getLogger(__name__)
_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar("mmgen_attention_backend", default=None)
_WARNED: set[str] = set()
_XFORMERS_DTYPES = (torch.float16, torch.bfloat16)
#: "auto" runs the matmul path on CPU for bf16/fp16 inputs when B * H * Lq * Lk is at most this (64 MiB of fp32
#: scores); longer sequences go to sdpa, whose flash kernel never materialises the scores.
MATMUL_MAX_SCORES = 1 << 24


def _validate_backend(value: object, source: str) -> str:
    """Return ``value`` normalised (stripped, lower case) if it names a backend, else raise naming ``source``."""
    name = value.strip().lower() if isinstance(value, str) else value
    if name not in BACKENDS:
        raise InvalidArgumentError(source, "one of " + ", ".join(repr(b) for b in BACKENDS), repr(value))
    return name


def get_attention_backend() -> str:
    """The backend requested right now (context manager > ``$MMGEN_ATTN_BACKEND`` > ``"auto"``); may be "auto"."""
    override = _OVERRIDE.get()
    if override is not None:
        return override
    env = os.environ.get(ENV_VAR, "")
    return _validate_backend(env, f"{ENV_VAR} (environment variable)") if env.strip() else "auto"


@contextlib.contextmanager
def attention_backend(name: Backend) -> Iterator[str]:
    """Use backend ``name`` for every :func:`attention` call inside the block (context-local, nestable)."""
    token = _OVERRIDE.set(_validate_backend(name, "attention_backend(name)"))
    try:
        yield _OVERRIDE.get()
    finally:
        _OVERRIDE.reset(token)


@functools.cache
def _xformers_ops() -> ModuleType | None:
    """``xformers.ops`` imported on first use, or None when xformers is missing or broken."""
    if importlib.util.find_spec("xformers") is None:
        return None
    try:
        return importlib.import_module("xformers.ops")
    except Exception as exc:  # a broken xformers build must not break attention
        _warn_once("import", f"xformers is installed but failed to import ({exc}); using 'sdpa' instead")
        return None


def _warn_once(reason: str, message: str) -> None:
    if reason not in _WARNED:
        _WARNED.add(reason)
        logger.warning(message)


def available_backends() -> list[str]:
    """Backends that can run on this machine ("xformers" only with CUDA and an importable xformers)."""
    names = ["auto", "sdpa", "math", "matmul"]
    if torch.cuda.is_available() and _xformers_ops() is not None:
        names.append("xformers")
    return names


def _xformers_problem(q: Tensor) -> str | None:
    """Why xformers cannot run on ``q`` (cheap checks first, import last), or None when it can."""
    if not q.is_cuda:
        return f"{q.device.type} tensors"
    if q.dtype not in _XFORMERS_DTYPES:
        return f"{q.dtype} tensors (it needs float16/bfloat16)"
    if _xformers_ops() is None:
        return "this install (xformers is missing: pip install 'mmgen[gpu]')"
    return None


def resolve_backend(q: Tensor, backend: str | None = None, *, return_weights: bool = False,
                    keys: int | None = None) -> str:
    """The concrete backend ("math", "sdpa", "matmul" or "xformers") that :func:`attention` will run for ``q``
    (``keys``: the key length, default ``q``'s length)."""
    name = get_attention_backend() if backend is None else _validate_backend(backend, "backend")
    if return_weights or name == "math":
        return "math"
    if name in ("sdpa", "matmul"):
        return name
    problem = _xformers_problem(q)
    if problem is None:
        return "xformers"
    if name == "xformers":
        _warn_once(problem, f"attention backend 'xformers' cannot run on {problem}; using 'sdpa' instead")
        return "sdpa"
    scores = q.shape[0] * q.shape[1] * q.shape[2] * (q.shape[2] if keys is None else keys)
    if q.device.type == "cpu" and q.dtype in _XFORMERS_DTYPES and scores <= MATMUL_MAX_SCORES:
        return "matmul"
    return "sdpa"


def _check_inputs(q: Tensor, k: Tensor, v: Tensor, key_padding_mask: Tensor | None, dropout_p: float) -> None:
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise InvalidArgumentError("q, k, v", "4-D tensors [B, H, L, D]", f"{q.ndim}-D, {k.ndim}-D, {v.ndim}-D")
    if q.shape[:2] != k.shape[:2] or k.shape[:3] != v.shape[:3] or q.shape[-1] != k.shape[-1]:
        shapes = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
        raise InvalidArgumentError("q, k, v", "shapes [B, H, Lq, D], [B, H, Lk, D], [B, H, Lk, Dv]", shapes)
    if key_padding_mask is not None and (
        key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (k.shape[0], k.shape[2])
    ):
        got = f"{key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
        raise InvalidArgumentError("key_padding_mask", f"a bool tensor [B, Lk] = {(k.shape[0], k.shape[2])}", got)
    if not 0.0 <= dropout_p < 1.0:
        raise InvalidArgumentError("dropout_p", "a number in [0, 1)", dropout_p)


def _merge_masks(key_padding_mask: Tensor | None, attn_bias: Tensor | None) -> Tensor | None:
    """One mask broadcastable to ``[B, H, Lq, Lk]``: bool (True = attend) or additive float."""
    if key_padding_mask is None:
        return attn_bias
    keep = key_padding_mask[:, None, None, :]
    if attn_bias is None:
        return keep
    if attn_bias.dtype == torch.bool:
        return attn_bias & keep
    return attn_bias.masked_fill(~keep, float("-inf"))


def _revive_dead_rows(mask: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """Open fully masked rows so no kernel sees one (no NaN); return the mask and ``alive`` ``[..., Lq|1, 1]``.

    The caller multiplies the output (and weights) by ``alive``, which zeroes those rows. Sync-free.
    """
    if mask is None:
        return None, None
    if mask.dtype == torch.bool:
        alive = mask.any(dim=-1, keepdim=True)
        return mask | ~alive, alive
    alive = ~torch.isneginf(mask).all(dim=-1, keepdim=True)
    return mask.masked_fill(~alive, 0.0), alive


def _additive(mask: Tensor, dtype: torch.dtype) -> Tensor:
    """``mask`` as an additive bias in ``dtype`` (bool True -> 0, False -> -inf)."""
    if mask.dtype != torch.bool:
        return mask.to(dtype)
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, float("-inf"))


def _math_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, scale: float):
    """Reference path: softmax(q k^T * scale + mask) v in fp32. Returns (out [B,H,Lq,Dv], weights [B,H,Lq,Lk])."""
    scores = torch.matmul(q.float() * scale, k.float().transpose(-2, -1))
    if mask is not None:
        scores = scores + _additive(mask, torch.float32)
    weights = scores.softmax(dim=-1)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    return torch.matmul(dropped, v.float()).to(q.dtype), weights


def _matmul_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float,
                      scale: float) -> Tensor:
    """softmax(q k^T * scale + mask) v with both matmuls in the inputs' dtype and the softmax in fp32."""
    scores = torch.matmul(q * scale, k.transpose(-2, -1))
    if mask is not None:
        scores = scores.float() + _additive(mask, torch.float32)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(v.dtype)
    if dropout_p > 0:
        weights = F.dropout(weights, p=dropout_p)
    return torch.matmul(weights, v)


def _sdpa_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, scale: float) -> Tensor:
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p, scale=scale)


def _xformers_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, dropout_p: float, scale: float):
    """xformers works in ``[B, L, H, D]``; a mask becomes a dense additive bias whose rows are 8-element aligned."""
    bias = None
    if mask is not None:
        b, h, lq, lk = q.shape[0], q.shape[1], q.shape[2], k.shape[2]
        storage = torch.empty(b, h, lq, -(-lk // 8) * 8, dtype=q.dtype, device=q.device)
        bias = storage[..., :lk]
        bias.copy_(_additive(mask, q.dtype).expand(b, h, lq, lk))
    out = _xformers_ops().memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p, scale=scale
    )
    return out.transpose(1, 2)


def attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    *,
    key_padding_mask: Tensor | None = None,
    attn_bias: Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
    return_weights: bool = False,
    backend: Backend | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Scaled dot-product attention on the selected backend (see the module docstring for every convention).

    Args:
        q: ``[B, H, Lq, D]``. k: ``[B, H, Lk, D]``. v: ``[B, H, Lk, Dv]``.
        key_padding_mask: bool ``[B, Lk]``, **True = keep**, False = padding key.
        attn_bias: additive float or bool (True = may attend), broadcastable to ``[B, H, Lq, Lk]``.
        dropout_p: dropout on the attention weights (pass 0.0 at eval time).
        scale: logit scale; default ``D ** -0.5``.
        return_weights: also return the softmax weights (before dropout); forces the math backend.
        backend: overrides the context manager and ``$MMGEN_ATTN_BACKEND`` for this call.

    Returns:
        ``out [B, H, Lq, Dv]`` in ``q``'s dtype, or ``(out, weights [B, H, Lq, Lk])`` with fp32 weights whose rows
        sum to 1 (all zero for a fully masked row).
    """
    _check_inputs(q, k, v, key_padding_mask, dropout_p)
    name = resolve_backend(q, backend, return_weights=return_weights, keys=k.shape[2])
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    mask, alive = _revive_dead_rows(_merge_masks(key_padding_mask, attn_bias))
    weights = None
    if name == "math":
        out, weights = _math_attention(q, k, v, mask, dropout_p, scale)
    elif name == "xformers":
        out = _xformers_attention(q, k, v, mask, dropout_p, scale)
    elif name == "matmul":
        out = _matmul_attention(q, k, v, mask, dropout_p, scale)
    else:
        out = _sdpa_attention(q, k, v, mask, dropout_p, scale)
    if alive is not None:
        out = out * alive
        weights = None if weights is None else weights * alive
    return (out, weights) if return_weights else out


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x [B, H, L, D]`` by ``cos``/``sin`` broadcastable to ``[B, H, L, R]`` (rotate-half convention).

    ``R <= D`` is even: the first ``R`` channels rotate as pairs ``(i, i + R/2)`` (so ``cos``/``sin`` hold each
    frequency twice: ``cat([c, c], -1)``); channels ``R:`` pass through. Computed in the promoted dtype of
    ``x``/``cos`` and returned in ``x``'s dtype.
    """
    r = cos.shape[-1]
    rot, rest = x[..., :r], x[..., r:]
    first, second = rot.chunk(2, dim=-1)
    rotated = (rot * cos + torch.cat((-second, first), dim=-1) * sin).to(x.dtype)
    return torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated


def _apply_rope(rope: Rope, q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    if callable(rope):
        return rope(q), rope(k)
    cos, sin = rope
    return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)


class Attention(nn.Module):
    """Multi-head self- or cross-attention on :func:`attention` (parameter names follow timm's ``Attention``).

    Args:
        dim: model width (a multiple of ``num_heads``).
        num_heads: number of heads; head dim is ``dim // num_heads``.
        context_dim: width of the context; when set the module is cross-attention (queries from ``x``, keys and
            values from ``context``), else self-attention.
        qkv_bias: bias in the q/k/v projections.
        qk_norm: RMSNorm over the head dim of q and k (stabilises large-scale training).
        proj_drop: dropout on the output projection. attn_drop: dropout on the attention weights (training only).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        *,
        context_dim: int | None = None,
        qkv_bias: bool = True,
        qk_norm: bool = False,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int("num_heads", num_heads)
        if check_positive_int("dim", dim) % num_heads:
            raise InvalidArgumentError("dim", f"a multiple of num_heads={num_heads}", dim)
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.is_cross = context_dim is not None
        if self.is_cross:
            self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
            self.to_kv = nn.Linear(check_positive_int("context_dim", context_dim), 2 * dim, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.k_norm = RMSNorm(self.head_dim, eps=1e-6) if qk_norm else nn.Identity()
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _split_heads(self, t: Tensor, n: int) -> tuple[Tensor, ...]:
        """``[B, L, n * H * Dh]`` -> ``n`` tensors ``[B, H, L, Dh]``."""
        b, length, _ = t.shape
        return t.reshape(b, length, n, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)

    def project_context(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Keys and values ``([B, H, Lc, Dh], [B, H, Lc, Dh])`` of ``context [B, Lc, context_dim]``.

        Compute once per prompt and pass as ``forward(..., context_kv=...)`` at every sampling step.
        """
        if not self.is_cross:
            raise InvalidArgumentError("context", "no context for a self-attention module (set context_dim)")
        k, v = self._split_heads(self.to_kv(context), 2)
        return self.k_norm(k), v

    def _qkv(self, x: Tensor, context: Tensor | None, context_kv: tuple[Tensor, Tensor] | None):
        if not self.is_cross:
            if context is not None or context_kv is not None:
                raise InvalidArgumentError("context", "no context for a self-attention module (set context_dim)")
            q, k, v = self._split_heads(self.qkv(x), 3)
            return self.q_norm(q), self.k_norm(k), v
        if context_kv is None:
            if context is None:
                raise InvalidArgumentError("context", "a [B, Lc, context_dim] tensor or context_kv (cross-attention)")
            context_kv = self.project_context(context)
        (q,) = self._split_heads(self.to_q(x), 1)
        return self.q_norm(q), *context_kv

    def forward(
        self,
        x: Tensor,
        context: Tensor | None = None,
        *,
        key_padding_mask: Tensor | None = None,
        return_weights: bool = False,
        rope: Rope | None = None,
        context_kv: tuple[Tensor, Tensor] | None = None,
        attn_bias: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Attend from ``x [B, L, dim]``; returns ``[B, L, dim]`` (and weights ``[B, H, L, Lk]`` if asked).

        Args:
            context: ``[B, Lc, context_dim]`` (cross-attention only), or give ``context_kv`` from
                :meth:`project_context` instead.
            key_padding_mask: bool ``[B, Lk]`` (``Lk`` = ``Lc`` for cross-, ``L`` for self-attention), True = keep.
            rope: rotary embedding for self-attention, applied to q and k after qk-norm: a callable
                ``[B, H, L, Dh] -> [B, H, L, Dh]`` or a ``(cos, sin)`` pair for :func:`apply_rotary`.
            attn_bias: extra additive/bool bias broadcastable to ``[B, H, L, Lk]`` (see :func:`attention`).
        """
        q, k, v = self._qkv(x, context, context_kv)
        if rope is not None:
            if self.is_cross:
                raise InvalidArgumentError("rope", "None for cross-attention (queries and keys have no shared grid)")
            q, k = _apply_rope(rope, q, k)
        result = attention(
            q,
            k,
            v,
            key_padding_mask=key_padding_mask,
            attn_bias=attn_bias,
            dropout_p=self.attn_drop if self.training else 0.0,
            return_weights=return_weights,
        )
        out, weights = result if return_weights else (result, None)
        out = self.proj_drop(self.proj(out.transpose(1, 2).flatten(2)))
        return (out, weights) if return_weights else out
