"""Audio metrics and a classic baseline codec: mel distance, SI-SNR, mel-cepstral distance, mu-law/low-pass.

Waveforms are float tensors ``[T]``, ``[C, T]`` or ``[B, C, T]`` in [-1, 1] (channels are averaged to mono).

* :func:`log_mel`: natural-log mel spectrogram (80 mels, 64 ms window, 16 ms hop at any rate).
* :func:`mel_distance`: mean |log-mel(a) - log-mel(b)| (lower is better; 0 = identical).
* :func:`si_snr`: scale-invariant signal-to-noise ratio in dB (higher is better).
* :func:`mel_cepstral_distance`: MCD in dB over mel cepstra 1..13 (optionally DTW-aligned, for TTS vs reference).
* :func:`mulaw_lowpass`: the baseline codec at a bitrate: low-pass/resample to ``kbps·1000/bits`` Hz, mu-law
  quantize to ``bits`` bits, resample back. :func:`best_mulaw_lowpass` picks its best bit depth on the data.
* :func:`evaluate_audio_codec`: the codec at several bandwidths against the baseline at the same bitrates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.data.audio_io import resample
from mmgen.errors import InvalidArgumentError

MCD_CONSTANT = 10.0 / math.log(10.0) * math.sqrt(2.0)


def _mono(wav: torch.Tensor) -> torch.Tensor:
    """[T] / [C, T] / [B, C, T] → [B, T] float32 (channels averaged)."""
    wav = wav.detach().float()
    if wav.ndim == 1:
        return wav[None]
    if wav.ndim == 2:
        return wav.mean(0, keepdim=True)
    if wav.ndim == 3:
        return wav.mean(1)
    raise InvalidArgumentError("wav", "a tensor [T], [C, T] or [B, C, T]", tuple(wav.shape))


def _pair(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as [B, T] trimmed to the shorter length."""
    a, b = _mono(a), _mono(b)
    length = min(a.shape[-1], b.shape[-1])
    return a[..., :length], b[..., :length].to(a.device)


@functools.lru_cache(maxsize=16)
def _mel_transform(sample_rate: int, n_fft: int, hop: int, n_mels: int) -> torch.nn.Module:
    from torchaudio.transforms import MelSpectrogram

    return MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, win_length=n_fft, hop_length=hop, n_mels=n_mels,
                          power=1.0, center=True, norm="slaney", mel_scale="slaney")


def log_mel(wav: torch.Tensor, sample_rate: int, n_fft: int | None = None, hop: int | None = None,
            n_mels: int = 80) -> torch.Tensor:
    """wav → natural-log mel magnitudes [B, n_mels, frames] (defaults: 64 ms window, 16 ms hop)."""
    n_fft = n_fft or 2 ** round(math.log2(0.064 * sample_rate))
    hop = hop or max(1, round(0.016 * sample_rate))
    mel = _mel_transform(int(sample_rate), int(n_fft), int(hop), int(n_mels)).to(wav.device)
    return torch.log(mel(_mono(wav).to(wav.device)).clamp_min(1e-5))


