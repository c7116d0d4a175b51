"""Report pieces: hashes, provenance, JSON, Markdown tables, the index page, and the paper's numbers."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stepaudio.errors import StepAudioError
from stepaudio.eval import paper, report


def test_model_record_hashes_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "b.bin").write_bytes(b"weights" * 100)
    (tmp_path / "m" / "a.json").write_text("{}")
    (tmp_path / "m" / "b.bin.verified").write_text("stamp")
    record = report.model_record("asr", "toy", tmp_path / "m", version="1")
    assert [Path(f.path).name for f in record.files] == ["a.json", "b.bin"]
    assert record.files[1].sha256 == hashlib.sha256(b"weights" * 100).hexdigest()
    assert record.files[1].bytes == 700
    big = report.model_record("asr", "toy", tmp_path / "m" / "b.bin", hash_limit=10)
    assert big.files[0].sha256 is None and big.files[0].bytes == 700
    with pytest.raises(StepAudioError, match="not found"):
        report.model_record("asr", "toy", tmp_path / "missing")


def test_provenance_records_versions_seeds_and_machine(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(b"x")
    prov = report.provenance([report.model_record("tts", "w", tmp_path / "w.bin")], seeds={"numpy": 3},
                             command=["stepaudio", "eval", "asr"], dataset="d")
    assert prov["packages"]["numpy"] == np.__version__
    assert prov["seeds"] == {"numpy": 3} and prov["dataset"] == "d"
    assert prov["models"][0]["files"][0]["sha256"] == hashlib.sha256(b"x").hexdigest()
    assert prov["machine"]["cpus"] >= 1
    text = report.provenance_markdown(prov)
    assert hashlib.sha256(b"x").hexdigest() in text and "numpy=3" in text
    assert report.package_versions(["no-such-package-xyz"]) == {"no-such-package-xyz": None}


@dataclass(frozen=True)
class _Row:
    name: str
    value: float
    path: Path


def test_write_json_handles_dataclasses_numpy_and_nan(tmp_path: Path) -> None:
    payload = {"rows": [_Row("a", float("nan"), Path("/x/y"))], "arr": np.arange(3), "f": np.float32(0.5),
               "t": (1, 2)}
    out = json.loads(report.write_json(tmp_path / "sub" / "r.json", payload).read_text())
    assert out == {"rows": [{"name": "a", "value": None, "path": "/x/y"}], "arr": [0, 1, 2], "f": 0.5, "t": [1, 2]}


def test_markdown_table_formats_escapes_and_marks_missing() -> None:
    table = report.markdown_table([{"a": 0.12345, "b": "x|y"}, {"a": None}],
                                  [("a", "A", "{:.2f}"), report.Column("b", "B")])
    assert table.splitlines() == ["| A | B |", "|---|---|", "| 0.12 | x\\|y |", "| - | - |"]


def test_summarize_collects_headlines(tmp_path: Path) -> None:
    with pytest.raises(StepAudioError, match="no reports"):
        report.summarize(tmp_path)
    ref = paper.find("asr", "LibriSpeech test-clean", "WER")
    report.write_json(tmp_path / "asr-x.json", {"headline": [report.headline_row("asr", "x", "WER", 0.0123, "%", ref)]})
    report.write_text(tmp_path / "asr-x.md", "# x")
    report.write_json(tmp_path / "other.json", {"no": "headline"})
    assert report.main(["summarize", str(tmp_path)]) == 0
    page = (tmp_path / "README.md").read_text()
    assert "| asr | x | WER | 1.23% | 3.11% (LibriSpeech test-clean) |" in page
    assert "[asr-x.md](asr-x.md)" in page
    (tmp_path / "bad.json").write_text("{not json")
    assert report.main(["summarize", str(tmp_path)]) == 2


def test_paper_numbers_and_nearest_benchmarks() -> None:
    assert paper.find("asr", "aishell-1", "cer").value == 1.95  # type: ignore[union-attr]
    assert paper.find("tts", "SEED test-en", "WER").value == 2.31  # type: ignore[union-attr]
    assert paper.seed_tts_reference("zh", "SS").value == 0.733  # type: ignore[union-attr]
    assert paper.seed_tts_reference("en", "SS").value == 0.660  # type: ignore[union-attr]
    assert paper.seed_tts_reference("ja", "CER") is None and paper.seed_tts_reference("ja", "SS") is None
    assert paper.nearest_asr_benchmark("librivox", "WER").benchmark == "LibriSpeech test-clean"  # type: ignore[union-attr]
    assert paper.nearest_asr_benchmark("librispeech-test-other", "WER").value == 8.44  # type: ignore[union-attr]
    assert paper.nearest_asr_benchmark("cards", "WER") is None
    assert paper.nearest_asr_benchmark("aishell", "WER") is None  # Aishell is scored by CER
    assert {r.metric for r in paper.results_for("chat")} == {"factuality", "relevance", "chat score"}


def test_error_rate_plot_and_spread(tmp_path: Path) -> None:
    with pytest.raises(StepAudioError, match="no reports with per-utterance"):
        report.plot_error_rates(tmp_path, tmp_path / "x.png")
    head = report.headline_row("asr", "s", "WER", 0.25, "%")
    report.write_json(tmp_path / "asr-s.json", {"task": "asr", "headline": [head],
                                                "rows": [{"error_rate": 0.0}, {"error_rate": 0.5}]})
    assert report.main(["summarize", str(tmp_path), "--png", "rates.png"]) == 0
    assert (tmp_path / "rates.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![per-utterance error rates](rates.png)" in (tmp_path / "README.md").read_text()
    stats = report.spread([0.1, 0.3])
    assert stats["mean"] == pytest.approx(0.2)
    assert report.spread_note(stats) == "mean of 2 runs (min 10.00%, max 30.00%)"
    assert report.spread_note(report.spread([0.5, 0.7]), "") == "mean of 2 runs (min 0.500, max 0.700)"
