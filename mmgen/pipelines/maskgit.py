"""Class-conditional (or unconditional) image generation and editing with a MaskGIT transformer.

A pipeline wires a :class:`~mmgen.models.masked_transformer.MaskedTransformer`, an image tokenizer and a sampler
from :mod:`mmgen.sampling`, and runs the decoding loop. Pipeline folder layout::

    PIPE/pipeline.json          {"pipeline": "maskgit", "sampler": {...defaults}}
    PIPE/transformer/           config.json + model.safetensors
    PIPE/image_tokenizer/       config.json + model.safetensors
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from mmgen.errors import InvalidArgumentError
from mmgen.pipelines.conditioning import Conditioning
from mmgen.pipelines.folders import PIPELINE_FILE, load_component, read_pipeline_index, save_component
from mmgen.pipelines.images import to_pil
from mmgen.pretrained import write_json_atomic
from mmgen.sampling import (
    MaskGITSampler,
    RandomOrderSampler,
    TokenSampler,
    apply_guidance,
    guidance_scale_at,
    run_sampler,
)

SAMPLERS = ("maskgit", "random-order")


@dataclass
class SamplingOptions:
    """How to decode: steps, sampler, temperatures, guidance (defaults stored in pipeline.json)."""

    num_steps: int = 8
    sampler: str = "maskgit"
    schedule: str = "cosine"
    temperature: float | tuple[float, float] = 1.0
    choice_temperature: float = 4.5
    guidance_scale: float = 1.0
    guidance_schedule: str = "constant"
    top_k: int | None = None
    top_p: float | None = None

    def validate(self) -> SamplingOptions:
        if not isinstance(self.num_steps, int) or self.num_steps <= 0:
            raise InvalidArgumentError("num_steps", "a positive integer", self.num_steps)
        if self.guidance_scale < 0:
            raise InvalidArgumentError("guidance_scale", "a number >= 0", self.guidance_scale)
        if self.sampler not in SAMPLERS:
            raise InvalidArgumentError("sampler", f"one of {', '.join(SAMPLERS)}", self.sampler)
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamplingOptions:
        """The ``"sampler"`` entry of a pipeline.json (JSON lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def build_sampler(self) -> TokenSampler:
        if self.sampler == "random-order":
            sampler: TokenSampler = RandomOrderSampler(temperature=self.temperature, top_k=self.top_k,
                                                       top_p=self.top_p)
        else:
            sampler = MaskGITSampler(schedule=self.schedule, temperature=self.temperature,
                                     choice_temperature=self.choice_temperature, top_k=self.top_k, top_p=self.top_p)
        sampler.set_steps(self.num_steps)
        return sampler


@dataclass
class GenerationOutput:
    """``images``: PIL images; ``tokens``: [B, h, w]; ``pixels``: [B, C, H, W] in [-1, 1]."""

    images: list[Image.Image]
    tokens: torch.Tensor
    pixels: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


class MaskGITPipeline:
    """``pipe(class_labels=[3, 3, 7], num_steps=8, guidance_scale=2.0, generator=g) -> GenerationOutput``."""

    def __init__(self, transformer: Any, image_tokenizer: Any, defaults: SamplingOptions | None = None):
        self.transformer = transformer.eval()
        self.image_tokenizer = image_tokenizer.eval()
        self.defaults = defaults or SamplingOptions()

    # ---------------------------------------------------------------------------------------------- folders
    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None,
                        image_tokenizer_path: str | Path | None = None) -> Path:
        """Write ``pipeline.json`` + ``transformer/`` + ``image_tokenizer/`` (or, with ``image_tokenizer_path``,
        a reference to that existing tokenizer folder: see :mod:`mmgen.pipelines.folders`)."""
        directory = Path(directory)
        index: dict[str, Any] = {"pipeline": "maskgit", "sampler": self.defaults.__dict__}
        self.transformer.save_pretrained(directory / "transformer", dtype=dtype)
        save_component(self.image_tokenizer, directory, "image_tokenizer", index, dtype=dtype,
                       shared=image_tokenizer_path)
        write_json_atomic(index, directory / PIPELINE_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> MaskGITPipeline:
        from mmgen.registry import load_pretrained

        directory = Path(directory)
        data = read_pipeline_index(directory, "transformer/ and image_tokenizer/")
        defaults = SamplingOptions.from_dict(data.get("sampler", {}))
        return cls(load_pretrained(directory / "transformer", device=device),
                   load_component(directory, data, "image_tokenizer", device), defaults)

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def grid(self) -> tuple[int, ...]:
        return tuple(self.transformer.config.grid)

    # ----------------------------------------------------------------------------------------------- inputs
    def options(self, **overrides: Any) -> SamplingOptions:
        values = {**self.defaults.__dict__, **{k: v for k, v in overrides.items() if v is not None}}
        return SamplingOptions(**values).validate()

    def condition(self, condition: Any, batch: int, *, negative: Any = None) -> Conditioning:
        """Class ids (one, a list, a tensor, or None = unconditional) → :class:`Conditioning` for ``batch`` samples.

        The unconditional branch for guidance uses the null class, or the ``negative`` class ids when given.
        """
        if isinstance(condition, Conditioning):
            return condition
        if isinstance(condition, str) or isinstance(negative, str):
            raise InvalidArgumentError("prompt", "no prompt: this pipeline is class-conditional (use --class)",
                                       condition if isinstance(condition, str) else negative)
        labels = self.class_tensor(condition, batch)
        if labels is None:
            return Conditioning(batch, {"class_labels": None})
        uncond = (self.class_tensor(negative, batch) if negative is not None
                  else torch.full_like(labels, self.transformer.null_class))
        return Conditioning.from_stacked(batch, {"class_labels": torch.cat([labels, uncond])})

    def class_tensor(self, class_labels: int | Sequence[int] | torch.Tensor | None, batch: int) -> torch.Tensor | None:
        """Check and broadcast class ids to ``[batch]``; None → the null class (unconditional)."""
        num_classes = self.transformer.config.num_classes
        if num_classes == 0:
            if class_labels is not None:
                raise InvalidArgumentError("class_labels", "None: this model is unconditional", class_labels)
            return None
        if class_labels is None:
            return torch.full((batch,), num_classes, dtype=torch.long, device=self.device)
        labels = torch.as_tensor(class_labels, dtype=torch.long, device=self.device).reshape(-1)
        if labels.numel() == 1:
            labels = labels.expand(batch)
        bad = labels[(labels < 0) | (labels >= num_classes)]
        if bad.numel():
            raise InvalidArgumentError("class", f"a class id in [0, {num_classes - 1}]", int(bad[0]))
        if labels.numel() != batch:
            raise InvalidArgumentError("class_labels", f"1 or {batch} labels", labels.numel())
        return labels

    # ----------------------------------------------------------------------------------------------- the loop
    def _forward(self, tokens: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """One transformer call → float logits [B, N, V] (subclasses may add autocast)."""
        return self.transformer(tokens, **inputs).float()

    def guided_logits(self, tokens: torch.Tensor, conditioning: Conditioning, scale: float) -> torch.Tensor:
        """Guided float logits [B, N, V] for ``tokens [B, *grid]`` (``mask_id`` at masked positions) under
        ``conditioning`` (from :meth:`condition`); cond and uncond run as one batch when guidance is active."""
        if conditioning.guided is None or scale == 1.0:
            return self._forward(tokens, conditioning.cond)
        cond, uncond = self._forward(torch.cat([tokens, tokens]), conditioning.guided).chunk(2)
        return apply_guidance(cond, uncond, scale)

    @torch.no_grad()
    def generate_tokens(self, tokens: torch.Tensor, condition: Any, options: SamplingOptions,
                        generator: torch.Generator | None = None) -> torch.Tensor:
        """Fill the ``mask_id`` positions of ``tokens [B, *grid]``; other positions are never changed.

        ``condition``: a :class:`Conditioning` from :meth:`condition`, or anything :meth:`condition` accepts.
        """
        shape = tokens.shape
        flat = tokens.reshape(shape[0], -1).to(self.device)
        conditioning = self.condition(condition, shape[0])

        def logits_fn(current: torch.Tensor, index: int) -> torch.Tensor:
            scale = guidance_scale_at(index, options.num_steps, options.guidance_scale, options.guidance_schedule)
            return self.guided_logits(current.reshape(shape), conditioning, scale)

        return run_sampler(options.build_sampler(), logits_fn, flat, flat == self.transformer.mask_id,
                           generator=generator).reshape(shape)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, h, w] → pixels [B, C, H, W] in [-1, 1]."""
        with torch.no_grad():
            return self.image_tokenizer.decode(tokens).float().clamp(-1, 1)

    def generate(self, condition: Any = None, *, negative: Any = None, num_images: int | None = None,
                 generator: torch.Generator | None = None, **options: Any) -> GenerationOutput:
        """Generate images from scratch (all positions start masked) for any kind of condition.

        Args:
            condition: what :meth:`condition` accepts (class ids here, prompts in text pipelines); one value or a
                sequence (one image each); None = unconditional.
            negative: the unconditional branch of guidance (a class id / a negative prompt; default: null / "").
            num_images: batch size when ``condition`` is one value or None (default: len of a sequence, else 1).
            generator: a ``torch.Generator`` for reproducible sampling.
            options: any :class:`SamplingOptions` field (``num_steps``, ``guidance_scale``, ``temperature``, ...).
        """
        opts = self.options(**options)
        if num_images is None:
            single = condition is None or isinstance(condition, (int, str)) or (
                isinstance(condition, torch.Tensor) and condition.numel() == 1)
            num_images = 1 if single else len(condition)
        if not isinstance(num_images, int) or num_images <= 0:
            raise InvalidArgumentError("num_images", "a positive integer", num_images)
        conditioning = self.condition(condition, num_images, negative=negative)
        start = torch.full((num_images, *self.grid), self.transformer.mask_id, dtype=torch.long, device=self.device)
        tokens = self.generate_tokens(start, conditioning, opts, generator)
        pixels = self.decode(tokens)
        return GenerationOutput(to_pil(pixels), tokens, pixels)

    def __call__(self, class_labels: int | Sequence[int] | torch.Tensor | None = None, *,
                 num_images: int | None = None, negative_class: int | Sequence[int] | None = None,
                 generator: torch.Generator | None = None, **options: Any) -> GenerationOutput:
        """``pipe(class_labels, num_images=, negative_class=, generator=, **options)``: see :meth:`generate`."""
        return self.generate(class_labels, negative=negative_class, num_images=num_images, generator=generator,
                             **options)
