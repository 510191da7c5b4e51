"""Import your own recordings (WAV/FLAC/OGG, recursively) with transcripts into speech shards.

Transcripts come from an LJSpeech-style ``metadata.csv`` (``id|text`` or ``id|text|normalized text``, audio in
``wavs/{id}.wav`` or anywhere under the folder as ``{id}.*``) or from a same-name ``.txt`` beside each file.
Every file is mixed to mono (by default) and resampled to the dataset's rate; files at another rate are counted
and reported, unreadable or empty files are skipped and counted, never fatal. Samples look like those of
:mod:`mmgen.data.speech`: ``.wav``/``.flac`` + ``.txt`` + ``.json`` (``text``, ``path``, ``sample_rate``,
``seconds``, ``source_sample_rate``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmgen.data.audio_io import AUDIO_FILE_EXTENSIONS, encode_audio, load_audio
from mmgen.data.writer import ShardWriter
from mmgen.errors import DataError, InvalidArgumentError

METADATA_NAME = "metadata.csv"


@dataclass
class AudioFolderReport:
    """What :func:`write_audio_folder` did."""

    written: int = 0
    transcripts: int = 0
    skipped: list[str] = field(default_factory=list)
    resampled: dict[int, int] = field(default_factory=dict)
    """source sample rate → number of files resampled from it."""
    seconds: float = 0.0


def find_audio(source: str | os.PathLike) -> list[Path]:
    """Audio files (wav/flac/ogg, any case) under ``source``, recursively, sorted by path."""
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"not a folder: {str(root)!r}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_FILE_EXTENSIONS)


def read_metadata(path: Path) -> dict[str, str]:
    """An LJSpeech ``metadata.csv`` → ``{file id: transcript}`` (the normalized column when present)."""
    transcripts: dict[str, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 2:
            raise DataError(f"{path}:{number}: expected 'id|transcript[|normalized transcript]', got {line[:60]!r}")
        text = (parts[2] if len(parts) > 2 and parts[2].strip() else parts[1]).strip()
        transcripts[Path(parts[0].strip()).stem] = text
    return transcripts


def transcript_for(path: Path, metadata: dict[str, str]) -> str | None:
    """The transcript of ``path``: ``metadata[stem]``, else the same-name ``.txt``, else ``None``."""
    if path.stem in metadata:
        return metadata[path.stem]
    caption = path.with_suffix(".txt")
    if caption.is_file():
        return caption.read_text(encoding="utf-8", errors="replace").strip()
    return None


def write_audio_folder(source: str | os.PathLike, out_dir: str | os.PathLike, *, split: str = "train",
                       sample_rate: int = 16000, mono: bool = True, fmt: str = "flac",
                       require_transcript: bool = False, samples_per_shard: int = 500,
                       progress: Callable[[Iterable, int, str], Iterable] | None = None) -> AudioFolderReport:
    """Write every readable audio file under ``source`` into ``{out_dir}/{split}-*.tar``.

    Args:
        sample_rate: the dataset's rate; files at other rates are resampled (and counted in the report).
        mono: mix all channels to one.
        fmt: stored format, ``flac`` (lossless, smaller) or ``wav``.
        require_transcript: skip files without a transcript instead of writing them without ``.txt``.
    """
    if fmt not in ("wav", "flac"):
        raise InvalidArgumentError("--format", "wav or flac", fmt)
    root = Path(source)
    files = find_audio(root)
    if not files:
        raise DataError(f"no audio files ({', '.join(AUDIO_FILE_EXTENSIONS)}) under {str(root)!r}")
    metadata_file = root / METADATA_NAME
    metadata = read_metadata(metadata_file) if metadata_file.is_file() else {}
    report = AudioFolderReport()
    rows: Iterable[Path] = files if progress is None else progress(files, len(files), split)
    with ShardWriter(out_dir, split, samples_per_shard, source=f"audio-folder:{root.resolve()}",
                     extra={"sample_rate": sample_rate}) as writer:
        for path in rows:
            fields = _audio_fields(root, path, metadata, sample_rate, mono, fmt, require_transcript, report)
            if fields is not None:
                writer.write(None, fields)
    report.written = writer.count
    return report


def _audio_fields(root: Path, path: Path, metadata: dict[str, str], sample_rate: int, mono: bool, fmt: str,
                  require_transcript: bool, report: AudioFolderReport) -> dict[str, object] | None:
    relative = path.relative_to(root).as_posix()
    text = transcript_for(path, metadata)
    if text is None and require_transcript:
        report.skipped.append(f"{relative} (no transcript)")
        return None
    try:
        wav, rate, file_rate = load_audio(path, sample_rate, 1 if mono else None)
    except DataError as exc:
        report.skipped.append(f"{relative} ({str(exc).split(': ', 1)[-1]})")
        return None
    if file_rate != rate:
        report.resampled[file_rate] = report.resampled.get(file_rate, 0) + 1
    seconds = wav.shape[-1] / rate
    report.seconds += seconds
    meta = {"path": relative, "sample_rate": rate, "seconds": round(seconds, 4), "source_sample_rate": file_rate}
    fields: dict[str, object] = {fmt: encode_audio(wav, rate, fmt), "json": meta}
    if text is not None:
        fields["txt"], meta["text"] = text, text
        report.transcripts += 1
    return fields


__all__ = [
    "METADATA_NAME",
    "AudioFolderReport",
    "find_audio",
    "read_metadata",
    "transcript_for",
    "write_audio_folder",
]
