"""Sample decoders and collation: raw shard members (bytes) -> tensors.

Decoders are pure and cheap: no resizing, no augmentation. Tasks compose their transforms on top::

    def decode(raw):
        sample = decode_sample(raw)
        sample["image"] = my_crop(sample["image"], generator=sample_generator(raw))
        return sample

``sample_generator(raw)`` gives a ``torch.Generator`` seeded from the sample's stream position, so random
augmentations replay identically after an exact resume (see :class:`mmgen.data.stream.ShardStream`).
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp", "bmp", "ppm", "pgm", "tif", "tiff", "gif")
AUDIO_EXTENSIONS = ("wav", "flac", "ogg", "mp3")
TEXT_EXTENSIONS = ("txt", "text", "caption")
LABEL_EXTENSIONS = ("cls", "cls2", "class", "label")
META_EXTENSIONS = ("json", "jsn")


# ---------------------------------------------------------------------------------------------------------- fields
def decode_image(data: bytes) -> torch.Tensor:
    """Image bytes -> uint8 tensor ``[C, H, W]``.

    Grayscale (``L``, ``1``, 16-bit ``I;16``, ``LA``) stays one channel; everything else (``RGBA``, ``P``, ``CMYK``
    ...) becomes RGB, transparent pixels composited over white. Raises on truncated or invalid data.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        img.load()
        array = _image_to_array(img)
    tensor = torch.from_numpy(array)
    return tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)


def _image_to_array(img: Any) -> np.ndarray:
    """PIL image -> uint8 array ``[H, W]`` (grayscale) or ``[H, W, 3]``."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        wide = np.asarray(img, dtype=np.float64)
        scale = 255.0 / 65535.0 if wide.max(initial=0) > 255 else 1.0
        return np.clip(np.rint(wide * scale), 0, 255).astype(np.uint8)
    if img.mode in ("L", "1", "LA"):
        return np.array(img.convert("L"))
    if img.mode in ("RGBA", "P", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.array(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.array(img.convert("RGB"))


def decode_audio(data: bytes) -> tuple[torch.Tensor, int]:
    """Audio bytes (wav/flac/ogg) -> (float32 tensor ``[C, T]`` in [-1, 1], sample rate) via soundfile."""
    import soundfile as sf

    array, sample_rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    return torch.from_numpy(np.ascontiguousarray(array.T)), int(sample_rate)


def decode_text(data: bytes) -> str:
    """UTF-8 text (invalid bytes replaced, surrounding whitespace stripped)."""
    return data.decode("utf-8", errors="replace").strip()


def decode_label(data: bytes) -> int:
    """A class index written as ASCII digits (``.cls``)."""
    return int(data.decode("ascii").strip())


def decode_meta(data: bytes) -> dict:
    """A JSON object (``.json``); anything else is an error."""
    meta = json.loads(data.decode("utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"expected a JSON object, got {type(meta).__name__}")
    return meta


def _first(raw: dict[str, Any], extensions: Sequence[str]) -> bytes | None:
    for ext in extensions:
        value = raw.get(ext)
        if value is not None:
            return value
    return None


def decode_sample(raw: dict[str, Any]) -> dict[str, Any]:
    """Decode a raw sample (``{"__key__": ..., ext: bytes}``) into tensors and Python values.

    Returns:
        A dict with ``key`` (str) and, when present in the sample: ``image`` (uint8 ``[C, H, W]``), ``label``
        (int), ``text`` (str), ``meta`` (dict), ``audio`` (float32 ``[C, T]``) and ``sample_rate`` (int).

    Raises:
        ValueError: the sample has none of these fields; any decoder error for a corrupt member.
    """
    sample: dict[str, Any] = {"key": str(raw.get("__key__", ""))}
    fields = (
        ("image", IMAGE_EXTENSIONS, decode_image),
        ("label", LABEL_EXTENSIONS, decode_label),
        ("text", TEXT_EXTENSIONS, decode_text),
        ("meta", META_EXTENSIONS, decode_meta),
    )
    for name, extensions, decoder in fields:
        data = _first(raw, extensions)
        if data is not None:
            sample[name] = decoder(data)
    audio = _first(raw, AUDIO_EXTENSIONS)
    if audio is not None:
        sample["audio"], sample["sample_rate"] = decode_audio(audio)
    if len(sample) == 1:
        members = sorted(k for k in raw if not k.startswith("__"))
        raise ValueError(f"sample {sample['key']!r} has no known field (members: {members})")
    return sample


def sample_generator(raw: dict[str, Any]) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from the stream's per-sample seed (``raw["__seed__"]``, 0 if absent).

    Use it for random augmentations so that an exact resume replays them.
    """
    return torch.Generator().manual_seed(int(raw.get("__seed__", 0)))


# -------------------------------------------------------------------------------------------------------- collation
def collate_samples(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Combine decoded samples into a batch dict.

    Per field: tensors of one shape are stacked (``image`` -> ``[B, C, H, W]``), tensors of differing shapes stay a
    list; ints (``label``, ``sample_rate``) become a LongTensor ``[B]``, floats a float32 tensor ``[B]``; everything
    else (``text``, ``key``, ``meta``) is a list. A field missing from some samples is a list with ``None`` there.
    """
    names = list(dict.fromkeys(name for sample in samples for name in sample))
    return {name: _collate_field([sample.get(name) for sample in samples]) for name in names}


def _collate_field(values: list[Any]) -> Any:
    if all(isinstance(v, torch.Tensor) for v in values):
        if len({tuple(v.shape) for v in values}) == 1 and len({v.dtype for v in values}) == 1:
            return torch.stack(values)
        return values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return torch.tensor(values, dtype=torch.long)
    if all(isinstance(v, float) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    return values
