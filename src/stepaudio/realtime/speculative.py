"""Bookkeeping of speculative responses: how often a speculation is committed and how much time it saves.

A speculation starts at the tentative end of a turn and is committed when the silence is confirmed. Its
window is the time between the two. What it saves is less than the window when generation is quick: a
response that would have produced its first audio G seconds after starting reaches the user
min(G, window) earlier than one started at the confirmed end. The Step-Audio paper reports ~40% commits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Speculation:
    """An open speculative response; `first_audio_at` is when its generator produced audio (held)."""

    response_id: str
    started_at: float
    committed_at: float | None = None
    first_audio_at: float | None = None


@dataclass(frozen=True)
class SpeculationMetrics:
    started: int = 0
    committed: int = 0
    discarded: int = 0
    window_ms_total: float = 0.0
    saved_ms_total: float = 0.0
    saved_samples: int = 0  # committed speculations whose first audio time is known

    @property
    def commit_rate(self) -> float:
        decided = self.committed + self.discarded
        return self.committed / decided if decided else 0.0

    @property
    def mean_window_ms(self) -> float:
        return self.window_ms_total / self.committed if self.committed else 0.0

    @property
    def mean_saved_ms(self) -> float:
        return self.saved_ms_total / self.saved_samples if self.saved_samples else 0.0

    def on_start(self) -> SpeculationMetrics:
        return replace(self, started=self.started + 1)

    def on_discard(self) -> SpeculationMetrics:
        return replace(self, discarded=self.discarded + 1)

    def on_commit(self, window_ms: float) -> SpeculationMetrics:
        return replace(self, committed=self.committed + 1, window_ms_total=self.window_ms_total + window_ms)

    def on_saved(self, saved_ms: float) -> SpeculationMetrics:
        return replace(self, saved_ms_total=self.saved_ms_total + saved_ms, saved_samples=self.saved_samples + 1)

    def as_dict(self) -> dict[str, float]:
        return {
            "speculative_started": self.started,
            "speculative_committed": self.committed,
            "speculative_discarded": self.discarded,
            "commit_rate": self.commit_rate,
            "mean_window_ms": self.mean_window_ms,
            "mean_latency_saved_ms": self.mean_saved_ms,
        }


def saved_ms(spec: Speculation) -> float | None:
    """min(time to first audio, window) once both the commit and the first audio are known."""
    if spec.committed_at is None or spec.first_audio_at is None:
        return None
    window = spec.committed_at - spec.started_at
    generation = spec.first_audio_at - spec.started_at
    return 1000.0 * max(0.0, min(window, generation))
