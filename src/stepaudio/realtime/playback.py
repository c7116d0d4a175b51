"""What the user has heard of a response: the output audio schedule and its transcript segments.

The server knows what it sent, not what the client played. Unless the client reports progress, playback
is estimated as real time from the moment each chunk was sent, queued behind the chunks before it (a slow
generator leaves gaps). Barge-in truncates the assistant turn to the text of the played part: whole
sentences, plus the share of words of the sentence that was cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from stepaudio.text.sentences import join_sentences


@dataclass(frozen=True)
class Scheduled:
    """Output audio [start_ms, start_ms + duration_ms) that starts playing at wall time `at` (seconds)."""

    at: float
    start_ms: float
    duration_ms: float


@dataclass(frozen=True)
class TextSegment:
    start_ms: float
    end_ms: float
    text: str


@dataclass(frozen=True)
class Playback:
    sent_ms: float = 0.0
    schedule: tuple[Scheduled, ...] = ()
    segments: tuple[TextSegment, ...] = ()
    reported_ms: float | None = None
    reported_at: float = 0.0

    @property
    def transcript(self) -> str:
        return join_sentences(segment.text for segment in self.segments)

    def sent(self, duration_ms: float, text: str, now: float) -> Playback:
        """Record a chunk sent at `now`; a non-empty `text` opens a new transcript segment."""
        start = self.sent_ms
        at = now
        schedule = self.schedule
        if schedule:
            last = schedule[-1]
            at = max(now, last.at + last.duration_ms / 1000.0)
            if math.isclose(at, last.at + last.duration_ms / 1000.0):
                schedule = (*schedule[:-1], replace(last, duration_ms=last.duration_ms + duration_ms))
            else:
                schedule = (*schedule, Scheduled(at, start, duration_ms))
        else:
            schedule = (Scheduled(at, start, duration_ms),)
        end = start + duration_ms
        segments = self.segments
        if text or not segments:
            segments = (*segments, TextSegment(start, end, text))
        else:
            segments = (*segments[:-1], replace(segments[-1], end_ms=end))
        return replace(self, sent_ms=end, schedule=schedule, segments=segments)

    def reported(self, played_ms: float, now: float) -> Playback:
        return replace(self, reported_ms=min(played_ms, self.sent_ms), reported_at=now)

    def played_ms(self, now: float) -> float:
        """Milliseconds of output heard by `now`: the client's last report moved on in real time, else the
        schedule's estimate; never more than was sent."""
        if self.reported_ms is not None:
            return min(self.sent_ms, self.reported_ms + max(0.0, now - self.reported_at) * 1000.0)
        heard = 0.0
        for chunk in self.schedule:
            heard += min(chunk.duration_ms, max(0.0, (now - chunk.at) * 1000.0))
        return min(heard, self.sent_ms)

    def finished(self, now: float) -> bool:
        return self.played_ms(now) >= self.sent_ms - 1e-6

    def text_until(self, played_ms: float) -> str:
        """The transcript of the first `played_ms` of output: whole segments, then a word share of the cut one."""
        parts = []
        for segment in self.segments:
            if played_ms >= segment.end_ms - 1e-6:
                parts.append(segment.text)
                continue
            if played_ms > segment.start_ms and segment.end_ms > segment.start_ms:
                fraction = (played_ms - segment.start_ms) / (segment.end_ms - segment.start_ms)
                words = segment.text.split()
                if len(words) <= 1 and segment.text.strip():
                    chars = list(segment.text.strip())  # unspaced scripts (Chinese): cut by characters
                    parts.append("".join(chars[: math.floor(len(chars) * fraction)]))
                else:
                    parts.append(" ".join(words[: math.floor(len(words) * fraction)]))
            break
        return join_sentences(parts)
