"""Waveform and feature augmentations for speech recognizers that must also read codec-decoded, generated audio.

Every function works on a padded batch ``wav [B, T]`` with ``lengths [B]`` (samples past an item's length stay
zero), draws its randomness from ``generator`` (a CPU ``torch.Generator``; None = torch's global one, which the
trainer saves and restores, so runs resume exactly) and chooses its effect per item:

* :func:`random_gain`: loudness x 10^(dB/20), dB uniform in ``gain_db``, clipped to [-1, 1] (loud items clip);
* :func:`add_noise`: white noise at an SNR uniform in ``snr_db`` relative to the item's RMS;
* :func:`band_limit`: a smooth low-pass (telephone to wide band) and/or high-pass, through the FFT;
* :func:`codec_resynthesis` / :class:`CodecResynthesis`: encode → decode through a frozen RVQ codec at ``levels``
  quantizers (codes cached per utterance);
* :func:`spec_augment`: SpecAugment-style frequency and time masks on features ``[B, F, M]``.
"""

from __future__ import annotations

from typing import Any

import torch

from mmgen.data.audio_io import resample


def _uniform(low: float, high: float, size: int, generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(size, generator=generator)


def _chosen(p: float, size: int, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(size, generator=generator) < p


def padding_mask(lengths: torch.Tensor, total: int) -> torch.Tensor:
    """lengths [B] → bool [B, total], True at real samples."""
    return torch.arange(total, device=lengths.device)[None] < lengths[:, None]


def random_gain(wav: torch.Tensor, gain_db: tuple[float, float] = (-12.0, 6.0),
                generator: torch.Generator | None = None) -> torch.Tensor:
    """wav [B, T] → [B, T] scaled per item by a random gain in decibels, clipped to [-1, 1]."""
    gain = 10 ** (_uniform(*gain_db, wav.shape[0], generator) / 20)
    return (wav * gain.to(wav)[:, None]).clamp(-1, 1)


def add_noise(wav: torch.Tensor, lengths: torch.Tensor, snr_db: tuple[float, float] = (15.0, 40.0), p: float = 0.5,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """wav [B, T] → [B, T] with white noise on a share ``p`` of the items (padding stays zero)."""
    size, total = wav.shape
    mask = padding_mask(lengths, total).to(wav)
    rms = ((wav.square() * mask).sum(1) / lengths.clamp(min=1).to(wav)).sqrt()
    level = rms.cpu() * 10 ** (-_uniform(*snr_db, size, generator) / 20) * _chosen(p, size, generator)
    noise = torch.randn(size, total, generator=generator).to(wav)
    return wav + noise * level.to(wav)[:, None] * mask


def band_limit(wav: torch.Tensor, lengths: torch.Tensor, sample_rate: int, *, lowpass_p: float = 0.5,
               cutoff_hz: tuple[float, float] = (2500.0, 7000.0), highpass_p: float = 0.3,
               highpass_hz: tuple[float, float] = (50.0, 300.0),
               generator: torch.Generator | None = None) -> torch.Tensor:
    """wav [B, T] → [B, T]: a share ``lowpass_p`` low-passed at a cutoff in ``cutoff_hz`` (a 200 Hz wide
    logistic roll-off), a share ``highpass_p`` high-passed in ``highpass_hz`` (zero-phase, through the FFT)."""
    size, total = wav.shape
    cut = torch.where(_chosen(lowpass_p, size, generator), _uniform(*cutoff_hz, size, generator),
                      torch.full((size,), float("inf")))
    low = torch.where(_chosen(highpass_p, size, generator), _uniform(*highpass_hz, size, generator),
                      torch.zeros(size))
    if torch.isinf(cut).all() and (low == 0).all():
        return wav
    freqs = torch.fft.rfftfreq(total, 1.0 / sample_rate)[None]                      # [1, K]
    response = torch.sigmoid((cut[:, None] - freqs) / 50.0) * torch.sigmoid((freqs - low[:, None]) / 20.0)
    response[torch.isinf(cut) & (low == 0)] = 1.0
    spectrum = torch.fft.rfft(wav.float(), n=total) * response.to(wav.device)
    out = torch.fft.irfft(spectrum, n=total).to(wav.dtype)
    return out * padding_mask(lengths, total).to(out)


@torch.no_grad()
def codec_resynthesis(codec: Any, wav: torch.Tensor, lengths: torch.Tensor, sample_rate: int,
                      levels: int) -> torch.Tensor:
    """wav [B, T] at ``sample_rate`` → [B, T]: ``codec.decode(codec.encode(wav, num_quantizers=levels))``, each item
    alone (so padding never leaks into it; see :class:`CodecResynthesis`); padding stays zero."""
    return CodecResynthesis(codec, sample_rate)(wav, lengths, levels)


class CodecResynthesis:
    """Encode → decode through a frozen RVQ codec, one utterance at a time, on the codec's device (resampled to the
    codec's rate and back when they differ).

    With ``keys``, each utterance's codes at ``max_levels`` are cached in memory (a few hundred bytes per second
    of audio) and its first ``levels`` decoded: the codec is deterministic and RVQ codes are nested (the first q
    levels of a Q-level encoding are the q-level encoding), so every utterance is encoded once per run, and
    encoding is most of the cost (the shipped speech codec: ~3 s per 16 utterances on one CPU core, decoding
    ~0.35 s).
    """

    def __init__(self, codec: Any, sample_rate: int, max_levels: int | None = None):
        self.codec, self.sample_rate = codec, int(sample_rate)
        self.max_levels = int(max_levels or codec.num_quantizers)
        self.cache: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}

    def _codes(self, wav: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        device = next(self.codec.parameters()).device
        x = resample(wav.float(), self.sample_rate, int(self.codec.sample_rate)).clamp(-1, 1).to(device)
        codes = self.codec.encode_with_scales(x[None, None], num_quantizers=levels)
        return codes.tokens.to(torch.int16 if self.codec.codebook_size <= 2**15 else torch.int32), codes.scales

    @torch.no_grad()
    def __call__(self, wav: torch.Tensor, lengths: torch.Tensor, levels: int,
                 keys: list[str] | None = None) -> torch.Tensor:
        """wav [B, T] at ``sample_rate``, lengths [B] → [B, T] resynthesized at ``levels`` quantizers."""
        out = torch.zeros_like(wav)
        device = next(self.codec.parameters()).device
        for row, length in enumerate(lengths.tolist()):
            key = keys[row] if keys is not None else None
            if key is not None and key in self.cache:
                tokens, scales = self.cache[key]
            else:
                tokens, scales = self._codes(wav[row, :length], self.max_levels if key is not None else levels)
                if key is not None:
                    self.cache[key] = tokens, scales
            with torch.autocast(device.type, enabled=False):
                decoded = self.codec.decode(tokens[:, :levels].long(), scales)[0].mean(0)
            decoded = resample(decoded.to(wav.device), int(self.codec.sample_rate), self.sample_rate)[:length]
            out[row, : decoded.shape[0]] = decoded.clamp(-1, 1).to(wav.dtype)
        return out


def spec_augment(features: torch.Tensor, frames: torch.Tensor, *, freq_masks: int = 2, freq_width: int = 10,
                 time_masks_per_s: float = 1.0, time_width: int = 4, frame_rate: float = 100.0,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """features [B, F, M] (valid frames [B]) → [B, F, M] with ``freq_masks`` bands of up to ``freq_width`` bins and
    about ``time_masks_per_s`` spans of up to ``time_width`` frames per second set to 0 (the normalised mean)."""
    size, total, bins = features.shape
    keep = torch.ones(size, total, bins, dtype=torch.bool)
    for _ in range(freq_masks):
        width = torch.randint(0, freq_width + 1, (size,), generator=generator)
        start = (torch.rand(size, generator=generator) * (bins - width + 1)).long()
        band = torch.arange(bins)[None]
        keep &= ~((band >= start[:, None]) & (band < (start + width)[:, None]))[:, None, :]
    count = round(total / frame_rate * time_masks_per_s)
    for _ in range(count):
        width = torch.randint(0, time_width + 1, (size,), generator=generator)
        start = (torch.rand(size, generator=generator) * frames.cpu().clamp(min=1)).long()
        span = torch.arange(total)[None]
        keep &= ~((span >= start[:, None]) & (span < (start + width)[:, None]))[:, :, None]
    return features * keep.to(features.device)


def degrade_speech(wav: torch.Tensor, lengths: torch.Tensor, sample_rate: int,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """The usual chain: :func:`band_limit`, :func:`random_gain`, :func:`add_noise` (each per item)."""
    wav = band_limit(wav, lengths, sample_rate, generator=generator)
    wav = random_gain(wav, generator=generator)
    return add_noise(wav, lengths, generator=generator)


__all__ = ["CodecResynthesis", "add_noise", "band_limit", "codec_resynthesis", "degrade_speech", "padding_mask",
           "random_gain", "spec_augment"]
