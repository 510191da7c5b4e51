"""The training engine: exact resume (1 process and 2-process gloo DDP), non-finite steps, logs and plots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from mmgen.errors import TrainingDiverged
from mmgen.training.config import TrainConfig
from mmgen.training.task import LossOutput
from mmgen.training.tasks.classifier import ClassifierModule, ClassifierTask
from mmgen.training.trainer import Trainer

TINY = {"channels": [8], "feature_dim": 16, "num_classes": 4, "dropout": 0.2}


def _task(shards: Path, batch_size: int = 8) -> ClassifierTask:
    return ClassifierTask(str(shards), "digit-classifier-mnist", dict(TINY), None, batch_size, max_shift=1)


def _config(**kw: Any) -> TrainConfig:
    base = dict(steps=6, batch_size=8, lr=3e-3, warmup_steps=2, ckpt_every=3, keep_last=5, log_every=2,
                ema_decay=0.9, eval_every=3, progress=False)
    return TrainConfig(**{**base, **kw})


def _weights(run: Path, step: int) -> dict[str, torch.Tensor]:
    folder = run / "checkpoints" / f"step_{step:08d}"
    return {**load_file(folder / "module.safetensors"),
            **{f"ema.{k}": v for k, v in load_file(folder / "ema.safetensors").items()}}


def _assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _interrupt_at(run: Path, step: int) -> None:
    """Make ``run`` look like it was killed right after writing its checkpoint at ``step``."""
    for folder in (run / "checkpoints").iterdir():
        if int(folder.name.split("_")[1]) > step:
            shutil.rmtree(folder)
    shutil.rmtree(run / "model")


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_continues_exactly(labelled_shards, tmp_path, num_workers):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    Trainer(_task(labelled_shards), _config(num_workers=num_workers, grad_accum=2), full).fit()
    shutil.copytree(full, resumed)
    _interrupt_at(resumed, 3)
    Trainer(_task(labelled_shards), _config(num_workers=num_workers, grad_accum=2), resumed, resume=True).fit()
    _assert_identical(_weights(full, 6), _weights(resumed, 6))
    steps = [r["step"] for r in map(json.loads, (resumed / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert steps == [2, 4, 6]  # records after the checkpoint were dropped and logged again, once


def test_run_outputs_and_learning(labelled_shards, tmp_path):
    run = tmp_path / "run"
    config = _config(steps=40, keep_last=2, eval_every=40, lr=2e-2, schedule="constant", ema_decay=0.8)
    model_dir = Trainer(_task(labelled_shards), config, run).fit()
    assert (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file()
    assert len(list((run / "checkpoints").iterdir())) == 2  # keep_last
    assert (run / "curves.png").stat().st_size > 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert losses[-1] < losses[0]
    assert {"lr", "samples_per_s", "grad_norm", "nonfinite_skipped"} <= records[0].keys()
    assert [r["eval/accuracy"] for r in records if "eval/accuracy" in r][-1] > 0.5


class _FlakyModule(ClassifierModule):
    """Returns a NaN loss on chosen steps (or always)."""

    def __init__(self, model, bad_steps):
        super().__init__(model)
        self.bad_steps, self.calls = bad_steps, 0

    def forward(self, batch: dict[str, Any], step: int) -> LossOutput:
        out = super().forward(batch, step)
        self.calls += 1
        if self.bad_steps == "all" or self.calls in self.bad_steps:
            out.loss = out.loss * float("nan")
        return out


class _FlakyTask(ClassifierTask):
    def __init__(self, shards, bad_steps):
        super().__init__(str(shards), "digit-classifier-mnist", dict(TINY), None, 8)
        self.bad_steps = bad_steps

    def build_module(self):
        return _FlakyModule(super().build_module().model, self.bad_steps)


def test_nonfinite_losses_are_skipped_and_counted(labelled_shards, tmp_path):
    run = tmp_path / "run"
    Trainer(_FlakyTask(labelled_shards, {2, 3}), _config(ema_decay=0.0, eval_every=0), run).fit()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6 and records[-1]["nonfinite_skipped"] == 2
    assert all(torch.isfinite(v).all() for v in load_file(run / "model" / "model.safetensors").values())


def test_too_many_nonfinite_in_a_row_stops_clearly(labelled_shards, tmp_path):
    with pytest.raises(TrainingDiverged, match="not finite for 3 steps in a row"):
        Trainer(_FlakyTask(labelled_shards, "all"), _config(max_nonfinite=3, ema_decay=0.0), tmp_path / "r").fit()


def test_bf16_autocast_trains(labelled_shards, tmp_path):
    Trainer(_task(labelled_shards), _config(precision="bf16", steps=3, eval_every=0), tmp_path / "r").fit()
    assert (tmp_path / "r" / "model" / "model.safetensors").is_file()


def _torchrun(shards: Path, out: Path, *extra: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(29500 + os.getpid() % 1000), "-m", "mmgen", "train", "classifier", "--data", str(shards),
           "--out", str(out), "steps=4", "batch_size=4", "ckpt_every=2", "keep_last=5", "log_every=1",
           "warmup_steps=1", "ema_decay=0.9", "progress=false", "channels=[8]", "feature_dim=16",
           "num_classes=4", "dropout=0.2", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]


def test_ddp_two_process_gloo_resume_is_exact(labelled_shards, tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    _torchrun(labelled_shards, full)
    assert json.loads((full / "run_config.json").read_text())["world_size"] == 2
    shutil.copytree(full, resumed)
    _interrupt_at(resumed, 2)
    _torchrun(labelled_shards, resumed, "--resume")
    _assert_identical(_weights(full, 4), _weights(resumed, 4))
    # both ranks saw different data: the run's samples/s counts 2 ranks x 4 samples per step
    first = json.loads((full / "metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1 and first["samples_per_s"] > 0
