"""Image I/O for pipelines: files ↔ tensors in [-1, 1], PIL conversion, labelled grids."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from mmgen.errors import InvalidArgumentError


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """images: [B, C, H, W] in [-1, 1] (C = 1 or 3) → list of PIL images (L or RGB)."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()
    out = []
    for item in array:
        out.append(Image.fromarray(item[0], "L") if item.shape[0] == 1 else Image.fromarray(item.transpose(1, 2, 0)))
    return out


def load_image(path: str | Path, channels: int, size: tuple[int, int] | None = None, *,
               argument: str = "--image") -> torch.Tensor:
    """Read an image file as [1, channels, H, W] in [-1, 1]; resized (bicubic) to ``size`` (H, W) when given."""
    path = Path(path)
    if not path.is_file():
        raise InvalidArgumentError(argument, "an existing image file", str(path))
    try:
        with Image.open(path) as img:
            img = img.convert("L" if channels == 1 else "RGB")
            if size is not None and img.size != (size[1], size[0]):
                img = img.resize((size[1], size[0]), Image.BICUBIC)
            array = np.asarray(img, dtype=np.float32)
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidArgumentError(argument, "a readable image (PNG, JPEG, WebP, ...)", f"{path} ({exc})") from None
    tensor = torch.from_numpy(array)
    tensor = tensor[None] if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    return (tensor / 127.5 - 1.0)[None]


def load_mask(path: str | Path, size: tuple[int, int], *, argument: str = "--mask") -> torch.Tensor:
    """Read a mask image (white/non-zero = region to edit) as float [1, 1, H, W] in [0, 1]; must be ``size``."""
    mask = (load_image(path, 1, None, argument=argument) + 1) / 2
    if tuple(mask.shape[-2:]) != tuple(size):
        raise InvalidArgumentError(argument, f"a mask of the image's size {size[1]}x{size[0]} (WxH)",
                                   f"{mask.shape[-1]}x{mask.shape[-2]}")
    return mask


def save_images(images: Sequence[Image.Image], out: str | Path, *, nrow: int | None = None) -> list[Path]:
    """Write images: ``out`` ending in an image suffix → one grid file; otherwise a folder of numbered PNGs."""
    out = Path(out)
    if out.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"}:
        out.parent.mkdir(parents=True, exist_ok=True)
        (images[0] if len(images) == 1 else image_grid(images, nrow=nrow)).save(out)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, image in enumerate(images):
        paths.append(out / f"{index:04d}.png")
        image.save(paths[-1])
    return paths


def image_grid(images: Sequence[Image.Image], *, nrow: int | None = None, pad: int = 2) -> Image.Image:
    """Tile images into one image with ``nrow`` per row (default: about square); cells fit the largest image."""
    if not images:
        raise InvalidArgumentError("images", "at least one image")
    cols = nrow or int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    width, height = max(img.width for img in images), max(img.height for img in images)
    grid = Image.new(images[0].mode, (cols * (width + pad) + pad, rows * (height + pad) + pad), color=0)
    for index, image in enumerate(images):
        row, col = divmod(index, cols)
        grid.paste(image, (pad + col * (width + pad), pad + row * (height + pad)))
    return grid


def upscale(image: Image.Image, factor: int) -> Image.Image:
    """Nearest-neighbour upscale so small (28x28) results are viewable."""
    return image.resize((image.width * factor, image.height * factor), Image.NEAREST) if factor > 1 else image


def save_class_grid(pipe: Any, path: str | Path, *, per_class: int = 8, classes: Sequence[int] | None = None,
                    zoom: int = 1, seed: int = 0, **call_kwargs: Any) -> Path:
    """Generate ``per_class`` samples for each class (seeded) and save a grid with one row per class."""
    classes = list(range(pipe.transformer.config.num_classes)) if classes is None else list(classes)
    labels = [c for c in classes for _ in range(per_class)]
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    result = pipe(class_labels=labels, generator=generator, **call_kwargs)
    grid = image_grid([upscale(img, zoom) for img in result.images], nrow=per_class)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return Path(path)


def caption_rows(grid: Image.Image, captions: Sequence[str], row_height: int, *, width: int = 260,
                 pad: int = 2) -> Image.Image:
    """Put a text column left of ``grid`` with one caption per row (rows of ``row_height + pad`` pixels), wrapped."""
    from PIL import ImageDraw

    canvas = Image.new("RGB", (grid.width + width, grid.height), color=(255, 255, 255))
    canvas.paste(grid.convert("RGB"), (width, 0))
    draw = ImageDraw.Draw(canvas)
    line_height = 11
    max_lines = max(1, row_height // line_height)
    for row, text in enumerate(captions):
        lines = textwrap.wrap(text or "(empty prompt)", width=max(8, width // 6 - 1))
        if len(lines) > max_lines:
            lines = [*lines[:max_lines - 1], lines[max_lines - 1][:-3] + "..."]
        top = pad + row * (row_height + pad) + (row_height - line_height * len(lines)) // 2
        for index, line in enumerate(lines):
            draw.text((4, top + index * line_height), line, fill=(0, 0, 0))
    return canvas


def save_prompt_grid(pipe: Any, prompts: Sequence[str], path: str | Path, *, per_prompt: int = 4, zoom: int = 1,
                     seed: int = 0, **call_kwargs: Any) -> Path:
    """Generate ``per_prompt`` samples for each prompt (seeded) and save a grid: one captioned row per prompt."""
    generator = torch.Generator(device=pipe.device).manual_seed(seed)
    result = pipe([p for p in prompts for _ in range(per_prompt)], generator=generator, **call_kwargs)
    images = [upscale(img, zoom) for img in result.images]
    grid = caption_rows(image_grid(images, nrow=per_prompt), prompts, images[0].height)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(path)
    return Path(path)
