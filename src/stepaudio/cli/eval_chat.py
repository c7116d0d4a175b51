"""`stepaudio eval chat`: an engine answers StepEval-Audio-360 (or local) conversations; an LLM judge scores them.

    stepaudio eval chat --stepeval360 StepEval-Audio-360 --judge-url https://api.openai.com/v1 \\
        --judge-model gpt-4o --engine step --model-path MODELS -O chat_url=http://127.0.0.1:8000/v1
    stepaudio eval chat --conversations my.jsonl --judge-url http://127.0.0.1:8001 --judge-model lite-chat

Writes OUT/chat.json (every reply and verdict, provenance) and OUT/chat.md (the paper's three numbers beside
the published ones, per category). The judge key comes from --judge-api-key or $STEPAUDIO_JUDGE_API_KEY /
$OPENAI_API_KEY and is never written to the report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from stepaudio.cli.engine_args import add_engine_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--stepeval360", type=Path, metavar="DIR",
                      help="the StepEval-Audio-360 folder (data/*.parquet and the decompressed audios/)")
    data.add_argument("--conversations", type=Path, metavar="FILE",
                      help="a JSONL (or JSON list) of conversations with text or audio turns")
    add_engine_arguments(parser)
    judge = parser.add_argument_group("judge")
    judge.add_argument("--judge-url", help="OpenAI-compatible base URL of the judge (http://host:port[/v1])")
    judge.add_argument("--judge-model", default="gpt-4o", help="model name sent to the judge (default gpt-4o)")
    judge.add_argument("--judge-api-key", default=None, help="default $STEPAUDIO_JUDGE_API_KEY or $OPENAI_API_KEY")
    judge.add_argument("--judge-max-tokens", type=int, default=256)
    judge.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per judge request")
    judge.add_argument("--no-judge", action="store_true", help="only collect the engine's replies")
    run_group = parser.add_argument_group("run")
    run_group.add_argument("--category", action="append", default=[], help="only this category (repeatable)")
    run_group.add_argument("--limit", type=int, default=None, help="at most N conversations")
    run_group.add_argument("--input", dest="input_mode", default="auto", choices=["auto", "audio", "text"],
                           help="give spoken turns as audio (auto: when a turn has audio) or as their text")
    run_group.add_argument("--history", default="own", choices=["own", "dataset"],
                           help="earlier replies the engine sees: its own, or the dataset's assistant turns")
    run_group.add_argument("--max-new-tokens", type=int, default=256)
    run_group.add_argument("--temperature", type=float, default=0.0)
    run_group.add_argument("--seed", type=int, default=0)
    run_group.add_argument("--language", default=None, help="language hint for recognising spoken turns")
    run_group.add_argument("--system-prompt", default=None)
    parser.add_argument("--out", type=Path, default=Path("eval-results"), help="report folder (default eval-results)")


def run(args: argparse.Namespace) -> int:
    from stepaudio.cli.engine_args import create_engine_from_args, engine_options
    from stepaudio.errors import StepAudioError
    from stepaudio.eval import report
    from stepaudio.eval.chat import ChatEvalConfig, engine_models, run_chat_eval, summarize
    from stepaudio.eval.judge import Judge, JudgeConfig, prompt_sha256
    from stepaudio.eval.stepeval import load_conversations, select

    if not args.no_judge and not args.judge_url:
        raise StepAudioError("--judge-url is required (an OpenAI-compatible endpoint), or pass --no-judge")
    source = args.stepeval360 or args.conversations
    conversations = select(load_conversations(source, check_audio=args.input_mode != "text"), args.category,
                           args.limit)
    config = ChatEvalConfig(input_mode=args.input_mode, history=args.history, max_new_tokens=args.max_new_tokens,
                            temperature=args.temperature, seed=args.seed, language=args.language,
                            system_prompt=args.system_prompt)
    judge_config = None
    if not args.no_judge:
        key = args.judge_api_key or os.environ.get("STEPAUDIO_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        judge_config = JudgeConfig(url=args.judge_url, model=args.judge_model, api_key=key,
                                   max_tokens=args.judge_max_tokens, timeout_s=args.judge_timeout, seed=args.seed)
    options = engine_options(args)
    engine = create_engine_from_args(args)
    total = sum(c.user_turns for c in conversations)
    bar = _bar(total)
    try:
        results = run_chat_eval(conversations, engine, Judge(judge_config) if judge_config else None, config,
                                on_turn=lambda _: bar.update(1) if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    summary = summarize(results)
    set_name = "StepEval-Audio-360" if args.stepeval360 else source.name
    payload = build_report(set_name, str(source), results, summary, config, judge_config,
                           report.provenance(engine_models(args.engine, options), seeds={"generation": args.seed},
                                             engine={"name": args.engine, "options": options},
                                             judge_prompt_sha256=prompt_sha256()),
                           is_stepeval=bool(args.stepeval360))
    json_path = report.write_json(args.out / "chat.json", payload)
    md_path = report.write_text(args.out / "chat.md", markdown(payload))
    print(_console(summary))
    print(f"wrote {json_path} and {md_path}")
    return 0 if summary.failed == 0 else 1


def _bar(total: int) -> Any:
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="chat eval", unit="turn", file=sys.stderr, dynamic_ncols=True)


def build_report(set_name: str, source: str, results: Any, summary: Any, config: Any, judge_config: Any,
                 provenance: dict[str, Any], *, is_stepeval: bool) -> dict[str, Any]:
    """The JSON report: headline rows (with the paper's numbers for StepEval-Audio-360), summary, every row."""
    from stepaudio.eval import paper, report

    def published(metric: str) -> Any:
        return paper.find("chat", "StepEval-Audio-360", metric) if is_stepeval else None

    note = "" if is_stepeval else "local conversations: the paper column does not apply"
    headline = [
        report.headline_row("chat", set_name, "factuality", summary.factuality, "%", published("factuality"), note),
        report.headline_row("chat", set_name, "relevance", summary.relevance, "%", published("relevance"), note),
        report.headline_row("chat", set_name, "chat score", summary.chat_score, "", published("chat score"), note),
    ]
    judge = None
    if judge_config is not None:
        judge = {"endpoint": judge_config.endpoint, "model": judge_config.model,
                 "temperature": judge_config.temperature, "seed": judge_config.seed}
    return {"schema": report.REPORT_SCHEMA, "task": "chat", "set": set_name, "source": source, "config": config,
            "judge": judge, "headline": headline, "summary": summary, "rows": results, "provenance": provenance}


def markdown(payload: dict[str, Any]) -> str:
    from stepaudio.eval import report

    summary = report.to_jsonable(payload["summary"])
    lines = [f"# Chat evaluation: {payload['set']}", ""]
    if payload["judge"]:
        lines.append(f"Judge `{payload['judge']['model']}` at {payload['judge']['endpoint']}, prompt sha256 "
                     f"`{payload['provenance'].get('judge_prompt_sha256')}`.")
    else:
        lines.append("No judge: replies only.")
    lines += ["", f"{summary['conversations']} conversations, {summary['replies']} replies, {summary['judged']} "
              f"fully judged, {summary['incomplete']} with an unusable judge field, {summary['failed']} failed.", "",
              report.markdown_table(payload["headline"], [("metric", "metric"), ("value", "ours"),
                                                          ("paper", "paper (Step-Audio-Chat)"), ("note", "note")]),
              "", "## By category", ""]
    rows = [{"category": name, **score} for name, score in summary["categories"].items()]
    lines.append(report.markdown_table(rows, [("category", "category"), ("replies", "replies"),
                                              ("factuality", "factuality", "{:.1%}"),
                                              ("relevance", "relevance", "{:.1%}"),
                                              ("chat_score", "chat score", "{:.2f}")]))
    if summary["problems"]:
        lines += ["", "## Problems", ""] + [f"- {p}" for p in summary["problems"][:50]]
        if len(summary["problems"]) > 50:
            lines.append(f"- ... and {len(summary['problems']) - 50} more (see the JSON)")
    lines += ["", report.provenance_markdown(payload["provenance"]), ""]
    return "\n".join(lines)


def _console(summary: Any) -> str:
    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.1f}%"

    score = "-" if summary.chat_score is None else f"{summary.chat_score:.2f}"
    return (f"{summary.replies} replies ({summary.judged} judged, {summary.incomplete} incomplete, "
            f"{summary.failed} failed): factuality {pct(summary.factuality)}, relevance {pct(summary.relevance)}, "
            f"chat score {score} (paper, Step-Audio-Chat on StepEval-Audio-360: 66.4%, 75.2%, 4.11)")
