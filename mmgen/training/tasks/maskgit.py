"""Train a class-conditional (or unconditional) MaskGIT transformer on image shards through a frozen tokenizer."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmgen.data import ShardStream, decode_sample, expand_shards
from mmgen.errors import DataError, InvalidArgumentError
from mmgen.models.masked_transformer import MaskedTransformer
from mmgen.registry import create_model, get_config
from mmgen.sampling import TrainingMasker
from mmgen.training.task import LossOutput, TrainTask
from mmgen.training.tasks.classifier import to_unit_range

TOKENS_MEMBER = "tokens.npy"


def decode_image_or_tokens(raw: dict[str, Any]) -> dict[str, Any]:
    """A shard sample → ``{"tokens": Long [h, w]}`` (pre-tokenized shards) or ``{"image": float [C,H,W]}``, + label."""
    out: dict[str, Any] = {}
    if TOKENS_MEMBER in raw:
        out["tokens"] = torch.from_numpy(np.load(io.BytesIO(raw[TOKENS_MEMBER]), allow_pickle=False)).long()
        sample = decode_sample({k: v for k, v in raw.items() if k != TOKENS_MEMBER})
    else:
        sample = decode_sample(raw)
        if "image" not in sample:
            raise ValueError(f"sample {sample.get('key')!r} has neither an image nor {TOKENS_MEMBER}")
        out["image"] = to_unit_range(sample["image"])
    out["label"] = sample.get("label", -1)
    if "text" in sample:
        out["text"] = sample["text"]
    return out


class MaskGITModule(nn.Module):
    """Training step: tokenize (frozen), mask with the schedule, cross-entropy on masked positions.

    The tokenizer is held outside the module's parameters (it is frozen and not saved with the transformer).
    """

    def __init__(self, transformer: MaskedTransformer, image_tokenizer: nn.Module | None, *,
                 schedule: str = "cosine", cond_dropout: float = 0.1, label_smoothing: float = 0.1):
        super().__init__()
        self.transformer = transformer
        self._tokenizer = [image_tokenizer.eval().requires_grad_(False)] if image_tokenizer is not None else []
        self.masker = TrainingMasker(schedule, mask_id=transformer.mask_id)
        self.cond_dropout, self.label_smoothing = cond_dropout, label_smoothing

    @torch.no_grad()
    def tokens_of(self, batch: dict[str, Any]) -> torch.Tensor:
        if "tokens" in batch:
            return batch["tokens"].long()
        if not self._tokenizer:
            raise DataError("the batch has images but no image tokenizer was given")
        tokenizer = self._tokenizer[0].to(batch["image"].device)
        with torch.autocast(batch["image"].device.type, enabled=False):
            return tokenizer.encode(batch["image"].float())

    def class_labels(self, batch: dict[str, Any]) -> torch.Tensor | None:
        num_classes = self.transformer.config.num_classes
        if num_classes == 0:
            return None
        labels = batch["label"].long()
        if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
            raise DataError(f"class labels must be in [0, {num_classes}) for this model; got "
                            f"[{int(labels.min())}, {int(labels.max())}] (are .cls labels missing?)")
        if self.training and self.cond_dropout > 0:  # classifier-free guidance: learn the null class too
            drop = torch.rand(labels.shape, device=labels.device) < self.cond_dropout
            labels = torch.where(drop, torch.full_like(labels, num_classes), labels)
        return labels

    def model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        """The transformer's conditioning keyword inputs for this batch (with conditioning dropout in training)."""
        return {"class_labels": self.class_labels(batch)}

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        tokens = self.tokens_of(batch)
        flat = tokens.reshape(tokens.shape[0], -1)
        inputs, mask = self.masker(flat)
        logits = self.transformer(inputs.reshape(tokens.shape), **self.model_inputs(batch))
        masked_logits, targets = logits[mask].float(), flat[mask]
        loss = F.cross_entropy(masked_logits, targets, label_smoothing=self.label_smoothing)
        accuracy = (masked_logits.argmax(-1) == targets).float().mean()
        return LossOutput(loss, {"masked_accuracy": accuracy.detach(), "mask_ratio": mask.float().mean().detach()},
                          num_samples=tokens.shape[0])


