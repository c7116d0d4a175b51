"""The native and the remote backend give the same greedy tokens; the remote one through a real server."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stepaudio.engines.base import CancelToken
from stepaudio.engines.remote import RemoteLM, RemoteLMError
from stepaudio.engines.step.native_lm import NativeLM
from stepaudio.lm import GREEDY, GenerationConfig
from stepaudio.testing.tiny_lm import write_tiny_step1
from stepaudio.text.vocab import STEP1


@pytest.fixture(scope="module")
def model_dir(conformance_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_step1(tmp_path_factory.mktemp("tts"), conformance_dir / "text" / "tokenizer.model")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "stepaudio.cli.main", "serve-lm", "--model-path", str(model_dir),
         "--served-model-name", "tiny", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/health", timeout=1).read()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode() if process.stdout else ""
                    pytest.fail(f"serve-lm did not start: {output[-2000:]}")
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


GREEDY_24 = GenerationConfig(max_new_tokens=24, sampling=GREEDY, stop_ids=STEP1.stop_ids)


def test_remote_greedy_equals_native(model_dir: Path, server: str) -> None:
    native = NativeLM.load(model_dir)
    remote = RemoteLM(server, "tiny")
    prompt = native.tokenizer.encode("<|BOT|>human\n你好, tell me a story<|EOT|><|BOT|>assistant\n")
    local = list(native.stream(prompt, GREEDY_24))
    served = list(remote.stream(prompt, GREEDY_24))
    assert [t.id for t in served] == [t.id for t in local]
    assert "".join(t.text for t in served) == "".join(t.text for t in local)
    assert len(local) == 24 or local[-1].id is not None
    as_text = list(remote.stream("<|BOT|>human\n你好, tell me a story<|EOT|><|BOT|>assistant\n", GREEDY_24))
    assert [t.id for t in as_text] == [t.id for t in local]


def test_remote_errors_are_clear(server: str) -> None:
    with pytest.raises(RemoteLMError, match="404"):
        list(RemoteLM(server, "other-model").stream([1, 2, 3], GREEDY_24))
    with pytest.raises(RemoteLMError, match="400"):
        list(RemoteLM(server, "tiny").stream([10**9], GREEDY_24))
    with pytest.raises(RemoteLMError, match="cannot reach"):
        list(RemoteLM("http://127.0.0.1:9", "tiny", timeout=2).stream([1], GREEDY_24))


def test_cancel_stops_native_stream(model_dir: Path) -> None:
    native = NativeLM.load(model_dir)
    cancel = CancelToken()
    out = []
    for token in native.stream([1, 4, 5], GenerationConfig(max_new_tokens=50, sampling=GREEDY, stop_ids=()), cancel):
        out.append(token)
        if len(out) == 3:
            cancel.cancel()
    assert len(out) == 3
