"""`create_engine(model_path=...)`: the Step-Audio 2 engine (`--engine step2`), every model loaded on first use.

Chat hears the user's audio itself (the audio encoder's rows spliced into the prompt) and answers in text; the
reply is spoken by the synthesizer, which runs the same model in its speech mode and token2wav in a prompt
voice (`Step2Chat.speak` gives the reference's one-pass spoken reply, text and speech from one generation).
ASR is the model with the reference's ASR prompt. Options come as `-O KEY=VALUE`.

With `server_url` the model runs behind the vendor's vLLM server (`stepaudio vllm-command --model step2`):
chat, ASR and TTS go there as chat completions and its speech codes come back to token2wav here, from the
release folder's `token2wav/` when `model_path` is given (without it the engine only writes and hears).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.engines.base import Abilities, Engine, Part
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.step2.chat import ChatSettings, Step2Chat, Step2Transcriber
from stepaudio.engines.step2.paths import Step2Paths, download_hint
from stepaudio.engines.step2.remote import (
    SERVED_NAME,
    Step2RemoteChat,
    Step2RemoteSynthesizer,
    Step2RemoteTranscriber,
    Step2Server,
)
from stepaudio.engines.step2.runtime import DEFAULT_PREFIX_CACHE_MB, Step2Runtime
from stepaudio.engines.step2.tts import Step2Synthesizer, TTSSettings
from stepaudio.engines.step2.voices import Step2Voices
from stepaudio.errors import CheckpointError, OptionError, UnsupportedError
from stepaudio.lm.generations import planned_rows
from stepaudio.lm.quant import WEIGHT_FORMATS
from stepaudio.text.step2_prompts import DEFAULT_SYSTEM
from stepaudio.tokenizer.semantic import SemanticTokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CHOICES: dict[str, tuple[str, ...]] = {"dtype": tuple(DTYPES), "quant": WEIGHT_FORMATS, "history": ("text", "audio")}
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class Step2Options:
    model_path: str | None = None
    voices_dir: str | None = None
    voice: str | None = None  # the default voice (a NAME.wav of the voices folder); None: the first one
    device: str = "cpu"
    dtype: str | None = None  # LM and encoder dtype; default the checkpoint's (bf16)
    quant: str | None = None  # an lm.quant weight format for the LM; None: auto
    system: str = DEFAULT_SYSTEM
    think: bool = False
    history: str = "text"
    voice_switch: bool = True
    seed: int | None = None
    chat_max_tokens: int = 2048
    max_segment_tokens: int | None = None
    prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB  # K/V of earlier prompts kept for reuse (0: off)
    lm_batch: int | None = None  # requests the in-process LM decodes together; None: lm.generations.default_rows
    remote_parallel: int = 4  # requests sent at once to a served model (vLLM batches them)
    server_url: str | None = None  # a served Step-Audio 2 (vLLM): the LM runs there
    server_model: str = SERVED_NAME
    api_key: str | None = None

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise OptionError(f"step2 engine option {name}={value!r} is not one of {', '.join(allowed)}")
        for name in ("chat_max_tokens", "max_segment_tokens", "lm_batch", "remote_parallel"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise OptionError(f"step2 engine option {name} must be at least 1, not {value}")
        if self.prefix_cache_mb < 0:
            raise OptionError(f"step2 engine option prefix_cache_mb is a size in MiB (0 turns reuse off), "
                              f"not {self.prefix_cache_mb}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise OptionError(f"step2 engine device {self.device!r} is not a torch device") from exc

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Step2Options:
        """Keyword options (the CLI's `-O KEY=VALUE`, JSON-parsed) checked and converted to their field types."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(options) - set(known))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, list(known), n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise OptionError(f"unknown step2 engine option {', '.join(unknown)}{hint}; the options are "
                              f"{', '.join(sorted(known))}")
        values = {k: _convert(k, str(known[k].type), v) for k, v in options.items() if v is not None}
        return cls(**values)


def _convert(key: str, kind: str, value: Any) -> Any:
    """One option's value as its field's type (`kind` is the annotation's text)."""
    if kind.startswith("bool"):
        flag = value if isinstance(value, bool) else BOOLEANS.get(str(value).lower())
        if flag is None:
            raise OptionError(f"step2 engine option {key} takes true or false, not {value!r}")
        return flag
    if kind.startswith("int"):
        if isinstance(value, bool) or not str(value).strip().lstrip("+-").isdigit():
            raise OptionError(f"step2 engine option {key} takes an integer, not {value!r}")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise OptionError(f"step2 engine option {key} takes text, not {value!r}")
    return str(value)


