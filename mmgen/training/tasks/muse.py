"""Train a text-to-image (Muse-style) transformer on captioned image shards through a frozen tokenizer and text encoder.

Shards in img2dataset layout (``.jpg``/``.png`` + ``.txt`` caption). Each caption is encoded by a frozen text encoder
(``--text-encoder`` spec, default the offline MiniLM); the transformer cross-attends to its token states and takes
the pooled embedding through adaLN; captions are dropped to the empty prompt with ``--cond-dropout`` so
classifier-free guidance has an unconditional branch. At the end ``RUN/pipeline`` is a text-to-image pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mmgen.conditioning import TextEncoder, load_text_encoder
from mmgen.conditioning.base import PromptCache
from mmgen.data import read_samples
from mmgen.errors import DataError, InvalidArgumentError, check_positive_int
from mmgen.models.masked_transformer import MaskedTransformer
from mmgen.training.tasks.maskgit import MaskGITModule, MaskGITTask, decode_image_or_tokens


class MuseModule(MaskGITModule):
    """MaskGIT's training step with text conditioning; the text encoder is frozen and kept out of the parameters."""

    def __init__(self, transformer: MaskedTransformer, image_tokenizer: nn.Module | None, text_encoder: TextEncoder,
                 *, prompt_cache: int = 20000, **kwargs: Any):
        super().__init__(transformer, image_tokenizer, **kwargs)
        self._prompts = [PromptCache(text_encoder, max_prompts=prompt_cache)]  # frozen; outside the parameters

    def captions(self, batch: dict[str, Any]) -> list[str]:
        texts = batch.get("text")
        if texts is None or any(t is None for t in texts):
            raise DataError("a text-to-image batch needs a caption (.txt) for every sample")
        if self.training and self.cond_dropout > 0:  # the unconditional branch is the empty prompt
            drop = torch.rand(len(texts)) < self.cond_dropout
            texts = ["" if d else t for t, d in zip(texts, drop.tolist())]
        return list(texts)

    def model_inputs(self, batch: dict[str, Any]) -> dict[str, Any]:
        encoded = self._prompts[0].encode(self.captions(batch))
        device = next(self.transformer.parameters()).device
        inputs: dict[str, Any] = {"context": encoded.states.to(device), "context_mask": encoded.mask.to(device)}
        if self.transformer.config.pooled_dim is not None:
            inputs["pooled"] = encoded.pooled.to(device)
        return inputs


class MuseTask(MaskGITTask):
    """Text-to-image on captioned shards; samples a captioned grid of held-out prompts while training."""

    name = "muse"

    def __init__(self, data: str, tokenizer_dir: str | None, text_encoder: str, model_name: str,
                 overrides: dict[str, Any], batch_size: int, *, judge: str | None = None, prompt_cache: int = 20000,
                 **kwargs: Any):
        self.text_encoder_spec, self.prompt_cache = text_encoder, check_positive_int("--prompt-cache", prompt_cache)
        self.text_encoder = load_text_encoder(text_encoder)
        fitted = {"context_dim": self.text_encoder.hidden_size, "pooled_dim": self.text_encoder.pooled_size}
        for key, value in fitted.items():
            if key in overrides and overrides[key] not in (value, None):
                raise InvalidArgumentError(key, f"{value} to match the text encoder {text_encoder}", overrides[key])
        overrides = {**fitted, **overrides}
        super().__init__(data, tokenizer_dir, model_name, overrides, batch_size, judge=judge, **kwargs)
        self.data = data
        self.sample_prompts = self._sample_prompts(data)

    @staticmethod
    def _sample_prompts(data: str, count: int = 8) -> list[str]:
        """Captions of the first held-out samples (else training samples) for the sample grids."""
        split = "holdout" if Path(data).is_dir() and any(Path(data).glob("holdout-*.tar")) else None
        samples = read_samples(data, limit=count, split=split or ("train" if Path(data).is_dir() else None))
        return [s.get("text") or "" for s in samples]

    def build_module(self) -> nn.Module:
        from mmgen.registry import create_model

        return MuseModule(create_model(self.model_name, **self.overrides), self.image_tokenizer, self.text_encoder,
                          schedule=self.schedule, cond_dropout=self.cond_dropout, prompt_cache=self.prompt_cache)

    def _pipeline(self, model: nn.Module) -> Any:
        from mmgen.pipelines.maskgit import SamplingOptions
        from mmgen.pipelines.text_to_image import TextToImagePipeline

        defaults = SamplingOptions(num_steps=self.sample_steps, guidance_scale=self.guidance)
        return TextToImagePipeline(model, self.image_tokenizer, self.text_encoder, defaults)

    def sample(self, model: nn.Module, step: int, out_dir: Path) -> list[Path]:
        if self.image_tokenizer is None:
            return []
        from mmgen.pipelines.images import save_prompt_grid

        path = out_dir / f"step_{step:08d}.png"
        return [save_prompt_grid(self._pipeline(model), self.sample_prompts, path, per_prompt=6, zoom=2, seed=0)]

    def evaluate(self, model: nn.Module, step: int, out_dir: Path) -> dict[str, float]:
        if self.judge is None or self.image_tokenizer is None:
            return {}
        from mmgen.eval.text_to_image import prompt_accuracy
        from mmgen.registry import load_pretrained

        if not hasattr(self, "_judge"):
            self._judge = load_pretrained(self.judge)
        result = prompt_accuracy(self._pipeline(model), self._judge, self._eval_prompts(), seed=1)
        return {"prompt_accuracy": result.color_shape_accuracy}

    def _eval_prompts(self, count: int = 64) -> list[str]:
        if not hasattr(self, "_eval_prompt_list"):
            split = "holdout" if Path(self.data).is_dir() else None
            self._eval_prompt_list = [s.get("text") or "" for s in
                                      read_samples(self.data, decode_image_or_tokens, limit=count, split=split)]
        return self._eval_prompt_list

    def config_dict(self) -> dict[str, Any]:
        return {**super().config_dict(), "text_encoder": self.text_encoder_spec}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(model="muse-shapes")
    parser.add_argument("--tokenizer", help="image tokenizer folder (needed unless the shards hold tokens.npy)")
    parser.add_argument("--text-encoder", default="minilm", metavar="SPEC",
                        help="text encoder: minilm (default, offline), minilm:DIR, hf-clip:DIR, open_clip:NAME[@W]")
    parser.add_argument("--schedule", default="cosine", help="mask schedule for training masks (cosine, ...)")
    parser.add_argument("--cond-dropout", type=float, default=0.1,
                        help="fraction of captions replaced by the empty prompt (classifier-free guidance)")
    parser.add_argument("--judge", help="attribute judge folder: report prompt accuracy of samples at eval_every")
    parser.add_argument("--sample-steps", type=int, default=12, help="decoding steps for samples during training")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale for samples during training")
    parser.add_argument("--prompt-cache", type=int, default=20000, metavar="N",
                        help="distinct captions whose text-encoder states are kept (MiniLM: ~25 KB each); set it "
                             "above the number of distinct training captions so each is encoded once")


def build_task(args: argparse.Namespace, model_overrides: dict[str, Any]) -> MuseTask:
    return MuseTask(args.data, args.tokenizer, args.text_encoder, args.model, model_overrides,
                    args.train_config.batch_size, judge=args.judge, schedule=args.schedule,
                    cond_dropout=args.cond_dropout, sample_steps=args.sample_steps, guidance=args.guidance,
                    prompt_cache=args.prompt_cache)
