"""mmgen.tokenizers: media ↔ token grids (image VQ tokenizers and their quantizers).

Imported absolutely as ``mmgen.tokenizers`` (never a top-level ``tokenizers``, which is Hugging Face's).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "ImageTokenizer": "mmgen.tokenizers.image",
    "ImageTokenizerConfig": "mmgen.tokenizers.image",
    "TokenizerOutput": "mmgen.tokenizers.image",
    "Quantizer": "mmgen.tokenizers.quantizers",
    "QuantizerOutput": "mmgen.tokenizers.quantizers",
    "build_quantizer": "mmgen.tokenizers.quantizers",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mmgen.tokenizers' has no attribute {name!r}")
