"""Step-Audio TTS: tags and voice -> TTS-3B prompt -> audio tokens -> flow + HiFT, streamed sentence by sentence.

Long text is split into segments that are generated one after another, each with a token budget in
proportion to its length (with the reference's repetition-aware sampling this stops the loops users see on
long inputs); a segment that hits its budget is cut with a warning. Audio leaves as soon as the decoder can
speak the first tokens of the first segment.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from stepaudio.audio.stretch import speed_and_volume
from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig, Token2Wav
from stepaudio.engines.base import AudioChunk, CancelToken, SpeechInstructions, Voice
from stepaudio.engines.lm_backend import LMBackend
from stepaudio.engines.step.voices import PromptVoice, VoiceBank
from stepaudio.errors import TagError, UnsupportedError
from stepaudio.lm import TTS_SAMPLING, GenerationConfig
from stepaudio.text.prompts import build_tts_prompt, builtin_speaker_key
from stepaudio.text.sentences import sentence_segments
from stepaudio.text.tags import KNOWN_TAGS, TagFamily, build_tagged_text, friendly_to_tag, parse_tags
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.interleave import is_audio_lm_id

AUDIO_TOKENS_PER_SECOND = 5 / 0.12
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uf900-\ufaff\uac00-\ud7af]")
_WORD = re.compile(r"[A-Za-z0-9]+")


def token_budget(text: str, slow: bool = False) -> int:
    """Most audio tokens a segment may take: ~2x the expected length (3.5 CJK chars or 2.5 words a second)."""
    seconds = len(_CJK.findall(text)) / 3.5 + len(_WORD.findall(text)) / 2.5 + 1.0
    return int(seconds * AUDIO_TOKENS_PER_SECOND * (3.0 if slow else 2.0)) + 50


@dataclass(frozen=True)
class TTSSettings:
    default_voice: str = "Tingting"
    segment_chars: int = 80
    streaming: bool = True
    seed: int | None = None
    max_segment_tokens: int | None = None  # a hard cap on top of the text-proportional budget
    stream_config: StreamingConfig | None = None  # the streaming decoder's chunking (None: its defaults)


class StepSynthesizer:
    """`Synthesizer` over TTS-3B (any LM backend) and the CosyVoice decoders."""

    sample_rate = 22050

    def __init__(
        self,
        tokenizer: StepTokenizer,
        lm: Callable[[], LMBackend],
        voices: VoiceBank,
        decoder: Callable[[bool], Token2Wav],
        settings: TTSSettings | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self._lm = lm
        self._voices = voices
        self._decoder = decoder  # decoder(music) -> the common or the Music CosyVoice
        self.settings = settings or TTSSettings()

    def voices(self) -> list[str]:
        return self._voices.names()

    def synthesize(
        self,
        text: str,
        voice: Voice | str | None = None,
        instructions: SpeechInstructions | None = None,
        cancel: CancelToken | None = None,
    ) -> Iterator[AudioChunk]:
        instructions = instructions or SpeechInstructions()
        tagged = apply_instructions(text, instructions)
        parsed = parse_tags(tagged, on_unknown="raise" if instructions.strict else "warn")
        if not parsed.body.strip():
            raise TagError("there is no text to speak after the instruction tags")
        prefix = "".join(f"({tag})" for tag in parsed.tags)
        prompt_voice, speaker = self._resolve(voice, tagged)
        decoder = self._decoder(parsed.is_music)
        segments = sentence_segments(parsed.body, self.settings.segment_chars)
        slow = any(tag.startswith("慢速") for tag in parsed.tags)
        for index, segment in enumerate(segments):
            if cancel is not None and cancel.cancelled:
                return
            final = index == len(segments) - 1
            chunks = self._segment_audio(prefix + segment, prompt_voice, speaker, decoder, slow, cancel)
            yield from _post_process(chunks, segment, final, instructions, self.sample_rate)

    def _resolve(self, voice: Voice | str | None, tagged_text: str) -> tuple[PromptVoice, str | None]:
        """The prompt voice and the speaker name the prompt carries (None for clones)."""
        if isinstance(voice, Voice) and voice.is_clone:
            assert voice.prompt_audio is not None
            return self._voices.clone(voice.name, voice.prompt_audio, voice.prompt_text), None
        name = voice.name if isinstance(voice, Voice) else (voice or self.settings.default_voice)
        return self._voices.builtin(builtin_speaker_key(name, tagged_text)), name

    def _segment_audio(
        self,
        text: str,
        voice: PromptVoice,
        speaker: str | None,
        decoder: Token2Wav,
        slow: bool,
        cancel: CancelToken | None,
    ) -> Iterator[np.ndarray]:
        prompt = build_tts_prompt(
            self.tokenizer, text=text, prompt_text=voice.prompt_text, prompt_audio_ids=voice.lm_ids, speaker=speaker
        )
        budget = token_budget(text, slow)
        if self.settings.max_segment_tokens:
            budget = min(budget, self.settings.max_segment_tokens)
        config = GenerationConfig(max_new_tokens=budget, sampling=TTS_SAMPLING, stop_ids=STEP1.stop_ids,
                                  seed=self.settings.seed)
        stream = (decoder.stream(voice.features, config=self.settings.stream_config, seed=self.settings.seed)
                  if self.settings.streaming else None)
        collected: list[int] = []
        skipped = 0
        for token in self._lm().stream(prompt, config, cancel):
            if token.id is None or not is_audio_lm_id(token.id):
                skipped += 1
                continue
            flow_id = token.id - STEP1.audio_offset
            collected.append(flow_id)
            if stream is not None:
                yield from stream.push([flow_id])
        if cancel is not None and cancel.cancelled:
            return
        if len(collected) + skipped >= budget:
            warnings.warn(
                f"speech for {text[:30]!r}... reached its budget of {budget} tokens and was cut; "
                "split the text or check the voice prompt", RuntimeWarning, stacklevel=3)
        if skipped:
            warnings.warn(f"the TTS model wrote {skipped} non-audio tokens; they were dropped", RuntimeWarning,
                          stacklevel=3)
        if stream is not None:
            yield from stream.finish()
        elif collected:
            yield decoder.offline(collected, voice.features, seed=self.settings.seed)


def apply_instructions(text: str, instructions: SpeechInstructions) -> str:
    """Text with the tags the instructions ask for in front (music style first); raw tags come next."""
    speed_tag = None
    if isinstance(instructions.speed, str):
        speed_tag = friendly_to_tag(TagFamily.SPEED, instructions.speed)
    tagged = build_tagged_text(text, style=instructions.style, emotion=instructions.emotion,
                               dialect=instructions.dialect)
    extra = "".join(f"({tag})" for tag in instructions.tags) + (f"({speed_tag})" if speed_tag else "")
    if not extra:
        return tagged
    parsed = parse_tags(tagged, on_unknown="ignore")
    leading = "".join(f"({tag})" for tag in parsed.tags)
    for tag in instructions.tags:
        if instructions.strict and tag not in KNOWN_TAGS:
            raise TagError(f"unknown instruction tag {tag!r}")
    return leading + extra + parsed.body


def _post_process(
    chunks: Iterator[np.ndarray], text: str, final: bool, instructions: SpeechInstructions, rate: int
) -> Iterator[AudioChunk]:
    """Speed (a factor, by WSOLA over the whole segment) and volume applied after synthesis. Chunks leave as
    they come; an empty chunk marks the end of the last segment."""
    if instructions.pitch:
        message = "the Step engine has no pitch control; use emotion or style tags"
        if instructions.strict:
            raise UnsupportedError(message)
        warnings.warn(message, UserWarning, stacklevel=3)
    factor = float(instructions.speed) if isinstance(instructions.speed, int | float) else 1.0
    if not 0.25 <= factor <= 4.0:
        raise UnsupportedError(f"speed factor {factor} is outside 0.25..4")
    if factor != 1.0:
        chunks = iter([np.concatenate(list(chunks) or [np.zeros(0, dtype=np.float32)])])
    for samples in chunks:
        if samples.size:
            yield AudioChunk(speed_and_volume(samples, factor, instructions.volume), rate, text=text)
    if final:
        yield AudioChunk(np.zeros(0, dtype=np.float32), rate, text=text, is_last=True)
