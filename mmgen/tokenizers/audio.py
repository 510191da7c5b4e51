"""``AudioTokenizer``: a SEANet/EnCodec-style convolutional codec with residual VQ (audio ↔ token grids [B, q, n]).

::

    wav [B, C, T] in [-1, 1] ─► (RMS normalize) ─► SEANet encoder ─► latents [B, D, n] ─► RVQ ─► ids [B, q, n]
    ids [B, q, n] ─► sum of q codebook lookups ─► SEANet decoder ─► wav [B, C, n·hop] (─► × scale)

``n = ceil(T / hop_length)`` frames at ``frame_rate = sample_rate / hop_length``; level ``i`` of ``q`` refines
the residual of levels ``< i``, so the first ``q`` levels give a bitrate of ``q · log2(codebook_size) · frame_rate``
bits/s (:meth:`AudioTokenizer.quantizers_for_bandwidth`). The config can express EnCodec exactly (weight-normed or
group-normed convs, causal padding, LSTM, RMS normalization, chunked encoding with overlap-add), so transformers'
``EncodecModel`` folders load with identical codes and audio (:meth:`AudioTokenizer.from_encodec`); mmgen's own
speech codecs use lighter settings (fewer filters, no LSTM).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config
from mmgen.tokenizers.istft_decoder import ISTFTDecoder
from mmgen.tokenizers.rvq import ResidualQuantizer
from mmgen.tokenizers.seanet import ConvNorm, SEANetDecoder, SEANetEncoder


@dataclass
class AudioTokenizerConfig:
    """Architecture of an :class:`AudioTokenizer` (field meanings follow EnCodec's; ``ratios`` in decoder order).

    ``latent_norm`` standardises the latents before the RVQ so the codebooks see a stationary distribution while
    the encoder trains, which keeps codebook usage high in short runs: ``"frame"`` (each frame's D channels to
    zero mean and unit variance, identical in training and inference; like DAC's normalized codes) or
    ``"batch"`` / ``True`` (BatchNorm without affine; running statistics at inference, which an encoder can
    defeat by emitting tiny variations around a drifting mean: a short run then encodes everything to one code at
    inference). EnCodec has no such layer: ``False`` for interop.

    ``decoder``: ``seanet`` (EnCodec's transposed-conv decoder) or ``istft`` (Vocos-style: ``istft_layers``
    ConvNeXt blocks of width ``istft_dim`` at the frame rate and an inverse-STFT head with ``istft_n_fft`` bins,
    default 4 · hop; :mod:`mmgen.tokenizers.istft_decoder`), which trains much faster on small budgets.
    """

    sample_rate: int = 16000
    channels: int = 1
    num_filters: int = 32
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    num_residual_layers: int = 1
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    compress: int = 2
    causal: bool = False
    pad_mode: str = "reflect"
    norm: ConvNorm = "weight_norm"
    conv_shortcut: bool = True
    lstm_layers: int = 2
    trim_right_ratio: float = 1.0
    latent_dim: int = 128
    codebook_size: int = 1024
    num_quantizers: int = 8
    normalize: bool = False
    latent_norm: bool | str = False
    chunk_length_s: float | None = None
    overlap: float | None = None
    quantizer_dropout: bool = True
    min_quantizers: int = 1
    codebook_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0
    commitment_weight: float = 1.0
    decoder: str = "seanet"
    istft_dim: int = 256
    istft_layers: int = 8
    istft_n_fft: int | None = None


@dataclass
class AudioCodes:
    """Tokens plus what decoding needs besides them: ``tokens`` [B, q, n]; ``scales`` [B, chunks] (RMS
    normalization only, else ``None``)."""

    tokens: torch.Tensor
    scales: torch.Tensor | None = None


@dataclass
class AudioTokenizerOutput:
    """``AudioTokenizer.forward`` result: ``reconstruction`` [B, C, T]; ``indices`` [B, Q, n] (-1: dropped level);
    ``aux_loss`` scalar; ``levels`` kept this batch; ``perplexity``/``usage`` of level 0 in the batch."""

    reconstruction: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    levels: int
    perplexity: torch.Tensor
    usage: torch.Tensor


class AudioTokenizer(PretrainedModel):
    """Waveforms in [-1, 1] ↔ RVQ token grids ``[B, q, n]``; see the module docstring."""

    config_class = AudioTokenizerConfig
    model_type = "audio_tokenizer"

    def __init__(self, config: AudioTokenizerConfig):
        super().__init__(config)
        if config.norm not in ("weight_norm", "time_group_norm", "none"):
            raise InvalidArgumentError("norm", "weight_norm, time_group_norm or none", config.norm)
        if config.codebook_size < 2 or config.codebook_size & (config.codebook_size - 1):
            raise InvalidArgumentError("codebook_size", "a power of two >= 2", config.codebook_size)
        if config.decoder not in ("seanet", "istft"):
            raise InvalidArgumentError("decoder", "seanet or istft", config.decoder)
        self.encoder = SEANetEncoder(config)
        self.decoder = SEANetDecoder(config) if config.decoder == "seanet" \
            else ISTFTDecoder(config, math.prod(config.ratios))
        self.latent_norm = _latent_norm(config.latent_norm, config.latent_dim)
        self.quantizer = ResidualQuantizer(
            config.latent_dim, config.num_quantizers, config.codebook_size, dropout=config.quantizer_dropout,
            min_levels=config.min_quantizers, ema_decay=config.codebook_decay, kmeans_init=config.kmeans_init,
            dead_code_threshold=config.dead_code_threshold, commitment_weight=config.commitment_weight)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def hop_length(self) -> int:
        return math.prod(self.config.ratios)

    @property
    def frame_rate(self) -> float:
        return self.config.sample_rate / self.hop_length

    @property
    def num_quantizers(self) -> int:
        return self.config.num_quantizers

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output layer weight (for adaptive GAN weighting)."""
        return self.decoder.last_layer

    def _reference_weight(self) -> torch.Tensor:
        """A decoder parameter: the device and dtype inputs are moved to."""
        return next(self.decoder.parameters())

    def kbps(self, num_quantizers: int) -> float:
        """Bitrate in kbit/s of ``num_quantizers`` levels."""
        return num_quantizers * math.log2(self.codebook_size) * math.ceil(self.frame_rate) / 1000.0

    def quantizers_for_bandwidth(self, kbps: float) -> int:
        """The most levels whose bitrate fits in ``kbps`` (at least 1, at most ``num_quantizers``), as EnCodec."""
        if not kbps > 0:
            raise InvalidArgumentError("bandwidth", "a positive number of kbit/s", kbps)
        per_level = math.log2(self.codebook_size) * math.ceil(self.frame_rate)
        return min(self.num_quantizers, max(1, math.floor(kbps * 1000 / per_level)))

    # -------------------------------------------------------------------------------------------- checks
    def check_audio(self, wav: torch.Tensor) -> None:
        """Raise :class:`InvalidArgumentError` unless ``wav`` is a float [B, channels, T] batch with T >= 1."""
        if not isinstance(wav, torch.Tensor) or wav.ndim != 3:
            got = tuple(wav.shape) if isinstance(wav, torch.Tensor) else type(wav).__name__
            raise InvalidArgumentError("wav", f"a tensor [B, {self.channels}, T]", got)
        if wav.shape[1] != self.channels:
            raise InvalidArgumentError("wav", f"{self.channels} channel(s) [B, C, T]", tuple(wav.shape))
        if not wav.is_floating_point():
            raise InvalidArgumentError("wav", "floating-point samples in [-1, 1]", str(wav.dtype))
        if wav.shape[-1] < 1:
            raise InvalidArgumentError("wav", "at least one sample", tuple(wav.shape))

    # ------------------------------------------------------------------------------------------ encoding
    def _chunks(self, length: int) -> list[tuple[int, int]]:
        """(start, end) sample ranges encoded separately: the whole signal, or EnCodec's overlapping chunks."""
        chunk, stride = self._chunk_geometry()
        if chunk is None:
            return [(0, length)]
        return [(start, min(start + chunk, length)) for start in range(0, length, stride)]

    def _chunk_geometry(self) -> tuple[int | None, int]:
        if self.config.chunk_length_s is None:
            return None, 0
        chunk = int(self.config.chunk_length_s * self.sample_rate)
        return chunk, max(1, int((1.0 - (self.config.overlap or 0.0)) * chunk))

    def _normalize(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """EnCodec's RMS normalization of a chunk: (wav / scale, scale [B, 1]) or (wav, None)."""
        if not self.config.normalize:
            return wav, None
        mono = torch.sum(wav, 1, keepdim=True) / wav.shape[1]
        scale = mono.pow(2).mean(dim=-1, keepdim=True).sqrt() + 1e-8
        return wav / scale, scale.view(-1, 1)

    @torch.no_grad()
    def encode_with_scales(self, wav: torch.Tensor, num_quantizers: int | None = None) -> AudioCodes:
        """wav: [B, C, T] in [-1, 1] at ``sample_rate`` → :class:`AudioCodes` (tokens [B, q, n] + scales)."""
        self.check_audio(wav)
        levels = self.quantizer.check_levels(num_quantizers)
        weight = self._reference_weight()
        wav = wav.to(device=weight.device, dtype=weight.dtype)
        tokens, scales = [], []
        for start, end in self._chunks(wav.shape[-1]):
            chunk, scale = self._normalize(wav[..., start:end])
            tokens.append(self.quantizer.encode(self.encode_latents(chunk), levels))
            scales.append(scale)
        return AudioCodes(torch.cat(tokens, dim=-1), torch.cat(scales, dim=1) if scales[0] is not None else None)

    def encode_latents(self, wav: torch.Tensor) -> torch.Tensor:
        """wav: [B, C, T] (already normalized) → pre-quantization latents [B, D, ceil(T / hop_length)]."""
        return self.latent_norm(self.encoder(wav))

    def encode(self, wav: torch.Tensor, num_quantizers: int | None = None) -> torch.Tensor:
        """wav: [B, C, T] in [-1, 1] at ``sample_rate`` → ids [B, q, ceil(T / hop_length)] (int64)."""
        return self.encode_with_scales(wav, num_quantizers).tokens

    # ------------------------------------------------------------------------------------------ decoding
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """latents: [B, D, n] (summed codes) → wav [B, C, n · hop_length]."""
        return self.decoder(latents.to(dtype=self._reference_weight().dtype))

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
        """tokens: [B, q, n] ids (q <= num_quantizers) → wav [B, C, n · hop_length] (chunked models: overlap-add).

        ``scales`` [B, chunks] undo RMS normalization (``normalize`` models; without them the audio comes back at
        unit RMS).
        """
        self.quantizer.check_indices(tokens)
        tokens = tokens.to(self._reference_weight().device)
        chunk, stride = self._chunk_geometry()
        if chunk is None:
            return self._scaled(self.decode_latents(self.quantizer.decode(tokens)), scales, 0)
        frames = math.ceil(chunk / self.hop_length)
        pieces = [self._scaled(self.decode_latents(self.quantizer.decode(tokens[..., start: start + frames])),
                               scales, index) for index, start in enumerate(range(0, tokens.shape[-1], frames))]
        return overlap_add(pieces, stride)

    @staticmethod
    def _scaled(wav: torch.Tensor, scales: torch.Tensor | None, index: int) -> torch.Tensor:
        return wav if scales is None else wav * scales[:, index].view(-1, 1, 1).to(wav)

    @torch.no_grad()
    def reconstruct(self, wav: torch.Tensor, num_quantizers: int | None = None) -> torch.Tensor:
        """wav: [B, C, T] → decode(encode(wav)) trimmed to T samples and clamped to [-1, 1]."""
        codes = self.encode_with_scales(wav, num_quantizers)
        return self.decode(codes.tokens, codes.scales)[..., : wav.shape[-1]].clamp(-1, 1)

    def forward(self, wav: torch.Tensor, quantize: bool = True) -> AudioTokenizerOutput:
        """Training pass. wav: [B, C, T] → :class:`AudioTokenizerOutput` (EMA codebook updates, quantizer dropout).

        ``quantize=False`` bypasses the RVQ (autoencoder warm-up: the codebooks are k-means initialised later on
        latents that already carry information, which avoids early codebook collapse).
        """
        self.check_audio(wav)
        normed, scale = self._normalize(wav)
        latents = self.encode_latents(normed)
        if quantize:
            out = self.quantizer(latents)
            quantized, indices, aux, levels = out.quantized, out.indices, out.aux_loss, out.levels
            perplexity, usage = out.perplexity, out.usage
        else:
            quantized, aux, levels = latents, latents.new_zeros(()), 0
            indices = torch.full((wav.shape[0], self.num_quantizers, latents.shape[-1]), -1, dtype=torch.long,
                                 device=wav.device)
            perplexity, usage = latents.new_zeros(()), latents.new_zeros(())
        recon = self.decoder(quantized)[..., : wav.shape[-1]]
        if scale is not None:
            recon = recon * scale.view(-1, 1, 1)
        return AudioTokenizerOutput(recon, indices, aux, levels, perplexity, usage)

    # ------------------------------------------------------------------------------------------- interop
    @classmethod
    def from_encodec(cls, source: str | Path | nn.Module) -> AudioTokenizer:
        """Load a transformers ``EncodecModel`` (module or saved folder) with identical codes and audio."""
        from mmgen.interop.encodec import tokenizer_from_encodec

        return tokenizer_from_encodec(source)


class FrameNorm(nn.Module):
    """x [B, D, n] → each frame's D channels standardised (zero mean, unit variance, no affine)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.transpose(1, 2), x.shape[1:2], eps=1e-5).transpose(1, 2)


def _latent_norm(kind: bool | str, dim: int) -> nn.Module:
    if kind in (False, "none"):
        return nn.Identity()
    if kind in (True, "batch"):
        return nn.BatchNorm1d(dim, affine=False, momentum=0.01)
    if kind == "frame":
        return FrameNorm()
    raise InvalidArgumentError("latent_norm", "frame, batch or none", kind)


def overlap_add(frames: list[torch.Tensor], stride: int) -> torch.Tensor:
    """frames: chunks [B, C, L_i] starting every ``stride`` samples → [B, C, stride·(k-1) + L_last], cross-faded
    with triangular weights (EnCodec's linear overlap-add; one chunk is returned unchanged)."""
    length = frames[0].shape[-1]
    time = torch.linspace(0, 1, length + 2, device=frames[0].device, dtype=frames[0].dtype)[1:-1]
    weight = 0.5 - (time - 0.5).abs()
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    out = frames[0].new_zeros(*frames[0].shape[:-1], total)
    weights = frames[0].new_zeros(total)
    for index, frame in enumerate(frames):
        offset, size = index * stride, frame.shape[-1]
        out[..., offset: offset + size] += weight[:size] * frame
        weights[offset: offset + size] += weight[:size]
    return out / weights


_TINY: dict[str, Any] = dict(sample_rate=16000, num_filters=4, ratios=(8, 5, 4, 2), lstm_layers=0, latent_dim=16,
                             codebook_size=64, num_quantizers=4, kmeans_init=False)
register_config("audio-codec-tiny", AudioTokenizer.model_type, _TINY)
# The shipped speech codec (assets/codec-speech): 16 kHz, hop 320 (50 frames/s), 8 levels of 1024 codes
# (0.5 kbit/s per level); a SEANet encoder with 16 base filters and no LSTM, and the Vocos-style inverse-STFT decoder
# (8 ConvNeXt blocks of width 256 at 50 frames/s, n_fft 1280), so that it trains on one CPU core (a SEANet decoder
# of this size stayed a frame-rate buzz after 800 steps); 8-dim latents (low-dim codes keep nearest-neighbour
# codebook usage high, as DAC's factorized codes do).
register_config("audio-codec-speech-16k", AudioTokenizer.model_type, dict(
    sample_rate=16000, num_filters=16, ratios=(8, 5, 4, 2), lstm_layers=0, latent_dim=8, latent_norm="frame",
    codebook_size=1024, num_quantizers=8, kmeans_init=True, dead_code_threshold=2.0, commitment_weight=1.0,
    decoder="istft", istft_dim=256, istft_layers=8))
# EnCodec 24 kHz's architecture (facebook/encodec_24khz): causal, 2-layer LSTM, 32 levels of 1024 codes.
register_config("encodec-24khz", AudioTokenizer.model_type, dict(
    sample_rate=24000, num_filters=32, ratios=(8, 5, 4, 2), lstm_layers=2, latent_dim=128, codebook_size=1024,
    num_quantizers=32, causal=True, kmeans_init=False))

__all__ = ["AudioCodes", "AudioTokenizer", "AudioTokenizerConfig", "AudioTokenizerOutput", "FrameNorm", "overlap_add"]
