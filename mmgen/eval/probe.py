"""Frozen-feature evaluation of encoders: linear probe and k-NN accuracy.

* :func:`extract_features`: run a feature function (``images [B, C, H, W] -> [B, D]``) over decoded samples.
* :func:`linear_probe`: standardize features with the training split's statistics (MAE's probe puts a BatchNorm
  without affine before the linear layer: the same thing), fit a multinomial logistic regression (full-batch
  L-BFGS to convergence, L2 penalty chosen on a split of the *training* features unless given, deterministic) and
  report held-out top-1 accuracy.
* :func:`knn_accuracy`: cosine-similarity k-NN with similarity-weighted votes (``exp(sim / T)``, as in DINO).
* :func:`probe_features`: both on a (train, held-out) split, as a :class:`ProbeResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F

from mmgen.errors import DataError, InvalidArgumentError

FeatureFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ProbeResult:
    """Accuracies in [0, 1] and the sizes they were measured on."""

    linear_accuracy: float
    knn_accuracy: float
    num_train: int
    num_eval: int
    feature_dim: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def extract_features(feature_fn: FeatureFn, samples: Sequence[dict[str, Any]], *, batch_size: int = 256,
                     device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """samples: dicts with ``image`` [C, H, W] float and ``label`` int → (features [N, D] fp32, labels [N])."""
    if not samples:
        raise DataError("no samples to extract features from")
    if any("label" not in s for s in samples[:1]):
        raise DataError("probing needs labelled samples (a .cls field per sample)")
    feats = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        images = torch.stack([s["image"] for s in chunk]).to(device)
        feats.append(feature_fn(images).float().cpu())
    labels = torch.tensor([int(s["label"]) for s in samples])
    return torch.cat(feats), labels


def _check_split(x: torch.Tensor, y: torch.Tensor, name: str) -> None:
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise InvalidArgumentError(name, "features [N, D] with N > 0 and labels [N]",
                                   f"{tuple(x.shape)} and {tuple(y.shape)}")


#: L2 penalties :func:`linear_probe` chooses from (on a split of the training features) when none is given.
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, classes: int, l2: float,
                  max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression on standardized float64 features → (weight [D, K], bias [K])."""
    weight = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    return weight.detach(), bias.detach()


def _accuracy(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> float:
    return float(((x @ weight + bias).argmax(1) == y).double().mean())


def choose_l2(train_x: torch.Tensor, train_y: torch.Tensor, classes: int, *, grid: Sequence[float] = L2_GRID,
              fraction: float = 0.2, max_iter: int = 500) -> float:
    """The L2 penalty of ``grid`` with the best accuracy on a fixed random ``fraction`` of the (standardized)
    training features when fit on the rest (ties: the larger penalty). Never looks at held-out data."""
    train_x, n = train_x.double(), train_x.shape[0]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    cut = max(1, int(n * fraction))
    if n - cut < 2:
        return grid[len(grid) // 2]
    val, fit = order[:cut], order[cut:]
    scores = [(_accuracy(train_x[val], train_y[val], *_fit_logistic(train_x[fit], train_y[fit], classes, l2,
                                                                     max_iter)), l2) for l2 in grid]
    return max(scores)[1]


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor, *,
                 l2: float | None = None, max_iter: int = 500) -> float:
    """Logistic-regression probe: fit on (train_x [N, D], train_y [N]), return accuracy on (eval_x, eval_y).

    ``l2``: penalty on the squared weights (features are standardized first); None = :func:`choose_l2`.
    """
    _check_split(train_x, train_y, "train features")
    _check_split(eval_x, eval_y, "eval features")
    train_x, eval_x = train_x.double(), eval_x.double()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, eval_x = (train_x - mean) / std, (eval_x - mean) / std
    classes = int(max(train_y.max(), eval_y.max())) + 1
    if l2 is None:
        l2 = choose_l2(train_x, train_y, classes, max_iter=max_iter)
    return _accuracy(eval_x, eval_y, *_fit_logistic(train_x, train_y, classes, l2, max_iter))


@torch.no_grad()
def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, eval_x: torch.Tensor, eval_y: torch.Tensor, *,
                 k: int = 20, temperature: float = 0.07) -> float:
    """Weighted k-NN on cosine similarity: each of the ``k`` nearest train features votes ``exp(sim / T)``."""
    _check_split(train_x, train_y, "train features")
    _check_split(eval_x, eval_y, "eval features")
    k = min(k, train_x.shape[0])
    sims = F.normalize(eval_x.float(), dim=1) @ F.normalize(train_x.float(), dim=1).T
    top, index = sims.topk(k, dim=1)
    classes = int(max(train_y.max(), eval_y.max())) + 1
    votes = torch.zeros(eval_x.shape[0], classes).scatter_add_(1, train_y[index], (top / temperature).exp())
    return float((votes.argmax(1) == eval_y).float().mean())


def probe_features(feature_fn: FeatureFn, train: Sequence[dict[str, Any]], held_out: Sequence[dict[str, Any]], *,
                   batch_size: int = 256, device: torch.device | str = "cpu", k: int = 20) -> ProbeResult:
    """Linear-probe and k-NN accuracy of ``feature_fn`` trained on ``train`` samples, measured on ``held_out``."""
    train_x, train_y = extract_features(feature_fn, train, batch_size=batch_size, device=device)
    eval_x, eval_y = extract_features(feature_fn, held_out, batch_size=batch_size, device=device)
    return ProbeResult(linear_probe(train_x, train_y, eval_x, eval_y), knn_accuracy(train_x, train_y, eval_x, eval_y,
                       k=k), len(train), len(held_out), train_x.shape[1])


__all__ = ["L2_GRID", "ProbeResult", "choose_l2", "extract_features", "knn_accuracy", "linear_probe", "probe_features"]