class MaskGITTask(TrainTask):
    """Class-conditional MaskGIT on image (or pre-tokenized) shards; samples a class grid while training."""

    name = "maskgit"

    def __init__(self, data: str, tokenizer_dir: str | None, model_name: str, overrides: dict[str, Any],
                 batch_size: int, *, schedule: str = "cosine", cond_dropout: float = 0.1, judge: str | None = None,
                 sample_steps: int = 8, guidance: float = 2.0):
        self.shards = expand_shards(data, split="train" if Path(data).is_dir() else None)
        self.tokenizer_dir, self.judge = tokenizer_dir, judge
        self.image_tokenizer = self._load_tokenizer(tokenizer_dir)
        self.overrides = self._fit_to_tokenizer(model_name, overrides)
        self.model_name, self.batch_size = model_name, batch_size
        self.schedule, self.cond_dropout = schedule, cond_dropout
        self.sample_steps, self.guidance = sample_steps, guidance
        get_config(model_name, **self.overrides)

    @staticmethod
    def _load_tokenizer(path: str | None) -> nn.Module | None:
        if path is None:
            return None
        from mmgen.registry import load_pretrained

        return load_pretrained(path)

    def _fit_to_tokenizer(self, model_name: str, overrides: dict[str, Any]) -> dict[str, Any]:
        """The transformer's codebook and grid follow the tokenizer unless set explicitly."""
        if self.image_tokenizer is None:
            return dict(overrides)
        fitted = {"codebook_size": self.image_tokenizer.codebook_size,
                  "grid": list(self.image_tokenizer.token_grid())}
        for key, value in fitted.items():
            if key in overrides and overrides[key] != value:
                raise InvalidArgumentError(key, f"{value} to match the tokenizer {self.tokenizer_dir}", overrides[key])
        return {**overrides, **fitted}

    def build_module(self) -> nn.Module:
        transformer = create_model(self.model_name, **self.overrides)
        return MaskGITModule(transformer, self.image_tokenizer, schedule=self.schedule,
                             cond_dropout=self.cond_dropout)

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.transformer

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        return ShardStream(self.shards, decode_image_or_tokens, self.batch_size, seed=seed, rank=rank,
                           world_size=world_size, state=state, shuffle_buffer=2000)

    def _pipeline(self, model: nn.Module) -> Any:
        from mmgen.pipelines.maskgit import MaskGITPipeline, SamplingOptions

        defaults = SamplingOptions(num_steps=self.sample_steps, guidance_scale=self.guidance)
        return MaskGITPipeline(model, self.image_tokenizer, defaults)

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        if self.image_tokenizer is None or model.config.num_classes == 0:
            return []
        from mmgen.pipelines.images import save_class_grid

        pipe = self._pipeline(model)
        path = out_dir / f"step_{step:08d}.png"
        save_class_grid(pipe, path, per_class=8, zoom=2, num_steps=self.sample_steps, guidance_scale=self.guidance,
                        seed=0)
        return [path]

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        if self.judge is None or self.image_tokenizer is None:
            return {}
        from mmgen.eval.generation import class_accuracy_of_pipeline
        from mmgen.registry import load_pretrained

        if not hasattr(self, "_judge"):
            self._judge = load_pretrained(self.judge)
        judge = self._judge
        return {"class_accuracy": class_accuracy_of_pipeline(self._pipeline(model), judge, per_class=20,
                                                             num_steps=self.sample_steps,
                                                             guidance_scale=self.guidance, seed=1)}

    def on_finish(self, model: nn.Module, out_dir: Path) -> list[Path]:
        """RUN/pipeline: transformer + tokenizer, ready for ``mmgen generate RUN/pipeline``."""
        if self.image_tokenizer is None:
            return []
        return [self._pipeline(model).save_pretrained(out_dir / "pipeline")]

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "overrides": self.overrides, "tokenizer": self.tokenizer_dir,
                "shards": self.shards, "schedule": self.schedule, "cond_dropout": self.cond_dropout}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="maskgit-mnist")
    parser.add_argument("--tokenizer", help="image tokenizer folder (needed unless the shards hold tokens.npy)")
    parser.add_argument("--schedule", default="cosine", help="mask schedule for training masks (cosine, ...)")
    parser.add_argument("--cond-dropout", type=float, default=0.1, help="class dropout for classifier-free guidance")
    parser.add_argument("--judge", help="classifier folder: report class accuracy of samples at eval_every")
    parser.add_argument("--sample-steps", type=int, default=8, help="decoding steps for samples during training")
    parser.add_argument("--guidance", type=float, default=2.0, help="guidance scale for samples during training")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> MaskGITTask:
    return MaskGITTask(args.data, args.tokenizer, args.model, model_overrides, args.train_config.batch_size,
                       schedule=args.schedule, cond_dropout=args.cond_dropout, judge=args.judge,
                       sample_steps=args.sample_steps, guidance=args.guidance)
