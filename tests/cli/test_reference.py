from __future__ import annotations

from pathlib import Path

import pytest

from stepaudio.cli.main import main


def test_tts_inference_clone_needs_prompt(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["tts-inference", "--model-path", str(tmp_path), "--output-path", str(tmp_path),
                 "--synthesis-type", "clone"])
    assert code == 2 and "--prompt-wav" in capsys.readouterr().err
