"""Text-to-image (Muse-style) generation and editing: a text encoder + a masked-token transformer + an image tokenizer.

The prompt is encoded once per call (never per step); its cross-attention keys/values are projected once and
reused by every decoding step; the conditional and unconditional (negative or empty prompt) branches of
classifier-free guidance run as one batch. Pipeline folder layout::

    PIPE/pipeline.json     {"pipeline": "text-to-image", "text_encoder": SPEC, "sampler": {...}, "micro_conds": [...]}
    PIPE/transformer/      config.json + model.safetensors  (mmgen MaskedTransformer, or the aMUSEd UVit)
    PIPE/image_tokenizer/  config.json + model.safetensors

``SPEC`` names the text encoder (see :mod:`mmgen.conditioning.base`: ``minilm``, ``hf-clip:text_encoder``, ...);
relative paths in it resolve against the pipeline folder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from mmgen.conditioning import TextEncoder, TextEncoding, load_text_encoder
from mmgen.errors import CheckpointError, InvalidArgumentError
from mmgen.pipelines.conditioning import Conditioning
from mmgen.pipelines.folders import PIPELINE_FILE, load_component, read_pipeline_index, save_component
from mmgen.pipelines.maskgit import GenerationOutput, MaskGITPipeline, SamplingOptions
from mmgen.pretrained import write_json_atomic

PIPELINE_KIND = "text-to-image"
PromptLike = str | Sequence[str] | None


def prompt_list(prompt: PromptLike, batch: int, name: str = "prompt") -> list[str]:
    """Broadcast a prompt (None = "" = unconditional) or check a list of ``batch`` prompts."""
    if prompt is None or isinstance(prompt, str):
        return [prompt or ""] * batch
    prompts = list(prompt)
    if len(prompts) == 1:
        prompts = prompts * batch
    if len(prompts) != batch:
        raise InvalidArgumentError(name, f"1 or {batch} prompts", len(prompts))
    bad = [p for p in prompts if p is not None and not isinstance(p, str)]
    if bad:
        raise InvalidArgumentError(name, "strings", type(bad[0]).__name__)
    return [p or "" for p in prompts]


class TextToImagePipeline(MaskGITPipeline):
    """``pipe("a red circle above a blue square", num_images=4, guidance_scale=4.0, generator=g)``.

    Args:
        transformer: any masked-token transformer taking ``context_kv``/``context_mask``/``pooled`` (mmgen's
            :class:`~mmgen.models.masked_transformer.MaskedTransformer` with ``context_dim``, or the aMUSEd UVit).
        image_tokenizer: encode/decode between images and token grids.
        text_encoder: a :class:`~mmgen.conditioning.TextEncoder` (frozen).
        defaults: sampling defaults (stored in pipeline.json).
        micro_conds: aMUSEd-style micro-conditioning values (e.g. ``[512, 512, 0, 0, 6]``), or None.
        autocast: ``"bf16"`` runs the transformer under bf16 autocast (fast on CPUs with bf16 matmul), or None.
        precision: ``"fp32"`` (default) or ``"bf16"``: the per-component speed policy of :meth:`set_precision`.
    """

    def __init__(self, transformer: Any, image_tokenizer: Any, text_encoder: TextEncoder,
                 defaults: SamplingOptions | None = None, *, micro_conds: Sequence[float] | None = None,
                 autocast: str | None = None, precision: str = "fp32"):
        super().__init__(transformer, image_tokenizer, defaults)
        self.text_encoder = text_encoder.eval()
        self.micro_conds = list(micro_conds) if micro_conds is not None else None
        if autocast not in (None, "bf16", "fp16"):
            raise InvalidArgumentError("autocast", "None, 'bf16' or 'fp16'", autocast)
        self.autocast = self._requested_autocast = autocast
        self.precision = "fp32"
        self.set_precision(precision)

    def set_precision(self, precision: str) -> TextToImagePipeline:
        """Per-component precision for inference speed.

        ``"bf16"``: transformer weights stored in bf16 and run under bf16 autocast (no per-call weight casts), the
        image decoder in bf16 with channels_last convolutions; the text encoder and codebook lookups stay fp32.
        On the 2-core CPU this was measured about 1.5x faster end to end than diffusers' aMUSEd pipeline under
        bf16 autocast (``benchmarks/text_to_image.py``). ``"fp32"``: everything fp32 (the reference setting).
        """
        if precision not in ("fp32", "bf16"):
            raise InvalidArgumentError("precision", "'fp32' or 'bf16'", precision)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        memory_format = torch.channels_last if precision == "bf16" else torch.contiguous_format
        self.transformer.to(dtype)
        decoder_parts = [getattr(self.image_tokenizer, name, None) for name in ("post_quant_conv", "decoder")]
        for part in filter(None, decoder_parts):
            part.to(dtype=dtype, memory_format=memory_format)
        self.autocast = "bf16" if precision == "bf16" else self._requested_autocast
        self.precision = precision
        return self

    # ---------------------------------------------------------------------------------------------- folders
    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None,
                        image_tokenizer_path: str | Path | None = None) -> Path:
        """Write ``pipeline.json`` + ``transformer/`` + ``image_tokenizer/`` (or, with ``image_tokenizer_path``,
        a reference to that existing tokenizer folder: see :mod:`mmgen.pipelines.folders`)."""
        directory = Path(directory)
        index: dict[str, Any] = {"pipeline": PIPELINE_KIND, "text_encoder": self.text_encoder.spec,
                                 "sampler": self.defaults.__dict__}
        self.transformer.save_pretrained(directory / "transformer", dtype=dtype)
        save_component(self.image_tokenizer, directory, "image_tokenizer", index, dtype=dtype,
                       shared=image_tokenizer_path)
        if self.micro_conds is not None:
            index["micro_conds"] = self.micro_conds
        if self._requested_autocast is not None:
            index["autocast"] = self._requested_autocast
        index["precision"] = self.precision
        write_json_atomic(index, directory / PIPELINE_FILE)
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device = "cpu") -> TextToImagePipeline:
        from mmgen.registry import load_pretrained

        directory = Path(directory)
        index = read_pipeline_index(directory, "transformer/ and image_tokenizer/ (+ a text_encoder spec)")
        if "text_encoder" not in index:
            raise CheckpointError(f"{directory / PIPELINE_FILE}: no 'text_encoder' spec")
        defaults = SamplingOptions.from_dict(index.get("sampler", {}))
        return cls(load_pretrained(directory / "transformer", device=device),
                   load_component(directory, index, "image_tokenizer", device),
                   load_text_encoder(index["text_encoder"], base_dir=directory, device=device), defaults,
                   micro_conds=index.get("micro_conds"), autocast=index.get("autocast"),
                   precision=index.get("precision", "fp32"))

    # ----------------------------------------------------------------------------------------------- inputs
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast is None:
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.autocast == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def encode_prompts(self, prompts: list[str]) -> TextEncoding:
        """Encode each distinct prompt once: ``B`` prompts → :class:`TextEncoding` with ``B`` rows."""
        distinct = list(dict.fromkeys(prompts))
        encoded = self.text_encoder.encode(distinct).to(self.device)
        rows = torch.tensor([distinct.index(p) for p in prompts], device=self.device)
        return TextEncoding(encoded.states[rows], encoded.mask[rows], encoded.pooled[rows])

    def _uses_pooled(self) -> bool:
        return getattr(self.transformer.config, "pooled_dim", "unspecified") is not None

    def condition(self, condition: Any, batch: int, *, negative: Any = None) -> Conditioning:
        """Prompt(s) (None or "" = unconditional) → :class:`Conditioning` with both guidance branches stacked.

        ``negative``: the negative prompt(s) for the unconditional branch (default "").
        """
        if isinstance(condition, Conditioning):
            return condition
        if isinstance(condition, (int, torch.Tensor)) and not isinstance(condition, bool):
            raise InvalidArgumentError("class", "no class id: this pipeline is text-conditioned (use --prompt)",
                                       condition)
        prompts = prompt_list(condition, batch) + prompt_list(negative, batch, "negative_prompt")
        text = self.encode_prompts(prompts)
        with torch.no_grad(), self._autocast():
            context_kv = self.transformer.project_context(text.states)
        stacked: dict[str, Any] = {"context_kv": context_kv, "context_mask": text.mask}
        if self._uses_pooled():
            stacked["pooled"] = text.pooled
        if self.micro_conds is not None:
            stacked["micro_conds"] = torch.tensor([self.micro_conds] * 2 * batch, dtype=torch.float32,
                                                  device=self.device)
        return Conditioning.from_stacked(batch, stacked)

    def _forward(self, tokens: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        with self._autocast():
            return self.transformer(tokens, **inputs).float()

    def __call__(self, prompt: PromptLike = None, *, negative_prompt: PromptLike = None,
                 num_images: int | None = None, generator: torch.Generator | None = None,
                 **options: Any) -> GenerationOutput:
        """Generate from prompts: one prompt (``num_images`` of it), or a list (one image each).

        Args:
            prompt: a string, a list of strings, or None/"" (unconditional). Over-long prompts are truncated
                with a warning.
            negative_prompt: what guidance steers away from (default: the empty prompt).
            num_images: images for a single prompt (default 1).
            options: any :class:`SamplingOptions` field (``num_steps``, ``guidance_scale``, ...).
        """
        return self.generate(prompt, negative=negative_prompt, num_images=num_images, generator=generator,
                             **options)
