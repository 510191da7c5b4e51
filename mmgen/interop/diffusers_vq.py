"""diffusers ``VQModel`` ↔ :class:`mmgen.tokenizers.image.ImageTokenizer` (config and weight mapping).

The tokenizer reuses diffusers' ``Encoder``/``Decoder``, so encoder, decoder, ``quant_conv`` and ``post_quant_conv``
weights keep their names; only the codebook moves: ``quantize.embedding.weight [K, D]`` ↔ the VQ quantizer's EMA
codebook. Only plain ``DownEncoderBlock2D`` / ``UpDecoderBlock2D`` stacks (every VQGAN / aMUSEd VQ) map.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mmgen.errors import CheckpointError, InvalidArgumentError

if TYPE_CHECKING:
    from diffusers import VQModel

    from mmgen.tokenizers.image import ImageTokenizer, ImageTokenizerConfig

CODEBOOK_KEY = "quantize.embedding.weight"
_DOWN, _UP = "DownEncoderBlock2D", "UpDecoderBlock2D"


def config_from_diffusers(dconfig: dict[str, Any]) -> ImageTokenizerConfig:
    """A diffusers ``VQModel`` config dict → :class:`ImageTokenizerConfig` (raises on layouts that do not map)."""
    from mmgen.tokenizers.image import ImageTokenizerConfig

    blocks = tuple(dconfig.get("block_out_channels", (64,)))
    down, up = tuple(dconfig.get("down_block_types", (_DOWN,))), tuple(dconfig.get("up_block_types", (_UP,)))
    if set(down) != {_DOWN} or set(up) != {_UP} or len(down) != len(blocks) or len(up) != len(blocks):
        raise CheckpointError(f"VQModel with down_block_types={list(down)}, up_block_types={list(up)}: only "
                              f"stacks of {_DOWN}/{_UP} (one per block_out_channels entry) can be imported")
    latent = int(dconfig.get("latent_channels", 3))
    return ImageTokenizerConfig(
        image_size=int(dconfig.get("sample_size", 32)), in_channels=int(dconfig.get("in_channels", 3)),
        out_channels=int(dconfig.get("out_channels", 3)), block_out_channels=blocks,
        layers_per_block=int(dconfig.get("layers_per_block", 1)), latent_channels=latent,
        norm_num_groups=int(dconfig.get("norm_num_groups", 32)), norm_type=dconfig.get("norm_type", "group"),
        act_fn=dconfig.get("act_fn", "silu"), mid_block_attention=bool(dconfig.get("mid_block_add_attention", True)),
        scaling_factor=float(dconfig.get("scaling_factor", 0.18215)), quantizer="vq",
        codebook_size=int(dconfig.get("num_vq_embeddings", 256)),
        codebook_dim=int(dconfig.get("vq_embed_dim") or latent), kmeans_init=False)


def config_to_diffusers(config: ImageTokenizerConfig) -> dict[str, Any]:
    """:class:`ImageTokenizerConfig` → keyword arguments of diffusers' ``VQModel``."""
    if config.quantizer != "vq" or config.cosine_codes:
        raise InvalidArgumentError(
            "tokenizer", "a Euclidean VQ tokenizer (quantizer='vq', cosine_codes=false) to export to diffusers' "
            "VQModel", f"quantizer={config.quantizer!r}, cosine_codes={config.cosine_codes}")
    blocks = len(config.block_out_channels)
    return dict(
        in_channels=config.in_channels, out_channels=config.out_channels, down_block_types=(_DOWN,) * blocks,
        up_block_types=(_UP,) * blocks, block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block, act_fn=config.act_fn, latent_channels=config.latent_channels,
        sample_size=config.image_size, num_vq_embeddings=config.codebook_size,
        norm_num_groups=config.norm_num_groups, vq_embed_dim=config.codebook_dim,
        scaling_factor=config.scaling_factor, norm_type=config.norm_type,
        mid_block_add_attention=config.mid_block_attention, lookup_from_codebook=True)


def _resolve_folder(path: Path, subfolder: str | None) -> tuple[Path, str | None]:
    """Find the folder holding the VQModel config: ``path``, ``path/subfolder`` or an aMUSEd ``path/vqvae``."""
    if not path.is_dir():
        raise CheckpointError(f"{path}: diffusers VQModel folder not found")
    if subfolder is None and not (path / "config.json").is_file() and (path / "vqvae" / "config.json").is_file():
        subfolder = "vqvae"
    folder = path / subfolder if subfolder else path
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"{folder}: no config.json (expected a diffusers VQModel folder or a pipeline "
                              "folder with a vqvae/ subfolder)")
    return path, subfolder


def load_diffusers_vqmodel(path: str | Path, subfolder: str | None = None) -> VQModel:
    """Load a diffusers ``VQModel`` from a local folder (never the network), with errors naming the folder."""
    from diffusers import VQModel

    root, subfolder = _resolve_folder(Path(path), subfolder)
    try:
        return VQModel.from_pretrained(str(root), subfolder=subfolder, local_files_only=True).eval()
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{root}: not a loadable diffusers VQModel ({str(exc).splitlines()[0]})") from None


def tokenizer_from_diffusers(source: str | Path | VQModel, *, subfolder: str | None = None) -> ImageTokenizer:
    """Build an :class:`ImageTokenizer` with the weights of a diffusers ``VQModel`` (module or folder)."""
    from mmgen.tokenizers.image import ImageTokenizer

    vqmodel = source if isinstance(source, torch.nn.Module) else load_diffusers_vqmodel(source, subfolder)
    if getattr(vqmodel.quantize, "remap", None) is not None:
        raise CheckpointError("VQModel with a remapped codebook (remap=...) cannot be imported")
    tokenizer = ImageTokenizer(config_from_diffusers(dict(vqmodel.config)))
    state = {k: v.detach().float() for k, v in vqmodel.state_dict().items()}
    codebook = state.pop(CODEBOOK_KEY)
    own = {k: v for k, v in tokenizer.state_dict().items() if not k.startswith("quantizer.")}
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"VQModel weights do not map: missing {missing[:4]}, unexpected {unexpected[:4]}")
    tokenizer.load_state_dict(state, strict=False)
    with torch.no_grad():
        tokenizer.quantizer.set_codebook(codebook)
    return tokenizer.eval()


def tokenizer_to_diffusers(tokenizer: ImageTokenizer, directory: str | Path | None = None) -> VQModel:
    """A diffusers ``VQModel`` with ``tokenizer``'s weights (fp32); saved with ``save_pretrained`` if asked."""
    from diffusers import VQModel

    vqmodel = VQModel(**config_to_diffusers(tokenizer.config))
    state = {k: v.detach().float().cpu() for k, v in tokenizer.state_dict().items()
             if not k.startswith("quantizer.")}
    state[CODEBOOK_KEY] = tokenizer.quantizer.codebook.detach().float().cpu()
    vqmodel.load_state_dict(state, strict=True)
    vqmodel.eval()
    if directory is not None:
        vqmodel.save_pretrained(str(directory))
    return vqmodel


__all__ = ["config_from_diffusers", "config_to_diffusers", "load_diffusers_vqmodel", "tokenizer_from_diffusers",
           "tokenizer_to_diffusers"]
