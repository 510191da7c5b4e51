"""The shapes attribute judge: model shapes, the training task, prompt matching and the shipped asset's accuracy."""

from __future__ import annotations

import math
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import mmgen.cli.main as cli
from mmgen import create_model
from mmgen.data.shapes import OBJECTS, iter_samples, parse_prompt_spec
from mmgen.eval.prompt_match import _canonical_relation, load_shapes_judge, prompt_match
from mmgen.models.attribute_judge import AttributeJudge, JudgeOutput
from mmgen.training.tasks.shapes_judge import RenderedShapes, degrade, render_batch, scene_targets


def test_tiny_judge_shapes_gradients_and_round_trip(tmp_path: Path):
    judge = create_model("shapes-judge-tiny")
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    out = judge(images)
    assert out.object_logits.shape == (2, 24) and out.count_logits.shape == (2, 2)
    assert out.position_logits.shape == (2, 5) and out.relation_logits.shape == (2, 4)
    (out.object_logits.sum() + out.relation_logits.sum()).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in judge.parameters())
    judge.save_pretrained(tmp_path / "judge")
    same = AttributeJudge.from_pretrained(tmp_path / "judge")
    torch.testing.assert_close(same(images).object_logits, judge.eval()(images).object_logits)
    assert judge.present_objects(torch.zeros(3, 3, 64, 64)).shape == (3, 24)  # resized to 32


class _StubJudge(nn.Module):
    """Says: image 0 = red circle on the left; 1 = blue square alone; 2 = white diamond + yellow circle."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, ...]] = []

    def resize(self, images: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(images, size=(32, 32), mode="area")

    def forward(self, images: torch.Tensor) -> JudgeOutput:
        self.seen.append(tuple(images.shape))
        objects = torch.full((3, 24), -5.0)
        for row, names in enumerate([[("red", "circle")], [("blue", "square")],
                                     [("white", "diamond"), ("yellow", "circle")]]):
            for name in names:
                objects[row, OBJECTS.index(name)] = 5.0
        position = torch.zeros(3, 5)
        position[0, 0] = 1.0  # "left"
        return JudgeOutput(objects, torch.zeros(3, 2), position, torch.zeros(3, 4))


def test_prompt_match_on_a_hand_built_case():
    judge = _StubJudge()
    prompts = ["a red circle on the left", "a blue square above a green triangle", "a white diamond at the top"]
    result = prompt_match(judge, torch.zeros(3, 3, 64, 64), prompts)
    assert judge.seen == [(3, 3, 32, 32)]
    assert result.matches.tolist() == [True, False, False]
    assert math.isclose(result.color_shape_accuracy, 1 / 3)
    assert result.object_recall == {"blue square": 1.0, "green triangle": 0.0, "red circle": 1.0,
                                    "white diamond": 1.0}
    assert result.position_accuracy == 0.5  # red circle right; white diamond set wrong
    assert math.isnan(result.relation_accuracy) is False and result.relation_accuracy == 0.0
    assert result.found[2] == {("white", "diamond"), ("yellow", "circle")}
    with pytest.raises(ValueError, match="prompts"):
        prompt_match(judge, torch.zeros(2, 3, 32, 32), prompts)


def test_judge_targets_agree_with_prompt_parsing():
    for scene, text in islice(iter_samples("holdout", 0), 300):
        targets, spec = scene_targets(scene), parse_prompt_spec(text)
        assert sorted(targets["objects"]) == sorted(OBJECTS.index((o["color"], o["shape"])) for o in spec["objects"])
        if len(scene["objects"]) == 2:
            assert targets["relation"] == _canonical_relation(spec) and targets["position"] == -100
        else:
            assert targets["position"] >= 0 and targets["relation"] == -100


def test_rendered_stream_resumes_exactly_and_degrades_in_range():
    first = RenderedShapes(4, 16, seed=3)
    batches = list(islice(iter(first), 3))
    resumed = next(iter(RenderedShapes(4, 16, seed=3, state={"batches": 2})))
    torch.testing.assert_close(resumed["image"], batches[2]["image"])
    assert batches[0]["image"].shape == (4, 3, 16, 16) and batches[0]["objects"].sum(-1).min() >= 1
    clean = render_batch([s for s, _ in islice(iter_samples("train", 0), 8)], 32)
    damaged = degrade(clean.clone(), np.random.default_rng(0))
    assert damaged.min() >= -1 and damaged.max() <= 1 and (damaged - clean).abs().mean() > 0.005


def test_train_command_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "run"
    argv = ["train", "shapes-judge", "--data", "render", "--out", str(out), "--model", "shapes-judge-tiny",
            "--image-size", "16", "--eval-samples", "16", "steps=2", "batch_size=4", "eval_every=2",
            "progress=false"]
    assert cli.main(argv) == 0
    judge = AttributeJudge.from_pretrained(out / "model")
    assert judge.config.image_size == 16 and "eval/degraded_set_accuracy" in (out / "metrics.jsonl").read_text()
    assert cli.main(["train", "shapes-judge", "--data", "shards/", "--out", str(out)]) == 2
    assert "--data: expected 'render'" in capsys.readouterr().err


def test_shipped_judge_is_accurate_on_fresh_heldout_scenes():
    judge = load_shapes_judge()
    assert judge.config.image_size == 32
    samples = list(islice(iter_samples("holdout", 99), 200))
    clean = render_batch([scene for scene, _ in samples], 32)
    prompts = [text for _, text in samples]
    result = prompt_match(judge, clean, prompts)
    assert result.color_shape_accuracy >= 0.97, result.color_shape_accuracy
    degraded = degrade(render_batch([s for s, _ in samples], 32, np.random.default_rng(1)), np.random.default_rng(1))
    assert prompt_match(judge, degraded, prompts).color_shape_accuracy >= 0.93
