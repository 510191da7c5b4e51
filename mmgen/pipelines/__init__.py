"""User-facing pipelines: generation and editing for images (and later video and speech).

:func:`load_pipeline` opens any saved pipeline folder by its ``pipeline.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mmgen.errors import CheckpointError

# pipeline.json "pipeline" value -> "module:Class"
PIPELINES = {
    "maskgit": "mmgen.pipelines.maskgit:MaskGITPipeline",
    "text-to-image": "mmgen.pipelines.text_to_image:TextToImagePipeline",
    "speech": "mmgen.pipelines.speech:SpeechPipeline",
}


def load_pipeline(directory: str | Path, **kwargs: Any) -> Any:
    """Load a pipeline folder (``pipeline.json`` names its kind)."""
    import importlib

    directory = Path(directory)
    index = directory / "pipeline.json"
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: pipeline folder not found")
    if not index.is_file():
        from mmgen.interop.amused import is_amused_folder, load_amused_pipeline

        if is_amused_folder(directory):  # a diffusers aMUSEd folder (model_index.json), converted on the fly
            return load_amused_pipeline(directory, **kwargs)
        raise CheckpointError(f"{index}: missing (not a pipeline folder; expected pipeline.json + components)")
    kind = json.loads(index.read_text()).get("pipeline")
    if kind not in PIPELINES:
        raise CheckpointError(f"{index}: unknown pipeline {kind!r}; known: {sorted(PIPELINES)}")
    module, name = PIPELINES[kind].split(":")
    return getattr(importlib.import_module(module), name).from_pretrained(directory, **kwargs)
