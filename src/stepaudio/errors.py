"""Typed errors shared by every layer, so callers (CLI, server) can map them to clear messages."""

from __future__ import annotations


class StepAudioError(Exception):
    """Base class of every error this package raises on purpose."""


def brief(exc: BaseException) -> str:
    """The first sentence of a third-party error (torch's and onnxruntime's run to paragraphs), for quoting
    inside one of ours."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    head = first.split(". ")[0].rstrip(".")
    return head or type(exc).__name__


class AudioError(StepAudioError, ValueError):
    """Audio that cannot be used: empty, corrupt, truncated, non-finite or of an unsupported format."""


class TagError(StepAudioError, ValueError):
    """An instruction tag or friendly option that the engine does not know."""


class OptionError(StepAudioError, ValueError):
    """An engine option the engine does not know, or a value it cannot take; the message lists the allowed ones."""


class CheckpointError(StepAudioError):
    """A model directory or checkpoint that is missing, incomplete or does not match its config."""


class UnsupportedError(StepAudioError):
    """A valid request the chosen engine cannot serve (e.g. voice cloning on an engine without it)."""


class MissingExtraError(StepAudioError, ImportError):
    """An optional dependency is absent; the message names the extra to install."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this feature needs the optional dependency {module!r}: "
            f"pip install 'stepaudio[{extra}]'"
        )
        self.extra = extra
        self.module = module
