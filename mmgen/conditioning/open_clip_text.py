"""open_clip text towers (CLIP, OpenCLIP, CoCa text encoders) built offline, without their vision towers.

Spec ``open_clip:MODEL[@WEIGHTS]``. MODEL is one of

* an open_clip config name (``open_clip.list_models()``, e.g. ``ViT-B-32``),
* a model-config ``.json`` in open_clip's format (``embed_dim``, ``vision_cfg``, ``text_cfg``; an
  ``open_clip_config.json`` with a ``model_cfg`` entry works too),
* a folder holding ``open_clip_config.json`` (+ ``open_clip_model.safetensors``, used when no WEIGHTS is given).

WEIGHTS is a local ``.safetensors`` (preferred) or ``.pt/.bin`` file read with ``weights_only=True``; full CLIP
state dicts and text-only ones are accepted (the visual tower's weights are skipped). Without weights the tower is
randomly initialised (tests, training from scratch). Nothing is downloaded.

Token states are the text transformer's per-token outputs after ``ln_final`` ``[B, L, width]``, cut to the longest
prompt of the batch (the tower still runs on the full context, so values do not change); ``pooled`` is exactly
``model.encode_text(tokens)``: the token chosen by the tower's ``pool_type`` (for CLIP's BPE, ``argmax`` = the
end-of-text token, the highest id), projected to ``embed_dim``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mmgen.conditioning.base import TextEncoder, TextEncoding, resolve_path, warn_truncated
from mmgen.errors import CheckpointError, InvalidArgumentError
from mmgen.pretrained import check_state_dict, load_state_dict

FOLDER_CONFIG = "open_clip_config.json"
FOLDER_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_NOT_TEXT = ("visual.", "text_decoder.", "logit_scale", "logit_bias")


def read_model_config(model: str, base_dir: Path | None) -> tuple[dict[str, Any], Path | None]:
    """``model`` (a config name, ``.json`` file or open_clip folder) → (model config dict, folder or None)."""
    import open_clip

    if not model:
        raise InvalidArgumentError("text-encoder", "'open_clip:NAME_OR_JSON[@WEIGHTS]' with a model name, e.g. "
                                   "'open_clip:ViT-B-32'", "open_clip:")
    path = resolve_path(model, base_dir)
    folder = path if path.is_dir() else None
    if folder is not None:
        path = folder / FOLDER_CONFIG
    elif not path.is_file():
        config = open_clip.get_model_config(model) if model in open_clip.list_models() else None
        if config is None:
            raise InvalidArgumentError("text-encoder", "an open_clip config name (open_clip.list_models()), a model "
                                       "config .json or a folder with open_clip_config.json", f"open_clip:{model}")
        return config, None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not a readable open_clip model config ({exc})") from None
    config = data.get("model_cfg", data) if isinstance(data, dict) else None
    if not isinstance(config, dict) or not isinstance(config.get("text_cfg"), dict) or "embed_dim" not in config:
        raise CheckpointError(f"{path}: expected an open_clip model config with 'embed_dim' and 'text_cfg'")
    return config, folder


def build_text_tower(config: dict[str, Any], source: str) -> nn.Module:
    """open_clip's own text tower builder (``TextTransformer``, returning pooled and per-token outputs)."""
    from open_clip.model import _build_text_tower

    text_cfg = {**config["text_cfg"], "output_tokens": True}
    if text_cfg.get("hf_model_name"):
        raise InvalidArgumentError("text-encoder", "an open_clip config with its own text transformer (Hugging Face "
                                   "text towers need the model hub; use 'hf-clip:DIR' for transformers models)",
                                   f"{source} (hf_model_name={text_cfg['hf_model_name']!r})")
    try:
        return _build_text_tower(config["embed_dim"], text_cfg, quick_gelu=bool(config.get("quick_gelu", False)))
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(f"{source}: invalid open_clip text_cfg ({exc})") from None


def text_tower_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The text tower's weights from a full CLIP / CustomTextCLIP / CoCa / text-only state dict."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("text.") for k in state):  # CustomTextCLIP, CoCa, or a saved ``model.text``
        return {k.removeprefix("text."): v for k, v in state.items() if k.startswith("text.")}
    return {k: v for k, v in state.items() if not k.startswith(_NOT_TEXT)}


