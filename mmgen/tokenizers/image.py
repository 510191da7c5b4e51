"""``ImageTokenizer``: a VQGAN-style image tokenizer (images ↔ token grids).

The conv encoder/decoder are diffusers' VQGAN blocks (``diffusers.models.autoencoders.vae.Encoder`` / ``Decoder``,
the ones inside ``VQModel``), reused as they are, so a diffusers ``VQModel`` loads with the same parameter names
(:meth:`ImageTokenizer.from_diffusers`) and exports back (:meth:`ImageTokenizer.to_diffusers`). Between them sit
two 1x1 convs and one :class:`~mmgen.tokenizers.quantizers.Quantizer` (VQ, FSQ or LFQ)::

    images [B, C, H, W] in [-1, 1] ─► encoder ─► quant_conv ─► quantizer ─► ids [B, H/f, W/f]
    ids ─► codes [B, D, H/f, W/f] ─► post_quant_conv ─► decoder ─► images [B, C, H, W]

with ``f = downsample_factor = 2 ** (len(block_out_channels) - 1)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from mmgen.errors import InvalidArgumentError
from mmgen.pretrained import PretrainedModel
from mmgen.registry import register_config
from mmgen.tokenizers.quantizers import QuantizerKind, build_quantizer

if TYPE_CHECKING:
    from diffusers import VQModel


@dataclass
class ImageTokenizerConfig:
    """Architecture of an :class:`ImageTokenizer` (the first block of fields mirrors diffusers' ``VQModel``).

    ``codebook_dim`` is the VQ code dimension (small values, 4-16, keep codebook usage high); FSQ uses
    ``len(fsq_levels)`` channels and ``codebook_size == prod(fsq_levels)``; LFQ uses ``log2(codebook_size)``.
    ``pixel_range`` is what the convolutions were trained on: mmgen's own tokenizers use ``"-1..1"``; aMUSEd's VQ
    uses ``"0..1"``. Either way :meth:`ImageTokenizer.encode`/``decode`` speak [-1, 1]; the shift happens inside.
    """

    image_size: int = 256
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 256, 512, 768)
    layers_per_block: int = 2
    latent_channels: int = 64
    norm_num_groups: int = 32
    norm_type: Literal["group", "spatial"] = "group"
    act_fn: str = "silu"
    mid_block_attention: bool = True
    scaling_factor: float = 0.18215
    pixel_range: Literal["-1..1", "0..1"] = "-1..1"
    quantizer: QuantizerKind = "vq"
    codebook_size: int = 8192
    codebook_dim: int = 64
    fsq_levels: tuple[int, ...] = ()
    cosine_codes: bool = False
    codebook_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 2.0
    commitment_weight: float = 0.25
    entropy_weight: float = 0.1


def code_dim(config: ImageTokenizerConfig) -> int:
    """Channels the quantizer reads: ``codebook_dim`` (VQ), ``len(fsq_levels)`` (FSQ), ``log2(K)`` (LFQ)."""
    if config.quantizer == "fsq":
        if math.prod(config.fsq_levels) != config.codebook_size:
            raise InvalidArgumentError("codebook_size", f"prod(fsq_levels) = {math.prod(config.fsq_levels)} "
                                       f"for fsq_levels={list(config.fsq_levels)}", config.codebook_size)
        return len(config.fsq_levels)
    if config.quantizer == "lfq":
        return max(1, int(math.log2(max(config.codebook_size, 1))))
    return config.codebook_dim


@dataclass
class TokenizerOutput:
    """``ImageTokenizer.forward`` result.

    Attributes:
        reconstruction: [B, C, H, W] decoded images (gradients flow to encoder, decoder and quantizer inputs).
        indices: [B, h, w] token ids.
        aux_loss: scalar quantizer loss (commitment / entropy), already weighted.
        perplexity: scalar batch code perplexity.
        usage: scalar fraction of codes used in the batch.
    """

    reconstruction: torch.Tensor
    indices: torch.Tensor
    aux_loss: torch.Tensor
    perplexity: torch.Tensor
    usage: torch.Tensor


class ImageTokenizer(PretrainedModel):
    """Images in [-1, 1] ↔ token grids; see the module docstring for the layout."""

    config_class = ImageTokenizerConfig
    model_type = "image_tokenizer"

    def __init__(self, config: ImageTokenizerConfig):
        super().__init__(config)
        from diffusers.models.autoencoders.vae import Decoder, Encoder

        blocks = len(config.block_out_channels)
        dim = code_dim(config)
        common = dict(block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
                      act_fn=config.act_fn, norm_num_groups=config.norm_num_groups,
                      mid_block_add_attention=config.mid_block_attention)
        self.encoder = Encoder(in_channels=config.in_channels, out_channels=config.latent_channels,
                               down_block_types=("DownEncoderBlock2D",) * blocks, double_z=False, **common)
        self.quant_conv = nn.Conv2d(config.latent_channels, dim, 1)
        self.quantizer = build_quantizer(
            config.quantizer, dim=dim, codebook_size=config.codebook_size, levels=tuple(config.fsq_levels),
            ema_decay=config.codebook_decay, kmeans_init=config.kmeans_init,
            dead_code_threshold=config.dead_code_threshold, cosine=config.cosine_codes,
            commitment_weight=config.commitment_weight, entropy_weight=config.entropy_weight)
        self.post_quant_conv = nn.Conv2d(dim, config.latent_channels, 1)
        self.decoder = Decoder(in_channels=config.latent_channels, out_channels=config.out_channels,
                               up_block_types=("UpDecoderBlock2D",) * blocks, norm_type=config.norm_type, **common)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def codebook_size(self) -> int:
        return self.quantizer.codebook_size

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.config.block_out_channels) - 1)

    def token_grid(self, image_size: int | tuple[int, int] | None = None) -> tuple[int, int]:
        """(h, w) of the token grid for an image of ``image_size`` (default: the configured size)."""
        size = self.config.image_size if image_size is None else image_size
        height, width = (size, size) if isinstance(size, int) else size
        factor = self.downsample_factor
        return math.ceil(height / factor), math.ceil(width / factor)

    @property
    def last_layer(self) -> torch.Tensor:
        """The decoder's output conv weight (the GAN adaptive weight compares gradient norms on it)."""
        return self.decoder.conv_out.weight

    # -------------------------------------------------------------------------------------------- checks
    def check_images(self, images: torch.Tensor) -> None:
        """Raise :class:`InvalidArgumentError` unless ``images`` is a float [B, C, H, W] batch of this tokenizer."""
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise InvalidArgumentError("images", "a tensor [B, C, H, W]", got)
        if images.shape[1] != self.config.in_channels:
            raise InvalidArgumentError("images", f"{self.config.in_channels} channel(s) [B, C, H, W]",
                                       f"{images.shape[1]} channels (shape {tuple(images.shape)})")
        if not images.is_floating_point():
            raise InvalidArgumentError("images", "floating-point values in [-1, 1]", str(images.dtype))
        if min(images.shape[2:]) < self.downsample_factor:
            raise InvalidArgumentError("images", f"height and width >= {self.downsample_factor}",
                                       tuple(images.shape[2:]))

    def _check_tokens(self, tokens: torch.Tensor) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
            got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise InvalidArgumentError("tokens", "a tensor of ids [B, h, w]", got)
        self.quantizer.check_indices(tokens)

    # ------------------------------------------------------------------------------------------ encoding
    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → pre-quantization latents [B, D, h, w]."""
        self.check_images(images)
        weight = self.quant_conv.weight
        if self.config.pixel_range == "0..1":
            images = (images + 1) / 2
        return self.quant_conv(self.encoder(images.to(device=weight.device, dtype=weight.dtype)))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] in [-1, 1] → token ids [B, h, w] (int64)."""
        return self.quantizer.quantize(self.encode_latents(images))

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes: [B, D, h, w] quantized latents → images [B, C, h·f, w·f] (roughly in [-1, 1])."""
        weight = self.post_quant_conv.weight
        codes = codes.to(dtype=weight.dtype)
        spatial = codes if self.config.norm_type == "spatial" else None
        images = self.decoder(self.post_quant_conv(codes), spatial)
        return images * 2 - 1 if self.config.pixel_range == "0..1" else images

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: [B, h, w] ids in [0, codebook_size) → images [B, C, h·f, w·f] (roughly in [-1, 1])."""
        self._check_tokens(tokens)
        return self.decode_codes(self.quantizer.embed(tokens.to(self.post_quant_conv.weight.device)))

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """images: [B, C, H, W] → ``decode(encode(images))`` clamped to [-1, 1]."""
        return self.decode(self.encode(images)).clamp(-1, 1)

    def forward(self, images: torch.Tensor) -> TokenizerOutput:
        """Training pass. images: [B, C, H, W] in [-1, 1] → :class:`TokenizerOutput` (updates EMA codebooks)."""
        quantized = self.quantizer(self.encode_latents(images))
        return TokenizerOutput(self.decode_codes(quantized.quantized), quantized.indices, quantized.aux_loss,
                               quantized.perplexity, quantized.usage)

    # ------------------------------------------------------------------------------------------- interop
    @classmethod
    def from_diffusers(cls, source: str | Path | VQModel, *, subfolder: str | None = None) -> ImageTokenizer:
        """Load a diffusers ``VQModel`` (module or folder; aMUSEd-style ``vqvae/`` subfolders are found)."""
        from mmgen.interop.diffusers_vq import tokenizer_from_diffusers

        return tokenizer_from_diffusers(source, subfolder=subfolder)

    def to_diffusers(self, directory: str | Path | None = None) -> VQModel:
        """Convert to a diffusers ``VQModel`` with the same weights; save it to ``directory`` when given."""
        from mmgen.interop.diffusers_vq import tokenizer_to_diffusers

        return tokenizer_to_diffusers(self, directory)


_MNIST: dict[str, Any] = dict(
    image_size=28, in_channels=1, out_channels=1, block_out_channels=(32, 64, 64), layers_per_block=1,
    latent_channels=64, norm_num_groups=32, mid_block_attention=True, quantizer="vq", codebook_size=1024,
    codebook_dim=8, kmeans_init=True, dead_code_threshold=2.0, codebook_decay=0.99, commitment_weight=0.25)
register_config("vq-mnist", ImageTokenizer.model_type, _MNIST)
# The built-in captioned shapes (`mmgen data shapes`): 32x32 RGB -> 8x8 tokens, 1024 low-dim codes.
register_config("vq-shapes", ImageTokenizer.model_type,
                {**_MNIST, "image_size": 32, "in_channels": 3, "out_channels": 3, "codebook_size": 1024})
register_config("fsq-mnist", ImageTokenizer.model_type,
                {**_MNIST, "quantizer": "fsq", "fsq_levels": (8, 8, 4, 4), "codebook_size": 1024})
# aMUSEd-like (diffusers amused-256 vqvae layout): 256px → 16x16 tokens, 8192 codes of dim 64, no mid attention.
register_config("vq-f16-256", ImageTokenizer.model_type, dict(
    image_size=256, block_out_channels=(128, 256, 256, 512, 768), layers_per_block=2, latent_channels=64,
    mid_block_attention=False, codebook_size=8192, codebook_dim=64, kmeans_init=False))

__all__ = ["ImageTokenizer", "ImageTokenizerConfig", "TokenizerOutput", "code_dim"]
