"""A Vocos-style codec decoder: ConvNeXt blocks at the token frame rate, then an inverse-STFT head.

Instead of learning 320x waveform upsampling with transposed convolutions (SEANet), the decoder predicts, for
every token frame, a log-magnitude and a phase per STFT bin, and the waveform is their inverse STFT (Vocos,
Siuzdak 2023; WavTokenizer uses the same decoder at hop 320). All learned work runs at the frame rate, so it is
cheap on CPU, and it avoids the periodic "buzz at the frame rate" that short SEANet runs produce::

    latents [B, D, n] ─► conv(7) ─► LN ─► ConvNeXt x L ─► LN ─► Linear(n_fft + 2) ─► |S|·e^{iφ} [B, n_fft/2+1, n]
        ─► iSTFT ("same" padding: n frames → n·hop samples) ─► wav [B, C, n·hop]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mmgen.errors import InvalidArgumentError


class ConvNeXtBlock1d(nn.Module):
    """x [B, C, n] → x + γ · MLP(LN(depthwise conv(x))) (ConvNeXt, as in Vocos' backbone)."""

    def __init__(self, dim: int, hidden: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x).transpose(1, 2))
        h = self.fc2(F.gelu(self.fc1(h))) * self.gamma
        return x + h.transpose(1, 2)


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: spec [B, n_fft/2+1, n] (complex) → wav [B, n · hop].

    Frame ``i`` is centred on sample ``i · hop + hop / 2``'s neighbourhood the way the encoder's strided convs
    see it; the window-squared envelope is divided out, as ``torch.istft`` does.
    """

    def __init__(self, n_fft: int, hop_length: int):
        super().__init__()
        if n_fft < 2 * hop_length or (n_fft - hop_length) % 2:  # Hann windows must overlap to be invertible
            raise InvalidArgumentError("istft_n_fft", f"an FFT size >= 2 x the hop ({2 * hop_length}) that differs "
                                       "from the hop by an even number", n_fft)
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        frames = spec.shape[-1]
        pad = (self.n_fft - self.hop_length) // 2
        total = (frames - 1) * self.hop_length + self.n_fft
        chunks = torch.fft.irfft(spec, self.n_fft, dim=1, norm="backward") * self.window[None, :, None]
        wav = F.fold(chunks, (1, total), (1, self.n_fft), stride=(1, self.hop_length))[:, 0, 0]
        envelope = F.fold(self.window.square().expand(1, frames, -1).transpose(1, 2), (1, total),
                          (1, self.n_fft), stride=(1, self.hop_length))[0, 0, 0]
        return (wav / envelope.clamp_min(1e-11))[:, pad: total - pad]


class ISTFTDecoder(nn.Module):
    """latents [B, latent_dim, n] → audio [B, channels, n · hop] (``config``: an AudioTokenizerConfig with
    ``istft_dim``, ``istft_layers``, ``istft_n_fft`` (``None``: 4 · hop)).

    The head's magnitudes are ``exp`` of its first half (clamped at 100), phases its second half.
    """

    def __init__(self, config: object, hop_length: int):
        super().__init__()
        dim, channels = config.istft_dim, config.channels
        self.channels = channels
        n_fft = config.istft_n_fft or 4 * hop_length
        self.embed = nn.Conv1d(config.latent_dim, dim, 7, padding=3)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList([ConvNeXtBlock1d(dim, 3 * dim, 1.0 / config.istft_layers)
                                     for _ in range(config.istft_layers)])
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.out = nn.Linear(dim, channels * (n_fft + 2))
        self.istft = ISTFT(n_fft, hop_length)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(latents).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.out(self.final_norm(x.transpose(1, 2))).float()  # [B, n, C·(n_fft+2)]
        batch, frames = h.shape[:2]
        h = h.reshape(batch, frames, self.channels, 2, -1).permute(0, 2, 3, 4, 1)  # [B, C, 2, bins, n]
        with torch.autocast(latents.device.type, enabled=False):
            magnitude = h[:, :, 0].exp().clamp(max=1e2)
            spec = torch.polar(magnitude, h[:, :, 1])
            wav = self.istft(spec.flatten(0, 1))
        return wav.view(batch, self.channels, -1)

    @property
    def last_layer(self) -> torch.Tensor:
        """The head's weight, for adaptive GAN weighting."""
        return self.out.weight


__all__ = ["ISTFT", "ConvNeXtBlock1d", "ISTFTDecoder"]
