"""Streaming tokenization: streamed codes and groups equal offline ones; vq06 lookahead policy semantics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from stepaudio.errors import AudioError
from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir
from stepaudio.tokenizer.audio_tokenizer import StepAudioTokenizer
from stepaudio.tokenizer.s3_model import S3Config, export_s3_onnx, random_s3
from stepaudio.tokenizer.semantic import SAMPLES_PER_CODE, WINDOW_SAMPLES, SemanticTokenizer
from stepaudio.tokenizer.streaming import AudioTokenStream, SemanticStream, Vq06Policy, code_agreement

CONV_ONLY = S3Config(n_state=32, n_head=4, n_layer=0, codebook_size=4096)
TRANSFORMER = S3Config(n_state=32, n_head=4, n_layer=2, codebook_size=4096)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny ops: one thread is faster


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> StepAudioTokenizer:
    root = write_tiny_tokenizer_dir(tmp_path_factory.mktemp("tok") / "Step-Audio-Tokenizer", seed=7)
    return StepAudioTokenizer.from_pretrained(root, onnx_threads=1)


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A transformer, a local (conv-only) model, and a local model without positions."""
    d = tmp_path_factory.mktemp("s3")
    no_positions = random_s3(CONV_ONLY, seed=2)
    no_positions.positional_embedding.zero_()
    return {
        "transformer": export_s3_onnx(d / "transformer.onnx", TRANSFORMER, seed=1),
        "conv": export_s3_onnx(d / "conv.onnx", CONV_ONLY, seed=2),
        "conv_no_positions": export_s3_onnx(d / "conv_nopos.onnx", model=no_positions),
    }


def _semantic(path: Path) -> SemanticTokenizer:
    return SemanticTokenizer.from_onnx(path, providers=["CPUExecutionProvider"], intra_op_threads=1)


