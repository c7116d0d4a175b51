"""EditX clone and edit: prepared audio -> prompt ids -> LM audio ids -> 24 kHz speech (REFERENCE-EDITX.md §3-7).

`EditXModel` runs one generation: sampling as the reference (temperature 0.7, top-k 50, the repetition-aware
ban, at most 8192 tokens prompt included, stop on `<|EOT|>`) and the decoder with the input audio's own ids,
mel and x-vector as its prompt. `EditXSynthesizer` is the engine's `Synthesizer` (clone a `Voice`: a prompt
wav and its transcript; dialect tags; emotion, style and speed words become edits after the clone) and its
`Editor`. Speech that is spoken (`synthesize`) is decoded as it is generated, with the release's streaming
decoder (`streaming=False`: offline, once per utterance, as the release's apps do); results that are edited
further or returned whole (`clone`, `edit`) are decoded offline.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from stepaudio.audio.io import Audio
from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXToken2Wav
from stepaudio.engines.base import AudioChunk, CancelToken, SpeechInstructions, Transcriber, Voice
from stepaudio.engines.editx.audio import PreparedAudio, RawAudio, prepare, read_raw
from stepaudio.engines.editx.editor import EditResult
from stepaudio.engines.lm_backend import LMBackend
from stepaudio.engines.step.tts import token_budget
from stepaudio.errors import OptionError, StepAudioError, TagError, UnsupportedError
from stepaudio.lm import TTS_SAMPLING, GenerationConfig
from stepaudio.text.editx_prompts import (
    DIALECT_TAGS,
    EDIT_OPTIONS,
    Edit,
    build_clone_prompt,
    build_edit_prompt,
    clone_voice_id,
)
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

MAX_LENGTH = 8192  # prompt + generated, the reference's `max_length`
CACHE_MULTIPLE = 256  # a request's K/V (prompt + budget) is rounded up to this many positions
SAMPLE_RATE = 24000
DIALECTS = {tag.strip("[]").lower(): tag for tag in DIALECT_TAGS} | {
    "四川话": "[Sichuanese]", "粤语": "[Cantonese]", "日语": "[Japanese]", "韩语": "[Korean]"}


class EditXModel:
    """The loaded parts (built on first use) and one prompt -> speech step."""

    def __init__(self, tokenizer: StepTokenizer, audio_tokenizer: Callable[[], StepAudioTokenizer],
                 lm: Callable[[], LMBackend], decoder: Callable[[], EditXToken2Wav], *, seed: int | None = None,
                 max_new_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self._audio_tokenizer = audio_tokenizer
        self._lm = lm
        self._decoder = decoder
        self.seed = seed
        self.max_new_tokens = max_new_tokens

    def prepare(self, raw: RawAudio) -> PreparedAudio:
        return prepare(raw, self._audio_tokenizer(), self._decoder())

    def generate(self, prompt: Sequence[int], cancel: CancelToken | None = None,
                 expected: int | None = None) -> list[int]:
        """LM audio ids after `prompt` (text ids the model writes are dropped with a warning)."""
        return list(self.audio_ids(prompt, cancel, expected))

    def budget(self, prompt_len: int, expected: int | None = None) -> int:
        """Most tokens one request may generate: `max_new_tokens` where set, else `expected` (the request's own
        bound, see `speech_budget`) with prompt + budget rounded up to `CACHE_MULTIPLE`, never past the
        reference's 8192 in all. The LM's K/V cache holds prompt + budget, so a short request holds a short cache
        instead of the release's 8192 positions."""
        room = MAX_LENGTH - prompt_len
        if room <= 0:
            raise StepAudioError(f"the prompt has {prompt_len} tokens, over EditX's {MAX_LENGTH}: use shorter audio")
        if self.max_new_tokens:
            return min(room, self.max_new_tokens)
        if expected is None:
            return room
        sized = -(-(prompt_len + expected) // CACHE_MULTIPLE) * CACHE_MULTIPLE
        return min(room, sized - prompt_len)

    def audio_ids(self, prompt: Sequence[int], cancel: CancelToken | None = None,
                  expected: int | None = None) -> Iterator[int]:
        """The LM audio ids after `prompt` as they are generated (text ids are dropped with a warning)."""
        budget = self.budget(len(prompt), expected)
        config = GenerationConfig(max_new_tokens=budget, stop_ids=STEP1.stop_ids, sampling=TTS_SAMPLING,
                                  seed=self.seed)
        audio = skipped = 0
        for token in self._lm().stream(list(prompt), config, cancel):
            if token.id is not None and STEP1.is_audio_piece_id(token.id) and token.id - STEP1.audio_offset < 5120:
                audio += 1
                yield token.id
            else:
                skipped += 1
        if skipped:
            warnings.warn(f"the EditX model wrote {skipped} non-audio tokens; they were dropped", RuntimeWarning,
                          stacklevel=3)
        if audio + skipped >= budget:
            warnings.warn(f"generation reached its budget of {budget} tokens and was cut", RuntimeWarning, stacklevel=3)

    def speak(self, prompt: Sequence[int], source: PreparedAudio, cancel: CancelToken | None = None,
              expected: int | None = None) -> np.ndarray:
        """Generate and decode with `source` (the clone prompt or the edited input) as the decoder's prompt."""
        ids = self.generate(prompt, cancel, expected)
        if cancel is not None and cancel.cancelled:
            return np.zeros(0, dtype=np.float32)
        if not ids:
            raise StepAudioError("the EditX model wrote no audio tokens")
        return self._decoder()([i - STEP1.audio_offset for i in ids], source.features)

    def speak_stream(self, prompt: Sequence[int], source: PreparedAudio,
                     cancel: CancelToken | None = None, expected: int | None = None) -> Iterator[np.ndarray]:
        """As `speak`, decoded chunk by chunk while the LM generates (the release's streaming decoder): float32
        pieces, the first after 30 audio ids."""
        stream = self._decoder().stream(source.features)
        spoken = False
        for lm_id in self.audio_ids(prompt, cancel, expected):
            spoken = True
            piece = stream.push([lm_id - STEP1.audio_offset])
            if piece.size:
                yield piece
        if cancel is not None and cancel.cancelled:
            return
        if not spoken:
            raise StepAudioError("the EditX model wrote no audio tokens")
        tail = stream.finish()
        if tail.size:
            yield tail


class EditXSynthesizer:
    """Clones (`synthesize` with a clone `Voice`, or `clone`) and edits (`edit`): a Synthesizer and an Editor."""

    sample_rate = SAMPLE_RATE

    def __init__(self, model: EditXModel, *, transcriber: Transcriber | None = None, voice_cache: int = 8,
                 streaming: bool = True) -> None:
        self.model = model
        self.streaming = streaming
        self._transcriber = transcriber
        self._voices: OrderedDict[object, tuple[PreparedAudio, str, str]] = OrderedDict()
        self._limit = voice_cache
        self._lock = threading.Lock()

    def voices(self) -> list[str]:
        """EditX has no built-in speakers: every voice is a clone."""
        return []

    def synthesize(self, text: str, voice: Voice | str | None = None,
                   instructions: SpeechInstructions | None = None,
                   cancel: CancelToken | None = None) -> Iterator[AudioChunk]:
        instructions = instructions or SpeechInstructions()
        if not isinstance(voice, Voice) or not voice.is_clone:
            raise UnsupportedError("the editx engine only clones: give a voice with its prompt audio "
                                   "(stepaudio tts --engine editx --voice-wav P.wav --voice-text '...')")
        assert voice.prompt_audio is not None
        edits = instruction_edits(instructions)
        target = apply_dialect(text, instructions.dialect)
        if not target.strip():
            raise TagError("there is no text to speak")
        # every step but the last feeds the next one whole; the last one is what the listener hears
        prompt, source = self._clone_prompt(target, voice.prompt_audio, voice.prompt_text)
        said = target
        expected = speech_budget(target)
        for edit in edits:
            heard = self.model.speak(prompt, source, cancel, expected)
            if cancel is not None and cancel.cancelled:
                return
            prompt, source = self._edit_prompt(heard, self.sample_rate, said, edit)
            said = edit.result_text(said)
            expected = speech_budget(said, len(source.lm_ids))
        pieces = (self.model.speak_stream(prompt, source, cancel, expected) if self.streaming
                  else iter([self.model.speak(prompt, source, cancel, expected)]))
        volume = instructions.volume
        for samples in pieces:
            if volume is not None and volume != 1.0:
                samples = np.clip(samples * float(volume), -1.0, 1.0).astype(np.float32)
            if samples.size:
                yield AudioChunk(samples, self.sample_rate, text=text)
        yield AudioChunk(np.zeros(0, dtype=np.float32), self.sample_rate, text=text, is_last=True)

    def clone(self, text: str, prompt_audio: Path | str | bytes | Audio, prompt_text: str | None,
              cancel: CancelToken | None = None) -> EditResult:
        """`text` (as given: dialect tags, pinyin) in the voice of `prompt_audio`, whose transcript is
        `prompt_text` (transcribed by the configured transcriber when missing)."""
        prompt, prepared = self._clone_prompt(text, prompt_audio, prompt_text)
        return EditResult(self.model.speak(prompt, prepared, cancel, speech_budget(text)), self.sample_rate, text,
                          None, "clone")

    def edit(self, samples: np.ndarray, sample_rate: int, audio_text: str, edit: Edit,
             cancel: CancelToken | None = None) -> EditResult:
        """One edit of `samples` (mono or `[channels, n]`) that say `audio_text`."""
        prompt, prepared = self._edit_prompt(samples, sample_rate, audio_text, edit)
        out = self.model.speak(prompt, prepared, cancel,
                               speech_budget(edit.result_text(audio_text), len(prepared.lm_ids)))
        return EditResult(out, self.sample_rate, edit.result_text(audio_text), edit, edit.label)

    def _clone_prompt(self, text: str, prompt_audio: Path | str | bytes | Audio,
                      prompt_text: str | None) -> tuple[list[int], PreparedAudio]:
        prepared, speaker, transcript = self._voice(prompt_audio, prompt_text)
        prompt = build_clone_prompt(self.model.tokenizer, target_text=text, prompt_text=transcript, speaker=speaker,
                                    prompt_audio_ids=prepared.lm_ids)
        return prompt, prepared

    def _edit_prompt(self, samples: np.ndarray, sample_rate: int, audio_text: str,
                     edit: Edit) -> tuple[list[int], PreparedAudio]:
        if not audio_text.strip() and edit.edit_type not in ("denoise", "vad"):
            raise OptionError(f"a {edit.edit_type} edit needs the text the audio says")
        prepared = self.model.prepare(read_raw(samples, sample_rate))
        prompt = build_edit_prompt(self.model.tokenizer, instruction=edit.instruction(audio_text),
                                   prompt_audio_ids=prepared.lm_ids)
        return prompt, prepared

    def _voice(self, source: Path | str | bytes | Audio, prompt_text: str | None) -> tuple[PreparedAudio, str, str]:
        """A clone prompt prepared once per (file, size, mtime, transcript); bounded LRU."""
        key: object | None = None
        if isinstance(source, Path | str):
            path = Path(source)
            if not path.is_file():
                raise StepAudioError(f"voice prompt audio {path} not found")
            stat = path.stat()
            key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, prompt_text)
            with self._lock:
                if key in self._voices:
                    self._voices.move_to_end(key)
                    return self._voices[key]
        raw = read_raw(source)
        transcript = prompt_text if prompt_text and prompt_text.strip() else self._transcribe(raw)
        prepared = self.model.prepare(raw)
        entry = (prepared, clone_voice_id(transcript, raw.channels), transcript)
        if key is not None:
            with self._lock:
                self._voices[key] = entry
                while len(self._voices) > self._limit:
                    self._voices.popitem(last=False)
        return entry

    def _transcribe(self, raw: RawAudio) -> str:
        if self._transcriber is None:
            raise StepAudioError("a cloned voice needs the transcript of its prompt audio (--voice-text), or an "
                                 "engine to transcribe it (-O transcriber=lite)")
        text = self._transcriber.transcribe(Audio(raw.mono(), raw.sample_rate)).text.strip()
        if not text:
            raise StepAudioError("the voice prompt was transcribed as nothing: give its text (--voice-text)")
        return text


