"""`python -m stepaudio.eval.gpu_check --out DIR`: what a short GPU loan should tell us, in one run.

GPU time is scarce (a loan is ~15 minutes, setup included), so the run is planned ahead and bounded: the
`gpu`-marked tests (CUDA equals CPU, CUDA-graph decode equals eager, streaming equals offline on CUDA), then
the GPU benches (TTS-3B decode in bf16 eager and CUDA graph, int4 when `bench lm` has it, against the measured
copy bandwidth and the GPU's spec-sheet HBM bandwidth; decoder RTF and first chunk; Step TTS first audio;
Step-Audio 2 / EditX benches when they exist), each a subprocess with a share of `--budget` seconds, so one
hang or crash costs only its own step. Everything lands in DIR/gpu-check.json and DIR/gpu-check.md, also
when steps fail. Without a usable CUDA device it says why and exits at once.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NO_DEVICE = 0  # exit status when there is no GPU at all: nothing to check is not a failure
BROKEN_SETUP = 3  # a GPU is there but this torch cannot use it


@dataclass(frozen=True)
class Step:
    """One bench subprocess: `stepaudio bench TARGET ARGV --json`, allowed `seconds` at most."""

    name: str
    target: str
    argv: tuple[str, ...]
    seconds: float


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()


def cuda_problem() -> tuple[str, int] | None:
    """None when torch sees a CUDA device, else (why, exit status)."""
    import torch

    if torch.cuda.is_available():
        return None
    if not nvidia_driver_present():
        return "no CUDA device here (no NVIDIA driver or device node): gpu-check has nothing to run", NO_DEVICE
    build = torch.version.cuda
    if build is None:
        return (f"an NVIDIA driver is present but torch {torch.__version__} is a CPU-only build: install a CUDA "
                "build (pip install torch from PyPI on Linux), or run scripts/gpu_check.sh, which does"), BROKEN_SETUP
    return (f"torch {torch.__version__} (CUDA {build}) sees no usable device: check nvidia-smi, "
            "CUDA_VISIBLE_DEVICES and the driver version"), BROKEN_SETUP


def environment() -> dict[str, Any]:
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": props.name,
            "gpu_memory_bytes": int(props.total_memory), "capability": f"{props.major}.{props.minor}",
            "gpu_count": torch.cuda.device_count(), "spec_bandwidth_gb_s": spec_bandwidth(props.name)}


def spec_bandwidth(name: str) -> float | None:
    """Spec-sheet HBM bandwidth (GB/s) of a GPU named like CUDA names it, when it is one `engines.vllm` knows."""
    from stepaudio.engines.vllm import GPUS

    text = name.lower().replace(" ", "")
    if "pcie" in text or "nvl" in text:  # other memory than the SXM parts of the same name
        return None
    for key, gpu in GPUS.items():
        base = key.split("-")[0]
        size = key.split("-")[1] if "-" in key else None
        if base in text and (size is None or f"{size}gb" in text):
            return gpu.bandwidth_gb_s
    return None


def bench_options(target: str) -> dict[str, list[str]]:
    """Each option of a bench target with its choices (empty when free-form): to plan only what exists."""
    from stepaudio.eval.bench.targets import TARGETS

    parser = argparse.ArgumentParser()
    __import__(TARGETS[target][0], fromlist=["add_arguments"]).add_arguments(parser)
    return {option: [str(choice) for choice in (action.choices or [])]
            for action in parser._actions for option in action.option_strings}


def plan_steps(budget: float) -> list[Step]:
    """The benches this checkout has, with time shares of `budget` (the tests take their own share first)."""
    from stepaudio.eval.bench.targets import TARGETS

    lm = ("--shape", "tts-3b", "--dtype", "bf16", "--device", "cuda", "--prefill", "128", "--decode", "64",
          "--repeats", "3", "--bandwidth-mib", "2048")
    steps = [Step("lm-bf16-eager", "lm", lm, 0.12), Step("lm-bf16-cuda-graph", "lm", (*lm, "--cuda-graph"), 0.12)]
    if "int4" in bench_options("lm").get("--quant", []):
        steps.append(Step("lm-int4-cuda-graph", "lm", (*lm, "--quant", "int4", "--cuda-graph"), 0.12))
    steps += [
        Step("decoder", "decoder", ("--device", "cuda", "--parts", "flow", "hift", "--seconds", "1", "5",
                                    "--dtypes", "fp32", "bf16", "--repeats", "3"), 0.16),
        Step("decoder-stream", "decoder-stream", ("--device", "cuda", "--seconds", "5", "--dtypes", "fp32", "bf16"),
             0.12),
        Step("tts", "tts", ("--device", "cuda", "--repeats", "2"), 0.16),
    ]
    for target in TARGETS:  # Step-Audio 2 / EditX benches, once they exist
        if re.search(r"step2|editx", target) and "--device" in bench_options(target):
            steps.append(Step(target, target, ("--device", "cuda"), 0.1))
    return [Step(s.name, s.target, s.argv, s.seconds * budget) for s in steps]


def gpu_test_files(root: Path) -> list[str]:
    """Test files that mark anything `gpu`: collecting only these saves the loan a full-suite collection."""
    return sorted(str(path) for path in root.rglob("test_*.py") if "mark.gpu" in path.read_text(encoding="utf-8"))


def run_tests(out: Path, seconds: float, paths: Sequence[str]) -> dict[str, Any]:
    """`pytest -m gpu` in a subprocess; counts and failures read from its JUnit XML."""
    xml_path, log_path = out / "pytest-gpu.xml", out / "pytest-gpu.log"
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
               "--continue-on-collection-errors", f"--junitxml={xml_path}", *paths]
    start = time.perf_counter()
    with log_path.open("w", encoding="utf-8") as log:
        try:
            code: int | None = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=seconds,
                                              check=False).returncode
        except subprocess.TimeoutExpired:
            code = None
    result: dict[str, Any] = {"command": command, "returncode": code, "seconds": round(time.perf_counter() - start, 1),
                              "log": str(log_path)}
    result |= junit_summary(xml_path) if xml_path.is_file() else {"error": "pytest wrote no JUnit XML"}
    if code is None:
        result["error"] = f"timed out after {seconds:.0f} s"
    return result


def junit_summary(path: Path) -> dict[str, Any]:
    """passed / failed / errors / skipped counts and each failure's test id and first message line."""
    root = ET.parse(path).getroot()
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    failures = []
    for case in root.iter("testcase"):
        test_id = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome = next((child for child in case if child.tag in ("failure", "error", "skipped")), None)
        if outcome is None:
            counts["passed"] += 1
        elif outcome.tag == "skipped":
            counts["skipped"] += 1
        else:
            counts["failed" if outcome.tag == "failure" else "errors"] += 1
            message = (outcome.get("message") or outcome.text or "").strip().splitlines()
            failures.append({"test": test_id, "message": message[0][:300] if message else ""})
    return {**counts, "failures": failures}


