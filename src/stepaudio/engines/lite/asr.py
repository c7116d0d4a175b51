"""Speech to text with faster-whisper (CTranslate2 int8 on CPU) and the packaged Whisper base.

Without a language, Whisper's own detection is constrained to the languages the engine is configured for
(`WhisperOptions.languages`, default zh/en/ja/ko): a clear Mandarin question whose tones Whisper base would
otherwise take for Japanese, Spanish or Welsh is decoded as the likeliest *allowed* language, with that
language's decoding settings, from the same encoder pass that detected it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import Segment, Transcript, Word
from stepaudio.errors import MissingExtraError

SAMPLE_RATE = 16000
_KANA = re.compile(r"[\u3040-\u30ff]")
_HANGUL = re.compile(r"[\uac00-\ud7af]")
_HAN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# Whisper writes Mandarin in traditional or simplified characters at random. With `opencc` installed (as
# stepaudio.text.metrics uses it) the text is converted to simplified; without it, a simplified prompt
# steers the decoder instead, which costs accuracy (round trip of espeak's formant Mandarin: CER 23% converted vs
# 32% prompted).
INITIAL_PROMPTS = {"zh": "以下是普通话的句子。"}
# Step's dialect names -> Whisper language codes. Whisper base hallucinates on "yue"; Cantonese is decoded as zh.
LANGUAGE_CODES = {"cmn": "zh", "mandarin": "zh", "chinese": "zh", "zh-cn": "zh", "yue": "zh", "cantonese": "zh",
                  "english": "en", "japanese": "ja", "korean": "ko"}


# What detection chooses among by default: the languages Step-Audio and the lite engine's voices speak (Cantonese
# is decoded as zh, see LANGUAGE_CODES).
SPOKEN_LANGUAGES = ("zh", "en", "ja", "ko")


@dataclass(frozen=True)
class WhisperOptions:
    beam_size: int = 1
    threads: int = 2
    compute_type: str = "int8"
    device: str = "cpu"
    languages: tuple[str, ...] = SPOKEN_LANGUAGES  # detection picks among these; () = any Whisper knows


class WhisperTranscriber:
    """`Transcriber` over a faster-whisper model directory (see `resolver.resolve(WHISPER_BASE)`)."""

    def __init__(self, model_dir: str | Path, options: WhisperOptions | None = None) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingExtraError("lite", "faster_whisper") from exc
        self.options = options or WhisperOptions()
        self.model_dir = Path(model_dir)
        self._model = WhisperModel(str(model_dir), device=self.options.device,
                                   compute_type=self.options.compute_type, cpu_threads=self.options.threads)
        self._simplify = _simplifier()

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        """Without a language, the likeliest of `options.languages` is read from the first 30 s window's encoder
        pass, and the same pass is decoded (faster-whisper's up-front detection would run the encoder twice,
        doubling the cost of a short turn). With `languages=()` each window's language is detected freely while
        decoding, and the language reported is inferred from the script of the text."""
        return self._transcribe(audio, language, words=False)

    def transcribe_words(self, audio: Audio, language: str | None = None) -> Transcript:
        """`transcribe`, and each word's start and end (faster-whisper's cross-attention alignment)."""
        return self._transcribe(audio, language, words=True)

    def _transcribe(self, audio: Audio, language: str | None, words: bool) -> Transcript:
        samples = _as_16k(audio)
        code = normalize_language(language)
        features, encoded = None, None
        allowed = tuple(dict.fromkeys(c for c in map(normalize_language, self.options.languages) if c))
        if code is None and allowed:
            features, encoded, code = self._detect(samples, allowed)
        simplify = self._simplify
        prompt = None if simplify else INITIAL_PROMPTS.get(code or "")
        segments, info = self._model.transcribe(
            samples,
            language=code or "en",
            multilingual=code is None,
            beam_size=self.options.beam_size,
            initial_prompt=prompt,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=words,
        )
        if encoded is not None:  # decode the pass detection already ran (the generator above has not started)
            from faster_whisper.tokenizer import Tokenizer

            tokenizer = Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=code)
            segments = self._model.generate_segments(features, tokenizer, info.transcription_options, False, encoded)
        decoded = list(segments)
        parts = tuple(Segment(float(s.start), float(s.end), _without_prompt(s.text.strip(), prompt))
                      for s in decoded)
        timed = tuple(Word(float(w.start), float(w.end), w.word.strip()) for s in decoded for w in (s.words or ())
                      if w.word.strip())
        detected = code or _language_of(" ".join(part.text for part in parts))
        if detected == "zh" and simplify is not None:
            parts = tuple(Segment(p.start, p.end, simplify(p.text)) for p in parts)
            timed = tuple(Word(w.start, w.end, simplify(w.text)) for w in timed)
        text = _join([part.text for part in parts], detected)
        return Transcript(text=text, language=detected, segments=parts, duration=len(samples) / SAMPLE_RATE,
                          words=timed)

    def _detect(self, samples: np.ndarray, allowed: tuple[str, ...]) -> tuple[np.ndarray, Any, str]:
        """Features, the first window's encoder output, and the likeliest language of `allowed` on it."""
        from faster_whisper.audio import pad_or_trim

        model = self._model
        features = model.feature_extractor(samples)
        encoded = model.encode(pad_or_trim(features[:, :model.feature_extractor.nb_max_frames]))
        ranked = [token[2:-2] for token, _ in model.model.detect_language(encoded)[0]]
        return features, encoded, min(allowed, key=lambda c: ranked.index(c) if c in ranked else len(ranked))

    def warmup(self) -> None:
        """One tiny decode so the first real request does not pay CTranslate2's start-up."""
        self.transcribe(Audio(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), SAMPLE_RATE), language="en")


def normalize_language(language: str | None) -> str | None:
    if not language or language.lower() == "auto":
        return None
    key = language.lower()
    return LANGUAGE_CODES.get(key, key.split("-")[0])


def _as_16k(audio: Audio | Any) -> np.ndarray:
    if not isinstance(audio, Audio):
        audio = load_audio(audio, sample_rate=SAMPLE_RATE)
    elif audio.sample_rate != SAMPLE_RATE:
        audio = audio.resampled(SAMPLE_RATE)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)


def _simplifier() -> Callable[[str], str] | None:
    try:
        import opencc
    except ImportError:
        return None
    converter = opencc.OpenCC("t2s")
    return lambda text: str(converter.convert(text))


def _language_of(text: str) -> str | None:
    if _KANA.search(text):
        return "ja"
    if _HANGUL.search(text):
        return "ko"
    if _HAN.search(text):
        return "zh"
    letters = [ch for ch in text if ch.isalpha()]
    return "en" if letters and all(ch.isascii() for ch in letters) else None


def _without_prompt(text: str, prompt: str | None) -> str:
    """Whisper sometimes repeats its initial prompt when it hears nothing it knows: drop the echo."""
    if not prompt:
        return text
    core = prompt.rstrip("。.")
    for size in range(len(core), 3, -1):  # the whole prompt or its first words
        if core[:size] in text:
            return text.replace(core[:size], "").strip(" ，,。")
    return text


def _join(texts: list[str], language: str | None) -> str:
    separator = "" if language in ("zh", "ja", "yue") else " "
    return separator.join(t for t in texts if t).strip()
