"""ImageTokenizer and quantizers: shapes, invariants, save/load, precision policy, bad inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mmgen.errors import InvalidArgumentError
from mmgen.registry import create_model, list_models, load_pretrained
from mmgen.tokenizers.image import ImageTokenizer
from mmgen.tokenizers.quantizers import build_quantizer, code_statistics

TINY = dict(image_size=16, block_out_channels=(32, 32), layers_per_block=1, latent_channels=8, codebook_size=64,
            codebook_dim=4)
KINDS = {"vq": {}, "vq-cosine": {"cosine_codes": True}, "fsq": {"quantizer": "fsq", "fsq_levels": (4, 4, 4)},
         "lfq": {"quantizer": "lfq"}}


def tiny(kind: str = "vq", **overrides) -> ImageTokenizer:
    torch.manual_seed(0)
    return create_model("vq-mnist", **{**TINY, **KINDS[kind], **overrides})


def images(batch: int = 3, channels: int = 1, size: int = 16) -> torch.Tensor:
    return torch.rand(batch, channels, size, size, generator=torch.Generator().manual_seed(1)) * 2 - 1


def test_registered_configs() -> None:
    assert {"vq-mnist", "vq-f16-256"} <= set(list_models("*", model_type="image_tokenizer"))
    mnist = create_model("vq-mnist")
    assert mnist.token_grid() == (7, 7) and mnist.downsample_factor == 4
    f16 = ImageTokenizer(create_model.__globals__["get_config"]("vq-f16-256"))
    assert f16.token_grid() == (16, 16) and f16.downsample_factor == 16 and f16.codebook_size == 8192


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_encode_decode_shapes_and_grads(kind: str) -> None:
    model = tiny(kind)
    x = images()
    out = model(x)  # training pass (k-means init, EMA updates)
    assert out.reconstruction.shape == x.shape and out.indices.shape == (3, 8, 8)
    (out.reconstruction.square().mean() + out.aux_loss).backward()
    assert model.encoder.conv_in.weight.grad is not None  # gradients reach the encoder through the quantizer
    assert torch.isfinite(model.encoder.conv_in.weight.grad).all()
    model.eval()
    tokens = model.encode(x)
    assert tokens.dtype == torch.int64 and tokens.shape == (3, 8, 8)
    assert int(tokens.min()) >= 0 and int(tokens.max()) < model.codebook_size
    assert model.decode(tokens).shape == x.shape
    assert torch.equal(model.encode(x), tokens)  # deterministic, no state change in eval


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_inference_ids_match_training_ids(kind: str) -> None:
    model = tiny(kind)
    model(images())  # initialise codebooks
    quantizer = model.quantizer.eval()
    z = torch.randn(2, quantizer.dim, 4, 4)
    ids = quantizer.quantize(z)
    assert torch.equal(quantizer(z).indices, ids)
    # decoding the ids gives exactly the quantized latents of the forward pass
    torch.testing.assert_close(quantizer.embed(ids), quantizer(z).quantized, atol=1e-5, rtol=0)


def test_save_load_identical(tmp_path: Path) -> None:
    model = tiny()
    model(images())
    model.eval()
    model.save_pretrained(tmp_path / "tok")
    again = load_pretrained(tmp_path / "tok")
    assert isinstance(again, ImageTokenizer)
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    tokens = model.encode(images())
    assert torch.equal(again.encode(images()), tokens)
    assert torch.equal(again.decode(tokens), model.decode(tokens))


def test_half_precision_save_and_bf16_inference(tmp_path: Path) -> None:
    model = tiny()
    model(images())
    model.eval().save_pretrained(tmp_path / "tok", dtype=torch.bfloat16)
    bf16 = ImageTokenizer.from_pretrained(tmp_path / "tok", dtype=torch.bfloat16)
    tokens = bf16.encode(images())
    assert tokens.dtype == torch.int64
    assert bf16.decode(tokens).dtype == torch.bfloat16


def test_quantization_runs_in_fp32_under_autocast() -> None:
    quantizer = build_quantizer("vq", dim=4, codebook_size=16, kmeans_init=False)
    seen = []
    quantizer.register_forward_hook(lambda m, i, o: seen.append(o.quantized.dtype))
    inner = []
    original = quantizer._quantize_train

    def spy(z):
        inner.append((z.dtype, torch.is_autocast_enabled("cpu")))
        return original(z)

    quantizer._quantize_train = spy
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quantizer(torch.randn(2, 4, 3, 3).bfloat16())
    assert inner == [(torch.float32, False)] and seen == [torch.bfloat16]


def test_code_statistics() -> None:
    perplexity, usage = code_statistics(torch.tensor([0, 1, 2, 3]), 8)
    assert abs(float(perplexity) - 4.0) < 1e-5 and float(usage) == 0.5


def test_bad_inputs() -> None:
    model = tiny().eval()
    with pytest.raises(InvalidArgumentError, match="1 channel"):
        model.encode(images(channels=3))
    with pytest.raises(InvalidArgumentError, match=r"\[B, C, H, W\]"):
        model.encode(torch.rand(1, 16, 16))
    with pytest.raises(InvalidArgumentError, match="floating-point"):
        model.encode(torch.zeros(1, 1, 16, 16, dtype=torch.uint8))
    with pytest.raises(InvalidArgumentError, match=r"ids in \[0, 63\]"):
        model.decode(torch.full((1, 4, 4), 64))
    with pytest.raises(InvalidArgumentError, match=r"ids in \[0, 63\]"):
        model.decode(torch.full((1, 4, 4), -1))
    with pytest.raises(InvalidArgumentError, match="integer"):
        model.decode(torch.zeros(1, 4, 4))
    with pytest.raises(InvalidArgumentError, match="prod"):
        create_model("vq-mnist", quantizer="fsq", fsq_levels=(4, 4), codebook_size=64)
    with pytest.raises(InvalidArgumentError, match="power of two"):
        create_model("vq-mnist", **{**TINY, "quantizer": "lfq", "codebook_size": 100})


def test_shipped_mnist_tokenizer() -> None:
    folder = Path(__file__).resolve().parents[1] / "assets" / "vq-mnist"
    if not (folder / "config.json").is_file():
        pytest.skip("assets/vq-mnist not present")
    model = load_pretrained(folder)
    assert isinstance(model, ImageTokenizer) and model.codebook_size == 1024
    x = images(2, 1, 28)
    tokens = model.encode(x)
    assert tokens.shape == (2, 7, 7) and model.decode(tokens).shape == (2, 1, 28, 28)