def create_engine(**options: Any) -> Engine:
    opts = Step2Options.from_options(options)
    if torch.device(opts.device).type == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(f"device {opts.device!r}: this torch sees no CUDA GPU; use --device cpu")
    if opts.server_url and not opts.model_path:
        return _served(opts, None)
    paths = Step2Paths.resolve(opts.model_path, opts.voices_dir)
    if opts.server_url:
        return _served(opts, paths)
    runtime = Lazy(lambda: _load_runtime(paths, opts))
    decoder, voices = _speech(paths, opts)
    synthesizer = None
    if decoder is not None and voices is not None:
        synthesizer = Step2Synthesizer(runtime.get, decoder.get, voices, _tts_settings(opts))
    chat = Step2Chat(runtime.get, _chat_settings(opts), decoder.get if decoder else None, voices)
    return Engine(
        name="step2",
        transcriber=Step2Transcriber(runtime.get, max_new_tokens=min(512, opts.chat_max_tokens)),
        chat=chat,
        synthesizer=synthesizer,
        abilities=Abilities(hears_audio=True, clones_voices=synthesizer is not None, tool_calls=True,
                            speaks=decoder is not None),
        warmups=_warmups(runtime, decoder, voices),
        concurrency=_concurrency(planned_rows(opts.device, opts.lm_batch), synthesizer is not None),
    )


def _concurrency(width: int, speech: bool) -> tuple[tuple[Part, int], ...]:
    """Requests each part serves at once: as many as the LM decodes together (in-process rows, or what a served
    model is sent at once), so concurrent requests reach the batch instead of queueing in front of it. Chat, ASR
    and TTS share the one LM."""
    if width <= 1:
        return ()
    parts: tuple[Part, ...] = ("chat", "transcriber", "synthesizer") if speech else ("chat", "transcriber")
    return tuple((part, width) for part in parts)


def _served(opts: Step2Options, paths: Step2Paths | None) -> Engine:
    """The engine over a served model: the same chat, ASR and TTS, the LM behind `server_url`."""
    server = Step2Server(str(opts.server_url), opts.server_model, opts.api_key)
    decoder, voices = _speech(paths, opts) if paths is not None else (None, None)
    synthesizer = None
    if decoder is not None and voices is not None:
        synthesizer = Step2RemoteSynthesizer(server, decoder.get, voices, _tts_settings(opts))
    steps: tuple[tuple[Part, Callable[[], None]], ...] = ()
    if voices is not None and voices.names():
        prepare = voices

        def speak() -> None:
            prepare.prompt(None)  # token2wav, CAM++, the S3 tokenizer and the default voice

        steps = (("synthesizer", speak),)
    return Engine(
        name="step2",
        transcriber=Step2RemoteTranscriber(server, max_new_tokens=min(512, opts.chat_max_tokens)),
        chat=Step2RemoteChat(server, _chat_settings(opts), decoder.get if decoder else None, voices),
        synthesizer=synthesizer,
        abilities=Abilities(hears_audio=True, clones_voices=synthesizer is not None, tool_calls=True,
                            speaks=decoder is not None),
        warmups=steps,
        concurrency=_concurrency(opts.remote_parallel, synthesizer is not None),
    )


def _speech(paths: Step2Paths, opts: Step2Options) -> tuple[Lazy[Token2Wav] | None, Step2Voices | None]:
    """token2wav and the voices, when the release folder has `token2wav/`."""
    if paths.token2wav is None:
        return None, None
    folder = paths.token2wav
    decoder = Lazy(lambda: Token2Wav.from_dir(folder, device=opts.device, seed=opts.seed or 0))
    tokenizer = Lazy(lambda: _prompt_tokenizer(folder))
    return decoder, Step2Voices(paths.voices, decoder.get, tokenizer.get, opts.voice)


def _chat_settings(opts: Step2Options) -> ChatSettings:
    return ChatSettings(default_system=opts.system, max_new_tokens=opts.chat_max_tokens, think=opts.think,
                        history="audio" if opts.history == "audio" else "text", voice_switch=opts.voice_switch)


def _tts_settings(opts: Step2Options) -> TTSSettings:
    return TTSSettings(max_segment_tokens=opts.max_segment_tokens, seed=opts.seed)


def _load_runtime(paths: Step2Paths, opts: Step2Options) -> Step2Runtime:
    try:
        return Step2Runtime.load(paths.release, device=opts.device, dtype=DTYPES[opts.dtype] if opts.dtype else None,
                                 quant=opts.quant, prefix_cache_mb=opts.prefix_cache_mb,
                                 lm_batch=opts.lm_batch)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (to fetch the release again: {download_hint(paths.release)})") from exc


def _prompt_tokenizer(folder: Path) -> SemanticTokenizer:
    """The S3 tokenizer v2 that turns prompt wavs into speech tokens."""
    path = folder / "speech_tokenizer_v2_25hz.onnx"
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing in {folder}: voice prompts need it "
                              f"({download_hint(folder.parent)})")
    return SemanticTokenizer.from_onnx(path)


def _warmups(runtime: Lazy[Step2Runtime], decoder: Lazy[Token2Wav] | None,
             voices: Step2Voices | None) -> tuple[tuple[Part, Callable[[], None]], ...]:
    def listen() -> None:
        runtime.get()

    def speak() -> None:
        runtime.get()
        if voices is not None and voices.names():
            voices.prompt(None)  # loads token2wav, CAM++ and the S3 tokenizer, and prepares the default voice

    steps: list[tuple[Part, Callable[[], None]]] = [("transcriber", listen), ("chat", listen)]
    if decoder is not None:
        steps.append(("synthesizer", speak))
    return tuple(steps)
