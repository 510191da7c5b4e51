"""Text-to-image pipeline, prompt conditioning, mask-free editing and the muse training task (tiny models)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mmgen import create_model
from mmgen.cli.main import main
from mmgen.conditioning import TextEncoder, TextEncoding
from mmgen.data import ShardWriter
from mmgen.errors import InvalidArgumentError
from mmgen.pipelines.editing import edit, inpaint, vary
from mmgen.pipelines.text_to_image import TextToImagePipeline

TOKENIZER = dict(image_size=16, in_channels=3, out_channels=3, block_out_channels=[8, 16, 16], layers_per_block=1,
                 latent_channels=8, norm_num_groups=8, mid_block_attention=False, codebook_size=32, codebook_dim=4,
                 kmeans_init=False)


class CharTextEncoder(TextEncoder):
    """A tiny real text encoder for tests: characters → embeddings → one linear layer; counts its calls."""

    hidden_size = pooled_size = 16
    max_length = 12
    spec = "test-chars"

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(128, 16)
        self.mix = nn.Linear(16, 16)
        self.calls: list[list[str]] = []

    def _encode(self, prompts: list[str]) -> TextEncoding:
        self.calls.append(prompts)
        length = max(1, min(self.max_length, max(len(p) for p in prompts)))
        ids = torch.zeros(len(prompts), length, dtype=torch.long)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for row, prompt in enumerate(prompts):
            codes = [min(ord(c), 127) for c in prompt[:length]] or [0]
            ids[row, :len(codes)] = torch.tensor(codes)
            mask[row, :len(codes)] = True
        states = self.mix(self.embed(ids))
        pooled = (states * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
        return TextEncoding(states, mask, pooled)


@pytest.fixture(scope="module")
def pipe() -> TextToImagePipeline:
    torch.manual_seed(0)
    tokenizer = create_model("vq-mnist", **TOKENIZER).eval()
    transformer = create_model("muse-tiny", codebook_size=32, grid=[4, 4]).eval()
    with torch.no_grad():  # adaLN-Zero starts as identity: give every weight a value so the prompt matters
        for parameter in transformer.parameters():
            parameter.normal_(0, 0.2)
    return TextToImagePipeline(transformer, tokenizer, CharTextEncoder())


def test_generation_is_seeded_and_follows_the_prompt_batch(pipe):
    def run(prompt, seed=0, **kw):
        return pipe(prompt, generator=torch.Generator().manual_seed(seed), num_steps=4, guidance_scale=3.0, **kw)

    first = run(["a red circle", "a blue square"])
    assert first.tokens.shape == (2, 4, 4) and first.pixels.shape == (2, 3, 16, 16) and len(first.images) == 2
    assert torch.equal(first.tokens, run(["a red circle", "a blue square"]).tokens)
    assert run("a red circle", num_images=3).tokens.shape == (3, 4, 4)
    assert not torch.equal(run("a red circle").tokens, run("a red circle", negative_prompt="a red circle").tokens)
    assert run("").tokens.shape == (1, 4, 4)  # the empty prompt is unconditional, allowed
    assert run(None, num_images=2).tokens.shape == (2, 4, 4)


def test_prompt_is_encoded_once_and_context_projected_once(pipe, monkeypatch):
    pipe.text_encoder.calls.clear()
    projections = []
    original = pipe.transformer.project_context
    monkeypatch.setattr(pipe.transformer, "project_context", lambda ctx: projections.append(ctx) or original(ctx))
    pipe(["x", "x", "y"], num_steps=5, guidance_scale=2.0)
    assert pipe.text_encoder.calls == [["x", "y", ""]]  # distinct prompts, one call, never per step
    assert len(projections) == 1 and projections[0].shape[0] == 6  # cond + uncond stacked, once


def test_cached_context_equals_recomputed(pipe):
    text = pipe.encode_prompts(["a green triangle", "b"])
    tokens = torch.randint(0, 33, (2, 4, 4))
    model = pipe.transformer
    direct = model(tokens, context=text.states, context_mask=text.mask, pooled=text.pooled)
    cached = model(tokens, context_kv=model.project_context(text.states), context_mask=text.mask, pooled=text.pooled)
    assert torch.allclose(direct, cached, atol=1e-6)


def test_condition_errors(pipe):
    with pytest.raises(InvalidArgumentError, match="text-conditioned"):
        pipe.generate(3)
    with pytest.raises(InvalidArgumentError, match="1 or 2 prompts"):
        pipe(["a", "b", "c"], num_images=2)
    with pytest.raises(InvalidArgumentError, match="pooled"):
        pipe.transformer(torch.zeros(1, 4, 4, dtype=torch.long), context=torch.zeros(1, 2, 16))


def test_editing_with_prompts_keeps_what_it_should(pipe):
    image = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :8] = 1
    original = pipe.image_tokenizer.encode(image)
    out = inpaint(pipe, image, mask, "a red circle", num_steps=3, guidance_scale=2.0)
    keep = ~out.extras["token_mask"]
    assert torch.equal(out.tokens[keep], original[keep])
    varied = vary(pipe, image, 0.5, ["a", "b"], num_steps=3)
    assert varied.tokens.shape == original.shape
    edited = edit(pipe, image, "a blue square", strength=0.25, rounds=2, num_steps=3, guidance_scale=2.0,
                  generator=torch.Generator().manual_seed(0))
    changed_mask = edited.extras["token_mask"]
    assert int(changed_mask[0].sum()) <= 8  # at most 2 rounds x 4 of 16 tokens re-masked
    assert torch.equal(edited.tokens[~changed_mask], original[~changed_mask])


def write_captioned_shards(out: Path, count: int = 48) -> Path:
    """Tiny 16x16 RGB images whose caption names their color."""
    colors = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}
    import numpy as np

    for split, n in (("train", count), ("holdout", 8)):
        with ShardWriter(out, split=split, samples_per_shard=32) as writer:
            for index in range(n):
                name = list(colors)[index % 3]
                image = np.zeros((16, 16, 3), dtype=np.uint8)
                image[4:12, 4:12] = colors[name]
                writer.write_image_sample(None, image, text=f"a {name} square")
    return out


@pytest.mark.slow
def test_muse_training_cli_writes_a_text_pipeline(tmp_path, capsys):
    data = write_captioned_shards(tmp_path / "data")
    tokenizer = create_model("vq-mnist", **TOKENIZER)
    tokenizer.save_pretrained(tmp_path / "tok")
    run = tmp_path / "run"
    assert main(["train", "muse", "--data", str(data), "--tokenizer", str(tmp_path / "tok"), "--out", str(run),
                 "--model", "muse-tiny", "steps=4", "batch_size=8", "sample_every=4", "log_every=2",
                 "ckpt_every=4"]) == 0
    assert (run / "pipeline" / "pipeline.json").is_file()
    assert list((run / "samples").glob("*.png")) or list(run.rglob("step_*.png"))
    out = tmp_path / "gen.png"
    assert main(["generate", str(run / "pipeline"), "--prompt", "a red square", "--num", "2", "--steps", "2",
                 "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["edit", str(run / "pipeline"), "--image", str(out), "--prompt", "a blue square", "--steps", "2",
                 "--out", str(tmp_path / "edit.png")]) == 0
    capsys.readouterr()
    assert main(["generate", str(run / "pipeline"), "--class", "3", "--out", str(tmp_path / "x.png")]) == 2
    assert "text-conditioned" in capsys.readouterr().err


def test_bf16_precision_policy_runs_and_stays_close(pipe):
    import copy

    fast = TextToImagePipeline(copy.deepcopy(pipe.transformer), copy.deepcopy(pipe.image_tokenizer),
                               pipe.text_encoder, precision="bf16")
    assert next(fast.transformer.parameters()).dtype == torch.bfloat16 and fast.autocast == "bf16"
    assert fast.image_tokenizer.decoder.conv_in.weight.dtype == torch.bfloat16
    tokens = torch.randint(0, 32, (2, 4, 4))
    reference = pipe.decode(tokens)
    assert fast.decode(tokens).dtype == torch.float32
    assert (fast.decode(tokens) - reference).abs().max() < 0.1
    out = fast("a red circle", num_steps=2, guidance_scale=2.0)
    assert out.tokens.shape == (1, 4, 4)
    with pytest.raises(InvalidArgumentError, match="precision"):
        fast.set_precision("int8")
