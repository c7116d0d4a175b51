"""`stepaudio eval tts`: SEED-TTS-eval style synthesis, intelligibility (CER/WER) and speaker similarity, with
JSON and Markdown reports and a PNG of each case's error rate and similarity beside the paper's (tts-NAME.png).

    stepaudio eval tts --engine step --model-path MODELS --testset seedtts_testset/zh --output-dir out
    stepaudio eval tts --engine lite --testset build/eval-data/seed-en     # lite: default voice, not a clone

The synthesised speech is transcribed by the lite engine's Whisper (`--asr-model`, default base) and
compared with each prompt by the pinned Resemblyzer speaker encoder; both are named and hashed in the report.
"""

from __future__ import annotations

import argparse
import os

from stepaudio.cli.engine_args import add_engine_arguments
from stepaudio.cli.eval_asr import add_report_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from stepaudio.eval.asr import NORMALIZERS
    from stepaudio.eval.tts import CLONE_POLICIES

    add_engine_arguments(parser)
    parser.add_argument("--testset", required=True, metavar="DIR", help="folder with meta.lst (SEED-TTS-eval layout)")
    parser.add_argument("--name", help="name of the set in reports (default: dataset.json's or the folder's)")
    parser.add_argument("--language", help="zh or en (default: from the folder name or the texts)")
    parser.add_argument("--limit", type=int, help="only the first N cases")
    parser.add_argument("--asr-model", default="base",
                        help="Whisper model that transcribes the synthesised speech (lite asr_model; default base)")
    parser.add_argument("--clone", default="fallback", choices=CLONE_POLICIES,
                        help="when the engine cannot clone: use its default voice and say so (fallback) or fail")
    parser.add_argument("--voice", help="voice for the fallback (default: the engine's choice for the language)")
    parser.add_argument("--no-speaker", action="store_true", help="skip speaker similarity")
    parser.add_argument("--normalizer", default="auto", choices=NORMALIZERS)
    parser.add_argument("--wav-dir", metavar="DIR", help="keep the synthesised wavs here")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run N times and report means and spreads (Piper noise, Whisper fallback sampling)")
    add_report_arguments(parser, "tts")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from stepaudio.cli.engine_args import create_engine_from_args, engine_options
    from stepaudio.cli.eval_asr import publish, say_written
    from stepaudio.engines.registry import create_engine
    from stepaudio.errors import StepAudioError, UnsupportedError
    from stepaudio.eval.datasets import load_seed_tts
    from stepaudio.eval.engine_models import engine_model_records
    from stepaudio.eval.plots import tts_scores
    from stepaudio.eval.report import model_record, provenance, seed_everything, spread_note, to_jsonable
    from stepaudio.eval.speaker import SpeakerEncoder
    from stepaudio.eval.tts import TtsEvalConfig, evaluate_tts, tts_markdown, tts_report

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    testset = load_seed_tts(args.testset, language=args.language, name=args.name, limit=args.limit)
    seeds = seed_everything(args.seed)
    engine = create_engine_from_args(args)
    if engine.synthesizer is None:
        raise UnsupportedError(f"engine {args.engine!r} has no synthesizer")
    options = engine_options(args)
    if args.engine == "lite" and options.get("asr_model", "base") == args.asr_model and engine.transcriber:
        transcriber = engine.transcriber
    else:
        scorer = create_engine("lite", asr_model=args.asr_model)
        assert scorer.transcriber is not None
        transcriber = scorer.transcriber
    speaker = None if args.no_speaker else SpeakerEncoder()
    config = TtsEvalConfig(clone=args.clone, fallback_voice=args.voice, normalizer=args.normalizer,
                           wav_dir=Path(args.wav_dir) if args.wav_dir else None)
    if args.repeats < 1:
        raise StepAudioError("--repeats must be at least 1")
    runs = [evaluate_tts(engine.synthesizer, transcriber, testset, speaker, config, show_progress=not args.quiet)
            for _ in range(args.repeats)]
    result = runs[0]

    asr_records = engine_model_records("lite", {"asr_model": args.asr_model}, ["asr"])
    records = engine_model_records(args.engine, options, ["tts"]) + asr_records
    speaker_name = None
    if speaker is not None:
        info = speaker.info
        speaker_name = f"{info.package}=={info.version} (GE2E)"
        records.append(model_record("speaker", info.name, info.weights, version=f"{info.package} {info.version}"))
    asr_name = f"whisper-{args.asr_model}" if "/" not in args.asr_model else args.asr_model
    prov = provenance(records, seeds=seeds, engine={"name": args.engine, "options": options})
    payload = to_jsonable(tts_report(result, prov, asr_model=asr_name, speaker_model=speaker_name,
                                     description=testset.description, repeats=runs[1:]))
    written = publish(args, f"tts-{testset.name}", payload, tts_scores,
                      lambda report: tts_markdown(report, args.engine))
    similarity = f", SS {result.similarity:.3f}" if result.similarity is not None else ""
    print(f"{testset.name}: {result.metric} {100 * result.rate:.2f}%{similarity} over {len(result.rows)} cases "
          f"[{result.voice_mode}{'; synthetic prompts' if testset.synthetic else ''}], "
          f"synthesis RTF {result.rtf:.3f}")
    for metric, stats in payload["repeats"].items():
        print(f"{testset.name}: {metric} {spread_note(stats, '%' if metric != 'SS' else '')}")
    say_written(written, payload)
    return 0