def mel_distance(reconstruction: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean absolute log-mel difference per item, [B] (see :func:`log_mel`)."""
    a, b = _pair(reconstruction, target)
    return (log_mel(a, sample_rate) - log_mel(b, sample_rate)).abs().mean(dim=(1, 2))


def si_snr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SNR in dB per item, [B] (zero-mean signals; the estimate projected on the target)."""
    est, ref = _pair(estimate, target)
    est, ref = est - est.mean(-1, keepdim=True), ref - ref.mean(-1, keepdim=True)
    projection = (est * ref).sum(-1, keepdim=True) / (ref.square().sum(-1, keepdim=True) + eps) * ref
    noise = est - projection
    return 10 * torch.log10((projection.square().sum(-1) + eps) / (noise.square().sum(-1) + eps))


def mel_cepstrum(wav: torch.Tensor, sample_rate: int, num_coefficients: int = 13) -> torch.Tensor:
    """Mel cepstra c_1..c_K [B, frames, K] of the natural-log mel amplitude (c_0 dropped), scaled as a cepstrum
    (``log|X(ω)| = c_0 + 2 Σ_k c_k cos kω``, i.e. ``c_k = 1/M Σ_m log|X_m| cos(k ω_m)``) so MCD has its usual scale."""
    log_amplitude = log_mel(wav, sample_rate)  # [B, M, F]
    mels = log_amplitude.shape[1]
    m = torch.arange(mels, dtype=torch.float32)
    k = torch.arange(1, num_coefficients + 1, dtype=torch.float32)
    basis = torch.cos(math.pi / mels * (m[None, :] + 0.5) * k[:, None]) / mels  # [K, M]
    return torch.einsum("km,bmf->bfk", basis.to(log_amplitude), log_amplitude)


def dtw_path(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dynamic time warping over a [N, M] cost matrix → aligned index arrays (i, j), monotone, ends included."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    for i in range(1, n + 1):
        row, prev = total[i], total[i - 1]
        diagonal_or_up = np.minimum(prev[:-1], prev[1:]) + cost[i - 1]
        for j in range(1, m + 1):  # left moves depend on this row: a short inner loop
            row[j] = min(diagonal_or_up[j - 1], row[j - 1] + cost[i - 1, j - 1])
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        step = int(np.argmin((total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])))
        i, j = (i - 1, j - 1) if step == 0 else ((i - 1, j) if step == 1 else (i, j - 1))
    path.reverse()
    return np.array([p[0] for p in path]), np.array([p[1] for p in path])


def mel_cepstral_distance(estimate: torch.Tensor, target: torch.Tensor, sample_rate: int, *, align: bool = False,
                          num_coefficients: int = 13) -> torch.Tensor:
    """Mel-cepstral distance in dB per item, [B]: ``10/ln10 · sqrt(2 Σ_k (c_k - c'_k)²)`` averaged over frames.

    ``align=False`` compares frame by frame (same-length signals, e.g. codec reconstructions); ``align=True``
    DTW-aligns the frames first (generated speech vs a reference of another length).
    """
    est = mel_cepstrum(_mono(estimate), sample_rate, num_coefficients)
    ref = mel_cepstrum(_mono(target), sample_rate, num_coefficients)
    if est.shape[0] != ref.shape[0]:
        raise InvalidArgumentError("target", f"a batch of {est.shape[0]}", ref.shape[0])
    scores = []
    for a, b in zip(est, ref):
        if align:
            cost = torch.cdist(a[None].double(), b[None].double())[0].numpy()
            i, j = dtw_path(cost)
            a, b = a[torch.from_numpy(i)], b[torch.from_numpy(j)]
        else:
            frames = min(a.shape[0], b.shape[0])
            a, b = a[:frames], b[:frames]
        scores.append(MCD_CONSTANT * (a - b).square().sum(-1).sqrt().mean())
    return torch.stack(scores)


# ------------------------------------------------------------------------------------------------- baseline
def mulaw_lowpass(wav: torch.Tensor, sample_rate: int, kbps: float, bits: int) -> torch.Tensor:
    """The baseline codec at ``kbps``: resample to ``kbps·1000/bits`` Hz (low-pass), mu-law ``bits``-bit
    quantization, resample back. wav: [..., T] → [..., T] (same shape)."""
    if not 1 <= bits <= 16:
        raise InvalidArgumentError("bits", "an integer in [1, 16]", bits)
    low_rate = round(kbps * 1000 / bits)
    if low_rate < 100:
        raise InvalidArgumentError("kbps", f"at least {bits * 0.1} kbit/s for {bits}-bit samples", kbps)
    low = resample(wav.float(), sample_rate, low_rate).clamp(-1, 1) if low_rate < sample_rate else wav.float()
    mu = float(2 ** bits - 1)
    companded = torch.sign(low) * torch.log1p(mu * low.abs()) / math.log1p(mu)
    levels = torch.round((companded + 1) / 2 * mu) / mu * 2 - 1
    expanded = torch.sign(levels) * torch.expm1(levels.abs() * math.log1p(mu)) / mu
    back = resample(expanded, low_rate, sample_rate) if low_rate < sample_rate else expanded
    length = wav.shape[-1]
    back = back[..., :length]
    if back.shape[-1] < length:
        back = torch.nn.functional.pad(back, (0, length - back.shape[-1]))
    return back.clamp(-1, 1)


def best_mulaw_lowpass(wavs: Sequence[torch.Tensor], sample_rate: int, kbps: float,
                       bit_depths: Sequence[int] = (1, 2, 3, 4, 5, 6, 8)) -> dict[str, Any]:
    """The baseline's bit depth with the lowest mean mel distance on ``wavs`` (the strongest baseline), with its
    mean mel distance, SI-SNR and the sample rate it runs at."""
    best: dict[str, Any] | None = None
    for bits in bit_depths:
        if kbps * 1000 / bits < 100:
            continue
        recon = [mulaw_lowpass(w, sample_rate, kbps, bits) for w in wavs]
        mel = float(np.mean([mel_distance(r, w, sample_rate).mean().item() for r, w in zip(recon, wavs)]))
        if best is None or mel < best["mel_distance"]:
            snr = float(np.mean([si_snr(r, w).mean().item() for r, w in zip(recon, wavs)]))
            best = {"bits": bits, "rate_hz": round(kbps * 1000 / bits), "mel_distance": mel, "si_snr": snr,
                    "reconstructions": recon}
    if best is None:
        raise InvalidArgumentError("kbps", "a bitrate of at least 0.1 kbit/s", kbps)
    return best


@torch.no_grad()
def evaluate_audio_codec(tokenizer: Any, wavs: Sequence[torch.Tensor], bandwidths: Sequence[float] = (1.5, 3.0),
                         *, baseline: bool = True) -> dict[str, float]:
    """Codec vs baseline on ``wavs`` ([C, T] each, at the tokenizer's rate) at each bandwidth (kbit/s).

    Keys per bandwidth ``B``: ``mel@B``, ``si_snr@B``, ``mcd@B``, ``levels@B``, ``kbps@B`` (actual), ``usage@B``
    (fraction of first-level codes used), and for the baseline ``baseline_mel@B``, ``baseline_si_snr@B``,
    ``baseline_bits@B``.
    """
    from mmgen.eval.image_metrics import CodebookStats

    rate = tokenizer.sample_rate
    results: dict[str, float] = {"num_utterances": float(len(wavs)),
                                 "seconds": float(sum(w.shape[-1] for w in wavs) / rate)}
    for kbps in bandwidths:
        levels = tokenizer.quantizers_for_bandwidth(kbps)
        stats = CodebookStats(tokenizer.codebook_size)
        mels, snrs, mcds = [], [], []
        for wav in wavs:
            codes = tokenizer.encode_with_scales(wav[None], levels)
            stats.update(codes.tokens[:, 0])
            recon = tokenizer.decode(codes.tokens, codes.scales)[0, :, : wav.shape[-1]].clamp(-1, 1).cpu()
            mels.append(mel_distance(recon, wav, rate).item())
            snrs.append(si_snr(recon, wav).item())
            mcds.append(mel_cepstral_distance(recon, wav, rate).item())
        results.update({f"mel@{kbps:g}": float(np.mean(mels)), f"si_snr@{kbps:g}": float(np.mean(snrs)),
                        f"mcd@{kbps:g}": float(np.mean(mcds)), f"levels@{kbps:g}": float(levels),
                        f"kbps@{kbps:g}": tokenizer.kbps(levels), f"usage@{kbps:g}": stats.compute()["usage"]})
        if baseline:
            base = best_mulaw_lowpass(wavs, rate, tokenizer.kbps(levels))
            results.update({f"baseline_mel@{kbps:g}": base["mel_distance"], f"baseline_si_snr@{kbps:g}": base["si_snr"],
                            f"baseline_bits@{kbps:g}": float(base["bits"])})
    return results


# ------------------------------------------------------------------------------------------------- listening
def save_mel_png(rows: Sequence[tuple[str, torch.Tensor]], sample_rate: int, path: str | Path) -> Path:
    """A PNG with one log-mel spectrogram per (title, wav) row, on a shared colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mels = [log_mel(wav, sample_rate)[0].cpu().numpy() for _, wav in rows]
    low, high = min(m.min() for m in mels), max(m.max() for m in mels)
    fig, axes = plt.subplots(len(rows), 1, figsize=(8, 1.6 * len(rows)), squeeze=False)
    for ax, (title, _), mel in zip(axes[:, 0], rows, mels):
        ax.imshow(mel, origin="lower", aspect="auto", vmin=low, vmax=high, cmap="magma")
        ax.set_title(title, fontsize=8, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


@torch.no_grad()
def write_reconstructions(tokenizer: Any, wavs: Sequence[torch.Tensor], bandwidths: Sequence[float],
                          folder: str | Path, *, baseline: bool = False) -> list[Path]:
    """Write ``NN_original.wav``, ``NN_codec_{kbps}kbps.wav`` (and ``NN_mulaw_{kbps}kbps.wav`` with ``baseline``)
    for each utterance [C, T], plus ``mel.png`` comparing them; returns the paths written."""
    from mmgen.data.audio_io import save_audio

    folder, rate = Path(folder), tokenizer.sample_rate
    written, rows = [], []
    for index, wav in enumerate(wavs):
        written.append(save_audio(folder / f"{index:02d}_original.wav", wav, rate))
        rows.append((f"{index:02d} original", wav))
        for kbps in bandwidths:
            levels = tokenizer.quantizers_for_bandwidth(kbps)
            recon = tokenizer.reconstruct(wav[None], levels)[0].cpu()
            written.append(save_audio(folder / f"{index:02d}_codec_{kbps:g}kbps.wav", recon, rate))
            rows.append((f"{index:02d} codec {tokenizer.kbps(levels):g} kbit/s ({levels} levels)", recon))
            if baseline:
                base = best_mulaw_lowpass([wav], rate, tokenizer.kbps(levels))
                written.append(save_audio(folder / f"{index:02d}_mulaw_{kbps:g}kbps.wav",
                                          base["reconstructions"][0], rate))
                rows.append((f"{index:02d} mu-law {base['bits']} bit at {base['rate_hz']} Hz",
                             base["reconstructions"][0]))
    written.append(save_mel_png(rows, rate, folder / "mel.png"))
    return written


__all__ = ["best_mulaw_lowpass", "dtw_path", "evaluate_audio_codec", "log_mel", "mel_cepstral_distance",
           "mel_cepstrum", "mel_distance", "mulaw_lowpass", "save_mel_png", "si_snr", "write_reconstructions"]
