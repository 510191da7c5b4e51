"""Parity with diffusers' VQModel: tiny random models saved by diffusers load into ImageTokenizer and encode/decode
identically (max abs diff <= 1e-5 in fp32); export back to a diffusers folder round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")
from diffusers import VQModel  # noqa: E402

from mmgen.errors import CheckpointError, InvalidArgumentError  # noqa: E402
from mmgen.tokenizers.image import ImageTokenizer  # noqa: E402

DOWN, UP = "DownEncoderBlock2D", "UpDecoderBlock2D"
CONFIGS = {
    "one-block": dict(block_out_channels=(32,), latent_channels=4, num_vq_embeddings=16, sample_size=8),
    "f4-attn-lowdim": dict(block_out_channels=(32, 32, 64), latent_channels=8, vq_embed_dim=4,
                           num_vq_embeddings=64, layers_per_block=2, in_channels=1, out_channels=1),
    "spatial-norm": dict(block_out_channels=(32, 64), latent_channels=4, num_vq_embeddings=32,
                         norm_type="spatial"),
    "amused-like": dict(block_out_channels=(32, 32, 64), latent_channels=16, num_vq_embeddings=128,
                        layers_per_block=2, mid_block_add_attention=False, lookup_from_codebook=True,
                        force_upcast=True, norm_num_groups=16),
}


def make_vqmodel(**kwargs) -> VQModel:
    """A random diffusers VQModel with a spread-out codebook (diffusers' own init is ~1/K, all codes alike)."""
    torch.manual_seed(0)
    blocks = len(kwargs["block_out_channels"])
    model = VQModel(down_block_types=(DOWN,) * blocks, up_block_types=(UP,) * blocks, **kwargs).eval()
    with torch.no_grad():
        model.quantize.embedding.weight.normal_()
    return model


def diffusers_forward(model: VQModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' reference: (ids [B, h, w], reconstruction [B, C, H, W])."""
    with torch.no_grad():
        latents = model.encode(images).latents
        ids = model.quantize(latents)[2][2].reshape(latents.shape[0], *latents.shape[2:])
        return ids, model.decode(latents).sample


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_diffusers_folder_matches(name: str, tmp_path: Path) -> None:
    kwargs = CONFIGS[name]
    reference = make_vqmodel(**kwargs)
    folder = tmp_path / name
    if name == "amused-like":  # an aMUSEd pipeline folder keeps the VQ model under vqvae/
        reference.save_pretrained(folder / "vqvae")
    else:
        reference.save_pretrained(folder)
    tokenizer = ImageTokenizer.from_diffusers(folder)
    size = 16
    images = torch.rand(2, kwargs.get("in_channels", 3), size, size) * 2 - 1
    ref_ids, ref_images = diffusers_forward(reference, images)
    ids = tokenizer.encode(images)
    assert torch.equal(ids, ref_ids)
    out = tokenizer.decode(ids)
    assert out.shape == ref_images.shape
    assert (out - ref_images).abs().max().item() <= 1e-5


def test_token_decode_matches_diffusers_lookup() -> None:
    reference = make_vqmodel(**CONFIGS["amused-like"])
    tokenizer = ImageTokenizer.from_diffusers(reference)
    ids = torch.randint(0, 128, (2, 4, 4))
    with torch.no_grad():
        ref = reference.decode(ids.reshape(-1), force_not_quantize=True, shape=(2, 4, 4, 16)).sample
    assert (tokenizer.decode(ids) - ref).abs().max().item() <= 1e-5


def test_export_round_trip(tmp_path: Path) -> None:
    tokenizer = ImageTokenizer.from_diffusers(make_vqmodel(**CONFIGS["f4-attn-lowdim"]))
    tokenizer.to_diffusers(tmp_path / "exported")
    exported = VQModel.from_pretrained(str(tmp_path / "exported")).eval()
    images = torch.rand(3, 1, 12, 12) * 2 - 1
    ref_ids, ref_images = diffusers_forward(exported, images)
    assert torch.equal(tokenizer.encode(images), ref_ids)
    assert (tokenizer.decode(ref_ids) - ref_images).abs().max().item() <= 1e-5
    again = ImageTokenizer.from_diffusers(tmp_path / "exported")
    for key, value in tokenizer.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_export_refuses_fsq() -> None:
    from mmgen.registry import create_model

    with pytest.raises(InvalidArgumentError, match="Euclidean VQ"):
        create_model("fsq-mnist").to_diffusers()


def test_bad_diffusers_folders(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        ImageTokenizer.from_diffusers(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        ImageTokenizer.from_diffusers(tmp_path / "empty")
    attn = VQModel(down_block_types=("AttnDownEncoderBlock2D",), block_out_channels=(32,), latent_channels=4)
    with pytest.raises(CheckpointError, match="only stacks"):
        ImageTokenizer.from_diffusers(attn)
