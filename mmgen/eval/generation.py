"""Evaluating generators: class accuracy by a judge, FID/KID in a pluggable feature space, diversity.

The feature network is any module with ``features(images [B,C,H,W] in [-1,1]) -> [B, D]`` (mmgen's classifier
judge) wrapped for torchmetrics by :class:`~mmgen.eval.image_metrics.FeatureAdapter`, so FID/KID run offline
with no Inception download; standard Inception features are used when the user supplies them as such a module.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from mmgen.eval.image_metrics import FeatureAdapter


@torch.no_grad()
def generate_per_class(pipe: Any, per_class: int, *, batch_size: int = 100, seed: int = 0,
                       classes: Sequence[int] | None = None, **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of every class → (pixels [N, C, H, W] in [-1, 1], labels [N])."""
    classes = list(range(pipe.transformer.config.num_classes)) if classes is None else list(classes)
    labels = torch.tensor([c for c in classes for _ in range(per_class)])
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    pixels = [pipe(class_labels=chunk.tolist(), generator=generator, **options).pixels.cpu()
              for chunk in labels.split(batch_size)]
    return torch.cat(pixels), labels


@torch.no_grad()
def judge_accuracy(judge: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of images [N, C, H, W] that ``judge`` classifies as ``labels`` [N]."""
    judge = judge.eval()
    correct = 0
    for images, target in zip(pixels.split(batch_size), labels.split(batch_size)):
        correct += int((judge(images).argmax(-1).cpu() == target).sum())
    return correct / max(1, len(labels))


def class_accuracy_of_pipeline(pipe: Any, judge: nn.Module, *, per_class: int = 20, seed: int = 0,
                               **options: Any) -> float:
    pixels, labels = generate_per_class(pipe, per_class, seed=seed, **options)
    return judge_accuracy(judge, pixels, labels)


@torch.no_grad()
def features_of(judge: nn.Module, pixels: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """``judge.features`` of images [N, C, H, W] in [-1, 1] → [N, D]."""
    judge = judge.eval()
    return torch.cat([judge.features(chunk).float() for chunk in pixels.split(batch_size)])


def fid_kid(judge: nn.Module, real: torch.Tensor, fake: torch.Tensor, *, kid_subset_size: int = 200,
            batch_size: int = 256) -> dict[str, float]:
    """FID and KID (torchmetrics) between image sets [N, C, H, W] in [-1, 1], in ``judge``'s feature space."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    extractor = FeatureAdapter(judge)
    size = min(kid_subset_size, len(real), len(fake))
    fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    with warnings.catch_warnings():  # "KID will save all extracted features": expected for these small sets
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=extractor, normalize=True, subset_size=size)
    for metric in (fid, kid):
        for is_real, images in ((True, real), (False, fake)):
            for chunk in images.split(batch_size):
                metric.update(((chunk.float() + 1) / 2).clamp(0, 1), real=is_real)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}


def diversity(features: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean pairwise feature distance within each class, averaged over classes (higher = more diverse)."""
    per_class = []
    for label in labels.unique():
        group = features[labels == label]
        if len(group) > 1:
            dist = torch.cdist(group, group)
            per_class.append(float(dist.sum() / (len(group) * (len(group) - 1))))
    return sum(per_class) / max(1, len(per_class))
