"""The captioned "shapes" dataset: procedural RGB scenes of one or two colored shapes with varied captions.

A scene is a JSON-ready dict (normalised coordinates, so one scene renders at any size)::

    {"objects": [{"color": "red", "shape": "circle", "size": "small", "x": 0.27, "y": 0.52,
                  "extent": 0.13, "rgb": [221, 43, 37]}, ...],
     "position": "left" | None,        # one-object scenes: where the object is
     "relation": "above" | None,       # two-object scenes: objects[0] <relation> objects[1]
     "background": [12, 14, 11]}

Captions come from many templates (``single-NN`` for one object, ``relation-NN`` for two) with synonyms, sizes
that are sometimes left out, and both directions of a relation ("a green diamond above a white circle" /
"a white circle below a green diamond"). The held-out split (:data:`HELDOUT`) reserves some templates and a
set of unordered object pairs that never appear in training; every single (color, shape) object still does.
:func:`parse_prompt` reads back the objects of any caption, so a judge can score generated images against prompts.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mmgen.errors import InvalidArgumentError, check_positive_int

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 40), "green": (40, 200, 70), "blue": (45, 95, 240),
    "yellow": (240, 215, 40), "purple": (165, 60, 215), "white": (240, 240, 240),
}
"""Color name -> base RGB (each object jitters it slightly)."""
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
OBJECTS: tuple[tuple[str, str], ...] = tuple((c, s) for c in COLORS for s in SHAPES)
"""The 24 (color, shape) objects, in judge output order."""
SIZES: dict[str, float] = {"small": 0.13, "large": 0.2}
"""Size word -> half-extent of the object as a fraction of the image side (jittered by +-8%)."""
POSITIONS: dict[str, tuple[float, float]] = {
    "left": (0.27, 0.5), "right": (0.73, 0.5), "top": (0.5, 0.27), "bottom": (0.5, 0.73), "center": (0.5, 0.5),
}
RELATIONS: dict[str, tuple[int, int]] = {"above": (1, -1), "below": (1, 1), "left of": (0, -1), "right of": (0, 1)}
"""Relation -> (axis 0=x / 1=y, sign of objects[0] minus objects[1] along it)."""
INVERSE = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
SPLITS = ("train", "holdout")
MIN_SIZE = 16
SOURCE = "mmgen.shapes"

Pair = frozenset  # frozenset of two (color, shape) tuples


# --------------------------------------------------------------------------------------------- held-out split
@dataclass(frozen=True)
class HeldOut:
    """What the training split never shows: caption templates and unordered object pairs.

    Attributes:
        single_templates / relation_templates: template indices reserved for the holdout split.
        pairs: unordered pairs of distinct (color, shape) objects never drawn together in training.
    """

    single_templates: tuple[int, ...]
    relation_templates: tuple[int, ...]
    pairs: frozenset[Pair]

    def to_json(self) -> dict[str, Any]:
        return {"templates": [f"single-{i:02d}" for i in self.single_templates]
                + [f"relation-{i:02d}" for i in self.relation_templates],
                "pairs": sorted(sorted(list(obj) for obj in pair) for pair in self.pairs)}


@lru_cache(maxsize=8)
def heldout_split(seed: int = 0) -> HeldOut:
    """The held-out templates (the last ones of each table) and 24 object pairs drawn from ``seed``.

    The pairs close a seeded cycle through the 24 objects, so each object is in exactly two held-out pairs and
    in 21 training pairs (and in every one-object scene kind).
    """
    order = np.random.default_rng([seed, 7]).permutation(len(OBJECTS))
    cycle = [OBJECTS[i] for i in order]
    pairs = frozenset(Pair({cycle[i], cycle[(i + 1) % len(cycle)]}) for i in range(len(cycle)))
    singles = tuple(range(len(SINGLE_TEMPLATES) - NUM_HELDOUT_SINGLE, len(SINGLE_TEMPLATES)))
    relations = tuple(range(len(RELATION_TEMPLATES) - NUM_HELDOUT_RELATION, len(RELATION_TEMPLATES)))
    return HeldOut(singles, relations, pairs)


# ----------------------------------------------------------------------------------------------- scene sampling
def _make_object(rng: np.random.Generator, color: str, shape: str, size: str) -> dict[str, Any]:
    rgb = np.clip(np.asarray(COLORS[color]) + rng.integers(-14, 15, size=3), 0, 255)
    extent = SIZES[size] * float(rng.uniform(0.92, 1.08))
    return {"color": color, "shape": shape, "size": size, "x": 0.5, "y": 0.5,
            "extent": round(extent, 4), "rgb": [int(v) for v in rgb]}


def _random_object(rng: np.random.Generator) -> tuple[str, str]:
    return OBJECTS[int(rng.integers(len(OBJECTS)))]


def _pick_pair(rng: np.random.Generator, split: str, heldout: HeldOut) -> tuple[tuple[str, str], tuple[str, str]]:
    """Two distinct (color, shape) objects: a held-out pair for ``holdout``, any other pair for ``train``."""
    if split == "holdout":
        pairs = sorted(tuple(sorted(pair)) for pair in heldout.pairs)
        first, second = pairs[int(rng.integers(len(pairs)))]
        return (first, second) if rng.random() < 0.5 else (second, first)
    while True:
        first, second = _random_object(rng), _random_object(rng)
        if first != second and Pair({first, second}) not in heldout.pairs:
            return first, second


def _place_single(rng: np.random.Generator, obj: dict[str, Any], position: str) -> None:
    anchor = POSITIONS[position]
    for axis, name in enumerate(("x", "y")):
        low, high = obj["extent"] + 0.02, 1.0 - obj["extent"] - 0.02
        obj[name] = round(float(np.clip(anchor[axis] + rng.uniform(-0.06, 0.06), low, high)), 4)


def _place_pair(rng: np.random.Generator, first: dict[str, Any], second: dict[str, Any], relation: str) -> None:
    """Centres such that ``first <relation> second`` holds clearly and the objects' boxes are apart."""
    axis, sign = RELATIONS[relation]
    low_obj, high_obj = (first, second) if sign < 0 else (second, first)
    margin, gap = 0.02, 0.04
    low_min = low_obj["extent"] + margin
    high_max = 1.0 - high_obj["extent"] - margin
    min_distance = low_obj["extent"] + high_obj["extent"] + gap
    distance = float(rng.uniform(min_distance, max(min_distance, high_max - low_min)))
    low_centre = float(rng.uniform(low_min, max(low_min, high_max - distance)))
    along, across = ("x", "y") if axis == 0 else ("y", "x")
    low_obj[along], high_obj[along] = round(low_centre, 4), round(low_centre + distance, 4)
    # across the relation axis: both near a shared line, offset well below the distance along it
    wobble = min(0.35 * distance, 0.08)
    centre = rng.uniform(0.35, 0.65)
    for obj in (first, second):
        low, high = obj["extent"] + margin, 1.0 - obj["extent"] - margin
        obj[across] = round(float(np.clip(centre + rng.uniform(-wobble, wobble), low, high)), 4)


