"""mmgen: masked generative modeling across images, video and speech.

The top-level namespace is small and cheap to import; heavy submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "mmgen.registry",
    "list_models": "mmgen.registry",
    "register_config": "mmgen.registry",
    "load_configs": "mmgen.registry",
    "load_pretrained": "mmgen.registry",
    "attention": "mmgen.nn.attention",
    "attention_backend": "mmgen.nn.attention",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgen' has no attribute {name!r}")
