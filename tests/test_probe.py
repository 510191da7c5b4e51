"""Linear probe and k-NN on features with known structure; bad inputs."""

from __future__ import annotations

import pytest
import torch

from mmgen.errors import DataError, InvalidArgumentError
from mmgen.eval.probe import L2_GRID, choose_l2, extract_features, knn_accuracy, linear_probe, probe_features


def clusters(n: int, seed: int, noise: float = 0.3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    centers = torch.eye(4, 8) * 3
    labels = torch.randint(0, 4, (n,), generator=g)
    return centers[labels] + noise * torch.randn(n, 8, generator=g), labels


def test_separable_features_probe_perfectly_and_noise_does_not() -> None:
    tx, ty = clusters(200, 0)
    ex, ey = clusters(100, 1)
    assert linear_probe(tx, ty, ex, ey) == 1.0
    assert knn_accuracy(tx, ty, ex, ey, k=5) == 1.0
    noise = torch.randn(200, 8, generator=torch.Generator().manual_seed(2))
    assert linear_probe(noise, ty, torch.randn(100, 8), ey) < 0.6


def test_l2_is_chosen_on_training_features_only() -> None:
    tx, ty = clusters(200, 0, noise=1.5)
    ex, ey = clusters(100, 1, noise=1.5)
    l2 = choose_l2((tx - tx.mean(0)) / tx.std(0), ty, 4)
    assert l2 in L2_GRID
    standardized = (tx - tx.mean(0)) / tx.std(0)
    assert choose_l2(standardized.double(), ty, 4) == l2  # deterministic
    assert linear_probe(tx, ty, ex, ey) == linear_probe(tx, ty, ex, ey, l2=l2)
    shuffled = ey[torch.randperm(100, generator=torch.Generator().manual_seed(3))]
    assert linear_probe(tx, ty, ex, shuffled) == linear_probe(tx, ty, ex, shuffled, l2=l2)  # held-out labels unused


def test_probe_features_on_samples() -> None:
    tx, ty = clusters(64, 0)
    ex, ey = clusters(32, 1)
    train = [{"image": x.view(1, 2, 4), "label": int(y)} for x, y in zip(tx, ty)]
    held_out = [{"image": x.view(1, 2, 4), "label": int(y)} for x, y in zip(ex, ey)]
    result = probe_features(lambda images: images.flatten(1), train, held_out, batch_size=10, k=5)
    assert result.linear_accuracy == 1.0 and result.knn_accuracy == 1.0
    assert (result.num_train, result.num_eval, result.feature_dim) == (64, 32, 8)


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(DataError, match="no samples"):
        extract_features(lambda x: x, [])
    with pytest.raises(DataError, match="label"):
        extract_features(lambda x: x, [{"image": torch.zeros(1, 2, 2)}])
    with pytest.raises(InvalidArgumentError, match="train features"):
        linear_probe(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long), torch.zeros(1, 2), torch.zeros(1).long())
