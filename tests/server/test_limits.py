"""Security and limits at the edge: API key, sizes, content types, durations, idle and busy, disconnects,
paths, and a batch of malformed audio that must never crash the server."""

from __future__ import annotations

import base64
import json
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from stepaudio.audio.io import encode_audio
from stepaudio.server.settings import ServerSettings

openai = pytest.importorskip("openai")


def test_api_key(server_factory: Any) -> None:
    server = server_factory(ServerSettings(api_key="s3cret"))
    with pytest.raises(openai.AuthenticationError) as info:
        server.client(api_key="wrong").models.list()
    assert info.value.body["code"] == "invalid_api_key"
    assert httpx.post(server.url + "/v1/audio/speech", json={"input": "x"}).status_code == 401
    assert httpx.post(server.url + "/v1/audio/transcriptions", content=b"x" * 10).status_code == 401
    assert [m.id for m in server.client(api_key="s3cret").models.list().data]
    assert httpx.get(server.url + "/v1/models", headers={"X-Api-Key": "s3cret"}).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open for probes
    assert "access-control-allow-origin" not in httpx.options(
        server.url + "/v1/models", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"}
    ).headers  # CORS is off unless origins are configured


def test_cors_when_configured(server_factory: Any) -> None:
    server = server_factory(ServerSettings(cors_origins=("http://app.example",)))
    response = httpx.options(server.url + "/v1/models", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "GET"})
    assert response.headers["access-control-allow-origin"] == "http://app.example"


def test_body_size_and_content_type(tiny_server: Any, tone: Any) -> None:
    url = tiny_server.url
    big = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"\0" * 2_500_000)})
    assert big.status_code == 413 and big.json()["error"]["code"] == "request_too_large"
    just_over = httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"\0" * 1_000_001)})
    assert just_over.status_code == 413 and just_over.json()["error"]["code"] == "file_too_large"
    chunked = httpx.post(url + "/v1/chat/completions", headers={"Content-Type": "application/json"},
                         content=iter([b"{" + b" " * 50_000_000]))  # no Content-Length: counted while read
    assert chunked.status_code == 413
    wrong_type = httpx.post(url + "/v1/audio/speech", content=b"input=hi",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert wrong_type.status_code == 415 and wrong_type.json()["error"]["code"] == "unsupported_media_type"
    assert httpx.post(url + "/v1/audio/transcriptions", json={"file": "x"}).status_code == 415
    bad_json = httpx.post(url + "/v1/chat/completions", content=b"{not json",
                          headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 422 and "error" in bad_json.json()
    missing = httpx.post(url + "/v1/chat/completions", json={"model": "m"})
    assert missing.status_code == 422 and missing.json()["error"]["param"] == "messages"
    assert httpx.get(url + "/v1/nothing").json()["error"]["type"] == "not_found_error"
    assert httpx.put(url + "/v1/models").status_code == 405


def test_audio_duration_caps(tiny_server: Any, tone: Any) -> None:
    long = httpx.post(tiny_server.url + "/v1/audio/transcriptions", files={"file": ("a.flac", tone(25, 8000, "flac"))})
    assert long.status_code == 413 and long.json()["error"]["code"] == "audio_too_long"
    voice = httpx.post(tiny_server.url + "/v1/voices", data={"name": "x", "transcript": "t"},
                       files={"file": ("a.wav", tone(6.0, 8000))})
    assert voice.status_code == 413
    short = httpx.post(tiny_server.url + "/v1/voices", data={"name": "x", "transcript": "t"},
                       files={"file": ("a.wav", tone(0.1))})
    assert short.status_code == 400 and "at least" in short.json()["error"]["message"]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@contextmanager
def peak_memory_rise() -> Iterator[list[int]]:
    """Bytes by which this process's peak resident memory (the server runs in it) rose during the block: the
    kernel's high-water mark is reset to the current size first (`clear_refs` 5), so an allocation freed
    before the block ends still counts."""
    clear = Path("/proc/self/clear_refs")
    if not clear.exists():
        pytest.skip("measuring peak memory needs Linux /proc")
    clear.write_text("5")
    before = _status_kib("VmRSS")
    rise: list[int] = []
    yield rise
    rise.append((_status_kib("VmHWM") - before) * 1024)


def test_decompression_bomb_is_refused_from_its_header(tiny_server: Any, silent_flac: Any) -> None:
    bomb = silent_flac(3600.0)  # ~180 kB declaring an hour: 230 MB of float32 (and more to mix) if decoded
    encoded = base64.b64encode(bomb).decode()
    url = tiny_server.url
    with peak_memory_rise() as rise:
        responses = [
            httpx.post(url + "/v1/audio/transcriptions", files={"file": ("bomb.flac", bomb)}),
            httpx.post(url + "/v1/voices", data={"name": "bomb", "transcript": "t"},
                       files={"file": ("bomb.flac", bomb)}),
            httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": [
                {"type": "input_audio", "input_audio": {"data": encoded, "format": "flac"}}]}]}),
        ]
    assert rise[0] < 100 * 1024 * 1024, f"the server's memory rose by {rise[0] / 2**20:.0f} MiB"
    for response in responses:
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "audio_too_long" and "declares 3600.0 s of audio" in error["message"]
    assert httpx.get(url + "/v1/voices").json()["data"][0]["type"] == "builtin"  # no voice was stored


