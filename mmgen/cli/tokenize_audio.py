"""Audio side of ``mmgen tokenize encode|decode``: WAV/FLAC files ↔ RVQ tokens with an audio tokenizer.

    mmgen tokenize encode --model assets/codec-speech a.wav b.flac --out tokens.npy --bandwidth 3
    mmgen tokenize decode --model assets/codec-speech tokens.npy --out recon/        # recon/000000.wav ...

Tokens are int64 ``[N, q, n]``; files of different lengths are padded at the end with -1 (decode trims each item
at its first -1 frame). Models with RMS normalization (EnCodec 48 kHz) also write ``tokens.scales.npy``. Audio at
another sample rate is resampled with a notice; unreadable files stop with a one-line error naming the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmgen.data.audio_io import AUDIO_FILE_EXTENSIONS


def is_audio_file(path: Path) -> bool:
    return Path(path).suffix.lower() in AUDIO_FILE_EXTENSIONS


def load_audio_tokenizer(path: Path) -> Any | None:
    """The :class:`AudioTokenizer` in ``path`` (mmgen folder or transformers EnCodec folder), or ``None`` if the
    folder holds another kind of model."""
    from mmgen.errors import CheckpointError
    from mmgen.interop.encodec import is_encodec_folder
    from mmgen.pretrained import read_config_json
    from mmgen.registry import load_pretrained

    path = Path(path)
    try:
        model_type = read_config_json(path).get("model_type")
    except CheckpointError:
        return None
    if model_type == "audio_tokenizer" or is_encodec_folder(path):
        return load_pretrained(path)
    return None


def _scales_path(tokens: Path) -> Path:
    return tokens.with_name(tokens.stem + ".scales.npy")


def encode_files(tokenizer: Any, files: list[Path], num_quantizers: int) -> tuple[Any, Any]:
    """Audio files → (tokens int64 [N, q, n_max] padded with -1, scales [N, chunks] float32 or None)."""
    import torch

    from mmgen.data.audio_io import load_audio

    rows, scales = [], []
    for path in files:
        wav, _, file_rate = load_audio(path, tokenizer.sample_rate, tokenizer.channels)
        if file_rate != tokenizer.sample_rate:
            sys.stderr.write(f"note: {path} is {file_rate} Hz; resampled to the codec's {tokenizer.sample_rate} Hz\n")
        codes = tokenizer.encode_with_scales(wav[None], num_quantizers)
        rows.append(codes.tokens[0].cpu())
        if codes.scales is not None:
            scales.append(codes.scales[0].cpu())
    frames = max(r.shape[-1] for r in rows)
    tokens = torch.full((len(rows), rows[0].shape[0], frames), -1, dtype=torch.long)
    for index, row in enumerate(rows):
        tokens[index, :, : row.shape[-1]] = row
    stacked = None
    if scales:
        stacked = torch.zeros(len(scales), max(s.shape[0] for s in scales))
        for index, scale in enumerate(scales):
            stacked[index, : scale.shape[0]] = scale
    return tokens, stacked


def run_encode_audio(args: argparse.Namespace, tokenizer: Any) -> int:
    import numpy as np

    from mmgen.errors import InvalidArgumentError

    bad = [str(p) for p in args.images if not is_audio_file(p)]
    if bad:
        raise InvalidArgumentError("inputs", f"audio files ({', '.join(AUDIO_FILE_EXTENSIONS)}) for an audio "
                                   "tokenizer", bad[0])
    levels = tokenizer.quantizers_for_bandwidth(args.bandwidth) if args.bandwidth else tokenizer.num_quantizers
    tokens, scales = encode_files(tokenizer, list(args.images), levels)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.save(args.out, tokens.numpy())
    if scales is not None:
        np.save(_scales_path(args.out), scales.numpy())
    print(f"{args.out}: {tuple(tokens.shape)} tokens ({levels} RVQ levels of {tokenizer.codebook_size} codes at "
          f"{tokenizer.frame_rate:g} frames/s = {tokenizer.kbps(levels):g} kbit/s) from {len(args.images)} file(s)")
    return 0


def read_audio_tokens(path: Path) -> Any:
    """A .npy of ids [N, q, n] or [q, n] (-1 = padding) → LongTensor [N, q, n]."""
    from mmgen.cli.tokenize import read_tokens

    return read_tokens(path, "[N, q, n] or [q, n] (audio)")


def run_decode_audio(args: argparse.Namespace, tokenizer: Any) -> int:
    import numpy as np
    import torch

    from mmgen.data.audio_io import save_audio

    tokens = read_audio_tokens(args.tokens)
    scales_file = _scales_path(args.tokens)
    scales = torch.from_numpy(np.load(scales_file)) if scales_file.is_file() else None
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for index, row in enumerate(tokens):
        valid = (row >= 0).all(0)
        frames = int(valid.long().cumprod(0).sum())
        item_scales = None if scales is None else scales[index: index + 1]
        wav = tokenizer.decode(row[None, :, :frames], item_scales)[0].clamp(-1, 1)
        save_audio(args.out / f"{index:06d}.wav", wav, tokenizer.sample_rate)
        seconds += wav.shape[-1] / tokenizer.sample_rate
    print(f"{args.out}: {tokens.shape[0]} WAV file(s), {seconds:.2f} s in all at {tokenizer.sample_rate} Hz "
          f"({tokens.shape[1]} RVQ levels)")
    return 0


__all__ = ["encode_files", "is_audio_file", "load_audio_tokenizer", "read_audio_tokens", "run_decode_audio",
           "run_encode_audio"]
