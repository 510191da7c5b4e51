"""Hugging Face CLIP text towers (``CLIPTextModel`` / ``CLIPTextModelWithProjection`` folders) as a TextEncoder.

Spec: ``hf-clip:DIR[?option=value&...]``. DIR holds the transformers model (``config.json`` + weights); the
tokenizer is read from ``DIR/tokenizer``, ``DIR/../tokenizer`` (diffusers pipeline layout) or DIR itself.
Options come from ``DIR/mmgen_text_encoder.json`` when present, then from the spec's ``?...`` part:

    hidden_layer   which token states: ``last`` (final layer, after the final LayerNorm; default) or an index
                   into ``hidden_states`` (``-2`` = penultimate layer, before any final norm: aMUSEd, SDXL)
    padding        ``longest`` (default) or ``max_length`` (always ``max_length`` tokens: aMUSEd)
    mask_padding   ``true`` (default): padding is masked out; ``false``: the mask is all True, so models attend to
                   padding tokens too (aMUSEd was trained that way)
    max_length     token limit (default: the tokenizer's ``model_max_length``, at most the position table)

Pooled embedding: ``text_embeds`` (projection models) or ``pooler_output`` (the EOS token's final state).
:meth:`HFCLIPTextEncoder.save_pretrained` writes model, tokenizer and options into one folder, so
``hf-clip:FOLDER`` reloads it exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from mmgen.conditioning.base import TextEncoder, TextEncoding, resolve_path, warn_truncated
from mmgen.errors import CheckpointError, InvalidArgumentError

OPTIONS_FILE = "mmgen_text_encoder.json"
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer_config.json")


@dataclass
class HFCLIPOptions:
    """How prompts become states (see the module docstring)."""

    hidden_layer: str | int = "last"
    padding: str = "longest"
    mask_padding: bool = True
    max_length: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.hidden_layer, str) and self.hidden_layer != "last":
            try:
                self.hidden_layer = int(self.hidden_layer)
            except ValueError:
                raise InvalidArgumentError("hidden_layer", "'last' or an integer index", self.hidden_layer) from None
        if self.padding not in ("longest", "max_length"):
            raise InvalidArgumentError("padding", "'longest' or 'max_length'", self.padding)
        if isinstance(self.mask_padding, str):
            if self.mask_padding.lower() not in ("true", "false", "1", "0"):
                raise InvalidArgumentError("mask_padding", "true or false", self.mask_padding)
            self.mask_padding = self.mask_padding.lower() in ("true", "1")
        if self.max_length is not None:
            self.max_length = int(self.max_length)
            if self.max_length < 2:
                raise InvalidArgumentError("max_length", "an integer >= 2", self.max_length)

    @classmethod
    def parse(cls, base: dict[str, Any], query: str) -> HFCLIPOptions:
        """Options from a json dict overridden by ``a=b&c=d`` (unknown names raise)."""
        values = dict(base)
        for item in filter(None, query.split("&")):
            key, _, value = item.partition("=")
            values[key.strip()] = value.strip()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InvalidArgumentError("hf-clip option", f"one of {sorted(known)}", unknown[0])
        return cls(**values)

    def query(self) -> str:
        """The non-default options as ``a=b&c=d``."""
        default = HFCLIPOptions()
        return "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in asdict(self).items()
                        if v != getattr(default, k))


def find_tokenizer_dir(model_dir: Path) -> Path:
    """``DIR/tokenizer``, then ``DIR/../tokenizer``, then DIR: the first holding tokenizer files."""
    for candidate in (model_dir / "tokenizer", model_dir.parent / "tokenizer", model_dir):
        if any((candidate / name).is_file() for name in _TOKENIZER_FILES):
            return candidate
    raise CheckpointError(f"{model_dir}: no CLIP tokenizer found in {model_dir / 'tokenizer'}, "
                          f"{model_dir.parent / 'tokenizer'} or the folder itself")


class HFCLIPTextEncoder(TextEncoder):
    """A transformers CLIP text model + its tokenizer; ``encode(prompts) -> TextEncoding`` (see module doc)."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, options: HFCLIPOptions | None = None, *,
                 source: str | Path | None = None) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.options = options or HFCLIPOptions()
        config = model.config
        self.hidden_size = int(config.hidden_size)
        self.pooled_size = int(getattr(config, "projection_dim", None) or config.hidden_size) \
            if hasattr(model, "text_projection") else int(config.hidden_size)
        limit = int(config.max_position_embeddings)
        wanted = self.options.max_length or int(getattr(tokenizer, "model_max_length", limit) or limit)
        self.max_length = min(wanted, limit)
        self.source = None if source is None else str(source)
        self._options_saved = source is not None and HFCLIPOptions.parse(_read_options(Path(source)), "") == \
            self.options

    @property
    def spec(self) -> str:
        if self.source is None:
            raise InvalidArgumentError("text_encoder", "an encoder loaded from a folder (or saved with "
                                       "save_pretrained) to name by a spec")
        query = "" if self._options_saved else self.options.query()
        return f"hf-clip:{self.source}" + (f"?{query}" if query else "")

    @classmethod
    def from_pretrained(cls, directory: str | Path, options: HFCLIPOptions | None = None, *,
                        device: str | torch.device = "cpu") -> HFCLIPTextEncoder:
        """Load ``directory`` (a CLIP text model folder); options default to its ``mmgen_text_encoder.json``."""
        from transformers import AutoConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise CheckpointError(f"{directory}: no config.json (expected a transformers CLIP text model folder)")
        if options is None:
            options = HFCLIPOptions.parse(_read_options(directory), "")
        try:
            architectures = AutoConfig.from_pretrained(str(directory), local_files_only=True).architectures or []
            model_class = CLIPTextModelWithProjection if "CLIPTextModelWithProjection" in architectures \
                else CLIPTextModel
            model = model_class.from_pretrained(str(directory), local_files_only=True, torch_dtype=torch.float32)
            tokenizer = CLIPTokenizer.from_pretrained(str(find_tokenizer_dir(directory)), local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{directory}: not a loadable CLIP text model ({str(exc).splitlines()[0]})") from None
        return cls(model.to(device), tokenizer, options, source=directory)

    @classmethod
    def from_spec(cls, argument: str, *, base_dir: Path | None = None,
                  device: str | torch.device = "cpu") -> HFCLIPTextEncoder:
        path_text, _, query = argument.partition("?")
        if not path_text:
            raise InvalidArgumentError("text-encoder", "hf-clip:DIR (a CLIP text model folder)", f"hf-clip:{argument}")
        directory = resolve_path(path_text, base_dir)
        options = HFCLIPOptions.parse(_read_options(directory), query)
        encoder = cls.from_pretrained(directory, options, device=device)
        encoder.source = path_text  # keep the spec relative when it was
        return encoder

    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write the model (weights cast to ``dtype`` on disk; it loads as fp32), its tokenizer
        (``DIR/tokenizer``) and the options; ``hf-clip:DIR`` reloads it."""
        directory = Path(directory)
        state = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v
                 for k, v in self.model.state_dict().items()}
        self.model.save_pretrained(str(directory), state_dict=state)
        self.tokenizer.save_pretrained(str(directory / "tokenizer"))
        (directory / OPTIONS_FILE).write_text(json.dumps(asdict(self.options), indent=2) + "\n")
        self.source, self._options_saved = str(directory), True
        return directory

    def _encode(self, prompts: list[str]) -> TextEncoding:
        opts = self.options
        batch = self.tokenizer(prompts, padding=opts.padding, max_length=self.max_length, truncation=True,
                               return_tensors="pt")
        counts = [len(ids) for ids in self.tokenizer(prompts, truncation=False).input_ids]
        warn_truncated(prompts, counts, self.max_length)
        input_ids, mask = batch.input_ids.to(self.device), batch.attention_mask.to(self.device).bool()
        want_hidden = opts.hidden_layer != "last"
        out = self.model(input_ids=input_ids, output_hidden_states=want_hidden, return_dict=True)
        states: Tensor = out.hidden_states[opts.hidden_layer] if want_hidden else out.last_hidden_state
        pooled: Tensor = out.text_embeds if hasattr(out, "text_embeds") else out.pooler_output
        if not opts.mask_padding:
            mask = torch.ones_like(mask)
        return TextEncoding(states, mask, pooled)


def _read_options(directory: Path) -> dict[str, Any]:
    path = directory / OPTIONS_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object of options")
    return data


__all__ = ["HFCLIPOptions", "HFCLIPTextEncoder", "find_tokenizer_dir"]