def sample_scene(rng: np.random.Generator, split: str = "train", heldout: HeldOut | None = None) -> dict[str, Any]:
    """A random scene: half the time one object at a position, else two objects in a relation.

    Args:
        rng: numpy generator (all randomness comes from it).
        split: ``train`` (never a held-out pair) or ``holdout`` (two-object scenes use held-out pairs only).
        heldout: the held-out split (default :func:`heldout_split` ``(0)``).
    """
    heldout = heldout or heldout_split(0)
    _check_split(split)
    background = int(rng.integers(4, 36))
    scene: dict[str, Any] = {"objects": [], "position": None, "relation": None,
                             "background": [int(np.clip(background + rng.integers(-4, 5), 0, 255)) for _ in "rgb"]}
    sizes = list(SIZES)
    if rng.random() < 0.5:
        obj = _make_object(rng, *_random_object(rng), sizes[int(rng.integers(2))])
        scene["position"] = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
        _place_single(rng, obj, scene["position"])
        scene["objects"] = [obj]
    else:
        (c1, s1), (c2, s2) = _pick_pair(rng, split, heldout)
        first = _make_object(rng, c1, s1, sizes[int(rng.integers(2))])
        second = _make_object(rng, c2, s2, sizes[int(rng.integers(2))])
        scene["relation"] = list(RELATIONS)[int(rng.integers(len(RELATIONS)))]
        _place_pair(rng, first, second, scene["relation"])
        scene["objects"] = [first, second]
    return scene


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise InvalidArgumentError("split", f"one of {list(SPLITS)}", split)


