"""`create_engine(model_path=...)`: the Step-Audio engine, every model loaded on first use.

The chat and TTS language models run in this process (`--device`, `--dtype`, `--quant`) or behind an
OpenAI-compatible completions server such as vLLM (`chat_url`, `tts_url`); the audio tokenizer and the
decoders always run here.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch

from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav, preferred_flow_dtype
from stepaudio.engines.base import Abilities, Engine, Part
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lm_backend import LMBackend
from stepaudio.engines.remote import RemoteLM
from stepaudio.engines.step.chat import ChatSettings, StepChat, StepTranscriber
from stepaudio.engines.step.native_lm import DEFAULT_PREFIX_CACHE_MB, DTYPES, NativeLM
from stepaudio.engines.step.paths import TTS_DIR, StepModelPaths, download_hint
from stepaudio.engines.step.roleplay import roleplay_prompt
from stepaudio.engines.step.tts import StepSynthesizer, TTSSettings
from stepaudio.engines.step.voices import VoiceBank
from stepaudio.errors import CheckpointError, OptionError, UnsupportedError
from stepaudio.lm.generations import planned_rows
from stepaudio.lm.quant import WEIGHT_FORMATS
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODES, preferred_weight_mode

FLOW_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Options with a fixed set of values, and integer options with their least value (None: any integer).
CHOICES: dict[str, tuple[str, ...]] = {
    "dtype": tuple(DTYPES), "quant": WEIGHT_FORMATS, "flow_dtype": ("auto", *FLOW_DTYPES),
    "tokenizer_weights": WEIGHT_MODES,
}
INTEGERS: dict[str, int | None] = {"seed": None, "max_segment_tokens": 1, "chat_max_tokens": 1, "prefix_cache_mb": 0,
                                   "lm_batch": 1, "remote_parallel": 1}
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class StepOptions:
    model_path: str | None = None
    tokenizer_path: str | None = None
    tts_path: str | None = None
    chat_path: str | None = None
    speakers_dir: str | None = None
    device: str = "cpu"
    dtype: str | None = None  # LM dtype; default the checkpoint's (bf16)
    quant: str | None = None  # a stepaudio.lm.quant weight format; None: auto (fastest here; int8 if 1/3 cheaper)
    tokenizer_weights: str | None = None  # vq02 weight mode; None: fp32 precision, packed where measured faster
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
    # MiB of prompt-prefix K/V kept per in-process LM (voice prompts, chat history); 0 turns reuse off
    prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB
    # requests an in-process LM decodes together (1: each alone); None: lm.generations.default_rows
    lm_batch: int | None = None
    # requests sent at once to a served LM (chat_url, tts_url): vLLM and `serve-lm` batch concurrent requests
    remote_parallel: int = 4

    def __post_init__(self) -> None:
        """Bad values fail here, naming the allowed ones, not as a traceback at the first use."""
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise OptionError(f"step engine option {name}={value!r} is not one of {', '.join(allowed)}")
        for name, least in INTEGERS.items():
            value = getattr(self, name)
            if value is not None and least is not None and value < least:
                raise OptionError(f"step engine option {name} must be at least {least}, not {value}")
        try:
            torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise OptionError(f"step engine device {self.device!r} is not a torch device: use cpu, cuda, cuda:N "
                              "or mps") from exc

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> StepOptions:
        """Keyword options (the CLI's `-O KEY=VALUE`, JSON-parsed) checked and converted to their field types."""
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(known))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise OptionError(f"unknown step engine option {', '.join(unknown)}{hint}; the options are "
                              f"{', '.join(known)}")
        values = {k: v for k, v in options.items() if v is not None}
        for key, value in values.items():
            values[key] = _option_value(key, value)
        return cls(**values)


def _option_value(key: str, value: Any) -> Any:
    """One option's value as its field's type: integers, on/off, or text (a number given for a text option,
    e.g. `-O voice=2`, is that text)."""
    if key in INTEGERS:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and
                                                                       value.strip().lstrip("+-").isdigit())):
            raise OptionError(f"step engine option {key} takes an integer, not {value!r}")
        return int(value)
    if key == "streaming":
        flag = BOOLEANS.get(str(value).lower())
        if flag is None:
            raise OptionError(f"step engine option streaming takes true or false, not {value!r}")
        return flag
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise OptionError(f"step engine option {key} takes text, not {value!r}")
    return str(value)


def create_engine(**options: Any) -> Engine:
    opts = StepOptions.from_options(options)
    _check_device_available(opts.device)
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
        concurrency=_concurrency(opts, has_chat, synthesizer is not None),
    )


