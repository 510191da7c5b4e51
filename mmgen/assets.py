"""Where the small checkpoints that ship with mmgen live (``assets/`` at the repository root).

``MMGEN_ASSETS`` overrides the folder (e.g. for an installed wheel with assets copied elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

from mmgen.errors import CheckpointError

#: shipped checkpoints (folder names under assets/)
MNIST_JUDGE = "mnist-judge"
MNIST_TOKENIZER = "vq-mnist"
MNIST_MASKGIT = "maskgit-mnist"
SHAPES_JUDGE = "shapes-judge"
SHAPES_TOKENIZER = "vq-shapes"
SHAPES_MUSE = "muse-shapes"
SPEECH_CODEC = "codec-speech"
SPEECH_TTS = "tts-speech"
SPEECH_JUDGE = "phoneme-judge"


def assets_dir() -> Path:
    override = os.environ.get("MMGEN_ASSETS")
    return Path(override) if override else Path(__file__).resolve().parents[1] / "assets"


def asset_path(name: str, *, required: bool = True) -> Path:
    """``assets/NAME``; a clear CheckpointError when it is missing and ``required``."""
    path = assets_dir() / name
    if required and not path.exists():
        raise CheckpointError(f"{path}: shipped asset missing (set MMGEN_ASSETS or retrain it; see assets/README.md)")
    return path
