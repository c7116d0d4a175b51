"""The lite `Synthesizer`: Kokoro for Mandarin and Japanese, Piper for English, espeak-ng for Cantonese, Korean
and the rest.

Text is cut into sentences and each is spoken as soon as it is rendered (one `AudioChunk` per sentence).
Without an explicit voice or language tag, the voice is chosen per sentence from its script: kana ->
Japanese (Kokoro `ja-alpha`), hangul -> Korean (espeak), other CJK -> Mandarin (Kokoro `zh-yunjian`), anything
else -> Piper's English voice. A named Kokoro voice (or a blend of them) keeps its timbre across sentences and
reads each with the G2P of the sentence's script; an OpenAI voice name picks a Kokoro voice of its gender in
the sentence's language. Cantonese has no neural voice offline: it stays espeak `yue`. Without Kokoro's voices
installed the script defaults fall back to espeak, with a warning naming the fix.
All voices come out at 22.05 kHz. Each speaks at its own rate and a speed factor is applied to the sentence
afterwards (`time_stretch`), so that durations are in proportion to it (Kokoro's own speed input rounds every
phoneme to whole frames: measured 1.06x too long at 2x and 1.6x at 4x).
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
from stepaudio.engines.lite import kokoro_voices
from stepaudio.engines.lite.espeak_lib import DEFAULT_RATE, EspeakLibrary
from stepaudio.engines.lite.instructions import SpeechPlan, plan_speech
from stepaudio.engines.lite.kokoro import Blend, KokoroSpeaker, is_blend
from stepaudio.engines.lite.kokoro_g2p import Language
from stepaudio.engines.lite.kokoro_voices import KokoroVoice, KokoroVoicesMissing
from stepaudio.engines.lite.tts_piper import PiperSpeaker
from stepaudio.errors import StepAudioError
from stepaudio.text.scripts import HAN, HANGUL, KANA, east_asian_language
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
_MARKUP = re.compile(r"[*_#`~>|]+")
# what the voice list says about the voices that are not Kokoro's
NOTES = {"yue": "Cantonese: espeak-ng formant voice (no neural Cantonese voice installs offline)",
         PIPER_VOICE: "English: Piper VITS (en_US joe), the English default"}


class LiteSynthesizer:
    """`Synthesizer` over Kokoro, one Piper voice and the espeak-ng library (any of them may be absent)."""

    def __init__(self, piper: PiperSpeaker | None, espeak: EspeakLibrary | None, sample_rate: int = 22050,
                 kokoro: KokoroSpeaker | None = None) -> None:
        if piper is None and espeak is None and kokoro is None:
            raise StepAudioError("the lite synthesizer needs Kokoro, Piper or espeak-ng")
        self._piper = piper
        self._espeak = espeak
        self._kokoro = kokoro
        self.sample_rate = sample_rate

    def voices(self) -> list[str]:
        """Kokoro's installed voices, the OpenAI names that map onto them, Piper's voice, then espeak's codes."""
        names = self._kokoro.voices() if self._kokoro else []
        if names:
            names += sorted(kokoro_voices.OPENAI_VOICES)
        names += [PIPER_VOICE] if self._piper else []
        if self._espeak:
            names += sorted({info.language for info in self._espeak.voices()})
        return names

    def blendable_voices(self) -> list[str]:
        """The voices a designed voice may mix (`zh-yunjian*0.6+zh-xiaobei*0.4`): Kokoro's installed ones."""
        return self._kokoro.voices() if self._kokoro else []

    def describe_voices(self) -> dict[str, str]:
        """A line about each listed voice: its language and kind (Cantonese says it is espeak's)."""
        described = {}
        for name in self.voices():
            voice = kokoro_voices.BY_NAME.get(name)
            if voice is not None:
                described[name] = f"{LANGUAGE_NAMES[voice.language]}: Kokoro-82M neural voice {voice.file}"
            elif name in kokoro_voices.OPENAI_VOICES:
                described[name] = "OpenAI name: a Kokoro voice of its kind in the text's language"
            else:
                described[name] = NOTES.get(name, f"espeak-ng formant voice {name}")
        return described

    def voice_rates(self) -> dict[str, int]:
        """Native sample rate of each kind of voice (before resampling to `sample_rate`)."""
        rates = {PIPER_VOICE: self._piper.sample_rate} if self._piper else {}
        if self._espeak:
            rates["espeak"] = self._espeak.sample_rate
        if self._kokoro:
            rates["kokoro"] = self._kokoro.sample_rate
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
        chosen = _voice_name(voice) or self._tag_voice(plan.voice)
        sentences = [s for s in (clean_for_speech(x) for x in split_sentences(body)) if s]
        for index, sentence in enumerate(sentences):
            if cancel and cancel.cancelled:
                return
            samples = self.speak(sentence, chosen or self.pick_voice(sentence), plan, cancel)
            yield AudioChunk(samples, self.sample_rate, text=sentence, is_last=index == len(sentences) - 1)

    def pick_voice(self, sentence: str) -> str:
        """The default voice for a sentence: Kokoro's for Mandarin and Japanese where installed, else espeak's."""
        return self._default(pick_voice(sentence))

    def _default(self, code: str) -> str:
        """Kokoro's default voice for the espeak code 'cmn' or 'ja' where installed; other codes unchanged."""
        kokoro = {"cmn": kokoro_voices.DEFAULTS[("zh", False)], "ja": kokoro_voices.DEFAULTS[("ja", True)]}.get(code)
        if kokoro is None:
            return code
        if self._kokoro is not None and kokoro in self._kokoro.voices():
            return kokoro
        fix = kokoro_voices.SETUP_COMMAND if self._kokoro else "pip install 'stepaudio[lite]'"
        warnings.warn(f"Kokoro is not installed, so {code} is spoken by espeak-ng's formant voice; run {fix}",
                      UserWarning, stacklevel=3)
        return code

    def _tag_voice(self, voice: str | None) -> str | None:
        """A language tag's voice ((中文), (日语)): that language's default voice, Kokoro's where installed."""
        return self._default(voice) if voice else None

    def speak(self, sentence: str, voice: str, plan: SpeechPlan, cancel: CancelToken | None = None) -> np.ndarray:
        """Render one sentence with a named voice (or a blend formula) at `sample_rate`."""
        abort = (lambda: cancel.cancelled) if cancel else None
        if voice in kokoro_voices.OPENAI_VOICES and self._kokoro is None:
            voice = self.pick_voice(sentence)
        if HANGUL.search(sentence) and (is_blend(voice) or voice in kokoro_voices.BY_NAME
                                         or voice in kokoro_voices.OPENAI_VOICES):
            voice = "ko"  # Kokoro has no Korean
        kokoro = self._kokoro_voice(sentence, voice)
        if kokoro is not None and self._kokoro is not None:
            if plan.pitch:
                warnings.warn(f"pitch is not applied with the Kokoro voice {voice!r}; espeak voices support it",
                              UserWarning, stacklevel=3)
            main = kokoro.main if isinstance(kokoro, Blend) else kokoro
            samples = self._kokoro.speak(sentence, _language(sentence, main.language), kokoro, main.british, abort)
            rate = self._kokoro.sample_rate
        elif voice == PIPER_VOICE and self._piper is not None:
            if plan.pitch:
                warnings.warn(f"pitch is not applied with the Piper voice {voice!r}; espeak voices support it",
                              UserWarning, stacklevel=3)
            samples, rate = self._piper.speak(sentence), self._piper.sample_rate
        elif self._espeak is not None:
            code = ESPEAK_ALIASES.get(voice, voice)
            code = "en-us" if code == PIPER_VOICE else ESPEAK_VARIANTS.get(code, code)
            wpm = ESPEAK_RATES.get(code.split("+")[0], DEFAULT_RATE)
            pitch = 50 + 4 * plan.pitch  # espeak pitch 0-99, 50 normal; ~4 steps a semitone
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

    def _kokoro_voice(self, sentence: str, voice: str) -> KokoroVoice | Blend | None:
        """The Kokoro voice (or blend) that speaks `sentence` for the requested `voice`, None for Piper/espeak."""
        if is_blend(voice) or voice in kokoro_voices.BY_NAME:
            if self._kokoro is None:
                raise KokoroVoicesMissing(f"voice {voice!r} needs Kokoro (misaki, pyopenjtalk-plus): "
                                          "pip install 'stepaudio[lite]'")
            return Blend.parse(voice) if is_blend(voice) else kokoro_voices.BY_NAME[voice]
        if voice in kokoro_voices.OPENAI_VOICES and self._kokoro is not None:
            female, english = kokoro_voices.OPENAI_VOICES[voice]
            language = _language(sentence, "en")
            name = english if language == "en" and english else kokoro_voices.DEFAULTS[(language, female)]
            return kokoro_voices.BY_NAME[name]
        return None


LANGUAGE_NAMES = {"zh": "Mandarin", "en": "English", "ja": "Japanese"}


def _language(sentence: str, fallback: str) -> Language:
    """Which G2P reads `sentence`: kana -> Japanese, other Han -> Mandarin (Japanese for a Japanese voice),
    anything else English."""
    if KANA.search(sentence):
        return "ja"
    if HAN.search(sentence):
        return "ja" if fallback == "ja" else "zh"
    return "en"


def pick_voice(sentence: str) -> str:
    script = east_asian_language(sentence)
    return PIPER_VOICE if script is None else "cmn" if script == "zh" else script


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
