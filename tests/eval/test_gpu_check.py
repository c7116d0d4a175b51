"""The GPU check's CPU-runnable parts: the no-GPU exits, the plan, the JUnit and bench summaries, the report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from stepaudio.eval import gpu_check
from stepaudio.eval.bench.all import TargetResult

REPO = Path(__file__).resolve().parents[2]


def test_without_cuda_it_exits_at_once_saying_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "nvidia_driver_present", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == gpu_check.NO_DEVICE == 0
    assert "no CUDA device here" in capsys.readouterr().err and not (tmp_path / "out").exists()
    monkeypatch.setattr(gpu_check, "nvidia_driver_present", lambda: True)
    monkeypatch.setattr(torch.version, "cuda", None)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == gpu_check.BROKEN_SETUP
    assert "CPU-only build" in capsys.readouterr().err


@pytest.mark.skipif(Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/version").exists(),
                    reason="this machine has an NVIDIA GPU")
def test_script_without_gpu_exits_before_any_setup(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "GPU_CHECK_OUT": str(tmp_path / "out"), "GPU_CHECK_VENV": str(tmp_path / "venv")}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0 and "no CUDA device here" in done.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "out").exists()


def test_plan_runs_on_cuda_within_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = gpu_check.plan_steps(300.0)
    names = [s.name for s in steps]
    assert names[:2] == ["lm-bf16-eager", "lm-bf16-cuda-graph"] and {"decoder", "decoder-stream", "tts"} <= set(names)
    assert all(s.argv[s.argv.index("--device") + 1] == "cuda" for s in steps)
    assert ("lm-int4-cuda-graph" in names) == ("int4" in gpu_check.bench_options("lm")["--quant"])
    assert sum(s.seconds for s in steps) <= 300.0 + 1e-6
    real = gpu_check.bench_options
    monkeypatch.setattr(gpu_check, "bench_options",
                        lambda t: {**real(t), "--quant": ["none", "int4"]} if t == "lm" else real(t))
    int4 = next(s for s in gpu_check.plan_steps(300.0) if s.name == "lm-int4-cuda-graph")
    assert int4.argv[-3:] == ("--quant", "int4", "--cuda-graph")


def test_gpu_test_files_are_found() -> None:
    files = {Path(f).relative_to(REPO).as_posix() for f in gpu_check.gpu_test_files(REPO / "tests")}
    assert {"tests/lm/test_gpu.py", "tests/decoder/test_gpu.py", "tests/audio/test_features.py"} <= files
    assert "tests/lm/test_generate.py" not in files


def test_spec_bandwidth_from_cuda_names() -> None:
    assert gpu_check.spec_bandwidth("NVIDIA H100 80GB HBM3") == 3350
    assert gpu_check.spec_bandwidth("NVIDIA H200") == 4800
    assert gpu_check.spec_bandwidth("NVIDIA A100-SXM4-40GB") == 1555
    assert gpu_check.spec_bandwidth("NVIDIA GeForce RTX 4090") == 1008
    assert gpu_check.spec_bandwidth("NVIDIA H100 PCIe") is None and gpu_check.spec_bandwidth("Tesla T4") is None


def test_junit_summary(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text("""<?xml version="1.0"?><testsuites><testsuite>
      <testcase classname="tests.lm.test_gpu" name="test_a"/>
      <testcase classname="tests.lm.test_gpu" name="test_b"><failure message="assert 1 == 2&#10;more">tb</failure>
      </testcase>
      <testcase classname="tests.decoder.test_gpu" name="test_c"><skipped message="needs a CUDA device"/></testcase>
      <testcase classname="tests.decoder.test_gpu" name="test_d"><error message="fixture broke"/></testcase>
    </testsuite></testsuites>""")
    summary = gpu_check.junit_summary(xml)
    assert (summary["passed"], summary["failed"], summary["skipped"], summary["errors"]) == (1, 1, 1, 1)
    assert summary["failures"] == [{"test": "tests.lm.test_gpu::test_b", "message": "assert 1 == 2"},
                                   {"test": "tests.decoder.test_gpu::test_d", "message": "fixture broke"}]


LM_RESULT = {"shape": "tts-3b", "layers": 32, "dtype": "bf16", "quant": "none", "decode_tok_s": 300.0,
             "decode_fraction_of_bound": 0.6, "prefill_tok_s": 20000.0, "prefill_tokens": 128,
             "peak_memory_bytes": 8e9, "decode_weight_bytes": 6.6e9}


def test_key_numbers_put_decode_against_the_spec_bound() -> None:
    step = gpu_check.Step("lm-bf16-cuda-graph", "lm", (), 10.0)
    rows = {r["metric"]: r for r in gpu_check.key_numbers(step, LM_RESULT, 3350.0)}
    bound = 3350e9 / 6.6e9
    assert rows["decode tok/s bound at the spec HBM bandwidth"]["value"] == pytest.approx(bound)
    assert rows["decode / spec HBM bound"]["value"] == pytest.approx(300.0 / bound)
    assert all(r["target"] == "lm-bf16-cuda-graph" for r in rows.values())
    tts = gpu_check.key_numbers(gpu_check.Step("tts", "tts", (), 1.0),
                                [{"chars": 20, "prefix_reuse": "on", "first_audio_s": 0.25}], None)
    assert tts[0]["metric"] == "first audio (20 chars, prefix reuse on)" and tts[0]["shown"] == "0.25 s"


def test_main_with_a_gpu_writes_one_report(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The orchestration with the GPU parts stubbed: every step runs in budget order, failures are reported."""
    import stepaudio.eval.bench.all as bench_all

    monkeypatch.setattr(gpu_check, "cuda_problem", lambda: None)
    monkeypatch.setattr(gpu_check, "environment", lambda: {
        "torch": "2.x", "cuda": "12.8", "gpu": "NVIDIA H200", "gpu_memory_bytes": 150_000_000_000,
        "capability": "9.0", "gpu_count": 1, "spec_bandwidth_gb_s": 4800.0})
    monkeypatch.setattr(gpu_check, "run_tests", lambda out, seconds, paths: {
        "passed": 20, "failed": 1, "errors": 0, "skipped": 0, "seconds": 30.0,
        "failures": [{"test": "tests/lm/test_gpu.py::test_x", "message": "assert False"}]})
    calls: list[tuple[str, float]] = []

    def fake_target(name: str, argv: Any, timeout: float, log_dir: Path) -> TargetResult:
        calls.append((name, timeout))
        if name == "decoder":
            return TargetResult(name, (), 1, 2.0, None, "", "exit status 1\nCUDA error: out of memory")
        result: Any = LM_RESULT if name == "lm" else []
        return TargetResult(name, (), 0, 1.0, result, "")

    monkeypatch.setattr(bench_all, "run_target", fake_target)
    assert gpu_check.main(["--out", str(tmp_path), "--budget", "400"]) == 1
    assert [c[0] for c in calls][:2] == ["lm", "lm"] and all(t > 10 for _, t in calls)
    payload = json.loads((tmp_path / "gpu-check.json").read_text())
    assert payload["task"] == "gpu-check" and payload["tests"]["failed"] == 1
    assert [b["name"] for b in payload["benches"] if b["error"]] == ["decoder"]
    text = (tmp_path / "gpu-check.md").read_text()
    assert "NVIDIA H200" in text and "20 passed, 1 failed" in text and "tests/lm/test_gpu.py::test_x" in text
    assert "### decoder failed" in text and "decode / spec HBM bound" in text


