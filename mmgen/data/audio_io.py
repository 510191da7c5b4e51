"""Audio files and bytes in and out (soundfile; ``torchaudio.load/save`` need FFmpeg and are not used).

Waveforms are float32 tensors ``[C, T]`` in [-1, 1]. Resampling uses ``torchaudio.functional.resample``
(windowed sinc), the same everywhere in mmgen so datasets, tokenizers and metrics agree.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch

from mmgen.errors import DataError, InvalidArgumentError

AUDIO_FILE_EXTENSIONS = (".wav", ".flac", ".ogg")
_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16")}


def resample(wav: torch.Tensor, from_rate: int, to_rate: int) -> torch.Tensor:
    """wav: [..., T] at ``from_rate`` → [..., T'] at ``to_rate`` (unchanged when the rates are equal)."""
    if int(from_rate) == int(to_rate):
        return wav
    from torchaudio.functional import resample as _resample

    return _resample(wav.float(), int(from_rate), int(to_rate))


def to_channels(wav: torch.Tensor, channels: int) -> torch.Tensor:
    """wav: [C, T] → [channels, T]: several channels averaged to mono, mono repeated to stereo."""
    if wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1).clone()
    raise InvalidArgumentError("channels", f"1 or {wav.shape[0]} (the file's channel count)", channels)


def decode_audio_bytes(data: bytes, name: str = "audio") -> tuple[torch.Tensor, int]:
    """Encoded audio (wav/flac/ogg) → (float32 [C, T], sample rate); :class:`DataError` naming ``name`` if corrupt."""
    import soundfile as sf

    try:
        array, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (RuntimeError, ValueError, TypeError, sf.LibsndfileError) as exc:
        reason = str(exc).splitlines()[0].rsplit(">: ", 1)[-1] if str(exc) else type(exc).__name__
        raise DataError(f"{name}: not a readable audio file ({reason})") from None
    if array.size == 0:
        raise DataError(f"{name}: the audio file holds no samples")
    return torch.from_numpy(np.ascontiguousarray(array.T)), int(rate)


def load_audio(path: str | os.PathLike, sample_rate: int | None = None,
               channels: int | None = None) -> tuple[torch.Tensor, int, int]:
    """Read an audio file; optionally resample to ``sample_rate`` and mix to ``channels``.

    Returns:
        (wav float32 [C, T] in [-1, 1], the rate it is at now, the file's own rate).

    Raises:
        DataError: the file is missing, empty or not readable audio.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    wav, file_rate = decode_audio_bytes(path.read_bytes(), str(path))
    if channels is not None:
        wav = to_channels(wav, channels)
    rate = file_rate
    if sample_rate is not None and sample_rate != file_rate:
        wav, rate = resample(wav, file_rate, sample_rate), sample_rate
    return wav.clamp(-1.0, 1.0), rate, file_rate


def encode_audio(wav: torch.Tensor, sample_rate: int, fmt: str = "wav") -> bytes:
    """wav: [C, T] or [T] float in [-1, 1] → 16-bit PCM ``wav`` or ``flac`` bytes."""
    import soundfile as sf

    if fmt not in _FORMATS:
        raise InvalidArgumentError("format", f"one of {sorted(_FORMATS)}", fmt)
    array = wav.detach().float().cpu().clamp(-1.0, 1.0).numpy()
    array = array[None] if array.ndim == 1 else array
    buffer = io.BytesIO()
    container, subtype = _FORMATS[fmt]
    sf.write(buffer, array.T, int(sample_rate), format=container, subtype=subtype)
    return buffer.getvalue()


def save_audio(path: str | os.PathLike, wav: torch.Tensor, sample_rate: int) -> Path:
    """Write ``wav`` ([C, T] or [T]) as 16-bit PCM; the format follows the suffix (``.wav`` or ``.flac``)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_audio(wav, sample_rate, fmt))
    return path


__all__ = ["AUDIO_FILE_EXTENSIONS", "decode_audio_bytes", "encode_audio", "load_audio", "resample", "save_audio",
           "to_channels"]