def _row(target: str, metric: str, value: Any, unit: str = "") -> dict[str, Any]:
    """A key-number row in the shape `bench all` uses."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        shown = "-" if value is None else str(value)
    else:
        shown = f"{100 * value:.1f}%" if unit == "%" else f"{value:.3g}{(' ' + unit) if unit else ''}"
    return {"target": target, "metric": metric, "value": value, "unit": unit, "shown": shown}


def key_numbers(step: Step, result: Any, spec_gb_s: float | None) -> list[dict[str, Any]]:
    """The bench's key rows (as `bench all` shows them), decode against the spec-sheet HBM bound, TTS first audio."""
    from stepaudio.eval.bench.all import TargetResult, key_metrics

    rows = [{**row, "target": step.name} for row in key_metrics(TargetResult(step.target, (), 0, 0.0, result, ""))]
    if step.target == "lm" and isinstance(result, Mapping) and spec_gb_s and result.get("decode_weight_bytes"):
        bound = spec_gb_s * 1e9 / float(result["decode_weight_bytes"])
        rows.append(_row(step.name, "decode tok/s bound at the spec HBM bandwidth", bound, "tok/s"))
        if isinstance(result.get("decode_tok_s"), int | float):
            rows.append(_row(step.name, "decode / spec HBM bound", result["decode_tok_s"] / bound, "%"))
    if step.target == "tts" and isinstance(result, list):
        for r in result:
            if isinstance(r, Mapping):
                rows.append(_row(step.name, f"first audio ({r.get('chars')} chars, prefix reuse "
                                            f"{r.get('prefix_reuse')})", r.get("first_audio_s"), "s"))
    return rows


