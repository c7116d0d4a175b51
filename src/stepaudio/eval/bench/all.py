"""`stepaudio bench all`: the component benchmarks (LM, decoder, tokenizer, realtime, lite pipeline) in one run,
collected into OUT/bench.json and OUT/bench.md.

Each target runs as its own `stepaudio bench TARGET ... --json` subprocess: a crash, a leak or the torch
thread settings of one cannot change the next one's numbers, and a target that fails or runs past
`--timeout` is reported with its log tail while the others still run. `--size small` (the default) passes
each target small sizes so the whole run takes minutes on a 2-core CPU (the decoder's real-shape flow and
the streaming decoder are left to `--size full`, each target's own defaults); `--extra TARGET=ARGS` adds
arguments. The Markdown lists a few key numbers per target; the JSON keeps every target's whole result.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# target -> arguments of the small preset. Targets missing here run only with --size full or --targets.
SMALL: dict[str, tuple[str, ...]] = {
    "lm": ("--shape", "tts-3b", "--layers", "2", "--prefill", "32", "--decode", "8", "--repeats", "1",
           "--bandwidth-mib", "256"),
    "decoder": ("--parts", "hift", "--seconds", "1", "--repeats", "1", "--warmup", "0"),
    "tokenizer": ("--seconds", "2", "--modes", "fp32", "--blocks", "4", "--repeats", "1"),
    "realtime": ("--conversations", "8", "--turns", "3"),
    "lite": ("--only", "asr,tts,latency", "--chat-model", "smollm2", "--questions", "2", "--zh-questions", "1",
             "--voices", "en:joe,zh:zh-yunjian", "--tts-threads", "1"),
    "decoder-stream": ("--seconds", "1", "--no-offline"),
    "server-load": ("--sessions", "2", "--seconds", "10", "-O", "chat_model=smollm2"),
    "editx": ("--layers", "2", "--decoder-shape", "tiny", "--prefix-reuse", "both"),
}
DEFAULT_TARGETS = ("lm", "decoder", "tokenizer", "realtime", "lite")
NEEDS_USER_INPUT = ("decoder-reference",)  # e.g. --extra decoder-reference="--source DIR --python PY"
LOG_TAIL_CHARS = 1500


@dataclass(frozen=True)
class TargetResult:
    name: str
    command: tuple[str, ...]
    returncode: int | None  # None: timed out
    seconds: float
    result: Any  # the target's own JSON, None when it wrote none
    log: str
    error: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help=f"comma-separated bench targets, or 'every' (default {','.join(DEFAULT_TARGETS)})")
    parser.add_argument("--size", default="small", choices=["small", "full"],
                        help="small: quick sizes for every target (default); full: each target's own defaults")
    parser.add_argument("--extra", action="append", default=[], metavar="TARGET=ARGS",
                        help="more arguments for one target, e.g. --extra 'lm=--quant int8' (repeatable)")
    parser.add_argument("--threads", type=int, default=2, help="passed to every target that takes --threads")
    parser.add_argument("--seed", type=int, default=0, help="passed to every target that takes --seed")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one target may run")
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="report folder")


def run(args: argparse.Namespace) -> int:
    from stepaudio.eval import report

    targets = resolve_targets(args.targets)
    extra = parse_extra(args.extra, targets)
    logs = args.out / "targets"
    results: list[TargetResult] = []
    for name in _bar(targets):
        argv = [*(SMALL.get(name, ()) if args.size == "small" else ()), *extra.get(name, ())]
        argv += shared_options(name, argv, threads=args.threads, seed=args.seed)
        results.append(run_target(name, argv, args.timeout, logs))
    models = []
    if "lite" in targets or "server-load" in targets:
        from stepaudio.eval.chat import engine_models

        models = engine_models("lite", {"chat_model": "smollm2"} if args.size == "small" else {})
    payload = build_report(results, args.size, report.provenance(models, seeds={"bench": args.seed},
                                                                 threads=args.threads))
    json_path = report.write_json(args.out / "bench.json", payload)
    md_path = report.write_text(args.out / "bench.md", markdown(payload))
    for row in payload["metrics"]:
        print(f"{row['target']:<14} {row['metric']:<44} {row['shown']}")
    for result in results:
        if result.error:
            print(f"{result.name}: FAILED ({result.error.splitlines()[0]})")
    print(f"wrote {json_path} and {md_path}")
    return 0 if all(r.error is None for r in results) else 1


def resolve_targets(text: str) -> list[str]:
    from stepaudio.errors import StepAudioError
    from stepaudio.eval.bench.targets import TARGETS

    known = [name for name in TARGETS if name != "all"]
    # targets that need something from the user (a reference checkout) run only when named
    every = [name for name in known if name not in NEEDS_USER_INPUT]
    names = every if text.strip() == "every" else [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise StepAudioError(f"unknown bench target(s) {unknown or text!r}; targets: {', '.join(known)}, every")
    return list(dict.fromkeys(names))


def parse_extra(items: Sequence[str], targets: Sequence[str]) -> dict[str, list[str]]:
    from stepaudio.errors import StepAudioError

    extra: dict[str, list[str]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or name.strip() not in targets:
            raise StepAudioError(f"--extra takes TARGET=ARGS for a chosen target ({', '.join(targets)}), "
                                 f"not {item!r}")
        extra.setdefault(name.strip(), []).extend(shlex.split(rest))
    return extra


def shared_options(name: str, argv: Sequence[str], *, threads: int, seed: int) -> list[str]:
    """--threads / --seed for a target whose parser has them, unless `argv` sets them already."""
    from stepaudio.eval.bench.targets import TARGETS

    parser = argparse.ArgumentParser()
    __import__(TARGETS[name][0], fromlist=["add_arguments"]).add_arguments(parser)
    options = {opt for action in parser._actions for opt in action.option_strings}
    out: list[str] = []
    for flag, value in (("--threads", threads), ("--seed", seed)):
        if flag in options and flag not in argv:
            out += [flag, str(value)]
    return out


def run_target(name: str, argv: Sequence[str], timeout: float, log_dir: Path) -> TargetResult:
    """`stepaudio bench NAME ARGV --json` in a subprocess; its output goes to LOG_DIR/NAME.log."""
    import json

    log_dir.mkdir(parents=True, exist_ok=True)
    json_path, log_path = log_dir / f"{name}.json", log_dir / f"{name}.log"
    json_path.unlink(missing_ok=True)
    command = (sys.executable, "-m", "stepaudio", "bench", name, *argv, "--json", str(json_path))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    returncode: int | None
    with log_path.open("w", encoding="utf-8") as log:
        try:
            returncode = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout, env=env,
                                        check=False).returncode
        except subprocess.TimeoutExpired:
            returncode = None
    seconds = time.perf_counter() - start
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-LOG_TAIL_CHARS:]
    result = None
    if json_path.is_file():
        try:
            result = json.loads(json_path.read_text(encoding="utf-8"))
        except ValueError:
            result = None
    error = None
    if returncode is None:
        error = f"timed out after {timeout:g} s\n{tail}"
    elif returncode != 0:
        error = f"exit status {returncode}\n{tail}"
    elif result is None:
        error = f"wrote no JSON result\n{tail}"
    return TargetResult(name, command, returncode, seconds, result, str(log_path), error)


def _bar(targets: Sequence[str]) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return targets

    class _Named(tqdm):
        def __iter__(self) -> Any:
            for item in super().__iter__():
                self.set_postfix_str(item)
                yield item

    return _Named(targets, desc="bench all", unit="target", file=sys.stderr, dynamic_ncols=True)


# Key numbers per target ---------------------------------------------------------------------------------------


def _metric(target: str, metric: str, value: Any, unit: str = "", paper: Any = None, note: str = ""
            ) -> dict[str, Any]:
    if not isinstance(value, int | float) or isinstance(value, bool):
        shown = "-" if value is None else str(value)
    elif unit == "%":
        shown = f"{100 * value:.2f}%"
    else:
        shown = f"{value:.3g}{(' ' + unit) if unit else ''}"
    label = paper.label if paper is not None and hasattr(paper, "label") else paper
    return {"target": target, "metric": metric, "value": value, "unit": unit, "shown": shown, "paper": label,
            "note": note}


def _lm(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    shape = f"{r.get('shape')} x{r.get('layers')} {r.get('dtype')}/{r.get('quant')}"
    rows = [_metric("lm", f"decode tok/s ({shape})", r.get("decode_tok_s"), "tok/s"),
            _metric("lm", "decode / memory-bandwidth bound", r.get("decode_fraction_of_bound"), "%"),
            _metric("lm", f"prefill tok/s ({r.get('prefill_tokens')} tokens)", r.get("prefill_tok_s"), "tok/s"),
            _metric("lm", "peak memory", (r.get("peak_memory_bytes") or 0) / 1e9, "GB")]
    if "full_depth_estimated_decode_tok_s" in r:
        rows.append(_metric("lm", f"decode tok/s at {r['full_depth_layers']} layers (estimate)",
                            r["full_depth_estimated_decode_tok_s"], "tok/s"))
    return rows


def _decoder(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [_metric("decoder", f"{r.get('component')} {r.get('dtype')} RTF ({r.get('audio_s')} s audio)", r.get("rtf"))
            for r in rows]


def _decoder_stream(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        out.append(_metric("decoder-stream", f"{r.get('dtype')} first chunk ({r.get('audio_s')} s)",
                           r.get("first_chunk_s"), "s"))
        out.append(_metric("decoder-stream", f"{r.get('dtype')} streaming RTF ({r.get('audio_s')} s)", r.get("rtf")))
    return out


def _tokenizer(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    vq02 = r.get("vq02", {})
    rows = [_metric("tokenizer", f"vq02 {mode} RTF ({vq02.get('blocks')} blocks)", m.get("rtf"))
            for mode, m in vq02.get("modes", {}).items()]
    rows += [_metric("tokenizer", f"vq02 {mode} 240 ms chunk p90", m.get("chunk_ms_p90"), "ms")
             for mode, m in vq02.get("modes", {}).items()]
    rows += [_metric("tokenizer", f"{row.get('name')} RTF", row.get("rtf")) for row in r.get("vq06", [])
             if str(row.get("name", "")).startswith("tokenizer")]
    return rows


def _realtime(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The commit rate measured on recorded turns, next to the paper's; the simulated one is set by the scenario's
    pause parameters, so it is shown as a controller check without a paper figure."""
    recorded = (r.get("recorded") or {}).get("speculative", {})
    simulated = r.get("results", {}).get("speculative", {})
    from stepaudio.eval import paper

    source = r.get("latency_saved_source", "simulated")
    return [_metric("realtime", "speculative commit rate (recorded turns)", recorded.get("commit_rate"), "%",
                    paper.find("realtime", "speculative generation", "commit rate"),
                    r.get("recorded_missing") or "pocketsphinx-testdata read speech, not the paper's conversations"),
            _metric("realtime", "controller check: commit rate of the simulated pauses", simulated.get("commit_rate"),
                    "%", note="set by --pauses-per-turn and --pause-ms: not a measurement"),
            _metric("realtime", f"latency saved by speculation ({source})", r.get("latency_saved_ms"), "ms")]