def test_chat_pcm16_is_measured_by_its_length_before_conversion(tiny_server: Any) -> None:
    pcm = base64.b64encode(bytes(2 * 24000 * 11)).decode()  # 11 s at 24 kHz; the chat allows 10 s
    response = httpx.post(tiny_server.url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": pcm, "format": "pcm16"}}]}]})
    assert response.status_code == 413 and response.json()["error"]["code"] == "audio_too_long"
    assert "the pcm16 audio lasts 11.0 s, longer than the 10 s" in response.json()["error"]["message"]


def test_a_wav_declaring_one_hertz_is_refused(tiny_server: Any) -> None:
    wav = _wav_header(1, 1, 16, 1000) + b"\0" * 1000  # 500 samples at 1 Hz: "500 s" of audio
    response = httpx.post(tiny_server.url + "/v1/audio/transcriptions", files={"file": ("slow.wav", wav)})
    assert response.status_code == 400, response.text
    message = response.json()["error"]["message"]
    assert "declares a sample rate of 1 Hz; supported rates are 4000 to 192000 Hz" in message
    assert not any(round(audio.duration) == 500 for audio in tiny_server.engine.transcriber.heard)


def test_idle_connection_times_out(tiny_server: Any) -> None:
    with socket.create_connection(("127.0.0.1", tiny_server.port), timeout=10) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"mess")
        start = time.monotonic()
        reply = b""
        while b"}}" not in reply:
            piece = sock.recv(4096)
            if not piece:
                break
            reply += piece
        waited = time.monotonic() - start
    assert reply.startswith(b"HTTP/1.1 408") and b"request_timeout" in reply
    assert 0.5 < waited < 5


def test_paths_never_reach_the_file_system(tiny_server: Any, tone: Any) -> None:
    url = tiny_server.url
    for key in ("..%2F..%2Fetc%2Fpasswd", "voice_..", "%2Fetc%2Fpasswd", "voice_" + "0" * 24):
        response = httpx.get(f"{url}/v1/voices/{key}")
        assert response.status_code == 404, key
    created = httpx.post(url + "/v1/voices", data={"name": "../../evil", "transcript": "t"},
                         files={"file": ("../../../x.wav", tone(1.0))})
    assert created.status_code == 201
    voice_id = created.json()["id"]
    files = sorted(p.name for p in (tiny_server.store.root / "audio").iterdir())
    assert files == [f"{voice_id}.wav"]
    assert httpx.delete(f"{url}/v1/voices/{voice_id}").status_code == 200


def test_busy_capability_answers_503(server_factory: Any, make_engine: Any) -> None:
    server = server_factory(ServerSettings(max_queue=0), make_engine(synth_delay=0.15))
    body = {"model": "tts-1", "input": "a. b. c. d. e", "voice": "tone", "response_format": "pcm"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body) as first:
        # the open stream holds the synthesizer until it is read to the end or closed
        busy = httpx.post(server.url + "/v1/audio/speech", json=body)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert busy.json()["error"]["code"] == "server_busy"
        assert len(first.read()) > 0
    assert httpx.post(server.url + "/v1/audio/speech", json=body).status_code == 200


def test_client_disconnect_cancels_generation(server_factory: Any, make_engine: Any) -> None:
    engine = make_engine(chat_delay=0.1)
    server = server_factory(ServerSettings(), engine)
    body = {"model": "m", "stream": True, "messages": [{"role": "user", "content": " ".join(["word"] * 200)}]}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        first = next(response.iter_bytes())
        assert first.startswith(b"data: ")
    assert engine.chat.cancelled.wait(5), "the chat generation was not cancelled after the client left"
    completion = server.client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert completion.choices[0].message.content == "You said: hi."


def _wav_header(rate: int, channels: int, bits: int, data_bytes: int, fmt_code: int = 1) -> bytes:
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_code, channels, rate, rate * block, block, bits)
    return b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", data_bytes)


