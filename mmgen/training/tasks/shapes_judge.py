"""Train the shapes attribute judge on freshly rendered, VQ-like degraded scenes (``--data render``).

Every batch is rendered from :mod:`mmgen.data.shapes` (all object pairs, held-out ones included: the judge is an
evaluator, not the generator) and degraded like a VQ tokenizer's reconstructions (blur, down-up sampling, color
gain/offset, fine and blocky noise, JPEG), so the judge stays accurate on decoded images. Batch ``i`` depends only
on ``(seed, rank, i)``, so runs resume exactly. Evaluation: exact object-set accuracy on held-out scenes, clean and
degraded, plus count / position / relation accuracy.
"""

from __future__ import annotations

import argparse
import io
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import IterableDataset, get_worker_info

from mmgen.data.shapes import (
    INVERSE,
    OBJECTS,
    POSITIONS,
    RELATIONS,
    HeldOut,
    iter_samples,
    render_scene,
    sample_scene,
)
from mmgen.errors import InvalidArgumentError
from mmgen.registry import create_model, get_config
from mmgen.training.task import LossOutput, TrainTask

IGNORE = -100
_ALL_PAIRS = HeldOut((), (), frozenset())  # nothing held out: the judge sees every pair
_OBJECT_INDEX = {obj: i for i, obj in enumerate(OBJECTS)}


def scene_targets(scene: dict[str, Any]) -> dict[str, Any]:
    """Judge targets of a scene: ``objects`` (indices), ``count`` (0/1), ``position`` / ``relation`` (or IGNORE).

    ``relation`` is that of the object with the lower :data:`OBJECTS` index relative to the other one.
    """
    keys = [(obj["color"], obj["shape"]) for obj in scene["objects"]]
    relation = IGNORE
    if len(keys) == 2:
        first_listed = _OBJECT_INDEX[keys[0]] < _OBJECT_INDEX[keys[1]]
        name = scene["relation"] if first_listed else INVERSE[scene["relation"]]
        relation = list(RELATIONS).index(name)
    position = list(POSITIONS).index(scene["position"]) if len(keys) == 1 else IGNORE
    return {"objects": [_OBJECT_INDEX[k] for k in keys], "count": len(keys) - 1, "position": position,
            "relation": relation}


def _jpeg(image: Any, quality: int) -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(buffer).convert("RGB")


def _gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """images: [B, C, H, W]; sigmas: [B] (0 = unchanged) → each image blurred with its own separable Gaussian."""
    b, c, h, w = images.shape
    offsets = torch.arange(-2, 3, dtype=images.dtype)
    kernels = torch.exp(-offsets[None] ** 2 / (2 * sigmas.clamp_min(1e-3)[:, None] ** 2))
    kernels = (kernels / kernels.sum(-1, keepdim=True)).repeat_interleave(c, 0)  # [B*C, 5]
    flat = F.pad(images.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="replicate")
    flat = F.conv2d(flat, kernels[:, None, None, :], groups=b * c)
    flat = F.conv2d(flat, kernels[:, None, :, None], groups=b * c)
    return flat.reshape(b, c, h, w)


