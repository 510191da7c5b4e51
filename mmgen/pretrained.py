"""Configs and checkpoints: ``config.json`` + ``model.safetensors`` for every model, tokenizer and encoder.

A component subclasses :class:`PretrainedModel`, names its dataclass config in ``config_class`` and a stable
``model_type`` string, and builds itself from ``config`` alone (constructor arguments *are* the config). Then::

    model.save_pretrained("out/")                 # out/config.json, out/model.safetensors
    same = MyModel.from_pretrained("out/")        # identical outputs
    any_model = mmgen.load_pretrained("out/")     # dispatch on config.json's "model_type"

Weights are only ever read from safetensors, or from ``.pt/.bin`` files through ``torch.load(weights_only=True)``;
pickled Python objects are refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn

from mmgen.errors import CheckpointError, ConfigError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_T = TypeVar("_T", bound="PretrainedModel")


# --------------------------------------------------------------------------------------------------- configs
def _coerce(value: Any, annotation: Any) -> Any:
    """Turn JSON values back into the dataclass field's type (lists → tuples, dicts → nested dataclasses)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        return value if value is None or len(options) != 1 else _coerce(value, options[0])
    if dataclasses.is_dataclass(annotation) and isinstance(value, dict):
        return config_from_dict(annotation, value)
    if origin is tuple and isinstance(value, list):
        args = typing.get_args(annotation)
        inner = args[0] if args and (len(args) == 2 and args[1] is Ellipsis) else None
        return tuple(_coerce(v, inner) if inner else v for v in value)
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(config_class: type, data: dict[str, Any], *, source: str = "config") -> Any:
    """Build ``config_class`` from a plain dict, rejecting unknown keys with a message naming them."""
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {unknown} for {config_class.__name__}; expected some of {sorted(fields)}"
        )
    hints = typing.get_type_hints(config_class)
    try:
        return config_class(**{k: _coerce(v, hints.get(k, Any)) for k, v in data.items()})
    except TypeError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-ready dict of a (possibly nested) dataclass config."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def override_config(config: Any, overrides: dict[str, Any]) -> Any:
    """A copy of ``config`` with ``key=value`` overrides applied (string values parsed as JSON when possible)."""
    merged = config_to_dict(config)
    for key, value in overrides.items():
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        merged[key] = value
    return config_from_dict(type(config), merged, source="overrides")


# ------------------------------------------------------------------------------------------- safe tensor I/O
def save_file_atomic(tensors: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (temp file + fsync + rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
    _fsync_and_rename(tmp, path)


def write_json_atomic(data: Any, path: Path) -> None:
    """Write JSON atomically (temp file + fsync + rename)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    _fsync_and_rename(tmp, path)


def _fsync_and_rename(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load weights safely: safetensors, or a torch file through ``weights_only=True``; pickles are refused."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if path.suffix in {".pkl", ".pickle"}:
        raise CheckpointError(f"{path}: pickle files are never loaded; convert the weights to safetensors")
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for unsafe or corrupt files
        raise CheckpointError(
            f"{path}: refused or unreadable torch file (only plain tensors are loaded, weights_only=True): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a dict of tensors")
    return state


def read_config_json(directory: Path) -> dict[str, Any]:
    """Read ``directory/config.json`` with errors that name the file."""
    path = Path(directory) / CONFIG_NAME
    if not Path(directory).is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (a checkpoint folder holds config.json + {WEIGHTS_NAME})")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Raise a :class:`CheckpointError` naming missing/unexpected keys and shape mismatches."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if own[k].shape != state[k].shape]
    problems = []
    if missing:
        problems.append(f"missing keys {_preview(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_preview(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_preview(shapes)}")
    if problems:
        raise CheckpointError(f"{source}: does not match {type(model).__name__}: " + "; ".join(problems))


def _preview(items: list[str], limit: int = 4) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{f', ... ({len(items)} in all)' if len(items) > limit else ''}]"


# ------------------------------------------------------------------------------------------------- the mixin
class PretrainedModel(nn.Module):
    """Base class of mmgen components that save to and load from a folder.

    Subclasses set ``config_class`` (a dataclass) and ``model_type`` (a stable string written into config.json)
    and take the config as their only required constructor argument.
    """

    config_class: ClassVar[type]
    model_type: ClassVar[str]

    def __init__(self, config: Any):
        super().__init__()
        self.config = config

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "model_type" in cls.__dict__:
            from mmgen.registry import register_model_class

            register_model_class(cls)

    def save_pretrained(self, directory: str | Path, *, dtype: torch.dtype | None = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (optionally cast floats to ``dtype``, e.g. fp16)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
                 for k, v in self.state_dict().items()}
        save_file_atomic(_dedupe_shared(state), directory / WEIGHTS_NAME, metadata={"format": "pt"})
        from mmgen import __version__

        write_json_atomic({"model_type": self.model_type, "mmgen_version": __version__,
                           **config_to_dict(self.config)}, directory / CONFIG_NAME)
        return directory

    @classmethod
    def config_from_pretrained(cls, directory: str | Path) -> Any:
        data = read_config_json(Path(directory))
        found = data.pop("model_type", None)
        data.pop("mmgen_version", None)
        if found is not None and found != cls.model_type:
            raise CheckpointError(f"{Path(directory) / CONFIG_NAME}: model_type is {found!r}, "
                                  f"but {cls.__name__} expects {cls.model_type!r}")
        return config_from_dict(cls.config_class, data, source=str(Path(directory) / CONFIG_NAME))

    @classmethod
    def from_pretrained(cls: type[_T], directory: str | Path, *, device: str | torch.device = "cpu",
                        dtype: torch.dtype | None = None) -> _T:
        """Rebuild the model from ``directory`` exactly as saved (weights in fp32 unless ``dtype`` is given)."""
        directory = Path(directory)
        model = cls(cls.config_from_pretrained(directory))
        weights = directory / WEIGHTS_NAME
        state = load_state_dict(weights)
        model._restore_shared(state)
        check_state_dict(model, state, str(weights))
        model.load_state_dict(state)
        model.to(device=device, dtype=dtype if dtype is not None else torch.float32)
        return model.eval()

    def _restore_shared(self, state: dict[str, torch.Tensor]) -> None:
        """Refill keys that were dropped as aliases of another tensor (tied weights) at save time."""
        own = self.state_dict()
        for key, tensor in own.items():
            if key not in state:
                for other, other_tensor in own.items():
                    if other in state and other_tensor.data_ptr() == tensor.data_ptr() and other != key:
                        state[key] = state[other]
                        break

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


def _dedupe_shared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses aliased tensors: keep the first name of each storage."""
    seen: dict[tuple[int, int, tuple[int, ...]], str] = {}
    out = {}
    for key, tensor in state.items():
        ident = (tensor.data_ptr(), tensor.numel(), tuple(tensor.shape))
        if tensor.numel() and ident in seen:
            continue
        seen[ident] = key
        out[key] = tensor
    return out
