"""The lite `Synthesizer`: Piper for English, espeak-ng for Mandarin, Cantonese, Japanese, Korean and the rest.

Text is cut into sentences and each is spoken as soon as it is rendered (one `AudioChunk` per sentence).
Without an explicit voice or language tag, the voice is chosen per sentence from its script: kana ->
Japanese, hangul -> Korean, other CJK -> Mandarin, anything else -> Piper's English voice.
Both kinds of voice produce 22.05 kHz audio. Both speak at their own rate and a speed factor is applied to the
sentence afterwards (`time_stretch`), so that durations are in proportion to it.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from collections.abc import Iterator

import numpy as np

from stepaudio.audio.io import resample
from stepaudio.audio.stretch import time_stretch
from stepaudio.engines.base import AudioChunk, CancelToken, SpeechInstructions, Voice
from stepaudio.engines.lite.espeak_lib import DEFAULT_RATE, EspeakLibrary
from stepaudio.engines.lite.instructions import SpeechPlan, plan_speech
from stepaudio.engines.lite.tts_piper import PiperSpeaker
from stepaudio.errors import StepAudioError
from stepaudio.text.sentences import split_sentences
from stepaudio.text.tags import parse_tags

PIPER_VOICE = "joe"
# Friendly names for the espeak voices that matter most; any espeak language code also works.
ESPEAK_ALIASES = {"mandarin": "cmn", "zh": "cmn", "chinese": "cmn", "cantonese": "yue", "japanese": "ja",
                  "korean": "ko", "english": "en-us", "en": "en-us"}
# Measured by Whisper round trip (`stepaudio bench lite`): the female formant variant f3 at 150 wpm is
# understood far better than espeak's default Mandarin voice; plain "cmn" means this tuned voice.
ESPEAK_VARIANTS = {"cmn": "cmn+f3"}
# Words per minute (espeak's default is 175); speed factors are applied after synthesis.
ESPEAK_RATES = {"cmn": 150, "yue": 150, "ja": 150, "ko": 150}
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af\u1100-\u11ff]")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_MARKUP = re.compile(r"[*_#`~>|]+")


class LiteSynthesizer:
    """`Synthesizer` over one Piper voice and the espeak-ng library."""

    def __init__(self, piper: PiperSpeaker | None, espeak: EspeakLibrary | None, sample_rate: int = 22050) -> None:
        if piper is None and espeak is None:
            raise StepAudioError("the lite synthesizer needs Piper or espeak-ng")
        self._piper = piper
        self._espeak = espeak
        self.sample_rate = sample_rate

    def voices(self) -> list[str]:
        names = [PIPER_VOICE] if self._piper else []
        if self._espeak:
            names += sorted({info.language for info in self._espeak.voices()})
        return names

    def voice_rates(self) -> dict[str, int]:
        """Native sample rate of each kind of voice (before resampling to `sample_rate`)."""
        rates = {PIPER_VOICE: self._piper.sample_rate} if self._piper else {}
        if self._espeak:
            rates["espeak"] = self._espeak.sample_rate
        return rates

    def synthesize(
        self,
        text: str,
        voice: Voice | str | None = None,
        instructions: SpeechInstructions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[AudioChunk]:
        tagged = parse_tags(text, on_unknown="raise" if instructions and instructions.strict else "ignore")
        tags, body = tagged.tags, tagged.body
        if tagged.unknown:  # "(Note: ...)" from a chat model is words to say, not an instruction
            warnings.warn(f"unknown instruction tag(s) {', '.join(tagged.unknown)}: read as text", UserWarning,
                          stacklevel=2)
            tags, body = (), text
        plan = plan_speech(instructions, tags)
        chosen = _voice_name(voice) or plan.voice
        sentences = [s for s in (clean_for_speech(x) for x in split_sentences(body)) if s]
        for index, sentence in enumerate(sentences):
            if cancel and cancel.cancelled:
                return
            samples = self.speak(sentence, chosen or pick_voice(sentence), plan, cancel)
            yield AudioChunk(samples, self.sample_rate, text=sentence, is_last=index == len(sentences) - 1)

    def speak(self, sentence: str, voice: str, plan: SpeechPlan, cancel: CancelToken | None = None) -> np.ndarray:
        """Render one sentence with a named voice at `sample_rate`."""
        if voice == PIPER_VOICE and self._piper is not None:
            if plan.pitch:
                warnings.warn(f"pitch is not applied with the Piper voice {voice!r}; espeak voices support it",
                              UserWarning, stacklevel=3)
            samples, rate = self._piper.speak(sentence), self._piper.sample_rate
        elif self._espeak is not None:
            code = ESPEAK_ALIASES.get(voice, voice)
            code = "en-us" if code == PIPER_VOICE else ESPEAK_VARIANTS.get(code, code)
            wpm = ESPEAK_RATES.get(code.split("+")[0], DEFAULT_RATE)
            pitch = 50 + 4 * plan.pitch  # espeak pitch 0-99, 50 normal; ~4 steps a semitone
            abort = (lambda: cancel.cancelled) if cancel else None
            samples, rate = self._espeak.synthesize(sentence, code, wpm, round(pitch), abort), \
                self._espeak.sample_rate
        else:
            raise StepAudioError(f"voice {voice!r} needs espeak-ng, which is not loaded")
        if rate != self.sample_rate and samples.size:
            samples = resample(samples, rate, self.sample_rate)
        samples = time_stretch(samples, plan.speed)
        if plan.volume != 1.0:
            samples = np.clip(samples * plan.volume, -1.0, 1.0)
        return samples.astype(np.float32, copy=False)


def pick_voice(sentence: str) -> str:
    if _KANA.search(sentence):
        return "ja"
    if _HANGUL.search(sentence):
        return "ko"
    if _HAN.search(sentence):
        return "cmn"
    return PIPER_VOICE


def clean_for_speech(text: str) -> str:
    """Drop markdown marks and emoji that a chat model writes and a voice would read out or choke on."""
    text = _MARKUP.sub(" ", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("So", "Cs", "Co"))
    return re.sub(r"\s+", " ", text).strip()


def _voice_name(voice: Voice | str | None) -> str | None:
    if voice is None:
        return None
    if isinstance(voice, Voice):
        if voice.is_clone:
            raise StepAudioError("the lite engine cannot clone voices; use a built-in voice or --engine step")
        voice = voice.name
    name = voice.removeprefix("espeak:").strip()
    return name or None
