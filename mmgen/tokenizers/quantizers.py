"""Quantizers behind one interface: VQ (EMA codebook), FSQ and LFQ, thin wrappers over vector-quantize-pytorch.

Every quantizer maps a latent map ``z: [B, D, h, w]`` to a :class:`QuantizerOutput` (straight-through quantized
latents, token ids, an auxiliary loss, batch perplexity/usage), and back from ids with :meth:`Quantizer.embed`.
Quantization always runs in fp32, whatever autocast the caller chose (codebook distances in bf16 pick wrong
codes). Inference (:meth:`Quantizer.quantize`) is deterministic and never touches codebook state.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError

QuantizerKind = Literal["vq", "fsq", "lfq"]


@dataclass
class QuantizerOutput:
    """Result of a quantizer's training forward.

    Attributes:
        quantized: [B, D, h, w] quantized latents (straight-through / rotation-trick gradients to the input).
        indices: [B, h, w] int64 token ids in ``[0, codebook_size)``.
        aux_loss: scalar: commitment (VQ), entropy (LFQ) or zero (FSQ), already weighted.
        perplexity: scalar: exp(entropy) of the code histogram of this batch.
        usage: scalar: fraction of the codebook used at least once in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


@contextlib.contextmanager
def fp32_quantization(device: torch.device) -> Iterator[None]:
    """Disable autocast on ``device`` (cpu or cuda) so codebook math runs in fp32."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def code_statistics(indices: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """indices: any shape of ids → (perplexity, usage fraction) of their histogram (both 0-d fp32 tensors)."""
    counts = torch.bincount(indices.reshape(-1), minlength=codebook_size).float()
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return entropy.exp(), (counts > 0).float().mean()


class Quantizer(nn.Module):
    """Interface: ``forward(z) -> QuantizerOutput``, ``quantize(z) -> ids``, ``embed(ids) -> codes``.

    ``dim`` is the latent channel count D the quantizer reads and writes; ``codebook_size`` the number of ids.
    """

    dim: int
    codebook_size: int

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """z: [B, D, h, w] → :class:`QuantizerOutput` (fp32 quantization; ``quantized`` back in z's dtype)."""
        with fp32_quantization(z.device):
            quantized, indices, aux = self._quantize_train(z.float())
        perplexity, usage = code_statistics(indices.detach(), self.codebook_size)
        return QuantizerOutput(quantized.to(z.dtype), indices.long(), aux.float(), perplexity, usage)

    @torch.no_grad()
    def quantize(self, z: torch.Tensor) -> torch.Tensor:
        """z: [B, D, h, w] → ids [B, h, w] (int64), deterministic, no state update."""
        with fp32_quantization(z.device):
            return self._nearest(z.float()).long()

    def embed(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: [B, h, w] int64 → code vectors [B, D, h, w] (fp32)."""
        self.check_indices(indices)
        with fp32_quantization(indices.device):
            return self._lookup(indices.long())

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise :class:`InvalidArgumentError` unless ``indices`` are integer ids inside the codebook."""
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise InvalidArgumentError("tokens", "an integer tensor of token ids", str(indices.dtype))
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise InvalidArgumentError(
                "tokens", f"ids in [0, {self.codebook_size - 1}] (codebook size {self.codebook_size})",
                f"ids in [{int(indices.min())}, {int(indices.max())}]")

    # subclasses implement these three on fp32 inputs
    def _quantize_train(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class VectorQuantizer(Quantizer):
    """Nearest-neighbour VQ over a learned codebook (vector-quantize-pytorch's ``VectorQuantize``).

    Args:
        dim: code dimension D (keep it small, e.g. 4-16, for high codebook usage: "low-dimensional codes").
        codebook_size: number of codes K.
        ema_decay: EMA codebook update rate (codes are buffers updated from assignments, not by the optimizer).
        kmeans_init: initialise the codebook by k-means on the first training batch.
        dead_code_threshold: codes whose EMA cluster size falls below this are re-seeded from the batch (0: off).
        cosine: l2-normalised codes and inputs (cosine similarity instead of Euclidean distance).
        commitment_weight: weight of ||z - sg(q)||² in ``aux_loss``.
    """

    def __init__(self, dim: int, codebook_size: int, *, ema_decay: float = 0.99, kmeans_init: bool = True,
                 dead_code_threshold: float = 2.0, cosine: bool = False, commitment_weight: float = 0.25):
        super().__init__()
        from vector_quantize_pytorch import VectorQuantize

        self.dim, self.codebook_size, self.cosine = dim, codebook_size, cosine
        self.vq = VectorQuantize(
            dim=dim, codebook_size=codebook_size, decay=ema_decay, kmeans_init=kmeans_init,
            threshold_ema_dead_code=dead_code_threshold, use_cosine_sim=cosine,
            commitment_weight=commitment_weight, accept_image_fmap=True)

    @property
    def codebook(self) -> torch.Tensor:
        """[K, D] code vectors (l2-normalised when ``cosine``)."""
        codes = self.vq.codebook.float()
        return F.normalize(codes, dim=-1) if self.cosine else codes

    def set_codebook(self, codes: torch.Tensor) -> None:
        """Replace the codebook by ``codes: [K, D]`` (marks it initialised; EMA statistics restart from it)."""
        book = self.vq._codebook
        book.embed.copy_(codes.reshape(book.embed.shape))
        book.embed_avg.copy_(codes.reshape(book.embed_avg.shape))
        book.cluster_size.fill_(1.0)
        book.initted.fill_(True)

    def _quantize_train(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, indices, aux = self.vq(z)
        return quantized, indices, aux.reshape(())

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        # the same arithmetic as diffusers' VectorQuantizer (argmin of torch.cdist), so ids match it exactly
        flat = z.permute(0, 2, 3, 1).reshape(-1, self.dim)
        if self.cosine:
            flat = F.normalize(flat, dim=-1)
        ids = torch.argmin(torch.cdist(flat, self.codebook), dim=1)
        return ids.reshape(z.shape[0], z.shape[2], z.shape[3])

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2).contiguous()


class FiniteScalarQuantizer(Quantizer):
    """FSQ: each of ``len(levels)`` channels is bounded and rounded to ``levels[i]`` values; no codebook to collapse.

    ``codebook_size = prod(levels)``; ``dim = len(levels)`` (the tokenizer's 1x1 convs project to it).
    """

    def __init__(self, levels: tuple[int, ...]):
        super().__init__()
        from vector_quantize_pytorch import FSQ

        self.fsq = FSQ(levels=list(levels), dim=len(levels))
        self.dim, self.codebook_size = len(levels), int(math.prod(levels))

    def _quantize_train(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, indices = self.fsq(z)
        return quantized, indices, z.new_zeros(())

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        return self.fsq(z)[1]

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.fsq.indices_to_codes(indices)


class LookupFreeQuantizer(Quantizer):
    """LFQ: the sign of each of ``log2(codebook_size)`` channels is one bit of the id; entropy loss spreads usage."""

    def __init__(self, codebook_size: int, *, entropy_weight: float = 0.1, commitment_weight: float = 0.25):
        super().__init__()
        from vector_quantize_pytorch import LFQ

        if codebook_size < 2 or codebook_size & (codebook_size - 1):
            raise InvalidArgumentError("codebook_size", "a power of two for LFQ", codebook_size)
        self.dim, self.codebook_size = int(math.log2(codebook_size)), codebook_size
        self.lfq = LFQ(dim=self.dim, codebook_size=codebook_size, entropy_loss_weight=entropy_weight,
                       commitment_loss_weight=commitment_weight)

    def _quantize_train(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        quantized, indices, aux = self.lfq(z)
        return quantized, indices, aux.reshape(())

    def _nearest(self, z: torch.Tensor) -> torch.Tensor:
        bits = (z > 0).long().permute(0, 2, 3, 1)  # [B, h, w, D], most significant bit first (LFQ's order)
        weights = 2 ** torch.arange(self.dim - 1, -1, -1, device=z.device)
        return (bits * weights).sum(-1)

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        return self.lfq.indices_to_codes(indices).float()


def build_quantizer(kind: QuantizerKind, *, dim: int, codebook_size: int, levels: tuple[int, ...] = (),
                    ema_decay: float = 0.99, kmeans_init: bool = True, dead_code_threshold: float = 2.0,
                    cosine: bool = False, commitment_weight: float = 0.25, entropy_weight: float = 0.1) -> Quantizer:
    """Build the quantizer named ``kind``; ``dim`` must equal what that kind reads (checked here)."""
    if kind == "vq":
        return VectorQuantizer(dim, codebook_size, ema_decay=ema_decay, kmeans_init=kmeans_init,
                               dead_code_threshold=dead_code_threshold, cosine=cosine,
                               commitment_weight=commitment_weight)
    if kind == "fsq":
        if not levels or any(level < 3 for level in levels):
            raise InvalidArgumentError("fsq_levels", "a tuple of levels, each >= 3 (e.g. [8, 5, 5, 5])", levels)
        return FiniteScalarQuantizer(tuple(levels))
    if kind == "lfq":
        return LookupFreeQuantizer(codebook_size, entropy_weight=entropy_weight, commitment_weight=commitment_weight)
    raise InvalidArgumentError("quantizer", "one of 'vq', 'fsq', 'lfq'", kind)


__all__ = ["FiniteScalarQuantizer", "LookupFreeQuantizer", "Quantizer", "QuantizerKind", "QuantizerOutput",
           "VectorQuantizer", "build_quantizer", "code_statistics", "fp32_quantization"]
