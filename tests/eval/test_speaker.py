"""Speaker similarity with the pinned Resemblyzer encoder on real recordings of two speakers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from stepaudio.audio.io import Audio, load_audio
from stepaudio.errors import AudioError
from stepaudio.eval.report import sha256_file
from stepaudio.eval.speaker import PRETRAINED_SHA256, SpeakerEncoder, cosine

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = str(TESTDATA / "librivox" / "sense_and_sensibility_01_austen_64kb-{}.wav")


@pytest.fixture(scope="module")
def encoder() -> SpeakerEncoder:
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer not installed: pip install 'stepaudio[eval]'")
    return SpeakerEncoder()


def test_the_model_is_pinned_and_named(encoder: SpeakerEncoder) -> None:
    info = encoder.info
    assert (info.package, info.version, info.sha256) == ("resemblyzer", "0.1.4", PRETRAINED_SHA256)
    assert sha256_file(info.weights) == PRETRAINED_SHA256


@pytest.mark.skipif(not TESTDATA.is_dir(), reason="real recordings absent: apt-get install pocketsphinx-testdata")
def test_same_speaker_scores_above_different_speakers(encoder: SpeakerEncoder) -> None:
    austen_a, austen_b = LIBRIVOX.format("0870"), LIBRIVOX.format("0890")
    cards = TESTDATA / "cards" / "005.wav"
    same = encoder.similarity(austen_a, austen_b)
    other = encoder.similarity(austen_a, cards)
    assert same > 0.8 and other < 0.8 and same - other > 0.1
    audio = load_audio(austen_a)
    assert encoder.similarity(audio, audio) == pytest.approx(1.0, abs=1e-6)
    louder_22k = Audio(audio.resampled(22050).samples * 0.5, 22050)  # rate and gain do not change the speaker
    assert encoder.similarity(audio, louder_22k) > 0.95


def test_silence_and_zero_vectors_are_clear_errors(encoder: SpeakerEncoder) -> None:
    with pytest.raises(AudioError, match="silent"):
        encoder.embed(Audio(np.zeros(16000, dtype=np.float32), 16000))
    with pytest.raises(AudioError, match="zero"):
        cosine(np.zeros(3), np.ones(3))