def _lite(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    from stepaudio.eval import paper

    note = "different models and set: a reference, not a like-for-like comparison"
    rows = []
    for name, part in r.get("asr", {}).items():
        if "wer" in part:
            rows.append(_metric("lite", f"ASR WER ({name})", part["wer"], "%",
                                paper.nearest_asr_benchmark(name, "WER"), note))
            rows.append(_metric("lite", f"ASR RTF ({name})", part.get("rtf")))
    for name, part in r.get("tts", {}).items():
        if "wer" in part:
            rows.append(_metric("lite", f"TTS round-trip WER ({name})", part["wer"], "%",
                                paper.seed_tts_reference(part.get("language", "en"), "WER"), note))
        if "cer" in part:
            rows.append(_metric("lite", f"TTS round-trip CER ({name})", part["cer"], "%",
                                paper.seed_tts_reference(part.get("language", "zh"), "CER"), note))
    summary = r.get("latency", {}).get("summary", {})
    for key in ("first_audio_p50", "first_audio_p90"):
        if key in summary:
            rows.append(_metric("lite", f"speech end -> first reply audio {key[-3:]}", summary[key], "s"))
    return rows


def _server_load(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    runs = r.get("runs") or [r]
    rows = [_metric("server-load", f"{run.get('variant') + ': ' if run.get('variant') else ''}{run.get('sessions')} "
                    "sessions: first audio p50", run.get("first_audio_p50_ms"), "ms") for run in runs]
    peaks = [run["rss_peak_mb"] for run in runs if run.get("rss_peak_mb") is not None]
    return [*rows, _metric("server-load", "errors", sum(run.get("errors") or 0 for run in runs)),
            _metric("server-load", "peak RSS", max(peaks) if peaks else None, "MB")]


def _step2(r: Mapping[str, Any]) -> list[dict[str, Any]]:
    from stepaudio.eval.bench.step2 import key_rows

    return [_metric("step2", metric, value, unit) for metric, value, unit in key_rows(r)]


def _editx(r: Any) -> list[dict[str, Any]]:
    from stepaudio.eval.bench.editx import key_rows

    return [_metric("editx", metric, value, unit) for metric, value, unit in key_rows(r)]


EXTRACTORS: dict[str, Callable[[Any], list[dict[str, Any]]]] = {
    "lm": _lm, "decoder": _decoder, "decoder-stream": _decoder_stream, "tokenizer": _tokenizer,
    "realtime": _realtime, "lite": _lite, "server-load": _server_load, "step2": _step2,
    "editx": _editx,
}


def key_metrics(result: TargetResult) -> list[dict[str, Any]]:
    """The few numbers of a target worth a line in the Markdown; a result of an unexpected shape gives none."""
    extractor = EXTRACTORS.get(result.name)
    if result.result is None or extractor is None:
        return []
    try:
        return extractor(result.result)
    except (AttributeError, TypeError, KeyError) as exc:
        return [_metric(result.name, "result not summarised", f"unexpected JSON shape ({exc})")]


def build_report(results: Sequence[TargetResult], size: str, provenance: dict[str, Any]) -> dict[str, Any]:
    from stepaudio.eval import report

    metrics = [row for result in results for row in key_metrics(result)]
    headline = []
    for row in metrics:
        if isinstance(row["value"], int | float) and row["unit"] in ("%", "", "s", "ms", "tok/s"):
            headline.append({**report.headline_row("bench", row["target"], row["metric"], row["value"],
                                                   "%" if row["unit"] == "%" else "x", None, row["note"]),
                             "value": row["shown"], "paper": row["paper"]})
    targets = [{"name": r.name, "command": list(r.command), "returncode": r.returncode,
                "seconds": round(r.seconds, 2), "log": r.log, "error": r.error, "result": r.result} for r in results]
    return {"schema": report.REPORT_SCHEMA, "task": "bench", "size": size, "targets": targets, "metrics": metrics,
            "headline": headline, "provenance": provenance}


def markdown(payload: Mapping[str, Any]) -> str:
    from stepaudio.eval import report

    lines = ["# Component benchmarks", "",
             f"`stepaudio bench all --size {payload['size']}`: every target in its own process; weights are random "
             "at the real shapes except the lite engine's packaged models. Numbers from a shared machine are noisy "
             "(see the load average below).", "", "## Targets", "",
             report.markdown_table([{**t, "status": "ok" if not t["error"] else t["error"].splitlines()[0]}
                                    for t in payload["targets"]],
                                   [("name", "target"), ("status", "status"), ("seconds", "seconds", "{:.1f}"),
                                    ("log", "log")]),
             "", "## Key numbers", "",
             report.markdown_table(payload["metrics"], [("target", "target"), ("metric", "metric"),
                                                        ("shown", "ours"), ("paper", "paper (reference)"),
                                                        ("note", "note")]), ""]
    failed = [t for t in payload["targets"] if t["error"]]
    for target in failed:
        lines += [f"### {target['name']} failed", "", "```", target["error"][-LOG_TAIL_CHARS:], "```", ""]
    lines += [report.provenance_markdown(payload["provenance"]), ""]
    return "\n".join(lines)