def build_tokenizer(model: str, config: dict[str, Any], folder: Path | None) -> Any:
    """open_clip's tokenizer for the model: by name when registered, else from ``text_cfg`` (bundled BPE)."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    text_cfg = config["text_cfg"]
    context_length = int(text_cfg.get("context_length", 77))
    try:
        if folder is None and model in open_clip.list_models():
            return open_clip.get_tokenizer(model)
        kwargs = dict(text_cfg.get("tokenizer_kwargs") or {})
        if text_cfg.get("hf_tokenizer_name"):
            source = str(folder) if folder is not None else text_cfg["hf_tokenizer_name"]
            return HFTokenizer(source, context_length=context_length, tokenizer_mode=text_cfg.get("tokenizer_mode"),
                               **kwargs)
        return SimpleTokenizer(context_length=context_length, **kwargs)
    except (OSError, ValueError, ImportError) as exc:  # a Hugging Face tokenizer that is not on disk
        raise CheckpointError(f"open_clip:{model}: its tokenizer could not be loaded offline "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


class OpenCLIPTextEncoder(TextEncoder):
    """An open_clip text tower: ``encode(prompts)`` → states ``[B, L, width]``, pooled ``[B, embed_dim]``.

    Args:
        tower: open_clip ``TextTransformer`` built with ``output_tokens=True``.
        tokenizer: the matching open_clip tokenizer (``tokenizer(prompts) -> Long [B, context_length]``).
        spec: the spec string that reloads this encoder.
    """

    def __init__(self, tower: nn.Module, tokenizer: Any, spec: str):
        super().__init__()
        self.tower = tower.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.spec = spec
        self.max_length = int(tower.context_length)
        self.hidden_size = int(tower.width)
        projection = tower.text_projection
        self.pooled_size = (self.hidden_size if projection is None else
                            projection.out_features if isinstance(projection, nn.Linear) else projection.shape[1])
        special = getattr(tokenizer, "eot_token_id", None)
        inner_pad = getattr(getattr(tokenizer, "tokenizer", None), "pad_token_id", None)
        self._eot_id = special
        self._pad_id = inner_pad if inner_pad is not None else int(getattr(tower, "pad_id", 0))

    @classmethod
    def from_spec(cls, argument: str, *, base_dir: Path | None = None,
                  device: str | torch.device = "cpu") -> OpenCLIPTextEncoder:
        model, _, weights = argument.rpartition("@") if "@" in argument else (argument, "", "")
        config, folder = read_model_config(model, base_dir)
        tower = build_text_tower(config, f"open_clip:{model}")
        weights_path = resolve_path(weights, base_dir) if weights else None
        if weights_path is None and folder is not None:
            weights_path = next((folder / n for n in FOLDER_WEIGHTS if (folder / n).is_file()), None)
        if weights_path is not None:
            state = text_tower_state(load_state_dict(weights_path))
            check_state_dict(tower, state, f"{weights_path} (expected the weights of open_clip:{model})")
            tower.load_state_dict(state)
        return cls(tower, build_tokenizer(model, config, folder), f"open_clip:{argument}").to(device)

    def token_mask(self, tokens: Tensor) -> Tensor:
        """``tokens: [B, L]`` → bool ``[B, L]``, True up to and including the first end-of-text token."""
        if self._eot_id is None:
            return tokens != self._pad_id
        is_eot = tokens == self._eot_id
        last = torch.where(is_eot.any(1), is_eot.int().argmax(1), tokens.shape[1] - 1)
        return torch.arange(tokens.shape[1], device=tokens.device) <= last.unsqueeze(1)

    def tokenize(self, prompts: list[str]) -> Tensor:
        """``prompts`` → Long ``[B, context_length]`` as open_clip tokenizes them; over-long prompts warned."""
        long = self.tokenizer(prompts, context_length=8 * self.max_length)
        counts = self.token_mask(long).sum(1)
        if int(counts.max()) <= self.max_length:
            return long[:, : self.max_length].contiguous()
        warn_truncated(prompts, counts.tolist(), self.max_length)
        return self.tokenizer(prompts)

    def _encode(self, prompts: list[str]) -> TextEncoding:
        """``prompts`` → states ``[B, L, width]`` (L = longest prompt's tokens), mask ``[B, L]``, pooled."""
        tokens = self.tokenize(prompts).to(self.device)
        pooled, states = self.tower(tokens)
        mask = self.token_mask(tokens)
        length = int(mask.sum(1).max())
        return TextEncoding(states[:, :length], mask[:, :length], pooled)
