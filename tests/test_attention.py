"""The functional attention core: backend parity, masks, weights, NaN safety, backend selection, xformers fallback."""

from __future__ import annotations

import logging
import sys
import threading

import pytest
import torch

import mmgen.nn.attention as attn_mod
from mmgen.nn import (
    ENV_VAR,
    apply_rotary,
    attention_backend,
    available_backends,
    get_attention_backend,
    resolve_backend,
)
from mmgen.nn.attention import attention

CPU_BACKENDS = ["math", "sdpa", "matmul", "auto"]
TOL = {"atol": 1e-5, "rtol": 1e-5}


@pytest.fixture(autouse=True)
def _clean_backend_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(attn_mod, "_WARNED", set())


def make_qkv(b=2, h=3, lq=7, lk=7, d=16, *, device="cpu", dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shapes = [(b, h, lq, d), (b, h, lk, d), (b, h, lk, d)]
    return [torch.randn(s, generator=gen).to(device=device, dtype=dtype) for s in shapes]


def padding_mask(b: int, lk: int, device="cpu") -> torch.Tensor:
    """Batch row i keeps the first ``lk - 2 * i`` keys (at least one)."""
    lengths = torch.tensor([max(1, lk - 2 * i) for i in range(b)], device=device)
    return torch.arange(lk, device=device)[None, :] < lengths[:, None]


def naive_attention(q, k, v, keep: torch.Tensor) -> torch.Tensor:
    """Independent reference: keep ``[B, Lk]`` bool, per-(b, h) loops, float64."""
    out = torch.zeros(q.shape, dtype=torch.float64)
    for bi in range(q.shape[0]):
        ks, vs = k[bi][:, keep[bi]].double(), v[bi][:, keep[bi]].double()
        scores = q[bi].double() @ ks.transpose(-2, -1) / q.shape[-1] ** 0.5
        out[bi] = scores.softmax(-1) @ vs
    return out


CASES = {
    "self": {"lq": 9, "lk": 9, "masked": False},
    "self_padded": {"lq": 9, "lk": 9, "masked": True},
    "cross_padded": {"lq": 5, "lk": 11, "masked": True},
}


@pytest.mark.parametrize("head_dim", [8, 32, 64])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_backends_agree_with_math(backend: str, case: str, head_dim: int) -> None:
    cfg = CASES[case]
    q, k, v = make_qkv(lq=cfg["lq"], lk=cfg["lk"], d=head_dim)
    mask = padding_mask(2, cfg["lk"]) if cfg["masked"] else None
    expected = attention(q, k, v, key_padding_mask=mask, backend="math")
    torch.testing.assert_close(attention(q, k, v, key_padding_mask=mask, backend=backend), expected, **TOL)
    keep = mask if mask is not None else torch.ones(2, cfg["lk"], dtype=torch.bool)
    torch.testing.assert_close(expected.double(), naive_attention(q, k, v, keep), **TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_attn_bias_bool_and_float_combine_with_padding(backend: str) -> None:
    q, k, v = make_qkv(lq=6, lk=6)
    pad = padding_mask(2, 6)
    causal = torch.ones(6, 6, dtype=torch.bool).tril()
    additive = torch.zeros(6, 6).masked_fill(~causal, float("-inf"))
    rel_bias = torch.randn(3, 6, 6)  # a learned per-head bias, additive
    for bias in (causal, additive, rel_bias):
        expected = attention(q, k, v, key_padding_mask=pad, attn_bias=bias, backend="math")
        got = attention(q, k, v, key_padding_mask=pad, attn_bias=bias, backend=backend)
        torch.testing.assert_close(got, expected, **TOL)
    # A bool causal mask and its additive form mean the same thing.
    torch.testing.assert_close(
        attention(q, k, v, attn_bias=causal, backend=backend), attention(q, k, v, attn_bias=additive, backend=backend)
    )


@pytest.mark.parametrize("backend", [*CPU_BACKENDS, "xformers"])
def test_return_weights_rows_sum_to_one_and_masked_keys_get_zero(backend: str) -> None:
    q, k, v = make_qkv(lq=4, lk=10)
    mask = padding_mask(2, 10)
    out, weights = attention(q, k, v, key_padding_mask=mask, return_weights=True, backend=backend)
    assert weights.shape == (2, 3, 4, 10)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 4), **TOL)
    assert (weights.masked_select(~mask[:, None, None, :]) == 0).all()
    torch.testing.assert_close(out, weights @ v, **TOL)
    torch.testing.assert_close(out, attention(q, k, v, key_padding_mask=mask, backend="math"), **TOL)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_fully_masked_rows_are_zero_not_nan(backend: str) -> None:
    q, k, v = make_qkv(lq=5, lk=5)
    q.requires_grad_(True)
    pad = torch.tensor([[True, True, False, True, False], [False] * 5])
    blocked_rows = torch.ones(5, 5, dtype=torch.bool)
    blocked_rows[2] = False  # query 2 of every batch row may attend to nothing
    for kwargs in ({"key_padding_mask": pad}, {"attn_bias": blocked_rows}, {"attn_bias": _additive(blocked_rows)}):
        out = attention(q, k, v, backend=backend, **kwargs)
        assert not out.isnan().any()
        dead = out[1] if "key_padding_mask" in kwargs else out[:, :, 2]
        assert (dead == 0).all()
        out.sum().backward()
        assert not q.grad.isnan().any()
        q.grad = None
    _, weights = attention(q, k, v, key_padding_mask=pad, return_weights=True)
    assert (weights[1] == 0).all() and not weights.isnan().any()


