"""SEANet convolutional encoder/decoder (the EnCodec architecture), configurable down to small CPU-sized codecs.

The modules and parameter names follow EnCodec (as written in ``transformers.models.encodec``) one to one, so an
EnCodec checkpoint loads with a plain key copy: convolutions with weight norm (``torch.nn.utils.parametrizations``)
or per-time-step group norm, causal or centred ("same") padding with reflect/zero modes, residual units with
dilations and a 1x1 conv shortcut, an optional LSTM at the bottleneck. Layouts are ``[B, C, T]`` throughout::

    encoder: conv(k) → [res units → ELU → strided conv (2r, stride r)] per ratio → LSTM → ELU → conv → [B, D, T/hop]
    decoder: conv(k) → LSTM → [ELU → transposed conv (2r, stride r) → res units] per ratio → ELU → conv → [B, C, T]
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ConvNorm = Literal["weight_norm", "time_group_norm", "none"]


def pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """x: [B, C, T] padded by (left, right); reflect padding of inputs shorter than the pad adds zeros first."""
    if mode != "reflect":
        return F.pad(x, (left, right), "constant" if mode == "zero" else mode)
    extra = max(0, max(left, right) - x.shape[-1] + 1)
    if extra:
        x = F.pad(x, (0, extra))
    padded = F.pad(x, (left, right), mode)
    return padded[..., : padded.shape[-1] - extra]


def _normed(conv: nn.Module, norm: ConvNorm) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(conv) if norm == "weight_norm" else conv


class SConv1d(nn.Module):
    """Conv1d with causal or centred padding sized so that ``T_out = ceil(T / stride)``, plus its norm.

    Args:
        norm: ``weight_norm`` (weight-normalised conv), ``time_group_norm`` (GroupNorm(1, C) after the conv) or
            ``none``.
        causal: pad everything on the left (streaming); otherwise split the padding, the larger half on the left.
        pad_mode: ``reflect`` (EnCodec's default), ``constant`` (zeros) or ``replicate``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, dilation: int = 1, *,
                 causal: bool = False, pad_mode: str = "reflect", norm: ConvNorm = "weight_norm"):
        super().__init__()
        self.causal, self.pad_mode = causal, pad_mode
        self.conv = _normed(nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation), norm)
        if norm == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels)
        self.effective_kernel = (kernel_size - 1) * dilation + 1
        self.stride = stride
        self.padding_total = self.effective_kernel - stride

    def extra_padding(self, length: int) -> int:
        """Right padding that makes the last window complete (so no input sample is dropped)."""
        frames = math.ceil((length - self.effective_kernel + self.padding_total) / self.stride + 1) - 1
        return frames * self.stride + self.effective_kernel - self.padding_total - length

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, T] → [B, C_out, ceil(T / stride)]."""
        extra = self.extra_padding(x.shape[-1])
        if self.causal:
            x = pad1d(x, self.padding_total, extra, self.pad_mode)
        else:
            right = self.padding_total // 2
            x = pad1d(x, self.padding_total - right, right + extra, self.pad_mode)
        x = self.conv(x)
        return self.norm(x) if hasattr(self, "norm") else x


class SConvTranspose1d(nn.Module):
    """ConvTranspose1d that upsamples by exactly ``stride`` (fixed padding trimmed; causal trims on the right)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, *,
                 causal: bool = False, norm: ConvNorm = "weight_norm", trim_right_ratio: float = 1.0):
        super().__init__()
        self.causal, self.trim_right_ratio = causal, trim_right_ratio
        self.conv = _normed(nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride), norm)
        if norm == "time_group_norm":
            self.norm = nn.GroupNorm(1, out_channels)
        self.padding_total = kernel_size - stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, n] → [B, C_out, n * stride]."""
        x = self.conv(x)
        if hasattr(self, "norm"):
            x = self.norm(x)
        right = math.ceil(self.padding_total * self.trim_right_ratio) if self.causal else self.padding_total // 2
        left = self.padding_total - right
        return x[..., left: x.shape[-1] - right]


class SLSTM(nn.Module):
    """A stack of LSTMs over time with a residual connection; x: [B, C, n] → [B, C, n]."""

    def __init__(self, dim: int, num_layers: int):
        super().__init__()
        self.lstm = nn.LSTM(dim, dim, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(2, 0, 1)
        x = self.lstm(x)[0] + x
        return x.permute(1, 2, 0)


class ResnetBlock(nn.Module):
    """SEANet residual unit: ELU → conv(k, dilation) to dim/compress → ELU → conv(1) back, plus a shortcut."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, *, compress: int, conv_shortcut: bool,
                 **conv: object):
        super().__init__()
        hidden = dim // compress
        self.block = nn.ModuleList([nn.ELU(), SConv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
                                    nn.ELU(), SConv1d(hidden, dim, 1, **conv)])
        self.shortcut = SConv1d(dim, dim, 1, **conv) if conv_shortcut else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        for layer in self.block:
            x = layer(x)
        return self.shortcut(residual) + x


