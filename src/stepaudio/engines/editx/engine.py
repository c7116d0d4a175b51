"""`create_engine(model_path=...)`: the Step-Audio-EditX engine (`--engine editx`).

Options: `model_path` (the parent of Step-Audio-Tokenizer/ and Step-Audio-EditX/), `tokenizer_path`, `lm_path`
(each folder directly), `device`, `dtype` / `quant` (the LM, as the step engine's), `tokenizer_weights`, `seed`
(None: unseeded, as the reference), `max_new_tokens` (a cap under the reference's 8192-token total),
`transcriber` (an engine name, e.g. `lite`, that transcribes a prompt given without its text), `voice_cache`
(clone prompts kept prepared), `prefix_cache_mb` (MiB of prompt-prefix K/V kept for reuse: a voice's clone prompt
is prefilled once, later sentences prefill only their own text; 0 turns it off), `streaming` (decode speech
chunk by chunk as the release's streaming decoder does, so the first audio comes before the clip is generated;
off: one offline decode, as the release's apps do). Its synthesizer clones (a `Voice` with a prompt wav) and is
also an `Editor`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch

from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXToken2Wav
from stepaudio.engines.base import Abilities, Engine, Part, Transcriber
from stepaudio.engines.editx.paths import EditXPaths, download_hint
from stepaudio.engines.editx.synthesizer import EditXModel, EditXSynthesizer
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.step.native_lm import DEFAULT_PREFIX_CACHE_MB, DTYPES, NativeLM
from stepaudio.errors import CheckpointError, OptionError, UnsupportedError
from stepaudio.lm.generations import planned_rows
from stepaudio.lm.quant import WEIGHT_FORMATS
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.paraformer.fast import WEIGHT_MODES, preferred_weight_mode

CHOICES: dict[str, tuple[str, ...]] = {"dtype": tuple(DTYPES), "quant": WEIGHT_FORMATS,
                                       "tokenizer_weights": WEIGHT_MODES}
INTEGERS = {"seed": None, "max_new_tokens": 1, "voice_cache": 1, "prefix_cache_mb": 0, "lm_batch": 1}
BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


@dataclass(frozen=True)
class EditXOptions:
    model_path: str | None = None
    tokenizer_path: str | None = None
    lm_path: str | None = None
    device: str = "cpu"
    dtype: str | None = None
    quant: str | None = None
    tokenizer_weights: str | None = None
    seed: int | None = None
    max_new_tokens: int | None = None
    transcriber: str | None = None
    voice_cache: int = 8
    prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB
    streaming: bool = True
    lm_batch: int | None = None  # requests the LM decodes together; None: lm.generations.default_rows

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise OptionError(f"editx engine option {name}={value!r} is not one of {', '.join(allowed)}")
        for name, least in INTEGERS.items():
            value = getattr(self, name)
            if value is not None and least is not None and value < least:
                raise OptionError(f"editx engine option {name} must be at least {least}, not {value}")
        if self.transcriber == "editx":
            raise OptionError("editx engine option transcriber names another engine (e.g. lite); EditX has no ASR")
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as exc:
            raise OptionError(f"editx engine device {self.device!r} is not a torch device") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UnsupportedError(f"device {self.device!r}: this torch sees no CUDA GPU; use --device cpu")

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> EditXOptions:
        known = sorted(f.name for f in fields(cls))
        unknown = sorted(set(options) - set(known))
        if unknown:
            close = [m for name in unknown for m in difflib.get_close_matches(name, known, n=1)]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise OptionError(f"unknown editx engine option {', '.join(unknown)}{hint}; the options are "
                              f"{', '.join(known)}")
        values: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key in INTEGERS:
                if isinstance(value, bool) or not str(value).strip().lstrip("+-").isdigit():
                    raise OptionError(f"editx engine option {key} takes an integer, not {value!r}")
                value = int(value)
            elif key == "streaming":
                if not isinstance(value, bool) and str(value).strip().lower() not in BOOLEANS:
                    raise OptionError(f"editx engine option streaming is on or off, not {value!r}")
                value = value if isinstance(value, bool) else BOOLEANS[str(value).strip().lower()]
            elif isinstance(value, bool) or not isinstance(value, str | int | float):
                raise OptionError(f"editx engine option {key} takes text, not {value!r}")
            else:
                value = str(value)
            values[key] = value
        return cls(**values)


def create_engine(**options: Any) -> Engine:
    opts = EditXOptions.from_options(options)
    paths = EditXPaths.resolve(opts.model_path, tokenizer=opts.tokenizer_path, lm=opts.lm_path)
    try:
        text_tokenizer = StepTokenizer(paths.lm)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (fetch it again: {download_hint('Step-Audio-EditX', paths.lm)})") from exc
    audio_tokenizer = Lazy(lambda: _audio_tokenizer(paths, opts))
    lm = Lazy(lambda: _lm(paths, opts))
    decoder = Lazy(lambda: _decoder(paths, opts))
    transcriber = _transcriber(opts.transcriber)
    model = EditXModel(text_tokenizer, audio_tokenizer, lm, decoder, seed=opts.seed,
                       max_new_tokens=opts.max_new_tokens)
    synthesizer = EditXSynthesizer(model, transcriber=transcriber, voice_cache=opts.voice_cache,
                                   streaming=opts.streaming)

    def speak() -> None:
        lm.get()
        audio_tokenizer.get()
        decoder.get()

    steps: list[tuple[Part, Callable[[], None]]] = [("synthesizer", speak)]
    rows = planned_rows(opts.device, opts.lm_batch)  # concurrent clones and edits reach the LM's batch
    return Engine(name="editx", transcriber=transcriber, chat=None, synthesizer=synthesizer,
                  abilities=Abilities(clones_voices=True, tool_calls=False, edits_speech=True), warmups=tuple(steps),
                  concurrency=(("synthesizer", rows),) if rows > 1 else ())


def _audio_tokenizer(paths: EditXPaths, opts: EditXOptions) -> StepAudioTokenizer:
    weights = opts.tokenizer_weights or preferred_weight_mode(opts.device)
    try:
        return StepAudioTokenizer.from_pretrained(paths.tokenizer, device=opts.device, weight_mode=weights)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (fetch it again: {download_hint('Step-Audio-Tokenizer', paths.tokenizer)})"
                              ) from exc


def _lm(paths: EditXPaths, opts: EditXOptions) -> NativeLM:
    """The Step1 LM; its head is always the checkpoint's own `lm_head.weight`, never the embedding (the release's
    config.json has no `tie_word_embeddings`, and tying makes it speak silence)."""
    try:
        return NativeLM.load(paths.lm, device=opts.device, dtype=opts.dtype, quant=opts.quant,
                             prefix_cache_mb=opts.prefix_cache_mb, lm_batch=opts.lm_batch)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (fetch it again: {download_hint('Step-Audio-EditX', paths.lm)})") from exc


def _decoder(paths: EditXPaths, opts: EditXOptions) -> EditXToken2Wav:
    try:
        return EditXToken2Wav.from_dir(paths.decoder, device=opts.device, seed=opts.seed or 0)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (fetch it again: {download_hint('Step-Audio-EditX', paths.lm)})") from exc


def _transcriber(name: str | None) -> Transcriber | None:
    """Another engine's transcriber for prompts given without their text, built on first use."""
    if name is None:
        return None
    from stepaudio.engines.registry import create_engine as create

    engine = Lazy(lambda: create(name))

    class Borrowed:
        def transcribe(self, audio: Any, language: str | None = None) -> Any:
            inner = engine.get().transcriber
            if inner is None:
                raise UnsupportedError(f"engine {name!r} has no transcriber to transcribe voice prompts")
            return inner.transcribe(audio, language)

    return Borrowed()
