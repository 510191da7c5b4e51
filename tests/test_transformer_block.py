"""The Attention module and TransformerBlock: backend parity via MMGEN_ATTN_BACKEND, cached context K/V, adaLN-Zero."""

from __future__ import annotations

from functools import partial

import pytest
import torch
from torch import nn

from mmgen.nn import ENV_VAR, Attention, TransformerBlock, apply_rotary, attention_backend

BACKENDS = ["math", "sdpa", "auto"]
TOL = {"atol": 1e-5, "rtol": 1e-5}
B, L, LC, DIM, CTX_DIM, HEADS = 2, 10, 6, 32, 24, 4


@pytest.fixture(autouse=True)
def _no_env_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def lengths_mask(lengths: list[int], total: int) -> torch.Tensor:
    """bool ``[B, total]``, True for the first ``lengths[b]`` positions (True = keep)."""
    return torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]


@pytest.fixture
def inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "x": torch.randn(B, L, DIM, generator=gen),
        "context": torch.randn(B, LC, CTX_DIM, generator=gen),
        "cond": torch.randn(B, 16, generator=gen),
        "key_padding_mask": lengths_mask([L, 7], L),
        "context_mask": lengths_mask([4, LC], LC),
    }


def perturb(module: nn.Module, seed: int = 1) -> nn.Module:
    """Give every parameter (zero-initialised adaLN included) random values so tests exercise all paths."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
    return module


def run_per_backend(monkeypatch: pytest.MonkeyPatch, fn) -> dict[str, torch.Tensor]:
    outputs = {}
    for name in BACKENDS:
        monkeypatch.setenv(ENV_VAR, name)
        outputs[name] = fn()
    return outputs


def assert_all_close(outputs: dict[str, torch.Tensor]) -> None:
    for name, out in outputs.items():
        assert not out.isnan().any(), name
        torch.testing.assert_close(out, outputs["math"], **TOL, msg=lambda m, n=name: f"{n} vs math: {m}")


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("cross", [False, True])
def test_attention_module_backends_match(monkeypatch, inputs, cross: bool, masked: bool) -> None:
    torch.manual_seed(0)
    module = Attention(DIM, HEADS, context_dim=CTX_DIM if cross else None, qk_norm=cross).eval()
    context = inputs["context"] if cross else None
    mask = (inputs["context_mask"] if cross else inputs["key_padding_mask"]) if masked else None
    outputs = run_per_backend(monkeypatch, lambda: module(inputs["x"], context, key_padding_mask=mask))
    assert outputs["math"].shape == (B, L, DIM)
    assert_all_close(outputs)


def make_stack(*, cross: bool, adaln: bool, norm: str = "layernorm", depth: int = 2) -> nn.ModuleList:
    torch.manual_seed(0)
    blocks = [
        TransformerBlock(
            DIM, HEADS, 2.0, context_dim=CTX_DIM if cross else None, adaln_dim=16 if adaln else None, norm=norm
        )
        for _ in range(depth)
    ]
    return perturb(nn.ModuleList(blocks)).eval()


def run_stack(stack: nn.ModuleList, x: torch.Tensor, **kwargs) -> torch.Tensor:
    for block in stack:
        x = block(x, **kwargs)
    return x


def block_kwargs(inputs, *, cross: bool, adaln: bool, masked: bool) -> dict[str, torch.Tensor | None]:
    return {
        "cond": inputs["cond"] if adaln else None,
        "context": inputs["context"] if cross else None,
        "context_mask": inputs["context_mask"] if cross and masked else None,
        "key_padding_mask": inputs["key_padding_mask"] if masked else None,
    }


@pytest.mark.parametrize(("cross", "adaln", "masked", "norm"), [
    (False, False, False, "layernorm"),
    (False, True, True, "rmsnorm"),
    (True, False, True, "layernorm"),
    (True, True, True, "rmsnorm"),
    (True, True, False, "layernorm"),
])  # fmt: skip
def test_block_stack_backends_match(monkeypatch, inputs, cross: bool, adaln: bool, masked: bool, norm: str) -> None:
    stack = make_stack(cross=cross, adaln=adaln, norm=norm)
    kwargs = block_kwargs(inputs, cross=cross, adaln=adaln, masked=masked)
    assert_all_close(run_per_backend(monkeypatch, lambda: run_stack(stack, inputs["x"], **kwargs)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_flow_through_each_backend(monkeypatch, inputs, backend: str) -> None:
    stack = make_stack(cross=True, adaln=True).train()
    monkeypatch.setenv(ENV_VAR, backend)
    x = inputs["x"].clone().requires_grad_(True)
    run_stack(stack, x, **block_kwargs(inputs, cross=True, adaln=True, masked=True)).square().mean().backward()
    for name, p in stack.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_cached_context_kv_matches_context(inputs) -> None:
    stack = make_stack(cross=True, adaln=False)
    kwargs = block_kwargs(inputs, cross=True, adaln=False, masked=True)
    expected = run_stack(stack, inputs["x"], **kwargs)
    x = inputs["x"]
    for block in stack:
        kv = block.project_context(inputs["context"])
        assert kv[0].shape == (B, HEADS, LC, DIM // HEADS)
        x = block(x, context_kv=kv, context_mask=kwargs["context_mask"], key_padding_mask=kwargs["key_padding_mask"])
    torch.testing.assert_close(x, expected, **TOL)


def test_adaln_zero_block_is_identity_at_init(inputs) -> None:
    torch.manual_seed(0)
    block = TransformerBlock(DIM, HEADS, context_dim=CTX_DIM, adaln_dim=16)
    x = inputs["x"]
    out = block(x, cond=inputs["cond"], context=inputs["context"], context_mask=inputs["context_mask"])
    torch.testing.assert_close(out, x, atol=0, rtol=0)
    per_token = block(x, cond=inputs["cond"][:, None].expand(B, L, 16), context=inputs["context"])
    torch.testing.assert_close(per_token, x, atol=0, rtol=0)
    perturb(block)
    assert not torch.allclose(block(x, cond=inputs["cond"], context=inputs["context"]), x)


def test_attention_module_weights_rope_and_qk_norm(inputs) -> None:
    torch.manual_seed(0)
    module = Attention(DIM, HEADS, qk_norm=True).eval()
    mask = inputs["key_padding_mask"]
    out, weights = module(inputs["x"], key_padding_mask=mask, return_weights=True)
    torch.testing.assert_close(out, module(inputs["x"], key_padding_mask=mask), **TOL)
    assert weights.shape == (B, HEADS, L, L) and (weights[1, ..., 7:] == 0).all()
    angles = torch.arange(L)[:, None] * torch.rand(DIM // HEADS // 2)[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    with_pair = module(inputs["x"], rope=(cos, sin))
    torch.testing.assert_close(module(inputs["x"], rope=lambda t: apply_rotary(t, cos, sin)), with_pair)
    assert not torch.allclose(with_pair, module(inputs["x"]))


def test_dropout_is_active_only_in_training(inputs) -> None:
    torch.manual_seed(0)
    block = TransformerBlock(DIM, HEADS, dropout=0.5)
    block.eval()
    torch.testing.assert_close(block(inputs["x"]), block(inputs["x"]))
    block.train()
    assert not torch.allclose(block(inputs["x"]), block(inputs["x"]))


def test_misuse_raises_clear_errors(inputs) -> None:
    x, context = inputs["x"], inputs["context"]
    with pytest.raises(ValueError, match="dim"):
        Attention(30, 4)
    with pytest.raises(ValueError, match="context"):
        Attention(DIM, HEADS)(x, context)
    with pytest.raises(ValueError, match="context"):
        Attention(DIM, HEADS, context_dim=CTX_DIM)(x)
    with pytest.raises(ValueError, match="rope"):
        Attention(DIM, HEADS, context_dim=CTX_DIM)(x, context, rope=lambda t: t)
    with pytest.raises(ValueError, match="cond"):
        TransformerBlock(DIM, HEADS, adaln_dim=16)(x)
    with pytest.raises(ValueError, match="cond"):
        TransformerBlock(DIM, HEADS)(x, cond=inputs["cond"])
    with pytest.raises(ValueError, match="context"):
        TransformerBlock(DIM, HEADS)(x, context=context)
    with pytest.raises(ValueError, match="norm"):
        TransformerBlock(DIM, HEADS, norm="batchnorm")


def test_context_manager_applies_to_modules(inputs) -> None:
    module = Attention(DIM, HEADS).eval()
    with attention_backend("math"):
        expected = module(inputs["x"])
    torch.testing.assert_close(module(inputs["x"]), expected, **TOL)


def test_parity_with_timm_block_and_attention(inputs) -> None:
    """Same parameter names as timm's ViT Block/Attention: timm weights load strictly and give the same output."""
    vit = pytest.importorskip("timm.models.vision_transformer")
    ours = perturb(TransformerBlock(DIM, HEADS, 2.0)).eval()
    theirs = vit.Block(DIM, HEADS, 2.0, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    torch.testing.assert_close(ours(inputs["x"]), theirs(inputs["x"]), **TOL)
    torch.testing.assert_close(ours.attn(inputs["x"]), theirs.attn(inputs["x"]), **TOL)
