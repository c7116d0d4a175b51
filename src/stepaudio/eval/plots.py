"""PNG plots for the reports: latency distributions, RTF / throughput versus concurrency, and the per-item
scores of the ASR and TTS evaluations beside their totals and the paper's numbers.

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


ERROR_RATE_CAP = 1.5  # insertions can push one item far past 100 %; bars stop here and say so
LABELLED_ITEMS = 40  # more items than this: sorted bars without names (a distribution, not a list)


def _rows(payload: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rows = [r if isinstance(r, Mapping) else vars(r) for r in payload.get("rows", ())]
    if not rows:
        raise StepAudioError("the report has no rows to plot")
    return rows


def _item_bars(ax: Any, ids: Sequence[str], values: Sequence[float | None], *, percent: bool,
               color: str) -> None:
    """One bar per item: named and in report order when few, sorted (largest first) when many."""
    pairs = [(i, v) for i, v in zip(ids, values, strict=True) if v is not None]
    labelled = len(pairs) <= LABELLED_ITEMS
    if not labelled:
        pairs.sort(key=lambda p: -p[1])
    scale, cap = (100.0, ERROR_RATE_CAP) if percent else (1.0, None)
    shown = [scale * (min(v, cap) if cap is not None else v) for _, v in pairs]
    ax.bar(range(len(pairs)), shown, width=0.8 if labelled else 1.0, color=color, alpha=0.55)
    if cap is not None and any(v > cap for _, v in pairs):
        for index, (_, value) in enumerate(pairs):
            if value > cap:
                ax.annotate(f"{100 * value:.0f}%", (index, 100 * cap), ha="center", va="bottom", fontsize=7)
    if labelled:
        ax.set_xticks(range(len(pairs)), _short_names([i for i, _ in pairs]), rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xticks([])
        ax.set_xlabel(f"{len(pairs)} items, sorted by value")


def _short_names(ids: Sequence[str], width: int = 24) -> list[str]:
    """Long item ids without the prefix they all share up to a separator (LibriVox ids repeat the book's name),
    cut to `width`."""
    shared = next((n for n, chars in enumerate(zip(*ids, strict=False)) if len(set(chars)) > 1), min(map(len, ids)))
    prefix = ids[0][:shared] if len(ids) > 1 and max(map(len, ids)) > width else ""
    cut = max(prefix.rfind(sep) for sep in "_-/. ") + 1
    names = [("…" if cut else "") + i[cut:] for i in ids]
    return [n if len(n) <= width else n[: width - 1] + "…" for n in names]


def _finish(ax: Any, ylabel: str, bottom: float = 0.0) -> None:
    """Label, grid and a legend above the bars (30 % headroom so it hides none of them)."""
    top = max(ax.get_ylim()[1], 1.0)
    ax.set_ylim(bottom, top * 1.3)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", framealpha=0.9)


def _level(ax: Any, value: float | None, label: str, *, percent: bool, paper: bool = False) -> None:
    if value is None:
        return
    style = {"color": "tab:red", "linestyle": "--"} if paper else {"color": "black", "linestyle": "-"}
    ax.axhline((100.0 if percent else 1.0) * value, linewidth=1.4, label=label, **style)


def asr_error_rates(payload: Mapping[str, Any], path: str | os.PathLike[str], title: str | None = None) -> Path:
    """The figure of an `eval asr` report: each utterance's error rate (bars), the corpus WER/CER (line) and
    the paper's number on the nearest published benchmark (dashed), one panel per metric."""
    from stepaudio.eval import paper

    rows = _rows(payload)
    summaries = [s if isinstance(s, Mapping) else vars(s) for s in payload.get("summaries", ())]
    data = payload.get("dataset", {})
    name = str(data.get("name", "asr"))
    figure = _figure(min(14.0, max(6.0, 0.22 * len(rows) + 3)), 4.4 * max(1, len(summaries)))
    for index, summary in enumerate(summaries, 1):
        mine = [r for r in rows if r.get("unit") == summary["unit"] and r.get("normalizer") == summary["normalizer"]]
        ax = figure.add_subplot(len(summaries), 1, index)
        _item_bars(ax, [str(r["id"]) for r in mine], [r["error_rate"] for r in mine], percent=True,
                   color="tab:blue")
        metric = summary["metric"]
        _level(ax, summary["rate"], f"ours: corpus {metric} {100 * summary['rate']:.2f}%", percent=True)
        ref = paper.nearest_asr_benchmark(name, metric)
        if ref is not None:
            _level(ax, ref.value / 100, f"paper: {ref.model} {ref.label} (another set)", percent=True, paper=True)
        _finish(ax, f"{metric} per utterance (%)")
    synthetic = " [synthetic speech]" if data.get("synthetic") else ""
    figure.suptitle(title or f"ASR on {name}{synthetic}: per-utterance error rate (capped at "
                    f"{100 * ERROR_RATE_CAP:.0f}%)", fontsize=11)
    return _save(figure, path)


def tts_scores(payload: Mapping[str, Any], path: str | os.PathLike[str], title: str | None = None) -> Path:
    """The figure of an `eval tts` report: per case the intelligibility error rate and the speaker similarity
    (bars), the set's rate and mean SS (lines) and the paper's SEED test numbers (dashed)."""
    from stepaudio.eval import paper

    rows = _rows(payload)
    data = payload.get("testset", {})
    metric, language = str(payload.get("metric", "CER")), str(data.get("language", "en"))
    sims = [r.get("similarity") for r in rows]
    has_ss = any(s is not None for s in sims)
    figure = _figure(min(14.0, max(6.0, 0.22 * len(rows) + 3)), 8.4 if has_ss else 4.4)
    ids = [str(r["id"]) for r in rows]
    rate_ax = figure.add_subplot(2 if has_ss else 1, 1, 1)
    _item_bars(rate_ax, ids, [r["error_rate"] for r in rows], percent=True, color="tab:blue")
    _level(rate_ax, payload.get("rate"), f"ours: {metric} {100 * float(payload.get('rate') or 0):.2f}% "
           f"({payload.get('asr_model')})", percent=True)
    rate_ref = paper.seed_tts_reference(language, metric)
    if rate_ref is not None:
        _level(rate_ax, rate_ref.value / 100, f"paper: {rate_ref.model} {rate_ref.label}", percent=True, paper=True)
    _finish(rate_ax, f"{metric} per case (%)")
    if has_ss:
        ss_ax = figure.add_subplot(2, 1, 2)
        _item_bars(ss_ax, ids, sims, percent=False, color="tab:green")
        mean = payload.get("similarity")
        _level(ss_ax, mean, f"ours: mean SS {float(mean or 0):.3f}", percent=False)
        ss_ref = paper.seed_tts_reference(language, "SS")
        if ss_ref is not None:
            _level(ss_ax, ss_ref.value, f"paper: {ss_ref.label}, WavLM-large: not comparable", percent=False,
                   paper=True)
        ss_ax.set_ylim(top=1.0)
        _finish(ss_ax, "speaker similarity per case", bottom=min(0.0, *(s for s in sims if s is not None)))
    mode = payload.get("voice_mode", "default voice (not a clone)")
    figure.suptitle(title or f"TTS on {data.get('name', 'tts')} ({language}), "
                    f"{'voice clones' if mode == 'clone' else mode}", fontsize=11)
    return _save(figure, path)
