"""Shared pieces of the training tests: a real dataset folder (written with the manifest writer) whose
audio tokens follow a known, strongly skewed distribution, and the tiny release-layout Step stack."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from stepaudio.data.manifest import DatasetInfo, DatasetRow, DatasetWriter, TokenizerInfo, row_id, write_info
from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav
from stepaudio.engines.base import CancelToken
from stepaudio.engines.lazy import Lazy
from stepaudio.engines.lm_backend import GeneratedToken
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.engines.step.paths import COSYVOICE_DIR, TOKENIZER_DIR, TTS_DIR
from stepaudio.engines.step.tts import StepSynthesizer, TTSSettings
from stepaudio.engines.step.voices import VoiceBank
from stepaudio.lm.generate import GenerationConfig
from stepaudio.testing.tiny_stack import speech_like, write_tiny_step_stack
from stepaudio.text.tokenizer import StepTokenizer
from stepaudio.text.vocab import STEP1
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer

# The "data distribution": few vq02 and vq06 codes with Zipf-like weights, in the 2:3 interleave.
VQ02_CODES = (3, 17, 42, 100)
VQ06_CODES = (1024 + 5, 1024 + 77, 1024 + 300, 1024 + 2048, 1024 + 4000)
_CHARS = "今天天气真好我们一起去公园散步吧明天会下雨记得带伞这家店的面条很好吃"
_TAGS = ((), ("高兴1",), ("四川话",), ("高兴1", "慢速1"))


def _weights(n: int) -> np.ndarray:
    w = 1.0 / np.arange(1, n + 1) ** 1.5
    return w / w.sum()


def skewed_tokens(rng: np.random.Generator, groups: int) -> list[int]:
    out: list[int] = []
    for _ in range(groups):
        out += [int(c) for c in rng.choice(VQ02_CODES, size=2, p=_weights(len(VQ02_CODES)))]
        out += [int(c) for c in rng.choice(VQ06_CODES, size=3, p=_weights(len(VQ06_CODES)))]
    return out


def write_dataset(root: Path, n_rows: int = 40, seed: int = 0, voice: str = "Tingting") -> Path:
    rng = np.random.default_rng(seed)
    write_info(root, DatasetInfo(engine="lite", tokenizer=TokenizerInfo("tiny"), config={"seed": seed}))
    writer = DatasetWriter(root, shard_size=16)
    for i in range(n_rows):
        text = "".join(rng.choice(list(_CHARS), size=int(rng.integers(4, 10)))) + f"{i}。"
        tags = _TAGS[i % len(_TAGS)]
        rid = row_id("lite", voice, tags, text)
        groups = int(rng.integers(6, 12))
        audio = writer.write_audio(rid, speech_like(groups * 0.12, 16000, seed + i), 16000)
        writer.append(DatasetRow(id=rid, text=text, tags=tags, voice=voice, audio=audio, sample_rate=16000,
                                 duration_s=groups * 0.12, audio_tokens=tuple(skewed_tokens(rng, groups)),
                                 engine="lite"))
    return root


@pytest.fixture(scope="session")
def make_dataset():  # type: ignore[no-untyped-def]
    """`make_dataset(root, n_rows=40, seed=0, voice="Tingting") -> root` (conftest is not importable)."""
    return write_dataset


@pytest.fixture(scope="session")
def tokenizer_model(conformance_dir: Path) -> Path:
    return conformance_dir / "text" / "tokenizer.model"


@pytest.fixture(scope="session")
def step_tokenizer(tokenizer_model: Path) -> StepTokenizer:
    return StepTokenizer(tokenizer_model)


@pytest.fixture(scope="session")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture(scope="session")
def stack(tokenizer_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step_stack(tmp_path_factory.mktemp("stack"), tokenizer_model)


class RecordingLM:
    """The real in-process LM backend, keeping the audio ids it streams (the TTS path decodes them to audio)."""

    def __init__(self, inner: NativeLM) -> None:
        self.inner = inner
        self.audio_ids: list[int] = []

    def stream(self, prompt: Sequence[int] | str, config: GenerationConfig,
               cancel: CancelToken | None = None) -> Iterator[GeneratedToken]:
        for token in self.inner.stream(prompt, config, cancel):
            if token.id is not None and token.id >= STEP1.audio_offset:
                self.audio_ids.append(token.id - STEP1.audio_offset)
            yield token


def generated_histogram(stack: Path, model_dir: Path, texts: Sequence[str], voice: str = "Tingting",
                        speakers: Path | None = None, cap: int = 30) -> Counter[int]:
    """Flow ids the Step TTS path generates for `texts` with the LM in `model_dir`, the stack's tokenizer and
    decoder, and the voices of `speakers` (default the stack's)."""
    audio_tokenizer = Lazy(lambda: StepAudioTokenizer.from_pretrained(stack / TOKENIZER_DIR))
    decoder = Lazy(lambda: Token2Wav.from_dir(stack / TTS_DIR / COSYVOICE_DIR))
    recorder = RecordingLM(NativeLM.load(model_dir))
    voices = VoiceBank(audio_tokenizer, decoder, speakers or stack / "speakers")
    synth = StepSynthesizer(StepTokenizer(model_dir), lambda: recorder, voices, lambda music: decoder.get(),
                            TTSSettings(seed=0, max_segment_tokens=cap, streaming=False))
    samples = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for text in texts:
            samples += sum(chunk.samples.size for chunk in synth.synthesize(text, voice))
    assert samples > 0  # the tokens were spoken by the decoder, not only counted
    return Counter(recorder.audio_ids)


def total_variation(a: Counter[int], b: Counter[int]) -> float:
    na, nb = sum(a.values()), sum(b.values())
    assert na and nb
    return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))


@pytest.fixture(scope="session")
def tts() -> SimpleNamespace:
    """`tts.histogram(stack, model_dir, texts, voice=..., speakers=...)` and `tts.total_variation(a, b)`."""
    return SimpleNamespace(histogram=generated_histogram, total_variation=total_variation)