def test_run_tests_counts_a_real_pytest_run(tmp_path: Path) -> None:
    tests = tmp_path / "test_marked.py"
    tests.write_text("import pytest\n\n"
                     "@pytest.mark.gpu\ndef test_ok():\n    pass\n\n"
                     "@pytest.mark.gpu\ndef test_bad():\n    assert 1 == 2, 'different'\n\n"
                     "def test_not_marked():\n    pass\n")
    out = tmp_path / "out"
    out.mkdir()
    result = gpu_check.run_tests(out, 120.0, [str(tests)])
    assert (result["passed"], result["failed"], result["skipped"]) == (1, 1, 0) and result["returncode"] == 1
    assert result["failures"][0]["test"].endswith("test_bad") and "different" in result["failures"][0]["message"]


def test_every_planned_step_parses_with_its_bench() -> None:
    """A bench option renamed elsewhere must fail here, not in the middle of a GPU loan."""
    import argparse

    from stepaudio.eval.bench.targets import TARGETS

    for step in gpu_check.plan_steps(300.0):
        parser = argparse.ArgumentParser(exit_on_error=False)
        __import__(TARGETS[step.target][0], fromlist=["add_arguments"]).add_arguments(parser)
        args = parser.parse_args([*step.argv, "--json", "x.json"])
        assert args.device == "cuda", step.name
