"""Image reconstruction metrics: PSNR, SSIM, codebook usage/perplexity, and FID/KID with a pluggable feature net.

All image inputs are [B, C, H, W] in [-1, 1]; PSNR and SSIM are computed per image on the [0, 1] scale
(``data_range = 1``) and averaged over images. FID/KID go through torchmetrics with any feature network that has
``features(images [B, C, H, W] in [-1, 1]) -> [B, F]`` and ``num_features`` (e.g. mmgen's ``DigitClassifier``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from mmgen.errors import InvalidArgumentError


def _unit(images: torch.Tensor) -> torch.Tensor:
    return ((images.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def psnr(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] pairs in [-1, 1] → per-image PSNR in dB on the [0, 1] scale, [B] (capped at 100 dB)."""
    mse = (_unit(reconstruction) - _unit(target)).square().flatten(1).mean(1)
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))).clamp_max(100.0)


def ssim(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] pairs in [-1, 1] → per-image SSIM (Gaussian window 11, sigma 1.5, on [0, 1]), [B]."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    kernel = min(11, (min(reconstruction.shape[-2:]) - 1) // 2 * 2 + 1)
    return structural_similarity_index_measure(_unit(reconstruction), _unit(target), data_range=1.0,
                                               kernel_size=kernel, reduction="none")


@dataclass
class CodebookStats:
    """Accumulates a histogram of token ids over an evaluation set.

    ``usage``: fraction of the codebook used at least once; ``perplexity``: exp(entropy) of the id histogram
    (equals ``codebook_size`` for perfectly uniform use).
    """

    codebook_size: int
    counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.counts = torch.zeros(self.codebook_size, dtype=torch.float64)

    def update(self, tokens: torch.Tensor) -> None:
        """tokens: any shape of ids in [0, codebook_size)."""
        ids = tokens.reshape(-1).long().cpu()
        self.counts += torch.bincount(ids, minlength=self.codebook_size).double()[: self.codebook_size]

    def compute(self) -> dict[str, float]:
        probs = self.counts / self.counts.sum().clamp_min(1.0)
        entropy = -(probs * probs.clamp_min(1e-300).log()).sum()
        return {"usage": float((self.counts > 0).double().mean()), "perplexity": float(entropy.exp()),
                "codes_used": int((self.counts > 0).sum())}


class FeatureAdapter(nn.Module):
    """Makes a network with ``features(images in [-1, 1])`` usable as torchmetrics' FID/KID ``feature=``.

    torchmetrics calls it on images in [0, 1] (``normalize=True``); it maps them back to [-1, 1].
    """

    def __init__(self, network: nn.Module):
        super().__init__()
        if not hasattr(network, "features") or not callable(network.features):
            raise InvalidArgumentError("--features", "a model with a features(images) method",
                                       type(network).__name__)
        self.network = network.eval()
        self.num_features = int(getattr(network, "num_features", 0)) or None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: float [B, C, H, W] in [0, 1] (or uint8 in [0, 255]) → features [B, D]."""
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return self.network.features(images * 2.0 - 1.0).float()


class FeatureDistances:
    """FID (and KID when enough samples) between real and reconstructed images in a feature network's space."""

    def __init__(self, network: nn.Module, kid_subset: int = 100):
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance

        adapter = FeatureAdapter(network)
        self.fid = FrechetInceptionDistance(feature=adapter, normalize=True)
        self.kid = KernelInceptionDistance(feature=adapter, normalize=True, subset_size=kid_subset)
        self.kid_subset, self.count = kid_subset, 0

    @torch.no_grad()
    def update(self, reconstruction: torch.Tensor, target: torch.Tensor) -> None:
        """[B, C, H, W] pairs in [-1, 1]."""
        for metric in (self.fid, self.kid):
            metric.update(_unit(target), real=True)
            metric.update(_unit(reconstruction), real=False)
        self.count += target.shape[0]

    def compute(self) -> dict[str, float]:
        if self.count < 2:
            return {}
        out = {"rfid": float(self.fid.compute())}
        if self.count >= self.kid_subset:
            out["rkid"] = float(self.kid.compute()[0])
        return out


@torch.no_grad()
def evaluate_tokenizer(tokenizer: Any, batches: Iterable[torch.Tensor], *,
                       features: nn.Module | None = None) -> dict[str, float]:
    """Reconstruct every batch ([B, C, H, W] in [-1, 1]) and return mean PSNR/SSIM, usage, perplexity (+ rFID/rKID).

    Tokens come from ``tokenizer.encode`` (the inference path), so usage/perplexity describe the ids a downstream
    model will see.
    """
    stats = CodebookStats(tokenizer.codebook_size)
    distances = FeatureDistances(features) if features is not None else None
    psnrs, ssims = [], []
    device = next(tokenizer.parameters()).device
    for images in batches:
        images = images.to(device=device, dtype=torch.float32)
        tokens = tokenizer.encode(images)
        recon = tokenizer.decode(tokens).float().clamp(-1.0, 1.0)
        stats.update(tokens)
        psnrs.append(psnr(recon, images).cpu())
        ssims.append(ssim(recon, images).cpu())
        if distances is not None:
            distances.update(recon.cpu(), images.cpu())
    if not psnrs:
        raise InvalidArgumentError("eval set", "at least one image", 0)
    results = {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean()), **stats.compute(),
               "images": sum(len(p) for p in psnrs)}
    if distances is not None:
        results.update(distances.compute())
    return results


__all__ = ["CodebookStats", "FeatureAdapter", "FeatureDistances", "evaluate_tokenizer", "psnr", "ssim"]
