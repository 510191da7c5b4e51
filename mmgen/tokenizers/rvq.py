"""Residual vector quantization: vector-quantize-pytorch's ``ResidualVQ`` for training, EnCodec arithmetic for codes.

Training (:meth:`ResidualQuantizer.forward`) uses ``ResidualVQ`` with EMA codebooks, k-means init, dead-code
replacement and *quantizer dropout* (each batch keeps a random number of levels ``>= min_levels``, so one model
serves several bitrates). Inference (:meth:`encode` / :meth:`decode`) reads the same codebooks with EnCodec's exact
nearest-neighbour arithmetic (``argmax -(|x|² - 2 x·e + |e|²)``, summed level by level), so codes and decoded
latents match EnCodec checkpoints bit for bit. Quantization always runs in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError
from mmgen.tokenizers.quantizers import code_statistics, fp32_quantization


@dataclass
class RVQOutput:
    """``ResidualQuantizer.forward`` result.

    Attributes:
        quantized: [B, D, n] sum of the kept levels' codes (straight-through gradients to the input).
        indices: [B, Q, n] ids; levels dropped by quantizer dropout are -1.
        aux_loss: scalar commitment loss (weighted, summed over levels).
        levels: number of levels kept for this batch.
        perplexity: scalar code perplexity of the first level in this batch.
        usage: scalar fraction of the first level's codebook used in this batch.
    """

    quantized: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    levels: int
    perplexity: torch.Tensor
    usage: torch.Tensor


class ResidualQuantizer(nn.Module):
    """``num_quantizers`` levels of ``codebook_size`` codes of dimension ``dim``, each quantizing the residual.

    Args:
        dropout: quantizer dropout during training (random levels per batch in ``[min_levels, num_quantizers]``).
        ema_decay, kmeans_init, dead_code_threshold, commitment_weight: passed to vector-quantize-pytorch.
    """

    def __init__(self, dim: int, num_quantizers: int, codebook_size: int, *, dropout: bool = True,
                 min_levels: int = 1, ema_decay: float = 0.99, kmeans_init: bool = True,
                 dead_code_threshold: float = 2.0, commitment_weight: float = 1.0):
        super().__init__()
        from vector_quantize_pytorch import ResidualVQ

        if not 1 <= min_levels <= num_quantizers:
            raise InvalidArgumentError("min_quantizers", f"an integer in [1, {num_quantizers}]", min_levels)
        self.dim, self.num_quantizers, self.codebook_size = dim, num_quantizers, codebook_size
        self.rvq = ResidualVQ(dim=dim, num_quantizers=num_quantizers, codebook_size=codebook_size,
                              quantize_dropout=dropout, quantize_dropout_cutoff_index=min_levels - 1,
                              decay=ema_decay, kmeans_init=kmeans_init, kmeans_iters=10,
                              threshold_ema_dead_code=dead_code_threshold, commitment_weight=commitment_weight)

    def codebook(self, level: int) -> torch.Tensor:
        """[K, D] fp32 codes of level ``level``."""
        return self.rvq.layers[level]._codebook.embed[0].float()

    def set_codebooks(self, codes: torch.Tensor) -> None:
        """Replace the codebooks by ``codes: [Q, K, D]`` (marked initialised; EMA statistics restart from them)."""
        for level, layer in enumerate(self.rvq.layers):
            book = layer._codebook
            book.embed.copy_(codes[level].reshape(book.embed.shape))
            book.embed_avg.copy_(codes[level].reshape(book.embed_avg.shape))
            book.cluster_size.fill_(1.0)
            book.initted.fill_(True)

    def check_levels(self, num_quantizers: int | None) -> int:
        """``num_quantizers`` (``None``: all levels) checked against ``[1, self.num_quantizers]``."""
        if num_quantizers is None:
            return self.num_quantizers
        if isinstance(num_quantizers, bool) or not 1 <= int(num_quantizers) <= self.num_quantizers:
            raise InvalidArgumentError("num_quantizers", f"an integer in [1, {self.num_quantizers}]", num_quantizers)
        return int(num_quantizers)

    @torch.no_grad()
    def encode(self, z: torch.Tensor, num_quantizers: int | None = None) -> torch.Tensor:
        """z: [B, D, n] → ids [B, q, n] (int64) of the first ``q = num_quantizers`` levels (default: all)."""
        levels = self.check_levels(num_quantizers)
        with fp32_quantization(z.device):
            residual, ids = z.float(), []
            for level in range(levels):
                embed = self.codebook(level)
                flat = residual.permute(0, 2, 1).reshape(-1, self.dim)
                embed_t = embed.t()
                dist = -(flat.pow(2).sum(1, keepdim=True) - 2 * flat @ embed_t + embed_t.pow(2).sum(0, keepdim=True))
                level_ids = dist.max(dim=-1).indices.view(z.shape[0], z.shape[2])
                residual = residual - F.embedding(level_ids, embed).permute(0, 2, 1)
                ids.append(level_ids)
        return torch.stack(ids, dim=1)

    def decode(self, indices: torch.Tensor) -> torch.Tensor:
        """indices: [B, q, n] ids (q <= num_quantizers) → summed codes [B, D, n] (fp32)."""
        self.check_indices(indices)
        with fp32_quantization(indices.device):
            total = torch.full((), 0.0, device=indices.device)
            for level in range(indices.shape[1]):
                total = total + F.embedding(indices[:, level], self.codebook(level)).permute(0, 2, 1)
        return total

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise :class:`InvalidArgumentError` unless ``indices`` are integer ids [B, q, n] inside the codebooks."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 3:
            got = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise InvalidArgumentError("tokens", "a tensor of ids [B, q, n]", got)
        if indices.is_floating_point() or indices.is_complex() or indices.dtype == torch.bool:
            raise InvalidArgumentError("tokens", "an integer tensor of token ids", str(indices.dtype))
        if not 1 <= indices.shape[1] <= self.num_quantizers:
            raise InvalidArgumentError("tokens", f"1 to {self.num_quantizers} levels [B, q, n]", tuple(indices.shape))
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.codebook_size):
            raise InvalidArgumentError("tokens", f"ids in [0, {self.codebook_size - 1}]",
                                       f"ids in [{int(indices.min())}, {int(indices.max())}]")

    def forward(self, z: torch.Tensor) -> RVQOutput:
        """Training pass. z: [B, D, n] → :class:`RVQOutput` (updates the EMA codebooks; dropout when training)."""
        with fp32_quantization(z.device):
            quantized, indices, losses = self.rvq(z.float().transpose(1, 2))
        indices = indices.transpose(1, 2).long()  # [B, Q, n]
        levels = int((indices[0, :, 0] >= 0).sum()) if indices.numel() else self.num_quantizers
        perplexity, usage = code_statistics(indices[:, 0].detach(), self.codebook_size)
        return RVQOutput(quantized.transpose(1, 2).to(z.dtype), indices, losses.sum().float(), levels, perplexity,
                         usage)


__all__ = ["RVQOutput", "ResidualQuantizer"]
