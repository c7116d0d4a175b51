"""`stepaudio eval asr`: WER/CER of an engine's recognizer on a local dataset, with a JSON and Markdown report
and a PNG of every utterance's error rate beside the corpus rate and the paper's number (asr-NAME.png).

    stepaudio eval asr --engine lite --dataset /usr/share/pocketsphinx/test/data/librivox --output-dir docs/eval
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from stepaudio.cli.engine_args import add_engine_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.eval.asr import NORMALIZERS
    from stepaudio.eval.datasets import ASR_FORMATS

    add_engine_arguments(parser)
    parser.add_argument("--dataset", required=True, metavar="DIR", help="dataset folder (or a .jsonl manifest)")
    parser.add_argument("--format", default="auto", choices=ASR_FORMATS, help="dataset layout (default: detect)")
    parser.add_argument("--name", help="name of the set in reports (default: the folder name)")
    parser.add_argument("--language", help="decode and score as this language (default: the dataset's)")
    parser.add_argument("--normalizer", default="auto", choices=NORMALIZERS,
                        help="text normaliser before scoring (auto: chinese for CER, english+titles for WER)")
    parser.add_argument("--limit", type=int, help="only the first N utterances")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run N times and report the mean and spread (Whisper's fallback sampling varies)")
    add_report_arguments(parser, "asr")


def add_report_arguments(parser: argparse.ArgumentParser, kind: str) -> None:
    """The seed, report destinations, plot and progress switches every `stepaudio eval` run shares."""
    parser.add_argument("--seed", type=int, default=0, help="numpy/torch seed (recorded in the report)")
    parser.add_argument("--output-dir", metavar="DIR", help=f"write {kind}-NAME.json and {kind}-NAME.md here")
    parser.add_argument("--json", metavar="PATH", help="write the JSON report here")
    parser.add_argument("--markdown", metavar="PATH", help="write the Markdown report here")
    parser.add_argument("--no-plots", action="store_true", help="no PNG beside the reports")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:

    from stepaudio.cli.engine_args import create_engine_from_args, engine_options
    from stepaudio.errors import StepAudioError, UnsupportedError
    from stepaudio.eval.asr import asr_markdown, asr_report, evaluate_asr
    from stepaudio.eval.datasets import load_asr_dataset
    from stepaudio.eval.engine_models import engine_model_records
    from stepaudio.eval.plots import asr_error_rates
    from stepaudio.eval.report import provenance, seed_everything, spread_note, to_jsonable

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    dataset = load_asr_dataset(args.dataset, args.format, name=args.name, limit=args.limit)
    seeds = seed_everything(args.seed)
    engine = create_engine_from_args(args)
    if engine.transcriber is None:
        raise UnsupportedError(f"engine {args.engine!r} has no speech recognizer")
    if args.repeats < 1:
        raise StepAudioError("--repeats must be at least 1")
    runs = [evaluate_asr(engine.transcriber, dataset, normalizer=args.normalizer, language=args.language,
                         show_progress=not args.quiet) for _ in range(args.repeats)]
    result = runs[0]
    options = engine_options(args)
    prov = provenance(engine_model_records(args.engine, options, ["asr"]), seeds=seeds,
                      engine={"name": args.engine, "options": options})
    payload = to_jsonable(asr_report(result, prov, description=dataset.description, repeats=runs[1:]))
    written = publish(args, f"asr-{dataset.name}", payload, asr_error_rates,
                      lambda report: asr_markdown(report, args.engine))
    for summary in result.summaries:
        print(f"{dataset.name}: {summary.metric} {100 * summary.rate:.2f}% "
              f"({summary.substitutions + summary.deletions + summary.insertions}/{summary.reference_length} "
              f"{summary.unit}s, {summary.utterances} utterances, normaliser {summary.normalizer}), "
              f"RTF {result.rtf:.3f}{' [synthetic speech]' if dataset.synthetic else ''}")
    for metric, stats in payload["repeats"].items():
        print(f"{dataset.name}: {metric} {spread_note(stats)}")
    say_written(written, payload)
    return 0


def publish(args: argparse.Namespace, stem: str, payload: dict[str, Any],
            draw: Callable[[dict[str, Any], Path], Path], markdown: Callable[[dict[str, Any]], str]) -> list[Path]:
    """Draw the PNG (unless --no-plots) and write the JSON and Markdown reports where the arguments say;
    returns the files written."""
    from stepaudio.eval.report import figure_path, write_reports

    png = None if args.no_plots else figure_path(stem, output_dir=args.output_dir, json_path=args.json,
                                                 md_path=args.markdown)
    if png is not None:
        add_figure(payload, png, draw)
    return write_reports(stem, payload, markdown(payload), output_dir=args.output_dir, json_path=args.json,
                         md_path=args.markdown)


def say_written(written: list[Path], payload: dict[str, Any]) -> None:
    """Name the reports and figures written, on stderr (stdout holds the scores)."""
    if written:
        print("report: " + ", ".join(str(p) for p in [*written, *payload.get("plots", [])]), file=sys.stderr)


def add_figure(payload: dict[str, Any], path: Path, draw: Callable[[dict[str, Any], Path], Path]) -> None:
    """Draw the report's PNG and list it in `payload["plots"]`; without matplotlib, say so and go on (the
    numbers are already measured and their reports still get written)."""
    from stepaudio.errors import MissingExtraError

    try:
        payload["plots"] = [str(draw(payload, path))]
    except MissingExtraError as exc:
        print(f"warning: no figure: {exc}", file=sys.stderr)