def _concurrency(opts: StepOptions, chat: bool, speech: bool) -> tuple[tuple[Part, int], ...]:
    """Requests each part serves at once: as many as its in-process LM decodes together (`lm_batch`), so that
    concurrent requests reach the batcher instead of queueing one by one in front of it, or `remote_parallel`
    for a served LM, whose server batches them. The chat LM serves the transcriber too: they share its rows."""
    rows = planned_rows(opts.device, opts.lm_batch)
    chat_width = opts.remote_parallel if opts.chat_url is not None else rows
    speech_width = opts.remote_parallel if opts.tts_url is not None else rows
    widths: list[tuple[Part, int]] = []
    if chat and chat_width > 1:
        widths += [("chat", chat_width), ("transcriber", chat_width)]
    if speech and speech_width > 1:
        widths.append(("synthesizer", speech_width))
    return tuple(widths)


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


def _check_device_available(device: str) -> None:
    kind = torch.device(device).type
    if kind == "cuda" and not torch.cuda.is_available():
        raise UnsupportedError(f"device {device!r}: this torch sees no CUDA GPU (torch.cuda.is_available() is "
                               "False); use --device cpu, or a CUDA build of torch on a machine with a GPU")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise UnsupportedError(f"device {device!r}: Apple's MPS is not available here; use --device cpu")


@contextmanager
def _release(part: str, folder: Path) -> Iterator[None]:
    """A broken file while loading `part` from `folder`: the message also says which release to fetch again."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (to fetch the release again: {download_hint(part, folder)})") from exc


def _load_tokenizer(paths: StepModelPaths, opts: StepOptions) -> StepAudioTokenizer:
    folder = paths.require("tokenizer")
    with _release("tokenizer", folder):
        tokenizer = StepAudioTokenizer.from_pretrained(folder, device=opts.device,
                                                       weight_mode=tokenizer_weights(opts))
    if tokenizer.linguistic.encoder.steady_step is not None:
        tokenizer.linguistic.warm_up()  # compile now (minutes), not inside the first live stream
    return tokenizer


def tokenizer_weights(opts: StepOptions) -> str:
    if opts.tokenizer_weights is None:
        return preferred_weight_mode(opts.device)
    return opts.tokenizer_weights


def flow_dtype(opts: StepOptions) -> torch.dtype:
    if opts.flow_dtype == "auto":
        return preferred_flow_dtype(opts.device)
    return FLOW_DTYPES[opts.flow_dtype]  # a known name: StepOptions checked it


def _decoder_builder(paths: StepModelPaths, opts: StepOptions, music: bool):  # type: ignore[no-untyped-def]
    def build() -> Token2Wav:
        folder = paths.cosyvoice(music)
        with _release("tts", folder.parent):
            return Token2Wav.from_dir(folder, device=opts.device, flow_dtype=flow_dtype(opts))

    return build


def _backend(paths: StepModelPaths, opts: StepOptions, chat: bool) -> LMBackend:
    url = opts.chat_url if chat else opts.tts_url
    if url:
        return RemoteLM(url, opts.chat_model if chat else opts.tts_model, api_key=opts.api_key)
    part = "chat" if chat else "tts"
    folder = paths.require(part)
    with _release(part, folder):
        return NativeLM.load(folder, device=opts.device, dtype=opts.dtype, quant=opts.quant,
                             prefix_cache_mb=opts.prefix_cache_mb, lm_batch=opts.lm_batch)


def _token_counter(tokenizer: StepTokenizer | None) -> Callable[[str], int] | None:
    if tokenizer is None:
        return None
    return lambda text: len(tokenizer.encode(text))


def _text_tokenizer(paths: StepModelPaths) -> StepTokenizer | None:
    """The TTS prompt is built as ids here, so TTS needs the tokenizer even with a remote LM; the chat prompt's
    length (usage) is counted with it too (both models share one vocabulary). A TTS folder without it
    anywhere is a broken download, said now rather than as a missing synthesizer later."""
    for folder in (paths.tts, paths.chat):
        if folder is not None and (Path(folder) / "tokenizer.model").is_file():
            part = "tts" if folder == paths.tts else "chat"
            with _release(part, Path(folder)):
                return StepTokenizer(folder)
    if paths.tts is not None and paths.tts.is_dir():
        raise CheckpointError(f"{paths.tts / 'tokenizer.model'} is missing: the {TTS_DIR} download is incomplete; "
                              f"fetch it again ({download_hint('tts', paths.tts)})")
    return None