def speech_budget(text: str, source_ids: int = 0) -> int:
    """The tokens a request may need: Step1's text-proportional bound for slow speech (3x the expected length)
    and, for an edit, twice its source audio's ids (an edit re-speaks what the source says, perhaps slower)."""
    return max(token_budget(text, slow=True), 2 * source_ids + 50)


def apply_dialect(text: str, dialect: str | None) -> str:
    """Target text with the dialect tag in front (`sichuanese`, `[Cantonese]`, `粤语`, ...)."""
    if not dialect:
        return text
    tag = DIALECTS.get(dialect.strip().strip("[]").lower())
    if tag is None:
        raise TagError(f"EditX dialects are {', '.join(DIALECT_TAGS)}, not {dialect!r}")
    return text if text.startswith(tag) else tag + text


def instruction_edits(instructions: SpeechInstructions) -> list[Edit]:
    """Emotion, style and a speed word as edits applied after the clone; what EditX cannot do is refused
    (strict) or warned about."""
    edits = [Edit("emotion", instructions.emotion.lower())] if instructions.emotion else []
    if instructions.style:
        edits.append(Edit("style", instructions.style.lower()))
    speed = instructions.speed
    if isinstance(speed, str):
        word = {"fast": "faster", "slow": "slower"}.get(speed.lower(), speed.lower())
        if word not in EDIT_OPTIONS["speed"]:
            raise OptionError(f"EditX speeds are {', '.join(EDIT_OPTIONS['speed'])}, not {speed!r}")
        edits.append(Edit("speed", word))
    factor = speed if isinstance(speed, float | int) and speed != 1.0 else None
    unsupported = [name for name, value in (("pitch", instructions.pitch), ("tags", instructions.tags),
                                            ("a speed factor", factor)) if value]
    if unsupported:
        message = f"the editx engine cannot apply {', '.join(unsupported)}; use emotion, style or speed words"
        if instructions.strict:
            raise UnsupportedError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    return edits