# ---------------------------------------------------------------------------------------------------- rendering
def _outline(shape: str, x: float, y: float, e: float) -> list[tuple[float, float]] | tuple[float, ...]:
    """Pixel outline of a shape centred at (x, y) with half-extent e: a box for ellipses, else polygon points."""
    if shape == "circle":
        return (x - e, y - e, x + e, y + e)
    if shape == "square":
        h = 0.86 * e  # about the circle's area
        return [(x - h, y - h), (x + h, y - h), (x + h, y + h), (x - h, y + h)]
    if shape == "triangle":  # pointing up, centroid at (x, y)
        return [(x, y - 1.1 * e), (x + e, y + 0.55 * e), (x - e, y + 0.55 * e)]
    if shape == "diamond":
        return [(x, y - e), (x + e, y), (x, y + e), (x - e, y)]
    raise InvalidArgumentError("shape", f"one of {list(SHAPES)}", shape)


def render_scene(scene: dict[str, Any], size: int = 32) -> Any:
    """Draw ``scene`` as an RGB ``PIL.Image`` of ``size`` x ``size`` (drawn at 4x, box-downsampled: anti-aliased)."""
    from PIL import Image, ImageDraw

    check_image_size(size)
    big = 4 * size
    image = Image.new("RGB", (big, big), tuple(scene["background"]))
    draw = ImageDraw.Draw(image)
    for obj in scene["objects"]:
        outline = _outline(obj["shape"], obj["x"] * big, obj["y"] * big, obj["extent"] * big)
        fill = tuple(obj["rgb"])
        if obj["shape"] == "circle":
            draw.ellipse(outline, fill=fill)
        else:
            draw.polygon(outline, fill=fill)
    return image.resize((size, size), Image.Resampling.BOX)


def _inside(shape: str, dx: np.ndarray, dy: np.ndarray, e: float) -> np.ndarray:
    """Which offsets (dx, dy) from a shape's centre fall inside it (the same outlines as :func:`render_scene`)."""
    if shape == "circle":
        return dx ** 2 + dy ** 2 <= e ** 2
    if shape == "square":
        return (np.abs(dx) <= 0.86 * e) & (np.abs(dy) <= 0.86 * e)
    if shape == "triangle":
        return (dy >= -1.1 * e) & (dy <= 0.55 * e) & (np.abs(dx) <= (dy + 1.1 * e) / 1.65)
    return np.abs(dx) + np.abs(dy) <= e


def object_map(scene: dict[str, Any], size: int = 32) -> np.ndarray:
    """int64 [size, size]: the :data:`OBJECTS` index of the object covering each pixel centre, -1 for background."""
    check_image_size(size)
    centres = (np.arange(size) + 0.5) / size
    labels = np.full((size, size), -1, dtype=np.int64)
    for obj in scene["objects"]:
        inside = _inside(obj["shape"], centres[None, :] - obj["x"], centres[:, None] - obj["y"], obj["extent"])
        labels[inside] = OBJECTS.index((obj["color"], obj["shape"]))
    return labels


def check_image_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise InvalidArgumentError("--size", f"an integer >= {MIN_SIZE}", size)
    return size


