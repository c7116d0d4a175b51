"""Voice prompts for TTS-3B: built-in speakers from a speakers file, and clones from a wav + transcript.

A prompt voice is the prompt's transcript, its audio tokens (from the trimmed, normalised 16 kHz audio) and
its decoder features (mel and x-vector from the original audio). They are computed once per voice and
kept; a clone's cache key includes the file's size and mtime so an edited file is recomputed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stepaudio.audio.io import load_audio
from stepaudio.decoder.cosyvoice1.token2wav import PromptFeatures, Token2Wav
from stepaudio.errors import CheckpointError, StepAudioError
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.interleave import lm_to_flow

SPEAKERS_FILE = "speakers_info.json"


@dataclass(frozen=True)
class PromptVoice:
    name: str
    prompt_text: str
    lm_ids: tuple[int, ...]
    features: PromptFeatures


class UnknownVoiceError(StepAudioError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def read_speakers_file(directory: Path) -> dict[str, str]:
    """`speakers_info.json`: entry name (`Tingting`, `TingtingRAP`, `Tingting哼唱`) -> prompt transcript."""
    path = directory / SPEAKERS_FILE
    if not path.is_file():
        raise CheckpointError(f"speakers file {path} not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise CheckpointError(f"{path} must map speaker names to prompt texts")
    for name in data:
        if not (directory / f"{name}_prompt.wav").is_file():
            raise CheckpointError(f"speaker {name!r} has no prompt wav {directory / f'{name}_prompt.wav'}")
    return data


class VoiceBank:
    """Built-in speakers plus clones, each prepared once (thread-safe)."""

    def __init__(
        self,
        audio_tokenizer: Callable[[], StepAudioTokenizer],
        decoder: Callable[[], Token2Wav],
        speakers_dir: Path | None,
    ) -> None:
        self._audio_tokenizer = audio_tokenizer
        self._decoder = decoder
        self._dir = speakers_dir
        self._texts = read_speakers_file(speakers_dir) if speakers_dir else {}
        self._cache: dict[object, PromptVoice] = {}
        self._lock = threading.Lock()

    def entries(self) -> list[str]:
        return list(self._texts)

    def names(self) -> list[str]:
        """Speaker names users pick (music variants such as `TingtingRAP` are chosen by the tag)."""
        return [n for n in self._texts if not (n.endswith("RAP") or n.endswith("哼唱")) or n in ("RAP", "哼唱")]

    def add(self, entry: str, voice: PromptVoice) -> None:
        """Register a built-in voice prepared elsewhere (tokens, mel and x-vector already computed)."""
        with self._lock:
            self._texts[entry] = voice.prompt_text
            self._cache[("builtin", entry)] = voice

    def builtin(self, entry: str) -> PromptVoice:
        with self._lock:
            ready = self._cache.get(("builtin", entry))
        if ready is not None:
            return ready
        if entry not in self._texts or self._dir is None:
            known = ", ".join(self.names()) or "none (no speakers folder)"
            raise UnknownVoiceError(f"unknown voice {entry!r}; built-in voices: {known}")
        path = self._dir / f"{entry}_prompt.wav"
        return self._prepared(("builtin", entry), entry, path, self._texts[entry])

    def clone(self, name: str, prompt_audio: Path, prompt_text: str | None) -> PromptVoice:
        if not prompt_text or not prompt_text.strip():
            raise StepAudioError(f"voice {name!r}: a cloned voice needs the exact transcript of its prompt audio")
        path = Path(prompt_audio)
        if not path.is_file():
            raise StepAudioError(f"voice {name!r}: prompt audio {path} not found")
        stat = path.stat()
        return self._prepared(("clone", str(path), stat.st_size, stat.st_mtime_ns, prompt_text), name, path,
                              prompt_text)

    def _prepared(self, key: object, name: str, path: Path, text: str) -> PromptVoice:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self._prepare(name, path, text)
            return self._cache[key]

    def _prepare(self, name: str, path: Path, text: str) -> PromptVoice:
        audio = load_audio(path)
        lm_ids = self._audio_tokenizer().lm_ids(audio.samples, audio.sample_rate, trim=True)
        if not lm_ids:
            raise StepAudioError(f"voice {name!r}: the prompt audio is too short to give any audio tokens")
        samples = np.ascontiguousarray(audio.samples, dtype=np.float32)
        features = self._decoder().prompt_features(samples, audio.sample_rate, lm_to_flow(lm_ids))
        return PromptVoice(name=name, prompt_text=text, lm_ids=tuple(lm_ids), features=features)
