"""On CUDA the speech decoders give the CPU's audio (tiny random models, the same seeded noise), and
streaming on CUDA equals streaming on the CPU and stays the offline rendering.

Every test needs a CUDA device and skips without one; `make gpu-check` runs them on the first GPU lent.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    noise = float(np.sum((test.astype(np.float64) - reference) ** 2))
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(reference.astype(np.float64) ** 2) / noise))


def _tokens(n: int, vocab: int, seed: int) -> list[int]:
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed)).tolist()


# CosyVoice 1 (Step-Audio TTS-3B's decoder) ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cosyvoice_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnxruntime")
    from stepaudio.testing.tiny_decoder import write_tiny_cosyvoice_dir

    return write_tiny_cosyvoice_dir(tmp_path_factory.mktemp("cv") / "CosyVoice-300M-25Hz")


def _cv1_prompt():  # type: ignore[no-untyped-def]
    from stepaudio.decoder.cosyvoice1.prompt_features import PromptFeatures

    g = torch.Generator().manual_seed(0)
    return PromptFeatures(torch.randint(0, 5120, (12,), generator=g), torch.randn(25, 80, generator=g) - 4,
                          torch.randn(192, generator=g))


def test_cosyvoice1_offline_on_cuda_equals_cpu(cosyvoice_dir: Path, cuda: torch.device) -> None:
    from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav

    tokens = _tokens(60, 5120, seed=1)
    on_cpu = Token2Wav.from_dir(cosyvoice_dir).offline(tokens, _cv1_prompt(), seed=3)
    gpu = Token2Wav.from_dir(cosyvoice_dir, device=cuda)
    assert gpu.device.type == "cuda"
    on_gpu = gpu.offline(tokens, _cv1_prompt(), seed=3)
    assert on_gpu.shape == on_cpu.shape and on_gpu.dtype == np.float32
    assert snr_db(on_cpu, on_gpu) > 40.0


def test_cosyvoice1_bf16_flow_on_cuda_is_close(cosyvoice_dir: Path, cuda: torch.device) -> None:
    from stepaudio.decoder.cosyvoice1.token2wav import Token2Wav

    tokens = _tokens(60, 5120, seed=2)
    exact = Token2Wav.from_dir(cosyvoice_dir, device=cuda).offline(tokens, _cv1_prompt(), seed=3)
    half = Token2Wav.from_dir(cosyvoice_dir, device=cuda, flow_dtype=torch.bfloat16).offline(
        tokens, _cv1_prompt(), seed=3)
    assert half.shape == exact.shape and np.isfinite(half).all()
    assert snr_db(exact, half) > 10.0  # tiny random weights: bf16 rounding through 10 Euler steps


def test_cosyvoice1_streaming_on_cuda_equals_cpu_and_offline(cosyvoice_dir: Path, cuda: torch.device) -> None:
    from stepaudio.decoder.cosyvoice1.token2wav import StreamingConfig, Token2Wav

    config = StreamingConfig(first_hop_tokens=8, hop_tokens=20, lookahead_tokens=8, left_context_tokens=24)
    tokens = _tokens(70, 5120, seed=4)

    def stream(t2w: Token2Wav) -> list[np.ndarray]:
        s = t2w.stream(_cv1_prompt(), config=config, seed=3)
        chunks: list[np.ndarray] = []
        for i in range(0, len(tokens), 5):
            chunks += s.push(tokens[i : i + 5])
        return chunks + s.finish()

    gpu = Token2Wav.from_dir(cosyvoice_dir, device=cuda)
    on_gpu, on_cpu = stream(gpu), stream(Token2Wav.from_dir(cosyvoice_dir))
    assert [c.shape for c in on_gpu] == [c.shape for c in on_cpu] and len(on_gpu) >= 4
    assert snr_db(np.concatenate(on_cpu), np.concatenate(on_gpu)) > 40.0
    # one chunk holding everything is exactly the offline rendering, on CUDA as on the CPU
    whole = gpu.stream(_cv1_prompt(), config=StreamingConfig(first_hop_tokens=1000), seed=3)
    single = whole.push(tokens) + whole.finish()
    np.testing.assert_array_equal(np.concatenate(single), gpu.offline(tokens, _cv1_prompt(), seed=3))


# CosyVoice 2 (Step-Audio 2's token2wav) ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def token2wav_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from stepaudio.testing.tiny_step2 import write_token2wav_dir

    return write_token2wav_dir(tmp_path_factory.mktemp("t2w") / "token2wav")


def _cv2_prompt():  # type: ignore[no-untyped-def]
    from stepaudio.decoder.cosyvoice2.prompt import Prompt

    g = torch.Generator().manual_seed(0)
    return Prompt(torch.randint(0, 6561, (10,), generator=g), torch.randn(20, 80, generator=g) - 4,
                  torch.randn(192, generator=g))


def test_cosyvoice2_offline_and_stream_on_cuda_equal_cpu(token2wav_dir: Path, cuda: torch.device) -> None:
    from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav

    tokens = _tokens(56, 6561, seed=5)
    cpu, gpu = Token2Wav.from_dir(token2wav_dir, seed=3), Token2Wav.from_dir(token2wav_dir, device=cuda, seed=3)
    assert gpu.device.type == "cuda"
    assert snr_db(cpu(tokens, _cv2_prompt()), gpu(tokens, _cv2_prompt())) > 40.0

    def stream(t2w: Token2Wav) -> np.ndarray:
        s = t2w.stream(_cv2_prompt())
        parts = [s.push(tokens[i : i + 7]) for i in range(0, len(tokens), 7)]
        return np.concatenate([*parts, s.finish()])

    on_cpu, on_gpu = stream(cpu), stream(gpu)
    assert on_gpu.shape == on_cpu.shape and on_gpu.dtype == np.int16 and on_gpu.size > 0
    assert snr_db(on_cpu.astype(np.float64), on_gpu.astype(np.float64)) > 30.0