# ----------------------------------------------------------------------------------------------------- captions
# {obj}: "a small red circle" (size word optional), {bare}: without the article; {at}/{part}/{side}/{word}: the
# position as "on the left" / "the left part" / "left side" / "left".
SINGLE_TEMPLATES: tuple[str, ...] = (
    "{obj} {at}", "{bare} {at}", "there is {obj} {at}", "{bare}, {side}", "{obj} in {part} of the image",
    "an image of {obj} {at}", "{at} there is {obj}", "a photo of {obj} {at}", "{obj} placed {at}",
    "{obj} sitting in {part} of the picture", "{word}: {bare}", "a dark background with {obj} {at}",
    # held out (the last NUM_HELDOUT_SINGLE)
    "a picture showing {obj} {at}", "{obj} can be seen {at}", "{obj} located in {part} of the frame",
    "{at} you can see {obj}",
)
NUM_HELDOUT_SINGLE = 4
# {a}/{b}: objects with article, {a_bare}/{b_bare}: without; {rel}: "above", "to the left of", ...
RELATION_TEMPLATES: tuple[str, ...] = (
    "{a} {rel} {b}", "{a} is {rel} {b}", "there is {a} {rel} {b}", "{a_bare} {rel} {b_bare}",
    "an image of {a} {rel} {b}", "{a} placed {rel} {b}", "a photo of {a} {rel} {b}", "{a} sitting {rel} {b}",
    "two objects: {a} {rel} {b}", "{a} {rel} {b} on a dark background",
    # held out (the last NUM_HELDOUT_RELATION)
    "a picture showing {a} {rel} {b}", "{a} that is {rel} {b}", "{a} can be seen {rel} {b}",
)
NUM_HELDOUT_RELATION = 3
_POSITION_WORDS = {  # position -> ({at}, {part}, {side}, {word}) phrasings
    "left": (("on the left", "at the left"), ("the left part",), ("left side",), ("left",)),
    "right": (("on the right", "at the right"), ("the right part",), ("right side",), ("right",)),
    "top": (("at the top", "near the top"), ("the upper part", "the top part"), ("top", "top side"), ("top",)),
    "bottom": (("at the bottom", "near the bottom"), ("the lower part", "the bottom part"), ("bottom",),
               ("bottom",)),
    "center": (("in the center", "in the middle"), ("the middle", "the center"), ("center",), ("center",)),
}
_RELATION_WORDS = {
    "above": ("above", "over"), "below": ("below", "under", "beneath"),
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
}
_SIZE_WORDS = {"small": ("small", "small", "little", "tiny"), "large": ("large", "large", "big")}
_SHAPE_WORDS = {"circle": ("circle", "circle", "circle", "disk"), "square": ("square", "square", "square", "box"),
                "triangle": ("triangle",), "diamond": ("diamond",)}


