"""The generation loop: texts x grid cells -> synthesise, judge, tokenise -> a sharded, resumable dataset.

Every row has a stable id (engine, voice, tags, text), so a resumed run plans the same jobs, skips the
ids already written (accepted or rejected) and finishes the rest; the writer makes each row durable only
after its audio, so a kill at any moment loses at most the row in progress, which the resume redoes.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stepaudio.data.grid import GridCell
from stepaudio.data.manifest import (
    INFO_FILE,
    DatasetError,
    DatasetInfo,
    DatasetRow,
    DatasetWriter,
    read_info,
    row_id,
    write_info,
)
from stepaudio.data.producer import Job, Outcome, Producer, ProducerSpec, tokenizer_fingerprint
from stepaudio.data.workers import inline_outcomes, process_outcomes


@dataclass(frozen=True)
class GenerateConfig:
    out: Path
    shard_size: int = 1000
    resume: bool = False
    workers: int = 1
    limit: int | None = None  # stop after writing this many new rows (skipped cells do not count)
    progress: bool = True
    extra_config: Mapping[str, Any] = field(default_factory=dict)  # recorded in dataset.json


@dataclass(frozen=True)
class GenerateSummary:
    planned: int  # texts x cells
    already_done: int  # rows found from earlier runs
    accepted: int
    rejected: int
    skipped: int  # rows of cells the engine cannot honour
    failed: int
    unsupported_cells: Mapping[str, str]
    rejects_by_reason: Mapping[str, int]
    failures: Mapping[str, int]
    audio_seconds: float
    wall_s: float
    dropped_torn_lines: int = 0

    @property
    def rows_per_s(self) -> float:
        return (self.accepted + self.rejected) / self.wall_s if self.wall_s > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"planned {self.planned} rows: {self.already_done} already present, {self.accepted} accepted, "
            f"{self.rejected} rejected, {self.skipped} skipped, {self.failed} failed",
            f"{self.audio_seconds:.1f} s of audio in {self.wall_s:.1f} s ({self.rows_per_s:.2f} rows/s, "
            f"{self.audio_seconds / max(self.wall_s, 1e-9):.2f} audio s per s)",
        ]
        if self.dropped_torn_lines:
            lines.append(f"repaired {self.dropped_torn_lines} torn last line(s) left by an interrupted run")
        if self.unsupported_cells:
            lines.append(f"skipped {len(self.unsupported_cells)} grid combination(s) the engine cannot honour:")
            lines += [f"  {key}: {reason}" for key, reason in sorted(self.unsupported_cells.items())]
        if self.rejects_by_reason:
            lines.append("rejects: " + ", ".join(f"{k} {v}" for k, v in sorted(self.rejects_by_reason.items())))
        if self.failures:
            lines.append("failures: " + ", ".join(f"{k} {v}" for k, v in sorted(self.failures.items())))
        return "\n".join(lines)


def reason_kind(reason: str) -> str:
    """A reason without its numbers, for counting: 'cer 0.45 > 0.3' -> 'cer'."""
    return re.split(r"[:\d]", reason, maxsplit=1)[0].strip() or reason


def plan_jobs(engine: str, texts: Sequence[str], cells: Sequence[GridCell]) -> list[Job]:
    """Every (text, cell) job, text-major so an early stop still covers the grid for the first texts."""
    jobs: dict[str, Job] = {}
    for text in texts:
        for cell in cells:
            rid = row_id(engine, cell.voice_label, cell.tags, text)
            jobs.setdefault(rid, Job(rid, text, cell))
    return list(jobs.values())


def generate_dataset(
    texts: Sequence[str],
    cells: Sequence[GridCell],
    spec: ProducerSpec,
    config: GenerateConfig,
    producer: Producer | None = None,
) -> GenerateSummary:
    """Generate (or continue) the dataset at `config.out`. `producer` overrides building one from `spec`."""
    if not texts or not cells:
        raise DatasetError("nothing to generate: no texts or no grid cells")
    if config.workers < 1:
        raise DatasetError(f"workers must be at least 1, got {config.workers}")
    start = time.perf_counter()
    shard_size = _open_dataset(spec, cells, config)
    writer = DatasetWriter(config.out, shard_size)
    jobs = plan_jobs(spec.engine, texts, cells)
    todo = [job for job in jobs if job.id not in writer]
    if config.limit is not None and config.limit <= 0:
        todo = []
    unsupported: dict[str, str] = {}
    if config.workers == 1 or len(todo) <= 1:
        local = producer or spec.build()
        local.check_voices(list(cells))
        outcomes: Iterator[Outcome] = inline_outcomes(local, todo, unsupported)
    else:
        outcomes = process_outcomes(spec, list(cells), todo, min(config.workers, len(todo)), unsupported)
    tally = _Tally()
    with _progress(len(todo), config.progress) as bar:
        for outcome in outcomes:
            tally.record(writer, outcome, spec.engine)
            bar.update(1)
            bar.set_postfix(ok=tally.accepted, rejected=tally.rejected, skipped=tally.skipped, refresh=False)
            if config.limit is not None and tally.accepted + tally.rejected >= config.limit:
                break
    return GenerateSummary(
        planned=len(jobs), already_done=sum(1 for job in jobs if job.id in writer.state.ids),
        accepted=tally.accepted, rejected=tally.rejected, skipped=tally.skipped, failed=tally.failed,
        unsupported_cells=dict(unsupported), rejects_by_reason=dict(tally.reasons), failures=dict(tally.failures),
        audio_seconds=round(tally.audio_seconds, 3), wall_s=round(time.perf_counter() - start, 3),
        dropped_torn_lines=writer.state.dropped_torn_lines,
    )


class _Tally:
    """Counts of one run, and the single place outcomes become files."""

    def __init__(self) -> None:
        self.accepted = self.rejected = self.skipped = self.failed = 0
        self.audio_seconds = 0.0
        self.reasons: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def record(self, writer: DatasetWriter, outcome: Outcome, engine: str) -> None:
        job = outcome.job
        if outcome.unsupported is not None:
            self.skipped += 1
            return
        if outcome.error is not None or outcome.samples is None:
            self.failed += 1
            self.failures[reason_kind(outcome.error or "no audio")] += 1
            return
        audio = writer.write_audio(job.id, outcome.samples, outcome.sample_rate)
        duration = len(outcome.samples) / outcome.sample_rate
        row = DatasetRow(
            id=job.id, text=job.text, tags=job.cell.tags, voice=job.cell.voice_label, audio=audio,
            sample_rate=outcome.sample_rate, duration_s=round(duration, 4), audio_tokens=outcome.tokens,
            engine=engine, asr_text=outcome.quality.asr_text, cer=outcome.quality.cer,
        )
        if outcome.quality.accepted:
            writer.append(row)
            self.accepted += 1
            self.audio_seconds += duration
        else:
            reason = outcome.quality.reason or "rejected"
            writer.reject(row, reason)
            self.rejected += 1
            self.reasons[reason_kind(reason)] += 1


def _open_dataset(spec: ProducerSpec, cells: Sequence[GridCell], config: GenerateConfig) -> int:
    """Create dataset.json, or check that a resumed dataset was made the same way; returns the shard size."""
    out = config.out
    fingerprint = tokenizer_fingerprint(spec.tokenizer_dir)
    if (out / INFO_FILE).is_file():
        if not config.resume:
            raise DatasetError(f"{out} already holds a dataset; pass --resume to continue it or choose a new --out")
        info = read_info(out)
        if info.engine != spec.engine:
            raise DatasetError(f"{out} was generated with engine {info.engine!r}, not {spec.engine!r}")
        if dict(info.tokenizer.sha256) != dict(fingerprint.sha256):
            raise DatasetError(f"{out} was tokenised with a different tokenizer ({info.tokenizer.name}); "
                               "its audio tokens would not match")
        stored = info.config.get("shard_size")
        return int(stored) if isinstance(stored, int) and stored > 0 else config.shard_size
    if out.exists() and any(out.iterdir()):
        raise DatasetError(f"{out} exists, is not empty and is not a stepaudio dataset")
    record = {
        "shard_size": config.shard_size,
        "engine_options": _jsonable(dict(spec.engine_options)),
        "quality": asdict(spec.quality),
        "asr_engine": spec.asr_engine,
        "cells": [cell.key for cell in cells],
        **_jsonable(dict(config.extra_config)),
    }
    write_info(out, DatasetInfo(spec.engine, fingerprint, record))
    return config.shard_size


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(value, default=str))
    return result


def _progress(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, unit="row", desc="generate", file=sys.stderr,
                dynamic_ncols=True)
