"""`create_engine(model_path=...)`: the Step-Audio engine, every model loaded on first use.

The chat and TTS language models run in this process (`--device`, `--dtype`, `--quant`) or behind an
OpenAI-compatible completions server such as vLLM (`chat_url`, `tts_url`); the audio tokenizer and the
decoders always run here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav, preferred_flow_dtype
from stepaudio.engines.base import Abilities, Engine, Part
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lm_backend import LMBackend
from stepaudio.engines.remote import RemoteLM
from stepaudio.engines.step.chat import ChatSettings, StepChat, StepTranscriber
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.engines.step.paths import StepModelPaths
from stepaudio.engines.step.roleplay import roleplay_prompt
from stepaudio.engines.step.tts import StepSynthesizer, TTSSettings
from stepaudio.engines.step.voices import VoiceBank
from stepaudio.errors import UnsupportedError
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODES

FLOW_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class StepOptions:
    model_path: str | None = None
    tokenizer_path: str | None = None
    tts_path: str | None = None
    chat_path: str | None = None
    speakers_dir: str | None = None
    device: str = "cpu"
    dtype: str | None = None  # LM dtype; default the checkpoint's (bf16)
    quant: str | None = None  # a stepaudio.lm.quant weight format; None: auto (the fastest 16-bit one on CPU)
    tokenizer_weights: str | None = None  # vq02 weight mode; None: fp32-packed on CPU (exact), fp32 elsewhere
    flow_dtype: str = "auto"  # fp32, bf16, fp16, or auto (bf16 on CUDA / AMX CPUs, else fp32)
    chat_url: str | None = None
    chat_model: str = "step-audio-chat"
    tts_url: str | None = None
    tts_model: str = "step-audio-tts-3b"
    api_key: str | None = None
    voice: str = "Tingting"
    role: str | None = None
    streaming: bool = True
    seed: int | None = None
    max_segment_tokens: int | None = None
    chat_max_tokens: int = 2048

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> StepOptions:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(options) - known)
        if unknown:
            raise TypeError(f"unknown step engine option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        values = {k: v for k, v in options.items() if v is not None}
        if "streaming" in values:
            values["streaming"] = str(values["streaming"]).lower() not in ("0", "false", "no")
        for key in ("seed", "max_segment_tokens", "chat_max_tokens"):
            if key in values:
                values[key] = int(values[key])
        return cls(**values)


def create_engine(**options: Any) -> Engine:
    opts = StepOptions.from_options(options)
    flow_dtype(opts), tokenizer_weights(opts)  # bad values fail here, not at the first use
    paths = StepModelPaths.resolve(
        opts.model_path, tokenizer=opts.tokenizer_path, tts=opts.tts_path, chat=opts.chat_path,
        speakers=opts.speakers_dir,
    )
    audio_tokenizer = Lazy(lambda: _load_tokenizer(paths, opts))
    decoders = {music: Lazy(_decoder_builder(paths, opts, music)) for music in (False, True)}

    def decoder(music: bool) -> Token2Wav:
        return decoders[music].get()

    chat_lm = Lazy(lambda: _backend(paths, opts, chat=True))
    tts_lm = Lazy(lambda: _backend(paths, opts, chat=False))
    text_tokenizer = _text_tokenizer(paths)
    system = roleplay_prompt(opts.role) if opts.role else None
    chat = StepChat(chat_lm, audio_tokenizer,
                    ChatSettings(default_system=system, max_new_tokens=opts.chat_max_tokens),
                    count_tokens=_token_counter(text_tokenizer))
    synthesizer = None
    if text_tokenizer is not None:
        voices = VoiceBank(audio_tokenizer, decoders[False].get, paths.speakers)
        synthesizer = StepSynthesizer(
            text_tokenizer, tts_lm, voices, decoder,
            TTSSettings(default_voice=opts.voice, streaming=opts.streaming, seed=opts.seed,
                        max_segment_tokens=opts.max_segment_tokens),
        )
    has_chat = paths.chat is not None or opts.chat_url is not None
    return Engine(
        name="step",
        transcriber=StepTranscriber(chat, max_new_tokens=min(512, opts.chat_max_tokens)) if has_chat else None,
        chat=chat if has_chat else None,
        synthesizer=synthesizer,
        abilities=Abilities(hears_audio=has_chat, clones_voices=synthesizer is not None, tool_calls=has_chat),
        warmups=_warmups(has_chat, synthesizer is not None, chat_lm, tts_lm, audio_tokenizer, decoders[False]),
    )


def _warmups(chat: bool, speech: bool, chat_lm: Lazy[LMBackend], tts_lm: Lazy[LMBackend],
             audio_tokenizer: Lazy[StepAudioTokenizer], decoder: Lazy[Token2Wav]
             ) -> tuple[tuple[Part, Callable[[], None]], ...]:
    """Loading steps per part: the chat model hears through the audio tokenizer and also transcribes."""
    def listen() -> None:
        chat_lm.get()
        audio_tokenizer.get()

    def speak() -> None:
        tts_lm.get()
        audio_tokenizer.get()  # clones tokenize their prompt
        decoder.get()

    steps: list[tuple[Part, Callable[[], None]]] = []
    if chat:
        steps += [("transcriber", listen), ("chat", listen)]
    if speech:
        steps.append(("synthesizer", speak))
    return tuple(steps)


def _load_tokenizer(paths: StepModelPaths, opts: StepOptions) -> StepAudioTokenizer:
    tokenizer = StepAudioTokenizer.from_pretrained(
        paths.require("tokenizer"), device=opts.device, weight_mode=tokenizer_weights(opts))
    if tokenizer.linguistic.encoder.steady_step is not None:
        tokenizer.linguistic.warm_up()  # compile now (minutes), not inside the first live stream
    return tokenizer


def tokenizer_weights(opts: StepOptions) -> str:
    if opts.tokenizer_weights is None:
        return "fp32-packed" if opts.device == "cpu" else "fp32"
    if opts.tokenizer_weights not in WEIGHT_MODES:
        raise UnsupportedError(f"tokenizer_weights must be one of {WEIGHT_MODES}, got {opts.tokenizer_weights!r}")
    return opts.tokenizer_weights


def flow_dtype(opts: StepOptions) -> torch.dtype:
    if opts.flow_dtype == "auto":
        return preferred_flow_dtype(opts.device)
    if opts.flow_dtype not in FLOW_DTYPES:
        raise UnsupportedError(f"flow_dtype must be auto or one of {sorted(FLOW_DTYPES)}, got {opts.flow_dtype!r}")
    return FLOW_DTYPES[opts.flow_dtype]


def _decoder_builder(paths: StepModelPaths, opts: StepOptions, music: bool):  # type: ignore[no-untyped-def]
    def build() -> Token2Wav:
        return Token2Wav.from_dir(paths.cosyvoice(music), device=opts.device, flow_dtype=flow_dtype(opts))

    return build


def _backend(paths: StepModelPaths, opts: StepOptions, chat: bool) -> LMBackend:
    url = opts.chat_url if chat else opts.tts_url
    if url:
        return RemoteLM(url, opts.chat_model if chat else opts.tts_model, api_key=opts.api_key)
    folder = paths.require("chat" if chat else "tts")
    return NativeLM.load(folder, device=opts.device, dtype=opts.dtype, quant=opts.quant)


def _token_counter(tokenizer: StepTokenizer | None) -> Callable[[str], int] | None:
    if tokenizer is None:
        return None
    return lambda text: len(tokenizer.encode(text))


def _text_tokenizer(paths: StepModelPaths) -> StepTokenizer | None:
    """The TTS prompt is built as ids here, so TTS needs the tokenizer even with a remote LM; the chat prompt's
    length (usage) is counted with it too (both models share one vocabulary)."""
    for folder in (paths.tts, paths.chat):
        if folder is not None and (Path(folder) / "tokenizer.model").is_file():
            return StepTokenizer(folder)
    return None
