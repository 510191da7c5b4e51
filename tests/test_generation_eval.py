"""Generation metrics: FID/KID in a judge's feature space, judge accuracy, diversity."""

from __future__ import annotations

import torch

from mmgen import create_model
from mmgen.eval.generation import diversity, features_of, fid_kid, judge_accuracy


def _judge():
    torch.manual_seed(0)
    return create_model("digit-classifier-mnist", channels=[8], feature_dim=16).eval()


def test_fid_is_near_zero_for_the_same_set_and_grows_for_other_images():
    judge = _judge()
    real = torch.rand(120, 1, 28, 28) * 2 - 1
    twin = torch.rand(120, 1, 28, 28) * 2 - 1  # same distribution, other draws
    blurred = torch.nn.functional.interpolate(torch.nn.functional.avg_pool2d(twin, 4), scale_factor=4)
    same, close, far = fid_kid(judge, real, real.clone()), fid_kid(judge, real, twin), fid_kid(judge, real, blurred)
    assert abs(same["fid"]) < 1e-6
    assert far["fid"] > 5 * close["fid"] > 0 and far["kid"] > close["kid"]


def test_judge_accuracy_and_diversity():
    judge = _judge()
    images = torch.rand(40, 1, 28, 28) * 2 - 1
    labels = judge(images).argmax(-1)
    assert judge_accuracy(judge, images, labels) == 1.0
    assert judge_accuracy(judge, images, (labels + 1) % 10) == 0.0
    features = features_of(judge, images)
    assert features.shape == (40, 16)
    collapsed = features[:1].expand(40, -1)
    assert diversity(collapsed, labels) == 0.0 < diversity(features, labels)
