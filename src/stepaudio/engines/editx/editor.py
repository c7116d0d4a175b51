"""Speech editing as an interface (`Editor`) and iterative editing with history (`EditChain`).

An edit takes audio, what it says, and one `Edit` (type + option, or the new text for paralinguistics) and
returns new audio and what that says. Each edit is a fresh single-turn prompt (REFERENCE-EDITX.md §7): a chain
feeds the previous output, at the output rate, back in as the next input, with the previous result text as its
audio text. `EditChain` keeps every step so a caller can play any of them, undo, or start again from a clone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from stepaudio.engines.base import CancelToken
from stepaudio.errors import StepAudioError
from stepaudio.text.editx_prompts import Edit


@dataclass(frozen=True)
class EditResult:
    """Audio after one step, what it says, and the step that made it (`None` for the chain's source)."""

    samples: np.ndarray
    sample_rate: int
    text: str
    edit: Edit | None = None
    label: str = "source"

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate


@runtime_checkable
class Editor(Protocol):
    """Edits speech one instruction at a time (EditX's synthesizer is also an Editor)."""

    sample_rate: int

    def edit(self, samples: np.ndarray, sample_rate: int, audio_text: str, edit: Edit,
             cancel: CancelToken | None = None) -> EditResult: ...


class EditChain:
    """A source audio and the edits applied one after another; thread-safe, bounded by `max_steps`."""

    def __init__(self, editor: Editor, source: EditResult, max_steps: int = 64) -> None:
        self._editor = editor
        self._steps: list[EditResult] = [source]
        self._lock = threading.Lock()
        self.max_steps = max_steps

    @classmethod
    def from_audio(cls, editor: Editor, samples: np.ndarray, sample_rate: int, text: str) -> EditChain:
        return cls(editor, EditResult(np.asarray(samples, dtype=np.float32), sample_rate, text))

    @property
    def steps(self) -> tuple[EditResult, ...]:
        with self._lock:
            return tuple(self._steps)

    @property
    def current(self) -> EditResult:
        with self._lock:
            return self._steps[-1]

    def apply(self, edit: Edit, cancel: CancelToken | None = None,
              on_step: Callable[[EditResult], None] | None = None) -> EditResult:
        """Edit the latest result; the new result becomes the latest."""
        last = self.current
        if len(self.steps) > self.max_steps:
            raise StepAudioError(f"the edit chain is at its limit of {self.max_steps} edits; undo or start again")
        result = self._editor.edit(last.samples, last.sample_rate, last.text, edit, cancel)
        with self._lock:
            self._steps.append(result)
        if on_step is not None:
            on_step(result)
        return result

    def undo(self) -> EditResult:
        """Drop the latest edit (the source stays); returns the new latest."""
        with self._lock:
            if len(self._steps) == 1:
                raise StepAudioError("nothing to undo: the chain holds only its source audio")
            self._steps.pop()
            return self._steps[-1]
