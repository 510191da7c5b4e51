"""Train an RVQ audio codec (SEANet/EnCodec-style) on speech shards: mel/STFT losses, quantizer dropout, optional GAN.

``key=value`` overrides go to the run (steps, lr, ...), to the loss (:class:`AudioLossConfig`: mel_weight,
stft_weight, time_weight, disc_weight, disc_start, ...) or to the model config (num_filters, num_quantizers, ...).
Training reads random 1-2 s segments (``--segment``); evaluation on held-out utterances logs mel distance, SI-SNR
and codebook usage at 1.5 and 3 kbit/s; samples are WAVs (original and reconstructions) and a mel-spectrogram PNG.
"""

from __future__ import annotations

import argparse
import dataclasses
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.cli.args import parse_range
from mmgen.data import ShardStream, decode_sample, expand_shards, read_samples, sample_generator
from mmgen.data.audio_io import resample, to_channels
from mmgen.errors import DataError
from mmgen.registry import create_model, get_config
from mmgen.tokenizers.audio import AudioTokenizer
from mmgen.tokenizers.audio_losses import (
    AudioLossConfig,
    MultiResolutionSTFTLoss,
    MultiScaleMelLoss,
    MultiScaleSTFTDiscriminator,
    feature_matching_loss,
)
from mmgen.training.task import LossOutput, TrainTask

EVAL_BANDWIDTHS = (1.5, 3.0)


