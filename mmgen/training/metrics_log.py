"""Run metrics: appended to ``metrics.jsonl`` (one JSON object per logged step) and plotted to ``curves.png``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append-only JSONL log with a PNG plot of every numeric series (``eval/*`` series plotted as markers)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.plot_path = Path(run_dir) / "curves.png"

    def truncate_after(self, step: int) -> None:
        """On resume, drop records logged after the checkpoint's step (they will be logged again)."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line.strip()
                and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def plot(self) -> Path | None:
        """Draw each numeric series against step; returns the PNG path (None when nothing was logged)."""
        series: dict[str, tuple[list[float], list[float]]] = {}
        for record in self.records():
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    xs, ys = series.setdefault(key, ([], []))
                    xs.append(record["step"])
                    ys.append(value)
        if not series:
            return None
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        keys = sorted(series, key=lambda k: (k != "loss", k.startswith("eval/"), k))
        cols = min(3, len(keys))
        rows = math.ceil(len(keys) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
        for ax, key in zip(axes.flat, keys):
            xs, ys = series[key]
            ax.plot(xs, ys, marker="o" if key.startswith("eval/") or len(xs) < 3 else None, markersize=3)
            ax.set_title(key, fontsize=9)
            ax.set_xlabel("step", fontsize=8)
            ax.grid(alpha=0.3)
            if key in ("loss", "lr") and min(ys) > 0 and max(ys) / min(ys) > 20:
                ax.set_yscale("log")
        for ax in list(axes.flat)[len(keys):]:
            ax.axis("off")
        fig.tight_layout()
        fig.savefig(self.plot_path, dpi=90)
        plt.close(fig)
        return self.plot_path
