"""The server's pure helpers: formats and framing, instructions, subtitles, sentence splitting, the gate."""

from __future__ import annotations

import io

import anyio
import numpy as np
import pytest
import soundfile as sf

from stepaudio.audio.io import to_pcm16
from stepaudio.engines.base import Segment, Transcript
from stepaudio.errors import AudioError, CheckpointError, StepAudioError, TagError, UnsupportedError
from stepaudio.server.audio_out import (
    PCM_RATE,
    PcmStream,
    available_formats,
    check_format,
    encode,
    pcm_bytes,
    streaming_wav_header,
)
from stepaudio.server.errors import ApiError, to_api_error
from stepaudio.server.instructions import speech_instructions
from stepaudio.server.schemas import SpeechRequest
from stepaudio.server.settings import ServerSettings
from stepaudio.server.streaming import CapabilityGate
from stepaudio.server.transcription import subtitles
from stepaudio.store.voices import VoiceExistsError, VoiceNotFoundError


def test_streamed_wav_decodes() -> None:
    samples = (0.5 * np.sin(np.arange(1000) / 5)).astype(np.float32)
    data = streaming_wav_header(16000) + to_pcm16(samples[:400]) + to_pcm16(samples[400:])
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 16000 and len(decoded) == 1000 and np.abs(decoded - samples).max() < 1e-4


@pytest.mark.parametrize("rate", [16000, 22050, 24000])
def test_raw_pcm_is_24_khz_whole_or_streamed(rate: int) -> None:
    t = np.arange(rate) / rate  # one second of 440 Hz
    samples = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    whole = np.frombuffer(pcm_bytes(samples, rate), dtype="<i2")
    assert len(whole) == PCM_RATE and encode(samples, rate, "pcm16") == whole.tobytes()
    stream = PcmStream(rate)
    pieces = [stream.push(samples[start:start + 1000]) for start in range(0, rate, 1000)]
    streamed = np.frombuffer(b"".join(pieces) + stream.finish(), dtype="<i2")
    assert len(streamed) == PCM_RATE and np.abs(streamed.astype(np.int32) - whole).max() <= 64
    spectrum = np.abs(np.fft.rfft(streamed / 32767.0))
    assert abs(int(spectrum.argmax()) - 440) <= 1  # played at 24 kHz, one second holds 440 cycles


def test_formats() -> None:
    assert {"wav", "pcm", "flac"} <= available_formats()
    assert check_format("pcm16") == "pcm"
    with pytest.raises(ApiError) as info:
        check_format("aac")
    assert info.value.status == 400 and info.value.param == "response_format"


def test_instructions_from_request() -> None:
    request = SpeechRequest(input="hi", instructions="(RAP) excited, Cantonese", speed=1.0, volume=0.5)
    result = speech_instructions(request)
    assert result.tags == ("RAP",) and result.emotion == "excited" and result.dialect == "Cantonese"
    assert result.speed is None and result.volume == 0.5 and not result.strict
    assert speech_instructions(SpeechRequest(input="hi", speed=1.5, instructions="slow")).speed == 1.5
    with pytest.raises(TagError):
        speech_instructions(SpeechRequest(input="hi", emotion="bored", strict=True))
    with pytest.raises(TagError):
        speech_instructions(SpeechRequest(input="hi", tags=["nope"], strict=True))
    assert speech_instructions(SpeechRequest(input="(nope)hi", tags=["nope"])).tags == ("nope",)


def test_subtitles() -> None:
    result = Transcript("a b", segments=(Segment(0.0, 1.25, " a"), Segment(61.5, 3725.0, "b")))
    assert subtitles(result, "srt", 0) == ("1\n00:00:00,000 --> 00:00:01,250\na\n\n"
                                           "2\n00:01:01,500 --> 01:02:05,000\nb\n")
    assert subtitles(result, "vtt", 0).startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\na\n\n00:01:01.500")
    assert subtitles(Transcript("whole"), "srt", 2.0) == "1\n00:00:00,000 --> 00:00:02,000\nwhole\n"


def test_error_mapping() -> None:
    cases = [
        (VoiceNotFoundError("no voice"), 404, "voice_not_found"),
        (VoiceExistsError("dup"), 409, "voice_exists"),
        (AudioError("the audio lasts 9 s, longer than the 5 s allowed"), 413, "audio_too_long"),
        (AudioError("x is larger than the 5 bytes allowed"), 413, "file_too_large"),
        (AudioError("cannot decode"), 400, "invalid_audio"),
        (TagError("bad tag"), 400, "invalid_instruction"),
        (UnsupportedError("the editx engine only clones"), 400, "unsupported"),
        (StepAudioError("engine broke"), 500, "engine_error"),
        (CheckpointError("model.safetensors is missing"), 503, "model_unavailable"),
        (RuntimeError("secret detail"), 500, "internal_error"),
    ]
    for exc, status, code in cases:
        error = to_api_error(exc)
        assert (error.status, error.code) == (status, code), exc
    assert "secret" not in to_api_error(RuntimeError("secret detail")).message


def test_settings_are_frozen() -> None:
    settings = ServerSettings()
    assert settings.api_key is None and settings.cors_origins == ()
    with pytest.raises(AttributeError):
        settings.api_key = "x"  # type: ignore[misc]


def test_gate_queues_then_refuses() -> None:
    async def scenario() -> list[str]:
        gate = CapabilityGate(max_queue=1)
        events: list[str] = []
        first = await gate.acquire("chat")

        async def waiter() -> None:
            lease = await gate.acquire("chat")
            events.append("second got it")
            lease.release()

        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            await anyio.sleep(0.05)
            with pytest.raises(ApiError) as info:
                await gate.acquire("chat")
            events.append(f"third refused {info.value.status}")
            async with gate.hold("synthesizer"):  # another capability is independent
                events.append("synth free")
            first.release()
            first.release()  # idempotent
        return events

    assert anyio.run(scenario) == ["third refused 503", "synth free", "second got it"]


def test_a_gate_lets_in_as_many_as_the_engine_serves_at_once() -> None:
    async def scenario() -> list[str]:
        gate = CapabilityGate(max_queue=1, capacity={"chat": 2})
        events: list[str] = []
        first = await gate.acquire("chat")
        with anyio.fail_after(1):
            second = await gate.acquire("chat")  # the engine serves two at once: no wait
        events.append("two in")

        async def waiter() -> None:
            lease = await gate.acquire("chat")
            events.append("third got it")
            lease.release()

        async with anyio.create_task_group() as group:
            group.start_soon(waiter)
            await anyio.sleep(0.05)
            events.append("third waits")
            async with gate.hold("synthesizer"):
                with pytest.raises(TimeoutError), anyio.fail_after(0.05):  # one not named: one at a time
                    await gate.acquire("synthesizer")
            second.release()
        first.release()
        return events

    assert anyio.run(scenario) == ["two in", "third waits", "third got it"]
    with pytest.raises(ValueError):
        CapabilityGate(max_queue=1, capacity={"chat": 0})