class _Stack(nn.Module):
    """Runs ``self.layers`` in order."""

    layers: nn.ModuleList

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _conv_options(config: object) -> dict[str, object]:
    return {"causal": config.causal, "pad_mode": config.pad_mode, "norm": config.norm}


def _res_units(config: object, dim: int) -> list[nn.Module]:
    return [ResnetBlock(dim, config.residual_kernel_size, config.dilation_growth_rate ** j,
                        compress=config.compress, conv_shortcut=config.conv_shortcut, **_conv_options(config))
            for j in range(config.num_residual_layers)]


class SEANetEncoder(_Stack):
    """audio [B, channels, T] → latents [B, latent_dim, ceil(T / hop)] (``config``: an AudioTokenizerConfig)."""

    def __init__(self, config: object):
        super().__init__()
        conv, width = _conv_options(config), config.num_filters
        layers: list[nn.Module] = [SConv1d(config.channels, width, config.kernel_size, **conv)]
        for ratio in reversed(config.ratios):
            layers += _res_units(config, width)
            layers += [nn.ELU(), SConv1d(width, width * 2, ratio * 2, stride=ratio, **conv)]
            width *= 2
        if config.lstm_layers:
            layers.append(SLSTM(width, config.lstm_layers))
        layers += [nn.ELU(), SConv1d(width, config.latent_dim, config.last_kernel_size, **conv)]
        self.layers = nn.ModuleList(layers)


class SEANetDecoder(_Stack):
    """latents [B, latent_dim, n] → audio [B, channels, n * hop]."""

    def __init__(self, config: object):
        super().__init__()
        conv = _conv_options(config)
        width = config.num_filters * 2 ** len(config.ratios)
        layers: list[nn.Module] = [SConv1d(config.latent_dim, width, config.kernel_size, **conv)]
        if config.lstm_layers:
            layers.append(SLSTM(width, config.lstm_layers))
        for ratio in config.ratios:
            layers += [nn.ELU(), SConvTranspose1d(width, width // 2, ratio * 2, stride=ratio, causal=config.causal,
                                                  norm=config.norm, trim_right_ratio=config.trim_right_ratio)]
            width //= 2
            layers += _res_units(config, width)
        layers += [nn.ELU(), SConv1d(width, config.channels, config.last_kernel_size, **conv)]
        self.layers = nn.ModuleList(layers)

    @property
    def last_layer(self) -> torch.Tensor:
        """The output conv's weight (its weight-norm direction when weight-normed), for adaptive GAN weighting."""
        conv = self.layers[-1].conv
        return conv.parametrizations.weight.original1 if hasattr(conv, "parametrizations") else conv.weight


__all__ = [
    "SLSTM",
    "ConvNorm",
    "ResnetBlock",
    "SConv1d",
    "SConvTranspose1d",
    "SEANetDecoder",
    "SEANetEncoder",
    "pad1d",
]
