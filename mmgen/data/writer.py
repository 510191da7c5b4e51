"""Writing webdataset shards: ``{out}/{split}-000000.tar``, ``{split}-000001.tar``, ... plus a ``dataset.json``.

The tars are real webdataset tars (written by ``webdataset.TarWriter``, fixed mtime so reruns are byte-identical)
and read back by :class:`mmgen.data.stream.ShardStream` or by webdataset itself.
"""

from __future__ import annotations

import glob
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mmgen.data.shards import shard_name
from mmgen.errors import InvalidArgumentError, check_positive_int

MANIFEST = "dataset.json"
_IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG", "jpeg": "JPEG", "webp": "WEBP"}


def encode_image(image: Any, fmt: str = "png", quality: int = 95) -> bytes:
    """PIL image or uint8 array (``[H, W]``, ``[H, W, C]`` or a torch ``[C, H, W]`` tensor) -> encoded bytes."""
    from PIL import Image

    if fmt not in _IMAGE_FORMATS:
        raise InvalidArgumentError("fmt", f"one of {sorted(_IMAGE_FORMATS)}", fmt)
    if not isinstance(image, Image.Image):
        image = Image.fromarray(_as_hwc_uint8(image))
    if fmt in ("jpg", "jpeg") and image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    options = {"quality": quality} if fmt in ("jpg", "jpeg", "webp") else {"optimize": False}
    image.save(buffer, format=_IMAGE_FORMATS[fmt], **options)
    return buffer.getvalue()


def _as_hwc_uint8(image: Any) -> np.ndarray:
    """uint8 ``[H, W]`` / ``[H, W, C]`` array from a numpy array or a torch ``[C, H, W]`` / ``[H, W]`` tensor."""
    if hasattr(image, "detach"):  # torch tensor, channels first
        image = image.detach().cpu().numpy()
        if image.ndim == 3:
            image = np.moveaxis(image, 0, -1)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise InvalidArgumentError("image", "a uint8 array or a PIL image", f"dtype {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise InvalidArgumentError("image", "shape [H, W] or [H, W, C]", tuple(array.shape))
    return array


class ShardWriter:
    """Write samples into ``{out_dir}/{split}-%06d.tar`` shards of ``samples_per_shard`` samples each.

    Use as a context manager; on close it records the split in ``{out_dir}/dataset.json``
    (``{"splits": {split: {"samples": n, "shards": [...]}}, "source": ...}``, other splits kept) and deletes
    ``{split}-NNNNNN.tar`` files left there by an earlier, larger run of the same split.

    Args:
        out_dir: output folder (created).
        split: split name, the shard prefix (``train``, ``holdout``).
        samples_per_shard: samples per tar file.
        source: a note for the manifest (where the data came from).
        extra: more manifest fields for this split (``{"classes": [...]}``).
    """

    def __init__(self, out_dir: str | os.PathLike, split: str, samples_per_shard: int = 1000, *,
                 source: str | None = None, extra: dict[str, Any] | None = None):
        if not split or "/" in split or "." in split:
            raise InvalidArgumentError("split", "a name without '/' or '.'", split)
        self.out_dir, self.split = Path(out_dir), split
        self.samples_per_shard = check_positive_int("samples_per_shard", samples_per_shard)
        self.source, self.extra = source, dict(extra or {})
        self.count = 0
        self.shards: list[str] = []
        self._tar: Any = None
        self._in_shard = 0
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def write(self, key: str | int | None, fields: dict[str, Any]) -> str:
        """Write one sample: ``fields`` maps extensions to bytes, str (txt), int (cls) or dict (json).

        Args:
            key: the sample key (no dots); ints and ``None`` (the running count) become 8-digit zero-padded keys.

        Returns:
            The key written.
        """
        key = self.count if key is None else key
        key = f"{key:08d}" if isinstance(key, int) else str(key)
        if not key or "." in key.rsplit("/", 1)[-1]:
            raise InvalidArgumentError("key", "a non-empty sample key without dots", key)
        if self._tar is None or self._in_shard >= self.samples_per_shard:
            self._next_shard()
        self._tar.write({"__key__": key, **fields})
        self._in_shard += 1
        self.count += 1
        return key

    def write_image_sample(self, key: str | int | None, image: Any, label: int | None = None,
                           text: str | None = None, meta: dict[str, Any] | None = None, fmt: str = "png") -> str:
        """Write an image (PIL or uint8 array) with an optional ``.cls`` label, ``.txt`` caption and ``.json``."""
        fields: dict[str, Any] = {"jpg" if fmt == "jpeg" else fmt: encode_image(image, fmt)}
        if label is not None:
            fields["cls"] = int(label)
        if text is not None:
            fields["txt"] = text
        if meta is not None:
            fields["json"] = meta
        return self.write(key, fields)

    def _next_shard(self) -> None:
        from webdataset import TarWriter

        self._close_tar()
        path = shard_name(self.out_dir, self.split, len(self.shards))
        self._tar = TarWriter(path, mtime=0, user="mmgen", group="mmgen")
        self.shards.append(Path(path).name)
        self._in_shard = 0

    def _close_tar(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self) -> None:
        """Finish the last shard, remove this split's stale shards from an earlier run, update the manifest."""
        self._close_tar()
        for stale in self.out_dir.glob(f"{glob.escape(self.split)}-[0-9]*.tar"):
            if stale.name not in self.shards:
                stale.unlink()
        update_manifest(self.out_dir, self.split, {"samples": self.count, "shards": self.shards, **self.extra},
                        self.source)


def update_manifest(out_dir: str | os.PathLike, split: str, entry: dict[str, Any], source: str | None) -> None:
    """Set ``splits[split] = entry`` (and ``source`` when given) in ``{out_dir}/dataset.json``."""
    path = Path(out_dir) / MANIFEST
    manifest = read_manifest(out_dir)
    manifest.setdefault("splits", {})[split] = entry
    if source is not None:
        manifest["source"] = source
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The folder's ``dataset.json`` as a dict (empty when missing or unreadable)."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}
