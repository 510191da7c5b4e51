"""Do generated shapes images show what their prompts ask for? Scored by the shapes attribute judge.

    judge = load_shapes_judge()                              # assets/shapes-judge
    result = prompt_match(judge, images, prompts)            # images [B, 3, H, W] in [-1, 1]
    result.color_shape_accuracy                              # share of images whose object set equals the prompt's

A sample *matches* when the set of (color, shape) objects the judge finds equals the set the prompt names
(:func:`mmgen.data.shapes.parse_prompt`): nothing missing, nothing extra, colors bound to the right shapes.
Positions and relations are scored separately, on the prompts that state them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmgen.data.shapes import INVERSE, OBJECTS, POSITIONS, RELATIONS, parse_prompt_spec
from mmgen.errors import InvalidArgumentError


@dataclass
class PromptMatch:
    """Per-sample and overall agreement between images and prompts.

    Attributes:
        matches: bool [B]: the judged object set equals the prompt's.
        color_shape_accuracy: mean of ``matches``.
        object_recall: ``"red circle" -> `` share of the prompts naming it whose image shows it (objects named).
        found: the judged (color, shape) set per image; ``requested``: the prompt's set.
        position_accuracy: one-object prompts with a position word: share whose image matches and shows the
            object there (NaN when no prompt states one); ``relation_accuracy`` likewise for two-object relations.
    """

    matches: torch.Tensor
    color_shape_accuracy: float
    object_recall: dict[str, float]
    found: list[set[tuple[str, str]]] = field(repr=False)
    requested: list[set[tuple[str, str]]] = field(repr=False)
    position_accuracy: float = math.nan
    relation_accuracy: float = math.nan


def load_shapes_judge(path: str | Path | None = None, device: str | torch.device = "cpu"):
    """The shipped judge (``assets/shapes-judge``) or the judge saved at ``path``."""
    from mmgen.assets import SHAPES_JUDGE, asset_path
    from mmgen.models.attribute_judge import AttributeJudge

    return AttributeJudge.from_pretrained(path or asset_path(SHAPES_JUDGE), device=device)


def _canonical_relation(spec: dict) -> int | None:
    """The prompt's relation as the judge states it (the lower-``OBJECTS``-index object first), or None."""
    if spec["relation"] is None or len(spec["objects"]) != 2:
        return None
    first, second = ((o["color"], o["shape"]) for o in spec["objects"])
    if first == second:
        return None
    relation = spec["relation"] if OBJECTS.index(first) < OBJECTS.index(second) else INVERSE[spec["relation"]]
    return list(RELATIONS).index(relation)


@torch.no_grad()
def _judge_all(judge: torch.nn.Module, images: torch.Tensor, threshold: float, batch_size: int):
    param = next(judge.parameters())
    present, positions, relations = [], [], []
    for chunk in images.split(batch_size):
        chunk = judge.resize(chunk.to(param.device)).to(param.dtype)
        out = judge(chunk)
        present.append(torch.sigmoid(out.object_logits.float()).cpu() > threshold)
        positions.append(out.position_logits.argmax(-1).cpu())
        relations.append(out.relation_logits.argmax(-1).cpu())
    return torch.cat(present), torch.cat(positions), torch.cat(relations)


def _share(hits: list[bool]) -> float:
    return sum(hits) / len(hits) if hits else math.nan


def prompt_match(judge: torch.nn.Module, images: torch.Tensor, prompts: list[str], *, threshold: float = 0.5,
                 batch_size: int = 256) -> PromptMatch:
    """Judge images [B, 3, H, W] in [-1, 1] (resized to the judge's size if needed) against their ``prompts``.

    Raises:
        InvalidArgumentError: shapes or counts disagree, or a prompt names no known object.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise InvalidArgumentError("images", "a tensor [B, 3, H, W] in [-1, 1]", tuple(images.shape))
    if len(prompts) != len(images):
        raise InvalidArgumentError("prompts", f"one prompt per image ({len(images)})", len(prompts))
    specs = [parse_prompt_spec(prompt) for prompt in prompts]
    judge = judge.eval()
    present, positions, relations = _judge_all(judge, images, threshold, batch_size)
    found = [{OBJECTS[i] for i in row.nonzero().flatten().tolist()} for row in present]
    requested = [{(o["color"], o["shape"]) for o in spec["objects"]} for spec in specs]
    matches = torch.tensor([f == r for f, r in zip(found, requested)], dtype=torch.bool)
    recall: dict[str, list[bool]] = {}
    for want, got in zip(requested, found):
        for obj in want:
            recall.setdefault(" ".join(obj), []).append(obj in got)
    position_hits = [bool(ok) and int(pos) == list(POSITIONS).index(spec["position"])
                     for spec, ok, pos in zip(specs, matches, positions)
                     if len(spec["objects"]) == 1 and spec["position"] is not None]
    relation_hits = [bool(ok) and int(rel) == _canonical_relation(spec)
                     for spec, ok, rel in zip(specs, matches, relations) if _canonical_relation(spec) is not None]
    return PromptMatch(matches=matches, color_shape_accuracy=_share(matches.tolist()) if len(matches) else 0.0,
                       object_recall={name: _share(hits) for name, hits in sorted(recall.items())},
                       found=found, requested=requested, position_accuracy=_share(position_hits),
                       relation_accuracy=_share(relation_hits))
