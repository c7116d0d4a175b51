from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from stepaudio.decoder.cosyvoice2.cfm import TensorNoise
from stepaudio.decoder.cosyvoice2.flow import CausalMaskedDiffWithXvec
from stepaudio.decoder.cosyvoice2.hift import HiFT24k, ScriptedDraws, SeededDraws
from stepaudio.decoder.cosyvoice2.prompt import Prompt
from stepaudio.decoder.cosyvoice2.token2wav import Token2Wav
from stepaudio.decoder.cosyvoice2.token2wav_stream import StreamVocoder, to_pcm16

# end to end from tokens the HiFT output may differ by 5e-3 (README); in int16 steps, plus truncation
PCM_ATOL = int(5e-3 * 32767) + 1


class Replay:
    """A vocoder that returns saved (waveform, source) pairs: tests the glue alone."""

    def __init__(self, hift: HiFT24k, outputs: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        self.outputs = outputs
        self.samples_per_frame = hift.samples_per_frame
        self.inputs: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def __call__(self, mel: torch.Tensor, draws: object, cache_source: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        self.inputs.append((mel, cache_source))
        return self.outputs.pop(0)


def test_to_pcm16_clips_scales_and_truncates() -> None:
    pcm = to_pcm16(torch.tensor([[0.5, -0.5, 1.5, -2.0, 1e-5]]))
    assert pcm.dtype == np.int16 and pcm.tolist() == [16383, -16383, 32767, -32767, 0]


def test_vocoder_glue_replays_the_reference_exactly(
    hift: HiFT24k, stream_vectors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    chunks = range(len(meta["stream_chunks"]))
    v = stream_vectors
    replay = Replay(hift, [(v[f"chunk{i}.hift_speech_raw"], v[f"chunk{i}.hift_source"]) for i in chunks])
    glue = StreamVocoder(replay, SeededDraws(0), meta["stream_consts"]["mel_cache_len"])  # type: ignore[arg-type]
    for i, info in zip(chunks, meta["stream_chunks"], strict=True):
        pcm = glue.push(v[f"chunk{i}.flow_mel"], info["last_chunk"])
        mel_in, source_in = replay.inputs[-1]
        assert torch.equal(mel_in, v[f"chunk{i}.hift_mel_in"])
        assert (source_in is None and i == 0) or torch.equal(source_in, v[f"chunk{i}.hift_cache_source_in"])
        assert pcm.shape[0] == info["pcm_samples"]
        diff = np.abs(pcm.astype(np.int32) - v[f"chunk{i}.pcm_int16"].numpy().astype(np.int32))
        assert int(diff.max()) <= 1


def test_conformance_stream_push_finish(
    flow: CausalMaskedDiffWithXvec,
    hift: HiFT24k,
    stream_vectors: dict[str, torch.Tensor],
    ref_noise: TensorNoise,
    ref_prompt: Prompt,
    stream_draws: ScriptedDraws,
    meta: dict[str, Any],
) -> None:
    t2w = Token2Wav(flow, hift, noise=ref_noise)
    stream = t2w.stream(ref_prompt, draws=stream_draws)
    tokens = stream_vectors["inputs.stream_tokens"].tolist()
    chunk = meta["stream_consts"]["chunk_size"]
    look = meta["stream_consts"]["pre_lookahead_len"]
    # tokens as an LM would produce them: one at a time; a chunk leaves as soon as its look-ahead is in
    outputs = [stream.push([token]) for token in tokens] + [stream.finish()]
    produced = [out for out in outputs if out.size]
    assert [i for i, out in enumerate(outputs) if out.size][: len(produced) - 1] == [
        chunk * k + chunk + look - 1 for k in range(len(produced) - 1)
    ]
    assert len(produced) == len(meta["stream_chunks"])
    for i, pcm in enumerate(produced):
        ref = stream_vectors[f"chunk{i}.pcm_int16"].numpy().astype(np.int32)
        assert pcm.shape == ref.shape
        assert int(np.abs(pcm.astype(np.int32) - ref).max()) <= PCM_ATOL
    assert stream.finish().size == 0
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push([1])


def test_streamed_is_not_offline_as_in_the_reference(
    flow: CausalMaskedDiffWithXvec,
    hift: HiFT24k,
    stream_vectors: dict[str, torch.Tensor],
    ref_noise: TensorNoise,
    ref_prompt: Prompt,
) -> None:
    # Same length and noise, different audio: offline attends over the whole utterance (and encodes the prompt
    # together with the tokens), a chunk only over the past (see token2wav_stream). Pin both facts.
    t2w = Token2Wav(flow, hift, noise=ref_noise)
    tokens = stream_vectors["inputs.stream_tokens"].tolist()
    stream = t2w.stream(ref_prompt, draws=SeededDraws(1))
    streamed = np.concatenate([stream.push(tokens), stream.finish()])
    offline = to_pcm16(torch.from_numpy(t2w(tokens, ref_prompt, draws=SeededDraws(1)))[None])
    assert streamed.shape == offline.shape == (len(tokens) * 960,)
    assert not np.array_equal(streamed, offline)
    first_mel = t2w.mel(tokens[:25], ref_prompt)
    stream = t2w.stream(ref_prompt, draws=SeededDraws(1))
    stream.push(tokens[:28])
    assert stream.last_mel is not None and stream.last_mel.shape == first_mel.shape
    assert not torch.allclose(stream.last_mel, first_mel, atol=1e-3)


def test_a_short_utterance_is_one_last_chunk(flow: CausalMaskedDiffWithXvec, hift: HiFT24k, ref_prompt: Prompt) -> None:
    stream = Token2Wav(flow, hift).stream(ref_prompt)
    assert stream.push([5, 6, 7, 8]).size == 0
    assert stream.finish().shape == (4 * 960,)


def test_prompt_too_short_for_the_lookahead(flow: CausalMaskedDiffWithXvec, hift: HiFT24k) -> None:
    prompt = Prompt(torch.tensor([1, 2]), torch.zeros(4, 80), torch.ones(192))
    with pytest.raises(ValueError, match="at least 3 tokens"):
        Token2Wav(flow, hift).stream(prompt)
