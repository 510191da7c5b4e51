"""aMUSEd folders in mmgen: parity with diffusers' deprecated aMUSEd pipeline on tiny random models.

Two tiny transformer configs (with / without the U-ViT's down- and up-sampling, with / without biases) are saved
with ``AmusedPipeline.save_pretrained``; mmgen must reproduce the transformer's logits, the VQ decoder's images and
the whole sampling loop (made deterministic on both sides: greedy draws, no Gumbel noise on confidences).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_hf_clip import tiny_clip_text_model, tiny_clip_tokenizer

from mmgen.errors import CheckpointError
from mmgen.interop.amused import convert_amused, load_amused_pipeline, uvit_from_diffusers
from mmgen.pipelines import load_pipeline

CONFIGS = {
    "plain": dict(uvit=dict(hidden_size=32, use_bias=False, num_res_blocks=1, downsample=False, upsample=False,
                            block_out_channels=24, block_num_heads=2, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=40, sample_size=4),
                  vq_blocks=[8, 8]),
    "resampled": dict(uvit=dict(hidden_size=48, use_bias=True, num_res_blocks=2, downsample=True, upsample=True,
                                block_out_channels=32, block_num_heads=4, num_hidden_layers=3, num_attention_heads=4,
                                intermediate_size=64, sample_size=8, layer_norm_eps=1e-5),
                      vq_blocks=[8, 8, 8]),
}
CODEBOOK = 32
PROMPT = "a red circle"


def _randomize(module: torch.nn.Module, seed: int) -> None:
    """Non-trivial values everywhere (norm weights, GRN gammas, biases start at 0/1 in diffusers)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * (0.3 if param.ndim > 1 else 0.5))


def build_amused_folder(out: Path, name: str) -> Path:
    from diffusers import AmusedScheduler, UVit2DModel, VQModel
    from diffusers.pipelines.deprecated.amused import AmusedPipeline

    spec = CONFIGS[name]
    tokenizer = tiny_clip_tokenizer()
    text_encoder = tiny_clip_text_model(tokenizer)
    transformer = UVit2DModel(**spec["uvit"], cond_embed_dim=12, micro_cond_encode_dim=4, micro_cond_embed_dim=20,
                              encoder_hidden_size=16, vocab_size=CODEBOOK + 1, codebook_size=CODEBOOK, in_channels=16)
    _randomize(transformer, 1)
    blocks = spec["vq_blocks"]
    vqvae = VQModel(block_out_channels=blocks, down_block_types=["DownEncoderBlock2D"] * len(blocks),
                    up_block_types=["UpDecoderBlock2D"] * len(blocks), latent_channels=4, layers_per_block=1,
                    norm_num_groups=4, num_vq_embeddings=CODEBOOK, vq_embed_dim=4, mid_block_add_attention=False,
                    lookup_from_codebook=True, sample_size=spec["uvit"]["sample_size"] * 2 ** (len(blocks) - 1))
    scheduler = AmusedScheduler(mask_token_id=CODEBOOK)
    AmusedPipeline(vqvae=vqvae, tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformer,
                   scheduler=scheduler).save_pretrained(out)
    return out


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def amused_folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_amused_folder(tmp_path_factory.mktemp(request.param), request.param)


