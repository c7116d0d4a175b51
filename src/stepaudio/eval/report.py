"""Shared pieces of every evaluation report: provenance, JSON, Markdown tables, progress bars, an index.

A number without the exact models, versions and seeds that made it cannot be checked or compared, so
every report carries `provenance(...)`: package versions, each model's files with size and sha256, the
seeds, the machine and the git commit. Per-utterance rows are kept in the JSON beside the totals.

Each task's JSON report has a `headline` list of rows (task, set, metric, value, unit, paper, note);
`python -m stepaudio.eval.report summarize DIR` turns all of them into `DIR/README.md`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from stepaudio.errors import MissingExtraError, StepAudioError

T = TypeVar("T")

# Packages whose versions change numbers; missing ones are recorded as None.
DEFAULT_PACKAGES = ("stepaudio", "numpy", "torch", "faster-whisper", "ctranslate2", "onnxruntime", "piper-tts",
                    "espeakng-loader", "xllamacpp", "resemblyzer", "webrtcvad-wheels", "librosa", "jiwer",
                    "opencc", "num2words", "cn2an", "soxr", "soundfile")
# Files above this size are listed with their size but not hashed unless asked (a 130B checkpoint).
HASH_LIMIT_BYTES = 8 << 30
REPORT_SCHEMA = 1


@dataclass(frozen=True)
class ModelFile:
    path: str
    bytes: int
    sha256: str | None  # None when over the hash limit


@dataclass(frozen=True)
class ModelRecord:
    """A model a report depends on: its role (asr, tts, speaker, ...), a name, and the files it loads."""

    role: str
    name: str
    files: tuple[ModelFile, ...] = ()
    version: str | None = None
    note: str = ""


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str = "{}"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_record(role: str, name: str, path: str | os.PathLike[str] | None, *, version: str | None = None,
                 note: str = "", hash_limit: int = HASH_LIMIT_BYTES) -> ModelRecord:
    """Hash the file at `path`, or every file under it when it is a directory (sorted by path)."""
    if path is None:
        return ModelRecord(role, name, (), version, note)
    root = Path(path)
    if not root.exists():
        raise StepAudioError(f"model file for {role} {name!r} not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    files = []
    for file in paths:
        size = file.stat().st_size
        if file.name.endswith(".verified") or file.name.startswith("."):
            continue  # the lite resolver's stamps and hidden files are not model bytes
        files.append(ModelFile(str(file), size, sha256_file(file) if size <= hash_limit else None))
    return ModelRecord(role, name, tuple(files), version, note)


def package_versions(names: Iterable[str] = DEFAULT_PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"platform": platform.platform(), "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "load_average": [round(x, 2) for x in load] if load else None}


def git_commit() -> str | None:
    """`git describe --always --dirty` of the checkout this package runs from, None outside a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"], cwd=here,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def provenance(models: Sequence[ModelRecord] = (), seeds: Mapping[str, int | None] | None = None,
               packages: Iterable[str] = DEFAULT_PACKAGES, command: Sequence[str] | None = None,
               **extra: Any) -> dict[str, Any]:
    """Everything needed to redo a run: models (hashes), package versions, seeds, machine, commit, command."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(command) if command is not None else ["stepaudio", *sys.argv[1:]],
        "git": git_commit(),
        "models": [to_jsonable(m) for m in models],
        "packages": package_versions(packages),
        "seeds": dict(seeds or {}),
        "machine": machine(),
        **{k: to_jsonable(v) for k, v in extra.items()},
    }


def to_jsonable(value: Any) -> Any:
    """Dataclasses, paths, numpy scalars and arrays, tuples and sets to plain JSON values (NaN -> None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist") and hasattr(value, "dtype"):  # numpy scalar or array
        return to_jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike[str], payload: Any) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(to_jsonable(payload), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return target


def write_reports(stem: str, payload: Any, markdown: str, *, output_dir: str | os.PathLike[str] | None,
                  json_path: str | os.PathLike[str] | None = None,
                  md_path: str | os.PathLike[str] | None = None) -> list[Path]:
    """The JSON and Markdown of one evaluation: explicit paths win, else `output_dir/stem.{json,md}`."""
    directory = Path(output_dir) if output_dir else None
    json_target = json_path or (directory / f"{stem}.json" if directory else None)
    md_target = md_path or (directory / f"{stem}.md" if directory else None)
    written = []
    if json_target:
        written.append(write_json(json_target, payload))
    if md_target:
        written.append(write_text(md_target, markdown))
    return written


def figure_path(stem: str, *, output_dir: str | os.PathLike[str] | None,
                json_path: str | os.PathLike[str] | None = None,
                md_path: str | os.PathLike[str] | None = None) -> Path | None:
    """Where an evaluation's PNG goes: beside its Markdown (which shows it), else beside its JSON, else
    `output_dir/stem.png`; None when the run writes no report at all."""
    beside = md_path or json_path
    if beside:
        return Path(beside).with_name(f"{Path(beside).stem}.png")
    return Path(output_dir) / f"{stem}.png" if output_dir else None


def figures_markdown(payload: Mapping[str, Any]) -> list[str]:
    """Markdown image lines for the report's `plots` (written beside the page, so linked by file name)."""
    lines: list[str] = []
    for plot in payload.get("plots") or ():
        lines += [f"![{Path(plot).stem}]({Path(plot).name})", ""]
    return lines


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column | tuple[str, ...]]) -> str:
    """A GitHub Markdown table; columns are `Column`s or (key, header[, fmt]); a missing or None cell is '-'."""
    cols = [c if isinstance(c, Column) else Column(*c) for c in columns]
    lines = ["| " + " | ".join(c.header for c in cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        cells = []
        for col in cols:
            value = row.get(col.key)
            text = "-" if value is None else (col.fmt.format(value) if not isinstance(value, str) else value)
            cells.append(text.replace("|", "\\|").replace("\n", " "))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def provenance_markdown(prov: Mapping[str, Any]) -> str:
    """The provenance as a short Markdown section: models with sha256, seeds, versions, machine."""
    lines = ["### Provenance", "", f"- command: `{' '.join(prov.get('command', []))}`",
             f"- git: `{prov.get('git')}`, created {prov.get('created')}"]
    seeds = prov.get("seeds") or {}
    if seeds:
        lines.append("- seeds: " + ", ".join(f"{k}={v}" for k, v in seeds.items()))
    mach = prov.get("machine") or {}
    lines.append(f"- machine: {mach.get('platform')}, Python {mach.get('python')}, {mach.get('cpus')} CPUs")
    versions = {k: v for k, v in (prov.get("packages") or {}).items() if v}
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "| role | model | file | bytes | sha256 |", "|---|---|---|---|---|"]
    for model in prov.get("models", []):
        files = model.get("files") or [{"path": "-", "bytes": None, "sha256": None}]
        for file in files:
            lines.append(f"| {model['role']} | {model['name']}{' ' + model['version'] if model.get('version') else ''}"
                         f" | {Path(file['path']).name} | {file['bytes'] if file['bytes'] is not None else '-'} | "
                         f"`{file['sha256'] or 'not hashed'}` |")
        if model.get("note"):
            lines.append(f"| | | {model['note']} | | |")
    return "\n".join(lines)


def seed_everything(seed: int) -> dict[str, int]:
    """Seed Python, numpy and (when installed) torch; returns what was seeded, for `provenance(seeds=...)`."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    seeds = {"python": seed, "numpy": seed}
    try:
        import torch
    except ImportError:
        return seeds
    torch.manual_seed(seed)
    seeds["torch"] = seed
    # Not seedable from here: CTranslate2 samples (Whisper's temperature fallback) with per-worker-thread
    # generators that `ctranslate2.set_random_seed` does not reach, and Piper draws its noise inside ONNX.
    return seeds


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    """A tqdm bar on stderr (falls back to plain iteration without tqdm)."""
    try:
        from tqdm import tqdm
    except ImportError:
        yield from items
        return
    yield from tqdm(items, desc=desc, total=total, file=sys.stderr, unit="utt", dynamic_ncols=True)


HEADLINE_COLUMNS = (Column("task", "task"), Column("set", "set"), Column("metric", "metric"),
                    Column("value", "ours"), Column("paper", "paper (benchmark)"), Column("note", "note"),
                    Column("report", "report"))


def headline_row(task: str, set_name: str, metric: str, value: float | None, unit: str = "%",
                 paper: Any = None, note: str = "") -> dict[str, Any]:
    """One row of a report's `headline`: `value` is a fraction when `unit` is '%' (shown times 100)."""
    shown = None if value is None else (f"{100 * value:.2f}%" if unit == "%" else f"{value:.3f}")
    label = paper.label if paper is not None and hasattr(paper, "label") else paper
    return {"task": task, "set": set_name, "metric": metric, "value": shown, "raw_value": value, "unit": unit,
            "paper": label, "note": note}


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Mean, min and max of repeated runs of one measurement (for numbers that vary between runs)."""
    return {"runs": len(values), "mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "values": list(values)}


def spread_note(stats: Mapping[str, Any], unit: str = "%") -> str:
    shown = (lambda v: f"{100 * v:.2f}%") if unit == "%" else (lambda v: f"{v:.3f}")
    return f"mean of {stats['runs']} runs (min {shown(stats['min'])}, max {shown(stats['max'])})"


def summarize(directory: str | os.PathLike[str], title: str = "Evaluation results") -> str:
    """Collect the `headline` rows of every JSON report in `directory` into one Markdown page."""
    folder = Path(directory)
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise StepAudioError(f"cannot read report {path}: {exc}") from exc
        for row in payload.get("headline", []) if isinstance(payload, dict) else []:
            md = path.with_suffix(".md")
            rows.append({**row, "report": f"[{md.name}]({md.name})" if md.is_file() else path.name})
    if not rows:
        raise StepAudioError(f"no reports with headline rows in {folder}")
    return "\n".join([f"# {title}", "", markdown_table(rows, HEADLINE_COLUMNS), "",
                      "Each linked report lists the exact models (sha256), package versions, seeds and the "
                      "per-utterance results. The paper column is the published Step-Audio number of the named "
                      "benchmark; it is a reference, comparable only where the set and scoring match.", ""])


def plot_error_rates(directory: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """PNG of per-utterance error rates (dots) and the corpus rate (bar) of every report with `rows`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingExtraError("eval", "matplotlib") from exc
    sets = []
    for report_path in sorted(Path(directory).glob("*.json")):
        payload = json.loads(report_path.read_text(encoding="utf-8"))
        rates = [r["error_rate"] for r in payload.get("rows", []) if isinstance(r, dict) and "error_rate" in r]
        heads = [h for h in payload.get("headline", []) if h.get("unit") == "%" and h.get("raw_value") is not None]
        if rates and heads:
            sets.append((f"{payload.get('task')}: {heads[0]['set']}\n{heads[0]['metric'].split()[0]}",
                         heads[0]["raw_value"], rates))
    if not sets:
        raise StepAudioError(f"no reports with per-utterance error rates in {directory}")
    figure = Figure(figsize=(max(6.0, 1.6 * len(sets) + 1), 4.2), dpi=100)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot(1, 1, 1)
    for index, (_, total, rates) in enumerate(sets):
        ax.bar(index, 100 * total, width=0.6, color="tab:blue", alpha=0.35)
        spread = [index + 0.25 * ((i % 7) - 3) / 3 for i in range(len(rates))]
        ax.plot(spread, [100 * min(r, 1.5) for r in rates], "o", markersize=3, color="tab:blue")
    ax.set_xticks(range(len(sets)), [name for name, _, _ in sets], fontsize=8)
    ax.set_ylabel("error rate (%)")
    ax.set_title("corpus rate (bar) and per-utterance rates (dots, capped at 150%)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(target, format="png")
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepaudio.eval.report",
                                     description="write DIR/README.md from the JSON reports in DIR")
    sub = parser.add_subparsers(dest="command", required=True)
    summary = sub.add_parser("summarize", help="index of the headline numbers of every report in DIR")
    summary.add_argument("directory")
    summary.add_argument("--title", default="Evaluation results")
    summary.add_argument("--preamble", default=None, metavar="FILE", help="Markdown placed under the title")
    summary.add_argument("--png", default=None, metavar="NAME", help="also plot per-utterance error rates to DIR/NAME")
    args = parser.parse_args(argv)
    try:
        page = summarize(args.directory, args.title)
        if args.preamble:
            head, _, rest = page.partition("\n\n")
            page = head + "\n\n" + Path(args.preamble).read_text(encoding="utf-8").strip() + "\n\n" + rest
        if args.png:
            plot_error_rates(args.directory, Path(args.directory) / args.png)
            page += f"\n![per-utterance error rates]({args.png})\n"
    except (StepAudioError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_text(Path(args.directory) / "README.md", page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
