"""mmgen.tokenizers: media ↔ token grids (image VQ tokenizers, the RVQ audio codec, their quantizers).

Imported absolutely as ``mmgen.tokenizers`` (never a top-level ``tokenizers``, which is Hugging Face's).
"""

from __future__ import annotations

from mmgen._lazy import lazy_attributes

_LAZY = {
    "AudioTokenizer": "mmgen.tokenizers.audio",
    "AudioTokenizerConfig": "mmgen.tokenizers.audio",
    "AudioCodes": "mmgen.tokenizers.audio",
    "ImageTokenizer": "mmgen.tokenizers.image",
    "ImageTokenizerConfig": "mmgen.tokenizers.image",
    "TokenizerOutput": "mmgen.tokenizers.image",
    "Quantizer": "mmgen.tokenizers.quantizers",
    "QuantizerOutput": "mmgen.tokenizers.quantizers",
    "build_quantizer": "mmgen.tokenizers.quantizers",
}

__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_attributes("mmgen.tokenizers", _LAZY, globals())
