"""Categorical draws in float64: Gumbel noise, temperature, top-k and top-p (nucleus) filtering.

Why float64: "Masked Diffusion Models are Secretly Time-Agnostic Masked Models and Exploit Inaccurate Categorical
Sampling" shows that Gumbel-max in float32 truncates the noise's tail (uniforms near 1 round to 1), which lowers the
effective temperature and the diversity of samples. Every draw here is made in float64 whatever the logits' dtype.

Random numbers are drawn on the generator's device (a CPU generator works for CUDA logits) and moved.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mmgen.errors import InvalidArgumentError


def uniform_noise(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None, *,
                  dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """U(0, 1) noise of ``shape`` drawn on ``generator``'s device, returned on ``device`` (default: that device)."""
    draw_device = generator.device if generator is not None else device
    noise = torch.rand(tuple(shape), generator=generator, dtype=dtype, device=draw_device)
    return noise if device is None else noise.to(device)


def gumbel_noise(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None, *,
                 dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """Standard Gumbel noise ``-log(-log(u))``, u ~ U(0, 1), of ``shape`` (float64 unless told otherwise).

    The uniforms are clamped to ``[tiny, 1 - eps]`` of ``dtype`` so the noise is always finite.
    """
    info = torch.finfo(dtype)
    u = uniform_noise(shape, generator, dtype=dtype, device=device).clamp_(info.tiny, 1.0 - info.eps)
    return -torch.log(-torch.log(u))


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """Raise :class:`InvalidArgumentError` unless temperature >= 0, top_k > 0 (or None), top_p in (0, 1] (or None)."""
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise InvalidArgumentError("temperature", "a finite number >= 0", temperature)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0):
        raise InvalidArgumentError("top_k", "a positive integer or None", top_k)
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise InvalidArgumentError("top_p", "a number in (0, 1] or None", top_p)


def filter_top_k(logits: Tensor, top_k: int) -> Tensor:
    """Set all but the ``top_k`` largest logits of the last dim to -inf (exactly k survive, ties broken by index).

    Args:
        logits: ``[..., V]``, modified in place and returned.
    """
    if top_k >= logits.shape[-1]:
        return logits
    drop = torch.ones_like(logits, dtype=torch.bool)
    drop.scatter_(-1, logits.topk(top_k, dim=-1).indices, False)
    return logits.masked_fill_(drop, -math.inf)


def filter_top_p(logits: Tensor, top_p: float) -> Tensor:
    """Nucleus filtering: keep the smallest set of most likely ids whose probability reaches ``top_p``.

    Args:
        logits: ``[..., V]`` (float64 recommended), modified in place and returned. The most likely id always stays.
    """
    if top_p >= 1:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= top_p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter_(-1, order, drop_sorted)
    return logits.masked_fill_(drop, -math.inf)


def sample_categorical(logits: Tensor, temperature: float = 1.0, top_k: int | None = None,
                       top_p: float | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Draw one id per row of ``logits`` by Gumbel-max in float64.

    Order of operations (as in Hugging Face generation): divide by ``temperature``, keep the ``top_k`` largest,
    keep the ``top_p`` nucleus, then ``argmax(logits + Gumbel)``. ``temperature == 0`` is greedy (argmax; top-k and
    top-p cannot change it and no noise is drawn).

    Args:
        logits: ``[..., V]`` unnormalized scores, any float dtype.
        temperature: >= 0.
        top_k: keep this many most likely ids (None: all).
        top_p: keep the smallest set of ids with probability mass >= top_p, in (0, 1] (None: all).
        generator: the random stream (its device may differ from ``logits``').

    Returns:
        ``(ids, log_probs)``: ids ``[...]`` (long) and float64 ``[...]`` log-probabilities of those ids under the
        *model's* distribution ``log_softmax(logits)`` (temperature 1, unfiltered), which is what MaskGIT uses as
        the confidence of a drawn token.
    """
    check_sampling_options(temperature, top_k, top_p)
    if logits.shape[-1] == 0:
        raise InvalidArgumentError("logits", "a last dimension of size >= 1", tuple(logits.shape))
    logits64 = logits.to(torch.float64)
    if temperature == 0:
        ids = logits64.argmax(dim=-1)
    else:
        scores = logits64 / temperature
        if top_k is not None:
            filter_top_k(scores, top_k)
        if top_p is not None:
            filter_top_p(scores, top_p)
        scores += gumbel_noise(scores.shape, generator, device=scores.device)
        ids = scores.argmax(dim=-1)
        del scores
    chosen = logits64.gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    return ids, chosen - logits64.logsumexp(dim=-1)
