"""Export a MIM encoder as a timm model folder (timm's own ``save_for_hf`` layout).

The folder holds ``config.json`` (``architecture``, ``num_classes``, ``num_features``, ``global_pool``,
``model_args``, ``pretrained_cfg`` with ``input_size``, ``mean``, ``std``, ...) and ``model.safetensors``, written by
``timm.models.save_for_hf`` itself, so that with nothing but timm::

    model = timm.create_model("local-dir:DIR", pretrained=True, num_classes=0)
    features = model(images01_normalized)        # == mmgen's encoder features, [B, D]

The weights go through a real timm ``VisionTransformer`` built from :meth:`ViTEncoder.timm_model_args` and loaded
strictly, so a name or shape mismatch fails here, not at the user's. Input normalization is ``mean = std = 0.5``
per channel: timm's preprocessing of images in [0, 1] gives mmgen's [-1, 1] range.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mmgen.errors import CheckpointError, ConfigError
from mmgen.models.mim.vit_adapter import INPUT_MEAN, INPUT_STD, ViTEncoder

#: timm architectures by width; ``model_args`` override every size field, so this is only the family name.
_ARCHITECTURES = {192: "vit_tiny_patch16_224", 384: "vit_small_patch16_224", 768: "vit_base_patch16_224",
                  1024: "vit_large_patch16_224"}


def find_encoder(model: nn.Module) -> ViTEncoder:
    """The :class:`ViTEncoder` of an mmgen MIM model (or the encoder itself)."""
    encoder = model if isinstance(model, ViTEncoder) else getattr(model, "encoder", None)
    if not isinstance(encoder, ViTEncoder):
        raise ConfigError(f"{type(model).__name__} has no timm-compatible ViT encoder (an MAE or BEiT-style model "
                          "from 'mmgen train mae|mim' has one)")
    return encoder


def to_timm(encoder: ViTEncoder) -> nn.Module:
    """A timm ``VisionTransformer`` (``num_classes=0``) carrying ``encoder``'s weights (strictly loaded)."""
    import timm

    encoder = find_encoder(encoder)
    architecture = _ARCHITECTURES.get(encoder.config.embed_dim, "vit_base_patch16_224")
    model = timm.create_model(architecture, pretrained=False, **encoder.timm_model_args())
    try:
        model.load_state_dict({k: v.detach().float().cpu() for k, v in encoder.timm_state_dict().items()},
                              strict=True)
    except RuntimeError as exc:  # a timm version whose ViT differs from the adapter's: say so plainly
        raise CheckpointError(f"timm {timm.__version__}: the encoder's weights do not fit its VisionTransformer "
                              f"({str(exc).splitlines()[0]})") from None
    return model.eval()


def export_timm(model: nn.Module, directory: str | Path) -> Path:
    """Write ``model``'s encoder to ``directory`` as a timm folder; returns ``directory``."""
    from timm.models import save_for_hf

    encoder = find_encoder(model)
    timm_model = to_timm(encoder)
    c = encoder.config
    data_config = {"input_size": (c.in_channels, c.image_size, c.image_size), "mean": (INPUT_MEAN,) * c.in_channels,
                   "std": (INPUT_STD,) * c.in_channels, "crop_pct": 1.0, "interpolation": "bilinear",
                   "crop_mode": "center"}
    # describe these weights, not the ImageNet checkpoint the architecture name would otherwise bring along
    timm_model.pretrained_cfg = {"architecture": timm_model.pretrained_cfg["architecture"], "tag": "mmgen-mim",
                                 "num_classes": 0, "first_conv": "patch_embed.proj", "classifier": "head",
                                 "fixed_input_size": True, **data_config}
    directory = Path(directory)
    # an informational top-level "mmgen" entry (timm keeps unknown model_config keys and ignores them on load)
    save_for_hf(timm_model, str(directory), model_config={"mmgen": {"encoder_of": type(model).__name__}},
                model_args=encoder.timm_model_args(), safe_serialization=True, data_config=data_config)
    return directory


def load_timm(directory: str | Path) -> nn.Module:
    """Load an exported folder the way a user would: ``timm.create_model("local-dir:DIR", pretrained=True)``."""
    import timm

    return timm.create_model(f"local-dir:{Path(directory)}", pretrained=True, num_classes=0).eval()


@torch.no_grad()
def max_feature_difference(model: nn.Module, timm_model: nn.Module, images: torch.Tensor) -> float:
    """max |mmgen features − timm features| on ``images`` [B, C, H, W] in [-1, 1] (both in eval mode, fp32)."""
    encoder = find_encoder(model).eval()
    return float((encoder(images.float()) - timm_model(images.float())).abs().max())


__all__ = ["export_timm", "find_encoder", "load_timm", "max_feature_difference", "to_timm"]
