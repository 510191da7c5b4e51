"""mmgen.nn: shared layers (the one attention, transformer blocks).

Importing this package never imports xformers; the attention backends load on first use.
``mmgen.nn.attention`` is the attention *module*; the functional core is ``mmgen.nn.attention.attention`` (also
``mmgen.attention``). It is deliberately not re-exported here, where it would shadow the submodule.
"""

from mmgen.nn.attention import (
    BACKENDS,
    ENV_VAR,
    Attention,
    Backend,
    Rope,
    apply_rotary,
    attention_backend,
    available_backends,
    get_attention_backend,
    resolve_backend,
)
from mmgen.nn.transformer import Mlp, NormKind, TransformerBlock, make_norm

__all__ = [
    "BACKENDS",
    "ENV_VAR",
    "Attention",
    "Backend",
    "Mlp",
    "NormKind",
    "Rope",
    "TransformerBlock",
    "apply_rotary",
    "attention_backend",
    "available_backends",
    "get_attention_backend",
    "make_norm",
    "resolve_backend",
]
