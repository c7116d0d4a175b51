"""PNG plots for the reports: latency distributions and RTF / throughput versus concurrency.

matplotlib (the `eval` extra) draws with the Agg backend on a private Figure, never pyplot's global state,
so plotting works headless and from threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stepaudio.errors import MissingExtraError, StepAudioError


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError("eval", "matplotlib") from exc
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | os.PathLike[str]) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, format="png")
    return target


def latency_distributions(groups: Mapping[str, Sequence[float]], path: str | os.PathLike[str],
                          title: str = "Time to first audio", unit: str = "s") -> Path:
    """One box (with every sample drawn as a dot) per group, e.g. 'speech c=2' -> first-audio seconds."""
    labels = [name for name, values in groups.items() if len(values) > 0]
    if not labels:
        raise StepAudioError("no latency samples to plot")
    figure = _figure(max(6.0, 0.9 * len(labels) + 2), 4.5)
    ax = figure.add_subplot(1, 1, 1)
    data = [list(groups[name]) for name in labels]
    ax.boxplot(data, showfliers=False)
    ax.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right")
    for index, values in enumerate(data, 1):
        spread = [index + 0.12 * ((i % 5) - 2) / 2 for i in range(len(values))]
        ax.plot(spread, values, "o", markersize=3, alpha=0.6, color="tab:blue")
    ax.set_ylabel(f"{title.lower()} ({unit})")
    ax.set_title(title)
    ax.set_ylim(bottom=0)
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, path)


def rtf_vs_concurrency(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str],
                       title: str = "RTF and throughput versus concurrency") -> Path:
    """Rows with mode, concurrency, rtf_p50 and throughput: RTF (left) and throughput (right), a line per mode."""
    modes = sorted({str(r["mode"]) for r in rows})
    if not modes:
        raise StepAudioError("no concurrency levels to plot")
    figure = _figure(10.0, 4.2)
    rtf_ax = figure.add_subplot(1, 2, 1)
    tp_ax = figure.add_subplot(1, 2, 2)
    for mode in modes:
        mine = sorted((r for r in rows if r["mode"] == mode), key=lambda r: r["concurrency"])
        rtf = [(r["concurrency"], r["rtf_p50"]) for r in mine if r.get("rtf_p50") is not None]
        if rtf:
            rtf_ax.plot(*zip(*rtf, strict=True), "o-", label=mode)
        tp = [(r["concurrency"], r["throughput"]) for r in mine if r.get("throughput") is not None]
        if tp:
            tp_ax.plot(*zip(*tp, strict=True), "o-", label=mode)
    levels = sorted({int(r["concurrency"]) for r in rows})
    rtf_ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="real time")
    rtf_ax.set(xlabel="concurrent requests", ylabel="RTF p50 (request s / audio s)", title="RTF (lower is better)")
    tp_ax.set(xlabel="concurrent requests", ylabel="audio s per wall s", title="throughput (higher is better)")
    for ax in (rtf_ax, tp_ax):
        ax.set_xticks(levels)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend()
    figure.suptitle(title)
    return _save(figure, path)
