"""mmgen.nn.norms: the bf16 RMSNorm fast path and the fused modulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmgen.nn.norms import RMSNorm, modulate


@pytest.mark.parametrize("affine", [True, False])
def test_rmsnorm_matches_torch(affine: bool):
    torch.manual_seed(0)
    ours, stock = RMSNorm(64, eps=1e-6, elementwise_affine=affine), nn.RMSNorm(64, eps=1e-6, elementwise_affine=affine)
    if affine:
        nn.init.normal_(stock.weight)
        ours.load_state_dict(stock.state_dict())  # same parameters, same keys
    x = 3 * torch.randn(2, 5, 64)
    assert torch.equal(ours(x), stock(x))  # fp32: the stock kernel, bit for bit
    low = ours(x.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), stock(x), atol=0.05, rtol=0.02)  # two bf16 roundings at most


def test_rmsnorm_bf16_path_has_gradients():
    norm = RMSNorm(16).bfloat16()
    x = torch.randn(3, 16, dtype=torch.bfloat16, requires_grad=True)
    norm(x).float().square().sum().backward()
    assert x.grad is not None and norm.weight.grad is not None


def test_modulate_is_film():
    x, scale, shift = torch.randn(2, 4, 8), torch.randn(2, 1, 8), torch.randn(2, 1, 8)
    torch.testing.assert_close(modulate(x, scale, shift), x * (1 + scale) + shift)
    assert modulate(x.bfloat16(), scale, shift).dtype == torch.bfloat16
