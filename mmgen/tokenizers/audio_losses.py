"""Codec training losses: time-domain L1, multi-scale mel, multi-resolution STFT, and an optional multi-scale STFT
discriminator (EnCodec's MS-STFTD: 2D convs over complex spectrograms) with hinge and feature-matching losses.

Spectrograms are torchaudio transforms computed in fp32 (autocast off). Inputs are waveforms ``[B, C, T]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError


@dataclass
class AudioLossConfig:
    """Weights and settings of the codec losses (``key=value`` overrides of ``mmgen train audio-tokenizer``).

    ``disc_weight > 0`` turns the multi-scale STFT discriminator on from step ``disc_start`` (hinge loss,
    ``feature_weight`` × feature matching for the codec). For the first ``quantizer_warmup`` steps the RVQ is
    bypassed (a plain autoencoder), then its codebooks are k-means initialised on informative latents.
    """

    time_weight: float = 0.1
    mel_weight: float = 1.0
    stft_weight: float = 1.0
    mel_scales: tuple[int, ...] = (256, 512, 1024, 2048)
    stft_scales: tuple[int, ...] = (128, 512, 2048)
    disc_weight: float = 0.0
    feature_weight: float = 3.0
    disc_start: int = 0
    disc_filters: int = 16
    disc_scales: tuple[int, ...] = (256, 512, 1024)
    disc_lr_mult: float = 1.0
    quantizer_warmup: int = 0

    def __post_init__(self) -> None:
        for name in ("time_weight", "mel_weight", "stft_weight", "disc_weight", "feature_weight"):
            if getattr(self, name) < 0:
                raise InvalidArgumentError(name, "a number >= 0", getattr(self, name))
        for name in ("mel_scales", "stft_scales", "disc_scales"):
            if any(int(n) < 16 for n in getattr(self, name)):
                raise InvalidArgumentError(name, "window sizes >= 16", getattr(self, name))


def _mono(wav: torch.Tensor) -> torch.Tensor:
    return wav.float().reshape(-1, wav.shape[-1])  # [B·C, T]


class MultiScaleMelLoss(nn.Module):
    """Σ over windows of L1(log-mel) + L1(mel) between reconstruction and target (EnCodec's reconstruction loss)."""

    def __init__(self, sample_rate: int, scales: tuple[int, ...]):
        super().__init__()
        from torchaudio.transforms import MelSpectrogram

        self.mels = nn.ModuleList([
            MelSpectrogram(sample_rate=sample_rate, n_fft=n, win_length=n, hop_length=n // 4,
                           n_mels=min(80, n // 8), power=1.0, normalized=False, center=True)
            for n in scales])

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(reconstruction.device.type, enabled=False):
            fake, real = _mono(reconstruction), _mono(target)
            total = fake.new_zeros(())
            for mel in self.mels:
                a, b = mel(fake), mel(real)
                total = total + (a - b).abs().mean() + (a.clamp_min(1e-5).log() - b.clamp_min(1e-5).log()).abs().mean()
        return total / len(self.mels)


class MultiResolutionSTFTLoss(nn.Module):
    """Σ over resolutions of spectral convergence + L1(log magnitude) (Parallel WaveGAN's auxiliary loss)."""

    def __init__(self, scales: tuple[int, ...]):
        super().__init__()
        self.scales = tuple(int(n) for n in scales)
        for n in self.scales:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _magnitude(self, wav: torch.Tensor, n: int) -> torch.Tensor:
        spec = torch.stft(wav, n, hop_length=n // 4, window=getattr(self, f"window_{n}"), return_complex=True)
        return spec.abs().clamp_min(1e-7)

    def forward(self, reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(reconstruction.device.type, enabled=False):
            fake, real = _mono(reconstruction), _mono(target)
            total = fake.new_zeros(())
            for n in self.scales:
                a, b = self._magnitude(fake, n), self._magnitude(real, n)
                convergence = torch.linalg.norm(b - a) / torch.linalg.norm(b).clamp_min(1e-7)
                total = total + convergence + (a.log() - b.log()).abs().mean()
        return total / len(self.scales)


class STFTDiscriminator(nn.Module):
    """One scale of EnCodec's MS-STFTD: complex STFT as 2·C channels → 2D convs (dilated in time) → logits."""

    def __init__(self, n_fft: int, filters: int, channels: int = 1, depth: int = 3):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        norm = nn.utils.parametrizations.weight_norm
        layers = [norm(nn.Conv2d(2 * channels, filters, (3, 9), padding=(1, 4)))]
        for depth_index in range(depth):
            dilation = 2 ** depth_index
            layers.append(norm(nn.Conv2d(filters, filters, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                         padding=(dilation, 4))))
        layers.append(norm(nn.Conv2d(filters, filters, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.out = norm(nn.Conv2d(filters, 1, (3, 3), padding=(1, 1)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """wav: [B, C, T] → (logits [B, 1, frames, bins'], feature maps)."""
        batch = wav.shape[0]
        spec = torch.stft(_mono(wav), self.n_fft, hop_length=self.n_fft // 4, window=self.window,
                          return_complex=True, normalized=True)  # [B·C, F, frames]
        x = torch.view_as_real(spec).reshape(batch, -1, *spec.shape[1:], 2)  # [B, C, F, frames, 2]
        x = x.permute(0, 1, 4, 3, 2).reshape(batch, -1, spec.shape[2], spec.shape[1])  # [B, 2C, frames, F]
        features = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), 0.2)
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """STFT discriminators at several window sizes; ``forward(wav)`` → list of (logits, features) per scale."""

    def __init__(self, scales: tuple[int, ...], filters: int = 16, channels: int = 1):
        super().__init__()
        self.discriminators = nn.ModuleList([STFTDiscriminator(int(n), filters, channels) for n in scales])

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        with torch.autocast(wav.device.type, enabled=False):
            return [disc(wav.float()) for disc in self.discriminators]


def feature_matching_loss(fake: list[tuple[torch.Tensor, list[torch.Tensor]]],
                          real: list[tuple[torch.Tensor, list[torch.Tensor]]]) -> torch.Tensor:
    """Mean over scales and layers of L1(fake features, real features) / mean |real features| (EnCodec's form)."""
    terms = [(f - r.detach()).abs().mean() / r.detach().abs().mean().clamp_min(1e-5)
             for (_, fake_maps), (_, real_maps) in zip(fake, real) for f, r in zip(fake_maps, real_maps)]
    return torch.stack(terms).mean()


__all__ = ["AudioLossConfig", "MultiResolutionSTFTLoss", "MultiScaleMelLoss", "MultiScaleSTFTDiscriminator",
           "STFTDiscriminator", "feature_matching_loss"]
