"""Kokoro-82M v1.0 (int8 ONNX, 24 kHz): Mandarin, Japanese and English speech from phonemes and a voice table.

The model reads at most 510 phoneme ids at a time (its style table has one row per length), so a longer
sentence is cut at sentence ends first, then at clause marks, then between words, and the pieces are spoken
one after another. The session loads on first use: an English-only engine never pays for it; it runs the
graph `kokoro_graph` prepares (the same audio, ~12 % less CPU), with its Snake activations as one custom op
(`stepaudio.kernels.snake_ort`, ~10 % less CPU again; equal to float rounding before each int8 requantisation,
which the audio then carries as a different draw of the same quantisation noise) where a C compiler and
AVX2 + FMA allow. Voices are tables from `kokoro_voices`, or a
weighted blend of them (`Blend`).

Kokoro opens each piece with ~0.4 s of silence and ends it with up to ~1 s (Mandarin), where Piper leaves ~0.05
and ~0.15 s: a Mandarin reply would start 0.35 s later than an English one from the same moment and pause
~1.4 s between sentences. The silence is cut to `LEAD_SECONDS` before the first audible sample and
`TAIL_SECONDS` after the last (it cannot be skipped instead: capping the predicted pauses in the graph loses the
first and last syllables, measured at 5-9 % CER against 2.3 %).
"""

from __future__ import annotations

import json
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lite import kokoro_graph, kokoro_voices, resolver
from stepaudio.engines.lite.kokoro_g2p import KokoroG2P, Language
from stepaudio.engines.lite.kokoro_voices import KokoroVoice
from stepaudio.errors import MissingExtraError, StepAudioError, UnsupportedError
from stepaudio.kernels import snake_ort

SAMPLE_RATE = 24000
MAX_PHONEMES = 510
_SENTENCE_END = re.compile(r"(?<=[.!?])\s*")
_CLAUSE_END = re.compile(r"(?<=[,;:—…])\s*")
LEAD_SECONDS = 0.05  # silence kept before the first audible sample of a piece
TAIL_SECONDS = 0.2  # and after its last
AUDIBLE = 0.01  # -40 dBFS: Kokoro's silence is below 1e-3, its quietest consonants' onsets above this


@dataclass(frozen=True)
class Blend:
    """A designed voice: a weighted mix of built-in Kokoro voices (weights normalised to sum to 1).

    Written as `zh-yunjian*0.6+zh-xiaobei*0.4` wherever a voice name goes; not a clone of anyone's voice.
    """

    parts: tuple[tuple[KokoroVoice, float], ...]

    def __post_init__(self) -> None:
        total = sum(weight for _, weight in self.parts)
        if not self.parts or total <= 0 or any(weight < 0 for _, weight in self.parts):
            raise StepAudioError("a voice blend needs at least one built-in voice with a positive weight")
        object.__setattr__(self, "parts", tuple((voice, weight / total) for voice, weight in self.parts))

    @property
    def main(self) -> KokoroVoice:
        """The heaviest voice: its language is the blend's language where the text does not decide."""
        return max(self.parts, key=lambda part: part[1])[0]

    def formula(self) -> str:
        return "+".join(f"{voice.name}*{weight:.4g}" for voice, weight in self.parts)

    @classmethod
    def parse(cls, text: str) -> Blend:
        """`name*weight+name*weight` (a bare name weighs 1); raises StepAudioError naming what is wrong."""
        parts = []
        for item in text.split("+"):
            name, _, weight = item.strip().partition("*")
            voice = kokoro_voices.BY_NAME.get(name.strip())
            if voice is None:
                raise StepAudioError(f"{name.strip()!r} is not a built-in Kokoro voice; blends mix "
                                     f"{', '.join(kokoro_voices.BY_NAME)}")
            try:
                value = float(weight) if weight.strip() else 1.0
            except ValueError as exc:
                raise StepAudioError(f"the weight {weight!r} of {name.strip()} is not a number") from exc
            if not 0 <= value < float("inf"):
                raise StepAudioError(f"the weight of {name.strip()} must be a finite number >= 0")
            parts.append((voice, value))
        return cls(tuple(parts))


def is_blend(name: str) -> bool:
    return "*" in name or "+" in name


