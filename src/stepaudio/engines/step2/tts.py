"""Step-Audio 2 speech: its speech codes through token2wav in a prompt voice, and TTS with the model's own
speech mode.

Speech out is what the reference does for every spoken reply: the assistant turn is opened with `<tts_start>`,
the model interleaves text and CosyVoice2 codes, and the codes go to token2wav with a prompt wav
(REFERENCE-SA2.md §5-§7). `SpeechOut` streams them (25 tokens + 3 look-ahead per chunk). TTS asks the chat
model to read the text aloud in that mode (the base model's instruction as the system turn; the release
documents no TTS recipe for the chat model, so the wording is inferred) and keeps only the codes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.stretch import speed_and_volume
from stepaudio.decoder.cosyvoice2.prompt import Prompt
from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.engines.base import AudioChunk, CancelToken, SpeechInstructions, Voice
from stepaudio.engines.step2.runtime import SpeechCode, Step2Runtime
from stepaudio.engines.step2.voices import Step2Voices
from stepaudio.errors import TagError, UnsupportedError
from stepaudio.lm import GenerationConfig, SamplingConfig
from stepaudio.text.sentences import sentence_segments
from stepaudio.text.step2_prompts import TTS_SYSTEM, Turn, render

SAMPLE_RATE = 24000
SPEECH_TOKENS_PER_SECOND = 25
# The reference's sampling for every speech reply (examples.py).
SPEECH_SAMPLING = SamplingConfig(temperature=0.7, top_p=0.9, repetition_penalty=1.05)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z0-9]+")


def token_budget(text: str) -> int:
    """Most tokens a read-aloud segment may take: ~3x its expected speech codes (3.5 CJK characters or 2.5
    words a second) plus its interleaved text, so a run-on reply ends instead of looping."""
    seconds = len(_CJK.findall(text)) / 3.5 + len(_WORD.findall(text)) / 2.5 + 1.0
    return int(seconds * SPEECH_TOKENS_PER_SECOND * 3.0) + 2 * len(text) + 50


class SpeechOut:
    """Speech codes of one utterance in one voice -> 24 kHz float32 chunks, streamed."""

    def __init__(self, decoder: Token2Wav, prompt: Prompt) -> None:
        self._stream = decoder.stream(prompt)
        self.codes = 0

    def push(self, code: SpeechCode) -> np.ndarray:
        self.codes += 1
        return _float(self._stream.push([code.code]))

    def finish(self) -> np.ndarray:
        return _float(self._stream.finish())


def _float(pcm: np.ndarray) -> np.ndarray:
    return (pcm.astype(np.float32) / 32768.0) if pcm.size else np.zeros(0, dtype=np.float32)


@dataclass(frozen=True)
class TTSSettings:
    segment_chars: int = 120
    max_segment_tokens: int | None = None  # a hard cap on top of the text-proportional budget
    seed: int | None = None


class Step2Synthesizer:
    """`Synthesizer` over the chat model's speech mode and token2wav; clones from any prompt wav."""

    sample_rate = SAMPLE_RATE

    def __init__(self, runtime: Callable[[], Step2Runtime], decoder: Callable[[], Token2Wav], voices: Step2Voices,
                 settings: TTSSettings | None = None) -> None:
        self._runtime = runtime
        self._decoder = decoder
        self._voices = voices
        self.settings = settings or TTSSettings()

    def voices(self) -> list[str]:
        return self._voices.names()

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        instructions = instructions or SpeechInstructions()
        factor, volume = _post_processing(instructions)
        if not text.strip():
            raise TagError("there is no text to speak")
        prompt = self._voices.prompt(voice)
        segments = sentence_segments(text, self.settings.segment_chars)
        for segment in segments:
            if cancel is not None and cancel.cancelled:
                return
            samples = list(self._segment(segment, prompt, cancel))
            if factor != 1.0:
                samples = [np.concatenate(samples)] if samples else []
            for piece in samples:
                if piece.size:
                    yield AudioChunk(speed_and_volume(piece, factor, volume), SAMPLE_RATE, text=segment)
        yield AudioChunk(np.zeros(0, dtype=np.float32), SAMPLE_RATE, text="", is_last=True)

    def _segment(self, text: str, prompt: Prompt, cancel: CancelToken | None) -> Iterator[np.ndarray]:
        runtime = self._runtime()
        segments = render([Turn("system", TTS_SYSTEM), Turn("user", text),
                           Turn("assistant", runtime.vocab.tts_start, eot=False)], runtime.vocab)
        budget = token_budget(text)
        if self.settings.max_segment_tokens:
            budget = min(budget, self.settings.max_segment_tokens)
        config = GenerationConfig(max_new_tokens=budget, stop_ids=runtime.stop_ids, sampling=SPEECH_SAMPLING,
                                  seed=self.settings.seed)
        out = SpeechOut(self._decoder(), prompt)
        for item in runtime.split(runtime.run(runtime.prompt(segments, []), config, cancel)):
            if isinstance(item, SpeechCode):
                yield out.push(item)
        if cancel is not None and cancel.cancelled:
            return
        if out.codes == 0:
            warnings.warn(f"the model wrote no speech for {text[:30]!r}", RuntimeWarning, stacklevel=3)
        yield out.finish()


def _post_processing(instructions: SpeechInstructions) -> tuple[float, float | None]:
    """The rate factor and gain applied after synthesis; what the model cannot be asked for is refused
    (strict) or warned about."""
    asked = [name for name in ("emotion", "dialect", "style", "pitch") if getattr(instructions, name)]
    if instructions.tags or isinstance(instructions.speed, str):
        asked.append("tags" if instructions.tags else "speed")
    if asked:
        message = f"the step2 engine has no {', '.join(asked)} control (a speed factor and volume work)"
        if instructions.strict:
            raise UnsupportedError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    factor = float(instructions.speed) if isinstance(instructions.speed, int | float) else 1.0
    if not 0.25 <= factor <= 4.0:
        raise UnsupportedError(f"speed factor {factor} is outside 0.25..4")
    return factor, instructions.volume
