"""The captioned shapes dataset: scenes, rendering, captions, held-out split, prompt parsing and the CLI writer."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

import mmgen.cli.main as cli
from mmgen.data import read_manifest, read_samples
from mmgen.data.shapes import (
    COLORS,
    INVERSE,
    NUM_HELDOUT_RELATION,
    NUM_HELDOUT_SINGLE,
    OBJECTS,
    RELATION_TEMPLATES,
    SHAPES,
    SINGLE_TEMPLATES,
    caption,
    heldout_prompts,
    heldout_split,
    iter_samples,
    object_map,
    parse_prompt,
    parse_prompt_spec,
    render_scene,
    sample_scene,
)
from mmgen.errors import InvalidArgumentError


@pytest.fixture(autouse=True)
def only_data_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("mmgen.cli.data",))


def _pair(scene: dict) -> frozenset:
    return frozenset((obj["color"], obj["shape"]) for obj in scene["objects"])


def test_cli_writes_splits_captions_scenes_and_prompts(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "shapes"
    argv = ["data", "shapes", "--out", str(out), "--num", "60", "--holdout", "40", "--samples-per-shard", "25"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "train: 60" in printed and "holdout: 40" in printed
    splits = read_manifest(out)["splits"]
    assert splits["train"]["shards"] == [f"train-00000{i}.tar" for i in range(3)]
    assert splits["holdout"]["samples"] == 40 and splits["holdout"]["image_size"] == 32
    assert len(splits["holdout"]["heldout"]["pairs"]) == 24
    train, holdout = read_samples(out, split="train"), read_samples(out, split="holdout")
    assert len(train) == 60 and len(holdout) == 40
    for sample in train + holdout:
        assert sample["image"].shape == (3, 32, 32) and sample["text"].strip()
        assert parse_prompt(sample["text"]) == _pair(sample["meta"])
        assert {"color", "shape", "size", "x", "y"} <= set(sample["meta"]["objects"][0])
    assert all(s["meta"]["template"].split("-")[0] in ("single", "relation") for s in train)
    lines = [json.loads(line) for line in (out / "prompts-holdout.jsonl").read_text().splitlines()]
    assert len(lines) == 200  # max(holdout, 200)
    assert [line["prompt"] for line in lines[:40]] == [s["text"] for s in holdout]
    assert all({tuple(o) for o in line["objects"]} == parse_prompt(line["prompt"]) for line in lines)


def test_writer_is_deterministic_from_the_seed(tmp_path: Path):
    def write(name: str, seed: int) -> list[bytes]:
        assert cli.main(["data", "shapes", "--out", str(tmp_path / name), "--num", "30", "--holdout", "10",
                         "--seed", str(seed), "--size", "16"]) == 0
        return [p.read_bytes() for p in sorted((tmp_path / name).glob("*.tar"))]

    first = write("a", 3)
    assert first == write("b", 3)
    assert first != write("c", 4)
    assert heldout_prompts(5, seed=3) == heldout_prompts(5, seed=3) != heldout_prompts(5, seed=4)


def test_heldout_templates_and_pairs_never_reach_training():
    heldout = heldout_split(0)
    reserved = {f"single-{i:02d}" for i in heldout.single_templates}
    reserved |= {f"relation-{i:02d}" for i in heldout.relation_templates}
    assert len(SINGLE_TEMPLATES) - NUM_HELDOUT_SINGLE >= 12 and len(RELATION_TEMPLATES) - NUM_HELDOUT_RELATION >= 8
    assert len(heldout.pairs) == 24 and all(len(pair) == 2 for pair in heldout.pairs)
    train = list(islice(iter_samples("train", 0), 3000))
    assert not {scene["template"] for scene, _ in train} & reserved
    assert len({scene["template"] for scene, _ in train}) == len(SINGLE_TEMPLATES) + len(RELATION_TEMPLATES) - 7
    train_pairs = {_pair(scene) for scene, _ in train if len(scene["objects"]) == 2}
    assert not train_pairs & heldout.pairs and len(train_pairs) > 200
    assert {obj for pair in train_pairs for obj in pair} == set(OBJECTS)  # every object is seen in training
    assert {next(iter(_pair(s))) for s, _ in train if len(s["objects"]) == 1} == set(OBJECTS)
    # held-out template texts never occur as training captions' wording either
    held_texts = {text for _, text in islice(iter_samples("holdout", 0), 1000)}
    assert not held_texts & {text for _, text in train}
    for scene, _ in islice(iter_samples("holdout", 0), 500):
        assert scene["template"] in reserved
        assert len(scene["objects"]) == 1 or _pair(scene) in heldout.pairs
    assert heldout_split(1).pairs != heldout.pairs


@pytest.mark.parametrize("split", ["train", "holdout"])
def test_every_caption_parses_back_to_its_scene(split: str):
    for scene, text in islice(iter_samples(split, 5), 1500):
        spec = parse_prompt_spec(text)
        objects = [(o["color"], o["shape"]) for o in scene["objects"]]
        assert parse_prompt(text) == set(objects), text
        assert all(o["size"] in (None, scene["objects"][objects.index((o["color"], o["shape"]))]["size"])
                   for o in spec["objects"]), text
        if len(objects) == 1:
            assert spec["position"] == scene["position"], text
        else:
            first = (spec["objects"][0]["color"], spec["objects"][0]["shape"])
            expected = scene["relation"] if first == objects[0] else INVERSE[scene["relation"]]
            assert spec["relation"] == expected, text


def test_parse_prompt_synonyms_and_errors():
    assert parse_prompt("A big violet disk and a blue BOX") == {("purple", "circle"), ("blue", "square")}
    assert parse_prompt_spec("white rhombus, top side")["position"] == "top"
    spec = parse_prompt_spec("a small green circle under a large red triangle")
    assert spec["relation"] == "below" and [o["size"] for o in spec["objects"]] == ["small", "large"]
    for bad in ("a cat on a mat", "a red thing", ""):
        with pytest.raises(InvalidArgumentError, match="prompt"):
            parse_prompt(bad)


def _object_mask(image: np.ndarray, scene: dict) -> np.ndarray:
    return np.abs(image.astype(int) - np.asarray(scene["background"])).sum(-1) > 60


@pytest.mark.parametrize("size", [16, 32, 48])
def test_objects_are_rendered_where_the_scene_says(size: int):
    rng = np.random.default_rng(0)
    for _ in range(40):
        scene = sample_scene(rng)
        image = np.asarray(render_scene(scene, size))
        assert image.shape == (size, size, 3)
        drawn = np.abs(image.astype(int) - np.asarray(scene["background"])).sum(-1) > 150
        assert (drawn == (object_map(scene, size) >= 0)).mean() > 0.93  # the masks match the drawing
        if len(scene["objects"]) == 1:
            ys, xs = np.nonzero(_object_mask(image, scene))
            obj = scene["objects"][0]
            assert abs(xs.mean() + 0.5 - obj["x"] * size) < 0.6 and abs(ys.mean() + 0.5 - obj["y"] * size) < 0.6
        for obj in scene["objects"]:  # each object's own color at its centre
            pixel = image[int(obj["y"] * size), int(obj["x"] * size)].astype(int)
            assert np.abs(pixel - np.asarray(obj["rgb"])).max() < 40, (scene, pixel)


def test_two_object_scenes_do_not_overlap_and_respect_the_relation():
    rng = np.random.default_rng(1)
    for _ in range(300):
        scene = sample_scene(rng)
        if len(scene["objects"]) == 1:
            continue
        a, b = scene["objects"]
        assert (a["color"], a["shape"]) != (b["color"], b["shape"])
        apart_x = abs(a["x"] - b["x"]) >= a["extent"] + b["extent"]
        apart_y = abs(a["y"] - b["y"]) >= a["extent"] + b["extent"]
        assert apart_x or apart_y
        dx, dy = a["x"] - b["x"], a["y"] - b["y"]
        along = {"above": -dy, "below": dy, "left of": -dx, "right of": dx}[scene["relation"]]
        across = abs(dx) if scene["relation"] in ("above", "below") else abs(dy)
        assert along > 0 and across < along
        for obj in (a, b):
            assert obj["extent"] <= obj["x"] <= 1 - obj["extent"] and obj["extent"] <= obj["y"] <= 1 - obj["extent"]


def test_library_api_and_bad_size(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    assert len(COLORS) == 6 and len(SHAPES) == 4 and len(OBJECTS) == 24
    scene = sample_scene(np.random.default_rng(2), "holdout")
    assert caption(scene, np.random.default_rng(0), "holdout")
    assert len(heldout_prompts(250, seed=0)) == 250
    with pytest.raises(InvalidArgumentError, match="--size"):
        render_scene(scene, 8)
    assert cli.main(["data", "shapes", "--out", str(tmp_path), "--num", "5", "--size", "12"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--size: expected an integer >= 16, got 12" in err
