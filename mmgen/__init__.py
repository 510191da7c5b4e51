"""mmgen: masked generative modeling across images, video and speech.

The top-level namespace is small and cheap to import; heavy submodules load on first use.
"""

from __future__ import annotations

from mmgen._lazy import lazy_attributes

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

__getattr__, __dir__ = lazy_attributes("mmgen", _LAZY, globals())
