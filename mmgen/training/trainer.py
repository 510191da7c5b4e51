"""The one trainer every model's training task plugs into.

CPU or CUDA, single process or ``torchrun`` DDP (gloo on CPU, nccl on CUDA); bf16/fp16 autocast; gradient
accumulation and clipping; AdamW with warmup + cosine/linear/constant schedule; EMA; atomic checkpoints every N
steps keeping the last K; exact ``resume`` (weights, optimizer, schedule, EMA, RNG states, data position); non-finite
losses skip the step, are counted, and stop the run after ``max_nonfinite`` in a row; tqdm progress; metrics to
``metrics.jsonl`` and ``curves.png``.

Run folder::

    RUN/run_config.json   RUN/metrics.jsonl   RUN/curves.png   RUN/checkpoints/step_N/   RUN/model/  RUN/samples/
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mmgen.errors import CheckpointError, TrainingDiverged
from mmgen.pretrained import write_json_atomic
from mmgen.training import checkpoint as ckpt
from mmgen.training.config import TrainConfig
from mmgen.training.distributed import (
    DistInfo,
    all_reduce_mean,
    all_reduce_min,
    barrier,
    cleanup_distributed,
    setup_distributed,
)
from mmgen.training.ema import EMA
from mmgen.training.metrics_log import MetricsLog
from mmgen.training.schedule import lr_multiplier
from mmgen.training.task import LossOutput, TrainTask

log = logging.getLogger("mmgen.train")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def move_to(batch: Any, device: torch.device) -> Any:
    """Move every tensor of a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def batch_size_of(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return int(value.shape[0])
        if isinstance(value, list):
            return len(value)
    return 0


class Trainer:
    """Train ``task`` with ``config`` into ``out_dir``; ``fit()`` returns the folder of the saved model."""

    def __init__(self, task: TrainTask, config: TrainConfig, out_dir: str | Path, *, resume: bool = False):
        self.task, self.config, self.out_dir, self.resume = task, config, Path(out_dir), resume
        self.step = 0
        self.nonfinite_total = 0
        self.nonfinite_in_a_row = 0
        self.data_skipped = 0

    # ------------------------------------------------------------------------------------------------ setup
    def _setup(self) -> None:
        cfg = self.config
        self.dist: DistInfo = setup_distributed(cfg.device)
        seed = cfg.seed + self.dist.rank
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed % 2**32)
        self.ckpt_root = self.out_dir / "checkpoints"
        if self.dist.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.ckpt_root.mkdir(exist_ok=True)
        self.module = self.task.build_module().to(self.dist.device)
        self.optimizer = torch.optim.AdamW(self.task.param_groups(self.module), lr=cfg.lr, betas=cfg.betas,
                                           weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_multiplier(cfg))
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=cfg.precision == "fp16")
        self.ema = EMA(self.task.export_model(self.module), cfg.ema_decay, cfg.ema_warmup) if cfg.ema_decay else None
        self.metrics = MetricsLog(self.out_dir)

    def _latest_checkpoint(self) -> Path | None:
        found = ckpt.list_checkpoints(self.ckpt_root)
        return found[-1][1] if found else None

    def _restore(self, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
        """Load a checkpoint into the live objects; returns (rng states, per-rank extra) to apply later."""
        loaded = ckpt.load_checkpoint(path, self.dist.rank)
        state = loaded["state"]
        if state.get("world_size", 1) != self.dist.world_size:
            raise CheckpointError(f"{path}: written by {state.get('world_size')} process(es), resumed with "
                                  f"{self.dist.world_size}; exact resume needs the same number of processes")
        self.module.load_state_dict(loaded["module"])
        self.optimizer.load_state_dict(loaded["optimizer"]["optimizer"])
        self.scaler.load_state_dict(loaded["optimizer"]["scaler"])
        self.step = state["step"]
        self.scheduler.load_state_dict(loaded["optimizer"]["scheduler"])
        self.nonfinite_total = state.get("nonfinite_total", 0)
        if self.ema is not None:
            if loaded["ema"] is None:
                raise CheckpointError(f"{path}: has no ema.safetensors but ema_decay > 0")
            self.ema.load_state_dict(loaded["ema"], state.get("ema_updates", 0))
        return loaded["rng"], loaded["extra"]

    # ----------------------------------------------------------------------------------------- checkpointing
    def _save_checkpoint(self, position: dict[str, Any]) -> None:
        tmp = self.ckpt_root / f".tmp-{ckpt.step_dir_name(self.step)}"
        barrier(self.dist)
        if self.dist.is_main:
            ckpt.write_main_files(
                tmp, module_state=self.module.state_dict(),
                optimizer_state={"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                                 "scheduler": self.scheduler.state_dict()},
                ema_state=self.ema.state_dict() if self.ema else None)
        barrier(self.dist)
        ckpt.write_rank_files(tmp, self.dist.rank, {"data": position, "data_skipped": self.data_skipped})
        barrier(self.dist)
        if self.dist.is_main:
            ckpt.finalize(self.ckpt_root, tmp, self.step, {
                "step": self.step, "world_size": self.dist.world_size, "nonfinite_total": self.nonfinite_total,
                "ema_updates": self.ema.num_updates if self.ema else 0, "time": time.time()},
                self.config.keep_last)
        barrier(self.dist)

    # ------------------------------------------------------------------------------------------------ steps
    def _autocast(self) -> contextlib.AbstractContextManager:
        dtype = _AUTOCAST.get(self.config.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=dtype)

    def _micro_step(self, model: nn.Module, batch: dict[str, Any], sync: bool) -> tuple[LossOutput, int]:
        batch = move_to({k: v for k, v in batch.items() if k != "__stream__"}, self.dist.device)
        sync_ctx = contextlib.nullcontext() if sync or not isinstance(model, DistributedDataParallel) \
            else model.no_sync()
        with sync_ctx:
            with self._autocast():
                out: LossOutput = model(batch, self.step)
            loss = out.loss.float() / self.config.grad_accum
            self.scaler.scale(loss).backward()
        return out, out.num_samples or batch_size_of(batch)

    def _optimizer_step(self, finite: bool) -> bool:
        """Clip and step when every rank saw finite losses and gradients; returns whether it stepped."""
        cfg = self.config
        if finite:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad if cfg.clip_grad > 0 else float("inf"))
            grad_ok = bool(torch.isfinite(norm)) or cfg.precision == "fp16"  # the scaler handles fp16 overflow
            finite = all_reduce_min(1.0 if grad_ok else 0.0, self.dist) > 0
            self.grad_norm = float(norm)
        if finite:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update(self.task.export_model(self.module))
        self.optimizer.zero_grad(set_to_none=True)
        return finite

    def _count_nonfinite(self) -> None:
        self.nonfinite_total += 1
        self.nonfinite_in_a_row += 1
        log.warning("non-finite loss or gradient at step %d: step skipped (%d in a row, %d in all)",
                    self.step, self.nonfinite_in_a_row, self.nonfinite_total)
        if self.nonfinite_in_a_row >= self.config.max_nonfinite:
            raise TrainingDiverged(
                f"the loss was not finite for {self.nonfinite_in_a_row} steps in a row (at step {self.step}); "
                f"lower lr (now {self.config.lr}), use precision=fp32 or bf16, or raise clip_grad. "
                f"The last good checkpoint is in {self.ckpt_root}")

    # -------------------------------------------------------------------------------------------------- hooks
    def _eval_model(self) -> nn.Module:
        return self.ema.shadow if self.ema is not None else self.task.export_model(self.module)

    def _run_hooks(self, final: bool = False) -> dict[str, float]:
        cfg, results = self.config, {}
        due_eval = cfg.eval_every and (self.step % cfg.eval_every == 0 or final)
        due_sample = cfg.sample_every and (self.step % cfg.sample_every == 0 or final)
        if not self.dist.is_main or not (due_eval or due_sample):
            return results
        model = self._eval_model()
        was_training = model.training
        model.eval()
        devices = [self.dist.device.index] if self.dist.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(cfg.seed)
            if due_eval:
                results = {f"eval/{k}": float(v) for k, v in self.task.evaluate(model, self.step, self.out_dir).items()}
            if due_sample:
                (self.out_dir / "samples").mkdir(exist_ok=True)
                self.task.sample(model, self.step, self.out_dir / "samples")
        model.train(was_training)
        return results

    # ---------------------------------------------------------------------------------------------- the loop
    def _batches(self, data_state: dict[str, Any] | None) -> tuple[Iterator[dict[str, Any]], Any]:
        from mmgen.data import StreamPosition, make_loader

        stream = self.task.build_stream(rank=self.dist.rank, world_size=self.dist.world_size,
                                        seed=self.config.seed, state=data_state)
        position = StreamPosition()
        if data_state is not None:
            position.load_state_dict(data_state)
        return iter(make_loader(stream, self.config.num_workers)), position

    def fit(self) -> Path:
        """Train to ``config.steps``; returns ``RUN/model`` (EMA weights when EMA is on)."""
        self._setup()
        try:
            return self._fit()
        finally:
            cleanup_distributed(self.dist)

    def _prepare_resume(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        latest = self._latest_checkpoint() if self.resume else None
        if self.resume and latest is None and self.dist.is_main:
            log.warning("--resume: no checkpoint in %s; starting from scratch", self.ckpt_root)
        if latest is None:
            return None, None
        rng, extra = self._restore(latest)
        self.data_skipped = extra.get("data_skipped", 0)
        if self.dist.is_main:
            self.metrics.truncate_after(self.step)
            log.info("resumed from %s (step %d)", latest, self.step)
        return rng, extra["data"]

    def _fit(self) -> Path:
        cfg = self.config
        rng, data_state = self._prepare_resume()
        if self.dist.is_main:
            write_json_atomic({"train": dataclasses.asdict(cfg), "task": self.task.config_dict(),
                               "world_size": self.dist.world_size}, self.out_dir / "run_config.json")
        self.module.train()
        model = self.module
        if self.dist.enabled:
            model = DistributedDataParallel(
                self.module, device_ids=[self.dist.local_rank] if self.dist.device.type == "cuda" else None,
                find_unused_parameters=getattr(self.task, "find_unused_parameters", False))
        batches, position = self._batches(data_state)
        if rng is not None:  # after the loader started: its workers' seeds must not shift the restored state
            ckpt.set_rng_state(rng)
        self._train_loop(model, batches, position)
        return self._finish()

    def _train_loop(self, model: nn.Module, batches: Iterator[dict[str, Any]], position: Any) -> None:
        cfg = self.config
        window: dict[str, list[float]] = {}
        samples, t0 = 0, time.perf_counter()
        bar = self._progress()
        while self.step < cfg.steps:
            finite, outs = True, []
            for micro in range(cfg.grad_accum):
                batch = next(batches)
                position.update(batch)
                out, n = self._micro_step(model, batch, sync=micro == cfg.grad_accum - 1)
                finite &= bool(torch.isfinite(out.loss.detach()).all())
                samples += n
                outs.append(out)
            finite = all_reduce_min(1.0 if finite else 0.0, self.dist) > 0
            if not self._optimizer_step(finite):
                self._count_nonfinite()
                continue
            self.nonfinite_in_a_row = 0
            self.step += 1
            self._accumulate(window, outs)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                elapsed = time.perf_counter() - t0
                self._log(window, samples * self.dist.world_size / max(elapsed, 1e-9), position, bar)
                window, samples, t0 = {}, 0, time.perf_counter()
            hooks = self._run_hooks(final=self.step == cfg.steps)
            if hooks and self.dist.is_main:
                self.metrics.append({"step": self.step, **hooks})
                bar.write(f"step {self.step}: " + ", ".join(f"{k}={v:.4g}" for k, v in hooks.items()))
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps:
                self._save_checkpoint(position.state_dict())
            bar.update(1)
        bar.close()

    def _progress(self) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=self.config.steps, initial=self.step, desc=f"train {self.task.name}", unit="step",
                    disable=not (self.dist.is_main and self.config.progress), dynamic_ncols=True)

    @staticmethod
    def _accumulate(window: dict[str, list[float]], outs: list[LossOutput]) -> None:
        window.setdefault("loss", []).append(sum(float(o.loss.detach()) for o in outs) / len(outs))
        for out in outs:
            for key, value in out.metrics.items():
                window.setdefault(key, []).append(float(value.detach()) if torch.is_tensor(value) else float(value))

    def _log(self, window: dict[str, list[float]], samples_per_s: float, position: Any, bar: Any) -> None:
        means = all_reduce_mean({k: sum(v) / len(v) for k, v in window.items()}, self.dist)
        skipped = position.skipped_total
        skipped = round(all_reduce_mean({"s": float(skipped)}, self.dist)["s"] * self.dist.world_size)
        if skipped > self.data_skipped and self.dist.is_main:
            bar.write(f"data: {skipped} corrupt sample(s) skipped so far")
        self.data_skipped = skipped
        if not self.dist.is_main:
            return
        record = {"step": self.step, **means, "lr": self.optimizer.param_groups[0]["lr"],
                  "grad_norm": getattr(self, "grad_norm", math.nan), "samples_per_s": samples_per_s,
                  "nonfinite_skipped": self.nonfinite_total, "data_skipped": skipped}
        self.metrics.append(record)
        bar.set_postfix(loss=f"{means['loss']:.4f}", samples_s=f"{samples_per_s:.0f}")

    def _finish(self) -> Path:
        model_dir = self.out_dir / "model"
        if self.dist.is_main:
            export = self._eval_model()
            if hasattr(export, "save_pretrained"):
                export.save_pretrained(model_dir)
            for path in self.task.on_finish(export, self.out_dir):
                log.info("wrote %s", path)
            self.metrics.plot()
            if self.nonfinite_total:
                log.warning("%d step(s) were skipped for non-finite losses", self.nonfinite_total)
        barrier(self.dist)
        return model_dir