def _choice(rng: np.random.Generator, options: tuple[str, ...] | list[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _object_phrase(rng: np.random.Generator, obj: dict[str, Any]) -> str:
    """``small red circle``: the size word (60% of the time), the color, the shape (or a synonym)."""
    words = [_choice(rng, _SIZE_WORDS[obj["size"]])] if rng.random() < 0.6 else []
    return " ".join([*words, obj["color"], _choice(rng, _SHAPE_WORDS[obj["shape"]])])


def _template_ids(kind: str, split: str, heldout: HeldOut) -> list[int]:
    table, reserved = ((SINGLE_TEMPLATES, heldout.single_templates) if kind == "single"
                       else (RELATION_TEMPLATES, heldout.relation_templates))
    if split == "holdout":
        return list(reserved)
    return [i for i in range(len(table)) if i not in reserved]


def caption_with_template(scene: dict[str, Any], rng: np.random.Generator, split: str = "train",
                          heldout: HeldOut | None = None) -> tuple[str, str]:
    """(caption, template id such as ``single-03``) for ``scene``, from ``split``'s templates."""
    heldout = heldout or heldout_split(0)
    _check_split(split)
    objects = scene["objects"]
    if len(objects) == 1:
        index = _choice(rng, _template_ids("single", split, heldout))
        at, part, side, word = (_choice(rng, options) for options in _POSITION_WORDS[scene["position"]])
        bare = _object_phrase(rng, objects[0])
        text = SINGLE_TEMPLATES[index].format(obj=f"a {bare}", bare=bare, at=at, part=part, side=side, word=word)
        return text, f"single-{index:02d}"
    if len(objects) != 2 or scene.get("relation") not in RELATIONS:
        raise InvalidArgumentError("scene", "one object with a position or two objects with a relation",
                                   f"{len(objects)} object(s), relation {scene.get('relation')!r}")
    index = _choice(rng, _template_ids("relation", split, heldout))
    first, second, relation = objects[0], objects[1], scene["relation"]
    if rng.random() < 0.5:  # the same scene described the other way round
        first, second, relation = second, first, INVERSE[relation]
    a_bare, b_bare = _object_phrase(rng, first), _object_phrase(rng, second)
    text = RELATION_TEMPLATES[index].format(a=f"a {a_bare}", b=f"a {b_bare}", a_bare=a_bare, b_bare=b_bare,
                                            rel=_choice(rng, _RELATION_WORDS[relation]))
    return text, f"relation-{index:02d}"


def caption(scene: dict[str, Any], rng: np.random.Generator, split: str = "train",
            heldout: HeldOut | None = None) -> str:
    """A caption for ``scene`` drawn from ``split``'s templates (see :func:`caption_with_template`)."""
    return caption_with_template(scene, rng, split, heldout)[0]


# ------------------------------------------------------------------------------------------------ prompt parsing
_COLOR_SYNONYMS = {**{c: c for c in COLORS}, "violet": "purple"}
_SHAPE_SYNONYMS = {**{s: s for s in SHAPES}, "disk": "circle", "disc": "circle", "box": "square",
                   "rhombus": "diamond"}
_SIZE_SYNONYMS = {w: size for size, words in _SIZE_WORDS.items() for w in words}
_OBJECT_RE = re.compile(
    rf"\b(?:({'|'.join(_SIZE_SYNONYMS)})\s+)?({'|'.join(_COLOR_SYNONYMS)})\s+({'|'.join(_SHAPE_SYNONYMS)})(?:e?s)?\b"
)
_POSITION_RE = {"left": r"\bleft\b", "right": r"\bright\b", "top": r"\b(?:top|upper)\b",
                "bottom": r"\b(?:bottom|lower)\b", "center": r"\b(?:center|centre|middle)\b"}
_RELATION_RE = {"above": r"\b(?:above|over)\b", "below": r"\b(?:below|under|beneath)\b",
                "left of": r"\bleft\b", "right of": r"\bright\b"}


def parse_prompt_spec(prompt: str) -> dict[str, Any]:
    """What a prompt asks for: ``{"objects": [{"color", "shape", "size" or None}], "position", "relation"}``.

    ``relation`` (two objects) reads ``objects[0] <relation> objects[1]`` from the words between the two object
    mentions; ``position`` (one object) from the words outside it. Either is ``None`` when not stated.

    Raises:
        InvalidArgumentError: the prompt names no known (color, shape) object.
    """
    text = prompt.lower()
    matches = list(_OBJECT_RE.finditer(text))
    if not matches:
        raise InvalidArgumentError("prompt", "a prompt naming a color and a shape (e.g. 'a red circle'; colors "
                                   f"{list(COLORS)}, shapes {list(SHAPES)})", prompt)
    objects = [{"color": _COLOR_SYNONYMS[m.group(2)], "shape": _SHAPE_SYNONYMS[m.group(3)],
                "size": _SIZE_SYNONYMS.get(m.group(1) or "")} for m in matches]
    spec: dict[str, Any] = {"objects": objects, "position": None, "relation": None}
    if len(matches) == 1:
        rest = text[:matches[0].start()] + " " + text[matches[0].end():]
        found = [p for p, pattern in _POSITION_RE.items() if re.search(pattern, rest)]
        spec["position"] = found[0] if len(found) == 1 else None
    elif len(matches) == 2:
        between = text[matches[0].end():matches[1].start()]
        found = [r for r, pattern in _RELATION_RE.items() if re.search(pattern, between)]
        spec["relation"] = found[0] if len(found) == 1 else None
    return spec


def parse_prompt(prompt: str) -> set[tuple[str, str]]:
    """The set of (color, shape) objects a prompt asks for (every generated caption parses; synonyms allowed).

    Raises:
        InvalidArgumentError: the prompt names no known object.
    """
    return {(obj["color"], obj["shape"]) for obj in parse_prompt_spec(prompt)["objects"]}


# ------------------------------------------------------------------------------------------------------ writing
def iter_samples(split: str = "train", seed: int = 0,
                 heldout: HeldOut | None = None) -> Iterator[tuple[dict[str, Any], str]]:
    """Endless (scene with its ``template`` id, caption) pairs of ``split``, the same for the same ``seed``."""
    _check_split(split)
    heldout = heldout or heldout_split(seed)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    while True:
        scene = sample_scene(rng, split, heldout)
        text, template = caption_with_template(scene, rng, split, heldout)
        yield {**scene, "template": template}, text


def heldout_prompts(num: int, seed: int = 0) -> list[str]:
    """The first ``num`` captions of the holdout split for ``seed`` (held-out templates and object pairs)."""
    check_positive_int("num", num)
    samples = iter_samples("holdout", seed)
    return [next(samples)[1] for _ in range(num)]


def write_shapes(out_dir: str | os.PathLike, num: int, size: int = 32, seed: int = 0, holdout: int = 500,
                 samples_per_shard: int = 1000,
                 progress: Callable[[Iterable, int, str], Iterable] | None = None) -> dict[str, int]:
    """Write ``train-*.tar`` (``num`` samples) and ``holdout-*.tar`` (``holdout``) plus ``prompts-holdout.jsonl``.

    Each sample: ``.png`` (RGB ``size`` x ``size``), ``.txt`` (caption), ``.json`` (scene + template id). The
    holdout split and the first ``holdout`` lines of ``prompts-holdout.jsonl`` (at least 200 lines, each
    ``{"prompt", "objects", "spec"}``) are the same prompts, in order.

    Returns:
        Samples written per split (the holdout split is skipped when ``holdout`` is 0).
    """
    from mmgen.data.writer import ShardWriter

    check_positive_int("--num", num)
    check_image_size(size)
    if holdout < 0:
        raise InvalidArgumentError("--holdout", "an integer >= 0", holdout)
    heldout = heldout_split(seed)
    info = {"image_size": size, "seed": seed, "colors": list(COLORS), "shapes": list(SHAPES),
            "heldout": heldout.to_json()}
    counts: dict[str, int] = {}
    for split, count in (("train", num), ("holdout", holdout)):
        if count == 0:
            continue
        samples = iter_samples(split, seed, heldout)
        rows: Iterable = (next(samples) for _ in range(count))
        if progress is not None:
            rows = progress(rows, count, split)
        with ShardWriter(out_dir, split, samples_per_shard, source=SOURCE, extra=info) as writer:
            for scene, text in rows:
                writer.write_image_sample(None, render_scene(scene, size), text=text, meta=scene)
        counts[split] = writer.count
    _write_prompt_file(Path(out_dir) / "prompts-holdout.jsonl", max(holdout, 200), seed)
    return counts


def _write_prompt_file(path: Path, num: int, seed: int) -> None:
    lines = []
    for prompt in heldout_prompts(num, seed):
        spec = parse_prompt_spec(prompt)
        objects = sorted([obj["color"], obj["shape"]] for obj in spec["objects"])
        lines.append(json.dumps({"prompt": prompt, "objects": objects, "spec": spec}))
    path.write_text("\n".join(lines) + "\n")