def _additive(keep: torch.Tensor) -> torch.Tensor:
    return torch.zeros(keep.shape).masked_fill(~keep, float("-inf"))


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_gradients_match_math(backend: str) -> None:
    def grads(name: str) -> list[torch.Tensor]:
        q, k, v = (t.requires_grad_(True) for t in make_qkv(lq=5, lk=8))
        out = attention(q, k, v, key_padding_mask=padding_mask(2, 8), backend=name)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        return [q.grad, k.grad, v.grad]

    for got, expected in zip(grads(backend), grads("math")):
        torch.testing.assert_close(got, expected, **TOL)


def test_dropout_only_changes_training_calls() -> None:
    q, k, v = make_qkv()
    torch.manual_seed(0)
    dropped = attention(q, k, v, dropout_p=0.5, backend="math")
    assert not torch.allclose(dropped, attention(q, k, v, backend="math"))
    with pytest.raises(ValueError, match="dropout_p"):
        attention(q, k, v, dropout_p=1.0)


def test_xformers_on_cpu_warns_once_and_returns_sdpa_result(caplog: pytest.LogCaptureFixture) -> None:
    q, k, v = make_qkv()
    mask = padding_mask(2, 7)
    with caplog.at_level(logging.WARNING, logger=attn_mod.__name__):
        out = attention(q, k, v, key_padding_mask=mask, backend="xformers")
        with attention_backend("xformers"):
            attention(q, k, v)
    warnings = [r for r in caplog.records if r.name == attn_mod.__name__]
    assert len(warnings) == 1 and "xformers" in warnings[0].getMessage() and "sdpa" in warnings[0].getMessage()
    torch.testing.assert_close(out, attention(q, k, v, key_padding_mask=mask, backend="sdpa"), atol=0, rtol=0)
    assert resolve_backend(q, "xformers") == "sdpa"
    assert resolve_backend(q, "auto") == "sdpa"


def test_cpu_use_never_imports_xformers() -> None:
    q, k, v = make_qkv()
    attention(q, k, v, backend="auto")
    assert "xformers" not in sys.modules or torch.cuda.is_available()


def test_available_backends() -> None:
    names = available_backends()
    assert names[:4] == ["auto", "sdpa", "math", "matmul"]
    assert ("xformers" in names) <= torch.cuda.is_available()


def test_selection_precedence_argument_context_env(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    for name in ("math", "sdpa"):
        real = getattr(attn_mod, f"_{name}_attention")
        monkeypatch.setattr(attn_mod, f"_{name}_attention", lambda *a, _n=name, _f=real: calls.append(_n) or _f(*a))
    q, k, v = make_qkv()
    assert get_attention_backend() == "auto"
    monkeypatch.setenv(ENV_VAR, " Math ")
    assert get_attention_backend() == "math"
    attention(q, k, v)
    with attention_backend("sdpa"):
        attention(q, k, v)
        attention(q, k, v, backend="math")
    attention(q, k, v, return_weights=True, backend="sdpa")
    assert calls == ["math", "sdpa", "math", "math"]


def test_context_manager_nests_and_restores() -> None:
    with attention_backend("math") as outer:
        assert outer == "math" == get_attention_backend()
        with attention_backend("sdpa"):
            assert get_attention_backend() == "sdpa"
        assert get_attention_backend() == "math"
        with pytest.raises(RuntimeError), attention_backend("auto"):
            raise RuntimeError
        assert get_attention_backend() == "math"
    assert get_attention_backend() == "auto"


def test_context_manager_is_local_to_its_thread() -> None:
    seen: list[str] = []
    with attention_backend("math"):
        thread = threading.Thread(target=lambda: seen.append(get_attention_backend()))
        thread.start()
        thread.join()
    assert seen == ["auto"]


def test_invalid_backend_names_raise_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, "flash")
    with pytest.raises(ValueError, match=ENV_VAR) as info:
        attention(*make_qkv())
    assert all(name in str(info.value) for name in ("'auto'", "'sdpa'", "'math'", "'xformers'", "'flash'"))
    monkeypatch.delenv(ENV_VAR)
    with pytest.raises(ValueError, match="backend"):
        attention(*make_qkv(), backend="cudnn")
    with pytest.raises(ValueError, match="attention_backend"), attention_backend("fast"):
        pass