@pytest.fixture(scope="module")
def diffusers_pipe(amused_folder: Path):
    from diffusers.pipelines.deprecated.amused import AmusedPipeline

    pipe = AmusedPipeline.from_pretrained(str(amused_folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def mmgen_pipe(amused_folder: Path):
    return load_pipeline(amused_folder)


def test_transformer_logits_match_diffusers(diffusers_pipe, mmgen_pipe) -> None:
    reference = diffusers_pipe.transformer.eval()
    model = mmgen_pipe.transformer
    grid = reference.config.sample_size
    assert model.mask_id == CODEBOOK and tuple(model.config.grid) == (grid, grid)
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, CODEBOOK + 1, (3, grid, grid), generator=generator)
    context = torch.randn(3, 12, 16, generator=generator)
    pooled = torch.randn(3, 12, generator=generator)
    micro = torch.tensor([[32.0, 32.0, 0.0, 0.0, 6.0]] * 3)
    with torch.no_grad():
        expected = reference(tokens, encoder_hidden_states=context, pooled_text_emb=pooled, micro_conds=micro)
        logits = model(tokens, context=context, pooled=pooled, micro_conds=micro)
        cached = model(tokens, context_kv=model.project_context(context), pooled=pooled, micro_conds=micro,
                       context_mask=torch.ones(3, 12, dtype=torch.bool))
    expected = expected.permute(0, 2, 3, 1).reshape(3, grid * grid, CODEBOOK)
    assert expected.abs().max() > 0.5  # a model whose logits are not all ~0
    diff, cached_diff = (logits - expected).abs().max(), (cached - expected).abs().max()
    print(f"max abs logit diff: {diff:.3g} (cached K/V {cached_diff:.3g})")
    assert (logits - expected).abs().max() <= 1e-4
    assert (cached - expected).abs().max() <= 1e-4


def test_decoded_images_match_diffusers(diffusers_pipe, mmgen_pipe) -> None:
    vq = diffusers_pipe.vqvae
    grid = diffusers_pipe.transformer.config.sample_size
    tokens = torch.randint(0, CODEBOOK, (2, grid, grid), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = vq.decode(tokens, force_not_quantize=True, shape=(2, grid, grid, 4)).sample.clip(0, 1)
    pixels = mmgen_pipe.decode(tokens)  # mmgen's [-1, 1] convention
    assert pixels.shape == expected.shape
    torch.testing.assert_close((pixels + 1) / 2, expected, atol=1e-5, rtol=0)


def test_encoded_tokens_match_diffusers_including_the_border(diffusers_pipe, mmgen_pipe) -> None:
    vq = diffusers_pipe.vqvae
    size = diffusers_pipe.transformer.config.sample_size * mmgen_pipe.image_tokenizer.downsample_factor
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(2))  # aMUSEd's [0, 1] pixels
    with torch.no_grad():
        latents = vq.quant_conv(vq.encoder(images))
        _, _, (_, _, expected) = vq.quantize(latents)
    tokens = mmgen_pipe.image_tokenizer.encode(images * 2 - 1)
    assert torch.equal(tokens.flatten(), expected.flatten())


def _greedy_diffusers(pipe, monkeypatch: pytest.MonkeyPatch, **kwargs):
    """diffusers' loop with its two random draws made deterministic: argmax instead of multinomial, and
    ``temperature=(0, 0)`` (no Gumbel noise on confidences)."""
    with monkeypatch.context() as patch:
        patch.setattr(torch, "multinomial", lambda probs, n, generator=None: probs.argmax(-1, keepdim=True))
        return pipe(PROMPT, num_inference_steps=5, temperature=(0, 0), generator=torch.Generator().manual_seed(0),
                    **kwargs).images


def test_whole_pipeline_matches_diffusers_when_deterministic(diffusers_pipe, mmgen_pipe, monkeypatch) -> None:
    expected_tokens = _greedy_diffusers(diffusers_pipe, monkeypatch, num_images_per_prompt=2, output_type="latent",
                                        negative_prompt="blue square")
    expected_images = _greedy_diffusers(diffusers_pipe, monkeypatch, output_type="pt")
    options = dict(num_steps=5, temperature=0.0, choice_temperature=(0.0, 0.0))
    out = mmgen_pipe(PROMPT, negative_prompt="blue square", num_images=2, **options)
    assert torch.equal(out.tokens, expected_tokens) and out.tokens.unique().numel() > 3
    single = mmgen_pipe(PROMPT, **options)
    torch.testing.assert_close((single.pixels + 1) / 2, expected_images, atol=1e-5, rtol=0)
    assert mmgen_pipe.defaults.guidance_scale == 10.0 and mmgen_pipe.defaults.num_steps == 12


def test_convert_round_trip_gives_identical_outputs(amused_folder: Path, mmgen_pipe, tmp_path: Path) -> None:
    out = convert_amused(amused_folder, tmp_path / "converted")
    index = json.loads((out / "pipeline.json").read_text())
    assert index["pipeline"] == "text-to-image" and index["text_encoder"] == "hf-clip:text_encoder"
    converted = load_pipeline(out)
    first = mmgen_pipe(PROMPT, num_images=2, num_steps=4, generator=torch.Generator().manual_seed(3))
    second = converted(PROMPT, num_images=2, num_steps=4, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.tokens, second.tokens)
    torch.testing.assert_close(first.pixels, second.pixels, atol=1e-6, rtol=0)


def test_inpaint_and_vary_run_on_the_amused_folder(mmgen_pipe) -> None:
    from mmgen.pipelines.editing import inpaint, vary

    size = mmgen_pipe.grid[0] * mmgen_pipe.image_tokenizer.downsample_factor
    image = torch.rand(1, 3, size, size) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., : size // 2, :] = 1
    tokens = mmgen_pipe.image_tokenizer.encode(image)
    edited = inpaint(mmgen_pipe, image, mask, PROMPT, num_steps=3, generator=torch.Generator().manual_seed(0))
    keep = ~edited.extras["token_mask"]
    assert keep.any() and torch.equal(edited.tokens[keep], tokens[keep])
    assert torch.equal(edited.pixels[..., size // 2:, :], image[..., size // 2:, :])
    varied = vary(mmgen_pipe, image, 0.5, PROMPT, num_steps=3, generator=torch.Generator().manual_seed(0))
    assert varied.tokens.shape == tokens.shape and (varied.tokens != tokens).float().mean() <= 0.5


def test_uvit_import_rejects_wrong_folders(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"config\.json"):
        uvit_from_diffusers(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    with pytest.raises(CheckpointError, match="not an aMUSEd folder"):
        load_amused_pipeline(tmp_path)
    with pytest.raises(CheckpointError, match=r"pipeline\.json"):
        load_pipeline(tmp_path)


def test_cli_convert_generate_and_inpaint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import numpy as np
    from PIL import Image

    from mmgen.cli.main import main

    source = build_amused_folder(tmp_path / "amused", "plain")
    assert main(["convert", "amused", str(source), "--out", str(tmp_path / "mm"), "--dtype", "fp16"]) == 0
    assert "mmgen pipeline" in capsys.readouterr().out
    for folder in (source, tmp_path / "mm"):  # an aMUSEd folder runs directly, a converted one too
        out = tmp_path / f"{folder.name}.png"
        assert main(["generate", str(folder), "--prompt", PROMPT, "--steps", "2", "--num", "2", "--out", str(out)]) == 0
        assert Image.open(out).size[0] > 8
    Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(tmp_path / "image.png")
    Image.fromarray(np.tril(np.full((8, 8), 255, np.uint8))).save(tmp_path / "mask.png")
    args = ["inpaint", str(source), "--prompt", PROMPT, "--image", str(tmp_path / "image.png"), "--mask",
            str(tmp_path / "mask.png"), "--steps", "2", "--out", str(tmp_path / "inpainted.png")]
    assert main(args) == 0 and Image.open(tmp_path / "inpainted.png").size == (8, 8)
    assert main(["convert", "amused", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not an aMUSEd folder" in capsys.readouterr().err


def test_uvit_model_registry_save_load_bf16_and_errors(tmp_path: Path) -> None:
    from mmgen import create_model
    from mmgen.errors import InvalidArgumentError
    from mmgen.registry import load_pretrained

    model = create_model("uvit-tiny").eval()
    assert model.mask_id == 39 and model.num_context_kv == 4 + 2
    tokens = torch.randint(0, 40, (2, 4, 4))
    inputs = dict(context=torch.randn(2, 5, 16), pooled=torch.randn(2, 16))
    with torch.no_grad():
        logits = model(tokens, **inputs)
        reloaded = load_pretrained(model.save_pretrained(tmp_path / "uvit"))
        torch.testing.assert_close(reloaded(tokens, **inputs), logits)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 weights, as the benchmark's best setting runs
            fast = model.to(torch.bfloat16)(tokens, **inputs).float()
    assert logits.shape == (2, 16, 32) and (fast - logits).abs().max() < 0.1 * logits.abs().max()
    with pytest.raises(InvalidArgumentError, match="pooled"):
        model(tokens, context=inputs["context"])
    with pytest.raises(InvalidArgumentError, match="class_labels"):
        model(tokens, torch.zeros(2, dtype=torch.long), **inputs)
    with pytest.raises(InvalidArgumentError, match="tokens"):
        model(tokens + 40, **inputs)