def degrade(images: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """VQ-reconstruction-like damage on images [B, 3, H, W] in [-1, 1] (each kind drawn per image)."""
    b, _, h, w = images.shape

    def draw(p: float, low: float, high: float, *shape: int) -> torch.Tensor:
        """[B, *shape] values in [low, high) for a share ``p`` of the images, 0 for the others."""
        chosen = (rng.random(b) < p).reshape(b, *[1] * len(shape))
        return torch.from_numpy(np.where(chosen, rng.uniform(low, high, (b, *shape)), 0.0)).float()

    images = _gaussian_blur(images, draw(0.5, 0.3, 1.0))
    downup = torch.from_numpy(rng.random(b) < 0.2)
    if downup.any():
        small = F.interpolate(images[downup], size=(h // 2, w // 2), mode="area")
        images[downup] = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    images = (images + 1) * (1 + draw(0.7, -0.1, 0.1, 3, 1, 1)) - 1 + draw(0.7, -0.06, 0.06, 3, 1, 1)
    fine = torch.from_numpy(rng.standard_normal((b, 3, h, w))).float() * draw(0.5, 0.0, 0.05, 1, 1, 1)
    blocks = torch.from_numpy(rng.standard_normal((b, 3, max(1, h // 4), max(1, w // 4)))).float()
    blocks = F.interpolate(blocks, size=(h, w), mode="nearest") * draw(0.3, 0.0, 0.04, 1, 1, 1)
    return (images + fine + blocks).clamp(-1, 1)


def render_batch(scenes: list[dict[str, Any]], size: int, rng: np.random.Generator | None = None,
                 jpeg_p: float = 0.3) -> torch.Tensor:
    """Scenes → images [B, 3, size, size] in [-1, 1]; with ``rng``, a ``jpeg_p`` share is JPEG-compressed."""
    pictures = []
    for scene in scenes:
        picture = render_scene(scene, size)
        if rng is not None and rng.random() < jpeg_p:
            picture = _jpeg(picture, int(rng.integers(40, 96)))
        pictures.append(np.asarray(picture))
    return torch.from_numpy(np.stack(pictures)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def targets_batch(scenes: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stacked targets: ``objects`` float [B, 24] (multi-hot), ``count``/``position``/``relation`` long [B]."""
    rows = [scene_targets(scene) for scene in scenes]
    objects = torch.zeros(len(rows), len(OBJECTS))
    for i, row in enumerate(rows):
        objects[i, row["objects"]] = 1.0
    labels = {name: torch.tensor([row[name] for row in rows]) for name in ("count", "position", "relation")}
    return {"objects": objects, **labels}


class RenderedShapes(IterableDataset):
    """Endless batches of freshly rendered, degraded scenes; batch ``i`` depends on ``(seed, rank, i)`` only.

    DataLoader workers split the batch indices round-robin (worker ``w`` makes ``start + w``, ``start + w + W``,
    ...), which is the order the loader consumes them in, so ``state`` (a StreamPosition dict) resumes exactly.
    """

    def __init__(self, batch_size: int, image_size: int, seed: int, rank: int = 0,
                 state: dict[str, Any] | None = None):
        self.batch_size, self.image_size, self.seed, self.rank = batch_size, image_size, seed, rank
        self.start = int((state or {}).get("batches", 0))

    def batch(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, self.rank, index])
        scenes = [sample_scene(rng, "train", _ALL_PAIRS) for _ in range(self.batch_size)]
        images = degrade(render_batch(scenes, self.image_size, rng), rng)
        return {"image": images, **targets_batch(scenes)}

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        index, made = self.start + worker, 0
        while True:
            made += 1
            yield {**self.batch(index), "__stream__": {"worker": worker, "workers": workers, "raw": made,
                                                       "skipped": 0}}
            index += workers


def _masked_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows whose target is not IGNORE (0 when there are none)."""
    if not bool((target != IGNORE).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), target, ignore_index=IGNORE)


class JudgeModule(nn.Module):
    """Training wrapper: BCE on the 24 object logits + cross-entropy on count, position and relation."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        out = self.model(batch["image"])
        object_loss = F.binary_cross_entropy_with_logits(out.object_logits.float(), batch["objects"])
        layout_loss = sum(_masked_ce(getattr(out, f"{name}_logits"), batch[name])
                          for name in ("count", "position", "relation"))
        exact = ((out.object_logits > 0) == (batch["objects"] > 0.5)).all(-1).float().mean()
        return LossOutput(loss=object_loss + 0.3 * layout_loss,
                          metrics={"object_loss": object_loss.detach(), "set_accuracy": exact.detach()})


@torch.no_grad()
def judge_metrics(model: nn.Module, images: torch.Tensor, targets: dict[str, torch.Tensor],
                  batch_size: int = 500) -> dict[str, float]:
    """Exact object-set accuracy and count / position / relation accuracy of ``model`` on images [N, 3, H, W]."""
    outs = [model(chunk) for chunk in images.split(batch_size)]
    logits = {name: torch.cat([getattr(o, f"{name}_logits") for o in outs]).float()
              for name in ("object", "count", "position", "relation")}
    metrics = {"set_accuracy": float(((logits["object"] > 0) == (targets["objects"] > 0.5)).all(-1).float().mean())}
    for name in ("count", "position", "relation"):
        valid = targets[name] != IGNORE
        hits = logits[name].argmax(-1)[valid] == targets[name][valid]
        metrics[f"{name}_accuracy"] = float(hits.float().mean()) if bool(valid.any()) else float("nan")
    return metrics


class ShapesJudgeTask(TrainTask):
    """Fresh renders in, the attribute judge out; evaluated on held-out scenes (clean and degraded)."""

    name = "shapes-judge"

    def __init__(self, model_name: str, overrides: dict[str, Any], batch_size: int, image_size: int = 32,
                 eval_samples: int = 1000):
        self.model_name, self.overrides, self.batch_size = model_name, overrides, batch_size
        self.image_size, self.eval_samples = image_size, eval_samples
        get_config(self.model_name, image_size=self.image_size, **self.overrides)  # early, clear config errors
        self._eval: tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]] | None = None

    def build_module(self) -> nn.Module:
        return JudgeModule(create_model(self.model_name, image_size=self.image_size, **self.overrides))

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.model

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> RenderedShapes:
        return RenderedShapes(self.batch_size, self.image_size, seed, rank, state)

    def evaluation_set(self) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(clean images, degraded images, targets) of ``eval_samples`` held-out scenes (fixed seed 1234)."""
        if self._eval is None:
            scenes = [scene for scene, _ in islice(iter_samples("holdout", 1234), self.eval_samples)]
            clean = render_batch(scenes, self.image_size)
            rng = np.random.default_rng(1234)
            self._eval = clean, degrade(render_batch(scenes, self.image_size, rng), rng), targets_batch(scenes)
        return self._eval

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        if self.eval_samples <= 0:
            return {}
        clean, degraded, targets = self.evaluation_set()
        metrics = judge_metrics(model, clean, targets)
        metrics.update({f"degraded_{k}": v for k, v in judge_metrics(model, degraded, targets).items()})
        return metrics

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "overrides": self.overrides, "image_size": self.image_size,
                "eval_samples": self.eval_samples, "data": "render"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="shapes-judge")
    parser.add_argument("--image-size", type=int, default=32, help="rendered image side (default: %(default)s)")
    parser.add_argument("--eval-samples", type=int, default=1000,
                        help="held-out scenes scored at each evaluation (default: %(default)s)")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> ShapesJudgeTask:
    """``--data render`` (the only source: scenes are rendered fresh for every batch)."""
    if args.data != "render":
        raise InvalidArgumentError("--data", "'render' (the shapes judge trains on freshly rendered scenes)",
                                   args.data)
    from mmgen.data.shapes import check_image_size

    return ShapesJudgeTask(args.model, model_overrides, args.train_config.batch_size,
                           check_image_size(args.image_size), args.eval_samples)