class KokoroSpeaker:
    """The Kokoro model, its G2P and the installed voices; `speak` renders one sentence at 24 kHz."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model_dir: Callable[[], Path], g2p: KokoroG2P, cache_dir: Path | None = None,
                 threads: int = 1, prepared: bool = True, trim: bool = True, snake: bool = True) -> None:
        """`prepared=False` runs the graph as published (the same audio, slower); `snake=False` leaves the
        prepared graph's Snake activations as onnxruntime ops (bit for bit the published audio); `trim=False`
        keeps the silence the model renders around each piece. All exist for comparisons."""
        self._session = Lazy(lambda: _open_session(model_dir(), threads, cache_dir, prepared, snake))
        self._trim = trim
        self._g2p = g2p
        self._cache_dir = cache_dir
        self._tables: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        """The catalogue voices installed here (from npm at setup)."""
        return [voice.name for voice in kokoro_voices.installed(self._cache_dir)]

    def table(self, voice: KokoroVoice | Blend) -> np.ndarray:
        """The [510, 256] style table of a voice, or the weighted sum of a blend's tables."""
        if isinstance(voice, Blend):
            return np.sum([weight * self.table(part) for part, weight in voice.parts], axis=0).astype(np.float32)
        with self._lock:
            if voice.name not in self._tables:
                path = kokoro_voices.voice_path(voice, self._cache_dir)
                self._tables[voice.name] = np.fromfile(path, dtype=np.float32).reshape(MAX_PHONEMES, 256)
            return self._tables[voice.name]

    def phonemes(self, text: str, language: Language, british: bool = False) -> str:
        """The phonemes the model will read (symbols outside its vocabulary dropped)."""
        vocab = self._session.get()[1]
        return "".join(ch for ch in self._g2p(text, language, british) if ch in vocab)

    def speak(self, text: str, language: Language, voice: KokoroVoice | Blend, british: bool = False,
              cancel: Callable[[], bool] | None = None) -> np.ndarray:
        session, vocab = self._session.get()
        table = self.table(voice)
        pieces = []
        for chunk in split_phonemes(self.phonemes(text, language, british)):
            if cancel is not None and cancel():
                break
            ids = [vocab[ch] for ch in chunk]
            audio = session.run(None, {"tokens": np.array([[0, *ids, 0]], dtype=np.int64),
                                       "style": table[len(ids) - 1 : len(ids)],
                                       "speed": np.ones(1, dtype=np.float32)})[0]
            samples = np.asarray(audio, dtype=np.float32).reshape(-1)
            pieces.append(trim_silence(samples, SAMPLE_RATE) if self._trim else samples)
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.float32)


def trim_silence(samples: np.ndarray, rate: int, lead: float = LEAD_SECONDS, tail: float = TAIL_SECONDS,
                 audible: float = AUDIBLE) -> np.ndarray:
    """`samples` with at most `lead` seconds before the first sample above `audible` and `tail` after the last;
    all of it when nothing is audible."""
    loud = np.flatnonzero(np.abs(samples) > audible)
    if loud.size == 0:
        return samples
    start = max(0, int(loud[0]) - round(lead * rate))
    end = min(len(samples), int(loud[-1]) + 1 + round(tail * rate))
    return samples[start:end]


def split_phonemes(phonemes: str, limit: int = MAX_PHONEMES) -> list[str]:
    """Pieces of at most `limit` symbols: whole sentences where they fit, else clauses, else words."""
    phonemes = phonemes.strip()
    if not phonemes:
        return []
    if len(phonemes) <= limit:
        return [phonemes]
    for pattern in (_SENTENCE_END, _CLAUSE_END, re.compile(r"\s+")):
        parts = [p for p in pattern.split(phonemes) if p.strip()]
        if len(parts) > 1:
            return _pack(parts, limit)
    return [phonemes[i : i + limit] for i in range(0, len(phonemes), limit)]


def _pack(parts: list[str], limit: int) -> list[str]:
    """Join neighbouring parts up to `limit`; a part still too long is split further."""
    out: list[str] = []
    current = ""
    for part in parts:
        joined = f"{current} {part}" if current else part
        if len(joined) <= limit:
            current = joined
            continue
        if current:
            out.append(current)
        if len(part) <= limit:
            current = part
        else:
            out += split_phonemes(part, limit)
            current = ""
    if current:
        out.append(current)
    return out


def _open_session(model_dir: Path, threads: int, cache_dir: Path | None, prepared: bool,
                  snake: bool = True) -> tuple[Any, dict[str, int]]:
    """The session on the prepared graph (built once under `cache_dir`; with the fused Snake op where `snake`
    and its library builds here), or on the published one when not `prepared` or where `onnx` is missing."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingExtraError("lite", "onnxruntime") from exc
    path = model_dir / "kokoro-v1.0.int8.onnx"
    cache = cache_dir or resolver.default_cache_dir()
    library = _snake_library(cache) if prepared and snake else None
    if prepared:
        try:
            path = kokoro_graph.prepare(path, cache, snake=library is not None)
        except MissingExtraError:
            warnings.warn("Kokoro runs its published graph, ~12 % slower: install onnx (pip install "
                          "'stepaudio[lite]') to prepare the faster one", UserWarning, stacklevel=2)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # with two threads, one spinning between ops takes the core the chat model's thread is waiting for
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if library is not None and path.name.endswith(f"{kokoro_graph.SNAKE_VERSION}.onnx"):
        try:
            snake_ort.set_threads(library, threads)
            options.register_custom_ops_library(str(library))
            session = onnxruntime.InferenceSession(str(path), sess_options=options,
                                                   providers=["CPUExecutionProvider"])
        except Exception as exc:  # an onnxruntime too old for the op (onnxruntime raises its own types)
            warnings.warn(f"Kokoro's Snake op did not load ({exc}); its activations stay onnxruntime ops",
                          UserWarning, stacklevel=2)
            return _open_session(model_dir, threads, cache_dir, prepared, snake=False)
    else:
        session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    vocab = json.loads((model_dir / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    return session, {str(k): int(v) for k, v in vocab.items()}


def _snake_library(cache_dir: Path) -> Path | None:
    """The fused Snake op's library, or None (with a warning) where it cannot be built on this machine."""
    try:
        return snake_ort.build(cache_dir)
    except UnsupportedError as exc:
        warnings.warn(f"Kokoro's Snake activations stay onnxruntime ops (~10 % slower): {exc}", UserWarning,
                      stacklevel=3)
        return None
