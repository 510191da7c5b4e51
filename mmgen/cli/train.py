"""``mmgen train TASK --data SHARDS --out RUN [--config FILE] [key=value ...] [--resume]``.

One subcommand per training task (see :data:`mmgen.training.tasks.TASK_MODULES`). ``key=value`` overrides go to
the run settings (:class:`~mmgen.training.config.TrainConfig`: steps, batch_size, lr, precision, ema_decay, ...)
when the key is one of them, else to the model's config. ``--config FILE`` is a JSON object of the same overrides
(command-line ``key=value`` wins). Launch with ``torchrun --nproc_per_node N -m mmgen train ...`` for DDP.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
from pathlib import Path
from typing import Any

from mmgen.cli.args import key_value


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training shards: a folder, a glob or a brace pattern")
    parser.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, metrics, model)")
    parser.add_argument("--model", help="registered model config to start from (see 'mmgen models list')")
    parser.add_argument("--config", type=Path, help="JSON object of key=value overrides")
    parser.add_argument("--resume", action="store_true", help="continue exactly from the run's last checkpoint")
    parser.add_argument("--seed", type=int, help="random seed (same as seed=N)")
    parser.add_argument("overrides", nargs="*", type=key_value, metavar="key=value",
                        help="run settings (steps=2000 lr=3e-4 precision=bf16 ...) or model config fields")


def register(sub: Any) -> None:
    from mmgen.cli.main import OneLineArgumentParser
    from mmgen.training.tasks import TASK_MODULES

    parser = sub.add_parser("train", help="train a model on shards (CPU, GPU, or torchrun DDP)",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    tasks = parser.add_subparsers(dest="task", metavar="TASK", parser_class=OneLineArgumentParser)
    tasks.required = True
    for name, module_name in TASK_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # a task not written yet
                continue
            raise
        summary = (module.__doc__ or name).strip().splitlines()[0]
        task_parser = tasks.add_parser(name, help=summary, description=summary)
        _add_common(task_parser)
        module.add_arguments(task_parser)
        task_parser.set_defaults(func=run, task_module=module_name)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from mmgen.errors import InvalidArgumentError

    merged: dict[str, Any] = {}
    if args.config is not None:
        try:
            data = json.loads(args.config.read_text())
        except FileNotFoundError:
            raise InvalidArgumentError("--config", "an existing JSON file", str(args.config)) from None
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError("--config", "a JSON object", f"{args.config} ({exc})") from None
        if not isinstance(data, dict):
            raise InvalidArgumentError("--config", "a JSON object of overrides", str(args.config))
        merged.update(data)
    for key, value in args.overrides:
        try:
            merged[key] = json.loads(value)
        except json.JSONDecodeError:
            merged[key] = value
    if args.seed is not None:
        merged["seed"] = args.seed
    return merged


def run(args: argparse.Namespace) -> int:
    from mmgen.pretrained import config_from_dict
    from mmgen.training.config import TrainConfig, split_overrides
    from mmgen.training.trainer import Trainer

    train_overrides, model_overrides = split_overrides(_overrides(args))
    saved = args.out / "run_config.json"
    if args.resume and saved.is_file():  # resume with the settings the run started with, unless overridden
        train_overrides = {**json.loads(saved.read_text())["train"], **train_overrides}
    args.train_config = config_from_dict(TrainConfig, train_overrides, source="run settings")
    args.seed = args.train_config.seed
    task = importlib.import_module(args.task_module).build_task(args, model_overrides)
    model_dir = Trainer(task, args.train_config, args.out, resume=args.resume).fit()
    if os.environ.get("RANK", "0") == "0":
        print(f"model: {model_dir}\nmetrics: {args.out / 'metrics.jsonl'}\n"
              f"curves: {args.out / 'curves.png'}")
    return 0
