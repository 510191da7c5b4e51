"""Import a folder of images (recursively) into webdataset shards, with optional captions and labels.

``photo.jpg`` + ``photo.txt`` become one sample (``.jpg`` bytes kept as they are, ``.txt`` caption); with
``labels_from_subfolders`` the first folder level under the source names the class (``cats/a.jpg`` -> class of
``cats``, classes sorted by name). Unreadable images are skipped and counted, never fatal.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from mmgen.data.writer import ShardWriter, encode_image
from mmgen.errors import DataError

FOLDER_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
_KEEP_BYTES = {".jpg": "jpg", ".jpeg": "jpg", ".png": "png", ".webp": "webp"}


@dataclass
class FolderReport:
    """What :func:`write_folder` did: samples written, unreadable files skipped, classes (if labelled)."""

    written: int = 0
    skipped: list[str] = field(default_factory=list)
    captions: int = 0
    classes: list[str] = field(default_factory=list)


def find_images(source: str | os.PathLike) -> list[Path]:
    """Image files under ``source`` (jpg/jpeg/png/webp/bmp, any case), recursively, sorted by path."""
    root = Path(source)
    if not root.is_dir():
        raise DataError(f"not a folder: {str(root)!r}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_IMAGE_EXTENSIONS)


def image_member(path: Path) -> tuple[str, bytes]:
    """(extension, bytes) to store for an image file; the image is fully decoded first to reject bad files.

    JPEG, PNG and WebP bytes are kept unchanged; other formats (BMP) are re-encoded as PNG.

    Raises:
        OSError, ValueError, SyntaxError: the file is not a readable image.
    """
    from PIL import Image

    data = path.read_bytes()
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        ext = _KEEP_BYTES.get(path.suffix.lower())
        if ext is None:
            return "png", encode_image(image if image.mode in ("L", "RGB", "RGBA") else image.convert("RGB"))
    return ext, data


def _class_names(root: Path, images: list[Path]) -> list[str]:
    names = sorted({p.relative_to(root).parts[0] for p in images if len(p.relative_to(root).parts) > 1})
    if not names:
        raise DataError(f"--labels-from-subfolders: no subfolders with images under {str(root)!r}")
    return names


def write_folder(source: str | os.PathLike, out_dir: str | os.PathLike, *, split: str = "train",
                 captions: bool = False, labels_from_subfolders: bool = False, samples_per_shard: int = 1000,
                 progress: Callable[[Iterable, int, str], Iterable] | None = None) -> FolderReport:
    """Write every readable image under ``source`` into ``{out_dir}/{split}-*.tar``.

    Each sample has the image (``.jpg``/``.png``/``.webp``), a ``.json`` with its relative path, a ``.txt`` caption
    when ``captions`` and ``same-name.txt`` exists, and a ``.cls`` when ``labels_from_subfolders`` (images directly
    in ``source`` are then skipped as unlabelled).
    """
    root = Path(source)
    images = find_images(root)
    if not images:
        raise DataError(f"no images ({', '.join(FOLDER_IMAGE_EXTENSIONS)}) under {str(root)!r}")
    report = FolderReport(classes=_class_names(root, images) if labels_from_subfolders else [])
    extra = {"classes": report.classes} if report.classes else None
    rows: Iterable[Path] = images if progress is None else progress(images, len(images), split)
    with ShardWriter(out_dir, split, samples_per_shard, source=f"folder:{root.resolve()}", extra=extra) as writer:
        for path in rows:
            fields = _folder_fields(root, path, captions, report)
            if fields is not None:
                writer.write(None, fields)
    report.written = writer.count
    return report


def _folder_fields(root: Path, path: Path, captions: bool, report: FolderReport) -> dict[str, object] | None:
    relative = path.relative_to(root)
    meta: dict[str, object] = {"path": relative.as_posix()}
    if report.classes:
        if len(relative.parts) < 2:
            return None
        meta["label_name"] = relative.parts[0]
    try:
        ext, data = image_member(path)
    except Exception:  # any decoder failure: not an image we can use
        report.skipped.append(relative.as_posix())
        return None
    fields: dict[str, object] = {ext: data, "json": meta}
    if report.classes:
        fields["cls"] = report.classes.index(relative.parts[0])
    caption = path.with_suffix(".txt")
    if captions and caption.is_file():
        fields["txt"] = caption.read_text(encoding="utf-8", errors="replace").strip()
        report.captions += 1
    return fields
