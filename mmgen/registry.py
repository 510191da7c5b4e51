"""Named configs and model classes: ``create_model("vq-mnist")``, ``list_models()``, user configs from JSON.

Two tables:

* model classes by ``model_type`` (filled automatically by :class:`mmgen.pretrained.PretrainedModel` subclasses);
* named configs: ``name -> (model_type, config dict)``; built-in ones are registered by the modules that define
  the models (listed in ``_BUILTIN_MODULES``, imported on first use), and users add their own with
  :func:`register_config` or :func:`load_configs` from a JSON file::

      {"my-vq": {"model_type": "image_tokenizer", "base": "vq-mnist", "codebook_size": 512}}

  ``base`` (optional) starts from another named config and overrides some fields. Files listed in the
  ``MMGEN_CONFIGS`` environment variable (``os.pathsep``-separated) are loaded with the built-ins.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmgen.errors import CheckpointError, InvalidArgumentError, MmgenError

if TYPE_CHECKING:
    from mmgen.pretrained import PretrainedModel

_MODEL_CLASSES: dict[str, type[PretrainedModel]] = {}
_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {}
# Modules that register built-in model classes and named configs when imported.
_BUILTIN_MODULES: list[str] = [
    "mmgen.models.digit_classifier",
    "mmgen.models.attribute_judge",
    "mmgen.models.phoneme_judge",
    "mmgen.models.masked_transformer",
    "mmgen.models.speech_tts",
    "mmgen.tokenizers.image",
    "mmgen.tokenizers.audio",
    "mmgen.models.mim",
    "mmgen.models.uvit",
]
_builtins_loaded = False
# config.json model_types written by other libraries, loaded through mmgen.interop ("module:function")
_FOREIGN_LOADERS: dict[str, str] = {"encodec": "mmgen.interop.encodec:tokenizer_from_encodec"}


def register_model_class(cls: type[PretrainedModel]) -> type[PretrainedModel]:
    """Make ``cls`` loadable by its ``model_type`` (called automatically for PretrainedModel subclasses)."""
    _MODEL_CLASSES[cls.model_type] = cls
    return cls


def register_builtin_module(module: str) -> None:
    """Add a module whose import registers more built-in models (for extensions)."""
    if module not in _BUILTIN_MODULES:
        _BUILTIN_MODULES.append(module)
        global _builtins_loaded
        _builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        for path in filter(None, os.environ.get("MMGEN_CONFIGS", "").split(os.pathsep)):
            load_configs(path)


def register_config(name: str, model_type: str, config: dict[str, Any] | None = None, *,
                    base: str | None = None, overwrite: bool = False) -> None:
    """Register a named config (``config`` holds the dataclass fields; ``base`` names a config to start from)."""
    if name in _CONFIGS and not overwrite:
        raise InvalidArgumentError("name", "a config name not registered yet", name)
    fields = dict(config or {})
    if base is not None:
        base_type, base_fields = lookup(base)
        if base_type != model_type:
            raise InvalidArgumentError("base", f"a config of model_type {model_type!r}", f"{base} ({base_type})")
        fields = {**base_fields, **fields}
    _CONFIGS[name] = (model_type, fields)


def load_configs(path: str | Path, *, overwrite: bool = True) -> list[str]:
    """Register every config of a user JSON file ``{name: {"model_type": ..., "base"?: ..., fields...}}``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidArgumentError("--config", "an existing JSON file", str(path)) from None
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError("--config", "valid JSON", f"{path} ({exc})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise InvalidArgumentError("--config", "a JSON object {name: {model_type: ..., ...}}", str(path))
    _load_builtins()
    for name, entry in data.items():
        entry = dict(entry)
        base = entry.pop("base", None)
        model_type = entry.pop("model_type", None) or (lookup(base)[0] if base else None)
        if model_type is None:
            raise InvalidArgumentError(f"{path}: {name}", "a 'model_type' or a 'base' config")
        register_config(name, model_type, entry, base=base, overwrite=overwrite)
    return list(data)


def lookup(name: str) -> tuple[str, dict[str, Any]]:
    _load_builtins()
    if name not in _CONFIGS:
        close = fnmatch.filter(sorted(_CONFIGS), f"*{name.split('-')[0]}*")[:5]
        hint = f" (close: {', '.join(close)})" if close else ""
        raise InvalidArgumentError("model name", f"one of list_models(){hint}", name)
    model_type, fields = _CONFIGS[name]
    return model_type, dict(fields)


def list_models(pattern: str = "*", model_type: str | None = None) -> list[str]:
    """Sorted names of registered configs matching a glob ``pattern`` (and ``model_type`` if given)."""
    _load_builtins()
    return sorted(n for n, (t, _) in _CONFIGS.items()
                  if fnmatch.fnmatch(n, pattern) and (model_type is None or t == model_type))


def get_config(name: str, **overrides: Any) -> Any:
    """The dataclass config registered as ``name`` with ``overrides`` applied."""
    from mmgen.pretrained import config_from_dict

    model_type, fields = lookup(name)
    cls = model_class(model_type)
    return config_from_dict(cls.config_class, {**fields, **overrides}, source=f"config {name!r}")


def model_class(model_type: str) -> type[PretrainedModel]:
    _load_builtins()
    if model_type not in _MODEL_CLASSES:
        raise CheckpointError(f"unknown model_type {model_type!r}; known: {sorted(_MODEL_CLASSES)}")
    return _MODEL_CLASSES[model_type]


def create_model(name: str, **overrides: Any) -> PretrainedModel:
    """Build a freshly initialised model from the named config (``overrides`` replace config fields)."""
    model_type, _ = lookup(name)
    return model_class(model_type)(get_config(name, **overrides))


def load_pretrained(directory: str | Path, **kwargs: Any) -> PretrainedModel:
    """Load any saved mmgen model folder, dispatching on ``config.json``'s ``model_type``."""
    from mmgen.pretrained import CONFIG_NAME, read_config_json

    data = read_config_json(Path(directory))
    model_type = data.get("model_type")
    if model_type is None:
        raise CheckpointError(f"{Path(directory) / CONFIG_NAME}: no 'model_type' key (not an mmgen checkpoint?)")
    if model_type in _FOREIGN_LOADERS and "mmgen_version" not in data:  # another library's folder (interop)
        module, function = _FOREIGN_LOADERS[model_type].split(":")
        return getattr(importlib.import_module(module), function)(directory)
    return model_class(model_type).from_pretrained(directory, **kwargs)


__all__ = ["MmgenError", "create_model", "get_config", "list_models", "load_configs", "load_pretrained",
           "model_class", "register_config", "register_model_class"]
