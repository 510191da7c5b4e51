"""Pretrain a BEiT-style encoder: predict a frozen image tokenizer's VQ tokens at masked patches.

``mmgen train mim --target vq --tokenizer DIR --data SHARDS --out RUN [key=value ...]``. The tokenizer (an
:class:`mmgen.tokenizers.ImageTokenizer` folder, e.g. ``assets/vq-mnist``) must give one token per patch (its token
grid equals ``image_size / patch_size``); ``codebook_size`` is taken from it. Masking defaults to BEiT's
block-wise masking at 40% (``masking=random|block|hard``, ``mask_ratio=...``). Evaluation logs the probes as for
``mae``; samples are PNG rows of original | masked input | tokenizer reconstruction | decoded prediction.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.errors import ConfigError, InvalidArgumentError
from mmgen.models.mim.beit import MaskedImageModel
from mmgen.registry import create_model, get_config, load_pretrained
from mmgen.training.task import LossOutput
from mmgen.training.tasks.mae import MIMTask, add_common_arguments, save_rows, show_mask, task_kwargs

TARGETS = ("vq",)


class FrozenTokenizer:
    """Holds the tokenizer outside the trained module (not in its state dict, never trained); encodes in fp32."""

    def __init__(self, tokenizer: nn.Module):
        self.tokenizer = tokenizer.eval().requires_grad_(False)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → token ids [B, h, w] (codebook lookups in fp32, autocast off)."""
        self.tokenizer.to(images.device)
        with torch.autocast(images.device.type, enabled=False):
            return self.tokenizer.encode(images.float())

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        with torch.autocast(tokens.device.type, enabled=False):
            return self.tokenizer.decode(tokens).clamp(-1, 1)


class BEiTModule(nn.Module):
    """Training wrapper: tokenizer targets, then the masked-token cross-entropy."""

    def __init__(self, model: MaskedImageModel, tokenizer: FrozenTokenizer, steps: int):
        super().__init__()
        self.model, self.tokenizer, self.steps = model, tokenizer, steps

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        images = batch["image"]
        out = self.model(images, self.tokenizer.encode(images), progress=step / max(1, self.steps))
        return LossOutput(loss=out.loss, metrics={"token_accuracy": out.accuracy})


def load_tokenizer(path: str | Path, grid: tuple[int, int], image_size: int) -> tuple[FrozenTokenizer, int]:
    """Load the tokenizer folder and check its token grid matches the patch grid; → (tokenizer, codebook_size)."""
    tokenizer = load_pretrained(path)
    if not hasattr(tokenizer, "encode") or not hasattr(tokenizer, "codebook_size"):
        raise ConfigError(f"{path}: not an image tokenizer (needs encode() and codebook_size)")
    token_grid = tuple(tokenizer.token_grid(image_size))
    if token_grid != tuple(grid):
        raise ConfigError(f"{path}: the tokenizer's token grid {token_grid} differs from the patch grid {grid}; "
                          "set patch_size so that image_size / patch_size equals it")
    return FrozenTokenizer(tokenizer), int(tokenizer.codebook_size)


class BEiTTask(MIMTask):
    name = "mim"

    def __init__(self, data: str, model_name: str, overrides: dict[str, Any], *, tokenizer: str | Path,
                 **kwargs: Any):
        config = get_config(model_name, **overrides)
        grid = (config.image_size // config.patch_size,) * 2
        self.tokenizer, codebook_size = load_tokenizer(tokenizer, grid, config.image_size)
        if overrides.get("codebook_size", codebook_size) != codebook_size:
            raise InvalidArgumentError("codebook_size", f"the tokenizer's {codebook_size}",
                                       overrides["codebook_size"])
        super().__init__(data, model_name, {**overrides, "codebook_size": codebook_size}, **kwargs)
        self.tokenizer_path = str(tokenizer)

    def build_module(self) -> nn.Module:
        model = create_model(self.model_name, **self.overrides)
        if not isinstance(model, MaskedImageModel):
            raise ConfigError(f"--model {self.model_name} is not a BEiT-style config (see 'mmgen models list')")
        return BEiTModule(model, self.tokenizer, self.steps)

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        """PNG rows: originals, masked inputs, tokenizer reconstructions, decoded predicted token grids."""
        assert isinstance(model, MaskedImageModel)
        device = next(model.parameters()).device
        images = self._sample_images().to(device)
        targets = self.tokenizer.encode(images)
        mask = model.masking(images.shape[0], model.grid, generator=torch.Generator().manual_seed(0), device=device,
                             scores=model.predict_difficulty(images) if model.masking.needs_scores else None)
        predicted = model.predict_tokens(images, mask, targets)
        rows = [images, show_mask(images, mask, model.config.patch_size), self.tokenizer.decode(targets),
                self.tokenizer.decode(predicted)]
        return [save_rows(rows, out_dir / f"tokens_{step:06d}.png")]

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "target": "vq", "tokenizer": self.tokenizer_path}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="beit-tiny-mnist")
    parser.add_argument("--target", choices=TARGETS, default="vq", help="what masked patches predict")
    parser.add_argument("--tokenizer", required=True, type=Path,
                        help="image tokenizer folder (config.json + model.safetensors) giving the VQ targets")
    add_common_arguments(parser)


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> BEiTTask:
    """``args``: the parsed CLI namespace (``data``, ``model``, ``train_config``, ``tokenizer``, flags)."""
    return BEiTTask(args.data, args.model, model_overrides, tokenizer=args.tokenizer, **task_kwargs(args))
