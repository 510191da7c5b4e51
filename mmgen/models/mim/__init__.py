"""Masked image modeling encoders: MAE (:class:`MaskedAutoencoder`) and BEiT-style (:class:`MaskedImageModel`).

Both are built on :class:`~mmgen.models.mim.vit_adapter.ViTEncoder` (timm's ViT blocks through a thin adapter),
so ``mmgen export timm`` turns their encoder into a timm model folder with identical features. Importing this
package registers the named configs ``vit-tiny-mnist`` (MAE) and ``beit-tiny-mnist``.
"""

from mmgen.models.mim.beit import BEiTConfig, BEiTOutput, MaskedImageModel
from mmgen.models.mim.common import MIMModel
from mmgen.models.mim.mae import MAEConfig, MAEOutput, MaskedAutoencoder
from mmgen.models.mim.vit_adapter import ViTConfig, ViTEncoder

__all__ = ["BEiTConfig", "BEiTOutput", "MAEConfig", "MAEOutput", "MIMModel", "MaskedAutoencoder",
           "MaskedImageModel", "ViTConfig", "ViTEncoder"]
