"""Training checkpoints: written atomically, the last K kept, resumed exactly.

Layout of ``RUN/checkpoints/step_000500/``::

    module.safetensors      everything that trains (rank 0)
    ema.safetensors         EMA weights of the exported model, when EMA is on
    optimizer.pt            optimizer + grad-scaler state (tensors and numbers only: loaded with weights_only=True)
    rank_00000.pt           per-rank RNG states (torch, CUDA, numpy, python) and data-stream position
    trainer_state.json      step and counters; written last, so its presence marks a complete checkpoint

Every rank writes into ``.tmp-step_000500/``; after a barrier rank 0 renames the folder into place (one atomic
rename), then deletes checkpoints beyond the newest ``keep_last``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmgen.errors import CheckpointError
from mmgen.pretrained import load_state_dict, save_file_atomic, write_json_atomic

STATE_NAME = "trainer_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def rng_state() -> dict[str, Any]:
    """All RNG states of this process, as tensors and plain numbers (safe for ``weights_only`` loading)."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                         numpy["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _torch_save_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _torch_load_safe(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the checkpoint")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: unreadable ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` (folders ``step_N`` holding trainer_state.json), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / STATE_NAME).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def write_rank_files(tmp_dir: Path, rank: int, extra: dict[str, Any]) -> None:
    """Per-rank part of a checkpoint: RNG states and data position (every rank calls this)."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    _torch_save_atomic({"rng": rng_state(), "extra": json.dumps(extra)}, tmp_dir / f"rank_{rank:05d}.pt")


def write_main_files(tmp_dir: Path, *, module_state: dict[str, torch.Tensor], optimizer_state: dict[str, Any],
                     ema_state: dict[str, torch.Tensor] | None) -> None:
    """Rank 0's part: weights, EMA and optimizer state."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    save_file_atomic(module_state, tmp_dir / "module.safetensors")
    if ema_state is not None:
        save_file_atomic(ema_state, tmp_dir / "ema.safetensors")
    _torch_save_atomic(optimizer_state, tmp_dir / "optimizer.pt")


def finalize(root: Path, tmp_dir: Path, step: int, state: dict[str, Any], keep_last: int) -> Path:
    """Mark the checkpoint complete (trainer_state.json last), rename it into place, prune old ones."""
    write_json_atomic(state, tmp_dir / STATE_NAME)
    final = root / step_dir_name(step)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp_dir, final)
    try:
        fd = os.open(root, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass
    for _, old in list_checkpoints(root)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(path: Path, rank: int) -> dict[str, Any]:
    """Everything a rank needs to resume from the checkpoint folder ``path``."""
    state = json.loads((path / STATE_NAME).read_text())
    rank_file = _torch_load_safe(path / f"rank_{rank:05d}.pt")
    ema_path = path / "ema.safetensors"
    return {
        "state": state,
        "module": load_state_dict(path / "module.safetensors"),
        "ema": load_state_dict(ema_path) if ema_path.is_file() else None,
        "optimizer": _torch_load_safe(path / "optimizer.pt"),
        "rng": rank_file["rng"],
        "extra": json.loads(rank_file["extra"]),
    }
