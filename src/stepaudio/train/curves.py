"""Loss curves: one CSV row per optimiser step (appended and flushed as it goes), a PNG at the end.

A resumed run first drops the rows logged after the checkpoint it resumes from, so the CSV always
describes the one trajectory that the checkpoints hold.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

CSV_NAME = "loss.csv"
PNG_NAME = "loss.png"


@dataclass(frozen=True)
class CurveRow:
    step: int
    epoch: int
    lr: float
    loss: float
    grad_norm: float
    target_tokens: int
    elapsed_s: float
    eval_loss: float = math.nan


COLUMNS = tuple(f.name for f in fields(CurveRow))


class CurveLog:
    """Appends rows to `loss.csv` under `directory`; `truncate_after(step)` for resumes."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / CSV_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        rows = [r for r in self.read() if r.step <= step]
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for row in rows:
                writer.writerow(_cells(row))
        tmp.replace(self.path)

    def append(self, row: CurveRow) -> None:
        new = not self.path.is_file() or self.path.stat().st_size == 0
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(COLUMNS)
            writer.writerow(_cells(row))

    def read(self) -> list[CurveRow]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            return [_parse(record) for record in reader if record.get("step")]


def _cells(row: CurveRow) -> list[str]:
    return ["" if isinstance(v, float) and math.isnan(v) else repr(v) if isinstance(v, float) else str(v)
            for v in asdict(row).values()]


def _parse(record: dict[str, str]) -> CurveRow:
    def number(name: str) -> float:
        value = record.get(name, "")
        return float(value) if value else math.nan

    return CurveRow(step=int(record["step"]), epoch=int(record["epoch"]), lr=number("lr"), loss=number("loss"),
                    grad_norm=number("grad_norm"), target_tokens=int(record["target_tokens"]),
                    elapsed_s=number("elapsed_s"), eval_loss=number("eval_loss"))


def smooth(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over `window` values (the raw per-step loss is noisy)."""
    out: list[float] = []
    total = 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def plot(rows: Sequence[CurveRow], path: str | Path) -> Path:
    """Train loss (raw and smoothed) and held-out loss against the step, written as a PNG (Agg, no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(path)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    trained = [r for r in rows if not math.isnan(r.loss)]
    steps = [r.step for r in trained]
    losses = [r.loss for r in trained]
    ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=0.8, label="train (per step)")
    ax.plot(steps, smooth(losses, max(1, len(trained) // 50)), color="tab:blue", label="train (smoothed)")
    evals = [(r.step, r.eval_loss) for r in rows if not math.isnan(r.eval_loss)]
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", color="tab:orange", label="held-out")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("cross-entropy on audio tokens (nats)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out
