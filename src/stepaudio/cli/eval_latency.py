"""`stepaudio eval latency --url http://127.0.0.1:8000`: first-audio latency, RTF and throughput of a running
server for speech, chat and realtime at several concurrency levels.

Writes OUT/latency.json (every request, per-level summaries, the server's models, provenance), OUT/latency.md
and two PNGs: latency_distribution.png (first audio per mode and level) and rtf_vs_concurrency.png.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"concurrency levels are comma-separated integers, not {text!r}") from exc
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be positive")
    return levels


def _modes(text: str) -> tuple[str, ...]:
    from stepaudio.eval.latency import MODES

    modes = tuple(m.strip() for m in text.split(",") if m.strip())
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes are a comma-separated subset of {','.join(MODES)}")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.eval.latency import DEFAULT_PROMPT, DEFAULT_TEXT

    parser.add_argument("--url", required=True, help="base URL of a running server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--modes", type=_modes, default=("speech", "chat", "realtime"),
                        help="comma-separated: speech, chat, realtime (default all)")
    parser.add_argument("--concurrency", type=_levels, default=(1, 2, 4), help="levels, e.g. 1,2,4 (default)")
    parser.add_argument("--requests", type=int, default=4, help="requests per mode and level (at least the level)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="what speech requests synthesise")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT, help="what chat and realtime turns ask")
    parser.add_argument("--voice", default="alloy")
    parser.add_argument("--max-tokens", type=int, default=48, help="chat reply length cap")
    parser.add_argument("--api-key", default=None, help="default $STEPAUDIO_API_KEY")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--no-warmup", action="store_true", help="count the first request of each kind too")
    parser.add_argument("--no-plots", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("eval-results"), help="report folder (default eval-results)")


def run(args: argparse.Namespace) -> int:
    from stepaudio.errors import StepAudioError
    from stepaudio.eval import report
    from stepaudio.eval.latency import Client, LatencyConfig, run_sweep

    if args.requests < 1:
        raise StepAudioError("--requests must be at least 1")
    config = LatencyConfig(url=args.url, modes=args.modes, concurrency=args.concurrency, requests=args.requests,
                           text=args.text, prompt=args.prompt, voice=args.voice, max_tokens=args.max_tokens,
                           api_key=args.api_key or os.environ.get("STEPAUDIO_API_KEY") or None,
                           timeout_s=args.timeout, warmup=not args.no_warmup)
    client = Client(config)
    server_models = client.models()
    total = sum(max(config.requests, c) for c in config.concurrency) * len(config.modes)
    bar = _bar(total)
    try:
        samples, levels = run_sweep(config, on_sample=lambda _: bar.update(1) if bar is not None else None,
                                    client=client)
    finally:
        if bar is not None:
            bar.close()
    models = [report.ModelRecord("server", name, note=f"reported by {config.url}/v1/models") for name in server_models]
    payload = build_report(config, samples, levels, report.provenance(models, seeds={}, server_url=config.url,
                                                                      sample_rate=client.sample_rate))
    if not args.no_plots:
        payload["plots"] = write_plots(args.out, samples, levels)
    json_path = report.write_json(args.out / "latency.json", payload)
    md_path = report.write_text(args.out / "latency.md", markdown(payload))
    print(levels_table(levels))
    print(f"wrote {json_path} and {md_path}" + (f" and {len(payload['plots'])} plots" if "plots" in payload else ""))
    return 0 if all(level.errors == 0 for level in levels) else 1


def _bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="latency", unit="req", file=sys.stderr, dynamic_ncols=True)


def build_report(config: Any, samples: Any, levels: Any, provenance: dict[str, Any]) -> dict[str, Any]:
    from stepaudio.eval import report

    headline = []
    for level in levels:
        if level.concurrency == min(config.concurrency):
            headline.append(report.headline_row("latency", f"{level.mode} c={level.concurrency}",
                                                "first audio p50", level.first_audio_p50_s, "s"))
            headline.append(report.headline_row("latency", f"{level.mode} c={level.concurrency}", "RTF p50",
                                                level.rtf_p50, "x"))
        if level.concurrency == max(config.concurrency):
            headline.append(report.headline_row("latency", f"{level.mode} c={level.concurrency}",
                                                "throughput (audio s / s)", level.throughput, "x"))
    public = {k: v for k, v in report.to_jsonable(config).items() if k != "api_key"}
    return {"schema": report.REPORT_SCHEMA, "task": "latency", "config": public, "headline": headline,
            "levels": levels, "samples": samples, "provenance": provenance}


def write_plots(out: Path, samples: Any, levels: Any) -> list[str]:
    from stepaudio.eval.plots import latency_distributions, rtf_vs_concurrency
    from stepaudio.eval.report import to_jsonable

    groups: dict[str, list[float]] = {}
    for s in samples:
        if s.error is None and s.first_audio_s is not None:
            groups.setdefault(f"{s.mode} c={s.concurrency}", []).append(s.first_audio_s)
    paths = []
    if groups:
        paths.append(latency_distributions(groups, out / "latency_distribution.png"))
    rows = to_jsonable(list(levels))
    if any(r["rtf_p50"] is not None for r in rows):
        paths.append(rtf_vs_concurrency(rows, out / "rtf_vs_concurrency.png"))
    return [str(p) for p in paths]


_COLUMNS = (("mode", "mode"), ("concurrency", "concurrency"), ("requests", "requests"), ("errors", "errors"),
            ("first_audio_p50_s", "first audio p50 (s)", "{:.3f}"), ("first_audio_p90_s", "p90 (s)", "{:.3f}"),
            ("total_p50_s", "request p50 (s)", "{:.3f}"), ("rtf_p50", "RTF p50", "{:.3f}"),
            ("rtf_p90", "RTF p90", "{:.3f}"), ("throughput", "audio s / s", "{:.2f}"),
            ("requests_per_s", "requests / s", "{:.2f}"))


def markdown(payload: dict[str, Any]) -> str:
    from stepaudio.eval import report

    rows = report.to_jsonable(payload["levels"])
    cfg = payload["config"]
    lines = ["# Server latency", "",
             f"Server {cfg['url']}; {cfg['requests']} requests per mode and level (at least the level); speech "
             f"text {cfg['text']!r}; chat/realtime prompt {cfg['prompt']!r}. First audio is measured from sending "
             "the request (realtime: from response.create on an open session). RTF = request time / audio "
             "seconds; throughput = audio seconds returned per wall second.", "",
             report.markdown_table(rows, _COLUMNS), ""]
    for plot in payload.get("plots", []):
        name = Path(plot).name
        lines += [f"![{name}]({name})", ""]
    errors = [s for s in report.to_jsonable(payload["samples"]) if s["error"]]
    if errors:
        lines += ["## Errors", ""] + [f"- {s['mode']} c={s['concurrency']}: {s['error']}" for s in errors[:30]] + [""]
    lines += [report.provenance_markdown(payload["provenance"]), ""]
    return "\n".join(lines)


def levels_table(levels: Any) -> str:
    from stepaudio.eval.bench.table import format_rows
    from stepaudio.eval.report import to_jsonable

    columns = [(key, spec[1] if len(spec) > 1 else "{}") for key, *spec in _COLUMNS]
    return format_rows([{k: v for k, v in row.items() if v is not None} for row in to_jsonable(list(levels))],
                       columns)
