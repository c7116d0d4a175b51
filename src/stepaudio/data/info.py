"""What a dataset holds: rows, hours, tags, voices and rejects by reason (`stepaudio data info`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stepaudio.data.generate import reason_kind
from stepaudio.data.manifest import iter_rejects, iter_rows, read_info, shard_paths


@dataclass(frozen=True)
class DatasetStats:
    root: Path
    engine: str
    tokenizer: str
    shards: int
    rows: int
    rejects: int
    seconds: float
    audio_tokens: int
    tags: Mapping[str, int]
    voices: Mapping[str, int]
    reject_reasons: Mapping[str, int]
    mean_cer: float | None

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0

    def format(self) -> str:
        lines = [
            f"{self.root}: engine {self.engine}, tokenizer {self.tokenizer}",
            f"  {self.rows} rows in {self.shards} shard(s), {self.hours:.4f} h ({self.seconds:.1f} s), "
            f"{self.audio_tokens} audio tokens; {self.rejects} rejected",
        ]
        if self.mean_cer is not None:
            lines.append(f"  mean round-trip error rate of accepted rows: {self.mean_cer:.3f}")
        lines.append("  voices: " + _histogram(self.voices))
        lines.append("  tags: " + (_histogram(self.tags) or "(none)"))
        if self.reject_reasons:
            lines.append("  rejects by reason: " + _histogram(self.reject_reasons))
        return "\n".join(lines)


def _histogram(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def dataset_stats(root: str | Path, check_audio: bool = True) -> DatasetStats:
    """Read the whole dataset (validating every row) and summarise it."""
    base = Path(root)
    info = read_info(base)
    tags: Counter[str] = Counter()
    voices: Counter[str] = Counter()
    rows = 0
    seconds = 0.0
    tokens = 0
    cers = []
    for row in iter_rows(base, check_audio=check_audio):
        rows += 1
        seconds += row.duration_s
        tokens += len(row.audio_tokens)
        voices[row.voice] += 1
        tags.update(row.tags or ("(no tag)",))
        if row.cer is not None:
            cers.append(row.cer)
    reasons = Counter(reason_kind(reject.reason) for reject in iter_rejects(base))
    return DatasetStats(
        root=base, engine=info.engine, tokenizer=info.tokenizer.name, shards=len(shard_paths(base)), rows=rows,
        rejects=sum(reasons.values()), seconds=round(seconds, 3), audio_tokens=tokens, tags=dict(tags),
        voices=dict(voices), reject_reasons=dict(reasons), mean_cer=sum(cers) / len(cers) if cers else None,
    )