# ---------------------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class SpeechSegments:
    """Decoder: raw sample → ``{"audio": float [C, L]}`` at ``sample_rate`` (a random segment of
    ``segment`` = (min_s, max_s) seconds when training; the whole utterance otherwise)."""

    sample_rate: int
    channels: int = 1
    segment: tuple[float, float] = (1.0, 2.0)
    train: bool = True

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        sample = decode_sample(raw)
        if "audio" not in sample:
            raise ValueError(f"sample {sample.get('key')!r} has no audio")
        wav = to_channels(sample["audio"], self.channels)
        if sample["sample_rate"] != self.sample_rate:
            _note_resampling(sample["sample_rate"], self.sample_rate)
            wav = resample(wav, sample["sample_rate"], self.sample_rate)
        wav = wav.clamp(-1, 1)
        return {"audio": self.crop(wav, sample_generator(raw)) if self.train else wav}

    def crop(self, wav: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """[C, T] → [C, L] random segment, L drawn in [min_s, max_s] seconds (zero-padded if the clip is shorter)."""
        low, high = (round(s * self.sample_rate) for s in self.segment)
        length = low + int(torch.randint(high - low + 1, (), generator=generator))
        if wav.shape[-1] < length:
            return F.pad(wav, (0, length - wav.shape[-1]))
        start = int(torch.randint(wav.shape[-1] - length + 1, (), generator=generator))
        return wav[:, start: start + length]


_NOTED: set[tuple[int, int]] = set()


def _note_resampling(source: int, target: int) -> None:
    if (source, target) not in _NOTED:
        _NOTED.add((source, target))
        warnings.warn(f"audio at {source} Hz is resampled to the codec's {target} Hz", stacklevel=3)


def collate_segments(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stack segments cut to the batch's shortest one: ``{"audio": [B, C, L]}``."""
    length = min(s["audio"].shape[-1] for s in samples)
    return {"audio": torch.stack([s["audio"][..., :length] for s in samples])}


# ------------------------------------------------------------------------------------------------ the module
class CodecTrainingModule(nn.Module):
    """The codec plus (when ``disc_weight > 0``) its multi-scale STFT discriminator; ``forward`` sums
    reconstruction losses, the RVQ commitment loss and, from ``disc_start``, the adversarial terms (the
    discriminator sees detached reconstructions; the codec's terms go through a frozen discriminator)."""

    def __init__(self, tokenizer: AudioTokenizer, loss: AudioLossConfig):
        super().__init__()
        self.tokenizer, self.loss_config = tokenizer, loss
        self.mel_loss = MultiScaleMelLoss(tokenizer.sample_rate, tuple(loss.mel_scales))
        self.stft_loss = MultiResolutionSTFTLoss(tuple(loss.stft_scales))
        self.discriminator = MultiScaleSTFTDiscriminator(tuple(loss.disc_scales), loss.disc_filters,
                                                         tokenizer.channels) if loss.disc_weight > 0 else None

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        wav = batch["audio"]
        cfg = self.loss_config
        out = self.tokenizer(wav, quantize=step >= cfg.quantizer_warmup)
        time_l1 = (out.reconstruction - wav).abs().mean()
        mel = self.mel_loss(out.reconstruction, wav)
        stft = self.stft_loss(out.reconstruction, wav) if cfg.stft_weight > 0 else mel.new_zeros(())
        loss = cfg.time_weight * time_l1 + cfg.mel_weight * mel + cfg.stft_weight * stft + out.aux_loss
        metrics: dict[str, Any] = {"l1": time_l1.detach(), "mel": mel.detach(), "stft": stft.detach(),
                                   "aux_loss": out.aux_loss.detach(), "levels": float(out.levels),
                                   "usage": out.usage, "perplexity": out.perplexity}
        if self.discriminator is not None and step >= cfg.disc_start:
            loss = loss + self._adversarial(wav, out.reconstruction, metrics)
        return LossOutput(loss=loss, metrics=metrics, num_samples=wav.shape[0])

    def _adversarial(self, wav: torch.Tensor, recon: torch.Tensor, metrics: dict[str, Any]) -> torch.Tensor:
        from mmgen.models.discriminator import hinge_d_loss, hinge_g_loss

        disc, cfg = self.discriminator, self.loss_config
        real = disc(wav)
        fake_detached = disc(recon.detach())
        d_loss = torch.stack([hinge_d_loss(r[0], f[0]) for r, f in zip(real, fake_detached)]).mean()
        disc.requires_grad_(False)
        try:
            fake = disc(recon)
        finally:
            disc.requires_grad_(True)
        g_loss = torch.stack([hinge_g_loss(f[0]) for f in fake]).mean()
        feat = feature_matching_loss(fake, real)
        metrics.update(d_loss=d_loss.detach(), g_loss=g_loss.detach(), feat=feat.detach())
        return d_loss + cfg.disc_weight * g_loss + cfg.feature_weight * feat


# -------------------------------------------------------------------------------------------------- the task
def _task_overrides(overrides: dict[str, Any]) -> tuple[AudioLossConfig, dict[str, Any]]:
    names = {f.name for f in dataclasses.fields(AudioLossConfig)}
    loss = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if k in names}
    return AudioLossConfig(**loss), {k: v for k, v in overrides.items() if k not in names}


class AudioTokenizerTask(TrainTask):
    """Codec training on ``train`` shards; held-out evaluation, WAV + mel PNG samples."""

    name = "audio-tokenizer"

    def __init__(self, data: str, model_name: str, overrides: dict[str, Any], *, holdout: str | None,
                 batch_size: int, segment: tuple[float, float], eval_samples: int = 20, sample_count: int = 3,
                 base_lr: float = 3e-4):
        self.loss_config, self.model_overrides = _task_overrides(overrides)
        self.model_name = model_name
        self.model_config = get_config(model_name, **self.model_overrides)
        folder = Path(data).is_dir()
        self.train_shards = expand_shards(data, split="train" if folder else None)
        if holdout:
            self.holdout_shards = expand_shards(holdout, split="holdout" if Path(holdout).is_dir() else None)
        else:
            self.holdout_shards = _optional_split(data, "holdout") if folder else []
        self.batch_size, self.segment, self.base_lr = batch_size, segment, base_lr
        self.eval_samples, self.sample_count = eval_samples, sample_count
        self.find_unused_parameters = self.loss_config.disc_weight > 0
        self._holdout: list[torch.Tensor] | None = None

    def build_module(self) -> nn.Module:
        return CodecTrainingModule(create_model(self.model_name, **self.model_overrides), self.loss_config)

    def export_model(self, module: nn.Module) -> nn.Module:
        return module.tokenizer

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        groups = super().param_groups(module.tokenizer)
        if module.discriminator is not None:
            groups.append({"params": list(module.discriminator.parameters()), "betas": (0.5, 0.9),
                           "lr": self.base_lr * self.loss_config.disc_lr_mult, "weight_decay": 0.0})
        return groups

    def _decoder(self, train: bool) -> SpeechSegments:
        cfg = self.model_config
        return SpeechSegments(cfg.sample_rate, cfg.channels, self.segment, train)

    def build_stream(self, *, rank: int, world_size: int, seed: int, state: dict[str, Any] | None) -> ShardStream:
        return ShardStream(self.train_shards, self._decoder(True), self.batch_size, collate_segments, seed=seed,
                           rank=rank, world_size=world_size, state=state, shuffle_buffer=1000)

    def holdout_audio(self) -> list[torch.Tensor]:
        """Held-out utterances [C, T] (whole), read once."""
        if self._holdout is None:
            samples = read_samples(self.holdout_shards, self._decoder(False), limit=self.eval_samples)
            if not samples:
                raise DataError(f"no decodable audio in the held-out shards {self.holdout_shards[:3]}")
            self._holdout = [s["audio"] for s in samples]
        return self._holdout

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        from mmgen.eval.audio_metrics import evaluate_audio_codec

        if not self.holdout_shards:
            return {}
        results = evaluate_audio_codec(model, self.holdout_audio(), EVAL_BANDWIDTHS, baseline=False)
        return {k: v for k, v in results.items() if "@" in k and not k.startswith(("levels", "kbps"))}

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        from mmgen.eval.audio_metrics import write_reconstructions

        if not self.holdout_shards:
            return []
        wavs = self.holdout_audio()[: self.sample_count]
        return write_reconstructions(model, wavs, EVAL_BANDWIDTHS, out_dir / f"step_{step:07d}")

    def config_dict(self) -> dict[str, Any]:
        return {"model": self.model_name, "model_overrides": self.model_overrides,
                "loss": dataclasses.asdict(self.loss_config), "train_shards": self.train_shards,
                "holdout_shards": self.holdout_shards, "segment": list(self.segment)}


def _optional_split(data: str, split: str) -> list[str]:
    try:
        return expand_shards(data, split=split)
    except DataError:
        return []


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="audio-codec-speech-16k")
    parser.add_argument("--holdout", default=None,
                        help="held-out shards (default: DATA's holdout-*.tar if DATA is a folder)")
    parser.add_argument("--segment", default="1-2", help="training segment length in seconds, MIN-MAX (default 1-2)")
    parser.add_argument("--eval-samples", type=int, default=20, help="held-out utterances used by each evaluation")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> AudioTokenizerTask:
    """``args``: the parsed CLI namespace (``data``, ``model``, ``train_config`` and this module's flags)."""
    segment = parse_range(args.segment, float, 0.05, "--segment", "seconds")
    return AudioTokenizerTask(args.data, args.model, model_overrides, holdout=args.holdout,
                              batch_size=args.train_config.batch_size, segment=segment,
                              eval_samples=args.eval_samples, base_lr=args.train_config.lr)
