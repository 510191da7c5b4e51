"""Pipeline folders: ``pipeline.json`` plus one sub-folder per component, or a path to a shared component folder.

A pipeline folder holds ``pipeline.json`` and its components (``transformer/``, ``image_tokenizer/``,
``audio_tokenizer/``), each ``config.json`` + ``model.safetensors``. A component that several shipped pipelines use
(one codec for speech, one image tokenizer for an image model) can instead live in its own folder: the pipeline
then records its path relative to the pipeline folder under the component's name in ``pipeline.json``
(``"audio_tokenizer": "../codec-speech"``), and loading follows it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from mmgen.errors import CheckpointError

PIPELINE_FILE = "pipeline.json"


def read_pipeline_index(directory: Path, holds: str) -> dict[str, Any]:
    """``directory/pipeline.json`` as a dict; a :class:`CheckpointError` saying what the folder should hold."""
    index = directory / PIPELINE_FILE
    if not index.is_file():
        raise CheckpointError(f"{index}: missing (the pipeline folder holds pipeline.json, {holds})")
    try:
        return json.loads(index.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{index}: unreadable ({exc})") from None


def save_component(model: Any, directory: Path, name: str, index: dict[str, Any], *,
                   dtype: torch.dtype | None = None, shared: str | os.PathLike | None = None) -> None:
    """Save ``model`` as ``directory/name``, or (``shared``: an existing saved folder holding the same model)
    record ``shared`` relative to ``directory`` as ``index[name]`` instead of writing a copy."""
    if shared is None:
        model.save_pretrained(directory / name, dtype=dtype)
        return
    folder = Path(shared).resolve()
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: not a saved {name.replace('_', ' ')} (config.json missing)")
    index[name] = os.path.relpath(folder, directory.resolve())


def component_dir(directory: Path, index: dict[str, Any], name: str) -> Path:
    """The folder of component ``name``: ``directory/name`` or the shared folder ``pipeline.json`` points at."""
    folder = directory / index.get(name, name)
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: the pipeline's {name.replace('_', ' ')} is missing ({PIPELINE_FILE}: "
                              f"{index.get(name, name + '/')})")
    return folder


def load_component(directory: Path, index: dict[str, Any], name: str, device: str | torch.device = "cpu") -> Any:
    """Load component ``name`` of the pipeline folder (its own sub-folder or a shared one)."""
    from mmgen.registry import load_pretrained

    return load_pretrained(component_dir(directory, index, name), device=device)


__all__ = ["PIPELINE_FILE", "component_dir", "load_component", "read_pipeline_index", "save_component"]
