"""One synthesis job -> audio, audio tokens and a quality verdict; buildable from a picklable spec in a worker.

The producer does everything except writing, so it can run in worker processes while one writer (the
generator's main process) keeps the dataset consistent.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import resample
from stepaudio.data.grid import GridCell
from stepaudio.data.manifest import DatasetError, TokenizerInfo
from stepaudio.data.quality import QualityConfig, QualityFilter, QualityResult
from stepaudio.engines.base import Synthesizer, Transcriber
from stepaudio.errors import StepAudioError, TagError, UnsupportedError
from stepaudio.tokenizer.audio_tokenizer import ONNX_FILE, StepAudioTokenizer, check_tokenizer_dir


@dataclass(frozen=True)
class Job:
    id: str
    text: str
    cell: GridCell


@dataclass(frozen=True)
class Outcome:
    """What became of a job: audio and tokens with a verdict, or why there is nothing to write."""

    job: Job
    samples: np.ndarray | None = None
    sample_rate: int = 0
    tokens: tuple[int, ...] = ()
    quality: QualityResult = field(default_factory=QualityResult)
    unsupported: str | None = None  # the engine cannot honour the cell: skip every job of it
    error: str | None = None  # this job failed (kept out of the dataset; a resume retries it)


@dataclass(frozen=True)
class ProducerSpec:
    """Everything a worker needs to build a `Producer`: engine names and options, tokenizer folder, filter."""

    engine: str
    tokenizer_dir: Path
    engine_options: Mapping[str, Any] = field(default_factory=dict)
    quality: QualityConfig = field(default_factory=QualityConfig)
    asr_engine: str | None = None  # None: the synthesis engine's own recognizer
    asr_options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Producer:
        from stepaudio.engines.registry import create_engine

        engine = create_engine(self.engine, **dict(self.engine_options))
        if engine.synthesizer is None:
            raise StepAudioError(f"engine {self.engine!r} has no synthesizer")
        transcriber: Transcriber | None = None
        if self.quality.max_cer is not None:
            judge = engine if self.asr_engine in (None, self.engine) else create_engine(
                self.asr_engine, **dict(self.asr_options))
            transcriber = judge.transcriber
            if transcriber is None:
                raise StepAudioError(f"engine {judge.name!r} has no speech recognizer for the CER filter; "
                                     "choose one with --asr-engine")
        tokenizer = load_tokenizer(self.tokenizer_dir)
        return Producer(self.engine, engine.synthesizer, tokenizer, QualityFilter(self.quality, transcriber))


def tokenizer_root(path: str | Path) -> Path:
    """The `Step-Audio-Tokenizer/` folder itself, given it or a model folder that holds it."""
    root = Path(path)
    if not (root / ONNX_FILE).exists() and (root / "Step-Audio-Tokenizer").is_dir():
        root = root / "Step-Audio-Tokenizer"
    return check_tokenizer_dir(root)


def load_tokenizer(path: str | Path) -> StepAudioTokenizer:
    return StepAudioTokenizer.from_pretrained(tokenizer_root(path), weight_mode="fp32-packed")


def tokenizer_fingerprint(path: str | Path) -> TokenizerInfo:
    """The tokenizer's name and the sha256 of each of its files, so a dataset records what coded it."""
    root = tokenizer_root(path)
    digests = {}
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        digest = hashlib.sha256()
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digests[file.relative_to(root).as_posix()] = digest.hexdigest()
    return TokenizerInfo(root.name, digests)


class Producer:
    """Synthesise a job's text for its cell, judge it, and tokenise what passes."""

    def __init__(self, engine: str, synthesizer: Synthesizer, tokenizer: StepAudioTokenizer,
                 quality: QualityFilter) -> None:
        self.engine = engine
        self.synthesizer = synthesizer
        self.tokenizer = tokenizer
        self.quality = quality

    def check_voices(self, cells: list[GridCell]) -> None:
        """Every voice the grid asks for must be one of the engine's (a typo is an error, not a skip)."""
        known = set(self.synthesizer.voices())
        unknown = sorted({c.voice for c in cells if c.voice is not None and c.voice not in known})
        if unknown:
            raise DatasetError(f"engine {self.engine!r} has no voice {', '.join(unknown)}; "
                               f"its voices: {', '.join(sorted(known))}")

    def run(self, job: Job) -> Outcome:
        try:
            samples, rate = self._synthesize(job)
        except (TagError, UnsupportedError) as exc:
            return Outcome(job, unsupported=str(exc))
        except StepAudioError as exc:
            return Outcome(job, error=f"synthesis failed: {exc}")
        verdict = self.quality.check(job.text, samples, rate)
        tokens: tuple[int, ...] = ()
        if verdict.accepted:
            try:
                tokens = tuple(self.tokenizer.encode(samples, rate).flow_ids())
            except StepAudioError as exc:
                return Outcome(job, error=f"tokenizer failed: {exc}")
            if not tokens:
                verdict = QualityResult("no audio tokens (shorter than one 120 ms group)", verdict.asr_text,
                                        verdict.cer)
        return Outcome(job, samples=samples, sample_rate=rate, tokens=tokens, quality=verdict)

    def _synthesize(self, job: Job) -> tuple[np.ndarray, int]:
        pieces: list[np.ndarray] = []
        rate = int(self.synthesizer.sample_rate)
        with warnings.catch_warnings():
            # strict instructions turn what cannot be honoured into errors; what is left is engine chatter
            warnings.simplefilter("ignore")
            for chunk in self.synthesizer.synthesize(job.text, job.cell.voice, job.cell.instructions()):
                samples = np.asarray(chunk.samples, dtype=np.float32)
                if chunk.sample_rate != rate and samples.size:
                    samples = resample(samples, chunk.sample_rate, rate)
                pieces.append(samples)
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)
        return audio, rate
