"""`stepaudio bench all`: real bench targets in subprocesses (a tiny LM shape, the simulated realtime bench), one
JSON + Markdown report, and a failing or overrunning target reported without stopping the others."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest

from stepaudio.cli.main import main
from stepaudio.testing.tiny_lm import tiny_step1_config

bench_all = importlib.import_module("stepaudio.eval.bench.all")


@pytest.fixture()
def tiny_shape(tmp_path: Path) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(tiny_step1_config(vocab_size=512).to_hf_dict()))
    return path


def test_runs_targets_and_collects_one_report(tiny_shape: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "all", "--targets", "realtime,lm", "--out", str(out),
                 "--extra", f"lm=--shape {tiny_shape} --layers 1 --bandwidth-mib 8 --prefill 8 --decode 2"])
    assert code == 0
    payload = json.loads((out / "bench.json").read_text())
    targets = {t["name"]: t for t in payload["targets"]}
    assert list(targets) == ["realtime", "lm"] and all(t["error"] is None for t in targets.values())
    lm = targets["lm"]
    # the small preset came first, the extra arguments after it (argparse keeps the last), --threads added
    assert lm["command"][-2:] == ["--json", str(out / "targets" / "lm.json")] and "--threads" in lm["command"]
    assert lm["result"]["layers"] == 1 and lm["result"]["decode_tok_s"] > 0
    assert "--seed" in targets["realtime"]["command"] and "--threads" not in targets["realtime"]["command"]
    metrics = {(m["target"], m["metric"].split(" (")[0]): m for m in payload["metrics"]}
    commit = metrics[("realtime", "speculative commit rate")]  # on recorded turns, next to the paper's
    assert commit["paper"] == "40% (speculative generation)"
    assert commit["value"] is None if targets["realtime"]["result"]["recorded_missing"] else 0.0 < commit["value"] <= 1
    simulated = metrics[("realtime", "controller check: commit rate of the simulated pauses")]
    assert 0.0 <= simulated["value"] <= 1.0 and simulated["paper"] is None
    assert metrics[("lm", "decode tok/s")]["value"] == lm["result"]["decode_tok_s"]
    assert payload["provenance"]["seeds"] == {"bench": 0} and payload["headline"]
    md = (out / "bench.md").read_text()
    assert "| realtime | ok |" in md and "| lm | ok |" in md and "speculative commit rate" in md
    assert (out / "targets" / "lm.log").is_file()


def test_failed_and_timed_out_targets_are_reported(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main(["bench", "all", "--targets", "lm,realtime", "--extra", "lm=--shape /no/such/config.json",
                 "--out", str(out)])
    assert code == 1
    payload = json.loads((out / "bench.json").read_text())
    lm, realtime = payload["targets"]
    assert lm["error"].startswith("exit status") and "config.json" in lm["error"] and lm["result"] is None
    assert realtime["error"] is None and realtime["result"]["results"]["speculative"]["turns"] > 0
    assert "### lm failed" in (out / "bench.md").read_text()
    slow = bench_all.run_target("realtime", ["--conversations", "100000"], 0.5, tmp_path / "logs")
    assert slow.returncode is None and slow.error is not None and slow.error.startswith("timed out after 0.5 s")


def test_bad_arguments_are_clear_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["bench", "all", "--targets", "lm,nope", "--out", str(tmp_path)]) == 2
    assert "unknown bench target" in capsys.readouterr().err
    assert main(["bench", "all", "--targets", "lm", "--extra", "decoder=--seconds 1", "--out", str(tmp_path)]) == 2
    assert "--extra takes TARGET=ARGS" in capsys.readouterr().err
    assert "all" not in bench_all.resolve_targets("every") and "lite" in bench_all.resolve_targets("every")
    assert "decoder-reference" not in bench_all.resolve_targets("every")
    assert bench_all.resolve_targets("decoder-reference") == ["decoder-reference"]


def _result(name: str, result: Any) -> Any:
    return bench_all.TargetResult(name, (), 0, 1.0, result, "log")


def test_key_metrics_of_the_lite_and_tokenizer_results() -> None:
    lite = {"asr": {"librivox": {"wer": 0.014, "rtf": 0.2}, "cards": {"skipped": "x"}},
            "tts": {"english_piper_joe": {"wer": 0.02, "rtf": 0.08}, "mandarin_espeak_cmn_150wpm": {"cer": 0.4}},
            "latency": {"summary": {"first_audio_p50": 1.2, "first_audio_p90": 1.9}}}
    rows = {r["metric"]: r for r in bench_all.key_metrics(_result("lite", lite))}
    assert rows["ASR WER (librivox)"]["shown"] == "1.40%"
    assert rows["ASR WER (librivox)"]["paper"] == "3.11% (LibriSpeech test-clean)"
    assert rows["TTS round-trip CER (mandarin_espeak_cmn_150wpm)"]["paper"] == "1.31% (SEED test-zh)"
    assert rows["speech end -> first reply audio p90"]["value"] == 1.9
    tok = {"vq02": {"blocks": 4, "modes": {"fp32": {"rtf": 0.3, "chunk_ms_p90": 40.0}}},
           "vq06": [{"name": "tokenizer offline", "rtf": 1.7}, {"name": "vq06 offline", "rtf": 1.0}]}
    metrics = [r["metric"] for r in bench_all.key_metrics(_result("tokenizer", tok))]
    assert metrics == ["vq02 fp32 RTF (4 blocks)", "vq02 fp32 240 ms chunk p90", "tokenizer offline RTF"]
    odd = bench_all.key_metrics(_result("lm", ["not", "a", "dict"]))
    assert odd[0]["metric"] == "result not summarised"
