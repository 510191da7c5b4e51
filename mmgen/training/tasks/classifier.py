"""Train an image classifier (the MNIST class judge) on labelled image shards (``.png/.jpg`` + ``.cls``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.data import ShardStream, decode_sample, expand_shards, read_samples, sample_generator
from mmgen.errors import DataError
from mmgen.pretrained import PretrainedModel
from mmgen.registry import create_model, get_config
from mmgen.training.task import LossOutput, TrainTask


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images [B, C, H, W] (or [C, H, W]) → float32 in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def random_shift(image: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate a [C, H, W] image by up to ``max_shift`` pixels (zero padding), drawn from ``generator``."""
    if max_shift <= 0:
        return image
    dy, dx = (torch.randint(-max_shift, max_shift + 1, (2,), generator=generator)).tolist()
    padded = F.pad(image, (max_shift,) * 4)
    h, w = image.shape[-2:]
    return padded[..., max_shift + dy: max_shift + dy + h, max_shift + dx: max_shift + dx + w]


@dataclass
class LabelledImages:
    """Decoder for labelled image shards: ``image`` float [C, H, W] in [-1, 1] (optionally shifted), ``label``."""

    max_shift: int = 0

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        sample = decode_sample(raw)
        if "image" not in sample or "label" not in sample:
            raise ValueError(f"sample {sample.get('key')!r} needs an image and a .cls label")
        image = to_unit_range(sample["image"])
        image = random_shift(image, self.max_shift, sample_generator(raw))
        return {"image": image, "label": sample["label"]}


class ClassifierModule(nn.Module):
    """Training wrapper: cross-entropy of the classifier's logits (plus accuracy as a metric)."""

    def __init__(self, model: PretrainedModel):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        logits = self.model(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        accuracy = (logits.argmax(-1) == batch["label"]).float().mean()
        return LossOutput(loss=loss, metrics={"accuracy": accuracy.detach()})


@torch.no_grad()
def classification_accuracy(model: nn.Module, samples: list[dict[str, Any]], batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` over decoded ``samples`` (dicts with ``image`` [C,H,W] and ``label``)."""
    device = next(model.parameters()).device
    correct = 0
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = torch.stack([s["image"] for s in chunk]).to(device)
        labels = torch.tensor([s["label"] for s in chunk], device=device)
        correct += int((model(images).argmax(-1) == labels).sum())
    return correct / max(1, len(samples))


class ClassifierTask(TrainTask):
    name = "classifier"

    def __init__(self, data: str, model_name: str, overrides: dict[str, Any], holdout: str | None,
                 batch_size: int, max_shift: int = 2):
        self.train_shards = expand_shards(data, split="train" if Path(data).is_dir() else None)
        self.holdout_shards = expand_shards(holdout or data, split="holdout") if holdout or Path(data).is_dir() \
            else []
        self.model_name, self.overrides = model_name, overrides
        self.batch_size, self.max_shift = batch_size, max_shift
        self._holdout: list[dict[str, Any]] | None = None
        get_config(model_name, **overrides)  # validate overrides early (clear error naming bad keys)

    def build_module(self) -> nn.Module:
        return ClassifierModule(create_model(self.model_name, **self.overrides))

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.model

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        return ShardStream(self.train_shards, LabelledImages(self.max_shift), self.batch_size, seed=seed,
                           rank=rank, world_size=world_size, state=state, shuffle_buffer=2000)

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        if not self.holdout_shards:
            return {}
        if self._holdout is None:
            self._holdout = read_samples(self.holdout_shards, LabelledImages(0))
            if not self._holdout:
                raise DataError(f"no decodable labelled samples in {self.holdout_shards}")
        return {"accuracy": classification_accuracy(model, self._holdout)}

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "overrides": self.overrides, "train_shards": self.train_shards,
                "holdout_shards": self.holdout_shards, "max_shift": self.max_shift}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="digit-classifier-mnist")
    parser.add_argument("--holdout", default=None,
                        help="held-out shards for accuracy (default: DATA's holdout-*.tar when DATA is a folder)")
    parser.add_argument("--max-shift", type=int, default=2, help="random translation augmentation in pixels")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> ClassifierTask:
    """``args``: the parsed CLI namespace (``data``, ``model``, ``train_config``, and this module's flags)."""
    return ClassifierTask(args.data, args.model, model_overrides, args.holdout, args.train_config.batch_size,
                          args.max_shift)
