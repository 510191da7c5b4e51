"""Masked-token transformer, the MaskGIT pipeline and editing (tiny random models)."""

from __future__ import annotations

import json

import pytest
import torch

from mmgen import create_model
from mmgen.errors import CheckpointError, InvalidArgumentError
from mmgen.models.masked_transformer import MaskedTransformer
from mmgen.nn.attention import attention_backend
from mmgen.pipelines import load_pipeline
from mmgen.pipelines.editing import inpaint, outpaint, token_mask_from_pixels, vary
from mmgen.pipelines.maskgit import MaskGITPipeline

TOKENIZER = dict(image_size=16, in_channels=1, out_channels=1, block_out_channels=[8, 16, 16], layers_per_block=1,
                 latent_channels=8, norm_num_groups=8, mid_block_attention=False, codebook_size=32, codebook_dim=4,
                 kmeans_init=False)


@pytest.fixture(scope="module")
def pipe() -> MaskGITPipeline:
    torch.manual_seed(0)
    tokenizer = create_model("vq-mnist", **TOKENIZER).eval()
    transformer = create_model("maskgit-tiny", codebook_size=32, grid=[4, 4], num_classes=3).eval()
    return MaskGITPipeline(transformer, tokenizer)


@pytest.mark.parametrize("positions", ["learned", "sincos", "rope"])
@pytest.mark.parametrize("conditioning", ["adaln", "prefix"])
def test_transformer_shapes_grads_and_round_trip(tmp_path, positions, conditioning):
    model = create_model("maskgit-tiny", positions=positions, class_conditioning=conditioning, context_dim=8)
    tokens = torch.randint(0, 65, (2, 4, 4))
    labels = torch.tensor([0, 4])
    context = torch.randn(2, 3, 8)
    logits = model(tokens, labels, context=context)
    assert logits.shape == (2, 16, 64) and torch.isfinite(logits).all()
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval().save_pretrained(tmp_path)
    again = MaskedTransformer.from_pretrained(tmp_path)
    assert torch.equal(again(tokens, labels, context=context), model(tokens, labels, context=context))
    # cached cross-attention keys/values == recomputing them
    assert torch.allclose(model(tokens, labels, context_kv=model.project_context(context)),
                          model(tokens, labels, context=context), atol=1e-6)


def test_any_grid_rank_and_smaller_grids():
    model = create_model("maskgit-tiny", grid=[2, 3, 4], num_classes=0)  # video-like [t, h, w]
    assert model(torch.randint(0, 64, (1, 2, 3, 4))).shape == (1, 24, 64)
    assert model(torch.randint(0, 64, (1, 1, 3, 4))).shape == (1, 12, 64)  # fewer frames
    with pytest.raises(InvalidArgumentError, match="token grid"):
        model(torch.randint(0, 64, (1, 3, 3, 4)))


def test_attention_backends_give_matching_model_outputs():
    model = create_model("maskgit-tiny", context_dim=8).eval()
    tokens, labels, context = torch.randint(0, 65, (2, 4, 4)), torch.tensor([1, 2]), torch.randn(2, 5, 8)
    outputs = []
    for backend in ("math", "sdpa", "auto"):
        with attention_backend(backend):
            outputs.append(model(tokens, labels, context=context))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5) and torch.allclose(outputs[0], outputs[2], atol=1e-5)


def test_transformer_rejects_bad_inputs():
    model = create_model("maskgit-tiny")
    with pytest.raises(InvalidArgumentError, match="tokens"):
        model(torch.full((1, 4, 4), 99), torch.tensor([0]))
    with pytest.raises(InvalidArgumentError, match="class_labels"):
        model(torch.zeros(1, 4, 4, dtype=torch.long), torch.tensor([7]))


def test_generation_is_seeded_and_fills_everything(pipe):
    run = lambda seed: pipe(class_labels=[0, 1, 2], num_steps=4, guidance_scale=2.0,
                            generator=torch.Generator().manual_seed(seed))
    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a.tokens, b.tokens) and not torch.equal(a.tokens, c.tokens)
    assert a.tokens.shape == (3, 4, 4) and int(a.tokens.max()) < 32
    assert a.pixels.shape == (3, 1, 16, 16) and len(a.images) == 3 and a.images[0].size == (16, 16)
    rnd = pipe(class_labels=1, num_images=2, sampler="random-order", num_steps=3)
    assert rnd.tokens.shape == (2, 4, 4)


