"""VAD: the sliding window behind per-frame probabilities (any scorer; real Silero behind the slow marker), and
Silero's offline spans and trim on a real recording; importing the module loads no model package."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.audio.vad import SileroVad, Trimmer, WindowedVad, silero_frame_vad
from stepaudio.errors import AudioError

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
QUESTION = Path(__file__).resolve().parents[2] / "examples" / "question_capital.wav"


def test_scores_a_sliding_window_and_returns_the_last_chunk() -> None:
    seen: list[int] = []

    def score(samples: np.ndarray) -> np.ndarray:
        seen.append(samples.size)
        return samples.reshape(-1, 4).mean(axis=1)  # one score per 4-sample chunk

    vad = WindowedVad(score, frame_samples=4, window=3)
    values = [vad(np.full(4, value, np.float32)) for value in (0.1, 0.2, 0.3, 0.4)]
    assert values == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert seen == [4, 8, 12, 12]
    vad.reset()
    vad(np.zeros(4, np.float32))
    assert seen[-1] == 4
    with pytest.raises(AudioError, match="4 samples"):
        vad(np.zeros(5, np.float32))


def test_importing_the_module_loads_no_vad_package() -> None:
    code = "import sys, stepaudio.audio.vad; print('faster_whisper' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_silero_frames_separate_speech_from_silence() -> None:
    pytest.importorskip("faster_whisper.vad")
    vad = silero_frame_vad()
    rng = np.random.default_rng(0)
    quiet = [vad(rng.normal(0, 1e-4, 512).astype(np.float32)) for _ in range(20)]
    assert max(quiet) < 0.5
    speech = load_audio(QUESTION).resampled(16000).samples
    vad.reset()
    heard = [vad(speech[i : i + 512]) for i in range(0, speech.size - 511, 512)]
    assert max(heard) > 0.5


def test_silero_trims_silence_around_speech_and_finds_none_in_noise() -> None:
    pytest.importorskip("faster_whisper.vad")
    listing = LIBRIVOX / "transcription"
    if not listing.is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    stem = re.search(r"\((.*)\)", listing.read_text().splitlines()[0])
    assert stem is not None
    vad: Trimmer = SileroVad()
    audio = load_audio(LIBRIVOX / f"{stem.group(1)}.wav")
    padded = Audio(np.concatenate([np.zeros(16000, np.float32), audio.resampled(16000).samples,
                                   np.zeros(16000, np.float32)]), 16000)
    trimmed, spans = vad.trim(padded)
    assert spans and spans[0].start >= 0.7 and spans[-1].end <= padded.duration - 0.7
    assert trimmed.sample_rate == 16000 and abs(trimmed.duration - audio.duration) < 0.8
    noise = Audio(np.random.default_rng(0).normal(0, 0.01, 32000).astype(np.float32), 16000)
    silent, none = vad.trim(noise)
    assert none == [] and silent.samples.size == 0
