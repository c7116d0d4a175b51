"""Speech to text with faster-whisper (CTranslate2 int8 on CPU) and the packaged Whisper base.

Without a language, Whisper's own detection is constrained to the languages the engine is configured for
(`WhisperOptions.languages`, default zh/en/ja/ko): a clear Mandarin question whose tones Whisper base would
otherwise take for Japanese, Spanish or Welsh is decoded as the likeliest *allowed* language, with that
language's decoding settings, from the same encoder pass that detected it.

`WhisperTranscriber.listen` recognises a turn while it is spoken (`WhisperStream`): every `step_s` of new
audio the growing turn is decoded again, and the words two hypotheses in a row agree on become a stable
prefix that later passes take as given (forced decoder tokens: LocalAgreement-2, Machacek et al. 2023). At
the end of speech only the words after that prefix are left to decode. Each pass encodes the audio there is
plus `pad_s` of silence instead of Whisper's 30 s window: on 2 cores a 7 s turn encodes in a tenth of the
time, and the silence is what tells the decoder where speech ends (without it Whisper base repeats itself).

Final passes of several turns that end together are decoded in CTranslate2 batches (`WhisperOptions.batch`):
those with the same window size and prompt length (CTranslate2 wants <|startoftranscript|> at one position) are
encoded and decoded together, a group at a time, each pass answered when its group is done. Greedy decoding of a
row does not depend on the others (Whisper base int8: the same encoder output and tokens), so each gets exactly its
own result. Windows are not padded to a common size: that changes the encoder's output (not the text of four
LibriVox clips in 8 s against 10 s windows, but nothing promises it). On 2 cores encoding
four windows at once costs four times one (0.95 s against 0.24 s), decoding them 0.67 s against 0.33 s for one:
the gain is the decoder's. One-pass transcriptions are not batched: faster-whisper's decoding with fallbacks and
timestamps has no batched form that keeps their results.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stepaudio.audio.io import Audio, load_audio
from stepaudio.engines.base import Segment, Transcript, Word
from stepaudio.engines.batching import Coalescer
from stepaudio.engines.lite.whisper_text import (
    INITIAL_PROMPTS,
    SPOKEN_LANGUAGES,
    join_texts,
    language_of,
    normalize_language,
    repeated_words,
    simplifier,
    without_prompt,
)
from stepaudio.errors import MissingExtraError

SAMPLE_RATE = 16000

@dataclass(frozen=True)
class WhisperOptions:
    beam_size: int = 1
    threads: int = 2
    compute_type: str = "int8"
    device: str = "cpu"
    languages: tuple[str, ...] = SPOKEN_LANGUAGES  # detection picks among these; () = any Whisper knows
    batch: int = 4  # final passes decoded together at most (1 = each on its own, as they come)
    batch_wait_s: float = 0.003  # how long a final pass waits at most for others to join its batch


@dataclass(frozen=True)
class StreamOptions:
    """How a `WhisperStream` follows a turn. `max_s`: a longer turn is transcribed in one pass at the end
    (the short window holds one Whisper window of audio)."""

    step_s: float = 1.0  # a new hypothesis after this much new audio
    pad_s: float = 2.0  # silence after the audio in each encoder window (at least), the window at least
    min_window_s: float = 8.0  # this long: with less silence in it, Whisper base often repeats a short turn
    max_s: float = 28.0
    tokens_per_s: float = 12.0  # generation stops past this many tokens a second of audio (+16): a runaway
                                # repetition costs a bounded time
    redecode_words: int = 1  # stable words still decoded again at the end (the last one may not be complete)
    max_share: float = 0.25  # with several turns spoken at once, their hypotheses take at most this share of
                             # the time: work done ahead, which would otherwise take the CPU from the replies
    overlap_s: float = 0.6  # decoding starts this much before the cut (word alignment is good to ~0.1 s; a
                            # word repeated from the context is dropped)


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
        self._simplify = simplifier()
        self._updating = threading.Lock()  # one stream hypothesis at a time, across streams
        self._finals = 0  # final passes waiting or running: hypotheses wait for them (under _gate)
        self._gate = threading.Lock()
        self._rest_until = 0.0  # no other stream's hypothesis starts before (time.monotonic; under _gate)
        self._last_stream: object = None  # whose hypothesis ran last
        self._batcher = Coalescer(self._decode, self.options.batch, self.options.batch_wait_s)

    def listen(self, sample_rate: int = SAMPLE_RATE, language: str | None = None,
               options: StreamOptions | None = None, busy: Callable[[], bool] | None = None) -> WhisperStream:
        """A stream that recognises one turn while it is spoken (see `WhisperStream`); `busy` says when other
        work needs the cores (its hypotheses then wait)."""
        return WhisperStream(self, sample_rate, language, options or StreamOptions(), busy)

    def batch_sizes(self) -> dict[int, int]:
        """How many batches of final passes of each size have been decoded (benches and tests read it)."""
        return dict(self._batcher.sizes)

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
        parts = tuple(Segment(float(s.start), float(s.end), without_prompt(s.text.strip(), prompt))
                      for s in decoded)
        timed = tuple(Word(float(w.start), float(w.end), w.word.strip()) for s in decoded for w in (s.words or ())
                      if w.word.strip())
        detected = code or language_of(" ".join(part.text for part in parts))
        if detected == "zh" and simplify is not None:
            parts = tuple(Segment(p.start, p.end, simplify(p.text)) for p in parts)
            timed = tuple(Word(w.start, w.end, simplify(w.text)) for w in timed)
        text = join_texts([part.text for part in parts], detected)
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

    def _tokenizer(self, language: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        return Tokenizer(self._model.hf_tokenizer, True, task="transcribe", language=language)

    def _hypothesis(self, samples: np.ndarray, context: list[int], language: str | None, max_new_tokens: int,
                    window_s: tuple[float, float], offset_s: float = 0.0, words: bool = False) -> _Hypothesis:
        """Greedy decode of `samples` (16 kHz) in an encoder window of the audio and silence (`window_s`: at least
        that much silence, and at least that long in all), with `context` (the words before them) as Whisper's
        previous text; detects the language among the allowed ones when none is given; with `words`, each word's
        tokens and times (from `offset_s`). Leading words that repeat the end of `context` are dropped. Without
        `words` (final passes) it joins other passes in a batch (`WhisperOptions.batch`)."""
        request = _Pass(samples, window_s, tuple(context), language, max_new_tokens, offset_s, words)
        if words or self.options.batch <= 1:
            return self._decode_alone(request)
        outcome = self._batcher.submit(request)
        assert isinstance(outcome, _Hypothesis)
        return outcome

    def _decode(self, requests: list[_Pass]) -> Iterator[tuple[int, _Hypothesis | BaseException]]:
        """Each request's index and hypothesis (or its error), as soon as it is decoded. If a batched call fails,
        the requests it held are decoded again one by one, so an error is reported to its own request only."""
        delivered: set[int] = set()
        try:
            for index, outcome in self._decode_together(requests):
                delivered.add(index)
                yield index, outcome
        except Exception as exc:
            left = [i for i in range(len(requests)) if i not in delivered]
            if len(left) == 1:
                yield left[0], exc
                return
            for i in left:
                yield i, next(self._decode([requests[i]]))[1]

    def _decode_alone(self, request: _Pass) -> _Hypothesis:
        outcome = next(self._decode([request]))[1]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def _decode_together(self, requests: list[_Pass]) -> Iterator[tuple[int, _Hypothesis | BaseException]]:
        """Requests with the same window and prompt length are encoded and decoded together, a group at a time in
        the order they came (on CPU encoding several windows at once saves nothing; decoding them does)."""
        windows = [self._window(request) for request in requests]
        groups: dict[tuple[int, int | None, int], list[int]] = {}
        for i, request in enumerate(requests):
            length = None if request.language is None else \
                len(self._prompt(self._tokenizer(request.language), request.language, list(request.context)))
            key = (windows[i][0].shape[-1], length, len(request.context) if length is None else 0)
            groups.setdefault(key, []).append(i)
        for rows in groups.values():
            yield from self._decode_group([requests[i] for i in rows], [windows[i] for i in rows], rows)

    def _decode_group(self, requests: list[_Pass], windows: list[tuple[np.ndarray, int]],
                      indices: list[int]) -> Iterator[tuple[int, _Hypothesis | BaseException]]:
        """Requests with windows of one size: encoded together, the language detected where none is given,
        then decoded together by prompt length (CTranslate2 wants <|startoftranscript|> at one position)."""
        import ctranslate2
        from faster_whisper.transcribe import get_suppressed_tokens

        model = self._model
        encoded = model.model.encode(ctranslate2.StorageView.from_array(
            np.ascontiguousarray(np.stack([window for window, _ in windows]))), to_cpu=False)
        codes = [request.language for request in requests]
        if any(code is None for code in codes):
            allowed = tuple(dict.fromkeys(c for c in map(normalize_language, self.options.languages) if c))
            for k, found in enumerate(model.model.detect_language(encoded)):
                if codes[k] is None:
                    ranked = [token[2:-2] for token, _ in found]
                    codes[k] = min(allowed, key=lambda c: ranked.index(c) if c in ranked else len(ranked)) \
                        if allowed else ranked[0]
        tokenizers = [self._tokenizer(str(code)) for code in codes]
        prompts = [self._prompt(tokenizer, str(code), list(request.context))
                   for request, tokenizer, code in zip(requests, tokenizers, codes, strict=True)]
        by_prompt: dict[int, list[int]] = {}
        for k, prompt in enumerate(prompts):
            by_prompt.setdefault(len(prompt), []).append(k)
        for group in by_prompt.values():
            memory = encoded if len(group) == len(requests) else ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.asarray(encoded)[group]))
            # CTranslate2 generates min(max_length // 2, max_length - prompt + 1) tokens at most; each row is cut
            # where its own max_length would have stopped it (greedy: the tokens before are the same)
            totals = [min(448, len(prompts[k]) + requests[k].max_new_tokens) for k in group]
            results = model.model.generate(
                memory, [prompts[k] for k in group], beam_size=self.options.beam_size, max_length=max(totals),
                suppress_blank=True, suppress_tokens=list(get_suppressed_tokens(tokenizers[group[0]], (-1,))))
            for k, total, result in zip(group, totals, results, strict=True):
                cap = min(total // 2, total - len(prompts[k]) + 1)
                outcome: _Hypothesis | BaseException
                try:
                    outcome = self._finish(requests[k], windows[k][1], tokenizers[k], str(codes[k]),
                                           result.sequences_ids[0][:cap], memory if requests[k].words else None)
                except Exception as exc:  # this request's alone
                    outcome = exc
                yield indices[k], outcome

    def _window(self, request: _Pass) -> tuple[np.ndarray, int]:
        """The encoder window of a request's samples (mel frames of the audio, then silence: `window_s`), and
        how many frames are audio."""
        extractor = self._model.feature_extractor
        features = extractor(request.samples)[:, :-1]  # as faster-whisper: the last frame is not content
        frames = features.shape[-1]
        pad = max(round(request.window_s[0] * 100), round(request.window_s[1] * 100) - frames)
        pad = max(0, min(extractor.nb_max_frames - frames, pad))
        return np.ascontiguousarray(np.pad(features, ((0, 0), (0, pad))), dtype=np.float32), frames

    def _prompt(self, tokenizer: Any, code: str, context: list[int]) -> list[int]:
        """Whisper's prompt: the previous text (the initial prompt and `context`), then the language, no timestamps."""
        initial = None if self._simplify else INITIAL_PROMPTS.get(code)
        previous = ([*tokenizer.encode(" " + initial)] if initial else []) + context
        prompt = [tokenizer.sot_prev, *previous[-(self._model.max_length // 2 - 1):]] if previous else []
        return [*prompt, *tokenizer.sot_sequence, tokenizer.no_timestamps]

    def _finish(self, request: _Pass, frames: int, tokenizer: Any, code: str, sequence: list[int],
                encoded: Any) -> _Hypothesis:
        """The hypothesis of a decoded `sequence`: whether it ran away, its words (timed on `encoded` when asked
        for), less those that repeat the end of the context."""
        tokens = [t for t in sequence if t < tokenizer.eot]
        text = tokenizer.decode(tokens)
        finished = len(tokens) < request.max_new_tokens
        ok = finished and (len(text) < 24 or len(text.encode()) / len(zlib.compress(text.encode())) <= 2.4)
        timed: list[_Word] = []
        if request.words and ok and tokens and frames > 0:
            aligned = self._model.find_alignment(tokenizer, [tokens], encoded, frames)[0]
            timed = [_Word(tuple(w["tokens"]), request.offset_s + float(w["start"]),
                           request.offset_s + float(w["end"])) for w in aligned]
        else:
            timed = [_Word(tuple(w), request.offset_s, request.offset_s)
                     for w in tokenizer.split_to_word_tokens(tokens)[1]]
        repeated = repeated_words(tokenizer, list(request.context), [list(w.tokens) for w in timed])
        timed = timed[repeated:]
        return _Hypothesis(code, [t for w in timed for t in w.tokens], ok, timed if request.words else [])

    def _text(self, tokens: list[int], language: str | None) -> str:
        text = self._tokenizer(language or "en").decode(tokens).strip()
        text = without_prompt(text, None if self._simplify else INITIAL_PROMPTS.get(language or ""))
        if language == "zh" and self._simplify is not None:
            text = self._simplify(text)
        return text

    def warmup(self) -> None:
        """One tiny decode so the first real request does not pay CTranslate2's start-up."""
        self.transcribe(Audio(np.zeros(SAMPLE_RATE // 2, dtype=np.float32), SAMPLE_RATE), language="en")


@dataclass(frozen=True)
class _Pass:
    """One decoding request: the audio (16 kHz), its window (see `WhisperTranscriber._hypothesis`) and the prompt's
    parts. The mel features are computed in the batch, so requests made at once join it without waiting for them."""

    samples: np.ndarray
    window_s: tuple[float, float]
    context: tuple[int, ...]
    language: str | None
    max_new_tokens: int
    offset_s: float
    words: bool


@dataclass(frozen=True)
class _Word:
    tokens: tuple[int, ...]
    start: float  # seconds from the start of the turn
    end: float


@dataclass(frozen=True)
class _Hypothesis:
    language: str
    tokens: list[int]
    ok: bool  # ended within its token budget and not a repetition
    words: list[_Word]  # when asked for


@dataclass(frozen=True)
class _Cut:
    """Where decoding starts: the words before `sample` are final (`context`), agreed on `heard` samples."""

    heard: int
    sample: int
    context: tuple[int, ...]


class WhisperStream:
    """One turn, recognised while it is spoken: `push` its samples as they come (cheap), call `update` off the
    caller's hot path (it decodes when `step_s` of new audio is there), and `transcript(n)` at the end of speech
    for the first n samples pushed.

    Each hypothesis decodes the audio from the cut (the start of the first word not yet final) with the words
    before it as Whisper's previous text. Words two hypotheses in a row agree on are stable; all but the last
    `redecode_words` of them become final and the cut moves to the start of the next (Whisper's word
    alignment). At the end of speech only the audio from the cut is decoded. A hypothesis that runs away
    (repeats, or passes its token budget) moves nothing; a final pass that does is redone in one pass over the
    whole turn.

    Hypotheses of all streams of one transcriber run one at a time and give way to final passes, so a turn that
    has ended is not kept waiting by turns still being spoken. With `busy`, they also give way while it says
    other work needs the cores (the engine's replies being written or spoken): a hypothesis is work done ahead
    of the end of speech, ~0.5 CPU-s a second of speech on 2 cores, which saves the final pass only part of its
    cost (the encoder window is the same), so on a loaded machine it delays the replies more than it speeds the
    transcript. Thread-safe."""

    def __init__(self, transcriber: WhisperTranscriber, sample_rate: int, language: str | None,
                 options: StreamOptions, busy: Callable[[], bool] | None = None) -> None:
        self.transcriber = transcriber
        self.sample_rate = sample_rate
        self.options = options
        self.busy = busy
        self.language = normalize_language(language)
        self.updates = 0  # hypotheses made while the turn was spoken
        self.deferred = 0  # times a due hypothesis waited because other work needed the cores (`busy`)
        self.final_seconds = 0.0  # audio the last `transcript` decoded (from the cut)
        self._pieces: list[np.ndarray] = []
        self._count = 0
        self._decoded = 0  # samples the last hypothesis heard
        self._lock = threading.Lock()
        self._decoding = threading.Lock()  # held by this stream's hypothesis: its final pass waits, not competes
        self._cuts: list[_Cut] = [_Cut(0, 0, ())]
        self._detected: str | None = None  # the language of the first hypothesis, kept for the turn
        self._previous: list[_Word] = []  # the last hypothesis's words, from the current cut

    @property
    def final_text(self) -> str:
        """The words final so far (before the cut)."""
        with self._lock:
            return self.transcriber._text(list(self._cuts[-1].context), self._language())

    @property
    def heard_text(self) -> str:
        """The final words and then the newest hypothesis's others (which a later one may still change)."""
        with self._lock:
            tokens = [*self._cuts[-1].context, *(token for word in self._previous for token in word.tokens)]
            return self.transcriber._text(tokens, self._language())

    def push(self, samples: np.ndarray) -> None:
        data = np.asarray(samples, dtype=np.float32).reshape(-1)
        with self._lock:
            self._pieces.append(data.copy())
            self._count += data.size

    def due(self) -> bool:
        return self._count - self._decoded >= self.options.step_s * self.sample_rate

    def update(self) -> bool:
        """Decode the turn so far if `step_s` of new audio came since the last hypothesis, no other stream's
        hypothesis or any final pass is running and `busy` does not say other work needs the cores; True if it
        did."""
        model = self.transcriber
        if not self.due() or self._count > self.options.max_s * self.sample_rate:
            return False
        if self.busy is not None and self.busy():
            self.deferred += 1
            return False
        with model._gate:
            resting = model._last_stream is not self and time.monotonic() < model._rest_until
            if model._finals or resting or not model._updating.acquire(blocking=False):
                return False
        began = time.monotonic()
        try:
            with self._decoding:
                with self._lock:
                    count, cut, language = self._count, self._cuts[-1], self._language()
                    start = self._start(cut)
                    samples = self._samples(start, count)
                hypothesis = model._hypothesis(samples, list(cut.context), language, self._budget(samples.size),
                                               self._window, start / SAMPLE_RATE, words=True)
                with self._lock:
                    self._decoded = count
                    self.updates += 1
                    if hypothesis.ok and self._cuts[-1] == cut:
                        self._agree(hypothesis, count)
            return True
        finally:
            ended = time.monotonic()
            with model._gate:
                model._rest_until = ended + (ended - began) * (1 / self.options.max_share - 1)
                model._last_stream = self
            model._updating.release()

    def transcript(self, samples: int | None = None) -> Transcript:
        """The words of the first `samples` samples pushed (all when None): the final words agreed on audio
        within them, and the rest decoded now."""
        model = self.transcriber
        with model._gate:
            model._finals += 1
        try:
            # a hypothesis of this turn still decoding would share the cores with this pass and slow both (on 2
            # cores a final pass took 0.7 s beside one, ~0.35 s alone): wait for it, its agreed words shorten the tail
            with self._decoding, self._lock:
                count = self._count if samples is None else min(samples, self._count)
                cut = next(c for c in reversed(self._cuts) if c.heard <= count)
                language = self._language()
                whole = self._samples(0, count)
            duration = whole.size / SAMPLE_RATE
            if duration > self.options.max_s:
                return model.transcribe(Audio(whole, SAMPLE_RATE), self.language)
            tail = whole[self._start(cut):]
            hypothesis = model._hypothesis(tail, list(cut.context), language, self._budget(tail.size),
                                           self._window)
            tokens = [*cut.context, *hypothesis.tokens]
            if not hypothesis.ok and cut.context:  # a runaway: once more over the whole turn
                hypothesis = model._hypothesis(whole, [], language, self._budget(whole.size), self._window)
                tail, tokens = whole, hypothesis.tokens
            if not hypothesis.ok:  # still: one pass in Whisper's own window, with its fallbacks
                return model.transcribe(Audio(whole, SAMPLE_RATE), self.language)
            self.final_seconds = tail.size / SAMPLE_RATE
            text = model._text(tokens, hypothesis.language)
            segments = (Segment(0.0, duration, text),) if text else ()
            return Transcript(text=text, language=hypothesis.language, segments=segments, duration=duration)
        finally:
            with model._gate:
                model._finals -= 1

    @property
    def _window(self) -> tuple[float, float]:
        return self.options.pad_s, self.options.min_window_s

    def _start(self, cut: _Cut) -> int:
        return max(0, cut.sample - int(self.options.overlap_s * SAMPLE_RATE)) if cut.context else 0

    def _language(self) -> str | None:
        return self.language or self._detected

    def _samples(self, start: int, count: int) -> np.ndarray:
        """Samples [start, count) at 16 kHz (`start` counts 16 kHz samples, `count` pushed ones; under the lock)."""
        if len(self._pieces) > 1:
            self._pieces = [np.concatenate(self._pieces)]
        samples = self._pieces[0][:count] if self._pieces else np.zeros(0, np.float32)
        if self.sample_rate != SAMPLE_RATE:
            samples = Audio(samples, self.sample_rate).resampled(SAMPLE_RATE).samples
        return np.ascontiguousarray(samples[start:], dtype=np.float32)

    def _budget(self, samples: int) -> int:
        return int(self.options.tokens_per_s * samples / SAMPLE_RATE) + 16

    def _agree(self, hypothesis: _Hypothesis, count: int) -> None:
        """Words this hypothesis and the previous one agree on are stable; all but the last `redecode_words`
        become final, and the cut moves to the start of the next one."""
        if self._detected is None:
            self._detected = hypothesis.language
        words, previous = hypothesis.words, self._previous
        agreed = 0
        while agreed < min(len(words), len(previous)) and words[agreed].tokens == previous[agreed].tokens:
            agreed += 1
        final = agreed - self.options.redecode_words
        cut = self._cuts[-1]
        if final <= 0 or hypothesis.language != self._language():
            self._previous = words
            return
        sample = int(SAMPLE_RATE * (words[final - 1].end + words[final].start) / 2)
        if sample <= cut.sample:
            self._previous = words
            return
        context = cut.context + tuple(token for word in words[:final] for token in word.tokens)
        self._cuts.append(_Cut(count, sample, context))
        self._previous = words[final:]


def _as_16k(audio: Audio | Any) -> np.ndarray:
    if not isinstance(audio, Audio):
        audio = load_audio(audio, sample_rate=SAMPLE_RATE)
    elif audio.sample_rate != SAMPLE_RATE:
        audio = audio.resampled(SAMPLE_RATE)
    return np.ascontiguousarray(audio.samples, dtype=np.float32)
