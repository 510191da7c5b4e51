"""Conditioning: text encoders behind one interface (:class:`TextEncoder` → :class:`TextEncoding`)."""

from mmgen.conditioning.base import (
    TEXT_ENCODERS,
    PromptCache,
    TextEncoder,
    TextEncoding,
    load_text_encoder,
    warn_truncated,
)

__all__ = ["TEXT_ENCODERS", "PromptCache", "TextEncoder", "TextEncoding", "load_text_encoder", "warn_truncated"]
