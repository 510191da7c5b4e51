"""Train a VQ image tokenizer (VQGAN-style: L1/L2 + optional perceptual + PatchGAN) on image shards.

``key=value`` overrides go to the run (steps, lr, ...), to the loss (:class:`TokenizerLossConfig`: recon_loss,
disc_weight, disc_start, perceptual_weight, ...) or to the model config (codebook_size, quantizer, ...).
Evaluation on the held-out shards logs PSNR, SSIM, codebook usage and perplexity; samples are PNG grids of
original | reconstruction pairs.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.data import ShardStream, decode_sample, expand_shards, read_samples, sample_generator
from mmgen.errors import DataError, InvalidArgumentError
from mmgen.registry import create_model, get_config
from mmgen.tokenizers.image import ImageTokenizer
from mmgen.tokenizers.losses import (
    PerceptualLoss,
    TokenizerLossConfig,
    adaptive_weight,
    gan_generator_factor,
    reconstruction_loss,
)
from mmgen.training.task import LossOutput, TrainTask


# ---------------------------------------------------------------------------------------------------- data
def match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """[C, H, W] → [channels, H, W]: gray repeated to RGB, RGB averaged to gray (luma weights)."""
    if image.shape[0] == channels:
        return image
    if image.shape[0] == 1:
        return image.expand(channels, -1, -1)
    if channels == 1 and image.shape[0] == 3:
        luma = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
        return (image * luma).sum(0, keepdim=True)
    raise DataError(f"cannot map a {image.shape[0]}-channel image to {channels} channels")


def crop_box(height: int, width: int, min_scale: float, generator: torch.Generator | None) -> tuple[int, ...]:
    """(top, left, h, w) of a random-resized crop (area in [min_scale, 1], aspect in [3/4, 4/3]); centred
    square of the short side when ``generator`` is None (evaluation)."""
    if generator is None:
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side
    uniform = torch.rand(4, generator=generator).tolist()
    area = height * width * (min_scale + (1.0 - min_scale) * uniform[0])
    ratio = math.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * uniform[1])
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    return int(uniform[2] * (height - h + 1)), int(uniform[3] * (width - w + 1)), h, w


@dataclasses.dataclass
class TokenizerImages:
    """Decoder: raw sample → ``{"image": float [C, size, size] in [-1, 1]}`` (random-resized crop when training)."""

    size: int
    channels: int
    min_scale: float = 1.0
    train: bool = True

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        sample = decode_sample(raw)
        if "image" not in sample:
            raise ValueError(f"sample {sample.get('key')!r} has no image")
        random_crop = self.train and (self.min_scale < 1.0 or sample["image"].shape[-1] != sample["image"].shape[-2])
        return {"image": self.prepare(sample["image"], sample_generator(raw) if random_crop else None)}

    def prepare(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """uint8 [C, H, W] → float [channels, size, size] in [-1, 1] (random crop with ``generator``, else centre)."""
        image = match_channels(image.float().div(127.5).sub(1.0), self.channels)
        top, left, h, w = crop_box(image.shape[-2], image.shape[-1], self.min_scale, generator)
        image = image[:, top: top + h, left: left + w]
        if (h, w) != (self.size, self.size):
            image = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)[0]
        return image.clamp(-1.0, 1.0)


# ------------------------------------------------------------------------------------------------ the module
class TokenizerTrainingModule(nn.Module):
    """Everything that trains: the tokenizer and (when ``disc_weight > 0``) its PatchGAN discriminator.

    ``forward(batch, step)``: reconstruction (+ perceptual) + quantizer loss for the tokenizer; from ``disc_start``
    the discriminator's hinge loss on detached reconstructions; from ``disc_start + disc_warmup`` the generator's
    adversarial loss through a frozen discriminator, adaptively weighted and ramped. One backward of the sum
    updates each part with its own gradients only.
    """

    def __init__(self, tokenizer: ImageTokenizer, loss: TokenizerLossConfig):
        super().__init__()
        from mmgen.models.discriminator import PatchDiscriminator, PatchDiscriminatorConfig

        self.tokenizer, self.loss_config = tokenizer, loss
        self.discriminator = PatchDiscriminator(PatchDiscriminatorConfig(
            tokenizer.config.out_channels, loss.disc_channels, loss.disc_layers)) if loss.disc_weight > 0 else None
        # kept out of the state dict (frozen, never checkpointed): a tuple hides it from nn.Module registration
        self._perceptual = (PerceptualLoss(loss.perceptual_weights),) if loss.perceptual_weight > 0 else ()

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        images = batch["image"]
        out = self.tokenizer(images)
        rec = reconstruction_loss(out.reconstruction, images, self.loss_config.recon_loss)
        metrics: dict[str, Any] = {"rec_loss": rec.detach(), "aux_loss": out.aux_loss.detach(),
                                   "perplexity": out.perplexity, "usage": out.usage}
        if self._perceptual:
            perceptual = self._perceptual[0].to(images.device)(out.reconstruction, images)
            rec = rec + self.loss_config.perceptual_weight * perceptual
            metrics["perceptual"] = perceptual.detach()
        loss = rec + out.aux_loss
        if self.discriminator is not None and step >= self.loss_config.disc_start:
            loss = loss + self._adversarial(images, out.reconstruction, rec, step, metrics)
        with torch.no_grad():
            mse = (out.reconstruction.float().clamp(-1, 1) - images.float()).square().mean() / 4.0
            metrics["psnr"] = -10.0 * torch.log10(mse.clamp_min(1e-10))
        return LossOutput(loss=loss, metrics=metrics, num_samples=images.shape[0])

    def _adversarial(self, images: torch.Tensor, recon: torch.Tensor, rec: torch.Tensor, step: int,
                     metrics: dict[str, Any]) -> torch.Tensor:
        """Discriminator loss (detached fakes) + ramped, adaptively weighted generator loss (frozen D)."""
        from mmgen.models.discriminator import hinge_d_loss, hinge_g_loss

        disc = self.discriminator
        d_loss = hinge_d_loss(disc(images), disc(recon.detach()))
        metrics["d_loss"] = d_loss.detach()
        factor = gan_generator_factor(step, self.loss_config)
        if factor <= 0:
            return d_loss
        disc.requires_grad_(False)
        try:
            g_loss = hinge_g_loss(disc(recon))
        finally:
            disc.requires_grad_(True)
        weight = adaptive_weight(rec, g_loss, self.tokenizer.last_layer, self.loss_config.adaptive_weight_max)
        metrics.update(g_loss=g_loss.detach(), gan_weight=weight * factor)
        return d_loss + factor * weight * g_loss


# -------------------------------------------------------------------------------------------------- the task
def _task_overrides(overrides: dict[str, Any]) -> tuple[TokenizerLossConfig, dict[str, Any]]:
    """Split ``key=value`` overrides into the loss config and the model config overrides."""
    names = {f.name for f in dataclasses.fields(TokenizerLossConfig)}
    loss = TokenizerLossConfig(**{k: v for k, v in overrides.items() if k in names})
    return loss, {k: v for k, v in overrides.items() if k not in names}


class ImageTokenizerTask(TrainTask):
    """Tokenizer training on ``train`` shards; held-out evaluation and reconstruction grids."""

    name = "image-tokenizer"

    def __init__(self, data: str, model_name: str, overrides: dict[str, Any], *, holdout: str | None,
                 batch_size: int, min_scale: float = 1.0, eval_samples: int = 500, sample_count: int = 16):
        self.loss_config, self.model_overrides = _task_overrides(overrides)
        self.model_name = model_name
        self.model_config = get_config(model_name, **self.model_overrides)  # clear errors for bad keys early
        folder = Path(data).is_dir()
        self.train_shards = expand_shards(data, split="train" if folder else None)
        self.holdout_shards = expand_shards(holdout, split="holdout" if Path(holdout).is_dir() else None) \
            if holdout else (_optional_split(data, "holdout") if folder else [])
        self.batch_size, self.min_scale = batch_size, min_scale
        self.eval_samples, self.sample_count = eval_samples, sample_count
        self.find_unused_parameters = self.loss_config.disc_weight > 0  # D idles before disc_start
        self._holdout: torch.Tensor | None = None

    def build_module(self) -> nn.Module:
        tokenizer = create_model(self.model_name, **self.model_overrides)
        return TokenizerTrainingModule(tokenizer, self.loss_config)

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.tokenizer

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        groups = super().param_groups(module.tokenizer)
        if module.discriminator is not None:
            lr = self._base_lr * self.loss_config.disc_lr_mult
            groups.append({"params": list(module.discriminator.parameters()), "lr": lr, "betas": (0.5, 0.9),
                           "weight_decay": 0.0})
        return groups

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        decode = TokenizerImages(self.model_config.image_size, self.model_config.in_channels, self.min_scale)
        return ShardStream(self.train_shards, decode, self.batch_size, seed=seed, rank=rank,
                           world_size=world_size, state=state, shuffle_buffer=2000)

    def holdout_images(self) -> torch.Tensor:
        """[N, C, S, S] held-out images in [-1, 1] (centre crops), read once."""
        if self._holdout is None:
            decode = TokenizerImages(self.model_config.image_size, self.model_config.in_channels, train=False)
            samples = read_samples(self.holdout_shards, decode, limit=self.eval_samples)
            if not samples:
                raise DataError(f"no decodable images in the held-out shards {self.holdout_shards[:3]}")
            self._holdout = torch.stack([s["image"] for s in samples])
        return self._holdout

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        from mmgen.eval.image_metrics import evaluate_tokenizer

        if not self.holdout_shards:
            return {}
        images = self.holdout_images()
        return evaluate_tokenizer(model, images.split(100))

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        if not self.holdout_shards:
            return []
        images = self.holdout_images()[: self.sample_count]
        device = next(model.parameters()).device
        recon = model.reconstruct(images.to(device)).cpu()
        return [save_pairs_grid(images, recon, out_dir / f"recon_{step:07d}.png")]

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "model_overrides": self.model_overrides,
                "loss": dataclasses.asdict(self.loss_config), "train_shards": self.train_shards,
                "holdout_shards": self.holdout_shards, "min_scale": self.min_scale}

    _base_lr: float = 3e-4


def _optional_split(data: str, split: str) -> list[str]:
    try:
        return expand_shards(data, split=split)
    except DataError:
        return []


def save_pairs_grid(originals: torch.Tensor, reconstructions: torch.Tensor, path: Path) -> Path:
    """Write a PNG grid of (original | reconstruction) pairs, two pairs per row; inputs [N, C, H, W] in [-1, 1]."""
    from torchvision.utils import save_image

    pairs = torch.stack([originals, reconstructions.clamp(-1, 1)], dim=1).flatten(0, 1)  # [2N, C, H, W]
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image((pairs + 1) / 2, str(path), nrow=4, padding=2, pad_value=0.5)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="vq-mnist")
    parser.add_argument("--holdout", default=None,
                        help="held-out shards for PSNR/SSIM/usage (default: DATA's holdout-*.tar if DATA is a folder)")
    parser.add_argument("--min-scale", type=float, default=1.0,
                        help="random-resized-crop minimum area fraction (1.0: whole image, resized)")
    parser.add_argument("--eval-samples", type=int, default=500, help="held-out images used by each evaluation")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> ImageTokenizerTask:
    """``args``: the parsed CLI namespace (``data``, ``model``, ``train_config`` and this module's flags)."""
    if not 0.0 < args.min_scale <= 1.0:
        raise InvalidArgumentError("--min-scale", "a number in (0, 1]", args.min_scale)
    task = ImageTokenizerTask(args.data, args.model, model_overrides, holdout=args.holdout,
                              batch_size=args.train_config.batch_size, min_scale=args.min_scale,
                              eval_samples=args.eval_samples)
    task._base_lr = args.train_config.lr
    return task
