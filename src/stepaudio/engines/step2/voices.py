"""The voices Step-Audio 2 speaks in: prompt wavs turned into token2wav prompts (S3 tokenizer v2 tokens, CAM++
x-vector, 24 kHz mel; REFERENCE-SA2.md §7), and the current voice a timbre switch changes.

The release ships no voice; the reference passes a prompt wav per call (`assets/default_female.wav`). Here a
voices folder holds `NAME.wav` files (and optionally `voices.json`, `{name: description}`, which the
voice-switch tool searches); a clone is any `Voice` with a prompt wav. Prompts are computed once per voice.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from stepaudio.audio.io import load_audio
from stepaudio.decoder.cosyvoice2.prompt import Prompt
from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.engines.base import Voice
from stepaudio.errors import StepAudioError
from stepaudio.tokenizer.semantic import SemanticTokenizer

DESCRIPTIONS_FILE = "voices.json"


class Step2Voices:
    """Named prompt wavs in a folder, clones, and the voice used when a caller names none."""

    def __init__(self, folder: Path | None, decoder: Callable[[], Token2Wav],
                 tokenizer: Callable[[], SemanticTokenizer], default: str | None = None) -> None:
        self.folder = folder
        self._decoder = decoder
        self._tokenizer = tokenizer
        self._files = {p.stem: p for p in sorted(folder.glob("*.wav"))} if folder is not None and folder.is_dir() \
            else {}
        descriptions = folder / DESCRIPTIONS_FILE if folder is not None else None
        self.descriptions: dict[str, str] = (
            json.loads(descriptions.read_text(encoding="utf-8")) if descriptions is not None and descriptions.is_file()
            else {})
        if default is not None and default not in self._files:
            raise StepAudioError(f"no voice {default!r}: the voices are {', '.join(self._files) or 'none'}")
        self.current = default or next(iter(self._files), None)
        self._prompts: dict[str, Prompt] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(self._files)

    def prompt(self, voice: Voice | str | None = None) -> Prompt:
        """The token2wav prompt of a clone, a named voice, or (None) the current voice."""
        if isinstance(voice, Voice) and voice.is_clone:
            assert voice.prompt_audio is not None
            return self._cached(f"clone:{Path(voice.prompt_audio).resolve()}", Path(voice.prompt_audio))
        name = voice.name if isinstance(voice, Voice) else voice
        name = name or self.current
        if name is None:
            raise StepAudioError("no voice to speak in: put NAME.wav prompt files in the voices folder "
                                 "(-O voices_dir=DIR) or send a cloned voice")
        if name not in self._files:
            raise StepAudioError(f"unknown voice {name!r}; the voices are {', '.join(self._files) or 'none'}")
        return self._cached(name, self._files[name])

    def find(self, query: str) -> str | None:
        """The voice a timbre description asks for: a voice named in it, or whose description shares the most
        characters with it (None when nothing matches at all)."""
        query = query.strip()
        named = [n for n in self._files if n and n in query]
        if named:
            return max(named, key=len)
        scored = [(len(set(query) & set(self.descriptions.get(n, n))), n) for n in self._files]
        best = max(scored, default=(0, None))
        return best[1] if best[0] > 0 else None

    def switch(self, query: str) -> str:
        """Make the voice matching `query` the current one; what happened, as the model reads it."""
        found = self.find(query)
        if found is None:
            return json.dumps({"error": f"no voice matches {query!r}", "voices": self.names()}, ensure_ascii=False)
        self.current = found
        return json.dumps({"voice": found, "description": self.descriptions.get(found, "")}, ensure_ascii=False)

    def _cached(self, key: str, path: Path) -> Prompt:
        with self._lock:
            if key not in self._prompts:
                audio = load_audio(path)
                self._prompts[key] = self._decoder().prompt(audio.samples, audio.sample_rate, self._tokenizer().encode)
            return self._prompts[key]