def test_pipeline_checks_user_values(pipe):
    with pytest.raises(InvalidArgumentError, match="class"):
        pipe(class_labels=[5])
    with pytest.raises(InvalidArgumentError, match="num_steps"):
        pipe(class_labels=[0], num_steps=0)
    with pytest.raises(InvalidArgumentError, match="guidance_scale"):
        pipe(class_labels=[0], guidance_scale=-1.0)


def test_pipeline_folder_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    again = load_pipeline(tmp_path / "pipe")
    g = lambda: torch.Generator().manual_seed(3)
    assert torch.equal(pipe(class_labels=[2], generator=g()).tokens, again(class_labels=[2], generator=g()).tokens)


def test_pipeline_can_reference_a_shared_image_tokenizer(pipe, tmp_path):
    """Shipped pipelines point at one tokenizer folder (relative path in pipeline.json) instead of copying it."""
    shared = pipe.image_tokenizer.save_pretrained(tmp_path / "vq")
    pipe.save_pretrained(tmp_path / "pipe", image_tokenizer_path=shared)
    assert not (tmp_path / "pipe" / "image_tokenizer").exists()
    assert json.loads((tmp_path / "pipe" / "pipeline.json").read_text())["image_tokenizer"] == "../vq"
    again = load_pipeline(tmp_path / "pipe")
    g = lambda: torch.Generator().manual_seed(3)
    assert torch.equal(pipe(class_labels=[1], generator=g()).tokens, again(class_labels=[1], generator=g()).tokens)
    (tmp_path / "vq" / "config.json").unlink()
    with pytest.raises(CheckpointError, match="image tokenizer is missing"):
        load_pipeline(tmp_path / "pipe")


def test_inpainting_never_changes_tokens_outside_the_mask(pipe):
    torch.manual_seed(1)
    image = torch.rand(2, 1, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 4:9, 0:7] = 1
    original = pipe.image_tokenizer.encode(image)
    result = inpaint(pipe, image, mask, [0, 1], num_steps=4, generator=torch.Generator().manual_seed(0))
    token_mask = result.extras["token_mask"]
    assert token_mask.sum() == 2 * 2 * 2  # rows 4..8 → tokens 1..2, cols 0..6 → tokens 0..1
    assert torch.equal(result.tokens[~token_mask], original[~token_mask])
    outside = ~token_mask[:, None].repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.equal(result.pixels[outside], image.clamp(-1, 1)[outside])
    with pytest.raises(InvalidArgumentError, match="mask"):
        inpaint(pipe, image, torch.zeros(1, 1, 8, 8))


def test_token_mask_dilation():
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 5, 5] = 1
    assert token_mask_from_pixels(mask, 4).sum() == 1
    assert token_mask_from_pixels(mask, 4, dilate=1).sum() == 9


def test_outpainting_extends_and_keeps_known_tokens(pipe):
    image = torch.rand(1, 1, 16, 16) * 2 - 1
    original = pipe.image_tokenizer.encode(image)
    for direction, shape in (("right", (1, 4, 7)), ("left", (1, 4, 7)), ("down", (1, 7, 4))):
        out = outpaint(pipe, image, direction, 3, [1], num_steps=3)
        assert out.tokens.shape == shape and out.pixels.shape[-2:] == (shape[1] * 4, shape[2] * 4)
        known = {"right": out.tokens[:, :, :4], "left": out.tokens[:, :, 3:], "down": out.tokens[:, :4]}[direction]
        assert torch.equal(known, original)
        assert int(out.tokens.max()) < 32


def test_vary_changes_only_a_strength_fraction(pipe):
    image = torch.rand(1, 1, 16, 16) * 2 - 1
    original = pipe.image_tokenizer.encode(image)
    out = vary(pipe, image, 0.25, [0], num_steps=2, generator=torch.Generator().manual_seed(0))
    assert out.extras["token_mask"].sum() == 4
    assert torch.equal(out.tokens[~out.extras["token_mask"]], original[~out.extras["token_mask"]])
    with pytest.raises(InvalidArgumentError, match="strength"):
        vary(pipe, image, 0.0)
