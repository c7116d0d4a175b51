"""EditX's streaming decoder: the reference's chunking, what it shares with offline and where it departs.

Equality with the reference's own streaming (same weights, noise and draws) is checked side by side by
`tests/eval/bench/test_decoder_reference_editx.py` (reference marker). Here: the chunk schedule, independence from
how ids arrive, lengths, the vocoder glue, and the distance to the offline mel. The scale of that distance is the
decoder's own variability: the offline mel with another flow noise (`seed distance`). Streamed frames see the
same noise columns as offline until the estimator cache is first cut (prompt + 96 frames); there the measured
distance is ~2 % of the seed distance (tiny random weights, the attention spans still differ). After the cut
the reference takes the noise from the cut length, so later frames see other columns than offline: a seed's
distance, by design of the reference, and pinned here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from stepaudio.decoder.cosyvoice2.cfm import seeded_noise
from stepaudio.decoder.cosyvoice2.editx_stream import EditXStreamConfig, ids_for_frames
from stepaudio.decoder.cosyvoice2.editx_token2wav import EditXPrompt, EditXToken2Wav
from stepaudio.decoder.cosyvoice2.hift import SeededDraws
from stepaudio.decoder.cosyvoice2.token2wav_stream import StreamVocoder, to_pcm16
from stepaudio.testing.tiny_editx import dual_codebook_ids
from stepaudio.testing.tiny_stack import speech_like

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def prompt(editx_decoder: EditXToken2Wav) -> EditXPrompt:
    # 36 pairs, 72 mel frames
    return editx_decoder.prompt_features(speech_like(2.0, 24000, 1), 24000, dual_codebook_ids(12, 0))


def _streamed(editx_decoder: EditXToken2Wav, prompt: EditXPrompt, ids: list[int], step: int,
              config: EditXStreamConfig | None = None) -> tuple[list[np.ndarray], torch.Tensor]:
    stream = editx_decoder.stream(prompt, draws=SeededDraws(2), config=config)
    pieces, mels = [], []
    for i in range(0, len(ids), step):
        pieces.append(stream.push(ids[i : i + step]))
        if pieces[-1].size:
            assert stream.last_mel is not None
            mels.append(stream.last_mel)
    pieces.append(stream.finish())
    assert stream.last_mel is not None
    return pieces, torch.cat([*mels, stream.last_mel], dim=2)


def test_chunks_grow_as_the_reference_schedules_them(editx_decoder: EditXToken2Wav, prompt: EditXPrompt) -> None:
    ids = dual_codebook_ids(60, 1)[:-2]  # 298 ids
    pieces, _ = _streamed(editx_decoder, prompt, ids, 1)
    produced = [i for i, piece in enumerate(pieces[:-1]) if piece.size]
    # first audio with 15 frames (25 ids) + the 5 look-ahead ids, then 24 frames (40 ids), then 48 (80 ids)
    assert produced == [29, 69, 149, 229]
    stream = editx_decoder.stream(prompt)
    assert stream.push(ids[:4]).size == 0 and not stream.primed
    assert stream.push(ids[4:5]).size == 0 and stream.primed  # caches primed with the first 3 frames as look-ahead
    assert stream.push(ids[5:29]).size == 0
    first = stream.push(ids[29:30])
    # the vocoder holds back 8 frames' samples for the cross-fade: 30 mel frames -> 22 frames out
    assert first.shape == ((30 - 8) * 480,) and first.dtype == np.float32
    assert stream.chunk_ids == [30]


def test_how_ids_arrive_does_not_matter(editx_decoder: EditXToken2Wav, prompt: EditXPrompt) -> None:
    ids = dual_codebook_ids(40, 2)[:-3]
    one_by_one = np.concatenate(_streamed(editx_decoder, prompt, ids, 1)[0])
    in_sevens = np.concatenate(_streamed(editx_decoder, prompt, ids, 7)[0])
    at_once = np.concatenate(_streamed(editx_decoder, prompt, ids, len(ids))[0])
    assert np.array_equal(one_by_one, in_sevens) and np.array_equal(one_by_one, at_once)


@pytest.mark.parametrize("count", [1, 4, 5, 31, 104])
def test_streamed_length_is_the_offline_length(editx_decoder: EditXToken2Wav, prompt: EditXPrompt, count: int) -> None:
    ids = dual_codebook_ids(25, 3)[:count]
    streamed = np.concatenate(_streamed(editx_decoder, prompt, ids, 3)[0])
    offline = editx_decoder(ids, prompt)
    assert streamed.shape == offline.shape == (-(-count // 5) * 3 * 2 * 480,)
    assert np.isfinite(streamed).all()


def test_streamed_mel_is_offline_up_to_the_first_cache_cut(editx_decoder: EditXToken2Wav, editx_decoder_dir: Path,
                                                          prompt: EditXPrompt) -> None:
    ids = dual_codebook_ids(60, 1)[:-2]
    offline = editx_decoder.mel(ids, prompt)
    other_noise = EditXToken2Wav.from_dir(editx_decoder_dir, seed=1)
    other_noise.noise = seeded_noise(7, 80)
    seed_distance = float((other_noise.mel(ids, prompt) - offline).abs().mean())
    _, streamed = _streamed(editx_decoder, prompt, ids, 1)
    assert streamed.shape == offline.shape
    distance = (streamed - offline).abs().mean(dim=(0, 1))
    # chunks end at mel frames 30, 78, 174: the cache (72 prompt + frames so far) passes 72 + 96 after the
    # third chunk, so frames from 174 on take noise from the cut length, not their own columns
    cut = 2 * (15 + 24 + 48)
    before, after = float(distance[:cut].mean()), float(distance[cut:].mean())
    assert before < 0.1 * seed_distance, (before, seed_distance)  # measured 0.02
    assert after > 0.5 * seed_distance, (after, seed_distance)  # measured ~1.0: a noise change
    # without the cut (a long left context) every frame keeps its own noise column and stays close
    _, uncut = _streamed(editx_decoder, prompt, ids, 1, EditXStreamConfig(left_context_frames=10_000))
    assert float((uncut - offline).abs().mean()) < 0.1 * seed_distance


def test_float_vocoder_glue_is_the_pcm_glue(editx_decoder: EditXToken2Wav, prompt: EditXPrompt) -> None:
    from stepaudio.decoder.cosyvoice2.editx_stream import FloatStreamVocoder

    mel = editx_decoder.mel(dual_codebook_ids(20, 4), prompt)
    floats = FloatStreamVocoder(editx_decoder.hift, SeededDraws(5))
    pcm = StreamVocoder(editx_decoder.hift, SeededDraws(5))
    for start, stop, last in ((0, 30, False), (30, 78, False), (78, 120, True)):
        out = floats.push_float(mel[..., start:stop], last)
        assert np.array_equal(to_pcm16(torch.from_numpy(out)[None]), pcm.push(mel[..., start:stop], last))


def test_stream_edges(editx_decoder: EditXToken2Wav, prompt: EditXPrompt) -> None:
    stream = editx_decoder.stream(prompt)
    assert stream.finish().size == 0 and stream.finish().size == 0
    with pytest.raises(RuntimeError, match="after finish"):
        stream.push([1])
    assert ids_for_frames(15) == 25 and ids_for_frames(48) == 80
    with pytest.raises(ValueError, match="whole groups"):
        EditXStreamConfig(chunk_frames=(16,))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_offline_and_stream_on_cuda_equal_cpu(editx_decoder_dir: Path, editx_decoder: EditXToken2Wav,
                                              prompt: EditXPrompt) -> None:
    gpu = EditXToken2Wav.from_dir(editx_decoder_dir, device="cuda", seed=1)
    ids = dual_codebook_ids(50, 6)[:-1]
    torch.testing.assert_close(gpu.mel(ids, prompt).cpu(), editx_decoder.mel(ids, prompt), atol=2e-3, rtol=1e-3)
    cpu_pieces, cpu_mel = _streamed(editx_decoder, prompt, ids, 1)
    gpu_pieces, gpu_mel = _streamed(gpu, prompt, ids, 1)
    assert [p.shape for p in gpu_pieces] == [p.shape for p in cpu_pieces]
    torch.testing.assert_close(gpu_mel.cpu(), cpu_mel, atol=2e-3, rtol=1e-3)
    cpu_wav, gpu_wav = np.concatenate(cpu_pieces).astype(np.float64), np.concatenate(gpu_pieces).astype(np.float64)
    assert 10 * np.log10((cpu_wav**2).sum() / ((cpu_wav - gpu_wav) ** 2).sum()) > 40.0