def malformed_audio() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    good = encode_audio(np.zeros(1600, dtype=np.float32), 16000, "wav")
    nan = _wav_header(16000, 1, 32, 400, fmt_code=3) + np.full(100, np.nan, dtype="<f4").tobytes()
    return {
        "empty": b"",
        "random": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated wav": good[: len(good) // 2],
        "header only": good[:44],
        "huge declared size": _wav_header(16000, 1, 16, 0x7FFFFFF0) + b"\0" * 100,
        "zero rate": _wav_header(0, 1, 16, 100) + b"\0" * 100,
        "zero channels": _wav_header(16000, 0, 16, 100) + b"\0" * 100,
        "nan floats": nan,
        "riff garbage": b"RIFF\xff\xff\xff\xffWAVEjunkjunkjunk",
        "mp3 garbage": b"ID3\x04\x00\x00\x00\x00\x00\x00" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "ogg garbage": b"OggS" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "flac garbage": b"fLaC" + rng.integers(0, 256, 2000, dtype=np.uint8).tobytes(),
        "text": "héllo wörld".encode(),
    }


@pytest.mark.parametrize("name", list(malformed_audio()))
def test_malformed_audio_is_a_clear_4xx(tiny_server: Any, name: str) -> None:
    import base64

    data = malformed_audio()[name]
    url = tiny_server.url
    responses = [
        httpx.post(url + "/v1/audio/transcriptions", files={"file": ("a.wav", data)}),
        httpx.post(url + "/v1/voices", data={"name": f"m {name}", "transcript": "t"}, files={"file": ("a.wav", data)}),
        httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": [
            {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": "wav"}}]}]}),
    ]
    for response in responses:
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert httpx.get(url + "/health").status_code == 200


def test_malformed_requests_never_5xx(tiny_server: Any) -> None:
    url = tiny_server.url
    bodies: list[Any] = [
        [], {}, None, "x", 1, {"messages": "x"}, {"messages": []}, {"messages": [{}]},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
        {"messages": [{"role": "tool", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}], "n": 3},
        {"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "a b"}}]},
        {"messages": [{"role": "user", "content": "x"}], "audio": {"voice": "tone", "format": "wav"}},
        {"messages": [{"role": "user", "content": "x"}], "modalities": ["audio"]},
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "x" * 300_000}]},
    ]
    for body in bodies:
        response = httpx.post(url + "/v1/chat/completions", content=json.dumps(body),
                              headers={"Content-Type": "application/json"})
        assert 400 <= response.status_code < 500, (body, response.status_code, response.text)
    for body in [{"input": ""}, {"input": "x", "voice": {"name": "x"}}, {"input": "x", "voice": ["a"]},
                 {"input": "x", "response_format": "exe"}, {"input": "x", "speed": "fast"},
                 {"input": "x", "tags": ["a"] * 100}, {"input": "\x00\x01"}]:
        response = httpx.post(url + "/v1/audio/speech", json=body)
        assert response.status_code < 500 or response.status_code == 200, (body, response.text)
        assert response.status_code in (200, 400, 404, 422), (body, response.status_code)


def test_concurrent_requests_are_serialised(tiny_server: Any) -> None:
    client = tiny_server.client()
    results: list[str] = []

    def ask(i: int) -> None:
        completion = client.chat.completions.create(model="m", messages=[{"role": "user", "content": f"n{i}"}])
        results.append(completion.choices[0].message.content or "")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted(f"You said: n{i}." for i in range(4))


def test_voices_survive_a_server_restart(server_factory: Any, tone: Any, tmp_path: Any) -> None:
    first = server_factory(ServerSettings(), store_dir=tmp_path)
    created = first.client().audio.voices.create(name="Keeper", audio_sample=("k.wav", tone(1.0)), consent="c",
                                                 extra_body={"transcript": "kept words"})
    first.stop()
    second = server_factory(ServerSettings(), store_dir=tmp_path)
    card = httpx.get(second.url + f"/v1/voices/{created.id}").json()
    assert card["name"] == "Keeper" and card["transcript"] == "kept words"
    second.client().audio.speech.create(model="tts-1", voice="Keeper", input="hi", response_format="wav")
    _, voice, _ = second.engine.synthesizer.calls[-1]
    assert voice.prompt_text == "kept words" and voice.prompt_audio.is_file()


def test_malformed_multipart_never_5xx(tiny_server: Any) -> None:
    part = b'--abc\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
    cases = [
        ("multipart/form-data", b"garbage"),
        ("multipart/form-data; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="file"; '
                                              b'filename="a.wav"\r\n\r\nxx'),
        ("multipart/form-data; boundary=abc", b"--abc--\r\n"),
        ("multipart/form-data; boundary=", b"--\r\n"),
        ("application/x-www-form-urlencoded", b"name=%ZZ&&&==="),
        ("multipart/form-data; boundary=abc", part + b"x" * 1_100_000 + b"\r\n--abc--\r\n"),
    ]
    for path in ("/v1/audio/transcriptions", "/v1/voices"):
        for content_type, body in cases:
            response = httpx.post(tiny_server.url + path, content=body, headers={"Content-Type": content_type})
            assert 400 <= response.status_code < 500, (path, content_type, response.status_code, response.text)
            assert response.json()["error"]["message"]