def test_bad_inputs_raise() -> None:
    q, k, v = make_qkv(lk=5)
    with pytest.raises(ValueError, match="key_padding_mask"):
        attention(q, k, v, key_padding_mask=torch.ones(2, 5))  # not bool
    with pytest.raises(ValueError, match="key_padding_mask"):
        attention(q, k, v, key_padding_mask=torch.ones(2, 7, dtype=torch.bool))  # Lq instead of Lk
    with pytest.raises(ValueError, match="shapes"):
        attention(q, k[:, :2], v)


def test_apply_rotary_is_relative() -> None:
    """Rotated q.k depends only on the position offset; partial rotary leaves the tail channels alone."""
    d, length = 8, 6
    freqs = 1.0 / (100 ** (torch.arange(0, d, 2) / d))
    angles = torch.arange(length)[:, None] * freqs[None, :]
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    x = torch.randn(1, 1, 1, d).expand(1, 1, length, d)
    rotated = apply_rotary(x, cos, sin)
    dots = (rotated[0, 0] @ rotated[0, 0].T).diagonal(offset=1)
    torch.testing.assert_close(dots, dots[:1].expand_as(dots), **TOL)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1), **TOL)
    partial = apply_rotary(torch.randn(1, 1, length, d + 4), cos, sin)
    assert partial.shape[-1] == d + 4


# --------------------------------------------------------------------------------------------------- GPU (xformers)
def _needs_cuda_xformers() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    pytest.importorskip("xformers.ops")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("lq", "lk", "masked"), [(64, 64, False), (64, 64, True), (33, 77, True), (40, 13, False)])
def test_xformers_matches_sdpa_on_cuda(dtype: torch.dtype, lq: int, lk: int, masked: bool) -> None:
    _needs_cuda_xformers()
    q, k, v = make_qkv(b=2, h=4, lq=lq, lk=lk, d=64, device="cuda", dtype=dtype)
    mask = padding_mask(2, lk, device="cuda") if masked else None
    assert resolve_backend(q, "auto") == "xformers"
    got = attention(q, k, v, key_padding_mask=mask, backend="xformers")
    expected = attention(q, k, v, key_padding_mask=mask, backend="sdpa")
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected.float(), atol=2e-3, rtol=2e-3)
    torch.testing.assert_close(attention(q, k, v, key_padding_mask=mask), got)  # auto picks xformers


@pytest.mark.gpu
def test_xformers_fully_masked_rows_and_backward_on_cuda() -> None:
    _needs_cuda_xformers()
    q, k, v = (t.requires_grad_(True) for t in make_qkv(lq=16, lk=24, d=64, device="cuda", dtype=torch.bfloat16))
    mask = padding_mask(2, 24, device="cuda")
    mask[1] = False
    out = attention(q, k, v, key_padding_mask=mask, backend="xformers")
    assert not out.isnan().any() and (out[1] == 0).all()
    out.float().sum().backward()
    assert all(not t.grad.isnan().any() for t in (q, k, v))


def test_auto_runs_matmul_for_short_low_precision_cpu_attention() -> None:
    q = torch.randn(2, 4, 64, 16, dtype=torch.bfloat16)
    assert resolve_backend(q, "auto") == "matmul"                       # CPU bf16, small score matrix
    assert resolve_backend(q.float(), "auto") == "sdpa"                 # fp32 keeps sdpa
    assert resolve_backend(q, "auto", keys=attn_mod.MATMUL_MAX_SCORES) == "sdpa"   # long sequences: flash kernel
    k, v = torch.randn(2, 4, 9, 16, dtype=torch.bfloat16), torch.randn(2, 4, 9, 16, dtype=torch.bfloat16)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, 5:] = False
    mask[0] = False                                                     # a fully masked row stays zero, no NaN
    reference = attention(q.float(), k.float(), v.float(), key_padding_mask=mask, backend="math")
    out = attention(q, k, v, key_padding_mask=mask, backend="auto")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all() and out[0].abs().max() == 0
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)