def noisy_tone(n: int, seed: int) -> np.ndarray:
    """Noise in every band keeps the log-mel floor (max - 8) from binding, so it is window-independent."""
    t = np.arange(n) / 16_000
    tone = 0.5 * np.sin(2 * np.pi * (180 + 250 * t) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2.5 * t))
    return (tone + 0.08 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def _pieces(n: int, rng: np.random.Generator, largest: int) -> list[tuple[int, int]]:
    out, start = [], 0
    while start < n:
        size = int(rng.integers(0, largest))
        out.append((start, min(n, start + size)))
        start += size
    return out


@pytest.mark.parametrize("n_samples", [16_000 * 3 + 321, 3840 * 10, 700])
def test_streamed_codes_and_groups_equal_offline(tokenizer: StepAudioTokenizer, n_samples: int) -> None:
    wav = noisy_tone(n_samples, seed=n_samples)
    offline = tokenizer.encode_prepared(wav)
    rng = np.random.default_rng(n_samples)
    for largest in (3840, 9000):
        stream = tokenizer.stream()
        updates = [stream.push(wav[a:b]) for a, b in _pieces(n_samples, rng, largest)]
        updates.append(stream.finish())
        assert stream.codes() == offline
        assert [c for u in updates for c in u.vq02] == list(offline.vq02)
        assert [c for u in updates for c in u.vq06] == list(offline.vq06)
        assert [i for u in updates for i in u.flow_ids] == offline.flow_ids()
        assert [i for u in updates for i in u.lm_ids()] == offline.lm_ids()
        assert "".join(u.text() for u in updates) == offline.text()


def test_vq02_is_final_per_240ms_and_vq06_when_the_window_closes(tokenizer: StepAudioTokenizer) -> None:
    wav = noisy_tone(3840 * 3, seed=1)
    stream = AudioTokenStream(tokenizer)
    first = stream.push(wav[:3840])
    assert len(first.vq02) == 4 and first.vq06 == () and first.flow_ids == ()
    assert len(stream.push(wav[3840:]).vq02) == 8
    last = stream.finish()
    assert len(last.vq06) == 18 and len(last.flow_ids) == 5 * 6
    with pytest.raises(AudioError, match="finished"):
        stream.push(wav[:100])


def test_a_full_30s_window_is_emitted_as_soon_as_it_closes(onnx_files: dict[str, Path]) -> None:
    semantic = _semantic(onnx_files["transformer"])
    wav = noisy_tone(WINDOW_SAMPLES + 16_000, seed=3)
    offline = semantic.encode(wav)
    stream = SemanticStream(semantic, Vq06Policy())
    assert stream.push(wav[: WINDOW_SAMPLES - 1]) == []
    closed = stream.push(wav[WINDOW_SAMPLES - 1 : WINDOW_SAMPLES + 100])
    assert closed == offline[:750]
    assert stream.push(wav[WINDOW_SAMPLES + 100 :]) == []
    assert stream.finish() == offline[750:] and len(offline) == 775
    with pytest.raises(AudioError, match="already finished"):
        stream.finish()


def _stream_lookahead(semantic: SemanticTokenizer, wav: np.ndarray, policy: Vq06Policy, piece: int) -> list[list[int]]:
    stream = SemanticStream(semantic, policy)
    out = [stream.push(wav[i : i + piece]) for i in range(0, wav.shape[0], piece)]
    return [*out, stream.finish()]


@pytest.mark.parametrize(
    ("model", "left_context_s"),
    [("conv", None), ("conv_no_positions", None), ("conv_no_positions", 0.2), ("conv_no_positions", 1.0)],
)
def test_lookahead_is_exact_for_a_local_model(
    onnx_files: dict[str, Path], model: str, left_context_s: float | None
) -> None:
    """Segments start on code boundaries: a local receptive field gives the offline codes exactly."""
    semantic = _semantic(onnx_files[model])
    wav = noisy_tone(16_000 * 4 + 555, seed=5)
    offline = semantic.encode(wav)
    policy = Vq06Policy(mode="lookahead", lookahead_s=0.1, left_context_s=left_context_s, hop_s=0.2)
    parts = _stream_lookahead(semantic, wav, policy, 2400)
    assert [c for p in parts for c in p] == offline
    emitted_early = sum(len(p) for p in parts[:-1])
    assert emitted_early >= len(offline) - 20  # only the last ~0.3 s waits for finish


def test_lookahead_never_emits_codes_inside_the_lookahead(onnx_files: dict[str, Path]) -> None:
    semantic = _semantic(onnx_files["transformer"])
    wav = noisy_tone(16_000 * 3, seed=6)
    policy = Vq06Policy(mode="lookahead", lookahead_s=0.5, left_context_s=1.0, hop_s=0.24)
    stream = SemanticStream(semantic, policy)
    emitted = 0
    for end in range(1600, wav.shape[0] + 1, 1600):
        emitted += len(stream.push(wav[end - 1600 : end]))
        assert emitted * SAMPLES_PER_CODE <= max(0, end - 8000)
    assert emitted > 0
    offline = semantic.encode(wav)
    assert emitted + len(stream.finish()) == len(offline)


def test_lookahead_past_the_utterance_is_exact_and_agreement_is_measured(onnx_files: dict[str, Path]) -> None:
    semantic = _semantic(onnx_files["transformer"])
    wav = noisy_tone(16_000 * 3 + 77, seed=8)
    offline = semantic.encode(wav)
    waiting = Vq06Policy(mode="lookahead", lookahead_s=4.0, left_context_s=1.0)
    parts = _stream_lookahead(semantic, wav, waiting, 3840)
    assert all(p == [] for p in parts[:-1]) and parts[-1] == offline
    bounded = Vq06Policy(mode="lookahead", lookahead_s=0.5, left_context_s=1.0)
    streamed = [c for p in _stream_lookahead(semantic, wav, bounded, 3840) for c in p]
    agreement = code_agreement(streamed, offline)
    assert 0.0 <= agreement <= 1.0 and len(streamed) == len(offline)


def test_code_agreement_and_policy_checks() -> None:
    assert code_agreement([1, 2, 3, 4], [1, 2, 0, 4]) == 0.75
    assert code_agreement([], []) == 1.0
    with pytest.raises(ValueError, match="differ"):
        code_agreement([1], [1, 2])
    with pytest.raises(ValueError, match="mode"):
        Vq06Policy(mode="sliding")
    with pytest.raises(ValueError, match="lookahead_s"):
        Vq06Policy(mode="lookahead", lookahead_s=0.01)
    with pytest.raises(ValueError, match="hop_s"):
        Vq06Policy(hop_s=0.0)


def test_lookahead_stream_releases_groups_before_finish(tokenizer: StepAudioTokenizer) -> None:
    wav = noisy_tone(16_000 * 3, seed=9)
    stream = tokenizer.stream(Vq06Policy(mode="lookahead", lookahead_s=0.5, left_context_s=None, hop_s=0.24))
    updates = [stream.push(wav[i : i + 3840]) for i in range(0, wav.shape[0], 3840)]
    early = sum(len(u.flow_ids) for u in updates)
    updates.append(stream.finish())
    offline = tokenizer.encode_prepared(wav)
    got = stream.codes()
    assert early >= 5 * 18  # ~2.2 s of the 3 s are grouped before the end
    assert got.vq02 == offline.vq02 and len(got.vq06) == len(offline.vq06)
    assert [i for u in updates for i in u.flow_ids] == got.flow_ids()


def test_a_reused_input_buffer_does_not_change_the_codes(tokenizer: StepAudioTokenizer) -> None:
    wav = noisy_tone(16_000 * 2, seed=12)
    stream = tokenizer.stream()
    buffer = np.empty(1600, np.float32)
    for i in range(0, wav.shape[0], 1600):
        buffer[:] = wav[i : i + 1600]
        stream.push(buffer)
    buffer[:] = 0.0
    stream.finish()
    assert stream.codes() == tokenizer.encode_prepared(wav)
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.stream().push(np.full(100, np.inf, np.float32))