def markdown(payload: Mapping[str, Any]) -> str:
    from stepaudio.eval import report

    env, tests = payload["environment"], payload["tests"]
    lines = ["# GPU check", "",
             f"`make gpu-check` on {env['gpu']} ({env['gpu_memory_bytes'] / 2**30:.0f} GiB, compute "
             f"{env['capability']}), torch {env['torch']} with CUDA {env['cuda']}; {payload['seconds']:.0f} s in all.",
             "", "## Tests (`pytest -m gpu`)", "",
             f"{tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, {tests.get('errors', 0)} errors, "
             f"{tests.get('skipped', 0)} skipped in {tests.get('seconds', 0):.0f} s"
             + (f"; {tests['error']}" if tests.get("error") else "") + ".", ""]
    for failure in tests.get("failures", []):
        lines.append(f"- `{failure['test']}`: {failure['message']}")
    lines += ["", "## Benches", "",
              report.markdown_table([{**b, "status": "ok" if not b["error"] else b["error"].splitlines()[0]}
                                     for b in payload["benches"]],
                                    [("name", "step"), ("status", "status"), ("seconds", "seconds", "{:.1f}")]),
              "", "## Key numbers", "",
              report.markdown_table(payload["metrics"], [("target", "step"), ("metric", "metric"), ("shown", "value")]),
              ""]
    for bench in payload["benches"]:
        if bench["error"]:
            lines += [f"### {bench['name']} failed", "", "```", bench["error"][-1500:], "```", ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stepaudio.eval.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu-check"), help="report folder")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for tests and benches together")
    parser.add_argument("--tests", nargs="*", default=None,
                        help="test paths for pytest -m gpu (default: the files under tests/ that mark gpu tests)")
    args = parser.parse_args(argv)
    problem = cuda_problem()
    if problem is not None:
        message, status = problem
        print(f"gpu-check: {message}", file=sys.stderr)
        return status

    from stepaudio.eval import report
    from stepaudio.eval.bench.all import run_target

    start = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    env = environment()
    print(f"gpu-check: {env['gpu']}, torch {env['torch']} (CUDA {env['cuda']})", flush=True)
    paths = args.tests if args.tests is not None else gpu_test_files(Path("tests"))
    tests = run_tests(args.out, 0.3 * args.budget, paths) if paths else {"error": "no gpu-marked test files found"}
    print(f"gpu-check: tests {tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed", flush=True)
    benches, metrics = [], []
    deadline = start + args.budget
    for step in plan_steps(0.7 * args.budget):
        seconds = min(step.seconds, deadline - time.perf_counter())
        if seconds < 10:
            benches.append({"name": step.name, "target": step.target, "argv": list(step.argv), "seconds": 0.0,
                            "error": "not run: the budget was spent", "result": None})
            continue
        result = run_target(step.target, step.argv, seconds, args.out / "benches" / step.name)
        benches.append({"name": step.name, "target": step.target, "argv": list(step.argv),
                        "seconds": round(result.seconds, 1), "error": result.error, "result": result.result})
        metrics += key_numbers(step, result.result, env["spec_bandwidth_gb_s"])
        print(f"gpu-check: {step.name} {'ok' if result.error is None else 'FAILED'} ({result.seconds:.0f} s)",
              flush=True)
    payload = {"schema": report.REPORT_SCHEMA, "task": "gpu-check", "environment": env, "tests": tests,
               "benches": benches, "metrics": metrics, "seconds": round(time.perf_counter() - start, 1),
               "provenance": report.provenance(command=[sys.executable, "-m", "stepaudio.eval.gpu_check",
                                                        *(argv if argv is not None else sys.argv[1:])])}
    json_path = report.write_json(args.out / "gpu-check.json", payload)
    md_path = report.write_text(args.out / "gpu-check.md", markdown(payload))
    print(f"gpu-check: wrote {json_path} and {md_path}")
    failed = tests.get("failed", 0) or tests.get("errors", 0) or tests.get("error") or any(b["error"] for b in benches)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
